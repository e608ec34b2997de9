/* test_plugin.c - the registry and the plug-in loader.
 *
 * The test plug-ins (tests/plugins/NAME.c) are built into TEST_PLUGINDIR
 * as NAME.so: goodrule and oldrule load, dupa loads, dupb repeats its rule,
 * the others are refused for one reason each.  Every test sets the
 * PLAST_PLUGIN_* variables itself before creating its registry, and works in
 * its own temporary directory. */
#include "config.h"

#include <ftw.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/plast.h"

#ifndef TEST_PLUGINDIR
#error "the build must define TEST_PLUGINDIR (the directory holding the test NAME.so files)"
#endif

#define PLUG(name) TEST_PLUGINDIR "/" name ".so"
#define NAME_RULE_MSG "(expected [a-z0-9_], at most 63 characters)"

/* ---- fixtures: a temporary directory, a log collector ---- */

static char tmp[4096];
static char logbuf[1 << 16];

static void make_tmp(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/plast-plugin-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(not(zero(ptr, mkdtemp(tmp))), "mkdtemp %s failed", tmp);
    logbuf[0] = '\0';
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tmp(void)
{
    if (tmp[0])
        nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(plugin, .init = make_tmp, .fini = remove_tmp);

static void collect(void *user, const char *line)
{
    size_t used = strlen(logbuf);
    (void)user;
    snprintf(logbuf + used, sizeof logbuf - used, "%s\n", line);
}

static void set_env(const char *var, const char *value)
{
    if (value)
        cr_assert(eq(int, setenv(var, value, 1), 0));
    else
        cr_assert(eq(int, unsetenv(var), 0));
}

/* A registry seeing `path` and `sys` (NULL = unset) and logging into logbuf
 * when `verbose`. */
static plast_registry *registry(const char *path, const char *sys, int verbose)
{
    plast_registry *r = NULL;
    plast_err e;
    set_env("PLAST_PLUGIN_PATH", path);
    set_env("PLAST_PLUGIN_SYSTEM_PATH", sys);
    set_env("PLAST_PLUGIN_VERBOSE", verbose ? "1" : NULL);
    cr_assert(eq(int, plast_registry_create(&r, &e), 0), "%s", e.msg);
    plast_registry_set_log(r, collect, NULL);
    return r;
}

/* tmp/sub, created. */
static const char *subdir(char *buf, size_t n, const char *sub)
{
    snprintf(buf, n, "%s/%s", tmp, sub);
    cr_assert(eq(int, mkdir(buf, 0700), 0), "mkdir %s", buf);
    return buf;
}

static void copy_file(const char *from, const char *to)
{
    char chunk[8192];
    size_t got;
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(not(zero(ptr, in)), "cannot read %s", from);
    cr_assert(not(zero(ptr, out)), "cannot write %s", to);
    while ((got = fread(chunk, 1, sizeof chunk, in)) > 0)
        cr_assert(eq(sz, fwrite(chunk, 1, got, out), got));
    cr_assert(eq(int, ferror(in), 0));
    fclose(in);
    cr_assert(eq(int, fclose(out), 0));
}

static int has(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- built-ins and the search path ---- */

Test(plugin, builtins_present)
{
    static const char *const layers[] = {"dense", "relu", "tanh", "sigmoid", "flatten"};
    char names[256];
    plast_registry *r = registry(NULL, "", 0);
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const plast_layer_ops *l = plast_registry_layer(r, layers[i]);
        cr_assert(not(zero(ptr, (void *)l)), "no built-in layer %s", layers[i]);
        cr_assert(eq(str, (char *)l->name, (char *)layers[i]));
        cr_assert(has(plast_registry_layer_names(r, names, sizeof names), layers[i]));
    }
    cr_assert(eq(ptr, (void *)plast_registry_loss(r, "softmax_ce"),
                 (void *)&plast_loss_softmax_ce));
    cr_assert(eq(ptr, (void *)plast_registry_loss(r, "mse"), (void *)&plast_loss_mse));
    cr_assert(eq(ptr, (void *)plast_registry_loss(r, "sigmoid_bce"),
                 (void *)&plast_loss_sigmoid_bce));
    cr_assert(eq(str, (char *)plast_registry_loss_names(r, names, sizeof names),
                 "softmax_ce, mse, sigmoid_bce"));
    cr_assert(eq(str, (char *)plast_registry_layer_names(r, names, 6), "dense"));  /* cut */
    cr_assert(zero(ptr, (void *)plast_registry_layer(r, "nosuch")));
    cr_assert(zero(ptr, (void *)plast_registry_loss(r, "nosuch")));
    cr_assert(eq(int, plast_registry_nrules(r), 0));
    cr_assert(zero(ptr, (void *)plast_registry_rule(r, 0, NULL, NULL)));
    cr_assert(zero(ptr, (void *)plast_registry_rule(r, -1, NULL, NULL)));
    plast_registry_destroy(r);
    plast_registry_destroy(NULL);
}

Test(plugin, search_dirs_from_environment)
{
    plast_registry *r = registry("/a::/b/:", "/s1:/s2", 0);
    const char *const *d = plast_registry_dirs(r);
    cr_assert(eq(str, (char *)d[0], "/a"));
    cr_assert(eq(str, (char *)d[1], "/b"));
    cr_assert(eq(str, (char *)d[2], "/s1"));   /* the system path replaces PLAST_PLUGINDIR */
    cr_assert(eq(str, (char *)d[3], "/s2"));
    cr_assert(zero(ptr, (void *)d[4]));
    set_env("PLAST_PLUGIN_PATH", "/elsewhere");   /* read at create only */
    cr_assert(eq(str, (char *)plast_registry_dirs(r)[0], "/a"));
    plast_registry_destroy(r);
}

Test(plugin, compiled_in_dir_unless_system_path_set)
{
    plast_registry *r = registry("/a", NULL, 0);
    const char *const *d = plast_registry_dirs(r);
    cr_assert(eq(str, (char *)d[0], "/a"));
    cr_assert(not(zero(ptr, (void *)d[1])));
    cr_assert(gt(sz, strlen(d[1]), 0));
    cr_assert(zero(ptr, (void *)d[2]));
    plast_registry_destroy(r);
}

Test(plugin, empty_system_path_means_no_system_dir)
{
    plast_err e;
    const plast_rule_ops *ops;
    plast_registry *r = registry(NULL, "", 0);
    cr_assert(zero(ptr, (void *)plast_registry_dirs(r)[0]));
    cr_assert(eq(int, plast_registry_find_rule(r, "goodrule", &ops, NULL, &e), PLAST_E_PLUGIN));
    cr_assert(eq(str, e.msg, "no rule 'goodrule' found (no plug-in directories to search)"));
    plast_registry_destroy(r);
}

Test(plugin, found_through_plugin_path)
{
    plast_err e;
    const plast_rule_ops *ops = NULL;
    const plast_plugin *p = NULL;
    const char *file = NULL;
    char names[256];
    plast_registry *r = registry(TEST_PLUGINDIR, "", 0);
    cr_assert(eq(int, plast_registry_find_rule(r, "goodrule", &ops, &file, &e), 0), "%s",
              e.msg);
    cr_assert(eq(str, (char *)ops->name, "goodrule"));
    cr_assert(eq(str, (char *)file, PLUG("goodrule")));
    cr_assert(not(zero(ptr, (void *)ops->settings)));
    cr_assert(eq(int, plast_registry_nrules(r), 1));
    cr_assert(eq(ptr, (void *)plast_registry_rule(r, 0, &file, &p), (void *)ops));
    cr_assert(eq(str, (char *)file, PLUG("goodrule")));
    cr_assert(eq(str, (char *)p->name, "goodrule"));
    cr_assert(eq(str, (char *)p->version, "1.2.3"));
    cr_assert(eq(ptr, (void *)plast_registry_rule_by_name(r, "goodrule"), (void *)ops));
    /* its layer and loss are registered after the built-ins */
    cr_assert(not(zero(ptr, (void *)plast_registry_layer(r, "goodlayer"))));
    cr_assert(not(zero(ptr, (void *)plast_registry_loss(r, "goodloss"))));
    cr_assert(has(plast_registry_layer_names(r, names, sizeof names), ", goodlayer"));
    cr_assert(eq(str, (char *)plast_registry_loss_names(r, names, sizeof names),
                 "softmax_ce, mse, sigmoid_bce, goodloss"));
    /* asking again loads nothing more */
    cr_assert(eq(int, plast_registry_find_rule(r, "goodrule", &ops, NULL, &e), 0));
    cr_assert(eq(int, plast_registry_nrules(r), 1));
    plast_registry_destroy(r);
}

Test(plugin, found_through_system_path)
{
    plast_err e;
    const plast_rule_ops *ops;
    const char *file;
    plast_registry *r = registry(NULL, TEST_PLUGINDIR, 0);
    cr_assert(eq(int, plast_registry_find_rule(r, "goodrule", &ops, &file, &e), 0), "%s",
              e.msg);
    cr_assert(eq(str, (char *)file, PLUG("goodrule")));
    plast_registry_destroy(r);
}

Test(plugin, loaded_by_explicit_path)
{
    plast_err e;
    const plast_rule_ops *ops;
    const char *file;
    char link[4200];
    plast_registry *r = registry(NULL, "", 1);
    cr_assert(eq(int, plast_registry_load_file(r, PLUG("goodrule"), &e), 0), "%s", e.msg);
    cr_assert(eq(int, plast_registry_find_rule(r, "goodrule", &ops, &file, &e), 0), "%s",
              e.msg);
    cr_assert(eq(str, (char *)file, PLUG("goodrule")));
    /* the same file again, by its path or through a symlink: loaded once */
    cr_assert(eq(int, plast_registry_load_file(r, PLUG("goodrule"), &e), 0), "%s", e.msg);
    snprintf(link, sizeof link, "%s/goodrule.so", tmp);
    cr_assert(eq(int, symlink(PLUG("goodrule"), link), 0));
    cr_assert(eq(int, plast_registry_load_file(r, link, &e), 0), "%s", e.msg);
    cr_assert(eq(int, plast_registry_nrules(r), 1));
    cr_assert(has(logbuf, "is already loaded as " PLUG("goodrule")), "%s", logbuf);
    plast_registry_destroy(r);
}

Test(plugin, relative_name_gets_dot_slash)
{
    plast_err e;
    const char *file;
    plast_registry *r = registry(NULL, "", 0);
    cr_assert(eq(int, chdir(TEST_PLUGINDIR), 0));
    cr_assert(eq(int, plast_registry_load_file(r, "goodrule.so", &e), 0), "%s", e.msg);
    cr_assert(not(zero(ptr, (void *)plast_registry_rule(r, 0, &file, NULL))));
    cr_assert(eq(str, (char *)file, "./goodrule.so"));
    plast_registry_destroy(r);
}

/* ---- search order and shadowing ---- */

/* d1 and d2 each with a copy of goodrule.so (two inodes). */
static void two_copies(char *d1, char *d2, size_t n)
{
    char path[4300];
    subdir(d1, n, "d1");
    subdir(d2, n, "d2");
    snprintf(path, sizeof path, "%s/goodrule.so", d1);
    copy_file(PLUG("goodrule"), path);
    snprintf(path, sizeof path, "%s/goodrule.so", d2);
    copy_file(PLUG("goodrule"), path);
}

static void expect_found_in(plast_registry *r, const char *dir)
{
    plast_err e;
    const plast_rule_ops *ops;
    const char *file;
    char want[4300];
    snprintf(want, sizeof want, "%s/goodrule.so", dir);
    cr_assert(eq(int, plast_registry_find_rule(r, "goodrule", &ops, &file, &e), 0), "%s",
              e.msg);
    cr_assert(eq(str, (char *)file, want));
    cr_assert(eq(int, plast_registry_nrules(r), 1));
}

Test(plugin, first_dir_wins_and_shadows_later)
{
    char d1[4200], d2[4200], path[8500], line[8600];
    plast_registry *r;
    two_copies(d1, d2, sizeof d1);
    snprintf(path, sizeof path, "%s:%s", d1, d2);
    r = registry(path, "", 1);
    expect_found_in(r, d1);
    snprintf(line, sizeof line, "plast: trying %s/goodrule.so\n", d1);
    cr_assert(has(logbuf, line), "log:\n%s", logbuf);
    snprintf(line, sizeof line, "plast: %s/goodrule.so shadowed by %s/goodrule.so\n", d2, d1);
    cr_assert(has(logbuf, line), "log:\n%s", logbuf);
    plast_registry_destroy(r);
}

Test(plugin, search_order_follows_the_path)
{
    char d1[4200], d2[4200], path[8500], line[8600];
    plast_registry *r;
    two_copies(d1, d2, sizeof d1);
    snprintf(path, sizeof path, "%s:%s", d2, d1);
    r = registry(path, "", 1);
    expect_found_in(r, d2);
    snprintf(line, sizeof line, "plast: %s/goodrule.so shadowed by %s/goodrule.so\n", d1, d2);
    cr_assert(has(logbuf, line), "log:\n%s", logbuf);
    plast_registry_destroy(r);
}

Test(plugin, plugin_path_before_system_path)
{
    char d1[4200], d2[4200];
    plast_registry *r;
    two_copies(d1, d2, sizeof d1);
    r = registry(d2, d1, 0);   /* PLAST_PLUGIN_PATH before the system dir */
    expect_found_in(r, d2);
    plast_registry_destroy(r);
}

Test(plugin, same_inode_counts_once)
{
    char d1[4200], d2[4200], path[8500], from[4300], to[4300], line[8800];
    plast_registry *r;
    subdir(d1, sizeof d1, "d1");
    subdir(d2, sizeof d2, "d2");
    snprintf(from, sizeof from, "%s/goodrule.so", d1);
    snprintf(to, sizeof to, "%s/goodrule.so", d2);
    copy_file(PLUG("goodrule"), from);
    cr_assert(eq(int, symlink(from, to), 0));
    snprintf(path, sizeof path, "%s:%s", d1, d2);
    r = registry(path, "", 1);
    expect_found_in(r, d1);
    snprintf(line, sizeof line, "plast: skipping %s: same file as %s\n", to, from);
    cr_assert(has(logbuf, line), "log:\n%s", logbuf);
    cr_assert(not(has(logbuf, "shadowed")), "log:\n%s", logbuf);
    plast_registry_destroy(r);
}

Test(plugin, first_regular_file_wins)
{
    char d1[4200], d2[4200], path[8500], sub[4300];
    plast_registry *r;
    two_copies(d1, d2, sizeof d1);
    snprintf(sub, sizeof sub, "%s/goodrule.so", d1);
    cr_assert(eq(int, remove(sub), 0));
    cr_assert(eq(int, mkdir(sub, 0700), 0));   /* a directory named goodrule.so */
    snprintf(path, sizeof path, "%s:%s", d1, d2);
    r = registry(path, "", 0);
    expect_found_in(r, d2);
    plast_registry_destroy(r);
}

Test(plugin, silent_unless_verbose)
{
    plast_err e;
    const plast_rule_ops *ops;
    plast_registry *r = registry(TEST_PLUGINDIR, "", 0);
    cr_assert(eq(int, plast_registry_find_rule(r, "goodrule", &ops, NULL, &e), 0), "%s",
              e.msg);
    cr_assert(eq(str, logbuf, ""));
    plast_registry_destroy(r);
    set_env("PLAST_PLUGIN_VERBOSE", "0");
    cr_assert(eq(int, plast_registry_create(&r, &e), 0));
    plast_registry_set_log(r, collect, NULL);
    cr_assert(eq(int, plast_registry_find_rule(r, "goodrule", &ops, NULL, &e), 0));
    cr_assert(eq(str, logbuf, ""));
    plast_registry_destroy(r);
}

/* ---- rule names and lookups ---- */

Test(plugin, invalid_rule_names_refused)
{
    static const char *const bad[] = {
        "../x", "a/b", "/abs", "", "Goodrule", "a-b", "x.so", "a b",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",   /* 64 */
    };
    plast_err e;
    char want[256];
    const plast_rule_ops *ops;
    plast_registry *r = registry(TEST_PLUGINDIR, "", 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert(eq(int, plast_registry_find_rule(r, bad[i], &ops, NULL, &e), PLAST_E_PLUGIN));
        snprintf(want, sizeof want, "invalid rule name \"%s\" " NAME_RULE_MSG, bad[i]);
        cr_assert(eq(str, e.msg, want));
    }
    cr_assert(eq(int, plast_registry_nrules(r), 0));   /* nothing was loaded */
    plast_registry_destroy(r);
}

Test(plugin, longest_valid_name_is_searched)
{
    static const char name63[] =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    plast_err e;
    const plast_rule_ops *ops;
    char d1[4200], want[4400];
    plast_registry *r;
    subdir(d1, sizeof d1, "empty");
    r = registry(d1, "", 0);
    cr_assert(eq(sz, strlen(name63), 63));
    cr_assert(eq(int, plast_registry_find_rule(r, name63, &ops, NULL, &e), PLAST_E_PLUGIN));
    snprintf(want, sizeof want, "no rule '%s' found (searched: %s)", name63, d1);
    cr_assert(eq(str, e.msg, want));
    plast_registry_destroy(r);
}

Test(plugin, not_found_names_every_dir)
{
    plast_err e;
    const plast_rule_ops *ops;
    char d1[4200], d2[4200], path[8500], want[8600];
    plast_registry *r;
    subdir(d1, sizeof d1, "d1");
    snprintf(d2, sizeof d2, "%s/missing", tmp);   /* need not exist */
    snprintf(path, sizeof path, "%s:%s", d1, d2);
    r = registry(path, "", 0);
    cr_assert(eq(int, plast_registry_find_rule(r, "xyz", &ops, NULL, &e), PLAST_E_PLUGIN));
    snprintf(want, sizeof want, "no rule 'xyz' found (searched: %s, %s)", d1, d2);
    cr_assert(eq(str, e.msg, want));
    plast_registry_destroy(r);
}

/* No nosuch.so: every plug-in of the path is loaded and asked. */
Test(plugin, unknown_rule_asks_every_plugin)
{
    plast_err e;
    const plast_rule_ops *ops;
    plast_registry *r = registry(TEST_PLUGINDIR, "", 0);
    cr_assert(eq(int, plast_registry_find_rule(r, "nosuch", &ops, NULL, &e), PLAST_E_PLUGIN));
    cr_assert(eq(str, e.msg, "no rule 'nosuch' found (searched: " TEST_PLUGINDIR ")"));
    cr_assert(eq(int, plast_registry_nrules(r), 3));   /* dup, goodrule, oldrule */
    plast_registry_destroy(r);
}

/* Rule "dup" lives in dupa.so and dupb.so: the scan stops at the first. */
Test(plugin, rule_found_in_a_differently_named_file)
{
    plast_err e;
    const plast_rule_ops *ops;
    const char *file;
    plast_registry *r = registry(TEST_PLUGINDIR, "", 1);
    cr_assert(eq(int, plast_registry_find_rule(r, "dup", &ops, &file, &e), 0), "%s", e.msg);
    cr_assert(eq(str, (char *)file, PLUG("dupa")));
    cr_assert(has(logbuf, "plast: skipping " PLUG("badabi")
                          ": plug-in ABI 2, this plast has ABI 1; rebuild the plug-in\n"),
              "log:\n%s", logbuf);
    cr_assert(has(logbuf, "plast: loaded " PLUG("dupa")), "log:\n%s", logbuf);
    cr_assert(not(has(logbuf, PLUG("dupb"))), "log:\n%s", logbuf);
    plast_registry_destroy(r);
}

/* ---- refusals: one line naming the file, nothing registered ---- */

static void expect_refused(const char *path, int code, const char *msg)
{
    plast_err e;
    plast_registry *r = registry(NULL, "", 0);
    int before = plast_registry_nrules(r);
    char names[512], want[512];
    plast_registry_loss_names(r, want, sizeof want);
    cr_assert(eq(int, plast_registry_load_file(r, path, &e), code), "%s", e.msg);
    cr_assert(eq(str, e.file, (char *)path));
    cr_assert(eq(int, e.line, 0));
    cr_assert(eq(str, e.msg, (char *)msg));
    cr_assert(eq(int, plast_registry_nrules(r), before));
    cr_assert(eq(str, (char *)plast_registry_loss_names(r, names, sizeof names), want));
    /* the registry still works */
    cr_assert(eq(int, plast_registry_load_file(r, PLUG("goodrule"), &e), 0), "%s", e.msg);
    plast_registry_destroy(r);
}

Test(plugin, refuses_other_abi)
{
    plast_registry *r;
    expect_refused(PLUG("badabi"), PLAST_E_ABI,
                   "plug-in ABI 2, this plast has ABI 1; rebuild the plug-in");
    r = registry(NULL, "", 1);   /* e may be NULL; the log still says why */
    cr_assert(eq(int, plast_registry_load_file(r, PLUG("badabi"), NULL), PLAST_E_ABI));
    cr_assert(has(logbuf, "plast: skipping " PLUG("badabi") ": plug-in ABI 2"), "%s", logbuf);
    plast_registry_destroy(r);
}

Test(plugin, refuses_bad_magic)
{
    expect_refused(PLUG("badmagic"), PLAST_E_PLUGIN,
                   "not a plast plug-in (bad magic 0xdeadbeef, expected 0x504c5354)");
}

Test(plugin, refuses_other_real_size)
{
    expect_refused(PLUG("badreal"), PLAST_E_ABI,
                   "plug-in built for 8-byte plast_real, this plast uses 4");
}

Test(plugin, refuses_missing_entry)
{
    expect_refused(PLUG("noentry"), PLAST_E_PLUGIN,
                   "not a plast plug-in (no plast_plugin_entry)");
}

Test(plugin, refuses_name_not_matching_file)
{
    expect_refused(PLUG("badname"), PLAST_E_PLUGIN,
                   "plug-in name 'othername' does not match its file name 'badname'");
}

Test(plugin, refuses_bad_schema)
{
    plast_err e;
    plast_registry *r = registry(NULL, "", 0);
    cr_assert(eq(int, plast_registry_load_file(r, PLUG("badschema"), &e), PLAST_E_PLUGIN));
    cr_assert(eq(str, e.file, PLUG("badschema")));
    cr_assert(starts_with(e.msg, "rule 'badschema': schema key 'lr': default \"abc\""), "%s",
              e.msg);
    cr_assert(eq(int, plast_registry_nrules(r), 0));
    plast_registry_destroy(r);
}

Test(plugin, refuses_missing_file)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/none.so", tmp);
    expect_refused(path, PLAST_E_NOENT, "cannot load: No such file or directory");
}

Test(plugin, refuses_directory)
{
    expect_refused(tmp, PLAST_E_PLUGIN, "cannot load: not a regular file");
}

Test(plugin, refuses_non_elf_file)
{
    char path[4300], junk[200];
    plast_err e;
    FILE *f;
    plast_registry *r = registry(NULL, "", 0);
    snprintf(path, sizeof path, "%s/junk.so", tmp);
    memset(junk, 'x', sizeof junk);
    f = fopen(path, "wb");
    cr_assert(not(zero(ptr, f)));
    cr_assert(eq(sz, fwrite(junk, 1, sizeof junk, f), sizeof junk));
    cr_assert(eq(int, fclose(f), 0));
    cr_assert(eq(int, plast_registry_load_file(r, path, &e), PLAST_E_PLUGIN));
    cr_assert(eq(str, e.file, path));
    cr_assert(starts_with(e.msg, "cannot load: "), "%s", e.msg);
    cr_assert(has(e.msg, " (check its dependencies with ldd)"), "%s", e.msg);
    cr_assert(not(has(e.msg, path)), "path repeated: %s", e.msg);
    cr_assert(eq(int, plast_registry_nrules(r), 0));
    plast_registry_destroy(r);
}

Test(plugin, duplicate_rule_names_both_files)
{
    plast_err e;
    const char *file;
    char line[1024];
    plast_registry *r = registry(NULL, "", 0);
    cr_assert(eq(int, plast_registry_load_file(r, PLUG("dupa"), &e), 0), "%s", e.msg);
    cr_assert(eq(int, plast_registry_load_file(r, PLUG("dupb"), &e), PLAST_E_PLUGIN));
    cr_assert(eq(str, e.file, PLUG("dupb")));
    cr_assert(eq(str, e.msg, "rule 'dup' already provided by " PLUG("dupa")));
    cr_assert(eq(str, (char *)plast_err_format(&e, line, sizeof line),
                 PLUG("dupb") ": rule 'dup' already provided by " PLUG("dupa")));
    cr_assert(eq(int, plast_registry_nrules(r), 1));
    cr_assert(not(zero(ptr, (void *)plast_registry_rule(r, 0, &file, NULL))));
    cr_assert(eq(str, (char *)file, PLUG("dupa")));
    plast_registry_destroy(r);
}

Test(plugin, duplicate_plugin_names_both_files)
{
    plast_err e;
    char copy[4300];
    plast_registry *r = registry(NULL, "", 0);
    snprintf(copy, sizeof copy, "%s/goodrule.so", tmp);
    copy_file(PLUG("goodrule"), copy);
    cr_assert(eq(int, plast_registry_load_file(r, PLUG("goodrule"), &e), 0), "%s", e.msg);
    cr_assert(eq(int, plast_registry_load_file(r, copy, &e), PLAST_E_PLUGIN));
    cr_assert(eq(str, e.file, copy));
    cr_assert(eq(str, e.msg, "plug-in 'goodrule' already loaded from " PLUG("goodrule")));
    cr_assert(eq(int, plast_registry_nrules(r), 1));
    plast_registry_destroy(r);
}

/* ---- old plug-ins: the core reads appended members only via PLAST_HAS ---- */

Test(plugin, old_plugin_loads_without_appended_members)
{
    plast_err e;
    const plast_rule_ops *old, *good;
    plast_registry *r = registry(TEST_PLUGINDIR, "", 0);
    cr_assert(eq(int, plast_registry_find_rule(r, "oldrule", &old, NULL, &e), 0), "%s", e.msg);
    cr_assert(eq(u32, old->size, (uint32_t)offsetof(plast_rule_ops, save_state)));
    cr_assert(eq(int, PLAST_HAS(old, plast_rule_ops, save_state) != 0, 0));
    cr_assert(eq(int, PLAST_HAS(old, plast_rule_ops, load_state) != 0, 0));
    cr_assert(eq(int, plast_registry_find_rule(r, "goodrule", &good, NULL, &e), 0), "%s",
              e.msg);
    cr_assert(eq(int, PLAST_HAS(good, plast_rule_ops, save_state) != 0, 1));
    cr_assert(eq(int, PLAST_HAS(good, plast_rule_ops, load_state) != 0, 0));
    plast_registry_destroy(r);
}

/* ---- plast rules: everything in the path, bad files reported ---- */

typedef struct bad_list {
    int n;
    char file[16][256];
    int code[16];
} bad_list;

static void note_bad(void *user, const plast_err *e)
{
    bad_list *b = user;
    if (b->n < 16) {
        snprintf(b->file[b->n], sizeof b->file[0], "%s", e->file);
        b->code[b->n] = e->code;
    }
    b->n++;
}

static void expect_load_all(plast_registry *r)
{
    static const char *const refused[] = {
        PLUG("badabi"), PLUG("badmagic"), PLUG("badname"), PLUG("badreal"),
        PLUG("badschema"), PLUG("dupb"), PLUG("noentry"),
    };
    static const char *const rules[] = {"dup", "goodrule", "oldrule"};
    bad_list bad = {0};
    const char *file;
    cr_assert(eq(int, plast_registry_load_all(r, note_bad, &bad), 3));
    cr_assert(eq(int, bad.n, 7));
    for (int i = 0; i < 7; i++) {
        cr_assert(eq(str, bad.file[i], (char *)refused[i]));
        cr_assert(lt(int, bad.code[i], 0));
    }
    cr_assert(eq(int, plast_registry_nrules(r), 3));
    for (int i = 0; i < 3; i++)   /* registration order: files sorted by name */
        cr_assert(eq(str, (char *)plast_registry_rule(r, i, &file, NULL)->name,
                     (char *)rules[i]));
    cr_assert(eq(str, (char *)file, PLUG("oldrule")));
}

Test(plugin, load_all_counts_good_reports_bad)
{
    plast_registry *r = registry(TEST_PLUGINDIR, "", 0);
    expect_load_all(r);
    cr_assert(eq(int, plast_registry_load_all(r, NULL, NULL), 3));   /* again: no duplicates */
    plast_registry_destroy(r);
}

Test(plugin, load_all_visits_each_file_once)
{
    plast_registry *r = registry(TEST_PLUGINDIR ":" TEST_PLUGINDIR, TEST_PLUGINDIR, 1);
    expect_load_all(r);
    cr_assert(has(logbuf, "plast: skipping " PLUG("goodrule") ": same file as " PLUG("goodrule")
                          "\n"), "log:\n%s", logbuf);
    cr_assert(not(has(logbuf, "shadowed")), "log:\n%s", logbuf);
    plast_registry_destroy(r);
}

/* A directory reached twice, once through a symlink, and a file reached
 * twice through a hard link: each file is loaded once. */
Test(plugin, load_all_through_a_symlinked_directory_loads_once)
{
    char d1[4200], sym[4200], path[12800], line[8800], file[4300], hard[4300];
    bad_list bad = {0};
    plast_registry *r;
    subdir(d1, sizeof d1, "d1");
    snprintf(file, sizeof file, "%s/goodrule.so", d1);
    copy_file(PLUG("goodrule"), file);
    snprintf(sym, sizeof sym, "%s/d2", tmp);
    cr_assert(eq(int, symlink(d1, sym), 0));
    snprintf(path, sizeof path, "%s:%s:%s", d1, sym, d1);
    r = registry(path, "", 1);
    cr_assert(eq(int, plast_registry_load_all(r, note_bad, &bad), 1));
    cr_assert(eq(int, bad.n, 0), "refused %s", bad.file[0]);
    cr_assert(eq(int, plast_registry_nrules(r), 1));
    snprintf(line, sizeof line, "plast: skipping %s/goodrule.so: same file as %s\n", sym, file);
    cr_assert(has(logbuf, line), "log:\n%s", logbuf);
    cr_assert(eq(int, plast_registry_load_all(r, note_bad, &bad), 1)); /* again: still one */
    cr_assert(eq(int, plast_registry_nrules(r), 1));
    plast_registry_destroy(r);

    /* the same inode under another name in the same directory */
    snprintf(hard, sizeof hard, "%s/zz.so", d1);
    cr_assert(eq(int, link(file, hard), 0));
    logbuf[0] = '\0';
    r = registry(d1, "", 1);
    cr_assert(eq(int, plast_registry_load_all(r, note_bad, &bad), 1));
    cr_assert(eq(int, plast_registry_nrules(r), 1));
    snprintf(line, sizeof line, "plast: skipping %s: same file as %s\n", hard, file);
    cr_assert(has(logbuf, line), "log:\n%s", logbuf);
    plast_registry_destroy(r);
}

Test(plugin, load_all_skips_shadowed_files)
{
    char d1[4200], d2[4200], path[8500], line[8600];
    bad_list bad = {0};
    plast_registry *r;
    two_copies(d1, d2, sizeof d1);
    snprintf(path, sizeof path, "%s:%s", d1, d2);
    r = registry(path, "", 1);
    cr_assert(eq(int, plast_registry_load_all(r, note_bad, &bad), 1));
    cr_assert(eq(int, bad.n, 0), "refused %s", bad.file[0]);
    snprintf(line, sizeof line, "plast: %s/goodrule.so shadowed by %s/goodrule.so\n", d2, d1);
    cr_assert(has(logbuf, line), "log:\n%s", logbuf);
    plast_registry_destroy(r);
}

Test(plugin, load_all_after_find)
{
    plast_err e;
    const plast_rule_ops *ops;
    plast_registry *r = registry(TEST_PLUGINDIR, "", 0);
    cr_assert(eq(int, plast_registry_find_rule(r, "dup", &ops, NULL, &e), 0), "%s", e.msg);
    cr_assert(eq(int, plast_registry_nrules(r), 1));
    expect_load_all(r);
    plast_registry_destroy(r);
}

/* ---- plast_plugin_check on descriptors built here ---- */

static int t_create(plast_rule **out, plast_model *m, const plast_args *a, plast_err *e)
{
    (void)out, (void)m, (void)a, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static int t_train(plast_rule *r, plast_batch *b, plast_stats *st, plast_err *e)
{
    (void)r, (void)b, (void)st, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static void t_destroy(plast_rule *r)
{
    (void)r;
}

#define T_RULE(n) \
    {.size = sizeof(plast_rule_ops), .name = (n), .create = t_create, \
     .train_batch = t_train, .destroy = t_destroy}

static plast_plugin t_plugin(const plast_rule_ops *const *rules)
{
    plast_plugin p = {.magic = PLAST_PLUGIN_MAGIC, .abi = PLAST_ABI_VERSION,
                      .size = sizeof(plast_plugin), .real_size = sizeof(plast_real),
                      .name = "x", .rules = rules};
    return p;
}

static void expect_check(const plast_plugin *p, const char *base, int code, const char *msg)
{
    plast_err e;
    plast_err_clear(&e);
    cr_assert(eq(int, plast_plugin_check(p, "/p/x.so", base, &e), code), "%s", e.msg);
    if (code) {
        cr_assert(eq(str, e.file, "/p/x.so"));
        cr_assert(eq(str, e.msg, (char *)msg));
    }
}

Test(plugin_check, descriptor_head)
{
    static const plast_rule_ops ok = T_RULE("r");
    static const plast_rule_ops *const rules[] = {&ok, NULL};
    plast_plugin p = t_plugin(rules);
    expect_check(&p, "x", 0, NULL);
    expect_check(NULL, "x", PLAST_E_PLUGIN,
                 "not a plast plug-in (plast_plugin_entry returned NULL)");
    p.size = (uint32_t)offsetof(plast_plugin, losses);
    expect_check(&p, "x", PLAST_E_PLUGIN, "plug-in descriptor has size 64, expected at least 72");
    p = t_plugin(rules);
    p.name = NULL;
    expect_check(&p, "x", PLAST_E_PLUGIN, "plug-in has no name (expected 'x')");
    p.name = "Bad";
    expect_check(&p, "Bad", PLAST_E_PLUGIN,
                 "invalid plug-in name \"Bad\" " NAME_RULE_MSG);
    p = t_plugin(NULL);   /* nothing to provide is allowed */
    expect_check(&p, "x", 0, NULL);
}

Test(plugin_check, rule_tables)
{
    static const plast_rule_ops ok = T_RULE("r"), twin = T_RULE("r"), badname = T_RULE("R!");
    static const plast_rule_ops noname = T_RULE(NULL);
    static const plast_rule_ops small = {.size = 8, .name = "s"};
    static const plast_rule_ops notrain = {.size = sizeof(plast_rule_ops), .name = "n",
                                           .create = t_create, .destroy = t_destroy};
    static const plast_rule_ops *const t_small[] = {&ok, &small, NULL};
    static const plast_rule_ops *const t_notrain[] = {&notrain, NULL};
    static const plast_rule_ops *const t_badname[] = {&badname, NULL};
    static const plast_rule_ops *const t_noname[] = {&noname, NULL};
    static const plast_rule_ops *const t_twice[] = {&ok, &twin, NULL};
    plast_plugin p = t_plugin(t_small);
    expect_check(&p, "x", PLAST_E_PLUGIN, "rule table entry 1 has size 8, expected at least 56");
    p.rules = t_notrain;
    expect_check(&p, "x", PLAST_E_PLUGIN, "rule 'n': required callback train_batch is NULL");
    p.rules = t_badname;
    expect_check(&p, "x", PLAST_E_PLUGIN, "invalid rule name \"R!\" " NAME_RULE_MSG);
    p.rules = t_noname;
    expect_check(&p, "x", PLAST_E_PLUGIN, "rule table entry 0 has no name");
    p.rules = t_twice;
    expect_check(&p, "x", PLAST_E_PLUGIN, "rule 'r' listed twice");
}

static int t_forward(plast_layer *l, const plast_tensor *x, plast_tensor *y,
                     const plast_ctx *ctx, plast_err *e)
{
    (void)l, (void)x, (void)y, (void)ctx, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static int t_layer_create(plast_layer *l, const plast_args *a, plast_err *e)
{
    (void)l, (void)a, (void)e;
    return PLAST_E_UNSUPPORTED;
}

static int t_eval(const plast_tensor *pred, const int32_t *labels, double *loss,
                  plast_tensor *grad, plast_err *e)
{
    (void)pred, (void)labels, (void)loss, (void)grad, (void)e;
    return PLAST_E_UNSUPPORTED;
}

Test(plugin_check, layer_and_loss_tables)
{
    static const plast_setting bad_schema[] = {
        {.key = "width", .type = PLAST_S_INT, .def = "3.5", .min = 1, .max = 10},
        {.key = NULL},
    };
    static const plast_layer_ops nobackward = {.size = sizeof(plast_layer_ops), .name = "l",
                                               .create = t_layer_create,
                                               .forward = t_forward};
    static const plast_layer_ops old_layer = {.size = offsetof(plast_layer_ops, destroy),
                                              .name = "o"};
    static const plast_loss_ops noeval = {.size = sizeof(plast_loss_ops), .name = "m"};
    static const plast_loss_ops badloss = {.size = sizeof(plast_loss_ops), .name = "b",
                                           .settings = bad_schema,
                                           .eval = t_eval};
    static const plast_layer_ops *const t_nobackward[] = {&nobackward, NULL};
    static const plast_layer_ops *const t_old[] = {&old_layer, NULL};
    static const plast_loss_ops *const t_noeval[] = {&noeval, NULL};
    static const plast_loss_ops *const t_badloss[] = {&badloss, NULL};
    plast_err e;
    plast_plugin p = t_plugin(NULL);
    p.layers = t_nobackward;
    expect_check(&p, "x", PLAST_E_PLUGIN, "layer 'l': required callback backward is NULL");
    p.layers = t_old;   /* destroy is not an appended member: it must be covered */
    expect_check(&p, "x", PLAST_E_PLUGIN, "layer table entry 0 has size 64, expected at least 72");
    p.layers = NULL;
    p.losses = t_noeval;
    expect_check(&p, "x", PLAST_E_PLUGIN, "loss 'm': required callback eval is NULL");
    p.losses = t_badloss;
    cr_assert(eq(int, plast_plugin_check(&p, "/p/x.so", "x", &e), PLAST_E_PLUGIN));
    cr_assert(eq(str, e.file, "/p/x.so"));
    cr_assert(starts_with(e.msg, "loss 'b': schema key 'width': "), "%s", e.msg);
}
