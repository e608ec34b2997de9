/* qzoff.c - quantized zero-order forward gradients (Feng et al., "Stepping
 * Forward on the Last Mile", NeurIPS 2024; ALGORITHMS.md §5).
 *
 * Per step, for each of m probes: perturb the trained tensors by +eps z,
 * forward, loss; by -eps z, forward, loss; restore.  Then update every
 * trained element from the m loss differences and the regenerated z
 * (plast/zo.h).  No backward pass, no gradients, no optimiser state, no
 * stored activations: 2m forwards per update.  With whiten = true each
 * trained dense layer's [weight | bias] rows move along T z instead, T
 * from the second moment of the layer's input (plast/zo_whiten.h).
 *
 * fp32 perturbs the float weights.  Rounding makes w + eps z - eps z differ
 * from w, so every probe starts from a copy of the trained elements (rule
 * memory: 4 bytes per trained element), copied back after the probes: the
 * restore is exact.  16w8a and 8w8a train the codes of a fixed-point copy
 * of the model (plast/qmodel.h); the headroom clamp keeps perturbations
 * from saturating, so +delta, -2 delta, +delta restores every code without
 * a copy.  After each update the dequantised codes are written back into
 * the float model, so checkpoints hold what the codes say.
 *
 * Calibration (fixed point, or whiten = true): the first training batches
 * go to the activation calibration and the whitening moments until
 * `calibrate` images have been seen; the scales and whiteners are frozen
 * on the batch that reaches that count, and training starts on that same
 * batch.  The batches before it are not trained on
 * (their statistics come from the float model).  So ceil(calibrate / B)
 * batches calibrate and ceil(calibrate / B) - 1 updates are skipped. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <plast/plast.h>
#include <plast/qmodel.h>
#include <plast/zo.h>
#include <plast/zo_whiten.h>

enum { PREC_FP32, PREC_16W8A, PREC_8W8A };
enum { TRAIN_LAST, TRAIN_ALL, TRAIN_BIASES, TRAIN_LIST };

static const char *const est_choices[] = {"value", "sign", NULL};
static const char *const prec_choices[] = {"fp32", "16w8a", "8w8a", NULL};
static const char *const round_choices[] = {"nearest", "stochastic", NULL};

static const plast_setting qzoff_settings[] = {
    {"estimator", PLAST_S_ENUM, "sign", 0, 0, est_choices, 0,
     "update coefficient per probe: value = (Lp - Lm)/(2 eps) (m-SPSA), sign = sgn(Lp - Lm) "
     "(sign-m-SPSA)"},
    {"m", PLAST_S_INT, "1", 1, PLAST_ZO_MAX_PROBES, NULL, 0,
     "probes per update (each costs two forwards); their estimates are averaged"},
    {"eps", PLAST_S_REAL, "1e-3", 0, 1e3, NULL, PLAST_S_MIN_OPEN,
     "perturbation size: the weights are probed at w + eps z and w - eps z, z ~ N(0, I)"},
    {"eps_lsb", PLAST_S_REAL, "0", 0, 1e6, NULL, 0,
     "if > 0 (fixed point only): eps of each trained tensor is this many LSBs of its own "
     "scale, replacing eps"},
    {"precision", PLAST_S_ENUM, "16w8a", 0, 0, prec_choices, 0,
     "fp32 (float weights), 16w8a (int16 weights, int8 activations) or 8w8a"},
    {"train", PLAST_S_STRING, "last", 0, 0, NULL, 0,
     "what is trained: last (the output block: linear probing), all (every layer not "
     "frozen), biases, or a comma list of layer names"},
    {"round", PLAST_S_ENUM, "nearest", 0, 0, round_choices, 0,
     "fixed point: rounding of the code update, nearest (rint) or stochastic"},
    {"sparsity", PLAST_S_REAL, "0", 0, 1, NULL, PLAST_S_MAX_OPEN,
     "probability that an element sits a step out (neither perturbed nor updated)"},
    {"calibrate", PLAST_S_INT, "1000", 1, 1e9, NULL, 0,
     "fixed point or whiten: training images whose activations set the int8 scales and "
     "the whitening moments; the batches before the one reaching this count are not "
     "trained on"},
    {"per_channel", PLAST_S_BOOL, "false", 0, 0, NULL, 0,
     "fixed point: one weight scale per output channel instead of per tensor"},
    {"whiten", PLAST_S_BOOL, "false", 0, 0, NULL, 0,
     "perturb each trained dense layer's weight and bias rows along directions whitened by "
     "the second moment of its input, measured on the first `calibrate` training images "
     "(plast's extension, not in the paper; any precision)"},
    {"whiten_ridge", PLAST_S_REAL, "0.1", 0, 1e3, NULL, PLAST_S_MIN_OPEN,
     "whiten: added to the second moment (scaled to mean eigenvalue 1) before its inverse "
     "square root; larger is closer to isotropic directions"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct trained {
    int layer, param;
    uint64_t offset;      /* first element in the vector of trained elements */
    size_t count;
    float *w;             /* the float model's values */
    plast_qtensor *qt;    /* fixed point: its codes */
    double nonzero;       /* fixed point: fraction of non-zero delta codes (step 0);
                             < 0 until a whitened layer's whitener exists */
    int dense;            /* whitened layer it belongs to, or -1 */
} trained;

