/* batchnorm.c - batch normalisation with PyTorch's semantics.
 *
 * Input [C, H, W] is normalised per channel over the batch, H and W
 * (BatchNorm2d); input [F] per feature over the batch (BatchNorm1d).  With
 * n values per channel:
 *
 *   training: mean, var = batch mean and biased variance (accumulated in
 *             double, samples then positions, in storage order);
 *             y = gamma (x - mean) / sqrt(var + eps) + beta;
 *             running_mean = (1 - m) running_mean + m mean,
 *             running_var  = (1 - m) running_var  + m var n / (n - 1)
 *   eval:     the same y with the running statistics; nothing updated.
 *
 * Parameters: weight (gamma), bias (beta), then the buffers running_mean and
 * running_var (PLAST_PARAM_BUFFER: saved, never trained, g == NULL).
 *
 * A training forward keeps each channel's mean and 1/sqrt(var + eps) (2C
 * floats) for backward, allocated from ctx->mem in the activations category
 * and freed by release() (or destroy()); further training forwards reuse it
 * and an eval forward frees it, so a backward never sees stale statistics.
 * Backward rebuilds x_hat from x with exactly the forward's float
 * arithmetic.  A backward in eval mode differentiates the eval forward
 * (running statistics taken as constants), as PyTorch does. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "plast/layer.h"
#include "builtin.h"
#include "geometry.h"

enum { BN_GAMMA, BN_BETA, BN_RUNNING_MEAN, BN_RUNNING_VAR, BN_NPARAMS };

/* Forward FLOPs per element of the eval form: subtract, scale, gamma, beta. */
#define BN_FLOPS_PER_VALUE 4u

