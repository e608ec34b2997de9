/* test_optim.c - optimisers over flat arrays: each update rule against
 * values worked out by hand (or, for Adam, a double-precision
 * re-implementation), range updates, the learning-rate schedule and the
 * state's memory. */
#include "config.h"

#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/config.h"
#include "plast/mem.h"
#include "plast/optim.h"

static plast_mem *mem;

static void setup(void)
{
    cr_assert(eq(int, plast_mem_create(&mem, NULL), PLAST_OK));
}

static void teardown(void)
{
    plast_mem_destroy(mem);
}

TestSuite(optim, .init = setup, .fini = teardown);

/* An [optimizer] section parsed from `ini` (the whole INI text). */
static plast_args *parse_section(const char *ini)
{
    plast_config *c = NULL;
    plast_args *a = NULL;
    plast_err e = {0};
    char buf[600];
    int rc = plast_config_parse_string(&c, "optim.ini", ini, &e);
    cr_assert(eq(int, rc, PLAST_OK), "%s", plast_err_format(&e, buf, sizeof buf));
    rc = plast_args_parse(&a, c, "optimizer", plast_optim_settings, NULL, NULL, &e);
    cr_assert(eq(int, rc, PLAST_OK), "%s", plast_err_format(&e, buf, sizeof buf));
    plast_config_destroy(c);
    return a;
}

static plast_optim *make_optim(const char *ini, size_t n)
{
    plast_args *a = parse_section(ini);
    plast_optim *o = NULL;
    plast_err e = {0};
    char buf[600];
    int rc = plast_optim_create(&o, a, n, mem, &e);
    cr_assert(eq(int, rc, PLAST_OK), "%s", plast_err_format(&e, buf, sizeof buf));
    cr_assert(ne(ptr, o, NULL));
    plast_args_destroy(a);
    return o;
}

static void assert_rel(double got, double want, double rel, const char *what, int step)
{
    cr_assert(le(dbl, fabs(got - want), rel * fabs(want) + 1e-30),
              "%s after step %d: got %.9g, want %.9g", what, step, got, want);
}

/* One weight through three steps with gradients 1, 0.5, -2. */
static const float grads3[3] = {1.0f, 0.5f, -2.0f};

static void check_scalar_run(const char *ini, const double want[3])
{
    plast_optim *o = make_optim(ini, 1);
    float w = 1.0f, g;
    for (int t = 0; t < 3; t++) {
        g = grads3[t];
        plast_optim_begin(o, plast_optim_base_lr(o));
        plast_optim_update(o, &w, &g, 0, 1);
        assert_rel(w, want[t], 1e-6, "w", t + 1);
        cr_assert(eq(flt, g, 0.0f), "gradient zeroed");
    }
    plast_optim_destroy(o);
}

/* ---- update rules, by hand (lr 0.1, mu 0.9, w0 1, g 1, 0.5, -2) ---- */

Test(optim, sgd_by_hand)
{
    /* w -= 0.1 g: 1 - 0.1 = 0.9; 0.9 - 0.05 = 0.85; 0.85 + 0.2 = 1.05 */
    static const double want[3] = {0.9, 0.85, 1.05};
    check_scalar_run("[optimizer]\ntype = sgd\nlr = 0.1\n", want);
}

Test(optim, sgd_weight_decay_by_hand)
{
    /* d = g + 0.1 w; w -= 0.1 d
     * 1: d = 1.1,                 w = 1 - 0.11          = 0.89
     * 2: d = 0.5 + 0.089 = 0.589, w = 0.89 - 0.0589     = 0.8311
     * 3: d = -2 + 0.08311,        w = 0.8311 + 0.191689 = 1.022789 */
    static const double want[3] = {0.89, 0.8311, 1.022789};
    check_scalar_run("[optimizer]\ntype = sgd\nlr = 0.1\nweight_decay = 0.1\n", want);
}

