/* test_rules.c - the bp and drtp plug-ins against hand-computed values
 * (toy net N0 of ALGORITHMS.md §3.8), their bookkeeping, and the memory
 * the tracker measures against the analytic counts. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdlib.h>

#include "testutil.h"

static const char *const n0_ini = "[layer.h]\ntype = dense\nunits = 2\n"
                                  "[layer.a]\ntype = relu\n"
                                  "[layer.out]\ntype = dense\nunits = 2\n"
                                  "[optimizer]\ntype = sgd\nlr = 1\n";

/* N0: W_1 = [[1,-1],[0.5,0.5]], b_1 = 0, W_2 = I, b_2 = 0. */
static void set_n0(plast_model *m)
{
    plast_layer *h = plast_model_layer(m, 0), *o = plast_model_layer(m, 2);
    const float w1[4] = {1, -1, 0.5f, 0.5f}, w2[4] = {1, 0, 0, 1};
    memcpy(h->param[0].w, w1, sizeof w1);
    memset(h->param[1].w, 0, 2 * sizeof(float));
    memcpy(o->param[0].w, w2, sizeof w2);
    memset(o->param[1].w, 0, 2 * sizeof(float));
}

/* With SGD at lr 1 the step subtracts the gradient: recover it. */
static void grad_of(const plast_param *p, const float *before, float *g)
{
    for (size_t i = 0; i < p->count; i++)
        g[i] = before[i] - p->w[i];
}

static void expect_near(const float *got, const float *want, int n, double tol, const char *what)
{
    for (int i = 0; i < n; i++)
        cr_expect(fabs(got[i] - want[i]) < tol, "%s[%d] = %.7f, expected %.7f", what, i, got[i],
                  want[i]);
}

static const float n0_x[2] = {1, 2};
static const int32_t n0_label[1] = {1};

Test(bp, toy_net_n0_gradients)
{
    tu_net n;
    tu_net_init(&n, n0_ini, 2, 2, "bp", 1);
    tu_net_create_rule(&n);
    set_n0(n.model);
    plast_layer *h = plast_model_layer(n.model, 0), *o = plast_model_layer(n.model, 2);
    float w1[4], w2[4], b2[2], g[4];
    memcpy(w1, h->param[0].w, sizeof w1);
    memcpy(w2, o->param[0].w, sizeof w2);
    memcpy(b2, o->param[1].w, sizeof b2);
    plast_stats st = tu_step(&n, n0_x, n0_label, 1, 2);
    cr_expect(fabs(st.loss - 0.201413) < 1e-5, "loss %.7f", st.loss);
    cr_expect(eq(int, st.correct, 1));
    grad_of(&o->param[0], w2, g);
    expect_near(g, (const float[]){0, 0.273638f, 0, -0.273638f}, 4, 1e-5, "grad W2");
    grad_of(&o->param[1], b2, g);
    expect_near(g, (const float[]){0.182426f, -0.182426f}, 2, 1e-5, "grad b2");
    grad_of(&h->param[0], w1, g);
    expect_near(g, (const float[]){0, 0, -0.182426f, -0.364851f}, 4, 1e-5, "grad W1");
    tu_net_fini(&n);
}

/* The core primitive DRTP uses: a signal injected at the activation
 * output, back-propagated through the block's own f' only. */
Test(drtp, toy_net_n0_signal_through_block)
{
    tu_net n;
    plast_err e;
    tu_net_init(&n, n0_ini, 2, 2, "drtp", 1);
    set_n0(n.model);
    plast_ctx ctx = plast_model_ctx(n.model, 1);
    plast_tensor x = plast_tensor_view((float *)n0_x, 1, plast_model_input_shape(n.model));
    plast_block_run run;
    CHECK_OK(plast_block_forward(n.model, 0, &x, &run, &ctx, &e), e);
    const plast_block *b = plast_model_block(n.model, 0);
    cr_assert(eq(int, b->inject, 1));
    plast_tensor g;
    CHECK_OK(plast_tensor_alloc_dims(&g, n.mem, PLAST_MEM_ACTIVATIONS, 2, (int[]){1, 2}, &e), e);
    g.data[0] = 0.25f; /* row 1 of R_1 = [[0.5, -0.5], [0.25, 0.7]] */
    g.data[1] = 0.7f;
    CHECK_OK(plast_block_backward(n.model, &run, b->inject, &g, NULL, &ctx, &e), e);
    plast_block_release(n.model, &run, NULL);
    plast_layer *h = plast_model_layer(n.model, 0);
    expect_near(h->param[0].g, (const float[]){0, 0, 0.7f, 1.4f}, 4, 1e-6, "grad W1");
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0));
    tu_net_fini(&n);
}

/* The plug-in: hidden gradient from the actual R_1 of stream (PROJ, 0),
 * computed by hand; the output block gets the true gradient. */
Test(drtp, toy_net_n0_step)
{
    tu_net n;
    plast_err e;
    tu_net_init(&n, n0_ini, 2, 2, "drtp", 11);
    tu_net_create_rule(&n);
    set_n0(n.model);
    plast_proj R;
    CHECK_OK(plast_proj_init(&R, n.mem, 11, 0, 2, 2, sqrtf(3.0f), 1, &e), e);
    float r1[2];
    plast_proj_row(&R, 1, r1);
    plast_proj_fini(&R);
    plast_layer *h = plast_model_layer(n.model, 0), *o = plast_model_layer(n.model, 2);
    float w1[4], w2[4], g[4];
    memcpy(w1, h->param[0].w, sizeof w1);
    memcpy(w2, o->param[0].w, sizeof w2);
    tu_step(&n, n0_x, n0_label, 1, 2);
    /* D_1 = R_1[label] * relu'(Z_1) with Z_1 = [-1, 1.5]; grad W_1 = D_1^T x */
    const float d1[2] = {0, r1[1]};
    grad_of(&h->param[0], w1, g);
    expect_near(g, (const float[]){d1[0] * 1, d1[0] * 2, d1[1] * 1, d1[1] * 2}, 4, 1e-6,
                "grad W1");
    grad_of(&o->param[0], w2, g);
    expect_near(g, (const float[]){0, 0.273638f, 0, -0.273638f}, 4, 1e-5, "grad W2");
    tu_net_fini(&n);
}

/* ---- a 3-block MLP on random data ---- */

#define F 12
#define C 3
#define H1 9
#define H2 7

/* With `flat` a flatten layer leads block 0 (as in the examples). */
static const char *mlp_ini_flat(const char *extra, int flat)
{
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "%s[layer.h1]\ntype = dense\nunits = %d\n[layer.a1]\ntype = tanh\n"
             "[layer.h2]\ntype = dense\nunits = %d\n[layer.a2]\ntype = tanh\n"
             "[layer.out]\ntype = dense\nunits = %d\n"
             "[optimizer]\ntype = nesterov\nlr = 0.05\n%s",
             flat ? "[layer.flat]\ntype = flatten\n" : "", H1, H2, C, extra);
    return buf;
}

static const char *mlp_ini(const char *extra)
{
    return mlp_ini_flat(extra, 0);
}

static void random_batch(float *x, int32_t *y, int batch, uint32_t seed)
{
    plast_rng r;
    plast_rng_seed(&r, seed, 99);
    for (int i = 0; i < batch * F; i++)
        x[i] = plast_rng_uniform(&r, -1, 1);
    for (int i = 0; i < batch; i++)
        y[i] = (int32_t)plast_rng_below(&r, C);
}

static void train_steps(tu_net *n, int steps, int batch)
{
    float x[16 * F];
    int32_t y[16];
    for (int s = 0; s < steps; s++) {
        random_batch(x, y, batch, (uint32_t)s);
        tu_step(n, x, y, batch, F);
    }
}

static float *weights_after(const char *rule, const char *extra, int steps, size_t *n_out)
{
    tu_net n;
    tu_net_init(&n, mlp_ini(extra), F, C, rule, 5);
    tu_net_create_rule(&n);
    train_steps(&n, steps, 8);
    size_t np = plast_model_nparams(n.model);
    float *w = malloc(np * sizeof *w);
    memcpy(w, plast_model_weights(n.model), np * sizeof *w);
    *n_out = np;
    tu_net_fini(&n);
    return w;
}

Test(drtp, matrix_and_regen_train_bit_identically)
{
    size_t na, nb;
    float *a = weights_after("drtp", "[rule.drtp]\nproj_store = matrix\n", 100, &na);
    float *b = weights_after("drtp", "[rule.drtp]\nproj_store = regen\n", 100, &nb);
    cr_assert(eq(sz, na, nb));
    cr_expect(memcmp(a, b, na * sizeof *a) == 0, "matrix and regen differ after 100 steps");
    free(a);
    free(b);
}

Test(drtp, regen_keeps_no_matrix)
{
    tu_net a, b;
    tu_net_init(&a, mlp_ini("[rule.drtp]\nproj_store = matrix\n"), F, C, "drtp", 5);
    tu_net_init(&b, mlp_ini("[rule.drtp]\nproj_store = regen\n"), F, C, "drtp", 5);
    size_t ra = plast_mem_live(a.mem, PLAST_MEM_RULE), rb = plast_mem_live(b.mem, PLAST_MEM_RULE);
    tu_net_create_rule(&a);
    tu_net_create_rule(&b);
    size_t ma = plast_mem_live(a.mem, PLAST_MEM_RULE) - ra;
    size_t mb = plast_mem_live(b.mem, PLAST_MEM_RULE) - rb;
    /* R_k is [C, N_k] floats for each hidden block */
    cr_expect(eq(sz, ma - mb, (size_t)C * (H1 + H2) * sizeof(float)));
    tu_net_fini(&a);
    tu_net_fini(&b);
}

