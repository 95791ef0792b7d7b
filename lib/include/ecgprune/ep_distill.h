/*
 * ep_distill.h - network-level reconstruction of a pruned network by
 * distillation: a few optimiser steps that bring the pruned network's
 * per-sample class probabilities towards the original network's on the
 * calibration windows.  No labels are read; the original network is the
 * teacher.  The pruning driver runs it after the per-layer least-squares
 * refits when ep_prune_opts.distill_steps > 0.
 *
 * Why: least squares fits each consumer's pre-activation outputs to the
 * original's one layer at a time, which leaves the errors of successive
 * layers free to add up; beats the original network is unsure of then
 * change label.  Distillation fits the output itself.
 */
#ifndef ECGPRUNE_EP_DISTILL_H
#define ECGPRUNE_EP_DISTILL_H

#include <stdint.h>

#include "ecgprune/ep_error.h"
#include "ecgprune/ep_net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ep_distill_opts {
    int steps;        /* optimiser steps, >= 1 */
    int batch;        /* windows per step (default 8) */
    double lr;        /* peak AdamW learning rate, reached after a linear
                         warm-up over the first tenth of the steps, then a
                         cosine decay to 1 % of it (default 5e-4) */
    uint64_t seed;    /* window draws and augmentation */
    int augment;      /* 1: scale, wander and noise on each drawn window,
                         which the teacher then labels afresh (default 1) */
} ep_distill_opts;

void ep_distill_default_opts(ep_distill_opts *opts);

typedef struct ep_distill_progress {
    int step, steps;  /* steps done, of steps */
    double loss;      /* mean divergence of the last step's batch */
} ep_distill_progress;

/* Called after every step; non-zero cancels (EP_ECANCELED). */
typedef int (*ep_distill_progress_fn)(const ep_distill_progress *p,
                                      void *ud);

typedef struct ep_distill_report {
    double kl_before;        /* mean per-sample Kullback-Leibler divergence
                                of the student from the teacher on the
                                validation windows, before the steps */
    double kl_after;         /* the same for the network kept */
    int best_step;           /* step of the checkpoint kept; 0: none beat
                                the start and the student is unchanged */
    int validation_windows;  /* windows the checkpoints were measured on */
    int held_out;            /* 1: those windows were held out of the
                                steps; 0: fewer than 8 windows, so all
                                of them trained and validated */
    double seconds;
} ep_distill_report;

/*
 * Train student towards teacher on windows (n_windows x input channels x
 * length floats in model input form, length a multiple of both networks'
 * ep_net_length_multiple).  The two networks must have the same input
 * and output channels.  With 8 windows or more, every 4th is held out:
 * the steps draw from the others and run on a copy of the student, whose
 * divergence on the held-out windows is measured 10 times over the run;
 * the best of those checkpoints replaces the student's weights if it beats
 * the start, so a rate too high or a run too long cannot leave a worse
 * network on those windows.  report may be NULL.
 */
int ep_distill_run(ep_net *student, const ep_net *teacher,
                   const float *windows, int n_windows, int length,
                   const ep_distill_opts *opts,
                   ep_distill_progress_fn progress, void *ud,
                   ep_distill_report *report, ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
