/*
 * test_ising.c - the steps of Ising-energy coreset pruning against
 * independent references written here in double precision: the importance
 * matrix in its literal per-channel form, energies by brute force over all
 * masks, the closed-form mean output energy against Monte-Carlo draws, the
 * calibrated temperature against a perplexity recomputed from the
 * formulas, inclusion frequencies of sampling, candidate selection and
 * hand-worked fusion ties.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ecgprune/ep_ising.h"
#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_rng.h"

/* ---- importance matrix ------------------------------------------------ */

/* r_ij = sum_k sgn(y^j_k) y^{ij}_k / (eps + sum_k |y^j_k|), with every
 * unit-kernel map y^{ij} computed explicitly by direct convolution. */
static void literal_importance(const ep_conv_geom *g, const float *w,
                               const float *x, int batch,
                               const int *unit_of, int n_units, double *r)
{
    int c = g->out_ch, len = g->out_len, i, j, b, t, n, k;
    double *yij = calloc((size_t)n_units * batch * len, sizeof *yij);

    for (j = 0; j < c; j++) {
        double num_den = 0.0;

        memset(yij, 0, (size_t)n_units * batch * len * sizeof *yij);
        for (b = 0; b < batch; b++)
            for (t = 0; t < len; t++)
                for (n = 0; n < g->in_ch; n++) {
                    if (unit_of[n] < 0)
                        continue;
                    for (k = 0; k < g->kernel; k++) {
                        int pos = t * g->stride + k * g->dilation -
                                  g->pad_left;
                        double v;

                        if (pos < 0 || pos >= g->in_len)
                            continue;
                        v = (double)w[((size_t)j * g->in_ch + n) *
                                      g->kernel + k] *
                            x[((size_t)b * g->in_ch + n) * g->in_len + pos];
                        yij[((size_t)unit_of[n] * batch + b) * len + t] += v;
                    }
                }
        for (b = 0; b < batch; b++)
            for (t = 0; t < len; t++) {
                double yj = 0.0;

                for (i = 0; i < n_units; i++)
                    yj += yij[((size_t)i * batch + b) * len + t];
                num_den += fabs(yj);
                for (i = 0; i < n_units; i++)
                    r[(size_t)i * c + j] +=
                        (yj > 0 ? 1.0 : (yj < 0 ? -1.0 : 0.0)) *
                        yij[((size_t)i * batch + b) * len + t];
            }
        for (i = 0; i < n_units; i++)
            r[(size_t)i * c + j] /= 1e-12 + num_den;
    }
    free(yij);
}

static void fill_normal(ep_rng *rng, float *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        v[i] = (float)ep_rng_normal(rng);
}

static void check_importance_case(int stride, int dilation, int padding)
{
    enum { IN = 5, OUT = 4, K = 3, LEN = 24, BATCH = 3, UNITS = 3 };
    /* Inputs 0 and 3 both derive from unit 0 (two DWT bands); input 2
     * belongs to another group. */
    static const int unit_of[IN] = {0, 1, -1, 0, 2};
    float w[OUT * IN * K], x[BATCH * IN * LEN];
    double r[UNITS * OUT], ref[UNITS * OUT];
    ep_conv_geom g;
    ep_rng rng;
    ep_error err;
    int q;

    ep_rng_seed(&rng, 7 + stride * 10 + dilation);
    fill_normal(&rng, w, sizeof w / sizeof w[0]);
    fill_normal(&rng, x, sizeof x / sizeof x[0]);
    REQUIRE(ep_conv_geom_init(&g, IN, OUT, K, stride, dilation, padding,
                              LEN, &err) == EP_OK);
    memset(ref, 0, sizeof ref);
    literal_importance(&g, w, x, BATCH, unit_of, UNITS, ref);
    CHECK_EQ_INT(ep_ising_importance(&g, w, x, BATCH, unit_of, UNITS, r,
                                     OUT, &err), EP_OK);
    for (q = 0; q < UNITS * OUT; q++)
        CHECK_NEAR(r[q], ref[q], 1e-5);
}

