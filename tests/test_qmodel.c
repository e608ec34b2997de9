/* test_qmodel.c - the fixed-point engine.
 *
 * Exactness: an independent float64 simulation walks the float model's
 * layers with the engine's codes (plast_qtensor) and scales
 * (plast_qmodel_act_scale) and redoes the documented arithmetic: integer
 * sums held in doubles (exact below 2^53), the requantiser's 31-bit
 * multiplier rebuilt from frexp, and rounding to nearest with ties away
 * from zero decided exactly with fma (see round_exact).  The engine's
 * logits must equal the simulation's bit for bit.
 *
 * Bound: the same walk propagates E, a bound on |dequantised codes -
 * float64 reference| over every value of a layer's output:
 *   input          E = s_in / 2
 *   dense, conv    E_j = sum_k (s_w/2) |a_k| + sum_k |q_jk s_w| E_in
 *                        + s_b/2 (bias rounding) + s_out/2 (output rounding)
 *                        + s_out 2^-20 (31-bit multiplier, generous)
 *                  (a folded batchnorm: the same with the folded codes)
 *   relu, maxpool, flatten, dropout, batchnorm (folded): E unchanged
 *   avgpool, gap   E + s/2
 *   add            E_x + E_f' + s_out (two roundings), E_f' = E_f for the
 *                  identity, the dense formula without output rounding for
 *                  the 1x1 shortcut
 *   logits         the dense formula without output rounding, + |y| 2^-23
 * where a_k are the float64 reference inputs.  Saturation never widens
 * the error because the batch forwarded is the calibration batch (|a| <=
 * 127 s), except below -127 s where a relu-only scale lets negative
 * values saturate: the relu that follows zeroes both.  The engine's
 * logits must lie within E + 1e-4 (1 + |y|) of the fp32 model's (the last
 * term covers fp32 against float64, itself checked below 1e-4 (1 + |y|)). */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include <plast/qmodel.h>

/* ---- building models ---- */

typedef struct qnet {
    plast_config *cfg;
    plast_registry *reg;
    plast_mem *mem;
    plast_model *m;
    plast_shape in;
    int classes;
} qnet;

static void net_init(qnet *n, const char *ini, plast_shape in, int classes, uint64_t seed)
{
    plast_err e;
    memset(n, 0, sizeof *n);
    n->cfg = tu_config(ini);
    n->reg = tu_registry();
    n->in = in;
    n->classes = classes;
    CHECK_OK(plast_mem_create(&n->mem, &e), e);
    CHECK_OK(plast_model_create(&n->m, n->cfg, n->reg, &in, classes, seed, n->mem, &e), e);
}

static void net_fini(qnet *n)
{
    plast_model_destroy(n->m);
    cr_assert(eq(sz, plast_mem_live_total(n->mem), 0));
    plast_mem_destroy(n->mem);
    plast_registry_destroy(n->reg);
    plast_config_destroy(n->cfg);
}

/* Random batchnorm statistics and affine parameters, so folding matters. */
static void randomise_batchnorms(plast_model *m, uint64_t seed)
{
    plast_rng r;
    plast_rng_seed(&r, seed, 99);
    for (int i = 0; i < plast_model_nlayers(m); i++) {
        plast_layer *l = plast_model_layer(m, i);
        if (strcmp(l->ops->name, "batchnorm") != 0)
            continue;
        for (size_t c = 0; c < l->param[0].count; c++) {
            float sign = plast_rng_float(&r) < 0.2f ? -1.0f : 1.0f;
            l->param[0].w[c] = sign * plast_rng_uniform(&r, 0.5f, 2.0f);
            l->param[1].w[c] = plast_rng_uniform(&r, -0.3f, 0.3f);
            l->param[2].w[c] = plast_rng_uniform(&r, -0.2f, 0.2f);
            l->param[3].w[c] = plast_rng_uniform(&r, 0.3f, 2.0f);
        }
    }
}

static plast_tensor make_input(qnet *n, int batch, float lo, float hi, uint64_t seed)
{
    plast_err e;
    plast_tensor x;
    CHECK_OK(plast_tensor_alloc(&x, n->mem, PLAST_MEM_INPUT, batch, &n->in, &e), e);
    plast_rng r;
    plast_rng_seed(&r, seed, 5);
    for (size_t i = 0; i < x.size; i++)
        x.data[i] = plast_rng_uniform(&r, lo, hi);
    return x;
}

static plast_qmodel *quantise(qnet *n, const plast_tensor *x, int bits, int per_channel)
{
    plast_err e;
    plast_qconfig cfg = {bits, 8, per_channel, 1.25};
    plast_qmodel *q = NULL;
    CHECK_OK(plast_qmodel_create(&q, n->m, &cfg, &e), e);
    CHECK_OK(plast_qmodel_calibrate(q, x, &e), e);
    CHECK_OK(plast_qmodel_finish(q, &e), e);
    return q;
}

/* ---- the float64 simulation ---- */

/* The requantiser's multiplier as the header defines it: 31 bits. */
static double q31(double m)
{
    int x;
    double f = frexp(m, &x);
    double mult = rint(ldexp(f, 31));
    if (mult == 0x1p31) {
        mult = 0x1p30;
        x++;
    }
    return ldexp(mult, x - 31);
}

/* t * m rounded to nearest, ties away from zero, exactly: p is the
 * correctly rounded product and fma gives its error, so a product that
 * lands on a half in double is settled by the error's sign. */
static double round_exact(double t, double m)
{
    double p = t * m, err = fma(t, m, -p), fl = floor(p);
    if (p - fl != 0.5)
        return round(p);
    if (err > 0)
        return fl + 1.0;
    if (err < 0)
        return fl;
    return round(p);
}

static double clamp127(double v)
{
    return v > 127 ? 127 : v < -127 ? -127 : v;
}

/* One layer output: codes, float64 reference, error bound per value. */
typedef struct sval {
    double *q, *f, *e;
    size_t n; /* values per sample */
} sval;

typedef struct sim {
    plast_model *m;
    plast_qmodel *q;
    int batch, nl, ti;
    sval *v;        /* [nl + 1]; v[0] the input */
    double *logits; /* engine-equivalent logits (float values) */
    double *ref;    /* float64 reference logits */
    double *bound;  /* bound on |logits - ref| */
} sim;

static sval *val_of(sim *S, int producer)
{
    return &S->v[producer + 1];
}

static void val_alloc(sval *v, size_t n, int batch)
{
    v->n = n;
    v->q = calloc(n * (size_t)batch, sizeof *v->q);
    v->f = calloc(n * (size_t)batch, sizeof *v->f);
    v->e = calloc(n * (size_t)batch, sizeof *v->e);
    cr_assert(v->q != NULL && v->f != NULL && v->e != NULL);
}

static double tscale(const plast_qtensor *t, size_t i)
{
    return t->scale[i / t->group];
}

/* The weight tensor of layer i and its bias (NULL when none), in the
 * documented order. */
static const plast_qtensor *next_tensors(sim *S, int i, const plast_qtensor **bias)
{
    const plast_qtensor *w = plast_qmodel_tensor(S->q, S->ti++);
    cr_assert(w != NULL);
    cr_assert(eq(int, w->layer, i));
    cr_assert(eq(int, w->param, 0));
    *bias = NULL;
    const plast_qtensor *b = plast_qmodel_tensor(S->q, S->ti);
    if (b && b->type == PLAST_Q_INT32) {
        cr_assert(b->layer == i || b->layer == i + 1);
        cr_assert(eq(int, b->param, 1));
        *bias = b;
        S->ti++;
    }
    return w;
}

/* The last layer, or the one its batchnorm folds into. */
static int last_effective(const sim *S)
{
    int last = S->nl - 1;
    if (strcmp(plast_model_layer(S->m, last)->ops->name, "batchnorm") == 0)
        last--;
    return last;
}

