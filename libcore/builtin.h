/* builtin.h - the layer and loss types compiled into libplast (private).
 * The registry registers them first; plug-ins may add more. */
#ifndef PLAST_BUILTIN_H
#define PLAST_BUILTIN_H

#include "plast/layer.h"
#include "plast/loss.h"

extern const plast_layer_ops plast_layer_dense;
extern const plast_layer_ops plast_layer_relu;
extern const plast_layer_ops plast_layer_tanh;
extern const plast_layer_ops plast_layer_sigmoid;
extern const plast_layer_ops plast_layer_flatten;
extern const plast_layer_ops plast_layer_add;
extern const plast_layer_ops plast_layer_batchnorm;
extern const plast_layer_ops plast_layer_conv2d;
extern const plast_layer_ops plast_layer_maxpool;
extern const plast_layer_ops plast_layer_avgpool;
extern const plast_layer_ops plast_layer_gap;
extern const plast_layer_ops plast_layer_rnn;
extern const plast_layer_ops plast_layer_dropout;

/* NULL-terminated lists, in the order `plast rules` shows them. */
extern const plast_layer_ops *const plast_builtin_layers[];
extern const plast_loss_ops *const plast_builtin_losses[];

#endif
