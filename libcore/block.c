/* block.c - running a model block by block, and whole-model inference.
 *
 * Outputs are allocated in the activations category.  An in-place layer
 * (activation) reuses the buffer of the layer before it when that buffer
 * belongs to the block and the layer before it does not need its own
 * output for backward; a view layer (flatten) shares its input's buffer. */
#include "config.h"

#include <string.h>

#include "plast/model.h"
#include "plast/plugin.h"
#include "plast/rule.h"

static const plast_tensor *layer_input(const plast_block_run *run, int j)
{
    return j == run->first ? run->x : &run->out[j - run->first - 1];
}

static int can_run_inplace(plast_model *m, int first, int j)
{
    if (j == first)
        return 0; /* the block input belongs to the caller */
    const plast_layer_ops *prev = plast_model_layer(m, j - 1)->ops;
    return (plast_model_layer(m, j)->ops->flags & PLAST_LAYER_INPLACE) &&
           !(prev->flags & (PLAST_LAYER_INPLACE | PLAST_LAYER_VIEW));
}

static plast_tensor alias_of(const plast_tensor *t)
{
    plast_tensor a = *t;
    a.owner = NULL;
    return a;
}

int plast_block_forward(plast_model *m, int k, const plast_tensor *x, plast_block_run *run,
                        const plast_ctx *ctx, plast_err *e)
{
    const plast_block *b = plast_model_block(m, k);
    memset(run, 0, sizeof *run);
    run->block = k;
    run->first = b->first;
    run->x = x;
    int batch = plast_tensor_batch(x);
    for (int j = b->first; j <= b->last; j++) {
        plast_layer *l = plast_model_layer(m, j);
        const plast_tensor *in = layer_input(run, j);
        plast_tensor *y = &run->out[j - b->first];
        int rc = PLAST_OK;
        if (can_run_inplace(m, b->first, j))
            *y = alias_of(in);
        else if (!(l->ops->flags & PLAST_LAYER_VIEW))
            rc = plast_tensor_alloc(y, ctx->mem, PLAST_MEM_ACTIVATIONS, batch, &l->out, e);
        if (rc == PLAST_OK)
            rc = l->ops->forward(l, in, y, ctx, e);
        run->n++;
        if (rc) {
            plast_block_release(m, run, NULL);
            return rc;
        }
    }
    return PLAST_OK;
}

plast_tensor *plast_block_output(plast_block_run *run)
{
    return &run->out[run->n - 1];
}

plast_tensor *plast_block_layer_output(plast_block_run *run, int layer)
{
    PLAST_ASSERT(layer >= run->first && layer < run->first + run->n);
    return &run->out[layer - run->first];
}

/* One layer's backward: dy (consumed) becomes *dx, or nothing when the
 * input gradient is not wanted. */
static int layer_backward(plast_model *m, plast_block_run *run, int j, plast_tensor *dy,
                          plast_tensor *dx, int want_dx, const plast_ctx *ctx, plast_err *e)
{
    plast_layer *l = plast_model_layer(m, j);
    const plast_tensor *x = layer_input(run, j);
    const plast_tensor *y = &run->out[j - run->first];
    unsigned flags = l->ops->flags;
    int rc = PLAST_OK;
    memset(dx, 0, sizeof *dx);
    if (!want_dx && l->nparams == 0) {
        plast_tensor_free(dy);
        return PLAST_OK;
    }
    if (!want_dx) {
        rc = l->ops->backward(l, x, y, dy, NULL, ctx, e);
        plast_tensor_free(dy);
        return rc;
    }
    if (flags & PLAST_LAYER_VIEW) {
        rc = l->ops->backward(l, x, y, dy, dx, ctx, e);
        dx->owner = dy->owner; /* the view takes over dy's buffer */
        dy->owner = NULL;
        return rc;
    }
    if (flags & PLAST_LAYER_INPLACE) {
        *dx = *dy;
        memset(dy, 0, sizeof *dy);
        return l->ops->backward(l, x, y, dx, dx, ctx, e);
    }
    rc = plast_tensor_alloc(dx, ctx->mem, PLAST_MEM_ACTIVATIONS, plast_tensor_batch(x), &l->in,
                            e);
    if (rc == PLAST_OK)
        rc = l->ops->backward(l, x, y, dy, dx, ctx, e);
    plast_tensor_free(dy);
    return rc;
}

