/* test_zo_whiten.c - whitened zero-order directions (plast/zo_whiten.h):
 * the moments and the whitener against their definitions, a direction is
 * T times the stream's z of its row, a fixed-point step computed by hand,
 * exact restore, the update uses the probes' deltas, and the estimator's
 * mean is the preconditioned gradient T^2 g. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <plast/plast.h>
#include <plast/zo_whiten.h>

#include "testutil.h"

/* Samples with a large common mean and one nearly constant feature: the
 * kind of input whose second moment is far from isotropic. */
static void features(float *x, int n, int batch, uint64_t seed)
{
    plast_rng r;
    plast_rng_stream(&r, seed, PLAST_STREAM_DATA, 0);
    for (int s = 0; s < batch; s++)
        for (int j = 0; j < n; j++)
            x[s * n + j] = (float)(3.0 + (j == 0 ? 0.01 : 1.0 + j) * plast_rng_uniform(&r, -1, 1));
}

Test(zo_whiten, moments_add_augments_with_one)
{
    const float x[4] = {1, 2, 3, -1}; /* two samples of n = 2 */
    double M[9] = {0};
    plast_zo_moments_add(M, 2, x, 2);
    /* [1 2 1]^T [1 2 1] + [3 -1 1]^T [3 -1 1] */
    const double want[9] = {10, -1, 4, -1, 5, 1, 4, 1, 2};
    for (int i = 0; i < 9; i++)
        cr_assert(eq(dbl, M[i], want[i]), "M[%d]", i);
}

/* T A T = k I for A = M' + ridge I (M' = M scaled to mean eigenvalue 1),
 * T symmetric, and T's largest column has norm 1. */
Test(zo_whiten, whitener_is_the_scaled_inverse_square_root)
{
    enum { N = 6, N1 = N + 1, S = 300 };
    const double ridge = 0.1;
    float x[S * N], T[N1 * N1];
    features(x, N, S, 3);
    double M[N1 * N1] = {0}, A[N1 * N1];
    plast_zo_moments_add(M, N, x, S);
    double trace = 0;
    for (int i = 0; i < N1; i++)
        trace += M[i * N1 + i];
    for (int i = 0; i < N1 * N1; i++)
        A[i] = M[i] * N1 / trace + (i % (N1 + 1) == 0 ? ridge : 0);
    plast_err e;
    plast_mem *mem = tu_mem();
    CHECK_OK(plast_zo_whitener(T, M, N, ridge, mem, &e), e);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_SCRATCH), 0));
    double colmax = 0, k = -1;
    for (int i = 0; i < N1; i++) {
        double norm2 = 0;
        for (int j = 0; j < N1; j++) {
            cr_assert(fabsf(T[i * N1 + j] - T[j * N1 + i]) < 1e-6f, "T symmetric at %d,%d", i, j);
            norm2 += (double)T[j * N1 + i] * T[j * N1 + i];
        }
        colmax = fmax(colmax, norm2);
    }
    cr_expect(fabs(colmax - 1) < 1e-5, "largest column norm^2 %g", colmax);
    for (int i = 0; i < N1; i++)
        for (int j = 0; j < N1; j++) {
            double tat = 0;
            for (int a = 0; a < N1; a++)
                for (int b = 0; b < N1; b++)
                    tat += (double)T[i * N1 + a] * A[a * N1 + b] * T[b * N1 + j];
            if (i == j && k < 0)
                k = tat;
            cr_expect(fabs(tat - (i == j ? k : 0)) < 1e-4 * k, "(T A T)[%d][%d] = %g, k = %g", i,
                      j, tat, k);
        }
    plast_mem_destroy(mem);
}

Test(zo_whiten, whitener_refuses_empty_moments)
{
    double M[4] = {0};
    float T[4];
    plast_err e;
    plast_mem *mem = tu_mem();
    cr_assert(eq(int, plast_zo_whitener(T, M, 1, 0.1, mem, &e), PLAST_E_INVAL));
    cr_expect(strstr(e.msg, "no samples") != NULL, "%s", e.msg);
    plast_mem_destroy(mem);
}

/* A layer of `rows` x n weights at offset 3 and its bias at offset
 * 3 + rows n + 2 of the trained vector (something else in between). */