Test(optim, momentum_by_hand)
{
    /* v = 0.9 v + g; w -= 0.1 v
     * 1: v = 1,                w = 0.9
     * 2: v = 0.9 + 0.5 = 1.4,  w = 0.9 - 0.14   = 0.76
     * 3: v = 1.26 - 2 = -0.74, w = 0.76 + 0.074 = 0.834 */
    static const double want[3] = {0.9, 0.76, 0.834};
    check_scalar_run("[optimizer]\ntype = momentum\nlr = 0.1\nmomentum = 0.9\n", want);
}

Test(optim, nesterov_by_hand)
{
    /* v = 0.9 v + g; w -= 0.1 (g + 0.9 v)
     * 1: v = 1,     w = 1 - 0.1 (1 + 0.9)           = 0.81
     * 2: v = 1.4,   w = 0.81 - 0.1 (0.5 + 1.26)     = 0.634
     * 3: v = -0.74, w = 0.634 - 0.1 (-2 - 0.666)    = 0.9006 */
    static const double want[3] = {0.81, 0.634, 0.9006};
    check_scalar_run("[optimizer]\ntype = nesterov\nlr = 0.1\nmomentum = 0.9\n", want);
}

Test(optim, nesterov_weight_decay_by_hand)
{
    /* d = g + 0.5 w; v = 0.5 v + d; w -= 0.1 (d + 0.5 v)   (mu 0.5, wd 0.5)
     * 1: d = 1.5,              v = 1.5,   w = 1 - 0.1 (1.5 + 0.75)        = 0.775
     * 2: d = 0.5 + 0.3875 = 0.8875, v = 0.75 + 0.8875 = 1.6375,
     *    w = 0.775 - 0.1 (0.8875 + 0.81875)                        = 0.604375
     * 3: d = -2 + 0.3021875 = -1.6978125, v = 0.81875 - 1.6978125 = -0.8790625,
     *    w = 0.604375 - 0.1 (-1.6978125 - 0.43953125)             = 0.818109375 */
    static const double want[3] = {0.775, 0.604375, 0.818109375};
    check_scalar_run("[optimizer]\ntype = nesterov\nlr = 0.1\nmomentum = 0.5\nweight_decay = 0.5\n",
                     want);
}

Test(optim, momentum_state_holds_velocity)
{
    plast_optim *o = make_optim("[optimizer]\ntype = momentum\nlr = 0.1\nmomentum = 0.9\n", 1);
    float w = 1.0f, g;
    for (int t = 0; t < 3; t++) {
        g = grads3[t];
        plast_optim_begin(o, 0.1);
        plast_optim_update(o, &w, &g, 0, 1);
    }
    assert_rel(plast_optim_state(o, 0)[0], -0.74, 1e-6, "v", 3);
    plast_optim_destroy(o);
}

Test(optim, begin_sets_the_learning_rate)
{
    /* The lr passed to begin() is used, not the configured one. */
    plast_optim *o = make_optim("[optimizer]\ntype = sgd\nlr = 0.1\n", 1);
    float w = 1.0f, g = 1.0f;
    plast_optim_begin(o, 0.25);
    plast_optim_update(o, &w, &g, 0, 1);
    cr_assert(eq(flt, w, 0.75f));
    cr_assert(eq(dbl, plast_optim_base_lr(o), 0.1));
    plast_optim_destroy(o);
}

/* ---- Adam and AdamW against an independent double-precision version ---- */

enum { NADAM = 4 };

static const float adam_w0[NADAM] = {1.0f, -0.5f, 2.0f, 0.25f};
static const float adam_g[3][NADAM] = {
    {0.5f, -1.0f, 0.125f, 3.0f},
    {0.25f, -0.75f, 0.5f, 2.0f},
    {1.0f, -0.25f, 0.25f, -1.0f},
};

typedef struct adam_ref {
    double w[NADAM], m[NADAM], v[NADAM];
} adam_ref;

/* Kingma & Ba with bias-corrected moments; decoupled decay first for AdamW,
 * else L2 decay folded into the gradient. */
