/*
 * ep_plan.c - forward execution of a network on a fixed batch and length.
 *
 * Creating a plan decides, once, where every layer writes its output:
 * KEEP and TRAIN plans give each layer its own buffer; INFER plans fold
 * each BN into the conv it follows, run ReLUs in place and recycle a
 * buffer as soon as the last layer reading it has run (liveness).  Running
 * a plan then only computes.  A plan holds no state shared with other
 * plans, so plans of one network may run in different threads at once.
 */
#include "ecgprune/ep_plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_ops.h"

/* Where a layer's output lives and how the layer is computed. */
typedef struct plan_layer {
    int slot;            /* buffer index */
    int alias;           /* INFER: computed in place in its input's buffer */
    int folded;          /* INFER: BN already applied by the conv before it */
    int length;          /* output samples per channel */
    int channels;        /* output channels when the plan was made */
    int in_channels;
    ep_conv_geom geom;   /* EP_OP_CONV */
    float *fold_w, *fold_b;  /* INFER: conv weights with the BN folded in */
    float *bn_mean, *bn_inv_std; /* TRAIN: statistics of the last run */
} plan_layer;

struct ep_plan {
    const ep_net *net;
    int batch, length, flags, input_layer;
    int active;          /* items of the batch the current run computes */
    int n_layers;        /* the net's layer count when the plan was made */
    plan_layer *layers;
    float **slots;
    int n_slots;
    float *work;
    double conv_flops;
};

/* Number of readers of layer i (the network output counts as one). */
static int readers_of(const ep_net *net, int i, int *last)
{
    int j, k, n = 0;

    *last = i;
    for (j = i + 1; j < net->n_layers; j++)
        for (k = 0; k < net->layers[j].n_inputs; k++)
            if (net->layers[j].inputs[k] == i) {
                n++;
                *last = j;
            }
    if (net->output == i) {
        n++;
        *last = net->n_layers;
    }
    return n;
}

/* Check the net and the sizes, and fill the per-layer geometry. */
static int plan_shapes(ep_plan *p, ep_error *err)
{
    const ep_net *net = p->net;
    int i, multiple = ep_net_length_multiple(net), rc;

    if (p->batch <= 0 || p->length <= 0 || p->length % multiple != 0)
        return ep_error_set(err, EP_EINVAL,
                            "plan: batch %d and length %d must be positive, "
                            "length a multiple of %d", p->batch, p->length,
                            multiple);
    if (net->output < 0 || net->output >= net->n_layers)
        return ep_error_set(err, EP_EINVAL, "plan: network has no output");
    p->input_layer = -1;
    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];
        plan_layer *pl = &p->layers[i];

        pl->length = p->length / l->rate_div;
        pl->channels = l->channels;
        pl->in_channels = l->in_channels;
        /* Limitation: ep_plan_run takes one input array, so a plan
         * accepts exactly one input layer. */
        if (l->op == EP_OP_INPUT) {
            if (p->input_layer >= 0)
                return ep_error_set(err, EP_EINVAL,
                                    "plan: more than one input layer");
            p->input_layer = i;
        }
        if (l->op != EP_OP_CONV)
            continue;
        rc = ep_conv_geom_init(&pl->geom, l->in_channels, l->channels,
                               l->kernel, l->stride, l->dilation, l->padding,
                               p->length / net->layers[l->inputs[0]].rate_div,
                               err);
        if (rc != EP_OK) {
            ep_error_prefix(err, "plan: layer '%s'", l->name);
            return rc;
        }
        p->conv_flops += 2.0 * p->batch * (double)l->channels *
                         l->in_channels * l->kernel * pl->geom.out_len;
    }
    if (p->input_layer < 0)
        return ep_error_set(err, EP_EINVAL, "plan: network has no input");
    return EP_OK;
}

