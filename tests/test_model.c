/* test_model.c - building a model from INI text, its blocks and flat
 * parameters, block-by-block execution and its memory. */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <math.h>
#include <stdint.h>

#include "testutil.h"

static const char *const mlp = "[layer.flat]\ntype = flatten\n"
                               "[layer.h1]\ntype = dense\nunits = 6\n[layer.a1]\ntype = tanh\n"
                               "[layer.h2]\ntype = dense\nunits = 5\n[layer.a2]\ntype = relu\n"
                               "[layer.out]\ntype = dense\nunits = 3\n";

/* Build a model; the caller destroys the model, then *mem and *reg. */
static plast_model *build(const char *ini, plast_registry **reg, plast_mem **mem, plast_err *e,
                          int *rc)
{
    plast_config *c = tu_config(ini);
    *reg = tu_registry();
    plast_mem_create(mem, e);
    plast_shape in = {3, {1, 2, 4}};
    plast_model *m = NULL;
    *rc = plast_model_create(&m, c, *reg, &in, 3, 42, *mem, e);
    plast_config_destroy(c);
    return m;
}

Test(model, blocks_and_params)
{
    plast_registry *reg;
    plast_mem *mem;
    plast_err e;
    int rc;
    plast_model *m = build(mlp, &reg, &mem, &e, &rc);
    CHECK_OK(rc, e);
    cr_assert(eq(int, plast_model_nlayers(m), 6));
    cr_assert(eq(int, plast_model_nblocks(m), 3));
    const plast_block *b0 = plast_model_block(m, 0), *b1 = plast_model_block(m, 1),
                      *b2 = plast_model_block(m, 2);
    /* the leading flatten joins block 0 */
    cr_expect(b0->first == 0 && b0->last == 2 && b0->trainable == 1 && b0->inject == 2);
    cr_expect(b1->first == 3 && b1->last == 4 && b1->trainable == 3 && b1->inject == 4);
    cr_expect(b2->first == 5 && b2->last == 5 && b2->trainable == 5 && b2->inject == -1);
    /* parameters: 8*6+6, 6*5+5, 5*3+3, each 64-byte aligned */
    size_t want = 0;
    for (int i = 0; i < plast_model_nlayers(m); i++) {
        plast_layer *l = plast_model_layer(m, i);
        for (int p = 0; p < l->nparams; p++) {
            cr_expect(eq(sz, (uintptr_t)l->param[p].w % 64, 0));
            cr_expect(eq(sz, (uintptr_t)l->param[p].g % 64, 0));
            want += l->param[p].count;
        }
    }
    cr_expect(eq(sz, want, (size_t)(8 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3)));
    cr_expect(plast_model_nparams(m) >= want);
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_WEIGHTS), plast_model_nparams(m) * 4));
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_GRADIENTS), plast_model_nparams(m) * 4));
    cr_expect(b0->param_end == b1->param_begin && b1->param_end == b2->param_begin);
    cr_expect(eq(int, plast_model_find_layer(m, "h2"), 3));
    cr_expect(eq(int, plast_model_find_layer(m, "nope"), -1));
    plast_model_destroy(m);
    cr_expect(eq(sz, plast_mem_live_total(mem), 0));
    plast_mem_destroy(mem);
    plast_registry_destroy(reg);
}

Test(model, init_is_deterministic_and_bounded)
{
    plast_registry *reg;
    plast_mem *mem;
    plast_err e;
    int rc;
    plast_registry *reg_b;
    plast_mem *mem_b;
    plast_model *a = build(mlp, &reg, &mem, &e, &rc);
    CHECK_OK(rc, e);
    plast_model *b = build(mlp, &reg_b, &mem_b, &e, &rc);
    CHECK_OK(rc, e);
    cr_expect(memcmp(plast_model_weights(a), plast_model_weights(b),
                     plast_model_nparams(a) * sizeof(float)) == 0);
    plast_layer *h1 = plast_model_layer(a, 1);
    float bound = 1.0f / sqrtf(8.0f);
    for (size_t i = 0; i < h1->param[0].count; i++)
        cr_expect(fabsf(h1->param[0].w[i]) <= bound);
    plast_model_destroy(a);
    plast_model_destroy(b);
    plast_mem_destroy(mem);
    plast_mem_destroy(mem_b);
    plast_registry_destroy(reg);
    plast_registry_destroy(reg_b);
}