/* hidden_reduce: sum = mean * B for hidden blocks only. */
Test(drtp, sum_is_mean_times_batch_for_hidden_blocks)
{
    const int B = 4;
    float x[4 * F], gm[2][64], gs[2][64];
    int32_t y[4];
    random_batch(x, y, B, 3);
    const char *cfg[2] = {"[rule.drtp]\nhidden_reduce = mean\n",
                          "[rule.drtp]\nhidden_reduce = sum\n"};
    for (int v = 0; v < 2; v++) {
        tu_net n;
        char ini[1200];
        snprintf(ini, sizeof ini, "%s", mlp_ini(cfg[v]));
        char *lr = strstr(ini, "type = nesterov\nlr = 0.05");
        memcpy(lr, "type = sgd     \nlr = 1   ", 25);
        tu_net_init(&n, ini, F, C, "drtp", 5);
        tu_net_create_rule(&n);
        plast_layer *h1 = plast_model_layer(n.model, 0), *out = plast_model_layer(n.model, 4);
        float w1[H1 * F], wo[C * H2];
        memcpy(w1, h1->param[0].w, sizeof w1);
        memcpy(wo, out->param[0].w, sizeof wo);
        tu_step(&n, x, y, B, F);
        grad_of(&h1->param[0], w1, v ? gs[0] : gm[0]);
        grad_of(&out->param[0], wo, v ? gs[1] : gm[1]);
        tu_net_fini(&n);
    }
    for (int i = 0; i < H1 * F && i < 64; i++)
        cr_expect(fabsf(gs[0][i] - B * gm[0][i]) <= 1e-5f + 1e-4f * fabsf(gs[0][i]),
                  "hidden grad %d: sum %g, mean %g", i, gs[0][i], gm[0][i]);
    for (int i = 0; i < C * H2; i++)
        cr_expect(fabsf(gs[1][i] - gm[1][i]) <= 1e-6f, "output grad %d differs", i);
}

/* Locality: block 0's update does not depend on anything above it. */
Test(drtp, hidden_block_update_is_local)
{
    size_t na, nb;
    float *a = weights_after("drtp", "", 1, &na);
    /* the same run with a different learning rate above... is the same
     * optimiser; instead change the output layer's initial weights */
    tu_net n;
    tu_net_init(&n, mlp_ini(""), F, C, "drtp", 5);
    tu_net_create_rule(&n);
    plast_layer *out = plast_model_layer(n.model, 4), *h2 = plast_model_layer(n.model, 2);
    for (size_t i = 0; i < out->param[0].count; i++)
        out->param[0].w[i] *= -3.0f;
    for (size_t i = 0; i < h2->param[0].count; i++)
        h2->param[0].w[i] += 0.5f;
    train_steps(&n, 1, 8);
    const plast_block *b0 = plast_model_block(n.model, 0);
    cr_expect(memcmp(a, plast_model_weights(n.model), b0->param_end * sizeof(float)) == 0,
              "block 0 changed when only blocks above it changed");
    nb = plast_model_nparams(n.model);
    cr_expect(memcmp(a, plast_model_weights(n.model), nb * sizeof(float)) != 0);
    free(a);
    tu_net_fini(&n);
}

Test(rules, same_seed_same_bits)
{
    const char *rules[2] = {"bp", "drtp"};
    for (int r = 0; r < 2; r++) {
        size_t na, nb;
        float *a = weights_after(rules[r], "", 20, &na);
        float *b = weights_after(rules[r], "", 20, &nb);
        cr_expect(memcmp(a, b, na * sizeof *a) == 0, "%s: two runs differ", rules[r]);
        free(a);
        free(b);
    }
}

/* ---- memory: tracker peak of activations + input vs the analytic count ---- */

static size_t act_input_peak(const char *rule, int B, int flat)
{
    tu_net n;
    tu_net_init(&n, mlp_ini_flat("", flat), F, C, rule, 5);
    tu_net_create_rule(&n);
    float x[16 * F];
    int32_t y[16];
    random_batch(x, y, B, 1);
    plast_mem_reset_peaks(n.mem);
    tu_step(&n, x, y, B, F);
    size_t peak = plast_mem_peak_watched(n.mem);
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0), "%s leaks activations",
              rule);
    tu_net_fini(&n);
    return peak;
}

Test(memory, bp_keeps_every_block)
{
    const size_t B = 16, f = sizeof(float);
    size_t x = B * F * f, labels = B * 4, a1 = B * H1 * f, a2 = B * H2 * f, lo = B * C * f;
    /* at block k's backward: all outputs up to k, its output gradient and
     * its input gradient are alive */
    size_t at2 = x + a1 + a2 + lo + lo + a2;
    size_t at1 = x + a1 + a2 + a2 + a1;
    size_t want = labels + (at2 > at1 ? at2 : at1);
    cr_expect(eq(sz, act_input_peak("bp", (int)B, 0), want));
    /* a leading flatten adds nothing: no gradient flows into the data */
    cr_expect(eq(sz, act_input_peak("bp", (int)B, 1), want));
}

Test(memory, drtp_keeps_one_block)
{
    const size_t B = 16, f = sizeof(float);
    size_t x = B * F * f, labels = B * 4, a1 = B * H1 * f, a2 = B * H2 * f, lo = B * C * f;
    /* per block: its input, its output and its signal */
    size_t k0 = x + a1 + a1, k1 = a1 + a2 + a2, k2 = a2 + lo + lo;
    size_t m = k0 > k1 ? k0 : k1;
    m = m > k2 ? m : k2;
    cr_expect(eq(sz, act_input_peak("drtp", (int)B, 0), labels + m));
    cr_expect(eq(sz, act_input_peak("drtp", (int)B, 1), labels + m));
}

Test(drtp, refuses_blocks_without_a_local_signal)
{
    tu_net n;
    plast_err e;
    tu_net_init(&n,
                "[layer.h0]\ntype = dense\nunits = 4\n[layer.a0]\ntype = tanh\n"
                "[layer.h1]\ntype = dense\nunits = 4\nblock = r\n"
                "[layer.r1]\ntype = add\nfrom = a0\nblock = r\n"
                "[layer.out]\ntype = dense\nunits = 3\n",
                F, C, "drtp", 1);
    cr_assert(eq(int, n.ops->create(&n.rule, n.model, n.rule_args, &e), PLAST_E_UNSUPPORTED));
    cr_expect(strstr(e.msg, "layer 'r1' (add) has no local learning signal") != NULL, "%s", e.msg);
    n.rule = NULL;
    tu_net_fini(&n);
}

/* ---- DRTP on convolutions (ALGORITHMS.md §3.8 test 4) ---- */

static const char *conv_ini(const char *pool)
{
    static char buf[512];
    snprintf(buf, sizeof buf,
             "[layer.c1]\ntype = conv2d\nchannels = 3\nkernel = 3\npadding = 1\n"
             "[layer.a1]\ntype = tanh\n[layer.p1]\ntype = %s\nkernel = 2\n"
             "[layer.out]\ntype = dense\nunits = 3\n"
             "[optimizer]\ntype = sgd\nlr = 1\n",
             pool);
    return buf;
}

/* One drtp step; returns the conv weights after it (malloc'd). */
static float *conv_weights_after_step(const char *pool, int B, size_t *n_out, size_t *peak)
{
    tu_net n;
    plast_shape in = {3, {1, 6, 6}};
    tu_net_init_shape(&n, conv_ini(pool), &in, 3, "drtp", 4);
    tu_net_create_rule(&n);
    float x[4 * 36];
    int32_t y[4] = {0, 1, 2, 1};
    plast_rng r;
    plast_rng_seed(&r, 3, 3);
    for (int i = 0; i < B * 36; i++)
        x[i] = plast_rng_uniform(&r, -1, 1);
    plast_mem_reset_peaks(n.mem);
    tu_step(&n, x, y, B, 36);
    *peak = plast_mem_peak_watched(n.mem);
    plast_layer *c = plast_model_layer(n.model, 0);
    float *w = malloc(c->param[0].count * sizeof *w);
    memcpy(w, c->param[0].w, c->param[0].count * sizeof *w);
    *n_out = c->param[0].count;
    tu_net_fini(&n);
    return w;
}

Test(drtp, conv_signal_is_pre_pool)
{
    size_t na, nb, pa, pb;
    float *a = conv_weights_after_step("maxpool", 4, &na, &pa);
    float *b = conv_weights_after_step("avgpool", 4, &nb, &pb);
    cr_assert(eq(sz, na, nb));
    cr_expect(memcmp(a, b, na * sizeof *a) == 0,
              "the conv update depends on the pooling after the activation");
    /* the peak: the batch and labels, the conv output A (the signal is
     * written over it), the pooled output */
    size_t B = 4, want = B * 36 * 4 + B * 4 + B * 3 * 36 * 4 + B * 3 * 9 * 4;
    cr_expect(eq(sz, pa, want), "drtp conv peak %zu, expected %zu", pa, want);
    free(a);
    free(b);
}

/* The in-place signal equals the textbook one: D = R[label] * (1 - A^2),
 * grad W = conv backward of D, computed here through the core primitive. */
