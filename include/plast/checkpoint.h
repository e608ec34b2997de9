/* plast/checkpoint.h - the checkpoint container: chunks, CRC, atomic write.
 *
 * File layout (little-endian):
 *   "PLASTCKP" (8 bytes) | u32 version | u32 chunk count
 *   per chunk: 4-byte tag | u64 length | payload
 *   u32 CRC-32 (zlib) of everything before it
 * Readers skip chunks they do not know, so new chunks (batchnorm
 * statistics, auxiliary networks) extend the format without breaking it.
 * A checkpoint is built in memory and written with plast_write_atomic():
 * temp file in the same directory, fsync, rename, fsync of the directory;
 * on any failure the old file is untouched. */
#ifndef PLAST_CHECKPOINT_H
#define PLAST_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLAST_CKPT_VERSION 1u

typedef struct plast_writer plast_writer;
typedef struct plast_reader plast_reader;

/* ---- writing ---- */
int plast_writer_create(plast_writer **out, plast_err *e);
void plast_writer_destroy(plast_writer *w);
/* Start chunk `tag` (4 characters); chunks do not nest. */
int plast_writer_chunk(plast_writer *w, const char tag[4], plast_err *e);
int plast_writer_bytes(plast_writer *w, const void *p, size_t n, plast_err *e);
int plast_writer_u32(plast_writer *w, uint32_t v, plast_err *e);
int plast_writer_u64(plast_writer *w, uint64_t v, plast_err *e);
int plast_writer_f64(plast_writer *w, double v, plast_err *e);
int plast_writer_str(plast_writer *w, const char *s, plast_err *e); /* u32 length + bytes */
int plast_writer_floats(plast_writer *w, const float *p, size_t n, plast_err *e);
/* Close the container and write it atomically to `path`. */
int plast_writer_commit(plast_writer *w, const char *path, plast_err *e);

/* ---- reading ---- */
/* Read and verify `path`: magic, version, CRC, chunk bounds. */
int plast_reader_open(plast_reader **out, const char *path, plast_err *e);
void plast_reader_destroy(plast_reader *r);
/* Position at chunk `tag`; PLAST_E_DATA naming the file if absent. */
int plast_reader_chunk(plast_reader *r, const char tag[4], plast_err *e);
int plast_reader_has_chunk(const plast_reader *r, const char tag[4]);
/* Reads inside the current chunk; reading past its end is PLAST_E_DATA. */
int plast_reader_bytes(plast_reader *r, void *p, size_t n, plast_err *e);
int plast_reader_u32(plast_reader *r, uint32_t *v, plast_err *e);
int plast_reader_u64(plast_reader *r, uint64_t *v, plast_err *e);
int plast_reader_f64(plast_reader *r, double *v, plast_err *e);
/* String into buf (n bytes, NUL-terminated); too long is PLAST_E_DATA. */
int plast_reader_str(plast_reader *r, char *buf, size_t n, plast_err *e);
int plast_reader_floats(plast_reader *r, float *p, size_t n, plast_err *e);
const char *plast_reader_path(const plast_reader *r);

/* Write `n` bytes to `path` atomically (see above); mode 0644. */
int plast_write_atomic(const char *path, const void *data, size_t n, plast_err *e);

/* A model's parameters (buffers included), layer by layer with names and
 * counts, and an optimiser's step count and state over n parameters: the
 * trainer's MODL and OPTM chunks, and what a rule saves of the models it
 * keeps beside the trainer's (AugLocal's auxiliary nets).  Loading checks
 * names, types and counts and names the first mismatch. */
typedef struct plast_model plast_model;
typedef struct plast_optim plast_optim;
int plast_model_save_params(plast_model *m, plast_writer *w, plast_err *e);
int plast_model_load_params(plast_model *m, plast_reader *r, plast_err *e);
int plast_optim_save(const plast_optim *o, size_t n, plast_writer *w, plast_err *e);
int plast_optim_load(plast_optim *o, size_t n, plast_reader *r, plast_err *e);

#ifdef __cplusplus
}
#endif
#endif