/* Build INI text that must fail; returns the formatted error. */
static int build_error(const char *ini, char *buf, size_t n)
{
    plast_registry *reg;
    plast_mem *mem;
    plast_err e;
    int rc;
    plast_model *m = build(ini, &reg, &mem, &e, &rc);
    cr_assert(m == NULL);
    plast_err_format(&e, buf, n);
    plast_mem_destroy(mem);
    plast_registry_destroy(reg);
    return rc;
}

Test(model, errors_name_the_section)
{
    char buf[600];
    cr_expect(eq(int, build_error("[layer.h]\ntype = dense\nunits = 4\n[layer.x]\ntype = conv9\n",
                                  buf, sizeof buf),
                 PLAST_E_PARSE));
    cr_expect(eq(str, buf,
                 "test.ini:5: [layer.x] type: expected one of dense, relu, tanh, sigmoid, "
                 "flatten, add, batchnorm, conv2d, maxpool, avgpool, gap, rnn, dropout, found "
                 "\"conv9\""));
    cr_expect(eq(int, build_error("[layer.h]\ntype = dense\nunits = 4\n", buf, sizeof buf),
                 PLAST_E_PARSE));
    cr_expect(eq(str, buf,
                 "test.ini:2: [layer.h] the last layer must give 3 outputs (one per class), it "
                 "gives 4"));
    build_error("[layer.h]\nunits = 4\n", buf, sizeof buf);
    cr_expect(eq(str, buf, "test.ini:1: [layer.h] missing required key 'type'"));
    build_error("[layer.h]\ntype = dense\nunits = 3\n[layer.a]\ntype = relu\nfrozen = true\n",
                buf, sizeof buf);
    cr_expect(eq(str, buf, "test.ini:6: [layer.a] frozen: layer type 'relu' has no parameters"));
}

/* In-place activations share the dense output; a view shares its input;
 * release hands the last output over; backward frees what it consumes. */
Test(model, block_memory)
{
    plast_registry *reg;
    plast_mem *mem;
    plast_err e;
    int rc;
    plast_model *m = build(mlp, &reg, &mem, &e, &rc);
    CHECK_OK(rc, e);
    plast_ctx ctx = plast_model_ctx(m, 1);
    const int B = 4;
    plast_tensor x;
    CHECK_OK(plast_tensor_alloc(&x, mem, PLAST_MEM_INPUT, B, plast_model_input_shape(m), &e), e);
    for (size_t i = 0; i < x.size; i++)
        x.data[i] = (float)i / (float)x.size;
    plast_block_run run;
    CHECK_OK(plast_block_forward(m, 0, &x, &run, &ctx, &e), e);
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_ACTIVATIONS), (size_t)B * 6 * 4));
    cr_expect(plast_block_layer_output(&run, 1)->data == plast_block_layer_output(&run, 2)->data);
    cr_expect(plast_block_layer_output(&run, 0)->data == x.data);
    plast_tensor kept;
    plast_block_release(m, &run, &kept);
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_ACTIVATIONS), (size_t)B * 6 * 4));
    cr_expect(kept.owner == mem && kept.dim[0] == B && kept.dim[1] == 6);
    /* block 1 with backward from its activation, input gradient wanted */
    CHECK_OK(plast_block_forward(m, 1, &kept, &run, &ctx, &e), e);
    plast_tensor dy, dx;
    CHECK_OK(plast_tensor_alloc_dims(&dy, mem, PLAST_MEM_ACTIVATIONS, 2, (int[]){B, 5}, &e), e);
    for (size_t i = 0; i < dy.size; i++)
        dy.data[i] = 1.0f;
    CHECK_OK(plast_block_backward(m, &run, 4, &dy, &dx, &ctx, &e), e);
    cr_expect(dy.data == NULL, "dy was consumed");
    cr_expect(dx.dim[0] == B && dx.dim[1] == 6 && dx.owner == mem);
    plast_block_release(m, &run, NULL);
    plast_tensor_free(&dx);
    plast_tensor_free(&kept);
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_ACTIVATIONS), 0));
    /* the flat gradients of block 1 are set, block 0's are not */
    const plast_block *b0 = plast_model_block(m, 0), *b1 = plast_model_block(m, 1);
    int nz0 = 0, nz1 = 0;
    for (size_t i = b0->param_begin; i < b0->param_end; i++)
        nz0 += plast_model_grads(m)[i] != 0;
    for (size_t i = b1->param_begin; i < b1->param_end; i++)
        nz1 += plast_model_grads(m)[i] != 0;
    cr_expect(eq(int, nz0, 0));
    cr_expect(nz1 > 0);
    plast_tensor_free(&x);
    plast_model_destroy(m);
    plast_mem_destroy(mem);
    plast_registry_destroy(reg);
}

