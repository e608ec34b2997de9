/* test_conv.c - the conv2d layer: shapes and settings, values by hand and
 * against a direct convolution in double, backward against finite
 * differences, and the backward contract (adds, frozen, dx NULL, scratch
 * returned). */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/gemm.h"
#include "layers/conv2d_x86.h"
#include "layertest.h"

extern const plast_layer_ops plast_layer_conv2d;
extern const plast_layer_ops plast_layer_tanh;
extern const plast_layer_ops plast_layer_dense;
extern const plast_layer_ops plast_layer_gap;

/* ---- finite differences: 3 input channels, 7x5 images, 4 channels ----
 *
 * A conv output sums up to 75 products, so the fp32 rounding of y, divided
 * by 2h, reaches 1e-4 in a numeric gradient with U(-1, 1) inputs and the
 * default init: too near the 1e-3 floor of the relative check.  Inputs in
 * U(-1/8, 1/8) and parameters scaled by 1/8 (exact) make y 64 times
 * smaller and the gradients only 8 times smaller. */

#define FD_SCALE 0.125f

static void fill_small(plast_real *p, size_t n, plast_rng *r)
{
    for (size_t i = 0; i < n; i++)
        p[i] = plast_rng_uniform(r, -FD_SCALE, FD_SCALE);
}

static void scale_params(plast_layer *l)
{
    for (int i = 0; i < l->nparams; i++)
        for (size_t j = 0; j < l->param[i].count; j++)
            l->param[i].w[j] *= FD_SCALE;
}

static void fd_conv(const char *ini, int batch)
{
    lt_net t;
    lt_net_init(&t, batch, lt_shape3(3, 7, 5));
    lt_net_add(&t, &plast_layer_conv2d, ini, 7);
    scale_params(&t.l[0]);
    lt_check_net(&t, fill_small, 11);
    lt_net_fini(&t);
}

Test(conv_fd, k3_s1_p0)
{
    fd_conv("channels = 4\n", 2);
}

Test(conv_fd, k3_s2_p1_without_bias)
{
    fd_conv("channels = 4\nstride = 2\npadding = 1\nbias = false\n", 3);
}

Test(conv_fd, k5_s1_p2)
{
    fd_conv("channels = 4\nkernel = 5\npadding = 2\n", 2);
}

Test(conv_fd, k5_s2_p2)
{
    fd_conv("channels = 4\nkernel = 5\nstride = 2\npadding = 2\n", 3);
}

Test(conv_fd, k1_pointwise)
{
    fd_conv("channels = 4\nkernel = 1\n", 3);
}

Test(conv_fd, k1_s2_p0)
{
    fd_conv("channels = 4\nkernel = 1\nstride = 2\n", 2);
}

Test(conv_fd, k1_s2_p1)
{
    fd_conv("channels = 4\nkernel = 1\nstride = 2\npadding = 1\n", 2);
}

Test(conv_fd, k3_s2_p2_without_bias)
{
    fd_conv("channels = 4\nstride = 2\npadding = 2\nbias = false\n", 2);
}

Test(conv_fd, stride_larger_than_kernel)
{
    fd_conv("channels = 2\nkernel = 2\nstride = 3\npadding = 1\n", 2);
}

Test(conv_fd, conv_tanh_gap_dense_stack)
{
    lt_net t;
    lt_net_init(&t, 3, lt_shape3(2, 6, 5));
    lt_net_add(&t, &plast_layer_conv2d, "channels = 3\nstride = 2\npadding = 1\n", 5);
    lt_net_add(&t, &plast_layer_tanh, "", 5);
    lt_net_add(&t, &plast_layer_gap, "", 5);
    lt_net_add(&t, &plast_layer_dense, "units = 2\nbias = false\n", 5); /* y stays small */
    scale_params(&t.l[0]);
    lt_check_net(&t, fill_small, 13);
    lt_net_fini(&t);
}

/* ---- values ---- */

/* One layer with weights set by the test and a forward done on x. */
typedef struct fixture {
    lt_net t;
    plast_layer *l;
} fixture;

static void setup(fixture *f, const char *ini, plast_shape in, int batch, const plast_real *x,
                  const plast_real *w, const plast_real *b)
{
    lt_net_init(&f->t, batch, in);
    lt_net_add(&f->t, &plast_layer_conv2d, ini, 3);
    f->l = &f->t.l[0];
    if (w)
        memcpy(f->l->param[0].w, w, f->l->param[0].count * sizeof *w);
    if (b)
        memcpy(f->l->param[1].w, b, f->l->param[1].count * sizeof *b);
    f->t.x = lt_tensor(f->t.mem, batch, in);
    memcpy(f->t.x.data, x, f->t.x.size * sizeof *x);
    lt_net_forward(&f->t);
}

