/* tpsgd.c - target projection SGD (Lomnitz, Daniels, Zhang, Piacentino
 * 2022, "Learning with Local Gradients at the Edge").
 *
 * Like DRTP, each hidden block learns right after its own forward pass
 * from a fixed random projection of the label, and frees its input before
 * the next block runs; unlike DRTP the projection is a *target* Theta_k =
 * P_k[label] for the block's activation, reached by SGD on a local loss
 * l(A_k, Theta_k): mse, l1, bce (sigmoid blocks) or linear, which is
 * DRTP exactly.  The output block is trained on the model's loss.  The
 * signals are the core's (plast/local.h): no copy of DRTP's code.
 *
 * An Elman rnn block is run here, step by step, without backpropagation
 * through time (ALGORITHMS.md §4.4): h_{t-1} is a constant input at step
 * t, the target P_k[label] is the same at every step, and each signalled
 * step adds delta_t = dl(h_t, theta)/dh_t (.) (1 - h_t^2) times x_t,
 * h_{t-1} and 1 to the gradients, divided by B times the signalled steps;
 * only h_{t-1}, h_t, delta and the targets are alive, so the memory does
 * not grow with the sequence length. */
#include <string.h>

#include <plast/plast.h>

enum { DIST_AUTO, DIST_HE, DIST_TARGET };
enum { STORE_MATRIX, STORE_REGEN };
enum { STEPS_ALL, STEPS_LAST };

static const char *const dist_choices[] = {"auto", "he_uniform", "target_uniform", NULL};
static const char *const store_choices[] = {"matrix", "regen", NULL};
static const char *const steps_choices[] = {"all", "last", NULL};

