/* trainer.c - build a run from an INI file and train it epoch by epoch. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "plast/fpenv.h"
#include "plast/loss.h"
#include "trainer_impl.h"
#include "simd.h"

static const char *const data_formats[] = {"idx", "csv", "synthetic", NULL};
static const char *const normalize_modes[] = {"auto", "none", "standardize", NULL};

const plast_setting plast_run_settings[] = {
    {"seed", PLAST_S_INT, "0", 0, 9007199254740992.0, NULL, 0,
     "seed of every random stream (init, shuffle, projections)"},
    {"epochs", PLAST_S_INT, "10", 1, 1e6, NULL, 0, "passes over the training set"},
    {"batch", PLAST_S_INT, "128", 1, 1e6, NULL, 0, "mini-batch size"},
    {"threads", PLAST_S_INT, "1", 1, 256, NULL, 0, "worker threads"},
    {"log", PLAST_S_STRING, "", 0, 0, NULL, 0, "JSON-lines metrics file (\"\" = none)"},
    {"checkpoint", PLAST_S_STRING, "", 0, 0, NULL, 0,
     "checkpoint written after every epoch (\"\" = none)"},
    {"init", PLAST_S_STRING, "", 0, 0, NULL, 0, "start from this checkpoint's weights"},
    {"flush_denormals", PLAST_S_BOOL, "true", 0, 0, NULL, 0,
     "flush denormal floats to zero while training"},
    {"eval_batch", PLAST_S_INT, "1000", 1, 1e6, NULL, 0, "batch size for evaluation"},
    {"max_batches", PLAST_S_INT, "0", 0, 1e12, NULL, 0,
     "stop each epoch after this many batches (0 = all; for smoke tests)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

const plast_setting plast_data_settings[] = {
    {"format", PLAST_S_ENUM, "idx", 0, 0, data_formats, 0, "idx, csv or synthetic"},
    {"train_images", PLAST_S_STRING, "", 0, 0, NULL, 0, "idx: training images (.gz allowed)"},
    {"train_labels", PLAST_S_STRING, "", 0, 0, NULL, 0, "idx: training labels"},
    {"test_images", PLAST_S_STRING, "", 0, 0, NULL, 0, "idx: test images (\"\" = no test set)"},
    {"test_labels", PLAST_S_STRING, "", 0, 0, NULL, 0, "idx: test labels"},
    {"train", PLAST_S_STRING, "", 0, 0, NULL, 0, "csv: training file"},
    {"test", PLAST_S_STRING, "", 0, 0, NULL, 0, "csv: test file (\"\" = no test set)"},
    {"label_column", PLAST_S_INT, "0", 0, 1e6, NULL, 0, "csv: column holding the label"},
    {"validation", PLAST_S_INT, "0", 0, 1e9, NULL, 0,
     "hold out the last N training samples for validation"},
    {"normalize", PLAST_S_ENUM, "auto", 0, 0, normalize_modes, 0,
     "auto: idx pixels to [0,1], csv as is; standardize: zero mean, unit variance"},
    {"samples", PLAST_S_INT, "2000", 1, 1e8, NULL, 0, "synthetic: training samples"},
    {"test_samples", PLAST_S_INT, "500", 0, 1e8, NULL, 0, "synthetic: test samples"},
    {"features", PLAST_S_INT, "16", 1, 1e6, NULL, 0, "synthetic: features per sample"},
    {"classes", PLAST_S_INT, "4", 2, 1e4, NULL, 0, "synthetic: classes"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

const plast_setting plast_loss_settings[] = {
    {"type", PLAST_S_STRING, "softmax_ce", 0, 0, NULL, 0, "softmax_ce, mse or sigmoid_bce"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

const plast_setting plast_rule_section_settings[] = {
    {"name", PLAST_S_STRING, "bp", 0, 0, NULL, 0, "learning rule (plug-in name)"},
    {"plugin", PLAST_S_STRING, "", 0, 0, NULL, 0,
     "load the rule from this file (relative to the INI file)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static const char *const override_prefixes[] = {"optimizer.", "run.", NULL};

const char *plast_trainer_path(const plast_trainer *t, const char *p, char *buf, size_t n)
{
    if (p[0] == '/' || p[0] == '\0')
        snprintf(buf, n, "%s", p);
    else
        snprintf(buf, n, "%s/%s", plast_config_dir(t->cfg), p);
    return buf;
}

uint64_t plast_trainer_steps_per_epoch(const plast_trainer *t)
{
    uint64_t n = (t->train->n + (size_t)t->batch - 1) / (size_t)t->batch;
    return t->max_batches && t->max_batches < n ? t->max_batches : n;
}

/* ---- configuration ---- */

