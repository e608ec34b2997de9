/* gemm.c - single-precision matrix product: blocking, threads, dispatch.
 *
 * The usual blocking (Goto; BLIS): op(B) is packed once per call into
 * NR-column panels, k-major, K block by K block (wider than GEMM_B_BYTES:
 * in column chunks); op(A) is packed a block of MC rows at a time into
 * MR-row panels; a register-tiled micro-kernel multiplies one A panel by
 * one B panel and writes the tile into C.  Sizes for Zen 5 (48 KiB L1d,
 * 1 MiB L2): a B panel, KC x NR = 256 x 32 floats (32 KiB) on the AVX-512
 * path, stays in L1 while the A panels of the block (MC x KC, 256 KiB)
 * stream from L2 past it.  Panels are zero-padded to full MR/NR, so the
 * kernels' inner loops have no edge cases; only the write to C clips.
 * Whole panels that are k-major in memory already (op(A) = A^T, op(B) =
 * B) are not copied: the kernel reads them in place, stepping by the
 * leading dimension instead of MR or NR (same values, same bits).  A B
 * given as offsets into an array (gemm_gather: a convolution's column
 * matrix, never stored) is packed from the array directly.
 *
 * Summation order, which fixes the bits: K is cut into nkb = ceil(K / KC)
 * nearly equal blocks (KC from the path).  Within a block each element of
 * C is summed serially from zero in k order; the first block stores
 * beta*C + alpha*s (alpha*s when beta is 0), later blocks add alpha*s.
 * That depends on K and the path only: never on the blocking of M and N,
 * the workspace, or the thread count, since threads split M and N (never
 * K) and each tile is computed whole by one thread.  The portable path
 * rounds twice per term (no FMA), the x86 paths once: their bits differ.
 *
 * Threads (OpenMP, one parallel region per call): the team packs op(B)
 * together, then runs tasks that each own a band of rows of C (and
 * columns too when M is short). */
#include "config.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "plast/err.h"
#include "plast/fpenv.h"
#include "plast/gemm.h"
#include "gemm_kernels.h"

/* Portable path: a tile the compiler keeps in 16-byte vectors. */
#define PORT_MR 6
#define PORT_NR 8
#define PORT_KC 256

/* Rows of op(A) packed at once: MC x KC floats stay in L2 (1 MiB here)
 * while the B panels stream past them. */
#define GEMM_MC_BYTES (256 * 1024)
/* Packed op(B) is K x NC floats at most; wider B is done in column chunks. */
#define GEMM_B_BYTES (8u * 1024 * 1024)
/* Below this many flops per thread a thread costs more than it saves. */
#define GEMM_FLOPS_PER_THREAD 2000000.0
/* Tasks per thread: enough that a thread can take over another's share. */
#define GEMM_TASKS_PER_THREAD 4
/* Alignment of packed panels (a cache line, and zmm loads). */
#define GEMM_ALIGN 64

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

static int div_up(int x, int m)
{
    return (x + m - 1) / m;
}

/* Start of K block b of nkb (b = nkb gives K). */
static int kblock_start(int K, int nkb, int b)
{
    return (int)((int64_t)K * b / nkb);
}

/* ---- portable packing (any MR, NR) ---- */

void gemm_pack_a_any(const gemm_job *g, int i0, int mr, int k0, int kc, plast_real *dst,
                     int MR)
{
    for (int p = 0; p < kc; p++) {
        size_t k = (size_t)(k0 + p);
        for (int i = 0; i < mr; i++) {
            size_t row = (size_t)(i0 + i);
            dst[i] = g->trans_a ? g->A[k * (size_t)g->lda + row]
                                : g->A[row * (size_t)g->lda + k];
        }
        for (int i = mr; i < MR; i++)
            dst[i] = 0.0f;
        dst += MR;
    }
}

void gemm_pack_b_any(const gemm_job *g, int k0, int kc, int j0, int nr, plast_real *dst,
                     int NR)
{
    for (int p = 0; p < kc; p++) {
        size_t k = (size_t)(k0 + p);
        if (!g->trans_b)
            memcpy(dst, g->B + k * (size_t)g->ldb + (size_t)j0, (size_t)nr * sizeof *dst);
        else
            for (int j = 0; j < nr; j++)
                dst[j] = g->B[(size_t)(j0 + j) * (size_t)g->ldb + k];
        for (int j = nr; j < NR; j++)
            dst[j] = 0.0f;
        dst += NR;
    }
}

