/* test_faults.c - allocation-failure injection: every allocation of a
 * small training run is made to fail in turn (plast_mem_fail_at), for
 * each rule.  Every failure must come back as "out of memory", free what
 * it allocated, and leave the checkpoint either absent or the previous
 * complete one (never a partial file, never a stray temp file).
 *
 * Two sweeps per rule:
 *  - the pieces a trainer builds (data, model, optimiser, rule) and a few
 *    training steps and a prediction, on a plast_mem of the test's own, so
 *    the live bytes can be checked to return to exactly zero;
 *  - plast_trainer_run itself (two epochs, evaluation, a checkpoint after
 *    each epoch), failing the Nth allocation from the start of the run. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() __lsan_do_recoverable_leak_check()
#else
#define LEAK_CHECK() 0
#endif

#define STEPS 3
#define BATCH 8
#define FEATURES 6
#define CLASSES 3

static char tmpdir[64];

static void make_tmpdir(void)
{
    tu_make_tmpdir(tmpdir, sizeof tmpdir, "faults");
}

static void remove_tmpdir(void)
{
    tu_remove_tmpdir(tmpdir);
}

TestSuite(faults, .init = make_tmpdir, .fini = remove_tmpdir);

static const char net_ini[] =
    "[layer.h1]\ntype = dense\nunits = 8\n[layer.a1]\ntype = tanh\n"
    "[layer.h2]\ntype = dense\nunits = 7\n[layer.a2]\ntype = relu\n"
    "[layer.out]\ntype = dense\nunits = 3\n"
    "[optimizer]\ntype = adam\nlr = 0.01\n";

/* A failure must say out of memory: the code, or the message of a caller
 * that wrapped it. */
static void expect_nomem(int rc, const plast_err *e, const char *rule, uint64_t n)
{
    cr_assert(ne(int, rc, PLAST_OK));
    cr_assert(eq(int, e->code, rc), "%s, allocation %llu: status %d but e->code %d", rule,
              (unsigned long long)n, rc, e->code);
    cr_assert(rc == PLAST_E_NOMEM || strstr(e->msg, "out of memory") != NULL,
              "%s, allocation %llu failed but the run reported %s: %s", rule,
              (unsigned long long)n, plast_status_str(rc), e->msg);
}

/* ---- the pieces on the test's own allocator ---- */

typedef struct pieces {
    plast_dataset *data;
    plast_model *model;
    plast_args *optim_args, *rule_args;
    plast_optim *optim;
    plast_rule *rule;
} pieces;

static int build_pieces(pieces *p, const plast_config *cfg, plast_registry *reg,
                        const plast_rule_ops *ops, plast_mem *mem, plast_err *e)
{
    static const char *const skip[] = {"optimizer.", "run.", NULL};
    char section[80];
    plast_shape in = {1, {FEATURES}};
    int rc;
    snprintf(section, sizeof section, "rule.%s", ops->name);
    if ((rc = plast_dataset_synthetic(&p->data, 4 * BATCH, FEATURES, CLASSES, 5, mem, e)) ||
        (rc = plast_model_create(&p->model, cfg, reg, &in, CLASSES, 5, mem, e)) ||
        (rc = plast_args_parse(&p->optim_args, cfg, "optimizer", plast_optim_settings, NULL,
                               NULL, e)) ||
        (rc = plast_optim_create(&p->optim, p->optim_args, plast_model_nparams(p->model), mem,
                                 e)))
        return rc;
    plast_model_attach(p->model, &plast_loss_softmax_ce, p->optim, 1);
    if ((rc = plast_args_parse(&p->rule_args, cfg, section, ops->settings, NULL, skip, e)))
        return rc;
    return ops->create(&p->rule, p->model, p->rule_args, e);
}

