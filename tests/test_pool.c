/* test_pool.c - maxpool, avgpool and gap: values by hand, backward against
 * finite differences, ties, shapes, and refused settings. */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layertest.h"

extern const plast_layer_ops plast_layer_maxpool;
extern const plast_layer_ops plast_layer_avgpool;
extern const plast_layer_ops plast_layer_gap;

/* ---- finite differences ---- */

/* maxpool on distinct values: a step of h never moves a maximum. */
Test(pool_fd, maxpool_k2_odd_sizes)
{
    lt_check_single(&plast_layer_maxpool, "kernel = 2\n", lt_shape3(2, 5, 7), 3,
                    lt_fill_distinct);
}

Test(pool_fd, maxpool_k3_s2_p1)
{
    lt_check_single(&plast_layer_maxpool, "kernel = 3\nstride = 2\npadding = 1\n",
                    lt_shape3(2, 7, 5), 2, lt_fill_distinct);
}

Test(pool_fd, maxpool_overlapping_windows)
{
    lt_check_single(&plast_layer_maxpool, "kernel = 3\nstride = 1\npadding = 1\n",
                    lt_shape3(1, 5, 6), 3, lt_fill_distinct);
}

Test(pool_fd, maxpool_stride_larger_than_kernel)
{
    lt_check_single(&plast_layer_maxpool, "kernel = 2\nstride = 3\npadding = 1\n",
                    lt_shape3(2, 7, 5), 2, lt_fill_distinct);
}

Test(pool_fd, avgpool_k2_odd_sizes)
{
    lt_check_single(&plast_layer_avgpool, "kernel = 2\n", lt_shape3(2, 5, 7), 3,
                    lt_fill_uniform);
}

Test(pool_fd, avgpool_k3_s2_p1)
{
    lt_check_single(&plast_layer_avgpool, "kernel = 3\nstride = 2\npadding = 1\n",
                    lt_shape3(2, 7, 5), 2, lt_fill_uniform);
}

Test(pool_fd, avgpool_overlapping_windows)
{
    lt_check_single(&plast_layer_avgpool, "kernel = 3\nstride = 1\npadding = 1\n",
                    lt_shape3(1, 5, 6), 3, lt_fill_uniform);
}

Test(pool_fd, avgpool_stride_larger_than_kernel)
{
    lt_check_single(&plast_layer_avgpool, "kernel = 2\nstride = 3\npadding = 1\n",
                    lt_shape3(2, 7, 5), 2, lt_fill_uniform);
}

Test(pool_fd, gap)
{
    lt_check_single(&plast_layer_gap, "", lt_shape3(3, 5, 7), 2, lt_fill_uniform);
}

/* ---- values by hand ---- */

/* Run one pool layer forward on x, then backward from dy; y and dx are
 * compared exactly with the expected values. */
static void check_hand(const plast_layer_ops *ops, const char *ini, plast_shape in, int batch,
                       const plast_real *x, const plast_real *want_y, const plast_real *dy,
                       const plast_real *want_dx)
{
    lt_net t;
    lt_net_init(&t, batch, in);
    lt_net_add(&t, ops, ini, 1);
    t.x = lt_tensor(t.mem, batch, in);
    memcpy(t.x.data, x, t.x.size * sizeof *x);
    const plast_tensor *y = lt_net_forward(&t);
    for (size_t i = 0; i < y->size; i++)
        cr_assert(eq(flt, y->data[i], want_y[i]), "%s \"%s\": y[%zu] = %g, want %g", ops->name,
                  ini, i, (double)y->data[i], (double)want_y[i]);
    plast_real *dx = malloc(t.x.size * sizeof *dx);
    cr_assert(dx != NULL);
    lt_net_backward(&t, dy, dx);
    for (size_t i = 0; i < t.x.size; i++)
        cr_assert(eq(flt, dx[i], want_dx[i]), "%s \"%s\": dx[%zu] = %g, want %g", ops->name,
                  ini, i, (double)dx[i], (double)want_dx[i]);
    free(dx);
    lt_net_fini(&t);
}

