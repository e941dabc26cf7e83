/* CPython's Modules/_randommodule.c algorithm (MT19937 by Matsumoto and Nishimura) and
 * Lib/random.py's gauss(): see rng.h. */
#include "rng.h"

#include <math.h>

#define N 624
#define M 397
#define MATRIX_A 0x9908b0dfU
#define UPPER_MASK 0x80000000U
#define LOWER_MASK 0x7fffffffU

static void init_genrand(struct rng *r, uint32_t s)
{
    r->mt[0] = s;
    for (int i = 1; i < N; i++)
        r->mt[i] = 1812433253U * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->mti = N;
}

static void init_by_array(struct rng *r, const uint32_t *key, int len)
{
    init_genrand(r, 19650218U);
    int i = 1, j = 0;
    for (int k = N > len ? N : len; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525U))
                   + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= N) {
            r->mt[0] = r->mt[N - 1];
            i = 1;
        }
        if (j >= len)
            j = 0;
    }
    for (int k = N - 1; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941U))
                   - (uint32_t)i;
        i++;
        if (i >= N) {
            r->mt[0] = r->mt[N - 1];
            i = 1;
        }
    }
    r->mt[0] = 0x80000000U;
}

void rng_seed(struct rng *r, uint64_t seed)
{
    /* random.seed(n) for an int n >= 0: its 32-bit words, least significant first (one word
     * for 0). */
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    init_by_array(r, key, key[1] ? 2 : 1);
    r->has_gauss = 0;
    r->gauss_next = 0.0;
}

static uint32_t genrand(struct rng *r)
{
    static const uint32_t mag01[2] = {0U, MATRIX_A};
    uint32_t y;
    if (r->mti >= N) {
        int kk;
        for (kk = 0; kk < N - M; kk++) {
            y = (r->mt[kk] & UPPER_MASK) | (r->mt[kk + 1] & LOWER_MASK);
            r->mt[kk] = r->mt[kk + M] ^ (y >> 1) ^ mag01[y & 1U];
        }
        for (; kk < N - 1; kk++) {
            y = (r->mt[kk] & UPPER_MASK) | (r->mt[kk + 1] & LOWER_MASK);
            r->mt[kk] = r->mt[kk + (M - N)] ^ (y >> 1) ^ mag01[y & 1U];
        }
        y = (r->mt[N - 1] & UPPER_MASK) | (r->mt[0] & LOWER_MASK);
        r->mt[N - 1] = r->mt[M - 1] ^ (y >> 1) ^ mag01[y & 1U];
        r->mti = 0;
    }
    y = r->mt[r->mti++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

double rng_random(struct rng *r)
{
    uint32_t a = genrand(r) >> 5, b = genrand(r) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

double rng_gauss(struct rng *r, double mu, double sigma)
{
    double z;
    if (r->has_gauss) {
        z = r->gauss_next;
        r->has_gauss = 0;
    } else {
        double x2pi = rng_random(r) * (2.0 * M_PI);
        double g2rad = sqrt(-2.0 * log(1.0 - rng_random(r)));
        z = cos(x2pi) * g2rad;
        r->gauss_next = sin(x2pi) * g2rad;
        r->has_gauss = 1;
    }
    return mu + z * sigma;
}
