/* layertest.h - helpers for the layer suites (test_layers, test_conv,
 * test_pool, test_rnn, test_batchnorm): build a layer from its ops and INI
 * text, run small stacks forward and backward, and check backward against
 * central finite differences.
 *
 * The finite differences (ALGORITHMS.md §2) run the fp32 forward and sum
 * the scalar loss L = sum(y * r) (r random, fixed) in double; h = 1e-3;
 * relative error < 2e-2 where |g| > 1e-3 and gradient cosine > 0.999. */
#ifndef PLAST_LAYERTEST_H
#define PLAST_LAYERTEST_H

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

#define FD_H 1e-3f
#define FD_REL 2e-2
#define FD_MIN_G 1e-3
#define FD_MIN_COS 0.999
#define LT_MAX_LAYERS 4

static inline plast_shape lt_shape1(int a)
{
    return (plast_shape){1, {a, 0, 0}};
}

static inline plast_shape lt_shape3(int a, int b, int c)
{
    return (plast_shape){3, {a, b, c}};
}

/* Parse "[layer.t]\n" + ini against ops' schema. */
static inline int lt_args(plast_args **a, const plast_layer_ops *ops, const char *ini,
                          plast_err *e)
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

/* Create a layer of `ops` on input shape `in`; returns create()'s status.
 * On failure the layer holds nothing to free. */
static inline int lt_try(plast_layer *l, const plast_layer_ops *ops, const char *ini,
                         plast_shape in, plast_err *e)
{
    memset(l, 0, sizeof *l);
    l->ops = ops;
    snprintf(l->name, sizeof l->name, "t");
    l->in = in;
    plast_args *a;
    int rc = lt_args(&a, ops, ini, e);
    if (rc)
        return rc;
    rc = ops->create(l, a, e);
    plast_args_destroy(a);
    if (rc && ops->destroy)
        ops->destroy(l); /* as the model does */
    return rc;
}

/* Create, map parameters to fresh arrays (gradients zeroed), init from
 * stream (seed, INIT, 0) as the model does: the layer's own init if it has
 * one, else the default. */
static inline void lt_make(plast_layer *l, const plast_layer_ops *ops, const char *ini,
                           plast_shape in, uint64_t seed)
{
    plast_err e = {0};
    int rc = lt_try(l, ops, ini, in, &e);
    cr_assert(eq(int, rc, 0), "create %s: %s", ops->name, e.msg);
    for (int i = 0; i < l->nparams; i++) {
        size_t n = l->param[i].count ? l->param[i].count : 1;
        l->param[i].w = malloc(n * sizeof(plast_real));
        l->param[i].g = calloc(n, sizeof(plast_real));
        cr_assert(l->param[i].w && l->param[i].g);
    }
    plast_rng r;
    plast_rng_stream(&r, seed, PLAST_STREAM_INIT, 0);
    if (ops->init)
        ops->init(l, &r);
    else
        plast_layer_default_init(l, &r);
}

static inline void lt_free(plast_layer *l)
{
    for (int i = 0; i < l->nparams; i++) {
        free(l->param[i].w);
        free(l->param[i].g);
    }
    if (l->ops->destroy)
        l->ops->destroy(l);
}

static inline void lt_zero_grads(plast_layer *l)
{
    for (int i = 0; i < l->nparams; i++)
        memset(l->param[i].g, 0, l->param[i].count * sizeof(plast_real));
}

static inline plast_tensor lt_tensor(plast_mem *m, int batch, plast_shape s)
{
    plast_tensor t;
    plast_err e = {0};
    cr_assert(eq(int, plast_tensor_alloc(&t, m, PLAST_MEM_ACTIVATIONS, batch, &s, &e), 0),
              "%s", e.msg);
    return t;
}

static inline plast_real *lt_copy(const plast_real *p, size_t n)
{
    plast_real *c = malloc(n * sizeof *c);
    cr_assert(c != NULL);
    memcpy(c, p, n * sizeof *c);
    return c;
}

typedef void (*lt_fill_fn)(plast_real *p, size_t n, plast_rng *r);

