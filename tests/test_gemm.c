/* test_gemm.c - plast_gemm against a double-precision reference. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/gemm.h"

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
    plast_gemm(t->ta, t->tb, t->M, t->N, t->K, t->alpha, A.v, A.ld, B.v, B.ld, t->beta, C.v,
               C.ld);
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

Test(gemm, nn_odd_sizes) { sweep(0, 0, 1.0f, 0.0f, 0, 0); }
Test(gemm, nt_odd_sizes) { sweep(0, 1, 1.0f, 0.0f, 0, 0); }
Test(gemm, tn_odd_sizes) { sweep(1, 0, 1.0f, 0.0f, 0, 0); }
Test(gemm, tt_odd_sizes) { sweep(1, 1, 1.0f, 0.0f, 0, 0); }

Test(gemm, leading_dimensions_larger_than_columns)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            sweep(ta, tb, 1.0f, 0.0f, 3, 0);
}

Test(gemm, alpha_and_beta)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            sweep(ta, tb, 0.75f, 1.0f, 1, 0);
            sweep(ta, tb, -2.5f, 0.5f, 0, 0);
        }
}

Test(gemm, beta_zero_ignores_nan_in_c)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            sweep(ta, tb, 1.5f, 0.0f, 2, 1);
}

/* Sizes past every block edge: K over KC (several K blocks), M over MC,
 * N over NC, with transposes and beta. */
Test(gemm, larger_than_the_blocks)
{
    static const gemm_case cases[] = {
        {0, 0, 7, 9, 600, 1.0f, 0.0f, 0, 0, 0},   {1, 1, 7, 9, 600, 1.0f, 1.0f, 1, 2, 3},
        {0, 1, 197, 33, 257, 0.5f, 2.0f, 0, 0, 1}, {1, 0, 131, 70, 513, 1.0f, 0.0f, 2, 0, 0},
        {0, 0, 5, 2100, 40, 1.0f, -1.0f, 0, 3, 0}, {1, 1, 100, 2055, 3, 2.0f, 0.0f, 0, 0, 5},
        {0, 1, 128, 256, 784, 1.0f, 0.0f, 0, 0, 0}, {1, 0, 256, 784, 128, 1.0f, 1.0f, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case(&cases[i], 0);
        check_case(&cases[i], cases[i].beta == 0.0f);
    }
}

/* Small integers: every product and sum is exact in fp32 in any order. */
Test(gemm, exact_on_small_integers)
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
            plast_gemm(ta, tb, M, N, K, 1.0f, ta ? at : a, ta ? M : K, tb ? bt : b, tb ? K : N,
                       0.0f, c, N);
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

Test(gemm, k_zero_or_alpha_zero_scales_c)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 1, 1, 1, 1, 1};
    float c[4] = {1, -2, 3, NAN};
    plast_gemm(0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 0.5f, c, 2);
    cr_assert(eq(flt, c[0], 0.5f));
    cr_assert(eq(flt, c[1], -1.0f));
    cr_assert(eq(flt, c[2], 1.5f));
    cr_assert(isnan(c[3]) != 0);
    plast_gemm(0, 0, 2, 2, 3, 0.0f, a, 3, b, 2, 0.0f, c, 2);
    for (int i = 0; i < 4; i++)
        cr_assert(eq(flt, c[i], 0.0f), "c[%d] = %g", i, (double)c[i]);
}

/* The bits depend on the values only: not on padding, not on a repeat. */
Test(gemm, deterministic_and_layout_independent)
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
    plast_gemm(0, 0, M, N, K, 1.0f, A.v, K, B.v, N, 0.0f, c1, N);
    plast_gemm(0, 0, M, N, K, 1.0f, A.v, K, B.v, N, 0.0f, c2, N);
    plast_gemm(0, 0, M, N, K, 1.0f, Ap.v, Ap.ld, B.v, N, 0.0f, c3, N);
    cr_assert(eq(int, memcmp(c1, c2, M * N * sizeof *c1), 0));
    cr_assert(eq(int, memcmp(c1, c3, M * N * sizeof *c1), 0));
    free(A.v);
    free(B.v);
    free(Ap.v);
    free(c1);
    free(c2);
    free(c3);
}
