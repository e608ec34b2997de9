/* plast.c - the plast command: train, eval, compare and list learning rules. */
#include "config.h"

#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if defined HAVE_MALLOC_H && defined HAVE_MALLOPT
#include <malloc.h>
#endif

#include "cli.h"

/* Training frees and allocates the same large activation buffers at every
 * batch.  glibc would return each one to the kernel (munmap, or trimming
 * the heap) and fault it in afresh on the next batch: for the CNN example
 * that is 8,000 page faults and about 17 % of the time.  Blocks up to
 * 32 MiB (glibc's largest mmap threshold) stay in the heap instead, and
 * the heap is trimmed only past 512 MiB of free top. */
static void keep_freed_blocks(void)
{
#if defined HAVE_MALLOC_H && defined HAVE_MALLOPT && defined M_MMAP_THRESHOLD
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}

static void print_help(void)
{
    fputs("Usage: plast COMMAND [OPTION]...\n"
          "Train neural networks with pluggable learning rules.\n"
          "\n"
          "Commands:\n"
          "  train FILE.ini     train the model FILE.ini describes\n"
          "  eval FILE.ini --checkpoint CKPT\n"
          "                     evaluate a checkpoint's weights on the test set\n"
          "  rules              list the learning rules found and their files\n"
          "  rules --describe NAME\n"
          "                     show a rule's parameters, types, defaults and help\n"
          "  compare FILE.ini --rules NAME,NAME...\n"
          "                     train the model under each rule (and seed); table\n"
          "                     and figures of accuracy, time and memory\n"
          "\n"
          "Options of train:\n"
          "  -r, --rule=NAME        use rule NAME instead of [rule] name\n"
          "  -e, --epochs=N         train N epochs\n"
          "  -s, --seed=N           seed of every random stream\n"
          "  -t, --threads=N        worker threads\n"
          "  -S, --set=SEC.KEY=VAL  set any key of the INI file (repeatable)\n"
          "      --resume=CKPT      continue a run from its checkpoint\n"
          "      --log=FILE         JSON-lines metrics file ([run] log)\n"
          "      --checkpoint=FILE  checkpoint after every epoch ([run] checkpoint)\n"
          "      --progress=WHEN    auto (bar on a terminal), bar, lines or none\n"
          "\n"
          "Options of compare:\n"
          "      --rules=LIST       comma-separated rules to train (required)\n"
          "      --seeds=LIST       comma-separated seeds (default: the [run] seed)\n"
          "  -e, --epochs=N         train N epochs\n"
          "  -o, --out=DIR          logs, table and figures (default: compare-FILE)\n"
          "  -S, --set=SEC.KEY=VAL  and --progress=WHEN, as for train\n"
          "\n"
          "  -h, --help             show this help and exit\n"
          "  -V, --version          show version information and exit\n"
          "\n"
          "Exit status: 0 ok, 1 training failed, 64 usage, 65 bad data or checkpoint,\n"
          "66 cannot open input, 70 internal error, 73 cannot create output, 74 I/O\n"
          "error, 78 bad INI file or plug-in; killed by SIGINT/SIGTERM after an\n"
          "interrupt (the checkpoint is written first).\n"
          "See plast(1) and plast.ini(5).\n",
          stdout);
}

static void print_version(void)
{
    printf("plast (plast) %s\n", plast_version());
    printf("plug-in ABI %u, plast_real %zu bytes, plug-in directory %s\n", PLAST_ABI_VERSION,
           sizeof(plast_real), PLAST_PLUGINDIR);
    printf("Copyright (C) 2026 the plast developers.\n"
           "License MIT: <https://opensource.org/licenses/MIT>.\n"
           "This is free software: you are free to change and redistribute it.\n"
           "There is NO WARRANTY, to the extent permitted by law.\n");
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("plast: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'plast --help' for more information.\n", stderr);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    setlocale(LC_NUMERIC, "C"); /* strtod and printf use '.' */
    keep_freed_blocks();
    if (argc < 2)
        return cli_usage_error("missing command (train, eval, rules or compare)");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        print_help();
        return EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        print_version();
        return EXIT_OK;
    }
    if (!strcmp(cmd, "train"))
        return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "rules"))
        return cmd_rules(argc - 1, argv + 1);
    if (!strcmp(cmd, "compare"))
        return cmd_compare(argc - 1, argv + 1);
    return cli_usage_error("unknown command '%s' (expected train, eval, rules or compare)", cmd);
}
