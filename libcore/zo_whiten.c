/* zo_whiten.c - whitened zero-order directions for dense layers (see
 * plast/zo_whiten.h). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "plast/zo_whiten.h"
#include "zo_stream.h"

#define JACOBI_SWEEPS 60

size_t plast_zo_dense_scratch(int n, int m)
{
    return (size_t)(m + 1) * (size_t)(n + 1);
}

/* ---- the whitener ---- */

void plast_zo_moments_add(double *M, int n, const float *x, int batch)
{
    size_t n1 = (size_t)n + 1;
    for (int s = 0; s < batch; s++) {
        const float *xs = x + (size_t)s * (size_t)n;
        for (size_t i = 0; i < n1; i++) {
            double xi = i < (size_t)n ? xs[i] : 1.0;
            double *row = M + i * n1;
            for (size_t j = 0; j < (size_t)n; j++)
                row[j] += xi * xs[j];
            row[n] += xi;
        }
    }
}

/* Rotate rows and columns p, q of the symmetric A[n1 x n1] so that A[p][q]
 * becomes 0, and the columns of V with them (cyclic Jacobi). */
static void jacobi_rotate(double *A, double *V, size_t n1, size_t p, size_t q)
{
    double apq = A[p * n1 + q];
    double theta = (A[q * n1 + q] - A[p * n1 + p]) / (2 * apq);
    double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
    double c = 1 / sqrt(t * t + 1), s = t * c;
    for (size_t k = 0; k < n1; k++) { /* A <- A P */
        double akp = A[k * n1 + p], akq = A[k * n1 + q];
        A[k * n1 + p] = c * akp - s * akq;
        A[k * n1 + q] = s * akp + c * akq;
    }
    for (size_t k = 0; k < n1; k++) { /* A <- P^T A */
        double apk = A[p * n1 + k], aqk = A[q * n1 + k];
        A[p * n1 + k] = c * apk - s * aqk;
        A[q * n1 + k] = s * apk + c * aqk;
    }
    for (size_t k = 0; k < n1; k++) { /* V <- V P */
        double vkp = V[k * n1 + p], vkq = V[k * n1 + q];
        V[k * n1 + p] = c * vkp - s * vkq;
        V[k * n1 + q] = s * vkp + c * vkq;
    }
}

/* A = V diag(A) V^T: A's diagonal ends as the eigenvalues, V's columns as
 * the eigenvectors.  Sweeps until the off-diagonal mass is negligible. */
static void jacobi_eigen(double *A, double *V, size_t n1)
{
    for (size_t i = 0; i < n1 * n1; i++)
        V[i] = i % (n1 + 1) == 0;
    double scale = 0;
    for (size_t i = 0; i < n1; i++)
        scale += A[i * n1 + i] * A[i * n1 + i];
    for (int sweep = 0; sweep < JACOBI_SWEEPS; sweep++) {
        double off = 0;
        for (size_t p = 0; p < n1; p++)
            for (size_t q = p + 1; q < n1; q++)
                off += A[p * n1 + q] * A[p * n1 + q];
        if (off <= 1e-30 * scale)
            return;
        for (size_t p = 0; p < n1; p++)
            for (size_t q = p + 1; q < n1; q++)
                if (A[p * n1 + q] != 0)
                    jacobi_rotate(A, V, n1, p, q);
    }
}

