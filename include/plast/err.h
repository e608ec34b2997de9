/* plast/err.h - status codes and the caller-owned error record.
 *
 * Every fallible plast function returns PLAST_OK (0) or a negative
 * plast_status and takes a `plast_err *e` last.  On failure the record holds
 * one lower-case line without a final period; `file` and `line` name the
 * input at fault when there is one (line 0 = none).  `e` may be NULL.
 * The library never prints and never exits. */
#ifndef PLAST_ERR_H
#define PLAST_ERR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PLAST_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define PLAST_EXPORT __attribute__((visibility("default")))
#else
#define PLAST_PRINTF(fmt, args)
#define PLAST_EXPORT
#endif

typedef enum plast_status {
    PLAST_OK = 0,
    PLAST_E_NOMEM = -1,       /* an allocation failed */
    PLAST_E_INVAL = -2,       /* invalid argument or shape */
    PLAST_E_IO = -3,          /* read, write or rename failed */
    PLAST_E_PARSE = -4,       /* bad INI text or value */
    PLAST_E_PLUGIN = -5,      /* plug-in missing or refused */
    PLAST_E_ABI = -6,         /* plug-in built for another ABI */
    PLAST_E_UNSUPPORTED = -7, /* rule or layer cannot do this */
    PLAST_E_DATA = -8,        /* bad data or checkpoint file */
    PLAST_E_DIVERGED = -9,    /* NaN or Inf in loss or weights */
    PLAST_E_CANCELED = -10,   /* should_stop asked to stop */
    PLAST_E_NOENT = -11       /* input file does not exist */
} plast_status;

typedef struct plast_err {
    int code;       /* plast_status */
    int line;       /* 1-based line in `file`, 0 = none */
    char file[256]; /* input at fault, "" = none */
    char msg[256];  /* one line, lower-case, no final period */
} plast_err;

/* Never NULL: "ok", "out of memory", ... */
const char *plast_status_str(int code);

/* Fill `e` (if not NULL) and return `code`, so callers can write
 * `return plast_err_set(e, PLAST_E_INVAL, "...")`. */
int plast_err_set(plast_err *e, int code, const char *fmt, ...) PLAST_PRINTF(3, 4);
int plast_err_at(plast_err *e, int code, const char *file, int line,
                 const char *fmt, ...) PLAST_PRINTF(5, 6);
void plast_err_clear(plast_err *e);
/* Prepend `prefix` to e->msg (cut to fit) and, when `file` is not NULL,
 * set the file and line; returns e->code.  `e` may be NULL. */
int plast_err_wrap(plast_err *e, const char *file, int line, const char *prefix);

/* Format `e` as "FILE:LINE: msg", "FILE: msg" or "msg" into buf. */
const char *plast_err_format(const plast_err *e, char *buf, size_t n);

/* Always-on check for programmer errors: prints and aborts. */
void plast_assert_fail(const char *expr, const char *file, int line);
#define PLAST_ASSERT(c) ((c) ? (void)0 : plast_assert_fail(#c, __FILE__, __LINE__))

#ifdef __cplusplus
}
#endif
#endif
