/*
 * test_ops.c - the numerical kernels against naive double-precision
 * references written here: direct-sum convolution over many geometries,
 * the DWT as an explicit periodic filter-bank matrix, perfect
 * reconstruction, published properties of the Daubechies filters, softmax.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_rng.h"

static void fill_normal(ep_rng *rng, float *x, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        x[i] = (float)ep_rng_normal(rng);
}

/* Output length and left padding by the PyTorch conventions: explicit
 * padding p on both sides, or 'same' = ceil(L / stride) outputs with the
 * odd zero of the total padding on the right. */
static int ref_geometry(int len, int kernel, int stride, int dilation,
                        int padding, int *pad_left)
{
    int span = dilation * (kernel - 1) + 1;

    if (padding == EP_PAD_SAME) {
        int out = (len + stride - 1) / stride;
        int total = (out - 1) * stride + span - len;

        *pad_left = total > 0 ? total / 2 : 0;
        return out;
    }
    *pad_left = padding;
    if (len + 2 * padding < span)
        return 0;
    return (len + 2 * padding - span) / stride + 1;
}

static void ref_conv(int in_ch, int out_ch, int kernel, int stride,
                     int dilation, int pad_left, int len, int out_len,
                     const float *x, const float *w, const float *b,
                     double *y)
{
    int o, c, k, t;

    for (o = 0; o < out_ch; o++)
        for (t = 0; t < out_len; t++) {
            double s = b ? b[o] : 0.0;

            for (c = 0; c < in_ch; c++)
                for (k = 0; k < kernel; k++) {
                    int i = t * stride + k * dilation - pad_left;

                    if (i >= 0 && i < len)
                        s += (double)w[(o * in_ch + c) * kernel + k] *
                             x[c * len + i];
                }
            y[o * out_len + t] = s;
        }
}

/* One geometry: compare ep_conv_forward with the direct sum. */
static void check_conv_case(ep_rng *rng, int in_ch, int out_ch, int kernel,
                            int stride, int dilation, int padding, int len,
                            int with_bias)
{
    ep_conv_geom g;
    ep_error err;
    int pad_left, out_len, rc, i;
    float *x, *w, *b, *y, *work;
    double *ref, worst = 0.0;

    out_len = ref_geometry(len, kernel, stride, dilation, padding,
                           &pad_left);
    rc = ep_conv_geom_init(&g, in_ch, out_ch, kernel, stride, dilation,
                           padding, len, &err);
    if (out_len <= 0) {
        CHECK_MSG(rc == EP_EINVAL, "len %d kernel %d dil %d pad %d accepted",
                  len, kernel, dilation, padding);
        return;
    }
    REQUIRE(rc == EP_OK);
    CHECK_EQ_INT(g.out_len, out_len);
    CHECK_EQ_INT(g.pad_left, pad_left);

    x = malloc((size_t)in_ch * len * sizeof *x);
    w = malloc((size_t)out_ch * in_ch * kernel * sizeof *w);
    b = malloc((size_t)out_ch * sizeof *b);
    y = malloc((size_t)out_ch * out_len * sizeof *y);
    work = malloc((ep_conv_work_floats(&g) + 1) * sizeof *work);
    ref = malloc((size_t)out_ch * out_len * sizeof *ref);
    REQUIRE(x && w && b && y && work && ref);
    fill_normal(rng, x, (size_t)in_ch * len);
    fill_normal(rng, w, (size_t)out_ch * in_ch * kernel);
    fill_normal(rng, b, (size_t)out_ch);

    ep_conv_forward(&g, x, w, with_bias ? b : NULL, y, work);
    ref_conv(in_ch, out_ch, kernel, stride, dilation, pad_left, len,
             out_len, x, w, with_bias ? b : NULL, ref);
    for (i = 0; i < out_ch * out_len; i++)
        if (fabs(y[i] - ref[i]) > worst)
            worst = fabs(y[i] - ref[i]);
    CHECK_MSG(worst < 1e-4 * (1 + in_ch * kernel),
              "in %d out %d k %d s %d d %d pad %d len %d: error %g", in_ch,
              out_ch, kernel, stride, dilation, padding, len, worst);
    free(x);
    free(w);
    free(b);
    free(y);
    free(work);
    free(ref);
}

