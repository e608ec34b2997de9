/* test_gemm.c - plast_gemm against a double-precision reference, on every
 * kernel path the CPU has (suites gemm_portable, gemm_avx2, gemm_avx512;
 * suite gemm uses whatever plast_gemm picks), and bit-identical results
 * for 1 to 4 threads. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/fpenv.h"
#include "plast/gemm.h"
#include "gemm_kernels.h"

/* The kernel path under test; NULL: plast_gemm's own choice. */
static const char *kernel;

/* 1 if this CPU has the path (x86 only; elsewhere only portable). */
static int cpu_has(const char *name)
{
    if (strcmp(name, "portable") == 0)
        return 1;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx2") == 0)
        return avx2;
    if (strcmp(name, "avx512") == 0)
        return avx2 && __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

/* Test the named path, or skip when the CPU lacks it. */
static void use_kernel(const char *name)
{
    if (!cpu_has(name))
        cr_skip_test("the %s kernel path: this CPU (or build) lacks it", name);
    kernel = name;
}

/* plast_gemm, or plast_gemm_kernel_mt on the path under test. */
static void gemm_t(int threads, int ta, int tb, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *B, int ldb, float beta, float *C,
                   int ldc)
{
    if (!kernel) {
        plast_gemm_mt(threads, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int rc = plast_gemm_kernel_mt(kernel, threads, ta, tb, M, N, K, alpha, A, lda, B, ldb,
                                  beta, C, ldc);
    cr_assert(eq(int, rc, 0), "kernel %s refused although the CPU has it", kernel);
}

static void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc)
{
    if (!kernel)
        plast_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        gemm_t(1, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* A matrix stored with a leading dimension that may exceed its columns;
 * the padding holds NaN, so reading it would poison the result. */
typedef struct mat {
    int rows, cols, ld;
    float *v;
} mat;

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static mat mat_new(int rows, int cols, int pad, uint32_t *seed)
{
    mat m = {rows, cols, cols + pad, NULL};
    size_t n = (size_t)(rows > 0 ? rows : 1) * (size_t)m.ld;
    m.v = malloc(n * sizeof *m.v);
    cr_assert(m.v != NULL);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < m.ld; j++)
            m.v[(size_t)i * m.ld + j] =
                j < cols ? (float)lcg(seed) * 0x1p-23f - 1.0f : NAN; /* [-1, 1) */
    return m;
}

static float mat_at(const mat *m, int trans, int i, int j)
{
    return trans ? m->v[(size_t)j * m->ld + i] : m->v[(size_t)i * m->ld + j];
}

typedef struct gemm_case {
    int ta, tb, M, N, K;
    float alpha, beta;
    int pad_a, pad_b, pad_c;
} gemm_case;

/* Run one case; return the worst error relative to the magnitude scale
 * |alpha| sum |a b| + |beta c|, which bounds the rounding of any order. */
static double run_case(const gemm_case *t, int nan_c, uint32_t seed)
{
    mat A = mat_new(t->ta ? t->K : t->M, t->ta ? t->M : t->K, t->pad_a, &seed);
    mat B = mat_new(t->tb ? t->N : t->K, t->tb ? t->K : t->N, t->pad_b, &seed);
    mat C = mat_new(t->M, t->N, t->pad_c, &seed);
    size_t nc = (size_t)t->M * (size_t)C.ld;
    float *c0 = malloc((nc ? nc : 1) * sizeof *c0);
    cr_assert(c0 != NULL);
    if (nan_c)
        for (int i = 0; i < t->M; i++)
            for (int j = 0; j < t->N; j++)
                C.v[(size_t)i * C.ld + j] = NAN;
    memcpy(c0, C.v, nc * sizeof *c0);
    gemm(t->ta, t->tb, t->M, t->N, t->K, t->alpha, A.v, A.ld, B.v, B.ld, t->beta, C.v, C.ld);
    double worst = 0.0;
    for (int i = 0; i < t->M; i++) {
        for (int j = 0; j < C.ld; j++) {
            float got = C.v[(size_t)i * C.ld + j];
            if (j >= t->N) { /* padding of C must be left alone */
                cr_assert(isnan(got) != 0, "C padding at (%d,%d) was written", i, j);
                continue;
            }
            double s = 0.0, mag = 0.0;
            for (int k = 0; k < t->K; k++) {
                double p = (double)mat_at(&A, t->ta, i, k) * mat_at(&B, t->tb, k, j);
                s += p;
                mag += fabs(p);
            }
            double ref = t->alpha * s, scale = fabs(t->alpha) * mag;
            if (t->beta != 0.0f) {
                ref += (double)t->beta * c0[(size_t)i * C.ld + j];
                scale += fabs((double)t->beta * c0[(size_t)i * C.ld + j]);
            }
            double err = fabs(got - ref) / (scale > 1e-30 ? scale : 1.0);
            if (!(err <= worst)) /* NaN counts as the worst */
                worst = isnan(err) ? INFINITY : err;
        }
    }
    free(A.v);
    free(B.v);
    free(C.v);
    free(c0);
    return worst;
}

static void check_case(const gemm_case *t, int nan_c)
{
    double err = run_case(t, nan_c, 1u + (uint32_t)(t->M * 131 + t->N * 17 + t->K));
    cr_assert(le(dbl, err, 1e-5),
              "ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g pads=%d,%d,%d nan_c=%d: "
              "relative error %g", t->ta, t->tb, t->M, t->N, t->K, (double)t->alpha,
              (double)t->beta, t->pad_a, t->pad_b, t->pad_c, nan_c, err);
}

static const int odd_sizes[] = {1, 3, 17, 33, 65};
#define NODD ((int)(sizeof odd_sizes / sizeof odd_sizes[0]))

static void sweep(int ta, int tb, float alpha, float beta, int pad, int nan_c)
{
    for (int a = 0; a < NODD; a++)
        for (int b = 0; b < NODD; b++)
            for (int c = 0; c < NODD; c++) {
                gemm_case t = {ta, tb, odd_sizes[a], odd_sizes[b], odd_sizes[c], alpha, beta,
                               pad, 2 * pad, 3 * pad};
                check_case(&t, nan_c);
            }
}

static void nn_odd_sizes(void) { sweep(0, 0, 1.0f, 0.0f, 0, 0); }
static void nt_odd_sizes(void) { sweep(0, 1, 1.0f, 0.0f, 0, 0); }
static void tn_odd_sizes(void) { sweep(1, 0, 1.0f, 0.0f, 0, 0); }
static void tt_odd_sizes(void) { sweep(1, 1, 1.0f, 0.0f, 0, 0); }

static void leading_dimensions_larger_than_columns(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            sweep(ta, tb, 1.0f, 0.0f, 3, 0);
}

static void alpha_and_beta(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            sweep(ta, tb, 0.75f, 1.0f, 1, 0);
            sweep(ta, tb, -2.5f, 0.5f, 0, 0);
        }
}

static void beta_zero_ignores_nan_in_c(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            sweep(ta, tb, 1.5f, 0.0f, 2, 1);
}

/* Sizes past every block edge, with transposes and beta: K over KC (600:
 * three K blocks), M over the packed A block (400 rows at K 600), N over
 * one packed B chunk (K x N over 8 MiB: 1100 x 2100), the MLP's shapes. */
static const gemm_case big_cases[] = {
    {0, 0, 7, 9, 600, 1.0f, 0.0f, 0, 0, 0},    {1, 1, 7, 9, 600, 1.0f, 1.0f, 1, 2, 3},
    {0, 1, 197, 33, 257, 0.5f, 2.0f, 0, 0, 1}, {1, 0, 131, 70, 513, 1.0f, 0.0f, 2, 0, 0},
    {0, 0, 5, 2100, 40, 1.0f, -1.0f, 0, 3, 0}, {1, 1, 100, 2055, 3, 2.0f, 0.0f, 0, 0, 5},
    {1, 0, 400, 70, 600, 1.0f, 0.5f, 0, 1, 0}, {0, 1, 9, 1100, 2100, -1.0f, 0.0f, 1, 0, 2},
    {0, 1, 128, 256, 784, 1.0f, 0.0f, 0, 0, 0}, {1, 0, 256, 784, 128, 1.0f, 1.0f, 0, 0, 0},
    {0, 0, 128, 784, 256, 1.0f, 0.0f, 0, 0, 0}, {1, 1, 150, 301, 97, 0.5f, 1.0f, 1, 1, 1},
};
#define NBIG (sizeof big_cases / sizeof big_cases[0])

static void larger_than_the_blocks(void)
{
    for (size_t i = 0; i < NBIG; i++) {
        check_case(&big_cases[i], 0);
        check_case(&big_cases[i], big_cases[i].beta == 0.0f);
    }
}

/* Small integers: every product and sum is exact in fp32 in any order. */
static void exact_on_small_integers(void)
{
    enum { M = 5, N = 11, K = 300 };
    static float a[M * K], b[K * N], at[K * M], bt[N * K], c[M * N];
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++)
            at[k * M + i] = a[i * K + k] = (float)((i * 7 + k * 3) % 5 - 2);
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++)
            bt[j * K + k] = b[k * N + j] = (float)((k * 5 + j) % 7 - 3);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm(ta, tb, M, N, K, 1.0f, ta ? at : a, ta ? M : K, tb ? bt : b, tb ? K : N, 0.0f,
                 c, N);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    long s = 0;
                    for (int k = 0; k < K; k++)
                        s += (long)a[i * K + k] * (long)b[k * N + j];
                    cr_assert(eq(flt, c[i * N + j], (float)s), "ta=%d tb=%d (%d,%d)", ta, tb, i,
                              j);
                }
        }
}

