/* test_data.c - data sets: IDX (plain and gzip), CSV, synthetic blobs,
 * slices, gathering and shuffling. */
#include "config.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/data.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* Each test runs in its own forked worker: these are per test. */
static char tmpdir[PATH_MAX];
static plast_mem *mem;
static plast_dataset *const UNTOUCHED = (plast_dataset *)&tmpdir;

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/plast-data-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(not(eq(ptr, mkdtemp(tmpdir), NULL)), "mkdtemp failed");
    cr_assert(eq(int, plast_mem_create(&mem, NULL), PLAST_OK));
}

static void teardown(void)
{
    DIR *dir = opendir(tmpdir);
    if (dir) {
        struct dirent *ent;
        char path[PATH_MAX + 256];
        while ((ent = readdir(dir)) != NULL) {
            if (strcmp(ent->d_name, ".") && strcmp(ent->d_name, "..")) {
                snprintf(path, sizeof path, "%s/%s", tmpdir, ent->d_name);
                unlink(path);
            }
        }
        closedir(dir);
        rmdir(tmpdir);
    }
    plast_mem_destroy(mem);
}

TestSuite(data, .init = setup, .fini = teardown);

/* A path in the test's directory; a small pool so a few can be alive. */
static const char *tmp_file(const char *name)
{
    static char pool[8][PATH_MAX + 64];
    static int next;
    char *p = pool[next++ % 8];
    snprintf(p, sizeof pool[0], "%s/%s", tmpdir, name);
    return p;
}

static const char *write_file(const char *name, const void *bytes, size_t len, int gzip)
{
    const char *path = tmp_file(name);
    if (gzip) {
        gzFile gz = gzopen(path, "wb");
        cr_assert(not(eq(ptr, gz, NULL)));
        cr_assert(eq(int, gzwrite(gz, bytes, (unsigned)len), (int)len));
        cr_assert(eq(int, gzclose(gz), Z_OK));
    } else {
        FILE *fp = fopen(path, "wb");
        cr_assert(not(eq(ptr, fp, NULL)));
        cr_assert(eq(sz, fwrite(bytes, 1, len, fp), len));
        cr_assert(eq(int, fclose(fp), 0));
    }
    return path;
}

static const char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text), 0);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* ---- IDX fixtures: 3 images of 2x4, labels 2 0 1 ------------------------ */

enum { N = 3, ROWS = 2, COLS = 4, PIX = ROWS * COLS, IMG_BYTES = 16 + N * PIX };
static const int32_t LABELS[N] = {2, 0, 1};

static uint8_t pixel(int i) { return (uint8_t)(i * 10 + 5); }

/* Image file bytes into buf (room for IMG_BYTES + 16); returns the length. */
static size_t idx_images(unsigned char *buf, uint32_t magic, uint32_t n, uint32_t rows,
                         uint32_t cols)
{
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    for (int i = 0; i < N * PIX; i++)
        buf[16 + i] = pixel(i);
    return IMG_BYTES;
}

static size_t idx_labels(unsigned char *buf, uint32_t magic, uint32_t n, const int32_t *labels)
{
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    for (uint32_t i = 0; i < n; i++)
        buf[8 + i] = (unsigned char)labels[i];
    return 8 + n;
}

static const char *good_images(const char *name, int gzip)
{
    unsigned char buf[IMG_BYTES];
    return write_file(name, buf, idx_images(buf, 0x803, N, ROWS, COLS), gzip);
}

static const char *good_labels(const char *name, int gzip)
{
    unsigned char buf[8 + N];
    return write_file(name, buf, idx_labels(buf, 0x801, N, LABELS), gzip);
}

static size_t dataset_bytes(size_t n, size_t values, size_t elem)
{
    return n * (sizeof(int32_t) + values * elem);
}

static void check_fixture(const plast_dataset *d)
{
    cr_assert(eq(sz, d->n, N));
    cr_assert(eq(int, d->shape.ndim, 3));
    cr_assert(eq(int, d->shape.dim[0], 1));
    cr_assert(eq(int, d->shape.dim[1], ROWS));
    cr_assert(eq(int, d->shape.dim[2], COLS));
    cr_assert(eq(int, d->classes, 3));
    cr_assert(eq(flt, d->scale, 1.0f / 255.0f));
    cr_assert(eq(flt, d->shift, 0.0f));
    cr_assert(eq(ptr, (void *)d->f32, NULL));
    cr_assert(not(eq(ptr, (void *)d->u8, NULL)));
    for (int i = 0; i < N * PIX; i++)
        cr_assert(eq(u8, d->u8[i], pixel(i)), "pixel %d", i);
    for (int i = 0; i < N; i++)
        cr_assert(eq(i32, d->labels[i], LABELS[i]), "label %d", i);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), dataset_bytes(N, PIX, 1)));
}

