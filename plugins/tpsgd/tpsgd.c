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
 * not grow with the sequence length.  Stacked rnn blocks (each reading the
 * sequence of the one before) advance together in one time loop, layer l
 * taking h^{l-1}_t as its x_t, so no sequence is stored between them.
 *
 * P_k is offset + proj_scale * U(-bound, bound); with conv_target =
 * channel a conv2d block's P_k has one entry per channel, broadcast over
 * the map by plast_proj (H*W times less memory). */
#include <stdint.h>
#include <string.h>

#include <plast/plast.h>

enum { DIST_AUTO, DIST_HE, DIST_TARGET };
enum { STORE_MATRIX, STORE_REGEN };
enum { STEPS_ALL, STEPS_LAST };
enum { CONV_MAP, CONV_CHANNEL };

static const char *const dist_choices[] = {"auto", "he_uniform", "target_uniform", NULL};
static const char *const store_choices[] = {"matrix", "regen", NULL};
static const char *const steps_choices[] = {"all", "last", NULL};
static const char *const conv_choices[] = {"map", "channel", NULL};

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
    {"conv_target", PLAST_S_ENUM, "map", 0, 0, conv_choices, 0,
     "conv2d blocks: one target per unit of the activation map (map: P_k is classes x "
     "C*H*W) or one per channel, the same at every position (channel: P_k is classes x C, "
     "H*W times smaller); other blocks ignore it"},
    {"proj_scale", PLAST_S_REAL, "1", 0, 1e6, NULL, PLAST_S_MIN_OPEN,
     "stretches P_k around its offset: multiplies the He bound (he_uniform) or gamma "
     "(target_uniform); the offset stays"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* How the projections are drawn (the [rule.tpsgd] keys above). */
typedef struct proj_opts {
    int dist, store, conv;
    float scale;
} proj_opts;

struct plast_rule {
    plast_model *model;
    plast_local_loss loss;
    int last_step_only; /* rnn_target_steps = last */
    plast_proj *proj;   /* one per hidden block */
    plast_layer **rnn;  /* per hidden block: its rnn layer, run here, or NULL */
    int *stack_last;    /* per hidden rnn block: the last block of its stack */
    plast_real *acc;    /* gradients of a stack's layers after its first (zero
                           between batches); NULL without stacks */
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
    plast_mem_free(mem, r->stack_last);
    plast_mem_free(mem, r->acc);
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

/* A conv2d block's activation map [C, H, W]: *channels = C and *positions
 * = H*W; 0 for any other block (nothing written). */
static int conv_map(plast_model *m, int k, size_t *channels, int *positions)
{
    const plast_block *b = plast_model_block(m, k);
    const plast_shape *s = &plast_model_layer(m, plast_local_inject(m, k))->out;
    if (strcmp(plast_model_layer(m, b->trainable)->ops->name, "conv2d") != 0 || s->ndim != 3 ||
        (int64_t)s->dim[1] * s->dim[2] > INT32_MAX)
        return 0;
    *channels = (size_t)s->dim[0];
    *positions = s->dim[1] * s->dim[2];
    return 1;
}

/* P_k over block k's activation output (an rnn's: its units, the same
 * target at every step), He-uniform or centred in the activation's
 * range, its spread times proj_scale; with conv_target = channel one
 * entry per channel of a conv map. */
static int setup_block(plast_rule *r, int k, const proj_opts *o, plast_err *e)
{
    plast_model *m = r->model;
    plast_layer *rnn = rnn_of(m, k);
    int rc = rnn ? check_rnn_block(r, k, rnn, e) : PLAST_OK, units = 0, repeat = 1;
    if (!rc)
        rc = plast_local_check_block(m, k, "tpsgd", r->loss, e);
    if (rc)
        return rc;
    size_t n = plast_shape_size(&plast_model_layer(m, plast_local_inject(m, k))->out), entries;
    if (rnn && plast_rnn_info(rnn, &units, NULL, NULL, NULL) == PLAST_OK)
        n = (size_t)units;
    r->rnn[k] = rnn;
    entries = n;
    if (!rnn && o->conv == CONV_CHANNEL) /* other blocks ignore conv_target */
        conv_map(m, k, &entries, &repeat);
    float offset = 0.0f, bound = plast_proj_he_bound(n);
    if (o->dist == DIST_TARGET || (o->dist == DIST_AUTO && r->loss != PLAST_LOCAL_LINEAR))
        plast_local_target_range(m, k, &offset, &bound);
    return plast_proj_init_repeat(&r->proj[k], plast_model_mem(m), plast_model_seed(m),
                                  (uint32_t)k, plast_model_classes(m), entries, repeat, offset,
                                  bound * o->scale, o->store == STORE_MATRIX, e);
}

/* Does rnn `hi` read the sequence of rnn `lo` step by step: one h^lo_t per
 * step of its own, as many steps? */
static int reads_steps_of(const plast_layer *lo, const plast_layer *hi)
{
    int units, steps, sequence, hi_steps, hi_features;
    plast_rnn_info(lo, &units, &steps, NULL, &sequence);
    plast_rnn_info(hi, NULL, &hi_steps, &hi_features, NULL);
    return sequence && hi_steps == steps && hi_features == units;
}

/* Trainable values of a layer (its gradients). */
static size_t grad_count(const plast_layer *l)
{
    size_t n = 0;
    for (int q = 0; q < l->nparams; q++)
        if (!(l->param[q].flags & PLAST_PARAM_BUFFER))
            n += l->param[q].count;
    return n;
}

/* Group consecutive hidden rnn blocks into stacks run in one time loop,
 * and allocate the accumulators of the largest stack's later layers: the
 * model's shared gradient array holds one block at a time. */
static int setup_stacks(plast_rule *r, int hidden, plast_err *e)
{
    plast_mem *mem = plast_model_mem(r->model);
    size_t largest = 0;
    for (int k = hidden - 1; k >= 0; k--) {
        int joins = k + 1 < hidden && r->rnn[k] && r->rnn[k + 1] &&
                    reads_steps_of(r->rnn[k], r->rnn[k + 1]);
        r->stack_last[k] = joins ? r->stack_last[k + 1] : k;
        size_t later = 0;
        for (int j = k + 1; r->rnn[k] && j <= r->stack_last[k]; j++)
            later += grad_count(r->rnn[j]);
        largest = later > largest ? later : largest;
    }
    if (largest == 0)
        return PLAST_OK;
    r->acc = plast_mem_calloc(mem, PLAST_MEM_GRADIENTS, largest * sizeof *r->acc);
    if (!r->acc)
        return plast_err_set(e, PLAST_E_NOMEM,
                             "tpsgd: out of memory for the gradients of an rnn stack (%zu values)",
                             largest);
    return PLAST_OK;
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
    r->stack_last = plast_mem_calloc(mem, PLAST_MEM_RULE, nk * sizeof *r->stack_last);
    int rc = r->proj && r->rnn && r->stack_last
                 ? PLAST_OK
                 : plast_err_set(e, PLAST_E_NOMEM, "tpsgd: out of memory");
    if (!rc)
        rc = check_output_block(m, hidden, e);
    if (!rc) /* each block is stepped before the next one's backward */
        rc = plast_model_share_grads(m, e);
    proj_opts o = {plast_args_enum(a, "proj_dist"), plast_args_enum(a, "proj_store"),
                   plast_args_enum(a, "conv_target"), (float)plast_args_real(a, "proj_scale")};
    for (int k = 0; k < hidden && !rc; k++)
        rc = setup_block(r, k, &o, e);
    if (!rc)
        rc = setup_stacks(r, hidden, e);
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
    int done_through; /* the last block the runner has trained in this pass */
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

/* One layer of a stack in the time loop: its work arrays, [batch, units]
 * each, and where its gradients go. */
typedef struct rnn_unit {
    plast_layer *l;     /* the model's layer: its weights */
    plast_layer grad;   /* l, its gradient views moved to r->acc after the first layer */
    int units;
    plast_real *theta, *h_prev, *h, *delta;
} rnn_unit;

/* delta = dl(h, theta)/dh * scale (.) (1 - h^2), the tanh's f' from its
 * output as the tanh layer computes it. */
static void rnn_delta(plast_local_loss loss, const rnn_unit *u, size_t bu, float scale)
{
    plast_local_gradient(loss, u->h, u->theta, bu, scale, u->delta);
    for (size_t i = 0; i < bu; i++)
        u->delta[i] *= 1.0f - u->h[i] * u->h[i];
}

/* h [batch, units] into step t of the sequence y [batch, steps, units]. */
static void store_step(plast_real *y, const plast_real *h, int batch, int steps, int units, int t)
{
    size_t u = (size_t)units;
    for (int s = 0; s < batch; s++)
        memcpy(y + ((size_t)s * (size_t)steps + (size_t)t) * u, h + (size_t)s * u,
               u * sizeof *y);
}

/* The time loop of the stack u[0 .. L) on x with the targets in the
 * units' theta: at step t layer i reads x_t (i = 0) or h^{i-1}_t; y gets
 * the last layer's h_S or its whole sequence. */
static void stack_time_loop(const plast_rule *r, rnn_unit *u, int L, const plast_tensor *x,
                            plast_tensor *y)
{
    int S, F, sequence, B = plast_tensor_batch(x), top = u[L - 1].units;
    plast_rnn_info(u[0].l, NULL, &S, &F, NULL);
    plast_rnn_info(u[L - 1].l, NULL, NULL, NULL, &sequence);
    int first = r->last_step_only ? S - 1 : 0;
    float scale = B > 0 ? 1.0f / ((float)B * (float)(S - first)) : 0.0f;
    for (int t = 0; t < S; t++) {
        for (int i = 0; i < L; i++) {
            const plast_real *x_t = i ? u[i - 1].h : x->data + (size_t)t * (size_t)F;
            const plast_real *prev = t ? u[i].h_prev : NULL;
            int ldx = i ? u[i - 1].units : S * F;
            plast_rnn_step(u[i].l, B, x_t, ldx, prev, u[i].h);
            if (t >= first) {
                rnn_delta(r->loss, &u[i], (size_t)B * (size_t)u[i].units, scale);
                plast_rnn_step_grad(&u[i].grad, B, u[i].delta, x_t, ldx, prev);
            }
        }
        if (sequence)
            store_step(y->data, u[L - 1].h, B, S, top, t);
        for (int i = 0; i < L; i++) { /* h_t is the next step's constant input */
            plast_real *swap = u[i].h_prev;
            u[i].h_prev = u[i].h;
            u[i].h = swap;
        }
    }
    if (!sequence)
        memcpy(y->data, u[L - 1].h_prev, (size_t)B * (size_t)top * sizeof *y->data);
}

/* Layers k..k+L-1 into u: work arrays carved from `work`, the targets of
 * the batch's labels (the same at every step), and the gradient views of
 * every layer but the first moved to the accumulators (a copy of the
 * layer: the model's is untouched). */
static void stack_units(plast_rule *r, int k, int L, const plast_batch *b, rnn_unit *u,
                        plast_real *work)
{
    size_t at = 0;
    for (int i = 0; i < L; i++) {
        rnn_unit *unit = &u[i];
        unit->l = r->rnn[k + i];
        unit->grad = *unit->l;
        plast_rnn_info(unit->l, &unit->units, NULL, NULL, NULL);
        size_t bu = (size_t)b->n * (size_t)unit->units;
        unit->theta = work;
        unit->h_prev = work + bu;
        unit->h = work + 2 * bu;
        unit->delta = work + 3 * bu;
        work += 4 * bu;
        for (int q = 0; i > 0 && q < unit->grad.nparams; q++)
            if (!(unit->grad.param[q].flags & PLAST_PARAM_BUFFER)) {
                unit->grad.param[q].g = r->acc + at;
                at += unit->grad.param[q].count;
            }
        size_t u = (size_t)unit->units;
        for (int s = 0; s < b->n; s++) /* the same target at every step */
            plast_proj_row(&r->proj[k + i], b->labels[s], unit->theta + (size_t)s * u);
    }
}

/* One optimiser step per layer of the stack: block k's gradients are in
 * the model's shared array; each later block's are moved there from the
 * accumulators (the array is zero after the step before) and stepped. */
static void step_stack(plast_rule *r, int k, const rnn_unit *u, int L)
{
    plast_model *m = r->model;
    plast_model_step_block(m, k);
    for (int i = 1; i < L; i++) {
        const plast_layer *l = u[i].l;
        for (int q = 0; q < l->nparams; q++) {
            plast_real *acc = u[i].grad.param[q].g;
            if (!acc || acc == l->param[q].g)
                continue;
            memcpy(l->param[q].g, acc, l->param[q].count * sizeof *acc);
            memset(acc, 0, l->param[q].count * sizeof *acc);
        }
        plast_model_step_block(m, k + i);
    }
}

/* The stack of blocks k..j on x, its output (block j's) into y
 * (allocated), each layer trained and stepped.  Only [batch, units]
 * arrays are alive whatever the number of steps, and y if block j hands
 * a sequence on. */
static int train_rnn_stack(plast_rule *r, int k, int j, const plast_batch *b,
                           const plast_tensor *x, plast_tensor *y, plast_err *e)
{
    plast_model *m = r->model;
    plast_mem *mem = plast_model_mem(m);
    int L = j - k + 1, S, F, B = plast_tensor_batch(x);
    plast_rnn_info(r->rnn[k], NULL, &S, &F, NULL);
    if (plast_tensor_sample_size(x) != (size_t)S * (size_t)F || B != b->n)
        return plast_err_set(e, PLAST_E_INVAL,
                             "tpsgd: rnn '%s': expected %d samples of %d x %d values, found %d "
                             "of %zu",
                             r->rnn[k]->name, b->n, S, F, B, plast_tensor_sample_size(x));
    size_t states = 0;
    for (int i = k; i <= j; i++) {
        int units;
        plast_rnn_info(r->rnn[i], &units, NULL, NULL, NULL);
        states += 4 * (size_t)B * (size_t)units;
    }
    rnn_unit *u = plast_mem_alloc(mem, PLAST_MEM_SCRATCH, (size_t)L * sizeof *u);
    plast_real *work = u ? plast_mem_alloc(mem, PLAST_MEM_SCRATCH, states * sizeof *work) : NULL;
    int rc = work ? PLAST_OK
                  : plast_err_set(e, PLAST_E_NOMEM, "tpsgd: out of memory for the states of "
                                                    "rnn '%s'",
                                  r->rnn[k]->name);
    if (!rc)
        rc = plast_tensor_alloc(y, mem, PLAST_MEM_ACTIVATIONS, B,
                                &plast_model_layer(m, plast_model_block(m, j)->last)->out, e);
    if (!rc) {
        stack_units(r, k, L, b, u, work);
        stack_time_loop(r, u, L, x, y);
        step_stack(r, k, u, L);
    }
    plast_mem_free(mem, work);
    plast_mem_free(mem, u);
    return rc;
}

/* The pass's runner: rnn stacks here (the blocks after a stack's first
 * are then done), the other blocks by the core. */
static int run_block(void *user, int k, const plast_tensor *x, plast_tensor *y, plast_err *e)
{
    tpsgd_pass *p = user;
    plast_model *m = p->r->model;
    if (k <= p->done_through)
        return PLAST_BLOCK_DONE;
    if (k >= plast_model_nblocks(m) - 1 || !p->r->rnn[k])
        return PLAST_BLOCK_DEFAULT;
    int j = p->r->stack_last[k], rc = train_rnn_stack(p->r, k, j, p->b, x, y, e);
    if (!rc)
        p->done_through = j;
    return rc;
}

static int tpsgd_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    tpsgd_pass p = {r, b, st, -1};
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
