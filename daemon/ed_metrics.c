/*
 * ed_metrics.c - request counters and latency histograms per route,
 * job and beat counters, rendered as Prometheus text.
 */
#include "ed_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Latency bucket upper bounds in seconds. */
static const double latency_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_LAT ((int)(sizeof latency_buckets / sizeof latency_buckets[0]))

static const double job_buckets[] = {1, 5, 15, 30, 60, 120, 300, 600, 1800,
                                     3600};
#define N_JOB ((int)(sizeof job_buckets / sizeof job_buckets[0]))

/* Request counts by (route, method, status). */
typedef struct req_counter {
    char route[48], method[12];
    unsigned status;
    uint64_t count;
} req_counter;

/* Latency histogram by (route, method). */
typedef struct lat_hist {
    char route[48], method[12];
    uint64_t buckets[N_LAT];
    uint64_t count;
    double sum;
} lat_hist;

typedef struct job_hist {
    char state[16];
    uint64_t buckets[N_JOB];
    uint64_t count;
    double sum;
} job_hist;

/* Daemon-wide metric state: one set per process, loop thread only. */
static req_counter *counters;
static size_t n_counters, cap_counters;
static lat_hist *hists;
static size_t n_hists, cap_hists;
static job_hist jobs[3];
static int n_jobs;
static int64_t beats_total;

static void *grow(void *arr, size_t *cap, size_t n, size_t elem)
{
    void *p;
    size_t nc;

    if (n < *cap)
        return arr;
    nc = *cap ? *cap * 2 : 32;
    p = realloc(arr, nc * elem);
    if (!p)
        return NULL;
    memset((char *)p + *cap * elem, 0, (nc - *cap) * elem);
    *cap = nc;
    return p;
}

/* The method as a label: the client chooses it, so anything but the
 * common methods becomes "other" (bounded label sets, no quoting). */
