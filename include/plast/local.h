/* plast/local.h - layer-local learning signals (DRTP, tpSGD).
 *
 * A local rule trains hidden block k from a per-example target row
 * t = P_k[label] (plast_proj) and a local loss l(a, t) on the block's
 * activation output a = A_k:
 *
 *   linear  G = t                   (DRTP: dJ/dA = the projection row)
 *   mse     G = a - t               (l = 1/2 |a - t|^2)
 *   l1      G = sgn(a - t)          (sgn(0) = 0)
 *   bce     D = a - t, fused        (sigmoid activation only)
 *
 * D = G * f'(a) (the activation's own backward), scaled by `scale`
 * (1/B for batch means), is back-propagated from the activation's input
 * down to the trainable layer: parameter gradients only, nothing crosses
 * the block's input, and nothing flows through the layers after the
 * activation (pooling, flatten).  When A_k is not the block's output, D is
 * written over A_k itself, so the signal costs no memory. */
#ifndef PLAST_LOCAL_H
#define PLAST_LOCAL_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "model.h"
#include "proj.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum plast_local_loss {
    PLAST_LOCAL_LINEAR = 0,
    PLAST_LOCAL_MSE,
    PLAST_LOCAL_L1,
    PLAST_LOCAL_BCE
} plast_local_loss;

/* "linear", "mse", "l1", "bce" (the INI names), NULL-terminated. */
extern const char *const plast_local_loss_names[];

/* The layer of block k whose output receives the signal: its activation,
 * or its trainable layer when it has none (f' = 1). */
int plast_local_inject(const plast_model *m, int k);

/* Targets centred in the range of block k's activation, offset +
 * gamma*U(-1,1) (ALGORITHMS.md §4.3): tanh 0 +- 0.5, sigmoid 0.5 +- 0.4,
 * relu 0.5 +- 0.5, none (identity) 0 +- 1; an rnn's states are tanh. */
void plast_local_target_range(const plast_model *m, int k, float *offset, float *gamma);

/* g[j] = dl(a, t)/da_j * scale for j < n (linear t, mse a - t, l1
 * sgn(a - t); bce gives a - t, the fused D); g may be t. */
void plast_local_gradient(plast_local_loss loss, const plast_real *a, const plast_real *t,
                          size_t n, float scale, plast_real *g);

/* Check that block k is a chain of one trainable layer and parameter-free
 * followers (no batchnorm, no residual add): `rule` names the caller in
 * the message.  For bce, the activation must be a sigmoid. */
int plast_local_check_block(const plast_model *m, int k, const char *rule,
                            plast_local_loss loss, plast_err *e);

/* Add block k's parameter gradients for the targets of `labels` (one row
 * of p per example, each scaled by `scale`).  run: block k's forward. */
int plast_local_backward(plast_model *m, plast_block_run *run, const plast_proj *p,
                         const int32_t *labels, int batch, plast_local_loss loss, float scale,
                         plast_err *e);

#ifdef __cplusplus
}
#endif
#endif
