/*
 * ep_unet.c - the wavelet U-Net builder: an encoder whose levels are
 * separated by DWTs (which halve the rate and double the channels), a
 * decoder that returns through IDWTs and concatenates the encoder's skip
 * outputs, and a 1x1 head giving per-sample class logits.
 */
#include "ecgprune/ep_net.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ecgprune/ep_rng.h"
#include "ep_net_priv.h"

void ep_unet_default_config(ep_unet_config *cfg)
{
    static const char *const classes[] = {"bg", "N", "S", "V", "F", "Q"};
    int i;

    memset(cfg, 0, sizeof *cfg);
    cfg->depth = 4;
    cfg->widths[0] = 16;
    cfg->widths[1] = 32;
    cfg->widths[2] = 64;
    cfg->widths[3] = 128;
    cfg->kernel = 9;
    cfg->convs_per_level = 2;
    cfg->wavelet = EP_WAVELET_DB2;
    cfg->meta.sampling_rate = 360.0;
    cfg->meta.window = 2048;
    cfg->meta.n_classes = 6;
    for (i = 0; i < 6; i++)
        strcpy(cfg->meta.classes[i], classes[i]);
    cfg->meta.highpass_hz = 0.5;
    cfg->meta.input_scale = 1.0;
}

static int check_config(const ep_unet_config *cfg, ep_error *err)
{
    int l;

    if (cfg->depth < 2 || cfg->depth > EP_UNET_MAX_DEPTH)
        return ep_error_set(err, EP_EINVAL, "unet: depth %d, expected 2..%d",
                            cfg->depth, EP_UNET_MAX_DEPTH);
    for (l = 0; l < cfg->depth; l++)
        if (cfg->widths[l] <= 0 || 2 * cfg->widths[l] > EP_NET_MAX_CHANNELS)
            return ep_error_set(err, EP_EINVAL,
                                "unet: widths[%d] = %d, expected 1..%d", l,
                                cfg->widths[l], EP_NET_MAX_CHANNELS / 2);
    if (cfg->convs_per_level < 1 || cfg->convs_per_level > 16)
        return ep_error_set(err, EP_EINVAL,
                            "unet: convs_per_level %d, expected 1..16",
                            cfg->convs_per_level);
    if (cfg->meta.n_classes < 1 || cfg->meta.n_classes > EP_MAX_CLASSES)
        return ep_error_set(err, EP_EINVAL,
                            "unet: %d classes, expected 1..%d",
                            cfg->meta.n_classes, EP_MAX_CLASSES);
    if (!(cfg->meta.sampling_rate > 0.0))
        return ep_error_set(err, EP_EINVAL, "unet: sampling rate %g, "
                            "expected more than 0", cfg->meta.sampling_rate);
    if (cfg->meta.window <= 0 ||
        cfg->meta.window % (1 << (cfg->depth - 1)) != 0)
        return ep_error_set(err, EP_EINVAL, "unet: window %d, expected a "
                            "multiple of %d (2^(levels-1): each level halves "
                            "the length)", cfg->meta.window,
                            1 << (cfg->depth - 1));
    return EP_OK;
}

/* He (Kaiming) normal initialisation for a ReLU network: weights with
 * standard deviation sqrt(2 / fan_in), biases zero. */
static void he_init(ep_net *net, ep_rng *rng)
{
    int i;
    size_t j, n;

    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];
        double sd;

        if (l->op != EP_OP_CONV)
            continue;
        sd = sqrt(2.0 / ((double)l->in_channels * l->kernel));
        n = ep_net_conv_weight_floats(l);
        for (j = 0; j < n; j++)
            l->weight[j] = (float)(sd * ep_rng_normal(rng));
    }
}

/* convs_per_level blocks of conv, BN, ReLU named PREFIX.conv{k} etc.;
 * returns the index of the last ReLU or a negative code. */
static int add_blocks(ep_net *net, const ep_unet_config *cfg, int src,
                      const char *prefix, int width, ep_error *err)
{
    char name[EP_NAME_MAX];
    int k;

    for (k = 0; k < cfg->convs_per_level; k++) {
        snprintf(name, sizeof name, "%s.conv%d", prefix, k);
        src = ep_net_add_conv(net, src, width, cfg->kernel, 1, 1,
                              EP_PAD_SAME, name, err);
        if (src < 0)
            return src;
        snprintf(name, sizeof name, "%s.bn%d", prefix, k);
        src = ep_net_add_bn(net, src, name, err);
        if (src < 0)
            return src;
        snprintf(name, sizeof name, "%s.relu%d", prefix, k);
        src = ep_net_add_relu(net, src, name, err);
        if (src < 0)
            return src;
    }
    return src;
}

static int build_layers(ep_net *net, const ep_unet_config *cfg,
                        ep_error *err)
{
    int skip[EP_UNET_MAX_DEPTH];
    char name[EP_NAME_MAX];
    int src, l, pair[2];

    /* Encoder: each level ends in a DWT except the bottleneck. */
    src = ep_net_add_input(net, 1, "input", err);
    for (l = 0; l < cfg->depth && src >= 0; l++) {
        snprintf(name, sizeof name, "enc%d", l);
        src = add_blocks(net, cfg, src, name, cfg->widths[l], err);
        if (src < 0)
            return src;
        skip[l] = src;
        if (l < cfg->depth - 1) {
            snprintf(name, sizeof name, "dwt%d", l);
            src = ep_net_add_dwt(net, src, cfg->wavelet, name, err);
        }
    }

    /* Decoder: up-conv to 2*width, IDWT back to width at the finer rate,
     * concatenate the encoder's output of that level. */
    for (l = cfg->depth - 2; l >= 0 && src >= 0; l--) {
        snprintf(name, sizeof name, "up%d", l);
        src = ep_net_add_conv(net, src, 2 * cfg->widths[l], cfg->kernel, 1,
                              1, EP_PAD_SAME, name, err);
        if (src < 0)
            return src;
        snprintf(name, sizeof name, "idwt%d", l);
        src = ep_net_add_idwt(net, src, cfg->wavelet, name, err);
        if (src < 0)
            return src;
        pair[0] = src;
        pair[1] = skip[l];
        snprintf(name, sizeof name, "cat%d", l);
        src = ep_net_add_concat(net, pair, 2, name, err);
        if (src < 0)
            return src;
        snprintf(name, sizeof name, "dec%d", l);
        src = add_blocks(net, cfg, src, name, cfg->widths[l], err);
    }
    if (src < 0)
        return src;
    src = ep_net_add_conv(net, src, cfg->meta.n_classes, 1, 1, 1, 0, "head",
                          err);
    if (src < 0)
        return src;
    return ep_net_set_output(net, src, err);
}

int ep_unet_build(const ep_unet_config *cfg, uint64_t seed, ep_net **out,
                  ep_error *err)
{
    ep_net *net;
    ep_rng rng;
    int rc;

    *out = NULL;
    rc = check_config(cfg, err);
    if (rc != EP_OK)
        return rc;
    rc = ep_net_create(&net, err);
    if (rc != EP_OK)
        return rc;
    net->meta = cfg->meta;
    rc = build_layers(net, cfg, err);
    if (rc < 0) {
        ep_net_free(net);
        return rc;
    }
    ep_rng_seed(&rng, seed);
    he_init(net, &rng);
    *out = net;
    return EP_OK;
}
