/* plast/model.h - a network built from the [layer.NAME] sections, its
 * blocks, its flat parameter arrays, and block-by-block execution.
 *
 * A block is the unit a local rule trains: a trainable layer plus the
 * parameter-free layers that follow it.  Rules drive the forward pass
 * block by block with plast_block_forward(), so a local rule can update
 * block k and release its input before block k+1 runs.
 *
 * Memory: every layer output and every backward signal is allocated from
 * the model's plast_mem in the activations category; in-place activation
 * layers and views (flatten) share their input's buffer. */
#ifndef PLAST_MODEL_H
#define PLAST_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "err.h"
#include "layer.h"
#include "loss.h"
#include "mem.h"
#include "optim.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plast_model plast_model;
typedef struct plast_registry plast_registry;

#define PLAST_MODEL_INPUT "@input"

typedef struct plast_block {
    int first, last;          /* layer indices, inclusive */
    int trainable;            /* its trainable layer, or -1 */
    int inject;               /* its activation layer (local rules), or -1 */
    size_t param_begin;       /* its range in the flat arrays */
    size_t param_end;
} plast_block;

/* Build the layers of `c` ([layer.*] sections in file order) for samples of
 * shape `input`; the last layer must produce `classes` outputs.  Weights,
 * gradients come from `mem`; weights are initialised from streams (INIT,
 * layer index) of `seed`.  Layer types are looked up in `reg`, which must
 * outlive the model.  An `input =` or `from =` naming PLAST_MODEL_INPUT
 * reads the model input (no layer can have that name). */
int plast_model_create(plast_model **out, const plast_config *c, plast_registry *reg,
                       const plast_shape *input, int classes, uint64_t seed,
                       plast_mem *mem, plast_err *e);
void plast_model_destroy(plast_model *m);

int plast_model_nlayers(const plast_model *m);
plast_layer *plast_model_layer(plast_model *m, int i);
int plast_model_find_layer(const plast_model *m, const char *name); /* -1 if none */
/* Producer of input n (0 = `input`, 1 = `from`) of layer i: a layer
 * index, -1 for the model input, -2 if the layer has no such input. */
int plast_model_layer_input(const plast_model *m, int i, int n);
/* Number of layers that read layer i's output. */
int plast_model_consumers(const plast_model *m, int i);
int plast_model_nblocks(const plast_model *m);
const plast_block *plast_model_block(const plast_model *m, int k);
const plast_shape *plast_model_input_shape(const plast_model *m);
int plast_model_classes(const plast_model *m);
size_t plast_model_nparams(const plast_model *m);
plast_real *plast_model_weights(plast_model *m);
plast_real *plast_model_grads(plast_model *m); /* NULL after drop_grads */
/* For a rule that trains one block at a time and steps it before the next
 * block's backward (DRTP, tpSGD): replace the gradient array by one
 * buffer the size of the largest block, shared by all blocks.  Block k's
 * gradients then start at plast_model_grads() (not at its param_begin),
 * and plast_model_step_all is only valid if a single block holds
 * gradients.  Cannot be undone. */
int plast_model_share_grads(plast_model *m, plast_err *e);
/* For a rule that never computes gradients (QZO-FF): free the gradient
 * array and freeze every layer, so backward passes add nothing and
 * optimiser steps skip every layer.  Cannot be undone. */
void plast_model_drop_grads(plast_model *m);
plast_mem *plast_model_mem(plast_model *m);
uint64_t plast_model_seed(const plast_model *m);
/* The registry the model was built with. */
plast_registry *plast_model_registry(const plast_model *m);
/* A copy of the [layer.*] sections the model was built from (keys as
 * given, --set values included): to build new nets from its layers. */
const plast_config *plast_model_spec(const plast_model *m);
/* Block k's `block =` name, else the name of its trainable layer (of its
 * first layer if it has none). */
const char *plast_model_block_name(const plast_model *m, int k);
/* Forward FLOPs of one sample (layers that report them). */
uint64_t plast_model_flops(const plast_model *m);
/* Bytes one sample's forward pass moves at least (plast_layer_bytes). */
uint64_t plast_model_bytes(const plast_model *m);

/* What training uses beside the layers: set by the trainer before the
 * rule is created (not owned by the model). */
void plast_model_attach(plast_model *m, const plast_loss_ops *loss, plast_optim *optim,
                        int threads);
const plast_loss_ops *plast_model_loss(const plast_model *m);
plast_optim *plast_model_optim(plast_model *m);
plast_ctx plast_model_ctx(plast_model *m, int train);
/* The training step the next contexts carry (set by the trainer per batch). */
void plast_model_set_step(plast_model *m, uint64_t step);

/* Optimiser update of block k's parameters (zeroes their gradients). */
void plast_model_step_block(plast_model *m, int k);
/* Optimiser update of every parameter. */
void plast_model_step_all(plast_model *m);

/* ---- block-by-block execution ---- */

