/* vtanh.h - tanh that vectorises, for the tanh layer and the rnn.
 *
 * libm's tanhf is a call per value; this one is straight-line float
 * arithmetic, so a loop over it vectorises at any width with the same
 * bits (no reduction; the build's -ffp-contract=off keeps FMA out). */
#ifndef PLAST_VTANH_H
#define PLAST_VTANH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* tanh(9) rounds to 1 in float: |z| is clamped there (these are its bits). */
#define VTANH_CLAMP_BITS 0x41100000
#define VTANH_INF_BITS 0x7f800000

static inline float vtanh_bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t vtanh_float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* tanh within 3 ulp, with no branch so that loops over it vectorise:
 * tanh|z| = -m / (2 + m), m = expm1(-2|z|) = 2^k (expm1(r) + 1) - 1 with
 * -2|z| = k ln 2 + r, |r| <= ln2/2, expm1(r) by its Taylor series to r^7
 * (the next term is below half an ulp).  NaN stays NaN. */
static inline float vtanh(float z)
{
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    /* |z| clamped on its bits, which order like the values; NaN's are above
     * infinity's and pass */
    int32_t bits = (int32_t)(vtanh_float_bits(z) & 0x7fffffffu);
    int32_t clamped = bits < VTANH_CLAMP_BITS ? bits : VTANH_CLAMP_BITS;
    float a = vtanh_bits_float((uint32_t)(bits > VTANH_INF_BITS ? bits : clamped));
    float v = -2.0f * a;
    float t = v * 1.44269504f + round_magic; /* v / ln 2, rounded */
    float kf = t - round_magic;
    int32_t k = (int32_t)(vtanh_float_bits(t) - vtanh_float_bits(round_magic));
    float r = (v - kf * 0.693145752f) - kf * 1.42860677e-06f; /* ln 2 in two parts */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = r + r * r * p;                                    /* expm1(r) */
    float scale = vtanh_bits_float((uint32_t)(k + 127) << 23); /* 2^k, k >= -26 */
    float m = scale * p + (scale - 1.0f);
    return copysignf(-m / (2.0f + m), z);
}

#endif
