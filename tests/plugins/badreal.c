/* badreal.c - a plug-in built for an 8-byte plast_real. */
#include "config.h"

#include "stub_rule.h"

static const plast_rule_ops badreal_ops = STUB_RULE_OPS("badreal", NULL);
static const plast_rule_ops *const badreal_rules[] = {&badreal_ops, NULL};

PLAST_EXPORT const plast_plugin *plast_plugin_entry(void)
{
    static const plast_plugin d = {
        .magic = PLAST_PLUGIN_MAGIC, .abi = PLAST_ABI_VERSION, .size = sizeof(plast_plugin),
        .real_size = 8, .name = "badreal", .rules = badreal_rules,
    };
    return &d;
}
