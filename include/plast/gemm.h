/* plast/gemm.h - dense linear algebra for layers and rules.
 *
 * C[M,N] = alpha * op(A) * op(B) + beta * C, row-major, op = transpose when
 * the flag is set (A is [M,K] or [K,M]; B is [K,N] or [N,K]).  Each output
 * element is summed in a fixed k order, so results do not depend on the
 * number of threads.  beta 0 ignores C's old contents (NaN included).
 *
 * The kernel is chosen once per process from the CPU (AVX-512, AVX2+FMA,
 * or portable C); PLAST_GEMM_KERNEL=portable|avx2|avx512 forces one the
 * CPU has.  Bits are reproducible for the same binary and kernel whatever
 * the thread count; the AVX2 and AVX-512 kernels give the same bits, the
 * portable one (no FMA) rounds differently. */
#ifndef PLAST_GEMM_H
#define PLAST_GEMM_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

void plast_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const plast_real *A, int lda, const plast_real *B, int ldb, float beta,
                plast_real *C, int ldc);

/* The same on up to `threads` threads (OpenMP; 1 without it, or when
 * `threads` < 2): threads split the rows and columns of C, never K, so C
 * is bit-identical to plast_gemm's for any `threads`, and helper threads
 * use the caller's denormal mode.  Small products use fewer threads. */
void plast_gemm_mt(int threads, int trans_a, int trans_b, int M, int N, int K, float alpha,
                   const plast_real *A, int lda, const plast_real *B, int ldb, float beta,
                   plast_real *C, int ldc);

#ifdef __cplusplus
}
#endif
#endif
