/*
 * ed_api_models.c - /v1/models: upload (safetensors body), list, show,
 * download, delete.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_model.h"
#include "ed_api.h"
#include "ed_ecg.h"
#include "ed_models.h"

static int valid_name(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > ED_MODEL_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* Highest high-pass cut-off accepted (Hz): QRS energy lies at 5-40 Hz. */
#define ED_MODEL_MAX_HIGHPASS_HZ 5.0

/* Two seconds of a stand-in ECG at fs: a 1 mV spike of 20 ms each
 * second on a flat line, enough to drive every layer of a detector. */
static float *probe_signal(int64_t n, double fs)
{
    float *x = calloc((size_t)n, sizeof *x);
    int64_t t;

    for (t = 0; x != NULL && t < n; t++) {
        double phase = fmod((double)t / fs, 1.0) - 0.5;

        x[t] = (float)exp(-phase * phase / (2 * 0.005 * 0.005));
    }
    return x;
}

/* A model that loads but could never run (a rate no ECG is resampled to,
 * a window that needs gigabytes, a high-pass above the Nyquist frequency)
 * would fail every inference and job later: refuse it now, by preparing
 * two seconds of zeros and building an inferer as an inference would. */
static unsigned check_runnable(const ep_net *net, char *msg, size_t ms)
{
    double fs = net->meta.sampling_rate;
    int64_t n = (int64_t)(2.0 * fs);
    ep_infer_opts opts;
    ep_inferer *inf = NULL;
    ep_error e = {0};
    ep_beat *beats = NULL;
    size_t n_beats = 0;
    float *probe;
    int rc;

    if (!(fs >= ED_ECG_MIN_FS && fs <= ED_ECG_MAX_FS)) {
        snprintf(msg, ms, "the model's sampling rate %g Hz is outside "
                 "%g..%g Hz, the rates the daemon accepts ECG at", fs,
                 ED_ECG_MIN_FS, ED_ECG_MAX_FS);
        return 422;
    }
    /* Limits of a detector that runs, not only loads: a window of a few
     * samples made a 30-minute inference take 100 s (every window pays
     * the plan's fixed costs) and sees no beat whole; a high-pass that
     * high leaves no QRS complex to find. */
    if (net->meta.window < fs) {
        snprintf(msg, ms, "the model's window of %d samples is shorter "
                 "than one second at its %g Hz; a beat detector needs at "
                 "least that much context", net->meta.window, fs);
        return 422;
    }
    if (net->meta.highpass_hz > ED_MODEL_MAX_HIGHPASS_HZ) {
        snprintf(msg, ms, "the model's high-pass cut-off %g Hz is above "
                 "%g Hz: it would remove most of the ECG (baseline removal "
                 "uses 0.5 Hz)", net->meta.highpass_hz,
                 ED_MODEL_MAX_HIGHPASS_HZ);
        return 422;
    }
    probe = probe_signal(n, fs);
    if (probe == NULL) {
        snprintf(msg, ms, "out of memory");
        return 500;
    }

    /* Run it once: finite weights can still overflow float, and such a
     * model would answer every inference with an error. */
    ep_infer_default_opts(&opts);
    rc = ep_inferer_create(net, &opts, &inf, &e);
    if (rc == EP_OK)
        rc = ep_infer_beats(inf, probe, n, fs, &beats, &n_beats, &e);
    ep_inferer_free(inf);
    free(beats);
    free(probe);
    if (rc == EP_OK)
        return 0;
    snprintf(msg, ms, "the model loads but cannot run on a test ECG (a "
             "1 mV spike each second): %s", e.msg);
    return rc == EP_ENOMEM ? 500 : 422;
}

