/* plast/rule.h - the learning-rule interface.
 *
 * A rule is a plast_rule_ops table exported by a plug-in (see plugin.h).
 * The core creates one instance per run with the validated [rule.NAME]
 * section, then calls train_batch() once per mini-batch.  The rule drives
 * the forward pass itself, block by block (model.h), computes whatever
 * signal trains each block, and steps the optimiser (plast_model_step_*).
 *
 * A rule must allocate only through the model's plast_mem (rule state in
 * PLAST_MEM_RULE), keep no globals, print nothing, start no threads and
 * keep no pointer into `args` after create(). */
#ifndef PLAST_RULE_H
#define PLAST_RULE_H

#include <stdint.h>
#include "config.h"
#include "err.h"
#include "model.h"
#include "plugin.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plast_rule plast_rule;     /* each rule defines its own */
typedef struct plast_writer plast_writer; /* checkpoint.h */
typedef struct plast_reader plast_reader;

typedef struct plast_batch {
    plast_tensor x;          /* [n, input shape], input category */
    const int32_t *labels;   /* [n], in [0, classes) */
    int n;
    uint64_t step;           /* batches trained before this one */
} plast_batch;

/* Free the batch's input tensor early (a local rule that no longer needs
 * it after block 0); the labels stay. */
void plast_batch_drop_input(plast_batch *b);

typedef struct plast_stats {
    double loss;   /* mean task loss of the batch */
    int correct;   /* examples whose prediction equals the label */
    int count;     /* examples seen */
} plast_stats;

typedef struct plast_rule_ops {
    uint32_t size;                  /* sizeof(plast_rule_ops) when built */
    const char *name;               /* "drtp" */
    const plast_setting *settings;  /* schema of its [rule.NAME] section */
    const char *summary;            /* one line */
    int (*create)(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e);
    int (*train_batch)(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e);
    void (*destroy)(plast_rule *r); /* accepts NULL */
    /* ---- optional, NULL = unsupported; append only ---- */
    int (*save_state)(const plast_rule *r, plast_writer *w, plast_err *e);
    int (*load_state)(plast_rule *r, plast_reader *rd, plast_err *e);
    /* The forward the rule trains for, used for evaluation (QZO-FF: the
     * fixed-point model); NULL = plast_model_predict.  *y gets the logits
     * (activations category). */
    int (*predict)(plast_rule *r, const plast_tensor *x, plast_tensor *y, plast_err *e);
    /* Forward passes per parameter update (QZO-FF: 2m); NULL = 1. */
    int (*forwards_per_update)(const plast_rule *r);
    /* Trainable parameters the rule keeps beside the model's (AugLocal's
     * auxiliary networks); NULL = 0. */
    size_t (*aux_params)(const plast_rule *r);
    /* Describe the rule's set-up for the user, one line per call of
     * line() (no newline); `plast train` prints them.  NULL = nothing. */
    void (*describe)(const plast_rule *r, void (*line)(void *user, const char *text),
                     void *user);
} plast_rule_ops;

/* Train the output block of a local rule on the model loss: the loss of
 * its output (stats filled), back-propagated through the block to its
 * parameters (no gradient leaves the block).  The caller steps it. */
int plast_rule_output_backward(plast_model *m, plast_block_run *run, const plast_batch *b,
                               plast_stats *st, plast_err *e);

/* Forward of the output block's loss: the loss value, correct count and
 * (if grad is not NULL) dLoss/dlogits allocated into *grad. */
int plast_rule_loss(plast_model *m, const plast_tensor *logits, const plast_batch *b,
                    plast_stats *st, plast_tensor *grad, plast_err *e);

#ifdef __cplusplus
}
#endif
#endif
