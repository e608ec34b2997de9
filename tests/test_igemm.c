/* test_igemm.c - plast_igemm_s8 and plast_igemm_s16s8 against a naive
 * int64 reference, on every kernel path the CPU has (suites igemm_portable,
 * igemm_avxvnni, igemm_avx512vnni, through the internal
 * plast_igemm_*_with hooks; suite igemm uses the dispatched path).
 * Matrices are allocated to their exact size (the sanitizers then catch a
 * read past the end), padding past K in a row holds junk that would change
 * the sums if read, and C's padding columns hold a sentinel that must
 * survive. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

#include "plast/igemm.h"
#include "igemm_kernels.h"

#define C_SENTINEL 0x5a5a5a5a

/* The path under test; NULL: the dispatched one. */
static const char *kernel;

/* 1 if this CPU has the path (x86 only; elsewhere only portable). */
static int cpu_has(const char *name)
{
    if (strcmp(name, "portable") == 0)
        return 1;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    unsigned eax = 0, ebx, ecx, edx; /* AVX-VNNI: leaf 7.1 EAX bit 4 */
    int avxvnni = __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && ((eax >> 4) & 1u);
    if (strcmp(name, "avxvnni") == 0)
        return avxvnni && __builtin_cpu_supports("avx2");
    if (strcmp(name, "avx512vnni") == 0)
        return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
#endif
    return 0;
}

static void use_kernel(const char *name)
{
    if (!cpu_has(name))
        cr_skip_test("the %s kernel path: this CPU (or build) lacks it", name);
    kernel = name;
}

