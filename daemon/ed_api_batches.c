/*
 * ed_api_batches.c - /v1/batches: personal ECG uploads (JSON, parsed on
 * a pool worker, or WFDB multipart), listing, showing and deleting them.
 * A deleted batch is gone from the database file too: secure_delete
 * overwrites its pages and a WAL checkpoint removes the copies the log
 * still holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_wfdb.h"
#include "ed_api.h"
#include "ed_ecg.h"
#include "ed_models.h"

#define BATCH_COLUMNS "id, subject, sampling_rate, lead, n_samples, " \
    "n_beats, created_at, annotations IS NOT NULL AS has_annotations"

/* The public view of a batch row. */
static json_t *batch_json(json_t *row)
{
    json_t *o = json_deep_copy(row);
    int64_t n = json_integer_value(json_object_get(row, "n_samples"));
    double fs = json_number_value(json_object_get(row, "sampling_rate"));

    json_object_set_new(o, "has_annotations", json_boolean(
        json_integer_value(json_object_get(row, "has_annotations"))));
    json_object_set_new(o, "duration_s", json_real((double)n / fs));
    return o;
}

static size_t count_beats(const ed_ecg *ecg)
{
    size_t i, n = 0;

    for (i = 0; i < ecg->n_ann; i++)
        n += (size_t)ep_wfdb_is_beat(ecg->ann[i].code);
    return n;
}

/* An upload whose JSON body is parsed on the pool. */
typedef struct batch_work {
    uv_work_t work;
    ed_app *app;
    ed_request *req;
    int64_t max_samples;        /* limits.max_samples when it came */
    const char *key;            /* Idempotency-Key (key_buf), or NULL */
    char key_buf[ED_API_KEY_MAX + 1];
    char sha[65];               /* of the batch, with a key */
    ed_ecg ecg;
    unsigned st;                /* refusal: HTTP status, msg */
    char msg[700];
} batch_work;

/* Answer 201 with batch id's row and its Location. */
static void answer_batch(ed_app *app, ed_request *req, int64_t id)
{
    char loc[64];
    json_t *row = ed_store_row(app->store, NULL, "SELECT " BATCH_COLUMNS
                               " FROM batches WHERE id = ?", "i", id);

    if (!row) {
        ed_api_store_error(app, req);
        return;
    }
    ed_http_json(req, 201, batch_json(row));
    json_decref(row);
    snprintf(loc, sizeof loc, "/v1/batches/%lld", (long long)id);
    ed_http_add_header(req, "Location", loc);
    snprintf(req->log_extra, sizeof req->log_extra, "batch_id=%lld",
             (long long)id);
}

/* A batch stored before under bw's key: answered again (1) when the body
 * was the same, refused with 422 (1) when it was not; 0 when the key is
 * new or absent. */
static int answer_repeat(ed_app *app, const batch_work *bw)
{
    int found = 0;
    json_t *row;

    if (!bw->key)
        return 0;
    row = ed_store_row(app->store, &found, "SELECT id, batch_sha256 FROM "
                       "batches WHERE idempotency_key = ?", "t", bw->key);
    if (!row) {
        ed_api_store_error(app, bw->req);
        return 1;
    }
    if (found && strcmp(json_string_value(json_object_get(
                            row, "batch_sha256")), bw->sha) == 0)
        answer_batch(app, bw->req, json_integer_value(json_object_get(row,
                                                                      "id")));
    else if (found)
        ed_http_problem(bw->req, 422, "Idempotency-Key \"%.80s\" was used "
                        "for batch %lld with another batch", bw->key,
                        (long long)json_integer_value(json_object_get(row,
                                                                      "id")));
    json_decref(row);
    return found;
}

/* Store bw's parsed batch (unless its key names one stored before) and
 * answer 201 with its row; frees nothing. */
