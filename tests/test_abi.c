/* test_abi.c - the ABI tripwire.
 *
 * IF THIS FAILS YOU CHANGED THE ABI: BUMP PLAST_ABI_VERSION (plugin.h).
 *
 * Plug-ins are compiled against these headers and loaded by a core built
 * later, so the layout of every struct crossing the boundary, and every
 * constant a plug-in compiles in, is pinned here (as hwloc's
 * tests/hwloc/hwloc_topology_abi.c does).  Appending an optional callback
 * at the end of an ops table needs no bump (the core tests PLAST_HAS):
 * then add its line here and keep the old ones.  Anything else that makes
 * this test fail -- reordering, retyping, removing, inserting, resizing --
 * is an incompatible change: bump PLAST_ABI_VERSION, then update the
 * numbers below from the compiler.
 *
 * The layout numbers are those of x86_64 (LP64); elsewhere only the
 * constants are checked. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/plast.h"

Test(abi, version_and_magic)
{
    cr_assert(eq(u32, PLAST_ABI_VERSION, 1));
    cr_assert(eq(u32, PLAST_PLUGIN_MAGIC, 0x504c5354u));
    /* "PLST" read big-endian: the magic spells the name in a hex dump */
    cr_assert(eq(int, (int)((PLAST_PLUGIN_MAGIC >> 24) & 0xff), 'P'));
    cr_assert(eq(int, (int)((PLAST_PLUGIN_MAGIC >> 16) & 0xff), 'L'));
    cr_assert(eq(int, (int)((PLAST_PLUGIN_MAGIC >> 8) & 0xff), 'S'));
    cr_assert(eq(int, (int)(PLAST_PLUGIN_MAGIC & 0xff), 'T'));
    cr_assert(eq(sz, sizeof(plast_real), 4));   /* part of the key: real_size */
}

/* Values plug-ins compile in. */
Test(abi, constants)
{
    cr_expect(eq(int, PLAST_OK, 0));
    cr_expect(eq(int, PLAST_E_NOMEM, -1));
    cr_expect(eq(int, PLAST_E_INVAL, -2));
    cr_expect(eq(int, PLAST_E_IO, -3));
    cr_expect(eq(int, PLAST_E_PARSE, -4));
    cr_expect(eq(int, PLAST_E_PLUGIN, -5));
    cr_expect(eq(int, PLAST_E_ABI, -6));
    cr_expect(eq(int, PLAST_E_UNSUPPORTED, -7));
    cr_expect(eq(int, PLAST_E_DATA, -8));
    cr_expect(eq(int, PLAST_E_DIVERGED, -9));
    cr_expect(eq(int, PLAST_E_CANCELED, -10));
    cr_expect(eq(int, PLAST_E_NOENT, -11));

    cr_expect(eq(int, PLAST_S_INT, 1));
    cr_expect(eq(int, PLAST_S_REAL, 2));
    cr_expect(eq(int, PLAST_S_BOOL, 3));
    cr_expect(eq(int, PLAST_S_STRING, 4));
    cr_expect(eq(int, PLAST_S_ENUM, 5));
    cr_expect(eq(int, PLAST_S_REQUIRED, 1));
    cr_expect(eq(int, PLAST_S_MIN_OPEN, 2));
    cr_expect(eq(int, PLAST_S_MAX_OPEN, 4));

    cr_expect(eq(int, PLAST_MEM_WEIGHTS, 0));
    cr_expect(eq(int, PLAST_MEM_GRADIENTS, 1));
    cr_expect(eq(int, PLAST_MEM_OPTIMIZER, 2));
    cr_expect(eq(int, PLAST_MEM_ACTIVATIONS, 3));
    cr_expect(eq(int, PLAST_MEM_INPUT, 4));
    cr_expect(eq(int, PLAST_MEM_RULE, 5));
    cr_expect(eq(int, PLAST_MEM_SCRATCH, 6));
    cr_expect(eq(int, PLAST_MEM_DATASET, 7));
    cr_expect(eq(int, PLAST_MEM_NCAT, 8));

    cr_expect(eq(int, PLAST_STREAM_INIT, 1));
    cr_expect(eq(int, PLAST_STREAM_SHUFFLE, 2));
    cr_expect(eq(int, PLAST_STREAM_PROJ, 3));
    cr_expect(eq(int, PLAST_STREAM_DROPOUT, 4));
    cr_expect(eq(int, PLAST_STREAM_PERTURB, 5));
    cr_expect(eq(int, PLAST_STREAM_DATA, 6));
    cr_expect(eq(int, PLAST_STREAM_SPLIT, 7));

    cr_expect(eq(int, PLAST_LAYER_INPLACE, 1));
    cr_expect(eq(int, PLAST_LAYER_ACTIVATION, 2));
    cr_expect(eq(int, PLAST_LAYER_VIEW, 4));
    cr_expect(eq(int, PLAST_MAX_DIMS, 4));
    cr_expect(eq(int, PLAST_LAYER_MAX_PARAMS, 4));
    cr_expect(eq(int, PLAST_BLOCK_MAX_LAYERS, 16));
}

