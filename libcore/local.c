/* local.c - layer-local learning signals shared by DRTP and tpSGD. */
#include "config.h"

#include <string.h>

#include "plast/local.h"
#include "plast/plugin.h"
#include "builtin.h"
#include "simd.h"

const char *const plast_local_loss_names[] = {"linear", "mse", "l1", "bce", NULL};

int plast_local_inject(const plast_model *m, int k)
{
    const plast_block *b = plast_model_block(m, k);
    return b->inject >= 0 ? b->inject : b->trainable;
}

void plast_local_target_range(const plast_model *m, int k, float *offset, float *gamma)
{
    const plast_layer *act = plast_model_layer((plast_model *)m, plast_local_inject(m, k));
    if (act->ops == &plast_layer_tanh || act->ops == &plast_layer_rnn)
        *offset = 0.0f, *gamma = 0.5f;
    else if (act->ops == &plast_layer_sigmoid)
        *offset = 0.5f, *gamma = 0.4f;
    else if (act->ops == &plast_layer_relu)
        *offset = 0.5f, *gamma = 0.5f;
    else
        *offset = 0.0f, *gamma = 1.0f; /* no activation: identity */
}

int plast_local_check_block(const plast_model *m, int k, const char *rule,
                            plast_local_loss loss, plast_err *e)
{
    const plast_block *b = plast_model_block(m, k);
    if (b->trainable < 0)
        return plast_err_set(e, PLAST_E_UNSUPPORTED, "%s: block %d has no trainable layer", rule,
                             k);
    for (int i = b->first; i <= b->last; i++) {
        const plast_layer *l = plast_model_layer((plast_model *)m, i);
        if (l->ninputs > 1 || (l->nparams > 0 && i != b->trainable))
            return plast_err_set(e, PLAST_E_UNSUPPORTED,
                                 "%s: layer '%s' (%s) has no local learning signal; %s "
                                 "trains chains of one dense or conv2d layer and its "
                                 "activation, pooling and flatten followers",
                                 rule, l->name, l->ops->name, rule);
    }
    const plast_layer *act = plast_model_layer((plast_model *)m, plast_local_inject(m, k));
    if (loss == PLAST_LOCAL_BCE && act->ops != &plast_layer_sigmoid)
        return plast_err_set(e, PLAST_E_UNSUPPORTED,
                             "%s: local_loss = bce needs a sigmoid activation in block %d, "
                             "found %s",
                             rule, k, act->ops->name);
    return PLAST_OK;
}

/* The signal's buffer: A_k's own when A_k is not what the block hands
 * on, else a new one. */
static int signal_buffer(plast_block_run *run, int inject, plast_tensor *d, const plast_ctx *ctx,
                         plast_err *e)
{
    const plast_tensor *a = plast_block_layer_output(run, inject);
    if (a->data != plast_block_output(run)->data &&
        plast_block_take_output(run, inject, d, e) == PLAST_OK)
        return PLAST_OK;
    return plast_tensor_alloc_dims(d, ctx->mem, PLAST_MEM_ACTIVATIONS, a->ndim, a->dim, e);
}

/* One loop per loss, so that each vectorises (g may be t: the same index
 * is read before it is written). */
void plast_local_gradient(plast_local_loss loss, const plast_real *a, const plast_real *t,
                          size_t n, float scale, plast_real *g)
{
    switch (loss) {
    case PLAST_LOCAL_LINEAR:
        PLAST_SIMD
        for (size_t j = 0; j < n; j++)
            g[j] = t[j] * scale;
        break;
    case PLAST_LOCAL_L1:
        PLAST_SIMD
        for (size_t j = 0; j < n; j++)
            g[j] = (float)((a[j] > t[j]) - (a[j] < t[j])) * scale;
        break;
    default: /* mse; bce (fused: already D) */
        PLAST_SIMD
        for (size_t j = 0; j < n; j++)
            g[j] = (a[j] - t[j]) * scale;
        break;
    }
}

/* D for example i: G * f'(a), or G alone (bce fused, no activation). */
static int example_signal(const plast_layer *act, int has_act, plast_local_loss loss,
                          plast_real *a, plast_real *row, plast_real *d, const plast_ctx *ctx,
                          plast_err *e)
{
    if (!has_act || loss == PLAST_LOCAL_BCE) {
        memmove(d, row, plast_shape_size(&act->out) * sizeof *d);
        return PLAST_OK;
    }
    plast_tensor y = plast_tensor_view(a, 1, &act->out);
    plast_tensor g = plast_tensor_view(row, 1, &act->out);
    plast_tensor dx = plast_tensor_view(d, 1, &act->out); /* may be y: elementwise */
    return act->ops->backward((plast_layer *)act, &y, &y, &g, &dx, ctx, e);
}

int plast_local_backward(plast_model *m, plast_block_run *run, const plast_proj *p,
                         const int32_t *labels, int batch, plast_local_loss loss, float scale,
                         plast_err *e)
{
    plast_ctx ctx = plast_model_ctx(m, 1);
    const plast_block *b = plast_model_block(m, run->block);
    int inject = plast_local_inject(m, run->block), has_act = inject != b->trainable;
    const plast_layer *act = plast_model_layer(m, inject);
    size_t n = plast_shape_size(&act->out);
    PLAST_ASSERT(n == p->n);
    const plast_real *a = plast_block_layer_output(run, inject)->data; /* read first */
    plast_tensor d;
    int rc = signal_buffer(run, inject, &d, &ctx, e);
    if (rc)
        return rc;
    plast_real *row = plast_mem_alloc(ctx.mem, PLAST_MEM_SCRATCH, n * sizeof *row);
    if (!row) {
        plast_tensor_free(&d);
        return plast_err_set(e, PLAST_E_NOMEM, "local signal: out of memory");
    }
    for (int i = 0; i < batch && !rc; i++) {
        plast_real *ai = (plast_real *)a + (size_t)i * n, *di = d.data + (size_t)i * n;
        plast_proj_row(p, labels[i], row);
        plast_local_gradient(loss, ai, row, n, scale, row);
        rc = example_signal(act, has_act, loss, ai, row, di, &ctx, e);
    }
    plast_mem_free(ctx.mem, row);
    /* D is the gradient at the activation's input (its f' is applied) */
    int from = has_act ? plast_model_layer_input(m, inject, 0) : inject;
    if (rc)
        plast_tensor_free(&d);
    else
        rc = plast_block_backward(m, run, from, &d, NULL, &ctx, e);
    return rc;
}
