/* rng.c - PCG32 (XSH-RR 64/32), written from O'Neill's published algorithm. */
#include "config.h"

#include <math.h>

#include "plast/rng.h"

#define PCG_MULT 6364136223846793005ULL

static void step(plast_rng *r)
{
    r->state = r->state * PCG_MULT + r->inc;
}

void plast_rng_seed(plast_rng *r, uint64_t initstate, uint64_t initseq)
{
    r->state = 0;
    r->inc = (initseq << 1) | 1u;
    step(r);
    r->state += initstate;
    step(r);
}

void plast_rng_stream(plast_rng *r, uint64_t seed, plast_stream purpose, uint32_t index)
{
    plast_rng_seed(r, seed, ((uint64_t)purpose << 32) | index);
}

uint32_t plast_rng_u32(plast_rng *r)
{
    uint64_t old = r->state;
    step(r);
    uint32_t x = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (x >> rot) | (x << ((-rot) & 31u)); /* the mask avoids a shift by 32 */
}

uint32_t plast_rng_below(plast_rng *r, uint32_t bound)
{
    if (bound == 0)
        return 0;
    uint32_t threshold = (uint32_t)(-bound) % bound;
    for (;;) {
        uint32_t x = plast_rng_u32(r);
        if (x >= threshold)
            return x % bound;
    }
}

float plast_u32_to_float(uint32_t x)
{
    return (float)(x >> 8) * 0x1p-24f; /* 24 bits: exact, so never 1.0f */
}

float plast_rng_float(plast_rng *r)
{
    return plast_u32_to_float(plast_rng_u32(r));
}

float plast_rng_uniform(plast_rng *r, float a, float b)
{
    float x = a + (b - a) * plast_rng_float(r);
    /* The sum can round up to b (a = 1, b = 2, float = 1 - 2^-24): keep
     * the range half-open. */
    if (a < b && x >= b)
        x = nextafterf(b, a);
    return x;
}

void plast_rng_normal2(plast_rng *r, double out[2])
{
    const double two_pi = 6.283185307179586476925286766559;
    double u1 = (double)((plast_rng_u32(r) >> 8) + 1) * 0x1p-24; /* (0, 1] */
    double u2 = (double)(plast_rng_u32(r) >> 8) * 0x1p-24;
    double rad = sqrt(-2.0 * log(u1));
    out[0] = rad * cos(two_pi * u2);
    out[1] = rad * sin(two_pi * u2);
}

void plast_rng_advance(plast_rng *r, uint64_t delta)
{
    /* Brown, "Random number generation with arbitrary strides" (1994):
     * compose the affine step x -> a x + c with itself by squaring. */
    uint64_t acc_mult = 1, acc_plus = 0;
    uint64_t cur_mult = PCG_MULT, cur_plus = r->inc;
    while (delta) {
        if (delta & 1u) {
            acc_mult *= cur_mult;
            acc_plus = acc_plus * cur_mult + cur_plus;
        }
        cur_plus = (cur_mult + 1) * cur_plus;
        cur_mult *= cur_mult;
        delta >>= 1;
    }
    r->state = acc_mult * r->state + acc_plus;
}
