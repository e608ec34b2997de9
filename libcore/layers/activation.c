/* activation.c - elementwise relu, tanh and sigmoid.
 *
 * Each works in place (y == x forward, dx == dy backward) and its
 * derivative is written in terms of the output y alone, so the input
 * buffer can be reused and a local rule can inject at the output:
 *   relu' = [y > 0],  tanh' = 1 - y^2,  sigmoid' = y (1 - y). */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include "plast/layer.h"
#include "builtin.h"
#include "simd.h"
#include "vtanh.h"

typedef plast_real (*act_fn)(plast_real x);

static const plast_setting no_settings[] = {
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static plast_real relu(plast_real x)
{
    return x < 0.0f ? 0.0f : x; /* NaN passes through, so divergence shows */
}

static plast_real relu_grad(plast_real y)
{
    return y > 0.0f ? 1.0f : 0.0f;
}

/* Not libm's tanhf: vtanh vectorises (within 3 ulp of tanh). */
static plast_real tanh_fn(plast_real x)
{
    return vtanh(x);
}

static plast_real tanh_grad(plast_real y)
{
    return 1.0f - y * y;
}

/* expf(-x) overflows to inf for x < -88, giving exactly 0: no NaN. */
static plast_real sigmoid(plast_real x)
{
    return 1.0f / (1.0f + expf(-x));
}

static plast_real sigmoid_grad(plast_real y)
{
    return y * (1.0f - y);
}

static int act_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    (void)a;
    (void)e;
    l->out = l->in;
    l->nparams = 0;
    return PLAST_OK;
}

static int check_same(const plast_layer *l, const plast_tensor *a, const plast_tensor *b,
                      const char *what, plast_err *e)
{
    if (a->size != b->size)
        return plast_err_set(e, PLAST_E_INVAL, "%s %s: %s: expected %zu values, found %zu",
                             l->ops->name, l->name, what, a->size, b->size);
    return PLAST_OK;
}

/* Always inlined into each type's wrapper, so f is a constant there and
 * the element loop calls no function through a pointer. */
__attribute__((always_inline)) static inline int
act_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y, act_fn f, plast_err *e)
{
    int rc = check_same(l, x, y, "output", e);
    if (rc)
        return rc;
    const plast_real *in = x->data;
    plast_real *out = y->data;
    PLAST_SIMD
    for (size_t i = 0; i < x->size; i++)
        out[i] = f(in[i]);
    return PLAST_OK;
}

/* dx = dy * f'(y); dx may be dy.  No parameters: nothing to do without dx. */
__attribute__((always_inline)) static inline int
act_backward(plast_layer *l, const plast_tensor *y, const plast_tensor *dy, plast_tensor *dx,
             act_fn grad, plast_err *e)
{
    if (!dx)
        return PLAST_OK;
    int rc = check_same(l, y, dy, "output gradient", e);
    if (rc == PLAST_OK)
        rc = check_same(l, y, dx, "input gradient", e);
    if (rc)
        return rc;
    const plast_real *out = y->data, *g = dy->data;
    plast_real *gin = dx->data;
    PLAST_SIMD
    for (size_t i = 0; i < y->size; i++) {
        /* f'(y) named first: written as g[i] * grad(out[i]), GCC turns
         * relu's dy * (y > 0 ? 1 : 0) into a branch and stays scalar */
        plast_real d = grad(out[i]);
        gin[i] = g[i] * d;
    }
    return PLAST_OK;
}

/* One elementwise operation per value: a nominal count. */
static uint64_t act_flops(const plast_layer *l, int batch)
{
    return (uint64_t)plast_shape_size(&l->in) * (uint64_t)(batch > 0 ? batch : 0);
}

/* The ops tables need a forward/backward per type: thin wrappers. */
#define ACTIVATION(NAME, FN, GRAD, ATTR)                                                    \
    ATTR static int NAME##_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,  \
                                   const plast_ctx *ctx, plast_err *e)                      \
    {                                                                                       \
        (void)ctx;                                                                          \
        return act_forward(l, x, y, FN, e);                                                 \
    }                                                                                       \
    ATTR static int NAME##_backward(plast_layer *l, const plast_tensor *x,                  \
                                    const plast_tensor *y, const plast_tensor *dy,          \
                                    plast_tensor *dx, const plast_ctx *ctx, plast_err *e)   \
    {                                                                                       \
        (void)x;                                                                            \
        (void)ctx;                                                                          \
        return act_backward(l, y, dy, dx, GRAD, e);                                         \
    }                                                                                       \
    const plast_layer_ops plast_layer_##NAME = {                                            \
        .size = sizeof(plast_layer_ops),                                                    \
        .name = #NAME,                                                                      \
        .settings = no_settings,                                                            \
        .flags = PLAST_LAYER_INPLACE | PLAST_LAYER_ACTIVATION,                              \
        .create = act_create,                                                               \
        .init = NULL,                                                                       \
        .forward = NAME##_forward,                                                          \
        .backward = NAME##_backward,                                                        \
        .destroy = NULL,                                                                    \
        .flops = act_flops,                                                                 \
        .release = NULL,                                                                    \
    }

ACTIVATION(relu, relu, relu_grad, PLAST_CLONES);
ACTIVATION(tanh, tanh_fn, tanh_grad, PLAST_CLONES);
ACTIVATION(sigmoid, sigmoid, sigmoid_grad, );
