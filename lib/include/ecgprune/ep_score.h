/*
 * ep_score.h - beat-by-beat scoring as ANSI/AAMI EC57 describes it.
 *
 * Each reference beat is matched to at most one detected beat within the
 * match window (150 ms), closest first.  Matched pairs fill the 5x5
 * confusion matrix (rows reference N,S,V,F,Q; columns detected); reference
 * beats without a match are false negatives, detections without one are
 * false positives.  Scores accumulate over records (gross) and are also
 * averaged per record.
 *
 * Rules as implemented (docs/scoring.md tells more):
 *   - a pair matches when |detected - reference| <= window, so a detection
 *     exactly 150 ms away still matches (as bxb accepts it);
 *   - among all pairs within the window the closest is taken first (ties:
 *     earlier reference, then earlier detection), each reference and each
 *     detection is used at most once;
 *   - a rate whose denominator is 0 is reported as 0, never NaN.
 */
#ifndef ECGPRUNE_EP_SCORE_H
#define ECGPRUNE_EP_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_error.h"
#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_wfdb.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ep_ref_beat {
    int64_t sample;
    ep_aami cls;
} ep_ref_beat;

typedef struct ep_score_counts {
    int64_t confusion[EP_AAMI_COUNT][EP_AAMI_COUNT];
    int64_t missed[EP_AAMI_COUNT];   /* reference beats with no match */
    int64_t extra;                   /* detections with no reference */
    int64_t extra_by_class[EP_AAMI_COUNT]; /* extra, by detected class */
} ep_score_counts;

typedef struct ep_class_stats {
    double se, ppv, f1;              /* fractions; NaN-free: 0 if undefined */
    int64_t support;                 /* reference beats of the class */
    int64_t tp, fn, fp;
} ep_class_stats;

typedef struct ep_score_stats {
    double det_se, det_ppv;
    int64_t det_tp, det_fn, det_fp;
    ep_class_stats cls[EP_AAMI_COUNT];
    double macro_f1;                 /* mean F1 of those of N, S, V, F
                                      * with reference beats or
                                      * detections */
} ep_score_stats;

/* Compare one record.  Both lists sorted by sample.  window_s is the match
 * window (0.15 for EC57), fs the sampling rate of the samples. */
int ep_score_record(const ep_ref_beat *ref, size_t n_ref,
                    const ep_beat *det, size_t n_det, double fs,
                    double window_s, ep_score_counts *counts,
                    ep_error *err);

/* Add b into a (gross totals). */
void ep_score_add(ep_score_counts *a, const ep_score_counts *b);

/* Rates from counts. */
void ep_score_stats_from(const ep_score_counts *c, ep_score_stats *s);

/*
 * Per-record average: each record's rates computed alone, then averaged
 * over the records where that rate is defined (its denominator is not 0);
 * a rate defined in no record is 0.  Counts (tp, fn, fp, support) are the
 * gross sums.  The average macro_f1 is the mean of the averaged F1 of
 * those of N, S, V and F that occur (gross counts).  n may be 0 (all
 * zero).
 */
void ep_score_average(const ep_score_counts *per_record, size_t n,
                      ep_score_stats *avg);

/* Reference beats of a record's annotations from `from` sample on:
 * beat codes mapped to AAMI classes, non-beats dropped; malloc'd. */
int ep_score_reference(const ep_annotations *ann, int64_t from,
                       ep_ref_beat **out, size_t *n_out, ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
