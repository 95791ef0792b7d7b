/*
 * ed_api_jobs.c - /v1/jobs: submitting pruning jobs (validated against
 * the parameters of `ecgprune prune`), showing, listing, cancelling them,
 * and their masks.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_prune.h"
#include "ecgprune/ep_train.h"
#include "ed_api.h"
#include "ed_jobs.h"
#include "ed_models.h"

#define MAX_JOB_BATCHES 256

/* Seconds a client should wait before polling a new job. */
#define RETRY_AFTER "2"

static unsigned bad(char *msg, size_t ms, unsigned st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static unsigned bad(char *msg, size_t ms, unsigned st, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, ms, fmt, ap);
    va_end(ap);
    return st;
}

/* An optional integer member in lo..hi, copied into out. */
static unsigned opt_int(json_t *in, json_t *out, const char *where,
                        const char *key, json_int_t lo, json_int_t hi,
                        char *msg, size_t ms)
{
    json_t *v = json_object_get(in, key);

    if (!v)
        return 0;
    if (!json_is_integer(v))
        return bad(msg, ms, 400, "%s\"%s\": expected an integer", where, key);
    if (json_integer_value(v) < lo || json_integer_value(v) > hi)
        return bad(msg, ms, 422, "%s\"%s\" = %lld is outside %lld..%lld",
                   where, key, (long long)json_integer_value(v),
                   (long long)lo, (long long)hi);
    json_object_set(out, key, v);
    return 0;
}

/* An optional number member in [lo, hi] (lo excluded if open_lo). */
static unsigned opt_num(json_t *in, json_t *out, const char *where,
                        const char *key, double lo, int open_lo, double hi,
                        char *msg, size_t ms)
{
    json_t *v = json_object_get(in, key);
    double x;

    if (!v)
        return 0;
    if (!json_is_number(v))
        return bad(msg, ms, 400, "%s\"%s\": expected a number", where, key);
    x = json_number_value(v);
    if (!isfinite(x) || x > hi || (open_lo ? x <= lo : x < lo))
        return bad(msg, ms, 422, "%s\"%s\" = %.10g is outside %s%g, %g]",
                   where, key, x, open_lo ? "(" : "[", lo, hi);
    json_object_set_new(out, key, json_real(x));
    return 0;
}

static unsigned opt_bool(json_t *in, json_t *out, const char *where,
                         const char *key, char *msg, size_t ms)
{
    json_t *v = json_object_get(in, key);

    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return bad(msg, ms, 400, "%s\"%s\": expected true or false", where,
                   key);
    json_object_set(out, key, v);
    return 0;
}

static unsigned check_keys(json_t *obj, const char *where,
                           const char *const *known, char *msg, size_t ms)
{
    const char *key;
    json_t *v;
    int i, ok;

    json_object_foreach(obj, key, v) {
        for (ok = 0, i = 0; known[i]; i++)
            ok |= strcmp(key, known[i]) == 0;
        if (!ok)
            return bad(msg, ms, 400, "%sunknown parameter \"%s\"", where,
                       key);
    }
    return 0;
}

/* A batch as a job would see it under a model: its samples and rate, the
 * model's rate and window. */
typedef struct batch_geometry {
    int64_t n;
    double fs, model_fs, window;
} batch_geometry;

/* 0 with g filled, or -1 when the batch or the model is missing. */
static int batch_geometry_of(ed_app *app, int64_t batch, int64_t model,
                             batch_geometry *g)
{
    json_t *row = ed_store_row(app->store, NULL, "SELECT b.n_samples AS n, "
                               "b.sampling_rate AS fs, json_extract("
                               "m.architecture, '$.sampling_rate') AS "
                               "model_fs, json_extract(m.architecture, "
                               "'$.window') AS window FROM batches b, "
                               "models m WHERE b.id = ? AND m.id = ?", "ii",
                               batch, model);

    g->n = json_integer_value(json_object_get(row, "n"));
    g->fs = json_number_value(json_object_get(row, "fs"));
    g->model_fs = json_number_value(json_object_get(row, "model_fs"));
    g->window = json_number_value(json_object_get(row, "window"));
    json_decref(row);
    return g->fs > 0 && g->model_fs > 0 ? 0 : -1;
}

/* Samples n of the batch become at the model's rate, which the job
 * resamples it to (as the library counts them): a batch at a low rate
 * grows by the ratio of the rates. */
static int64_t resampled(const batch_geometry *g, int64_t n)
{
    return ep_infer_resampled_count(n, g->fs, g->model_fs);
}

/* A list of existing batch ids, each short enough once resampled to the
 * model's rate; beats_needed: each must be annotated. */
