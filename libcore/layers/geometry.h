/* geometry.h - what the fixed-point engine (qmodel.c) reads of the built-in
 * layers' private state (private to libcore).  Each function is defined in
 * its layer's file and takes a layer of that type only. */
#ifndef PLAST_LAYERS_GEOMETRY_H
#define PLAST_LAYERS_GEOMETRY_H

#include "plast/layer.h"

/* conv2d: the square kernel, stride and zero padding. */
void plast_conv2d_geometry(const plast_layer *l, int *kernel, int *stride, int *padding);
/* maxpool, avgpool: the window; gap: kernel 0 (the whole plane). */
void plast_pool_geometry(const plast_layer *l, int *kernel, int *stride, int *padding);
/* add: the stride of the 1x1 shortcut, 0 for the identity shortcut. */
int plast_add_shortcut_stride(const plast_layer *l);
/* batchnorm: the eps added to the variance. */
double plast_batchnorm_eps(const plast_layer *l);

#endif