static void expect_values(const char *what, const plast_real *got, const plast_real *want,
                          size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(eq(flt, got[i], want[i]), "%s[%zu]: got %g, want %g", what, i,
                  (double)got[i], (double)want[i]);
}

static const plast_real hand_x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* 1x3x3 */
static const plast_real hand_w[4] = {1, 2, 3, 4};                /* 1x1x2x2 */

/* Every value worked out by hand: y = w * x + b, dW = dY (x) x, db = sum dY,
 * dX = full convolution of dY with w. */
Test(conv, hand_computed_2x2_kernel)
{
    fixture f;
    const plast_real b = 0.5f;
    setup(&f, "channels = 1\nkernel = 2\n", lt_shape3(1, 3, 3), 1, hand_x, hand_w, &b);
    cr_assert(eq(int, f.l->out.dim[1], 2));
    cr_assert(eq(int, f.l->out.dim[2], 2));
    static const plast_real y[4] = {37.5f, 47.5f, 67.5f, 77.5f};
    expect_values("y", f.t.out[0].data, y, 4);

    static const plast_real dy[4] = {1.0f, -1.0f, 2.0f, 0.5f};
    plast_real dx[9];
    lt_net_backward(&f.t, dy, dx);
    static const plast_real dw[4] = {9.5f, 12.0f, 17.0f, 19.5f};
    static const plast_real want_dx[9] = {1, 1, -2, 5, 5.5f, -3, 6, 9.5f, 2};
    expect_values("dW", f.l->param[0].g, dw, 4);
    cr_assert(eq(flt, f.l->param[1].g[0], 2.5f));
    expect_values("dX", dx, want_dx, 9);
    lt_net_fini(&f.t);
}

/* Stride 2 and padding 1 on the same numbers: windows that hang off every
 * edge see zeros there. */
Test(conv, hand_computed_stride_and_padding)
{
    fixture f;
    setup(&f, "channels = 1\nkernel = 2\nstride = 2\npadding = 1\nbias = false\n",
          lt_shape3(1, 3, 3), 1, hand_x, hand_w, NULL);
    static const plast_real y[4] = {4.0f, 18.0f, 36.0f, 77.0f};
    expect_values("y", f.t.out[0].data, y, 4);

    static const plast_real dy[4] = {1.0f, -1.0f, 2.0f, 0.5f};
    plast_real dx[9];
    lt_net_backward(&f.t, dy, dx);
    /* dW[a][b] = sum dY[o] x[2o + (a,b) - 1]: taps off the image add 0 */
    static const plast_real dw[4] = {2.5f, 11.0f, 2.0f, 16.5f};
    /* each pixel is in exactly one window (stride = kernel) */
    static const plast_real want_dx[9] = {4, -3, -4, 4, 0.5f, 1, 8, 1.5f, 2};
    expect_values("dW", f.l->param[0].g, dw, 4);
    expect_values("dX", dx, want_dx, 9);
    lt_net_fini(&f.t);
}

/* y[n, co, oy, ox] in double, straight from the definition, with the sum
 * of |terms| for a tolerance that cancellation cannot fool. */
static void direct_conv(const plast_layer *l, const plast_real *x, int n, int co, int oy,
                        int ox, int k, int s, int p, double *y, double *mag)
{
    int cin = l->in.dim[0], h = l->in.dim[1], w = l->in.dim[2];
    const plast_real *wt = l->param[0].w;
    double acc = l->nparams > 1 ? l->param[1].w[co] : 0.0;
    double m = fabs(acc);
    for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                int iy = oy * s - p + ky, ix = ox * s - p + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                    continue;
                double a = wt[((co * cin + ci) * k + ky) * k + kx];
                double v = x[((n * cin + ci) * h + iy) * w + ix];
                acc += a * v;
                m += fabs(a * v);
            }
    *y = acc;
    *mag = m;
}

