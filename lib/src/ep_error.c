/*
 * ep_error.c - error codes and caller-owned error messages.
 */
#include "ecgprune/ep_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ep_strerror(int code)
{
    switch (code) {
    case EP_OK: return "success";
    case EP_EINVAL: return "invalid argument";
    case EP_ENOMEM: return "out of memory";
    case EP_EIO: return "input/output error";
    case EP_EFORMAT: return "malformed input";
    case EP_ECHECKSUM: return "checksum mismatch";
    case EP_ERANGE: return "value out of range";
    case EP_ECANCELED: return "cancelled";
    case EP_ENOTFOUND: return "not found";
    case EP_ENUMERIC: return "numerical failure";
    default: return "unknown error";
    }
}

int ep_error_set(ep_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int ep_error_prefix(ep_error *err, const char *fmt, ...)
{
    char head[EP_ERROR_MSG_MAX];
    char tail[EP_ERROR_MSG_MAX];
    va_list ap;

    if (err == NULL)
        return EP_OK;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(tail, err->msg, sizeof tail);
    /* A message longer than the buffer is cut at its end, never overrun. */
    size_t n = strlen(head);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, head, n);
    memcpy(err->msg + n, ": ", 2);
    n += 2;
    size_t rest = strnlen(tail, sizeof tail - 1);
    if (rest > sizeof err->msg - 1 - n)
        rest = sizeof err->msg - 1 - n;
    memcpy(err->msg + n, tail, rest);
    err->msg[n + rest] = '\0';
    return err->code;
}

void ep_error_clear(ep_error *err)
{
    if (err == NULL)
        return;
    err->code = EP_OK;
    err->msg[0] = '\0';
}
