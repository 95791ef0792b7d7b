/*
 * ep_rng.c - xoshiro256** seeded through splitmix64 (both public-domain
 * algorithms by Blackman and Vigna), written from their published
 * definitions.
 */
#include "ecgprune/ep_rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void ep_rng_seed(ep_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    int i;

    for (i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

uint64_t ep_rng_next(ep_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ep_rng_uniform(ep_rng *rng)
{
    return (double)(ep_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t ep_rng_below(ep_rng *rng, uint64_t n)
{
    /* Reject the top partial range so that every value is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;

    do {
        x = ep_rng_next(rng);
    } while (x >= limit);
    return x % n;
}

double ep_rng_normal(ep_rng *rng)
{
    /* Box-Muller; the second value is dropped to keep the state simple. */
    double u1 = 1.0 - ep_rng_uniform(rng);
    double u2 = ep_rng_uniform(rng);

    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
