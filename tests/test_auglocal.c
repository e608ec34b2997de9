/* test_auglocal.c - the AugLocal plan (ALGORITHMS.md §6.5 tables, the
 * stride rule), auxiliary nets built from a model's own layers (ResNet,
 * VGG-style, dense-only), and the plug-in: isolation of the modules,
 * equality with backpropagation for one module, step = module against
 * step = batch, the exported model, memory, resume and refusals. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <fenv.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <plast/auxnet.h>

#include "testutil.h"

/* ---- the plan: tables of §6.5 ---- */

typedef struct table_row {
    const char *net;
    int L, d, pyramid;
    int K;
    int depth_hi, n_hi, depth_lo, n_lo; /* depths: n_hi times depth_hi, then n_lo depth_lo */
    int S[3][3];                        /* S_0, S_1, S_2 */
    int nS;                             /* entries per S_l */
} table_row;

static const table_row rows[] = {
    {"ResNet-20 d=2", 10, 2, 0, 8, 2, 7, 0, 0, {{4, 9}, {5, 9}, {6, 9}}, 2},
    {"ResNet-32 d=2", 16, 2, 0, 14, 2, 13, 0, 0, {{8, 15}, {8, 15}, {8, 15}}, 2},
    {"ResNet-32 d=3 pyramid", 16, 3, 1, 13, 3, 6, 2, 6, {{5, 10, 15}, {6, 10, 15}, {6, 11, 15}},
     3},
    {"ResNet-110 d=3 pyramid", 55, 3, 1, 52, 3, 25, 2, 26,
     {{18, 36, 54}, {19, 36, 54}, {19, 37, 54}}, 3},
};

/* The plan of a row by some rounding function: depths and S_0..S_2. */
typedef double (*rounding)(double);

static int depth_by(rounding rnd, const table_row *r, int l)
{
    int K = r->L - r->d;
    if (!r->pyramid || K <= 2)
        return r->d;
    double q = ((double)l * 0.5) / (double)(K - 2);
    double v = rnd((double)r->d * (1.0 - q) + q);
    return v < 1 ? 1 : (int)v;
}

static int select_by(rounding rnd, int L, int l, int dl, int *out)
{
    int n = 0;
    if (dl >= L - 1 - l) {
        for (int j = l + 1; j < L; j++)
            out[n++] = j;
        return n;
    }
    for (int i = 1; i <= dl; i++)
        out[n++] = (int)rnd((double)l + (double)(L - l - 1) / (double)dl * (double)i);
    return n;
}

/* Does a plan computed with `rnd` reproduce the row? */
static int row_matches(rounding rnd, const table_row *r)
{
    int nloc = r->K - 1;
    for (int l = 0; l < nloc; l++) {
        int want = l < r->n_hi ? r->depth_hi : r->depth_lo;
        if (depth_by(rnd, r, l) != want)
            return 0;
    }
    for (int l = 0; l < 3; l++) {
        int s[8], n = select_by(rnd, r->L, l, depth_by(rnd, r, l), s);
        if (n != r->nS || memcmp(s, r->S[l], (size_t)n * sizeof *s) != 0)
            return 0;
    }
    return 1;
}

static double lround_double(double x) { return (double)lround(x); }

Test(auglocal_plan, selection_and_depth_tables)
{
    for (size_t t = 0; t < sizeof rows / sizeof rows[0]; t++) {
        const table_row *r = &rows[t];
        cr_expect(eq(int, r->L - r->d, r->K), "%s: K", r->net);
        cr_expect(eq(int, plast_auglocal_modules(r->L, r->d), r->K - 1), "%s: modules", r->net);
        cr_expect(eq(int, r->n_hi + r->n_lo, r->K - 1), "%s: table", r->net);
        for (int l = 0; l < r->K - 1; l++) {
            int want = l < r->n_hi ? r->depth_hi : r->depth_lo;
            cr_expect(eq(int, plast_auglocal_depth(r->L, r->d, r->pyramid, 0.5, l), want),
                      "%s: depth of layer %d", r->net, l);
        }
        for (int l = 0; l < 3; l++) {
            int s[8], dl = plast_auglocal_depth(r->L, r->d, r->pyramid, 0.5, l);
            int n = plast_auglocal_select(r->L, l, dl, PLAST_AUX_UNIFORM, s);
            cr_expect(eq(int, n, r->nS), "%s: |S_%d|", r->net, l);
            for (int i = 0; i < n && i < r->nS; i++)
                cr_expect(eq(int, s[i], r->S[l][i]), "%s: S_%d[%d]", r->net, l, i);
        }
        /* the test's own copy of the formulas reproduces the table with
         * banker's rounding... */
        cr_expect(row_matches(plast_round_half_even, r) != 0, "%s: half-even", r->net);
    }
    /* ...and lround fails where §6.5 says: S_2 = [9,15] for ResNet-32 d=2,
     * 3 x 26 depths for ResNet-110 */
    cr_expect(eq(int, row_matches(lround_double, &rows[1]), 0));
    cr_expect(eq(int, row_matches(lround_double, &rows[3]), 0));
    int s[4];
    select_by(lround_double, 16, 2, 2, s);
    cr_expect(eq(int, s[0], 9));
    cr_expect(eq(int, depth_by(lround_double, &rows[3], 25), 3));
    cr_expect(eq(int, plast_auglocal_depth(55, 3, 1, 0.5, 25), 2));
}

Test(auglocal_plan, rounding_is_half_to_even_in_any_mode)
{
    const double x[] = {0.5, 1.5, 2.5, 8.5, -0.5, -1.5, 2.4999, 2.5001, 3.0, 1e6 + 0.5};
    const double want[] = {0, 2, 2, 8, -0.0, -2, 2, 3, 3, 1e6};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) {
        cr_expect(eq(dbl, plast_round_half_even(x[i]), want[i]), "round(%g)", x[i]);
        cr_expect(eq(dbl, plast_round_half_even(x[i]), rint(x[i])), "rint(%g)", x[i]);
    }
    int saved = fegetround();
    fesetround(FE_UPWARD);
    cr_expect(eq(dbl, plast_round_half_even(2.5), 2.0));
    cr_expect(eq(int, plast_auglocal_depth(55, 3, 1, 0.5, 25), 2));
    fesetround(saved);
}

