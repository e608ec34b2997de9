/* tpsgd.c - target projection SGD (Lomnitz, Daniels, Zhang, Piacentino
 * 2022, "Learning with Local Gradients at the Edge").
 *
 * Like DRTP, each hidden block learns right after its own forward pass
 * from a fixed random projection of the label, and frees its input before
 * the next block runs; unlike DRTP the projection is a *target* Theta_k =
 * P_k[label] for the block's activation, reached by SGD on a local loss
 * l(A_k, Theta_k): mse, l1, bce (sigmoid blocks) or linear, which is
 * DRTP exactly.  The output block is trained on the model's loss.  The
 * signals are the core's (plast/local.h): no copy of DRTP's code. */
#include <string.h>

#include <plast/plast.h>

enum { DIST_AUTO, DIST_HE, DIST_TARGET };
enum { STORE_MATRIX, STORE_REGEN };

static const char *const dist_choices[] = {"auto", "he_uniform", "target_uniform", NULL};
static const char *const store_choices[] = {"matrix", "regen", NULL};

static const plast_setting tpsgd_settings[] = {
    {"local_loss", PLAST_S_ENUM, "mse", 0, 0, plast_local_loss_names, 0,
     "loss between a hidden activation and its target: linear (= DRTP), mse, l1, bce"},
    {"proj_dist", PLAST_S_ENUM, "auto", 0, 0, dist_choices, 0,
     "target distribution: he_uniform (DRTP's), target_uniform (inside the activation's "
     "range), auto = he_uniform for linear, else target_uniform"},
    {"proj_store", PLAST_S_ENUM, "matrix", 0, 0, store_choices, 0,
     "keep each P_k in memory (matrix) or regenerate the selected rows (regen)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

struct plast_rule {
    plast_model *model;
    plast_local_loss loss;
    plast_proj *proj; /* one per hidden block */
};

static void tpsgd_destroy(plast_rule *r)
{
    if (!r)
        return;
    plast_mem *mem = plast_model_mem(r->model);
    for (int k = 0; r->proj && k < plast_model_nblocks(r->model) - 1; k++)
        plast_proj_fini(&r->proj[k]);
    plast_mem_free(mem, r->proj);
    plast_mem_free(mem, r);
}

/* P_k over block k's activation output, He-uniform or centred in the
 * activation's range. */
static int setup_block(plast_rule *r, int k, int dist, int store, plast_err *e)
{
    plast_model *m = r->model;
    int rc = plast_local_check_block(m, k, "tpsgd", r->loss, e);
    if (rc)
        return rc;
    size_t n = plast_shape_size(&plast_model_layer(m, plast_local_inject(m, k))->out);
    float offset = 0.0f, bound = plast_proj_he_bound(n);
    if (dist == DIST_TARGET || (dist == DIST_AUTO && r->loss != PLAST_LOCAL_LINEAR))
        plast_local_target_range(m, k, &offset, &bound);
    return plast_proj_init_offset(&r->proj[k], plast_model_mem(m), plast_model_seed(m),
                                  (uint32_t)k, plast_model_classes(m), n, offset, bound,
                                  store == STORE_MATRIX, e);
}

static int tpsgd_create(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e)
{
    plast_mem *mem = plast_model_mem(m);
    int hidden = plast_model_nblocks(m) - 1;
    plast_rule *r = plast_mem_calloc(mem, PLAST_MEM_RULE, sizeof *r);
    if (!r)
        return plast_err_set(e, PLAST_E_NOMEM, "tpsgd: out of memory");
    r->model = m;
    r->loss = (plast_local_loss)plast_args_enum(a, "local_loss");
    r->proj = plast_mem_calloc(mem, PLAST_MEM_RULE, (size_t)(hidden > 0 ? hidden : 1) *
                                                        sizeof *r->proj);
    int rc = r->proj ? PLAST_OK : plast_err_set(e, PLAST_E_NOMEM, "tpsgd: out of memory");
    if (!rc)
        rc = plast_local_check_block(m, hidden, "tpsgd", PLAST_LOCAL_LINEAR, e);
    for (int k = 0; k < hidden && !rc; k++)
        rc = setup_block(r, k, plast_args_enum(a, "proj_dist"), plast_args_enum(a, "proj_store"),
                         e);
    if (rc) {
        tpsgd_destroy(r);
        return rc;
    }
    *out = r;
    return PLAST_OK;
}

typedef struct tpsgd_pass {
    plast_rule *r;
    plast_batch *b;
    plast_stats *st;
} tpsgd_pass;

/* Block k learns at once: its target's local loss (hidden) or the model
 * loss (output), then its optimiser step. */
static int train_block(void *user, int k, plast_block_run *run, plast_err *e)
{
    tpsgd_pass *p = user;
    plast_model *m = p->r->model;
    int rc;
    if (k < plast_model_nblocks(m) - 1) {
        rc = plast_local_backward(m, run, &p->r->proj[k], p->b->labels, p->b->n, p->r->loss,
                                  1.0f / (float)p->b->n, e);
    } else {
        rc = plast_rule_output_backward(m, run, p->b, p->st, e);
    }
    if (!rc)
        plast_model_step_block(m, k);
    return rc;
}

static int tpsgd_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    tpsgd_pass p = {r, b, st};
    return plast_model_local_pass(r->model, b, train_block, &p, e);
}

static const plast_rule_ops tpsgd_ops = {
    .size = sizeof(plast_rule_ops),
    .name = "tpsgd",
    .settings = tpsgd_settings,
    .summary = "target projection SGD: hidden layers fit random targets of the label",
    .create = tpsgd_create,
    .train_batch = tpsgd_train_batch,
    .destroy = tpsgd_destroy,
};

static const plast_rule_ops *const tpsgd_rules[] = {&tpsgd_ops, NULL};

PLAST_PLUGIN(.name = "tpsgd", .version = "0.1.0", .license = "MIT",
             .summary = "target projection SGD (Lomnitz et al. 2022)", .rules = tpsgd_rules);