int plast_zo_whitener(float *T, double *M, int n, double ridge, plast_mem *mem, plast_err *e)
{
    size_t n1 = (size_t)n + 1;
    double trace = 0;
    for (size_t i = 0; i < n1; i++)
        trace += M[i * n1 + i];
    if (!(trace > 0) || !isfinite(trace))
        return plast_err_set(e, PLAST_E_INVAL,
                             "whitening: the input's second moment has trace %g (no samples?)",
                             trace);
    double *V = plast_mem_alloc(mem, PLAST_MEM_SCRATCH, (n1 * n1 + n1) * sizeof *V);
    if (!V)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory computing a whitener");
    double *inv_sqrt = V + n1 * n1;
    for (size_t i = 0; i < n1 * n1; i++)
        M[i] *= (double)n1 / trace;
    for (size_t i = 0; i < n1; i++)
        M[i * n1 + i] += ridge;
    jacobi_eigen(M, V, n1);
    for (size_t k = 0; k < n1; k++)
        inv_sqrt[k] = 1 / sqrt(M[k * n1 + k]); /* eigenvalues >= ridge > 0 */
    /* T = V diag(1/sqrt(w)) V^T into M, then scaled so that its largest
     * column has norm 1 */
    double colmax = 0;
    for (size_t i = 0; i < n1; i++) {
        for (size_t j = 0; j < n1; j++) {
            double t = 0;
            for (size_t k = 0; k < n1; k++)
                t += V[i * n1 + k] * V[j * n1 + k] * inv_sqrt[k];
            M[i * n1 + j] = t;
        }
    }
    for (size_t j = 0; j < n1; j++) {
        double norm2 = 0;
        for (size_t i = 0; i < n1; i++)
            norm2 += M[i * n1 + j] * M[i * n1 + j];
        colmax = fmax(colmax, norm2);
    }
    double inv = 1 / sqrt(colmax);
    for (size_t i = 0; i < n1 * n1; i++)
        T[i] = (float)(M[i] * inv);
    plast_mem_free(mem, V);
    return PLAST_OK;
}

/* ---- directions: one row of [W | b] at a time ---- */

typedef struct rowgen {
    zgen w, b;
} rowgen;

static void rowgen_init(rowgen *g, const plast_zo *zo, const plast_zo_dense *d, int probe,
                        size_t row)
{
    zgen_init(&g->w, zo, probe, d->w_offset + row * (size_t)d->n);
    zgen_init(&g->b, zo, probe, d->b_offset + row);
}

/* The next row's zhat = T z into zhat[n+1]; z[n+1] is work space. */
static void rowgen_next(rowgen *g, const plast_zo_dense *d, double *z, double *zhat)
{
    size_t n1 = (size_t)d->n + 1;
    for (int j = 0; j < d->n; j++)
        z[j] = zgen_next(&g->w);
    z[d->n] = zgen_next(&g->b);
    for (size_t i = 0; i < n1; i++) {
        const float *Ti = d->T + i * n1;
        double t = 0;
        for (size_t j = 0; j < n1; j++)
            t += (double)Ti[j] * z[j];
        zhat[i] = t;
    }
}

void plast_zo_dense_direction(const plast_zo *zo, const plast_zo_dense *d, int probe,
                              size_t row, double *zhat)
{
    rowgen g;
    rowgen_init(&g, zo, d, probe, row);
    rowgen_next(&g, d, d->scratch, zhat);
}

/* ---- float form ---- */

void plast_zo_dense_perturb_float(const plast_zo *zo, const plast_zo_dense *d, int probe,
                                  const float *w0, const float *b0, float *w, float *b,
                                  double sign_eps)
{
    size_t n = (size_t)d->n;
    double *z = d->scratch, *zhat = z + n + 1;
    rowgen g;
    rowgen_init(&g, zo, d, probe, 0);
    for (size_t r = 0; r < d->rows; r++) {
        rowgen_next(&g, d, z, zhat);
        for (size_t j = 0; j < n; j++)
            w[r * n + j] = (float)((double)w0[r * n + j] + sign_eps * zhat[j]);
        b[r] = (float)((double)b0[r] + sign_eps * zhat[n]);
    }
}

/* w -= step unless the step is 0 (-0.0 - (-0.0) would be +0.0) */
static void take_step(float *w, double step)
{
    if (step != 0)
        *w = (float)((double)*w - step);
}

void plast_zo_dense_update_float(const plast_zo *zo, const plast_zo_dense *d, float *w,
                                 float *b)
{
    size_t n = (size_t)d->n, n1 = n + 1;
    rowgen g[PLAST_ZO_MAX_PROBES];
    double coef[PLAST_ZO_MAX_PROBES], *z = d->scratch;
    for (int i = 0; i < zo->m; i++) {
        rowgen_init(&g[i], zo, d, i, 0);
        coef[i] = zo->eta * plast_zo_coef(zo->estimator, zo->half_diff[i], zo->eps) / zo->m;
    }
    for (size_t r = 0; r < d->rows; r++) {
        for (int i = 0; i < zo->m; i++)
            rowgen_next(&g[i], d, z, z + n1 * (size_t)(i + 1));
        for (size_t j = 0; j < n1; j++) {
            double step = 0;
            for (int i = 0; i < zo->m; i++)
                step += coef[i] * z[n1 * (size_t)(i + 1) + j];
            take_step(j < n ? &w[r * n + j] : &b[r], step);
        }
    }
}

