/* snapshot.c - the trainer's state in a checkpoint, and back.
 *
 * Chunks: META (what made it), MODL (weights by layer name), OPTM
 * (optimiser state), DPOS (position in the data and the epoch's partial
 * sums), RULE (the rule's own state, when it has one).  The random
 * streams are all derived from the seed in META plus (purpose, index) and
 * the position in DPOS, so that is all a bit-identical resume needs. */
#include "config.h"

#include <limits.h>
#include <string.h>

#include "plast/checkpoint.h"
#include "plast/plast.h"
#include "trainer_impl.h"

static int write_meta(plast_trainer *t, plast_writer *w, plast_err *e)
{
    int rc;
    if ((rc = plast_writer_chunk(w, "META", e)) || (rc = plast_writer_str(w, plast_version(), e)) ||
        (rc = plast_writer_str(w, t->rule_ops->name, e)) || (rc = plast_writer_u64(w, t->seed, e)) ||
        (rc = plast_writer_u64(w, plast_model_nparams(t->model), e)))
        return rc;
    return PLAST_OK;
}

int plast_model_save_params(plast_model *m, plast_writer *w, plast_err *e)
{
    uint32_t n = 0;
    for (int i = 0; i < plast_model_nlayers(m); i++)
        n += plast_model_layer(m, i)->nparams > 0;
    int rc = plast_writer_u32(w, n, e);
    for (int i = 0; i < plast_model_nlayers(m) && !rc; i++) {
        const plast_layer *l = plast_model_layer(m, i);
        if (!l->nparams)
            continue;
        if ((rc = plast_writer_str(w, l->name, e)) || (rc = plast_writer_str(w, l->ops->name, e)) ||
            (rc = plast_writer_u32(w, (uint32_t)l->nparams, e)))
            break;
        for (int p = 0; p < l->nparams && !rc; p++)
            if (!(rc = plast_writer_str(w, l->param[p].name, e)) &&
                !(rc = plast_writer_u64(w, l->param[p].count, e)))
                rc = plast_writer_floats(w, l->param[p].w, l->param[p].count, e);
    }
    return rc;
}

static int write_model(plast_model *m, plast_writer *w, plast_err *e)
{
    int rc = plast_writer_chunk(w, "MODL", e);
    return rc ? rc : plast_model_save_params(m, w, e);
}

int plast_optim_save(const plast_optim *o, size_t n, plast_writer *w, plast_err *e)
{
    int rc = plast_writer_str(w, plast_optim_type(o), e);
    if (!rc)
        rc = plast_writer_u64(w, plast_optim_steps(o), e);
    if (!rc)
        rc = plast_writer_u32(w, (uint32_t)plast_optim_nstate(o), e);
    for (int i = 0; i < plast_optim_nstate(o) && !rc; i++)
        rc = plast_writer_floats(w, plast_optim_state((plast_optim *)o, i), n, e);
    return rc;
}

static int write_optim(plast_trainer *t, plast_writer *w, plast_err *e)
{
    int rc = plast_writer_chunk(w, "OPTM", e);
    return rc ? rc : plast_optim_save(t->optim, plast_model_nparams(t->model), w, e);
}

static int write_position(plast_trainer *t, plast_writer *w, plast_err *e)
{
    int rc;
    if ((rc = plast_writer_chunk(w, "DPOS", e)) || (rc = plast_writer_u32(w, (uint32_t)t->epoch, e)) ||
        (rc = plast_writer_u64(w, t->batch_in_epoch, e)) || (rc = plast_writer_u64(w, t->step, e)) ||
        (rc = plast_writer_f64(w, t->part_loss, e)) || (rc = plast_writer_f64(w, t->part_secs, e)) ||
        (rc = plast_writer_u64(w, t->part_correct, e)) || (rc = plast_writer_u64(w, t->part_count, e)))
        return rc;
    return PLAST_OK;
}

