/* rnn.c - Elman recurrent layer with back-propagation through time.
 *
 *   h_t = tanh(x_t W_ih^T + h_{t-1} W_hh^T + b),  h_0 = 0,  t = 1..T
 *
 * Each sample (any shape, read flat, S values) is T = `steps` rows of S/T
 * features, so a 1x28x28 image with steps = 28 is 28 rows of 28 pixels.
 * `output = last` gives h_T [units]; `sequence` gives every h_t
 * [steps, units], which the next rnn reads as its rows.
 *
 * Parameters: weight_ih [units, features], weight_hh [units, units] (row =
 * output unit, PyTorch's nn.RNN layout), bias [units] (`bias = true`).
 *
 * Hidden states live in H [batch, steps, units], i.e. [batch*steps, units]
 * with the rows of one sample consecutive, the same layout as the input
 * [batch*steps, features]: one GEMM projects every step's input, then one
 * GEMM per step adds the recurrence (rows strided by steps*units).
 * Backward needs all of H.  With `sequence` it is y itself (hence
 * PLAST_LAYER_READS_Y: no in-place layer may overwrite it); with `last` a
 * training forward keeps it (activations category, in priv) until
 * release(); if it is missing, backward recomputes it from x in scratch.
 *
 * plast/rnn.h exposes one step of the same recurrence and its parameter
 * gradients, for rules that train without BPTT (tpSGD). */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/gemm.h"
#include "plast/layer.h"
#include "plast/rnn.h"
#include "bias.h"
#include "builtin.h"
#include "gemm_kernels.h"
#include "simd.h"
#include "vtanh.h"

enum { RNN_W_IH, RNN_W_HH, RNN_BIAS };
enum { RNN_OUT_LAST, RNN_OUT_SEQUENCE };

static const char *const rnn_outputs[] = {"last", "sequence", NULL};

