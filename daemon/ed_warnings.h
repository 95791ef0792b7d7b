/*
 * ed_warnings.h - plain-language warnings attached to a finished pruning
 * job's result: calibration ECG that cannot teach the pruned model the
 * rare classes or too short to refit the layers well, no held-out check,
 * held-out scores that fell.  A job with
 * warnings still succeeds (the model is stored); the warnings tell the
 * gateway not to deploy it blindly.
 */
#ifndef ED_WARNINGS_H
#define ED_WARNINGS_H

#include <jansson.h>
#include <stddef.h>

#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_prune.h"

/* Append to warnings what the calibration beat counts (per AAMI class;
 * annotated is 0 when no batch carried annotations) imply
 * (ep_prune_calib_warning). */
void ed_warn_calibration(json_t *warnings,
                         const size_t counts[EP_AAMI_COUNT], int annotated);

/* Append to warnings, when any layer group was refitted from fewer
 * calibration rows per unknown than EP_LSQ_MIN_ROWS_PER_UNKNOWN, how many
 * and the worst. */
void ed_warn_refits(json_t *warnings, const ep_prune_result *res);

/* Append to warnings a note that nothing was held out, or the scores
 * (objects as the job result's "scores" has them) that fell. */
void ed_warn_holdout(json_t *warnings, const json_t *before,
                     const json_t *after, int n_holdout);

#endif