int plast_trainer_save(plast_trainer *t, const char *path, plast_err *e)
{
    plast_writer *w;
    int rc = plast_writer_create(&w, e);
    if (rc)
        return rc;
    if (!(rc = write_meta(t, w, e)) && !(rc = write_model(t->model, w, e)) &&
        !(rc = write_optim(t, w, e)) && !(rc = write_position(t, w, e)) &&
        PLAST_HAS(t->rule_ops, plast_rule_ops, save_state) &&
        !(rc = plast_writer_chunk(w, "RULE", e)))
        rc = t->rule_ops->save_state(t->rule, w, e);
    if (!rc)
        rc = plast_writer_commit(w, path, e);
    plast_writer_destroy(w);
    return rc;
}

/* ---- reading ---- */

static int read_param(plast_reader *r, const plast_layer *l, int p, plast_err *e)
{
    char name[64];
    uint64_t count;
    int rc;
    if ((rc = plast_reader_str(r, name, sizeof name, e)) || (rc = plast_reader_u64(r, &count, e)))
        return rc;
    const plast_param *pa = &l->param[p];
    if (strcmp(name, pa->name) || count != pa->count)
        return plast_err_at(e, PLAST_E_DATA, plast_reader_path(r), 0,
                            "layer '%s' parameter %d: expected %s with %zu values, found %s with "
                            "%llu",
                            l->name, p, pa->name, pa->count, name, (unsigned long long)count);
    return plast_reader_floats(r, pa->w, pa->count, e);
}

int plast_model_load_params(plast_model *m, plast_reader *r, plast_err *e)
{
    uint32_t n;
    int rc = plast_reader_u32(r, &n, e);
    for (uint32_t k = 0; k < n && !rc; k++) {
        char name[64], type[64];
        uint32_t np;
        if ((rc = plast_reader_str(r, name, sizeof name, e)) ||
            (rc = plast_reader_str(r, type, sizeof type, e)) || (rc = plast_reader_u32(r, &np, e)))
            break;
        int i = plast_model_find_layer(m, name);
        const plast_layer *l = i >= 0 ? plast_model_layer(m, i) : NULL;
        if (!l || strcmp(type, l->ops->name) || (int)np != l->nparams)
            return plast_err_at(e, PLAST_E_DATA, plast_reader_path(r), 0,
                                "checkpoint layer '%s' (%s, %u parameters) does not match the "
                                "model",
                                name, type, np);
        for (int p = 0; p < l->nparams && !rc; p++)
            rc = read_param(r, l, p, e);
    }
    uint32_t want = 0;
    for (int i = 0; i < plast_model_nlayers(m); i++)
        want += plast_model_layer(m, i)->nparams > 0;
    if (!rc && n != want)
        rc = plast_err_at(e, PLAST_E_DATA, plast_reader_path(r), 0,
                          "checkpoint has weights for %u layers, the model has %u", n, want);
    return rc;
}

static int read_model(plast_reader *r, plast_model *m, plast_err *e)
{
    int rc = plast_reader_chunk(r, "MODL", e);
    return rc ? rc : plast_model_load_params(m, r, e);
}

int plast_trainer_load_weights(plast_trainer *t, const char *path, plast_err *e)
{
    plast_reader *r;
    int rc = plast_reader_open(&r, path, e);
    if (rc)
        return rc;
    rc = read_model(r, t->model, e);
    plast_reader_destroy(r);
    return rc;
}

