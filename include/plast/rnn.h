/* plast/rnn.h - the Elman rnn layer one time step at a time.
 *
 *   h_t = tanh(x_t W_ih^T + h_{t-1} W_hh^T + b)
 *
 * For rules that run the recurrence themselves instead of the layer's
 * forward (tpSGD trains without backpropagation through time: h_{t-1} is
 * a constant input at step t, so only h_{t-1} and h_t need to be alive).
 *
 * A sample of the layer's input is `steps` rows of `features` values:
 * x_t of sample b is x + b*steps*features + t*features, so the rows of
 * one step are ldx = steps*features apart.  h_prev and h are [batch, units]
 * (contiguous). */
#ifndef PLAST_RNN_H
#define PLAST_RNN_H

#include "layer.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 0 and the layer's sizes if l is an rnn layer (sequence: 1 if it outputs
 * every h_t, 0 for the last only; any pointer may be NULL), else
 * PLAST_E_INVAL. */
int plast_rnn_info(const plast_layer *l, int *units, int *steps, int *features, int *sequence);

/* h = tanh(x_t W_ih^T + h_prev W_hh^T + b) for `batch` rows; h_prev NULL
 * means h_0 = 0.  The same arithmetic as the layer's forward. */
void plast_rnn_step(const plast_layer *l, int batch, const plast_real *x_t, int ldx,
                    const plast_real *h_prev, plast_real *h);

/* Add one step's parameter gradients for delta = dJ/d(pre-activation)
 * [batch, units]: g_ih += delta^T x_t, g_hh += delta^T h_prev (nothing
 * when h_prev is NULL), g_b += 1^T delta.  Nothing if the layer is
 * frozen. */
void plast_rnn_step_grad(plast_layer *l, int batch, const plast_real *delta,
                         const plast_real *x_t, int ldx, const plast_real *h_prev);

#ifdef __cplusplus
}
#endif
#endif