static int is_known_section(const char *s)
{
    return !strcmp(s, "run") || !strcmp(s, "data") || !strcmp(s, "loss") ||
           !strcmp(s, "optimizer") || !strcmp(s, "rule") || !strncmp(s, "layer.", 6) ||
           !strncmp(s, "rule.", 5);
}

/* NAME of [rule.NAME] is a plug-in name: [a-z0-9_]+, no dots. */
static int bad_rule_section(const char *s)
{
    static const char name_chars[] = "abcdefghijklmnopqrstuvwxyz0123456789_";
    return !strncmp(s, "rule.", 5) && (!s[5] || strspn(s + 5, name_chars) != strlen(s + 5));
}

static int check_sections(const plast_config *c, plast_err *e)
{
    for (int i = 0; i < plast_config_nsections(c); i++) {
        const char *s = plast_config_section_name(c, i);
        if (!is_known_section(s) || !strcmp(s, "layer.") || bad_rule_section(s))
            return plast_err_at(e, PLAST_E_PARSE, plast_config_file(c),
                                plast_config_section_line(c, i),
                                "unknown section [%s] (expected run, data, layer.NAME, loss, "
                                "optimizer, rule, rule.NAME)",
                                s);
    }
    return PLAST_OK;
}

/* Copy [rule.NAME]'s optimizer.KEY / run.KEY lines into their sections. */
static int apply_overrides(plast_config *c, const char *rule_section, plast_err *e)
{
    int n = plast_config_nkeys(c, rule_section);
    for (int i = 0; i < n; i++) {
        const char *value;
        int line;
        const char *key = plast_config_key(c, rule_section, i, &value, &line);
        const char *dot = strchr(key, '.');
        if (!dot || (strncmp(key, "optimizer.", 10) && strncmp(key, "run.", 4)))
            continue;
        char section[32], origin[300];
        snprintf(section, sizeof section, "%.*s", (int)(dot - key), key);
        int set_line = -1;
        if (plast_config_get(c, section, dot + 1, &set_line) && set_line == 0)
            continue; /* given on the command line (--set): that wins */
        if (line > 0)
            snprintf(origin, sizeof origin, "%s:%d", plast_config_file(c), line);
        else
            snprintf(origin, sizeof origin, "--set %s", rule_section);
        int rc = plast_config_set(c, section, dot + 1, value, origin, e);
        if (rc)
            return rc;
    }
    return PLAST_OK;
}

static int find_rule(plast_trainer *t, plast_err *e)
{
    plast_args *a;
    int rc = plast_args_parse(&a, t->cfg, "rule", plast_rule_section_settings, NULL, NULL, e);
    if (rc)
        return rc;
    const char *name = plast_args_str(a, "name");
    const char *plugin = plast_args_str(a, "plugin");
    if (plugin[0]) {
        char path[4096];
        plast_trainer_path(t, plugin, path, sizeof path);
        if (!strchr(path, '/'))
            snprintf(path, sizeof path, "./%s", plugin);
        rc = plast_registry_load_file(t->reg, path, e);
    }
    if (rc == PLAST_OK)
        rc = plast_registry_find_rule(t->reg, name, &t->rule_ops, &t->rule_file, e);
    if (rc && e && e->line == 0 && plast_args_given(a, "name") && !plugin[0])
        plast_err_wrap(e, plast_args_file(a), plast_args_line(a, "name"), "[rule] name: ");
    plast_args_destroy(a);
    return rc;
}

/* Validate [rule.X] sections of installed rules that are not selected. */
static int check_other_rule_sections(plast_trainer *t, plast_err *e)
{
    for (int i = 0; i < plast_config_nsections(t->cfg); i++) {
        const char *s = plast_config_section_name(t->cfg, i);
        if (strncmp(s, "rule.", 5) || !strcmp(s + 5, t->rule_ops->name))
            continue;
        const plast_rule_ops *ops;
        const char *file;
        plast_err quiet;
        if (plast_registry_find_rule(t->reg, s + 5, &ops, &file, &quiet))
            continue; /* not installed: not checked */
        plast_args *a;
        int rc = plast_args_parse(&a, t->cfg, s, ops->settings, NULL, override_prefixes, e);
        if (rc)
            return rc;
        plast_args_destroy(a);
    }
    return PLAST_OK;
}