int gemm_gather_runs(const int32_t *col, int nr, int max_len, gemm_gather_run *runs)
{
    int n = 0;
    for (int j = 0; j < nr; j++) {
        gemm_gather_run *last = n ? &runs[n - 1] : NULL;
        if (last && last->len < max_len && col[j] == last->src + last->len)
            last->len++;
        else
            runs[n++] = (gemm_gather_run){j, 1, col[j]};
    }
    return n;
}

void gemm_pack_b_gather_any(const gemm_job *g, int k0, int kc, int j0, int nr,
                            plast_real *dst, int NR)
{
    gemm_gather_run runs[GEMM_NR_MAX];
    const gemm_gather *gb = g->gather_b;
    int nrun = gemm_gather_runs(gb->col + j0, nr, NR, runs);
    for (int p = 0; p < kc; p++, dst += NR) {
        const plast_real *src = gb->X + gb->row[k0 + p];
        for (int r = 0; r < nrun; r++)
            memcpy(dst + runs[r].dst, src + runs[r].src, (size_t)runs[r].len * sizeof *dst);
        for (int j = nr; j < NR; j++)
            dst[j] = 0.0f;
    }
}

static void port_pack_b_gather(const gemm_job *g, int k0, int kc, int j0, int nr,
                               plast_real *dst)
{
    gemm_pack_b_gather_any(g, k0, kc, j0, nr, dst, PORT_NR);
}

static void port_pack_a(const gemm_job *g, int i0, int mr, int k0, int kc, plast_real *dst)
{
    gemm_pack_a_any(g, i0, mr, k0, kc, dst, PORT_MR);
}

static void port_pack_b(const gemm_job *g, int k0, int kc, int j0, int nr, plast_real *dst)
{
    gemm_pack_b_any(g, k0, kc, j0, nr, dst, PORT_NR);
}

/* ---- portable micro-kernel ---- */

#if defined(__GNUC__)
/* GCC/Clang vector extensions (not intrinsics): at -O2 GCC does not keep a
 * plain float tile in registers, these it does.  Elementwise mul then add
 * (no contraction under -ffp-contract=off), like the scalar version. */
typedef float gemm_v4 __attribute__((vector_size(16)));
typedef float gemm_v4u __attribute__((vector_size(16), aligned(4), may_alias));
#define PORT_NV (PORT_NR / 4)

static void port_tile(int kc, const plast_real *restrict a, const plast_real *restrict b,
                      size_t a_step, size_t b_step, plast_real *restrict tile)
{
    gemm_v4 c[PORT_MR][PORT_NV];
#pragma GCC unroll 16
    for (int i = 0; i < PORT_MR; i++)
#pragma GCC unroll 16
        for (int v = 0; v < PORT_NV; v++)
            c[i][v] = (gemm_v4){0.0f, 0.0f, 0.0f, 0.0f};
    for (int p = 0; p < kc; p++) {
        gemm_v4 bv[PORT_NV];
#pragma GCC unroll 16
        for (int v = 0; v < PORT_NV; v++)
            bv[v] = *(const gemm_v4u *)(b + 4 * v);
#pragma GCC unroll 16
        for (int i = 0; i < PORT_MR; i++) {
            gemm_v4 ai = {a[i], a[i], a[i], a[i]};
#pragma GCC unroll 16
            for (int v = 0; v < PORT_NV; v++)
                c[i][v] += ai * bv[v];
        }
        a += a_step;
        b += b_step;
    }
#pragma GCC unroll 16
    for (int i = 0; i < PORT_MR; i++)
#pragma GCC unroll 16
        for (int v = 0; v < PORT_NV; v++)
            *(gemm_v4u *)(tile + i * PORT_NR + 4 * v) = c[i][v];
}
#else
static void port_tile(int kc, const plast_real *restrict a, const plast_real *restrict b,
                      size_t a_step, size_t b_step, plast_real *restrict tile)
{
    plast_real c[PORT_MR][PORT_NR] = {{0.0f}};
    for (int p = 0; p < kc; p++) {
        for (int i = 0; i < PORT_MR; i++)
            for (int j = 0; j < PORT_NR; j++)
                c[i][j] += a[i] * b[j];
        a += a_step;
        b += b_step;
    }
    memcpy(tile, c, sizeof c);
}
#endif

