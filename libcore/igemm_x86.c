/* igemm_x86.c - AVX-VNNI (256-bit) and AVX-512 VNNI paths of plast_igemm_*.
 *
 * Each function names its instruction set in a target attribute, so this
 * file is built with the same flags as the rest (no -m options) and
 * nothing here runs unless igemm.c's dispatch found the CPU features.
 *
 * Layout.  C[m][n] is row-major, so the vector runs across n: a micro-kernel
 * keeps an MR x NR tile of int32 sums in registers, broadcasts 4 bytes of a
 * row of A (k .. k+3, read in place: A is K-contiguous) and multiplies them
 * with a packed panel of B holding, for each group of 4 k, the 4 bytes of
 * NR columns side by side (one dword per column): one vpdpbusd per row and
 * vector of the tile.  The AVX-512 kernels take the broadcast as an
 * embedded {1to16} memory operand.  s16s8 packs B widened to int16, pairs
 * of k per dword, for vpdpwssd.
 *
 * Signs.  vpdpbusd multiplies unsigned bytes (its register operand, the
 * panel) by signed ones (the broadcast, A).  The panel holds B + 128
 * (0 .. 255) and the sums start from -128 * sum_k A[m][k] (the row sums of
 * A, computed once per call and block of rows), so that the tile ends at
 * sum_k A B.  Nothing saturates: vpdpbusd and vpdpwssd wrap modulo 2^32, so
 * the result is the portable one bit for bit even past the header's
 * bounds.  Padding (k past K, columns past N) is 0 in the panel, which adds
 * 0 whatever A holds there; A is never read past K (the last group of 4
 * is assembled byte by byte).
 *
 * s16s8: |A B| <= 2^22 per product, so int32 sums over 256 k (2^30) cannot
 * overflow; the kernel adds them into C (int64) every 256 k.
 *
 * Blocking.  A block of at most IG_MCHUNK rows of A (its row sums on the
 * stack), then NR columns of B at a time, packed into a stack panel of at
 * most IG_PANEL_BYTES (K in blocks when longer; blocks after the first add
 * into C), then the rows of the block in tiles of at most MR rows, split
 * evenly.  The panel stays in L1 while the rows of A stream from L2. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "igemm_kernels.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#include <immintrin.h>

#define TARGET_Z __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define TARGET_Y __attribute__((target("avx2,avxvnni")))
#define INLINE static inline __attribute__((always_inline))

/* The multiply-adds, in place.  GCC 12 copies the sums to and from other
 * registers (and the stack) around the vpdpbusd/vpdpwssd intrinsics, whose
 * accumulator is tied to the result; an asm operand "+v" keeps each sum in
 * one register, and takes the AVX-512 broadcast from memory ({1to16}).
 * The dword read through p: a type that may alias the int8/int16 rows. */
typedef int32_t ig_dword __attribute__((may_alias));
#define Z_DPBUSD_BCAST(acc, b, p)                                                          \
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(b), "m"(*(const ig_dword *)(p)))
#define Z_DPWSSD_BCAST(acc, b, p)                                                          \
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(b), "m"(*(const ig_dword *)(p)))
/* VEX encodings (AVX-VNNI), registers 0-15 only */
#define Y_DPBUSD(acc, b, a) __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(b), "x"(a))
#define Y_DPWSSD(acc, b, a) __asm__("%{vex%} vpdpwssd %2, %1, %0" : "+x"(acc) : "x"(b), "x"(a))

/* Rows of A whose row sums are kept at once. */
#define IG_MCHUNK 256
/* The packed B panel, on the stack: fits L1 with room for the A rows. */
#define IG_PANEL_BYTES 32768
/* Packing writes whole blocks of up to 16 dword groups: room past the
 * last group for the rest of a block (16 groups of 32 columns). */
#define IG_PANEL_SLACK (16 * 32 * 4)

/* AVX-512: 12 x 32 tile (24 zmm sums); AVX-VNNI: 6 x 16 (12 ymm). */
#define Z_MR 12
#define Z_NV 2
#define Z_NR (16 * Z_NV)
#define Y_MR 6
#define Y_NV 2
#define Y_NR (8 * Y_NV)

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

static int div_up(int x, int m)
{
    return (x + m - 1) / m;
}

/* 4 bytes at p, as the dword a broadcast would read. */
INLINE int32_t load32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The bytes [0, n) at p (n < 4) as a dword, zero above: the last group of
 * a row of A without reading past it. */
static int32_t tail32(const void *p, int n)
{
    uint8_t b[4] = {0, 0, 0, 0};
    memcpy(b, p, (size_t)n);
    return load32(b);
}

/* How a kernel starts its sums (first K block: the correction, plus C
 * when beta is 1; later blocks: C). */
enum { INIT_CORR, INIT_C_CORR, INIT_C };

/* ---- the driver (plain C; calls one path's functions) ---- */

typedef struct s8_impl {
    int mr, nr;
    /* corr[i] = -128 * sum_k a[i*lda + k], modulo 2^32 */
    void (*rowsum)(const int8_t *a, size_t lda, int rows, int K, int32_t *corr);
    /* columns [0, nr) of B (k in [0, kc)) into a panel NR wide */
    void (*pack)(const int8_t *b, size_t ldb, int nr, int kc, uint8_t *dst);
    /* an mr x nr tile of C from rows of A and a panel */
    void (*kernel)(int mr, int kc, const int8_t *a, size_t lda, const uint8_t *panel,
                   int32_t *c, size_t ldc, int nr, int mode, const int32_t *corr);
} s8_impl;

