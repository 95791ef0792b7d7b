/*
 * ed_http.c - libmicrohttpd in external epoll mode on the libuv loop;
 * bodies, bearer tokens, answers, suspension, the per-request log line.
 */
#include "ed_http.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ed_log.h"
#include "ed_metrics.h"
#include "ed_utf8.h"

/* Memory libmicrohttpd gives each connection for its request line,
 * headers and query parameters (its default is 32 KiB).  Limitation: a
 * request that needs more gets no answer (a warning is logged), and
 * libmicrohttpd may hold its socket open until it next times out another
 * connection; at 64 KiB a query of 900 short parameters still gets its
 * 400, one of 1,000 does not.  512 connections take at most 32 MiB
 * this way. */
#define ED_HTTP_CONNECTION_MEMORY (64 * 1024)

struct ed_server {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;          /* MHD's own timeouts, and kicks */
    const ed_config *cfg;
    ed_dispatch_fn dispatch;
    void *app;
    uint64_t next_id;
    char *tls_cert, *tls_key;
    int closing;
    int closing_handles;       /* poll and timer not yet closed */
    size_t pending_bytes;      /* body buffers of requests in flight */
};

uint64_t ed_http_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *ed_http_reason(unsigned status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* ---- answers ---------------------------------------------------------- */

static void set_response(ed_request *req, unsigned status,
                         struct MHD_Response *resp, const char *ctype)
{
    if (req->response)
        MHD_destroy_response(req->response);
    req->response = resp;
    req->status = status;
    if (resp && ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
}

void ed_http_bytes(ed_request *req, unsigned status, const char *ctype,
                   unsigned char *data, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, data, MHD_RESPMEM_MUST_FREE);

    if (!r)
        free(data);
    set_response(req, status, r, ctype);
}

void ed_http_text(ed_request *req, unsigned status, const char *ctype,
                  char *text)
{
    ed_http_bytes(req, status, ctype, (unsigned char *)text, strlen(text));
}

void ed_http_json(ed_request *req, unsigned status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9));

    json_decref(body);
    if (!text) {
        ed_http_problem(req, 500, "the answer could not be serialised");
        return;
    }
    ed_http_text(req, status, "application/json", text);
}

void ed_http_empty(ed_request *req, unsigned status)
{
    set_response(req, status, MHD_create_response_from_buffer(
                     0, NULL, MHD_RESPMEM_PERSISTENT), NULL);
}

void ed_http_problem(ed_request *req, unsigned status, const char *fmt, ...)
{
    static const char fallback[] = "{\"type\":\"about:blank\"}";
    char detail[1024], instance[sizeof req->path], quoted[200], *text;
    json_t *p;
    va_list ap;

    /* Detail and path quote client bytes (a path of "%ff" decodes to one
     * byte 0xff), and jansson packs nothing but UTF-8. */
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    ed_utf8_scrub(detail);
    snprintf(instance, sizeof instance, "%s", req->path);
    ed_utf8_scrub(instance);

    /* Without memory for the document the status still goes out. */
    p = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", "about:blank",
                  "title", ed_http_reason(status), "status", (int)status,
                  "detail", detail, "instance", instance);
    text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (text)
        ed_http_text(req, status, "application/problem+json", text);
    else
        set_response(req, status, MHD_create_response_from_buffer(
                         sizeof fallback - 1, (void *)fallback,
                         MHD_RESPMEM_PERSISTENT), "application/problem+json");
    snprintf(req->log_extra, sizeof req->log_extra, "detail=%s",
             ed_log_quote(quoted, sizeof quoted, detail));
}

void ed_http_add_header(ed_request *req, const char *name, const char *value)
{
    if (req->response)
        MHD_add_response_header(req->response, name, value);
}

