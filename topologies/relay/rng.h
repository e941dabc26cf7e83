/* The delay line's random numbers: CPython's Mersenne Twister, bit for bit.
 *
 * The reference link model (topologies/linkmodel.py) draws from Python's random.Random; this is
 * the same generator (MT19937, seeded as random.seed(int) seeds it) with the same random() and
 * gauss(), so a seeded trace gives the same losses and jitter in both. */
#ifndef WANMIG_RNG_H
#define WANMIG_RNG_H

#include <stdint.h>

struct rng {
    uint32_t mt[624];
    int mti;
    int has_gauss;        /* gauss() makes two values; the second is kept for the next call */
    double gauss_next;
};

void rng_seed(struct rng *r, uint64_t seed);   /* random.seed(seed), seed >= 0 */
double rng_random(struct rng *r);              /* random.random(): [0, 1), 53 bits */
double rng_gauss(struct rng *r, double mu, double sigma);   /* random.gauss(mu, sigma) */

#endif