/* A dense layer whose [weight | bias] rows are perturbed along whitened
 * directions (plast/zo_whiten.h). */
typedef struct whitened {
    int layer, weight, bias; /* model layer; indices into the trained list */
    plast_zo_dense d;
    double *moments;         /* (n+1)^2 while the statistics are gathered */
    float *T;                /* (n+1)^2 once they are */
} whitened;

struct plast_rule {
    plast_model *model;
    int precision, train_mode;
    plast_zo zo;          /* the settings; seed, step, half_diff per step */
    int n;                /* trained tensors */
    trained *t;
    size_t elements;      /* trained elements */
    float *backup;        /* fp32: the trained elements before the probes */
    plast_qmodel *q;
    uint64_t calib_target, calib_seen; /* images of the warm-up (calibration, moments) */
    int calibrated;       /* warm-up over: activation scales and whiteners set */
    size_t clamped;       /* codes moved into the headroom at the start */
    double ridge;
    int nwh;              /* whitened layers */
    whitened *wh;
    double *wh_scratch;   /* shared by the whitened layers' calls */
};

#define SAVE_VERSION 2u

static const char *tensor_name(const plast_rule *r, const trained *t, char *buf, size_t n)
{
    const plast_layer *l = plast_model_layer(r->model, t->layer);
    snprintf(buf, n, "%s.%s", l->name, l->param[t->param].name);
    return buf;
}

static void qzoff_destroy(plast_rule *r)
{
    if (!r)
        return;
    plast_mem *mem = plast_model_mem(r->model);
    for (int i = 0; i < r->nwh; i++) {
        plast_mem_free(mem, r->wh[i].moments);
        plast_mem_free(mem, r->wh[i].T);
    }
    plast_mem_free(mem, r->wh);
    plast_mem_free(mem, r->wh_scratch);
    plast_qmodel_destroy(r->q);
    plast_mem_free(mem, r->backup);
    plast_mem_free(mem, r->t);
    plast_mem_free(mem, r);
}

/* ---- which tensors train ---- */

/* The next item of the comma list at *p (spaces around it trimmed, length
 * in *k), moving *p past its comma; NULL at the end. */
static const char *next_item(const char **p, size_t *k)
{
    if (!**p)
        return NULL;
    const char *s = *p + strspn(*p, " \t");
    size_t n = strcspn(s, ",");
    for (*k = n; *k && (s[*k - 1] == ' ' || s[*k - 1] == '\t');)
        (*k)--;
    *p = s + n + (s[n] == ',');
    return s;
}

/* 1 if `name` is an item of the comma list `list`. */
static int in_list(const char *list, const char *name)
{
    size_t k, len = strlen(name);
    for (const char *s; (s = next_item(&list, &k));)
        if (k == len && !strncmp(s, name, len))
            return 1;
    return 0;
}

/* Every item of the list names a layer with parameters, once. */
static int check_list(plast_model *m, const char *list, plast_err *e)
{
    char item[64];
    size_t k, len = strlen(list);
    while (len && (list[len - 1] == ' ' || list[len - 1] == '\t'))
        len--;
    int trailing_comma = len && list[len - 1] == ',';
    for (const char *p = list, *s; (s = next_item(&p, &k));) {
        if (!k || k >= sizeof item || trailing_comma)
            return plast_err_set(e, PLAST_E_PARSE,
                                 "train: expected last, all, biases or a comma list of layer "
                                 "names, found \"%s\"", list);
        memcpy(item, s, k);
        item[k] = 0;
        int i = plast_model_find_layer(m, item);
        if (i < 0)
            return plast_err_set(e, PLAST_E_PARSE, "train: the model has no layer named '%s'",
                                 item);
        if (!plast_model_layer(m, i)->nparams)
            return plast_err_set(e, PLAST_E_PARSE, "train: layer '%s' has no parameters", item);
        if (in_list(p, item))
            return plast_err_set(e, PLAST_E_PARSE, "train: layer '%s' is named twice", item);
    }
    return PLAST_OK;
}

static int wants(const plast_rule *r, const char *list, const plast_layer *l, int p)
{
    const plast_param *pa = &l->param[p];
    if (pa->flags & PLAST_PARAM_BUFFER)
        return 0;
    const plast_block *last = plast_model_block(r->model, plast_model_nblocks(r->model) - 1);
    switch (r->train_mode) {
    case TRAIN_LAST: return l->index >= last->first && l->index <= last->last;
    case TRAIN_ALL: return !l->frozen;
    case TRAIN_BIASES: return !l->frozen && !strcmp(pa->name, "bias");
    default: return in_list(list, l->name);
    }
}

/* The fixed-point tensor of (layer, param), or NULL (a folded batchnorm). */
static plast_qtensor *qtensor_of(plast_qmodel *q, int layer, int param)
{
    for (int i = 0; i < plast_qmodel_ntensors(q); i++) {
        plast_qtensor *t = plast_qmodel_tensor(q, i);
        if (t->layer == layer && t->param == param)
            return t;
    }
    return NULL;
}

