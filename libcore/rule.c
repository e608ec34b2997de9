/* rule.c - small helpers every rule uses around the task loss. */
#include "config.h"

#include <string.h>

#include "plast/rule.h"

void plast_batch_drop_input(plast_batch *b)
{
    plast_tensor_free(&b->x);
}

int plast_rule_loss(plast_model *m, const plast_tensor *logits, const plast_batch *b,
                    plast_stats *st, plast_tensor *grad, plast_err *e)
{
    const plast_loss_ops *loss = plast_model_loss(m);
    int rc;
    if (grad) {
        rc = plast_tensor_alloc_dims(grad, plast_model_mem(m), PLAST_MEM_ACTIVATIONS,
                                     logits->ndim, logits->dim, e);
        if (rc)
            return rc;
    }
    double value = 0;
    rc = loss->eval(logits, b->labels, &value, grad, e);
    if (rc) {
        if (grad)
            plast_tensor_free(grad);
        return rc;
    }
    st->loss = value;
    st->correct = plast_count_correct(logits, b->labels);
    st->count = b->n;
    return PLAST_OK;
}

int plast_rule_output_backward(plast_model *m, plast_block_run *run, const plast_batch *b,
                               plast_stats *st, plast_err *e)
{
    plast_ctx ctx = plast_model_ctx(m, 1);
    plast_tensor dy;
    int rc = plast_rule_loss(m, plast_block_output(run), b, st, &dy, e);
    if (!rc)
        rc = plast_block_backward(m, run, run->first + run->n - 1, &dy, NULL, &ctx, e);
    return rc;
}