static void check_direct(int cin, int h, int w, int cout, int k, int s, int p, int bias,
                         int batch)
{
    char ini[128];
    snprintf(ini, sizeof ini, "channels = %d\nkernel = %d\nstride = %d\npadding = %d\nbias = %s\n",
             cout, k, s, p, bias ? "true" : "false");
    lt_net t;
    lt_net_init(&t, batch, lt_shape3(cin, h, w));
    lt_net_add(&t, &plast_layer_conv2d, ini, 17);
    plast_layer *l = &t.l[0];
    int hout = (h + 2 * p - k) / s + 1, wout = (w + 2 * p - k) / s + 1;
    cr_assert(eq(int, l->out.dim[0], cout));
    cr_assert(eq(int, l->out.dim[1], hout));
    cr_assert(eq(int, l->out.dim[2], wout));
    plast_rng rng;
    plast_rng_stream(&rng, 19, PLAST_STREAM_DATA, 0);
    t.x = lt_tensor(t.mem, batch, t.in);
    lt_fill_uniform(t.x.data, t.x.size, &rng);
    const plast_real *y = lt_net_forward(&t)->data;
    size_t i = 0;
    for (int n = 0; n < batch; n++)
        for (int co = 0; co < cout; co++)
            for (int oy = 0; oy < hout; oy++)
                for (int ox = 0; ox < wout; ox++, i++) {
                    double want, mag;
                    direct_conv(l, t.x.data, n, co, oy, ox, k, s, p, &want, &mag);
                    cr_assert(le(dbl, fabs(y[i] - want), 1e-5 * mag + 1e-30),
                              "%s: y[%d,%d,%d,%d] = %.9g, direct %.9g", ini, n, co, oy, ox,
                              (double)y[i], want);
                }
    lt_net_fini(&t);
}

Test(conv, matches_direct_convolution)
{
    check_direct(3, 7, 5, 4, 3, 1, 0, 1, 2);
    check_direct(3, 7, 5, 4, 3, 2, 1, 0, 3);
    check_direct(3, 7, 5, 4, 5, 1, 2, 1, 2);
    check_direct(3, 7, 5, 4, 5, 3, 2, 1, 2);
    check_direct(3, 7, 5, 4, 1, 1, 0, 1, 3);
    check_direct(3, 7, 5, 4, 1, 2, 0, 1, 2);
    check_direct(2, 9, 11, 5, 4, 2, 3, 1, 2); /* even kernel, padding > kernel/2 */
    check_direct(16, 12, 12, 8, 3, 1, 1, 1, 2);
    check_direct(1, 28, 28, 6, 5, 1, 0, 1, 1);
}

/* Each sample is computed alone: a batch gives the bits of its samples. */
Test(conv, batch_equals_samples_one_by_one)
{
    const char *ini = "channels = 3\nstride = 2\npadding = 1\n";
    plast_shape in = lt_shape3(2, 6, 7);
    lt_net all, one;
    lt_net_init(&all, 3, in);
    lt_net_add(&all, &plast_layer_conv2d, ini, 9);
    plast_rng rng;
    plast_rng_stream(&rng, 4, PLAST_STREAM_DATA, 0);
    all.x = lt_tensor(all.mem, 3, in);
    lt_fill_uniform(all.x.data, all.x.size, &rng);
    const plast_tensor *y = lt_net_forward(&all);
    size_t nx = plast_shape_size(&in), ny = plast_shape_size(&all.l[0].out);
    for (int n = 0; n < 3; n++) {
        lt_net_init(&one, 1, in);
        lt_net_add(&one, &plast_layer_conv2d, ini, 9);
        one.x = lt_tensor(one.mem, 1, in);
        memcpy(one.x.data, all.x.data + (size_t)n * nx, nx * sizeof(plast_real));
        const plast_tensor *y1 = lt_net_forward(&one);
        cr_assert(eq(int, memcmp(y1->data, y->data + (size_t)n * ny, ny * sizeof(plast_real)),
                     0), "sample %d", n);
        lt_net_fini(&one);
    }
    lt_net_fini(&all);
}

/* The weight gradient is plast_gemm of the gathered dY and the column
 * matrix built here (dW = dY col^T), bit for bit: whichever tap order the
 * layer lowers in (channels last when Cin >= k), only dW's columns move.
 * The batch is one chunk, so the sums run over the same K blocks; the
 * 14x14 case has three of them. */
