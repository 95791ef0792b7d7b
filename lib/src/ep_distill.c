/*
 * ep_distill.c - distillation of a pruned network towards the original:
 * each step draws windows from the calibration set, augments them, runs
 * the teacher for its class probabilities and takes one AdamW step of the
 * student on the divergence from them.  The steps run on a copy and draw
 * from three windows in four; the fourth are held out, and the copy's
 * divergence on them at ten checkpoints picks what replaces the student,
 * if anything beats it, so a poor choice of steps or rate cannot leave
 * the caller a network worse on those windows than it passed in.
 *
 * Determinism: step k draws from a generator seeded with (seed, k), as
 * training does, so a run depends only on its inputs, the seed and the
 * BLAS threading.
 */
#include "ecgprune/ep_distill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ecgprune/ep_grad.h"
#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_plan.h"
#include "ecgprune/ep_rng.h"
#include "ecgprune/ep_train.h"
#include "ep_net_priv.h"

#define MAX_STEPS 1000000
#define MAX_BATCH 4096

/* Every HOLDOUT_EVERY-th window validates once there are this many. */
#define HOLDOUT_EVERY 4
#define MIN_WINDOWS_TO_HOLD_OUT 8

/* Validation checkpoints: every steps / CHECKPOINTS steps, and after the
 * last. */
#define CHECKPOINTS 10

void ep_distill_default_opts(ep_distill_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->steps = 200;
    opts->batch = 8;
    opts->lr = 5e-4;
    opts->seed = 1;
    opts->augment = 1;
}

static int input_channels(const ep_net *net)
{
    int i;

    for (i = 0; i < net->n_layers; i++)
        if (net->layers[i].op == EP_OP_INPUT)
            return net->layers[i].channels;
    return 0;
}

static int output_channels(const ep_net *net)
{
    if (net->output < 0 || net->output >= net->n_layers)
        return 0;
    return net->layers[net->output].channels;
}

static int check_args(const ep_net *student, const ep_net *teacher,
                      const float *windows, int n_windows, int length,
                      const ep_distill_opts *o, ep_error *err)
{
    int in = input_channels(student), classes = output_channels(student);

    if (o->steps < 1 || o->steps > MAX_STEPS || o->batch < 1 ||
        o->batch > MAX_BATCH || !(o->lr > 0.0 && o->lr < 10.0))
        return ep_error_set(err, EP_EINVAL, "distill: steps %d (1..%d), "
                            "batch %d (1..%d), learning rate %g (0..10) "
                            "out of range", o->steps, MAX_STEPS, o->batch,
                            MAX_BATCH, o->lr);
    if (windows == NULL || n_windows < 1)
        return ep_error_set(err, EP_EINVAL, "distill: no windows");
    if (in < 1 || classes < 1 || in != input_channels(teacher) ||
        classes != output_channels(teacher))
        return ep_error_set(err, EP_EINVAL, "distill: student has %d input "
                            "and %d output channels, teacher %d and %d; "
                            "expected the same", in, classes,
                            input_channels(teacher),
                            output_channels(teacher));
    if (length < 1 || length % ep_net_length_multiple(student) != 0 ||
        length % ep_net_length_multiple(teacher) != 0)
        return ep_error_set(err, EP_EINVAL, "distill: window of %d samples "
                            "is not a multiple of the networks' %d and %d",
                            length, ep_net_length_multiple(student),
                            ep_net_length_multiple(teacher));
    return EP_OK;
}

/* Run plan on x and turn its output into probabilities in probs. */
static int probabilities(ep_plan *plan, const float *x, float *probs,
                         ep_error *err)
{
    int classes, len, b, rc;
    const float *y;

    rc = ep_plan_run(plan, x, err);
    if (rc != EP_OK)
        return rc;
    y = ep_plan_output(plan, -1, &classes, &len);
    memcpy(probs, y, (size_t)ep_plan_batch(plan) * classes * len *
                         sizeof *probs);
    for (b = 0; b < ep_plan_batch(plan); b++)
        ep_softmax_channels(classes, len, probs + (size_t)b * classes * len);
    return EP_OK;
}

/* State the steps share.  Windows are split by index into those trained
 * on and those held out to choose the checkpoint. */
typedef struct distill_run {
    const ep_distill_opts *o;
    const float *windows;
    int *train, n_train, *val, n_val;
    int length, in, classes;
    double fs, unit;
    const ep_net *teacher;
    ep_net *work;              /* trained in place */
    ep_net *best;              /* copy of the best checkpoint, or NULL */
    double best_kl;
    int best_step;
    ep_trainer *tr;
    ep_plan *teacher_plan;     /* batch of o->batch */
    float *x, *probs;          /* one step's batch and its targets */
    float *val_probs;          /* the teacher's, per validation window */
    ep_plan *work_plan;        /* batch of 1 on work, for validation */
    float *work_probs;         /* its probabilities on one window */
} distill_run;

