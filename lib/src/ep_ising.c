/*
 * ep_ising.c - the numerical steps of Ising-energy coreset pruning on
 * plain arrays: importance matrix, energies, sampling probabilities with a
 * calibrated temperature, sampling, coreset rounds and mask fusion.
 */
#include "ecgprune/ep_ising.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Added to the denominator of r_ij so that an output whose share is
 * identically zero gives r = 0 rather than 0/0. */
#define ISING_EPS 1e-12

/* Bisection steps on log T: the bracket spans 8 decades, so 60 halvings
 * pin log T far below any precision the perplexity can show. */
#define TEMPERATURE_STEPS 60

/* Work space of ep_ising_importance, freed in one place. */
typedef struct importance_work {
    int *chans;        /* consumer inputs of this group, n_group entries */
    float *wg;         /* weights restricted to them: C x n_group x K */
    float *xg;         /* one batch item restricted to them */
    float *col;        /* its im2col matrix: n_group*K x out_len */
    float *y;          /* this group's share of the outputs: C x out_len */
    float *gw;         /* one item's weight gradient: C x n_group*K */
    double *gw_sum;    /* summed over the batch */
    double *den;       /* sum_k |y^j_k| per output */
} importance_work;

static void importance_work_free(importance_work *w)
{
    free(w->chans);
    free(w->wg);
    free(w->xg);
    free(w->col);
    free(w->y);
    free(w->gw);
    free(w->gw_sum);
    free(w->den);
}

/* Allocate the work space for n_group channels of geometry gg. */
static int importance_work_alloc(importance_work *w, const ep_conv_geom *gg,
                                 ep_error *err)
{
    size_t c = (size_t)gg->out_ch, nk = (size_t)gg->in_ch * gg->kernel;

    w->wg = malloc(c * nk * sizeof *w->wg);
    w->xg = malloc((size_t)gg->in_ch * gg->in_len * sizeof *w->xg);
    w->col = malloc(nk * gg->out_len * sizeof *w->col);
    w->y = malloc(c * gg->out_len * sizeof *w->y);
    w->gw = malloc(c * nk * sizeof *w->gw);
    w->gw_sum = calloc(c * nk, sizeof *w->gw_sum);
    w->den = calloc(c, sizeof *w->den);
    if (!w->wg || !w->xg || !w->col || !w->y || !w->gw || !w->gw_sum ||
        !w->den)
        return ep_error_set(err, EP_ENOMEM,
                            "importance: out of memory for %zu x %zu",
                            c, nk);
    return EP_OK;
}

/* Accumulate one batch item: y = Wg * col, S = sgn(y), Gw += S * col^T. */
static void importance_item(const ep_conv_geom *gg, importance_work *w,
                            const float *x_item, const ep_conv_geom *g)
{
    int c = gg->out_ch, nk = gg->in_ch * gg->kernel, len = gg->out_len;
    int n, j, t;
    size_t q;

    for (n = 0; n < gg->in_ch; n++)
        memcpy(w->xg + (size_t)n * g->in_len,
               x_item + (size_t)w->chans[n] * g->in_len,
               (size_t)g->in_len * sizeof *w->xg);
    ep_conv_im2col(gg, w->xg, w->col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c, len, nk, 1.0f,
                w->wg, nk, w->col, len, 0.0f, w->y, len);

    /* Turn y into its sign in place, keeping sum |y| per output. */
    for (j = 0; j < c; j++) {
        float *yj = w->y + (size_t)j * len;
        double s = 0.0;

        for (t = 0; t < len; t++) {
            s += fabs((double)yj[t]);
            yj[t] = yj[t] > 0.0f ? 1.0f : (yj[t] < 0.0f ? -1.0f : 0.0f);
        }
        w->den[j] += s;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c, nk, len, 1.0f,
                w->y, len, w->col, len, 0.0f, w->gw, nk);
    for (q = 0; q < (size_t)c * nk; q++)
        w->gw_sum[q] += w->gw[q];
}

