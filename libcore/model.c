/* model.c - layers from [layer.NAME] sections, blocks, flat parameters. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plast/model.h"
#include "plast/plugin.h"

#define PARAM_ALIGN 16 /* floats: each parameter starts on a 64-byte boundary */

struct plast_model {
    int nlayers;
    plast_layer *layers;
    int nblocks;
    plast_block *blocks;
    plast_shape input;
    int classes;
    size_t nparams, nbuffers;
    plast_real *weights, *grads;
    int grads_shared;      /* grads holds one block at a time (share_grads) */
    plast_real *buffers;   /* non-trained state (PLAST_PARAM_BUFFER) */
    plast_mem *mem;
    uint64_t seed;
    const plast_loss_ops *loss;
    plast_optim *optim;
    int threads;
    uint64_t step;
    int (*inputs)[2];      /* producer of each input; -1 = the model input */
    int *consumers;        /* how many layers read each layer's output */
    char (*block_name)[64];/* `block =` of each layer, "" = automatic */
    plast_registry *reg;   /* where the layer types came from (not owned) */
    plast_config *spec;    /* a copy of the [layer.*] sections */
};

static const plast_setting layer_common[] = {
    {"type", PLAST_S_STRING, NULL, 0, 0, NULL, PLAST_S_REQUIRED, "layer type"},
    {"frozen", PLAST_S_BOOL, "false", 0, 0, NULL, 0, "keep this layer's parameters fixed"},
    {"input", PLAST_S_STRING, "", 0, 0, NULL, 0,
     "layer whose output this one reads (default: the previous layer)"},
    {"from", PLAST_S_STRING, "", 0, 0, NULL, 0, "second input of a two-input layer (add)"},
    {"block", PLAST_S_STRING, "", 0, 0, NULL, 0,
     "group consecutive layers into one block (the unit local rules train)"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

static int count_layer_sections(const plast_config *c)
{
    int n = 0;
    for (int i = 0; i < plast_config_nsections(c); i++)
        if (strncmp(plast_config_section_name(c, i), "layer.", 6) == 0)
            n++;
    return n;
}

static int lookup_type(plast_registry *reg, const plast_config *c, const char *section,
                       const plast_layer_ops **ops, plast_err *e)
{
    int line = 0;
    const char *type = plast_config_get(c, section, "type", &line);
    if (!type) {
        int i = 0;
        while (strcmp(plast_config_section_name(c, i), section) != 0)
            i++;
        return plast_err_at(e, PLAST_E_PARSE, plast_config_file(c),
                            plast_config_section_line(c, i), "[%s] missing required key 'type'",
                            section);
    }
    *ops = plast_registry_layer(reg, type);
    if (!*ops) {
        char names[512];
        return plast_err_at(e, PLAST_E_PARSE, plast_config_file(c), line,
                            "[%s] type: expected one of %s, found \"%s\"", section,
                            plast_registry_layer_names(reg, names, sizeof names), type);
    }
    return PLAST_OK;
}

/* Index of the layer named by key `key` (an earlier layer), or the
 * previous layer when the key is not given; -1 is the model input. */
static int resolve_input(const plast_model *m, const plast_args *a, const char *key, int *out,
                         plast_err *e)
{
    const char *name = plast_args_str(a, key);
    if (!name[0]) {
        *out = m->nlayers - 1;
        return PLAST_OK;
    }
    if (!strcmp(name, PLAST_MODEL_INPUT)) {
        *out = -1;
        return PLAST_OK;
    }
    int i = plast_model_find_layer(m, name);
    if (i < 0)
        return plast_err_at(e, PLAST_E_PARSE, plast_args_file(a), plast_args_line(a, key),
                            "[%s] %s: expected the name of an earlier layer, found \"%s\"",
                            plast_args_section(a), key, name);
    *out = i;
    return PLAST_OK;
}

static const plast_shape *output_shape(const plast_model *m, int i)
{
    return i < 0 ? &m->input : &m->layers[i].out;
}

/* Wire the layer's inputs from `input =` and `from =`. */
static int connect(plast_model *m, plast_layer *l, const plast_args *a, plast_err *e)
{
    int *in = m->inputs[m->nlayers], rc;
    in[1] = -2;
    if ((rc = resolve_input(m, a, "input", &in[0], e)))
        return rc;
    l->in = *output_shape(m, in[0]);
    l->ninputs = 1;
    int two = PLAST_HAS(l->ops, plast_layer_ops, forward2);
    if (!plast_args_given(a, "from")) {
        if (two)
            return plast_err_at(e, PLAST_E_PARSE, plast_args_file(a), plast_args_line(a, "type"),
                                "[%s] missing required key 'from'", plast_args_section(a));
        return PLAST_OK;
    }
    if (!two)
        return plast_err_at(e, PLAST_E_PARSE, plast_args_file(a), plast_args_line(a, "from"),
                            "[%s] from: layer type '%s' takes one input", plast_args_section(a),
                            l->ops->name);
    if ((rc = resolve_input(m, a, "from", &in[1], e)))
        return rc;
    l->in2 = *output_shape(m, in[1]);
    l->ninputs = 2;
    return PLAST_OK;
}

static int create_layer(plast_model *m, plast_registry *reg, const plast_config *c,
                        const char *section, plast_err *e)
{
    const plast_layer_ops *ops;
    int rc = lookup_type(reg, c, section, &ops, e);
    if (rc)
        return rc;
    plast_args *a;
    rc = plast_args_parse(&a, c, section, ops->settings, layer_common, NULL, e);
    if (rc)
        return rc;
    plast_layer *l = &m->layers[m->nlayers];
    memset(l, 0, sizeof *l);
    l->ops = ops;
    snprintf(l->name, sizeof l->name, "%s", section + 6);
    snprintf(m->block_name[m->nlayers], sizeof m->block_name[0], "%s", plast_args_str(a, "block"));
    l->index = m->nlayers;
    l->frozen = plast_args_bool(a, "frozen");
    l->seed = m->seed;
    if ((rc = connect(m, l, a, e))) {
        plast_args_destroy(a);
        return rc;
    }
    rc = ops->create(l, a, e);
    if (rc == PLAST_OK && l->nparams == 0 && l->frozen)
        rc = plast_err_at(e, PLAST_E_PARSE, plast_args_file(a), plast_args_line(a, "frozen"),
                          "[%s] frozen: layer type '%s' has no parameters", section, ops->name);
    if (rc && e && !e->file[0]) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "[%s] ", section);
        plast_err_wrap(e, plast_config_file(c), plast_args_line(a, "type"), prefix);
    }
    plast_args_destroy(a);
    if (rc) {
        if (ops->destroy)
            ops->destroy(l);
        return rc;
    }
    m->nlayers++;
    return PLAST_OK;
}

