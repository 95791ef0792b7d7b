/*
 * ep_net.h - 1-D network graphs: layers, channel counts, weights.
 *
 * A network is a list of layers in topological order.  Each layer reads the
 * outputs of earlier layers (by index) and produces one tensor of
 * `channels` x (input length / `rate_div`).  The pruning engine inspects and
 * rewrites this graph (drops channels of a convolution and of everything fed
 * by it), so the layer records are public; change them only through the
 * functions below, which keep shapes and weights consistent.
 *
 * Layout conventions used everywhere in the library:
 *   activations  [batch][channels][length], row-major float32;
 *   conv weight  [out_channels][in_channels][kernel];
 *   DWT output   the C approximation bands first, then the C detail bands;
 *   IDWT input   the same layout: 2C channels become C channels.
 */
#ifndef ECGPRUNE_EP_NET_H
#define ECGPRUNE_EP_NET_H

#include <stddef.h>
#include <stdint.h>

#include "ecgprune/ep_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EP_NAME_MAX 48
#define EP_MAX_INPUTS 4
#define EP_MAX_CLASSES 8
#define EP_PAD_SAME (-1)
/* Widest convolution kernel (taps) a network may have. */
#define EP_NET_MAX_KERNEL 1024

typedef enum ep_op {
    EP_OP_INPUT = 0,
    EP_OP_CONV,
    EP_OP_BN,
    EP_OP_RELU,
    EP_OP_DWT,
    EP_OP_IDWT,
    EP_OP_CONCAT
} ep_op;

typedef enum ep_wavelet {
    EP_WAVELET_HAAR = 0,
    EP_WAVELET_DB2,
    EP_WAVELET_DB4
} ep_wavelet;

/* One layer.  Weight pointers are owned by the network. */
typedef struct ep_layer {
    ep_op op;
    char name[EP_NAME_MAX];
    int inputs[EP_MAX_INPUTS];
    int n_inputs;
    int in_channels;   /* sum over inputs (concat) or the one input's */
    int channels;      /* output channels */
    int rate_div;      /* output length = network input length / rate_div */

    /* EP_OP_CONV */
    int kernel, stride, dilation, padding; /* padding: EP_PAD_SAME or >= 0 */
    float *weight;     /* channels x in_channels x kernel */
    float *bias;       /* channels */

    /* EP_OP_BN (per channel: y = gamma * (x - mean) / sqrt(var + eps) + beta) */
    float *gamma, *beta, *mean, *var;
    float eps;

    /* EP_OP_DWT, EP_OP_IDWT */
    ep_wavelet wavelet;
} ep_layer;

/* What the network expects of its input and what its outputs mean. */
typedef struct ep_net_meta {
    double sampling_rate;          /* Hz the network was trained at */
    int window;                    /* samples per inference window */
    int n_classes;                 /* output channels of the head */
    char classes[EP_MAX_CLASSES][8]; /* e.g. "bg","N","S","V","F","Q" */
    double highpass_hz;            /* baseline removal cut-off, 0 = none */
    double input_scale;            /* multiply mV by this before the net */
} ep_net_meta;

typedef struct ep_net {
    ep_layer *layers;
    int n_layers;
    int cap_layers;
    int output;                    /* index of the layer giving class scores */
    ep_net_meta meta;
} ep_net;

/* Graph construction.  The add functions return the new layer's index
 * (>= 0) or a negative EP_E* code with err filled. */
int ep_net_create(ep_net **out, ep_error *err);
void ep_net_free(ep_net *net);
int ep_net_clone(const ep_net *net, ep_net **out, ep_error *err);

int ep_net_add_input(ep_net *net, int channels, const char *name,
                     ep_error *err);
int ep_net_add_conv(ep_net *net, int input, int out_channels, int kernel,
                    int stride, int dilation, int padding, const char *name,
                    ep_error *err);
int ep_net_add_bn(ep_net *net, int input, const char *name, ep_error *err);
int ep_net_add_relu(ep_net *net, int input, const char *name, ep_error *err);
int ep_net_add_dwt(ep_net *net, int input, ep_wavelet w, const char *name,
                   ep_error *err);
int ep_net_add_idwt(ep_net *net, int input, ep_wavelet w, const char *name,
                    ep_error *err);
int ep_net_add_concat(ep_net *net, const int *inputs, int n_inputs,
                      const char *name, ep_error *err);
int ep_net_set_output(ep_net *net, int layer, ep_error *err);

/* Index of the layer with this name, or EP_ENOTFOUND. */
int ep_net_find(const ep_net *net, const char *name);

/* Largest power of two the input length must be a multiple of. */
int ep_net_length_multiple(const ep_net *net);