int ep_ising_importance(const ep_conv_geom *g, const float *weight,
                        const float *x, int batch, const int *unit_of,
                        int n_units, double *r, int ld_r, ep_error *err)
{
    importance_work w;
    ep_conv_geom gg;
    int n, ng = 0, i, j, k, b, rc;
    int c = g->out_ch, kk = g->kernel;

    memset(&w, 0, sizeof w);
    for (i = 0; i < n_units; i++)
        for (j = 0; j < c; j++)
            r[(size_t)i * ld_r + j] = 0.0;
    w.chans = malloc((size_t)g->in_ch * sizeof *w.chans);
    if (w.chans == NULL)
        return ep_error_set(err, EP_ENOMEM, "importance: out of memory");

    /* The consumer inputs that belong to this group. */
    for (n = 0; n < g->in_ch; n++) {
        if (unit_of[n] >= n_units) {
            free(w.chans);
            return ep_error_set(err, EP_EINVAL,
                                "importance: input %d maps to unit %d of %d",
                                n, unit_of[n], n_units);
        }
        if (unit_of[n] >= 0)
            w.chans[ng++] = n;
    }
    if (ng == 0) {
        free(w.chans);
        return EP_OK;
    }

    /* The same convolution on the group's channels only. */
    gg = *g;
    gg.in_ch = ng;
    rc = importance_work_alloc(&w, &gg, err);
    if (rc != EP_OK) {
        importance_work_free(&w);
        return rc;
    }
    for (j = 0; j < c; j++)
        for (n = 0; n < ng; n++)
            memcpy(w.wg + ((size_t)j * ng + n) * kk,
                   weight + ((size_t)j * g->in_ch + w.chans[n]) * kk,
                   (size_t)kk * sizeof *w.wg);
    for (b = 0; b < batch; b++)
        importance_item(&gg, &w, x + (size_t)b * g->in_ch * g->in_len, g);

    /* sum_k sgn(y^j_k) y^{nj}_k = sum_k W[j,n,k] Gw[j,n,k], summed over
     * the inputs n of each unit, over sum_k |y^j_k|. */
    for (j = 0; j < c; j++) {
        for (n = 0; n < ng; n++) {
            size_t off = ((size_t)j * ng + n) * kk;
            double s = 0.0;

            for (k = 0; k < kk; k++)
                s += (double)w.wg[off + k] * w.gw_sum[off + k];
            r[(size_t)unit_of[w.chans[n]] * ld_r + j] += s;
        }
        for (i = 0; i < n_units; i++)
            r[(size_t)i * ld_r + j] /= ISING_EPS + w.den[j];
    }
    importance_work_free(&w);
    return EP_OK;
}

int ep_ising_coupling(const double *r, int n, int c, double *a, double *h,
                      ep_error *err)
{
    double *norm = malloc((size_t)(n > 0 ? n : 1) * sizeof *norm);
    double total = 0.0;
    int i, i2, j;

    if (norm == NULL)
        return ep_error_set(err, EP_ENOMEM, "coupling: out of memory");
    for (i = 0; i < n; i++) {
        double s = 0.0;

        for (j = 0; j < c; j++)
            s += r[(size_t)i * c + j] * r[(size_t)i * c + j];
        norm[i] = sqrt(s);
    }
    for (i = 0; i < n; i++) {
        a[(size_t)i * n + i] = 0.0;
        for (i2 = i + 1; i2 < n; i2++) {
            double dot = 0.0, v = 0.0;

            for (j = 0; j < c; j++)
                dot += r[(size_t)i * c + j] * r[(size_t)i2 * c + j];
            if (norm[i] > 0.0 && norm[i2] > 0.0)
                v = fabs(dot) / (norm[i] * norm[i2]);
            a[(size_t)i * n + i2] = v;
            a[(size_t)i2 * n + i] = v;
            total += 2.0 * v;
        }
    }
    free(norm);
    *h = n > 0 ? total / n : 0.0;
    return EP_OK;
}

double ep_ising_energy(const double *a, double h, int n,
                       const unsigned char *mask)
{
    double e = 0.0;
    int i, i2, kept = 0;

    for (i = 0; i < n; i++) {
        if (!mask[i])
            continue;
        kept++;
        for (i2 = i + 1; i2 < n; i2++)
            if (mask[i2])
                e += a[(size_t)i * n + i2];
    }
    return e - h * kept;
}

void ep_ising_mean_output_energy(const double *r, int n, int c, double rho,
                                 double *ebar)
{
    int i, j;

    for (i = 0; i < n; i++) {
        double s = 0.0, s2 = 0.0;

        for (j = 0; j < c; j++) {
            s += r[(size_t)i * c + j];
            s2 += r[(size_t)i * c + j] * r[(size_t)i * c + j];
        }
        ebar[i] = -(rho + 0.5 * rho * rho) * (s * s - s2);
    }
}

