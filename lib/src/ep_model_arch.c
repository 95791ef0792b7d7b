/*
 * ep_model_arch.c - the architecture JSON of a model file: the graph's
 * layers, their hyper-parameters and the network's metadata, written from
 * an ep_net and rebuilt into one through the ep_net_add_* functions (which
 * check every shape), with each field validated on the way in.
 *
 * Shape of the document (keys in this order):
 *   {"layers": [{"name": "input", "op": "input", "channels": 1},
 *               {"name": "enc0.conv0", "op": "conv", "inputs": [0],
 *                "channels": 16, "kernel": 9, "stride": 1, "dilation": 1,
 *                "padding": "same"},
 *               {"name": "enc0.bn0", "op": "bn", "inputs": [1],
 *                "channels": 16, "eps": 1e-05},
 *               {"name": "dwt0", "op": "dwt", "inputs": [3],
 *                "channels": 32, "wavelet": "db2"}, ...],
 *    "output": 60, "sampling_rate": 360, "window": 2048,
 *    "classes": ["bg", "N", ...], "highpass_hz": 0.5, "input_scale": 1}
 */
#include "ep_model_priv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ep_net_priv.h"

static json_t *layer_to_json(const ep_layer *l)
{
    json_t *obj = json_object(), *inputs;
    int j;

    json_object_set_new(obj, "name", json_string(l->name));
    json_object_set_new(obj, "op", json_string(ep_op_name(l->op)));
    if (l->n_inputs > 0) {
        inputs = json_array();
        for (j = 0; j < l->n_inputs; j++)
            json_array_append_new(inputs, json_integer(l->inputs[j]));
        json_object_set_new(obj, "inputs", inputs);
    }
    json_object_set_new(obj, "channels", json_integer(l->channels));
    switch (l->op) {
    case EP_OP_CONV:
        json_object_set_new(obj, "kernel", json_integer(l->kernel));
        json_object_set_new(obj, "stride", json_integer(l->stride));
        json_object_set_new(obj, "dilation", json_integer(l->dilation));
        json_object_set_new(obj, "padding",
                            l->padding == EP_PAD_SAME
                                ? json_string("same")
                                : json_integer(l->padding));
        break;
    case EP_OP_BN:
        /* Limitation: eps is a float widened to double, so 1e-5 is written
         * as 9.9999997473787516e-06; it reads back to the same float. */
        json_object_set_new(obj, "eps", json_real(l->eps));
        break;
    case EP_OP_DWT:
    case EP_OP_IDWT:
        json_object_set_new(obj, "wavelet",
                            json_string(ep_wavelet_name(l->wavelet)));
        break;
    default:
        break;
    }
    return obj;
}

json_t *ep_model_arch_to_json(const ep_net *net)
{
    json_t *root = json_object(), *layers = json_array(), *classes;
    int i;

    for (i = 0; i < net->n_layers; i++)
        json_array_append_new(layers, layer_to_json(&net->layers[i]));
    json_object_set_new(root, "layers", layers);
    json_object_set_new(root, "output", json_integer(net->output));
    json_object_set_new(root, "sampling_rate",
                        json_real(net->meta.sampling_rate));
    json_object_set_new(root, "window", json_integer(net->meta.window));
    classes = json_array();
    for (i = 0; i < net->meta.n_classes; i++)
        json_array_append_new(classes, json_string(net->meta.classes[i]));
    json_object_set_new(root, "classes", classes);
    json_object_set_new(root, "highpass_hz",
                        json_real(net->meta.highpass_hz));
    json_object_set_new(root, "input_scale",
                        json_real(net->meta.input_scale));
    return root;
}

int ep_model_architecture_json(const ep_net *net, char **json,
                               ep_error *err)
{
    json_t *root = ep_model_arch_to_json(net);

    *json = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER)
                 : NULL;
    json_decref(root);
    if (*json == NULL)
        return ep_error_set(err, EP_ENOMEM, "architecture: out of memory");
    return EP_OK;
}

/* An integer field of obj in lo..hi; `where` names the object. */
static int get_int(const json_t *obj, const char *key, long lo, long hi,
                   const char *where, int *out, ep_error *err)
{
    const json_t *v = json_object_get(obj, key);
    json_int_t x;

    if (v == NULL)
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: missing "
                            "field '%s'", where, key);
    if (!json_is_integer(v))
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: field '%s' "
                            "must be an integer", where, key);
    x = json_integer_value(v);
    if (x < lo || x > hi)
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: field '%s' "
                            "= %lld, expected %ld..%ld", where, key,
                            (long long)x, lo, hi);
    *out = (int)x;
    return EP_OK;
}

