/* gemm.c - single-precision matrix product, portable blocked kernel.
 *
 * The usual three-level blocking: op(B) is packed KC x NC at a time into
 * NR-wide column panels, op(A) MC x KC into MR-high row panels, and a
 * register-tiled micro-kernel multiplies one A panel by one B panel.
 * Panels are zero-padded to full MR/NR, so the kernel has no edge cases;
 * only the store of a tile clips to the real M x N.
 *
 * Summation order, which fixes the bits: within a K block of KC terms each
 * element of C is summed serially k = p0, p0+1, ... from zero; the first
 * block stores beta*C + alpha*s (alpha*s when beta is 0), later blocks add
 * alpha*s.  That order depends on KC only, never on MC, NC, the workspace
 * size or (later) the thread count; the vector kernel and the scalar
 * fallback perform the same operations per element, so give equal bits. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "plast/err.h"
#include "plast/gemm.h"

#define GEMM_MR 6    /* rows of a register tile */
#define GEMM_NR 8    /* columns of a register tile: a multiple of 4 */
#define GEMM_KC 256  /* K block: fixes the summation order, do not tune per CPU */
#define GEMM_MC 96   /* rows of A per packed block (fits L2 with KC) */
#define GEMM_NC 2048 /* columns of B per packed panel */

/* A workspace this small fits any stack; used if malloc fails. */
#define GEMM_MIN_MC GEMM_MR
#define GEMM_MIN_NC GEMM_NR

typedef struct gemm_job {
    int trans_a, trans_b, M, N, K;
    float alpha, beta;
    const plast_real *A, *B;
    int lda, ldb;
    plast_real *C;
    int ldc;
} gemm_job;

static int round_up(int x, int m)
{
    return (x + m - 1) / m * m;
}

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

/* ---- packing ---- */

/* op(A)[i0 .. i0+mc) x [p0 .. p0+kc) into MR-row panels, k-major inside. */
static void pack_a(const gemm_job *g, int i0, int mc, int p0, int kc, plast_real *dst)
{
    for (int ir = 0; ir < mc; ir += GEMM_MR) {
        int mr = min_int(GEMM_MR, mc - ir);
        for (int p = 0; p < kc; p++) {
            int k = p0 + p;
            for (int i = 0; i < mr; i++) {
                size_t row = (size_t)(i0 + ir + i);
                dst[i] = g->trans_a ? g->A[(size_t)k * (size_t)g->lda + row]
                                    : g->A[row * (size_t)g->lda + (size_t)k];
            }
            for (int i = mr; i < GEMM_MR; i++)
                dst[i] = 0.0f;
            dst += GEMM_MR;
        }
    }
}

/* op(B)[p0 .. p0+kc) x [j0 .. j0+nc) into NR-column panels, k-major inside. */
static void pack_b(const gemm_job *g, int p0, int kc, int j0, int nc, plast_real *dst)
{
    for (int jr = 0; jr < nc; jr += GEMM_NR) {
        int nr = min_int(GEMM_NR, nc - jr);
        for (int p = 0; p < kc; p++) {
            size_t k = (size_t)(p0 + p);
            if (!g->trans_b) {
                memcpy(dst, g->B + k * (size_t)g->ldb + (size_t)(j0 + jr),
                       (size_t)nr * sizeof *dst);
            } else {
                for (int j = 0; j < nr; j++)
                    dst[j] = g->B[(size_t)(j0 + jr + j) * (size_t)g->ldb + k];
            }
            for (int j = nr; j < GEMM_NR; j++)
                dst[j] = 0.0f;
            dst += GEMM_NR;
        }
    }
}

/* ---- the micro-kernel: tile[MR][NR] = sum over kc of a panel x b panel ---- */

#if defined(__GNUC__)
/* GCC/Clang vector extensions (not intrinsics): at -O2 GCC does not keep a
 * plain float tile in registers, these it does.  Elementwise mul then add,
 * the same operations as the scalar version below. */
typedef float gemm_v4 __attribute__((vector_size(16)));
typedef float gemm_v4u __attribute__((vector_size(16), aligned(4), may_alias));
#define GEMM_NV (GEMM_NR / 4)

static void micro_kernel(int kc, const plast_real *restrict a, const plast_real *restrict b,
                         plast_real *restrict tile)
{
    gemm_v4 c[GEMM_MR][GEMM_NV];
#pragma GCC unroll 16
    for (int i = 0; i < GEMM_MR; i++)
#pragma GCC unroll 16
        for (int v = 0; v < GEMM_NV; v++)
            c[i][v] = (gemm_v4){0.0f, 0.0f, 0.0f, 0.0f};
    for (int p = 0; p < kc; p++) {
        gemm_v4 bv[GEMM_NV];
#pragma GCC unroll 16
        for (int v = 0; v < GEMM_NV; v++)
            bv[v] = *(const gemm_v4u *)(b + 4 * v);
#pragma GCC unroll 16
        for (int i = 0; i < GEMM_MR; i++) {
            gemm_v4 ai = {a[i], a[i], a[i], a[i]};
#pragma GCC unroll 16
            for (int v = 0; v < GEMM_NV; v++)
                c[i][v] += ai * bv[v];
        }
        a += GEMM_MR;
        b += GEMM_NR;
    }
#pragma GCC unroll 16
    for (int i = 0; i < GEMM_MR; i++)
#pragma GCC unroll 16
        for (int v = 0; v < GEMM_NV; v++)
            *(gemm_v4u *)(tile + i * GEMM_NR + 4 * v) = c[i][v];
}
#else
static void micro_kernel(int kc, const plast_real *restrict a, const plast_real *restrict b,
                         plast_real *restrict tile)
{
    plast_real c[GEMM_MR][GEMM_NR] = {{0.0f}};
    for (int p = 0; p < kc; p++) {
        for (int i = 0; i < GEMM_MR; i++)
            for (int j = 0; j < GEMM_NR; j++)
                c[i][j] += a[i] * b[j];
        a += GEMM_MR;
        b += GEMM_NR;
    }
    memcpy(tile, c, sizeof c);
}
#endif