/* INFER: which BNs fold into their conv and which layers run in place. */
static void plan_aliases(ep_plan *p)
{
    const ep_net *net = p->net;
    int i, last;

    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];
        int src = l->n_inputs == 1 ? l->inputs[0] : -1;

        if (src < 0 || readers_of(net, src, &last) != 1)
            continue;
        if (l->op == EP_OP_BN && net->layers[src].op == EP_OP_CONV) {
            p->layers[i].folded = 1;
            p->layers[i].alias = 1;
        } else if (l->op == EP_OP_BN || l->op == EP_OP_RELU) {
            p->layers[i].alias = 1;
        }
    }
}

/*
 * Give every layer a buffer slot.  Without sharing each layer owns one;
 * with sharing a chain of in-place layers shares its first layer's slot
 * and a slot returns to the free list after the chain's last reader.
 */
static int plan_slots(ep_plan *p, int share, ep_error *err)
{
    const ep_net *net = p->net;
    int n = net->n_layers, i, s, last;
    size_t *size = calloc((size_t)n, sizeof *size);
    int *free_at = malloc((size_t)n * sizeof *free_at);
    int *busy_until = malloc((size_t)n * sizeof *busy_until);

    if (size == NULL || free_at == NULL || busy_until == NULL) {
        free(size);
        free(free_at);
        free(busy_until);
        return ep_error_set(err, EP_ENOMEM, "plan: out of memory");
    }

    /* free_at[i]: the last layer reading layer i's slot through i. */
    for (i = n - 1; i >= 0; i--) {
        readers_of(net, i, &last);
        free_at[i] = last;
    }
    for (i = n - 1; i >= 0; i--)
        if (share && p->layers[i].alias) {
            int src = net->layers[i].inputs[0];

            if (free_at[i] > free_at[src])
                free_at[src] = free_at[i];
        }

    p->n_slots = 0;
    for (i = 0; i < n; i++) {
        size_t need = (size_t)p->batch * net->layers[i].channels *
                      (size_t)p->layers[i].length;

        if (share && p->layers[i].alias) {
            p->layers[i].slot = p->layers[net->layers[i].inputs[0]].slot;
            continue;
        }
        for (s = 0; share && s < p->n_slots; s++)
            if (busy_until[s] < i)
                break;
        if (!share || s == p->n_slots)
            s = p->n_slots++;
        busy_until[s] = free_at[i];
        if (need > size[s])
            size[s] = need;
        p->layers[i].slot = s;
    }

    p->slots = calloc((size_t)p->n_slots, sizeof *p->slots);
    for (s = 0; p->slots != NULL && s < p->n_slots; s++) {
        p->slots[s] = malloc((size[s] > 0 ? size[s] : 1) * sizeof(float));
        if (p->slots[s] == NULL)
            break;
    }
    free(size);
    free(free_at);
    free(busy_until);
    if (p->slots == NULL || s < p->n_slots)
        return ep_error_set(err, EP_ENOMEM, "plan: out of memory for "
                            "activation buffers");
    return EP_OK;
}

/* INFER: (re)compute the folded weights of every conv followed by a BN. */
static int plan_fold(ep_plan *p, ep_error *err)
{
    const ep_net *net = p->net;
    int i;

    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *bn = &net->layers[i];
        const ep_layer *conv;
        plan_layer *pc;
        size_t row, j;
        int o;

        if (!p->layers[i].folded)
            continue;
        conv = &net->layers[bn->inputs[0]];
        pc = &p->layers[bn->inputs[0]];
        row = (size_t)conv->in_channels * conv->kernel;
        if (pc->fold_w == NULL) {
            pc->fold_w = malloc(row * conv->channels * sizeof(float));
            pc->fold_b = malloc((size_t)conv->channels * sizeof(float));
            if (pc->fold_w == NULL || pc->fold_b == NULL)
                return ep_error_set(err, EP_ENOMEM, "plan: out of memory");
        }

        /* Same algebra as ep_net_fold_bn, into the plan's own copy. */
        for (o = 0; o < conv->channels; o++) {
            double s = bn->gamma[o] / sqrt((double)bn->var[o] + bn->eps);

            for (j = 0; j < row; j++)
                pc->fold_w[o * row + j] =
                    (float)(conv->weight[o * row + j] * s);
            pc->fold_b[o] = (float)(((double)conv->bias[o] - bn->mean[o]) *
                                    s + bn->beta[o]);
        }
    }
    return EP_OK;
}