static const plast_setting rnn_settings[] = {
    {"units", PLAST_S_INT, NULL, 1, 65536, NULL, PLAST_S_REQUIRED, "hidden units"},
    {"steps", PLAST_S_INT, NULL, 1, 1e6, NULL, PLAST_S_REQUIRED,
     "time steps each sample is split into"},
    {"output", PLAST_S_ENUM, "last", 0, 0, rnn_outputs, 0,
     "last: the final hidden state; sequence: all of them"},
    {"bias", PLAST_S_BOOL, "true", 0, 0, NULL, 0, "add a learned bias"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct rnn_state {
    int units, steps, features; /* features = values per step */
    int sequence;               /* 1 = output every step */
    plast_mem *mem;             /* owner of `saved` */
    plast_real *saved;          /* H of the last training forward (`last` only) */
    int saved_batch;
} rnn_state;

/* ---- create, init, state ---- */

static int rnn_check_sizes(size_t in, int units, int steps, plast_err *e)
{
    if (in < 1 || in > INT_MAX)
        return plast_err_set(e, PLAST_E_INVAL,
                             "rnn: expected 1 to %d input values per sample, found %zu",
                             INT_MAX, in);
    if (in % (size_t)steps != 0)
        return plast_err_set(e, PLAST_E_INVAL,
                             "rnn: expected an input size divisible by steps = %d, found %zu "
                             "values per sample",
                             steps, in);
    size_t count;
    if (__builtin_mul_overflow(in / (size_t)steps, (size_t)units, &count))
        return plast_err_set(e, PLAST_E_INVAL, "rnn: %d units x %zu inputs overflow", units,
                             in / (size_t)steps);
    if ((int64_t)steps * units > INT_MAX)
        return plast_err_set(e, PLAST_E_INVAL,
                             "rnn: expected steps x units of at most %d, found %d x %d", INT_MAX,
                             steps, units);
    return PLAST_OK;
}

static int rnn_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    int units = (int)plast_args_int(a, "units"), steps = (int)plast_args_int(a, "steps");
    size_t in = plast_shape_size(&l->in);
    int rc = rnn_check_sizes(in, units, steps, e);
    if (rc)
        return rc;
    rnn_state *st = calloc(1, sizeof *st);
    if (!st)
        return plast_err_set(e, PLAST_E_NOMEM, "rnn: out of memory");
    st->units = units;
    st->steps = steps;
    st->features = (int)(in / (size_t)steps);
    st->sequence = plast_args_enum(a, "output") == RNN_OUT_SEQUENCE;
    l->priv = st;
    if (st->sequence)
        l->out = (plast_shape){2, {steps, units, 0}};
    else
        l->out = (plast_shape){1, {units, 0, 0}};
    /* fan_in = units: the U(+-1/sqrt(units)) bound of rnn_init */
    size_t u = (size_t)units;
    l->param[RNN_W_IH] = (plast_param){
        .name = "weight_ih", .count = u * (size_t)st->features, .fan_in = units};
    l->param[RNN_W_HH] = (plast_param){.name = "weight_hh", .count = u * u, .fan_in = units};
    l->nparams = 2;
    if (plast_args_bool(a, "bias")) {
        l->param[RNN_BIAS] = (plast_param){.name = "bias", .count = u, .fan_in = units};
        l->nparams = 3;
    }
    return PLAST_OK;
}

/* W_ih then W_hh U(+-1/sqrt(units)) in storage order, bias 0 (PyTorch's
 * nn.RNN scale for the weights). */
static void rnn_init(plast_layer *l, plast_rng *rng)
{
    const rnn_state *st = l->priv;
    float bound = (float)(1.0 / sqrt((double)st->units));
    for (int p = RNN_W_IH; p <= RNN_W_HH; p++)
        for (size_t i = 0; i < l->param[p].count; i++)
            l->param[p].w[i] = plast_rng_uniform(rng, -bound, bound);
    if (l->nparams > RNN_BIAS)
        memset(l->param[RNN_BIAS].w, 0, l->param[RNN_BIAS].count * sizeof(plast_real));
}

static void free_saved(rnn_state *st)
{
    plast_mem_free(st->mem, st->saved);
    st->saved = NULL;
    st->mem = NULL;
    st->saved_batch = 0;
}

static void rnn_release(plast_layer *l, const plast_ctx *ctx)
{
    (void)ctx; /* the block is freed into st->mem, recorded with it */
    if (l->priv)
        free_saved(l->priv);
}

static void rnn_destroy(plast_layer *l)
{
    if (!l->priv)
        return;
    free_saved(l->priv); /* normally already released */
    free(l->priv);
    l->priv = NULL;
}

/* Bytes of H for `batch` samples, or 0 on overflow. */
static size_t states_bytes(const rnn_state *st, int batch)
{
    size_t n;
    if (__builtin_mul_overflow((size_t)batch, (size_t)st->steps * (size_t)st->units, &n) ||
        __builtin_mul_overflow(n, sizeof(plast_real), &n))
        return 0;
    return n;
}

static plast_real *alloc_states(plast_layer *l, plast_mem *mem, plast_mem_cat cat, int batch,
                                plast_err *e)
{
    const rnn_state *st = l->priv;
    size_t bytes = states_bytes(st, batch);
    plast_real *p = bytes ? plast_mem_alloc(mem, cat, bytes) : NULL;
    if (!p)
        plast_err_set(e, PLAST_E_NOMEM, "rnn %s: out of memory for %d x %d x %d hidden states",
                      l->name, batch, st->steps, st->units);
    return p;
}

/* The block for H, reused across training forwards until release. */
static int ensure_saved(plast_layer *l, plast_mem *mem, int batch, plast_err *e)
{
    rnn_state *st = l->priv;
    if (st->saved && st->mem == mem && st->saved_batch == batch)
        return PLAST_OK;
    free_saved(st);
    st->saved = alloc_states(l, mem, PLAST_MEM_ACTIVATIONS, batch, e);
    if (!st->saved)
        return PLAST_E_NOMEM;
    st->mem = mem;
    st->saved_batch = batch;
    return PLAST_OK;
}

/* ---- shapes ---- */

/* x, the output-shaped tensor `out` and optionally the input-shaped
 * `in_like`; batch*steps must fit the GEMM's int sizes. */
static int check_io(const plast_layer *l, const plast_tensor *x, const plast_tensor *out,
                    const char *out_what, const plast_tensor *in_like, plast_err *e)
{
    const rnn_state *st = l->priv;
    int batch = plast_tensor_batch(x);
    size_t in = (size_t)st->steps * (size_t)st->features;
    int rc = plast_layer_check_tensor(l, x, "input", batch, in, e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, out, out_what, batch, plast_shape_size(&l->out),
                                      e);
    if (rc == PLAST_OK && in_like)
        rc = plast_layer_check_tensor(l, in_like, "input gradient", batch, in, e);
    if (rc == PLAST_OK && (int64_t)batch * st->steps > INT_MAX)
        rc = plast_err_set(e, PLAST_E_INVAL, "rnn %s: batch x steps must be at most %d, found "
                           "%d x %d", l->name, INT_MAX, batch, st->steps);
    return rc;
}

/* ---- forward ---- */

/* v[i] = tanh(v[i]); the same bits vectorised or not, at any width. */
PLAST_CLONES static void rnn_tanh(plast_real *v, size_t n)
{
    PLAST_SIMD
    for (size_t i = 0; i < n; i++)
        v[i] = vtanh(v[i]);
}


/* Every hidden state of the batch into H [batch*steps, units]. */
static void run_steps(const plast_layer *l, const plast_real *x, int batch, plast_real *H,
                      int threads)
{
    const rnn_state *st = l->priv;
    int U = st->units, T = st->steps, F = st->features, ld = T * U;
    int rows = batch * T;
    /* every step's input projection at once: x is [batch*steps, features] */
    plast_gemm_mt(threads, 0, 1, rows, U, F, 1.0f, x, F, l->param[RNN_W_IH].w, F, 0.0f, H, U);
    if (l->nparams > RNN_BIAS) {
        bias_add_rows(H, rows, U, l->param[RNN_BIAS].w);
    }
    plast_gemm_packed_b whh; /* W_hh^T packed once for the T - 1 products */
    int packed = threads <= 1 && T > 1 &&
                 plast_gemm_pack_b_once(&whh, 1, U, U, l->param[RNN_W_HH].w, U) == 0;
    for (int t = 0; t < T; t++) {
        plast_real *h = H + (size_t)t * (size_t)U;
        if (t > 0 && packed) /* h_0 = 0 adds nothing at the first step */
            plast_gemm_with_packed_b(&whh, 0, batch, 1.0f, h - U, ld, 1.0f, h, ld);
        else if (t > 0)
            plast_gemm_mt(threads, 0, 1, batch, U, U, 1.0f, h - U, ld, l->param[RNN_W_HH].w, U,
                          1.0f, h, ld);
        for (int s = 0; s < batch; s++) {
            plast_real *row = h + (size_t)s * (size_t)ld;
            rnn_tanh(row, (size_t)U);
        }
    }
    if (packed)
        plast_gemm_packed_b_free(&whh);
}

/* y[s] = h_T of sample s. */
static void copy_last(const rnn_state *st, const plast_real *H, int batch, plast_real *y)
{
    size_t U = (size_t)st->units, ld = (size_t)st->steps * U;
    for (int s = 0; s < batch; s++)
        memcpy(y + (size_t)s * U, H + (size_t)s * ld + ld - U, U * sizeof *y);
}

static int rnn_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                       const plast_ctx *ctx, plast_err *e)
{
    rnn_state *st = l->priv;
    int batch = plast_tensor_batch(x);
    if (batch == 0)
        return PLAST_OK;
    int rc = check_io(l, x, y, "output", NULL, e);
    if (rc)
        return rc;
    if (st->sequence || !ctx->train)
        free_saved(st); /* nothing kept: a later backward must not see stale states */
    if (st->sequence) {
        run_steps(l, x->data, batch, y->data, ctx->threads);
        return PLAST_OK;
    }
    if (ctx->train) {
        if ((rc = ensure_saved(l, ctx->mem, batch, e)) != PLAST_OK)
            return rc;
        run_steps(l, x->data, batch, st->saved, ctx->threads);
        copy_last(st, st->saved, batch, y->data);
        return PLAST_OK;
    }
    plast_real *H = alloc_states(l, ctx->mem, PLAST_MEM_SCRATCH, batch, e);
    if (!H)
        return PLAST_E_NOMEM;
    run_steps(l, x->data, batch, H, ctx->threads);
    copy_last(st, H, batch, y->data);
    plast_mem_free(ctx->mem, H);
    return PLAST_OK;
}