/* Where the next block starts: at a new `block =` name, or at a
 * trainable layer once the current block has one (or is a named block);
 * other layers, and followers such as batchnorm, join the block before
 * them. */
static int starts_block(const plast_model *m, int i, const plast_block *cur)
{
    const char *name = m->block_name[i];
    const char *cur_name = m->block_name[cur->first];
    if (name[0])
        return strcmp(name, cur_name) != 0;
    const plast_layer *l = &m->layers[i];
    return l->nparams > 0 && !(l->ops->flags & PLAST_LAYER_FOLLOWER) &&
           (cur->trainable >= 0 || cur_name[0]);
}

static int build_blocks(plast_model *m, plast_err *e)
{
    m->blocks = calloc((size_t)m->nlayers, sizeof *m->blocks);
    if (!m->blocks)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory building blocks");
    int k = -1;
    for (int i = 0; i < m->nlayers; i++) {
        plast_layer *l = &m->layers[i];
        if (k < 0 || starts_block(m, i, &m->blocks[k])) {
            for (int j = 0; j < k && m->block_name[i][0]; j++)
                if (!strcmp(m->block_name[m->blocks[j].first], m->block_name[i]))
                    return plast_err_set(e, PLAST_E_PARSE,
                                         "[layer.%s] block '%s' is not contiguous: its layers "
                                         "must follow each other",
                                         l->name, m->block_name[i]);
            k++;
            m->blocks[k].first = i;
            m->blocks[k].trainable = -1;
            m->blocks[k].inject = -1;
        }
        plast_block *b = &m->blocks[k];
        b->last = i;
        if (l->nparams > 0 && b->trainable < 0)
            b->trainable = i;
        if ((l->ops->flags & PLAST_LAYER_ACTIVATION) && b->inject < 0 && b->trainable >= 0)
            b->inject = i;
        l->block = k;
        if (b->last - b->first + 1 > PLAST_BLOCK_MAX_LAYERS)
            return plast_err_set(e, PLAST_E_INVAL, "block %d has more than %d layers", k,
                                 PLAST_BLOCK_MAX_LAYERS);
    }
    m->nblocks = k + 1;
    return PLAST_OK;
}

