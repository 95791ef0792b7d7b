/*
 * ep_model_priv.h - what the two halves of the model module share: the
 * architecture JSON (ep_model_arch.c) and the safetensors container
 * (ep_model.c).
 */
#ifndef ECGPRUNE_EP_MODEL_PRIV_H
#define ECGPRUNE_EP_MODEL_PRIV_H

#include <jansson.h>

#include "ecgprune/ep_model.h"

/* The architecture document of net (new reference; NULL if out of
 * memory). */
json_t *ep_model_arch_to_json(const ep_net *net);

/* Build a network with zeroed weights from an architecture document,
 * checking every field; errors name the layer and the field.  The
 * layers' parameters may total at most max_params floats (what the
 * file's data section holds), checked before each layer is allocated. */
int ep_model_arch_from_json(const json_t *root, size_t max_params,
                            ep_net **out, ep_error *err);

#endif
