/* zo.c - zero-order forward gradients: regenerated directions, perturbation
 * and update of float tensors and fixed-point codes (see plast/zo.h). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "plast/checkpoint.h"
#include "plast/zo.h"
#include "zo_stream.h"

/* PERTURB stream `index` with a role: role 0 and index < 2^32 is exactly
 * plast_rng_stream(seed, PERTURB, index). */
static void perturb_stream(plast_rng *r, uint64_t seed, unsigned role, uint64_t index)
{
    uint64_t sel = ((uint64_t)role << 40) | ((uint64_t)PLAST_STREAM_PERTURB << 32) |
                   (index & 0xffffffffu);
    plast_rng_seed(r, seed ^ ((index >> 32) * 0x9e3779b97f4a7c15u), sel);
}

/* ---- the generators of one element sequence ---- */

void zgen_init(zgen *g, const plast_zo *zo, int probe, uint64_t offset)
{
    g->given = NULL;
    if (zo->given_z) {
        g->given = zo->given_z + (size_t)probe * zo->given_n + offset;
        return;
    }
    perturb_stream(&g->rng, zo->seed, ROLE_PROBE, zo->step * (uint64_t)zo->m + (uint64_t)probe);
    plast_rng_advance(&g->rng, 2 * (offset / 2)); /* two outputs per pair */
    g->next = 2;
    if (offset % 2) {
        plast_rng_normal2(&g->rng, g->pair);
        g->next = 1;
    }
}

double zgen_next(zgen *g)
{
    if (g->given)
        return *g->given++;
    if (g->next == 2) {
        plast_rng_normal2(&g->rng, g->pair);
        g->next = 0;
    }
    return g->pair[g->next++];
}

void ugen_init(ugen *u, const plast_zo *zo, unsigned role, uint64_t offset, int on)
{
    u->on = on;
    if (!on)
        return;
    perturb_stream(&u->rng, zo->seed, role, zo->step);
    plast_rng_advance(&u->rng, offset);
}

double ugen_next(ugen *u)
{
    return u->on ? (double)plast_rng_float(&u->rng) : 0.0;
}

static void mask_init(ugen *u, const plast_zo *zo, uint64_t offset)
{
    ugen_init(u, zo, ROLE_MASK, offset, zo->sparsity > 0);
}

/* 1 if the element takes part in the step */
static int mask_next(ugen *u, double p)
{
    return !u->on || ugen_next(u) >= p;
}

/* ---- per-element arithmetic ---- */

double plast_zo_clip(double z)
{
    return z > PLAST_ZO_ZCLIP ? PLAST_ZO_ZCLIP : z < -PLAST_ZO_ZCLIP ? -PLAST_ZO_ZCLIP : z;
}

int64_t plast_zo_delta(double eps, double z, double s)
{
    return (int64_t)rint(eps * plast_zo_clip(z) / s);
}

int64_t plast_zo_dmax(double eps, double s)
{
    return (int64_t)rint(PLAST_ZO_ZCLIP * eps / s);
}

double plast_zo_coef(plast_zo_estimator est, double half_diff, double eps)
{
    if (est == PLAST_ZO_SIGN)
        return (double)((half_diff > 0) - (half_diff < 0));
    return half_diff / eps;
}

double plast_zo_kappa(plast_zo_estimator est, double eta, int m, double half_diff, double eps)
{
    return eta * plast_zo_coef(est, half_diff, eps) / ((double)m * eps);
}

/* ---- directions and the float form ---- */

void plast_zo_directions(const plast_zo *zo, int probe, uint64_t offset, size_t n, double *z)
{
    zgen g;
    ugen mask;
    zgen_init(&g, zo, probe, offset);
    mask_init(&mask, zo, offset);
    for (size_t e = 0; e < n; e++) {
        double v = zgen_next(&g);
        z[e] = mask_next(&mask, zo->sparsity) ? v : 0.0;
    }
}