int ed_http_media_is(const char *ct, const char *type)
{
    size_t n = strlen(type);

    /* Media types are case-insensitive (RFC 9110, 8.3.1). */
    return strncasecmp(ct, type, n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

int ed_http_is_json(const char *ct)
{
    return ed_http_media_is(ct, "application/json");
}

#define QUERY_MAX_KEYS 4

typedef struct query_count {
    const char *const *keys;   /* the n_keys keys taken */
    int n_keys;
    const char *values[QUERY_MAX_KEYS]; /* a key's value, "" without '=' */
    int n[QUERY_MAX_KEYS], n_other;
    char other[64];            /* the first other key */
} query_count;

static enum MHD_Result count_key(void *cls, enum MHD_ValueKind kind,
                                 const char *key, size_t key_size,
                                 const char *value, size_t value_size)
{
    query_count *q = cls;
    int k;

    (void)kind;
    (void)key_size;
    (void)value_size;
    /* An empty key ("?&limit=2") carries nothing: skipped, as
     * libmicrohttpd skips a trailing '&'.  Keys are matched exactly:
     * ?LIMIT= is as unknown as a misspelt key. */
    if (key[0] == '\0')
        return MHD_YES;
    for (k = 0; k < q->n_keys; k++)
        if (strcmp(key, q->keys[k]) == 0) {
            q->n[k]++;
            q->values[k] = value != NULL ? value : "";
            return MHD_YES;
        }
    if (q->n_other++ == 0) {
        snprintf(q->other, sizeof q->other, "%s", key);
        ed_utf8_scrub(q->other);
    }
    return MHD_YES;
}

/* "\"a\"", "\"a\" and \"b\"", "\"a\", \"b\" and \"c\"" into buf. */
static void list_keys(const char *const *keys, int n, char *buf, size_t size)
{
    size_t used = 0;
    int k;

    buf[0] = '\0';
    for (k = 0; k < n && used < size; k++) {
        const char *sep = k == 0 ? "" : k == n - 1 ? " and " : ", ";
        int w = snprintf(buf + used, size - used, "%s\"%s\"", sep, keys[k]);

        used += w > 0 ? (size_t)w : 0;
    }
}

unsigned ed_http_query_params(ed_request *req, const char *const *keys,
                              const char **values, char *msg, size_t ms)
{
    query_count q;
    char taken[96];
    int k;

    /* libmicrohttpd answers the first of repeated keys; which one the
     * client meant is unknowable, so the request is refused.  So is a
     * misspelt key (?subjct=), which would otherwise switch its check
     * off without a sign. */
    memset(&q, 0, sizeof q);
    q.keys = keys;
    while (keys != NULL && keys[q.n_keys] != NULL &&
           q.n_keys < QUERY_MAX_KEYS)
        q.n_keys++;
    for (k = 0; k < q.n_keys; k++)
        values[k] = NULL;
    MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, count_key,
                                &q);
    if (q.n_other > 0 && q.n_keys == 0) {
        snprintf(msg, ms, "unknown query parameter \"%.60s\" (this route "
                 "takes none)", q.other);
        return 400;
    }
    if (q.n_other > 0) {
        list_keys(keys, q.n_keys, taken, sizeof taken);
        snprintf(msg, ms, "unknown query parameter \"%.60s\" (this route "
                 "takes %s only)", q.other, taken);
        return 400;
    }
    for (k = 0; k < q.n_keys; k++) {
        if (q.n[k] > 1) {
            snprintf(msg, ms, "query parameter \"%s\" is given %d times; "
                     "give it once", keys[k], q.n[k]);
            return 400;
        }
        values[k] = q.values[k];
    }
    return 0;
}

unsigned ed_http_query_param(ed_request *req, const char *key,
                             const char **value, char *msg, size_t ms)
{
    const char *keys[2] = {key, NULL};

    return ed_http_query_params(req, keys, value, msg, ms);
}

const char *ed_http_header(ed_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

/* ---- loop integration ------------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* Run MHD and re-arm the timer with the timeout it asks for (at most a
 * second, so that nothing can stall on a missed wake-up). */
static void run_mhd(ed_server *srv)
{
    MHD_UNSIGNED_LONG_LONG ms = 1000;

    if (!srv->mhd)
        return;
    MHD_run(srv->mhd);
    if (MHD_get_timeout(srv->mhd, &ms) != MHD_YES || ms > 1000)
        ms = 1000;
    if (!srv->closing)
        uv_timer_start(&srv->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

void ed_http_suspend(ed_request *req)
{
    req->suspended = 1;
}

void ed_http_resume(ed_request *req)
{
    ed_server *srv = req->srv;

    req->suspended = 0;
    MHD_resume_connection(req->conn);
    uv_timer_start(&srv->timer, on_timer, 0, 0);
}

/* ---- request life cycle ----------------------------------------------- */

const char *ed_http_trim(const char *value, size_t *len)
{
    size_t n;

    while (*value == ' ' || *value == '\t')
        value++;
    n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    *len = n;
    return value;
}

static int token_ok(const ed_server *srv, const char *auth)
{
    const char *tok;
    size_t n, i;
    int t, ok = 0;

    /* The scheme name is case-insensitive (RFC 9110, 11.1). */
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    tok = ed_http_trim(auth + 7, &n);
    /* Compare every configured token in full: no early exit on a match. */
    for (t = 0; t < srv->cfg->n_tokens; t++) {
        const char *want = srv->cfg->tokens[t];
        unsigned char diff = (unsigned char)(strlen(want) != n);
        for (i = 0; i < n && want[i]; i++)
            diff |= (unsigned char)(want[i] ^ tok[i]);
        ok |= diff == 0;
    }
    return ok;
}

static void queue_answer(ed_request *req)
{
    if (!req->response)
        ed_http_problem(req, 500, "the handler gave no answer");
    {
        char rid[32];
        snprintf(rid, sizeof rid, "%llu", (unsigned long long)req->id);
        MHD_add_response_header(req->response, "X-Request-Id", rid);
    }
    MHD_queue_response(req->conn, req->status, req->response);
    MHD_destroy_response(req->response);
    req->response = NULL;
    req->queued = 1;
}

/* 503 for a body that would take the buffered uploads past their budget:
 * the daemon is busy, not the request wrong, so the client may retry. */
static void over_budget_problem(ed_server *srv, ed_request *req)
{
    req->route = "(uploads over budget)";
    ed_http_problem(req, 503, "uploads in progress and this one would hold "
                    "more than %lld bytes (limits.max_pending_bytes); retry "
                    "later", (long long)srv->cfg->max_pending_bytes);
    ed_http_add_header(req, "Retry-After", "5");
}

size_t ed_http_pending_bytes(const ed_server *srv)
{
    return srv->pending_bytes;
}

/* Headers a request may carry once, every copy counted: libmicrohttpd
 * reads the first copy of a repeated header, while a proxy in front may
 * read the last or join them ("chunked, gzip"), so two copies of a
 * framing header can smuggle a second request, and two tokens or keys
 * make which one counted a matter of who reads them. */
enum { H_LENGTH, H_TRANSFER, H_TYPE, H_AUTH, H_KEY, N_SINGLE_HEADERS };
static const char *const single_headers[N_SINGLE_HEADERS] = {
    [H_LENGTH] = MHD_HTTP_HEADER_CONTENT_LENGTH,
    [H_TRANSFER] = MHD_HTTP_HEADER_TRANSFER_ENCODING,
    [H_TYPE] = MHD_HTTP_HEADER_CONTENT_TYPE,
    [H_AUTH] = MHD_HTTP_HEADER_AUTHORIZATION,
    [H_KEY] = "Idempotency-Key"};

typedef struct framing {
    int count[N_SINGLE_HEADERS];
    const char *te, *ce;        /* the first value not allowed, or NULL */
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value)
{
    framing *f = cls;
    int i;

    (void)kind;
    for (i = 0; i < N_SINGLE_HEADERS; i++)
        if (strcasecmp(key, single_headers[i]) == 0)
            f->count[i]++;
    if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        if (!f->te && (!value || strcasecmp(value, "chunked") != 0))
            f->te = value ? value : "";
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_ENCODING) == 0) {
        if (!f->ce && (!value || strcasecmp(value, "identity") != 0))
            f->ce = value ? value : "";
    }
    return MHD_YES;
}

/* Framing libmicrohttpd would read one way and a proxy in front another
 * (a way to smuggle a second request), or that it would wait on for ever
 * (Transfer-Encoding: identity), headers given twice, and bodies it
 * cannot decode: refused before any body is read.  1 when answered. */
static int refuse_framing(ed_request *req)
{
    framing f = {{0}, NULL, NULL};
    int i, twice = N_SINGLE_HEADERS;

    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_framing,
                              &f);
    for (i = 0; i < N_SINGLE_HEADERS && twice == N_SINGLE_HEADERS; i++)
        if (f.count[i] > 1)
            twice = i;
    if (f.te)
        ed_http_problem(req, 501, "Transfer-Encoding \"%.40s\": only "
                        "chunked is supported", f.te);
    else if (twice < N_SINGLE_HEADERS)
        ed_http_problem(req, 400, "%s given %d times: send it once",
                        single_headers[twice], f.count[twice]);
    else if (f.count[H_LENGTH] && f.count[H_TRANSFER])
        ed_http_problem(req, 400, "both Transfer-Encoding and "
                        "Content-Length: send one");
    else if (f.ce)
        ed_http_problem(req, 415, "Content-Encoding \"%.40s\": bodies are "
                        "read as sent; send them uncompressed", f.ce);
    else
        return 0;
    req->route = "(framing)";
    return 1;
}

/* First call for a request: checks that need only the headers. */
static int precheck(ed_server *srv, ed_request *req)
{
    const char *cl = ed_http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);

    if (refuse_framing(req))
        return 1;
    req->content_length = cl ? strtoll(cl, NULL, 10) : -1;
    if (srv->cfg->n_tokens > 0 && strncmp(req->path, "/v1/", 4) == 0 &&
        !token_ok(srv, ed_http_header(req, MHD_HTTP_HEADER_AUTHORIZATION))) {
        req->route = "/v1/*";
        ed_http_problem(req, 401, "missing or unknown bearer token in the "
                        "Authorization header");
        ed_http_add_header(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                           "Bearer realm=\"ecgpruned\"");
        return 1;
    }
    if (req->content_length > srv->cfg->max_body_bytes) {
        req->route = "(body too large)";
        ed_http_problem(req, 413, "Content-Length %s exceeds the limit of "
                        "%lld bytes (limits.max_body_bytes)", cl,
                        (long long)srv->cfg->max_body_bytes);
        return 1;
    }
    if (req->content_length > 0 &&
        req->content_length >
            srv->cfg->max_pending_bytes - (int64_t)srv->pending_bytes) {
        req->over_budget = 1;
        over_budget_problem(srv, req);
        return 1;
    }
    return 0;
}

