/* plast/qmodel.h - a fixed-point copy of a float model for integer
 * inference and quantized training (QZO-FF).
 *
 * Weights are symmetric integer codes (int8 or int16) with a scale per
 * tensor or per output channel; activations are int8 codes with a static
 * per-tensor scale found by calibration (max |a| over a few batches);
 * biases are int32 codes at scale s_w * s_in.  Layers: dense, conv2d (with
 * a following batchnorm folded in), relu, maxpool, avgpool, gap, flatten,
 * add (both inputs requantised to the output scale) and dropout (identity).
 * Each layer's integer accumulator is requantised to the next int8 code
 * with an integer multiplier and shift (plast_requant_apply: ties away from
 * zero), saturating to [-127, 127]; the model input is quantised with
 * rint(); average pools divide with ties away from zero.  The last layer's
 * accumulator (a dense) is dequantised to float logits, on which the loss
 * is computed in float.  libcore/qmodel.c states every step; the result
 * is exact integer arithmetic, the same for any kernel or thread count.
 *
 * Lifecycle: create (weights quantised) -> calibrate on one or more
 * batches -> finish (activation scales, bias codes, requantisers frozen)
 * -> forward any number of times.  Rules change weight and bias codes in
 * place between forwards (plast_qtensor); scales never change after
 * finish. */
#ifndef PLAST_QMODEL_H
#define PLAST_QMODEL_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "model.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plast_qmodel plast_qmodel;

typedef enum plast_qtype {
    PLAST_Q_INT8 = 8,
    PLAST_Q_INT16 = 16,
    PLAST_Q_INT32 = 32   /* biases */
} plast_qtype;

/* One quantised parameter tensor of the float model (layer `layer`,
 * parameter `param`).  Element i has code codes[i] and real value
 * code * scale[i / group].  Weights are [out, in] like the float layer's,
 * group = in per channel; a bias has group 1 per channel.  When a
 * batchnorm is folded into a dense or conv2d, the values are the folded
 * ones (w gamma / sqrt(var + eps), and the folded bias), and the bias of a
 * layer without one is the batchnorm's beta (layer = the batchnorm,
 * param = 1).  Bias codes and scales are set by plast_qmodel_finish
 * (zero before). */
typedef struct plast_qtensor {
    int layer, param;        /* in the float model */
    plast_qtype type;
    size_t count;
    void *codes;             /* int8_t, int16_t or int32_t [count] */
    const double *scale;     /* [count / group] */
    size_t group;            /* elements per scale (count = per tensor) */
    int32_t qmax;            /* largest code magnitude: 2^(bits-1) - 1 */
} plast_qtensor;

static inline int32_t plast_qtensor_get(const plast_qtensor *t, size_t i)
{
    switch (t->type) {
    case PLAST_Q_INT8: return ((const int8_t *)t->codes)[i];
    case PLAST_Q_INT16: return ((const int16_t *)t->codes)[i];
    default: return ((const int32_t *)t->codes)[i];
    }
}

/* Store v saturated to [-qmax, qmax]. */
static inline void plast_qtensor_set(plast_qtensor *t, size_t i, int64_t v)
{
    if (v > t->qmax)
        v = t->qmax;
    if (v < -(int64_t)t->qmax)
        v = -(int64_t)t->qmax;
    switch (t->type) {
    case PLAST_Q_INT8: ((int8_t *)t->codes)[i] = (int8_t)v; break;
    case PLAST_Q_INT16: ((int16_t *)t->codes)[i] = (int16_t)v; break;
    default: ((int32_t *)t->codes)[i] = (int32_t)v; break;
    }
}

/* A NULL config means {16, 8, 0, 1.25}. */
typedef struct plast_qconfig {
    int weight_bits;         /* 8 or 16 */
    int act_bits;            /* 8 (16 reserved: PLAST_E_UNSUPPORTED); 0 = 8 */
    int per_channel;         /* 1 = one weight scale per output channel */
    double weight_margin;    /* s = margin * max|w| / qmax, margin in [1, 1000];
                                0 = 1.25; a zero tensor gets s = 1 / qmax */
} plast_qconfig;

/* Quantise the weights of float model m (which must outlive q; q reads
 * its layers' geometry and batchnorm statistics, and store() writes its
 * weights).  Memory comes from m's plast_mem: codes, scales and
 * requantisers in the weights category; forward's codes, accumulators
 * and logits in activations; im2col columns in scratch.
 * PLAST_E_UNSUPPORTED names the first layer (name and type) the engine
 * cannot run, or a batchnorm that does not follow a dense or conv2d
 * feeding only it. */
int plast_qmodel_create(plast_qmodel **out, plast_model *m, const plast_qconfig *cfg,
                        plast_err *e);
void plast_qmodel_destroy(plast_qmodel *q);

/* Record max |activation| of every layer's output on batch x (float,
 * eval mode); may be called for several batches (the maximum over all).
 * Activation scales are max / 127; a dense, conv2d or add whose only
 * reader is a relu uses its largest positive output instead. */
int plast_qmodel_calibrate(plast_qmodel *q, const plast_tensor *x, plast_err *e);
/* Freeze activation scales, bias codes and requantisers. */
int plast_qmodel_finish(plast_qmodel *q, plast_err *e);

/* Integer forward of batch x (float, quantised to the input scale on the
 * way in); *logits gets float logits (activations category).  At most two
 * int8 activation buffers and one accumulator are alive at a time (plus a
 * residual input while its add is pending).  PLAST_E_INVAL before finish.
 * One forward at a time per qmodel (it keeps its buffer table). */
int plast_qmodel_forward(plast_qmodel *q, const plast_tensor *x, plast_tensor *logits,
                         plast_err *e);

/* The trained-parameter tensors: every weight and bias of the model, in
 * layer order (a folded batchnorm's parameters are inside its conv). */
int plast_qmodel_ntensors(const plast_qmodel *q);
plast_qtensor *plast_qmodel_tensor(plast_qmodel *q, int i);

/* Scale of layer i's output codes after finish (a folded layer's codes
 * are its batchnorm's output); layer -1 is the model input.  0 before
 * finish or out of range. */
double plast_qmodel_act_scale(const plast_qmodel *q, int layer);

/* Write the dequantised codes back into the float model's weights, so the
 * float model computes what the codes say up to activation rounding (a
 * folded batchnorm keeps its parameters and statistics; its conv gets the
 * unfolded equivalent, or its beta the folded bias when the conv has
 * none).  Before finish only weights are written. */
int plast_qmodel_store(plast_qmodel *q, plast_err *e);

/* ---- checkpoints (QZO-FF resume) ---- */

/* The calibration statistics (the max |activation| values calibrate
 * records, in the engine's own order): n = plast_qmodel_calib_count(q)
 * doubles.  Setting saved statistics into a fresh qmodel of the same
 * model instead of calibrating, then finishing, gives the same activation
 * scales and requantisers bit for bit (bias codes come from the float
 * biases, as always).  Valid before and after finish; set only before. */
size_t plast_qmodel_calib_count(const plast_qmodel *q);
void plast_qmodel_calib_get(const plast_qmodel *q, double *stats);
void plast_qmodel_calib_set(plast_qmodel *q, const double *stats);

#ifdef __cplusplus
}
#endif
#endif
