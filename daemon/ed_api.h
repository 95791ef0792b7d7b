/*
 * ed_api.h - the HTTP API: the route table and the handlers behind it.
 * Handlers run on the loop thread; each answers through ed_http_* (or
 * suspends the connection and answers later).
 */
#ifndef ED_API_H
#define ED_API_H

#include <stdint.h>

#include "ed_app.h"
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
/* Parse, fingerprint and store a model; 0 or an HTTP status with msg. */
unsigned ed_api_models_store(ed_app *app, const char *name,
                             const unsigned char *buf, size_t len,
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

/* Inference (ed_api_infer.c). */
void ed_api_infer(ed_app *app, ed_request *req, int64_t id);

/* The answer for a store failure. */
void ed_api_store_error(ed_app *app, ed_request *req);

#endif
