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
#include "ecgprune/ep_rng.h"
#include "ecgprune/ep_score.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Labelled ECG in mV at fs (resampled to the net's rate internally).
 * Beat samples count from mv[0], at rate fs. */
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
    double lr, weight_decay; /* peak learning rate; AdamW decay of conv
                                weights (biases and BN are not decayed) */
    uint64_t seed;
    int freeze_encoder;      /* fine-tuning: keep encoder weights fixed */
    int augment;
    const char *checkpoint;  /* path or NULL: the model is saved there and
                                the optimiser state in PATH.opt */
    int checkpoint_every;    /* steps between checkpoints; 0: each epoch */
    int resume;              /* continue from the checkpoint */
    int window;              /* samples per training window; 0: the net's
                                meta.window */
    double rare_fraction;    /* share of windows centred on S, V, F beats */
    double warmup_fraction;  /* share of steps of linear LR warm-up before
                                the cosine decay */
} ep_train_opts;

void ep_train_default_opts(ep_train_opts *opts);
void ep_finetune_default_opts(ep_train_opts *opts);

/* Bytes a training step on `batch` windows of net's window holds, roughly:
 * every layer's output and its gradient for each window. */
double ep_train_peak_bytes(const ep_net *net, int batch);

typedef struct ep_train_progress {
    int epoch, epochs;
    int64_t step, steps;
    double loss, rate_windows_s, eta_s, fraction;
} ep_train_progress;

/* Called after every step.  Non-zero return cancels (EP_ECANCELED); a
 * cancelled run with a checkpoint path saves a checkpoint first. */
typedef int (*ep_train_progress_fn)(const ep_train_progress *p, void *ud);

/* Train net in place on the segments. */
int ep_train_run(ep_net *net, const ep_train_segment *segs, int n_segs,
                 const ep_train_opts *opts, ep_train_progress_fn progress,
                 void *ud, ep_error *err);

/* Fine-tune (personalise) net in place: ep_train_run with opts (fill them
 * with ep_finetune_default_opts; NULL means those defaults), freezing the
 * encoder when opts->freeze_encoder says so. */
int ep_finetune_run(ep_net *net, const ep_train_segment *segs, int n_segs,
                    const ep_train_opts *opts, ep_train_progress_fn progress,
                    void *ud, ep_error *err);

/*
 * The training step underneath ep_train_run, exposed for tests and tools.
 * A trainer owns a training plan (batch statistics in BN) for net, the
 * gradients of every layer and the AdamW moments.  Layers listed as
 * frozen keep their weights and BN running statistics bit-identical.
 */
typedef struct ep_trainer ep_trainer;

#define EP_TRAIN_BN_MOMENTUM 0.1
#define EP_TRAIN_ADAM_BETA1 0.9
#define EP_TRAIN_ADAM_BETA2 0.999
#define EP_TRAIN_ADAM_EPS 1e-8

/* freeze_encoder: freeze every layer before the decoder's first conv
 * (the conv feeding the first IDWT). */
int ep_trainer_create(ep_net *net, int batch, int length,
                      int freeze_encoder, ep_trainer **out, ep_error *err);
void ep_trainer_free(ep_trainer *tr);

/* Forward and backward pass on x (batch x 1 x length) with per-sample
 * targets (batch x length) and class weights (NULL: all 1).  *loss is
 * the weighted mean cross-entropy. */
int ep_trainer_gradients(ep_trainer *tr, const float *x,
                         const uint8_t *target, const float *class_weights,
                         double *loss, ep_error *err);

/* The same against soft targets: probs (batch x classes x length, each
 * sample's column a distribution, e.g. a teacher network's softmax).
 * *loss is the mean per-sample Kullback-Leibler divergence. */
int ep_trainer_gradients_soft(ep_trainer *tr, const float *x,
                              const float *probs, double *loss,
                              ep_error *err);

/* Gradient of the last ep_trainer_gradients for a layer's tensor:
 * which 0 = conv weight or BN gamma, 1 = conv bias or BN beta; NULL when
 * the layer has no such tensor or is frozen. */
const float *ep_trainer_param_grad(const ep_trainer *tr, int layer,
                                   int which);

/* One AdamW update with learning rate lr and decoupled weight decay of the
 * conv weights, and the BN running statistics moved towards the last
 * batch's (momentum EP_TRAIN_BN_MOMENTUM, unbiased variance). */
void ep_trainer_step(ep_trainer *tr, double lr, double weight_decay);

/* Steps taken (ep_trainer_step calls, including resumed ones). */
int64_t ep_trainer_steps(const ep_trainer *tr);

/* Checkpoint: the model at path and the optimiser state (step, seed,
 * moments) at path.opt, each written to a temporary file and renamed. */
int ep_trainer_save(const ep_trainer *tr, const char *path, uint64_t seed,
                    ep_error *err);
/* Load both into tr's net and optimiser; the model must have the net's
 * architecture and the state the same seed. */
int ep_trainer_load(ep_trainer *tr, const char *path, uint64_t seed,
                    ep_error *err);

/*
 * Training windows of a set of segments (ep_dataset.c).  Each segment is
 * resampled and preprocessed as the net declares (ep_infer_prepare) and
 * gets per-sample targets: class 0 ("bg") everywhere except
 * EP_TRAIN_BEAT_HALF_S around each annotated beat, which carries its AAMI
 * class + 1 (N=1, S=2, V=3, F=4, Q=5).
 */
#define EP_TRAIN_BEAT_HALF_S 0.05

typedef struct ep_dataset ep_dataset;

int ep_dataset_create(const ep_net *net, const ep_train_segment *segs,
                      int n_segs, int window, ep_dataset **out,
                      ep_error *err);
void ep_dataset_free(ep_dataset *ds);

/* Windows the dataset's samples make up (total samples / window). */
int64_t ep_dataset_windows(const ep_dataset *ds);

/* Samples of each target class over the whole dataset (n_classes). */
void ep_dataset_class_counts(const ep_dataset *ds, int64_t *counts);

/* Loss weight per class: sqrt(largest beat-class count / count), at
 * least 1 and at most EP_TRAIN_MAX_CLASS_WEIGHT; background weighs 1. */
#define EP_TRAIN_MAX_CLASS_WEIGHT 5.0
void ep_dataset_class_weights(const ep_dataset *ds, float *weights);

/* Per-sample targets of beats (at rate fs_beats) on n samples at the
 * model's rate fs_model, as described above. */
void ep_dataset_targets(const ep_ref_beat *beats, size_t n_beats,
                        double fs_beats, double fs_model, int64_t n,
                        uint8_t *target);

/*
 * Draw `batch` windows: with probability rare_fraction a window holding a
 * randomly chosen S, V or F beat (class first, with probability
 * proportional to the square root of its beat count, then the beat),
 * otherwise a uniformly placed window.  With
 * augment, each window is scaled, gets a slow baseline wander and white
 * noise.  x is batch x window, target batch x window.
 */
void ep_dataset_draw(const ep_dataset *ds, ep_rng *rng, int batch,
                     double rare_fraction, int augment, float *x,
                     uint8_t *target);

/* The augmentation ep_dataset_draw applies, on one window of n samples at
 * rate fs in model input units (unit per mV): amplitude scale
 * log-uniform in [0.7, 1.4], a sinusoidal baseline wander of 0.05-0.5 Hz
 * up to 0.2 mV, white noise up to 0.03 mV. */
void ep_dataset_augment(ep_rng *rng, double fs, double unit, int n,
                        float *x);

#ifdef __cplusplus
}
#endif

#endif
