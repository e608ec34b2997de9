/* report.c - the JSON-lines logs of `plast compare` turned into a table
 * and two figures.  A small JSON reader (objects flattened to dotted
 * keys) is enough: the logs are plast's own, one object per line. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "svg.h"

const char *const report_cat[REPORT_NCAT] = {
    "weights", "gradients", "optimizer", "activations", "input", "rule", "scratch",
};

#define MIB (1024.0 * 1024.0)
#define MAX_EPOCH 1000000
#define MAX_DEPTH 16

/* ---- JSON ---- */

typedef struct jparse {
    const char *start, *p;
    json_rec *r;
    char *why;
    size_t nwhy;
} jparse;

static int jfail(jparse *j, const char *what)
{
    snprintf(j->why, j->nwhy, "%s at column %d", what, (int)(j->p - j->start) + 1);
    return -1;
}

static void jspace(jparse *j)
{
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Length of the JSON number at p (RFC 8259 grammar), 0 if none. */
static size_t number_len(const char *p)
{
    const char *q = p;
    if (*q == '-')
        q++;
    if (*q == '0')
        q++;
    else if (is_digit(*q))
        while (is_digit(*q))
            q++;
    else
        return 0;
    if (*q == '.') {
        if (!is_digit(*++q))
            return 0;
        while (is_digit(*q))
            q++;
    }
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!is_digit(*q))
            return 0;
        while (is_digit(*q))
            q++;
    }
    return (size_t)(q - p);
}

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d = is_digit(c) ? (unsigned)(c - '0')
                     : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10)
                     : (c >= 'A' && c <= 'F') ? (unsigned)(c - 'A' + 10) : 16u;
        if (d > 15)
            return -1;
        *v = *v * 16 + d;
    }
    return 0;
}