static void k_zero_or_alpha_zero_scales_c(void)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 1, 1, 1, 1, 1};
    float c[4] = {1, -2, 3, NAN};
    gemm(0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 0.5f, c, 2);
    cr_assert(eq(flt, c[0], 0.5f));
    cr_assert(eq(flt, c[1], -1.0f));
    cr_assert(eq(flt, c[2], 1.5f));
    cr_assert(isnan(c[3]) != 0);
    gemm(0, 0, 2, 2, 3, 0.0f, a, 3, b, 2, 0.0f, c, 2);
    for (int i = 0; i < 4; i++)
        cr_assert(eq(flt, c[i], 0.0f), "c[%d] = %g", i, (double)c[i]);
}

/* The bits depend on the values only: not on padding, not on a repeat. */
static void deterministic_and_layout_independent(void)
{
    enum { M = 37, N = 45, K = 700 };
    uint32_t seed = 99u;
    mat A = mat_new(M, K, 0, &seed), B = mat_new(K, N, 0, &seed);
    mat Ap = {M, K, K + 5, malloc((size_t)M * (K + 5) * sizeof(float))};
    float *c1 = malloc(M * N * sizeof *c1), *c2 = malloc(M * N * sizeof *c2);
    float *c3 = malloc(M * N * sizeof *c3);
    cr_assert(Ap.v && c1 && c2 && c3);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < Ap.ld; j++)
            Ap.v[i * Ap.ld + j] = j < K ? A.v[i * K + j] : NAN;
    gemm(0, 0, M, N, K, 1.0f, A.v, K, B.v, N, 0.0f, c1, N);
    gemm(0, 0, M, N, K, 1.0f, A.v, K, B.v, N, 0.0f, c2, N);
    gemm(0, 0, M, N, K, 1.0f, Ap.v, Ap.ld, B.v, N, 0.0f, c3, N);
    cr_assert(eq(int, memcmp(c1, c2, M * N * sizeof *c1), 0));
    cr_assert(eq(int, memcmp(c1, c3, M * N * sizeof *c1), 0));
    free(A.v);
    free(B.v);
    free(Ap.v);
    free(c1);
    free(c2);
    free(c3);
}

