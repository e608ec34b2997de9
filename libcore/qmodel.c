/* qmodel.c - the fixed-point engine (plast/qmodel.h).
 *
 * Layout.  Layer i of the float model has one qlayer; the codes of its
 * output live in forward slot i + 1 (slot 0 is the quantised model
 * input).  A folded batchnorm, flatten, dropout and an in-place relu or
 * add own no buffer: their slot points at their input's.  Each owning
 * slot counts the readers still to come and is freed when the last one
 * has read it, so a forward holds at most: the input codes of the running
 * layer, its output codes, one accumulator and whatever a pending add
 * still has to read.
 *
 * Arithmetic (every step is exact integer arithmetic or one rounding):
 *   input       code = sat(rint(x / s_in))                     (ties to even)
 *   dense/conv  acc = sum w_code * x_code (int32 for 8-bit weights, int64
 *               for 16-bit), t = acc + bias_code (int64),
 *               y = sat(requant_c(t)) with M_c = (s_w[c] * s_in) / s_out;
 *               bias_code = rint(b / (s_w[c] * s_in)) in int32.  A conv runs
 *               one sample at a time: its planes zero-padded, lowered to
 *               columns [Hout Wout, Cin k k] (both in scratch), then
 *               plast_igemm with the weights as A
 *   last dense  logit = (float)((double)t * (s_w[c] * s_in))
 *   relu, maxpool, flatten, dropout: on the codes, scale unchanged
 *   avgpool/gap sum of the window's codes (padding 0) / area, rounded to
 *               nearest with ties away from zero; scale unchanged
 *   add         y = sat(requant(x_code, s_x / s_out) + requant(f, M_f))
 *               with f = from's codes and M_f = s_f / s_out, or f = the
 *               1x1 shortcut's accumulator and M_f = (s_w[c] * s_f) / s_out
 * where sat() clamps to [-127, 127] and requant() is plast_requant_apply
 * (31-bit multiplier, ties away from zero).  A last layer other than a
 * dense gives logit = (float)(code * s_out).
 *
 * Scales: weights s = margin * max|w| / qmax per tensor or per output
 * channel, over the folded weights when a batchnorm is folded in; an
 * activation s = max|a| / 127 from calibration, where a dense, conv or
 * add whose only reader is a relu takes max(a) instead: the values that
 * relu keeps (the negative ones saturate at -127 and relu zeroes them, as
 * the float relu does).  A zero maximum gives 1 / 127.
 *
 * Batchnorm folding: the eval batchnorm y = a (x - mean) + beta with
 * a = gamma / sqrt(var + eps) (in double) after x = w.in + b becomes
 * w' = a w, b' = a b + (beta - a mean) per channel. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/igemm.h"
#include "plast/qmodel.h"
#include "plast/quant.h"
#include "layers/geometry.h"

#define ACT_QMAX PLAST_QMAX8
#define DEFAULT_MARGIN 1.25

typedef enum qkind {
    QK_DENSE,
    QK_CONV,
    QK_RELU,
    QK_MAXPOOL,
    QK_AVGPOOL,
    QK_GAP,
    QK_FLATTEN,
    QK_DROPOUT,
    QK_ADD,
    QK_FOLDED /* a batchnorm folded into the layer before it */
} qkind;

static const struct {
    const char *name;
    qkind kind;
} kind_names[] = {
    {"dense", QK_DENSE},     {"conv2d", QK_CONV},   {"relu", QK_RELU},
    {"maxpool", QK_MAXPOOL}, {"avgpool", QK_AVGPOOL}, {"gap", QK_GAP},
    {"flatten", QK_FLATTEN}, {"dropout", QK_DROPOUT}, {"add", QK_ADD},
    {"batchnorm", QK_FOLDED},
};

#define SUPPORTED_TYPES                                                                    \
    "dense, conv2d, relu, maxpool, avgpool, gap, flatten, dropout, add, and batchnorm "    \
    "after a dense or conv2d"

typedef struct qlayer {
    qkind kind;
    plast_layer *l;
    int in[2];            /* producers: layer index, -1 model input, -2 none */
    int out;              /* layer whose values these codes are: its batchnorm, or itself */
    int k, s, p;          /* conv and pool window; add: the shortcut stride, 0 = identity */
    int wt, bt;           /* weight and bias tensors, -1 = none */
    int bn;               /* folded batchnorm, -1 = none */
    int channels, group;  /* weighted: output channels, weights per channel */
    double *fold_a;       /* folded batchnorm: y = fold_a x + fold_b per channel */
    double *fold_b;
    double *acc_scale;    /* [channels] s_w[c] * s_in: the accumulator's scale */
    plast_requant *rq;    /* [channels] accumulator -> output codes */
    plast_requant rq_in;  /* add: input codes -> output codes */
    plast_requant rq_from;/* add, identity shortcut: from's codes -> output codes */
} qlayer;

struct plast_qmodel {
    plast_model *m;
    plast_mem *mem;
    plast_qconfig cfg;
    int nl;
    qlayer *ql;
    int nt;
    plast_qtensor *t;
    double *maxabs, *maxpos; /* [nl + 1] calibration; [0] is the model input */
    double *scale;           /* [nl + 1] activation scales after finish */
    int *consumers;          /* [nl + 1] readers of each slot's values */
    int final;               /* the dense whose accumulator gives the logits, or -1 */
    int calibrated, finished;
    /* forward slots [nl + 1]: owner's buffer, readers still to come, owner */
    int8_t **data;
    int *refs, *own;
};

/* ---- small helpers ---- */

static void *weights_calloc(plast_qmodel *q, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return NULL;
    return plast_mem_calloc(q->mem, PLAST_MEM_WEIGHTS, bytes);
}

static int out_of_memory(plast_err *e, const char *what, const plast_layer *l)
{
    return plast_err_set(e, PLAST_E_NOMEM, "qmodel: out of memory for %s of layer '%s'", what,
                         l->name);
}

static double act_scale_of(double maxabs)
{
    return plast_quant_scale(maxabs, 1.0, ACT_QMAX);
}

static const plast_qtensor *weight_of(const plast_qmodel *q, const qlayer *ql)
{
    return &q->t[ql->wt];
}

/* Scale of element e of tensor t. */
static double scale_at(const plast_qtensor *t, size_t e)
{
    return t->scale[e / t->group];
}

static double weight_scale(const plast_qmodel *q, const qlayer *ql, int c)
{
    return scale_at(weight_of(q, ql), (size_t)c * (size_t)ql->group);
}