static void adam_ref_step(adam_ref *s, int t, double lr, double b1, double b2, double eps,
                          double wd, int decoupled)
{
    for (int i = 0; i < NADAM; i++) {
        double g = adam_g[t - 1][i];
        if (decoupled)
            s->w[i] -= lr * wd * s->w[i];
        else
            g += wd * s->w[i];
        s->m[i] = b1 * s->m[i] + (1 - b1) * g;
        s->v[i] = b2 * s->v[i] + (1 - b2) * g * g;
        double mhat = s->m[i] / (1 - pow(b1, t));
        double vhat = s->v[i] / (1 - pow(b2, t));
        s->w[i] -= lr * mhat / (sqrt(vhat) + eps);
    }
}

static void check_adam(const char *type, double wd)
{
    const double lr = 0.01, b1 = 0.8, b2 = 0.99, eps = 1e-8;
    char ini[256];
    snprintf(ini, sizeof ini,
             "[optimizer]\ntype = %s\nlr = %g\nbeta1 = %g\nbeta2 = %g\neps = %g\n"
             "weight_decay = %g\n",
             type, lr, b1, b2, eps, wd);
    plast_optim *o = make_optim(ini, NADAM);
    cr_assert(eq(str, (char *)plast_optim_type(o), (char *)type));
    cr_assert(eq(int, plast_optim_nstate(o), 2));

    adam_ref ref = {{0}, {0}, {0}};
    float w[NADAM], g[NADAM];
    for (int i = 0; i < NADAM; i++)
        ref.w[i] = w[i] = adam_w0[i];
    for (int t = 1; t <= 3; t++) {
        memcpy(g, adam_g[t - 1], sizeof g);
        plast_optim_begin(o, lr);
        cr_assert(eq(u64, plast_optim_steps(o), (uint64_t)t));
        plast_optim_update(o, w, g, 0, NADAM);
        adam_ref_step(&ref, t, lr, b1, b2, eps, wd, strcmp(type, "adamw") == 0);
        for (int i = 0; i < NADAM; i++) {
            assert_rel(w[i], ref.w[i], 1e-6, "w", t);
            assert_rel(plast_optim_state(o, 0)[i], ref.m[i], 1e-6, "m", t);
            assert_rel(plast_optim_state(o, 1)[i], ref.v[i], 1e-6, "v", t);
            cr_assert(eq(flt, g[i], 0.0f));
        }
    }
    plast_optim_destroy(o);
}

Test(optim, adam_matches_reference) { check_adam("adam", 0.0); }
Test(optim, adam_l2_decay_matches_reference) { check_adam("adam", 0.1); }
Test(optim, adamw_matches_reference) { check_adam("adamw", 0.1); }

Test(optim, adam_defaults_match_reference)
{
    /* The schema's defaults (0.9, 0.999, 1e-8): 1 - 0.999 must not lose
     * digits on the way to float. */
    plast_optim *o = make_optim("[optimizer]\ntype = adam\nlr = 0.001\n", NADAM);
    adam_ref ref = {{0}, {0}, {0}};
    float w[NADAM], g[NADAM];
    for (int i = 0; i < NADAM; i++)
        ref.w[i] = w[i] = adam_w0[i];
    for (int t = 1; t <= 3; t++) {
        memcpy(g, adam_g[t - 1], sizeof g);
        plast_optim_begin(o, 0.001);
        plast_optim_update(o, w, g, 0, NADAM);
        adam_ref_step(&ref, t, 0.001, 0.9, 0.999, 1e-8, 0.0, 0);
        for (int i = 0; i < NADAM; i++) {
            assert_rel(w[i], ref.w[i], 1e-6, "w", t);
            assert_rel(plast_optim_state(o, 1)[i], ref.v[i], 1e-6, "v", t);
        }
    }
    plast_optim_destroy(o);
}

