/* test_config.c - INI reading (inih), --set overrides and typed schemas.
 *
 * Fixtures: the .ini files in TEST_DATADIR/ini.  Error messages are compared whole,
 * after plast_err_format(), with their line numbers. */
#include "config.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "plast/config.h"

#ifndef TEST_DATADIR
#error "TEST_DATADIR must name the tests/data directory"
#endif

#define INI_DIR TEST_DATADIR "/ini"
#define DATA(f) INI_DIR "/" f

/* ---- schemas ---- */

static const char *const act_choices[] = { "relu", "tanh", "sigmoid", NULL };
static const char *const kind_choices[] = { "sgd", "momentum", "nesterov", "adam", NULL };

static const plast_setting net_schema[] = {
    { "units", PLAST_S_INT, NULL, 1, 100000, NULL, PLAST_S_REQUIRED, "neurons" },
    { "rate", PLAST_S_REAL, "0.1", 0, 1, NULL, PLAST_S_MIN_OPEN, "dropout rate" },
    { "verbose", PLAST_S_BOOL, "false", 0, 0, NULL, 0, "talk" },
    { "name", PLAST_S_STRING, "run", 0, 0, NULL, 0, "run name" },
    { "act", PLAST_S_ENUM, "relu", 0, 0, act_choices, 0, "activation" },
    { "seed", PLAST_S_INT, "42", 1, 0, NULL, 0, "seed, unbounded" },
    { "scale", PLAST_S_REAL, "1.5", 1, 0, NULL, 0, "scale, unbounded" },
    { NULL, 0, NULL, 0, 0, NULL, 0, NULL }
};

static const plast_setting common_schema[] = {
    { "frozen", PLAST_S_BOOL, "false", 0, 0, NULL, 0, "no updates" },
    { NULL, 0, NULL, 0, 0, NULL, 0, NULL }
};

static const plast_setting opt_schema[] = {
    { "lr", PLAST_S_REAL, "0.01", 0, 10, NULL, PLAST_S_MIN_OPEN, "learning rate" },
    { "kind", PLAST_S_ENUM, "sgd", 0, 0, kind_choices, 0, "optimiser" },
    { NULL, 0, NULL, 0, 0, NULL, 0, NULL }
};

static const plast_setting layer_schema[] = {
    { "units", PLAST_S_INT, NULL, 1, 100000, NULL, PLAST_S_REQUIRED, "neurons" },
    { "flag", PLAST_S_BOOL, "true", 0, 0, NULL, 0, "a flag" },
    { NULL, 0, NULL, 0, 0, NULL, 0, NULL }
};

static const plast_setting rule_schema[] = {
    { "gain", PLAST_S_REAL, "1", 0, 100, NULL, 0, "feedback gain" },
    { NULL, 0, NULL, 0, 0, NULL, 0, NULL }
};

static const plast_setting data_schema[] = {
    { "path", PLAST_S_STRING, NULL, 0, 0, NULL, PLAST_S_REQUIRED, "file" },
    { NULL, 0, NULL, 0, 0, NULL, 0, NULL }
};

static const plast_setting open_schema[] = {
    { "p", PLAST_S_REAL, "0.5", 0, 1, NULL, PLAST_S_MAX_OPEN, "[0, 1)" },
    { "x", PLAST_S_REAL, "0", 1, 0, NULL, 0, "unbounded" },
    { "n", PLAST_S_INT, "0", 1, 0, NULL, 0, "unbounded" },
    { "b", PLAST_S_BOOL, "no", 0, 0, NULL, 0, "a bool" },
    { NULL, 0, NULL, 0, 0, NULL, 0, NULL }
};

static const char *const rule_skip[] = { "optimizer.", "run.", NULL };

/* ---- helpers ---- */

static void expect_err(const plast_err *e, int code, int line, const char *want)
{
    char buf[1024];
    cr_assert(eq(int, e->code, code));
    cr_assert(eq(int, e->line, line));
    cr_assert(eq(str, (char *)plast_err_format(e, buf, sizeof buf), (char *)want));
}

static plast_config *load(const char *path)
{
    plast_config *c = NULL;
    plast_err e = { 0 };
    char buf[1024];
    int rc = plast_config_load(&c, path, &e);
    cr_assert(eq(int, rc, PLAST_OK), "%s", plast_err_format(&e, buf, sizeof buf));
    cr_assert(ne(ptr, c, NULL));
    return c;
}

static plast_config *parse(const char *text)
{
    plast_config *c = NULL;
    plast_err e = { 0 };
    char buf[1024];
    int rc = plast_config_parse_string(&c, "mem.ini", text, &e);
    cr_assert(eq(int, rc, PLAST_OK), "%s", plast_err_format(&e, buf, sizeof buf));
    return c;
}

static plast_args *args_ok(const plast_config *c, const char *section,
                           const plast_setting *schema, const plast_setting *extra,
                           const char *const *skip)
{
    plast_args *a = NULL;
    plast_err e = { 0 };
    char buf[1024];
    int rc = plast_args_parse(&a, c, section, schema, extra, skip, &e);
    cr_assert(eq(int, rc, PLAST_OK), "%s", plast_err_format(&e, buf, sizeof buf));
    cr_assert(ne(ptr, a, NULL));
    return a;
}

/* Loading `path` fails with `code` at `line` and message "PATH:LINE: msg". */
static void expect_load_error(const char *path, int code, int line, const char *msg)
{
    plast_config *c = NULL;
    plast_err e = { 0 };
    char want[1024];
    snprintf(want, sizeof want, "%s:%d: %s", path, line, msg);
    cr_assert(eq(int, plast_config_load(&c, path, &e), code));
    cr_assert(eq(ptr, c, NULL));
    expect_err(&e, code, line, want);
}