static int64_t bias_code(const plast_qmodel *q, const qlayer *ql, int c)
{
    return ql->bt >= 0 ? plast_qtensor_get(&q->t[ql->bt], (size_t)c) : 0;
}

/* plast_requant_apply with its one-word case inlined for the inner loops
 * (|v| < 2^32: |v| mult + half < 2^64); the same result. */
static inline int64_t requant(const plast_requant *rq, int64_t v)
{
    uint64_t mag = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
    if (mag >> 32 || rq->shift >= 64)
        return plast_requant_apply(rq, v);
    uint64_t u = (mag * (uint32_t)rq->mult + ((uint64_t)1 << (rq->shift - 1))) >> rq->shift;
    return v < 0 ? -(int64_t)u : (int64_t)u;
}

static inline int8_t requant8(const plast_requant *rq, int64_t v)
{
    return (int8_t)plast_quant_saturate(requant(rq, v), ACT_QMAX);
}

static int is_weighted(const qlayer *ql)
{
    return ql->kind == QK_DENSE || ql->kind == QK_CONV || (ql->kind == QK_ADD && ql->s > 0);
}

/* ---- create: classify the layers ---- */

static int kind_of(const plast_layer *l, qkind *k)
{
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
        if (strcmp(l->ops->name, kind_names[i].name) == 0) {
            *k = kind_names[i].kind;
            return 1;
        }
    return 0;
}

/* A batchnorm folds into a dense or conv2d that feeds it alone. */
static int attach_batchnorm(plast_qmodel *q, int i, plast_err *e)
{
    qlayer *ql = &q->ql[i];
    int p = ql->in[0];
    qlayer *prod = p >= 0 ? &q->ql[p] : NULL;
    if (!prod || (prod->kind != QK_DENSE && prod->kind != QK_CONV) || prod->bn >= 0 ||
        q->consumers[p + 1] != 1)
        return plast_err_set(e, PLAST_E_UNSUPPORTED,
                             "qmodel: batchnorm '%s' must follow a dense or conv2d layer that "
                             "feeds only it (it is folded into that layer's weights)",
                             ql->l->name);
    prod->bn = i;
    prod->out = i;
    return PLAST_OK;
}

static int classify_layer(plast_qmodel *q, int i, plast_err *e)
{
    qlayer *ql = &q->ql[i];
    plast_layer *l = plast_model_layer(q->m, i);
    *ql = (qlayer){.l = l, .out = i, .wt = -1, .bt = -1, .bn = -1};
    ql->in[0] = plast_model_layer_input(q->m, i, 0);
    ql->in[1] = plast_model_layer_input(q->m, i, 1);
    if (!kind_of(l, &ql->kind))
        return plast_err_set(e, PLAST_E_UNSUPPORTED,
                             "qmodel: layer '%s' of type '%s' has no fixed-point form "
                             "(supported: " SUPPORTED_TYPES ")",
                             l->name, l->ops->name);
    switch (ql->kind) {
    case QK_DENSE:
        ql->channels = l->out.dim[0];
        ql->group = l->param[0].fan_in;
        break;
    case QK_CONV:
        plast_conv2d_geometry(l, &ql->k, &ql->s, &ql->p);
        ql->channels = l->out.dim[0];
        ql->group = l->param[0].fan_in;
        break;
    case QK_MAXPOOL:
    case QK_AVGPOOL:
    case QK_GAP:
        plast_pool_geometry(l, &ql->k, &ql->s, &ql->p);
        break;
    case QK_ADD:
        ql->s = plast_add_shortcut_stride(l);
        if (ql->s > 0) {
            ql->channels = l->in.dim[0];
            ql->group = l->in2.dim[0];
        }
        break;
    case QK_FOLDED:
        return attach_batchnorm(q, i, e);
    default:
        break;
    }
    return PLAST_OK;
}

static int classify(plast_qmodel *q, plast_err *e)
{
    for (int i = 0; i < q->nl; i++) {
        q->consumers[i + 1] = plast_model_consumers(q->m, i);
        for (int n = 0; n < 2; n++)
            if (plast_model_layer_input(q->m, i, n) == -1)
                q->consumers[0]++;
    }
    for (int i = 0; i < q->nl; i++) {
        int rc = classify_layer(q, i, e);
        if (rc)
            return rc;
    }
    int last = q->nl - 1;
    int eff = q->ql[last].kind == QK_FOLDED ? q->ql[last].in[0] : last;
    q->final = q->ql[eff].kind == QK_DENSE ? eff : -1;
    return PLAST_OK;
}

/* ---- create: batchnorm folding and weight codes ---- */

static int fold_batchnorm(plast_qmodel *q, qlayer *ql, plast_err *e)
{
    const plast_layer *bn = plast_model_layer(q->m, ql->bn);
    const plast_real *gamma = bn->param[0].w, *beta = bn->param[1].w;
    const plast_real *mean = bn->param[2].w, *var = bn->param[3].w;
    double eps = plast_batchnorm_eps(bn);
    ql->fold_a = weights_calloc(q, (size_t)ql->channels, sizeof(double));
    ql->fold_b = weights_calloc(q, (size_t)ql->channels, sizeof(double));
    if (!ql->fold_a || !ql->fold_b)
        return out_of_memory(e, "the folded batchnorm", bn);
    for (int c = 0; c < ql->channels; c++) {
        double a = (double)gamma[c] / sqrt((double)var[c] + eps);
        if (!isfinite(a) || a == 0.0 || !isfinite((double)mean[c]) || !isfinite((double)beta[c]))
            return plast_err_set(e, PLAST_E_UNSUPPORTED,
                                 "qmodel: batchnorm '%s' channel %d cannot be folded: gamma "
                                 "%.9g, running variance %.9g, running mean %.9g",
                                 bn->name, c, (double)gamma[c], (double)var[c], (double)mean[c]);
        ql->fold_a[c] = a;
        ql->fold_b[c] = (double)beta[c] - a * (double)mean[c];
    }
    return PLAST_OK;
}

/* Weight element e as the engine sees it (batchnorm folded in). */
static double folded_weight(const qlayer *ql, size_t e)
{
    double w = (double)ql->l->param[0].w[e];
    return ql->fold_a ? w * ql->fold_a[e / (size_t)ql->group] : w;
}

/* Bias of channel c as the engine sees it (0 without a bias). */
static double folded_bias(const qlayer *ql, int c)
{
    double b = ql->l->nparams > 1 && ql->kind != QK_ADD ? (double)ql->l->param[1].w[c] : 0.0;
    return ql->fold_a ? b * ql->fold_a[c] + ql->fold_b[c] : b;
}