static void test_conv(void)
{
    static const int lens[] = {1, 2, 5, 7, 13, 32, 63};
    static const int kernels[] = {1, 2, 3, 5, 9};
    static const int paddings[] = {EP_PAD_SAME, 0, 1, 4};
    ep_rng rng;
    int a, b, s, d, p, shape = 0;

    ep_rng_seed(&rng, 11);
    for (a = 0; a < (int)(sizeof lens / sizeof *lens); a++)
        for (b = 0; b < (int)(sizeof kernels / sizeof *kernels); b++)
            for (s = 1; s <= 3; s++)
                for (d = 1; d <= 3; d++)
                    for (p = 0; p < 4; p++, shape++)
                        check_conv_case(&rng, 1 + shape % 3,
                                        1 + shape % 4, kernels[b], s, d,
                                        paddings[p], lens[a], shape % 2);
    /* Pointwise and strided convs take sgemm (with im2col blocks when
     * wide and long enough for several). */
    check_conv_case(&rng, 16, 6, 1, 1, 1, 0, 257, 1);
    check_conv_case(&rng, 16, 6, 1, 1, 1, EP_PAD_SAME, 64, 0);
    check_conv_case(&rng, 33, 47, 9, 2, 1, EP_PAD_SAME, 3000, 1);
    check_conv_case(&rng, 40, 5, 9, 3, 2, 4, 1100, 1);
    check_conv_case(&rng, 40, 5, 9, 2, 3, EP_PAD_SAME, 777, 0);

    /* Stride-1 convs take the direct path where the CPU has AVX2: blocks
     * of 24 samples, then of 8, then a scalar tail; output channels in
     * fours with every remainder; dilations and paddings. */
    for (a = 0; a < 13; a++) {
        static const int direct_lens[] = {7, 8, 9, 23, 24, 25, 31, 32, 33,
                                          47, 95, 256, 2048};

        check_conv_case(&rng, 1 + a % 6, 1 + a % 9, 9, 1, 1, EP_PAD_SAME,
                        direct_lens[a], a % 2);
        check_conv_case(&rng, 3, 12 + a % 4, 3, 1, 1 + a % 3, a % 3,
                        direct_lens[a], 1);
        check_conv_case(&rng, 10, 16, 9, 1, 1, EP_PAD_SAME, direct_lens[a],
                        0);
    }
    check_conv_case(&rng, 33, 47, 9, 1, 1, EP_PAD_SAME, 300, 1);
    check_conv_case(&rng, 7, 1, 2, 1, 2, 4, 100, 1);
}

/* col2im is the adjoint of im2col: <im2col(x), c> = <x, col2im(c)>, summed
 * in double. */
static void test_col2im_adjoint(void)
{
    static const int cases[][6] = {
        /* in_ch, kernel, stride, dilation, padding, len */
        {3, 5, 1, 1, EP_PAD_SAME, 17}, {2, 3, 2, 2, 1, 20},
        {1, 4, 3, 1, EP_PAD_SAME, 11}, {4, 1, 1, 1, 0, 9},
    };
    ep_rng rng;
    size_t i;
    int n;

    ep_rng_seed(&rng, 17);
    for (n = 0; n < (int)(sizeof cases / sizeof *cases); n++) {
        const int *p = cases[n];
        ep_conv_geom g;
        ep_error err;
        float *x, *col, *c, *dx;
        double lhs = 0.0, rhs = 0.0;
        size_t nx, ncol;

        REQUIRE(ep_conv_geom_init(&g, p[0], 1, p[1], p[2], p[3], p[4], p[5],
                                  &err) == EP_OK);
        nx = (size_t)g.in_ch * g.in_len;
        ncol = ep_conv_work_floats(&g);
        x = malloc(nx * sizeof *x);
        dx = calloc(nx, sizeof *dx);
        col = malloc(ncol * sizeof *col);
        c = malloc(ncol * sizeof *c);
        REQUIRE(x && dx && col && c);
        fill_normal(&rng, x, nx);
        fill_normal(&rng, c, ncol);
        ep_conv_im2col(&g, x, col);
        ep_conv_col2im(&g, c, dx);
        for (i = 0; i < ncol; i++)
            lhs += (double)col[i] * c[i];
        for (i = 0; i < nx; i++)
            rhs += (double)x[i] * dx[i];
        CHECK_NEAR(lhs, rhs, 1e-5);
        free(x);
        free(dx);
        free(col);
        free(c);
    }
}

