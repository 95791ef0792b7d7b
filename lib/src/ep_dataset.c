/*
 * ep_dataset.c - training windows from labelled ECG segments: the signal
 * prepared as the model will see it at inference, per-sample class
 * targets around each annotated beat, balanced drawing of windows that
 * hold rare beats, and augmentation suited to ECG.
 */
#include "ecgprune/ep_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_infer.h"

/* Rare classes the balanced drawing favours: S, V, F. */
#define DS_RARE 3

typedef struct ds_segment {
    float *x;            /* prepared input at the model's rate */
    uint8_t *target;     /* class per sample */
    int64_t n;
} ds_segment;

/* A beat's position: segment and sample at the model's rate. */
typedef struct ds_beat {
    int seg;
    int64_t at;
} ds_beat;

struct ep_dataset {
    ds_segment *segs;
    int n_segs;
    int window, n_classes;
    double fs, unit;         /* model rate; input units per mV */
    int64_t total_starts;   /* sum over segments of n - window + 1 */
    ds_beat *rare[DS_RARE];
    size_t n_rare[DS_RARE];
    int64_t counts[EP_MAX_CLASSES];
};

void ep_dataset_targets(const ep_ref_beat *beats, size_t n_beats,
                        double fs_beats, double fs_model, int64_t n,
                        uint8_t *target)
{
    int64_t half = (int64_t)floor(EP_TRAIN_BEAT_HALF_S * fs_model + 0.5);
    size_t b;

    memset(target, 0, (size_t)n);
    for (b = 0; b < n_beats; b++) {
        int64_t at, lo, hi, t;

        if (beats[b].cls < 0 || beats[b].cls >= EP_AAMI_COUNT)
            continue;
        at = (int64_t)floor((double)beats[b].sample * fs_model / fs_beats +
                            0.5);
        lo = at - half > 0 ? at - half : 0;
        hi = at + half < n - 1 ? at + half : n - 1;
        /* Limitation: beats closer than 2 * half overlap; the later beat
         * takes the shared samples. */
        for (t = lo; t <= hi; t++)
            target[t] = (uint8_t)(beats[b].cls + 1);
    }
}

void ep_dataset_free(ep_dataset *ds)
{
    int i;

    if (ds == NULL)
        return;
    for (i = 0; ds->segs != NULL && i < ds->n_segs; i++) {
        free(ds->segs[i].x);
        free(ds->segs[i].target);
    }
    for (i = 0; i < DS_RARE; i++)
        free(ds->rare[i]);
    free(ds->segs);
    free(ds);
}

/* Prepare one segment: input signal, targets, class counts. */
static int load_segment(ep_dataset *ds, const ep_net *net,
                        const ep_train_segment *src, int index,
                        ep_error *err)
{
    ds_segment *s = &ds->segs[ds->n_segs];
    int64_t t;
    int rc;

    rc = ep_infer_prepare(net, src->mv, src->n, src->fs, &s->x, &s->n, err);
    if (rc != EP_OK) {
        ep_error_prefix(err, "dataset: segment %d", index);
        return rc;
    }
    s->target = malloc((size_t)(s->n > 0 ? s->n : 1));
    if (s->target == NULL) {
        free(s->x);
        return ep_error_set(err, EP_ENOMEM, "dataset: out of memory");
    }
    ep_dataset_targets(src->beats, src->n_beats, src->fs, ds->fs, s->n,
                       s->target);
    for (t = 0; t < s->n; t++)
        if (s->target[t] < ds->n_classes)
            ds->counts[s->target[t]]++;
    ds->n_segs++;
    if (s->n >= ds->window)
        ds->total_starts += s->n - ds->window + 1;
    return EP_OK;
}

