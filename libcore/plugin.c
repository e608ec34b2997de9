/* plugin.c - the registry of rules, layers and losses, and the plug-in
 * loader (ENGINEERING.md section 1.4).
 *
 * Errors about a plug-in file put its path in e->file and the rest in
 * e->msg, so plast_err_format() prints "PATH: rule 'x' already provided by
 * OTHER-PATH" and the CLI adds "plast: ".  Verbose lines (PLAST_PLUGIN_VERBOSE)
 * go to the caller's log callback with the "plast: " prefix already on. */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "plast/config.h"
#include "plast/layer.h"
#include "plast/loss.h"
#include "plast/plugin.h"
#include "plast/rule.h"
#include "builtin.h"

#ifndef PLAST_PLUGINDIR
#error "the build must define PLAST_PLUGINDIR (-DPLAST_PLUGINDIR='\"dir\"')"
#endif

#define NAME_MAX_LEN 63
#define BUILTIN_FILE "(built-in)"
#define LOG_LINE_MAX 1280

/* Bytes from the start of `type` up to the end of member `m`. */
#define END_OF(type, m) (offsetof(type, m) + sizeof(((type *)0)->m))

typedef struct reg_entry {
    const void *ops;             /* plast_rule_ops, _layer_ops or _loss_ops */
    const char *name;
    const char *file;            /* a reg_file's path or BUILTIN_FILE */
    const plast_plugin *plugin;  /* NULL for built-ins */
} reg_entry;

typedef struct reg_list {
    reg_entry *v;
    int n, cap;
} reg_list;

typedef struct reg_file {        /* one loaded plug-in: kept until destroy */
    char *path;
    void *handle;
    dev_t dev;
    ino_t ino;
    const plast_plugin *desc;
} reg_file;

struct plast_registry {
    char **dirs;                 /* search path, NULL-terminated */
    int verbose;
    void (*log)(void *user, const char *line);
    void *log_user;
    reg_file *files;
    int nfiles, capfiles;
    reg_list rules, layers, losses;
};

/* ---- the three kinds of ops tables, read without type punning ---- */

typedef struct kind {
    const char *what;                          /* "rule" */
    size_t required;                           /* bytes of the non-appended members */
    size_t list_off;                           /* its reg_list in plast_registry */
    const void *(*at)(const plast_plugin *p, int i);
    uint32_t (*size)(const void *ops);
    const char *(*name)(const void *ops);
    const plast_setting *(*settings)(const void *ops);
    const char *(*missing)(const void *ops);   /* first NULL required callback */
} kind;

static const void *rule_at(const plast_plugin *p, int i)
{
    return p->rules ? p->rules[i] : NULL;
}
static uint32_t rule_size(const void *o) { return ((const plast_rule_ops *)o)->size; }
static const char *rule_name(const void *o) { return ((const plast_rule_ops *)o)->name; }
static const plast_setting *rule_settings(const void *o)
{
    return ((const plast_rule_ops *)o)->settings;
}
static const char *rule_missing(const void *ops)
{
    const plast_rule_ops *o = ops;
    if (!o->create)
        return "create";
    return !o->train_batch ? "train_batch" : !o->destroy ? "destroy" : NULL;
}

static const void *layer_at(const plast_plugin *p, int i)
{
    return p->layers ? p->layers[i] : NULL;
}
static uint32_t layer_size(const void *o) { return ((const plast_layer_ops *)o)->size; }
static const char *layer_name(const void *o) { return ((const plast_layer_ops *)o)->name; }
static const plast_setting *layer_settings(const void *o)
{
    return ((const plast_layer_ops *)o)->settings;
}
static const char *layer_missing(const void *ops)
{
    const plast_layer_ops *o = ops;
    return !o->create ? "create" : !o->forward ? "forward" : !o->backward ? "backward" : NULL;
}

static const void *loss_at(const plast_plugin *p, int i)
{
    return p->losses ? p->losses[i] : NULL;
}
static uint32_t loss_size(const void *o) { return ((const plast_loss_ops *)o)->size; }
static const char *loss_name(const void *o) { return ((const plast_loss_ops *)o)->name; }
static const plast_setting *loss_settings(const void *o)
{
    return ((const plast_loss_ops *)o)->settings;
}
static const char *loss_missing(const void *ops)
{
    return !((const plast_loss_ops *)ops)->eval ? "eval" : NULL;
}

