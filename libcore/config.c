/* config.c - INI text read with inih, and typed parameter schemas.
 *
 * inih only reports key lines, so the reader below does the rest of the
 * bookkeeping: it counts lines (the handler has no line number without
 * INI_HANDLER_LINENO, which Debian's build leaves at 0), records every
 * section header in file order (inih gives no callback for them and merges
 * repeated ones), refuses lines inih would cut, and notices key lines inih
 * rejected (the handler was not called for them). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "plast/config.h"

/* inih's buffer is 200 bytes: longer lines are cut silently. */
#define LINE_MAX_CHARS 199

#define SYNTAX_EXPECTED "expected 'key = value' or '[section]'"
#define NAME_CHARS "a-z, 0-9, '_' and '.'"

typedef struct cfg_key {
    char *name;
    char *value;
    char *origin; /* "--set sec.key" for command-line values, NULL = the file */
    int line;     /* 0 for command-line values */
} cfg_key;

typedef struct cfg_section {
    char *name;
    char *origin; /* as in cfg_key: who created the section */
    int line;
    cfg_key *keys;
    int nkeys, cap;
} cfg_section;

struct plast_config {
    char *file;
    char *dir;
    cfg_section *secs;
    int nsecs, cap;
};

/* ---- small helpers ---- */

static int grow_array(void **arr, int *cap, int n, size_t elem)
{
    if (n < *cap)
        return 0;
    int ncap = *cap ? 2 * *cap : 8;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static char *str_printf(const char *fmt, ...) PLAST_PRINTF(1, 2);
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Appending into a fixed message buffer: text past its end is dropped, as
 * plast_err would drop it anyway. */
typedef struct text_buf {
    char *p;
    size_t cap, len;
} text_buf;

static void tb_add(text_buf *b, const char *fmt, ...) PLAST_PRINTF(2, 3);
static void tb_add(text_buf *b, const char *fmt, ...)
{
    if (b->len + 1 >= b->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    b->len += (size_t)n;
    if (b->len > b->cap - 1)
        b->len = b->cap - 1;
}

/* Config names: [a-z0-9_] plus '.' where allowed; never empty. */
static int valid_name(const char *s, int allow_dot)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              (allow_dot && ch == '.')))
            return 0;
    }
    return 1;
}

static int find_section(const plast_config *c, const char *name)
{
    for (int i = 0; i < c->nsecs; i++)
        if (strcmp(c->secs[i].name, name) == 0)
            return i;
    return -1;
}

static int find_key(const cfg_section *s, const char *name)
{
    for (int i = 0; i < s->nkeys; i++)
        if (strcmp(s->keys[i].name, name) == 0)
            return i;
    return -1;
}

static const char *key_file(const plast_config *c, const cfg_key *k)
{
    return k->origin ? k->origin : c->file;
}

static const char *section_file(const plast_config *c, const cfg_section *s)
{
    return s->origin ? s->origin : c->file;
}

/* Returns the new index or -1 (out of memory).  `origin` is taken over. */
static int add_section(plast_config *c, const char *name, int line, char *origin)
{
    if (grow_array((void **)&c->secs, &c->cap, c->nsecs, sizeof *c->secs) != 0)
        return -1;
    cfg_section *s = &c->secs[c->nsecs];
    memset(s, 0, sizeof *s);
    if (!(s->name = strdup(name)))
        return -1;
    s->origin = origin;
    s->line = line;
    return c->nsecs++;
}

/* Returns 0 or -1 (out of memory).  `origin` is taken over on success. */
static int add_key(cfg_section *s, const char *name, const char *value, int line, char *origin)
{
    if (grow_array((void **)&s->keys, &s->cap, s->nkeys, sizeof *s->keys) != 0)
        return -1;
    cfg_key *k = &s->keys[s->nkeys];
    k->name = strdup(name);
    k->value = strdup(value);
    if (!k->name || !k->value) {
        free(k->name);
        free(k->value);
        return -1;
    }
    k->origin = origin;
    k->line = line;
    s->nkeys++;
    return 0;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static plast_config *config_new(const char *file, const char *dir)
{
    plast_config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->file = strdup(file);
    c->dir = dir ? strdup(dir) : dir_of(file);
    if (!c->file || !c->dir) {
        plast_config_destroy(c);
        return NULL;
    }
    return c;
}

void plast_config_destroy(plast_config *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nsecs; i++) {
        cfg_section *s = &c->secs[i];
        for (int j = 0; j < s->nkeys; j++) {
            free(s->keys[j].name);
            free(s->keys[j].value);
            free(s->keys[j].origin);
        }
        free(s->keys);
        free(s->name);
        free(s->origin);
    }
    free(c->secs);
    free(c->file);
    free(c->dir);
    free(c);
}