static unsigned batch_list(ed_app *app, int64_t model, json_t *arr,
                           const char *where, int beats_needed, char *msg,
                           size_t ms)
{
    batch_geometry g;
    size_t i, j;
    json_t *v;
    int found;
    int64_t beats, n;

    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return bad(msg, ms, 400, "\"%s\": expected a non-empty array of "
                   "batch ids", where);
    if (json_array_size(arr) > MAX_JOB_BATCHES)
        return bad(msg, ms, 422, "\"%s\": more than %d batches", where,
                   MAX_JOB_BATCHES);
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v))
            return bad(msg, ms, 400, "%s[%zu]: expected an integer batch id",
                       where, i);
        for (j = 0; j < i; j++)
            if (json_integer_value(json_array_get(arr, j)) ==
                json_integer_value(v))
                return bad(msg, ms, 422, "%s[%zu]: batch %lld is listed "
                           "twice", where, i,
                           (long long)json_integer_value(v));
        beats = ed_store_int(app->store, &found, "SELECT n_beats FROM "
                             "batches WHERE id = ?", "i",
                             (int64_t)json_integer_value(v));
        if (!found)
            return bad(msg, ms, 404, "%s[%zu]: no batch with id %lld", where,
                       i, (long long)json_integer_value(v));
        if (beats_needed && beats <= 0)
            return bad(msg, ms, 422, "%s[%zu]: batch %lld has no beat "
                       "annotations to score against", where, i,
                       (long long)json_integer_value(v));
        if (batch_geometry_of(app, (int64_t)json_integer_value(v), model,
                              &g))
            continue;
        n = resampled(&g, g.n);
        if (n > app->cfg.max_samples)
            return bad(msg, ms, 422, "%s[%zu]: batch %lld would be %lld "
                       "samples at the model's sampling rate, more than the "
                       "limit of %lld (limits.max_samples)", where, i,
                       (long long)json_integer_value(v), (long long)n,
                       (long long)app->cfg.max_samples);
    }
    return 0;
}

/* value (a new reference) under key unless the object has that key. */
static void set_default(json_t *obj, const char *key, json_t *value)
{
    if (json_object_get(obj, key))
        json_decref(value);
    else
        json_object_set_new(obj, key, value);
}

/* The fine-tuning defaults (ep_finetune_default_opts) for what the
 * "finetune" object left out. */
static void fill_finetune_defaults(json_t *o)
{
    ep_train_opts d;

    ep_finetune_default_opts(&d);
    set_default(o, "epochs", json_integer(d.epochs));
    set_default(o, "steps_per_epoch", json_integer(d.steps_per_epoch));
    set_default(o, "batch", json_integer(d.batch));
    set_default(o, "lr", json_real(d.lr));
    set_default(o, "weight_decay", json_real(d.weight_decay));
    set_default(o, "seed", json_integer((json_int_t)d.seed));
    set_default(o, "freeze_encoder", json_boolean(d.freeze_encoder));
    set_default(o, "augment", json_boolean(d.augment));
}

static unsigned check_finetune(json_t *ft, json_t *out, char *msg,
                               size_t ms)
{
    static const char *const keys[] = {
        "epochs", "steps_per_epoch", "batch", "lr", "weight_decay", "seed",
        "freeze_encoder", "augment", NULL};
    json_t *o;
    unsigned st;

    if (!json_is_object(ft))
        return bad(msg, ms, 400, "\"finetune\": expected an object");
    o = json_object();
    json_object_set_new(out, "finetune", o);
    if ((st = check_keys(ft, "finetune: ", keys, msg, ms)) ||
        (st = opt_int(ft, o, "finetune.", "epochs", 1, 1000, msg, ms)) ||
        (st = opt_int(ft, o, "finetune.", "steps_per_epoch", 0, 1000000, msg,
                      ms)) ||
        (st = opt_int(ft, o, "finetune.", "batch", 1, 4096, msg, ms)) ||
        (st = opt_num(ft, o, "finetune.", "lr", 0, 1, 1, msg, ms)) ||
        (st = opt_num(ft, o, "finetune.", "weight_decay", 0, 0, 1, msg, ms))
        || (st = opt_int(ft, o, "finetune.", "seed", 0, INT64_MAX, msg, ms))
        || (st = opt_bool(ft, o, "finetune.", "freeze_encoder", msg, ms)) ||
        (st = opt_bool(ft, o, "finetune.", "augment", msg, ms)))
        return st;
    fill_finetune_defaults(o);
    return 0;
}

/* Held-out batches must not be calibration batches, or their scores
 * would not be held out. */
static unsigned disjoint(const json_t *held, const json_t *calib, char *msg,
                         size_t ms)
{
    size_t i, j;

    for (i = 0; i < json_array_size(held); i++)
        for (j = 0; j < json_array_size(calib); j++)
            if (json_integer_value(json_array_get(held, i)) ==
                json_integer_value(json_array_get(calib, j)))
                return bad(msg, ms, 422, "holdout.batch_ids: batch %lld is "
                           "also a calibration batch (batch_ids); hold out "
                           "other batches or use \"fraction\"",
                           (long long)json_integer_value(
                               json_array_get(held, i)));
    return 0;
}