/* Does layer i's accumulator give the logits? */
static int is_final_dense(const sim *S, int i)
{
    return i == last_effective(S) && !strcmp(plast_model_layer(S->m, i)->ops->name, "dense");
}

/* Accumulates one output value of a dense, a conv or a shortcut. */
typedef struct dot {
    double tq, fr, werr, aerr;
} dot;

static void dot_add(dot *d, const plast_qtensor *w, size_t wi, double wf, const sval *in,
                    size_t ai)
{
    double sw = tscale(w, wi), wq = plast_qtensor_get(w, wi);
    d->tq += wq * in->q[ai];
    d->fr += wf * in->f[ai];
    d->werr += sw / 2 * fabs(in->f[ai]);
    d->aerr += fabs(wq * sw) * in->e[ai];
}

/* Finish output value `at` of layer i, channel c. */
static void dot_emit(sim *S, int i, const plast_qtensor *w, const plast_qtensor *b,
                     const plast_layer *l, int c, dot d, sval *out, size_t at, int sample)
{
    int from = plast_model_layer_input(S->m, i, 0);
    size_t per_channel = w->count / (size_t)l->out.dim[0];
    double s_in = plast_qmodel_act_scale(S->q, from), s_w = tscale(w, (size_t)c * per_channel);
    double bs = b ? tscale(b, (size_t)c) : s_w * s_in;
    double bias_f = l->nparams > 1 ? (double)l->param[1].w[c] : 0.0;
    double t = d.tq + (b ? (double)plast_qtensor_get(b, (size_t)c) : 0.0);
    double berr = b ? bs / 2 : 0.0;
    out->f[at] = d.fr + bias_f;
    if (is_final_dense(S, i)) {
        size_t k = (size_t)sample * (size_t)l->out.dim[0] + (size_t)c;
        S->logits[k] = (double)(float)(t * bs);
        S->bound[k] = d.werr + d.aerr + berr + fabs(S->logits[k]) * 0x1p-23;
        return;
    }
    double s_out = plast_qmodel_act_scale(S->q, i);
    out->q[at] = clamp127(round_exact(t, q31(bs / s_out)));
    out->e[at] = d.werr + d.aerr + berr + s_out / 2 + s_out * 0x1p-20;
}

static void sim_dense(sim *S, int i)
{
    const plast_layer *l = plast_model_layer(S->m, i);
    const plast_qtensor *b, *w = next_tensors(S, i, &b);
    sval *in = val_of(S, plast_model_layer_input(S->m, i, 0)), *out = &S->v[i + 1];
    size_t K = in->n, U = (size_t)l->out.dim[0];
    val_alloc(out, U, S->batch);
    for (int n = 0; n < S->batch; n++)
        for (size_t u = 0; u < U; u++) {
            dot d = {0, 0, 0, 0};
            for (size_t k = 0; k < K; k++)
                dot_add(&d, w, u * K + k, l->param[0].w[u * K + k], in, (size_t)n * K + k);
            dot_emit(S, i, w, b, l, (int)u, d, out, (size_t)n * U + u, n);
        }
}

/* A direct convolution (no im2col) with taps outside the image skipped. */
static void sim_conv(sim *S, int i, int k, int st, int pad)
{
    const plast_layer *l = plast_model_layer(S->m, i);
    const plast_qtensor *b, *w = next_tensors(S, i, &b);
    sval *in = val_of(S, plast_model_layer_input(S->m, i, 0)), *out = &S->v[i + 1];
    int cin = l->in.dim[0], h = l->in.dim[1], wd = l->in.dim[2];
    int cout = l->out.dim[0], ho = l->out.dim[1], wo = l->out.dim[2];
    val_alloc(out, (size_t)cout * ho * wo, S->batch);
    for (int n = 0; n < S->batch; n++)
        for (int c = 0; c < cout; c++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    dot d = {0, 0, 0, 0};
                    for (int ci = 0; ci < cin; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * st - pad + ky, ix = ox * st - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd)
                                    continue;
                                size_t wi = (((size_t)c * cin + ci) * k + ky) * k + kx;
                                size_t ai = (size_t)n * in->n + ((size_t)ci * h + iy) * wd + ix;
                                dot_add(&d, w, wi, l->param[0].w[wi], in, ai);
                            }
                    size_t at = (size_t)n * out->n + ((size_t)c * ho + oy) * wo + ox;
                    dot_emit(S, i, w, b, l, c, d, out, at, n);
                }
}

static void sim_copy(sim *S, int i, int relu)
{
    sval *in = val_of(S, plast_model_layer_input(S->m, i, 0)), *out = &S->v[i + 1];
    val_alloc(out, in->n, S->batch);
    for (size_t j = 0; j < in->n * (size_t)S->batch; j++) {
        out->q[j] = relu && in->q[j] < 0 ? 0 : in->q[j];
        out->f[j] = relu && in->f[j] < 0 ? 0 : in->f[j];
        /* both sides of a relu are 0 when f + E <= 0 */
        out->e[j] = relu && in->f[j] + in->e[j] <= 0 ? 0 : in->e[j];
    }
}

static void sim_batchnorm(sim *S, int i)
{
    const plast_layer *l = plast_model_layer(S->m, i);
    sim_copy(S, i, 0);
    sval *out = &S->v[i + 1];
    int ch = l->in.dim[0];
    size_t per = out->n / (size_t)ch;
    for (int n = 0; n < S->batch; n++)
        for (int c = 0; c < ch; c++) {
            double a = l->param[0].w[c] / sqrt((double)l->param[3].w[c] + 1e-5);
            for (size_t j = 0; j < per; j++) {
                double *f = &out->f[(size_t)n * out->n + (size_t)c * per + j];
                *f = a * (*f - l->param[2].w[c]) + l->param[1].w[c];
            }
        }
}

/* maxpool / avgpool with window k, stride st, padding pad; k 0 = gap. */
static void sim_pool(sim *S, int i, int maxpool, int k, int st, int pad)
{
    const plast_layer *l = plast_model_layer(S->m, i);
    sval *in = val_of(S, plast_model_layer_input(S->m, i, 0)), *out = &S->v[i + 1];
    int C = l->in.dim[0], h = l->in.dim[1], w = l->in.dim[2];
    int ho = k ? l->out.dim[1] : 1, wo = k ? l->out.dim[2] : 1;
    if (!k) {
        k = h > w ? h : w;
        st = 1;
    }
    double area = l->out.ndim == 1 ? (double)h * w : (double)k * k;
    val_alloc(out, (size_t)C * ho * wo, S->batch);
    for (int n = 0; n < S->batch; n++)
        for (int c = 0; c < C; c++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    double mq = -1e300, mf = -1e300, me = 0, sq = 0, sf = 0, se = 0;
                    for (int iy = oy * st - pad; iy < oy * st - pad + k; iy++)
                        for (int ix = ox * st - pad; ix < ox * st - pad + k; ix++) {
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                continue;
                            size_t a = (size_t)n * in->n + ((size_t)c * h + iy) * w + ix;
                            mq = fmax(mq, in->q[a]);
                            mf = fmax(mf, in->f[a]);
                            me = fmax(me, in->e[a]);
                            sq += in->q[a];
                            sf += in->f[a];
                            se += in->e[a];
                        }
                    size_t at = (size_t)n * out->n + ((size_t)c * ho + oy) * wo + ox;
                    out->q[at] = maxpool ? mq : round(sq / area); /* half away from zero */
                    out->f[at] = maxpool ? mf : sf / area;
                    out->e[at] =
                        maxpool ? me : se / area + plast_qmodel_act_scale(S->q, i) / 2;
                }
}