static plast_zo_dense dense_of(size_t rows, int n, const float *T, double *scratch)
{
    plast_zo_dense d = {rows, n, 3, 3 + rows * (size_t)n + 2, T, scratch};
    return d;
}

Test(zo_whiten, direction_is_T_times_the_rows_stream_values)
{
    enum { N = 3, N1 = N + 1, ROWS = 4, TOTAL = 3 + ROWS * N + 2 + ROWS };
    float T[N1 * N1];
    for (int i = 0; i < N1 * N1; i++)
        T[i] = (float)((i * 7 % 11) - 5) / 8;
    double scratch[3 * N1], z[TOTAL], zhat[N1];
    plast_zo zo = tu_zo(9, 2, 1e-3);
    plast_zo_dense d = dense_of(ROWS, N, T, scratch);
    plast_zo_directions(&zo, 1, 0, TOTAL, z);
    for (size_t r = 0; r < ROWS; r++) {
        plast_zo_dense_direction(&zo, &d, 1, r, zhat);
        for (int i = 0; i < N1; i++) {
            double want = 0;
            for (int j = 0; j < N; j++)
                want += (double)T[i * N1 + j] * z[d.w_offset + r * N + (size_t)j];
            want += (double)T[i * N1 + N] * z[d.b_offset + r];
            cr_assert(fabs(zhat[i] - want) < 1e-12, "row %zu element %d", r, i);
        }
    }
}

/* The float form moves W and b by eps zhat, and the update is
 * -eta/m sum_i c_i zhat_i. */
Test(zo_whiten, float_perturb_and_update_follow_the_directions)
{
    enum { N = 5, N1 = N + 1, ROWS = 3, M = 2 };
    float T[N1 * N1];
    for (int i = 0; i < N1 * N1; i++)
        T[i] = (float)(i % N1 == i / N1 ? 0.9 : 0.05 * ((i * 5) % 7 - 3));
    double scratch[(M + 1) * N1];
    plast_zo zo = tu_zo(4, M, 0.5);
    plast_zo_dense d = dense_of(ROWS, N, T, scratch);
    float w0[ROWS * N] = {0}, b0[ROWS] = {0}, w[ROWS * N], b[ROWS];
    double zh[M][ROWS][N1];
    for (int i = 0; i < M; i++) {
        plast_zo_dense_perturb_float(&zo, &d, i, w0, b0, w, b, zo.eps);
        for (size_t r = 0; r < ROWS; r++) {
            plast_zo_dense_direction(&zo, &d, i, r, zh[i][r]);
            for (int j = 0; j < N; j++)
                cr_assert(eq(flt, w[r * N + j], (float)(0.5 * zh[i][r][j])));
            cr_assert(eq(flt, b[r], (float)(0.5 * zh[i][r][N])));
        }
    }
    zo.eta = 0.1;
    zo.half_diff[0] = 0.2;  /* c = 0.4 */
    zo.half_diff[1] = -0.1; /* c = -0.2 */
    plast_zo_dense_update_float(&zo, &d, w0, b0);
    for (size_t r = 0; r < ROWS; r++)
        for (int j = 0; j < N1; j++) {
            double want = -0.1 * (0.4 * zh[0][r][j] - 0.2 * zh[1][r][j]) / M;
            float got = j < N ? w0[r * N + j] : b0[r];
            cr_assert(fabs(got - want) < 1e-6, "row %zu element %d: %g, expected %g", r, j, got,
                      want);
        }
}

/* By hand: n = 1, one row, T = [[3/4, 1/4], [1/4, 3/4]], z = [2, -2]
 * gives zhat = [1, -1].  s_w = 2^-10, s_b = 2^-14, eps = 2^-8: delta_w =
 * rint(4) = 4, delta_b = rint(-64) = -64.  Value, eta = 2^-4, Lp - Lm =
 * 2 * 1.5 eps: c = 1.5, kappa = eta c / eps = 24, so q_w -= 96 and
 * q_b += 1536. */