static void test_importance(void)
{
    check_importance_case(1, 1, EP_PAD_SAME);
    check_importance_case(2, 1, EP_PAD_SAME);
    check_importance_case(1, 2, 0);
}

/* Column offset: a second consumer's columns land beside the first's. */
static void test_importance_offset(void)
{
    enum { IN = 2, OUT = 2, K = 1, LEN = 4 };
    /* Hand-worked: W = [[1, 1], [1, -2]], x0 = (1, 2, -1, 0),
     * x1 = (1, -1, 1, 0).  Output 0: y = (2, 1, 0, 0), sum |y| = 3; with
     * sgn(0) = 0 the last two positions drop out: unit 0: (1 + 2)/3 = 1,
     * unit 1: (1 - 1)/3 = 0.  Output 1: y = (-1, 4, -3, 0), sum |y| = 8;
     * unit 0: (-1 + 2 + 1)/8, unit 1: (2 + 2 + 2)/8. */
    static const float w[OUT * IN * K] = {1, 1, 1, -2};
    static const float x[IN * LEN] = {1, 2, -1, 0, 1, -1, 1, 0};
    static const int unit_of[IN] = {0, 1};
    double r[2 * 5];
    ep_conv_geom g;
    ep_error err;

    REQUIRE(ep_conv_geom_init(&g, IN, OUT, K, 1, 1, 0, LEN, &err) == EP_OK);
    memset(r, 0, sizeof r);
    CHECK_EQ_INT(ep_ising_importance(&g, w, x, 1, unit_of, 2, r + 3, 5,
                                     &err), EP_OK);
    CHECK_NEAR(r[3], 1.0, 1e-9);
    CHECK_NEAR(r[5 + 3], 0.0, 1e-9);
    CHECK_NEAR(r[4], 2.0 / 8.0, 1e-9);
    CHECK_NEAR(r[5 + 4], 6.0 / 8.0, 1e-9);
    CHECK(r[0] == 0.0 && r[2] == 0.0 && r[5] == 0.0);
}

/* ---- energies ---------------------------------------------------------- */

static void random_importance(ep_rng *rng, double *r, int n, int c)
{
    int q;

    for (q = 0; q < n * c; q++)
        r[q] = ep_rng_normal(rng) * 0.3 + (q % 3 == 0 ? 0.2 : 0.0);
}

/* E(s) over all 2^N masks, with A built here from its definition. */
static void test_energy_brute_force(void)
{
    enum { N = 6, C = 5 };
    double r[N * C], a[N * N], h, ref_a[N * N], ref_h = 0.0;
    unsigned char mask[N];
    ep_rng rng;
    ep_error err;
    int i, i2, j, s;

    ep_rng_seed(&rng, 3);
    random_importance(&rng, r, N, C);
    for (i = 0; i < N; i++)
        for (i2 = 0; i2 < N; i2++) {
            double dot = 0, ni = 0, n2 = 0;

            for (j = 0; j < C; j++) {
                dot += r[i * C + j] * r[i2 * C + j];
                ni += r[i * C + j] * r[i * C + j];
                n2 += r[i2 * C + j] * r[i2 * C + j];
            }
            ref_a[i * N + i2] = i == i2 ? 0.0 : fabs(dot) / sqrt(ni * n2);
            ref_h += ref_a[i * N + i2];
        }
    ref_h /= N;
    CHECK_EQ_INT(ep_ising_coupling(r, N, C, a, &h, &err), EP_OK);
    CHECK_NEAR(h, ref_h, 1e-12);
    for (i = 0; i < N * N; i++)
        CHECK_NEAR(a[i], ref_a[i], 1e-12);

    for (s = 0; s < (1 << N); s++) {
        double e = 0.0;
        int kept = 0;

        for (i = 0; i < N; i++) {
            mask[i] = (unsigned char)((s >> i) & 1);
            kept += mask[i];
        }
        for (i = 0; i < N; i++)
            for (i2 = i + 1; i2 < N; i2++)
                e += ref_a[i * N + i2] * mask[i] * mask[i2];
        e -= ref_h * kept;
        CHECK_NEAR(ep_ising_energy(a, h, N, mask), e, 1e-12);
    }
}

