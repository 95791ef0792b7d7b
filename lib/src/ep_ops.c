/*
 * ep_ops.c - numerical kernels of the layers: 1-D convolution as a direct
 * sum (stride 1 on x86-64 with AVX2) or as im2col followed by one sgemm,
 * single-level periodic DWT/IDWT per channel, and a numerically stable
 * softmax over channels.
 */
#include "ecgprune/ep_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EP_OPS_DIRECT 1
#endif

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

/* Length of one zero-padded input row of the direct convolution. */
static size_t direct_row_floats(const ep_conv_geom *g)
{
    return (size_t)g->pad_left + (size_t)g->in_len + (size_t)g->pad_right;
}

size_t ep_conv_work_floats(const ep_conv_geom *g)
{
    size_t col = (size_t)g->in_ch * (size_t)g->kernel * (size_t)g->out_len;
    size_t rows = (size_t)g->in_ch * direct_row_floats(g);

    return col > rows ? col : rows;
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

/*
 * Direct convolution.  sgemm multiplies in panels a few output channels
 * wide, so a layer with 5 or 10 output channels wastes much of each
 * panel, and the im2col copy costs as much as the product.  The direct sum
 * below reads each tap's input vectors once for four output channels and
 * keeps twelve accumulators in registers; on the default U-Net
 * (bench/bench_conv.c, kernel 9, 1 to 128 channels) it reached 90-100 %
 * of the sgemm peak where sgemm with im2col reached 60-90 %, and 55-95 %
 * at the 5 to 38 channels of a model pruned to keep 0.3.  It is taken for
 * every convolution with stride 1 and a kernel longer than one tap; the
 * pointwise head and strided layers stay with sgemm.  Limitation: x86-64
 * with AVX2 and FMA only, checked at run time; elsewhere every layer takes
 * the sgemm path.  Limitation: measured only up to 128 channels and 9
 * taps; far wider layers would read their weights from L2 for every block
 * of 24 samples, where sgemm's blocking may win again.
 */
#ifdef EP_OPS_DIRECT
static int conv_use_direct(const ep_conv_geom *g)
{
    return g->stride == 1 && g->kernel > 1 &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* Output samples [t0, out_len) of channel o, one at a time. */
static void direct_tail(const ep_conv_geom *g, const float *rows,
                        size_t row_len, const float *wo, float b, int t0,
                        float *yo)
{
    int c, k, t;

    for (t = t0; t < g->out_len; t++) {
        float s = b;

        for (c = 0; c < g->in_ch; c++)
            for (k = 0; k < g->kernel; k++)
                s += wo[c * g->kernel + k] *
                     rows[c * row_len + t + (size_t)k * g->dilation];
        yo[t] = s;
    }
}

/* Samples t .. t + 8 * n_vec - 1 of output channels o .. o + n_out - 1
 * (n_out 1..4, n_vec 1..3, constants where this is inlined, so that the
 * accumulators live in registers): each tap's input vectors are loaded
 * once for all n_out channels. */
__attribute__((target("avx2,fma"), always_inline))
static inline void direct_span(const ep_conv_geom *g, const float *rows,
                               size_t row_len, const float *w,
                               const float *bias, int o, int n_out,
                               int t, int n_vec, float *y)
{
    size_t taps = (size_t)g->in_ch * g->kernel;
    __m256 acc[4][3];
    int c, j, k, v;

    for (j = 0; j < n_out; j++)
        for (v = 0; v < n_vec; v++)
            acc[j][v] = _mm256_set1_ps(bias != NULL ? bias[o + j] : 0.0f);
    for (c = 0; c < g->in_ch; c++)
        for (k = 0; k < g->kernel; k++) {
            const float *p = rows + c * row_len + t + (size_t)k * g->dilation;
            const float *wk = w + (size_t)o * taps + (size_t)c * g->kernel + k;
            __m256 xv[3];

            for (v = 0; v < n_vec; v++)
                xv[v] = _mm256_loadu_ps(p + 8 * v);
            for (j = 0; j < n_out; j++) {
                __m256 wv = _mm256_broadcast_ss(wk + j * taps);

                for (v = 0; v < n_vec; v++)
                    acc[j][v] = _mm256_fmadd_ps(wv, xv[v], acc[j][v]);
            }
        }
    for (j = 0; j < n_out; j++)
        for (v = 0; v < n_vec; v++)
            _mm256_storeu_ps(y + (o + j) * (size_t)g->out_len + t + 8 * v,
                             acc[j][v]);
}

/* All samples of output channels o .. o + n_out - 1: 24 at a time (12
 * accumulators at four channels, enough to hide the FMA latency with
 * three loads and four broadcasts per twelve FMAs), then 8 at a time,
 * then one at a time. */
__attribute__((target("avx2,fma"), always_inline))
static inline void direct_block(const ep_conv_geom *g, const float *rows,
                                size_t row_len, const float *w,
                                const float *bias, int o, int n_out,
                                float *y)
{
    size_t taps = (size_t)g->in_ch * g->kernel;
    int j, t;

    for (t = 0; t + 24 <= g->out_len; t += 24)
        direct_span(g, rows, row_len, w, bias, o, n_out, t, 3, y);
    for (; t + 8 <= g->out_len; t += 8)
        direct_span(g, rows, row_len, w, bias, o, n_out, t, 1, y);
    for (j = 0; j < n_out; j++)
        direct_tail(g, rows, row_len, w + (o + j) * taps,
                    bias != NULL ? bias[o + j] : 0.0f, t,
                    y + (o + j) * (size_t)g->out_len);
}

__attribute__((target("avx2,fma")))
static void conv_direct(const ep_conv_geom *g, const float *x, const float *w,
                        const float *bias, float *y, float *rows)
{
    size_t row_len = direct_row_floats(g);
    int c, o;

    /* Each input row once, between its padding zeros. */
    for (c = 0; c < g->in_ch; c++) {
        float *r = rows + c * row_len;

        memset(r, 0, (size_t)g->pad_left * sizeof *r);
        memcpy(r + g->pad_left, x + (size_t)c * g->in_len,
               (size_t)g->in_len * sizeof *r);
        memset(r + g->pad_left + g->in_len, 0,
               (size_t)g->pad_right * sizeof *r);
    }

    /* Output channels four at a time, then the rest together. */
    for (o = 0; o + 4 <= g->out_ch; o += 4)
        direct_block(g, rows, row_len, w, bias, o, 4, y);
    switch (g->out_ch - o) {
    case 3:
        direct_block(g, rows, row_len, w, bias, o, 3, y);
        break;
    case 2:
        direct_block(g, rows, row_len, w, bias, o, 2, y);
        break;
    case 1:
        direct_block(g, rows, row_len, w, bias, o, 1, y);
        break;
    default:
        break;
    }
}
#endif

void ep_conv_forward(const ep_conv_geom *g, const float *x, const float *w,
                     const float *bias, float *y, float *work)
{
    int depth = g->in_ch * g->kernel, width, t0, o, t;
    float beta = 0.0f;

#ifdef EP_OPS_DIRECT
    if (conv_use_direct(g)) {
        conv_direct(g, x, w, bias, y, work);
        return;
    }
#endif

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

/* Samples handled together by the interior loops of the wavelet
 * transforms: short enough for the stack, long enough that the loop over
 * them vectorises and the loop over taps around it costs little. */
#define EP_OPS_DWT_CHUNK 64

/* Interior outputs n0 .. n0 + m - 1 of one channel's analysis (no wrap):
 * the loop over samples is innermost so that it vectorises. */
static void dwt_forward_chunk(const float *lo, const float *hi, int taps,
                              const float *xc, int n0, int m, float *ac,
                              float *dc)
{
    float a[EP_OPS_DWT_CHUNK] = {0}, d[EP_OPS_DWT_CHUNK] = {0};
    int i, k;

    for (k = 0; k < taps; k++) {
        const float *xs = xc + 2 * n0 + k;
        float l = lo[k], h = hi[k];

        for (i = 0; i < m; i++) {
            a[i] += l * xs[2 * i];
            d[i] += h * xs[2 * i];
        }
    }
    memcpy(ac + n0, a, (size_t)m * sizeof *a);
    memcpy(dc + n0, d, (size_t)m * sizeof *d);
}

/*
 * a[n] = sum_k lo[k] x[(2n + k) mod len], d[n] likewise with hi.  Steps
 * away from the end read x directly, in chunks; the last few wrap around,
 * with a loop because taps longer than the signal wrap more than once.
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

        for (n = 0; n < inner; n += EP_OPS_DWT_CHUNK)
            dwt_forward_chunk(lo, hi, taps, xc, n,
                              inner - n < EP_OPS_DWT_CHUNK ? inner - n
                                                           : EP_OPS_DWT_CHUNK,
                              ac, dc);
        for (n = inner; n < half; n++) {
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

/* Outputs 2j, 2j + 1 for j = j0 .. j0 + m - 1 of one channel's synthesis,
 * all with j >= taps/2 - 1 (no wrap), the loop over j innermost. */
static void dwt_inverse_chunk(const float *lo, const float *hi, int pairs,
                              const float *ac, const float *dc, int j0,
                              int m, float *yc)
{
    float even[EP_OPS_DWT_CHUNK] = {0}, odd[EP_OPS_DWT_CHUNK] = {0};
    int i, q;

    for (q = 0; q < pairs; q++) {
        const float *a = ac + j0 - q, *d = dc + j0 - q;
        float le = lo[2 * q], he = hi[2 * q];
        float lo_odd = lo[2 * q + 1], ho = hi[2 * q + 1];

        for (i = 0; i < m; i++) {
            even[i] += le * a[i] + he * d[i];
            odd[i] += lo_odd * a[i] + ho * d[i];
        }
    }
    for (i = 0; i < m; i++) {
        yc[2 * (j0 + i)] = even[i];
        yc[2 * (j0 + i) + 1] = odd[i];
    }
}

/*
 * The transpose of the orthogonal analysis, as a gather: tap k of
 * coefficient n lands on sample 2n + k, so sample 2j collects the even taps
 * 2q of coefficients j - q and sample 2j + 1 the odd taps 2q + 1 (indices
 * modulo half_len).  Coefficients from j = taps/2 - 1 on need no wrap and
 * go in chunks; the first few wrap, one at a time.
 */
void ep_dwt_inverse(ep_wavelet w, int channels, int half_len, const float *x,
                    float *y)
{
    float lo[EP_OPS_MAX_WAVELET_TAPS], hi[EP_OPS_MAX_WAVELET_TAPS];
    int taps, pairs, first, c, j, q;

    if (wavelet_pair(w, lo, hi, &taps) != EP_OK)
        return;
    pairs = taps / 2;
    first = pairs - 1 < half_len ? pairs - 1 : half_len;
    for (c = 0; c < channels; c++) {
        const float *ac = x + (size_t)c * half_len;
        const float *dc = x + ((size_t)channels + c) * half_len;
        float *yc = y + (size_t)c * 2 * half_len;

        for (j = 0; j < first; j++) {
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
        for (j = first; j < half_len; j += EP_OPS_DWT_CHUNK)
            dwt_inverse_chunk(lo, hi, pairs, ac, dc, j,
                              half_len - j < EP_OPS_DWT_CHUNK
                                  ? half_len - j : EP_OPS_DWT_CHUNK,
                              yc);
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
