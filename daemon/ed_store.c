/*
 * ed_store.c - SQLite access of the daemon: opening with the right
 * pragmas, schema migration, and small statement helpers.
 */
#include "ed_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ed_log.h"
#include "ed_schema.h"

struct ed_store {
    sqlite3 *db;
    int lock_fd;        /* holds the data directory's lock; -1 if none */
    char last_error[256]; /* SQLite's message at the last failure: a later
                             call (a rollback) resets sqlite3_errmsg */
    int last_code;        /* its primary result code; 0 from the start of
                             the next statement or transaction */
    int purge_pending;    /* a log purge a reader held off, to retry */
};

/* How long a statement waits for another process's lock (the sqlite3
 * shell, a backup) before it fails with SQLITE_BUSY. */
#define ED_STORE_BUSY_MS 10000

const char *ed_store_errmsg(ed_store *s)
{
    return s->last_error[0] ? s->last_error : sqlite3_errmsg(s->db);
}

/* Keep and log SQLite's message for a failed statement. */
static void store_failed(ed_store *s, const char *event)
{
    snprintf(s->last_error, sizeof s->last_error, "%s",
             sqlite3_errmsg(s->db));
    s->last_code = sqlite3_errcode(s->db) & 0xff;
    ed_log(ED_LOG_ERROR, event, "error=\"%s\"", s->last_error);
}

void ed_store_now(char buf[32])
{
    struct timeval tv;
    struct tm tm;
    size_t n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 32 - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

/* Prepare sql and bind the parameters described by binds. */
static sqlite3_stmt *prepare_v(ed_store *s, const char *sql,
                               const char *binds, va_list ap)
{
    sqlite3_stmt *st = NULL;
    const char *t;
    const void *b;
    size_t n;
    int i, rc = SQLITE_OK;

    s->last_code = 0;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        store_failed(s, "sql_prepare");
        return NULL;
    }
    for (i = 0; binds && binds[i] && rc == SQLITE_OK; i++) {
        switch (binds[i]) {
        case 'i':
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
            break;
        case 'd':
            rc = sqlite3_bind_double(st, i + 1, va_arg(ap, double));
            break;
        case 't':
            t = va_arg(ap, const char *);
            rc = t ? sqlite3_bind_text(st, i + 1, t, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, i + 1);
            break;
        default:
            b = va_arg(ap, const void *);
            n = va_arg(ap, size_t);
            rc = sqlite3_bind_blob64(st, i + 1, b, n, SQLITE_STATIC);
            break;
        }
    }
    if (rc != SQLITE_OK) {
        store_failed(s, "sql_bind");    /* a blob past SQLite's limit */
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

int ed_store_exec(ed_store *s, const char *sql, const char *binds, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    int rc;

    va_start(ap, binds);
    st = prepare_v(s, sql, binds, ap);
    va_end(ap);
    if (!st)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        store_failed(s, "sql_exec");
        return -1;
    }
    return sqlite3_changes(s->db);
}

int64_t ed_store_last_id(ed_store *s)
{
    return sqlite3_last_insert_rowid(s->db);
}

/* One row as a JSON object; blobs are not part of any JSON answer. */
static json_t *row_object(sqlite3_stmt *st)
{
    json_t *o = json_object();
    int c, n = sqlite3_column_count(st);

    for (c = 0; c < n; c++) {
        const char *name = sqlite3_column_name(st, c);
        json_t *v;
        switch (sqlite3_column_type(st, c)) {
        case SQLITE_INTEGER:
            v = json_integer(sqlite3_column_int64(st, c));
            break;
        case SQLITE_FLOAT:
            v = json_real(sqlite3_column_double(st, c));
            break;
        case SQLITE_TEXT:
            v = json_string((const char *)sqlite3_column_text(st, c));
            break;
        case SQLITE_NULL:
            v = json_null();
            break;
        default:
            continue;
        }
        json_object_set_new(o, name, v ? v : json_null());
    }
    return o;
}

static json_t *rows_v(ed_store *s, int limit_one, int *found,
                      const char *sql, const char *binds, va_list ap)
{
    sqlite3_stmt *st = prepare_v(s, sql, binds, ap);
    json_t *arr;
    int rc;

    if (!st)
        return NULL;
    arr = json_array();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_array_append_new(arr, row_object(st));
        if (limit_one)
            break;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        store_failed(s, "sql_query");
        json_decref(arr);
        return NULL;
    }
    if (found)
        *found = json_array_size(arr) > 0;
    return arr;
}

