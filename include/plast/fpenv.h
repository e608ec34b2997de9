/* plast/fpenv.h - flush-to-zero and denormals-are-zero for training threads.
 *
 * Denormals slow tanh and local rules down by 30-60 % on some CPUs; the
 * trainer turns FTZ/DAZ on at the start of training (per thread: the
 * control register is per thread) and restores the old mode at the end. */
#ifndef PLAST_FPENV_H
#define PLAST_FPENV_H

#ifdef __cplusplus
extern "C" {
#endif

/* Set FTZ+DAZ on (1) or off (0) in the calling thread; returns an opaque
 * saved mode for plast_fpenv_restore(). */
unsigned plast_fpenv_flush_denormals(int on);
void plast_fpenv_restore(unsigned saved);
/* 1 if the calling thread flushes denormals to zero. */
int plast_fpenv_flushing(void);

#ifdef __cplusplus
}
#endif
#endif
