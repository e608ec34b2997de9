/* test_dropout.c - the dropout layer: drop rate, scaling, the mask's
 * documented stream (per layer, per training step), backward with the same
 * mask, in place, eval and p = 0 as the identity, settings. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/config.h"
#include "plast/layer.h"
#include "plast/mem.h"
#include "plast/rng.h"
#include "plast/tensor.h"

extern const plast_layer_ops plast_layer_dropout;

#define SEED 1234u

/* ---- helpers ---- */

static plast_shape shape1(int a)
{
    return (plast_shape){1, {a, 0, 0}};
}

/* Create a dropout layer on input `in` from "[layer.t]\n" + ini; returns
 * create()'s status. */
static int layer_try(plast_layer *l, const char *ini, plast_shape in, plast_err *e)
{
    memset(l, 0, sizeof *l);
    l->ops = &plast_layer_dropout;
    snprintf(l->name, sizeof l->name, "t");
    l->in = in;
    l->seed = SEED;
    l->index = 3;
    char text[256];
    snprintf(text, sizeof text, "[layer.t]\n%s", ini);
    plast_config *cfg;
    int rc = plast_config_parse_string(&cfg, "test.ini", text, e);
    if (rc)
        return rc;
    plast_args *a;
    rc = plast_args_parse(&a, cfg, "layer.t", l->ops->settings, NULL, NULL, e);
    plast_config_destroy(cfg);
    if (rc)
        return rc;
    rc = l->ops->create(l, a, e);
    plast_args_destroy(a);
    return rc;
}

static void layer_make(plast_layer *l, const char *ini, plast_shape in)
{
    plast_err e = {0};
    cr_assert(eq(int, layer_try(l, ini, in, &e), 0), "create: %s", e.msg);
    cr_assert(eq(int, l->nparams, 0));
}

/* Values in [0.5, 1.5) with random sign: never 0, so a zero output means a
 * dropped value. */
static plast_real *nonzero_values(size_t n, uint32_t index)
{
    plast_real *p = malloc(n * sizeof *p);
    cr_assert(p != NULL);
    plast_rng r;
    plast_rng_stream(&r, 99, PLAST_STREAM_DATA, index);
    for (size_t i = 0; i < n; i++) {
        float v = 0.5f + plast_rng_float(&r);
        p[i] = plast_rng_u32(&r) & 1u ? v : -v;
    }
    return p;
}

static plast_real *copy_of(const plast_real *p, size_t n)
{
    plast_real *c = malloc(n * sizeof *c);
    cr_assert(c != NULL);
    memcpy(c, p, n * sizeof *c);
    return c;
}

static plast_ctx train_ctx(uint64_t step)
{
    return (plast_ctx){.mem = NULL, .train = 1, .threads = 1, .step = step};
}

/* y = dropout(x) for `batch` samples of l->in, out of place. */
static plast_real *run_forward(plast_layer *l, const plast_real *x, int batch,
                               const plast_ctx *ctx)
{
    size_t n = (size_t)batch * plast_shape_size(&l->in);
    plast_real *y = malloc(n * sizeof *y);
    cr_assert(y != NULL);
    plast_tensor xt = plast_tensor_view((plast_real *)x, batch, &l->in);
    plast_tensor yt = plast_tensor_view(y, batch, &l->out);
    plast_err e = {0};
    cr_assert(eq(int, l->ops->forward(l, &xt, &yt, ctx, &e), 0), "%s", e.msg);
    return y;
}

static plast_real *run_backward(plast_layer *l, const plast_real *dy, int batch,
                                const plast_ctx *ctx)
{
    size_t n = (size_t)batch * plast_shape_size(&l->in);
    plast_real *dx = malloc(n * sizeof *dx);
    cr_assert(dx != NULL);
    plast_tensor dyt = plast_tensor_view((plast_real *)dy, batch, &l->out);
    plast_tensor dxt = plast_tensor_view(dx, batch, &l->in);
    plast_err e = {0};
    /* backward reads neither x nor y: give it empty tensors */
    plast_tensor none = {0};
    cr_assert(eq(int, l->ops->backward(l, &none, &none, &dyt, &dxt, ctx, &e), 0), "%s", e.msg);
    return dx;
}

/* The mask of the documented formula: stream (seed, DROPOUT, index)
 * advanced by step << 32, element i kept when its draw u has u >= p. */