/* ---- backward ---- */

/* D[s, t] = dJ/dh_t (.) (1 - h_t^2), from the last step back, where
 * dJ/dh_t = dy's step t (sequence; only t = T for last) + D[s, t+1] W_hh. */
/* d[j] *= tanh'(z) = 1 - h[j]^2, for the states h = tanh(z). */
PLAST_CLONES static void times_tanh_grad(plast_real *d, const plast_real *h, size_t n)
{
    PLAST_SIMD
    for (size_t j = 0; j < n; j++)
        d[j] *= 1.0f - h[j] * h[j];
}

static void deltas(const plast_layer *l, const plast_real *H, const plast_real *dy, int batch,
                   plast_real *D, int threads)
{
    const rnn_state *st = l->priv;
    int U = st->units, T = st->steps, ld = T * U;
    size_t u = (size_t)U;
    plast_gemm_packed_b whh; /* W_hh packed once for the T - 1 products */
    int packed = threads <= 1 && T > 1 &&
                 plast_gemm_pack_b_once(&whh, 0, U, U, l->param[RNN_W_HH].w, U) == 0;
    if (st->sequence)
        memcpy(D, dy, (size_t)batch * (size_t)ld * sizeof *D);
    else
        for (int s = 0; s < batch; s++)
            memcpy(D + (size_t)s * (size_t)ld + (size_t)ld - u, dy + (size_t)s * u,
                   u * sizeof *D);
    for (int t = T - 1; t >= 0; t--) {
        size_t off = (size_t)t * u;
        for (int s = 0; s < batch; s++)
            times_tanh_grad(D + (size_t)s * (size_t)ld + off, H + (size_t)s * (size_t)ld + off,
                            u);
        /* last: steps before T get no dy, so beta 0 overwrites their rows */
        float beta = st->sequence ? 1.0f : 0.0f;
        if (t > 0 && packed)
            plast_gemm_with_packed_b(&whh, 0, batch, 1.0f, D + off, ld, beta, D + off - u, ld);
        else if (t > 0)
            plast_gemm_mt(threads, 0, 0, batch, U, U, 1.0f, D + off, ld, l->param[RNN_W_HH].w, U,
                          beta, D + off - u, ld);
    }
    if (packed)
        plast_gemm_packed_b_free(&whh);
}

