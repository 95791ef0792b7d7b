/*
 * ep_prune.h - inference-time channel pruning of a trained network by
 * Ising-energy coreset construction (unit-kernel or filter level), with
 * least-squares reconstruction of the pruned consumers, and the baselines
 * that share its groups, order and reconstruction.  The method is the one
 * written out in the project's pruning specification; docs/pruning.md
 * describes it as implemented.
 *
 * A run folds batch normalisation into the convolutions, then prunes one
 * group (a producer convolution and every convolution its channels reach)
 * at a time in layer order, and returns a physically smaller network.
 * Every random choice comes from one generator seeded with opts->seed.
 * Limitation: the same inputs and seed give byte-identical output on one
 * machine with one OpenBLAS build and thread count; OpenBLAS picks its
 * kernels by CPU and splits sums by thread, so another machine may differ
 * in the last bits.
 */
#ifndef ECGPRUNE_EP_PRUNE_H
#define ECGPRUNE_EP_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_distill.h"
#include "ecgprune/ep_error.h"
#include "ecgprune/ep_net.h"
#include "ecgprune/ep_score.h"
#include "ecgprune/ep_train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ep_prune_method {
    EP_PRUNE_ISING_KERNEL = 0,   /* "ising-kernel" */
    EP_PRUNE_ISING_FILTER,       /* "ising-filter" */
    EP_PRUNE_L1,                 /* "l1" */
    EP_PRUNE_RANDOM,             /* "random" */
    EP_PRUNE_CORESET,            /* "coreset" */
    EP_PRUNE_CONTRIB             /* "contrib" */
} ep_prune_method;

const char *ep_prune_method_name(ep_prune_method m);
int ep_prune_method_from_name(const char *s, ep_prune_method *m);

typedef struct ep_prune_opts {
    ep_prune_method method;
    double keep;            /* fraction of channels kept per group, (0, 1] */
    int mask_list;          /* L, masks in the list (default 32) */
    int candidates;         /* G, candidates per round (default 8) */
    double coreset_scale;   /* m = min(N, ceil(scale * N')) (default 1.25) */
    uint64_t seed;
    int reconstruct;        /* 1: least-squares refit of consumers */
    double lambda;          /* ridge; < 0 means the default rule */
    int batch_windows;      /* calibration windows per batch (default 8) */
    int max_windows;        /* calibration windows used at most (default
                               64); more are drawn at random */
    int prune_head_input;   /* 1: also prune the group whose channels feed
                               the output layer (default 0: that group
                               keeps every channel, see docs/pruning.md) */
    int refit_drifted;      /* 1: also refit the consumers of a group that
                               kept every channel once an earlier group was
                               pruned, since their inputs moved (default 0,
                               as the spec has it) */
    int raw_norms;          /* 1: the norms n_i (l1, coreset, thresholds,
                               tie-breaks) of the consumers' weights before
                               batch-norm folding, as the spec writes them
                               (default 0: of the folded weights, see
                               docs/pruning.md) */
    int distill_steps;      /* > 0: after the refits, that many steps of
                               distillation towards the original network
                               on the calibration windows (ep_distill.h;
                               default 0, the spec's method alone) */
    double distill_lr;      /* its peak learning rate; 0: the default of
                               ep_distill_default_opts */
} ep_prune_opts;

void ep_prune_default_opts(ep_prune_opts *opts);

/* A stretch of calibration ECG in mV at fs; beats (optional, samples
 * counted from mv[0] at fs) let the calibration windows be stratified on
 * non-N beats. */
typedef struct ep_calib_segment {
    const float *mv;
    int64_t n;
    double fs;
    const ep_ref_beat *beats;   /* may be NULL */
    size_t n_beats;
} ep_calib_segment;

typedef struct ep_prune_progress {
    int group, n_groups;    /* 1-based group being processed */
    int round, n_rounds;    /* 1-based step of the stage about to start:
                               a coreset round, or a consumer refit */
    double fraction;        /* overall work done, 0..1 */
    double elapsed_s;
    const char *stage;      /* "calibrate", "select", "sampling",
                               "reconstruct", "distill" (round = step) */
} ep_prune_progress;

