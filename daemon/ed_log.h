/*
 * ed_log.h - the daemon's event log: one line per event, key=value pairs,
 * e.g. "ts=2026-12-04T13:00:00.123Z level=info event=request id=7 ...".
 *
 * Lines go to a file (reopened on SIGHUP so that logrotate can move it) or
 * to stderr, where systemd's journal picks them up.  Safe to call from any
 * thread: a mutex keeps lines whole.
 */
#ifndef ED_LOG_H
#define ED_LOG_H

#include <stddef.h>

typedef enum ed_log_level {
    ED_LOG_DEBUG = 0,
    ED_LOG_INFO,
    ED_LOG_WARN,
    ED_LOG_ERROR
} ed_log_level;

/* Parse "debug", "info", "warn" or "error"; -1 if none of them. */
int ed_log_level_from_name(const char *name, ed_log_level *out);
const char *ed_log_level_name(ed_log_level level);

/* Start logging to path (NULL or "" for stderr) at the given level. */
int ed_log_open(const char *path, ed_log_level level);
/* Close and reopen the log file (SIGHUP); no-op for stderr. */
int ed_log_reopen(void);
void ed_log_set_level(ed_log_level level);
void ed_log_close(void);

/* Log `event` with further key=value pairs formatted by fmt (may be
 * NULL).  Values that may hold spaces must go through ed_log_quote. */
void ed_log(ed_log_level level, const char *event, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Write s as a double-quoted value into buf (escaping quotes, backslashes
 * and control characters, truncated to fit); returns buf. */
const char *ed_log_quote(char *buf, size_t size, const char *s);
/* s itself when it is a plain token (no space, quote, '=', backslash or
 * control character), else ed_log_quote(buf, size, s): so that a client
 * cannot forge keys in a log line through, say, a request path. */
const char *ed_log_value(char *buf, size_t size, const char *s);

#endif
