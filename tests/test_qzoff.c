/* test_qzoff.c - QZO-FF (ALGORITHMS.md §5.5): the estimator by hand
 * through plast/zo.h (tests 1, 2, 3, 7, 8), the directional derivative
 * and its unbiasedness against backpropagation (4, 5), exact restore with
 * eta = 0 in every precision (6), and the qzoff plug-in: convergence under
 * 16w8a, determinism, refusals, and resume. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <plast/qmodel.h>
#include <plast/zo.h>

#include "testutil.h"

/* ---- helpers ---- */

static plast_qtensor qtensor(void *codes, plast_qtype type, size_t n, const double *scale,
                             int32_t qmax)
{
    plast_qtensor t = {0, 0, type, n, codes, scale, n, qmax};
    return t;
}

static void fill_random(float *x, size_t n, uint64_t seed)
{
    plast_rng r;
    plast_rng_stream(&r, seed, PLAST_STREAM_DATA, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = plast_rng_uniform(&r, -1, 1);
}

/* One step of the rule at training step `step` with learning rate lr
 * (lr = 0 is allowed here, unlike in [optimizer]). */
static plast_stats qz_step(tu_net *n, const float *x, const int32_t *labels, int batch,
                           uint64_t step, double lr)
{
    plast_err e;
    plast_batch b;
    memset(&b, 0, sizeof b);
    size_t f = plast_shape_size(&n->in);
    CHECK_OK(plast_tensor_alloc(&b.x, n->mem, PLAST_MEM_INPUT, batch, &n->in, &e), e);
    memcpy(b.x.data, x, (size_t)batch * f * sizeof *x);
    b.labels = labels;
    b.n = batch;
    b.step = step;
    plast_optim_begin(n->optim, lr);
    plast_stats st = {0, 0, 0};
    CHECK_OK(n->ops->train_batch(n->rule, &b, &st, &e), e);
    plast_tensor_free(&b.x);
    return st;
}

static int create_rule(tu_net *n, plast_err *e)
{
    return n->ops->create(&n->rule, n->model, n->rule_args, e);
}

/* ---- 1. float, quadratic ---- */

static double quad_loss(const float *w)
{
    double s = (double)w[0] + (double)w[1]; /* x = [1, 1] */
    return 0.5 * s * s;
}

Test(zo_hand, float_quadratic)
{
    const double z[2] = {1, -0.5};
    plast_zo zo = tu_zo(0, 1, 0.01);
    zo.given_z = z;
    zo.given_n = 2;
    const float w0[2] = {1, 2};
    float w[2];
    plast_zo_perturb_float(&zo, 0, 0, w0, w, 2, +zo.eps);
    double lp = quad_loss(w);
    plast_zo_perturb_float(&zo, 0, 0, w0, w, 2, -zo.eps);
    double lm = quad_loss(w);
    cr_expect(fabs(lp - 4.5150125) < 1e-6, "Lp = %.9f", lp);
    cr_expect(fabs(lm - 4.4850125) < 1e-6, "Lm = %.9f", lm);
    double d = plast_zo_coef(PLAST_ZO_VALUE, (lp - lm) / 2, zo.eps);
    cr_expect(fabs(d - 1.5) < 1e-4, "d = %.9f, expected grad L . z = 1.5", d);

    zo.eta = 0.1;
    zo.half_diff[0] = 1.5 * zo.eps; /* the exact difference, d = 1.5 */
    memcpy(w, w0, sizeof w);
    plast_zo_update_float(&zo, 0, w, 2);
    cr_expect(fabs(w[0] - 0.85) < 1e-7 && fabs(w[1] - 2.075) < 1e-7, "value: w' = [%.8f, %.8f]",
              w[0], w[1]);
    zo.estimator = PLAST_ZO_SIGN;
    memcpy(w, w0, sizeof w);
    plast_zo_update_float(&zo, 0, w, 2);
    cr_expect(fabs(w[0] - 0.9) < 1e-7 && fabs(w[1] - 2.05) < 1e-7, "sign: w' = [%.8f, %.8f]",
              w[0], w[1]);
}

/* ---- 2. the same in fixed point ---- */

static double quad_loss_codes(const int16_t *q, double s)
{
    double v = ((double)q[0] + (double)q[1]) * s;
    return 0.5 * v * v;
}

static void fixed_quadratic(plast_zo_estimator est, double eta, double kappa, const int16_t *want)
{
    const double z[2] = {1, -0.5}, s = 0x1p-10;
    int16_t q[2] = {1024, 2048};
    plast_qtensor t = qtensor(q, PLAST_Q_INT16, 2, &s, 32767);
    plast_zo zo = tu_zo(0, 1, 0x1p-8); /* 4 LSB */
    zo.given_z = z;
    zo.given_n = 2;
    zo.estimator = est;
    zo.eta = eta;
    cr_assert(eq(i64, plast_zo_delta(zo.eps, z[0], s), 4));
    cr_assert(eq(i64, plast_zo_delta(zo.eps, z[1], s), -2));
    cr_assert(eq(sz, plast_zo_perturb_codes(&zo, 0, 0, &t, +1), 2));
    cr_assert(eq(i16, q[0], 1028));
    cr_assert(eq(i16, q[1], 2046));
    double lp = quad_loss_codes(q, s);
    plast_zo_perturb_codes(&zo, 0, 0, &t, -2);
    double lm = quad_loss_codes(q, s);
    plast_zo_perturb_codes(&zo, 0, 0, &t, +1);
    cr_assert(eq(i16, q[0], 1024), "restore is exact");
    cr_assert(eq(i16, q[1], 2048));
    zo.half_diff[0] = (lp - lm) / 2;
    cr_expect(eq(dbl, plast_zo_coef(PLAST_ZO_VALUE, zo.half_diff[0], zo.eps), 1.5));
    cr_expect(eq(dbl, plast_zo_kappa(est, eta, 1, zo.half_diff[0], zo.eps), kappa));
    plast_zo_update_codes(&zo, 0, &t);
    cr_expect(eq(i16, q[0], want[0]));
    cr_expect(eq(i16, q[1], want[1]));
}

Test(zo_hand, fixed_quadratic_value)
{
    fixed_quadratic(PLAST_ZO_VALUE, 0x1p-4, 24, (const int16_t[]){928, 2096});
}

Test(zo_hand, fixed_quadratic_sign)
{
    fixed_quadratic(PLAST_ZO_SIGN, 0x1p-6, 4, (const int16_t[]){1008, 2056});
}

/* ---- 3. 8-bit perturbation underflow ---- */

Test(zo_hand, eight_bit_underflow)
{
    enum { N = 2000 };
    int8_t q[N], before[N];
    const double s = 0x1p-4;
    for (int i = 0; i < N; i++)
        q[i] = before[i] = (int8_t)(i % 101 - 50);
    plast_qtensor t = qtensor(q, PLAST_Q_INT8, N, &s, 127);
    plast_zo zo = tu_zo(3, 1, 0x1p-8);
    zo.eta = 0.1;
    /* |delta| = rint(|z| / 16) = 0 for |z| < 8, and z is clipped to 4 */
    cr_assert(eq(i64, plast_zo_delta(zo.eps, 7.9, s), 0));
    cr_assert(eq(sz, plast_zo_count_nonzero(&zo, 0, 0, &t), 0));
    cr_assert(plast_zo_eps_ratio(&zo, &t) < 0.5, "the underflow warning condition holds");
    plast_zo_perturb_codes(&zo, 0, 0, &t, +1);
    cr_assert(memcmp(q, before, sizeof q) == 0, "Lp is computed at unchanged codes");
    plast_zo_perturb_codes(&zo, 0, 0, &t, -2);
    cr_assert(memcmp(q, before, sizeof q) == 0, "so is Lm: Lp = Lm");
    zo.half_diff[0] = 0;
    plast_zo_update_codes(&zo, 0, &t);
    cr_assert(memcmp(q, before, sizeof q) == 0, "no update");
    /* even a non-zero difference moves nothing: every delta is 0 */
    zo.half_diff[0] = 0.25;
    plast_zo_update_codes(&zo, 0, &t);
    cr_assert(memcmp(q, before, sizeof q) == 0);
}

/* ---- 7. regeneration: the update's z is the probes' z ---- */

Test(zo_regen, float_update_uses_probe_directions)
{
    enum { N = 37, M = 3 };
    const uint64_t offset = 5; /* odd: starts inside a Box-Muller pair */
    plast_zo zo = tu_zo(7, M, 1.0);
    zo.sparsity = 0.3;
    float zero[N] = {0}, probe[M][N], w[N] = {0};
    for (int i = 0; i < M; i++) {
        double z[N];
        plast_zo_perturb_float(&zo, i, offset, zero, probe[i], N, 1.0);
        plast_zo_directions(&zo, i, offset, N, z);
        for (int k = 0; k < N; k++)
            cr_assert(eq(flt, probe[i][k], (float)z[k]));
    }
    /* eta = 1, eps = 1, m = 3: coefficient of probe i is half_diff[i] / 3 */
    zo.eta = 1;
    zo.half_diff[0] = 3;
    zo.half_diff[1] = 6;
    zo.half_diff[2] = -9;
    plast_zo_update_float(&zo, offset, w, N);
    int masked = 0;
    for (int k = 0; k < N; k++) {
        double want = -(1.0 * probe[0][k] + 2.0 * probe[1][k] - 3.0 * probe[2][k]);
        cr_expect(fabs(w[k] - want) < 1e-5, "element %d: %g, expected %g", k, w[k], want);
        masked += probe[0][k] == 0 && probe[1][k] == 0 && probe[2][k] == 0;
    }
    cr_expect(masked > 3 && masked < 25, "the mask (p = 0.3) left out %d of %d", masked, N);
}

Test(zo_regen, tensors_are_slices_of_one_vector)
{
    plast_zo zo = tu_zo(11, 2, 1.0);
    double all[40], part[40];
    plast_zo_directions(&zo, 1, 0, 40, all);
    for (uint64_t off = 0; off < 9; off++) {
        plast_zo_directions(&zo, 1, off, 40 - off, part);
        cr_assert(memcmp(part, all + off, (40 - off) * sizeof *part) == 0, "offset %d",
                  (int)off);
    }
    plast_zo_directions(&zo, 0, 0, 40, part);
    cr_assert(memcmp(part, all, sizeof all) != 0, "probes draw different directions");
    /* probe i of step t is stream PERTURB, t*m + i of §1.4 */
    plast_rng r;
    double pair[2];
    plast_rng_stream(&r, 42, PLAST_STREAM_PERTURB, 11 * 2 + 1);
    plast_rng_normal2(&r, pair);
    cr_assert(eq(dbl, all[0], pair[0]));
    cr_assert(eq(dbl, all[1], pair[1]));
}

Test(zo_regen, code_update_uses_probe_deltas)
{
    enum { N = 301, M = 3 };
    const double s = 0x1p-12;
    int16_t q[N], start[N];
    for (int k = 0; k < N; k++)
        q[k] = start[k] = (int16_t)(k * 37 % 2001 - 1000);
    plast_qtensor t = qtensor(q, PLAST_Q_INT16, N, &s, 32767);
    plast_zo zo = tu_zo(5, M, 3 * s);
    zo.rounding = PLAST_ZO_NEAREST;
    int64_t delta[M][N];
    for (int i = 0; i < M; i++) {
        plast_zo_perturb_codes(&zo, i, 9, &t, +1);
        for (int k = 0; k < N; k++)
            delta[i][k] = q[k] - start[k];
        plast_zo_perturb_codes(&zo, i, 9, &t, -1);
        cr_assert(memcmp(q, start, sizeof q) == 0);
    }
    zo.eta = 1e-3;
    zo.half_diff[0] = 0.02;
    zo.half_diff[1] = -0.05;
    zo.half_diff[2] = 0.01;
    plast_zo_update_codes(&zo, 9, &t);
    int moved = 0;
    for (int k = 0; k < N; k++) {
        double acc = 0;
        for (int i = 0; i < M; i++)
            acc += plast_zo_kappa(PLAST_ZO_VALUE, zo.eta, M, zo.half_diff[i], zo.eps) *
                   (double)delta[i][k];
        cr_assert(eq(i64, q[k], start[k] - (int64_t)rint(acc)), "element %d", k);
        moved += q[k] != start[k];
    }
    cr_expect(moved > N / 2, "%d of %d codes moved", moved, N);
}

/* ---- 8. sign mode ignores the scale of the loss ---- */

Test(zo_hand, sign_update_invariant_to_loss_scale)
{
    enum { N = 64 };
    plast_zo zo = tu_zo(2, 2, 1e-3);
    zo.estimator = PLAST_ZO_SIGN;
    zo.eta = 0.01;
    float a[N], b[N];
    fill_random(a, N, 1);
    memcpy(b, a, sizeof a);
    zo.half_diff[0] = 0.0123;
    zo.half_diff[1] = -0.0007;
    plast_zo_update_float(&zo, 0, a, N);
    zo.half_diff[0] *= 10;
    zo.half_diff[1] *= 10;
    plast_zo_update_float(&zo, 0, b, N);
    cr_assert(memcmp(a, b, sizeof a) == 0);
}

/* ---- headroom ---- */

Test(zo_hand, headroom_refusal_names_eps_scale_and_bits)
{
    const double s = 1e-3;
    int8_t q[4] = {100, -100, 3, 0};
    plast_qtensor t = qtensor(q, PLAST_Q_INT8, 4, &s, 127);
    plast_zo zo = tu_zo(0, 1, 0.03); /* Dmax = 120 > 31 */
    plast_err e;
    cr_assert(eq(int, plast_zo_check_headroom(&zo, &t, "out.weight", &e), PLAST_E_INVAL));
    cr_expect(strstr(e.msg, "'out.weight'") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "eps = 0.03") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "s = 0.001") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "8 bits") != NULL, "%s", e.msg);
    zo.eps = 0.007; /* Dmax = 28 <= 31: accepted, codes clamped to 127 - 28 */
    cr_assert(eq(int, plast_zo_check_headroom(&zo, &t, "out.weight", &e), PLAST_OK));
    cr_assert(eq(sz, plast_zo_clamp_codes(&zo, &t), 2));
    cr_assert(eq(i8, q[0], 99));
    cr_assert(eq(i8, q[1], -99));
    /* at the clamp, +-Dmax never saturates: restore is exact */
    q[2] = 99;
    int8_t before[4];
    memcpy(before, q, sizeof q);
    for (uint64_t step = 0; step < 50; step++) {
        zo.step = step;
        plast_zo_perturb_codes(&zo, 0, 0, &t, +1);
        plast_zo_perturb_codes(&zo, 0, 0, &t, -2);
        plast_zo_perturb_codes(&zo, 0, 0, &t, +1);
    }
    cr_assert(memcmp(q, before, sizeof q) == 0);
}