Test(auglocal_plan, greedy_sequential_and_edges)
{
    int s[8];
    /* d = 0: head only, every layer but the last is local, no pyramid */
    cr_expect(eq(int, plast_auglocal_modules(10, 0), 9));
    cr_expect(eq(int, plast_auglocal_depth(10, 0, 1, 0.5, 3), 0));
    cr_expect(eq(int, plast_auglocal_select(10, 3, 0, PLAST_AUX_UNIFORM, s), 0));
    /* d = L-1: one module, no local layer */
    cr_expect(eq(int, plast_auglocal_modules(10, 9), 0));
    /* K = 2: the single local layer gets d */
    cr_expect(eq(int, plast_auglocal_depth(5, 3, 1, 0.5, 0), 3));
    /* d_l >= L-1-l: every layer above */
    cr_expect(eq(int, plast_auglocal_select(5, 2, 3, PLAST_AUX_UNIFORM, s), 2));
    cr_expect(s[0] == 3 && s[1] == 4);
    /* sequential: the next d_l layers */
    cr_expect(eq(int, plast_auglocal_select(10, 2, 3, PLAST_AUX_SEQUENTIAL, s), 3));
    cr_expect(s[0] == 3 && s[1] == 4 && s[2] == 5);
    cr_expect(eq(int, plast_auglocal_select(10, 7, 3, PLAST_AUX_SEQUENTIAL, s), 2));
    cr_expect(s[0] == 8 && s[1] == 9);
}

/* The reference code's width counter (§6.2) against the stride rule on
 * heights, for ResNets whose stages halve the resolution while doubling
 * the width: the same strides for every layer, depth and pyramid. */
static void reference_strides(const int *width, int l, const int *sel, int n, int *stride)
{
    int pending = 0, planes = width[l];
    for (int i = 0; i < n; i++) {
        int q = width[sel[i]] / planes;
        pending += q >= 1 ? (int)log2((double)q) : 0;
        stride[i] = pending >= 1 ? 2 : 1;
        pending -= stride[i] == 2;
        planes = width[sel[i]];
    }
}

static void height_strides(const int *height, int l, const int *sel, int n, int *stride)
{
    int h = height[l];
    for (int i = 0; i < n; i++) {
        stride[i] = plast_auglocal_stride(h, height[sel[i]]);
        h = stride[i] == 2 ? (h + 1) / 2 : h;
    }
}

Test(auglocal_plan, stride_rule_equals_the_width_counter_on_resnets)
{
    const int nblocks[] = {3, 5, 18}, sizes[] = {28, 32};
    for (int a = 0; a < 3; a++)
        for (int z = 0; z < 2; z++) {
            int L = 1 + 3 * nblocks[a], width[64], height[64];
            width[0] = 16, height[0] = sizes[z];
            for (int j = 1; j < L; j++) {
                int stage = (j - 1) / nblocks[a];
                width[j] = 16 << stage;
                height[j] = stage == 0 ? sizes[z] : (height[j - 1] + (width[j] > width[j - 1]));
                if (width[j] > width[j - 1])
                    height[j] = (height[j - 1] + 1) / 2;
                else if (stage > 0)
                    height[j] = height[j - 1];
            }
            for (int d = 1; d < 6; d++)
                for (int pyr = 0; pyr < 2; pyr++)
                    for (int l = 0; l < plast_auglocal_modules(L, d); l++) {
                        int sel[64], s1[64], s2[64];
                        int dl = plast_auglocal_depth(L, d, pyr, 0.5, l);
                        int n = plast_auglocal_select(L, l, dl, PLAST_AUX_UNIFORM, sel);
                        reference_strides(width, l, sel, n, s1);
                        height_strides(height, l, sel, n, s2);
                        cr_expect(memcmp(s1, s2, (size_t)n * sizeof *s1) == 0,
                                  "L %d, %dx%d, d %d, pyramid %d, layer %d", L, sizes[z],
                                  sizes[z], d, pyr, l);
                    }
        }
}

/* ---- nets ---- */

/* A ResNet in the INI language: stem conv-bn-relu, three stages of n
 * BasicBlocks at w, 2w, 4w channels (stride 2 entering stages 2 and 3),
 * gap, dense to `classes`; `tail` (optimizer, rule sections) appended. */
static char *resnet_ini_classes(int n, int w, int classes, const char *tail)
{
    size_t cap = 4096 + (size_t)n * 3 * 700 + strlen(tail);
    char *buf = malloc(cap), *p = buf;
    cr_assert(buf != NULL);
    p += sprintf(p, "[layer.stem]\ntype = conv2d\nchannels = %d\nkernel = 3\npadding = 1\n"
                    "bias = false\n[layer.stemn]\ntype = batchnorm\n[layer.stema]\ntype = relu\n",
                 w);
    char prev[32] = "stema";
    int k = 0;
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < n; i++) {
            int ch = w << s, stride = i == 0 && s > 0 ? 2 : 1;
            k++;
            p += sprintf(p,
                         "[layer.b%dc1]\ntype = conv2d\nchannels = %d\nkernel = 3\npadding = 1\n"
                         "stride = %d\nbias = false\nblock = b%d\n"
                         "[layer.b%dn1]\ntype = batchnorm\nblock = b%d\n"
                         "[layer.b%da1]\ntype = relu\nblock = b%d\n"
                         "[layer.b%dc2]\ntype = conv2d\nchannels = %d\nkernel = 3\npadding = 1\n"
                         "bias = false\nblock = b%d\n"
                         "[layer.b%dn2]\ntype = batchnorm\nblock = b%d\n"
                         "[layer.b%dadd]\ntype = add\nfrom = %s\nshortcut = %s\nblock = b%d\n"
                         "[layer.b%dout]\ntype = relu\nblock = b%d\n",
                         k, ch, stride, k, k, k, k, k, k, ch, k, k, k, k, prev,
                         stride == 2 ? "conv1x1" : "identity", k, k, k);
            snprintf(prev, sizeof prev, "b%dout", k);
        }
    sprintf(p, "[layer.pool]\ntype = gap\n[layer.out]\ntype = dense\nunits = %d\n%s", classes,
            tail);
    return buf;
}