static const plast_setting tpsgd_settings[] = {
    {"local_loss", PLAST_S_ENUM, "mse", 0, 0, plast_local_loss_names, 0,
     "loss between a hidden activation and its target: linear (= DRTP), mse, l1, bce"},
    {"proj_dist", PLAST_S_ENUM, "auto", 0, 0, dist_choices, 0,
     "target distribution: he_uniform (DRTP's), target_uniform (inside the activation's "
     "range), auto = he_uniform for linear, else target_uniform"},
    {"proj_store", PLAST_S_ENUM, "matrix", 0, 0, store_choices, 0,
     "keep each P_k in memory (matrix) or regenerate the selected rows (regen)"},
    {"rnn_target_steps", PLAST_S_ENUM, "all", 0, 0, steps_choices, 0,
     "rnn blocks: the steps whose hidden state is pulled towards the target: all "
     "(the gradient is averaged over them) or only the last"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

struct plast_rule {
    plast_model *model;
    plast_local_loss loss;
    int last_step_only; /* rnn_target_steps = last */
    plast_proj *proj;   /* one per hidden block */
    plast_layer **rnn;  /* per hidden block: its rnn layer, run here, or NULL */
};

static void tpsgd_destroy(plast_rule *r)
{
    if (!r)
        return;
    plast_mem *mem = plast_model_mem(r->model);
    for (int k = 0; r->proj && k < plast_model_nblocks(r->model) - 1; k++)
        plast_proj_fini(&r->proj[k]);
    plast_mem_free(mem, r->proj);
    plast_mem_free(mem, r->rnn);
    plast_mem_free(mem, r);
}

/* Block k's rnn layer if its trainable layer is one, else NULL. */
static plast_layer *rnn_of(plast_model *m, int k)
{
    const plast_block *b = plast_model_block(m, k);
    if (b->trainable < 0)
        return NULL;
    plast_layer *l = plast_model_layer(m, b->trainable);
    return plast_rnn_info(l, NULL, NULL, NULL, NULL) == PLAST_OK ? l : NULL;
}

/* An rnn block is the rnn alone (views such as flatten aside): its tanh
 * states are the activation the targets are for, and no other layer is
 * run by the step loop. */
static int check_rnn_block(const plast_rule *r, int k, const plast_layer *rnn, plast_err *e)
{
    const plast_block *b = plast_model_block(r->model, k);
    for (int i = b->first; i <= b->last; i++) {
        const plast_layer *l = plast_model_layer(r->model, i);
        if (l != rnn && !(l->ops->flags & PLAST_LAYER_VIEW))
            return plast_err_set(e, PLAST_E_UNSUPPORTED,
                                 "tpsgd: layer '%s' (%s) shares block %d with rnn '%s'; tpsgd "
                                 "trains an rnn without bptt only alone in its block (its "
                                 "states are already tanh)",
                                 l->name, l->ops->name, k, rnn->name);
    }
    if (r->loss == PLAST_LOCAL_BCE)
        return plast_err_set(e, PLAST_E_UNSUPPORTED,
                             "tpsgd: local_loss = bce needs sigmoid units, found rnn '%s' "
                             "(tanh states) in block %d",
                             rnn->name, k);
    return PLAST_OK;
}

/* P_k over block k's activation output (an rnn's: its units, the same
 * target at every step), He-uniform or centred in the activation's
 * range. */
static int setup_block(plast_rule *r, int k, int dist, int store, plast_err *e)
{
    plast_model *m = r->model;
    plast_layer *rnn = rnn_of(m, k);
    int rc = rnn ? check_rnn_block(r, k, rnn, e) : PLAST_OK, units = 0;
    if (!rc)
        rc = plast_local_check_block(m, k, "tpsgd", r->loss, e);
    if (rc)
        return rc;
    size_t n = plast_shape_size(&plast_model_layer(m, plast_local_inject(m, k))->out);
    if (rnn && plast_rnn_info(rnn, &units, NULL, NULL, NULL) == PLAST_OK)
        n = (size_t)units;
    r->rnn[k] = rnn;
    float offset = 0.0f, bound = plast_proj_he_bound(n);
    if (dist == DIST_TARGET || (dist == DIST_AUTO && r->loss != PLAST_LOCAL_LINEAR))
        plast_local_target_range(m, k, &offset, &bound);
    return plast_proj_init_offset(&r->proj[k], plast_model_mem(m), plast_model_seed(m),
                                  (uint32_t)k, plast_model_classes(m), n, offset, bound,
                                  store == STORE_MATRIX, e);
}

/* The output block learns from the model loss through its own backward:
 * for an rnn that would be BPTT. */
static int check_output_block(plast_model *m, int k, plast_err *e)
{
    const plast_layer *rnn = rnn_of(m, k);
    if (rnn)
        return plast_err_set(e, PLAST_E_UNSUPPORTED,
                             "tpsgd: the output block's rnn '%s' would need backpropagation "
                             "through time; end the model with a dense layer",
                             rnn->name);
    return plast_local_check_block(m, k, "tpsgd", PLAST_LOCAL_LINEAR, e);
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
    r->last_step_only = plast_args_enum(a, "rnn_target_steps") == STEPS_LAST;
    size_t nk = (size_t)(hidden > 0 ? hidden : 1);
    r->proj = plast_mem_calloc(mem, PLAST_MEM_RULE, nk * sizeof *r->proj);
    r->rnn = plast_mem_calloc(mem, PLAST_MEM_RULE, nk * sizeof *r->rnn);
    int rc = r->proj && r->rnn ? PLAST_OK : plast_err_set(e, PLAST_E_NOMEM, "tpsgd: out of memory");
    if (!rc)
        rc = check_output_block(m, hidden, e);
    if (!rc) /* each block is stepped before the next one's backward */
        rc = plast_model_share_grads(m, e);
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

/* ---- rnn blocks, without BPTT ---- */

/* Work space of one rnn block, [batch, units] each, one scratch block. */
typedef struct rnn_work {
    plast_real *theta, *h_prev, *h, *delta;
} rnn_work;

static int rnn_work_alloc(rnn_work *w, plast_mem *mem, size_t bu, plast_err *e)
{
    plast_real *p = plast_mem_alloc(mem, PLAST_MEM_SCRATCH, 4 * bu * sizeof *p);
    *w = p ? (rnn_work){p, p + bu, p + 2 * bu, p + 3 * bu} : (rnn_work){NULL, NULL, NULL, NULL};
    if (!p)
        return plast_err_set(e, PLAST_E_NOMEM, "tpsgd: out of memory for an rnn block's states");
    return PLAST_OK;
}

/* delta = dl(h, theta)/dh * scale (.) (1 - h^2), the tanh's f' from its
 * output as the tanh layer computes it. */
static void rnn_delta(plast_local_loss loss, const rnn_work *w, size_t bu, float scale)
{
    plast_local_gradient(loss, w->h, w->theta, bu, scale, w->delta);
    for (size_t i = 0; i < bu; i++)
        w->delta[i] *= 1.0f - w->h[i] * w->h[i];
}

/* h [batch, units] into step t of the sequence y [batch, steps, units]. */
static void store_step(plast_real *y, const plast_real *h, int batch, int steps, int units, int t)
{
    size_t u = (size_t)units;
    for (int s = 0; s < batch; s++)
        memcpy(y + ((size_t)s * (size_t)steps + (size_t)t) * u, h + (size_t)s * u,
               u * sizeof *y);
}

/* The time loop of rnn `l` on x with the targets in w->theta; y gets h_S
 * or the whole sequence. */
static void rnn_time_loop(const plast_rule *r, plast_layer *l, const plast_tensor *x,
                          plast_tensor *y, rnn_work *w)
{
    int U, S, F, sequence, B = plast_tensor_batch(x);
    plast_rnn_info(l, &U, &S, &F, &sequence);
    size_t bu = (size_t)B * (size_t)U;
    int first = r->last_step_only ? S - 1 : 0, ldx = S * F;
    float scale = B > 0 ? 1.0f / ((float)B * (float)(S - first)) : 0.0f;
    for (int t = 0; t < S; t++) {
        const plast_real *x_t = x->data + (size_t)t * (size_t)F, *prev = t ? w->h_prev : NULL;
        plast_rnn_step(l, B, x_t, ldx, prev, w->h);
        if (t >= first) {
            rnn_delta(r->loss, w, bu, scale);
            plast_rnn_step_grad(l, B, w->delta, x_t, ldx, prev);
        }
        if (sequence)
            store_step(y->data, w->h, B, S, U, t);
        plast_real *swap = w->h_prev; /* h_t is the next step's constant input */
        w->h_prev = w->h;
        w->h = swap;
    }
    if (!sequence)
        memcpy(y->data, w->h_prev, bu * sizeof *y->data);
}

/* Block k on x, its output into y (allocated).  Stacked rnns are
 * successive blocks, so the sequence one hands to the next (y, B*S*H with
 * output = sequence) is stored between them; a single rnn keeps only the
 * [B, H] arrays of rnn_work, whatever S. */
static int train_rnn_block(plast_rule *r, int k, const plast_batch *b, const plast_tensor *x,
                           plast_tensor *y, plast_err *e)
{
    plast_model *m = r->model;
    plast_mem *mem = plast_model_mem(m);
    plast_layer *l = r->rnn[k];
    int U, S, F, B = plast_tensor_batch(x);
    plast_rnn_info(l, &U, &S, &F, NULL);
    if (plast_tensor_sample_size(x) != (size_t)S * (size_t)F || B != b->n)
        return plast_err_set(e, PLAST_E_INVAL,
                             "tpsgd: rnn '%s': expected %d samples of %d x %d values, found %d "
                             "of %zu",
                             l->name, b->n, S, F, B, plast_tensor_sample_size(x));
    rnn_work w;
    int rc = rnn_work_alloc(&w, mem, (size_t)B * (size_t)U, e);
    if (rc)
        return rc;
    const plast_shape *out = &plast_model_layer(m, plast_model_block(m, k)->last)->out;
    rc = plast_tensor_alloc(y, mem, PLAST_MEM_ACTIVATIONS, B, out, e);
    if (rc == PLAST_OK) {
        for (int i = 0; i < B; i++) /* the same target at every step */
            plast_proj_row(&r->proj[k], b->labels[i], w.theta + (size_t)i * (size_t)U);
        rnn_time_loop(r, l, x, y, &w);
    }
    plast_mem_free(mem, w.theta);
    return rc;
}

/* The pass's runner: rnn blocks here, the others by the core. */
static int run_block(void *user, int k, const plast_tensor *x, plast_tensor *y, plast_err *e)
{
    tpsgd_pass *p = user;
    plast_model *m = p->r->model;
    if (k >= plast_model_nblocks(m) - 1 || !p->r->rnn[k])
        return PLAST_BLOCK_DEFAULT;
    int rc = train_rnn_block(p->r, k, p->b, x, y, e);
    if (!rc)
        plast_model_step_block(m, k);
    return rc;
}

static int tpsgd_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    tpsgd_pass p = {r, b, st};
    return plast_model_local_pass2(r->model, b, train_block, run_block, &p, e);
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