/* grad W_hh += sum over (s, t > 1) of D[s,t]^T h_{t-1} in one GEMM: row r
 * of D pairs with row r - 1 of H; the pairs that straddle two samples
 * (t = 1 with the previous sample's h_T) get D's row zeroed, so they add
 * exactly nothing.  Destroys those rows of D: call it last. */
static void add_recurrent_grad(plast_layer *l, const plast_real *H, int batch, plast_real *D,
                               int threads)
{
    const rnn_state *st = l->priv;
    int U = st->units, T = st->steps, rows = batch * T;
    if (T == 1)
        return; /* h_0 = 0: W_hh has no effect */
    for (int s = 1; s < batch; s++)
        memset(D + (size_t)s * (size_t)T * (size_t)U, 0, (size_t)U * sizeof *D);
    plast_gemm_mt(threads, 1, 0, U, U, rows - 1, 1.0f, D + U, U, H, U, 1.0f,
                  l->param[RNN_W_HH].g, U);
}

static int rnn_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                        const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                        plast_err *e)
{
    rnn_state *st = l->priv;
    int batch = plast_tensor_batch(x);
    if (batch == 0 || (l->frozen && !dx))
        return PLAST_OK;
    int rc = check_io(l, x, dy, "output gradient", dx, e);
    if (rc == PLAST_OK && st->sequence)
        rc = plast_layer_check_tensor(l, y, "output", batch, plast_shape_size(&l->out), e);
    if (rc)
        return rc;
    int U = st->units, F = st->features, rows = batch * st->steps;
    const plast_real *H = st->sequence ? y->data : st->saved;
    plast_real *recomputed = NULL, *D;
    if (!st->sequence && (!st->saved || st->saved_batch != batch)) {
        /* released, or the forward ran in eval mode: the same bits again */
        if (!(recomputed = alloc_states(l, ctx->mem, PLAST_MEM_SCRATCH, batch, e)))
            return PLAST_E_NOMEM;
        run_steps(l, x->data, batch, recomputed, ctx->threads);
        H = recomputed;
    }
    if (!(D = alloc_states(l, ctx->mem, PLAST_MEM_SCRATCH, batch, e))) {
        plast_mem_free(ctx->mem, recomputed);
        return PLAST_E_NOMEM;
    }
    deltas(l, H, dy->data, batch, D, ctx->threads);
    if (!l->frozen) {
        plast_gemm_mt(ctx->threads, 1, 0, U, F, rows, 1.0f, D, U, x->data, F, 1.0f,
                      l->param[RNN_W_IH].g, F);
        if (l->nparams > RNN_BIAS)
            bias_add_column_sums(D, rows, U, l->param[RNN_BIAS].g);
    }
    if (dx) /* dX = D W_ih, every step at once */
        plast_gemm_mt(ctx->threads, 0, 0, rows, F, U, 1.0f, D, U, l->param[RNN_W_IH].w, F, 0.0f,
                      dx->data, F);
    if (!l->frozen)
        add_recurrent_grad(l, H, batch, D, ctx->threads);
    plast_mem_free(ctx->mem, D);
    plast_mem_free(ctx->mem, recomputed);
    return PLAST_OK;
}

