/* testutil.h - helpers shared by the model, rule and trainer suites. */
#ifndef PLAST_TESTUTIL_H
#define PLAST_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plast/plast.h>

/* Abort the test with the formatted error. */
#define CHECK_OK(call, e)                                                          \
    do {                                                                           \
        int rc_ = (call);                                                          \
        if (rc_ != PLAST_OK) {                                                     \
            char buf_[600];                                                        \
            cr_fatal("%s failed: %s", #call, plast_err_format(&(e), buf_, sizeof buf_)); \
        }                                                                          \
    } while (0)

/* A fresh directory for a suite's files, /tmp/plast-TAG.XXXXXX into
 * dir[n] (the suites' paths inside it are short fixed buffers), and its
 * removal with everything in it. */
static inline void tu_make_tmpdir(char *dir, size_t n, const char *tag)
{
    snprintf(dir, n, "/tmp/plast-%s.XXXXXX", tag);
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp %s failed", dir);
}

static inline void tu_remove_tmpdir(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect(system(cmd) == 0, "%s failed", cmd);
}

/* A fresh memory tracker. */
static inline plast_mem *tu_mem(void)
{
    plast_mem *m;
    plast_err e;
    CHECK_OK(plast_mem_create(&m, &e), e);
    return m;
}

/* One zero-order step's settings: seed 42, the rest zero. */
static inline plast_zo tu_zo(uint64_t step, int m, double eps)
{
    plast_zo zo;
    memset(&zo, 0, sizeof zo);
    zo.seed = 42;
    zo.step = step;
    zo.m = m;
    zo.eps = eps;
    return zo;
}

static inline plast_config *tu_config(const char *text)
{
    plast_config *c = NULL;
    plast_err e;
    CHECK_OK(plast_config_parse_string(&c, "test.ini", text, &e), e);
    return c;
}

/* Registry finding the build tree's rule plug-ins (make check sets
 * PLAST_PLUGIN_PATH; TEST_RULEDIR is the fallback). */
static inline plast_registry *tu_registry(void)
{
    if (!getenv("PLAST_PLUGIN_PATH"))
        setenv("PLAST_PLUGIN_PATH", TEST_RULEDIR, 1);
    setenv("PLAST_PLUGIN_SYSTEM_PATH", "", 1);
    plast_registry *r = NULL;
    plast_err e;
    CHECK_OK(plast_registry_create(&r, &e), e);
    return r;
}

static inline const plast_rule_ops *tu_rule(plast_registry *reg, const char *name)
{
    const plast_rule_ops *ops;
    const char *file;
    plast_err e;
    CHECK_OK(plast_registry_find_rule(reg, name, &ops, &file, &e), e);
    return ops;
}

/* Everything a rule needs, built from INI text without a trainer. */
typedef struct tu_net {
    plast_config *cfg;
    plast_registry *reg;
    plast_mem *mem;
    plast_model *model;
    plast_args *optim_args, *rule_args;
    plast_optim *optim;
    const plast_rule_ops *ops;
    plast_rule *rule;
    plast_shape in;
} tu_net;

/* A net for samples of shape `in`. */
static inline void tu_net_init_shape(tu_net *n, const char *ini, const plast_shape *in,
                                     int classes, const char *rule, uint64_t seed)
{
    plast_err e;
    memset(n, 0, sizeof *n);
    n->cfg = tu_config(ini);
    n->reg = tu_registry();
    n->in = *in;
    CHECK_OK(plast_mem_create(&n->mem, &e), e);
    CHECK_OK(plast_model_create(&n->model, n->cfg, n->reg, in, classes, seed, n->mem, &e), e);
    CHECK_OK(plast_args_parse(&n->optim_args, n->cfg, "optimizer", plast_optim_settings, NULL,
                              NULL, &e),
             e);
    CHECK_OK(plast_optim_create(&n->optim, n->optim_args, plast_model_nparams(n->model), n->mem,
                                &e),
             e);
    plast_model_attach(n->model, &plast_loss_softmax_ce, n->optim, 1);
    n->ops = tu_rule(n->reg, rule);
    char section[64];
    snprintf(section, sizeof section, "rule.%s", rule);
    static const char *const skip[] = {"optimizer.", "run.", NULL};
    CHECK_OK(plast_args_parse(&n->rule_args, n->cfg, section, n->ops->settings, NULL, skip, &e),
             e);
}

static inline void tu_net_init(tu_net *n, const char *ini, int features, int classes,
                               const char *rule, uint64_t seed)
{
    plast_shape in = {1, {features}};
    tu_net_init_shape(n, ini, &in, classes, rule, seed);
}

static inline void tu_net_create_rule(tu_net *n)
{
    plast_err e;
    CHECK_OK(n->ops->create(&n->rule, n->model, n->rule_args, &e), e);
}

static inline void tu_net_fini(tu_net *n)
{
    if (n->ops)
        n->ops->destroy(n->rule);
    plast_args_destroy(n->rule_args);
    plast_optim_destroy(n->optim);
    plast_args_destroy(n->optim_args);
    plast_model_destroy(n->model);
    plast_mem_destroy(n->mem);
    plast_registry_destroy(n->reg);
    plast_config_destroy(n->cfg);
}

/* One training step of the rule on x [batch, sample] with labels; the
 * batch input is allocated from the model's memory like the trainer's.
 * `features` must equal the sample size. */
static inline plast_stats tu_step(tu_net *n, const float *x, const int32_t *labels, int batch,
                                  int features)
{
    plast_err e;
    plast_batch b;
    memset(&b, 0, sizeof b);
    cr_assert(eq(sz, plast_shape_size(&n->in), (size_t)features));
    CHECK_OK(plast_tensor_alloc(&b.x, n->mem, PLAST_MEM_INPUT, batch, &n->in, &e), e);
    memcpy(b.x.data, x, (size_t)batch * (size_t)features * sizeof *x);
    int32_t *lab = plast_mem_alloc(n->mem, PLAST_MEM_INPUT, (size_t)batch * sizeof *lab);
    memcpy(lab, labels, (size_t)batch * sizeof *lab);
    b.labels = lab;
    b.n = batch;
    plast_optim_begin(n->optim, plast_optim_base_lr(n->optim));
    plast_stats st = {0, 0, 0};
    CHECK_OK(n->ops->train_batch(n->rule, &b, &st, &e), e);
    plast_tensor_free(&b.x);
    plast_mem_free(n->mem, lab);
    return st;
}

#endif
