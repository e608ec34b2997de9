/* test_layers.c - built-in layers: shapes, settings, initialisation, and
 * backward against central finite differences.
 *
 * The finite differences run the fp32 forward and sum the scalar loss
 * L = sum(y * r) (r random, fixed) in double; h = 1e-3. */
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
#include "builtin.h"

#define FD_H 1e-3f
#define FD_REL 2e-2
#define FD_MIN_G 1e-3
#define FD_MIN_COS 0.999
#define MAX_LAYERS 3

/* ---- helpers ---- */

static plast_shape shape1(int a)
{
    return (plast_shape){1, {a, 0, 0}};
}

static plast_shape shape3(int a, int b, int c)
{
    return (plast_shape){3, {a, b, c}};
}

/* Parse "[layer.t]\n" + ini against ops' schema. */
static int args_for(plast_args **a, const plast_layer_ops *ops, const char *ini, plast_err *e)
{
    char text[512];
    snprintf(text, sizeof text, "[layer.t]\n%s", ini);
    plast_config *cfg;
    int rc = plast_config_parse_string(&cfg, "test.ini", text, e);
    if (rc)
        return rc;
    rc = plast_args_parse(a, cfg, "layer.t", ops->settings, NULL, NULL, e);
    plast_config_destroy(cfg);
    return rc;
}

/* Create a layer of `ops` on input shape `in`; returns create()'s status. */
static int layer_try(plast_layer *l, const plast_layer_ops *ops, const char *ini,
                     plast_shape in, plast_err *e)
{
    memset(l, 0, sizeof *l);
    l->ops = ops;
    snprintf(l->name, sizeof l->name, "t");
    l->in = in;
    plast_args *a;
    int rc = args_for(&a, ops, ini, e);
    if (rc)
        return rc;
    rc = ops->create(l, a, e);
    plast_args_destroy(a);
    return rc;
}

/* Create, map parameters to fresh arrays (gradients zeroed), init. */
static void layer_make(plast_layer *l, const plast_layer_ops *ops, const char *ini,
                       plast_shape in, uint64_t seed)
{
    plast_err e = {0};
    int rc = layer_try(l, ops, ini, in, &e);
    cr_assert(eq(int, rc, 0), "create %s: %s", ops->name, e.msg);
    for (int i = 0; i < l->nparams; i++) {
        size_t n = l->param[i].count ? l->param[i].count : 1;
        l->param[i].w = malloc(n * sizeof(plast_real));
        l->param[i].g = calloc(n, sizeof(plast_real));
        cr_assert(l->param[i].w && l->param[i].g);
    }
    plast_rng r;
    plast_rng_stream(&r, seed, PLAST_STREAM_INIT, 0);
    plast_layer_default_init(l, &r);
}

static void layer_free(plast_layer *l)
{
    for (int i = 0; i < l->nparams; i++) {
        free(l->param[i].w);
        free(l->param[i].g);
    }
    if (l->ops->destroy)
        l->ops->destroy(l);
}

static void zero_grads(plast_layer *l)
{
    for (int i = 0; i < l->nparams; i++)
        memset(l->param[i].g, 0, l->param[i].count * sizeof(plast_real));
}

static plast_tensor tensor_new(plast_mem *m, int batch, plast_shape s)
{
    plast_tensor t;
    plast_err e = {0};
    cr_assert(eq(int, plast_tensor_alloc(&t, m, PLAST_MEM_ACTIVATIONS, batch, &s, &e), 0),
              "%s", e.msg);
    return t;
}

static void fill_uniform(plast_real *p, size_t n, plast_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = plast_rng_uniform(r, lo, hi);
}

/* Values of magnitude in [0.05, 1.05) with random sign: away from relu's
 * kink, so a step of h never crosses it. */
static void fill_away_from_zero(plast_real *p, size_t n, plast_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        float v = 0.05f + plast_rng_float(r);
        p[i] = plast_rng_u32(r) & 1u ? v : -v;
    }
}

/* A stack of layers run forward and backward on one batch. */
typedef struct net {
    int n, batch;
    plast_layer l[MAX_LAYERS];
    plast_mem *mem;
    plast_ctx ctx;
    plast_tensor x, out[MAX_LAYERS];
} net;

