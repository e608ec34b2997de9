/* dupb.c - provides rule "dup", as dupa.c does: the second loaded is refused. */
#include "config.h"

#include "stub_rule.h"

static const plast_rule_ops dup_ops = STUB_RULE_OPS("dup", NULL);
static const plast_rule_ops *const dupb_rules[] = {&dup_ops, NULL};

PLAST_PLUGIN(.name = "dupb", .version = "1", .rules = dupb_rules);
