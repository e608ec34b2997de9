/* report.h - what `plast compare` makes of the JSON-lines logs of its
 * runs: each record parsed, each run summarised, the seeds of a rule
 * aggregated, then the markdown and CSV tables and the two SVG figures.
 * Everything here works from the log files alone.  Private to examples/. */
#ifndef PLAST_REPORT_H
#define PLAST_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include <plast/plast.h>

/* ---- one JSON object, flattened ---- */

#define JREC_MAX_FIELDS 96
#define JREC_TEXT 8192

enum { JV_NULL, JV_NUMBER, JV_STRING, JV_BOOL };

typedef struct json_field {
    const char *key;    /* nested members are "outer.inner" */
    int kind;           /* JV_* */
    double num;         /* JV_NUMBER; JV_BOOL: 0 or 1 */
    const char *str;    /* JV_STRING, unescaped UTF-8 */
} json_field;

typedef struct json_rec {
    int n;
    json_field f[JREC_MAX_FIELDS];
    size_t used;
    char text[JREC_TEXT];   /* keys and strings point in here */
} json_rec;

/* Parse one JSON object (arrays are checked and skipped).  Returns 0, or
 * -1 with a lower-case reason in why ("expected ':' at column 12"). */
int json_rec_parse(json_rec *r, const char *line, char *why, size_t nwhy);
const json_field *json_rec_find(const json_rec *r, const char *key);
double json_rec_num(const json_rec *r, const char *key);      /* NaN unless a number */
const char *json_rec_str(const json_rec *r, const char *key); /* NULL unless a string */

/* ---- one run: a log file ---- */

/* The memory categories of a training run (the data set is left out). */
#define REPORT_NCAT 7
extern const char *const report_cat[REPORT_NCAT]; /* "weights" ... "scratch" */

typedef enum { RUN_INCOMPLETE, RUN_OK, RUN_DIVERGED } run_status;

typedef struct run_log {
    char rule[64], status[64], config_hash[40];
    double seed;
    int epochs;                 /* planned (meta record) */
    double params, params_aux, fwd_per_update;
    int has_meta, has_summary;  /* has_summary: a summary is the last record */
    int epochs_run;             /* summary */
    int nepochs;                /* highest epoch record seen */
    double *test_acc, *train_s, *samples_per_s; /* [epoch - 1]; NaN if missing */
    double peak[REPORT_NCAT];   /* bytes, largest of any epoch record (NaN: none) */
} run_log;

/* Read a log.  A missing file is PLAST_E_NOENT, a record that is not a
 * JSON object PLAST_E_PARSE naming the file and line.  On failure *r is
 * left empty (run_log_free is still safe). */
int run_log_read(run_log *r, const char *path, plast_err *e);
void run_log_free(run_log *r);
/* OK: a summary "ok" after every planned epoch; DIVERGED: a summary with
 * the status "training diverged"; otherwise INCOMPLETE. */
run_status run_log_status(const run_log *r);

/* ---- one rule: its seeds aggregated ---- */

typedef struct rule_row {
    char rule[64];
    int nseeds, ndiverged;
    double acc_mean, acc_std;   /* final test accuracy of the runs that finished
                                   (fraction; sample std, 0 for one run; NaN if none) */
    double gap;                 /* acc_mean - bp's acc_mean; NaN without bp */
    double epoch_s, samples_per_s; /* medians over every epoch of every seed */
    double peak[REPORT_NCAT];   /* bytes, largest over the seeds (NaN: no epoch ended) */
    double params, params_aux, fwd_per_update;
    int ncurve;
    double *curve;              /* mean test accuracy per epoch (fraction) */
} rule_row;

/* Aggregate n complete runs of one rule (OK or DIVERGED). */
int report_row(rule_row *row, const run_log *runs, int n, plast_err *e);
void report_row_free(rule_row *row);
/* Fill every row's gap from the row of rule "bp" (NaN if none). */
void report_gaps(rule_row *rows, int n);

void report_markdown(FILE *f, const rule_row *rows, int n);
void report_csv(FILE *f, const rule_row *rows, int n);
/* The figures: test accuracy per epoch (one line per rule, mean over its
 * seeds) and peak memory per category (one stacked bar per rule, MiB). */
int report_accuracy_svg(FILE *f, const rule_row *rows, int n, const char *title, plast_err *e);
int report_memory_svg(FILE *f, const rule_row *rows, int n, const char *title, plast_err *e);

/* ---- statistics (of finite values; NaN for none) ---- */

double stat_mean(const double *v, int n);
double stat_sample_std(const double *v, int n); /* 0 for one value */
double stat_median(double *v, int n);           /* sorts v */

/* ---- the configuration a run was made from ---- */

/* FNV-1a 64 of every section, key and value in order, leaving out [run]
 * log and checkpoint (where results go, not what they are) and the
 * [rule.NAME] sections of rules other than the selected one.  The meta
 * record carries it so that a log of another configuration is not taken
 * for a finished run of this one. */
uint64_t report_config_hash(const plast_config *c);

#endif