static char *resnet_ini(int n, int w, const char *tail)
{
    return resnet_ini_classes(n, w, 4, tail);
}

/* VGG-style: conv-bn-relu blocks, max pooling closing the 2nd and 4th,
 * gap, a dense hidden layer and the output (a two-block head). */
static const char *const vgg_ini =
    "[layer.c1]\ntype = conv2d\nchannels = 4\nkernel = 3\npadding = 1\n"
    "[layer.n1]\ntype = batchnorm\n[layer.a1]\ntype = relu\n"
    "[layer.c2]\ntype = conv2d\nchannels = 4\nkernel = 3\npadding = 1\n"
    "[layer.n2]\ntype = batchnorm\n[layer.a2]\ntype = relu\n"
    "[layer.p2]\ntype = maxpool\nkernel = 2\n"
    "[layer.c3]\ntype = conv2d\nchannels = 8\nkernel = 3\npadding = 1\n"
    "[layer.n3]\ntype = batchnorm\n[layer.a3]\ntype = relu\n"
    "[layer.c4]\ntype = conv2d\nchannels = 8\nkernel = 3\npadding = 1\n"
    "[layer.n4]\ntype = batchnorm\n[layer.a4]\ntype = relu\n"
    "[layer.p4]\ntype = maxpool\nkernel = 2\n"
    "[layer.c5]\ntype = conv2d\nchannels = 16\nkernel = 3\npadding = 1\n"
    "[layer.n5]\ntype = batchnorm\n[layer.a5]\ntype = relu\n"
    "[layer.flat]\ntype = flatten\n"
    "[layer.fc]\ntype = dense\nunits = 12\n[layer.fa]\ntype = relu\n"
    "[layer.out]\ntype = dense\nunits = 4\n"
    "[optimizer]\ntype = momentum\nlr = 0.05\n"
    "[rule.auglocal]\naux_depth = 2\npyramid = false\n";

static const char *const mlp_ini =
    "[layer.h1]\ntype = dense\nunits = 24\n[layer.a1]\ntype = tanh\n"
    "[layer.h2]\ntype = dense\nunits = 16\n[layer.a2]\ntype = tanh\n"
    "[layer.h3]\ntype = dense\nunits = 16\n[layer.a3]\ntype = tanh\n"
    "[layer.out]\ntype = dense\nunits = 4\n"
    "[optimizer]\ntype = adam\nlr = 0.01\n"
    "[rule.auglocal]\naux_depth = 1\n";

/* Deterministic inputs in [-1, 1) and labels in [0, 4). */
static void fill_batch(float *x, int32_t *y, int batch, size_t features, uint32_t which)
{
    plast_rng r;
    plast_rng_stream(&r, 1234, PLAST_STREAM_DATA, which);
    for (size_t i = 0; i < (size_t)batch * features; i++)
        x[i] = plast_rng_uniform(&r, -1.0f, 1.0f);
    for (int i = 0; i < batch; i++)
        y[i] = (int32_t)plast_rng_below(&r, 4);
}

/* `steps` training steps on batches 0, 1, ... of `batch` samples. */
static plast_stats train_steps(tu_net *n, int steps, int batch)
{
    size_t f = plast_shape_size(&n->in);
    float *x = malloc((size_t)batch * f * sizeof *x);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    cr_assert(x && y);
    plast_stats st = {0, 0, 0};
    for (int s = 0; s < steps; s++) {
        fill_batch(x, y, batch, f, (uint32_t)s);
        st = tu_step(n, x, y, batch, (int)f);
    }
    free(x);
    free(y);
    return st;
}

static const plast_shape img8 = {3, {1, 8, 8}};
static const plast_shape img16 = {3, {1, 16, 16}};

