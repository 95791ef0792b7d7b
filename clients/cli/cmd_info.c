/*
 * cmd_info.c - `ecgprune info MODEL [--json]`: what a model file holds:
 * its size (parameters, multiply-accumulates per second of ECG), what it
 * expects (sampling rate, window, preprocessing), its classes and its
 * layers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ecgprune/ep_model.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ecgprune info MODEL [--json]\n"
            "\n"
            "Describe a model file: parameter count, multiply-accumulates\n"
            "per second of ECG, sampling rate, window, classes and the\n"
            "layer table.\n"
            "\n"
            "  --json   one JSON object on stdout (with the architecture)\n");
}

/* Weights a layer owns. */
static long layer_parameters(const ep_layer *l)
{
    if (l->op == EP_OP_CONV)
        return (long)l->channels * l->in_channels * l->kernel + l->channels;
    if (l->op == EP_OP_BN)
        return 4L * l->channels;
    return 0;
}

static json_t *info_json(const ep_net *net, ep_error *err)
{
    json_t *obj, *classes, *arch;
    char *arch_text;
    int i;

    if (ep_model_architecture_json(net, &arch_text, err) != 0)
        return NULL;
    arch = json_loads(arch_text, 0, NULL);
    free(arch_text);
    obj = json_object();
    json_object_set_new(obj, "parameters",
                        json_integer(ep_net_parameters(net)));
    json_object_set_new(obj, "macs_per_second",
                        json_real(ep_net_macs_per_second(net)));
    json_object_set_new(obj, "sampling_rate",
                        json_real(net->meta.sampling_rate));
    json_object_set_new(obj, "window", json_integer(net->meta.window));
    json_object_set_new(obj, "length_multiple",
                        json_integer(ep_net_length_multiple(net)));
    json_object_set_new(obj, "highpass_hz",
                        json_real(net->meta.highpass_hz));
    json_object_set_new(obj, "input_scale",
                        json_real(net->meta.input_scale));
    classes = json_array();
    for (i = 0; i < net->meta.n_classes; i++)
        json_array_append_new(classes, json_string(net->meta.classes[i]));
    json_object_set_new(obj, "classes", classes);
    json_object_set_new(obj, "layers", json_integer(net->n_layers));
    json_object_set_new(obj, "architecture", arch ? arch : json_null());
    return obj;
}

static void print_text(const char *path, const ep_net *net)
{
    int i, j;

    printf("model            %s\n", path);
    printf("parameters       %lld\n", (long long)ep_net_parameters(net));
    printf("MACs per second  %.0f (of ECG at %g Hz)\n",
           ep_net_macs_per_second(net), net->meta.sampling_rate);
    printf("window           %d samples (length multiple %d)\n",
           net->meta.window, ep_net_length_multiple(net));
    printf("preprocessing    high-pass %g Hz, input scale %g\n",
           net->meta.highpass_hz, net->meta.input_scale);
    printf("classes         ");
    for (i = 0; i < net->meta.n_classes; i++)
        printf(" %s", net->meta.classes[i]);
    printf("\n\n%4s  %-16s %-7s %-12s %8s %5s %9s\n", "#", "name", "op",
           "inputs", "channels", "rate", "params");
    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];
        char inputs[64] = "-";
        size_t at = 0;

        for (j = 0; j < l->n_inputs && at < sizeof inputs; j++)
            at += (size_t)snprintf(inputs + at, sizeof inputs - at, "%s%d",
                                   j ? "," : "", l->inputs[j]);
        printf("%4d  %-16s %-7s %-12s %8d  1/%-2d %9ld%s\n", i, l->name,
               ep_op_name(l->op), inputs, l->channels, l->rate_div,
               layer_parameters(l), i == net->output ? "  (output)" : "");
    }
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0, i, rc;
    ep_error err = {0};
    ep_net *net;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("info", "unknown option '%s'", argv[i]);
        } else if (path == NULL) {
            path = argv[i];
        } else {
            return cli_usage_error("info", "one MODEL only, got '%s'",
                                   argv[i]);
        }
    }
    if (path == NULL)
        return cli_usage_error("info", "missing MODEL");
    if (cli_load_model(path, &net, &err) != 0)
        return cli_fail("info", &err);

    if (json) {
        json_t *obj = info_json(net, &err);

        rc = obj ? cli_print_json(obj) : cli_fail("info", &err);
    } else {
        print_text(path, net);
        rc = 0;
    }
    ep_net_free(net);
    return rc;
}