/* ---- the plug-in: an fp32 tanh MLP ---- */

#define F 12
#define C 3
#define B 16

static const char *mlp_ini(const char *rule)
{
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "[layer.h1]\ntype = dense\nunits = 9\n[layer.a1]\ntype = tanh\n"
             "[layer.h2]\ntype = dense\nunits = 7\n[layer.a2]\ntype = tanh\n"
             "[layer.out]\ntype = dense\nunits = %d\n"
             "[optimizer]\ntype = sgd\nlr = 0.05\n[rule.qzoff]\n%s",
             C, rule);
    return buf;
}

static void mlp_data(float *x, int32_t *y, int n, uint64_t seed)
{
    fill_random(x, (size_t)n * F, seed);
    for (int i = 0; i < n; i++)
        y[i] = (x[i * F] > 0) + (x[i * F + 1] > 0.5f);
}

/* BP gradient of the batch loss into the model's gradient array. */
static double bp_gradient(tu_net *n, const float *x, const int32_t *y, int batch)
{
    plast_model *m = n->model;
    plast_err e;
    plast_ctx ctx = plast_model_ctx(m, 1);
    int K = plast_model_nblocks(m);
    plast_block_run runs[8];
    memset(plast_model_grads(m), 0, plast_model_nparams(m) * sizeof(float));
    plast_tensor xin = plast_tensor_view((float *)x, batch, &n->in);
    const plast_tensor *cur = &xin;
    for (int k = 0; k < K; k++) {
        CHECK_OK(plast_block_forward(m, k, cur, &runs[k], &ctx, &e), e);
        cur = plast_block_output(&runs[k]);
    }
    plast_batch b = {xin, y, batch, 0};
    plast_stats st;
    plast_tensor dy, dx;
    CHECK_OK(plast_rule_loss(m, cur, &b, &st, &dy, &e), e);
    for (int k = K - 1; k >= 0; k--) {
        plast_block_run *run = &runs[k];
        CHECK_OK(plast_block_backward(m, run, run->first + run->n - 1, &dy, k ? &dx : NULL,
                                      &ctx, &e),
                 e);
        plast_block_release(m, run, NULL);
        dy = dx;
    }
    return st.loss;
}

