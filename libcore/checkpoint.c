/* checkpoint.c - the checkpoint container: chunks, CRC, atomic write.
 *
 * The writer builds the whole file in one growable buffer so the CRC is
 * computed once and the file is written with a single atomic replace.
 * Every integer is stored little-endian byte by byte, so files move
 * between hosts of either byte order.  The reader loads the whole file,
 * verifies it completely (magic, version, CRC, chunk table) before any
 * chunk is read, and serves reads from memory with bounds checks. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "plast/checkpoint.h"

_Static_assert(sizeof(float) == 4 && FLT_RADIX == 2 && FLT_MANT_DIG == 24,
               "checkpoints store floats as IEEE binary32");
_Static_assert(sizeof(double) == 8 && DBL_MANT_DIG == 53,
               "checkpoints store doubles as IEEE binary64");

#define CKPT_MAGIC "PLASTCKP"
#define CKPT_MAGIC_LEN 8
#define CKPT_HEADER_LEN 16      /* magic, version, chunk count */
#define CKPT_CHUNK_HEAD_LEN 12  /* tag, u64 length */
#define CKPT_CRC_LEN 4
#define CKPT_MIN_LEN (CKPT_HEADER_LEN + CKPT_CRC_LEN)
#define CKPT_COUNT_OFFSET 12

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define CKPT_HOST_IS_LE 1
#else
#define CKPT_HOST_IS_LE 0
#endif

/* ---- little-endian encoding ---- */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void floats_to_le(unsigned char *dst, const float *src, size_t n)
{
#if CKPT_HOST_IS_LE
    memcpy(dst, src, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &src[i], sizeof bits);
        put_u32(dst + 4 * i, bits);
    }
#endif
}

static void floats_from_le(float *dst, const unsigned char *src, size_t n)
{
#if CKPT_HOST_IS_LE
    memcpy(dst, src, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = get_u32(src + 4 * i);
        memcpy(&dst[i], &bits, sizeof bits);
    }
#endif
}

/* zlib's crc32() takes a uInt length: feed large buffers in pieces. */
static uint32_t crc_of(const unsigned char *p, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt piece = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, piece);
        p += piece;
        n -= piece;
    }
    return (uint32_t)crc;
}

/* A tag as text for messages; bytes from a file may be unprintable. */
static const char *tag_text(const char tag[4], char out[5])
{
    for (int i = 0; i < 4; i++)
        out[i] = (tag[i] >= 0x20 && tag[i] <= 0x7e) ? tag[i] : '?';
    out[4] = '\0';
    return out;
}

/* ---- writing ---- */

struct plast_writer {
    unsigned char *buf;
    size_t len, cap;
    size_t chunk_at;  /* offset of the open chunk's length field, 0 = none */
    uint32_t nchunks;
};

/* Make room for `extra` more bytes (plus the CRC, so commit never fails
 * for lack of memory after the content is complete). */
static int writer_reserve(plast_writer *w, size_t extra, plast_err *e)
{
    if (extra > SIZE_MAX - CKPT_CRC_LEN - w->len)
        return plast_err_set(e, PLAST_E_NOMEM,
                             "checkpoint too large: %zu bytes more than memory can hold", extra);
    size_t need = w->len + extra + CKPT_CRC_LEN;
    if (need <= w->cap)
        return PLAST_OK;
    size_t cap = w->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    unsigned char *buf = realloc(w->buf, cap);
    if (!buf)
        return plast_err_set(e, PLAST_E_NOMEM,
                             "out of memory building a checkpoint of %zu bytes", need);
    w->buf = buf;
    w->cap = cap;
    return PLAST_OK;
}

/* Every payload write goes through here: the room is already reserved. */
static unsigned char *writer_take(plast_writer *w, size_t n)
{
    unsigned char *p = w->buf + w->len;
    w->len += n;
    return p;
}

static void writer_close_chunk(plast_writer *w)
{
    if (w->chunk_at)
        put_u64(w->buf + w->chunk_at, (uint64_t)(w->len - w->chunk_at - 8));
}

