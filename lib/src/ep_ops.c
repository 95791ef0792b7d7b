/*
 * ep_ops.c - numerical kernels of the layers: 1-D convolution as im2col
 * followed by one sgemm, single-level periodic DWT/IDWT per channel, and a
 * numerically stable softmax over channels.
 */
#include "ecgprune/ep_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Largest kernel, stride and dilation accepted; far above any ECG model,
 * they keep the geometry arithmetic inside int. */
#define EP_OPS_MAX_TAPS 4096

int ep_conv_geom_init(ep_conv_geom *g, int in_ch, int out_ch, int kernel,
                      int stride, int dilation, int padding, int in_len,
                      ep_error *err)
{
    long span, total;

    if (in_ch <= 0 || out_ch <= 0 || in_len <= 0)
        return ep_error_set(err, EP_EINVAL,
                            "conv: channels (%d in, %d out) and length %d "
                            "must be positive", in_ch, out_ch, in_len);
    if (kernel <= 0 || kernel > EP_OPS_MAX_TAPS || stride <= 0 ||
        stride > EP_OPS_MAX_TAPS || dilation <= 0 ||
        dilation > EP_OPS_MAX_TAPS)
        return ep_error_set(err, EP_EINVAL,
                            "conv: kernel %d, stride %d, dilation %d must "
                            "be in 1..%d", kernel, stride, dilation,
                            EP_OPS_MAX_TAPS);
    if (padding != EP_PAD_SAME && (padding < 0 || padding > EP_OPS_MAX_TAPS))
        return ep_error_set(err, EP_EINVAL,
                            "conv: padding %d must be 'same' or 0..%d",
                            padding, EP_OPS_MAX_TAPS);

    /* span: samples covered by the dilated kernel. */
    span = (long)dilation * (kernel - 1) + 1;
    g->in_ch = in_ch;
    g->out_ch = out_ch;
    g->kernel = kernel;
    g->stride = stride;
    g->dilation = dilation;
    g->in_len = in_len;

    if (padding == EP_PAD_SAME) {
        /* out_len = ceil(in_len / stride); the zeros needed to reach it
         * are split with the odd one on the right, as PyTorch does. */
        long out_len = ((long)in_len + stride - 1) / stride;

        total = (out_len - 1) * stride + span - in_len;
        if (total < 0)
            total = 0;
        g->pad_left = (int)(total / 2);
        g->pad_right = (int)(total - total / 2);
        g->out_len = (int)out_len;
        return EP_OK;
    }

    g->pad_left = padding;
    g->pad_right = padding;
    total = (long)in_len + 2L * padding - span;
    if (total < 0)
        return ep_error_set(err, EP_EINVAL,
                            "conv: kernel span %ld exceeds padded input "
                            "length %ld", span, (long)in_len + 2L * padding);
    g->out_len = (int)(total / stride + 1);
    return EP_OK;
}

size_t ep_conv_work_floats(const ep_conv_geom *g)
{
    return (size_t)g->in_ch * (size_t)g->kernel * (size_t)g->out_len;
}

/* True when the convolution reads x directly as its column matrix. */
static int conv_is_pointwise(const ep_conv_geom *g)
{
    return g->kernel == 1 && g->stride == 1 && g->pad_left == 0 &&
           g->out_len == g->in_len;
}

/* Columns t0..t1-1 of the im2col matrix, as a (in_ch*kernel) x (t1-t0)
 * row-major block. */
static void im2col_block(const ep_conv_geom *g, const float *x, int t0,
                         int t1, float *col)
{
    int width = t1 - t0, c, k, t;

    for (c = 0; c < g->in_ch; c++) {
        const float *xc = x + (size_t)c * g->in_len;

        for (k = 0; k < g->kernel; k++) {
            float *row = col + ((size_t)c * g->kernel + k) * width - t0;
            int offset = k * g->dilation - g->pad_left;

            /* t_lo..t_hi-1: output steps whose tap lands inside x; the
             * rest read padding zeros. */
            int t_lo = t0, t_hi = t1;

            while (t_lo < t1 && t_lo * g->stride + offset < 0)
                t_lo++;
            while (t_hi > t_lo &&
                   (t_hi - 1) * g->stride + offset >= g->in_len)
                t_hi--;
            for (t = t0; t < t_lo; t++)
                row[t] = 0.0f;
            if (g->stride == 1) {
                memcpy(row + t_lo, xc + t_lo + offset,
                       (size_t)(t_hi - t_lo) * sizeof *row);
            } else {
                for (t = t_lo; t < t_hi; t++)
                    row[t] = xc[t * g->stride + offset];
            }
            for (t = t_hi; t < t1; t++)
                row[t] = 0.0f;
        }
    }
}