static void quantise_weights(const plast_qmodel *q, const qlayer *ql, plast_qtensor *t)
{
    size_t nscales = t->count / t->group;
    double *scale = (double *)t->scale;
    for (size_t g = 0; g < nscales; g++) {
        double mx = 0.0;
        for (size_t e = g * t->group; e < (g + 1) * t->group; e++)
            mx = fmax(mx, fabs(folded_weight(ql, e)));
        scale[g] = plast_quant_scale(mx, q->cfg.weight_margin, t->qmax);
        for (size_t e = g * t->group; e < (g + 1) * t->group; e++)
            plast_qtensor_set(t, e, plast_quant_code(folded_weight(ql, e), scale[g], t->qmax));
    }
}

static size_t code_bytes(plast_qtype type)
{
    return type == PLAST_Q_INT8 ? 1 : type == PLAST_Q_INT16 ? 2 : 4;
}

/* Codes and scales of a tensor of `count` codes, `group` per scale. */
static int new_tensor(plast_qmodel *q, int layer, int param, plast_qtype type, size_t count,
                      size_t group, plast_err *e)
{
    plast_qtensor *t = &q->t[q->nt];
    *t = (plast_qtensor){.layer = layer, .param = param, .type = type, .count = count,
                         .group = group};
    t->qmax = type == PLAST_Q_INT8 ? PLAST_QMAX8 : type == PLAST_Q_INT16 ? PLAST_QMAX16
                                                                         : PLAST_QMAX32;
    t->codes = weights_calloc(q, count, code_bytes(type));
    t->scale = weights_calloc(q, count / group, sizeof(double));
    if (!t->codes || !t->scale) {
        plast_mem_free(q->mem, t->codes);
        plast_mem_free(q->mem, (void *)t->scale);
        return out_of_memory(e, "codes", plast_model_layer(q->m, layer));
    }
    return q->nt++;
}

/* The weight tensor, the bias tensor (the layer's bias, else the folded
 * batchnorm's beta) and the per-channel arrays of one weighted layer. */
static int quantise_layer(plast_qmodel *q, int i, plast_err *e)
{
    qlayer *ql = &q->ql[i];
    int rc;
    if (ql->bn >= 0 && (rc = fold_batchnorm(q, ql, e)) != 0)
        return rc;
    size_t count = (size_t)ql->channels * (size_t)ql->group;
    plast_qtype wtype = q->cfg.weight_bits == 8 ? PLAST_Q_INT8 : PLAST_Q_INT16;
    if ((rc = new_tensor(q, i, 0, wtype, count, q->cfg.per_channel ? (size_t)ql->group : count,
                         e)) < 0)
        return rc;
    ql->wt = rc;
    quantise_weights(q, ql, &q->t[ql->wt]);
    int has_bias = ql->kind != QK_ADD && ql->l->nparams > 1;
    if (has_bias || ql->bn >= 0) {
        size_t ch = (size_t)ql->channels;
        if ((rc = new_tensor(q, has_bias ? i : ql->bn, 1, PLAST_Q_INT32, ch,
                             q->cfg.per_channel ? 1 : ch, e)) < 0)
            return rc;
        ql->bt = rc;
    }
    ql->acc_scale = weights_calloc(q, (size_t)ql->channels, sizeof(double));
    ql->rq = weights_calloc(q, (size_t)ql->channels, sizeof(plast_requant));
    if (!ql->acc_scale || !ql->rq)
        return out_of_memory(e, "requantisers", ql->l);
    return PLAST_OK;
}

static int quantise_model(plast_qmodel *q, plast_err *e)
{
    int n = 0;
    for (int i = 0; i < q->nl; i++)
        if (is_weighted(&q->ql[i]))
            n += 2;
    q->t = calloc(n ? (size_t)n : 1, sizeof *q->t);
    if (!q->t)
        return plast_err_set(e, PLAST_E_NOMEM, "qmodel: out of memory for %d tensors", n);
    for (int i = 0; i < q->nl; i++) {
        int rc = is_weighted(&q->ql[i]) ? quantise_layer(q, i, e) : PLAST_OK;
        if (rc)
            return rc;
    }
    return PLAST_OK;
}

static int check_config(const plast_qconfig *cfg, plast_err *e)
{
    if (cfg->weight_bits != 8 && cfg->weight_bits != 16)
        return plast_err_set(e, PLAST_E_INVAL,
                             "qmodel: weight_bits: expected 8 or 16, found %d", cfg->weight_bits);
    if (cfg->act_bits != 8)
        return plast_err_set(e, cfg->act_bits == 16 ? PLAST_E_UNSUPPORTED : PLAST_E_INVAL,
                             "qmodel: act_bits: expected 8, found %d", cfg->act_bits);
    if (!(cfg->weight_margin >= 1.0 && cfg->weight_margin <= 1e3))
        return plast_err_set(e, PLAST_E_INVAL,
                             "qmodel: weight_margin: expected 1 to 1000, found %.9g",
                             cfg->weight_margin);
    return PLAST_OK;
}

static int alloc_tables(plast_qmodel *q, plast_err *e)
{
    size_t n = (size_t)q->nl + 1;
    q->ql = calloc((size_t)q->nl, sizeof *q->ql);
    q->maxabs = calloc(n, sizeof *q->maxabs);
    q->maxpos = calloc(n, sizeof *q->maxpos);
    q->scale = calloc(n, sizeof *q->scale);
    q->consumers = calloc(n, sizeof *q->consumers);
    q->data = calloc(n, sizeof *q->data);
    q->refs = calloc(n, sizeof *q->refs);
    q->own = calloc(n, sizeof *q->own);
    if (!q->ql || !q->maxabs || !q->maxpos || !q->scale || !q->consumers || !q->data ||
        !q->refs || !q->own)
        return plast_err_set(e, PLAST_E_NOMEM, "qmodel: out of memory for %d layers", q->nl);
    return PLAST_OK;
}

int plast_qmodel_create(plast_qmodel **out, plast_model *m, const plast_qconfig *cfg,
                        plast_err *e)
{
    plast_qconfig c = {16, 8, 0, DEFAULT_MARGIN};
    if (cfg) {
        c = *cfg;
        if (c.act_bits == 0)
            c.act_bits = 8;
        if (c.weight_margin == 0.0)
            c.weight_margin = DEFAULT_MARGIN;
    }
    int rc = check_config(&c, e);
    if (rc)
        return rc;
    plast_qmodel *q = calloc(1, sizeof *q);
    if (!q)
        return plast_err_set(e, PLAST_E_NOMEM, "qmodel: out of memory");
    q->m = m;
    q->mem = plast_model_mem(m);
    q->cfg = c;
    q->nl = plast_model_nlayers(m);
    if ((rc = alloc_tables(q, e)) != 0 || (rc = classify(q, e)) != 0 ||
        (rc = quantise_model(q, e)) != 0)
        goto undo_q;
    *out = q;
    return PLAST_OK;
undo_q:
    plast_qmodel_destroy(q);
    return rc;
}

