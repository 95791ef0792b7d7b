/*
 * ep_lsq.h - ridge-regularised linear least squares in double precision,
 * as pruning's reconstruction step uses it (docs/pruning.md, section 7):
 *
 *   min_{W, b}  sum_rows || y - (W a + b) ||^2  +  lambda ||W||^2
 *
 * for many outputs sharing one design matrix.  Rows are streamed in (the
 * unfolded inputs of a convolution, window by window) and only the normal
 * equations are kept; the solve factors them once by Cholesky (LAPACK
 * dpotrf/dpotrs) and solves for every output.  The bias is not penalised.
 */
#ifndef ECGPRUNE_EP_LSQ_H
#define ECGPRUNE_EP_LSQ_H

#include <stdint.h>

#include "ecgprune/ep_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fewer rows than this per unknown overfit the calibration data. */
#define EP_LSQ_MIN_ROWS_PER_UNKNOWN 10

/* Default ridge: this fraction of the Gram matrix's mean diagonal. */
#define EP_LSQ_DEFAULT_LAMBDA_SCALE 1e-5

typedef struct ep_lsq ep_lsq;

/* Normal equations for n_features features (plus a bias) and n_outputs
 * outputs. */
int ep_lsq_create(int n_features, int n_outputs, ep_lsq **out,
                  ep_error *err);
void ep_lsq_free(ep_lsq *q);

/* Add n_rows rows: a is n_features x n_rows with row stride lda (the
 * layout of an im2col matrix), y is n_outputs x n_rows with stride ldy. */
int ep_lsq_add(ep_lsq *q, const float *a, int lda, const float *y, int ldy,
               int n_rows, ep_error *err);

/* Rows added so far. */
int64_t ep_lsq_rows(const ep_lsq *q);

/* How a solve went. */
typedef struct ep_lsq_fit {
    double lambda;            /* ridge actually used */
    int64_t rows;
    int unknowns;             /* n_features + 1 */
    double rows_per_unknown;
    int underdetermined;      /* rows_per_unknown < 10: lambda was scaled
                                 up by 10 * unknowns / rows */
} ep_lsq_fit;

/*
 * Solve.  lambda < 0 selects the default, EP_LSQ_DEFAULT_LAMBDA_SCALE
 * times trace / size of the Gram matrix (bias included); with fewer than
 * EP_LSQ_MIN_ROWS_PER_UNKNOWN rows per unknown, lambda (default or given)
 * is multiplied by 10 * unknowns / rows and fit->underdetermined is set.
 * w receives n_outputs x n_features weights, b n_outputs biases.  Fails
 * with EP_EINVAL without rows, EP_ENUMERIC if the system is singular
 * (possible only with lambda = 0).
 */
int ep_lsq_solve(const ep_lsq *q, double lambda, double *w, double *b,
                 ep_lsq_fit *fit, ep_error *err);

/*
 * ||Y - (w a + b)|| / ||Y|| over the rows added, for n_outputs x
 * n_features weights w and biases b (NULL: zero), computed from the normal
 * equations.  When Y is identically zero, the absolute error.
 */
int ep_lsq_relative_error(const ep_lsq *q, const float *w, const float *b,
                          double *rel, ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