#define PLAST_BLOCK_MAX_LAYERS 16

typedef struct plast_block_run {
    int block;
    int first;                                  /* model index of out[0] */
    const plast_tensor *x;                      /* block input (borrowed) */
    int n;                                      /* layers run */
    plast_tensor out[PLAST_BLOCK_MAX_LAYERS];   /* each layer's output */
} plast_block_run;

/* Run block k on x (kept as run->x: it must outlive the run). */
int plast_block_forward(plast_model *m, int k, const plast_tensor *x, plast_block_run *run,
                        const plast_ctx *ctx, plast_err *e);
/* The block's output (the last layer's). */
plast_tensor *plast_block_output(plast_block_run *run);
/* Output of layer `layer` (a model index inside the block). */
plast_tensor *plast_block_layer_output(plast_block_run *run, int layer);

/* Take over the buffer holding layer `layer`'s output: *out owns it and
 * the run keeps only a view.  For a rule that writes its signal over an
 * output nothing needs any more (DRTP writes D_k over A_k).  PLAST_E_INVAL
 * if the output is a view of the block input. */
int plast_block_take_output(plast_block_run *run, int layer, plast_tensor *out, plast_err *e);

/* Back-propagate dy, the gradient at the output of layer `from` (a model
 * index inside the block), down through the block: parameter gradients are
 * added, and if dx is not NULL the gradient at the block input is
 * allocated into *dx (activations category).  dy is consumed (freed). */
int plast_block_backward(plast_model *m, plast_block_run *run, int from, plast_tensor *dy,
                         plast_tensor *dx, const plast_ctx *ctx, plast_err *e);
/* Free the block's outputs; with keep_output the last one is moved into
 * *kept (the next block's input) instead. */
void plast_block_release(plast_model *m, plast_block_run *run, plast_tensor *kept);

/* The forward pass of a local rule: run block k = 0, 1, ... on the batch,
 * call visit(user, k, run, e) right after block k's forward (train it
 * there: the run's outputs are alive), then release the block keeping only
 * its output and free its input (the batch input after block 0, see
 * plast_batch_drop_input), so at most one block's input and outputs are
 * alive.  Stops at the first error. */
struct plast_batch;
typedef int (*plast_block_visit)(void *user, int k, plast_block_run *run, plast_err *e);
int plast_model_local_pass(plast_model *m, struct plast_batch *b, plast_block_visit visit,
                           void *user, plast_err *e);

/* A local rule's own execution of block k on its input x, for blocks the
 * generic forward cannot train locally (tpSGD's rnn blocks, without
 * BPTT): it trains the block, allocates the block's output into *y
 * (activations category, owned: the pass frees it after the next block)
 * and returns PLAST_OK; or it returns PLAST_BLOCK_DEFAULT, touching
 * nothing, and the pass runs the block with plast_block_forward and
 * visit; or it returns PLAST_BLOCK_DONE, touching nothing, for a block it
 * already ran and trained together with an earlier one (tpSGD's stacked
 * rnns share one time loop: the runner, called at the first block of the
 * stack, gives the output of its last); or a negative status (*y left
 * empty).
 *
 * PLAST_BLOCK_DONE: block k's output is its input x, moved on, neither
 * copied nor freed: the pass hands it to block k+1 as it is (x is then
 * the output of the runner's earlier call, whatever block k's own input
 * shape is) and frees it after that block, or at once if k is the last
 * block.  At block 0, x is the batch's input: the pass takes it out of
 * the batch (b->x left empty, plast_batch_drop_input then frees
 * nothing). */
#define PLAST_BLOCK_DEFAULT 1
#define PLAST_BLOCK_DONE 2
typedef int (*plast_block_runner)(void *user, int k, const plast_tensor *x, plast_tensor *y,
                                  plast_err *e);
/* plast_model_local_pass, asking `runner` (NULL = never) first for each
 * block: the same memory discipline, one block's input and outputs alive. */
int plast_model_local_pass2(plast_model *m, struct plast_batch *b, plast_block_visit visit,
                            plast_block_runner runner, void *user, plast_err *e);

/* Inference forward of the whole model on x, freeing each input as soon as
 * the next output exists; *y gets the logits (activations category). */
int plast_model_predict(plast_model *m, const plast_tensor *x, plast_tensor *y,
                        plast_err *e);
/* The same through blocks 0 .. nblocks-1 only (features before a head). */
int plast_model_forward_blocks(plast_model *m, const plast_tensor *x, int nblocks,
                               plast_tensor *y, plast_err *e);
/* The same inference forward, calling visit(user, k, run, e) right after
 * block k's forward (its outputs alive, to be read, not trained) and
 * discarding the last output.  Stops at the first error. */
int plast_model_inspect_blocks(plast_model *m, const plast_tensor *x, int nblocks,
                               plast_block_visit visit, void *user, plast_err *e);

#ifdef __cplusplus
}
#endif
#endif