static void expect_parse_error(const char *text, int line, const char *msg)
{
    plast_config *c = NULL;
    plast_err e = { 0 };
    char want[1024];
    snprintf(want, sizeof want, "mem.ini:%d: %s", line, msg);
    cr_assert(eq(int, plast_config_parse_string(&c, "mem.ini", text, &e), PLAST_E_PARSE));
    cr_assert(eq(ptr, c, NULL));
    expect_err(&e, PLAST_E_PARSE, line, want);
}

/* plast_args_parse of `section` fails at `line` with the formatted `want`. */
static void expect_args_failure(const plast_config *c, const char *section,
                                const plast_setting *schema, int line, const char *want)
{
    plast_args *a = NULL;
    plast_err e = { 0 };
    cr_assert(eq(int, plast_args_parse(&a, c, section, schema, NULL, NULL, &e), PLAST_E_PARSE));
    cr_assert(eq(ptr, a, NULL));
    expect_err(&e, PLAST_E_PARSE, line, want);
}

/* The same for a message about the file itself: "FILE:LINE: msg". */
static void expect_args_error(const plast_config *c, const char *section,
                              const plast_setting *schema, int line, const char *msg)
{
    char want[1024];
    if (line > 0)
        snprintf(want, sizeof want, "%s:%d: %s", plast_config_file(c), line, msg);
    else
        snprintf(want, sizeof want, "%s: %s", plast_config_file(c), msg);
    expect_args_failure(c, section, schema, line, want);
}

static void expect_bad_value(const char *section, const plast_setting *schema, int line,
                             const char *msg)
{
    plast_config *c = load(DATA("bad_values.ini"));
    expect_args_error(c, section, schema, line, msg);
    plast_config_destroy(c);
}

/* ---- the good file ---- */

Test(config_good, sections_in_file_order_with_lines)
{
    plast_config *c = load(DATA("good.ini"));
    static const char *const names[] = { "net", "empty", "rule.drtp", "data" };
    static const int lines[] = { 4, 11, 13, 18 };
    cr_assert(eq(int, plast_config_nsections(c), 4));
    for (int i = 0; i < 4; i++) {
        cr_assert(eq(str, (char *)plast_config_section_name(c, i), (char *)names[i]));
        cr_assert(eq(int, plast_config_section_line(c, i), lines[i]));
    }
    cr_assert(eq(int, plast_config_has_section(c, "empty"), 1));
    cr_assert(eq(int, plast_config_has_section(c, "layer.1"), 0));
    cr_assert(eq(int, plast_config_nkeys(c, "empty"), 0));
    cr_assert(eq(int, plast_config_nkeys(c, "absent"), 0));
    plast_config_destroy(c);
}

Test(config_good, raw_keys_values_and_lines)
{
    plast_config *c = load(DATA("good.ini"));
    static const char *const keys[] = { "units", "rate", "verbose", "name", "act" };
    static const char *const values[] = { "128", "0.05", "Yes", "mnist run", "tanh" };
    cr_assert(eq(int, plast_config_nkeys(c, "net"), 5));
    for (int i = 0; i < 5; i++) {
        const char *value = NULL;
        int line = -1;
        cr_assert(eq(str, (char *)plast_config_key(c, "net", i, &value, &line), (char *)keys[i]));
        cr_assert(eq(str, (char *)value, (char *)values[i]));
        cr_assert(eq(int, line, 5 + i));
    }
    int line = -1;
    /* inih: '#' is no inline comment, and indented keys are plain keys */
    cr_assert(eq(str, (char *)plast_config_get(c, "data", "path", &line),
                 "../data/train.idx # not a comment"));
    cr_assert(eq(int, line, 19));
    cr_assert(eq(str, (char *)plast_config_get(c, "rule.drtp", "optimizer.lr", NULL), "0.01"));
    cr_assert(eq(ptr, (void *)plast_config_get(c, "net", "absent", NULL), NULL));
    cr_assert(eq(ptr, (void *)plast_config_get(c, "absent", "units", NULL), NULL));
    plast_config_destroy(c);
}

Test(config_good, file_and_dir)
{
    plast_config *c = load(DATA("good.ini"));
    cr_assert(eq(str, (char *)plast_config_file(c), DATA("good.ini")));
    cr_assert(eq(str, (char *)plast_config_dir(c), INI_DIR));
    plast_config_destroy(c);
    c = parse("[a]\n");
    cr_assert(eq(str, (char *)plast_config_file(c), "mem.ini"));
    cr_assert(eq(str, (char *)plast_config_dir(c), "."));
    plast_config_destroy(c);
}

Test(config_good, every_type_parsed)
{
    plast_config *c = load(DATA("good.ini"));
    plast_args *a = args_ok(c, "net", net_schema, NULL, NULL);
    cr_assert(eq(i64, plast_args_int(a, "units"), 128));
    cr_assert(eq(dbl, plast_args_real(a, "rate"), 0.05));
    cr_assert(eq(int, plast_args_bool(a, "verbose"), 1));
    cr_assert(eq(str, (char *)plast_args_str(a, "name"), "mnist run"));
    cr_assert(eq(str, (char *)plast_args_str(a, "act"), "tanh"));
    cr_assert(eq(int, plast_args_enum(a, "act"), 1));
    cr_assert(eq(str, (char *)plast_args_section(a), "net"));
    cr_assert(eq(str, (char *)plast_args_file(a), DATA("good.ini")));
    plast_args_destroy(a);
    plast_config_destroy(c);
}

