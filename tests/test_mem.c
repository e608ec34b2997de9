/* test_mem.c - the accounting allocator: live and peak bytes per category,
 * the watched peak, alignment, zeroing and fault injection. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/mem.h"

static plast_mem *mem;

static void setup(void)
{
    plast_err e = {0};
    cr_assert(eq(int, plast_mem_create(&mem, &e), PLAST_OK), "%s", e.msg);
    cr_assert(ne(ptr, mem, NULL));
}

static void teardown(void)
{
    plast_mem_destroy(mem);
}

TestSuite(mem, .init = setup, .fini = teardown);

static size_t aligned(const void *p)
{
    return (size_t)((uintptr_t)p % 64);
}

Test(mem, starts_empty)
{
    for (int c = 0; c < PLAST_MEM_NCAT; c++) {
        cr_assert(eq(sz, plast_mem_live(mem, (plast_mem_cat)c), 0));
        cr_assert(eq(sz, plast_mem_peak(mem, (plast_mem_cat)c), 0));
    }
    cr_assert(eq(sz, plast_mem_live_total(mem), 0));
    cr_assert(eq(sz, plast_mem_peak_total(mem), 0));
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 0));
    cr_assert(eq(u64, plast_mem_alloc_count(mem), 0));
}

Test(mem, live_and_peak_per_category_and_total)
{
    void *w1 = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 100);
    void *g = plast_mem_alloc(mem, PLAST_MEM_GRADIENTS, 200);
    void *w2 = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 50);
    cr_assert(w1 && g && w2);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_WEIGHTS), 150));
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_GRADIENTS), 200));
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_OPTIMIZER), 0));
    cr_assert(eq(sz, plast_mem_live_total(mem), 350));

    plast_mem_free(mem, w1);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_WEIGHTS), 50));
    cr_assert(eq(sz, plast_mem_peak(mem, PLAST_MEM_WEIGHTS), 150));
    cr_assert(eq(sz, plast_mem_live_total(mem), 250));
    cr_assert(eq(sz, plast_mem_peak_total(mem), 350));

    /* A new high in one category raises the total peak only past 350. */
    void *o = plast_mem_alloc(mem, PLAST_MEM_OPTIMIZER, 120);
    cr_assert(ne(ptr, o, NULL));
    cr_assert(eq(sz, plast_mem_peak(mem, PLAST_MEM_OPTIMIZER), 120));
    cr_assert(eq(sz, plast_mem_live_total(mem), 370));
    cr_assert(eq(sz, plast_mem_peak_total(mem), 370));

    plast_mem_free(mem, g);
    plast_mem_free(mem, w2);
    plast_mem_free(mem, o);
    cr_assert(eq(sz, plast_mem_live_total(mem), 0));
    cr_assert(eq(sz, plast_mem_peak(mem, PLAST_MEM_GRADIENTS), 200));
    cr_assert(eq(sz, plast_mem_peak_total(mem), 370));
}

Test(mem, counts_requested_bytes_not_padding)
{
    void *a = plast_mem_alloc(mem, PLAST_MEM_RULE, 1);
    void *b = plast_mem_alloc(mem, PLAST_MEM_RULE, 65);
    void *c = plast_mem_calloc(mem, PLAST_MEM_RULE, 3);
    cr_assert(a && b && c);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_RULE), 69));
    cr_assert(eq(sz, plast_mem_live_total(mem), 69));
    plast_mem_free(mem, b);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_RULE), 4));
    plast_mem_free(mem, a);
    plast_mem_free(mem, c);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_RULE), 0));
}

