/* plast/tensor.h - contiguous fp32 tensors and shapes.
 *
 * A plast_tensor is a small value: a data pointer plus a row-major shape of
 * up to 4 dimensions (NCHW for images, [batch, features] for dense data).
 * The data belongs to whoever allocated it: plast_tensor_alloc() takes it
 * from a plast_mem under a category and plast_tensor_free() returns it.
 * A tensor whose `owner` is NULL is a view (no free). */
#ifndef PLAST_TENSOR_H
#define PLAST_TENSOR_H

#include <stddef.h>
#include "err.h"
#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef float plast_real; /* the training type; in the plug-in ABI key */

#define PLAST_MAX_DIMS 4

/* The shape of one sample (no batch dimension): [features] or [C, H, W]. */
typedef struct plast_shape {
    int ndim;
    int dim[PLAST_MAX_DIMS - 1];
} plast_shape;

typedef struct plast_tensor {
    plast_real *data;
    size_t size;                /* product of dim[0..ndim) */
    int ndim;
    int dim[PLAST_MAX_DIMS];    /* dim[0] is the batch for activations */
    plast_mem *owner;           /* allocator to free into; NULL = a view */
} plast_tensor;

/* Number of elements in one sample of shape s. */
size_t plast_shape_size(const plast_shape *s);
int plast_shape_equal(const plast_shape *a, const plast_shape *b);
/* "784" or "32x28x28" */
const char *plast_shape_str(const plast_shape *s, char *buf, size_t n);

/* Allocate a [batch, shape...] tensor (uninitialised).  Overflow in the
 * element count is PLAST_E_INVAL; failure leaves *t zeroed. */
int plast_tensor_alloc(plast_tensor *t, plast_mem *m, plast_mem_cat cat, int batch,
                       const plast_shape *shape, plast_err *e);
/* Allocate with explicit dims. */
int plast_tensor_alloc_dims(plast_tensor *t, plast_mem *m, plast_mem_cat cat, int ndim,
                            const int *dims, plast_err *e);
void plast_tensor_free(plast_tensor *t); /* frees owned data, zeroes *t */
/* A view of `data` with the batch + shape of `like`'s batch and `shape`. */
plast_tensor plast_tensor_view(plast_real *data, int batch, const plast_shape *shape);
void plast_tensor_zero(plast_tensor *t);
/* Batch size (dim[0]) and per-sample element count. */
int plast_tensor_batch(const plast_tensor *t);
size_t plast_tensor_sample_size(const plast_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
