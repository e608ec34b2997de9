/* conv2d.c - 2-D convolution (cross-correlation, as PyTorch's nn.Conv2d).
 *
 * Input [Cin, H, W], output [Cout, Hout, Wout] with
 * Hout = (H + 2 padding - kernel) / stride + 1 (floor), zero padding.
 * The weight is [Cout, Cin, k, k] and the bias [Cout] (PyTorch's layout, so
 * checkpoints compare directly).
 *
 * Samples are lowered a chunk at a time to one column matrix
 * col [Cin*k*k, n*Hout*Wout] (im2col, rows in the weight's (ci, ky, kx)
 * order, sample i's block at column i*Hout*Wout), so each product is long:
 *   forward   Y_c  = W col (+ b), then each sample's block into y (NCHW)
 *   backward  dW  (+)= dY_c col^T   one product per chunk, chunks in order
 *             dX   = col2im(W^T dY_c)
 * where dY_c is the chunk's dY gathered [Cout, n*Hout*Wout].  col itself
 * is never stored: the GEMM packs its panels straight from the chunk's
 * zero-padded input planes through two offset tables (conv_lowering,
 * plast_gemm_gather_mt), with the bits of the stored matrix; for dW the
 * planes are laid out channels last when that makes longer runs.  The chunk
 * (at most CONV_CHUNK_BYTES of col and Y_c / dY_c together) depends on
 * the shapes and the batch only, so the bits do not depend on the thread
 * count.  The batch's dW is scratch too, taken and returned within each
 * call.  A 1x1 kernel with stride 1 and no padding needs no
 * lowering: it runs sample by sample on x itself, with no scratch but dW. */
#include "config.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/gemm.h"
#include "plast/layer.h"
#include "builtin.h"
#include "gemm_kernels.h"
#include "geometry.h"
#include "conv2d_x86.h"
#include "simd.h"

/* Scratch for one chunk of samples: long products for the GEMM, yet small
 * enough to stay in the last-level cache and under glibc's mmap threshold
 * (the block is reused, not faulted in anew at every call). */
#define CONV_CHUNK_BYTES ((size_t)4 << 20)
/* Partial sums per channel of the bias gradient (a vector's worth). */
#define CONV_LANES 16

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
        __builtin_mul_overflow((size_t)cols, (size_t)cout, &count) ||
        /* one sample's padded planes: the lowering's offsets are int32 */
        (long long)in->dim[0] * (in->dim[1] + 2LL * p) * (in->dim[2] + 2LL * p) > INT32_MAX)
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

void plast_conv2d_geometry(const plast_layer *l, int *kernel, int *stride, int *padding)
{
    const conv_priv *c = l->priv;
    *kernel = c->kernel;
    *stride = c->stride;
    *padding = c->padding;
}

static void conv2d_destroy(plast_layer *l)
{
    free(l->priv);
    l->priv = NULL;
}

static size_t plane_size(const conv_geom *g)
{
    return (size_t)g->h * (size_t)g->w;
}

/* The lowering writes each input plane out with its zero padding,
 * (H + 2p) x (W + 2p): every window row is then inside it, and a row of
 * the column matrix is hout runs of wout values with no bounds to test. */
static int padded_width(const conv_geom *g)
{
    return g->w + 2 * g->p;
}

static size_t padded_size(const conv_geom *g)
{
    return (size_t)(g->h + 2 * g->p) * (size_t)padded_width(g);
}

/* dst[0, n) = src[0, n) in whole 8- or 4-float blocks (the last one
 * overlapping the one before), which the compiler moves as vectors;
 * inlined, as a call costs more than a short run. */