int plast_writer_create(plast_writer **out, plast_err *e)
{
    plast_writer *w = calloc(1, sizeof *w);
    if (!w)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory creating a checkpoint writer");
    w->cap = 4096;
    w->buf = malloc(w->cap);
    if (!w->buf)
        goto undo_writer;
    unsigned char *head = writer_take(w, CKPT_HEADER_LEN);
    memcpy(head, CKPT_MAGIC, CKPT_MAGIC_LEN);
    put_u32(head + CKPT_MAGIC_LEN, PLAST_CKPT_VERSION);
    put_u32(head + CKPT_COUNT_OFFSET, 0);
    *out = w;
    return PLAST_OK;
undo_writer:
    free(w);
    return plast_err_set(e, PLAST_E_NOMEM, "out of memory creating a checkpoint writer");
}

void plast_writer_destroy(plast_writer *w)
{
    if (!w)
        return;
    free(w->buf);
    free(w);
}

static int tag_is_valid(const char tag[4])
{
    for (int i = 0; i < 4; i++)
        if (tag[i] < 0x20 || tag[i] > 0x7e)
            return 0;
    return 1;
}

int plast_writer_chunk(plast_writer *w, const char tag[4], plast_err *e)
{
    PLAST_ASSERT(w && tag && tag_is_valid(tag));
    int rc = writer_reserve(w, CKPT_CHUNK_HEAD_LEN, e);
    if (rc)
        return rc;
    PLAST_ASSERT(w->nchunks < UINT32_MAX);
    writer_close_chunk(w);
    unsigned char *head = writer_take(w, CKPT_CHUNK_HEAD_LEN);
    memcpy(head, tag, 4);
    put_u64(head + 4, 0);  /* patched when the chunk closes */
    w->chunk_at = (size_t)(head + 4 - w->buf);
    w->nchunks++;
    return PLAST_OK;
}

int plast_writer_bytes(plast_writer *w, const void *p, size_t n, plast_err *e)
{
    PLAST_ASSERT(w && w->chunk_at && (p || n == 0));
    int rc = writer_reserve(w, n, e);
    if (rc)
        return rc;
    if (n)
        memcpy(writer_take(w, n), p, n);
    return PLAST_OK;
}

int plast_writer_u32(plast_writer *w, uint32_t v, plast_err *e)
{
    PLAST_ASSERT(w && w->chunk_at);
    int rc = writer_reserve(w, 4, e);
    if (rc)
        return rc;
    put_u32(writer_take(w, 4), v);
    return PLAST_OK;
}

int plast_writer_u64(plast_writer *w, uint64_t v, plast_err *e)
{
    PLAST_ASSERT(w && w->chunk_at);
    int rc = writer_reserve(w, 8, e);
    if (rc)
        return rc;
    put_u64(writer_take(w, 8), v);
    return PLAST_OK;
}

int plast_writer_f64(plast_writer *w, double v, plast_err *e)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return plast_writer_u64(w, bits, e);
}

int plast_writer_str(plast_writer *w, const char *s, plast_err *e)
{
    PLAST_ASSERT(w && w->chunk_at && s);
    size_t n = strlen(s);
    if (n > UINT32_MAX)
        return plast_err_set(e, PLAST_E_INVAL,
                             "checkpoint string of %zu bytes exceeds the u32 length field", n);
    if (n > SIZE_MAX - 4)
        return plast_err_set(e, PLAST_E_NOMEM, "checkpoint string of %zu bytes too large", n);
    int rc = writer_reserve(w, 4 + n, e);
    if (rc)
        return rc;
    put_u32(writer_take(w, 4), (uint32_t)n);
    memcpy(writer_take(w, n), s, n);
    return PLAST_OK;
}

int plast_writer_floats(plast_writer *w, const float *p, size_t n, plast_err *e)
{
    PLAST_ASSERT(w && w->chunk_at && (p || n == 0));
    if (n > SIZE_MAX / 4)
        return plast_err_set(e, PLAST_E_NOMEM,
                             "checkpoint float array of %zu elements too large", n);
    int rc = writer_reserve(w, 4 * n, e);
    if (rc)
        return rc;
    if (n)
        floats_to_le(writer_take(w, 4 * n), p, n);
    return PLAST_OK;
}

/* The CRC goes into the reserved tail without growing `len`, so the
 * writer stays usable: commit twice, or add chunks and commit again. */
int plast_writer_commit(plast_writer *w, const char *path, plast_err *e)
{
    PLAST_ASSERT(w && path);
    writer_close_chunk(w);
    put_u32(w->buf + CKPT_COUNT_OFFSET, w->nchunks);
    put_u32(w->buf + w->len, crc_of(w->buf, w->len));
    return plast_write_atomic(path, w->buf, w->len + CKPT_CRC_LEN, e);
}

