/* test_layers.c - built-in layers: shapes, settings, initialisation, and
 * backward against central finite differences.
 *
 * The finite differences run the fp32 forward and sum the scalar loss
 * L = sum(y * r) (r random, fixed) in double; h = 1e-3. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "layertest.h"

/* ---- helpers ---- */

/* Values of magnitude in [0.05, 1.05) with random sign: away from relu's
 * kink, so a step of h never crosses it. */
static void fill_away_from_zero(plast_real *p, size_t n, plast_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        float v = 0.05f + plast_rng_float(r);
        p[i] = plast_rng_u32(r) & 1u ? v : -v;
    }
}

/* ---- finite differences ---- */

Test(layers_fd, dense)
{
    lt_check_single(&plast_layer_dense, "units = 5\n", lt_shape1(7), 3, lt_fill_uniform);
}

Test(layers_fd, dense_without_bias)
{
    lt_check_single(&plast_layer_dense, "units = 3\nbias = false\n", lt_shape1(17), 5,
                    lt_fill_uniform);
}

Test(layers_fd, dense_on_image_shaped_input)
{
    lt_check_single(&plast_layer_dense, "units = 4\n", lt_shape3(2, 3, 5), 3, lt_fill_uniform);
}

Test(layers_fd, relu)
{
    lt_check_single(&plast_layer_relu, "", lt_shape1(13), 3, fill_away_from_zero);
}

Test(layers_fd, tanh)
{
    lt_check_single(&plast_layer_tanh, "", lt_shape1(13), 3, lt_fill_uniform);
}

Test(layers_fd, sigmoid)
{
    lt_check_single(&plast_layer_sigmoid, "", lt_shape3(3, 1, 5), 3, lt_fill_uniform);
}

Test(layers_fd, flatten)
{
    lt_check_single(&plast_layer_flatten, "", lt_shape3(2, 3, 5), 3, lt_fill_uniform);
}

Test(layers_fd, dense_tanh_dense_stack)
{
    lt_net t;
    plast_shape in = lt_shape3(1, 3, 3);
    lt_net_init(&t, 5, in);
    lt_net_add(&t, &plast_layer_dense, "units = 7\n", 3);
    lt_net_add(&t, &plast_layer_tanh, "", 3);
    lt_net_add(&t, &plast_layer_dense, "units = 3\n", 3);
    lt_check_net(&t, lt_fill_uniform, 5);
    lt_net_fini(&t);
}

Test(layers_fd, flatten_dense_relu)
{
    lt_net t;
    plast_shape in = lt_shape3(2, 2, 3);
    lt_net_init(&t, 4, in);
    lt_net_add(&t, &plast_layer_flatten, "", 1);
    lt_net_add(&t, &plast_layer_dense, "units = 9\n", 1);
    lt_net_add(&t, &plast_layer_relu, "", 1);
    lt_check_net(&t, fill_away_from_zero, 5);
    /* the check is valid only if no pre-activation of the relu lies within
     * reach of a step (|dx| <= h, |dw| <= h): none within 10 h of zero */
    lt_net_forward(&t);
    const plast_tensor *h = &t.out[1];
    for (size_t i = 0; i < h->size; i++)
        cr_assert(gt(dbl, fabs(h->data[i]), 10 * FD_H), "pre-activation %zu too near 0", i);
    lt_net_fini(&t);
}

/* ---- backward contract ---- */

/* One dense layer with input, output, upstream gradient; forward done. */
typedef struct dense_fixture {
    lt_net t;
    plast_real *r;
} dense_fixture;

static void dense_setup(dense_fixture *f, const char *ini)
{
    lt_net_init(&f->t, 4, lt_shape1(9));
    lt_net_add(&f->t, &plast_layer_dense, ini, 21);
    plast_rng rng;
    plast_rng_stream(&rng, 3, PLAST_STREAM_DATA, 1);
    f->t.x = lt_tensor(f->t.mem, 4, lt_shape1(9));
    lt_fill_range(f->t.x.data, f->t.x.size, &rng, -1.0f, 1.0f);
    size_t ny = 4 * (size_t)f->t.l[0].out.dim[0];
    f->r = malloc(ny * sizeof *f->r);
    cr_assert(f->r != NULL);
    lt_fill_range(f->r, ny, &rng, -1.0f, 1.0f);
    lt_net_forward(&f->t);
}

static void dense_teardown(dense_fixture *f)
{
    free(f->r);
    lt_net_fini(&f->t);
}

