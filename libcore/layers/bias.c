/* bias.c - bias addition and bias gradient, vectorised across columns. */
#include "config.h"

#include <stddef.h>

#include "bias.h"
#include "simd.h"

/* Columns summed at a time: their partial sums stay in registers. */
#define BIAS_CHUNK 64

PLAST_CLONES void bias_add_rows(plast_real *y, int rows, int cols, const plast_real *b)
{
    for (int r = 0; r < rows; r++) {
        plast_real *row = y + (size_t)r * (size_t)cols;
        PLAST_SIMD
        for (int j = 0; j < cols; j++)
            row[j] += b[j];
    }
}

PLAST_CLONES void bias_add_column_sums(const plast_real *d, int rows, int cols, plast_real *g)
{
    plast_real acc[BIAS_CHUNK];
    for (int j0 = 0; j0 < cols; j0 += BIAS_CHUNK) {
        int n = cols - j0 < BIAS_CHUNK ? cols - j0 : BIAS_CHUNK;
        for (int j = 0; j < n; j++)
            acc[j] = 0.0f;
        for (int r = 0; r < rows; r++) {
            const plast_real *row = d + (size_t)r * (size_t)cols + (size_t)j0;
            PLAST_SIMD /* one running sum per column: nothing reassociated */
            for (int j = 0; j < n; j++)
                acc[j] += row[j];
        }
        for (int j = 0; j < n; j++)
            g[j0 + j] += acc[j];
    }
}