static void sim_add(sim *S, int i)
{
    const plast_layer *l = plast_model_layer(S->m, i);
    int px = plast_model_layer_input(S->m, i, 0), pf = plast_model_layer_input(S->m, i, 1);
    sval *x = val_of(S, px), *f = val_of(S, pf), *out = &S->v[i + 1];
    double sx = plast_qmodel_act_scale(S->q, px), sf = plast_qmodel_act_scale(S->q, pf);
    double so = plast_qmodel_act_scale(S->q, i), mx = q31(sx / so);
    val_alloc(out, x->n, S->batch);
    if (l->nparams == 0) {
        double mf = q31(sf / so);
        for (size_t j = 0; j < x->n * (size_t)S->batch; j++) {
            out->q[j] = clamp127(round_exact(x->q[j], mx) + round_exact(f->q[j], mf));
            out->f[j] = x->f[j] + f->f[j];
            out->e[j] = x->e[j] + f->e[j] + so + 2 * so * 0x1p-20;
        }
        return;
    }
    const plast_qtensor *b, *w = next_tensors(S, i, &b);
    cr_assert(b == NULL);
    int C = l->in.dim[0], h = l->in.dim[1], wd = l->in.dim[2];
    int cf = l->in2.dim[0], hf = l->in2.dim[1], wf = l->in2.dim[2];
    int st = (hf - 1) / h + 1;
    for (int n = 0; n < S->batch; n++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < h; y++)
                for (int xx = 0; xx < wd; xx++) {
                    dot d = {0, 0, 0, 0};
                    for (int k = 0; k < cf; k++) {
                        size_t wi = (size_t)c * cf + k;
                        size_t ai = (size_t)n * f->n + ((size_t)k * hf + y * st) * wf + xx * st;
                        dot_add(&d, w, wi, l->param[0].w[wi], f, ai);
                    }
                    size_t at = (size_t)n * out->n + ((size_t)c * h + y) * wd + xx;
                    double mc = q31((tscale(w, (size_t)c * cf) * sf) / so);
                    out->q[at] = clamp127(round_exact(x->q[at], mx) + round_exact(d.tq, mc));
                    out->f[at] = x->f[at] + d.fr;
                    out->e[at] = x->e[at] + d.werr + d.aerr + so + 2 * so * 0x1p-20;
                }
}

static void sim_layer(sim *S, int i)
{
    const char *t = plast_model_layer(S->m, i)->ops->name;
    if (!strcmp(t, "dense"))
        sim_dense(S, i);
    else if (!strcmp(t, "relu"))
        sim_copy(S, i, 1);
    else if (!strcmp(t, "flatten") || !strcmp(t, "dropout"))
        sim_copy(S, i, 0);
    else if (!strcmp(t, "batchnorm"))
        sim_batchnorm(S, i);
    else if (!strcmp(t, "add"))
        sim_add(S, i);
    else if (!strcmp(t, "gap"))
        sim_pool(S, i, 0, 0, 1, 0);
    else
        cr_fatal("the simulation has no layer type %s", t);
}

/* Layer geometry the test states itself (the INI it wrote). */
typedef struct geom {
    const char *name;
    int k, s, p;
} geom;

static void run_sim(sim *S, plast_model *m, plast_qmodel *q, const plast_tensor *x,
                    const geom *g)
{
    memset(S, 0, sizeof *S);
    S->m = m;
    S->q = q;
    S->batch = x->dim[0];
    S->nl = plast_model_nlayers(m);
    S->v = calloc((size_t)S->nl + 1, sizeof *S->v);
    int classes = plast_model_classes(m);
    S->logits = calloc((size_t)S->batch * classes, sizeof *S->logits);
    S->ref = calloc((size_t)S->batch * classes, sizeof *S->ref);
    S->bound = calloc((size_t)S->batch * classes, sizeof *S->bound);
    double s_in = plast_qmodel_act_scale(q, -1);
    val_alloc(&S->v[0], x->size / (size_t)S->batch, S->batch);
    for (size_t j = 0; j < x->size; j++) {
        S->v[0].q[j] = clamp127(rint((double)x->data[j] / s_in));
        S->v[0].f[j] = x->data[j];
        S->v[0].e[j] = s_in / 2;
    }
    for (int i = 0; i < S->nl; i++) {
        const plast_layer *l = plast_model_layer(m, i);
        const geom *gi = NULL;
        for (const geom *p = g; p && p->name; p++)
            if (!strcmp(p->name, l->name))
                gi = p;
        const char *t = l->ops->name;
        if (!strcmp(t, "conv2d")) {
            cr_assert(gi != NULL, "no geometry for %s", l->name);
            sim_conv(S, i, gi->k, gi->s, gi->p);
        } else if (!strcmp(t, "maxpool") || !strcmp(t, "avgpool")) {
            cr_assert(gi != NULL, "no geometry for %s", l->name);
            sim_pool(S, i, t[0] == 'm', gi->k, gi->s, gi->p);
        } else {
            sim_layer(S, i);
        }
    }
    cr_assert(eq(int, S->ti, plast_qmodel_ntensors(q)));
    if (!is_final_dense(S, last_effective(S))) { /* the last codes, dequantised */
        sval *last = &S->v[S->nl];
        double s = plast_qmodel_act_scale(q, S->nl - 1);
        for (size_t j = 0; j < last->n * (size_t)S->batch; j++) {
            S->logits[j] = (double)(float)(last->q[j] * s);
            S->bound[j] = last->e[j] + fabs(S->logits[j]) * 0x1p-23;
        }
    }
    for (size_t j = 0; j < S->v[S->nl].n * (size_t)S->batch; j++)
        S->ref[j] = S->v[S->nl].f[j]; /* after a last batchnorm too */
}

static void sim_free(sim *S)
{
    for (int i = 0; i <= S->nl; i++) {
        free(S->v[i].q);
        free(S->v[i].f);
        free(S->v[i].e);
    }
    free(S->v);
    free(S->logits);
    free(S->ref);
    free(S->bound);
}

/* ---- the networks ---- */

typedef struct netcase {
    const char *ini;
    plast_shape in;
    int classes, batch;
    float lo, hi;      /* inputs uniform in [lo, hi) */
    const geom *g;     /* conv and pool windows */
} netcase;

static const netcase mlp = {
    "[layer.h]\ntype = dense\nunits = 16\n[layer.a]\ntype = relu\n"
    "[layer.out]\ntype = dense\nunits = 5\n",
    {1, {12}}, 5, 6, -1.0f, 1.0f, NULL};

/* ALGORITHMS.md 5.7's backbone C2 */
static const geom c2_geom[] = {{"c1", 3, 1, 1}, {"p1", 2, 2, 0}, {"c2", 3, 1, 1},
                               {"p2", 2, 2, 0}, {NULL, 0, 0, 0}};
static const netcase c2 = {
    "[layer.c1]\ntype = conv2d\nchannels = 8\nkernel = 3\npadding = 1\n"
    "[layer.a1]\ntype = relu\n[layer.p1]\ntype = maxpool\nkernel = 2\n"
    "[layer.c2]\ntype = conv2d\nchannels = 16\nkernel = 3\npadding = 1\n"
    "[layer.a2]\ntype = relu\n[layer.p2]\ntype = maxpool\nkernel = 2\n"
    "[layer.f]\ntype = flatten\n[layer.h]\ntype = dense\nunits = 64\n"
    "[layer.a3]\ntype = relu\n[layer.out]\ntype = dense\nunits = 10\n",
    {3, {1, 28, 28}}, 10, 3, 0.0f, 1.0f, c2_geom};

/* odd sizes, strides, padding, a 2x2 kernel, avgpool with padding, dropout */
static const geom strided_geom[] = {{"c1", 3, 2, 1}, {"p", 3, 2, 1}, {"c2", 2, 1, 1},
                                    {NULL, 0, 0, 0}};
static const netcase strided = {
    "[layer.c1]\ntype = conv2d\nchannels = 5\nkernel = 3\nstride = 2\npadding = 1\n"
    "[layer.a1]\ntype = relu\n[layer.p]\ntype = avgpool\nkernel = 3\nstride = 2\npadding = 1\n"
    "[layer.c2]\ntype = conv2d\nchannels = 4\nkernel = 2\npadding = 1\n"
    "[layer.d]\ntype = dropout\n[layer.f]\ntype = flatten\n"
    "[layer.out]\ntype = dense\nunits = 4\n",
    {3, {3, 9, 7}}, 4, 4, -1.0f, 1.0f, strided_geom};

