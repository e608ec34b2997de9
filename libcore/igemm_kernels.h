/* igemm_kernels.h - the kernel paths behind plast_igemm_* (private).
 *
 * igemm.c owns the portable path and the dispatch; igemm_x86.c the AVX-VNNI
 * (256-bit) and AVX-512 VNNI paths, each function with its own target
 * attribute so that the file needs no -m flags.  A path computes a whole
 * call (blocking included); every path gives the same C as the portable
 * one, bit for bit: the s8 sums wrap modulo 2^32 in all of them when the
 * header's bounds are exceeded, the s16s8 sums never overflow. */
#ifndef PLAST_IGEMM_KERNELS_H
#define PLAST_IGEMM_KERNELS_H

#include <stdint.h>

#include "plast/igemm.h"

/* The arguments of one plast_igemm_s8 call (sizes checked, M, N, K > 0). */
typedef struct igemm_s8_job {
    int M, N, K;
    const int8_t *A;
    int lda;
    const int8_t *B;
    int ldb;
    int beta;
    int32_t *C;
    int ldc;
} igemm_s8_job;

/* The arguments of one plast_igemm_s16s8 call (sizes checked, M, N, K > 0). */
typedef struct igemm_s16_job {
    int M, N, K;
    const int16_t *A;
    int lda;
    const int8_t *B;
    int ldb;
    int beta;
    int64_t *C;
    int ldc;
} igemm_s16_job;

typedef void igemm_s8_fn(const igemm_s8_job *j);
typedef void igemm_s16_fn(const igemm_s16_job *j);

typedef struct igemm_path {
    const char *name; /* "portable", "avxvnni", "avx512vnni": PLAST_IGEMM_KERNEL */
    igemm_s8_fn *s8;
    igemm_s16_fn *s16;
} igemm_path;

/* The x86 paths (igemm_x86.c); NULL members when the compiler cannot
 * build them, so check igemm_path_usable() first. */
extern const igemm_path igemm_path_avxvnni, igemm_path_avx512vnni;
int igemm_path_usable(const igemm_path *p); /* compiled in and the CPU has it */

/* Test and benchmark hooks, not in the public headers (the plast_ prefix
 * exports them from the shared library).  Internal: no stability promise.
 * plast_igemm_s8 / plast_igemm_s16s8 on the named path ("portable",
 * "avxvnni", "avx512vnni"); return 0, or -1 (C untouched) when the name is
 * unknown or the CPU or the build lacks that path. */
int plast_igemm_s8_with(const char *kernel, int M, int N, int K, const int8_t *A, int lda,
                        const int8_t *B, int ldb, int beta, int32_t *C, int ldc);
int plast_igemm_s16s8_with(const char *kernel, int M, int N, int K, const int16_t *A,
                           int lda, const int8_t *B, int ldb, int beta, int64_t *C, int ldc);

#endif
