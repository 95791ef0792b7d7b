/*
 * ep_lsq.c - ridge least squares through normal equations accumulated in
 * double precision and solved by Cholesky (LAPACK).
 *
 * Normal equations square the condition number; pruning's systems reach
 * about 1e6 before the ridge (docs/pruning.md), which double precision
 * absorbs and single precision does not, so rows are converted to double
 * before they touch the Gram matrix.
 */
#include "ecgprune/ep_lsq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows converted to double and added at a time. */
#define LSQ_CHUNK 512

/* Keeps n_features * n_features products of doubles far from overflow. */
#define LSQ_MAX_FEATURES 65536

struct ep_lsq {
    int n_feat;          /* features, without the bias */
    int n_out;
    int dim;             /* n_feat + 1: the bias is the last unknown */
    int64_t rows;
    double *gram;        /* dim x dim, upper triangle filled */
    double *cross;       /* dim x n_out: sum over rows of [a;1] y^T */
    double *yy;          /* n_out: sum over rows of y^2 */
    double *chunk_a;     /* dim x LSQ_CHUNK */
    double *chunk_y;     /* n_out x LSQ_CHUNK */
};

int ep_lsq_create(int n_features, int n_outputs, ep_lsq **out,
                  ep_error *err)
{
    ep_lsq *q;
    size_t dim;

    *out = NULL;
    if (n_features < 0 || n_features > LSQ_MAX_FEATURES || n_outputs < 1)
        return ep_error_set(err, EP_EINVAL,
                            "least squares: %d features and %d outputs, "
                            "expected 0..%d and >= 1", n_features,
                            n_outputs, LSQ_MAX_FEATURES);
    q = calloc(1, sizeof *q);
    if (q == NULL)
        return ep_error_set(err, EP_ENOMEM, "least squares: out of memory");
    q->n_feat = n_features;
    q->n_out = n_outputs;
    q->dim = n_features + 1;
    dim = (size_t)q->dim;
    q->gram = calloc(dim * dim, sizeof *q->gram);
    q->cross = calloc(dim * (size_t)n_outputs, sizeof *q->cross);
    q->yy = calloc((size_t)n_outputs, sizeof *q->yy);
    q->chunk_a = malloc(dim * LSQ_CHUNK * sizeof *q->chunk_a);
    q->chunk_y = malloc((size_t)n_outputs * LSQ_CHUNK * sizeof *q->chunk_y);
    if (!q->gram || !q->cross || !q->yy || !q->chunk_a || !q->chunk_y) {
        ep_lsq_free(q);
        return ep_error_set(err, EP_ENOMEM,
                            "least squares: out of memory for %zu unknowns",
                            dim);
    }
    *out = q;
    return EP_OK;
}

void ep_lsq_free(ep_lsq *q)
{
    if (q == NULL)
        return;
    free(q->gram);
    free(q->cross);
    free(q->yy);
    free(q->chunk_a);
    free(q->chunk_y);
    free(q);
}

int64_t ep_lsq_rows(const ep_lsq *q)
{
    return q->rows;
}

/* Convert rows [r0, r0 + n) to double and add them to the equations. */
static void add_chunk(ep_lsq *q, const float *a, int lda, const float *y,
                      int ldy, int r0, int n)
{
    int f, o, t;

    for (f = 0; f < q->n_feat; f++)
        for (t = 0; t < n; t++)
            q->chunk_a[(size_t)f * n + t] = a[(size_t)f * lda + r0 + t];
    for (t = 0; t < n; t++)
        q->chunk_a[(size_t)q->n_feat * n + t] = 1.0;
    for (o = 0; o < q->n_out; o++)
        for (t = 0; t < n; t++) {
            double v = y[(size_t)o * ldy + r0 + t];

            q->chunk_y[(size_t)o * n + t] = v;
            q->yy[o] += v * v;
        }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, q->dim, n, 1.0,
                q->chunk_a, n, 1.0, q->gram, q->dim);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q->dim, q->n_out,
                n, 1.0, q->chunk_a, n, q->chunk_y, n, 1.0, q->cross,
                q->n_out);
}

int ep_lsq_add(ep_lsq *q, const float *a, int lda, const float *y, int ldy,
               int n_rows, ep_error *err)
{
    int r0;

    if (n_rows < 0 || lda < n_rows || ldy < n_rows)
        return ep_error_set(err, EP_EINVAL,
                            "least squares: %d rows with strides %d and %d",
                            n_rows, lda, ldy);
    for (r0 = 0; r0 < n_rows; r0 += LSQ_CHUNK) {
        int n = n_rows - r0 < LSQ_CHUNK ? n_rows - r0 : LSQ_CHUNK;

        add_chunk(q, a, lda, y, ldy, r0, n);
    }
    q->rows += n_rows;
    return EP_OK;
}

