/* simd.h - marking element-wise loops for vectorisation.
 *
 * PLAST_SIMD before a `for` asks the compiler to vectorise it whatever its
 * cost model says (OpenMP's `omp simd`, honoured whenever the build has
 * OpenMP).  Only for loops whose iterations are independent and contain
 * no reduction: each element then gets the same operations in the same
 * order as the scalar loop, so the bits do not change. */
#ifndef PLAST_SIMD_H
#define PLAST_SIMD_H

#ifdef _OPENMP
#define PLAST_SIMD _Pragma("omp simd")
#else
#define PLAST_SIMD
#endif

#endif