static unsigned char *reference_mask(uint64_t seed, uint32_t index, uint64_t step, double p,
                                     size_t n)
{
    unsigned char *m = malloc(n);
    cr_assert(m != NULL);
    plast_rng r;
    plast_rng_stream(&r, seed, PLAST_STREAM_DROPOUT, index);
    plast_rng_advance(&r, step << 32);
    for (size_t i = 0; i < n; i++)
        m[i] = plast_rng_float(&r) >= p;
    return m;
}

/* ---- the mask ---- */

Test(dropout, drop_fraction_is_p_within_three_sigma)
{
    enum { B = 100, N = 1000 };
    static const double ps[] = {0.1, 0.5, 0.8};
    for (int k = 0; k < 3; k++) {
        char ini[32];
        snprintf(ini, sizeof ini, "p = %g\n", ps[k]);
        plast_layer l;
        layer_make(&l, ini, shape1(N));
        plast_real *x = nonzero_values((size_t)B * N, 1);
        plast_ctx ctx = train_ctx(5);
        plast_real *y = run_forward(&l, x, B, &ctx);
        size_t dropped = 0, n = (size_t)B * N;
        for (size_t i = 0; i < n; i++)
            dropped += y[i] == 0.0f;
        double mean = ps[k] * (double)n, sigma = sqrt((double)n * ps[k] * (1.0 - ps[k]));
        cr_assert(le(dbl, fabs((double)dropped - mean), 3.0 * sigma),
                  "p = %g: dropped %zu of %zu, expected %g +- %g", ps[k], dropped, n, mean,
                  3.0 * sigma);
        free(x);
        free(y);
        l.ops->destroy(&l);
    }
}

Test(dropout, kept_values_are_scaled_by_one_over_one_minus_p)
{
    plast_layer l;
    layer_make(&l, "p = 0.3\n", shape1(257));
    plast_real *x = nonzero_values(4 * 257, 2);
    plast_ctx ctx = train_ctx(0);
    plast_real *y = run_forward(&l, x, 4, &ctx);
    float scale = (float)(1.0 / 0.7);
    size_t kept = 0;
    for (size_t i = 0; i < 4 * 257; i++) {
        if (y[i] == 0.0f)
            continue;
        kept++;
        cr_assert(eq(flt, y[i], x[i] * scale), "y[%zu] = %g, x = %g", i, (double)y[i],
                  (double)x[i]);
    }
    cr_assert(gt(sz, kept, 500), "most values are kept at p = 0.3");
    cr_assert(lt(sz, kept, 4 * 257), "some values are dropped at p = 0.3");
    free(x);
    free(y);
    l.ops->destroy(&l);
}

Test(dropout, mask_follows_the_documented_stream)
{
    enum { B = 3, N = 301 };
    static const uint64_t steps[] = {0, 1, 7, 123456789};
    for (int k = 0; k < 4; k++) {
        plast_layer l;
        layer_make(&l, "p = 0.4\n", shape1(N));
        plast_real *x = nonzero_values((size_t)B * N, 3);
        plast_ctx ctx = train_ctx(steps[k]);
        plast_real *y = run_forward(&l, x, B, &ctx);
        unsigned char *m = reference_mask(SEED, 3, steps[k], 0.4, (size_t)B * N);
        for (size_t i = 0; i < (size_t)B * N; i++)
            cr_assert(eq(int, y[i] != 0.0f, m[i]), "step %llu element %zu",
                      (unsigned long long)steps[k], i);
        free(m);
        free(x);
        free(y);
        l.ops->destroy(&l);
    }
}

/* u >= p with u from plast_rng_float, compared with p as configured (in
 * double): p = u keeps the value, the next double above u drops it. */
static plast_real first_output(double p)
{
    char ini[64];
    snprintf(ini, sizeof ini, "p = %.17g\n", p); /* round-trips exactly */
    plast_layer l;
    layer_make(&l, ini, shape1(1));
    plast_real x = 1.0f;
    plast_ctx ctx = train_ctx(0);
    plast_real *y = run_forward(&l, &x, 1, &ctx), out = *y;
    free(y);
    l.ops->destroy(&l);
    return out;
}

Test(dropout, boundary_draw_compares_with_the_configured_p)
{
    plast_rng r;
    plast_rng_stream(&r, SEED, PLAST_STREAM_DROPOUT, 3);
    double u = plast_rng_float(&r); /* the first draw of step 0 */
    cr_assert(gt(dbl, u, 0.0));
    cr_assert(ne(flt, first_output(u), 0.0f), "u == p keeps the value");
    cr_assert(eq(flt, first_output(nextafter(u, 1.0)), 0.0f), "u < p drops it");
}