Test(layers, backward_adds_parameter_gradients)
{
    dense_fixture f;
    dense_setup(&f, "units = 6\n");
    plast_layer *l = &f.t.l[0];
    lt_net_backward(&f.t, f.r, NULL);
    plast_real *once[2];
    for (int p = 0; p < 2; p++)
        once[p] = lt_copy(l->param[p].g, l->param[p].count);
    lt_net_backward(&f.t, f.r, NULL);
    for (int p = 0; p < 2; p++) {
        int nonzero = 0;
        for (size_t i = 0; i < l->param[p].count; i++) {
            cr_assert(eq(flt, l->param[p].g[i], 2.0f * once[p][i]), "%s[%zu]",
                      l->param[p].name, i);
            nonzero += once[p][i] != 0.0f;
        }
        cr_assert(gt(int, nonzero, 0), "%s: gradient all zero", l->param[p].name);
        free(once[p]);
    }
    dense_teardown(&f);
}

Test(layers, frozen_layer_adds_nothing_but_still_gives_dx)
{
    dense_fixture f;
    dense_setup(&f, "units = 5\n");
    plast_layer *l = &f.t.l[0];
    plast_real dx_live[4 * 9], dx_frozen[4 * 9];
    lt_net_backward(&f.t, f.r, dx_live);
    for (int p = 0; p < l->nparams; p++)
        for (size_t i = 0; i < l->param[p].count; i++)
            l->param[p].g[i] = 0.25f; /* sentinel */
    l->frozen = 1;
    lt_net_backward(&f.t, f.r, dx_frozen);
    for (int p = 0; p < l->nparams; p++)
        for (size_t i = 0; i < l->param[p].count; i++)
            cr_assert(eq(flt, l->param[p].g[i], 0.25f), "%s[%zu] changed", l->param[p].name,
                      i);
    cr_assert(eq(int, memcmp(dx_live, dx_frozen, sizeof dx_live), 0));
    dense_teardown(&f);
}

Test(layers, null_dx_gives_the_same_parameter_gradients)
{
    dense_fixture f;
    dense_setup(&f, "units = 5\n");
    plast_layer *l = &f.t.l[0];
    plast_real dx[4 * 9];
    lt_net_backward(&f.t, f.r, dx);
    plast_real *with[2];
    for (int p = 0; p < 2; p++)
        with[p] = lt_copy(l->param[p].g, l->param[p].count);
    lt_zero_grads(l);

    plast_err e = {0};
    plast_tensor dy = lt_tensor(f.t.mem, 4, l->out);
    memcpy(dy.data, f.r, dy.size * sizeof *f.r);
    cr_assert(eq(int, l->ops->backward(l, &f.t.x, &f.t.out[0], &dy, NULL, &f.t.ctx, &e), 0),
              "%s", e.msg);
    plast_tensor_free(&dy);
    for (int p = 0; p < 2; p++) {
        cr_assert(eq(int, memcmp(with[p], l->param[p].g, l->param[p].count * sizeof(float)), 0),
                  "%s differs", l->param[p].name);
        free(with[p]);
    }
    dense_teardown(&f);
}

/* Activations in place (y == x, dx == dy) give the bits of out-of-place. */
static void check_inplace(const plast_layer_ops *ops)
{
    cr_assert(ne(uint, ops->flags & PLAST_LAYER_INPLACE, 0u));
    cr_assert(ne(uint, ops->flags & PLAST_LAYER_ACTIVATION, 0u));
    lt_net t;
    lt_net_init(&t, 3, lt_shape1(11));
    lt_net_add(&t, ops, "", 1);
    plast_layer *l = &t.l[0];
    plast_rng rng;
    plast_rng_stream(&rng, 8, PLAST_STREAM_DATA, 2);
    plast_tensor x = lt_tensor(t.mem, 3, l->in), y = lt_tensor(t.mem, 3, l->out);
    plast_tensor dy = lt_tensor(t.mem, 3, l->out), dx = lt_tensor(t.mem, 3, l->in);
    lt_fill_range(x.data, x.size, &rng, -3.0f, 3.0f);
    lt_fill_range(dy.data, dy.size, &rng, -1.0f, 1.0f);
    plast_err e = {0};
    cr_assert(eq(int, ops->forward(l, &x, &y, &t.ctx, &e), 0));
    cr_assert(eq(int, ops->backward(l, &x, &y, &dy, &dx, &t.ctx, &e), 0));

    plast_real *xy = lt_copy(x.data, x.size), *g = lt_copy(dy.data, dy.size);
    plast_tensor xy_t = plast_tensor_view(xy, 3, &l->in), g_t = plast_tensor_view(g, 3, &l->in);
    cr_assert(eq(int, ops->forward(l, &xy_t, &xy_t, &t.ctx, &e), 0));
    cr_assert(eq(int, memcmp(xy, y.data, y.size * sizeof *xy), 0), "%s forward", ops->name);
    /* backward reads only y: pass a garbage x to prove it */
    plast_tensor junk = lt_tensor(t.mem, 3, l->in);
    for (size_t i = 0; i < junk.size; i++)
        junk.data[i] = NAN;
    cr_assert(eq(int, ops->backward(l, &junk, &xy_t, &g_t, &g_t, &t.ctx, &e), 0));
    cr_assert(eq(int, memcmp(g, dx.data, dx.size * sizeof *g), 0), "%s backward", ops->name);
    free(xy);
    free(g);
    plast_tensor_free(&junk);
    plast_tensor_free(&x);
    plast_tensor_free(&y);
    plast_tensor_free(&dy);
    plast_tensor_free(&dx);
    lt_net_fini(&t);
}

