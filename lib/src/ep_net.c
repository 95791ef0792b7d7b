/*
 * ep_net.c - network graphs: construction with shape inference, weight
 * allocation, cloning and the read-only queries (find, sizes, costs).
 * Graph rewrites (BN folding, channel removal) live in ep_net_edit.c.
 */
#include "ecgprune/ep_net.h"

#include <stdlib.h>
#include <string.h>

#include "ep_net_priv.h"

int ep_net_create(ep_net **out, ep_error *err)
{
    ep_net *net = calloc(1, sizeof *net);

    *out = NULL;
    if (net == NULL)
        return ep_error_set(err, EP_ENOMEM, "network: out of memory");
    net->output = -1;
    *out = net;
    return EP_OK;
}

void ep_net_layer_free_weights(ep_layer *layer)
{
    free(layer->weight);
    free(layer->bias);
    free(layer->gamma);
    free(layer->beta);
    free(layer->mean);
    free(layer->var);
    layer->weight = layer->bias = NULL;
    layer->gamma = layer->beta = layer->mean = layer->var = NULL;
}

void ep_net_free(ep_net *net)
{
    int i;

    if (net == NULL)
        return;
    for (i = 0; i < net->n_layers; i++)
        ep_net_layer_free_weights(&net->layers[i]);
    free(net->layers);
    free(net);
}

size_t ep_net_conv_weight_floats(const ep_layer *layer)
{
    return (size_t)layer->channels * (size_t)layer->in_channels *
           (size_t)layer->kernel;
}

/* malloc'd copy of n floats, or NULL (also when src is NULL). */
static float *copy_floats(const float *src, size_t n, int *failed)
{
    float *dst;

    if (src == NULL)
        return NULL;
    dst = malloc(n * sizeof *dst);
    if (dst == NULL) {
        *failed = 1;
        return NULL;
    }
    memcpy(dst, src, n * sizeof *dst);
    return dst;
}

int ep_net_clone(const ep_net *net, ep_net **out, ep_error *err)
{
    ep_net *copy;
    int i, failed = 0;

    *out = NULL;
    if (ep_net_create(&copy, err) != EP_OK)
        return EP_ENOMEM;
    copy->meta = net->meta;
    copy->output = net->output;
    copy->layers = calloc((size_t)(net->n_layers > 0 ? net->n_layers : 1),
                          sizeof *copy->layers);
    if (copy->layers == NULL) {
        ep_net_free(copy);
        return ep_error_set(err, EP_ENOMEM, "network clone: out of memory");
    }
    copy->cap_layers = net->n_layers > 0 ? net->n_layers : 1;

    /* Shallow-copy each record, then replace its pointers by copies. */
    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *src = &net->layers[i];
        ep_layer *dst = &copy->layers[i];
        size_t ch = (size_t)src->channels;

        *dst = *src;
        copy->n_layers = i + 1;
        dst->weight = copy_floats(src->weight,
                                  ep_net_conv_weight_floats(src), &failed);
        dst->bias = copy_floats(src->bias, ch, &failed);
        dst->gamma = copy_floats(src->gamma, ch, &failed);
        dst->beta = copy_floats(src->beta, ch, &failed);
        dst->mean = copy_floats(src->mean, ch, &failed);
        dst->var = copy_floats(src->var, ch, &failed);
        if (failed) {
            ep_net_free(copy);
            return ep_error_set(err, EP_ENOMEM,
                                "network clone: out of memory");
        }
    }
    *out = copy;
    return EP_OK;
}

int ep_net_find(const ep_net *net, const char *name)
{
    int i;

    for (i = 0; i < net->n_layers; i++)
        if (strcmp(net->layers[i].name, name) == 0)
            return i;
    return EP_ENOTFOUND;
}

/*
 * Append a zeroed layer record after checking the name and the inputs;
 * returns its index or a negative code.  Every add function goes through
 * here, so names are unique and inputs always refer to earlier layers.
 */