static int same_floats(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

/* Every stored value of the model (weights and buffers), flat. */
static float *all_values(plast_model *m, size_t *count)
{
    size_t n = 0;
    for (int i = 0; i < plast_model_nlayers(m); i++)
        for (int p = 0; p < plast_model_layer(m, i)->nparams; p++)
            n += plast_model_layer(m, i)->param[p].count;
    float *v = malloc((n ? n : 1) * sizeof *v), *q = v;
    cr_assert(v != NULL);
    for (int i = 0; i < plast_model_nlayers(m); i++)
        for (int p = 0; p < plast_model_layer(m, i)->nparams; p++) {
            const plast_param *pa = &plast_model_layer(m, i)->param[p];
            memcpy(q, pa->w, pa->count * sizeof *q);
            q += pa->count;
        }
    *count = n;
    return v;
}

/* ---- auxiliary nets built from the model's layers ---- */

/* Output shape of copy `pos` in an auxiliary net (its last a<pos>_ layer). */
static const plast_shape *copy_out(plast_model *g, int pos)
{
    char prefix[16];
    int n = snprintf(prefix, sizeof prefix, "a%d_", pos);
    const plast_shape *s = NULL;
    for (int i = 0; i < plast_model_nlayers(g); i++)
        if (!strncmp(plast_model_layer(g, i)->name, prefix, (size_t)n))
            s = &plast_model_layer(g, i)->out;
    cr_assert(s != NULL, "no copy %d", pos);
    return s;
}

static const plast_shape *block_out(plast_model *m, int k)
{
    return &plast_model_layer(m, plast_model_block(m, k)->last)->out;
}

/* The output of the last image layer of block k (before a gap). */
static const plast_shape *block_image_out(plast_model *m, int k)
{
    const plast_block *b = plast_model_block(m, k);
    const plast_shape *s = block_out(m, k);
    for (int i = b->first; i <= b->last; i++)
        if (plast_model_layer(m, i)->out.ndim == 3)
            s = &plast_model_layer(m, i)->out;
    return s;
}

/* For every local layer of depth d: G_l's copies have the primary's
 * widths and the heights of the stride rule (one halving per copy at
 * most, so a copy that skips two stages stays one halving behind, as in
 * the reference code), adds have a 1x1 shortcut exactly when their inputs
 * differ, the head is gap -> [batchnorm iff d_l <= 1] -> dense. */
static void check_aux_shapes(plast_model *m, int d, int pyramid)
{
    plast_err e;
    int L = plast_auglocal_layers(m);
    for (int l = 0; l < plast_auglocal_modules(L, d); l++) {
        int sel[64], dl = plast_auglocal_depth(L, d, pyramid, 0.5, l);
        int n = plast_auglocal_select(L, l, dl, PLAST_AUX_UNIFORM, sel);
        plast_model *g;
        CHECK_OK(plast_auxnet_create(&g, m, l, sel, n, dl <= 1, &e), e);
        cr_expect(plast_shape_equal(plast_model_input_shape(g), block_out(m, l)) != 0);
        int height[64], stride[64];
        for (int k = 0; k < L; k++)
            height[k] = block_image_out(m, k)->dim[1];
        height_strides(height, l, sel, n, stride);
        int h = height[l];
        for (int i = 0; i < n; i++) {
            char s1[32];
            const plast_shape *got = copy_out(g, i), *prim = block_image_out(m, sel[i]);
            h = stride[i] == 2 ? (h + 1) / 2 : h;
            plast_shape want = {3, {prim->dim[0], h, h}};
            cr_expect(plast_shape_equal(got, &want) != 0, "layer %d copy %d: %s, expected %dx%dx%d",
                      l, i, plast_shape_str(got, s1, sizeof s1), want.dim[0], h, h);
            cr_expect(h >= prim->dim[1], "layer %d copy %d went below the primary", l, i);
        }
        for (int i = 0; i < plast_model_nlayers(g); i++) {
            const plast_layer *x = plast_model_layer(g, i);
            if (strcmp(x->ops->name, "add") == 0)
                cr_expect(eq(int, x->nparams, plast_shape_equal(&x->in, &x->in2) ? 0 : 1),
                          "%s", x->name);
            cr_expect(strcmp(x->ops->name, "maxpool") != 0, "%s: a pool was copied", x->name);
        }
        int last = plast_model_nlayers(g) - 1;
        cr_expect(eq(str, (char *)plast_model_layer(g, last)->name, "head_out"));
        cr_expect(eq(int, plast_model_find_layer(g, "head_bn") >= 0, dl <= 1));
        cr_expect(plast_model_find_layer(g, "head_gap") >= 0);
        plast_model_destroy(g);
    }
}

Test(auxnet, resnet_copies_follow_the_primary)
{
    char *ini = resnet_ini(2, 4, "[optimizer]\ntype = sgd\n");
    tu_net n;
    tu_net_init_shape(&n, ini, &img16, 4, "bp", 5);
    cr_assert(eq(int, plast_auglocal_layers(n.model), 7)); /* stem, b1..b6 | out */
    for (int d = 0; d <= 3; d++) {
        check_aux_shapes(n.model, d, 0);
        check_aux_shapes(n.model, d, 1);
    }
    tu_net_fini(&n);
    free(ini);
}

static size_t trained_params(plast_model *g)
{
    size_t n = 0;
    for (int i = 0; i < plast_model_nlayers(g); i++)
        for (int p = 0; p < plast_model_layer(g, i)->nparams; p++)
            if (!(plast_model_layer(g, i)->param[p].flags & PLAST_PARAM_BUFFER))
                n += plast_model_layer(g, i)->param[p].count;
    return n;
}

/* §6.4's parameter growth, counted from the reference code's layers:
 * ResNet-32 (0.467M) +1.34M with d = 2, +1.51M with d = 3 (pyramid);
 * ResNet-110 (1.73M) +7.24M with d = 3 (pyramid).  plast's 1x1 shortcut
 * has no batchnorm: 2 C values per projection are added back. */
Test(auxnet, parameter_growth_matches_the_paper)
{
    const struct {
        int n, d, pyramid;
        double primary, growth; /* millions */
    } nets[] = {{5, 2, 0, 0.467, 1.34}, {5, 3, 1, 0.467, 1.51}, {18, 3, 1, 1.73, 7.24}};
    const plast_shape cifar = {3, {3, 32, 32}};
    for (int t = 0; t < 3; t++) {
        char *ini = resnet_ini_classes(nets[t].n, 16, 10, "[optimizer]\ntype = sgd\n");
        tu_net n;
        plast_err e;
        tu_net_init_shape(&n, ini, &cifar, 10, "bp", 1);
        plast_model *m = n.model;
        int L = plast_auglocal_layers(m);
        cr_assert(eq(int, L, 3 * nets[t].n + 1));
        size_t primary = trained_params(m), aux = 0, projection_bn = 0;
        for (int i = 0; i < plast_model_nlayers(m); i++)
            if (plast_model_layer(m, i)->nparams && !strcmp(plast_model_layer(m, i)->ops->name, "add"))
                projection_bn += 2 * (size_t)plast_model_layer(m, i)->out.dim[0];
        for (int l = 0; l < plast_auglocal_modules(L, nets[t].d); l++) {
            int sel[64], dl = plast_auglocal_depth(L, nets[t].d, nets[t].pyramid, 0.5, l);
            int k = plast_auglocal_select(L, l, dl, PLAST_AUX_UNIFORM, sel);
            plast_model *g;
            CHECK_OK(plast_auxnet_create(&g, m, l, sel, k, dl <= 1, &e), e);
            aux += trained_params(g);
            for (int i = 0; i < plast_model_nlayers(g); i++)
                if (plast_model_layer(g, i)->nparams &&
                    !strcmp(plast_model_layer(g, i)->ops->name, "add"))
                    aux += 2 * (size_t)plast_model_layer(g, i)->out.dim[0];
            plast_model_destroy(g);
        }
        double p = (double)(primary + projection_bn) / 1e6, a = (double)aux / 1e6;
        cr_log_info("ResNet-%d d=%d%s: primary %.4fM, auxiliary +%.4fM", 6 * nets[t].n + 2,
                    nets[t].d, nets[t].pyramid ? " pyramid" : "", p, a);
        cr_expect(fabs(p - nets[t].primary) < 0.006, "primary %.4fM", p);
        cr_expect(fabs(a - nets[t].growth) < 0.006, "growth %.4fM, the paper %.2fM", a,
                  nets[t].growth);
        tu_net_fini(&n);
        free(ini);
    }
}

Test(auxnet, vgg_copies_drop_pools_and_stride_instead)
{
    tu_net n;
    tu_net_init_shape(&n, vgg_ini, &img16, 4, "bp", 5);
    /* c1 | c2+pool | c3 | c4+pool | c5+flatten || fc | out */
    cr_assert(eq(int, plast_model_nblocks(n.model), 7));
    cr_assert(eq(int, plast_auglocal_layers(n.model), 5));
    for (int d = 0; d <= 3; d++)
        check_aux_shapes(n.model, d, 0);
    tu_net_fini(&n);
}

Test(auxnet, dense_copies_and_init_streams)
{
    plast_err e;
    tu_net n;
    tu_net_init(&n, mlp_ini, 10, 4, "bp", 5);
    cr_assert(eq(int, plast_auglocal_layers(n.model), 3)); /* h1 h2 h3 | out */
    int sel[2] = {1, 2};
    plast_model *g, *g2;
    CHECK_OK(plast_auxnet_create(&g, n.model, 0, sel, 2, 0, &e), e);
    /* a0_h2 a0_a2 a1_h3 a1_a3 head_out: no gap on features */
    cr_assert(eq(int, plast_model_nlayers(g), 5));
    cr_expect(eq(int, plast_model_find_layer(g, "head_gap"), -1));
    cr_expect(eq(int, plast_model_layer(g, 0)->out.dim[0], 16));
    /* fresh weights from the net's own streams: not the primary's copy */
    const plast_param *pw = &plast_model_layer(n.model, 2)->param[0];
    const plast_param *gw = &plast_model_layer(g, 0)->param[0];
    cr_assert(eq(sz, pw->count, gw->count));
    cr_expect(same_floats(pw->w, gw->w, pw->count) == 0);
    /* another local layer, other streams */
    int sel2[1] = {2};
    CHECK_OK(plast_auxnet_create(&g2, n.model, 1, sel2, 1, 1, &e), e);
    cr_expect(same_floats(plast_model_layer(g2, 0)->param[0].w, gw->w, 16 * 16) == 0);
    plast_model_destroy(g2);
    plast_model_destroy(g);
    tu_net_fini(&n);
}

/* ---- the plug-in ---- */

static tu_net auglocal_net(const char *ini, const plast_shape *in, uint64_t seed)
{
    tu_net n;
    tu_net_init_shape(&n, ini, in, 4, "auglocal", seed);
    tu_net_create_rule(&n);
    return n;
}

/* Perturbing every block above layer l leaves block l's update and its
 * auxiliary net's untouched, bit for bit. */
Test(auglocal, modules_are_isolated)
{
    char *ini = resnet_ini(1, 4, "[optimizer]\ntype = nesterov\nlr = 0.05\n"
                                 "[rule.auglocal]\naux_depth = 1\n");
    tu_net ref = auglocal_net(ini, &img8, 3);
    plast_model *m = ref.model;
    int L = plast_auglocal_layers(m), K = plast_model_nblocks(m);
    cr_assert(eq(int, L, 4));
    train_steps(&ref, 2, 6);
    int nloc = plast_auglocal_modules(L, 1);
    for (int l = 0; l < nloc; l++) {
        tu_net n;
        tu_net_init_shape(&n, ini, &img8, 4, "auglocal", 3);
        const plast_block *above = plast_model_block(n.model, l + 1);
        float *w = plast_model_weights(n.model);
        for (size_t i = above->param_begin; i < plast_model_nparams(n.model); i++)
            w[i] += 0.01f;
        tu_net_create_rule(&n);
        train_steps(&n, 2, 6);
        const plast_block *b = plast_model_block(m, l);
        size_t len = b->param_end - b->param_begin;
        cr_expect(same_floats(plast_model_weights(m) + b->param_begin,
                              plast_model_weights(n.model) + b->param_begin, len) != 0,
                  "layer %d changed when the layers above it did", l);
        const plast_block *top = plast_model_block(m, K - 1);
        cr_expect(same_floats(plast_model_weights(m) + top->param_begin,
                              plast_model_weights(n.model) + top->param_begin,
                              top->param_end - top->param_begin) == 0,
                  "the perturbation did not reach the head");
        tu_net_fini(&n);
    }
    tu_net fresh;
    tu_net_init_shape(&fresh, ini, &img8, 4, "bp", 3);
    cr_expect(same_floats(plast_model_weights(fresh.model), plast_model_weights(m),
                          plast_model_block(m, 0)->param_end) == 0,
              "layer 0 did not learn");
    tu_net_fini(&fresh);
    tu_net_fini(&ref);
    free(ini);
}

/* d = L-1: one module trained by backpropagation, the bits of bp. */
Test(auglocal, one_module_is_backpropagation)
{
    char *ini = resnet_ini(1, 4, "[optimizer]\ntype = nesterov\nlr = 0.05\nweight_decay = 0.001\n"
                                 "[rule.auglocal]\naux_depth = 3\n");
    tu_net a = auglocal_net(ini, &img8, 7), b;
    tu_net_init_shape(&b, ini, &img8, 4, "bp", 7);
    tu_net_create_rule(&b);
    cr_expect(eq(sz, a.ops->aux_params(a.rule), 0));
    plast_stats sa = train_steps(&a, 3, 6), sb = train_steps(&b, 3, 6);
    cr_expect(eq(dbl, sa.loss, sb.loss));
    size_t na, nb;
    float *va = all_values(a.model, &na), *vb = all_values(b.model, &nb);
    cr_assert(eq(sz, na, nb));
    cr_expect(same_floats(va, vb, na) != 0, "auglocal with d = L-1 differs from bp");
    free(va);
    free(vb);
    tu_net_fini(&a);
    tu_net_fini(&b);
    free(ini);
}

/* One layer and a dense head: L = 1, so the only depth is 0 and the one
 * module is the whole net, trained by backpropagation. */
Test(auglocal, one_layer_and_a_linear_head_is_backpropagation)
{
    static const char *const ini = "[layer.h1]\ntype = dense\nunits = 6\n[layer.a1]\ntype = relu\n"
                                   "[layer.out]\ntype = dense\nunits = 4\n"
                                   "[optimizer]\ntype = momentum\nlr = 0.1\n"
                                   "[rule.auglocal]\naux_depth = 0\n";
    tu_net a, b;
    tu_net_init(&a, ini, 5, 4, "auglocal", 4);
    tu_net_init(&b, ini, 5, 4, "bp", 4);
    tu_net_create_rule(&a);
    tu_net_create_rule(&b);
    cr_assert(eq(int, plast_auglocal_layers(a.model), 1));
    train_steps(&a, 3, 8);
    train_steps(&b, 3, 8);
    cr_expect(same_floats(plast_model_weights(a.model), plast_model_weights(b.model),
                          plast_model_nparams(a.model)) != 0);
    tu_net_fini(&a);
    tu_net_fini(&b);
}

/* Greedy on a two-layer MLP: layer 0 with its head-only auxiliary net is
 * plain backpropagation through [h1, a1, batchnorm, dense]. */
Test(auglocal, local_module_is_backpropagation_through_its_aux_net)
{
    static const char *const two = "[layer.h1]\ntype = dense\nunits = 6\n[layer.a1]\ntype = tanh\n"
                                   "[layer.h2]\ntype = dense\nunits = 5\n[layer.a2]\ntype = tanh\n"
                                   "[layer.out]\ntype = dense\nunits = 4\n"
                                   "[optimizer]\ntype = sgd\nlr = 0.1\n"
                                   "[rule.auglocal]\naux_depth = 0\n";
    static const char *const joint = "[layer.h1]\ntype = dense\nunits = 6\n[layer.a1]\ntype = tanh\n"
                                     "[layer.head_bn]\ntype = batchnorm\n"
                                     "[layer.head_out]\ntype = dense\nunits = 4\n"
                                     "[optimizer]\ntype = sgd\nlr = 0.1\n";
    plast_err e;
    tu_net a, b;
    tu_net_init(&a, two, 5, 4, "auglocal", 9);
    tu_net_init(&b, joint, 5, 4, "bp", 9);
    tu_net_create_rule(&a);
    tu_net_create_rule(&b);
    cr_assert(eq(int, plast_auglocal_layers(a.model), 2)); /* h1, h2 | out */
    /* the aux net is rebuilt here with the rule's streams to copy its weights */
    plast_model *g;
    CHECK_OK(plast_auxnet_create(&g, a.model, 0, NULL, 0, 1, &e), e);
    memcpy(plast_model_layer(b.model, 0)->param[0].w, plast_model_layer(a.model, 0)->param[0].w,
           30 * sizeof(float));
    memcpy(plast_model_layer(b.model, 0)->param[1].w, plast_model_layer(a.model, 0)->param[1].w,
           6 * sizeof(float));
    plast_layer *gd = plast_model_layer(g, 1), *bd = plast_model_layer(b.model, 3);
    memcpy(bd->param[0].w, gd->param[0].w, 24 * sizeof(float));
    memcpy(bd->param[1].w, gd->param[1].w, 4 * sizeof(float));
    train_steps(&a, 3, 8);
    train_steps(&b, 3, 8);
    cr_expect(same_floats(plast_model_layer(a.model, 0)->param[0].w,
                          plast_model_layer(b.model, 0)->param[0].w, 30) != 0,
              "h1 differs from backpropagation through h1 and its auxiliary net");
    plast_model_destroy(g);
    tu_net_fini(&a);
    tu_net_fini(&b);
}

/* ---- step = module against step = batch ---- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    tu_make_tmpdir(tmpdir, sizeof tmpdir, "auglocal");
}

static void remove_tmpdir(void)
{
    tu_remove_tmpdir(tmpdir);
}

/* The rule's checkpoint state as bytes (malloc'd). */
static unsigned char *rule_state(tu_net *n, const char *name, size_t *len)
{
    plast_err e;
    char path[128];
    snprintf(path, sizeof path, "%s/%s.ckpt", tmpdir, name);
    plast_writer *w;
    CHECK_OK(plast_writer_create(&w, &e), e);
    CHECK_OK(plast_writer_chunk(w, "RULE", &e), e);
    CHECK_OK(n->ops->save_state(n->rule, w, &e), e);
    CHECK_OK(plast_writer_commit(w, path, &e), e);
    plast_writer_destroy(w);
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    unsigned char *buf = malloc(*len);
    cr_assert(buf && fread(buf, 1, *len, f) == *len);
    fclose(f);
    return buf;
}

Test(auglocal, step_per_module_equals_step_per_batch, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *tails[2] = {"[optimizer]\ntype = nesterov\nlr = 0.05\nweight_decay = 0.001\n"
                            "[rule.auglocal]\naux_depth = 2\nstep = module\n",
                            "[optimizer]\ntype = nesterov\nlr = 0.05\nweight_decay = 0.001\n"
                            "[rule.auglocal]\naux_depth = 2\nstep = batch\n"};
    tu_net n[2];
    float *v[2];
    size_t nv[2], ns[2];
    unsigned char *state[2];
    for (int i = 0; i < 2; i++) {
        char *ini = resnet_ini(2, 4, tails[i]);
        n[i] = auglocal_net(ini, &img8, 11);
        free(ini);
        train_steps(&n[i], 3, 6);
        v[i] = all_values(n[i].model, &nv[i]);
        state[i] = rule_state(&n[i], i ? "batch" : "module", &ns[i]);
    }
    cr_assert(eq(sz, nv[0], nv[1]));
    cr_expect(same_floats(v[0], v[1], nv[0]) != 0, "the model differs");
    cr_assert(eq(sz, ns[0], ns[1]));
    cr_expect(memcmp(state[0], state[1], ns[0]) == 0, "the auxiliary nets differ");
    for (int i = 0; i < 2; i++) {
        free(v[i]);
        free(state[i]);
        tu_net_fini(&n[i]);
    }
}

/* ---- memory ---- */

/* Bytes of the buffers blocks k0..k1 of m allocate for `batch` samples
 * (in-place and view layers share their input's buffer). */
static size_t act_bytes(plast_model *m, int k0, int k1, int batch)
{
    size_t n = 0;
    for (int i = plast_model_block(m, k0)->first; i <= plast_model_block(m, k1)->last; i++) {
        const plast_layer *l = plast_model_layer(m, i);
        if (!(l->ops->flags & (PLAST_LAYER_INPLACE | PLAST_LAYER_VIEW)))
            n += plast_shape_size(&l->out) * (size_t)batch * sizeof(float);
    }
    return n;
}

static size_t input_bytes(plast_model *m, int k, int batch)
{
    const plast_shape *s = k ? block_out(m, k - 1) : plast_model_input_shape(m);
    return plast_shape_size(s) * (size_t)batch * sizeof(float);
}

static size_t peak_of_one_step(tu_net *n, int batch)
{
    plast_mem_reset_peaks(n->mem);
    train_steps(n, 1, batch);
    return plast_mem_peak_watched(n->mem);
}

/* At batch 32 on a small ResNet: the peak holds one module and its
 * auxiliary net, plus at most the last module (§6.4), far below bp. */
Test(auglocal, memory_peak_is_one_module_and_its_aux_net)
{
    const int batch = 32, d = 2;
    char *ini = resnet_ini(2, 4, "[optimizer]\ntype = sgd\n[rule.auglocal]\naux_depth = 2\n"
                                 "pyramid = false\n");
    tu_net a = auglocal_net(ini, &img16, 1), b;
    tu_net_init_shape(&b, ini, &img16, 4, "bp", 1);
    tu_net_create_rule(&b);
    size_t peak = peak_of_one_step(&a, batch), bp = peak_of_one_step(&b, batch);
    plast_model *m = a.model;
    int L = plast_auglocal_layers(m), K = plast_model_nblocks(m);
    int nloc = plast_auglocal_modules(L, d);
    size_t most = 0, sum = 0;
    for (int l = 0; l < nloc; l++) {
        plast_err e;
        int sel[16], n = plast_auglocal_select(L, l, d, PLAST_AUX_UNIFORM, sel);
        plast_model *g;
        CHECK_OK(plast_auxnet_create(&g, m, l, sel, n, 0, &e), e);
        size_t here = input_bytes(m, l, batch) + act_bytes(m, l, l, batch) +
                      act_bytes(g, 0, plast_model_nblocks(g) - 1, batch);
        most = here > most ? here : most;
        sum += here;
        plast_model_destroy(g);
    }
    size_t last = input_bytes(m, nloc, batch) + act_bytes(m, nloc, K - 1, batch);
    size_t all = input_bytes(m, 0, batch) + act_bytes(m, 0, K - 1, batch);
    cr_log_info("batch %d: auglocal peak %zu bytes (one module + aux %zu, last module %zu, "
                "sum over modules %zu); bp peak %zu (all activations %zu)",
                batch, peak, most, last, sum + last, bp, all);
    cr_expect(peak < bp, "auglocal %zu >= bp %zu", peak, bp);
    cr_expect(bp >= all, "bp %zu below its activations %zu", bp, all);
    cr_expect(peak >= most, "peak %zu below one module and its aux net %zu", peak, most);
    cr_expect(peak <= most + last, "peak %zu above the bound %zu", peak, most + last);
    cr_expect(peak < sum, "peak %zu is the sum over modules %zu", peak, sum);
    tu_net_fini(&a);
    tu_net_fini(&b);
    free(ini);
}

/* ---- other nets train ---- */

/* Loss on one batch, trained on it again and again: it must fall. */
static void learns_a_batch(tu_net *n, int batch)
{
    size_t f = plast_shape_size(&n->in);
    float *x = malloc((size_t)batch * f * sizeof *x);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    cr_assert(x && y);
    fill_batch(x, y, batch, f, 99);
    double first = tu_step(n, x, y, batch, (int)f).loss, loss = first;
    for (int s = 0; s < 30; s++)
        loss = tu_step(n, x, y, batch, (int)f).loss;
    cr_expect(isfinite(loss) && loss < 0.8 * first, "loss %g -> %g", first, loss);
    free(x);
    free(y);
}

Test(auglocal, vgg_style_net_trains)
{
    tu_net n = auglocal_net(vgg_ini, &img16, 2);
    cr_expect(n.ops->aux_params(n.rule) > 0);
    learns_a_batch(&n, 16);
    tu_net_fini(&n);
}

Test(auglocal, dense_net_trains)
{
    plast_shape in = {1, {10}};
    tu_net n = auglocal_net(mlp_ini, &in, 2);
    learns_a_batch(&n, 16);
    tu_net_fini(&n);
}

static void collect_line(void *user, const char *text)
{
    int *count = user;
    if (*count == 0)
        cr_expect(strstr(text, "L = 4 layers") != NULL, "%s", text);
    cr_expect(strlen(text) > 0 && strchr(text, '\n') == NULL);
    (*count)++;
}

Test(auglocal, describe_and_aux_params)
{
    char *ini = resnet_ini(1, 4, "[optimizer]\ntype = sgd\n[rule.auglocal]\naux_depth = 1\n");
    tu_net n = auglocal_net(ini, &img8, 2);
    int lines = 0;
    n.ops->describe(n.rule, collect_line, &lines);
    cr_expect(eq(int, lines, plast_auglocal_modules(4, 1) + 3));
    /* the auxiliary parameters, counted as the rule built them */
    plast_err e;
    size_t want = 0;
    for (int l = 0; l < plast_auglocal_modules(4, 1); l++) {
        int sel[4], dl = plast_auglocal_depth(4, 1, 1, 0.5, l);
        int k = plast_auglocal_select(4, l, dl, PLAST_AUX_UNIFORM, sel);
        plast_model *g;
        CHECK_OK(plast_auxnet_create(&g, n.model, l, sel, k, dl <= 1, &e), e);
        for (int i = 0; i < plast_model_nlayers(g); i++)
            for (int p = 0; p < plast_model_layer(g, i)->nparams; p++)
                if (!(plast_model_layer(g, i)->param[p].flags & PLAST_PARAM_BUFFER))
                    want += plast_model_layer(g, i)->param[p].count;
        plast_model_destroy(g);
    }
    cr_expect(eq(sz, n.ops->aux_params(n.rule), want));
    tu_net_fini(&n);
    free(ini);
}

Test(auglocal, refusals)
{
    char *ini = resnet_ini(1, 4, "[optimizer]\ntype = sgd\n[rule.auglocal]\naux_depth = 4\n");
    tu_net n;
    plast_err e;
    tu_net_init_shape(&n, ini, &img8, 4, "auglocal", 1);
    cr_expect(eq(int, n.ops->create(&n.rule, n.model, n.rule_args, &e), PLAST_E_PARSE));
    cr_expect(strstr(e.msg, "aux_depth: expected at most 3") != NULL, "%s", e.msg);
    n.rule = NULL;
    tu_net_fini(&n);
    free(ini);
    tu_net one;
    tu_net_init(&one, "[layer.out]\ntype = dense\nunits = 4\n[optimizer]\ntype = sgd\n", 3, 4,
                "auglocal", 1);
    cr_expect(eq(int, one.ops->create(&one.rule, one.model, one.rule_args, &e), PLAST_E_INVAL));
    cr_expect(strstr(e.msg, "single block") != NULL, "%s", e.msg);
    one.rule = NULL;
    tu_net_fini(&one);
}

/* ---- through the trainer: export and resume ---- */

static const char *trainer_ini(const char *rule, int epochs, const char *extra)
{
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "[run]\nseed = 5\nepochs = %d\nbatch = 32\n"
             "[data]\nformat = synthetic\nsamples = 960\ntest_samples = 320\n"
             "features = 10\nclasses = 4\n%s"
             "[rule]\nname = %s\n%s",
             epochs, mlp_ini, rule, extra);
    return buf;
}

