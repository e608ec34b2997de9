/* loss.c - softmax cross-entropy, mean squared error and sigmoid binary
 * cross-entropy, with PyTorch's mean reductions (see plast/loss.h).
 *
 * Losses are accumulated in double, rows in order.  Cross-entropy uses a
 * max-shifted log-sum-exp and BCE the logits form
 * max(x, 0) - x t + log1p(exp(-|x|)), so logits of +-1000 stay finite. */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include "plast/loss.h"
#include "builtin.h"

/* Batch B and classes C of pred; grad, when given, must match. */
static int loss_shape(const char *name, const plast_tensor *pred, const plast_tensor *grad,
                      int *batch, int *classes, plast_err *e)
{
    *batch = plast_tensor_batch(pred);
    size_t c = plast_tensor_sample_size(pred);
    if (pred->ndim != 2 || *batch < 1 || c < 1)
        return plast_err_set(e, PLAST_E_INVAL, "%s: expected predictions [batch, classes], "
                             "found %d dimensions of %zu values", name, pred->ndim, pred->size);
    if (grad && grad->size != pred->size)
        return plast_err_set(e, PLAST_E_INVAL, "%s: expected a gradient of %zu values, found %zu",
                             name, pred->size, grad->size);
    *classes = (int)c;
    return PLAST_OK;
}

static int check_labels(const char *name, const int32_t *labels, int batch, int classes,
                        plast_err *e)
{
    for (int r = 0; r < batch; r++)
        if (labels[r] < 0 || labels[r] >= classes)
            return plast_err_set(e, PLAST_E_DATA,
                                 "%s: sample %d: expected a label in [0, %d), found %d", name, r,
                                 classes, (int)labels[r]);
    return PLAST_OK;
}

static int loss_prepare(const char *name, const plast_tensor *pred, const int32_t *labels,
                        const plast_tensor *grad, int *batch, int *classes, plast_err *e)
{
    int rc = loss_shape(name, pred, grad, batch, classes, e);
    return rc ? rc : check_labels(name, labels, *batch, *classes, e);
}

/* ---- softmax cross-entropy ---- */

/* Rows up to this many classes keep their exponentials (on the stack),
 * so each logit costs one exp; wider rows compute them twice. */
#define SOFTMAX_KEEP 256

static double row_max(const plast_real *x, int n)
{
    double m = x[0];
    for (int j = 1; j < n; j++)
        if (x[j] > m)
            m = x[j];
    return m;
}

/* Loss of one row, and its gradient (p - onehot) / batch into g unless
 * g is NULL: max-shifted, in double. */
static double softmax_ce_row(const plast_real *x, int classes, int32_t label, int batch,
                             plast_real *g)
{
    double m = row_max(x, classes), s = 0.0, kept[SOFTMAX_KEEP];
    int keep = classes <= SOFTMAX_KEEP;
    for (int j = 0; j < classes; j++) {
        double ej = exp((double)x[j] - m);
        if (keep)
            kept[j] = ej;
        s += ej;
    }
    double lse = m + log(s);
    for (int j = 0; g && j < classes; j++) {
        double p = keep ? kept[j] / s : exp((double)x[j] - lse);
        g[j] = (plast_real)((p - (j == label)) / batch);
    }
    return lse - x[label];
}

static int softmax_ce_eval(const plast_tensor *pred, const int32_t *labels, double *loss,
                           plast_tensor *grad, plast_err *e)
{
    int batch, classes;
    int rc = loss_prepare("softmax_ce", pred, labels, grad, &batch, &classes, e);
    if (rc)
        return rc;
    double total = 0.0;
    for (int r = 0; r < batch; r++) {
        size_t off = (size_t)r * (size_t)classes;
        total += softmax_ce_row(pred->data + off, classes, labels[r], batch,
                                grad ? grad->data + off : NULL);
    }
    *loss = total / batch;
    return PLAST_OK;
}

/* ---- mean squared error against the one-hot label ---- */

static int mse_eval(const plast_tensor *pred, const int32_t *labels, double *loss,
                     plast_tensor *grad, plast_err *e)
{
    int batch, classes;
    int rc = loss_prepare("mse", pred, labels, grad, &batch, &classes, e);
    if (rc)
        return rc;
    double n = (double)batch * classes, total = 0.0;
    for (int r = 0; r < batch; r++) {
        size_t off = (size_t)r * (size_t)classes;
        for (int j = 0; j < classes; j++) {
            double d = (double)pred->data[off + j] - (j == labels[r]);
            total += d * d;
            if (grad)
                grad->data[off + j] = (plast_real)(2.0 * d / n);
        }
    }
    *loss = total / n;
    return PLAST_OK;
}

/* ---- sigmoid binary cross-entropy on logits ---- */

static double stable_sigmoid(double x)
{
    if (x >= 0.0)
        return 1.0 / (1.0 + exp(-x));
    double z = exp(x);
    return z / (1.0 + z);
}

static int sigmoid_bce_eval(const plast_tensor *pred, const int32_t *labels, double *loss,
                            plast_tensor *grad, plast_err *e)
{
    int batch, classes;
    int rc = loss_prepare("sigmoid_bce", pred, labels, grad, &batch, &classes, e);
    if (rc)
        return rc;
    double n = (double)batch * classes, total = 0.0;
    for (int r = 0; r < batch; r++) {
        size_t off = (size_t)r * (size_t)classes;
        for (int j = 0; j < classes; j++) {
            double x = pred->data[off + j], t = (j == labels[r]);
            total += fmax(x, 0.0) - x * t + log1p(exp(-fabs(x)));
            if (grad)
                grad->data[off + j] = (plast_real)((stable_sigmoid(x) - t) / n);
        }
    }
    *loss = total / n;
    return PLAST_OK;
}

const plast_loss_ops plast_loss_softmax_ce = {
    .size = sizeof(plast_loss_ops),
    .name = "softmax_ce",
    .settings = NULL,
    .eval = softmax_ce_eval,
};

const plast_loss_ops plast_loss_mse = {
    .size = sizeof(plast_loss_ops),
    .name = "mse",
    .settings = NULL,
    .eval = mse_eval,
};

const plast_loss_ops plast_loss_sigmoid_bce = {
    .size = sizeof(plast_loss_ops),
    .name = "sigmoid_bce",
    .settings = NULL,
    .eval = sigmoid_bce_eval,
};

int plast_count_correct(const plast_tensor *pred, const int32_t *labels)
{
    int batch = plast_tensor_batch(pred), classes = (int)plast_tensor_sample_size(pred);
    int correct = 0;
    for (int r = 0; r < batch; r++) {
        const plast_real *x = pred->data + (size_t)r * (size_t)classes;
        int best = 0;
        for (int j = 1; j < classes; j++)
            if (x[j] > x[best]) /* strict: the first maximum wins ties */
                best = j;
        correct += classes > 0 && best == labels[r];
    }
    return correct;
}