typedef struct s16_impl {
    int mr, nr;
    void (*pack)(const int8_t *b, size_t ldb, int nr, int kc, int16_t *dst);
    /* store: the first 256 k overwrite C (beta 0, first K block) */
    void (*kernel)(int mr, int kc, const int16_t *a, size_t lda, const int16_t *panel,
                   int64_t *c, size_t ldc, int nr, int store);
} s16_impl;

/* K in nearly equal blocks of at most kc_max, each a multiple of unit
 * (but the last): returns the block length. */
static int k_block(int K, int kc_max, int unit)
{
    int nkb = div_up(K, kc_max);
    return div_up(div_up(K, nkb), unit) * unit;
}

static void s8_drive(const igemm_s8_job *g, const s8_impl *o)
{
    _Alignas(64) uint8_t panel[IG_PANEL_BYTES + IG_PANEL_SLACK];
    int32_t corr[IG_MCHUNK];
    size_t lda = (size_t)g->lda, ldb = (size_t)g->ldb, ldc = (size_t)g->ldc;
    int klen = k_block(g->K, IG_PANEL_BYTES / o->nr / 4 * 4, 4);
    for (int m0 = 0; m0 < g->M; m0 += IG_MCHUNK) {
        int rows = min_int(IG_MCHUNK, g->M - m0), ntiles = div_up(rows, o->mr);
        const int8_t *a = g->A + (size_t)m0 * lda;
        o->rowsum(a, lda, rows, g->K, corr);
        for (int n0 = 0; n0 < g->N; n0 += o->nr) {
            int nr = min_int(o->nr, g->N - n0);
            for (int k0 = 0; k0 < g->K; k0 += klen) {
                int kc = min_int(klen, g->K - k0);
                int mode = k0 ? INIT_C : g->beta ? INIT_C_CORR : INIT_CORR;
                o->pack(g->B + (size_t)n0 * ldb + (size_t)k0, ldb, nr, kc, panel);
                for (int t = 0; t < ntiles; t++) {
                    int i0 = rows * t / ntiles, i1 = rows * (t + 1) / ntiles;
                    o->kernel(i1 - i0, kc, a + (size_t)i0 * lda + (size_t)k0, lda, panel,
                              g->C + (size_t)(m0 + i0) * ldc + (size_t)n0, ldc, nr, mode,
                              corr + i0);
                }
            }
        }
    }
}

static void s16_drive(const igemm_s16_job *g, const s16_impl *o)
{
    _Alignas(64) int16_t panel[(IG_PANEL_BYTES + IG_PANEL_SLACK) / sizeof(int16_t)];
    size_t lda = (size_t)g->lda, ldb = (size_t)g->ldb, ldc = (size_t)g->ldc;
    int kc_max = IG_PANEL_BYTES / (int)sizeof(int16_t) / o->nr;
    int klen = k_block(g->K, max_int(kc_max / PLAST_IGEMM_S16_CHUNK, 1) * PLAST_IGEMM_S16_CHUNK,
                       PLAST_IGEMM_S16_CHUNK);
    klen = min_int(klen, kc_max);
    for (int m0 = 0; m0 < g->M; m0 += IG_MCHUNK) {
        int rows = min_int(IG_MCHUNK, g->M - m0), ntiles = div_up(rows, o->mr);
        const int16_t *a = g->A + (size_t)m0 * lda;
        for (int n0 = 0; n0 < g->N; n0 += o->nr) {
            int nr = min_int(o->nr, g->N - n0);
            for (int k0 = 0; k0 < g->K; k0 += klen) {
                int kc = min_int(klen, g->K - k0);
                o->pack(g->B + (size_t)n0 * ldb + (size_t)k0, ldb, nr, kc, panel);
                for (int t = 0; t < ntiles; t++) {
                    int i0 = rows * t / ntiles, i1 = rows * (t + 1) / ntiles;
                    o->kernel(i1 - i0, kc, a + (size_t)i0 * lda + (size_t)k0, lda, panel,
                              g->C + (size_t)(m0 + i0) * ldc + (size_t)n0, ldc, nr,
                              k0 == 0 && !g->beta);
                }
            }
        }
    }
}

/* ---- AVX-512 VNNI ---- */

