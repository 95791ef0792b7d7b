/*
 * ed_jobs.h - the job runner: queued pruning jobs from the store go to the
 * libuv pool, at most cfg.max_running_jobs at a time (one pool thread is
 * left to inference whenever the pool has two).
 *
 * The loop thread reads a job's model and batches from the store, hands
 * them to a worker, and writes progress (once a second) and the outcome
 * back.  Cancellation is cooperative: libuv cannot stop work that has
 * started, so the worker's progress callback reads a flag between pruning
 * rounds and training steps.  On shutdown running jobs are asked to stop
 * the same way and go back to 'queued'; a job whose daemon died (kill -9)
 * is re-queued at the next start.
 */
#ifndef ED_JOBS_H
#define ED_JOBS_H

#include <stdint.h>

#include "ed_app.h"

int ed_jobs_create(ed_app *app);
void ed_jobs_free(ed_app *app);

/* Times the daemon may die while one job runs before that job is no
 * longer started again (it may be what kills the daemon).  Clean stops,
 * which queue a running job again, do not count. */
#define ED_JOBS_MAX_INTERRUPTIONS 3

/* At start-up, in one transaction: jobs left 'running' by a dead daemon
 * go back to 'queued', to 'cancelled' if a cancel was asked for, or to
 * 'failed' once the daemon died under them (or stopped past its deadline
 * with them running) ED_JOBS_MAX_INTERRUPTIONS times.  Returns 0, or -1
 * when the store could not be written (it is left as it was). */
int ed_jobs_recover(ed_app *app);

/* The name of job's pruned model: the parent's name, cut so that
 * "-job<id>" fits within ED_MODEL_NAME_MAX. */
void ed_jobs_result_name(char *out, size_t size, const char *parent,
                         int64_t job);

/* Look for queued work now (after a submission). */
void ed_jobs_kick(ed_app *app);

/* Ask a running job to stop; 1 if it was running here, 0 if not. */
int ed_jobs_cancel(ed_app *app, int64_t id);

int ed_jobs_running(ed_app *app);

/* Shutdown: stop dispatching, ask running jobs to stop and re-queue. */
void ed_jobs_shutdown(ed_app *app);
/* Shutdown deadline passed: mark jobs still running 'queued' in the store
 * (their workers' results will be ignored). */
void ed_jobs_abandon(ed_app *app);

/* Samples of an n-sample calibration batch that a job calibrates on when
 * holdout.fraction (0: none) takes the rest, its last floor(n * fraction)
 * samples, for scoring. */
int64_t ed_jobs_calib_samples(int64_t n, double fraction);

/* Beats (annotations of an AAMI class) in a batch's stored annotations
 * (JSON text, may be NULL) at samples below `before`: those a job's
 * calibration part keeps, for fine-tuning. */
size_t ed_jobs_count_beats(const char *annotations, int64_t before);

#endif