static const float *window_at(const distill_run *r, int w)
{
    return r->windows + (size_t)w * r->in * r->length;
}

/* Hold out every HOLDOUT_EVERY-th window when there are at least
 * MIN_WINDOWS_TO_HOLD_OUT; with fewer, every window trains and validates.
 * Limitation: the held-out windows come from the same calibration ECG,
 * so they guard against overfitting single windows, not a patient's
 * later beats that look like none of them. */
static int split_windows(distill_run *r, int n_windows, ep_error *err)
{
    int w, hold = n_windows >= MIN_WINDOWS_TO_HOLD_OUT;

    r->train = malloc((size_t)n_windows * sizeof *r->train);
    r->val = malloc((size_t)n_windows * sizeof *r->val);
    if (r->train == NULL || r->val == NULL)
        return ep_error_set(err, EP_ENOMEM, "distill: out of memory");
    for (w = 0; w < n_windows; w++) {
        if (hold && w % HOLDOUT_EVERY == HOLDOUT_EVERY - 1) {
            r->val[r->n_val++] = w;
            continue;
        }
        r->train[r->n_train++] = w;
        if (!hold)
            r->val[r->n_val++] = w;
    }
    return EP_OK;
}

/* The teacher's probabilities on the validation windows, once. */
static int cache_validation(distill_run *r, ep_error *err)
{
    size_t per = (size_t)r->classes * r->length;
    ep_plan *plan = NULL;
    int v, rc;

    r->val_probs = malloc((size_t)r->n_val * per * sizeof *r->val_probs);
    if (r->val_probs == NULL)
        return ep_error_set(err, EP_ENOMEM, "distill: out of memory");
    rc = ep_plan_create(r->teacher, 1, r->length, EP_PLAN_INFER, &plan,
                        err);
    for (v = 0; rc == EP_OK && v < r->n_val; v++)
        rc = probabilities(plan, window_at(r, r->val[v]),
                           r->val_probs + (size_t)v * per, err);
    ep_plan_free(plan);
    return rc;
}

/* Mean per-sample divergence of the trained copy from the teacher's
 * probabilities (cached) over the validation windows, one window at a
 * time, with the copy's current weights. */
static int validation_divergence(distill_run *r, double *kl, ep_error *err)
{
    size_t per = (size_t)r->classes * r->length, k;
    double sum = 0.0;
    int v, rc = ep_plan_refresh(r->work_plan, err);

    for (v = 0; rc == EP_OK && v < r->n_val; v++) {
        const float *q = r->val_probs + (size_t)v * per;
        const float *p = r->work_probs;

        rc = probabilities(r->work_plan, window_at(r, r->val[v]),
                           r->work_probs, err);
        for (k = 0; rc == EP_OK && k < per; k++)
            if (q[k] > 0.0f)
                sum += q[k] * (log(q[k]) - log(p[k] > 1e-30f ? p[k]
                                                           : 1e-30f));
    }
    *kl = sum / ((double)r->n_val * r->length);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Draw and augment a batch of windows for step `step`. */
static void draw_batch(distill_run *r, int step)
{
    size_t per = (size_t)r->in * r->length;
    ep_rng rng;
    int b, c;

    ep_rng_seed(&rng, r->o->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)step);
    for (b = 0; b < r->o->batch; b++) {
        int w = r->train[ep_rng_below(&rng, (uint64_t)r->n_train)];

        memcpy(r->x + b * per, window_at(r, w), per * sizeof *r->x);
        for (c = 0; r->o->augment && c < r->in; c++)
            ep_dataset_augment(&rng, r->fs, r->unit, r->length,
                               r->x + b * per + (size_t)c * r->length);
    }
}

/* Keep a copy of the trained network if it beats the best so far on the
 * validation windows. */
static int checkpoint(distill_run *r, int step, ep_error *err)
{
    double kl;
    int rc = validation_divergence(r, &kl, err);

    if (rc != EP_OK || !(kl < r->best_kl))
        return rc;
    ep_net_free(r->best);
    r->best = NULL;
    rc = ep_net_clone(r->work, &r->best, err);
    r->best_kl = kl;
    r->best_step = step;
    return rc;
}