/* r[i] = dword column i of the 16 x 16 block whose rows were r[0..15]. */
TARGET_Z INLINE void z_transpose16(__m512i r[16])
{
    __m512i t[16], u[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* lane L of u[4q + c] now holds column 4L + c of rows 4q .. 4q+3 */
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(u[i], u[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(u[i], u[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(u[i + 8], u[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(u[i + 8], u[i + 12], 0xdd);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* The low n bits set (n <= 64). */
static uint64_t low_bits(int n)
{
    return n >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << n) - 1;
}

TARGET_Z static void z_rowsum(const int8_t *a, size_t lda, int rows, int K, int32_t *corr)
{
    const __m512i ones = _mm512_set1_epi8(1);
    for (int i = 0; i < rows; i++, a += lda) {
        __m512i s = _mm512_setzero_si512();
        int k = 0;
        for (; k + 64 <= K; k += 64)
            s = _mm512_dpbusd_epi32(s, ones, _mm512_loadu_si512(a + k));
        if (k < K)
            s = _mm512_dpbusd_epi32(s, ones, _mm512_maskz_loadu_epi8(low_bits(K - k), a + k));
        corr[i] = (int32_t)(0u - 128u * (uint32_t)_mm512_reduce_add_epi32(s));
    }
}

/* Packing B into panels.  A block of 16 columns (rows of B) and up to 16
 * dword groups is loaded a row per register and transposed so that each
 * register holds one group of the 16 columns: 16 x 16 dwords in zmm
 * registers; the last groups of a row, when at most 8 or 4 are left, as 16
 * rows of 8 dwords (two rows per zmm) or of 4 (four rows per zmm), which
 * takes fewer shuffles per group than a mostly empty 16 x 16 block (conv2d
 * has K = 9 * channels, rarely a multiple of 64).  Every block stores all
 * its groups (zero past the data: the panel has IG_PANEL_SLACK). */

/* Qword indices for z_transpose16x8: lane 0 of a, lane 0 of b, lane 2 of
 * a, lane 2 of b (and with 1 and 3 for the second half). */
#define Z_LANES_02 _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13)
#define Z_LANES_13 _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15)

/* 8 dword groups of 16 rows: r[i] holds row i (low 256 bits) and row
 * i + 8 (high); on return r[g] is group g of rows 0 .. 15. */
TARGET_Z INLINE void z_transpose16x8(__m512i r[8])
{
    __m512i t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* 128-bit lane L of u[c] (and u[4 + c]): group 4(L mod 2) + c of rows
     * 0-3 (4-7), of rows 8-11 (12-15) in the high half */
#pragma GCC unroll 8
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_permutex2var_epi64(u[i], Z_LANES_02, u[i + 4]);
        r[i + 4] = _mm512_permutex2var_epi64(u[i], Z_LANES_13, u[i + 4]);
    }
}

/* 4 dword groups of 16 rows: lane L of r[i] holds row 4L + i; on return
 * r[g] is group g of rows 0 .. 15. */
TARGET_Z INLINE void z_transpose16x4(__m512i r[4])
{
    __m512i t0 = _mm512_unpacklo_epi32(r[0], r[1]), t1 = _mm512_unpackhi_epi32(r[0], r[1]);
    __m512i t2 = _mm512_unpacklo_epi32(r[2], r[3]), t3 = _mm512_unpackhi_epi32(r[2], r[3]);
    r[0] = _mm512_unpacklo_epi64(t0, t2);
    r[1] = _mm512_unpackhi_epi64(t0, t2);
    r[2] = _mm512_unpacklo_epi64(t1, t3);
    r[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* n transposed dword groups of one block into a panel (Z_NR dwords a group). */
TARGET_Z INLINE void z_store_groups(const __m512i *r, int n, void *dst)
{
#pragma GCC unroll 16
    for (int g = 0; g < n; g++)
        _mm512_store_si512((char *)dst + (size_t)g * Z_NR * 4, r[g]);
}

/* Bytes [0, kb) of a row of B plus 128 (kb <= 64; 0 past kb). */
TARGET_Z INLINE __m512i z_row_s8_64(const int8_t *p, int kb)
{
    __mmask64 km = low_bits(kb);
    return _mm512_maskz_add_epi8(km, _mm512_maskz_loadu_epi8(km, p),
                                 _mm512_set1_epi8((char)0x80));
}

TARGET_Z INLINE __m256i z_row_s8_32(const int8_t *p, int kb)
{
    __mmask32 km = (__mmask32)low_bits(kb);
    return _mm256_maskz_add_epi8(km, _mm256_maskz_loadu_epi8(km, p),
                                 _mm256_set1_epi8((char)0x80));
}

TARGET_Z INLINE __m128i z_row_s8_16(const int8_t *p, int kb)
{
    __mmask16 km = (__mmask16)low_bits(kb);
    return _mm_maskz_add_epi8(km, _mm_maskz_loadu_epi8(km, p), _mm_set1_epi8((char)0x80));
}

/* The same for s16s8: kb bytes widened to int16 (kb <= 32, 16, 8). */
TARGET_Z INLINE __m512i z_row_s16_64(const int8_t *p, int kb)
{
    return _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8((__mmask32)low_bits(kb), p));
}

TARGET_Z INLINE __m256i z_row_s16_32(const int8_t *p, int kb)
{
    return _mm256_cvtepi8_epi16(_mm_maskz_loadu_epi8((__mmask16)low_bits(kb), p));
}

TARGET_Z INLINE __m128i z_row_s16_16(const int8_t *p, int kb)
{
    return _mm_cvtepi8_epi16(_mm_maskz_loadu_epi8((__mmask16)low_bits(kb), p));
}

/* A row of B for a block of 16, 8 or 4 dword groups; s16: widened. */
TARGET_Z INLINE __m512i z_row64(const int8_t *p, int kb, const int s16)
{
    return s16 ? z_row_s16_64(p, kb) : z_row_s8_64(p, kb);
}

TARGET_Z INLINE __m256i z_row32(const int8_t *p, int kb, const int s16)
{
    return s16 ? z_row_s16_32(p, kb) : z_row_s8_32(p, kb);
}

TARGET_Z INLINE __m128i z_row16(const int8_t *p, int kb, const int s16)
{
    return s16 ? z_row_s16_16(p, kb) : z_row_s8_16(p, kb);
}

/* One block of 16 columns x 16, 8 or 4 dword groups into dst: kb bytes
 * of each row from p, rows past `rows` zero. */
TARGET_Z INLINE void z_pack_block16(const int8_t *p, size_t ldb, int rows, int kb, void *dst,
                                    const int s16)
{
    __m512i r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        r[i] = i < rows ? z_row64(p + (size_t)i * ldb, kb, s16) : _mm512_setzero_si512();
    z_transpose16(r);
    z_store_groups(r, 16, dst);
}

TARGET_Z INLINE void z_pack_block8(const int8_t *p, size_t ldb, int rows, int kb, void *dst,
                                   const int s16)
{
    __m512i r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        __m256i lo = i < rows ? z_row32(p + (size_t)i * ldb, kb, s16) : _mm256_setzero_si256();
        __m256i hi = i + 8 < rows ? z_row32(p + (size_t)(i + 8) * ldb, kb, s16)
                                  : _mm256_setzero_si256();
        r[i] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    z_transpose16x8(r);
    z_store_groups(r, 8, dst);
}

TARGET_Z INLINE void z_pack_block4(const int8_t *p, size_t ldb, int rows, int kb, void *dst,
                                   const int s16)
{
    __m512i r[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m128i q[4];
#pragma GCC unroll 4
        for (int l = 0; l < 4; l++)
            q[l] = 4 * l + i < rows ? z_row16(p + (size_t)(4 * l + i) * ldb, kb, s16)
                                    : _mm_setzero_si128();
        __m512i v = _mm512_castsi128_si512(q[0]);
        v = _mm512_inserti32x4(v, q[1], 1);
        v = _mm512_inserti32x4(v, q[2], 2);
        r[i] = _mm512_inserti32x4(v, q[3], 3);
    }
    z_transpose16x4(r);
    z_store_groups(r, 4, dst);
}

/* Columns [jb, jb + 16) of a panel, dword groups of `unit` bytes of B
 * (4 for s8, 2 widened for s16), kc bytes a row. */
TARGET_Z INLINE void z_pack_columns(const int8_t *b, size_t ldb, int rows, int kc, char *dst,
                                    const int s16)
{
    int unit = s16 ? 2 : 4, groups = div_up(kc, unit);
    for (int g = 0; g < groups;) {
        int k0 = unit * g;
        const int8_t *p = b + k0;
        char *d = dst + (size_t)g * Z_NR * 4;
        if (groups - g > 8) {
            z_pack_block16(p, ldb, rows, min_int(16 * unit, kc - k0), d, s16);
            g += 16;
        } else if (groups - g > 4) {
            z_pack_block8(p, ldb, rows, min_int(8 * unit, kc - k0), d, s16);
            g += 8;
        } else {
            z_pack_block4(p, ldb, rows, min_int(4 * unit, kc - k0), d, s16);
            g += 4;
        }
    }
}

/* Panel of Z_NR columns: dword (g, j) = bytes 4g .. 4g+3 of column j, +128. */
TARGET_Z static void z_pack_s8(const int8_t *b, size_t ldb, int nr, int kc, uint8_t *dst)
{
    for (int jb = 0; jb < Z_NR; jb += 16)
        z_pack_columns(b + (size_t)jb * ldb, ldb, min_int(max_int(nr - jb, 0), 16), kc,
                       (char *)dst + (size_t)jb * 4, 0);
}

/* Panel of Z_NR columns: dword (p, j) = B[j][2p], B[j][2p+1] as int16. */
TARGET_Z static void z_pack_s16(const int8_t *b, size_t ldb, int nr, int kc, int16_t *dst)
{
    for (int jb = 0; jb < Z_NR; jb += 16)
        z_pack_columns(b + (size_t)jb * ldb, ldb, min_int(max_int(nr - jb, 0), 16), kc,
                       (char *)dst + (size_t)jb * 4, 1);
}

/* Column masks of a tile nr wide, 16 per vector. */
TARGET_Z INLINE void z_col_masks(int nr, __mmask16 m[Z_NV])
{
#pragma GCC unroll 4
    for (int v = 0; v < Z_NV; v++)
        m[v] = (__mmask16)low_bits(min_int(max_int(nr - 16 * v, 0), 16));
}

/* The s8 tile, for a constant mr once inlined. */
TARGET_Z INLINE void z_tile_s8(const int mr, int kc, const int8_t *a, size_t lda,
                               const uint8_t *panel, int32_t *c, size_t ldc, int nr, int mode,
                               const int32_t *corr)
{
    __m512i acc[Z_MR][Z_NV];
    __mmask16 cm[Z_NV];
    z_col_masks(nr, cm);
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < Z_NV; v++) {
            __m512i c0 = mode == INIT_CORR ? _mm512_setzero_si512()
                                           : _mm512_maskz_loadu_epi32(cm[v], c + i * ldc + 16 * v);
            acc[i][v] = mode == INIT_C ? c0 : _mm512_add_epi32(c0, _mm512_set1_epi32(corr[i]));
        }
    int groups = kc / 4;
    const uint8_t *b = panel;
    for (int p = 0; p < groups; p++, b += Z_NR * 4) {
        __m512i bv[Z_NV];
#pragma GCC unroll 4
        for (int v = 0; v < Z_NV; v++)
            bv[v] = _mm512_load_si512(b + 64 * v);
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++) {
            const int8_t *ap = a + i * lda + 4 * (size_t)p;
#pragma GCC unroll 4
            for (int v = 0; v < Z_NV; v++)
                Z_DPBUSD_BCAST(acc[i][v], bv[v], ap);
        }
    }
    if (kc % 4) {
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++) {
            int32_t at = tail32(a + i * lda + 4 * (size_t)groups, kc % 4);
#pragma GCC unroll 4
            for (int v = 0; v < Z_NV; v++)
                Z_DPBUSD_BCAST(acc[i][v], _mm512_load_si512(b + 64 * v), &at);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < Z_NV; v++)
            _mm512_mask_storeu_epi32(c + i * ldc + 16 * v, cm[v], acc[i][v]);
}

/* One function per tile height: in one function GCC's register
 * allocator spills the sums of the tall tiles. */
#define Z_S8(R)                                                                            \
    TARGET_Z __attribute__((noinline)) static void z_s8_##R(                               \
        int kc, const int8_t *a, size_t lda, const uint8_t *panel, int32_t *c, size_t ldc, \
        int nr, int mode, const int32_t *corr)                                             \
    {                                                                                      \
        z_tile_s8(R, kc, a, lda, panel, c, ldc, nr, mode, corr);                           \
    }
Z_S8(1) Z_S8(2) Z_S8(3) Z_S8(4) Z_S8(5) Z_S8(6) Z_S8(7) Z_S8(8) Z_S8(9) Z_S8(10) Z_S8(11) Z_S8(12)
#undef Z_S8

static void z_kernel_s8(int mr, int kc, const int8_t *a, size_t lda, const uint8_t *panel,
                        int32_t *c, size_t ldc, int nr, int mode, const int32_t *corr)
{
    static void (*const tile[Z_MR])(int, const int8_t *, size_t, const uint8_t *, int32_t *,
                                    size_t, int, int, const int32_t *) = {
        z_s8_1, z_s8_2, z_s8_3, z_s8_4, z_s8_5, z_s8_6,
        z_s8_7, z_s8_8, z_s8_9, z_s8_10, z_s8_11, z_s8_12,
    };
    tile[mr - 1](kc, a, lda, panel, c, ldc, nr, mode, corr);
}

/* C (int64, masked to nr columns) = or += the int32 sums of one row. */
TARGET_Z INLINE void z_flush_row(int64_t *c, const __m512i acc[Z_NV], const __mmask16 cm[Z_NV],
                                 int store)
{
#pragma GCC unroll 4
    for (int v = 0; v < Z_NV; v++) {
        __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc[v]));
        __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc[v], 1));
        __mmask8 ml = (__mmask8)cm[v], mh = (__mmask8)(cm[v] >> 8);
        int64_t *p = c + 16 * v;
        if (!store) {
            lo = _mm512_add_epi64(lo, _mm512_maskz_loadu_epi64(ml, p));
            hi = _mm512_add_epi64(hi, _mm512_maskz_loadu_epi64(mh, p + 8));
        }
        _mm512_mask_storeu_epi64(p, ml, lo);
        _mm512_mask_storeu_epi64(p + 8, mh, hi);
    }
}

