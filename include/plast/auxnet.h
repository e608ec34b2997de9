/* plast/auxnet.h - AugLocal's plan and its auxiliary networks
 * (ALGORITHMS.md §6).
 *
 * AugLocal sees a model as L "layers" followed by a head.  The layers are
 * the model's blocks (model.h) before the head; the head is every block
 * after the last block whose trainable layer outputs an image [C, H, W]
 * (a gap or flatten closing that block stays in it), or just the last
 * block when there is no such block or when it is the last block itself.
 * ResNet: stem, each BasicBlock (the last one with its gap) | dense.
 * VGG-style: each conv block | the dense classifier.  MLP: each hidden
 * block | the output block.
 *
 * With depth d, layers 0..L-d-2 are local modules, each trained through
 * its own auxiliary net G_l; layers L-d-1..L-1 and the head form the last
 * module, trained by backpropagation (d = 0: greedy, every layer but the
 * last is a local module with a head-only G_l).
 *
 * G_l copies the architecture of layers S_l (fresh weights): each copy is
 * built from the layer's own [layer.*] sections (plast_model_spec), so any
 * block the INI language expresses gets auxiliary copies without new code.
 * In a copy of an image block (layer roles come from the layer types'
 * schemas, so plug-in layers of the same kind are handled alike)
 *   - the layers after its last image output (gap, flatten) are left out;
 *   - its first convolution (an image layer with parameters and a `stride`
 *     key) gets stride 2 when plast_auglocal_stride() says the chain must
 *     halve, else 1, and its pooling layers (image layers without
 *     parameters with a `stride` key: maxpool, avgpool) are left out: the
 *     stride rule does all of the copy's downsampling;
 *   - a residual add (two inputs, a `shortcut` key) gets shortcut =
 *     conv1x1 when its two inputs differ in shape, identity when they match.
 * Other blocks (dense) are copied as they are.  Copies are named
 * a<i>_<layer> (i = position in the chain) and form one block each.  The
 * head of G_l is head_gap (image input only) -> head_bn (if d_l <= 1) ->
 * head_out, a dense layer with one output per class. */
#ifndef PLAST_AUXNET_H
#define PLAST_AUXNET_H

#include <stdint.h>
#include "err.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum plast_aux_select {
    PLAST_AUX_UNIFORM = 0, /* S_l spread up to layer L-1 (the paper) */
    PLAST_AUX_SEQUENTIAL   /* S_l = the next d_l layers (the paper's ablation) */
} plast_aux_select;

/* "uniform", "sequential" (the INI names), NULL-terminated. */
extern const char *const plast_aux_select_names[];

/* Round half to even whatever the rounding mode (Python's round(), rint()
 * under FE_TONEAREST). */
double plast_round_half_even(double x);

/* L, the number of the model's blocks before its head (see above); the
 * head is blocks L..nblocks-1.  0 for a single-block model. */
int plast_auglocal_layers(plast_model *m);

/* Local modules for L layers and depth d (0 <= d < L): L - d - 1, or
 * L - 1 for d = 0. */
int plast_auglocal_modules(int L, int d);

/* Depth d_l of local layer l's auxiliary net: d without the pyramid (or
 * for d = 0); with it, with K = L - d modules,
 *   max(1, rint(d (1 - r) + r)),  r = tau l / (K - 2)
 * (the reference code's expression of 1 + (d-1)(1 - tau l/(K-2))), and d
 * for K = 2. */
int plast_auglocal_depth(int L, int d, int pyramid, double tau, int l);

/* S_l, the layers local layer l's auxiliary net copies, into out (room
 * for dl entries); returns their number.  Uniform:
 *   l+1 .. L-1                                    if dl >= L-1-l
 *   rint(l + (L-l-1)/dl * i) for i = 1..dl        otherwise (ends at L-1)
 * Sequential: l+1 .. min(l+dl, L-1). */
int plast_auglocal_select(int L, int l, int dl, plast_aux_select sel, int *out);

/* The stride rule: 2 if a chain at height h should halve to follow a
 * primary layer of output height `target` (h > target and halving does
 * not go below it: ceil(h/2) >= target), else 1.  On nets that halve the
 * resolution exactly where they double the width (ResNets) this equals the
 * reference code's rule, stride 2 while the pending downsampling
 * sum log2(net_dim[j] / in_planes) is at least 1. */
int plast_auglocal_stride(int h, int target);

/* Build G_l: copies of the model's blocks sel[0..n) then the head (with a
 * batchnorm if `batchnorm`), for inputs of block l's output shape, from
 * the model's registry, classes and memory (weights and gradients in
 * their usual categories), initialised from streams (INIT,
 * PLAST_AUX_INIT_INDEX(l) + layer index) of the model's seed.  Errors name
 * the auxiliary net and the copied layer. */
#define PLAST_AUX_INIT_INDEX(l) (0x40000000u + ((uint32_t)(l) << 12))
int plast_auxnet_create(plast_model **out, plast_model *m, int l, const int *sel, int n,
                        int batchnorm, plast_err *e);

#ifdef __cplusplus
}
#endif
#endif