static const plast_real x4[16] = {
    1, 5, 2, 0,
    3, 4, 8, 7,
    -1, -2, 6, 6,
    -3, 9, 6, 5,
};
static const plast_real dy4[4] = {1, 2, 3, 4};

/* -1 .. -16: padding must not look like zeros. */
static const plast_real neg4[16] = {
    -1, -2, -3, -4,
    -5, -6, -7, -8,
    -9, -10, -11, -12,
    -13, -14, -15, -16,
};

Test(pool, maxpool_by_hand)
{
    /* the last window holds three 6s: the first in scan order gets dy */
    static const plast_real y[4] = {5, 8, 9, 6};
    static const plast_real dx[16] = {
        0, 1, 0, 0,
        0, 0, 2, 0,
        0, 0, 4, 0,
        0, 3, 0, 0,
    };
    check_hand(&plast_layer_maxpool, "kernel = 2\n", lt_shape3(1, 4, 4), 1, x4, y, dy4, dx);
}

Test(pool, maxpool_pads_with_minus_infinity)
{
    static const plast_real y[4] = {-1, -2, -5, -6};
    static const plast_real dx[16] = {
        1, 2, 0, 0,
        3, 4, 0, 0,
        0, 0, 0, 0,
        0, 0, 0, 0,
    };
    check_hand(&plast_layer_maxpool, "kernel = 3\nstride = 2\npadding = 1\n",
               lt_shape3(1, 4, 4), 1, neg4, y, dy4, dx);
}

Test(pool, maxpool_overlapping_windows_add_up)
{
    static const plast_real x[9] = {1, 2, 3, 4, 9, 5, 6, 7, 8};
    static const plast_real y[4] = {9, 9, 9, 9};
    static const plast_real dx[9] = {0, 0, 0, 0, 10, 0, 0, 0, 0};
    check_hand(&plast_layer_maxpool, "kernel = 2\nstride = 1\n", lt_shape3(1, 3, 3), 1, x, y,
               dy4, dx);
}

/* All equal: every window gives its gradient to its own top-left pixel. */
Test(pool, maxpool_tie_goes_to_the_first_maximum)
{
    static const plast_real x[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    static const plast_real y[2] = {0.5f, 0.5f};
    static const plast_real dy[2] = {1, 2};
    static const plast_real dx[6] = {1, 2, 0, 0, 0, 0};
    check_hand(&plast_layer_maxpool, "kernel = 2\nstride = 1\n", lt_shape3(1, 2, 3), 1, x, y,
               dy, dx);
    static const plast_real x2[4] = {0, 3, 3, 3}; /* the 3 in row 0 comes first */
    static const plast_real y2[1] = {3};
    static const plast_real dx2[4] = {0, 1, 0, 0};
    check_hand(&plast_layer_maxpool, "kernel = 2\n", lt_shape3(1, 2, 2), 1, x2, y2, dy4, dx2);
}

/* Floor: the last row and column of a 5x5 plane are in no window. */
Test(pool, maxpool_two_channels_two_samples_with_floor)
{
    plast_real x[2 * 2 * 25], dx[2 * 2 * 25];
    plast_real y[2 * 2 * 4], dy[2 * 2 * 4];
    memset(dx, 0, sizeof dx);
    for (int p = 0; p < 4; p++) { /* plane p: 100 p + 5 iy + ix */
        for (int i = 0; i < 25; i++)
            x[p * 25 + i] = (plast_real)(100 * p + i);
        static const int at[4] = {6, 8, 16, 18}; /* each window's bottom-right */
        for (int o = 0; o < 4; o++) {
            y[p * 4 + o] = (plast_real)(100 * p + at[o]);
            dy[p * 4 + o] = (plast_real)(p * 4 + o + 1);
            dx[p * 25 + at[o]] = dy[p * 4 + o];
        }
    }
    check_hand(&plast_layer_maxpool, "kernel = 2\n", lt_shape3(2, 5, 5), 2, x, y, dy, dx);
}

Test(pool, maxpool_propagates_nan)
{
    static const plast_real x[4] = {1, NAN, 3, 2};
    plast_real y = 0, xx[4];
    memcpy(xx, x, sizeof xx);
    plast_layer l;
    plast_err e = {0};
    plast_ctx ctx = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_maxpool, "kernel = 2\n", lt_shape3(1, 2, 2), &e),
                 0), "%s", e.msg);
    plast_tensor xt = plast_tensor_view(xx, 1, &l.in), yt = plast_tensor_view(&y, 1, &l.out);
    cr_assert(eq(int, l.ops->forward(&l, &xt, &yt, &ctx, &e), 0), "%s", e.msg);
    cr_assert(isnan(y) != 0, "y = %g", (double)y);
    l.ops->destroy(&l);
}

