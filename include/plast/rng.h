/* plast/rng.h - PCG32 random streams (O'Neill, PCG XSH-RR 64/32).
 *
 * One seed in the INI file derives one stream per purpose and index with
 * plast_rng_stream(), so a new layer or draw never shifts another purpose's
 * numbers.  A plast_rng is a plain value: copy it to save it. */
#ifndef PLAST_RNG_H
#define PLAST_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plast_rng {
    uint64_t state;
    uint64_t inc; /* always odd */
} plast_rng;

/* Purposes of the streams derived from the run's seed. */
typedef enum plast_stream {
    PLAST_STREAM_INIT = 1,    /* weight initialisation, index = layer */
    PLAST_STREAM_SHUFFLE = 2, /* data order, index = epoch */
    PLAST_STREAM_PROJ = 3,    /* fixed random projections, index = block */
    PLAST_STREAM_DROPOUT = 4, /* dropout masks, index = layer */
    PLAST_STREAM_PERTURB = 5, /* forward-gradient probes */
    PLAST_STREAM_DATA = 6,    /* synthetic and shifted data sets */
    PLAST_STREAM_SPLIT = 7    /* validation split */
} plast_stream;

/* The reference seeding: (initstate, initseq); each initseq is a stream. */
void plast_rng_seed(plast_rng *r, uint64_t initstate, uint64_t initseq);
/* seed(seed, purpose << 32 | index) */
void plast_rng_stream(plast_rng *r, uint64_t seed, plast_stream purpose, uint32_t index);

uint32_t plast_rng_u32(plast_rng *r);
/* Uniform in [0, bound) without bias; bound 0 returns 0. */
uint32_t plast_rng_below(plast_rng *r, uint32_t bound);
/* (x >> 8) * 2^-24: in [0, 1), never 1.0f. */
float plast_u32_to_float(uint32_t x);
float plast_rng_float(plast_rng *r);
/* a + (b - a) * float */
float plast_rng_uniform(plast_rng *r, float a, float b);
/* Standard normal pair by Box-Muller in double from two outputs:
 * u1 = ((x1 >> 8) + 1) * 2^-24, r = sqrt(-2 ln u1); out[0] = r cos(2 pi u2),
 * out[1] = r sin(2 pi u2). */
void plast_rng_normal2(plast_rng *r, double out[2]);
/* Jump `delta` steps (negative values, as two's complement, go back) in
 * O(log delta) (Brown's algorithm). */
void plast_rng_advance(plast_rng *r, uint64_t delta);

#ifdef __cplusplus
}
#endif
#endif
