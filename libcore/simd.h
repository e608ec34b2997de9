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
#define PLAST_PRAGMA(text) _Pragma(#text)
#else
#define PLAST_SIMD
#define PLAST_PRAGMA(text)
#endif

/* The same for a loop with a reduction whose result cannot depend on the
 * order (integer min, max, and, or): PLAST_SIMD_REDUCTION(min : v). */
#define PLAST_SIMD_REDUCTION(clause) PLAST_PRAGMA(omp simd reduction(clause))

/* PLAST_CLONES before a function compiles it for AVX-512, AVX2 and the
 * base instruction set and picks one at load time (GCC's target_clones,
 * x86-64 ELF only).  For compute-bound element-wise loops whose result
 * cannot depend on the vector width: no reductions, and no fused
 * multiply-add (the build's -ffp-contract=off), so every clone gives the
 * same bits. */
#if defined __x86_64__ && defined __ELF__ && defined __GNUC__ && !defined __clang__
#define PLAST_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PLAST_CLONES
#endif

#endif