Test(mem, every_block_is_64_byte_aligned_and_usable)
{
    enum { NBLOCKS = 200 };
    void *p[NBLOCKS];
    size_t want = 0;
    for (int i = 0; i < NBLOCKS; i++) {
        size_t bytes = (size_t)i * 7 % 300;
        p[i] = i % 2 ? plast_mem_calloc(mem, PLAST_MEM_SCRATCH, bytes)
                     : plast_mem_alloc(mem, PLAST_MEM_SCRATCH, bytes);
        cr_assert(ne(ptr, p[i], NULL));
        cr_assert(eq(sz, aligned(p[i]), 0), "block %d of %zu bytes at %p", i, bytes, p[i]);
        memset(p[i], 0x5a, bytes); /* the sanitizers see an overrun */
        want += bytes;
    }
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_SCRATCH), want));
    for (int i = 0; i < NBLOCKS; i++)
        plast_mem_free(mem, p[i]);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_SCRATCH), 0));
}

Test(mem, calloc_zeroes)
{
    enum { BYTES = 4096 };
    /* Dirty a block first so a recycled one would show the old bytes. */
    unsigned char *dirty = plast_mem_alloc(mem, PLAST_MEM_SCRATCH, BYTES);
    cr_assert(ne(ptr, dirty, NULL));
    memset(dirty, 0xab, BYTES);
    plast_mem_free(mem, dirty);
    for (int round = 0; round < 4; round++) {
        unsigned char *z = plast_mem_calloc(mem, PLAST_MEM_ACTIVATIONS, BYTES);
        cr_assert(ne(ptr, z, NULL));
        cr_assert(eq(sz, aligned(z), 0));
        for (size_t i = 0; i < BYTES; i++)
            cr_assert(eq(u8, z[i], 0), "byte %zu", i);
        cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_ACTIVATIONS), BYTES));
        memset(z, 0xcd, BYTES);
        plast_mem_free(mem, z);
    }
}

Test(mem, free_null_is_a_no_op)
{
    void *p = plast_mem_alloc(mem, PLAST_MEM_INPUT, 10);
    cr_assert(ne(ptr, p, NULL));
    plast_mem_free(mem, NULL);
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_INPUT), 10));
    cr_assert(eq(sz, plast_mem_live_total(mem), 10));
    cr_assert(eq(u64, plast_mem_alloc_count(mem), 1));
    plast_mem_free(mem, p);
    plast_mem_destroy(NULL);
}

Test(mem, zero_bytes_gives_unique_freeable_pointers)
{
    void *a = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 0);
    void *b = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 0);
    void *c = plast_mem_calloc(mem, PLAST_MEM_WEIGHTS, 0);
    cr_assert(ne(ptr, a, NULL));
    cr_assert(ne(ptr, b, NULL));
    cr_assert(ne(ptr, c, NULL));
    cr_assert(ne(ptr, a, b));
    cr_assert(ne(ptr, a, c));
    cr_assert(ne(ptr, b, c));
    cr_assert(eq(sz, aligned(a), 0));
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_WEIGHTS), 0));
    plast_mem_free(mem, a);
    plast_mem_free(mem, b);
    plast_mem_free(mem, c);
    cr_assert(eq(sz, plast_mem_live_total(mem), 0));
}

Test(mem, impossible_sizes_fail_without_counting)
{
    /* Sizes whose padding or header overflows size_t. */
    cr_assert(eq(ptr, plast_mem_alloc(mem, PLAST_MEM_DATASET, SIZE_MAX), NULL));
    cr_assert(eq(ptr, plast_mem_alloc(mem, PLAST_MEM_DATASET, SIZE_MAX - 100), NULL));
    cr_assert(eq(ptr, plast_mem_calloc(mem, PLAST_MEM_DATASET, SIZE_MAX - 62), NULL));
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_DATASET), 0));
    cr_assert(eq(sz, plast_mem_peak_total(mem), 0));
}

