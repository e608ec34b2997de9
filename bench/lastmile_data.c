/* lastmile_data.c - rotation, noise, per-class pick and IDX writing for the
 * "last mile" data sets (see lastmile_data.h). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plast/checkpoint.h"
#include "plast/data.h"
#include "lastmile_data.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u

static double pixel_or_zero(const uint8_t *src, int rows, int cols, int r, int c)
{
    return r < 0 || r >= rows || c < 0 || c >= cols ? 0.0 : (double)src[(size_t)r * cols + c];
}

static double bilinear(const uint8_t *src, int rows, int cols, double y, double x)
{
    double y0 = floor(y), x0 = floor(x), fy = y - y0, fx = x - x0;
    int r = (int)y0, c = (int)x0;
    double top = (1 - fx) * pixel_or_zero(src, rows, cols, r, c) +
                 fx * pixel_or_zero(src, rows, cols, r, c + 1);
    double bottom = (1 - fx) * pixel_or_zero(src, rows, cols, r + 1, c) +
                    fx * pixel_or_zero(src, rows, cols, r + 1, c + 1);
    return (1 - fy) * top + fy * bottom;
}

static uint8_t to_u8(double v)
{
    v = rint(v);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

void lastmile_rotate(const uint8_t *src, uint8_t *dst, int rows, int cols, double degrees)
{
    const double pi = 3.14159265358979323846;
    double a = degrees * pi / 180.0, ca = cos(a), sa = sin(a);
    double cy = (rows - 1) / 2.0, cx = (cols - 1) / 2.0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            /* inverse of the counter-clockwise turn, with y pointing down */
            double dx = c - cx, dy = r - cy;
            double sx = cx + ca * dx - sa * dy, sy = cy + sa * dx + ca * dy;
            dst[(size_t)r * cols + c] = to_u8(bilinear(src, rows, cols, sy, sx));
        }
}

void lastmile_add_noise(const uint8_t *src, uint8_t *dst, size_t n, double sigma,
                        plast_rng *r)
{
    double z[2];
    for (size_t i = 0; i < n; i++) {
        if (i % 2 == 0)
            plast_rng_normal2(r, z);
        double v = src[i] / 255.0 + sigma * z[i % 2];
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        dst[i] = to_u8(255.0 * v);
    }
}

size_t lastmile_select_classes(const int32_t *labels, size_t n, int first, int nclasses,
                               uint32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= first && labels[i] < first + nclasses)
            out[k++] = (uint32_t)i;
    return k;
}

/* Deal the shuffled members of class `c` (count of them in `members`). */
static void deal_class(const uint32_t *members, uint32_t *perm, size_t count, int ci,
                       int nclasses, int per, int nsets, plast_rng *r, uint32_t *out)
{
    plast_shuffle(perm, count, r);
    for (int s = 0; s < nsets; s++)
        for (int k = 0; k < per; k++)
            out[((size_t)s * (size_t)nclasses + (size_t)ci) * (size_t)per + (size_t)k] =
                members[perm[(size_t)s * (size_t)per + (size_t)k]];
}

int lastmile_pick_per_class(const int32_t *labels, size_t n, int first, int nclasses, int per,
                            int nsets, uint64_t seed, uint32_t *out, plast_err *e)
{
    uint32_t *members = malloc((n ? n : 1) * sizeof *members);
    uint32_t *perm = malloc((n ? n : 1) * sizeof *perm);
    int rc = PLAST_OK;
    if (!members || !perm) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory picking samples per class");
        goto undo_alloc;
    }
    plast_rng r;
    plast_rng_stream(&r, seed, PLAST_STREAM_DATA, LASTMILE_STREAM_PICK);
    for (int ci = 0; ci < nclasses; ci++) {
        size_t count = lastmile_select_classes(labels, n, first + ci, 1, members);
        if (count < (size_t)per * (size_t)nsets) {
            rc = plast_err_set(e, PLAST_E_DATA,
                               "class %d: expected at least %d samples, found %zu", first + ci,
                               per * nsets, count);
            goto undo_alloc;
        }
        deal_class(members, perm, count, ci, nclasses, per, nsets, &r, out);
    }
undo_alloc:
    free(perm);
    free(members);
    return rc;
}

void lastmile_gather(const uint8_t *px, const int32_t *labels, size_t size, const uint32_t *idx,
                     size_t n, int label_offset, uint8_t *out_px, int32_t *out_labels)
{
    for (size_t k = 0; k < n; k++) {
        memcpy(out_px + k * size, px + (size_t)idx[k] * size, size);
        out_labels[k] = labels[idx[k]] - label_offset;
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int write_labels(const char *path, const int32_t *labels, size_t n, plast_err *e)
{
    uint8_t *buf = malloc(8 + n);
    if (!buf)
        return plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory for %zu labels", n);
    put_be32(buf, IDX_LABELS_MAGIC);
    put_be32(buf + 4, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        buf[8 + i] = (uint8_t)labels[i];
    int rc = plast_write_atomic(path, buf, 8 + n, e);
    free(buf);
    return rc;
}

int lastmile_write_idx(const char *images_path, const char *labels_path, const uint8_t *px,
                       const int32_t *labels, size_t n, int rows, int cols, plast_err *e)
{
    size_t bytes;
    if (n > UINT32_MAX || rows <= 0 || cols <= 0 ||
        __builtin_mul_overflow(n, (size_t)rows * (size_t)cols, &bytes) ||
        __builtin_add_overflow(bytes, (size_t)16, &bytes))
        return plast_err_at(e, PLAST_E_INVAL, images_path, 0,
                            "expected at most 2^32 - 1 images that fit in memory, found %zu of "
                            "%dx%d", n, rows, cols);
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] > 255)
            return plast_err_at(e, PLAST_E_INVAL, labels_path, 0,
                                "label %zu: expected 0 to 255, found %d", i, (int)labels[i]);
    uint8_t *buf = malloc(bytes);
    if (!buf)
        return plast_err_at(e, PLAST_E_NOMEM, images_path, 0, "out of memory for %zu bytes",
                            bytes);
    put_be32(buf, IDX_IMAGES_MAGIC);
    put_be32(buf + 4, (uint32_t)n);
    put_be32(buf + 8, (uint32_t)rows);
    put_be32(buf + 12, (uint32_t)cols);
    if (bytes > 16)
        memcpy(buf + 16, px, bytes - 16);
    int rc = plast_write_atomic(images_path, buf, bytes, e);
    free(buf);
    return rc ? rc : write_labels(labels_path, labels, n, e);
}