static void net_init(net *t, int batch)
{
    memset(t, 0, sizeof *t);
    t->batch = batch;
    plast_err e = {0};
    cr_assert(eq(int, plast_mem_create(&t->mem, &e), 0));
    t->ctx = (plast_ctx){.mem = t->mem, .train = 1, .threads = 1};
}

static void net_add(net *t, const plast_layer_ops *ops, const char *ini, uint64_t seed)
{
    cr_assert(t->n < MAX_LAYERS);
    plast_shape in = t->n ? t->l[t->n - 1].out : t->l[0].in;
    layer_make(&t->l[t->n], ops, ini, in, seed + (uint64_t)t->n);
    t->n++;
}

static void net_input(net *t, plast_shape in)
{
    t->l[0].in = in; /* read by the first net_add */
}

static void net_free_outputs(net *t)
{
    for (int i = 0; i < t->n; i++)
        plast_tensor_free(&t->out[i]); /* views have no owner: nothing freed */
}

static void net_fini(net *t)
{
    net_free_outputs(t);
    plast_tensor_free(&t->x);
    for (int i = 0; i < t->n; i++)
        layer_free(&t->l[i]);
    cr_assert(eq(sz, plast_mem_live_total(t->mem), 0), "leaked tensors");
    plast_mem_destroy(t->mem);
}

static const plast_tensor *net_forward(net *t)
{
    plast_err e = {0};
    net_free_outputs(t);
    const plast_tensor *in = &t->x;
    for (int i = 0; i < t->n; i++) {
        plast_layer *l = &t->l[i];
        if (!(l->ops->flags & PLAST_LAYER_VIEW))
            t->out[i] = tensor_new(t->mem, t->batch, l->out);
        cr_assert(eq(int, l->ops->forward(l, in, &t->out[i], &t->ctx, &e), 0), "%s", e.msg);
        in = &t->out[i];
    }
    return in;
}

/* Backward of the whole stack from dL/dy = r; dL/dx into dx if not NULL.
 * Every layer gets a fresh dx buffer (views take their dy's data). */
static void net_backward(net *t, const plast_real *r, plast_real *dx)
{
    plast_err e = {0};
    plast_tensor dy = tensor_new(t->mem, t->batch, t->l[t->n - 1].out);
    memcpy(dy.data, r, dy.size * sizeof *r);
    for (int i = t->n - 1; i >= 0; i--) {
        plast_layer *l = &t->l[i];
        const plast_tensor *x = i ? &t->out[i - 1] : &t->x;
        plast_tensor g = {0};
        int view = (l->ops->flags & PLAST_LAYER_VIEW) != 0;
        if (!view)
            g = tensor_new(t->mem, t->batch, l->in);
        cr_assert(eq(int, l->ops->backward(l, x, &t->out[i], &dy, &g, &t->ctx, &e), 0), "%s",
                  e.msg);
        if (view) { /* g borrows dy's buffer: hand it over */
            g.owner = dy.owner;
            dy.owner = NULL;
        }
        plast_tensor_free(&dy);
        dy = g;
    }
    if (dx)
        memcpy(dx, dy.data, dy.size * sizeof *dx);
    plast_tensor_free(&dy);
}

static double net_loss(net *t, const plast_real *r)
{
    const plast_tensor *y = net_forward(t);
    double s = 0.0;
    for (size_t i = 0; i < y->size; i++)
        s += (double)y->data[i] * r[i];
    return s;
}

/* Numeric dL/dv[i] for every element of v (a weight or input array). */
static void numeric_grad(net *t, const plast_real *r, plast_real *v, size_t n, double *num)
{
    for (size_t i = 0; i < n; i++) {
        plast_real keep = v[i];
        v[i] = keep + FD_H;
        double up = net_loss(t, r);
        double step = (double)v[i];
        v[i] = keep - FD_H;
        double down = net_loss(t, r);
        step -= (double)v[i]; /* the step fp32 really took */
        v[i] = keep;
        num[i] = (up - down) / step;
    }
}