void plast_zo_perturb_float(const plast_zo *zo, int probe, uint64_t offset, const float *w0,
                            float *w, size_t n, double sign_eps)
{
    zgen g;
    ugen mask;
    zgen_init(&g, zo, probe, offset);
    mask_init(&mask, zo, offset);
    for (size_t e = 0; e < n; e++) {
        double z = zgen_next(&g);
        w[e] = mask_next(&mask, zo->sparsity) ? (float)((double)w0[e] + sign_eps * z) : w0[e];
    }
}

void plast_zo_update_float(const plast_zo *zo, uint64_t offset, float *w, size_t n)
{
    zgen g[PLAST_ZO_MAX_PROBES];
    double coef[PLAST_ZO_MAX_PROBES];
    ugen mask;
    for (int i = 0; i < zo->m; i++) {
        zgen_init(&g[i], zo, i, offset);
        coef[i] = zo->eta * plast_zo_coef(zo->estimator, zo->half_diff[i], zo->eps) / zo->m;
    }
    mask_init(&mask, zo, offset);
    for (size_t e = 0; e < n; e++) {
        double step = 0;
        for (int i = 0; i < zo->m; i++)
            step += coef[i] * zgen_next(&g[i]);
        int keep = mask_next(&mask, zo->sparsity); /* drawn for every element */
        if (keep && step != 0) /* -0.0 - (-0.0) would be +0.0: skip zero steps */
            w[e] = (float)((double)w[e] - step);
    }
}

/* ---- the fixed-point form ---- */

static size_t ngroups(const plast_qtensor *t)
{
    return t->group ? t->count / t->group : 1;
}

double plast_zo_eps_of(const plast_zo *zo, const plast_qtensor *t, size_t g)
{
    return zo->eps_lsb > 0 ? zo->eps_lsb * t->scale[g] : zo->eps;
}

int64_t plast_zo_tensor_dmax(const plast_zo *zo, const plast_qtensor *t)
{
    int64_t d = 0;
    for (size_t g = 0; g < ngroups(t); g++) {
        int64_t dg = plast_zo_dmax(plast_zo_eps_of(zo, t, g), t->scale[g]);
        if (dg > d)
            d = dg;
    }
    return d;
}

int plast_zo_check_headroom(const plast_zo *zo, const plast_qtensor *t, const char *name,
                            plast_err *e)
{
    for (size_t g = 0; g < ngroups(t); g++) {
        double eps = plast_zo_eps_of(zo, t, g), s = t->scale[g];
        int64_t d = plast_zo_dmax(eps, s);
        if (d > t->qmax / 4)
            return plast_err_set(e, PLAST_E_INVAL,
                                 "tensor '%s': eps = %g is too large for scale s = %g at %d "
                                 "bits: the perturbation needs Dmax = rint(4 eps/s) = %lld codes, "
                                 "more than qmax/4 = %d (lower eps or use more bits)",
                                 name, eps, s, (int)t->type, (long long)d, (int)(t->qmax / 4));
    }
    return PLAST_OK;
}

static int64_t clamp64(int64_t v, int64_t lim)
{
    return v > lim ? lim : v < -lim ? -lim : v;
}

size_t plast_zo_clamp_codes(const plast_zo *zo, plast_qtensor *t)
{
    size_t moved = 0;
    for (size_t e = 0; e < t->count; e++) {
        size_t g = e / t->group;
        int64_t lim = t->qmax - plast_zo_dmax(plast_zo_eps_of(zo, t, g), t->scale[g]);
        int64_t q = plast_qtensor_get(t, e), c = clamp64(q, lim);
        if (c != q) {
            plast_qtensor_set(t, e, c);
            moved++;
        }
    }
    return moved;
}

double plast_zo_eps_ratio(const plast_zo *zo, const plast_qtensor *t)
{
    double r = INFINITY;
    for (size_t g = 0; g < ngroups(t); g++) {
        double v = plast_zo_eps_of(zo, t, g) / t->scale[g];
        if (v < r)
            r = v;
    }
    return r;
}

