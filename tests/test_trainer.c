/* test_trainer.c - the training loop end to end on synthetic data:
 * learning, determinism, checkpoints, resume, init, overrides, FTZ. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "testutil.h"

static char tmpdir[64];

static void make_tmpdir(void)
{
    tu_make_tmpdir(tmpdir, sizeof tmpdir, "trainer");
}

static void remove_tmpdir(void)
{
    tu_remove_tmpdir(tmpdir);
}

TestSuite(trainer, .init = make_tmpdir, .fini = remove_tmpdir);

static const char *ini(const char *rule, int epochs, uint64_t seed, const char *extra)
{
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "[run]\nseed = %llu\nepochs = %d\nbatch = 32\n"
             "[data]\nformat = synthetic\nsamples = 1200\ntest_samples = 400\n"
             "features = 10\nclasses = 4\n"
             "[layer.h1]\ntype = dense\nunits = 24\n[layer.a1]\ntype = tanh\n"
             "[layer.h2]\ntype = dense\nunits = 16\n[layer.a2]\ntype = tanh\n"
             "[layer.out]\ntype = dense\nunits = 4\n"
             "[optimizer]\ntype = adam\nlr = 0.01\n"
             "[rule]\nname = %s\n%s",
             (unsigned long long)seed, epochs, rule, extra);
    return buf;
}

typedef struct run {
    plast_config *cfg;
    plast_registry *reg;
    plast_trainer *t;
    plast_epoch_report last;
    int stop_after;   /* batches; 0 = never */
    int batches;
    int ftz_seen;
} run;

static void on_epoch(void *user, const plast_epoch_report *r)
{
    ((run *)user)->last = *r;
}

static void on_batch(void *user, int epoch, uint64_t b, uint64_t n, double loss, double acc)
{
    (void)epoch, (void)b, (void)n, (void)loss, (void)acc;
    run *r = user;
    r->batches++;
    r->ftz_seen += plast_fpenv_flushing();
}

static int stop_now(void *user)
{
    run *r = user;
    return r->stop_after && r->batches >= r->stop_after;
}

static int open_run(run *r, const char *text, plast_err *e)
{
    memset(r, 0, sizeof *r);
    r->cfg = tu_config(text);
    r->reg = tu_registry();
    return plast_trainer_create(&r->t, r->cfg, r->reg, e);
}

static void start(run *r, const char *text)
{
    plast_err e;
    CHECK_OK(open_run(r, text, &e), e);
}

static int train(run *r, plast_err *e)
{
    plast_train_hooks h = {r, stop_now, on_batch, on_epoch};
    return plast_trainer_run(r->t, &h, e);
}

static void finish(run *r)
{
    plast_trainer_destroy(r->t);
    plast_registry_destroy(r->reg);
    plast_config_destroy(r->cfg);
}

static int same_weights(run *a, run *b)
{
    plast_model *ma = plast_trainer_model(a->t), *mb = plast_trainer_model(b->t);
    return plast_model_nparams(ma) == plast_model_nparams(mb) &&
           memcmp(plast_model_weights(ma), plast_model_weights(mb),
                  plast_model_nparams(ma) * sizeof(float)) == 0;
}

Test(trainer, bp_learns_the_synthetic_task)
{
    run r;
    plast_err e;
    start(&r, ini("bp", 8, 1, ""));
    CHECK_OK(train(&r, &e), e);
    cr_expect(r.last.test_acc >= 0.99, "test accuracy %.4f", r.last.test_acc);
    cr_expect(eq(int, r.last.epoch, 8));
    cr_expect(r.last.train_peak[PLAST_MEM_WEIGHTS] > 0);
    cr_expect(r.last.train_peak_act_input > 0);
    finish(&r);
}

Test(trainer, drtp_beats_chance)
{
    run r;
    plast_err e;
    start(&r, ini("drtp", 8, 1, ""));
    CHECK_OK(train(&r, &e), e);
    cr_expect(r.last.test_acc >= 0.9, "test accuracy %.4f", r.last.test_acc);
    finish(&r);
}

Test(trainer, same_seed_same_weights_other_seed_differs)
{
    const char *rules[2] = {"bp", "drtp"};
    for (int i = 0; i < 2; i++) {
        run a, b, c;
        plast_err e;
        start(&a, ini(rules[i], 2, 3, ""));
        start(&b, ini(rules[i], 2, 3, ""));
        start(&c, ini(rules[i], 2, 4, ""));
        CHECK_OK(train(&a, &e), e);
        CHECK_OK(train(&b, &e), e);
        CHECK_OK(train(&c, &e), e);
        cr_expect(same_weights(&a, &b), "%s: same seed, different weights", rules[i]);
        cr_expect(same_weights(&a, &c) == 0, "%s: other seed, same weights", rules[i]);
        finish(&a);
        finish(&b);
        finish(&c);
    }
}