static double model_loss(tu_net *n, const float *x, const int32_t *y, int batch)
{
    plast_err e;
    plast_tensor xin = plast_tensor_view((float *)x, batch, &n->in), out;
    plast_batch b = {xin, y, batch, 0};
    plast_stats st;
    CHECK_OK(plast_model_predict(n->model, &xin, &out, &e), e);
    CHECK_OK(plast_rule_loss(n->model, &out, &b, &st, NULL, &e), e);
    plast_tensor_free(&out);
    return st.loss;
}

/* Central difference along direction `dir` (step dir of the streams) over
 * every parameter, and grad . z from the BP gradient. */
static void directional(tu_net *n, const float *x, const int32_t *y, plast_zo *zo, float *w0,
                        double *fd, double *bp)
{
    plast_model *m = n->model;
    double dot = 0, loss[2];
    for (int sgn = 0; sgn < 2; sgn++) {
        uint64_t off = 0;
        for (int i = 0; i < plast_model_nlayers(m); i++) {
            plast_layer *l = plast_model_layer(m, i);
            for (int p = 0; p < l->nparams; p++) {
                plast_param *pa = &l->param[p];
                plast_zo_perturb_float(zo, 0, off, w0 + off, pa->w, pa->count,
                                       sgn ? -zo->eps : zo->eps);
                if (!sgn) {
                    double z[128];
                    cr_assert(pa->count <= 128);
                    plast_zo_directions(zo, 0, off, pa->count, z);
                    for (size_t k = 0; k < pa->count; k++)
                        dot += (double)pa->g[k] * z[k];
                }
                off += pa->count;
            }
        }
        loss[sgn] = model_loss(n, x, y, B);
    }
    *fd = (loss[0] - loss[1]) / (2 * zo->eps);
    *bp = dot;
}

static size_t copy_params(plast_model *m, float *dst, int to_model)
{
    size_t off = 0;
    for (int i = 0; i < plast_model_nlayers(m); i++) {
        plast_layer *l = plast_model_layer(m, i);
        for (int p = 0; p < l->nparams; p++) {
            size_t bytes = l->param[p].count * sizeof(float);
            if (to_model)
                memcpy(l->param[p].w, dst + off, bytes);
            else
                memcpy(dst + off, l->param[p].w, bytes);
            off += l->param[p].count;
        }
    }
    return off;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* 4. The central difference matches BP's grad L . z (median relative
 * error over 100 directions below 1e-2). */
Test(qzoff_fp32, directional_derivative_matches_bp)
{
    tu_net n;
    tu_net_init(&n, mlp_ini(""), F, C, "bp", 3);
    float x[B * F], w0[512];
    int32_t y[B];
    mlp_data(x, y, B, 5);
    bp_gradient(&n, x, y, B);
    size_t np = copy_params(n.model, w0, 0);
    cr_assert(np < 512);
    double rel[100];
    for (int j = 0; j < 100; j++) {
        plast_zo zo = tu_zo((uint64_t)j, 1, 1e-3);
        double fd, bp;
        directional(&n, x, y, &zo, w0, &fd, &bp);
        rel[j] = fabs(fd - bp) / fmax(fabs(bp), 1e-12);
    }
    copy_params(n.model, w0, 1);
    qsort(rel, 100, sizeof *rel, cmp_double);
    cr_expect(rel[50] < 1e-2, "median relative error %g", rel[50]);
    tu_net_fini(&n);
}

/* 5. On a 10x10 linear softmax model the mean of d z over 20,000
 * directions points along the BP gradient (cosine > 0.98). */
Test(qzoff_fp32, estimator_is_unbiased)
{
    enum { D = 110, N = 20000 };
    const char *ini = "[layer.out]\ntype = dense\nunits = 10\n[optimizer]\ntype = sgd\n";
    tu_net n;
    tu_net_init(&n, ini, 10, 10, "bp", 9);
    float x[8 * 10], w0[D];
    int32_t y[8];
    fill_random(x, 80, 3);
    for (int i = 0; i < 8; i++)
        y[i] = i;
    plast_layer *l = plast_model_layer(n.model, 0);
    bp_gradient(&n, x, y, 8);
    cr_assert(eq(sz, copy_params(n.model, w0, 0), D));
    double g[D], mean[D] = {0}, z[D];
    memcpy(g, (double[D]){0}, sizeof g);
    for (int k = 0; k < 100; k++)
        g[k] = l->param[0].g[k];
    for (int k = 0; k < 10; k++)
        g[100 + k] = l->param[1].g[k];
    for (int j = 0; j < N; j++) {
        plast_zo zo = tu_zo((uint64_t)j, 1, 1e-3);
        double lpm[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            plast_zo_perturb_float(&zo, 0, 0, w0, l->param[0].w, 100, sgn ? -1e-3 : 1e-3);
            plast_zo_perturb_float(&zo, 0, 100, w0 + 100, l->param[1].w, 10,
                                   sgn ? -1e-3 : 1e-3);
            lpm[sgn] = model_loss(&n, x, y, 8);
        }
        double d = (lpm[0] - lpm[1]) / 2e-3;
        plast_zo_directions(&zo, 0, 0, D, z);
        for (int k = 0; k < D; k++)
            mean[k] += d * z[k] / N;
    }
    double gg = 0, mm = 0, gm = 0;
    for (int k = 0; k < D; k++) {
        gg += g[k] * g[k];
        mm += mean[k] * mean[k];
        gm += g[k] * mean[k];
    }
    double cosine = gm / sqrt(gg * mm);
    cr_expect(cosine > 0.98, "cosine %.4f", cosine);
    tu_net_fini(&n);
}

/* A loss ten times softmax_ce (test 8 through the plug-in). */
static int ce10_eval(const plast_tensor *pred, const int32_t *labels, double *loss,
                     plast_tensor *grad, plast_err *e)
{
    int rc = plast_loss_softmax_ce.eval(pred, labels, loss, grad, e);
    *loss *= 10;
    return rc;
}

static const plast_loss_ops ce10 = {sizeof(plast_loss_ops), "ce10", NULL, ce10_eval};

static void train_mlp(tu_net *n, const char *rule, uint64_t seed, const plast_loss_ops *loss,
                      int steps, double lr)
{
    tu_net_init(n, mlp_ini(rule), F, C, "qzoff", seed);
    if (loss)
        plast_model_attach(n->model, loss, n->optim, 1);
    tu_net_create_rule(n);
    float x[B * F];
    int32_t y[B];
    for (int s = 0; s < steps; s++) {
        mlp_data(x, y, B, 100 + (uint64_t)s);
        qz_step(n, x, y, B, (uint64_t)s, lr);
    }
}

