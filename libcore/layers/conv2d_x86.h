/* conv2d_x86.h - AVX-512 loops of conv2d.c (private).
 *
 * conv2d.c calls these instead of its portable loops when
 * plast_conv2d_avx512() says the CPU has AVX-512F.  Each gives exactly the
 * bits of the loop it stands for (tests/test_conv.c compares them); they
 * exist because GCC leaves these loops far slower. */
#ifndef PLAST_CONV2D_X86_H
#define PLAST_CONV2D_X86_H

#include <stddef.h>

#include "plast/tensor.h"

/* 1 when the functions below may run: x86-64 with AVX-512F. */
int plast_conv2d_avx512(void);

/* col2im of one input plane [h, w] at stride 1: dxc[iy][ix] = the sum,
 * taps (ky, kx) in order from +0, of col[r][(iy + p - ky) * wout +
 * (ix + p - kx)] over the taps whose output pixel exists, where
 * r = (ci*k + ky)*k + kx is the tap's row of col (row stride ld).  Each
 * row of dxc is summed in registers, 16 pixels at a time. */
void plast_col2im_plane_s1_avx512(const plast_real *col, size_t ld, int ci, int k, int p,
                                  int hout, int wout, int h, int w, plast_real *dxc);

#endif