/* Walks the delta codes of one probe over t; apply: add mult * delta. */
static size_t walk_codes(const plast_zo *zo, int probe, uint64_t offset, plast_qtensor *t,
                         int mult, int apply)
{
    zgen g;
    ugen mask;
    size_t nonzero = 0;
    zgen_init(&g, zo, probe, offset);
    mask_init(&mask, zo, offset);
    for (size_t e = 0; e < t->count; e++) {
        size_t grp = e / t->group;
        double z = zgen_next(&g);
        if (!mask_next(&mask, zo->sparsity))
            continue;
        int64_t d = plast_zo_delta(plast_zo_eps_of(zo, t, grp), z, t->scale[grp]);
        nonzero += d != 0;
        if (apply && d)
            plast_qtensor_set(t, e, plast_qtensor_get(t, e) + mult * d);
    }
    return nonzero;
}

size_t plast_zo_perturb_codes(const plast_zo *zo, int probe, uint64_t offset, plast_qtensor *t,
                              int mult)
{
    return walk_codes(zo, probe, offset, t, mult, 1);
}

size_t plast_zo_count_nonzero(const plast_zo *zo, int probe, uint64_t offset,
                              const plast_qtensor *t)
{
    return walk_codes(zo, probe, offset, (plast_qtensor *)t, 0, 0);
}

/* What the update needs per scale group. */
typedef struct group_coef {
    double eps, s, kappa[PLAST_ZO_MAX_PROBES];
    int64_t lim;
} group_coef;

static void group_setup(const plast_zo *zo, const plast_qtensor *t, size_t g, group_coef *c)
{
    c->eps = plast_zo_eps_of(zo, t, g);
    c->s = t->scale[g];
    c->lim = t->qmax - plast_zo_dmax(c->eps, c->s);
    for (int i = 0; i < zo->m; i++)
        c->kappa[i] = plast_zo_kappa(zo->estimator, zo->eta, zo->m, zo->half_diff[i], c->eps);
}

int64_t zo_updated_code(int64_t q, double acc, double u, int stochastic, int64_t lim)
{
    double r = stochastic ? floor(acc + u) : rint(acc);
    double v = (double)q - r;
    if (v != v)
        return q;
    if (v > (double)lim)
        return lim;
    if (v < -(double)lim)
        return -lim;
    return (int64_t)v;
}

void plast_zo_update_codes(const plast_zo *zo, uint64_t offset, plast_qtensor *t)
{
    zgen g[PLAST_ZO_MAX_PROBES];
    ugen mask, round;
    group_coef c = {0};
    size_t cur = (size_t)-1;
    int stochastic = zo->rounding == PLAST_ZO_STOCHASTIC;
    for (int i = 0; i < zo->m; i++)
        zgen_init(&g[i], zo, i, offset);
    mask_init(&mask, zo, offset);
    ugen_init(&round, zo, ROLE_ROUND, offset, stochastic);
    for (size_t e = 0; e < t->count; e++) {
        size_t grp = e / t->group;
        if (grp != cur)
            group_setup(zo, t, cur = grp, &c);
        double acc = 0, u = ugen_next(&round);
        for (int i = 0; i < zo->m; i++) {
            int64_t d = plast_zo_delta(c.eps, zgen_next(&g[i]), c.s);
            acc += c.kappa[i] * (double)d;
        }
        if (!mask_next(&mask, zo->sparsity))
            continue;
        plast_qtensor_set(t, e, zo_updated_code(plast_qtensor_get(t, e), acc, u, stochastic, c.lim));
    }
}

/* ---- checkpoints of a fixed-point model in training ---- */

static uint64_t tensor_groups(const plast_qtensor *t)
{
    return t->group ? t->count / t->group : 1;
}

static size_t code_bytes(const plast_qtensor *t)
{
    return t->count * (size_t)t->type / 8;
}

static int has_scale(const plast_qtensor *t, int finished)
{
    return t->type != PLAST_Q_INT32 || finished; /* biases are scaled by finish */
}

static int save_tensor(const plast_qtensor *t, int finished, plast_writer *w, plast_err *e)
{
    int rc;
    if ((rc = plast_writer_u32(w, (uint32_t)t->type, e)) ||
        (rc = plast_writer_u64(w, t->count, e)) ||
        (rc = plast_writer_u64(w, tensor_groups(t), e)))
        return rc;
    for (uint64_t g = 0; has_scale(t, finished) && g < tensor_groups(t) && !rc; g++)
        rc = plast_writer_f64(w, t->scale[g], e);
    return rc ? rc : plast_writer_bytes(w, t->codes, code_bytes(t), e);
}

