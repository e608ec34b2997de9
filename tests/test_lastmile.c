/* test_lastmile.c - the "last mile" tools: rotation, noise, the per-class
 * pick, relabelling and the IDX writer (bench/lastmile_data.c), and the
 * statistics of a feature matrix (bench/feature_stats.c). */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/data.h"
#include "feature_stats.h"
#include "lastmile_data.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"
#define SIDE 28
#define NPX (SIDE * SIDE)

static void random_image(uint8_t *px, uint32_t stream)
{
    plast_rng r;
    plast_rng_stream(&r, 7, PLAST_STREAM_DATA, stream);
    for (int i = 0; i < NPX; i++)
        px[i] = (uint8_t)plast_rng_below(&r, 256);
}

static size_t pixel_sum(const uint8_t *px, size_t n)
{
    size_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += px[i];
    return s;
}

Test(rotate, zero_degrees_is_the_identity)
{
    uint8_t a[NPX], b[NPX];
    random_image(a, 1);
    memset(b, 0, sizeof b);
    lastmile_rotate(a, b, SIDE, SIDE, 0.0);
    cr_assert(memcmp(a, b, sizeof a) == 0);
}

Test(rotate, ninety_degrees_moves_a_pixel_counter_clockwise)
{
    /* (row 5, col 20): 8.5 above and 6.5 right of the centre (13.5,
     * 13.5); a quarter turn counter-clockwise puts it 6.5 above and 8.5
     * left: row 7, col 5 */
    uint8_t a[NPX], b[NPX];
    memset(a, 0, sizeof a);
    a[5 * SIDE + 20] = 200;
    lastmile_rotate(a, b, SIDE, SIDE, 90.0);
    cr_assert(eq(u8, b[7 * SIDE + 5], 200));
    cr_assert(eq(sz, pixel_sum(b, NPX), 200));
}

Test(rotate, half_turn_mirrors_both_axes)
{
    uint8_t a[NPX], b[NPX];
    random_image(a, 2);
    lastmile_rotate(a, b, SIDE, SIDE, 180.0);
    for (int r = 0; r < SIDE; r++)
        for (int c = 0; c < SIDE; c++)
            cr_assert(eq(u8, b[r * SIDE + c], a[(SIDE - 1 - r) * SIDE + (SIDE - 1 - c)]),
                      "pixel (%d, %d)", r, c);
}

Test(rotate, thirty_degrees_fills_outside_with_zero_and_interpolates)
{
    uint8_t a[NPX], b[NPX];
    memset(a, 255, sizeof a);
    lastmile_rotate(a, b, SIDE, SIDE, 30.0);
    /* corners come from outside the source; the middle from inside */
    cr_assert(eq(u8, b[0], 0));
    cr_assert(eq(u8, b[NPX - 1], 0));
    cr_assert(eq(u8, b[14 * SIDE + 14], 255));
    /* an edge pixel mixes inside and outside: neither 0 nor 255 somewhere */
    int mixed = 0;
    for (int i = 0; i < NPX; i++)
        mixed += b[i] != 0 && b[i] != 255;
    cr_assert(gt(int, mixed, 0));
}

Test(noise, same_stream_same_image_other_stream_other_image)
{
    uint8_t src[NPX], a[NPX], b[NPX], c[NPX];
    random_image(src, 3);
    plast_rng r1, r2, r3;
    plast_rng_stream(&r1, 0, PLAST_STREAM_DATA, LASTMILE_STREAM_NOISE_TRAIN + 50000);
    plast_rng_stream(&r2, 0, PLAST_STREAM_DATA, LASTMILE_STREAM_NOISE_TRAIN + 50000);
    plast_rng_stream(&r3, 0, PLAST_STREAM_DATA, LASTMILE_STREAM_NOISE_TRAIN + 50001);
    lastmile_add_noise(src, a, NPX, 0.3, &r1);
    lastmile_add_noise(src, b, NPX, 0.3, &r2);
    lastmile_add_noise(src, c, NPX, 0.3, &r3);
    cr_assert(memcmp(a, b, sizeof a) == 0);
    cr_assert(memcmp(a, c, sizeof a) != 0);
    cr_assert(memcmp(a, src, sizeof a) != 0);
}

Test(noise, sigma_zero_is_the_identity_in_place)
{
    uint8_t a[NPX], b[NPX];
    random_image(a, 4);
    memcpy(b, a, sizeof a);
    plast_rng r;
    plast_rng_stream(&r, 0, PLAST_STREAM_DATA, 9);
    lastmile_add_noise(b, b, NPX, 0.0, &r);
    cr_assert(memcmp(a, b, sizeof a) == 0);
}