/* A failure leaves *out alone, stores nothing and says exactly this. */
static void expect_fail(int rc, const plast_dataset *d, const plast_err *e, int code,
                        const char *file, int line, const char *msg)
{
    cr_assert(eq(int, rc, code), "status %d, message: %s", rc, e->msg);
    cr_assert(eq(int, e->code, code));
    cr_assert(eq(str, (char *)e->file, (char *)file));
    cr_assert(eq(int, e->line, line));
    cr_assert(eq(str, (char *)e->msg, (char *)msg));
    cr_assert(eq(ptr, (void *)d, (void *)UNTOUCHED));
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), 0));
    cr_assert(eq(sz, plast_mem_live_total(mem), 0));
}

static int load_idx(plast_dataset **d, const char *images, const char *labels, plast_err *e)
{
    *d = UNTOUCHED;
    return plast_dataset_load_idx(d, images, labels, mem, e);
}

Test(data, idx_plain)
{
    plast_dataset *d;
    plast_err e = {0};
    cr_assert(eq(int, load_idx(&d, good_images("img", 0), good_labels("lab", 0), &e), 0));
    check_fixture(d);
    plast_dataset_destroy(d);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), 0));
}

Test(data, idx_gzip)
{
    plast_dataset *d;
    plast_err e = {0};
    cr_assert(eq(int, load_idx(&d, good_images("img.gz", 1), good_labels("lab.gz", 1), &e), 0),
              "%s", e.msg);
    check_fixture(d);
    plast_dataset_destroy(d);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), 0));
}

Test(data, idx_compression_decided_by_content_not_name)
{
    plast_dataset *d;
    plast_err e = {0};
    const char *img = good_images("images-plain.gz", 0);
    const char *lab = good_labels("labels-compressed", 1);
    cr_assert(eq(int, load_idx(&d, img, lab, &e), 0), "%s", e.msg);
    check_fixture(d);
    plast_dataset_destroy(d);
}

Test(data, idx_bad_image_magic)
{
    unsigned char buf[IMG_BYTES];
    const char *img = write_file("img", buf, idx_images(buf, 0x801, N, ROWS, COLS), 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0,
                "expected IDX image magic 0x00000803, found 0x00000801");
}

Test(data, idx_bad_label_magic)
{
    unsigned char buf[8 + N];
    const char *lab = write_file("lab", buf, idx_labels(buf, 0x12345678, N, LABELS), 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, good_images("img", 0), lab, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, lab, 0,
                "expected IDX label magic 0x00000801, found 0x12345678");
}

Test(data, idx_truncated_images)
{
    unsigned char buf[IMG_BYTES];
    idx_images(buf, 0x803, N, ROWS, COLS);
    const char *img = write_file("img.gz", buf, IMG_BYTES - 10, 1);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0,
                "truncated: expected 40 bytes (header and image data), found 30");
}

Test(data, idx_truncated_header)
{
    unsigned char buf[IMG_BYTES];
    idx_images(buf, 0x803, N, ROWS, COLS);
    const char *img = write_file("img", buf, 10, 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0,
                "truncated: expected a 16-byte IDX image header, found 10 bytes");
}

Test(data, idx_truncated_labels)
{
    unsigned char buf[8 + N];
    const char *lab = write_file("lab", buf, idx_labels(buf, 0x801, N, LABELS) - 1, 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, good_images("img", 0), lab, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, lab, 0,
                "truncated: expected 11 bytes (header and label data), found 10");
}

Test(data, idx_trailing_bytes)
{
    unsigned char buf[IMG_BYTES + 5] = {0};
    idx_images(buf, 0x803, N, ROWS, COLS);
    const char *img = write_file("img", buf, sizeof buf, 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0,
                "trailing data: expected 40 bytes (header and image data), found 45");
}