static int read_run(plast_trainer *t, plast_err *e)
{
    plast_args *a;
    int rc = plast_args_parse(&a, t->cfg, "run", plast_run_settings, NULL, NULL, e);
    if (rc)
        return rc;
    t->seed = (uint64_t)plast_args_int(a, "seed");
    t->epochs = (int)plast_args_int(a, "epochs");
    t->batch = (int)plast_args_int(a, "batch");
    t->threads = (int)plast_args_int(a, "threads");
    t->flush_denormals = plast_args_bool(a, "flush_denormals");
    t->eval_batch = (int)plast_args_int(a, "eval_batch");
    t->max_batches = (uint64_t)plast_args_int(a, "max_batches");
    plast_trainer_path(t, plast_args_str(a, "log"), t->log_path, sizeof t->log_path);
    plast_trainer_path(t, plast_args_str(a, "checkpoint"), t->ckpt_path, sizeof t->ckpt_path);
    plast_trainer_path(t, plast_args_str(a, "init"), t->init_path, sizeof t->init_path);
    plast_args_destroy(a);
    return PLAST_OK;
}

/* ---- data ---- */

static int required_path(const plast_trainer *t, const plast_args *a, const char *key,
                         char *buf, size_t n, plast_err *e)
{
    const char *v = plast_args_str(a, key);
    if (!v[0])
        return plast_err_at(e, PLAST_E_PARSE, plast_args_file(a), plast_args_line(a, key),
                            "[data] %s: expected a file name for format %s, found nothing", key,
                            plast_args_str(a, "format"));
    plast_trainer_path(t, v, buf, n);
    return PLAST_OK;
}

static int load_idx(plast_trainer *t, const plast_args *a, plast_err *e)
{
    char img[4096], lab[4096];
    int rc = required_path(t, a, "train_images", img, sizeof img, e);
    if (!rc)
        rc = required_path(t, a, "train_labels", lab, sizeof lab, e);
    if (!rc)
        rc = plast_dataset_load_idx(&t->train_all, img, lab, t->mem, e);
    if (rc || !plast_args_str(a, "test_images")[0])
        return rc;
    rc = required_path(t, a, "test_images", img, sizeof img, e);
    if (!rc)
        rc = required_path(t, a, "test_labels", lab, sizeof lab, e);
    if (!rc)
        rc = plast_dataset_load_idx(&t->test, img, lab, t->mem, e);
    return rc;
}

static int load_csv(plast_trainer *t, const plast_args *a, plast_err *e)
{
    char path[4096];
    int col = (int)plast_args_int(a, "label_column");
    int rc = required_path(t, a, "train", path, sizeof path, e);
    if (!rc)
        rc = plast_dataset_load_csv(&t->train_all, path, col, t->mem, e);
    if (rc || !plast_args_str(a, "test")[0])
        return rc;
    plast_trainer_path(t, plast_args_str(a, "test"), path, sizeof path);
    return plast_dataset_load_csv(&t->test, path, col, t->mem, e);
}

static int load_synthetic(plast_trainer *t, const plast_args *a, plast_err *e)
{
    size_t n = (size_t)plast_args_int(a, "samples");
    size_t nt = (size_t)plast_args_int(a, "test_samples");
    int f = (int)plast_args_int(a, "features"), c = (int)plast_args_int(a, "classes");
    plast_dataset *all;
    int rc = plast_dataset_synthetic(&all, n + nt, f, c, t->seed, t->mem, e);
    if (rc)
        return rc;
    /* one draw split in two, so train and test share the class centres */
    t->train_all = all;
    if (nt == 0)
        return PLAST_OK;
    rc = plast_dataset_slice(&t->test, all, n, n + nt, e);
    if (rc)
        return rc;
    plast_dataset *train;
    rc = plast_dataset_slice(&train, all, 0, n, e);
    if (rc)
        return rc;
    t->train = train; /* t->train_all keeps the storage */
    return PLAST_OK;
}

static void standardize(plast_trainer *t)
{
    const plast_dataset *d = t->train_all;
    size_t s = plast_shape_size(&d->shape), total = d->n * s;
    double sum = 0, sq = 0;
    for (size_t i = 0; i < total; i++) {
        double v = d->u8 ? d->u8[i] : d->f32[i];
        sum += v;
        sq += v * v;
    }
    double mean = sum / (double)total, var = sq / (double)total - mean * mean;
    double sd = var > 0 ? sqrt(var) : 1.0;
    plast_dataset *all[4] = {t->train_all, t->train, t->val, t->test};
    for (int i = 0; i < 4; i++)
        if (all[i]) {
            all[i]->scale = (float)(1.0 / sd);
            all[i]->shift = (float)(-mean / sd);
        }
}

