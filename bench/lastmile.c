/* lastmile.c - tools of the "last mile" experiment (ALGORITHMS.md §5.7),
 * driven by bench/lastmile.sh:
 *
 *   lastmile data [--source DIR] [--seed N] OUTDIR
 *       the Q1 (domain shift) and Q2 (class shift) sets as plain IDX files
 *   lastmile tile OUT TIMES PREFIX [TAIL]
 *       OUT = TIMES copies of PREFIX, then TAIL (PREFIX names the pair
 *       PREFIX-images.idx / PREFIX-labels.idx): one epoch of the tiled file
 *       is TIMES passes over PREFIX, and TAIL can be held out with
 *       [data] validation
 *   lastmile proto INI CKPT IMAGES LABELS OUT [SECTION.KEY=VALUE]...
 *       the 5-way head set to the prototype classifier of the support set
 *   lastmile infer INI [--resume CKPT] [SECTION.KEY=VALUE]...
 *       test accuracy and tracker peak of the evaluation forward (the
 *       rule's own forward: fixed point for a calibrated qzoff run)
 *   lastmile features INI CKPT IMAGES LABELS [SECTION.KEY=VALUE]...
 *       how far the head's input features are from isotropic over the
 *       images: E|x|^2, |E x|^2, the largest eigenvalue of E[x x^T], the
 *       trace over it, dead features (one JSON line)
 *
 * Exit status: 0 ok, 1 failure (the message names what), 64 usage. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plast/plast.h"
#include "feature_stats.h"
#include "lastmile_data.h"

#define EXIT_USAGE 64
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define PIXELS 784            /* 28 x 28 */
#define Q1_PRETRAIN 50000     /* clean images 0-49,999 */
#define Q1_ADAPT_END 52000    /* adaptation 50,000-51,999 */
#define Q1_VAL_END 54000      /* validation 52,000-53,999 */
#define ROTATION_DEG 30.0
#define NOISE_SIGMA 0.3
#define Q2_FIRST_NEW 5        /* classes 5-9 are the new task */
#define Q2_PER_CLASS 20
#define FEATURE_BATCH 256

static int usage(void)
{
    fputs("usage: lastmile data [--source DIR] [--seed N] OUTDIR\n"
          "       lastmile tile OUT TIMES PREFIX [TAIL]\n"
          "       lastmile proto INI CKPT IMAGES LABELS OUT [SECTION.KEY=VALUE]...\n"
          "       lastmile infer INI [--resume CKPT] [SECTION.KEY=VALUE]...\n"
          "       lastmile features INI CKPT IMAGES LABELS [SECTION.KEY=VALUE]...\n",
          stderr);
    return EXIT_USAGE;
}

static int fail(const plast_err *e)
{
    if (e->file[0] && e->line)
        fprintf(stderr, "lastmile:%s:%d: %s\n", e->file, e->line, e->msg);
    else if (e->file[0])
        fprintf(stderr, "lastmile:%s: %s\n", e->file, e->msg);
    else
        fprintf(stderr, "lastmile: %s\n", e->msg);
    return 1;
}