Test(config_good, defaults_given_and_lines)
{
    plast_config *c = load(DATA("good.ini"));
    plast_args *a = args_ok(c, "net", net_schema, NULL, NULL);
    cr_assert(eq(i64, plast_args_int(a, "seed"), 42));
    cr_assert(eq(dbl, plast_args_real(a, "scale"), 1.5));
    cr_assert(eq(int, plast_args_given(a, "units"), 1));
    cr_assert(eq(int, plast_args_given(a, "act"), 1));
    cr_assert(eq(int, plast_args_given(a, "seed"), 0));
    cr_assert(eq(int, plast_args_given(a, "scale"), 0));
    cr_assert(eq(int, plast_args_line(a, "units"), 5));
    cr_assert(eq(int, plast_args_line(a, "act"), 9));
    /* defaulted: the section header's line */
    cr_assert(eq(int, plast_args_line(a, "seed"), 4));
    plast_args_destroy(a);
    plast_config_destroy(c);
}

Test(config_good, empty_and_absent_sections_take_defaults)
{
    plast_config *c = load(DATA("good.ini"));
    plast_args *a = args_ok(c, "empty", opt_schema, NULL, NULL);
    cr_assert(eq(dbl, plast_args_real(a, "lr"), 0.01));
    cr_assert(eq(str, (char *)plast_args_str(a, "kind"), "sgd"));
    cr_assert(eq(int, plast_args_enum(a, "kind"), 0));
    cr_assert(eq(int, plast_args_given(a, "lr"), 0));
    cr_assert(eq(int, plast_args_line(a, "lr"), 11));
    plast_args_destroy(a);
    a = args_ok(c, "optimizer", opt_schema, NULL, NULL);
    cr_assert(eq(dbl, plast_args_real(a, "lr"), 0.01));
    cr_assert(eq(int, plast_args_line(a, "kind"), 0));
    cr_assert(eq(str, (char *)plast_args_section(a), "optimizer"));
    plast_args_destroy(a);
    plast_config_destroy(c);
}

Test(config_good, extra_keys_accepted_and_listed)
{
    plast_config *c = parse("[layer.1]\nunits = 4\nfrozen = on\n[layer.2]\nunits = 4\nx = 1\n");
    plast_args *a = args_ok(c, "layer.1", layer_schema, common_schema, NULL);
    cr_assert(eq(int, plast_args_bool(a, "frozen"), 1));
    cr_assert(eq(int, plast_args_line(a, "frozen"), 3));
    cr_assert(eq(int, plast_args_bool(a, "flag"), 1));
    plast_args_destroy(a);
    plast_err e = { 0 };
    cr_assert(eq(int, plast_args_parse(&a, c, "layer.2", layer_schema, common_schema, NULL, &e),
                 PLAST_E_PARSE));
    expect_err(&e, PLAST_E_PARSE, 6,
               "mem.ini:6: [layer.2] unknown key 'x' (layer.2 accepts: units, flag, frozen)");
    plast_config_destroy(c);
}

Test(config_good, skip_prefixes)
{
    plast_config *c = load(DATA("good.ini"));
    plast_args *a = args_ok(c, "rule.drtp", rule_schema, NULL, rule_skip);
    cr_assert(eq(dbl, plast_args_real(a, "gain"), 2.0));
    plast_args_destroy(a);
    /* without the prefixes the first foreign key is unknown */
    expect_args_error(c, "rule.drtp", rule_schema, 15,
                      "[rule.drtp] unknown key 'optimizer.lr' (rule.drtp accepts: gain)");
    /* a prefix skips only what starts with it */
    static const char *const opt_only[] = { "optimizer.", NULL };
    plast_err e = { 0 };
    cr_assert(eq(int, plast_args_parse(&a, c, "rule.drtp", rule_schema, NULL, opt_only, &e),
                 PLAST_E_PARSE));
    cr_assert(eq(int, e.line, 16));
    plast_config_destroy(c);
}

Test(config_good, bom_crlf_and_comments)
{
    plast_config *c = parse("\xEF\xBB\xBF[a]\r\n# comment\r\n; comment\r\nx = 1 ; c\r\ny=\r\n");
    cr_assert(eq(str, (char *)plast_config_section_name(c, 0), "a"));
    cr_assert(eq(str, (char *)plast_config_get(c, "a", "x", NULL), "1"));
    int line = 0;
    cr_assert(eq(str, (char *)plast_config_get(c, "a", "y", &line), ""));
    cr_assert(eq(int, line, 5));
    plast_config_destroy(c);
}

Test(config_good, line_of_199_characters_kept_whole)
{
    char text[512], want[256];
    memset(want, 'v', 195);
    want[195] = '\0';
    snprintf(text, sizeof text, "[a]\nk = %s\n[b]\n", want); /* line 2: 199 chars */
    plast_config *c = parse(text);
    cr_assert(eq(str, (char *)plast_config_get(c, "a", "k", NULL), want));
    cr_assert(eq(int, plast_config_section_line(c, 1), 3));
    plast_config_destroy(c);
}

Test(config_good, last_line_without_newline)
{
    plast_config *c = parse("[a]\nk = v");
    cr_assert(eq(str, (char *)plast_config_get(c, "a", "k", NULL), "v"));
    plast_config_destroy(c);
}

/* ---- syntax errors ---- */

Test(config_syntax, missing_file)
{
    plast_config *c = NULL;
    plast_err e = { 0 };
    char buf[1024];
    cr_assert(eq(int, plast_config_load(&c, DATA("no_such.ini"), &e), PLAST_E_NOENT));
    cr_assert(eq(ptr, c, NULL));
    cr_assert(eq(str, (char *)plast_err_format(&e, buf, sizeof buf),
                 "cannot open " DATA("no_such.ini") ": No such file or directory"));
}

Test(config_syntax, directory_is_an_io_error)
{
    plast_config *c = NULL;
    plast_err e = { 0 };
    cr_assert(eq(int, plast_config_load(&c, INI_DIR, &e), PLAST_E_IO));
    cr_assert(eq(ptr, c, NULL));
}

Test(config_syntax, repeated_key)
{
    expect_load_error(DATA("repeated_key.ini"), PLAST_E_PARSE, 4,
                      "[net] key 'units' repeated (first at line 2)");
}