static int load_data(plast_trainer *t, plast_err *e)
{
    plast_args *a;
    int rc = plast_args_parse(&a, t->cfg, "data", plast_data_settings, NULL, NULL, e);
    if (rc)
        return rc;
    switch (plast_args_enum(a, "format")) {
    case 0: rc = load_idx(t, a, e); break;
    case 1: rc = load_csv(t, a, e); break;
    default: rc = load_synthetic(t, a, e); break;
    }
    const plast_dataset *base = t->train ? t->train : t->train_all;
    size_t nval = rc ? 0 : (size_t)plast_args_int(a, "validation");
    if (!rc && nval >= (base ? base->n : 0))
        rc = plast_err_at(e, PLAST_E_PARSE, plast_args_file(a), plast_args_line(a, "validation"),
                          "[data] validation: expected fewer than the %zu training samples, "
                          "found %zu",
                          base->n, nval);
    if (!rc && nval) {
        plast_dataset *tr;
        rc = plast_dataset_slice(&t->val, base, base->n - nval, base->n, e);
        if (!rc)
            rc = plast_dataset_slice(&tr, base, 0, base->n - nval, e);
        if (!rc) {
            if (t->train)
                plast_dataset_destroy(t->train);
            t->train = tr;
        }
    } else if (!rc && !t->train) {
        rc = plast_dataset_slice(&t->train, t->train_all, 0, t->train_all->n, e);
    }
    if (!rc && t->test && !plast_shape_equal(&t->test->shape, &t->train_all->shape))
        rc = plast_err_set(e, PLAST_E_DATA, "test samples differ in shape from training samples");
    if (!rc && plast_args_enum(a, "normalize") == 1) {
        plast_dataset *all[4] = {t->train_all, t->train, t->val, t->test};
        for (int i = 0; i < 4; i++)
            if (all[i])
                all[i]->scale = 1.0f, all[i]->shift = 0.0f;
    } else if (!rc && plast_args_enum(a, "normalize") == 2) {
        standardize(t);
    }
    plast_args_destroy(a);
    return rc;
}

static int classes_of(const plast_trainer *t)
{
    int c = t->train_all->classes;
    return t->test && t->test->classes > c ? t->test->classes : c;
}

/* ---- model, loss, optimiser, rule ---- */

static int build_loss(plast_trainer *t, plast_err *e)
{
    plast_args *a;
    int rc = plast_args_parse(&a, t->cfg, "loss", plast_loss_settings, NULL, NULL, e);
    if (rc)
        return rc;
    t->loss = plast_registry_loss(t->reg, plast_args_str(a, "type"));
    if (!t->loss) {
        char names[256];
        rc = plast_err_at(e, PLAST_E_PARSE, plast_args_file(a), plast_args_line(a, "type"),
                          "[loss] type: expected one of %s, found \"%s\"",
                          plast_registry_loss_names(t->reg, names, sizeof names),
                          plast_args_str(a, "type"));
    }
    plast_args_destroy(a);
    return rc;
}

static int build_rule(plast_trainer *t, plast_err *e)
{
    char section[80];
    snprintf(section, sizeof section, "rule.%s", t->rule_ops->name);
    int rc = plast_args_parse(&t->rule_args, t->cfg, section, t->rule_ops->settings, NULL,
                              override_prefixes, e);
    if (rc)
        return rc;
    rc = t->rule_ops->create(&t->rule, t->model, t->rule_args, e);
    if (rc && e && !e->file[0]) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "[%s] ", section);
        plast_err_wrap(e, plast_config_file(t->cfg), 0, prefix);
    }
    return rc;
}