static int append_layer(ep_net *net, ep_op op, const int *inputs,
                        int n_inputs, const char *name, ep_error *err)
{
    ep_layer *layer;
    int i;

    if (name == NULL || name[0] == '\0' || strlen(name) >= EP_NAME_MAX)
        return ep_error_set(err, EP_EINVAL,
                            "layer name must have 1..%d characters",
                            EP_NAME_MAX - 1);
    if (ep_net_find(net, name) >= 0)
        return ep_error_set(err, EP_EINVAL,
                            "layer '%s': name already used", name);
    if (net->n_layers >= EP_NET_MAX_LAYERS)
        return ep_error_set(err, EP_ERANGE,
                            "layer '%s': more than %d layers", name,
                            EP_NET_MAX_LAYERS);
    if (n_inputs < 0 || n_inputs > EP_MAX_INPUTS)
        return ep_error_set(err, EP_EINVAL,
                            "layer '%s': %d inputs, expected 0..%d", name,
                            n_inputs, EP_MAX_INPUTS);
    for (i = 0; i < n_inputs; i++)
        if (inputs[i] < 0 || inputs[i] >= net->n_layers)
            return ep_error_set(err, EP_EINVAL,
                                "layer '%s': input %d is not an earlier "
                                "layer (have %d)", name, inputs[i],
                                net->n_layers);

    if (net->n_layers == net->cap_layers) {
        int cap = net->cap_layers > 0 ? 2 * net->cap_layers : 16;
        ep_layer *grown = realloc(net->layers, (size_t)cap * sizeof *grown);

        if (grown == NULL)
            return ep_error_set(err, EP_ENOMEM,
                                "layer '%s': out of memory", name);
        net->layers = grown;
        net->cap_layers = cap;
    }

    layer = &net->layers[net->n_layers];
    memset(layer, 0, sizeof *layer);
    layer->op = op;
    strcpy(layer->name, name);
    for (i = 0; i < n_inputs; i++)
        layer->inputs[i] = inputs[i];
    layer->n_inputs = n_inputs;
    if (n_inputs > 0) {
        layer->in_channels = net->layers[inputs[0]].channels;
        layer->channels = layer->in_channels;
        layer->rate_div = net->layers[inputs[0]].rate_div;
    } else {
        layer->rate_div = 1;
    }
    return net->n_layers++;
}

int ep_net_add_input(ep_net *net, int channels, const char *name,
                     ep_error *err)
{
    int idx;

    if (channels <= 0 || channels > EP_NET_MAX_CHANNELS)
        return ep_error_set(err, EP_EINVAL,
                            "input '%s': %d channels, expected 1..%d",
                            name ? name : "", channels, EP_NET_MAX_CHANNELS);
    idx = append_layer(net, EP_OP_INPUT, NULL, 0, name, err);
    if (idx < 0)
        return idx;
    net->layers[idx].channels = channels;
    return idx;
}

/* A net conv must turn length L into exactly L / stride for every L that is
 * a multiple of stride, so that lengths follow from rate_div alone.  With
 * explicit padding p this holds when span - stride <= 2p <= span - 1,
 * span being the dilated kernel's extent. */
static int conv_padding_ok(int kernel, int stride, int dilation, int padding)
{
    long span = (long)dilation * (kernel - 1) + 1;

    if (padding == EP_PAD_SAME)
        return 1;
    return padding >= 0 && span - stride <= 2L * padding &&
           2L * padding <= span - 1;
}

int ep_net_add_conv(ep_net *net, int input, int out_channels, int kernel,
                    int stride, int dilation, int padding, const char *name,
                    ep_error *err)
{
    ep_layer *layer;
    int idx;

    if (out_channels <= 0 || out_channels > EP_NET_MAX_CHANNELS ||
        kernel <= 0 || kernel > EP_NET_MAX_KERNEL || stride <= 0 ||
        stride > EP_NET_MAX_STRIDE || dilation <= 0 ||
        dilation > EP_NET_MAX_DILATION)
        return ep_error_set(err, EP_EINVAL,
                            "conv '%s': channels %d (1..%d), kernel %d "
                            "(1..%d), stride %d (1..%d), dilation %d "
                            "(1..%d) out of range", name ? name : "",
                            out_channels, EP_NET_MAX_CHANNELS, kernel,
                            EP_NET_MAX_KERNEL, stride, EP_NET_MAX_STRIDE,
                            dilation, EP_NET_MAX_DILATION);
    if (!conv_padding_ok(kernel, stride, dilation, padding))
        return ep_error_set(err, EP_EINVAL,
                            "conv '%s': padding %d does not map length L "
                            "to L/%d for kernel %d dilation %d",
                            name ? name : "", padding, stride, kernel,
                            dilation);
    idx = append_layer(net, EP_OP_CONV, &input, 1, name, err);
    if (idx < 0)
        return idx;
    layer = &net->layers[idx];
    if ((long)layer->rate_div * stride > EP_NET_MAX_RATE_DIV) {
        net->n_layers--;
        return ep_error_set(err, EP_ERANGE,
                            "conv '%s': rate divisor over %d", name,
                            EP_NET_MAX_RATE_DIV);
    }
    layer->channels = out_channels;
    layer->kernel = kernel;
    layer->stride = stride;
    layer->dilation = dilation;
    layer->padding = padding;
    layer->rate_div *= stride;
    layer->weight = calloc(ep_net_conv_weight_floats(layer),
                           sizeof *layer->weight);
    layer->bias = calloc((size_t)out_channels, sizeof *layer->bias);
    if (layer->weight == NULL || layer->bias == NULL) {
        ep_net_layer_free_weights(layer);
        net->n_layers--;
        return ep_error_set(err, EP_ENOMEM, "conv '%s': out of memory",
                            name);
    }
    return idx;
}

