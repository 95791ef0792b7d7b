/*
 * ep_infer.h - whole-record inference: from an ECG signal at any sampling
 * rate to a list of labelled beats.
 *
 * Steps: resample to the model's rate, preprocess as the model declares
 * (baseline removal, scaling), run overlapping windows and stitch their
 * centres, turn per-sample class probabilities into beats by peak picking
 * with a refractory period, and label each beat with its AAMI class.
 */
#ifndef ECGPRUNE_EP_INFER_H
#define ECGPRUNE_EP_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_error.h"
#include "ecgprune/ep_net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ep_beat {
    int64_t sample;       /* at the input signal's sampling rate */
    double time;          /* seconds from the start of the signal */
    ep_aami cls;
    float confidence;     /* probability of the chosen class, 0..1 */
} ep_beat;

typedef struct ep_infer_opts {
    int overlap;          /* samples of context dropped at window edges */
    double refractory_s;  /* minimum distance between two beats */
    float threshold;      /* minimum beat probability of a peak */
    int batch;            /* windows run together */
} ep_infer_opts;

void ep_infer_default_opts(ep_infer_opts *opts);

typedef struct ep_inferer ep_inferer;

/* An inferer owns a plan for the network; it is not thread-safe, make one
 * per thread.  It keeps a pointer to net, which must outlive it. */
int ep_inferer_create(const ep_net *net, const ep_infer_opts *opts,
                      ep_inferer **out, ep_error *err);
void ep_inferer_free(ep_inferer *inf);

/*
 * Class probabilities for a signal already at the model's rate and
 * preprocessed: probs is n_classes x n (caller-allocated).
 */
int ep_infer_probabilities(ep_inferer *inf, const float *x, int64_t n,
                           float *probs, ep_error *err);

/* Resample + preprocess a physical-unit (mV) signal into the model's
 * input; *out is malloc'd, *n_out its length. */
int ep_infer_prepare(const ep_net *net, const float *mv, int64_t n,
                     double fs, float **out, int64_t *n_out, ep_error *err);

/* Whole pipeline: mV signal at fs in, beats (at fs) out, malloc'd. */
int ep_infer_beats(ep_inferer *inf, const float *mv, int64_t n, double fs,
                   ep_beat **beats, size_t *n_beats, ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