/* C of one case on `threads` threads, into a fresh array. */
static float *product_on(const gemm_case *t, int threads)
{
    uint32_t seed = 7u + (uint32_t)(t->M + t->N + t->K);
    mat A = mat_new(t->ta ? t->K : t->M, t->ta ? t->M : t->K, t->pad_a, &seed);
    mat B = mat_new(t->tb ? t->N : t->K, t->tb ? t->K : t->N, t->pad_b, &seed);
    mat C = mat_new(t->M, t->N, t->pad_c, &seed);
    gemm_t(threads, t->ta, t->tb, t->M, t->N, t->K, t->alpha, A.v, A.ld, B.v, B.ld, t->beta,
           C.v, C.ld);
    free(A.v);
    free(B.v);
    return C.v;
}

/* Threads split M and N, never K: 1, 2, 3 and 4 threads give the same
 * bits (padding of C included); 0 and -1 mean 1.  Every case here has
 * enough work for 4 threads (gemm.c starts one per 2 MFLOP). */
static void threads_give_identical_bits(void)
{
    for (size_t i = 0; i < NBIG; i++) {
        const gemm_case *t = &big_cases[i];
        if (2.0 * t->M * t->N * t->K < 8e6)
            continue;
        size_t bytes = (size_t)t->M * (size_t)(t->N + t->pad_c) * sizeof(float);
        float *one = product_on(t, 1);
        for (int threads = -1; threads <= 4; threads++) {
            if (threads == 1)
                continue;
            float *many = product_on(t, threads);
            cr_assert(eq(int, memcmp(one, many, bytes), 0),
                      "ta=%d tb=%d M=%d N=%d K=%d: %d threads differ from 1", t->ta, t->tb,
                      t->M, t->N, t->K, threads);
            free(many);
        }
        free(one);
    }
}