/* The tail of calibration batch `id` that holdout.fraction leaves out is
 * scored: it needs beat annotations, and at least the two seconds any ECG
 * must last (the job runner holds out n - ed_jobs_calib_samples). */
static unsigned check_holdout_tail(ed_app *app, int64_t id, double fraction,
                                   char *msg, size_t ms)
{
    json_t *row = ed_store_row(app->store, NULL, "SELECT n_samples, "
                               "sampling_rate, n_beats FROM batches WHERE "
                               "id = ?", "i", id);
    double fs = json_number_value(json_object_get(row, "sampling_rate"));
    int64_t n = json_integer_value(json_object_get(row, "n_samples"));
    int64_t held = n - ed_jobs_calib_samples(n, fraction);
    int64_t beats = json_integer_value(json_object_get(row, "n_beats"));

    json_decref(row);
    if (beats <= 0)
        return bad(msg, ms, 422, "holdout.fraction: batch %lld has no beat "
                   "annotations to score against", (long long)id);
    if ((double)held < 2.0 * fs)
        return bad(msg, ms, 422, "holdout.fraction: %g of batch %lld is "
                   "%lld samples, less than the 2 s (%g samples) that can "
                   "be scored", fraction, (long long)id, (long long)held,
                   2.0 * fs);
    return 0;
}

static unsigned check_holdout(ed_app *app, json_t *h, json_t *out,
                              json_t *batch_ids, char *msg, size_t ms)
{
    static const char *const keys[] = {"batch_ids", "fraction", NULL};
    json_t *o, *ids = json_object_get(h, "batch_ids");
    size_t i;
    unsigned st;

    if (!json_is_object(h))
        return bad(msg, ms, 400, "\"holdout\": expected {\"batch_ids\": "
                   "[...]} or {\"fraction\": f}");
    if ((st = check_keys(h, "holdout: ", keys, msg, ms)))
        return st;
    if ((ids != NULL) == (json_object_get(h, "fraction") != NULL))
        return bad(msg, ms, 422, "\"holdout\": give exactly one of "
                   "\"batch_ids\" and \"fraction\"");
    o = json_object();
    json_object_set_new(out, "holdout", o);
    if (ids) {
        if ((st = batch_list(app, json_integer_value(json_object_get(
                                 out, "model_id")), ids,
                             "holdout.batch_ids", 1, msg, ms)))
            return st;
        if ((st = disjoint(ids, batch_ids, msg, ms)))
            return st;
        json_object_set(o, "batch_ids", ids);
        return 0;
    }
    if ((st = opt_num(h, o, "holdout.", "fraction", 0, 1, 0.5, msg, ms)))
        return st;
    for (i = 0; i < json_array_size(batch_ids); i++)
        if ((st = check_holdout_tail(app, json_integer_value(json_array_get(
                                         batch_ids, i)),
                                     json_number_value(json_object_get(
                                         o, "fraction")), msg, ms)))
            return st;
    return 0;
}

/* The held-out fraction of every calibration batch; 0 without one. */
static double holdout_fraction(json_t *p)
{
    return json_number_value(json_object_get(json_object_get(p, "holdout"),
                                             "fraction"));
}

/* Each calibration batch, less the tail holdout.fraction takes (0: none),
 * must hold one model window once resampled, or the job could only fail
 * (as the library counts: ep_infer_resampled_count). */
static unsigned check_calib_length(ed_app *app, json_t *p, char *msg,
                                   size_t ms)
{
    json_t *ids = json_object_get(p, "batch_ids");
    double fraction = holdout_fraction(p);
    int64_t model = json_integer_value(json_object_get(p, "model_id"));
    batch_geometry g;
    size_t i;

    for (i = 0; i < json_array_size(ids); i++) {
        int64_t id = json_integer_value(json_array_get(ids, i)), kept;

        if (batch_geometry_of(app, id, model, &g))
            continue;
        kept = ed_jobs_calib_samples(g.n, fraction);
        if ((double)resampled(&g, kept) < g.window)
            return bad(msg, ms, 422, "batch_ids[%zu]: batch %lld leaves "
                       "%lld samples (%.3f s) of calibration ECG%s, fewer "
                       "than one model window of %.0f samples at %g Hz "
                       "(%.3f s)", i, (long long)id, (long long)kept,
                       (double)kept / g.fs,
                       fraction > 0 ? " after holdout.fraction" : "",
                       g.window, g.model_fs, g.window / g.model_fs);
    }
    return 0;
}

/* The calibration windows a job would cache: max_windows, but no more
 * than its batches hold as non-overlapping windows once resampled. */
