/* cli_compare.c - `plast compare`: one model, several rules and seeds,
 * one table and two figures.  Each run is a `plast train` run (the same
 * setup, log and hooks, cli_train.c) writing OUT/RULE-sSEED.jsonl; the
 * table and figures are then made from those logs alone (report.c). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "report.h"

#define MAX_SEED 9007199254740992ull /* 2^53, as [run] seed */
#define MAX_EPOCHS 1000000
#define MAX_NAME 200
#define PATH_LEN 4096

typedef struct compare_opts {
    const char *ini;
    const char *out;         /* as given (messages) */
    char out_abs[PATH_LEN];  /* for run.log, which is otherwise INI-relative */
    char *rules_text;        /* --rules, split in place */
    char **rules;
    int nrules;
    uint64_t *seeds;         /* --seeds; NULL: each rule's configured seed */
    int nseeds;
    uint64_t *rule_seed;     /* without --seeds: the seed of each rule */
    int epochs;              /* --epochs, 0 = configured */
    int progress;
    int help;                /* --help was given: print it, do nothing else */
    char **sets;             /* the user's --set lines */
    int nsets;
    char default_out[PATH_LEN];
} compare_opts;

static int out_of_memory(void)
{
    plast_err e;
    plast_err_set(&e, PLAST_E_NOMEM, "out of memory");
    return cli_fail(&e);
}

/* ---- options ---- */

static int split_rules(compare_opts *co, const char *arg)
{
    free(co->rules_text);
    free(co->rules);
    co->rules = NULL;
    co->nrules = 0;
    if (!(co->rules_text = strdup(arg)))
        return out_of_memory();
    size_t most = 1;
    for (const char *p = arg; *p; p++)
        most += *p == ',';
    if (!(co->rules = calloc(most, sizeof *co->rules)))
        return out_of_memory();
    for (char *p = co->rules_text, *q;; p = q + 1) {
        q = p + strcspn(p, ",");
        int last = *q == '\0';
        *q = '\0';
        if (!*p || strlen(p) > MAX_NAME)
            return cli_usage_error("--rules: expected comma-separated rule names, found \"%s\"",
                                   arg);
        for (int i = 0; i < co->nrules; i++)
            if (!strcmp(co->rules[i], p))
                return cli_usage_error("--rules: rule '%s' given twice", p);
        co->rules[co->nrules++] = p;
        if (last)
            return EXIT_OK;
    }
}

static int parse_seed(const char *s, size_t len, uint64_t *out)
{
    char buf[32], *end;
    if (len == 0 || len >= sizeof buf || strspn(s, "0123456789") < len)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || *end || v > MAX_SEED)
        return -1;
    *out = v;
    return 0;
}

static int split_seeds(compare_opts *co, const char *arg)
{
    size_t most = 1;
    for (const char *p = arg; *p; p++)
        most += *p == ',';
    free(co->seeds);
    co->nseeds = 0;
    if (!(co->seeds = calloc(most, sizeof *co->seeds)))
        return out_of_memory();
    for (const char *p = arg;; p++) {
        size_t len = strcspn(p, ",");
        uint64_t s;
        if (parse_seed(p, len, &s))
            return cli_usage_error("--seeds: expected comma-separated integers in [0, %llu], "
                                   "found \"%.*s\" in \"%s\"",
                                   MAX_SEED, (int)len, p, arg);
        for (int i = 0; i < co->nseeds; i++)
            if (co->seeds[i] == s)
                return cli_usage_error("--seeds: seed %llu given twice", (unsigned long long)s);
        co->seeds[co->nseeds++] = s;
        p += len;
        if (!*p)
            return EXIT_OK;
    }
}

static int parse_epochs(compare_opts *co, const char *arg)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < 1 || v > MAX_EPOCHS)
        return cli_usage_error("--epochs: expected an integer in [1, %d], found \"%s\"",
                               MAX_EPOCHS, arg);
    co->epochs = (int)v;
    return EXIT_OK;
}

