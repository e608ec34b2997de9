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

/* The tensor feeding input n of layer j: the block input, or the output
 * of an earlier layer of the block. */
static const plast_tensor *input_of(plast_model *m, const plast_block_run *run, int j, int n)
{
    int p = plast_model_layer_input(m, j, n);
    return p == run->first - 1 ? run->x : &run->out[p - run->first];
}

/* Layer j may write over its input when that input is produced inside
 * the block, read by j alone, and not needed by its producer's backward. */
static int can_run_inplace(plast_model *m, int first, int j)
{
    int p = plast_model_layer_input(m, j, 0);
    if (!(plast_model_layer(m, j)->ops->flags & PLAST_LAYER_INPLACE) || p < first ||
        plast_model_consumers(m, p) != 1)
        return 0;
    unsigned pf = plast_model_layer(m, p)->ops->flags;
    return !(pf & (PLAST_LAYER_INPLACE | PLAST_LAYER_VIEW | PLAST_LAYER_READS_Y));
}

static plast_tensor alias_of(const plast_tensor *t)
{
    plast_tensor a = *t;
    a.owner = NULL;
    return a;
}

static int run_forward(plast_layer *l, plast_model *m, const plast_block_run *run, int j,
                       plast_tensor *y, const plast_ctx *ctx, plast_err *e)
{
    if (l->ninputs == 2) {
        const plast_tensor *xs[2] = {input_of(m, run, j, 0), input_of(m, run, j, 1)};
        return l->ops->forward2(l, xs, y, ctx, e);
    }
    return l->ops->forward(l, input_of(m, run, j, 0), y, ctx, e);
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
        plast_tensor *y = &run->out[j - b->first];
        int rc = PLAST_OK;
        if (can_run_inplace(m, b->first, j))
            *y = alias_of(input_of(m, run, j, 0));
        else if (!(l->ops->flags & PLAST_LAYER_VIEW))
            rc = plast_tensor_alloc(y, ctx->mem, PLAST_MEM_ACTIVATIONS, batch, &l->out, e);
        run->n++;
        if (rc == PLAST_OK)
            rc = run_forward(l, m, run, j, y, ctx, e);
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

int plast_block_take_output(plast_block_run *run, int layer, plast_tensor *out, plast_err *e)
{
    plast_tensor *want = plast_block_layer_output(run, layer);
    for (int i = layer - run->first; i >= 0; i--)
        if (run->out[i].owner && run->out[i].data == want->data) {
            *out = alias_of(want);
            out->owner = run->out[i].owner;
            run->out[i].owner = NULL;
            return PLAST_OK;
        }
    return plast_err_set(e, PLAST_E_INVAL, "layer %d's output is not a buffer of its block", layer);
}

/* ---- backward ---- */

/* Gradients at the outputs of the block's layers (slot j - first + 1)
 * and at the block input (slot 0). */
typedef struct grad_slots {
    plast_tensor g[PLAST_BLOCK_MAX_LAYERS + 1];
} grad_slots;

static plast_tensor *slot_of(grad_slots *gs, const plast_block_run *run, int producer)
{
    return &gs->g[producer - run->first + 1];
}

/* Is a gradient needed at the output of `producer`: at the block input
 * only if the caller wants it, inside the block if some trainable layer
 * lies at or before it (it may feed that layer's output). */
static int wants_grad(plast_model *m, const plast_block_run *run, int producer, int caller)
{
    if (producer < run->first)
        return caller;
    for (int i = run->first; i <= producer; i++)
        if (plast_model_layer(m, i)->nparams > 0)
            return 1;
    return 0;
}

/* Add `d` (consumed) into the gradient slot `to`. */
static void accumulate(plast_tensor *to, plast_tensor *d)
{
    if (!to->data) {
        *to = *d;
    } else {
        for (size_t i = 0; i < to->size; i++)
            to->data[i] += d->data[i];
        plast_tensor_free(d);
    }
    memset(d, 0, sizeof *d);
}

/* Prepare the input-gradient tensor for input n of layer j: an alias of
 * dy for in-place and view layers, else a new buffer; NULL if unneeded. */
static int input_grad(plast_model *m, const plast_block_run *run, int j, int n, int want,
                      plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx, plast_err *e)
{
    memset(dx, 0, sizeof *dx);
    if (!want)
        return PLAST_OK;
    plast_layer *l = plast_model_layer(m, j);
    const plast_tensor *x = input_of(m, run, j, n);
    if (l->ninputs == 1 && (l->ops->flags & (PLAST_LAYER_INPLACE | PLAST_LAYER_VIEW))) {
        *dx = alias_of(dy); /* in place; layer_backward hands dy's buffer over */
        dx->ndim = x->ndim;
        memcpy(dx->dim, x->dim, sizeof dx->dim);
        return PLAST_OK;
    }
    return plast_tensor_alloc_dims(dx, ctx->mem, PLAST_MEM_ACTIVATIONS, x->ndim, x->dim, e);
}

static int layer_backward(plast_model *m, plast_block_run *run, int j, plast_tensor *dy,
                          grad_slots *gs, int caller, const plast_ctx *ctx, plast_err *e)
{
    plast_layer *l = plast_model_layer(m, j);
    const plast_tensor *y = &run->out[j - run->first];
    plast_tensor dx[2];
    int want[2] = {0, 0}, rc = PLAST_OK;
    memset(dx, 0, sizeof dx);
    for (int n = 0; n < l->ninputs; n++)
        want[n] = wants_grad(m, run, plast_model_layer_input(m, j, n), caller);
    if (!want[0] && !want[1] && (l->nparams == 0 || l->frozen))
        return PLAST_OK;
    plast_tensor keep = *dy; /* dy's buffer, if an in-place dx takes it over */
    for (int n = 0; n < l->ninputs && !rc; n++)
        rc = input_grad(m, run, j, n, want[n], dy, &dx[n], ctx, e);
    if (!rc && l->ninputs == 2) {
        const plast_tensor *xs[2] = {input_of(m, run, j, 0), input_of(m, run, j, 1)};
        plast_tensor *const dxs[2] = {want[0] ? &dx[0] : NULL, want[1] ? &dx[1] : NULL};
        rc = l->ops->backward2(l, xs, y, &keep, dxs, ctx, e);
    } else if (!rc) {
        rc = l->ops->backward(l, input_of(m, run, j, 0), y, &keep, want[0] ? &dx[0] : NULL, ctx,
                              e);
    }
    for (int n = 0; n < l->ninputs; n++) {
        if (want[n] && dx[n].data == keep.data) { /* in place or a view of dy */
            dx[n].owner = dy->owner;
            dy->owner = NULL;
        }
        if (rc || !want[n])
            plast_tensor_free(&dx[n]);
        else
            accumulate(slot_of(gs, run, plast_model_layer_input(m, j, n)), &dx[n]);
    }
    return rc;
}

int plast_block_backward(plast_model *m, plast_block_run *run, int from, plast_tensor *dy,
                         plast_tensor *dx, const plast_ctx *ctx, plast_err *e)
{
    PLAST_ASSERT(from >= run->first && from < run->first + run->n);
    grad_slots gs;
    memset(&gs, 0, sizeof gs);
    *slot_of(&gs, run, from) = *dy;
    memset(dy, 0, sizeof *dy);
    int rc = PLAST_OK;
    for (int j = from; j >= run->first && !rc; j--) {
        plast_tensor *g = slot_of(&gs, run, j);
        if (g->data)
            rc = layer_backward(m, run, j, g, &gs, dx != NULL, ctx, e);
        plast_tensor_free(g);
    }
    plast_tensor *gx = &gs.g[0];
    if (!rc && dx)
        *dx = *gx;
    else
        plast_tensor_free(gx);
    for (int i = 1; i <= run->n; i++)
        plast_tensor_free(&gs.g[i]);
    return rc;
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

/* Block k by the runner, or by the generic forward and visit: *next gets
 * its output unless it is the last block.  A block the runner already
 * did (PLAST_BLOCK_DONE) passes x itself on: *x is moved into *next and
 * left empty, so whoever frees *x afterwards frees nothing. */
static int local_block(plast_model *m, int k, plast_tensor *x, plast_block_visit visit,
                       plast_block_runner runner, void *user, plast_tensor *next, plast_err *e)
{
    int last = k == plast_model_nblocks(m) - 1;
    memset(next, 0, sizeof *next);
    int rc = runner ? runner(user, k, x, next, e) : PLAST_BLOCK_DEFAULT;
    if (rc == PLAST_BLOCK_DONE) {
        PLAST_ASSERT(next->data == NULL);
        *next = *x;
        memset(x, 0, sizeof *x);
        if (last)
            plast_tensor_free(next);
        return PLAST_OK;
    }
    if (rc != PLAST_BLOCK_DEFAULT) {
        if (rc || last)
            plast_tensor_free(next);
        return rc;
    }
    plast_ctx ctx = plast_model_ctx(m, 1);
    plast_block_run run;
    if ((rc = plast_block_forward(m, k, x, &run, &ctx, e)))
        return rc;
    rc = visit(user, k, &run, e);
    plast_block_release(m, &run, last ? NULL : next);
    return rc;
}

int plast_model_local_pass2(plast_model *m, plast_batch *b, plast_block_visit visit,
                            plast_block_runner runner, void *user, plast_err *e)
{
    int K = plast_model_nblocks(m), rc = PLAST_OK;
    plast_tensor prev; /* block k's input once block 0 is done */
    memset(&prev, 0, sizeof prev);
    for (int k = 0; k < K && !rc; k++) {
        plast_tensor next;
        rc = local_block(m, k, k ? &prev : &b->x, visit, runner, user, &next, e);
        if (k == 0)
            plast_batch_drop_input(b); /* nothing if block 0 moved it on */
        else
            plast_tensor_free(&prev);  /* likewise */
        prev = next;
    }
    plast_tensor_free(&prev);
    return rc;
}

int plast_model_local_pass(plast_model *m, plast_batch *b, plast_block_visit visit, void *user,
                           plast_err *e)
{
    return plast_model_local_pass2(m, b, visit, NULL, user, e);
}

/* Inference forward through blocks 0 .. nblocks-1, calling visit (if any)
 * after each block; *y gets the last output, or it is freed if y is NULL. */
static int run_blocks(plast_model *m, const plast_tensor *x, int nblocks, plast_block_visit visit,
                      void *user, plast_tensor *y, plast_err *e)
{
    if (nblocks < 1 || nblocks > plast_model_nblocks(m))
        return plast_err_set(e, PLAST_E_INVAL, "forward through %d blocks: the model has %d",
                             nblocks, plast_model_nblocks(m));
    plast_ctx ctx = plast_model_ctx(m, 0);
    plast_tensor cur = alias_of(x);
    for (int k = 0; k < nblocks; k++) {
        plast_block_run run;
        plast_tensor next;
        int rc = plast_block_forward(m, k, &cur, &run, &ctx, e);
        if (!rc && visit && (rc = visit(user, k, &run, e)))
            plast_block_release(m, &run, NULL);
        if (rc) {
            plast_tensor_free(&cur);
            return rc;
        }
        plast_block_release(m, &run, &next);
        plast_tensor_free(&cur);
        cur = next;
    }
    if (y)
        *y = cur;
    else
        plast_tensor_free(&cur);
    return PLAST_OK;
}

int plast_model_forward_blocks(plast_model *m, const plast_tensor *x, int nblocks,
                               plast_tensor *y, plast_err *e)
{
    return run_blocks(m, x, nblocks, NULL, NULL, y, e);
}

int plast_model_inspect_blocks(plast_model *m, const plast_tensor *x, int nblocks,
                               plast_block_visit visit, void *user, plast_err *e)
{
    return run_blocks(m, x, nblocks, visit, user, NULL, e);
}

int plast_model_predict(plast_model *m, const plast_tensor *x, plast_tensor *y, plast_err *e)
{
    return plast_model_forward_blocks(m, x, plast_model_nblocks(m), y, e);
}