static void store_batch(ed_app *app, const batch_work *bw)
{
    const ed_ecg *ecg = &bw->ecg;
    ed_request *req = bw->req;
    char now[32], *ann = NULL;

    if (answer_repeat(app, bw))
        return;

    /* Samples as little-endian float32.  Limitation: stored in the host's
     * byte order, which is little-endian on every host we build for; one
     * lead per batch. */
    if (ecg->n_ann) {
        json_t *a = ed_ecg_annotations_json(ecg);
        ann = json_dumps(a, JSON_COMPACT);
        json_decref(a);
    }
    ed_store_now(now);
    if (ed_store_exec(app->store, "INSERT INTO batches (subject, "
                      "sampling_rate, lead, n_samples, annotations, n_beats, "
                      "created_at, samples, idempotency_key, batch_sha256) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?)", "tdtititbtt",
                      ecg->subject, ecg->fs, ecg->lead, ecg->n, ann,
                      (int64_t)count_beats(ecg), now, (const void *)ecg->mv,
                      (size_t)ecg->n * sizeof *ecg->mv, bw->key,
                      bw->key ? bw->sha : NULL) < 0) {
        free(ann);
        ed_api_store_error(app, req);
        return;
    }
    free(ann);
    answer_batch(app, req, ed_store_last_id(app->store));
}

static unsigned char *put(unsigned char *p, const void *v, size_t n)
{
    memcpy(p, v, n);
    return p + n;
}

/* A string in a field of `width` bytes of a zeroed buffer. */
static unsigned char *put_text(unsigned char *p, const char *s, size_t width)
{
    memcpy(p, s, strnlen(s, width));
    return p + width;
}

/* When a key came with it, the SHA-256 of the parsed batch as it will be
 * stored (subject, lead, rate, samples, annotations), not of the body:
 * a retry then matches whatever its wire form (curl draws a new
 * multipart boundary each run; JSON may be written another way).
 * 0, or 500 with msg. */
static unsigned fingerprint(batch_work *bw)
{
    const ed_ecg *e = &bw->ecg;
    size_t i, len = sizeof e->subject + sizeof e->lead + sizeof e->fs +
                    sizeof e->n +
                    (size_t)e->n * sizeof *e->mv +
                    e->n_ann * (sizeof e->ann->sample + sizeof e->ann->code);
    unsigned char *buf, *p;
    int rc;

    if (!bw->key)
        return 0;
    buf = calloc(1, len);
    if (!buf) {
        snprintf(bw->msg, sizeof bw->msg, "out of memory");
        return 500;
    }
    p = put_text(buf, e->subject, sizeof e->subject);
    p = put_text(p, e->lead, sizeof e->lead);
    p = put(p, &e->fs, sizeof e->fs);
    p = put(p, &e->n, sizeof e->n);
    p = put(p, e->mv, (size_t)e->n * sizeof *e->mv);
    for (i = 0; i < e->n_ann; i++) {
        p = put(p, &e->ann[i].sample, sizeof e->ann[i].sample);
        p = put(p, &e->ann[i].code, sizeof e->ann[i].code);
    }
    rc = ed_models_sha256(buf, len, bw->sha);
    free(buf);
    if (rc == 0)
        return 0;
    snprintf(bw->msg, sizeof bw->msg, "cannot hash the batch");
    return 500;
}

/* The JSON body parsed and fingerprinted; on a pool thread, or on the
 * loop with one worker. */
static void parse_json_body(batch_work *bw)
{
    ed_request *req = bw->req;

    bw->st = ed_api_parse_ecg_json(bw->app, req->body, req->body_len,
                                   bw->max_samples, ED_ECG_BATCH, &bw->ecg,
                                   bw->msg, sizeof bw->msg);
    if (!bw->st)
        bw->st = fingerprint(bw);
}

static void batch_parse(uv_work_t *w)
{
    parse_json_body(w->data);
}

/* Limitation: a client that hung up while the request was suspended is
 * not noticed (libmicrohttpd watches no suspended connection): the batch
 * is stored all the same, and the log line shows status 499. */
static void batch_parsed(uv_work_t *w, int status)
{
    batch_work *bw = w->data;

    bw->app->uploads_in_flight--;
    if (status != 0)
        ed_http_problem(bw->req, 503, "the upload was cancelled (shutdown)");
    else if (bw->st)
        ed_http_problem(bw->req, bw->st, "%s", bw->msg);
    else
        store_batch(bw->app, bw);
    ed_ecg_free(&bw->ecg);
    ed_http_resume(bw->req);
    free(bw);
}