/* Walk the wanted tensors in model order; with fill, record them. */
static int select_tensors(plast_rule *r, const char *list, int fill, plast_err *e)
{
    int n = 0;
    uint64_t offset = 0;
    for (int i = 0; i < plast_model_nlayers(r->model); i++) {
        plast_layer *l = plast_model_layer(r->model, i);
        for (int p = 0; p < l->nparams; p++) {
            if (!wants(r, list, l, p))
                continue;
            plast_qtensor *qt = r->q ? qtensor_of(r->q, i, p) : NULL;
            if (r->q && !qt)
                continue; /* folded into its conv: trained through it */
            if (fill)
                r->t[n] = (trained){i, p, offset, l->param[p].count, l->param[p].w, qt, 0, -1};
            offset += l->param[p].count;
            n++;
        }
    }
    if (!n)
        return plast_err_set(e, PLAST_E_INVAL, "train = %s selects no trainable tensor",
                             r->train_mode == TRAIN_LIST ? list
                             : r->train_mode == TRAIN_ALL ? "all"
                             : r->train_mode == TRAIN_LAST ? "last" : "biases");
    r->n = n;
    r->elements = (size_t)offset;
    return PLAST_OK;
}

static int setup_tensors(plast_rule *r, const char *list, plast_err *e)
{
    plast_mem *mem = plast_model_mem(r->model);
    int rc = select_tensors(r, list, 0, e);
    if (rc)
        return rc;
    r->t = plast_mem_calloc(mem, PLAST_MEM_RULE, (size_t)r->n * sizeof *r->t);
    if (!r->t)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
    return select_tensors(r, list, 1, e);
}

/* ---- whitened dense layers ---- */

/* The trained tensor of (layer, param), or -1. */
static int trained_index(const plast_rule *r, int layer, int param)
{
    for (int i = 0; i < r->n; i++)
        if (r->t[i].layer == layer && r->t[i].param == param)
            return i;
    return -1;
}

/* The index of the block holding layer i. */
static int block_index(plast_model *m, int i)
{
    for (int k = 0;; k++) {
        const plast_block *b = plast_model_block(m, k);
        if (i >= b->first && i <= b->last)
            return k;
    }
}

/* A trained dense weight whitens with its bias, reading its own block's
 * input or a layer of its block (what the warm-up forward can see). */
static int check_whitened(plast_rule *r, int wi, int *bias, plast_err *e)
{
    const trained *t = &r->t[wi];
    plast_layer *l = plast_model_layer(r->model, t->layer);
    *bias = l->nparams == 2 ? trained_index(r, t->layer, 1) : -1;
    if (*bias < 0)
        return plast_err_set(e, PLAST_E_INVAL,
                             "whiten: dense layer '%s' trains a weight without a bias; "
                             "whitening perturbs the two as one matrix [weight | bias]",
                             l->name);
    int src = plast_model_layer_input(r->model, t->layer, 0);
    const plast_block *b = plast_model_block(r->model, block_index(r->model, t->layer));
    if (src < b->first - 1)
        return plast_err_set(e, PLAST_E_INVAL,
                             "whiten: dense layer '%s' reads a layer outside its block",
                             l->name);
    return PLAST_OK;
}

/* Find the trained dense layers, refuse what whitening cannot do, and
 * allocate their statistics, whiteners and the shared scratch. */
static int setup_whitening(plast_rule *r, plast_err *e)
{
    plast_mem *mem = plast_model_mem(r->model);
    if (r->zo.sparsity > 0 || r->zo.eps_lsb > 0)
        return plast_err_set(e, PLAST_E_INVAL,
                             "whiten = true needs sparsity = 0 and eps_lsb = 0 (found %g and "
                             "%g): a whitened direction spans a whole row of [weight | bias]",
                             r->zo.sparsity, r->zo.eps_lsb);
    r->wh = plast_mem_calloc(mem, PLAST_MEM_RULE, (size_t)r->n * sizeof *r->wh);
    if (!r->wh)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
    int nmax = 0;
    for (int i = 0; i < r->n; i++) {
        trained *t = &r->t[i];
        plast_layer *l = plast_model_layer(r->model, t->layer);
        if (strcmp(l->ops->name, "dense") || t->param != 0)
            continue;
        int bias, rc = check_whitened(r, i, &bias, e);
        if (rc)
            return rc;
        int n = l->param[0].fan_in;
        size_t n1 = (size_t)n + 1;
        whitened *w = &r->wh[r->nwh];
        *w = (whitened){t->layer, i, bias, {t->count / (size_t)n, n, t->offset, r->t[bias].offset,
                                            NULL, NULL}, NULL, NULL};
        w->moments = plast_mem_calloc(mem, PLAST_MEM_RULE, n1 * n1 * sizeof *w->moments);
        w->T = plast_mem_alloc(mem, PLAST_MEM_RULE, n1 * n1 * sizeof *w->T);
        if (!w->moments || !w->T)
            return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
        t->dense = r->t[bias].dense = r->nwh++;
        nmax = n > nmax ? n : nmax;
    }
    if (!r->nwh)
        return plast_err_set(e, PLAST_E_INVAL,
                             "whiten = true, but no trained layer is a dense layer with a bias");
    r->wh_scratch = plast_mem_alloc(mem, PLAST_MEM_RULE,
                                    plast_zo_dense_scratch(nmax, r->zo.m) * sizeof(double));
    if (!r->wh_scratch)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
    for (int i = 0; i < r->nwh; i++)
        r->wh[i].d.scratch = r->wh_scratch;
    return PLAST_OK;
}