/* Bytes of body a request's buffer has room for (its terminating NUL is
 * not counted against the budget). */
static size_t body_room(const ed_request *req)
{
    return req->body_cap > 0 ? req->body_cap - 1 : 0;
}

/* Bodies are buffered whole before routing, so their buffers are what
 * slow or many uploads cost; limits.max_pending_bytes bounds their sum
 * over all connections (the loop thread alone runs these callbacks, so a
 * plain counter does).  Buffers grow by doubling from 64 KiB as data
 * arrives, never past the announced Content-Length or max_body_bytes, so
 * the budget is charged for bytes received, not promised: a client that
 * announces 64 MiB and sends one byte holds 64 KiB.  A request that would
 * push the sum over is read to its end, dropped and answered 503. */
static int append_body(ed_server *srv, ed_request *req, const char *data,
                       size_t n)
{
    size_t need = req->body_len + n, room, limit;
    unsigned char *nb;

    if (req->body_too_large || req->over_budget)
        return 0;
    if (need > (size_t)srv->cfg->max_body_bytes) {
        req->body_too_large = 1;   /* read and drop the rest */
        return 0;
    }
    if (need > body_room(req)) {
        limit = (size_t)srv->cfg->max_body_bytes;
        if (req->content_length >= 0 &&
            (size_t)req->content_length >= need &&
            (size_t)req->content_length < limit)
            limit = (size_t)req->content_length;
        room = body_room(req) > 65536 ? body_room(req) : 65536;
        while (room < need)
            room *= 2;
        if (room > limit)
            room = limit;
        if (srv->pending_bytes - body_room(req) + room >
            (size_t)srv->cfg->max_pending_bytes) {
            req->over_budget = 1;
            return 0;
        }
        nb = realloc(req->body, room + 1);
        if (!nb)
            return -1;
        srv->pending_bytes += room - body_room(req);
        req->body = nb;
        req->body_cap = room + 1;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
    return 0;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    ed_server *srv = cls;
    ed_request *req = *con_cls;

    (void)version;

    /* Headers arrived: set up the request. */
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->srv = srv;
        req->app = srv->app;
        req->conn = conn;
        req->id = ++srv->next_id;
        req->start_ns = ed_http_now_ns();
        req->route = "(unmatched)";
        snprintf(req->method, sizeof req->method, "%s", method);
        snprintf(req->path, sizeof req->path, "%s", url);
        *con_cls = req;
        if (precheck(srv, req))
            queue_answer(req);
        return MHD_YES;
    }
    if (req->queued) {
        *upload_size = 0;
        return MHD_YES;
    }

    /* Body chunks. */
    if (*upload_size) {
        if (append_body(srv, req, upload, *upload_size))
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }

    /* Resumed after asynchronous work: send what the handler set. */
    if (req->response) {
        queue_answer(req);
        return MHD_YES;
    }

    /* Whole request read: route it. */
    if (req->body_too_large) {
        req->route = "(body too large)";
        ed_http_problem(req, 413, "the body exceeds the limit of %lld bytes "
                        "(limits.max_body_bytes)",
                        (long long)srv->cfg->max_body_bytes);
    } else if (req->over_budget) {
        over_budget_problem(srv, req);
    } else {
        srv->dispatch(req, srv->app);
    }
    if (req->suspended)
        MHD_suspend_connection(conn);
    else
        queue_answer(req);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe)
{
    ed_server *srv = cls;
    ed_request *req = *con_cls;
    char path[600], method_q[40];
    double ms;

    (void)conn;
    if (!req)
        return;
    ms = (double)(ed_http_now_ns() - req->start_ns) / 1e6;
    if (!req->queued)
        req->status = 499;   /* client went away before an answer */
    ed_metrics_request(req->route, req->method, req->status, ms / 1000.0);
    ed_log(req->status >= 500 ? ED_LOG_WARN : ED_LOG_INFO, "request",
           "id=%llu method=%s path=%s route=%s status=%u ms=%.1f bytes_in=%zu"
           "%s%s%s", (unsigned long long)req->id,
           ed_log_value(method_q, sizeof method_q, req->method),
           ed_log_value(path, sizeof path, req->path),
           req->route, req->status, ms, req->body_len,
           toe != MHD_REQUEST_TERMINATED_COMPLETED_OK ? " aborted=1" : "",
           req->log_extra[0] ? " " : "", req->log_extra);
    if (req->response)
        MHD_destroy_response(req->response);
    srv->pending_bytes -= body_room(req);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

/* ---- start and stop --------------------------------------------------- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512], quoted[600];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* libmicrohttpd reports clients that hang up or speak bad HTTP, which
     * is noise at the default level; running out of a connection's
     * memory drops a request without an answer, which an operator should
     * see. */
    ed_log(strstr(msg, "Not enough memory") ? ED_LOG_WARN : ED_LOG_DEBUG,
           "mhd", "msg=%s", ed_log_quote(quoted, sizeof quoted, msg));
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decoding of paths and query values, in place.  Unlike
 * libmicrohttpd's own, "%00" stays as it is: decoded, it would end the C
 * string early, and "/v1/batches/4%00junk" would address batch 4. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    char *out = s;
    const char *in = s;

    (void)cls;
    (void)conn;
    while (*in) {
        int hi = in[0] == '%' ? hex_value(in[1]) : -1;
        int lo = hi >= 0 ? hex_value(in[2]) : -1;

        if (lo >= 0 && (hi | lo) != 0) {
            *out++ = (char)(hi * 16 + lo);
            in += 3;
        } else {
            *out++ = *in++;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}

int ed_http_check_tls(const char *cert, const char *key, char *err,
                      size_t es)
{
    gnutls_certificate_credentials_t cred;
    int rc;

    if (ed_config_input_file(cert, "tls.cert", err, es) ||
        ed_config_input_file(key, "tls.key", err, es))
        return -1;
    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        snprintf(err, es, "tls: out of memory");
        return -1;
    }
    rc = gnutls_certificate_set_x509_key_file2(cred, cert, key,
                                               GNUTLS_X509_FMT_PEM, NULL, 0);
    gnutls_certificate_free_credentials(cred);
    if (rc >= 0)
        return 0;
    snprintf(err, es, "tls: certificate %s with key %s: %s (expected a PEM "
             "certificate and its PEM private key)", cert, key,
             gnutls_strerror(rc));
    return -1;
}

int ed_http_tls_expiry(const char *cert, time_t *expires)
{
    gnutls_x509_crt_t crt;
    gnutls_datum_t pem;
    char *text = read_file(cert);
    int rc = -1;

    if (!text)
        return -1;
    pem.data = (unsigned char *)text;
    pem.size = (unsigned)strlen(text);
    if (gnutls_x509_crt_init(&crt) >= 0) {
        if (gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM) >= 0) {
            *expires = gnutls_x509_crt_get_expiration_time(crt);
            rc = *expires == (time_t)-1 ? -1 : 0;
        }
        gnutls_x509_crt_deinit(crt);
    }
    free(text);
    return rc;
}