static int add_user_set(compare_opts *co, char *spec)
{
    char **n = realloc(co->sets, (size_t)(co->nsets + 1) * sizeof *n);
    if (!n)
        return out_of_memory();
    co->sets = n;
    co->sets[co->nsets++] = spec;
    return EXIT_OK;
}

/* compare-<FILE without its directory and .ini>, in the current directory */
static void default_out(compare_opts *co)
{
    const char *base = strrchr(co->ini, '/');
    base = base ? base + 1 : co->ini;
    size_t len = strlen(base);
    if (len > 4 && !strcmp(base + len - 4, ".ini"))
        len -= 4;
    snprintf(co->default_out, sizeof co->default_out, "compare-%.*s", (int)len, base);
    co->out = co->default_out;
}

static void compare_help(void)
{
    printf("Usage: plast compare FILE.ini --rules NAME,NAME... [--seeds N,N...] [--epochs N]\n"
           "                     [--out DIR] [--set SEC.KEY=VAL]... [--progress WHEN]\n"
           "(see plast --help and plast(1))\n");
}

static int parse_one(compare_opts *co, int c, char *arg, const char *opt)
{
    switch (c) {
    case 'R': return split_rules(co, arg);
    case 'n': return split_seeds(co, arg);
    case 'e': return parse_epochs(co, arg);
    case 'o': co->out = arg; return EXIT_OK;
    case 'S': return add_user_set(co, arg);
    case 'p':
        if (cli_parse_progress(arg, &co->progress))
            return cli_usage_error("--progress: expected auto, bar, lines or none, found '%s'",
                                   arg);
        return EXIT_OK;
    case ':': return cli_usage_error("compare: option '%s' needs a value", opt);
    default: return cli_usage_error("compare: unrecognized option '%s'", opt);
    }
}

static int parse_compare_opts(int argc, char **argv, compare_opts *co)
{
    static const struct option opts[] = {
        {"rules", required_argument, NULL, 'R'},  {"seeds", required_argument, NULL, 'n'},
        {"epochs", required_argument, NULL, 'e'}, {"out", required_argument, NULL, 'o'},
        {"set", required_argument, NULL, 'S'},    {"progress", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    int c, ex;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":e:o:S:h", opts, NULL)) != -1) {
        if (c == 'h') {
            compare_help();
            co->help = 1;
            return EXIT_OK;
        }
        if ((ex = parse_one(co, c, optarg, argv[optind - 1])))
            return ex;
    }
    if (optind != argc - 1)
        return cli_usage_error(optind >= argc ? "compare: missing FILE.ini"
                                              : "compare: expected one FILE.ini");
    co->ini = argv[optind];
    if (!co->nrules)
        return cli_usage_error("compare: missing --rules NAME,NAME...");
    if (!co->out)
        default_out(co);
    return EXIT_OK;
}

static void free_compare_opts(compare_opts *co)
{
    free(co->rules_text);
    free(co->rules);
    free(co->seeds);
    free(co->rule_seed);
    free(co->sets);
}

/* ---- the output directory ---- */

static int make_out_dir(compare_opts *co)
{
    struct stat st;
    plast_err e;
    char cwd[PATH_LEN];
    if (mkdir(co->out, 0777) && errno != EEXIST)
        plast_err_at(&e, PLAST_E_IO, co->out, 0, "cannot create the output directory: %s",
                     strerror(errno));
    else if (stat(co->out, &st) || !S_ISDIR(st.st_mode))
        plast_err_at(&e, PLAST_E_IO, co->out, 0, "expected a directory for the output");
    else if (co->out[0] != '/' && !getcwd(cwd, sizeof cwd))
        plast_err_set(&e, PLAST_E_IO, "cannot get the current directory: %s", strerror(errno));
    else if (snprintf(co->out_abs, sizeof co->out_abs, "%s%s%s", co->out[0] == '/' ? "" : cwd,
                      co->out[0] == '/' ? "" : "/", co->out) >= PATH_LEN - 300)
        plast_err_at(&e, PLAST_E_IO, co->out, 0, "output directory name too long");
    else
        return EXIT_OK;
    cli_fail(&e);
    return EXIT_CANTCREAT;
}

/* ---- one run ---- */