/* ---- fixed-point form ---- */

/* Scale of element j of row r: the weight's group, or the bias's. */
static double scale_at(const plast_zo_dense *d, const plast_qtensor *qw, const plast_qtensor *qb,
                       size_t r, size_t j)
{
    size_t n = (size_t)d->n;
    return j < n ? qw->scale[(r * n + j) / qw->group] : qb->scale[r / qb->group];
}

/* Walks the delta codes of one probe; apply: add mult * delta. */
static size_t walk_dense(const plast_zo *zo, const plast_zo_dense *d, int probe,
                         plast_qtensor *qw, plast_qtensor *qb, int mult, int apply)
{
    size_t n = (size_t)d->n, nonzero = 0;
    double *z = d->scratch, *zhat = z + n + 1;
    rowgen g;
    rowgen_init(&g, zo, d, probe, 0);
    for (size_t r = 0; r < d->rows; r++) {
        rowgen_next(&g, d, z, zhat);
        for (size_t j = 0; j <= n; j++) {
            int64_t delta = plast_zo_delta(zo->eps, zhat[j], scale_at(d, qw, qb, r, j));
            nonzero += delta != 0;
            if (!apply || !delta)
                continue;
            plast_qtensor *t = j < n ? qw : qb;
            size_t e = j < n ? r * n + j : r;
            plast_qtensor_set(t, e, plast_qtensor_get(t, e) + mult * delta);
        }
    }
    return nonzero;
}

size_t plast_zo_dense_perturb_codes(const plast_zo *zo, const plast_zo_dense *d, int probe,
                                    plast_qtensor *qw, plast_qtensor *qb, int mult)
{
    return walk_dense(zo, d, probe, qw, qb, mult, 1);
}

size_t plast_zo_dense_count_nonzero(const plast_zo *zo, const plast_zo_dense *d, int probe,
                                    const plast_qtensor *qw, const plast_qtensor *qb)
{
    return walk_dense(zo, d, probe, (plast_qtensor *)qw, (plast_qtensor *)qb, 0, 0);
}

void plast_zo_dense_update_codes(const plast_zo *zo, const plast_zo_dense *d, plast_qtensor *qw,
                                 plast_qtensor *qb)
{
    size_t n = (size_t)d->n, n1 = n + 1;
    rowgen g[PLAST_ZO_MAX_PROBES];
    double kappa[PLAST_ZO_MAX_PROBES], *z = d->scratch;
    int stochastic = zo->rounding == PLAST_ZO_STOCHASTIC;
    ugen round_w, round_b;
    ugen_init(&round_w, zo, ROLE_ROUND, d->w_offset, stochastic);
    ugen_init(&round_b, zo, ROLE_ROUND, d->b_offset, stochastic);
    for (int i = 0; i < zo->m; i++) {
        rowgen_init(&g[i], zo, d, i, 0);
        kappa[i] = plast_zo_kappa(zo->estimator, zo->eta, zo->m, zo->half_diff[i], zo->eps);
    }
    for (size_t r = 0; r < d->rows; r++) {
        for (int i = 0; i < zo->m; i++)
            rowgen_next(&g[i], d, z, z + n1 * (size_t)(i + 1));
        for (size_t j = 0; j < n1; j++) {
            double s = scale_at(d, qw, qb, r, j), acc = 0;
            for (int i = 0; i < zo->m; i++)
                acc += kappa[i] * (double)plast_zo_delta(zo->eps, z[n1 * (size_t)(i + 1) + j], s);
            plast_qtensor *t = j < n ? qw : qb;
            size_t e = j < n ? r * n + j : r;
            double u = ugen_next(j < n ? &round_w : &round_b);
            int64_t lim = t->qmax - plast_zo_dmax(zo->eps, s);
            plast_qtensor_set(t, e, zo_updated_code(plast_qtensor_get(t, e), acc, u, stochastic,
                                                    lim));
        }
    }
}
