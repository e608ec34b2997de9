/* plast/quant.h - scalar helpers of symmetric fixed-point quantisation.
 *
 * A real value v is stored as an integer code q with v ~ q * s, s > 0,
 * |q| <= qmax (symmetric: -qmax - 1 is never produced).  The fixed-point
 * engine (qmodel.h) is built from these; rules may use them for their own
 * tensors (perturbation codes, probes).
 *
 * Two rounding rules, each stated where it applies:
 * - quantising a real (plast_quant_code) uses rint(), i.e. ties to even in
 *   the default rounding mode, which plast never changes;
 * - requantising an integer (plast_requant_apply) rounds ties away from
 *   zero, so that the result is symmetric in the sign of the input. */
#ifndef PLAST_QUANT_H
#define PLAST_QUANT_H

#include <stdint.h>
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLAST_QMAX8 127
#define PLAST_QMAX16 32767
#define PLAST_QMAX32 2147483647

/* Scale for codes in [-qmax, qmax] that cover `margin` * maxabs:
 * margin * maxabs / qmax (computed in that order).  A maxabs of zero, or
 * one that is not finite, gives 1 / qmax (any scale represents a zero
 * tensor; this one keeps steps of one code meaningful).  margin <= 0 is
 * taken as 1. */
double plast_quant_scale(double maxabs, double margin, int64_t qmax);

/* rint(x / scale) saturated to [-qmax, qmax]; NaN gives 0.  scale > 0. */
int64_t plast_quant_code(double x, double scale, int64_t qmax);

/* v clamped to [-qmax, qmax]. */
static inline int64_t plast_quant_saturate(int64_t v, int64_t qmax)
{
    return v > qmax ? qmax : v < -qmax ? -qmax : v;
}

/* An integer multiplier: the real multiplier M is approximated by
 * mult * 2^-shift with mult in [2^30, 2^31) (31 significant bits, so the
 * relative error is at most 2^-31) and shift >= 1. */
typedef struct plast_requant {
    int32_t mult;
    int shift;
} plast_requant;

/* The requantiser of M, 0 < M < 2^30: with M = f 2^x, f in [0.5, 1)
 * (frexp), mult = rint(f 2^31) (2^31 becomes 2^30 with x + 1) and
 * shift = 31 - x.  PLAST_E_INVAL names M when it is out of range or not a
 * number. */
int plast_requant_init(plast_requant *rq, double multiplier, plast_err *e);

/* round(acc * mult / 2^shift), ties away from zero, computed exactly for
 * every int64 acc and saturated to the int64 range. */
int64_t plast_requant_apply(const plast_requant *rq, int64_t acc);

/* mult * 2^-shift as a double (exact). */
double plast_requant_value(const plast_requant *rq);

#ifdef __cplusplus
}
#endif
#endif