Test(data, idx_label_count_mismatch)
{
    unsigned char buf[8 + N];
    const char *lab = write_file("lab", buf, idx_labels(buf, 0x801, N - 1, LABELS), 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, good_images("img", 0), lab, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, lab, 0, "expected as many labels as images (3), found 2");
}

Test(data, idx_zero_dimension)
{
    unsigned char buf[IMG_BYTES];
    const char *img = write_file("img", buf, idx_images(buf, 0x803, N, 0, COLS), 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0,
                "expected non-zero IDX image dimensions, found 3x0x4");
}

Test(data, idx_too_many_images)
{
    unsigned char buf[IMG_BYTES];
    const char *img = write_file("img", buf, idx_images(buf, 0x803, 0x80000001u, ROWS, COLS), 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0,
                "expected at most 2147483648 images, found 2147483649");
}

Test(data, idx_single_class)
{
    static const int32_t zeros[N] = {0, 0, 0};
    unsigned char buf[8 + N];
    const char *lab = write_file("lab", buf, idx_labels(buf, 0x801, N, zeros), 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, good_images("img", 0), lab, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, lab, 0,
                "expected labels of at least 2 classes, found only class 0");
}

Test(data, idx_corrupt_gzip)
{
    /* a valid gzip member header, then a deflate block of type 3 */
    static const unsigned char bad[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3,
                                        0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    const char *img = write_file("img.gz", bad, sizeof bad, 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0, "corrupt gzip stream: invalid block type");
}

Test(data, idx_truncated_gzip)
{
    /* a whole gzip file minus the end of its trailer */
    unsigned char buf[IMG_BYTES], gz[256];
    const char *full = write_file("full.gz", buf, idx_images(buf, 0x803, N, ROWS, COLS), 1);
    FILE *fp = fopen(full, "rb");
    cr_assert(not(eq(ptr, fp, NULL)));
    size_t len = fread(gz, 1, sizeof gz, fp);
    fclose(fp);
    cr_assert(gt(sz, len, 20));
    const char *img = write_file("cut.gz", gz, len - 4, 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0, "truncated gzip stream: unexpected end of file");
}

Test(data, idx_missing_files)
{
    plast_dataset *d;
    plast_err e;
    const char *img = tmp_file("no-such-images");
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_NOENT, img, 0, "cannot open: No such file or directory");
    char buf[600];
    char want[600];
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", img);
    cr_assert(eq(str, (char *)plast_err_format(&e, buf, sizeof buf), want));

    const char *lab = tmp_file("no-such-labels");
    rc = load_idx(&d, good_images("img", 0), lab, &e);
    expect_fail(rc, d, &e, PLAST_E_NOENT, lab, 0, "cannot open: No such file or directory");
}

Test(data, idx_out_of_memory)
{
    plast_dataset *d;
    plast_err e;
    plast_mem_fail_at(mem, 1);
    int rc = load_idx(&d, good_images("img", 0), good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_NOMEM, tmp_file("img"), 0,
                "out of memory allocating 36 bytes for the data set");
}

/* A 16-byte file announcing 784 MB of images: refused from the header and
 * the file size, before anything is allocated (found by fuzz_idx). */
Test(data, idx_header_larger_than_the_file)
{
    unsigned char buf[IMG_BYTES];
    idx_images(buf, 0x803, 1000000, 28, 28);
    const char *img = write_file("img", buf, 16, 0);
    plast_dataset *d;
    plast_err e;
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0,
                "truncated: expected 784000016 bytes (header and image data), found 16");
    cr_assert(eq(sz, plast_mem_peak_total(mem), 0));
}

Test(data, idx_header_larger_than_the_gzip_file_can_hold)
{
    unsigned char buf[IMG_BYTES];
    idx_images(buf, 0x803, 1000000, 28, 28);
    const char *img = write_file("img.gz", buf, 16, 1);
    FILE *fp = fopen(img, "rb");
    cr_assert(not(eq(ptr, fp, NULL)));
    cr_assert(eq(int, fseek(fp, 0, SEEK_END), 0));
    long stored = ftell(fp);
    fclose(fp);
    plast_dataset *d;
    plast_err e;
    char want[200];
    snprintf(want, sizeof want,
             "truncated: expected 784000016 bytes (header and image data), more than the "
             "%ld-byte gzip file can hold", stored);
    int rc = load_idx(&d, img, good_labels("lab", 0), &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, img, 0, want);
    cr_assert(eq(sz, plast_mem_peak_total(mem), 0));
}

