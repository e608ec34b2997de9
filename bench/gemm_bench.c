/* gemm_bench.c - GFLOP/s of plast_gemm_mt on the shapes an MLP trains with,
 * against the measured FMA peak of this CPU.
 *
 * Usage: gemm_bench [seconds per shape, default 0.3]
 * The peak is a register-only loop of 16 independent FMA chains (zmm if
 * the CPU has AVX-512F, else ymm with FMA), on 1 thread and on 2 (each
 * thread runs the loop, flops summed), before and after the shapes: their
 * ratio is the number of cores the machine really gave.  Each shape is timed on 1 and 2
 * threads (best of repeated runs) and shown as GFLOP/s and as a fraction
 * of the peak for that many threads.  The last lines take products
 * together (their flops over their times): the MLP's large training
 * products at batch 128 that the bar counts (fc1 forward and dW;
 * fc2 forward, dX and dW), then those plus fc1's dX, which the first
 * layer of a model skips.  PLAST_GEMM_KERNEL picks the path.
 * Not a test: nothing is asserted.
 * Build from the source tree with a configured build directory BUILD (for
 * its config.h):
 *   gcc -std=c11 -ffp-contract=off -O2 -fopenmp -Iinclude -Ilibcore -IBUILD \
 *       bench/gemm_bench.c libcore/gemm.c libcore/gemm_x86.c libcore/err.c \
 *       libcore/fpenv.c -o gemm_bench -lm */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "plast/gemm.h"
#include "gemm_kernels.h"

#define NT 2 /* thread counts timed: 1 .. NT */

typedef struct bench_shape {
    const char *what;
    int trans_a, trans_b, M, N, K;
    int mlp; /* 2: a product the 70 % bar counts; 1: large MLP product outside it */
} bench_shape;

/* Batch 128, layers 784-256-256-10, as dense.c calls plast_gemm_mt. */
static const bench_shape shapes[] = {
    {"fwd  784->256  Y = X W^T", 0, 1, 128, 256, 784, 2},
    {"dW   784->256  dY^T X", 1, 0, 256, 784, 128, 2},
    {"dX   784->256  dY W", 0, 0, 128, 784, 256, 1},
    {"fwd  256->256", 0, 1, 128, 256, 256, 2},
    {"dW   256->256", 1, 0, 256, 256, 128, 2},
    {"dX   256->256", 0, 0, 128, 256, 256, 2},
    {"fwd  256->10", 0, 1, 128, 10, 256, 0},
    {"dW   256->10", 1, 0, 10, 256, 128, 0},
    {"dX   256->10", 0, 0, 128, 256, 10, 0},
    {"square 512 NN", 0, 0, 512, 512, 512, 0},
    {"square 512 TT", 1, 1, 512, 512, 512, 0},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the FMA peak ---- */

#define PEAK_CHAINS 16

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

/* 16 dependent chains of n FMAs each on zmm registers; returns a sum so
 * the work cannot be dropped. */
__attribute__((target("avx512f"), noinline)) static float fma_chains_zmm(long n)
{
    __m512 acc[PEAK_CHAINS], x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-3f);
#pragma GCC unroll 16
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm512_set1_ps((float)i);
    for (long r = 0; r < n; r++)
#pragma GCC unroll 16
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    for (int i = 1; i < PEAK_CHAINS; i++)
        acc[0] = _mm512_add_ps(acc[0], acc[i]);
    return _mm512_reduce_add_ps(acc[0]);
}

__attribute__((target("avx2,fma"), noinline)) static float fma_chains_ymm(long n)
{
    __m256 acc[PEAK_CHAINS], x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-3f);
#pragma GCC unroll 16
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm256_set1_ps((float)i);
    for (long r = 0; r < n; r++)
#pragma GCC unroll 16
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    float out[8], s = 0.0f;
    for (int i = 1; i < PEAK_CHAINS; i++)
        acc[0] = _mm256_add_ps(acc[0], acc[i]);
    _mm256_storeu_ps(out, acc[0]);
    for (int i = 0; i < 8; i++)
        s += out[i];
    return s;
}

/* Floats per register of the widest FMA this CPU has; 0 if none. */
static int peak_width(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return 16;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 8;
    return 0;
}

static float fma_chains(int width, long n)
{
    return width == 16 ? fma_chains_zmm(n) : fma_chains_ymm(n);
}
#else
static int peak_width(void)
{
    return 0;
}

static float fma_chains(int width, long n)
{
    (void)width;
    (void)n;
    return 0.0f;
}
#endif

/* Best GFLOP/s of the FMA loop on `threads` threads (all run it at once). */
static double peak_gflops(int width, int threads, double budget)
{
    const long n = 4000000;
    double best = 0.0, start = now();
    float sums[NT] = {0.0f};
    do {
        double t0 = now();
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (int t = 0; t < threads; t++)
            sums[t] += fma_chains(width, n);
        double gf = 2.0 * width * PEAK_CHAINS * (double)n * threads / (now() - t0) * 1e-9;
        if (gf > best)
            best = gf;
    } while (now() - start < budget);
    if (sums[0] == 12345.0f) /* keeps the sums observable */
        printf(" ");
    return best;
}