/* A finite number field of obj in lo..hi. */
static int get_num(const json_t *obj, const char *key, double lo, double hi,
                   const char *where, double *out, ep_error *err)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL || !json_is_number(v))
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: field '%s' "
                            "must be a number", where, key);
    *out = json_number_value(v);
    if (!isfinite(*out) || *out < lo || *out > hi)
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: field '%s' "
                            "= %g, expected %g..%g", where, key, *out, lo,
                            hi);
    return EP_OK;
}

static int get_str(const json_t *obj, const char *key, const char *where,
                   const char **out, ep_error *err)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL || !json_is_string(v))
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: field '%s' "
                            "must be a string", where, key);
    *out = json_string_value(v);
    return EP_OK;
}

static int get_wavelet(const json_t *obj, const char *where, ep_wavelet *w,
                       ep_error *err)
{
    const char *s = NULL;
    int rc = get_str(obj, "wavelet", where, &s, err);

    if (rc == EP_OK && ep_wavelet_from_name(s, w) != EP_OK)
        rc = ep_error_set(err, EP_EFORMAT, "architecture: %s: unknown "
                          "wavelet '%s' (haar, db2, db4)", where, s);
    return rc;
}

/* The graph functions report a bad graph as EP_EINVAL; in a file it is
 * malformed input. */
static int graph_error(ep_error *err, int code, const char *where)
{
    if (code != EP_ENOMEM)
        code = EP_EFORMAT;
    ep_error_prefix(err, "architecture: %s", where);
    if (err != NULL)
        err->code = code;
    return code;
}

/* Take a layer's parameter count from what the file's data section can
 * hold, before the layer's arrays are allocated: a short file must not
 * make the loader allocate gigabytes of zeroed weights.  Limitation: the
 * layer named is where the count ran out, not necessarily the one whose
 * tensor is missing or short (the tensor table is read after the
 * architecture, which it needs), so the message says both. */
static int take_params(size_t *budget, size_t need, const char *where,
                       ep_error *err)
{
    if (need > *budget)
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: needs %zu "
                            "parameters, but the file's data section holds "
                            "only %zu more: a tensor of this layer or of one "
                            "before it is missing from the file or smaller "
                            "than the architecture declares", where, need,
                            *budget);
    *budget -= need;
    return EP_OK;
}

/* Names in a file are shown in tables and JSON: printable ASCII without
 * blanks, so that a file cannot slip terminal escapes into a listing. */
static int is_plain_name(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s < '!' || *s > '~')
            return 0;
    return 1;
}

/* Conv hyper-parameters; padding is "same" or a count. */
static int add_conv_json(ep_net *net, const json_t *obj, int input,
                         const char *name, const char *where,
                         size_t *budget, ep_error *err)
{
    const json_t *pad = json_object_get(obj, "padding");
    int ch = 0, kernel = 0, stride = 0, dilation = 0, rc;
    int padding = EP_PAD_SAME;

    rc = get_int(obj, "channels", 1, EP_NET_MAX_CHANNELS, where, &ch, err);
    if (rc == EP_OK)
        rc = get_int(obj, "kernel", 1, EP_NET_MAX_KERNEL, where, &kernel,
                     err);
    if (rc == EP_OK)
        rc = get_int(obj, "stride", 1, EP_NET_MAX_STRIDE, where, &stride,
                     err);
    if (rc == EP_OK)
        rc = get_int(obj, "dilation", 1, EP_NET_MAX_DILATION, where,
                     &dilation, err);
    if (rc != EP_OK)
        return rc;
    if (json_is_string(pad) && strcmp(json_string_value(pad), "same") == 0)
        padding = EP_PAD_SAME;
    else if (json_is_integer(pad))
        rc = get_int(obj, "padding", 0,
                     (long)EP_NET_MAX_KERNEL * EP_NET_MAX_DILATION, where,
                     &padding, err);
    else
        rc = ep_error_set(err, EP_EFORMAT, "architecture: %s: field "
                          "'padding' must be \"same\" or an integer", where);
    if (rc == EP_OK)
        rc = take_params(budget, (size_t)ch * (size_t)kernel *
                                     (size_t)net->layers[input].channels +
                                     (size_t)ch, where, err);
    if (rc != EP_OK)
        return rc;
    rc = ep_net_add_conv(net, input, ch, kernel, stride, dilation, padding,
                         name, err);
    return rc < 0 ? graph_error(err, rc, where) : rc;
}