/* Every input comes from the same block or is the block's input (the
 * previous block's output), and every output but the last is used: that
 * keeps blocks self-contained, which local rules rely on. */
static int check_wiring(plast_model *m, plast_err *e)
{
    for (int i = 0; i < m->nlayers; i++) {
        const plast_layer *l = &m->layers[i];
        int first = m->blocks[l->block].first;
        for (int n = 0; n < l->ninputs; n++) {
            int p = m->inputs[i][n];
            if (p >= first - 1)
                continue;
            return plast_err_set(e, PLAST_E_PARSE,
                                 "[layer.%s] %s: layer '%s' is outside this layer's block and "
                                 "is not its input (group them with block = NAME)",
                                 l->name, n ? "from" : "input", m->layers[p < 0 ? 0 : p].name);
        }
    }
    for (int i = 0; i < m->nlayers - 1; i++)
        if (m->consumers[i] == 0)
            return plast_err_set(e, PLAST_E_PARSE,
                                 "[layer.%s] its output is never used (every layer but the last "
                                 "must feed another)",
                                 m->layers[i].name);
    return PLAST_OK;
}

static void count_consumers(plast_model *m)
{
    for (int i = 0; i < m->nlayers; i++)
        for (int n = 0; n < m->layers[i].ninputs; n++)
            if (m->inputs[i][n] >= 0)
                m->consumers[m->inputs[i][n]]++;
}

static size_t padded(size_t count)
{
    return (count + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
}

static int is_buffer(const plast_param *p)
{
    return (p->flags & PLAST_PARAM_BUFFER) != 0;
}

/* Trained parameters go to the flat weight/gradient arrays, block by
 * block; buffers to their own array, outside the optimiser's ranges. */
static int map_params(plast_model *m, plast_err *e)
{
    size_t off = 0, boff = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int p = 0; p < m->layers[i].nparams; p++) {
            const plast_param *pa = &m->layers[i].param[p];
            if (is_buffer(pa))
                boff += padded(pa->count);
            else
                off += padded(pa->count);
        }
    m->nparams = off;
    m->nbuffers = boff;
    size_t bytes = (off ? off : 1) * sizeof(plast_real);
    m->weights = plast_mem_calloc(m->mem, PLAST_MEM_WEIGHTS, bytes);
    m->grads = plast_mem_calloc(m->mem, PLAST_MEM_GRADIENTS, bytes);
    if (boff)
        m->buffers = plast_mem_calloc(m->mem, PLAST_MEM_WEIGHTS, boff * sizeof(plast_real));
    if (!m->weights || !m->grads || (boff && !m->buffers))
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory for %zu parameters", off + boff);
    off = boff = 0;
    for (int k = 0; k < m->nblocks; k++) {
        plast_block *b = &m->blocks[k];
        b->param_begin = off;
        for (int i = b->first; i <= b->last; i++)
            for (int p = 0; p < m->layers[i].nparams; p++) {
                plast_param *pa = &m->layers[i].param[p];
                if (is_buffer(pa)) {
                    pa->w = m->buffers + boff;
                    pa->g = NULL;
                    boff += padded(pa->count);
                } else {
                    pa->w = m->weights + off;
                    pa->g = m->grads + off;
                    off += padded(pa->count);
                }
            }
        b->param_end = off;
    }
    return PLAST_OK;
}

static void init_params(plast_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        plast_layer *l = &m->layers[i];
        if (!l->nparams)
            continue;
        plast_rng r;
        plast_rng_stream(&r, m->seed, PLAST_STREAM_INIT, (uint32_t)i);
        if (l->ops->init)
            l->ops->init(l, &r);
        else
            plast_layer_default_init(l, &r);
    }
}

/* Keep the [layer.*] sections, so that new nets can be built from this
 * model's own layer descriptions (AugLocal's auxiliary networks). */
static int copy_spec(plast_model *m, const plast_config *c, plast_err *e)
{
    int rc = plast_config_parse_string(&m->spec, plast_config_file(c), "", e);
    for (int i = 0; i < plast_config_nsections(c) && !rc; i++) {
        const char *sec = plast_config_section_name(c, i);
        if (strncmp(sec, "layer.", 6) != 0)
            continue;
        for (int k = 0; k < plast_config_nkeys(c, sec) && !rc; k++) {
            const char *value;
            const char *key = plast_config_key(c, sec, k, &value, NULL);
            rc = plast_config_set(m->spec, sec, key, value, plast_config_file(c), e);
        }
    }
    return rc;
}