Test(optim, adamw_differs_from_adam_l2)
{
    /* Same settings, decoupled vs L2 decay: the weights must differ. */
    const char *fmt = "[optimizer]\ntype = %s\nlr = 0.01\nweight_decay = 0.1\n";
    char ini[128];
    float wa[NADAM], wb[NADAM], g[NADAM];
    memcpy(wa, adam_w0, sizeof wa);
    memcpy(wb, adam_w0, sizeof wb);
    snprintf(ini, sizeof ini, fmt, "adam");
    plast_optim *a = make_optim(ini, NADAM);
    snprintf(ini, sizeof ini, fmt, "adamw");
    plast_optim *b = make_optim(ini, NADAM);
    memcpy(g, adam_g[0], sizeof g);
    plast_optim_begin(a, 0.01);
    plast_optim_update(a, wa, g, 0, NADAM);
    memcpy(g, adam_g[0], sizeof g);
    plast_optim_begin(b, 0.01);
    plast_optim_update(b, wb, g, 0, NADAM);
    cr_assert(ne(int, memcmp(wa, wb, sizeof wa), 0));
    plast_optim_destroy(a);
    plast_optim_destroy(b);
}

Test(optim, adam_update_before_begin_is_a_programmer_error, .signal = SIGABRT)
{
    plast_optim *o = make_optim("[optimizer]\ntype = adam\n", 1);
    float w = 1.0f, g = 1.0f;
    plast_optim_update(o, &w, &g, 0, 1); /* step 0: bias correction divides by 0 */
}

Test(optim, resume_from_saved_state_is_bit_identical)
{
    enum { N = 9 };
    const char *ini = "[optimizer]\ntype = adamw\nlr = 0.01\nweight_decay = 0.01\n";
    float w_full[N], w_half[N], g[N];
    for (int i = 0; i < N; i++)
        w_full[i] = w_half[i] = 0.1f * (float)(i - 4);
    plast_optim *full = make_optim(ini, N), *half = make_optim(ini, N);
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < N; i++)
            g[i] = 0.25f * (float)((i * 7 + t * 3) % 5) - 0.5f;
        plast_optim_begin(full, 0.01);
        plast_optim_update(full, w_full, g, 0, N);
        if (t == 2)
            break;
        for (int i = 0; i < N; i++)
            g[i] = 0.25f * (float)((i * 7 + t * 3) % 5) - 0.5f;
        plast_optim_begin(half, 0.01);
        plast_optim_update(half, w_half, g, 0, N);
    }
    /* A fresh optimiser given the step count and state arrays continues. */
    plast_optim *resumed = make_optim(ini, N);
    for (int s = 0; s < plast_optim_nstate(half); s++)
        memcpy(plast_optim_state(resumed, s), plast_optim_state(half, s), N * sizeof(float));
    plast_optim_set_steps(resumed, plast_optim_steps(half));
    cr_assert(eq(u64, plast_optim_steps(resumed), 2));
    for (int i = 0; i < N; i++)
        g[i] = 0.25f * (float)((i * 7 + 2 * 3) % 5) - 0.5f;
    plast_optim_begin(resumed, 0.01);
    plast_optim_update(resumed, w_half, g, 0, N);
    cr_assert(eq(int, memcmp(w_half, w_full, sizeof w_full), 0));
    cr_assert(eq(int, memcmp(plast_optim_state(resumed, 1), plast_optim_state(full, 1),
                             N * sizeof(float)), 0));
    plast_optim_destroy(full);
    plast_optim_destroy(half);
    plast_optim_destroy(resumed);
}

/* ---- ranges ---- */

static const char *const all_types[] = {"sgd", "momentum", "nesterov", "adam", "adamw"};
static const int all_nstate[] = {0, 1, 1, 2, 2};
#define NTYPES (int)(sizeof all_types / sizeof all_types[0])

static plast_optim *make_type(const char *type, size_t n)
{
    char ini[160];
    snprintf(ini, sizeof ini, "[optimizer]\ntype = %s\nlr = 0.05\nweight_decay = 0.01\n", type);
    return make_optim(ini, n);
}

static void fill(float *x, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) * 0x1p-23f - 1.0f; /* [-1, 1) */
    }
}