json_t *ed_store_rows(ed_store *s, const char *sql, const char *binds, ...)
{
    json_t *arr;
    va_list ap;

    va_start(ap, binds);
    arr = rows_v(s, 0, NULL, sql, binds, ap);
    va_end(ap);
    return arr;
}

json_t *ed_store_row(ed_store *s, int *found, const char *sql,
                     const char *binds, ...)
{
    json_t *arr, *row;
    va_list ap;

    va_start(ap, binds);
    arr = rows_v(s, 1, found, sql, binds, ap);
    va_end(ap);
    if (!arr)
        return NULL;
    row = json_array_size(arr) ? json_incref(json_array_get(arr, 0))
                               : json_object();
    json_decref(arr);
    return row;
}

int64_t ed_store_int(ed_store *s, int *found, const char *sql,
                     const char *binds, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    int64_t v = 0;
    int rc;

    va_start(ap, binds);
    st = prepare_v(s, sql, binds, ap);
    va_end(ap);
    if (!st)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (found)
        *found = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? v : -1;
}

int ed_store_blob(ed_store *s, unsigned char **data, size_t *len,
                  const char *sql, const char *binds, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    int rc, result = 0;

    va_start(ap, binds);
    st = prepare_v(s, sql, binds, ap);
    va_end(ap);
    if (!st)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        const void *p = sqlite3_column_blob(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        *data = malloc(n + 1);   /* +1: text copies get a terminator */
        if (!*data) {
            result = -1;
        } else {
            memcpy(*data, p, n);
            (*data)[n] = '\0';
            *len = n;
            result = 1;
        }
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        result = -1;
    }
    sqlite3_finalize(st);
    return result;
}

int ed_store_busy(ed_store *s)
{
    return s->last_code == SQLITE_BUSY || s->last_code == SQLITE_LOCKED;
}

int ed_store_purge_log(ed_store *s)
{
    sqlite3_stmt *st;
    int busy = -1;

    /* Without waiting: a reader may hold its snapshot for minutes (a
     * backup), and the loop must not stall for the busy timeout. */
    sqlite3_busy_timeout(s->db, 0);
    if (sqlite3_prepare_v2(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", -1,
                           &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            busy = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_busy_timeout(s->db, ED_STORE_BUSY_MS);
    if (busy < 0) {
        store_failed(s, "wal_checkpoint");
        return -1;
    }
    if (busy && !s->purge_pending)
        ed_log(ED_LOG_WARN, "log_purge_waiting", "reason=\"a reader holds "
               "the database (a backup?); retried every second\"");
    if (!busy && s->purge_pending)
        ed_log(ED_LOG_INFO, "log_purged", NULL);
    s->purge_pending = busy != 0;
    return busy != 0;
}

void ed_store_tick(ed_store *s)
{
    if (s->purge_pending)
        ed_store_purge_log(s);
}

unsigned ed_store_http_status(ed_store *s)
{
    if (ed_store_busy(s))
        return 503;
    if (s->last_code == SQLITE_TOOBIG)
        return 413;
    if (s->last_code == SQLITE_FULL)
        return 507;
    return 500;
}

int ed_store_begin(ed_store *s)
{
    s->last_code = 0;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) ==
        SQLITE_OK)
        return 0;
    store_failed(s, "sql_begin");
    return -1;
}

int ed_store_commit(ed_store *s)
{
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    store_failed(s, "sql_commit");
    return -1;
}

