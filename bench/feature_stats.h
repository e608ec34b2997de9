/* feature_stats.h - how far a layer's input is from isotropic: the
 * statistics behind the README's account of why isotropic forward
 * gradients stall on Q1-rot (bench/lastmile features). */
#ifndef PLAST_BENCH_FEATURE_STATS_H
#define PLAST_BENCH_FEATURE_STATS_H

#include <stddef.h>

typedef struct feature_stats {
    size_t samples;
    int features;
    double mean_sq;       /* E|x|^2 */
    double sq_mean;       /* |E x|^2 */
    double top;           /* largest eigenvalue of E[x x^T] */
    double trace_over_top;
    int dead;             /* features that are 0 in every sample */
} feature_stats;

/* Running sums: M[d x d] += x x^T and sum[d] += x for n samples x[n x d]. */
void feature_moments_add(double *M, double *sum, const float *x, int n, int d);
/* The statistics of `samples` samples from those sums (the top eigenvalue
 * by power iteration from the all-ones vector). */
void feature_stats_of(const double *M, const double *sum, size_t samples, int d,
                      feature_stats *out);

#endif
