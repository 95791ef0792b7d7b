/*
 * ep_net_edit.c - graph rewrites: folding batch normalisation into the
 * preceding convolution, tracing where a convolution's output channels flow
 * (the channel map pruning uses) and removing output channels of a
 * convolution together with everything derived from them.
 */
#include "ecgprune/ep_net.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ep_net_priv.h"

/* Number of layers reading layer `idx` (a layer reading it twice counts
 * twice), plus one when it is the network output. */
static int count_readers(const ep_net *net, int idx)
{
    int i, j, n = net->output == idx;

    for (i = idx + 1; i < net->n_layers; i++)
        for (j = 0; j < net->layers[i].n_inputs; j++)
            n += net->layers[i].inputs[j] == idx;
    return n;
}

/* w <- w * s, b <- (b - mean) * s + beta with s = gamma / sqrt(var + eps),
 * computed in double so that folding adds no more than one rounding. */
static void fold_one(ep_layer *conv, const ep_layer *bn)
{
    size_t per_out = (size_t)conv->in_channels * conv->kernel, j;
    int o;

    for (o = 0; o < conv->channels; o++) {
        double s = bn->gamma[o] / sqrt((double)bn->var[o] + bn->eps);
        float *w = conv->weight + (size_t)o * per_out;

        for (j = 0; j < per_out; j++)
            w[j] = (float)(w[j] * s);
        conv->bias[o] = (float)(((double)conv->bias[o] - bn->mean[o]) * s +
                                bn->beta[o]);
    }
}

int ep_net_fold_bn(ep_net *net, ep_error *err)
{
    int *new_index;
    int i, j, n_kept = 0;

    new_index = malloc((size_t)(net->n_layers > 0 ? net->n_layers : 1) *
                       sizeof *new_index);
    if (new_index == NULL)
        return ep_error_set(err, EP_ENOMEM, "fold_bn: out of memory");

    /* Fold on the intact graph; a folded BN is marked by new_index -1. */
    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];

        new_index[i] = 0;
        if (l->op != EP_OP_BN || net->layers[l->inputs[0]].op != EP_OP_CONV ||
            count_readers(net, l->inputs[0]) != 1)
            continue;
        fold_one(&net->layers[l->inputs[0]], l);
        ep_net_layer_free_weights(l);
        new_index[i] = -1;
    }

    /* Compact, sending readers of a folded BN to its conv. */
    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];

        if (new_index[i] < 0) {
            new_index[i] = new_index[l->inputs[0]];
            continue;
        }
        new_index[i] = n_kept;
        for (j = 0; j < l->n_inputs; j++)
            l->inputs[j] = new_index[l->inputs[j]];
        net->layers[n_kept++] = *l;
    }
    if (net->output >= 0)
        net->output = new_index[net->output];
    net->n_layers = n_kept;
    free(new_index);
    return EP_OK;
}

/* One derived channel: channel `ch` of some tensor comes from producer
 * channel `src`. */
typedef struct flow_link {
    int ch, src;
} flow_link;

typedef struct flow_set {
    flow_link *links;
    int n;
} flow_set;

static void flows_free(flow_set *flows, int n)
{
    int i;

    if (flows == NULL)
        return;
    for (i = 0; i < n; i++)
        free(flows[i].links);
    free(flows);
}

static int link_cmp(const void *pa, const void *pb)
{
    const flow_link *a = pa, *b = pb;

    if (a->src != b->src)
        return a->src < b->src ? -1 : 1;
    return (a->ch > b->ch) - (a->ch < b->ch);
}

/* Sort by producer channel and drop duplicates. */
static void links_normalise(flow_set *fs)
{
    int i, n = 0;

    qsort(fs->links, (size_t)fs->n, sizeof *fs->links, link_cmp);
    for (i = 0; i < fs->n; i++)
        if (n == 0 || link_cmp(&fs->links[n - 1], &fs->links[i]) != 0)
            fs->links[n++] = fs->links[i];
    fs->n = n;
}

/* Map the links of input `slot` of layer `l` (reading tensor `in`) onto the
 * layer's output channels, appending to out. */