/* Members before the "optional, append only" mark are read directly by the
 * core, so the plug-in's table must cover them all (destroy included). */
static const kind kinds[] = {
    {"rule", END_OF(plast_rule_ops, destroy), offsetof(plast_registry, rules), rule_at,
     rule_size, rule_name, rule_settings, rule_missing},
    {"layer", END_OF(plast_layer_ops, destroy), offsetof(plast_registry, layers), layer_at,
     layer_size, layer_name, layer_settings, layer_missing},
    {"loss", END_OF(plast_loss_ops, eval), offsetof(plast_registry, losses), loss_at,
     loss_size, loss_name, loss_settings, loss_missing},
};
#define NKINDS ((int)(sizeof kinds / sizeof kinds[0]))

static reg_list *kind_list(plast_registry *r, const kind *k)
{
    return (reg_list *)((char *)r + k->list_off);
}

/* ---- small helpers ---- */

static int valid_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= NAME_MAX_LEN ||
            !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n > 0;
}

static void reg_log(const plast_registry *r, const char *fmt, ...) PLAST_PRINTF(2, 3);
static void reg_log(const plast_registry *r, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    va_list ap;
    if (!r->verbose || !r->log)
        return;
    memcpy(line, "plast: ", 8);
    va_start(ap, fmt);
    vsnprintf(line + 7, sizeof line - 7, fmt, ap);
    va_end(ap);
    r->log(r->log_user, line);
}

/* Make room for `more` elements in a growing array. */
static int reserve(void **v, int *cap, int n, int more, size_t elem)
{
    void *nv;
    int ncap;
    if (n + more <= *cap)
        return 0;
    ncap = *cap ? *cap : 8;
    while (ncap < n + more)
        ncap *= 2;
    nv = realloc(*v, (size_t)ncap * elem);
    if (!nv)
        return -1;
    *v = nv;
    *cap = ncap;
    return 0;
}

static int list_reserve(reg_list *l, int more)
{
    return reserve((void **)&l->v, &l->cap, l->n, more, sizeof *l->v);
}

static const reg_entry *list_find(const reg_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    return NULL;
}

/* The file name without directory and ".so": what the descriptor's name
 * must be. */
static void file_stem(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t len = strlen(base);
    if (len > 3 && strcmp(base + len - 3, ".so") == 0)
        len -= 3;
    snprintf(buf, n, "%.*s", (int)len, base);
}

/* ---- the search path ---- */

static void free_dirs(char **dirs)
{
    if (!dirs)
        return;
    for (char **d = dirs; *d; d++)
        free(*d);
    free(dirs);
}

/* Append the non-empty entries of colon list `list` to dirs[*n...]. */
static int split_path(char **dirs, int *n, const char *list)
{
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ":");
        while (len > 1 && p[len - 1] == '/')   /* "dir/" -> "dir", keep "/" */
            len--;
        if (len > 0) {
            if (!(dirs[*n] = strndup(p, len)))
                return -1;
            (*n)++;
        }
        p += strcspn(p, ":");
        if (*p == ':')
            p++;
    }
    return 0;
}

static int count_entries(const char *list)
{
    int n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ':';
    return n;
}

/* $PLAST_PLUGIN_PATH, then $PLAST_PLUGIN_SYSTEM_PATH if set, else the
 * compiled-in directory. */
static int build_dirs(plast_registry *r, plast_err *e)
{
    const char *user = getenv("PLAST_PLUGIN_PATH");
    const char *sys = getenv("PLAST_PLUGIN_SYSTEM_PATH");
    int n = 0, max;
    if (!sys)
        sys = PLAST_PLUGINDIR;
    max = (user ? count_entries(user) : 0) + count_entries(sys) + 1;
    if (!(r->dirs = calloc((size_t)max, sizeof *r->dirs)))
        return plast_err_set(e, PLAST_E_NOMEM, "plug-in registry: out of memory");
    if ((user && split_path(r->dirs, &n, user) != 0) || split_path(r->dirs, &n, sys) != 0)
        return plast_err_set(e, PLAST_E_NOMEM, "plug-in registry: out of memory");
    return PLAST_OK;
}