Test(qzoff_fp32, sign_mode_invariant_to_loss_scale)
{
    tu_net a, b;
    const char *rule = "precision = fp32\nestimator = sign\nm = 2\ntrain = all\n";
    train_mlp(&a, rule, 4, NULL, 20, 0.01);
    train_mlp(&b, rule, 4, &ce10, 20, 0.01);
    size_t np = plast_model_nparams(a.model);
    cr_assert(memcmp(plast_model_weights(a.model), plast_model_weights(b.model),
                     np * sizeof(float)) == 0);
    tu_net_fini(&a);
    tu_net_fini(&b);
    /* value mode is not invariant: the check above can fail */
    rule = "precision = fp32\nestimator = value\ntrain = all\n";
    train_mlp(&a, rule, 4, NULL, 5, 0.01);
    train_mlp(&b, rule, 4, &ce10, 5, 0.01);
    cr_assert(memcmp(plast_model_weights(a.model), plast_model_weights(b.model),
                     np * sizeof(float)) != 0);
    tu_net_fini(&a);
    tu_net_fini(&b);
}

Test(qzoff_fp32, eta_zero_restores_exactly)
{
    tu_net n;
    tu_net_init(&n, mlp_ini("precision = fp32\ntrain = all\nm = 3\nestimator = value\n"), F, C,
                "qzoff", 8);
    size_t np = plast_model_nparams(n.model);
    float *before = malloc(np * sizeof *before);
    memcpy(before, plast_model_weights(n.model), np * sizeof *before);
    tu_net_create_rule(&n);
    float x[B * F];
    int32_t y[B];
    for (int s = 0; s < 100; s++) {
        mlp_data(x, y, B, (uint64_t)s);
        plast_stats st = qz_step(&n, x, y, B, (uint64_t)s, 0.0);
        cr_assert(isfinite(st.loss) && st.count == B);
    }
    cr_assert(memcmp(before, plast_model_weights(n.model), np * sizeof *before) == 0);
    free(before);
    tu_net_fini(&n);
}

Test(qzoff_fp32, trains_only_the_selected_tensors)
{
    tu_net n;
    tu_net_init(&n, mlp_ini("precision = fp32\ntrain = h2, out\n"), F, C, "qzoff", 8);
    plast_layer *h1 = plast_model_layer(n.model, 0), *h2 = plast_model_layer(n.model, 2);
    float w1[F * 9], w2[9 * 7];
    memcpy(w1, h1->param[0].w, sizeof w1);
    memcpy(w2, h2->param[0].w, sizeof w2);
    tu_net_create_rule(&n);
    cr_expect(eq(int, n.ops->forwards_per_update(n.rule), 2));
    float x[B * F];
    int32_t y[B];
    mlp_data(x, y, B, 1);
    qz_step(&n, x, y, B, 0, 0.05);
    cr_expect(memcmp(w1, h1->param[0].w, sizeof w1) == 0, "h1 is not trained");
    cr_expect(memcmp(w2, h2->param[0].w, sizeof w2) != 0, "h2 is trained");
    cr_expect(plast_model_grads(n.model) == NULL, "no gradient array");
    tu_net_fini(&n);
}

Test(qzoff_fp32, deterministic)
{
    tu_net a, b;
    const char *rule = "precision = fp32\ntrain = all\nm = 2\nsparsity = 0.5\n";
    train_mlp(&a, rule, 6, NULL, 30, 0.02);
    train_mlp(&b, rule, 6, NULL, 30, 0.02);
    size_t np = plast_model_nparams(a.model);
    cr_assert(memcmp(plast_model_weights(a.model), plast_model_weights(b.model),
                     np * sizeof(float)) == 0);
    tu_net_fini(&a);
    tu_net_fini(&b);
}

/* ---- refusals ---- */

static void expect_refusal(const char *ini, const char *want)
{
    tu_net n;
    plast_err e;
    tu_net_init(&n, ini, F, C, "qzoff", 1);
    int rc = create_rule(&n, &e);
    cr_assert(rc != PLAST_OK);
    cr_expect(strstr(e.msg, want) != NULL, "message \"%s\" lacks \"%s\"", e.msg, want);
    n.rule = NULL;
    tu_net_fini(&n);
}

Test(qzoff_refuse, unknown_layer_in_train_list)
{
    expect_refusal(mlp_ini("precision = fp32\ntrain = h1, nope\n"),
                   "train: the model has no layer named 'nope'");
}

Test(qzoff_refuse, layer_without_parameters)
{
    expect_refusal(mlp_ini("precision = fp32\ntrain = a1\n"), "layer 'a1' has no parameters");
}

Test(qzoff_refuse, layer_named_twice)
{
    expect_refusal(mlp_ini("precision = fp32\ntrain = out,h1,out\n"), "'out' is named twice");
}

Test(qzoff_refuse, eps_lsb_in_fp32)
{
    expect_refusal(mlp_ini("precision = fp32\neps_lsb = 2\n"), "eps_lsb = 2 needs a fixed-point");
}

/* ---- describe ---- */

typedef struct lines {
    char text[4096];
} lines;

static void collect(void *user, const char *text)
{
    lines *l = user;
    strncat(l->text, text, sizeof l->text - strlen(l->text) - 2);
    strcat(l->text, "\n");
}

Test(qzoff_fp32, describe_names_the_trained_tensors)
{
    tu_net n;
    tu_net_init(&n, mlp_ini("precision = fp32\nm = 3\n"), F, C, "qzoff", 1);
    tu_net_create_rule(&n);
    lines l = {{0}};
    n.ops->describe(n.rule, collect, &l);
    cr_expect(strstr(l.text, "precision fp32") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "m = 3 (6 forwards per update)") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "out.weight: 21 elements") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "out.bias: 3 elements") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "h2.weight") == NULL, "train = last: %s", l.text);
    cr_expect(eq(int, n.ops->forwards_per_update(n.rule), 6));
    tu_net_fini(&n);
}

/* ---- resume: save_state, load_state ---- */

/* Run `steps` steps from step `from`. */
static void run_steps(tu_net *n, int from, int steps, double lr)
{
    float x[B * F];
    int32_t y[B];
    for (int s = from; s < from + steps; s++) {
        mlp_data(x, y, B, 100 + (uint64_t)s);
        qz_step(n, x, y, B, (uint64_t)s, lr);
    }
}

/* Checkpoint as the trainer does: the weights and the rule's state. */
static void save(tu_net *n, const char *path)
{
    plast_err e;
    plast_writer *w;
    CHECK_OK(plast_writer_create(&w, &e), e);
    CHECK_OK(plast_writer_chunk(w, "MODL", &e), e);
    CHECK_OK(plast_writer_floats(w, plast_model_weights(n->model), plast_model_nparams(n->model),
                                 &e),
             e);
    CHECK_OK(plast_writer_chunk(w, "RULE", &e), e);
    CHECK_OK(n->ops->save_state(n->rule, w, &e), e);
    CHECK_OK(plast_writer_commit(w, path, &e), e);
    plast_writer_destroy(w);
}

static void load(tu_net *n, const char *path)
{
    plast_err e;
    plast_reader *r;
    CHECK_OK(plast_reader_open(&r, path, &e), e);
    CHECK_OK(plast_reader_chunk(r, "MODL", &e), e);
    CHECK_OK(plast_reader_floats(r, plast_model_weights(n->model), plast_model_nparams(n->model),
                                 &e),
             e);
    CHECK_OK(plast_reader_chunk(r, "RULE", &e), e);
    CHECK_OK(n->ops->load_state(n->rule, r, &e), e);
    plast_reader_destroy(r);
}