Test(dropout, same_step_same_mask_other_step_other_mask)
{
    enum { B = 2, N = 500 };
    plast_layer l;
    layer_make(&l, "p = 0.5\n", shape1(N));
    plast_real *x = nonzero_values((size_t)B * N, 4);
    plast_ctx c1 = train_ctx(42), c2 = train_ctx(43);
    plast_real *a = run_forward(&l, x, B, &c1), *b = run_forward(&l, x, B, &c1);
    plast_real *c = run_forward(&l, x, B, &c2);
    cr_assert(eq(int, memcmp(a, b, (size_t)B * N * sizeof *a), 0));
    cr_assert(ne(int, memcmp(a, c, (size_t)B * N * sizeof *a), 0));
    size_t differ = 0;
    for (size_t i = 0; i < (size_t)B * N; i++)
        differ += (a[i] == 0.0f) != (c[i] == 0.0f);
    cr_assert(gt(sz, differ, 300), "masks of steps 42 and 43 should be independent");
    free(a);
    free(b);
    free(c);
    free(x);
    l.ops->destroy(&l);
}

Test(dropout, layers_and_seeds_have_their_own_masks)
{
    enum { N = 400 };
    plast_layer l;
    layer_make(&l, "p = 0.5\n", shape1(N));
    plast_real *x = nonzero_values(N, 5);
    plast_ctx ctx = train_ctx(9);
    plast_real *a = run_forward(&l, x, 1, &ctx);
    l.index = 4;
    plast_real *b = run_forward(&l, x, 1, &ctx);
    l.index = 3;
    l.seed = SEED + 1;
    plast_real *c = run_forward(&l, x, 1, &ctx);
    cr_assert(ne(int, memcmp(a, b, N * sizeof *a), 0), "another layer index");
    cr_assert(ne(int, memcmp(a, c, N * sizeof *a), 0), "another seed");
    free(a);
    free(b);
    free(c);
    free(x);
    l.ops->destroy(&l);
}

/* ---- backward and in place ---- */

Test(dropout, backward_applies_the_forward_mask)
{
    enum { B = 3, N = 333 };
    plast_layer l;
    layer_make(&l, "p = 0.25\n", shape1(N));
    plast_real *x = nonzero_values((size_t)B * N, 6), *dy = nonzero_values((size_t)B * N, 7);
    plast_ctx ctx = train_ctx(17);
    plast_real *y = run_forward(&l, x, B, &ctx), *dx = run_backward(&l, dy, B, &ctx);
    float scale = (float)(1.0 / 0.75);
    size_t kept = 0;
    for (size_t i = 0; i < (size_t)B * N; i++) {
        int keep = y[i] != 0.0f;
        kept += (size_t)keep;
        cr_assert(eq(flt, dx[i], keep ? dy[i] * scale : 0.0f), "element %zu", i);
    }
    cr_assert(gt(sz, kept, 0));
    cr_assert(lt(sz, kept, (size_t)B * N));
    free(x);
    free(dy);
    free(y);
    free(dx);
    l.ops->destroy(&l);
}

