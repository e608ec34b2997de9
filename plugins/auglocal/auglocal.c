/* auglocal.c - AugLocal, supervised local learning with augmented
 * auxiliary networks (Ma, Wu, Si, Tan, ICLR 2024; ALGORITHMS.md §6).
 *
 * The model's blocks before its head are AugLocal's L layers
 * (plast/auxnet.h says how the head is found).  With depth d, layers
 * 0..L-d-2 are local modules: layer l is trained through its own
 * auxiliary net G_l, a fresh copy of the architecture of layers S_l plus
 * gap -> [batchnorm] -> dense, on the cross-entropy of G_l's logits; the
 * gradient G_l sends back stops at layer l's input.  Layers L-d-1..L-1 and
 * the head form the last module, trained by backpropagation on the
 * model's loss.  Per batch:
 *
 *   for l in local modules: forward layer l, forward G_l on its output
 *     (no copy), loss, backward through G_l to its input, backward
 *     through layer l (parameter gradients only), step layer l and G_l,
 *     free G_l's activations and layer l's input; the output (a constant
 *     for what follows) is the next input
 *   last module: forward, loss, backward, step
 *
 * so at most one module and its auxiliary net hold activations.  Every
 * parameter gets exactly one loss's gradient and every output is computed
 * before its block steps, so step = module gives the bits of step = batch
 * (one optimiser step after the whole batch, as the reference code).
 *
 * Each G_l has its own optimiser, made like the model's (same type,
 * hyper-parameters and schedule, at the model's current learning rate);
 * its weights, gradients and optimiser state come from the model's memory
 * in the weights, gradients and optimizer categories, because they are
 * trained parameters like the model's: the tracker then shows AugLocal's
 * parameter growth where the parameters are counted.  Only the model is
 * evaluated and exported; checkpoints keep the auxiliary nets (resume). */
#include <stdio.h>
#include <string.h>

#include <plast/auxnet.h>
#include <plast/plast.h>

enum { STEP_MODULE, STEP_BATCH };

static const char *const step_choices[] = {"module", "batch", NULL};