Test(optim, gradients_zeroed_on_the_updated_range_only)
{
    enum { N = 16, B = 5, E = 11 };
    for (int k = 0; k < NTYPES; k++) {
        plast_optim *o = make_type(all_types[k], N);
        float w[N], g[N], w0[N], g0[N];
        fill(w, N, 1);
        fill(g, N, 2);
        memcpy(w0, w, sizeof w);
        memcpy(g0, g, sizeof g);
        plast_optim_begin(o, 0.05);
        plast_optim_update(o, w, g, B, E);
        for (int i = 0; i < N; i++) {
            int inside = i >= B && i < E;
            if (inside) {
                cr_assert(eq(flt, g[i], 0.0f), "%s: g[%d] zeroed", all_types[k], i);
                cr_assert(ne(flt, w[i], w0[i]), "%s: w[%d] updated", all_types[k], i);
            } else {
                cr_assert(eq(flt, g[i], g0[i]), "%s: g[%d] untouched", all_types[k], i);
                cr_assert(eq(flt, w[i], w0[i]), "%s: w[%d] untouched", all_types[k], i);
            }
            for (int s = 0; s < plast_optim_nstate(o); s++)
                if (!inside)
                    cr_assert(eq(flt, plast_optim_state(o, s)[i], 0.0f),
                              "%s: state %d [%d] untouched", all_types[k], s, i);
        }
        plast_optim_update(o, w, g, 7, 7); /* empty range */
        cr_assert(eq(flt, g[0], g0[0]));
        plast_optim_destroy(o);
    }
}

Test(optim, disjoint_ranges_equal_one_update_bit_for_bit)
{
    enum { N = 103 };
    for (int k = 0; k < NTYPES; k++) {
        plast_optim *whole = make_type(all_types[k], N), *parts = make_type(all_types[k], N);
        float w1[N], w2[N], g1[N], g2[N];
        fill(w1, N, 7);
        memcpy(w2, w1, sizeof w1);
        for (int t = 0; t < 3; t++) {
            fill(g1, N, 100 + (uint32_t)t);
            memcpy(g2, g1, sizeof g1);
            plast_optim_begin(whole, 0.05);
            plast_optim_update(whole, w1, g1, 0, N);
            plast_optim_begin(parts, 0.05);
            plast_optim_update(parts, w2, g2, 60, N); /* blocks in any order */
            plast_optim_update(parts, w2, g2, 0, 17);
            plast_optim_update(parts, w2, g2, 17, 60);
        }
        cr_assert(eq(int, memcmp(w1, w2, sizeof w1), 0), "%s weights", all_types[k]);
        cr_assert(eq(int, memcmp(g1, g2, sizeof g1), 0), "%s gradients", all_types[k]);
        for (int s = 0; s < plast_optim_nstate(whole); s++)
            cr_assert(eq(int, memcmp(plast_optim_state(whole, s), plast_optim_state(parts, s),
                                     N * sizeof(float)), 0),
                      "%s state %d", all_types[k], s);
        plast_optim_destroy(whole);
        plast_optim_destroy(parts);
    }
}

/* ---- state and memory ---- */

Test(optim, state_count_and_memory_per_type)
{
    enum { N = 1000 };
    for (int k = 0; k < NTYPES; k++) {
        plast_optim *o = make_type(all_types[k], N);
        cr_assert(eq(str, (char *)plast_optim_type(o), (char *)all_types[k]));
        cr_assert(eq(int, plast_optim_nstate(o), all_nstate[k]), "%s", all_types[k]);
        cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_OPTIMIZER),
                     (size_t)all_nstate[k] * N * sizeof(float)), "%s", all_types[k]);
        cr_assert(eq(sz, plast_mem_live_total(mem), (size_t)all_nstate[k] * N * sizeof(float)),
                  "%s: nothing outside the optimizer category", all_types[k]);
        for (int s = 0; s < all_nstate[k]; s++) {
            const float *st = plast_optim_state(o, s);
            cr_assert(ne(ptr, (void *)st, NULL));
            for (int i = 0; i < N; i++)
                cr_assert(eq(flt, st[i], 0.0f), "%s state %d starts at zero", all_types[k], s);
        }
        cr_assert(eq(u64, plast_optim_steps(o), 0));
        plast_optim_destroy(o);
        cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_OPTIMIZER), 0), "%s", all_types[k]);
    }
    plast_optim_destroy(NULL);
}

