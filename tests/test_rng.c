/* test_rng.c - PCG32 against the reference demo's output, and the derived
 * draws (bounded, float, uniform, normal) and jumps.
 *
 * The vectors are those of imneme/pcg-c test-high/expected/check-pcg32.out
 * (ENGINEERING.md section 7): one generator seeded (42, 54) draws, per round,
 * six u32, the same six again after advance(-6), 65 coins, 33 dice and a
 * 52-card shuffle, in that order. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/rng.h"

enum { NCOINS = 65, NROLLS = 33, NCARDS = 52 };

typedef struct demo_round {
    uint32_t u32[6];
    const char *coins;
    int rolls[NROLLS];
} demo_round;

static const demo_round round1 = {
    {0xa15c02b7u, 0x7b47f409u, 0xba1d3330u, 0x83d2f293u, 0xbfa4784bu, 0xcbed606eu},
    "HHTTTHTHHHTHTTTHHHHHTTTHHHTHTHTHTTHTTTHHHHHHTTTTHHTTTTTHTTTTTTTHT",
    {3, 4, 1, 1, 2, 2, 3, 2, 4, 3, 2, 4, 3, 3, 5, 2, 3, 1, 3, 1, 5, 1, 4, 1, 5, 6, 4, 6, 6, 2, 6,
     3, 3},
};

static const demo_round round2 = {
    {0x74ab93adu, 0x1c1da000u, 0x494ff896u, 0x34462f2fu, 0xd308a3e5u, 0x0fa83babu},
    "HHHHHHHHHHTHHHTHTHTHTHTTTTHHTTTHHTHHTHTTHHTTTHHHHHHTHTTHTHTTTTTTT",
    {5, 1, 1, 3, 3, 2, 4, 5, 3, 2, 2, 6, 4, 3, 2, 4, 2, 4, 3, 2, 3, 6, 3, 2, 3, 4, 2, 4, 1, 1, 5,
     4, 4},
};

static const int round1_deck[NCARDS] = {
    46, 51, 22, 11, 10, 13, 8,  38, 49, 17, 40, 50, 42, 3,  15, 12, 2,  36,
    1,  41, 27, 47, 7,  24, 48, 6,  21, 0,  14, 44, 32, 23, 19, 5,  33, 39,
    30, 35, 9,  29, 43, 18, 4,  20, 26, 31, 34, 16, 28, 45, 25, 37,
};

/* The state whose next output is 0xFFFFFFFF: rotation 0 (bits 59..63
 * clear) and ((s >> 18) ^ s) >> 27 all ones, which needs exactly bits
 * 41..58 set. */
#define STATE_ALL_ONES ((((uint64_t)1 << 59) - 1) ^ (((uint64_t)1 << 41) - 1))

static plast_rng demo_rng(void)
{
    plast_rng r;
    plast_rng_seed(&r, 42, 54);
    return r;
}

static void check_u32_and_again(plast_rng *r, const demo_round *want)
{
    for (int i = 0; i < 6; i++)
        cr_assert(eq(u32, plast_rng_u32(r), want->u32[i]), "u32 draw %d", i);
    plast_rng_advance(r, (uint64_t)-6);
    for (int i = 0; i < 6; i++)
        cr_assert(eq(u32, plast_rng_u32(r), want->u32[i]), "draw %d after advance(-6)", i);
}

static void check_coins_and_rolls(plast_rng *r, const demo_round *want)
{
    char coins[NCOINS + 1];
    for (int i = 0; i < NCOINS; i++)
        coins[i] = plast_rng_below(r, 2) ? 'H' : 'T';
    coins[NCOINS] = '\0';
    cr_assert(eq(str, coins, (char *)want->coins));
    for (int i = 0; i < NROLLS; i++)
        cr_assert(eq(int, (int)plast_rng_below(r, 6) + 1, want->rolls[i]), "roll %d", i);
}

static void shuffle(plast_rng *r, int deck[NCARDS])
{
    for (int i = 0; i < NCARDS; i++)
        deck[i] = i;
    for (uint32_t i = NCARDS; i > 1; i--) {
        uint32_t k = plast_rng_below(r, i);
        int card = deck[k];
        deck[k] = deck[i - 1];
        deck[i - 1] = card;
    }
}

Test(rng, seeding_matches_reference)
{
    plast_rng r = demo_rng();
    cr_assert(eq(u64, r.state, 0x185706b82c2e03f8u));
    cr_assert(eq(u64, r.inc, 0x6du));
}