Test(layers, relu_in_place) { check_inplace(&plast_layer_relu); }
Test(layers, tanh_in_place) { check_inplace(&plast_layer_tanh); }
Test(layers, sigmoid_in_place) { check_inplace(&plast_layer_sigmoid); }

Test(layers, activation_values)
{
    static const struct {
        const plast_layer_ops *ops;
        float x, y;
    } cases[] = {
        {&plast_layer_relu, -2.0f, 0.0f},   {&plast_layer_relu, 1.5f, 1.5f},
        {&plast_layer_tanh, 0.0f, 0.0f},    {&plast_layer_tanh, 0.5f, 0.46211715726f},
        {&plast_layer_sigmoid, 0.0f, 0.5f}, {&plast_layer_sigmoid, 2.0f, 0.880797077978f},
        {&plast_layer_sigmoid, -200.0f, 0.0f}, {&plast_layer_sigmoid, 200.0f, 1.0f},
    };
    plast_ctx ctx = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        plast_layer l;
        plast_err e = {0};
        cr_assert(eq(int, lt_try(&l, cases[i].ops, "", lt_shape1(1), &e), 0));
        plast_real x = cases[i].x, y = NAN;
        plast_tensor xt = plast_tensor_view(&x, 1, &l.in), yt = plast_tensor_view(&y, 1, &l.out);
        cr_assert(eq(int, l.ops->forward(&l, &xt, &yt, &ctx, &e), 0));
        cr_assert(ieee_ulp_eq(flt, y, cases[i].y, 4), "%s(%g) = %g", l.ops->name,
                  (double)cases[i].x, (double)y);
    }
}

/* ---- flatten: a view both ways ---- */

Test(layers, flatten_is_a_view)
{
    plast_layer l;
    plast_err e = {0};
    plast_ctx ctx = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_flatten, "", lt_shape3(2, 3, 4), &e), 0));
    cr_assert(eq(int, l.out.ndim, 1));
    cr_assert(eq(int, l.out.dim[0], 24));
    cr_assert(eq(int, l.nparams, 0));
    cr_assert(ne(uint, l.ops->flags & PLAST_LAYER_VIEW, 0u));
    static plast_real data[5 * 24], grad[5 * 24];
    plast_tensor x = plast_tensor_view(data, 5, &l.in), y = {0};
    cr_assert(eq(int, l.ops->forward(&l, &x, &y, &ctx, &e), 0));
    cr_assert(y.data == data);
    cr_assert(y.owner == NULL);
    cr_assert(eq(int, y.ndim, 2));
    cr_assert(eq(int, y.dim[0], 5));
    cr_assert(eq(int, y.dim[1], 24));
    cr_assert(eq(sz, y.size, 120));
    plast_tensor dy = plast_tensor_view(grad, 5, &l.out), dx = {0};
    cr_assert(eq(int, l.ops->backward(&l, &x, &y, &dy, &dx, &ctx, &e), 0));
    cr_assert(dx.data == grad);
    cr_assert(dx.owner == NULL);
    cr_assert(eq(int, dx.ndim, 4));
    cr_assert(eq(int, dx.dim[0], 5));
    cr_assert(eq(int, dx.dim[1], 2));
    cr_assert(eq(int, dx.dim[2], 3));
    cr_assert(eq(int, dx.dim[3], 4));
    cr_assert(eq(sz, dx.size, 120));
}

/* ---- create, settings, flops, init ---- */