void ed_api_models_check(const unsigned char *buf, size_t len,
                         ed_model_check *c)
{
    ep_error e = {0};
    ep_net *net = NULL;

    memset(c, 0, sizeof *c);
    if (ed_models_sha256(buf, len, c->sha)) {
        snprintf(c->msg, sizeof c->msg, "cannot hash the model");
        c->status = 500;
        return;
    }

    /* The bytes must be a model this library can run. */
    if (ep_model_load_buffer(buf, len, &net, &e)) {
        snprintf(c->msg, sizeof c->msg, "not an ecgprune safetensors "
                 "model: %s", e.msg);
        c->status = 422;
        return;
    }
    c->status = check_runnable(net, c->msg, sizeof c->msg);
    if (!c->status && ep_model_architecture_json(net, &c->arch, &e)) {
        snprintf(c->msg, sizeof c->msg, "cannot describe the model: %s",
                 e.msg);
        c->status = 500;
    }
    c->parameters = (int64_t)ep_net_parameters(net);
    c->macs_per_second = ep_net_macs_per_second(net);
    ep_net_free(net);
}

void ed_api_models_check_free(ed_model_check *c)
{
    free(c->arch);
    c->arch = NULL;
}

unsigned ed_api_models_insert(ed_app *app, const char *name,
                              const unsigned char *buf, size_t len,
                              const ed_model_check *c,
                              int64_t parent_model, int64_t parent_job,
                              int64_t *id, char *msg, size_t ms)
{
    char now[32];

    if (c->status) {
        snprintf(msg, ms, "%s", c->msg);
        return c->status;
    }

    /* A pruned model records the subjects of its job's calibration
     * batches, in the same statement so that it never exists without. */
    ed_store_now(now);
    if (ed_store_exec(
            app->store, "INSERT INTO models (name, sha256, size_bytes, "
            "architecture, parameters, macs_per_second, parent_model_id, "
            "parent_job_id, created_at, weights, subjects) VALUES "
            "(?, ?, ?, ?, ?, ?, NULLIF(?, 0), NULLIF(?, 0), ?, ?, "
            "(SELECT NULLIF(json_group_array(subject), '[]') FROM "
            "(SELECT DISTINCT b.subject AS subject FROM job_batches j "
            "JOIN batches b ON b.id = j.batch_id WHERE j.job_id = ? AND "
            "j.role = 'calib' ORDER BY 1)))",
            "ttitidiitbi", name, c->sha, (int64_t)len, c->arch,
            c->parameters, c->macs_per_second, parent_model, parent_job,
            now, (const void *)buf, len, parent_job) < 0) {
        snprintf(msg, ms, "store: %s", ed_store_errmsg(app->store));
        return ed_store_http_status(app->store);
    }
    *id = ed_store_last_id(app->store);
    return 0;
}

/* A column holding JSON text, parsed; null when NULL or unreadable. */
static json_t *column_json(json_t *row, const char *column)
{
    const char *text = json_string_value(json_object_get(row, column));
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;

    return v ? v : json_null();
}

/* The public view of a model row. */
static json_t *model_json(json_t *row, int with_architecture)
{
    json_t *o = json_object();
    int64_t pm = json_integer_value(json_object_get(row, "parent_model_id"));
    int64_t pj = json_integer_value(json_object_get(row, "parent_job_id"));

    json_object_set(o, "id", json_object_get(row, "id"));
    json_object_set(o, "name", json_object_get(row, "name"));
    json_object_set(o, "sha256", json_object_get(row, "sha256"));
    json_object_set(o, "size_bytes", json_object_get(row, "size_bytes"));
    json_object_set(o, "parameters", json_object_get(row, "parameters"));
    json_object_set(o, "macs_per_second",
                    json_object_get(row, "macs_per_second"));
    json_object_set(o, "created_at", json_object_get(row, "created_at"));
    json_object_set_new(o, "lineage", json_pack(
        "{s:o, s:o, s:o}", "parent_model_id",
        pm ? json_integer(pm) : json_null(), "parent_job_id",
        pj ? json_integer(pj) : json_null(), "subjects",
        column_json(row, "subjects")));
    if (with_architecture)
        json_object_set_new(o, "architecture",
                            column_json(row, "architecture"));
    return o;
}

#define MODEL_COLUMNS "id, name, sha256, size_bytes, parameters, " \
    "macs_per_second, parent_model_id, parent_job_id, created_at, subjects"

