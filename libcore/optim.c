/* optim.c - SGD, momentum, Nesterov, Adam and AdamW over flat arrays.
 *
 * The update of each element depends only on that element's weight,
 * gradient and state, so stepping blocks one by one equals one step over
 * everything, bit for bit. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plast/optim.h"
#include "simd.h"

typedef enum { OPT_SGD, OPT_MOMENTUM, OPT_NESTEROV, OPT_ADAM, OPT_ADAMW } opt_type;
typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE } sched_type;

static const char *const opt_names[] = {"sgd", "momentum", "nesterov", "adam", "adamw", NULL};
static const char *const sched_names[] = {"constant", "step", "cosine", NULL};

const plast_setting plast_optim_settings[] = {
    {"type", PLAST_S_ENUM, "sgd", 0, 0, opt_names, 0, "update rule"},
    {"lr", PLAST_S_REAL, "0.01", 0, 10, NULL, PLAST_S_MIN_OPEN, "base learning rate"},
    {"momentum", PLAST_S_REAL, "0.9", 0, 1, NULL, PLAST_S_MAX_OPEN,
     "momentum coefficient (momentum, nesterov)"},
    {"beta1", PLAST_S_REAL, "0.9", 0, 1, NULL, PLAST_S_MAX_OPEN, "Adam first-moment decay"},
    {"beta2", PLAST_S_REAL, "0.999", 0, 1, NULL, PLAST_S_MAX_OPEN, "Adam second-moment decay"},
    {"eps", PLAST_S_REAL, "1e-8", 0, 1, NULL, PLAST_S_MIN_OPEN, "Adam denominator term"},
    {"weight_decay", PLAST_S_REAL, "0", 0, 1, NULL, 0,
     "L2 penalty added to the gradient (decoupled for adamw)"},
    {"schedule", PLAST_S_ENUM, "constant", 0, 0, sched_names, 0,
     "learning-rate schedule after the warm-up"},
    {"step_epochs", PLAST_S_INT, "10", 1, 1e6, NULL, 0, "step schedule: epochs between decays"},
    {"gamma", PLAST_S_REAL, "0.1", 0, 1, NULL, PLAST_S_MIN_OPEN, "step schedule: decay factor"},
    {"min_lr", PLAST_S_REAL, "0", 0, 10, NULL, 0, "cosine schedule: final learning rate"},
    {"warmup", PLAST_S_REAL, "0", 0, 1e6, NULL, 0,
     "epochs of linear per-step warm-up (may be fractional)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

struct plast_optim {
    opt_type type;
    sched_type sched;
    double lr, momentum, beta1, beta2, eps, weight_decay, gamma, min_lr, warmup;
    int step_epochs;
    size_t n;
    uint64_t steps;      /* begin() calls so far */
    size_t stepped;      /* parameters updated since begin() */
    uint32_t finite;     /* finite_bits() of the least of them; 0: NaN or Inf seen */
    double cur_lr;
    int nstate;
    plast_real *state[2];
    plast_mem *mem;
};

/* The nstate zeroed arrays of o->n floats. */
static int alloc_state(plast_optim *o, plast_err *e)
{
    size_t bytes;
    if (__builtin_mul_overflow(o->n, sizeof(plast_real), &bytes))
        return plast_err_set(e, PLAST_E_INVAL, "optimizer: %zu parameters overflow size_t", o->n);
    for (int i = 0; i < o->nstate; i++) {
        o->state[i] = plast_mem_calloc(o->mem, PLAST_MEM_OPTIMIZER, bytes);
        if (!o->state[i])
            return plast_err_set(e, PLAST_E_NOMEM, "out of memory for optimizer state (%zu floats)",
                                 o->n);
    }
    return PLAST_OK;
}

