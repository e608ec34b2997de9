/* add.c - residual connection: y = input + shortcut(from).
 *
 * The shortcut is the identity (the two shapes must match) or a 1x1
 * convolution without bias, strided when `from` is spatially larger
 * (ResNet's projection shortcut).  The gradient is copied to both
 * branches; through the 1x1 convolution it is W^T dY, scattered back to
 * the strided positions. */
#include "config.h"

#include <string.h>

#include "plast/gemm.h"
#include "plast/layer.h"
#include "builtin.h"
#include "geometry.h"

enum { SHORTCUT_IDENTITY, SHORTCUT_CONV1X1 };

static const char *const shortcut_choices[] = {"identity", "conv1x1", NULL};

static const plast_setting add_settings[] = {
    {"shortcut", PLAST_S_ENUM, "identity", 0, 0, shortcut_choices, 0,
     "identity, or a 1x1 convolution matching channels and stride"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* The stride s with ceil(from / s) == size in both spatial dimensions. */
static int find_stride(const plast_shape *in, const plast_shape *from)
{
    for (int s = 1; s <= 64; s++)
        if ((from->dim[1] - 1) / s + 1 == in->dim[1] && (from->dim[2] - 1) / s + 1 == in->dim[2])
            return s;
    return 0;
}

static int add_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    char s1[64], s2[64];
    int conv = plast_args_enum(a, "shortcut") == SHORTCUT_CONV1X1;
    l->out = l->in;
    if (!conv) {
        if (!plast_shape_equal(&l->in, &l->in2))
            return plast_err_set(e, PLAST_E_INVAL,
                                 "add: input %s and from %s differ in shape (use shortcut = "
                                 "conv1x1)",
                                 plast_shape_str(&l->in, s1, sizeof s1),
                                 plast_shape_str(&l->in2, s2, sizeof s2));
        return PLAST_OK;
    }
    int stride = l->in.ndim == 3 && l->in2.ndim == 3 ? find_stride(&l->in, &l->in2) : 0;
    if (!stride)
        return plast_err_set(e, PLAST_E_INVAL,
                             "add: a 1x1 shortcut cannot map from %s to input %s",
                             plast_shape_str(&l->in2, s2, sizeof s2),
                             plast_shape_str(&l->in, s1, sizeof s1));
    l->nparams = 1;
    l->param[0] = (plast_param){.name = "weight",
                                .count = (size_t)l->in.dim[0] * (size_t)l->in2.dim[0],
                                .fan_in = l->in2.dim[0]};
    return PLAST_OK; /* the stride follows from the shapes: nothing to keep */
}

static int shortcut_stride(const plast_layer *l)
{
    return l->nparams ? find_stride(&l->in, &l->in2) : 0;
}

int plast_add_shortcut_stride(const plast_layer *l)
{
    return shortcut_stride(l);
}

/* col[c, p] = from[c, strided position p] for one sample. */
static void gather(const plast_layer *l, int s, const plast_real *from, plast_real *col)
{
    int cf = l->in2.dim[0], hf = l->in2.dim[1], wf = l->in2.dim[2];
    int h = l->in.dim[1], w = l->in.dim[2];
    for (int c = 0; c < cf; c++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                col[((size_t)c * h + i) * w + j] = from[((size_t)c * hf + i * s) * wf + j * s];
}

static void scatter(const plast_layer *l, int s, const plast_real *col, plast_real *from)
{
    int cf = l->in2.dim[0], hf = l->in2.dim[1], wf = l->in2.dim[2];
    int h = l->in.dim[1], w = l->in.dim[2];
    memset(from, 0, (size_t)cf * hf * wf * sizeof *from);
    for (int c = 0; c < cf; c++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                from[((size_t)c * hf + i * s) * wf + j * s] = col[((size_t)c * h + i) * w + j];
}

static int add_forward2(plast_layer *l, const plast_tensor *const xs[2], plast_tensor *y,
                        const plast_ctx *ctx, plast_err *e)
{
    const plast_tensor *x = xs[0], *from = xs[1];
    memcpy(y->data, x->data, x->size * sizeof *y->data);
    int s = shortcut_stride(l);
    if (!s) {
        for (size_t i = 0; i < y->size; i++)
            y->data[i] += from->data[i];
        return PLAST_OK;
    }
    int batch = plast_tensor_batch(x), c = l->in.dim[0], cf = l->in2.dim[0];
    int hw = l->in.dim[1] * l->in.dim[2];
    size_t fs = plast_shape_size(&l->in2), ys = plast_shape_size(&l->out);
    plast_real *col = plast_mem_alloc(ctx->mem, PLAST_MEM_SCRATCH, (size_t)cf * hw * sizeof *col);
    if (!col)
        return plast_err_set(e, PLAST_E_NOMEM, "add %s: out of memory for the shortcut", l->name);
    for (int n = 0; n < batch; n++) {
        gather(l, s, from->data + n * fs, col);
        plast_gemm(0, 0, c, hw, cf, 1.0f, l->param[0].w, cf, col, hw, 1.0f, y->data + n * ys, hw);
    }
    plast_mem_free(ctx->mem, col);
    return PLAST_OK;
}

static int add_backward2(plast_layer *l, const plast_tensor *const xs[2], const plast_tensor *y,
                         const plast_tensor *dy, plast_tensor *const dxs[2],
                         const plast_ctx *ctx, plast_err *e)
{
    (void)y;
    if (dxs[0])
        memcpy(dxs[0]->data, dy->data, dy->size * sizeof *dy->data);
    int s = shortcut_stride(l);
    if (!s) {
        if (dxs[1])
            memcpy(dxs[1]->data, dy->data, dy->size * sizeof *dy->data);
        return PLAST_OK;
    }
    int batch = plast_tensor_batch(dy), c = l->in.dim[0], cf = l->in2.dim[0];
    int hw = l->in.dim[1] * l->in.dim[2];
    size_t fs = plast_shape_size(&l->in2), ys = plast_shape_size(&l->out);
    plast_real *col = plast_mem_alloc(ctx->mem, PLAST_MEM_SCRATCH, (size_t)cf * hw * sizeof *col);
    if (!col)
        return plast_err_set(e, PLAST_E_NOMEM, "add %s: out of memory for the shortcut", l->name);
    for (int n = 0; n < batch; n++) {
        const plast_real *g = dy->data + n * ys;
        if (!l->frozen) { /* dW += dY col^T */
            gather(l, s, xs[1]->data + n * fs, col);
            plast_gemm(0, 1, c, cf, hw, 1.0f, g, hw, col, hw, 1.0f, l->param[0].g, cf);
        }
        if (dxs[1]) { /* d from = scatter(W^T dY) */
            plast_gemm(1, 0, cf, hw, c, 1.0f, l->param[0].w, cf, g, hw, 0.0f, col, hw);
            scatter(l, s, col, dxs[1]->data + n * fs);
        }
    }
    plast_mem_free(ctx->mem, col);
    return PLAST_OK;
}

static int add_single(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                      const plast_ctx *ctx, plast_err *e)
{
    (void)x, (void)y, (void)ctx;
    return plast_err_set(e, PLAST_E_INVAL, "add %s: needs two inputs (from = NAME)", l->name);
}

static int add_single_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                               const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                               plast_err *e)
{
    (void)x, (void)y, (void)dy, (void)dx, (void)ctx;
    return plast_err_set(e, PLAST_E_INVAL, "add %s: needs two inputs (from = NAME)", l->name);
}

static uint64_t add_flops(const plast_layer *l, int batch)
{
    uint64_t n = plast_shape_size(&l->out);
    if (l->nparams)
        n += 2ull * n * (uint64_t)l->in2.dim[0];
    return n * (uint64_t)batch;
}

const plast_layer_ops plast_layer_add = {
    .size = sizeof(plast_layer_ops),
    .name = "add",
    .settings = add_settings,
    .flags = 0,
    .create = add_create,
    .forward = add_single,
    .backward = add_single_backward,
    .flops = add_flops,
    .forward2 = add_forward2,
    .backward2 = add_backward2,
};