static void check_weight_gradient(int cin, int h, int w, int cout, int k, int s, int p)
{
    enum { B = 3 };
    char ini[96];
    snprintf(ini, sizeof ini, "channels = %d\nkernel = %d\nstride = %d\npadding = %d\n", cout,
             k, s, p);
    lt_net t;
    lt_net_init(&t, B, lt_shape3(cin, h, w));
    lt_net_add(&t, &plast_layer_conv2d, ini, 5);
    plast_layer *l = &t.l[0];
    int hout = l->out.dim[1], wout = l->out.dim[2], cols = hout * wout, n = B * cols;
    int rows = cin * k * k;
    plast_rng rng;
    plast_rng_stream(&rng, 8, PLAST_STREAM_DATA, 0);
    t.x = lt_tensor(t.mem, B, t.in);
    lt_fill_uniform(t.x.data, t.x.size, &rng);
    lt_net_forward(&t);
    float *r = malloc((size_t)B * cout * cols * sizeof *r), *dyc = malloc((size_t)cout * n * 4);
    float *col = calloc((size_t)rows * n, sizeof *col), *want = malloc((size_t)cout * rows * 4);
    cr_assert(r && dyc && col && want);
    lt_fill_uniform(r, (size_t)B * cout * cols, &rng);
    for (int i = 0; i < B; i++)
        for (int co = 0; co < cout; co++)
            memcpy(dyc + (size_t)co * n + (size_t)i * cols, r + ((size_t)i * cout + co) * cols,
                   (size_t)cols * sizeof *dyc);
    for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                for (int i = 0; i < B; i++)
                    for (int oy = 0; oy < hout; oy++)
                        for (int ox = 0; ox < wout; ox++) {
                            int iy = oy * s + ky - p, ix = ox * s + kx - p;
                            if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                col[(size_t)((ci * k + ky) * k + kx) * n +
                                    (size_t)(i * cols + oy * wout + ox)] =
                                    t.x.data[(((size_t)i * cin + ci) * h + iy) * w + ix];
                        }
    plast_gemm(0, 1, cout, rows, n, 1.0f, dyc, n, col, n, 0.0f, want, rows);
    memset(l->param[0].g, 0, l->param[0].count * sizeof(plast_real));
    lt_net_backward(&t, r, NULL);
    for (size_t i = 0; i < (size_t)cout * rows; i++)
        cr_assert(eq(flt, l->param[0].g[i], want[i]), "Cin %d k %d: dW[%zu]", cin, k, i);
    free(r);
    free(dyc);
    free(col);
    free(want);
    lt_net_fini(&t);
}

Test(conv, weight_gradient_is_the_gemm_of_the_column_matrix)
{
    check_weight_gradient(3, 7, 5, 4, 3, 1, 1);   /* channels last */
    check_weight_gradient(2, 9, 8, 3, 5, 1, 2);   /* Cin < k: (ci, ky, kx) order */
    check_weight_gradient(4, 6, 7, 5, 3, 2, 1);   /* channels last, stride 2 */
    check_weight_gradient(6, 14, 14, 8, 5, 1, 2); /* channels last, three K blocks */
    check_weight_gradient(1, 14, 14, 4, 5, 1, 2); /* one channel */
}

/* ---- backward contract ---- */

/* A 3x7x5 -> 4 channel conv (k3, s2, p1) with random x, forward done;
 * r is the upstream gradient. */
typedef struct contract {
    lt_net t;
    plast_layer *l;
    plast_real *r;
    size_t nx;
} contract;

static void contract_setup(contract *c, const char *extra)
{
    char ini[128];
    snprintf(ini, sizeof ini, "channels = 4\nstride = 2\npadding = 1\n%s", extra);
    lt_net_init(&c->t, 3, lt_shape3(3, 7, 5));
    lt_net_add(&c->t, &plast_layer_conv2d, ini, 21);
    c->l = &c->t.l[0];
    plast_rng rng;
    plast_rng_stream(&rng, 3, PLAST_STREAM_DATA, 1);
    c->t.x = lt_tensor(c->t.mem, 3, c->t.in);
    lt_fill_uniform(c->t.x.data, c->t.x.size, &rng);
    c->nx = c->t.x.size;
    size_t ny = 3 * plast_shape_size(&c->l->out);
    c->r = malloc(ny * sizeof *c->r);
    cr_assert(c->r != NULL);
    lt_fill_uniform(c->r, ny, &rng);
    lt_net_forward(&c->t);
}

static void contract_teardown(contract *c)
{
    free(c->r);
    lt_net_fini(&c->t);
}

Test(conv, backward_adds_parameter_gradients)
{
    contract c;
    contract_setup(&c, "");
    cr_assert(eq(int, c.l->nparams, 2));
    lt_net_backward(&c.t, c.r, NULL);
    plast_real *once[2];
    for (int p = 0; p < 2; p++)
        once[p] = lt_copy(c.l->param[p].g, c.l->param[p].count);
    lt_net_backward(&c.t, c.r, NULL);
    for (int p = 0; p < 2; p++) {
        int nonzero = 0;
        for (size_t i = 0; i < c.l->param[p].count; i++) {
            cr_assert(eq(flt, c.l->param[p].g[i], 2.0f * once[p][i]), "%s[%zu]",
                      c.l->param[p].name, i);
            nonzero += once[p][i] != 0.0f;
        }
        cr_assert(gt(int, nonzero, 0), "%s: gradient all zero", c.l->param[p].name);
        free(once[p]);
    }
    contract_teardown(&c);
}