static void igemm_s8(int M, int N, int K, const int8_t *A, int lda, const int8_t *B, int ldb,
                     int beta, int32_t *C, int ldc)
{
    if (!kernel) {
        plast_igemm_s8(M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int rc = plast_igemm_s8_with(kernel, M, N, K, A, lda, B, ldb, beta, C, ldc);
    cr_assert(eq(int, rc, 0), "kernel %s refused although the CPU has it", kernel);
}

static void igemm_s16s8(int M, int N, int K, const int16_t *A, int lda, const int8_t *B,
                        int ldb, int beta, int64_t *C, int ldc)
{
    if (!kernel) {
        plast_igemm_s16s8(M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int rc = plast_igemm_s16s8_with(kernel, M, N, K, A, lda, B, ldb, beta, C, ldc);
    cr_assert(eq(int, rc, 0), "kernel %s refused although the CPU has it", kernel);
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* How the entries are drawn. */
enum fill {
    FILL_RANDOM,  /* uniform over the whole type */
    FILL_EXTREME, /* only the two ends of the type's range (and -127 for A) */
};

static int pick(uint32_t *s, enum fill f, int lo, int hi)
{
    if (f == FILL_EXTREME)
        return (lcg(s) & 1) ? hi : lo;
    return lo + (int)(lcg(s) % (uint32_t)(hi - lo + 1));
}

/* rows x ld int8, entries past cols junk (0x55). */
static int8_t *make_s8(int rows, int cols, int ld, uint32_t *s, enum fill f, int lo, int hi)
{
    int8_t *m = malloc((size_t)rows * (size_t)ld + 1); /* +1: rows may be 0 */
    cr_assert(m != NULL);
    for (int i = 0; i < rows; i++)
        for (int k = 0; k < ld; k++)
            m[(size_t)i * (size_t)ld + (size_t)k] = k < cols ? (int8_t)pick(s, f, lo, hi) : 0x55;
    return m;
}

static int16_t *make_s16(int rows, int cols, int ld, uint32_t *s, enum fill f, int lo, int hi)
{
    int16_t *m = malloc(((size_t)rows * (size_t)ld + 1) * sizeof *m);
    cr_assert(m != NULL);
    for (int i = 0; i < rows; i++)
        for (int k = 0; k < ld; k++)
            m[(size_t)i * (size_t)ld + (size_t)k] =
                k < cols ? (int16_t)pick(s, f, lo, hi) : (int16_t)0x5555;
    return m;
}

/* One product's shape and strides. */
typedef struct shape {
    int M, N, K, lda, ldb, ldc;
} shape;

static shape padded(int M, int N, int K, int pad)
{
    shape sh = {M, N, K, K + pad, K + (pad ? pad + 3 : 0), N + (pad ? 2 : 0)};
    return sh;
}

/* Index of the first entry where got and want differ, or -1. */
static long first_diff32(const int32_t *got, const int32_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            return (long)i;
    return -1;
}

static long first_diff64(const int64_t *got, const int64_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            return (long)i;
    return -1;
}

/* C = (beta ? C : 0) + A B^T for one s8 product, checked against the
 * reference; C starts as sentinel (beta 0) or random values (beta 1). */
static void check_s8(shape sh, int beta, enum fill f, uint32_t seed)
{
    uint32_t s = seed;
    int8_t *A = make_s8(sh.M, sh.K, sh.lda, &s, f, f == FILL_EXTREME ? -127 : -128, 127);
    int8_t *B = make_s8(sh.N, sh.K, sh.ldb, &s, f, -128, 127);
    size_t nc = (size_t)sh.M * (size_t)sh.ldc;
    int32_t *C = malloc((nc + 1) * sizeof *C), *want = malloc((nc + 1) * sizeof *want);
    cr_assert(C != NULL && want != NULL);
    for (size_t i = 0; i < nc; i++)
        C[i] = beta && (int)(i % (size_t)sh.ldc) < sh.N ? (int32_t)(lcg(&s) % 200001) - 100000
                                                          : C_SENTINEL;
    memcpy(want, C, nc * sizeof *C);
    for (int m = 0; m < sh.M; m++)
        for (int n = 0; n < sh.N; n++) {
            int64_t acc = beta ? want[(size_t)m * (size_t)sh.ldc + (size_t)n] : 0;
            for (int k = 0; k < sh.K; k++)
                acc += (int64_t)A[(size_t)m * (size_t)sh.lda + (size_t)k] *
                       B[(size_t)n * (size_t)sh.ldb + (size_t)k];
            want[(size_t)m * (size_t)sh.ldc + (size_t)n] = (int32_t)acc;
        }
    igemm_s8(sh.M, sh.N, sh.K, A, sh.lda, B, sh.ldb, beta, C, sh.ldc);
    long d = first_diff32(C, want, nc);
    cr_assert(eq(long, d, -1L),
              "s8 %s M %d N %d K %d lda %d ldb %d ldc %d beta %d: C[%ld] is %ld, want %ld",
              kernel ? kernel : plast_igemm_kernel(), sh.M, sh.N, sh.K, sh.lda, sh.ldb, sh.ldc,
              beta, d, d < 0 ? 0L : (long)C[d], d < 0 ? 0L : (long)want[d]);
    free(A);
    free(B);
    free(C);
    free(want);
}

static void check_s16(shape sh, int beta, enum fill f, uint32_t seed)
{
    uint32_t s = seed;
    int16_t *A = make_s16(sh.M, sh.K, sh.lda, &s, f, f == FILL_EXTREME ? -32767 : -32768, 32767);
    int8_t *B = make_s8(sh.N, sh.K, sh.ldb, &s, f, -128, 127);
    size_t nc = (size_t)sh.M * (size_t)sh.ldc;
    int64_t *C = malloc((nc + 1) * sizeof *C), *want = malloc((nc + 1) * sizeof *want);
    cr_assert(C != NULL && want != NULL);
    for (size_t i = 0; i < nc; i++)
        C[i] = beta && (int)(i % (size_t)sh.ldc) < sh.N
                   ? ((int64_t)lcg(&s) << 20) - ((int64_t)1 << 43)
                   : C_SENTINEL;
    memcpy(want, C, nc * sizeof *C);
    for (int m = 0; m < sh.M; m++)
        for (int n = 0; n < sh.N; n++) {
            int64_t acc = beta ? want[(size_t)m * (size_t)sh.ldc + (size_t)n] : 0;
            for (int k = 0; k < sh.K; k++)
                acc += (int64_t)A[(size_t)m * (size_t)sh.lda + (size_t)k] *
                       B[(size_t)n * (size_t)sh.ldb + (size_t)k];
            want[(size_t)m * (size_t)sh.ldc + (size_t)n] = acc;
        }
    igemm_s16s8(sh.M, sh.N, sh.K, A, sh.lda, B, sh.ldb, beta, C, sh.ldc);
    long d = first_diff64(C, want, nc);
    cr_assert(eq(long, d, -1L),
              "s16s8 %s M %d N %d K %d lda %d ldb %d ldc %d beta %d: C[%ld] is %lld, want %lld",
              kernel ? kernel : plast_igemm_kernel(), sh.M, sh.N, sh.K, sh.lda, sh.ldb,
              sh.ldc, beta, d, d < 0 ? 0LL : (long long)C[d],
              d < 0 ? 0LL : (long long)want[d]);
    free(A);
    free(B);
    free(C);
    free(want);
}

/* Sizes around the vector widths (4-byte groups, 8/16/32/48/64 lanes,
 * register tiles of up to 16 rows) and K blocks (256 .. 1024). */
static const int odd_sizes[] = {1, 2, 3, 4, 5, 7, 8, 11, 13, 16, 17, 31, 33, 47, 49, 63, 65, 97};
#define NODD (int)(sizeof odd_sizes / sizeof odd_sizes[0])
static const int long_k[] = {255, 256, 257, 511, 512, 513, 784, 1023, 1024, 1025, 2051};
#define NLONGK (int)(sizeof long_k / sizeof long_k[0])

/* Many random shapes, both betas, padded and unpadded. */
static void random_shapes(void (*check)(shape, int, enum fill, uint32_t))
{
    uint32_t s = 12345;
    for (int t = 0; t < 120; t++) {
        int M = odd_sizes[lcg(&s) % NODD], N = odd_sizes[lcg(&s) % NODD];
        int K = t % 3 == 0 ? long_k[lcg(&s) % NLONGK] : odd_sizes[lcg(&s) % NODD];
        check(padded(M, N, K, (int)(lcg(&s) % 3) * 5), t & 1, FILL_RANDOM, lcg(&s));
    }
}

/* Every M, N and K from 1 to 20 on small matrices. */
static void all_small(void (*check)(shape, int, enum fill, uint32_t))
{
    uint32_t seed = 1;
    for (int M = 1; M <= 20; M += 3)
        for (int N = 1; N <= 20; N++)
            for (int K = 1; K <= 20; K++)
                check(padded(M, N, K, (M + N + K) % 2 ? 3 : 0), (M + K) & 1, FILL_RANDOM,
                      seed++);
}

/* The shapes the fixed-point engine uses: dense 784->256 at batch 128 in
 * both orientations, and conv2d after im2col; then more than 256 rows of A
 * (the x86 paths take them 256 at a time). */
static void engine_shapes(void (*check)(shape, int, enum fill, uint32_t))
{
    check(padded(256, 128, 784, 0), 0, FILL_RANDOM, 7);
    check(padded(128, 256, 784, 0), 1, FILL_RANDOM, 8);
    check(padded(16, 196 * 8, 72, 0), 0, FILL_RANDOM, 9);
    check(padded(300, 37, 45, 2), 1, FILL_RANDOM, 10);
    check(padded(525, 9, 70, 0), 0, FILL_RANDOM, 11);
}

static void extremes(void (*check)(shape, int, enum fill, uint32_t))
{
    check(padded(37, 41, 784, 0), 0, FILL_EXTREME, 21);
    check(padded(64, 64, 1031, 4), 1, FILL_EXTREME, 22);
    check(padded(5, 3, 3, 1), 0, FILL_EXTREME, 23);
}

/* K = 0: beta 0 clears C, beta 1 keeps it; padding untouched either way. */
static void k_zero(void)
{
    int32_t c32[3 * 5];
    int64_t c64[3 * 5], want64[3 * 5];
    int8_t b = 1;
    int8_t a8 = 1;
    int16_t a16 = 1;
    for (int beta = 0; beta <= 1; beta++) {
        for (int i = 0; i < 15; i++) {
            c32[i] = i % 5 < 4 ? 100 + i : C_SENTINEL;
            c64[i] = i % 5 < 4 ? -100 - i : C_SENTINEL;
        }
        igemm_s8(3, 4, 0, &a8, 1, &b, 1, beta, c32, 5);
        igemm_s16s8(3, 4, 0, &a16, 1, &b, 1, beta, c64, 5);
        for (int i = 0; i < 15; i++) {
            int64_t want = i % 5 == 4 ? C_SENTINEL : beta ? 100 + i : 0;
            want64[i] = i % 5 == 4 ? C_SENTINEL : beta ? -100 - i : 0;
            cr_assert(eq(i64, c32[i], want), "s8 K 0 beta %d: C[%d] is %d", beta, i, c32[i]);
        }
        cr_assert(memcmp(c64, want64, sizeof c64) == 0, "s16s8 K 0 beta %d", beta);
    }
}

/* The largest int16 x int8 products, -32767 x -128 and 32767 x -128 and
 * -32768 x -128, over K 784 (and a long K): exact in int64. */
static void s16_worst(void)
{
    static const int16_t avals[] = {32767, -32767, -32768};
    for (int v = 0; v < 3; v++)
        for (int kk = 0; kk < 2; kk++) {
            int K = kk ? 40000 : 784, M = 3, N = 19;
            int16_t *A = malloc((size_t)M * (size_t)K * sizeof *A);
            int8_t *B = malloc((size_t)N * (size_t)K);
            int64_t C[3 * 19];
            cr_assert(A != NULL && B != NULL);
            for (size_t i = 0; i < (size_t)M * (size_t)K; i++)
                A[i] = avals[v];
            memset(B, 0x80, (size_t)N * (size_t)K); /* -128 */
            for (int beta = 0; beta <= 1; beta++) {
                for (int i = 0; i < M * N; i++)
                    C[i] = beta ? INT64_C(1) << 40 : C_SENTINEL;
                igemm_s16s8(M, N, K, A, K, B, K, beta, C, N);
                int64_t want = (int64_t)avals[v] * -128 * K + (beta ? INT64_C(1) << 40 : 0);
                for (int i = 0; i < M * N; i++)
                    cr_assert(eq(i64, C[i], want), "A %d K %d beta %d: C[%d]", avals[v], K,
                              beta, i);
            }
            free(A);
            free(B);
        }
}

/* The largest s8 products, -128 x -128, with K so long that the int32 sum
 * wraps: every path wraps it the same way as the portable one. */
static void s8_wraps_like_portable(void)
{
    int M = 2, N = 17, K = (1 << 17) + 9;
    int8_t *A = malloc((size_t)M * (size_t)K), *B = malloc((size_t)N * (size_t)K);
    int32_t C[2 * 17], P[2 * 17];
    cr_assert(A != NULL && B != NULL);
    memset(A, 0x80, (size_t)M * (size_t)K);
    memset(B, 0x80, (size_t)N * (size_t)K);
    A[5] = 127;
    igemm_s8(M, N, K, A, K, B, K, 0, C, N);
    cr_assert(eq(int, plast_igemm_s8_with("portable", M, N, K, A, K, B, K, 0, P, N), 0));
    cr_assert(memcmp(C, P, sizeof C) == 0, "s8 sum past 2^31 differs from the portable path");
    uint32_t wrapped = (uint32_t)((uint64_t)16384 * (uint64_t)(K - 1) - 127 * 128);
    cr_assert(eq(i64, P[0], (int32_t)wrapped), "the portable sum wraps modulo 2^32");
    free(A);
    free(B);
}

#define KERNEL_SUITE(suite, name)                                                          \
    Test(suite, s8_random_shapes, .timeout = 120)                                          \
    {                                                                                      \
        use_kernel(name);                                                                  \
        random_shapes(check_s8);                                                           \
    }                                                                                      \
    Test(suite, s16s8_random_shapes, .timeout = 120)                                       \
    {                                                                                      \
        use_kernel(name);                                                                  \
        random_shapes(check_s16);                                                          \
    }                                                                                      \
    Test(suite, s8_all_small, .timeout = 120)                                              \
    {                                                                                      \
        use_kernel(name);                                                                  \
        all_small(check_s8);                                                               \
    }                                                                                      \
    Test(suite, s16s8_all_small, .timeout = 120)                                           \
    {                                                                                      \
        use_kernel(name);                                                                  \
        all_small(check_s16);                                                              \
    }                                                                                      \
    Test(suite, s8_engine_shapes, .timeout = 120)                                          \
    {                                                                                      \
        use_kernel(name);                                                                  \
        engine_shapes(check_s8);                                                           \
    }                                                                                      \
    Test(suite, s16s8_engine_shapes, .timeout = 120)                                       \
    {                                                                                      \
        use_kernel(name);                                                                  \
        engine_shapes(check_s16);                                                          \
    }                                                                                      \
    Test(suite, s8_extremes)                                                               \
    {                                                                                      \
        use_kernel(name);                                                                  \
        extremes(check_s8);                                                                \
    }                                                                                      \
    Test(suite, s16s8_extremes)                                                            \
    {                                                                                      \
        use_kernel(name);                                                                  \
        extremes(check_s16);                                                               \
    }                                                                                      \
    Test(suite, k_zero)                                                                    \
    {                                                                                      \
        use_kernel(name);                                                                  \
        k_zero();                                                                          \
    }                                                                                      \
    Test(suite, s16s8_worst_case_exact)                                                    \
    {                                                                                      \
        use_kernel(name);                                                                  \
        s16_worst();                                                                       \
    }                                                                                      \
    Test(suite, s8_wraps_like_portable)                                                    \
    {                                                                                      \
        use_kernel(name);                                                                  \
        s8_wraps_like_portable();                                                          \
    }

KERNEL_SUITE(igemm_portable, "portable")
KERNEL_SUITE(igemm_avxvnni, "avxvnni")
KERNEL_SUITE(igemm_avx512vnni, "avx512vnni")

/* The dispatched path: named, and as right as the others. */
Test(igemm, kernel_name)
{
    const char *k = plast_igemm_kernel();
    cr_assert(k != NULL);
    cr_assert(strcmp(k, "portable") == 0 || strcmp(k, "avxvnni") == 0 ||
                  strcmp(k, "avx512vnni") == 0,
              "unknown kernel name %s", k);
    cr_assert(eq(int, cpu_has(k), 1), "dispatch chose %s, which this CPU lacks", k);
}

Test(igemm, dispatched_products, .timeout = 120)
{
    kernel = NULL;
    random_shapes(check_s8);
    random_shapes(check_s16);
    extremes(check_s8);
    s16_worst();
}

/* PLAST_IGEMM_KERNEL, set before the first call, picks the path. */
Test(igemm, env_forces_portable)
{
    setenv("PLAST_IGEMM_KERNEL", "portable", 1);
    cr_assert(eq(str, (char *)plast_igemm_kernel(), "portable"));
}

Test(igemm, env_unknown_falls_back)
{
    setenv("PLAST_IGEMM_KERNEL", "no-such-kernel", 1);
    const char *k = plast_igemm_kernel();
    cr_assert(eq(int, cpu_has(k), 1), "fell back to %s, which this CPU lacks", k);
}

Test(igemm, unknown_kernel_refused)
{
    int32_t c = 77;
    int64_t c64 = 77;
    int8_t a = 1, b = 1;
    int16_t a16 = 1;
    cr_assert(eq(int, plast_igemm_s8_with("nope", 1, 1, 1, &a, 1, &b, 1, 0, &c, 1), -1));
    cr_assert(eq(int, plast_igemm_s16s8_with("nope", 1, 1, 1, &a16, 1, &b, 1, 0, &c64, 1), -1));
    cr_assert(eq(int, c, 77));
    cr_assert(eq(i64, c64, 77));
}

/* A path the CPU lacks is refused, C untouched (nothing to check where
 * the CPU has them all). */
Test(igemm, missing_kernel_refused)
{
    static const char *const names[] = {"avxvnni", "avx512vnni"};
    int8_t a = 1, b = 1;
    for (int i = 0; i < 2; i++) {
        int32_t c = 77;
        int rc = plast_igemm_s8_with(names[i], 1, 1, 1, &a, 1, &b, 1, 0, &c, 1);
        cr_assert(eq(int, rc, cpu_has(names[i]) ? 0 : -1), "%s", names[i]);
        cr_assert(eq(int, c, cpu_has(names[i]) ? 1 : 77), "%s", names[i]);
    }
}