typedef struct run {
    plast_config *cfg;
    plast_registry *reg;
    plast_trainer *t;
    int stop_after, batches;
} run;

static void on_batch(void *user, int epoch, uint64_t b, uint64_t n, double loss, double acc)
{
    (void)epoch, (void)b, (void)n, (void)loss, (void)acc;
    ((run *)user)->batches++;
}

static int stop_now(void *user)
{
    run *r = user;
    return r->stop_after && r->batches >= r->stop_after;
}

static void start(run *r, const char *text)
{
    plast_err e;
    memset(r, 0, sizeof *r);
    r->cfg = tu_config(text);
    r->reg = tu_registry();
    CHECK_OK(plast_trainer_create(&r->t, r->cfg, r->reg, &e), e);
}

static int train(run *r, plast_err *e)
{
    plast_train_hooks h = {r, stop_now, on_batch, NULL};
    return plast_trainer_run(r->t, &h, e);
}

static void finish(run *r)
{
    plast_trainer_destroy(r->t);
    plast_registry_destroy(r->reg);
    plast_config_destroy(r->cfg);
}

static int same_model(plast_model *a, plast_model *b)
{
    size_t na, nb;
    float *va = all_values(a, &na), *vb = all_values(b, &nb);
    int same = na == nb && same_floats(va, vb, na);
    free(va);
    free(vb);
    return same;
}