/* Products of 1e-20 by 1e-20 are denormal: with FTZ/DAZ on in the caller
 * they vanish, and must vanish in the helper threads too, which were
 * started (by the first product) while the caller did not flush. */
static void helpers_flush_denormals_like_the_caller(void)
{
    enum { M = 64, N = 256, K = 256 };
    static float a[M * K], b[K * N], c1[M * N], c4[M * N];
    for (int i = 0; i < M * K; i++)
        a[i] = 1e-20f * (float)(1 + i % 7);
    for (int i = 0; i < K * N; i++)
        b[i] = 1e-20f * (float)(1 + i % 5);
    gemm_t(4, 0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c4, N);
    cr_assert(ne(flt, c4[0], 0.0f), "denormal products flushed although FTZ is off");
    unsigned saved = plast_fpenv_flush_denormals(1);
    if (!plast_fpenv_flushing()) {
        plast_fpenv_restore(saved);
        cr_skip_test("this CPU has no flush-to-zero mode plast can set");
    }
    gemm_t(1, 0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c1, N);
    gemm_t(4, 0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c4, N);
    plast_fpenv_restore(saved);
    cr_assert(eq(flt, c1[0], 0.0f), "FTZ/DAZ on, yet a denormal product survived");
    cr_assert(eq(int, memcmp(c1, c4, sizeof c1), 0), "helper threads did not flush");
}

/* ---- B read through offsets (implicit im2col) ---- */

/* The offsets of a convolution's column matrix over `samples` padded
 * planes [cin][hp][wp] (see conv2d.c): tap[r], r = (ci, ky, kx), and
 * pix[j], j = (sample, oy, ox); entry (r, j) is X[tap[r] + pix[j]]. */
typedef struct conv_offsets {
    int rows, cols;
    int32_t *tap, *pix;
    size_t xlen;
} conv_offsets;

static conv_offsets conv_offsets_new(int cin, int hp, int wp, int k, int s, int samples)
{
    int hout = (hp - k) / s + 1, wout = (wp - k) / s + 1, plane = hp * wp;
    conv_offsets o = {cin * k * k, samples * hout * wout, NULL, NULL,
                      (size_t)samples * (size_t)cin * (size_t)plane};
    o.tap = malloc((size_t)o.rows * sizeof *o.tap);
    o.pix = malloc((size_t)o.cols * sizeof *o.pix);
    cr_assert(o.tap && o.pix);
    int r = 0, j = 0;
    for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                o.tap[r++] = ci * plane + ky * wp + kx;
    for (int i = 0; i < samples; i++)
        for (int oy = 0; oy < hout; oy++)
            for (int ox = 0; ox < wout; ox++)
                o.pix[j++] = i * cin * plane + oy * s * wp + ox * s;
    return o;
}

/* One product with op(B)[k][j] = X[row[k] + col[j]], gathered and then
 * stored (B materialised [K, N]): the same bits. */
