/* test_loss.c - the built-in losses and plast_count_correct. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/loss.h"
#include "plast/rng.h"
#include "plast/tensor.h"
#include "builtin.h"

static plast_tensor mat(plast_real *data, int rows, int cols)
{
    plast_shape s = {1, {cols, 0, 0}};
    return plast_tensor_view(data, rows, &s);
}

static double eval_ok(const plast_loss_ops *ops, plast_tensor *pred, const int32_t *labels,
                      plast_tensor *grad)
{
    double loss = NAN;
    plast_err e = {0};
    cr_assert(eq(int, ops->eval(pred, labels, &loss, grad, &e), 0), "%s: %s", ops->name, e.msg);
    return loss;
}

static void expect_grad(const plast_real *g, const double *want, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert(epsilon_eq(dbl, g[i], want[i], 1e-6), "grad[%d] = %.9g, expected %.9g", i,
                  (double)g[i], want[i]);
}

/* ---- hand-computed values ---- */

Test(loss, softmax_ce_three_classes)
{
    plast_real p[6] = {1, 2, 3, 0.5f, -1, 0}, g[6];
    int32_t labels[2] = {2, 0};
    plast_tensor pred = mat(p, 2, 3), grad = mat(g, 2, 3);
    double loss = eval_ok(&plast_loss_softmax_ce, &pred, labels, &grad);
    cr_assert(epsilon_eq(dbl, loss, 0.5058682848905545, 1e-7), "loss %.12g", loss);
    /* (softmax - onehot) / B */
    const double want[6] = {0.09003057317038046 / 2, 0.24472847105479764 / 2,
                            (0.6652409557748218 - 1) / 2, (0.5465493872661796 - 1) / 2,
                            0.12195165230972885 / 2, 0.3314989604240915 / 2};
    expect_grad(g, want, 6);
}

Test(loss, softmax_ce_two_classes)
{
    plast_real p[4] = {0, 0, 2, -1};
    int32_t labels[2] = {1, 0};
    plast_tensor pred = mat(p, 2, 2);
    double loss = eval_ok(&plast_loss_softmax_ce, &pred, labels, NULL);
    cr_assert(epsilon_eq(dbl, loss, 0.37086726606684367, 1e-7), "loss %.12g", loss);
}

Test(loss, mse_three_classes)
{
    plast_real p[6] = {0.5f, -1, 2, 0, 0, 1}, g[6];
    int32_t labels[2] = {0, 2};
    plast_tensor pred = mat(p, 2, 3), grad = mat(g, 2, 3);
    double loss = eval_ok(&plast_loss_mse, &pred, labels, &grad);
    cr_assert(epsilon_eq(dbl, loss, 0.875, 1e-12), "loss %.12g", loss);
    /* 2 (y - T) / (B C) */
    const double want[6] = {2 * -0.5 / 6, 2 * -1.0 / 6, 2 * 2.0 / 6, 0, 0, 0};
    expect_grad(g, want, 6);
}

Test(loss, sigmoid_bce_two_classes)
{
    plast_real p[4] = {0, 2, -1, 3}, g[4];
    int32_t labels[2] = {1, 0};
    plast_tensor pred = mat(p, 2, 2), grad = mat(g, 2, 2);
    double loss = eval_ok(&plast_loss_sigmoid_bce, &pred, labels, &grad);
    cr_assert(epsilon_eq(dbl, loss, 1.2954810576737206, 1e-7), "loss %.12g", loss);
    /* (sigmoid(x) - T) / (B C) */
    double s2 = 1 / (1 + exp(-2.0)), sm1 = 1 / (1 + exp(1.0)), s3 = 1 / (1 + exp(-3.0));
    const double want[4] = {0.5 / 4, (s2 - 1) / 4, (sm1 - 1) / 4, s3 / 4};
    expect_grad(g, want, 4);
}

/* ---- gradient against central differences ---- */

static void check_fd(const plast_loss_ops *ops)
{
    enum { B = 4, C = 5 };
    plast_real p[B * C], g[B * C];
    int32_t labels[B];
    plast_rng r;
    plast_rng_stream(&r, 42, PLAST_STREAM_DATA, 0);
    for (int i = 0; i < B * C; i++)
        p[i] = plast_rng_uniform(&r, -3.0f, 3.0f);
    for (int i = 0; i < B; i++)
        labels[i] = (int32_t)plast_rng_below(&r, C);
    plast_tensor pred = mat(p, B, C), grad = mat(g, B, C);
    double base = eval_ok(ops, &pred, labels, &grad);
    double dot = 0, na = 0, nn = 0;
    for (int i = 0; i < B * C; i++) {
        plast_real keep = p[i];
        p[i] = keep + 1e-3f;
        double up = eval_ok(ops, &pred, labels, NULL), step = p[i];
        p[i] = keep - 1e-3f;
        double down = eval_ok(ops, &pred, labels, NULL);
        step -= p[i];
        p[i] = keep;
        double num = (up - down) / step;
        cr_assert(epsilon_eq(dbl, g[i], num, 1e-5 + 1e-3 * fabs(num)),
                  "%s grad[%d]: analytic %.9g, numeric %.9g", ops->name, i, (double)g[i], num);
        dot += g[i] * num;
        na += (double)g[i] * g[i];
        nn += num * num;
    }
    cr_assert(gt(dbl, dot / sqrt(na * nn), 0.9999), "%s: cosine", ops->name);
    cr_assert(eq(dbl, eval_ok(ops, &pred, labels, NULL), base), "grad NULL changes the loss");
}