/* A run's train_opts: the user's --set lines, then compare's own, which
 * win (later --set lines override earlier ones). */
typedef struct run_spec {
    train_opts o;
    char name[MAX_NAME + 16], seed[48], epochs[48], log[PATH_LEN + 256], nockpt[20];
} run_spec;

static int run_spec_init(run_spec *r, const compare_opts *co, int rule, const uint64_t *seed,
                         int with_log)
{
    memset(r, 0, sizeof *r);
    r->o.ini = co->ini;
    r->o.progress = co->progress;
    r->o.quiet = 1; /* stdout is for the comparison table */
    r->o.sets = malloc((size_t)(co->nsets + 5) * sizeof *r->o.sets);
    if (!r->o.sets)
        return -1;
    if (co->nsets)
        memcpy(r->o.sets, co->sets, (size_t)co->nsets * sizeof *co->sets);
    int n = co->nsets;
    snprintf(r->name, sizeof r->name, "rule.name=%s", co->rules[rule]);
    r->o.sets[n++] = r->name;
    if (co->epochs) {
        snprintf(r->epochs, sizeof r->epochs, "run.epochs=%d", co->epochs);
        r->o.sets[n++] = r->epochs;
    }
    if (seed) {
        snprintf(r->seed, sizeof r->seed, "run.seed=%llu", (unsigned long long)*seed);
        r->o.sets[n++] = r->seed;
    }
    if (with_log) { /* OUT/RULE-sSEED.jsonl; no checkpoint: runs are redone, never resumed */
        snprintf(r->log, sizeof r->log, "run.log=%s/%s-s%llu.jsonl", co->out_abs,
                 co->rules[rule], (unsigned long long)*seed);
        snprintf(r->nockpt, sizeof r->nockpt, "run.checkpoint=");
        r->o.sets[n++] = r->log;
        r->o.sets[n++] = r->nockpt;
    }
    r->o.nsets = n;
    return 0;
}

static const char *log_path(const run_spec *r)
{
    return r->log + strlen("run.log=");
}

typedef struct run_env {
    plast_config *cfg;
    plast_registry *reg;
    plast_trainer *t;
} run_env;

static void run_env_destroy(run_env *env)
{
    plast_trainer_destroy(env->t);
    plast_registry_destroy(env->reg);
    plast_config_destroy(env->cfg);
    memset(env, 0, sizeof *env);
}

/* Build every rule's trainer once before training anything, so that a
 * typo in the last rule's name or section is reported at once; without
 * --seeds, note each rule's configured seed. */
static int check_rules(compare_opts *co)
{
    if (!co->seeds && !(co->rule_seed = calloc((size_t)co->nrules, sizeof *co->rule_seed)))
        return out_of_memory();
    for (int r = 0; r < co->nrules; r++) {
        run_spec rs;
        run_env env = {NULL, NULL, NULL};
        plast_err e;
        if (run_spec_init(&rs, co, r, NULL, 0))
            return out_of_memory();
        int rc = cli_setup(&rs.o, &env.cfg, &env.reg, &env.t, &e);
        if (!rc && co->rule_seed)
            co->rule_seed[r] = plast_trainer_seed(env.t);
        run_env_destroy(&env);
        free(rs.o.sets);
        if (rc)
            return cli_fail(&e);
    }
    return EXIT_OK;
}

/* A log that already holds this run's final result: a summary after every
 * planned epoch (or a divergence), made from the same configuration. */
static int log_is_final(const char *path, const char *rule, uint64_t seed, int epochs,
                        const char *hash)
{
    run_log lg;
    if (run_log_read(&lg, path, NULL))
        return 0;
    run_status st = run_log_status(&lg);
    int final = st != RUN_INCOMPLETE && !strcmp(lg.rule, rule) && lg.seed == (double)seed &&
                lg.epochs == epochs && !strcmp(lg.config_hash, hash);
    run_log_free(&lg);
    return final;
}

