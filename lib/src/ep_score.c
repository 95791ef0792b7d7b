/*
 * ep_score.c - ANSI/AAMI EC57 beat-by-beat comparison of detected beats
 * against reference annotations: matching within a time window, the 5x5
 * confusion matrix, and the sensitivity / positive predictivity / F1 rates
 * derived from it, gross (summed over records) and averaged per record.
 */
#include "ecgprune/ep_score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A candidate (reference, detection) pair within the match window. */
typedef struct score_pair {
    int64_t distance;   /* |detected - reference| in samples */
    size_t ref, det;
} score_pair;

/* Closest first; on equal distance the earlier reference, then the earlier
 * detection, so that the result never depends on qsort's order. */
static int pair_compare(const void *a, const void *b)
{
    const score_pair *p = a, *q = b;

    if (p->distance != q->distance)
        return p->distance < q->distance ? -1 : 1;
    if (p->ref != q->ref)
        return p->ref < q->ref ? -1 : 1;
    if (p->det != q->det)
        return p->det < q->det ? -1 : 1;
    return 0;
}

static int check_inputs(const ep_ref_beat *ref, size_t n_ref,
                        const ep_beat *det, size_t n_det, double fs,
                        double window_s, ep_error *err)
{
    if (!(fs > 0.0) || !isfinite(fs) || !(window_s >= 0.0) ||
        !isfinite(window_s))
        return ep_error_set(err, EP_EINVAL,
                            "score: sampling rate %g and window %g s must "
                            "be finite, rate > 0 and window >= 0",
                            fs, window_s);
    if ((n_ref > 0 && ref == NULL) || (n_det > 0 && det == NULL))
        return ep_error_set(err, EP_EINVAL, "score: NULL beat list");
    for (size_t i = 0; i < n_ref; i++) {
        if (ref[i].cls < 0 || ref[i].cls >= EP_AAMI_COUNT)
            return ep_error_set(err, EP_EINVAL,
                                "score: reference beat %zu has class %d, "
                                "expected 0..%d", i, (int)ref[i].cls,
                                EP_AAMI_COUNT - 1);
        if (i > 0 && ref[i].sample < ref[i - 1].sample)
            return ep_error_set(err, EP_EINVAL,
                                "score: reference beat %zu (sample %lld) "
                                "comes before beat %zu; expected sorted",
                                i, (long long)ref[i].sample, i - 1);
    }
    for (size_t j = 0; j < n_det; j++) {
        if (det[j].cls < 0 || det[j].cls >= EP_AAMI_COUNT)
            return ep_error_set(err, EP_EINVAL,
                                "score: detected beat %zu has class %d, "
                                "expected 0..%d", j, (int)det[j].cls,
                                EP_AAMI_COUNT - 1);
        if (j > 0 && det[j].sample < det[j - 1].sample)
            return ep_error_set(err, EP_EINVAL,
                                "score: detected beat %zu (sample %lld) "
                                "comes before beat %zu; expected sorted",
                                j, (long long)det[j].sample, j - 1);
    }
    return EP_OK;
}

/* Every pair within `window` samples; both lists are sorted, so the
 * detections near reference i start at or after those near i - 1. */
static int collect_pairs(const ep_ref_beat *ref, size_t n_ref,
                         const ep_beat *det, size_t n_det, int64_t window,
                         score_pair **pairs, size_t *n_pairs, ep_error *err)
{
    size_t cap = 0, count = 0, first = 0;
    score_pair *list = NULL;

    for (size_t i = 0; i < n_ref; i++) {
        while (first < n_det && det[first].sample < ref[i].sample - window)
            first++;
        for (size_t j = first;
             j < n_det && det[j].sample <= ref[i].sample + window; j++) {
            if (count == cap) {
                size_t new_cap = cap ? 2 * cap : 64;
                score_pair *grown = realloc(list, new_cap * sizeof *grown);

                if (grown == NULL) {
                    free(list);
                    return ep_error_set(err, EP_ENOMEM,
                                        "score: out of memory for %zu "
                                        "candidate pairs", new_cap);
                }
                list = grown;
                cap = new_cap;
            }
            list[count].distance = llabs(det[j].sample - ref[i].sample);
            list[count].ref = i;
            list[count].det = j;
            count++;
        }
    }
    *pairs = list;
    *n_pairs = count;
    return EP_OK;
}