static void map_links(const ep_net *net, const ep_layer *l, int slot,
                      const flow_set *in, flow_set *out)
{
    int in_ch = net->layers[l->inputs[slot]].channels, offset = 0, i, j;

    for (j = 0; j < slot; j++)
        offset += net->layers[l->inputs[j]].channels;
    for (i = 0; i < in->n; i++) {
        flow_link k = in->links[i];

        switch (l->op) {
        case EP_OP_DWT:
            out->links[out->n++] = k;
            k.ch += in_ch;
            break;
        case EP_OP_IDWT:
            k.ch %= in_ch / 2;
            break;
        case EP_OP_CONCAT:
            k.ch += offset;
            break;
        default:
            break;
        }
        out->links[out->n++] = k;
    }
}

/* An IDWT merges channels c and c + C; both must come from the producer or
 * neither, or removing one would leave half an output channel. */
static int check_idwt_pairs(const ep_net *net, const ep_layer *l,
                            const flow_set *in, ep_error *err)
{
    int half = net->layers[l->inputs[0]].channels / 2, c, i;
    unsigned char *seen = calloc((size_t)(2 * half), 1);

    if (seen == NULL)
        return ep_error_set(err, EP_ENOMEM, "channel trace: out of memory");
    for (i = 0; i < in->n; i++)
        seen[in->links[i].ch] = 1;
    for (c = 0; c < half; c++)
        if (seen[c] != seen[c + half]) {
            free(seen);
            return ep_error_set(err, EP_EINVAL,
                                "idwt '%s' pairs channel %d with channel %d "
                                "of another producer", l->name, c,
                                c + half);
        }
    free(seen);
    return EP_OK;
}

/*
 * For every layer after `producer`, the links from its output channels (for
 * a consumer conv: its input channels) back to producer channels.  Layers
 * the producer does not reach get no links.
 */
static int trace_flows(const ep_net *net, int producer, flow_set **out,
                       ep_error *err)
{
    const ep_layer *p;
    flow_set *flows;
    int i, j, c, rc;

    *out = NULL;
    if (producer < 0 || producer >= net->n_layers ||
        net->layers[producer].op != EP_OP_CONV)
        return ep_error_set(err, EP_EINVAL,
                            "channel trace: layer %d is not a conv",
                            producer);
    p = &net->layers[producer];
    if (net->output == producer)
        return ep_error_set(err, EP_EINVAL,
                            "conv '%s' is the network output", p->name);
    flows = calloc((size_t)net->n_layers, sizeof *flows);
    if (flows == NULL)
        return ep_error_set(err, EP_ENOMEM, "channel trace: out of memory");

    flows[producer].links = malloc((size_t)p->channels * sizeof(flow_link));
    if (flows[producer].links == NULL)
        goto nomem;
    for (c = 0; c < p->channels; c++) {
        flows[producer].links[c].ch = c;
        flows[producer].links[c].src = c;
    }
    flows[producer].n = p->channels;

    /* Propagate in topological order; a conv ends a path, so the links a
     * conv collects describe its input channels. */
    for (i = producer + 1; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];
        size_t cap = 0;

        for (j = 0; j < l->n_inputs; j++)
            if (net->layers[l->inputs[j]].op != EP_OP_CONV ||
                l->inputs[j] == producer)
                cap += (size_t)flows[l->inputs[j]].n;
        if (cap == 0)
            continue;
        flows[i].links = malloc(2 * cap * sizeof(flow_link));
        if (flows[i].links == NULL)
            goto nomem;
        for (j = 0; j < l->n_inputs; j++) {
            const flow_set *in = &flows[l->inputs[j]];

            if (in->n == 0 || (net->layers[l->inputs[j]].op == EP_OP_CONV &&
                               l->inputs[j] != producer))
                continue;
            if (l->op == EP_OP_IDWT) {
                rc = check_idwt_pairs(net, l, in, err);
                if (rc != EP_OK) {
                    flows_free(flows, net->n_layers);
                    return rc;
                }
            }
            if (l->op == EP_OP_CONV) {
                memcpy(flows[i].links + flows[i].n, in->links,
                       (size_t)in->n * sizeof *in->links);
                flows[i].n += in->n;
            } else {
                map_links(net, l, j, in, &flows[i]);
            }
        }
        links_normalise(&flows[i]);
        if (l->op != EP_OP_CONV && net->output == i) {
            flows_free(flows, net->n_layers);
            return ep_error_set(err, EP_EINVAL,
                                "channels of conv '%s' reach the network "
                                "output '%s'", p->name, l->name);
        }
    }
    *out = flows;
    return EP_OK;

