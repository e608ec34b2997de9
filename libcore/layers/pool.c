/* pool.c - max, average and global average pooling over [C, H, W].
 *
 * maxpool and avgpool slide a k x k window with stride s (default k) over
 * each channel, padded by p <= k/2 on every side (PyTorch's limit), with
 * Hout = (H + 2p - k) / s + 1 (floor, PyTorch's ceil_mode = false).  The
 * limit on p guarantees every window holds at least one real pixel, so:
 *   maxpool  pads with -inf: the maximum of the real pixels of the window;
 *            backward sends each gradient to the FIRST maximum in scan
 *            order (rows, then columns), found again from x: no saved
 *            state, and deterministic (ALGORITHMS.md §2);
 *   avgpool  pads with zeros and always divides by k*k (PyTorch's
 *            count_include_pad = true).
 * gap averages each channel to one value: [C, H, W] -> [C].
 * None has parameters or works in place. */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/layer.h"
#include "builtin.h"
#include "geometry.h"
#include "simd.h"

static const plast_setting window_settings[] = {
    {"kernel", PLAST_S_INT, NULL, 1, 64, NULL, PLAST_S_REQUIRED, "window height and width"},
    {"stride", PLAST_S_INT, "0", 0, 64, NULL, 0, "step between windows; 0 = kernel"},
    {"padding", PLAST_S_INT, "0", 0, 32, NULL, 0, "padding on each side, at most kernel/2"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static const plast_setting no_settings[] = {
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* The window, kept in l->priv (gap has none). */
typedef struct pool_priv {
    int kernel, stride, padding;
} pool_priv;

/* One channel plane and its window; gap is one window of the whole plane. */
typedef struct pool_geom {
    int h, w, hout, wout, k, s, p;
} pool_geom;

typedef void (*plane_forward)(const pool_geom *g, const plast_real *x, plast_real *y);
typedef void (*plane_backward)(const pool_geom *g, const plast_real *x, const plast_real *dy,
                               plast_real *dx);

static pool_geom geom_of(const plast_layer *l)
{
    pool_geom g = {.h = l->in.dim[1], .w = l->in.dim[2], .hout = 1, .wout = 1};
    const pool_priv *pp = l->priv;
    if (pp) {
        g.hout = l->out.dim[1];
        g.wout = l->out.dim[2];
        g.k = pp->kernel;
        g.s = pp->stride;
        g.p = pp->padding;
    }
    return g;
}

/* ---- create ---- */

static int need_image(const plast_layer *l, plast_err *e)
{
    char buf[64];
    const plast_shape *in = &l->in;
    if (in->ndim != 3 || in->dim[0] < 1 || in->dim[1] < 1 || in->dim[2] < 1)
        return plast_err_set(e, PLAST_E_INVAL, "%s needs an image input [C, H, W], found %s",
                             l->ops->name, plast_shape_str(in, buf, sizeof buf));
    return PLAST_OK;
}

/* Output length of one axis, or 0 when the window does not fit. */
static long long out_len(int in, int k, int s, int p)
{
    long long span = (long long)in + 2LL * p - k;
    return span < 0 ? 0 : span / s + 1;
}

static int window_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    int rc = need_image(l, e);
    if (rc)
        return rc;
    int k = (int)plast_args_int(a, "kernel"), s = (int)plast_args_int(a, "stride");
    int p = (int)plast_args_int(a, "padding");
    if (p > k / 2)
        return plast_err_at(e, PLAST_E_PARSE, plast_args_file(a), plast_args_line(a, "padding"),
                            "[%s] padding: expected at most half the kernel (%d), found %d",
                            plast_args_section(a), k / 2, p);
    if (s == 0)
        s = k;
    long long hout = out_len(l->in.dim[1], k, s, p), wout = out_len(l->in.dim[2], k, s, p);
    if (hout < 1 || wout < 1) {
        char buf[64];
        return plast_err_set(e, PLAST_E_INVAL,
                             "%s output %lldx%lld is empty: input %s, kernel %d, stride %d, "
                             "padding %d", l->ops->name, hout, wout,
                             plast_shape_str(&l->in, buf, sizeof buf), k, s, p);
    }
    if (hout > INT_MAX || wout > INT_MAX)
        return plast_err_set(e, PLAST_E_INVAL, "%s output %lldx%lld is too large", l->ops->name,
                             hout, wout);
    pool_priv *pp = malloc(sizeof *pp);
    if (!pp)
        return plast_err_set(e, PLAST_E_NOMEM, "%s: out of memory", l->ops->name);
    *pp = (pool_priv){.kernel = k, .stride = s, .padding = p};
    l->priv = pp;
    l->out = (plast_shape){3, {l->in.dim[0], (int)hout, (int)wout}};
    l->nparams = 0;
    return PLAST_OK;
}

static int gap_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    (void)a;
    int rc = need_image(l, e);
    if (rc)
        return rc;
    l->out = (plast_shape){1, {l->in.dim[0], 0, 0}};
    l->nparams = 0;
    return PLAST_OK;
}

void plast_pool_geometry(const plast_layer *l, int *kernel, int *stride, int *padding)
{
    const pool_priv *pp = l->priv;
    *kernel = pp ? pp->kernel : 0;
    *stride = pp ? pp->stride : 0;
    *padding = pp ? pp->padding : 0;
}

static void pool_destroy(plast_layer *l)
{
    free(l->priv);
    l->priv = NULL;
}

/* ---- windows ---- */

/* Real pixels of window (oy, ox): rows [*y0, *y1), columns [*x0, *x1). */
static void window_bounds(const pool_geom *g, int oy, int ox, int *y0, int *y1, int *x0,
                          int *x1)
{
    int top = oy * g->s - g->p, left = ox * g->s - g->p;
    *y0 = top < 0 ? 0 : top;
    *y1 = top + g->k < g->h ? top + g->k : g->h;
    *x0 = left < 0 ? 0 : left;
    *x1 = left + g->k < g->w ? left + g->k : g->w;
}

/* Index in the plane of the first maximum of window (oy, ox); a NaN wins
 * (the first one) so that divergence shows. */
static size_t window_argmax(const pool_geom *g, const plast_real *x, int oy, int ox)
{
    int y0, y1, x0, x1;
    window_bounds(g, oy, ox, &y0, &y1, &x0, &x1);
    size_t best = (size_t)y0 * (size_t)g->w + (size_t)x0;
    for (int iy = y0; iy < y1; iy++)
        for (int ix = x0; ix < x1; ix++) {
            size_t i = (size_t)iy * (size_t)g->w + (size_t)ix;
            if (x[i] > x[best] || (isnan(x[i]) && !isnan(x[best])))
                best = i;
        }
    return best;
}

/* The common 2x2 window with stride 2 and no padding gets loops the
 * compiler vectorises, with the same scan order and the same tie and NaN
 * rules as window_argmax. */
static int is_2x2(const pool_geom *g)
{
    return g->k == 2 && g->s == 2 && g->p == 0;
}

/* Does v replace the running maximum m (a later value wins only if larger,
 * or if it is the first NaN)? */
static inline int beats(plast_real v, plast_real m)
{
    return v > m || (v != v && m == m);
}

/* Which of a, b, c, d (scan order) window_argmax would pick, as 0..3 in a
 * float: with every value a float the loops below vectorise. */
static inline plast_real pick4(plast_real a, plast_real b, plast_real c, plast_real d)
{
    plast_real m = a, s = 0.0f;
    if (beats(b, m)) {
        m = b;
        s = 1.0f;
    }
    if (beats(c, m)) {
        m = c;
        s = 2.0f;
    }
    if (beats(d, m))
        s = 3.0f;
    return s;
}

static inline plast_real max4(plast_real a, plast_real b, plast_real c, plast_real d)
{
    plast_real m = beats(b, a) ? b : a;
    m = beats(c, m) ? c : m;
    return beats(d, m) ? d : m;
}

static void maxpool_2x2_plane(const pool_geom *g, const plast_real *x, plast_real *y)
{
    size_t w = (size_t)g->w;
    for (int oy = 0; oy < g->hout; oy++) {
        const plast_real *r0 = x + (size_t)(2 * oy) * w, *r1 = r0 + w;
        plast_real *yo = y + (size_t)oy * (size_t)g->wout;
        PLAST_SIMD
        for (int ox = 0; ox < g->wout; ox++)
            yo[ox] = max4(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
    }
}

/* Each window's gradient goes to its argmax, 0 + dy as the generic path's
 * zeroed += gives (+0 for a -0 gradient); pixels outside every window
 * (an odd last row or column) get 0. */
static void maxpool_2x2_plane_backward(const pool_geom *g, const plast_real *x,
                                       const plast_real *dy, plast_real *dx)
{
    size_t w = (size_t)g->w;
    for (int oy = 0; oy < g->hout; oy++) {
        const plast_real *r0 = x + (size_t)(2 * oy) * w, *r1 = r0 + w;
        const plast_real *go = dy + (size_t)oy * (size_t)g->wout;
        plast_real *d0 = dx + (size_t)(2 * oy) * w, *d1 = d0 + w;
        PLAST_SIMD
        for (int ox = 0; ox < g->wout; ox++) {
            plast_real s = pick4(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
            plast_real v = 0.0f + go[ox];
            d0[2 * ox] = s == 0.0f ? v : 0.0f;
            d0[2 * ox + 1] = s == 1.0f ? v : 0.0f;
            d1[2 * ox] = s == 2.0f ? v : 0.0f;
            d1[2 * ox + 1] = s == 3.0f ? v : 0.0f;
        }
        for (size_t ix = 2 * (size_t)g->wout; ix < w; ix++)
            d0[ix] = d1[ix] = 0.0f;
    }
    size_t covered = (size_t)(2 * g->hout) * w;
    memset(dx + covered, 0, ((size_t)g->h * w - covered) * sizeof *dx);
}

static void maxpool_plane(const pool_geom *g, const plast_real *x, plast_real *y)
{
    if (is_2x2(g)) {
        maxpool_2x2_plane(g, x, y);
        return;
    }
    for (int oy = 0; oy < g->hout; oy++)
        for (int ox = 0; ox < g->wout; ox++)
            y[(size_t)oy * (size_t)g->wout + (size_t)ox] = x[window_argmax(g, x, oy, ox)];
}

static void maxpool_plane_backward(const pool_geom *g, const plast_real *x,
                                   const plast_real *dy, plast_real *dx)
{
    if (is_2x2(g)) {
        maxpool_2x2_plane_backward(g, x, dy, dx);
        return;
    }
    memset(dx, 0, (size_t)g->h * (size_t)g->w * sizeof *dx);
    for (int oy = 0; oy < g->hout; oy++)
        for (int ox = 0; ox < g->wout; ox++)
            dx[window_argmax(g, x, oy, ox)] += dy[(size_t)oy * (size_t)g->wout + (size_t)ox];
}

static void avgpool_plane(const pool_geom *g, const plast_real *x, plast_real *y)
{
    plast_real area = (plast_real)(g->k * g->k);
    for (int oy = 0; oy < g->hout; oy++)
        for (int ox = 0; ox < g->wout; ox++) {
            int y0, y1, x0, x1;
            window_bounds(g, oy, ox, &y0, &y1, &x0, &x1);
            plast_real sum = 0.0f;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++)
                    sum += x[(size_t)iy * (size_t)g->w + (size_t)ix];
            y[(size_t)oy * (size_t)g->wout + (size_t)ox] = sum / area;
        }
}

static void avgpool_plane_backward(const pool_geom *g, const plast_real *x,
                                   const plast_real *dy, plast_real *dx)
{
    (void)x;
    plast_real area = (plast_real)(g->k * g->k);
    memset(dx, 0, (size_t)g->h * (size_t)g->w * sizeof *dx);
    for (int oy = 0; oy < g->hout; oy++)
        for (int ox = 0; ox < g->wout; ox++) {
            int y0, y1, x0, x1;
            window_bounds(g, oy, ox, &y0, &y1, &x0, &x1);
            plast_real share = dy[(size_t)oy * (size_t)g->wout + (size_t)ox] / area;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++)
                    dx[(size_t)iy * (size_t)g->w + (size_t)ix] += share;
        }
}

static void gap_plane(const pool_geom *g, const plast_real *x, plast_real *y)
{
    size_t n = (size_t)g->h * (size_t)g->w;
    plast_real sum = 0.0f;
    for (size_t i = 0; i < n; i++)
        sum += x[i];
    y[0] = sum / (plast_real)n;
}

static void gap_plane_backward(const pool_geom *g, const plast_real *x, const plast_real *dy,
                               plast_real *dx)
{
    (void)x;
    size_t n = (size_t)g->h * (size_t)g->w;
    plast_real share = dy[0] / (plast_real)n;
    for (size_t i = 0; i < n; i++)
        dx[i] = share;
}

/* ---- passes: every (sample, channel) plane in turn ---- */

static int run_forward(const plast_layer *l, const plast_tensor *x, plast_tensor *y,
                       plane_forward f, plast_err *e)
{
    pool_geom g = geom_of(l);
    int batch = plast_tensor_batch(x);
    if (batch == 0)
        return PLAST_OK;
    int rc = plast_layer_check_tensor(l, x, "input", batch, plast_shape_size(&l->in), e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, y, "output", batch, plast_shape_size(&l->out), e);
    if (rc != PLAST_OK)
        return rc;
    size_t planes = (size_t)batch * (size_t)l->in.dim[0];
    size_t nin = (size_t)g.h * (size_t)g.w, nout = (size_t)g.hout * (size_t)g.wout;
    for (size_t i = 0; i < planes; i++)
        f(&g, x->data + i * nin, y->data + i * nout);
    return PLAST_OK;
}

static int run_backward(const plast_layer *l, const plast_tensor *x, const plast_tensor *dy,
                        plast_tensor *dx, plane_backward f, plast_err *e)
{
    pool_geom g = geom_of(l);
    int batch = plast_tensor_batch(x);
    if (batch == 0 || !dx) /* no parameters: nothing else to do */
        return PLAST_OK;
    size_t nx = plast_shape_size(&l->in);
    int rc = plast_layer_check_tensor(l, x, "input", batch, nx, e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, dy, "output gradient", batch,
                                      plast_shape_size(&l->out), e);
    if (rc == PLAST_OK)
        rc = plast_layer_check_tensor(l, dx, "input gradient", batch, nx, e);
    if (rc != PLAST_OK)
        return rc;
    size_t planes = (size_t)batch * (size_t)l->in.dim[0];
    size_t nin = (size_t)g.h * (size_t)g.w, nout = (size_t)g.hout * (size_t)g.wout;
    for (size_t i = 0; i < planes; i++)
        f(&g, x->data + i * nin, dy->data + i * nout, dx->data + i * nin);
    return PLAST_OK;
}

static int maxpool_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                           const plast_ctx *ctx, plast_err *e)
{
    (void)ctx;
    return run_forward(l, x, y, maxpool_plane, e);
}