static int plan_train_stats(ep_plan *p, ep_error *err)
{
    int i;

    for (i = 0; i < p->net->n_layers; i++) {
        plan_layer *pl = &p->layers[i];
        size_t ch = (size_t)p->net->layers[i].channels;

        if (p->net->layers[i].op != EP_OP_BN)
            continue;
        pl->bn_mean = calloc(ch, sizeof(float));
        pl->bn_inv_std = calloc(ch, sizeof(float));
        if (pl->bn_mean == NULL || pl->bn_inv_std == NULL)
            return ep_error_set(err, EP_ENOMEM, "plan: out of memory");
    }
    return EP_OK;
}

int ep_plan_create(const ep_net *net, int batch, int length, int flags,
                   ep_plan **out, ep_error *err)
{
    size_t work = 1;
    ep_plan *p;
    int i, rc;

    *out = NULL;
    if (flags != EP_PLAN_INFER && flags != EP_PLAN_KEEP &&
        flags != EP_PLAN_TRAIN)
        return ep_error_set(err, EP_EINVAL, "plan: unknown flags %d", flags);
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return ep_error_set(err, EP_ENOMEM, "plan: out of memory");
    p->net = net;
    p->batch = batch;
    p->length = length;
    p->flags = flags;
    p->n_layers = net->n_layers;
    p->layers = calloc((size_t)(net->n_layers > 0 ? net->n_layers : 1),
                       sizeof *p->layers);
    if (p->layers == NULL) {
        free(p);
        return ep_error_set(err, EP_ENOMEM, "plan: out of memory");
    }

    /* Shapes, then buffers, then the mode's extra state. */
    rc = plan_shapes(p, err);
    if (rc == EP_OK && flags == EP_PLAN_INFER)
        plan_aliases(p);
    if (rc == EP_OK)
        rc = plan_slots(p, flags == EP_PLAN_INFER, err);
    if (rc == EP_OK && flags == EP_PLAN_INFER)
        rc = plan_fold(p, err);
    if (rc == EP_OK && flags == EP_PLAN_TRAIN)
        rc = plan_train_stats(p, err);
    for (i = 0; rc == EP_OK && i < net->n_layers; i++)
        if (net->layers[i].op == EP_OP_CONV &&
            ep_conv_work_floats(&p->layers[i].geom) > work)
            work = ep_conv_work_floats(&p->layers[i].geom);
    if (rc == EP_OK) {
        p->work = malloc(work * sizeof *p->work);
        if (p->work == NULL)
            rc = ep_error_set(err, EP_ENOMEM, "plan: out of memory");
    }
    if (rc != EP_OK) {
        ep_plan_free(p);
        return rc;
    }
    *out = p;
    return EP_OK;
}

void ep_plan_free(ep_plan *plan)
{
    int i;

    if (plan == NULL)
        return;
    for (i = 0; plan->layers != NULL && i < plan->n_layers; i++) {
        free(plan->layers[i].fold_w);
        free(plan->layers[i].fold_b);
        free(plan->layers[i].bn_mean);
        free(plan->layers[i].bn_inv_std);
    }
    for (i = 0; plan->slots != NULL && i < plan->n_slots; i++)
        free(plan->slots[i]);
    free(plan->slots);
    free(plan->layers);
    free(plan->work);
    free(plan);
}

int ep_plan_refresh(ep_plan *plan, ep_error *err)
{
    const ep_net *net = plan->net;
    int i;

    if (net->n_layers != plan->n_layers)
        return ep_error_set(err, EP_EINVAL,
                            "plan: network has %d layers, plan was made for "
                            "%d; make a new plan", net->n_layers,
                            plan->n_layers);
    for (i = 0; i < net->n_layers; i++)
        if (net->layers[i].channels != plan->layers[i].channels ||
            net->layers[i].in_channels != plan->layers[i].in_channels)
            return ep_error_set(err, EP_EINVAL,
                                "plan: layer '%s' changed shape; make a new "
                                "plan", net->layers[i].name);
    if (plan->flags == EP_PLAN_INFER)
        return plan_fold(plan, err);
    return EP_OK;
}