/* ---- reading INI text ---- */

typedef struct ini_state {
    plast_config *cfg;
    plast_err *e;
    int rc;             /* first error, 0 = none; parsing stops there */
    FILE *fp;           /* the source: a file, or */
    const char *text;   /* the rest of a string */
    char *buf;          /* getline buffer */
    size_t bufcap;
    int lineno;
    int cur;            /* current section index, -1 before the first */
    int kv_pending;     /* the last line should have reached the handler */
    char last[LINE_MAX_CHARS + 1]; /* the last line, blanks stripped */
} ini_state;

static int state_fail(ini_state *st, int code, int line, const char *fmt, ...)
    PLAST_PRINTF(4, 5);
static int state_fail(ini_state *st, int code, int line, const char *fmt, ...)
{
    if (st->rc)
        return st->rc;
    st->rc = code;
    if (st->e) {
        char msg[sizeof st->e->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        plast_err_at(st->e, code, st->cfg->file, line, "%s", msg);
    }
    return code;
}

static int state_nomem(ini_state *st)
{
    return state_fail(st, PLAST_E_NOMEM, 0, "out of memory");
}

/* Next raw line without its terminator: 1, 0 at the end, or an error. */
static int next_raw_line(ini_state *st, const char **line, size_t *len)
{
    if (st->fp) {
        errno = 0;
        ssize_t n = getline(&st->buf, &st->bufcap, st->fp);
        if (n < 0) {
            if (errno == ENOMEM)
                return state_nomem(st);
            if (ferror(st->fp))
                return state_fail(st, PLAST_E_IO, 0, "cannot read: %s", strerror(errno));
            return 0;
        }
        *line = st->buf;
        *len = (size_t)n;
    } else {
        if (!*st->text)
            return 0;
        const char *nl = strchr(st->text, '\n');
        *line = st->text;
        *len = nl ? (size_t)(nl - st->text + 1) : strlen(st->text);
        st->text += *len;
    }
    if (*len > 0 && (*line)[*len - 1] == '\n')
        (*len)--;
    if (*len > 0 && (*line)[*len - 1] == '\r')
        (*len)--;
    return 1;
}

/* A key line inih refused never reached the handler: report it. */
static int check_pending(ini_state *st)
{
    if (!st->kv_pending)
        return 0;
    st->kv_pending = 0;
    return state_fail(st, PLAST_E_PARSE, st->lineno, SYNTAX_EXPECTED ", found \"%s\"", st->last);
}

/* "[name]" with an optional comment after it. */
static int take_section(ini_state *st)
{
    char *close = strchr(st->last, ']');
    const char *rest = close ? close + 1 : NULL;
    while (rest && isspace((unsigned char)*rest))
        rest++;
    if (!rest || (*rest && *rest != ';' && *rest != '#'))
        return state_fail(st, PLAST_E_PARSE, st->lineno, SYNTAX_EXPECTED ", found \"%s\"",
                          st->last);
    char *name = strndup(st->last + 1, (size_t)(close - st->last - 1));
    if (!name)
        return state_nomem(st);
    int rc = 0, prev = find_section(st->cfg, name);
    if (!valid_name(name, 1))
        rc = state_fail(st, PLAST_E_PARSE, st->lineno,
                        "expected a section name made of " NAME_CHARS ", found \"%s\"", name);
    else if (prev >= 0)
        rc = state_fail(st, PLAST_E_PARSE, st->lineno, "section [%s] repeated (first at line %d)",
                        name, st->cfg->secs[prev].line);
    else if ((st->cur = add_section(st->cfg, name, st->lineno, NULL)) < 0)
        rc = state_nomem(st);
    free(name);
    return rc;
}

/* Store the line, blanks stripped, in st->last and classify it. */
static int take_line(ini_state *st, const char *line, size_t len)
{
    if (st->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3; /* UTF-8 byte order mark */
        len -= 3;
    }
    if (memchr(line, '\0', len))
        return state_fail(st, PLAST_E_PARSE, st->lineno, "line contains a nul byte");
    if (len > LINE_MAX_CHARS)
        return state_fail(st, PLAST_E_PARSE, st->lineno, "line longer than %d characters",
                          LINE_MAX_CHARS);
    while (len > 0 && isspace((unsigned char)*line)) {
        line++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)line[len - 1]))
        len--;
    memcpy(st->last, line, len);
    st->last[len] = '\0';
    if (len == 0 || *line == ';' || *line == '#')
        return 0;
    if (*line == '[')
        return take_section(st);
    st->kv_pending = 1;
    return 0;
}