/* ---- CSV ---------------------------------------------------------------- */

static int load_csv(plast_dataset **d, const char *path, int label_col, plast_err *e)
{
    *d = UNTOUCHED;
    return plast_dataset_load_csv(d, path, label_col, mem, e);
}

Test(data, csv_with_header)
{
    const char *path = write_text("a.csv", "x1, x2 ,label\r\n"
                                           "1.5, -2,1\n"
                                           " 3e1,4 , 0\r\n"
                                           "\n");
    plast_dataset *d;
    plast_err e = {0};
    cr_assert(eq(int, load_csv(&d, path, 2, &e), 0), "%s", e.msg);
    cr_assert(eq(sz, d->n, 2));
    cr_assert(eq(int, d->shape.ndim, 1));
    cr_assert(eq(int, d->shape.dim[0], 2));
    cr_assert(eq(int, d->classes, 2));
    cr_assert(eq(flt, d->scale, 1.0f));
    cr_assert(eq(flt, d->shift, 0.0f));
    cr_assert(eq(ptr, (void *)d->u8, NULL));
    static const float want[] = {1.5f, -2.0f, 30.0f, 4.0f};
    for (int i = 0; i < 4; i++)
        cr_assert(eq(flt, d->f32[i], want[i]), "value %d", i);
    cr_assert(eq(i32, d->labels[0], 1));
    cr_assert(eq(i32, d->labels[1], 0));
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), dataset_bytes(2, 2, 4)));
    plast_dataset_destroy(d);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), 0));
}

Test(data, csv_without_header_label_first)
{
    const char *path = write_text("b.csv", "1,0.5,0.25\n0,1,2\n3,4,5\n");
    plast_dataset *d;
    plast_err e = {0};
    cr_assert(eq(int, load_csv(&d, path, 0, &e), 0), "%s", e.msg);
    cr_assert(eq(sz, d->n, 3));
    cr_assert(eq(int, d->shape.dim[0], 2));
    cr_assert(eq(int, d->classes, 4));
    static const float want[] = {0.5f, 0.25f, 1, 2, 4, 5};
    for (int i = 0; i < 6; i++)
        cr_assert(eq(flt, d->f32[i], want[i]), "value %d", i);
    cr_assert(eq(i32, d->labels[0], 1));
    cr_assert(eq(i32, d->labels[1], 0));
    cr_assert(eq(i32, d->labels[2], 3));
    plast_dataset_destroy(d);
}

Test(data, csv_bad_column_count)
{
    const char *path = write_text("c.csv", "a,b,c\n1,2,3\n4,5\n");
    plast_dataset *d;
    plast_err e;
    int rc = load_csv(&d, path, 2, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, path, 3, "expected 3 columns, found 2");
    char buf[600], want[600];
    snprintf(want, sizeof want, "%s:3: expected 3 columns, found 2", path);
    cr_assert(eq(str, (char *)plast_err_format(&e, buf, sizeof buf), want));
}

Test(data, csv_bad_number)
{
    const char *path = write_text("d.csv", "1,2,0\n1, abc ,1\n");
    plast_dataset *d;
    plast_err e;
    int rc = load_csv(&d, path, 2, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, path, 2, "column 2: expected a number, found \"abc\"");
}

Test(data, csv_mixed_first_line_is_data)
{
    const char *path = write_text("d.csv", "a,1,0\n1,2,1\n");
    plast_dataset *d;
    plast_err e;
    int rc = load_csv(&d, path, 2, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, path, 1, "column 1: expected a number, found \"a\"");
}

Test(data, csv_not_finite)
{
    const char *path = write_text("d.csv", "1,2,0\n1e39,2,1\n");
    plast_dataset *d;
    plast_err e;
    int rc = load_csv(&d, path, 2, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, path, 2,
                "column 1: expected a finite number in float range, found \"1e39\"");
}

Test(data, csv_bad_labels)
{
    plast_dataset *d;
    plast_err e;
    const char *neg = write_text("neg.csv", "1,2,0\n1,2,-1\n");
    int rc = load_csv(&d, neg, 2, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, neg, 2,
                "column 3: expected a non-negative integer label, found \"-1\"");
    const char *frac = write_text("frac.csv", "1,2,0\n1,2,1.5\n");
    rc = load_csv(&d, frac, 2, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, frac, 2,
                "column 3: expected a non-negative integer label, found \"1.5\"");
}