Test(config_syntax, repeated_section)
{
    expect_load_error(DATA("repeated_section.ini"), PLAST_E_PARSE, 6,
                      "section [layer.1] repeated (first at line 1)");
}

Test(config_syntax, key_before_section)
{
    expect_load_error(DATA("key_before_section.ini"), PLAST_E_PARSE, 3,
                      "key 'units' before any [section] line");
}

Test(config_syntax, line_without_equals)
{
    expect_load_error(DATA("syntax.ini"), PLAST_E_PARSE, 3,
                      "expected 'key = value' or '[section]', found \"this line has no equals "
                      "sign\"");
}

Test(config_syntax, line_too_long)
{
    expect_load_error(DATA("long_line.ini"), PLAST_E_PARSE, 3,
                      "line longer than 199 characters");
}

Test(config_syntax, bad_section_name)
{
    expect_load_error(DATA("bad_section_name.ini"), PLAST_E_PARSE, 2,
                      "expected a section name made of a-z, 0-9, '_' and '.', found \"Layer 1\"");
}

Test(config_syntax, bad_key_name)
{
    expect_load_error(DATA("bad_key_name.ini"), PLAST_E_PARSE, 3,
                      "[net] expected a key name made of a-z, 0-9, '_' and '.', found "
                      "\"Learning-Rate\"");
}

Test(config_syntax, from_memory)
{
    expect_parse_error("[a]\nx = 1\nx = 2\n", 3, "[a] key 'x' repeated (first at line 2)");
    expect_parse_error("[a]\n\n[b]\n[a]\n", 4, "section [a] repeated (first at line 1)");
    expect_parse_error("x = 1\n[a]\n", 1, "key 'x' before any [section] line");
    expect_parse_error("[a\n", 1, "expected 'key = value' or '[section]', found \"[a\"");
    expect_parse_error("[a] junk\n", 1,
                       "expected 'key = value' or '[section]', found \"[a] junk\"");
    expect_parse_error("[]\n", 1,
                       "expected a section name made of a-z, 0-9, '_' and '.', found \"\"");
    expect_parse_error("[a]\n= 3\n", 2,
                       "[a] expected a key name made of a-z, 0-9, '_' and '.', found \"\"");
    /* inih would glue an indented line to the previous value */
    expect_parse_error("[a]\nx = 1\n   more\n", 3,
                       "expected 'key = value' or '[section]', found \"more\"");
    /* a ';' after a blank starts a comment, so the '=' is never seen */
    expect_parse_error("[a]\nk ;x = 1\n", 2,
                       "expected 'key = value' or '[section]', found \"k ;x = 1\"");
    expect_parse_error("[a]\nno equals at the end", 2,
                       "expected 'key = value' or '[section]', found \"no equals at the end\"");
}

Test(config_syntax, line_of_200_characters_refused)
{
    char text[512], value[256];
    memset(value, 'v', 196);
    value[196] = '\0';
    snprintf(text, sizeof text, "[a]\nk = %s\n", value); /* line 2: 200 chars */
    expect_parse_error(text, 2, "line longer than 199 characters");
}

Test(config_syntax, indented_line_of_200_characters_refused)
{
    char text[512], value[256];
    memset(value, 'v', 194);
    value[194] = '\0';
    snprintf(text, sizeof text, "[a]\n  k = %s\n", value); /* blanks count too */
    expect_parse_error(text, 2, "line longer than 199 characters");
}

Test(config_syntax, section_accepts_a_comment)
{
    plast_config *c = parse("[a] ; first\n[b.c_9]\n");
    cr_assert(eq(int, plast_config_nsections(c), 2));
    cr_assert(eq(str, (char *)plast_config_section_name(c, 1), "b.c_9"));
    plast_config_destroy(c);
}

/* ---- bad values (bad_values.ini, one section each) ---- */

Test(config_values, real_not_a_number)
{
    expect_bad_value("real_word", opt_schema, 3,
                     "[real_word] lr: expected a number in (0, 10], found \"fast\"");
}

Test(config_values, real_out_of_range)
{
    expect_bad_value("real_range", opt_schema, 5,
                     "[real_range] lr: expected a number in (0, 10], found \"20\"");
}

Test(config_values, real_open_minimum_excluded)
{
    expect_bad_value("real_min_open", opt_schema, 7,
                     "[real_min_open] lr: expected a number in (0, 10], found \"0\"");
}

Test(config_values, real_trailing_junk)
{
    expect_bad_value("real_junk", opt_schema, 9,
                     "[real_junk] lr: expected a number in (0, 10], found \"0.1x\"");
}

Test(config_values, real_empty)
{
    expect_bad_value("real_empty", opt_schema, 11,
                     "[real_empty] lr: expected a number in (0, 10], found \"\"");
}

Test(config_values, real_infinite)
{
    expect_bad_value("real_inf", opt_schema, 13,
                     "[real_inf] lr: expected a number in (0, 10], found \"inf\"");
}

Test(config_values, int_fraction)
{
    expect_bad_value("int_frac", layer_schema, 15,
                     "[int_frac] units: expected an integer in [1, 100000], found \"12.5\"");
}

Test(config_values, int_exponent)
{
    expect_bad_value("int_exp", layer_schema, 17,
                     "[int_exp] units: expected an integer in [1, 100000], found \"1e3\"");
}

Test(config_values, int_hex)
{
    expect_bad_value("int_hex", layer_schema, 19,
                     "[int_hex] units: expected an integer in [1, 100000], found \"0x10\"");
}

Test(config_values, int_out_of_range)
{
    expect_bad_value("int_range", layer_schema, 21,
                     "[int_range] units: expected an integer in [1, 100000], found \"0\"");
}