Test(pool, avgpool_by_hand)
{
    static const plast_real y[4] = {3.25f, 4.25f, 0.75f, 5.75f};
    static const plast_real dx[16] = {
        0.25f, 0.25f, 0.5f, 0.5f,
        0.25f, 0.25f, 0.5f, 0.5f,
        0.75f, 0.75f, 1.0f, 1.0f,
        0.75f, 0.75f, 1.0f, 1.0f,
    };
    check_hand(&plast_layer_avgpool, "kernel = 2\n", lt_shape3(1, 4, 4), 1, x4, y, dy4, dx);
}

/* count_include_pad: padded windows still divide by 9. */
Test(pool, avgpool_counts_the_padding)
{
    static const plast_real y[4] = {-14.0f / 9.0f, -30.0f / 9.0f, -57.0f / 9.0f, -11.0f};
    const plast_real a = 1.0f / 9.0f, b = 2.0f / 9.0f, c = 3.0f / 9.0f, d = 4.0f / 9.0f;
    const plast_real dx[16] = {
        a, a + b, b, b,
        a + c, a + b + c + d, b + d, b + d,
        c, c + d, d, d,
        c, c + d, d, d,
    };
    check_hand(&plast_layer_avgpool, "kernel = 3\nstride = 2\npadding = 1\n",
               lt_shape3(1, 4, 4), 1, neg4, y, dy4, dx);
}

Test(pool, gap_by_hand)
{
    static const plast_real x[12] = {1, 2, 3, 4, 5, 6, -1, 0, 2, 4, 1, 0};
    static const plast_real y[2] = {3.5f, 1.0f};
    static const plast_real dy[2] = {2.0f, -3.0f};
    const plast_real t = 2.0f / 6.0f;
    const plast_real dx[12] = {t, t, t, t, t, t, -0.5f, -0.5f, -0.5f, -0.5f, -0.5f, -0.5f};
    check_hand(&plast_layer_gap, "", lt_shape3(2, 2, 3), 1, x, y, dy, dx);
}

/* ---- contract ---- */

static void check_null_dx(const plast_layer_ops *ops, const char *ini)
{
    lt_net t;
    lt_net_init(&t, 2, lt_shape3(2, 4, 4));
    lt_net_add(&t, ops, ini, 1);
    plast_layer *l = &t.l[0];
    t.x = lt_tensor(t.mem, 2, t.in);
    plast_tensor_zero(&t.x);
    lt_net_forward(&t);
    plast_tensor dy = lt_tensor(t.mem, 2, l->out);
    plast_tensor_zero(&dy);
    plast_err e = {0};
    cr_assert(eq(int, l->ops->backward(l, &t.x, &t.out[0], &dy, NULL, &t.ctx, &e), 0), "%s",
              e.msg);
    plast_tensor_free(&dy);
    lt_net_fini(&t);
}