Test(data, csv_no_rows)
{
    plast_dataset *d;
    plast_err e;
    const char *empty = write_text("empty.csv", "");
    int rc = load_csv(&d, empty, 0, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, empty, 0,
                "expected 1 to 2147483648 data rows, found 0");
    const char *header = write_text("header.csv", "x,y,label\n");
    rc = load_csv(&d, header, 2, &e);
    expect_fail(rc, d, &e, PLAST_E_DATA, header, 0,
                "expected 1 to 2147483648 data rows, found 0");
}

Test(data, csv_label_column_out_of_range)
{
    const char *path = write_text("e.csv", "1,2,0\n1,2,1\n");
    plast_dataset *d;
    plast_err e;
    int rc = load_csv(&d, path, 3, &e);
    expect_fail(rc, d, &e, PLAST_E_INVAL, path, 1,
                "label column 3 (0-based) does not exist: the file has 3 columns");
}

Test(data, csv_missing_file)
{
    const char *path = tmp_file("nothing.csv");
    plast_dataset *d;
    plast_err e;
    int rc = load_csv(&d, path, 0, &e);
    expect_fail(rc, d, &e, PLAST_E_NOENT, path, 0, "cannot open: No such file or directory");
}

/* ---- synthetic ---------------------------------------------------------- */

static plast_dataset *blobs(size_t n, int features, int classes, uint64_t seed)
{
    plast_dataset *d = NULL;
    plast_err e = {0};
    cr_assert(eq(int, plast_dataset_synthetic(&d, n, features, classes, seed, mem, &e), 0),
              "%s", e.msg);
    return d;
}

Test(data, synthetic_deterministic)
{
    plast_dataset *a = blobs(500, 8, 4, 7), *b = blobs(500, 8, 4, 7), *c = blobs(500, 8, 4, 8);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), 3 * dataset_bytes(500, 8, 4)));
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_SCRATCH), 0));
    cr_assert(eq(int, memcmp(a->f32, b->f32, 500 * 8 * sizeof(float)), 0));
    cr_assert(eq(int, memcmp(a->labels, b->labels, 500 * sizeof(int32_t)), 0));
    cr_assert(not(eq(int, memcmp(a->f32, c->f32, 500 * 8 * sizeof(float)), 0)));
    cr_assert(not(eq(int, memcmp(a->labels, c->labels, 500 * sizeof(int32_t)), 0)));
    cr_assert(eq(int, a->classes, 4));
    cr_assert(eq(int, a->shape.ndim, 1));
    cr_assert(eq(int, a->shape.dim[0], 8));
    cr_assert(eq(ptr, (void *)a->u8, NULL));
    cr_assert(eq(flt, a->scale, 1.0f));
    cr_assert(eq(flt, a->shift, 0.0f));
    plast_dataset_destroy(a);
    plast_dataset_destroy(b);
    plast_dataset_destroy(c);
    cr_assert(eq(sz, plast_mem_live_total(mem), 0));
}

/* The documented draw order: centres (class 0 first) uniform in [-1, 1),
 * then per sample below(classes) and normal pairs, the odd one dropped. */
Test(data, synthetic_draw_order)
{
    enum { F = 3, C = 2, S = 4 };
    plast_dataset *d = blobs(S, F, C, 11);
    plast_rng r;
    plast_rng_stream(&r, 11, PLAST_STREAM_DATA, 0);
    float centre[C * F];
    for (int k = 0; k < C * F; k++)
        centre[k] = plast_rng_uniform(&r, -1.0f, 1.0f);
    for (int i = 0; i < S; i++) {
        int32_t label = (int32_t)plast_rng_below(&r, C);
        cr_assert(eq(i32, d->labels[i], label), "label %d", i);
        double z[4];
        plast_rng_normal2(&r, z);
        plast_rng_normal2(&r, z + 2);
        for (int j = 0; j < F; j++) {
            float want = (float)(centre[label * F + j] + 0.3 * z[j]);
            cr_assert(eq(flt, d->f32[i * F + j], want), "sample %d feature %d", i, j);
        }
    }
    plast_dataset_destroy(d);
}