int ep_score_record(const ep_ref_beat *ref, size_t n_ref,
                    const ep_beat *det, size_t n_det, double fs,
                    double window_s, ep_score_counts *counts,
                    ep_error *err)
{
    score_pair *pairs = NULL;
    size_t n_pairs = 0;
    unsigned char *ref_used, *det_used;
    int64_t window;
    int rc;

    memset(counts, 0, sizeof *counts);
    rc = check_inputs(ref, n_ref, det, n_det, fs, window_s, err);
    if (rc != EP_OK)
        return rc;

    /* The window in whole samples; the small slack keeps 0.15 s x 360 Hz
     * at 54 samples despite 0.15 not being exact in binary. */
    window = (int64_t)floor(window_s * fs + 1e-6);
    rc = collect_pairs(ref, n_ref, det, n_det, window, &pairs, &n_pairs,
                       err);
    if (rc != EP_OK)
        return rc;
    ref_used = calloc(n_ref + 1, 1);
    det_used = calloc(n_det + 1, 1);
    if (ref_used == NULL || det_used == NULL) {
        free(pairs);
        free(ref_used);
        free(det_used);
        return ep_error_set(err, EP_ENOMEM, "score: out of memory for "
                            "%zu reference and %zu detected beats",
                            n_ref, n_det);
    }

    /* Closest pairs first, each beat used at most once. */
    if (n_pairs > 1)
        qsort(pairs, n_pairs, sizeof *pairs, pair_compare);
    for (size_t k = 0; k < n_pairs; k++) {
        size_t i = pairs[k].ref, j = pairs[k].det;

        if (ref_used[i] || det_used[j])
            continue;
        ref_used[i] = det_used[j] = 1;
        counts->confusion[ref[i].cls][det[j].cls]++;
    }

    /* Whatever is left over is missed or extra. */
    for (size_t i = 0; i < n_ref; i++)
        if (!ref_used[i])
            counts->missed[ref[i].cls]++;
    for (size_t j = 0; j < n_det; j++)
        if (!det_used[j]) {
            counts->extra++;
            counts->extra_by_class[det[j].cls]++;
        }
    free(pairs);
    free(ref_used);
    free(det_used);
    return EP_OK;
}

void ep_score_add(ep_score_counts *a, const ep_score_counts *b)
{
    for (int r = 0; r < EP_AAMI_COUNT; r++) {
        for (int c = 0; c < EP_AAMI_COUNT; c++)
            a->confusion[r][c] += b->confusion[r][c];
        a->missed[r] += b->missed[r];
        a->extra_by_class[r] += b->extra_by_class[r];
    }
    a->extra += b->extra;
}

/* num / den, or 0 when den is 0 (an undefined rate). */
static double ratio(int64_t num, int64_t den)
{
    return den > 0 ? (double)num / (double)den : 0.0;
}

/* Mean F1 of N, S, V and F over those that occur at all (reference beats
 * or detections): a class absent from both sides has no F1 to speak of,
 * and counting it as 0 would cap the mean at 0.75 on a record without S
 * beats.  0 when none occurs. */
static double macro_f1(const ep_class_stats *cls)
{
    static const ep_aami scored[] = {EP_AAMI_N, EP_AAMI_S, EP_AAMI_V,
                                     EP_AAMI_F};
    double sum = 0.0;
    int n = 0;

    for (size_t i = 0; i < sizeof scored / sizeof *scored; i++) {
        const ep_class_stats *cs = &cls[scored[i]];

        if (cs->tp + cs->fn + cs->fp > 0) {
            sum += cs->f1;
            n++;
        }
    }
    return n > 0 ? sum / n : 0.0;
}

void ep_score_stats_from(const ep_score_counts *c, ep_score_stats *s)
{
    memset(s, 0, sizeof *s);

    /* Detection: every matched pair is a true positive, whatever the
     * classes. */
    for (int r = 0; r < EP_AAMI_COUNT; r++) {
        for (int k = 0; k < EP_AAMI_COUNT; k++)
            s->det_tp += c->confusion[r][k];
        s->det_fn += c->missed[r];
    }
    s->det_fp = c->extra;
    s->det_se = ratio(s->det_tp, s->det_tp + s->det_fn);
    s->det_ppv = ratio(s->det_tp, s->det_tp + s->det_fp);

    /* Per class: a reference beat of class k labelled otherwise or missed
     * is a false negative; a detection labelled k that is another class's
     * beat or matches nothing is a false positive. */
    for (int k = 0; k < EP_AAMI_COUNT; k++) {
        ep_class_stats *cs = &s->cls[k];

        cs->tp = c->confusion[k][k];
        cs->fn = c->missed[k];
        cs->fp = c->extra_by_class[k];
        for (int o = 0; o < EP_AAMI_COUNT; o++) {
            if (o == k)
                continue;
            cs->fn += c->confusion[k][o];
            cs->fp += c->confusion[o][k];
        }
        cs->support = cs->tp + cs->fn;
        cs->se = ratio(cs->tp, cs->tp + cs->fn);
        cs->ppv = ratio(cs->tp, cs->tp + cs->fp);
        cs->f1 = ratio(2 * cs->tp, 2 * cs->tp + cs->fn + cs->fp);
    }
    s->macro_f1 = macro_f1(s->cls);
}