Test(pool, null_dx_is_accepted)
{
    check_null_dx(&plast_layer_maxpool, "kernel = 2\n");
    check_null_dx(&plast_layer_avgpool, "kernel = 2\n");
    check_null_dx(&plast_layer_gap, "");
}

Test(pool, wrong_tensor_sizes_are_refused)
{
    lt_net t;
    lt_net_init(&t, 2, lt_shape3(2, 4, 4));
    lt_net_add(&t, &plast_layer_maxpool, "kernel = 2\n", 1);
    plast_layer *l = &t.l[0];
    plast_tensor x = lt_tensor(t.mem, 2, lt_shape3(2, 4, 5));
    plast_tensor y = lt_tensor(t.mem, 2, l->out);
    plast_err e = {0};
    cr_assert(eq(int, l->ops->forward(l, &x, &y, &t.ctx, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "maxpool t: input: expected 2 samples of 32 values, found 2 of 40") !=
              NULL, "message: %s", e.msg);
    plast_tensor_free(&x);
    plast_tensor_free(&y);
    lt_net_fini(&t);
}

/* ---- create: shapes, flops, settings ---- */

Test(pool, shapes_and_flops)
{
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_maxpool, "kernel = 2\n", lt_shape3(3, 28, 28),
                             &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.out.ndim, 3));
    cr_assert(eq(int, l.out.dim[0], 3));
    cr_assert(eq(int, l.out.dim[1], 14)); /* stride defaults to the kernel */
    cr_assert(eq(int, l.out.dim[2], 14));
    cr_assert(eq(int, l.nparams, 0));
    cr_assert(eq(int, (int)l.ops->flags, 0));
    cr_assert(eq(u64, l.ops->flops(&l, 1), 3ull * 14 * 14 * 4));
    cr_assert(eq(u64, l.ops->flops(&l, 5), 5ull * 3 * 14 * 14 * 4));
    l.ops->destroy(&l);

    cr_assert(eq(int, lt_try(&l, &plast_layer_avgpool, "kernel = 3\nstride = 1\npadding = 1\n",
                             lt_shape3(3, 28, 27), &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.out.dim[1], 28));
    cr_assert(eq(int, l.out.dim[2], 27));
    cr_assert(eq(int, l.nparams, 0));
    cr_assert(eq(int, (int)l.ops->flags, 0));
    cr_assert(eq(u64, l.ops->flops(&l, 2), 2ull * 3 * 28 * 27 * 9));
    l.ops->destroy(&l);

    cr_assert(eq(int, lt_try(&l, &plast_layer_maxpool, "kernel = 3\nstride = 2\n",
                             lt_shape3(1, 8, 7), &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.out.dim[1], 3)); /* floor((8 - 3) / 2) + 1 */
    cr_assert(eq(int, l.out.dim[2], 3)); /* floor((7 - 3) / 2) + 1 */
    l.ops->destroy(&l);

    cr_assert(eq(int, lt_try(&l, &plast_layer_gap, "", lt_shape3(16, 7, 5), &e), 0), "%s",
              e.msg);
    cr_assert(eq(int, l.out.ndim, 1));
    cr_assert(eq(int, l.out.dim[0], 16));
    cr_assert(eq(int, l.nparams, 0));
    cr_assert(eq(int, (int)l.ops->flags, 0));
    cr_assert(eq(u64, l.ops->flops(&l, 3), 3ull * 16 * 7 * 5));
    l.ops->destroy(&l);
}

Test(pool, names_and_schemas)
{
    const plast_layer_ops *ops[] = {&plast_layer_maxpool, &plast_layer_avgpool,
                                    &plast_layer_gap};
    static const char *const names[] = {"maxpool", "avgpool", "gap"};
    for (int i = 0; i < 3; i++) {
        plast_err e = {0};
        cr_assert(eq(str, (char *)ops[i]->name, (char *)names[i]));
        cr_assert(eq(u32, ops[i]->size, (uint32_t)sizeof(plast_layer_ops)));
        cr_assert(eq(int, plast_schema_check(ops[i]->settings, names[i], &e), 0), "%s: %s",
                  names[i], e.msg);
    }
}

/* Create must fail with `code` and a message containing `part`. */
static void expect_refused(const plast_layer_ops *ops, const char *ini, plast_shape in,
                           int code, const char *part)
{
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, ops, ini, in, &e), code), "%s accepted \"%s\"", ops->name,
              ini);
    cr_assert(strstr(e.msg, part) != NULL, "%s \"%s\": message: %s", ops->name, ini, e.msg);
}