static int parse_u64(const char *s, const char *what, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!s[0] || *end || errno || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "lastmile: %s: expected an integer from %llu to %llu, found '%s'\n", what,
                (unsigned long long)min, (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- data ---- */

typedef enum shift_kind { SHIFT_NONE, SHIFT_ROTATE, SHIFT_NOISE } shift_kind;

typedef struct gen {
    const char *outdir;
    uint64_t seed;
    const plast_dataset *train, *test;
} gen;

/* One output set: samples idx[0..n) of d, shifted, labels minus
 * label_offset; noise of sample i from stream (DATA, noise_base + i). */
typedef struct set_spec {
    const char *name;
    const plast_dataset *d;
    const uint32_t *idx;
    size_t n;
    shift_kind shift;
    uint32_t noise_base;
    int label_offset;
} set_spec;

/* Shift image px in place; i is its index in its source file. */
static void shift_one(const gen *g, const set_spec *s, uint32_t i, uint8_t *px)
{
    uint8_t src[PIXELS];
    plast_rng r;
    switch (s->shift) {
    case SHIFT_ROTATE:
        memcpy(src, px, PIXELS);
        lastmile_rotate(src, px, 28, 28, ROTATION_DEG);
        break;
    case SHIFT_NOISE:
        plast_rng_stream(&r, g->seed, PLAST_STREAM_DATA, s->noise_base + i);
        lastmile_add_noise(px, px, PIXELS, NOISE_SIGMA, &r);
        break;
    default: break;
    }
}

static int write_set(const gen *g, const set_spec *s, plast_err *e)
{
    uint8_t *px = malloc(s->n * PIXELS + 1);
    int32_t *labels = malloc(s->n * sizeof *labels + 1);
    int rc;
    if (!px || !labels) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "%s: out of memory", s->name);
        goto undo_alloc;
    }
    lastmile_gather(s->d->u8, s->d->labels, PIXELS, s->idx, s->n, s->label_offset, px, labels);
    for (size_t k = 0; k < s->n; k++)
        shift_one(g, s, s->idx[k], px + k * PIXELS);
    char img[4096], lab[4096];
    snprintf(img, sizeof img, "%s/%s-images.idx", g->outdir, s->name);
    snprintf(lab, sizeof lab, "%s/%s-labels.idx", g->outdir, s->name);
    rc = lastmile_write_idx(img, lab, px, labels, s->n, 28, 28, e);
    if (!rc)
        printf("%-16s %6zu images\n", s->name, s->n);
undo_alloc:
    free(labels);
    free(px);
    return rc;
}

static uint32_t *index_range(size_t begin, size_t end)
{
    uint32_t *idx = malloc((end - begin + 1) * sizeof *idx);
    for (size_t i = begin; idx && i < end; i++)
        idx[i - begin] = (uint32_t)i;
    return idx;
}

/* Q1: clean pre-training images, then rotated and noisy adaptation,
 * validation and test sets. */
static int write_q1(const gen *g, plast_err *e)
{
    uint32_t *all = index_range(0, g->train->n), *test = index_range(0, g->test->n);
    int rc = PLAST_OK;
    if (!all || !test) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory");
        goto undo_alloc;
    }
    const size_t na = Q1_ADAPT_END - Q1_PRETRAIN, nv = Q1_VAL_END - Q1_ADAPT_END;
    const uint32_t *adapt = all + Q1_PRETRAIN, *val = all + Q1_ADAPT_END;
    const uint32_t noise_train = LASTMILE_STREAM_NOISE_TRAIN;
    const uint32_t noise_test = LASTMILE_STREAM_NOISE_TEST;
    const set_spec sets[] = {
        {"q1-pretrain", g->train, all, Q1_PRETRAIN, SHIFT_NONE, 0, 0},
        {"q1rot-adapt", g->train, adapt, na, SHIFT_ROTATE, 0, 0},
        {"q1rot-val", g->train, val, nv, SHIFT_ROTATE, 0, 0},
        {"q1rot-test", g->test, test, g->test->n, SHIFT_ROTATE, 0, 0},
        {"q1noise-adapt", g->train, adapt, na, SHIFT_NOISE, noise_train, 0},
        {"q1noise-val", g->train, val, nv, SHIFT_NOISE, noise_train, 0},
        {"q1noise-test", g->test, test, g->test->n, SHIFT_NOISE, noise_test, 0},
    };
    for (size_t i = 0; i < sizeof sets / sizeof *sets && !rc; i++)
        rc = write_set(g, &sets[i], e);
undo_alloc:
    free(test);
    free(all);
    return rc;
}

/* Q2: classes 0-4 to pre-train (and test the pre-training), 20 + 20
 * images per new class for support and validation, the new classes' test
 * images; new labels shifted to 0-4. */