static int utf8_put(unsigned cp, char *buf)
{
    if (cp < 0x80) {
        buf[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (char)(0xC0 | cp >> 6);
        buf[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (char)(0xE0 | cp >> 12);
        buf[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    buf[0] = (char)(0xF0 | cp >> 18);
    buf[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    buf[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    buf[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* \uXXXX (with a surrogate pair) at j->p, which points at the 'u'; leaves
 * j->p on its last hex digit. */
static int unicode_escape(jparse *j, char *buf, int *nb)
{
    unsigned hi, lo;
    if (hex4(j->p + 1, &hi))
        return jfail(j, "bad \\u escape");
    j->p += 4;
    if (hi >= 0xDC00 && hi < 0xE000)
        return jfail(j, "lone low surrogate");
    if (hi >= 0xD800 && hi < 0xDC00) {
        if (j->p[1] != '\\' || j->p[2] != 'u' || hex4(j->p + 3, &lo) || lo < 0xDC00 ||
            lo >= 0xE000)
            return jfail(j, "unpaired high surrogate");
        j->p += 6;
        hi = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (hi == 0)
        return jfail(j, "NUL character in a string");
    *nb = utf8_put(hi, buf);
    return 0;
}

static int escape(jparse *j, char *buf, int *nb)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = strchr(from, *j->p);
    *nb = 1;
    if (*j->p == 'u')
        return unicode_escape(j, buf, nb);
    if (!*j->p || !k)
        return jfail(j, "bad escape in a string");
    buf[0] = to[k - from];
    return 0;
}

/* The string at j->p (on its opening quote), unescaped into the record. */
static int jstring(jparse *j, const char **out)
{
    json_rec *r = j->r;
    char *dst = r->text + r->used;
    size_t room = JREC_TEXT - r->used, k = 0;
    for (j->p++; *j->p != '"'; j->p++) {
        unsigned char c = (unsigned char)*j->p;
        char buf[4];
        int nb = 1;
        if (c == '\0')
            return jfail(j, "unterminated string");
        if (c < 0x20)
            return jfail(j, "control character in a string");
        buf[0] = (char)c;
        if (c == '\\') {
            j->p++;
            if (escape(j, buf, &nb))
                return -1;
        }
        if (k + (size_t)nb + 1 > room)
            return jfail(j, "record too long");
        memcpy(dst + k, buf, (size_t)nb);
        k += (size_t)nb;
    }
    j->p++;
    dst[k] = '\0';
    r->used += k + 1;
    *out = dst;
    return 0;
}

static int add_field(jparse *j, const json_field *fld)
{
    if (!fld->key) /* inside an array: checked, not kept */
        return 0;
    if (j->r->n >= JREC_MAX_FIELDS)
        return jfail(j, "too many members");
    j->r->f[j->r->n++] = *fld;
    return 0;
}

static int jobject(jparse *j, const char *prefix, int depth);

static int jarray(jparse *j, int depth);

static int jscalar(jparse *j, json_field *fld)
{
    static const char *const words[] = {"null", "true", "false"};
    static const int kinds[] = {JV_NULL, JV_BOOL, JV_BOOL};
    if (*j->p == '"') {
        fld->kind = JV_STRING;
        return jstring(j, &fld->str);
    }
    for (int i = 0; i < 3; i++)
        if (!strncmp(j->p, words[i], strlen(words[i]))) {
            fld->kind = kinds[i];
            if (kinds[i] == JV_BOOL)
                fld->num = i == 1;
            j->p += strlen(words[i]);
            return 0;
        }
    size_t len = number_len(j->p);
    if (!len)
        return jfail(j, "expected a value");
    char *end;
    errno = 0;
    fld->num = strtod(j->p, &end);
    if (end != j->p + len || !isfinite(fld->num))
        return jfail(j, "number out of range");
    fld->kind = JV_NUMBER;
    j->p += len;
    return 0;
}

static int jvalue(jparse *j, const char *key, int depth)
{
    if (depth > MAX_DEPTH)
        return jfail(j, "nested too deeply");
    jspace(j);
    if (*j->p == '{')
        return jobject(j, key, depth + 1);
    if (*j->p == '[')
        return jarray(j, depth + 1);
    json_field fld = {key, JV_NULL, NAN, NULL};
    if (jscalar(j, &fld))
        return -1;
    return add_field(j, &fld);
}

static int jarray(jparse *j, int depth)
{
    j->p++;
    jspace(j);
    if (*j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        if (jvalue(j, NULL, depth))
            return -1;
        jspace(j);
        if (*j->p == ']') {
            j->p++;
            return 0;
        }
        if (*j->p != ',')
            return jfail(j, "expected ',' or ']'");
        j->p++;
    }
}

/* "prefix.key" (or "key" at the top) in the record's text; NULL when not
 * kept (prefix NULL: inside an array). */
static int full_key(jparse *j, const char *prefix, const char *key, const char **out)
{
    json_rec *r = j->r;
    *out = NULL;
    if (!prefix)
        return 0;
    size_t room = JREC_TEXT - r->used;
    int n = snprintf(r->text + r->used, room, "%s%s%s", prefix, prefix[0] ? "." : "", key);
    if (n < 0 || (size_t)n >= room)
        return jfail(j, "record too long");
    *out = r->text + r->used;
    r->used += (size_t)n + 1;
    return 0;
}

static int jmember(jparse *j, const char *prefix, int depth)
{
    const char *name, *key;
    jspace(j);
    if (*j->p != '"')
        return jfail(j, "expected a member name");
    if (jstring(j, &name) || full_key(j, prefix, name, &key))
        return -1;
    jspace(j);
    if (*j->p != ':')
        return jfail(j, "expected ':'");
    j->p++;
    return jvalue(j, key, depth);
}

static int jobject(jparse *j, const char *prefix, int depth)
{
    j->p++;
    jspace(j);
    if (*j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        if (jmember(j, prefix, depth))
            return -1;
        jspace(j);
        if (*j->p == '}') {
            j->p++;
            return 0;
        }
        if (*j->p != ',')
            return jfail(j, "expected ',' or '}'");
        j->p++;
    }
}

int json_rec_parse(json_rec *r, const char *line, char *why, size_t nwhy)
{
    jparse j = {line, line, r, why, nwhy};
    r->n = 0;
    r->used = 0;
    jspace(&j);
    if (*j.p != '{')
        return jfail(&j, "expected '{'");
    if (jobject(&j, "", 0))
        return -1;
    jspace(&j);
    if (*j.p)
        return jfail(&j, "trailing characters");
    return 0;
}

const json_field *json_rec_find(const json_rec *r, const char *key)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->f[i].key, key))
            return &r->f[i];
    return NULL;
}

double json_rec_num(const json_rec *r, const char *key)
{
    const json_field *f = json_rec_find(r, key);
    return f && f->kind == JV_NUMBER ? f->num : NAN;
}

const char *json_rec_str(const json_rec *r, const char *key)
{
    const json_field *f = json_rec_find(r, key);
    return f && f->kind == JV_STRING ? f->str : NULL;
}

/* ---- one run ---- */

/* The larger of a and b, ignoring b when it is not finite (a may be NaN:
 * nothing yet). */
static double largest(double a, double b)
{
    return isfinite(b) && !(b <= a) ? b : a;
}

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static void take_meta(run_log *r, const json_rec *m)
{
    double primary = json_rec_num(m, "params_primary");
    copy_str(r->rule, sizeof r->rule, json_rec_str(m, "rule"));
    copy_str(r->config_hash, sizeof r->config_hash, json_rec_str(m, "config_hash"));
    r->seed = json_rec_num(m, "seed");
    double ep = json_rec_num(m, "epochs");
    r->epochs = ep >= 0 && ep <= MAX_EPOCH ? (int)ep : -1;
    /* older logs have only "params" (the flat array, rounded up) */
    r->params = isfinite(primary) ? primary : json_rec_num(m, "params");
    r->params_aux = json_rec_num(m, "params_aux");
    r->fwd_per_update = json_rec_num(m, "forward_passes_per_update");
    r->has_meta = 1;
}

static int grow_epochs(run_log *r, int k)
{
    double **arrays[] = {&r->test_acc, &r->train_s, &r->samples_per_s};
    for (int a = 0; a < 3; a++) {
        double *p = realloc(*arrays[a], (size_t)k * sizeof *p);
        if (!p)
            return -1;
        for (int i = r->nepochs; i < k; i++)
            p[i] = NAN;
        *arrays[a] = p;
    }
    r->nepochs = k;
    return 0;
}

static int take_epoch(run_log *r, const json_rec *m, const char *path, int line, plast_err *e)
{
    double ep = json_rec_num(m, "epoch");
    if (!(ep >= 1 && ep <= MAX_EPOCH && ep == floor(ep)))
        return plast_err_at(e, PLAST_E_PARSE, path, line,
                            "epoch record: expected \"epoch\" an integer in [1, %d]", MAX_EPOCH);
    int k = (int)ep;
    if (k > r->nepochs && grow_epochs(r, k))
        return plast_err_set(e, PLAST_E_NOMEM, "%s: out of memory", path);
    r->test_acc[k - 1] = json_rec_num(m, "test_acc");
    r->train_s[k - 1] = json_rec_num(m, "train_s");
    r->samples_per_s[k - 1] = json_rec_num(m, "samples_per_s");
    for (int c = 0; c < REPORT_NCAT; c++) {
        char key[64];
        snprintf(key, sizeof key, "mem_peak_bytes.%s", report_cat[c]);
        r->peak[c] = largest(r->peak[c], json_rec_num(m, key));
    }
    return PLAST_OK;
}

static int take_record(run_log *r, const json_rec *m, const char *path, int line, plast_err *e)
{
    const char *type = json_rec_str(m, "type");
    if (!type)
        return plast_err_at(e, PLAST_E_PARSE, path, line, "record without a \"type\" string");
    r->has_summary = 0; /* a summary counts only as the last record */
    if (!strcmp(type, "meta")) {
        take_meta(r, m);
    } else if (!strcmp(type, "epoch")) {
        return take_epoch(r, m, path, line, e);
    } else if (!strcmp(type, "summary")) {
        double n = json_rec_num(m, "epochs_run");
        copy_str(r->status, sizeof r->status, json_rec_str(m, "status"));
        r->epochs_run = n >= 0 && n <= MAX_EPOCH ? (int)n : -1;
        r->has_summary = 1;
    }
    return PLAST_OK;
}

static void run_log_init(run_log *r)
{
    memset(r, 0, sizeof *r);
    r->seed = r->params = r->params_aux = r->fwd_per_update = NAN;
    r->epochs = r->epochs_run = -1;
    for (int c = 0; c < REPORT_NCAT; c++)
        r->peak[c] = NAN; /* not measured until an epoch ends */
}

static int read_records(run_log *r, FILE *f, const char *path, plast_err *e)
{
    json_rec *rec = malloc(sizeof *rec);
    char *line = NULL, why[128];
    size_t cap = 0;
    int lineno = 0, rc = PLAST_OK;
    if (!rec)
        return plast_err_set(e, PLAST_E_NOMEM, "%s: out of memory", path);
    while (!rc && getline(&line, &cap, f) != -1) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        if (json_rec_parse(rec, line, why, sizeof why))
            rc = plast_err_at(e, PLAST_E_PARSE, path, lineno, "expected a JSON object: %s", why);
        else
            rc = take_record(r, rec, path, lineno, e);
    }
    if (!rc && ferror(f))
        rc = plast_err_at(e, PLAST_E_IO, path, 0, "cannot read the log: %s", strerror(errno));
    free(line);
    free(rec);
    return rc;
}

int run_log_read(run_log *r, const char *path, plast_err *e)
{
    run_log_init(r);
    FILE *f = fopen(path, "r");
    if (!f)
        return plast_err_at(e, errno == ENOENT ? PLAST_E_NOENT : PLAST_E_IO, path, 0,
                            "cannot open the log: %s", strerror(errno));
    int rc = read_records(r, f, path, e);
    fclose(f);
    if (rc)
        run_log_free(r);
    return rc;
}

void run_log_free(run_log *r)
{
    free(r->test_acc);
    free(r->train_s);
    free(r->samples_per_s);
    run_log_init(r);
}

run_status run_log_status(const run_log *r)
{
    if (!r->has_meta || !r->has_summary)
        return RUN_INCOMPLETE;
    if (!strcmp(r->status, plast_status_str(PLAST_E_DIVERGED)))
        return RUN_DIVERGED;
    if (strcmp(r->status, "ok") || r->epochs < 1 || r->epochs_run != r->epochs ||
        r->nepochs != r->epochs)
        return RUN_INCOMPLETE;
    for (int k = 0; k < r->nepochs; k++)
        if (!isfinite(r->train_s[k])) /* an epoch record is missing */
            return RUN_INCOMPLETE;
    return RUN_OK;
}

/* ---- statistics ---- */

static int finite_only(double *v, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i]))
            v[k++] = v[i];
    return k;
}

double stat_mean(const double *v, int n)
{
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) {
            s += v[i];
            k++;
        }
    return k ? s / k : NAN;
}