Test(pool, settings_are_checked)
{
    const plast_layer_ops *ops[] = {&plast_layer_maxpool, &plast_layer_avgpool};
    plast_shape img = lt_shape3(1, 8, 8);
    for (int i = 0; i < 2; i++) {
        expect_refused(ops[i], "", img, PLAST_E_PARSE, "kernel");
        expect_refused(ops[i], "kernel = 0\n", img, PLAST_E_PARSE, "kernel");
        expect_refused(ops[i], "kernel = 65\n", img, PLAST_E_PARSE, "kernel");
        expect_refused(ops[i], "kernel = 2\nstride = -1\n", img, PLAST_E_PARSE, "stride");
        expect_refused(ops[i], "kernel = 2\nstride = 65\n", img, PLAST_E_PARSE, "stride");
        expect_refused(ops[i], "kernel = 2\npadding = -1\n", img, PLAST_E_PARSE, "padding");
        expect_refused(ops[i], "kernel = 64\npadding = 33\n", img, PLAST_E_PARSE, "padding");
        expect_refused(ops[i], "kernel = 1\npadding = 1\n", img, PLAST_E_PARSE,
                       "[layer.t] padding: expected at most half the kernel (0), found 1");
    }
    expect_refused(&plast_layer_gap, "kernel = 2\n", img, PLAST_E_PARSE, "kernel");
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_maxpool, "kernel = 64\npadding = 32\n",
                             lt_shape3(1, 1, 1), &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.out.dim[1], 1)); /* (1 + 64 - 64) / 64 + 1 */
    l.ops->destroy(&l);
}

/* PyTorch's rule, padding <= kernel / 2, names the line of `padding`. */
Test(pool, padding_over_half_the_kernel_is_refused_at_its_line)
{
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_avgpool, "kernel = 3\nstride = 1\npadding = 2\n",
                             lt_shape3(1, 8, 8), &e), PLAST_E_PARSE));
    cr_assert(eq(str, e.msg, "[layer.t] padding: expected at most half the kernel (1), found 2"));
    cr_assert(eq(str, e.file, "test.ini"));
    cr_assert(eq(int, e.line, 4));
    cr_assert(eq(int, lt_try(&l, &plast_layer_avgpool, "kernel = 4\npadding = 2\n",
                             lt_shape3(1, 8, 8), &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.out.dim[1], 3)); /* (8 + 4 - 4) / 4 + 1 */
    l.ops->destroy(&l);
}

Test(pool, needs_an_image_input)
{
    expect_refused(&plast_layer_maxpool, "kernel = 2\n", lt_shape1(784), PLAST_E_INVAL,
                   "maxpool needs an image input [C, H, W], found 784");
    expect_refused(&plast_layer_avgpool, "kernel = 2\n", (plast_shape){2, {28, 28, 0}},
                   PLAST_E_INVAL, "avgpool needs an image input [C, H, W], found 28x28");
    expect_refused(&plast_layer_gap, "", lt_shape1(10), PLAST_E_INVAL,
                   "gap needs an image input [C, H, W], found 10");
}

