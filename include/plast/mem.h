/* plast/mem.h - the accounting allocator.
 *
 * Every buffer plast allocates for a model, a rule or a batch comes from a
 * plast_mem with a category, so the live and peak bytes of each category
 * are known at any moment: that is how a rule's memory claim is measured.
 * Counts are of requested bytes (alignment padding excluded), so they equal
 * the analytic counts exactly.  Blocks are 64-byte aligned.
 * A plast_mem is not thread-safe: allocate from one thread. */
#ifndef PLAST_MEM_H
#define PLAST_MEM_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum plast_mem_cat {
    PLAST_MEM_WEIGHTS = 0,   /* trainable parameters */
    PLAST_MEM_GRADIENTS,     /* their gradients */
    PLAST_MEM_OPTIMIZER,     /* optimiser state (momentum, Adam moments) */
    PLAST_MEM_ACTIVATIONS,   /* layer outputs and signals of a batch */
    PLAST_MEM_INPUT,         /* the batch and its targets */
    PLAST_MEM_RULE,          /* rule state: projections, auxiliary buffers */
    PLAST_MEM_SCRATCH,       /* workspaces (GEMM packing, im2col) */
    PLAST_MEM_DATASET,       /* stored data sets (uint8), outside training */
    PLAST_MEM_NCAT
} plast_mem_cat;

typedef struct plast_mem plast_mem;

int plast_mem_create(plast_mem **out, plast_err *e);
void plast_mem_destroy(plast_mem *m); /* NULL is a no-op; frees nothing else */

/* 64-byte aligned block, or NULL when out of memory (or when a failure was
 * injected).  `bytes` 0 returns a valid unique pointer. */
void *plast_mem_alloc(plast_mem *m, plast_mem_cat cat, size_t bytes);
void *plast_mem_calloc(plast_mem *m, plast_mem_cat cat, size_t bytes);
void plast_mem_free(plast_mem *m, void *p); /* NULL is a no-op */

size_t plast_mem_live(const plast_mem *m, plast_mem_cat cat);
size_t plast_mem_peak(const plast_mem *m, plast_mem_cat cat);
size_t plast_mem_live_total(const plast_mem *m);
size_t plast_mem_peak_total(const plast_mem *m);
/* Peak of the sum of the categories in `mask` (bit 1u << cat), tracked
 * since the mask was set or the peaks reset; default mask: activations and
 * input together. */
void plast_mem_watch(plast_mem *m, unsigned mask);
size_t plast_mem_peak_watched(const plast_mem *m);
/* Peaks := live values (start of a phase: training, evaluation). */
void plast_mem_reset_peaks(plast_mem *m);

/* Fault injection: the n-th allocation from now fails (0 = never). */
void plast_mem_fail_at(plast_mem *m, uint64_t n);
uint64_t plast_mem_alloc_count(const plast_mem *m);

const char *plast_mem_cat_name(plast_mem_cat cat); /* "weights", ... */

#ifdef __cplusplus
}
#endif
#endif
