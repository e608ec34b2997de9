/* test_batchnorm.c - the batchnorm layer: settings, shapes, init, forward
 * against a double-precision reference, running statistics, eval mode,
 * backward against central finite differences, the backward contract, the
 * memory kept between forward and backward, and refusals.
 *
 * The finite differences follow tests/test_layers.c: the fp32 forward (in
 * training mode, so with batch statistics), the scalar loss L = sum(y * r)
 * (r random, fixed) summed in double, h = 1e-3, relative error < 2e-2 where
 * |g| > 1e-3 and a gradient cosine > 0.999. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layertest.h"

extern const plast_layer_ops plast_layer_batchnorm;

#define REF_TOL 1e-5 /* fp32 forward against the double reference, relative */
#define EPS 1e-5     /* the default eps */

enum { GAMMA, BETA, RMEAN, RVAR };

/* ---- helpers ---- */

/* create() on input shape `in`; returns its status. */
static int layer_try(plast_layer *l, const char *ini, plast_shape in, plast_err *e)
{
    return lt_try(l, &plast_layer_batchnorm, ini, in, e);
}

/* One layer, mapped as the model maps it (buffers get g == NULL), with its
 * allocator, a training context and an input/output pair. */
typedef struct bn {
    plast_layer l;
    plast_mem *mem;
    plast_ctx ctx;
    int batch;
    plast_tensor x, y;
} bn;

/* Weights start as NaN so that init() is seen to write every one. */
static void bn_make(bn *t, const char *ini, plast_shape in, int batch)
{
    memset(t, 0, sizeof *t);
    plast_err e = {0};
    cr_assert(eq(int, layer_try(&t->l, ini, in, &e), 0), "create: %s", e.msg);
    for (int i = 0; i < t->l.nparams; i++) {
        plast_param *p = &t->l.param[i];
        p->w = malloc(p->count * sizeof(plast_real));
        cr_assert(p->w != NULL);
        for (size_t j = 0; j < p->count; j++)
            p->w[j] = NAN;
        if (!(p->flags & PLAST_PARAM_BUFFER)) {
            p->g = calloc(p->count, sizeof(plast_real));
            cr_assert(p->g != NULL);
        }
    }
    plast_rng r;
    plast_rng_stream(&r, 1, PLAST_STREAM_INIT, 0);
    t->l.ops->init(&t->l, &r);
    cr_assert(eq(int, plast_mem_create(&t->mem, &e), 0));
    t->ctx = (plast_ctx){.mem = t->mem, .train = 1, .threads = 1};
    t->batch = batch;
    t->x = lt_tensor(t->mem, batch, in);
    t->y = lt_tensor(t->mem, batch, t->l.out);
}

static void bn_fini(bn *t)
{
    t->l.ops->release(&t->l, &t->ctx);
    plast_tensor_free(&t->x);
    plast_tensor_free(&t->y);
    for (int i = 0; i < t->l.nparams; i++) {
        free(t->l.param[i].w);
        free(t->l.param[i].g);
    }
    t->l.ops->destroy(&t->l);
    cr_assert(eq(sz, plast_mem_live_total(t->mem), 0), "leaked");
    plast_mem_destroy(t->mem);
}

/* Random input and random gamma, beta (gamma away from 0). */
static void bn_randomise(bn *t, uint64_t seed)
{
    plast_rng r;
    plast_rng_stream(&r, seed, PLAST_STREAM_DATA, 0);
    lt_fill_range(t->x.data, t->x.size, &r, -1.0f, 1.0f);
    size_t c = t->l.param[GAMMA].count;
    lt_fill_range(t->l.param[GAMMA].w, c, &r, 0.5f, 1.5f);
    lt_fill_range(t->l.param[BETA].w, c, &r, -0.5f, 0.5f);
}

static int channels(const bn *t)
{
    return t->l.in.dim[0];
}

