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

/* Registry with PLAST_PLUGIN_VERBOSE lines sent to stderr. */
int cli_registry(plast_registry **out, plast_err *e);

/* JSON helpers: a double as %.9g or null when not finite. */
void json_num(FILE *f, const char *key, double v, int comma);

#endif
