/* zo_stream.h - the regenerated streams of zero-order directions, shared
 * by zo.c and zo_whiten.c (internal): z of each trained element, the
 * sparsity mask and the stochastic-rounding uniforms, as plast/zo.h
 * describes them. */
#ifndef PLAST_ZO_STREAM_H
#define PLAST_ZO_STREAM_H

#include "plast/zo.h"

enum { ROLE_PROBE = 0, ROLE_MASK = 1, ROLE_ROUND = 2 };

/* z of consecutive elements of one probe, from the element at `offset`. */
typedef struct zgen {
    plast_rng rng;
    double pair[2];
    int next;             /* next value of pair to hand out; 2 = draw a pair */
    const double *given;  /* test hook: z read from here */
} zgen;

void zgen_init(zgen *g, const plast_zo *zo, int probe, uint64_t offset);
double zgen_next(zgen *g);

/* One uniform per element from a step stream (mask, rounding). */
typedef struct ugen {
    plast_rng rng;
    int on;
} ugen;

void ugen_init(ugen *u, const plast_zo *zo, unsigned role, uint64_t offset, int on);
double ugen_next(ugen *u);

/* clamp(q - round(acc), -lim, lim), rounding to nearest or, if
 * stochastic, floor(acc + u); in double, as acc may be huge or NaN (a NaN
 * leaves q). */
int64_t zo_updated_code(int64_t q, double acc, double u, int stochastic, int64_t lim);

#endif