static void port_kernel(int kc, const plast_real *a, const plast_real *b, plast_real *c,
                        size_t ldc, int mr, int nr, const gemm_store *st)
{
    plast_real tile[PORT_MR * PORT_NR];
    port_tile(kc, a, b, st->a_step, st->b_step, tile);
    for (int r = 0; r < mr; r++, c += ldc) {
        const plast_real *t = tile + r * PORT_NR;
        if (!st->first)
            for (int s = 0; s < nr; s++)
                c[s] += st->alpha * t[s];
        else if (st->beta == 0.0f) /* C may hold NaN: never read it */
            for (int s = 0; s < nr; s++)
                c[s] = st->alpha * t[s];
        else
            for (int s = 0; s < nr; s++)
                c[s] = st->beta * c[s] + st->alpha * t[s];
    }
}

static const gemm_path gemm_path_portable = {
    "portable", PORT_MR, PORT_NR, PORT_KC, port_pack_a, port_pack_b, port_kernel,
    port_pack_b_gather,
};

/* ---- dispatch ---- */

static const gemm_path *path_named(const char *name)
{
    static const gemm_path *const all[] = {&gemm_path_avx512, &gemm_path_avx2,
                                           &gemm_path_portable};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

static int path_ok(const gemm_path *p)
{
    return p == &gemm_path_portable || gemm_path_usable(p);
}

/* PLAST_GEMM_KERNEL if it names a path this CPU has, else the fastest. */
static const gemm_path *pick_path(void)
{
    const char *want = getenv("PLAST_GEMM_KERNEL");
    const gemm_path *p = want ? path_named(want) : NULL;
    if (p && path_ok(p))
        return p;
    if (path_ok(&gemm_path_avx512))
        return &gemm_path_avx512;
    if (path_ok(&gemm_path_avx2))
        return &gemm_path_avx2;
    return &gemm_path_portable;
}

/* Decided once per process; the answer is a function of the CPU and the
 * environment, so a race only stores the same pointer twice. */
static const gemm_path *default_path(void)
{
    static _Atomic(const gemm_path *) chosen = NULL;
    const gemm_path *p = atomic_load_explicit(&chosen, memory_order_acquire);
    if (!p) {
        p = pick_path();
        atomic_store_explicit(&chosen, p, memory_order_release);
    }
    return p;
}

const char *plast_gemm_kernel_name(void)
{
    return default_path()->name;
}

/* ---- the blocked product ---- */

/* What every thread needs to know; the same in all of them. */
typedef struct gemm_plan {
    const gemm_job *g;
    const gemm_path *p;
    int nkb;     /* K blocks */
    int mc;      /* rows of op(A) per packed block, a multiple of MR */
    int mp;      /* MR panels over M */
    int tm, tn;  /* tasks: tm groups of M panels x tn groups of N panels */
    int threads; /* team size */
    size_t a_sz; /* floats of one thread's A block */
} gemm_plan;

/* One column chunk of op(B), packed: K block b starts at k0(b) * npan * NR,
 * panel q of it kc(b) * NR further on. */
typedef struct gemm_chunk {
    int j0, n;   /* columns of C */
    int npan;    /* NR panels */
    plast_real *pb;
} gemm_chunk;

static int kblock_len(const gemm_plan *pl, int b, int *k0)
{
    *k0 = kblock_start(pl->g->K, pl->nkb, b);
    return kblock_start(pl->g->K, pl->nkb, b + 1) - *k0;
}

/* The packed panels of K block b in a chunk. */
static plast_real *chunk_block(const gemm_plan *pl, const gemm_chunk *ch, int k0)
{
    return ch->pb + (size_t)k0 * (size_t)ch->npan * (size_t)pl->p->nr;
}

/* The path's packing of op(B), stored or gathered. */
static void pack_b(const gemm_path *p, const gemm_job *g, int k0, int kc, int j0, int nr,
                   plast_real *dst)
{
    (g->gather_b ? p->pack_b_gather : p->pack_b)(g, k0, kc, j0, nr, dst);
}

/* Whole panels of an operand stored k-major already (op(A) = A^T, op(B) =
 * B) are read in place by the kernel, with the leading dimension as
 * step: packing would only copy them.  Partial panels are packed, zero
 * padded.  (A job with B NULL runs on panels packed beforehand.) */
static int a_in_place(const gemm_path *p, const gemm_job *g, int mr)
{
    return g->trans_a && mr == p->mr;
}

static int b_in_place(const gemm_path *p, const gemm_job *g, int nr)
{
    return g->B && !g->trans_b && !g->gather_b && nr == p->nr;
}

/* Panel idx of a chunk; one the kernel reads in place only if `all`. */
static void pack_b_panel(const gemm_plan *pl, const gemm_chunk *ch, int idx, int all)
{
    int b = idx / ch->npan, q = idx % ch->npan, k0, kc = kblock_len(pl, b, &k0);
    int nr = pl->p->nr, j = q * nr, n = min_int(nr, ch->n - j);
    plast_real *dst = chunk_block(pl, ch, k0) + (size_t)q * (size_t)kc * (size_t)nr;
    if (all || !b_in_place(pl->p, pl->g, n))
        pack_b(pl->p, pl->g, k0, kc, ch->j0 + j, n, dst);
}

/* Rows [i0, i0+mc) of C against panels [q0, q1) of K block b, whose
 * packed panels start at pbb and whose first column is j0 (n valid). */
static void multiply_block(const gemm_plan *pl, const plast_real *pbb, int j0, int n, int b,
                           int i0, int mc, int q0, int q1, plast_real *pa)
{
    const gemm_job *g = pl->g;
    const gemm_path *p = pl->p;
    int k0, kc = kblock_len(pl, b, &k0);
    gemm_store st = {g->alpha, g->beta, b == 0, 0, 0};
    for (int i = 0; i < mc; i += p->mr) {
        int mr = min_int(p->mr, mc - i);
        if (!a_in_place(p, g, mr))
            p->pack_a(g, i0 + i, mr, k0, kc, pa + (size_t)i * (size_t)kc);
    }
    for (int q = q0; q < q1; q++) {
        int j = q * p->nr, nr = min_int(p->nr, n - j);
        const plast_real *bp = pbb + (size_t)q * (size_t)kc * (size_t)p->nr;
        st.b_step = (size_t)p->nr;
        if (b_in_place(p, g, nr)) {
            bp = g->B + (size_t)k0 * (size_t)g->ldb + (size_t)(j0 + j);
            st.b_step = (size_t)g->ldb;
        }
        plast_real *c = g->C + (size_t)i0 * (size_t)g->ldc + (size_t)(j0 + j);
        for (int i = 0; i < mc; i += p->mr) {
            int mr = min_int(p->mr, mc - i);
            const plast_real *ap = pa + (size_t)i * (size_t)kc;
            st.a_step = (size_t)p->mr;
            if (a_in_place(p, g, mr)) {
                ap = g->A + (size_t)k0 * (size_t)g->lda + (size_t)(i0 + i);
                st.a_step = (size_t)g->lda;
            }
            p->kernel(kc, ap, bp, c + (size_t)i * (size_t)g->ldc, (size_t)g->ldc, mr, nr, &st);
        }
    }
}

/* Task t of tm x tn: its share of M panels and of the chunk's N panels. */
static void run_task(const gemm_plan *pl, const gemm_chunk *ch, int t, plast_real *pa)
{
    int gm = t / pl->tn, gn = t % pl->tn;
    int m0 = (int)((int64_t)pl->mp * gm / pl->tm), m1 = (int)((int64_t)pl->mp * (gm + 1) / pl->tm);
    int q0 = (int)((int64_t)ch->npan * gn / pl->tn);
    int q1 = (int)((int64_t)ch->npan * (gn + 1) / pl->tn);
    int i_lo = m0 * pl->p->mr, i_hi = min_int(pl->g->M, m1 * pl->p->mr);
    if (i_lo >= i_hi || q0 >= q1)
        return;
    for (int b = 0; b < pl->nkb; b++) {
        int k0;
        (void)kblock_len(pl, b, &k0);
        for (int i0 = i_lo; i0 < i_hi; i0 += pl->mc)
            multiply_block(pl, chunk_block(pl, ch, k0), ch->j0, ch->n, b, i0,
                           min_int(pl->mc, i_hi - i0), q0, q1, pa);
    }
}

#ifdef _OPENMP
/* Threads worth starting for this product. */
static int useful_threads(const gemm_job *g, int threads, double tiles)
{
    double by_work = 2.0 * g->M * (double)g->N * g->K / GEMM_FLOPS_PER_THREAD;
    double t = threads;
    if (by_work < t)
        t = by_work;
    if (tiles < t)
        t = tiles;
    return t < 1.0 ? 1 : (int)t;
}

/* Tasks for a team: GEMM_TASKS_PER_THREAD per thread, from groups of M
 * panels (each task then packs only its own rows of A), N split too when
 * M has too few panels.  One thread: a single task. */
static void plan_tasks(gemm_plan *pl, int npan, int threads)
{
    pl->threads = threads;
    pl->tm = pl->tn = 1;
    if (threads > 1) {
        int want = GEMM_TASKS_PER_THREAD * threads;
        pl->tm = min_int(pl->mp, want);
        pl->tn = min_int(npan, div_up(want, pl->tm));
    }
}

/* The calling thread's whole FP control word (MXCSR, FPCR), read through
 * fpenv.c's save/restore pair. */
static unsigned fp_mode(void)
{
    unsigned mode = plast_fpenv_flush_denormals(0);
    plast_fpenv_restore(mode);
    return mode;
}
#endif

/* Columns [j0, j0 + chunk_n) of C, their op(B) to be packed at pb. */
static gemm_chunk chunk_at(const gemm_plan *pl, int j0, int chunk_n, plast_real *pb)
{
    gemm_chunk ch = {j0, min_int(chunk_n, pl->g->N - j0), 0, pb};
    ch.npan = div_up(ch.n, pl->p->nr);
    return ch;
}

#ifdef _OPENMP
/* The same with a team: the threads share the packed panels.  Which
 * thread packs a panel or runs a task does not change a bit, so both
 * loops are scheduled dynamically: when the other core is busy or taken
 * away by the hypervisor, a thread that is running does the rest instead
 * of waiting.  Barriers keep packed panels alive until every task using
 * them is done; libgomp decides how a waiting thread waits.
 * Helpers take the caller's FP mode (denormals flushed or not) for the
 * call, so a tile's bits do not depend on who computes it. */
static void run_chunks_team(const gemm_plan *pl, int chunk_n, plast_real *pb, plast_real *pa)
{
    int ntasks = pl->tm * pl->tn;
    unsigned mode = fp_mode();
#pragma omp parallel num_threads(pl->threads)
    {
        int me = omp_get_thread_num();
        unsigned saved = me ? plast_fpenv_flush_denormals(0) : 0;
        if (me)
            plast_fpenv_restore(mode);
        plast_real *my_pa = pa + (size_t)me * pl->a_sz;
        for (int j0 = 0; j0 < pl->g->N; j0 += chunk_n) {
            gemm_chunk ch = chunk_at(pl, j0, chunk_n, pb);
            int npack = pl->nkb * ch.npan;
#pragma omp for schedule(dynamic)
            for (int idx = 0; idx < npack; idx++)
                pack_b_panel(pl, &ch, idx, 0);
#pragma omp for schedule(dynamic) nowait
            for (int t = 0; t < ntasks; t++)
                run_task(pl, &ch, t, my_pa);
            /* the next chunk repacks pb; after the last, the region's end waits */
            if (j0 + chunk_n < pl->g->N) {
#pragma omp barrier
            }
        }
        if (me)
            plast_fpenv_restore(saved);
    }
}
#endif

/* Every chunk of C: pack its op(B), then run the tasks. */
static void run_chunks(const gemm_plan *pl, int chunk_n, plast_real *pb, plast_real *pa)
{
#ifdef _OPENMP
    if (pl->threads > 1) {
        run_chunks_team(pl, chunk_n, pb, pa);
        return;
    }
#endif
    for (int j0 = 0; j0 < pl->g->N; j0 += chunk_n) {
        gemm_chunk ch = chunk_at(pl, j0, chunk_n, pb);
        for (int idx = 0; idx < pl->nkb * ch.npan; idx++)
            pack_b_panel(pl, &ch, idx, 0);
        for (int t = 0; t < pl->tm * pl->tn; t++)
            run_task(pl, &ch, t, pa);
    }
}

/* Out of memory: one thread, one B panel and one K block at a time on the
 * stack.  Same blocks, same kernel, so the same bits, only slower. */
static void run_small(const gemm_plan *pl)
{
    enum { MAXF = 8 * 256 + 256 * 32 }; /* largest (MR + NR) * KC of any path */
    _Alignas(GEMM_ALIGN) plast_real buf[MAXF];
    const gemm_job *g = pl->g;
    const gemm_path *p = pl->p;
    PLAST_ASSERT((p->mr + p->nr) * p->kc <= MAXF);
    plast_real *pb = buf, *pa = buf + (size_t)p->nr * (size_t)p->kc;
    for (int j0 = 0; j0 < g->N; j0 += p->nr) {
        int n = min_int(p->nr, g->N - j0);
        for (int b = 0; b < pl->nkb; b++) {
            int k0, kc = kblock_len(pl, b, &k0);
            pack_b(p, g, k0, kc, j0, n, pb);
            for (int i0 = 0; i0 < g->M; i0 += p->mr)
                multiply_block(pl, pb, j0, n, b, i0, min_int(p->mr, g->M - i0), 0, 1, pa);
        }
    }
}

/* Floats rounded up to whole cache lines. */
static size_t round_lines(size_t floats)
{
    size_t per = GEMM_ALIGN / sizeof(plast_real);
    return (floats + per - 1) / per * per;
}

static void gemm_blocked(const gemm_job *g, const gemm_path *p, int threads)
{
    gemm_plan pl = {g, p, div_up(g->K, p->kc), 0, div_up(g->M, p->mr), 1, 1, 1, 0};
    int kc_max = div_up(g->K, pl.nkb);
    pl.mc = max_int(p->mr, GEMM_MC_BYTES / (int)sizeof(plast_real) / kc_max / p->mr * p->mr);
    pl.mc = min_int(pl.mc, pl.mp * p->mr);

    /* Columns per chunk: all of N if K x N fits GEMM_B_BYTES. */
    size_t b_cap = GEMM_B_BYTES / sizeof(plast_real) / (size_t)g->K / (size_t)p->nr;
    int npan_all = div_up(g->N, p->nr);
    int npan = b_cap < (size_t)npan_all ? max_int(1, (int)b_cap) : npan_all;
#ifdef _OPENMP
    plan_tasks(&pl, npan, useful_threads(g, threads, (double)pl.mp * npan));
#else
    (void)threads;
#endif

    pl.a_sz = round_lines((size_t)pl.mc * (size_t)kc_max);
    size_t b_sz = round_lines((size_t)g->K * (size_t)npan * (size_t)p->nr);
    size_t total = b_sz + pl.a_sz * (size_t)pl.threads;
    plast_real *work = aligned_alloc(GEMM_ALIGN, total * sizeof *work);
    if (!work) {
        run_small(&pl);
        return;
    }
    run_chunks(&pl, npan * p->nr, work, work + b_sz);
    free(work);
}

/* C = beta * C when there is nothing to multiply (K 0 or alpha 0). */
static void scale_c(const gemm_job *g)
{
    for (int i = 0; i < g->M; i++) {
        plast_real *c = g->C + (size_t)i * (size_t)g->ldc;
        for (int j = 0; j < g->N; j++)
            c[j] = g->beta == 0.0f ? 0.0f : g->beta * c[j];
    }
}

/* ---- one B operand for many products ---- */

int plast_gemm_pack_b_once(plast_gemm_packed_b *pk, int trans_b, int N, int K,
                           const plast_real *B, int ldb)
{
    const gemm_path *p = default_path();
    memset(pk, 0, sizeof *pk);
    if (N < 1 || K < 1)
        return -1;
    int npan = div_up(N, p->nr);
    size_t b_cap = GEMM_B_BYTES / sizeof(plast_real) / (size_t)K / (size_t)p->nr;
    if (b_cap < (size_t)npan) /* gemm_blocked would cut N into chunks */
        return -1;
    plast_real *buf =
        aligned_alloc(GEMM_ALIGN, round_lines((size_t)K * (size_t)npan * (size_t)p->nr) *
                                      sizeof *buf);
    if (!buf)
        return -1;
    gemm_job g = {0, trans_b, 0, N, K, 1.0f, 0.0f, NULL, B, 0, ldb, NULL, 0, NULL};
    gemm_plan pl = {&g, p, div_up(K, p->kc), 0, 0, 1, 1, 1, 0};
    gemm_chunk ch = chunk_at(&pl, 0, npan * p->nr, buf);
    for (int idx = 0; idx < pl.nkb * ch.npan; idx++)
        pack_b_panel(&pl, &ch, idx, 1);
    *pk = (plast_gemm_packed_b){p, N, K, buf};
    return 0;
}

void plast_gemm_packed_b_free(plast_gemm_packed_b *pk)
{
    free(pk->data);
    pk->data = NULL;
}

void plast_gemm_with_packed_b(const plast_gemm_packed_b *pk, int trans_a, int M, float alpha,
                              const plast_real *A, int lda, float beta, plast_real *C, int ldc)
{
    const gemm_path *p = pk->path;
    gemm_job g = {trans_a, 0, M, pk->N, pk->K, alpha, beta, A, NULL, lda, 0, C, ldc, NULL};
    if (M < 1)
        return;
    if (alpha == 0.0f) {
        scale_c(&g);
        return;
    }
    gemm_plan pl = {&g, p, div_up(pk->K, p->kc), p->mr, div_up(M, p->mr), 1, 1, 1, 0};
    /* one MR panel at a time: A is small here, and so is the buffer */
    enum { MAXA = 8 * 256 }; /* largest MR x KC of any path */
    _Alignas(GEMM_ALIGN) plast_real pa[MAXA];
    PLAST_ASSERT(p->mr * p->kc <= MAXA);
    gemm_chunk ch = chunk_at(&pl, 0, div_up(pk->N, p->nr) * p->nr, pk->data);
    run_task(&pl, &ch, 0, pa);
}

static void gemm_run(const gemm_path *p, int threads, const gemm_job *g)
{
    PLAST_ASSERT(g->M >= 0 && g->N >= 0 && g->K >= 0);
    if (g->M == 0 || g->N == 0)
        return;
    PLAST_ASSERT(g->ldc >= g->N);
    if (g->K == 0 || g->alpha == 0.0f) {
        scale_c(g);
        return;
    }
    PLAST_ASSERT(g->lda >= (g->trans_a ? g->M : g->K));
    PLAST_ASSERT(g->gather_b || g->ldb >= (g->trans_b ? g->K : g->N));
    gemm_blocked(g, p, threads > 1 ? threads : 1);
}

void plast_gemm_mt(int threads, int trans_a, int trans_b, int M, int N, int K, float alpha,
                   const plast_real *A, int lda, const plast_real *B, int ldb, float beta,
                   plast_real *C, int ldc)
{
    gemm_job g = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, C, ldc, NULL};
    gemm_run(default_path(), threads, &g);
}

void plast_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const plast_real *A, int lda, const plast_real *B, int ldb, float beta,
                plast_real *C, int ldc)
{
    plast_gemm_mt(1, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int plast_gemm_kernel_mt(const char *kernel, int threads, int trans_a, int trans_b, int M,
                         int N, int K, float alpha, const plast_real *A, int lda,
                         const plast_real *B, int ldb, float beta, plast_real *C, int ldc)
{
    const gemm_path *p = path_named(kernel);
    if (!p || !path_ok(p))
        return -1;
    gemm_job g = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, C, ldc, NULL};
    gemm_run(p, threads, &g);
    return 0;
}

int plast_gemm_gather_mt(const char *kernel, int threads, int trans_a, int M, int N, int K,
                         float alpha, const plast_real *A, int lda, const plast_real *X,
                         const int32_t *row, const int32_t *col, float beta, plast_real *C,
                         int ldc)
{
    const gemm_path *p = kernel ? path_named(kernel) : default_path();
    if (!p || !path_ok(p))
        return -1;
    gemm_gather gb = {X, row, col};
    gemm_job g = {trans_a, 0, M, N, K, alpha, beta, A, NULL, lda, 0, C, ldc, &gb};
    gemm_run(p, threads, &g);
    return 0;
}