/* ini_reader: one line per call, leading blanks removed so that inih never
 * treats an indented line as the continuation of the previous value. */
static char *read_line(char *str, int num, void *stream)
{
    ini_state *st = stream;
    const char *line = NULL;
    size_t len = 0;
    if (st->rc || check_pending(st) != 0)
        return NULL;
    if (next_raw_line(st, &line, &len) <= 0)
        return NULL;
    st->lineno++;
    if (take_line(st, line, len) != 0)
        return NULL;
    size_t n = strlen(st->last);
    if (num < 1 || n + 1 > (size_t)num) {
        state_fail(st, PLAST_E_PARSE, st->lineno, "line longer than %d characters", num - 1);
        return NULL;
    }
    memcpy(str, st->last, n);
    if (n + 2 <= (size_t)num)
        str[n++] = '\n';
    str[n] = '\0';
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    ini_state *st = user;
    (void)section; /* inih cuts long section names; st->cur is exact */
    st->kv_pending = 0;
    if (st->rc)
        return 0;
    if (st->cur < 0) {
        state_fail(st, PLAST_E_PARSE, st->lineno, "key '%s' before any [section] line", name);
        return 0;
    }
    cfg_section *s = &st->cfg->secs[st->cur];
    int prev = find_key(s, name);
    if (!valid_name(name, 1))
        state_fail(st, PLAST_E_PARSE, st->lineno,
                   "[%s] expected a key name made of " NAME_CHARS ", found \"%s\"", s->name, name);
    else if (prev >= 0)
        state_fail(st, PLAST_E_PARSE, st->lineno, "[%s] key '%s' repeated (first at line %d)",
                   s->name, name, s->keys[prev].line);
    else if (add_key(s, name, value, st->lineno, NULL) != 0)
        state_nomem(st);
    return st->rc == 0;
}

/* Parse st's source into a new config named `file`. */
static int parse_source(plast_config **out, ini_state *st, const char *file, const char *dir,
                        plast_err *e)
{
    st->cfg = config_new(file, dir);
    if (!st->cfg)
        return plast_err_set(e, PLAST_E_NOMEM, "%s: out of memory", file);
    st->e = e;
    st->cur = -1;
    /* read_line is called until it returns NULL, so it also checks the
     * last line for a missed handler call */
    int rc = ini_parse_stream(read_line, st, on_key, st);
    if (!st->rc && rc == -2)
        state_nomem(st);
    if (!st->rc && rc != 0) /* inih saw an error we did not: still refuse */
        state_fail(st, PLAST_E_PARSE, rc > 0 ? rc : 0, SYNTAX_EXPECTED);
    free(st->buf);
    if (st->rc) {
        plast_config_destroy(st->cfg);
        return st->rc;
    }
    *out = st->cfg;
    return PLAST_OK;
}

int plast_config_load(plast_config **out, const char *path, plast_err *e)
{
    PLAST_ASSERT(out && path);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        int err = errno;
        return plast_err_set(e, err == ENOENT ? PLAST_E_NOENT : PLAST_E_IO, "cannot open %s: %s",
                             path, strerror(err));
    }
    ini_state st = { .fp = fp };
    int rc = parse_source(out, &st, path, NULL, e);
    fclose(fp);
    return rc;
}

int plast_config_parse_string(plast_config **out, const char *name, const char *text,
                              plast_err *e)
{
    PLAST_ASSERT(out && name && text);
    ini_state st = { .text = text };
    return parse_source(out, &st, name, ".", e);
}

/* ---- command-line values ---- */

