/* shallow.c - an example rule plug-in built outside plast's tree.
 *
 * The "shallow" baseline: hidden blocks keep their initial random weights
 * and only the output block learns (the baseline a local rule must beat).
 * Hidden blocks run forward only, each freeing its input as soon as its
 * output exists, so the memory is that of inference.
 *
 * Build and use it with nothing but the installed plast:
 *   cc -shared -fPIC -o shallow.so shallow.c $(pkg-config --cflags --libs plast)
 *   PLAST_PLUGIN_PATH=. plast train model.ini --rule shallow
 */
#include <string.h>

#include <plast/plast.h>

struct plast_rule {
    plast_model *model;
    int train_bias_only; /* an example parameter */
};

static const plast_setting shallow_settings[] = {
    {"bias_only", PLAST_S_BOOL, "false", 0, 0, NULL, 0,
     "train only the output layer's bias (a weaker baseline)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static int shallow_create(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e)
{
    plast_rule *r = plast_mem_calloc(plast_model_mem(m), PLAST_MEM_RULE, sizeof *r);
    if (!r)
        return plast_err_set(e, PLAST_E_NOMEM, "shallow: out of memory");
    r->model = m;
    r->train_bias_only = plast_args_bool(a, "bias_only");
    *out = r;
    return PLAST_OK;
}

static void shallow_destroy(plast_rule *r)
{
    if (r)
        plast_mem_free(plast_model_mem(r->model), r);
}

/* Zero the output layer's weight gradient when only the bias trains. */
static void drop_weight_grad(plast_model *m, int k)
{
    plast_layer *l = plast_model_layer(m, plast_model_block(m, k)->trainable);
    memset(l->param[0].g, 0, l->param[0].count * sizeof(plast_real));
}

typedef struct shallow_pass {
    plast_rule *r;
    plast_batch *b;
    plast_stats *st;
} shallow_pass;

/* Called after each block's forward: only the output block learns. */
static int train_block(void *user, int k, plast_block_run *run, plast_err *e)
{
    shallow_pass *p = user;
    plast_model *m = p->r->model;
    if (k < plast_model_nblocks(m) - 1)
        return PLAST_OK;
    int rc = plast_rule_output_backward(m, run, p->b, p->st, e);
    if (!rc && p->r->train_bias_only)
        drop_weight_grad(m, k);
    if (!rc)
        plast_model_step_block(m, k);
    return rc;
}

static int shallow_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    shallow_pass p = {r, b, st};
    return plast_model_local_pass(r->model, b, train_block, &p, e);
}

static const plast_rule_ops shallow_ops = {
    .size = sizeof(plast_rule_ops),
    .name = "shallow",
    .settings = shallow_settings,
    .summary = "example: only the output layer learns (hidden layers stay random)",
    .create = shallow_create,
    .train_batch = shallow_train_batch,
    .destroy = shallow_destroy,
};

static const plast_rule_ops *const shallow_rules[] = {&shallow_ops, NULL};

PLAST_PLUGIN(.name = "shallow", .version = "1.0.0", .license = "MIT",
             .summary = "example out-of-tree rule: the shallow baseline", .rules = shallow_rules);