/* Values per channel in one sample. */
static size_t spatial(const bn *t)
{
    return plast_shape_size(&t->l.in) / (size_t)channels(t);
}

static size_t idx(const bn *t, int s, int c, size_t i)
{
    return ((size_t)s * (size_t)channels(t) + (size_t)c) * spatial(t) + i;
}

/* Double-precision batch mean and biased variance of channel c of x. */
static void ref_moments(const bn *t, const plast_real *x, int c, double *mean, double *var)
{
    double n = (double)t->batch * (double)spatial(t), s1 = 0.0, s2 = 0.0;
    for (int s = 0; s < t->batch; s++)
        for (size_t i = 0; i < spatial(t); i++)
            s1 += x[idx(t, s, c, i)];
    *mean = s1 / n;
    for (int s = 0; s < t->batch; s++)
        for (size_t i = 0; i < spatial(t); i++) {
            double d = x[idx(t, s, c, i)] - *mean;
            s2 += d * d;
        }
    *var = s2 / n;
}

/* t->y against gamma (x - mean) / sqrt(var + eps) + beta in double, with
 * per-channel mean and var given. */
static void expect_normalised(const bn *t, const double *mean, const double *var)
{
    const plast_real *g = t->l.param[GAMMA].w, *b = t->l.param[BETA].w;
    for (int s = 0; s < t->batch; s++)
        for (int c = 0; c < channels(t); c++)
            for (size_t i = 0; i < spatial(t); i++) {
                size_t k = idx(t, s, c, i);
                double want = g[c] * (t->x.data[k] - mean[c]) / sqrt(var[c] + EPS) + b[c];
                double err = fabs(t->y.data[k] - want) / fmax(1.0, fabs(want));
                cr_assert(lt(dbl, err, REF_TOL), "y[%zu] = %.9g, expected %.9g", k,
                          (double)t->y.data[k], want);
            }
}

static int forward(bn *t, plast_err *e)
{
    return t->l.ops->forward(&t->l, &t->x, &t->y, &t->ctx, e);
}

static void forward_ok(bn *t)
{
    plast_err e = {0};
    cr_assert(eq(int, forward(t, &e), 0), "forward: %s", e.msg);
}

/* backward with dL/dy = r; dL/dx into dx when not NULL. */
static void backward_ok(bn *t, const plast_real *r, plast_real *dx)
{
    plast_err e = {0};
    plast_tensor dy = plast_tensor_view((plast_real *)r, t->batch, &t->l.out);
    plast_tensor dxt = plast_tensor_view(dx, t->batch, &t->l.in);
    cr_assert(eq(int, t->l.ops->backward(&t->l, &t->x, &t->y, &dy, dx ? &dxt : NULL, &t->ctx,
                                         &e),
                 0),
              "backward: %s", e.msg);
}

static plast_real *random_array(size_t n, uint64_t seed)
{
    plast_real *p = malloc(n * sizeof *p);
    cr_assert(p != NULL);
    plast_rng r;
    plast_rng_stream(&r, seed, PLAST_STREAM_DATA, 9);
    lt_fill_range(p, n, &r, -1.0f, 1.0f);
    return p;
}

/* ---- finite differences ---- */

/* L = sum(y * r) from the fp32 forward of the bn at `t`. */
static double loss(void *t, const plast_real *r)
{
    bn *b = t;
    forward_ok(b);
    double s = 0.0;
    for (size_t i = 0; i < b->y.size; i++)
        s += (double)b->y.data[i] * r[i];
    return s;
}

/* dL/dx, dL/dgamma and dL/dbeta against finite differences, in the mode
 * of t->ctx.train (eval: running statistics set to arbitrary values). */