/* An upload on its way through the pool: the body stays the suspended
 * request's. */
typedef struct upload_work {
    uv_work_t work;
    ed_app *app;
    ed_request *req;
    char name[ED_MODEL_NAME_MAX + 1];
    ed_model_check check;
} upload_work;

/* Store the checked upload, or answer with the model already stored
 * under that name with the same bytes (a retry whose answer was lost, a
 * provisioning script run twice): 200 with it, not a copy. */
static void store_upload(ed_app *app, upload_work *uw)
{
    ed_request *req = uw->req;
    char msg[700], loc[64];
    int64_t id;
    unsigned st = 0;
    int found = 0;
    json_t *row;

    if (uw->check.status) {
        ed_http_problem(req, uw->check.status, "%s", uw->check.msg);
        return;
    }
    id = ed_store_int(app->store, &found, "SELECT id FROM models WHERE "
                      "sha256 = ? AND name = ? ORDER BY id LIMIT 1", "tt",
                      uw->check.sha, uw->name);
    if (!found)
        st = ed_api_models_insert(app, uw->name, req->body, req->body_len,
                                  &uw->check, 0, 0, &id, msg, sizeof msg);
    if (st) {
        ed_api_store_error(app, req);   /* its status, Retry-After */
        return;
    }
    row = ed_store_row(app->store, NULL, "SELECT " MODEL_COLUMNS ", "
                       "architecture FROM models WHERE id = ?", "i", id);
    if (!row) {
        ed_api_store_error(app, req);
        return;
    }
    ed_http_json(req, found ? 200 : 201, model_json(row, 1));
    json_decref(row);
    snprintf(loc, sizeof loc, "/v1/models/%lld", (long long)id);
    ed_http_add_header(req, "Location", loc);
    snprintf(req->log_extra, sizeof req->log_extra, "model_id=%lld%s",
             (long long)id, found ? " duplicate=1" : "");
}

static void upload_check(uv_work_t *w)
{
    upload_work *uw = w->data;

    ed_api_models_check(uw->req->body, uw->req->body_len, &uw->check);
}

static void upload_checked(uv_work_t *w, int status)
{
    upload_work *uw = w->data;

    uw->app->uploads_in_flight--;
    if (status != 0)
        ed_http_problem(uw->req, 503, "the upload was cancelled "
                        "(shutdown)");
    else
        store_upload(uw->app, uw);
    ed_api_models_check_free(&uw->check);
    ed_http_resume(uw->req);
    free(uw);
}

/* The request's own checks: 0, or the problem answered. */
static int check_upload_request(ed_request *req, const char **name)
{
    const char *ct;
    char msg[700];
    unsigned st;

    st = ed_http_query_param(req, "name", name, msg, sizeof msg);
    if (st) {
        ed_http_problem(req, st, "%s", msg);
        return -1;
    }
    if (!*name) {
        ed_http_problem(req, 422, "query parameter \"name\" is required "
                        "(POST /v1/models?name=NAME)");
        return -1;
    }
    if (!valid_name(*name)) {
        ed_http_problem(req, 422, "name \"%.80s\": expected 1..%d letters, "
                        "digits, '.', '-', '_'", *name, ED_MODEL_NAME_MAX);
        return -1;
    }
    if (req->body_len == 0) {
        ed_http_problem(req, 400, "empty body: expected the safetensors "
                        "bytes of a model");
        return -1;
    }
    /* A form (curl -F file=@...) wraps the bytes in parts: say how to
     * send them, rather than fail on the first bytes of a boundary. */
    ct = ed_http_header(req, "Content-Type");
    if (ct && strncasecmp(ct, "multipart/", 10) == 0) {
        int type_len = (int)strcspn(ct, "; \t");

        ed_http_problem(req, 415, "Content-Type %.*s: send the model file "
                        "itself as the body, as application/octet-stream "
                        "(curl --data-binary @FILE)",
                        type_len < 60 ? type_len : 60, ct);
        return -1;
    }
    return 0;
}