void plast_qmodel_destroy(plast_qmodel *q)
{
    if (!q)
        return;
    for (int i = 0; i < q->nt; i++) {
        plast_mem_free(q->mem, q->t[i].codes);
        plast_mem_free(q->mem, (void *)q->t[i].scale);
    }
    for (int i = 0; q->ql && i < q->nl; i++) {
        plast_mem_free(q->mem, q->ql[i].fold_a);
        plast_mem_free(q->mem, q->ql[i].fold_b);
        plast_mem_free(q->mem, q->ql[i].acc_scale);
        plast_mem_free(q->mem, q->ql[i].rq);
    }
    free(q->t);
    free(q->ql);
    free(q->maxabs);
    free(q->maxpos);
    free(q->scale);
    free(q->consumers);
    free(q->data);
    free(q->refs);
    free(q->own);
    free(q);
}

/* ---- calibration: an eval-mode float forward recording every output ---- */

static int check_input(const plast_qmodel *q, const plast_tensor *x, const char *what,
                       plast_err *e)
{
    size_t n = plast_shape_size(plast_model_input_shape(q->m));
    int batch = x->ndim > 0 ? x->dim[0] : 0;
    if (batch < 1 || x->size != (size_t)batch * n)
        return plast_err_set(e, PLAST_E_INVAL,
                             "qmodel %s: expected a batch of at least 1 sample of %zu values, "
                             "found %zu values in %d samples",
                             what, n, x->size, batch);
    return PLAST_OK;
}

static int record(plast_qmodel *q, int slot, const plast_tensor *t, plast_err *e)
{
    double mx = q->maxabs[slot], mp = q->maxpos[slot];
    for (size_t i = 0; i < t->size; i++) {
        double v = (double)t->data[i];
        if (!isfinite(v) && slot == 0)
            return plast_err_set(e, PLAST_E_INVAL,
                                 "qmodel calibration: expected finite inputs, found %g", v);
        if (!isfinite(v))
            return plast_err_set(e, PLAST_E_INVAL,
                                 "qmodel calibration: expected finite outputs of layer '%s', "
                                 "found %g",
                                 q->ql[slot - 1].l->name, v);
        mx = fmax(mx, fabs(v));
        mp = fmax(mp, v);
    }
    q->maxabs[slot] = mx;
    q->maxpos[slot] = mp;
    return PLAST_OK;
}

/* The float pass's buffers: out[s] the values of slot s, owned by slot
 * own[s], which refs[] readers still need. */
typedef struct fpass {
    plast_tensor *out;
    int *refs, *own;
    int batch;
} fpass;

static void fpass_release(fpass *f, int slot)
{
    int o = f->own[slot];
    if (--f->refs[o] <= 0)
        plast_tensor_free(&f->out[o]);
}

static int float_layer(plast_qmodel *q, fpass *f, int i, const plast_ctx *ctx, plast_err *e)
{
    plast_layer *l = q->ql[i].l;
    const int *in = q->ql[i].in;
    plast_tensor *y = &f->out[i + 1];
    int rc;
    if (l->ops->flags & PLAST_LAYER_VIEW) {
        if ((rc = l->ops->forward(l, &f->out[in[0] + 1], y, ctx, e)) != 0)
            return rc;
        int o = f->own[in[0] + 1];
        f->own[i + 1] = o;
        f->refs[o] += q->consumers[i + 1] - 1;
        return PLAST_OK;
    }
    if ((rc = plast_tensor_alloc(y, q->mem, PLAST_MEM_ACTIVATIONS, f->batch, &l->out, e)) != 0)
        return rc;
    f->own[i + 1] = i + 1;
    f->refs[i + 1] = q->consumers[i + 1];
    if (l->ninputs == 2) {
        const plast_tensor *xs[2] = {&f->out[in[0] + 1], &f->out[in[1] + 1]};
        rc = l->ops->forward2(l, xs, y, ctx, e);
    } else {
        rc = l->ops->forward(l, &f->out[in[0] + 1], y, ctx, e);
    }
    if (rc)
        return rc;
    for (int n = 0; n < l->ninputs; n++)
        fpass_release(f, in[n] + 1);
    return PLAST_OK;
}

/* Record the ranges of one chunk of samples through the float model. */
static int calibrate_chunk(plast_qmodel *q, const plast_tensor *x, plast_err *e)
{
    size_t n = (size_t)q->nl + 1;
    fpass f = {calloc(n, sizeof *f.out), calloc(n, sizeof *f.refs), calloc(n, sizeof *f.own),
               x->dim[0]};
    int rc = PLAST_OK;
    if (!f.out || !f.refs || !f.own) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "qmodel calibration: out of memory");
        goto undo_tables;
    }
    f.out[0] = *x;
    f.out[0].owner = NULL; /* borrowed */
    f.refs[0] = q->consumers[0];
    plast_ctx ctx = plast_model_ctx(q->m, 0);
    rc = record(q, 0, x, e);
    for (int i = 0; i < q->nl && !rc; i++)
        if ((rc = float_layer(q, &f, i, &ctx, e)) == 0)
            rc = record(q, i + 1, &f.out[i + 1], e);
    for (size_t s = 0; s < n; s++) /* the last output, or everything after an error */
        plast_tensor_free(&f.out[s]);
undo_tables:
    free(f.out);
    free(f.refs);
    free(f.own);
    return rc;
}

/* The float pass runs one sample at a time: its float buffers (four bytes
 * a value) then stay below the integer forward's int8 buffers for a batch
 * of a few samples, so calibrating does not set a rule's memory peak.
 * Ranges are maxima, so the chunking changes no result. */
#define QMODEL_CALIB_CHUNK 1

int plast_qmodel_calibrate(plast_qmodel *q, const plast_tensor *x, plast_err *e)
{
    if (q->finished)
        return plast_err_set(e, PLAST_E_INVAL, "qmodel: calibrate after finish: the scales "
                                               "are frozen");
    int rc = check_input(q, x, "calibration", e);
    size_t per = x->dim[0] ? x->size / (size_t)x->dim[0] : 0;
    for (int s0 = 0; s0 < x->dim[0] && !rc; s0 += QMODEL_CALIB_CHUNK) {
        int c = x->dim[0] - s0 < QMODEL_CALIB_CHUNK ? x->dim[0] - s0 : QMODEL_CALIB_CHUNK;
        plast_tensor part = plast_tensor_view(x->data + (size_t)s0 * per, c,
                                              plast_model_input_shape(q->m));
        rc = calibrate_chunk(q, &part, e);
    }
    if (rc == PLAST_OK)
        q->calibrated++;
    return rc;
}