static int check_meta(plast_trainer *t, plast_reader *r, plast_err *e)
{
    char version[32], rule[64];
    uint64_t seed, nparams;
    int rc;
    if ((rc = plast_reader_chunk(r, "META", e)) ||
        (rc = plast_reader_str(r, version, sizeof version, e)) ||
        (rc = plast_reader_str(r, rule, sizeof rule, e)) || (rc = plast_reader_u64(r, &seed, e)) ||
        (rc = plast_reader_u64(r, &nparams, e)))
        return rc;
    const char *p = plast_reader_path(r);
    if (strcmp(rule, t->rule_ops->name))
        return plast_err_at(e, PLAST_E_DATA, p, 0, "checkpoint is for rule '%s', this run uses '%s'",
                            rule, t->rule_ops->name);
    if (seed != t->seed)
        return plast_err_at(e, PLAST_E_DATA, p, 0,
                            "checkpoint was made with seed %llu, this run uses seed %llu",
                            (unsigned long long)seed, (unsigned long long)t->seed);
    if (nparams != plast_model_nparams(t->model))
        return plast_err_at(e, PLAST_E_DATA, p, 0,
                            "checkpoint holds %llu parameters, the model has %zu",
                            (unsigned long long)nparams, plast_model_nparams(t->model));
    return PLAST_OK;
}

int plast_optim_load(plast_optim *o, size_t n, plast_reader *r, plast_err *e)
{
    char type[32];
    uint64_t steps;
    uint32_t nstate;
    int rc;
    if ((rc = plast_reader_str(r, type, sizeof type, e)) || (rc = plast_reader_u64(r, &steps, e)) ||
        (rc = plast_reader_u32(r, &nstate, e)))
        return rc;
    if (strcmp(type, plast_optim_type(o)) || (int)nstate != plast_optim_nstate(o))
        return plast_err_at(e, PLAST_E_DATA, plast_reader_path(r), 0,
                            "checkpoint optimizer is %s, this run uses %s", type,
                            plast_optim_type(o));
    for (uint32_t i = 0; i < nstate && !rc; i++)
        rc = plast_reader_floats(r, plast_optim_state(o, (int)i), n, e);
    if (!rc)
        plast_optim_set_steps(o, steps);
    return rc;
}

static int read_optim(plast_trainer *t, plast_reader *r, plast_err *e)
{
    int rc = plast_reader_chunk(r, "OPTM", e);
    return rc ? rc : plast_optim_load(t->optim, plast_model_nparams(t->model), r, e);
}

static int read_position(plast_trainer *t, plast_reader *r, plast_err *e)
{
    uint32_t epoch;
    int rc;
    if ((rc = plast_reader_chunk(r, "DPOS", e)) || (rc = plast_reader_u32(r, &epoch, e)) ||
        (rc = plast_reader_u64(r, &t->batch_in_epoch, e)) || (rc = plast_reader_u64(r, &t->step, e)) ||
        (rc = plast_reader_f64(r, &t->part_loss, e)) || (rc = plast_reader_f64(r, &t->part_secs, e)) ||
        (rc = plast_reader_u64(r, &t->part_correct, e)) || (rc = plast_reader_u64(r, &t->part_count, e)))
        return rc;
    /* an epoch past INT_MAX would turn negative and train ~2^31 epochs */
    if (epoch > INT_MAX)
        return plast_err_at(e, PLAST_E_DATA, plast_reader_path(r), 0,
                            "checkpoint position (epoch %u) is out of range", epoch);
    t->epoch = (int)epoch;
    if (t->batch_in_epoch > plast_trainer_steps_per_epoch(t))
        return plast_err_at(e, PLAST_E_DATA, plast_reader_path(r), 0,
                            "checkpoint position (batch %llu) is past the end of an epoch",
                            (unsigned long long)t->batch_in_epoch);
    return PLAST_OK;
}

int plast_trainer_resume(plast_trainer *t, const char *path, plast_err *e)
{
    plast_reader *r;
    int rc = plast_reader_open(&r, path, e);
    if (rc)
        return rc;
    if (!(rc = check_meta(t, r, e)) && !(rc = read_model(r, t->model, e)) &&
        !(rc = read_optim(t, r, e)) && !(rc = read_position(t, r, e)) &&
        PLAST_HAS(t->rule_ops, plast_rule_ops, load_state) && plast_reader_has_chunk(r, "RULE") &&
        !(rc = plast_reader_chunk(r, "RULE", e)))
        rc = t->rule_ops->load_state(t->rule, r, e);
    plast_reader_destroy(r);
    return rc;
}
