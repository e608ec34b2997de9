/* igemm.c - integer matrix products: portable path and dispatch.
 *
 * The portable path is the reference the vector paths (igemm_x86.c) must
 * match bit for bit.  s8 sums are int32 modulo 2^32: within the header's
 * bounds that is the exact sum, beyond them every path wraps the same way
 * (VNNI's vpdpbusd/vpdpwssd wrap too), and C never sees undefined signed
 * overflow: products are summed in int32 over runs short enough to be
 * exact, and the runs are added as uint32.  s16s8 sums are exact: int32
 * over chunks of PLAST_IGEMM_S16_CHUNK products, added into int64. */
#include "config.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plast/err.h"
#include "plast/igemm.h"
#include "igemm_kernels.h"

/* int8 x int8 products (|p| <= 2^14) summed in int32 without overflow. */
#define S8_RUN 65536
/* Columns of C computed together: each row of A is read once for them. */
#define PORT_NB 4
/* k per inner loop: a fixed trip count lets GCC's -O2 vectorizer (its
 * "very cheap" model takes no loop that needs a remainder) use SIMD. */
#define PORT_KB 64

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

/* ---- portable s8 ---- */

/* The dot products of one row of A (int8 or int16) with PORT_NB rows of
 * B over [k0, k0 + len), in int32: the caller keeps len short enough that
 * no sum overflows (S8_RUN, PLAST_IGEMM_S16_CHUNK).  The inner block has a
 * fixed length so the compiler vectorises it. */
#define DEFINE_DOT4(name, atype)                                                        \
    static void name##_block(const atype *a, const int8_t *const b[PORT_NB], int k,     \
                             int32_t s[PORT_NB])                                        \
    {                                                                                   \
        const int8_t *b0 = b[0] + k, *b1 = b[1] + k, *b2 = b[2] + k, *b3 = b[3] + k;    \
        int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                         \
        a += k;                                                                         \
        for (int q = 0; q < PORT_KB; q++) {                                             \
            int32_t av = a[q];                                                          \
            s0 += av * b0[q];                                                           \
            s1 += av * b1[q];                                                           \
            s2 += av * b2[q];                                                           \
            s3 += av * b3[q];                                                           \
        }                                                                               \
        s[0] += s0;                                                                     \
        s[1] += s1;                                                                     \
        s[2] += s2;                                                                     \
        s[3] += s3;                                                                     \
    }                                                                                   \
    static void name(const atype *a, const int8_t *const b[PORT_NB], int k0, int len,   \
                     int32_t out[PORT_NB])                                              \
    {                                                                                   \
        int32_t s[PORT_NB] = {0};                                                       \
        int k = k0;                                                                     \
        for (; k + PORT_KB <= k0 + len; k += PORT_KB)                                   \
            name##_block(a, b, k, s);                                                   \
        for (; k < k0 + len; k++) {                                                     \
            int32_t av = a[k];                                                          \
            for (int j = 0; j < PORT_NB; j++)                                           \
                s[j] += av * b[j][k];                                                   \
        }                                                                               \
        memcpy(out, s, sizeof s);                                                       \
    }

DEFINE_DOT4(dot4_s8, int8_t)
DEFINE_DOT4(dot4_s16, int16_t)

/* C[m][n0 .. n0+nb) for one row m, nb <= PORT_NB, modulo 2^32. */
static void row_block_s8(const igemm_s8_job *g, int m, int n0, int nb)
{
    const int8_t *a = g->A + (size_t)m * (size_t)g->lda;
    const int8_t *b[PORT_NB];
    uint32_t acc[PORT_NB] = {0};
    for (int j = 0; j < PORT_NB; j++) /* rows past nb repeat the last: no reads past B */
        b[j] = g->B + (size_t)(n0 + min_int(j, nb - 1)) * (size_t)g->ldb;
    for (int k0 = 0; k0 < g->K; k0 += S8_RUN) {
        int32_t part[PORT_NB];
        dot4_s8(a, b, k0, min_int(S8_RUN, g->K - k0), part);
        for (int j = 0; j < PORT_NB; j++)
            acc[j] += (uint32_t)part[j];
    }
    int32_t *c = g->C + (size_t)m * (size_t)g->ldc + (size_t)n0;
    for (int j = 0; j < nb; j++) {
        uint32_t v = acc[j] + (g->beta ? (uint32_t)c[j] : 0u);
        c[j] = (int32_t)v; /* modulo 2^32: GCC and Clang define the conversion */
    }
}

static void portable_s8(const igemm_s8_job *g)
{
    for (int m = 0; m < g->M; m++)
        for (int n0 = 0; n0 < g->N; n0 += PORT_NB)
            row_block_s8(g, m, n0, min_int(PORT_NB, g->N - n0));
}

/* ---- portable s16s8 ---- */