Test(zo_whiten, fixed_point_step_by_hand)
{
    const float T[4] = {0.75f, 0.25f, 0.25f, 0.75f};
    const double given[2] = {2, -2}; /* element 0: the weight, 1: the bias */
    const double sw = 0x1p-10, sb = 0x1p-14;
    int16_t qw[1] = {1000};
    int32_t qb[1] = {-7000};
    plast_qtensor tw = {0, 0, PLAST_Q_INT16, 1, qw, &sw, 1, 32767};
    plast_qtensor tb = {0, 1, PLAST_Q_INT32, 1, qb, &sb, 1, 2147483647};
    double scratch[4];
    plast_zo zo = tu_zo(0, 1, 0x1p-8);
    zo.given_z = given;
    zo.given_n = 2;
    plast_zo_dense d = {1, 1, 0, 1, T, scratch};
    cr_assert(eq(sz, plast_zo_dense_perturb_codes(&zo, &d, 0, &tw, &tb, +1), 2));
    cr_assert(eq(i16, qw[0], 1004));
    cr_assert(eq(i32, qb[0], -7064));
    plast_zo_dense_perturb_codes(&zo, &d, 0, &tw, &tb, -2);
    cr_assert(eq(i16, qw[0], 996));
    cr_assert(eq(i32, qb[0], -6936));
    plast_zo_dense_perturb_codes(&zo, &d, 0, &tw, &tb, +1);
    cr_assert(eq(i16, qw[0], 1000));
    cr_assert(eq(i32, qb[0], -7000));
    zo.estimator = PLAST_ZO_VALUE;
    zo.eta = 0x1p-4;
    zo.half_diff[0] = 1.5 * zo.eps;
    plast_zo_dense_update_codes(&zo, &d, &tw, &tb);
    cr_assert(eq(i16, qw[0], 904));
    cr_assert(eq(i32, qb[0], -5464));
}

/* Restore after +1, -2, +1 is exact over many steps, and the update is
 * sum_i kappa_i delta_i of the probes' own deltas; one weight scale per
 * row (per channel). */
Test(zo_whiten, codes_restore_exactly_and_update_uses_the_probe_deltas)
{
    enum { N = 7, N1 = N + 1, ROWS = 5, M = 3, S = 50 };
    float x[S * N], T[N1 * N1];
    double mom[N1 * N1] = {0}, scratch[(M + 1) * N1];
    features(x, N, S, 8);
    plast_zo_moments_add(mom, N, x, S);
    plast_err e;
    plast_mem *mem = tu_mem();
    CHECK_OK(plast_zo_whitener(T, mom, N, 0.1, mem, &e), e);
    const double sw[ROWS] = {0x1p-12, 0x1p-11, 0x1p-13, 0x1p-12, 0x1p-10}, sb = 0x1p-16;
    int16_t qw[ROWS * N], w_start[ROWS * N];
    int32_t qb[ROWS], b_start[ROWS];
    for (int k = 0; k < ROWS * N; k++)
        qw[k] = w_start[k] = (int16_t)(k * 37 % 2001 - 1000);
    for (int k = 0; k < ROWS; k++)
        qb[k] = b_start[k] = k * 1000 - 2000;
    plast_qtensor tw = {0, 0, PLAST_Q_INT16, ROWS * N, qw, sw, N, 32767}; /* per row */
    plast_qtensor tb = {0, 1, PLAST_Q_INT32, ROWS, qb, &sb, ROWS, 2147483647};
    plast_zo zo = tu_zo(5, M, 3 * sw[0]);
    plast_zo_dense d = dense_of(ROWS, N, T, scratch);
    int64_t dw[M][ROWS * N], db[M][ROWS];
    for (uint64_t step = 0; step < 20; step++) {
        zo.step = step;
        for (int i = 0; i < M; i++) {
            plast_zo_dense_perturb_codes(&zo, &d, i, &tw, &tb, +1);
            for (int k = 0; k < ROWS * N; k++)
                dw[i][k] = qw[k] - w_start[k];
            for (int k = 0; k < ROWS; k++)
                db[i][k] = qb[k] - b_start[k];
            plast_zo_dense_perturb_codes(&zo, &d, i, &tw, &tb, -2);
            plast_zo_dense_perturb_codes(&zo, &d, i, &tw, &tb, +1);
            cr_assert(memcmp(qw, w_start, sizeof qw) == 0 && memcmp(qb, b_start, sizeof qb) == 0,
                      "step %d probe %d", (int)step, i);
        }
    }
    for (int i = 0; i < M; i++) /* the last step's deltas: each row at its own scale */
        for (size_t r = 0; r < ROWS; r++) {
            double zh[N1];
            plast_zo_dense_direction(&zo, &d, i, r, zh);
            for (int j = 0; j < N; j++)
                cr_assert(eq(i64, dw[i][r * N + j], plast_zo_delta(zo.eps, zh[j], sw[r])));
            cr_assert(eq(i64, db[i][r], plast_zo_delta(zo.eps, zh[N], sb)));
        }
    zo.eta = 1e-3;
    zo.half_diff[0] = 0.02;
    zo.half_diff[1] = -0.05;
    zo.half_diff[2] = 0.01;
    plast_zo_dense_update_codes(&zo, &d, &tw, &tb);
    int moved = 0;
    for (int k = 0; k < ROWS * N1; k++) {
        int bias = k >= ROWS * N;
        int idx = bias ? k - ROWS * N : k;
        double acc = 0;
        for (int i = 0; i < M; i++)
            acc += plast_zo_kappa(PLAST_ZO_VALUE, zo.eta, M, zo.half_diff[i], zo.eps) *
                   (double)(bias ? db[i][idx] : dw[i][idx]);
        int64_t got = bias ? qb[idx] : qw[idx], start = bias ? b_start[idx] : w_start[idx];
        cr_assert(eq(i64, got, start - (int64_t)rint(acc)), "element %d", k);
        moved += got != start;
    }
    cr_expect(moved > ROWS * N1 / 2, "%d of %d codes moved", moved, ROWS * N1);
    plast_mem_destroy(mem);
}

