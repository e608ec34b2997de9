/* plast/train.h - the training loop set up from an INI file.
 *
 * A plast_trainer reads [run], [data], [layer.*], [loss], [optimizer] and
 * [rule] (+ [rule.NAME]) from a configuration, builds the data sets, the
 * model, the optimiser and the rule instance, and trains epoch by epoch,
 * evaluating on the test (and validation) set after each epoch.  It prints
 * nothing: progress and reports go to the hooks. */
#ifndef PLAST_TRAIN_H
#define PLAST_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "err.h"
#include "mem.h"
#include "model.h"
#include "plugin.h"
#include "rule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct plast_trainer plast_trainer;

/* Schemas of the core sections. */
extern const plast_setting plast_run_settings[];
extern const plast_setting plast_data_settings[];
extern const plast_setting plast_loss_settings[];
extern const plast_setting plast_rule_section_settings[];

typedef struct plast_epoch_report {
    int epoch, epochs;               /* 1-based */
    double train_s;                  /* wall seconds of the training loop */
    double samples_per_s;
    double lr;                       /* at the epoch's last step */
    double train_loss, train_acc;    /* means over the epoch's batches */
    double val_loss, val_acc;        /* NaN when there is no validation split */
    double test_loss, test_acc;      /* NaN when there is no test set */
    size_t train_peak[PLAST_MEM_NCAT];
    size_t train_peak_total;
    size_t train_peak_act_input;     /* activations + input, together */
    size_t eval_peak_act_input;
    size_t rss_peak_bytes;           /* process, from getrusage */
} plast_epoch_report;

typedef struct plast_train_hooks {
    void *user;
    /* Polled between batches; nonzero: finish, save, return CANCELED. */
    int (*should_stop)(void *user);
    /* After each batch. */
    void (*batch_done)(void *user, int epoch, uint64_t batch, uint64_t batches,
                       double loss, double acc);
    void (*epoch_done)(void *user, const plast_epoch_report *r);
} plast_train_hooks;

/* Build everything from `cfg`, which must outlive the trainer, as must the
 * registry.  The selected rule's `optimizer.KEY` and `run.KEY` overrides
 * in [rule.NAME] are applied to cfg first. */
int plast_trainer_create(plast_trainer **out, plast_config *cfg, plast_registry *reg,
                         plast_err *e);
void plast_trainer_destroy(plast_trainer *t);

/* Train the configured epochs (from where a loaded checkpoint left off).
 * Writes the [run] checkpoint after each epoch (and when stopped). */
int plast_trainer_run(plast_trainer *t, const plast_train_hooks *hooks, plast_err *e);

/* Loss and accuracy of the current weights on the test set (inference
 * mode, batch by batch). */
int plast_trainer_evaluate(plast_trainer *t, double *loss, double *acc, plast_err *e);

/* Whole training state: weights, optimiser, rule, streams, position. */
int plast_trainer_save(plast_trainer *t, const char *path, plast_err *e);
/* Resume from a full checkpoint (the same model and rule). */
int plast_trainer_resume(plast_trainer *t, const char *path, plast_err *e);
/* Take only the weights of a checkpoint (shapes must match). */
int plast_trainer_load_weights(plast_trainer *t, const char *path, plast_err *e);

plast_model *plast_trainer_model(plast_trainer *t);
plast_mem *plast_trainer_mem(plast_trainer *t);
const char *plast_trainer_rule_name(const plast_trainer *t);
const char *plast_trainer_rule_file(const plast_trainer *t);
/* Forward passes the rule makes per update (1 unless it says otherwise). */
int plast_trainer_forwards_per_update(const plast_trainer *t);
/* Parameters the rule trains beside the model's (auxiliary networks). */
size_t plast_trainer_aux_params(const plast_trainer *t);
/* The rule's description of its set-up, one line per call (none if the
 * rule has no describe op). */
void plast_trainer_describe_rule(const plast_trainer *t, void (*line)(void *user, const char *text),
                                 void *user);
uint64_t plast_trainer_seed(const plast_trainer *t);
int plast_trainer_epochs(const plast_trainer *t);
int plast_trainer_batch(const plast_trainer *t);
int plast_trainer_threads(const plast_trainer *t);
int plast_trainer_flush_denormals(const plast_trainer *t);
size_t plast_trainer_train_samples(const plast_trainer *t);
size_t plast_trainer_test_samples(const plast_trainer *t);
const char *plast_trainer_log_path(const plast_trainer *t);        /* "" = none */
const char *plast_trainer_checkpoint_path(const plast_trainer *t); /* "" = none */

#ifdef __cplusplus
}
#endif
#endif
