/* dropout.c - inverted dropout.
 *
 * Training: y_i = x_i * scale if kept, else 0, with scale = 1/(1 - p)
 * computed in double and rounded to float.  Element i of the batch tensor
 * (memory order) is kept when the i-th draw u of its stream satisfies
 * (double)u >= p (u = plast_rng_float, compared with the configured p).
 * The stream is plast_rng_stream(seed, PLAST_STREAM_DROPOUT, layer index)
 * advanced by ctx->step << 32 draws, so every training step has its own
 * mask, a resumed run draws the same masks, and backward regenerates the
 * mask instead of storing it (forward and backward of one batch share
 * ctx->step).  Eval mode, or p = 0: y = x.
 *
 * In place: forward accepts y == x, backward dx == dy; backward reads
 * neither x nor y. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/layer.h"
#include "builtin.h"

static const plast_setting dropout_settings[] = {
    {"p", PLAST_S_REAL, "0.5", 0, 1, NULL, PLAST_S_MAX_OPEN,
     "probability of dropping each value while training"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct dropout_state {
    double p;
    plast_real scale; /* 1/(1 - p) */
} dropout_state;

static int dropout_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    dropout_state *st = malloc(sizeof *st);
    if (!st)
        return plast_err_set(e, PLAST_E_NOMEM, "dropout: out of memory");
    st->p = plast_args_real(a, "p");
    st->scale = (plast_real)(1.0 / (1.0 - st->p));
    l->priv = st;
    l->out = l->in;
    l->nparams = 0;
    return PLAST_OK;
}

static void dropout_destroy(plast_layer *l)
{
    free(l->priv);
    l->priv = NULL;
}

/* out = in with the mask of training step `step` applied; out may be in. */
static void apply_mask(const plast_layer *l, uint64_t step, const plast_real *in,
                       plast_real *out, size_t n)
{
    const dropout_state *st = l->priv;
    plast_rng r;
    plast_rng_stream(&r, l->seed, PLAST_STREAM_DROPOUT, (uint32_t)l->index);
    plast_rng_advance(&r, step << 32);
    for (size_t i = 0; i < n; i++) {
        int keep = (double)plast_rng_float(&r) >= st->p;
        out[i] = keep ? in[i] * st->scale : 0.0f;
    }
}

static int check_same(const plast_layer *l, const plast_tensor *a, const plast_tensor *b,
                      const char *what, plast_err *e)
{
    if (a->size != b->size)
        return plast_err_set(e, PLAST_E_INVAL, "dropout %s: %s: expected %zu values, found %zu",
                             l->name, what, a->size, b->size);
    return PLAST_OK;
}

/* The identity (eval, p = 0) or the step's mask. */
static void dropout_apply(const plast_layer *l, const plast_ctx *ctx, const plast_tensor *in,
                          plast_tensor *out)
{
    const dropout_state *st = l->priv;
    if (!ctx->train || st->p == 0.0) {
        if (out->data != in->data)
            memcpy(out->data, in->data, in->size * sizeof *in->data);
        return;
    }
    apply_mask(l, ctx->step, in->data, out->data, in->size);
}

static int dropout_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                           const plast_ctx *ctx, plast_err *e)
{
    int rc = check_same(l, x, y, "output", e);
    if (rc)
        return rc;
    dropout_apply(l, ctx, x, y);
    return PLAST_OK;
}

/* dx = dy * the same mask and scale: the derivative of a linear map. */
static int dropout_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                            const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                            plast_err *e)
{
    (void)x;
    (void)y;
    if (!dx)
        return PLAST_OK; /* no parameters */
    int rc = check_same(l, dy, dx, "input gradient", e);
    if (rc)
        return rc;
    dropout_apply(l, ctx, dy, dx);
    return PLAST_OK;
}

/* One multiply per value (training). */
static uint64_t dropout_flops(const plast_layer *l, int batch)
{
    return (uint64_t)plast_shape_size(&l->in) * (uint64_t)(batch > 0 ? batch : 0);
}

const plast_layer_ops plast_layer_dropout = {
    .size = sizeof(plast_layer_ops),
    .name = "dropout",
    .settings = dropout_settings,
    .flags = PLAST_LAYER_INPLACE,
    .create = dropout_create,
    .init = NULL,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .destroy = dropout_destroy,
    .flops = dropout_flops,
    .release = NULL,
};