int ep_net_add_bn(ep_net *net, int input, const char *name, ep_error *err)
{
    ep_layer *layer;
    int idx = append_layer(net, EP_OP_BN, &input, 1, name, err);
    size_t ch, c;

    if (idx < 0)
        return idx;
    layer = &net->layers[idx];
    ch = (size_t)layer->channels;
    layer->eps = 1e-5f;
    layer->gamma = malloc(ch * sizeof *layer->gamma);
    layer->beta = calloc(ch, sizeof *layer->beta);
    layer->mean = calloc(ch, sizeof *layer->mean);
    layer->var = malloc(ch * sizeof *layer->var);
    if (layer->gamma == NULL || layer->beta == NULL || layer->mean == NULL ||
        layer->var == NULL) {
        ep_net_layer_free_weights(layer);
        net->n_layers--;
        return ep_error_set(err, EP_ENOMEM, "bn '%s': out of memory", name);
    }
    for (c = 0; c < ch; c++) {
        layer->gamma[c] = 1.0f;
        layer->var[c] = 1.0f;
    }
    return idx;
}

int ep_net_add_relu(ep_net *net, int input, const char *name, ep_error *err)
{
    return append_layer(net, EP_OP_RELU, &input, 1, name, err);
}

static int wavelet_known(ep_wavelet w)
{
    return w == EP_WAVELET_HAAR || w == EP_WAVELET_DB2 ||
           w == EP_WAVELET_DB4;
}

int ep_net_add_dwt(ep_net *net, int input, ep_wavelet w, const char *name,
                   ep_error *err)
{
    ep_layer *layer;
    int idx;

    if (!wavelet_known(w))
        return ep_error_set(err, EP_EINVAL, "dwt '%s': unknown wavelet %d",
                            name ? name : "", (int)w);
    idx = append_layer(net, EP_OP_DWT, &input, 1, name, err);
    if (idx < 0)
        return idx;
    layer = &net->layers[idx];
    if (2L * layer->in_channels > EP_NET_MAX_CHANNELS ||
        2L * layer->rate_div > EP_NET_MAX_RATE_DIV) {
        net->n_layers--;
        return ep_error_set(err, EP_ERANGE,
                            "dwt '%s': %d channels or rate divisor %d too "
                            "large", name, 2 * layer->in_channels,
                            2 * layer->rate_div);
    }
    layer->wavelet = w;
    layer->channels = 2 * layer->in_channels;
    layer->rate_div *= 2;
    return idx;
}

int ep_net_add_idwt(ep_net *net, int input, ep_wavelet w, const char *name,
                    ep_error *err)
{
    ep_layer *layer;
    int idx;

    if (!wavelet_known(w))
        return ep_error_set(err, EP_EINVAL, "idwt '%s': unknown wavelet %d",
                            name ? name : "", (int)w);
    idx = append_layer(net, EP_OP_IDWT, &input, 1, name, err);
    if (idx < 0)
        return idx;
    layer = &net->layers[idx];
    if (layer->in_channels % 2 != 0 || layer->rate_div % 2 != 0) {
        int in_ch = layer->in_channels, rate = layer->rate_div;

        net->n_layers--;
        return ep_error_set(err, EP_EINVAL,
                            "idwt '%s': needs an even channel count and a "
                            "halved rate, got %d channels at rate 1/%d",
                            name, in_ch, rate);
    }
    layer->wavelet = w;
    layer->channels = layer->in_channels / 2;
    layer->rate_div /= 2;
    return idx;
}