Test(layers, dense_declares_shape_and_parameters)
{
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_dense, "units = 10\n", lt_shape3(1, 28, 28), &e),
                 0), "%s", e.msg);
    cr_assert(eq(int, l.out.ndim, 1));
    cr_assert(eq(int, l.out.dim[0], 10));
    cr_assert(eq(int, l.nparams, 2));
    cr_assert(eq(str, (char *)l.param[0].name, "weight"));
    cr_assert(eq(sz, l.param[0].count, 7840));
    cr_assert(eq(int, l.param[0].fan_in, 784));
    cr_assert(eq(str, (char *)l.param[1].name, "bias"));
    cr_assert(eq(sz, l.param[1].count, 10));
    cr_assert(eq(int, l.param[1].fan_in, 784));
    cr_assert(eq(u64, l.ops->flops(&l, 1), 2 * 7840));
    cr_assert(eq(u64, l.ops->flops(&l, 3), 6 * 7840));
    cr_assert(eq(int, (int)l.ops->flags, 0));

    cr_assert(eq(int, lt_try(&l, &plast_layer_dense, "units = 4\nbias = no\n", lt_shape1(3), &e),
                 0), "%s", e.msg);
    cr_assert(eq(int, l.nparams, 1));
    cr_assert(eq(sz, l.param[0].count, 12));
}

static void expect_bad_units(const char *ini)
{
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_dense, ini, lt_shape1(3), &e), PLAST_E_PARSE),
              "accepted \"%s\"", ini);
    cr_assert(strstr(e.msg, "units") != NULL, "message: %s", e.msg);
}

Test(layers, dense_settings_are_checked)
{
    expect_bad_units("");
    expect_bad_units("units = 0\n");
    expect_bad_units("units = 10000001\n");
    expect_bad_units("units = 2.5\n");
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, lt_try(&l, &plast_layer_dense, "units = 10000000\n", lt_shape1(3), &e), 0),
              "%s", e.msg);
}

Test(layers, activations_keep_the_shape)
{
    const plast_layer_ops *acts[] = {&plast_layer_relu, &plast_layer_tanh, &plast_layer_sigmoid};
    for (int i = 0; i < 3; i++) {
        plast_layer l;
        plast_err e = {0};
        cr_assert(eq(int, lt_try(&l, acts[i], "", lt_shape3(4, 5, 6), &e), 0));
        cr_assert(plast_shape_equal(&l.out, &l.in), "%s", acts[i]->name);
        cr_assert(eq(int, l.nparams, 0));
    }
}

Test(layers, default_init_draws_weights_then_bias)
{
    plast_layer l;
    lt_make(&l, &plast_layer_dense, "units = 3\n", lt_shape1(4), 77);
    plast_rng r;
    plast_rng_stream(&r, 77, PLAST_STREAM_INIT, 0);
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < l.param[p].count; i++) {
            float want = plast_rng_uniform(&r, -0.5f, 0.5f); /* 1/sqrt(4) */
            cr_assert(eq(flt, l.param[p].w[i], want), "%s[%zu]", l.param[p].name, i);
            cr_assert(le(flt, fabsf(l.param[p].w[i]), 0.5f));
        }
    lt_free(&l);
}

Test(layers, default_init_bound_follows_fan_in)
{
    plast_layer l;
    lt_make(&l, &plast_layer_dense, "units = 50\n", lt_shape1(100), 5);
    float lo = 1.0f, hi = -1.0f;
    for (size_t i = 0; i < l.param[0].count; i++) {
        lo = fminf(lo, l.param[0].w[i]);
        hi = fmaxf(hi, l.param[0].w[i]);
    }
    cr_assert(ge(flt, lo, -0.1f));
    cr_assert(lt(flt, hi, 0.1f));
    cr_assert(lt(flt, lo, -0.09f), "5000 draws should reach near -0.1");
    cr_assert(gt(flt, hi, 0.09f), "5000 draws should reach near 0.1");
    lt_free(&l);
}

Test(layers, builtin_list)
{
    static const char *const names[] = {"dense", "relu", "tanh", "sigmoid", "flatten", "add",
                                        "batchnorm", "conv2d", "maxpool", "avgpool", "gap",
                                        "rnn", "dropout"};
    const int n = (int)(sizeof names / sizeof names[0]);
    for (int i = 0; i < n; i++) {
        cr_assert(plast_builtin_layers[i] != NULL);
        cr_assert(eq(str, (char *)plast_builtin_layers[i]->name, (char *)names[i]));
        cr_assert(eq(u32, plast_builtin_layers[i]->size, (uint32_t)sizeof(plast_layer_ops)));
        plast_err e = {0};
        cr_assert(eq(int, plast_schema_check(plast_builtin_layers[i]->settings, names[i], &e), 0),
                  "%s: %s", names[i], e.msg);
    }
    cr_assert(plast_builtin_layers[n] == NULL);
}
