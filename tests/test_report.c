/* test_report.c - what `plast compare` builds from logs: the JSON reader,
 * run logs and their status, statistics, the aggregated rows, the tables,
 * the SVG figures and the configuration fingerprint. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "report.h"
#include "svg.h"

/* ---- helpers ---- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s", "/tmp/plast-report.XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL);
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert(eq(int, system(cmd), 0));
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    cr_assert(eq(int, fputs(text, f) >= 0, 1));
    cr_assert(eq(int, fclose(f), 0));
}

/* Everything a writer prints, as one malloc'd string. */
typedef void (*printer)(FILE *f, const void *ctx);

static char *capture(printer p, const void *ctx)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    cr_assert(f != NULL);
    p(f, ctx);
    cr_assert(eq(int, fclose(f), 0));
    return buf;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* An entity at p ("&amp;" ...): its length, 0 if not one of XML's five. */
static size_t entity_len(const char *p)
{
    static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (int i = 0; i < 5; i++)
        if (!strncmp(p, ents[i], strlen(ents[i])))
            return strlen(ents[i]);
    return 0;
}

/* Attributes up to '>' or '/>'; returns the end of the tag or NULL. */
static const char *xml_attrs(const char *q, int *self_closing)
{
    for (;;) {
        q += strspn(q, " \t\r\n");
        if (q[0] == '/' && q[1] == '>') {
            *self_closing = 1;
            return q + 2;
        }
        if (q[0] == '>')
            return q + 1;
        size_t n = strspn(q, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_");
        if (!n || q[n] != '=' || q[n + 1] != '"')
            return NULL;
        for (q += n + 2; *q != '"'; q++) {
            if (!*q || *q == '<')
                return NULL;
            if (*q == '&' && !entity_len(q))
                return NULL;
        }
        q++;
    }
}

/* Enough of XML 1.0 for the charts: one root, tags nest and match,
 * attribute values quoted, '<' and '&' in text only as markup/entities. */
static int well_formed(const char *s)
{
    const char *name[64], *p = s;
    size_t len[64];
    int depth = 0, roots = 0;
    if (!strncmp(p, "<?xml", 5)) {
        if (!(p = strstr(p, "?>")))
            return 0;
        p += 2;
    }
    while (*p) {
        if (*p == '&') {
            size_t n = entity_len(p);
            if (!n)
                return 0;
            p += n;
        } else if (*p != '<') {
            if (depth == 0 && !strchr(" \t\r\n", *p))
                return 0; /* text outside the root */
            p++;
        } else if (p[1] == '/') {
            size_t n = strcspn(p + 2, ">");
            if (!depth || n != len[depth - 1] || strncmp(p + 2, name[depth - 1], n) ||
                !p[2 + n])
                return 0;
            depth--;
            p += n + 3;
        } else {
            size_t n = strcspn(p + 1, " \t\r\n/>");
            int self = 0;
            if (!n || depth == 64 || (depth == 0 && roots++))
                return 0;
            name[depth] = p + 1;
            len[depth] = n;
            if (!(p = xml_attrs(p + 1 + n, &self)))
                return 0;
            depth += !self;
        }
    }
    return depth == 0 && roots == 1;
}

Test(xml, the_checker_rejects_malformed_text)
{
    cr_assert(eq(int, well_formed("<?xml version=\"1.0\"?>\n<a x=\"1\"><b/>t&amp;u</a>\n"), 1));
    cr_assert(eq(int, well_formed("<a><b></a></b>"), 0));
    cr_assert(eq(int, well_formed("<a x=1/>"), 0));
    cr_assert(eq(int, well_formed("<a>&</a>"), 0));
    cr_assert(eq(int, well_formed("<a>1 < 2</a>"), 0));
    cr_assert(eq(int, well_formed("<a/><b/>"), 0));
    cr_assert(eq(int, well_formed("<a>"), 0));
}

/* ---- JSON records ---- */

Test(json, flattens_nested_members)
{
    json_rec r;
    char why[128];
    const char *line = "{\"type\":\"epoch\",\"epoch\":3,\"test_acc\":0.875,\"val_acc\":null,"
                       "\"ok\":true,\"mem_peak_bytes\":{\"weights\":832,\"activations+input\":5248},"
                       "\"tags\":[1,{\"x\":2},\"y\"],\"tail\":-1.5e-3}\n";
    cr_assert(eq(int, json_rec_parse(&r, line, why, sizeof why), 0));
    cr_assert(eq(str, (char *)json_rec_str(&r, "type"), "epoch"));
    cr_assert(eq(dbl, json_rec_num(&r, "epoch"), 3));
    cr_assert(eq(dbl, json_rec_num(&r, "test_acc"), 0.875));
    cr_assert(eq(dbl, json_rec_num(&r, "mem_peak_bytes.weights"), 832));
    cr_assert(eq(dbl, json_rec_num(&r, "mem_peak_bytes.activations+input"), 5248));
    cr_assert(eq(dbl, json_rec_num(&r, "tail"), -1.5e-3));
    cr_assert(isnan(json_rec_num(&r, "val_acc")) != 0);   /* null */
    cr_assert(isnan(json_rec_num(&r, "type")) != 0);      /* not a number */
    cr_assert(isnan(json_rec_num(&r, "missing")) != 0);
    cr_assert(eq(int, json_rec_find(&r, "val_acc")->kind, JV_NULL));
    cr_assert(eq(int, json_rec_find(&r, "ok")->kind, JV_BOOL));
    cr_assert(json_rec_find(&r, "x") == NULL); /* members of arrays are not kept */
    cr_assert(json_rec_str(&r, "epoch") == NULL);
}

Test(json, unescapes_strings)
{
    json_rec r;
    char why[128];
    const char *line = "{\"s\":\"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\"}";
    cr_assert(eq(int, json_rec_parse(&r, line, why, sizeof why), 0));
    cr_assert(eq(str, (char *)json_rec_str(&r, "s"), "a\"b\\c/d\n\xc3\xa9\xf0\x9f\x98\x80"));
}

Test(json, rejects_what_is_not_json)
{
    static const char *const bad[] = {
        "", "[1]", "{\"a\":1", "{\"a\" 1}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":+1}",
        "{\"a\":NaN}", "{\"a\":.5}", "{\"a\":1} x", "{\"a\":\"open}", "{\"a\":\"\\x\"}",
        "{\"a\":\"\\ud800\"}", "{\"a\":tru}", "{a:1}", "{\"a\":1e999}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_rec r;
        char why[128] = "";
        cr_assert(eq(int, json_rec_parse(&r, bad[i], why, sizeof why), -1), "accepted '%s'",
                  bad[i]);
        cr_assert(strstr(why, "at column") != NULL, "reason '%s' has no column", why);
    }
}