Test(optim, failed_state_allocation_leaks_nothing)
{
    plast_args *a = parse_section("[optimizer]\ntype = adam\n");
    plast_optim *o = NULL;
    plast_err e = {0};
    plast_mem_fail_at(mem, 2); /* the second moment */
    cr_assert(eq(int, plast_optim_create(&o, a, 100, mem, &e), PLAST_E_NOMEM));
    cr_assert(eq(ptr, o, NULL));
    cr_assert(eq(int, e.code, PLAST_E_NOMEM));
    cr_assert(eq(sz, plast_mem_live_total(mem), 0));
    plast_args_destroy(a);
}

Test(optim, huge_parameter_count_is_refused)
{
    /* n * sizeof(float) wraps to 4 bytes here: the state must not be
     * allocated short. */
    plast_args *a = parse_section("[optimizer]\ntype = momentum\n");
    plast_optim *o = NULL;
    plast_err e = {0};
    cr_assert(eq(int, plast_optim_create(&o, a, SIZE_MAX / 4 + 2, mem, &e), PLAST_E_INVAL));
    cr_assert(eq(ptr, o, NULL));
    cr_assert(ne(str, e.msg, ""));
    cr_assert(eq(sz, plast_mem_live_total(mem), 0));
    plast_args_destroy(a);
}

/* ---- learning-rate schedule (10 steps per epoch) ---- */

static plast_optim *make_sched(const char *settings)
{
    char ini[256];
    snprintf(ini, sizeof ini, "[optimizer]\ntype = sgd\nlr = 0.1\n%s", settings);
    return make_optim(ini, 1);
}

static void expect_lr(const plast_optim *o, uint64_t step, int epochs, double want)
{
    double got = plast_optim_lr_at(o, step, 10, epochs);
    cr_assert(epsilon_eq(dbl, got, want, 1e-12), "step %llu: lr %.17g, want %.17g",
              (unsigned long long)step, got, want);
}

Test(optim, schedule_constant)
{
    plast_optim *o = make_sched("");
    expect_lr(o, 0, 10, 0.1);
    expect_lr(o, 55, 10, 0.1);
    expect_lr(o, 1000, 10, 0.1);
    plast_optim_destroy(o);
}

Test(optim, schedule_step)
{
    plast_optim *o = make_sched("schedule = step\nstep_epochs = 2\ngamma = 0.5\n");
    expect_lr(o, 0, 10, 0.1);
    expect_lr(o, 19, 10, 0.1);   /* epoch 1 */
    expect_lr(o, 20, 10, 0.05);  /* epoch 2 */
    expect_lr(o, 39, 10, 0.05);
    expect_lr(o, 40, 10, 0.025);
    expect_lr(o, 99, 10, 0.00625); /* epoch 9: 4 decays */
    plast_optim_destroy(o);
}

Test(optim, schedule_cosine)
{
    /* min + (lr - min) (1 + cos(pi p)) / 2 over 100 steps; cos(pi/4) = 0.70710678118654752 */
    plast_optim *o = make_sched("schedule = cosine\nmin_lr = 0.01\n");
    expect_lr(o, 0, 10, 0.1);
    expect_lr(o, 25, 10, 0.01 + 0.045 * 1.70710678118654752);
    expect_lr(o, 50, 10, 0.055);
    expect_lr(o, 75, 10, 0.01 + 0.045 * 0.29289321881345248);
    expect_lr(o, 100, 10, 0.01);
    expect_lr(o, 150, 10, 0.01);
    double prev = 1.0;
    for (uint64_t s = 0; s <= 100; s++) {
        double lr = plast_optim_lr_at(o, s, 10, 10);
        cr_assert(le(dbl, lr, prev), "non-increasing at step %llu", (unsigned long long)s);
        cr_assert(ge(dbl, lr, 0.01));
        prev = lr;
    }
    plast_optim_destroy(o);
}