Test(drtp, conv_step_equals_the_definition)
{
    plast_shape in = {3, {1, 6, 6}};
    tu_net n;
    plast_err e;
    tu_net_init_shape(&n, conv_ini("maxpool"), &in, 3, "drtp", 4);
    float x[2 * 36];
    int32_t y[2] = {2, 0};
    plast_rng r;
    plast_rng_seed(&r, 5, 5);
    for (int i = 0; i < 72; i++)
        x[i] = plast_rng_uniform(&r, -1, 1);
    /* expected gradient: block 0 forward, signal at the activation from the
     * same projection, backward from the activation (no in-place trick) */
    plast_ctx ctx = plast_model_ctx(n.model, 1);
    plast_tensor xt = plast_tensor_view(x, 2, &in);
    plast_block_run run;
    CHECK_OK(plast_block_forward(n.model, 0, &xt, &run, &ctx, &e), e);
    plast_proj R;
    size_t N = 3 * 36;
    CHECK_OK(plast_proj_init(&R, n.mem, 4, 0, 3, N, plast_proj_he_bound(N), 1, &e), e);
    plast_tensor g;
    CHECK_OK(plast_tensor_alloc_dims(&g, n.mem, PLAST_MEM_ACTIVATIONS, 4, (int[]){2, 3, 6, 6}, &e),
             e);
    plast_proj_select(&R, y, 2, 0.5f, g.data); /* hidden_reduce = mean */
    plast_proj_fini(&R);
    CHECK_OK(plast_block_backward(n.model, &run, 1, &g, NULL, &ctx, &e), e);
    plast_block_release(n.model, &run, NULL);
    plast_layer *c = plast_model_layer(n.model, 0);
    size_t cnt = c->param[0].count;
    float *want = malloc(cnt * sizeof *want), *before = malloc(cnt * sizeof *before);
    memcpy(want, c->param[0].g, cnt * sizeof *want);
    memset(c->param[0].g, 0, cnt * sizeof *want);
    memset(c->param[1].g, 0, c->param[1].count * sizeof(float));
    memcpy(before, c->param[0].w, cnt * sizeof *before);
    tu_net_create_rule(&n);
    tu_step(&n, x, y, 2, 36);
    for (size_t i = 0; i < cnt; i++)
        cr_expect(fabsf((before[i] - c->param[0].w[i]) - want[i]) <= 1e-6f,
                  "w[%zu]: step %g, definition %g", i, before[i] - c->param[0].w[i], want[i]);
    free(want);
    free(before);
    tu_net_fini(&n);
}

/* ---- tpSGD (ALGORITHMS.md §4.7) ---- */

Test(tpsgd, linear_equals_drtp_bit_for_bit)
{
    size_t na, nb;
    float *a = weights_after("drtp", "[rule.drtp]\nhidden_reduce = mean\n", 50, &na);
    float *b = weights_after("tpsgd", "[rule.tpsgd]\nlocal_loss = linear\n", 50, &nb);
    cr_assert(eq(sz, na, nb));
    cr_expect(memcmp(a, b, na * sizeof *a) == 0, "tpsgd linear differs from drtp");
    free(a);
    free(b);
    /* and on a convolution: one step each */
    size_t pa, pb;
    a = conv_weights_after_step("maxpool", 4, &na, &pa);
    tu_net n;
    plast_shape in = {3, {1, 6, 6}};
    char ini[700];
    snprintf(ini, sizeof ini, "%s[rule.tpsgd]\nlocal_loss = linear\n", conv_ini("maxpool"));
    tu_net_init_shape(&n, ini, &in, 3, "tpsgd", 4);
    tu_net_create_rule(&n);
    float x[4 * 36];
    int32_t y[4] = {0, 1, 2, 1};
    plast_rng r;
    plast_rng_seed(&r, 3, 3);
    for (int i = 0; i < 4 * 36; i++)
        x[i] = plast_rng_uniform(&r, -1, 1);
    tu_step(&n, x, y, 4, 36);
    cr_expect(memcmp(a, plast_model_layer(n.model, 0)->param[0].w, na * sizeof *a) == 0,
              "conv: tpsgd linear differs from drtp");
    (void)pb;
    free(a);
    tu_net_fini(&n);
}

/* N0 with the target row t = [0.25, 0.7] set by hand. */
static void n0_local_grad(plast_local_loss loss, const char *act, float *gw)
{
    tu_net n;
    plast_err e;
    char ini[300];
    snprintf(ini, sizeof ini,
             "[layer.h]\ntype = dense\nunits = 2\n[layer.a]\ntype = %s\n"
             "[layer.out]\ntype = dense\nunits = 2\n[optimizer]\ntype = sgd\nlr = 1\n",
             act);
    tu_net_init(&n, ini, 2, 2, "tpsgd", 1);
    set_n0(n.model);
    float rows[4] = {0.5f, -0.5f, 0.25f, 0.7f};
    plast_proj p;
    memset(&p, 0, sizeof p);
    p.classes = 2;
    p.n = 2;
    p.matrix = rows;
    plast_ctx ctx = plast_model_ctx(n.model, 1);
    plast_tensor x = plast_tensor_view((float *)n0_x, 1, plast_model_input_shape(n.model));
    plast_block_run run;
    CHECK_OK(plast_block_forward(n.model, 0, &x, &run, &ctx, &e), e);
    CHECK_OK(plast_local_backward(n.model, &run, &p, n0_label, 1, loss, 1.0f, &e), e);
    plast_block_release(n.model, &run, NULL);
    memcpy(gw, plast_model_layer(n.model, 0)->param[0].g, 4 * sizeof *gw);
    tu_net_fini(&n);
}

Test(tpsgd, toy_net_n0_local_losses)
{
    float g[4];
    n0_local_grad(PLAST_LOCAL_LINEAR, "relu", g);
    expect_near(g, (const float[]){0, 0, 0.7f, 1.4f}, 4, 1e-6, "linear grad W1");
    n0_local_grad(PLAST_LOCAL_MSE, "relu", g);
    expect_near(g, (const float[]){0, 0, 0.8f, 1.6f}, 4, 1e-6, "mse grad W1");
    n0_local_grad(PLAST_LOCAL_L1, "relu", g);
    expect_near(g, (const float[]){0, 0, 1.0f, 2.0f}, 4, 1e-6, "l1 grad W1");
}

/* bce on a sigmoid block: the fused D = a - t equals G * a(1 - a) with
 * G = dBCE/da = (a - t) / (a (1 - a)). */
Test(tpsgd, bce_fused_equals_the_chain_rule)
{
    float g[4];
    n0_local_grad(PLAST_LOCAL_BCE, "sigmoid", g);
    const float z[2] = {-1.0f, 1.5f}, t[2] = {0.25f, 0.7f};
    for (int u = 0; u < 2; u++) {
        double a = 1.0 / (1.0 + exp(-z[u]));
        double chain = (a - t[u]) / (a * (1 - a)) * a * (1 - a);
        for (int j = 0; j < 2; j++)
            cr_expect(fabs(g[u * 2 + j] - chain * n0_x[j]) < 1e-6, "unit %d input %d: %g vs %g",
                      u, j, g[u * 2 + j], chain * n0_x[j]);
    }
}

/* mse fixed point: targets equal to the activations give no gradient;
 * l1 is scale-free: errors 10 times larger give the same update. */
Test(tpsgd, mse_fixed_point_and_l1_scale)
{
    tu_net n;
    plast_err e;
    tu_net_init(&n, "[layer.h]\ntype = dense\nunits = 2\n[layer.out]\ntype = dense\nunits = 2\n"
                    "[optimizer]\ntype = sgd\nlr = 1\n",
                2, 2, "tpsgd", 1);
    plast_layer *h = plast_model_layer(n.model, 0);
    const float w1[4] = {1, -1, 0.5f, 0.5f};
    memcpy(h->param[0].w, w1, sizeof w1);
    memset(h->param[1].w, 0, 2 * sizeof(float));
    /* identity activation: A = Z = [-1, 1.5] for x = [1, 2] */
    float rows[4] = {0, 0, -1.0f, 1.5f};
    plast_proj p;
    memset(&p, 0, sizeof p);
    p.classes = 2;
    p.n = 2;
    p.matrix = rows;
    plast_ctx ctx = plast_model_ctx(n.model, 1);
    plast_tensor x = plast_tensor_view((float *)n0_x, 1, plast_model_input_shape(n.model));
    plast_block_run run;
    CHECK_OK(plast_block_forward(n.model, 0, &x, &run, &ctx, &e), e);
    CHECK_OK(plast_local_backward(n.model, &run, &p, n0_label, 1, PLAST_LOCAL_MSE, 1.0f, &e), e);
    plast_block_release(n.model, &run, NULL);
    for (int i = 0; i < 4; i++)
        cr_expect(h->param[0].g[i] == 0.0f, "mse at its target: grad[%d] = %g", i,
                  h->param[0].g[i]);
    float g1[4], g10[4];
    for (int s = 0; s < 2; s++) {
        rows[2] = s ? -1.0f + 10 * 0.3f : -1.0f + 0.3f; /* error 0.3 or 3 */
        rows[3] = s ? 1.5f - 10 * 0.2f : 1.5f - 0.2f;
        memset(h->param[0].g, 0, 4 * sizeof(float));
        CHECK_OK(plast_block_forward(n.model, 0, &x, &run, &ctx, &e), e);
        CHECK_OK(plast_local_backward(n.model, &run, &p, n0_label, 1, PLAST_LOCAL_L1, 1.0f, &e),
                 e);
        plast_block_release(n.model, &run, NULL);
        memcpy(s ? g10 : g1, h->param[0].g, sizeof g1);
    }
    cr_expect(memcmp(g1, g10, sizeof g1) == 0, "l1 depends on the error's size");
    tu_net_fini(&n);
}