/* The checkpoint's model is the primary net: a bp run of the same file
 * takes its weights and predicts the same. */
Test(auglocal, exported_model_is_the_primary_net, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/al.ckpt", tmpdir);
    run a, b;
    plast_err e;
    start(&a, trainer_ini("auglocal", 2, ""));
    CHECK_OK(train(&a, &e), e);
    CHECK_OK(plast_trainer_save(a.t, path, &e), e);
    start(&b, trainer_ini("bp", 2, ""));
    plast_model *ma = plast_trainer_model(a.t), *mb = plast_trainer_model(b.t);
    cr_expect(eq(sz, plast_model_nparams(ma), plast_model_nparams(mb)));
    cr_expect(plast_trainer_aux_params(a.t) > 0);
    cr_expect(eq(sz, plast_trainer_aux_params(b.t), 0));
    CHECK_OK(plast_trainer_load_weights(b.t, path, &e), e);
    cr_expect(same_model(ma, mb) != 0);
    double la, acc_a, lb, acc_b;
    CHECK_OK(plast_trainer_evaluate(a.t, &la, &acc_a, &e), e);
    CHECK_OK(plast_trainer_evaluate(b.t, &lb, &acc_b, &e), e);
    cr_expect(eq(dbl, la, lb));
    cr_expect(eq(dbl, acc_a, acc_b));
    cr_expect(acc_a > 0.5, "test accuracy %g", acc_a);
    finish(&a);
    finish(&b);
}