static void compare_grads(const char *what, const plast_real *ana, const double *num, size_t n)
{
    double dot = 0.0, na = 0.0, nn = 0.0;
    for (size_t i = 0; i < n; i++) {
        double a = ana[i], b = num[i];
        dot += a * b;
        na += a * a;
        nn += b * b;
        if (fabs(b) > FD_MIN_G || fabs(a) > FD_MIN_G) {
            double rel = fabs(a - b) / fmax(fabs(a), fabs(b));
            cr_assert(lt(dbl, rel, FD_REL), "%s[%zu]: analytic %g, numeric %g", what, i, a, b);
        }
    }
    cr_assert(gt(dbl, nn, 1e-12), "%s: numeric gradient is all zero", what);
    double cosine = dot / sqrt(na * nn);
    cr_assert(gt(dbl, cosine, FD_MIN_COS), "%s: cosine %g", what, cosine);
}

/* Check every parameter gradient and the input gradient of the net. */
static void check_net(net *t, plast_shape in, int relu_safe, uint64_t seed)
{
    plast_rng rng;
    plast_rng_stream(&rng, seed, PLAST_STREAM_DATA, 0);
    t->x = tensor_new(t->mem, t->batch, in);
    if (relu_safe)
        fill_away_from_zero(t->x.data, t->x.size, &rng);
    else
        fill_uniform(t->x.data, t->x.size, &rng, -1.0f, 1.0f);
    size_t ny = (size_t)t->batch * plast_shape_size(&t->l[t->n - 1].out);
    plast_real *r = malloc(ny * sizeof *r), *dx = malloc(t->x.size * sizeof *dx);
    cr_assert(r && dx);
    fill_uniform(r, ny, &rng, -1.0f, 1.0f);

    net_forward(t);
    net_backward(t, r, dx);
    for (int i = 0; i < t->n; i++)
        for (int p = 0; p < t->l[i].nparams; p++) {
            plast_param *pp = &t->l[i].param[p];
            double *num = malloc(pp->count * sizeof *num);
            cr_assert(num != NULL);
            numeric_grad(t, r, pp->w, pp->count, num);
            char what[64];
            snprintf(what, sizeof what, "layer %d (%s) %s", i, t->l[i].ops->name, pp->name);
            compare_grads(what, pp->g, num, pp->count);
            free(num);
        }
    double *num = malloc(t->x.size * sizeof *num);
    cr_assert(num != NULL);
    numeric_grad(t, r, t->x.data, t->x.size, num);
    compare_grads("input", dx, num, t->x.size);
    free(num);
    free(r);
    free(dx);
}

static void check_single(const plast_layer_ops *ops, const char *ini, plast_shape in,
                         int batch, int relu_safe)
{
    net t;
    net_init(&t, batch);
    net_input(&t, in);
    net_add(&t, ops, ini, 7);
    check_net(&t, in, relu_safe, 11);
    net_fini(&t);
}

/* ---- finite differences ---- */

Test(layers_fd, dense)
{
    check_single(&plast_layer_dense, "units = 5\n", shape1(7), 3, 0);
}

Test(layers_fd, dense_without_bias)
{
    check_single(&plast_layer_dense, "units = 3\nbias = false\n", shape1(17), 5, 0);
}

Test(layers_fd, dense_on_image_shaped_input)
{
    check_single(&plast_layer_dense, "units = 4\n", shape3(2, 3, 5), 3, 0);
}

Test(layers_fd, relu)
{
    check_single(&plast_layer_relu, "", shape1(13), 3, 1);
}

Test(layers_fd, tanh)
{
    check_single(&plast_layer_tanh, "", shape1(13), 3, 0);
}

Test(layers_fd, sigmoid)
{
    check_single(&plast_layer_sigmoid, "", shape3(3, 1, 5), 3, 0);
}

Test(layers_fd, flatten)
{
    check_single(&plast_layer_flatten, "", shape3(2, 3, 5), 3, 0);
}

