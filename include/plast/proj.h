/* plast/proj.h - fixed random projections of the label (DRTP, tpSGD).
 *
 * R [classes, n] with entries offset + U(-bound, bound), drawn row by row
 * (class 0 first) from stream (PROJ, block) of the run's seed, so row c starts
 * after c*n draws and can be regenerated alone with plast_rng_advance().
 * Stored as a matrix (rule category) or regenerated per example: both
 * give the same numbers.
 *
 * Broadcast (repeat > 1, plast_proj_init_repeat): a row holds
 * n = entries * repeat values, entry j repeated over positions
 * j*repeat .. j*repeat + repeat - 1, so one entry per channel covers a
 * [C, H, W] map channel-major (tpSGD's conv_target = channel: entries = C,
 * repeat = H*W).  Only [classes, entries] is drawn and stored: row c starts
 * after c*entries draws.  repeat 0 (a zeroed struct) means 1. */
#ifndef PLAST_PROJ_H
#define PLAST_PROJ_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "mem.h"
#include "rng.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plast_proj {
    int classes;
    size_t n;
    float bound;
    plast_rng base;          /* stream at row 0 */
    plast_real *matrix;      /* [classes, n / repeat] or NULL (regenerate) */
    plast_mem *mem;
    float offset;            /* added to every entry (0 for DRTP) */
    int repeat;              /* positions per entry; n is entries * repeat */
} plast_proj;

/* He-uniform bound sqrt(6 / n). */
float plast_proj_he_bound(size_t n);
int plast_proj_init(plast_proj *p, plast_mem *mem, uint64_t seed, uint32_t block,
                    int classes, size_t n, float bound, int store_matrix, plast_err *e);
/* Entries offset + U(-bound, bound): targets centred in an activation's
 * range (tpSGD's target_uniform); plast_proj_init is offset 0. */
int plast_proj_init_offset(plast_proj *p, plast_mem *mem, uint64_t seed, uint32_t block,
                           int classes, size_t n, float offset, float bound, int store_matrix,
                           plast_err *e);
/* The same with each of `entries` values per row repeated over `repeat`
 * consecutive positions (n = entries * repeat; the matrix, if stored, is
 * [classes, entries]).  repeat = 1 is plast_proj_init_offset, bit for
 * bit. */
int plast_proj_init_repeat(plast_proj *p, plast_mem *mem, uint64_t seed, uint32_t block,
                           int classes, size_t entries, int repeat, float offset, float bound,
                           int store_matrix, plast_err *e);
void plast_proj_fini(plast_proj *p);
/* Row c into out[n] (copied from the matrix or regenerated, then
 * broadcast). */
void plast_proj_row(const plast_proj *p, int c, plast_real *out);
/* G[i, :] = R[labels[i], :] * scale for i < batch: the label selects a row,
 * no matrix product. */
void plast_proj_select(const plast_proj *p, const int32_t *labels, int batch, float scale,
                       plast_real *G);

#ifdef __cplusplus
}
#endif
#endif
