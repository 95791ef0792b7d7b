/*
 * ep_model.h - model files: safetensors with the architecture inside.
 *
 * A model file is a safetensors file (8-byte little-endian header length,
 * a JSON header, then raw little-endian float32 tensors).  The header's
 * "__metadata__" holds "format": "ecgprune-1" and "architecture": the
 * graph as a JSON string (layers, channels, kernels, wavelet, sampling
 * rate, window, classes, preprocessing).  Tensor names follow PyTorch:
 * LAYER.weight, LAYER.bias for convolutions; LAYER.weight, LAYER.bias,
 * LAYER.running_mean, LAYER.running_var for batch normalisation.
 * Writing the same network always gives the same bytes.
 */
#ifndef ECGPRUNE_EP_MODEL_H
#define ECGPRUNE_EP_MODEL_H

#include <stddef.h>

#include "ecgprune/ep_error.h"
#include "ecgprune/ep_net.h"

#ifdef __cplusplus
extern "C" {
#endif

int ep_model_load(const char *path, ep_net **out, ep_error *err);
int ep_model_load_buffer(const unsigned char *buf, size_t len,
                         ep_net **out, ep_error *err);

/* Writes to a temporary file in the same directory, then renames it, so a
 * reader never sees a half-written model.  path must be a new name in a
 * writable directory or an existing regular file; a symbolic link is
 * followed and its final target replaced, so the link stays a link.
 * Anything else (a directory, FIFO or device, a dangling link, "") is
 * refused with EP_EINVAL and left as it is. */
int ep_model_save(const ep_net *net, const char *path, ep_error *err);

/* Write len bytes to path as ep_model_save writes a model (same rules,
 * same temporary file and rename); for other output files such as the
 * kept-channel masks of a pruning run. */
int ep_model_write_file(const char *path, const unsigned char *buf,
                        size_t len, ep_error *err);

/* EP_OK if ep_model_save could write path now: the checks of the save
 * without writing, so that a caller can refuse an unusable output path
 * before a long run.  EP_EINVAL or EP_EIO with a message naming path. */
int ep_model_check_output(const char *path, ep_error *err);

/* Serialise to a malloc'd buffer the caller frees. */
int ep_model_save_buffer(const ep_net *net, unsigned char **buf,
                         size_t *len, ep_error *err);

/* The architecture as a JSON text (malloc'd, caller frees). */
int ep_model_architecture_json(const ep_net *net, char **json,
                               ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