/* batchnorm folded into a conv with bias, a conv without, and a dense */
static const geom bn_geom[] = {{"c1", 3, 1, 1}, {"c2", 3, 1, 1}, {NULL, 0, 0, 0}};
static const netcase bnnet = {
    "[layer.c1]\ntype = conv2d\nchannels = 4\nkernel = 3\npadding = 1\n"
    "[layer.n1]\ntype = batchnorm\n[layer.a1]\ntype = relu\n"
    "[layer.c2]\ntype = conv2d\nchannels = 5\nkernel = 3\npadding = 1\nbias = false\n"
    "[layer.n2]\ntype = batchnorm\n[layer.a2]\ntype = relu\n[layer.g]\ntype = gap\n"
    "[layer.h]\ntype = dense\nunits = 6\n[layer.n3]\ntype = batchnorm\n"
    "[layer.a3]\ntype = relu\n[layer.out]\ntype = dense\nunits = 3\n",
    {3, {2, 6, 6}}, 3, 5, -1.0f, 1.0f, bn_geom};

/* the last dense has a batchnorm: the logits come from the folded layer */
static const netcase bnlast = {
    "[layer.h]\ntype = dense\nunits = 8\n[layer.a]\ntype = relu\n"
    "[layer.out]\ntype = dense\nunits = 3\n[layer.n]\ntype = batchnorm\n",
    {1, {7}}, 3, 5, -1.0f, 1.0f, NULL};

/* ResNet-style: identity and strided 1x1 shortcuts, batchnorm, gap */
static const geom res_geom[] = {{"stem", 3, 1, 1}, {"b1c1", 3, 1, 1}, {"b1c2", 3, 1, 1},
                                {"b2c1", 3, 2, 1}, {"b2c2", 3, 1, 1}, {NULL, 0, 0, 0}};
static const netcase resnet = {
    "[layer.stem]\ntype = conv2d\nchannels = 4\nkernel = 3\npadding = 1\n"
    "[layer.stemn]\ntype = batchnorm\n[layer.stema]\ntype = relu\n"
    "[layer.b1c1]\ntype = conv2d\nchannels = 4\nkernel = 3\npadding = 1\nblock = b1\n"
    "[layer.b1n1]\ntype = batchnorm\nblock = b1\n[layer.b1a1]\ntype = relu\nblock = b1\n"
    "[layer.b1c2]\ntype = conv2d\nchannels = 4\nkernel = 3\npadding = 1\nblock = b1\n"
    "[layer.b1n2]\ntype = batchnorm\nblock = b1\n"
    "[layer.b1add]\ntype = add\nfrom = stema\nblock = b1\n"
    "[layer.b1out]\ntype = relu\nblock = b1\n"
    "[layer.b2c1]\ntype = conv2d\nchannels = 6\nkernel = 3\npadding = 1\nstride = 2\n"
    "block = b2\n"
    "[layer.b2n1]\ntype = batchnorm\nblock = b2\n[layer.b2a1]\ntype = relu\nblock = b2\n"
    "[layer.b2c2]\ntype = conv2d\nchannels = 6\nkernel = 3\npadding = 1\nblock = b2\n"
    "[layer.b2n2]\ntype = batchnorm\nblock = b2\n"
    "[layer.b2add]\ntype = add\nfrom = b1out\nshortcut = conv1x1\nblock = b2\n"
    "[layer.b2out]\ntype = relu\nblock = b2\n"
    "[layer.pool]\ntype = gap\n[layer.out]\ntype = dense\nunits = 3\n",
    {3, {3, 8, 8}}, 3, 3, -1.0f, 1.0f, res_geom};

/* ---- exactness and bound ---- */

typedef struct outcome {
    double max_err, bound, spread;
} outcome;

static outcome check_case(const netcase *c, int bits, int per_channel)
{
    qnet n;
    plast_err e;
    net_init(&n, c->ini, c->in, c->classes, 11);
    randomise_batchnorms(n.m, 3);
    plast_tensor x = make_input(&n, c->batch, c->lo, c->hi, 17), y, yf;
    plast_qmodel *q = quantise(&n, &x, bits, per_channel);
    CHECK_OK(plast_qmodel_forward(q, &x, &y, &e), e);
    CHECK_OK(plast_model_predict(n.m, &x, &yf, &e), e);
    sim S;
    run_sim(&S, n.m, q, &x, c->g);
    cr_assert(eq(sz, y.size, (size_t)c->batch * (size_t)c->classes));
    outcome o = {0.0, 0.0, 0.0};
    double lo = INFINITY, hi = -INFINITY;
    for (size_t j = 0; j < y.size; j++) {
        cr_assert(y.data[j] == (float)S.logits[j],
                  "%d-bit%s: logit %zu: engine %.9g, simulation %.9g", bits,
                  per_channel ? " per channel" : "", j, (double)y.data[j], S.logits[j]);
        double slack = 1e-4 * (1.0 + fabs(S.ref[j]));
        cr_assert(fabs(yf.data[j] - S.ref[j]) <= slack, "fp32 %.9g, float64 %.9g",
                  (double)yf.data[j], S.ref[j]);
        double err = fabs((double)y.data[j] - (double)yf.data[j]);
        cr_assert(err <= S.bound[j] + slack, "%d-bit%s: logit %zu: |%.9g - %.9g| = %.3g > %.3g",
                  bits, per_channel ? " per channel" : "", j, (double)y.data[j],
                  (double)yf.data[j], err, S.bound[j] + slack);
        o.max_err = fmax(o.max_err, err);
        o.bound = fmax(o.bound, S.bound[j]);
        lo = fmin(lo, S.ref[j]);
        hi = fmax(hi, S.ref[j]);
    }
    o.spread = hi - lo;
    cr_assert(o.max_err > 0.0); /* the codes are not the float weights */
    cr_assert(isfinite(o.bound));
    sim_free(&S);
    plast_tensor_free(&y);
    plast_tensor_free(&yf);
    plast_qmodel_destroy(q);
    plast_tensor_free(&x);
    net_fini(&n);
    return o;
}

/* Every precision: 8 and 16-bit weights, per tensor and per channel.
 * With 16-bit weights and `informative`, the bound must also be below half
 * the spread of the logits (in the deeper nets the worst case, summed
 * through hundreds of weights per layer, is far above the actual error of
 * a randomly initialised net, whose logits spread little). */
static void check_all(const netcase *c, int informative)
{
    for (int bits = 8; bits <= 16; bits += 8)
        for (int pc = 0; pc <= 1; pc++) {
            outcome o = check_case(c, bits, pc);
            cr_log_info("%d-bit weights%s: max |q - fp32| %.4g, bound %.4g, logit spread %.4g",
                        bits, pc ? " per channel" : " per tensor", o.max_err, o.bound,
                        o.spread);
            if (bits == 16 && informative)
                cr_assert(lt(dbl, o.bound, 0.5 * o.spread));
        }
}

Test(qmodel, exact_mlp)
{
    check_all(&mlp, 1);
}

Test(qmodel, exact_c2)
{
    check_all(&c2, 0);
}

Test(qmodel, exact_strided_conv)
{
    check_all(&strided, 1);
}

Test(qmodel, exact_batchnorm_folded)
{
    check_all(&bnnet, 1);
    check_all(&bnlast, 1);
}

Test(qmodel, exact_residual)
{
    check_all(&resnet, 0);
}

/* ---- codes, scales and their mapping ---- */

static const char *layer_name(plast_model *m, int i)
{
    return plast_model_layer(m, i)->name;
}

/* Tensors in layer order, weight then bias; a conv without a bias takes
 * its folded batchnorm's beta; per-channel groups are one output channel. */