static void resume_equals_uninterrupted(const char *ini, int total, int cut)
{
    char path[] = "/tmp/qzoff-ckpt-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    tu_net a, b, c;
    tu_net_init(&a, ini, F, C, "qzoff", 12);
    tu_net_create_rule(&a);
    run_steps(&a, 0, total, 0.05);
    tu_net_init(&b, ini, F, C, "qzoff", 12);
    tu_net_create_rule(&b);
    run_steps(&b, 0, cut, 0.05);
    save(&b, path);
    tu_net_fini(&b);
    tu_net_init(&c, ini, F, C, "qzoff", 12);
    tu_net_create_rule(&c);
    load(&c, path);
    run_steps(&c, cut, total - cut, 0.05);
    size_t np = plast_model_nparams(a.model);
    cr_assert(memcmp(plast_model_weights(a.model), plast_model_weights(c.model),
                     np * sizeof(float)) == 0, "cut at %d", cut);
    tu_net_fini(&a);
    tu_net_fini(&c);
    unlink(path);
}

Test(qzoff_fp32, resume_equals_uninterrupted)
{
    resume_equals_uninterrupted(mlp_ini("precision = fp32\ntrain = all\nm = 2\n"), 12, 5);
}

/* ---- the plug-in in fixed point: a ReLU MLP (the engine has no tanh) ---- */

static const char *relu_ini(const char *rule)
{
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "[layer.h1]\ntype = dense\nunits = 8\n[layer.a1]\ntype = relu\n"
             "[layer.out]\ntype = dense\nunits = %d\n"
             "[optimizer]\ntype = sgd\nlr = 0.05\n[rule.qzoff]\n%s",
             C, rule);
    return buf;
}

static float *weights_copy(tu_net *n)
{
    size_t np = plast_model_nparams(n->model);
    float *w = malloc(np * sizeof *w);
    cr_assert(w != NULL);
    memcpy(w, plast_model_weights(n->model), np * sizeof *w);
    return w;
}

static int same_weights(tu_net *n, const float *w)
{
    return memcmp(w, plast_model_weights(n->model),
                  plast_model_nparams(n->model) * sizeof *w) == 0;
}

/* The rule's predict() on a fixed batch, copied out (B x C floats). */
static void predict_fixed(tu_net *n, float *out)
{
    float x[B * F];
    int32_t y[B];
    mlp_data(x, y, B, 999);
    plast_err e;
    plast_tensor xin = plast_tensor_view(x, B, &n->in), logits;
    CHECK_OK(n->ops->predict(n->rule, &xin, &logits, &e), e);
    cr_assert(eq(sz, logits.size, (size_t)(B * C)));
    memcpy(out, logits.data, sizeof(float) * B * C);
    plast_tensor_free(&logits);
}

static void run_relu(tu_net *n, int from, int steps, double lr)
{
    float x[B * F];
    int32_t y[B];
    for (int s = from; s < from + steps; s++) {
        mlp_data(x, y, B, 100 + (uint64_t)s);
        plast_stats st = qz_step(n, x, y, B, (uint64_t)s, lr);
        cr_assert(isfinite(st.loss) && st.count == B, "step %d: loss %g", s, st.loss);
    }
}

/* 6. eta = 0: after the first step (calibration, codes written back) the
 * weights and the fixed-point predictions stay bit-identical for 100
 * steps, in both fixed-point precisions. */
static void eta_zero_fixed(const char *precision, const char *extra)
{
    char rule[160];
    snprintf(rule, sizeof rule,
             "precision = %s\ntrain = all\nm = 2\nestimator = value\ncalibrate = 16\n%s",
             precision, extra);
    tu_net n;
    tu_net_init(&n, relu_ini(rule), F, C, "qzoff", 8);
    tu_net_create_rule(&n);
    run_relu(&n, 0, 1, 0.0);
    float *w = weights_copy(&n), p0[B * C], p1[B * C];
    predict_fixed(&n, p0);
    run_relu(&n, 1, 100, 0.0);
    predict_fixed(&n, p1);
    cr_assert(same_weights(&n, w), "%s: weights moved", precision);
    cr_assert(memcmp(p0, p1, sizeof p0) == 0, "%s: codes moved", precision);
    free(w);
    tu_net_fini(&n);
}

Test(qzoff_fixed, eta_zero_restores_exactly_16w8a)
{
    eta_zero_fixed("16w8a", "");
}

Test(qzoff_fixed, eta_zero_restores_exactly_8w8a)
{
    eta_zero_fixed("8w8a", "");
}

/* A dense layer learning x -> one-hot(label) under mse, where x holds the
 * one-hot label and two noise features: W = [I | 0], b = 0 fits exactly. */
Test(qzoff_fixed, linear_regression_converges_16w8a)
{
    enum { K = 4, FX = 6, NB = 32 };
    const char *ini = "[layer.out]\ntype = dense\nunits = 4\n"
                      "[optimizer]\ntype = sgd\nlr = 0.2\n"
                      "[rule.qzoff]\nprecision = 16w8a\nestimator = value\nm = 2\n"
                      "eps = 1e-3\ntrain = all\ncalibrate = 32\n";
    tu_net n;
    tu_net_init(&n, ini, FX, K, "qzoff", 5);
    plast_model_attach(n.model, &plast_loss_mse, n.optim, 1);
    tu_net_create_rule(&n);
    plast_rng r;
    plast_rng_stream(&r, 77, PLAST_STREAM_DATA, 1);
    double first = 0, last = 0;
    for (int s = 0; s < 600; s++) {
        float x[NB * FX] = {0};
        int32_t y[NB];
        for (int i = 0; i < NB; i++) {
            y[i] = (int32_t)plast_rng_below(&r, K);
            x[i * FX + y[i]] = 1;
            x[i * FX + 4] = plast_rng_uniform(&r, -1, 1);
            x[i * FX + 5] = plast_rng_uniform(&r, -1, 1);
        }
        plast_err e;
        plast_batch b;
        memset(&b, 0, sizeof b);
        CHECK_OK(plast_tensor_alloc(&b.x, n.mem, PLAST_MEM_INPUT, NB, &n.in, &e), e);
        memcpy(b.x.data, x, sizeof x);
        b.labels = y;
        b.n = NB;
        b.step = (uint64_t)s;
        plast_optim_begin(n.optim, plast_optim_base_lr(n.optim));
        plast_stats st;
        CHECK_OK(n.ops->train_batch(n.rule, &b, &st, &e), e);
        plast_tensor_free(&b.x);
        if (s < 10)
            first += st.loss / 10;
        if (s >= 590)
            last += st.loss / 10;
    }
    cr_expect(last < first / 20, "mse from %g to %g", first, last);
    tu_net_fini(&n);
}

static void train_relu(tu_net *n, const char *rule, int steps)
{
    tu_net_init(n, relu_ini(rule), F, C, "qzoff", 21);
    tu_net_create_rule(n);
    run_relu(n, 0, steps, 0.05);
}

Test(qzoff_fixed, deterministic)
{
    const char *rule = "precision = 16w8a\ntrain = all\nm = 3\nsparsity = 0.2\n"
                       "round = stochastic\ncalibrate = 40\n";
    tu_net a, b;
    train_relu(&a, rule, 40);
    train_relu(&b, rule, 40);
    float pa[B * C], pb[B * C];
    predict_fixed(&a, pa);
    predict_fixed(&b, pb);
    cr_assert(memcmp(plast_model_weights(a.model), plast_model_weights(b.model),
                     plast_model_nparams(a.model) * sizeof(float)) == 0);
    cr_assert(memcmp(pa, pb, sizeof pa) == 0);
    tu_net_fini(&a);
    tu_net_fini(&b);
}

/* Calibration takes the batches up to the one reaching `calibrate`
 * images; the ones before it are not trained on, that one is. */