/* predict equals running the blocks, and frees as it goes. */
Test(model, predict_matches_blocks)
{
    plast_registry *reg;
    plast_mem *mem;
    plast_err e;
    int rc;
    plast_model *m = build(mlp, &reg, &mem, &e, &rc);
    CHECK_OK(rc, e);
    plast_ctx ctx = plast_model_ctx(m, 0);
    plast_tensor x, y;
    CHECK_OK(plast_tensor_alloc(&x, mem, PLAST_MEM_INPUT, 3, plast_model_input_shape(m), &e), e);
    for (size_t i = 0; i < x.size; i++)
        x.data[i] = sinf((float)i);
    plast_mem_reset_peaks(mem);
    CHECK_OK(plast_model_predict(m, &x, &y, &e), e);
    /* at most two layer outputs alive at once: 3*(6+5) floats */
    cr_expect(plast_mem_peak(mem, PLAST_MEM_ACTIVATIONS) <= (size_t)3 * (6 + 5) * 4);
    plast_tensor in = x, kept, feat;
    in.owner = NULL;
    int K = plast_model_nblocks(m);
    CHECK_OK(plast_model_forward_blocks(m, &x, K - 1, &feat, &e), e);
    for (int k = 0; k < K; k++) {
        plast_block_run run;
        CHECK_OK(plast_block_forward(m, k, &in, &run, &ctx, &e), e);
        plast_block_release(m, &run, &kept);
        if (k)
            plast_tensor_free(&in);
        in = kept;
        if (k == K - 2) { /* the features before the last block */
            cr_expect(eq(sz, in.size, feat.size));
            cr_expect(memcmp(in.data, feat.data, feat.size * 4) == 0);
        }
    }
    plast_tensor_free(&feat);
    cr_expect(eq(int, plast_model_forward_blocks(m, &x, K + 1, &feat, &e), PLAST_E_INVAL));
    cr_expect(eq(int, plast_model_forward_blocks(m, &x, 0, &feat, &e), PLAST_E_INVAL));
    cr_expect(eq(sz, in.size, y.size));
    cr_expect(memcmp(in.data, y.data, y.size * 4) == 0);
    plast_tensor_free(&in);
    plast_tensor_free(&y);
    plast_tensor_free(&x);
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_ACTIVATIONS), 0));
    plast_model_destroy(m);
    plast_mem_destroy(mem);
    plast_registry_destroy(reg);
}

/* ---- topology: input =, from =, block = ---- */

static const char *const resnet_ini =
    "[layer.h0]\ntype = dense\nunits = 6\n[layer.a0]\ntype = tanh\n"
    "[layer.h1]\ntype = dense\nunits = 6\nblock = r1\n"
    "[layer.a1]\ntype = tanh\nblock = r1\n"
    "[layer.h2]\ntype = dense\nunits = 6\nblock = r1\n"
    "[layer.r1]\ntype = add\nfrom = a0\nblock = r1\n"
    "[layer.a2]\ntype = tanh\n"
    "[layer.out]\ntype = dense\nunits = 3\n";

