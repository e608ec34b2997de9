/* fuzz_idx.c - the IDX reader (plain or gzip) on an image file and a label
 * file cut from one input: a 2-byte little-endian length L, then L bytes
 * of image file, then the label file.  Both are handed over as in-memory
 * files (memfd).  A data set that loads is gathered once. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "plast/plast.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char img_path[64], lab_path[64];
    plast_dataset *d;
    plast_mem *mem;
    plast_err e;
    if (size < 2)
        return 0;
    size_t split = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (split > size)
        split = size;
    int img = fuzz_memfile(data, split, img_path, sizeof img_path);
    int lab = fuzz_memfile(data + split, size - split, lab_path, sizeof lab_path);
    if (img >= 0 && lab >= 0 && plast_mem_create(&mem, &e) == 0) {
        if (plast_dataset_load_idx(&d, img_path, lab_path, mem, &e) == 0) {
            fuzz_use_dataset(d);
            plast_dataset_destroy(d);
        }
        if (plast_mem_live_total(mem) != 0)
            abort();
        plast_mem_destroy(mem);
    }
    if (img >= 0)
        close(img);
    if (lab >= 0)
        close(lab);
    return 0;
}