Test(qzoff_fixed, calibration_batches)
{
    tu_net n;
    tu_net_init(&n, relu_ini("precision = 16w8a\ncalibrate = 40\nestimator = value\n"), F, C,
                "qzoff", 3);
    tu_net_create_rule(&n);
    float *w = weights_copy(&n);
    run_relu(&n, 0, 2, 0.05); /* 32 images: still calibrating */
    cr_assert(same_weights(&n, w));
    lines l = {{0}};
    n.ops->describe(n.rule, collect, &l);
    cr_expect(strstr(l.text, "from the first 40 training images") != NULL, "%s", l.text);
    run_relu(&n, 2, 1, 0.05); /* 48: frozen, and trained on */
    cr_assert(same_weights(&n, w) == 0);
    memset(&l, 0, sizeof l);
    n.ops->describe(n.rule, collect, &l);
    cr_expect(strstr(l.text, "calibration: done on 48 training images") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "out.bias: 3 elements, int32 codes, scale") != NULL, "%s", l.text);
    free(w);
    tu_net_fini(&n);
}

/* predict() runs the integer model: close to the float model that holds
 * the dequantised codes, but not equal (activations are rounded). */
Test(qzoff_fixed, predict_uses_the_fixed_point_model)
{
    tu_net n;
    train_relu(&n, "precision = 8w8a\ncalibrate = 16\n", 3);
    float fixed[B * C], x[B * F];
    int32_t y[B];
    predict_fixed(&n, fixed);
    mlp_data(x, y, B, 999);
    plast_err e;
    plast_tensor xin = plast_tensor_view(x, B, &n.in), fl;
    CHECK_OK(plast_model_predict(n.model, &xin, &fl, &e), e);
    double maxdiff = 0;
    for (int i = 0; i < B * C; i++)
        maxdiff = fmax(maxdiff, fabs((double)fixed[i] - fl.data[i]));
    plast_tensor_free(&fl);
    cr_expect(maxdiff > 0 && maxdiff < 0.1, "max |fixed - float| = %g", maxdiff);
    tu_net_fini(&n);
}

/* A relu_ini net with `rule` created, and its describe() text in *l. */
static void described(tu_net *n, const char *rule, uint64_t seed, lines *l)
{
    tu_net_init(n, relu_ini(rule), F, C, "qzoff", seed);
    tu_net_create_rule(n);
    memset(l, 0, sizeof *l);
    n->ops->describe(n->rule, collect, l);
}

/* 3 through the plug-in: 8-bit weights of scale about 3.4e-3 with
 * eps = 2e-4 (0.06 LSB: |delta| = rint(0.06 |z|) = 0 as |z| <= 4) get
 * zero perturbation codes, describe warns, and the weights never move. */
Test(qzoff_fixed, eight_bit_underflow_warns_and_stalls)
{
    tu_net n;
    lines l;
    described(&n, "precision = 8w8a\ncalibrate = 16\neps = 2e-4\n", 4, &l);
    cr_expect(strstr(l.text, "warning: out.weight: eps is") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "perturbation underflow") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "non-zero perturbation codes 0.0%") != NULL, "%s", l.text);
    run_relu(&n, 0, 1, 0.05);
    plast_param *ow = &plast_model_layer(n.model, 2)->param[0], *ob = ow + 1;
    float w8[8 * C], b32[C];
    memcpy(w8, ow->w, sizeof w8);
    memcpy(b32, ob->w, sizeof b32);
    run_relu(&n, 1, 20, 0.05);
    cr_assert(eq(sz, ow->count, 8 * C));
    cr_assert(memcmp(w8, ow->w, sizeof w8) == 0, "zero perturbation codes: no update");
    cr_assert(memcmp(b32, ob->w, sizeof b32) != 0, "the int32 biases do train");
    tu_net_fini(&n);
    /* eps = 2 LSB of the tensor: no warning, and it trains */
    tu_net_init(&n, relu_ini("precision = 8w8a\ncalibrate = 16\neps_lsb = 2\n"), F, C, "qzoff",
                4);
    tu_net_create_rule(&n);
    memset(&l, 0, sizeof l);
    n.ops->describe(n.rule, collect, &l);
    cr_expect(strstr(l.text, "warning") == NULL, "%s", l.text);
    cr_expect(strstr(l.text, "eps = 2 LSB of each tensor") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "eps = 2 LSB, Dmax = 8") != NULL, "%s", l.text);
    run_relu(&n, 0, 1, 0.05);
    ow = &plast_model_layer(n.model, 2)->param[0];
    memcpy(w8, ow->w, sizeof w8);
    run_relu(&n, 1, 20, 0.05);
    cr_assert(memcmp(w8, ow->w, sizeof w8) != 0, "2 LSB: the 8-bit weights train");
    tu_net_fini(&n);
}

Test(qzoff_refuse, headroom)
{
    /* out.weight ~ U(+-1/sqrt(8)): s ~ 1.25 * 0.35 / 127, Dmax ~ 58 > 31 */
    tu_net n;
    plast_err e;
    tu_net_init(&n, relu_ini("precision = 8w8a\neps = 0.05\n"), F, C, "qzoff", 1);
    cr_assert(create_rule(&n, &e) != PLAST_OK);
    cr_expect(strstr(e.msg, "tensor 'out.weight': eps = 0.05 is too large for scale s = ") !=
                  NULL,
              "%s", e.msg);
    cr_expect(strstr(e.msg, "at 8 bits") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "more than qmax/4 = 31") != NULL, "%s", e.msg);
    n.rule = NULL;
    tu_net_fini(&n);
}

Test(qzoff_refuse, tanh_in_fixed_point)
{
    expect_refusal(mlp_ini("precision = 16w8a\n"), "has no fixed-point form");
}

static void resume_fixed(const char *rule, int total, int cut)
{
    char path[] = "/tmp/qzoff-ckpt-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    tu_net a, b, c;
    tu_net_init(&a, relu_ini(rule), F, C, "qzoff", 12);
    tu_net_create_rule(&a);
    run_relu(&a, 0, total, 0.05);
    tu_net_init(&b, relu_ini(rule), F, C, "qzoff", 12);
    tu_net_create_rule(&b);
    run_relu(&b, 0, cut, 0.05);
    save(&b, path);
    tu_net_fini(&b);
    tu_net_init(&c, relu_ini(rule), F, C, "qzoff", 12);
    tu_net_create_rule(&c);
    load(&c, path);
    run_relu(&c, cut, total - cut, 0.05);
    float pa[B * C], pc[B * C];
    predict_fixed(&a, pa);
    predict_fixed(&c, pc);
    cr_assert(memcmp(plast_model_weights(a.model), plast_model_weights(c.model),
                     plast_model_nparams(a.model) * sizeof(float)) == 0,
              "cut at %d", cut);
    cr_assert(memcmp(pa, pc, sizeof pa) == 0, "cut at %d", cut);
    tu_net_fini(&a);
    tu_net_fini(&c);
    unlink(path);
}

Test(qzoff_fixed, resume_after_calibration)
{
    resume_fixed("precision = 16w8a\ntrain = all\nm = 2\ncalibrate = 40\nround = stochastic\n",
                 10, 6);
}

Test(qzoff_fixed, resume_during_calibration)
{
    resume_fixed("precision = 16w8a\ntrain = all\ncalibrate = 40\n", 8, 2);
}