/* Adds the inputs of the whitened layers of block k to their moments. */
static int add_block_moments(void *user, int k, plast_block_run *run, plast_err *e)
{
    plast_rule *r = user;
    (void)k;
    for (int i = 0; i < r->nwh; i++) {
        whitened *w = &r->wh[i];
        if (w->layer < run->first || w->layer >= run->first + run->n)
            continue;
        int src = plast_model_layer_input(r->model, w->layer, 0);
        const plast_tensor *x = src >= run->first ? plast_block_layer_output(run, src) : run->x;
        int batch = plast_tensor_batch(x);
        if (plast_tensor_sample_size(x) != (size_t)w->d.n)
            return plast_err_set(e, PLAST_E_INVAL,
                                 "whiten: layer '%s' reads %zu values, expected its %d inputs",
                                 plast_model_layer(r->model, w->layer)->name,
                                 plast_tensor_sample_size(x), w->d.n);
        plast_zo_moments_add(w->moments, w->d.n, x->data, batch);
    }
    return PLAST_OK;
}

/* The float model's forward of each image of the batch (one at a time:
 * the warm-up must not set the run's memory peak), up to the last block
 * holding a whitened layer. */
static int gather_moments(plast_rule *r, const plast_tensor *x, plast_err *e)
{
    plast_model *m = r->model;
    int batch = plast_tensor_batch(x), last = 0;
    for (int i = 0; i < r->nwh; i++) {
        int k = block_index(m, r->wh[i].layer);
        last = k + 1 > last ? k + 1 : last;
    }
    size_t per = x->size / (size_t)batch;
    for (int s = 0; s < batch; s++) {
        plast_tensor one = plast_tensor_view(x->data + (size_t)s * per, 1,
                                             plast_model_input_shape(m));
        int rc = plast_model_inspect_blocks(m, &one, last, add_block_moments, r, e);
        if (rc)
            return rc;
    }
    return PLAST_OK;
}

/* The whiteners from the moments, which are freed. */
static int finish_whiteners(plast_rule *r, plast_err *e)
{
    plast_mem *mem = plast_model_mem(r->model);
    for (int i = 0; i < r->nwh; i++) {
        whitened *w = &r->wh[i];
        int rc = plast_zo_whitener(w->T, w->moments, w->d.n, r->ridge, mem, e);
        if (rc)
            return rc;
        plast_mem_free(mem, w->moments);
        w->moments = NULL;
        w->d.T = w->T;
    }
    return PLAST_OK;
}

/* ---- fixed point: headroom and underflow ---- */

/* Biases have a scale only once calibration is finished. */
static int scaled(const plast_rule *r, const trained *t)
{
    return t->qt->type != PLAST_Q_INT32 || r->calibrated;
}

/* Refuse, clamp into the headroom and measure the underflow of the
 * tensors that have a scale now (bias = 0: weights, 1: biases). */
static int prepare_codes(plast_rule *r, int biases, plast_err *e)
{
    plast_zo zo = r->zo;
    zo.step = 0;
    char name[160];
    for (int i = 0; i < r->n; i++) {
        trained *t = &r->t[i];
        if ((t->qt->type == PLAST_Q_INT32) != biases)
            continue;
        int rc = plast_zo_check_headroom(&zo, t->qt, tensor_name(r, t, name, sizeof name), e);
        if (rc)
            return rc;
        r->clamped += plast_zo_clamp_codes(&zo, t->qt);
        t->nonzero = t->dense >= 0 ? -1
                     : t->count ? (double)plast_zo_count_nonzero(&zo, 0, t->offset, t->qt) /
                                      (double)t->count
                                : 0;
    }
    return PLAST_OK;
}

/* The underflow measure of the whitened layers (their codes and whiteners
 * set), shared by weight and bias. */
static void measure_whitened(plast_rule *r)
{
    if (!r->q)
        return;
    plast_zo zo = r->zo;
    zo.step = 0;
    for (int i = 0; i < r->nwh; i++) {
        whitened *w = &r->wh[i];
        trained *tw = &r->t[w->weight], *tb = &r->t[w->bias];
        size_t nz = plast_zo_dense_count_nonzero(&zo, &w->d, 0, tw->qt, tb->qt);
        tw->nonzero = tb->nonzero = (double)nz / (double)(tw->count + tb->count);
    }
}

static int setup_fixed(plast_rule *r, const plast_args *a, plast_err *e)
{
    plast_qconfig qc = {r->precision == PREC_16W8A ? 16 : 8, 8,
                        plast_args_bool(a, "per_channel"), 1.25};
    return plast_qmodel_create(&r->q, r->model, &qc, e);
}