static int64_t calib_windows(ed_app *app, json_t *p)
{
    json_t *ids = json_object_get(p, "batch_ids");
    double fraction = holdout_fraction(p);
    int64_t model = json_integer_value(json_object_get(p, "model_id"));
    int64_t tiles = 0;
    batch_geometry g;
    size_t i;

    for (i = 0; i < json_array_size(ids); i++)
        if (batch_geometry_of(app, json_integer_value(json_array_get(ids, i)),
                              model, &g) == 0 && g.window > 0)
            tiles += (int64_t)((double)resampled(&g, ed_jobs_calib_samples(
                                   g.n, fraction)) / g.window);
    return tiles < json_integer_value(json_object_get(p, "max_windows"))
           ? tiles : json_integer_value(json_object_get(p, "max_windows"));
}

/* Refuse a job whose estimated peak memory passes limits.max_job_bytes
 * (ep_prune_peak_bytes, ep_train_peak_bytes): large max_windows on long
 * batches, or a large fine-tuning batch, could otherwise take the
 * gateway's memory, and a job killed for it would run again at restart.
 * The message gives the parts, so that the right setting is lowered. */
static unsigned check_memory(ed_app *app, json_t *p, char *msg, size_t ms)
{
    int64_t model = json_integer_value(json_object_get(p, "model_id"));
    json_t *ft = json_object_get(p, "finetune");
    const ep_net *net = NULL;
    ep_prune_opts o;
    char err[300], tuning[64] = "";
    double prune, tune = 0.0, mib = 1048576.0;
    int64_t windows;

    if (ed_models_acquire(app, model, &net, err, sizeof err))
        return 0;       /* a vanished model fails the job at its start */
    windows = calib_windows(app, p);
    ep_prune_default_opts(&o);
    /* The library takes no more windows to a batch than there are. */
    o.batch_windows = (int)json_integer_value(json_object_get(p,
                                                              "batch_windows"));
    if (o.batch_windows > windows)
        o.batch_windows = (int)windows;
    o.distill_steps = (int)json_integer_value(json_object_get(p,
                                                              "distill_steps"));
    prune = ep_prune_peak_bytes(net, &o, windows);
    if (ft)
        tune = ep_train_peak_bytes(net, (int)json_integer_value(
                                            json_object_get(ft, "batch")));
    ed_models_release(app, net);
    if (prune + tune <= (double)app->cfg.max_job_bytes)
        return 0;
    if (ft)
        snprintf(tuning, sizeof tuning, ", fine-tuning %.0f MiB "
                 "(finetune.batch)", tune / mib);
    return bad(msg, ms, 422, "the job would need about %.0f MiB, more than "
               "limits.max_job_bytes (%.0f MiB): pruning %.0f MiB (%lld "
               "calibration windows cached, batch_windows %d%s)%s; lower "
               "the largest part or send shorter batches",
               (prune + tune) / mib, (double)app->cfg.max_job_bytes / mib,
               prune / mib, (long long)windows, o.batch_windows,
               o.distill_steps > 0 ? ", distillation" : "", tuning);
}

/* Fine-tuning learns from the annotated beats of the calibration parts
 * (each batch less the tail holdout.fraction takes), so at least one
 * must hold some. */
static unsigned check_finetune_beats(ed_app *app, json_t *p, char *msg,
                                     size_t ms)
{
    json_t *ids = json_object_get(p, "batch_ids"), *row;
    double fraction = holdout_fraction(p);
    size_t i, beats = 0;

    if (!json_object_get(p, "finetune"))
        return 0;
    for (i = 0; i < json_array_size(ids) && beats == 0; i++) {
        int64_t n;

        row = ed_store_row(app->store, NULL, "SELECT n_samples, annotations "
                           "FROM batches WHERE id = ?", "i",
                           (int64_t)json_integer_value(json_array_get(ids,
                                                                      i)));
        n = json_integer_value(json_object_get(row, "n_samples"));
        beats = ed_jobs_count_beats(json_string_value(json_object_get(
                                        row, "annotations")),
                                    ed_jobs_calib_samples(n, fraction));
        json_decref(row);
    }
    if (beats > 0)
        return 0;
    return bad(msg, ms, 422, "\"finetune\": no calibration batch has beat "
               "annotations%s, which fine-tuning learns from; upload the "
               "batches with their annotations or leave out \"finetune\"",
               fraction > 0 ? " before its held-out tail" : "");
}

/* The library's defaults for what the submission left out, so that a
 * job shows the parameters it really runs with.  "lambda" stays absent
 * when not given: its default is a rule per layer, not one number. */