static int check_output(const plast_model *m, const plast_config *c, plast_err *e)
{
    const plast_layer *last = &m->layers[m->nlayers - 1];
    if (last->out.ndim == 1 && last->out.dim[0] == m->classes)
        return PLAST_OK;
    char s[64];
    int line = 0;
    char section[80];
    snprintf(section, sizeof section, "layer.%s", last->name);
    plast_config_get(c, section, "type", &line);
    return plast_err_at(e, PLAST_E_PARSE, plast_config_file(c), line,
                        "[%s] the last layer must give %d outputs (one per class), it gives %s",
                        section, m->classes, plast_shape_str(&last->out, s, sizeof s));
}

int plast_model_create(plast_model **out, const plast_config *c, plast_registry *reg,
                       const plast_shape *input, int classes, uint64_t seed, plast_mem *mem,
                       plast_err *e)
{
    int rc;
    int n = count_layer_sections(c);
    if (n == 0)
        return plast_err_at(e, PLAST_E_PARSE, plast_config_file(c), 0,
                            "no [layer.NAME] sections: the model has no layers");
    plast_model *m = calloc(1, sizeof *m);
    if (!m)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory creating the model");
    m->layers = calloc((size_t)n, sizeof *m->layers);
    m->inputs = calloc((size_t)n, sizeof *m->inputs);
    m->consumers = calloc((size_t)n, sizeof *m->consumers);
    m->block_name = calloc((size_t)n, sizeof *m->block_name);
    if (!m->layers || !m->inputs || !m->consumers || !m->block_name) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory creating the model");
        goto undo_model;
    }
    m->input = *input;
    m->classes = classes;
    m->seed = seed;
    m->mem = mem;
    m->threads = 1;
    m->reg = reg;
    for (int i = 0; i < plast_config_nsections(c); i++) {
        const char *sec = plast_config_section_name(c, i);
        if (strncmp(sec, "layer.", 6) != 0)
            continue;
        if ((rc = create_layer(m, reg, c, sec, e)) != 0)
            goto undo_layers;
    }
    count_consumers(m);
    if ((rc = check_output(m, c, e)) != 0 || (rc = build_blocks(m, e)) != 0 ||
        (rc = check_wiring(m, e)) != 0 || (rc = map_params(m, e)) != 0 ||
        (rc = copy_spec(m, c, e)) != 0)
        goto undo_layers;
    init_params(m);
    *out = m;
    return PLAST_OK;
undo_layers:
    plast_model_destroy(m);
    return rc;
undo_model:
    free(m->layers);
    free(m->inputs);
    free(m->consumers);
    free(m->block_name);
    free(m);
    return rc;
}

void plast_model_destroy(plast_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].ops->destroy)
            m->layers[i].ops->destroy(&m->layers[i]);
    plast_mem_free(m->mem, m->weights);
    plast_mem_free(m->mem, m->grads);
    plast_mem_free(m->mem, m->buffers);
    free(m->blocks);
    free(m->layers);
    free(m->inputs);
    free(m->consumers);
    free(m->block_name);
    plast_config_destroy(m->spec);
    free(m);
}

int plast_model_layer_input(const plast_model *m, int i, int n)
{
    return n < m->layers[i].ninputs ? m->inputs[i][n] : -2;
}

int plast_model_consumers(const plast_model *m, int i)
{
    return m->consumers[i];
}

int plast_model_nlayers(const plast_model *m) { return m->nlayers; }
plast_layer *plast_model_layer(plast_model *m, int i) { return &m->layers[i]; }
int plast_model_nblocks(const plast_model *m) { return m->nblocks; }
const plast_block *plast_model_block(const plast_model *m, int k) { return &m->blocks[k]; }
const plast_shape *plast_model_input_shape(const plast_model *m) { return &m->input; }
int plast_model_classes(const plast_model *m) { return m->classes; }
size_t plast_model_nparams(const plast_model *m) { return m->nparams; }
plast_real *plast_model_weights(plast_model *m) { return m->weights; }
plast_real *plast_model_grads(plast_model *m) { return m->grads; }