/* Write the valid mr x nr corner of a tile into C at (i, j). */
static void store_tile(const gemm_job *g, int i, int j, int mr, int nr, int first,
                       const plast_real *tile)
{
    for (int r = 0; r < mr; r++) {
        plast_real *c = g->C + (size_t)(i + r) * (size_t)g->ldc + (size_t)j;
        const plast_real *t = tile + r * GEMM_NR;
        if (!first)
            for (int s = 0; s < nr; s++)
                c[s] += g->alpha * t[s];
        else if (g->beta == 0.0f) /* C may hold NaN: never read it */
            for (int s = 0; s < nr; s++)
                c[s] = g->alpha * t[s];
        else
            for (int s = 0; s < nr; s++)
                c[s] = g->beta * c[s] + g->alpha * t[s];
    }
}

/* Packed A block [mc x kc] times packed B panel [kc x nc] into C. */
static void macro_kernel(const gemm_job *g, int i0, int mc, int j0, int nc, int kc, int first,
                         const plast_real *pa, const plast_real *pb)
{
    plast_real tile[GEMM_MR * GEMM_NR];
    for (int jr = 0; jr < nc; jr += GEMM_NR) {
        const plast_real *b = pb + (size_t)jr * (size_t)kc;
        int nr = min_int(GEMM_NR, nc - jr);
        for (int ir = 0; ir < mc; ir += GEMM_MR) {
            micro_kernel(kc, pa + (size_t)ir * (size_t)kc, b, tile);
            store_tile(g, i0 + ir, j0 + jr, min_int(GEMM_MR, mc - ir), nr, first, tile);
        }
    }
}

/* The blocked product with packing buffers for mc_max x KC and KC x nc_max. */
static void gemm_blocked(const gemm_job *g, int mc_max, int nc_max, plast_real *pa,
                         plast_real *pb)
{
    for (int j0 = 0; j0 < g->N; j0 += nc_max) {
        int nc = min_int(nc_max, g->N - j0);
        for (int p0 = 0; p0 < g->K; p0 += GEMM_KC) {
            int kc = min_int(GEMM_KC, g->K - p0);
            pack_b(g, p0, kc, j0, nc, pb);
            for (int i0 = 0; i0 < g->M; i0 += mc_max) {
                int mc = min_int(mc_max, g->M - i0);
                pack_a(g, i0, mc, p0, kc, pa);
                macro_kernel(g, i0, mc, j0, nc, kc, p0 == 0, pa, pb);
            }
        }
    }
}

/* C = beta * C when there is nothing to multiply (K 0 or alpha 0). */
static void scale_c(const gemm_job *g)
{
    for (int i = 0; i < g->M; i++) {
        plast_real *c = g->C + (size_t)i * (size_t)g->ldc;
        for (int j = 0; j < g->N; j++)
            c[j] = g->beta == 0.0f ? 0.0f : g->beta * c[j];
    }
}

void plast_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const plast_real *A, int lda, const plast_real *B, int ldb, float beta,
                plast_real *C, int ldc)
{
    PLAST_ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0)
        return;
    PLAST_ASSERT(ldc >= N);
    gemm_job g = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, C, ldc};
    if (K == 0 || alpha == 0.0f) {
        scale_c(&g);
        return;
    }
    PLAST_ASSERT(lda >= (trans_a ? M : K));
    PLAST_ASSERT(ldb >= (trans_b ? K : N));

    int kc = min_int(GEMM_KC, K);
    int mc = min_int(GEMM_MC, round_up(M, GEMM_MR));
    int nc = min_int(GEMM_NC, round_up(N, GEMM_NR));
    size_t na = (size_t)mc * (size_t)kc, nb = (size_t)kc * (size_t)nc;
    plast_real *work = malloc((na + nb) * sizeof *work);
    if (work) {
        gemm_blocked(&g, mc, nc, work, work + na);
        free(work);
    } else {
        /* Smaller blocks, same KC: the same bits, only slower. */
        plast_real pa[GEMM_MIN_MC * GEMM_KC], pb[GEMM_KC * GEMM_MIN_NC];
        gemm_blocked(&g, GEMM_MIN_MC, GEMM_MIN_NC, pa, pb);
    }
}
