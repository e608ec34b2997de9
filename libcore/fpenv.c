/* fpenv.c - FTZ/DAZ control (x86 MXCSR; aarch64 FPCR.FZ; else nothing). */
#include "config.h"

#include "plast/fpenv.h"

#if defined(__x86_64__) || defined(__i386__)
#include <pmmintrin.h>
#include <xmmintrin.h>

#define FTZ_DAZ (_MM_FLUSH_ZERO_ON | _MM_DENORMALS_ZERO_ON)

unsigned plast_fpenv_flush_denormals(int on)
{
    unsigned saved = _mm_getcsr();
    _mm_setcsr(on ? (saved | FTZ_DAZ) : (saved & ~(unsigned)FTZ_DAZ));
    return saved;
}

void plast_fpenv_restore(unsigned saved)
{
    _mm_setcsr(saved);
}

int plast_fpenv_flushing(void)
{
    return (_mm_getcsr() & FTZ_DAZ) == FTZ_DAZ;
}

#elif defined(__aarch64__)
#define FPCR_FZ (1u << 24)

static unsigned long read_fpcr(void)
{
    unsigned long v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}

static void write_fpcr(unsigned long v)
{
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
}

unsigned plast_fpenv_flush_denormals(int on)
{
    unsigned long saved = read_fpcr();
    write_fpcr(on ? (saved | FPCR_FZ) : (saved & ~(unsigned long)FPCR_FZ));
    return (unsigned)saved;
}

void plast_fpenv_restore(unsigned saved)
{
    write_fpcr(saved);
}

int plast_fpenv_flushing(void)
{
    return (read_fpcr() & FPCR_FZ) != 0;
}

#else
unsigned plast_fpenv_flush_denormals(int on)
{
    (void)on;
    return 0;
}

void plast_fpenv_restore(unsigned saved)
{
    (void)saved;
}

int plast_fpenv_flushing(void)
{
    return 0;
}
#endif
