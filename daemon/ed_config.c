/*
 * ed_config.c - defaults, the JSON configuration file and the command
 * line, in that order of precedence (later wins).
 */
#include "ed_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(char *err, size_t size, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
    return -1;
}

void ed_config_defaults(ed_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->listen_addr, "127.0.0.1");
    cfg->port = 8642;
    strcpy(cfg->data_dir, "./ecgprune-data");
    cfg->workers = 2;
    cfg->max_running_jobs = 1;
    cfg->max_body_bytes = 64 << 20;
    cfg->max_pending_bytes = INT64_C(256) << 20;
    cfg->max_samples = 8000000;   /* over 6 h at 360 Hz */
    cfg->max_job_bytes = INT64_C(2) << 30;
    cfg->log_level = ED_LOG_INFO;
}

int ed_config_parse_listen(const char *s, char *addr, size_t addr_size,
                           int *port)
{
    const char *colon;
    char host[64];
    char *end;
    unsigned char probe[16];
    long p;
    size_t hl;

    /* Split host and port; a bare number is a port on the default host. */
    if (s[0] == '[') {
        colon = strstr(s, "]:");
        if (!colon)
            return -1;
        hl = (size_t)(colon - s - 1);
        if (hl == 0 || hl >= sizeof host)
            return -1;
        memcpy(host, s + 1, hl);
        colon++;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            host[0] = '\0';
            colon = s - 1;
            hl = 0;
        } else {
            hl = (size_t)(colon - s);
            if (hl == 0 || hl >= sizeof host)
                return -1;
            memcpy(host, s, hl);
        }
    }
    host[hl] = '\0';
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
        return -1;

    /* Only numeric addresses: no name resolution at start-up. */
    if (host[0]) {
        if (inet_pton(AF_INET, host, probe) != 1 &&
            inet_pton(AF_INET6, host, probe) != 1)
            return -1;
        if (strlen(host) >= addr_size)
            return -1;
        strcpy(addr, host);
    }
    *port = (int)p;
    return 0;
}

/* Copy a JSON string member into dst; absent or null keeps dst. */
static int get_string(json_t *obj, const char *key, const char *where,
                      char *dst, size_t size, char *err, size_t err_size)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(err, err_size, "%s: key \"%s\": expected a string", where, key);
    if (strlen(json_string_value(v)) >= size)
        return fail(err, err_size, "%s: key \"%s\": longer than %zu bytes", where,
                    key, size - 1);
    strcpy(dst, json_string_value(v));
    return 0;
}

static int get_int(json_t *obj, const char *key, const char *where,
                   int64_t lo, int64_t hi, int64_t *dst, char *err,
                   size_t err_size)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi)
        return fail(err, err_size, "%s: key \"%s\": expected an integer in "
                    "%lld..%lld",
                    where, key, (long long)lo, (long long)hi);
    *dst = json_integer_value(v);
    return 0;
}

/* Reject keys the configuration does not know, so typos are not silent. */
static int check_keys(json_t *obj, const char *where,
                      const char *const *known, char *err, size_t err_size)
{
    const char *key;
    json_t *v;
    int i, ok;

    json_object_foreach(obj, key, v) {
        char names[400] = "";
        size_t used = 0;

        ok = 0;
        for (i = 0; known[i]; i++)
            ok |= strcmp(key, known[i]) == 0;
        if (ok)
            continue;
        for (i = 0; known[i] && used < sizeof names; i++)
            used += (size_t)snprintf(names + used, sizeof names - used,
                                     "%s%s", i ? ", " : "", known[i]);
        return fail(err, err_size, "%s: unknown key \"%.64s\" (known: %s)",
                    where, key, names);
    }
    return 0;
}

/* "limits": {"max_body_bytes", "max_pending_bytes", "max_samples",
 * "max_running_jobs", "max_connections_per_ip", "max_job_bytes"}. */