/* Running mean of one rate over the records where it is defined. */
typedef struct score_mean {
    double sum;
    int64_t n;
} score_mean;

static void mean_add(score_mean *m, double value, int defined)
{
    if (defined) {
        m->sum += value;
        m->n++;
    }
}

static double mean_value(const score_mean *m)
{
    return m->n > 0 ? m->sum / (double)m->n : 0.0;
}

void ep_score_average(const ep_score_counts *per_record, size_t n,
                      ep_score_stats *avg)
{
    score_mean det_se = {0}, det_ppv = {0};
    score_mean se[EP_AAMI_COUNT] = {{0}}, ppv[EP_AAMI_COUNT] = {{0}};
    score_mean f1[EP_AAMI_COUNT] = {{0}};
    ep_score_counts gross;

    /* Counts are gross sums. */
    memset(&gross, 0, sizeof gross);
    for (size_t r = 0; r < n; r++)
        ep_score_add(&gross, &per_record[r]);
    ep_score_stats_from(&gross, avg);

    /* Rates: mean over the records where each is defined. */
    for (size_t r = 0; r < n; r++) {
        ep_score_stats s;

        ep_score_stats_from(&per_record[r], &s);
        mean_add(&det_se, s.det_se, s.det_tp + s.det_fn > 0);
        mean_add(&det_ppv, s.det_ppv, s.det_tp + s.det_fp > 0);
        for (int k = 0; k < EP_AAMI_COUNT; k++) {
            const ep_class_stats *cs = &s.cls[k];

            mean_add(&se[k], cs->se, cs->tp + cs->fn > 0);
            mean_add(&ppv[k], cs->ppv, cs->tp + cs->fp > 0);
            mean_add(&f1[k], cs->f1, cs->tp + cs->fn + cs->fp > 0);
        }
    }
    avg->det_se = mean_value(&det_se);
    avg->det_ppv = mean_value(&det_ppv);
    for (int k = 0; k < EP_AAMI_COUNT; k++) {
        avg->cls[k].se = mean_value(&se[k]);
        avg->cls[k].ppv = mean_value(&ppv[k]);
        avg->cls[k].f1 = mean_value(&f1[k]);
    }
    avg->macro_f1 = macro_f1(avg->cls);
}

int ep_score_reference(const ep_annotations *ann, int64_t from,
                       ep_ref_beat **out, size_t *n_out, ep_error *err)
{
    ep_ref_beat *list;
    size_t count = 0;

    *out = NULL;
    *n_out = 0;
    if (ann == NULL)
        return ep_error_set(err, EP_EINVAL, "score: NULL annotations");

    /* One slot per annotation is enough; +1 keeps malloc(0) out. */
    list = malloc((ann->count + 1) * sizeof *list);
    if (list == NULL)
        return ep_error_set(err, EP_ENOMEM, "score: out of memory for %zu "
                            "reference beats", ann->count);
    for (size_t i = 0; i < ann->count; i++) {
        const ep_annotation *a = &ann->items[i];
        ep_aami cls = ep_aami_from_code(a->code);

        if (i > 0 && a->sample < ann->items[i - 1].sample) {
            free(list);
            return ep_error_set(err, EP_EFORMAT,
                                "score: annotation %zu (sample %lld) comes "
                                "before annotation %zu; expected sorted",
                                i, (long long)a->sample, i - 1);
        }
        if (cls == EP_AAMI_NONE || a->sample < from)
            continue;
        list[count].sample = a->sample;
        list[count].cls = cls;
        count++;
    }
    *out = list;
    *n_out = count;
    return EP_OK;
}