static const char *dirs_list(const plast_registry *r, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; r->dirs[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", r->dirs[i]);
    return buf;
}

/* ---- create / destroy ---- */

static int add_entry(reg_list *l, const void *ops, const char *name, plast_err *e)
{
    if (list_reserve(l, 1) != 0)
        return plast_err_set(e, PLAST_E_NOMEM, "plug-in registry: out of memory");
    l->v[l->n++] = (reg_entry){ops, name, BUILTIN_FILE, NULL};
    return PLAST_OK;
}

static int add_builtins(plast_registry *r, plast_err *e)
{
    int rc;
    for (int i = 0; plast_builtin_layers[i]; i++)
        if ((rc = add_entry(&r->layers, plast_builtin_layers[i], plast_builtin_layers[i]->name,
                            e)) != 0)
            return rc;
    for (int i = 0; plast_builtin_losses[i]; i++)
        if ((rc = add_entry(&r->losses, plast_builtin_losses[i], plast_builtin_losses[i]->name,
                            e)) != 0)
            return rc;
    return PLAST_OK;
}

int plast_registry_create(plast_registry **out, plast_err *e)
{
    int rc;
    const char *verbose = getenv("PLAST_PLUGIN_VERBOSE");
    plast_registry *r = calloc(1, sizeof *r);
    if (!r)
        return plast_err_set(e, PLAST_E_NOMEM, "plug-in registry: out of memory");
    r->verbose = verbose && *verbose && strcmp(verbose, "0") != 0;
    if ((rc = build_dirs(r, e)) != 0 || (rc = add_builtins(r, e)) != 0)
        goto undo_registry;
    *out = r;
    return PLAST_OK;
undo_registry:
    plast_registry_destroy(r);
    return rc;
}

void plast_registry_destroy(plast_registry *r)
{
    if (!r)
        return;
    free(r->rules.v);
    free(r->layers.v);
    free(r->losses.v);
    for (int i = r->nfiles - 1; i >= 0; i--) {   /* last loaded, first closed */
        dlclose(r->files[i].handle);
        free(r->files[i].path);
    }
    free(r->files);
    free_dirs(r->dirs);
    free(r);
}

void plast_registry_set_log(plast_registry *r, void (*log)(void *user, const char *line),
                            void *user)
{
    r->log = log;
    r->log_user = user;
}

const char *const *plast_registry_dirs(plast_registry *r)
{
    return (const char *const *)r->dirs;
}

/* ---- checking a descriptor ---- */

/* A bad schema is the plug-in's fault: refuse it naming the file.  The
 * schema checker names its `owner` ("rule 'x'") in e->file; that moves
 * into the message so e->file can be the path like every other refusal. */
static int blame_file(plast_err *e, const char *path)
{
    char msg[sizeof e->msg];
    if (!e)
        return PLAST_E_PLUGIN;
    if (e->file[0] && strcmp(e->file, path) != 0) {
        snprintf(msg, sizeof msg, "%.80s: %.170s", e->file, e->msg);
        memcpy(e->msg, msg, sizeof msg);
    }
    snprintf(e->file, sizeof e->file, "%s", path);
    e->line = 0;
    e->code = PLAST_E_PLUGIN;
    return PLAST_E_PLUGIN;
}

static int check_ops(const kind *k, const void *ops, int index, const char *path, plast_err *e)
{
    const char *name, *missing;
    const plast_setting *schema;
    char owner[96];
    int rc;
    if (k->size(ops) < k->required)
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                            "%s table entry %d has size %u, expected at least %zu", k->what,
                            index, (unsigned)k->size(ops), k->required);
    name = k->name(ops);
    if (!name)
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0, "%s table entry %d has no name",
                            k->what, index);
    if (!valid_name(name))
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                            "invalid %s name \"%.80s\" (expected [a-z0-9_], at most %d "
                            "characters)", k->what, name, NAME_MAX_LEN);
    if ((missing = k->missing(ops)) != NULL)
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0, "%s '%s': required callback %s is NULL",
                            k->what, name, missing);
    if (!(schema = k->settings(ops)))
        return PLAST_OK;
    snprintf(owner, sizeof owner, "%s '%s'", k->what, name);
    if ((rc = plast_schema_check(schema, owner, e)) != 0)
        return blame_file(e, path);
    return PLAST_OK;
}

