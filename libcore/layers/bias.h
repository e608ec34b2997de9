/* bias.h - a bias vector over the rows of a [rows, cols] matrix, both
 * ways (dense and rnn layers; private to libcore). */
#ifndef PLAST_LAYERS_BIAS_H
#define PLAST_LAYERS_BIAS_H

#include "plast/tensor.h"

/* y[r, j] += b[j] for every row r. */
void bias_add_rows(plast_real *y, int rows, int cols, const plast_real *b);

/* g[j] += the sum over rows of d[., j]: each column summed from zero in
 * row order, then added (as a GEMM with beta 1 would), so the bits do not
 * depend on the vector width. */
void bias_add_column_sums(const plast_real *d, int rows, int cols, plast_real *g);

#endif
