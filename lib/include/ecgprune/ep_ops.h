/*
 * ep_ops.h - the numerical kernels behind the layers: 1-D convolution by
 * im2col + sgemm, per-channel discrete wavelet transforms, softmax.
 *
 * Kernels work on one batch item at a time and never allocate: callers pass
 * a work buffer of the size the matching *_work_floats() function returns.
 */
#ifndef ECGPRUNE_EP_OPS_H
#define ECGPRUNE_EP_OPS_H

#include <stddef.h>

#include "ecgprune/ep_error.h"
#include "ecgprune/ep_net.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Geometry of one convolution on an input of in_len samples. */
typedef struct ep_conv_geom {
    int in_ch, out_ch, kernel, stride, dilation;
    int pad_left, pad_right;
    int in_len, out_len;
} ep_conv_geom;

/* padding is EP_PAD_SAME or a count of zeros added on each side. */
int ep_conv_geom_init(ep_conv_geom *g, int in_ch, int out_ch, int kernel,
                      int stride, int dilation, int padding, int in_len,
                      ep_error *err);

/* Floats of work space ep_conv_forward needs (the im2col matrix). */
size_t ep_conv_work_floats(const ep_conv_geom *g);

/* col[(c*kernel + k) * out_len + t] = x[c][t*stride + k*dilation - pad] */
void ep_conv_im2col(const ep_conv_geom *g, const float *x, float *col);

/* The adjoint of ep_conv_im2col, for backward passes: adds every entry of
 * col back onto the input sample it was read from (dx += im2col^T col;
 * padding entries are dropped).  dx is in_ch x in_len. */
void ep_conv_col2im(const ep_conv_geom *g, const float *col, float *dx);

/* y[out_ch][out_len] = w * x + b (bias may be NULL). */
void ep_conv_forward(const ep_conv_geom *g, const float *x, const float *w,
                     const float *bias, float *y, float *work);

/* Analysis and synthesis low-pass filters of a wavelet (orthogonal, so the
 * high-pass filters follow by the quadrature-mirror rule). */
int ep_wavelet_filter(ep_wavelet w, const double **lo, int *taps);

/*
 * Per-channel single-level DWT with periodic extension: x is channels x len
 * (len even), y is 2*channels x len/2, approximations first.  Perfect
 * reconstruction: ep_idwt(ep_dwt(x)) == x up to rounding.  The transform
 * is orthogonal, so its backward pass is the inverse transform of the
 * output gradient, and the inverse's backward pass is the forward one.
 */
void ep_dwt_forward(ep_wavelet w, int channels, int len, const float *x,
                    float *y);
/* Inverse: x is 2*channels x half_len, y is channels x 2*half_len. */
void ep_dwt_inverse(ep_wavelet w, int channels, int half_len, const float *x,
                    float *y);

/* In-place softmax over channels at every time step: x is channels x len. */
void ep_softmax_channels(int channels, int len, float *x);

#ifdef __cplusplus
}
#endif

#endif