Test(conv, frozen_layer_adds_nothing_but_still_gives_dx)
{
    contract c;
    contract_setup(&c, "");
    plast_real *dx_live = malloc(c.nx * sizeof *dx_live);
    plast_real *dx_frozen = malloc(c.nx * sizeof *dx_frozen);
    cr_assert(dx_live && dx_frozen);
    lt_net_backward(&c.t, c.r, dx_live);
    for (int p = 0; p < c.l->nparams; p++)
        for (size_t i = 0; i < c.l->param[p].count; i++)
            c.l->param[p].g[i] = 0.25f; /* sentinel */
    c.l->frozen = 1;
    lt_net_backward(&c.t, c.r, dx_frozen);
    for (int p = 0; p < c.l->nparams; p++)
        for (size_t i = 0; i < c.l->param[p].count; i++)
            cr_assert(eq(flt, c.l->param[p].g[i], 0.25f), "%s[%zu] changed", c.l->param[p].name,
                      i);
    cr_assert(eq(int, memcmp(dx_live, dx_frozen, c.nx * sizeof *dx_live), 0));
    free(dx_live);
    free(dx_frozen);
    contract_teardown(&c);
}

static void backward_direct(contract *c, plast_tensor *dx)
{
    plast_err e = {0};
    plast_tensor dy = lt_tensor(c->t.mem, 3, c->l->out);
    memcpy(dy.data, c->r, dy.size * sizeof *c->r);
    cr_assert(eq(int, c->l->ops->backward(c->l, &c->t.x, &c->t.out[0], &dy, dx, &c->t.ctx, &e),
                 0), "%s", e.msg);
    plast_tensor_free(&dy);
}

Test(conv, null_dx_gives_the_same_parameter_gradients)
{
    contract c;
    contract_setup(&c, "");
    lt_net_backward(&c.t, c.r, NULL);
    plast_real *with[2];
    for (int p = 0; p < 2; p++)
        with[p] = lt_copy(c.l->param[p].g, c.l->param[p].count);
    lt_zero_grads(c.l);
    backward_direct(&c, NULL);
    for (int p = 0; p < 2; p++) {
        cr_assert(eq(int, memcmp(with[p], c.l->param[p].g,
                                 c.l->param[p].count * sizeof(plast_real)), 0),
                  "%s differs", c.l->param[p].name);
        free(with[p]);
    }
    contract_teardown(&c);
}

Test(conv, frozen_with_null_dx_touches_nothing)
{
    contract c;
    contract_setup(&c, "");
    for (int p = 0; p < c.l->nparams; p++)
        for (size_t i = 0; i < c.l->param[p].count; i++)
            c.l->param[p].g[i] = -1.5f;
    c.l->frozen = 1;
    plast_mem_reset_peaks(c.t.mem);
    size_t before = plast_mem_peak(c.t.mem, PLAST_MEM_SCRATCH);
    backward_direct(&c, NULL);
    for (int p = 0; p < c.l->nparams; p++)
        for (size_t i = 0; i < c.l->param[p].count; i++)
            cr_assert(eq(flt, c.l->param[p].g[i], -1.5f));
    cr_assert(eq(sz, plast_mem_peak(c.t.mem, PLAST_MEM_SCRATCH), before), "scratch was taken");
    contract_teardown(&c);
}

/* Scratch: one block for a chunk of samples (here the whole batch of 3),
 * given back before the call returns.  Forward: the [Cout, 3*Hout*Wout]
 * output and the lowering (the 3 samples' zero-padded input planes, one
 * int32 offset per kernel tap and per output pixel).  Backward: the
 * gathered [Cout, 3*Hout*Wout] output gradient, then one region for the
 * lowering (dW) and, over it, the [Cin*k*k, 3*Hout*Wout] column gradient
 * and one padded plane (dX); and the [Cout, Cin*k*k] batch weight
 * gradient. */