/* sum(r * logits) through the whole model, in double. */
static double model_loss(plast_model *m, const plast_tensor *x, const float *r)
{
    plast_tensor y;
    plast_err e;
    CHECK_OK(plast_model_predict(m, x, &y, &e), e);
    double s = 0;
    for (size_t i = 0; i < y.size; i++)
        s += (double)r[i] * y.data[i];
    plast_tensor_free(&y);
    return s;
}

/* The gradient of model_loss by back-propagation through the blocks. */
static void model_grads(plast_model *m, const plast_tensor *x, const float *r)
{
    plast_err e;
    plast_ctx ctx = plast_model_ctx(m, 1);
    int K = plast_model_nblocks(m);
    plast_block_run runs[8];
    const plast_tensor *in = x;
    for (int k = 0; k < K; k++) {
        CHECK_OK(plast_block_forward(m, k, in, &runs[k], &ctx, &e), e);
        in = plast_block_output(&runs[k]);
    }
    plast_tensor dy, dx;
    CHECK_OK(plast_tensor_alloc_dims(&dy, ctx.mem, PLAST_MEM_ACTIVATIONS, in->ndim, in->dim, &e), e);
    memcpy(dy.data, r, dy.size * sizeof *r);
    for (int k = K - 1; k >= 0; k--) {
        CHECK_OK(plast_block_backward(m, &runs[k], runs[k].first + runs[k].n - 1, &dy,
                                      k ? &dx : NULL, &ctx, &e),
                 e);
        plast_block_release(m, &runs[k], NULL);
        dy = dx;
    }
}

/* Back-propagation through the blocks equals central differences of
 * sum(r * logits) on every weight (ALGORITHMS.md §2 test 2). */
static void check_model_gradient(const char *ini, const plast_shape *in, int classes)
{
    plast_config *c = tu_config(ini);
    plast_registry *reg = tu_registry();
    plast_mem *mem;
    plast_err e;
    plast_mem_create(&mem, &e);
    plast_model *m;
    CHECK_OK(plast_model_create(&m, c, reg, in, classes, 7, mem, &e), e);
    const int B = 3;
    plast_tensor x;
    CHECK_OK(plast_tensor_alloc(&x, mem, PLAST_MEM_INPUT, B, in, &e), e);
    float r[3 * 16];
    plast_rng g;
    plast_rng_seed(&g, 1, 2);
    for (size_t i = 0; i < x.size; i++)
        x.data[i] = plast_rng_uniform(&g, -1, 1);
    for (int i = 0; i < B * classes; i++)
        r[i] = plast_rng_uniform(&g, -1, 1);
    model_grads(m, &x, r);
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_ACTIVATIONS), 0));
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_SCRATCH), 0));
    double dot = 0, na = 0, nb = 0;
    int bad = 0;
    for (int li = 0; li < plast_model_nlayers(m); li++) {
        plast_layer *l = plast_model_layer(m, li);
        for (int p = 0; p < l->nparams; p++) {
            if (!l->param[p].g)
                continue; /* a buffer */
            for (size_t i = 0; i < l->param[p].count; i++) {
                float *wi = &l->param[p].w[i], old = *wi;
                *wi = old + 1e-3f;
                double up = model_loss(m, &x, r);
                *wi = old - 1e-3f;
                double down = model_loss(m, &x, r);
                *wi = old;
                double fd = (up - down) / 2e-3, an = l->param[p].g[i];
                dot += fd * an, na += fd * fd, nb += an * an;
                if (fabs(fd) > 1e-2 && fabs(fd - an) / fabs(fd) > 2e-2 && bad++ < 5)
                    cr_expect(0, "%s.%s[%zu]: fd %g, bp %g", l->name, l->param[p].name, i, fd,
                              an);
            }
        }
    }
    cr_expect(dot / sqrt(na * nb) > 0.999, "gradient cosine %g", dot / sqrt(na * nb));
    plast_tensor_free(&x);
    plast_model_destroy(m);
    plast_mem_destroy(mem);
    plast_registry_destroy(reg);
    plast_config_destroy(c);
}