double stat_sample_std(const double *v, int n)
{
    double m = stat_mean(v, n), ss = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) {
            ss += (v[i] - m) * (v[i] - m);
            k++;
        }
    return k == 0 ? NAN : k == 1 ? 0 : sqrt(ss / (k - 1));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double stat_median(double *v, int n)
{
    int k = finite_only(v, n);
    if (!k)
        return NAN;
    qsort(v, (size_t)k, sizeof *v, cmp_double);
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

/* ---- one rule ---- */

enum { SERIES_TRAIN_S, SERIES_SAMPLES_PER_S };

static const double *epoch_series(const run_log *r, int which)
{
    return which == SERIES_TRAIN_S ? r->train_s : r->samples_per_s;
}

/* Median of one per-epoch series over every epoch of every run. */
static double median_epochs(const run_log *runs, int n, int which, double *tmp)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < runs[i].nepochs; j++)
            tmp[k++] = epoch_series(&runs[i], which)[j];
    return stat_median(tmp, k);
}

/* Mean test accuracy per epoch: of the runs that finished, or of all when
 * every seed diverged (to show where they went). */
static int accuracy_curve(rule_row *row, const run_log *runs, int n, double *tmp)
{
    int all = row->ndiverged == n;
    for (int i = 0; i < n; i++)
        if (all || run_log_status(&runs[i]) == RUN_OK)
            row->ncurve = runs[i].nepochs > row->ncurve ? runs[i].nepochs : row->ncurve;
    row->curve = malloc((size_t)(row->ncurve ? row->ncurve : 1) * sizeof *row->curve);
    if (!row->curve)
        return -1;
    for (int k = 0; k < row->ncurve; k++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if ((all || run_log_status(&runs[i]) == RUN_OK) && k < runs[i].nepochs)
                tmp[m++] = runs[i].test_acc[k];
        row->curve[k] = stat_mean(tmp, m);
    }
    return 0;
}