Test(conv, scratch_is_returned)
{
    contract c;
    contract_setup(&c, "");
    size_t cols = 3 * (size_t)(c.l->out.dim[1] * c.l->out.dim[2]), taps = 3 * 3 * 3;
    size_t plane = (7 + 2) * (5 + 2); /* padding 1 */
    size_t out = 4 * cols * sizeof(plast_real);
    size_t lowering = (3 * 3 * plane + taps + cols) * sizeof(plast_real);
    size_t dcol = (taps * cols + plane) * sizeof(plast_real);
    /* the weight gradient and 16 partial sums per channel for the bias */
    size_t dw = (c.l->param[0].count + 4 * 16) * sizeof(plast_real);
    cr_assert(eq(sz, plast_mem_live(c.t.mem, PLAST_MEM_SCRATCH), 0));
    cr_assert(eq(sz, plast_mem_peak(c.t.mem, PLAST_MEM_SCRATCH), out + lowering));
    plast_mem_reset_peaks(c.t.mem);
    lt_net_backward(&c.t, c.r, NULL);
    cr_assert(eq(sz, plast_mem_live(c.t.mem, PLAST_MEM_SCRATCH), 0));
    size_t region = dcol > lowering ? dcol : lowering;
    cr_assert(eq(sz, plast_mem_peak(c.t.mem, PLAST_MEM_SCRATCH), out + region + dw));
    plast_mem_reset_peaks(c.t.mem);
    c.l->frozen = 1; /* dx only: no lowering, no weight gradient buffer */
    lt_net_backward(&c.t, c.r, NULL);
    cr_assert(eq(sz, plast_mem_live(c.t.mem, PLAST_MEM_SCRATCH), 0));
    cr_assert(eq(sz, plast_mem_peak(c.t.mem, PLAST_MEM_SCRATCH), out + dcol));
    contract_teardown(&c);
}

Test(conv, pointwise_needs_no_scratch)
{
    lt_net t;
    lt_net_init(&t, 2, lt_shape3(3, 4, 5));
    lt_net_add(&t, &plast_layer_conv2d, "channels = 2\nkernel = 1\n", 1);
    t.x = lt_tensor(t.mem, 2, t.in);
    plast_tensor_zero(&t.x);
    lt_net_forward(&t);
    size_t ny = 2 * plast_shape_size(&t.l[0].out);
    plast_real *r = calloc(ny, sizeof *r);
    cr_assert(r != NULL);
    cr_assert(eq(sz, plast_mem_peak(t.mem, PLAST_MEM_SCRATCH), 0));
    lt_net_backward(&t, r, NULL); /* only the weight and bias gradient buffer */
    cr_assert(eq(sz, plast_mem_peak(t.mem, PLAST_MEM_SCRATCH),
                 (t.l[0].param[0].count + 2 * 16) * sizeof(plast_real)));
    cr_assert(eq(sz, plast_mem_live(t.mem, PLAST_MEM_SCRATCH), 0));
    free(r);
    lt_net_fini(&t);
}

Test(conv, out_of_scratch_memory_is_reported)
{
    contract c;
    contract_setup(&c, "");
    plast_err e = {0};
    plast_mem_fail_at(c.t.mem, 1);
    cr_assert(eq(int, c.l->ops->forward(c.l, &c.t.x, &c.t.out[0], &c.t.ctx, &e), PLAST_E_NOMEM));
    cr_assert(strstr(e.msg, "4x36 output buffer") != NULL, "message: %s", e.msg);
    plast_tensor dy = lt_tensor(c.t.mem, 3, c.l->out);
    memset(dy.data, 0, dy.size * sizeof *dy.data);
    plast_mem_fail_at(c.t.mem, 1);
    e = (plast_err){0};
    cr_assert(eq(int, c.l->ops->backward(c.l, &c.t.x, &c.t.out[0], &dy, NULL, &c.t.ctx, &e),
                 PLAST_E_NOMEM));
    cr_assert(strstr(e.msg, "4x36 output gradient buffer") != NULL, "message: %s", e.msg);
    plast_mem_fail_at(c.t.mem, 2); /* the first buffer is given back */
    e = (plast_err){0};
    cr_assert(eq(int, c.l->ops->backward(c.l, &c.t.x, &c.t.out[0], &dy, NULL, &c.t.ctx, &e),
                 PLAST_E_NOMEM));
    cr_assert(strstr(e.msg, "4x27 weight gradient buffer") != NULL, "message: %s", e.msg);
    plast_tensor_free(&dy);
    cr_assert(eq(sz, plast_mem_live(c.t.mem, PLAST_MEM_SCRATCH), 0));
    contract_teardown(&c);
}