Test(model, residual_blocks_and_their_gradient)
{
    plast_config *c = tu_config(resnet_ini);
    plast_registry *reg = tu_registry();
    plast_mem *mem;
    plast_err e;
    plast_mem_create(&mem, &e);
    plast_shape in = {1, {5}};
    plast_model *m;
    CHECK_OK(plast_model_create(&m, c, reg, &in, 3, 7, mem, &e), e);
    cr_assert(eq(int, plast_model_nblocks(m), 3));
    const plast_block *b1 = plast_model_block(m, 1);
    cr_expect(b1->first == 2 && b1->last == 6 && b1->trainable == 2 && b1->inject == 3);
    cr_expect(eq(int, plast_model_layer_input(m, 5, 1), 1)); /* r1 from a0 */
    cr_expect(eq(int, plast_model_consumers(m, 1), 2));      /* a0 feeds h1 and r1 */
    plast_model_destroy(m);
    plast_mem_destroy(mem);
    plast_registry_destroy(reg);
    plast_config_destroy(c);
    check_model_gradient(resnet_ini, &in, 3);
}

/* Eval mode must equal train mode for these layers (no batchnorm or
 * dropout), so predict() can serve as the loss.  Smooth layers only:
 * a max or a relu kink crossed by the finite difference would make the
 * reference wrong (test_pool and test_layers check those alone). */
Test(model, cnn_gradient)
{
    plast_shape in = {3, {1, 7, 6}};
    check_model_gradient("[layer.c1]\ntype = conv2d\nchannels = 3\nkernel = 3\npadding = 1\n"
                         "[layer.a1]\ntype = tanh\n[layer.p1]\ntype = avgpool\nkernel = 2\n"
                         "[layer.c2]\ntype = conv2d\nchannels = 4\nkernel = 2\n"
                         "[layer.a2]\ntype = sigmoid\n[layer.g]\ntype = gap\n"
                         "[layer.out]\ntype = dense\nunits = 3\n",
                         &in, 3);
}

Test(model, resnet_with_projection_shortcut_gradient)
{
    plast_shape in = {3, {2, 6, 6}};
    check_model_gradient("[layer.stem]\ntype = conv2d\nchannels = 3\nkernel = 3\npadding = 1\n"
                         "[layer.sa]\ntype = tanh\n"
                         "[layer.c1]\ntype = conv2d\nchannels = 4\nkernel = 3\npadding = 1\n"
                         "stride = 2\nblock = b\n"
                         "[layer.a1]\ntype = tanh\nblock = b\n"
                         "[layer.r]\ntype = add\nfrom = sa\nshortcut = conv1x1\nblock = b\n"
                         "[layer.g]\ntype = gap\n[layer.out]\ntype = dense\nunits = 3\n",
                         &in, 3);
}

Test(model, stacked_rnn_gradient)
{
    plast_shape in = {1, {12}};
    check_model_gradient("[layer.r1]\ntype = rnn\nunits = 4\nsteps = 3\noutput = sequence\n"
                         "[layer.r2]\ntype = rnn\nunits = 5\nsteps = 3\n"
                         "[layer.out]\ntype = dense\nunits = 3\n",
                         &in, 3);
}

