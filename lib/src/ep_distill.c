/*
 * ep_distill.c - distillation of a pruned network towards the original:
 * each step draws windows from the calibration set, augments them, runs
 * the teacher for its class probabilities and takes one AdamW step of the
 * student on the divergence from them.  The steps run on a copy; the copy
 * replaces the student only if it lowered the divergence on the windows
 * as given, so a poor choice of steps or rate cannot leave the caller a
 * worse network than it passed in.
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

/* Mean per-sample divergence of student from teacher over the windows,
 * one window at a time. */
static int mean_divergence(const ep_net *student, const ep_net *teacher,
                           const float *windows, int n_windows, int length,
                           double *kl, ep_error *err)
{
    int in = input_channels(student), classes = output_channels(student);
    size_t per = (size_t)classes * length;
    ep_plan *ps = NULL, *pt = NULL;
    float *q = malloc(per * sizeof *q), *p = malloc(per * sizeof *p);
    double sum = 0.0;
    int w, rc;
    size_t k;

    rc = q != NULL && p != NULL
             ? EP_OK
             : ep_error_set(err, EP_ENOMEM, "distill: out of memory");
    if (rc == EP_OK)
        rc = ep_plan_create(student, 1, length, EP_PLAN_INFER, &ps, err);
    if (rc == EP_OK)
        rc = ep_plan_create(teacher, 1, length, EP_PLAN_INFER, &pt, err);
    for (w = 0; rc == EP_OK && w < n_windows; w++) {
        const float *x = windows + (size_t)w * in * length;

        rc = probabilities(pt, x, q, err);
        if (rc == EP_OK)
            rc = probabilities(ps, x, p, err);
        for (k = 0; rc == EP_OK && k < per; k++)
            if (q[k] > 0.0f)
                sum += q[k] * (log(q[k]) - log(p[k] > 1e-30f ? p[k]
                                                           : 1e-30f));
    }
    *kl = sum / ((double)n_windows * length);
    ep_plan_free(ps);
    ep_plan_free(pt);
    free(q);
    free(p);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* State the steps share. */
typedef struct distill_run {
    const ep_distill_opts *o;
    const float *windows;
    int n_windows, length, in;
    double fs, unit;
    ep_trainer *tr;
    ep_plan *teacher;
    float *x, *probs;
} distill_run;

/* Draw and augment a batch of windows for step `step`. */
static void draw_batch(distill_run *r, int step)
{
    size_t per = (size_t)r->in * r->length;
    ep_rng rng;
    int b, c;

    ep_rng_seed(&rng, r->o->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)step);
    for (b = 0; b < r->o->batch; b++) {
        uint64_t w = ep_rng_below(&rng, (uint64_t)r->n_windows);

        memcpy(r->x + b * per, r->windows + w * per, per * sizeof *r->x);
        for (c = 0; r->o->augment && c < r->in; c++)
            ep_dataset_augment(&rng, r->fs, r->unit, r->length,
                               r->x + b * per + (size_t)c * r->length);
    }
}

static int run_steps(distill_run *r, ep_distill_progress_fn progress,
                     void *ud, ep_error *err)
{
    const ep_distill_opts *o = r->o;
    int step, rc, warm = (o->steps + 9) / 10;

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
        rc = probabilities(r->teacher, r->x, r->probs, err);
        if (rc == EP_OK)
            rc = ep_trainer_gradients_soft(r->tr, r->x, r->probs, &loss,
                                           err);
        if (rc != EP_OK)
            return rc;
        ep_trainer_step(r->tr, lr, 0.0);
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

int ep_distill_run(ep_net *student, const ep_net *teacher,
                   const float *windows, int n_windows, int length,
                   const ep_distill_opts *opts,
                   ep_distill_progress_fn progress, void *ud,
                   ep_distill_report *report, ep_error *err)
{
    ep_distill_opts defaults;
    distill_run r;
    ep_net *work = NULL;
    double t0 = now_s(), kl_before = 0.0, kl_after = 0.0;
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
    r.n_windows = n_windows;
    r.length = length;
    r.in = input_channels(student);
    r.fs = student->meta.sampling_rate > 0.0 ? student->meta.sampling_rate
                                             : 360.0;
    r.unit = student->meta.input_scale > 0.0 ? student->meta.input_scale
                                             : 1.0;

    /* Divergence before, then the steps on a copy, then its divergence. */
    rc = mean_divergence(student, teacher, windows, n_windows, length,
                         &kl_before, err);
    if (rc == EP_OK)
        rc = ep_net_clone(student, &work, err);
    if (rc == EP_OK)
        rc = ep_trainer_create(work, opts->batch, length, 0, &r.tr, err);
    if (rc == EP_OK)
        rc = ep_plan_create(teacher, opts->batch, length, EP_PLAN_INFER,
                            &r.teacher, err);
    if (rc == EP_OK) {
        r.x = malloc((size_t)opts->batch * r.in * length * sizeof *r.x);
        r.probs = malloc((size_t)opts->batch * output_channels(student) *
                         length * sizeof *r.probs);
        if (r.x == NULL || r.probs == NULL)
            rc = ep_error_set(err, EP_ENOMEM, "distill: out of memory");
    }
    if (rc == EP_OK)
        rc = run_steps(&r, progress, ud, err);
    if (rc == EP_OK)
        rc = mean_divergence(work, teacher, windows, n_windows, length,
                             &kl_after, err);
    free(r.x);
    free(r.probs);
    ep_plan_free(r.teacher);
    ep_trainer_free(r.tr);

    /* Keep whichever of the two is closer to the teacher. */
    if (rc == EP_OK && kl_after < kl_before)
        adopt(student, work);
    ep_net_free(work);
    if (rc == EP_OK && report != NULL) {
        report->kl_before = kl_before;
        report->kl_trained = kl_after;
        report->adopted = kl_after < kl_before;
        report->seconds = now_s() - t0;
    }
    return rc;
}