Test(qzoff_fixed, resume_refuses_other_settings)
{
    char path[] = "/tmp/qzoff-ckpt-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    tu_net b, c;
    tu_net_init(&b, relu_ini("precision = 16w8a\ncalibrate = 16\n"), F, C, "qzoff", 12);
    tu_net_create_rule(&b);
    run_relu(&b, 0, 2, 0.05);
    save(&b, path);
    tu_net_fini(&b);
    tu_net_init(&c, relu_ini("precision = 16w8a\ncalibrate = 16\ntrain = all\n"), F, C, "qzoff",
                12);
    tu_net_create_rule(&c);
    plast_err e;
    plast_reader *r;
    CHECK_OK(plast_reader_open(&r, path, &e), e);
    CHECK_OK(plast_reader_chunk(r, "RULE", &e), e);
    cr_assert(eq(int, c.ops->load_state(c.rule, r, &e), PLAST_E_DATA));
    cr_expect(strstr(e.msg, "number of trained tensors differs") != NULL, "%s", e.msg);
    plast_reader_destroy(r);
    tu_net_fini(&c);
    unlink(path);
}

/* ---- memory: no gradients, no optimiser state, no weight copy in fixed
 * point (fp32: one copy of the trained elements), nothing left behind ---- */

static void memory_profile(const char *rule, size_t per_element)
{
    tu_net n;
    tu_net_init(&n, relu_ini(rule), F, C, "qzoff", 2);
    size_t weights = plast_mem_live(n.mem, PLAST_MEM_WEIGHTS);
    tu_net_create_rule(&n);
    size_t elements = 0;
    for (int i = 0; i < plast_model_nlayers(n.model); i++)
        for (int p = 0; p < plast_model_layer(n.model, i)->nparams; p++)
            elements += plast_model_layer(n.model, i)->param[p].count;
    size_t rule_bytes = plast_mem_live(n.mem, PLAST_MEM_RULE);
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_GRADIENTS), 0));
    cr_expect(rule_bytes >= per_element * elements &&
                  rule_bytes < per_element * elements + 1024,
              "%s: %zu rule bytes for %zu trained elements", rule, rule_bytes, elements);
    run_relu(&n, 0, 5, 0.05);
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0));
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_SCRATCH), 0));
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_RULE), rule_bytes));
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_OPTIMIZER), 0));
    n.ops->destroy(n.rule);
    n.rule = NULL;
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_RULE), 0));
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_WEIGHTS), weights), "codes freed");
    tu_net_fini(&n);
}

Test(qzoff_memory, fixed_point_keeps_no_copy)
{
    memory_profile("precision = 16w8a\ntrain = all\ncalibrate = 16\nm = 3\n", 0);
}

Test(qzoff_memory, fp32_keeps_one_copy_of_the_trained_elements)
{
    memory_profile("precision = fp32\ntrain = all\nm = 3\n", sizeof(float));
}

/* ---- what train = selects ---- */

/* Which of h1.weight, h1.bias, out.weight, out.bias moved in one step. */
static unsigned moved_after_step(const char *rule, const char *layer_extra)
{
    char ini[1024];
    snprintf(ini, sizeof ini,
             "[layer.h1]\ntype = dense\nunits = 8\n%s[layer.a1]\ntype = relu\n"
             "[layer.out]\ntype = dense\nunits = %d\n"
             "[optimizer]\ntype = sgd\nlr = 0.05\n[rule.qzoff]\n%s",
             layer_extra, C, rule);
    tu_net n;
    tu_net_init(&n, ini, F, C, "qzoff", 31);
    tu_net_create_rule(&n);
    plast_param *ps[4] = {&plast_model_layer(n.model, 0)->param[0],
                          &plast_model_layer(n.model, 0)->param[1],
                          &plast_model_layer(n.model, 2)->param[0],
                          &plast_model_layer(n.model, 2)->param[1]};
    float *before[4];
    for (int i = 0; i < 4; i++) {
        before[i] = malloc(ps[i]->count * sizeof(float));
        memcpy(before[i], ps[i]->w, ps[i]->count * sizeof(float));
    }
    run_relu(&n, 0, 1, 0.05);
    unsigned moved = 0;
    for (int i = 0; i < 4; i++) {
        moved |= (unsigned)(memcmp(before[i], ps[i]->w, ps[i]->count * sizeof(float)) != 0) << i;
        free(before[i]);
    }
    tu_net_fini(&n);
    return moved;
}

Test(qzoff_train, selections)
{
    cr_expect(eq(u32, moved_after_step("precision = fp32\ntrain = last\n", ""), 0xc));
    cr_expect(eq(u32, moved_after_step("precision = fp32\ntrain = all\n", ""), 0xf));
    cr_expect(eq(u32, moved_after_step("precision = fp32\ntrain = biases\n", ""), 0xa));
    cr_expect(eq(u32, moved_after_step("precision = fp32\ntrain = h1\n", ""), 0x3));
    cr_expect(eq(u32, moved_after_step("precision = fp32\ntrain = all\n", "frozen = true\n"),
                 0xc), "train = all leaves frozen layers alone");
    cr_expect(eq(u32, moved_after_step("precision = fp32\ntrain = h1\n", "frozen = true\n"),
                 0x3), "a named layer trains even when frozen");
}

Test(qzoff_train, fixed_point_selections_and_per_channel)
{
    /* in fixed point the dequantised codes are written back into every
     * tensor on the first step: compare with eta = 0 instead */
    const char *rule = "precision = 16w8a\ntrain = h1\nper_channel = true\ncalibrate = 16\n"
                       "estimator = value\n";
    tu_net a, b;
    tu_net_init(&a, relu_ini(rule), F, C, "qzoff", 13);
    tu_net_create_rule(&a);
    tu_net_init(&b, relu_ini(rule), F, C, "qzoff", 13);
    tu_net_create_rule(&b);
    run_relu(&a, 0, 3, 0.0);
    run_relu(&b, 0, 3, 0.05);
    plast_layer *ha = plast_model_layer(a.model, 0), *hb = plast_model_layer(b.model, 0);
    plast_layer *oa = plast_model_layer(a.model, 2), *ob = plast_model_layer(b.model, 2);
    cr_expect(memcmp(ha->param[0].w, hb->param[0].w, ha->param[0].count * 4) != 0, "h1 trains");
    cr_expect(memcmp(ha->param[1].w, hb->param[1].w, ha->param[1].count * 4) != 0);
    cr_expect(memcmp(oa->param[0].w, ob->param[0].w, oa->param[0].count * 4) == 0,
              "out does not");
    cr_expect(memcmp(oa->param[1].w, ob->param[1].w, oa->param[1].count * 4) == 0);
    lines l = {{0}};
    a.ops->describe(a.rule, collect, &l);
    cr_expect(strstr(l.text, "h1.weight: 96 elements, int16 codes, scale") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "(channel 0)") != NULL, "%s", l.text);
    tu_net_fini(&a);
    tu_net_fini(&b);
}

Test(qzoff_refuse, malformed_train_lists)
{
    expect_refusal(mlp_ini("precision = fp32\ntrain = h1,,out\n"), "comma list of layer names");
    expect_refusal(mlp_ini("precision = fp32\ntrain = h1, out,\n"), "comma list of layer names");
}

/* ---- whitened directions (whiten = true, plast's extension) ---- */

Test(qzoff_whiten, eta_zero_restores_exactly_16w8a)
{
    eta_zero_fixed("16w8a", "whiten = true\n");
}

Test(qzoff_whiten, warm_up_then_describe)
{
    tu_net n;
    lines l;
    described(&n, "precision = fp32\nwhiten = true\ncalibrate = 40\n", 3, &l);
    cr_expect(strstr(l.text, "calibration: whitening moments from the first 40 training images") !=
                  NULL,
              "%s", l.text);
    cr_expect(strstr(l.text, "whitened directions (plast's extension): layer 'out', 3 rows of "
                             "[weight | bias]") != NULL,
              "%s", l.text);
    float *w = weights_copy(&n);
    run_relu(&n, 0, 2, 0.05); /* 32 images: gathering moments, no update */
    cr_assert(same_weights(&n, w));
    run_relu(&n, 2, 1, 0.05);
    cr_assert(same_weights(&n, w) == 0);
    memset(&l, 0, sizeof l);
    n.ops->describe(n.rule, collect, &l);
    cr_expect(strstr(l.text, "calibration: done on 48 training images") != NULL, "%s", l.text);
    free(w);
    tu_net_fini(&n);
}

