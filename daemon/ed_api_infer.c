/*
 * ed_api_infer.c - POST /v1/models/{id}/infer: the model and the media
 * type are checked on the loop thread, the connection is suspended, a
 * JSON ECG is parsed and the network runs on a pool worker with its own
 * inferer, and the answer (beats and a summary) is sent from the
 * after-work callback.
 *
 * A pruned model remembers the subjects it was calibrated on; a request
 * that names its subject (?subject=) is refused with 409 when the model is
 * another subject's.  Limitation: without ?subject= nothing is checked,
 * since the ECG itself carries no identity.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_infer.h"
#include "ed_api.h"
#include "ed_ecg.h"
#include "ed_log.h"
#include "ed_metrics.h"
#include "ed_models.h"

/* Inference requests on the pool at once; more get 503 + Retry-After so
 * that a burst cannot queue unbounded memory. */
#define MAX_IN_FLIGHT 64

typedef struct infer_work {
    uv_work_t work;
    ed_app *app;
    ed_request *req;
    int64_t model_id;
    const ep_net *net;
    const unsigned char *body;  /* the request's, while it is suspended */
    size_t body_len;
    int json_pending;           /* body still to parse into ecg */
    int64_t max_samples;        /* limits.max_samples when it came */
    ed_ecg ecg;
    unsigned st;                /* refusal of the ECG: HTTP status, msg */
    char msg[700];
    double ms;
    int rc;
    ep_error err;
    ep_beat *beats;
    size_t n_beats;
} infer_work;

/* A representative MIT symbol of each AAMI class. */
static const char *class_symbol(ep_aami c)
{
    static const char *const symbols[] = {"N", "A", "V", "F", "Q"};

    return c >= 0 && c < EP_AAMI_COUNT ? symbols[c] : "?";
}

/* The network runs at the model's rate, so the ECG grows by the ratio of
 * the rates (50 Hz into a 10 kHz model: 200 times): the sample limit holds
 * for the resampled signal too, or a small body could take gigabytes. */
static unsigned check_resampled(const ep_net *net, const ed_ecg *ecg,
                                int64_t max_samples, char *msg, size_t ms)
{
    int64_t n = ep_infer_resampled_count(ecg->n, ecg->fs,
                                         net->meta.sampling_rate);

    if (n <= max_samples)
        return 0;
    snprintf(msg, ms, "resampled to the model's %g Hz, the ECG would be "
             "%lld samples, more than the limit of %lld "
             "(limits.max_samples)", net->meta.sampling_rate, (long long)n,
             (long long)max_samples);
    return 413;
}

static void infer_run(uv_work_t *w)
{
    infer_work *iw = w->data;
    ep_infer_opts opts;
    ep_inferer *inf = NULL;
    uint64_t t0;

    /* The ECG, unless it came as multipart and was decoded already. */
    if (iw->json_pending)
        iw->st = ed_api_parse_ecg_json(iw->app, iw->body, iw->body_len,
                                       iw->max_samples, ED_ECG_INFER,
                                       &iw->ecg, iw->msg, sizeof iw->msg);
    if (!iw->st)
        iw->st = check_resampled(iw->net, &iw->ecg, iw->max_samples, iw->msg,
                                 sizeof iw->msg);
    if (iw->st)
        return;

    /* Limitation: every request builds its own plan and buffers (1.6 ms
     * of a 60-ms request for 10 s of ECG, default model); plans are not
     * pooled, which would hold their buffers between requests. */
    t0 = ed_http_now_ns();
    ep_infer_default_opts(&opts);
    iw->rc = ep_inferer_create(iw->net, &opts, &inf, &iw->err);
    if (!iw->rc)
        iw->rc = ep_infer_beats(inf, iw->ecg.mv, iw->ecg.n, iw->ecg.fs,
                                &iw->beats, &iw->n_beats, &iw->err);
    ep_inferer_free(inf);
    iw->ms = (double)(ed_http_now_ns() - t0) / 1e6;
}

/* Counts per class, heart rate from the mean RR interval, and whether
 * any S, V or F beat was seen. */
static json_t *summary_json(const infer_work *iw)
{
    int64_t counts[EP_AAMI_COUNT] = {0};
    json_t *c = json_object(), *hr = json_null();
    size_t i;
    int k;

    for (i = 0; i < iw->n_beats; i++)
        if (iw->beats[i].cls >= 0 && iw->beats[i].cls < EP_AAMI_COUNT)
            counts[iw->beats[i].cls]++;
    for (k = 0; k < EP_AAMI_COUNT; k++)
        json_object_set_new(c, ep_aami_name((ep_aami)k),
                            json_integer(counts[k]));
    if (iw->n_beats >= 2) {
        double span = iw->beats[iw->n_beats - 1].time - iw->beats[0].time;
        if (span > 0)
            hr = json_real(60.0 * (double)(iw->n_beats - 1) / span);
    }
    return json_pack("{s:o, s:I, s:o, s:b, s:f}", "counts", c, "n_beats",
                     (json_int_t)iw->n_beats, "heart_rate", hr, "abnormal",
                     counts[EP_AAMI_S] + counts[EP_AAMI_V] +
                     counts[EP_AAMI_F] > 0, "duration_s",
                     (double)iw->ecg.n / iw->ecg.fs);
}

static json_t *beats_json(const infer_work *iw)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; i < iw->n_beats; i++) {
        const ep_beat *b = &iw->beats[i];
        json_array_append_new(arr, json_pack(
            "{s:I, s:f, s:s, s:s, s:f}", "sample", (json_int_t)b->sample,
            "time", b->time, "class", ep_aami_name(b->cls), "symbol",
            class_symbol(b->cls), "confidence",
            round((double)b->confidence * 1e4) / 1e4));
    }
    return arr;
}

