/* test_quant.c - the scalar quantisation helpers: scales, codes (rint,
 * saturation), and the requantiser (31-bit multiplier and shift, ties away
 * from zero) against 128-bit integer arithmetic. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <plast/quant.h>
#include <plast/rng.h>

__extension__ typedef unsigned __int128 u128;

Test(quant, scale)
{
    cr_assert(eq(dbl, plast_quant_scale(2.0, 1.25, 127), 1.25 * 2.0 / 127.0));
    cr_assert(eq(dbl, plast_quant_scale(3.0, 1.0, 32767), 3.0 / 32767.0));
    cr_assert(eq(dbl, plast_quant_scale(3.0, 0.0, 127), 3.0 / 127.0)); /* margin 0 = 1 */
    cr_assert(eq(dbl, plast_quant_scale(0.0, 1.25, 127), 1.0 / 127.0));
    cr_assert(eq(dbl, plast_quant_scale(INFINITY, 1.25, 127), 1.0 / 127.0));
    cr_assert(eq(dbl, plast_quant_scale(NAN, 1.25, 32767), 1.0 / 32767.0));
}

Test(quant, code_rounds_to_even_and_saturates)
{
    double s = 0.5;
    cr_assert(eq(i64, plast_quant_code(1.25, s, 127), 2));  /* 2.5 -> 2 */
    cr_assert(eq(i64, plast_quant_code(1.75, s, 127), 4));  /* 3.5 -> 4 */
    cr_assert(eq(i64, plast_quant_code(-1.25, s, 127), -2));
    cr_assert(eq(i64, plast_quant_code(1.3, s, 127), 3));
    cr_assert(eq(i64, plast_quant_code(63.5, s, 127), 127));
    cr_assert(eq(i64, plast_quant_code(64.0, s, 127), 127));
    cr_assert(eq(i64, plast_quant_code(-1e300, s, 127), -127)); /* never -128 */
    cr_assert(eq(i64, plast_quant_code(1e300, 1e-300, 32767), 32767));
    cr_assert(eq(i64, plast_quant_code(-INFINITY, s, PLAST_QMAX32), -PLAST_QMAX32));
    cr_assert(eq(i64, plast_quant_code(NAN, s, 127), 0));
    cr_assert(eq(i64, plast_quant_saturate(-200, 127), -127));
    cr_assert(eq(i64, plast_quant_saturate(5, 127), 5));
}

Test(quant, requant_init)
{
    plast_requant rq;
    plast_err e;
    cr_assert(eq(int, plast_requant_init(&rq, 0.5, &e), PLAST_OK));
    cr_assert(eq(i32, rq.mult, 1 << 30));
    cr_assert(eq(int, rq.shift, 31));
    cr_assert(eq(int, plast_requant_init(&rq, 0.75, &e), PLAST_OK));
    cr_assert(eq(i32, rq.mult, 3 << 29));
    cr_assert(eq(int, rq.shift, 31));
    cr_assert(eq(dbl, plast_requant_value(&rq), 0.75));
    /* the mantissa rounds up to 2^31: one more exponent instead */
    cr_assert(eq(int, plast_requant_init(&rq, 1.0 - 0x1p-40, &e), PLAST_OK));
    cr_assert(eq(i32, rq.mult, 1 << 30));
    cr_assert(eq(int, rq.shift, 30));
    cr_assert(eq(int, plast_requant_init(&rq, 3.0, &e), PLAST_OK));
    cr_assert(eq(dbl, plast_requant_value(&rq), 3.0));
    /* 31 significant bits: relative error at most 2^-31 */
    double m = 0.123456789012345;
    cr_assert(eq(int, plast_requant_init(&rq, m, &e), PLAST_OK));
    cr_assert(fabs(plast_requant_value(&rq) - m) <= m * 0x1p-31);
    cr_assert(rq.mult >= (1 << 30));
    const double bad[] = {0.0, -1.0, 0x1p30, INFINITY, NAN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert(eq(int, plast_requant_init(&rq, bad[i], &e), PLAST_E_INVAL));
        cr_assert(strstr(e.msg, "expected a multiplier in (0, 2^30)") != NULL, "%s", e.msg);
    }
    cr_assert(eq(int, plast_requant_init(&rq, -1.0, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "found -1") != NULL, "%s", e.msg);
}

Test(quant, requant_ties_away_from_zero)
{
    plast_requant rq;
    cr_assert(eq(int, plast_requant_init(&rq, 0.5, NULL), PLAST_OK));
    const int64_t in[] = {0, 1, -1, 2, 3, -3, 5, -5, 6};
    const int64_t want[] = {0, 1, -1, 1, 2, -2, 3, -3, 3};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        cr_assert(eq(i64, plast_requant_apply(&rq, in[i]), want[i]), "acc %lld",
                  (long long)in[i]);
    cr_assert(eq(int, plast_requant_init(&rq, 0.25, NULL), PLAST_OK));
    cr_assert(eq(i64, plast_requant_apply(&rq, 2), 1));   /* 0.5 -> 1 */
    cr_assert(eq(i64, plast_requant_apply(&rq, -2), -1));
    cr_assert(eq(i64, plast_requant_apply(&rq, 1), 0));   /* 0.25 -> 0 */
    cr_assert(eq(i64, plast_requant_apply(&rq, -6), -2)); /* -1.5 -> -2 */
}

/* round(|a| mult / 2^shift) with halves up, in 128 bits, saturated. */
static int64_t reference(const plast_requant *rq, int64_t a)
{
    u128 mag = a < 0 ? (u128)(0u - (uint64_t)a) : (u128)(uint64_t)a;
    u128 p = mag * (u128)(uint32_t)rq->mult;
    u128 r = rq->shift >= 128 ? 0 : (p + ((u128)1 << (rq->shift - 1))) >> rq->shift;
    int64_t v = r > (u128)INT64_MAX ? INT64_MAX : (int64_t)r;
    return a < 0 ? -v : v;
}

static int64_t random_acc(plast_rng *r)
{
    int bits = (int)plast_rng_below(r, 64);
    uint64_t u = (uint64_t)plast_rng_u32(r) << 32 | plast_rng_u32(r);
    uint64_t v = bits == 0 ? 0 : u >> (64 - bits);
    return plast_rng_below(r, 2) ? -(int64_t)(v >> 1) : (int64_t)v;
}

Test(quant, requant_exact_over_int64)
{
    plast_rng r;
    plast_rng_seed(&r, 7, 1);
    const int64_t edge[] = {INT64_MAX, INT64_MIN, INT64_MIN + 1, -1, 1, 0, (int64_t)1 << 40};
    int zero_shift = 0, saturated = 0;
    for (int t = 0; t < 4000; t++) {
        plast_requant rq;
        double m = ldexp(1.0 + plast_rng_float(&r), (int)plast_rng_below(&r, 112) - 82);
        cr_assert(eq(int, plast_requant_init(&rq, m, NULL), PLAST_OK));
        zero_shift += rq.shift >= 96;
        for (int k = 0; k < 16; k++) {
            int64_t a = k < 7 ? edge[k] : random_acc(&r);
            int64_t got = plast_requant_apply(&rq, a), want = reference(&rq, a);
            saturated += got == INT64_MAX;
            cr_assert(eq(i64, got, want), "acc %lld mult %d shift %d", (long long)a, rq.mult,
                      rq.shift);
        }
    }
    /* the sweep reached the shortcut for tiny multipliers and saturation */
    cr_assert(gt(int, zero_shift, 0));
    cr_assert(gt(int, saturated, 0));
}