Test(tpsgd, learns_and_refuses_bce_without_sigmoid)
{
    tu_net n;
    plast_err e;
    tu_net_init(&n, mlp_ini("[rule.tpsgd]\nlocal_loss = bce\n"), F, C, "tpsgd", 5);
    cr_assert(eq(int, n.ops->create(&n.rule, n.model, n.rule_args, &e), PLAST_E_UNSUPPORTED));
    cr_expect(strstr(e.msg, "local_loss = bce needs a sigmoid activation in block 0, found tanh") !=
                  NULL,
              "%s", e.msg);
    n.rule = NULL;
    tu_net_fini(&n);
}

/* ---- tpSGD on Elman rnn blocks, without BPTT (ALGORITHMS.md §4.4) ---- */

#define RC 3 /* classes */

/* An rnn block and a dense output for `classes`; SGD at lr 1 exposes the
 * gradients; local_loss = mse unless `tpsgd` sets it. */
static const char *rnn_ini_c(int units, int steps, const char *output, int classes,
                             const char *tpsgd)
{
    static char buf[600];
    snprintf(buf, sizeof buf,
             "[layer.r]\ntype = rnn\nunits = %d\nsteps = %d\noutput = %s\n"
             "[layer.out]\ntype = dense\nunits = %d\n"
             "[optimizer]\ntype = sgd\nlr = 1\n[rule.tpsgd]\n%s%s",
             units, steps, output, classes,
             strstr(tpsgd, "local_loss") ? "" : "local_loss = mse\n", tpsgd);
    return buf;
}

static const char *rnn_ini(int units, int steps, const char *output, const char *tpsgd)
{
    return rnn_ini_c(units, steps, output, RC, tpsgd);
}

static void fill_random(float *p, size_t n, uint32_t seed, float bound)
{
    plast_rng r;
    plast_rng_seed(&r, seed, 7);
    for (size_t i = 0; i < n; i++)
        p[i] = plast_rng_uniform(&r, -bound, bound);
}

/* grad_of into a fresh array. */
static float *grad_copy(const plast_param *p, const float *before)
{
    float *g = malloc(p->count * sizeof *g);
    cr_assert(g != NULL);
    grad_of(p, before, g);
    return g;
}

static float *weights_copy(const plast_param *p)
{
    float *w = malloc(p->count * sizeof *w);
    cr_assert(w != NULL);
    memcpy(w, p->w, p->count * sizeof *w);
    return w;
}

/* Test 6a: one step with h_0 = 0 is a dense tanh block on x_1: the same
 * target rows (stream (PROJ, 0), tanh range), the same gradients of the
 * input weights and bias, and exactly none for W_hh. */
Test(tpsgd, rnn_one_step_equals_dense)
{
    enum { Fe = 5, U = 4, B = 6 };
    tu_net r, d;
    tu_net_init(&r, rnn_ini(U, 1, "last", ""), Fe, RC, "tpsgd", 7);
    tu_net_init(&d,
                "[layer.h]\ntype = dense\nunits = 4\n[layer.a]\ntype = tanh\n"
                "[layer.out]\ntype = dense\nunits = 3\n"
                "[optimizer]\ntype = sgd\nlr = 1\n[rule.tpsgd]\nlocal_loss = mse\n",
                Fe, RC, "tpsgd", 7);
    tu_net_create_rule(&r);
    tu_net_create_rule(&d);
    plast_layer *rl = plast_model_layer(r.model, 0), *dl = plast_model_layer(d.model, 0);
    cr_assert(eq(sz, rl->param[0].count, dl->param[0].count));
    memcpy(rl->param[0].w, dl->param[0].w, dl->param[0].count * sizeof(float));
    fill_random(dl->param[1].w, U, 1, 0.5f);
    memcpy(rl->param[2].w, dl->param[1].w, U * sizeof(float));
    fill_random(rl->param[1].w, U * U, 2, 0.5f); /* W_hh: no effect at h_0 = 0 */
    float x[B * Fe];
    int32_t y[B] = {0, 1, 2, 2, 1, 0};
    fill_random(x, B * Fe, 3, 1.0f);
    float *rw = weights_copy(&rl->param[0]), *rh = weights_copy(&rl->param[1]);
    float *rb = weights_copy(&rl->param[2]);
    float *dw = weights_copy(&dl->param[0]), *db = weights_copy(&dl->param[1]);
    tu_step(&r, x, y, B, Fe);
    tu_step(&d, x, y, B, Fe);
    float *grw = grad_copy(&rl->param[0], rw), *grb = grad_copy(&rl->param[2], rb);
    float *gdw = grad_copy(&dl->param[0], dw), *gdb = grad_copy(&dl->param[1], db);
    expect_near(grw, gdw, U * Fe, 1e-6, "W_ih vs dense weight gradient");
    expect_near(grb, gdb, U, 1e-6, "rnn vs dense bias gradient");
    float nonzero = 0;
    for (int i = 0; i < U * Fe; i++)
        nonzero += fabsf(gdw[i]);
    cr_expect(nonzero > 1e-3f, "the dense gradient is zero: the comparison proves nothing");
    cr_expect(memcmp(rh, rl->param[1].w, U * U * sizeof(float)) == 0, "W_hh changed at S = 1");
    free(rw), free(rh), free(rb), free(dw), free(db);
    free(grw), free(grb), free(gdw), free(gdb);
    tu_net_fini(&r);
    tu_net_fini(&d);
}

/* tpSGD-mse gradients of an rnn block by hand in double (ALGORITHMS.md
 * §4.4): steps from `first` on carry the signal, divided by B times their
 * number.  w: W_ih [U, Fe], W_hh [U, U], b [U]; P [classes, U]. */
enum { HU = 2, HS = 3, HF = 2, HB = 2 };

typedef struct rnn_ref {
    double gx[HU * HF], gh[HU * HU], gb[HU];
} rnn_ref;

static void rnn_reference(const float *wx, const float *wh, const float *b, const float *x,
                          const int32_t *y, const float *P, int first, rnn_ref *g)
{
    memset(g, 0, sizeof *g);
    double scale = 1.0 / (HB * (HS - first));
    for (int s = 0; s < HB; s++) {
        double hp[HU] = {0}, h[HU];
        for (int t = 0; t < HS; t++) {
            const float *xt = x + (s * HS + t) * HF;
            for (int u = 0; u < HU; u++) {
                double z = b[u];
                for (int f = 0; f < HF; f++)
                    z += (double)wx[u * HF + f] * xt[f];
                for (int v = 0; v < HU; v++)
                    z += (double)wh[u * HU + v] * hp[v];
                h[u] = tanh(z);
            }
            for (int u = 0; t >= first && u < HU; u++) {
                double delta = (h[u] - P[y[s] * HU + u]) * (1 - h[u] * h[u]) * scale;
                for (int f = 0; f < HF; f++)
                    g->gx[u * HF + f] += delta * xt[f];
                for (int v = 0; v < HU; v++)
                    g->gh[u * HU + v] += delta * hp[v];
                g->gb[u] += delta;
            }
            memcpy(hp, h, sizeof h);
        }
    }
}

static void expect_near_double(const float *got, const double *want, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        cr_expect(fabs(got[i] - want[i]) < 1e-6, "%s[%d] = %.8f, expected %.8f", what, i, got[i],
                  want[i]);
}

/* One tpsgd step of the small rnn with W_hh scaled by wh_scale, against
 * the reference; `steps` is the rnn_target_steps value. */
static void check_small_rnn(float wh_scale, const char *steps)
{
    char extra[64];
    snprintf(extra, sizeof extra, "rnn_target_steps = %s\n", steps);
    tu_net n;
    plast_err e;
    tu_net_init(&n, rnn_ini(HU, HS, "last", extra), HS * HF, RC, "tpsgd", 13);
    tu_net_create_rule(&n);
    plast_layer *l = plast_model_layer(n.model, 0);
    fill_random(l->param[0].w, HU * HF, 4, 1.0f);
    fill_random(l->param[1].w, HU * HU, 5, wh_scale);
    fill_random(l->param[2].w, HU, 6, 0.3f);
    float x[HB * HS * HF];
    int32_t y[HB] = {2, 0};
    fill_random(x, HB * HS * HF, 8, 1.0f);
    plast_proj P; /* the targets the rule must use: (PROJ, 0), tanh's range */
    CHECK_OK(plast_proj_init_offset(&P, n.mem, 13, 0, RC, HU, 0.0f, 0.5f, 1, &e), e);
    rnn_ref want;
    int first = strcmp(steps, "last") ? 0 : HS - 1;
    rnn_reference(l->param[0].w, l->param[1].w, l->param[2].w, x, y, P.matrix, first, &want);
    plast_proj_fini(&P);
    float *wx = weights_copy(&l->param[0]), *wh = weights_copy(&l->param[1]);
    float *b = weights_copy(&l->param[2]);
    tu_step(&n, x, y, HB, HS * HF);
    float *gx = grad_copy(&l->param[0], wx), *gh = grad_copy(&l->param[1], wh);
    float *gb = grad_copy(&l->param[2], b);
    expect_near_double(gx, want.gx, HU * HF, "grad W_ih");
    expect_near_double(gh, want.gh, HU * HU, "grad W_hh");
    expect_near_double(gb, want.gb, HU, "grad b");
    free(wx), free(wh), free(b), free(gx), free(gh), free(gb);
    tu_net_fini(&n);
}

/* Test 6b: with W_hh = 0 every step is a dense tanh block on x_t, and the
 * gradient is the average of their gradients. */
Test(tpsgd, rnn_without_recurrence_averages_dense_steps)
{
    check_small_rnn(0.0f, "all");
}