/* One batch as the trainer makes it, trained, then freed. */
static int step(pieces *p, const plast_rule_ops *ops, plast_mem *mem, int k, plast_err *e)
{
    uint32_t idx[BATCH];
    plast_batch b;
    plast_stats st = {0, 0, 0};
    memset(&b, 0, sizeof b);
    for (int i = 0; i < BATCH; i++)
        idx[i] = (uint32_t)(k * BATCH + i);
    int32_t *labels = plast_mem_alloc(mem, PLAST_MEM_INPUT, BATCH * sizeof *labels);
    if (!labels)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory for a batch");
    int rc = plast_tensor_alloc(&b.x, mem, PLAST_MEM_INPUT, BATCH, &p->data->shape, e);
    if (!rc) {
        plast_dataset_gather(p->data, idx, BATCH, b.x.data, labels);
        b.labels = labels;
        b.n = BATCH;
        b.step = (uint64_t)k;
        plast_model_set_step(p->model, (uint64_t)k);
        plast_optim_begin(p->optim, plast_optim_base_lr(p->optim));
        rc = ops->train_batch(p->rule, &b, &st, e);
    }
    plast_tensor_free(&b.x);
    plast_mem_free(mem, labels);
    return rc;
}

static int predict(pieces *p, const plast_rule_ops *ops, plast_mem *mem, plast_err *e)
{
    uint32_t idx[BATCH];
    plast_tensor x, y;
    for (int i = 0; i < BATCH; i++)
        idx[i] = (uint32_t)i;
    int rc = plast_tensor_alloc(&x, mem, PLAST_MEM_INPUT, BATCH, &p->data->shape, e);
    if (rc)
        return rc;
    plast_dataset_gather(p->data, idx, BATCH, x.data, NULL);
    if (PLAST_HAS(ops, plast_rule_ops, predict))
        rc = ops->predict(p->rule, &x, &y, e);
    else
        rc = plast_model_predict(p->model, &x, &y, e);
    if (!rc)
        plast_tensor_free(&y);
    plast_tensor_free(&x);
    return rc;
}

static void destroy_pieces(pieces *p, const plast_rule_ops *ops)
{
    if (p->rule)
        ops->destroy(p->rule);
    plast_args_destroy(p->rule_args);
    plast_optim_destroy(p->optim);
    plast_args_destroy(p->optim_args);
    plast_model_destroy(p->model);
    plast_dataset_destroy(p->data);
}

/* Build, train STEPS batches and predict with allocation n failing (0 =
 * none); returns the status and, in *allocs, the allocations made. */
static int pieces_run(const plast_config *cfg, plast_registry *reg, const plast_rule_ops *ops,
                      uint64_t n, uint64_t *allocs, plast_err *e)
{
    pieces p;
    plast_mem *mem;
    plast_err ignore;
    memset(&p, 0, sizeof p);
    cr_assert(eq(int, plast_mem_create(&mem, &ignore), PLAST_OK));
    plast_mem_fail_at(mem, n);
    int rc = build_pieces(&p, cfg, reg, ops, mem, e);
    for (int k = 0; k < STEPS && !rc; k++)
        rc = step(&p, ops, mem, k, e);
    if (!rc)
        rc = predict(&p, ops, mem, e);
    destroy_pieces(&p, ops);
    cr_assert(eq(sz, plast_mem_live_total(mem), 0), "%s, allocation %llu: %zu bytes still live",
              ops->name, (unsigned long long)n, plast_mem_live_total(mem));
    *allocs = plast_mem_alloc_count(mem);
    plast_mem_destroy(mem);
    return rc;
}

static void sweep_pieces(const char *rule)
{
    plast_config *cfg = tu_config(net_ini);
    plast_registry *reg = tu_registry();
    const plast_rule_ops *ops = tu_rule(reg, rule);
    plast_err e;
    uint64_t total, made;
    CHECK_OK(pieces_run(cfg, reg, ops, 0, &total, &e), e);
    cr_assert(gt(u64, total, 10));
    for (uint64_t n = 1; n <= total; n++) {
        int rc = pieces_run(cfg, reg, ops, n, &made, &e);
        expect_nomem(rc, &e, rule, n);
        cr_assert(ge(u64, made, n), "%s: allocation %llu was never attempted", rule,
                  (unsigned long long)n);
    }
    CHECK_OK(pieces_run(cfg, reg, ops, total + 1, &made, &e), e);
    cr_assert(eq(int, LEAK_CHECK(), 0), "%s: leaks after the sweep", rule);
    plast_registry_destroy(reg);
    plast_config_destroy(cfg);
}

Test(faults, every_allocation_of_the_pieces_bp) { sweep_pieces("bp"); }
Test(faults, every_allocation_of_the_pieces_drtp) { sweep_pieces("drtp"); }
Test(faults, every_allocation_of_the_pieces_tpsgd) { sweep_pieces("tpsgd"); }