/* Called between rounds; returning non-zero cancels the run, which then
 * fails with EP_ECANCELED. */
typedef int (*ep_prune_progress_fn)(const ep_prune_progress *p, void *ud);

typedef struct ep_prune_group_report {
    char producer[EP_NAME_MAX];
    int channels_before, channels_after;
    int n_consumers;
    double err_before, err_after;    /* worst consumer's relative error */
    double seconds;
    int *kept;                       /* channels_after kept indices */
    int underdetermined;             /* consumers refitted with fewer than
                                        10 calibration rows per unknown
                                        (ridge scaled up; warn the user) */
    double min_rows_per_unknown;     /* over the refitted consumers */
    double temperature;              /* ising-kernel: calibrated T, else 0 */
} ep_prune_group_report;

typedef struct ep_prune_result {
    ep_net *net;                     /* the physically smaller network */
    int n_groups;
    ep_prune_group_report *groups;
    double seconds;
    ep_distill_report distill;       /* with distillation: its report */
} ep_prune_result;

/*
 * Prune `net` (left unchanged) on calibration ECG.  Each segment is
 * resampled and preprocessed as the model declares (ep_infer_prepare) and
 * cut into windows of meta.window samples; a segment shorter than one
 * window is an error.  With beats, half of the windows are centred on
 * non-N beats.  progress (may be NULL) is called between rounds and
 * refits.
 */
int ep_prune_run(const ep_net *net, const ep_calib_segment *segs, int n_segs,
                 const ep_prune_opts *opts, ep_prune_progress_fn progress,
                 void *ud, ep_prune_result **out, ep_error *err);

/* The same on calibration windows already in model input form:
 * n_windows x input channels x meta.window floats, used in this order
 * (batch l of ising-filter is windows l*batch_windows ...). */
int ep_prune_run_windows(const ep_net *net, const float *windows,
                         int n_windows, const ep_prune_opts *opts,
                         ep_prune_progress_fn progress, void *ud,
                         ep_prune_result **out, ep_error *err);
void ep_prune_result_free(ep_prune_result *res);

/* Bytes a run on n_windows calibration windows holds at its peak, roughly:
 * the original network's convolution outputs for every window (the refit's
 * targets), one batch's forward pass and, with distillation, its
 * training step (ep_train_peak_bytes).  For refusing runs that would not
 * fit before they start; not an exact account. */
double ep_prune_peak_bytes(const ep_net *net, const ep_prune_opts *opts,
                           int64_t n_windows);

/* Fewest calibration beats of S, V or F below which a class is said to be
 * at risk: the stratified windows need beats of it to centre on. */
#define EP_PRUNE_MIN_RARE_BEATS 5

/* The calibration beats per AAMI class over the segments, added to
 * counts; returns 1 if any segment carried beats, else 0. */
int ep_prune_calib_counts(const ep_calib_segment *segs, int n_segs,
                          size_t counts[EP_AAMI_COUNT]);

/* A warning in plain words when calibration ECG with these beat counts
 * (annotated 0: no beats were given at all) cannot teach the pruned model
 * the rare classes: written to buf (NUL-terminated, cut to size), returns
 * 1; returns 0 with buf "" when there is nothing to say. */
int ep_prune_calib_warning(const size_t counts[EP_AAMI_COUNT], int annotated,
                           char *buf, size_t size);

/* Masks as JSON text (malloc'd): {"method":..., "keep":..., "seed":
 * "N" (a string: 64-bit), "reconstruct": bool, "groups":[{"producer":
 * NAME, "channels_before":N, "channels_after":M, "kept":[...]}...]},
 * kept being the producer's original channel indices, increasing.  No
 * timings, so the same inputs and seed give the same text. */
int ep_prune_masks_json(const ep_prune_result *res,
                        const ep_prune_opts *opts, char **json,
                        ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