static void final_accuracy(rule_row *row, const run_log *runs, int n, double *tmp)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (run_log_status(&runs[i]) == RUN_OK)
            tmp[m++] = runs[i].test_acc[runs[i].epochs - 1];
    row->acc_mean = stat_mean(tmp, m);
    row->acc_std = stat_sample_std(tmp, m);
}

int report_row(rule_row *row, const run_log *runs, int n, plast_err *e)
{
    size_t total = (size_t)n + 1;
    memset(row, 0, sizeof *row);
    row->acc_mean = row->acc_std = row->gap = NAN;
    row->params = row->params_aux = row->fwd_per_update = NAN;
    for (int c = 0; c < REPORT_NCAT; c++)
        row->peak[c] = NAN;
    copy_str(row->rule, sizeof row->rule, n ? runs[0].rule : "");
    row->nseeds = n;
    for (int i = 0; i < n; i++) {
        total += (size_t)runs[i].nepochs;
        row->ndiverged += run_log_status(&runs[i]) == RUN_DIVERGED;
        for (int c = 0; c < REPORT_NCAT; c++)
            row->peak[c] = largest(row->peak[c], runs[i].peak[c]);
        row->params = largest(row->params, runs[i].params);
        row->params_aux = largest(row->params_aux, runs[i].params_aux);
        row->fwd_per_update = largest(row->fwd_per_update, runs[i].fwd_per_update);
    }
    double *tmp = malloc(total * sizeof *tmp);
    if (!tmp || accuracy_curve(row, runs, n, tmp)) {
        free(tmp);
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory making the table");
    }
    final_accuracy(row, runs, n, tmp);
    row->epoch_s = median_epochs(runs, n, SERIES_TRAIN_S, tmp);
    row->samples_per_s = median_epochs(runs, n, SERIES_SAMPLES_PER_S, tmp);
    free(tmp);
    return PLAST_OK;
}