Test(mem, reset_peaks_sets_peaks_to_live)
{
    void *big = plast_mem_alloc(mem, PLAST_MEM_ACTIVATIONS, 1000);
    void *w = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 300);
    cr_assert(big && w);
    plast_mem_free(mem, big);
    void *small = plast_mem_alloc(mem, PLAST_MEM_ACTIVATIONS, 10);
    cr_assert(ne(ptr, small, NULL));
    cr_assert(eq(sz, plast_mem_peak(mem, PLAST_MEM_ACTIVATIONS), 1000));
    cr_assert(eq(sz, plast_mem_peak_total(mem), 1300));
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 1000));

    plast_mem_reset_peaks(mem);
    for (int c = 0; c < PLAST_MEM_NCAT; c++)
        cr_assert(eq(sz, plast_mem_peak(mem, (plast_mem_cat)c),
                     plast_mem_live(mem, (plast_mem_cat)c)), "category %d", c);
    cr_assert(eq(sz, plast_mem_peak(mem, PLAST_MEM_ACTIVATIONS), 10));
    cr_assert(eq(sz, plast_mem_peak(mem, PLAST_MEM_WEIGHTS), 300));
    cr_assert(eq(sz, plast_mem_peak_total(mem), 310));
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 10));

    /* Peaks grow again from there. */
    void *more = plast_mem_alloc(mem, PLAST_MEM_ACTIVATIONS, 40);
    cr_assert(ne(ptr, more, NULL));
    cr_assert(eq(sz, plast_mem_peak(mem, PLAST_MEM_ACTIVATIONS), 50));
    cr_assert(eq(sz, plast_mem_peak_total(mem), 350));
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 50));
    plast_mem_free(mem, more);
    plast_mem_free(mem, small);
    plast_mem_free(mem, w);
}

Test(mem, watched_peak_defaults_to_activations_and_input)
{
    void *act = plast_mem_alloc(mem, PLAST_MEM_ACTIVATIONS, 100);
    void *in = plast_mem_alloc(mem, PLAST_MEM_INPUT, 50);
    cr_assert(act && in);
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 150));
    plast_mem_free(mem, act);
    plast_mem_free(mem, in);
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 150), "a peak survives the frees");

    /* Other categories are not watched... */
    void *w = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 5000);
    void *s = plast_mem_alloc(mem, PLAST_MEM_SCRATCH, 5000);
    cr_assert(w && s);
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 150));
    /* ...and the peak is of the sum at one moment, not of the separate peaks. */
    plast_mem_reset_peaks(mem);
    act = plast_mem_alloc(mem, PLAST_MEM_ACTIVATIONS, 100);
    plast_mem_free(mem, act);
    in = plast_mem_alloc(mem, PLAST_MEM_INPUT, 60);
    cr_assert(ne(ptr, in, NULL));
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 100));
    plast_mem_free(mem, in);
    plast_mem_free(mem, w);
    plast_mem_free(mem, s);
}

Test(mem, watch_another_mask)
{
    void *before = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 500);
    cr_assert(ne(ptr, before, NULL));
    plast_mem_free(mem, before);
    void *g0 = plast_mem_alloc(mem, PLAST_MEM_GRADIENTS, 7);
    cr_assert(ne(ptr, g0, NULL));

    /* Tracked from when the mask is set: the 500 freed bytes do not count. */
    plast_mem_watch(mem, 1u << PLAST_MEM_WEIGHTS | 1u << PLAST_MEM_GRADIENTS);
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 7));
    void *w = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 10);
    void *g = plast_mem_alloc(mem, PLAST_MEM_GRADIENTS, 20);
    void *act = plast_mem_alloc(mem, PLAST_MEM_ACTIVATIONS, 1000);
    cr_assert(w && g && act);
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 37));
    plast_mem_free(mem, w);
    plast_mem_free(mem, g);
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 37));

    plast_mem_watch(mem, 1u << PLAST_MEM_ACTIVATIONS);
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 1000));
    plast_mem_watch(mem, 0);
    void *more = plast_mem_alloc(mem, PLAST_MEM_ACTIVATIONS, 1);
    cr_assert(ne(ptr, more, NULL));
    cr_assert(eq(sz, plast_mem_peak_watched(mem), 0));
    plast_mem_free(mem, more);
    plast_mem_free(mem, act);
    plast_mem_free(mem, g0);
}