static void keep_record(ed_app *app, const infer_work *iw, json_t *summary)
{
    char now[32], *text = json_dumps(summary, JSON_COMPACT);

    ed_store_now(now);
    if (text)
        ed_store_exec(app->store, "INSERT INTO inferences (model_id, "
                      "n_samples, n_beats, summary, ms, created_at) VALUES "
                      "(?, ?, ?, ?, ?, ?)", "iiitdt", iw->model_id,
                      iw->ecg.n, (int64_t)iw->n_beats, text, iw->ms, now);
    free(text);
}

static void infer_done(uv_work_t *w, int status)
{
    infer_work *iw = w->data;
    ed_app *app = iw->app;
    ed_request *req = iw->req;
    json_t *summary;

    app->infer_in_flight--;
    if (status != 0) {
        ed_http_problem(req, 503, "inference was cancelled (shutdown)");
    } else if (iw->st) {
        ed_http_problem(req, iw->st, "%s", iw->msg);
    } else if (iw->rc) {
        ed_http_problem(req, iw->rc == EP_ENOMEM ? 500 : 422,
                        "inference failed: %s", iw->err.msg);
    } else {
        summary = summary_json(iw);
        if (app->cfg.keep_inferences)
            keep_record(app, iw, summary);
        ed_metrics_beats((int64_t)iw->n_beats);
        ed_http_json(req, 200, json_pack(
            "{s:I, s:f, s:I, s:s, s:o, s:o, s:f}", "model_id",
            (json_int_t)iw->model_id, "sampling_rate", iw->ecg.fs,
            "n_samples", (json_int_t)iw->ecg.n, "lead", iw->ecg.lead,
            "beats", beats_json(iw), "summary", summary, "compute_ms",
            iw->ms));
        snprintf(req->log_extra, sizeof req->log_extra, "model_id=%lld "
                 "beats=%zu compute_ms=%.1f", (long long)iw->model_id,
                 iw->n_beats, iw->ms);
    }
    ed_models_release(app, iw->net);
    ed_ecg_free(&iw->ecg);
    free(iw->beats);
    free(iw);
    ed_http_resume(req);
}

/* With ?subject=, the model must be a general one or that subject's:
 * 0, or an HTTP status with msg filled. */
static unsigned check_subject(ed_app *app, ed_request *req, int64_t id,
                              char *msg, size_t ms)
{
    const char *subject, *text;
    json_t *row, *list, *v;
    unsigned st;
    size_t i;
    int found = 0;

    /* A value that breaks the pseudonym rule is not quoted back: it may
     * be a name, which must reach neither the answer nor the log. */
    st = ed_http_query_param(req, "subject", &subject, msg, ms);
    if (st || subject == NULL)
        return st;
    if (!ed_ecg_valid_subject(subject)) {
        snprintf(msg, ms, "query parameter \"subject\": expected a "
                 "pseudonym of 1..%d letters, digits, '.', '-', '_'",
                 ED_SUBJECT_MAX);
        return 422;
    }
    row = ed_store_row(app->store, &found, "SELECT subjects FROM models "
                       "WHERE id = ?", "i", id);
    if (row == NULL) {
        snprintf(msg, ms, "store: %s", ed_store_errmsg(app->store));
        return 500;
    }
    text = json_string_value(json_object_get(row, "subjects"));
    list = text ? json_loads(text, 0, NULL) : NULL;
    if (list != NULL) {
        st = 409;
        json_array_foreach(list, i, v)
            if (json_is_string(v) && !strcmp(json_string_value(v), subject))
                st = 0;
    }
    if (st)
        snprintf(msg, ms, "model %lld was calibrated on subject(s) %.200s, "
                 "not \"%.64s\"; run that subject's own model, or the model "
                 "it was pruned from", (long long)id, text, subject);
    json_decref(list);
    json_decref(row);
    return st;
}

void ed_api_infer(ed_app *app, ed_request *req, int64_t id)
{
    infer_work *iw;
    char msg[700];
    unsigned st;

    if (app->stopping) {
        ed_http_problem(req, 503, "the daemon is shutting down");
        return;
    }
    if (app->infer_in_flight >= MAX_IN_FLIGHT) {
        ed_http_problem(req, 503, "%d inference requests are already "
                        "running; retry shortly", MAX_IN_FLIGHT);
        ed_http_add_header(req, "Retry-After", "1");
        return;
    }
    iw = calloc(1, sizeof *iw);
    if (!iw) {
        ed_http_problem(req, 500, "out of memory");
        return;
    }

    /* The model first (404 before looking at the body), its subject, then
     * the ECG's media type (a multipart one is decoded here). */
    st = ed_models_acquire(app, id, &iw->net, msg, sizeof msg);
    if (st) {
        free(iw);
        ed_http_problem(req, st, "%s", msg);
        if (st == 503)
            ed_http_add_header(req, "Retry-After", "1");
        return;
    }
    st = check_subject(app, req, id, msg, sizeof msg);
    if (!st)
        st = ed_ecg_parse_start(req, &app->cfg, ED_ECG_INFER, &iw->ecg,
                                &iw->json_pending, msg, sizeof msg);
    if (st) {
        ed_models_release(app, iw->net);
        ed_ecg_free(&iw->ecg);
        free(iw);
        ed_http_problem(req, st, "%s", msg);
        return;
    }

    /* Off to the pool; the connection waits suspended. */
    iw->app = app;
    iw->req = req;
    iw->model_id = id;
    iw->body = req->body;
    iw->body_len = req->body_len;
    iw->max_samples = app->cfg.max_samples;
    iw->work.data = iw;
    app->infer_in_flight++;
    ed_http_suspend(req);
    uv_queue_work(app->loop, &iw->work, infer_run, infer_done);
}
