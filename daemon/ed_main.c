/*
 * ed_main.c - ecgpruned: start-up (configuration, store, pool size, BLAS
 * threads, HTTP), the loop, signals, systemd notification and an orderly
 * stop.
 */
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include "ed_api.h"
#include "ed_app.h"
#include "ed_jobs.h"
#include "ed_log.h"
#include "ed_metrics.h"
#include "ed_models.h"
#include "ecgprune/ep_model.h"

/* Seconds SIGTERM may take before running jobs are abandoned (and marked
 * queued); below the unit's TimeoutStopSec (30 s). */
#define STOP_DEADLINE_S 20

typedef struct ed_main {
    ed_app app;
    int argc;
    char **argv;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t watchdog, stop_check;
    uint64_t stop_started_ns;
} ed_main;

/* ---- stopping --------------------------------------------------------- */

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish_stop(ed_main *m)
{
    ed_app *app = &m->app;

    close_handle((uv_handle_t *)&m->stop_check);
    close_handle((uv_handle_t *)&m->watchdog);
    close_handle((uv_handle_t *)&m->sigterm);
    close_handle((uv_handle_t *)&m->sigint);
    close_handle((uv_handle_t *)&m->sighup);
    ed_http_stop(app->http);
    app->http = NULL;
    ed_jobs_free(app);
}

/* Every 100 ms after SIGTERM: done when no job, inference or upload is on
 * the pool and the connections are served, or when the deadline passed. */
static void on_stop_check(uv_timer_t *t)
{
    ed_main *m = t->data;
    ed_app *app = &m->app;
    double waited = (double)(ed_http_now_ns() - m->stop_started_ns) / 1e9;
    int busy = ed_jobs_running(app) > 0 || app->infer_in_flight > 0 ||
               app->uploads_in_flight > 0;

    if (!busy && (ed_http_connections(app->http) == 0 || waited > 5)) {
        ed_log(ED_LOG_INFO, "stopped", "waited_s=%.1f", waited);
        finish_stop(m);
        return;
    }
    if (waited > STOP_DEADLINE_S) {
        /* Jobs that did not reach a round boundary in time: record them as
         * queued and leave; their workers die with the process.
         * Limitation: an inference or upload still on the pool dies too,
         * and its client gets no answer (the log line counts them). */
        ed_jobs_abandon(app);
        ed_log(ED_LOG_WARN, "stop_deadline", "running_jobs=%d "
               "inference_dropped=%d uploads_dropped=%d",
               ed_jobs_running(app), app->infer_in_flight,
               app->uploads_in_flight);
        ed_store_close(app->store);
        ed_log_close();
        _exit(0);
    }
}

static void begin_stop(ed_main *m, const char *why)
{
    ed_app *app = &m->app;

    if (app->stopping)
        return;
    app->stopping = 1;
    app->ready = 0;
    sd_notify(0, "STOPPING=1");
    ed_log(ED_LOG_INFO, "stopping", "signal=%s running_jobs=%d "
           "inference_in_flight=%d uploads_in_flight=%d", why,
           ed_jobs_running(app), app->infer_in_flight,
           app->uploads_in_flight);
    ed_http_quiesce(app->http);
    ed_jobs_shutdown(app);
    m->stop_started_ns = ed_http_now_ns();
    uv_timer_start(&m->stop_check, on_stop_check, 0, 100);
}

/* Days before its end from which a certificate is warned of. */
#define ED_TLS_WARN_DAYS 30

/* A warning about the TLS certificate's end, when it is near or past:
 * 1 with it in buf, else 0. */