/* The statistics, in this order: maxabs[nl + 1], maxpos[nl + 1], then the
 * number of calibrated batches (finish needs one). */
size_t plast_qmodel_calib_count(const plast_qmodel *q)
{
    return 2 * ((size_t)q->nl + 1) + 1;
}

void plast_qmodel_calib_get(const plast_qmodel *q, double *stats)
{
    size_t n = (size_t)q->nl + 1;
    memcpy(stats, q->maxabs, n * sizeof *stats);
    memcpy(stats + n, q->maxpos, n * sizeof *stats);
    stats[2 * n] = (double)q->calibrated;
}

void plast_qmodel_calib_set(plast_qmodel *q, const double *stats)
{
    PLAST_ASSERT(!q->finished);
    size_t n = (size_t)q->nl + 1;
    memcpy(q->maxabs, stats, n * sizeof *stats);
    memcpy(q->maxpos, stats + n, n * sizeof *stats);
    q->calibrated = stats[2 * n] >= 1.0 ? (int)fmin(stats[2 * n], 1e9) : 0;
}

/* ---- finish: activation scales, bias codes, requantisers ---- */

/* Is the only reader of layer o's output a relu? */
static int feeds_relu_only(const plast_qmodel *q, int o)
{
    if (q->consumers[o + 1] != 1)
        return 0;
    for (int j = o + 1; j < q->nl; j++)
        if (q->ql[j].in[0] == o || q->ql[j].in[1] == o)
            return q->ql[j].kind == QK_RELU;
    return 0;
}

static void set_scales(plast_qmodel *q)
{
    q->scale[0] = act_scale_of(q->maxabs[0]);
    for (int i = 0; i < q->nl; i++) {
        const qlayer *ql = &q->ql[i];
        int o = ql->out;
        if (ql->kind == QK_DENSE || ql->kind == QK_CONV || ql->kind == QK_ADD)
            q->scale[i + 1] =
                act_scale_of(feeds_relu_only(q, o) ? q->maxpos[o + 1] : q->maxabs[o + 1]);
        else /* relu, pools, flatten, dropout, a folded batchnorm: the input's */
            q->scale[i + 1] = q->scale[ql->in[0] + 1];
    }
}

static int requant_of(plast_requant *rq, double multiplier, const qlayer *ql, plast_err *e)
{
    int rc = plast_requant_init(rq, multiplier, e);
    if (rc)
        plast_err_set(e, rc, "qmodel: layer '%s': requantiser multiplier %.9g out of range "
                             "(0, 2^30): calibrate on data that reaches it",
                      ql->l->name, multiplier);
    return rc;
}

/* Bias codes at s_w * s_in, and the requantisers to the output scale. */
static int finish_weighted(plast_qmodel *q, int i, plast_err *e)
{
    qlayer *ql = &q->ql[i];
    int from = ql->kind == QK_ADD ? ql->in[1] : ql->in[0];
    double s_in = q->scale[from + 1], s_out = q->scale[i + 1];
    plast_qtensor *bt = ql->bt >= 0 ? &q->t[ql->bt] : NULL;
    for (int c = 0; c < ql->channels; c++) {
        double bs = weight_scale(q, ql, c) * s_in;
        ql->acc_scale[c] = bs;
        if (bt) {
            ((double *)bt->scale)[(size_t)c / bt->group] = bs;
            plast_qtensor_set(bt, (size_t)c, plast_quant_code(folded_bias(ql, c), bs, bt->qmax));
        }
        int rc = i == q->final ? PLAST_OK : requant_of(&ql->rq[c], bs / s_out, ql, e);
        if (rc)
            return rc;
    }
    return PLAST_OK;
}

static int finish_add(plast_qmodel *q, int i, plast_err *e)
{
    qlayer *ql = &q->ql[i];
    double s_out = q->scale[i + 1];
    int rc = requant_of(&ql->rq_in, q->scale[ql->in[0] + 1] / s_out, ql, e);
    if (rc == PLAST_OK && ql->s == 0)
        rc = requant_of(&ql->rq_from, q->scale[ql->in[1] + 1] / s_out, ql, e);
    if (rc == PLAST_OK && ql->s > 0)
        rc = finish_weighted(q, i, e);
    return rc;
}

int plast_qmodel_finish(plast_qmodel *q, plast_err *e)
{
    if (q->finished)
        return plast_err_set(e, PLAST_E_INVAL, "qmodel: finish called twice");
    if (!q->calibrated)
        return plast_err_set(e, PLAST_E_INVAL,
                             "qmodel: finish before calibrate: no activation ranges recorded");
    set_scales(q);
    for (int i = 0; i < q->nl; i++) {
        int rc = PLAST_OK;
        if (q->ql[i].kind == QK_ADD)
            rc = finish_add(q, i, e);
        else if (is_weighted(&q->ql[i]))
            rc = finish_weighted(q, i, e);
        if (rc)
            return rc;
    }
    q->finished = 1;
    return PLAST_OK;
}

/* ---- forward: slots ---- */

static int8_t *slot_data(const plast_qmodel *q, int slot)
{
    return q->data[q->own[slot]];
}

/* One reader of `slot` is done; the last frees the buffer. */
static void slot_release(plast_qmodel *q, int slot)
{
    int o = q->own[slot];
    if (--q->refs[o] == 0) {
        plast_mem_free(q->mem, q->data[o]);
        q->data[o] = NULL;
    }
}

/* Layer i's output in a new buffer of n codes. */
static int8_t *slot_new(plast_qmodel *q, int i, size_t n, plast_err *e)
{
    int8_t *p = plast_mem_alloc(q->mem, PLAST_MEM_ACTIVATIONS, n);
    if (!p) {
        out_of_memory(e, "output codes", q->ql[i].l);
        return NULL;
    }
    q->data[i + 1] = p;
    q->own[i + 1] = i + 1;
    q->refs[i + 1] = q->consumers[i + 1];
    return p;
}

/* Layer i's output is its input's buffer: layer i's read passes to its
 * own readers. */
static void slot_alias(plast_qmodel *q, int i, int slot)
{
    int o = q->own[slot];
    q->own[i + 1] = o;
    q->refs[o] += q->consumers[i + 1] - 1;
}

