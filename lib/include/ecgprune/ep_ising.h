/*
 * ep_ising.h - the numerical steps of Ising-energy coreset pruning on
 * plain arrays: the importance matrix of a group's channels, the two
 * Ising energies, the adaptive-threshold sampling probabilities with a
 * calibrated temperature, sampling without replacement, one coreset round
 * and the fusion of the mask list (docs/pruning.md, sections 3 to 6).
 *
 * The pruning driver (ep_prune.h) feeds these with a network's weights
 * and captured activations; they know nothing of networks themselves.
 * "Unit" below is what the driver prunes as one piece: a producer channel,
 * or two producer channels tied together by an IDWT.  Matrices are dense
 * row-major doubles.
 */
#ifndef ECGPRUNE_EP_ISING_H
#define ECGPRUNE_EP_ISING_H

#include <stddef.h>

#include "ecgprune/ep_error.h"
#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * One consumer's columns of the importance matrix R (section 3) by the
 * one-pass weight-gradient form.  g is the consumer's geometry on its
 * whole input, weight its C x in_ch x K weights, x a batch of its inputs
 * (batch x in_ch x in_len).  unit_of[n] is the unit consumer input n is
 * derived from, or -1 when it belongs to another group (such inputs take
 * no part: y^j is this group's share only, without bias).  Writes
 * r[i * ld_r + j] for units i < n_units and outputs j < C; entries of an
 * output whose share is identically zero are 0.
 */
int ep_ising_importance(const ep_conv_geom *g, const float *weight,
                        const float *x, int batch, const int *unit_of,
                        int n_units, double *r, int ld_r, ep_error *err);

/* Coupling A[i][i'] = |cos(r_i, r_i')| (0 on the diagonal and for a zero
 * row) of the n x c matrix r, and the bias h = (sum of A) / n. */
int ep_ising_coupling(const double *r, int n, int c, double *a, double *h,
                      ep_error *err);

/* E(s) = sum_{i<i'} A[i][i'] s_i s_i' - h sum_i s_i for a 0/1 mask. */
double ep_ising_energy(const double *a, double h, int n,
                       const unsigned char *mask);

/* Closed-form mean output-channel energy of every unit (section 4):
 * ebar[i] = -(rho + rho^2/2) ((sum_j r_ij)^2 - sum_j r_ij^2). */
void ep_ising_mean_output_energy(const double *r, int n, int c, double rho,
                                 double *ebar);

/* The adaptive threshold: the n_keep-th largest of n norms. */
double ep_ising_threshold(const double *norms, int n, int n_keep);

/*
 * Sampling probabilities (section 5): u_i = exp(-(ebar_i - min ebar) / t)
 * (u_i = 1 when ebar is NULL, the filter level), scaled by n_i / tau below
 * the threshold tau of n_keep, normalised.  When every weight is zero the
 * distribution is uniform.
 */
void ep_ising_probabilities(const double *ebar, const double *norms, int n,
                            int n_keep, double t, double *p);

/* exp(-sum p_i ln p_i). */
double ep_ising_perplexity(const double *p, int n);

/*
 * The temperature whose probabilities have perplexity `target`, found by
 * bisection on log T between 1e-4 and 1e4 times the spread of ebar; when
 * the target lies outside what that range reaches, the nearer end is
 * taken.  Fills p at the chosen temperature and returns it (1 when all
 * energies are equal and the temperature plays no part).
 */
double ep_ising_calibrate_temperature(const double *ebar,
                                      const double *norms, int n, int n_keep,
                                      double target, double *p);

/*
 * Draw m distinct units with probabilities p, without replacement: each
 * draw picks among the units not yet drawn in proportion to p (uniformly
 * when their p are all zero).  Sets mask[i] = 1 for the drawn units.
 */
int ep_ising_sample(ep_rng *rng, const double *p, int n, int m,
                    unsigned char *mask, ep_error *err);

/*
 * One coreset round (section 6): draw n_candidates masks of m units and
 * keep the one of lowest E(s) (the first drawn on a tie).  a and h as
 * from ep_ising_coupling; a may be NULL for no energy selection, which
 * keeps the first candidate.  *energy (may be NULL) gets E of the winner.
 */
int ep_ising_round(ep_rng *rng, const double *p, const double *a, double h,
                   int n, int m, int n_candidates, unsigned char *mask,
                   double *energy, ep_error *err);

/*
 * Fusion: keep the n_keep units that appear most often in the n_masks
 * masks (each n bytes, consecutive); ties go to higher p, then higher
 * norm, then lower index.  keep receives the indices in increasing order.
 */
int ep_ising_fuse(const unsigned char *masks, int n_masks, int n,
                  int n_keep, const double *p, const double *norms,
                  int *keep, ep_error *err);

/* The k largest scores (ties to the lower index), indices increasing. */
int ep_ising_top_k(const double *score, int n, int k, int *keep,
                   ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
