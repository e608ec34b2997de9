/* gemm_bench.c - GFLOP/s of plast_gemm on the shapes an MLP trains with.
 *
 * Usage: gemm_bench [seconds per shape, default 0.3]
 * Prints one line per shape: M N K, the transposes, GFLOP/s (best of
 * repeated timed runs).  Not a test: nothing is asserted. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "plast/gemm.h"

typedef struct bench_shape {
    const char *what;
    int trans_a, trans_b, M, N, K;
} bench_shape;

/* Batch 128, layers 784-256-256-10, as dense.c calls plast_gemm. */
static const bench_shape shapes[] = {
    {"fwd  784->256  Y = X W^T", 0, 1, 128, 256, 784},
    {"dW   784->256  dY^T X", 1, 0, 256, 784, 128},
    {"dX   784->256  dY W", 0, 0, 128, 784, 256},
    {"fwd  256->256", 0, 1, 128, 256, 256},
    {"dW   256->256", 1, 0, 256, 256, 128},
    {"dX   256->256", 0, 0, 128, 256, 256},
    {"fwd  256->10", 0, 1, 128, 10, 256},
    {"dW   256->10", 1, 0, 10, 256, 128},
    {"dX   256->10", 0, 0, 128, 256, 10},
    {"square 512 NN", 0, 0, 512, 512, 512},
    {"square 512 TT", 1, 1, 512, 512, 512},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

/* Best GFLOP/s over runs of about `budget` seconds in total. */
static double bench_one(const bench_shape *s, double budget, unsigned *seed)
{
    int rows_a = s->trans_a ? s->K : s->M, cols_a = s->trans_a ? s->M : s->K;
    int rows_b = s->trans_b ? s->N : s->K, cols_b = s->trans_b ? s->K : s->N;
    float *A = random_matrix((size_t)rows_a * (size_t)cols_a, seed);
    float *B = random_matrix((size_t)rows_b * (size_t)cols_b, seed);
    float *C = random_matrix((size_t)s->M * (size_t)s->N, seed);
    double best = -1.0;
    if (A && B && C) {
        double flops = 2.0 * s->M * s->N * s->K, start = now();
        plast_gemm(s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, A, cols_a, B, cols_b, 0.0f,
                   C, s->N); /* warm-up */
        while (now() - start < budget) {
            double t0 = now();
            plast_gemm(s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, A, cols_a, B, cols_b,
                       1.0f, C, s->N);
            double gf = flops / (now() - t0) * 1e-9;
            if (gf > best)
                best = gf;
        }
    }
    free(A);
    free(B);
    free(C);
    return best;
}

int main(int argc, char **argv)
{
    double budget = 0.3;
    if (argc > 1) {
        char *end;
        errno = 0;
        budget = strtod(argv[1], &end);
        if (errno || end == argv[1] || *end || budget <= 0) {
            fprintf(stderr, "gemm_bench: expected seconds per shape, found '%s'\n", argv[1]);
            return 2;
        }
    }
    unsigned seed = 12345u;
    printf("%-26s %5s %5s %5s  %s  %s\n", "shape", "M", "N", "K", "op", "GFLOP/s");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const bench_shape *s = &shapes[i];
        double gf = bench_one(s, budget, &seed);
        if (gf < 0) {
            fprintf(stderr, "gemm_bench: out of memory\n");
            return 1;
        }
        printf("%-26s %5d %5d %5d  %c%c  %7.2f\n", s->what, s->M, s->N, s->K,
               s->trans_a ? 'T' : 'N', s->trans_b ? 'T' : 'N', gf);
    }
    return 0;
}
