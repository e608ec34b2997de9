/* plast/loss.h - losses on a batch of predictions and class labels.
 *
 * Reductions follow PyTorch so numbers compare with the reference codes:
 *   softmax_ce  batch mean of -log softmax[label];  grad (softmax - T)/B
 *   mse         mean over batch and outputs of (y - T)^2; grad 2(y - T)/(B C)
 *   sigmoid_bce mean over batch and outputs;         grad (sigmoid - T)/(B C)
 * where T is the one-hot label. */
#ifndef PLAST_LOSS_H
#define PLAST_LOSS_H

#include <stdint.h>
#include "config.h"
#include "err.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plast_loss_ops {
    uint32_t size;
    const char *name;                 /* value of [loss] type */
    const plast_setting *settings;    /* extra keys of [loss], may be NULL */
    /* Mean loss of pred [B, C] against labels in [0, C); when grad is not
     * NULL write dLoss/dpred into it (same shape).  A label out of range is
     * PLAST_E_DATA. */
    int (*eval)(const plast_tensor *pred, const int32_t *labels, double *loss,
                plast_tensor *grad, plast_err *e);
} plast_loss_ops;

extern const plast_loss_ops plast_loss_softmax_ce;
extern const plast_loss_ops plast_loss_mse;
extern const plast_loss_ops plast_loss_sigmoid_bce;

/* Number of rows of pred [B, C] whose first maximum is at the label. */
int plast_count_correct(const plast_tensor *pred, const int32_t *labels);

#ifdef __cplusplus
}
#endif
#endif