static int read_settings(plast_rule *r, const plast_args *a, plast_err *e)
{
    const char *train = plast_args_str(a, "train");
    r->precision = plast_args_enum(a, "precision");
    r->train_mode = !strcmp(train, "last") ? TRAIN_LAST
                    : !strcmp(train, "all") ? TRAIN_ALL
                    : !strcmp(train, "biases") ? TRAIN_BIASES : TRAIN_LIST;
    r->zo.seed = plast_model_seed(r->model);
    r->zo.m = (int)plast_args_int(a, "m");
    r->zo.sparsity = plast_args_real(a, "sparsity");
    r->zo.eps = plast_args_real(a, "eps");
    r->zo.eps_lsb = plast_args_real(a, "eps_lsb");
    r->zo.estimator = plast_args_enum(a, "estimator") ? PLAST_ZO_SIGN : PLAST_ZO_VALUE;
    r->zo.rounding = plast_args_enum(a, "round") ? PLAST_ZO_STOCHASTIC : PLAST_ZO_NEAREST;
    r->ridge = plast_args_real(a, "whiten_ridge");
    r->calib_target = (uint64_t)plast_args_int(a, "calibrate");
    if (r->precision == PREC_FP32 && r->zo.eps_lsb > 0)
        return plast_err_set(e, PLAST_E_INVAL,
                             "eps_lsb = %g needs a fixed-point precision (16w8a or 8w8a): fp32 "
                             "weights have no LSB",
                             r->zo.eps_lsb);
    if (!plast_model_optim(r->model))
        return plast_err_set(e, PLAST_E_INVAL, "qzoff takes its learning rate from the model's "
                                               "optimizer, and the model has none");
    if (r->train_mode == TRAIN_LIST)
        return check_list(r->model, train, e);
    return PLAST_OK;
}

static int qzoff_create(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e)
{
    plast_mem *mem = plast_model_mem(m);
    plast_rule *r = plast_mem_calloc(mem, PLAST_MEM_RULE, sizeof *r);
    if (!r)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
    r->model = m;
    int rc = read_settings(r, a, e);
    if (!rc && r->precision != PREC_FP32)
        rc = setup_fixed(r, a, e);
    if (!rc)
        rc = setup_tensors(r, plast_args_str(a, "train"), e);
    if (!rc && plast_args_bool(a, "whiten"))
        rc = setup_whitening(r, e);
    r->calibrated = !r->q && !r->nwh; /* else after the warm-up */
    if (!rc && r->q)
        rc = prepare_codes(r, 0, e);
    if (!rc && !r->q) {
        r->backup = plast_mem_alloc(mem, PLAST_MEM_RULE, r->elements * sizeof *r->backup);
        if (!r->backup)
            rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory");
    }
    if (rc) {
        qzoff_destroy(r);
        return rc;
    }
    plast_model_drop_grads(m); /* no gradients: only forwards */
    *out = r;
    return PLAST_OK;
}

/* ---- one step ---- */

static int forward(plast_rule *r, const plast_tensor *x, plast_tensor *y, plast_err *e)
{
    if (r->q && r->calibrated)
        return plast_qmodel_forward(r->q, x, y, e);
    return plast_model_predict(r->model, x, y, e);
}

static int probe_loss(plast_rule *r, const plast_batch *b, plast_stats *st, plast_err *e)
{
    plast_tensor y;
    int rc = forward(r, &b->x, &y, e);
    if (rc)
        return rc;
    rc = plast_rule_loss(r->model, &y, b, st, NULL, e);
    plast_tensor_free(&y);
    return rc;
}

/* Set the trained tensors to the probe's w0 + sign*eps z (fp32) or move
 * their codes by mult * delta (fixed point). */
static void perturb(plast_rule *r, int probe, int sign, int mult)
{
    for (int i = 0; i < r->n; i++) {
        trained *t = &r->t[i];
        if (t->dense >= 0)
            continue;
        if (r->q)
            plast_zo_perturb_codes(&r->zo, probe, t->offset, t->qt, mult);
        else
            plast_zo_perturb_float(&r->zo, probe, t->offset, r->backup + t->offset, t->w,
                                   t->count, sign * r->zo.eps);
    }
    for (int i = 0; i < r->nwh; i++) {
        const whitened *w = &r->wh[i];
        trained *tw = &r->t[w->weight], *tb = &r->t[w->bias];
        if (r->q)
            plast_zo_dense_perturb_codes(&r->zo, &w->d, probe, tw->qt, tb->qt, mult);
        else
            plast_zo_dense_perturb_float(&r->zo, &w->d, probe, r->backup + tw->offset,
                                         r->backup + tb->offset, tw->w, tb->w,
                                         sign * r->zo.eps);
    }
}

static void restore_float(plast_rule *r)
{
    for (int i = 0; i < r->n; i++)
        memcpy(r->t[i].w, r->backup + r->t[i].offset, r->t[i].count * sizeof(float));
}

/* Both losses of every probe; the trained tensors end where they began. */
static int run_probes(plast_rule *r, const plast_batch *b, plast_stats *st, plast_err *e)
{
    double sum = 0;
    int rc = PLAST_OK;
    for (int i = 0; i < r->zo.m && !rc; i++) {
        plast_stats sp, sm;
        perturb(r, i, +1, +1);
        rc = probe_loss(r, b, &sp, e);
        perturb(r, i, -1, -2);
        if (!rc)
            rc = probe_loss(r, b, &sm, e);
        if (r->q)
            perturb(r, i, 0, +1);
        else
            restore_float(r);
        if (rc)
            break;
        r->zo.half_diff[i] = (sp.loss - sm.loss) / 2;
        sum += (sp.loss + sm.loss) / 2;
        if (i == 0)
            *st = sp; /* accuracy of the "+" probe */
    }
    st->loss = sum / r->zo.m;
    return rc;
}

