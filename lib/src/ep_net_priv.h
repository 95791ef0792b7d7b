/*
 * ep_net_priv.h - helpers the network modules (ep_net.c, ep_net_edit.c,
 * ep_unet.c, ep_model.c) share but the public API does not expose.
 */
#ifndef ECGPRUNE_EP_NET_PRIV_H
#define ECGPRUNE_EP_NET_PRIV_H

#include "ecgprune/ep_net.h"

/* Upper bounds that keep every size computation well inside int and
 * reject absurd architectures read from files (EP_NET_MAX_KERNEL, which
 * callers choose, is in ep_net.h). */
#define EP_NET_MAX_CHANNELS 8192
#define EP_NET_MAX_STRIDE 64
#define EP_NET_MAX_DILATION 1024
#define EP_NET_MAX_RATE_DIV (1 << 20)
#define EP_NET_MAX_LAYERS 4096

/* Free the weight arrays of one layer and set the pointers to NULL. */
void ep_net_layer_free_weights(ep_layer *layer);

/* Floats in the conv weight array of a layer: channels x in x kernel. */
size_t ep_net_conv_weight_floats(const ep_layer *layer);

#endif