int ep_net_add_concat(ep_net *net, const int *inputs, int n_inputs,
                      const char *name, ep_error *err)
{
    ep_layer *layer;
    long total = 0;
    int idx, i;

    if (n_inputs < 1)
        return ep_error_set(err, EP_EINVAL, "concat '%s': no inputs",
                            name ? name : "");
    idx = append_layer(net, EP_OP_CONCAT, inputs, n_inputs, name, err);
    if (idx < 0)
        return idx;
    layer = &net->layers[idx];
    for (i = 0; i < n_inputs; i++) {
        const ep_layer *in = &net->layers[inputs[i]];

        if (in->rate_div != layer->rate_div) {
            net->n_layers--;
            return ep_error_set(err, EP_EINVAL,
                                "concat '%s': input '%s' at rate 1/%d, "
                                "expected 1/%d", name, in->name,
                                in->rate_div, layer->rate_div);
        }
        total += in->channels;
    }
    if (total > EP_NET_MAX_CHANNELS) {
        net->n_layers--;
        return ep_error_set(err, EP_ERANGE,
                            "concat '%s': %ld channels, at most %d", name,
                            total, EP_NET_MAX_CHANNELS);
    }
    layer->in_channels = (int)total;
    layer->channels = (int)total;
    return idx;
}

int ep_net_set_output(ep_net *net, int layer, ep_error *err)
{
    if (layer < 0 || layer >= net->n_layers)
        return ep_error_set(err, EP_EINVAL,
                            "output layer %d out of range (0..%d)", layer,
                            net->n_layers - 1);
    if (net->layers[layer].rate_div != 1)
        return ep_error_set(err, EP_EINVAL,
                            "output layer '%s' runs at rate 1/%d, expected "
                            "the input rate", net->layers[layer].name,
                            net->layers[layer].rate_div);
    net->output = layer;
    return EP_OK;
}

static int gcd_int(int a, int b)
{
    while (b != 0) {
        int r = a % b;

        a = b;
        b = r;
    }
    return a;
}

/* Every layer's input length must divide by its own reduction, which holds
 * when the network input length is a multiple of every rate divisor. */
int ep_net_length_multiple(const ep_net *net)
{
    long lcm = 1;
    int i;

    for (i = 0; i < net->n_layers; i++) {
        int r = net->layers[i].rate_div;

        lcm = lcm / gcd_int((int)lcm, r) * r;
        if (lcm > EP_NET_MAX_RATE_DIV)
            return EP_NET_MAX_RATE_DIV;
    }
    return (int)lcm;
}

int64_t ep_net_parameters(const ep_net *net)
{
    int64_t total = 0;
    int i;

    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];

        if (l->op == EP_OP_CONV)
            total += (int64_t)ep_net_conv_weight_floats(l) + l->channels;
        else if (l->op == EP_OP_BN)
            total += 4 * (int64_t)l->channels;
    }
    return total;
}

double ep_net_macs_per_second(const ep_net *net)
{
    double total = 0.0;
    int i;

    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];

        if (l->op == EP_OP_CONV)
            total += (double)ep_net_conv_weight_floats(l) *
                     net->meta.sampling_rate / l->rate_div;
    }
    return total;
}

double ep_net_window_bytes(const ep_net *net, int window, int im2col)
{
    double floats = 0.0;
    int i;

    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];
        double per_sample = l->channels;

        if (l->op == EP_OP_CONV && im2col)
            per_sample += (double)l->in_channels * l->kernel;
        floats += per_sample * window / l->rate_div;
    }
    return floats * sizeof(float);
}

static const char *const op_names[] = {
    "input", "conv", "bn", "relu", "dwt", "idwt", "concat"
};
static const char *const wavelet_names[] = {"haar", "db2", "db4"};

const char *ep_op_name(ep_op op)
{
    if ((int)op < 0 || (size_t)op >= sizeof op_names / sizeof *op_names)
        return "unknown";
    return op_names[op];
}

int ep_op_from_name(const char *s, ep_op *op)
{
    size_t i;

    for (i = 0; i < sizeof op_names / sizeof *op_names; i++)
        if (strcmp(s, op_names[i]) == 0) {
            *op = (ep_op)i;
            return EP_OK;
        }
    return EP_ENOTFOUND;
}

const char *ep_wavelet_name(ep_wavelet w)
{
    if ((int)w < 0 ||
        (size_t)w >= sizeof wavelet_names / sizeof *wavelet_names)
        return "unknown";
    return wavelet_names[w];
}

int ep_wavelet_from_name(const char *s, ep_wavelet *w)
{
    size_t i;

    for (i = 0; i < sizeof wavelet_names / sizeof *wavelet_names; i++)
        if (strcmp(s, wavelet_names[i]) == 0) {
            *w = (ep_wavelet)i;
            return EP_OK;
        }
    return EP_ENOTFOUND;
}