int plast_optim_create(plast_optim **out, const plast_args *a, size_t n, plast_mem *mem,
                       plast_err *e)
{
    plast_optim *o = calloc(1, sizeof *o);
    if (!o)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory creating the optimizer");
    o->type = (opt_type)plast_args_enum(a, "type");
    o->sched = (sched_type)plast_args_enum(a, "schedule");
    o->lr = plast_args_real(a, "lr");
    o->momentum = plast_args_real(a, "momentum");
    o->beta1 = plast_args_real(a, "beta1");
    o->beta2 = plast_args_real(a, "beta2");
    o->eps = plast_args_real(a, "eps");
    o->weight_decay = plast_args_real(a, "weight_decay");
    o->step_epochs = (int)plast_args_int(a, "step_epochs");
    o->gamma = plast_args_real(a, "gamma");
    o->min_lr = plast_args_real(a, "min_lr");
    o->warmup = plast_args_real(a, "warmup");
    o->n = n;
    o->mem = mem;
    o->cur_lr = o->lr;
    o->nstate = o->type == OPT_SGD ? 0 : (o->type >= OPT_ADAM ? 2 : 1);
    int rc = alloc_state(o, e);
    if (rc) {
        plast_optim_destroy(o);
        return rc;
    }
    *out = o;
    return PLAST_OK;
}

int plast_optim_create_like(plast_optim **out, const plast_optim *like, size_t n, plast_mem *mem,
                            plast_err *e)
{
    plast_optim *o = calloc(1, sizeof *o);
    if (!o)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory creating the optimizer");
    *o = *like;
    o->n = n;
    o->mem = mem;
    o->steps = 0;
    o->cur_lr = o->lr;
    o->state[0] = o->state[1] = NULL;
    int rc = alloc_state(o, e);
    if (rc) {
        plast_optim_destroy(o);
        return rc;
    }
    *out = o;
    return PLAST_OK;
}

void plast_optim_destroy(plast_optim *o)
{
    if (!o)
        return;
    for (int i = 0; i < 2; i++)
        plast_mem_free(o->mem, o->state[i]);
    free(o);
}

double plast_optim_lr_at(const plast_optim *o, uint64_t step, uint64_t steps_per_epoch,
                         int epochs)
{
    double spe = steps_per_epoch ? (double)steps_per_epoch : 1.0;
    double warm = o->warmup * spe;
    double s = (double)step;
    if (s < warm) /* a fractional warm-up's last step would pass lr */
        return o->lr * fmin(1.0, (s + 1.0) / warm);
    switch (o->sched) {
    case SCHED_STEP:
        return o->lr * pow(o->gamma, floor(s / spe / o->step_epochs));
    case SCHED_COSINE: {
        double total = (double)epochs * spe - warm;
        double p = total > 0 ? (s - warm) / total : 1.0;
        if (p > 1.0)
            p = 1.0;
        return o->min_lr + (o->lr - o->min_lr) * 0.5 * (1.0 + cos(M_PI * p));
    }
    default:
        return o->lr;
    }
}

double plast_optim_base_lr(const plast_optim *o) { return o->lr; }
double plast_optim_lr(const plast_optim *o) { return o->cur_lr; }
const char *plast_optim_type(const plast_optim *o) { return opt_names[o->type]; }
uint64_t plast_optim_steps(const plast_optim *o) { return o->steps; }
int plast_optim_nstate(const plast_optim *o) { return o->nstate; }
plast_real *plast_optim_state(plast_optim *o, int i) { return o->state[i]; }
void plast_optim_set_steps(plast_optim *o, uint64_t steps) { o->steps = steps; }

/* A float's exponent bits that are zero: none (0) for NaN and Inf.  The
 * updates take the least over the values they write, an integer min, so
 * their loops still vectorise (and the order cannot matter). */
#define EXPONENT_BITS 0x7f800000u

static inline uint32_t finite_bits(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return ~bits & EXPONENT_BITS;
}

void plast_optim_begin(plast_optim *o, double lr)
{
    o->steps++;
    o->cur_lr = lr;
    o->stepped = 0;
    o->finite = EXPONENT_BITS;
}

int plast_optim_step_finite(const plast_optim *o)
{
    return o->stepped == o->n && o->finite != 0;
}

/* In the update functions g[0] is the gradient of element b; each
 * returns the least finite_bits() of the weights it wrote. */