Test(conv, wrong_tensor_sizes_are_refused)
{
    contract c;
    contract_setup(&c, "");
    plast_err e = {0};
    plast_shape small = lt_shape3(3, 7, 4);
    plast_tensor x = lt_tensor(c.t.mem, 3, small);
    cr_assert(eq(int, c.l->ops->forward(c.l, &x, &c.t.out[0], &c.t.ctx, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "input: expected 3 samples of 105 values, found 3 of 84") != NULL,
              "message: %s", e.msg);
    plast_tensor_free(&x);
    contract_teardown(&c);
}

/* ---- create: shapes, parameters, settings ---- */

Test(conv, declares_shape_parameters_and_flops)
{
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_conv2d, "channels = 32\npadding = 1\n",
                             lt_shape3(1, 28, 28), &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.out.ndim, 3));
    cr_assert(eq(int, l.out.dim[0], 32));
    cr_assert(eq(int, l.out.dim[1], 28));
    cr_assert(eq(int, l.out.dim[2], 28));
    cr_assert(eq(int, l.nparams, 2));
    cr_assert(eq(str, (char *)l.param[0].name, "weight"));
    cr_assert(eq(sz, l.param[0].count, 32 * 9));
    cr_assert(eq(int, l.param[0].fan_in, 9));
    cr_assert(eq(str, (char *)l.param[1].name, "bias"));
    cr_assert(eq(sz, l.param[1].count, 32));
    cr_assert(eq(int, l.param[1].fan_in, 9));
    cr_assert(eq(u32, l.param[0].flags, 0u));
    cr_assert(eq(u64, l.ops->flops(&l, 1), 2ull * 32 * 9 * 28 * 28));
    cr_assert(eq(u64, l.ops->flops(&l, 4), 8ull * 32 * 9 * 28 * 28));
    cr_assert(eq(int, (int)l.ops->flags, 0));
    cr_assert(eq(str, (char *)l.ops->name, "conv2d"));
    cr_assert(eq(u32, l.ops->size, (uint32_t)sizeof(plast_layer_ops)));
    l.ops->destroy(&l);

    cr_assert(eq(int, lt_try(&l, &plast_layer_conv2d,
                             "channels = 8\nkernel = 5\nstride = 2\nbias = off\n",
                             lt_shape3(3, 32, 31), &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.out.dim[0], 8));
    cr_assert(eq(int, l.out.dim[1], 14)); /* (32 - 5) / 2 + 1 */
    cr_assert(eq(int, l.out.dim[2], 14)); /* (31 - 5) / 2 + 1 */
    cr_assert(eq(int, l.nparams, 1));
    cr_assert(eq(sz, l.param[0].count, 8 * 3 * 25));
    cr_assert(eq(int, l.param[0].fan_in, 75));
    l.ops->destroy(&l);
}

Test(conv, schema_is_valid)
{
    plast_err e = {0};
    cr_assert(eq(int, plast_schema_check(plast_layer_conv2d.settings, "conv2d", &e), 0), "%s",
              e.msg);
}

/* Create must fail with `code` and a message containing `part`. */
static void expect_refused(const char *ini, plast_shape in, int code, const char *part)
{
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_conv2d, ini, in, &e), code), "accepted \"%s\"",
              ini);
    cr_assert(strstr(e.msg, part) != NULL, "\"%s\": message: %s", ini, e.msg);
}

Test(conv, settings_are_checked)
{
    plast_shape img = lt_shape3(1, 8, 8);
    expect_refused("", img, PLAST_E_PARSE, "channels");
    expect_refused("channels = 0\n", img, PLAST_E_PARSE, "channels");
    expect_refused("channels = 65537\n", img, PLAST_E_PARSE, "channels");
    expect_refused("channels = 2\nkernel = 0\n", img, PLAST_E_PARSE, "kernel");
    expect_refused("channels = 2\nkernel = 65\n", img, PLAST_E_PARSE, "kernel");
    expect_refused("channels = 2\nstride = 0\n", img, PLAST_E_PARSE, "stride");
    expect_refused("channels = 2\nstride = 65\n", img, PLAST_E_PARSE, "stride");
    expect_refused("channels = 2\npadding = -1\n", img, PLAST_E_PARSE, "padding");
    expect_refused("channels = 2\npadding = 65\n", img, PLAST_E_PARSE, "padding");
    expect_refused("channels = 2\nbias = maybe\n", img, PLAST_E_PARSE, "bias");
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_conv2d,
                             "channels = 65536\nkernel = 64\nstride = 64\npadding = 64\n",
                             lt_shape3(1, 1, 1), &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.out.dim[1], 2)); /* (1 + 128 - 64) / 64 + 1 */
    l.ops->destroy(&l);
}

Test(conv, needs_an_image_input)
{
    expect_refused("channels = 2\n", lt_shape1(784), PLAST_E_INVAL,
                   "conv2d needs an image input [C, H, W], found 784");
    expect_refused("channels = 2\n", (plast_shape){2, {28, 28, 0}}, PLAST_E_INVAL,
                   "conv2d needs an image input [C, H, W], found 28x28");
}