static int slot_sole_reader(const plast_qmodel *q, int slot)
{
    return q->refs[q->own[slot]] == 1;
}

/* ---- forward: integer kernels ---- */

static size_t acc_bytes(const plast_qmodel *q)
{
    return q->cfg.weight_bits == 8 ? sizeof(int32_t) : sizeof(int64_t);
}

static int64_t acc_at(const plast_qmodel *q, const void *acc, size_t i)
{
    return q->cfg.weight_bits == 8 ? ((const int32_t *)acc)[i] : ((const int64_t *)acc)[i];
}

/* C[M, N] = W[M, K] B[N, K]^T into the accumulator type. */
static void gemm(const plast_qtensor *w, int M, int N, int K, const int8_t *B, void *C)
{
    if (w->type == PLAST_Q_INT8)
        plast_igemm_s8(M, N, K, w->codes, K, B, K, 0, C, N);
    else
        plast_igemm_s16s8(M, N, K, w->codes, K, B, K, 0, C, N);
}

static void *alloc_acc(plast_qmodel *q, size_t n, const qlayer *ql, plast_err *e)
{
    void *p = plast_mem_alloc(q->mem, PLAST_MEM_ACTIVATIONS, n * acc_bytes(q));
    if (!p)
        out_of_memory(e, "the accumulator", ql->l);
    return p;
}

static int dense_logits(plast_qmodel *q, const qlayer *ql, const void *acc, int batch,
                        plast_tensor *logits, plast_err *e)
{
    int units = ql->channels;
    plast_shape shape = {1, {units}};
    int rc = plast_tensor_alloc(logits, q->mem, PLAST_MEM_ACTIVATIONS, batch, &shape, e);
    if (rc)
        return rc;
    for (int n = 0; n < batch; n++)
        for (int u = 0; u < units; u++) {
            int64_t t = acc_at(q, acc, (size_t)u * (size_t)batch + (size_t)n) + bias_code(q, ql, u);
            logits->data[(size_t)n * (size_t)units + (size_t)u] =
                (plast_real)((double)t * ql->acc_scale[u]);
        }
    return PLAST_OK;
}

static int run_dense(plast_qmodel *q, int i, int batch, plast_tensor *logits, plast_err *e)
{
    const qlayer *ql = &q->ql[i];
    int units = ql->channels, rc = PLAST_OK;
    void *acc = alloc_acc(q, (size_t)units * (size_t)batch, ql, e);
    if (!acc)
        return PLAST_E_NOMEM;
    gemm(weight_of(q, ql), units, batch, ql->group, slot_data(q, ql->in[0] + 1), acc);
    slot_release(q, ql->in[0] + 1);
    if (i == q->final) {
        rc = dense_logits(q, ql, acc, batch, logits, e);
    } else {
        int8_t *y = slot_new(q, i, (size_t)units * (size_t)batch, e);
        for (int n = 0; y && n < batch; n++)
            for (int u = 0; u < units; u++)
                y[(size_t)n * (size_t)units + (size_t)u] = requant8(
                    &ql->rq[u],
                    acc_at(q, acc, (size_t)u * (size_t)batch + (size_t)n) + bias_code(q, ql, u));
        rc = y ? PLAST_OK : PLAST_E_NOMEM;
    }
    plast_mem_free(q->mem, acc);
    return rc;
}

/* One sample's planes with `p` rows and columns of code 0 around them,
 * so that im2col needs no bounds. */
static void pad_sample(const qlayer *ql, const int8_t *x, int8_t *xp)
{
    const plast_layer *l = ql->l;
    int cin = l->in.dim[0], h = l->in.dim[1], w = l->in.dim[2], p = ql->p;
    size_t wp = (size_t)w + 2 * (size_t)p, hp = (size_t)h + 2 * (size_t)p;
    memset(xp, 0, (size_t)cin * hp * wp);
    for (int c = 0; c < cin; c++)
        for (int y = 0; y < h; y++)
            memcpy(xp + ((size_t)c * hp + (size_t)(y + p)) * wp + (size_t)p,
                   x + ((size_t)c * (size_t)h + (size_t)y) * (size_t)w, (size_t)w);
}

/* The columns from the padded sample: col[(oy, ox)][(ci, ky, kx)]. */
static void im2col8(const qlayer *ql, const int8_t *xp, int8_t *col)
{
    const plast_layer *l = ql->l;
    int cin = l->in.dim[0], ho = l->out.dim[1], wo = l->out.dim[2], k = ql->k, s = ql->s;
    size_t wp = (size_t)l->in.dim[2] + 2 * (size_t)ql->p;
    size_t hp = (size_t)l->in.dim[1] + 2 * (size_t)ql->p;
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++) {
            int8_t *dst = col + ((size_t)oy * (size_t)wo + (size_t)ox) * (size_t)ql->group;
            for (int ci = 0; ci < cin; ci++)
                for (int ky = 0; ky < k; ky++) {
                    const int8_t *src = xp + ((size_t)ci * hp + (size_t)(oy * s + ky)) * wp +
                                        (size_t)(ox * s);
                    for (int kx = 0; kx < k; kx++)
                        *dst++ = src[kx];
                }
        }
}

/* acc[c][j] (+ bias) requantised into y[c][j] for one sample. */
static void requant_planes(const plast_qmodel *q, const qlayer *ql, const void *acc, int hw,
                           int8_t *y)
{
    for (int c = 0; c < ql->channels; c++) {
        int64_t b = bias_code(q, ql, c);
        size_t o = (size_t)c * (size_t)hw;
        for (int j = 0; j < hw; j++)
            y[o + (size_t)j] = requant8(&ql->rq[c], acc_at(q, acc, o + (size_t)j) + b);
    }
}

