/* fuzz_checkpoint.c - the checkpoint reader, then the trainer's resume
 * path on the same bytes, then training from where the checkpoint says.
 *
 * Part 1 opens the input as a checkpoint (an in-memory file) and reads
 * every chunk it knows the layout of, and a few it does not, through the
 * typed readers.  Part 2 builds a small trainer (rule bp, synthetic data)
 * afresh for every input, resumes it from the input and, if that is
 * accepted, trains: a checkpoint that passes resume must be safe to train
 * from.  Part 2 needs the bp plug-in in $PLAST_PLUGIN_PATH; without it
 * only part 1 runs.  Inputs are read with a repaired CRC too (below). */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "plast/plast.h"
#include "fuzz.h"

/* Must match the configuration the seed checkpoints were written with
 * (tests/fuzz/corpus/checkpoint). */
static const char trainer_ini[] =
    "[run]\nseed = 7\nepochs = 2\nbatch = 8\nmax_batches = 3\neval_batch = 16\n"
    "[data]\nformat = synthetic\nsamples = 40\ntest_samples = 8\nfeatures = 5\nclasses = 3\n"
    "[layer.h]\ntype = dense\nunits = 6\n[layer.a]\ntype = tanh\n"
    "[layer.out]\ntype = dense\nunits = 3\n"
    "[optimizer]\ntype = adam\nlr = 0.01\n"
    "[rule]\nname = bp\n";

/* Read a chunk as a stream of strings and numbers until it ends. */
static void read_chunk(plast_reader *r, const char tag[4])
{
    char buf[64];
    uint32_t u32 = 0;
    uint64_t u64;
    double f64;
    float f[16];
    plast_err e;
    if (plast_reader_chunk(r, tag, &e))
        return;
    for (int i = 0; i < 4096; i++) {
        int rc;
        switch (i % 5) {
        case 0: rc = plast_reader_str(r, buf, sizeof buf, &e); break;
        case 1: rc = plast_reader_u32(r, &u32, &e); break;
        case 2: rc = plast_reader_u64(r, &u64, &e); break;
        case 3: rc = plast_reader_f64(r, &f64, &e); break;
        default: rc = plast_reader_floats(r, f, u32 % 17, &e); break;
        }
        if (rc && plast_reader_bytes(r, buf, 1, &e))
            return;
    }
}

static void read_container(const char *path)
{
    static const char tags[][4] = {{'M', 'E', 'T', 'A'}, {'M', 'O', 'D', 'L'},
                                   {'O', 'P', 'T', 'M'}, {'D', 'P', 'O', 'S'},
                                   {'R', 'U', 'L', 'E'}, {'X', 'X', 'X', 'X'}};
    plast_reader *r;
    plast_err e;
    if (plast_reader_open(&r, path, &e))
        return;
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        (void)plast_reader_has_chunk(r, tags[i]);
        read_chunk(r, tags[i]);
    }
    (void)plast_reader_path(r);
    plast_reader_destroy(r);
}

static int setup(plast_config **cfg, plast_registry **reg)
{
    plast_err e;
    const plast_rule_ops *ops;
    const char *file;
    if (plast_config_parse_string(cfg, "fuzz.ini", trainer_ini, &e))
        return -1;
    if (plast_registry_create(reg, &e) ||
        plast_registry_find_rule(*reg, "bp", &ops, &file, &e)) {
        char buf[600];
        fprintf(stderr, "fuzz_checkpoint: %s: resume not fuzzed\n",
                plast_err_format(&e, buf, sizeof buf));
        return -1;
    }
    return 0;
}

static void resume_and_train(const char *path)
{
    static plast_config *cfg;
    static plast_registry *reg;
    static int state; /* 0 = not set up, 1 = ready, -1 = unavailable */
    plast_trainer *t;
    plast_err e;
    if (state == 0)
        state = setup(&cfg, &reg) == 0 ? 1 : -1;
    if (state < 0 || plast_trainer_create(&t, cfg, reg, &e))
        return;
    if (plast_trainer_resume(t, path, &e) == 0)
        (void)plast_trainer_run(t, NULL, &e);
    plast_trainer_destroy(t);
    /* weights only, as [run] init and `plast eval` read them */
    if (plast_trainer_create(&t, cfg, reg, &e) == 0) {
        (void)plast_trainer_load_weights(t, path, &e);
        plast_trainer_destroy(t);
    }
}

static void run(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return;
    read_container(path);
    resume_and_train(path);
    close(fd);
}

/* A mutated checkpoint almost never keeps a valid CRC, and the reader
 * rightly stops there: run each input a second time with its last four
 * bytes replaced by the CRC of the rest, so the fuzzer reaches the chunk
 * table and everything that reads the chunks. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size);
    if (size < 20)
        return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        return 0;
    memcpy(fixed, data, size);
    uLong crc = crc32(crc32(0L, Z_NULL, 0), fixed, (uInt)(size - 4));
    for (int i = 0; i < 4; i++)
        fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    if (memcmp(fixed + size - 4, data + size - 4, 4) != 0)
        run(fixed, size);
    free(fixed);
    return 0;
}