static int load_limits(ed_config *cfg, json_t *o, const char *path,
                       char *err, size_t es)
{
    static const char *const limit_keys[] = {
        "max_body_bytes", "max_pending_bytes", "max_samples",
        "max_running_jobs", "max_connections_per_ip", "max_job_bytes",
        NULL};
    int64_t n = cfg->max_running_jobs;
    char where[ED_PATH_MAX + 16];

    if (!o)
        return 0;
    snprintf(where, sizeof where, "%s: limits", path);
    if (!json_is_object(o))
        return fail(err, es, "%s: limits: expected an object", path);
    if (check_keys(o, where, limit_keys, err, es) ||
        get_int(o, "max_body_bytes", where, 1024, INT64_C(1) << 34,
                &cfg->max_body_bytes, err, es) ||
        get_int(o, "max_pending_bytes", where, 1024, INT64_C(1) << 36,
                &cfg->max_pending_bytes, err, es) ||
        get_int(o, "max_samples", where, 1000, INT64_C(1) << 31,
                &cfg->max_samples, err, es) ||
        get_int(o, "max_running_jobs", where, 1, 64, &n, err, es) ||
        get_int(o, "max_connections_per_ip", where, 0, 512,
                &cfg->max_connections_per_ip, err, es) ||
        get_int(o, "max_job_bytes", where, INT64_C(1) << 26,
                INT64_C(1) << 40, &cfg->max_job_bytes, err, es))
        return -1;
    cfg->max_running_jobs = (int)n;

    /* One body must fit in the budget of all of them, or it would be
     * refused as "busy" forever; an unset budget grows to fit. */
    if (cfg->max_pending_bytes < cfg->max_body_bytes) {
        if (json_is_integer(json_object_get(o, "max_pending_bytes")))
            return fail(err, es, "%s: limits: max_pending_bytes %lld is "
                        "below max_body_bytes %lld; one body must fit",
                        path, (long long)cfg->max_pending_bytes,
                        (long long)cfg->max_body_bytes);
        cfg->max_pending_bytes = cfg->max_body_bytes;
    }
    return 0;
}

/* "tokens": ["...", ...], each 16..127 characters. */
static int load_tokens(ed_config *cfg, json_t *o, const char *path,
                       char *err, size_t es)
{
    json_t *v;
    size_t i;

    if (!o)
        return 0;
    if (!json_is_array(o) || json_array_size(o) > ED_MAX_TOKENS)
        return fail(err, es, "%s: tokens: expected an array of at most %d "
                    "strings", path, ED_MAX_TOKENS);
    json_array_foreach(o, i, v) {
        if (!json_is_string(v) || strlen(json_string_value(v)) < 16 ||
            strlen(json_string_value(v)) >= 128)
            return fail(err, es, "%s: tokens[%zu]: expected a string of "
                        "16..127 characters", path, i);
        strcpy(cfg->tokens[i], json_string_value(v));
    }
    cfg->n_tokens = (int)json_array_size(o);
    return 0;
}

/* "tls": {"cert", "key"} and "log": {"level", "file"}. */
static int load_tls_log(ed_config *cfg, json_t *root, const char *path,
                        char *err, size_t es)
{
    json_t *tls = json_object_get(root, "tls");
    json_t *log = json_object_get(root, "log");
    char level[16] = "", wtls[ED_PATH_MAX + 16], wlog[ED_PATH_MAX + 16];

    snprintf(wtls, sizeof wtls, "%s: tls", path);
    snprintf(wlog, sizeof wlog, "%s: log", path);
    if (tls && !json_is_object(tls))
        return fail(err, es, "%s: tls: expected an object", path);
    if (log && !json_is_object(log))
        return fail(err, es, "%s: log: expected an object", path);
    if (get_string(tls, "cert", wtls, cfg->tls_cert, sizeof cfg->tls_cert,
                   err, es) ||
        get_string(tls, "key", wtls, cfg->tls_key, sizeof cfg->tls_key,
                   err, es) ||
        get_string(log, "level", wlog, level, sizeof level, err, es) ||
        get_string(log, "file", wlog, cfg->log_file, sizeof cfg->log_file,
                   err, es))
        return -1;
    if (level[0] && ed_log_level_from_name(level, &cfg->log_level))
        return fail(err, es, "%s: log.level \"%s\": expected debug, info, "
                    "warn or error", path, level);
    return 0;
}