static void check_gathered(int ta, int M, float alpha, float beta, int threads, const float *X,
                           const int32_t *row, int K, const int32_t *col, int N)
{
    uint32_t seed = 11u + (uint32_t)(M + N + K);
    mat A = ta ? mat_new(K, M, 1, &seed) : mat_new(M, K, 0, &seed);
    mat C0 = mat_new(M, N, 2, &seed), C1 = C0;
    float *B = malloc((size_t)K * (size_t)N * sizeof *B);
    size_t n = (size_t)M * (size_t)C0.ld;
    C1.v = malloc(n * sizeof *C1.v);
    cr_assert(B && C1.v);
    memcpy(C1.v, C0.v, n * sizeof *C1.v);
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++)
            B[(size_t)k * N + j] = X[row[k] + col[j]];
    gemm_t(threads, ta, 0, M, N, K, alpha, A.v, A.ld, B, N, beta, C0.v, C0.ld);
    cr_assert(eq(int,
                 plast_gemm_gather_mt(kernel, threads, ta, M, N, K, alpha, A.v, A.ld, X, row, col,
                                      beta, C1.v, C1.ld),
                 0));
    cr_expect(memcmp(C0.v, C1.v, n * sizeof *C0.v) == 0,
              "gathered B differs: ta=%d M=%d N=%d K=%d threads=%d", ta, M, N, K, threads);
    free(A.v);
    free(B);
    free(C0.v);
    free(C1.v);
}

/* Convolutions (stride 1 and 2, the forward's col and the weight
 * gradient's col^T, K over one block, ragged panels), an ordinary matrix
 * (one run per panel row), and offsets in random order (no runs). */
static void gathered_b_equals_stored_b(void)
{
    static const struct {
        int cin, hp, wp, k, s, samples;
    } convs[] = {{3, 12, 13, 5, 1, 2}, {2, 9, 11, 3, 2, 3}, {12, 18, 18, 5, 1, 2}};
    uint32_t seed = 5;
    for (size_t c = 0; c < sizeof convs / sizeof convs[0]; c++) {
        conv_offsets o = conv_offsets_new(convs[c].cin, convs[c].hp, convs[c].wp, convs[c].k,
                                          convs[c].s, convs[c].samples);
        mat X = mat_new(1, (int)o.xlen, 0, &seed);
        check_gathered(0, 13, 1.0f, 0.0f, 1, X.v, o.tap, o.rows, o.pix, o.cols); /* forward */
        check_gathered(0, 9, 0.5f, 1.0f, 3, X.v, o.pix, o.cols, o.tap, o.rows);  /* dW */
        check_gathered(1, 8, -1.0f, 0.25f, 2, X.v, o.tap, o.rows, o.pix, o.cols);
        free(X.v);
        free(o.tap);
        free(o.pix);
    }
    enum { K = 70, N = 75 };
    int32_t row[K], col[N];
    for (int k = 0; k < K; k++)
        row[k] = k * N;
    for (int j = 0; j < N; j++)
        col[j] = j;
    mat X = mat_new(K, N, 0, &seed);
    check_gathered(0, 17, 1.0f, 0.0f, 1, X.v, row, K, col, N);
    for (int j = N - 1; j > 0; j--) { /* a shuffle: runs of one */
        int i = (int)(lcg(&seed) % (uint32_t)(j + 1));
        int32_t t = col[i];
        col[i] = col[j];
        col[j] = t;
    }
    check_gathered(0, 17, 1.0f, 0.0f, 2, X.v, row, K, col, N);
    free(X.v);
}

/* Each body runs in four suites: gemm (plast_gemm's own choice of path)
 * and one per path, skipped where the CPU lacks the path. */
#define ON_EVERY_PATH(body)                                                                   \
    Test(gemm, body) { body(); }                                                              \
    Test(gemm_portable, body)                                                                 \
    {                                                                                         \
        use_kernel("portable");                                                               \
        body();                                                                               \
    }                                                                                         \
    Test(gemm_avx2, body)                                                                     \
    {                                                                                         \
        use_kernel("avx2");                                                                   \
        body();                                                                               \
    }                                                                                         \
    Test(gemm_avx512, body)                                                                   \
    {                                                                                         \
        use_kernel("avx512");                                                                 \
        body();                                                                               \
    }