/* Stop mid-epoch, save, resume in a new trainer: the end result equals an
 * uninterrupted run bit for bit. */
Test(trainer, interrupted_and_resumed_run_is_bit_identical)
{
    const char *rules[2] = {"bp", "drtp"};
    for (int i = 0; i < 2; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s.ckpt", tmpdir, rules[i]);
        char extra[256];
        snprintf(extra, sizeof extra, "[rule.%s]\nrun.checkpoint = %s\n", rules[i], path);
        run full, part, rest;
        plast_err e;
        start(&full, ini(rules[i], 3, 9, ""));
        CHECK_OK(train(&full, &e), e);
        start(&part, ini(rules[i], 3, 9, extra));
        part.stop_after = 50; /* epoch 2, batch 13 of 38 */
        cr_assert(eq(int, train(&part, &e), PLAST_E_CANCELED));
        start(&rest, ini(rules[i], 3, 9, extra));
        CHECK_OK(plast_trainer_resume(rest.t, path, &e), e);
        CHECK_OK(train(&rest, &e), e);
        cr_expect(eq(int, rest.batches, 3 * 38 - 50));
        cr_expect(same_weights(&full, &rest), "%s: resumed run differs", rules[i]);
        cr_expect(eq(dbl, full.last.test_acc, rest.last.test_acc));
        finish(&full);
        finish(&part);
        finish(&rest);
    }
}

static void flip_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    cr_assert(f != NULL);
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

Test(trainer, checkpoint_round_trip_and_refusals)
{
    char path[128], bad[128];
    snprintf(path, sizeof path, "%s/a.ckpt", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.ckpt", tmpdir);
    run a, b;
    plast_err e;
    char buf[600];
    start(&a, ini("bp", 1, 5, ""));
    CHECK_OK(train(&a, &e), e);
    CHECK_OK(plast_trainer_save(a.t, path, &e), e);
    start(&b, ini("bp", 1, 5, ""));
    cr_expect(same_weights(&a, &b) == 0);
    CHECK_OK(plast_trainer_resume(b.t, path, &e), e);
    cr_expect(same_weights(&a, &b));
    finish(&b);
    /* a flipped byte */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, bad);
    cr_assert(eq(int, system(cmd), 0));
    flip_byte(bad, 100);
    start(&b, ini("bp", 1, 5, ""));
    cr_expect(eq(int, plast_trainer_resume(b.t, bad, &e), PLAST_E_DATA));
    cr_expect(strstr(plast_err_format(&e, buf, sizeof buf), "CRC mismatch") != NULL, "%s", buf);
    finish(&b);
    /* another rule, another seed */
    start(&b, ini("drtp", 1, 5, ""));
    cr_expect(eq(int, plast_trainer_resume(b.t, path, &e), PLAST_E_DATA));
    cr_expect(strstr(plast_err_format(&e, buf, sizeof buf),
                     "checkpoint is for rule 'bp', this run uses 'drtp'") != NULL, "%s", buf);
    finish(&b);
    start(&b, ini("bp", 1, 6, ""));
    cr_expect(eq(int, plast_trainer_resume(b.t, path, &e), PLAST_E_DATA));
    cr_expect(strstr(e.msg, "seed 5, this run uses seed 6") != NULL, "%s", e.msg);
    finish(&b);
    /* init = takes only the weights, any rule or seed */
    char extra[256];
    snprintf(extra, sizeof extra, "[rule.drtp]\nrun.init = %s\n", path);
    start(&b, ini("drtp", 1, 6, extra));
    cr_expect(same_weights(&a, &b), "init did not load the weights");
    finish(&b);
    /* a model of another shape refuses them */
    snprintf(extra, sizeof extra, "[rule.bp]\nrun.init = %s\n", path);
    char other[2048];
    snprintf(other, sizeof other, "%s", ini("bp", 1, 5, extra));
    char *u = strstr(other, "units = 24");
    memcpy(u, "units = 25", 10);
    cr_expect(eq(int, open_run(&b, other, &e), PLAST_E_DATA));
    cr_expect(strstr(e.msg, "layer 'h1'") != NULL, "%s", e.msg);
    plast_registry_destroy(b.reg);
    plast_config_destroy(b.cfg);
    finish(&a);
}

Test(trainer, rule_section_overrides_optimizer_and_run)
{
    run r;
    start(&r, ini("drtp", 1, 5, "[rule.drtp]\noptimizer.lr = 0.5\nrun.epochs = 3\n"
                                "[rule.bp]\noptimizer.lr = 0.25\n"));
    cr_expect(eq(dbl, plast_optim_base_lr(plast_model_optim(plast_trainer_model(r.t))), 0.5));
    cr_expect(eq(int, plast_trainer_epochs(r.t), 3));
    finish(&r);
}