nomem:
    flows_free(flows, net->n_layers);
    return ep_error_set(err, EP_ENOMEM, "channel trace: out of memory");
}

void ep_net_consumers_free(ep_consumer *consumers, int n_consumers)
{
    int i;

    if (consumers == NULL)
        return;
    for (i = 0; i < n_consumers; i++)
        free(consumers[i].links);
    free(consumers);
}

int ep_net_consumers(const ep_net *net, int layer, ep_consumer **consumers,
                     int *n_consumers, ep_error *err)
{
    ep_consumer *list;
    flow_set *flows;
    int i, k, n = 0, rc;

    *consumers = NULL;
    *n_consumers = 0;
    rc = trace_flows(net, layer, &flows, err);
    if (rc != EP_OK)
        return rc;
    list = calloc((size_t)net->n_layers, sizeof *list);
    if (list == NULL) {
        flows_free(flows, net->n_layers);
        return ep_error_set(err, EP_ENOMEM, "consumers: out of memory");
    }
    for (i = layer + 1; i < net->n_layers; i++) {
        if (net->layers[i].op != EP_OP_CONV || flows[i].n == 0)
            continue;
        list[n].layer = i;
        list[n].n_links = flows[i].n;
        list[n].links = malloc((size_t)flows[i].n * sizeof *list[n].links);
        if (list[n].links == NULL) {
            ep_net_consumers_free(list, n);
            flows_free(flows, net->n_layers);
            return ep_error_set(err, EP_ENOMEM, "consumers: out of memory");
        }
        for (k = 0; k < flows[i].n; k++) {
            list[n].links[k].producer_ch = flows[i].links[k].src;
            list[n].links[k].consumer_ch = flows[i].links[k].ch;
        }
        n++;
    }
    flows_free(flows, net->n_layers);
    *consumers = list;
    *n_consumers = n;
    return EP_OK;
}

/* Union-find root with path halving. */
static int tie_root(int *tie, int c)
{
    while (tie[c] != c) {
        tie[c] = tie[tie[c]];
        c = tie[c];
    }
    return c;
}

int ep_net_tied_channels(const ep_net *net, int layer, int *tie,
                         ep_error *err)
{
    flow_set *flows;
    int i, k, c, rc;

    rc = trace_flows(net, layer, &flows, err);
    if (rc != EP_OK)
        return rc;
    for (c = 0; c < net->layers[layer].channels; c++)
        tie[c] = c;

    /* Links are sorted by source, so scan per tensor channel with a map
     * from tensor channel to the first source seen. */
    for (i = layer + 1; i < net->n_layers; i++) {
        int *first = NULL, width = 0;

        if (flows[i].n == 0)
            continue;
        for (k = 0; k < flows[i].n; k++)
            if (flows[i].links[k].ch + 1 > width)
                width = flows[i].links[k].ch + 1;
        first = malloc((size_t)width * sizeof *first);
        if (first == NULL) {
            flows_free(flows, net->n_layers);
            return ep_error_set(err, EP_ENOMEM, "tied channels: no memory");
        }
        for (c = 0; c < width; c++)
            first[c] = -1;
        for (k = 0; k < flows[i].n; k++) {
            const flow_link *l = &flows[i].links[k];
            int a, b;

            if (first[l->ch] < 0) {
                first[l->ch] = l->src;
                continue;
            }
            a = tie_root(tie, first[l->ch]);
            b = tie_root(tie, l->src);
            if (a < b)
                tie[b] = a;
            else
                tie[a] = b;
        }
        free(first);
    }
    for (c = 0; c < net->layers[layer].channels; c++)
        tie[c] = tie_root(tie, c);
    flows_free(flows, net->n_layers);
    return EP_OK;
}

/* New arrays for one layer, filled before anything is changed so that a
 * failure leaves the network untouched. */
typedef struct pending {
    unsigned char *mask;   /* kept output channels (NULL: unchanged) */
    int channels, in_channels;
    float *weight, *bias, *gamma, *beta, *mean, *var;
} pending;

static void pending_free(pending *pd, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        free(pd[i].mask);
        free(pd[i].weight);
        free(pd[i].bias);
        free(pd[i].gamma);
        free(pd[i].beta);
        free(pd[i].mean);
        free(pd[i].var);
    }
    free(pd);
}