static void note(const compare_opts *co, int i, int n, int r, uint64_t seed, int skipped)
{
    if (co->progress == PROGRESS_NONE)
        return;
    fprintf(stderr, "run %d/%d: %s seed %llu: %s %s/%s-s%llu.jsonl\n", i, n, co->rules[r],
            (unsigned long long)seed, skipped ? "skipped, complete log" : "training, log",
            co->out, co->rules[r], (unsigned long long)seed);
}

/* Train one rule and seed unless its log is final.  Returns the exit
 * code; a divergence is a result, not a failure. */
static int run_one(const compare_opts *co, int r, uint64_t seed, int i, int n)
{
    run_spec rs;
    run_env env = {NULL, NULL, NULL};
    plast_err e;
    char hash[20];
    int status, ex;
    if (run_spec_init(&rs, co, r, &seed, 1))
        return out_of_memory();
    if (cli_setup(&rs.o, &env.cfg, &env.reg, &env.t, &e)) {
        ex = cli_fail(&e);
    } else {
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)report_config_hash(env.cfg));
        if (log_is_final(log_path(&rs), co->rules[r], seed, plast_trainer_epochs(env.t), hash)) {
            note(co, i, n, r, seed, 1);
            ex = EXIT_OK;
        } else {
            note(co, i, n, r, seed, 0);
            ex = cli_train_run(&rs.o, env.cfg, env.t, &status);
            if (status == PLAST_E_DIVERGED)
                ex = EXIT_OK; /* reported in the table */
        }
    }
    run_env_destroy(&env);
    free(rs.o.sets);
    return ex;
}

static int nseeds_of(const compare_opts *co)
{
    return co->seeds ? co->nseeds : 1;
}

static uint64_t seed_of(const compare_opts *co, int r, int s)
{
    return co->seeds ? co->seeds[s] : co->rule_seed[r];
}

static int run_all(const compare_opts *co)
{
    int n = co->nrules * nseeds_of(co), i = 0;
    for (int r = 0; r < co->nrules; r++)
        for (int s = 0; s < nseeds_of(co); s++) {
            int ex = run_one(co, r, seed_of(co, r, s), ++i, n);
            if (ex)
                return ex;
        }
    return EXIT_OK;
}

/* ---- the report, from the logs ---- */

typedef struct report {
    rule_row *rows;
    int n;
    char acc_title[512], mem_title[512];
} report;

static int read_rule(const compare_opts *co, int r, rule_row *row, plast_err *e)
{
    int n = nseeds_of(co), rc = PLAST_OK, k = 0;
    run_log *runs = calloc((size_t)n, sizeof *runs);
    if (!runs)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory reading the logs");
    for (; k < n && !rc; k++) {
        char path[PATH_LEN + 256];
        snprintf(path, sizeof path, "%s/%s-s%llu.jsonl", co->out_abs, co->rules[r],
                 (unsigned long long)seed_of(co, r, k));
        rc = run_log_read(&runs[k], path, e);
        if (rc == PLAST_E_PARSE)
            e->code = rc = PLAST_E_DATA;
        else if (!rc && run_log_status(&runs[k]) == RUN_INCOMPLETE)
            rc = plast_err_at(e, PLAST_E_DATA, path, 0, "expected a complete log, found none");
    }
    if (!rc)
        rc = report_row(row, runs, n, e);
    for (int i = 0; i < k; i++)
        run_log_free(&runs[i]);
    free(runs);
    return rc;
}

static int write_md(FILE *f, const void *ctx, plast_err *e)
{
    const report *rp = ctx;
    (void)e;
    report_markdown(f, rp->rows, rp->n);
    return PLAST_OK;
}

static int write_csv(FILE *f, const void *ctx, plast_err *e)
{
    const report *rp = ctx;
    (void)e;
    report_csv(f, rp->rows, rp->n);
    return PLAST_OK;
}

static int write_acc(FILE *f, const void *ctx, plast_err *e)
{
    const report *rp = ctx;
    return report_accuracy_svg(f, rp->rows, rp->n, rp->acc_title, e);
}

static int write_mem(FILE *f, const void *ctx, plast_err *e)
{
    const report *rp = ctx;
    return report_memory_svg(f, rp->rows, rp->n, rp->mem_title, e);
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd); /* best effort: makes the rename durable */
        close(fd);
    }
}

