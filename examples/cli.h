/* cli.h - the plast command's pieces (private to examples/). */
#ifndef PLAST_CLI_H
#define PLAST_CLI_H

#include <stdio.h>

#include <plast/plast.h>

/* Exit codes (sysexits.h values; documented in plast(1)). */
enum {
    EXIT_OK = 0,
    EXIT_TRAINING = 1,   /* training failed: diverged, out of memory */
    EXIT_USAGE = 64,
    EXIT_DATAERR = 65,   /* bad data or checkpoint */
    EXIT_NOINPUT = 66,   /* cannot open an input */
    EXIT_SOFTWARE = 70,  /* internal error */
    EXIT_CANTCREAT = 73, /* cannot create an output */
    EXIT_IOERR = 74,
    EXIT_CONFIG = 78     /* bad INI file or plug-in refused */
};

int cli_exit_code(int status);
/* "plast:FILE:LINE: msg" on stderr; returns the exit code for e. */
int cli_fail(const plast_err *e);
int cli_usage_error(const char *fmt, ...) PLAST_PRINTF(1, 2);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_rules(int argc, char **argv);
int cmd_compare(int argc, char **argv);

/* ---- one training run, shared by train and compare (cli_train.c) ---- */

enum { PROGRESS_AUTO, PROGRESS_BAR, PROGRESS_LINES, PROGRESS_NONE };

typedef struct train_opts {
    const char *ini;
    const char *resume;
    const char *checkpoint; /* eval: the weights; train: [run] checkpoint */
    int progress;
    int quiet;              /* no summary table on stdout */
    int nsets;
    char **sets;            /* "section.key=value", applied in order */
} train_opts;

/* "auto", "bar", "lines", "none" -> PROGRESS_*; -1 if none of them. */
int cli_parse_progress(const char *v, int *out);
/* Load o->ini, apply o->sets, build the trainer (which applies the rule
 * section's overrides to *cfg).  The caller destroys all three. */
int cli_setup(const train_opts *o, plast_config **cfg, plast_registry **reg, plast_trainer **t,
              plast_err *e);
/* Train as `plast train` does: progress, the JSONL log ([run] log: meta,
 * epochs, summary), the summary table unless o->quiet, the error line.
 * *status gets the trainer's plast_status.  Returns the exit code, or -1
 * after an interrupt (then end with cli_exit_interrupted()). */
int cli_train_run(const train_opts *o, const plast_config *cfg, plast_trainer *t, int *status);
/* Die by the signal that stopped training; returns only if it cannot. */
int cli_exit_interrupted(void);

/* Registry with PLAST_PLUGIN_VERBOSE lines sent to stderr. */
int cli_registry(plast_registry **out, plast_err *e);

/* ---- fatal signals (cli_crash.c) ---- */

enum { CLI_PHASE_NONE, CLI_PHASE_SETUP, CLI_PHASE_TRAIN };
/* Handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT that name the
 * rule plug-in in use (one line on stderr) and die of the same signal. */
void cli_crash_install(void);
/* Find the rule cfg selects (loading its plug-in) and remember its file
 * and code; errors are left for the trainer to report. */
void cli_crash_watch_rule(const plast_config *cfg, plast_registry *reg);
/* What the run is doing now (CLI_PHASE_*): named in the crash line. */
void cli_crash_phase(int phase);

/* JSON helpers: a double as %.9g or null when not finite. */
void json_num(FILE *f, const char *key, double v, int comma);

#endif