void report_row_free(rule_row *row)
{
    free(row->curve);
    row->curve = NULL;
    row->ncurve = 0;
}

void report_gaps(rule_row *rows, int n)
{
    double bp = NAN;
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].rule, "bp"))
            bp = rows[i].acc_mean;
    for (int i = 0; i < n; i++)
        rows[i].gap = rows[i].acc_mean - bp; /* NaN when either is missing */
}

/* ---- tables ---- */

static void status_text(const rule_row *r, char *buf, size_t n)
{
    if (!r->ndiverged)
        snprintf(buf, n, "ok");
    else
        snprintf(buf, n, "diverged (%d of %d seed%s)", r->ndiverged, r->nseeds,
                 r->nseeds == 1 ? "" : "s");
}

static void md_num(FILE *f, const char *fmt, double v)
{
    fputs(" | ", f);
    if (isfinite(v))
        fprintf(f, fmt, v);
    else
        fputs("\u2014", f); /* em dash: no value */
}

void report_markdown(FILE *f, const rule_row *rows, int n)
{
    char st[64];
    fputs("| rule | test accuracy (%) | gap to bp (points) | s/epoch | samples/s", f);
    for (int c = 0; c < REPORT_NCAT; c++)
        fprintf(f, " | %s (MiB)", report_cat[c]);
    fputs(" | parameters | auxiliary parameters | forward passes per update | status |\n"
          "|:---|---:|---:|---:|---:",
          f);
    for (int c = 0; c < REPORT_NCAT; c++)
        fputs("|---:", f);
    fputs("|---:|---:|---:|:---|\n", f);
    for (int i = 0; i < n; i++) {
        const rule_row *r = &rows[i];
        fprintf(f, "| %s | ", r->rule);
        if (isfinite(r->acc_mean))
            fprintf(f, "%.2f \u00b1 %.2f", 100 * r->acc_mean, 100 * r->acc_std);
        else
            fputs("\u2014", f);
        /* round first so that a gap of -0.001 points prints +0.00, not -0.00 */
        double gap = round(100 * 100 * r->gap) / 100;
        md_num(f, "%+.2f", gap == 0 ? 0.0 : gap);
        md_num(f, "%.4g", r->epoch_s);
        md_num(f, "%.0f", r->samples_per_s);
        for (int c = 0; c < REPORT_NCAT; c++)
            md_num(f, "%.2f", r->peak[c] / MIB);
        md_num(f, "%.0f", r->params);
        md_num(f, "%.0f", r->params_aux);
        md_num(f, "%g", r->fwd_per_update);
        status_text(r, st, sizeof st);
        fprintf(f, " | %s |\n", st);
    }
}

static void csv_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, ",%.9g", v);
    else
        fputc(',', f); /* empty field: no value */
}

