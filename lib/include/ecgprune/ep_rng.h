/*
 * ep_rng.h - the one seeded random generator every random choice uses
 * (training shuffles and augmentation, pruning's sampling).  A small
 * counter-free xoshiro256** state seeded through splitmix64, so the same
 * seed gives the same stream on every machine.
 */
#ifndef ECGPRUNE_EP_RNG_H
#define ECGPRUNE_EP_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ep_rng {
    uint64_t s[4];
} ep_rng;

void ep_rng_seed(ep_rng *rng, uint64_t seed);
uint64_t ep_rng_next(ep_rng *rng);
/* Uniform in [0, 1). */
double ep_rng_uniform(ep_rng *rng);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t ep_rng_below(ep_rng *rng, uint64_t n);
/* Standard normal. */
double ep_rng_normal(ep_rng *rng);

#ifdef __cplusplus
}
#endif

#endif