static void fill_defaults(json_t *p)
{
    ep_prune_opts d;
    ep_distill_opts dd;

    ep_prune_default_opts(&d);
    ep_distill_default_opts(&dd);
    set_default(p, "mask_list", json_integer(d.mask_list));
    set_default(p, "candidates", json_integer(d.candidates));
    set_default(p, "coreset_scale", json_real(d.coreset_scale));
    set_default(p, "seed", json_integer((json_int_t)d.seed));
    set_default(p, "reconstruct", json_boolean(d.reconstruct));
    set_default(p, "prune_head_input", json_boolean(d.prune_head_input));
    set_default(p, "refit_drifted", json_boolean(d.refit_drifted));
    set_default(p, "raw_norms", json_boolean(d.raw_norms));
    set_default(p, "batch_windows", json_integer(d.batch_windows));
    set_default(p, "max_windows", json_integer(d.max_windows));
    set_default(p, "distill_steps", json_integer(d.distill_steps));
    if (json_integer_value(json_object_get(p, "distill_steps")) > 0)
        set_default(p, "distill_lr", json_real(dd.lr));
    set_default(p, "stratify", json_true());
}


/* The model and the batches, which must exist and suit each other. */
static unsigned check_inputs(ed_app *app, json_t *in, json_t *p, char *msg,
                             size_t ms)
{
    json_t *v = json_object_get(in, "model_id");
    int found;
    unsigned st;

    if (!v)
        return bad(msg, ms, 422, "\"model_id\" is required");
    if (!json_is_integer(v))
        return bad(msg, ms, 400, "\"model_id\": expected an integer");
    ed_store_int(app->store, &found, "SELECT 1 FROM models WHERE id = ?",
                 "i", (int64_t)json_integer_value(v));
    if (!found)
        return bad(msg, ms, 404, "\"model_id\": no model with id %lld",
                   (long long)json_integer_value(v));
    json_object_set(p, "model_id", v);
    if (!json_object_get(in, "batch_ids"))
        return bad(msg, ms, 422, "\"batch_ids\" is required");
    if ((st = batch_list(app, json_integer_value(v),
                         json_object_get(in, "batch_ids"), "batch_ids", 0,
                         msg, ms)))
        return st;
    json_object_set(p, "batch_ids", json_object_get(in, "batch_ids"));
    return 0;
}

/* Method and keep ratio are required; the rest has defaults. */
static unsigned check_method(json_t *in, json_t *p, char *msg, size_t ms)
{
    json_t *v = json_object_get(in, "method");
    ep_prune_method m;
    unsigned st;

    if (!v)
        return bad(msg, ms, 422, "\"method\" is required (ising-kernel, "
                   "ising-filter, l1, random, coreset, contrib)");
    if (!json_is_string(v))
        return bad(msg, ms, 400, "\"method\": expected a string");
    if (ep_prune_method_from_name(json_string_value(v), &m) != 0)
        return bad(msg, ms, 422, "\"method\" \"%.40s\" is not one of "
                   "ising-kernel, ising-filter, l1, random, coreset, contrib",
                   json_string_value(v));
    json_object_set_new(p, "method", json_string(ep_prune_method_name(m)));
    if (!json_object_get(in, "keep"))
        return bad(msg, ms, 422, "\"keep\" (fraction of channels kept, "
                   "(0, 1]) is required");
    if ((st = opt_num(in, p, "", "keep", 0, 1, 1, msg, ms)) ||
        (st = opt_int(in, p, "", "mask_list", 1, 4096, msg, ms)) ||
        (st = opt_int(in, p, "", "candidates", 1, 1024, msg, ms)) ||
        (st = opt_num(in, p, "", "coreset_scale", 1, 0, 100, msg, ms)) ||
        (st = opt_int(in, p, "", "seed", 0, INT64_MAX, msg, ms)) ||
        (st = opt_bool(in, p, "", "reconstruct", msg, ms)) ||
        (st = opt_bool(in, p, "", "prune_head_input", msg, ms)) ||
        (st = opt_bool(in, p, "", "refit_drifted", msg, ms)) ||
        (st = opt_bool(in, p, "", "raw_norms", msg, ms)) ||
        (st = opt_num(in, p, "", "lambda", 0, 0, 1e6, msg, ms)) ||
        (st = opt_int(in, p, "", "batch_windows", 1, 4096, msg, ms)) ||
        (st = opt_int(in, p, "", "max_windows", 1, 1000000, msg, ms)) ||
        (st = opt_int(in, p, "", "distill_steps", 0, 100000, msg, ms)) ||
        (st = opt_num(in, p, "", "distill_lr", 0, 1, 1, msg, ms)) ||
        (st = opt_bool(in, p, "", "stratify", msg, ms)))
        return st;
    if (json_object_get(p, "distill_lr") &&
        json_integer_value(json_object_get(p, "distill_steps")) == 0)
        return bad(msg, ms, 422, "\"distill_lr\" given without "
                   "\"distill_steps\" > 0: no distillation would run");
    return 0;
}