Test(data, synthetic_separable)
{
    enum { N_ALL = 2000, HALF = N_ALL / 2, F = 8, C = 4 };
    plast_dataset *d = blobs(N_ALL, F, C, 1);
    double mean[C][F] = {{0}};
    int count[C] = {0};
    for (int i = 0; i < HALF; i++) {
        int c = d->labels[i];
        cr_assert(c >= 0 && c < C);
        count[c]++;
        for (int j = 0; j < F; j++)
            mean[c][j] += d->f32[i * F + j];
    }
    for (int c = 0; c < C; c++) {
        cr_assert(gt(int, count[c], 0), "class %d never drawn", c);
        for (int j = 0; j < F; j++)
            mean[c][j] /= count[c];
    }
    int correct = 0;
    for (int i = HALF; i < N_ALL; i++) {
        int best = -1;
        double best_d2 = 0;
        for (int c = 0; c < C; c++) {
            double d2 = 0;
            for (int j = 0; j < F; j++) {
                double t = d->f32[i * F + j] - mean[c][j];
                d2 += t * t;
            }
            if (best < 0 || d2 < best_d2) {
                best = c;
                best_d2 = d2;
            }
        }
        correct += best == d->labels[i];
    }
    cr_assert(gt(dbl, (double)correct / HALF, 0.95), "nearest-centre accuracy %d/%d", correct,
              HALF);
    plast_dataset_destroy(d);
}

Test(data, synthetic_bad_arguments)
{
    plast_dataset *d = UNTOUCHED;
    plast_err e;
    int rc = plast_dataset_synthetic(&d, 10, 4, 1, 1, mem, &e);
    expect_fail(rc, d, &e, PLAST_E_INVAL, "", 0,
                "synthetic data: expected features >= 1 and classes >= 2, found 4 and 1");
    rc = plast_dataset_synthetic(&d, 0, 4, 3, 1, mem, &e);
    expect_fail(rc, d, &e, PLAST_E_INVAL, "", 0,
                "synthetic data: expected 1 to 2147483648 samples, found 0");
}

Test(data, synthetic_out_of_memory)
{
    plast_dataset *d = UNTOUCHED;
    plast_err e;
    plast_mem_fail_at(mem, 2); /* the centres, after the data block */
    int rc = plast_dataset_synthetic(&d, 10, 4, 3, 1, mem, &e);
    expect_fail(rc, d, &e, PLAST_E_NOMEM, "", 0,
                "out of memory allocating 48 bytes (scratch)");
}

/* ---- slice and gather ---------------------------------------------------- */

Test(data, slice_is_a_view)
{
    plast_dataset *d, *v = UNTOUCHED;
    plast_err e = {0};
    cr_assert(eq(int, load_idx(&d, good_images("img", 0), good_labels("lab", 0), &e), 0));
    size_t live = plast_mem_live_total(mem);
    cr_assert(eq(int, plast_dataset_slice(&v, d, 1, 3, &e), 0));
    cr_assert(eq(sz, plast_mem_live_total(mem), live));
    cr_assert(eq(sz, v->n, 2));
    cr_assert(eq(ptr, (void *)v->u8, (void *)(d->u8 + PIX)));
    cr_assert(eq(ptr, (void *)v->labels, (void *)(d->labels + 1)));
    cr_assert(eq(ptr, v->block_, NULL));
    cr_assert(plast_shape_equal(&v->shape, &d->shape));
    cr_assert(eq(int, v->classes, d->classes));
    cr_assert(eq(flt, v->scale, d->scale));
    cr_assert(eq(flt, v->shift, d->shift));
    plast_dataset_destroy(v);
    cr_assert(eq(sz, plast_mem_live_total(mem), live));
    cr_assert(eq(u8, d->u8[PIX], pixel(PIX)));

    static const size_t bad[][2] = {{1, 1}, {2, 1}, {0, N + 1}, {N, N + 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = UNTOUCHED;
        cr_assert(eq(int, plast_dataset_slice(&v, d, bad[i][0], bad[i][1], &e), PLAST_E_INVAL));
        cr_assert(eq(ptr, (void *)v, (void *)UNTOUCHED));
    }
    cr_assert(eq(str, e.msg, "data set slice [3, 4): expected begin < end <= 3"));
    plast_dataset_destroy(d);
}

Test(data, gather_u8_with_scale_and_shift)
{
    plast_dataset *d, *v;
    plast_err e = {0};
    cr_assert(eq(int, load_idx(&d, good_images("img", 0), good_labels("lab", 0), &e), 0));
    const uint32_t idx[2] = {2, 0};
    plast_real x[2 * PIX];
    int32_t labels[2] = {-1, -1};
    plast_dataset_gather(d, idx, 2, x, labels);
    /* stored * scale + shift, with scale the float 1/255 (not a division) */
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < PIX; j++)
            cr_assert(eq(flt, x[i * PIX + j], (float)pixel((int)idx[i] * PIX + j) * d->scale + 0.0f),
                      "sample %d value %d", i, j);
    cr_assert(eq(i32, labels[0], LABELS[2]));
    cr_assert(eq(i32, labels[1], LABELS[0]));

    d->scale = 2.0f;
    d->shift = -1.0f;
    plast_dataset_gather(d, idx, 2, x, NULL);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < PIX; j++)
            cr_assert(eq(flt, x[i * PIX + j], 2.0f * pixel((int)idx[i] * PIX + j) - 1.0f));

    /* a view gathers relative to its own first sample */
    cr_assert(eq(int, plast_dataset_slice(&v, d, 1, 3, &e), 0));
    const uint32_t first = 0;
    plast_dataset_gather(v, &first, 1, x, labels);
    for (int j = 0; j < PIX; j++)
        cr_assert(eq(flt, x[j], 2.0f * pixel(PIX + j) - 1.0f));
    cr_assert(eq(i32, labels[0], LABELS[1]));
    plast_dataset_destroy(v);
    plast_dataset_destroy(d);
}