/* With W_hh the previous state is a constant input: no BPTT term. */
Test(tpsgd, rnn_treats_the_previous_state_as_an_input)
{
    check_small_rnn(0.8f, "all");
}

/* rnn_target_steps = last: one signalled step, divided by B. */
Test(tpsgd, rnn_last_step_target)
{
    check_small_rnn(0.8f, "last");
}

/* The step API runs the layer's own arithmetic: h_S equals the layer's
 * forward bit for bit. */
Test(tpsgd, rnn_step_equals_the_layer_forward)
{
    enum { Fe = 3, S = 4, U = 5, B = 3 };
    tu_net n;
    plast_err e;
    tu_net_init(&n, rnn_ini(U, S, "last", ""), S * Fe, RC, "tpsgd", 3);
    plast_layer *l = plast_model_layer(n.model, 0);
    fill_random(l->param[2].w, U, 1, 0.3f);
    int units, steps, features, sequence;
    cr_assert(eq(int, plast_rnn_info(l, &units, &steps, &features, &sequence), PLAST_OK));
    cr_expect(units == U && steps == S && features == Fe && sequence == 0);
    cr_expect(eq(int, plast_rnn_info(plast_model_layer(n.model, 1), NULL, NULL, NULL, NULL),
                 PLAST_E_INVAL));
    float x[B * S * Fe], h[2][B * U];
    fill_random(x, B * S * Fe, 2, 1.0f);
    for (int t = 0; t < S; t++)
        plast_rnn_step(l, B, x + t * Fe, S * Fe, t ? h[(t - 1) % 2] : NULL, h[t % 2]);
    plast_ctx ctx = plast_model_ctx(n.model, 0);
    plast_tensor xt = plast_tensor_view(x, B, plast_model_input_shape(n.model));
    plast_block_run run;
    CHECK_OK(plast_block_forward(n.model, 0, &xt, &run, &ctx, &e), e);
    cr_expect(memcmp(plast_block_output(&run)->data, h[(S - 1) % 2], sizeof h[0]) == 0,
              "step-by-step h_S differs from the layer's forward");
    plast_block_release(n.model, &run, NULL);
    tu_net_fini(&n);
}

/* Stacked: each rnn is its own block with its own targets; block 0's
 * update does not depend on what reads its sequence. */
Test(tpsgd, rnn_stacked_blocks_are_local)
{
    enum { Fe = 3, S = 4, U = 5, B = 4 };
    char ini[700];
    snprintf(ini, sizeof ini,
             "[layer.r1]\ntype = rnn\nunits = %d\nsteps = %d\noutput = sequence\n"
             "[layer.r2]\ntype = rnn\nunits = 6\nsteps = %d\n"
             "[layer.out]\ntype = dense\nunits = %d\n[optimizer]\ntype = sgd\nlr = 1\n",
             U, S, S, RC);
    float x[B * S * Fe];
    int32_t y[B] = {1, 0, 2, 1};
    fill_random(x, B * S * Fe, 9, 1.0f);
    tu_net a, b;
    tu_net_init(&a, ini, S * Fe, RC, "tpsgd", 21);
    tu_net_init(&b, rnn_ini(U, S, "sequence", ""), S * Fe, RC, "tpsgd", 21);
    tu_net_create_rule(&a);
    tu_net_create_rule(&b);
    cr_assert(eq(int, plast_model_nblocks(a.model), 3));
    plast_layer *r2 = plast_model_layer(a.model, 1);
    float *w2 = weights_copy(&r2->param[0]);
    tu_step(&a, x, y, B, S * Fe);
    tu_step(&b, x, y, B, S * Fe);
    const plast_block *b0 = plast_model_block(a.model, 0);
    cr_expect(memcmp(plast_model_weights(a.model), plast_model_weights(b.model),
                     b0->param_end * sizeof(float)) == 0,
              "the first rnn's update depends on the layers above it");
    cr_expect(memcmp(w2, r2->param[0].w, r2->param[0].count * sizeof(float)) != 0,
              "the second rnn did not learn");
    cr_expect(eq(sz, plast_mem_live(a.mem, PLAST_MEM_ACTIVATIONS), 0));
    cr_expect(eq(sz, plast_mem_live(a.mem, PLAST_MEM_SCRATCH), 0));
    free(w2);
    tu_net_fini(&a);
    tu_net_fini(&b);
}

/* Test 7: peaks of one step on 784 values per sample read as T = 28 rows
 * of 28 or T = 56 of 14. */
typedef struct rnn_peaks {
    size_t watched, activations, scratch;
} rnn_peaks;

/* The memory peaks of one training step of `rule` on the model `ini`
 * (784 inputs, 10 classes), which must leave nothing behind. */
static rnn_peaks step_peaks(const char *ini, const char *rule, int batch)
{
    tu_net n;
    tu_net_init(&n, ini, 784, 10, rule, 5);
    tu_net_create_rule(&n);
    float *x = malloc((size_t)batch * 784 * sizeof *x);
    int32_t y[32];
    cr_assert(x != NULL && batch <= 32);
    fill_random(x, (size_t)batch * 784, 1, 1.0f);
    for (int i = 0; i < batch; i++)
        y[i] = i % 10;
    plast_mem_reset_peaks(n.mem);
    tu_step(&n, x, y, batch, 784);
    rnn_peaks p = {plast_mem_peak_watched(n.mem), plast_mem_peak(n.mem, PLAST_MEM_ACTIVATIONS),
                   plast_mem_peak(n.mem, PLAST_MEM_SCRATCH)};
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0), "%s leaks", rule);
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_SCRATCH), 0), "%s leaks scratch", rule);
    free(x);
    tu_net_fini(&n);
    return p;
}

static rnn_peaks rnn_step_peaks(const char *rule, int steps, int units, int batch)
{
    return step_peaks(rnn_ini_c(units, steps, "last", 10, ""), rule, batch);
}

static size_t absdiff(size_t a, size_t b)
{
    return a > b ? a - b : b - a;
}

Test(tpsgd, rnn_memory_does_not_grow_with_the_sequence)
{
    enum { B = 16, U = 32 };
    rnn_peaks t28 = rnn_step_peaks("tpsgd", 28, U, B), t56 = rnn_step_peaks("tpsgd", 56, U, B);
    cr_expect(absdiff(t28.watched, t56.watched) <= 64 * B,
              "activations+input peak %zu at T = 28, %zu at T = 56", t28.watched, t56.watched);
    cr_expect(absdiff(t28.scratch, t56.scratch) <= 64 * B, "scratch peak %zu at T = 28, %zu at 56",
              t28.scratch, t56.scratch);
    /* BPTT keeps B*T*U states: more, and growing with T */
    rnn_peaks b28 = rnn_step_peaks("bp", 28, U, B), b56 = rnn_step_peaks("bp", 56, U, B);
    cr_expect(b28.watched > t28.watched, "bp %zu, tpsgd %zu", b28.watched, t28.watched);
    cr_expect(b56.watched >= b28.watched + (size_t)B * 28 * U * sizeof(float),
              "bp's peak %zu at T = 28, %zu at T = 56", b28.watched, b56.watched);
    /* the bar: activations (the input batch aside) at most 0.15 x bp's */
    cr_expect(t28.activations * 100 <= b28.activations * 15, "tpsgd %zu bytes, bp %zu",
              t28.activations, b28.activations);
}

static void expect_refused(const char *ini, const char *msg)
{
    tu_net n;
    plast_err e;
    tu_net_init(&n, ini, 12, RC, "tpsgd", 1);
    cr_assert(eq(int, n.ops->create(&n.rule, n.model, n.rule_args, &e), PLAST_E_UNSUPPORTED));
    cr_expect(strstr(e.msg, msg) != NULL, "%s", e.msg);
    n.rule = NULL;
    tu_net_fini(&n);
}

Test(tpsgd, rnn_refusals)
{
    expect_refused(rnn_ini(4, 3, "last", "local_loss = bce\n"),
                   "tpsgd: local_loss = bce needs sigmoid units, found rnn 'r' (tanh states) in "
                   "block 0");
    expect_refused("[layer.r]\ntype = rnn\nunits = 4\nsteps = 3\n[layer.a]\ntype = tanh\n"
                   "[layer.out]\ntype = dense\nunits = 3\n",
                   "tpsgd: layer 'a' (tanh) shares block 0 with rnn 'r'");
    expect_refused("[layer.d]\ntype = dense\nunits = 6\n[layer.r]\ntype = rnn\nunits = 3\n"
                   "steps = 2\n",
                   "tpsgd: the output block's rnn 'r' would need backpropagation through time");
}

/* ---- stacked rnn blocks in one time loop (ALGORITHMS.md §4.4) ---- */

enum { SK_MAX = 3 };

/* `layers` rnn blocks of units[i] each, every one but the last handing its
 * sequence on, the last giving `top`; a dense output for `classes`. */
static const char *stack_ini(int layers, const int *units, int steps, const char *top,
                             int classes, const char *tpsgd)
{
    static char buf[1200];
    int at = 0;
    for (int i = 0; i < layers; i++)
        at += snprintf(buf + at, sizeof buf - (size_t)at,
                       "[layer.r%d]\ntype = rnn\nunits = %d\nsteps = %d\noutput = %s\n", i + 1,
                       units[i], steps, i + 1 < layers ? "sequence" : top);
    snprintf(buf + at, sizeof buf - (size_t)at,
             "[layer.out]\ntype = dense\nunits = %d\n[optimizer]\ntype = nesterov\nlr = 0.1\n"
             "[rule.tpsgd]\nlocal_loss = mse\n%s",
             classes, tpsgd);
    return buf;
}