Test(config_values, int_overflow)
{
    expect_bad_value("int_huge", layer_schema, 23,
                     "[int_huge] units: expected an integer in [1, 100000], found "
                     "\"99999999999999999999\"");
}

Test(config_values, bool_word)
{
    expect_bad_value("bool_word", layer_schema, 25,
                     "[bool_word] flag: expected true or false, found \"maybe\"");
}

Test(config_values, enum_word)
{
    expect_bad_value("enum_word", opt_schema, 27,
                     "[enum_word] kind: expected one of sgd, momentum, nesterov, adam, found "
                     "\"rmsprop\"");
}

Test(config_values, unknown_key)
{
    expect_bad_value("optimizer", opt_schema, 30,
                     "[optimizer] unknown key 'momentum' (optimizer accepts: lr, kind)");
}

Test(config_values, missing_required_key)
{
    expect_bad_value("missing_units", layer_schema, 31,
                     "[missing_units] missing required key 'units'");
}

Test(config_values, missing_section_for_required_key)
{
    expect_bad_value("layer.9", layer_schema, 0,
                     "missing section [layer.9] (needed for key 'units')");
}

Test(config_values, unbounded_and_max_open_messages)
{
    plast_config *c = parse("[a]\nx = big\n[b]\nn = 1.0\n[c]\np = 1\n[d]\np = 0\nx = -1e300\n"
                            "n = -9223372036854775808\n");
    expect_args_error(c, "a", open_schema, 2, "[a] x: expected a number, found \"big\"");
    expect_args_error(c, "b", open_schema, 4, "[b] n: expected an integer, found \"1.0\"");
    expect_args_error(c, "c", open_schema, 6, "[c] p: expected a number in [0, 1), found \"1\"");
    plast_err e = { 0 };
    cr_assert(eq(int, plast_config_set(c, "e", "x", "inf", "--set", &e), PLAST_OK));
    expect_args_failure(c, "e", open_schema, 0,
                        "--set e.x: [e] x: expected a number, found \"inf\"");
    cr_assert(eq(int, plast_config_set(c, "e", "x", "nan", "--set", &e), PLAST_OK));
    expect_args_failure(c, "e", open_schema, 0,
                        "--set e.x: [e] x: expected a number, found \"nan\"");
    cr_assert(eq(int, plast_config_set(c, "e", "x", "1e999", "--set", &e), PLAST_OK));
    expect_args_failure(c, "e", open_schema, 0,
                        "--set e.x: [e] x: expected a number, found \"1e999\"");
    /* strtod's ERANGE: an underflow is refused too */
    cr_assert(eq(int, plast_config_set(c, "e", "x", "1e-400", "--set", &e), PLAST_OK));
    expect_args_failure(c, "e", open_schema, 0,
                        "--set e.x: [e] x: expected a number, found \"1e-400\"");
    plast_args *a = args_ok(c, "d", open_schema, NULL, NULL);
    cr_assert(eq(dbl, plast_args_real(a, "p"), 0.0));
    cr_assert(eq(dbl, plast_args_real(a, "x"), -1e300));
    cr_assert(eq(i64, plast_args_int(a, "n"), INT64_MIN));
    plast_args_destroy(a);
    plast_config_destroy(c);
}

Test(config_values, bool_spellings)
{
    static const char *const truths[] = { "true", "TRUE", "yes", "Yes", "on", "ON", "1" };
    static const char *const lies[] = { "false", "False", "no", "NO", "off", "Off", "0" };
    plast_config *c = parse("[a]\n");
    for (size_t i = 0; i < sizeof truths / sizeof *truths; i++) {
        plast_err e = { 0 };
        cr_assert(eq(int, plast_config_set(c, "a", "b", truths[i], "--set", &e), 0));
        plast_args *a = args_ok(c, "a", open_schema, NULL, NULL);
        cr_assert(eq(int, plast_args_bool(a, "b"), 1), "%s", truths[i]);
        plast_args_destroy(a);
        cr_assert(eq(int, plast_config_set(c, "a", "b", lies[i], "--set", &e), 0));
        a = args_ok(c, "a", open_schema, NULL, NULL);
        cr_assert(eq(int, plast_args_bool(a, "b"), 0), "%s", lies[i]);
        plast_args_destroy(a);
    }
    static const char *const bad[] = { "maybe", "2", "y", "t", "", "true ", "onn" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        plast_err e = { 0 };
        char want[256];
        cr_assert(eq(int, plast_config_set(c, "a", "b", bad[i], "--set", &e), 0));
        snprintf(want, sizeof want, "--set a.b: [a] b: expected true or false, found \"%s\"",
                 bad[i]);
        expect_args_failure(c, "a", open_schema, 0, want);
    }
    plast_config_destroy(c);
}

Test(config_values, integer_edges)
{
    static const struct {
        const char *text;
        int64_t value;
    } good[] = { { "+7", 7 }, { "-3", -3 }, { "007", 7 }, { "-0", 0 },
                 { "9223372036854775807", INT64_MAX } };
    static const char *const bad[] = { "1e3", "0x10", "12.5", " 5", "5 ", "", "+", "1_000",
                                       "9223372036854775808", "0b1", "5k" };
    plast_config *c = parse("[a]\n");
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        plast_err e = { 0 };
        cr_assert(eq(int, plast_config_set(c, "a", "n", good[i].text, "--set", &e), 0));
        plast_args *a = args_ok(c, "a", open_schema, NULL, NULL);
        cr_assert(eq(i64, plast_args_int(a, "n"), good[i].value), "%s", good[i].text);
        plast_args_destroy(a);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        plast_err e = { 0 };
        char want[256];
        cr_assert(eq(int, plast_config_set(c, "a", "n", bad[i], "--set", &e), 0));
        snprintf(want, sizeof want, "--set a.n: [a] n: expected an integer, found \"%s\"", bad[i]);
        expect_args_failure(c, "a", open_schema, 0, want);
    }
    plast_config_destroy(c);
}