/* ---- atomic write ---- */

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        size_t piece = n > (size_t)SSIZE_MAX ? (size_t)SSIZE_MAX : n;
        ssize_t k = write(fd, p, piece);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (k == 0) {
            errno = EIO;  /* no progress and no reason: do not spin */
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The directory holding `path` ("." if none) into a new string. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (dir) {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return dir;
}

/* Make the rename durable.  Some file systems cannot fsync a directory
 * (EINVAL): the rename is then as durable as that file system allows. */
static int sync_dir_of(const char *path)
{
    char *dir = dir_of(path);
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc < 0 && saved != EINVAL) {
        errno = saved;
        return -1;
    }
    return 0;
}

static int write_failed(plast_err *e, const char *path, int err)
{
    return plast_err_set(e, PLAST_E_IO, "cannot write %s: %s", path, strerror(err));
}

int plast_write_atomic(const char *path, const void *data, size_t n, plast_err *e)
{
    PLAST_ASSERT(path && (data || n == 0));
    int err;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmpXXXXXX");
    if (!tmp)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory writing %s", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmpXXXXXX", sizeof ".tmpXXXXXX");

    int fd = mkstemp(tmp);
    if (fd < 0) {
        err = errno;
        goto undo_name;
    }
    if (fchmod(fd, 0644) < 0 || write_all(fd, data, n) < 0 || fsync(fd) < 0) {
        err = errno;
        goto undo_fd;
    }
    /* close() may report a deferred write error (NFS): check it. */
    if (close(fd) < 0) {
        err = errno;
        goto undo_tmp;
    }
    if (rename(tmp, path) < 0) {
        err = errno;
        goto undo_tmp;
    }
    free(tmp);
    /* The new file is in place; a failure here only means the rename may
     * not survive a crash, which the caller should still hear about. */
    if (sync_dir_of(path) < 0)
        return write_failed(e, path, errno);
    return PLAST_OK;

undo_fd:
    close(fd);
undo_tmp:
    unlink(tmp);
undo_name:
    free(tmp);
    return write_failed(e, path, err);
}

/* ---- reading ---- */

typedef struct ckpt_chunk {
    char tag[4];
    size_t off;  /* payload offset in the file */
    size_t len;
} ckpt_chunk;

struct plast_reader {
    char *path;
    unsigned char *data;
    size_t size;
    ckpt_chunk *chunks;
    uint32_t nchunks;
    const ckpt_chunk *cur;  /* NULL until plast_reader_chunk() */
    size_t pos;             /* next byte to read, absolute */
};

static int read_failed(plast_err *e, const char *path, const char *what, int err)
{
    return plast_err_at(e, err == ENOENT ? PLAST_E_NOENT : PLAST_E_IO, path, 0,
                        "cannot %s checkpoint: %s", what, strerror(err));
}