int plast_model_share_grads(plast_model *m, plast_err *e)
{
    if (m->grads_shared || !m->grads)
        return PLAST_OK;
    size_t largest = 1;
    for (int k = 0; k < m->nblocks; k++) {
        size_t n = m->blocks[k].param_end - m->blocks[k].param_begin;
        largest = n > largest ? n : largest;
    }
    plast_real *g = plast_mem_calloc(m->mem, PLAST_MEM_GRADIENTS, largest * sizeof *g);
    if (!g)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory for %zu gradients", largest);
    plast_mem_free(m->mem, m->grads);
    m->grads = g;
    m->grads_shared = 1;
    for (int k = 0; k < m->nblocks; k++) {
        const plast_block *b = &m->blocks[k];
        for (int i = b->first; i <= b->last; i++)
            for (int p = 0; p < m->layers[i].nparams; p++) {
                plast_param *pa = &m->layers[i].param[p];
                if (!is_buffer(pa))
                    pa->g = g + ((size_t)(pa->w - m->weights) - b->param_begin);
            }
    }
    return PLAST_OK;
}

void plast_model_drop_grads(plast_model *m)
{
    plast_mem_free(m->mem, m->grads);
    m->grads = NULL;
    for (int i = 0; i < m->nlayers; i++) {
        plast_layer *l = &m->layers[i];
        l->frozen = l->nparams > 0;
        for (int p = 0; p < l->nparams; p++)
            l->param[p].g = NULL;
    }
}
plast_mem *plast_model_mem(plast_model *m) { return m->mem; }
uint64_t plast_model_seed(const plast_model *m) { return m->seed; }
plast_registry *plast_model_registry(const plast_model *m) { return m->reg; }
const plast_config *plast_model_spec(const plast_model *m) { return m->spec; }

const char *plast_model_block_name(const plast_model *m, int k)
{
    const plast_block *b = &m->blocks[k];
    if (m->block_name[b->first][0])
        return m->block_name[b->first];
    return m->layers[b->trainable >= 0 ? b->trainable : b->first].name;
}
const plast_loss_ops *plast_model_loss(const plast_model *m) { return m->loss; }
plast_optim *plast_model_optim(plast_model *m) { return m->optim; }

int plast_model_find_layer(const plast_model *m, const char *name)
{
    for (int i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i].name, name) == 0)
            return i;
    return -1;
}

uint64_t plast_model_flops(const plast_model *m)
{
    uint64_t f = 0;
    for (int i = 0; i < m->nlayers; i++)
        f += plast_layer_flops(&m->layers[i], 1);
    return f;
}

uint64_t plast_model_bytes(const plast_model *m)
{
    uint64_t b = 0;
    for (int i = 0; i < m->nlayers; i++)
        b += plast_layer_bytes(&m->layers[i], 1);
    return b;
}

void plast_model_attach(plast_model *m, const plast_loss_ops *loss, plast_optim *optim,
                        int threads)
{
    m->loss = loss;
    m->optim = optim;
    m->threads = threads > 0 ? threads : 1;
}

plast_ctx plast_model_ctx(plast_model *m, int train)
{
    plast_ctx ctx = {m->mem, train, m->threads, m->step};
    return ctx;
}

void plast_model_set_step(plast_model *m, uint64_t step)
{
    m->step = step;
}

/* The range of layer l's trained parameters in the flat arrays, with the
 * zero padding after each (which the optimisers keep at zero), so that
 * stepping every layer covers the arrays whole (plast_optim_step_finite);
 * 0 if it has none. */
static int layer_range(const plast_model *m, const plast_layer *l, size_t *b, size_t *e)
{
    int found = 0;
    for (int p = 0; p < l->nparams; p++) {
        const plast_param *pa = &l->param[p];
        if (is_buffer(pa))
            continue;
        size_t lo = (size_t)(pa->w - m->weights), hi = lo + padded(pa->count);
        if (!found || lo < *b)
            *b = lo;
        if (!found || hi > *e)
            *e = hi;
        found = 1;
    }
    return found;
}

/* Frozen layers are skipped so momentum or weight decay cannot move them. */
void plast_model_step_block(plast_model *m, int k)
{
    const plast_block *b = &m->blocks[k];
    for (int i = b->first; i <= b->last; i++) {
        const plast_layer *l = &m->layers[i];
        if (l->nparams == 0 || l->frozen)
            continue;
        size_t begin, end;
        if (!layer_range(m, l, &begin, &end))
            continue;
        size_t g0 = m->grads_shared ? begin - b->param_begin : begin;
        plast_optim_update_range(m->optim, m->weights, m->grads + g0, begin, end);
    }
}

void plast_model_step_all(plast_model *m)
{
    for (int k = 0; k < m->nblocks; k++)
        plast_model_step_block(m, k);
}
