/* plast/layer.h - the layer interface.
 *
 * A layer type is a plast_layer_ops table (built in, or from a plug-in);
 * a plast_layer is one instance in a model.  Shapes are per sample; the
 * tensors passed to forward/backward carry the batch as dim[0].
 *
 * Parameters are views into the model's flat weight and gradient arrays:
 * create() declares each parameter's name and count, the model maps
 * param[i].w and param[i].g, then init() fills the weights.
 *
 * backward() ADDS the parameter gradients into param[i].g (unless the layer
 * is frozen) and writes dL/dx into dx when dx is not NULL (a local rule
 * skips it).  Layers flagged PLAST_LAYER_INPLACE accept y == x in forward
 * and dx == dy in backward, and their backward reads only y. */
#ifndef PLAST_LAYER_H
#define PLAST_LAYER_H

#include <stdint.h>
#include "config.h"
#include "err.h"
#include "mem.h"
#include "rng.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLAST_LAYER_MAX_PARAMS 4

typedef struct plast_param {
    const char *name;   /* "weight", "bias": static string */
    size_t count;       /* elements */
    int fan_in;         /* for the default U(+-1/sqrt(fan_in)) init */
    unsigned flags;     /* PLAST_PARAM_BUFFER */
    plast_real *w;      /* view into the model's weights, set by the model */
    plast_real *g;      /* view into the model's gradients; NULL for a buffer */
} plast_param;

/* A buffer is state saved with the model but not trained (batchnorm's
 * running statistics): no gradient, never touched by the optimiser, not
 * initialised by the default init (it starts at zero; init() may set it). */
#define PLAST_PARAM_BUFFER 1u

/* What forward/backward may use besides their tensors. */
typedef struct plast_ctx {
    plast_mem *mem;     /* scratch and saved-state allocations */
    int train;          /* 1 = training mode (dropout, batch statistics) */
    int threads;        /* worker threads the kernels may use */
    uint64_t step;      /* batches trained before this one (dropout masks) */
} plast_ctx;

typedef struct plast_layer_ops plast_layer_ops;

typedef struct plast_layer {
    const plast_layer_ops *ops;
    char name[64];      /* NAME of [layer.NAME] */
    int index;          /* position in the model */
    int block;          /* block it belongs to */
    int frozen;         /* 1 = backward adds no parameter gradient */
    plast_shape in, out;
    int nparams;
    plast_param param[PLAST_LAYER_MAX_PARAMS];
    uint64_t seed;      /* run seed, for layers with their own streams */
    void *priv;         /* the layer type's own state */
    int ninputs;        /* 2 when the section names a second input (`from`) */
    plast_shape in2;    /* shape of the second input */
} plast_layer;

enum {
    PLAST_LAYER_INPLACE = 1u,    /* elementwise: y may alias x; backward needs
                                    only y, and dx may alias dy or y */
    PLAST_LAYER_ACTIVATION = 2u, /* an activation: local rules inject here */
    PLAST_LAYER_VIEW = 4u,       /* output is x reshaped: no copy */
    PLAST_LAYER_READS_Y = 8u,    /* backward reads y: nothing may overwrite it */
    PLAST_LAYER_FOLLOWER = 16u   /* joins the block before it although it has
                                    parameters (batchnorm) */
};

struct plast_layer_ops {
    uint32_t size;                   /* sizeof(plast_layer_ops) when built */
    const char *name;                /* value of `type =` */
    const plast_setting *settings;   /* its keys besides type/input/block */
    unsigned flags;
    /* Read settings, set l->out from l->in, declare parameters; may set
     * l->priv (allocated with malloc, freed by destroy). */
    int (*create)(plast_layer *l, const plast_args *a, plast_err *e);
    /* Fill the weights (param views are mapped); NULL = default init. */
    void (*init)(plast_layer *l, plast_rng *rng);
    int (*forward)(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                   const plast_ctx *ctx, plast_err *e);
    int (*backward)(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                    const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                    plast_err *e);
    void (*destroy)(plast_layer *l);     /* frees priv; NULL = nothing */
    /* ---- optional, NULL = not supported; append only ---- */
    uint64_t (*flops)(const plast_layer *l, int batch); /* forward FLOPs */
    /* Free what forward kept for backward (allocated from ctx->mem in the
     * activations category and held in priv); called when the block run
     * that owns the forward is released, and safe to call twice. */
    void (*release)(plast_layer *l, const plast_ctx *ctx);
    /* Two-input layers (add): used instead of forward/backward when
     * l->ninputs == 2; xs[0] is `input`, xs[1] is `from`; backward writes
     * the gradient of input i into dxs[i] unless dxs[i] is NULL. */
    int (*forward2)(plast_layer *l, const plast_tensor *const xs[2], plast_tensor *y,
                    const plast_ctx *ctx, plast_err *e);
    int (*backward2)(plast_layer *l, const plast_tensor *const xs[2], const plast_tensor *y,
                     const plast_tensor *dy, plast_tensor *const dxs[2], const plast_ctx *ctx,
                     plast_err *e);
};

/* Check that t is [batch, n values per sample]; the error names the
 * layer's type and name and `what` ("input", "output gradient"). */
int plast_layer_check_tensor(const plast_layer *l, const plast_tensor *t, const char *what,
                             int batch, size_t n, plast_err *e);

/* Bytes a forward pass of `batch` samples must move at least: its
 * input(s), its output and its parameters, in fp32 (the memory-traffic
 * side of the FLOP count). */
uint64_t plast_layer_bytes(const plast_layer *l, int batch);
/* FLOPs of a forward pass (0 when the layer does not say). */
uint64_t plast_layer_flops(const plast_layer *l, int batch);

/* Default initialisation: every parameter U(+-1/sqrt(fan_in)). */
void plast_layer_default_init(plast_layer *l, plast_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