static int write_q2(const gen *g, plast_err *e)
{
    size_t per_set = (size_t)Q2_PER_CLASS * 5;
    uint32_t *old_train = malloc(g->train->n * sizeof *old_train);
    uint32_t *old_test = malloc(g->test->n * sizeof *old_test);
    uint32_t *new_test = malloc(g->test->n * sizeof *new_test);
    uint32_t *picked = malloc(2 * per_set * sizeof *picked);
    int rc;
    if (!old_train || !old_test || !new_test || !picked) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory");
        goto undo_alloc;
    }
    size_t n_old = lastmile_select_classes(g->train->labels, g->train->n, 0, 5, old_train);
    size_t n_old_test = lastmile_select_classes(g->test->labels, g->test->n, 0, 5, old_test);
    size_t n_new_test = lastmile_select_classes(g->test->labels, g->test->n, Q2_FIRST_NEW, 5,
                                                new_test);
    rc = lastmile_pick_per_class(g->train->labels, g->train->n, Q2_FIRST_NEW, 5, Q2_PER_CLASS, 2,
                                 g->seed, picked, e);
    const set_spec sets[] = {
        {"q2-pretrain", g->train, old_train, n_old, SHIFT_NONE, 0, 0},
        {"q2-pretest", g->test, old_test, n_old_test, SHIFT_NONE, 0, 0},
        {"q2-support", g->train, picked, per_set, SHIFT_NONE, 0, Q2_FIRST_NEW},
        {"q2-val", g->train, picked + per_set, per_set, SHIFT_NONE, 0, Q2_FIRST_NEW},
        {"q2-test", g->test, new_test, n_new_test, SHIFT_NONE, 0, Q2_FIRST_NEW},
    };
    for (size_t i = 0; i < sizeof sets / sizeof *sets && !rc; i++)
        rc = write_set(g, &sets[i], e);
undo_alloc:
    free(picked);
    free(new_test);
    free(old_test);
    free(old_train);
    return rc;
}

static int check_fmnist(const plast_dataset *d, const char *what, size_t min_n, plast_err *e)
{
    if (d->shape.ndim != 3 || d->shape.dim[1] != 28 || d->shape.dim[2] != 28 || !d->u8)
        return plast_err_set(e, PLAST_E_DATA, "%s: expected 28x28 uint8 images", what);
    if (d->n < min_n)
        return plast_err_set(e, PLAST_E_DATA, "%s: expected at least %zu images, found %zu", what,
                             min_n, d->n);
    for (size_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] > 9)
            return plast_err_set(e, PLAST_E_DATA, "%s: label %zu: expected 0 to 9, found %d",
                                 what, i, (int)d->labels[i]);
    return PLAST_OK;
}

static int load_pair(plast_dataset **d, const char *dir, const char *stem, plast_mem *mem,
                     plast_err *e)
{
    char img[4096], lab[4096];
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, stem);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", dir, stem);
    return plast_dataset_load_idx(d, img, lab, mem, e);
}

static int cmd_data(int argc, char **argv)
{
    const char *source = FMNIST_DIR, *outdir = NULL;
    uint64_t seed = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--source") && i + 1 < argc)
            source = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            if (parse_u64(argv[++i], "--seed", 0, UINT64_MAX, &seed))
                return EXIT_USAGE;
        } else if (argv[i][0] != '-' && !outdir)
            outdir = argv[i];
        else
            return usage();
    }
    if (!outdir)
        return usage();
    plast_err e;
    plast_mem *mem = NULL;
    plast_dataset *train = NULL, *test = NULL;
    int rc = plast_mem_create(&mem, &e);
    if (!rc)
        rc = load_pair(&train, source, "train", mem, &e);
    if (!rc)
        rc = load_pair(&test, source, "t10k", mem, &e);
    if (!rc)
        rc = check_fmnist(train, "training set", Q1_VAL_END, &e);
    if (!rc)
        rc = check_fmnist(test, "test set", 1, &e);
    gen g = {outdir, seed, train, test};
    if (!rc)
        rc = write_q1(&g, &e);
    if (!rc)
        rc = write_q2(&g, &e);
    plast_dataset_destroy(test);
    plast_dataset_destroy(train);
    plast_mem_destroy(mem);
    return rc ? fail(&e) : 0;
}