static void update(plast_rule *r)
{
    for (int i = 0; i < r->n; i++) {
        trained *t = &r->t[i];
        if (t->dense >= 0)
            continue;
        if (r->q)
            plast_zo_update_codes(&r->zo, t->offset, t->qt);
        else
            plast_zo_update_float(&r->zo, t->offset, t->w, t->count);
    }
    for (int i = 0; i < r->nwh; i++) {
        const whitened *w = &r->wh[i];
        trained *tw = &r->t[w->weight], *tb = &r->t[w->bias];
        if (r->q)
            plast_zo_dense_update_codes(&r->zo, &w->d, tw->qt, tb->qt);
        else
            plast_zo_dense_update_float(&r->zo, &w->d, tw->w, tb->w);
    }
}

/* The float model's statistics of a calibration batch (no update), one
 * sample at a time, so these batches do not set the run's memory peak
 * (float buffers are four times the integer forward's). */
#define FLOAT_STATS_CHUNK 1

static int float_stats(plast_rule *r, const plast_batch *b, plast_stats *st, plast_err *e)
{
    size_t per = b->x.size / (size_t)b->n;
    double loss = 0;
    *st = (plast_stats){0, 0, 0};
    for (int s0 = 0; s0 < b->n; s0 += FLOAT_STATS_CHUNK) {
        plast_batch part = *b;
        part.n = b->n - s0 < FLOAT_STATS_CHUNK ? b->n - s0 : FLOAT_STATS_CHUNK;
        part.x = plast_tensor_view(b->x.data + (size_t)s0 * per, part.n,
                                   plast_model_input_shape(r->model));
        part.labels = b->labels + s0;
        plast_stats ps;
        int rc = probe_loss(r, &part, &ps, e);
        if (rc)
            return rc;
        loss += ps.loss * part.n;
        st->correct += ps.correct;
        st->count += ps.count;
    }
    st->loss = loss / b->n;
    return PLAST_OK;
}

/* Feed a batch to the warm-up (activation calibration, whitening
 * moments); finish when enough images were seen. */
static int warm_up(plast_rule *r, const plast_batch *b, plast_err *e)
{
    int rc = r->q ? plast_qmodel_calibrate(r->q, &b->x, e) : PLAST_OK;
    if (!rc && r->nwh)
        rc = gather_moments(r, &b->x, e);
    if (rc)
        return rc;
    r->calib_seen += (uint64_t)b->n;
    if (r->calib_seen < r->calib_target)
        return PLAST_OK;
    if ((r->q && (rc = plast_qmodel_finish(r->q, e))) || (rc = finish_whiteners(r, e)))
        return rc;
    r->calibrated = 1;
    if (r->q && (rc = prepare_codes(r, 1, e)))
        return rc;
    measure_whitened(r);
    return PLAST_OK;
}

static int qzoff_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    int rc;
    if (!r->calibrated) {
        if ((rc = warm_up(r, b, e)))
            return rc;
        if (!r->calibrated)
            return float_stats(r, b, st, e); /* no update */
    }
    r->zo.step = b->step;
    r->zo.eta = plast_optim_lr(plast_model_optim(r->model));
    for (int i = 0; !r->q && i < r->n; i++)
        memcpy(r->backup + r->t[i].offset, r->t[i].w, r->t[i].count * sizeof(float));
    if ((rc = run_probes(r, b, st, e)))
        return rc;
    for (int i = 0; i < r->zo.m; i++)
        if (!isfinite(r->zo.half_diff[i])) {
            st->loss = NAN; /* the trainer reports the divergence */
            return PLAST_OK;
        }
    update(r);
    return r->q ? plast_qmodel_store(r->q, e) : PLAST_OK;
}

static int qzoff_predict(plast_rule *r, const plast_tensor *x, plast_tensor *y, plast_err *e)
{
    return forward(r, x, y, e);
}

static int qzoff_forwards_per_update(const plast_rule *r)
{
    return 2 * r->zo.m;
}

/* ---- describe ---- */

#define SAY(...)                                    \
    do {                                            \
        snprintf(buf, sizeof buf, __VA_ARGS__);     \
        line(user, buf);                            \
    } while (0)

