/* gemm_kernels.h - the kernel paths behind plast_gemm (private).
 *
 * gemm.c owns the blocking, threading and dispatch; a path supplies the
 * register tile (MR x NR), the largest K block and three functions: pack
 * an MR-row panel of op(A), pack an NR-column panel of op(B), and the
 * micro-kernel.  gemm_x86.c holds the AVX2 and AVX-512 paths; each of
 * their functions carries its own target attribute, so the file needs no
 * -m flags and runs nothing the CPU lacks until dispatch picks it. */
#ifndef PLAST_GEMM_KERNELS_H
#define PLAST_GEMM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "plast/gemm.h"

/* A B operand that is read through offsets and never stored:
 * op(B)[k][j] = X[row[k] + col[j]].  A convolution's column matrix is one
 * (row: where kernel tap k sits in the padded input, col: where output
 * pixel j's window starts), so the GEMM packs its panels straight from
 * the input ("implicit im2col"). */
typedef struct gemm_gather {
    const plast_real *X;
    const int32_t *row, *col;
} gemm_gather;

/* The arguments of one plast_gemm call; gather_b, when not NULL, is
 * op(B) (and B, ldb and trans_b are unused). */
typedef struct gemm_job {
    int trans_a, trans_b, M, N, K;
    float alpha, beta;
    const plast_real *A, *B;
    int lda, ldb;
    plast_real *C;
    int ldc;
    const gemm_gather *gather_b;
} gemm_job;

/* How a kernel steps through its panels and writes the tile back.
 * The A panel's k-th column (MR values) starts a_step floats after the
 * (k-1)-th, the B panel's k-th row (NR values) b_step after the (k-1)-th:
 * MR and NR for packed panels, lda and ldb when a kernel reads an
 * operand in place.  Then C = alpha*T when first and beta is 0 (C is
 * never read), C = beta*C + alpha*T when first, C += alpha*T after that. */
typedef struct gemm_store {
    float alpha, beta;
    int first;
    size_t a_step, b_step;
} gemm_store;

/* op(A)[i0 .. i0+mr) x [k0 .. k0+kc), mr <= MR, into one panel dst[p*MR + i],
 * rows mr .. MR-1 zero. */
typedef void gemm_pack_a_fn(const gemm_job *g, int i0, int mr, int k0, int kc,
                            plast_real *dst);
/* op(B)[k0 .. k0+kc) x [j0 .. j0+nr), nr <= NR, into one panel dst[p*NR + j],
 * columns nr .. NR-1 zero. */
typedef void gemm_pack_b_fn(const gemm_job *g, int k0, int kc, int j0, int nr,
                            plast_real *dst);
/* The mr x nr corner of (A panel x B panel), summed over p = 0 .. kc-1 in
 * that order, stored into c (row stride ldc) as st says. */
typedef void gemm_kernel_fn(int kc, const plast_real *a, const plast_real *b, plast_real *c,
                            size_t ldc, int mr, int nr, const gemm_store *st);

typedef struct gemm_path {
    const char *name; /* "portable", "avx2", "avx512": PLAST_GEMM_KERNEL */
    int mr, nr;       /* register tile */
    int kc;           /* largest K block; the blocks fix the summation order */
    gemm_pack_a_fn *pack_a;
    gemm_pack_b_fn *pack_b;
    gemm_kernel_fn *kernel;
    gemm_pack_b_fn *pack_b_gather; /* pack_b for a job with gather_b */
} gemm_path;

/* The widest NR of any path. */
#define GEMM_NR_MAX 32

/* A stretch of a gathered panel row that is one run in X:
 * panel columns [dst, dst + len) come from X[row[k] + src ...]. */
typedef struct gemm_gather_run {
    int dst, len;
    int32_t src;
} gemm_gather_run;

/* Cuts col[0 .. nr) into runs of consecutive offsets, none longer than
 * max_len; returns how many (at most nr). */
int gemm_gather_runs(const int32_t *col, int nr, int max_len, gemm_gather_run *runs);

/* Portable C packing, for any MR and NR (gemm.c). */
void gemm_pack_a_any(const gemm_job *g, int i0, int mr, int k0, int kc, plast_real *dst,
                     int MR);
void gemm_pack_b_any(const gemm_job *g, int k0, int kc, int j0, int nr, plast_real *dst,
                     int NR);
void gemm_pack_b_gather_any(const gemm_job *g, int k0, int kc, int j0, int nr,
                            plast_real *dst, int NR);

/* The x86 paths (gemm_x86.c); NULL members when the compiler cannot
 * build them, so check gemm_path_usable() first. */
extern const gemm_path gemm_path_avx2, gemm_path_avx512;
int gemm_path_usable(const gemm_path *p); /* compiled in and the CPU has it */

/* A B operand packed once for many products with the same B (an rnn's
 * W_hh at every step): exactly the panels plast_gemm would pack, so the
 * products give plast_gemm's bits.  One thread.  Private to libcore; the
 * plast_ prefix only exports them for the tests. */
typedef struct plast_gemm_packed_b {
    const gemm_path *path;
    int N, K;
    plast_real *data;
} plast_gemm_packed_b;

/* op(B) [K, N] packed; -1 (nothing allocated) if out of memory or if B is
 * too large to be packed whole, then call plast_gemm instead. */
int plast_gemm_pack_b_once(plast_gemm_packed_b *pk, int trans_b, int N, int K,
                           const plast_real *B, int ldb);
void plast_gemm_packed_b_free(plast_gemm_packed_b *pk);
/* C = alpha op(A) B + beta C with the packed B, as plast_gemm would. */
void plast_gemm_with_packed_b(const plast_gemm_packed_b *pk, int trans_a, int M, float alpha,
                              const plast_real *A, int lda, float beta, plast_real *C, int ldc);

/* C = alpha op(A) B + beta C with B gathered from X (see gemm_gather):
 * the bits of plast_gemm_mt on the stored B.  kernel names the path, as
 * PLAST_GEMM_KERNEL does, NULL for plast_gemm's; returns 0, or -1 (C
 * untouched) if the path is unknown or missing. */
int plast_gemm_gather_mt(const char *kernel, int threads, int trans_a, int M, int N, int K,
                         float alpha, const plast_real *A, int lda, const plast_real *X,
                         const int32_t *row, const int32_t *col, float beta, plast_real *C,
                         int ldc);

/* Test and benchmark hooks, not in the public headers (the plast_ prefix
 * exports them from the shared library). */

/* The path plast_gemm uses in this process: PLAST_GEMM_KERNEL if set to a
 * path the CPU has, else the best one; decided on the first call. */
const char *plast_gemm_kernel_name(void);

/* plast_gemm_mt on the named path; returns 0, or -1 (C untouched) when the
 * name is unknown or the CPU or the build lacks that path. */
int plast_gemm_kernel_mt(const char *kernel, int threads, int trans_a, int trans_b, int M,
                         int N, int K, float alpha, const plast_real *A, int lda,
                         const plast_real *B, int ldb, float beta, plast_real *C, int ldc);

#endif
