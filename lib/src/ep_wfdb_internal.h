/*
 * ep_wfdb_internal.h - what ep_wfdb.c and ep_annot.c share inside the
 * library and do not export.
 */
#ifndef ECGPRUNE_EP_WFDB_INTERNAL_H
#define ECGPRUNE_EP_WFDB_INTERNAL_H

#include <stddef.h>

#include "ecgprune/ep_error.h"

/* Read a whole file into a new buffer of *len bytes followed by a NUL
 * (so headers can be handed on as text).  A file of more than cap bytes
 * is an EP_ERANGE error, anything but a regular file (a directory, a
 * device, a FIFO) an EP_EIO error.  The caller frees *out. */
int ep_wfdb_read_file(const char *path, size_t cap, unsigned char **out,
                      size_t *len, ep_error *err);

#endif