/* Validate a submission into normalised parameters (*out). */
static unsigned check_params(ed_app *app, json_t *in, json_t **out,
                             char *msg, size_t ms)
{
    static const char *const keys[] = {
        "model_id", "batch_ids", "method", "keep", "mask_list", "candidates",
        "coreset_scale", "seed", "reconstruct", "lambda", "batch_windows",
        "max_windows", "stratify", "prune_head_input", "refit_drifted",
        "raw_norms", "distill_steps", "distill_lr", "finetune", "holdout", NULL};
    json_t *p, *v;
    unsigned st;

    if (!json_is_object(in))
        return bad(msg, ms, 400, "expected a JSON object");
    if ((st = check_keys(in, "", keys, msg, ms)))
        return st;
    p = json_object();
    *out = p;
    if ((st = check_inputs(app, in, p, msg, ms)) ||
        (st = check_method(in, p, msg, ms)))
        return st;
    fill_defaults(p);

    /* Optional fine-tuning and held-out scoring. */
    v = json_object_get(in, "finetune");
    if (v && !json_is_null(v) && (st = check_finetune(v, p, msg, ms)))
        return st;
    v = json_object_get(in, "holdout");
    if (v && !json_is_null(v) &&
        (st = check_holdout(app, v, p, json_object_get(p, "batch_ids"), msg,
                            ms)))
        return st;

    /* What the data and the memory limit allow. */
    if ((st = check_calib_length(app, p, msg, ms)) ||
        (st = check_finetune_beats(app, p, msg, ms)))
        return st;
    return check_memory(app, p, msg, ms);
}

unsigned ed_api_jobs_params(ed_app *app, const unsigned char *body,
                            size_t len, json_t **params, char *msg,
                            size_t ms)
{
    json_error_t jerr;
    json_t *in;
    unsigned st;

    *params = NULL;
    in = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    /* Well-formed JSON whose integer jansson cannot hold (past 2^63-1)
     * is a value out of range, as a negative seed is, not bad syntax. */
    if (!in && json_error_code(&jerr) == json_error_numeric_overflow)
        return bad(msg, ms, 422, "line %d column %d: %s; integers are at "
                   "most 9223372036854775807 (2^63-1)", jerr.line,
                   jerr.column, jerr.text);
    if (!in)
        return bad(msg, ms, 400, "malformed JSON at line %d column %d "
                   "(byte %d): %s", jerr.line, jerr.column, jerr.position,
                   jerr.text);
    st = check_params(app, in, params, msg, ms);
    json_decref(in);
    return st;
}

/* The public view of a job row. */
static json_t *job_json(json_t *row)
{
    json_error_t jerr;
    const char *ptext = json_string_value(json_object_get(row, "params"));
    const char *rtext = json_string_value(json_object_get(row, "result"));
    json_t *params = ptext ? json_loads(ptext, 0, &jerr) : NULL;
    json_t *result = rtext ? json_loads(rtext, 0, &jerr) : NULL;
    json_t *o = json_object();

    json_object_set(o, "id", json_object_get(row, "id"));
    json_object_set(o, "state", json_object_get(row, "state"));
    json_object_set(o, "model_id", json_object_get(row, "model_id"));
    json_object_set_new(o, "params", params ? params : json_null());
    json_object_set_new(o, "progress", json_pack(
        "{s:O, s:O, s:O, s:O}", "fraction", json_object_get(row, "progress"),
        "group", json_object_get(row, "progress_group"), "n_groups",
        json_object_get(row, "progress_groups"), "stage",
        json_object_get(row, "stage")));
    json_object_set_new(o, "timings", json_pack(
        "{s:O, s:O, s:O}", "created_at", json_object_get(row, "created_at"),
        "started_at", json_object_get(row, "started_at"), "finished_at",
        json_object_get(row, "finished_at")));
    json_object_set(o, "attempts", json_object_get(row, "attempts"));
    json_object_set(o, "interrupted", json_object_get(row, "interrupted"));
    /* The result keeps its model's id after that model was deleted, and
     * says so rather than point at a 404. */
    if (json_is_object(result) &&
        json_integer_value(json_object_get(row, "result_model_gone")))
        json_object_set_new(result, "model_deleted", json_true());
    json_object_set_new(o, "result", result ? result : json_null());
    json_object_set(o, "error", json_object_get(row, "error"));
    return o;
}

#define JOB_COLUMNS "id, state, model_id, params, progress, progress_group, " \
    "progress_groups, stage, created_at, started_at, finished_at, " \
    "attempts, interrupted, result, error, (result IS NOT NULL AND NOT " \
    "EXISTS (SELECT 1 FROM models m WHERE m.id = " \
    "json_extract(jobs.result, '$.model_id'))) AS result_model_gone"

static void answer_job(ed_app *app, ed_request *req, int64_t id,
                       unsigned status)
{
    int found = 0;
    json_t *row = ed_store_row(app->store, &found, "SELECT " JOB_COLUMNS
                               " FROM jobs WHERE id = ?", "i", id);

    if (!row) {
        ed_api_store_error(app, req);
        return;
    }
    if (!found)
        ed_http_problem(req, 404, "no job with id %lld", (long long)id);
    else
        ed_http_json(req, status, job_json(row));
    json_decref(row);
}