/* ---- one step at a time (plast/rnn.h) ---- */

int plast_rnn_info(const plast_layer *l, int *units, int *steps, int *features, int *sequence)
{
    if (!l || l->ops != &plast_layer_rnn || !l->priv)
        return PLAST_E_INVAL;
    const rnn_state *st = l->priv;
    if (units)
        *units = st->units;
    if (steps)
        *steps = st->steps;
    if (features)
        *features = st->features;
    if (sequence)
        *sequence = st->sequence;
    return PLAST_OK;
}

/* run_steps' arithmetic for one step: input projection, bias, recurrence
 * added with beta 1, tanh. */
void plast_rnn_step(const plast_layer *l, int batch, const plast_real *x_t, int ldx,
                    const plast_real *h_prev, plast_real *h)
{
    const rnn_state *st = l->priv;
    int U = st->units, F = st->features;
    size_t u = (size_t)U;
    if (batch <= 0)
        return;
    plast_gemm(0, 1, batch, U, F, 1.0f, x_t, ldx, l->param[RNN_W_IH].w, F, 0.0f, h, U);
    if (l->nparams > RNN_BIAS) {
        const plast_real *b = l->param[RNN_BIAS].w;
        for (int s = 0; s < batch; s++)
            for (size_t j = 0; j < u; j++)
                h[(size_t)s * u + j] += b[j];
    }
    if (h_prev)
        plast_gemm(0, 1, batch, U, U, 1.0f, h_prev, U, l->param[RNN_W_HH].w, U, 1.0f, h, U);
    rnn_tanh(h, (size_t)batch * u);
}

void plast_rnn_step_grad(plast_layer *l, int batch, const plast_real *delta,
                         const plast_real *x_t, int ldx, const plast_real *h_prev)
{
    const rnn_state *st = l->priv;
    int U = st->units, F = st->features;
    if (l->frozen || batch <= 0)
        return;
    plast_gemm(1, 0, U, F, batch, 1.0f, delta, U, x_t, ldx, 1.0f, l->param[RNN_W_IH].g, F);
    if (h_prev) /* h_0 = 0 adds nothing to W_hh */
        plast_gemm(1, 0, U, U, batch, 1.0f, delta, U, h_prev, U, 1.0f, l->param[RNN_W_HH].g, U);
    if (l->nparams > RNN_BIAS)
        bias_add_column_sums(delta, batch, U, l->param[RNN_BIAS].g);
}

/* The GEMMs per sample: 2 T U F for the inputs, 2 (T - 1) U U for the
 * recurrence (none at the first step). */
static uint64_t rnn_flops(const plast_layer *l, int batch)
{
    const rnn_state *st = l->priv;
    uint64_t U = (uint64_t)st->units, T = (uint64_t)st->steps, F = (uint64_t)st->features;
    uint64_t per_sample = 2u * T * U * F + 2u * (T - 1u) * U * U;
    return per_sample * (uint64_t)(batch > 0 ? batch : 0);
}

const plast_layer_ops plast_layer_rnn = {
    .size = sizeof(plast_layer_ops),
    .name = "rnn",
    .settings = rnn_settings,
    .flags = PLAST_LAYER_READS_Y, /* with `sequence`; `last` does not mind */
    .create = rnn_create,
    .init = rnn_init,
    .forward = rnn_forward,
    .backward = rnn_backward,
    .destroy = rnn_destroy,
    .flops = rnn_flops,
    .release = rnn_release,
};