static const plast_setting batchnorm_settings[] = {
    {"momentum", PLAST_S_REAL, "0.1", 0, 1, NULL, 0,
     "weight of the batch in the running statistics"},
    {"eps", PLAST_S_REAL, "1e-5", 0, 1, NULL, PLAST_S_MIN_OPEN,
     "added to the variance before the square root"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

typedef struct bn_state {
    double momentum, eps;
    int channels;
    size_t spatial;     /* values per channel in one sample: H W, or 1 */
    plast_mem *mem;     /* owner of `saved` */
    plast_real *saved;  /* [mean[C], inv_std[C]] of the last training forward */
} bn_state;

static int batchnorm_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    char s[64];
    if (l->in.ndim != 1 && l->in.ndim != 3)
        return plast_err_set(e, PLAST_E_INVAL,
                             "batchnorm: expected an input of [features] or [channels, height, "
                             "width], found %d dimensions [%s]",
                             l->in.ndim, plast_shape_str(&l->in, s, sizeof s));
    size_t size = plast_shape_size(&l->in);
    if (size == 0 || l->in.dim[0] < 1)
        return plast_err_set(e, PLAST_E_INVAL, "batchnorm: expected a non-empty input, found %s",
                             plast_shape_str(&l->in, s, sizeof s));
    bn_state *st = calloc(1, sizeof *st);
    if (!st)
        return plast_err_set(e, PLAST_E_NOMEM, "batchnorm: out of memory");
    st->momentum = plast_args_real(a, "momentum");
    st->eps = plast_args_real(a, "eps");
    st->channels = l->in.dim[0];
    st->spatial = size / (size_t)st->channels;
    l->priv = st;
    l->out = l->in;
    size_t c = (size_t)st->channels;
    /* fan_in is unused (init() replaces the default init); 1 keeps it valid */
    l->param[BN_GAMMA] = (plast_param){.name = "weight", .count = c, .fan_in = 1};
    l->param[BN_BETA] = (plast_param){.name = "bias", .count = c, .fan_in = 1};
    l->param[BN_RUNNING_MEAN] = (plast_param){
        .name = "running_mean", .count = c, .fan_in = 1, .flags = PLAST_PARAM_BUFFER};
    l->param[BN_RUNNING_VAR] = (plast_param){
        .name = "running_var", .count = c, .fan_in = 1, .flags = PLAST_PARAM_BUFFER};
    l->nparams = BN_NPARAMS;
    return PLAST_OK;
}

/* PyTorch's reset_parameters(): the identity transform, empty history. */
static void batchnorm_init(plast_layer *l, plast_rng *rng)
{
    (void)rng;
    for (size_t c = 0; c < l->param[BN_GAMMA].count; c++) {
        l->param[BN_GAMMA].w[c] = 1.0f;
        l->param[BN_BETA].w[c] = 0.0f;
        l->param[BN_RUNNING_MEAN].w[c] = 0.0f;
        l->param[BN_RUNNING_VAR].w[c] = 1.0f;
    }
}

static void free_saved(bn_state *st)
{
    plast_mem_free(st->mem, st->saved);
    st->saved = NULL;
    st->mem = NULL;
}

static void batchnorm_release(plast_layer *l, const plast_ctx *ctx)
{
    (void)ctx; /* the block was allocated from st->mem, recorded with it */
    if (l->priv)
        free_saved(l->priv);
}

static void batchnorm_destroy(plast_layer *l)
{
    if (!l->priv)
        return;
    free_saved(l->priv); /* normally already released */
    free(l->priv);
    l->priv = NULL;
}

double plast_batchnorm_eps(const plast_layer *l)
{
    return ((const bn_state *)l->priv)->eps;
}

/* Element i of sample s in channel c. */
static size_t at(const bn_state *st, int s, int c, size_t i)
{
    return ((size_t)s * (size_t)st->channels + (size_t)c) * st->spatial + i;
}

/* Mean and biased variance of channel c, two passes in double. */
static void channel_moments(const bn_state *st, const plast_real *x, int batch, int c,
                            double *mean, double *var)
{
    double n = (double)batch * (double)st->spatial, sum = 0.0, sq = 0.0;
    for (int s = 0; s < batch; s++)
        for (size_t i = 0; i < st->spatial; i++)
            sum += x[at(st, s, c, i)];
    *mean = sum / n;
    for (int s = 0; s < batch; s++)
        for (size_t i = 0; i < st->spatial; i++) {
            double d = x[at(st, s, c, i)] - *mean;
            sq += d * d;
        }
    *var = sq / n;
}

/* The block for mean and inv_std, reused across forwards until release. */
static int ensure_saved(plast_layer *l, bn_state *st, plast_mem *mem, plast_err *e)
{
    if (st->saved && st->mem == mem)
        return PLAST_OK;
    free_saved(st);
    st->saved = plast_mem_alloc(mem, PLAST_MEM_ACTIVATIONS,
                                2 * (size_t)st->channels * sizeof(plast_real));
    if (!st->saved)
        return plast_err_set(e, PLAST_E_NOMEM, "batchnorm %s: out of memory for statistics",
                             l->name);
    st->mem = mem;
    return PLAST_OK;
}

/* Batch statistics into st->saved and the running statistics updated. */
static void batch_statistics(plast_layer *l, bn_state *st, const plast_real *x, int batch)
{
    double n = (double)batch * (double)st->spatial, m = st->momentum;
    plast_real *rmean = l->param[BN_RUNNING_MEAN].w, *rvar = l->param[BN_RUNNING_VAR].w;
    for (int c = 0; c < st->channels; c++) {
        double mean, var;
        channel_moments(st, x, batch, c, &mean, &var);
        st->saved[c] = (plast_real)mean;
        st->saved[st->channels + c] = (plast_real)(1.0 / sqrt(var + st->eps));
        rmean[c] = (plast_real)((1.0 - m) * rmean[c] + m * mean);
        rvar[c] = (plast_real)((1.0 - m) * rvar[c] + m * var * n / (n - 1.0));
    }
}

/* Channel c's mean and 1/sqrt(var + eps): the kept batch statistics when
 * training, the running ones in eval. */
static void channel_stats(const plast_layer *l, const bn_state *st, int train, int c,
                          plast_real *mean, plast_real *inv_std)
{
    if (train) {
        *mean = st->saved[c];
        *inv_std = st->saved[st->channels + c];
        return;
    }
    *mean = l->param[BN_RUNNING_MEAN].w[c];
    *inv_std = (plast_real)(1.0 / sqrt((double)l->param[BN_RUNNING_VAR].w[c] + st->eps));
}

/* y = gamma x_hat + beta over channel c; backward rebuilds x_hat the same way. */
static void normalise_channel(const plast_layer *l, const bn_state *st, const plast_real *x,
                              plast_real *y, int batch, int c, int train)
{
    plast_real mean, inv_std;
    channel_stats(l, st, train, c, &mean, &inv_std);
    plast_real gamma = l->param[BN_GAMMA].w[c], beta = l->param[BN_BETA].w[c];
    for (int s = 0; s < batch; s++) {
        size_t o = at(st, s, c, 0);
        for (size_t i = 0; i < st->spatial; i++) {
            plast_real xhat = (x[o + i] - mean) * inv_std;
            y[o + i] = gamma * xhat + beta;
        }
    }
}

static int batchnorm_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                             const plast_ctx *ctx, plast_err *e)
{
    bn_state *st = l->priv;
    int batch = plast_tensor_batch(x);
    if (batch == 0)
        return PLAST_OK;
    size_t n = plast_shape_size(&l->in);
    int rc = plast_layer_check_tensor(l, x, "input", batch, n, e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, y, "output", batch, n, e);
    if (rc != PLAST_OK)
        return rc;
    if (ctx->train) {
        if ((size_t)batch * st->spatial < 2)
            return plast_err_set(e, PLAST_E_INVAL,
                                 "batchnorm %s: expected more than 1 value per channel when "
                                 "training, found batch %d of %zu per channel",
                                 l->name, batch, st->spatial);
        if ((rc = ensure_saved(l, st, ctx->mem, e)) != PLAST_OK)
            return rc;
        batch_statistics(l, st, x->data, batch);
    } else {
        free_saved(st); /* a later backward must not see stale statistics */
    }
    for (int c = 0; c < st->channels; c++)
        normalise_channel(l, st, x->data, y->data, batch, c, ctx->train);
    return PLAST_OK;
}

