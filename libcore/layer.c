/* layer.c - what all layer types share: the default initialisation. */
#include "config.h"

#include <math.h>

#include "plast/layer.h"
#include "plast/plugin.h"

/* PyTorch's nn.Linear bound 1/sqrt(fan_in), for weights and biases alike.
 * Parameters are drawn in declaration order (weights before bias), each
 * element in storage order, all from the one stream the model gives. */
void plast_layer_default_init(plast_layer *l, plast_rng *rng)
{
    for (int i = 0; i < l->nparams; i++) {
        plast_param *p = &l->param[i];
        if (p->flags & PLAST_PARAM_BUFFER)
            continue; /* buffers start at zero */
        PLAST_ASSERT(p->fan_in > 0);
        PLAST_ASSERT(p->w != NULL || p->count == 0);
        float bound = (float)(1.0 / sqrt((double)p->fan_in));
        for (size_t j = 0; j < p->count; j++)
            p->w[j] = plast_rng_uniform(rng, -bound, bound);
    }
}

uint64_t plast_layer_bytes(const plast_layer *l, int batch)
{
    uint64_t values = (uint64_t)plast_shape_size(&l->in) + plast_shape_size(&l->out);
    if (l->ninputs == 2)
        values += plast_shape_size(&l->in2);
    values *= (uint64_t)batch;
    for (int p = 0; p < l->nparams; p++)
        values += l->param[p].count;
    return values * sizeof(plast_real);
}

uint64_t plast_layer_flops(const plast_layer *l, int batch)
{
    return PLAST_HAS(l->ops, plast_layer_ops, flops) ? l->ops->flops(l, batch) : 0;
}

int plast_layer_check_tensor(const plast_layer *l, const plast_tensor *t, const char *what,
                             int batch, size_t n, plast_err *e)
{
    size_t have = plast_tensor_sample_size(t);
    if (plast_tensor_batch(t) != batch || have != n)
        return plast_err_set(e, PLAST_E_INVAL,
                             "%s %s: %s: expected %d samples of %zu values, found %d of %zu",
                             l->ops->name, l->name, what, batch, n, plast_tensor_batch(t), have);
    return PLAST_OK;
}
