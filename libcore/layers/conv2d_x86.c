/* conv2d_x86.c - AVX-512 loops of conv2d.c (see conv2d_x86.h).
 *
 * Every function carries its own target attribute, so the file builds
 * with the project's flags and nothing here runs unless the caller asked
 * plast_conv2d_avx512() first. */
#include "config.h"

#include "conv2d_x86.h"

#if defined __x86_64__ && defined __GNUC__
#include <immintrin.h>

#define TARGET_AVX512 __attribute__((target("avx512f")))

int plast_conv2d_avx512(void)
{
    static int usable = -1; /* a function of the CPU: a race stores the same */
    if (usable < 0) {
        __builtin_cpu_init();
        usable = __builtin_cpu_supports("avx512f") != 0;
    }
    return usable;
}

TARGET_AVX512 static inline __mmask16 first_lanes(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* Input pixels [ix0, ix0 + 16) of row iy: every tap in order, each one a
 * masked load of the output row it reads (lanes whose output pixel does
 * not exist load +0, which leaves a sum that started at +0 unchanged). */
TARGET_AVX512 static inline __m512 col2im_vector(const plast_real *col, size_t ld, int ci,
                                                 int k, int p, int hout, int wout, int iy,
                                                 int ix0)
{
    __m512 acc = _mm512_setzero_ps();
    for (int ky = 0; ky < k; ky++) {
        int oy = iy + p - ky;
        if (oy < 0 || oy >= hout)
            continue;
        for (int kx = 0; kx < k; kx++) {
            int ox0 = ix0 + p - kx; /* the output column lane 0 reads */
            int lo = ox0 < 0 ? -ox0 : 0, hi = wout - ox0 < 16 ? wout - ox0 : 16;
            if (hi <= lo)
                continue;
            __mmask16 m = (__mmask16)(first_lanes(hi) & ~first_lanes(lo));
            size_t r = (size_t)((ci * k + ky) * k + kx);
            const plast_real *row = col + r * ld + (size_t)oy * (size_t)wout;
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, row + ox0));
        }
    }
    return acc;
}

TARGET_AVX512 void plast_col2im_plane_s1_avx512(const plast_real *col, size_t ld, int ci, int k,
                                                int p, int hout, int wout, int h, int w,
                                                plast_real *dxc)
{
    for (int iy = 0; iy < h; iy++)
        for (int ix0 = 0; ix0 < w; ix0 += 16)
            _mm512_mask_storeu_ps(dxc + (size_t)iy * (size_t)w + ix0, first_lanes(w - ix0),
                                  col2im_vector(col, ld, ci, k, p, hout, wout, iy, ix0));
}

#else /* not x86-64 GCC: never usable, never called */

#include "plast/err.h"

int plast_conv2d_avx512(void)
{
    return 0;
}

void plast_col2im_plane_s1_avx512(const plast_real *col, size_t ld, int ci, int k, int p,
                                  int hout, int wout, int h, int w, plast_real *dxc)
{
    (void)col, (void)ld, (void)ci, (void)k, (void)p, (void)hout, (void)wout, (void)h, (void)w;
    (void)dxc;
    PLAST_ASSERT(0);
}
#endif