/* The layer's inputs: an array of 1..EP_MAX_INPUTS earlier indices. */
static int get_inputs(const json_t *obj, int self, const char *where,
                      int *inputs, int *n, ep_error *err)
{
    const json_t *arr = json_object_get(obj, "inputs");
    size_t i;

    if (!json_is_array(arr) || json_array_size(arr) < 1 ||
        json_array_size(arr) > EP_MAX_INPUTS)
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: 'inputs' "
                            "must be an array of 1..%d layer indices", where,
                            EP_MAX_INPUTS);
    for (i = 0; i < json_array_size(arr); i++) {
        const json_t *v = json_array_get(arr, i);

        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= self)
            return ep_error_set(err, EP_EFORMAT, "architecture: %s: input "
                                "%zu must index an earlier layer (0..%d)",
                                where, i, self - 1);
        inputs[i] = (int)json_integer_value(v);
    }
    *n = (int)json_array_size(arr);
    return EP_OK;
}

/* Add one layer described by obj as layer number `self`. */
static int add_layer_json(ep_net *net, const json_t *obj, int self,
                          size_t *budget, ep_error *err)
{
    char where[96];
    const char *name = NULL, *op_name = NULL;
    int inputs[EP_MAX_INPUTS] = {0}, n_inputs = 0, rc, idx, ch = 0;
    double eps = 0.0;
    ep_wavelet w = EP_WAVELET_HAAR;
    ep_op op = EP_OP_INPUT;

    snprintf(where, sizeof where, "layer %d", self);
    if (!json_is_object(obj))
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: not an "
                            "object", where);
    rc = get_str(obj, "name", where, &name, err);
    if (rc == EP_OK)
        rc = get_str(obj, "op", where, &op_name, err);
    if (rc != EP_OK)
        return rc;
    if (!is_plain_name(name))
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: 'name' must "
                            "be printable ASCII without blanks", where);
    snprintf(where, sizeof where, "layer %d ('%.48s')", self, name);
    if (ep_op_from_name(op_name, &op) != EP_OK)
        return ep_error_set(err, EP_EFORMAT, "architecture: %s: unknown op "
                            "'%.32s'", where, op_name);
    if (op != EP_OP_INPUT) {
        rc = get_inputs(obj, self, where, inputs, &n_inputs, err);
        if (rc != EP_OK)
            return rc;
        if (op != EP_OP_CONCAT && n_inputs != 1)
            return ep_error_set(err, EP_EFORMAT, "architecture: %s: op '%s' "
                                "takes one input", where, op_name);
    }

    switch (op) {
    case EP_OP_INPUT:
        rc = get_int(obj, "channels", 1, EP_NET_MAX_CHANNELS, where, &ch,
                     err);
        idx = rc == EP_OK ? ep_net_add_input(net, ch, name, err) : rc;
        break;
    case EP_OP_CONV:
        idx = add_conv_json(net, obj, inputs[0], name, where, budget, err);
        rc = idx;   /* its errors already name the layer */
        break;
    case EP_OP_BN:
        rc = get_num(obj, "eps", 1e-12, 1.0, where, &eps, err);
        if (rc == EP_OK)
            rc = take_params(budget,
                             4 * (size_t)net->layers[inputs[0]].channels,
                             where, err);
        idx = rc == EP_OK ? ep_net_add_bn(net, inputs[0], name, err) : rc;
        if (idx >= 0)
            net->layers[idx].eps = (float)eps;
        break;
    case EP_OP_RELU:
        idx = ep_net_add_relu(net, inputs[0], name, err);
        break;
    case EP_OP_DWT:
    case EP_OP_IDWT:
        rc = get_wavelet(obj, where, &w, err);
        if (rc != EP_OK)
            idx = rc;
        else if (op == EP_OP_DWT)
            idx = ep_net_add_dwt(net, inputs[0], w, name, err);
        else
            idx = ep_net_add_idwt(net, inputs[0], w, name, err);
        break;
    default:
        idx = ep_net_add_concat(net, inputs, n_inputs, name, err);
        break;
    }
    /* Errors of the graph functions do not name the layer yet; those of
     * the field checks (rc < 0) do. */
    if (idx < 0)
        return rc < 0 ? idx : graph_error(err, idx, where);

    /* The stated channel count must match the inferred one. */
    rc = get_int(obj, "channels", 1, EP_NET_MAX_CHANNELS, where, &ch, err);
    if (rc == EP_OK && ch != net->layers[idx].channels)
        rc = ep_error_set(err, EP_EFORMAT, "architecture: %s: 'channels' "
                          "is %d but the inputs give %d", where, ch,
                          net->layers[idx].channels);
    return rc;
}

