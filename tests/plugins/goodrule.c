/* goodrule.c - a well-formed test plug-in: rule "goodrule" with a small
 * schema and an optional save_state, layer "goodlayer", loss "goodloss".
 * Nothing here is ever run. */
#include "config.h"

#include "plast/layer.h"
#include "plast/loss.h"
#include "stub_rule.h"

static const char *const goodrule_modes[] = {"fast", "slow", NULL};

static const plast_setting goodrule_settings[] = {
    {.key = "rate", .type = PLAST_S_REAL, .def = "0.5", .min = 0, .max = 1,
     .help = "a rate in [0, 1]"},
    {.key = "mode", .type = PLAST_S_ENUM, .def = "fast", .choices = goodrule_modes,
     .help = "how"},
    {.key = NULL},
};

static int goodrule_save(const plast_rule *r, plast_writer *w, plast_err *e)
{
    (void)r, (void)w, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static const plast_rule_ops goodrule_ops = {
    .size = sizeof(plast_rule_ops),
    .name = "goodrule",
    .settings = goodrule_settings,
    .summary = "a rule that is never trained",
    .create = stub_create,
    .train_batch = stub_train_batch,
    .destroy = stub_destroy,
    .save_state = goodrule_save,
};

static int goodlayer_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    (void)l, (void)a, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static int goodlayer_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                             const plast_ctx *ctx, plast_err *e)
{
    (void)l, (void)x, (void)y, (void)ctx, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static int goodlayer_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                              const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                              plast_err *e)
{
    (void)l, (void)x, (void)y, (void)dy, (void)dx, (void)ctx, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static const plast_layer_ops goodlayer_ops = {
    .size = sizeof(plast_layer_ops),
    .name = "goodlayer",
    .create = goodlayer_create,
    .forward = goodlayer_forward,
    .backward = goodlayer_backward,
};

static int goodloss_eval(const plast_tensor *pred, const int32_t *labels, double *loss,
                         plast_tensor *grad, plast_err *e)
{
    (void)pred, (void)labels, (void)loss, (void)grad, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static const plast_loss_ops goodloss_ops = {
    .size = sizeof(plast_loss_ops),
    .name = "goodloss",
    .eval = goodloss_eval,
};

static const plast_rule_ops *const goodrule_rules[] = {&goodrule_ops, NULL};
static const plast_layer_ops *const goodrule_layers[] = {&goodlayer_ops, NULL};
static const plast_loss_ops *const goodrule_losses[] = {&goodloss_ops, NULL};

PLAST_PLUGIN(.name = "goodrule", .version = "1.2.3", .license = "MIT",
             .summary = "test plug-in that loads", .rules = goodrule_rules,
             .layers = goodrule_layers, .losses = goodrule_losses);