/* A zero importance row couples to nothing. */
static void test_coupling_zero_row(void)
{
    double r[3 * 2] = {1, 0, 0, 0, 1, 1}, a[9], h;
    ep_error err;

    CHECK_EQ_INT(ep_ising_coupling(r, 3, 2, a, &h, &err), EP_OK);
    CHECK(a[0 * 3 + 1] == 0.0 && a[1 * 3 + 2] == 0.0);
    CHECK_NEAR(a[0 * 3 + 2], 1.0 / sqrt(2.0), 1e-12);
    CHECK_NEAR(h, 2.0 / sqrt(2.0) / 3.0, 1e-12);
}

/* The closed form against the mean of E_i(t) over random output masks,
 * E_i(t) = -sum_{j<j'} r_ij r_ij' t_j t_j' - h_i sum_j t_j. */
static void test_mean_output_energy(void)
{
    enum { N = 4, C = 9, DRAWS = 200000 };
    const double rho = 0.4;
    double r[N * C], ebar[N], sum[N] = {0}, sum2[N] = {0};
    unsigned char t[C];
    ep_rng rng;
    int i, j, j2, d;

    ep_rng_seed(&rng, 11);
    random_importance(&rng, r, N, C);
    ep_ising_mean_output_energy(r, N, C, rho, ebar);
    for (d = 0; d < DRAWS; d++) {
        for (j = 0; j < C; j++)
            t[j] = ep_rng_uniform(&rng) < rho;
        for (i = 0; i < N; i++) {
            double b_sum = 0.0, e = 0.0;
            int on = 0;

            for (j = 0; j < C; j++)
                for (j2 = 0; j2 < C; j2++)
                    if (j != j2)
                        b_sum += r[i * C + j] * r[i * C + j2];
            for (j = 0; j < C; j++) {
                on += t[j];
                for (j2 = j + 1; j2 < C; j2++)
                    e -= r[i * C + j] * r[i * C + j2] * t[j] * t[j2];
            }
            e -= b_sum / C * on;
            sum[i] += e;
            sum2[i] += e * e;
        }
    }
    for (i = 0; i < N; i++) {
        double mean = sum[i] / DRAWS;
        double sd = sqrt(sum2[i] / DRAWS - mean * mean);

        CHECK_MSG(fabs(mean - ebar[i]) < 5.0 * sd / sqrt((double)DRAWS),
                  "unit %d: Monte-Carlo %g vs closed form %g (sd %g)", i,
                  mean, ebar[i], sd);
    }
}

/* ---- threshold, probabilities, temperature ---------------------------- */

static int cmp_desc(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;

    return (a < b) - (a > b);
}

static void test_threshold(void)
{
    double norms[7] = {3, 1, 4, 1, 5, 9, 2}, sorted[7];
    int k;

    memcpy(sorted, norms, sizeof norms);
    qsort(sorted, 7, sizeof sorted[0], cmp_desc);
    for (k = 1; k <= 7; k++)
        CHECK_NEAR(ep_ising_threshold(norms, 7, k), sorted[k - 1], 0);
    /* Ties: {5, 5, 5, 1}, the 2nd largest is 5. */
    {
        double tied[4] = {5, 1, 5, 5};

        CHECK_NEAR(ep_ising_threshold(tied, 4, 2), 5.0, 0);
        CHECK_NEAR(ep_ising_threshold(tied, 4, 4), 1.0, 0);
    }
}

/* p from section 5's formulas, written out again. */
static void ref_probabilities(const double *ebar, const double *norms,
                              int n, int n_keep, double t, double *p)
{
    double sorted[64], tau, emin = INFINITY, sum = 0.0;
    int i;

    memcpy(sorted, norms, (size_t)n * sizeof *norms);
    qsort(sorted, (size_t)n, sizeof sorted[0], cmp_desc);
    tau = sorted[n_keep - 1];
    for (i = 0; i < n; i++)
        if (ebar != NULL && ebar[i] < emin)
            emin = ebar[i];
    for (i = 0; i < n; i++) {
        double u = ebar != NULL ? exp(-(ebar[i] - emin) / t) : 1.0;

        p[i] = norms[i] >= tau ? u : u * norms[i] / tau;
        sum += p[i];
    }
    for (i = 0; i < n; i++)
        p[i] /= sum;
}

