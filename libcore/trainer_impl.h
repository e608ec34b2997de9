/* trainer_impl.h - the trainer's private state, shared by trainer.c
 * (setup and loop) and snapshot.c (checkpoints). */
#ifndef PLAST_TRAINER_IMPL_H
#define PLAST_TRAINER_IMPL_H

#include "plast/data.h"
#include "plast/train.h"

struct plast_trainer {
    plast_config *cfg;
    plast_registry *reg;
    plast_mem *mem;
    /* [run] */
    uint64_t seed;
    int epochs, batch, threads, flush_denormals, eval_batch;
    uint64_t max_batches;          /* per epoch, 0 = all */
    char log_path[4096], ckpt_path[4096], init_path[4096];
    /* data */
    plast_dataset *train_all, *train, *val, *test;
    uint32_t *perm;
    /* model and rule */
    plast_model *model;
    const plast_loss_ops *loss;
    plast_args *optim_args;
    plast_optim *optim;
    const plast_rule_ops *rule_ops;
    const char *rule_file;
    plast_args *rule_args;
    plast_rule *rule;
    /* position */
    int epoch;                     /* epochs completed */
    uint64_t batch_in_epoch;       /* batches of the current epoch done */
    uint64_t step;                 /* batches trained in all */
    double part_loss, part_secs;   /* sums over the current epoch so far */
    uint64_t part_correct, part_count;
};

/* Steps (batches) per epoch with the last partial batch kept. */
uint64_t plast_trainer_steps_per_epoch(const plast_trainer *t);
/* Resolve a path relative to the INI file's directory into buf. */
const char *plast_trainer_path(const plast_trainer *t, const char *p, char *buf, size_t n);

#endif
