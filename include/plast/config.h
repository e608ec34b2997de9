/* plast/config.h - INI configuration and typed parameter schemas.
 *
 * A plast_config holds the text of an INI file (sections in file order,
 * each key with its line).  A schema (array of plast_setting ending with a
 * NULL key) declares what one section accepts; plast_args_parse() checks a
 * section against it and returns typed values.  Errors are one line naming
 * FILE:LINE, the section and key, what was expected and what was found. */
#ifndef PLAST_CONFIG_H
#define PLAST_CONFIG_H

#include <stdint.h>
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum plast_stype {
    PLAST_S_INT = 1,
    PLAST_S_REAL,
    PLAST_S_BOOL,   /* true/false, yes/no, on/off, 1/0 */
    PLAST_S_STRING,
    PLAST_S_ENUM    /* one of `choices` */
} plast_stype;

enum {
    PLAST_S_REQUIRED = 1, /* no default: the key must be given */
    PLAST_S_MIN_OPEN = 2, /* min excluded: (min, max] */
    PLAST_S_MAX_OPEN = 4  /* max excluded */
};

typedef struct plast_setting {
    const char *key;              /* [a-z0-9_]+; NULL ends the array */
    plast_stype type;
    const char *def;              /* default as INI text; NULL if REQUIRED */
    double min, max;              /* INT and REAL; min > max = unbounded */
    const char *const *choices;   /* ENUM: NULL-terminated */
    unsigned flags;
    const char *help;             /* one line */
} plast_setting;

/* ---- the INI text ---- */

typedef struct plast_config plast_config;

/* Read `path` with inih.  Repeated keys and repeated sections are errors;
 * a missing file is PLAST_E_NOENT. */
int plast_config_load(plast_config **out, const char *path, plast_err *e);
/* Parse INI text from memory; `name` is used in messages. */
int plast_config_parse_string(plast_config **out, const char *name, const char *text,
                              plast_err *e);
void plast_config_destroy(plast_config *c);

/* Set or replace SECTION.KEY = VALUE (command-line --set); `origin` names it
 * in messages ("--set").  The dot before KEY is the last one in `path`. */
int plast_config_set(plast_config *c, const char *section, const char *key,
                     const char *value, const char *origin, plast_err *e);
/* Apply one "SECTION.KEY=VALUE" (plast train --set): the key is after the
 * first dot, or after the second for [layer.NAME] and [rule.NAME] (so
 * rule.drtp.optimizer.lr sets optimizer.lr in [rule.drtp]). */
int plast_config_set_spec(plast_config *c, const char *spec, const char *origin, plast_err *e);
const char *plast_config_file(const plast_config *c);
/* Directory of the file ("." if none), to resolve relative paths. */
const char *plast_config_dir(const plast_config *c);

int plast_config_nsections(const plast_config *c);
const char *plast_config_section_name(const plast_config *c, int i);
int plast_config_section_line(const plast_config *c, int i);
int plast_config_has_section(const plast_config *c, const char *section);
/* Raw value of a key, or NULL; *line gets its line if not NULL. */
const char *plast_config_get(const plast_config *c, const char *section, const char *key,
                             int *line);
int plast_config_nkeys(const plast_config *c, const char *section);
const char *plast_config_key(const plast_config *c, const char *section, int i,
                             const char **value, int *line);

/* ---- validated values ---- */

typedef struct plast_args plast_args;

/* Validate `section` against `schema` (plus `extra`, may be NULL: e.g. the
 * keys every layer accepts).  Keys starting with one of the prefixes in
 * `skip_prefixes` (NULL-terminated, may be NULL) are left to another
 * parser.  A missing section is allowed (all defaults) unless a key is
 * REQUIRED. */
int plast_args_parse(plast_args **out, const plast_config *c, const char *section,
                     const plast_setting *schema, const plast_setting *extra,
                     const char *const *skip_prefixes, plast_err *e);
/* Defaults only (for `plast rules --describe` and tests). */
int plast_args_defaults(plast_args **out, const plast_setting *schema, plast_err *e);
void plast_args_destroy(plast_args *a);

/* Getters: the key must be declared with that type (else PLAST_ASSERT). */
double plast_args_real(const plast_args *a, const char *key);
int64_t plast_args_int(const plast_args *a, const char *key);
int plast_args_bool(const plast_args *a, const char *key);
const char *plast_args_str(const plast_args *a, const char *key);    /* STRING, ENUM */
int plast_args_enum(const plast_args *a, const char *key);           /* index in choices */
/* 1 if the key was given in the file (not defaulted). */
int plast_args_given(const plast_args *a, const char *key);
/* Line of the key (or of the section header if defaulted), 0 if none. */
int plast_args_line(const plast_args *a, const char *key);
const char *plast_args_section(const plast_args *a);
const char *plast_args_file(const plast_args *a);

/* Check a schema: unique valid keys, defaults parse and are in range. */
int plast_schema_check(const plast_setting *schema, const char *owner, plast_err *e);

#ifdef __cplusplus
}
#endif
#endif