static int build(plast_trainer *t, plast_err *e)
{
    char section[80];
    int rc = check_sections(t->cfg, e);
    if (!rc)
        rc = find_rule(t, e);
    if (rc)
        return rc;
    snprintf(section, sizeof section, "rule.%s", t->rule_ops->name);
    if ((rc = apply_overrides(t->cfg, section, e)) || (rc = check_other_rule_sections(t, e)) ||
        (rc = read_run(t, e)) || (rc = load_data(t, e)) || (rc = build_loss(t, e)))
        return rc;
    rc = plast_args_parse(&t->optim_args, t->cfg, "optimizer", plast_optim_settings, NULL, NULL,
                          e);
    if (!rc)
        rc = plast_model_create(&t->model, t->cfg, t->reg, &t->train_all->shape, classes_of(t),
                                t->seed, t->mem, e);
    if (!rc)
        rc = plast_optim_create(&t->optim, t->optim_args, plast_model_nparams(t->model), t->mem,
                                e);
    if (rc)
        return rc;
    plast_model_attach(t->model, t->loss, t->optim, t->threads);
    if (t->init_path[0] && (rc = plast_trainer_load_weights(t, t->init_path, e)))
        return rc;
    if ((rc = build_rule(t, e)))
        return rc;
    t->perm = plast_mem_alloc(t->mem, PLAST_MEM_DATASET, t->train->n * sizeof *t->perm);
    if (!t->perm)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory for the data order");
    return PLAST_OK;
}

int plast_trainer_create(plast_trainer **out, plast_config *cfg, plast_registry *reg,
                         plast_err *e)
{
    plast_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory creating the trainer");
    t->cfg = cfg;
    t->reg = reg;
    int rc = plast_mem_create(&t->mem, e);
    if (!rc)
        rc = build(t, e);
    if (rc) {
        plast_trainer_destroy(t);
        return rc;
    }
    *out = t;
    return PLAST_OK;
}

void plast_trainer_destroy(plast_trainer *t)
{
    if (!t)
        return;
    if (t->rule_ops)
        t->rule_ops->destroy(t->rule);
    plast_args_destroy(t->rule_args);
    plast_optim_destroy(t->optim);
    plast_args_destroy(t->optim_args);
    plast_model_destroy(t->model);
    if (t->mem)
        plast_mem_free(t->mem, t->perm);
    /* views before the storage they share */
    plast_dataset_destroy(t->val);
    plast_dataset_destroy(t->train);
    plast_dataset_destroy(t->test);
    plast_dataset_destroy(t->train_all);
    plast_mem_destroy(t->mem);
    free(t);
}

/* ---- the loop ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t rss_peak_bytes(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (size_t)ru.ru_maxrss * 1024u : 0;
}

/* Gather samples idx[0..n) of d into a batch (input category). */
static int make_batch(plast_trainer *t, const plast_dataset *d, const uint32_t *idx, int n,
                      plast_batch *b, int32_t **labels, plast_err *e)
{
    memset(b, 0, sizeof *b);
    *labels = plast_mem_alloc(t->mem, PLAST_MEM_INPUT, (size_t)n * sizeof **labels);
    if (!*labels)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory for a batch");
    int rc = plast_tensor_alloc(&b->x, t->mem, PLAST_MEM_INPUT, n, &d->shape, e);
    if (rc) {
        plast_mem_free(t->mem, *labels);
        return rc;
    }
    plast_dataset_gather(d, idx, n, b->x.data, *labels);
    b->labels = *labels;
    b->n = n;
    return PLAST_OK;
}

static void free_batch(plast_trainer *t, plast_batch *b, int32_t *labels)
{
    plast_tensor_free(&b->x);
    plast_mem_free(t->mem, labels);
}


/* The forward the rule trains for: its own (QZO-FF's fixed-point model)
 * or the float model's. */
static int trainer_predict(plast_trainer *t, const plast_tensor *x, plast_tensor *y, plast_err *e)
{
    if (PLAST_HAS(t->rule_ops, plast_rule_ops, predict) && t->rule_ops->predict)
        return t->rule_ops->predict(t->rule, x, y, e);
    return plast_model_predict(t->model, x, y, e);
}

static int evaluate_on(plast_trainer *t, const plast_dataset *d, double *loss, double *acc,
                       plast_err *e)
{
    uint32_t *idx = plast_mem_alloc(t->mem, PLAST_MEM_SCRATCH,
                                    (size_t)t->eval_batch * sizeof *idx);
    if (!idx)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory for evaluation");
    double sum = 0;
    size_t correct = 0;
    int rc = PLAST_OK;
    for (size_t start = 0; start < d->n && !rc; start += (size_t)t->eval_batch) {
        int n = (int)(d->n - start < (size_t)t->eval_batch ? d->n - start : (size_t)t->eval_batch);
        for (int i = 0; i < n; i++)
            idx[i] = (uint32_t)(start + (size_t)i);
        plast_batch b;
        int32_t *labels;
        plast_tensor y;
        double l = 0;
        if ((rc = make_batch(t, d, idx, n, &b, &labels, e)))
            break;
        rc = trainer_predict(t, &b.x, &y, e);
        if (!rc) {
            rc = t->loss->eval(&y, labels, &l, NULL, e);
            correct += (size_t)plast_count_correct(&y, labels);
            sum += l * n;
            plast_tensor_free(&y);
        }
        free_batch(t, &b, labels);
    }
    plast_mem_free(t->mem, idx);
    *loss = sum / (double)d->n;
    *acc = (double)correct / (double)d->n;
    return rc;
}