/* The s16s8 tile: int32 sums over each 256 k, flushed into C. */
TARGET_Z INLINE void z_tile_s16(const int mr, int kc, const int16_t *a, size_t lda,
                                const int16_t *panel, int64_t *c, size_t ldc, int nr, int store)
{
    __mmask16 cm[Z_NV];
    z_col_masks(nr, cm);
    for (int k0 = 0; k0 < kc; k0 += PLAST_IGEMM_S16_CHUNK) {
        int len = min_int(PLAST_IGEMM_S16_CHUNK, kc - k0), pairs = len / 2;
        const int16_t *b = panel + (size_t)k0 * Z_NR;
        const int16_t *ak = a + k0;
        __m512i acc[Z_MR][Z_NV];
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
            for (int v = 0; v < Z_NV; v++)
                acc[i][v] = _mm512_setzero_si512();
        for (int p = 0; p < pairs; p++, b += Z_NR * 2) {
            __m512i bv[Z_NV];
#pragma GCC unroll 4
            for (int v = 0; v < Z_NV; v++)
                bv[v] = _mm512_load_si512(b + 32 * v);
#pragma GCC unroll 16
            for (int i = 0; i < mr; i++) {
                const int16_t *ap = ak + i * lda + 2 * (size_t)p;
#pragma GCC unroll 4
                for (int v = 0; v < Z_NV; v++)
                    Z_DPWSSD_BCAST(acc[i][v], bv[v], ap);
            }
        }
        if (len % 2) {
#pragma GCC unroll 16
            for (int i = 0; i < mr; i++) {
                int32_t at = (int32_t)(uint16_t)ak[i * lda + 2 * (size_t)pairs];
#pragma GCC unroll 4
                for (int v = 0; v < Z_NV; v++)
                    Z_DPWSSD_BCAST(acc[i][v], _mm512_load_si512(b + 32 * v), &at);
            }
        }
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++)
            z_flush_row(c + i * ldc, acc[i], cm, store);
        store = 0;
    }
}

