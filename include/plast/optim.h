/* plast/optim.h - optimisers over flat parameter arrays.
 *
 * An optimiser updates a range [begin, end) of the model's flat weight
 * array from the same range of the gradient array, and zeroes those
 * gradients.  A rule may step the whole model once per batch or each block
 * as soon as its gradient exists: both give the same bits, because every
 * element's update depends only on its own weight, gradient and state.
 *
 * Per batch: plast_optim_begin(o, lr) once (advances Adam's step count),
 * then plast_optim_update() over disjoint ranges that cover what trains.
 *
 *   sgd       w -= lr (g + wd w)
 *   momentum  v = mu v + (g + wd w);  w -= lr v
 *   nesterov  v = mu v + (g + wd w);  w -= lr ((g + wd w) + mu v)
 *   adam      PyTorch's Adam (L2 weight decay added to g)
 *   adamw     Adam with decoupled weight decay w -= lr wd w */
#ifndef PLAST_OPTIM_H
#define PLAST_OPTIM_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "err.h"
#include "mem.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plast_optim plast_optim;

/* Schema of the [optimizer] section. */
extern const plast_setting plast_optim_settings[];

/* Optimiser for `n` parameters; its state comes from `mem` (optimizer
 * category).  `a` is a parsed [optimizer] section. */
int plast_optim_create(plast_optim **out, const plast_args *a, size_t n, plast_mem *mem,
                       plast_err *e);
void plast_optim_destroy(plast_optim *o);
/* A new optimiser for `n` parameters with the type, hyper-parameters and
 * schedule of `like` and fresh state (zero steps): for parameters a rule
 * keeps beside the model's (AugLocal's auxiliary networks). */
int plast_optim_create_like(plast_optim **out, const plast_optim *like, size_t n, plast_mem *mem,
                            plast_err *e);

/* Learning rate of the schedule at step `step` of `steps_per_epoch`,
 * `epochs` in all (warm-up, then constant, step or cosine). */
double plast_optim_lr_at(const plast_optim *o, uint64_t step, uint64_t steps_per_epoch,
                         int epochs);
double plast_optim_base_lr(const plast_optim *o);
/* The rate given to the last plast_optim_begin() (the base rate before the
 * first): what the trainer's schedule chose for the current step. */
double plast_optim_lr(const plast_optim *o);
const char *plast_optim_type(const plast_optim *o);

void plast_optim_begin(plast_optim *o, double lr);
/* Update w[begin, end) from g[begin, end) and zero those gradients. */
void plast_optim_update(plast_optim *o, plast_real *w, plast_real *g, size_t begin,
                        size_t end);
/* The same with the range's gradients at g[0, end - begin): for a gradient
 * buffer that holds one block at a time (plast_model_share_grads). */
void plast_optim_update_range(plast_optim *o, plast_real *w, plast_real *g, size_t begin,
                              size_t end);
uint64_t plast_optim_steps(const plast_optim *o);
/* 1 when, since the last plast_optim_begin(), all n parameters were
 * updated (the ranges are disjoint, so once each) and every new value is
 * finite; 0 otherwise, e.g. a part frozen or left to the next batch.  The
 * updates find it as they write, so a caller can skip a scan of the
 * weights for NaN and Inf after a step that covered them all. */
int plast_optim_step_finite(const plast_optim *o);

/* State for checkpoints: the step count and `nstate` arrays of n floats. */
int plast_optim_nstate(const plast_optim *o);
plast_real *plast_optim_state(plast_optim *o, int i);
void plast_optim_set_steps(plast_optim *o, uint64_t steps);

#ifdef __cplusplus
}
#endif
#endif