void ep_conv_im2col(const ep_conv_geom *g, const float *x, float *col)
{
    im2col_block(g, x, 0, g->out_len, col);
}

void ep_conv_col2im(const ep_conv_geom *g, const float *col, float *dx)
{
    int c, k, t;

    for (c = 0; c < g->in_ch; c++) {
        float *xc = dx + (size_t)c * g->in_len;

        for (k = 0; k < g->kernel; k++) {
            const float *row = col + ((size_t)c * g->kernel + k) * g->out_len;
            int offset = k * g->dilation - g->pad_left;

            for (t = 0; t < g->out_len; t++) {
                int i = t * g->stride + offset;

                if (i >= 0 && i < g->in_len)
                    xc[i] += row[t];
            }
        }
    }
}

/*
 * Output columns per sgemm.  The column block of in_ch*kernel rows is
 * sized near 128 KiB so that it is still in cache when sgemm reads it, but
 * at least 256 columns wide, below which sgemm's own packing overhead
 * dominates.  Building the whole im2col matrix first left the wide
 * full-rate layers memory-bound (bench/bench_conv.c, docs/engine.md).
 * Limitation: the kernel-fold copies of each input row still cost about a
 * tenth of a U-Net run.
 */
static int conv_block_width(const ep_conv_geom *g)
{
    int depth = g->in_ch * g->kernel;
    int width = (32768 / depth) / 16 * 16;

    if (width < 256)
        width = 256;
    return width < g->out_len ? width : g->out_len;
}

void ep_conv_forward(const ep_conv_geom *g, const float *x, const float *w,
                     const float *bias, float *y, float *work)
{
    int depth = g->in_ch * g->kernel, width, t0, o, t;
    float beta = 0.0f;

    /* Start y from the bias so that sgemm accumulates onto it. */
    if (bias != NULL) {
        for (o = 0; o < g->out_ch; o++) {
            float *yo = y + (size_t)o * g->out_len;

            for (t = 0; t < g->out_len; t++)
                yo[t] = bias[o];
        }
        beta = 1.0f;
    }
    if (conv_is_pointwise(g)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->out_ch,
                    g->out_len, depth, 1.0f, w, depth, x, g->out_len, beta,
                    y, g->out_len);
        return;
    }

    /* One sgemm per block of output columns, into y's columns t0.. */
    width = conv_block_width(g);
    for (t0 = 0; t0 < g->out_len; t0 += width) {
        int n = g->out_len - t0 < width ? g->out_len - t0 : width;

        im2col_block(g, x, t0, t0 + n, work);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->out_ch, n,
                    depth, 1.0f, w, depth, work, n, beta, y + t0,
                    g->out_len);
    }
}

/*
 * Daubechies low-pass analysis filters with N vanishing moments, scaled so
 * that their taps sum to sqrt(2) (Daubechies, "Ten Lectures on Wavelets",
 * table 6.1).  Haar is N = 1.
 */
static const double haar_lo[2] = {
    0.70710678118654752440, 0.70710678118654752440
};
static const double db2_lo[4] = {
    0.48296291314453414337, 0.83651630373780790557,
    0.22414386804201338102, -0.12940952255126038117
};
static const double db4_lo[8] = {
    0.2303778133088964, 0.7148465705529154, 0.6308807679298587,
    -0.0279837694168599, -0.1870348117190931, 0.0308413818355607,
    0.0328830116668852, -0.0105974017850690
};

int ep_wavelet_filter(ep_wavelet w, const double **lo, int *taps)
{
    switch (w) {
    case EP_WAVELET_HAAR: *lo = haar_lo; *taps = 2; return EP_OK;
    case EP_WAVELET_DB2: *lo = db2_lo; *taps = 4; return EP_OK;
    case EP_WAVELET_DB4: *lo = db4_lo; *taps = 8; return EP_OK;
    }
    return EP_EINVAL;
}

/* Longest filter of ep_wavelet_filter. */
#define EP_OPS_MAX_WAVELET_TAPS 8

/* The filter pair in float: lo as given, hi[k] = (-1)^k lo[T-1-k] by the
 * quadrature-mirror rule. */
