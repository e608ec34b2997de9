/* data.c - data sets: IDX (plain or gzip), CSV and gaussian blobs.
 *
 * A data set owns one PLAST_MEM_DATASET block: the n int32 labels first
 * (so both parts stay aligned for their type), then the n samples in their
 * stored type, uint8 or float.  Batches are converted on demand by
 * plast_dataset_gather(); a slice is a view into its parent's block. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "plast/data.h"
#include "simd.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define MAX_SAMPLES ((size_t)1 << 31) /* sample indices are uint32 */
#define GZ_CHUNK ((size_t)1 << 30)    /* gzread takes an unsigned count */
#define READ_BUF 16384
#define BLOB_SPREAD 0.3 /* standard deviation of a blob around its centre */
#define SHOW_FIELD 40   /* characters of a bad field quoted in a message */
#define DEFLATE_MAX_RATIO 1032 /* deflate never expands a stored byte more */

/* ---- storage ------------------------------------------------------------ */

/* A data set under construction, with writable views of its block. */
typedef struct dataset_build {
    plast_dataset *d;
    int32_t *labels;
    void *samples;
} dataset_build;

static int dataset_alloc(dataset_build *b, plast_mem *mem, size_t n, const plast_shape *shape,
                         size_t elem_bytes, const char *path, plast_err *e)
{
    size_t values = plast_shape_size(shape), per_sample, bytes;
    if (__builtin_mul_overflow(values, elem_bytes, &per_sample) ||
        __builtin_add_overflow(per_sample, sizeof(int32_t), &per_sample) ||
        __builtin_mul_overflow(n, per_sample, &bytes))
        return plast_err_at(e, PLAST_E_INVAL, path, 0,
                            "%zu samples of %zu values do not fit in memory", n, values);
    plast_dataset *d = calloc(1, sizeof *d);
    if (!d)
        return plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory creating a data set");
    d->block_ = plast_mem_alloc(mem, PLAST_MEM_DATASET, bytes);
    if (!d->block_) {
        free(d);
        return plast_err_at(e, PLAST_E_NOMEM, path, 0,
                            "out of memory allocating %zu bytes for the data set", bytes);
    }
    d->mem_ = mem;
    d->n = n;
    d->shape = *shape;
    d->scale = 1.0f;
    d->shift = 0.0f;
    b->d = d;
    b->labels = d->block_;
    b->samples = b->labels + n;
    d->labels = b->labels;
    if (elem_bytes == 1)
        d->u8 = b->samples;
    else
        d->f32 = b->samples;
    return PLAST_OK;
}

void plast_dataset_destroy(plast_dataset *d)
{
    if (!d)
        return;
    if (d->block_)
        plast_mem_free(d->mem_, d->block_);
    free(d);
}

/* classes = 1 + the largest label; a single class cannot be trained. */
static int set_classes(plast_dataset *d, const char *path, plast_err *e)
{
    int32_t max = 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->labels[i] > max)
            max = d->labels[i];
    if (max < 1)
        return plast_err_at(e, PLAST_E_DATA, path, 0,
                            "expected labels of at least 2 classes, found only class 0");
    d->classes = (int)max + 1;
    return PLAST_OK;
}

static int open_error(const char *path, plast_err *e)
{
    int err = errno;
    return plast_err_at(e, err == ENOENT ? PLAST_E_NOENT : PLAST_E_IO, path, 0,
                        "cannot open: %s", strerror(err));
}

/* ---- IDX through zlib --------------------------------------------------- */

typedef struct idx_file {
    gzFile gz;
    const char *path;
    const char *what; /* "image" or "label" */
    uint32_t dim[3];  /* count, then rows and columns for images */
    size_t header;    /* bytes */
    size_t total;     /* header + data bytes the header announces */
    size_t stored;    /* size of the file on disk, 0 = unknown */
} idx_file;

