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

/* Sampling rates (Hz) of the ECG that inference accepts: it is resampled
 * to the model's rate, and far outside these no ECG is recorded. */
#define EP_INFER_RATE_MIN 50.0
#define EP_INFER_RATE_MAX 10000.0

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
    int overlap;          /* samples of context dropped at window edges;
                             < 0: window / 8 */
    double refractory_s;  /* minimum distance between two beats */
    float threshold;      /* minimum beat probability of a peak */
    int batch;            /* windows run together */
} ep_infer_opts;

/* overlap -1 (window / 8), refractory 0.25 s, threshold 0.5, batch 8. */
void ep_infer_default_opts(ep_infer_opts *opts);

typedef struct ep_inferer ep_inferer;

/* An inferer owns a plan for the network; it is not thread-safe, make one
 * per thread.  It keeps a pointer to net, which must outlive it.  The
 * batch is lowered when the plan would exceed 1 GiB (results do not
 * depend on it); a model whose one window needs more is EP_ERANGE. */
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

/*
 * The steps of the pipeline, exposed for training, pruning and tests.
 *
 * ep_infer_resample: windowed-sinc resampling of x (rate fs_in) to fs_out;
 * *n_out = ep_infer_resampled_count(n, fs_in, fs_out) samples, sample m
 * at time m / fs_out.  Rates must be in [50, 10000] Hz.  Equal rates
 * copy.  *out is malloc'd.
 */
int64_t ep_infer_resampled_count(int64_t n, double fs_in, double fs_out);

int ep_infer_resample(const float *x, int64_t n, double fs_in,
                      double fs_out, float **out, int64_t *n_out,
                      ep_error *err);

/* Zero-phase (forward-backward) 2nd-order Butterworth high-pass of x in
 * place, cut-off cutoff_hz at rate fs (0 < cutoff < fs / 2). */
int ep_infer_highpass(float *x, int64_t n, double fs, double cutoff_hz,
                      ep_error *err);

/*
 * Beats from class probabilities (meta->n_classes x n at the model's rate,
 * classes[0] "bg"): regions where 1 - p(bg) >= threshold, one beat at the
 * centre of each region, regions closer than the refractory period
 * resolved in favour of the higher peak.  Samples and times are at the
 * model's rate meta->sampling_rate.  *beats is malloc'd (may be empty).
 */
int ep_infer_pick_beats(const ep_net_meta *meta, const float *probs,
                        int64_t n, const ep_infer_opts *opts,
                        ep_beat **beats, size_t *n_beats, ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