/* Number of weights (conv weights and biases, BN affine and statistics). */
int64_t ep_net_parameters(const ep_net *net);

/* Multiply-accumulates of the convolutions for one second of ECG at
 * meta.sampling_rate (wavelet filters, BN and ReLU are not counted). */
double ep_net_macs_per_second(const ep_net *net);

/* Bytes one window of `window` samples takes in a forward pass: every
 * layer's output at the layer's rate, plus with im2col each
 * convolution's unfolded input (inference's generous bound).  The model
 * file bounds the weights but not these: a small file can declare a long
 * window and wide layers. */
double ep_net_window_bytes(const ep_net *net, int window, int im2col);

/* Fold every BN that directly follows a conv whose only reader it is into
 * that conv and remove those BN layers from the graph (inputs and the
 * output index are renumbered; other BN layers stay). */
int ep_net_fold_bn(ep_net *net, ep_error *err);

/*
 * Keep only the listed output channels of conv layer `layer` and remove the
 * matching input channels everywhere they flow (through BN, ReLU, DWT,
 * IDWT, concat) down to the consuming convolutions.  `keep` holds
 * n_keep distinct indices in increasing order; channels tied by an IDWT
 * (see ep_net_tied_channels) must be kept or dropped together.  The
 * result computes what the original net computes with the dropped
 * channels' values zeroed where they enter the consumers: nothing is
 * refitted or folded into the consumers' biases.
 */
int ep_net_keep_channels(ep_net *net, int layer, const int *keep, int n_keep,
                         ep_error *err);

/*
 * The channel map of a producer convolution, which pruning needs.  A
 * producer's output channels flow through channel-wise layers (BN, ReLU,
 * DWT, IDWT, concat) to the input channels of one or more consumer
 * convolutions.  ep_net_consumers lists, for each consumer conv, every
 * (producer channel, consumer input channel) pair such that the consumer
 * input channel is derived from that producer channel:
 *   BN, ReLU:  channel c stays channel c;
 *   DWT:       channel c of a C-channel input becomes channels c and c + C;
 *   IDWT:      channels c and c + C of a 2C-channel input become channel c,
 *              so one consumer input may derive from two producer channels
 *              (they must then be kept or dropped together);
 *   concat:    channel c of input j becomes c + (channels of inputs < j).
 * A consumer reading the producer along two paths gets the links of both.
 * Links are sorted by producer channel, then consumer channel, without
 * duplicates.  Fails with EP_EINVAL when `layer` is not a conv, when its
 * channels reach the network output without passing a conv, or when an
 * IDWT pairs one of its channels with a channel of another layer.
 */
typedef struct ep_channel_link {
    int producer_ch;   /* output channel of the producer conv */
    int consumer_ch;   /* consumer input channel derived from it */
} ep_channel_link;

typedef struct ep_consumer {
    int layer;                 /* index of the consuming conv */
    int n_links;
    ep_channel_link *links;    /* owned; freed by ep_net_consumers_free */
} ep_consumer;

/* *consumers is a malloc'd array of *n_consumers entries in layer order. */
int ep_net_consumers(const ep_net *net, int layer, ep_consumer **consumers,
                     int *n_consumers, ep_error *err);
void ep_net_consumers_free(ep_consumer *consumers, int n_consumers);

/* tie[c] = the smallest producer channel that must be kept or dropped
 * together with channel c (c itself when it is free); tie has the
 * producer's channel count.  Same failures as ep_net_consumers. */
int ep_net_tied_channels(const ep_net *net, int layer, int *tie,
                         ep_error *err);

/* Human-readable names of ops and wavelets, and their inverses. */
const char *ep_op_name(ep_op op);
int ep_op_from_name(const char *s, ep_op *op);
const char *ep_wavelet_name(ep_wavelet w);
int ep_wavelet_from_name(const char *s, ep_wavelet *w);

/* The wavelet U-Net of the source document. */
#define EP_UNET_MAX_DEPTH 8
typedef struct ep_unet_config {
    int depth;                    /* levels incl. the bottleneck, >= 2 */
    int widths[EP_UNET_MAX_DEPTH];/* channels per level */
    int kernel;                   /* taps of every conv but the head */
    int convs_per_level;          /* conv+BN+ReLU blocks per level */
    ep_wavelet wavelet;
    ep_net_meta meta;             /* rate, window, classes, preprocessing */
} ep_unet_config;

/* Fill cfg with the default model's architecture. */
void ep_unet_default_config(ep_unet_config *cfg);

/* Build the U-Net; weights are He-initialised from `seed`. */
int ep_unet_build(const ep_unet_config *cfg, uint64_t seed, ep_net **out,
                  ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
