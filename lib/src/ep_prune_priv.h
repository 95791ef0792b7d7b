/*
 * ep_prune_priv.h - what the two files of the pruning module share:
 * ep_prune_calib.c turns calibration ECG into windows with the job's
 * generator, then hands both to the driver in ep_prune.c, so that one
 * seeded stream makes every random choice of a job.
 */
#ifndef ECGPRUNE_EP_PRUNE_PRIV_H
#define ECGPRUNE_EP_PRUNE_PRIV_H

#include "ecgprune/ep_prune.h"
#include "ecgprune/ep_rng.h"

/* Check the options, naming the first bad one. */
int ep_prune_check_opts(const ep_prune_opts *opts, ep_error *err);

/* ep_prune_run_windows with the caller's generator. */
int ep_prune_run_rng(const ep_net *net, const float *windows, int n_windows,
                     const ep_prune_opts *opts, ep_rng *rng,
                     ep_prune_progress_fn progress, void *ud,
                     ep_prune_result **out, ep_error *err);

#endif