static int load_file(ed_config *cfg, const char *path, char *err,
                     size_t es)
{
    static const char *const top_keys[] = {
        "listen", "data_dir", "workers", "limits", "tokens", "tls", "log",
        "keep_inference_records", "preload", NULL};
    json_error_t jerr;
    json_t *root, *v;
    struct stat st = {0};
    int fd;
    char listen[96] = "";
    int64_t n;
    int rc = -1;

    /* Opened without blocking and checked to be a regular file: a FIFO
     * in its place would otherwise stall the loop thread (on SIGHUP) until
     * someone wrote to it. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return fail(err, es, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, es, "%s: %s, expected a JSON file", path,
                    S_ISDIR(st.st_mode) ? "is a directory"
                                        : "is not a regular file");
    }
    root = json_loadfd(fd, JSON_REJECT_DUPLICATES, &jerr);
    close(fd);
    if (!root)
        return fail(err, es, "%s:%d:%d: %s", path, jerr.line, jerr.column,
                    jerr.text);
    if (!json_is_object(root)) {
        fail(err, es, "%s: expected a JSON object", path);
        goto out;
    }
    if (check_keys(root, path, top_keys, err, es))
        goto out;

    /* Listening address, storage, pool. */
    if (get_string(root, "listen", path, listen, sizeof listen, err, es))
        goto out;
    if (listen[0] && ed_config_parse_listen(listen, cfg->listen_addr,
                                            sizeof cfg->listen_addr,
                                            &cfg->port)) {
        fail(err, es, "%s: listen \"%s\": expected ADDR:PORT with a "
             "numeric address (127.0.0.1:8642, [::1]:8642)", path, listen);
        goto out;
    }
    if (get_string(root, "data_dir", path, cfg->data_dir,
                   sizeof cfg->data_dir, err, es) ||
        get_string(root, "preload", path, cfg->preload, sizeof cfg->preload,
                   err, es))
        goto out;
    n = cfg->workers;
    if (get_int(root, "workers", path, 1, 128, &n, err, es))
        goto out;
    cfg->workers = (int)n;
    v = json_object_get(root, "keep_inference_records");
    if (v && !json_is_boolean(v)) {
        fail(err, es, "%s: keep_inference_records: expected true or false",
             path);
        goto out;
    }
    cfg->keep_inferences = v ? json_is_true(v) : 0;

    /* The sections. */
    if (load_limits(cfg, json_object_get(root, "limits"), path, err, es) ||
        load_tokens(cfg, json_object_get(root, "tokens"), path, err, es) ||
        load_tls_log(cfg, root, path, err, es))
        goto out;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void ed_config_usage(FILE *out)
{
    fputs("usage: ecgpruned [OPTION]...\n"
          "Compression-as-a-service daemon: stores ECG models and batches,\n"
          "runs pruning jobs, serves per-beat inference over HTTP/JSON.\n"
          "\n"
          "  --config FILE        JSON settings (see config/ecgpruned.json)\n"
          "  --listen ADDR:PORT   numeric address and port "
          "(default 127.0.0.1:8642;\n"
          "                       port 0 picks a free one)\n"
          "  --data-dir DIR       SQLite store and files "
          "(default ./ecgprune-data)\n"
          "  --workers N          worker-pool threads, 1..128 (default 2)\n"
          "  --log-level LEVEL    debug, info, warn or error (default info)\n"
          "  --log-file FILE      log there instead of stderr\n"
          "  --preload MODEL      store this model file at start if absent\n"
          "  --port-file FILE     write the bound port there\n"
          "  --check-config       validate the settings and exit\n"
          "  --version            print the version and exit\n"
          "  --help               print this help and exit\n", out);
}

/* The value of option argv[*i], advancing *i; NULL if missing. */
static const char *option_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

/* Whether opt is one of the options that take a value. */
static int takes_value(const char *opt)
{
    static const char *const names[] = {
        "--listen", "--data-dir", "--workers", "--log-level", "--log-file",
        "--preload", "--port-file"
    };
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(opt, names[i]) == 0)
            return 1;
    return 0;
}

