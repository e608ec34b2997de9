/* cli_train.c - `plast train` and `plast eval`: options, progress, the
 * JSON-lines log and the final summary. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "report.h"

#define MAX_EPOCHS_KEPT 100000
#define POOL_N 8       /* shorthand options kept as --set lines */
#define POOL_LEN 4200

typedef struct run_state {
    FILE *log;
    const plast_config *cfg; /* as the trainer applied it: fingerprinted in the log */
    int bar;                /* draw a live bar on stderr */
    int progress;
    int quiet;              /* no summary table on stdout */
    double last_draw;
    int bar_shown;
    plast_trainer *t;
    int nepochs;
    double *epoch_s;        /* seconds of each epoch */
    double final_test_acc, best_test_acc;
    size_t peak[PLAST_MEM_NCAT], peak_act_input, eval_peak_act_input, rss_peak;
    size_t rss_before;
} run_state;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static int should_stop(void *user)
{
    (void)user;
    return stop_signal != 0;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static const char *mib(size_t bytes, char *buf, size_t n)
{
    snprintf(buf, n, "%.2f MiB", (double)bytes / (1024.0 * 1024.0));
    return buf;
}

/* ---- progress ---- */

static void clear_bar(run_state *s)
{
    if (s->bar_shown) {
        fputs("\r\033[K", stderr);
        s->bar_shown = 0;
    }
}

static void on_batch(void *user, int epoch, uint64_t batch, uint64_t batches, double loss,
                     double acc)
{
    run_state *s = user;
    if (!s->bar)
        return;
    double t = now_s();
    if (t - s->last_draw < 0.1 && batch < batches)
        return; /* at most 10 redraws a second */
    s->last_draw = t;
    int width = 24, done = (int)((double)width * (double)batch / (double)batches);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < done ? '=' : (i == done ? '>' : ' ');
    bar[width] = '\0';
    fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %llu/%llu loss %.4f acc %.2f%%", epoch,
            plast_trainer_epochs(s->t), bar, (unsigned long long)batch,
            (unsigned long long)batches, loss, 100.0 * acc);
    s->bar_shown = 1;
}

static void log_epoch(run_state *s, const plast_epoch_report *r)
{
    FILE *f = s->log;
    fprintf(f, "{\"type\":\"epoch\",\"epoch\":%d", r->epoch);
    json_num(f, "train_s", r->train_s, 1);
    json_num(f, "samples_per_s", r->samples_per_s, 1);
    json_num(f, "lr", r->lr, 1);
    json_num(f, "train_loss", r->train_loss, 1);
    json_num(f, "train_acc", r->train_acc, 1);
    json_num(f, "val_loss", r->val_loss, 1);
    json_num(f, "val_acc", r->val_acc, 1);
    json_num(f, "test_loss", r->test_loss, 1);
    json_num(f, "test_acc", r->test_acc, 1);
    fputs(",\"mem_peak_bytes\":{", f);
    for (int c = 0; c < PLAST_MEM_NCAT; c++)
        fprintf(f, "%s\"%s\":%zu", c ? "," : "", plast_mem_cat_name((plast_mem_cat)c),
                r->train_peak[c]);
    fprintf(f, ",\"total\":%zu,\"activations+input\":%zu}", r->train_peak_total,
            r->train_peak_act_input);
    fprintf(f, ",\"eval_peak_act_input_bytes\":%zu,\"rss_peak_bytes\":%zu}\n",
            r->eval_peak_act_input, r->rss_peak_bytes);
    fflush(f);
}