static int fake_save(const plast_rule *r, plast_writer *w, plast_err *e)
{
    (void)r, (void)w, (void)e;
    return 0;
}

/* PLAST_HAS reads an appended member only when the table's size covers it. */
Test(abi, plast_has_respects_size)
{
    plast_rule_ops ops;
    memset(&ops, 0, sizeof ops);
    ops.save_state = fake_save;
    ops.size = sizeof ops;
    cr_assert(eq(int, PLAST_HAS(&ops, plast_rule_ops, save_state) != 0, 1));
    cr_assert(eq(int, PLAST_HAS(&ops, plast_rule_ops, load_state) != 0, 0)); /* NULL */
    ops.size = offsetof(plast_rule_ops, save_state);              /* an older plug-in */
    cr_assert(eq(int, PLAST_HAS(&ops, plast_rule_ops, save_state) != 0, 0));
    ops.size = offsetof(plast_rule_ops, save_state) + sizeof ops.save_state - 1;
    cr_assert(eq(int, PLAST_HAS(&ops, plast_rule_ops, save_state) != 0, 0));
    ops.size = 72; /* a plug-in built before predict..describe were appended */
    cr_assert(eq(int, PLAST_HAS(&ops, plast_rule_ops, save_state) != 0, 1));
    cr_assert(eq(int, PLAST_HAS(&ops, plast_rule_ops, predict) != 0, 0));
    cr_assert(eq(int, PLAST_HAS(&ops, plast_rule_ops, describe) != 0, 0));
}

#if defined(__x86_64__) && defined(__LP64__)