static const plast_setting auglocal_settings[] = {
    {"aux_depth", PLAST_S_INT, "2", 0, 1e6, NULL, 0,
     "layers each auxiliary net copies (d < L); 0 = greedy local learning (head only)"},
    {"pyramid", PLAST_S_BOOL, "true", 0, 0, NULL, 0,
     "pyramidal depth: auxiliary nets get shallower towards the top"},
    {"tau", PLAST_S_REAL, "0.5", 0, 1, NULL, 0, "pyramid: how fast the depth falls"},
    {"selection", PLAST_S_ENUM, "uniform", 0, 0, plast_aux_select_names, 0,
     "layers an auxiliary net copies: uniform (spread up to the top) or sequential"},
    {"step", PLAST_S_ENUM, "module", 0, 0, step_choices, 0,
     "module: step each module after its backward; batch: one step per batch (same bits)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

#define CKPT_VERSION 2u

typedef struct aux_module {
    plast_model *net;   /* G_l */
    plast_optim *optim;
    int depth;          /* d_l */
    int ncopies;
    int *copies;        /* S_l, into the rule's sel array */
} aux_module;

struct plast_rule {
    plast_model *model;
    int L, d, nloc, pyramid, selection, step;
    double tau;
    aux_module *aux;         /* nloc */
    int *sel;                /* nloc * L */
    plast_block_run *runs;   /* the model's blocks (last module) */
    plast_block_run *aux_runs;
    int max_aux_blocks;
};

static void auglocal_destroy(plast_rule *r)
{
    if (!r)
        return;
    plast_mem *mem = plast_model_mem(r->model);
    for (int l = 0; r->aux && l < r->nloc; l++) {
        plast_optim_destroy(r->aux[l].optim);
        plast_model_destroy(r->aux[l].net);
    }
    plast_mem_free(mem, r->aux);
    plast_mem_free(mem, r->sel);
    plast_mem_free(mem, r->runs);
    plast_mem_free(mem, r->aux_runs);
    plast_mem_free(mem, r);
}

static int read_settings(plast_rule *r, const plast_args *a, plast_err *e)
{
    r->d = (int)plast_args_int(a, "aux_depth");
    r->pyramid = plast_args_bool(a, "pyramid");
    r->tau = plast_args_real(a, "tau");
    r->selection = plast_args_enum(a, "selection");
    r->step = plast_args_enum(a, "step");
    r->L = plast_auglocal_layers(r->model);
    if (r->L < 1)
        return plast_err_set(e, PLAST_E_INVAL,
                             "auglocal needs layers before the model's head, found a single block");
    if (r->d >= r->L)
        return plast_err_at(e, PLAST_E_PARSE, plast_args_file(a), plast_args_line(a, "aux_depth"),
                            "[%s] aux_depth: expected at most %d (the model has L = %d layers "
                            "before its head), found %d",
                            plast_args_section(a), r->L - 1, r->L, r->d);
    if (!plast_model_optim(r->model))
        return plast_err_set(e, PLAST_E_INVAL, "auglocal: the model has no optimizer attached");
    r->nloc = plast_auglocal_modules(r->L, r->d);
    return PLAST_OK;
}

static int alloc_state(plast_rule *r, plast_err *e)
{
    plast_mem *mem = plast_model_mem(r->model);
    size_t nloc = (size_t)(r->nloc ? r->nloc : 1);
    r->aux = plast_mem_calloc(mem, PLAST_MEM_RULE, nloc * sizeof *r->aux);
    r->sel = plast_mem_calloc(mem, PLAST_MEM_RULE, nloc * (size_t)r->L * sizeof *r->sel);
    r->runs = plast_mem_calloc(mem, PLAST_MEM_RULE,
                               (size_t)plast_model_nblocks(r->model) * sizeof *r->runs);
    if (!r->aux || !r->sel || !r->runs)
        return plast_err_set(e, PLAST_E_NOMEM, "auglocal: out of memory");
    return PLAST_OK;
}

/* G_l and its optimiser, attached like the model (threads, CE loss). */
static int build_module(plast_rule *r, int l, plast_err *e)
{
    aux_module *x = &r->aux[l];
    plast_model *m = r->model;
    x->depth = plast_auglocal_depth(r->L, r->d, r->pyramid, r->tau, l);
    x->copies = r->sel + (size_t)l * (size_t)r->L;
    x->ncopies = plast_auglocal_select(r->L, l, x->depth, (plast_aux_select)r->selection,
                                       x->copies);
    int rc = plast_auxnet_create(&x->net, m, l, x->copies, x->ncopies, x->depth <= 1, e);
    if (rc)
        return rc;
    rc = plast_optim_create_like(&x->optim, plast_model_optim(m), plast_model_nparams(x->net),
                                 plast_model_mem(m), e);
    if (rc)
        return rc;
    plast_ctx ctx = plast_model_ctx(m, 1);
    plast_model_attach(x->net, &plast_loss_softmax_ce, x->optim, ctx.threads);
    int nb = plast_model_nblocks(x->net);
    r->max_aux_blocks = nb > r->max_aux_blocks ? nb : r->max_aux_blocks;
    return PLAST_OK;
}

static int auglocal_create(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e)
{
    plast_mem *mem = plast_model_mem(m);
    plast_rule *r = plast_mem_calloc(mem, PLAST_MEM_RULE, sizeof *r);
    if (!r)
        return plast_err_set(e, PLAST_E_NOMEM, "auglocal: out of memory");
    r->model = m;
    int rc = read_settings(r, a, e);
    if (!rc)
        rc = alloc_state(r, e);
    for (int l = 0; l < r->nloc && !rc; l++)
        rc = build_module(r, l, e);
    if (!rc) {
        size_t n = (size_t)(r->max_aux_blocks ? r->max_aux_blocks : 1);
        r->aux_runs = plast_mem_calloc(mem, PLAST_MEM_RULE, n * sizeof *r->aux_runs);
        if (!r->aux_runs)
            rc = plast_err_set(e, PLAST_E_NOMEM, "auglocal: out of memory");
    }
    if (rc) {
        auglocal_destroy(r);
        return rc;
    }
    *out = r;
    return PLAST_OK;
}

/* ---- one batch ---- */

static void release_runs(plast_model *m, plast_block_run *runs, int from, int to)
{
    for (int k = to; k >= from; k--)
        plast_block_release(m, &runs[k], NULL);
}

/* Forward G_l on y (the module's output, read in place), its loss, and
 * its backward down to its input: *dy gets dLoss/dy. */
static int aux_pass(plast_rule *r, int l, const plast_tensor *y, const plast_batch *b,
                    plast_tensor *dy, plast_err *e)
{
    plast_model *g = r->aux[l].net;
    plast_model_set_step(g, b->step);
    plast_ctx ctx = plast_model_ctx(g, 1);
    int n = plast_model_nblocks(g), rc;
    const plast_tensor *x = y;
    for (int a = 0; a < n; a++) {
        if ((rc = plast_block_forward(g, a, x, &r->aux_runs[a], &ctx, e))) {
            release_runs(g, r->aux_runs, 0, a - 1);
            return rc;
        }
        x = plast_block_output(&r->aux_runs[a]);
    }
    plast_stats st;
    plast_tensor d;
    if ((rc = plast_rule_loss(g, x, b, &st, &d, e))) {
        release_runs(g, r->aux_runs, 0, n - 1);
        return rc;
    }
    for (int a = n - 1; a >= 0; a--) {
        plast_block_run *run = &r->aux_runs[a];
        plast_tensor dx;
        rc = plast_block_backward(g, run, run->first + run->n - 1, &d, &dx, &ctx, e);
        plast_block_release(g, run, NULL);
        if (rc) {
            release_runs(g, r->aux_runs, 0, a - 1);
            return rc;
        }
        d = dx;
    }
    *dy = d;
    return PLAST_OK;
}

static void step_module(plast_rule *r, int l)
{
    plast_model_step_block(r->model, l);
    plast_model_step_all(r->aux[l].net);
}

/* Local module l on x: trained through G_l; *next gets its output. */
static int local_module(plast_rule *r, int l, const plast_tensor *x, const plast_batch *b,
                        plast_tensor *next, plast_err *e)
{
    plast_model *m = r->model;
    plast_ctx ctx = plast_model_ctx(m, 1);
    plast_block_run run;
    memset(next, 0, sizeof *next);
    int rc = plast_block_forward(m, l, x, &run, &ctx, e);
    if (rc)
        return rc;
    plast_tensor dy;
    rc = aux_pass(r, l, plast_block_output(&run), b, &dy, e);
    if (!rc)
        rc = plast_block_backward(m, &run, run.first + run.n - 1, &dy, NULL, &ctx, e);
    plast_block_release(m, &run, rc ? NULL : next);
    if (!rc && r->step == STEP_MODULE)
        step_module(r, l);
    return rc;
}

/* Blocks nloc.. and the head by backpropagation on the model's loss. */
static int last_module(plast_rule *r, const plast_tensor *x, const plast_batch *b,
                       plast_stats *st, plast_err *e)
{
    plast_model *m = r->model;
    plast_ctx ctx = plast_model_ctx(m, 1);
    int first = r->nloc, K = plast_model_nblocks(m), rc;
    for (int k = first; k < K; k++) {
        if ((rc = plast_block_forward(m, k, x, &r->runs[k], &ctx, e))) {
            release_runs(m, r->runs, first, k - 1);
            return rc;
        }
        x = plast_block_output(&r->runs[k]);
    }
    plast_tensor dy, dx;
    if ((rc = plast_rule_loss(m, x, b, st, &dy, e))) {
        release_runs(m, r->runs, first, K - 1);
        return rc;
    }
    for (int k = K - 1; k >= first; k--) {
        plast_block_run *run = &r->runs[k];
        rc = plast_block_backward(m, run, run->first + run->n - 1, &dy, k > first ? &dx : NULL,
                                  &ctx, e);
        plast_block_release(m, run, NULL);
        if (rc) {
            release_runs(m, r->runs, first, k - 1);
            return rc;
        }
        if (r->step == STEP_MODULE)
            plast_model_step_block(m, k);
        dy = dx;
    }
    return PLAST_OK;
}

static int auglocal_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    double lr = plast_optim_lr(plast_model_optim(r->model));
    for (int l = 0; l < r->nloc; l++)
        plast_optim_begin(r->aux[l].optim, lr);
    plast_tensor cur;
    memset(&cur, 0, sizeof cur);
    const plast_tensor *x = &b->x;
    int rc = PLAST_OK;
    for (int l = 0; l < r->nloc && !rc; l++) {
        plast_tensor next;
        rc = local_module(r, l, x, b, &next, e);
        if (l == 0)
            plast_batch_drop_input(b);
        else
            plast_tensor_free(&cur);
        cur = next;
        x = &cur;
    }
    if (!rc)
        rc = last_module(r, x, b, st, e);
    plast_tensor_free(&cur);
    if (rc || r->step != STEP_BATCH)
        return rc;
    plast_model_step_all(r->model);
    for (int l = 0; l < r->nloc; l++)
        plast_model_step_all(r->aux[l].net);
    return PLAST_OK;
}

/* ---- reporting ---- */

static size_t trained_params(plast_model *g)
{
    size_t n = 0;
    for (int i = 0; i < plast_model_nlayers(g); i++) {
        const plast_layer *l = plast_model_layer(g, i);
        for (int p = 0; p < l->nparams; p++)
            if (!(l->param[p].flags & PLAST_PARAM_BUFFER))
                n += l->param[p].count;
    }
    return n;
}

static size_t auglocal_aux_params(const plast_rule *r)
{
    size_t n = 0;
    for (int l = 0; l < r->nloc; l++)
        n += trained_params(r->aux[l].net);
    return n;
}

/* Output shape of copy `pos` in G: its last layer "a<pos>_...". */
static const plast_shape *copy_shape(plast_model *g, int pos)
{
    char prefix[16];
    int n = snprintf(prefix, sizeof prefix, "a%d_", pos);
    const plast_shape *s = NULL;
    for (int i = 0; i < plast_model_nlayers(g); i++) {
        const plast_layer *l = plast_model_layer(g, i);
        if (!strncmp(l->name, prefix, (size_t)n))
            s = &l->out;
    }
    return s;
}

static void append(char *buf, size_t n, const char *fmt, const char *s, const char *t)
{
    size_t len = strlen(buf);
    if (len < n)
        snprintf(buf + len, n - len, fmt, s, t);
}

static void describe_module(const plast_rule *r, int l, char *buf, size_t n)
{
    const aux_module *x = &r->aux[l];
    plast_model *m = r->model;
    snprintf(buf, n, "layer %d (%s): depth %d, copies", l, plast_model_block_name(m, l), x->depth);
    for (int i = 0; i < x->ncopies; i++) {
        char s[48];
        plast_shape_str(copy_shape(x->net, i), s, sizeof s);
        append(buf, n, i ? ", %s (%s)" : " %s (%s)", plast_model_block_name(m, x->copies[i]), s);
    }
    if (x->ncopies == 0)
        append(buf, n, "%s%s", " none", "");
    append(buf, n, ", head %s%s",
           plast_model_find_layer(x->net, "head_gap") >= 0 ? "gap-" : "",
           plast_model_find_layer(x->net, "head_bn") >= 0 ? "batchnorm-dense" : "dense");
    char count[48];
    snprintf(count, sizeof count, "%zu", trained_params(x->net));
    append(buf, n, "; %s %s", count, "parameters");
}

static void auglocal_describe(const plast_rule *r, void (*line)(void *user, const char *text),
                              void *user)
{
    plast_model *m = r->model;
    int K = plast_model_nblocks(m);
    char buf[1024];
    snprintf(buf, sizeof buf,
             "L = %d layers (%s .. %s), head %s%s; aux_depth %d, %s, %s selection, "
             "step per %s",
             r->L, plast_model_block_name(m, 0), plast_model_block_name(m, r->L - 1),
             plast_model_block_name(m, r->L), K - r->L > 1 ? " .." : "", r->d,
             r->pyramid && r->d > 0 ? "pyramid" : "no pyramid",
             plast_aux_select_names[r->selection], step_choices[r->step]);
    if (r->pyramid && r->d > 0) {
        size_t len = strlen(buf);
        snprintf(buf + len, sizeof buf - len, " (tau %g)", r->tau);
    }
    line(user, buf);
    for (int l = 0; l < r->nloc; l++) {
        describe_module(r, l, buf, sizeof buf);
        line(user, buf);
    }
    snprintf(buf, sizeof buf, "last module: layers %d..%d (%s .. %s) and the head, by backpropagation",
             r->nloc, r->L - 1, plast_model_block_name(m, r->nloc),
             plast_model_block_name(m, r->L - 1));
    line(user, buf);
    snprintf(buf, sizeof buf, "auxiliary parameters: %zu", auglocal_aux_params(r));
    line(user, buf);
}

/* ---- checkpoints: every auxiliary net's values and optimiser ---- */

static int save_module(const aux_module *x, plast_writer *w, plast_err *e)
{
    int rc = plast_model_save_params(x->net, w, e);
    return rc ? rc : plast_optim_save(x->optim, plast_model_nparams(x->net), w, e);
}

static int auglocal_save_state(const plast_rule *r, plast_writer *w, plast_err *e)
{
    int rc = plast_writer_u32(w, CKPT_VERSION, e);
    if (!rc)
        rc = plast_writer_u32(w, (uint32_t)r->nloc, e);
    for (int l = 0; l < r->nloc && !rc; l++)
        rc = save_module(&r->aux[l], w, e);
    return rc;
}

static int load_module(aux_module *x, plast_reader *rd, plast_err *e)
{
    int rc = plast_model_load_params(x->net, rd, e);
    return rc ? rc : plast_optim_load(x->optim, plast_model_nparams(x->net), rd, e);
}

static int auglocal_load_state(plast_rule *r, plast_reader *rd, plast_err *e)
{
    uint32_t version, n;
    int rc = plast_reader_u32(rd, &version, e);
    if (!rc)
        rc = plast_reader_u32(rd, &n, e);
    if (rc)
        return rc;
    if (version != CKPT_VERSION)
        return plast_err_at(e, PLAST_E_DATA, plast_reader_path(rd), 0,
                            "auglocal state version %u, expected %u", version, CKPT_VERSION);
    if ((int)n != r->nloc)
        return plast_err_at(e, PLAST_E_DATA, plast_reader_path(rd), 0,
                            "checkpoint has %u auglocal auxiliary nets, this run has %d", n,
                            r->nloc);
    for (int l = 0; l < r->nloc && !rc; l++)
        rc = load_module(&r->aux[l], rd, e);
    return rc;
}

static const plast_rule_ops auglocal_ops = {
    .size = sizeof(plast_rule_ops),
    .name = "auglocal",
    .settings = auglocal_settings,
    .summary = "local modules trained through augmented auxiliary networks (AugLocal)",
    .create = auglocal_create,
    .train_batch = auglocal_train_batch,
    .destroy = auglocal_destroy,
    .save_state = auglocal_save_state,
    .load_state = auglocal_load_state,
    .aux_params = auglocal_aux_params,
    .describe = auglocal_describe,
};

static const plast_rule_ops *const auglocal_rules[] = {&auglocal_ops, NULL};

PLAST_PLUGIN(.name = "auglocal", .version = "0.1.0", .license = "MIT",
             .summary = "AugLocal: supervised local learning with augmented auxiliary networks",
             .rules = auglocal_rules);
