/*
 * ed_app.h - the state every part of the daemon shares: configuration,
 * loop, store, HTTP server, job runner and model cache.  One instance,
 * owned by main and used from the loop thread only, but for json_lock,
 * which pool threads take.
 */
#ifndef ED_APP_H
#define ED_APP_H

#include <uv.h>

#include "ed_config.h"
#include "ed_http.h"
#include "ed_store.h"

typedef struct ed_jobs ed_jobs;
typedef struct ed_models ed_models;

typedef struct ed_app {
    uv_loop_t *loop;
    ed_config cfg;
    ed_store *store;
    ed_server *http;
    ed_jobs *jobs;
    ed_models *models;
    int ready;            /* /v2/health/ready answers 200 */
    int stopping;         /* SIGTERM seen */
    int infer_in_flight;
    int uploads_in_flight;  /* batches and models being read on the pool */
    uv_mutex_t json_lock;   /* held while a JSON ECG body is parsed */
} ed_app;

#endif