/* ---- tile ---- */

static int load_prefix(plast_dataset **d, const char *prefix, plast_mem *mem, plast_err *e)
{
    char img[4096], lab[4096];
    snprintf(img, sizeof img, "%s-images.idx", prefix);
    snprintf(lab, sizeof lab, "%s-labels.idx", prefix);
    int rc = plast_dataset_load_idx(d, img, lab, mem, e);
    if (!rc && (!(*d)->u8 || (*d)->shape.ndim != 3))
        rc = plast_err_at(e, PLAST_E_DATA, img, 0, "expected uint8 images");
    return rc;
}

/* Copy `times` copies of a then one of b (may be NULL) into px/labels. */
static void concat(const plast_dataset *a, uint64_t times, const plast_dataset *b, uint8_t *px,
                   int32_t *labels)
{
    size_t s = plast_shape_size(&a->shape);
    for (uint64_t t = 0; t < times; t++) {
        memcpy(px + t * a->n * s, a->u8, a->n * s);
        memcpy(labels + t * a->n, a->labels, a->n * sizeof *labels);
    }
    if (b) {
        memcpy(px + times * a->n * s, b->u8, b->n * s);
        memcpy(labels + times * a->n, b->labels, b->n * sizeof *labels);
    }
}

static int tile(const char *out, uint64_t times, const plast_dataset *a, const plast_dataset *b,
                plast_err *e)
{
    size_t s = plast_shape_size(&a->shape), n = (size_t)times * a->n + (b ? b->n : 0);
    if (b && !plast_shape_equal(&a->shape, &b->shape))
        return plast_err_set(e, PLAST_E_DATA, "tile: the tail's images differ in shape");
    uint8_t *px = malloc(n * s + 1);
    int32_t *labels = malloc(n * sizeof *labels + 1);
    int rc;
    if (!px || !labels) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "tile: out of memory for %zu images", n);
    } else {
        concat(a, times, b, px, labels);
        char img[4096], lab[4096];
        snprintf(img, sizeof img, "%s-images.idx", out);
        snprintf(lab, sizeof lab, "%s-labels.idx", out);
        rc = lastmile_write_idx(img, lab, px, labels, n, a->shape.dim[1], a->shape.dim[2], e);
    }
    free(labels);
    free(px);
    return rc;
}

static int cmd_tile(int argc, char **argv)
{
    uint64_t times = 0;
    if (argc < 5 || argc > 6)
        return usage();
    if (parse_u64(argv[3], "TIMES", 1, 100000, &times))
        return EXIT_USAGE;
    plast_err e;
    plast_mem *mem = NULL;
    plast_dataset *a = NULL, *b = NULL;
    int rc = plast_mem_create(&mem, &e);
    if (!rc)
        rc = load_prefix(&a, argv[4], mem, &e);
    if (!rc && argc == 6)
        rc = load_prefix(&b, argv[5], mem, &e);
    if (!rc)
        rc = tile(argv[2], times, a, b, &e);
    plast_dataset_destroy(b);
    plast_dataset_destroy(a);
    plast_mem_destroy(mem);
    return rc ? fail(&e) : 0;
}

/* ---- a trainer from an INI file plus SECTION.KEY=VALUE overrides ---- */

typedef struct session {
    plast_config *cfg;
    plast_registry *reg;
    plast_trainer *t;
} session;

static int session_open(session *s, const char *ini, char **sets, int nsets, plast_err *e)
{
    memset(s, 0, sizeof *s);
    int rc = plast_config_load(&s->cfg, ini, e);
    for (int i = 0; i < nsets && !rc; i++)
        rc = plast_config_set_spec(s->cfg, sets[i], "--set", e);
    if (!rc)
        rc = plast_registry_create(&s->reg, e);
    if (!rc)
        rc = plast_trainer_create(&s->t, s->cfg, s->reg, e);
    return rc;
}

static void session_close(session *s)
{
    plast_trainer_destroy(s->t);
    plast_registry_destroy(s->reg);
    plast_config_destroy(s->cfg);
}