static int all_finite(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* The ridge for this solve (section 7's rule). */
static double choose_lambda(const ep_lsq *q, double lambda, ep_lsq_fit *fit)
{
    double need = (double)EP_LSQ_MIN_ROWS_PER_UNKNOWN * q->dim;
    int i;

    if (lambda < 0.0) {
        double trace = 0.0;

        for (i = 0; i < q->dim; i++)
            trace += q->gram[(size_t)i * q->dim + i];
        lambda = EP_LSQ_DEFAULT_LAMBDA_SCALE * trace / q->dim;
    }
    fit->rows = q->rows;
    fit->unknowns = q->dim;
    fit->rows_per_unknown = (double)q->rows / q->dim;
    fit->underdetermined = (double)q->rows < need;
    if (fit->underdetermined)
        lambda *= need / (double)q->rows;
    fit->lambda = lambda;
    return lambda;
}

int ep_lsq_solve(const ep_lsq *q, double lambda, double *w, double *b,
                 ep_lsq_fit *fit, ep_error *err)
{
    size_t dim = (size_t)q->dim;
    double *m, *x;
    ep_lsq_fit local;
    lapack_int info;
    int f, o;

    if (fit == NULL)
        fit = &local;
    if (q->rows == 0)
        return ep_error_set(err, EP_EINVAL,
                            "least squares: no calibration rows");
    lambda = choose_lambda(q, lambda, fit);

    /* Sums that overflowed (a network whose activations pass float's
     * range) leave nothing to factor; say so rather than blame the data. */
    if (!all_finite(q->gram, dim * dim) ||
        !all_finite(q->cross, dim * (size_t)q->n_out) || !isfinite(lambda))
        return ep_error_set(err, EP_ERANGE, "least squares: the layer's "
                            "inputs or outputs are not finite (NaN or "
                            "infinity): the model's weights overflow float "
                            "on this calibration ECG");

    /* Factor G + lambda I (weights only) and solve for every output. */
    m = malloc(dim * dim * sizeof *m);
    x = malloc(dim * (size_t)q->n_out * sizeof *x);
    if (m == NULL || x == NULL) {
        free(m);
        free(x);
        return ep_error_set(err, EP_ENOMEM, "least squares: out of memory");
    }
    memcpy(m, q->gram, dim * dim * sizeof *m);
    memcpy(x, q->cross, dim * (size_t)q->n_out * sizeof *x);
    for (f = 0; f < q->n_feat; f++)
        m[(size_t)f * dim + f] += lambda;
    info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', q->dim, m, q->dim);
    if (info == 0)
        info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'U', q->dim, q->n_out, m,
                              q->dim, x, q->n_out);
    free(m);
    if (info != 0) {
        free(x);
        return ep_error_set(err, EP_ENUMERIC,
                            "least squares: Cholesky failed (LAPACK info %d)"
                            " on %d unknowns, %lld rows, lambda %g: the "
                            "inputs are linearly dependent", (int)info,
                            q->dim, (long long)q->rows, lambda);
    }

    /* x is dim x n_out; the caller wants outputs by rows. */
    for (o = 0; o < q->n_out; o++) {
        for (f = 0; f < q->n_feat; f++)
            w[(size_t)o * q->n_feat + f] = x[(size_t)f * q->n_out + o];
        b[o] = x[(size_t)q->n_feat * q->n_out + o];
    }
    free(x);
    return EP_OK;
}

int ep_lsq_relative_error(const ep_lsq *q, const float *w, const float *b,
                          double *rel, ep_error *err)
{
    size_t dim = (size_t)q->dim;
    double *v, *gv, res = 0.0, total = 0.0;
    int f, o;

    v = malloc(dim * (size_t)q->n_out * sizeof *v);
    gv = malloc(dim * (size_t)q->n_out * sizeof *gv);
    if (v == NULL || gv == NULL) {
        free(v);
        free(gv);
        return ep_error_set(err, EP_ENOMEM, "least squares: out of memory");
    }

    /* ||y - V^T [a;1]||^2 = yy - 2 V.cross + V^T G V, per output. */
    for (o = 0; o < q->n_out; o++) {
        for (f = 0; f < q->n_feat; f++)
            v[(size_t)f * q->n_out + o] = w[(size_t)o * q->n_feat + f];
        v[(size_t)q->n_feat * q->n_out + o] = b != NULL ? b[o] : 0.0;
    }
    cblas_dsymm(CblasRowMajor, CblasLeft, CblasUpper, q->dim, q->n_out, 1.0,
                q->gram, q->dim, v, q->n_out, 0.0, gv, q->n_out);
    for (o = 0; o < q->n_out; o++) {
        double r = q->yy[o];

        for (f = 0; f < q->dim; f++) {
            size_t k = (size_t)f * q->n_out + o;

            r += v[k] * (gv[k] - 2.0 * q->cross[k]);
        }
        res += r > 0.0 ? r : 0.0;   /* cancellation can dip below 0 */
        total += q->yy[o];
    }
    free(v);
    free(gv);
    *rel = total > 0.0 ? sqrt(res / total) : sqrt(res);
    return EP_OK;
}
