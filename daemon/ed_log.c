/*
 * ed_log.c - key=value event lines to a reopenable file or stderr.
 */
#include "ed_log.h"
#include "ed_utf8.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Process-wide log state: the daemon has exactly one log. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;
static char log_path[1024];
static atomic_int log_min = ED_LOG_INFO;   /* read without the lock */

int ed_log_level_from_name(const char *name, ed_log_level *out)
{
    int i;

    for (i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (ed_log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *ed_log_level_name(ed_log_level level)
{
    return level_names[level];
}

int ed_log_open(const char *path, ed_log_level level)
{
    FILE *f = NULL;

    if (path && path[0]) {
        f = fopen(path, "a");
        if (!f)
            return -1;
        setvbuf(f, NULL, _IOLBF, 0);
    }
    pthread_mutex_lock(&log_lock);
    if (log_file)
        fclose(log_file);
    log_file = f;
    snprintf(log_path, sizeof log_path, "%s", path ? path : "");
    atomic_store(&log_min, (int)level);
    pthread_mutex_unlock(&log_lock);
    return 0;
}

int ed_log_reopen(void)
{
    FILE *f;
    int rc = 0;

    pthread_mutex_lock(&log_lock);
    if (log_path[0]) {
        f = fopen(log_path, "a");
        if (f) {
            setvbuf(f, NULL, _IOLBF, 0);
            if (log_file)
                fclose(log_file);
            log_file = f;
        } else {
            rc = -1;   /* keep writing to the old file */
        }
    }
    pthread_mutex_unlock(&log_lock);
    return rc;
}

void ed_log_set_level(ed_log_level level)
{
    atomic_store(&log_min, (int)level);
}

void ed_log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_file)
        fclose(log_file);
    log_file = NULL;
    log_path[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

void ed_log(ed_log_level level, const char *event, const char *fmt, ...)
{
    char line[4096];
    struct timeval tv;
    struct tm tm;
    size_t len;
    va_list ap;

    if ((int)level < atomic_load(&log_min))
        return;

    /* Timestamp in UTC with milliseconds, then the fixed keys. */
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    len = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(line + len, sizeof line - len,
                            ".%03ldZ level=%s event=%s",
                            (long)(tv.tv_usec / 1000), level_names[level],
                            event);
    if (fmt && len < sizeof line - 1) {
        line[len++] = ' ';
        va_start(ap, fmt);
        vsnprintf(line + len, sizeof line - len, fmt, ap);
        va_end(ap);
    }

    pthread_mutex_lock(&log_lock);
    fprintf(log_file ? log_file : stderr, "%s\n", line);
    pthread_mutex_unlock(&log_lock);
}

/* Log lines are UTF-8 text for whatever ships them: a byte that is not
 * part of a whole character (a path of "%ff") is quoted as '?', controls
 * and DEL as blanks, so no client can split or garble a line. */
const char *ed_log_value(char *buf, size_t size, const char *s)
{
    const char *p;
    size_t n;

    for (p = s; *p; p += n) {
        n = ed_utf8_length((const unsigned char *)p);
        if (n == 0 || (unsigned char)*p <= ' ' || *p == '"' || *p == '=' ||
            *p == '\\' || *p == 0x7f)
            return ed_log_quote(buf, size, s);
    }
    return s;
}

const char *ed_log_quote(char *buf, size_t size, const char *s)
{
    size_t o = 0;

    if (size < 3) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; s && *s && o + 3 < size; s++) {
        unsigned char c = (unsigned char)*s;
        size_t n = ed_utf8_length((const unsigned char *)s);

        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            buf[o++] = ' ';
        } else if (n == 0) {
            buf[o++] = '?';
        } else if (n > 1) {
            /* A whole character or nothing: the end of the buffer must
             * not cut one in two. */
            if (o + n + 2 > size)
                break;
            memcpy(buf + o, s, n);
            o += n;
            s += n - 1;
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