static float *layer_out(const ep_plan *p, int i)
{
    return p->slots[p->layers[i].slot];
}

static void run_conv(ep_plan *p, int i)
{
    const ep_layer *l = &p->net->layers[i];
    const plan_layer *pl = &p->layers[i];
    const float *x = layer_out(p, l->inputs[0]);
    const float *w = pl->fold_w ? pl->fold_w : l->weight;
    const float *b = pl->fold_b ? pl->fold_b : l->bias;
    size_t in_stride = (size_t)pl->geom.in_ch * pl->geom.in_len;
    size_t out_stride = (size_t)pl->geom.out_ch * pl->geom.out_len;
    float *y = layer_out(p, i);
    int n;

    for (n = 0; n < p->active; n++)
        ep_conv_forward(&pl->geom, x + n * in_stride, w, b,
                        y + n * out_stride, p->work);
}

/* TRAIN: mean and biased variance of each channel over batch x length, as
 * batch normalisation defines them, accumulated in double. */
static void bn_batch_stats(ep_plan *p, int i, const float *x)
{
    const ep_layer *l = &p->net->layers[i];
    plan_layer *pl = &p->layers[i];
    size_t len = (size_t)pl->length, t;
    double count = (double)p->active * len;
    int c, n;

    for (c = 0; c < l->channels; c++) {
        double sum = 0.0, sq = 0.0, mean;

        for (n = 0; n < p->active; n++) {
            const float *xc = x + ((size_t)n * l->channels + c) * len;

            for (t = 0; t < len; t++)
                sum += xc[t];
        }
        mean = sum / count;
        for (n = 0; n < p->active; n++) {
            const float *xc = x + ((size_t)n * l->channels + c) * len;

            for (t = 0; t < len; t++)
                sq += (xc[t] - mean) * (xc[t] - mean);
        }
        pl->bn_mean[c] = (float)mean;
        pl->bn_inv_std[c] = (float)(1.0 / sqrt(sq / count + l->eps));
    }
}

static void run_bn(ep_plan *p, int i)
{
    const ep_layer *l = &p->net->layers[i];
    plan_layer *pl = &p->layers[i];
    const float *x = layer_out(p, l->inputs[0]);
    float *y = layer_out(p, i);
    size_t len = (size_t)pl->length, t;
    int c, n;

    if (pl->folded)
        return;
    if (p->flags == EP_PLAN_TRAIN)
        bn_batch_stats(p, i, x);
    for (c = 0; c < l->channels; c++) {
        float mean, scale, shift;

        if (p->flags == EP_PLAN_TRAIN) {
            mean = pl->bn_mean[c];
            scale = l->gamma[c] * pl->bn_inv_std[c];
        } else {
            mean = l->mean[c];
            scale = (float)(l->gamma[c] / sqrt((double)l->var[c] + l->eps));
        }
        shift = l->beta[c] - mean * scale;
        for (n = 0; n < p->active; n++) {
            size_t off = ((size_t)n * l->channels + c) * len;

            for (t = 0; t < len; t++)
                y[off + t] = x[off + t] * scale + shift;
        }
    }
}

static void run_relu(ep_plan *p, int i)
{
    const ep_layer *l = &p->net->layers[i];
    const float *x = layer_out(p, l->inputs[0]);
    float *y = layer_out(p, i);
    size_t n = (size_t)p->active * l->channels * p->layers[i].length, k;

    for (k = 0; k < n; k++)
        y[k] = x[k] > 0.0f ? x[k] : 0.0f;
}

