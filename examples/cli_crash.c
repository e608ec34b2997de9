/* cli_crash.c - name the rule plug-in when plast dies of a fatal signal.
 *
 * A rule plug-in runs inside the plast process: a bug in it (a NULL
 * dereference in create()) kills plast with SIGSEGV and, left alone, with
 * no word about which file was at fault.  So before a run is set up, the
 * CLI finds the rule's plug-in itself and records its file and the address
 * ranges of its code.  On SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT the
 * handler writes one line naming the file (with write(2) only: nothing
 * else is safe in a signal handler) and raises the signal again with the
 * default action, so the exit status and core dump stay those of the
 * crash. */
#include "config.h"

#include <dlfcn.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "cli.h"

#define MAX_RANGES 8

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

/* Written before the phase is set, only read by the handler. */
static char rule_name[64];
static char rule_file[4096];
static uintptr_t code_lo[MAX_RANGES], code_hi[MAX_RANGES];
static int ncode;
static volatile sig_atomic_t phase; /* CLI_PHASE_* */
static char alt_stack[64 * 1024];   /* a stack overflow must still report */

static void put(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t k = write(STDERR_FILENO, s, n);
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    default: return "SIGABRT";
    }
}

/* The faulting instruction, where the platform says (0 = unknown). */
static uintptr_t fault_pc(void *uc)
{
#if defined(__linux__) && defined(__x86_64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#elif defined(__linux__) && defined(__aarch64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.pc;
#else
    (void)uc;
    return 0;
#endif
}

static int in_plugin_code(uintptr_t pc)
{
    for (int i = 0; i < ncode && pc; i++)
        if (pc >= code_lo[i] && pc < code_hi[i])
            return 1;
    return 0;
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    int p = phase;
    if (p != CLI_PHASE_NONE && rule_file[0]) {
        const char *when = p == CLI_PHASE_SETUP ? "setting up the run" : "training";
        put("plast: fatal signal ");
        put(signal_name(sig));
        if (sig != SIGABRT && in_plugin_code(fault_pc(uc))) {
            put(" in rule plug-in ");
            put(rule_file);
            put(" (rule '");
            put(rule_name);
            put("', ");
            put(when);
            put(")\n");
        } else {
            put(" while ");
            put(when);
            put(" with rule '");
            put(rule_name);
            put("' from plug-in ");
            put(rule_file);
            put("\n");
        }
    }
    /* SA_RESETHAND put the default action back: die of the same signal */
    raise(sig);
}

void cli_crash_install(void)
{
    static int done;
    struct sigaction sa;
    stack_t ss;
    if (done)
        return;
    done = 1;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = alt_stack;
    ss.ss_size = sizeof alt_stack;
    sigaltstack(&ss, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++)
        sigaction(fatal_signals[i], &sa, NULL);
}

/* dl_iterate_phdr callback: the executable segments of the object that
 * holds `user` (an address inside the plug-in). */
static int find_segments(struct dl_phdr_info *info, size_t size, void *user)
{
    uintptr_t addr = (uintptr_t)user;
    int holds = 0;
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && addr >= lo && addr < lo + ph->p_memsz)
            holds = 1;
    }
    if (!holds)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && ncode < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            code_lo[ncode] = info->dlpi_addr + ph->p_vaddr;
            code_hi[ncode] = code_lo[ncode] + ph->p_memsz;
            ncode++;
        }
    }
    return 1;
}

/* The rule the run will use, found as the trainer will find it ([rule]
 * plugin, relative to the INI file, then [rule] name).  Any error is left
 * for the trainer to report. */
static const plast_rule_ops *find_rule(const plast_config *cfg, plast_registry *reg,
                                       const char **file)
{
    const plast_rule_ops *ops = NULL;
    plast_args *a;
    plast_err quiet;
    if (plast_args_parse(&a, cfg, "rule", plast_rule_section_settings, NULL, NULL, &quiet))
        return NULL;
    const char *plugin = plast_args_str(a, "plugin");
    if (plugin[0]) {
        char path[4096];
        if (plugin[0] == '/')
            snprintf(path, sizeof path, "%s", plugin);
        else
            snprintf(path, sizeof path, "%s/%s", plast_config_dir(cfg), plugin);
        plast_registry_load_file(reg, path, &quiet);
    }
    if (plast_registry_find_rule(reg, plast_args_str(a, "name"), &ops, file, &quiet))
        ops = NULL;
    plast_args_destroy(a);
    return ops;
}

void cli_crash_watch_rule(const plast_config *cfg, plast_registry *reg)
{
    const char *file = NULL;
    const plast_rule_ops *ops = find_rule(cfg, reg, &file);
    void *code;
    phase = CLI_PHASE_NONE;
    rule_file[0] = '\0';
    ncode = 0;
    if (!ops || !file || !ops->create)
        return;
    snprintf(rule_name, sizeof rule_name, "%s", ops->name);
    snprintf(rule_file, sizeof rule_file, "%s", file);
    _Static_assert(sizeof code == sizeof ops->create, "a function pointer fits a void *");
    memcpy(&code, &ops->create, sizeof code); /* a cast would be a -Wpedantic warning */
    dl_iterate_phdr(find_segments, code);
}

void cli_crash_phase(int p)
{
    phase = p;
}