/* Is a gradient at the input of layer j needed: by a trainable layer
 * below it in the block, or by the caller at the block input? */
static int needs_input_grad(plast_model *m, const plast_block_run *run, int j, int caller_wants)
{
    if (caller_wants)
        return 1;
    for (int i = run->first; i < j; i++)
        if (plast_model_layer(m, i)->nparams > 0)
            return 1;
    return 0;
}

int plast_block_backward(plast_model *m, plast_block_run *run, int from, plast_tensor *dy,
                         plast_tensor *dx, const plast_ctx *ctx, plast_err *e)
{
    PLAST_ASSERT(from >= run->first && from < run->first + run->n);
    plast_tensor cur = *dy, next;
    memset(dy, 0, sizeof *dy);
    for (int j = from; j >= run->first; j--) {
        int want = needs_input_grad(m, run, j, dx != NULL);
        int rc = layer_backward(m, run, j, &cur, &next, want, ctx, e);
        if (rc) {
            plast_tensor_free(&cur);
            plast_tensor_free(&next);
            return rc;
        }
        cur = next;
    }
    if (dx)
        *dx = cur;
    else
        plast_tensor_free(&cur);
    return PLAST_OK;
}

void plast_block_release(plast_model *m, plast_block_run *run, plast_tensor *kept)
{
    if (kept && run->n > 0) {
        plast_tensor *last = &run->out[run->n - 1];
        *kept = alias_of(last);
        for (int i = run->n - 1; i >= 0; i--)
            if (run->out[i].owner && run->out[i].data == last->data) {
                kept->owner = run->out[i].owner; /* hand the buffer over */
                run->out[i].owner = NULL;
                break;
            }
    }
    for (int i = 0; i < run->n; i++) {
        plast_layer *l = plast_model_layer(m, run->first + i);
        if (PLAST_HAS(l->ops, plast_layer_ops, release)) {
            plast_ctx ctx = plast_model_ctx(m, 1);
            l->ops->release(l, &ctx);
        }
        plast_tensor_free(&run->out[i]);
    }
    run->n = 0;
}

int plast_model_local_pass(plast_model *m, plast_batch *b, plast_block_visit visit, void *user,
                           plast_err *e)
{
    plast_ctx ctx = plast_model_ctx(m, 1);
    int K = plast_model_nblocks(m), rc = PLAST_OK;
    plast_tensor prev; /* block k's input once block 0 is done */
    memset(&prev, 0, sizeof prev);
    for (int k = 0; k < K && !rc; k++) {
        plast_block_run run;
        if ((rc = plast_block_forward(m, k, k ? &prev : &b->x, &run, &ctx, e)))
            break;
        rc = visit(user, k, &run, e);
        plast_tensor next;
        plast_block_release(m, &run, k < K - 1 ? &next : NULL);
        if (k == 0)
            plast_batch_drop_input(b);
        else
            plast_tensor_free(&prev);
        if (k < K - 1)
            prev = next;
    }
    plast_tensor_free(&prev);
    return rc;
}

int plast_model_predict(plast_model *m, const plast_tensor *x, plast_tensor *y, plast_err *e)
{
    plast_ctx ctx = plast_model_ctx(m, 0);
    plast_tensor cur = alias_of(x);
    for (int j = 0; j < plast_model_nlayers(m); j++) {
        plast_layer *l = plast_model_layer(m, j);
        plast_tensor next;
        int rc = PLAST_OK;
        memset(&next, 0, sizeof next);
        if ((l->ops->flags & PLAST_LAYER_INPLACE) && cur.owner)
            next = alias_of(&cur);
        else if (!(l->ops->flags & PLAST_LAYER_VIEW))
            rc = plast_tensor_alloc(&next, ctx.mem, PLAST_MEM_ACTIVATIONS,
                                    plast_tensor_batch(x), &l->out, e);
        if (rc == PLAST_OK)
            rc = l->ops->forward(l, &cur, &next, &ctx, e);
        if (PLAST_HAS(l->ops, plast_layer_ops, release))
            l->ops->release(l, &ctx);
        if (rc) {
            plast_tensor_free(&next);
            plast_tensor_free(&cur);
            return rc;
        }
        if (next.data == cur.data) { /* in place or view: pass the buffer on */
            next.owner = cur.owner;
            cur.owner = NULL;
        }
        plast_tensor_free(&cur);
        cur = next;
    }
    *y = cur;
    return PLAST_OK;
}
