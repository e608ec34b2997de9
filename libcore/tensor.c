/* tensor.c - shapes and tensors allocated from a plast_mem. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "plast/tensor.h"

size_t plast_shape_size(const plast_shape *s)
{
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= (size_t)s->dim[i];
    return n;
}

int plast_shape_equal(const plast_shape *a, const plast_shape *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dim[i] != b->dim[i])
            return 0;
    return 1;
}

const char *plast_shape_str(const plast_shape *s, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->ndim && used < n; i++) {
        int w = snprintf(buf + used, n - used, i ? "x%d" : "%d", s->dim[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

int plast_tensor_alloc_dims(plast_tensor *t, plast_mem *m, plast_mem_cat cat, int ndim,
                            const int *dims, plast_err *e)
{
    memset(t, 0, sizeof *t);
    if (ndim < 1 || ndim > PLAST_MAX_DIMS)
        return plast_err_set(e, PLAST_E_INVAL, "tensor: %d dimensions, expected 1 to %d", ndim,
                             PLAST_MAX_DIMS);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0 || __builtin_mul_overflow(n, (size_t)dims[i], &n))
            return plast_err_set(e, PLAST_E_INVAL, "tensor: bad or too large shape");
    }
    size_t bytes;
    if (__builtin_mul_overflow(n, sizeof(plast_real), &bytes))
        return plast_err_set(e, PLAST_E_INVAL, "tensor: %zu elements overflow", n);
    plast_real *p = plast_mem_alloc(m, cat, bytes);
    if (!p)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory allocating %zu bytes (%s)", bytes,
                             plast_mem_cat_name(cat));
    t->data = p;
    t->size = n;
    t->ndim = ndim;
    memcpy(t->dim, dims, (size_t)ndim * sizeof *dims);
    t->owner = m;
    return PLAST_OK;
}

int plast_tensor_alloc(plast_tensor *t, plast_mem *m, plast_mem_cat cat, int batch,
                       const plast_shape *shape, plast_err *e)
{
    int dims[PLAST_MAX_DIMS];
    dims[0] = batch;
    for (int i = 0; i < shape->ndim; i++)
        dims[i + 1] = shape->dim[i];
    return plast_tensor_alloc_dims(t, m, cat, shape->ndim + 1, dims, e);
}

void plast_tensor_free(plast_tensor *t)
{
    if (t->owner)
        plast_mem_free(t->owner, t->data);
    memset(t, 0, sizeof *t);
}

plast_tensor plast_tensor_view(plast_real *data, int batch, const plast_shape *shape)
{
    plast_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.ndim = shape->ndim + 1;
    t.dim[0] = batch;
    for (int i = 0; i < shape->ndim; i++)
        t.dim[i + 1] = shape->dim[i];
    t.size = (size_t)batch * plast_shape_size(shape);
    return t;
}

void plast_tensor_zero(plast_tensor *t)
{
    if (t->size)
        memset(t->data, 0, t->size * sizeof *t->data);
}

int plast_tensor_batch(const plast_tensor *t)
{
    return t->dim[0];
}

size_t plast_tensor_sample_size(const plast_tensor *t)
{
    return t->dim[0] ? t->size / (size_t)t->dim[0] : 0;
}