static int tls_advice(const ed_config *cfg, char *buf, size_t size)
{
    time_t end, now = time(NULL);
    struct tm tm;
    char date[32];
    double days;

    if (!cfg->tls_cert[0] || ed_http_tls_expiry(cfg->tls_cert, &end))
        return 0;
    days = difftime(end, now) / 86400.0;
    if (days > ED_TLS_WARN_DAYS)
        return 0;
    gmtime_r(&end, &tm);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm);
    if (days < 0)
        snprintf(buf, size, "tls.cert %.100s expired on %s: clients that "
                 "check it refuse the connection; renew it", cfg->tls_cert,
                 date);
    else
        snprintf(buf, size, "tls.cert %.100s expires on %s, in %.0f days; "
                 "renew it before then", cfg->tls_cert, date, days);
    return 1;
}

/* The warnings about settings an administrator should hear about, for
 * the log at start and for --check-config: how many. */
#define ED_ADVICE_MAX 5
static int collect_advice(const ed_config *cfg,
                          char advice[ED_ADVICE_MAX][ED_CONFIG_ADVICE_MAX])
{
    int n = ed_config_advice(cfg, advice, ED_ADVICE_MAX - 1);

    return n + tls_advice(cfg, advice[n], ED_CONFIG_ADVICE_MAX);
}

/* One warning per setting an administrator should hear about. */
static void log_advice(const ed_config *cfg)
{
    char advice[ED_ADVICE_MAX][ED_CONFIG_ADVICE_MAX];
    char quoted[ED_CONFIG_ADVICE_MAX + 16];
    int i, n = collect_advice(cfg, advice);

    for (i = 0; i < n; i++)
        ed_log(ED_LOG_WARN, "config_advice", "advice=%s",
               ed_log_quote(quoted, sizeof quoted, advice[i]));
}

/* A setting the reload read but cannot apply, said once in the log so
 * that an operator does not believe it took effect. */
static void log_needs_restart(const ed_config *cur, const ed_config *next)
{
    const char *changed[8];
    int i, n = 0;

    if (strcmp(cur->listen_addr, next->listen_addr) ||
        cur->port != next->port)
        changed[n++] = "listen";
    if (strcmp(cur->data_dir, next->data_dir))
        changed[n++] = "data_dir";
    if (cur->workers != next->workers)
        changed[n++] = "workers";
    /* max_running_jobs is bounded by workers, so it waits for them. */
    if (cur->workers != next->workers &&
        cur->max_running_jobs != next->max_running_jobs)
        changed[n++] = "limits.max_running_jobs";
    if (cur->max_connections_per_ip != next->max_connections_per_ip)
        changed[n++] = "limits.max_connections_per_ip";
    if (strcmp(cur->preload, next->preload))
        changed[n++] = "preload";
    if (strcmp(cur->log_file, next->log_file))
        changed[n++] = "log.file";
    if (strcmp(cur->tls_cert, next->tls_cert) ||
        strcmp(cur->tls_key, next->tls_key))
        changed[n++] = "tls";
    for (i = 0; i < n; i++)
        ed_log(ED_LOG_WARN, "reload_ignored", "setting=%s reason=\"takes "
               "effect at restart\"", changed[i]);
}

/* SIGHUP: reopen the log and re-read the settings that can change
 * without a restart (tokens, log level, limits, inference records).  The
 * listening address, data directory, pool size, log file and TLS files
 * need a restart; a change to them is logged as ignored. */