int plast_zo_save_qmodel(plast_qmodel *q, int finished, plast_mem *mem, plast_writer *w,
                         plast_err *e)
{
    size_t n = plast_qmodel_calib_count(q);
    double *stats = plast_mem_alloc(mem, PLAST_MEM_SCRATCH, n * sizeof *stats);
    if (!stats)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory saving the calibration");
    plast_qmodel_calib_get(q, stats);
    int rc = plast_writer_u32(w, (uint32_t)finished, e);
    if (!rc)
        rc = plast_writer_u64(w, n, e);
    for (size_t i = 0; i < n && !rc; i++)
        rc = plast_writer_f64(w, stats[i], e);
    plast_mem_free(mem, stats);
    if (!rc)
        rc = plast_writer_u32(w, (uint32_t)plast_qmodel_ntensors(q), e);
    for (int i = 0; i < plast_qmodel_ntensors(q) && !rc; i++)
        rc = save_tensor(plast_qmodel_tensor(q, i), finished, w, e);
    return rc;
}

static int state_mismatch(plast_reader *rd, plast_err *e, const char *what)
{
    return plast_err_at(e, PLAST_E_DATA, plast_reader_path(rd), 0,
                        "fixed-point state: %s differs from this model's", what);
}

static int load_calibration(plast_qmodel *q, int *finished, plast_mem *mem, plast_reader *rd,
                            plast_err *e)
{
    uint32_t done;
    uint64_t n;
    int rc;
    if ((rc = plast_reader_u32(rd, &done, e)) || (rc = plast_reader_u64(rd, &n, e)))
        return rc;
    if (n != plast_qmodel_calib_count(q))
        return state_mismatch(rd, e, "the number of calibration statistics");
    double *stats = plast_mem_alloc(mem, PLAST_MEM_SCRATCH, (size_t)n * sizeof *stats);
    if (!stats)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory loading the calibration");
    for (uint64_t i = 0; i < n && !rc; i++)
        rc = plast_reader_f64(rd, &stats[i], e);
    if (!rc)
        plast_qmodel_calib_set(q, stats);
    plast_mem_free(mem, stats);
    if (!rc && done && !(rc = plast_qmodel_finish(q, e)))
        *finished = 1;
    return rc;
}

static int load_tensor(plast_qtensor *t, int finished, plast_reader *rd, plast_err *e)
{
    uint32_t type;
    uint64_t count, groups;
    int rc;
    if ((rc = plast_reader_u32(rd, &type, e)) || (rc = plast_reader_u64(rd, &count, e)) ||
        (rc = plast_reader_u64(rd, &groups, e)))
        return rc;
    if (type != (uint32_t)t->type || count != t->count || groups != tensor_groups(t))
        return state_mismatch(rd, e, "a tensor's type or size");
    for (uint64_t g = 0; has_scale(t, finished) && g < groups; g++) {
        double s;
        if ((rc = plast_reader_f64(rd, &s, e)))
            return rc;
        if (memcmp(&s, &t->scale[g], sizeof s)) /* same initial weights, same scales */
            return state_mismatch(rd, e, "a scale (start from the same weights)");
    }
    return plast_reader_bytes(rd, t->codes, code_bytes(t), e);
}

int plast_zo_load_qmodel(plast_qmodel *q, int *finished, plast_mem *mem, plast_reader *rd,
                         plast_err *e)
{
    uint32_t n;
    int done = 0;
    int rc = load_calibration(q, &done, mem, rd, e);
    if (!rc)
        rc = plast_reader_u32(rd, &n, e);
    if (!rc && (int)n != plast_qmodel_ntensors(q))
        rc = state_mismatch(rd, e, "the number of tensors");
    for (int i = 0; i < plast_qmodel_ntensors(q) && !rc; i++)
        rc = load_tensor(plast_qmodel_tensor(q, i), done, rd, e);
    if (!rc)
        *finished = done;
    return rc;
}