int plast_config_set(plast_config *c, const char *section, const char *key, const char *value,
                     const char *origin, plast_err *e)
{
    PLAST_ASSERT(c && section && key && value);
    char *label = str_printf("%s %s.%s", origin ? origin : "--set", section, key);
    if (!label)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
    int rc = PLAST_OK;
    if (!valid_name(section, 1)) {
        rc = plast_err_at(e, PLAST_E_PARSE, label, 0,
                          "expected a section name made of " NAME_CHARS ", found \"%s\"", section);
        goto undo_label;
    }
    if (!valid_name(key, 1)) {
        rc = plast_err_at(e, PLAST_E_PARSE, label, 0,
                          "[%s] expected a key name made of " NAME_CHARS ", found \"%s\"", section,
                          key);
        goto undo_label;
    }
    int si = find_section(c, section);
    if (si < 0) {
        char *sec_label = strdup(label);
        if (!sec_label || (si = add_section(c, section, 0, sec_label)) < 0) {
            free(sec_label);
            rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory");
            goto undo_label;
        }
    }
    cfg_section *s = &c->secs[si];
    int ki = find_key(s, key);
    if (ki < 0) {
        if (add_key(s, key, value, 0, label) != 0) {
            rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory");
            goto undo_label;
        }
        return PLAST_OK;
    }
    char *copy = strdup(value);
    if (!copy) {
        rc = plast_err_set(e, PLAST_E_NOMEM, "out of memory");
        goto undo_label;
    }
    cfg_key *k = &s->keys[ki];
    free(k->value);
    free(k->origin);
    k->value = copy;
    k->origin = label;
    k->line = 0;
    return PLAST_OK;
undo_label:
    free(label);
    return rc;
}

int plast_config_set_spec(plast_config *c, const char *spec, const char *origin, plast_err *e)
{
    const char *eq = strchr(spec, '=');
    char lhs[256];
    if (!eq || (size_t)(eq - spec) >= sizeof lhs)
        return plast_err_set(e, PLAST_E_PARSE, "%s: expected SECTION.KEY=VALUE, found \"%s\"",
                             origin, spec);
    memcpy(lhs, spec, (size_t)(eq - spec));
    lhs[eq - spec] = '\0';
    char *dot = strchr(lhs, '.');
    if (dot && (!strncmp(lhs, "layer.", 6) || !strncmp(lhs, "rule.", 5)) && strchr(dot + 1, '.'))
        dot = strchr(dot + 1, '.');
    if (!dot || dot == lhs || !dot[1])
        return plast_err_set(e, PLAST_E_PARSE, "%s: expected SECTION.KEY=VALUE, found \"%s\"",
                             origin, spec);
    *dot = '\0';
    return plast_config_set(c, lhs, dot + 1, eq + 1, origin, e);
}

/* ---- lookups ---- */

const char *plast_config_file(const plast_config *c)
{
    return c->file;
}

const char *plast_config_dir(const plast_config *c)
{
    return c->dir;
}

int plast_config_nsections(const plast_config *c)
{
    return c->nsecs;
}

const char *plast_config_section_name(const plast_config *c, int i)
{
    PLAST_ASSERT(i >= 0 && i < c->nsecs);
    return c->secs[i].name;
}

int plast_config_section_line(const plast_config *c, int i)
{
    PLAST_ASSERT(i >= 0 && i < c->nsecs);
    return c->secs[i].line;
}

int plast_config_has_section(const plast_config *c, const char *section)
{
    return find_section(c, section) >= 0;
}

const char *plast_config_get(const plast_config *c, const char *section, const char *key,
                             int *line)
{
    int si = find_section(c, section);
    int ki = si < 0 ? -1 : find_key(&c->secs[si], key);
    if (ki < 0)
        return NULL;
    if (line)
        *line = c->secs[si].keys[ki].line;
    return c->secs[si].keys[ki].value;
}

int plast_config_nkeys(const plast_config *c, const char *section)
{
    int si = find_section(c, section);
    return si < 0 ? 0 : c->secs[si].nkeys;
}

const char *plast_config_key(const plast_config *c, const char *section, int i,
                             const char **value, int *line)
{
    int si = find_section(c, section);
    PLAST_ASSERT(si >= 0 && i >= 0 && i < c->secs[si].nkeys);
    const cfg_key *k = &c->secs[si].keys[i];
    if (value)
        *value = k->value;
    if (line)
        *line = k->line;
    return k->name;
}