static int check_table(const kind *k, const plast_plugin *p, const char *path, plast_err *e)
{
    int rc;
    for (int i = 0; k->at(p, i); i++) {
        const void *ops = k->at(p, i);
        if ((rc = check_ops(k, ops, i, path, e)) != 0)
            return rc;
        for (int j = 0; j < i; j++)
            if (strcmp(k->name(k->at(p, j)), k->name(ops)) == 0)
                return plast_err_at(e, PLAST_E_PLUGIN, path, 0, "%s '%s' listed twice",
                                    k->what, k->name(ops));
    }
    return PLAST_OK;
}

static int check_head(const plast_plugin *p, const char *path, plast_err *e)
{
    if (!p)
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                            "not a plast plug-in (plast_plugin_entry returned NULL)");
    if (p->magic != PLAST_PLUGIN_MAGIC)
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                            "not a plast plug-in (bad magic 0x%08x, expected 0x%08x)",
                            (unsigned)p->magic, PLAST_PLUGIN_MAGIC);
    if (p->abi != PLAST_ABI_VERSION)
        return plast_err_at(e, PLAST_E_ABI, path, 0,
                            "plug-in ABI %u, this plast has ABI %u; rebuild the plug-in",
                            (unsigned)p->abi, PLAST_ABI_VERSION);
    if (p->real_size != sizeof(plast_real))
        return plast_err_at(e, PLAST_E_ABI, path, 0,
                            "plug-in built for %u-byte plast_real, this plast uses %zu",
                            (unsigned)p->real_size, sizeof(plast_real));
    if (p->size < END_OF(plast_plugin, losses))
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                            "plug-in descriptor has size %u, expected at least %zu",
                            (unsigned)p->size, END_OF(plast_plugin, losses));
    return PLAST_OK;
}

int plast_plugin_check(const plast_plugin *p, const char *path, const char *basename,
                       plast_err *e)
{
    int rc;
    if ((rc = check_head(p, path, e)) != 0)
        return rc;
    if (!p->name)
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0, "plug-in has no name (expected '%s')",
                            basename);
    if (strcmp(p->name, basename) != 0)
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                            "plug-in name '%.80s' does not match its file name '%s'", p->name,
                            basename);
    if (!valid_name(p->name))
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                            "invalid plug-in name \"%.80s\" (expected [a-z0-9_], at most %d "
                            "characters)", p->name, NAME_MAX_LEN);
    for (int k = 0; k < NKINDS; k++)
        if ((rc = check_table(&kinds[k], p, path, e)) != 0)
            return rc;
    return PLAST_OK;
}

/* ---- registering a checked plug-in ---- */

static const reg_file *file_by_inode(const plast_registry *r, dev_t dev, ino_t ino)
{
    for (int i = 0; i < r->nfiles; i++)
        if (r->files[i].dev == dev && r->files[i].ino == ino)
            return &r->files[i];
    return NULL;
}

/* Refuse a plug-in whose name or any entry is already registered. */
static int check_conflicts(plast_registry *r, const plast_plugin *p, const char *path,
                           plast_err *e)
{
    for (int i = 0; i < r->nfiles; i++)
        if (strcmp(r->files[i].desc->name, p->name) == 0)
            return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                                "plug-in '%s' already loaded from %s", p->name,
                                r->files[i].path);
    for (int k = 0; k < NKINDS; k++) {
        const kind *kd = &kinds[k];
        for (int i = 0; kd->at(p, i); i++) {
            const reg_entry *old = list_find(kind_list(r, kd), kd->name(kd->at(p, i)));
            if (old)
                return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                                    "%s '%s' already provided by %s", kd->what, old->name,
                                    old->file);
        }
    }
    return PLAST_OK;
}

/* Reserve everything first so registering cannot fail half-way. */
static int reserve_for(plast_registry *r, const plast_plugin *p)
{
    if (reserve((void **)&r->files, &r->capfiles, r->nfiles, 1, sizeof *r->files) != 0)
        return -1;
    for (int k = 0; k < NKINDS; k++) {
        int n = 0;
        while (kinds[k].at(p, n))
            n++;
        if (list_reserve(kind_list(r, &kinds[k]), n) != 0)
            return -1;
    }
    return 0;
}

