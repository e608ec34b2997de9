/* gemm_x86.c - AVX2+FMA and AVX-512 paths of plast_gemm.
 *
 * Each function names its instruction set in a target attribute, so this
 * file is built with the same flags as the rest (no -m options) and
 * nothing here runs unless gemm.c's dispatch found the CPU features.
 *
 * Micro-kernels: C tile = A panel x B panel with the vector across the
 * columns of the row-major C, an element of A broadcast per row and one
 * fused multiply-add per element and k.
 *   AVX-512: 8 x 32 tile, 16 zmm accumulators (two per row).  Zen 5 does
 *            two zmm FMAs per cycle at 4 cycles latency: 16 chains keep
 *            both pipes busy, and batch sizes (multiples of 8) need no
 *            padded rows.
 *   AVX2:    6 x 16 tile, 12 ymm accumulators, 16 registers in all.
 * Edge tiles run the same loop on zero-padded panels and store through
 * masks, so every element of C sees the same operations wherever it lies,
 * and the same in both paths: AVX2 and AVX-512 give the same bits.
 *
 * Packing copies rows that are already k-major and transposes 8 x 8
 * blocks in ymm registers (16 x 16 in zmm for the AVX-512 path's B
 * panels) where op(A) or op(B) is stored the other way round (rows past
 * the matrix read as zero); a partial panel that would be copied goes
 * through the portable packing instead.  Both paths use
 * K blocks of at most 256: an AVX-512 B panel (256 x 32 floats, 32 KiB)
 * then stays in Zen 5's 48 KiB L1d while A panels stream past it. */
#include "config.h"

#include "gemm_kernels.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TARGET_AVX512 __attribute__((target("avx512f")))

#define Z_MR 8
#define Z_NR 32
#define Y_MR 6
#define Y_NR 16
/* K block of both paths.  Equal blocks and the same FMA per element and
 * k make the two paths give the same bits (a test checks it). */
#define X86_KC 256

/* How a kernel writes a tile back (see gemm_store). */
enum { STORE_SET, STORE_SCALE, STORE_ADD };

static int store_mode(const gemm_store *st)
{
    if (!st->first)
        return STORE_ADD;
    return st->beta == 0.0f ? STORE_SET : STORE_SCALE;
}

/* ---- packing (AVX) ---- */

/* r[i] = column i of the 8 x 8 block whose rows were r[0..7]. */
TARGET_AVX2 static inline void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* One 8 x 8 block: rows src + i*ld (i < rows, zero after) to k-major
 * rows dst + p*width. */
TARGET_AVX2 static inline void transpose_block8(const plast_real *src, size_t ld, int rows,
                                                plast_real *dst, size_t width)
{
    __m256 r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        r[i] = i < rows ? _mm256_loadu_ps(src + (size_t)i * ld) : _mm256_setzero_ps();
    transpose8(r);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        _mm256_storeu_ps(dst + (size_t)i * width, r[i]);
}

/* dst[p*width + i] = src[i*ld + p] for i < rows (zero for rows .. 7),
 * p < kc: rows of a row-major source become k-major columns. */
TARGET_AVX2 static void pack_transposed8(const plast_real *src, size_t ld, int rows, int kc,
                                         plast_real *dst, int width)
{
    int p = 0;
    if (rows >= 8) /* the usual case, with the row test folded away */
        for (; p + 8 <= kc; p += 8)
            transpose_block8(src + p, ld, 8, dst + (size_t)p * (size_t)width, (size_t)width);
    else
        for (; p + 8 <= kc; p += 8)
            transpose_block8(src + p, ld, rows, dst + (size_t)p * (size_t)width,
                             (size_t)width);
    for (; p < kc; p++)
        for (int i = 0; i < 8; i++)
            dst[(size_t)p * (size_t)width + (size_t)i] = i < rows ? src[(size_t)i * ld + (size_t)p]
                                                                  : 0.0f;
}

/* dst[p*width + v] = src[p*ld + v], v < width (a multiple of 8): rows
 * that are already k-major. */