static double ref_perplexity(const double *p, int n)
{
    double h = 0.0;
    int i;

    for (i = 0; i < n; i++)
        if (p[i] > 0)
            h -= p[i] * log(p[i]);
    return exp(h);
}

static void test_temperature(void)
{
    enum { N = 40, KEEP = 10 };
    double ebar[N], norms[N], p[N], ref[N], t, target;
    ep_rng rng;
    int i, m = 13;

    ep_rng_seed(&rng, 5);
    for (i = 0; i < N; i++) {
        ebar[i] = -fabs(ep_rng_normal(&rng));
        norms[i] = 0.5 + ep_rng_uniform(&rng);
    }

    /* Reachable target: (m + N) / 2. */
    target = 0.5 * (m + N);
    t = ep_ising_calibrate_temperature(ebar, norms, N, KEEP, target, p);
    ref_probabilities(ebar, norms, N, KEEP, t, ref);
    CHECK_NEAR(ref_perplexity(ref, N), target, 1e-6);
    for (i = 0; i < N; i++)
        CHECK_NEAR(p[i], ref[i], 1e-9);
    ep_ising_probabilities(ebar, norms, N, KEEP, t, p);
    for (i = 0; i < N; i++)
        CHECK_NEAR(p[i], ref[i], 1e-12);

    /* Unreachable (>= N): the hot end, p follows the norms alone. */
    t = ep_ising_calibrate_temperature(ebar, norms, N, KEEP, N + 5.0, p);
    ref_probabilities(NULL, norms, N, KEEP, 1.0, ref);
    for (i = 0; i < N; i++)
        CHECK_NEAR(p[i], ref[i], 1e-3);
    CHECK(ref_perplexity(p, N) < N + 5.0);

    /* Equal energies: the temperature plays no part. */
    for (i = 0; i < N; i++)
        ebar[i] = -1.0;
    t = ep_ising_calibrate_temperature(ebar, norms, N, KEEP, target, p);
    CHECK(t > 0.0);
    ref_probabilities(NULL, norms, N, KEEP, 1.0, ref);
    for (i = 0; i < N; i++)
        CHECK_NEAR(p[i], ref[i], 1e-12);
}

/* ---- sampling ---------------------------------------------------------- */

static void test_sampling(void)
{
    enum { N = 5, DRAWS = 100000 };
    static const double p[N] = {0.4, 0.3, 0.2, 0.1, 0.0};
    double freq[N] = {0}, expect;
    unsigned char mask[N];
    ep_rng rng;
    ep_error err;
    int d, i, j, count, all_two = 1;

    /* Two draws without replacement: P(i) = p_i + sum_j p_j p_i/(1-p_j). */
    ep_rng_seed(&rng, 21);
    for (d = 0; d < DRAWS; d++) {
        REQUIRE(ep_ising_sample(&rng, p, N, 2, mask, &err) == EP_OK);
        for (i = 0, count = 0; i < N; i++) {
            freq[i] += mask[i];
            count += mask[i];
        }
        all_two &= count == 2;
    }
    CHECK(all_two);
    for (i = 0; i < N; i++) {
        expect = p[i];
        for (j = 0; j < N; j++)
            if (j != i)
                expect += p[j] * p[i] / (1.0 - p[j]);
        CHECK_NEAR(freq[i] / DRAWS, expect, 0.006);
    }

    /* More draws than units with weight: the rest is filled uniformly. */
    REQUIRE(ep_ising_sample(&rng, p, N, 5, mask, &err) == EP_OK);
    for (i = 0; i < N; i++)
        CHECK_EQ_INT(mask[i], 1);
    CHECK_EQ_INT(ep_ising_sample(&rng, p, N, 6, mask, &err), EP_EINVAL);
}

