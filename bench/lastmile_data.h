/* lastmile_data.h - the shifted Fashion-MNIST sets of the "last mile"
 * experiment (ALGORITHMS.md §5.7): rotation, pixel noise, a reproducible
 * per-class pick and an IDX writer.  Shared by bench/lastmile.c and
 * tests/test_lastmile.c; not part of libplast.
 *
 * Images are uint8, rows x cols, row-major, as in IDX files.  Every random
 * draw comes from a PCG32 stream (PLAST_STREAM_DATA, index) of a seed, so
 * a set is a function of the seed and the source indices only. */
#ifndef LASTMILE_DATA_H
#define LASTMILE_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "plast/err.h"
#include "plast/rng.h"

/* Stream indices of (PLAST_STREAM_DATA, index): image i of the training
 * file gets its noise from NOISE_TRAIN + i, image i of the test file from
 * NOISE_TEST + i; the class-shift pick uses PICK. */
#define LASTMILE_STREAM_PICK 1u
#define LASTMILE_STREAM_NOISE_TRAIN 0x10000000u
#define LASTMILE_STREAM_NOISE_TEST 0x20000000u

/* dst = src rotated by `degrees` counter-clockwise (as displayed, row 0 at
 * the top) about the image centre ((cols-1)/2, (rows-1)/2): each output
 * pixel samples the source bilinearly at its inverse-rotated position,
 * pixels outside the source count as 0, the result is rounded half to
 * even.  dst and src must not overlap. */
void lastmile_rotate(const uint8_t *src, uint8_t *dst, int rows, int cols, double degrees);

/* dst[i] = rint(255 * clip(src[i] / 255 + sigma * z_i, 0, 1)) with z_i
 * standard normal from r (plast_rng_normal2, both values of each pair
 * used in order).  dst may equal src. */
void lastmile_add_noise(const uint8_t *src, uint8_t *dst, size_t n, double sigma,
                        plast_rng *r);

/* Indices (ascending) of the samples whose label is in
 * [first, first + nclasses); returns how many were written to out (which
 * must hold n). */
size_t lastmile_select_classes(const int32_t *labels, size_t n, int first, int nclasses,
                               uint32_t *out);

/* For each class c = first .. first + nclasses - 1 in turn, shuffle the
 * indices of its samples (ascending order, then plast_shuffle with stream
 * (DATA, LASTMILE_STREAM_PICK) of seed, one stream for all classes) and
 * deal the first nsets * per of them: set s gets positions
 * [s * per, (s + 1) * per).  out[(s * nclasses + c - first) * per + k]:
 * sets are disjoint.  PLAST_E_DATA names the class if it has fewer than
 * nsets * per samples. */
int lastmile_pick_per_class(const int32_t *labels, size_t n, int first, int nclasses, int per,
                            int nsets, uint64_t seed, uint32_t *out, plast_err *e);

/* Copy samples idx[0..n) (each `size` bytes of px, label in labels) into
 * out_px / out_labels, subtracting label_offset from every label (the
 * class-shift task relabels classes 5-9 as 0-4). */
void lastmile_gather(const uint8_t *px, const int32_t *labels, size_t size, const uint32_t *idx,
                     size_t n, int label_offset, uint8_t *out_px, int32_t *out_labels);

/* Write n images and labels (each in [0, 255]) as IDX files (magic
 * 0x00000803 [n, rows, cols] and 0x00000801 [n], big-endian, no gzip),
 * each atomically (plast_write_atomic). */
int lastmile_write_idx(const char *images_path, const char *labels_path, const uint8_t *px,
                       const int32_t *labels, size_t n, int rows, int cols, plast_err *e);

#endif
