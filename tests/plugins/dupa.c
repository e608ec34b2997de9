/* dupa.c - provides rule "dup", as dupb.c does: the second loaded is refused. */
#include "config.h"

#include "stub_rule.h"

static const plast_rule_ops dup_ops = STUB_RULE_OPS("dup", NULL);
static const plast_rule_ops *const dupa_rules[] = {&dup_ops, NULL};

PLAST_PLUGIN(.name = "dupa", .version = "1", .rules = dupa_rules);