Test(model, topology_errors)
{
    char buf[600];
    /* h2 reads a0, which is neither in its block nor its block input */
    build_error("[layer.h0]\ntype = dense\nunits = 4\n[layer.a0]\ntype = tanh\n"
                "[layer.h1]\ntype = dense\nunits = 4\n[layer.a1]\ntype = tanh\n"
                "[layer.h2]\ntype = dense\nunits = 3\ninput = a0\n",
                buf, sizeof buf);
    cr_expect(strstr(buf, "[layer.h2] input: layer 'a0' is outside this layer's block") != NULL,
              "%s", buf);
    build_error("[layer.h0]\ntype = dense\nunits = 4\nblock = b\n[layer.a0]\ntype = tanh\n"
                "[layer.h1]\ntype = dense\nunits = 4\nblock = c\n"
                "[layer.h2]\ntype = dense\nunits = 3\nblock = b\n",
                buf, sizeof buf);
    cr_expect(strstr(buf, "[layer.h2] block 'b' is not contiguous") != NULL, "%s", buf);
    build_error("[layer.h0]\ntype = dense\nunits = 3\nblock = b\n"
                "[layer.a0]\ntype = tanh\ninput = h0\nblock = b\n"
                "[layer.out]\ntype = dense\nunits = 3\ninput = h0\nblock = b\n",
                buf, sizeof buf);
    cr_expect(strstr(buf, "[layer.a0] its output is never used") != NULL, "%s", buf);
    build_error("[layer.h0]\ntype = dense\nunits = 3\ninput = h9\n", buf, sizeof buf);
    cr_expect(eq(str, buf, "test.ini:4: [layer.h0] input: expected the name of an earlier layer, "
                           "found \"h9\""));
    build_error("[layer.h0]\ntype = dense\nunits = 3\n[layer.h1]\ntype = dense\nunits = 3\n"
                "from = h0\n",
                buf, sizeof buf);
    cr_expect(eq(str, buf, "test.ini:7: [layer.h1] from: layer type 'dense' takes one input"));
    build_error("[layer.h0]\ntype = dense\nunits = 3\n[layer.r]\ntype = add\n", buf, sizeof buf);
    cr_expect(eq(str, buf, "test.ini:5: [layer.r] missing required key 'from'"));
    build_error("[layer.h0]\ntype = dense\nunits = 4\n[layer.h1]\ntype = dense\nunits = 3\n"
                "[layer.r]\ntype = add\nfrom = h0\n",
                buf, sizeof buf);
    cr_expect(strstr(buf, "add: input 3 and from 4 differ in shape") != NULL, "%s", buf);
}

/* FLOP and byte counts: dense 8 -> 6 moves its input, output and weights. */
Test(model, flop_and_byte_counts)
{
    plast_registry *reg;
    plast_mem *mem;
    plast_err e;
    int rc;
    plast_model *m = build(mlp, &reg, &mem, &e, &rc);
    CHECK_OK(rc, e);
    plast_layer *h1 = plast_model_layer(m, 1);
    cr_expect(eq(u64, plast_layer_bytes(h1, 2), (uint64_t)(2 * 8 + 2 * 6 + 8 * 6 + 6) * 4));
    cr_expect(eq(u64, plast_layer_flops(h1, 2), (uint64_t)2 * 2 * 8 * 6));
    uint64_t f = 0, b = 0;
    for (int i = 0; i < plast_model_nlayers(m); i++) {
        f += plast_layer_flops(plast_model_layer(m, i), 1);
        b += plast_layer_bytes(plast_model_layer(m, i), 1);
    }
    cr_expect(eq(u64, plast_model_flops(m), f));
    cr_expect(eq(u64, plast_model_bytes(m), b));
    cr_expect(f > 0 && b > 0);
    plast_model_destroy(m);
    plast_mem_destroy(mem);
    plast_registry_destroy(reg);
}

/* A momentum optimiser (lr 0.5, weight decay 0.1) attached to m; the
 * caller destroys it. */
static plast_optim *attach_momentum(plast_model *m, plast_mem *mem)
{
    plast_err e;
    plast_args *a;
    plast_optim *o;
    plast_config *c = tu_config("[optimizer]\ntype = momentum\nlr = 0.5\nweight_decay = 0.1\n");
    CHECK_OK(plast_args_parse(&a, c, "optimizer", plast_optim_settings, NULL, NULL, &e), e);
    CHECK_OK(plast_optim_create(&o, a, plast_model_nparams(m), mem, &e), e);
    plast_args_destroy(a);
    plast_config_destroy(c);
    plast_model_attach(m, NULL, o, 1);
    return o;
}