/* ---- typed values ---- */

typedef struct arg_val {
    char *key;
    plast_stype type;
    int present; /* given or defaulted (a REQUIRED key may have neither) */
    int given;
    int line;
    double real;
    int64_t integer;
    int boolean;
    int index; /* ENUM: position in choices */
    char *text; /* STRING: the value; ENUM: the choice */
} arg_val;

struct plast_args {
    char *section; /* NULL for defaults only */
    char *file;
    arg_val *vals;
    int n;
};

/* The schema and its extra keys seen as one list; NULL is an empty one. */
typedef struct schema_view {
    const plast_setting *schema, *extra;
    int nschema, n;
} schema_view;

static int count_settings(const plast_setting *s)
{
    int n = 0;
    while (s && s[n].key)
        n++;
    return n;
}

static schema_view view_of(const plast_setting *schema, const plast_setting *extra)
{
    schema_view v = { schema, extra, count_settings(schema), 0 };
    v.n = v.nschema + count_settings(extra);
    return v;
}

static const plast_setting *nth_setting(const schema_view *v, int i)
{
    return i < v->nschema ? &v->schema[i] : &v->extra[i - v->nschema];
}

enum { VALUE_OK, VALUE_SYNTAX, VALUE_RANGE };

static int bounded(const plast_setting *s)
{
    return !(s->min > s->max);
}

static int in_range(const plast_setting *s, double x)
{
    if (!bounded(s))
        return 1;
    if (x < s->min || ((s->flags & PLAST_S_MIN_OPEN) && x == s->min))
        return 0;
    if (x > s->max || ((s->flags & PLAST_S_MAX_OPEN) && x == s->max))
        return 0;
    return 1;
}

/* Leading blanks are refused: strtod and strtoll would skip them. */
static int parse_real(const char *text, double *out)
{
    if (!*text || isspace((unsigned char)*text))
        return VALUE_SYNTAX;
    char *end;
    errno = 0;
    double x = strtod(text, &end);
    if (*end || errno == ERANGE || !isfinite(x))
        return VALUE_SYNTAX;
    *out = x;
    return VALUE_OK;
}

static int parse_int(const char *text, int64_t *out)
{
    if (!*text || isspace((unsigned char)*text))
        return VALUE_SYNTAX;
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (*end || errno == ERANGE)
        return VALUE_SYNTAX;
    *out = (int64_t)x;
    return VALUE_OK;
}

static int parse_bool(const char *text, int *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = 1;
            return VALUE_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = 0;
            return VALUE_OK;
        }
    }
    return VALUE_SYNTAX;
}

/* Parse `text` as setting `s` into v (its text copied for STRING/ENUM). */
static int parse_value(const plast_setting *s, const char *text, arg_val *v)
{
    int rc = VALUE_OK;
    switch (s->type) {
    case PLAST_S_REAL:
        rc = parse_real(text, &v->real);
        if (rc == VALUE_OK && !in_range(s, v->real))
            rc = VALUE_RANGE;
        break;
    case PLAST_S_INT:
        rc = parse_int(text, &v->integer);
        if (rc == VALUE_OK && !in_range(s, (double)v->integer))
            rc = VALUE_RANGE;
        break;
    case PLAST_S_BOOL:
        rc = parse_bool(text, &v->boolean);
        break;
    case PLAST_S_ENUM:
        rc = VALUE_SYNTAX;
        for (int i = 0; s->choices[i]; i++)
            if (strcmp(text, s->choices[i]) == 0) {
                v->index = i;
                rc = VALUE_OK;
                break;
            }
        break;
    case PLAST_S_STRING:
        break;
    }
    if (rc == VALUE_OK && (s->type == PLAST_S_STRING || s->type == PLAST_S_ENUM)) {
        char *copy = strdup(text);
        if (!copy)
            return PLAST_E_NOMEM;
        free(v->text);
        v->text = copy;
    }
    return rc;
}

/* "(0, 10]" or "" when unbounded. */
static void describe_range(const plast_setting *s, text_buf *b)
{
    if (bounded(s))
        tb_add(b, "%c%g, %g%c", (s->flags & PLAST_S_MIN_OPEN) ? '(' : '[', s->min, s->max,
               (s->flags & PLAST_S_MAX_OPEN) ? ')' : ']');
}