Test(trainer, config_errors)
{
    run r;
    plast_err e;
    char buf[600];
    cr_expect(eq(int, open_run(&r, "[run]\nepochs = 1\n[colour]\nx = 1\n", &e), PLAST_E_PARSE));
    cr_expect(eq(str, (char *)plast_err_format(&e, buf, sizeof buf),
                 "test.ini:3: unknown section [colour] (expected run, data, layer.NAME, loss, "
                 "optimizer, rule, rule.NAME)"));
    plast_registry_destroy(r.reg);
    plast_config_destroy(r.cfg);
    /* the selected rule's section is checked against its schema */
    cr_expect(eq(int, open_run(&r, ini("drtp", 1, 1, "[rule.drtp]\nmomentum = 3\n"), &e),
                 PLAST_E_PARSE));
    cr_expect(strstr(plast_err_format(&e, buf, sizeof buf),
                     "[rule.drtp] unknown key 'momentum' (rule.drtp accepts: proj_store, "
                     "hidden_reduce, zero_init_hidden)") != NULL, "%s", buf);
    plast_registry_destroy(r.reg);
    plast_config_destroy(r.cfg);
    /* an installed rule's section is checked even when not selected */
    cr_expect(eq(int, open_run(&r, ini("bp", 1, 1, "[rule.drtp]\nproj_store = disk\n"), &e),
                 PLAST_E_PARSE));
    cr_expect(strstr(e.msg, "proj_store: expected one of matrix, regen, found \"disk\"") != NULL,
              "%s", e.msg);
    plast_registry_destroy(r.reg);
    plast_config_destroy(r.cfg);
    /* a rule that is not installed: its section is not checked */
    CHECK_OK(open_run(&r, ini("bp", 1, 1, "[rule.notinstalled]\nanything = 1\n"), &e), e);
    finish(&r);
}

Test(trainer, flush_to_zero_during_training_only)
{
    run r;
    plast_err e;
    start(&r, ini("bp", 1, 1, ""));
    int before = plast_fpenv_flushing();
    CHECK_OK(train(&r, &e), e);
    cr_expect(eq(int, r.ftz_seen, r.batches), "FTZ off during %d of %d batches",
              r.batches - r.ftz_seen, r.batches);
    cr_expect(eq(int, plast_fpenv_flushing(), before), "FTZ mode not restored");
    finish(&r);
    start(&r, ini("bp", 1, 1, "[rule.bp]\nrun.flush_denormals = false\n"));
    CHECK_OK(train(&r, &e), e);
    cr_expect(eq(int, r.ftz_seen, 0));
    finish(&r);
}

/* Batchnorm joins its layer's block, and its running statistics (buffers,
 * not trained) travel through checkpoints. */
Test(trainer, batchnorm_statistics_in_checkpoints)
{
    char path[128];
    snprintf(path, sizeof path, "%s/bn.ckpt", tmpdir);
    const char *bn = "[layer.h1b]\ntype = batchnorm\n";
    char text[2048];
    snprintf(text, sizeof text, "%s", ini("bp", 2, 5, ""));
    char *at = strstr(text, "[layer.a1]");
    char rest[2048];
    snprintf(rest, sizeof rest, "%s", at);
    snprintf(at, sizeof text - (size_t)(at - text), "%s%s", bn, rest);
    run a, b;
    plast_err e;
    start(&a, text);
    plast_model *m = plast_trainer_model(a.t);
    cr_expect(eq(int, plast_model_nblocks(m), 3), "batchnorm must join dense h1's block");
    CHECK_OK(train(&a, &e), e);
    cr_expect(a.last.test_acc > 0.9, "accuracy %g", a.last.test_acc);
    plast_layer *l = plast_model_layer(m, plast_model_find_layer(m, "h1b"));
    cr_assert(eq(int, l->nparams, 4));
    cr_expect(l->param[2].w[0] != 0.0f, "running mean never updated");
    CHECK_OK(plast_trainer_save(a.t, path, &e), e);
    start(&b, text);
    plast_model *mb = plast_trainer_model(b.t);
    plast_layer *lb = plast_model_layer(mb, plast_model_find_layer(mb, "h1b"));
    cr_expect(memcmp(lb->param[2].w, l->param[2].w, l->param[2].count * 4) != 0);
    CHECK_OK(plast_trainer_resume(b.t, path, &e), e);
    for (int p = 0; p < 4; p++)
        cr_expect(memcmp(lb->param[p].w, l->param[p].w, l->param[p].count * 4) == 0,
                  "parameter %d differs after resume", p);
    double la, aa, lb2, ab;
    CHECK_OK(plast_trainer_evaluate(a.t, &la, &aa, &e), e);
    CHECK_OK(plast_trainer_evaluate(b.t, &lb2, &ab, &e), e);
    cr_expect(eq(dbl, la, lb2));
    cr_expect(eq(dbl, aa, ab));
    finish(&a);
    finish(&b);
}