static void row_block_s16(const igemm_s16_job *g, int m, int n0, int nb)
{
    const int16_t *a = g->A + (size_t)m * (size_t)g->lda;
    const int8_t *b[PORT_NB];
    int64_t acc[PORT_NB] = {0};
    for (int j = 0; j < PORT_NB; j++)
        b[j] = g->B + (size_t)(n0 + min_int(j, nb - 1)) * (size_t)g->ldb;
    for (int k0 = 0; k0 < g->K; k0 += PLAST_IGEMM_S16_CHUNK) {
        int32_t part[PORT_NB];
        dot4_s16(a, b, k0, min_int(PLAST_IGEMM_S16_CHUNK, g->K - k0), part);
        for (int j = 0; j < PORT_NB; j++)
            acc[j] += part[j];
    }
    int64_t *c = g->C + (size_t)m * (size_t)g->ldc + (size_t)n0;
    for (int j = 0; j < nb; j++)
        c[j] = acc[j] + (g->beta ? c[j] : 0);
}

static void portable_s16(const igemm_s16_job *g)
{
    for (int m = 0; m < g->M; m++)
        for (int n0 = 0; n0 < g->N; n0 += PORT_NB)
            row_block_s16(g, m, n0, min_int(PORT_NB, g->N - n0));
}

static const igemm_path igemm_path_portable = {"portable", portable_s8, portable_s16};

/* ---- dispatch ---- */

static const igemm_path *path_named(const char *name)
{
    static const igemm_path *const all[] = {&igemm_path_avx512vnni, &igemm_path_avxvnni,
                                            &igemm_path_portable};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

static int path_ok(const igemm_path *p)
{
    return p == &igemm_path_portable || igemm_path_usable(p);
}

/* PLAST_IGEMM_KERNEL if it names a path this CPU has, else the fastest. */
static const igemm_path *pick_path(void)
{
    const char *want = getenv("PLAST_IGEMM_KERNEL");
    const igemm_path *p = want ? path_named(want) : NULL;
    if (p && path_ok(p))
        return p;
    if (path_ok(&igemm_path_avx512vnni))
        return &igemm_path_avx512vnni;
    if (path_ok(&igemm_path_avxvnni))
        return &igemm_path_avxvnni;
    return &igemm_path_portable;
}

/* Decided once per process; the answer is a function of the CPU and the
 * environment, so a race only stores the same pointer twice. */
static const igemm_path *default_path(void)
{
    static _Atomic(const igemm_path *) chosen = NULL;
    const igemm_path *p = atomic_load_explicit(&chosen, memory_order_acquire);
    if (!p) {
        p = pick_path();
        atomic_store_explicit(&chosen, p, memory_order_release);
    }
    return p;
}

const char *plast_igemm_kernel(void)
{
    return default_path()->name;
}

/* ---- entry points ---- */

/* Checks the sizes; 1 if there is a product to compute, 0 if C is done
 * (empty, or K 0: C = beta*C). */
static int start_call(int M, int N, int K, int lda, int ldb, int beta, int ldc)
{
    PLAST_ASSERT(M >= 0 && N >= 0 && K >= 0);
    PLAST_ASSERT(beta == 0 || beta == 1);
    if (M == 0 || N == 0)
        return 0;
    PLAST_ASSERT(ldc >= N);
    if (K == 0)
        return 0;
    PLAST_ASSERT(lda >= K && ldb >= K);
    return 1;
}

static void run_s8(const igemm_path *p, const igemm_s8_job *g)
{
    if (start_call(g->M, g->N, g->K, g->lda, g->ldb, g->beta, g->ldc))
        p->s8(g);
    else if (g->beta == 0 && g->N > 0)
        for (int m = 0; m < g->M; m++)
            memset(g->C + (size_t)m * (size_t)g->ldc, 0, (size_t)g->N * sizeof *g->C);
}

static void run_s16(const igemm_path *p, const igemm_s16_job *g)
{
    if (start_call(g->M, g->N, g->K, g->lda, g->ldb, g->beta, g->ldc))
        p->s16(g);
    else if (g->beta == 0 && g->N > 0)
        for (int m = 0; m < g->M; m++)
            memset(g->C + (size_t)m * (size_t)g->ldc, 0, (size_t)g->N * sizeof *g->C);
}

void plast_igemm_s8(int M, int N, int K, const int8_t *A, int lda, const int8_t *B, int ldb,
                    int beta, int32_t *C, int ldc)
{
    igemm_s8_job g = {M, N, K, A, lda, B, ldb, beta, C, ldc};
    run_s8(default_path(), &g);
}

void plast_igemm_s16s8(int M, int N, int K, const int16_t *A, int lda, const int8_t *B,
                       int ldb, int beta, int64_t *C, int ldc)
{
    igemm_s16_job g = {M, N, K, A, lda, B, ldb, beta, C, ldc};
    run_s16(default_path(), &g);
}

int plast_igemm_s8_with(const char *kernel, int M, int N, int K, const int8_t *A, int lda,
                        const int8_t *B, int ldb, int beta, int32_t *C, int ldc)
{
    const igemm_path *p = path_named(kernel);
    if (!p || !path_ok(p))
        return -1;
    igemm_s8_job g = {M, N, K, A, lda, B, ldb, beta, C, ldc};
    run_s8(p, &g);
    return 0;
}

int plast_igemm_s16s8_with(const char *kernel, int M, int N, int K, const int16_t *A,
                           int lda, const int8_t *B, int ldb, int beta, int64_t *C, int ldc)
{
    const igemm_path *p = path_named(kernel);
    if (!p || !path_ok(p))
        return -1;
    igemm_s16_job g = {M, N, K, A, lda, B, ldb, beta, C, ldc};
    run_s16(p, &g);
    return 0;
}
