/* plast/plugin.h - the plug-in descriptor and the registry.
 *
 * A plug-in is a shared object exporting exactly one symbol,
 * plast_plugin_entry(), written by the PLAST_PLUGIN(...) macro.  Its
 * descriptor starts with a magic number and the ABI version, which the
 * core checks before reading anything else.  Every ops table starts with
 * its own size, so optional callbacks can be appended without an ABI bump;
 * the core reads one only if PLAST_HAS() says it is there. */
#ifndef PLAST_PLUGIN_H
#define PLAST_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLAST_PLUGIN_MAGIC 0x504c5354u /* "PLST" */
#define PLAST_ABI_VERSION 1u           /* bump on ANY incompatible change */

typedef struct plast_rule_ops plast_rule_ops;
typedef struct plast_layer_ops plast_layer_ops;
typedef struct plast_loss_ops plast_loss_ops;

typedef struct plast_plugin {
    uint32_t magic, abi;        /* checked before anything else */
    uint32_t size, real_size;   /* sizeof(plast_plugin), sizeof(plast_real) */
    const char *name;           /* must equal the file's basename */
    const char *version, *summary, *license;
    const plast_rule_ops *const *rules;   /* NULL-terminated, or NULL */
    const plast_layer_ops *const *layers;
    const plast_loss_ops *const *losses;
} plast_plugin;

/* Appended member `m` of ops struct `type` present and set. */
#define PLAST_HAS(ops, type, m) \
    ((ops)->size >= offsetof(type, m) + sizeof(((type *)0)->m) && (ops)->m)

typedef const plast_plugin *(*plast_plugin_entry_fn)(void);
const plast_plugin *plast_plugin_entry(void);

/* A plug-in ends with PLAST_PLUGIN(.name = "x", .version = "1", ...); */
#define PLAST_PLUGIN(...)                                                     \
    PLAST_EXPORT const plast_plugin *plast_plugin_entry(void)                 \
    {                                                                         \
        static const plast_plugin d_ = {.magic = PLAST_PLUGIN_MAGIC,          \
                                         .abi = PLAST_ABI_VERSION,            \
                                         .size = sizeof(plast_plugin),        \
                                         .real_size = sizeof(plast_real),     \
                                         __VA_ARGS__};                        \
        return &d_;                                                           \
    }                                                                         \
    const plast_plugin *plast_plugin_entry(void)

/* ---- the registry: what was found, from which file ---- */

typedef struct plast_registry plast_registry;

/* A registry knowing the built-in layers and losses.  Messages for
 * PLAST_PLUGIN_VERBOSE go to `log` (may be NULL). */
int plast_registry_create(plast_registry **out, plast_err *e);
/* Closes the plug-ins: only after every model and rule is gone. */
void plast_registry_destroy(plast_registry *r);
void plast_registry_set_log(plast_registry *r, void (*log)(void *user, const char *line),
                            void *user);

/* Search path: $PLAST_PLUGIN_PATH (colon list), then the compiled-in
 * directory, which a set $PLAST_PLUGIN_SYSTEM_PATH replaces (empty = none).
 * The directories in order, as a NULL-terminated array valid until the
 * registry is destroyed. */
const char *const *plast_registry_dirs(plast_registry *r);

/* Load one file (a path containing '/'). */
int plast_registry_load_file(plast_registry *r, const char *path, plast_err *e);
/* Find rule `name`: already registered, else NAME.so in the search path,
 * else every .so there.  *file gets the file it came from. */
int plast_registry_find_rule(plast_registry *r, const char *name, const plast_rule_ops **ops,
                             const char **file, plast_err *e);
/* Load every .so of the search path; call `bad` for each refused file
 * (may be NULL).  Returns the number of plug-ins loaded. */
int plast_registry_load_all(plast_registry *r,
                            void (*bad)(void *user, const plast_err *e), void *user);

/* Registered entries, in registration order. */
int plast_registry_nrules(const plast_registry *r);
const plast_rule_ops *plast_registry_rule(const plast_registry *r, int i, const char **file,
                                          const plast_plugin **plugin);
const plast_rule_ops *plast_registry_rule_by_name(const plast_registry *r, const char *name);
const plast_layer_ops *plast_registry_layer(const plast_registry *r, const char *name);
const plast_loss_ops *plast_registry_loss(const plast_registry *r, const char *name);
/* Names of registered layers or losses, joined by ", " into buf. */
const char *plast_registry_layer_names(const plast_registry *r, char *buf, size_t n);
const char *plast_registry_loss_names(const plast_registry *r, char *buf, size_t n);

/* Check a descriptor as the loader does (magic, ABI, sizes, name == base,
 * ops tables and schemas); `path` is named in messages.  Exposed for tests
 * and fuzzing. */
int plast_plugin_check(const plast_plugin *p, const char *path, const char *basename,
                       plast_err *e);

#ifdef __cplusplus
}
#endif
#endif
