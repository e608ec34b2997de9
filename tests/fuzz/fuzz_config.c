/* fuzz_config.c - INI text through the reader, every core schema, and a
 * whole model: built from the [layer.*] sections with the built-in
 * registry, then one backpropagation step and one prediction on a tiny
 * batch when the model is small.
 *
 * The harness's own [fuzz] section chooses the input shape (d0 x d1 x d2,
 * `dims` of them) and the number of classes, so the fuzzer can reach
 * convolution and pooling as well as dense stacks. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/plast.h"
#include "fuzz.h"

#define MAX_FLOPS 20000000u /* per sample: keep one step cheap */
#define BATCH 2

static const plast_setting fuzz_settings[] = {
    {"dims", PLAST_S_INT, "1", 1, 3, NULL, 0, "input dimensions"},
    {"d0", PLAST_S_INT, "8", 1, 64, NULL, 0, "first input dimension"},
    {"d1", PLAST_S_INT, "8", 1, 64, NULL, 0, "second input dimension"},
    {"d2", PLAST_S_INT, "8", 1, 64, NULL, 0, "third input dimension"},
    {"classes", PLAST_S_INT, "4", 2, 16, NULL, 0, "classes"},
    {"train", PLAST_S_BOOL, "true", 0, 0, NULL, 0, "run one training step"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* Read every declared key back through its typed getter. */
static void read_all(const plast_args *a, const plast_setting *schema)
{
    for (const plast_setting *s = schema; s->key; s++) {
        switch (s->type) {
        case PLAST_S_INT: (void)plast_args_int(a, s->key); break;
        case PLAST_S_REAL: (void)plast_args_real(a, s->key); break;
        case PLAST_S_BOOL: (void)plast_args_bool(a, s->key); break;
        case PLAST_S_STRING: (void)plast_args_str(a, s->key); break;
        case PLAST_S_ENUM:
            (void)plast_args_str(a, s->key);
            (void)plast_args_enum(a, s->key);
            break;
        }
        (void)plast_args_given(a, s->key);
        (void)plast_args_line(a, s->key);
    }
}

static void check_section(const plast_config *c, const char *section,
                          const plast_setting *schema, const char *const *skip)
{
    plast_args *a;
    plast_err e;
    if (plast_args_parse(&a, c, section, schema, NULL, skip, &e) == 0) {
        read_all(a, schema);
        plast_args_destroy(a);
    }
}

/* Every (section, key) through the raw accessors. */
static void walk(const plast_config *c)
{
    for (int i = 0; i < plast_config_nsections(c); i++) {
        const char *s = plast_config_section_name(c, i);
        (void)plast_config_section_line(c, i);
        for (int k = 0; k < plast_config_nkeys(c, s); k++) {
            const char *value;
            int line;
            const char *key = plast_config_key(c, s, k, &value, &line);
            (void)plast_config_get(c, s, key, &line);
        }
    }
}

/* One bp step and one prediction on a batch of BATCH samples. */
static void train_step(plast_model *m, plast_config *c, plast_mem *mem, int classes)
{
    const plast_rule_ops *bp = plast_plugin_entry()->rules[0];
    plast_args *oa = NULL, *ra = NULL;
    plast_optim *opt = NULL;
    plast_rule *rule = NULL;
    plast_batch b;
    plast_tensor y;
    int32_t labels[BATCH];
    plast_err e;
    memset(&b, 0, sizeof b);
    if (plast_args_parse(&oa, c, "optimizer", plast_optim_settings, NULL, NULL, &e) ||
        plast_optim_create(&opt, oa, plast_model_nparams(m), mem, &e))
        goto done;
    plast_model_attach(m, &plast_loss_softmax_ce, opt, 1);
    if (plast_args_defaults(&ra, bp->settings, &e) || bp->create(&rule, m, ra, &e))
        goto done;
    if (plast_tensor_alloc(&b.x, mem, PLAST_MEM_INPUT, BATCH, plast_model_input_shape(m), &e))
        goto done;
    for (size_t i = 0; i < b.x.size; i++)
        b.x.data[i] = (plast_real)((int)(i % 7) - 3) * 0.25f;
    for (int i = 0; i < BATCH; i++)
        labels[i] = i % classes;
    b.labels = labels;
    b.n = BATCH;
    plast_stats st = {0, 0, 0};
    plast_optim_begin(opt, plast_optim_base_lr(opt)); /* as the trainer does per batch */
    if (bp->train_batch(rule, &b, &st, &e) == 0 && plast_model_predict(m, &b.x, &y, &e) == 0)
        plast_tensor_free(&y);
done:
    plast_tensor_free(&b.x);
    if (rule)
        bp->destroy(rule);
    plast_args_destroy(ra);
    plast_optim_destroy(opt);
    plast_args_destroy(oa);
}

static void build_model(plast_config *c)
{
    static plast_registry *reg;
    plast_args *fa;
    plast_mem *mem;
    plast_model *m;
    plast_err e;
    if (!reg && plast_registry_create(&reg, &e))
        return;
    if (plast_args_parse(&fa, c, "fuzz", fuzz_settings, NULL, NULL, &e))
        return;
    plast_shape in = {(int)plast_args_int(fa, "dims"),
                      {(int)plast_args_int(fa, "d0"), (int)plast_args_int(fa, "d1"),
                       (int)plast_args_int(fa, "d2")}};
    int classes = (int)plast_args_int(fa, "classes"), train = plast_args_bool(fa, "train");
    plast_args_destroy(fa);
    if (plast_mem_create(&mem, &e))
        return;
    if (plast_model_create(&m, c, reg, &in, classes, 1, mem, &e) == 0) {
        if (train && plast_model_flops(m) <= MAX_FLOPS)
            train_step(m, c, mem, classes);
        plast_model_destroy(m);
    }
    if (plast_mem_live_total(mem) != 0)
        abort(); /* something the model or the step allocated was not freed */
    plast_mem_destroy(mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const skip[] = {"optimizer.", "run.", NULL};
    char *text = fuzz_text(data, size);
    plast_config *c;
    plast_err e;
    if (!text)
        return 0;
    if (plast_config_parse_string(&c, "fuzz.ini", text, &e) == 0) {
        walk(c);
        check_section(c, "run", plast_run_settings, NULL);
        check_section(c, "data", plast_data_settings, NULL);
        check_section(c, "loss", plast_loss_settings, NULL);
        check_section(c, "rule", plast_rule_section_settings, NULL);
        check_section(c, "optimizer", plast_optim_settings, NULL);
        check_section(c, "rule.bp", plast_plugin_entry()->rules[0]->settings, skip);
        build_model(c);
        /* a command-line value on top, then the schemas again */
        if (plast_config_set(c, "run", "epochs", "3", "--set", &e) == 0)
            check_section(c, "run", plast_run_settings, NULL);
        plast_config_destroy(c);
    }
    free(text);
    return 0;
}
