/* test_divergence.c - a NaN or Inf in the loss or in the weights stops
 * the run with PLAST_E_DIVERGED and a message naming the epoch, the batch
 * and (for weights) the layer and parameter, and the last good checkpoint
 * stays on disk, never overwritten by one holding NaN. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char tmpdir[64], ckpt[128];

static void make_tmpdir(void)
{
    tu_make_tmpdir(tmpdir, sizeof tmpdir, "diverge");
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", tmpdir);
}

static void remove_tmpdir(void)
{
    tu_remove_tmpdir(tmpdir);
}

TestSuite(divergence, .init = make_tmpdir, .fini = remove_tmpdir);

/* 96 samples in batches of 16: 6 batches per epoch.  DRTP and tpSGD
 * train no batchnorm: it is there for bp only. */
static const char *ini(const char *rule)
{
    const char *bn = strcmp(rule, "bp") ? "" : "[layer.bn]\ntype = batchnorm\n";
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "[run]\nseed = 2\nepochs = 3\nbatch = 16\ncheckpoint = %s\n"
             "[data]\nformat = synthetic\nsamples = 96\ntest_samples = 32\n"
             "features = 6\nclasses = 3\n"
             "[layer.h1]\ntype = dense\nunits = 8\n%s"
             "[layer.a1]\ntype = tanh\n[layer.out]\ntype = dense\nunits = 3\n"
             "[optimizer]\ntype = adam\nlr = 0.01\n[rule]\nname = %s\n",
             ckpt, bn, rule);
    return buf;
}

/* What to poison, and when: after batch `batch` of epoch `epoch` (both
 * 1-based), through the batch_done hook. */
typedef struct poison {
    plast_trainer *t;
    int epoch;
    uint64_t batch;
    const char *layer, *param; /* a parameter's first value, or */
    int optim_state;           /* >= 0: this optimiser state's first value */
    float value;
    /* the checkpoint as the last completed epoch left it */
    unsigned char saved[1 << 16];
    size_t saved_len;
    int epochs_done;
} poison;

static plast_real *param_values(plast_model *m, const char *layer, const char *param)
{
    int i = plast_model_find_layer(m, layer);
    cr_assert(ge(int, i, 0), "no layer %s", layer);
    plast_layer *l = plast_model_layer(m, i);
    for (int p = 0; p < l->nparams; p++)
        if (!strcmp(l->param[p].name, param))
            return l->param[p].w;
    cr_fatal("layer %s has no parameter %s", layer, param);
    return NULL;
}

static void poke(poison *p)
{
    plast_model *m = plast_trainer_model(p->t);
    if (p->optim_state >= 0)
        plast_optim_state(plast_model_optim(m), p->optim_state)[0] = p->value;
    else
        param_values(m, p->layer, p->param)[0] = p->value;
}

static void on_batch(void *user, int epoch, uint64_t b, uint64_t n, double loss, double acc)
{
    poison *p = user;
    (void)n, (void)loss, (void)acc;
    if (epoch == p->epoch && b == p->batch)
        poke(p);
}

static void on_epoch(void *user, const plast_epoch_report *r)
{
    poison *p = user;
    FILE *f = fopen(ckpt, "rb");
    cr_assert(f != NULL, "no checkpoint after epoch %d", r->epoch);
    p->saved_len = fread(p->saved, 1, sizeof p->saved, f);
    cr_assert(feof(f) != 0, "checkpoint larger than the test's buffer");
    fclose(f);
    p->epochs_done = r->epoch;
}

/* The checkpoint is still the one the last completed epoch wrote. */
static void expect_last_good_checkpoint(const poison *p)
{
    unsigned char now[1 << 16];
    FILE *f = fopen(ckpt, "rb");
    cr_assert(f != NULL, "the last good checkpoint was removed");
    size_t len = fread(now, 1, sizeof now, f);
    fclose(f);
    cr_assert(eq(sz, len, p->saved_len));
    cr_assert(memcmp(now, p->saved, len) == 0, "the checkpoint was overwritten");
}