static void run_wavelet(ep_plan *p, int i)
{
    const ep_layer *l = &p->net->layers[i];
    const float *x = layer_out(p, l->inputs[0]);
    float *y = layer_out(p, i);
    int in_len = p->layers[l->inputs[0]].length;
    size_t stride = (size_t)l->in_channels * in_len;
    int n;

    for (n = 0; n < p->active; n++) {
        if (l->op == EP_OP_DWT)
            ep_dwt_forward(l->wavelet, l->in_channels, in_len,
                           x + n * stride, y + n * stride);
        else
            ep_dwt_inverse(l->wavelet, l->channels, in_len, x + n * stride,
                           y + n * stride);
    }
}

static void run_concat(ep_plan *p, int i)
{
    const ep_layer *l = &p->net->layers[i];
    size_t len = (size_t)p->layers[i].length;
    float *y = layer_out(p, i);
    int n, j;

    for (n = 0; n < p->active; n++) {
        float *dst = y + (size_t)n * l->channels * len;

        for (j = 0; j < l->n_inputs; j++) {
            int src = l->inputs[j];
            size_t block = (size_t)p->net->layers[src].channels * len;

            memcpy(dst, layer_out(p, src) + n * block, block * sizeof *dst);
            dst += block;
        }
    }
}

int ep_plan_run(ep_plan *plan, const float *input, ep_error *err)
{
    return ep_plan_run_first(plan, input, plan->batch, err);
}

int ep_plan_run_first(ep_plan *plan, const float *input, int n,
                      ep_error *err)
{
    const ep_net *net = plan->net;
    int i;

    if (net->n_layers != plan->n_layers)
        return ep_error_set(err, EP_EINVAL, "plan: network changed shape");
    /* Batch statistics are those of the whole batch the plan was made
     * for, so a training run takes all of it. */
    if (n < 1 || n > plan->batch ||
        (plan->flags == EP_PLAN_TRAIN && n != plan->batch))
        return ep_error_set(err, EP_EINVAL, "plan: %d items to run, "
                            "expected 1..%d%s", n, plan->batch,
                            plan->flags == EP_PLAN_TRAIN
                                ? " (a training plan runs its whole batch)"
                                : "");
    plan->active = n;
    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];

        switch (l->op) {
        case EP_OP_INPUT:
            memcpy(layer_out(plan, i), input,
                   (size_t)plan->active * l->channels * plan->length *
                       sizeof *input);
            break;
        case EP_OP_CONV: run_conv(plan, i); break;
        case EP_OP_BN: run_bn(plan, i); break;
        case EP_OP_RELU: run_relu(plan, i); break;
        case EP_OP_DWT:
        case EP_OP_IDWT: run_wavelet(plan, i); break;
        case EP_OP_CONCAT: run_concat(plan, i); break;
        }
    }
    return EP_OK;
}

const float *ep_plan_output(const ep_plan *plan, int layer, int *channels,
                            int *length)
{
    if (layer < 0)
        layer = plan->net->output;
    if (layer >= plan->n_layers)
        return NULL;
    if (channels != NULL)
        *channels = plan->layers[layer].channels;
    if (length != NULL)
        *length = plan->layers[layer].length;
    return layer_out(plan, layer);
}

int ep_plan_batch(const ep_plan *plan)
{
    return plan->batch;
}

int ep_plan_length(const ep_plan *plan)
{
    return plan->length;
}

int ep_plan_bn_stats(const ep_plan *plan, int layer, const float **mean,
                     const float **inv_std, ep_error *err)
{
    if (plan->flags != EP_PLAN_TRAIN)
        return ep_error_set(err, EP_EINVAL,
                            "plan: batch statistics need EP_PLAN_TRAIN");
    if (layer < 0 || layer >= plan->net->n_layers ||
        plan->net->layers[layer].op != EP_OP_BN)
        return ep_error_set(err, EP_EINVAL, "plan: layer %d is not a BN",
                            layer);
    *mean = plan->layers[layer].bn_mean;
    *inv_std = plan->layers[layer].bn_inv_std;
    return EP_OK;
}

double ep_plan_conv_flops(const ep_plan *plan)
{
    return plan->conv_flops;
}