/* ---- proto ---- */

/* The head: the trainable layer of the last block, a dense layer with a
 * bias reading the previous block's features. */
static int find_head(plast_model *m, plast_layer **head, plast_err *e)
{
    int K = plast_model_nblocks(m);
    const plast_block *b = K >= 2 ? plast_model_block(m, K - 1) : NULL;
    if (!b || b->trainable < 0)
        return plast_err_set(e, PLAST_E_INVAL,
                             "expected at least two blocks, the last one trainable (the head)");
    plast_layer *l = plast_model_layer(m, b->trainable);
    if (strcmp(l->ops->name, "dense") || l->nparams != 2)
        return plast_err_set(e, PLAST_E_INVAL,
                             "expected a dense head with a bias, found layer '%s' of "
                             "type %s with %d parameters",
                             l->name, l->ops->name, l->nparams);
    *head = l;
    return PLAST_OK;
}

/* Inference forward of samples [begin, begin + n) of d through every block
 * but the last: *f gets the features (activations category, owned). */
static int features_of(plast_model *m, const plast_dataset *d, size_t begin, int n,
                       plast_tensor *f, plast_err *e)
{
    uint32_t idx[FEATURE_BATCH];
    int32_t labels[FEATURE_BATCH];
    plast_tensor cur;
    int rc = plast_tensor_alloc(&cur, plast_model_mem(m), PLAST_MEM_INPUT, n, &d->shape, e);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++)
        idx[i] = (uint32_t)(begin + (size_t)i);
    plast_dataset_gather(d, idx, n, cur.data, labels);
    rc = plast_model_forward_blocks(m, &cur, plast_model_nblocks(m) - 1, f, e);
    plast_tensor_free(&cur);
    return rc;
}

/* visit(user, features, first sample, n) for each batch of d's features
 * (nf per sample) before the head. */
typedef void (*feature_visit)(void *user, const float *f, size_t begin, int n);

static int feature_batches(plast_model *m, const plast_dataset *d, int nf, feature_visit visit,
                           void *user, plast_err *e)
{
    for (size_t begin = 0; begin < d->n; begin += FEATURE_BATCH) {
        int n = (int)(d->n - begin < FEATURE_BATCH ? d->n - begin : FEATURE_BATCH);
        plast_tensor f;
        int rc = features_of(m, d, begin, n, &f, e);
        if (rc)
            return rc;
        if (plast_tensor_sample_size(&f) != (size_t)nf) {
            plast_tensor_free(&f);
            return plast_err_set(e, PLAST_E_INVAL,
                                 "expected %d features before the head, found %zu", nf,
                                 plast_tensor_sample_size(&f));
        }
        visit(user, f.data, begin, n);
        plast_tensor_free(&f);
    }
    return PLAST_OK;
}

typedef struct class_sums {
    const plast_dataset *d;
    int nf;
    double *sums;    /* sums[c * nf + j] += features of class c */
    size_t *counts;  /* counts[c]++ */
} class_sums;

static void add_class_sums(void *user, const float *f, size_t begin, int n)
{
    class_sums *cs = user;
    for (int i = 0; i < n; i++) {
        int c = cs->d->labels[begin + (size_t)i];
        for (int j = 0; j < cs->nf; j++)
            cs->sums[(size_t)c * cs->nf + j] += f[(size_t)i * cs->nf + j];
        cs->counts[c]++;
    }
}

/* W_c = 2 mu_c, b_c = -|mu_c|^2: the nearest-mean rule as a linear layer
 * (argmax_c 2 mu_c.x - |mu_c|^2 = argmin_c |x - mu_c|^2). */
static void set_prototypes(plast_layer *head, const double *sums, const size_t *counts,
                           int classes, int nf)
{
    for (int c = 0; c < classes; c++) {
        double norm2 = 0;
        for (int j = 0; j < nf; j++) {
            double mu = sums[(size_t)c * nf + j] / (double)counts[c];
            head->param[0].w[(size_t)c * nf + j] = (plast_real)(2 * mu);
            norm2 += mu * mu;
        }
        head->param[1].w[c] = (plast_real)-norm2;
    }
}