/* The whole file into a new buffer; the size from fstat is only a hint. */
static int slurp(const char *path, unsigned char **out, size_t *size, plast_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return read_failed(e, path, "open", errno);
    int rc;
    struct stat st;
    size_t cap = 4096;
    if (fstat(fd, &st) == 0 && st.st_size > 0 && (uintmax_t)st.st_size < SIZE_MAX)
        cap = (size_t)st.st_size + 1;  /* +1 so EOF is seen without a regrow */
    size_t len = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        rc = plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory reading checkpoint");
        goto undo_fd;
    }
    for (;;) {
        if (len == cap) {
            unsigned char *bigger = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!bigger) {
                rc = plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory reading checkpoint");
                goto undo_buf;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t want = cap - len > (size_t)SSIZE_MAX ? (size_t)SSIZE_MAX : cap - len;
        ssize_t k = read(fd, buf + len, want);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rc = read_failed(e, path, "read", errno);
            goto undo_buf;
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    close(fd);
    *out = buf;
    *size = len;
    return PLAST_OK;
undo_buf:
    free(buf);
undo_fd:
    close(fd);
    return rc;
}

/* Magic, version and CRC, in that order: the first failure names the
 * most basic thing wrong with the file. */
static int check_envelope(const plast_reader *r, plast_err *e)
{
    const unsigned char *d = r->data;
    if (r->size < CKPT_MIN_LEN)
        return plast_err_at(e, PLAST_E_DATA, r->path, 0,
                            "checkpoint is too short (%zu bytes, at least %d expected)", r->size,
                            CKPT_MIN_LEN);
    if (memcmp(d, CKPT_MAGIC, CKPT_MAGIC_LEN) != 0)
        return plast_err_at(e, PLAST_E_DATA, r->path, 0, "not a plast checkpoint (bad magic)");
    uint32_t version = get_u32(d + CKPT_MAGIC_LEN);
    if (version != PLAST_CKPT_VERSION)
        return plast_err_at(e, PLAST_E_DATA, r->path, 0,
                            "checkpoint version %u, this plast reads version %u", version,
                            PLAST_CKPT_VERSION);
    size_t body = r->size - CKPT_CRC_LEN;
    uint32_t stored = get_u32(d + body), computed = crc_of(d, body);
    if (stored != computed)
        return plast_err_at(e, PLAST_E_DATA, r->path, 0,
                            "checkpoint is corrupt (CRC mismatch: stored 0x%08x, computed 0x%08x)",
                            stored, computed);
    return PLAST_OK;
}

/* Walk the chunk table; every chunk must lie inside the body and the
 * last one must end exactly where the CRC begins. */
static int index_chunks(plast_reader *r, plast_err *e)
{
    const size_t end = r->size - CKPT_CRC_LEN;
    uint32_t count = get_u32(r->data + CKPT_COUNT_OFFSET);
    if (count > (end - CKPT_HEADER_LEN) / CKPT_CHUNK_HEAD_LEN)
        return plast_err_at(e, PLAST_E_DATA, r->path, 0,
                            "checkpoint is corrupt (%u chunks announced, at most %zu fit)", count,
                            (end - CKPT_HEADER_LEN) / CKPT_CHUNK_HEAD_LEN);
    r->chunks = calloc(count ? count : 1, sizeof *r->chunks);
    if (!r->chunks)
        return plast_err_at(e, PLAST_E_NOMEM, r->path, 0, "out of memory indexing checkpoint");
    size_t off = CKPT_HEADER_LEN;
    for (uint32_t i = 0; i < count; i++) {
        char tag[5];
        ckpt_chunk *c = &r->chunks[i];
        if (end - off < CKPT_CHUNK_HEAD_LEN)
            return plast_err_at(e, PLAST_E_DATA, r->path, 0,
                                "checkpoint is corrupt (chunk %u header at offset %zu runs past "
                                "the end)", i + 1, off);
        memcpy(c->tag, r->data + off, 4);
        uint64_t len = get_u64(r->data + off + 4);
        off += CKPT_CHUNK_HEAD_LEN;
        if (len > end - off)
            return plast_err_at(e, PLAST_E_DATA, r->path, 0,
                                "checkpoint is corrupt (chunk %u '%s' of %llu bytes at offset "
                                "%zu runs past the end, %zu bytes left)", i + 1,
                                tag_text(c->tag, tag), (unsigned long long)len, off, end - off);
        c->off = off;
        c->len = (size_t)len;
        off += (size_t)len;
    }
    if (off != end)
        return plast_err_at(e, PLAST_E_DATA, r->path, 0,
                            "checkpoint is corrupt (%zu stray bytes after the last of %u chunks)",
                            end - off, count);
    r->nchunks = count;
    return PLAST_OK;
}

int plast_reader_open(plast_reader **out, const char *path, plast_err *e)
{
    PLAST_ASSERT(out && path);
    int rc;
    plast_reader *r = calloc(1, sizeof *r);
    if (!r)
        return plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory opening checkpoint");
    r->path = strdup(path);
    if (!r->path) {
        rc = plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory opening checkpoint");
        goto undo_reader;
    }
    if ((rc = slurp(path, &r->data, &r->size, e)) != 0)
        goto undo_path;
    if ((rc = check_envelope(r, e)) != 0 || (rc = index_chunks(r, e)) != 0)
        goto undo_data;
    *out = r;
    return PLAST_OK;
undo_data:
    free(r->chunks);
    free(r->data);
undo_path:
    free(r->path);
undo_reader:
    free(r);
    return rc;
}

void plast_reader_destroy(plast_reader *r)
{
    if (!r)
        return;
    free(r->chunks);
    free(r->data);
    free(r->path);
    free(r);
}

/* The first chunk with this tag: a writer that repeats a tag gets the
 * first one back, as it was written first. */
static const ckpt_chunk *find_chunk(const plast_reader *r, const char tag[4])
{
    for (uint32_t i = 0; i < r->nchunks; i++)
        if (memcmp(r->chunks[i].tag, tag, 4) == 0)
            return &r->chunks[i];
    return NULL;
}

int plast_reader_has_chunk(const plast_reader *r, const char tag[4])
{
    PLAST_ASSERT(r && tag);
    return find_chunk(r, tag) != NULL;
}

int plast_reader_chunk(plast_reader *r, const char tag[4], plast_err *e)
{
    PLAST_ASSERT(r && tag);
    const ckpt_chunk *c = find_chunk(r, tag);
    if (!c) {
        char t[5];
        return plast_err_at(e, PLAST_E_DATA, r->path, 0, "checkpoint has no '%s' chunk",
                            tag_text(tag, t));
    }
    r->cur = c;
    r->pos = c->off;
    return PLAST_OK;
}

/* Claim `n` bytes of the current chunk, or fail without moving. */
static int reader_take(plast_reader *r, size_t n, const unsigned char **p, plast_err *e)
{
    PLAST_ASSERT(r->cur);  /* reading before choosing a chunk */
    size_t left = r->cur->off + r->cur->len - r->pos;
    if (n > left) {
        char t[5];
        return plast_err_at(e, PLAST_E_DATA, r->path, 0, "chunk '%s' ends early",
                            tag_text(r->cur->tag, t));
    }
    *p = r->data + r->pos;
    r->pos += n;
    return PLAST_OK;
}

int plast_reader_bytes(plast_reader *r, void *p, size_t n, plast_err *e)
{
    PLAST_ASSERT(r && (p || n == 0));
    const unsigned char *src;
    int rc = reader_take(r, n, &src, e);
    if (rc)
        return rc;
    if (n)
        memcpy(p, src, n);
    return PLAST_OK;
}

int plast_reader_u32(plast_reader *r, uint32_t *v, plast_err *e)
{
    PLAST_ASSERT(r && v);
    const unsigned char *src;
    int rc = reader_take(r, 4, &src, e);
    if (rc)
        return rc;
    *v = get_u32(src);
    return PLAST_OK;
}

int plast_reader_u64(plast_reader *r, uint64_t *v, plast_err *e)
{
    PLAST_ASSERT(r && v);
    const unsigned char *src;
    int rc = reader_take(r, 8, &src, e);
    if (rc)
        return rc;
    *v = get_u64(src);
    return PLAST_OK;
}

int plast_reader_f64(plast_reader *r, double *v, plast_err *e)
{
    PLAST_ASSERT(v);
    uint64_t bits;
    int rc = plast_reader_u64(r, &bits, e);
    if (rc)
        return rc;
    memcpy(v, &bits, sizeof *v);
    return PLAST_OK;
}

/* On failure nothing is consumed, not even the length. */
int plast_reader_str(plast_reader *r, char *buf, size_t n, plast_err *e)
{
    PLAST_ASSERT(r && buf && n > 0);
    size_t start = r->pos;
    uint32_t len;
    const unsigned char *src;
    int rc = plast_reader_u32(r, &len, e);
    if (rc)
        return rc;
    if (len >= n) {
        char t[5];
        r->pos = start;
        return plast_err_at(e, PLAST_E_DATA, r->path, 0,
                            "chunk '%s' holds a string of %u bytes, at most %zu expected",
                            tag_text(r->cur->tag, t), len, n - 1);
    }
    if ((rc = reader_take(r, len, &src, e)) != 0) {
        r->pos = start;
        return rc;
    }
    memcpy(buf, src, len);
    buf[len] = '\0';
    return PLAST_OK;
}

int plast_reader_floats(plast_reader *r, float *p, size_t n, plast_err *e)
{
    PLAST_ASSERT(r && (p || n == 0));
    PLAST_ASSERT(r->cur);
    const unsigned char *src;
    /* n * 4 could wrap: compare in elements first */
    size_t left = r->cur->off + r->cur->len - r->pos;
    int rc = reader_take(r, n > left / 4 ? left + 1 : 4 * n, &src, e);
    if (rc)
        return rc;
    if (n)
        floats_from_le(p, src, n);
    return PLAST_OK;
}

const char *plast_reader_path(const plast_reader *r)
{
    PLAST_ASSERT(r);
    return r->path;
}