Test(qmodel, tensors_map_to_float_parameters)
{
    qnet n;
    net_init(&n, bnnet.ini, bnnet.in, bnnet.classes, 11);
    plast_tensor x = make_input(&n, 4, -1.0f, 1.0f, 2);
    plast_qmodel *q = quantise(&n, &x, 16, 1);
    static const struct {
        const char *layer;
        int param;
        plast_qtype type;
        size_t count, group;
    } want[] = {
        {"c1", 0, PLAST_Q_INT16, 4 * 18, 18}, {"c1", 1, PLAST_Q_INT32, 4, 1},
        {"c2", 0, PLAST_Q_INT16, 5 * 36, 36}, {"n2", 1, PLAST_Q_INT32, 5, 1},
        {"h", 0, PLAST_Q_INT16, 6 * 5, 5},    {"h", 1, PLAST_Q_INT32, 6, 1},
        {"out", 0, PLAST_Q_INT16, 3 * 6, 6},  {"out", 1, PLAST_Q_INT32, 3, 1},
    };
    cr_assert(eq(int, plast_qmodel_ntensors(q), 8));
    for (int i = 0; i < 8; i++) {
        const plast_qtensor *t = plast_qmodel_tensor(q, i);
        cr_assert(eq(str, (char *)layer_name(n.m, t->layer), (char *)want[i].layer),
                  "tensor %d", i);
        cr_assert(eq(int, t->param, want[i].param));
        cr_assert(eq(int, (int)t->type, (int)want[i].type));
        cr_assert(eq(sz, t->count, want[i].count));
        cr_assert(eq(sz, t->group, want[i].group));
        cr_assert(eq(i32, t->qmax, t->type == PLAST_Q_INT16 ? 32767 : 2147483647));
    }
    cr_assert(plast_qmodel_tensor(q, 8) == NULL);
    cr_assert(plast_qmodel_tensor(q, -1) == NULL);
    plast_qmodel_destroy(q);
    plast_tensor_free(&x);
    net_fini(&n);
}

/* s = 1.25 max|w| / qmax, codes rint(w / s); bias codes rint(b / (s_w s_in))
 * at scale s_w s_in; a zero tensor gets s = 1 / qmax. */
Test(qmodel, weight_and_bias_codes)
{
    for (int pc = 0; pc <= 1; pc++)
        for (int bits = 8; bits <= 16; bits += 8) {
            qnet n;
            net_init(&n, mlp.ini, mlp.in, mlp.classes, 11);
            plast_layer *h = plast_model_layer(n.m, 0), *out = plast_model_layer(n.m, 2);
            memset(out->param[0].w, 0, out->param[0].count * sizeof(float));
            plast_tensor x = make_input(&n, 4, -1.0f, 1.0f, 2);
            plast_qmodel *q = quantise(&n, &x, bits, pc);
            double qmax = bits == 8 ? 127 : 32767, s_in = plast_qmodel_act_scale(q, -1);
            const plast_qtensor *w = plast_qmodel_tensor(q, 0), *b = plast_qmodel_tensor(q, 1);
            const plast_qtensor *wz = plast_qmodel_tensor(q, 2);
            int in = 12;
            for (int u = 0; u < 16; u++) {
                double mx = 0;
                for (int k = 0; k < in; k++)
                    mx = fmax(mx, fabs((double)h->param[0].w[u * in + k]));
                if (!pc)
                    for (size_t k = 0; k < h->param[0].count; k++)
                        mx = fmax(mx, fabs((double)h->param[0].w[k]));
                double s = 1.25 * mx / qmax;
                cr_assert(eq(dbl, w->scale[pc ? u : 0], s));
                for (int k = 0; k < in; k++)
                    cr_assert(eq(i32, plast_qtensor_get(w, (size_t)(u * in + k)),
                                 (int32_t)rint(h->param[0].w[u * in + k] / s)));
                double bs = s * s_in;
                cr_assert(eq(dbl, b->scale[pc ? u : 0], bs));
                cr_assert(eq(i32, plast_qtensor_get(b, (size_t)u),
                             (int32_t)rint(h->param[1].w[u] / bs)));
            }
            cr_assert(eq(dbl, wz->scale[0], 1.0 / qmax));
            for (size_t k = 0; k < wz->count; k++)
                cr_assert(eq(i32, plast_qtensor_get(wz, k), 0));
            plast_qmodel_destroy(q);
            plast_tensor_free(&x);
            net_fini(&n);
        }
}

/* The input scale is max|x| / 127; a dense whose only reader is a relu
 * uses its largest positive output, another its largest magnitude; relu
 * keeps its input's scale. */
Test(qmodel, activation_scales)
{
    static const char *ini = "[layer.h]\ntype = dense\nunits = 8\n[layer.a]\ntype = relu\n"
                             "[layer.g]\ntype = dense\nunits = 6\n"
                             "[layer.out]\ntype = dense\nunits = 3\n";
    qnet n;
    net_init(&n, ini, (plast_shape){1, {5}}, 3, 4);
    plast_tensor x = make_input(&n, 7, -2.0f, 2.0f, 3);
    plast_qmodel *q = quantise(&n, &x, 16, 0);
    double mx = 0, hpos = 0, habs = 0, gabs = 0;
    plast_layer *h = plast_model_layer(n.m, 0), *g = plast_model_layer(n.m, 2);
    for (int s = 0; s < 7; s++) {
        double a[8];
        for (int k = 0; k < 5; k++)
            mx = fmax(mx, fabs((double)x.data[s * 5 + k]));
        for (int u = 0; u < 8; u++) {
            a[u] = h->param[1].w[u];
            for (int k = 0; k < 5; k++)
                a[u] += (double)h->param[0].w[u * 5 + k] * x.data[s * 5 + k];
            hpos = fmax(hpos, a[u]);
            habs = fmax(habs, fabs(a[u]));
            a[u] = fmax(a[u], 0.0);
        }
        for (int u = 0; u < 6; u++) {
            double v = g->param[1].w[u];
            for (int k = 0; k < 8; k++)
                v += (double)g->param[0].w[u * 8 + k] * a[k];
            gabs = fmax(gabs, fabs(v));
        }
    }
    cr_assert(eq(dbl, plast_qmodel_act_scale(q, -1), mx / 127));
    cr_assert(lt(dbl, hpos, habs)); /* the choice matters here */
    cr_assert(epsilon_eq(dbl, plast_qmodel_act_scale(q, 0), hpos / 127, 1e-6 * hpos / 127));
    cr_assert(eq(dbl, plast_qmodel_act_scale(q, 1), plast_qmodel_act_scale(q, 0)));
    cr_assert(epsilon_eq(dbl, plast_qmodel_act_scale(q, 2), gabs / 127, 1e-6 * gabs / 127));
    cr_assert(eq(dbl, plast_qmodel_act_scale(q, 4), 0.0)); /* out of range */
    plast_qmodel_destroy(q);
    plast_tensor_free(&x);
    net_fini(&n);
}

/* Calibrating on A then B gives every scale the larger of A's and B's,
 * in either order. */
