/* conv2d.c - 2-D convolution (cross-correlation, as PyTorch's nn.Conv2d).
 *
 * Input [Cin, H, W], output [Cout, Hout, Wout] with
 * Hout = (H + 2 padding - kernel) / stride + 1 (floor), zero padding.
 * The weight is [Cout, Cin, k, k] and the bias [Cout] (PyTorch's layout, so
 * checkpoints compare directly).
 *
 * Each sample is lowered to a column matrix col [Cin*k*k, Hout*Wout]
 * (im2col, rows in the weight's (ci, ky, kx) order) so that
 *   forward   Y_s  = W col_s (+ b)        one plast_gemm per sample
 *   backward  dW  += sum_s dY_s col_s^T    samples in order: fixed sums
 *             dX_s = col2im(W^T dY_s)
 * The column buffer and the batch's dW are scratch, taken and returned
 * within each call.  A 1x1 kernel with stride 1 and no padding needs no
 * lowering: col_s is x_s. */
#include "config.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/gemm.h"
#include "plast/layer.h"
#include "builtin.h"

static const plast_setting conv2d_settings[] = {
    {"channels", PLAST_S_INT, NULL, 1, 65536, NULL, PLAST_S_REQUIRED, "output channels"},
    {"kernel", PLAST_S_INT, "3", 1, 64, NULL, 0, "kernel height and width"},
    {"stride", PLAST_S_INT, "1", 1, 64, NULL, 0, "step between windows"},
    {"padding", PLAST_S_INT, "0", 0, 64, NULL, 0, "zeros added on each side"},
    {"bias", PLAST_S_BOOL, "true", 0, 0, NULL, 0, "add a learned bias per channel"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* What the shapes alone do not tell: kept in l->priv. */
typedef struct conv_priv {
    int kernel, stride, padding;
} conv_priv;

/* Every size a pass needs, gathered once. */
typedef struct conv_geom {
    int cin, h, w, cout, hout, wout, k, s, p;
    int rows; /* Cin*k*k: rows of col, columns of W */
    int cols; /* Hout*Wout: columns of col */
} conv_geom;

static conv_geom geom_of(const plast_layer *l)
{
    const conv_priv *c = l->priv;
    conv_geom g = {
        .cin = l->in.dim[0], .h = l->in.dim[1], .w = l->in.dim[2],
        .cout = l->out.dim[0], .hout = l->out.dim[1], .wout = l->out.dim[2],
        .k = c->kernel, .s = c->stride, .p = c->padding,
    };
    g.rows = g.cin * g.k * g.k;
    g.cols = g.hout * g.wout;
    return g;
}

/* No lowering needed: col_s is x_s itself. */
static int is_pointwise(const conv_geom *g)
{
    return g->k == 1 && g->s == 1 && g->p == 0;
}

/* Output length of one axis, or < 1 when the window does not fit. */
static long long out_len(int in, int k, int s, int p)
{
    long long span = (long long)in + 2LL * p - k;
    return span < 0 ? 0 : span / s + 1;
}

/* Check the sizes, then declare shape and parameters (priv not yet set). */
static int conv2d_shape(plast_layer *l, int cout, int k, int s, int p, int bias, plast_err *e)
{
    char buf[64];
    const plast_shape *in = &l->in;
    if (in->ndim != 3 || in->dim[0] < 1 || in->dim[1] < 1 || in->dim[2] < 1)
        return plast_err_set(e, PLAST_E_INVAL, "conv2d needs an image input [C, H, W], found %s",
                             plast_shape_str(in, buf, sizeof buf));
    long long hout = out_len(in->dim[1], k, s, p), wout = out_len(in->dim[2], k, s, p);
    if (hout < 1 || wout < 1)
        return plast_err_set(e, PLAST_E_INVAL,
                             "conv2d output %lldx%lld is empty: input %s, kernel %d, stride %d, "
                             "padding %d", hout, wout, plast_shape_str(in, buf, sizeof buf), k,
                             s, p);
    int rows, cols;
    size_t count;
    if (hout > INT_MAX || wout > INT_MAX || __builtin_mul_overflow(in->dim[0], k * k, &rows) ||
        __builtin_mul_overflow((int)hout, (int)wout, &cols) ||
        __builtin_mul_overflow((size_t)rows, (size_t)cout, &count) ||
        __builtin_mul_overflow((size_t)cols, (size_t)cout, &count))
        return plast_err_set(e, PLAST_E_INVAL,
                             "conv2d sizes overflow: input %s, %d channels, kernel %d",
                             plast_shape_str(in, buf, sizeof buf), cout, k);
    l->out = (plast_shape){3, {cout, (int)hout, (int)wout}};
    l->param[0] = (plast_param){.name = "weight", .count = (size_t)rows * (size_t)cout,
                                .fan_in = rows};
    l->nparams = 1;
    if (bias) {
        l->param[1] = (plast_param){.name = "bias", .count = (size_t)cout, .fan_in = rows};
        l->nparams = 2;
    }
    return PLAST_OK;
}

static int conv2d_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    int k = (int)plast_args_int(a, "kernel"), s = (int)plast_args_int(a, "stride");
    int p = (int)plast_args_int(a, "padding");
    int rc = conv2d_shape(l, (int)plast_args_int(a, "channels"), k, s, p,
                          plast_args_bool(a, "bias"), e);
    if (rc)
        return rc;
    conv_priv *c = malloc(sizeof *c);
    if (!c)
        return plast_err_set(e, PLAST_E_NOMEM, "conv2d: out of memory");
    *c = (conv_priv){.kernel = k, .stride = s, .padding = p};
    l->priv = c;
    return PLAST_OK;
}

static void conv2d_destroy(plast_layer *l)
{
    free(l->priv);
    l->priv = NULL;
}

/* t must be [batch, n per sample]. */
static int check_tensor(const plast_layer *l, const plast_tensor *t, const char *what,
                        int batch, size_t n, plast_err *e)
{
    size_t have = plast_tensor_sample_size(t);
    if (plast_tensor_batch(t) != batch || have != n)
        return plast_err_set(e, PLAST_E_INVAL,
                             "conv2d %s: %s: expected %d samples of %zu values, found %d of %zu",
                             l->name, what, batch, n, plast_tensor_batch(t), have);
    return PLAST_OK;
}

/* Columns ox in [*lo, *hi) read input column ox*s - p + kx inside [0, W). */
static void valid_cols(const conv_geom *g, int kx, int *lo, int *hi)
{
    int first = g->p - kx, last = g->w - 1 + g->p - kx; /* bounds on ox*s */
    int a = first <= 0 ? 0 : (first + g->s - 1) / g->s;
    int b = last < 0 ? 0 : last / g->s + 1;
    if (b > g->wout)
        b = g->wout;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

/* Offset of x[ci, iy, ix] in one sample. */
static size_t pixel(const conv_geom *g, int ci, int iy, int ix)
{
    return ((size_t)ci * (size_t)g->h + (size_t)iy) * (size_t)g->w + (size_t)ix;
}

/* col[(ci,ky,kx), (oy,ox)] = x[ci, oy*s-p+ky, ox*s-p+kx], 0 outside. */
static void im2col(const conv_geom *g, const plast_real *x, plast_real *col)
{
    for (int ci = 0; ci < g->cin; ci++)
        for (int ky = 0; ky < g->k; ky++)
            for (int kx = 0; kx < g->k; kx++) {
                int lo, hi;
                valid_cols(g, kx, &lo, &hi);
                plast_real *row = col + (size_t)((ci * g->k + ky) * g->k + kx) * (size_t)g->cols;
                for (int oy = 0; oy < g->hout; oy++) {
                    plast_real *dst = row + (size_t)oy * (size_t)g->wout;
                    int iy = oy * g->s - g->p + ky;
                    if (iy < 0 || iy >= g->h) {
                        memset(dst, 0, (size_t)g->wout * sizeof *dst);
                        continue;
                    }
                    const plast_real *src = x + pixel(g, ci, iy, 0);
                    for (int ox = 0; ox < lo; ox++)
                        dst[ox] = 0.0f;
                    for (int ox = lo; ox < hi; ox++)
                        dst[ox] = src[ox * g->s - g->p + kx];
                    for (int ox = hi; ox < g->wout; ox++)
                        dst[ox] = 0.0f;
                }
            }
}

/* The adjoint of im2col: dx (zeroed here) += every col entry at its pixel,
 * in col's storage order. */
static void col2im(const conv_geom *g, const plast_real *col, plast_real *dx)
{
    memset(dx, 0, (size_t)g->cin * (size_t)g->h * (size_t)g->w * sizeof *dx);
    for (int ci = 0; ci < g->cin; ci++)
        for (int ky = 0; ky < g->k; ky++)
            for (int kx = 0; kx < g->k; kx++) {
                int lo, hi;
                valid_cols(g, kx, &lo, &hi);
                const plast_real *row =
                    col + (size_t)((ci * g->k + ky) * g->k + kx) * (size_t)g->cols;
                for (int oy = 0; oy < g->hout; oy++) {
                    int iy = oy * g->s - g->p + ky;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    const plast_real *src = row + (size_t)oy * (size_t)g->wout;
                    plast_real *dst = dx + pixel(g, ci, iy, 0);
                    for (int ox = lo; ox < hi; ox++)
                        dst[ox * g->s - g->p + kx] += src[ox];
                }
            }
}

/* A rows x cols buffer from scratch, or NULL with e filled. */
static plast_real *scratch_alloc(const plast_layer *l, const plast_ctx *ctx, int rows, int cols,
                                 const char *what, plast_err *e)
{
    size_t bytes;
    plast_real *p = NULL;
    if (!__builtin_mul_overflow((size_t)rows * (size_t)cols, sizeof *p, &bytes))
        p = plast_mem_alloc(ctx->mem, PLAST_MEM_SCRATCH, bytes);
    if (!p)
        plast_err_set(e, PLAST_E_NOMEM, "conv2d %s: out of memory for a %dx%d %s buffer",
                      l->name, rows, cols, what);
    return p;
}

static void add_bias(const conv_geom *g, const plast_real *b, plast_real *y)
{
    for (int c = 0; c < g->cout; c++) {
        plast_real *row = y + (size_t)c * (size_t)g->cols;
        for (int j = 0; j < g->cols; j++)
            row[j] += b[c];
    }
}

static int conv2d_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                          const plast_ctx *ctx, plast_err *e)
{
    conv_geom g = geom_of(l);
    int batch = plast_tensor_batch(x);
    if (batch == 0)
        return PLAST_OK;
    size_t nx = plast_shape_size(&l->in), ny = plast_shape_size(&l->out);
    int rc = check_tensor(l, x, "input", batch, nx, e);
    if (rc == PLAST_OK)
        rc = check_tensor(l, y, "output", batch, ny, e);
    if (rc != PLAST_OK)
        return rc;
    plast_real *col = NULL;
    if (!is_pointwise(&g) && !(col = scratch_alloc(l, ctx, g.rows, g.cols, "column", e)))
        return PLAST_E_NOMEM;
    for (int n = 0; n < batch; n++) {
        const plast_real *xs = x->data + (size_t)n * nx;
        plast_real *ys = y->data + (size_t)n * ny;
        if (col)
            im2col(&g, xs, col);
        plast_gemm(0, 0, g.cout, g.cols, g.rows, 1.0f, l->param[0].w, g.rows, col ? col : xs,
                   g.cols, 0.0f, ys, g.cols);
        if (l->nparams > 1)
            add_bias(&g, l->param[1].w, ys);
    }
    plast_mem_free(ctx->mem, col);
    return PLAST_OK;
}

/* db[c] += dY summed over batch and space: each channel from zero, samples
 * then pixels in order, then added. */
static void add_bias_grad(const conv_geom *g, const plast_real *dy, int batch, plast_real *db)
{
    size_t ny = (size_t)g->cout * (size_t)g->cols;
    for (int c = 0; c < g->cout; c++) {
        plast_real acc = 0.0f;
        for (int n = 0; n < batch; n++) {
            const plast_real *row = dy + (size_t)n * ny + (size_t)c * (size_t)g->cols;
            for (int j = 0; j < g->cols; j++)
                acc += row[j];
        }
        db[c] += acc;
    }
}

/* One sample's backward; col is scratch (NULL for a pointwise conv), dw
 * the batch's weight gradient (NULL when frozen), started at sample 0. */
static void backward_sample(const plast_layer *l, const conv_geom *g, const plast_real *xs,
                            const plast_real *dys, plast_real *dxs, plast_real *col,
                            plast_real *dw, int first)
{
    if (dw) { /* dw (+)= dY_s col_s^T */
        if (col)
            im2col(g, xs, col);
        plast_gemm(0, 1, g->cout, g->rows, g->cols, 1.0f, dys, g->cols, col ? col : xs,
                   g->cols, first ? 0.0f : 1.0f, dw, g->rows);
    }
    if (!dxs)
        return;
    /* dcol = W^T dY_s, straight into dx when there is nothing to fold */
    plast_gemm(1, 0, g->rows, g->cols, g->cout, 1.0f, l->param[0].w, g->rows, dys, g->cols,
               0.0f, col ? col : dxs, g->cols);
    if (col)
        col2im(g, col, dxs);
}

/* The batch's gradient is summed apart and added to param.g once, so
 * backward adds exactly what one call computes (twice = double). */
static void add_into(plast_real *g, const plast_real *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g[i] += d[i];
}

static int conv2d_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                           const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                           plast_err *e)
{
    (void)y;
    conv_geom g = geom_of(l);
    int batch = plast_tensor_batch(x);
    if (batch == 0)
        return PLAST_OK;
    size_t nx = plast_shape_size(&l->in), ny = plast_shape_size(&l->out);
    int rc = check_tensor(l, x, "input", batch, nx, e);
    if (rc == PLAST_OK)
        rc = check_tensor(l, dy, "output gradient", batch, ny, e);
    if (rc == PLAST_OK && dx)
        rc = check_tensor(l, dx, "input gradient", batch, nx, e);
    if (rc != PLAST_OK || (l->frozen && !dx))
        return rc;
    plast_real *col = NULL, *dw = NULL;
    if (!is_pointwise(&g) && !(col = scratch_alloc(l, ctx, g.rows, g.cols, "column", e)))
        return PLAST_E_NOMEM;
    if (!l->frozen && !(dw = scratch_alloc(l, ctx, g.cout, g.rows, "weight gradient", e))) {
        rc = PLAST_E_NOMEM;
        goto undo_col;
    }
    for (int n = 0; n < batch; n++)
        backward_sample(l, &g, x->data + (size_t)n * nx, dy->data + (size_t)n * ny,
                        dx ? dx->data + (size_t)n * nx : NULL, col, dw, n == 0);
    if (dw) {
        add_into(l->param[0].g, dw, l->param[0].count);
        if (l->nparams > 1)
            add_bias_grad(&g, dy->data, batch, l->param[1].g);
    }
    plast_mem_free(ctx->mem, dw);
undo_col:
    plast_mem_free(ctx->mem, col);
    return rc;
}

static uint64_t conv2d_flops(const plast_layer *l, int batch)
{
    conv_geom g = geom_of(l);
    return 2u * (uint64_t)g.cout * (uint64_t)g.rows * (uint64_t)g.cols *
           (uint64_t)(batch > 0 ? batch : 0);
}

const plast_layer_ops plast_layer_conv2d = {
    .size = sizeof(plast_layer_ops),
    .name = "conv2d",
    .settings = conv2d_settings,
    .flags = 0,
    .create = conv2d_create,
    .init = NULL,
    .forward = conv2d_forward,
    .backward = conv2d_backward,
    .destroy = conv2d_destroy,
    .flops = conv2d_flops,
    .release = NULL,
};