int plast_trainer_evaluate(plast_trainer *t, double *loss, double *acc, plast_err *e)
{
    if (!t->test)
        return plast_err_set(e, PLAST_E_INVAL, "no test set configured in [data]");
    return evaluate_on(t, t->test, loss, acc, e);
}

/* ---- divergence ---- */

/* A value is NaN or infinite when its exponent bits are all ones, i.e.
 * when ~bits has none of them: the smallest ~bits & exponent over the
 * array is then 0.  An integer min, so the loop vectorises (run after
 * every batch, it would otherwise cost the MLP 7 % of its epoch). */
PLAST_CLONES static int all_finite(const plast_real *p, size_t n)
{
    _Static_assert(sizeof(plast_real) == sizeof(uint32_t), "plast_real is binary32");
    const uint32_t exponent = 0x7f800000u;
    uint32_t least = exponent;
    PLAST_SIMD_REDUCTION(min : least)
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &p[i], sizeof bits);
        uint32_t missing = ~bits & exponent;
        least = missing < least ? missing : least;
    }
    return least != 0;
}

static const char *non_finite_name(double v)
{
    return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

/* "layer 'L' parameter 'P' holds nan" for the first parameter (buffers
 * included: they go into checkpoints) holding a NaN or Inf; 0 if none. */
static int find_bad_weight(plast_model *m, char *buf, size_t n)
{
    for (int i = 0; i < plast_model_nlayers(m); i++) {
        const plast_layer *l = plast_model_layer(m, i);
        for (int p = 0; p < l->nparams; p++) {
            const plast_param *pa = &l->param[p];
            if (all_finite(pa->w, pa->count))
                continue;
            size_t k = 0;
            while (isfinite(pa->w[k]))
                k++;
            snprintf(buf, n, "layer '%s' parameter '%s' holds %s", l->name, pa->name,
                     non_finite_name(pa->w[k]));
            return 1;
        }
    }
    return 0;
}

/* The buffers (running statistics, which no optimiser writes) all
 * finite? */
static int buffers_finite(plast_model *m)
{
    for (int i = 0; i < plast_model_nlayers(m); i++) {
        const plast_layer *l = plast_model_layer(m, i);
        for (int p = 0; p < l->nparams; p++)
            if ((l->param[p].flags & PLAST_PARAM_BUFFER) &&
                !all_finite(l->param[p].w, l->param[p].count))
                return 0;
    }
    return 1;
}

/* The optimiser's state, checked before a checkpoint keeps it. */
static int find_bad_optim_state(const plast_trainer *t, char *buf, size_t n)
{
    size_t count = plast_model_nparams(t->model);
    int nstate = plast_optim_nstate(t->optim);
    for (int i = 0; i < nstate; i++) {
        const plast_real *v = plast_optim_state(t->optim, i);
        if (all_finite(v, count))
            continue;
        size_t k = 0;
        while (isfinite(v[k]))
            k++;
        snprintf(buf, n, "optimizer state %d of %d holds %s", i + 1, nstate,
                 non_finite_name(v[k]));
        return 1;
    }
    return 0;
}

/* PLAST_E_DIVERGED naming the epoch and batch (1-based, the batch just
 * trained), a non-finite loss and the first non-finite weight; with
 * `state`, the optimiser state too.  PLAST_OK when all is finite. */
static int check_finite(plast_trainer *t, uint64_t batch, double loss, int state,
                        plast_err *e)
{
    /* a step that wrote every weight found them finite as it went; only
     * the buffers are left to look at */
    if (!state && isfinite(loss) && plast_optim_step_finite(t->optim) &&
        buffers_finite(t->model))
        return PLAST_OK;
    char bad[200] = "";
    if (!find_bad_weight(t->model, bad, sizeof bad) && state)
        find_bad_optim_state(t, bad, sizeof bad);
    if (isfinite(loss) && !bad[0])
        return PLAST_OK;
    if (!isfinite(loss))
        return plast_err_set(e, PLAST_E_DIVERGED,
                             "training diverged at epoch %d, batch %llu: loss is %s%s%s",
                             t->epoch + 1, (unsigned long long)batch, non_finite_name(loss),
                             bad[0] ? ", " : "", bad);
    return plast_err_set(e, PLAST_E_DIVERGED, "training diverged at epoch %d, batch %llu: %s",
                         t->epoch + 1, (unsigned long long)batch, bad);
}

/* The checkpoint of a stopped run, checked first like the one of a
 * finished epoch (finish_epoch): a run that diverged keeps its last good
 * checkpoint instead of one holding NaN. */
static int save_checked(plast_trainer *t, uint64_t batch, plast_err *e)
{
    int rc = check_finite(t, batch, 0.0, 1, e);
    return rc ? rc : plast_trainer_save(t, t->ckpt_path, e);
}

static int train_one_batch(plast_trainer *t, uint64_t spe, plast_err *e)
{
    size_t start = (size_t)t->batch_in_epoch * (size_t)t->batch;
    size_t left = t->train->n - start;
    int n = left < (size_t)t->batch ? (int)left : t->batch;
    plast_batch b;
    int32_t *labels;
    int rc = make_batch(t, t->train, t->perm + start, n, &b, &labels, e);
    if (rc)
        return rc;
    if (left > (size_t)n) { /* the next batch's samples load while this one trains */
        size_t next = left - (size_t)n;
        plast_dataset_prefetch(t->train, t->perm + start + (size_t)n,
                               next < (size_t)t->batch ? (int)next : t->batch);
    }
    b.step = t->step;
    plast_model_set_step(t->model, t->step);
    plast_optim_begin(t->optim, plast_optim_lr_at(t->optim, t->step, spe, t->epochs));
    plast_stats st = {0, 0, 0};
    rc = t->rule_ops->train_batch(t->rule, &b, &st, e);
    free_batch(t, &b, labels);
    if (rc)
        return rc;
    if ((rc = check_finite(t, t->batch_in_epoch + 1, st.loss, 0, e)))
        return rc;
    t->part_loss += st.loss * st.count;
    t->part_correct += (uint64_t)st.correct;
    t->part_count += (uint64_t)st.count;
    t->batch_in_epoch++;
    t->step++;
    return PLAST_OK;
}

static void shuffle_epoch(plast_trainer *t)
{
    plast_rng r;
    plast_rng_stream(&r, t->seed, PLAST_STREAM_SHUFFLE, (uint32_t)t->epoch);
    plast_shuffle(t->perm, t->train->n, &r);
}

static void fill_peaks(plast_trainer *t, plast_epoch_report *r)
{
    for (int c = 0; c < PLAST_MEM_NCAT; c++)
        r->train_peak[c] = plast_mem_peak(t->mem, (plast_mem_cat)c);
    r->train_peak_total = plast_mem_peak_total(t->mem);
    r->train_peak_act_input = plast_mem_peak_watched(t->mem);
}

static int finish_epoch(plast_trainer *t, const plast_train_hooks *h, uint64_t spe,
                        plast_err *e)
{
    plast_epoch_report r;
    memset(&r, 0, sizeof r);
    r.epoch = t->epoch + 1;
    r.epochs = t->epochs;
    r.train_s = t->part_secs;
    r.samples_per_s = t->part_secs > 0 ? (double)t->part_count / t->part_secs : 0;
    r.lr = plast_optim_lr_at(t->optim, t->step ? t->step - 1 : 0, spe, t->epochs);
    r.train_loss = t->part_count ? t->part_loss / (double)t->part_count : NAN;
    r.train_acc = t->part_count ? (double)t->part_correct / (double)t->part_count : NAN;
    fill_peaks(t, &r);
    plast_mem_reset_peaks(t->mem);
    r.val_loss = r.val_acc = r.test_loss = r.test_acc = NAN;
    /* before the evaluation and the checkpoint: never save NaN */
    int rc = check_finite(t, t->batch_in_epoch, 0.0, 1, e);
    if (rc)
        return rc;
    if (t->val)
        rc = evaluate_on(t, t->val, &r.val_loss, &r.val_acc, e);
    if (!rc && t->test)
        rc = evaluate_on(t, t->test, &r.test_loss, &r.test_acc, e);
    if (rc)
        return rc;
    r.eval_peak_act_input = plast_mem_peak_watched(t->mem);
    r.rss_peak_bytes = rss_peak_bytes();
    t->epoch++;
    t->batch_in_epoch = 0;
    t->part_loss = t->part_secs = 0;
    t->part_correct = t->part_count = 0;
    if (t->ckpt_path[0] && (rc = plast_trainer_save(t, t->ckpt_path, e)))
        return rc;
    if (h && h->epoch_done)
        h->epoch_done(h->user, &r);
    return PLAST_OK;
}

static int run_epoch(plast_trainer *t, const plast_train_hooks *h, plast_err *e)
{
    uint64_t spe = plast_trainer_steps_per_epoch(t);
    shuffle_epoch(t);
    plast_mem_reset_peaks(t->mem);
    while (t->batch_in_epoch < spe) {
        double t0 = now_s();
        int rc = train_one_batch(t, spe, e);
        t->part_secs += now_s() - t0;
        if (rc)
            return rc;
        if (h && h->batch_done)
            h->batch_done(h->user, t->epoch + 1, t->batch_in_epoch, spe,
                          t->part_loss / (double)t->part_count,
                          (double)t->part_correct / (double)t->part_count);
        if (h && h->should_stop && h->should_stop(h->user) && t->batch_in_epoch < spe) {
            if (t->ckpt_path[0] && (rc = save_checked(t, t->batch_in_epoch, e)))
                return rc;
            return plast_err_set(e, PLAST_E_CANCELED,
                                 "stopped at epoch %d, batch %llu", t->epoch + 1,
                                 (unsigned long long)t->batch_in_epoch);
        }
    }
    return finish_epoch(t, h, spe, e);
}

int plast_trainer_run(plast_trainer *t, const plast_train_hooks *hooks, plast_err *e)
{
    unsigned saved = plast_fpenv_flush_denormals(t->flush_denormals);
    int rc = PLAST_OK;
    while (t->epoch < t->epochs && !rc) {
        rc = run_epoch(t, hooks, e);
        if (!rc && t->epoch < t->epochs && hooks && hooks->should_stop &&
            hooks->should_stop(hooks->user))
            rc = plast_err_set(e, PLAST_E_CANCELED, "stopped after epoch %d", t->epoch);
    }
    plast_fpenv_restore(saved);
    return rc;
}

/* ---- accessors ---- */

plast_model *plast_trainer_model(plast_trainer *t) { return t->model; }
plast_mem *plast_trainer_mem(plast_trainer *t) { return t->mem; }
const char *plast_trainer_rule_name(const plast_trainer *t) { return t->rule_ops->name; }

int plast_trainer_forwards_per_update(const plast_trainer *t)
{
    if (PLAST_HAS(t->rule_ops, plast_rule_ops, forwards_per_update) &&
        t->rule_ops->forwards_per_update)
        return t->rule_ops->forwards_per_update(t->rule);
    return 1;
}

size_t plast_trainer_aux_params(const plast_trainer *t)
{
    if (PLAST_HAS(t->rule_ops, plast_rule_ops, aux_params) && t->rule_ops->aux_params)
        return t->rule_ops->aux_params(t->rule);
    return 0;
}

void plast_trainer_describe_rule(const plast_trainer *t, void (*line)(void *user, const char *text),
                                 void *user)
{
    if (PLAST_HAS(t->rule_ops, plast_rule_ops, describe) && t->rule_ops->describe)
        t->rule_ops->describe(t->rule, line, user);
}
const char *plast_trainer_rule_file(const plast_trainer *t) { return t->rule_file; }
uint64_t plast_trainer_seed(const plast_trainer *t) { return t->seed; }
int plast_trainer_epochs(const plast_trainer *t) { return t->epochs; }
int plast_trainer_batch(const plast_trainer *t) { return t->batch; }
int plast_trainer_threads(const plast_trainer *t) { return t->threads; }
int plast_trainer_flush_denormals(const plast_trainer *t) { return t->flush_denormals; }
size_t plast_trainer_train_samples(const plast_trainer *t) { return t->train->n; }
size_t plast_trainer_test_samples(const plast_trainer *t) { return t->test ? t->test->n : 0; }
const char *plast_trainer_log_path(const plast_trainer *t) { return t->log_path; }
const char *plast_trainer_checkpoint_path(const plast_trainer *t) { return t->ckpt_path; }
