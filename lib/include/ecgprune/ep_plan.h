/*
 * ep_plan.h - running a network forward on a fixed batch and length.
 *
 * A plan allocates every buffer once, for one network, batch size and
 * input length; running it allocates nothing.  Inference plans fold batch
 * normalisation into the preceding convolution and reuse buffers whose
 * values are no longer needed.  Plans made with EP_PLAN_KEEP keep every
 * layer's output, which training and pruning read.
 */
#ifndef ECGPRUNE_EP_PLAN_H
#define ECGPRUNE_EP_PLAN_H

#include "ecgprune/ep_error.h"
#include "ecgprune/ep_net.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    EP_PLAN_INFER = 0,   /* fold BN, share buffers */
    EP_PLAN_KEEP = 1,    /* keep each layer's output; BN uses running stats */
    EP_PLAN_TRAIN = 2    /* keep each layer's output; BN normalises with the
                            batch's statistics and records them */
};

typedef struct ep_plan ep_plan;

/* length must be a multiple of ep_net_length_multiple(net). The plan keeps
 * a pointer to net: call ep_plan_refresh after changing its weights. */
int ep_plan_create(const ep_net *net, int batch, int length, int flags,
                   ep_plan **out, ep_error *err);
void ep_plan_free(ep_plan *plan);
int ep_plan_refresh(ep_plan *plan, ep_error *err);

/* input: batch x input channels x length. */
int ep_plan_run(ep_plan *plan, const float *input, ep_error *err);

/* The same for the first n items of the batch only (1 <= n <= batch; a
 * training plan takes its whole batch): input holds n items, the output's
 * first n are theirs and the rest is unspecified.  An inference
 * of a short signal fills fewer windows than the plan's batch, and an
 * unused window costs as much as a used one. */
int ep_plan_run_first(ep_plan *plan, const float *input, int n,
                      ep_error *err);

/* Output of one layer (layer < 0: the network output) for the whole batch,
 * batch x channels x length; channels and length may be NULL.  With
 * EP_PLAN_INFER only the network output is guaranteed to be valid. */
const float *ep_plan_output(const ep_plan *plan, int layer, int *channels,
                            int *length);

int ep_plan_batch(const ep_plan *plan);
int ep_plan_length(const ep_plan *plan);

/* With EP_PLAN_TRAIN, the per-channel batch mean and 1/sqrt(var + eps)
 * the last run used for BN layer `layer` (arrays of its channel count). */
int ep_plan_bn_stats(const ep_plan *plan, int layer, const float **mean,
                     const float **inv_std, ep_error *err);

/* Floating-point operations of the convolutions in one run (2 per MAC). */
double ep_plan_conv_flops(const ep_plan *plan);

#ifdef __cplusplus
}
#endif

#endif