/* One tpSGD step of the stack computed layer by layer with the step API:
 * layer i runs over the whole sequence (kept, step-major), its mse deltas
 * against P_i[label] from step `first` on go through plast_rnn_step_grad
 * (the model's own gradients: n has no rule, nothing is shared), then
 * layer i+1 reads that sequence; then the output block on the model loss
 * and one optimiser step of everything. */
static void stack_reference_step(tu_net *n, int layers, const plast_proj *P, const float *x,
                                 const int32_t *y, int B, int first)
{
    plast_model *m = n->model;
    plast_err e;
    int S, feat, Up = 0, sequence = 0;
    plast_rnn_info(plast_model_layer(m, 0), NULL, &S, &feat, NULL);
    float scale = 1.0f / ((float)B * (float)(S - first)), *seq = NULL;
    plast_optim_begin(n->optim, plast_optim_base_lr(n->optim));
    for (int i = 0; i < layers; i++) {
        plast_layer *l = plast_model_layer(m, i);
        int U;
        plast_rnn_info(l, &U, NULL, NULL, &sequence);
        size_t bu = (size_t)B * (size_t)U;
        float *hs = malloc((size_t)S * bu * sizeof *hs), *theta = malloc(bu * sizeof *theta);
        float *d = malloc(bu * sizeof *d);
        cr_assert(hs && theta && d);
        for (int s = 0; s < B; s++)
            plast_proj_row(&P[i], y[s], theta + (size_t)s * (size_t)U);
        for (int t = 0; t < S; t++) {
            const float *xt =
                i ? seq + (size_t)t * (size_t)B * (size_t)Up : x + (size_t)t * (size_t)feat;
            const float *prev = t ? hs + (size_t)(t - 1) * bu : NULL;
            int ldx = i ? Up : S * feat;
            float *h = hs + (size_t)t * bu;
            plast_rnn_step(l, B, xt, ldx, prev, h);
            for (size_t j = 0; t >= first && j < bu; j++) {
                d[j] = (h[j] - theta[j]) * scale;
                d[j] *= 1.0f - h[j] * h[j];
            }
            if (t >= first)
                plast_rnn_step_grad(l, B, d, xt, ldx, prev);
        }
        free(seq), free(theta), free(d);
        seq = hs;
        Up = U;
    }
    /* the output block reads h_S, or the sequence as [B, S, U] */
    size_t bu = (size_t)B * (size_t)Up;
    float *top = malloc((size_t)S * bu * sizeof *top);
    cr_assert(top != NULL);
    for (int s = 0; sequence && s < B; s++)
        for (int t = 0; t < S; t++)
            memcpy(top + ((size_t)s * S + t) * Up, seq + (size_t)t * bu + (size_t)s * Up,
                   (size_t)Up * sizeof *top);
    if (!sequence)
        memcpy(top, seq + (size_t)(S - 1) * bu, bu * sizeof *top);
    plast_ctx ctx = plast_model_ctx(m, 1);
    plast_tensor xo = plast_tensor_view(top, B, &plast_model_layer(m, layers - 1)->out);
    plast_block_run run;
    CHECK_OK(plast_block_forward(m, layers, &xo, &run, &ctx, &e), e);
    plast_batch bb;
    memset(&bb, 0, sizeof bb);
    bb.labels = y;
    bb.n = B;
    plast_stats st = {0, 0, 0};
    CHECK_OK(plast_rule_output_backward(m, &run, &bb, &st, &e), e);
    plast_block_release(m, &run, NULL);
    plast_model_step_all(m);
    free(seq), free(top);
}

/* N steps of tpsgd on a stack against the layer-by-layer reference from
 * the same initial weights: bit for bit, since both make the same float
 * operations in the same order (the loop only interleaves the layers; a
 * layer's x_t is h^{i-1}_t, [B, U] with ldx = U, in both). */
static void check_stack_reference(int layers, const int *units, const char *top,
                                  const char *steps)
{
    enum { Fe = 3, S = 5, B = 4, N = 6 };
    char extra[64];
    snprintf(extra, sizeof extra, "rnn_target_steps = %s\n", steps);
    const char *ini = stack_ini(layers, units, S, top, RC, extra);
    tu_net a, ref;
    plast_err e;
    tu_net_init(&a, ini, S * Fe, RC, "tpsgd", 31);
    tu_net_init(&ref, ini, S * Fe, RC, "tpsgd", 31);
    tu_net_create_rule(&a);
    cr_assert(eq(int, plast_model_nblocks(a.model), layers + 1));
    plast_proj P[SK_MAX]; /* (PROJ, i), tanh's range */
    for (int i = 0; i < layers; i++)
        CHECK_OK(plast_proj_init_offset(&P[i], ref.mem, 31, (uint32_t)i, RC, (size_t)units[i],
                                        0.0f, 0.5f, 1, &e),
                 e);
    size_t np = plast_model_nparams(a.model);
    float *w0 = malloc(np * sizeof *w0);
    cr_assert(w0 != NULL);
    memcpy(w0, plast_model_weights(a.model), np * sizeof *w0);
    cr_assert(memcmp(w0, plast_model_weights(ref.model), np * sizeof *w0) == 0);
    int first = strcmp(steps, "last") ? 0 : S - 1;
    for (int s = 0; s < N; s++) {
        float x[B * S * Fe];
        int32_t y[B];
        fill_random(x, B * S * Fe, 40 + (uint32_t)s, 1.0f);
        for (int i = 0; i < B; i++)
            y[i] = (i + s) % RC;
        tu_step(&a, x, y, B, S * Fe);
        stack_reference_step(&ref, layers, P, x, y, B, first);
    }
    for (int i = 0; i < layers; i++)
        plast_proj_fini(&P[i]);
    const float *wa = plast_model_weights(a.model), *wr = plast_model_weights(ref.model);
    for (int k = 0; k <= layers; k++) {
        const plast_block *b = plast_model_block(a.model, k);
        size_t len = (b->param_end - b->param_begin) * sizeof *wa;
        cr_expect(memcmp(wa + b->param_begin, wr + b->param_begin, len) == 0,
                  "block %d differs from the layer-by-layer reference", k);
        cr_expect(memcmp(wa + b->param_begin, w0 + b->param_begin, len) != 0,
                  "block %d did not learn: the comparison proves nothing", k);
    }
    cr_expect(eq(sz, plast_mem_live(a.mem, PLAST_MEM_ACTIVATIONS), 0));
    cr_expect(eq(sz, plast_mem_live(a.mem, PLAST_MEM_SCRATCH), 0));
    free(w0);
    tu_net_fini(&a);
    tu_net_fini(&ref);
}

/* Test (a): a sequence rnn under an rnn giving h_S. */
Test(tpsgd, rnn_stack_equals_the_layer_by_layer_reference)
{
    check_stack_reference(2, (const int[]){4, 6}, "last", "all");
    check_stack_reference(2, (const int[]){4, 6}, "last", "last");
    /* three layers, the top one handing its whole sequence to the output */
    check_stack_reference(3, (const int[]){4, 6, 3}, "sequence", "all");
}

/* Peaks of one step of a stack of `layers` rnns of 32 units on 784 values
 * per sample, read as `steps` rows. */
static rnn_peaks stack_step_peaks(int layers, int steps, int batch)
{
    const int units[SK_MAX] = {32, 32, 32};
    return step_peaks(stack_ini(layers, units, steps, "last", 10, ""), "tpsgd", batch);
}

/* Tests (b) and (c): the peak of a stack does not depend on the number of
 * steps, and no [B, S, H] sequence is stored between its layers. */
Test(tpsgd, rnn_stack_memory_does_not_grow_with_the_sequence)
{
    enum { B = 16, H = 32 };
    for (int layers = 2; layers <= 3; layers++) {
        rnn_peaks t28 = stack_step_peaks(layers, 28, B), t56 = stack_step_peaks(layers, 56, B);
        cr_expect(eq(sz, t28.watched, t56.watched),
                  "%d layers: activations+input peak %zu at S = 28, %zu at S = 56", layers,
                  t28.watched, t56.watched);
        cr_expect(eq(sz, t28.activations, t56.activations));
        cr_expect(eq(sz, t28.scratch, t56.scratch), "%d layers: scratch %zu at 28, %zu at 56",
                  layers, t28.scratch, t56.scratch);
        /* the sequence one layer hands to the next would be B*S*H floats */
        cr_expect(lt(sz, t28.activations, (size_t)B * 28 * H * sizeof(float)),
                  "%d layers: activations peak %zu", layers, t28.activations);
    }
}

/* The pass's PLAST_BLOCK_DONE: the block's input goes on as its output,
 * the same buffer, freed once. */
typedef struct done_probe {
    int done[3];              /* blocks the runner reports done */
    const float *out0;        /* block 0's output */
    const float *seen[3];     /* each block's input, as visit or the runner saw it */
    int visits;
} done_probe;

static int probe_runner(void *user, int k, const plast_tensor *x, plast_tensor *y, plast_err *e)
{
    done_probe *p = user;
    (void)y, (void)e;
    p->seen[k] = x->data;
    return p->done[k] ? PLAST_BLOCK_DONE : PLAST_BLOCK_DEFAULT;
}

static int probe_visit(void *user, int k, plast_block_run *run, plast_err *e)
{
    done_probe *p = user;
    (void)e;
    p->visits++;
    if (k == 0)
        p->out0 = plast_block_output(run)->data;
    return PLAST_OK;
}