Test(json, reports_the_column)
{
    json_rec r;
    char why[128];
    cr_assert(eq(int, json_rec_parse(&r, "{\"a\" 1}", why, sizeof why), -1));
    cr_assert(eq(str, why, "expected ':' at column 6"));
}

/* ---- statistics ---- */

Test(stat, mean_std_median)
{
    double v[] = {4, 1, 3, 2};
    cr_assert(eq(dbl, stat_mean(v, 4), 2.5));
    cr_assert(ieee_ulp_eq(dbl, stat_sample_std(v, 4), sqrt(5.0 / 3.0), 4));
    cr_assert(eq(dbl, stat_median(v, 4), 2.5));
    double odd[] = {9, 1, 5};
    cr_assert(eq(dbl, stat_median(odd, 3), 5));
}

Test(stat, skips_non_finite_values)
{
    double v[] = {NAN, 2, INFINITY, 4};
    cr_assert(eq(dbl, stat_mean(v, 4), 3));
    cr_assert(ieee_ulp_eq(dbl, stat_sample_std(v, 4), sqrt(2.0), 4));
    cr_assert(eq(dbl, stat_median(v, 4), 3));
    double one[] = {0.7};
    cr_assert(eq(dbl, stat_sample_std(one, 1), 0)); /* one seed: +-0 */
    double none[] = {NAN};
    cr_assert(isnan(stat_mean(none, 1)) != 0);
    cr_assert(isnan(stat_sample_std(none, 1)) != 0);
    cr_assert(isnan(stat_median(none, 1)) != 0);
}