/* Index every S, V and F beat of the segments long enough for a window. */
static int index_rare(ep_dataset *ds, const ep_train_segment *segs,
                      ep_error *err)
{
    int i, r;
    size_t b;

    for (r = 0; r < DS_RARE; r++) {
        size_t cap = 0;

        for (i = 0; i < ds->n_segs; i++)
            cap += segs[i].n_beats;
        ds->rare[r] = malloc((cap > 0 ? cap : 1) * sizeof *ds->rare[r]);
        if (ds->rare[r] == NULL)
            return ep_error_set(err, EP_ENOMEM, "dataset: out of memory");
    }
    for (i = 0; i < ds->n_segs; i++) {
        if (ds->segs[i].n < ds->window)
            continue;
        for (b = 0; b < segs[i].n_beats; b++) {
            int cls = segs[i].beats[b].cls;
            int64_t at = (int64_t)floor((double)segs[i].beats[b].sample *
                                        ds->fs / segs[i].fs + 0.5);

            if (cls < EP_AAMI_S || cls > EP_AAMI_F || at < 0 ||
                at >= ds->segs[i].n)
                continue;
            r = cls - EP_AAMI_S;
            ds->rare[r][ds->n_rare[r]].seg = i;
            ds->rare[r][ds->n_rare[r]].at = at;
            ds->n_rare[r]++;
        }
    }
    return EP_OK;
}

int ep_dataset_create(const ep_net *net, const ep_train_segment *segs,
                      int n_segs, int window, ep_dataset **out,
                      ep_error *err)
{
    ep_dataset *ds;
    int i, rc = EP_OK;

    *out = NULL;
    if (n_segs <= 0 || window <= 0)
        return ep_error_set(err, EP_EINVAL, "dataset: %d segments, window "
                            "%d; expected at least one segment and a "
                            "positive window", n_segs, window);
    ds = calloc(1, sizeof *ds);
    if (ds == NULL)
        return ep_error_set(err, EP_ENOMEM, "dataset: out of memory");
    ds->segs = calloc((size_t)n_segs, sizeof *ds->segs);
    ds->window = window;
    ds->fs = net->meta.sampling_rate;
    ds->n_classes = net->meta.n_classes;
    ds->unit = net->meta.input_scale > 0.0 ? net->meta.input_scale : 1.0;
    if (ds->segs == NULL)
        rc = ep_error_set(err, EP_ENOMEM, "dataset: out of memory");

    for (i = 0; rc == EP_OK && i < n_segs; i++)
        rc = load_segment(ds, net, &segs[i], i, err);
    if (rc == EP_OK)
        rc = index_rare(ds, segs, err);
    if (rc == EP_OK && ds->total_starts == 0)
        rc = ep_error_set(err, EP_EINVAL, "dataset: no segment holds a "
                          "window of %d samples at %g Hz", window, ds->fs);
    if (rc != EP_OK) {
        ep_dataset_free(ds);
        return rc;
    }
    *out = ds;
    return EP_OK;
}

int64_t ep_dataset_windows(const ep_dataset *ds)
{
    int64_t total = 0;
    int i;

    for (i = 0; i < ds->n_segs; i++)
        total += ds->segs[i].n;
    return total / ds->window;
}

void ep_dataset_class_counts(const ep_dataset *ds, int64_t *counts)
{
    memcpy(counts, ds->counts, (size_t)ds->n_classes * sizeof *counts);
}

void ep_dataset_class_weights(const ep_dataset *ds, float *weights)
{
    int64_t largest = 0;
    int c;

    for (c = 1; c < ds->n_classes; c++)
        if (ds->counts[c] > largest)
            largest = ds->counts[c];
    weights[0] = 1.0f;
    for (c = 1; c < ds->n_classes; c++) {
        double w = ds->counts[c] > 0
                       ? sqrt((double)largest / (double)ds->counts[c])
                       : 1.0;

        if (w > EP_TRAIN_MAX_CLASS_WEIGHT)
            w = EP_TRAIN_MAX_CLASS_WEIGHT;
        weights[c] = (float)(w < 1.0 ? 1.0 : w);
    }
}