static const char *method_label(const char *method)
{
    static const char *const known[] = {"GET", "POST", "DELETE", "PUT",
                                        "HEAD", "PATCH", "OPTIONS", NULL};
    int i;

    for (i = 0; known[i]; i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return "other";
}

void ed_metrics_request(const char *route, const char *method,
                        unsigned status, double seconds)
{
    size_t i;
    int b;
    void *p;

    method = method_label(method);

    /* The counter of this route, method and status. */
    for (i = 0; i < n_counters; i++)
        if (counters[i].status == status &&
            strcmp(counters[i].route, route) == 0 &&
            strcmp(counters[i].method, method) == 0)
            break;
    if (i == n_counters) {
        p = grow(counters, &cap_counters, n_counters, sizeof *counters);
        if (!p)
            return;
        counters = p;
        snprintf(counters[i].route, sizeof counters[i].route, "%s", route);
        snprintf(counters[i].method, sizeof counters[i].method, "%s",
                 method);
        counters[i].status = status;
        n_counters++;
    }
    counters[i].count++;

    /* The latency histogram of this route and method. */
    for (i = 0; i < n_hists; i++)
        if (strcmp(hists[i].route, route) == 0 &&
            strcmp(hists[i].method, method) == 0)
            break;
    if (i == n_hists) {
        p = grow(hists, &cap_hists, n_hists, sizeof *hists);
        if (!p)
            return;
        hists = p;
        snprintf(hists[i].route, sizeof hists[i].route, "%s", route);
        snprintf(hists[i].method, sizeof hists[i].method, "%s", method);
        n_hists++;
    }
    for (b = 0; b < N_LAT; b++)
        if (seconds <= latency_buckets[b])
            hists[i].buckets[b]++;
    hists[i].count++;
    hists[i].sum += seconds;
}

void ed_metrics_beats(int64_t n)
{
    beats_total += n;
}

void ed_metrics_job(const char *state, double seconds)
{
    int i, b;

    for (i = 0; i < n_jobs; i++)
        if (strcmp(jobs[i].state, state) == 0)
            break;
    if (i == n_jobs) {
        if (n_jobs == 3)
            return;
        snprintf(jobs[i].state, sizeof jobs[i].state, "%s", state);
        n_jobs++;
    }
    for (b = 0; b < N_JOB; b++)
        if (seconds <= job_buckets[b])
            jobs[i].buckets[b]++;
    jobs[i].count++;
    jobs[i].sum += seconds;
}

/* A growing text buffer. */
typedef struct text {
    char *s;
    size_t len, cap;
    int failed;
} text;

static void add(text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        if (t->failed)
            return;
        va_start(ap, fmt);
        n = vsnprintf(t->s ? t->s + t->len : NULL,
                      t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n >= 0 && t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        {
            size_t nc = t->cap ? t->cap * 2 : 8192;
            char *p;
            while (nc < t->len + (size_t)n + 1)
                nc *= 2;
            p = realloc(t->s, nc);
            if (!p) {
                t->failed = 1;
                return;
            }
            t->s = p;
            t->cap = nc;
        }
    }
}

static void render_requests(text *t)
{
    size_t i;
    int b;

    add(t, "# HELP ecgpruned_http_requests_total HTTP requests by route, "
        "method and status.\n# TYPE ecgpruned_http_requests_total counter\n");
    for (i = 0; i < n_counters; i++)
        add(t, "ecgpruned_http_requests_total{route=\"%s\",method=\"%s\","
            "status=\"%u\"} %llu\n", counters[i].route, counters[i].method,
            counters[i].status, (unsigned long long)counters[i].count);
    add(t, "# HELP ecgpruned_http_request_duration_seconds Time from the "
        "request's headers to its completion.\n"
        "# TYPE ecgpruned_http_request_duration_seconds histogram\n");
    for (i = 0; i < n_hists; i++) {
        const lat_hist *h = &hists[i];
        for (b = 0; b < N_LAT; b++)
            add(t, "ecgpruned_http_request_duration_seconds_bucket{route="
                "\"%s\",method=\"%s\",le=\"%g\"} %llu\n", h->route,
                h->method, latency_buckets[b],
                (unsigned long long)h->buckets[b]);
        add(t, "ecgpruned_http_request_duration_seconds_bucket{route=\"%s\","
            "method=\"%s\",le=\"+Inf\"} %llu\n", h->route, h->method,
            (unsigned long long)h->count);
        add(t, "ecgpruned_http_request_duration_seconds_sum{route=\"%s\","
            "method=\"%s\"} %.6f\n", h->route, h->method, h->sum);
        add(t, "ecgpruned_http_request_duration_seconds_count{route=\"%s\","
            "method=\"%s\"} %llu\n", h->route, h->method,
            (unsigned long long)h->count);
    }
}

static void render_jobs(text *t)
{
    int i, b;

    add(t, "# HELP ecgpruned_job_duration_seconds Run time of finished jobs "
        "by final state.\n# TYPE ecgpruned_job_duration_seconds histogram\n");
    for (i = 0; i < n_jobs; i++) {
        for (b = 0; b < N_JOB; b++)
            add(t, "ecgpruned_job_duration_seconds_bucket{state=\"%s\","
                "le=\"%g\"} %llu\n", jobs[i].state, job_buckets[b],
                (unsigned long long)jobs[i].buckets[b]);
        add(t, "ecgpruned_job_duration_seconds_bucket{state=\"%s\","
            "le=\"+Inf\"} %llu\n", jobs[i].state,
            (unsigned long long)jobs[i].count);
        add(t, "ecgpruned_job_duration_seconds_sum{state=\"%s\"} %.3f\n",
            jobs[i].state, jobs[i].sum);
        add(t, "ecgpruned_job_duration_seconds_count{state=\"%s\"} %llu\n",
            jobs[i].state, (unsigned long long)jobs[i].count);
    }
}

char *ed_metrics_render(const ed_metrics_gauges *g)
{
    text t = {0};

    render_requests(&t);
    render_jobs(&t);
    add(&t, "# HELP ecgpruned_jobs_queued Jobs waiting for a worker.\n"
        "# TYPE ecgpruned_jobs_queued gauge\necgpruned_jobs_queued %lld\n",
        (long long)g->jobs_queued);
    add(&t, "# HELP ecgpruned_jobs_running Jobs on the worker pool.\n"
        "# TYPE ecgpruned_jobs_running gauge\necgpruned_jobs_running %d\n",
        g->jobs_running);
    add(&t, "# HELP ecgpruned_inference_in_flight Inference requests on "
        "the worker pool.\n# TYPE ecgpruned_inference_in_flight gauge\n"
        "ecgpruned_inference_in_flight %d\n", g->infer_in_flight);
    add(&t, "# HELP ecgpruned_pending_upload_bytes Request-body buffers of "
        "uploads in progress.\n# TYPE ecgpruned_pending_upload_bytes gauge"
        "\necgpruned_pending_upload_bytes %lld\n",
        (long long)g->pending_upload_bytes);
    add(&t, "# HELP ecgpruned_beats_inferred_total Beats returned by "
        "inference.\n# TYPE ecgpruned_beats_inferred_total counter\n"
        "ecgpruned_beats_inferred_total %lld\n", (long long)beats_total);
    add(&t, "# HELP ecgpruned_models Models in the store.\n"
        "# TYPE ecgpruned_models gauge\necgpruned_models %lld\n",
        (long long)g->models);
    add(&t, "# HELP ecgpruned_batches ECG batches in the store.\n"
        "# TYPE ecgpruned_batches gauge\necgpruned_batches %lld\n",
        (long long)g->batches);
    add(&t, "# HELP ecgpruned_ready 1 when the daemon accepts work.\n"
        "# TYPE ecgpruned_ready gauge\necgpruned_ready %d\n", g->ready);
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

void ed_metrics_free(void)
{
    free(counters);
    free(hists);
    counters = NULL;
    hists = NULL;
    n_counters = cap_counters = n_hists = cap_hists = 0;
}