/* ---- run logs ---- */

#define META(rule, seed, epochs)                                                             \
    "{\"type\":\"meta\",\"rule\":\"" rule "\",\"seed\":" #seed ",\"epochs\":" #epochs        \
    ",\"params\":208,\"params_primary\":195,\"params_aux\":0,"                               \
    "\"forward_passes_per_update\":1,\"config_hash\":\"00000000000000ab\"}\n"
#define EPOCH(k, s, acc, act)                                                                \
    "{\"type\":\"epoch\",\"epoch\":" #k ",\"train_s\":" #s ",\"samples_per_s\":" #k "000"    \
    ",\"train_loss\":0.5,\"test_acc\":" #acc ",\"mem_peak_bytes\":{\"weights\":1048576,"    \
    "\"gradients\":0,\"optimizer\":0,\"activations\":" #act ",\"input\":0,\"rule\":0,"       \
    "\"scratch\":0,\"dataset\":999999999,\"total\":1}}\n"
#define SUMMARY(status, n) "{\"type\":\"summary\",\"status\":\"" status "\",\"epochs_run\":" #n "}\n"

static void read_log(run_log *lg, const char *name, const char *text)
{
    char path[128];
    plast_err e;
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    write_text(path, text);
    cr_assert(eq(int, run_log_read(lg, path, &e), 0), "%s", e.msg);
}

TestSuite(runlog, .init = make_tmpdir, .fini = remove_tmpdir);

Test(runlog, complete_run)
{
    run_log lg;
    read_log(&lg, "a.jsonl",
             META("bp", 3, 2) EPOCH(1, 0.5, 0.8, 100) EPOCH(2, 0.7, 0.9, 300) SUMMARY("ok", 2));
    cr_assert(eq(int, run_log_status(&lg), RUN_OK));
    cr_assert(eq(str, lg.rule, "bp"));
    cr_assert(eq(str, lg.config_hash, "00000000000000ab"));
    cr_assert(eq(dbl, lg.seed, 3));
    cr_assert(eq(int, lg.epochs, 2));
    cr_assert(eq(int, lg.nepochs, 2));
    cr_assert(eq(dbl, lg.params, 195)); /* the exact count, not the flat array's */
    cr_assert(eq(dbl, lg.test_acc[1], 0.9));
    cr_assert(eq(dbl, lg.train_s[0], 0.5));
    cr_assert(eq(dbl, lg.peak[0], 1048576));
    cr_assert(eq(dbl, lg.peak[3], 300)); /* activations: largest epoch */
    run_log_free(&lg);
}

Test(runlog, incomplete_runs)
{
    static const char *const texts[] = {
        META("bp", 0, 2) EPOCH(1, 0.5, 0.8, 1) EPOCH(2, 0.5, 0.8, 1),      /* no summary */
        META("bp", 0, 2) EPOCH(1, 0.5, 0.8, 1) SUMMARY("ok", 1),            /* too few epochs */
        META("bp", 0, 2) EPOCH(1, 0.5, 0.8, 1) EPOCH(2, 0.5, 0.8, 1) SUMMARY("canceled", 2),
        META("bp", 0, 2) EPOCH(1, 0.5, 0.8, 1) SUMMARY("ok", 2) EPOCH(2, 0.5, 0.8, 1),
        EPOCH(1, 0.5, 0.8, 1) EPOCH(2, 0.5, 0.8, 1) SUMMARY("ok", 2),      /* no meta */
        META("bp", 0, 2) EPOCH(2, 0.5, 0.8, 1) EPOCH(2, 0.5, 0.8, 1) SUMMARY("ok", 2),
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        run_log lg;
        read_log(&lg, "b.jsonl", texts[i]);
        cr_assert(eq(int, run_log_status(&lg), RUN_INCOMPLETE), "log %zu taken as final", i);
        run_log_free(&lg);
    }
}