ON_EVERY_PATH(nn_odd_sizes)
ON_EVERY_PATH(nt_odd_sizes)
ON_EVERY_PATH(tn_odd_sizes)
ON_EVERY_PATH(tt_odd_sizes)
ON_EVERY_PATH(leading_dimensions_larger_than_columns)
ON_EVERY_PATH(alpha_and_beta)
ON_EVERY_PATH(beta_zero_ignores_nan_in_c)
ON_EVERY_PATH(larger_than_the_blocks)
ON_EVERY_PATH(exact_on_small_integers)
ON_EVERY_PATH(k_zero_or_alpha_zero_scales_c)
ON_EVERY_PATH(deterministic_and_layout_independent)
ON_EVERY_PATH(threads_give_identical_bits)
ON_EVERY_PATH(helpers_flush_denormals_like_the_caller)
ON_EVERY_PATH(gathered_b_equals_stored_b)

/* Called from inside a parallel region (a layer parallel over samples),
 * plast_gemm_mt runs on the calling thread and gives the same bits. */
Test(gemm, inside_a_parallel_region)
{
    gemm_case t = {0, 1, 64, 200, 300, 1.0f, 0.0f, 0, 0, 0};
    float *alone = product_on(&t, 4), *inside[2] = {NULL, NULL};
#ifdef _OPENMP
#pragma omp parallel for num_threads(2)
#endif
    for (int i = 0; i < 2; i++)
        inside[i] = product_on(&t, 4);
    for (int i = 0; i < 2; i++) {
        cr_assert(inside[i] != NULL);
        cr_assert(eq(int, memcmp(alone, inside[i], (size_t)t.M * t.N * sizeof *alone), 0),
                  "product %d inside the region differs", i);
        free(inside[i]);
    }
    free(alone);
}

/* The AVX2 and AVX-512 paths perform the same FMAs per element in the
 * same K blocks, so a run reproduces bit for bit on an AVX2-only CPU. */
Test(gemm_dispatch, avx2_and_avx512_give_the_same_bits)
{
    if (!cpu_has("avx512"))
        cr_skip_test("the avx512 kernel path: this CPU (or build) lacks it");
    for (size_t i = 0; i < NBIG; i++) {
        const gemm_case *t = &big_cases[i];
        size_t bytes = (size_t)t->M * (size_t)(t->N + t->pad_c) * sizeof(float);
        kernel = "avx2";
        float *y = product_on(t, 2);
        kernel = "avx512";
        float *z = product_on(t, 2);
        cr_assert(eq(int, memcmp(y, z, bytes), 0), "ta=%d tb=%d M=%d N=%d K=%d differ", t->ta,
                  t->tb, t->M, t->N, t->K);
        free(y);
        free(z);
    }
}

/* ---- choosing the path ---- */

/* The best path this CPU has. */
static const char *best_path(void)
{
    return cpu_has("avx512") ? "avx512" : cpu_has("avx2") ? "avx2" : "portable";
}

/* plast_gemm and plast_gemm_mt use the path they report, with its bits. */
Test(gemm_dispatch, plast_gemm_is_its_reported_path)
{
    gemm_case t = {0, 1, 128, 256, 784, 1.0f, 0.0f, 0, 0, 0};
    float *own = product_on(&t, 3);
    kernel = plast_gemm_kernel_name();
    float *named = product_on(&t, 1);
    cr_assert(eq(int, memcmp(own, named, (size_t)t.M * t.N * sizeof *own), 0),
              "plast_gemm_mt differs from its reported path %s", kernel);
    free(own);
    free(named);
}

/* The path is chosen on the first call, so each of these tests sets the
 * environment before any product (Criterion runs each test in its own
 * process). */
Test(gemm_dispatch, default_is_the_best_path_the_cpu_has)
{
    cr_assert(eq(int, unsetenv("PLAST_GEMM_KERNEL"), 0));
    cr_assert(eq(str, (char *)plast_gemm_kernel_name(), (char *)best_path()));
}