static void check_fd(plast_shape in, int batch, int train)
{
    bn t;
    bn_make(&t, "", in, batch);
    bn_randomise(&t, 5);
    t.ctx.train = train;
    if (!train) {
        plast_rng r;
        plast_rng_stream(&r, 6, PLAST_STREAM_DATA, 1);
        lt_fill_range(t.l.param[RMEAN].w, t.l.param[RMEAN].count, &r, -0.3f, 0.3f);
        lt_fill_range(t.l.param[RVAR].w, t.l.param[RVAR].count, &r, 0.2f, 2.0f);
    }
    plast_real *r = random_array(t.y.size, 7);
    plast_real *dx = malloc(t.x.size * sizeof *dx);
    cr_assert(dx != NULL);
    forward_ok(&t);
    backward_ok(&t, r, dx);
    for (int p = GAMMA; p <= BETA; p++) {
        plast_param *pp = &t.l.param[p];
        double *num = malloc(pp->count * sizeof *num);
        cr_assert(num != NULL);
        lt_numeric_diff(loss, &t, r, pp->w, pp->count, num);
        lt_compare_grads(pp->name, pp->g, num, pp->count);
        free(num);
    }
    double *num = malloc(t.x.size * sizeof *num);
    cr_assert(num != NULL);
    lt_numeric_diff(loss, &t, r, t.x.data, t.x.size, num);
    lt_compare_grads("input", dx, num, t.x.size);
    free(num);
    free(dx);
    free(r);
    bn_fini(&t);
}

Test(batchnorm_fd, images_batch_statistics)
{
    check_fd(lt_shape3(2, 3, 4), 3, 1);
}

Test(batchnorm_fd, features_batch_statistics)
{
    check_fd(lt_shape1(5), 4, 1);
}

Test(batchnorm_fd, images_running_statistics_in_eval)
{
    check_fd(lt_shape3(2, 3, 4), 3, 0);
}

Test(batchnorm_fd, features_running_statistics_in_eval)
{
    check_fd(lt_shape1(5), 4, 0);
}

/* ---- forward ---- */

static void check_forward_reference(plast_shape in, int batch)
{
    bn t;
    bn_make(&t, "", in, batch);
    bn_randomise(&t, 11);
    forward_ok(&t);
    double mean[8], var[8];
    cr_assert(le(int, channels(&t), 8));
    for (int c = 0; c < channels(&t); c++)
        ref_moments(&t, t.x.data, c, &mean[c], &var[c]);
    expect_normalised(&t, mean, var);
    bn_fini(&t);
}

Test(batchnorm, forward_images_matches_double_reference)
{
    check_forward_reference(lt_shape3(2, 3, 4), 3);
}

Test(batchnorm, forward_features_matches_double_reference)
{
    check_forward_reference(lt_shape1(5), 4);
}

Test(batchnorm, forward_is_deterministic)
{
    bn t;
    bn_make(&t, "", lt_shape3(3, 2, 5), 4);
    bn_randomise(&t, 2);
    forward_ok(&t);
    plast_real *first = lt_copy(t.y.data, t.y.size);
    forward_ok(&t);
    cr_assert(eq(int, memcmp(first, t.y.data, t.y.size * sizeof *first), 0));
    free(first);
    bn_fini(&t);
}

/* Two training forwards on different batches, momentum m: the running
 * statistics follow the hand formula with the unbiased variance. */