/* U(lo, hi). */
static inline void lt_fill_range(plast_real *p, size_t n, plast_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = plast_rng_uniform(r, lo, hi);
}

/* U(-1, 1). */
static inline void lt_fill_uniform(plast_real *p, size_t n, plast_rng *r)
{
    lt_fill_range(p, n, r, -1.0f, 1.0f);
}

/* A shuffle of n values in [-1, 1) spaced 2/n apart: no two within reach
 * of a step h of each other (n < 500), so a max never changes hands. */
static inline void lt_fill_distinct(plast_real *p, size_t n, plast_rng *r)
{
    cr_assert(lt(sz, n, 500));
    for (size_t i = 0; i < n; i++)
        p[i] = -1.0f + 2.0f * (float)i / (float)n;
    for (size_t i = n; i > 1; i--) {
        size_t j = plast_rng_below(r, (uint32_t)i);
        plast_real t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
}

/* A stack of layers run forward and backward on one batch.  View layers
 * (flatten) get no output or dx buffer of their own. */
typedef struct lt_net {
    int n, batch;
    plast_layer l[LT_MAX_LAYERS];
    plast_shape in;
    plast_mem *mem;
    plast_ctx ctx;
    plast_tensor x, out[LT_MAX_LAYERS];
} lt_net;

static inline void lt_net_init(lt_net *t, int batch, plast_shape in)
{
    memset(t, 0, sizeof *t);
    t->batch = batch;
    t->in = in;
    plast_err e = {0};
    cr_assert(eq(int, plast_mem_create(&t->mem, &e), 0));
    t->ctx = (plast_ctx){.mem = t->mem, .train = 1, .threads = 1};
}

static inline void lt_net_add(lt_net *t, const plast_layer_ops *ops, const char *ini,
                              uint64_t seed)
{
    cr_assert(lt(int, t->n, LT_MAX_LAYERS));
    plast_shape in = t->n ? t->l[t->n - 1].out : t->in;
    lt_make(&t->l[t->n], ops, ini, in, seed + (uint64_t)t->n);
    t->l[t->n].index = t->n;
    t->n++;
}

static inline void lt_net_free_outputs(lt_net *t)
{
    for (int i = 0; i < t->n; i++)
        plast_tensor_free(&t->out[i]); /* views have no owner: nothing freed */
}

/* Frees the layers without release(): destroy() must free kept states. */
static inline void lt_net_fini(lt_net *t)
{
    lt_net_free_outputs(t);
    plast_tensor_free(&t->x);
    for (int i = 0; i < t->n; i++)
        lt_free(&t->l[i]);
    cr_assert(eq(sz, plast_mem_live_total(t->mem), 0), "leaked memory");
    plast_mem_destroy(t->mem);
}

static inline const plast_tensor *lt_net_forward(lt_net *t)
{
    plast_err e = {0};
    lt_net_free_outputs(t);
    const plast_tensor *in = &t->x;
    for (int i = 0; i < t->n; i++) {
        plast_layer *l = &t->l[i];
        if (l->ops->flags & PLAST_LAYER_VIEW) {
            t->out[i] = (plast_tensor){0};
        } else {
            t->out[i] = lt_tensor(t->mem, t->batch, l->out);
            for (size_t j = 0; j < t->out[i].size; j++)
                t->out[i].data[j] = NAN; /* forward must write every element */
        }
        cr_assert(eq(int, l->ops->forward(l, in, &t->out[i], &t->ctx, &e), 0), "%s", e.msg);
        in = &t->out[i];
    }
    return in;
}

/* Backward of the whole stack from dL/dy = r; dL/dx into dx if not NULL.
 * Each layer's dx starts as NaN, so an element it does not write shows
 * (views take their dy's data instead). */
static inline void lt_net_backward(lt_net *t, const plast_real *r, plast_real *dx)
{
    plast_err e = {0};
    plast_tensor dy = lt_tensor(t->mem, t->batch, t->l[t->n - 1].out);
    memcpy(dy.data, r, dy.size * sizeof *r);
    for (int i = t->n - 1; i >= 0; i--) {
        plast_layer *l = &t->l[i];
        const plast_tensor *x = i ? &t->out[i - 1] : &t->x;
        plast_tensor g = {0};
        int view = (l->ops->flags & PLAST_LAYER_VIEW) != 0;
        if (!view) {
            g = lt_tensor(t->mem, t->batch, l->in);
            for (size_t j = 0; j < g.size; j++)
                g.data[j] = NAN; /* backward must write every element */
        }
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

/* The scalar loss L = sum(y * r) of whatever `ctx` is. */
typedef double (*lt_loss_fn)(void *ctx, const plast_real *r);

static inline double lt_net_loss(lt_net *t, const plast_real *r)
{
    const plast_tensor *y = lt_net_forward(t);
    double s = 0.0;
    for (size_t i = 0; i < y->size; i++)
        s += (double)y->data[i] * r[i];
    return s;
}

/* Numeric dL/dv[i] for every element of v (a weight or input array),
 * L = loss(ctx, r). */
static inline void lt_numeric_diff(lt_loss_fn loss, void *ctx, const plast_real *r,
                                   plast_real *v, size_t n, double *num)
{
    for (size_t i = 0; i < n; i++) {
        plast_real keep = v[i];
        v[i] = keep + FD_H;
        double up = loss(ctx, r);
        double step = (double)v[i];
        v[i] = keep - FD_H;
        double down = loss(ctx, r);
        step -= (double)v[i]; /* the step fp32 really took */
        v[i] = keep;
        num[i] = (up - down) / step;
    }
}

static inline double lt_net_loss_fn(void *t, const plast_real *r)
{
    return lt_net_loss(t, r);
}

/* lt_numeric_diff with the net's fp32 forward. */
static inline void lt_numeric_grad(lt_net *t, const plast_real *r, plast_real *v, size_t n,
                                   double *num)
{
    lt_numeric_diff(lt_net_loss_fn, t, r, v, n, num);
}

static inline void lt_compare_grads(const char *what, const plast_real *ana, const double *num,
                                    size_t n)
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

/* Check every parameter gradient and the input gradient of the net, on an
 * input drawn by `fill`. */
static inline void lt_check_net(lt_net *t, lt_fill_fn fill, uint64_t seed)
{
    plast_rng rng;
    plast_rng_stream(&rng, seed, PLAST_STREAM_DATA, 0);
    t->x = lt_tensor(t->mem, t->batch, t->in);
    fill(t->x.data, t->x.size, &rng);
    size_t ny = (size_t)t->batch * plast_shape_size(&t->l[t->n - 1].out);
    plast_real *r = malloc(ny * sizeof *r), *dx = malloc(t->x.size * sizeof *dx);
    cr_assert(r && dx);
    lt_fill_uniform(r, ny, &rng);

    lt_net_forward(t);
    lt_net_backward(t, r, dx);
    for (int i = 0; i < t->n; i++)
        for (int p = 0; p < t->l[i].nparams; p++) {
            plast_param *pp = &t->l[i].param[p];
            double *num = malloc(pp->count * sizeof *num);
            cr_assert(num != NULL);
            lt_numeric_grad(t, r, pp->w, pp->count, num);
            char what[64];
            snprintf(what, sizeof what, "layer %d (%s) %s", i, t->l[i].ops->name, pp->name);
            lt_compare_grads(what, pp->g, num, pp->count);
            free(num);
        }
    double *num = malloc(t->x.size * sizeof *num);
    cr_assert(num != NULL);
    lt_numeric_grad(t, r, t->x.data, t->x.size, num);
    lt_compare_grads("input", dx, num, t->x.size);
    free(num);
    free(r);
    free(dx);
}

/* Finite differences of one layer on a batch. */
static inline void lt_check_single(const plast_layer_ops *ops, const char *ini, plast_shape in,
                                   int batch, lt_fill_fn fill)
{
    lt_net t;
    lt_net_init(&t, batch, in);
    lt_net_add(&t, ops, ini, 7);
    lt_check_net(&t, fill, 11);
    lt_net_fini(&t);
}

#endif