/* ---- the products ---- */

static float *random_matrix(size_t n, unsigned *seed)
{
    float *p = malloc(n * sizeof *p);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)(*seed >> 8) * 0x1p-24f - 0.5f;
    }
    return p;
}

/* Best seconds per call over runs of about `budget` seconds in total;
 * negative if out of memory. */
static double time_shape(const bench_shape *s, int threads, double budget, unsigned *seed)
{
    int rows_a = s->trans_a ? s->K : s->M, cols_a = s->trans_a ? s->M : s->K;
    int rows_b = s->trans_b ? s->N : s->K, cols_b = s->trans_b ? s->K : s->N;
    float *A = random_matrix((size_t)rows_a * (size_t)cols_a, seed);
    float *B = random_matrix((size_t)rows_b * (size_t)cols_b, seed);
    float *C = random_matrix((size_t)s->M * (size_t)s->N, seed);
    double best = -1.0;
    if (A && B && C) {
        plast_gemm_mt(threads, s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, A, cols_a, B,
                      cols_b, 0.0f, C, s->N); /* warm-up */
        double start = now();
        do {
            double t0 = now();
            plast_gemm_mt(threads, s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, A, cols_a,
                          B, cols_b, 1.0f, C, s->N);
            double t = now() - t0;
            if (best < 0 || t < best)
                best = t;
        } while (now() - start < budget);
    }
    free(A);
    free(B);
    free(C);
    return best;
}

static double flops_of(const bench_shape *s)
{
    return 2.0 * s->M * (double)s->N * s->K;
}

static void print_rate(double flops, double secs, double peak)
{
    double gf = flops / secs * 1e-9;
    printf(" %8.1f %5.0f%%", gf, peak > 0 ? 100.0 * gf / peak : 0.0);
}

/* The shapes with mlp >= min_mlp taken together, on 1 .. NT threads. */
static void print_together(const char *what, int min_mlp, double secs[][NT],
                           const double *peak)
{
    double flops = 0.0, total[NT] = {0.0};
    for (size_t i = 0; i < NSHAPES; i++)
        if (shapes[i].mlp >= min_mlp) {
            flops += flops_of(&shapes[i]);
            for (int t = 0; t < NT; t++)
                total[t] += secs[i][t];
        }
    printf("%-46s", what);
    for (int t = 0; t < NT; t++)
        print_rate(flops, total[t], peak[t]);
    printf("\n");
}

static int parse_budget(int argc, char **argv, double *budget)
{
    *budget = 0.3;
    if (argc < 2)
        return 0;
    char *end;
    errno = 0;
    *budget = strtod(argv[1], &end);
    if (errno || end == argv[1] || *end || !(*budget > 0)) {
        fprintf(stderr, "gemm_bench: expected seconds per shape, found '%s'\n", argv[1]);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    double budget, peak[NT] = {0.0}, secs[NSHAPES][NT];
    if (parse_budget(argc, argv, &budget) != 0)
        return 2;
    int width = peak_width();
    if (width) {
        (void)peak_gflops(width, 1, 0.3); /* let the clock settle */
        for (int t = 0; t < NT; t++)
            peak[t] = peak_gflops(width, t + 1, 0.5);
    }
    printf("kernel %s; FMA peak (%s, %d chains): %.1f GFLOP/s on 1 thread, %.1f on 2 "
           "(%.2f cores effective)\n",
           plast_gemm_kernel_name(), width == 16 ? "zmm" : width == 8 ? "ymm" : "none",
           PEAK_CHAINS, peak[0], peak[1], peak[0] > 0 ? peak[1] / peak[0] : 0.0);
    printf("%-26s %5s %5s %5s  op %9s %6s %9s %6s\n", "shape", "M", "N", "K", "GF/s 1t",
           "peak", "GF/s 2t", "peak");
    unsigned seed = 12345u;
    for (size_t i = 0; i < NSHAPES; i++) {
        const bench_shape *s = &shapes[i];
        printf("%-26s %5d %5d %5d  %c%c", s->what, s->M, s->N, s->K, s->trans_a ? 'T' : 'N',
               s->trans_b ? 'T' : 'N');
        for (int t = 0; t < NT; t++) {
            secs[i][t] = time_shape(s, t + 1, budget, &seed);
            if (secs[i][t] < 0) {
                fprintf(stderr, "gemm_bench: out of memory\n");
                return 1;
            }
            print_rate(flops_of(s), secs[i][t], peak[t]);
        }
        printf("\n");
        fflush(stdout);
    }
    print_together("together: the bar (fc1 fwd,dW; fc2 fwd,dX,dW)", 2, secs, peak);
    print_together("together: the same and fc1 dX", 1, secs, peak);
    /* The second core of a shared machine comes and goes: probe again. */
    if (width) {
        double p1 = peak_gflops(width, 1, 0.5), p2 = peak_gflops(width, 2, 0.5);
        printf("FMA peak at the end: %.1f on 1 thread, %.1f on 2 (%.2f cores effective)\n",
               p1, p2, p2 / p1);
    }
    return 0;
}