#define Z_S16(R)                                                                           \
    TARGET_Z __attribute__((noinline)) static void z_s16_##R(                              \
        int kc, const int16_t *a, size_t lda, const int16_t *panel, int64_t *c, size_t ldc, \
        int nr, int store)                                                                 \
    {                                                                                      \
        z_tile_s16(R, kc, a, lda, panel, c, ldc, nr, store);                               \
    }
Z_S16(1) Z_S16(2) Z_S16(3) Z_S16(4) Z_S16(5) Z_S16(6)
Z_S16(7) Z_S16(8) Z_S16(9) Z_S16(10) Z_S16(11) Z_S16(12)
#undef Z_S16

static void z_kernel_s16(int mr, int kc, const int16_t *a, size_t lda, const int16_t *panel,
                         int64_t *c, size_t ldc, int nr, int store)
{
    static void (*const tile[Z_MR])(int, const int16_t *, size_t, const int16_t *, int64_t *,
                                    size_t, int, int) = {
        z_s16_1, z_s16_2, z_s16_3, z_s16_4, z_s16_5, z_s16_6,
        z_s16_7, z_s16_8, z_s16_9, z_s16_10, z_s16_11, z_s16_12,
    };
    tile[mr - 1](kc, a, lda, panel, c, ldc, nr, store);
}