/* What a value of `s` must look like, without its range. */
static void describe_kind(const plast_setting *s, text_buf *b)
{
    switch (s->type) {
    case PLAST_S_REAL:
        tb_add(b, "a number");
        break;
    case PLAST_S_INT:
        tb_add(b, "an integer");
        break;
    case PLAST_S_BOOL:
        tb_add(b, "true or false");
        break;
    case PLAST_S_ENUM:
        tb_add(b, "one of");
        for (int i = 0; s->choices[i]; i++)
            tb_add(b, "%s %s", i ? "," : "", s->choices[i]);
        break;
    case PLAST_S_STRING:
        tb_add(b, "a string");
        break;
    }
}

/* "a number in (0, 10]", "an integer", "one of a, b". */
static void describe_expected(const plast_setting *s, char *buf, size_t n)
{
    text_buf b = { buf, n, 0 };
    buf[0] = '\0';
    describe_kind(s, &b);
    if ((s->type == PLAST_S_REAL || s->type == PLAST_S_INT) && bounded(s)) {
        tb_add(&b, " in ");
        describe_range(s, &b);
    }
}

/* ---- schema checks ---- */

static int schema_fail(plast_err *e, const char *owner, const plast_setting *s, const char *fmt,
                       ...) PLAST_PRINTF(4, 5);
static int schema_fail(plast_err *e, const char *owner, const plast_setting *s, const char *fmt,
                       ...)
{
    if (e) {
        char msg[sizeof e->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        plast_err_at(e, PLAST_E_INVAL, owner, 0, "schema key '%s': %s", s->key, msg);
    }
    return PLAST_E_INVAL;
}

static int check_choices(const plast_setting *s, const char *owner, plast_err *e)
{
    if (!s->choices || !s->choices[0])
        return schema_fail(e, owner, s, "enum without choices");
    for (int i = 0; s->choices[i]; i++) {
        if (!*s->choices[i])
            return schema_fail(e, owner, s, "empty choice");
        for (int j = 0; j < i; j++)
            if (strcmp(s->choices[i], s->choices[j]) == 0)
                return schema_fail(e, owner, s, "choice '%s' listed twice", s->choices[i]);
    }
    return 0;
}

static int check_default(const plast_setting *s, const char *owner, plast_err *e)
{
    if (s->flags & PLAST_S_REQUIRED) {
        if (s->def)
            return schema_fail(e, owner, s, "required key has a default \"%s\"", s->def);
        return 0;
    }
    if (!s->def)
        return schema_fail(e, owner, s, "no default and not required");
    arg_val v = { 0 };
    int rc = parse_value(s, s->def, &v);
    free(v.text);
    char what[sizeof e->msg];
    text_buf b = { what, sizeof what, 0 };
    what[0] = '\0';
    if (rc == PLAST_E_NOMEM)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
    if (rc == VALUE_SYNTAX) {
        describe_kind(s, &b);
        return schema_fail(e, owner, s, "default \"%s\" is not %s", s->def, what);
    }
    if (rc == VALUE_RANGE) {
        describe_range(s, &b);
        return schema_fail(e, owner, s, "default \"%s\" is outside %s", s->def, what);
    }
    return 0;
}

static int check_setting(const schema_view *v, int i, const char *owner, plast_err *e)
{
    const plast_setting *s = nth_setting(v, i);
    if (!valid_name(s->key, 0))
        return schema_fail(e, owner, s, "name must be made of a-z, 0-9 and '_'");
    for (int j = 0; j < i; j++)
        if (strcmp(nth_setting(v, j)->key, s->key) == 0)
            return schema_fail(e, owner, s, "declared twice");
    if (s->type < PLAST_S_INT || s->type > PLAST_S_ENUM)
        return schema_fail(e, owner, s, "unknown type %d", (int)s->type);
    unsigned known = PLAST_S_REQUIRED | PLAST_S_MIN_OPEN | PLAST_S_MAX_OPEN;
    if (s->flags & ~known)
        return schema_fail(e, owner, s, "unknown flags 0x%x", s->flags & ~known);
    if (isnan(s->min) || isnan(s->max))
        return schema_fail(e, owner, s, "min or max is not a number");
    if (s->type == PLAST_S_ENUM) {
        int rc = check_choices(s, owner, e);
        if (rc)
            return rc;
    }
    return check_default(s, owner, e);
}

static int check_view(const schema_view *v, const char *owner, plast_err *e)
{
    for (int i = 0; i < v->n; i++) {
        int rc = check_setting(v, i, owner, e);
        if (rc)
            return rc;
    }
    return PLAST_OK;
}

int plast_schema_check(const plast_setting *schema, const char *owner, plast_err *e)
{
    if (!owner)
        owner = "schema";
    schema_view v = view_of(schema, NULL);
    return check_view(&v, owner, e);
}

/* ---- validated values ---- */

void plast_args_destroy(plast_args *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->n; i++) {
        free(a->vals[i].key);
        free(a->vals[i].text);
    }
    free(a->vals);
    free(a->section);
    free(a->file);
    free(a);
}