Test(pool, empty_output_is_refused)
{
    expect_refused(&plast_layer_maxpool, "kernel = 5\n", lt_shape3(1, 3, 8), PLAST_E_INVAL,
                   "maxpool output 0x1 is empty: input 1x3x8, kernel 5, stride 5, padding 0");
    expect_refused(&plast_layer_avgpool, "kernel = 7\npadding = 1\n", lt_shape3(2, 4, 4),
                   PLAST_E_INVAL,
                   "avgpool output 0x0 is empty: input 2x4x4, kernel 7, stride 7, padding 1");
}

Test(pool, oversized_output_is_refused)
{
    expect_refused(&plast_layer_maxpool, "kernel = 2\nstride = 1\npadding = 1\n",
                   lt_shape3(1, INT_MAX, 1), PLAST_E_INVAL,
                   "maxpool output 2147483648x2 is too large");
}

/* The 2x2 fast path's backward: the first NaN of a window gets the
 * gradient, even after a larger number, and -0 arrives as +0 like the
 * generic path's zeroed sum. */
Test(pool, maxpool_2x2_backward_follows_the_first_nan)
{
    /* one 2x4 plane: windows {5, 1, NAN, NAN} and {2, 7, 3, 7} */
    plast_real x[8] = {5, 1, 2, 7, NAN, NAN, 3, 7}, y[2], dy[2] = {4, -0.0f}, dx[8];
    plast_layer l;
    plast_err e = {0};
    plast_ctx ctx = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_maxpool, "kernel = 2\n", lt_shape3(1, 2, 4), &e),
                 0), "%s", e.msg);
    plast_tensor xt = plast_tensor_view(x, 1, &l.in), yt = plast_tensor_view(y, 1, &l.out);
    plast_tensor dyt = plast_tensor_view(dy, 1, &l.out), dxt = plast_tensor_view(dx, 1, &l.in);
    cr_assert(eq(int, l.ops->forward(&l, &xt, &yt, &ctx, &e), 0), "%s", e.msg);
    cr_expect(isnan(y[0]) != 0, "y0 = %g", (double)y[0]);
    cr_expect(eq(flt, y[1], 7.0f));
    cr_assert(eq(int, l.ops->backward(&l, &xt, &yt, &dyt, &dxt, &ctx, &e), 0), "%s", e.msg);
    static const plast_real want[8] = {0, 0, 0, 0, 4, 0, 0, 0};
    for (int i = 0; i < 8; i++)
        cr_expect(eq(flt, dx[i], want[i]), "dx[%d] = %g", i, (double)dx[i]);
    cr_expect(eq(int, signbit(dx[3]), 0), "the -0 gradient must arrive as +0");
    l.ops->destroy(&l);
}

/* The 2x2 stride-2 fast path against the scan rule on many ties: the
 * first maximum in scan order gets the gradient (NaN: see above). */
Test(pool, maxpool_2x2_matches_the_scan_rule)
{
    enum { C = 3, H = 6, W = 8 };
    plast_real x[C * H * W], dx[C * H * W], y[C * 3 * 4], dy[C * 3 * 4];
    plast_rng r;
    plast_rng_seed(&r, 11, 12);
    for (int i = 0; i < C * H * W; i++)
        x[i] = (plast_real)plast_rng_below(&r, 3);
    memset(dx, 0, sizeof dx);
    for (int c = 0; c < C; c++)
        for (int oy = 0; oy < 3; oy++)
            for (int ox = 0; ox < 4; ox++) {
                int best = c * H * W + 2 * oy * W + 2 * ox;
                for (int dyy = 0; dyy < 2; dyy++)
                    for (int dxx = 0; dxx < 2; dxx++) {
                        int i = c * H * W + (2 * oy + dyy) * W + 2 * ox + dxx;
                        if (x[i] > x[best])
                            best = i;
                    }
                int o = (c * 3 + oy) * 4 + ox;
                y[o] = x[best];
                dy[o] = (plast_real)(o + 1);
                dx[best] += dy[o];
            }
    check_hand(&plast_layer_maxpool, "kernel = 2\n", lt_shape3(C, H, W), 1, x, y, dy, dx);
}
