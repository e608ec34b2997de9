/* plast/zo.h - zero-order forward gradients (QZO-FF, ALGORITHMS.md §5):
 * random directions regenerated from their seeds, perturbation of float
 * tensors and of fixed-point codes, and the update, one tensor at a time.
 *
 * Directions.  Probe i of step t draws z from the PCG32 stream
 * (seed, PERTURB, index t*m + i) of §1.4: the trained elements of all
 * tensors, in the order the caller lists them, form one vector, and element
 * g (its `offset` + position in the tensor) is the (g % 2)-th value of the
 * (g / 2)-th Box-Muller pair (plast_rng_normal2), reached with
 * plast_rng_advance.  So a tensor's z can be regenerated alone, and every
 * function below regenerates it in the same way: z is never stored.  With
 * sparsity p, element g sits the step out (z = 0 for every probe) when the
 * g-th output u of the step's mask stream has u < p; stochastic rounding of
 * the update adds the g-th output of the step's rounding stream.  The mask
 * and rounding streams are PERTURB streams of index t with a role in bits
 * 40-47 of the stream selector (1 = mask, 2 = rounding), so they are other
 * streams than the probes'.  Bits of t*m + i above 32 are folded into the
 * initial state (runs that long only).
 *
 * Float form: w = w0 ± eps z, and the update w -= eta (1/m) sum_i c_i z_i.
 * Fixed form (codes q, scale s per group of elements):
 *   delta = rint(eps * clip(z, -4, 4) / s), q += delta, q -= 2 delta, ...
 *   kappa_i = eta * c_i / (m * eps)
 *   q <- clamp(q - round(sum_i kappa_i delta_i), -(qmax - Dmax), qmax - Dmax)
 * with Dmax = rint(4 eps / s): perturbations never saturate, so restore is
 * exact.  c_i = (Lp_i - Lm_i) / (2 eps) (estimator value) or
 * sgn(Lp_i - Lm_i) (sign).  eps may be a number of LSBs of each scale group
 * (eps_lsb), which makes it a per-group eps_g = eps_lsb * s_g; c_i and
 * kappa_i then use eps_g, which keeps value mode unbiased:
 * E[(sum_g eps_g grad_g . z_g) z_g / eps_g] = grad_g.
 *
 * Threads: none.  Nothing here allocates. */
#ifndef PLAST_ZO_H
#define PLAST_ZO_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "mem.h"
#include "qmodel.h"
#include "rng.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLAST_ZO_MAX_PROBES 64 /* m: probes regenerated side by side */
#define PLAST_ZO_ZCLIP 4.0     /* |z| bound in fixed point */

typedef enum plast_zo_estimator {
    PLAST_ZO_VALUE = 0, /* c = (Lp - Lm) / (2 eps)  (m-SPSA) */
    PLAST_ZO_SIGN = 1   /* c = sgn(Lp - Lm)        (sign-m-SPSA) */
} plast_zo_estimator;

typedef enum plast_zo_rounding {
    PLAST_ZO_NEAREST = 0,   /* rint: half to even */
    PLAST_ZO_STOCHASTIC = 1 /* floor(x + u), u from the rounding stream */
} plast_zo_rounding;

/* One step of the estimator: its directions, eps, and (after the probes)
 * what the update needs.  A plain value the caller fills. */
typedef struct plast_zo {
    uint64_t seed;          /* run seed */
    uint64_t step;          /* training step */
    int m;                  /* probes, 1..PLAST_ZO_MAX_PROBES */
    double sparsity;        /* p in [0, 1): chance an element sits the step out */
    double eps;             /* perturbation size (real units) */
    double eps_lsb;         /* > 0: fixed point uses eps_g = eps_lsb * s_g instead */
    plast_zo_estimator estimator;
    plast_zo_rounding rounding;  /* fixed-point update only */
    double eta;                  /* learning rate */
    double half_diff[PLAST_ZO_MAX_PROBES]; /* (Lp_i - Lm_i) / 2 of each probe */
    /* Test hook: when not NULL, z of probe i at element g is
     * given_z[i * given_n + g] instead of the stream's (the mask still
     * applies). */
    const double *given_z;
    size_t given_n;
} plast_zo;

/* ---- per-element arithmetic (exposed for hand-computed tests) ---- */