Test(noise, has_the_asked_spread_and_clips_at_zero)
{
    enum { N = 20 * NPX };
    static uint8_t grey[N], black[N], out[N];
    memset(grey, 128, sizeof grey);
    memset(black, 0, sizeof black);
    plast_rng r;
    plast_rng_stream(&r, 0, PLAST_STREAM_DATA, 10);
    lastmile_add_noise(grey, out, N, 0.3, &r);
    double sum = 0, sq = 0;
    for (int i = 0; i < N; i++) {
        double d = (out[i] - 128) / 255.0;
        sum += d;
        sq += d * d;
    }
    double mean = sum / N, sd = sqrt(sq / N - mean * mean);
    /* clipping at 0 and 1 (1.7 sd away) shrinks the spread a little */
    cr_assert(gt(dbl, sd, 0.26), "sd %g", sd);
    cr_assert(lt(dbl, sd, 0.31), "sd %g", sd);
    cr_assert(lt(dbl, fabs(mean), 0.01), "mean %g", mean);
    lastmile_add_noise(black, out, N, 0.3, &r);
    int zeros = 0;
    for (int i = 0; i < N; i++)
        zeros += out[i] == 0;
    /* half the draws are negative; a few more round to 0 */
    cr_assert(gt(int, zeros, N / 2 - N / 20));
    cr_assert(lt(int, zeros, N / 2 + N / 20));
}

static int32_t labels_mod10[1000];

static void fill_labels(void)
{
    for (int i = 0; i < 1000; i++)
        labels_mod10[i] = i % 10;
}

Test(pick, twenty_per_class_in_two_disjoint_sets, .init = fill_labels)
{
    uint32_t out[200], again[200];
    cr_assert(eq(int, lastmile_pick_per_class(labels_mod10, 1000, 5, 5, 20, 2, 0, out, NULL),
                 PLAST_OK));
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < 5; c++)
            for (int k = 0; k < 20; k++)
                cr_assert(eq(i32, labels_mod10[out[(s * 5 + c) * 20 + k]], 5 + c));
    for (int i = 0; i < 200; i++)
        for (int j = i + 1; j < 200; j++)
            cr_assert(ne(u32, out[i], out[j]), "index %u picked twice", out[i]);
    cr_assert(eq(int, lastmile_pick_per_class(labels_mod10, 1000, 5, 5, 20, 2, 0, again, NULL),
                 PLAST_OK));
    cr_assert(memcmp(out, again, sizeof out) == 0);
    cr_assert(eq(int, lastmile_pick_per_class(labels_mod10, 1000, 5, 5, 20, 2, 1, again, NULL),
                 PLAST_OK));
    cr_assert(memcmp(out, again, sizeof out) != 0);
}

Test(pick, too_few_samples_names_the_class, .init = fill_labels)
{
    uint32_t out[5 * 2 * 60];
    plast_err e;
    memset(&e, 0, sizeof e);
    cr_assert(eq(int, lastmile_pick_per_class(labels_mod10, 1000, 5, 5, 60, 2, 0, out, &e),
                 PLAST_E_DATA));
    cr_assert(not(eq(ptr, strstr(e.msg, "class 5: expected at least 120 samples, found 100"),
                     NULL)),
              "%s", e.msg);
}

Test(select, keeps_the_class_range_in_order, .init = fill_labels)
{
    static uint32_t out[1000];
    size_t n = lastmile_select_classes(labels_mod10, 1000, 0, 5, out);
    cr_assert(eq(sz, n, 500));
    for (size_t i = 0; i < n; i++) {
        cr_assert(lt(i32, labels_mod10[out[i]], 5));
        if (i)
            cr_assert(gt(u32, out[i], out[i - 1]));
    }
}

Test(gather, copies_and_relabels)
{
    uint8_t px[4 * 3] = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32};
    int32_t labels[4] = {5, 9, 7, 6};
    uint32_t idx[2] = {3, 1};
    uint8_t out[6];
    int32_t lab[2];
    lastmile_gather(px, labels, 3, idx, 2, 5, out, lab);
    uint8_t want[6] = {30, 31, 32, 10, 11, 12};
    cr_assert(memcmp(out, want, sizeof want) == 0);
    cr_assert(eq(i32, lab[0], 1));
    cr_assert(eq(i32, lab[1], 4));
}