static void answer_accepted(ed_app *app, ed_request *req, int64_t id)
{
    char loc[64];

    answer_job(app, req, id, 202);
    snprintf(loc, sizeof loc, "/v1/jobs/%lld", (long long)id);
    ed_http_add_header(req, "Location", loc);
    ed_http_add_header(req, "Retry-After", RETRY_AFTER);
    snprintf(req->log_extra, sizeof req->log_extra, "job=%lld",
             (long long)id);
}

/* Insert the job and its batch links in one transaction. */
static int insert_job(ed_app *app, json_t *p, const char *key, char *text,
                      int64_t *id)
{
    char now[32];
    json_t *ids, *v;
    size_t i;
    int rc = -1;

    if (ed_store_begin(app->store))
        return -1;
    ed_store_now(now);
    if (ed_store_exec(app->store, "INSERT INTO jobs (model_id, params, "
                      "state, idempotency_key, created_at) VALUES "
                      "(?, ?, 'queued', ?, ?)", "ittt",
                      (int64_t)json_integer_value(json_object_get(
                          p, "model_id")), text, key, now) != 1)
        goto out;
    *id = ed_store_last_id(app->store);
    json_array_foreach(json_object_get(p, "batch_ids"), i, v)
        if (ed_store_exec(app->store, "INSERT INTO job_batches VALUES "
                          "(?, ?, 'calib')", "ii", *id,
                          (int64_t)json_integer_value(v)) != 1)
            goto out;
    ids = json_object_get(json_object_get(p, "holdout"), "batch_ids");
    json_array_foreach(ids, i, v)
        if (ed_store_exec(app->store, "INSERT OR IGNORE INTO job_batches "
                          "VALUES (?, ?, 'holdout')", "ii", *id,
                          (int64_t)json_integer_value(v)) < 0)
            goto out;
    rc = 0;
out:
    if (rc == 0 && ed_store_commit(app->store) == 0)
        return 0;
    ed_store_rollback(app->store);
    return -1;
}

void ed_api_jobs_create(ed_app *app, ed_request *req, int64_t unused)
{
    const char *key, *ct;
    char key_buf[ED_API_KEY_MAX + 1];
    json_t *params = NULL, *prev;
    char msg[600], *text = NULL;
    int64_t id = 0;
    int found = 0;
    unsigned st;

    (void)unused;
    if (app->stopping) {
        ed_http_problem(req, 503, "the daemon is shutting down");
        return;
    }
    if ((st = ed_api_idempotency_key(req, key_buf, &key, msg, sizeof msg))) {
        ed_http_problem(req, st, "%s", msg);
        return;
    }
    /* JSON, or no Content-Type at all, as for an ECG body. */
    ct = ed_http_header(req, "Content-Type");
    if (ct && !ed_http_is_json(ct)) {
        ed_http_problem(req, 415, "Content-Type \"%.80s\": expected "
                        "application/json", ct);
        return;
    }
    if (req->body_len == 0) {
        ed_http_problem(req, 400, "empty body: expected a JSON object of "
                        "job parameters");
        return;
    }
    st = ed_api_jobs_params(app, req->body, req->body_len, &params, msg,
                            sizeof msg);
    if (!st && !(text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS)))
        st = bad(msg, sizeof msg, 500, "out of memory");
    if (st) {
        json_decref(params);
        ed_http_problem(req, st, "%s", msg);
        return;
    }

    /* A retried submission with the same key gets the same job. */
    prev = key ? ed_store_row(app->store, &found, "SELECT id, params FROM "
                              "jobs WHERE idempotency_key = ?", "t", key)
               : NULL;
    if (found) {
        id = json_integer_value(json_object_get(prev, "id"));
        if (strcmp(json_string_value(json_object_get(prev, "params")),
                   text) != 0)
            ed_http_problem(req, 422, "Idempotency-Key \"%.80s\" was used "
                            "for job %lld with other parameters", key,
                            (long long)id);
        else
            answer_accepted(app, req, id);
    } else if (insert_job(app, params, key, text, &id)) {
        ed_api_store_error(app, req);
    } else {
        answer_accepted(app, req, id);
        ed_jobs_kick(app);
    }
    json_decref(prev);
    json_decref(params);
    free(text);
}

void ed_api_jobs_get(ed_app *app, ed_request *req, int64_t id)
{
    answer_job(app, req, id, 200);
}