int ed_http_start(uv_loop_t *loop, const ed_config *cfg,
                  ed_dispatch_fn dispatch, void *app, ed_server **out,
                  int *bound_port, char *err, size_t es)
{
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    struct sockaddr *addr;
    const union MHD_DaemonInfo *info;
    ed_server *srv = calloc(1, sizeof *srv);

    if (!srv) {
        snprintf(err, es, "out of memory");
        return -1;
    }
    srv->loop = loop;
    srv->cfg = cfg;
    srv->dispatch = dispatch;
    srv->app = app;

    /* The listening address: numeric IPv4 or IPv6 (checked by config). */
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, cfg->listen_addr, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)cfg->port);
        addr = (struct sockaddr *)&a4;
    } else {
        inet_pton(AF_INET6, cfg->listen_addr, &a6.sin6_addr);
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)cfg->port);
        addr = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    }

    /* TLS through GnuTLS when a certificate is configured.  libmicrohttpd
     * says no more than that it could not start when they do not load, so
     * they are tried here first for GnuTLS's reason. */
    if (cfg->tls_cert[0]) {
        if (ed_http_check_tls(cfg->tls_cert, cfg->tls_key, err, es)) {
            ed_http_stop(srv);
            return -1;
        }
        srv->tls_cert = read_file(cfg->tls_cert);
        srv->tls_key = read_file(cfg->tls_key);
        if (!srv->tls_cert || !srv->tls_key) {
            snprintf(err, es, "tls: cannot read %s or %s", cfg->tls_cert,
                     cfg->tls_key);
            ed_http_stop(srv);
            return -1;
        }
        flags |= MHD_USE_TLS;
    }
    /* Limitation: errors libmicrohttpd answers by itself, before a
     * request reaches on_access (a malformed Content-Length, an oversized
     * header, an unsupported HTTP version), come back as its short HTML
     * pages, not as application/problem+json. */
    srv->mhd = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_access, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ED_HTTP_CONNECTION_MEMORY,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)512,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections_per_ip,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)256,
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, srv,
        srv->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END,
        srv->tls_cert, MHD_OPTION_HTTPS_MEM_KEY, srv->tls_key,
        MHD_OPTION_END);
    if (!srv->mhd) {
        snprintf(err, es, "cannot listen on %s port %d (in use, or not a "
                 "local address?)", cfg->listen_addr, cfg->port);
        ed_http_stop(srv);
        return -1;
    }

    /* Watch MHD's epoll descriptor from the loop. */
    info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    uv_poll_init(loop, &srv->poll, info->epoll_fd);
    srv->poll.data = srv;
    uv_poll_start(&srv->poll, UV_READABLE, on_poll);
    uv_timer_init(loop, &srv->timer);
    srv->timer.data = srv;
    uv_timer_start(&srv->timer, on_timer, 0, 0);

    info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? info->port : cfg->port;
    *out = srv;
    return 0;
}