/* E[(g . zhat) zhat] = T E[z z^T] T g = T^2 g: the mean of the estimate
 * over 20,000 directions has cosine > 0.98 with T^2 g, and T^2 g points
 * downhill (g . T^2 g > 0). */
Test(zo_whiten, estimate_mean_is_the_preconditioned_gradient)
{
    enum { N = 4, N1 = N + 1, ROWS = 2, DIRS = 20000, S = 100 };
    float x[S * N], T[N1 * N1];
    double mom[N1 * N1] = {0}, scratch[2 * N1];
    features(x, N, S, 21);
    plast_zo_moments_add(mom, N, x, S);
    plast_err e;
    plast_mem *mem = tu_mem();
    CHECK_OK(plast_zo_whitener(T, mom, N, 0.1, mem, &e), e);
    const double g[ROWS][N1] = {{0.3, -1.0, 0.2, 0.5, -0.4}, {-0.7, 0.1, 0.9, -0.2, 0.6}};
    double mean[ROWS][N1] = {{0}}, want[ROWS][N1] = {{0}};
    plast_zo zo = tu_zo(0, 1, 1e-3);
    plast_zo_dense d = dense_of(ROWS, N, T, scratch);
    for (uint64_t t = 0; t < DIRS; t++) {
        zo.step = t;
        double zh[ROWS][N1], dot = 0;
        for (size_t r = 0; r < ROWS; r++) {
            plast_zo_dense_direction(&zo, &d, 0, r, zh[r]);
            for (int j = 0; j < N1; j++)
                dot += g[r][j] * zh[r][j];
        }
        for (size_t r = 0; r < ROWS; r++)
            for (int j = 0; j < N1; j++)
                mean[r][j] += dot * zh[r][j] / DIRS;
    }
    double dot = 0, nm = 0, nw = 0, descent = 0;
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < N1; i++) {
            for (int a = 0; a < N1; a++)
                for (int b = 0; b < N1; b++)
                    want[r][i] += (double)T[i * N1 + a] * T[a * N1 + b] * g[r][b];
            dot += mean[r][i] * want[r][i];
            nm += mean[r][i] * mean[r][i];
            nw += want[r][i] * want[r][i];
            descent += g[r][i] * want[r][i];
        }
    double cosine = dot / sqrt(nm * nw);
    cr_expect(cosine > 0.98, "cosine with T^2 g: %g", cosine);
    cr_expect(descent > 0, "g . T^2 g = %g", descent);
    plast_mem_destroy(mem);
}