Test(data, gather_f32)
{
    const char *path = write_text("g.csv", "1,2,0\n3,4,1\n5,6,1\n");
    plast_dataset *d;
    plast_err e = {0};
    cr_assert(eq(int, load_csv(&d, path, 2, &e), 0), "%s", e.msg);
    d->scale = 0.5f;
    d->shift = 1.0f;
    const uint32_t idx[3] = {1, 1, 2};
    plast_real x[6];
    int32_t labels[3];
    plast_dataset_gather(d, idx, 3, x, labels);
    static const float want[] = {2.5f, 3.0f, 2.5f, 3.0f, 3.5f, 4.0f};
    for (int i = 0; i < 6; i++)
        cr_assert(eq(flt, x[i], want[i]), "value %d", i);
    cr_assert(eq(i32, labels[0], 1));
    cr_assert(eq(i32, labels[2], 1));
    plast_dataset_destroy(d);
}

/* A prefetch is only a hint: the gather after it gives the same values,
 * and indices past the end (which gather would refuse) are skipped, on
 * both storage types (under ASan a read of them would be reported). */
Test(data, prefetch_changes_nothing)
{
    plast_dataset *d, *c;
    plast_err e = {0};
    cr_assert(eq(int, load_idx(&d, good_images("img", 0), good_labels("lab", 0), &e), 0));
    const char *path = write_text("p.csv", "1,2,0\n3,4,1\n");
    cr_assert(eq(int, load_csv(&c, path, 2, &e), 0), "%s", e.msg);
    const uint32_t idx[3] = {2, 0, 1}, wild[3] = {1, 9999, UINT32_MAX};
    plast_real x[3 * PIX], y[3 * PIX];
    plast_dataset_gather(d, idx, 3, x, NULL);
    plast_dataset_prefetch(d, wild, 3);
    plast_dataset_prefetch(d, idx, 3);
    plast_dataset_gather(d, idx, 3, y, NULL);
    cr_assert(memcmp(x, y, sizeof x) == 0);
    plast_dataset_prefetch(c, wild, 3);
    plast_dataset_gather(c, idx + 1, 2, y, NULL);
    cr_assert(eq(flt, y[0], 1.0f));
    cr_assert(eq(flt, y[3], 4.0f));
    plast_dataset_destroy(c);
    plast_dataset_destroy(d);
}

/* ---- shuffle ------------------------------------------------------------- */

/* The PCG32 reference demo (seed 42, stream 54), round 1: six u32, 65
 * coins, 33 dice, then the 52-card deal, which is plast_shuffle. */
