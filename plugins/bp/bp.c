/* bp.c - backpropagation through the whole stack (the baseline rule).
 *
 * Forward every block keeping its outputs, take the loss gradient at the
 * logits, walk the blocks backwards turning each block's output gradient
 * into its parameter gradients and its input gradient, free each block's
 * outputs once its backward is done, then step every parameter once. */
#include <stdlib.h>
#include <string.h>

#include <plast/plast.h>

struct plast_rule {
    plast_model *model;
    plast_block_run *runs; /* one per block, rule category */
};

static const plast_setting bp_settings[] = {
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static int bp_create(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e)
{
    (void)a;
    plast_mem *mem = plast_model_mem(m);
    plast_rule *r = plast_mem_calloc(mem, PLAST_MEM_RULE, sizeof *r);
    if (!r)
        return plast_err_set(e, PLAST_E_NOMEM, "bp: out of memory");
    r->model = m;
    r->runs = plast_mem_calloc(mem, PLAST_MEM_RULE,
                               (size_t)plast_model_nblocks(m) * sizeof *r->runs);
    if (!r->runs) {
        plast_mem_free(mem, r);
        return plast_err_set(e, PLAST_E_NOMEM, "bp: out of memory");
    }
    *out = r;
    return PLAST_OK;
}

static void bp_destroy(plast_rule *r)
{
    if (!r)
        return;
    plast_mem *mem = plast_model_mem(r->model);
    plast_mem_free(mem, r->runs);
    plast_mem_free(mem, r);
}

static void release_from(plast_rule *r, int k)
{
    for (; k >= 0; k--)
        plast_block_release(r->model, &r->runs[k], NULL);
}

static int bp_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    plast_model *m = r->model;
    plast_ctx ctx = plast_model_ctx(m, 1);
    int K = plast_model_nblocks(m), rc;
    const plast_tensor *x = &b->x;
    for (int k = 0; k < K; k++) {
        if ((rc = plast_block_forward(m, k, x, &r->runs[k], &ctx, e))) {
            release_from(r, k - 1);
            return rc;
        }
        x = plast_block_output(&r->runs[k]);
    }
    plast_tensor dy, dx;
    if ((rc = plast_rule_loss(m, x, b, st, &dy, e))) {
        release_from(r, K - 1);
        return rc;
    }
    for (int k = K - 1; k >= 0; k--) {
        plast_block_run *run = &r->runs[k];
        int last = run->first + run->n - 1;
        rc = plast_block_backward(m, run, last, &dy, k > 0 ? &dx : NULL, &ctx, e);
        plast_block_release(m, run, NULL);
        if (rc) {
            release_from(r, k - 1);
            return rc;
        }
        dy = dx;
    }
    plast_model_step_all(m);
    return PLAST_OK;
}

static const plast_rule_ops bp_ops = {
    .size = sizeof(plast_rule_ops),
    .name = "bp",
    .settings = bp_settings,
    .summary = "backpropagation through the whole network",
    .create = bp_create,
    .train_batch = bp_train_batch,
    .destroy = bp_destroy,
};

static const plast_rule_ops *const bp_rules[] = {&bp_ops, NULL};

PLAST_PLUGIN(.name = "bp", .version = "0.1.0", .license = "MIT",
             .summary = "backpropagation (the baseline rule)", .rules = bp_rules);