static int register_plugin(plast_registry *r, const plast_plugin *p, void *handle,
                           const char *path, const struct stat *st, plast_err *e)
{
    int rc;
    reg_file *f;
    if ((rc = check_conflicts(r, p, path, e)) != 0)
        return rc;
    if (reserve_for(r, p) != 0)
        return plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory");
    f = &r->files[r->nfiles];
    if (!(f->path = strdup(path)))
        return plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory");
    f->handle = handle;
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    f->desc = p;
    r->nfiles++;
    for (int k = 0; k < NKINDS; k++) {
        const kind *kd = &kinds[k];
        reg_list *l = kind_list(r, kd);
        for (int i = 0; kd->at(p, i); i++)
            l->v[l->n++] = (reg_entry){kd->at(p, i), kd->name(kd->at(p, i)), f->path, p};
    }
    return PLAST_OK;
}

/* ---- loading one file ---- */

static plast_plugin_entry_fn find_entry(void *handle)
{
    plast_plugin_entry_fn fn;
    void *sym = dlsym(handle, "plast_plugin_entry");
    _Static_assert(sizeof fn == sizeof sym, "dlsym result converts to a function pointer");
    memcpy(&fn, &sym, sizeof fn);   /* a cast would be a -Wpedantic warning */
    return fn;
}

static int open_plugin(plast_registry *r, const char *path, const struct stat *st, plast_err *e)
{
    char stem[256];
    const char *why, *plen;
    plast_plugin_entry_fn entry;
    const plast_plugin *p;
    int rc;
    void *handle;
    dlerror();
    if (!(handle = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
        why = dlerror();
        why = why ? why : "unknown error";
        plen = strncmp(why, path, strlen(path)) == 0 ? why + strlen(path) : NULL;
        if (plen && strncmp(plen, ": ", 2) == 0)   /* dlerror repeats the path */
            why = plen + 2;
        return plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                            "cannot load: %s (check its dependencies with ldd)", why);
    }
    if (!(entry = find_entry(handle))) {
        rc = plast_err_at(e, PLAST_E_PLUGIN, path, 0,
                          "not a plast plug-in (no plast_plugin_entry)");
        goto undo_dlopen;
    }
    file_stem(path, stem, sizeof stem);
    p = entry();
    if ((rc = plast_plugin_check(p, path, stem, e)) != 0 ||
        (rc = register_plugin(r, p, handle, path, st, e)) != 0)
        goto undo_dlopen;
    reg_log(r, "loaded %s (plug-in %s, version %s)", path, p->name,
            p->version ? p->version : "unknown");
    return PLAST_OK;
undo_dlopen:
    dlclose(handle);   /* nothing was registered from it */
    return rc;
}

/* Load `path` (containing '/') unless the same file is already loaded. */
static int load_path(plast_registry *r, const char *path, plast_err *e)
{
    struct stat st;
    const reg_file *old;
    plast_err local;
    int rc;
    if (!e)
        e = &local;   /* the verbose log still wants the reason */
    reg_log(r, "trying %s", path);
    if (stat(path, &st) != 0)
        rc = plast_err_at(e, errno == ENOENT ? PLAST_E_NOENT : PLAST_E_PLUGIN, path, 0,
                          "cannot load: %s", strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = plast_err_at(e, PLAST_E_PLUGIN, path, 0, "cannot load: not a regular file");
    else if ((old = file_by_inode(r, st.st_dev, st.st_ino)) != NULL) {
        reg_log(r, "%s is already loaded as %s", path, old->path);
        return PLAST_OK;
    } else if ((rc = open_plugin(r, path, &st, e)) == 0)
        return PLAST_OK;
    reg_log(r, "skipping %s: %s", path, e->msg);
    return rc;
}

int plast_registry_load_file(plast_registry *r, const char *path, plast_err *e)
{
    char *dotted;
    int rc;
    if (strchr(path, '/'))
        return load_path(r, path, e);
    /* without a '/', dlopen would search the system library path */
    if (!(dotted = malloc(strlen(path) + 3)))
        return plast_err_at(e, PLAST_E_NOMEM, path, 0, "out of memory");
    memcpy(dotted, "./", 2);
    memcpy(dotted + 2, path, strlen(path) + 1);
    rc = load_path(r, dotted, e);
    free(dotted);
    return rc;
}

/* ---- walking the search path ---- */

typedef struct cand {            /* a plug-in file found in the search path */
    char *path;
    const char *base;            /* file name inside path */
    dev_t dev;
    ino_t ino;
} cand;

typedef struct cand_list {
    cand *v;
    int n, cap;
} cand_list;

static void cand_free(cand_list *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->v[i].path);
    free(c->v);
}