Test(layers_fd, dense_tanh_dense_stack)
{
    net t;
    plast_shape in = shape3(1, 3, 3);
    net_init(&t, 5);
    net_input(&t, in);
    net_add(&t, &plast_layer_dense, "units = 7\n", 3);
    net_add(&t, &plast_layer_tanh, "", 3);
    net_add(&t, &plast_layer_dense, "units = 3\n", 3);
    check_net(&t, in, 0, 5);
    net_fini(&t);
}

Test(layers_fd, flatten_dense_relu)
{
    net t;
    plast_shape in = shape3(2, 2, 3);
    net_init(&t, 4);
    net_input(&t, in);
    net_add(&t, &plast_layer_flatten, "", 1);
    net_add(&t, &plast_layer_dense, "units = 9\n", 1);
    net_add(&t, &plast_layer_relu, "", 1);
    check_net(&t, in, 1, 5);
    /* the check is valid only if no pre-activation of the relu lies within
     * reach of a step (|dx| <= h, |dw| <= h): none within 10 h of zero */
    net_forward(&t);
    const plast_tensor *h = &t.out[1];
    for (size_t i = 0; i < h->size; i++)
        cr_assert(gt(dbl, fabs(h->data[i]), 10 * FD_H), "pre-activation %zu too near 0", i);
    net_fini(&t);
}

/* ---- backward contract ---- */

/* One dense layer with input, output, upstream gradient; forward done. */
typedef struct dense_fixture {
    net t;
    plast_real *r;
} dense_fixture;

static void dense_setup(dense_fixture *f, const char *ini)
{
    net_init(&f->t, 4);
    net_input(&f->t, shape1(9));
    net_add(&f->t, &plast_layer_dense, ini, 21);
    plast_rng rng;
    plast_rng_stream(&rng, 3, PLAST_STREAM_DATA, 1);
    f->t.x = tensor_new(f->t.mem, 4, shape1(9));
    fill_uniform(f->t.x.data, f->t.x.size, &rng, -1.0f, 1.0f);
    size_t ny = 4 * (size_t)f->t.l[0].out.dim[0];
    f->r = malloc(ny * sizeof *f->r);
    cr_assert(f->r != NULL);
    fill_uniform(f->r, ny, &rng, -1.0f, 1.0f);
    net_forward(&f->t);
}

static void dense_teardown(dense_fixture *f)
{
    free(f->r);
    net_fini(&f->t);
}

static plast_real *copy_of(const plast_real *p, size_t n)
{
    plast_real *c = malloc(n * sizeof *c);
    cr_assert(c != NULL);
    memcpy(c, p, n * sizeof *c);
    return c;
}