Test(conv, empty_output_is_refused)
{
    expect_refused("channels = 2\nkernel = 5\n", lt_shape3(3, 4, 9), PLAST_E_INVAL,
                   "conv2d output 0x5 is empty: input 3x4x9, kernel 5, stride 1, padding 0");
    expect_refused("channels = 2\nkernel = 7\npadding = 1\n", lt_shape3(1, 4, 4), PLAST_E_INVAL,
                   "conv2d output 0x0 is empty: input 1x4x4, kernel 7, stride 1, padding 1");
    plast_layer l; /* the smallest fit: one output */
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_conv2d, "channels = 2\nkernel = 6\npadding = 1\n",
                             lt_shape3(1, 4, 4), &e), 0), "%s", e.msg);
    cr_assert(eq(int, l.out.dim[1], 1));
    cr_assert(eq(int, l.out.dim[2], 1));
    l.ops->destroy(&l);
}

Test(conv, default_init_uses_fan_in)
{
    plast_layer l;
    lt_make(&l, &plast_layer_conv2d, "channels = 4\n", lt_shape3(2, 5, 5), 77);
    plast_rng r;
    plast_rng_stream(&r, 77, PLAST_STREAM_INIT, 0);
    float bound = (float)(1.0 / sqrt(18.0));
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < l.param[p].count; i++) {
            float want = plast_rng_uniform(&r, -bound, bound);
            cr_assert(eq(flt, l.param[p].w[i], want), "%s[%zu]", l.param[p].name, i);
        }
    lt_free(&l);
}

Test(conv, oversized_output_is_refused)
{
    expect_refused("channels = 1\nkernel = 1\npadding = 1\n", lt_shape3(1, INT_MAX, 1),
                   PLAST_E_INVAL, "conv2d sizes overflow");
    expect_refused("channels = 65536\nkernel = 64\npadding = 32\n", lt_shape3(600000, 64, 64),
                   PLAST_E_INVAL, "conv2d sizes overflow"); /* Cin k k > INT_MAX */
}

/* ---- the AVX-512 col2im against a scalar reference ---- */

/* dX of one plane from its column gradient, as col2im_row does it: every
 * pixel sums its taps in (ky, kx) order from +0. */
static void col2im_reference(const float *col, size_t ld, int ci, int k, int p, int hout,
                             int wout, int h, int w, float *dxc)
{
    for (int iy = 0; iy < h; iy++)
        for (int ix = 0; ix < w; ix++) {
            float acc = 0.0f;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    int oy = iy + p - ky, ox = ix + p - kx;
                    if (oy >= 0 && oy < hout && ox >= 0 && ox < wout)
                        acc += col[(size_t)((ci * k + ky) * k + kx) * ld +
                                   (size_t)(oy * wout + ox)];
                }
            dxc[iy * w + ix] = acc;
        }
}

/* Bit for bit, on planes narrower and wider than a vector (7, 14, 33
 * pixels), padding 0 to k-1, two channels, columns with -0 and with
 * cancelling pairs (sums that pass through +0). */
Test(conv, avx512_col2im_equals_the_reference)
{
    if (!plast_conv2d_avx512())
        cr_skip_test("no AVX-512F on this CPU (or build)");
    static const struct {
        int k, p, h, w;
    } cases[] = {{3, 1, 7, 5}, {5, 2, 14, 14}, {5, 0, 20, 21}, {3, 2, 9, 33}, {1, 0, 3, 17}};
    uint32_t seed = 9;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int k = cases[c].k, p = cases[c].p, h = cases[c].h, w = cases[c].w;
        int hout = h + 2 * p - k + 1, wout = w + 2 * p - k + 1, cin = 2;
        size_t ld = (size_t)hout * wout + 3, n = (size_t)cin * k * k * ld;
        float *col = malloc(n * sizeof *col), *got = malloc((size_t)h * w * sizeof *got);
        float *want = malloc((size_t)h * w * sizeof *want);
        cr_assert(col && got && want);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1664525u + 1013904223u;
            uint32_t r = seed >> 8;
            col[i] = r % 7 == 0 ? -0.0f : r % 7 == 1 ? 0.5f : r % 7 == 2 ? -0.5f
                                                             : (float)r * 0x1p-23f - 1.0f;
        }
        for (int ci = 0; ci < cin; ci++) {
            col2im_reference(col, ld, ci, k, p, hout, wout, h, w, want);
            plast_col2im_plane_s1_avx512(col, ld, ci, k, p, hout, wout, h, w, got);
            cr_expect(memcmp(got, want, (size_t)h * w * sizeof *got) == 0,
                      "k %d p %d %dx%d channel %d differs", k, p, h, w, ci);
        }
        free(col);
        free(got);
        free(want);
    }
}
