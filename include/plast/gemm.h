/* plast/gemm.h - dense linear algebra for layers and rules.
 *
 * C[M,N] = alpha * op(A) * op(B) + beta * C, row-major, op = transpose when
 * the flag is set (A is [M,K] or [K,M]; B is [K,N] or [N,K]).  Each output
 * element is summed in a fixed k order, so results do not depend on the
 * number of threads.  beta 0 ignores C's old contents (NaN included). */
#ifndef PLAST_GEMM_H
#define PLAST_GEMM_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

void plast_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const plast_real *A, int lda, const plast_real *B, int ldb, float beta,
                plast_real *C, int ldc);

#ifdef __cplusplus
}
#endif
#endif