Test(qmodel, calibration_takes_the_max)
{
    qnet n;
    plast_err e;
    net_init(&n, c2.ini, c2.in, c2.classes, 11);
    plast_tensor a = make_input(&n, 2, 0.0f, 0.5f, 1), b = make_input(&n, 2, -1.0f, 1.5f, 2);
    plast_qconfig cfg = {16, 8, 0, 1.25};
    plast_qmodel *qa = quantise(&n, &a, 16, 0), *qb = quantise(&n, &b, 16, 0);
    plast_qmodel *qab, *qba;
    CHECK_OK(plast_qmodel_create(&qab, n.m, &cfg, &e), e);
    CHECK_OK(plast_qmodel_calibrate(qab, &a, &e), e);
    CHECK_OK(plast_qmodel_calibrate(qab, &b, &e), e);
    CHECK_OK(plast_qmodel_finish(qab, &e), e);
    CHECK_OK(plast_qmodel_create(&qba, n.m, &cfg, &e), e);
    CHECK_OK(plast_qmodel_calibrate(qba, &b, &e), e);
    CHECK_OK(plast_qmodel_calibrate(qba, &a, &e), e);
    CHECK_OK(plast_qmodel_finish(qba, &e), e);
    int from_a = 0, from_b = 0;
    for (int i = -1; i < plast_model_nlayers(n.m); i++) {
        double sa = plast_qmodel_act_scale(qa, i), sb = plast_qmodel_act_scale(qb, i);
        cr_assert(eq(dbl, plast_qmodel_act_scale(qab, i), fmax(sa, sb)), "layer %d", i);
        cr_assert(eq(dbl, plast_qmodel_act_scale(qba, i), fmax(sa, sb)), "layer %d", i);
        from_a += sa > sb;
        from_b += sb > sa;
    }
    cr_assert(gt(int, from_b, 0));
    cr_log_info("scales from A %d, from B %d", from_a, from_b);
    plast_qmodel_destroy(qa);
    plast_qmodel_destroy(qb);
    plast_qmodel_destroy(qab);
    plast_qmodel_destroy(qba);
    plast_tensor_free(&a);
    plast_tensor_free(&b);
    net_fini(&n);
}

/* ---- the codes are what runs ---- */

static plast_tensor forward(plast_qmodel *q, const plast_tensor *x)
{
    plast_err e;
    plast_tensor y;
    CHECK_OK(plast_qmodel_forward(q, x, &y, &e), e);
    return y;
}

static void expect_simulated(qnet *n, plast_qmodel *q, const plast_tensor *x,
                             const plast_tensor *y, const geom *g)
{
    sim S;
    run_sim(&S, n->m, q, x, g);
    for (size_t j = 0; j < y->size; j++)
        cr_assert(y->data[j] == (float)S.logits[j], "logit %zu", j);
    sim_free(&S);
}

Test(qmodel, changing_a_code_changes_the_logits)
{
    qnet n;
    net_init(&n, c2.ini, c2.in, c2.classes, 11);
    plast_tensor x = make_input(&n, 3, 0.0f, 1.0f, 17);
    plast_qmodel *q = quantise(&n, &x, 16, 0);
    plast_tensor y0 = forward(q, &x), y1 = forward(q, &x);
    cr_assert(memcmp(y0.data, y1.data, y0.size * sizeof(float)) == 0); /* deterministic */
    plast_tensor_free(&y1);
    /* the last dense's weight (unit 2, input 5): only logit 2 may move */
    plast_qtensor *w = plast_qmodel_tensor(q, 6);
    cr_assert(eq(str, (char *)layer_name(n.m, w->layer), "out"));
    int64_t old = plast_qtensor_get(w, 2 * 64 + 5);
    plast_qtensor_set(w, 2 * 64 + 5, old + 3000);
    y1 = forward(q, &x);
    int moved = 0;
    for (int s = 0; s < 3; s++)
        for (int c = 0; c < 10; c++) {
            float a = y0.data[s * 10 + c], b = y1.data[s * 10 + c];
            if (c != 2)
                cr_assert(a == b);
            moved += a != b;
        }
    cr_assert(gt(int, moved, 0));
    expect_simulated(&n, q, &x, &y1, c2.g);
    plast_tensor_free(&y1);
    /* a weight of the first conv moves everything downstream */
    plast_qtensor *c = plast_qmodel_tensor(q, 0);
    plast_qtensor_set(c, 4, plast_qtensor_get(c, 4) - 5000);
    y1 = forward(q, &x);
    cr_assert(memcmp(y0.data, y1.data, y0.size * sizeof(float)) != 0);
    expect_simulated(&n, q, &x, &y1, c2.g);
    /* a bias code of the last layer: logit 7 moves by about 10^6 steps */
    plast_qtensor *b = plast_qmodel_tensor(q, 7);
    plast_qtensor_set(b, 7, plast_qtensor_get(b, 7) + 1000000);
    plast_tensor y2 = forward(q, &x);
    for (int s = 0; s < 3; s++)
        cr_assert(epsilon_eq(flt, y2.data[s * 10 + 7] - y1.data[s * 10 + 7],
                             (float)(1e6 * b->scale[0]), 1e-3f * (float)(1e6 * b->scale[0])));
    expect_simulated(&n, q, &x, &y2, c2.g);
    plast_tensor_free(&y2);
    plast_tensor_free(&y1);
    plast_tensor_free(&y0);
    plast_qmodel_destroy(q);
    plast_tensor_free(&x);
    net_fini(&n);
}

/* A 784-long dot product of 16-bit codes 32767 with 8-bit codes 127 sums
 * to 3262479656, beyond int32: the int64 accumulator keeps it exact. */
Test(qmodel, worst_case_int16_dot_product_is_exact)
{
    qnet n;
    net_init(&n, "[layer.out]\ntype = dense\nunits = 3\n", (plast_shape){1, {784}}, 3, 1);
    plast_tensor x = make_input(&n, 2, 1.0f, 1.0f, 1); /* all ones: codes 127 */
    plast_qmodel *q = quantise(&n, &x, 16, 0);
    plast_qtensor *w = plast_qmodel_tensor(q, 0), *b = plast_qmodel_tensor(q, 1);
    for (size_t k = 0; k < 784; k++) {
        plast_qtensor_set(w, k, 32767);
        plast_qtensor_set(w, 784 + k, -40000); /* saturates to -32767 */
        plast_qtensor_set(w, 2 * 784 + k, k % 2 ? 32767 : -32767);
    }
    for (size_t u = 0; u < 3; u++)
        plast_qtensor_set(b, u, 0);
    cr_assert(eq(i32, plast_qtensor_get(w, 784), -32767));
    double sum = 784.0 * 32767.0 * 127.0;
    cr_assert(gt(dbl, sum, 2147483647.0));
    plast_tensor y = forward(q, &x);
    for (int s = 0; s < 2; s++) {
        cr_assert(eq(flt, y.data[s * 3 + 0], (float)(sum * b->scale[0])));
        cr_assert(eq(flt, y.data[s * 3 + 1], (float)(-sum * b->scale[0])));
        cr_assert(eq(flt, y.data[s * 3 + 2], 0.0f));
    }
    plast_tensor_free(&y);
    plast_qmodel_destroy(q);
    plast_tensor_free(&x);
    net_fini(&n);
}

/* ---- memory ---- */

/* C2 on N samples, A bytes per accumulator (4 for 8-bit weights, 8 for
 * 16-bit), int8 codes of one byte.  Live activation bytes at each step:
 *   conv c1   input 784N + output 6272N + accumulator 8x784 A (one sample)
 *   maxpool   6272N + 1568N          (relu a1 ran in place)
 *   conv c2   1568N + 3136N + 16x196 A
 *   maxpool   3136N + 784N
 *   dense h   784N + 64N A (accumulator), then 64N A + 64N (input freed)
 *   dense out 64N + 10N A, then 10N A + 40N (float logits)
 * The peak is the largest.  Scratch holds one sample's im2col columns and
 * its zero-padded planes: 784 x 9 + 30 x 30 bytes for c1, 196 x 72 +
 * 8 x 16 x 16 for c2. */
static size_t c2_peak(size_t N, size_t A)
{
    size_t steps[] = {784 * N + 6272 * N + 8 * 784 * A, 6272 * N + 1568 * N,
                      1568 * N + 3136 * N + 16 * 196 * A, 3136 * N + 784 * N,
                      784 * N + 64 * N * A, 64 * N * A + 64 * N, 64 * N + 10 * N * A,
                      10 * N * A + 40 * N};
    size_t peak = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        peak = steps[i] > peak ? steps[i] : peak;
    return peak;
}

