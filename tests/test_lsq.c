/*
 * test_lsq.c - ridge least squares against a reference written here:
 * normal equations formed by plain loops and solved by Gaussian
 * elimination with partial pivoting, exact recovery of a noiseless linear
 * map, the lambda rule, the rows-per-unknown warning and residuals
 * computed directly from the rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ecgprune/ep_lsq.h"
#include "ecgprune/ep_rng.h"

enum { F = 6, OUT = 3, ROWS = 1300, LDA = ROWS + 7 };

static float a[F * LDA], y[OUT * LDA];

/* Features: random, plus a shifted copy so they are correlated. */
static void make_data(ep_rng *rng, int rows, const double *w_true,
                      const double *b_true, double noise)
{
    int f, o, t;

    for (f = 0; f < F; f++)
        for (t = 0; t < rows; t++)
            a[f * LDA + t] = (float)(ep_rng_normal(rng) +
                                     (f > 0 ? 0.5 * a[(f - 1) * LDA + t]
                                            : 1.0));
    for (o = 0; o < OUT; o++)
        for (t = 0; t < rows; t++) {
            double v = b_true[o] + noise * ep_rng_normal(rng);

            for (f = 0; f < F; f++)
                v += w_true[o * F + f] * a[f * LDA + t];
            y[o * LDA + t] = (float)v;
        }
}

/* (G + lambda D) x = c by Gaussian elimination, dim = F + 1, with the
 * bias unknown last and unpenalised. */
static void ref_solve(int rows, double lambda, double *w, double *b)
{
    enum { D = F + 1 };
    double m[D][D + OUT], aug[D];
    int i, j, k, t, o, piv;

    memset(m, 0, sizeof m);
    for (t = 0; t < rows; t++) {
        for (i = 0; i < F; i++)
            aug[i] = a[i * LDA + t];
        aug[F] = 1.0;
        for (i = 0; i < D; i++) {
            for (j = 0; j < D; j++)
                m[i][j] += aug[i] * aug[j];
            for (o = 0; o < OUT; o++)
                m[i][D + o] += aug[i] * y[o * LDA + t];
        }
    }
    for (i = 0; i < F; i++)
        m[i][i] += lambda;
    for (k = 0; k < D; k++) {
        piv = k;
        for (i = k + 1; i < D; i++)
            if (fabs(m[i][k]) > fabs(m[piv][k]))
                piv = i;
        for (j = 0; j < D + OUT; j++) {
            double s = m[k][j];

            m[k][j] = m[piv][j];
            m[piv][j] = s;
        }
        for (i = 0; i < D; i++) {
            double f;

            if (i == k)
                continue;
            f = m[i][k] / m[k][k];
            for (j = k; j < D + OUT; j++)
                m[i][j] -= f * m[k][j];
        }
    }
    for (o = 0; o < OUT; o++) {
        for (i = 0; i < F; i++)
            w[o * F + i] = m[i][D + o] / m[i][i];
        b[o] = m[F][D + o] / m[F][F];
    }
}

/* ||Y - (W a + b)|| / ||Y|| straight from the rows. */
static double ref_rel_error(int rows, const float *w, const float *b)
{
    double res = 0.0, tot = 0.0;
    int o, t, f;

    for (o = 0; o < OUT; o++)
        for (t = 0; t < rows; t++) {
            double v = b[o];

            for (f = 0; f < F; f++)
                v += (double)w[o * F + f] * a[f * LDA + t];
            res += (y[o * LDA + t] - v) * (y[o * LDA + t] - v);
            tot += (double)y[o * LDA + t] * y[o * LDA + t];
        }
    return sqrt(res / tot);
}

/* Feed rows in uneven pieces to cross the internal chunk boundaries. */
static ep_lsq *accumulate(int rows)
{
    ep_lsq *q;
    ep_error err;
    int r0 = 0, piece = 1;

    REQUIRE(ep_lsq_create(F, OUT, &q, &err) == EP_OK);
    while (r0 < rows) {
        int n = rows - r0 < piece ? rows - r0 : piece;

        REQUIRE(ep_lsq_add(q, a + r0, LDA, y + r0, LDA, n, &err) == EP_OK);
        r0 += n;
        piece = piece * 3 + 1;
    }
    CHECK_EQ_INT(ep_lsq_rows(q), rows);
    return q;
}

static void test_exact_recovery(void)
{
    double w_true[OUT * F], b_true[OUT] = {0.5, -1.0, 2.0};
    double w[OUT * F], b[OUT], rel;
    float wf[OUT * F], bf[OUT];
    ep_lsq_fit fit;
    ep_lsq *q;
    ep_rng rng;
    ep_error err;
    int i;

    ep_rng_seed(&rng, 1);
    for (i = 0; i < OUT * F; i++)
        w_true[i] = ep_rng_normal(&rng);
    make_data(&rng, ROWS, w_true, b_true, 0.0);
    q = accumulate(ROWS);
    REQUIRE(ep_lsq_solve(q, 0.0, w, b, &fit, &err) == EP_OK);
    CHECK_EQ_INT(fit.underdetermined, 0);
    CHECK_NEAR(fit.lambda, 0.0, 0);
    for (i = 0; i < OUT * F; i++) {
        CHECK_NEAR(w[i], w_true[i], 1e-5);
        wf[i] = (float)w[i];
    }
    for (i = 0; i < OUT; i++) {
        CHECK_NEAR(b[i], b_true[i], 1e-5);
        bf[i] = (float)b[i];
    }
    REQUIRE(ep_lsq_relative_error(q, wf, bf, &rel, &err) == EP_OK);
    CHECK(rel < 1e-5);
    CHECK_NEAR(rel, ref_rel_error(ROWS, wf, bf), 1e-5);
    ep_lsq_free(q);
}