static int check_support(const plast_dataset *d, int classes, plast_err *e)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= classes)
            return plast_err_set(e, PLAST_E_DATA,
                                 "proto: support label %zu: expected 0 to %d, found %d", i,
                                 classes - 1, (int)d->labels[i]);
    return PLAST_OK;
}

static int prototype_head(plast_model *m, const plast_dataset *d, plast_err *e)
{
    plast_layer *head = NULL;
    int rc = find_head(m, &head, e);
    if (rc)
        return rc;
    int classes = (int)head->param[1].count, nf = head->param[0].fan_in;
    if ((rc = check_support(d, classes, e)))
        return rc;
    double *sums = calloc((size_t)classes * (size_t)nf, sizeof *sums);
    size_t *counts = calloc((size_t)classes, sizeof *counts);
    if (!sums || !counts) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "proto: out of memory");
        goto undo_alloc;
    }
    class_sums cs = {d, nf, sums, counts};
    if ((rc = feature_batches(m, d, nf, add_class_sums, &cs, e)))
        goto undo_alloc;
    for (int c = 0; c < classes; c++)
        if (!counts[c]) {
            rc = plast_err_set(e, PLAST_E_DATA, "proto: class %d has no support image", c);
            goto undo_alloc;
        }
    set_prototypes(head, sums, counts, classes, nf);
    double wmax = 0, bmax = 0;
    for (size_t i = 0; i < head->param[0].count; i++)
        wmax = fmax(wmax, fabs(head->param[0].w[i]));
    for (int c = 0; c < classes; c++)
        bmax = fmax(bmax, fabs(head->param[1].w[c]));
    printf("prototype head '%s': %d classes x %d features from %zu images; "
           "max |W| %.4g, max |b| %.4g\n",
           head->name, classes, nf, d->n, wmax, bmax);
undo_alloc:
    free(counts);
    free(sums);
    return rc;
}

/* The model of INI with --set style overrides and CKPT's weights, and the
 * images IMAGES/LABELS of its input shape (argv[2..5] of proto and
 * features; overrides from argv[first_set]). */
static int open_model_and_images(session *s, char **argv, int argc, int first_set,
                                 plast_dataset **images, plast_err *e)
{
    *images = NULL;
    int rc = session_open(s, argv[2], argv + first_set, argc - first_set, e);
    if (!rc)
        rc = plast_trainer_load_weights(s->t, argv[3], e);
    if (!rc)
        rc = plast_dataset_load_idx(images, argv[4], argv[5], plast_trainer_mem(s->t), e);
    if (!rc && !plast_shape_equal(&(*images)->shape,
                                  plast_model_input_shape(plast_trainer_model(s->t))))
        rc = plast_err_at(e, PLAST_E_DATA, argv[4], 0,
                          "expected images of the model's input shape");
    return rc;
}

static int cmd_proto(int argc, char **argv)
{
    if (argc < 7)
        return usage();
    plast_err e;
    session s;
    plast_dataset *support = NULL;
    int rc = open_model_and_images(&s, argv, argc, 7, &support, &e);
    if (!rc)
        rc = prototype_head(plast_trainer_model(s.t), support, &e);
    if (!rc)
        rc = plast_trainer_save(s.t, argv[6], &e);
    plast_dataset_destroy(support);
    session_close(&s);
    return rc ? fail(&e) : 0;
}

/* ---- features ---- */

typedef struct moment_sums {
    int nf;
    double *M, *sum;
} moment_sums;

static void add_moments(void *user, const float *f, size_t begin, int n)
{
    moment_sums *ms = user;
    (void)begin;
    feature_moments_add(ms->M, ms->sum, f, n, ms->nf);
}

