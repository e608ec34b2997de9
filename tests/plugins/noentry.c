/* noentry.c - a shared object exporting some other symbol, not
 * plast_plugin_entry. */
#include "config.h"

#include "stub_rule.h"

static const plast_rule_ops noentry_ops = STUB_RULE_OPS("noentry", NULL);

PLAST_EXPORT const plast_rule_ops *noentry_rule(void);
PLAST_EXPORT const plast_rule_ops *noentry_rule(void)
{
    return &noentry_ops;
}
