/*
 * ep_train.h - training and personal fine-tuning of a network on WFDB
 * records or raw ECG segments: backward passes, AdamW, class-weighted
 * softmax cross-entropy on per-sample targets derived from beat labels,
 * ECG augmentation, balanced window sampling, checkpoints.
 */
#ifndef ECGPRUNE_EP_TRAIN_H
#define ECGPRUNE_EP_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "ecgprune/ep_error.h"
#include "ecgprune/ep_net.h"
#include "ecgprune/ep_score.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Labelled ECG in mV at fs (resampled to the net's rate internally). */
typedef struct ep_train_segment {
    const float *mv;
    int64_t n;
    double fs;
    const ep_ref_beat *beats;
    size_t n_beats;
} ep_train_segment;

typedef struct ep_train_opts {
    int epochs;
    int steps_per_epoch;     /* 0: one pass over the data's windows */
    int batch;
    double lr, weight_decay;
    uint64_t seed;
    int freeze_encoder;      /* fine-tuning: keep encoder weights fixed */
    int augment;
    const char *checkpoint;  /* path or NULL */
} ep_train_opts;

void ep_train_default_opts(ep_train_opts *opts);
void ep_finetune_default_opts(ep_train_opts *opts);

typedef struct ep_train_progress {
    int epoch, epochs;
    int64_t step, steps;
    double loss, rate_windows_s, eta_s, fraction;
} ep_train_progress;

/* Non-zero return cancels (EP_ECANCELED). */
typedef int (*ep_train_progress_fn)(const ep_train_progress *p, void *ud);

/* Train net in place on the segments. */
int ep_train_run(ep_net *net, const ep_train_segment *segs, int n_segs,
                 const ep_train_opts *opts, ep_train_progress_fn progress,
                 void *ud, ep_error *err);

/* Fine-tune (personalise) net in place: ep_train_run with the fine-tuning
 * defaults and the freezing the options ask for. */
int ep_finetune_run(ep_net *net, const ep_train_segment *segs, int n_segs,
                    const ep_train_opts *opts, ep_train_progress_fn progress,
                    void *ud, ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