static const s8_impl z_s8 = {Z_MR, Z_NR, z_rowsum, z_pack_s8, z_kernel_s8};
static const s16_impl z_s16 = {Z_MR, Z_NR, z_pack_s16, z_kernel_s16};

static void z_s8_run(const igemm_s8_job *g)
{
    s8_drive(g, &z_s8);
}

static void z_s16_run(const igemm_s16_job *g)
{
    s16_drive(g, &z_s16);
}

const igemm_path igemm_path_avx512vnni = {"avx512vnni", z_s8_run, z_s16_run};

/* ---- AVX-VNNI (VEX, 256-bit) ---- */

/* r[i] = dword column i of the 8 x 8 block whose rows were r[0..7]. */
TARGET_Y INLINE void y_transpose8(__m256i r[8])
{
    __m256i t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
    }
}

TARGET_Y static void y_rowsum(const int8_t *a, size_t lda, int rows, int K, int32_t *corr)
{
    const __m256i ones = _mm256_set1_epi8(1);
    for (int i = 0; i < rows; i++, a += lda) {
        __m256i s = _mm256_setzero_si256();
        int k = 0;
        for (; k + 32 <= K; k += 32)
            s = _mm256_dpbusd_avx_epi32(s, ones, _mm256_loadu_si256((const __m256i *)(a + k)));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        uint32_t sum = (uint32_t)_mm_cvtsi128_si32(h);
        for (; k < K; k++)
            sum += (uint32_t)(int32_t)a[k];
        corr[i] = (int32_t)(0u - 128u * sum);
    }
}

/* Bytes 4g .. 4g+3 of row j (+128; 0 past kc or when j is past nr). */
static uint32_t y_group_s8(const int8_t *b, size_t ldb, int nr, int kc, int j, int g)
{
    uint32_t w = 0;
    for (int q = 0; q < 4 && j < nr && 4 * g + q < kc; q++)
        w |= (uint32_t)(uint8_t)(b[(size_t)j * ldb + (size_t)(4 * g + q)] ^ 0x80) << (8 * q);
    return w;
}

/* Panel of Y_NR columns, as z_pack_s8: full 8 x 8 blocks of dwords
 * transposed in registers, the edges a dword at a time. */
TARGET_Y static void y_pack_s8(const int8_t *b, size_t ldb, int nr, int kc, uint8_t *dst)
{
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    int groups = div_up(kc, 4);
    for (int jb = 0; jb < Y_NR; jb += 8) {
        int g = 0;
        if (nr - jb >= 8)
            for (; 4 * (g + 8) <= kc; g += 8) {
                __m256i r[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++)
                    r[i] = _mm256_xor_si256(
                        bias, _mm256_loadu_si256((const __m256i *)(b + (size_t)(jb + i) * ldb +
                                                                   4 * (size_t)g)));
                y_transpose8(r);
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++)
                    _mm256_store_si256((__m256i *)(dst + ((size_t)(g + i) * Y_NR + (size_t)jb) * 4),
                                       r[i]);
            }
        for (; g < groups; g++)
            for (int j = jb; j < jb + 8; j++) {
                uint32_t w = y_group_s8(b, ldb, nr, kc, j, g);
                memcpy(dst + ((size_t)g * Y_NR + (size_t)j) * 4, &w, 4);
            }
    }
}