void ed_api_batches_create(ed_app *app, ed_request *req, int64_t unused)
{
    batch_work *bw;
    int json_pending;
    unsigned st;

    (void)unused;
    if (app->stopping) {
        ed_http_problem(req, 503, "the daemon is shutting down");
        return;
    }
    bw = calloc(1, sizeof *bw);
    if (!bw) {
        ed_http_problem(req, 500, "out of memory");
        return;
    }

    bw->app = app;
    bw->req = req;
    bw->max_samples = app->cfg.max_samples;
    bw->work.data = bw;

    /* A multipart upload is decoded here and stored at once. */
    st = ed_api_idempotency_key(req, bw->key_buf, &bw->key, bw->msg,
                                sizeof bw->msg);
    if (!st)
        st = ed_ecg_parse_start(req, &app->cfg, ED_ECG_BATCH, &bw->ecg,
                                &json_pending, bw->msg, sizeof bw->msg);
    if (!st && !json_pending)
        st = fingerprint(bw);
    /* With one worker a running job may hold the pool for minutes, so the
     * loop parses the JSON itself; other requests wait for that parse. */
    if (!st && json_pending && app->cfg.workers < 2) {
        parse_json_body(bw);
        st = bw->st;
        json_pending = 0;
    }
    if (st || !json_pending) {
        if (st)
            ed_http_problem(req, st, "%s", bw->msg);
        else
            store_batch(app, bw);
        ed_ecg_free(&bw->ecg);
        free(bw);
        return;
    }

    /* A JSON body goes to the pool; the connection waits suspended. */
    app->uploads_in_flight++;
    ed_http_suspend(req);
    uv_queue_work(app->loop, &bw->work, batch_parse, batch_parsed);
}

void ed_api_batches_list(ed_app *app, ed_request *req, int64_t unused)
{
    (void)unused;
    ed_api_list(app, req, "SELECT " BATCH_COLUMNS " FROM batches", "batches",
                batch_json);
}

void ed_api_batches_get(ed_app *app, ed_request *req, int64_t id)
{
    int found = 0;
    json_t *row = ed_store_row(app->store, &found, "SELECT " BATCH_COLUMNS
                               ", annotations FROM batches WHERE id = ?",
                               "i", id);
    json_t *o, *ann;
    json_error_t jerr;

    if (!row) {
        ed_api_store_error(app, req);
        return;
    }
    if (!found) {
        ed_http_problem(req, 404, "no batch with id %lld", (long long)id);
        json_decref(row);
        return;
    }
    o = batch_json(row);
    ann = json_is_string(json_object_get(row, "annotations"))
          ? json_loads(json_string_value(json_object_get(row, "annotations")),
                       0, &jerr)
          : NULL;
    json_object_set_new(o, "annotations", ann ? ann : json_null());
    json_decref(row);
    ed_http_json(req, 200, o);
}

void ed_api_batches_delete(ed_app *app, ed_request *req, int64_t id)
{
    int found = 0, purged;
    int64_t job;

    ed_store_int(app->store, &found, "SELECT 1 FROM batches WHERE id = ?",
                 "i", id);
    if (!found) {
        ed_http_problem(req, 404, "no batch with id %lld", (long long)id);
        return;
    }
    job = ed_store_int(app->store, &found, "SELECT j.id FROM jobs j JOIN "
                       "job_batches b ON b.job_id = j.id WHERE b.batch_id = ? "
                       "AND j.state IN ('queued', 'running') ORDER BY j.id "
                       "LIMIT 1", "i", id);
    if (found) {
        ed_http_problem(req, 409, "batch %lld is used by job %lld (state "
                        "queued or running); cancel it or wait", (long long)id,
                        (long long)job);
        return;
    }

    /* Delete, then empty the log so that it holds no copy of the samples;
     * while another process reads the database (a backup) the log keeps
     * them until it is done, and the answer says so. */
    if (ed_store_exec(app->store, "DELETE FROM batches WHERE id = ?", "i",
                      id) < 0 ||
        (purged = ed_store_purge_log(app->store)) < 0) {
        ed_api_store_error(app, req);
        return;
    }
    if (purged == 0) {
        ed_http_empty(req, 204);
        return;
    }
    ed_http_json(req, 202, json_pack(
        "{s:I, s:b, s:b, s:s}", "id", (json_int_t)id, "deleted", 1,
        "log_purged", 0, "detail", "the batch is deleted; a copy of its "
        "samples stays in the database's write-ahead log until another "
        "process reading the database (a backup?) is done, and is erased "
        "then"));
}