static void check_running_statistics(const char *ini, double m, plast_shape in, int batch)
{
    bn t;
    bn_make(&t, ini, in, batch);
    bn_randomise(&t, 3);
    int C = channels(&t);
    double n = (double)batch * (double)spatial(&t);
    double want_mean[8], want_var[8];
    cr_assert(le(int, C, 8));
    for (int c = 0; c < C; c++) {
        want_mean[c] = 0.0;
        want_var[c] = 1.0;
    }
    plast_rng r;
    plast_rng_stream(&r, 4, PLAST_STREAM_DATA, 2);
    for (int round = 0; round < 2; round++) {
        lt_fill_range(t.x.data, t.x.size, &r, -2.0f + (float)round, 1.0f + 2.0f * (float)round);
        for (int c = 0; c < C; c++) {
            double mean, var;
            ref_moments(&t, t.x.data, c, &mean, &var);
            want_mean[c] = (1.0 - m) * want_mean[c] + m * mean;
            want_var[c] = (1.0 - m) * want_var[c] + m * var * n / (n - 1.0);
        }
        forward_ok(&t);
    }
    for (int c = 0; c < C; c++) {
        double gm = t.l.param[RMEAN].w[c], gv = t.l.param[RVAR].w[c];
        cr_assert(lt(dbl, fabs(gm - want_mean[c]), 1e-6 * fmax(1.0, fabs(want_mean[c]))),
                  "running_mean[%d] = %.9g, expected %.9g", c, gm, want_mean[c]);
        cr_assert(lt(dbl, fabs(gv - want_var[c]), 1e-6 * fmax(1.0, fabs(want_var[c]))),
                  "running_var[%d] = %.9g, expected %.9g", c, gv, want_var[c]);
    }
    bn_fini(&t);
}

Test(batchnorm, running_statistics_images_default_momentum)
{
    check_running_statistics("", 0.1, lt_shape3(2, 3, 4), 3);
}

Test(batchnorm, running_statistics_features_given_momentum)
{
    check_running_statistics("momentum = 0.25\n", 0.25, lt_shape1(5), 4);
}

Test(batchnorm, momentum_zero_keeps_running_statistics)
{
    check_running_statistics("momentum = 0\n", 0.0, lt_shape1(3), 2);
}

Test(batchnorm, eps_setting_is_used)
{
    bn t;
    bn_make(&t, "eps = 0.5\n", lt_shape1(2), 3);
    bn_randomise(&t, 8);
    t.ctx.train = 0;
    t.l.param[RMEAN].w[0] = 0.25f;
    t.l.param[RMEAN].w[1] = -0.5f;
    t.l.param[RVAR].w[0] = 0.5f;
    t.l.param[RVAR].w[1] = 1.5f;
    forward_ok(&t);
    const plast_real *g = t.l.param[GAMMA].w, *b = t.l.param[BETA].w;
    for (int s = 0; s < 3; s++)
        for (int c = 0; c < 2; c++) {
            size_t k = idx(&t, s, c, 0);
            double want = g[c] * (t.x.data[k] - t.l.param[RMEAN].w[c]) /
                              sqrt(t.l.param[RVAR].w[c] + 0.5) +
                          b[c];
            cr_assert(lt(dbl, fabs(t.y.data[k] - want), REF_TOL), "y[%zu] %.9g vs %.9g", k,
                      (double)t.y.data[k], want);
        }
    bn_fini(&t);
}

/* Eval: y from the running statistics; parameters, buffers and memory
 * unchanged; batch 1 allowed. */
static void check_eval(plast_shape in, int batch)
{
    bn t;
    bn_make(&t, "", in, batch);
    bn_randomise(&t, 12);
    t.ctx.train = 0;
    int C = channels(&t);
    double mean[8], var[8];
    cr_assert(le(int, C, 8));
    for (int c = 0; c < C; c++) {
        t.l.param[RMEAN].w[c] = 0.1f * (float)(c + 1);
        t.l.param[RVAR].w[c] = 0.5f + 0.75f * (float)c;
        mean[c] = t.l.param[RMEAN].w[c];
        var[c] = t.l.param[RVAR].w[c];
    }
    plast_real *before[4];
    for (int p = 0; p < 4; p++)
        before[p] = lt_copy(t.l.param[p].w, t.l.param[p].count);
    size_t live = plast_mem_live_total(t.mem);
    forward_ok(&t);
    cr_assert(eq(sz, plast_mem_live_total(t.mem), live), "eval forward kept memory");
    expect_normalised(&t, mean, var);
    for (int p = 0; p < 4; p++) {
        cr_assert(eq(int, memcmp(before[p], t.l.param[p].w, t.l.param[p].count * sizeof(float)),
                     0),
                  "%s changed", t.l.param[p].name);
        free(before[p]);
    }
    bn_fini(&t);
}