static void reload(ed_main *m)
{
    ed_config *cur = &m->app.cfg;
    ed_config next;
    char err[1024], quoted[1100];

    if (ed_log_reopen())
        ed_log(ED_LOG_ERROR, "log_reopen_failed", "file=%s", cur->log_file);
    if (ed_config_from_args(&next, m->argc, m->argv, err, sizeof err)) {
        ed_log(ED_LOG_ERROR, "reload_failed", "reason=%s",
               ed_log_quote(quoted, sizeof quoted, err));
        return;
    }
    log_needs_restart(cur, &next);
    memcpy(cur->tokens, next.tokens, sizeof cur->tokens);
    cur->n_tokens = next.n_tokens;
    cur->log_level = next.log_level;
    cur->max_body_bytes = next.max_body_bytes;
    cur->max_pending_bytes = next.max_pending_bytes;
    cur->max_samples = next.max_samples;
    cur->max_job_bytes = next.max_job_bytes;
    cur->keep_inferences = next.keep_inferences;
    if (next.workers == cur->workers)
        cur->max_running_jobs = next.max_running_jobs;
    ed_log_set_level(cur->log_level);
    ed_log(ED_LOG_INFO, "reloaded", "tokens=%d log_level=%s "
           "max_body_bytes=%lld max_pending_bytes=%lld max_samples=%lld "
           "max_job_bytes=%lld max_running_jobs=%d", cur->n_tokens,
           ed_log_level_name(cur->log_level), (long long)cur->max_body_bytes,
           (long long)cur->max_pending_bytes, (long long)cur->max_samples,
           (long long)cur->max_job_bytes, cur->max_running_jobs);
    log_advice(cur);
}

static void on_signal(uv_signal_t *s, int signum)
{
    ed_main *m = s->data;

    if (signum == SIGHUP) {
        reload(m);
        return;
    }
    begin_stop(m, signum == SIGTERM ? "TERM" : "INT");
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
}

/* ---- start-up --------------------------------------------------------- */

/* The --preload file, a regular file, whole into *buf (malloc'd): 0, or
 * -1 with the reason in why. */
static int read_model_file(const char *path, unsigned char **buf, size_t *n,
                           char *why, size_t size)
{
    FILE *f;
    long len = 0;

    *buf = NULL;
    if (ed_config_input_file(path, "preload", why, size))
        return -1;
    f = fopen(path, "rb");
    if (!f) {
        snprintf(why, size, "preload %s: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) || (len = ftell(f)) <= 0 ||
        fseek(f, 0, SEEK_SET) || !(*buf = malloc((size_t)len)) ||
        fread(*buf, 1, (size_t)len, f) != (size_t)len) {
        snprintf(why, size, "preload %s: %s", path,
                 len == 0 ? "the file is empty" : "cannot be read");
        free(*buf);
        *buf = NULL;
        fclose(f);
        return -1;
    }
    fclose(f);
    *n = (size_t)len;
    return 0;
}

/* The preloaded model is stored once (found again by its bytes), under
 * the name of its file without directory or suffix. */
static int preload(ed_app *app)
{
    unsigned char *buf = NULL;
    char msg[ED_PATH_MAX + 800], name[65], quoted[1200], qfile[300];
    char sha[65] = "";
    ed_model_check check;
    const char *base;
    size_t n = 0;
    int found = 0, rc = -1;
    int64_t id = 0;

    memset(&check, 0, sizeof check);
    if (read_model_file(app->cfg.preload, &buf, &n, msg, sizeof msg))
        goto failed;

    /* A model stored already is not checked again: the checks of an
     * upload may have grown since it was stored. */
    ed_models_sha256(buf, n, sha);
    id = ed_store_int(app->store, &found, "SELECT id FROM models WHERE "
                      "sha256 = ? ORDER BY id LIMIT 1", "t", sha);
    if (found) {
        ed_log(ED_LOG_INFO, "preload_present", "model_id=%lld sha256=%s",
               (long long)id, sha);
        rc = 0;
        goto out;
    }

    /* Checked as an upload is, and named after its file. */
    ed_api_models_check(buf, n, &check);
    base = strrchr(app->cfg.preload, '/');
    snprintf(name, sizeof name, "%.64s", base ? base + 1 : app->cfg.preload);
    if (strchr(name, '.'))
        *strchr(name, '.') = '\0';
    if (ed_api_models_insert(app, name[0] ? name : "default", buf, n,
                             &check, 0, 0, &id, msg, sizeof msg))
        goto failed;
    ed_log(ED_LOG_INFO, "preload_stored", "model_id=%lld sha256=%s",
           (long long)id, sha);
    rc = 0;
    goto out;
failed:
    ed_log(ED_LOG_ERROR, "preload_failed", "file=%s reason=%s",
           ed_log_value(qfile, sizeof qfile, app->cfg.preload),
           ed_log_quote(quoted, sizeof quoted, msg));
out:
    ed_api_models_check_free(&check);
    free(buf);
    return rc;
}

static int write_port_file(const char *path, int port)
{
    char tmp[ED_PATH_MAX + 8];
    FILE *f;

    /* temp + rename: a reader never sees a half-written number */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* The store's database file, if there is one, must open for writing:
 * SQLite would open it read-only without a word. */
static int database_writable(const char *dir, char *why, size_t size)
{
    char path[ED_PATH_MAX + 32];
    int fd;

    snprintf(path, sizeof path, "%s/" ED_STORE_DB_FILE, dir);
    fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    if (errno == ENOENT)
        return 1;
    snprintf(why, size, "%s cannot be opened for writing: %s", path,
             strerror(errno));
    return 0;
}

/* Whether the data directory exists as a writable directory, or can be
 * created: tried for real (and removed again), since access() says yes to
 * root everywhere, /proc included. */
static int data_dir_usable(const char *dir, char *why, size_t size)
{
    struct stat st;

    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(why, size, "%s exists and is not a directory", dir);
            return 0;
        }
        if (access(dir, W_OK | X_OK) != 0) {
            snprintf(why, size, "%s is not writable", dir);
            return 0;
        }
        return database_writable(dir, why, size);
    }
    if (mkdir(dir, 0700) != 0) {
        snprintf(why, size, "%s does not exist and cannot be created: %s",
                 dir, strerror(errno));
        return 0;
    }
    rmdir(dir);
    return 1;
}

