/* badschema.c - a rule whose REAL setting defaults to "abc": the loader's
 * schema check must refuse the whole file. */
#include "config.h"

#include "stub_rule.h"

static const plast_setting badschema_settings[] = {
    {.key = "lr", .type = PLAST_S_REAL, .def = "abc", .min = 0, .max = 1,
     .help = "a learning rate with a broken default"},
    {.key = NULL},
};

static const plast_rule_ops badschema_ops = STUB_RULE_OPS("badschema", badschema_settings);
static const plast_rule_ops *const badschema_rules[] = {&badschema_ops, NULL};

PLAST_PLUGIN(.name = "badschema", .version = "1", .rules = badschema_rules);