Test(qmodel, forward_memory_is_analytic)
{
    for (int bits = 8; bits <= 16; bits += 8)
        for (int N = 1; N <= 64; N *= 8) {
            qnet n;
            net_init(&n, c2.ini, c2.in, c2.classes, 11);
            plast_tensor x = make_input(&n, N, 0.0f, 1.0f, 3);
            plast_qmodel *q = quantise(&n, &x, bits, 1);
            cr_assert(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0));
            cr_assert(eq(sz, plast_mem_live(n.mem, PLAST_MEM_SCRATCH), 0));
            plast_mem_reset_peaks(n.mem);
            plast_tensor y = forward(q, &x);
            size_t A = bits == 8 ? 4 : 8;
            cr_assert(eq(sz, plast_mem_peak(n.mem, PLAST_MEM_ACTIVATIONS), c2_peak((size_t)N, A)),
                      "%d-bit weights, batch %d", bits, N);
            cr_assert(eq(sz, plast_mem_peak(n.mem, PLAST_MEM_SCRATCH), 196 * 72 + 8 * 16 * 16));
            cr_assert(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 40 * (size_t)N));
            cr_assert(eq(sz, plast_mem_live(n.mem, PLAST_MEM_SCRATCH), 0));
            plast_tensor_free(&y);
            cr_assert(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0));
            plast_qmodel_destroy(q);
            plast_tensor_free(&x);
            net_fini(&n);
        }
}

/* Calibration runs the float model one sample at a time: on a batch of
 * 64 its activations peak below the integer forward's, so calibrating
 * does not set a rule's memory peak; and the chunks give the ranges of
 * the whole batch (the same scales as calibrating sample by sample). */
Test(qmodel, calibration_memory_stays_below_the_forward)
{
    qnet n;
    net_init(&n, c2.ini, c2.in, c2.classes, 11);
    plast_tensor x = make_input(&n, 64, 0.0f, 1.0f, 3);
    plast_qconfig cfg = {16, 8, 1, 1.25};
    plast_qmodel *q = NULL, *one = NULL;
    plast_err e;
    CHECK_OK(plast_qmodel_create(&q, n.m, &cfg, &e), e);
    CHECK_OK(plast_qmodel_create(&one, n.m, &cfg, &e), e);
    plast_mem_reset_peaks(n.mem);
    CHECK_OK(plast_qmodel_calibrate(q, &x, &e), e);
    size_t calib_peak = plast_mem_peak(n.mem, PLAST_MEM_ACTIVATIONS);
    cr_expect(le(sz, calib_peak, c2_peak(64, 8)), "calibration peak %zu", calib_peak);
    for (int s = 0; s < 64; s++) {
        plast_tensor xs = plast_tensor_view(x.data + (size_t)s * 784, 1, &n.in);
        CHECK_OK(plast_qmodel_calibrate(one, &xs, &e), e);
    }
    CHECK_OK(plast_qmodel_finish(q, &e), e);
    CHECK_OK(plast_qmodel_finish(one, &e), e);
    for (int i = -1; i < plast_model_nlayers(n.m); i++)
        cr_expect(eq(dbl, plast_qmodel_act_scale(q, i), plast_qmodel_act_scale(one, i)),
                  "layer %d", i);
    plast_qmodel_destroy(one);
    plast_qmodel_destroy(q);
    plast_tensor_free(&x);
    net_fini(&n);
}

/* The codes live in the weights category: 2 bytes per 16-bit weight, 4 per
 * bias, 8 per scale, plus the requantisers; destroy returns them all. */
Test(qmodel, codes_are_weights_memory)
{
    qnet n;
    net_init(&n, mlp.ini, mlp.in, mlp.classes, 11);
    plast_tensor x = make_input(&n, 2, -1.0f, 1.0f, 3);
    size_t before = plast_mem_live(n.mem, PLAST_MEM_WEIGHTS);
    plast_qmodel *q = quantise(&n, &x, 16, 0);
    size_t codes = 2 * (16 * 12 + 5 * 16) + 4 * (16 + 5) + 8 * 4;
    size_t added = plast_mem_live(n.mem, PLAST_MEM_WEIGHTS) - before;
    cr_assert(ge(sz, added, codes));
    cr_assert(le(sz, added, codes + (16 + 5) * (8 + 8)));
    plast_qmodel_destroy(q);
    cr_assert(eq(sz, plast_mem_live(n.mem, PLAST_MEM_WEIGHTS), before));
    plast_tensor_free(&x);
    net_fini(&n);
}

/* ---- store ---- */

/* Store writes the dequantised codes back (unfolding batchnorms); a new
 * quantisation of the stored model gives the same weight codes, and the
 * same bias values to within one code. */
Test(qmodel, store_round_trip)
{
    for (int bits = 8; bits <= 16; bits += 8)
        for (int pc = 0; pc <= 1; pc++) {
            qnet n;
            plast_err e;
            net_init(&n, bnnet.ini, bnnet.in, bnnet.classes, 11);
            randomise_batchnorms(n.m, 3);
            plast_tensor x = make_input(&n, 4, -1.0f, 1.0f, 2);
            plast_qmodel *q1 = quantise(&n, &x, bits, pc);
            plast_layer *n1 = plast_model_layer(n.m, 1);
            float gamma[4], mean[4], var[4];
            memcpy(gamma, n1->param[0].w, sizeof gamma);
            memcpy(mean, n1->param[2].w, sizeof mean);
            memcpy(var, n1->param[3].w, sizeof var);
            CHECK_OK(plast_qmodel_store(q1, &e), e);
            cr_assert(memcmp(gamma, n1->param[0].w, sizeof gamma) == 0);
            cr_assert(memcmp(mean, n1->param[2].w, sizeof mean) == 0);
            cr_assert(memcmp(var, n1->param[3].w, sizeof var) == 0);
            /* an unfolded layer's float bias is its dequantised code */
            const plast_qtensor *ob = plast_qmodel_tensor(q1, 7);
            plast_layer *out = plast_model_layer(n.m, plast_model_nlayers(n.m) - 1);
            for (size_t u = 0; u < 3; u++)
                cr_assert(eq(flt, out->param[1].w[u],
                             (float)(plast_qtensor_get(ob, u) * ob->scale[pc ? u : 0])));
            plast_qmodel *q2 = quantise(&n, &x, bits, pc);
            cr_assert(eq(int, plast_qmodel_ntensors(q2), plast_qmodel_ntensors(q1)));
            for (int t = 0; t < plast_qmodel_ntensors(q1); t++) {
                const plast_qtensor *a = plast_qmodel_tensor(q1, t);
                const plast_qtensor *b = plast_qmodel_tensor(q2, t);
                for (size_t j = 0; j < a->count; j++) {
                    int64_t ca = plast_qtensor_get(a, j), cb = plast_qtensor_get(b, j);
                    if (a->type != PLAST_Q_INT32) {
                        cr_assert(eq(i64, ca, cb), "%d-bit%s tensor %d code %zu", bits,
                                  pc ? " per channel" : "", t, j);
                        continue;
                    }
                    double va = (double)ca * a->scale[j / a->group];
                    double vb = (double)cb * b->scale[j / b->group];
                    cr_assert(fabs(va - vb) <= b->scale[j / b->group] / 2 + 1e-6 * fabs(va),
                              "tensor %d bias %zu: %.9g then %.9g", t, j, va, vb);
                }
            }
            plast_qmodel_destroy(q1);
            plast_qmodel_destroy(q2);
            plast_tensor_free(&x);
            net_fini(&n);
        }
}

/* ---- refusals ---- */

static int create_error(const char *ini, plast_shape in, int classes, char *msg, size_t len)
{
    qnet n;
    plast_err e;
    net_init(&n, ini, in, classes, 1);
    size_t before = plast_mem_live_total(n.mem);
    plast_qmodel *q = NULL;
    plast_qconfig cfg = {16, 8, 0, 1.25};
    int rc = plast_qmodel_create(&q, n.m, &cfg, &e);
    cr_assert(q == NULL);
    cr_assert(eq(sz, plast_mem_live_total(n.mem), before));
    snprintf(msg, len, "%s", e.msg);
    net_fini(&n);
    return rc;
}

