/* fuzz.h - what the fuzz harnesses share: the libFuzzer entry points and
 * a way to hand the readers that take a path an input held in memory. */
#ifndef PLAST_FUZZ_H
#define PLAST_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An anonymous in-memory file holding data[0..size), and its path
 * /proc/self/fd/N in `path`; -1 if it cannot be made.  Close the fd after
 * use. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t n)
{
    int fd = memfd_create("plast-fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t k = write(fd, data + done, size - done);
        if (k <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)k;
    }
    snprintf(path, n, "/proc/self/fd/%d", fd);
    return fd;
}

/* The input as a NUL-terminated string (a copy; free it). */
static inline char *fuzz_text(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
    }
    return s;
}

/* Use a data set the reader accepted: gather its first and last samples
 * (reads the stored bytes at both ends) and abort if a label breaks the
 * reader's promise of [0, classes). */
#ifdef PLAST_DATA_H
static inline void fuzz_use_dataset(const plast_dataset *d)
{
    uint32_t idx[2] = {0, (uint32_t)(d->n - 1)};
    plast_real *x = malloc(2 * plast_shape_size(&d->shape) * sizeof *x);
    int32_t labels[2];
    if (x)
        plast_dataset_gather(d, idx, 2, x, labels);
    free(x);
    if (d->classes < 2)
        abort();
    for (size_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= d->classes)
            abort();
}
#endif

#endif