void ed_api_models_create(ed_app *app, ed_request *req, int64_t unused)
{
    upload_work *uw;
    const char *name;

    (void)unused;
    if (app->stopping) {
        ed_http_problem(req, 503, "the daemon is shutting down");
        return;
    }
    if (check_upload_request(req, &name))
        return;
    uw = calloc(1, sizeof *uw);
    if (!uw) {
        ed_http_problem(req, 500, "out of memory");
        return;
    }
    uw->app = app;
    uw->req = req;
    snprintf(uw->name, sizeof uw->name, "%s", name);
    uw->work.data = uw;

    /* The check loads the model and runs it once (a tenth of a second for
     * the default model on a slow core), so it goes to the pool; with one
     * worker a running job may hold the pool for minutes, so the loop
     * does it itself and other requests wait. */
    if (app->cfg.workers < 2) {
        ed_api_models_check(req->body, req->body_len, &uw->check);
        store_upload(app, uw);
        ed_api_models_check_free(&uw->check);
        free(uw);
        return;
    }
    app->uploads_in_flight++;
    ed_http_suspend(req);
    uv_queue_work(app->loop, &uw->work, upload_check, upload_checked);
}

/* A model of a list: without its architecture. */
static json_t *model_list_json(json_t *row)
{
    return model_json(row, 0);
}

void ed_api_models_list(ed_app *app, ed_request *req, int64_t unused)
{
    (void)unused;
    ed_api_list(app, req, "SELECT " MODEL_COLUMNS " FROM models", "models",
                model_list_json);
}

void ed_api_models_get(ed_app *app, ed_request *req, int64_t id)
{
    int found = 0;
    json_t *row = ed_store_row(app->store, &found, "SELECT " MODEL_COLUMNS
                               ", architecture FROM models WHERE id = ?",
                               "i", id);

    if (!row) {
        ed_api_store_error(app, req);
        return;
    }
    if (!found)
        ed_http_problem(req, 404, "no model with id %lld", (long long)id);
    else
        ed_http_json(req, 200, model_json(row, 1));
    json_decref(row);
}

void ed_api_models_file(ed_app *app, ed_request *req, int64_t id)
{
    unsigned char *blob = NULL;
    size_t len = 0;
    char disp[96];
    int rc = ed_store_blob(app->store, &blob, &len,
                           "SELECT weights FROM models WHERE id = ?", "i", id);

    if (rc < 0) {
        ed_api_store_error(app, req);
        return;
    }
    if (rc == 0) {
        ed_http_problem(req, 404, "no model with id %lld", (long long)id);
        return;
    }
    ed_http_bytes(req, 200, "application/octet-stream", blob, len);
    snprintf(disp, sizeof disp, "attachment; filename=\"model-%lld."
             "safetensors\"", (long long)id);
    ed_http_add_header(req, "Content-Disposition", disp);
}

void ed_api_models_delete(ed_app *app, ed_request *req, int64_t id)
{
    int found = 0;
    int64_t job;

    ed_store_int(app->store, &found, "SELECT 1 FROM models WHERE id = ?",
                 "i", id);
    if (!found) {
        ed_http_problem(req, 404, "no model with id %lld", (long long)id);
        return;
    }

    /* A queued or running job still needs the weights. */
    job = ed_store_int(app->store, &found, "SELECT id FROM jobs WHERE "
                       "model_id = ? AND state IN ('queued', 'running') "
                       "ORDER BY id LIMIT 1", "i", id);
    if (found) {
        ed_http_problem(req, 409, "model %lld is used by job %lld (state "
                        "queued or running); cancel it or wait", (long long)id,
                        (long long)job);
        return;
    }
    /* Limitation: the models pruned from this one stay, but their lineage
     * link to it is cleared (ON DELETE SET NULL), not kept as a record. */
    if (ed_store_exec(app->store, "DELETE FROM models WHERE id = ?", "i",
                      id) < 0) {
        ed_api_store_error(app, req);
        return;
    }
    ed_models_forget(app, id);
    ed_http_empty(req, 204);
}
