/* igemm_bench.c - Gop/s of plast_igemm_s8 and plast_igemm_s16s8 on one
 * thread, per kernel path, on the shapes the fixed-point engine uses.
 *
 * Usage: igemm_bench [seconds per shape and path, default 0.3]
 * Shapes (M outputs x N batch x K): a dense layer 784->256 at batch 128
 * (256x128x784), the transposed orientation (128x256x784) and conv2d after
 * im2col (16 filters x 196*64 positions x 72 = 3*3*8).  2*M*N*K operations
 * per product; each figure is the best of repeated calls (the machine may
 * be shared).  The first lines measure the register-only peak of vpdpbusd
 * and vpdpwssd (zmm, 24 independent chains) when the CPU has AVX-512 VNNI.
 * Every path the CPU has is timed through the internal plast_igemm_*_with
 * hooks; PLAST_IGEMM_KERNEL only changes the line "dispatched".
 * Not a test: nothing is asserted.
 * Build from the source tree with a configured build directory BUILD (for
 * its config.h):
 *   gcc -std=c11 -ffp-contract=off -O2 -Iinclude -Ilibcore -IBUILD \
 *       bench/igemm_bench.c libcore/igemm.c libcore/igemm_x86.c libcore/err.c \
 *       -o igemm_bench */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plast/igemm.h"
#include "igemm_kernels.h"

typedef struct bench_shape {
    const char *what;
    int M, N, K;
} bench_shape;

static const bench_shape shapes[] = {
    {"dense 784->256, batch 128", 256, 128, 784},
    {"same, transposed", 128, 256, 784},
    {"conv 3x3x8 -> 16, 196x64", 16, 196 * 64, 72},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

static const char *const kernels[] = {"portable", "avxvnni", "avx512vnni"};
#define NKERNELS (sizeof kernels / sizeof kernels[0])

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* The operands of one shape, random over the whole range. */
typedef struct operands {
    int8_t *a8, *b;
    int16_t *a16;
    int32_t *c32;
    int64_t *c64;
} operands;

static int make_operands(const bench_shape *sh, operands *o)
{
    size_t na = (size_t)sh->M * (size_t)sh->K, nb = (size_t)sh->N * (size_t)sh->K;
    size_t nc = (size_t)sh->M * (size_t)sh->N;
    uint32_t s = 1;
    o->a8 = malloc(na);
    o->a16 = malloc(na * sizeof *o->a16);
    o->b = malloc(nb);
    o->c32 = malloc(nc * sizeof *o->c32);
    o->c64 = malloc(nc * sizeof *o->c64);
    if (!o->a8 || !o->a16 || !o->b || !o->c32 || !o->c64)
        return -1;
    for (size_t i = 0; i < na; i++) {
        o->a8[i] = (int8_t)(lcg(&s) & 0xff);
        o->a16[i] = (int16_t)(lcg(&s) & 0xffff);
    }
    for (size_t i = 0; i < nb; i++)
        o->b[i] = (int8_t)(lcg(&s) & 0xff);
    return 0;
}

static void free_operands(operands *o)
{
    free(o->a8);
    free(o->a16);
    free(o->b);
    free(o->c32);
    free(o->c64);
}

/* Best seconds per call of one product over about `budget` seconds (at
 * least 3 calls); negative if the path is refused. */
static double time_product(const char *k, int s16, const bench_shape *sh, const operands *o,
                           double budget)
{
    double best = 1e30, start = now();
    for (int rep = 0; rep < 3 || now() - start < budget; rep++) {
        double t0 = now();
        int rc = s16 ? plast_igemm_s16s8_with(k, sh->M, sh->N, sh->K, o->a16, sh->K, o->b,
                                              sh->K, 0, o->c64, sh->N)
                     : plast_igemm_s8_with(k, sh->M, sh->N, sh->K, o->a8, sh->K, o->b, sh->K,
                                           0, o->c32, sh->N);
        double t = now() - t0;
        if (rc != 0)
            return -1.0;
        if (t < best)
            best = t;
    }
    return best;
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define PEAK_TARGET __attribute__((target("avx512f,avx512vnni")))
#define PEAK_CHAINS 24
#define PEAK_ITERS 2000000

/* Seconds for PEAK_ITERS rounds of PEAK_CHAINS independent vpdpbusd
 * (or vpdpwssd) on registers. */
PEAK_TARGET static double peak_loop(int words)
{
    __m512i acc[PEAK_CHAINS];
    __m512i x = _mm512_set1_epi32(0x01010101), y = _mm512_set1_epi32(0x02020202);
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm512_set1_epi32(i);
    double t0 = now();
    if (words)
        for (long it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 24
            for (int i = 0; i < PEAK_CHAINS; i++)
                acc[i] = _mm512_dpwssd_epi32(acc[i], x, y);
            __asm__ volatile("" : "+v"(x));
        }
    else
        for (long it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 24
            for (int i = 0; i < PEAK_CHAINS; i++)
                acc[i] = _mm512_dpbusd_epi32(acc[i], x, y);
            __asm__ volatile("" : "+v"(x));
        }
    double t = now() - t0;
    __m512i s = acc[0];
    for (int i = 1; i < PEAK_CHAINS; i++)
        s = _mm512_add_epi32(s, acc[i]);
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return t;
}

static void print_peak(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vnni"))
        return;
    double ops = 2.0 * PEAK_CHAINS * (double)PEAK_ITERS;
    double tb = 1e30, tw = 1e30;
    for (int r = 0; r < 5; r++) {
        double t = peak_loop(0);
        tb = t < tb ? t : tb;
        t = peak_loop(1);
        tw = t < tw ? t : tw;
    }
    printf("peak vpdpbusd zmm: %.0f Gop/s; vpdpwssd zmm: %.0f Gop/s (1 thread, registers "
           "only)\n",
           ops * 64 / tb * 1e-9, ops * 32 / tw * 1e-9);
}
#else
static void print_peak(void)
{
}
#endif

int main(int argc, char **argv)
{
    double budget = 0.3;
    if (argc > 1) {
        char *end;
        errno = 0;
        budget = strtod(argv[1], &end);
        if (errno || end == argv[1] || *end || budget <= 0.0) {
            fprintf(stderr, "igemm_bench: expected seconds > 0, found '%s'\n", argv[1]);
            return 2;
        }
    }
    printf("dispatched: %s\n", plast_igemm_kernel());
    print_peak();
    printf("%-28s %-5s %-11s %10s %10s\n", "shape (MxNxK)", "type", "kernel", "ms/call",
           "Gop/s");
    for (size_t s = 0; s < NSHAPES; s++) {
        const bench_shape *sh = &shapes[s];
        operands o = {0};
        if (make_operands(sh, &o) != 0) {
            fprintf(stderr, "igemm_bench: out of memory\n");
            free_operands(&o);
            return 1;
        }
        double ops = 2.0 * sh->M * (double)sh->N * sh->K;
        for (int s16 = 0; s16 <= 1; s16++)
            for (size_t k = 0; k < NKERNELS; k++) {
                double t = time_product(kernels[k], s16, sh, &o, budget);
                if (t < 0.0)
                    continue;
                printf("%-28s %-5s %-11s %10.3f %10.1f\n", sh->what, s16 ? "s16s8" : "s8",
                       kernels[k], t * 1e3, ops / t * 1e-9);
            }
        printf("  (%dx%dx%d)\n", sh->M, sh->N, sh->K);
        free_operands(&o);
    }
    return 0;
}