static int copy_opt(char *dst, size_t size, const char *v, const char *opt,
                    char *err, size_t es)
{
    if (strlen(v) >= size)
        return fail(err, es, "%s: value longer than %zu bytes", opt,
                    size - 1);
    strcpy(dst, v);
    return 0;
}

static int apply_option(ed_config *cfg, const char *opt, const char *v,
                        char *err, size_t es)
{
    char *end;
    long n;

    if (strcmp(opt, "--listen") == 0) {
        if (ed_config_parse_listen(v, cfg->listen_addr,
                                   sizeof cfg->listen_addr, &cfg->port))
            return fail(err, es, "--listen \"%s\": expected ADDR:PORT with a "
                        "numeric address (127.0.0.1:8642, [::1]:8642)", v);
        return 0;
    }
    if (strcmp(opt, "--workers") == 0) {
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno || *end || end == v || n < 1 || n > 128)
            return fail(err, es, "--workers \"%s\": expected 1..128", v);
        cfg->workers = (int)n;
        return 0;
    }
    if (strcmp(opt, "--log-level") == 0) {
        if (ed_log_level_from_name(v, &cfg->log_level))
            return fail(err, es, "--log-level \"%s\": expected debug, info, "
                        "warn or error", v);
        return 0;
    }
    if (strcmp(opt, "--data-dir") == 0)
        return copy_opt(cfg->data_dir, sizeof cfg->data_dir, v, opt, err,
                        es);
    if (strcmp(opt, "--log-file") == 0)
        return copy_opt(cfg->log_file, sizeof cfg->log_file, v, opt, err,
                        es);
    if (strcmp(opt, "--preload") == 0)
        return copy_opt(cfg->preload, sizeof cfg->preload, v, opt, err, es);
    if (strcmp(opt, "--port-file") == 0)
        return copy_opt(cfg->port_file, sizeof cfg->port_file, v, opt, err,
                        es);
    return fail(err, es, "unknown option %s", opt);
}

int ed_config_from_args(ed_config *cfg, int argc, char **argv, char *err,
                        size_t es)
{
    const char *config_path = NULL, *v;
    int i;

    ed_config_defaults(cfg);

    /* First pass: the file, so that options given with it override it. */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            config_path = option_value(argc, argv, &i);
            if (!config_path)
                return fail(err, es, "--config needs a FILE");
        }
    }
    if (config_path && load_file(cfg, config_path, err, es))
        return -1;

    /* Second pass: every other option. */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            i++;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            cfg->check_only = 1;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            cfg->show_help = 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            cfg->show_version = 1;
        } else if (!takes_value(argv[i])) {
            return fail(err, es, "unknown option %s", argv[i]);
        } else {
            const char *opt = argv[i];
            v = option_value(argc, argv, &i);
            if (!v)
                return fail(err, es, "%s needs a value", opt);
            if (apply_option(cfg, opt, v, err, es))
                return -1;
        }
    }

    /* Consistency across settings. */
    if ((cfg->tls_cert[0] != '\0') != (cfg->tls_key[0] != '\0'))
        return fail(err, es, "tls: cert and key must be given together");
    /* Leave one pool thread to inference whenever there are two. */
    cfg->max_running_jobs_asked = cfg->max_running_jobs;
    if (cfg->workers > 1 && cfg->max_running_jobs >= cfg->workers)
        cfg->max_running_jobs = cfg->workers - 1;
    if (cfg->workers == 1)
        cfg->max_running_jobs = 1;
    return 0;
}