Test(rng, reference_demo_two_rounds)
{
    plast_rng r = demo_rng();
    int deck[NCARDS];

    check_u32_and_again(&r, &round1);
    check_coins_and_rolls(&r, &round1);
    shuffle(&r, deck);
    for (int i = 0; i < NCARDS; i++)
        cr_assert(eq(int, deck[i], round1_deck[i]), "card %d", i);

    check_u32_and_again(&r, &round2);
    check_coins_and_rolls(&r, &round2);
}

Test(rng, float_conversion_stays_below_one)
{
    cr_assert(lt(flt, plast_u32_to_float(0xFFFFFFFFu), 1.0f));
    cr_assert(eq(flt, plast_u32_to_float(0xFFFFFFFFu), 1.0f - 0x1p-24f));
    cr_assert(eq(flt, plast_u32_to_float(0u), 0.0f));
    cr_assert(eq(flt, plast_u32_to_float(0x80000000u), 0.5f));
    cr_assert(eq(flt, plast_u32_to_float(0xFFu), 0.0f)); /* low 8 bits dropped */
}

Test(rng, all_ones_state_is_what_the_uniform_tests_assume)
{
    plast_rng r = {STATE_ALL_ONES, 1};
    cr_assert(eq(u32, plast_rng_u32(&r), 0xFFFFFFFFu));
}

Test(rng, below_degenerate_bounds)
{
    plast_rng r = demo_rng();
    for (int i = 0; i < 100; i++)
        cr_assert(eq(u32, plast_rng_below(&r, 1), 0u));
    for (int i = 0; i < 10; i++)
        cr_assert(eq(u32, plast_rng_below(&r, 0), 0u));
}

Test(rng, below_stays_under_large_bounds)
{
    static const uint32_t bounds[] = {3, 1000, 0x80000001u, 0xFFFFFFFFu};
    plast_rng r = demo_rng();
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++)
        for (int i = 0; i < 10000; i++)
            cr_assert(lt(u32, plast_rng_below(&r, bounds[b]), bounds[b]));
}

Test(rng, streams_from_one_seed_differ)
{
    plast_rng a, b, c, d;
    plast_rng_stream(&a, 7, PLAST_STREAM_INIT, 0);
    plast_rng_stream(&b, 7, PLAST_STREAM_INIT, 1);
    plast_rng_stream(&c, 7, PLAST_STREAM_SHUFFLE, 0);
    plast_rng_seed(&d, 7, (uint64_t)PLAST_STREAM_INIT << 32 | 1);
    cr_assert(ne(u64, a.inc, b.inc));
    cr_assert(ne(u64, a.inc, c.inc));
    cr_assert(ne(u64, b.inc, c.inc));
    cr_assert(eq(u64, b.state, d.state), "stream() is seed(seed, purpose << 32 | index)");
    cr_assert(eq(u64, b.inc, d.inc));
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 8; i++) {
        uint32_t xa = plast_rng_u32(&a), xb = plast_rng_u32(&b), xc = plast_rng_u32(&c);
        same_ab += xa == xb;
        same_ac += xa == xc;
    }
    cr_assert(lt(int, same_ab, 2));
    cr_assert(lt(int, same_ac, 2));
}

Test(rng, copied_state_resumes_exactly)
{
    plast_rng r;
    plast_rng_stream(&r, 123, PLAST_STREAM_PERTURB, 9);
    for (int i = 0; i < 17; i++)
        (void)plast_rng_u32(&r);
    uint64_t saved_state = r.state, saved_inc = r.inc; /* as a checkpoint stores them */
    uint32_t want[100];
    for (int i = 0; i < 100; i++)
        want[i] = plast_rng_u32(&r);
    plast_rng back = {saved_state, saved_inc};
    for (int i = 0; i < 100; i++)
        cr_assert(eq(u32, plast_rng_u32(&back), want[i]), "draw %d after restore", i);
}