static void on_epoch(void *user, const plast_epoch_report *r)
{
    run_state *s = user;
    clear_bar(s);
    if (s->nepochs < MAX_EPOCHS_KEPT)
        s->epoch_s[s->nepochs++] = r->train_s;
    s->final_test_acc = r->test_acc;
    if (isfinite(r->test_acc) && !(r->test_acc <= s->best_test_acc))
        s->best_test_acc = r->test_acc;
    for (int c = 0; c < PLAST_MEM_NCAT; c++)
        if (r->train_peak[c] > s->peak[c])
            s->peak[c] = r->train_peak[c];
    if (r->train_peak_act_input > s->peak_act_input)
        s->peak_act_input = r->train_peak_act_input;
    if (r->eval_peak_act_input > s->eval_peak_act_input)
        s->eval_peak_act_input = r->eval_peak_act_input;
    s->rss_peak = r->rss_peak_bytes;
    if (s->log)
        log_epoch(s, r);
    if (s->progress == PROGRESS_NONE)
        return;
    char m[32];
    fprintf(stderr, "epoch %d/%d  loss %.4f  train %.2f%%", r->epoch, r->epochs, r->train_loss,
            100 * r->train_acc);
    if (isfinite(r->val_acc))
        fprintf(stderr, "  val %.2f%%", 100 * r->val_acc);
    if (isfinite(r->test_acc))
        fprintf(stderr, "  test %.2f%%", 100 * r->test_acc);
    fprintf(stderr, "  %.2f s  %.0f samples/s  act+input peak %s\n", r->train_s,
            r->samples_per_s, mib(r->train_peak_act_input, m, sizeof m));
}

/* ---- the log's first and last records ---- */

/* Elements of the model's parameters (buffers such as running statistics
 * excluded), without the flat array's rounding. */
static size_t primary_params(plast_model *m)
{
    size_t n = 0;
    for (int i = 0; i < plast_model_nlayers(m); i++) {
        const plast_layer *l = plast_model_layer(m, i);
        for (int p = 0; p < l->nparams; p++)
            if (!(l->param[p].flags & PLAST_PARAM_BUFFER))
                n += l->param[p].count;
    }
    return n;
}

