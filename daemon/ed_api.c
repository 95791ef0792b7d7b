/*
 * ed_api.c - the route table, path matching, and the health and metrics
 * endpoints.
 */
#include "ed_api.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ed_jobs.h"
#include "ed_metrics.h"

typedef struct ed_route {
    const char *method;
    const char *pattern;       /* "{id}" matches one positive integer */
    ed_handler_fn handler;
    int takes_query;           /* the handler reads its own parameter;
                                * other routes refuse any query */
} ed_route;

static const ed_route routes[] = {
    {"GET", "/v2/health/live", ed_api_live, 0},
    {"GET", "/v2/health/ready", ed_api_ready, 0},
    {"GET", "/metrics", ed_api_metrics, 0},
    {"POST", "/v1/models", ed_api_models_create, 1},
    {"GET", "/v1/models", ed_api_models_list, 1},
    {"GET", "/v1/models/{id}", ed_api_models_get, 0},
    {"DELETE", "/v1/models/{id}", ed_api_models_delete, 0},
    {"GET", "/v1/models/{id}/file", ed_api_models_file, 0},
    {"POST", "/v1/models/{id}/infer", ed_api_infer, 1},
    {"POST", "/v1/batches", ed_api_batches_create, 0},
    {"GET", "/v1/batches", ed_api_batches_list, 1},
    {"GET", "/v1/batches/{id}", ed_api_batches_get, 0},
    {"DELETE", "/v1/batches/{id}", ed_api_batches_delete, 0},
    {"POST", "/v1/jobs", ed_api_jobs_create, 0},
    {"GET", "/v1/jobs", ed_api_jobs_list, 1},
    {"GET", "/v1/jobs/{id}", ed_api_jobs_get, 0},
    {"DELETE", "/v1/jobs/{id}", ed_api_jobs_cancel, 0},
    {"GET", "/v1/jobs/{id}/masks", ed_api_jobs_masks, 0},
};
#define N_ROUTES ((int)(sizeof routes / sizeof routes[0]))

/* Match path against pattern.  Returns 1 on a match (with *id set when
 * the pattern has {id}), 0 otherwise; *bad_id is set when everything
 * matched but the id segment is not a positive integer. */
