/* feature_stats.c - see feature_stats.h. */
#include "feature_stats.h"

#include <math.h>
#include <stdlib.h>

#define POWER_ITERATIONS 500

void feature_moments_add(double *M, double *sum, const float *x, int n, int d)
{
    for (int s = 0; s < n; s++) {
        const float *xs = x + (size_t)s * (size_t)d;
        for (int i = 0; i < d; i++) {
            sum[i] += xs[i];
            for (int j = 0; j < d; j++)
                M[(size_t)i * (size_t)d + (size_t)j] += (double)xs[i] * xs[j];
        }
    }
}

/* Largest eigenvalue of the symmetric positive semi-definite A[d x d]. */
static double top_eigenvalue(const double *A, int d)
{
    double *v = malloc(2 * (size_t)d * sizeof *v), lambda = 0;
    if (!v)
        return NAN;
    double *w = v + d;
    for (int i = 0; i < d; i++)
        v[i] = 1 / sqrt(d);
    for (int it = 0; it < POWER_ITERATIONS; it++) {
        double norm = 0;
        for (int i = 0; i < d; i++) {
            w[i] = 0;
            for (int j = 0; j < d; j++)
                w[i] += A[(size_t)i * (size_t)d + (size_t)j] * v[j];
            norm += w[i] * w[i];
        }
        lambda = sqrt(norm); /* |A v| with |v| = 1 */
        if (lambda == 0)
            break;
        for (int i = 0; i < d; i++)
            v[i] = w[i] / lambda;
    }
    free(v);
    return lambda;
}

void feature_stats_of(const double *M, const double *sum, size_t samples, int d,
                      feature_stats *out)
{
    double *A = malloc((size_t)d * (size_t)d * sizeof *A), trace = 0, sq_mean = 0;
    out->samples = samples;
    out->features = d;
    out->dead = 0;
    for (int i = 0; i < d; i++) {
        double mi = sum[i] / (double)samples, mii = M[(size_t)i * (size_t)d + (size_t)i];
        trace += mii / (double)samples;
        sq_mean += mi * mi;
        out->dead += mii == 0;
    }
    out->mean_sq = trace;
    out->sq_mean = sq_mean;
    out->top = NAN;
    if (A) {
        for (size_t i = 0; i < (size_t)d * (size_t)d; i++)
            A[i] = M[i] / (double)samples;
        out->top = top_eigenvalue(A, d);
        free(A);
    }
    out->trace_over_top = trace / out->top;
}