Test(runlog, diverged_run)
{
    run_log lg;
    read_log(&lg, "d.jsonl", META("drtp", 0, 2) SUMMARY("training diverged", 0));
    cr_assert(eq(int, run_log_status(&lg), RUN_DIVERGED));
    cr_assert(eq(int, lg.nepochs, 0));
    cr_assert(isnan(lg.peak[0]) != 0); /* nothing was measured */
    run_log_free(&lg);
}

Test(runlog, errors_name_file_and_line)
{
    run_log lg;
    plast_err e;
    char path[128];
    snprintf(path, sizeof path, "%s/none.jsonl", tmpdir);
    cr_assert(eq(int, run_log_read(&lg, path, &e), PLAST_E_NOENT));
    snprintf(path, sizeof path, "%s/bad.jsonl", tmpdir);
    write_text(path, META("bp", 0, 1) "{\"type\":\"epoch\",\"epoch\":1,\"test_acc\":0.\n");
    cr_assert(eq(int, run_log_read(&lg, path, &e), PLAST_E_PARSE));
    cr_assert(eq(int, e.line, 2));
    cr_assert(eq(str, e.file, path));
    write_text(path, META("bp", 0, 1) "{\"epoch\":1}\n");
    cr_assert(eq(int, run_log_read(&lg, path, &e), PLAST_E_PARSE));
    cr_assert(strstr(e.msg, "type") != NULL);
    write_text(path, META("bp", 0, 1) "{\"type\":\"epoch\",\"epoch\":0}\n");
    cr_assert(eq(int, run_log_read(&lg, path, &e), PLAST_E_PARSE));
    cr_assert(eq(int, lg.nepochs, 0)); /* left empty on failure */
    run_log_free(&lg);
}

/* ---- rows and tables ---- */

typedef struct rows {
    rule_row r[2];
} rows;

/* bp: seeds at 0.8 and 0.9; drtp: one seed at 0.7, one diverged. */
static void make_rows(rows *out)
{
    run_log bp[2], drtp[2];
    plast_err e;
    read_log(&bp[0], "bp0", META("bp", 0, 2) EPOCH(1, 1, 0.6, 10) EPOCH(2, 2, 0.8, 10)
                                SUMMARY("ok", 2));
    read_log(&bp[1], "bp1", META("bp", 1, 2) EPOCH(1, 3, 0.7, 20) EPOCH(2, 4, 0.9, 20)
                                SUMMARY("ok", 2));
    read_log(&drtp[0], "d0", META("drtp", 0, 2) EPOCH(1, 1, 0.5, 5) EPOCH(2, 1, 0.7, 5)
                                 SUMMARY("ok", 2));
    read_log(&drtp[1], "d1", META("drtp", 1, 2) EPOCH(1, 9, 0.1, 7)
                                 SUMMARY("training diverged", 1));
    cr_assert(eq(int, report_row(&out->r[0], bp, 2, &e), 0));
    cr_assert(eq(int, report_row(&out->r[1], drtp, 2, &e), 0));
    report_gaps(out->r, 2);
    for (int i = 0; i < 2; i++) {
        run_log_free(&bp[i]);
        run_log_free(&drtp[i]);
    }
}

static void free_rows(rows *rs)
{
    report_row_free(&rs->r[0]);
    report_row_free(&rs->r[1]);
}