typedef int (*write_fn)(FILE *f, const void *ctx, plast_err *e);

/* DIR/NAME replaced atomically: a temporary file, fsync, rename. */
static int write_atomic(const char *dir, const char *name, write_fn fn, const void *ctx,
                        plast_err *e)
{
    char path[PATH_LEN + 64], tmp[PATH_LEN + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, name);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return plast_err_at(e, PLAST_E_IO, path, 0, "cannot create: %s", strerror(errno));
    mode_t mask = umask(0);
    umask(mask);
    FILE *f = fchmod(fd, 0666 & ~mask) ? NULL : fdopen(fd, "w");
    if (!f) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return plast_err_at(e, PLAST_E_IO, path, 0, "cannot create: %s", strerror(err));
    }
    int rc = fn(f, ctx, e);
    if (!rc && (fflush(f) || ferror(f) || fsync(fileno(f))))
        rc = plast_err_at(e, PLAST_E_IO, path, 0, "cannot write: %s", strerror(errno));
    if (fclose(f) && !rc)
        rc = plast_err_at(e, PLAST_E_IO, path, 0, "cannot write: %s", strerror(errno));
    if (!rc && rename(tmp, path))
        rc = plast_err_at(e, PLAST_E_IO, path, 0, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc)
        unlink(tmp);
    else
        sync_dir(dir);
    return rc;
}

static void titles(const compare_opts *co, report *rp)
{
    const char *base = strrchr(co->ini, '/');
    int n = nseeds_of(co);
    base = base ? base + 1 : co->ini;
    snprintf(rp->acc_title, sizeof rp->acc_title, "Test accuracy per epoch: %s (mean of %d seed%s)",
             base, n, n == 1 ? "" : "s");
    snprintf(rp->mem_title, sizeof rp->mem_title,
             "Peak memory per category while training: %s (largest of %d seed%s)", base, n,
             n == 1 ? "" : "s");
}

static int write_outputs(const compare_opts *co, const report *rp)
{
    static const char *const names[] = {"compare.md", "compare.csv", "accuracy.svg",
                                        "memory.svg"};
    static const write_fn fns[] = {write_md, write_csv, write_acc, write_mem};
    plast_err e;
    for (int i = 0; i < 4; i++)
        if (write_atomic(co->out_abs, names[i], fns[i], rp, &e)) {
            cli_fail(&e);
            return e.code == PLAST_E_NOMEM ? EXIT_TRAINING : EXIT_CANTCREAT;
        }
    if (co->progress != PROGRESS_NONE)
        fprintf(stderr, "wrote %s/compare.md, compare.csv, accuracy.svg and memory.svg\n",
                co->out);
    return EXIT_OK;
}

static int make_report(const compare_opts *co)
{
    report rp;
    plast_err e;
    int ex = EXIT_OK, r = 0;
    memset(&rp, 0, sizeof rp);
    if (!(rp.rows = calloc((size_t)co->nrules, sizeof *rp.rows)))
        return out_of_memory();
    for (; r < co->nrules && !ex; r++)
        if (read_rule(co, r, &rp.rows[r], &e))
            ex = cli_fail(&e);
    rp.n = co->nrules;
    if (!ex) {
        report_gaps(rp.rows, rp.n);
        titles(co, &rp);
        report_markdown(stdout, rp.rows, rp.n);
        fflush(stdout);
        ex = write_outputs(co, &rp);
    }
    for (int i = 0; i < r; i++)
        report_row_free(&rp.rows[i]);
    free(rp.rows);
    return ex;
}

int cmd_compare(int argc, char **argv)
{
    compare_opts co;
    memset(&co, 0, sizeof co);
    int ex = parse_compare_opts(argc, argv, &co);
    if (!ex && !co.help && !(ex = check_rules(&co)) && !(ex = make_out_dir(&co)) &&
        !(ex = run_all(&co)))
        ex = make_report(&co);
    free_compare_opts(&co);
    return ex < 0 ? cli_exit_interrupted() : ex;
}
