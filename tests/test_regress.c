/* test_regress.c - inputs the fuzzers (tests/fuzz) found mishandled, each
 * with the exact refusal it now gets.  The inputs themselves are also in
 * tests/fuzz/corpus, replayed through the harnesses by `make check`. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

static char tmpdir[64];

static void make_tmpdir(void)
{
    tu_make_tmpdir(tmpdir, sizeof tmpdir, "regress");
}

static void remove_tmpdir(void)
{
    tu_remove_tmpdir(tmpdir);
}

TestSuite(regress, .init = make_tmpdir, .fini = remove_tmpdir);

static const char trainer_ini[] =
    "[run]\nseed = 7\nepochs = 2\nbatch = 8\nmax_batches = 3\n"
    "[data]\nformat = synthetic\nsamples = 40\ntest_samples = 8\nfeatures = 5\nclasses = 3\n"
    "[layer.h]\ntype = dense\nunits = 6\n[layer.a]\ntype = tanh\n"
    "[layer.out]\ntype = dense\nunits = 3\n"
    "[optimizer]\ntype = adam\nlr = 0.01\n[rule]\nname = bp\n";

/* The whole file into buf (at most n bytes); its length. */
static size_t slurp(const char *path, unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot read %s", path);
    size_t len = fread(buf, 1, n, f);
    cr_assert(feof(f) != 0, "%s larger than the test's buffer", path);
    fclose(f);
    return len;
}

static void spill(const char *path, const unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot write %s", path);
    cr_assert(eq(sz, fwrite(buf, 1, n, f), n));
    cr_assert(eq(int, fclose(f), 0));
}

/* Patch the u32 at `at` and repair the CRC, as a crafted file would. */
static void patch_u32(unsigned char *buf, size_t n, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        buf[at + (size_t)i] = (unsigned char)(v >> (8 * i));
    uLong crc = crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(n - 4));
    for (int i = 0; i < 4; i++)
        buf[n - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
}

/* A checkpoint whose DPOS epoch is 2^31 resumed as epoch -2^31 and then
 * trained 2^31 epochs (fuzz_checkpoint, a timeout). */
Test(regress, checkpoint_epoch_past_int_max_is_refused)
{
    char path[128];
    unsigned char buf[1 << 14];
    plast_config *cfg = tu_config(trainer_ini);
    plast_registry *reg = tu_registry();
    plast_trainer *t;
    plast_err e;
    snprintf(path, sizeof path, "%s/a.ckpt", tmpdir);
    CHECK_OK(plast_trainer_create(&t, cfg, reg, &e), e);
    CHECK_OK(plast_trainer_save(t, path, &e), e);
    plast_trainer_destroy(t);
    size_t n = slurp(path, buf, sizeof buf);
    unsigned char *dpos = memmem(buf, n, "DPOS", 4);
    cr_assert(dpos != NULL);
    patch_u32(buf, n, (size_t)(dpos - buf) + 12, 0x80000000u);
    spill(path, buf, n);
    CHECK_OK(plast_trainer_create(&t, cfg, reg, &e), e);
    cr_assert(eq(int, plast_trainer_resume(t, path, &e), PLAST_E_DATA));
    cr_assert(eq(str, e.msg, "checkpoint position (epoch 2147483648) is out of range"));
    cr_assert(eq(str, e.file, path));
    plast_trainer_destroy(t);
    plast_registry_destroy(reg);
    plast_config_destroy(cfg);
}
