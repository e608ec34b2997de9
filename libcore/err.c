/* err.c - status strings and the error record. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plast/err.h"

const char *plast_status_str(int code)
{
    switch (code) {
    case PLAST_OK: return "ok";
    case PLAST_E_NOMEM: return "out of memory";
    case PLAST_E_INVAL: return "invalid argument";
    case PLAST_E_IO: return "input/output error";
    case PLAST_E_PARSE: return "bad configuration";
    case PLAST_E_PLUGIN: return "plug-in error";
    case PLAST_E_ABI: return "plug-in ABI mismatch";
    case PLAST_E_UNSUPPORTED: return "not supported";
    case PLAST_E_DATA: return "bad data";
    case PLAST_E_DIVERGED: return "training diverged";
    case PLAST_E_CANCELED: return "canceled";
    case PLAST_E_NOENT: return "no such file";
    default: return "unknown error";
    }
}

static void err_vset(plast_err *e, int code, const char *file, int line, const char *fmt,
                     va_list ap)
{
    e->code = code;
    e->line = line;
    snprintf(e->file, sizeof e->file, "%s", file ? file : "");
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

int plast_err_set(plast_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        err_vset(e, code, NULL, 0, fmt, ap);
        va_end(ap);
    }
    return code;
}

int plast_err_at(plast_err *e, int code, const char *file, int line, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        err_vset(e, code, file, line, fmt, ap);
        va_end(ap);
    }
    return code;
}

void plast_err_clear(plast_err *e)
{
    if (e)
        memset(e, 0, sizeof *e);
}

int plast_err_wrap(plast_err *e, const char *file, int line, const char *prefix)
{
    if (!e)
        return PLAST_E_INVAL;
    size_t np = strlen(prefix), nm = strlen(e->msg), cap = sizeof e->msg - 1;
    if (np > cap)
        np = cap;
    if (np + nm > cap)
        nm = cap - np;
    memmove(e->msg + np, e->msg, nm);
    memcpy(e->msg, prefix, np);
    e->msg[np + nm] = '\0';
    if (file) {
        snprintf(e->file, sizeof e->file, "%s", file);
        e->line = line;
    }
    return e->code;
}

const char *plast_err_format(const plast_err *e, char *buf, size_t n)
{
    if (e->file[0] && e->line > 0)
        snprintf(buf, n, "%s:%d: %s", e->file, e->line, e->msg);
    else if (e->file[0])
        snprintf(buf, n, "%s: %s", e->file, e->msg);
    else
        snprintf(buf, n, "%s", e->msg[0] ? e->msg : plast_status_str(e->code));
    return buf;
}

void plast_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "plast: internal error: %s:%d: assertion '%s' failed\n", file, line, expr);
    abort();
}