#define CHECK_SIZE(type, bytes) \
    cr_expect(eq(sz, sizeof(type), (size_t)(bytes)), "sizeof(" #type ") changed")
#define CHECK_MEMBER(type, m, off, bytes)                                               \
    do {                                                                                \
        cr_expect(eq(sz, offsetof(type, m), (size_t)(off)),                             \
                  "offsetof(" #type ", " #m ") changed");                               \
        cr_expect(eq(sz, sizeof(((type *)0)->m), (size_t)(bytes)),                      \
                  "sizeof(" #type "." #m ") changed");                                  \
    } while (0)

Test(abi_layout, plugin)
{
    CHECK_SIZE(plast_plugin, 72);
    CHECK_MEMBER(plast_plugin, magic, 0, 4);
    CHECK_MEMBER(plast_plugin, abi, 4, 4);
    CHECK_MEMBER(plast_plugin, size, 8, 4);
    CHECK_MEMBER(plast_plugin, real_size, 12, 4);
    CHECK_MEMBER(plast_plugin, name, 16, 8);
    CHECK_MEMBER(plast_plugin, version, 24, 8);
    CHECK_MEMBER(plast_plugin, summary, 32, 8);
    CHECK_MEMBER(plast_plugin, license, 40, 8);
    CHECK_MEMBER(plast_plugin, rules, 48, 8);
    CHECK_MEMBER(plast_plugin, layers, 56, 8);
    CHECK_MEMBER(plast_plugin, losses, 64, 8);
}

Test(abi_layout, rule_ops)
{
    CHECK_SIZE(plast_rule_ops, 104);
    CHECK_MEMBER(plast_rule_ops, size, 0, 4);
    CHECK_MEMBER(plast_rule_ops, name, 8, 8);
    CHECK_MEMBER(plast_rule_ops, settings, 16, 8);
    CHECK_MEMBER(plast_rule_ops, summary, 24, 8);
    CHECK_MEMBER(plast_rule_ops, create, 32, 8);
    CHECK_MEMBER(plast_rule_ops, train_batch, 40, 8);
    CHECK_MEMBER(plast_rule_ops, destroy, 48, 8);
    CHECK_MEMBER(plast_rule_ops, save_state, 56, 8);
    CHECK_MEMBER(plast_rule_ops, load_state, 64, 8);
    CHECK_MEMBER(plast_rule_ops, predict, 72, 8);
    CHECK_MEMBER(plast_rule_ops, forwards_per_update, 80, 8);
    CHECK_MEMBER(plast_rule_ops, aux_params, 88, 8);
    CHECK_MEMBER(plast_rule_ops, describe, 96, 8);
}

Test(abi_layout, layer_ops)
{
    CHECK_SIZE(plast_layer_ops, 104);
    CHECK_MEMBER(plast_layer_ops, size, 0, 4);
    CHECK_MEMBER(plast_layer_ops, name, 8, 8);
    CHECK_MEMBER(plast_layer_ops, settings, 16, 8);
    CHECK_MEMBER(plast_layer_ops, flags, 24, 4);
    CHECK_MEMBER(plast_layer_ops, create, 32, 8);
    CHECK_MEMBER(plast_layer_ops, init, 40, 8);
    CHECK_MEMBER(plast_layer_ops, forward, 48, 8);
    CHECK_MEMBER(plast_layer_ops, backward, 56, 8);
    CHECK_MEMBER(plast_layer_ops, destroy, 64, 8);
    CHECK_MEMBER(plast_layer_ops, flops, 72, 8);
    CHECK_MEMBER(plast_layer_ops, release, 80, 8);
    CHECK_MEMBER(plast_layer_ops, forward2, 88, 8);
    CHECK_MEMBER(plast_layer_ops, backward2, 96, 8);
}

Test(abi_layout, loss_ops)
{
    CHECK_SIZE(plast_loss_ops, 32);
    CHECK_MEMBER(plast_loss_ops, size, 0, 4);
    CHECK_MEMBER(plast_loss_ops, name, 8, 8);
    CHECK_MEMBER(plast_loss_ops, settings, 16, 8);
    CHECK_MEMBER(plast_loss_ops, eval, 24, 8);
}

Test(abi_layout, setting)
{
    CHECK_SIZE(plast_setting, 64);
    CHECK_MEMBER(plast_setting, key, 0, 8);
    CHECK_MEMBER(plast_setting, type, 8, 4);
    CHECK_MEMBER(plast_setting, def, 16, 8);
    CHECK_MEMBER(plast_setting, min, 24, 8);
    CHECK_MEMBER(plast_setting, max, 32, 8);
    CHECK_MEMBER(plast_setting, choices, 40, 8);
    CHECK_MEMBER(plast_setting, flags, 48, 4);
    CHECK_MEMBER(plast_setting, help, 56, 8);
}

Test(abi_layout, tensor)
{
    CHECK_SIZE(plast_tensor, 48);
    CHECK_MEMBER(plast_tensor, data, 0, 8);
    CHECK_MEMBER(plast_tensor, size, 8, 8);
    CHECK_MEMBER(plast_tensor, ndim, 16, 4);
    CHECK_MEMBER(plast_tensor, dim, 20, 16);
    CHECK_MEMBER(plast_tensor, owner, 40, 8);
}

Test(abi_layout, shape)
{
    CHECK_SIZE(plast_shape, 16);
    CHECK_MEMBER(plast_shape, ndim, 0, 4);
    CHECK_MEMBER(plast_shape, dim, 4, 12);
}

Test(abi_layout, err)
{
    CHECK_SIZE(plast_err, 520);
    CHECK_MEMBER(plast_err, code, 0, 4);
    CHECK_MEMBER(plast_err, line, 4, 4);
    CHECK_MEMBER(plast_err, file, 8, 256);
    CHECK_MEMBER(plast_err, msg, 264, 256);
}

Test(abi_layout, stats)
{
    CHECK_SIZE(plast_stats, 16);
    CHECK_MEMBER(plast_stats, loss, 0, 8);
    CHECK_MEMBER(plast_stats, correct, 8, 4);
    CHECK_MEMBER(plast_stats, count, 12, 4);
}

Test(abi_layout, batch)
{
    CHECK_SIZE(plast_batch, 72);
    CHECK_MEMBER(plast_batch, x, 0, 48);
    CHECK_MEMBER(plast_batch, labels, 48, 8);
    CHECK_MEMBER(plast_batch, n, 56, 4);
    CHECK_MEMBER(plast_batch, step, 64, 8);
}

Test(abi_layout, layer)
{
    CHECK_SIZE(plast_layer, 320);
    CHECK_MEMBER(plast_layer, ops, 0, 8);
    CHECK_MEMBER(plast_layer, name, 8, 64);
    CHECK_MEMBER(plast_layer, index, 72, 4);
    CHECK_MEMBER(plast_layer, block, 76, 4);
    CHECK_MEMBER(plast_layer, frozen, 80, 4);
    CHECK_MEMBER(plast_layer, in, 84, 16);
    CHECK_MEMBER(plast_layer, out, 100, 16);
    CHECK_MEMBER(plast_layer, nparams, 116, 4);
    CHECK_MEMBER(plast_layer, param, 120, 160);
    CHECK_MEMBER(plast_layer, seed, 280, 8);
    CHECK_MEMBER(plast_layer, priv, 288, 8);
    CHECK_MEMBER(plast_layer, ninputs, 296, 4);
    CHECK_MEMBER(plast_layer, in2, 300, 16);
}

Test(abi_layout, param)
{
    CHECK_SIZE(plast_param, 40);
    CHECK_MEMBER(plast_param, name, 0, 8);
    CHECK_MEMBER(plast_param, count, 8, 8);
    CHECK_MEMBER(plast_param, fan_in, 16, 4);
    CHECK_MEMBER(plast_param, flags, 20, 4);
    CHECK_MEMBER(plast_param, w, 24, 8);
    CHECK_MEMBER(plast_param, g, 32, 8);
}

Test(abi_layout, ctx)
{
    CHECK_SIZE(plast_ctx, 24);
    CHECK_MEMBER(plast_ctx, mem, 0, 8);
    CHECK_MEMBER(plast_ctx, train, 8, 4);
    CHECK_MEMBER(plast_ctx, threads, 12, 4);
    CHECK_MEMBER(plast_ctx, step, 16, 8);
}

Test(abi_layout, block)
{
    CHECK_SIZE(plast_block, 32);
    CHECK_MEMBER(plast_block, first, 0, 4);
    CHECK_MEMBER(plast_block, last, 4, 4);
    CHECK_MEMBER(plast_block, trainable, 8, 4);
    CHECK_MEMBER(plast_block, inject, 12, 4);
    CHECK_MEMBER(plast_block, param_begin, 16, 8);
    CHECK_MEMBER(plast_block, param_end, 24, 8);
}

Test(abi_layout, block_run)
{
    CHECK_SIZE(plast_block_run, 792);
    CHECK_MEMBER(plast_block_run, block, 0, 4);
    CHECK_MEMBER(plast_block_run, x, 8, 8);
    CHECK_MEMBER(plast_block_run, n, 16, 4);
    CHECK_MEMBER(plast_block_run, out, 24, 768);
}

Test(abi_layout, rng)
{
    CHECK_SIZE(plast_rng, 16);
    CHECK_MEMBER(plast_rng, state, 0, 8);
    CHECK_MEMBER(plast_rng, inc, 8, 8);
}

Test(abi_layout, proj)
{
    CHECK_SIZE(plast_proj, 64);
    CHECK_MEMBER(plast_proj, classes, 0, 4);
    CHECK_MEMBER(plast_proj, n, 8, 8);
    CHECK_MEMBER(plast_proj, bound, 16, 4);
    CHECK_MEMBER(plast_proj, base, 24, 16);
    CHECK_MEMBER(plast_proj, matrix, 40, 8);
    CHECK_MEMBER(plast_proj, mem, 48, 8);
    CHECK_MEMBER(plast_proj, offset, 56, 4);
    CHECK_MEMBER(plast_proj, repeat, 60, 4);
}

#else

Test(abi_layout, not_pinned_here)
{
    cr_skip_test("struct layouts are pinned for x86_64 only");
}

#endif