/* ---- the trainer's loop ---- */

static const char *run_ini(const char *rule, const char *ckpt)
{
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "[run]\nseed = 4\nepochs = 2\nbatch = %d\nmax_batches = 2\neval_batch = 5\n"
             "checkpoint = %s\n"
             "[data]\nformat = synthetic\nsamples = 40\ntest_samples = 9\nvalidation = 6\n"
             "features = %d\nclasses = %d\n"
             "%s[rule]\nname = %s\n",
             BATCH, ckpt, FEATURES, CLASSES, net_ini, rule);
    return buf;
}

/* The directory holds the checkpoint or nothing: no temp file left. */
static int dir_entries(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    int n = 0;
    cr_assert(d != NULL);
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Epochs completed according to the checkpoint at path, -1 if absent.
 * A checkpoint that is there must be whole (the reader checks the CRC
 * and every chunk bound). */
static int checkpoint_epoch(const char *path)
{
    plast_reader *r;
    plast_err e;
    uint32_t epoch;
    if (access(path, F_OK) != 0)
        return -1;
    CHECK_OK(plast_reader_open(&r, path, &e), e);
    CHECK_OK(plast_reader_chunk(r, "DPOS", &e), e);
    CHECK_OK(plast_reader_u32(r, &epoch, &e), e);
    plast_reader_destroy(r);
    return (int)epoch;
}

/* Train with allocation n of the run failing (0 = none); *allocs gets the
 * run's allocations and *epoch the checkpoint's epoch after it. */
static int trainer_run(plast_registry *reg, const char *rule, const char *ckpt, uint64_t n,
                       uint64_t *allocs, int *epoch, plast_err *e)
{
    plast_config *cfg = tu_config(run_ini(rule, ckpt));
    plast_trainer *t;
    unlink(ckpt);
    CHECK_OK(plast_trainer_create(&t, cfg, reg, e), *e);
    plast_mem *mem = plast_trainer_mem(t);
    uint64_t before = plast_mem_alloc_count(mem);
    plast_mem_fail_at(mem, n);
    int rc = plast_trainer_run(t, NULL, e);
    *allocs = plast_mem_alloc_count(mem) - before;
    *epoch = checkpoint_epoch(ckpt);
    cr_assert(le(int, dir_entries(), 1), "%s, allocation %llu: stray files beside %s", rule,
              (unsigned long long)n, ckpt);
    plast_trainer_destroy(t);
    plast_config_destroy(cfg);
    return rc;
}

static void sweep_trainer(const char *rule)
{
    char ckpt[128];
    plast_registry *reg = tu_registry();
    plast_err e;
    uint64_t total, made;
    int epoch;
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", tmpdir);
    CHECK_OK(trainer_run(reg, rule, ckpt, 0, &total, &epoch, &e), e);
    cr_assert(eq(int, epoch, 2));
    cr_assert(gt(u64, total, 10));
    int failed_in_epoch2 = 0;
    for (uint64_t n = 1; n <= total; n++) {
        int rc = trainer_run(reg, rule, ckpt, n, &made, &epoch, &e);
        expect_nomem(rc, &e, rule, n);
        /* no checkpoint yet, or the one of epoch 1: never epoch 2 */
        cr_assert(epoch == -1 || epoch == 1, "%s, allocation %llu: checkpoint of epoch %d",
                  rule, (unsigned long long)n, epoch);
        failed_in_epoch2 += epoch == 1;
    }
    cr_assert(gt(int, failed_in_epoch2, 0)); /* the sweep reached the second epoch */
    CHECK_OK(trainer_run(reg, rule, ckpt, total + 1, &made, &epoch, &e), e);
    cr_assert(eq(int, LEAK_CHECK(), 0), "%s: leaks after the sweep", rule);
    plast_registry_destroy(reg);
}

Test(faults, every_allocation_of_a_training_run_bp) { sweep_trainer("bp"); }
Test(faults, every_allocation_of_a_training_run_drtp) { sweep_trainer("drtp"); }
Test(faults, every_allocation_of_a_training_run_tpsgd) { sweep_trainer("tpsgd"); }