static void test_conv_geometry_errors(void)
{
    ep_conv_geom g;
    ep_error err;

    CHECK(ep_conv_geom_init(&g, 0, 1, 3, 1, 1, 0, 10, &err) == EP_EINVAL);
    CHECK(ep_conv_geom_init(&g, 1, 1, 0, 1, 1, 0, 10, &err) == EP_EINVAL);
    CHECK(ep_conv_geom_init(&g, 1, 1, 3, 0, 1, 0, 10, &err) == EP_EINVAL);
    CHECK(ep_conv_geom_init(&g, 1, 1, 3, 1, 1, -5, 10, &err) == EP_EINVAL);
    CHECK(ep_conv_geom_init(&g, 1, 1, 5, 1, 3, 0, 10, &err) == EP_EINVAL);
}

/*
 * Published properties of orthonormal Daubechies filters with N vanishing
 * moments (N = taps / 2): taps sum to sqrt(2), unit energy, orthogonal to
 * their even shifts, and the high-pass filter kills polynomials of degree
 * below N.  Haar is checked by hand.
 */
static void test_filters(void)
{
    ep_wavelet ws[] = {EP_WAVELET_HAAR, EP_WAVELET_DB2, EP_WAVELET_DB4};
    const double *lo;
    int wi, taps, k, m;

    CHECK(ep_wavelet_filter(EP_WAVELET_HAAR, &lo, &taps) == EP_OK);
    CHECK_EQ_INT(taps, 2);
    CHECK_NEAR(lo[0], 1.0 / sqrt(2.0), 1e-15);
    CHECK_NEAR(lo[1], 1.0 / sqrt(2.0), 1e-15);
    CHECK(ep_wavelet_filter(EP_WAVELET_DB2, &lo, &taps) == EP_OK);
    CHECK_NEAR(lo[0], (1 + sqrt(3.0)) / (4 * sqrt(2.0)), 1e-15);
    CHECK_NEAR(lo[3], (1 - sqrt(3.0)) / (4 * sqrt(2.0)), 1e-15);

    for (wi = 0; wi < 3; wi++) {
        double sum = 0.0;

        REQUIRE(ep_wavelet_filter(ws[wi], &lo, &taps) == EP_OK);
        for (k = 0; k < taps; k++)
            sum += lo[k];
        CHECK_NEAR(sum, sqrt(2.0), 1e-12);
        for (m = 0; 2 * m < taps; m++) {
            double dot = 0.0;

            for (k = 0; k + 2 * m < taps; k++)
                dot += lo[k] * lo[k + 2 * m];
            CHECK_NEAR(dot, m == 0 ? 1.0 : 0.0, 1e-12);
        }
        for (m = 0; m < taps / 2; m++) {
            double moment = 0.0;

            for (k = 0; k < taps; k++)
                moment += ((k & 1) ? -1.0 : 1.0) * lo[taps - 1 - k] *
                          pow(k, m);
            CHECK_NEAR(moment, 0.0, 1e-9);
        }
    }
}

/*
 * The analysis matrix of one periodic filter-bank level: row n (n < N/2)
 * holds lo[k] at column (2n + k) mod N, row N/2 + n holds the high-pass
 * taps (-1)^k lo[taps-1-k] there.  Taps that wrap twice add up.
 */
static void ref_dwt_matrix(const double *lo, int taps, int len, double *mat)
{
    int half = len / 2, n, k;

    memset(mat, 0, (size_t)len * len * sizeof *mat);
    for (n = 0; n < half; n++)
        for (k = 0; k < taps; k++) {
            int col = (2 * n + k) % len;
            double hi = ((k & 1) ? -1.0 : 1.0) * lo[taps - 1 - k];

            mat[n * len + col] += lo[k];
            mat[(half + n) * len + col] += hi;
        }
}