static int run_conv(plast_qmodel *q, int i, int batch, plast_err *e)
{
    const qlayer *ql = &q->ql[i];
    const plast_layer *l = ql->l;
    size_t nx = plast_shape_size(&l->in), ny = plast_shape_size(&l->out);
    int hw = l->out.dim[1] * l->out.dim[2];
    const int8_t *x = slot_data(q, ql->in[0] + 1);
    int8_t *y = slot_new(q, i, ny * (size_t)batch, e);
    if (!y)
        return PLAST_E_NOMEM;
    void *acc = alloc_acc(q, (size_t)ql->channels * (size_t)hw, ql, e);
    if (!acc)
        return PLAST_E_NOMEM;
    size_t npad = (size_t)l->in.dim[0] * ((size_t)l->in.dim[1] + 2 * (size_t)ql->p) *
                  ((size_t)l->in.dim[2] + 2 * (size_t)ql->p);
    int8_t *col = plast_mem_alloc(q->mem, PLAST_MEM_SCRATCH, (size_t)hw * (size_t)ql->group);
    int8_t *xp = plast_mem_alloc(q->mem, PLAST_MEM_SCRATCH, npad);
    if (!col || !xp) {
        plast_mem_free(q->mem, xp);
        plast_mem_free(q->mem, col);
        plast_mem_free(q->mem, acc);
        return out_of_memory(e, "the im2col columns", l);
    }
    for (int n = 0; n < batch; n++) {
        pad_sample(ql, x + (size_t)n * nx, xp);
        im2col8(ql, xp, col);
        gemm(weight_of(q, ql), ql->channels, hw, ql->group, col, acc);
        requant_planes(q, ql, acc, hw, y + (size_t)n * ny);
    }
    plast_mem_free(q->mem, xp);
    plast_mem_free(q->mem, col);
    plast_mem_free(q->mem, acc);
    slot_release(q, ql->in[0] + 1);
    return PLAST_OK;
}

static int run_relu(plast_qmodel *q, int i, int batch, plast_err *e)
{
    const qlayer *ql = &q->ql[i];
    size_t n = plast_shape_size(&ql->l->in) * (size_t)batch;
    int slot = ql->in[0] + 1;
    const int8_t *x = slot_data(q, slot);
    int8_t *y;
    if (slot_sole_reader(q, slot)) {
        slot_alias(q, i, slot);
        y = (int8_t *)x;
    } else if (!(y = slot_new(q, i, n, e))) {
        return PLAST_E_NOMEM;
    }
    for (size_t j = 0; j < n; j++)
        y[j] = x[j] < 0 ? 0 : x[j];
    if (y != x)
        slot_release(q, slot);
    return PLAST_OK;
}

/* Rounded a / b for b > 0, ties away from zero. */
static int64_t div_round(int64_t a, int64_t b)
{
    int64_t m = ((a < 0 ? -a : a) + b / 2) / b;
    return a < 0 ? -m : m;
}

/* One plane of maxpool (the real pixels of each window) or avgpool (their
 * sum over the full window area, padding counting as 0). */
static void pool_plane(const qlayer *ql, const int8_t *x, int8_t *y)
{
    const plast_layer *l = ql->l;
    int h = l->in.dim[1], w = l->in.dim[2], ho = l->out.dim[1], wo = l->out.dim[2];
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++) {
            int top = oy * ql->s - ql->p, left = ox * ql->s - ql->p;
            int y0 = top < 0 ? 0 : top, y1 = top + ql->k < h ? top + ql->k : h;
            int x0 = left < 0 ? 0 : left, x1 = left + ql->k < w ? left + ql->k : w;
            int best = -128;
            int64_t sum = 0;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++) {
                    int v = x[(size_t)iy * (size_t)w + (size_t)ix];
                    best = v > best ? v : best;
                    sum += v;
                }
            y[(size_t)oy * (size_t)wo + (size_t)ox] =
                (int8_t)(ql->kind == QK_MAXPOOL ? best : div_round(sum, (int64_t)ql->k * ql->k));
        }
}

static int run_pool(plast_qmodel *q, int i, int batch, plast_err *e)
{
    const qlayer *ql = &q->ql[i];
    const plast_layer *l = ql->l;
    size_t planes = (size_t)batch * (size_t)l->in.dim[0];
    size_t nin = (size_t)l->in.dim[1] * (size_t)l->in.dim[2];
    size_t nout = ql->kind == QK_GAP ? 1 : (size_t)l->out.dim[1] * (size_t)l->out.dim[2];
    const int8_t *x = slot_data(q, ql->in[0] + 1);
    int8_t *y = slot_new(q, i, planes * nout, e);
    if (!y)
        return PLAST_E_NOMEM;
    for (size_t pl = 0; pl < planes; pl++) {
        if (ql->kind != QK_GAP) {
            pool_plane(ql, x + pl * nin, y + pl * nout);
            continue;
        }
        int64_t sum = 0;
        for (size_t j = 0; j < nin; j++)
            sum += x[pl * nin + j];
        y[pl] = (int8_t)div_round(sum, (int64_t)nin);
    }
    slot_release(q, ql->in[0] + 1);
    return PLAST_OK;
}

/* Sum of two requantised terms (each well inside int64), saturated. */
static int8_t add8(int64_t a, int64_t b)
{
    int64_t s;
    if (__builtin_add_overflow(a, b, &s))
        s = a > 0 ? INT64_MAX : -INT64_MAX;
    return (int8_t)plast_quant_saturate(s, ACT_QMAX);
}

/* The 1x1 shortcut for one sample: from's strided pixels as rows
 * col[(i, j)][c], then acc[c_out][(i, j)]. */
static void shortcut_sample(const plast_qmodel *q, const qlayer *ql, const int8_t *from,
                            int8_t *col, void *acc)
{
    const plast_layer *l = ql->l;
    int cf = l->in2.dim[0], hf = l->in2.dim[1], wf = l->in2.dim[2];
    int h = l->in.dim[1], w = l->in.dim[2];
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++)
            for (int c = 0; c < cf; c++)
                col[((size_t)i * (size_t)w + (size_t)j) * (size_t)cf + (size_t)c] =
                    from[((size_t)c * (size_t)hf + (size_t)(i * ql->s)) * (size_t)wf +
                         (size_t)(j * ql->s)];
    gemm(weight_of(q, ql), ql->channels, h * w, cf, col, acc);
}

static int add_shortcut(plast_qmodel *q, const qlayer *ql, const int8_t *x, const int8_t *f,
                        int batch, int8_t *y, plast_err *e)
{
    const plast_layer *l = ql->l;
    int hw = l->in.dim[1] * l->in.dim[2];
    size_t ny = plast_shape_size(&l->out), nf = plast_shape_size(&l->in2);
    void *acc = alloc_acc(q, (size_t)ql->channels * (size_t)hw, ql, e);
    if (!acc)
        return PLAST_E_NOMEM;
    int8_t *col = plast_mem_alloc(q->mem, PLAST_MEM_SCRATCH, (size_t)hw * (size_t)ql->group);
    if (!col) {
        plast_mem_free(q->mem, acc);
        return out_of_memory(e, "the shortcut columns", l);
    }
    for (int n = 0; n < batch; n++) {
        shortcut_sample(q, ql, f + (size_t)n * nf, col, acc);
        for (int c = 0; c < ql->channels; c++)
            for (int j = 0; j < hw; j++) {
                size_t o = (size_t)c * (size_t)hw + (size_t)j, at = (size_t)n * ny + o;
                y[at] = add8(requant(&ql->rq_in, x[at]), requant(&ql->rq[c], acc_at(q, acc, o)));
            }
    }
    plast_mem_free(q->mem, col);
    plast_mem_free(q->mem, acc);
    return PLAST_OK;
}