Test(layers, backward_adds_parameter_gradients)
{
    dense_fixture f;
    dense_setup(&f, "units = 6\n");
    plast_layer *l = &f.t.l[0];
    net_backward(&f.t, f.r, NULL);
    plast_real *once[2];
    for (int p = 0; p < 2; p++)
        once[p] = copy_of(l->param[p].g, l->param[p].count);
    net_backward(&f.t, f.r, NULL);
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
    net_backward(&f.t, f.r, dx_live);
    for (int p = 0; p < l->nparams; p++)
        for (size_t i = 0; i < l->param[p].count; i++)
            l->param[p].g[i] = 0.25f; /* sentinel */
    l->frozen = 1;
    net_backward(&f.t, f.r, dx_frozen);
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
    net_backward(&f.t, f.r, dx);
    plast_real *with[2];
    for (int p = 0; p < 2; p++)
        with[p] = copy_of(l->param[p].g, l->param[p].count);
    zero_grads(l);

    plast_err e = {0};
    plast_tensor dy = tensor_new(f.t.mem, 4, l->out);
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
    net t;
    net_init(&t, 3);
    net_input(&t, shape1(11));
    net_add(&t, ops, "", 1);
    plast_layer *l = &t.l[0];
    plast_rng rng;
    plast_rng_stream(&rng, 8, PLAST_STREAM_DATA, 2);
    plast_tensor x = tensor_new(t.mem, 3, l->in), y = tensor_new(t.mem, 3, l->out);
    plast_tensor dy = tensor_new(t.mem, 3, l->out), dx = tensor_new(t.mem, 3, l->in);
    fill_uniform(x.data, x.size, &rng, -3.0f, 3.0f);
    fill_uniform(dy.data, dy.size, &rng, -1.0f, 1.0f);
    plast_err e = {0};
    cr_assert(eq(int, ops->forward(l, &x, &y, &t.ctx, &e), 0));
    cr_assert(eq(int, ops->backward(l, &x, &y, &dy, &dx, &t.ctx, &e), 0));

    plast_real *xy = copy_of(x.data, x.size), *g = copy_of(dy.data, dy.size);
    plast_tensor xy_t = plast_tensor_view(xy, 3, &l->in), g_t = plast_tensor_view(g, 3, &l->in);
    cr_assert(eq(int, ops->forward(l, &xy_t, &xy_t, &t.ctx, &e), 0));
    cr_assert(eq(int, memcmp(xy, y.data, y.size * sizeof *xy), 0), "%s forward", ops->name);
    /* backward reads only y: pass a garbage x to prove it */
    plast_tensor junk = tensor_new(t.mem, 3, l->in);
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
    net_fini(&t);
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
        cr_assert(eq(int, layer_try(&l, cases[i].ops, "", shape1(1), &e), 0));
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
    cr_assert(eq(int, layer_try(&l, &plast_layer_flatten, "", shape3(2, 3, 4), &e), 0));
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
    cr_assert(eq(int, layer_try(&l, &plast_layer_dense, "units = 10\n", shape3(1, 28, 28), &e),
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

    cr_assert(eq(int, layer_try(&l, &plast_layer_dense, "units = 4\nbias = no\n", shape1(3), &e),
                 0), "%s", e.msg);
    cr_assert(eq(int, l.nparams, 1));
    cr_assert(eq(sz, l.param[0].count, 12));
}

static void expect_bad_units(const char *ini)
{
    plast_layer l;
    plast_err e = {0};
    cr_assert(eq(int, layer_try(&l, &plast_layer_dense, ini, shape1(3), &e), PLAST_E_PARSE),
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
    cr_assert(eq(int, layer_try(&l, &plast_layer_dense, "units = 10000000\n", shape1(3), &e), 0),
              "%s", e.msg);
}

Test(layers, activations_keep_the_shape)
{
    const plast_layer_ops *acts[] = {&plast_layer_relu, &plast_layer_tanh, &plast_layer_sigmoid};
    for (int i = 0; i < 3; i++) {
        plast_layer l;
        plast_err e = {0};
        cr_assert(eq(int, layer_try(&l, acts[i], "", shape3(4, 5, 6), &e), 0));
        cr_assert(plast_shape_equal(&l.out, &l.in), "%s", acts[i]->name);
        cr_assert(eq(int, l.nparams, 0));
    }
}

Test(layers, default_init_draws_weights_then_bias)
{
    plast_layer l;
    layer_make(&l, &plast_layer_dense, "units = 3\n", shape1(4), 77);
    plast_rng r;
    plast_rng_stream(&r, 77, PLAST_STREAM_INIT, 0);
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < l.param[p].count; i++) {
            float want = plast_rng_uniform(&r, -0.5f, 0.5f); /* 1/sqrt(4) */
            cr_assert(eq(flt, l.param[p].w[i], want), "%s[%zu]", l.param[p].name, i);
            cr_assert(le(flt, fabsf(l.param[p].w[i]), 0.5f));
        }
    layer_free(&l);
}

Test(layers, default_init_bound_follows_fan_in)
{
    plast_layer l;
    layer_make(&l, &plast_layer_dense, "units = 50\n", shape1(100), 5);
    float lo = 1.0f, hi = -1.0f;
    for (size_t i = 0; i < l.param[0].count; i++) {
        lo = fminf(lo, l.param[0].w[i]);
        hi = fmaxf(hi, l.param[0].w[i]);
    }
    cr_assert(ge(flt, lo, -0.1f));
    cr_assert(lt(flt, hi, 0.1f));
    cr_assert(lt(flt, lo, -0.09f), "5000 draws should reach near -0.1");
    cr_assert(gt(flt, hi, 0.09f), "5000 draws should reach near 0.1");
    layer_free(&l);
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