static int idx_open(idx_file *f, const char *path, const char *what, plast_err *e)
{
    /* open() first: its errno tells a missing file from other failures.
     * gzread reads a file without the gzip magic as it is, so the content,
     * not the name, decides. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return open_error(path, e);
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        f->stored = (size_t)st.st_size;
    f->gz = gzdopen(fd, "rb");
    if (!f->gz) {
        close(fd);
        return plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory opening the file");
    }
    gzbuffer(f->gz, 1u << 17);
    f->path = path;
    f->what = what;
    return PLAST_OK;
}

static void idx_close(idx_file *f)
{
    if (f->gz)
        gzclose(f->gz);
    f->gz = NULL;
}

/* zlib's message is "<fd:N>: text" for a gzdopen'ed file: keep the text. */
static const char *gz_message(gzFile gz, int *errnum)
{
    const char *msg = gzerror(gz, errnum);
    const char *colon = strstr(msg, ": ");
    if (strncmp(msg, "<fd:", 4) == 0 && colon)
        return colon + 2;
    return msg;
}

static int gz_fail(gzFile gz, const char *path, plast_err *e)
{
    int errnum = Z_OK;
    const char *msg = gz_message(gz, &errnum);
    if (errnum == Z_ERRNO)
        return plast_err_at(e, PLAST_E_IO, path, 0, "read error: %s", msg);
    if (errnum == Z_MEM_ERROR)
        return plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory decompressing");
    return plast_err_at(e, PLAST_E_DATA, path, 0, "%s gzip stream: %s",
                        errnum == Z_BUF_ERROR ? "truncated" : "corrupt", msg);
}

/* Read up to len bytes; *got < len only at the end of the data.  A gzip
 * stream cut short is a zlib error, not an end. */
static int gz_read_full(gzFile gz, void *buf, size_t len, size_t *got, const char *path,
                        plast_err *e)
{
    unsigned char *p = buf;
    *got = 0;
    while (*got < len) {
        size_t want = len - *got < GZ_CHUNK ? len - *got : GZ_CHUNK;
        int r = gzread(gz, p + *got, (unsigned)want);
        if (r < 0)
            return gz_fail(gz, path, e);
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    int errnum = Z_OK;
    gzerror(gz, &errnum);
    return errnum == Z_OK ? PLAST_OK : gz_fail(gz, path, e);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int idx_truncated(const idx_file *f, size_t found, plast_err *e)
{
    return plast_err_at(e, PLAST_E_DATA, f->path, 0,
                        "truncated: expected %zu bytes (header and %s data), found %zu", f->total,
                        f->what, found);
}

/* Sizes the header announces: non-zero, at most 2^31 samples, images of
 * at most INT_MAX pixels (shape dims are int), no overflow. */
static int idx_check_dims(idx_file *f, int ndim, plast_err *e)
{
    uint64_t pixels = 1;
    for (int i = 1; i < ndim; i++)
        pixels *= f->dim[i];
    if (f->dim[0] == 0 || pixels == 0) {
        if (ndim == 3)
            return plast_err_at(e, PLAST_E_DATA, f->path, 0,
                                "expected non-zero IDX image dimensions, found %" PRIu32
                                "x%" PRIu32 "x%" PRIu32,
                                f->dim[0], f->dim[1], f->dim[2]);
        return plast_err_at(e, PLAST_E_DATA, f->path, 0, "expected a non-zero label count");
    }
    if (f->dim[0] > MAX_SAMPLES)
        return plast_err_at(e, PLAST_E_DATA, f->path, 0,
                            "expected at most %zu %ss, found %" PRIu32, MAX_SAMPLES, f->what,
                            f->dim[0]);
    if (pixels > INT_MAX)
        return plast_err_at(e, PLAST_E_DATA, f->path, 0,
                            "expected images of at most %d pixels, found %" PRIu32 "x%" PRIu32,
                            INT_MAX, f->dim[1], f->dim[2]);
    size_t data;
    if (__builtin_mul_overflow((size_t)f->dim[0], (size_t)pixels, &data) ||
        __builtin_add_overflow(data, f->header, &f->total))
        return plast_err_at(e, PLAST_E_DATA, f->path, 0,
                            "%" PRIu32 " %ss do not fit in memory", f->dim[0], f->what);
    return PLAST_OK;
}

/* A header announcing more data than the file can hold is refused before
 * anything is allocated for it: a plain file must hold it all, and a gzip
 * stream expands at most DEFLATE_MAX_RATIO times. */
static int idx_check_room(const idx_file *f, plast_err *e)
{
    size_t most = f->stored;
    if (!f->stored)
        return PLAST_OK;
    if (!gzdirect(f->gz) && __builtin_mul_overflow(f->stored, DEFLATE_MAX_RATIO, &most))
        return PLAST_OK;
    if (f->total <= most)
        return PLAST_OK;
    if (gzdirect(f->gz))
        return idx_truncated(f, f->stored, e);
    return plast_err_at(e, PLAST_E_DATA, f->path, 0,
                        "truncated: expected %zu bytes (header and %s data), more than the "
                        "%zu-byte gzip file can hold", f->total, f->what, f->stored);
}

/* Big-endian magic, then ndim uint32 sizes. */
static int idx_read_header(idx_file *f, uint32_t magic, int ndim, plast_err *e)
{
    unsigned char h[16];
    size_t got;
    int rc;
    f->header = 4 * (size_t)(1 + ndim);
    if ((rc = gz_read_full(f->gz, h, f->header, &got, f->path, e)) != 0)
        return rc;
    if (got < f->header)
        return plast_err_at(e, PLAST_E_DATA, f->path, 0,
                            "truncated: expected a %zu-byte IDX %s header, found %zu bytes",
                            f->header, f->what, got);
    if (be32(h) != magic)
        return plast_err_at(e, PLAST_E_DATA, f->path, 0,
                            "expected IDX %s magic 0x%08" PRIx32 ", found 0x%08" PRIx32, f->what,
                            magic, be32(h));
    for (int i = 0; i < ndim; i++)
        f->dim[i] = be32(h + 4 + 4 * i);
    if ((rc = idx_check_dims(f, ndim, e)) != 0)
        return rc;
    return idx_check_room(f, e);
}

/* The data must end exactly where the header says. */
static int idx_expect_end(idx_file *f, plast_err *e)
{
    unsigned char buf[READ_BUF];
    size_t extra = 0, got;
    int rc;
    do {
        if ((rc = gz_read_full(f->gz, buf, sizeof buf, &got, f->path, e)) != 0)
            return rc;
        extra += got;
    } while (got == sizeof buf);
    if (extra)
        return plast_err_at(e, PLAST_E_DATA, f->path, 0,
                            "trailing data: expected %zu bytes (header and %s data), found %zu",
                            f->total, f->what, f->total + extra);
    return PLAST_OK;
}

static int idx_read_images(idx_file *f, uint8_t *pixels, plast_err *e)
{
    size_t want = f->total - f->header, got;
    int rc = gz_read_full(f->gz, pixels, want, &got, f->path, e);
    if (rc)
        return rc;
    if (got < want)
        return idx_truncated(f, f->header + got, e);
    return idx_expect_end(f, e);
}

static int idx_read_labels(idx_file *f, int32_t *labels, plast_err *e)
{
    unsigned char buf[READ_BUF];
    size_t want = f->total - f->header, done = 0, got;
    int rc;
    while (done < want) {
        size_t part = want - done < sizeof buf ? want - done : sizeof buf;
        if ((rc = gz_read_full(f->gz, buf, part, &got, f->path, e)) != 0)
            return rc;
        for (size_t i = 0; i < got; i++)
            labels[done + i] = buf[i];
        done += got;
        if (got < part)
            return idx_truncated(f, f->header + done, e);
    }
    return idx_expect_end(f, e);
}

int plast_dataset_load_idx(plast_dataset **out, const char *images, const char *labels,
                           plast_mem *mem, plast_err *e)
{
    idx_file img = {0}, lab = {0};
    dataset_build b = {0};
    int rc;
    if ((rc = idx_open(&img, images, "image", e)) != 0)
        return rc;
    if ((rc = idx_read_header(&img, IDX_IMAGES_MAGIC, 3, e)) != 0)
        goto close_images;
    if ((rc = idx_open(&lab, labels, "label", e)) != 0)
        goto close_images;
    if ((rc = idx_read_header(&lab, IDX_LABELS_MAGIC, 1, e)) != 0)
        goto close_labels;
    if (lab.dim[0] != img.dim[0]) {
        rc = plast_err_at(e, PLAST_E_DATA, labels, 0,
                          "expected as many labels as images (%" PRIu32 "), found %" PRIu32,
                          img.dim[0], lab.dim[0]);
        goto close_labels;
    }
    plast_shape shape = {.ndim = 3, .dim = {1, (int)img.dim[1], (int)img.dim[2]}};
    if ((rc = dataset_alloc(&b, mem, img.dim[0], &shape, 1, images, e)) != 0)
        goto close_labels;
    if ((rc = idx_read_images(&img, b.samples, e)) != 0 ||
        (rc = idx_read_labels(&lab, b.labels, e)) != 0 ||
        (rc = set_classes(b.d, labels, e)) != 0)
        goto free_dataset;
    b.d->scale = 1.0f / 255.0f;
    *out = b.d;
    b.d = NULL;
free_dataset:
    plast_dataset_destroy(b.d);
close_labels:
    idx_close(&lab);
close_images:
    idx_close(&img);
    return rc;
}

/* ---- CSV ---------------------------------------------------------------- */

typedef struct csv_scan {
    const char *path;
    int label_col;
    int line;         /* current line, 1-based */
    int columns;      /* 0 until the first line fixes it */
    size_t rows;      /* data rows so far */
    size_t capacity;  /* rows x and labels hold; 0 in the counting pass */
    float *x;
    int32_t *labels;
} csv_scan;

/* One comma-separated field, [begin, end). */
typedef struct csv_field {
    const char *begin, *end;
} csv_field;

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* The field at p and where the next one starts (NULL after the last). */
static csv_field next_field(const char **p)
{
    csv_field f = {*p, strchr(*p, ',')};
    if (f.end) {
        *p = f.end + 1;
    } else {
        f.end = *p + strlen(*p);
        *p = NULL;
    }
    return f;
}

static int count_fields(const char *line)
{
    long n = 1;
    for (const char *p = strchr(line, ','); p && n <= INT_MAX; p = strchr(p + 1, ','))
        n++;
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* A whole field (spaces around allowed) converted by strtod.  Overflow
 * (ERANGE with HUGE_VAL) is caught by the range check of the caller;
 * underflow to a tiny or zero value is accepted. */
static int parse_double(csv_field f, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(f.begin, &end);
    return end != f.begin && skip_blanks(end) == f.end;
}

static int is_number(csv_field f)
{
    double v;
    return parse_double(f, &v);
}

static int bad_field(csv_scan *s, csv_field f, int col, const char *expected, plast_err *e)
{
    const char *b = skip_blanks(f.begin), *end = f.end;
    while (end > b && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    int len = end - b > SHOW_FIELD ? SHOW_FIELD : (int)(end - b);
    return plast_err_at(e, PLAST_E_DATA, s->path, s->line,
                        "column %d: expected %s, found \"%.*s\"%s", col + 1, expected, len, b,
                        end - b > SHOW_FIELD ? "..." : "");
}

static int parse_value(csv_scan *s, csv_field f, int col, float *out, plast_err *e)
{
    double v;
    if (!parse_double(f, &v))
        return bad_field(s, f, col, "a number", e);
    if (!isfinite(v) || fabs(v) > FLT_MAX)
        return bad_field(s, f, col, "a finite number in float range", e);
    *out = (float)v;
    return PLAST_OK;
}

/* Labels stop below INT32_MAX so that classes = 1 + max fits an int. */
static int parse_label(csv_scan *s, csv_field f, int col, int32_t *out, plast_err *e)
{
    char *end;
    errno = 0;
    long long v = strtoll(f.begin, &end, 10);
    if (end == f.begin || skip_blanks(end) != f.end || errno == ERANGE || v < 0 ||
        v >= INT32_MAX)
        return bad_field(s, f, col, "a non-negative integer label", e);
    *out = (int32_t)v;
    return PLAST_OK;
}

/* A header is a first line none of whose fields is a number. */
static int is_header(const char *line)
{
    const char *p = line;
    while (p)
        if (is_number(next_field(&p)))
            return 0;
    return 1;
}

static int csv_fix_columns(csv_scan *s, int columns, plast_err *e)
{
    if (columns < 2)
        return plast_err_at(e, PLAST_E_DATA, s->path, s->line,
                            "expected at least 2 columns (features and a label), found %d",
                            columns);
    if (s->label_col >= columns)
        return plast_err_at(e, PLAST_E_INVAL, s->path, s->line,
                            "label column %d (0-based) does not exist: the file has %d columns",
                            s->label_col, columns);
    s->columns = columns;
    return PLAST_OK;
}

/* Check one data row and, in the filling pass, store it. */
static int csv_row(csv_scan *s, const char *line, plast_err *e)
{
    int columns = count_fields(line), rc;
    if (columns != s->columns)
        return plast_err_at(e, PLAST_E_DATA, s->path, s->line,
                            "expected %d columns, found %d", s->columns, columns);
    if (s->capacity && s->rows >= s->capacity)
        return plast_err_at(e, PLAST_E_IO, s->path, s->line, "file grew while being read");
    float v = 0.0f, *x = s->capacity ? s->x + s->rows * (size_t)(columns - 1) : &v;
    int32_t label = 0;
    const char *p = line;
    for (int col = 0; col < columns; col++) {
        csv_field f = next_field(&p);
        if (col == s->label_col)
            rc = parse_label(s, f, col, &label, e);
        else
            rc = parse_value(s, f, col, x, e);
        if (rc)
            return rc;
        if (col != s->label_col && s->capacity)
            x++;
    }
    if (s->capacity)
        s->labels[s->rows] = label;
    s->rows++;
    return PLAST_OK;
}

/* Cut the line end (LF or CRLF); an embedded NUL would hide the rest. */
static int csv_clean_line(csv_scan *s, char *line, ssize_t len, plast_err *e)
{
    if ((size_t)len != strlen(line))
        return plast_err_at(e, PLAST_E_DATA, s->path, s->line, "expected text, found a NUL byte");
    if (len && line[len - 1] == '\n')
        line[--len] = '\0';
    if (len && line[len - 1] == '\r')
        line[--len] = '\0';
    return PLAST_OK;
}

/* One pass over the file: counts rows (capacity 0) or stores them. */
static int csv_pass(FILE *fp, csv_scan *s, plast_err *e)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = PLAST_OK, seen_content = 0;
    s->line = 0;
    s->rows = 0;
    while ((len = getline(&line, &cap, fp)) >= 0) {
        if (s->line == INT_MAX) {
            rc = plast_err_at(e, PLAST_E_DATA, s->path, s->line, "too many lines");
            break;
        }
        s->line++;
        if ((rc = csv_clean_line(s, line, len, e)) != 0)
            break;
        if (*skip_blanks(line) == '\0')
            continue; /* blank lines, e.g. at the end, carry no sample */
        if (!seen_content) {
            seen_content = 1;
            if ((rc = csv_fix_columns(s, count_fields(line), e)) != 0)
                break;
            if (is_header(line))
                continue;
        }
        if ((rc = csv_row(s, line, e)) != 0)
            break;
    }
    if (!rc && ferror(fp))
        rc = plast_err_at(e, PLAST_E_IO, s->path, 0, "read error: %s", strerror(errno));
    free(line);
    return rc;
}

int plast_dataset_load_csv(plast_dataset **out, const char *path, int label_col,
                           plast_mem *mem, plast_err *e)
{
    csv_scan s = {.path = path, .label_col = label_col};
    dataset_build b = {0};
    int rc;
    if (label_col < 0)
        return plast_err_at(e, PLAST_E_INVAL, path, 0,
                            "expected a label column >= 0, found %d", label_col);
    FILE *fp = fopen(path, "re");
    if (!fp)
        return open_error(path, e);
    if ((rc = csv_pass(fp, &s, e)) != 0)
        goto close_file;
    if (s.rows == 0 || s.rows > MAX_SAMPLES) {
        rc = plast_err_at(e, PLAST_E_DATA, path, 0,
                          "expected 1 to %zu data rows, found %zu", MAX_SAMPLES, s.rows);
        goto close_file;
    }
    plast_shape shape = {.ndim = 1, .dim = {s.columns - 1}};
    if ((rc = dataset_alloc(&b, mem, s.rows, &shape, sizeof(float), path, e)) != 0)
        goto close_file;
    /* second pass: the same checks, now storing into the one block */
    s.capacity = s.rows;
    s.x = b.samples;
    s.labels = b.labels;
    rewind(fp);
    if ((rc = csv_pass(fp, &s, e)) != 0)
        goto free_dataset;
    if (s.rows != s.capacity) {
        rc = plast_err_at(e, PLAST_E_IO, path, 0, "file changed while being read");
        goto free_dataset;
    }
    if ((rc = set_classes(b.d, path, e)) != 0)
        goto free_dataset;
    *out = b.d;
    b.d = NULL;
free_dataset:
    plast_dataset_destroy(b.d);
close_file:
    fclose(fp);
    return rc;
}

/* ---- synthetic ---------------------------------------------------------- */

/* centre + BLOB_SPREAD * N(0, 1), normals drawn in pairs per sample (the
 * second of the last pair is dropped when features is odd). */
static void blob_sample(plast_rng *r, const float *centre, int features, float *x)
{
    double z[2];
    for (int j = 0; j < features; j += 2) {
        plast_rng_normal2(r, z);
        x[j] = (float)(centre[j] + BLOB_SPREAD * z[0]);
        if (j + 1 < features)
            x[j + 1] = (float)(centre[j + 1] + BLOB_SPREAD * z[1]);
    }
}

int plast_dataset_synthetic(plast_dataset **out, size_t n, int features, int classes,
                            uint64_t seed, plast_mem *mem, plast_err *e)
{
    dataset_build b = {0};
    size_t ncentre, bytes;
    int rc;
    if (n == 0 || n > MAX_SAMPLES)
        return plast_err_set(e, PLAST_E_INVAL,
                             "synthetic data: expected 1 to %zu samples, found %zu", MAX_SAMPLES,
                             n);
    if (features < 1 || classes < 2)
        return plast_err_set(e, PLAST_E_INVAL,
                             "synthetic data: expected features >= 1 and classes >= 2, "
                             "found %d and %d", features, classes);
    if (__builtin_mul_overflow((size_t)classes, (size_t)features, &ncentre) ||
        __builtin_mul_overflow(ncentre, sizeof(float), &bytes))
        return plast_err_set(e, PLAST_E_INVAL, "synthetic data: %d centres of %d features "
                             "do not fit in memory", classes, features);
    plast_shape shape = {.ndim = 1, .dim = {features}};
    if ((rc = dataset_alloc(&b, mem, n, &shape, sizeof(float), NULL, e)) != 0)
        return rc;
    float *centres = plast_mem_alloc(mem, PLAST_MEM_SCRATCH, bytes);
    if (!centres) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory allocating %zu bytes (%s)", bytes,
                           plast_mem_cat_name(PLAST_MEM_SCRATCH));
        goto free_dataset;
    }
    /* all from one stream: the centres, class 0 first, then per sample
     * its label and its noise */
    plast_rng r;
    plast_rng_stream(&r, seed, PLAST_STREAM_DATA, 0);
    for (size_t k = 0; k < ncentre; k++)
        centres[k] = plast_rng_uniform(&r, -1.0f, 1.0f);
    float *x = b.samples;
    for (size_t i = 0; i < n; i++) {
        b.labels[i] = (int32_t)plast_rng_below(&r, (uint32_t)classes);
        blob_sample(&r, centres + (size_t)b.labels[i] * features, features,
                    x + i * (size_t)features);
    }
    plast_mem_free(mem, centres);
    b.d->classes = classes; /* the model's output width, even if a class drew no sample */
    *out = b.d;
    return PLAST_OK;
free_dataset:
    plast_dataset_destroy(b.d);
    return rc;
}

/* ---- views, batches, order ---------------------------------------------- */

int plast_dataset_slice(plast_dataset **out, const plast_dataset *d, size_t begin, size_t end,
                        plast_err *e)
{
    if (begin >= end || end > d->n)
        return plast_err_set(e, PLAST_E_INVAL,
                             "data set slice [%zu, %zu): expected begin < end <= %zu", begin,
                             end, d->n);
    plast_dataset *v = malloc(sizeof *v);
    if (!v)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory creating a data set view");
    *v = *d;
    size_t values = plast_shape_size(&d->shape);
    v->n = end - begin;
    v->u8 = d->u8 ? d->u8 + begin * values : NULL;
    v->f32 = d->f32 ? d->f32 + begin * values : NULL;
    v->labels = d->labels + begin;
    v->block_ = NULL;
    *out = v;
    return PLAST_OK;
}

/* dst[j] = src[j] * scale + shift: one sample of a batch.  The same bits
 * at any vector width (no FMA: the build's -ffp-contract=off). */
PLAST_CLONES static void convert_u8(const uint8_t *src, size_t n, float scale, float shift,
                                    plast_real *dst)
{
    PLAST_SIMD /* src is bytes: without it the compiler fears aliasing */
    for (size_t j = 0; j < n; j++)
        dst[j] = (plast_real)src[j] * scale + shift;
}

PLAST_CLONES static void convert_f32(const float *src, size_t n, float scale, float shift,
                                     plast_real *dst)
{
    PLAST_SIMD
    for (size_t j = 0; j < n; j++)
        dst[j] = src[j] * scale + shift;
}

void plast_dataset_prefetch(const plast_dataset *d, const uint32_t *idx, int n)
{
    size_t values = plast_shape_size(&d->shape);
    size_t bytes = values * (d->u8 ? 1 : sizeof *d->f32);
    for (int i = 0; i < n; i++) {
        if (idx[i] >= d->n)
            continue;
        const char *p = d->u8 ? (const char *)(d->u8 + (size_t)idx[i] * values)
                              : (const char *)(d->f32 + (size_t)idx[i] * values);
        for (size_t off = 0; off < bytes; off += 64)
            __builtin_prefetch(p + off);
    }
}

void plast_dataset_gather(const plast_dataset *d, const uint32_t *idx, int n, plast_real *x,
                          int32_t *labels)
{
    size_t values = plast_shape_size(&d->shape);
    const float scale = d->scale, shift = d->shift;
    for (int i = 0; i < n; i++) {
        PLAST_ASSERT(idx[i] < d->n);
        size_t from = idx[i] * values;
        plast_real *dst = x + (size_t)i * values;
        if (d->u8)
            convert_u8(d->u8 + from, values, scale, shift, dst);
        else
            convert_f32(d->f32 + from, values, scale, shift, dst);
        if (labels)
            labels[i] = d->labels[idx[i]];
    }
}

void plast_shuffle(uint32_t *perm, size_t n, plast_rng *r)
{
    PLAST_ASSERT(n <= UINT32_MAX);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        uint32_t k = plast_rng_below(r, (uint32_t)i);
        uint32_t t = perm[k];
        perm[k] = perm[i - 1];
        perm[i - 1] = t;
    }
}