double ep_ising_threshold(const double *norms, int n, int n_keep)
{
    int i, i2;

    /* The n_keep-th largest value v has fewer than n_keep values above it
     * and at least n_keep at or above it.  Quadratic, without allocation;
     * groups have at most a few thousand units. */
    if (n <= 0)
        return 0.0;
    n_keep = n_keep < 1 ? 1 : (n_keep > n ? n : n_keep);
    for (i = 0; i < n; i++) {
        int above = 0, at_or_above = 0;

        for (i2 = 0; i2 < n; i2++) {
            above += norms[i2] > norms[i];
            at_or_above += norms[i2] >= norms[i];
        }
        if (above < n_keep && at_or_above >= n_keep)
            return norms[i];
    }
    return norms[0];   /* only reached when a norm is NaN */
}

/* The probabilities for a given threshold (so that the calibration finds
 * the threshold once). */
static void probabilities_tau(const double *ebar, const double *norms,
                              int n, double tau, double t, double *p)
{
    double emin = 0.0, sum = 0.0;
    int i;

    if (ebar != NULL) {
        emin = ebar[0];
        for (i = 1; i < n; i++)
            emin = ebar[i] < emin ? ebar[i] : emin;
    }
    for (i = 0; i < n; i++) {
        double u = ebar != NULL ? exp(-(ebar[i] - emin) / t) : 1.0;

        p[i] = norms[i] >= tau ? u : u * norms[i] / tau;
        sum += p[i];
    }
    for (i = 0; i < n; i++)
        p[i] = sum > 0.0 ? p[i] / sum : 1.0 / n;
}

void ep_ising_probabilities(const double *ebar, const double *norms, int n,
                            int n_keep, double t, double *p)
{
    probabilities_tau(ebar, norms, n, ep_ising_threshold(norms, n, n_keep),
                      t, p);
}

double ep_ising_perplexity(const double *p, int n)
{
    double h = 0.0;
    int i;

    for (i = 0; i < n; i++)
        if (p[i] > 0.0)
            h -= p[i] * log(p[i]);
    return exp(h);
}

double ep_ising_calibrate_temperature(const double *ebar,
                                      const double *norms, int n, int n_keep,
                                      double target, double *p)
{
    double tau = ep_ising_threshold(norms, n, n_keep);
    double emin, emax, lo, hi;
    int i, step;

    if (n <= 0)
        return 1.0;
    emin = emax = ebar[0];
    for (i = 1; i < n; i++) {
        emin = ebar[i] < emin ? ebar[i] : emin;
        emax = ebar[i] > emax ? ebar[i] : emax;
    }
    if (!(emax > emin)) {
        probabilities_tau(NULL, norms, n, tau, 1.0, p);
        return 1.0;
    }

    /* Hot end: the norms alone; cold end: a spike on the lowest energy.
     * Outside the reachable range, stop at the nearer end. */
    lo = log((emax - emin) * 1e-4);
    hi = log((emax - emin) * 1e4);
    probabilities_tau(ebar, norms, n, tau, exp(hi), p);
    if (ep_ising_perplexity(p, n) <= target)
        return exp(hi);
    probabilities_tau(ebar, norms, n, tau, exp(lo), p);
    if (ep_ising_perplexity(p, n) >= target)
        return exp(lo);

    /* Bisection keeps lo below and hi above the target. */
    for (step = 0; step < TEMPERATURE_STEPS; step++) {
        double mid = 0.5 * (lo + hi);

        probabilities_tau(ebar, norms, n, tau, exp(mid), p);
        if (ep_ising_perplexity(p, n) < target)
            lo = mid;
        else
            hi = mid;
    }
    probabilities_tau(ebar, norms, n, tau, exp(0.5 * (lo + hi)), p);
    return exp(0.5 * (lo + hi));
}