/* Stopped mid-epoch, saved, resumed in a new trainer: the bits of an
 * uninterrupted run (the auxiliary nets and their optimisers resume). */
Test(auglocal, resumed_run_is_bit_identical, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/al.ckpt", tmpdir);
    run full, part, rest;
    plast_err e;
    start(&full, trainer_ini("auglocal", 3, ""));
    CHECK_OK(train(&full, &e), e);
    char ini[2300];
    snprintf(ini, sizeof ini, "%s", trainer_ini("auglocal", 3, ""));
    char *at = strstr(ini, "[run]\n");
    cr_assert(at != NULL);
    char with_ckpt[2400];
    snprintf(with_ckpt, sizeof with_ckpt, "[run]\ncheckpoint = %s\n%s", path, at + 6);
    start(&part, with_ckpt);
    part.stop_after = 40; /* epoch 2, batch 10 of 30 */
    cr_assert(eq(int, train(&part, &e), PLAST_E_CANCELED));
    start(&rest, with_ckpt);
    CHECK_OK(plast_trainer_resume(rest.t, path, &e), e);
    CHECK_OK(train(&rest, &e), e);
    cr_expect(eq(int, rest.batches, 3 * 30 - 40));
    cr_expect(same_model(plast_trainer_model(full.t), plast_trainer_model(rest.t)) != 0,
              "the resumed run differs");
    finish(&full);
    finish(&part);
    finish(&rest);
}
