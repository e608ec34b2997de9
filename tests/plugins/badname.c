/* badname.c - a descriptor whose name ("othername") is not its file's. */
#include "config.h"

#include "stub_rule.h"

static const plast_rule_ops badname_ops = STUB_RULE_OPS("badname", NULL);
static const plast_rule_ops *const badname_rules[] = {&badname_ops, NULL};

PLAST_PLUGIN(.name = "othername", .version = "1", .rules = badname_rules);