/* Copy the entries of src whose mask is set; NULL on allocation failure. */
static float *compact(const float *src, const unsigned char *mask, int n,
                      int kept)
{
    float *dst = malloc((size_t)(kept > 0 ? kept : 1) * sizeof *dst);
    int i, k = 0;

    if (dst == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        if (mask[i])
            dst[k++] = src[i];
    return dst;
}

/*
 * Keep mask of a tensor from its links: a channel derived only from kept
 * producer channels stays, one derived only from dropped channels goes, a
 * channel derived from both means the keep list splits a tie.
 */
static int mask_from_links(const ep_net *net, int layer, const flow_set *fs,
                           const unsigned char *keep, int width,
                           unsigned char *mask, ep_error *err)
{
    unsigned char *dropped = calloc((size_t)width, 1);
    int k, c;

    if (dropped == NULL)
        return ep_error_set(err, EP_ENOMEM, "keep_channels: out of memory");
    memset(mask, 0, (size_t)width);
    for (k = 0; k < fs->n; k++) {
        if (keep[fs->links[k].src])
            mask[fs->links[k].ch] = 1;
        else
            dropped[fs->links[k].ch] = 1;
    }
    for (c = 0; c < width; c++) {
        if (mask[c] && dropped[c]) {
            free(dropped);
            return ep_error_set(err, EP_EINVAL,
                                "keep_channels: channel %d of '%s' derives "
                                "from kept and dropped channels (keep tied "
                                "channels together)", c,
                                net->layers[layer].name);
        }
        if (!dropped[c])
            mask[c] = 1;
    }
    free(dropped);
    return EP_OK;
}

static int count_set(const unsigned char *mask, int n)
{
    int i, k = 0;

    for (i = 0; i < n; i++)
        k += mask[i] != 0;
    return k;
}

/* Consumer conv: drop the weight columns of removed input channels. */
static float *compact_conv_inputs(const ep_layer *l,
                                  const unsigned char *in_mask, int kept)
{
    size_t k = (size_t)l->kernel;
    float *w = malloc((size_t)l->channels * kept * k * sizeof *w + 1);
    float *dst = w;
    int o, i;

    if (w == NULL)
        return NULL;
    for (o = 0; o < l->channels; o++)
        for (i = 0; i < l->in_channels; i++)
            if (in_mask[i]) {
                memcpy(dst, l->weight + ((size_t)o * l->in_channels + i) * k,
                       k * sizeof *dst);
                dst += k;
            }
    return w;
}

/* Producer conv: drop the weight rows and biases of removed channels. */
static int compact_producer(const ep_layer *l, pending *pd)
{
    size_t row = (size_t)l->in_channels * l->kernel;
    int o, k = 0;

    pd->weight = malloc((size_t)pd->channels * row * sizeof *pd->weight + 1);
    pd->bias = compact(l->bias, pd->mask, l->channels, pd->channels);
    if (pd->weight == NULL || pd->bias == NULL)
        return EP_ENOMEM;
    for (o = 0; o < l->channels; o++)
        if (pd->mask[o])
            memcpy(pd->weight + row * (size_t)k++,
                   l->weight + row * (size_t)o, row * sizeof *pd->weight);
    return EP_OK;
}

/* Work out every changed layer's new shape and arrays. */
static int plan_keep(const ep_net *net, int layer, const flow_set *flows,
                     const unsigned char *keep, pending *pd, ep_error *err)
{
    int i, j, rc;

    for (i = layer; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];
        unsigned char *in_mask;
        int width, in_total = 0;

        if (flows[i].n == 0)
            continue;
        width = l->op == EP_OP_CONV && i != layer ? l->in_channels
                                                   : l->channels;
        in_mask = malloc((size_t)width);
        if (in_mask == NULL)
            return ep_error_set(err, EP_ENOMEM, "keep_channels: no memory");
        rc = mask_from_links(net, i, &flows[i], keep, width, in_mask, err);
        if (rc != EP_OK) {
            free(in_mask);
            return rc;
        }

        /* A consumer conv keeps its outputs and loses input columns. */
        if (l->op == EP_OP_CONV && i != layer) {
            pd[i].channels = l->channels;
            pd[i].in_channels = count_set(in_mask, width);
            pd[i].weight = compact_conv_inputs(l, in_mask,
                                               pd[i].in_channels);
            free(in_mask);
            if (pd[i].weight == NULL)
                return ep_error_set(err, EP_ENOMEM, "keep_channels: memory");
            continue;
        }

        pd[i].mask = in_mask;
        pd[i].channels = count_set(in_mask, width);
        for (j = 0; j < l->n_inputs; j++) {
            int src = l->inputs[j];

            in_total += pd[src].mask ? pd[src].channels
                                     : net->layers[src].channels;
        }
        pd[i].in_channels = l->op == EP_OP_CONV ? l->in_channels : in_total;
        if (l->op == EP_OP_CONV)
            rc = compact_producer(l, &pd[i]);
        else if (l->op == EP_OP_BN) {
            pd[i].gamma = compact(l->gamma, in_mask, width, pd[i].channels);
            pd[i].beta = compact(l->beta, in_mask, width, pd[i].channels);
            pd[i].mean = compact(l->mean, in_mask, width, pd[i].channels);
            pd[i].var = compact(l->var, in_mask, width, pd[i].channels);
            rc = pd[i].gamma && pd[i].beta && pd[i].mean && pd[i].var
                     ? EP_OK : EP_ENOMEM;
        }
        if (rc != EP_OK)
            return ep_error_set(err, EP_ENOMEM, "keep_channels: memory");
        if (pd[i].channels == 0)
            return ep_error_set(err, EP_EINVAL,
                                "keep_channels: layer '%s' would have no "
                                "channels", l->name);
    }
    return EP_OK;
}