static char *join_path(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    char *p = malloc(dl + nl + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, dl);
    p[dl] = '/';
    memcpy(p + dl + 1, name, nl + 1);
    return p;
}

static int is_plugin_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 3 && strcmp(name + n - 3, ".so") == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.so names of `dir`, sorted (for a deterministic order). */
static int list_dir(const plast_registry *r, const char *dir, char ***names, int *n)
{
    int cap = 0;
    struct dirent *d;
    DIR *dp = opendir(dir);
    *names = NULL;
    *n = 0;
    if (!dp) {
        reg_log(r, "cannot read %s: %s", dir, strerror(errno));
        return 0;
    }
    while ((d = readdir(dp)) != NULL) {
        if (!is_plugin_name(d->d_name))
            continue;
        if (reserve((void **)names, &cap, *n, 1, sizeof **names) != 0 ||
            !((*names)[*n] = strdup(d->d_name))) {
            closedir(dp);
            return -1;
        }
        (*n)++;
    }
    closedir(dp);
    if (*n > 1)
        qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    return 0;
}

/* Add dir/name unless it is not a regular file, the same file as an
 * earlier one, or shadowed by an earlier file of the same name. */
static int add_cand(const plast_registry *r, cand_list *c, const char *dir, const char *name)
{
    struct stat st;
    char *path = join_path(dir, name);
    if (!path)
        return -1;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        reg_log(r, "skipping %s: not a regular file", path);
        goto skip;
    }
    for (int i = 0; i < c->n; i++) {
        if (c->v[i].dev == st.st_dev && c->v[i].ino == st.st_ino) {
            reg_log(r, "skipping %s: same file as %s", path, c->v[i].path);
            goto skip;
        }
        if (strcmp(c->v[i].base, name) == 0) {
            reg_log(r, "%s shadowed by %s", path, c->v[i].path);
            goto skip;
        }
    }
    if (reserve((void **)&c->v, &c->cap, c->n, 1, sizeof *c->v) != 0)
        goto fail;
    c->v[c->n++] = (cand){path, path + strlen(dir) + 1, st.st_dev, st.st_ino};
    return 0;
skip:
    free(path);
    return 0;
fail:
    free(path);
    return -1;
}

static int scan_dir(const plast_registry *r, cand_list *c, const char *dir)
{
    char **names;
    int n, rc = list_dir(r, dir, &names, &n);
    for (int i = 0; i < n; i++) {
        if (rc == 0)
            rc = add_cand(r, c, dir, names[i]);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int scan_all(const plast_registry *r, cand_list *c, plast_err *e)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; r->dirs[i]; i++)
        if (scan_dir(r, c, r->dirs[i]) != 0) {
            cand_free(c);
            return plast_err_set(e, PLAST_E_NOMEM, "plug-in search: out of memory");
        }
    return PLAST_OK;
}

int plast_registry_load_all(plast_registry *r, void (*bad)(void *user, const plast_err *e),
                            void *user)
{
    cand_list c;
    plast_err e;
    int loaded = 0;
    if (scan_all(r, &c, &e) != 0) {
        if (bad)
            bad(user, &e);
        return e.code;
    }
    for (int i = 0; i < c.n; i++) {
        plast_err_clear(&e);
        if (load_path(r, c.v[i].path, &e) == 0)
            loaded++;
        else if (bad)
            bad(user, &e);
    }
    cand_free(&c);
    return loaded;
}

/* ---- finding a rule ---- */

static int found_rule(const plast_registry *r, const char *name, const plast_rule_ops **ops,
                      const char **file)
{
    const reg_entry *en = list_find(&r->rules, name);
    if (!en)
        return 0;
    *ops = en->ops;
    if (file)
        *file = en->file;
    return 1;
}

/* <dir>/<name>.so in search order: load the first regular file, report the
 * later ones as shadowed.  0 if none exists (nothing loaded). */
