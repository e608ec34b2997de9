/* oldrule.c - a plug-in built before save_state existed: its rule table's
 * size ends where save_state begins, so the core must not read it. */
#include "config.h"

#include <stddef.h>

#include "stub_rule.h"

static const plast_rule_ops oldrule_ops = {
    .size = offsetof(plast_rule_ops, save_state),
    .name = "oldrule",
    .summary = "rule from an older plast",
    .create = stub_create,
    .train_batch = stub_train_batch,
    .destroy = stub_destroy,
};

static const plast_rule_ops *const oldrule_rules[] = {&oldrule_ops, NULL};

PLAST_PLUGIN(.name = "oldrule", .version = "0.1", .rules = oldrule_rules);