Test(batchnorm, eval_uses_running_statistics_images)
{
    check_eval(lt_shape3(3, 2, 2), 2);
}

Test(batchnorm, eval_uses_running_statistics_features_batch_one)
{
    check_eval(lt_shape1(4), 1);
}

/* ---- create, settings, init, flops ---- */

Test(batchnorm, declares_parameters_then_buffers)
{
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, layer_try(&l, "", lt_shape3(6, 5, 4), &e), 0), "%s", e.msg);
    cr_assert(plast_shape_equal(&l.out, &l.in));
    cr_assert(eq(int, l.nparams, 4));
    static const char *const names[] = {"weight", "bias", "running_mean", "running_var"};
    for (int p = 0; p < 4; p++) {
        cr_assert(eq(str, (char *)l.param[p].name, (char *)names[p]));
        cr_assert(eq(sz, l.param[p].count, 6));
        unsigned want = p >= RMEAN ? PLAST_PARAM_BUFFER : 0u;
        cr_assert(eq(uint, l.param[p].flags & PLAST_PARAM_BUFFER, want), "%s", names[p]);
    }
    cr_assert(eq(int, (int)l.ops->flags, PLAST_LAYER_FOLLOWER), "a block follower, not in place");
    cr_assert(eq(u64, l.ops->flops(&l, 1), 4 * 120));
    cr_assert(eq(u64, l.ops->flops(&l, 3), 12 * 120));
    l.ops->destroy(&l);
    cr_assert(l.priv == NULL);

    cr_assert(eq(int, layer_try(&l, "", lt_shape1(7), &e), 0), "%s", e.msg);
    cr_assert(plast_shape_equal(&l.out, &l.in));
    cr_assert(eq(sz, l.param[RVAR].count, 7));
    l.ops->destroy(&l);
}

Test(batchnorm, init_is_identity_with_empty_history)
{
    bn t;
    bn_make(&t, "", lt_shape3(3, 2, 2), 2); /* weights were NaN before init */
    for (int c = 0; c < 3; c++) {
        cr_assert(eq(flt, t.l.param[GAMMA].w[c], 1.0f));
        cr_assert(eq(flt, t.l.param[BETA].w[c], 0.0f));
        cr_assert(eq(flt, t.l.param[RMEAN].w[c], 0.0f));
        cr_assert(eq(flt, t.l.param[RVAR].w[c], 1.0f));
    }
    bn_fini(&t);
}

Test(batchnorm, settings_schema_and_ranges)
{
    plast_err e = {0};
    cr_assert(eq(int, plast_schema_check(plast_layer_batchnorm.settings, "batchnorm", &e), 0),
              "%s", e.msg);
    static const char *const bad[] = {"momentum = -0.1\n", "momentum = 1.5\n", "eps = 0\n",
                                      "eps = 2\n", "eps = x\n", "gamma = 1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        plast_layer l;
        cr_assert(eq(int, layer_try(&l, bad[i], lt_shape1(3), &e), PLAST_E_PARSE), "accepted %s",
                  bad[i]);
    }
    static const char *const good[] = {"momentum = 0\n", "momentum = 1\n", "eps = 1\n",
                                       "eps = 1e-3\n"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        plast_layer l;
        cr_assert(eq(int, layer_try(&l, good[i], lt_shape1(3), &e), 0), "%s: %s", good[i], e.msg);
        l.ops->destroy(&l);
    }
}

/* ---- backward contract ---- */