Test(config_values, integer_range_edges_inclusive)
{
    plast_config *c = parse("[a]\nunits = 1\n[b]\nunits = 100000\n[c]\nunits = 100001\n");
    plast_args *a = args_ok(c, "a", layer_schema, NULL, NULL);
    cr_assert(eq(i64, plast_args_int(a, "units"), 1));
    plast_args_destroy(a);
    a = args_ok(c, "b", layer_schema, NULL, NULL);
    cr_assert(eq(i64, plast_args_int(a, "units"), 100000));
    plast_args_destroy(a);
    expect_args_error(c, "c", layer_schema, 6,
                      "[c] units: expected an integer in [1, 100000], found \"100001\"");
    plast_config_destroy(c);
}

Test(config_values, section_that_accepts_nothing)
{
    static const plast_setting none[] = { { NULL, 0, NULL, 0, 0, NULL, 0, NULL } };
    plast_config *c = parse("[a]\n\nk = 1\n");
    expect_args_error(c, "a", none, 3, "[a] unknown key 'k' (a accepts no keys)");
    /* a NULL schema is an empty one */
    expect_args_error(c, "a", NULL, 3, "[a] unknown key 'k' (a accepts no keys)");
    cr_assert(eq(int, plast_schema_check(NULL, "t", NULL), PLAST_OK));
    plast_config_destroy(c);
}

Test(config_values, first_bad_key_in_file_order)
{
    plast_config *c = parse("[o]\nkind = x\nlr = y\n");
    expect_args_error(c, "o", opt_schema, 2,
                      "[o] kind: expected one of sgd, momentum, nesterov, adam, found \"x\"");
    plast_config_destroy(c);
}

/* ---- command-line overrides ---- */

Test(config_set, replaces_a_value)
{
    plast_config *c = load(DATA("good.ini"));
    plast_err e = { 0 };
    cr_assert(eq(int, plast_config_set(c, "net", "units", "256", "--set", &e), PLAST_OK));
    int line = -1;
    cr_assert(eq(str, (char *)plast_config_get(c, "net", "units", &line), "256"));
    cr_assert(eq(int, line, 0));
    cr_assert(eq(int, plast_config_nkeys(c, "net"), 5));
    plast_args *a = args_ok(c, "net", net_schema, NULL, NULL);
    cr_assert(eq(i64, plast_args_int(a, "units"), 256));
    cr_assert(eq(int, plast_args_given(a, "units"), 1));
    cr_assert(eq(int, plast_args_line(a, "units"), 0));
    plast_args_destroy(a);
    plast_config_destroy(c);
}

Test(config_set, adds_a_key_and_a_section)
{
    plast_config *c = load(DATA("good.ini"));
    plast_err e = { 0 };
    cr_assert(eq(int, plast_config_set(c, "net", "seed", "7", "--set", &e), PLAST_OK));
    cr_assert(eq(int, plast_config_set(c, "layer.9", "units", "5", "--set", &e), PLAST_OK));
    cr_assert(eq(int, plast_config_nkeys(c, "net"), 6));
    cr_assert(eq(int, plast_config_nsections(c), 5));
    cr_assert(eq(str, (char *)plast_config_section_name(c, 4), "layer.9"));
    cr_assert(eq(int, plast_config_section_line(c, 4), 0));
    plast_args *a = args_ok(c, "layer.9", layer_schema, NULL, NULL);
    cr_assert(eq(i64, plast_args_int(a, "units"), 5));
    cr_assert(eq(int, plast_args_line(a, "flag"), 0));
    plast_args_destroy(a);
    a = args_ok(c, "net", net_schema, NULL, NULL);
    cr_assert(eq(i64, plast_args_int(a, "seed"), 7));
    plast_args_destroy(a);
    plast_config_destroy(c);
}

Test(config_set, errors_name_the_override)
{
    plast_config *c = load(DATA("good.ini"));
    plast_err e = { 0 };
    cr_assert(eq(int, plast_config_set(c, "net", "rate", "fast", "--set", &e), PLAST_OK));
    plast_args *a = NULL;
    cr_assert(eq(int, plast_args_parse(&a, c, "net", net_schema, NULL, NULL, &e), PLAST_E_PARSE));
    expect_err(&e, PLAST_E_PARSE, 0,
               "--set net.rate: [net] rate: expected a number in (0, 1], found \"fast\"");
    cr_assert(eq(str, e.file, "--set net.rate"));
    cr_assert(eq(int, plast_config_set(c, "net", "rate", "0.5", "--set", &e), PLAST_OK));
    cr_assert(eq(int, plast_config_set(c, "net", "momentum", "1", "--set", &e), PLAST_OK));
    cr_assert(eq(int, plast_args_parse(&a, c, "net", net_schema, NULL, NULL, &e), PLAST_E_PARSE));
    expect_err(&e, PLAST_E_PARSE, 0,
               "--set net.momentum: [net] unknown key 'momentum' (net accepts: units, rate, "
               "verbose, name, act, seed, scale)");
    cr_assert(eq(int, plast_config_set(c, "layer.5", "flag", "on", "--set", &e), PLAST_OK));
    cr_assert(eq(int, plast_args_parse(&a, c, "layer.5", layer_schema, NULL, NULL, &e),
                 PLAST_E_PARSE));
    expect_err(&e, PLAST_E_PARSE, 0, "--set layer.5.flag: [layer.5] missing required key 'units'");
    plast_config_destroy(c);
}