void ed_store_rollback(ed_store *s)
{
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int ed_store_schema_version(ed_store *s)
{
    return (int)ed_store_int(s, NULL, "PRAGMA user_version", NULL);
}

/* Concatenate the lines of one schema file (malloc'd). */
static char *schema_text(const ed_schema_file *f)
{
    size_t n = 1, i;
    char *sql;

    for (i = 0; f->lines[i]; i++)
        n += strlen(f->lines[i]);
    sql = malloc(n);
    if (!sql)
        return NULL;
    sql[0] = '\0';
    for (i = 0; f->lines[i]; i++)
        strcat(sql, f->lines[i]);
    return sql;
}

/* One integer a statement gives, or -1 with SQLite's message in err. */
static int64_t db_int(sqlite3 *db, const char *sql, char *err, size_t es)
{
    sqlite3_stmt *st;
    int64_t v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (v < 0)
        snprintf(err, es, "%s", sqlite3_errmsg(db));
    return v;
}

/* The schema version of a database this daemon can bring up to date, or
 * -1 with the reason: not a database, a newer daemon's, another
 * program's (tables but no version). */
static int usable_version(sqlite3 *db, char *err, size_t es)
{
    char why[256];
    int64_t version = db_int(db, "PRAGMA user_version", why, sizeof why);
    int64_t objects;

    if (version < 0) {
        snprintf(err, es, "cannot read the database's schema version: %s",
                 why);
        return -1;
    }
    if (version > ed_schema_count) {
        snprintf(err, es, "database schema version %lld is newer than this "
                 "daemon's (%d)", (long long)version, ed_schema_count);
        return -1;
    }
    objects = version ? 0 : db_int(db, "SELECT count(*) FROM sqlite_master",
                                   why, sizeof why);
    if (objects != 0) {
        snprintf(err, es, "the database holds %lld tables or indexes but no "
                 "ecgpruned schema version: a database of another program?",
                 (long long)objects);
        return -1;
    }
    return (int)version;
}

/* "file:PATH?immutable=1", with the characters a URI gives a meaning
 * percent-encoded. */
static void uri_path(char *out, size_t size, const char *path)
{
    size_t n = (size_t)snprintf(out, size, "file:");

    for (; *path && n + 4 < size; path++) {
        if (*path == '%' || *path == '?' || *path == '#')
            n += (size_t)snprintf(out + n, size - n, "%%%02X",
                                  (unsigned char)*path);
        else
            out[n++] = *path;
    }
    snprintf(out + n, size - n, "?immutable=1");
}

int ed_store_check_dir(const char *data_dir, char *err, size_t es)
{
    char path[1200], why[512], uri[3700];
    struct stat st;
    sqlite3 *db = NULL;
    int rc;

    snprintf(path, sizeof path, "%s/" ED_STORE_LOCK_FILE, data_dir);
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(err, es, "%s is not a regular file (the daemon writes its "
                 "pid there)", path);
        return -1;
    }
    snprintf(path, sizeof path, "%s/" ED_STORE_DB_FILE, data_dir);
    if (stat(path, &st) != 0)
        return 0;                       /* made at the first start */

    /* Immutable: no lock and no -shm or -wal file made, which run as root
     * would leave files the daemon's user cannot open. */
    uri_path(uri, sizeof uri, path);
    if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
                        NULL) != SQLITE_OK)
        snprintf(why, sizeof why, "%s", sqlite3_errmsg(db));
    rc = db ? usable_version(db, why, sizeof why) : -1;
    sqlite3_close(db);
    if (rc >= 0)
        return 0;
    snprintf(err, es, "%s: %s", path, why);
    return -1;
}

/* Apply every schema file newer than user_version, each in its own
 * transaction together with the user_version bump. */
static int migrate(ed_store *s, char *err, size_t es)
{
    int version = usable_version(s->db, err, es), i;
    char pragma[64];
    char *sql, *msg = NULL;

    if (version < 0)
        return -1;
    for (i = version; i < ed_schema_count; i++) {
        const ed_schema_file *f = &ed_schema_files[i];
        sql = schema_text(f);
        if (!sql || ed_store_begin(s)) {
            free(sql);
            snprintf(err, es, "schema %s: cannot start a transaction",
                     f->name);
            return -1;
        }
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d",
                 f->version);
        if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, pragma, NULL, NULL, &msg) != SQLITE_OK ||
            ed_store_commit(s)) {
            snprintf(err, es, "schema %s: %s", f->name,
                     msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            free(sql);
            ed_store_rollback(s);
            return -1;
        }
        free(sql);
        ed_log(ED_LOG_INFO, "schema_applied", "file=%s version=%d", f->name,
               f->version);
    }
    return 0;
}

/* The owner's pid in path (ecgpruned.lock), for a second daemon's
 * message; the lock itself is on the directory. */