/* clip(z, -4, 4) */
double plast_zo_clip(double z);
/* rint(eps * clip(z) / s) */
int64_t plast_zo_delta(double eps, double z, double s);
/* rint(4 eps / s), the largest |delta| */
int64_t plast_zo_dmax(double eps, double s);
/* c_i: (Lp - Lm)/(2 eps) = half_diff / eps, or sgn(half_diff) */
double plast_zo_coef(plast_zo_estimator est, double half_diff, double eps);
/* kappa_i = eta * c_i / (m * eps) */
double plast_zo_kappa(plast_zo_estimator est, double eta, int m, double half_diff, double eps);

/* ---- directions ---- */

/* z of probe `probe` for elements offset .. offset+n-1 into z[n] (float
 * form: not clipped, the mask applied).  For tests and diagnostics: the
 * rule never stores a tensor's z. */
void plast_zo_directions(const plast_zo *zo, int probe, uint64_t offset, size_t n, double *z);

/* ---- float form ---- */

/* w[e] = (float)(w0[e] + sign_eps * z[e]) for probe `probe` (sign_eps =
 * +eps or -eps).  w0 is the unperturbed copy: every probe starts from it,
 * so no rounding accumulates.  w and w0 may not alias. */
void plast_zo_perturb_float(const plast_zo *zo, int probe, uint64_t offset, const float *w0,
                            float *w, size_t n, double sign_eps);
/* w[e] = (float)(w[e] - sum_i (eta c_i / m) z_i[e]), the m probes'
 * streams regenerated in lockstep (zo->half_diff filled, eps = zo->eps). */
void plast_zo_update_float(const plast_zo *zo, uint64_t offset, float *w, size_t n);

/* ---- fixed-point form ---- */

/* eps of scale group g of t: eps_lsb * scale[g] if eps_lsb > 0, else eps. */
double plast_zo_eps_of(const plast_zo *zo, const plast_qtensor *t, size_t g);
/* Largest Dmax over t's scale groups. */
int64_t plast_zo_tensor_dmax(const plast_zo *zo, const plast_qtensor *t);
/* Refuse a tensor whose perturbation needs more than a quarter of the code
 * range (Dmax > qmax/4): PLAST_E_INVAL naming `name`, eps, s and the bit
 * width. */
int plast_zo_check_headroom(const plast_zo *zo, const plast_qtensor *t, const char *name,
                            plast_err *e);
/* Clamp t's codes into [-(qmax - Dmax_g), qmax - Dmax_g] (once, before the
 * first probe); returns how many codes moved. */
size_t plast_zo_clamp_codes(const plast_zo *zo, plast_qtensor *t);
/* Smallest eps_g / s_g over t's groups (< 0.5: perturbation underflow). */
double plast_zo_eps_ratio(const plast_zo *zo, const plast_qtensor *t);
/* q += mult * delta for probe `probe` (mult +1, -2, +1: +, -, back);
 * returns the number of non-zero delta codes.  Within the headroom nothing
 * saturates, so the three calls restore every code exactly. */
size_t plast_zo_perturb_codes(const plast_zo *zo, int probe, uint64_t offset, plast_qtensor *t,
                              int mult);
/* Number of non-zero delta codes of probe `probe` over t, touching nothing
 * (the underflow measure: divide by t->count). */
size_t plast_zo_count_nonzero(const plast_zo *zo, int probe, uint64_t offset,
                              const plast_qtensor *t);
/* The update q <- clamp(q - round(sum_i kappa_i delta_i)) over t, the m
 * streams regenerated in lockstep (zo->half_diff filled). */
void plast_zo_update_codes(const plast_zo *zo, uint64_t offset, plast_qtensor *t);

/* ---- checkpoints of a fixed-point model in training ---- */

typedef struct plast_writer plast_writer; /* checkpoint.h */
typedef struct plast_reader plast_reader;

/* Write q's calibration statistics (plast_qmodel_calib_get), whether it is
 * finished, and every tensor's type, size, scales (bias scales only once
 * finished) and codes.  `mem` lends a scratch buffer. */
int plast_zo_save_qmodel(plast_qmodel *q, int finished, plast_mem *mem, plast_writer *w,
                         plast_err *e);
/* Read them into q, a fresh (not finished) qmodel of the same model built
 * from the same initial weights: the statistics are set, q is finished if
 * the saved one was (*finished = 1), and every code is restored, so q
 * computes exactly what the saved one did.  A tensor of another type or
 * size, or a scale that differs, is PLAST_E_DATA naming the file. */
int plast_zo_load_qmodel(plast_qmodel *q, int *finished, plast_mem *mem, plast_reader *rd,
                         plast_err *e);

#ifdef __cplusplus
}
#endif
#endif
