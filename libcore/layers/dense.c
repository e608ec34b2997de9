/* dense.c - fully connected layer, Y = X W^T + b.
 *
 * The weight is [units, in_features], one row per output unit (PyTorch's
 * nn.Linear layout, so checkpoints compare directly); the bias is [units].
 * Any input shape is accepted: each sample is read as a flat vector. */
#include "config.h"

#include <limits.h>
#include <stdint.h>

#include "plast/gemm.h"
#include "plast/layer.h"
#include "bias.h"
#include "builtin.h"

static const plast_setting dense_settings[] = {
    {"units", PLAST_S_INT, NULL, 1, 1e7, NULL, PLAST_S_REQUIRED, "number of outputs"},
    {"bias", PLAST_S_BOOL, "true", 0, 0, NULL, 0, "add a learned bias"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static int dense_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    int units = (int)plast_args_int(a, "units");
    size_t in = plast_shape_size(&l->in), count;
    if (in < 1 || in > INT_MAX)
        return plast_err_set(e, PLAST_E_INVAL,
                             "dense: expected 1 to %d input features, found %zu", INT_MAX, in);
    if (__builtin_mul_overflow(in, (size_t)units, &count))
        return plast_err_set(e, PLAST_E_INVAL, "dense: %d units x %zu inputs overflow", units,
                             in);
    l->out.ndim = 1;
    l->out.dim[0] = units;
    l->nparams = 1;
    l->param[0] = (plast_param){.name = "weight", .count = count, .fan_in = (int)in};
    if (plast_args_bool(a, "bias")) {
        l->param[1] = (plast_param){.name = "bias", .count = (size_t)units, .fan_in = (int)in};
        l->nparams = 2;
    }
    return PLAST_OK;
}

/* Threads the products may use (threads split rows and columns of the
 * result, never the sums: the same bits for any count). */
static int gemm_threads(const plast_ctx *ctx)
{
    return ctx && ctx->threads > 1 ? ctx->threads : 1;
}

static int dense_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                         const plast_ctx *ctx, plast_err *e)
{
    int units = l->out.dim[0], in = l->param[0].fan_in, batch = plast_tensor_batch(x);
    if (batch == 0)
        return PLAST_OK;
    int rc = plast_layer_check_tensor(l, x, "input", batch, (size_t)in, e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, y, "output", batch, (size_t)units, e);
    if (rc != PLAST_OK)
        return rc;
    plast_gemm_mt(gemm_threads(ctx), 0, 1, batch, units, in, 1.0f, x->data, in, l->param[0].w,
                  in, 0.0f, y->data, units);
    if (l->nparams > 1)
        bias_add_rows(y->data, batch, units, l->param[1].w);
    return PLAST_OK;
}

static int dense_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                          const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                          plast_err *e)
{
    (void)y;
    int units = l->out.dim[0], in = l->param[0].fan_in, batch = plast_tensor_batch(x);
    if (batch == 0)
        return PLAST_OK;
    int rc = plast_layer_check_tensor(l, x, "input", batch, (size_t)in, e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, dy, "output gradient", batch, (size_t)units, e);
    if (rc == PLAST_OK && dx)
        rc = plast_layer_check_tensor(l, dx, "input gradient", batch, (size_t)in, e);
    if (rc != PLAST_OK)
        return rc;
    if (!l->frozen) {
        /* dW += dY^T X */
        plast_gemm_mt(gemm_threads(ctx), 1, 0, units, in, batch, 1.0f, dy->data, units,
                      x->data, in, 1.0f, l->param[0].g, in);
        if (l->nparams > 1)
            bias_add_column_sums(dy->data, batch, units, l->param[1].g);
    }
    if (dx) /* dX = dY W */
        plast_gemm_mt(gemm_threads(ctx), 0, 0, batch, in, units, 1.0f, dy->data, units,
                      l->param[0].w, in, 0.0f, dx->data, in);
    return PLAST_OK;
}

static uint64_t dense_flops(const plast_layer *l, int batch)
{
    return 2u * (uint64_t)l->param[0].count * (uint64_t)(batch > 0 ? batch : 0);
}

const plast_layer_ops plast_layer_dense = {
    .size = sizeof(plast_layer_ops),
    .name = "dense",
    .settings = dense_settings,
    .flags = 0,
    .create = dense_create,
    .init = NULL,
    .forward = dense_forward,
    .backward = dense_backward,
    .destroy = NULL,
    .flops = dense_flops,
    .release = NULL,
};
