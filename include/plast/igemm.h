/* plast/igemm.h - integer matrix products for the fixed-point engine.
 *
 * C[m][n] = sum_k A[m][k] * B[n][k]: both operands are K-contiguous (A is
 * the weights [M,K], B the activations [N,K]), the layout of a dense
 * layer's forward and of conv2d after im2col.  Results are exact: integer
 * sums have one value whatever the kernel, blocking or thread count.
 *
 * - s8:    int8 x int8, int32 accumulators (|A|,|B| <= 127 keeps any
 *          K < 2^17 exact; -128 is allowed in B).
 * - s16s8: int16 weights x int8 activations; int32 partial sums over
 *          chunks of at most PLAST_IGEMM_S16_CHUNK products (cannot
 *          overflow), added into int64 across chunks.
 *
 * Past the s8 bound the int32 sums wrap modulo 2^32, the same in every
 * kernel.
 *
 * The kernel is chosen once per process from CPUID (AVX-512 VNNI, AVX-VNNI
 * or portable C); PLAST_IGEMM_KERNEL=portable|avxvnni|avx512vnni forces
 * one the CPU has (a name it lacks is ignored).  beta 0 overwrites C (never
 * read), beta 1 adds into it.  Row strides in elements: lda >= K,
 * ldb >= K, ldc >= N; entries past K or N are neither read nor written.
 * M, N or K may be 0 (K 0: C = beta * C).  Programmer errors (negative
 * sizes, short strides, beta not 0 or 1) abort through PLAST_ASSERT.
 * No allocation, no global state: safe to call from several threads on
 * distinct C; one call runs on the calling thread. */
#ifndef PLAST_IGEMM_H
#define PLAST_IGEMM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PLAST_IGEMM_S16_CHUNK 256

void plast_igemm_s8(int M, int N, int K, const int8_t *A, int lda, const int8_t *B, int ldb,
                    int beta, int32_t *C, int ldc);
void plast_igemm_s16s8(int M, int N, int K, const int16_t *A, int lda, const int8_t *B,
                       int ldb, int beta, int64_t *C, int ldc);

/* Name of the kernel in use: "avx512vnni", "avxvnni" or "portable". */
const char *plast_igemm_kernel(void);

#ifdef __cplusplus
}
#endif
#endif