Test(runlog, rows_aggregate_the_seeds)
{
    rows rs;
    make_rows(&rs);
    const rule_row *bp = &rs.r[0], *drtp = &rs.r[1];
    cr_assert(ieee_ulp_eq(dbl, bp->acc_mean, 0.85, 4));
    cr_assert(ieee_ulp_eq(dbl, bp->acc_std, sqrt(0.005), 16));
    cr_assert(eq(dbl, bp->gap, 0));
    cr_assert(eq(dbl, bp->epoch_s, 2.5)); /* median of 1, 2, 3, 4 */
    cr_assert(eq(dbl, bp->peak[3], 20));  /* largest over the seeds */
    cr_assert(eq(int, bp->ncurve, 2));
    cr_assert(ieee_ulp_eq(dbl, bp->curve[0], 0.65, 4));
    cr_assert(eq(int, drtp->nseeds, 2));
    cr_assert(eq(int, drtp->ndiverged, 1));
    cr_assert(eq(dbl, drtp->acc_mean, 0.7)); /* the finished seed only */
    cr_assert(eq(dbl, drtp->acc_std, 0));
    cr_assert(ieee_ulp_eq(dbl, drtp->gap, 0.7 - 0.85, 8));
    cr_assert(eq(dbl, drtp->epoch_s, 1));   /* median of 1, 1, 9: every epoch counts */
    cr_assert(eq(dbl, drtp->peak[3], 7));    /* the diverged seed's epoch counts too */
    cr_assert(eq(dbl, drtp->curve[0], 0.5)); /* curve of the finished seed */
    free_rows(&rs);
}

Test(runlog, no_bp_no_gap)
{
    rows rs;
    make_rows(&rs);
    snprintf(rs.r[0].rule, sizeof rs.r[0].rule, "other");
    report_gaps(rs.r, 2);
    cr_assert(isnan(rs.r[0].gap) != 0);
    cr_assert(isnan(rs.r[1].gap) != 0);
    free_rows(&rs);
}

static void print_md(FILE *f, const void *ctx)
{
    report_markdown(f, ((const rows *)ctx)->r, 2);
}

static void print_csv(FILE *f, const void *ctx)
{
    report_csv(f, ((const rows *)ctx)->r, 2);
}

Test(runlog, markdown_table)
{
    rows rs;
    make_rows(&rs);
    char *md = capture(print_md, &rs);
    cr_assert(eq(int, count(md, "\n"), 4));
    cr_assert(strstr(md, "| bp | 85.00 \u00b1 7.07 | +0.00 | 2.5 | ") != NULL, "%s", md);
    cr_assert(strstr(md, "| drtp | 70.00 \u00b1 0.00 | -15.00 | 1 | ") != NULL, "%s", md);
    cr_assert(strstr(md, "| 1.00 | 0.00 |") != NULL); /* weights: 1 MiB, gradients */
    cr_assert(strstr(md, "| 195 | 0 | 1 | ok |") != NULL);
    cr_assert(strstr(md, "| diverged (1 of 2 seeds) |") != NULL);
    free(md);
    free_rows(&rs);
}

Test(runlog, csv_table)
{
    rows rs;
    make_rows(&rs);
    char *csv = capture(print_csv, &rs);
    cr_assert(eq(int, count(csv, "\n"), 3));
    const char *head = "rule,seeds,diverged_seeds,test_acc_mean,test_acc_std,gap_to_bp,";
    cr_assert(strncmp(csv, head, strlen(head)) == 0);
    cr_assert(strstr(csv, "\nbp,2,0,0.85,0.0707106781,0,2.5,") != NULL, "%s", csv);
    cr_assert(strstr(csv, "\ndrtp,2,1,0.7,0,-0.15,1,") != NULL, "%s", csv);
    cr_assert(strstr(csv, ",195,0,1,diverged\n") != NULL);
    free(csv);
    free_rows(&rs);
}

