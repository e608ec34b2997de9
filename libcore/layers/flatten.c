/* flatten.c - reshape each sample to a vector without copying.
 *
 * A view layer: forward makes y a view of x's data as [batch, n] and
 * backward makes dx a view of dy's data with x's shape.  Neither owns the
 * data (owner NULL); the caller moves ownership (see block.c). */
#include "config.h"

#include <limits.h>
#include <stdint.h>

#include "plast/layer.h"
#include "builtin.h"

static const plast_setting no_settings[] = {
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static int flatten_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    (void)a;
    size_t n = plast_shape_size(&l->in);
    if (n > INT_MAX)
        return plast_err_set(e, PLAST_E_INVAL, "flatten: expected at most %d values per "
                             "sample, found %zu", INT_MAX, n);
    l->out.ndim = 1;
    l->out.dim[0] = (int)n;
    l->nparams = 0;
    return PLAST_OK;
}

static int check_size(const plast_layer *l, const plast_tensor *t, const char *what,
                      const plast_shape *s, plast_err *e)
{
    size_t want = (size_t)plast_tensor_batch(t) * plast_shape_size(s);
    if (t->size != want)
        return plast_err_set(e, PLAST_E_INVAL, "flatten %s: %s: expected %zu values, found %zu",
                             l->name, what, want, t->size);
    return PLAST_OK;
}

static int flatten_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                           const plast_ctx *ctx, plast_err *e)
{
    (void)ctx;
    int rc = check_size(l, x, "input", &l->in, e);
    if (rc)
        return rc;
    *y = plast_tensor_view(x->data, plast_tensor_batch(x), &l->out);
    return PLAST_OK;
}

static int flatten_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                            const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                            plast_err *e)
{
    (void)x;
    (void)y;
    (void)ctx;
    if (!dx)
        return PLAST_OK;
    int rc = check_size(l, dy, "output gradient", &l->out, e);
    if (rc)
        return rc;
    *dx = plast_tensor_view(dy->data, plast_tensor_batch(dy), &l->in);
    return PLAST_OK;
}

static uint64_t flatten_flops(const plast_layer *l, int batch)
{
    (void)l;
    (void)batch;
    return 0;
}

const plast_layer_ops plast_layer_flatten = {
    .size = sizeof(plast_layer_ops),
    .name = "flatten",
    .settings = no_settings,
    .flags = PLAST_LAYER_VIEW,
    .create = flatten_create,
    .init = NULL,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .destroy = NULL,
    .flops = flatten_flops,
    .release = NULL,
};
