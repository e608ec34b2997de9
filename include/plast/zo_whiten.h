/* plast/zo_whiten.h - whitened zero-order directions for dense layers
 * (plast's extension of QZO-FF, not in the paper; ALGORITHMS.md §5.2).
 *
 * Why.  A forward gradient along z ~ N(0, I) moves every weight by the
 * same amount of noise, whether or not the loss depends on it.  A dense
 * layer's loss curvature follows the second moment of its input, which
 * for ReLU features is dominated by their mean: a few directions are
 * steep, most are nearly flat.  With isotropic z the step size is bounded
 * by the steep directions, and the flat ones, which separate the classes,
 * learn only by a random walk.  Drawing the directions from N(0, T^2),
 * T = (M + ridge I)^(-1/2), makes the curvature even in every direction.
 *
 * What.  The weight W [rows x n] and bias b [rows] of one dense layer form
 * the augmented matrix [W | b], whose row r acts on the input augmented
 * with a constant 1.  M is the second moment of that augmented input,
 * measured before training (plast_zo_moments_add), scaled to mean
 * eigenvalue 1.  Row r's direction is
 *     zhat_r = T [z_W[r, 0..n-1], z_b[r]]
 * where z_W and z_b are the stream values of those elements (plast/zo.h:
 * element g of the trained vector draws the g-th value), so a direction is
 * regenerated from the seed like an isotropic one and never stored.  T is
 * scaled so that its largest column has norm 1: every zhat element has
 * variance at most 1, and the |z| <= 4 clip and the headroom
 * Dmax = rint(4 eps / s) of the fixed-point form keep their meaning.
 *
 * The estimator then has mean T^2 grad, a preconditioned gradient (T^2 is
 * positive definite, so it still points downhill); the update follows
 * the probed direction exactly as the isotropic form does:
 *     float:  w -= eta (1/m) sum_i c_i zhat_i
 *     fixed:  delta = rint(eps clip(zhat) / s),
 *             q <- clamp(q - round(sum_i kappa_i delta_i), -(qmax - Dmax), qmax - Dmax)
 * with eps in real units for the whole row (eps_lsb does not apply) and no
 * sparsity mask.  Stochastic rounding draws the element's uniform as the
 * isotropic form does.
 *
 * Memory: M is (n+1)^2 doubles while the statistics are gathered, T is
 * (n+1)^2 floats for the rest of the run, and each call borrows
 * (m+1)(n+1) doubles of scratch from the caller.  Threads: none. */
#ifndef PLAST_ZO_WHITEN_H
#define PLAST_ZO_WHITEN_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "mem.h"
#include "qmodel.h"
#include "zo.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One whitened dense layer, as the functions below read it. */
typedef struct plast_zo_dense {
    size_t rows;        /* output units */
    int n;              /* inputs: directions have n + 1 elements */
    uint64_t w_offset;  /* weight's first element in the trained vector */
    uint64_t b_offset;  /* bias's first element in the trained vector */
    const float *T;     /* (n+1) x (n+1), symmetric (plast_zo_whitener) */
    double *scratch;    /* (m+1) (n+1) doubles lent by the caller */
} plast_zo_dense;

/* Doubles of scratch a call needs for m probes. */
size_t plast_zo_dense_scratch(int n, int m);

/* ---- the whitener ---- */

/* M += [x 1]^T [x 1] for each of the `batch` samples x[n] (upper and lower
 * triangles alike: M is (n+1) x (n+1), row-major). */
void plast_zo_moments_add(double *M, int n, const float *x, int batch);
/* T = (M' + ridge I)^(-1/2) / c, with M' = M (n+1) / trace(M) and c the
 * largest column norm of the unscaled T.  M is overwritten (it is the
 * eigenvector work space); `mem` lends (n+1)^2 doubles of scratch.
 * PLAST_E_INVAL if M has no positive trace (no samples). */
int plast_zo_whitener(float *T, double *M, int n, double ridge, plast_mem *mem, plast_err *e);

/* ---- directions ---- */

/* zhat of probe `probe` for row `row` into zhat[n+1] (weights, then the
 * bias).  For tests and diagnostics. */
void plast_zo_dense_direction(const plast_zo *zo, const plast_zo_dense *d, int probe,
                              size_t row, double *zhat);

/* ---- float form ---- */

/* W = W0 + sign_eps zhat (rows' first n values), b = b0 + sign_eps zhat[n]. */
void plast_zo_dense_perturb_float(const plast_zo *zo, const plast_zo_dense *d, int probe,
                                  const float *w0, const float *b0, float *w, float *b,
                                  double sign_eps);
/* W, b -= eta (1/m) sum_i c_i zhat_i (zo->half_diff filled, eps = zo->eps). */
void plast_zo_dense_update_float(const plast_zo *zo, const plast_zo_dense *d, float *w,
                                 float *b);

/* ---- fixed-point form ---- */

/* Codes += mult * delta of probe `probe` (mult +1, -2, +1); returns the
 * number of non-zero delta codes (weights and biases). */
size_t plast_zo_dense_perturb_codes(const plast_zo *zo, const plast_zo_dense *d, int probe,
                                    plast_qtensor *qw, plast_qtensor *qb, int mult);
/* The same count, touching nothing. */
size_t plast_zo_dense_count_nonzero(const plast_zo *zo, const plast_zo_dense *d, int probe,
                                    const plast_qtensor *qw, const plast_qtensor *qb);
/* The update of every code of the layer (zo->half_diff filled). */
void plast_zo_dense_update_codes(const plast_zo *zo, const plast_zo_dense *d, plast_qtensor *qw,
                                 plast_qtensor *qb);

#ifdef __cplusplus
}
#endif
#endif