Test(qzoff_whiten, resume_during_and_after_the_warm_up)
{
    const char *fixed = "precision = 16w8a\ntrain = all\nm = 2\ncalibrate = 40\n"
                        "round = stochastic\nwhiten = true\n";
    resume_fixed(fixed, 10, 6);
    resume_fixed(fixed, 8, 2);
    resume_equals_uninterrupted(relu_ini("precision = fp32\ntrain = all\ncalibrate = 40\n"
                                         "whiten = true\n"),
                                10, 2);
}

Test(qzoff_whiten, refusals)
{
    expect_refusal(relu_ini("precision = 16w8a\nwhiten = true\nsparsity = 0.5\n"),
                   "whiten = true needs sparsity = 0 and eps_lsb = 0 (found 0.5 and 0)");
    expect_refusal(relu_ini("precision = 16w8a\nwhiten = true\neps_lsb = 2\n"),
                   "whiten = true needs sparsity = 0 and eps_lsb = 0 (found 0 and 2)");
    expect_refusal(relu_ini("precision = fp32\nwhiten = true\ntrain = biases\n"),
                   "whiten = true, but no trained layer is a dense layer with a bias");
}

/* The mean loss of the last 20 of `steps` steps (infinite if it
 * diverged) of a dense layer learning one-hot(label) under mse from
 * inputs with a large common offset (ill-conditioned). */
static double offset_regression(const char *rule, double lr, int steps)
{
    enum { K = 4, FX = 6, NB = 32 };
    char ini[512];
    snprintf(ini, sizeof ini,
             "[layer.out]\ntype = dense\nunits = 4\n[optimizer]\ntype = sgd\nlr = %g\n"
             "[rule.qzoff]\nestimator = value\nm = 1\ntrain = all\ncalibrate = 32\n%s",
             lr, rule);
    tu_net n;
    tu_net_init(&n, ini, FX, K, "qzoff", 5);
    plast_model_attach(n.model, &plast_loss_mse, n.optim, 1);
    tu_net_create_rule(&n);
    plast_rng r;
    plast_rng_stream(&r, 77, PLAST_STREAM_DATA, 1);
    double last = 0;
    for (int s = 0; s < steps; s++) {
        float x[NB * FX];
        int32_t y[NB];
        for (int i = 0; i < NB; i++) {
            y[i] = (int32_t)plast_rng_below(&r, K);
            for (int j = 0; j < FX; j++)
                x[i * FX + j] = 3.0f + (j == y[i]) + (j >= K ? plast_rng_uniform(&r, -1, 1) : 0);
        }
        plast_stats st = qz_step(&n, x, y, NB, (uint64_t)s, lr);
        if (!isfinite(st.loss)) { /* diverged */
            last = INFINITY;
            break;
        }
        if (s >= steps - 20)
            last += st.loss / 20;
    }
    tu_net_fini(&n);
    return last;
}

/* What whitening is for: with inputs dominated by their mean, isotropic
 * directions diverge at learning rates the whitened ones need, and the
 * best loss over the grid is far lower whitened: below 1/100 of the
 * isotropic one in fp32, below 2/3 in 16w8a (whose int8 activations set a
 * floor of about 0.05 here). */
Test(qzoff_whiten, beats_isotropic_on_an_ill_conditioned_input)
{
    const double lrs[] = {0.003, 0.01, 0.03, 0.1}, factor[] = {0.01, 2.0 / 3};
    const char *precisions[] = {"fp32", "16w8a"};
    for (int p = 0; p < 2; p++) {
        char iso[64], white[64];
        snprintf(iso, sizeof iso, "precision = %s\n", precisions[p]);
        snprintf(white, sizeof white, "precision = %s\nwhiten = true\n", precisions[p]);
        double best_iso = INFINITY, best_white = INFINITY;
        for (int i = 0; i < 4; i++) {
            best_iso = fmin(best_iso, offset_regression(iso, lrs[i], 800));
            best_white = fmin(best_white, offset_regression(white, lrs[i], 800));
        }
        cr_expect(best_white < factor[p] * best_iso, "%s best mse: whitened %g, isotropic %g",
                  precisions[p], best_white, best_iso);
    }
}

/* A RULE chunk in version 1's layout (fp32: the header only) for relu_ini
 * with train = last: what checkpoints written before whitening hold. */
static void write_version(const char *path, uint32_t version)
{
    plast_err e;
    plast_writer *w;
    CHECK_OK(plast_writer_create(&w, &e), e);
    CHECK_OK(plast_writer_chunk(w, "RULE", &e), e);
    CHECK_OK(plast_writer_u32(w, version, &e), e);
    CHECK_OK(plast_writer_u32(w, 0, &e), e); /* fp32 */
    CHECK_OK(plast_writer_u32(w, 2, &e), e);
    CHECK_OK(plast_writer_str(w, "out.weight", &e), e);
    CHECK_OK(plast_writer_u64(w, 8 * C, &e), e);
    CHECK_OK(plast_writer_str(w, "out.bias", &e), e);
    CHECK_OK(plast_writer_u64(w, C, &e), e);
    CHECK_OK(plast_writer_commit(w, path, &e), e);
    plast_writer_destroy(w);
}

static int load_rule_chunk(tu_net *n, const char *path, plast_err *e)
{
    plast_reader *r;
    CHECK_OK(plast_reader_open(&r, path, e), *e);
    CHECK_OK(plast_reader_chunk(r, "RULE", e), *e);
    int rc = n->ops->load_state(n->rule, r, e);
    plast_reader_destroy(r);
    return rc;
}

/* Version 1 still loads; with whiten it is refused (it has no moments),
 * and an unknown version is named. */
Test(qzoff_whiten, reads_version_1_state)
{
    char path[] = "/tmp/qzoff-v1-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    plast_err e;
    tu_net n;
    write_version(path, 1);
    tu_net_init(&n, relu_ini("precision = fp32\n"), F, C, "qzoff", 12);
    tu_net_create_rule(&n);
    CHECK_OK(load_rule_chunk(&n, path, &e), e);
    run_relu(&n, 0, 2, 0.05);
    tu_net_fini(&n);
    tu_net_init(&n, relu_ini("precision = fp32\nwhiten = true\n"), F, C, "qzoff", 12);
    tu_net_create_rule(&n);
    cr_assert(eq(int, load_rule_chunk(&n, path, &e), PLAST_E_DATA));
    cr_expect(strstr(e.msg, "whitening (whiten) differs") != NULL, "%s", e.msg);
    tu_net_fini(&n);
    write_version(path, 3);
    tu_net_init(&n, relu_ini("precision = fp32\n"), F, C, "qzoff", 12);
    tu_net_create_rule(&n);
    cr_assert(eq(int, load_rule_chunk(&n, path, &e), PLAST_E_DATA));
    cr_expect(strstr(e.msg, "expected version 1 or 2, found 3") != NULL, "%s", e.msg);
    tu_net_fini(&n);
    unlink(path);
}

Test(qzoff_whiten, per_channel_codes_restore_exactly)
{
    eta_zero_fixed("16w8a", "whiten = true\nper_channel = true\n");
}

/* A whitened tensor's underflow is warned about before its whitener
 * exists (8-bit weights with eps = 2e-4, as in test 3 above). */
Test(qzoff_whiten, underflow_warns_before_the_warm_up)
{
    tu_net n;
    lines l;
    described(&n, "precision = 8w8a\ncalibrate = 16\neps = 2e-4\nwhiten = true\n", 4, &l);
    cr_expect(strstr(l.text, "warning: out.weight: eps is") != NULL, "%s", l.text);
    cr_expect(strstr(l.text, "most perturbation codes will be zero") != NULL, "%s", l.text);
    tu_net_fini(&n);
}
