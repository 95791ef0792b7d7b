/*
 * ed_metrics.h - Prometheus metrics of the daemon, rendered in the text
 * exposition format on GET /metrics.
 *
 * Updated only from the loop thread (request completion, work
 * callbacks), so no locking is needed.
 */
#ifndef ED_METRICS_H
#define ED_METRICS_H

#include <stdint.h>

/* Count one finished request and its latency. */
void ed_metrics_request(const char *route, const char *method,
                        unsigned status, double seconds);
/* Count beats returned by inference. */
void ed_metrics_beats(int64_t n);
/* Count one finished job (state: succeeded, failed, cancelled). */
void ed_metrics_job(const char *state, double seconds);

typedef struct ed_metrics_gauges {
    int64_t jobs_queued;
    int jobs_running;
    int infer_in_flight;
    int64_t pending_upload_bytes;
    int64_t models, batches;
    int ready;
} ed_metrics_gauges;

/* The exposition text (malloc'd). */
char *ed_metrics_render(const ed_metrics_gauges *g);

/* Free the counters (at exit). */
void ed_metrics_free(void);

#endif