Test(batchnorm, backward_adds_parameter_gradients)
{
    bn t;
    bn_make(&t, "", lt_shape3(2, 3, 4), 3);
    bn_randomise(&t, 13);
    plast_real *r = random_array(t.y.size, 14);
    forward_ok(&t);
    backward_ok(&t, r, NULL);
    plast_real *once[2];
    for (int p = GAMMA; p <= BETA; p++)
        once[p] = lt_copy(t.l.param[p].g, t.l.param[p].count);
    backward_ok(&t, r, NULL);
    for (int p = GAMMA; p <= BETA; p++) {
        int nonzero = 0;
        for (size_t i = 0; i < t.l.param[p].count; i++) {
            cr_assert(eq(flt, t.l.param[p].g[i], 2.0f * once[p][i]), "%s[%zu]",
                      t.l.param[p].name, i);
            nonzero += once[p][i] != 0.0f;
        }
        cr_assert(gt(int, nonzero, 0), "%s: gradient all zero", t.l.param[p].name);
        free(once[p]);
    }
    free(r);
    bn_fini(&t);
}

Test(batchnorm, buffers_have_no_gradient_and_are_untouched_by_backward)
{
    bn t;
    bn_make(&t, "", lt_shape1(5), 4);
    bn_randomise(&t, 15);
    cr_assert(t.l.param[RMEAN].g == NULL);
    cr_assert(t.l.param[RVAR].g == NULL);
    plast_real *r = random_array(t.y.size, 16), dx[20];
    forward_ok(&t);
    plast_real *rm = lt_copy(t.l.param[RMEAN].w, 5), *rv = lt_copy(t.l.param[RVAR].w, 5);
    backward_ok(&t, r, dx); /* g == NULL: a write through it would crash */
    backward_ok(&t, r, NULL);
    cr_assert(eq(int, memcmp(rm, t.l.param[RMEAN].w, sizeof(float) * 5), 0));
    cr_assert(eq(int, memcmp(rv, t.l.param[RVAR].w, sizeof(float) * 5), 0));
    cr_assert(t.l.param[RMEAN].g == NULL);
    cr_assert(t.l.param[RVAR].g == NULL);

    /* even handed a gradient array, backward leaves it alone */
    plast_real sentinel[2][5];
    for (int i = 0; i < 5; i++)
        sentinel[0][i] = sentinel[1][i] = 0.25f;
    t.l.param[RMEAN].g = sentinel[0];
    t.l.param[RVAR].g = sentinel[1];
    backward_ok(&t, r, dx);
    for (int i = 0; i < 5; i++) {
        cr_assert(eq(flt, sentinel[0][i], 0.25f));
        cr_assert(eq(flt, sentinel[1][i], 0.25f));
    }
    t.l.param[RMEAN].g = t.l.param[RVAR].g = NULL;
    free(rm);
    free(rv);
    free(r);
    bn_fini(&t);
}

Test(batchnorm, frozen_adds_nothing_but_still_gives_dx)
{
    bn t;
    bn_make(&t, "", lt_shape3(2, 2, 2), 3);
    bn_randomise(&t, 17);
    plast_real *r = random_array(t.y.size, 18), live[24], frozen[24];
    forward_ok(&t);
    backward_ok(&t, r, live);
    for (int p = GAMMA; p <= BETA; p++)
        for (size_t i = 0; i < t.l.param[p].count; i++)
            t.l.param[p].g[i] = 0.25f;
    t.l.frozen = 1;
    backward_ok(&t, r, frozen);
    for (int p = GAMMA; p <= BETA; p++)
        for (size_t i = 0; i < t.l.param[p].count; i++)
            cr_assert(eq(flt, t.l.param[p].g[i], 0.25f), "%s[%zu] changed", t.l.param[p].name,
                      i);
    cr_assert(eq(int, memcmp(live, frozen, sizeof live), 0));
    free(r);
    bn_fini(&t);
}

