/*
 * ed_api.h - the HTTP API: the route table and the handlers behind it.
 * Handlers run on the loop thread; each answers through ed_http_* (or
 * suspends the connection and answers later).
 */
#ifndef ED_API_H
#define ED_API_H

#include <jansson.h>
#include <stdint.h>

#include "ed_app.h"
#include "ed_ecg.h"
#include "ed_http.h"

/* The dispatcher given to ed_http_start; app is an ed_app. */
void ed_api_dispatch(ed_request *req, void *app);

typedef void (*ed_handler_fn)(ed_app *app, ed_request *req, int64_t id);

/* Health and metrics (ed_api.c). */
void ed_api_live(ed_app *app, ed_request *req, int64_t id);
void ed_api_ready(ed_app *app, ed_request *req, int64_t id);
void ed_api_metrics(ed_app *app, ed_request *req, int64_t id);

/* Models (ed_api_models.c). */
void ed_api_models_create(ed_app *app, ed_request *req, int64_t id);
void ed_api_models_list(ed_app *app, ed_request *req, int64_t id);
void ed_api_models_get(ed_app *app, ed_request *req, int64_t id);
void ed_api_models_file(ed_app *app, ed_request *req, int64_t id);
void ed_api_models_delete(ed_app *app, ed_request *req, int64_t id);
/* Longest model name (letters, digits, '.', '-', '_'). */
#define ED_MODEL_NAME_MAX 64

/* A model's bytes hashed, loaded, run once on a test ECG and described:
 * the part of storing a model that takes time, which needs no store and
 * so runs on any thread.  status is 0, or an HTTP status with msg. */
typedef struct ed_model_check {
    unsigned status;
    char msg[700];
    char sha[65];
    char *arch;                 /* architecture JSON, malloc'd */
    int64_t parameters;
    double macs_per_second;
} ed_model_check;

void ed_api_models_check(const unsigned char *buf, size_t len,
                         ed_model_check *check);
void ed_api_models_check_free(ed_model_check *check);

/* Store checked bytes as a model (on the loop thread); 0, or an HTTP
 * status with msg: the check's own when it failed. */
unsigned ed_api_models_insert(ed_app *app, const char *name,
                              const unsigned char *buf, size_t len,
                              const ed_model_check *check,
                              int64_t parent_model, int64_t parent_job,
                              int64_t *id, char *msg, size_t msg_size);

/* Batches (ed_api_batches.c). */
void ed_api_batches_create(ed_app *app, ed_request *req, int64_t id);
void ed_api_batches_list(ed_app *app, ed_request *req, int64_t id);
void ed_api_batches_get(ed_app *app, ed_request *req, int64_t id);
void ed_api_batches_delete(ed_app *app, ed_request *req, int64_t id);

/* Jobs (ed_api_jobs.c). */
void ed_api_jobs_create(ed_app *app, ed_request *req, int64_t id);
void ed_api_jobs_list(ed_app *app, ed_request *req, int64_t id);
void ed_api_jobs_get(ed_app *app, ed_request *req, int64_t id);
void ed_api_jobs_cancel(ed_app *app, ed_request *req, int64_t id);
void ed_api_jobs_masks(ed_app *app, ed_request *req, int64_t id);
/* A submission's body (len bytes of JSON) checked against the store into
 * normalised parameters, defaults filled in: 0 with *params set, or an
 * HTTP status with msg filled (*params may then hold a partial object
 * to json_decref).  Reads the store, never writes it. */
unsigned ed_api_jobs_params(ed_app *app, const unsigned char *body,
                            size_t len, json_t **params, char *msg,
                            size_t msg_size);

/* The request's Idempotency-Key header, without the spaces and tabs
 * around it (RFC 9110, 5.5), copied into buf (*key = buf, or NULL
 * without one): 0, or 400 with msg filled unless it is 1..ED_API_KEY_MAX
 * printable ASCII characters without spaces. */
#define ED_API_KEY_MAX 255
unsigned ed_api_idempotency_key(ed_request *req,
                                char buf[ED_API_KEY_MAX + 1],
                                const char **key, char *msg,
                                size_t msg_size);

/* ed_ecg_parse_json under app->json_lock, from any thread: one JSON body
 * at a time, since its tree takes about 20 times the body in memory. */
unsigned ed_api_parse_ecg_json(ed_app *app, const unsigned char *body,
                               size_t len, int64_t max_samples,
                               ed_ecg_kind kind, ed_ecg *ecg, char *msg,
                               size_t msg_size);

/* Inference (ed_api_infer.c). */
void ed_api_infer(ed_app *app, ed_request *req, int64_t id);

/* Pages of the list routes (ed_api.c): ?limit=N&after=ID lists at most
 * N rows (default ED_API_PAGE_DEFAULT, at most ED_API_PAGE_MAX) whose id
 * is above ID, in id order; the answer's "next_after" is the ID of the
 * next page, or null after the last. */
#define ED_API_PAGE_DEFAULT 100
#define ED_API_PAGE_MAX 1000

typedef struct ed_page {
    int64_t after;
    int64_t limit;
} ed_page;

/* Read a list route's query: limit and after into page, and the value of
 * the route's own filter key into *filter_value (filter NULL: none; the
 * value is NULL when absent).  1 after answering 400, else 0. */
int ed_api_list_params(ed_request *req, const char *filter,
                       const char **filter_value, ed_page *page);

/* Answer 200 with {key: [row_json(row)...], "next_after": ...} from rows
 * fetched with LIMIT page->limit + 1 (one more tells whether a next page
 * exists).  Takes rows. */
void ed_api_page_answer(ed_request *req, const ed_page *page,
                        const char *key, json_t *rows,
                        json_t *(*row_json)(json_t *row));

/* A whole list route without a filter: `select` is "SELECT columns FROM
 * table", the page's WHERE, ORDER and LIMIT are added here. */
void ed_api_list(ed_app *app, ed_request *req, const char *select,
                 const char *key, json_t *(*row_json)(json_t *row));

/* The answer for a store failure. */
void ed_api_store_error(ed_app *app, ed_request *req);

#endif
