/* stub_rule.h - a do-nothing rule for the test plug-ins of test_plugin.c.
 *
 * The loader tests only register these rules; none is ever created or
 * trained.  They call no libplast function, so a test plug-in loads
 * whichever way it was linked. */
#ifndef PLAST_TEST_STUB_RULE_H
#define PLAST_TEST_STUB_RULE_H

#include "plast/plugin.h"
#include "plast/rule.h"

struct plast_rule {
    int unused;
};

static int stub_create(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e)
{
    (void)out, (void)m, (void)a, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static int stub_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    (void)r, (void)b, (void)st, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static void stub_destroy(plast_rule *r)
{
    (void)r;
}

/* A complete rule_ops initialiser for rule `rname` with schema `schema`. */
#define STUB_RULE_OPS(rname, schema)                                                      \
    {                                                                                     \
        .size = sizeof(plast_rule_ops), .name = (rname), .settings = (schema),            \
        .summary = "test rule", .create = stub_create, .train_batch = stub_train_batch,   \
        .destroy = stub_destroy                                                           \
    }

#endif