/* A uniformly placed window: its segment and first sample. */
static void draw_uniform(const ep_dataset *ds, ep_rng *rng, int *seg,
                         int64_t *start)
{
    int64_t k = (int64_t)ep_rng_below(rng, (uint64_t)ds->total_starts);
    int i;

    for (i = 0; i < ds->n_segs; i++) {
        int64_t starts = ds->segs[i].n >= ds->window
                             ? ds->segs[i].n - ds->window + 1
                             : 0;

        if (k < starts) {
            *seg = i;
            *start = k;
            return;
        }
        k -= starts;
    }
}

/* A window holding a rare beat away from the window's edges, which
 * inference discards; 0 when the data hold no rare beat. */
static int draw_rare(const ep_dataset *ds, ep_rng *rng, int *seg,
                     int64_t *start)
{
    double share[DS_RARE], total = 0.0, u;
    int64_t margin = ds->window / 8, lo, hi, n;
    const ds_beat *b;
    int r;

    /* The class with probability proportional to the square root of its
     * beat count: rare classes come up more often than they occur, but a
     * class of a few hundred beats (F) is not drawn as often as V. */
    for (r = 0; r < DS_RARE; r++) {
        share[r] = sqrt((double)ds->n_rare[r]);
        total += share[r];
    }
    if (total == 0.0)
        return 0;
    u = ep_rng_uniform(rng) * total;
    for (r = 0; r < DS_RARE - 1 && (u >= share[r] || share[r] == 0.0); r++)
        u -= share[r];
    while (ds->n_rare[r] == 0)
        r--;
    b = &ds->rare[r][ep_rng_below(rng, ds->n_rare[r])];
    n = ds->segs[b->seg].n;

    /* Starts that put the beat inside [margin, window - margin). */
    lo = b->at - (ds->window - margin - 1);
    hi = b->at - margin;
    if (hi > n - ds->window)
        hi = n - ds->window;
    if (lo > hi)
        lo = hi;
    if (lo < 0)
        lo = 0;
    if (hi < lo)
        hi = lo;
    *seg = b->seg;
    *start = lo + (int64_t)ep_rng_below(rng, (uint64_t)(hi - lo + 1));
    return 1;
}

/*
 * Amplitude scale (log-uniform in [0.7, 1.4]), a sinusoidal baseline
 * wander of 0.05..0.5 Hz up to 0.2 mV and white noise of up to 0.03 mV
 * standard deviation (amplitudes in the model's input units).
 * Limitation: the wander and the noise are synthetic; real electrode
 * motion and muscle artefacts are not modelled.
 */
void ep_dataset_augment(ep_rng *rng, double fs, double unit, int n,
                        float *x)
{
    double scale = exp(log(0.7) + ep_rng_uniform(rng) * log(2.0));
    double amp = 0.2 * unit * ep_rng_uniform(rng);
    double freq = 0.05 + 0.45 * ep_rng_uniform(rng);
    double phase = 2.0 * M_PI * ep_rng_uniform(rng);
    double noise = 0.03 * unit * ep_rng_uniform(rng);
    int t;

    for (t = 0; t < n; t++)
        x[t] = (float)(scale * x[t] +
                       amp * sin(2.0 * M_PI * freq * t / fs + phase) +
                       noise * ep_rng_normal(rng));
}

void ep_dataset_draw(const ep_dataset *ds, ep_rng *rng, int batch,
                     double rare_fraction, int augment, float *x,
                     uint8_t *target)
{
    size_t w = (size_t)ds->window;
    int b;

    for (b = 0; b < batch; b++) {
        int seg = 0;
        int64_t start = 0;

        if (!(ep_rng_uniform(rng) < rare_fraction &&
              draw_rare(ds, rng, &seg, &start)))
            draw_uniform(ds, rng, &seg, &start);
        memcpy(x + b * w, ds->segs[seg].x + start, w * sizeof *x);
        memcpy(target + b * w, ds->segs[seg].target + start, w);
        if (augment)
            ep_dataset_augment(rng, ds->fs, ds->unit, ds->window, x + b * w);
    }
}