void ed_api_jobs_list(ed_app *app, ed_request *req, int64_t unused)
{
    static const char *const states[] = {
        "queued", "running", "succeeded", "failed", "cancelled", NULL};
    const char *state;
    json_t *rows;
    ed_page page;
    int k, ok = 0;

    (void)unused;
    if (ed_api_list_params(req, "state", &state, &page))
        return;
    for (k = 0; state && states[k]; k++)
        ok |= strcmp(state, states[k]) == 0;
    if (state && !ok) {
        ed_http_problem(req, 400, "query parameter state=\"%.40s\": expected "
                        "queued, running, succeeded, failed or cancelled",
                        state);
        return;
    }
    rows = ed_store_rows(app->store, "SELECT " JOB_COLUMNS " FROM jobs "
                         "WHERE (?1 IS NULL OR state = ?1) AND id > ?2 "
                         "ORDER BY id LIMIT ?3", "tii", state, page.after,
                         page.limit + 1);
    if (!rows) {
        ed_api_store_error(app, req);
        return;
    }
    ed_api_page_answer(req, &page, "jobs", rows, job_json);
}

void ed_api_jobs_cancel(ed_app *app, ed_request *req, int64_t id)
{
    char now[32];
    int found = 0;
    json_t *row = ed_store_row(app->store, &found, "SELECT state FROM jobs "
                               "WHERE id = ?", "i", id);
    const char *state = json_string_value(json_object_get(row, "state"));

    if (!row) {
        ed_api_store_error(app, req);
        return;
    }
    if (!found) {
        ed_http_problem(req, 404, "no job with id %lld", (long long)id);
    } else if (strcmp(state, "queued") == 0) {
        /* Not started: cancelled at once. */
        ed_store_now(now);
        ed_store_exec(app->store, "UPDATE jobs SET state = 'cancelled', "
                      "finished_at = ?, error = 'cancelled by request', "
                      "cancel_requested = 1 WHERE id = ?", "ti", now, id);
        answer_job(app, req, id, 200);
    } else if (strcmp(state, "running") == 0) {
        /* Running: the worker stops at its next round. */
        ed_store_exec(app->store, "UPDATE jobs SET cancel_requested = 1 "
                      "WHERE id = ?", "i", id);
        ed_jobs_cancel(app, id);
        answer_job(app, req, id, 202);
    } else {
        ed_http_problem(req, 409, "job %lld has already finished (state %s)",
                        (long long)id, state);
    }
    json_decref(row);
}

void ed_api_jobs_masks(ed_app *app, ed_request *req, int64_t id)
{
    int found = 0;
    json_t *row = ed_store_row(app->store, &found, "SELECT state, params "
                               "FROM jobs WHERE id = ?", "i", id);
    json_t *rows, *groups, *g, *params;
    json_error_t jerr;
    char seed[32];
    size_t i;

    if (!row) {
        ed_api_store_error(app, req);
        return;
    }
    if (!found || strcmp(json_string_value(json_object_get(row, "state")),
                         "succeeded") != 0) {
        if (!found)
            ed_http_problem(req, 404, "no job with id %lld", (long long)id);
        else
            ed_http_problem(req, 409, "job %lld has no masks: state is %s",
                            (long long)id, json_string_value(
                                json_object_get(row, "state")));
        json_decref(row);
        return;
    }
    rows = ed_store_rows(app->store, "SELECT group_index, producer, "
                         "channels_before, kept FROM masks WHERE job_id = ? "
                         "ORDER BY group_index", "i", id);
    params = json_loads(json_string_value(json_object_get(row, "params")), 0,
                        &jerr);
    json_decref(row);
    if (!rows || !params) {
        json_decref(rows);
        json_decref(params);
        ed_api_store_error(app, req);
        return;
    }
    groups = json_array();
    json_array_foreach(rows, i, g) {
        json_t *kept = json_loads(json_string_value(json_object_get(
                                      g, "kept")), 0, &jerr);
        kept = kept ? kept : json_array();
        json_array_append_new(groups, json_pack(
            "{s:O, s:O, s:O, s:I, s:o}", "group",
            json_object_get(g, "group_index"), "producer",
            json_object_get(g, "producer"), "channels_before",
            json_object_get(g, "channels_before"), "channels_after",
            (json_int_t)json_array_size(kept), "kept", kept));
    }
    json_decref(rows);

    /* The fields of the masks file `ecgprune prune --masks` writes, the
     * seed as a decimal string there too (a uint64 does not survive every
     * JSON reader as a number). */
    snprintf(seed, sizeof seed, "%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(params, "seed")));
    ed_http_json(req, 200, json_pack(
        "{s:I, s:O, s:O, s:s, s:b, s:b, s:b, s:b, s:I, s:o}", "job_id",
        (json_int_t)id,
        "method", json_object_get(params, "method"), "keep",
        json_object_get(params, "keep"), "seed", seed, "reconstruct",
        json_is_true(json_object_get(params, "reconstruct")),
        "prune_head_input",
        json_is_true(json_object_get(params, "prune_head_input")),
        "refit_drifted",
        json_is_true(json_object_get(params, "refit_drifted")),
        "raw_norms", json_is_true(json_object_get(params, "raw_norms")),
        "distill_steps",
        json_integer_value(json_object_get(params, "distill_steps")),
        "groups", groups));
    json_decref(params);
}
