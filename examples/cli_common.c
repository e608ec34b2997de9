/* cli_common.c - exit codes, error lines, the registry, JSON numbers. */
#include "config.h"

#include <math.h>
#include <stdio.h>

#include "cli.h"

int cli_exit_code(int status)
{
    switch (status) {
    case PLAST_OK: return EXIT_OK;
    case PLAST_E_NOMEM:
    case PLAST_E_DIVERGED: return EXIT_TRAINING;
    case PLAST_E_IO: return EXIT_IOERR;
    case PLAST_E_PARSE:
    case PLAST_E_PLUGIN:
    case PLAST_E_ABI:
    case PLAST_E_UNSUPPORTED: return EXIT_CONFIG;
    case PLAST_E_DATA: return EXIT_DATAERR;
    case PLAST_E_NOENT: return EXIT_NOINPUT;
    default: return EXIT_SOFTWARE;
    }
}

/* Messages quote bad input (a line of an INI file, a CSV field): its
 * control characters are written as \xNN, never sent to the terminal. */
static void put_visible(const char *s, FILE *f)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

int cli_fail(const plast_err *e)
{
    char buf[600];
    plast_err_format(e, buf, sizeof buf);
    /* "plast:FILE:LINE: msg" when a file is named, else "plast: msg" */
    fputs(e->file[0] ? "plast:" : "plast: ", stderr);
    put_visible(buf, stderr);
    fputc('\n', stderr);
    return cli_exit_code(e->code);
}

static void log_to_stderr(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "%s\n", line);
}

int cli_registry(plast_registry **out, plast_err *e)
{
    int rc = plast_registry_create(out, e);
    if (rc == PLAST_OK)
        plast_registry_set_log(*out, log_to_stderr, NULL);
    return rc;
}

void json_num(FILE *f, const char *key, double v, int comma)
{
    if (isfinite(v))
        fprintf(f, "%s\"%s\":%.9g", comma ? "," : "", key, v);
    else
        fprintf(f, "%s\"%s\":null", comma ? "," : "", key);
}