/* Train `rule` with p's poison; returns the status, message in e. */
static int run_poisoned(const char *rule, poison *p, plast_err *e)
{
    plast_config *cfg = tu_config(ini(rule));
    plast_registry *reg = tu_registry();
    CHECK_OK(plast_trainer_create(&p->t, cfg, reg, e), *e);
    if (p->epoch == 0)
        poke(p); /* before the first batch */
    plast_train_hooks h = {p, NULL, on_batch, on_epoch};
    int rc = plast_trainer_run(p->t, &h, e);
    plast_trainer_destroy(p->t);
    plast_registry_destroy(reg);
    plast_config_destroy(cfg);
    return rc;
}

static void expect_diverged(int rc, const plast_err *e, const char *msg)
{
    cr_assert(eq(int, rc, PLAST_E_DIVERGED), "status %d: %s", rc, e->msg);
    cr_assert(eq(int, e->code, PLAST_E_DIVERGED));
    cr_assert(eq(str, (char *)e->msg, (char *)msg));
}

Test(divergence, nan_weight_before_training_names_layer_and_loss)
{
    poison p = {.layer = "out", .param = "weight", .optim_state = -1, .value = NAN};
    plast_err e;
    int rc = run_poisoned("bp", &p, &e);
    expect_diverged(rc, &e,
                    "training diverged at epoch 1, batch 1: loss is nan, "
                    "layer 'h1' parameter 'weight' holds nan");
    cr_assert(ne(int, access(ckpt, F_OK), 0), "a checkpoint was written");
}

Test(divergence, inf_weight_mid_run_keeps_the_last_good_checkpoint)
{
    const char *rules[] = {"bp", "drtp", "tpsgd"};
    for (int i = 0; i < 3; i++) {
        poison p = {.epoch = 2, .batch = 3, .layer = "h1", .param = "weight",
                    .optim_state = -1, .value = INFINITY};
        plast_err e;
        int rc = run_poisoned(rules[i], &p, &e);
        cr_assert(eq(int, rc, PLAST_E_DIVERGED), "%s: status %d: %s", rules[i], rc, e.msg);
        cr_assert(strstr(e.msg, "training diverged at epoch 2, batch 4: ") == e.msg, "%s: %s",
                  rules[i], e.msg);
        cr_assert(strstr(e.msg, "layer '") != NULL, "%s: no layer named: %s", rules[i], e.msg);
        cr_assert(eq(int, p.epochs_done, 1));
        expect_last_good_checkpoint(&p);
    }
}

/* Running statistics do not enter the training loss: only the weight
 * check sees them, and they would otherwise go into the checkpoint.  It
 * looks at them after every batch, also after a step for which the
 * optimiser vouched (every weight it wrote was finite), so a buffer
 * poisoned after batch `after` is named at batch `named` of epoch 1, and
 * no checkpoint is written. */
static void check_nan_buffer(int after, int named)
{
    poison p = {.epoch = 1, .batch = (uint64_t)after, .layer = "bn", .param = "running_var",
                .optim_state = -1, .value = NAN};
    plast_err e;
    char want[160];
    snprintf(want, sizeof want,
             "training diverged at epoch 1, batch %d: layer 'bn' parameter 'running_var' "
             "holds nan",
             named);
    int rc = run_poisoned("bp", &p, &e);
    expect_diverged(rc, &e, want);
    cr_assert(eq(int, p.epochs_done, 0));
    cr_assert(ne(int, access(ckpt, F_OK), 0), "a checkpoint was written");
}

/* After the last batch of epoch 1: caught before its checkpoint. */
Test(divergence, nan_buffer_with_a_finite_loss_names_the_layer)
{
    check_nan_buffer(6, 6);
}

/* Mid-epoch: the next batch's check names it. */
Test(divergence, nan_buffer_mid_epoch_is_caught_at_the_next_batch)
{
    check_nan_buffer(3, 4);
}

Test(divergence, nan_optimizer_state_is_never_saved)
{
    poison p = {.epoch = 2, .batch = 6, .optim_state = 1, .value = NAN};
    plast_err e;
    int rc = run_poisoned("bp", &p, &e);
    expect_diverged(rc, &e,
                    "training diverged at epoch 2, batch 6: optimizer state 2 of 2 holds nan");
    cr_assert(eq(int, p.epochs_done, 1));
    expect_last_good_checkpoint(&p);
}