/* Empty values for every key of v; section and file may be NULL. */
static int args_new(plast_args **out, const schema_view *v, const char *section,
                    const char *file, plast_err *e)
{
    plast_args *a = calloc(1, sizeof *a);
    if (!a)
        return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
    a->vals = calloc(v->n ? (size_t)v->n : 1, sizeof *a->vals);
    if (!a->vals)
        goto undo_args;
    a->n = v->n;
    if ((section && !(a->section = strdup(section))) || (file && !(a->file = strdup(file))))
        goto undo_args;
    for (int i = 0; i < v->n; i++) {
        a->vals[i].type = nth_setting(v, i)->type;
        if (!(a->vals[i].key = strdup(nth_setting(v, i)->key)))
            goto undo_args;
    }
    *out = a;
    return PLAST_OK;
undo_args:
    plast_args_destroy(a);
    return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
}

static int find_val(const schema_view *v, const char *key)
{
    for (int i = 0; i < v->n; i++)
        if (strcmp(nth_setting(v, i)->key, key) == 0)
            return i;
    return -1;
}

static int skipped(const char *key, const char *const *skip_prefixes)
{
    for (int i = 0; skip_prefixes && skip_prefixes[i]; i++)
        if (strncmp(key, skip_prefixes[i], strlen(skip_prefixes[i])) == 0)
            return 1;
    return 0;
}

static int unknown_key(const plast_config *c, const cfg_section *s, const cfg_key *k,
                       const schema_view *v, plast_err *e)
{
    char list[sizeof e->msg];
    text_buf b = { list, sizeof list, 0 };
    list[0] = '\0';
    for (int i = 0; i < v->n; i++)
        tb_add(&b, "%s%s", i ? ", " : "", nth_setting(v, i)->key);
    if (v->n == 0)
        return plast_err_at(e, PLAST_E_PARSE, key_file(c, k), k->line,
                            "[%s] unknown key '%s' (%s accepts no keys)", s->name, k->name,
                            s->name);
    return plast_err_at(e, PLAST_E_PARSE, key_file(c, k), k->line,
                        "[%s] unknown key '%s' (%s accepts: %s)", s->name, k->name, s->name, list);
}

/* Parse every key given in section s, in file order. */
static int args_take_given(plast_args *a, const plast_config *c, const cfg_section *s,
                           const schema_view *v, const char *const *skip_prefixes, plast_err *e)
{
    for (int i = 0; i < s->nkeys; i++) {
        const cfg_key *k = &s->keys[i];
        if (skipped(k->name, skip_prefixes))
            continue;
        int vi = find_val(v, k->name);
        if (vi < 0)
            return unknown_key(c, s, k, v, e);
        const plast_setting *set = nth_setting(v, vi);
        int rc = parse_value(set, k->value, &a->vals[vi]);
        if (rc == PLAST_E_NOMEM)
            return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
        if (rc != VALUE_OK) {
            char what[sizeof e->msg];
            describe_expected(set, what, sizeof what);
            return plast_err_at(e, PLAST_E_PARSE, key_file(c, k), k->line,
                                "[%s] %s: expected %s, found \"%s\"", s->name, k->name, what,
                                k->value);
        }
        a->vals[vi].present = a->vals[vi].given = 1;
        a->vals[vi].line = k->line;
    }
    return PLAST_OK;
}

