/* fuzz_csv.c - the CSV reader on an in-memory file (memfd).  The first
 * input byte picks the label column (0-3); the rest is the file.  A data
 * set that loads is gathered once and sliced. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "plast/plast.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    plast_dataset *d, *v;
    plast_mem *mem;
    plast_err e;
    if (size < 1)
        return 0;
    int label_col = data[0] & 3;
    int fd = fuzz_memfile(data + 1, size - 1, path, sizeof path);
    if (fd < 0)
        return 0;
    if (plast_mem_create(&mem, &e) == 0) {
        if (plast_dataset_load_csv(&d, path, label_col, mem, &e) == 0) {
            fuzz_use_dataset(d);
            if (plast_dataset_slice(&v, d, 0, d->n, &e) == 0)
                plast_dataset_destroy(v);
            plast_dataset_destroy(d);
        }
        if (plast_mem_live_total(mem) != 0)
            abort();
        plast_mem_destroy(mem);
    }
    close(fd);
    return 0;
}