Test(idx, written_files_read_back)
{
    char dir[PATH_MAX], img[PATH_MAX + 32], lab[PATH_MAX + 32];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/plast-lastmile-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(not(eq(ptr, mkdtemp(dir), NULL)), "mkdtemp failed");
    snprintf(img, sizeof img, "%s/x-images.idx", dir);
    snprintf(lab, sizeof lab, "%s/x-labels.idx", dir);
    uint8_t px[3 * 2 * 4];
    for (int i = 0; i < 24; i++)
        px[i] = (uint8_t)(i * 10);
    int32_t labels[3] = {4, 0, 2};
    int rc = lastmile_write_idx(img, lab, px, labels, 3, 2, 4, NULL);
    plast_mem *mem = NULL;
    plast_dataset *d = NULL;
    if (rc == PLAST_OK && plast_mem_create(&mem, NULL) == PLAST_OK)
        rc = plast_dataset_load_idx(&d, img, lab, mem, NULL);
    unlink(img);
    unlink(lab);
    rmdir(dir);
    cr_assert(eq(int, rc, PLAST_OK));
    cr_assert(eq(sz, d->n, 3));
    cr_assert(eq(int, d->shape.dim[1], 2));
    cr_assert(eq(int, d->shape.dim[2], 4));
    cr_assert(memcmp(d->u8, px, sizeof px) == 0);
    cr_assert(eq(i32, d->labels[0], 4));
    cr_assert(eq(i32, d->labels[2], 2));
    plast_dataset_destroy(d);
    plast_mem_destroy(mem);
}

Test(idx, a_label_over_255_is_refused)
{
    uint8_t px[4] = {0};
    int32_t labels[1] = {256};
    plast_err e;
    memset(&e, 0, sizeof e);
    cr_assert(eq(int, lastmile_write_idx("/nonexistent/a", "/nonexistent/b", px, labels, 1, 2, 2,
                                         &e),
                 PLAST_E_INVAL));
    cr_assert(not(eq(ptr, strstr(e.msg, "expected 0 to 255, found 256"), NULL)), "%s", e.msg);
}

/* The real class-shift split: 20 + 20 of each of classes 5-9. */
Test(pick, fashion_mnist_support_and_validation)
{
    char img[256], lab[256];
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", FASHION_DIR);
    snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", FASHION_DIR);
    if (access(lab, R_OK) != 0)
        cr_skip_test("%s is not installed", lab);
    plast_mem *mem = NULL;
    plast_dataset *d = NULL;
    cr_assert(eq(int, plast_mem_create(&mem, NULL), PLAST_OK));
    cr_assert(eq(int, plast_dataset_load_idx(&d, img, lab, mem, NULL), PLAST_OK));
    uint32_t idx[200];
    cr_assert(eq(int, lastmile_pick_per_class(d->labels, d->n, 5, 5, 20, 2, 0, idx, NULL),
                 PLAST_OK));
    int32_t relabelled[200];
    static uint8_t px[200 * NPX];
    lastmile_gather(d->u8, d->labels, NPX, idx, 200, 5, px, relabelled);
    int count[2][5] = {{0}};
    for (int i = 0; i < 200; i++) {
        cr_assert(ge(i32, relabelled[i], 0));
        cr_assert(lt(i32, relabelled[i], 5));
        count[i / 100][relabelled[i]]++;
    }
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < 5; c++)
            cr_assert(eq(int, count[s][c], 20), "set %d class %d", s, c);
    plast_dataset_destroy(d);
    plast_mem_destroy(mem);
}

/* ---- feature statistics (bench/feature_stats.c) ---- */

/* By hand: samples [1, 0, 0], [0, 1, 0], [1, 1, 0] give E[x x^T] =
 * [[2, 1, 0], [1, 2, 0], [0, 0, 0]] / 3 (eigenvalues 1, 1/3, 0), E|x|^2 =
 * 4/3, E x = [2/3, 2/3, 0], |E x|^2 = 8/9, trace / top = 4/3, one dead
 * feature. */
Test(feature_stats, by_hand)
{
    const float x[9] = {1, 0, 0, 0, 1, 0, 1, 1, 0};
    double M[9] = {0}, sum[3] = {0};
    feature_moments_add(M, sum, x, 2, 3);
    feature_moments_add(M, sum, x + 6, 1, 3);
    feature_stats st;
    feature_stats_of(M, sum, 3, 3, &st);
    cr_assert(eq(sz, st.samples, 3));
    cr_assert(eq(int, st.features, 3));
    cr_expect(fabs(st.mean_sq - 4.0 / 3) < 1e-12, "E|x|^2 %g", st.mean_sq);
    cr_expect(fabs(st.sq_mean - 8.0 / 9) < 1e-12, "|E x|^2 %g", st.sq_mean);
    cr_expect(fabs(st.top - 1.0) < 1e-9, "top eigenvalue %g", st.top);
    cr_expect(fabs(st.trace_over_top - 4.0 / 3) < 1e-9, "trace / top %g", st.trace_over_top);
    cr_expect(eq(int, st.dead, 1));
}