Test(runlog, empty_cells_for_what_was_not_measured)
{
    run_log d;
    rule_row row;
    plast_err e;
    read_log(&d, "dd", META("drtp", 0, 2) SUMMARY("training diverged", 0));
    cr_assert(eq(int, report_row(&row, &d, 1, &e), 0));
    report_gaps(&row, 1);
    char *md = NULL, *csv = NULL;
    size_t n;
    FILE *f = open_memstream(&md, &n);
    report_markdown(f, &row, 1);
    fclose(f);
    f = open_memstream(&csv, &n);
    report_csv(f, &row, 1);
    fclose(f);
    cr_assert(strstr(md, "| drtp | \u2014 | \u2014 | \u2014 | \u2014 | \u2014 |") != NULL, "%s", md);
    cr_assert(strstr(md, "diverged (1 of 1 seed) |") != NULL);
    cr_assert(strstr(csv, "\ndrtp,1,1,,,,,,,,,,,,,195,0,1,diverged\n") != NULL, "%s", csv);
    free(md);
    free(csv);
    report_row_free(&row);
    run_log_free(&d);
}

Test(runlog, figures_from_rows)
{
    rows rs;
    plast_err e;
    char *acc = NULL, *mem = NULL;
    size_t n;
    make_rows(&rs);
    FILE *f = open_memstream(&acc, &n);
    cr_assert(eq(int, report_accuracy_svg(f, rs.r, 2, "Test accuracy <m.ini>", &e), 0));
    fclose(f);
    f = open_memstream(&mem, &n);
    cr_assert(eq(int, report_memory_svg(f, rs.r, 2, "Peak memory", &e), 0));
    fclose(f);
    cr_assert(well_formed(acc) != 0);
    cr_assert(well_formed(mem) != 0);
    cr_assert(eq(int, count(acc, "<polyline"), 2));
    cr_assert(strstr(acc, ">bp</text>") != NULL);
    cr_assert(strstr(acc, ">drtp (diverged 1 of 2)</text>") != NULL);
    cr_assert(strstr(acc, "Test accuracy &lt;m.ini&gt;") != NULL);
    cr_assert(strstr(mem, ">activations</text>") != NULL);
    cr_assert(strstr(mem, ">gradients</text>") == NULL); /* all zero: not in the legend */
    free(acc);
    free(mem);
    free_rows(&rs);
}

/* ---- SVG ---- */

static const double xs[] = {1, 2, 3};
static const double ya[] = {10, 20, NAN}, yb[] = {5, NAN, 15}, ynone[] = {NAN, NAN, NAN};

static void print_lines(FILE *f, const void *ctx)
{
    (void)ctx;
    svg_series s[] = {{"a<b&\"c\"", 3, xs, ya}, {"plain", 3, xs, yb}, {"empty", 3, xs, ynone}};
    svg_line_chart c = {"title & more", "epoch", "accuracy (%)", s, 3, 0, 100, 1};
    svg_write_line_chart(f, &c);
}

Test(svg, line_chart_is_well_formed)
{
    char *s = capture(print_lines, NULL);
    cr_assert(well_formed(s) != 0, "%s", s);
    cr_assert(strncmp(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 44) == 0);
    cr_assert(strstr(s, "viewBox=\"0 0 ") != NULL);
    cr_assert(eq(int, count(s, "<polyline"), 2)); /* "empty" has no point: no line */
    cr_assert(eq(int, count(s, "<circle"), 4 + 3)); /* finite points + legend markers */
    cr_assert(strstr(s, ">a&lt;b&amp;&quot;c&quot;</text>") != NULL);
    cr_assert(strstr(s, "a<b") == NULL);
    cr_assert(strstr(s, ">empty</text>") != NULL);
    cr_assert(strstr(s, ">title &amp; more</text>") != NULL);
    cr_assert(strstr(s, ">epoch</text>") != NULL);
    free(s);
}

static void print_bars(FILE *f, const void *ctx)
{
    (void)ctx;
    static const char *const bars[] = {"bp", "none"};
    static const char *const stacks[] = {"weights", "gradients", "activations"};
    static const double v[] = {1, 0, 2, NAN, NAN, NAN};
    svg_bar_chart c = {"memory", "rule", "MiB", "MiB", 2, 3, bars, stacks, v};
    svg_write_bar_chart(f, &c);
}

