/* fuzz_plugin.c - the loader's checks of a plug-in descriptor, run on a
 * fake descriptor built in memory from the input (no dlopen): magic, ABI,
 * sizes, names, the rule, layer and loss tables, their callbacks and
 * their setting schemas.
 *
 * Every object is allocated with exactly the size it declares (when that
 * is less than the real struct), and every string with exactly its
 * length, so AddressSanitizer catches a check that reads past what a
 * plug-in declared.  A descriptor the checks accept must give defaults
 * for every schema. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/plast.h"
#include "fuzz.h"

#define MAX_ENTRIES 3
#define MAX_SETTINGS 5
#define MAX_CHOICES 4
#define MAX_STR 72

/* The input, consumed from the front; zeros once it is used up. */
typedef struct src {
    const uint8_t *p;
    size_t n;
} src;

/* Everything allocated for one descriptor, freed at the end. */
typedef struct pool {
    void *v[1024];
    int n;
} pool;

static void *pool_alloc(pool *pl, size_t bytes)
{
    if (pl->n == (int)(sizeof pl->v / sizeof pl->v[0]))
        abort(); /* the harness's own limit: raise it */
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p)
        abort();
    pl->v[pl->n++] = p;
    return p;
}

static void pool_free(pool *pl)
{
    while (pl->n > 0)
        free(pl->v[--pl->n]);
}

static uint8_t u8(src *s)
{
    if (!s->n)
        return 0;
    s->n--;
    return *s->p++;
}

static uint32_t u32(src *s)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)u8(s) << (8 * i);
    return v;
}

static double f64(src *s)
{
    uint64_t bits = 0;
    double v;
    for (int i = 0; i < 8; i++)
        bits |= (uint64_t)u8(s) << (8 * i);
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* A string of up to MAX_STR bytes (any bytes but NUL), or NULL when the
 * length byte is 255. */
static const char *str(src *s, pool *pl)
{
    uint8_t len = u8(s);
    if (len == 255)
        return NULL;
    len %= MAX_STR;
    char *t = pool_alloc(pl, (size_t)len + 1);
    for (int i = 0; i < len; i++) {
        uint8_t c = u8(s);
        t[i] = c ? (char)c : 'a';
    }
    return t;
}

/* A small integer that is usually `good` and sometimes anything. */
static uint32_t maybe(src *s, uint32_t good)
{
    return u8(s) & 1 ? good : u32(s);
}

/* Copy `full` (of `real` bytes) into a block of its declared size, but
 * at least `fixed` bytes: the members read before the size is known. */
static const void *declared(pool *pl, const void *full, size_t real, uint32_t size,
                            size_t fixed)
{
    size_t n = size < real ? size : real;
    if (n < fixed)
        n = fixed;
    void *p = pool_alloc(pl, n);
    memcpy(p, full, n);
    return p;
}

static const char *const *choices(src *s, pool *pl)
{
    uint8_t n = u8(s);
    if (n == 255)
        return NULL;
    n %= MAX_CHOICES + 1;
    const char **c = pool_alloc(pl, ((size_t)n + 1) * sizeof *c);
    for (int i = 0; i < n; i++)
        c[i] = str(s, pl);
    return c;
}

/* A schema: up to MAX_SETTINGS entries then the NULL key, or NULL. */
static const plast_setting *schema(src *s, pool *pl)
{
    uint8_t n = u8(s);
    if (n == 255)
        return NULL;
    n %= MAX_SETTINGS + 1;
    plast_setting *set = pool_alloc(pl, ((size_t)n + 1) * sizeof *set);
    for (int i = 0; i < n; i++) {
        plast_setting *t = &set[i];
        t->key = str(s, pl);
        t->type = (plast_stype)(u8(s) % 8);
        t->def = str(s, pl);
        uint8_t how = u8(s);
        t->min = how & 1 ? f64(s) : (double)(int8_t)u8(s);
        t->max = how & 2 ? f64(s) : (double)(int8_t)u8(s);
        t->choices = choices(s, pl);
        t->flags = u8(s) % 16;
        t->help = str(s, pl);
        if (!t->key)
            break; /* the array ends early, as a plug-in's may */
    }
    return set;
}

static int r_create(plast_rule **o, plast_model *m, const plast_args *a, plast_err *e)
{
    (void)o, (void)m, (void)a;
    return plast_err_set(e, PLAST_E_UNSUPPORTED, "fuzz");
}
static int r_train(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    (void)r, (void)b, (void)st;
    return plast_err_set(e, PLAST_E_UNSUPPORTED, "fuzz");
}
static void r_destroy(plast_rule *r) { (void)r; }
static int l_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    (void)l, (void)a;
    return plast_err_set(e, PLAST_E_UNSUPPORTED, "fuzz");
}
static int l_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                     const plast_ctx *ctx, plast_err *e)
{
    (void)l, (void)x, (void)y, (void)ctx;
    return plast_err_set(e, PLAST_E_UNSUPPORTED, "fuzz");
}
static int l_backward(plast_layer *l, const plast_tensor *x, const plast_tensor *y,
                      const plast_tensor *dy, plast_tensor *dx, const plast_ctx *ctx,
                      plast_err *e)
{
    (void)l, (void)x, (void)y, (void)dy, (void)dx, (void)ctx;
    return plast_err_set(e, PLAST_E_UNSUPPORTED, "fuzz");
}
static int s_eval(const plast_tensor *p, const int32_t *l, double *loss, plast_tensor *g,
                  plast_err *e)
{
    (void)p, (void)l, (void)loss, (void)g;
    return plast_err_set(e, PLAST_E_UNSUPPORTED, "fuzz");
}