static int match(const char *pattern, const char *path, int64_t *id,
                 char *bad_id, size_t bad_size)
{
    const char *p = pattern, *s = path;

    while (*p && *s) {
        if (strncmp(p, "{id}", 4) == 0) {
            const char *end = strchr(s, '/');
            size_t n = end ? (size_t)(end - s) : strlen(s);
            char seg[32], *stop;
            long long v;
            if (n == 0)
                return 0;
            snprintf(seg, sizeof seg, "%.*s", (int)(n < 31 ? n : 31), s);
            errno = 0;
            v = strtoll(seg, &stop, 10);
            if (errno || *stop || n >= 31 || v <= 0 || seg[0] == '+' ||
                seg[0] == '0')
                snprintf(bad_id, bad_size, "%.*s", (int)(n < 40 ? n : 40),
                         s);
            else
                *id = v;
            p += 4;
            s += n;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

/* A query on a route that takes none is refused (400) like an unknown
 * key elsewhere: ?force=1 on a DELETE must not look as if it did
 * something.  1 when refused. */
static int refuse_query(ed_request *req)
{
    const char *value;
    char msg[160];

    if (ed_http_query_param(req, NULL, &value, msg, sizeof msg) == 0)
        return 0;
    ed_http_problem(req, 400, "%s", msg);
    return 1;
}

void ed_api_dispatch(ed_request *req, void *arg)
{
    ed_app *app = arg;
    char allow[64] = "", bad_id[48];
    int64_t id = 0;
    int r;

    for (r = 0; r < N_ROUTES; r++) {
        bad_id[0] = '\0';
        if (!match(routes[r].pattern, req->path, &id, bad_id, sizeof bad_id))
            continue;
        req->route = routes[r].pattern;
        /* HEAD is GET without the body (libmicrohttpd leaves it out). */
        if (strcmp(routes[r].method, req->method) != 0 &&
            !(strcmp(req->method, "HEAD") == 0 &&
              strcmp(routes[r].method, "GET") == 0)) {
            /* Same path, other method: collect the Allow list (HEAD goes
             * with GET). */
            if (strlen(allow) + strlen(routes[r].method) + 9 < sizeof allow)
                snprintf(allow + strlen(allow), sizeof allow - strlen(allow),
                         "%s%s%s", allow[0] ? ", " : "", routes[r].method,
                         strcmp(routes[r].method, "GET") ? "" : ", HEAD");
            continue;
        }
        if (bad_id[0]) {
            ed_http_problem(req, 404, "\"%s\" in %s is not an id (ids are "
                            "positive integers)", bad_id, req->path);
            return;
        }
        if (!routes[r].takes_query && refuse_query(req))
            return;
        routes[r].handler(app, req, id);
        return;
    }
    if (allow[0]) {
        ed_http_problem(req, 405, "method %s is not allowed on %s (allowed: "
                        "%s)", req->method, req->path, allow);
        ed_http_add_header(req, "Allow", allow);
        return;
    }
    req->route = "(unmatched)";
    ed_http_problem(req, 404, "no route for %s", req->path);
}

/* One page parameter: a decimal integer in [lo, hi], or 400. */
static int page_number(ed_request *req, const char *key, const char *s,
                       int64_t lo, int64_t hi, int64_t *out)
{
    /* Digits only: strtoll alone would take "+5", " 5" and "-0". */
    int ok = s[0] >= '0' && s[0] <= '9';
    char *end = NULL;
    long long v = 0;

    if (ok) {
        errno = 0;
        v = strtoll(s, &end, 10);
        ok = *end == '\0' && errno == 0 && v >= lo && v <= hi;
    }
    if (!ok) {
        ed_http_problem(req, 400, "query parameter %s=\"%.40s\": expected "
                        "an integer from %lld to %lld", key, s,
                        (long long)lo, (long long)hi);
        return 1;
    }
    *out = v;
    return 0;
}

int ed_api_list_params(ed_request *req, const char *filter,
                       const char **filter_value, ed_page *page)
{
    /* The filter first, so that errors list it first. */
    const char *keys[4] = {filter, "limit", "after", NULL};
    const char *const *taken = filter != NULL ? keys : keys + 1;
    const char *values[3], **paging = filter != NULL ? values + 1 : values;
    char msg[200];
    unsigned st;

    st = ed_http_query_params(req, taken, values, msg, sizeof msg);
    if (st) {
        ed_http_problem(req, st, "%s", msg);
        return 1;
    }
    if (filter != NULL)
        *filter_value = values[0];
    page->after = 0;
    page->limit = ED_API_PAGE_DEFAULT;
    if (paging[0] != NULL && page_number(req, "limit", paging[0], 1,
                                         ED_API_PAGE_MAX, &page->limit))
        return 1;
    return paging[1] != NULL &&
           page_number(req, "after", paging[1], 0, INT64_MAX, &page->after);
}

void ed_api_page_answer(ed_request *req, const ed_page *page,
                        const char *key, json_t *rows,
                        json_t *(*row_json)(json_t *row))
{
    json_t *out = json_array(), *row, *next = json_null();
    size_t i;

    json_array_foreach(rows, i, row) {
        if ((int64_t)i == page->limit) {
            next = json_integer(json_integer_value(
                json_object_get(json_array_get(rows, i - 1), "id")));
            break;
        }
        json_array_append_new(out, row_json(row));
    }
    json_decref(rows);
    ed_http_json(req, 200, json_pack("{s:o,s:o}", key, out, "next_after",
                                     next));
}

void ed_api_list(ed_app *app, ed_request *req, const char *select,
                 const char *key, json_t *(*row_json)(json_t *row))
{
    char sql[512];
    ed_page page;
    json_t *rows;

    if (ed_api_list_params(req, NULL, NULL, &page))
        return;
    snprintf(sql, sizeof sql, "%s WHERE id > ? ORDER BY id LIMIT ?", select);
    rows = ed_store_rows(app->store, sql, "ii", page.after, page.limit + 1);
    if (!rows) {
        ed_api_store_error(app, req);
        return;
    }
    ed_api_page_answer(req, &page, key, rows, row_json);
}

unsigned ed_api_idempotency_key(ed_request *req,
                                char buf[ED_API_KEY_MAX + 1],
                                const char **key, char *msg, size_t ms)
{
    const char *k = ed_http_header(req, "Idempotency-Key");
    size_t i, n;

    *key = NULL;
    if (!k)
        return 0;
    k = ed_http_trim(k, &n);
    /* Printable ASCII only: a key is quoted back in messages, and bytes
     * that look alike in a log must not be two keys. */
    for (i = 0; i < n && k[i] > ' ' && k[i] < 0x7f; i++)
        ;
    if (n >= 1 && n <= ED_API_KEY_MAX && i == n) {
        memcpy(buf, k, n);
        buf[n] = '\0';
        *key = buf;
        return 0;
    }
    snprintf(msg, ms, "Idempotency-Key: expected 1..%d printable ASCII "
             "characters without spaces", ED_API_KEY_MAX);
    return 400;
}

/* JSON bodies from this size on are followed by malloc_trim. */
#define ED_API_TRIM_BYTES (4 << 20)

unsigned ed_api_parse_ecg_json(ed_app *app, const unsigned char *body,
                               size_t len, int64_t max_samples,
                               ed_ecg_kind kind, ed_ecg *ecg, char *msg,
                               size_t ms)
{
    unsigned st;

    uv_mutex_lock(&app->json_lock);
    st = ed_ecg_parse_json(body, len, max_samples, kind, ecg, msg, ms);
#ifdef __GLIBC__
    /* The tree's many small blocks stay in this thread's malloc arena,
     * where the next parse, on another thread, cannot reuse them: hand
     * them back after a large body. */
    if (len >= ED_API_TRIM_BYTES)
        malloc_trim(0);
#endif
    uv_mutex_unlock(&app->json_lock);
    return st;
}

void ed_api_store_error(ed_app *app, ed_request *req)
{
    unsigned st = ed_store_http_status(app->store);

    ed_http_problem(req, st, "store error: %s%s",
                    ed_store_errmsg(app->store),
                    st == 413 ? " (one value may hold at most 1e9 bytes)"
                    : st == 503 ? " (another process holds the database; "
                                  "retry)" : "");
    if (st == 503)
        ed_http_add_header(req, "Retry-After", "5");
}

void ed_api_live(ed_app *app, ed_request *req, int64_t id)
{
    (void)app;
    (void)id;
    ed_http_empty(req, 200);
}

void ed_api_ready(ed_app *app, ed_request *req, int64_t id)
{
    (void)id;
    ed_http_empty(req, app->ready && !app->stopping ? 200 : 503);
}

void ed_api_metrics(ed_app *app, ed_request *req, int64_t id)
{
    ed_metrics_gauges g;
    char *text;

    (void)id;
    memset(&g, 0, sizeof g);
    g.jobs_queued = ed_store_int(app->store, NULL, "SELECT count(*) FROM jobs"
                                 " WHERE state = 'queued'", NULL);
    g.models = ed_store_int(app->store, NULL, "SELECT count(*) FROM models",
                            NULL);
    g.batches = ed_store_int(app->store, NULL,
                             "SELECT count(*) FROM batches", NULL);
    g.jobs_running = ed_jobs_running(app);
    g.infer_in_flight = app->infer_in_flight;
    g.pending_upload_bytes = (int64_t)ed_http_pending_bytes(app->http);
    g.ready = app->ready && !app->stopping;
    text = ed_metrics_render(&g);
    if (!text) {
        ed_http_problem(req, 500, "out of memory rendering metrics");
        return;
    }
    ed_http_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text);
}