/* A rule without gradients frees them; a backward pass and a step then
 * leave every weight as it was. */
Test(model, drop_grads)
{
    plast_registry *reg;
    plast_mem *mem;
    plast_err e;
    int rc;
    plast_model *m = build(mlp, &reg, &mem, &e, &rc);
    CHECK_OK(rc, e);
    plast_model_drop_grads(m);
    cr_expect(eq(sz, plast_mem_live(mem, PLAST_MEM_GRADIENTS), 0));
    cr_expect(eq(ptr, (void *)plast_model_grads(m), NULL));
    size_t n = plast_model_nparams(m);
    float *before = malloc(n * sizeof *before);
    cr_assert(ne(ptr, before, NULL));
    memcpy(before, plast_model_weights(m), n * sizeof *before);
    plast_ctx ctx = plast_model_ctx(m, 1);
    plast_tensor x, dy;
    CHECK_OK(plast_tensor_alloc(&x, mem, PLAST_MEM_INPUT, 2, plast_model_input_shape(m), &e), e);
    for (size_t i = 0; i < x.size; i++)
        x.data[i] = cosf((float)i);
    plast_block_run run;
    CHECK_OK(plast_block_forward(m, 0, &x, &run, &ctx, &e), e);
    plast_shape s = plast_model_layer(m, run.first + run.n - 1)->out;
    CHECK_OK(plast_tensor_alloc(&dy, mem, PLAST_MEM_ACTIVATIONS, 2, &s, &e), e);
    for (size_t i = 0; i < dy.size; i++)
        dy.data[i] = 1.0f;
    CHECK_OK(plast_block_backward(m, &run, run.first + run.n - 1, &dy, NULL, &ctx, &e), e);
    plast_block_release(m, &run, NULL);
    plast_optim *o = attach_momentum(m, mem);
    plast_optim_begin(o, 0.5);
    plast_model_step_all(m);
    cr_expect(memcmp(before, plast_model_weights(m), n * sizeof *before) == 0);
    plast_tensor_free(&x);
    plast_optim_destroy(o);
    free(before);
    plast_model_destroy(m);
    cr_expect(eq(sz, plast_mem_live_total(mem), 0));
    plast_mem_destroy(mem);
    plast_registry_destroy(reg);
}

/* Train each block on its own signal and step it: with shared gradients
 * the weights end bit-identical to the full gradient array's, and only
 * the largest block's gradients are allocated. */
static void train_blocks_locally(plast_model *m, plast_mem *mem)
{
    plast_ctx ctx = plast_model_ctx(m, 1);
    plast_tensor x, dy, kept;
    plast_err e;
    CHECK_OK(plast_tensor_alloc(&x, mem, PLAST_MEM_INPUT, 2, plast_model_input_shape(m), &e), e);
    for (size_t i = 0; i < x.size; i++)
        x.data[i] = sinf(0.3f * (float)i);
    plast_tensor in = x;
    in.owner = NULL;
    for (int k = 0; k < plast_model_nblocks(m); k++) {
        plast_block_run run;
        CHECK_OK(plast_block_forward(m, k, &in, &run, &ctx, &e), e);
        int last = run.first + run.n - 1;
        CHECK_OK(plast_tensor_alloc(&dy, mem, PLAST_MEM_ACTIVATIONS, 2,
                                    &plast_model_layer(m, last)->out, &e), e);
        for (size_t i = 0; i < dy.size; i++)
            dy.data[i] = cosf((float)(i + (size_t)k));
        CHECK_OK(plast_block_backward(m, &run, last, &dy, NULL, &ctx, &e), e);
        plast_model_step_block(m, k);
        plast_block_release(m, &run, &kept);
        if (k)
            plast_tensor_free(&in);
        in = kept;
    }
    plast_tensor_free(&in);
    plast_tensor_free(&x);
}