static int run_steps(distill_run *r, ep_distill_progress_fn progress,
                     void *ud, ep_error *err)
{
    const ep_distill_opts *o = r->o;
    int step, rc, warm = (o->steps + 9) / 10;
    int every = o->steps >= CHECKPOINTS ? o->steps / CHECKPOINTS : 1;

    for (step = 0; step < o->steps; step++) {
        double loss, lr;
        ep_distill_progress p;

        /* Linear warm-up over the first tenth: AdamW's first steps move
         * every weight by about the full rate, whatever its gradient. */
        if (step < warm)
            lr = o->lr * (step + 1) / warm;
        else
            lr = o->lr * (0.01 + 0.99 * 0.5 *
                                     (1.0 + cos(M_PI * (step - warm) /
                                                (o->steps - warm))));

        draw_batch(r, step);
        rc = probabilities(r->teacher_plan, r->x, r->probs, err);
        if (rc == EP_OK)
            rc = ep_trainer_gradients_soft(r->tr, r->x, r->probs, &loss,
                                           err);
        if (rc != EP_OK)
            return rc;
        ep_trainer_step(r->tr, lr, 0.0);
        if ((step + 1) % every == 0 || step + 1 == o->steps) {
            rc = checkpoint(r, step + 1, err);
            if (rc != EP_OK)
                return rc;
        }
        p.step = step + 1;
        p.steps = o->steps;
        p.loss = loss;
        if (progress != NULL && progress(&p, ud) != 0)
            return ep_error_set(err, EP_ECANCELED, "distill: cancelled at "
                                "step %d", step + 1);
    }
    return EP_OK;
}

/* Put the trained copy's contents in place of the student's, so that
 * the caller's handle now holds the trained network. */
static void adopt(ep_net *student, ep_net *trained)
{
    ep_net keep = *student;

    *student = *trained;
    *trained = keep;
}

static void run_free(distill_run *r)
{
    free(r->train);
    free(r->val);
    free(r->x);
    free(r->probs);
    free(r->val_probs);
    free(r->work_probs);
    ep_plan_free(r->work_plan);
    ep_plan_free(r->teacher_plan);
    ep_trainer_free(r->tr);
    ep_net_free(r->work);
    ep_net_free(r->best);
}

/* Windows, teacher's validation targets, the copy to train, buffers. */
static int run_init(distill_run *r, ep_net *student, int n_windows,
                    ep_error *err)
{
    const ep_distill_opts *o = r->o;
    int rc = split_windows(r, n_windows, err);

    if (rc == EP_OK)
        rc = cache_validation(r, err);
    if (rc == EP_OK)
        rc = ep_net_clone(student, &r->work, err);
    if (rc == EP_OK)
        rc = ep_plan_create(r->work, 1, r->length, EP_PLAN_INFER,
                            &r->work_plan, err);
    if (rc == EP_OK) {
        r->work_probs = malloc((size_t)r->classes * r->length *
                               sizeof *r->work_probs);
        rc = r->work_probs != NULL
                 ? validation_divergence(r, &r->best_kl, err)
                 : ep_error_set(err, EP_ENOMEM, "distill: out of memory");
    }
    if (rc == EP_OK)
        rc = ep_trainer_create(r->work, o->batch, r->length, 0, &r->tr,
                               err);
    if (rc == EP_OK)
        rc = ep_plan_create(r->teacher, o->batch, r->length, EP_PLAN_INFER,
                            &r->teacher_plan, err);
    if (rc == EP_OK) {
        r->x = malloc((size_t)o->batch * r->in * r->length * sizeof *r->x);
        r->probs = malloc((size_t)o->batch * r->classes * r->length *
                          sizeof *r->probs);
        if (r->x == NULL || r->probs == NULL)
            rc = ep_error_set(err, EP_ENOMEM, "distill: out of memory");
    }
    return rc;
}

int ep_distill_run(ep_net *student, const ep_net *teacher,
                   const float *windows, int n_windows, int length,
                   const ep_distill_opts *opts,
                   ep_distill_progress_fn progress, void *ud,
                   ep_distill_report *report, ep_error *err)
{
    ep_distill_opts defaults;
    distill_run r;
    double t0 = now_s(), kl_before = 0.0;
    int rc;

    if (opts == NULL) {
        ep_distill_default_opts(&defaults);
        opts = &defaults;
    }
    rc = check_args(student, teacher, windows, n_windows, length, opts, err);
    if (rc != EP_OK)
        return rc;
    memset(&r, 0, sizeof r);
    r.o = opts;
    r.windows = windows;
    r.length = length;
    r.teacher = teacher;
    r.in = input_channels(student);
    r.classes = output_channels(student);
    r.fs = student->meta.sampling_rate > 0.0 ? student->meta.sampling_rate
                                             : 360.0;
    r.unit = student->meta.input_scale > 0.0 ? student->meta.input_scale
                                             : 1.0;

    /* Divergence before, the steps on a copy with checkpoints, then the
     * best checkpoint, if any beat the start, in place of the student. */
    rc = run_init(&r, student, n_windows, err);
    kl_before = r.best_kl;
    if (rc == EP_OK)
        rc = run_steps(&r, progress, ud, err);
    if (rc == EP_OK && r.best != NULL)
        adopt(student, r.best);
    if (rc == EP_OK && report != NULL) {
        report->kl_before = kl_before;
        report->kl_after = r.best_kl;
        report->best_step = r.best_step;
        report->validation_windows = r.n_val;
        report->held_out = r.n_val < n_windows;
        report->seconds = now_s() - t0;
    }
    run_free(&r);
    return rc;
}