static const plast_rule_ops *rule(src *s, pool *pl)
{
    plast_rule_ops o;
    uint8_t cb = u8(s);
    memset(&o, 0, sizeof o);
    o.size = maybe(s, sizeof o);
    o.name = str(s, pl);
    o.settings = schema(s, pl);
    o.summary = str(s, pl);
    o.create = cb & 1 ? NULL : r_create;
    o.train_batch = cb & 2 ? NULL : r_train;
    o.destroy = cb & 4 ? NULL : r_destroy;
    return declared(pl, &o, sizeof o, o.size, sizeof o.size);
}

static const plast_layer_ops *layer(src *s, pool *pl)
{
    plast_layer_ops o;
    uint8_t cb = u8(s);
    memset(&o, 0, sizeof o);
    o.size = maybe(s, sizeof o);
    o.name = str(s, pl);
    o.settings = schema(s, pl);
    o.flags = u8(s);
    o.create = cb & 1 ? NULL : l_create;
    o.forward = cb & 2 ? NULL : l_forward;
    o.backward = cb & 4 ? NULL : l_backward;
    return declared(pl, &o, sizeof o, o.size, sizeof o.size);
}

static const plast_loss_ops *loss(src *s, pool *pl)
{
    plast_loss_ops o;
    memset(&o, 0, sizeof o);
    o.size = maybe(s, sizeof o);
    o.name = str(s, pl);
    o.settings = schema(s, pl);
    o.eval = u8(s) & 1 ? NULL : s_eval;
    return declared(pl, &o, sizeof o, o.size, sizeof o.size);
}

/* A NULL-terminated table of up to MAX_ENTRIES, or NULL. */
#define TABLE(T, make)                                                        \
    static const T *const *make##_table(src *s, pool *pl)                     \
    {                                                                         \
        uint8_t n = u8(s);                                                    \
        if (n == 255)                                                         \
            return NULL;                                                      \
        n %= MAX_ENTRIES + 1;                                                 \
        const T **t = pool_alloc(pl, ((size_t)n + 1) * sizeof *t);            \
        for (int i = 0; i < n; i++)                                           \
            t[i] = make(s, pl);                                               \
        return t;                                                             \
    }
TABLE(plast_rule_ops, rule)
TABLE(plast_layer_ops, layer)
TABLE(plast_loss_ops, loss)

/* Accepted schemas must have defaults that parse. */
static void defaults_of(const plast_setting *set)
{
    plast_args *a;
    plast_err e;
    if (!set)
        return;
    if (plast_args_defaults(&a, set, &e))
        abort();
    plast_args_destroy(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    src s = {data, size};
    pool *pl = calloc(1, sizeof *pl);
    plast_plugin d;
    plast_err e;
    if (!pl)
        return 0;
    memset(&d, 0, sizeof d);
    d.magic = maybe(&s, PLAST_PLUGIN_MAGIC);
    d.abi = maybe(&s, PLAST_ABI_VERSION);
    d.size = maybe(&s, sizeof d);
    d.real_size = maybe(&s, sizeof(plast_real));
    d.name = str(&s, pl);
    d.version = str(&s, pl);
    d.summary = str(&s, pl);
    d.license = str(&s, pl);
    const char *base = u8(&s) & 1 && d.name ? d.name : str(&s, pl);
    d.rules = rule_table(&s, pl);
    d.layers = layer_table(&s, pl);
    d.losses = loss_table(&s, pl);
    /* magic, abi, size and real_size come before the size check */
    const plast_plugin *p = declared(pl, &d, sizeof d, d.size, offsetof(plast_plugin, name));
    if (plast_plugin_check(p, "fuzz/plugin.so", base ? base : "", &e) == 0) {
        for (int i = 0; d.rules && d.rules[i]; i++)
            defaults_of(d.rules[i]->settings);
        for (int i = 0; d.layers && d.layers[i]; i++)
            defaults_of(d.layers[i]->settings);
        for (int i = 0; d.losses && d.losses[i]; i++)
            defaults_of(d.losses[i]->settings);
    }
    pool_free(pl);
    free(pl);
    return 0;
}
