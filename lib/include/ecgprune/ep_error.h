/*
 * ep_error.h - error codes and error messages of libecgprune.
 *
 * Every fallible call in the library returns an int: 0 on success or one of
 * the negative EP_E* codes below.  Calls that can say more also fill an
 * ep_error that the caller owns, with a message naming what was wrong and
 * where (file, line or byte offset, tensor name).  The library never prints
 * and never exits; turning an error into output is the caller's job.
 */
#ifndef ECGPRUNE_EP_ERROR_H
#define ECGPRUNE_EP_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    EP_OK = 0,
    EP_EINVAL = -1,     /* a parameter is out of its documented range */
    EP_ENOMEM = -2,     /* an allocation failed */
    EP_EIO = -3,        /* a file could not be opened, read or written */
    EP_EFORMAT = -4,    /* input is malformed, truncated or inconsistent */
    EP_ECHECKSUM = -5,  /* a checksum or first-value check failed */
    EP_ERANGE = -6,     /* a value does not fit the expected range */
    EP_ECANCELED = -7,  /* the caller asked to stop a long operation */
    EP_ENOTFOUND = -8,  /* a named item (signal, tensor, record) is absent */
    EP_ENUMERIC = -9    /* a numerical step failed (singular system, NaN) */
};

#define EP_ERROR_MSG_MAX 512

/* Caller-owned error detail.  code mirrors the returned status. */
typedef struct ep_error {
    int code;
    char msg[EP_ERROR_MSG_MAX];
} ep_error;

/* Short fixed description of a code, e.g. "malformed input". */
const char *ep_strerror(int code);

/*
 * Record an error in err (which may be NULL) and return code, so that a
 * caller can write `return ep_error_set(err, EP_EFORMAT, "...", ...);`.
 */
int ep_error_set(ep_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Put "prefix: " in front of an existing message (e.g. a file name). */
int ep_error_prefix(ep_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Reset err to "no error". */
void ep_error_clear(ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