static void test_dwt_case(ep_rng *rng, ep_wavelet w, int channels, int len)
{
    const double *lo;
    int taps, c, i, j, half = len / 2;
    double *mat = malloc((size_t)len * len * sizeof *mat);
    float *x = malloc((size_t)channels * len * sizeof *x);
    float *y = malloc((size_t)channels * len * sizeof *y);
    float *back = malloc((size_t)channels * len * sizeof *back);
    double worst_fwd = 0.0, worst_inv = 0.0, worst_orth = 0.0;

    REQUIRE(mat && x && y && back);
    REQUIRE(ep_wavelet_filter(w, &lo, &taps) == EP_OK);
    ref_dwt_matrix(lo, taps, len, mat);
    fill_normal(rng, x, (size_t)channels * len);
    ep_dwt_forward(w, channels, len, x, y);
    ep_dwt_inverse(w, channels, half, y, back);

    /* The periodised bank is orthogonal: mat * mat^T = I. */
    for (i = 0; i < len; i++)
        for (j = 0; j < len; j++) {
            double dot = 0.0;
            int k;

            for (k = 0; k < len; k++)
                dot += mat[i * len + k] * mat[j * len + k];
            dot -= i == j;
            if (fabs(dot) > worst_orth)
                worst_orth = fabs(dot);
        }

    /* Forward = mat * x per channel, bands laid out a0..aC-1 d0..dC-1. */
    for (c = 0; c < channels; c++)
        for (i = 0; i < len; i++) {
            double s = 0.0;
            int band = i < half ? c : channels + c;
            float got = y[band * half + (i % half)];

            for (j = 0; j < len; j++)
                s += mat[i * len + j] * x[c * len + j];
            if (fabs(got - s) > worst_fwd)
                worst_fwd = fabs(got - s);
        }
    for (i = 0; i < channels * len; i++)
        if (fabs(back[i] - x[i]) > worst_inv)
            worst_inv = fabs(back[i] - x[i]);
    CHECK_MSG(worst_orth < 1e-12, "wavelet %d len %d orth %g", (int)w, len,
              worst_orth);
    CHECK_MSG(worst_fwd < 1e-5, "wavelet %d len %d forward %g", (int)w, len,
              worst_fwd);
    CHECK_MSG(worst_inv < 1e-5, "wavelet %d len %d reconstruction %g",
              (int)w, len, worst_inv);
    free(mat);
    free(x);
    free(y);
    free(back);
}

static void test_dwt(void)
{
    static const int lens[] = {2, 4, 6, 8, 10, 16, 34, 128, 130, 262, 518};
    ep_rng rng;
    int w, i;

    ep_rng_seed(&rng, 5);
    for (w = 0; w < 3; w++)
        for (i = 0; i < (int)(sizeof lens / sizeof *lens); i++)
            test_dwt_case(&rng, (ep_wavelet)w, 1 + i % 3, lens[i]);
}

/* Haar on [1, 3, 2, 2]: approximations (1+3)/sqrt2, (2+2)/sqrt2; details
 * with hi = (lo[1], -lo[0]) = (1, -1)/sqrt2: (1-3)/sqrt2, 0. */
static void test_haar_by_hand(void)
{
    const float x[4] = {1, 3, 2, 2};
    float y[4];
    double r = sqrt(2.0);

    ep_dwt_forward(EP_WAVELET_HAAR, 1, 4, x, y);
    CHECK_NEAR(y[0], 4 / r, 1e-6);
    CHECK_NEAR(y[1], 4 / r, 1e-6);
    CHECK_NEAR(y[2], -2 / r, 1e-6);
    CHECK_NEAR(y[3], 0.0, 1e-6);
}

static void test_softmax(void)
{
    enum { C = 5, L = 7 };
    float x[C * L];
    double ref[C * L];
    ep_rng rng;
    int c, t;

    ep_rng_seed(&rng, 3);
    for (c = 0; c < C * L; c++)
        x[c] = (float)(4 * ep_rng_normal(&rng));
    x[2 * L + 1] = 1000.0f;   /* would overflow a naive exp */
    x[3 * L + 1] = 999.0f;
    for (t = 0; t < L; t++) {
        double top = -INFINITY, sum = 0.0;

        for (c = 0; c < C; c++)
            top = x[c * L + t] > top ? x[c * L + t] : top;
        for (c = 0; c < C; c++)
            sum += exp(x[c * L + t] - top);
        for (c = 0; c < C; c++)
            ref[c * L + t] = exp(x[c * L + t] - top) / sum;
    }
    ep_softmax_channels(C, L, x);
    for (c = 0; c < C * L; c++)
        CHECK_NEAR(x[c], ref[c], 1e-6);
    CHECK_NEAR(x[2 * L + 1], 1.0 / (1.0 + exp(-1.0)), 1e-6);
}

int main(void)
{
    test_conv();
    test_col2im_adjoint();
    test_conv_geometry_errors();
    test_filters();
    test_dwt();
    test_haar_by_hand();
    test_softmax();
    return check_exit();
}