/* Whether the preloaded model would be stored: it must load and pass the
 * checks of an upload (ed_api_models_check). */
static int preload_usable(const char *path, char *why, size_t size)
{
    unsigned char *buf;
    ed_model_check check;
    size_t n;
    int ok;

    if (read_model_file(path, &buf, &n, why, size))
        return 0;
    ed_api_models_check(buf, n, &check);
    ok = check.status == 0;
    if (!ok)
        snprintf(why, size, "preload %s: %s", path, check.msg);
    ed_api_models_check_free(&check);
    free(buf);
    return ok;
}

/* --check-config: every file the settings name must be usable as the
 * daemon will use it: the data directory, the log file, the TLS pair,
 * the preloaded model.  Limitation: the listening address is not tried
 * (binding it here would race the daemon it checks for). */
static int check_config(const ed_config *cfg)
{
    char why[ED_PATH_MAX * 2 + 800];
    char advice[ED_ADVICE_MAX][ED_CONFIG_ADVICE_MAX];
    int bad = 0, i, n_advice, lowered;
    int v6 = strchr(cfg->listen_addr, ':') != NULL;

    if (!data_dir_usable(cfg->data_dir, why, sizeof why) ||
        ed_store_dir_free(cfg->data_dir, why, sizeof why) ||
        ed_store_check_dir(cfg->data_dir, why, sizeof why)) {
        fprintf(stderr, "ecgpruned: data_dir: %s\n", why);
        bad = 1;
    }
    if (cfg->log_file[0] && ed_config_log_file(cfg->log_file, why,
                                               sizeof why)) {
        fprintf(stderr, "ecgpruned: log.file: %s\n", why);
        bad = 1;
    }
    if (cfg->tls_cert[0] &&
        ed_http_check_tls(cfg->tls_cert, cfg->tls_key, why, sizeof why)) {
        fprintf(stderr, "ecgpruned: %s\n", why);
        bad = 1;
    }
    if (cfg->preload[0] && !preload_usable(cfg->preload, why, sizeof why)) {
        fprintf(stderr, "ecgpruned: %s\n", why);
        bad = 1;
    }
    if (bad)
        return 1;
    lowered = cfg->max_running_jobs_asked != cfg->max_running_jobs;
    if (lowered && cfg->workers > 1)
        printf("ecgpruned: max_running_jobs %d lowered to %d: one of the %d "
               "workers is kept for inference\n",
               cfg->max_running_jobs_asked, cfg->max_running_jobs,
               cfg->workers);
    else if (lowered)
        printf("ecgpruned: max_running_jobs %d lowered to 1: the only "
               "worker runs one job at a time\n",
               cfg->max_running_jobs_asked);
    n_advice = collect_advice(cfg, advice);
    for (i = 0; i < n_advice; i++)
        printf("ecgpruned: warning: %s\n", advice[i]);
    printf("ecgpruned: configuration ok: listen %s%s%s:%d, data_dir %s, "
           "workers %d, max_running_jobs %d, max_body_bytes %lld, "
           "max_pending_bytes %lld, max_samples %lld, max_job_bytes %lld, "
           "max_connections_per_ip %lld, tokens %d, tls %s, log %s%s%s%s%s\n",
           v6 ? "[" : "", cfg->listen_addr, v6 ? "]" : "", cfg->port,
           cfg->data_dir, cfg->workers,
           cfg->max_running_jobs, (long long)cfg->max_body_bytes,
           (long long)cfg->max_pending_bytes, (long long)cfg->max_samples,
           (long long)cfg->max_job_bytes,
           (long long)cfg->max_connections_per_ip, cfg->n_tokens,
           cfg->tls_cert[0] ? "on" : "off",
           ed_log_level_name(cfg->log_level), cfg->log_file[0] ? " to " : "",
           cfg->log_file, cfg->preload[0] ? ", preload " : "", cfg->preload);
    return 0;
}