/* Defaults for the keys not given; refuse missing REQUIRED keys if `c`. */
static int args_fill_defaults(plast_args *a, const plast_config *c, const cfg_section *s,
                              const schema_view *v, plast_err *e)
{
    for (int i = 0; i < v->n; i++) {
        const plast_setting *set = nth_setting(v, i);
        arg_val *val = &a->vals[i];
        if (val->given)
            continue;
        val->line = s ? s->line : 0;
        if (!set->def) {
            if (!c)
                continue;
            if (!s)
                return plast_err_at(e, PLAST_E_PARSE, c->file, 0,
                                    "missing section [%s] (needed for key '%s')", a->section,
                                    set->key);
            return plast_err_at(e, PLAST_E_PARSE, section_file(c, s), s->line,
                                "[%s] missing required key '%s'", s->name, set->key);
        }
        int rc = parse_value(set, set->def, val);
        if (rc == PLAST_E_NOMEM)
            return plast_err_set(e, PLAST_E_NOMEM, "out of memory");
        PLAST_ASSERT(rc == VALUE_OK); /* the schema was checked */
        val->present = 1;
    }
    return PLAST_OK;
}

int plast_args_parse(plast_args **out, const plast_config *c, const char *section,
                     const plast_setting *schema, const plast_setting *extra,
                     const char *const *skip_prefixes, plast_err *e)
{
    PLAST_ASSERT(out && c && section);
    schema_view v = view_of(schema, extra);
    int rc = check_view(&v, section, e);
    if (rc)
        return rc;
    plast_args *a;
    if ((rc = args_new(&a, &v, section, c->file, e)) != 0)
        return rc;
    int si = find_section(c, section);
    const cfg_section *s = si < 0 ? NULL : &c->secs[si];
    if (s && (rc = args_take_given(a, c, s, &v, skip_prefixes, e)) != 0)
        goto undo_args;
    if ((rc = args_fill_defaults(a, c, s, &v, e)) != 0)
        goto undo_args;
    *out = a;
    return PLAST_OK;
undo_args:
    plast_args_destroy(a);
    return rc;
}

int plast_args_defaults(plast_args **out, const plast_setting *schema, plast_err *e)
{
    PLAST_ASSERT(out);
    schema_view v = view_of(schema, NULL);
    int rc = check_view(&v, "schema", e);
    if (rc)
        return rc;
    plast_args *a;
    if ((rc = args_new(&a, &v, NULL, NULL, e)) != 0)
        return rc;
    if ((rc = args_fill_defaults(a, NULL, NULL, &v, e)) != 0) {
        plast_args_destroy(a);
        return rc;
    }
    *out = a;
    return PLAST_OK;
}

/* The declared key; a missing one is the caller's bug. */
static const arg_val *get_val(const plast_args *a, const char *key)
{
    PLAST_ASSERT(a && key);
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->vals[i].key, key) == 0)
            return &a->vals[i];
    PLAST_ASSERT(!"key not declared in the schema");
    return NULL;
}

static const arg_val *get_typed(const plast_args *a, const char *key, plast_stype t1,
                                plast_stype t2)
{
    const arg_val *v = get_val(a, key);
    PLAST_ASSERT(v->type == t1 || v->type == t2);
    PLAST_ASSERT(v->present); /* a REQUIRED key in plast_args_defaults() */
    return v;
}

double plast_args_real(const plast_args *a, const char *key)
{
    return get_typed(a, key, PLAST_S_REAL, PLAST_S_REAL)->real;
}

int64_t plast_args_int(const plast_args *a, const char *key)
{
    return get_typed(a, key, PLAST_S_INT, PLAST_S_INT)->integer;
}

int plast_args_bool(const plast_args *a, const char *key)
{
    return get_typed(a, key, PLAST_S_BOOL, PLAST_S_BOOL)->boolean;
}

const char *plast_args_str(const plast_args *a, const char *key)
{
    return get_typed(a, key, PLAST_S_STRING, PLAST_S_ENUM)->text;
}

int plast_args_enum(const plast_args *a, const char *key)
{
    return get_typed(a, key, PLAST_S_ENUM, PLAST_S_ENUM)->index;
}

int plast_args_given(const plast_args *a, const char *key)
{
    return get_val(a, key)->given;
}

int plast_args_line(const plast_args *a, const char *key)
{
    return get_val(a, key)->line;
}

const char *plast_args_section(const plast_args *a)
{
    return a->section ? a->section : "";
}

const char *plast_args_file(const plast_args *a)
{
    return a->file ? a->file : "";
}