Test(qmodel, unsupported_layers_are_named)
{
    char msg[300];
    plast_shape in = {1, {4}};
    int rc = create_error("[layer.h]\ntype = dense\nunits = 5\n[layer.act]\ntype = tanh\n"
                          "[layer.out]\ntype = dense\nunits = 2\n",
                          in, 2, msg, sizeof msg);
    cr_assert(eq(int, rc, PLAST_E_UNSUPPORTED));
    cr_assert(strstr(msg, "layer 'act' of type 'tanh' has no fixed-point form") != NULL,
              "%s", msg);
    rc = create_error("[layer.h]\ntype = dense\nunits = 5\n[layer.a]\ntype = relu\n"
                      "[layer.n]\ntype = batchnorm\n[layer.out]\ntype = dense\nunits = 2\n",
                      in, 2, msg, sizeof msg);
    cr_assert(eq(int, rc, PLAST_E_UNSUPPORTED));
    cr_assert(strstr(msg, "batchnorm 'n' must follow a dense or conv2d layer") != NULL, "%s",
              msg);
}

Test(qmodel, lifecycle_and_config_errors)
{
    qnet n;
    plast_err e;
    net_init(&n, mlp.ini, mlp.in, mlp.classes, 11);
    plast_tensor x = make_input(&n, 2, -1.0f, 1.0f, 3), y;
    plast_qmodel *q = NULL;
    plast_qconfig bad[] = {{12, 8, 0, 1.25}, {16, 16, 0, 1.25}, {8, 8, 0, 0.5}};
    const int codes[] = {PLAST_E_INVAL, PLAST_E_UNSUPPORTED, PLAST_E_INVAL};
    const char *msgs[] = {"weight_bits: expected 8 or 16, found 12",
                          "act_bits: expected 8, found 16",
                          "weight_margin: expected 1 to 1000, found 0.5"};
    for (int i = 0; i < 3; i++) {
        cr_assert(eq(int, plast_qmodel_create(&q, n.m, &bad[i], &e), codes[i]));
        cr_assert(strstr(e.msg, msgs[i]) != NULL, "%s", e.msg);
        cr_assert(q == NULL);
    }
    CHECK_OK(plast_qmodel_create(&q, n.m, NULL, &e), e); /* defaults: 16-bit weights */
    cr_assert(eq(int, (int)plast_qmodel_tensor(q, 0)->type, (int)PLAST_Q_INT16));
    cr_assert(eq(int, plast_qmodel_forward(q, &x, &y, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "forward before finish") != NULL, "%s", e.msg);
    cr_assert(eq(int, plast_qmodel_finish(q, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "finish before calibrate") != NULL, "%s", e.msg);
    plast_tensor wrong = x;
    wrong.size = x.size - 1;
    cr_assert(eq(int, plast_qmodel_calibrate(q, &wrong, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "expected a batch of at least 1 sample of 12 values") != NULL, "%s",
              e.msg);
    x.data[3] = NAN;
    cr_assert(eq(int, plast_qmodel_calibrate(q, &x, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "expected finite inputs, found nan") != NULL, "%s", e.msg);
    x.data[3] = 0.5f;
    CHECK_OK(plast_qmodel_calibrate(q, &x, &e), e);
    CHECK_OK(plast_qmodel_finish(q, &e), e);
    cr_assert(eq(int, plast_qmodel_calibrate(q, &x, &e), PLAST_E_INVAL));
    cr_assert(strstr(e.msg, "calibrate after finish") != NULL, "%s", e.msg);
    cr_assert(eq(int, plast_qmodel_finish(q, &e), PLAST_E_INVAL));
    cr_assert(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0));
    plast_qmodel_destroy(q);
    plast_tensor_free(&x);
    net_fini(&n);
}

/* Every allocation of create, calibrate, finish and forward failing in
 * turn: PLAST_E_NOMEM, and nothing left allocated. */
Test(qmodel, allocation_failures_leak_nothing)
{
    const netcase *cases[] = {&c2, &resnet};
    for (int ci = 0; ci < 2; ci++) {
        qnet n;
        plast_err e;
        net_init(&n, cases[ci]->ini, cases[ci]->in, cases[ci]->classes, 11);
        plast_tensor x = make_input(&n, 2, -1.0f, 1.0f, 3), y;
        size_t before = plast_mem_live_total(n.mem);
        plast_qconfig cfg = {16, 8, 1, 1.25};
        int failures = 0;
        for (uint64_t k = 1;; k++) {
            plast_qmodel *q = NULL;
            plast_mem_fail_at(n.mem, k);
            int rc = plast_qmodel_create(&q, n.m, &cfg, &e);
            if (rc == PLAST_OK)
                rc = plast_qmodel_calibrate(q, &x, &e);
            if (rc == PLAST_OK)
                rc = plast_qmodel_finish(q, &e);
            if (rc == PLAST_OK)
                rc = plast_qmodel_forward(q, &x, &y, &e);
            plast_mem_fail_at(n.mem, 0);
            if (rc == PLAST_OK) {
                plast_tensor_free(&y);
                plast_qmodel_destroy(q);
                cr_assert(eq(sz, plast_mem_live_total(n.mem), before));
                break;
            }
            cr_assert(eq(int, rc, PLAST_E_NOMEM), "allocation %llu: %s", (unsigned long long)k,
                      e.msg);
            cr_assert(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0));
            cr_assert(eq(sz, plast_mem_live(n.mem, PLAST_MEM_SCRATCH), 0));
            plast_qmodel_destroy(q);
            cr_assert(eq(sz, plast_mem_live_total(n.mem), before), "allocation %llu",
                      (unsigned long long)k);
            failures++;
        }
        cr_assert(gt(int, failures, 20));
        plast_tensor_free(&x);
        net_fini(&n);
    }
}

/* Saved calibration statistics set into a fresh qmodel give the same
 * scales and the same logits bit for bit; without them finish refuses. */
Test(qmodel, calibration_statistics_round_trip)
{
    qnet n;
    plast_err e;
    net_init(&n, resnet.ini, resnet.in, resnet.classes, 11);
    randomise_batchnorms(n.m, 3);
    plast_tensor x = make_input(&n, 3, -1.0f, 1.0f, 17);
    plast_qconfig cfg = {16, 8, 1, 1.25};
    plast_qmodel *a = quantise(&n, &x, 16, 1), *b, *c;
    size_t count = plast_qmodel_calib_count(a);
    cr_assert(gt(sz, count, (size_t)plast_model_nlayers(n.m)));
    double *stats = calloc(count, sizeof *stats), *zero = calloc(count, sizeof *zero);
    plast_qmodel_calib_get(a, stats);
    CHECK_OK(plast_qmodel_create(&b, n.m, &cfg, &e), e);
    plast_qmodel_calib_set(b, stats);
    CHECK_OK(plast_qmodel_finish(b, &e), e);
    for (int i = -1; i < plast_model_nlayers(n.m); i++)
        cr_assert(eq(dbl, plast_qmodel_act_scale(a, i), plast_qmodel_act_scale(b, i)));
    plast_tensor ya = forward(a, &x), yb = forward(b, &x);
    cr_assert(memcmp(ya.data, yb.data, ya.size * sizeof(float)) == 0);
    CHECK_OK(plast_qmodel_create(&c, n.m, &cfg, &e), e);
    plast_qmodel_calib_get(c, zero); /* never calibrated */
    plast_qmodel_calib_set(c, zero);
    cr_assert(eq(int, plast_qmodel_finish(c, &e), PLAST_E_INVAL));
    free(stats);
    free(zero);
    plast_tensor_free(&ya);
    plast_tensor_free(&yb);
    plast_qmodel_destroy(a);
    plast_qmodel_destroy(b);
    plast_qmodel_destroy(c);
    plast_tensor_free(&x);
    net_fini(&n);
}