Test(rng, advance_equals_single_steps)
{
    static const uint64_t ns[] = {0, 1, 2, 1000, 123457};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        plast_rng stepped, jumped;
        plast_rng_stream(&stepped, 99, PLAST_STREAM_PROJ, (uint32_t)k);
        jumped = stepped;
        for (uint64_t i = 0; i < ns[k]; i++)
            (void)plast_rng_u32(&stepped);
        plast_rng_advance(&jumped, ns[k]);
        cr_assert(eq(u64, jumped.state, stepped.state), "advance(%llu)",
                  (unsigned long long)ns[k]);
        cr_assert(eq(u64, jumped.inc, stepped.inc));
        plast_rng_advance(&jumped, (uint64_t)0 - ns[k]);
        plast_rng_advance(&stepped, (uint64_t)0 - ns[k]);
        plast_rng fresh;
        plast_rng_stream(&fresh, 99, PLAST_STREAM_PROJ, (uint32_t)k);
        cr_assert(eq(u64, jumped.state, fresh.state), "advance(-%llu) goes back",
                  (unsigned long long)ns[k]);
    }
}

Test(rng, normal2_first_pair_by_hand)
{
    plast_rng r, raw;
    plast_rng_stream(&r, 2024, PLAST_STREAM_INIT, 3);
    raw = r;
    uint32_t x1 = plast_rng_u32(&raw), x2 = plast_rng_u32(&raw);
    double u1 = ((double)(x1 >> 8) + 1.0) / 16777216.0;
    double u2 = (double)(x2 >> 8) / 16777216.0;
    double rad = sqrt(-2.0 * log(u1));
    double angle = 2.0 * 3.14159265358979323846 * u2;

    double out[2];
    plast_rng_normal2(&r, out);
    cr_assert(epsilon_eq(dbl, out[0], rad * cos(angle), 1e-12), "cos half: %.17g", out[0]);
    cr_assert(epsilon_eq(dbl, out[1], rad * sin(angle), 1e-12), "sin half: %.17g", out[1]);
    cr_assert(eq(u64, r.state, raw.state), "a pair uses exactly two outputs");
}

Test(rng, normal2_extreme_draws_are_finite)
{
    /* x1 = 0xFFFFFFFF gives u1 = 1 (r = 0); u1 never reaches 0. */
    plast_rng r = {STATE_ALL_ONES, 1};
    double out[2];
    plast_rng_normal2(&r, out);
    cr_assert(eq(dbl, out[0], 0.0));
    cr_assert(eq(dbl, out[1], 0.0));
}

Test(rng, normal2_mean_zero_variance_one)
{
    enum { NPAIRS = 100000 };
    plast_rng r;
    plast_rng_stream(&r, 5, PLAST_STREAM_INIT, 0);
    double sum = 0, sumsq = 0, cross = 0;
    for (int i = 0; i < NPAIRS; i++) {
        double out[2];
        plast_rng_normal2(&r, out);
        cr_assert(eq(int, isfinite(out[0]) && isfinite(out[1]), 1));
        sum += out[0] + out[1];
        sumsq += out[0] * out[0] + out[1] * out[1];
        cross += out[0] * out[1];
    }
    double n = 2.0 * NPAIRS;
    double mean = sum / n, var = sumsq / n - mean * mean;
    cr_assert(lt(dbl, fabs(mean), 0.01), "mean %g", mean);
    cr_assert(lt(dbl, fabs(var - 1.0), 0.02), "variance %g", var);
    cr_assert(lt(dbl, fabs(cross / NPAIRS), 0.02), "pair correlation %g", cross / NPAIRS);
}

Test(rng, uniform_stays_in_half_open_range)
{
    static const float ranges[][2] = {
        {-1.0f, 1.0f}, {0.0f, 1.0f}, {1.0f, 2.0f}, {100.0f, 101.0f}, {-0.05f, 0.05f}, {-3.0f, 5.0f},
    };
    plast_rng r;
    plast_rng_stream(&r, 11, PLAST_STREAM_INIT, 0);
    for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++) {
        float a = ranges[k][0], b = ranges[k][1];
        for (int i = 0; i < 20000; i++) {
            float x = plast_rng_uniform(&r, a, b);
            cr_assert(ge(flt, x, a));
            cr_assert(lt(flt, x, b));
        }
        /* The largest draw: a + (b - a) * (1 - 2^-24) rounds to b for [1, 2). */
        plast_rng top = {STATE_ALL_ONES, 1};
        float x = plast_rng_uniform(&top, a, b);
        cr_assert(lt(flt, x, b), "largest draw in [%g, %g) gave %.9g", a, b, x);
        cr_assert(gt(flt, x, a));
        plast_rng bottom = {0, 1}; /* state 0 outputs 0 */
        cr_assert(eq(flt, plast_rng_uniform(&bottom, a, b), a));
    }
}
