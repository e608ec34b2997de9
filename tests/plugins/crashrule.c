/* crashrule.c - a test plug-in whose rule crashes: in create() (the
 * default) or, with `when = train`, in its first train_batch().  Used by
 * tests/cli_crash.sh to check that plast names the plug-in file when it
 * dies of the signal. */
#include "config.h"

#include <stdint.h>

#include "plast/plast.h"

struct plast_rule {
    plast_model *model;
};

static const char *const crash_when[] = {"create", "train", NULL};

static const plast_setting crashrule_settings[] = {
    {.key = "when", .type = PLAST_S_ENUM, .def = "create", .choices = crash_when,
     .help = "where to crash: create or train"},
    {.key = NULL},
};

/* A store to an address that is never mapped (not NULL: the sanitizers
 * would turn a NULL store into their own report): SIGSEGV right here, in
 * the plug-in's code. */
static volatile uintptr_t unmapped = 64; /* volatile: no compiler warning */

static void crash(void)
{
    *(volatile int *)unmapped = 1;
}

static int crashrule_create(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e)
{
    if (plast_args_enum(a, "when") == 0)
        crash();
    plast_rule *r = plast_mem_calloc(plast_model_mem(m), PLAST_MEM_RULE, sizeof *r);
    if (!r)
        return plast_err_set(e, PLAST_E_NOMEM, "crashrule: out of memory");
    r->model = m;
    *out = r;
    return PLAST_OK;
}

static int crashrule_train_batch(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    (void)r, (void)b, (void)st, (void)e;
    crash();
    return PLAST_E_UNSUPPORTED;
}

static void crashrule_destroy(plast_rule *r)
{
    if (r)
        plast_mem_free(plast_model_mem(r->model), r);
}

static const plast_rule_ops crashrule_ops = {
    .size = sizeof(plast_rule_ops),
    .name = "crashrule",
    .settings = crashrule_settings,
    .summary = "a rule that crashes (tests)",
    .create = crashrule_create,
    .train_batch = crashrule_train_batch,
    .destroy = crashrule_destroy,
};

static const plast_rule_ops *const crashrule_rules[] = {&crashrule_ops, NULL};

PLAST_PLUGIN(.name = "crashrule", .version = "1", .license = "MIT",
             .summary = "test plug-in that crashes", .rules = crashrule_rules);