static void describe_tensor(const plast_rule *r, const trained *t,
                            void (*line)(void *, const char *), void *user)
{
    char buf[768], name[160];
    tensor_name(r, t, name, sizeof name);
    if (!r->q) {
        SAY("  %s: %zu elements", name, t->count);
        return;
    }
    if (!scaled(r, t)) {
        SAY("  %s: %zu elements, int%d codes, scale set by the calibration", name, t->count,
            (int)t->qt->type);
        return;
    }
    double ratio = plast_zo_eps_ratio(&r->zo, t->qt);
    if (t->nonzero < 0) {
        SAY("  %s: %zu elements, int%d codes, scale %.3g%s, eps = %.3g LSB, Dmax = %lld, "
            "whitened (non-zero perturbation codes measured once the whitener is set)",
            name, t->count, (int)t->qt->type, t->qt->scale[0],
            t->qt->group < t->count ? " (channel 0)" : "", ratio,
            (long long)plast_zo_tensor_dmax(&r->zo, t->qt));
        if (ratio < 0.5) /* each zhat element has variance <= 1: no less underflow */
            SAY("warning: %s: eps is %.3g LSB (< 0.5): most perturbation codes will be zero, "
                "so Lp - Lm is mostly 0 and the codes hardly move (perturbation underflow)",
                name, ratio);
        return;
    }
    SAY("  %s: %zu elements, int%d codes, scale %.3g%s, eps = %.3g LSB, Dmax = %lld, "
        "non-zero perturbation codes %.1f%%",
        name, t->count, (int)t->qt->type, t->qt->scale[0],
        t->qt->group < t->count ? " (channel 0)" : "", ratio,
        (long long)plast_zo_tensor_dmax(&r->zo, t->qt), 100 * t->nonzero);
    if (ratio < 0.5)
        SAY("warning: %s: eps is %.3g LSB (< 0.5): only %.1f%% of the perturbation codes are "
            "non-zero, so Lp - Lm is mostly 0 and the codes hardly move (perturbation underflow)",
            name, ratio, 100 * t->nonzero);
}

static void qzoff_describe(const plast_rule *r, void (*line)(void *, const char *), void *user)
{
    char buf[320], eps[64];
    const plast_zo *zo = &r->zo;
    if (zo->eps_lsb > 0)
        snprintf(eps, sizeof eps, "%g LSB of each tensor", zo->eps_lsb);
    else
        snprintf(eps, sizeof eps, "%g", zo->eps);
    SAY("precision %s, estimator %s, m = %d (%d forwards per update), eps = %s, "
        "sparsity %g%s",
        prec_choices[r->precision], est_choices[zo->estimator], zo->m, 2 * zo->m, eps,
        zo->sparsity, r->q ? (zo->rounding ? ", stochastic rounding" : ", rounding nearest") : "");
    SAY("learning rate: [optimizer] lr and its schedule (the %s update itself is not used)",
        plast_optim_type(plast_model_optim(r->model)));
    SAY("trains %d tensors, %zu elements:", r->n, r->elements);
    for (int i = 0; i < r->n; i++)
        describe_tensor(r, &r->t[i], line, user);
    if (!r->q)
        SAY("memory: a copy of the trained elements, %zu bytes (rule)", r->elements * 4);
    if (r->calibrated && (r->q || r->nwh))
        SAY("calibration: done on %llu training images", (unsigned long long)r->calib_seen);
    else if (!r->calibrated)
        SAY("calibration: %s from the first %llu training images; the batches before the one "
            "reaching that count are not trained on",
            r->q && r->nwh ? "int8 activation scales and whitening moments"
            : r->q         ? "int8 activation scales"
                           : "whitening moments",
            (unsigned long long)r->calib_target);
    if (r->clamped)
        SAY("note: %zu codes were clamped into the perturbation headroom", r->clamped);
    for (int i = 0; i < r->nwh; i++) {
        const whitened *w = &r->wh[i];
        size_t n1 = (size_t)w->d.n + 1;
        SAY("whitened directions (plast's extension): layer '%s', %zu rows of [weight | bias] "
            "perturbed along T z, T = (M + %g I)^(-1/2) from the second moment M of its %d "
            "inputs and a constant 1 over the first %llu training images; %zu bytes (rule)",
            plast_model_layer(r->model, w->layer)->name, w->d.rows, r->ridge, w->d.n,
            (unsigned long long)r->calib_target, n1 * n1 * sizeof(float));
    }
}

/* ---- checkpoints: the trained list, the calibration, every code ---- */

/* Version 2: the trained list, the warm-up's image count, the fixed-point
 * model (calibration and codes), then the whitened layers: their
 * whiteners once set, else their moments so far.  Version 1 (no
 * whitening) stored the count only for fixed point. */
static int save_whitened(const plast_rule *r, plast_writer *w, plast_err *e)
{
    int rc = plast_writer_u32(w, (uint32_t)r->nwh, e);
    if (!rc)
        rc = plast_writer_u32(w, (uint32_t)r->calibrated, e);
    for (int i = 0; i < r->nwh && !rc; i++) {
        size_t n1 = (size_t)r->wh[i].d.n + 1;
        if (r->calibrated)
            rc = plast_writer_floats(w, r->wh[i].T, n1 * n1, e);
        for (size_t k = 0; !r->calibrated && k < n1 * n1 && !rc; k++)
            rc = plast_writer_f64(w, r->wh[i].moments[k], e);
    }
    return rc;
}

static int qzoff_save_state(const plast_rule *r, plast_writer *w, plast_err *e)
{
    char name[160];
    int rc = plast_writer_u32(w, SAVE_VERSION, e);
    if (!rc)
        rc = plast_writer_u32(w, (uint32_t)r->precision, e);
    if (!rc)
        rc = plast_writer_u32(w, (uint32_t)r->n, e);
    for (int i = 0; i < r->n && !rc; i++)
        if (!(rc = plast_writer_str(w, tensor_name(r, &r->t[i], name, sizeof name), e)))
            rc = plast_writer_u64(w, r->t[i].count, e);
    if (!rc)
        rc = plast_writer_u64(w, r->calib_seen, e);
    if (!rc && r->q)
        rc = plast_zo_save_qmodel(r->q, r->calibrated, plast_model_mem(r->model), w, e);
    return rc ? rc : save_whitened(r, w, e);
}