Test(batchnorm, null_dx_gives_the_same_parameter_gradients)
{
    bn t;
    bn_make(&t, "", lt_shape1(3), 5);
    bn_randomise(&t, 19);
    plast_real *r = random_array(t.y.size, 20), dx[15];
    forward_ok(&t);
    backward_ok(&t, r, dx);
    plast_real *with[2];
    for (int p = GAMMA; p <= BETA; p++) {
        with[p] = lt_copy(t.l.param[p].g, 3);
        memset(t.l.param[p].g, 0, 3 * sizeof(float));
    }
    backward_ok(&t, r, NULL);
    for (int p = GAMMA; p <= BETA; p++) {
        cr_assert(eq(int, memcmp(with[p], t.l.param[p].g, 3 * sizeof(float)), 0), "%s",
                  t.l.param[p].name);
        free(with[p]);
    }
    free(r);
    bn_fini(&t);
}

/* The input gradient of a batch-statistics layer sums to zero per channel. */
Test(batchnorm, input_gradient_sums_to_zero_per_channel)
{
    bn t;
    bn_make(&t, "", lt_shape3(2, 3, 4), 3);
    bn_randomise(&t, 21);
    plast_real *r = random_array(t.y.size, 22), dx[72];
    forward_ok(&t);
    backward_ok(&t, r, dx);
    for (int c = 0; c < 2; c++) {
        double s = 0.0, a = 0.0;
        for (int b = 0; b < 3; b++)
            for (size_t i = 0; i < 12; i++) {
                s += dx[idx(&t, b, c, i)];
                a += fabs(dx[idx(&t, b, c, i)]);
            }
        cr_assert(gt(dbl, a, 1e-3), "channel %d: dx all zero", c);
        cr_assert(lt(dbl, fabs(s), 1e-5 * a), "channel %d: dx sums to %g", c, s);
    }
    free(r);
    bn_fini(&t);
}

/* ---- memory kept between forward and backward ---- */

Test(batchnorm, training_forward_keeps_two_floats_per_channel_until_release)
{
    bn t;
    bn_make(&t, "", lt_shape3(3, 2, 2), 2);
    bn_randomise(&t, 23);
    size_t act = plast_mem_live(t.mem, PLAST_MEM_ACTIVATIONS), total = plast_mem_live_total(t.mem);
    forward_ok(&t);
    cr_assert(eq(sz, plast_mem_live(t.mem, PLAST_MEM_ACTIVATIONS), act + 2 * 3 * sizeof(float)));
    forward_ok(&t); /* a second forward keeps no more */
    cr_assert(eq(sz, plast_mem_live_total(t.mem), total + 2 * 3 * sizeof(float)));
    t.l.ops->release(&t.l, &t.ctx);
    cr_assert(eq(sz, plast_mem_live_total(t.mem), total));
    t.l.ops->release(&t.l, &t.ctx); /* twice is safe */
    cr_assert(eq(sz, plast_mem_live_total(t.mem), total));

    /* backward needs the kept statistics */
    plast_real r[24] = {0}, dx[24];
    plast_tensor dy = plast_tensor_view(r, 2, &t.l.out), dxt = plast_tensor_view(dx, 2, &t.l.in);
    plast_err e = {0};
    cr_assert(eq(int, t.l.ops->backward(&t.l, &t.x, &t.y, &dy, &dxt, &t.ctx, &e),
                 PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "training forward") != NULL, "message: %s", e.msg);

    /* destroy without release frees the block too */
    forward_ok(&t);
    cr_assert(gt(sz, plast_mem_live_total(t.mem), total));
    t.l.ops->destroy(&t.l);
    cr_assert(eq(sz, plast_mem_live_total(t.mem), total));
    bn_fini(&t); /* release and destroy again: no-ops now */
}

Test(batchnorm, eval_forward_drops_kept_statistics)
{
    bn t;
    bn_make(&t, "", lt_shape1(4), 3);
    bn_randomise(&t, 24);
    size_t total = plast_mem_live_total(t.mem);
    forward_ok(&t);
    cr_assert(gt(sz, plast_mem_live_total(t.mem), total));
    t.ctx.train = 0;
    forward_ok(&t);
    cr_assert(eq(sz, plast_mem_live_total(t.mem), total));
    bn_fini(&t);
}