int ep_ising_sample(ep_rng *rng, const double *p, int n, int m,
                    unsigned char *mask, ep_error *err)
{
    int draw, i;

    if (m < 0 || m > n)
        return ep_error_set(err, EP_EINVAL,
                            "sampling: %d of %d units, expected 0..%d", m, n,
                            n);
    memset(mask, 0, (size_t)n);
    for (draw = 0; draw < m; draw++) {
        double total = 0.0, u, acc = 0.0;
        int last = -1, pick = -1;

        for (i = 0; i < n; i++)
            if (!mask[i])
                total += p[i];

        /* All remaining weight zero: uniform among the remaining. */
        if (!(total > 0.0)) {
            uint64_t k = ep_rng_below(rng, (uint64_t)(n - draw));

            for (i = 0; i < n && pick < 0; i++)
                if (!mask[i] && k-- == 0)
                    pick = i;
            mask[pick] = 1;
            continue;
        }

        /* Walk the cumulative weights; rounding can leave u just past the
         * end, which then falls to the last unit with weight. */
        u = ep_rng_uniform(rng) * total;
        for (i = 0; i < n && pick < 0; i++) {
            if (mask[i] || !(p[i] > 0.0))
                continue;
            last = i;
            acc += p[i];
            if (u < acc)
                pick = i;
        }
        mask[pick >= 0 ? pick : last] = 1;
    }
    return EP_OK;
}

int ep_ising_round(ep_rng *rng, const double *p, const double *a, double h,
                   int n, int m, int n_candidates, unsigned char *mask,
                   double *energy, ep_error *err)
{
    unsigned char *cand;
    double best = INFINITY;
    int c, rc;

    if (n_candidates < 1)
        return ep_error_set(err, EP_EINVAL,
                            "coreset round: %d candidates, expected >= 1",
                            n_candidates);
    cand = malloc((size_t)(n > 0 ? n : 1));
    if (cand == NULL)
        return ep_error_set(err, EP_ENOMEM, "coreset round: out of memory");
    for (c = 0; c < n_candidates; c++) {
        double e;

        rc = ep_ising_sample(rng, p, n, m, cand, err);
        if (rc != EP_OK) {
            free(cand);
            return rc;
        }
        e = a != NULL ? ep_ising_energy(a, h, n, cand) : 0.0;
        if (c == 0 || e < best) {
            best = e;
            memcpy(mask, cand, (size_t)n);
        }
        if (a == NULL)
            break;
    }
    free(cand);
    if (energy != NULL)
        *energy = best;
    return EP_OK;
}

/* Ranking record of the fusion and of top-k. */
typedef struct rank_item {
    int index;
    double key[3];      /* compared in order, larger first */
} rank_item;

static int cmp_rank(const void *pa, const void *pb)
{
    const rank_item *a = pa, *b = pb;
    int k;

    for (k = 0; k < 3; k++)
        if (a->key[k] != b->key[k])
            return a->key[k] > b->key[k] ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

static int cmp_int(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;

    return (a > b) - (a < b);
}

/* Sort items by rank and write the first k indices in increasing order. */
static void take_top(rank_item *items, int n, int k, int *keep)
{
    int i;

    qsort(items, (size_t)n, sizeof *items, cmp_rank);
    for (i = 0; i < k; i++)
        keep[i] = items[i].index;
    qsort(keep, (size_t)k, sizeof *keep, cmp_int);
}

int ep_ising_fuse(const unsigned char *masks, int n_masks, int n,
                  int n_keep, const double *p, const double *norms,
                  int *keep, ep_error *err)
{
    rank_item *items;
    int i, l;

    if (n_keep < 1 || n_keep > n)
        return ep_error_set(err, EP_EINVAL,
                            "fusion: keep %d of %d units", n_keep, n);
    items = calloc((size_t)n, sizeof *items);
    if (items == NULL)
        return ep_error_set(err, EP_ENOMEM, "fusion: out of memory");
    for (i = 0; i < n; i++) {
        items[i].index = i;
        for (l = 0; l < n_masks; l++)
            items[i].key[0] += masks[(size_t)l * n + i] ? 1.0 : 0.0;
        items[i].key[1] = p[i];
        items[i].key[2] = norms[i];
    }
    take_top(items, n, n_keep, keep);
    free(items);
    return EP_OK;
}

int ep_ising_top_k(const double *score, int n, int k, int *keep,
                   ep_error *err)
{
    rank_item *items;
    int i;

    if (k < 1 || k > n)
        return ep_error_set(err, EP_EINVAL, "top-k: %d of %d", k, n);
    items = calloc((size_t)n, sizeof *items);
    if (items == NULL)
        return ep_error_set(err, EP_ENOMEM, "top-k: out of memory");
    for (i = 0; i < n; i++) {
        items[i].index = i;
        items[i].key[0] = score[i];
    }
    take_top(items, n, k, keep);
    free(items);
    return EP_OK;
}
