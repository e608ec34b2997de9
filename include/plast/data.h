/* plast/data.h - data sets: IDX (plain or .gz), CSV, synthetic; batches.
 *
 * A data set keeps samples in their stored type (uint8 for IDX images,
 * float for CSV and synthetic data) in the PLAST_MEM_DATASET category and
 * converts one batch at a time: x = stored * scale + shift.  Labels are
 * class indices in [0, classes). */
#ifndef PLAST_DATA_H
#define PLAST_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "mem.h"
#include "rng.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plast_dataset {
    size_t n;                /* samples */
    plast_shape shape;       /* of one sample */
    int classes;             /* 1 + largest label (at least 2); synthetic:
                                the number asked for */
    const uint8_t *u8;       /* n * sample size bytes, or NULL */
    const float *f32;        /* n * sample size floats, or NULL */
    const int32_t *labels;   /* n */
    float scale, shift;      /* normalisation applied per batch */
    /* private */
    plast_mem *mem_;
    void *block_;            /* owned storage; NULL for a view */
} plast_dataset;

/* IDX image file (magic 0x00000803, uint8, [n, rows, cols] -> shape
 * [1, rows, cols]) and IDX label file (0x00000801).  Both are read through
 * zlib, plain or gzip-compressed (the content decides, not the name).
 * scale 1/255, shift 0. */
int plast_dataset_load_idx(plast_dataset **out, const char *images, const char *labels,
                           plast_mem *mem, plast_err *e);
/* CSV: one sample per line, the label in column `label_col` (0-based), the
 * other columns numbers; an optional header line of non-numbers is
 * skipped; shape [columns - 1]; scale 1, shift 0. */
int plast_dataset_load_csv(plast_dataset **out, const char *path, int label_col,
                           plast_mem *mem, plast_err *e);
/* Gaussian blobs: `classes` centres in `features` dimensions, n samples,
 * all drawn from stream (DATA, 0) of seed; linearly separable enough that
 * an MLP reaches ~100%. */
int plast_dataset_synthetic(plast_dataset **out, size_t n, int features, int classes,
                            uint64_t seed, plast_mem *mem, plast_err *e);
void plast_dataset_destroy(plast_dataset *d);

/* Views (no copy) of samples [begin, end) of d; destroy them before d. */
int plast_dataset_slice(plast_dataset **out, const plast_dataset *d, size_t begin,
                        size_t end, plast_err *e);

/* Convert the samples idx[0..n) into x (n * sample size floats) and copy
 * their labels. */
void plast_dataset_gather(const plast_dataset *d, const uint32_t *idx, int n, plast_real *x,
                          int32_t *labels);

/* Ask the CPU to start loading the samples idx[0..n) (indices out of
 * range are skipped): called with the next batch's indices before the
 * current one is trained, it turns that batch's gather from a chain of
 * memory misses into cache hits.  Changes nothing else. */
void plast_dataset_prefetch(const plast_dataset *d, const uint32_t *idx, int n);

/* perm[i] = i, then Fisher-Yates with plast_rng_below (i from n down to 2:
 * k = below(i), swap perm[k] and perm[i - 1]). */
void plast_shuffle(uint32_t *perm, size_t n, plast_rng *r);

#ifdef __cplusplus
}
#endif
#endif
