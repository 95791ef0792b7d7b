/*
 * ed_http.h - the HTTP front of the daemon: libmicrohttpd driven from the
 * libuv loop, requests with whole bodies, JSON and problem responses.
 *
 * libmicrohttpd runs in "external" epoll mode: it owns no thread; its
 * epoll descriptor is watched by a uv_poll handle and MHD_run is called
 * from the loop whenever it is readable (and from a timer for its
 * timeouts).  Every request callback therefore runs on the loop thread,
 * the thread that owns the store.  A handler either answers at once or
 * suspends the connection (ed_http_suspend), hands CPU work to the libuv
 * pool, and answers from the after-work callback (ed_http_resume).
 */
#ifndef ED_HTTP_H
#define ED_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "ed_config.h"

typedef struct ed_server ed_server;
typedef struct ed_request ed_request;

/* Route the request; the dispatcher sets req->route and answers or
 * suspends. */
typedef void (*ed_dispatch_fn)(ed_request *req, void *app);

struct ed_request {
    ed_server *srv;
    void *app;
    struct MHD_Connection *conn;
    uint64_t id;
    char method[16];
    char path[512];            /* without the query string */
    const char *route;         /* route template, for metrics and logs */
    unsigned char *body;       /* NUL-terminated, body_len bytes */
    size_t body_len, body_cap;
    int64_t content_length;    /* from the header, -1 without one */
    int body_too_large;
    int over_budget;           /* would pass limits.max_pending_bytes */
    uint64_t start_ns;
    struct MHD_Response *response;
    unsigned status;
    int suspended;
    int queued;
    char log_extra[256];       /* extra key=value pairs for the log line */
};

/* Whether a TLS certificate and key (PEM files) load as a pair: 0, or -1
 * with GnuTLS's reason in err.  ed_http_start checks this first;
 * --check-config uses it alone. */
int ed_http_check_tls(const char *cert, const char *key, char *err,
                      size_t err_size);

/* When the first certificate of a PEM file expires: 0 with *expires, or
 * -1 when it cannot be read. */
int ed_http_tls_expiry(const char *cert, time_t *expires);

int ed_http_start(uv_loop_t *loop, const ed_config *cfg,
                  ed_dispatch_fn dispatch, void *app, ed_server **out,
                  int *bound_port, char *err, size_t err_size);
/* Stop accepting new connections (SIGTERM); served ones finish. */
void ed_http_quiesce(ed_server *srv);
/* Connections still open. */
unsigned ed_http_connections(ed_server *srv);
/* Stop libmicrohttpd and close the loop handles. */
void ed_http_stop(ed_server *srv);

/* Bytes of request-body buffers held now (limits.max_pending_bytes). */
size_t ed_http_pending_bytes(const ed_server *srv);

/* Request accessors. */
/* The query parameters a route takes, keys NULL-terminated (at most 4):
 * 0 with values[k] set for keys[k] (NULL when absent, "" when given
 * without '='), or 400 with msg filled when a key is given more than once
 * or the query holds any other key.  keys NULL: the route takes none, and
 * any key is refused. */
unsigned ed_http_query_params(ed_request *req, const char *const *keys,
                              const char **values, char *msg, size_t ms);
/* The same for one key (NULL: none). */
unsigned ed_http_query_param(ed_request *req, const char *key,
                             const char **value, char *msg, size_t ms);
const char *ed_http_header(ed_request *req, const char *name);
/* A header value without the spaces and tabs around it (RFC 9110, 5.5:
 * they are not part of it): its first character, its length in *len. */
const char *ed_http_trim(const char *value, size_t *len);

/* 1 when a Content-Type is the media type `type` (in any case), alone or
 * with parameters ("; charset=utf-8"). */
int ed_http_media_is(const char *ct, const char *type);
/* ed_http_media_is(ct, "application/json"). */
int ed_http_is_json(const char *ct);

/* Answers: each sets req->response; the body is taken over. */
void ed_http_json(ed_request *req, unsigned status, json_t *body);
void ed_http_empty(ed_request *req, unsigned status);
void ed_http_text(ed_request *req, unsigned status, const char *ctype,
                  char *text);
void ed_http_bytes(ed_request *req, unsigned status, const char *ctype,
                   unsigned char *data, size_t len);
/* application/problem+json (RFC 9457) with type, title, status and a
 * detail saying exactly what was wrong and where. */
void ed_http_problem(ed_request *req, unsigned status, const char *detail_fmt,
                     ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Add a header to the answer already set. */
void ed_http_add_header(ed_request *req, const char *name,
                        const char *value);

/* Asynchronous answers: suspend in the handler, resume once an answer
 * is set (from the loop thread only). */
void ed_http_suspend(ed_request *req);
void ed_http_resume(ed_request *req);

const char *ed_http_reason(unsigned status);
uint64_t ed_http_now_ns(void);

#endif