Test(optim, warmup_whole_epochs)
{
    /* 2 epochs = 20 steps: lr (s + 1) / 20, then constant */
    plast_optim *o = make_sched("warmup = 2\n");
    expect_lr(o, 0, 10, 0.005);
    expect_lr(o, 9, 10, 0.05);
    expect_lr(o, 18, 10, 0.095);
    expect_lr(o, 19, 10, 0.1);
    expect_lr(o, 20, 10, 0.1);
    plast_optim_destroy(o);
}

Test(optim, warmup_fractional_epoch_never_overshoots)
{
    /* 0.25 epoch = 2.5 steps: lr (s + 1) / 2.5 = 0.04, 0.08, then lr */
    plast_optim *o = make_sched("warmup = 0.25\n");
    expect_lr(o, 0, 10, 0.04);
    expect_lr(o, 1, 10, 0.08);
    expect_lr(o, 2, 10, 0.1);
    expect_lr(o, 3, 10, 0.1);
    plast_optim_destroy(o);
}

Test(optim, warmup_then_cosine)
{
    /* 1 warm-up epoch, then cosine from 0.1 to 0 over the other 100 steps */
    plast_optim *o = make_sched("warmup = 1\nschedule = cosine\n");
    expect_lr(o, 0, 11, 0.01);
    expect_lr(o, 9, 11, 0.1);
    expect_lr(o, 10, 11, 0.1);
    expect_lr(o, 60, 11, 0.05);
    expect_lr(o, 110, 11, 0.0);
    plast_optim_destroy(o);
}

/* ---- finiteness found while stepping ---- */

/* plast_optim_step_finite: 1 only once every parameter was updated since
 * begin() and all came out finite, for every update rule; a part left out,
 * a NaN or an overflow to Inf makes it 0, and begin() starts over. */
Test(optim, step_finite_covers_every_rule_and_every_parameter)
{
    static const char *const inis[] = {
        "[optimizer]\ntype = sgd\nlr = 0.1\n",
        "[optimizer]\ntype = momentum\nlr = 0.1\nmomentum = 0.9\n",
        "[optimizer]\ntype = nesterov\nlr = 0.1\nmomentum = 0.9\n",
        "[optimizer]\ntype = adam\nlr = 0.1\n",
        "[optimizer]\ntype = adamw\nlr = 0.1\nweight_decay = 0.01\n",
    };
    enum { N = 37 };
    for (size_t c = 0; c < sizeof inis / sizeof inis[0]; c++) {
        plast_optim *o = make_optim(inis[c], N);
        float w[N], g[N];
        for (int i = 0; i < N; i++)
            w[i] = 0.5f * (float)i, g[i] = 1.0f - 0.1f * (float)i;
        cr_assert(eq(int, plast_optim_step_finite(o), 0), "%s: before any step", inis[c]);
        plast_optim_begin(o, 0.1);
        plast_optim_update(o, w, g, 0, 20);
        cr_assert(eq(int, plast_optim_step_finite(o), 0), "%s: 20 of %d", inis[c], N);
        plast_optim_update(o, w, g, 20, N);
        cr_assert(eq(int, plast_optim_step_finite(o), 1), "%s: all finite", inis[c]);
        plast_optim_begin(o, 0.1);
        cr_assert(eq(int, plast_optim_step_finite(o), 0), "%s: begin() resets", inis[c]);
        g[30] = NAN;
        plast_optim_update(o, w, g, 0, N);
        cr_assert(eq(int, plast_optim_step_finite(o), 0), "%s: NaN written", inis[c]);
        cr_assert(w[30] != w[30], "%s: the NaN is in w", inis[c]);
        plast_optim_destroy(o);
    }
    plast_optim *o = make_optim(inis[0], 2);
    float w[2] = {1.0f, -3e38f}, g[2] = {0.0f, 1e38f}; /* -3e38 - 0.1 * 1e38 overflows */
    plast_optim_begin(o, 1.0);
    plast_optim_update(o, w, g, 0, 2);
    cr_assert(eq(int, plast_optim_step_finite(o), 0), "Inf written: %g", (double)w[1]);
    plast_optim_destroy(o);
}