/* Channel c's gradients.  Sums of dy and dy x_hat in double, storage
 * order.  Training: the batch statistics depend on x, so
 * dx = gamma inv_std (dy - mean(dy) - x_hat mean(dy x_hat)); eval: they are
 * constants and dx = gamma inv_std dy. */
static void channel_backward(plast_layer *l, const bn_state *st, const plast_real *x,
                             const plast_real *dy, plast_real *dx, int batch, int c, int train)
{
    plast_real mean, inv_std;
    channel_stats(l, st, train, c, &mean, &inv_std);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int s = 0; s < batch; s++) {
        size_t o = at(st, s, c, 0);
        for (size_t i = 0; i < st->spatial; i++) {
            plast_real xhat = (x[o + i] - mean) * inv_std;
            sum_dy += dy[o + i];
            sum_dy_xhat += (double)dy[o + i] * xhat;
        }
    }
    if (!l->frozen) { /* gamma and beta only: the buffers have no g */
        l->param[BN_GAMMA].g[c] += (plast_real)sum_dy_xhat;
        l->param[BN_BETA].g[c] += (plast_real)sum_dy;
    }
    if (!dx)
        return;
    double n = (double)batch * (double)st->spatial;
    double mean_dy = train ? sum_dy / n : 0.0, mean_dy_xhat = train ? sum_dy_xhat / n : 0.0;
    double scale = (double)l->param[BN_GAMMA].w[c] * inv_std;
    for (int s = 0; s < batch; s++) {
        size_t o = at(st, s, c, 0);
        for (size_t i = 0; i < st->spatial; i++) {
            plast_real xhat = (x[o + i] - mean) * inv_std;
            dx[o + i] = (plast_real)(scale * (dy[o + i] - mean_dy - xhat * mean_dy_xhat));
        }
    }
}

static int batchnorm_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                              const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                              plast_err *e)
{
    (void)y;
    bn_state *st = l->priv;
    int batch = plast_tensor_batch(x);
    if (batch == 0)
        return PLAST_OK;
    size_t n = plast_shape_size(&l->in);
    int rc = plast_layer_check_tensor(l, x, "input", batch, n, e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, dy, "output gradient", batch, n, e);
    if (rc == PLAST_OK && dx)
        rc = plast_layer_check_tensor(l, dx, "input gradient", batch, n, e);
    if (rc != PLAST_OK)
        return rc;
    if (ctx->train && !st->saved)
        return plast_err_set(e, PLAST_E_INVAL,
                             "batchnorm %s: expected the statistics of a training forward "
                             "before backward, found none (released or never run)",
                             l->name);
    for (int c = 0; c < st->channels; c++)
        channel_backward(l, st, x->data, dy->data, dx ? dx->data : NULL, batch, c, ctx->train);
    return PLAST_OK;
}

static uint64_t batchnorm_flops(const plast_layer *l, int batch)
{
    return BN_FLOPS_PER_VALUE * (uint64_t)plast_shape_size(&l->in) *
           (uint64_t)(batch > 0 ? batch : 0);
}

const plast_layer_ops plast_layer_batchnorm = {
    .size = sizeof(plast_layer_ops),
    .name = "batchnorm",
    .settings = batchnorm_settings,
    .flags = PLAST_LAYER_FOLLOWER, /* joins the block of the layer before it */
    .create = batchnorm_create,
    .init = batchnorm_init,
    .forward = batchnorm_forward,
    .backward = batchnorm_backward,
    .destroy = batchnorm_destroy,
    .flops = batchnorm_flops,
    .release = batchnorm_release,
};