static int run_add(plast_qmodel *q, int i, int batch, plast_err *e)
{
    const qlayer *ql = &q->ql[i];
    int sx = ql->in[0] + 1, sf = ql->in[1] + 1, rc = PLAST_OK;
    int8_t *x = slot_data(q, sx);
    const int8_t *f = slot_data(q, sf);
    size_t n = plast_shape_size(&ql->l->out) * (size_t)batch;
    int inplace = slot_sole_reader(q, sx) && q->own[sx] != q->own[sf];
    int8_t *y = x;
    if (inplace)
        slot_alias(q, i, sx);
    else if (!(y = slot_new(q, i, n, e)))
        return PLAST_E_NOMEM;
    if (ql->s > 0)
        rc = add_shortcut(q, ql, x, f, batch, y, e);
    else
        for (size_t j = 0; j < n; j++)
            y[j] = add8(requant(&ql->rq_in, x[j]), requant(&ql->rq_from, f[j]));
    if (!inplace)
        slot_release(q, sx);
    slot_release(q, sf);
    return rc;
}

static int run_layer(plast_qmodel *q, int i, int batch, plast_tensor *logits, plast_err *e)
{
    switch (q->ql[i].kind) {
    case QK_DENSE: return run_dense(q, i, batch, logits, e);
    case QK_CONV: return run_conv(q, i, batch, e);
    case QK_RELU: return run_relu(q, i, batch, e);
    case QK_MAXPOOL:
    case QK_AVGPOOL:
    case QK_GAP: return run_pool(q, i, batch, e);
    case QK_ADD: return run_add(q, i, batch, e);
    default: /* flatten, dropout (eval), folded batchnorm: the same codes */
        slot_alias(q, i, q->ql[i].in[0] + 1);
        return PLAST_OK;
    }
}

/* The model input's codes into slot 0. */
static int quantise_input(plast_qmodel *q, const plast_tensor *x, plast_err *e)
{
    int8_t *p = plast_mem_alloc(q->mem, PLAST_MEM_ACTIVATIONS, x->size);
    if (!p)
        return plast_err_set(e, PLAST_E_NOMEM, "qmodel: out of memory for the input codes");
    for (size_t j = 0; j < x->size; j++)
        p[j] = (int8_t)plast_quant_code((double)x->data[j], q->scale[0], ACT_QMAX);
    q->data[0] = p;
    q->own[0] = 0;
    q->refs[0] = q->consumers[0];
    return PLAST_OK;
}

/* The last layer's codes (not a dense) dequantised. */
static int codes_to_logits(plast_qmodel *q, int batch, plast_tensor *logits, plast_err *e)
{
    const plast_layer *last = q->ql[q->nl - 1].l;
    int rc = plast_tensor_alloc(logits, q->mem, PLAST_MEM_ACTIVATIONS, batch, &last->out, e);
    if (rc)
        return rc;
    const int8_t *c = slot_data(q, q->nl);
    for (size_t j = 0; j < logits->size; j++)
        logits->data[j] = (plast_real)((double)c[j] * q->scale[q->nl]);
    return PLAST_OK;
}

int plast_qmodel_forward(plast_qmodel *q, const plast_tensor *x, plast_tensor *logits,
                         plast_err *e)
{
    if (!q->finished)
        return plast_err_set(e, PLAST_E_INVAL, "qmodel: forward before finish");
    int rc = check_input(q, x, "forward", e);
    if (rc)
        return rc;
    int batch = x->dim[0];
    memset(logits, 0, sizeof *logits);
    if ((rc = quantise_input(q, x, e)) != 0)
        return rc;
    for (int i = 0; i < q->nl && !rc; i++) {
        rc = run_layer(q, i, batch, logits, e);
        if (i == q->final)
            break; /* only its folded batchnorm may follow */
    }
    if (rc == PLAST_OK && q->final < 0)
        rc = codes_to_logits(q, batch, logits, e);
    for (int s = 0; s <= q->nl; s++) { /* the last codes, or everything after an error */
        plast_mem_free(q->mem, q->data[s]);
        q->data[s] = NULL;
    }
    if (rc)
        plast_tensor_free(logits);
    return rc;
}

/* ---- tensors, scales, store ---- */

int plast_qmodel_ntensors(const plast_qmodel *q)
{
    return q->nt;
}

plast_qtensor *plast_qmodel_tensor(plast_qmodel *q, int i)
{
    return i >= 0 && i < q->nt ? &q->t[i] : NULL;
}

double plast_qmodel_act_scale(const plast_qmodel *q, int layer)
{
    if (!q->finished || layer < -1 || layer >= q->nl)
        return 0.0;
    return q->scale[layer + 1];
}

/* The float weights and bias that, followed by the batchnorm when one is
 * folded, compute what the codes say. */
static void store_layer(plast_qmodel *q, const qlayer *ql)
{
    const plast_qtensor *wt = weight_of(q, ql);
    plast_real *w = ql->l->param[0].w;
    for (size_t j = 0; j < wt->count; j++) {
        double v = (double)plast_qtensor_get(wt, j) * scale_at(wt, j);
        w[j] = (plast_real)(ql->fold_a ? v / ql->fold_a[j / (size_t)ql->group] : v);
    }
    if (ql->bt < 0 || !q->finished)
        return;
    const plast_qtensor *bt = &q->t[ql->bt];
    plast_layer *owner = plast_model_layer(q->m, bt->layer);
    for (int c = 0; c < ql->channels; c++) {
        double b = (double)plast_qtensor_get(bt, (size_t)c) * scale_at(bt, (size_t)c);
        if (bt->layer != ql->l->index) /* the batchnorm's beta */
            b += ql->fold_a[c] * (double)plast_model_layer(q->m, ql->bn)->param[2].w[c];
        else if (ql->fold_a)
            b = (b - ql->fold_b[c]) / ql->fold_a[c];
        owner->param[1].w[c] = (plast_real)b;
    }
}

int plast_qmodel_store(plast_qmodel *q, plast_err *e)
{
    (void)e;
    for (int i = 0; i < q->nl; i++)
        if (is_weighted(&q->ql[i]))
            store_layer(q, &q->ql[i]);
    return PLAST_OK;
}
