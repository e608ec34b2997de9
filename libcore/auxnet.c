/* auxnet.c - AugLocal's plan (layers, depths, selections, strides) and
 * auxiliary nets built from copies of the model's own layer sections.
 *
 * A copy needs its shapes to be settled (the stride of copy i depends on
 * the height copy i-1 produces; an add's shortcut depends on whether its
 * two inputs match), and only a built model knows them for every layer
 * type.  So the chain is probed copy by copy: a throw-away model of copies
 * 0..i (their adds with conv1x1 shortcuts, which accept equal shapes too)
 * and a dense head, in a memory of its own, tells copy i's output shape
 * and its adds' input shapes; the net itself is built once at the end. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plast/auxnet.h"
#include "plast/config.h"
#include "plast/model.h"

const char *const plast_aux_select_names[] = {"uniform", "sequential", NULL};

/* ---- the plan ---- */

double plast_round_half_even(double x)
{
    double f = floor(x), frac = x - f;
    if (frac > 0.5)
        return f + 1.0;
    if (frac < 0.5)
        return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

static int is_image_block(plast_model *m, int k)
{
    const plast_block *b = plast_model_block(m, k);
    return b->trainable >= 0 && plast_model_layer(m, b->trainable)->out.ndim == 3;
}

int plast_auglocal_layers(plast_model *m)
{
    int n = plast_model_nblocks(m), last_image = -1;
    for (int k = 0; k < n; k++)
        if (is_image_block(m, k))
            last_image = k;
    int L = last_image >= 0 ? last_image + 1 : n - 1;
    return L < n - 1 ? L : n - 1;
}

int plast_auglocal_modules(int L, int d)
{
    return d == 0 ? L - 1 : L - d - 1;
}

int plast_auglocal_depth(int L, int d, int pyramid, double tau, int l)
{
    int K = L - d;
    if (!pyramid || d == 0 || K <= 2)
        return d;
    /* the reference code's expression, for the same ties */
    double r = ((double)l * tau) / (double)(K - 2);
    double v = plast_round_half_even((double)d * (1.0 - r) + r);
    return v < 1.0 ? 1 : (int)v;
}

int plast_auglocal_select(int L, int l, int dl, plast_aux_select sel, int *out)
{
    int n = 0;
    if (sel == PLAST_AUX_SEQUENTIAL || dl >= L - 1 - l) {
        int last = sel == PLAST_AUX_SEQUENTIAL && l + dl < L - 1 ? l + dl : L - 1;
        for (int j = l + 1; j <= last; j++)
            out[n++] = j;
        return n;
    }
    double span = (double)(L - l - 1) / (double)dl;
    for (int i = 1; i <= dl; i++)
        out[n++] = (int)plast_round_half_even((double)l + span * (double)i);
    return n;
}

int plast_auglocal_stride(int h, int target)
{
    return h > target && (h + 1) / 2 >= target ? 2 : 1;
}

/* ---- copies of blocks ---- */

enum { SHORTCUT_PROBE = 0, SHORTCUT_IDENTITY, SHORTCUT_CONV1X1 };

typedef struct aux_copy {
    int block;     /* the primary block copied */
    int image;     /* an image block: pools and the head's pooling left out */
    int conv;      /* its first conv2d (gets the stride rule), -1 = none */
    int last;      /* its last layer kept: the copy's output */
    int target;    /* image block: the primary's output height */
    int stride;    /* for `conv`: 1 or 2 */
    unsigned char shortcut[PLAST_BLOCK_MAX_LAYERS]; /* adds, by layer - first */
} aux_copy;

typedef struct aux_build {
    plast_model *m;
    const plast_config *spec;
    int l;               /* the local layer G serves */
    aux_copy *copy;
    int n;
    int batchnorm;
    char what[96];       /* "auxiliary net of layer NAME" */
} aux_build;

/* Layer roles from their schemas, not their type names, so that plug-in
 * layers of the same kind are copied alike. */
static int has_setting(const plast_layer *l, const char *key)
{
    for (const plast_setting *s = l->ops->settings; s && s->key; s++)
        if (!strcmp(s->key, key))
            return 1;
    return 0;
}

/* A strided image layer with parameters: a convolution. */
static int is_conv(plast_model *m, int i)
{
    const plast_layer *l = plast_model_layer(m, i);
    return l->nparams > 0 && l->out.ndim == 3 && has_setting(l, "stride");
}

/* A strided image layer without parameters: a pooling window. */
static int is_pool(plast_model *m, int i)
{
    const plast_layer *l = plast_model_layer(m, i);
    return l->nparams == 0 && l->in.ndim == 3 && l->out.ndim == 3 && has_setting(l, "stride");
}

/* A two-input layer with a shortcut choice: a residual add. */
static int is_add(plast_model *m, int i)
{
    const plast_layer *l = plast_model_layer(m, i);
    return l->ninputs == 2 && has_setting(l, "shortcut");
}

static int is_kept(const aux_build *b, const aux_copy *c, int i)
{
    if (!c->image)
        return 1;
    if (i > c->last)
        return 0;
    return c->conv < 0 || !is_pool(b->m, i);
}

/* The copy's layout: which layers stay, its conv, its output layer. */
static void plan_copy(aux_build *b, aux_copy *c, int block)
{
    const plast_block *k = plast_model_block(b->m, block);
    memset(c, 0, sizeof *c);
    c->block = block;
    c->image = is_image_block(b->m, block);
    c->conv = -1;
    c->stride = 1;
    c->last = k->last;
    if (!c->image)
        return;
    for (int i = k->first; i <= k->last; i++)
        if (plast_model_layer(b->m, i)->out.ndim == 3)
            c->last = i;
    c->target = plast_model_layer(b->m, c->last)->out.dim[1];
    for (int i = k->first; i <= c->last && c->conv < 0; i++)
        if (is_conv(b->m, i))
            c->conv = i;
    while (!is_kept(b, c, c->last)) /* a trailing pool: its input is the output */
        c->last--;
}

/* Name of primary layer i in copy `pos`; PLAST_E_INVAL if it would not
 * fit a layer name. */
static int copy_name(const aux_build *b, int pos, int i, char *buf, size_t n, plast_err *e)
{
    const char *name = plast_model_layer(b->m, i)->name;
    int len = snprintf(buf, n, "a%d_%s", pos, name);
    if (len < 0 || (size_t)len >= n || len >= (int)sizeof(((plast_layer *)0)->name))
        return plast_err_set(e, PLAST_E_INVAL,
                             "layer name '%s' is too long for its copy's name 'a%d_%s'", name,
                             pos, name);
    return PLAST_OK;
}

/* What feeds input `in` of layer i in copy `pos`: a kept layer of the
 * copy (a left-out layer passes its own input on), or the chain input. */
static int source_name(const aux_build *b, int pos, int i, int in, char *buf, size_t n,
                       plast_err *e)
{
    const aux_copy *c = &b->copy[pos];
    int first = plast_model_block(b->m, c->block)->first;
    int p = plast_model_layer_input(b->m, i, in);
    while (p >= first && !is_kept(b, c, p))
        p = plast_model_layer_input(b->m, p, 0);
    if (p >= first)
        return copy_name(b, pos, p, buf, n, e);
    if (pos == 0) {
        snprintf(buf, n, "%s", PLAST_MODEL_INPUT);
        return PLAST_OK;
    }
    return copy_name(b, pos - 1, b->copy[pos - 1].last, buf, n, e);
}

static int set_key(plast_config *c, const char *section, const char *key, const char *value,
                   plast_err *e)
{
    return plast_config_set(c, section, key, value, NULL, e);
}

/* Keys a copy does not take from the primary: its wiring is the chain's,
 * and every copy trains (frozen is dropped). */
static int is_replaced_key(const char *key)
{
    return !strcmp(key, "input") || !strcmp(key, "from") || !strcmp(key, "block") ||
           !strcmp(key, "frozen");
}

/* Layer i's section in copy `pos`: its own keys, the copy's wiring, the
 * stride rule and the shortcut decided for it. */
static int emit_layer(const aux_build *b, plast_config *out, int pos, int i, plast_err *e)
{
    const aux_copy *c = &b->copy[pos];
    char name[64], section[80], src[64], block[16];
    int rc = copy_name(b, pos, i, name, sizeof name, e);
    if (rc)
        return rc;
    snprintf(section, sizeof section, "layer.%s", name);
    char from[80];
    snprintf(from, sizeof from, "layer.%s", plast_model_layer(b->m, i)->name);
    for (int k = 0; k < plast_config_nkeys(b->spec, from) && !rc; k++) {
        const char *value, *key = plast_config_key(b->spec, from, k, &value, NULL);
        if (!is_replaced_key(key))
            rc = set_key(out, section, key, value, e);
    }
    snprintf(block, sizeof block, "a%d", pos);
    if (!rc)
        rc = set_key(out, section, "block", block, e);
    if (!rc && !(rc = source_name(b, pos, i, 0, src, sizeof src, e)))
        rc = set_key(out, section, "input", src, e);
    if (!rc && plast_model_layer(b->m, i)->ninputs == 2 &&
        !(rc = source_name(b, pos, i, 1, src, sizeof src, e)))
        rc = set_key(out, section, "from", src, e);
    if (!rc && i == c->conv)
        rc = set_key(out, section, "stride", c->stride == 2 ? "2" : "1", e);
    if (!rc && c->image && is_add(b->m, i)) {
        int s = c->shortcut[i - plast_model_block(b->m, c->block)->first];
        rc = set_key(out, section, "shortcut", s == SHORTCUT_IDENTITY ? "identity" : "conv1x1", e);
    }
    return rc;
}

static int emit_copy(const aux_build *b, plast_config *out, int pos, plast_err *e)
{
    const plast_block *k = plast_model_block(b->m, b->copy[pos].block);
    int rc = PLAST_OK;
    for (int i = k->first; i <= k->last && !rc; i++)
        if (is_kept(b, &b->copy[pos], i))
            rc = emit_layer(b, out, pos, i, e);
    return rc;
}

/* gap (image input) -> batchnorm (if asked) -> dense(classes); a probe
 * gets a bare dense, which reads any shape. */
static int emit_head(const aux_build *b, plast_config *out, int ncopies, int image, int probe,
                     plast_err *e)
{
    char src[64], classes[16];
    int rc = PLAST_OK;
    if (ncopies == 0)
        snprintf(src, sizeof src, "%s", PLAST_MODEL_INPUT);
    else
        rc = copy_name(b, ncopies - 1, b->copy[ncopies - 1].last, src, sizeof src, e);
    if (!rc && !probe && image) {
        if (!(rc = set_key(out, "layer.head_gap", "type", "gap", e)))
            rc = set_key(out, "layer.head_gap", "input", src, e);
        snprintf(src, sizeof src, "head_gap");
    }
    if (!rc && !probe && b->batchnorm) {
        if (!(rc = set_key(out, "layer.head_bn", "type", "batchnorm", e)))
            rc = set_key(out, "layer.head_bn", "input", src, e);
        snprintf(src, sizeof src, "head_bn");
    }
    snprintf(classes, sizeof classes, "%d", plast_model_classes(b->m));
    if (!rc && !(rc = set_key(out, "layer.head_out", "type", "dense", e)) &&
        !(rc = set_key(out, "layer.head_out", "units", classes, e)))
        rc = set_key(out, "layer.head_out", "input", src, e);
    return rc;
}

/* Build the net of copies 0..ncopies-1 plus a head into *out. */
static int build_net(const aux_build *b, int ncopies, int image, int probe, plast_mem *mem,
                     plast_model **out, plast_err *e)
{
    plast_config *c;
    int rc = plast_config_parse_string(&c, plast_config_file(b->spec), "", e);
    if (rc)
        return rc;
    for (int pos = 0; pos < ncopies && !rc; pos++)
        rc = emit_copy(b, c, pos, e);
    if (!rc)
        rc = emit_head(b, c, ncopies, image, probe, e);
    const plast_block *src = plast_model_block(b->m, b->l);
    const plast_shape *in = &plast_model_layer(b->m, src->last)->out;
    if (!rc)
        rc = plast_model_create(out, c, plast_model_registry(b->m), in,
                                plast_model_classes(b->m), plast_model_seed(b->m), mem, e);
    plast_config_destroy(c);
    return rc;
}

static const plast_shape *probe_output(const aux_build *b, plast_model *probe, int pos)
{
    char name[64];
    copy_name(b, pos, b->copy[pos].last, name, sizeof name, NULL); /* checked when emitted */
    return &plast_model_layer(probe, plast_model_find_layer(probe, name))->out;
}

/* An add keeps the identity shortcut when its inputs match in the probe. */
static void decide_shortcuts(const aux_build *b, plast_model *probe, int pos)
{
    aux_copy *c = &b->copy[pos];
    int first = plast_model_block(b->m, c->block)->first;
    for (int i = first; i <= c->last; i++) {
        char name[64];
        if (!is_kept(b, c, i) || !is_add(b->m, i))
            continue;
        copy_name(b, pos, i, name, sizeof name, NULL);
        const plast_layer *l = plast_model_layer(probe, plast_model_find_layer(probe, name));
        c->shortcut[i - first] = l->ninputs == 2 && plast_shape_equal(&l->in, &l->in2)
                                     ? SHORTCUT_IDENTITY
                                     : SHORTCUT_CONV1X1;
    }
}

/* Settle copy pos: the stride from the chain's height, then a probe for
 * its shortcuts and its output shape (the next copy's input). */
static int settle_copy(aux_build *b, int pos, plast_shape *chain, plast_mem *mem, plast_err *e)
{
    aux_copy *c = &b->copy[pos];
    if (c->conv >= 0 && chain->ndim == 3)
        c->stride = plast_auglocal_stride(chain->dim[1], c->target);
    plast_model *probe;
    int rc = build_net(b, pos + 1, 0, 1, mem, &probe, e);
    if (rc)
        return rc;
    decide_shortcuts(b, probe, pos);
    *chain = *probe_output(b, probe, pos);
    plast_model_destroy(probe);
    return PLAST_OK;
}

/* Fresh weights from the auxiliary net's own streams. */
static void init_aux(plast_model *g, uint64_t seed, int l)
{
    for (int i = 0; i < plast_model_nlayers(g); i++) {
        plast_layer *layer = plast_model_layer(g, i);
        if (!layer->nparams)
            continue;
        plast_rng r;
        plast_rng_stream(&r, seed, PLAST_STREAM_INIT, PLAST_AUX_INIT_INDEX(l) + (uint32_t)i);
        if (layer->ops->init)
            layer->ops->init(layer, &r);
        else
            plast_layer_default_init(layer, &r);
    }
}

static int build_chain(aux_build *b, plast_model **out, plast_err *e)
{
    const plast_block *src = plast_model_block(b->m, b->l);
    plast_shape chain = plast_model_layer(b->m, src->last)->out;
    plast_mem *probe_mem;
    int rc = plast_mem_create(&probe_mem, e);
    for (int pos = 0; pos < b->n && !rc; pos++) {
        plan_copy(b, &b->copy[pos], b->copy[pos].block);
        rc = settle_copy(b, pos, &chain, probe_mem, e);
    }
    plast_mem_destroy(probe_mem);
    if (!rc)
        rc = build_net(b, b->n, chain.ndim == 3, 0, plast_model_mem(b->m), out, e);
    if (!rc && plast_model_nlayers(*out) >= (1 << 12)) {
        plast_model_destroy(*out);
        rc = plast_err_set(e, PLAST_E_INVAL, "%s has %d layers, at most %d are supported",
                           b->what, plast_model_nlayers(*out), (1 << 12) - 1);
    }
    return rc;
}

int plast_auxnet_create(plast_model **out, plast_model *m, int l, const int *sel, int n,
                        int batchnorm, plast_err *e)
{
    PLAST_ASSERT(l >= 0 && l < plast_model_nblocks(m) && n >= 0);
    aux_build b;
    memset(&b, 0, sizeof b);
    b.m = m;
    b.spec = plast_model_spec(m);
    b.l = l;
    b.n = n;
    b.batchnorm = batchnorm;
    snprintf(b.what, sizeof b.what, "auxiliary net of layer %s", plast_model_block_name(m, l));
    b.copy = calloc((size_t)(n ? n : 1), sizeof *b.copy);
    if (!b.copy)
        return plast_err_set(e, PLAST_E_NOMEM, "%s: out of memory", b.what);
    for (int i = 0; i < n; i++) {
        PLAST_ASSERT(sel[i] > l && sel[i] < plast_model_nblocks(m));
        b.copy[i].block = sel[i];
    }
    int rc = build_chain(&b, out, e);
    free(b.copy);
    if (rc) {
        char prefix[112];
        snprintf(prefix, sizeof prefix, "%s: ", b.what);
        return plast_err_wrap(e, NULL, 0, prefix);
    }
    init_aux(*out, plast_model_seed(m), l);
    return PLAST_OK;
}