/* The round keeps the lowest-energy candidate among those the same
 * generator stream draws. */
static void test_round(void)
{
    enum { N = 8, C = 6, G = 8, M = 4 };
    double r[N * C], a[N * N], h, p[N], best_e = INFINITY, e;
    unsigned char mask[N], cand[N], best[N];
    ep_rng rng, replay;
    ep_error err;
    int i, i2, g, trial;

    for (trial = 0; trial < 20; trial++) {
        ep_rng_seed(&rng, 100 + trial);
        random_importance(&rng, r, N, C);
        REQUIRE(ep_ising_coupling(r, N, C, a, &h, &err) == EP_OK);
        for (i = 0; i < N; i++)
            p[i] = 1.0 / N;
        replay = rng;
        REQUIRE(ep_ising_round(&rng, p, a, h, N, M, G, mask, &e, &err) ==
                EP_OK);
        best_e = INFINITY;
        for (g = 0; g < G; g++) {
            double eg = -h * M;

            REQUIRE(ep_ising_sample(&replay, p, N, M, cand, &err) == EP_OK);
            for (i = 0; i < N; i++)
                for (i2 = i + 1; i2 < N; i2++)
                    eg += a[i * N + i2] * cand[i] * cand[i2];
            if (eg < best_e) {
                best_e = eg;
                memcpy(best, cand, N);
            }
        }
        CHECK(memcmp(mask, best, N) == 0);
        CHECK_NEAR(e, best_e, 1e-12);
    }
}

/* ---- fusion ------------------------------------------------------------ */

static void test_fusion(void)
{
    /* Counts over 4 masks of 5 units: 3, 2, 2, 2, 1. */
    static const unsigned char masks[4 * 5] = {
        1, 1, 0, 1, 0,
        1, 0, 1, 0, 1,
        1, 1, 1, 0, 0,
        0, 0, 0, 1, 0,
    };
    double p[5] = {0.2, 0.2, 0.2, 0.3, 0.1};
    double norms[5] = {1, 1, 2, 1, 1};
    int keep[3];
    ep_error err;

    /* Unit 0 leads; among 1, 2, 3 (count 2) unit 3 has the higher p. */
    REQUIRE(ep_ising_fuse(masks, 4, 5, 2, p, norms, keep, &err) == EP_OK);
    CHECK(keep[0] == 0 && keep[1] == 3);
    /* Equal p among 1, 2, 3: unit 2 has the higher norm. */
    p[3] = 0.2;
    REQUIRE(ep_ising_fuse(masks, 4, 5, 2, p, norms, keep, &err) == EP_OK);
    CHECK(keep[0] == 0 && keep[1] == 2);
    /* Equal p and norm: the lower index, and output in increasing order. */
    norms[2] = 1;
    REQUIRE(ep_ising_fuse(masks, 4, 5, 3, p, norms, keep, &err) == EP_OK);
    CHECK(keep[0] == 0 && keep[1] == 1 && keep[2] == 2);
    CHECK_EQ_INT(ep_ising_fuse(masks, 4, 5, 0, p, norms, keep, &err),
                 EP_EINVAL);
}

static void test_top_k(void)
{
    double score[6] = {0.5, 2.0, 0.5, 3.0, 0.5, -1.0};
    int keep[4];
    ep_error err;

    REQUIRE(ep_ising_top_k(score, 6, 4, keep, &err) == EP_OK);
    CHECK(keep[0] == 0 && keep[1] == 1 && keep[2] == 2 && keep[3] == 3);
    CHECK_EQ_INT(ep_ising_top_k(score, 6, 7, keep, &err), EP_EINVAL);
}

int main(void)
{
    test_importance();
    test_importance_offset();
    test_energy_brute_force();
    test_coupling_zero_row();
    test_mean_output_energy();
    test_threshold();
    test_temperature();
    test_sampling();
    test_round();
    test_fusion();
    test_top_k();
    return check_exit();
}
