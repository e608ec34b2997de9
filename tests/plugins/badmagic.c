/* badmagic.c - a descriptor with the wrong magic number. */
#include "config.h"

#include "stub_rule.h"

static const plast_rule_ops badmagic_ops = STUB_RULE_OPS("badmagic", NULL);
static const plast_rule_ops *const badmagic_rules[] = {&badmagic_ops, NULL};

PLAST_EXPORT const plast_plugin *plast_plugin_entry(void)
{
    static const plast_plugin d = {
        .magic = 0xdeadbeefu, .abi = PLAST_ABI_VERSION, .size = sizeof(plast_plugin),
        .real_size = sizeof(plast_real), .name = "badmagic", .rules = badmagic_rules,
    };
    return &d;
}