static int load_named(plast_registry *r, const char *name, plast_err *e)
{
    char file[NAME_MAX_LEN + 4];
    char *first = NULL;
    struct stat first_st, st;
    int rc = PLAST_OK;
    snprintf(file, sizeof file, "%s.so", name);
    for (int i = 0; r->dirs[i]; i++) {
        char *path = join_path(r->dirs[i], file);
        if (!path) {
            rc = plast_err_set(e, PLAST_E_NOMEM, "plug-in search: out of memory");
            break;
        }
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            reg_log(r, "no %s", path);
        else if (!first) {
            first = path;
            first_st = st;
            continue;
        } else if (st.st_dev == first_st.st_dev && st.st_ino == first_st.st_ino)
            reg_log(r, "skipping %s: same file as %s", path, first);
        else
            reg_log(r, "%s shadowed by %s", path, first);
        free(path);
    }
    if (rc == 0 && first)
        rc = load_path(r, first, e);
    free(first);
    return rc;
}

/* Last resort: a plug-in whose file is not named after the rule. */
static int load_until_found(plast_registry *r, const char *name, plast_err *e)
{
    cand_list c;
    int rc;
    if ((rc = scan_all(r, &c, e)) != 0)
        return rc;
    for (int i = 0; i < c.n && !list_find(&r->rules, name); i++)
        load_path(r, c.v[i].path, NULL);   /* refusals are logged, not fatal */
    cand_free(&c);
    return PLAST_OK;
}

int plast_registry_find_rule(plast_registry *r, const char *name, const plast_rule_ops **ops,
                             const char **file, plast_err *e)
{
    char dirs[1024];
    int rc;
    if (!valid_name(name))
        return plast_err_set(e, PLAST_E_PLUGIN,
                             "invalid rule name \"%.80s\" (expected [a-z0-9_], at most %d "
                             "characters)", name, NAME_MAX_LEN);
    if (found_rule(r, name, ops, file))
        return PLAST_OK;
    if ((rc = load_named(r, name, e)) != 0)
        return rc;
    if (found_rule(r, name, ops, file))
        return PLAST_OK;
    if ((rc = load_until_found(r, name, e)) != 0)
        return rc;
    if (found_rule(r, name, ops, file))
        return PLAST_OK;
    if (!r->dirs[0])
        return plast_err_set(e, PLAST_E_PLUGIN,
                             "no rule '%s' found (no plug-in directories to search)", name);
    return plast_err_set(e, PLAST_E_PLUGIN, "no rule '%s' found (searched: %s)", name,
                         dirs_list(r, dirs, sizeof dirs));
}

/* ---- accessors ---- */

int plast_registry_nrules(const plast_registry *r)
{
    return r->rules.n;
}

const plast_rule_ops *plast_registry_rule(const plast_registry *r, int i, const char **file,
                                          const plast_plugin **plugin)
{
    if (i < 0 || i >= r->rules.n)
        return NULL;
    if (file)
        *file = r->rules.v[i].file;
    if (plugin)
        *plugin = r->rules.v[i].plugin;
    return r->rules.v[i].ops;
}

const plast_rule_ops *plast_registry_rule_by_name(const plast_registry *r, const char *name)
{
    const reg_entry *en = list_find(&r->rules, name);
    return en ? en->ops : NULL;
}

const plast_layer_ops *plast_registry_layer(const plast_registry *r, const char *name)
{
    const reg_entry *en = list_find(&r->layers, name);
    return en ? en->ops : NULL;
}

const plast_loss_ops *plast_registry_loss(const plast_registry *r, const char *name)
{
    const reg_entry *en = list_find(&r->losses, name);
    return en ? en->ops : NULL;
}

static const char *join_names(const reg_list *l, char *buf, size_t n)
{
    size_t used = 0;
    if (n == 0)
        return buf;
    buf[0] = '\0';
    for (int i = 0; i < l->n && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", l->v[i].name);
    return buf;
}

const char *plast_registry_layer_names(const plast_registry *r, char *buf, size_t n)
{
    return join_names(&r->layers, buf, n);
}

const char *plast_registry_loss_names(const plast_registry *r, char *buf, size_t n)
{
    return join_names(&r->losses, buf, n);
}