Test(svg, bar_chart_is_well_formed)
{
    char *s = capture(print_bars, NULL);
    cr_assert(well_formed(s) != 0, "%s", s);
    /* background + two segments + two legend entries (gradients unused) */
    cr_assert(eq(int, count(s, "<rect"), 5));
    cr_assert(strstr(s, ">3.00 MiB</text>") != NULL);
    cr_assert(strstr(s, ">no data</text>") != NULL);
    cr_assert(strstr(s, ">gradients</text>") == NULL);
    free(s);
}

Test(svg, escapes_invalid_text)
{
    char *buf = NULL;
    size_t n;
    FILE *f = open_memstream(&buf, &n);
    svg_escape(f, "a\x01<'\xff\xc3\xa9");
    fclose(f);
    cr_assert(eq(str, buf, "a?&lt;&apos;?\xc3\xa9"));
    free(buf);
}

Test(svg, nice_ticks)
{
    static const double cases[][2] = {{0, 1}, {83.2, 87.9}, {0, 0.0104}, {1, 10}, {5, 5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double first, last, step;
        int n = svg_nice_ticks(cases[i][0], cases[i][1], 6, &first, &last, &step);
        double mant = step / pow(10, floor(log10(step)));
        cr_assert(first <= cases[i][0] && last >= cases[i][1], "case %zu", i);
        cr_assert(n >= 2 && n <= 13, "case %zu: %d ticks", i, n);
        cr_assert(fabs(mant - 1) < 1e-9 || fabs(mant - 2) < 1e-9 || fabs(mant - 5) < 1e-9,
                  "case %zu: step %g", i, step);
        double end = first + (n - 1) * step;
        cr_assert(fabs(end - last) <= 1e-9 * fmax(1, fabs(last)), "case %zu: %d ticks", i, n);
    }
}

/* ---- configuration fingerprint ---- */

static uint64_t hash_of(const char *ini)
{
    plast_config *c;
    plast_err e;
    cr_assert(eq(int, plast_config_parse_string(&c, "t.ini", ini, &e), 0), "%s", e.msg);
    uint64_t h = report_config_hash(c);
    plast_config_destroy(c);
    return h;
}

Test(hash, what_changes_results_changes_the_hash)
{
    const char *base = "[run]\nseed = 1\nlog = a.jsonl\n[optimizer]\nlr = 0.1\n[rule]\nname = drtp\n"
                       "[rule.drtp]\noptimizer.lr = 0.01\n[rule.bp]\noptimizer.lr = 1\n";
    uint64_t h = hash_of(base);
    cr_assert(eq(u64, hash_of(base), h));
    /* where the log or checkpoint goes, and other rules' sections: same */
    cr_assert(eq(u64, hash_of("[run]\nseed = 1\nlog = elsewhere.jsonl\ncheckpoint = x\n"
                              "[optimizer]\nlr = 0.1\n[rule]\nname = drtp\n"
                              "[rule.drtp]\noptimizer.lr = 0.01\n[rule.bp]\noptimizer.lr = 2\n"),
                  h));
    /* the seed, the optimiser, the selected rule's own section: different */
    cr_assert(ne(u64, hash_of("[run]\nseed = 2\nlog = a.jsonl\n[optimizer]\nlr = 0.1\n[rule]\n"
                              "name = drtp\n[rule.drtp]\noptimizer.lr = 0.01\n"),
                 h));
    cr_assert(ne(u64, hash_of("[run]\nseed = 1\nlog = a.jsonl\n[optimizer]\nlr = 0.2\n[rule]\n"
                              "name = drtp\n[rule.drtp]\noptimizer.lr = 0.01\n"),
                 h));
    cr_assert(ne(u64, hash_of("[run]\nseed = 1\nlog = a.jsonl\n[optimizer]\nlr = 0.1\n[rule]\n"
                              "name = drtp\n[rule.drtp]\noptimizer.lr = 0.02\n"),
                 h));
}