Test(loss, softmax_ce_gradient) { check_fd(&plast_loss_softmax_ce); }
Test(loss, mse_gradient) { check_fd(&plast_loss_mse); }
Test(loss, sigmoid_bce_gradient) { check_fd(&plast_loss_sigmoid_bce); }

/* ---- stability ---- */

static void expect_finite(const plast_real *g, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert(eq(int, isfinite(g[i]) != 0, 1), "grad[%d] = %g", i, (double)g[i]);
}

Test(loss, softmax_ce_huge_logits)
{
    plast_real p[3] = {1000, -1000, 0}, g[3];
    int32_t label = 1;
    plast_tensor pred = mat(p, 1, 3), grad = mat(g, 1, 3);
    double loss = eval_ok(&plast_loss_softmax_ce, &pred, &label, &grad);
    cr_assert(epsilon_eq(dbl, loss, 2000.0, 1e-9), "loss %.12g", loss);
    expect_finite(g, 3);
    const double want[3] = {1, -1, 0};
    expect_grad(g, want, 3);
    label = 0;
    loss = eval_ok(&plast_loss_softmax_ce, &pred, &label, &grad);
    cr_assert(epsilon_eq(dbl, loss, 0.0, 1e-9), "loss %.12g", loss);
}

Test(loss, sigmoid_bce_huge_logits)
{
    plast_real p[4] = {1000, -1000, -1000, 1000}, g[4];
    int32_t labels[2] = {1, 1}; /* row 0 confidently wrong, row 1 right */
    plast_tensor pred = mat(p, 2, 2), grad = mat(g, 2, 2);
    double loss = eval_ok(&plast_loss_sigmoid_bce, &pred, labels, &grad);
    /* terms: 1000 (t=0, x=1000), 1000 (t=1, x=-1000), 0, 0 */
    cr_assert(epsilon_eq(dbl, loss, 2000.0 / 4, 1e-9), "loss %.12g", loss);
    expect_finite(g, 4);
    const double want[4] = {0.25, -0.25, 0, 0};
    expect_grad(g, want, 4);
}

Test(loss, mse_huge_values_stay_finite)
{
    plast_real p[2] = {1000, -1000}, g[2];
    int32_t label = 0;
    plast_tensor pred = mat(p, 1, 2), grad = mat(g, 1, 2);
    double loss = eval_ok(&plast_loss_mse, &pred, &label, &grad);
    cr_assert(epsilon_eq(dbl, loss, (999.0 * 999.0 + 1e6) / 2, 1e-6), "loss %.12g", loss);
    expect_finite(g, 2);
}

/* ---- bad labels ---- */

static void expect_bad_label(const plast_loss_ops *ops, int32_t bad, const char *found)
{
    plast_real p[6] = {0}, g[6];
    int32_t labels[2] = {1, bad};
    plast_tensor pred = mat(p, 2, 3), grad = mat(g, 2, 3);
    double loss = 0;
    plast_err e = {0};
    cr_assert(eq(int, ops->eval(&pred, labels, &loss, &grad, &e), PLAST_E_DATA), "%s label %d",
              ops->name, (int)bad);
    cr_assert(strstr(e.msg, found) != NULL, "message: %s", e.msg);
    cr_assert(strstr(e.msg, "[0, 3)") != NULL, "message: %s", e.msg);
}

Test(loss, label_out_of_range_is_a_data_error)
{
    for (int i = 0; plast_builtin_losses[i]; i++) {
        expect_bad_label(plast_builtin_losses[i], 3, "found 3");
        expect_bad_label(plast_builtin_losses[i], -1, "found -1");
    }
}

Test(loss, builtin_list)
{
    static const char *const names[] = {"softmax_ce", "mse", "sigmoid_bce"};
    for (int i = 0; i < 3; i++) {
        cr_assert(plast_builtin_losses[i] != NULL);
        cr_assert(eq(str, (char *)plast_builtin_losses[i]->name, (char *)names[i]));
        cr_assert(eq(u32, plast_builtin_losses[i]->size, (uint32_t)sizeof(plast_loss_ops)));
    }
    cr_assert(plast_builtin_losses[3] == NULL);
}

/* ---- accuracy ---- */

Test(loss, count_correct_first_maximum_wins)
{
    plast_real p[] = {
        1, 3, 3,  /* tie between 1 and 2: class 1 */
        1, 3, 3,  /* the same row, labelled 2: wrong */
        2, 2, 2,  /* all equal: class 0 */
        0, -1, 5, /* class 2 */
        7, 1, 0,  /* class 0, labelled 1: wrong */
    };
    int32_t labels[] = {1, 2, 0, 2, 1};
    plast_tensor pred = mat(p, 5, 3);
    cr_assert(eq(int, plast_count_correct(&pred, labels), 3));
    int32_t only_tie_second[] = {2, 2, 1, 0, 2};
    cr_assert(eq(int, plast_count_correct(&pred, only_tie_second), 0));
}