Test(config_set, refuses_bad_names)
{
    plast_config *c = parse("[a]\n");
    plast_err e = { 0 };
    cr_assert(eq(int, plast_config_set(c, "A", "k", "1", "--set", &e), PLAST_E_PARSE));
    expect_err(&e, PLAST_E_PARSE, 0,
               "--set A.k: expected a section name made of a-z, 0-9, '_' and '.', found \"A\"");
    cr_assert(eq(int, plast_config_set(c, "a", "k k", "1", "--set", &e), PLAST_E_PARSE));
    expect_err(&e, PLAST_E_PARSE, 0,
               "--set a.k k: [a] expected a key name made of a-z, 0-9, '_' and '.', found "
               "\"k k\"");
    cr_assert(eq(int, plast_config_nkeys(c, "a"), 0));
    cr_assert(eq(int, plast_config_nsections(c), 1));
    plast_config_destroy(c);
}

/* ---- defaults only and getters ---- */

Test(config_args, defaults_only)
{
    plast_args *a = NULL;
    plast_err e = { 0 };
    cr_assert(eq(int, plast_args_defaults(&a, net_schema, &e), PLAST_OK));
    cr_assert(eq(dbl, plast_args_real(a, "rate"), 0.1));
    cr_assert(eq(int, plast_args_bool(a, "verbose"), 0));
    cr_assert(eq(str, (char *)plast_args_str(a, "name"), "run"));
    cr_assert(eq(int, plast_args_enum(a, "act"), 0));
    cr_assert(eq(int, plast_args_given(a, "rate"), 0));
    cr_assert(eq(int, plast_args_given(a, "units"), 0));
    cr_assert(eq(int, plast_args_line(a, "rate"), 0));
    cr_assert(eq(str, (char *)plast_args_section(a), ""));
    cr_assert(eq(str, (char *)plast_args_file(a), ""));
    plast_args_destroy(a);
}

Test(config_args, required_key_without_value_asserts, .signal = SIGABRT)
{
    plast_args *a = NULL;
    cr_assert(eq(int, plast_args_defaults(&a, net_schema, NULL), PLAST_OK));
    plast_args_int(a, "units");
}

Test(config_args, undeclared_key_asserts, .signal = SIGABRT)
{
    plast_args *a = NULL;
    cr_assert(eq(int, plast_args_defaults(&a, opt_schema, NULL), PLAST_OK));
    plast_args_real(a, "momentum");
}

Test(config_args, wrong_type_asserts, .signal = SIGABRT)
{
    plast_args *a = NULL;
    cr_assert(eq(int, plast_args_defaults(&a, opt_schema, NULL), PLAST_OK));
    plast_args_int(a, "lr");
}

Test(config_args, enum_index_of_a_string_asserts, .signal = SIGABRT)
{
    plast_args *a = NULL;
    cr_assert(eq(int, plast_args_defaults(&a, net_schema, NULL), PLAST_OK));
    plast_args_enum(a, "name");
}

Test(config_args, destroy_null)
{
    plast_args_destroy(NULL);
    plast_config_destroy(NULL);
}

/* ---- schema checks ---- */

static void expect_schema_error(const plast_setting *schema, const char *msg)
{
    plast_err e = { 0 };
    char want[512];
    snprintf(want, sizeof want, "myrule: %s", msg);
    cr_assert(eq(int, plast_schema_check(schema, "myrule", &e), PLAST_E_INVAL));
    expect_err(&e, PLAST_E_INVAL, 0, want);
}

#define END { NULL, 0, NULL, 0, 0, NULL, 0, NULL }

Test(config_schema, good_schemas_pass)
{
    const plast_setting *all[] = { net_schema, common_schema, opt_schema, layer_schema,
                                   rule_schema, data_schema, open_schema };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        plast_err e = { 0 };
        cr_assert(eq(int, plast_schema_check(all[i], "t", &e), PLAST_OK), "%s", e.msg);
    }
    static const plast_setting empty[] = { END };
    cr_assert(eq(int, plast_schema_check(empty, "t", NULL), PLAST_OK));
}

Test(config_schema, default_not_a_number)
{
    static const plast_setting s[] = { { "x", PLAST_S_REAL, "abc", 0, 1, NULL, 0, "" }, END };
    expect_schema_error(s, "schema key 'x': default \"abc\" is not a number");
}

Test(config_schema, default_out_of_range)
{
    static const plast_setting s[] = {
        { "lr", PLAST_S_REAL, "20", 0, 10, NULL, PLAST_S_MIN_OPEN, "" }, END
    };
    expect_schema_error(s, "schema key 'lr': default \"20\" is outside (0, 10]");
}

Test(config_schema, default_on_open_bound)
{
    static const plast_setting s[] = {
        { "p", PLAST_S_REAL, "1", 0, 1, NULL, PLAST_S_MAX_OPEN, "" }, END
    };
    expect_schema_error(s, "schema key 'p': default \"1\" is outside [0, 1)");
}

Test(config_schema, default_not_an_integer)
{
    static const plast_setting s[] = { { "n", PLAST_S_INT, "1.5", 0, 9, NULL, 0, "" }, END };
    expect_schema_error(s, "schema key 'n': default \"1.5\" is not an integer");
}

Test(config_schema, default_not_a_bool)
{
    static const plast_setting s[] = { { "b", PLAST_S_BOOL, "maybe", 0, 0, NULL, 0, "" }, END };
    expect_schema_error(s, "schema key 'b': default \"maybe\" is not true or false");
}

Test(config_schema, default_not_a_choice)
{
    static const char *const ab[] = { "a", "b", NULL };
    static const plast_setting s[] = { { "k", PLAST_S_ENUM, "c", 0, 0, ab, 0, "" }, END };
    expect_schema_error(s, "schema key 'k': default \"c\" is not one of a, b");
}

Test(config_schema, repeated_key)
{
    static const plast_setting s[] = { { "x", PLAST_S_STRING, "", 0, 0, NULL, 0, "" },
                                       { "x", PLAST_S_STRING, "", 0, 0, NULL, 0, "" }, END };
    expect_schema_error(s, "schema key 'x': declared twice");
}

