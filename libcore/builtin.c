/* builtin.c - the lists of layer and loss types compiled into libplast. */
#include "config.h"

#include <stddef.h>

#include "builtin.h"

const plast_layer_ops *const plast_builtin_layers[] = {
    &plast_layer_dense,   &plast_layer_relu, &plast_layer_tanh,
    &plast_layer_sigmoid, &plast_layer_flatten, &plast_layer_add,
    &plast_layer_batchnorm, &plast_layer_conv2d, &plast_layer_maxpool,
    &plast_layer_avgpool, &plast_layer_gap, &plast_layer_rnn, &plast_layer_dropout,
    NULL,
};

const plast_loss_ops *const plast_builtin_losses[] = {
    &plast_loss_softmax_ce,
    &plast_loss_mse,
    &plast_loss_sigmoid_bce,
    NULL,
};