/* 127.0.0.0/8, ::1, and 127.0.0.0/8 mapped into IPv6, however written
 * (the settings hold numeric addresses). */
static int is_loopback(const char *addr)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                             0xff, 0xff};
    struct in_addr v4;
    struct in6_addr v6;

    if (inet_pton(AF_INET, addr, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &v6) != 1)
        return 0;
    if (IN6_IS_ADDR_LOOPBACK(&v6))
        return 1;
    return memcmp(v6.s6_addr, mapped, sizeof mapped) == 0 &&
           v6.s6_addr[12] == 127;
}

int ed_config_advice(const ed_config *cfg,
                     char advice[][ED_CONFIG_ADVICE_MAX], int max)
{
    int n = 0;

    if (n < max && cfg->workers == 1)
        snprintf(advice[n++], ED_CONFIG_ADVICE_MAX, "workers 1: a running "
                 "job holds the only pool thread, so inference requests "
                 "wait until it ends; give workers >= 2");
    if (is_loopback(cfg->listen_addr))
        return n;
    if (n < max && cfg->n_tokens == 0)
        snprintf(advice[n++], ED_CONFIG_ADVICE_MAX, "listening on %s "
                 "without tokens: anyone who reaches it can upload, prune "
                 "and read ECG; set tokens%s", cfg->listen_addr,
                 cfg->tls_cert[0] ? "" : " (and tls)");
    else if (n < max && cfg->tls_cert[0] == '\0')
        snprintf(advice[n++], ED_CONFIG_ADVICE_MAX, "listening on %s "
                 "without tls: tokens and ECG cross the network in clear "
                 "text; set tls.cert and tls.key", cfg->listen_addr);
    return n;
}

int ed_config_input_file(const char *path, const char *what, char *why,
                         size_t ws)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        snprintf(why, ws, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, ws, "%s %s is not a regular file (%s)", what, path,
                 S_ISDIR(st.st_mode) ? "a directory" : "a device, FIFO or "
                 "socket");
        return -1;
    }
    if (access(path, R_OK) != 0) {
        snprintf(why, ws, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The file a dangling symbolic link names, relative to the link's own
 * directory when it is relative. */
static int link_target(const char *path, char *out, size_t size)
{
    char target[ED_PATH_MAX];
    const char *slash = strrchr(path, '/');
    ssize_t n = readlink(path, target, sizeof target - 1);

    if (n < 0)
        return -1;
    target[n] = '\0';
    if (target[0] == '/' || !slash)
        snprintf(out, size, "%s", target);
    else
        snprintf(out, size, "%.*s/%s", (int)(slash - path), path, target);
    return 0;
}

int ed_config_log_file(const char *path, char *why, size_t ws)
{
    char at[ED_PATH_MAX + 64], next[ED_PATH_MAX + 64];
    struct stat st;
    int fd = -1, depth = 0;

    /* A dangling link: the file it names is the one that would be made. */
    snprintf(at, sizeof at, "%s", path);
    while (stat(at, &st) != 0 && errno == ENOENT && lstat(at, &st) == 0 &&
           S_ISLNK(st.st_mode)) {
        if (++depth > 8 || link_target(at, next, sizeof next)) {
            errno = ELOOP;
            goto fail;
        }
        memcpy(at, next, sizeof at);
    }

    if (stat(at, &st) == 0) {
        if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
            snprintf(why, ws, "%s is not a regular file (%s)", path,
                     S_ISDIR(st.st_mode) ? "a directory" : "a FIFO or "
                     "socket, whose open would block the daemon");
            return -1;
        }
        fd = open(at, O_WRONLY | O_APPEND | O_CLOEXEC);
    } else if (errno == ENOENT) {
        fd = open(at, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd >= 0)
            unlink(at);
    }
    if (fd >= 0) {
        close(fd);
        return 0;
    }
fail:
    snprintf(why, ws, "%s cannot be opened for appending: %s", path,
             strerror(errno));
    return -1;
}
