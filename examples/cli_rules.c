/* cli_rules.c - `plast rules` and `plast rules --describe NAME`. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *type_name(plast_stype t)
{
    switch (t) {
    case PLAST_S_INT: return "integer";
    case PLAST_S_REAL: return "number";
    case PLAST_S_BOOL: return "boolean";
    case PLAST_S_STRING: return "string";
    case PLAST_S_ENUM: return "choice";
    default: return "?";
    }
}

static void print_range(const plast_setting *s)
{
    if (s->type == PLAST_S_ENUM) {
        for (int i = 0; s->choices[i]; i++)
            printf("%s%s", i ? "|" : "", s->choices[i]);
    } else if ((s->type == PLAST_S_INT || s->type == PLAST_S_REAL) && s->min <= s->max) {
        printf("%c%g, %g%c", (s->flags & PLAST_S_MIN_OPEN) ? '(' : '[', s->min, s->max,
               (s->flags & PLAST_S_MAX_OPEN) ? ')' : ']');
    } else {
        printf("-");
    }
}

static void report_bad(void *user, const plast_err *e)
{
    (void)user;
    cli_fail(e);
}

static int describe(plast_registry *reg, const char *name)
{
    const plast_rule_ops *ops;
    const char *file;
    plast_err e;
    if (plast_registry_find_rule(reg, name, &ops, &file, &e))
        return cli_fail(&e);
    printf("rule %s (%s)\n  %s\n\n", ops->name, file, ops->summary ? ops->summary : "");
    printf("[rule.%s] keys:\n", ops->name);
    if (!ops->settings || !ops->settings[0].key)
        printf("  (none)\n");
    for (const plast_setting *s = ops->settings; s && s->key; s++) {
        printf("  %-18s %-8s default %-10s range ", s->key, type_name(s->type),
               s->def ? s->def : "(required)");
        print_range(s);
        printf("\n      %s\n", s->help ? s->help : "");
    }
    printf("\nAlso accepted in [rule.%s]: optimizer.KEY = VALUE and run.KEY = VALUE,\n"
           "which override [optimizer] and [run] when this rule is selected.\n",
           ops->name);
    return EXIT_OK;
}

static int list(plast_registry *reg)
{
    int n = plast_registry_load_all(reg, report_bad, NULL);
    (void)n;
    int nr = plast_registry_nrules(reg);
    printf("%-12s %-8s %-44s %s\n", "RULE", "VERSION", "FILE", "SUMMARY");
    for (int i = 0; i < nr; i++) {
        const char *file;
        const plast_plugin *p;
        const plast_rule_ops *ops = plast_registry_rule(reg, i, &file, &p);
        printf("%-12s %-8s %-44s %s\n", ops->name, p && p->version ? p->version : "-", file,
               ops->summary ? ops->summary : "");
    }
    if (nr == 0)
        printf("(no rules found; see PLAST_PLUGIN_PATH in plast(1))\n");
    char buf[1024];
    printf("\nlayers: %s\n", plast_registry_layer_names(reg, buf, sizeof buf));
    printf("losses: %s\n", plast_registry_loss_names(reg, buf, sizeof buf));
    return EXIT_OK;
}

int cmd_rules(int argc, char **argv)
{
    static const struct option opts[] = {
        {"describe", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *name = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        if (c == 'd')
            name = optarg;
        else if (c == 'h') {
            printf("Usage: plast rules [--describe NAME]\n");
            return EXIT_OK;
        } else
            return cli_usage_error("rules: unrecognized option '%s'", argv[optind - 1]);
    }
    if (optind < argc)
        return cli_usage_error("rules: unexpected argument '%s'", argv[optind]);
    plast_registry *reg;
    plast_err e;
    if (cli_registry(&reg, &e))
        return cli_fail(&e);
    int rc = name ? describe(reg, name) : list(reg);
    plast_registry_destroy(reg);
    return rc;
}