Test(model, share_grads)
{
    plast_registry *reg[2];
    plast_mem *mem[2];
    plast_model *m[2];
    plast_optim *o[2];
    plast_err e;
    int rc;
    plast_config *c = tu_config("[optimizer]\ntype = nesterov\nlr = 0.1\nmomentum = 0.9\n");
    plast_args *a;
    CHECK_OK(plast_args_parse(&a, c, "optimizer", plast_optim_settings, NULL, NULL, &e), e);
    for (int v = 0; v < 2; v++) {
        m[v] = build(mlp, &reg[v], &mem[v], &e, &rc);
        CHECK_OK(rc, e);
        CHECK_OK(plast_optim_create(&o[v], a, plast_model_nparams(m[v]), mem[v], &e), e);
        plast_model_attach(m[v], NULL, o[v], 1);
    }
    CHECK_OK(plast_model_share_grads(m[1], &e), e);
    size_t largest = 0; /* block 0: 8*6+6 padded to 48+16 floats */
    for (int k = 0; k < plast_model_nblocks(m[1]); k++) {
        const plast_block *b = plast_model_block(m[1], k);
        largest = b->param_end - b->param_begin > largest ? b->param_end - b->param_begin : largest;
    }
    cr_expect(eq(sz, plast_mem_live(mem[1], PLAST_MEM_GRADIENTS), largest * 4));
    cr_expect(lt(sz, largest, plast_model_nparams(m[1])));
    for (int step = 0; step < 3; step++)
        for (int v = 0; v < 2; v++) {
            plast_optim_begin(o[v], 0.1);
            train_blocks_locally(m[v], mem[v]);
        }
    size_t n = plast_model_nparams(m[0]);
    cr_expect(memcmp(plast_model_weights(m[0]), plast_model_weights(m[1]), n * 4) == 0);
    for (int v = 0; v < 2; v++) {
        plast_optim_destroy(o[v]);
        plast_model_destroy(m[v]);
        cr_expect(eq(sz, plast_mem_live_total(mem[v]), 0));
        plast_mem_destroy(mem[v]);
        plast_registry_destroy(reg[v]);
    }
    plast_args_destroy(a);
    plast_config_destroy(c);
}

/* Stepping every layer updates the whole flat array, the zero padding
 * after each parameter included (it stays zero), so the optimiser can
 * vouch that all weights are finite and the trainer may skip its scan; a
 * frozen layer leaves part of the array out, and then it cannot. */
Test(model, stepping_every_layer_covers_the_weights)
{
    plast_registry *reg;
    plast_mem *mem;
    plast_err e;
    int rc;
    plast_model *m = build(mlp, &reg, &mem, &e, &rc);
    CHECK_OK(rc, e);
    size_t n = plast_model_nparams(m);
    plast_optim *o = attach_momentum(m, mem);
    size_t used = 0; /* a gradient wherever a weight lives, as backward gives */
    for (int i = 0; i < plast_model_nlayers(m); i++) {
        const plast_layer *l = plast_model_layer(m, i);
        for (int p = 0; p < l->nparams; p++) {
            for (size_t k = 0; k < l->param[p].count; k++)
                l->param[p].g[k] = 1.0f;
            used += l->param[p].count;
        }
    }
    plast_optim_begin(o, 0.5);
    plast_model_step_all(m);
    cr_expect(eq(int, plast_optim_step_finite(o), 1));
    cr_assert(lt(sz, used, n), "the test wants padding between parameters");
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++)
        zeros += plast_model_weights(m)[i] == 0.0f;
    cr_expect(ge(sz, zeros, n - used), "the padding stays zero");
    plast_model_layer(m, 1)->frozen = 1;
    plast_optim_begin(o, 0.5);
    plast_model_step_all(m);
    cr_expect(eq(int, plast_optim_step_finite(o), 0), "a frozen layer is left out");
    plast_optim_destroy(o);
    plast_model_destroy(m);
    plast_mem_destroy(mem);
    plast_registry_destroy(reg);
}