static void csv_str(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void report_csv(FILE *f, const rule_row *rows, int n)
{
    fputs("rule,seeds,diverged_seeds,test_acc_mean,test_acc_std,gap_to_bp,epoch_s_median,"
          "samples_per_s_median",
          f);
    for (int c = 0; c < REPORT_NCAT; c++)
        fprintf(f, ",peak_%s_bytes", report_cat[c]);
    fputs(",params,params_aux,forward_passes_per_update,status\n", f);
    for (int i = 0; i < n; i++) {
        const rule_row *r = &rows[i];
        csv_str(f, r->rule);
        fprintf(f, ",%d,%d", r->nseeds, r->ndiverged);
        csv_num(f, r->acc_mean);
        csv_num(f, r->acc_std);
        csv_num(f, r->gap);
        csv_num(f, r->epoch_s);
        csv_num(f, r->samples_per_s);
        for (int c = 0; c < REPORT_NCAT; c++)
            csv_num(f, r->peak[c]);
        csv_num(f, r->params);
        csv_num(f, r->params_aux);
        csv_num(f, r->fwd_per_update);
        fprintf(f, ",%s\n", r->ndiverged ? "diverged" : "ok");
    }
}

/* ---- figures ---- */

int report_accuracy_svg(FILE *f, const rule_row *rows, int n, const char *title, plast_err *e)
{
    int most = 1, rc = PLAST_OK;
    size_t nn = (size_t)(n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        most = rows[i].ncurve > most ? rows[i].ncurve : most;
    double *x = malloc((size_t)most * sizeof *x);
    double *y = malloc(nn * (size_t)most * sizeof *y);
    svg_series *s = calloc(nn, sizeof *s);
    char(*names)[96] = calloc(nn, sizeof *names);
    if (!x || !y || !s || !names) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory drawing the accuracy figure");
        goto undo_alloc;
    }
    for (int k = 0; k < most; k++)
        x[k] = k + 1;
    for (int i = 0; i < n; i++) {
        double *yi = y + (size_t)i * (size_t)most;
        if (rows[i].ndiverged)
            snprintf(names[i], sizeof names[i], "%s (diverged %d of %d)", rows[i].rule,
                     rows[i].ndiverged, rows[i].nseeds);
        else
            snprintf(names[i], sizeof names[i], "%s", rows[i].rule);
        for (int k = 0; k < rows[i].ncurve; k++)
            yi[k] = 100 * rows[i].curve[k];
        s[i] = (svg_series){names[i], rows[i].ncurve, x, yi};
    }
    svg_line_chart c = {title, "epoch", "test accuracy (%)", s, n, 0, 100, 1};
    svg_write_line_chart(f, &c);
undo_alloc:
    free(names);
    free(s);
    free(y);
    free(x);
    return rc;
}

int report_memory_svg(FILE *f, const rule_row *rows, int n, const char *title, plast_err *e)
{
    size_t nn = (size_t)(n > 0 ? n : 1);
    double *v = malloc(nn * REPORT_NCAT * sizeof *v);
    const char **names = malloc(nn * sizeof *names);
    int rc = PLAST_OK;
    if (v && names) {
        for (int i = 0; i < n; i++) {
            names[i] = rows[i].rule;
            for (int c = 0; c < REPORT_NCAT; c++)
                v[i * REPORT_NCAT + c] = rows[i].peak[c] / MIB;
        }
        svg_bar_chart c = {title, "rule", "peak memory while training (MiB)", "MiB", n,
                           REPORT_NCAT, names, report_cat, v};
        svg_write_bar_chart(f, &c);
    } else {
        rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory drawing the memory figure");
    }
    free(names);
    free(v);
    return rc;
}

/* ---- configuration fingerprint ---- */

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s;; p++) {
        h = (h ^ *p) * 0x100000001b3ull; /* the NUL too: "ab","c" differs from "a","bc" */
        if (!*p)
            return h;
    }
}

static int hashed_section(const char *name, const char *rule)
{
    return strncmp(name, "rule.", 5) || !strcmp(name + 5, rule);
}

static int hashed_key(const char *section, const char *key)
{
    return strcmp(section, "run") || (strcmp(key, "log") && strcmp(key, "checkpoint"));
}

uint64_t report_config_hash(const plast_config *c)
{
    const char *rule = plast_config_get(c, "rule", "name", NULL);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < plast_config_nsections(c); i++) {
        const char *sec = plast_config_section_name(c, i);
        if (!hashed_section(sec, rule ? rule : "bp"))
            continue;
        h = fnv1a(h, sec);
        for (int k = 0; k < plast_config_nkeys(c, sec); k++) {
            const char *value, *key = plast_config_key(c, sec, k, &value, NULL);
            if (hashed_key(sec, key)) {
                h = fnv1a(h, key);
                h = fnv1a(h, value);
            }
        }
    }
    return h;
}