TARGET_Y INLINE void y_col_masks(int nr, __m256i m[Y_NV])
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
#pragma GCC unroll 4
    for (int v = 0; v < Y_NV; v++)
        m[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8 * v), lane);
}

TARGET_Y INLINE void y_tile_s8(const int mr, int kc, const int8_t *a, size_t lda,
                               const uint8_t *panel, int32_t *c, size_t ldc, int nr, int mode,
                               const int32_t *corr)
{
    __m256i acc[Y_MR][Y_NV], cm[Y_NV];
    y_col_masks(nr, cm);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < Y_NV; v++) {
            __m256i c0 = mode == INIT_CORR
                             ? _mm256_setzero_si256()
                             : _mm256_maskload_epi32((const int *)(c + i * ldc + 8 * v), cm[v]);
            acc[i][v] = mode == INIT_C ? c0 : _mm256_add_epi32(c0, _mm256_set1_epi32(corr[i]));
        }
    int groups = kc / 4;
    const uint8_t *b = panel;
    for (int p = 0; p < groups; p++, b += Y_NR * 4) {
        __m256i bv[Y_NV];
#pragma GCC unroll 4
        for (int v = 0; v < Y_NV; v++)
            bv[v] = _mm256_load_si256((const __m256i *)(b + 32 * v));
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m256i av = _mm256_set1_epi32(load32(a + i * lda + 4 * (size_t)p));
#pragma GCC unroll 4
            for (int v = 0; v < Y_NV; v++)
                Y_DPBUSD(acc[i][v], bv[v], av);
        }
    }
    if (kc % 4) {
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m256i av = _mm256_set1_epi32(tail32(a + i * lda + 4 * (size_t)groups, kc % 4));
#pragma GCC unroll 4
            for (int v = 0; v < Y_NV; v++)
                Y_DPBUSD(acc[i][v], _mm256_load_si256((const __m256i *)(b + 32 * v)), av);
        }
    }
    /* the masks again, from a copy of nr the compiler cannot see through:
     * keeping them live through the loop would spill a sum */
    __asm__("" : "+r"(nr));
    y_col_masks(nr, cm);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < Y_NV; v++)
            _mm256_maskstore_epi32((int *)(c + i * ldc + 8 * v), cm[v], acc[i][v]);
}

#define Y_S8(R)                                                                            \
    TARGET_Y __attribute__((noinline)) static void y_s8_##R(                               \
        int kc, const int8_t *a, size_t lda, const uint8_t *panel, int32_t *c, size_t ldc, \
        int nr, int mode, const int32_t *corr)                                             \
    {                                                                                      \
        y_tile_s8(R, kc, a, lda, panel, c, ldc, nr, mode, corr);                           \
    }
Y_S8(1) Y_S8(2) Y_S8(3) Y_S8(4) Y_S8(5) Y_S8(6)
#undef Y_S8

static void y_kernel_s8(int mr, int kc, const int8_t *a, size_t lda, const uint8_t *panel,
                        int32_t *c, size_t ldc, int nr, int mode, const int32_t *corr)
{
    static void (*const tile[Y_MR])(int, const int8_t *, size_t, const uint8_t *, int32_t *,
                                    size_t, int, int, const int32_t *) = {
        y_s8_1, y_s8_2, y_s8_3, y_s8_4, y_s8_5, y_s8_6,
    };
    tile[mr - 1](kc, a, lda, panel, c, ldc, nr, mode, corr);
}

/* B[j][2p], B[j][2p+1] as two int16 (0 past kc or when j is past nr). */
static uint32_t y_pair_s16(const int8_t *b, size_t ldb, int nr, int kc, int j, int p)
{
    uint32_t w = 0;
    for (int q = 0; q < 2 && j < nr && 2 * p + q < kc; q++)
        w |= (uint32_t)(uint16_t)(int16_t)b[(size_t)j * ldb + (size_t)(2 * p + q)] << (16 * q);
    return w;
}

TARGET_Y static void y_pack_s16(const int8_t *b, size_t ldb, int nr, int kc, int16_t *dst)
{
    int pairs = div_up(kc, 2);
    for (int jb = 0; jb < Y_NR; jb += 8) {
        int p = 0;
        if (nr - jb >= 8)
            for (; 2 * (p + 8) <= kc; p += 8) {
                __m256i r[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++)
                    r[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                        (const __m128i *)(b + (size_t)(jb + i) * ldb + 2 * (size_t)p)));
                y_transpose8(r);
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++)
                    _mm256_store_si256((__m256i *)(dst + ((size_t)(p + i) * Y_NR + (size_t)jb) * 2),
                                       r[i]);
            }
        for (; p < pairs; p++)
            for (int j = jb; j < jb + 8; j++) {
                uint32_t w = y_pair_s16(b, ldb, nr, kc, j, p);
                memcpy(dst + ((size_t)p * Y_NR + (size_t)j) * 2, &w, 4);
            }
    }
}

