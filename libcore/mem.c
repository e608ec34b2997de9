/* mem.c - the accounting allocator.
 *
 * Each block carries a 64-byte header in front of the aligned payload with
 * its size and category, so plast_mem_free() needs only the pointer. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "plast/mem.h"

#define MEM_ALIGN 64

struct plast_mem {
    size_t live[PLAST_MEM_NCAT];
    size_t peak[PLAST_MEM_NCAT];
    size_t live_total, peak_total;
    unsigned watch_mask;
    size_t peak_watched;
    uint64_t nalloc;   /* allocations so far */
    uint64_t fail_at;  /* allocation number that fails, 0 = none */
};

typedef struct mem_head {
    size_t bytes;
    int cat;
    unsigned char pad[MEM_ALIGN - sizeof(size_t) - sizeof(int)];
} mem_head;

_Static_assert(sizeof(mem_head) == MEM_ALIGN, "header keeps the payload aligned");

static const char *const cat_names[PLAST_MEM_NCAT] = {
    "weights", "gradients", "optimizer", "activations", "input", "rule", "scratch", "dataset",
};

const char *plast_mem_cat_name(plast_mem_cat cat)
{
    return (unsigned)cat < PLAST_MEM_NCAT ? cat_names[cat] : "?";
}

int plast_mem_create(plast_mem **out, plast_err *e)
{
    plast_mem *m = calloc(1, sizeof *m);
    if (!m)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory creating the allocator");
    m->watch_mask = (1u << PLAST_MEM_ACTIVATIONS) | (1u << PLAST_MEM_INPUT);
    *out = m;
    return PLAST_OK;
}

void plast_mem_destroy(plast_mem *m)
{
    free(m);
}

static size_t watched_live(const plast_mem *m)
{
    size_t s = 0;
    for (int c = 0; c < PLAST_MEM_NCAT; c++)
        if (m->watch_mask & (1u << c))
            s += m->live[c];
    return s;
}

static void account(plast_mem *m, int cat, size_t bytes, int sign)
{
    if (sign > 0) {
        m->live[cat] += bytes;
        m->live_total += bytes;
        if (m->live[cat] > m->peak[cat])
            m->peak[cat] = m->live[cat];
        if (m->live_total > m->peak_total)
            m->peak_total = m->live_total;
        if (m->watch_mask & (1u << cat)) {
            size_t w = watched_live(m);
            if (w > m->peak_watched)
                m->peak_watched = w;
        }
    } else {
        m->live[cat] -= bytes;
        m->live_total -= bytes;
    }
}

void *plast_mem_alloc(plast_mem *m, plast_mem_cat cat, size_t bytes)
{
    PLAST_ASSERT(m && (unsigned)cat < PLAST_MEM_NCAT);
    m->nalloc++;
    if (m->fail_at && m->nalloc == m->fail_at)
        return NULL;
    size_t padded = (bytes + MEM_ALIGN - 1) / MEM_ALIGN * MEM_ALIGN;
    if (padded < bytes || padded > SIZE_MAX - sizeof(mem_head))
        return NULL;
    mem_head *h = aligned_alloc(MEM_ALIGN, sizeof(mem_head) + (padded ? padded : MEM_ALIGN));
    if (!h)
        return NULL;
    h->bytes = bytes;
    h->cat = (int)cat;
    account(m, cat, bytes, +1);
    return h + 1;
}

void *plast_mem_calloc(plast_mem *m, plast_mem_cat cat, size_t bytes)
{
    void *p = plast_mem_alloc(m, cat, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void plast_mem_free(plast_mem *m, void *p)
{
    if (!p)
        return;
    mem_head *h = (mem_head *)p - 1;
    account(m, h->cat, h->bytes, -1);
    free(h);
}

size_t plast_mem_live(const plast_mem *m, plast_mem_cat cat) { return m->live[cat]; }
size_t plast_mem_peak(const plast_mem *m, plast_mem_cat cat) { return m->peak[cat]; }
size_t plast_mem_live_total(const plast_mem *m) { return m->live_total; }
size_t plast_mem_peak_total(const plast_mem *m) { return m->peak_total; }
size_t plast_mem_peak_watched(const plast_mem *m) { return m->peak_watched; }

void plast_mem_watch(plast_mem *m, unsigned mask)
{
    m->watch_mask = mask;
    m->peak_watched = watched_live(m);
}

void plast_mem_reset_peaks(plast_mem *m)
{
    memcpy(m->peak, m->live, sizeof m->peak);
    m->peak_total = m->live_total;
    m->peak_watched = watched_live(m);
}

void plast_mem_fail_at(plast_mem *m, uint64_t n)
{
    m->fail_at = n ? m->nalloc + n : 0;
}

uint64_t plast_mem_alloc_count(const plast_mem *m) { return m->nalloc; }