static int meta_from_json(ep_net *net, const json_t *root, ep_error *err)
{
    const json_t *classes = json_object_get(root, "classes");
    ep_net_meta *m = &net->meta;
    size_t i;
    int rc;

    rc = get_num(root, "sampling_rate", 1e-3, 1e6, "network",
                 &m->sampling_rate, err);
    if (rc == EP_OK)
        rc = get_int(root, "window", 1, 1 << 26, "network", &m->window,
                     err);
    if (rc == EP_OK)
        rc = get_num(root, "highpass_hz", 0.0, 1e5, "network",
                     &m->highpass_hz, err);
    if (rc == EP_OK)
        rc = get_num(root, "input_scale", -1e12, 1e12, "network",
                     &m->input_scale, err);
    if (rc != EP_OK)
        return rc;
    if (m->input_scale == 0.0)
        return ep_error_set(err, EP_EFORMAT, "architecture: network: "
                            "'input_scale' must not be 0");
    if (m->window % ep_net_length_multiple(net) != 0)
        return ep_error_set(err, EP_EFORMAT, "architecture: network: "
                            "'window' %d is not a multiple of %d",
                            m->window, ep_net_length_multiple(net));
    if (!json_is_array(classes) || json_array_size(classes) < 1 ||
        json_array_size(classes) > EP_MAX_CLASSES)
        return ep_error_set(err, EP_EFORMAT, "architecture: network: "
                            "'classes' must be an array of 1..%d names",
                            EP_MAX_CLASSES);
    m->n_classes = (int)json_array_size(classes);
    for (i = 0; i < json_array_size(classes); i++) {
        const json_t *c = json_array_get(classes, i);

        if (!json_is_string(c) || json_string_length(c) < 1 ||
            json_string_length(c) >= sizeof m->classes[0] ||
            strlen(json_string_value(c)) != json_string_length(c) ||
            !is_plain_name(json_string_value(c)))
            return ep_error_set(err, EP_EFORMAT, "architecture: network: "
                                "class %zu must be a name of 1..%zu "
                                "printable characters without blanks", i,
                                sizeof m->classes[0] - 1);
        strcpy(m->classes[i], json_string_value(c));
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->classes[j], m->classes[i]) == 0)
                return ep_error_set(err, EP_EFORMAT, "architecture: "
                                    "network: class '%s' is listed twice "
                                    "(classes %zu and %zu)", m->classes[i],
                                    j, i);
    }
    if (net->layers[net->output].channels != m->n_classes)
        return ep_error_set(err, EP_EFORMAT, "architecture: output layer "
                            "'%s' has %d channels for %d classes",
                            net->layers[net->output].name,
                            net->layers[net->output].channels,
                            m->n_classes);
    return EP_OK;
}

int ep_model_arch_from_json(const json_t *root, size_t max_params,
                            ep_net **out, ep_error *err)
{
    const json_t *layers = json_object_get(root, "layers");
    ep_net *net;
    size_t i;
    int rc, output = -1;

    *out = NULL;
    if (!json_is_object(root) || !json_is_array(layers) ||
        json_array_size(layers) < 1 ||
        json_array_size(layers) > EP_NET_MAX_LAYERS)
        return ep_error_set(err, EP_EFORMAT, "architecture: expected an "
                            "object with 'layers', an array of 1..%d layers",
                            EP_NET_MAX_LAYERS);
    rc = ep_net_create(&net, err);
    if (rc != EP_OK)
        return rc;
    for (i = 0; i < json_array_size(layers) && rc == EP_OK; i++)
        rc = add_layer_json(net, json_array_get(layers, i), (int)i,
                            &max_params, err);
    if (rc == EP_OK)
        rc = get_int(root, "output", 0, net->n_layers - 1, "network",
                     &output, err);
    if (rc == EP_OK && ep_net_set_output(net, output, err) != EP_OK)
        rc = graph_error(err, EP_EINVAL, "network");
    if (rc == EP_OK)
        rc = meta_from_json(net, root, err);
    if (rc != EP_OK) {
        ep_net_free(net);
        return rc < 0 ? rc : EP_EFORMAT;
    }
    *out = net;
    return EP_OK;
}