Test(mem, fail_at_fails_exactly_the_nth_allocation)
{
    void *keep[12];
    keep[0] = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 8); /* counting starts after this */
    cr_assert(ne(ptr, keep[0], NULL));
    plast_mem_fail_at(mem, 3);
    for (int i = 1; i < 12; i++) {
        keep[i] = i % 2 ? plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 8)
                        : plast_mem_calloc(mem, PLAST_MEM_WEIGHTS, 8);
        if (i == 3)
            cr_assert(eq(ptr, keep[i], NULL), "allocation 3 from the call must fail");
        else
            cr_assert(ne(ptr, keep[i], NULL), "allocation %d must succeed", i);
    }
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_WEIGHTS), 11 * 8), "the failure counts nothing");
    for (int i = 0; i < 12; i++)
        plast_mem_free(mem, keep[i]);
}

Test(mem, fail_at_one_and_zero)
{
    plast_mem_fail_at(mem, 1);
    cr_assert(eq(ptr, plast_mem_alloc(mem, PLAST_MEM_INPUT, 16), NULL));
    void *p = plast_mem_alloc(mem, PLAST_MEM_INPUT, 16);
    cr_assert(ne(ptr, p, NULL));
    plast_mem_free(mem, p);

    plast_mem_fail_at(mem, 2);
    plast_mem_fail_at(mem, 0); /* cancels */
    for (int i = 0; i < 5; i++) {
        p = plast_mem_alloc(mem, PLAST_MEM_INPUT, 16);
        cr_assert(ne(ptr, p, NULL), "allocation %d after fail_at(0)", i);
        plast_mem_free(mem, p);
    }
}

Test(mem, alloc_count_counts_attempts)
{
    void *a = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 8);
    void *b = plast_mem_calloc(mem, PLAST_MEM_WEIGHTS, 8);
    void *z = plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 0);
    cr_assert(eq(u64, plast_mem_alloc_count(mem), 3), "calloc counts once");
    plast_mem_free(mem, a);
    plast_mem_free(mem, NULL);
    cr_assert(eq(u64, plast_mem_alloc_count(mem), 3), "frees do not count");
    plast_mem_fail_at(mem, 1);
    cr_assert(eq(ptr, plast_mem_alloc(mem, PLAST_MEM_WEIGHTS, 8), NULL));
    cr_assert(eq(u64, plast_mem_alloc_count(mem), 4), "an injected failure is an attempt");
    plast_mem_free(mem, b);
    plast_mem_free(mem, z);
}

Test(mem, category_names)
{
    static const char *const want[PLAST_MEM_NCAT] = {
        "weights", "gradients", "optimizer", "activations", "input", "rule", "scratch", "dataset",
    };
    cr_assert(eq(int, PLAST_MEM_NCAT, 8));
    for (int c = 0; c < PLAST_MEM_NCAT; c++)
        cr_assert(eq(str, (char *)plast_mem_cat_name((plast_mem_cat)c), (char *)want[c]));
    cr_assert(ne(ptr, (void *)plast_mem_cat_name(PLAST_MEM_NCAT), NULL));
}

Test(mem, two_allocators_are_independent)
{
    plast_mem *other = NULL;
    cr_assert(eq(int, plast_mem_create(&other, NULL), PLAST_OK));
    void *p = plast_mem_alloc(other, PLAST_MEM_WEIGHTS, 64);
    cr_assert(ne(ptr, p, NULL));
    cr_assert(eq(sz, plast_mem_live(mem, PLAST_MEM_WEIGHTS), 0));
    cr_assert(eq(sz, plast_mem_live(other, PLAST_MEM_WEIGHTS), 64));
    cr_assert(eq(u64, plast_mem_alloc_count(mem), 0));
    plast_mem_free(other, p);
    plast_mem_destroy(other);
}