/* C (int64, nr columns) = or += the int32 sums of one row. */
TARGET_Y INLINE void y_flush_row(int64_t *c, const __m256i acc[Y_NV], int nr, int store)
{
    _Alignas(32) int32_t s[Y_NR];
#pragma GCC unroll 4
    for (int v = 0; v < Y_NV; v++)
        _mm256_store_si256((__m256i *)(s + 8 * v), acc[v]);
    if (nr == Y_NR) {
#pragma GCC unroll 8
        for (int q = 0; q < Y_NR; q += 4) {
            __m256i w = _mm256_cvtepi32_epi64(_mm_load_si128((const __m128i *)(s + q)));
            if (!store)
                w = _mm256_add_epi64(w, _mm256_loadu_si256((const __m256i *)(c + q)));
            _mm256_storeu_si256((__m256i *)(c + q), w);
        }
        return;
    }
    for (int j = 0; j < nr; j++)
        c[j] = s[j] + (store ? 0 : c[j]);
}

TARGET_Y INLINE void y_tile_s16(const int mr, int kc, const int16_t *a, size_t lda,
                                const int16_t *panel, int64_t *c, size_t ldc, int nr, int store)
{
    for (int k0 = 0; k0 < kc; k0 += PLAST_IGEMM_S16_CHUNK) {
        int len = min_int(PLAST_IGEMM_S16_CHUNK, kc - k0), pairs = len / 2;
        const int16_t *b = panel + (size_t)k0 * Y_NR;
        const int16_t *ak = a + k0;
        __m256i acc[Y_MR][Y_NV];
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
            for (int v = 0; v < Y_NV; v++)
                acc[i][v] = _mm256_setzero_si256();
        for (int p = 0; p < pairs; p++, b += Y_NR * 2) {
            __m256i bv[Y_NV];
#pragma GCC unroll 4
            for (int v = 0; v < Y_NV; v++)
                bv[v] = _mm256_load_si256((const __m256i *)(b + 16 * v));
#pragma GCC unroll 8
            for (int i = 0; i < mr; i++) {
                __m256i av = _mm256_set1_epi32(load32(ak + i * lda + 2 * (size_t)p));
#pragma GCC unroll 4
                for (int v = 0; v < Y_NV; v++)
                    Y_DPWSSD(acc[i][v], bv[v], av);
            }
        }
        if (len % 2) {
#pragma GCC unroll 8
            for (int i = 0; i < mr; i++) {
                __m256i av = _mm256_set1_epi32((int32_t)(uint16_t)ak[i * lda + 2 * (size_t)pairs]);
#pragma GCC unroll 4
                for (int v = 0; v < Y_NV; v++)
                    Y_DPWSSD(acc[i][v], _mm256_load_si256((const __m256i *)(b + 16 * v)), av);
            }
        }
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++)
            y_flush_row(c + i * ldc, acc[i], nr, store);
        store = 0;
    }
}

#define Y_S16(R)                                                                           \
    TARGET_Y __attribute__((noinline)) static void y_s16_##R(                              \
        int kc, const int16_t *a, size_t lda, const int16_t *panel, int64_t *c, size_t ldc, \
        int nr, int store)                                                                 \
    {                                                                                      \
        y_tile_s16(R, kc, a, lda, panel, c, ldc, nr, store);                               \
    }
Y_S16(1) Y_S16(2) Y_S16(3) Y_S16(4) Y_S16(5) Y_S16(6)
#undef Y_S16

static void y_kernel_s16(int mr, int kc, const int16_t *a, size_t lda, const int16_t *panel,
                         int64_t *c, size_t ldc, int nr, int store)
{
    static void (*const tile[Y_MR])(int, const int16_t *, size_t, const int16_t *, int64_t *,
                                    size_t, int, int) = {
        y_s16_1, y_s16_2, y_s16_3, y_s16_4, y_s16_5, y_s16_6,
    };
    tile[mr - 1](kc, a, lda, panel, c, ldc, nr, store);
}

static const s8_impl y_s8 = {Y_MR, Y_NR, y_rowsum, y_pack_s8, y_kernel_s8};
static const s16_impl y_s16 = {Y_MR, Y_NR, y_pack_s16, y_kernel_s16};

static void y_s8_run(const igemm_s8_job *g)
{
    s8_drive(g, &y_s8);
}

static void y_s16_run(const igemm_s16_job *g)
{
    s16_drive(g, &y_s16);
}

const igemm_path igemm_path_avxvnni = {"avxvnni", y_s8_run, y_s16_run};

/* AVX-VNNI: CPUID leaf 7 sub-leaf 1, EAX bit 4 (asked directly: Clang 14's
 * __builtin_cpu_supports has no name for it).  The OS saving the ymm
 * registers is checked with avx2. */
static int cpu_has_avxvnni(void)
{
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx))
        return 0;
    return (eax >> 4) & 1u;
}

/* __builtin_cpu_supports also checks that the OS saves the registers. */
int igemm_path_usable(const igemm_path *p)
{
    __builtin_cpu_init();
    if (p == &igemm_path_avx512vnni)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    if (p == &igemm_path_avxvnni)
        return __builtin_cpu_supports("avx2") && cpu_has_avxvnni();
    return 0;
}

#else /* not x86 or not GCC-compatible: only the portable path */

const igemm_path igemm_path_avx512vnni = {"avx512vnni", NULL, NULL};
const igemm_path igemm_path_avxvnni = {"avxvnni", NULL, NULL};

int igemm_path_usable(const igemm_path *p)
{
    (void)p;
    return 0;
}
#endif
