/* quant.c - scalar quantisation helpers (plast/quant.h).
 *
 * The requantiser multiplies in 96 bits held in two uint64 words, so it
 * is exact for every int64 input without relying on a 128-bit type. */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include "plast/quant.h"

/* |acc| < 2^63 + 1 and mult < 2^31: the product is below 2^94, so any
 * shift from here on rounds it to zero. */
#define REQUANT_ZERO_SHIFT 96

double plast_quant_scale(double maxabs, double margin, int64_t qmax)
{
    if (!(margin > 0.0))
        margin = 1.0;
    if (!(maxabs > 0.0) || !isfinite(maxabs))
        return 1.0 / (double)qmax;
    return margin * maxabs / (double)qmax;
}

int64_t plast_quant_code(double x, double scale, int64_t qmax)
{
    double v = x / scale, lim = (double)qmax;
    if (isnan(v))
        return 0;
    /* clamp before converting: a huge quotient must not reach the cast */
    if (v > lim)
        v = lim;
    if (v < -lim)
        v = -lim;
    return plast_quant_saturate((int64_t)rint(v), qmax);
}

int plast_requant_init(plast_requant *rq, double multiplier, plast_err *e)
{
    if (!(multiplier > 0.0) || !(multiplier < 0x1p30))
        return plast_err_set(e, PLAST_E_INVAL,
                             "requantiser: expected a multiplier in (0, 2^30), found %.9g",
                             multiplier);
    int x;
    double f = frexp(multiplier, &x);
    int64_t m = (int64_t)rint(ldexp(f, 31));
    if (m == (int64_t)1 << 31) {
        m >>= 1;
        x++;
    }
    rq->mult = (int32_t)m;
    rq->shift = 31 - x;
    return PLAST_OK;
}

/* (hi:lo) = a * b for a < 2^64, b < 2^32. */
static void mul_64x32(uint64_t a, uint32_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t low = (a & 0xffffffffu) * b, high = (a >> 32) * b;
    *lo = low + (high << 32);
    *hi = (high >> 32) + (*lo < low);
}

/* round(|acc| * mult / 2^shift) with halves up, saturated to INT64_MAX. */
static uint64_t scale_magnitude(uint64_t mag, uint32_t mult, int shift)
{
    uint64_t hi, lo;
    mul_64x32(mag, mult, &hi, &lo);
    int s = shift - 1; /* add 2^(shift-1) */
    if (s < 64) {
        uint64_t old = lo;
        lo += (uint64_t)1 << s;
        hi += lo < old;
    } else {
        hi += (uint64_t)1 << (s - 64);
    }
    uint64_t q;
    if (shift < 64) {
        if (hi >> shift)
            return INT64_MAX;
        q = (lo >> shift) | (hi << (64 - shift));
    } else {
        q = hi >> (shift - 64);
    }
    return q > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : q;
}

int64_t plast_requant_apply(const plast_requant *rq, int64_t acc)
{
    if (rq->shift >= REQUANT_ZERO_SHIFT || acc == 0)
        return 0;
    uint64_t mag = acc < 0 ? 0u - (uint64_t)acc : (uint64_t)acc, u;
    if (mag >> 32 == 0 && rq->shift < 64) /* mag * mult + half < 2^64: one word */
        u = (mag * (uint32_t)rq->mult + ((uint64_t)1 << (rq->shift - 1))) >> rq->shift;
    else
        u = scale_magnitude(mag, (uint32_t)rq->mult, rq->shift);
    int64_t r = (int64_t)u;
    return acc < 0 ? -r : r;
}

double plast_requant_value(const plast_requant *rq)
{
    return ldexp((double)rq->mult, -rq->shift);
}