static int wavelet_pair(ep_wavelet w, float *lo, float *hi, int *taps)
{
    const double *lo_d;
    int k;

    if (ep_wavelet_filter(w, &lo_d, taps) != EP_OK)
        return EP_EINVAL;
    for (k = 0; k < *taps; k++) {
        double v = lo_d[*taps - 1 - k];

        lo[k] = (float)lo_d[k];
        hi[k] = (float)((k & 1) ? -v : v);
    }
    return EP_OK;
}

/* First step n whose taps 2n .. 2n+taps-1 run past the end of a signal of
 * len samples; steps before it need no wrap-around. */
static int wavelet_interior(int len, int taps)
{
    return len >= taps ? (len - taps) / 2 + 1 : 0;
}

/*
 * a[n] = sum_k lo[k] x[(2n + k) mod len], d[n] likewise with hi.  Steps
 * away from the end read x directly; the last few wrap around, with a loop
 * because taps longer than the signal wrap more than once.
 */
void ep_dwt_forward(ep_wavelet w, int channels, int len, const float *x,
                    float *y)
{
    float lo[EP_OPS_MAX_WAVELET_TAPS], hi[EP_OPS_MAX_WAVELET_TAPS];
    int taps, half = len / 2, inner, c, n, k;

    if (wavelet_pair(w, lo, hi, &taps) != EP_OK)
        return;
    inner = wavelet_interior(len, taps);
    for (c = 0; c < channels; c++) {
        const float *xc = x + (size_t)c * len;
        float *ac = y + (size_t)c * half;
        float *dc = y + ((size_t)channels + c) * half;

        for (n = 0; n < inner; n++) {
            const float *xs = xc + 2 * n;
            float a = 0.0f, d = 0.0f;

            for (k = 0; k < taps; k++) {
                a += lo[k] * xs[k];
                d += hi[k] * xs[k];
            }
            ac[n] = a;
            dc[n] = d;
        }
        for (; n < half; n++) {
            float a = 0.0f, d = 0.0f;
            int i = 2 * n;

            for (k = 0; k < taps; k++, i++) {
                while (i >= len)
                    i -= len;
                a += lo[k] * xc[i];
                d += hi[k] * xc[i];
            }
            ac[n] = a;
            dc[n] = d;
        }
    }
}

/*
 * The transpose of the orthogonal analysis, as a gather: tap k of
 * coefficient n lands on sample 2n + k, so sample 2j collects the even taps
 * 2q of coefficients j - q and sample 2j + 1 the odd taps 2q + 1 (indices
 * modulo half_len).  Coefficients from j = taps/2 - 1 on need no wrap.
 */
void ep_dwt_inverse(ep_wavelet w, int channels, int half_len, const float *x,
                    float *y)
{
    float lo[EP_OPS_MAX_WAVELET_TAPS], hi[EP_OPS_MAX_WAVELET_TAPS];
    int taps, pairs, c, j, q;

    if (wavelet_pair(w, lo, hi, &taps) != EP_OK)
        return;
    pairs = taps / 2;
    for (c = 0; c < channels; c++) {
        const float *ac = x + (size_t)c * half_len;
        const float *dc = x + ((size_t)channels + c) * half_len;
        float *yc = y + (size_t)c * 2 * half_len;

        for (j = 0; j < half_len; j++) {
            float even = 0.0f, odd = 0.0f;

            for (q = 0; q < pairs; q++) {
                int n = j - q;

                while (n < 0)
                    n += half_len;
                even += lo[2 * q] * ac[n] + hi[2 * q] * dc[n];
                odd += lo[2 * q + 1] * ac[n] + hi[2 * q + 1] * dc[n];
            }
            yc[2 * j] = even;
            yc[2 * j + 1] = odd;
        }
    }
}

void ep_softmax_channels(int channels, int len, float *x)
{
    int c, t;

    for (t = 0; t < len; t++) {
        float top = x[t];
        double sum = 0.0;

        /* Subtracting the largest score keeps exp() from overflowing. */
        for (c = 1; c < channels; c++)
            if (x[(size_t)c * len + t] > top)
                top = x[(size_t)c * len + t];
        for (c = 0; c < channels; c++) {
            float e = expf(x[(size_t)c * len + t] - top);

            x[(size_t)c * len + t] = e;
            sum += e;
        }
        for (c = 0; c < channels; c++)
            x[(size_t)c * len + t] = (float)(x[(size_t)c * len + t] / sum);
    }
}