static void start_handles(ed_main *m)
{
    ed_app *app = &m->app;
    uint64_t usec = 0;

    uv_signal_init(app->loop, &m->sigterm);
    uv_signal_init(app->loop, &m->sigint);
    uv_signal_init(app->loop, &m->sighup);
    m->sigterm.data = m->sigint.data = m->sighup.data = m;
    uv_signal_start(&m->sigterm, on_signal, SIGTERM);
    uv_signal_start(&m->sigint, on_signal, SIGINT);
    uv_signal_start(&m->sighup, on_signal, SIGHUP);
    uv_timer_init(app->loop, &m->stop_check);
    m->stop_check.data = m;

    /* Watchdog pings at half the interval systemd asks for. */
    uv_timer_init(app->loop, &m->watchdog);
    if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000)
        uv_timer_start(&m->watchdog, on_watchdog, usec / 2000, usec / 2000);
}

/* The store, the model cache and the job table, with the jobs a previous
 * run left behind recovered; a failure is reported on stderr (and the
 * log where there is more to say) before 1 is returned. */
static int open_state(ed_app *app)
{
    char err[1024], quoted[1100];
    int rc;

    if ((rc = uv_mutex_init(&app->json_lock)) != 0) {
        fprintf(stderr, "ecgpruned: mutex: %s\n", uv_strerror(rc));
        return 1;
    }
    if (ed_store_open(app->cfg.data_dir, &app->store, err, sizeof err)) {
        ed_log(ED_LOG_ERROR, "store_failed", "reason=%s",
               ed_log_quote(quoted, sizeof quoted, err));
        fprintf(stderr, "ecgpruned: %s\n", err);
        return 1;
    }
    if (ed_models_create(&app->models) || ed_jobs_create(app)) {
        fprintf(stderr, "ecgpruned: out of memory\n");
        return 1;
    }
    if (ed_jobs_recover(app)) {
        ed_log(ED_LOG_ERROR, "store_failed", "reason=\"cannot recover the "
               "jobs of the last run: %s\"", ed_store_errmsg(app->store));
        fprintf(stderr, "ecgpruned: cannot recover the jobs of the last "
                "run (%s); is another process holding the database?\n",
                ed_store_errmsg(app->store));
        return 1;
    }
    if (app->cfg.preload[0] && preload(app)) {
        fprintf(stderr, "ecgpruned: --preload %s failed (see log)\n",
                app->cfg.preload);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static ed_main m;
    ed_app *app = &m.app;
    char err[1024], workers[16], quoted[1100], qfile[300];
    int port = 0;

    /* Configuration. */
    m.argc = argc;
    m.argv = argv;
    if (ed_config_from_args(&app->cfg, argc, argv, err, sizeof err)) {
        fprintf(stderr, "ecgpruned: %s (see ecgpruned --help)\n", err);
        return 2;
    }
    if (app->cfg.show_help) {
        ed_config_usage(stdout);
        return 0;
    }
    if (app->cfg.show_version) {
        printf("ecgpruned %s\n", ECGPRUNE_VERSION);
        return 0;
    }
    if (app->cfg.check_only)
        return check_config(&app->cfg);

    /* Threads: the pool size must be set before libuv starts its pool;
     * BLAS runs single-threaded inside each pool worker so that workers
     * times BLAS threads never exceeds the workers configured. */
    snprintf(workers, sizeof workers, "%d", app->cfg.workers);
    setenv("UV_THREADPOOL_SIZE", workers, 1);
    openblas_set_num_threads(1);
    signal(SIGPIPE, SIG_IGN);
    /* Past a file-size limit (ulimit -f) a write fails with EFBIG, which
     * SQLite reports, instead of killing the daemon mid-request. */
    signal(SIGXFSZ, SIG_IGN);

    if (app->cfg.log_file[0] &&
        ed_config_log_file(app->cfg.log_file, err, sizeof err)) {
        fprintf(stderr, "ecgpruned: log.file: %s\n", err);
        return 1;
    }
    if (ed_log_open(app->cfg.log_file, app->cfg.log_level)) {
        fprintf(stderr, "ecgpruned: cannot open log file %s: %s\n",
                app->cfg.log_file, strerror(errno));
        return 1;
    }

    /* Store, model cache, jobs left behind by a previous run. */
    app->loop = uv_default_loop();
    if (open_state(app))
        return 1;

    /* HTTP, then readiness. */
    if (ed_http_start(app->loop, &app->cfg, ed_api_dispatch, app,
                      &app->http, &port, err, sizeof err)) {
        ed_log(ED_LOG_ERROR, "listen_failed", "reason=%s",
               ed_log_quote(quoted, sizeof quoted, err));
        fprintf(stderr, "ecgpruned: %s\n", err);
        return 1;
    }
    if (app->cfg.port_file[0] && write_port_file(app->cfg.port_file, port))
        ed_log(ED_LOG_ERROR, "port_file_failed", "file=%s reason=%s",
               ed_log_value(qfile, sizeof qfile, app->cfg.port_file),
               ed_log_quote(quoted, sizeof quoted, strerror(errno)));
    start_handles(&m);
    app->ready = 1;
    ed_log(ED_LOG_INFO, "listening", "addr=%s port=%d data_dir=%s "
           "workers=%d max_running_jobs=%d tls=%d schema=%d pid=%d",
           app->cfg.listen_addr, port, app->cfg.data_dir, app->cfg.workers,
           app->cfg.max_running_jobs, app->cfg.tls_cert[0] != '\0',
           ed_store_schema_version(app->store), (int)getpid());
    log_advice(&app->cfg);
    sd_notifyf(0, "READY=1\nSTATUS=listening on %s port %d",
               app->cfg.listen_addr, port);
    ed_jobs_kick(app);

    uv_run(app->loop, UV_RUN_DEFAULT);

    /* Everything has returned: close the store. */
    uv_loop_close(app->loop);
    uv_mutex_destroy(&app->json_lock);
    ed_models_free(app->models);
    ed_store_close(app->store);
    ed_metrics_free();
    ed_log_close();
    return 0;
}