static int write_pid_file(const char *path, char *err, size_t es)
{
    char pid[32];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
                            O_NOFOLLOW, 0600);

    snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (fd < 0 || write(fd, pid, strlen(pid)) != (ssize_t)strlen(pid)) {
        snprintf(err, es, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* One daemon to a data directory: a second would take over the first
 * one's running jobs as interrupted ones and both would store their
 * results.  The lock is flock(2) on the directory itself, which no file
 * deletion can undo and the kernel releases when the process dies, so a
 * crash leaves nothing to clean up; ecgpruned.lock holds the owner's pid
 * for the message.  Limitation: flock is advisory and not honoured across
 * some network file systems.  The lock is held while *fd_out is open. */
static int take_dir_lock(const char *data_dir, int *fd_out, char *err,
                         size_t es)
{
    char path[1200], pid[32] = "";
    int fd, e;
    FILE *f;

    fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, es, "data directory %s: %s", data_dir,
                 strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        *fd_out = fd;
        return 0;
    }

    /* Held: name the owner when its pid file says who it is. */
    e = errno;
    snprintf(path, sizeof path, "%s/" ED_STORE_LOCK_FILE, data_dir);
    f = fopen(path, "re");
    if (f) {
        pid[fread(pid, 1, sizeof pid - 1, f)] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        fclose(f);
    }
    close(fd);
    if (e == EWOULDBLOCK)
        snprintf(err, es, "data directory %s is in use by another "
                 "ecgpruned (pid %s); stop it first, or give this one "
                 "another --data-dir", data_dir, pid[0] ? pid : "?");
    else
        snprintf(err, es, "%s: cannot lock: %s", data_dir, strerror(e));
    return -1;
}

static int lock_data_dir(const char *data_dir, int *fd_out, char *err,
                         size_t es)
{
    char path[1200];
    int fd;

    if (take_dir_lock(data_dir, &fd, err, es))
        return -1;
    snprintf(path, sizeof path, "%s/" ED_STORE_LOCK_FILE, data_dir);
    if (write_pid_file(path, err, es)) {
        close(fd);
        return -1;
    }
    *fd_out = fd;
    return 0;
}

int ed_store_dir_free(const char *data_dir, char *err, size_t es)
{
    struct stat st;
    int fd;

    if (stat(data_dir, &st) != 0)
        return 0;               /* a directory still to be made is free */
    if (take_dir_lock(data_dir, &fd, err, es))
        return -1;
    close(fd);
    return 0;
}

int ed_store_open(const char *data_dir, ed_store **out, char *err,
                  size_t es)
{
    static const char *const pragmas =
        "PRAGMA journal_mode = WAL;"
        "PRAGMA synchronous = FULL;"      /* an acknowledged upload is on
                                             disk, even after power loss */
        "PRAGMA foreign_keys = ON;"
        "PRAGMA secure_delete = ON;";     /* deleted ECG is overwritten */
    char path[1200];
    char *msg = NULL;
    ed_store *s;

    /* The data directory is created if missing (not its parents). */
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, es, "data directory %s: %s", data_dir,
                 strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/" ED_STORE_DB_FILE, data_dir);
    s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, es, "out of memory");
        return -1;
    }
    s->lock_fd = -1;
    if (lock_data_dir(data_dir, &s->lock_fd, err, es)) {
        ed_store_close(s);
        return -1;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE |
                        SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, es, "%s: %s", path, sqlite3_errmsg(s->db));
        ed_store_close(s);
        return -1;
    }
    sqlite3_busy_timeout(s->db, ED_STORE_BUSY_MS);
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, es, "%s: %s", path, msg ? msg : "pragma failed");
        sqlite3_free(msg);
        ed_store_close(s);
        return -1;
    }
    /* SQLite opens a file it may not write read-only, without an error;
     * every upload would then fail with a 500. */
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        snprintf(err, es, "%s: the database file can only be read (check "
                 "its owner, mode and attributes): the daemon writes it",
                 path);
        ed_store_close(s);
        return -1;
    }
    if (migrate(s, err, es)) {
        ed_store_close(s);
        return -1;
    }

    /* A delete whose log purge a reader held off when the last run
     * stopped is finished now (or retried by ed_store_tick). */
    ed_store_purge_log(s);
    *out = s;
    return 0;
}

void ed_store_close(ed_store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
}