void ed_http_quiesce(ed_server *srv)
{
    MHD_socket s;

    if (!srv->mhd)
        return;
    s = MHD_quiesce_daemon(srv->mhd);
    if (s != MHD_INVALID_SOCKET)
        close(s);
}

unsigned ed_http_connections(ed_server *srv)
{
    const union MHD_DaemonInfo *info;

    if (!srv->mhd)
        return 0;
    info = MHD_get_daemon_info(srv->mhd,
                               MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

static void free_state(ed_server *srv)
{
    free(srv->tls_cert);
    free(srv->tls_key);
    free(srv);
}

/* Close callback of the poll and the timer: the state holds both
 * handles, so it is freed after the second one, in whichever order libuv
 * runs them (it runs close callbacks newest first). */
static void free_server(uv_handle_t *h)
{
    ed_server *srv = h->data;

    if (--srv->closing_handles == 0)
        free_state(srv);
}

void ed_http_stop(ed_server *srv)
{
    srv->closing = 1;
    if (!srv->mhd) {
        free_state(srv);
        return;
    }
    uv_poll_stop(&srv->poll);
    srv->closing_handles = 2;
    uv_close((uv_handle_t *)&srv->poll, free_server);
    MHD_stop_daemon(srv->mhd);
    srv->mhd = NULL;
    uv_close((uv_handle_t *)&srv->timer, free_server);
}