Test(dropout, in_place_gives_the_bits_of_out_of_place)
{
    enum { B = 4, N = 129 };
    plast_layer l;
    layer_make(&l, "p = 0.6\n", shape1(N));
    cr_assert(ne(uint, l.ops->flags & PLAST_LAYER_INPLACE, 0u));
    size_t n = (size_t)B * N;
    plast_real *x = nonzero_values(n, 8), *dy = nonzero_values(n, 9);
    plast_ctx ctx = train_ctx(3);
    plast_real *y = run_forward(&l, x, B, &ctx), *dx = run_backward(&l, dy, B, &ctx);

    plast_real *xy = copy_of(x, n), *g = copy_of(dy, n);
    plast_tensor xy_t = plast_tensor_view(xy, B, &l.in), g_t = plast_tensor_view(g, B, &l.in);
    plast_tensor none = {0};
    plast_err e = {0};
    cr_assert(eq(int, l.ops->forward(&l, &xy_t, &xy_t, &ctx, &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.ops->backward(&l, &none, &none, &g_t, &g_t, &ctx, &e), 0), "%s", e.msg);
    cr_assert(eq(int, memcmp(xy, y, n * sizeof *y), 0), "forward");
    cr_assert(eq(int, memcmp(g, dx, n * sizeof *dx), 0), "backward");
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(xy);
    free(g);
    l.ops->destroy(&l);
}

Test(dropout, null_dx_is_accepted)
{
    plast_layer l;
    layer_make(&l, "p = 0.5\n", shape1(4));
    plast_real dyv[4] = {1, 2, 3, 4};
    plast_tensor dy = plast_tensor_view(dyv, 1, &l.out), none = {0};
    plast_ctx ctx = train_ctx(0);
    plast_err e = {0};
    cr_assert(eq(int, l.ops->backward(&l, &none, &none, &dy, NULL, &ctx, &e), 0), "%s", e.msg);
    l.ops->destroy(&l);
}

/* ---- identity cases ---- */

static void expect_identity(const char *ini, int train)
{
    enum { B = 2, N = 100 };
    plast_layer l;
    layer_make(&l, ini, shape1(N));
    size_t n = (size_t)B * N;
    plast_real *x = nonzero_values(n, 10), *dy = nonzero_values(n, 11);
    plast_ctx ctx = train_ctx(8);
    ctx.train = train;
    plast_real *y = run_forward(&l, x, B, &ctx), *dx = run_backward(&l, dy, B, &ctx);
    cr_assert(eq(int, memcmp(x, y, n * sizeof *x), 0), "%s forward", ini);
    cr_assert(eq(int, memcmp(dy, dx, n * sizeof *dy), 0), "%s backward", ini);
    /* and in place */
    plast_real *xy = copy_of(x, n);
    plast_tensor xy_t = plast_tensor_view(xy, B, &l.in);
    plast_err e = {0};
    cr_assert(eq(int, l.ops->forward(&l, &xy_t, &xy_t, &ctx, &e), 0), "%s", e.msg);
    cr_assert(eq(int, memcmp(x, xy, n * sizeof *x), 0), "%s in place", ini);
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(xy);
    l.ops->destroy(&l);
}

Test(dropout, eval_is_the_identity)
{
    expect_identity("p = 0.5\n", 0);
    expect_identity("p = 0.9\n", 0);
}

Test(dropout, p_zero_is_the_identity)
{
    expect_identity("p = 0\n", 1);
}

/* ---- create, settings ---- */

Test(dropout, keeps_the_shape_and_has_no_parameters)
{
    plast_layer l;
    plast_err e = {0};
    plast_shape in = {3, {2, 5, 7}};
    cr_assert(eq(int, layer_try(&l, "", in, &e), 0), "%s", e.msg);
    cr_assert(plast_shape_equal(&l.out, &l.in));
    cr_assert(eq(int, l.nparams, 0));
    cr_assert(eq(u64, l.ops->flops(&l, 3), 3 * 70));
    cr_assert(eq(str, (char *)l.ops->name, "dropout"));
    cr_assert(eq(u32, l.ops->size, (uint32_t)sizeof(plast_layer_ops)));
    l.ops->destroy(&l);
}

Test(dropout, default_p_is_one_half)
{
    enum { N = 20000 };
    plast_layer l;
    layer_make(&l, "", shape1(N));
    plast_real *x = nonzero_values(N, 12);
    plast_ctx ctx = train_ctx(1);
    plast_real *y = run_forward(&l, x, 1, &ctx);
    unsigned char *m = reference_mask(SEED, 3, 1, 0.5, N);
    for (size_t i = 0; i < N; i++)
        cr_assert(eq(flt, y[i], m[i] ? x[i] * 2.0f : 0.0f), "element %zu", i);
    free(m);
    free(x);
    free(y);
    l.ops->destroy(&l);
}

Test(dropout, settings_are_checked)
{
    static const char *const bad[] = {"p = 1\n", "p = 1.5\n", "p = -0.1\n", "p = half\n",
                                      "q = 0.5\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        plast_layer l;
        plast_err e = {0};
        cr_assert(eq(int, layer_try(&l, bad[i], shape1(3), &e), PLAST_E_PARSE), "accepted %s",
                  bad[i]);
    }
    plast_err e = {0};
    cr_assert(eq(int, plast_schema_check(plast_layer_dropout.settings, "dropout", &e), 0), "%s",
              e.msg);
    plast_layer l;
    cr_assert(eq(int, layer_try(&l, "p = 0.999\n", shape1(3), &e), 0), "%s", e.msg);
    l.ops->destroy(&l);
}

Test(dropout, size_mismatch_is_an_error)
{
    plast_layer l;
    layer_make(&l, "p = 0.5\n", shape1(4));
    plast_real xv[8] = {0}, yv[4];
    plast_shape s4 = shape1(4), s8 = shape1(8);
    plast_tensor x = plast_tensor_view(xv, 1, &s8), y = plast_tensor_view(yv, 1, &s4);
    plast_ctx ctx = train_ctx(0);
    plast_err e = {0};
    cr_assert(eq(int, l.ops->forward(&l, &x, &y, &ctx, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "dropout") != NULL, "message: %s", e.msg);
    l.ops->destroy(&l);
}