/* Install the new arrays; pending entries are left empty. */
static void commit_keep(ep_net *net, int layer, const flow_set *flows,
                        pending *pd)
{
    int i;

    for (i = layer; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];

        if (flows[i].n == 0)
            continue;
        l->channels = pd[i].channels;
        l->in_channels = pd[i].in_channels;
        if (pd[i].weight != NULL) {
            free(l->weight);
            l->weight = pd[i].weight;
            pd[i].weight = NULL;
        }
        if (pd[i].bias != NULL) {
            free(l->bias);
            l->bias = pd[i].bias;
            pd[i].bias = NULL;
        }
        if (l->op == EP_OP_BN) {
            free(l->gamma);
            free(l->beta);
            free(l->mean);
            free(l->var);
            l->gamma = pd[i].gamma;
            l->beta = pd[i].beta;
            l->mean = pd[i].mean;
            l->var = pd[i].var;
            pd[i].gamma = pd[i].beta = pd[i].mean = pd[i].var = NULL;
        }
    }
}

/*
 * Limitation: a removed channel that is not zero where it enters a consumer
 * (e.g. a BN shift passed through a ReLU) is dropped, not folded into the
 * consumer's bias; callers that want it refit the consumers.
 */
int ep_net_keep_channels(ep_net *net, int layer, const int *keep, int n_keep,
                         ep_error *err)
{
    unsigned char *keep_mask;
    flow_set *flows;
    pending *pd;
    int i, rc, channels;

    rc = trace_flows(net, layer, &flows, err);
    if (rc != EP_OK)
        return rc;
    channels = net->layers[layer].channels;

    /* The keep list: increasing, in range, not empty. */
    keep_mask = calloc((size_t)channels, 1);
    pd = calloc((size_t)net->n_layers, sizeof *pd);
    if (keep_mask == NULL || pd == NULL) {
        rc = ep_error_set(err, EP_ENOMEM, "keep_channels: out of memory");
        goto done;
    }
    rc = n_keep < 1 || n_keep > channels ? EP_EINVAL : EP_OK;
    for (i = 0; i < n_keep && rc == EP_OK; i++) {
        if (keep[i] < 0 || keep[i] >= channels ||
            (i > 0 && keep[i] <= keep[i - 1]))
            rc = EP_EINVAL;
        else
            keep_mask[keep[i]] = 1;
    }
    if (rc != EP_OK) {
        ep_error_set(err, rc,
                     "keep_channels: conv '%s': keep list must hold 1..%d "
                     "increasing channel indices below %d",
                     net->layers[layer].name, channels, channels);
        goto done;
    }

    rc = plan_keep(net, layer, flows, keep_mask, pd, err);
    if (rc == EP_OK)
        commit_keep(net, layer, flows, pd);

done:
    if (pd != NULL)
        pending_free(pd, net->n_layers);
    free(keep_mask);
    flows_free(flows, net->n_layers);
    return rc;
}
