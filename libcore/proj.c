/* proj.c - fixed random label projections shared by DRTP and tpSGD. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "plast/proj.h"

float plast_proj_he_bound(size_t n)
{
    return (float)sqrt(6.0 / (double)n);
}

static void draw_row(plast_rng *r, float offset, float bound, size_t n, plast_real *out)
{
    for (size_t j = 0; j < n; j++)
        out[j] = offset + plast_rng_uniform(r, -bound, bound); /* + 0 is exact */
}

int plast_proj_init(plast_proj *p, plast_mem *mem, uint64_t seed, uint32_t block, int classes,
                    size_t n, float bound, int store_matrix, plast_err *e)
{
    return plast_proj_init_offset(p, mem, seed, block, classes, n, 0.0f, bound, store_matrix, e);
}

int plast_proj_init_offset(plast_proj *p, plast_mem *mem, uint64_t seed, uint32_t block,
                           int classes, size_t n, float offset, float bound, int store_matrix,
                           plast_err *e)
{
    return plast_proj_init_repeat(p, mem, seed, block, classes, n, 1, offset, bound,
                                  store_matrix, e);
}

/* Positions per entry (a zeroed struct has 0: no broadcast). */
static size_t repeat_of(const plast_proj *p)
{
    return p->repeat > 1 ? (size_t)p->repeat : 1;
}

int plast_proj_init_repeat(plast_proj *p, plast_mem *mem, uint64_t seed, uint32_t block,
                           int classes, size_t entries, int repeat, float offset, float bound,
                           int store_matrix, plast_err *e)
{
    memset(p, 0, sizeof *p);
    size_t n;
    if (repeat < 1 || __builtin_mul_overflow(entries, (size_t)repeat, &n))
        return plast_err_set(e, PLAST_E_INVAL,
                             "projection of %zu entries repeated %d times: expected a repeat "
                             "of at least 1 and a row that fits in memory",
                             entries, repeat);
    p->classes = classes;
    p->n = n;
    p->repeat = repeat;
    p->bound = bound;
    p->offset = offset;
    p->mem = mem;
    plast_rng_stream(&p->base, seed, PLAST_STREAM_PROJ, block);
    if (!store_matrix)
        return PLAST_OK;
    size_t count;
    if (__builtin_mul_overflow((size_t)classes, entries, &count) ||
        count > SIZE_MAX / sizeof(plast_real))
        return plast_err_set(e, PLAST_E_INVAL, "projection [%d, %zu] is too large", classes,
                             entries);
    p->matrix = plast_mem_alloc(mem, PLAST_MEM_RULE, count * sizeof(plast_real));
    if (!p->matrix)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory for a [%d, %zu] projection",
                             classes, entries);
    plast_rng r = p->base;
    for (int c = 0; c < classes; c++)
        draw_row(&r, offset, bound, entries, p->matrix + (size_t)c * entries);
    return PLAST_OK;
}

void plast_proj_fini(plast_proj *p)
{
    if (p->matrix)
        plast_mem_free(p->mem, p->matrix);
    p->matrix = NULL;
}

/* Spread the `entries` values at the start of out over out[entries * rep]:
 * from the last entry down, so no entry is overwritten before it is read
 * (entry j moves to j*rep >= j). */
static void broadcast(plast_real *out, size_t entries, size_t rep)
{
    for (size_t j = entries; j-- > 0;) {
        plast_real v = out[j];
        for (size_t i = 0; i < rep; i++)
            out[j * rep + i] = v;
    }
}

void plast_proj_row(const plast_proj *p, int c, plast_real *out)
{
    PLAST_ASSERT(c >= 0 && c < p->classes);
    size_t rep = repeat_of(p), entries = p->n / rep;
    if (p->matrix) {
        memcpy(out, p->matrix + (size_t)c * entries, entries * sizeof *out);
    } else {
        plast_rng r = p->base; /* row c starts c*entries draws into the stream */
        plast_rng_advance(&r, (uint64_t)c * entries);
        draw_row(&r, p->offset, p->bound, entries, out);
    }
    if (rep > 1)
        broadcast(out, entries, rep);
}

void plast_proj_select(const plast_proj *p, const int32_t *labels, int batch, float scale,
                       plast_real *G)
{
    for (int i = 0; i < batch; i++) {
        plast_real *row = G + (size_t)i * p->n;
        plast_proj_row(p, labels[i], row);
        if (scale != 1.0f)
            for (size_t j = 0; j < p->n; j++)
                row[j] *= scale;
    }
}