static void run_probe(done_probe *p)
{
    tu_net n;
    plast_err e;
    tu_net_init(&n, "[layer.a]\ntype = dense\nunits = 6\n[layer.b]\ntype = dense\nunits = 6\n"
                    "[layer.out]\ntype = dense\nunits = 3\n",
                6, 3, "tpsgd", 1);
    cr_assert(eq(int, plast_model_nblocks(n.model), 3));
    plast_batch b;
    memset(&b, 0, sizeof b);
    int32_t *lab = plast_mem_alloc(n.mem, PLAST_MEM_INPUT, 4 * sizeof *lab);
    cr_assert(lab != NULL);
    memset(lab, 0, 4 * sizeof *lab);
    CHECK_OK(plast_tensor_alloc(&b.x, n.mem, PLAST_MEM_INPUT, 4, &n.in, &e), e);
    plast_tensor_zero(&b.x);
    b.labels = lab;
    b.n = 4;
    const float *input = b.x.data;
    CHECK_OK(plast_model_local_pass2(n.model, &b, probe_visit, probe_runner, p, &e), e);
    cr_expect(b.x.data == NULL, "the batch still holds its input");
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_INPUT), 4 * sizeof *lab),
              "the batch input was not freed exactly once");
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0));
    cr_expect(p->seen[0] == input);
    plast_mem_free(n.mem, lab);
    tu_net_fini(&n);
}

Test(tpsgd, local_pass_moves_a_done_blocks_input_on)
{
    done_probe mid = {{0, 1, 0}, NULL, {NULL, NULL, NULL}, 0};
    run_probe(&mid);
    cr_expect(eq(int, mid.visits, 2), "visit ran for a done block");
    cr_expect(mid.out0 != NULL && mid.seen[1] == mid.out0 && mid.seen[2] == mid.out0,
              "block 1 did not hand block 0's output on as it is");
    /* every block done: the batch input goes through to the end */
    done_probe all = {{1, 1, 1}, NULL, {NULL, NULL, NULL}, 0};
    run_probe(&all);
    cr_expect(eq(int, all.visits, 0));
    cr_expect(all.seen[1] == all.seen[0] && all.seen[2] == all.seen[0]);
}

/* Every allocation of creating the rule and training a stack, failed in
 * turn: PLAST_E_NOMEM and nothing left behind. */
static int stack_attempt(uint64_t fail, uint64_t *made)
{
    enum { Fe = 3, S = 4, B = 3 };
    const int units[2] = {4, 5};
    tu_net n;
    plast_err e;
    tu_net_init(&n, stack_ini(2, units, S, "last", RC, ""), S * Fe, RC, "tpsgd", 3);
    plast_batch b;
    memset(&b, 0, sizeof b);
    int32_t lab[B] = {0, 2, 1};
    CHECK_OK(plast_tensor_alloc(&b.x, n.mem, PLAST_MEM_INPUT, B, &n.in, &e), e);
    fill_random(b.x.data, B * S * Fe, 2, 1.0f);
    b.labels = lab;
    b.n = B;
    plast_stats st = {0, 0, 0};
    uint64_t before = plast_mem_alloc_count(n.mem);
    plast_mem_fail_at(n.mem, fail);
    int rc = n.ops->create(&n.rule, n.model, n.rule_args, &e);
    if (rc)
        n.rule = NULL;
    plast_optim_begin(n.optim, plast_optim_base_lr(n.optim));
    if (!rc)
        rc = n.ops->train_batch(n.rule, &b, &st, &e);
    *made = plast_mem_alloc_count(n.mem) - before;
    cr_expect(rc == PLAST_OK || rc == PLAST_E_NOMEM, "allocation %llu: status %d (%s)",
              (unsigned long long)fail, rc, e.msg);
    plast_tensor_free(&b.x);
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_ACTIVATIONS), 0), "allocation %llu",
              (unsigned long long)fail);
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_SCRATCH), 0), "allocation %llu",
              (unsigned long long)fail);
    n.ops->destroy(n.rule);
    n.rule = NULL;
    cr_expect(eq(sz, plast_mem_live(n.mem, PLAST_MEM_RULE), 0), "allocation %llu",
              (unsigned long long)fail);
    tu_net_fini(&n);
    return rc;
}

Test(tpsgd, rnn_stack_fails_cleanly_at_every_allocation)
{
    uint64_t total, made;
    cr_assert(eq(int, stack_attempt(0, &total), PLAST_OK));
    cr_assert(gt(u64, total, 5));
    for (uint64_t n = 1; n <= total; n++) {
        cr_expect(eq(int, stack_attempt(n, &made), PLAST_E_NOMEM), "allocation %llu of %llu",
                  (unsigned long long)n, (unsigned long long)total);
        cr_expect(ge(u64, made, n));
    }
}

/* ---- tpSGD conv_target = channel and proj_scale (ALGORITHMS.md §4.3, §4.4) ---- */

/* A broadcast projection row is the plain projection's row of `entries`
 * values, each repeated over `repeat` consecutive positions, stored or
 * regenerated, through plast_proj_row and plast_proj_select alike; only
 * [classes, entries] is stored. */
Test(tpsgd, proj_repeat_broadcasts_each_entry)
{
    enum { Cl = 3, En = 4, Rep = 5 };
    plast_mem *mem;
    plast_err e;
    CHECK_OK(plast_mem_create(&mem, &e), e);
    plast_proj plain, rep, regen;
    CHECK_OK(plast_proj_init_offset(&plain, mem, 9, 2, Cl, En, 0.5f, 0.3f, 1, &e), e);
    size_t before = plast_mem_live(mem, PLAST_MEM_RULE);
    CHECK_OK(plast_proj_init_repeat(&rep, mem, 9, 2, Cl, En, Rep, 0.5f, 0.3f, 1, &e), e);
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_RULE) - before,
                 (size_t)Cl * En * sizeof(float)));
    CHECK_OK(plast_proj_init_repeat(&regen, mem, 9, 2, Cl, En, Rep, 0.5f, 0.3f, 0, &e), e);
    cr_expect(eq(sz, rep.n, (size_t)En * Rep));
    float want[En], got[En * Rep], sel[2 * En * Rep];
    const int32_t labels[2] = {2, 1};
    plast_proj_select(&rep, labels, 2, 2.0f, sel);
    for (int c = 0; c < Cl; c++) {
        plast_proj_row(&plain, c, want);
        for (int v = 0; v < 2; v++) {
            plast_proj_row(v ? &regen : &rep, c, got);
            for (int j = 0; j < En * Rep; j++)
                cr_expect(got[j] == want[j / Rep], "%s class %d position %d: %g, expected %g",
                          v ? "regen" : "matrix", c, j, got[j], want[j / Rep]);
        }
        for (int i = 0; i < 2; i++)
            for (int j = 0; c == labels[i] && j < En * Rep; j++)
                cr_expect(sel[i * En * Rep + j] == 2.0f * want[j / Rep], "select %d, %d", i, j);
    }
    cr_expect(eq(int, plast_proj_init_repeat(&regen, mem, 9, 2, Cl, En, 0, 0, 1, 0, &e),
                 PLAST_E_INVAL));
    plast_proj_fini(&plain);
    plast_proj_fini(&rep);
    plast_proj_fini(&regen);
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_RULE), 0));
    plast_mem_destroy(mem);
}

/* A conv block of [3, side, side] maps (kernel 3, padding 1, tanh) and a
 * dense output for 3 classes; SGD at lr 1. */
static const char *conv_tpsgd_ini(int padding, const char *pool, const char *tpsgd)
{
    static char buf[600];
    snprintf(buf, sizeof buf,
             "[layer.c1]\ntype = conv2d\nchannels = 3\nkernel = 3\npadding = %d\n"
             "[layer.a1]\ntype = tanh\n%s%s%s"
             "[layer.out]\ntype = dense\nunits = 3\n[optimizer]\ntype = sgd\nlr = 1\n"
             "[rule.tpsgd]\n%s",
             padding, pool ? "[layer.p1]\ntype = " : "", pool ? pool : "",
             pool ? "\nkernel = 2\n" : "", tpsgd);
    return buf;
}

/* The weights after `steps` tpsgd steps on side x side images (malloc'd);
 * *rule_bytes: the rule category after create. */
static float *conv_tpsgd_weights(const char *ini, int side, int steps, size_t *np,
                                 size_t *rule_bytes)
{
    enum { B = 4 };
    tu_net n;
    plast_shape in = {3, {1, side, side}};
    tu_net_init_shape(&n, ini, &in, 3, "tpsgd", 4);
    size_t r0 = plast_mem_live(n.mem, PLAST_MEM_RULE);
    tu_net_create_rule(&n);
    *rule_bytes = plast_mem_live(n.mem, PLAST_MEM_RULE) - r0;
    size_t per = (size_t)side * (size_t)side;
    float *x = malloc(B * per * sizeof *x);
    cr_assert(x != NULL);
    for (int s = 0; s < steps; s++) {
        int32_t y[B] = {s % 3, (s + 1) % 3, 2, 0};
        fill_random(x, B * per, 60 + (uint32_t)s, 1.0f);
        tu_step(&n, x, y, B, (int)per);
    }
    free(x);
    *np = plast_model_nparams(n.model);
    float *w = malloc(*np * sizeof *w);
    cr_assert(w != NULL);
    memcpy(w, plast_model_weights(n.model), *np * sizeof *w);
    tu_net_fini(&n);
    return w;
}

/* With H*W = 1 (3x3 images, no padding) a channel is a single unit: channel
 * and map draw the same targets and train bit for bit alike; dense blocks
 * ignore the setting. */