static int maxpool_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                            const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                            plast_err *e)
{
    (void)y;
    (void)ctx;
    return run_backward(l, x, dy, dx, maxpool_plane_backward, e);
}

static int avgpool_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                           const plast_ctx *ctx, plast_err *e)
{
    (void)ctx;
    return run_forward(l, x, y, avgpool_plane, e);
}

static int avgpool_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                            const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                            plast_err *e)
{
    (void)y;
    (void)ctx;
    return run_backward(l, x, dy, dx, avgpool_plane_backward, e);
}

static int gap_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                       const plast_ctx *ctx, plast_err *e)
{
    (void)ctx;
    return run_forward(l, x, y, gap_plane, e);
}

static int gap_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                        const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                        plast_err *e)
{
    (void)y;
    (void)ctx;
    return run_backward(l, x, dy, dx, gap_plane_backward, e);
}

/* One comparison or addition per window element (per pixel for gap). */
static uint64_t pool_flops(const plast_layer *l, int batch)
{
    pool_geom g = geom_of(l);
    uint64_t per_out = l->priv ? (uint64_t)g.k * (uint64_t)g.k : (uint64_t)g.h * (uint64_t)g.w;
    return per_out * (uint64_t)l->in.dim[0] * (uint64_t)g.hout * (uint64_t)g.wout *
           (uint64_t)(batch > 0 ? batch : 0);
}

const plast_layer_ops plast_layer_maxpool = {
    .size = sizeof(plast_layer_ops),
    .name = "maxpool",
    .settings = window_settings,
    .flags = 0,
    .create = window_create,
    .init = NULL,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .destroy = pool_destroy,
    .flops = pool_flops,
    .release = NULL,
};

const plast_layer_ops plast_layer_avgpool = {
    .size = sizeof(plast_layer_ops),
    .name = "avgpool",
    .settings = window_settings,
    .flags = 0,
    .create = window_create,
    .init = NULL,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .destroy = pool_destroy,
    .flops = pool_flops,
    .release = NULL,
};

const plast_layer_ops plast_layer_gap = {
    .size = sizeof(plast_layer_ops),
    .name = "gap",
    .settings = no_settings,
    .flags = 0,
    .create = gap_create,
    .init = NULL,
    .forward = gap_forward,
    .backward = gap_backward,
    .destroy = pool_destroy,
    .flops = pool_flops,
    .release = NULL,
};