static void test_ridge_against_reference(void)
{
    double w_true[OUT * F], b_true[OUT] = {1.0, 0.0, -0.5};
    double w[OUT * F], b[OUT], rw[OUT * F], rb[OUT], trace = 0.0, rel;
    float wf[OUT * F], bf[OUT];
    ep_lsq_fit fit;
    ep_lsq *q;
    ep_rng rng;
    ep_error err;
    int i, t;

    ep_rng_seed(&rng, 2);
    for (i = 0; i < OUT * F; i++)
        w_true[i] = ep_rng_normal(&rng);
    make_data(&rng, ROWS, w_true, b_true, 0.3);
    q = accumulate(ROWS);

    /* An explicit ridge. */
    REQUIRE(ep_lsq_solve(q, 50.0, w, b, &fit, &err) == EP_OK);
    ref_solve(ROWS, 50.0, rw, rb);
    for (i = 0; i < OUT * F; i++)
        CHECK_NEAR(w[i], rw[i], 1e-8);
    for (i = 0; i < OUT; i++)
        CHECK_NEAR(b[i], rb[i], 1e-8);

    /* The default rule: 1e-5 trace / size of the augmented Gram matrix. */
    for (i = 0; i < F; i++)
        for (t = 0; t < ROWS; t++)
            trace += (double)a[i * LDA + t] * a[i * LDA + t];
    trace += ROWS;
    REQUIRE(ep_lsq_solve(q, -1.0, w, b, &fit, &err) == EP_OK);
    CHECK_NEAR(fit.lambda, 1e-5 * trace / (F + 1), 1e-9);
    CHECK_EQ_INT(fit.unknowns, F + 1);
    CHECK_NEAR(fit.rows_per_unknown, (double)ROWS / (F + 1), 1e-12);
    ref_solve(ROWS, fit.lambda, rw, rb);
    for (i = 0; i < OUT * F; i++) {
        CHECK_NEAR(w[i], rw[i], 1e-8);
        wf[i] = (float)w[i];
    }
    for (i = 0; i < OUT; i++)
        bf[i] = (float)b[i];
    REQUIRE(ep_lsq_relative_error(q, wf, bf, &rel, &err) == EP_OK);
    CHECK_NEAR(rel, ref_rel_error(ROWS, wf, bf), 1e-7);
    ep_lsq_free(q);
}

/* 40 rows for 7 unknowns: below 10 per unknown, lambda scaled by 70/40. */
static void test_few_rows(void)
{
    double w_true[OUT * F] = {0}, b_true[OUT] = {0};
    double w[OUT * F], b[OUT], rw[OUT * F], rb[OUT];
    ep_lsq_fit fit;
    ep_lsq *q;
    ep_rng rng;
    ep_error err;
    int i;

    ep_rng_seed(&rng, 3);
    for (i = 0; i < OUT * F; i++)
        w_true[i] = ep_rng_normal(&rng);
    make_data(&rng, 40, w_true, b_true, 0.1);
    q = accumulate(40);
    REQUIRE(ep_lsq_solve(q, 2.0, w, b, &fit, &err) == EP_OK);
    CHECK_EQ_INT(fit.underdetermined, 1);
    CHECK_NEAR(fit.lambda, 2.0 * 70.0 / 40.0, 1e-12);
    ref_solve(40, 2.0 * 70.0 / 40.0, rw, rb);
    for (i = 0; i < OUT * F; i++)
        CHECK_NEAR(w[i], rw[i], 1e-8);
    ep_lsq_free(q);
}

static void test_errors(void)
{
    double w[OUT * F], b[OUT];
    ep_lsq *q;
    ep_error err;
    int t;

    CHECK_EQ_INT(ep_lsq_create(-1, 1, &q, &err), EP_EINVAL);
    CHECK_EQ_INT(ep_lsq_create(F, 0, &q, &err), EP_EINVAL);

    REQUIRE(ep_lsq_create(F, OUT, &q, &err) == EP_OK);
    CHECK_EQ_INT(ep_lsq_solve(q, -1.0, w, b, NULL, &err), EP_EINVAL);
    CHECK_EQ_INT(ep_lsq_add(q, a, 5, y, LDA, 10, &err), EP_EINVAL);

    /* Two identical features and no ridge: singular. */
    for (t = 0; t < 200; t++) {
        a[0 * LDA + t] = a[1 * LDA + t] = (float)(t % 7);
        a[2 * LDA + t] = a[3 * LDA + t] = a[4 * LDA + t] = 0.0f;
        a[5 * LDA + t] = (float)(t % 5);
    }
    REQUIRE(ep_lsq_add(q, a, LDA, y, LDA, 200, &err) == EP_OK);
    CHECK_EQ_INT(ep_lsq_solve(q, 0.0, w, b, NULL, &err), EP_ENUMERIC);
    CHECK(strstr(err.msg, "Cholesky") != NULL);
    /* Any ridge makes it solvable. */
    CHECK_EQ_INT(ep_lsq_solve(q, 1e-6, w, b, NULL, &err), EP_OK);

    /* One infinite target (a layer whose output overflowed float): named
     * as such, not as dependent inputs. */
    y[3] = INFINITY;
    REQUIRE(ep_lsq_add(q, a, LDA, y, LDA, 200, &err) == EP_OK);
    CHECK_EQ_INT(ep_lsq_solve(q, 1e-6, w, b, NULL, &err), EP_ERANGE);
    CHECK_MSG(strstr(err.msg, "not finite") != NULL, "%s", err.msg);
    ep_lsq_free(q);
}

int main(void)
{
    test_exact_recovery();
    test_ridge_against_reference();
    test_few_rows();
    test_errors();
    return check_exit();
}