static void log_meta(run_state *s, const train_opts *o)
{
    plast_trainer *t = s->t;
    plast_model *m = plast_trainer_model(t);
    FILE *f = s->log;
    fprintf(f,
            "{\"type\":\"meta\",\"version\":\"%s\",\"abi\":%u,\"config\":\"%s\",\"rule\":\"%s\","
            "\"rule_file\":\"%s\",\"seed\":%llu,\"threads\":%d,\"batch\":%d,\"epochs\":%d,"
            "\"ftz\":%s,\"params\":%zu,\"params_primary\":%zu,\"params_aux\":%zu,"
            "\"flops_per_sample\":%llu,\"bytes_per_sample\":%llu,\"train_samples\":%zu,"
            "\"test_samples\":%zu,\"forward_passes_per_update\":%d,\"config_hash\":\"%016llx\","
            "\"resumed\":%s}\n",
            plast_version(), PLAST_ABI_VERSION, o->ini, plast_trainer_rule_name(t),
            plast_trainer_rule_file(t), (unsigned long long)plast_trainer_seed(t),
            plast_trainer_threads(t), plast_trainer_batch(t), plast_trainer_epochs(t),
            plast_trainer_flush_denormals(t) ? "true" : "false", plast_model_nparams(m),
            primary_params(m), plast_trainer_aux_params(t), (unsigned long long)plast_model_flops(m),
            (unsigned long long)plast_model_bytes(m), plast_trainer_train_samples(t),
            plast_trainer_test_samples(t), plast_trainer_forwards_per_update(t),
            (unsigned long long)report_config_hash(s->cfg), o->resume ? "true" : "false");
    fflush(f);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void epoch_times(run_state *s, double *median, double *lo, double *hi)
{
    *median = *lo = *hi = NAN;
    if (!s->nepochs)
        return;
    double *v = malloc((size_t)s->nepochs * sizeof *v);
    if (!v)
        return;
    memcpy(v, s->epoch_s, (size_t)s->nepochs * sizeof *v);
    qsort(v, (size_t)s->nepochs, sizeof *v, cmp_double);
    *median = v[s->nepochs / 2];
    *lo = v[0];
    *hi = v[s->nepochs - 1];
    free(v);
}

static void log_summary(run_state *s, double med, double lo, double hi, int status)
{
    FILE *f = s->log;
    double delta = s->rss_peak > s->rss_before ? (double)(s->rss_peak - s->rss_before) : 0;
    fprintf(f, "{\"type\":\"summary\",\"status\":\"%s\",\"epochs_run\":%d",
            status ? plast_status_str(status) : "ok", s->nepochs);
    json_num(f, "epoch_s_median", med, 1);
    json_num(f, "epoch_s_min", lo, 1);
    json_num(f, "epoch_s_max", hi, 1);
    json_num(f, "final_test_acc", s->final_test_acc, 1);
    json_num(f, "best_test_acc", s->best_test_acc, 1);
    json_num(f, "train_peak_delta_mb", delta / 1e6, 1);
    fputs(",\"mem_peak_bytes\":{", f);
    for (int c = 0; c < PLAST_MEM_NCAT; c++)
        fprintf(f, "%s\"%s\":%zu", c ? "," : "", plast_mem_cat_name((plast_mem_cat)c), s->peak[c]);
    fprintf(f, ",\"activations+input\":%zu},\"rss_peak_bytes\":%zu}\n", s->peak_act_input,
            s->rss_peak);
    fflush(f);
}

static void print_summary(run_state *s, double med, double lo, double hi)
{
    plast_trainer *t = s->t;
    char m[32];
    printf("\n| %-28s | %s |\n|---|---|\n", "plast run", plast_trainer_rule_name(t));
    printf("| %-28s | %d |\n", "epochs", s->nepochs);
    if (isfinite(s->final_test_acc))
        printf("| %-28s | %.2f %% (best %.2f %%) |\n", "final test accuracy",
               100 * s->final_test_acc, 100 * s->best_test_acc);
    if (isfinite(med))
        printf("| %-28s | %.3f (%.3f-%.3f) |\n", "s/epoch median (min-max)", med, lo, hi);
    for (int c = 0; c < PLAST_MEM_NCAT; c++)
        if (s->peak[c])
            printf("| peak %-23s | %s |\n", plast_mem_cat_name((plast_mem_cat)c),
                   mib(s->peak[c], m, sizeof m));
    printf("| %-28s | %s (%zu bytes) |\n", "peak activations+input", mib(s->peak_act_input, m,
           sizeof m), s->peak_act_input);
    printf("| %-28s | %s |\n", "peak RSS", mib(s->rss_peak, m, sizeof m));
}

/* ---- options ---- */

int cli_parse_progress(const char *v, int *out)
{
    static const char *const names[] = {"auto", "bar", "lines", "none"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    return -1;
}

static int add_set(train_opts *o, char *spec)
{
    char **n = realloc(o->sets, (size_t)(o->nsets + 1) * sizeof *n);
    if (!n)
        return -1;
    o->sets = n;
    o->sets[o->nsets++] = spec;
    return 0;
}

/* Shorthand options become --set lines in a fixed buffer pool. */
static int add_shorthand(train_opts *o, char pool[][POOL_LEN], int *used, const char *key,
                         const char *value)
{
    if (*used >= POOL_N)
        return -1;
    snprintf(pool[*used], POOL_LEN, "%s=%s", key, value);
    return add_set(o, pool[(*used)++]);
}

/* --log and --checkpoint name files relative to the working directory,
 * whereas INI paths are relative to the INI file: make them absolute. */
static int add_path_shorthand(train_opts *o, char pool[][POOL_LEN], int *used, const char *key,
                              const char *path)
{
    char cwd[2048], abs[POOL_LEN - 64];
    if (path[0] == '/' || !getcwd(cwd, sizeof cwd))
        return add_shorthand(o, pool, used, key, path);
    snprintf(abs, sizeof abs, "%s/%s", cwd, path);
    return add_shorthand(o, pool, used, key, abs);
}

static int parse_train_opts(int argc, char **argv, train_opts *o, char pool[][POOL_LEN], int eval)
{
    static const struct option opts[] = {
        {"rule", required_argument, NULL, 'r'},   {"epochs", required_argument, NULL, 'e'},
        {"seed", required_argument, NULL, 's'},   {"threads", required_argument, NULL, 't'},
        {"set", required_argument, NULL, 'S'},    {"resume", required_argument, NULL, 'R'},
        {"log", required_argument, NULL, 'l'},    {"checkpoint", required_argument, NULL, 'c'},
        {"progress", required_argument, NULL, 'p'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, used = 0, bad = 0;
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "r:e:s:t:S:h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': bad = add_shorthand(o, pool, &used, "rule.name", optarg); break;
        case 'e': bad = add_shorthand(o, pool, &used, "run.epochs", optarg); break;
        case 's': bad = add_shorthand(o, pool, &used, "run.seed", optarg); break;
        case 't': bad = add_shorthand(o, pool, &used, "run.threads", optarg); break;
        case 'l': bad = add_path_shorthand(o, pool, &used, "run.log", optarg); break;
        case 'S': bad = add_set(o, optarg); break;
        case 'R': o->resume = optarg; break;
        case 'c': o->checkpoint = optarg; break;
        case 'p':
            if (cli_parse_progress(optarg, &o->progress))
                return cli_usage_error("--progress: expected auto, bar, lines or none, found '%s'",
                                       optarg);
            break;
        case 'h':
            printf(eval ? "Usage: plast eval FILE.ini --checkpoint CKPT [--set SEC.KEY=VAL]...\n"
                        : "Usage: plast train FILE.ini [OPTION]... (see plast --help)\n");
            exit(EXIT_OK);
        default:
            return cli_usage_error("%s: unrecognized option '%s'", eval ? "eval" : "train",
                                   argv[optind - 1]);
        }
        if (bad)
            return cli_usage_error("too many options");
    }
    if (optind != argc - 1)
        return cli_usage_error(optind >= argc ? "%s: missing FILE.ini"
                                              : "%s: expected one FILE.ini",
                               eval ? "eval" : "train");
    o->ini = argv[optind];
    if (eval && !o->checkpoint)
        return cli_usage_error("eval: missing --checkpoint CKPT");
    if (!eval && o->checkpoint)
        add_path_shorthand(o, pool, &used, "run.checkpoint", o->checkpoint);
    return EXIT_OK;
}

int cli_setup(const train_opts *o, plast_config **cfg, plast_registry **reg, plast_trainer **t,
              plast_err *e)
{
    int rc = plast_config_load(cfg, o->ini, e);
    for (int i = 0; i < o->nsets && !rc; i++)
        rc = plast_config_set_spec(*cfg, o->sets[i], "--set", e);
    if (!rc)
        rc = cli_registry(reg, e);
    if (rc)
        return rc;
    /* a plug-in that crashes in create() is named on stderr */
    cli_crash_install();
    cli_crash_watch_rule(*cfg, *reg);
    cli_crash_phase(CLI_PHASE_SETUP);
    rc = plast_trainer_create(t, *cfg, *reg, e);
    cli_crash_phase(CLI_PHASE_NONE);
    return rc;
}

static int open_log(run_state *s, const train_opts *o, plast_err *e)
{
    const char *path = plast_trainer_log_path(s->t);
    if (!path[0])
        return PLAST_OK;
    s->log = fopen(path, o->resume ? "a" : "w");
    if (!s->log)
        return plast_err_at(e, PLAST_E_IO, path, 0, "cannot create the log: %s", strerror(errno));
    return PLAST_OK;
}

/* Failing to create an output file is EX_CANTCREAT, not a read error. */
static int fail_output(const plast_err *e)
{
    cli_fail(e);
    return EXIT_CANTCREAT;
}

static int finish(run_state *s, int rc, const plast_err *e)
{
    double med, lo, hi;
    clear_bar(s);
    epoch_times(s, &med, &lo, &hi);
    if (s->log) {
        log_summary(s, med, lo, hi, rc);
        fclose(s->log);
    }
    if ((rc == PLAST_OK || rc == PLAST_E_CANCELED) && !s->quiet)
        print_summary(s, med, lo, hi);
    if (rc == PLAST_E_CANCELED) {
        fflush(stdout);
        fprintf(stderr, "plast: %s; checkpoint %s\n", e->msg,
                plast_trainer_checkpoint_path(s->t)[0] ? plast_trainer_checkpoint_path(s->t)
                                                       : "not configured");
        return -1;
    }
    return rc ? cli_fail(e) : EXIT_OK;
}

/* A line of the rule's description of its set-up, before training. */
static void print_rule_line(void *rule_name, const char *text)
{
    fprintf(stderr, "%s: %s\n", (const char *)rule_name, text);
}

int cli_train_run(const train_opts *o, const plast_config *cfg, plast_trainer *t, int *status)
{
    plast_err e;
    run_state s;
    memset(&s, 0, sizeof s);
    s.final_test_acc = s.best_test_acc = NAN;
    s.t = t;
    s.cfg = cfg;
    s.quiet = o->quiet;
    if ((*status = open_log(&s, o, &e)))
        return fail_output(&e);
    s.epoch_s = calloc(MAX_EPOCHS_KEPT, sizeof *s.epoch_s);
    if (!s.epoch_s) {
        if (s.log)
            fclose(s.log);
        *status = plast_err_set(&e, PLAST_E_NOMEM, "out of memory");
        return cli_fail(&e);
    }
    s.progress = o->progress;
    s.bar = o->progress == PROGRESS_BAR || (o->progress == PROGRESS_AUTO && isatty(STDERR_FILENO));
    if (s.log)
        log_meta(&s, o);
    if (!s.quiet)
        plast_trainer_describe_rule(t, print_rule_line, (void *)plast_trainer_rule_name(t));
    install_signals();
    s.rss_before = rss_now();
    plast_train_hooks h = {&s, should_stop, on_batch, on_epoch};
    cli_crash_phase(CLI_PHASE_TRAIN);
    *status = plast_trainer_run(t, &h, &e);
    cli_crash_phase(CLI_PHASE_NONE);
    int ex = finish(&s, *status, &e);
    free(s.epoch_s);
    return ex;
}

int cli_exit_interrupted(void)
{
    /* die by the same signal so that calling scripts stop too */
    int sig = stop_signal ? stop_signal : SIGINT;
    signal(sig, SIG_DFL);
    raise(sig);
    return 128 + sig;
}

int cmd_train(int argc, char **argv)
{
    char pool[POOL_N][POOL_LEN];
    train_opts o;
    int ex = parse_train_opts(argc, argv, &o, pool, 0);
    if (ex)
        return ex;
    plast_config *cfg = NULL;
    plast_registry *reg = NULL;
    plast_trainer *t = NULL;
    plast_err e;
    int rc = cli_setup(&o, &cfg, &reg, &t, &e);
    if (!rc && o.resume)
        rc = plast_trainer_resume(t, o.resume, &e);
    ex = rc ? cli_fail(&e) : cli_train_run(&o, cfg, t, &rc);
    free(o.sets);
    plast_trainer_destroy(t);
    plast_registry_destroy(reg);
    plast_config_destroy(cfg);
    return ex < 0 ? cli_exit_interrupted() : ex;
}

int cmd_eval(int argc, char **argv)
{
    char pool[POOL_N][POOL_LEN];
    train_opts o;
    int ex = parse_train_opts(argc, argv, &o, pool, 1);
    if (ex)
        return ex;
    plast_config *cfg = NULL;
    plast_registry *reg = NULL;
    plast_trainer *t = NULL;
    plast_err e;
    double loss = NAN, acc = NAN;
    int rc = cli_setup(&o, &cfg, &reg, &t, &e);
    if (!rc)
        rc = plast_trainer_load_weights(t, o.checkpoint, &e);
    if (!rc)
        rc = plast_trainer_evaluate(t, &loss, &acc, &e);
    if (rc) {
        ex = cli_fail(&e);
    } else {
        printf("test loss %.6f\ntest accuracy %.2f %% (%zu samples)\n", loss, 100 * acc,
               plast_trainer_test_samples(t));
        ex = EXIT_OK;
    }
    free(o.sets);
    plast_trainer_destroy(t);
    plast_registry_destroy(reg);
    plast_config_destroy(cfg);
    return ex;
}