Test(tpsgd, conv_channel_with_one_position_equals_map)
{
    const char *modes[2] = {"conv_target = map\n", "conv_target = channel\n"};
    float *w[2];
    size_t np[2], rule[2];
    char ini[600];
    for (int v = 0; v < 2; v++) {
        snprintf(ini, sizeof ini, "%s", conv_tpsgd_ini(0, NULL, modes[v]));
        w[v] = conv_tpsgd_weights(ini, 3, 10, &np[v], &rule[v]);
    }
    cr_assert(eq(sz, np[0], np[1]));
    cr_expect(memcmp(w[0], w[1], np[0] * sizeof(float)) == 0, "channel differs from map at 1x1");
    cr_expect(eq(sz, rule[0], rule[1]));
    free(w[0]), free(w[1]);
    size_t na, nb;
    float *a = weights_after("tpsgd", "[rule.tpsgd]\nconv_target = map\n", 20, &na);
    float *b = weights_after("tpsgd", "[rule.tpsgd]\nconv_target = channel\n", 20, &nb);
    cr_assert(eq(sz, na, nb));
    cr_expect(memcmp(a, b, na * sizeof *a) == 0, "conv_target changed a dense net");
    free(a), free(b);
}

/* The stored projection of a [3, 6, 6] conv block: 3 x 108 floats per
 * class with map, 3 x 3 with channel (H*W = 36 times less); regen stores
 * none either way. */
Test(tpsgd, conv_channel_projection_is_hw_times_smaller)
{
    size_t np, map, chan;
    char ini[600];
    snprintf(ini, sizeof ini, "%s", conv_tpsgd_ini(1, "maxpool", "conv_target = map\n"));
    free(conv_tpsgd_weights(ini, 6, 0, &np, &map));
    snprintf(ini, sizeof ini, "%s", conv_tpsgd_ini(1, "maxpool", "conv_target = channel\n"));
    free(conv_tpsgd_weights(ini, 6, 0, &np, &chan));
    cr_expect(eq(sz, map - chan, (size_t)3 * 3 * (36 - 1) * sizeof(float)), "map %zu, channel %zu",
              map, chan);
    size_t regen;
    snprintf(ini, sizeof ini, "%s",
             conv_tpsgd_ini(1, "maxpool", "conv_target = channel\nproj_store = regen\n"));
    free(conv_tpsgd_weights(ini, 6, 0, &np, &regen));
    cr_expect(eq(sz, chan - regen, (size_t)3 * 3 * sizeof(float)));
}

/* One channel-mode step of a conv net equals the core's local signal for
 * a map-sized P whose row c is the channel targets of (PROJ, 0), drawn
 * with `bound` around 0 (the mode changes neither the range nor the He
 * bound of the whole map), written at every position of each channel, by
 * hand here; with lr 1 the step subtracts that gradient, bit for bit. */
static void check_channel_step(const char *loss_key, plast_local_loss loss, float bound)
{
    enum { B = 2, Ch = 3, HW = 36, N = Ch * HW };
    plast_shape in = {3, {1, 6, 6}};
    tu_net ref, n;
    plast_err e;
    char cfg[100];
    snprintf(cfg, sizeof cfg, "conv_target = channel\nlocal_loss = %s\n", loss_key);
    const char *ini = conv_tpsgd_ini(1, "maxpool", cfg);
    tu_net_init_shape(&ref, ini, &in, 3, "tpsgd", 4);
    tu_net_init_shape(&n, ini, &in, 3, "tpsgd", 4);
    tu_net_create_rule(&n);
    float x[B * HW], entries[3 * Ch], map[3 * N];
    int32_t y[B] = {2, 0};
    fill_random(x, B * HW, 70, 1.0f);
    plast_proj P;
    CHECK_OK(plast_proj_init_offset(&P, ref.mem, 4, 0, 3, Ch, 0.0f, bound, 1, &e), e);
    for (int c = 0; c < 3; c++)
        plast_proj_row(&P, c, entries + c * Ch);
    plast_proj_fini(&P);
    for (int c = 0; c < 3; c++)
        for (int ch = 0; ch < Ch; ch++)
            for (int p = 0; p < HW; p++)
                map[c * N + ch * HW + p] = entries[c * Ch + ch];
    plast_proj M;
    memset(&M, 0, sizeof M);
    M.classes = 3;
    M.n = N;
    M.matrix = map;
    plast_ctx ctx = plast_model_ctx(ref.model, 1);
    plast_tensor xt = plast_tensor_view(x, B, &in);
    plast_block_run run;
    CHECK_OK(plast_block_forward(ref.model, 0, &xt, &run, &ctx, &e), e);
    CHECK_OK(plast_local_backward(ref.model, &run, &M, y, B, loss, 1.0f / B, &e), e);
    plast_block_release(ref.model, &run, NULL);
    tu_step(&n, x, y, B, HW);
    const plast_block *b0 = plast_model_block(n.model, 0);
    const float *w = plast_model_weights(ref.model), *got = plast_model_weights(n.model);
    const float *g = plast_model_grads(ref.model);
    float moved = 0;
    for (size_t i = b0->param_begin; i < b0->param_end; i++) {
        cr_expect(got[i] == w[i] - g[i], "%s: conv parameter %zu: %.9g, expected %.9g", loss_key,
                  i, got[i], w[i] - g[i]);
        moved += fabsf(g[i]);
    }
    cr_expect(moved > 1e-3f, "%s: no gradient: the comparison proves nothing", loss_key);
    tu_net_fini(&ref);
    tu_net_fini(&n);
}

Test(tpsgd, conv_channel_step_equals_broadcast_targets)
{
    check_channel_step("mse", PLAST_LOCAL_MSE, 0.5f); /* target_uniform, tanh */
    check_channel_step("linear", PLAST_LOCAL_LINEAR, plast_proj_he_bound(3 * 36));
}

/* The targets of a relu block with W = 0 and b = 1 (z = 1, relu' = 1):
 * with local_loss = linear the bias gradient of one example is its
 * target row, so b steps to 1 - P[c] (SGD at lr 1, B = 1). */
static void proj_rows_of(const char *tpsgd, float *rows)
{
    enum { Fe = 5, U = 4 };
    char ini[500];
    snprintf(ini, sizeof ini,
             "[layer.h]\ntype = dense\nunits = %d\n[layer.a]\ntype = relu\n"
             "[layer.out]\ntype = dense\nunits = 3\n[optimizer]\ntype = sgd\nlr = 1\n"
             "[rule.tpsgd]\nlocal_loss = linear\n%s",
             U, tpsgd);
    tu_net n;
    tu_net_init(&n, ini, Fe, 3, "tpsgd", 17);
    tu_net_create_rule(&n);
    plast_layer *h = plast_model_layer(n.model, 0);
    float x[Fe];
    fill_random(x, Fe, 3, 1.0f);
    for (int c = 0; c < 3; c++) {
        const int32_t y[1] = {c};
        memset(h->param[0].w, 0, U * Fe * sizeof(float));
        for (int u = 0; u < U; u++)
            h->param[1].w[u] = 1.0f;
        tu_step(&n, x, y, 1, Fe);
        for (int u = 0; u < U; u++)
            rows[c * U + u] = 1.0f - h->param[1].w[u];
    }
    tu_net_fini(&n);
}

/* proj_scale stretches P around its offset: (P - offset) * s + offset,
 * for target_uniform (relu: offset 0.5) and he_uniform (offset 0). */
Test(tpsgd, proj_scale_multiplies_the_spread)
{
    const char *dist[2] = {"proj_dist = target_uniform\n", "proj_dist = he_uniform\n"};
    const float offset[2] = {0.5f, 0.0f};
    for (int d = 0; d < 2; d++) {
        float one[12], two[12];
        char cfg[120];
        proj_rows_of(dist[d], one);
        snprintf(cfg, sizeof cfg, "%sproj_scale = 2\n", dist[d]);
        proj_rows_of(cfg, two);
        float spread = 0;
        for (int i = 0; i < 12; i++) {
            float want = (one[i] - offset[d]) * 2.0f + offset[d];
            cr_expect(fabsf(two[i] - want) <= 1e-6f, "%sentry %d: %.8f, expected %.8f", dist[d],
                      i, two[i], want);
            spread += fabsf(one[i] - offset[d]);
        }
        cr_expect(spread > 0.1f, "%sthe targets sit at the offset", dist[d]);
    }
}

/* Bad values of the new keys are refused naming the key. */
Test(tpsgd, refuses_bad_conv_target_and_proj_scale)
{
    const char *bad[] = {"conv_target = pixel\n", "proj_scale = 0\n", "proj_scale = -1\n",
                         "proj_scale = two\n", "proj_scale = inf\n"};
    const char *key[] = {"conv_target", "proj_scale", "proj_scale", "proj_scale", "proj_scale"};
    plast_registry *reg = tu_registry();
    const plast_rule_ops *ops = tu_rule(reg, "tpsgd");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char ini[200];
        snprintf(ini, sizeof ini, "[rule.tpsgd]\n%s", bad[i]);
        plast_config *cfg = tu_config(ini);
        plast_args *a = NULL;
        plast_err e;
        cr_expect(ne(int, plast_args_parse(&a, cfg, "rule.tpsgd", ops->settings, NULL, NULL, &e),
                     PLAST_OK),
                  "%s accepted", bad[i]);
        cr_expect(strstr(e.msg, key[i]) != NULL, "%s: %s", bad[i], e.msg);
        plast_args_destroy(a);
        plast_config_destroy(cfg);
    }
    plast_registry_destroy(reg);
}