static int mismatch(plast_reader *rd, plast_err *e, const char *what)
{
    return plast_err_at(e, PLAST_E_DATA, plast_reader_path(rd), 0,
                        "qzoff state: %s differs from this run's", what);
}

static int load_header(plast_rule *r, plast_reader *rd, uint32_t *version, plast_err *e)
{
    uint32_t prec, n;
    int rc;
    if ((rc = plast_reader_u32(rd, version, e)) || (rc = plast_reader_u32(rd, &prec, e)) ||
        (rc = plast_reader_u32(rd, &n, e)))
        return rc;
    if (*version != SAVE_VERSION && *version != 1)
        return plast_err_at(e, PLAST_E_DATA, plast_reader_path(rd), 0,
                            "qzoff state: expected version 1 or %u, found %u", SAVE_VERSION,
                            *version);
    if ((int)prec != r->precision)
        return mismatch(rd, e, "the precision");
    if ((int)n != r->n)
        return mismatch(rd, e, "the number of trained tensors");
    for (int i = 0; i < r->n; i++) {
        char got[160], want[160];
        uint64_t count;
        if ((rc = plast_reader_str(rd, got, sizeof got, e)) ||
            (rc = plast_reader_u64(rd, &count, e)))
            return rc;
        if (strcmp(got, tensor_name(r, &r->t[i], want, sizeof want)) || count != r->t[i].count)
            return mismatch(rd, e, "the list of trained tensors");
    }
    return PLAST_OK;
}

/* The whitened layers' state; *set = their whiteners were set. */
static int load_whitened(plast_rule *r, plast_reader *rd, int *set, plast_err *e)
{
    uint32_t nwh, done;
    int rc;
    if ((rc = plast_reader_u32(rd, &nwh, e)) || (rc = plast_reader_u32(rd, &done, e)))
        return rc;
    if ((int)nwh != r->nwh)
        return mismatch(rd, e, "whitening (whiten)");
    for (int i = 0; i < r->nwh && !rc; i++) {
        whitened *w = &r->wh[i];
        size_t n1 = (size_t)w->d.n + 1;
        if (!done) {
            for (size_t k = 0; k < n1 * n1 && !rc; k++)
                rc = plast_reader_f64(rd, &w->moments[k], e);
            continue;
        }
        rc = plast_reader_floats(rd, w->T, n1 * n1, e);
        plast_mem_free(plast_model_mem(r->model), w->moments);
        w->moments = NULL;
        w->d.T = w->T;
    }
    *set = done != 0;
    return rc;
}

static int qzoff_load_state(plast_rule *r, plast_reader *rd, plast_err *e)
{
    uint32_t version;
    int rc = load_header(r, rd, &version, e);
    if (rc)
        return rc;
    if (r->calib_seen || (r->calibrated && (r->q || r->nwh)))
        return plast_err_set(e, PLAST_E_INVAL, "qzoff: load_state after training began");
    if (version == 1 && r->nwh)
        return mismatch(rd, e, "whitening (whiten)");
    if ((version == 1 && !r->q) || (rc = plast_reader_u64(rd, &r->calib_seen, e)))
        return rc;
    int qdone = 1, wdone = 1;
    if (r->q && (rc = plast_zo_load_qmodel(r->q, &qdone, plast_model_mem(r->model), rd, e)))
        return rc;
    if (version != 1 && (rc = load_whitened(r, rd, &wdone, e)))
        return rc;
    r->calibrated = qdone && (wdone || !r->nwh);
    if (!r->calibrated || !r->q)
        return PLAST_OK;
    plast_zo zo = r->zo;
    zo.step = 0;
    for (int i = 0; i < r->n; i++) /* the bias underflow measure, for describe */
        if (r->t[i].qt->type == PLAST_Q_INT32 && r->t[i].dense < 0 && r->t[i].count)
            r->t[i].nonzero = (double)plast_zo_count_nonzero(&zo, 0, r->t[i].offset, r->t[i].qt) /
                              (double)r->t[i].count;
    measure_whitened(r);
    return PLAST_OK;
}

static const plast_rule_ops qzoff_ops = {
    .size = sizeof(plast_rule_ops),
    .name = "qzoff",
    .settings = qzoff_settings,
    .summary = "quantized zero-order forward gradients: 2m forwards per update, no backward, "
               "learning rate from [optimizer] lr",
    .create = qzoff_create,
    .train_batch = qzoff_train_batch,
    .destroy = qzoff_destroy,
    .save_state = qzoff_save_state,
    .load_state = qzoff_load_state,
    .predict = qzoff_predict,
    .forwards_per_update = qzoff_forwards_per_update,
    .describe = qzoff_describe,
};

static const plast_rule_ops *const qzoff_rules[] = {&qzoff_ops, NULL};

PLAST_PLUGIN(.name = "qzoff", .version = "0.1.0", .license = "MIT",
             .summary = "quantized zero-order forward gradients (Feng et al. 2024)",
             .rules = qzoff_rules);