Test(data, shuffle_matches_pcg32_demo)
{
    static const uint32_t u32[6] = {0xa15c02b7, 0x7b47f409, 0xba1d3330,
                                    0x83d2f293, 0xbfa4784b, 0xcbed606e};
    static const char coins[] =
        "HHTTTHTHHHTHTTTHHHHHTTTHHHTHTHTHTTHTTTHHHHHHTTTTHHTTTTTHTTTTTTTHT";
    static const uint32_t dice[33] = {3, 4, 1, 1, 2, 2, 3, 2, 4, 3, 2, 4, 3, 3, 5, 2, 3,
                                      1, 3, 1, 5, 1, 4, 1, 5, 6, 4, 6, 6, 2, 6, 3, 3};
    static const uint32_t deck[52] = {46, 51, 22, 11, 10, 13, 8,  38, 49, 17, 40, 50, 42,
                                      3,  15, 12, 2,  36, 1,  41, 27, 47, 7,  24, 48, 6,
                                      21, 0,  14, 44, 32, 23, 19, 5,  33, 39, 30, 35, 9,
                                      29, 43, 18, 4,  20, 26, 31, 34, 16, 28, 45, 25, 37};
    plast_rng r;
    plast_rng_seed(&r, 42, 54);
    for (int i = 0; i < 6; i++)
        cr_assert(eq(u32, plast_rng_u32(&r), u32[i]), "u32 %d", i);
    char got[66] = {0};
    for (int i = 0; i < 65; i++)
        got[i] = plast_rng_below(&r, 2) ? 'H' : 'T';
    cr_assert(eq(str, got, (char *)coins));
    for (int i = 0; i < 33; i++)
        cr_assert(eq(u32, plast_rng_below(&r, 6) + 1, dice[i]), "die %d", i);

    uint32_t perm[52];
    plast_shuffle(perm, 52, &r);
    for (int i = 0; i < 52; i++)
        cr_assert(eq(u32, perm[i], deck[i]), "card %d", i);
    cr_assert(eq(u32, plast_rng_u32(&r), 0x74ab93ad), "round 2 starts right after the deal");
}

Test(data, shuffle_is_a_permutation)
{
    enum { M = 1000 };
    static uint32_t perm[M];
    unsigned char seen[M] = {0};
    plast_rng r;
    plast_rng_stream(&r, 3, PLAST_STREAM_SHUFFLE, 0);
    plast_shuffle(perm, M, &r);
    int fixed = 0;
    for (int i = 0; i < M; i++) {
        cr_assert(lt(u32, perm[i], M));
        cr_assert(eq(u8, seen[perm[i]], 0), "%u twice", perm[i]);
        seen[perm[i]] = 1;
        fixed += perm[i] == (uint32_t)i;
    }
    cr_assert(lt(int, fixed, 20), "%d fixed points: not shuffled", fixed);

    plast_rng before = r;
    perm[0] = 99;
    plast_shuffle(perm, 1, &r);
    cr_assert(eq(u32, perm[0], 0));
    cr_assert(eq(u64, r.state, before.state), "n = 1 draws nothing");
    plast_shuffle(perm, 0, &r);
    cr_assert(eq(u64, r.state, before.state), "n = 0 draws nothing");
}

/* ---- the real data set, when installed ------------------------------------ */

Test(data, fashion_mnist_train, .timeout = 120)
{
    const char *img = FASHION_DIR "/train-images-idx3-ubyte.gz";
    const char *lab = FASHION_DIR "/train-labels-idx1-ubyte.gz";
    if (access(img, R_OK) != 0)
        cr_skip_test("%s not installed (Debian package dataset-fashion-mnist)", img);
    plast_dataset *d;
    plast_err e = {0};
    cr_assert(eq(int, load_idx(&d, img, lab, &e), 0), "%s: %s", e.file, e.msg);
    cr_assert(eq(sz, d->n, 60000));
    cr_assert(eq(int, d->shape.ndim, 3));
    cr_assert(eq(int, d->shape.dim[0], 1));
    cr_assert(eq(int, d->shape.dim[1], 28));
    cr_assert(eq(int, d->shape.dim[2], 28));
    cr_assert(eq(int, d->classes, 10));
    static const int32_t first[5] = {9, 0, 0, 3, 0};
    for (int i = 0; i < 5; i++)
        cr_assert(eq(i32, d->labels[i], first[i]), "label %d", i);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), dataset_bytes(60000, 784, 1)));
    plast_dataset_destroy(d);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), 0));
}
