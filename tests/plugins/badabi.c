/* badabi.c - a plug-in claiming ABI 2: written by hand, since the
 * PLAST_PLUGIN macro always sets the current ABI.  Everything else is valid. */
#include "config.h"

#include "stub_rule.h"

static const plast_rule_ops badabi_ops = STUB_RULE_OPS("badabi", NULL);
static const plast_rule_ops *const badabi_rules[] = {&badabi_ops, NULL};

PLAST_EXPORT const plast_plugin *plast_plugin_entry(void)
{
    static const plast_plugin d = {
        .magic = PLAST_PLUGIN_MAGIC, .abi = 2, .size = sizeof(plast_plugin),
        .real_size = sizeof(plast_real), .name = "badabi", .version = "9",
        .rules = badabi_rules,
    };
    return &d;
}