__attribute__((always_inline)) static inline void copy_run(plast_real *restrict dst,
                                                           const plast_real *restrict src,
                                                           int n)
{
    if (n >= 8) {
        for (int i = 0; i + 8 < n; i += 8)
            memcpy(dst + i, src + i, 8 * sizeof *dst);
        memcpy(dst + n - 8, src + n - 8, 8 * sizeof *dst);
    } else if (n >= 4) {
        memcpy(dst, src, 4 * sizeof *dst);
        memcpy(dst + n - 4, src + n - 4, 4 * sizeof *dst);
    } else {
        for (int i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

/* dst[0, n) += src[0, n). */
__attribute__((always_inline)) static inline void add_run(plast_real *restrict dst,
                                                          const plast_real *restrict src,
                                                          int n)
{
    PLAST_SIMD
    for (int i = 0; i < n; i++)
        dst[i] += src[i];
}

/* xc [H, W] into the middle of pad [(H + 2p), (W + 2p)], zeros around. */
static void pad_plane(const conv_geom *g, const plast_real *xc, plast_real *pad)
{
    size_t wp = (size_t)padded_width(g), p = (size_t)g->p, w = (size_t)g->w;
    size_t border = p * wp; /* the p rows above, and below */
    memset(pad, 0, border * sizeof *pad);
    memset(pad + padded_size(g) - border, 0, border * sizeof *pad);
    for (int iy = 0; iy < g->h; iy++) { /* only the border is zeroed */
        plast_real *row = pad + ((size_t)iy + p) * wp;
        for (size_t j = 0; j < p; j++)
            row[j] = row[p + w + j] = 0.0f;
        copy_run(row + p, xc + (size_t)iy * w, g->w);
    }
}

/* The inverse: the middle of pad back into dxc [H, W]. */
static void crop_plane(const conv_geom *g, const plast_real *pad, plast_real *dxc)
{
    size_t wp = (size_t)padded_width(g);
    for (int iy = 0; iy < g->h; iy++)
        copy_run(dxc + (size_t)iy * (size_t)g->w, pad + (size_t)(iy + g->p) * wp + (size_t)g->p,
                 g->w);
}

/* One row of one sample's column gradient, added where its entries were
 * read from: pad[(oy*s + ky, ox*s + kx)] += src[(oy, ox)], in src's order. */
static void col2im_row(const conv_geom *g, const plast_real *src, int ky, int kx,
                       plast_real *pad)
{
    size_t wp = (size_t)padded_width(g);
    for (int oy = 0; oy < g->hout; oy++, src += g->wout) {
        plast_real *dst = pad + (size_t)(oy * g->s + ky) * wp + (size_t)kx;
        if (g->s == 1)
            add_run(dst, src, g->wout);
        else
            for (int ox = 0; ox < g->wout; ox++)
                dst[(size_t)ox * (size_t)g->s] += src[ox];
    }
}

/* The lowering of a chunk of nc samples, which the GEMM reads in place
 * (plast_gemm_gather_mt) instead of a column matrix: the samples' padded
 * input planes pad [nc][Cin][Hp][Wp]; tap[r] = the offset of kernel tap
 * r = (ci, ky, kx) from a window's corner; pix[j] = the offset of the
 * corner of output pixel j = (i, oy, ox)'s window.  Column matrix entry
 * (r, j) is pad[tap[r] + pix[j]]. */
typedef struct conv_lowering {
    plast_real *pad;
    int32_t *tap, *pix;
} conv_lowering;

static size_t padded_sample(const conv_geom *g)
{
    return (size_t)g->cin * padded_size(g);
}

/* Floats (and int32s) a lowering of nb samples takes. */
static size_t lowering_size(const conv_geom *g, int nb)
{
    return (size_t)nb * (padded_sample(g) + (size_t)g->cols) + (size_t)g->rows;
}

/* A lowering of up to nb samples placed at `at`: pad, then tap and pix. */
static conv_lowering lowering_place(const conv_geom *g, int nb, plast_real *at)
{
    conv_lowering lw = {at, NULL, NULL};
    lw.tap = (int32_t *)(at + (size_t)nb * padded_sample(g));
    lw.pix = lw.tap + g->rows;
    return lw;
}

/* The offsets for up to nb samples; pad is set, not filled. */
static conv_lowering lowering_at(const conv_geom *g, int nb, plast_real *at)
{
    conv_lowering lw = lowering_place(g, nb, at);
    int wp = padded_width(g), r = 0, j = 0;
    for (int ci = 0; ci < g->cin; ci++)
        for (int ky = 0; ky < g->k; ky++)
            for (int kx = 0; kx < g->k; kx++)
                lw.tap[r++] = (int32_t)((size_t)ci * padded_size(g)) + ky * wp + kx;
    for (int i = 0; i < nb; i++)
        for (int oy = 0; oy < g->hout; oy++)
            for (int ox = 0; ox < g->wout; ox++)
                lw.pix[j++] = (int32_t)((size_t)i * padded_sample(g)) + oy * g->s * wp + ox * g->s;
    return lw;
}

/* The nc samples' input planes into lw's padded planes. */
static void pad_chunk(const conv_geom *g, const plast_real *x, int nc, const conv_lowering *lw)
{
    for (size_t q = 0; q < (size_t)nc * (size_t)g->cin; q++)
        pad_plane(g, x + q * plane_size(g), lw->pad + q * padded_size(g));
}

/* The weight gradient's lowering, channels last where Cin >= k: padded
 * planes [nc][Hp][Wp][Cin] and the taps in (ky, kx, ci) order, so that a
 * row of col^T (one output pixel, consecutive taps) is runs of Cin values
 * instead of k, which the GEMM packs in whole vectors.  The taps' order
 * only permutes the product's columns, the columns of dW, so every value
 * keeps its bits; add_dw puts the columns back in place. */
static int dw_channels_last(const conv_geom *g)
{
    return g->cin >= g->k;
}

static conv_lowering lowering_channels_last(const conv_geom *g, int nb, plast_real *at)
{
    conv_lowering lw = lowering_place(g, nb, at);
    int wp = padded_width(g), r = 0, j = 0;
    for (int ky = 0; ky < g->k; ky++)
        for (int kx = 0; kx < g->k; kx++)
            for (int ci = 0; ci < g->cin; ci++)
                lw.tap[r++] = (ky * wp + kx) * g->cin + ci;
    for (int i = 0; i < nb; i++)
        for (int oy = 0; oy < g->hout; oy++)
            for (int ox = 0; ox < g->wout; ox++)
                lw.pix[j++] = (int32_t)((size_t)i * padded_sample(g)) +
                              (oy * g->s * wp + ox * g->s) * g->cin;
    return lw;
}

/* One sample's [Cin, H, W] into its channels-last padded planes. */
static void pad_sample_channels_last(const conv_geom *g, const plast_real *x, plast_real *pad)
{
    size_t c = (size_t)g->cin, wp = (size_t)padded_width(g), p = (size_t)g->p;
    size_t edge = p * wp * c; /* the p padded rows above, and below */
    memset(pad, 0, edge * sizeof *pad);
    memset(pad + padded_sample(g) - edge, 0, edge * sizeof *pad);
    for (int iy = 0; iy < g->h; iy++) {
        plast_real *row = pad + ((size_t)iy + p) * wp * c;
        memset(row, 0, p * c * sizeof *row);
        memset(row + (p + (size_t)g->w) * c, 0, p * c * sizeof *row);
        for (int ix = 0; ix < g->w; ix++) {
            plast_real *px = row + (p + (size_t)ix) * c;
            const plast_real *src = x + (size_t)iy * (size_t)g->w + (size_t)ix;
            for (size_t ci = 0; ci < c; ci++)
                px[ci] = src[ci * plane_size(g)];
        }
    }
}

static void pad_chunk_channels_last(const conv_geom *g, const plast_real *x, int nc,
                                    const conv_lowering *lw)
{
    for (int i = 0; i < nc; i++)
        pad_sample_channels_last(g, x + (size_t)i * (size_t)g->cin * plane_size(g),
                                 lw->pad + (size_t)i * padded_sample(g));
}

/* grad += dw, dw's columns in the lowering's tap order.  The batch's
 * gradient is summed apart and added to param.g once, so backward adds
 * exactly what one call computes (twice = double). */
static void add_dw(const conv_geom *g, const plast_real *dw, plast_real *grad)
{
    if (!dw_channels_last(g)) {
        for (size_t i = 0; i < (size_t)g->cout * (size_t)g->rows; i++)
            grad[i] += dw[i];
        return;
    }
    size_t kk = (size_t)g->k * (size_t)g->k;
    for (size_t co = 0; co < (size_t)g->cout; co++)
        for (size_t t = 0; t < kk; t++) /* t = ky*k + kx */
            for (size_t ci = 0; ci < (size_t)g->cin; ci++)
                grad[(co * (size_t)g->cin + ci) * kk + t] +=
                    dw[co * (size_t)g->rows + t * (size_t)g->cin + ci];
}

/* The adjoint: dx of the nc samples = every col entry summed at its
 * pixel, each pixel's sum in the order of its sample's columns. */
static void col2im_chunk(const conv_geom *g, const plast_real *col, int nc, plast_real *dx,
                         plast_real *pad)
{
    size_t ld = (size_t)nc * (size_t)g->cols, nx = (size_t)g->cin * plane_size(g);
    if (g->s == 1 && plast_conv2d_avx512()) { /* no padded plane needed */
        for (int i = 0; i < nc; i++)
            for (int ci = 0; ci < g->cin; ci++)
                plast_col2im_plane_s1_avx512(col + (size_t)i * (size_t)g->cols, ld, ci, g->k,
                                             g->p, g->hout, g->wout, g->h, g->w,
                                             dx + (size_t)i * nx + (size_t)ci * plane_size(g));
        return;
    }
    for (int i = 0; i < nc; i++)
        for (int ci = 0; ci < g->cin; ci++) {
            memset(pad, 0, padded_size(g) * sizeof *pad);
            for (int ky = 0; ky < g->k; ky++)
                for (int kx = 0; kx < g->k; kx++) {
                    size_t r = (size_t)((ci * g->k + ky) * g->k + kx);
                    col2im_row(g, col + r * ld + (size_t)i * (size_t)g->cols, ky, kx, pad);
                }
            crop_plane(g, pad, dx + (size_t)i * nx + (size_t)ci * plane_size(g));
        }
}

/* Samples lowered at once: at least one, at most the batch, with the
 * chunk's column matrix [rows, n*cols] (which backward stores for dX, and
 * which the GEMM packs) and its output [cout, n*cols] within
 * CONV_CHUNK_BYTES, n*cols an int and every lowering offset an int32. */
static int chunk_samples(const conv_geom *g, int batch)
{
    size_t per = (size_t)(g->rows + g->cout) * (size_t)g->cols * sizeof(plast_real);
    size_t n = CONV_CHUNK_BYTES / per, most = (size_t)(INT_MAX / g->cols);
    if (most > INT32_MAX / padded_sample(g))
        most = INT32_MAX / padded_sample(g);
    if (n > most)
        n = most;
    if (n > (size_t)batch)
        n = (size_t)batch;
    return n < 1 ? 1 : (int)n;
}

/* A rows x cols buffer from scratch, plus `extra` values after it, or
 * NULL with e filled. */
static plast_real *scratch_alloc(const plast_layer *l, const plast_ctx *ctx, int rows, int cols,
                                 size_t extra, const char *what, plast_err *e)
{
    size_t bytes, n;
    plast_real *p = NULL;
    if (!__builtin_add_overflow((size_t)rows * (size_t)cols, extra, &n) &&
        !__builtin_mul_overflow(n, sizeof *p, &bytes))
        p = plast_mem_alloc(ctx->mem, PLAST_MEM_SCRATCH, bytes);
    if (!p)
        plast_err_set(e, PLAST_E_NOMEM, "conv2d %s: out of memory for a %dx%d %s buffer",
                      l->name, rows, cols, what);
    return p;
}

/* The chunk's output yc [cout, nc*cols] into its samples' [cout, cols]
 * blocks of y, bias (NULL: none) added. */
static void scatter_output(const conv_geom *g, const plast_real *yc, int nc,
                           const plast_real *b, plast_real *y)
{
    size_t cols = (size_t)g->cols, ld = (size_t)nc * cols;
    for (int i = 0; i < nc; i++)
        for (int c = 0; c < g->cout; c++) {
            const plast_real *src = yc + (size_t)c * ld + (size_t)i * cols;
            plast_real *dst = y + ((size_t)i * (size_t)g->cout + (size_t)c) * cols;
            if (!b) {
                memcpy(dst, src, cols * sizeof *dst);
                continue;
            }
            plast_real bc = b[c];
            PLAST_SIMD
            for (size_t j = 0; j < cols; j++)
                dst[j] = src[j] + bc;
        }
}

/* The bias gradient, db[c] += dY summed over batch and space, in two
 * parts: per channel CONV_LANES partial sums (pixel j of each sample into
 * lane j % CONV_LANES, samples in order), taken chunk by chunk while the
 * chunk's dY is in cache; then the lanes in order, added to db
 * (add_bias_grad).  One sample's row of channel c into its lanes: */
static inline void add_row_lanes(const plast_real *row, int cols, plast_real *acc)
{
    plast_real sum[CONV_LANES]; /* a local copy: acc might alias row as far
                                   as the compiler knows, which keeps every
                                   add in memory */
    memcpy(sum, acc, sizeof sum);
    int body = cols / CONV_LANES * CONV_LANES;
    for (int j = 0; j < body; j += CONV_LANES)
        for (int k = 0; k < CONV_LANES; k++)
            sum[k] += row[j + k];
    for (int j = body; j < cols; j++)
        sum[j - body] += row[j];
    memcpy(acc, sum, sizeof sum);
}

static void add_bias_lanes(const conv_geom *g, const plast_real *dy, int nc, plast_real *lanes)
{
    size_t ny = (size_t)g->cout * (size_t)g->cols;
    for (int c = 0; c < g->cout; c++)
        for (int n = 0; n < nc; n++)
            add_row_lanes(dy + (size_t)n * ny + (size_t)c * (size_t)g->cols, g->cols,
                          lanes + (size_t)c * CONV_LANES);
}

/* The inverse gather: the samples' dY blocks side by side in dyc, each
 * block added to the bias lanes (NULL: none) on the way: every lane still
 * takes its terms in sample order. */
PLAST_CLONES static void gather_grad(const conv_geom *g, const plast_real *dy, int nc,
                                     plast_real *dyc, plast_real *lanes)
{
    size_t cols = (size_t)g->cols, ld = (size_t)nc * cols;
    for (int i = 0; i < nc; i++)
        for (int c = 0; c < g->cout; c++) {
            const plast_real *src = dy + ((size_t)i * (size_t)g->cout + (size_t)c) * cols;
            memcpy(dyc + (size_t)c * ld + (size_t)i * cols, src, cols * sizeof *dyc);
            if (lanes)
                add_row_lanes(src, g->cols, lanes + (size_t)c * CONV_LANES);
        }
}

static const plast_real *bias_of(const plast_layer *l)
{
    return l->nparams > 1 ? l->param[1].w : NULL;
}

/* Y = W col + b for nc samples in one product, col read through lw;
 * yc [cout, nc*cols] holds the product. */
static void forward_chunk(const plast_layer *l, const conv_geom *g, const plast_real *x, int nc,
                          const conv_lowering *lw, plast_real *yc, plast_real *y, int threads)
{
    int ld = nc * g->cols;
    pad_chunk(g, x, nc, lw);
    plast_gemm_gather_mt(NULL, threads, 0, g->cout, ld, g->rows, 1.0f, l->param[0].w, g->rows,
                         lw->pad, lw->tap, lw->pix, 0.0f, yc, ld);
    scatter_output(g, yc, nc, bias_of(l), y);
}

/* A pointwise conv needs no lowering: Y_s = W x_s (+ b), straight into y. */
static void forward_pointwise(const plast_layer *l, const conv_geom *g, const plast_real *x,
                              int batch, plast_real *y, int threads)
{
    size_t nx = (size_t)g->rows * (size_t)g->cols, ny = (size_t)g->cout * (size_t)g->cols;
    const plast_real *b = bias_of(l);
    for (int n = 0; n < batch; n++) {
        plast_real *ys = y + (size_t)n * ny;
        plast_gemm_mt(threads, 0, 0, g->cout, g->cols, g->rows, 1.0f, l->param[0].w, g->rows,
                      x + (size_t)n * nx, g->cols, 0.0f, ys, g->cols);
        for (int c = 0; b && c < g->cout; c++)
            for (int j = 0; j < g->cols; j++)
                ys[(size_t)c * (size_t)g->cols + (size_t)j] += b[c];
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
    int rc = plast_layer_check_tensor(l, x, "input", batch, nx, e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, y, "output", batch, ny, e);
    if (rc != PLAST_OK)
        return rc;
    if (is_pointwise(&g)) {
        forward_pointwise(l, &g, x->data, batch, y->data, ctx->threads);
        return PLAST_OK;
    }
    int nb = chunk_samples(&g, batch);
    plast_real *buf =
        scratch_alloc(l, ctx, g.cout, nb * g.cols, lowering_size(&g, nb), "output", e);
    if (!buf)
        return PLAST_E_NOMEM;
    conv_lowering lw = lowering_at(&g, nb, buf + (size_t)g.cout * (size_t)(nb * g.cols));
    for (int n0 = 0; n0 < batch; n0 += nb) {
        int nc = batch - n0 < nb ? batch - n0 : nb;
        forward_chunk(l, &g, x->data + (size_t)n0 * nx, nc, &lw, buf,
                      y->data + (size_t)n0 * ny, ctx->threads);
    }
    plast_mem_free(ctx->mem, buf);
    return PLAST_OK;
}

static void add_bias_grad(const conv_geom *g, const plast_real *lanes, plast_real *db)
{
    for (int c = 0; c < g->cout; c++) {
        plast_real sum = 0.0f;
        for (int k = 0; k < CONV_LANES; k++)
            sum += lanes[(size_t)c * CONV_LANES + (size_t)k];
        db[c] += sum;
    }
}

/* Scratch of a backward call: dY of a chunk gathered, dyc [cout, nb*cols];
 * then, in one region, for dW the lowering and for dX the column gradient
 * dcol [rows, nb*cols] and one padded plane.  Each chunk is done with the
 * lowering before its dX product writes dcol over it, so the region only
 * needs the larger of the two (and the lowering's offsets are laid out
 * again at every chunk). */
typedef struct conv_back {
    int nb;
    plast_real *dyc, *dcol, *plane, *region;
} conv_back;

/* Floats a backward call needs after dyc: (SIZE_MAX if that overflows). */
static size_t back_extra(const conv_geom *g, int nb, const plast_tensor *dx, int frozen)
{
    size_t dcol = 0, n = 0;
    if (dx && (__builtin_mul_overflow((size_t)g->rows, (size_t)nb * (size_t)g->cols, &dcol) ||
               __builtin_add_overflow(dcol, padded_size(g), &n)))
        return SIZE_MAX;
    if (!frozen && lowering_size(g, nb) > n)
        n = lowering_size(g, nb);
    return n;
}

/* back_extra's parts, laid out after dyc in buf. */
static conv_back back_scratch(const conv_geom *g, int nb, plast_real *buf,
                              const plast_tensor *dx)
{
    size_t ld = (size_t)nb * (size_t)g->cols;
    conv_back sb = {nb, buf, NULL, NULL, buf + (size_t)g->cout * ld};
    if (dx) {
        sb.dcol = sb.region;
        sb.plane = sb.region + (size_t)g->rows * ld;
    }
    return sb;
}

/* Backward for nc samples in long products.  dw (NULL when frozen) gets
 * dY col^T, stored by the first chunk and added by the others; dx (NULL:
 * not wanted) gets col2im(W^T dY). */
static void backward_chunk(const plast_layer *l, const conv_geom *g, const plast_real *x,
                           const plast_real *dy, int nc, const conv_back *sb, plast_real *dw,
                           plast_real *lanes, int first, plast_real *dx, int threads)
{
    int ld = nc * g->cols;
    gather_grad(g, dy, nc, sb->dyc, lanes);
    if (dw) { /* col^T as op(B): its row k is pixel pix[k], its column j tap tap[j] */
        conv_lowering lw;
        if (dw_channels_last(g)) {
            lw = lowering_channels_last(g, sb->nb, sb->region);
            pad_chunk_channels_last(g, x, nc, &lw);
        } else {
            lw = lowering_at(g, sb->nb, sb->region);
            pad_chunk(g, x, nc, &lw);
        }
        plast_gemm_gather_mt(NULL, threads, 0, g->cout, g->rows, ld, 1.0f, sb->dyc, ld, lw.pad,
                             lw.pix, lw.tap, first ? 0.0f : 1.0f, dw, g->rows);
    }
    if (!dx)
        return;
    plast_gemm_mt(threads, 1, 0, g->rows, ld, g->cout, 1.0f, l->param[0].w, g->rows, sb->dyc,
                  ld, 0.0f, sb->dcol, ld);
    col2im_chunk(g, sb->dcol, nc, dx, sb->plane);
}

/* Pointwise, one sample at a time: dw (+)= dY_s x_s^T, dx_s = W^T dY_s. */
static void backward_pointwise(const plast_layer *l, const conv_geom *g, const plast_real *x,
                               const plast_real *dy, int batch, plast_real *dw, plast_real *dx,
                               int threads)
{
    size_t nx = (size_t)g->rows * (size_t)g->cols, ny = (size_t)g->cout * (size_t)g->cols;
    for (int n = 0; n < batch; n++) {
        const plast_real *dys = dy + (size_t)n * ny;
        if (dw)
            plast_gemm_mt(threads, 0, 1, g->cout, g->rows, g->cols, 1.0f, dys, g->cols,
                          x + (size_t)n * nx, g->cols, n == 0 ? 0.0f : 1.0f, dw, g->rows);
        if (dx)
            plast_gemm_mt(threads, 1, 0, g->rows, g->cols, g->cout, 1.0f, l->param[0].w, g->rows,
                          dys, g->cols, 0.0f, dx + (size_t)n * nx, g->cols);
    }
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
    int rc = plast_layer_check_tensor(l, x, "input", batch, nx, e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, dy, "output gradient", batch, ny, e);
    if (rc == PLAST_OK && dx)
        rc = plast_layer_check_tensor(l, dx, "input gradient", batch, nx, e);
    if (rc != PLAST_OK || (l->frozen && !dx))
        return rc;
    int nb = chunk_samples(&g, batch);
    plast_real *buf = NULL, *dw = NULL;
    conv_back sb = {0, NULL, NULL, NULL, NULL};
    if (!is_pointwise(&g)) {
        if (!(buf = scratch_alloc(l, ctx, g.cout, nb * g.cols, back_extra(&g, nb, dx, l->frozen),
                                  "output gradient", e)))
            return PLAST_E_NOMEM;
        sb = back_scratch(&g, nb, buf, dx);
    }
    /* the weight gradient, then the bias's lanes */
    size_t nlanes = l->nparams > 1 ? (size_t)g.cout * CONV_LANES : 0;
    if (!l->frozen &&
        !(dw = scratch_alloc(l, ctx, g.cout, g.rows, nlanes, "weight gradient", e))) {
        rc = PLAST_E_NOMEM;
        goto undo_buf;
    }
    plast_real *lanes = dw && nlanes ? dw + (size_t)g.cout * (size_t)g.rows : NULL;
    if (lanes)
        memset(lanes, 0, nlanes * sizeof *lanes);
    if (!buf) {
        backward_pointwise(l, &g, x->data, dy->data, batch, dw, dx ? dx->data : NULL,
                           ctx->threads);
        if (lanes)
            add_bias_lanes(&g, dy->data, batch, lanes);
    }
    for (int n0 = 0; buf && n0 < batch; n0 += nb) {
        int nc = batch - n0 < nb ? batch - n0 : nb;
        backward_chunk(l, &g, x->data + (size_t)n0 * nx, dy->data + (size_t)n0 * ny, nc, &sb,
                       dw, lanes, n0 == 0, dx ? dx->data + (size_t)n0 * nx : NULL,
                       ctx->threads);
    }
    if (dw)
        add_dw(&g, dw, l->param[0].g);
    if (lanes)
        add_bias_grad(&g, lanes, l->param[1].g);
    plast_mem_free(ctx->mem, dw);
undo_buf:
    plast_mem_free(ctx->mem, buf);
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