PLAST_CLONES static uint32_t update_sgd(const plast_optim *o, plast_real *w, plast_real *g,
                                        size_t b, size_t e)
{
    const float lr = (float)o->cur_lr, wd = (float)o->weight_decay;
    uint32_t least = EXPONENT_BITS;
    PLAST_SIMD_REDUCTION(min : least)
    for (size_t i = b; i < e; i++) {
        w[i] -= lr * (g[i - b] + wd * w[i]);
        g[i - b] = 0.0f; /* read once: zeroed here, not in a second pass */
        uint32_t f = finite_bits(w[i]);
        least = f < least ? f : least;
    }
    return least;
}

/* The loops below take their variant as a constant (always inlined into
 * callers that pass a literal), so they hold no branch and vectorise. */
__attribute__((always_inline)) static inline uint32_t
momentum_loop(const plast_optim *o, plast_real *w, plast_real *g, size_t b, size_t e,
              int nesterov)
{
    const float lr = (float)o->cur_lr, wd = (float)o->weight_decay, mu = (float)o->momentum;
    plast_real *v = o->state[0];
    uint32_t least = EXPONENT_BITS;
    PLAST_SIMD_REDUCTION(min : least)
    for (size_t i = b; i < e; i++) {
        float gi = g[i - b] + wd * w[i];
        g[i - b] = 0.0f;
        v[i] = mu * v[i] + gi;
        w[i] -= lr * (nesterov ? gi + mu * v[i] : v[i]);
        uint32_t f = finite_bits(w[i]);
        least = f < least ? f : least;
    }
    return least;
}

PLAST_CLONES static uint32_t update_momentum(const plast_optim *o, plast_real *w,
                                             plast_real *g, size_t b, size_t e,
                                             int nesterov)
{
    return nesterov ? momentum_loop(o, w, g, b, e, 1) : momentum_loop(o, w, g, b, e, 0);
}

/* Vectorised with -fno-math-errno (sqrtf is correctly rounded either way). */
__attribute__((always_inline)) static inline uint32_t
adam_loop(const plast_optim *o, plast_real *w, plast_real *g, size_t b, size_t e,
          int decoupled)
{
    const double t = (double)o->steps;
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    /* 1 - beta in double: 1.0f - (float)0.999 is off by 1.3e-5 relative */
    const float omb1 = (float)(1.0 - o->beta1), omb2 = (float)(1.0 - o->beta2);
    const float step = (float)(o->cur_lr / (1.0 - pow(o->beta1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(o->beta2, t));
    const float wd = (float)o->weight_decay, decay = (float)(1.0 - o->cur_lr * o->weight_decay);
    plast_real *m = o->state[0], *v = o->state[1];
    uint32_t least = EXPONENT_BITS;
    PLAST_SIMD_REDUCTION(min : least)
    for (size_t i = b; i < e; i++) {
        float gi = g[i - b];
        g[i - b] = 0.0f;
        if (decoupled)
            w[i] *= decay;
        else
            gi += wd * w[i];
        m[i] = b1 * m[i] + omb1 * gi;
        v[i] = b2 * v[i] + omb2 * gi * gi;
        w[i] -= step * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        uint32_t f = finite_bits(w[i]);
        least = f < least ? f : least;
    }
    return least;
}

PLAST_CLONES static uint32_t update_adam(const plast_optim *o, plast_real *w, plast_real *g,
                                         size_t b, size_t e)
{
    return o->type == OPT_ADAMW ? adam_loop(o, w, g, b, e, 1) : adam_loop(o, w, g, b, e, 0);
}

void plast_optim_update(plast_optim *o, plast_real *w, plast_real *g, size_t begin, size_t end)
{
    plast_optim_update_range(o, w, g + begin, begin, end);
}

void plast_optim_update_range(plast_optim *o, plast_real *w, plast_real *g, size_t begin,
                              size_t end)
{
    PLAST_ASSERT(begin <= end && end <= o->n);
    uint32_t least;
    switch (o->type) {
    case OPT_SGD: least = update_sgd(o, w, g, begin, end); break;
    case OPT_MOMENTUM: least = update_momentum(o, w, g, begin, end, 0); break;
    case OPT_NESTEROV: least = update_momentum(o, w, g, begin, end, 1); break;
    default:
        PLAST_ASSERT(o->steps > 0); /* begin() first: bias correction at step 0 is 1/0 */
        least = update_adam(o, w, g, begin, end);
        break;
    }
    o->stepped += end - begin;
    if (least < o->finite)
        o->finite = least;
}
