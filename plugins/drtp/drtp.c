/* drtp.c - direct random target projection (Frenkel, Lefebvre, Bol 2021).
 *
 * Hidden block k is trained right after its own forward pass with the
 * signal dJ/dA_k = row c_n of a fixed random matrix R_k for example n
 * (the label selects the row: no matrix product), back-propagated only
 * through the block's own activation.  The block then steps its optimiser
 * and its input is freed before block k+1 runs, so at most one block's
 * input, output and signal are alive.  The output block is trained with
 * the true loss gradient. */
#include <stdlib.h>
#include <string.h>

#include <plast/plast.h>

enum { STORE_MATRIX, STORE_REGEN };
enum { REDUCE_MEAN, REDUCE_SUM };

static const char *const store_choices[] = {"matrix", "regen", NULL};
static const char *const reduce_choices[] = {"mean", "sum", NULL};

static const plast_setting drtp_settings[] = {
    {"proj_store", PLAST_S_ENUM, "matrix", 0, 0, store_choices, 0,
     "keep each R_k in memory (matrix) or regenerate the selected rows (regen)"},
    {"hidden_reduce", PLAST_S_ENUM, "mean", 0, 0, reduce_choices, 0,
     "hidden signals averaged over the batch (mean) or summed as the reference code (sum)"},
    {"zero_init_hidden", PLAST_S_BOOL, "false", 0, 0, NULL, 0,
     "start hidden layers at zero, as the paper's alignment argument assumes"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

struct plast_rule {
    plast_model *model;
    int reduce;
    plast_proj *proj; /* one per hidden block */
};

static void drtp_destroy(plast_rule *r)
{
    if (!r)
        return;
    plast_mem *mem = plast_model_mem(r->model);
    int hidden = plast_model_nblocks(r->model) - 1;
    for (int k = 0; r->proj && k < hidden; k++)
        plast_proj_fini(&r->proj[k]);
    plast_mem_free(mem, r->proj);
    plast_mem_free(mem, r);
}

static void zero_block(plast_model *m, int k)
{
    const plast_block *b = plast_model_block(m, k);
    for (int i = b->first; i <= b->last; i++) {
        plast_layer *l = plast_model_layer(m, i);
        for (int p = 0; p < l->nparams; p++)
            memset(l->param[p].w, 0, l->param[p].count * sizeof(plast_real));
    }
}

/* R_k covers the output of the block's activation (or of its trainable
 * layer when it has none: f' = 1). */
static int setup_block(plast_rule *r, int k, int store, plast_err *e)
{
    plast_model *m = r->model;
    int rc = plast_local_check_block(m, k, "drtp", PLAST_LOCAL_LINEAR, e);
    if (rc)
        return rc;
    size_t n = plast_shape_size(&plast_model_layer(m, plast_local_inject(m, k))->out);
    return plast_proj_init(&r->proj[k], plast_model_mem(m), plast_model_seed(m), (uint32_t)k,
                           plast_model_classes(m), n, plast_proj_he_bound(n),
                           store == STORE_MATRIX, e);
}

static int drtp_create(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e)
{
    plast_mem *mem = plast_model_mem(m);
    int hidden = plast_model_nblocks(m) - 1;
    plast_rule *r = plast_mem_calloc(mem, PLAST_MEM_RULE, sizeof *r);
    if (!r)
        return plast_err_set(e, PLAST_E_NOMEM, "drtp: out of memory");
    r->model = m;
    r->reduce = plast_args_enum(a, "hidden_reduce");
    size_t nh = hidden > 0 ? (size_t)hidden : 1;
    r->proj = plast_mem_calloc(mem, PLAST_MEM_RULE, nh * sizeof *r->proj);
    int rc = r->proj ? PLAST_OK : plast_err_set(e, PLAST_E_NOMEM, "drtp: out of memory");
    if (!rc)
        rc = plast_local_check_block(m, hidden, "drtp", PLAST_LOCAL_LINEAR, e);
    if (!rc) /* each block is stepped before the next one's backward */
        rc = plast_model_share_grads(m, e);
    for (int k = 0; k < hidden && !rc; k++) {
        rc = setup_block(r, k, plast_args_enum(a, "proj_store"), e);
        if (!rc && plast_args_bool(a, "zero_init_hidden"))
            zero_block(m, k);
    }
    if (rc) {
        drtp_destroy(r);
        return rc;
    }
    *out = r;
    return PLAST_OK;
}

/* Train hidden block k on the label's projection (the core's linear
 * local signal: dJ/dA_k = R_k[label]); its gradient is stepped at once. */
static int train_hidden(plast_rule *r, int k, plast_block_run *run, const plast_batch *b,
                        plast_err *e)
{
    float scale = r->reduce == REDUCE_MEAN ? 1.0f / (float)b->n : 1.0f;
    int rc = plast_local_backward(r->model, run, &r->proj[k], b->labels, b->n,
                                  PLAST_LOCAL_LINEAR, scale, e);
    if (!rc)
        plast_model_step_block(r->model, k);
    return rc;
}

typedef struct drtp_pass {
    plast_rule *r;
    plast_batch *b;
    plast_stats *st;
} drtp_pass;

static int train_block(void *user, int k, plast_block_run *run, plast_err *e)
{
    drtp_pass *p = user;
    if (k < plast_model_nblocks(p->r->model) - 1)
        return train_hidden(p->r, k, run, p->b, e);
    int rc = plast_rule_output_backward(p->r->model, run, p->b, p->st, e);
    if (!rc)
        plast_model_step_block(p->r->model, k);
    return rc;
}

static int drtp_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    drtp_pass p = {r, b, st};
    return plast_model_local_pass(r->model, b, train_block, &p, e);
}

static const plast_rule_ops drtp_ops = {
    .size = sizeof(plast_rule_ops),
    .name = "drtp",
    .settings = drtp_settings,
    .summary = "direct random target projection: hidden layers trained from the label alone",
    .create = drtp_create,
    .train_batch = drtp_train_batch,
    .destroy = drtp_destroy,
};

static const plast_rule_ops *const drtp_rules[] = {&drtp_ops, NULL};

PLAST_PLUGIN(.name = "drtp", .version = "0.1.0", .license = "MIT",
             .summary = "direct random target projection (Frenkel et al. 2021)",
             .rules = drtp_rules);