Test(config_schema, bad_key_names)
{
    static const plast_setting upper[] = { { "Lr", PLAST_S_STRING, "", 0, 0, NULL, 0, "" }, END };
    static const plast_setting dot[] = { { "a.b", PLAST_S_STRING, "", 0, 0, NULL, 0, "" }, END };
    static const plast_setting empty[] = { { "", PLAST_S_STRING, "", 0, 0, NULL, 0, "" }, END };
    expect_schema_error(upper, "schema key 'Lr': name must be made of a-z, 0-9 and '_'");
    expect_schema_error(dot, "schema key 'a.b': name must be made of a-z, 0-9 and '_'");
    expect_schema_error(empty, "schema key '': name must be made of a-z, 0-9 and '_'");
}

Test(config_schema, bad_type)
{
    static const plast_setting s[] = { { "x", (plast_stype)9, "1", 0, 0, NULL, 0, "" }, END };
    expect_schema_error(s, "schema key 'x': unknown type 9");
}

Test(config_schema, enum_without_choices)
{
    static const char *const none[] = { NULL };
    static const plast_setting s1[] = { { "k", PLAST_S_ENUM, "a", 0, 0, NULL, 0, "" }, END };
    static const plast_setting s2[] = { { "k", PLAST_S_ENUM, "a", 0, 0, none, 0, "" }, END };
    expect_schema_error(s1, "schema key 'k': enum without choices");
    expect_schema_error(s2, "schema key 'k': enum without choices");
}

Test(config_schema, required_with_default)
{
    static const plast_setting s[] = {
        { "n", PLAST_S_INT, "3", 0, 9, NULL, PLAST_S_REQUIRED, "" }, END
    };
    expect_schema_error(s, "schema key 'n': required key has a default \"3\"");
}

Test(config_schema, optional_without_default)
{
    static const plast_setting s[] = { { "n", PLAST_S_INT, NULL, 0, 9, NULL, 0, "" }, END };
    expect_schema_error(s, "schema key 'n': no default and not required");
}

Test(config_schema, bounds_not_numbers)
{
    static const plast_setting s[] = { { "x", PLAST_S_REAL, "0", NAN, 1, NULL, 0, "" }, END };
    expect_schema_error(s, "schema key 'x': min or max is not a number");
}

Test(config_schema, unknown_flags)
{
    static const plast_setting s[] = { { "x", PLAST_S_REAL, "0", 0, 1, NULL, 8, "" }, END };
    expect_schema_error(s, "schema key 'x': unknown flags 0x8");
}

Test(config_schema, choice_listed_twice)
{
    static const char *const aa[] = { "a", "b", "a", NULL };
    static const plast_setting s[] = { { "k", PLAST_S_ENUM, "a", 0, 0, aa, 0, "" }, END };
    expect_schema_error(s, "schema key 'k': choice 'a' listed twice");
}

Test(config_schema, args_parse_refuses_a_bad_schema)
{
    static const plast_setting dup[] = { { "frozen", PLAST_S_BOOL, "no", 0, 0, NULL, 0, "" }, END };
    static const plast_setting bad_def[] = { { "x", PLAST_S_REAL, "y", 0, 1, NULL, 0, "" }, END };
    plast_config *c = parse("[a]\n");
    plast_args *a = NULL;
    plast_err e = { 0 };
    cr_assert(eq(int, plast_args_parse(&a, c, "a", dup, common_schema, NULL, &e), PLAST_E_INVAL));
    cr_assert(eq(ptr, a, NULL));
    expect_err(&e, PLAST_E_INVAL, 0, "a: schema key 'frozen': declared twice");
    cr_assert(eq(int, plast_args_defaults(&a, bad_def, &e), PLAST_E_INVAL));
    cr_assert(eq(ptr, a, NULL));
    expect_err(&e, PLAST_E_INVAL, 0, "schema: schema key 'x': default \"y\" is not a number");
    plast_config_destroy(c);
}

/* "SECTION.KEY=VALUE" as plast train --set takes it: the key is after the
 * first dot, or after the second for [layer.NAME] and [rule.NAME]. */
Test(config_set_spec, sections_and_keys)
{
    plast_config *c;
    plast_err e;
    cr_assert(eq(int, plast_config_parse_string(&c, "t.ini", "[run]\nseed = 1\n", &e), 0));
    cr_assert(eq(int, plast_config_set_spec(c, "run.seed=7", "--set", &e), 0));
    cr_assert(eq(str, (char *)plast_config_get(c, "run", "seed", NULL), "7"));
    cr_assert(eq(int, plast_config_set_spec(c, "layer.h1.units=32", "--set", &e), 0));
    cr_assert(eq(str, (char *)plast_config_get(c, "layer.h1", "units", NULL), "32"));
    cr_assert(eq(int, plast_config_set_spec(c, "rule.drtp.optimizer.lr=0.5", "--set", &e), 0));
    cr_assert(eq(str, (char *)plast_config_get(c, "rule.drtp", "optimizer.lr", NULL), "0.5"));
    cr_assert(eq(int, plast_config_set_spec(c, "data.test_images=", "--set", &e), 0));
    cr_assert(eq(str, (char *)plast_config_get(c, "data", "test_images", NULL), ""));
    const char *bad[] = {"seed=1", "run=1", ".seed=1", "run.=1", "run.seed"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert(eq(int, plast_config_set_spec(c, bad[i], "--set", &e), PLAST_E_PARSE), "%s",
                  bad[i]);
        char want[128];
        snprintf(want, sizeof want, "--set: expected SECTION.KEY=VALUE, found \"%s\"", bad[i]);
        cr_assert(eq(str, e.msg, want));
    }
    plast_config_destroy(c);
}