static int cmd_features(int argc, char **argv)
{
    if (argc < 6)
        return usage();
    plast_err e;
    session s;
    plast_dataset *images = NULL;
    plast_layer *head = NULL;
    moment_sums ms = {0, NULL, NULL};
    int rc = open_model_and_images(&s, argv, argc, 6, &images, &e);
    plast_model *m = rc ? NULL : plast_trainer_model(s.t);
    if (!rc)
        rc = find_head(m, &head, &e);
    if (!rc) {
        ms.nf = head->param[0].fan_in;
        ms.M = calloc((size_t)ms.nf * (size_t)ms.nf, sizeof *ms.M);
        ms.sum = calloc((size_t)ms.nf, sizeof *ms.sum);
        if (!ms.M || !ms.sum)
            rc = plast_err_set(&e, PLAST_E_NOMEM, "features: out of memory");
    }
    if (!rc)
        rc = feature_batches(m, images, ms.nf, add_moments, &ms, &e);
    if (!rc) {
        feature_stats st;
        feature_stats_of(ms.M, ms.sum, images->n, ms.nf, &st);
        printf("{\"type\":\"features\",\"layer\":\"%s\",\"samples\":%zu,\"features\":%d,"
               "\"mean_sq_norm\":%.6g,\"sq_norm_of_mean\":%.6g,\"top_eigenvalue\":%.6g,"
               "\"trace_over_top\":%.6g,\"dead_features\":%d}\n",
               head->name, st.samples, st.features, st.mean_sq, st.sq_mean, st.top,
               st.trace_over_top, st.dead);
    }
    free(ms.M);
    free(ms.sum);
    plast_dataset_destroy(images);
    session_close(&s);
    return rc ? fail(&e) : 0;
}

/* ---- infer ---- */

/* Evaluate the test set with the rule's own forward (run.eval_batch
 * samples at a time), after resuming CKPT if given (a fixed-point rule's
 * codes and calibration live there), and report what inference needs: the
 * live weights and rule state, plus the peak of activations, input and
 * scratch during the evaluation. */
static int cmd_infer(int argc, char **argv)
{
    const char *resume = NULL;
    int first_set = 3;
    if (argc >= 5 && !strcmp(argv[3], "--resume")) {
        resume = argv[4];
        first_set = 5;
    }
    if (argc < 3 || (argc > 3 && !strcmp(argv[3], "--resume") && !resume))
        return usage();
    plast_err e;
    session s;
    double loss = NAN, acc = NAN;
    int rc = session_open(&s, argv[2], argv + first_set, argc - first_set, &e);
    if (!rc && resume)
        rc = plast_trainer_resume(s.t, resume, &e);
    if (!rc) {
        plast_mem *mem = plast_trainer_mem(s.t);
        plast_mem_watch(mem, 1u << PLAST_MEM_ACTIVATIONS | 1u << PLAST_MEM_INPUT |
                                 1u << PLAST_MEM_SCRATCH);
        plast_mem_reset_peaks(mem);
        rc = plast_trainer_evaluate(s.t, &loss, &acc, &e);
        size_t w = plast_mem_live(mem, PLAST_MEM_WEIGHTS), r = plast_mem_live(mem, PLAST_MEM_RULE);
        size_t work = plast_mem_peak_watched(mem);
        if (!rc)
            printf("{\"type\":\"infer\",\"rule\":\"%s\",\"test_samples\":%zu,"
                   "\"test_loss\":%.9g,\"test_acc\":%.9g,\"weights_bytes\":%zu,"
                   "\"rule_bytes\":%zu,\"work_peak_bytes\":%zu,\"total_bytes\":%zu}\n",
                   plast_trainer_rule_name(s.t), plast_trainer_test_samples(s.t), loss, acc, w,
                   r, work, w + r + work);
    }
    session_close(&s);
    return rc ? fail(&e) : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (!strcmp(argv[1], "data"))
        return cmd_data(argc, argv);
    if (!strcmp(argv[1], "tile"))
        return cmd_tile(argc, argv);
    if (!strcmp(argv[1], "proto"))
        return cmd_proto(argc, argv);
    if (!strcmp(argv[1], "infer"))
        return cmd_infer(argc, argv);
    if (!strcmp(argv[1], "features"))
        return cmd_features(argc, argv);
    return usage();
}