TARGET_AVX2 static void pack_copy(const plast_real *src, size_t ld, int kc, plast_real *dst,
                                  int width)
{
    for (int p = 0; p < kc; p++)
#pragma GCC unroll 4
        for (int v = 0; v < width; v += 8)
            _mm256_storeu_ps(dst + (size_t)p * (size_t)width + (size_t)v,
                             _mm256_loadu_ps(src + (size_t)p * ld + (size_t)v));
}

/* r[i] = column i of the 16 x 16 block whose rows were r[0..15]: the
 * 8 x 8 network of transpose8 with two more steps across 128-bit lanes. */
TARGET_AVX512 static inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    /* lane L of u[4q + c] now holds column 4L + c of rows 4q .. 4q+3 */
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(u[i], u[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(u[i], u[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(u[i + 8], u[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(u[i + 8], u[i + 12], 0xdd);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* pack_transposed8 for 16 rows (zero from `rows` on), 16 k at a time in
 * zmm registers, the k left over 8 at a time. */
TARGET_AVX512 static void pack_transposed16(const plast_real *src, size_t ld, int rows, int kc,
                                            plast_real *dst, int width)
{
    int p = 0;
    for (; p + 16 <= kc; p += 16) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = i < rows ? _mm512_loadu_ps(src + (size_t)i * ld + (size_t)p)
                            : _mm512_setzero_ps();
        transpose16(r);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            _mm512_storeu_ps(dst + (size_t)(p + i) * (size_t)width, r[i]);
    }
    if (p == kc)
        return;
    plast_real *rest = dst + (size_t)p * (size_t)width;
    pack_transposed8(src + p, ld, rows, kc - p, rest, width);
    if (rows > 8)
        pack_transposed8(src + 8 * ld + p, ld, rows - 8, kc - p, rest + 8, width);
    else
        for (int q = 0; q < kc - p; q++)
            _mm256_storeu_ps(rest + (size_t)q * (size_t)width + 8, _mm256_setzero_ps());
}

/* An op(B) panel NR wide (a multiple of 8). */
TARGET_AVX2 static void pack_b_vec(const gemm_job *g, int k0, int kc, int j0, int nr,
                                   plast_real *dst, int NR)
{
    size_t ldb = (size_t)g->ldb;
    if (!g->trans_b) {
        if (nr < NR)
            gemm_pack_b_any(g, k0, kc, j0, nr, dst, NR);
        else
            pack_copy(g->B + (size_t)k0 * ldb + (size_t)j0, ldb, kc, dst, NR);
        return;
    }
    for (int jg = 0; jg < NR; jg += 8) {
        if (jg < nr)
            pack_transposed8(g->B + (size_t)(j0 + jg) * ldb + (size_t)k0, ldb, nr - jg, kc,
                             dst + jg, NR);
        else /* past the last column of op(B): no source rows at all */
            for (int p = 0; p < kc; p++)
                _mm256_storeu_ps(dst + (size_t)p * (size_t)NR + (size_t)jg, _mm256_setzero_ps());
    }
}

/* An op(B) panel 32 wide: transposed 16 rows at a time in zmm registers. */
TARGET_AVX512 static void z_pack_b(const gemm_job *g, int k0, int kc, int j0, int nr,
                                   plast_real *dst)
{
    if (!g->trans_b || nr <= 16) {
        pack_b_vec(g, k0, kc, j0, nr, dst, Z_NR);
        return;
    }
    size_t ldb = (size_t)g->ldb;
    for (int jg = 0; jg < Z_NR; jg += 16)
        pack_transposed16(g->B + (size_t)(j0 + jg) * ldb + (size_t)k0, ldb, nr - jg, kc,
                          dst + jg, Z_NR);
}

TARGET_AVX2 static void y_pack_b(const gemm_job *g, int k0, int kc, int j0, int nr,
                                 plast_real *dst)
{
    pack_b_vec(g, k0, kc, j0, nr, dst, Y_NR);
}

static void y_pack_b_gather(const gemm_job *g, int k0, int kc, int j0, int nr,
                            plast_real *dst)
{
    gemm_pack_b_gather_any(g, k0, kc, j0, nr, dst, Y_NR);
}

/* The runs of one 16-column half of a gathered panel row, as
 * expand-load masks (the run's lanes) and source offsets. */
typedef struct z_half_runs {
    int n;
    __mmask16 lanes[16];
    int32_t src[16];
} z_half_runs;

/* Runs cut at the halves' border, sorted into the two halves. */
static void z_split_runs(const gemm_gather_run *runs, int nrun, z_half_runs half[2])
{
    half[0].n = half[1].n = 0;
    for (int r = 0; r < nrun; r++)
        for (int d = runs[r].dst, end = d + runs[r].len; d < end;) {
            int h = d / 16, stop = end < 16 * (h + 1) ? end : 16 * (h + 1);
            z_half_runs *hr = &half[h];
            hr->lanes[hr->n] = (__mmask16)(((1u << (stop - d)) - 1) << (d - 16 * h));
            hr->src[hr->n++] = runs[r].src + (d - runs[r].dst);
            d = stop;
        }
}

/* 16 columns of a gathered row: each run expand-loaded into its lanes
 * (faster here than whole loads blended in, and reads only the run). */
TARGET_AVX512 static inline __m512 z_gather_half(const plast_real *src, const z_half_runs *hr)
{
    __m512 v = _mm512_setzero_ps();
    for (int r = 0; r < hr->n; r++)
        v = _mm512_mask_expandloadu_ps(v, hr->lanes[r], src + hr->src[r]);
    return v;
}

/* A gathered op(B) panel: each row is assembled in two zmm registers, a
 * run of its columns at a time, then stored whole; columns past nr stay
 * zero. */
TARGET_AVX512 static void z_pack_b_gather(const gemm_job *g, int k0, int kc, int j0, int nr,
                                          plast_real *dst)
{
    gemm_gather_run runs[GEMM_NR_MAX];
    z_half_runs half[2];
    const gemm_gather *gb = g->gather_b;
    z_split_runs(runs, gemm_gather_runs(gb->col + j0, nr, Z_NR, runs), half);
    for (int p = 0; p < kc; p++, dst += Z_NR) {
        const plast_real *src = gb->X + gb->row[k0 + p];
        _mm512_storeu_ps(dst, z_gather_half(src, &half[0]));
        _mm512_storeu_ps(dst + 16, z_gather_half(src, &half[1]));
    }
}

TARGET_AVX2 static void z_pack_a(const gemm_job *g, int i0, int mr, int k0, int kc,
                                 plast_real *dst)
{
    size_t lda = (size_t)g->lda;
    if (!g->trans_a)
        pack_transposed8(g->A + (size_t)i0 * lda + (size_t)k0, lda, mr, kc, dst, Z_MR);
    else if (mr < Z_MR)
        gemm_pack_a_any(g, i0, mr, k0, kc, dst, Z_MR);
    else
        pack_copy(g->A + (size_t)k0 * lda + (size_t)i0, lda, kc, dst, Z_MR);
}

static void y_pack_a(const gemm_job *g, int i0, int mr, int k0, int kc, plast_real *dst)
{
    gemm_pack_a_any(g, i0, mr, k0, kc, dst, Y_MR);
}

/* ---- AVX-512 micro-kernel ---- */

TARGET_AVX512 static inline __mmask16 z_cols(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* One 16-wide piece of a row of C. */
TARGET_AVX512 static inline void z_store(plast_real *c, __mmask16 m, __m512 t, int mode,
                                         __m512 alpha, __m512 beta)
{
    __m512 v;
    if (mode == STORE_SET)
        v = _mm512_mul_ps(alpha, t);
    else if (mode == STORE_SCALE)
        v = _mm512_fmadd_ps(alpha, t, _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(m, c)));
    else
        v = _mm512_fmadd_ps(alpha, t, _mm512_maskz_loadu_ps(m, c));
    _mm512_mask_storeu_ps(c, m, v);
}

TARGET_AVX512 static void z_kernel(int kc, const plast_real *a, const plast_real *b,
                                   plast_real *c, size_t ldc, int mr, int nr,
                                   const gemm_store *st)
{
    __m512 acc[Z_MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < Z_MR; i++) {
        acc[i][0] = _mm512_setzero_ps();
        acc[i][1] = _mm512_setzero_ps();
        if (i < mr) { /* the tile's rows of C, wanted when the sums are done */
            _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (size_t)i * ldc + nr - 1), _MM_HINT_T0);
        }
    }
    size_t a_step = st->a_step, b_step = st->b_step;
    for (int p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
        for (int i = 0; i < Z_MR; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += a_step;
        b += b_step;
    }
    int mode = store_mode(st);
    __m512 alpha = _mm512_set1_ps(st->alpha), beta = _mm512_set1_ps(st->beta);
    __mmask16 m0 = z_cols(nr), m1 = z_cols(nr - 16);
#pragma GCC unroll 8
    for (int i = 0; i < Z_MR; i++)
        if (i < mr) {
            z_store(c + (size_t)i * ldc, m0, acc[i][0], mode, alpha, beta);
            z_store(c + (size_t)i * ldc + 16, m1, acc[i][1], mode, alpha, beta);
        }
}

/* ---- AVX2 micro-kernel ---- */

TARGET_AVX2 static inline __m256i y_cols(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One 8-wide piece of a row of C, n of its columns valid. */
TARGET_AVX2 static inline void y_store(plast_real *c, int n, __m256 t, int mode, __m256 alpha,
                                       __m256 beta)
{
    if (n <= 0)
        return;
    __m256i m = y_cols(n);
    __m256 v, old = _mm256_setzero_ps();
    if (mode != STORE_SET)
        old = n >= 8 ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, m);
    if (mode == STORE_SET)
        v = _mm256_mul_ps(alpha, t);
    else if (mode == STORE_SCALE)
        v = _mm256_fmadd_ps(alpha, t, _mm256_mul_ps(beta, old));
    else
        v = _mm256_fmadd_ps(alpha, t, old);
    if (n >= 8)
        _mm256_storeu_ps(c, v);
    else
        _mm256_maskstore_ps(c, m, v);
}

TARGET_AVX2 static void y_kernel(int kc, const plast_real *a, const plast_real *b,
                                 plast_real *c, size_t ldc, int mr, int nr,
                                 const gemm_store *st)
{
    __m256 acc[Y_MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < Y_MR; i++) {
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
        if (i < mr) { /* the tile's rows of C, wanted when the sums are done */
            _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (size_t)i * ldc + nr - 1), _MM_HINT_T0);
        }
    }
    size_t a_step = st->a_step, b_step = st->b_step;
    for (int p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 8
        for (int i = 0; i < Y_MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += a_step;
        b += b_step;
    }
    int mode = store_mode(st);
    __m256 alpha = _mm256_set1_ps(st->alpha), beta = _mm256_set1_ps(st->beta);
#pragma GCC unroll 8
    for (int i = 0; i < Y_MR; i++)
        if (i < mr) {
            y_store(c + (size_t)i * ldc, nr, acc[i][0], mode, alpha, beta);
            y_store(c + (size_t)i * ldc + 8, nr - 8, acc[i][1], mode, alpha, beta);
        }
}

const gemm_path gemm_path_avx512 = {
    "avx512", Z_MR, Z_NR, X86_KC, z_pack_a, z_pack_b, z_kernel, z_pack_b_gather,
};

const gemm_path gemm_path_avx2 = {
    "avx2", Y_MR, Y_NR, X86_KC, y_pack_a, y_pack_b, y_kernel, y_pack_b_gather,
};

/* AVX-512 packing uses AVX2; every AVX-512F CPU has it, but ask anyway.
 * __builtin_cpu_supports also checks that the OS saves the registers. */
int gemm_path_usable(const gemm_path *p)
{
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (p == &gemm_path_avx512)
        return avx2 && __builtin_cpu_supports("avx512f");
    if (p == &gemm_path_avx2)
        return avx2;
    return 0;
}

#else /* not x86 or not GCC-compatible: only the portable path */

const gemm_path gemm_path_avx512 = {"avx512", 8, 32, 256, NULL, NULL, NULL, NULL};
const gemm_path gemm_path_avx2 = {"avx2", 6, 16, 256, NULL, NULL, NULL, NULL};

int gemm_path_usable(const gemm_path *p)
{
    (void)p;
    return 0;
}
#endif