Test(gemm_dispatch, environment_forces_portable)
{
    cr_assert(eq(int, setenv("PLAST_GEMM_KERNEL", "portable", 1), 0));
    cr_assert(eq(str, (char *)plast_gemm_kernel_name(), "portable"));
}

Test(gemm_dispatch, environment_forces_avx2)
{
    if (!cpu_has("avx2"))
        cr_skip_test("the avx2 kernel path: this CPU (or build) lacks it");
    cr_assert(eq(int, setenv("PLAST_GEMM_KERNEL", "avx2", 1), 0));
    cr_assert(eq(str, (char *)plast_gemm_kernel_name(), "avx2"));
}

Test(gemm_dispatch, unknown_name_in_environment_means_best)
{
    cr_assert(eq(int, setenv("PLAST_GEMM_KERNEL", "sse9", 1), 0));
    cr_assert(eq(str, (char *)plast_gemm_kernel_name(), (char *)best_path()));
}

Test(gemm_dispatch, unknown_or_missing_path_is_refused)
{
    float a = 1.0f, b = 2.0f, c = 3.0f;
    cr_assert(eq(int, plast_gemm_kernel_mt("sse9", 1, 0, 0, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f,
                                           &c, 1),
                 -1));
    cr_assert(eq(flt, c, 3.0f));
    const char *paths[] = {"portable", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        int rc = plast_gemm_kernel_mt(paths[i], 1, 0, 0, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c,
                                      1);
        cr_assert(eq(int, rc, cpu_has(paths[i]) ? 0 : -1), "path %s", paths[i]);
    }
    cr_assert(eq(flt, c, 2.0f));
}

/* A B packed once (an rnn's W_hh) gives plast_gemm's bits for every A:
 * both transposes, ragged M and N, K over one block (KC = 256), alpha and
 * beta, padded leading dimensions. */
Test(gemm_packed_b, equals_plast_gemm_bit_for_bit)
{
    static const gemm_case cases[] = {
        {0, 1, 128, 128, 128, 1.0f, 1.0f, 0, 3, 5}, {0, 0, 37, 45, 300, 0.5f, 0.0f, 2, 0, 1},
        {1, 1, 9, 33, 257, -1.0f, 0.25f, 1, 1, 0},  {1, 0, 1, 1, 1, 2.0f, 1.0f, 0, 0, 0},
    };
    uint32_t seed = 77;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const gemm_case *t = &cases[c];
        mat A = t->ta ? mat_new(t->K, t->M, t->pad_a, &seed)
                      : mat_new(t->M, t->K, t->pad_a, &seed);
        mat B = t->tb ? mat_new(t->N, t->K, t->pad_b, &seed)
                      : mat_new(t->K, t->N, t->pad_b, &seed);
        mat C0 = mat_new(t->M, t->N, t->pad_c, &seed), C1 = C0;
        size_t n = (size_t)t->M * (size_t)C0.ld;
        C1.v = malloc(n * sizeof *C1.v);
        cr_assert(C1.v != NULL);
        memcpy(C1.v, C0.v, n * sizeof *C1.v);
        plast_gemm(t->ta, t->tb, t->M, t->N, t->K, t->alpha, A.v, A.ld, B.v, B.ld, t->beta,
                   C0.v, C0.ld);
        plast_gemm_packed_b pk;
        cr_assert(eq(int, plast_gemm_pack_b_once(&pk, t->tb, t->N, t->K, B.v, B.ld), 0));
        plast_gemm_with_packed_b(&pk, t->ta, t->M, t->alpha, A.v, A.ld, t->beta, C1.v, C1.ld);
        plast_gemm_packed_b_free(&pk);
        cr_expect(memcmp(C0.v, C1.v, n * sizeof *C0.v) == 0, "case %zu differs", c);
        free(A.v);
        free(B.v);
        free(C0.v);
        free(C1.v);
    }
}

Test(gemm_packed_b, refuses_empty_operands)
{
    plast_gemm_packed_b pk;
    float b = 1.0f;
    cr_expect(eq(int, plast_gemm_pack_b_once(&pk, 0, 0, 1, &b, 1), -1));
    cr_expect(eq(int, plast_gemm_pack_b_once(&pk, 0, 1, 0, &b, 1), -1));
    cr_expect(pk.data == NULL);
}