/* ---- refusals ---- */

Test(batchnorm, refuses_input_of_rank_two)
{
    plast_layer l;
    plast_err e = {0};
    plast_shape two = {2, {3, 4, 0}};
    cr_assert(eq(int, layer_try(&l, "", two, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "expected an input of [features] or [channels, height, width]") !=
                  NULL,
              "message: %s", e.msg);
    cr_assert(strstr(e.msg, "3x4") != NULL, "message: %s", e.msg);
    cr_assert(l.priv == NULL);
    cr_assert(eq(int, layer_try(&l, "", (plast_shape){0, {0, 0, 0}}, &e), PLAST_E_INVAL));
}

static void check_single_value_refused(plast_shape in)
{
    bn t;
    bn_make(&t, "", in, 1);
    bn_randomise(&t, 25);
    for (size_t i = 0; i < t.y.size; i++)
        t.y.data[i] = 7.0f;
    size_t total = plast_mem_live_total(t.mem);
    plast_err e = {0};
    cr_assert(eq(int, forward(&t, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "expected more than 1 value per channel") != NULL, "message: %s",
              e.msg);
    cr_assert(eq(sz, plast_mem_live_total(t.mem), total));
    for (size_t c = 0; c < t.l.param[RMEAN].count; c++) {
        cr_assert(eq(flt, t.l.param[RMEAN].w[c], 0.0f));
        cr_assert(eq(flt, t.l.param[RVAR].w[c], 1.0f));
    }
    for (size_t i = 0; i < t.y.size; i++)
        cr_assert(eq(flt, t.y.data[i], 7.0f));
    t.ctx.train = 0; /* eval takes a single sample */
    cr_assert(eq(int, forward(&t, &e), 0), "%s", e.msg);
    bn_fini(&t);
}

Test(batchnorm, refuses_one_value_per_channel_when_training)
{
    check_single_value_refused(lt_shape1(5));
    check_single_value_refused(lt_shape3(2, 1, 1));
}

Test(batchnorm, one_sample_of_an_image_is_enough)
{
    bn t;
    bn_make(&t, "", lt_shape3(2, 1, 2), 1); /* two values per channel */
    bn_randomise(&t, 26);
    forward_ok(&t);
    double mean[2], var[2];
    for (int c = 0; c < 2; c++)
        ref_moments(&t, t.x.data, c, &mean[c], &var[c]);
    expect_normalised(&t, mean, var);
    bn_fini(&t);
}

Test(batchnorm, refuses_mismatched_tensors)
{
    bn t;
    bn_make(&t, "", lt_shape1(4), 3);
    plast_shape other = lt_shape1(5);
    plast_real buf[15];
    plast_tensor y = plast_tensor_view(buf, 3, &other);
    plast_err e = {0};
    cr_assert(eq(int, t.l.ops->forward(&t.l, &t.x, &y, &t.ctx, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "output") != NULL, "message: %s", e.msg);
    bn_fini(&t);
}

Test(batchnorm, out_of_memory_for_statistics_changes_nothing)
{
    bn t;
    bn_make(&t, "", lt_shape1(3), 4);
    bn_randomise(&t, 27);
    size_t total = plast_mem_live_total(t.mem);
    plast_mem_fail_at(t.mem, 1);
    plast_err e = {0};
    cr_assert(eq(int, forward(&t, &e), PLAST_E_NOMEM));
    cr_assert(strstr(e.msg, "out of memory") != NULL, "message: %s", e.msg);
    cr_assert(eq(sz, plast_mem_live_total(t.mem), total));
    for (int c = 0; c < 3; c++) {
        cr_assert(eq(flt, t.l.param[RMEAN].w[c], 0.0f));
        cr_assert(eq(flt, t.l.param[RVAR].w[c], 1.0f));
    }
    forward_ok(&t); /* the next one succeeds */
    bn_fini(&t);
}
