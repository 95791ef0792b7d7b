/*
 * ed_jobs.c - running pruning (and fine-tuning) jobs on the libuv pool:
 * loading inputs on the loop thread, the worker, progress, cancellation,
 * re-queuing at shutdown and recording the outcome.
 */
#include "ed_jobs.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_prune.h"
#include "ecgprune/ep_score.h"
#include "ecgprune/ep_train.h"
#include "ecgprune/ep_wfdb.h"
#include "ed_api.h"
#include "ed_log.h"
#include "ed_metrics.h"
#include "ed_models.h"
#include "ed_warnings.h"

/* Why a running job was asked to stop. */
enum { STOP_NONE = 0, STOP_CANCEL = 1, STOP_SHUTDOWN = 2 };

/* One stretch of ECG with its reference beats (owned). */
typedef struct job_seg {
    float *mv;
    int64_t n;
    double fs;
    ep_ref_beat *beats;
    size_t n_beats;
    int64_t batch_id;
} job_seg;

typedef struct job_run {
    ed_app *app;
    uv_work_t work;
    int64_t id, model_id;
    char model_name[80];
    uint64_t start_ns;

    /* Inputs, read on the loop thread before queuing. */
    unsigned char *model_blob;
    size_t model_len;
    ep_prune_opts prune;
    int stratify;           /* calibration windows drawn on the beats */
    int finetune;
    ep_train_opts train;
    job_seg *calib, *holdout;
    int n_calib, n_holdout;

    /* Progress, written by the worker, read by the loop. */
    pthread_mutex_t lock;
    double fraction;
    int group, n_groups;
    char stage[32];
    atomic_int stop;
    int abandoned;
    double seconds;         /* the work's wall time, once it returned */
    int store_tries;        /* failed writes of its result, store busy */

    /* Outcome, written by the worker before after_work runs. */
    int rc;
    ep_error err;
    ep_prune_result *result;
    unsigned char *out_blob;
    size_t out_len;
    ed_model_check out_check;   /* of out_blob, made on the worker */
    json_t *scores_before, *scores_after;

    struct job_run *next;
} job_run;

struct ed_jobs {
    job_run *running;
    int n_running;
    job_run *unsettled;     /* done, result not yet stored: store busy */
    unsigned ticks;
    uv_timer_t timer;       /* progress flush and queue dispatch */
    int shutting_down;
};

/* A result that cannot be stored because another connection holds the
 * database locked is tried again every ED_JOBS_STORE_EVERY ticks (s), up
 * to ED_JOBS_STORE_TRIES times, before the job fails: the work is done
 * and a lock is usually brief.  Each try may wait out the store's busy
 * timeout on the event loop, so they are spaced. */
#define ED_JOBS_STORE_EVERY 5
#define ED_JOBS_STORE_TRIES 12

/* ---- inputs ----------------------------------------------------------- */

static void free_segs(job_seg *segs, int n)
{
    int i;

    for (i = 0; segs && i < n; i++) {
        free(segs[i].mv);
        free(segs[i].beats);
    }
    free(segs);
}

static void free_run(job_run *run)
{
    free(run->model_blob);
    free_segs(run->calib, run->n_calib);
    free_segs(run->holdout, run->n_holdout);
    ep_prune_result_free(run->result);
    free(run->out_blob);
    ed_api_models_check_free(&run->out_check);
    json_decref(run->scores_before);
    json_decref(run->scores_after);
    pthread_mutex_destroy(&run->lock);
    free(run);
}

/* The AAMI class of one stored annotation, EP_AAMI_NONE for a non-beat. */
static ep_aami annotation_class(const json_t *a)
{
    int code = ep_wfdb_symbol_code(json_string_value(json_object_get(
        a, "symbol")));

    return code >= 0 ? ep_aami_from_code(code) : EP_AAMI_NONE;
}

int64_t ed_jobs_calib_samples(int64_t n, double fraction)
{
    return n - (int64_t)floor((double)n * fraction);
}

size_t ed_jobs_count_beats(const char *annotations, int64_t before)
{
    json_t *arr = annotations ? json_loads(annotations, 0, NULL) : NULL, *a;
    size_t i, n = 0;

    json_array_foreach(arr, i, a)
        n += annotation_class(a) != EP_AAMI_NONE &&
             json_integer_value(json_object_get(a, "sample")) < before;
    json_decref(arr);
    return n;
}

/* Reference beats from a batch's stored annotations. */
static int parse_beats(const char *text, job_seg *seg)
{
    json_error_t jerr;
    json_t *arr = json_loads(text, 0, &jerr), *a;
    size_t i;

    if (!arr)
        return -1;
    seg->beats = calloc(json_array_size(arr) + 1, sizeof *seg->beats);
    if (!seg->beats) {
        json_decref(arr);
        return -1;
    }
    json_array_foreach(arr, i, a) {
        ep_aami cls = annotation_class(a);

        if (cls == EP_AAMI_NONE)
            continue;
        seg->beats[seg->n_beats].sample =
            json_integer_value(json_object_get(a, "sample"));
        seg->beats[seg->n_beats].cls = cls;
        seg->n_beats++;
    }
    json_decref(arr);
    return 0;
}

static int load_batch(ed_app *app, int64_t id, job_seg *seg, char *msg,
                      size_t ms)
{
    unsigned char *blob = NULL, *ann = NULL;
    size_t len = 0, alen = 0;
    int found = 0, rc;
    json_t *row;

    row = ed_store_row(app->store, &found, "SELECT sampling_rate FROM "
                       "batches WHERE id = ?", "i", id);
    if (!row || !found) {
        json_decref(row);
        snprintf(msg, ms, "batch %lld no longer exists", (long long)id);
        return -1;
    }
    seg->fs = json_number_value(json_object_get(row, "sampling_rate"));
    json_decref(row);
    seg->batch_id = id;
    rc = ed_store_blob(app->store, &blob, &len, "SELECT samples FROM "
                       "batches WHERE id = ?", "i", id);
    if (rc != 1) {
        snprintf(msg, ms, "batch %lld: samples unreadable", (long long)id);
        return -1;
    }
    seg->mv = (float *)blob;
    seg->n = (int64_t)(len / sizeof(float));
    rc = ed_store_blob(app->store, &ann, &alen, "SELECT annotations FROM "
                       "batches WHERE id = ?", "i", id);
    if (rc == 1 && parse_beats((const char *)ann, seg)) {
        free(ann);
        snprintf(msg, ms, "batch %lld: stored annotations unreadable",
                 (long long)id);
        return -1;
    }
    free(ann);
    return 0;
}

/* Split the last `fraction` of every calibration segment off as a
 * held-out segment (beats re-indexed to its start). */
static int split_holdout(job_run *run, double fraction)
{
    int i;
    size_t b;

    run->holdout = calloc((size_t)run->n_calib, sizeof *run->holdout);
    if (!run->holdout)
        return -1;
    for (i = 0; i < run->n_calib; i++) {
        job_seg *c = &run->calib[i], *h = &run->holdout[i];
        int64_t cut = ed_jobs_calib_samples(c->n, fraction);
        h->fs = c->fs;
        h->batch_id = c->batch_id;
        h->n = c->n - cut;
        h->mv = malloc((size_t)h->n * sizeof *h->mv);
        h->beats = calloc(c->n_beats + 1, sizeof *h->beats);
        if (!h->mv || !h->beats)
            return -1;
        memcpy(h->mv, c->mv + cut, (size_t)h->n * sizeof *h->mv);
        for (b = 0; b < c->n_beats; b++) {
            if (c->beats[b].sample < cut)
                continue;
            h->beats[h->n_beats] = c->beats[b];
            h->beats[h->n_beats].sample -= cut;
            h->n_beats++;
        }
        /* Keep only the calibration part's beats. */
        c->n = cut;
        while (c->n_beats && c->beats[c->n_beats - 1].sample >= cut)
            c->n_beats--;
        run->n_holdout++;
    }
    return 0;
}

/* Options of the job's parameters (validated when it was submitted). */
static void read_options(job_run *run, json_t *p)
{
    json_t *ft = json_object_get(p, "finetune"), *v;

    ep_prune_default_opts(&run->prune);
    ep_prune_method_from_name(json_string_value(json_object_get(p, "method")),
                              &run->prune.method);
    run->prune.keep = json_number_value(json_object_get(p, "keep"));
    if ((v = json_object_get(p, "mask_list")))
        run->prune.mask_list = (int)json_integer_value(v);
    if ((v = json_object_get(p, "candidates")))
        run->prune.candidates = (int)json_integer_value(v);
    if ((v = json_object_get(p, "coreset_scale")))
        run->prune.coreset_scale = json_number_value(v);
    if ((v = json_object_get(p, "seed")))
        run->prune.seed = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(p, "reconstruct")))
        run->prune.reconstruct = json_is_true(v);
    if ((v = json_object_get(p, "prune_head_input")))
        run->prune.prune_head_input = json_is_true(v);
    /* Jobs stored before refit_drifted or raw_norms existed ran without
     * them. */
    run->prune.refit_drifted = json_is_true(json_object_get(p,
                                                            "refit_drifted"));
    run->prune.raw_norms = json_is_true(json_object_get(p, "raw_norms"));
    if ((v = json_object_get(p, "lambda")))
        run->prune.lambda = json_number_value(v);
    if ((v = json_object_get(p, "batch_windows")))
        run->prune.batch_windows = (int)json_integer_value(v);
    if ((v = json_object_get(p, "max_windows")))
        run->prune.max_windows = (int)json_integer_value(v);
    /* Jobs stored before distillation existed ran without it. */
    run->prune.distill_steps =
        (int)json_integer_value(json_object_get(p, "distill_steps"));
    if ((v = json_object_get(p, "distill_lr")))
        run->prune.distill_lr = json_number_value(v);
    run->stratify = !json_is_false(json_object_get(p, "stratify"));

    run->finetune = json_is_object(ft);
    ep_finetune_default_opts(&run->train);
    if (!run->finetune)
        return;
    if ((v = json_object_get(ft, "epochs")))
        run->train.epochs = (int)json_integer_value(v);
    if ((v = json_object_get(ft, "steps_per_epoch")))
        run->train.steps_per_epoch = (int)json_integer_value(v);
    if ((v = json_object_get(ft, "batch")))
        run->train.batch = (int)json_integer_value(v);
    if ((v = json_object_get(ft, "lr")))
        run->train.lr = json_number_value(v);
    if ((v = json_object_get(ft, "weight_decay")))
        run->train.weight_decay = json_number_value(v);
    if ((v = json_object_get(ft, "seed")))
        run->train.seed = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(ft, "freeze_encoder")))
        run->train.freeze_encoder = json_is_true(v);
    if ((v = json_object_get(ft, "augment")))
        run->train.augment = json_is_true(v);
    run->train.checkpoint = NULL;
}

/* Read everything a job needs from the store. */
static int load_inputs(ed_app *app, job_run *run, json_t *params, char *msg,
                       size_t ms)
{
    json_t *ids, *h, *v;
    size_t i;
    int rc;

    rc = ed_store_blob(app->store, &run->model_blob, &run->model_len,
                       "SELECT weights FROM models WHERE id = ?", "i",
                       run->model_id);
    if (rc != 1) {
        snprintf(msg, ms, "model %lld no longer exists",
                 (long long)run->model_id);
        return -1;
    }
    read_options(run, params);

    /* Calibration batches. */
    ids = json_object_get(params, "batch_ids");
    run->calib = calloc(json_array_size(ids) + 1, sizeof *run->calib);
    if (!run->calib)
        return -1;
    json_array_foreach(ids, i, v) {
        if (load_batch(app, json_integer_value(v), &run->calib[i], msg, ms))
            return -1;
        run->n_calib++;
    }

    /* Held-out part: other batches, or the tail of each batch. */
    h = json_object_get(params, "holdout");
    if (json_is_object(h) && json_object_get(h, "fraction"))
        return split_holdout(run, json_number_value(json_object_get(
                                 h, "fraction")));
    ids = json_object_get(h, "batch_ids");
    if (!json_is_array(ids))
        return 0;
    run->holdout = calloc(json_array_size(ids) + 1, sizeof *run->holdout);
    if (!run->holdout)
        return -1;
    json_array_foreach(ids, i, v) {
        if (load_batch(app, json_integer_value(v), &run->holdout[i], msg,
                       ms))
            return -1;
        run->n_holdout++;
    }
    return 0;
}

/* ---- the worker ------------------------------------------------------- */

static void set_progress(job_run *run, double fraction, int group,
                         int n_groups, const char *stage)
{
    pthread_mutex_lock(&run->lock);
    run->fraction = fraction;
    run->group = group;
    run->n_groups = n_groups;
    snprintf(run->stage, sizeof run->stage, "%s", stage);
    pthread_mutex_unlock(&run->lock);
}

/* Share of the overall progress taken by pruning (the rest fine-tunes). */
static double prune_share(const job_run *run)
{
    return run->finetune ? 0.6 : 1.0;
}

static int on_prune_progress(const ep_prune_progress *p, void *ud)
{
    job_run *run = ud;

    set_progress(run, p->fraction * prune_share(run), p->group, p->n_groups,
                 p->stage ? p->stage : "pruning");
    return atomic_load(&run->stop) != STOP_NONE;
}

static int on_train_progress(const ep_train_progress *p, void *ud)
{
    job_run *run = ud;
    double share = prune_share(run);

    pthread_mutex_lock(&run->lock);
    run->fraction = share + (1.0 - share) * p->fraction;
    snprintf(run->stage, sizeof run->stage, "finetune");
    pthread_mutex_unlock(&run->lock);
    return atomic_load(&run->stop) != STOP_NONE;
}

static json_t *class_json(const ep_class_stats *c)
{
    return json_pack("{s:f, s:f, s:f, s:I}", "se", c->se, "ppv", c->ppv,
                     "f1", c->f1, "support", (json_int_t)c->support);
}

/* Infer every held-out segment with net and score it (EC57, 150 ms).
 * Limitation: progress stands still while a segment is inferred (several
 * seconds for 25 minutes on a slow core) and a cancel waits for it, since
 * a segment is inferred whole: cut into pieces, its beats at the cuts
 * would change. */
static int score_holdout(job_run *run, const ep_net *net, json_t **out)
{
    ep_score_counts total, counts;
    ep_score_stats st;
    ep_infer_opts io;
    ep_inferer *inf = NULL;
    ep_beat *beats = NULL;
    size_t n_beats = 0;
    json_t *classes;
    int i, rc, c;

    memset(&total, 0, sizeof total);
    ep_infer_default_opts(&io);
    rc = ep_inferer_create(net, &io, &inf, &run->err);
    for (i = 0; !rc && i < run->n_holdout; i++) {
        const job_seg *s = &run->holdout[i];
        if (atomic_load(&run->stop) != STOP_NONE) {
            rc = ep_error_set(&run->err, EP_ECANCELED, "stopped while "
                              "scoring held-out batch %lld",
                              (long long)s->batch_id);
            break;
        }
        rc = ep_infer_beats(inf, s->mv, s->n, s->fs, &beats, &n_beats,
                            &run->err);
        if (!rc)
            rc = ep_score_record(s->beats, s->n_beats, beats, n_beats, s->fs,
                                 0.15, &counts, &run->err);
        if (!rc)
            ep_score_add(&total, &counts);
        free(beats);
        beats = NULL;
    }
    ep_inferer_free(inf);
    if (rc)
        return rc;

    ep_score_stats_from(&total, &st);
    classes = json_object();
    for (c = 0; c < EP_AAMI_COUNT; c++)
        json_object_set_new(classes, ep_aami_name((ep_aami)c),
                            class_json(&st.cls[c]));
    *out = json_pack("{s:f, s:f, s:f, s:I, s:I, s:I, s:o}", "det_se",
                     st.det_se, "det_ppv", st.det_ppv, "macro_f1",
                     st.macro_f1, "det_tp", (json_int_t)st.det_tp, "det_fn",
                     (json_int_t)st.det_fn, "det_fp", (json_int_t)st.det_fp,
                     "classes", classes);
    return 0;
}

/* Fine-tune the pruned network on the calibration batches' beats. */
static int finetune(job_run *run, ep_net *net)
{
    ep_train_segment *segs = calloc((size_t)run->n_calib, sizeof *segs);
    int i, n = 0, rc;

    if (!segs)
        return ep_error_set(&run->err, EP_ENOMEM, "finetune: out of memory");
    for (i = 0; i < run->n_calib; i++) {
        if (!run->calib[i].n_beats)
            continue;
        segs[n].mv = run->calib[i].mv;
        segs[n].n = run->calib[i].n;
        segs[n].fs = run->calib[i].fs;
        segs[n].beats = run->calib[i].beats;
        segs[n].n_beats = run->calib[i].n_beats;
        n++;
    }
    set_progress(run, prune_share(run), run->n_groups, run->n_groups,
                 "finetune");
    rc = ep_finetune_run(net, segs, n, &run->train, on_train_progress, run,
                         &run->err);
    free(segs);
    return rc;
}

static void job_work(uv_work_t *w)
{
    job_run *run = w->data;
    ep_calib_segment *segs = NULL;
    ep_net *net = NULL;
    int i, rc;

    /* The model, and its scores before pruning. */
    rc = ep_model_load_buffer(run->model_blob, run->model_len, &net,
                              &run->err);
    if (!rc && run->n_holdout) {
        set_progress(run, 0, 0, 0, "score-before");
        rc = score_holdout(run, net, &run->scores_before);
    }

    /* Prune on the calibration batches. */
    if (!rc) {
        segs = calloc((size_t)run->n_calib, sizeof *segs);
        if (!segs)
            rc = ep_error_set(&run->err, EP_ENOMEM, "out of memory");
    }
    for (i = 0; !rc && i < run->n_calib; i++) {
        segs[i].mv = run->calib[i].mv;
        segs[i].n = run->calib[i].n;
        segs[i].fs = run->calib[i].fs;
        if (run->stratify && run->calib[i].n_beats) {
            segs[i].beats = run->calib[i].beats;
            segs[i].n_beats = run->calib[i].n_beats;
        }
    }
    if (!rc)
        rc = ep_prune_run(net, segs, run->n_calib, &run->prune,
                          on_prune_progress, run, &run->result, &run->err);
    free(segs);
    ep_net_free(net);

    /* Optional fine-tuning, scores after, and the new model's bytes. */
    if (!rc && run->finetune)
        rc = finetune(run, run->result->net);
    if (!rc && run->n_holdout) {
        set_progress(run, 0.99, run->n_groups, run->n_groups, "score-after");
        rc = score_holdout(run, run->result->net, &run->scores_after);
    }
    if (!rc)
        rc = ep_model_save_buffer(run->result->net, &run->out_blob,
                                  &run->out_len, &run->err);
    if (!rc)
        ed_api_models_check(run->out_blob, run->out_len, &run->out_check);
    if (rc == 0 && atomic_load(&run->stop) != STOP_NONE)
        rc = EP_ECANCELED;   /* asked to stop after the last round */
    run->rc = rc;
}

/* ---- outcome ---------------------------------------------------------- */

static void unlink_run(ed_jobs *jobs, job_run *run)
{
    job_run **p;

    for (p = &jobs->running; *p; p = &(*p)->next) {
        if (*p == run) {
            *p = run->next;
            jobs->n_running--;
            return;
        }
    }
}

/* The warnings of a finished job (see ed_warnings.h), each also logged. */
static json_t *job_warnings(const job_run *run)
{
    size_t counts[EP_AAMI_COUNT] = {0}, k;
    json_t *warnings = json_array(), *w;
    int i, annotated = 0;

    for (i = 0; i < run->n_calib; i++) {
        for (k = 0; k < run->calib[i].n_beats; k++)
            counts[run->calib[i].beats[k].cls]++;
        annotated |= run->calib[i].n_beats > 0;
    }
    ed_warn_calibration(warnings, counts, annotated);
    if (run->result)
        ed_warn_refits(warnings, run->result);
    ed_warn_holdout(warnings, run->scores_before, run->scores_after,
                    run->n_holdout);
    json_array_foreach(warnings, k, w) {
        char quoted[600];
        ed_log(ED_LOG_WARN, "job_warning", "job=%lld warning=%s",
               (long long)run->id,
               ed_log_quote(quoted, sizeof quoted, json_string_value(w)));
    }
    return warnings;
}

void ed_jobs_result_name(char *out, size_t size, const char *parent,
                         int64_t job)
{
    int suffix = snprintf(NULL, 0, "-job%lld", (long long)job);

    snprintf(out, size, "%.*s-job%lld", ED_MODEL_NAME_MAX - suffix, parent,
             (long long)job);
}

/* Store the pruned model, its masks and the job result in one
 * transaction. */
static int record_success(ed_app *app, job_run *run, double seconds)
{
    char name[128], msg[700], now[32], quoted[800];
    int64_t model_id = 0;
    json_t *result, *row;
    char *text;
    int g, rc = -1;

    run->err.msg[0] = '\0';
    if (ed_store_begin(app->store))
        return -1;
    ed_jobs_result_name(name, sizeof name, run->model_name, run->id);
    if (ed_api_models_insert(app, name, run->out_blob, run->out_len,
                             &run->out_check, run->model_id, run->id,
                             &model_id, msg, sizeof msg)) {
        ed_log(ED_LOG_ERROR, "job_store_failed", "job=%lld reason=%s",
               (long long)run->id, ed_log_quote(quoted, sizeof quoted, msg));
        snprintf(run->err.msg, sizeof run->err.msg, "the pruned model "
                 "could not be stored: %.400s", msg);
        goto out;
    }
    for (g = 0; g < run->result->n_groups; g++) {
        const ep_prune_group_report *gr = &run->result->groups[g];
        json_t *kept = json_array();
        int k;
        for (k = 0; k < gr->channels_after; k++)
            json_array_append_new(kept, json_integer(gr->kept[k]));
        text = json_dumps(kept, JSON_COMPACT);
        json_decref(kept);
        if (!text || ed_store_exec(app->store, "INSERT INTO masks (job_id, "
                                   "group_index, producer, channels_before, "
                                   "kept) VALUES (?,?,?,?,?)", "iitit",
                                   run->id, (int64_t)g, gr->producer,
                                   (int64_t)gr->channels_before, text) < 0) {
            free(text);
            goto out;
        }
        free(text);
    }

    /* The result as GET /v1/jobs/{id} shows it. */
    row = ed_store_row(app->store, NULL, "SELECT parameters, "
                       "macs_per_second, size_bytes FROM models WHERE id = ?",
                       "i", model_id);
    result = json_pack("{s:I, s:O, s:O, s:O, s:f, s:{s:O, s:O}, s:o}",
                       "model_id", (json_int_t)model_id, "parameters",
                       json_object_get(row, "parameters"), "macs_per_second",
                       json_object_get(row, "macs_per_second"), "size_bytes",
                       json_object_get(row, "size_bytes"), "seconds", seconds,
                       "scores", "before", run->scores_before ?
                       run->scores_before : json_null(), "after",
                       run->scores_after ? run->scores_after : json_null(),
                       "warnings", job_warnings(run));
    json_decref(row);
    if (result && run->prune.distill_steps > 0)
        json_object_set_new(result, "distill", json_pack(
            "{s:i, s:f, s:f, s:i, s:i, s:b, s:f}", "steps",
            run->prune.distill_steps, "kl_before",
            run->result->distill.kl_before, "kl_after",
            run->result->distill.kl_after, "best_step",
            run->result->distill.best_step, "validation_windows",
            run->result->distill.validation_windows, "held_out",
            run->result->distill.held_out, "seconds",
            run->result->distill.seconds));
    /* Nine significant digits, as in every answer: MAC counts stay exact. */
    text = json_dumps(result, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(result);
    ed_store_now(now);
    if (text && ed_store_exec(app->store, "UPDATE jobs SET state = "
                              "'succeeded', progress = 1, finished_at = ?, "
                              "result = ?, result_model_id = ?, stage = "
                              "NULL, progress_group = progress_groups "
                              "WHERE id = ?", "ttii", now, text, model_id,
                              run->id) == 1)
        rc = 0;
    free(text);
out:
    if (rc == 0 && ed_store_commit(app->store) == 0)
        return 0;
    ed_store_rollback(app->store);
    return -1;
}

/* The metrics and log line of a finished job; frees it and looks for
 * more work. */
static void report_finished(ed_app *app, job_run *run, const char *state)
{
    char quoted[600], distill[160];

    if (strcmp(state, "abandoned") != 0)
        ed_metrics_job(state, run->seconds);
    distill[0] = '\0';
    if (run->rc == 0 && run->result != NULL && run->prune.distill_steps > 0)
        snprintf(distill, sizeof distill, " distill_kl_before=%.6g "
                 "distill_kl_after=%.6g distill_best_step=%d",
                 run->result->distill.kl_before,
                 run->result->distill.kl_after,
                 run->result->distill.best_step);
    ed_log(run->rc && run->rc != EP_ECANCELED ? ED_LOG_WARN : ED_LOG_INFO,
           "job_finished", "job=%lld state=%s seconds=%.1f%s%s%s",
           (long long)run->id, state, run->seconds, distill,
           run->rc ? " error=" : "",
           run->rc ? ed_log_quote(quoted, sizeof quoted, run->err.msg) : "");
    free_run(run);
    if (!app->jobs->shutting_down)
        ed_jobs_kick(app);
}

/* Mark a job failed with the message in run->err, and the step it
 * stopped in (the last tick may have written an earlier one). */
static void store_failure(ed_app *app, job_run *run)
{
    char now[32], stage[32];

    pthread_mutex_lock(&run->lock);
    memcpy(stage, run->stage, sizeof stage);
    pthread_mutex_unlock(&run->lock);
    ed_store_now(now);
    ed_store_exec(app->store, "UPDATE jobs SET state = 'failed', "
                  "finished_at = ?, error = ?, stage = COALESCE(?, stage) "
                  "WHERE id = ?", "ttti", now, run->err.msg,
                  stage[0] ? stage : NULL, run->id);
}

/* A result that could not be stored: failed, with the reason that
 * record_success gave, or else the store's. */
static void fail_unstored(ed_app *app, job_run *run)
{
    run->rc = EP_EIO;
    if (run->err.msg[0] == '\0')
        snprintf(run->err.msg, sizeof run->err.msg, "the result could not "
                 "be stored: %s", ed_store_errmsg(app->store));
    store_failure(app, run);
    report_finished(app, run, "failed");
}

/* Try the unsettled results again (see ED_JOBS_STORE_TRIES).  With
 * final set (the daemon is stopping) there is no later try: a result
 * still not stored is dropped, and its job, still 'running' in the
 * store, runs again at the next start. */
static void settle_results(ed_app *app, int final)
{
    job_run **p = &app->jobs->unsettled, *run;

    while ((run = *p) != NULL) {
        if (record_success(app, run, run->seconds) == 0) {
            *p = run->next;
            report_finished(app, run, "succeeded");
        } else if (ed_store_busy(app->store) && !final &&
                   ++run->store_tries < ED_JOBS_STORE_TRIES) {
            p = &run->next;
        } else if (final && ed_store_busy(app->store)) {
            *p = run->next;
            ed_log(ED_LOG_WARN, "job_unstored", "job=%lld reason=\"store "
                   "busy at stop; the job runs again at the next start\"",
                   (long long)run->id);
            free_run(run);
        } else {
            *p = run->next;
            fail_unstored(app, run);
        }
    }
}

static void after_job(uv_work_t *w, int status)
{
    job_run *run = w->data;
    ed_app *app = run->app;
    ed_jobs *jobs = app->jobs;
    char now[32], quoted[300];
    int stop = atomic_load(&run->stop);

    unlink_run(jobs, run);
    ed_store_now(now);
    run->seconds = (double)(ed_http_now_ns() - run->start_ns) / 1e9;

    /* Shutdown (or work never started): back to the queue. */
    if (run->abandoned) {
        report_finished(app, run, "abandoned");
    } else if (status == UV_ECANCELED ||
               (stop == STOP_SHUTDOWN && run->rc == EP_ECANCELED)) {
        ed_store_exec(app->store, "UPDATE jobs SET state = 'queued', "
                      "started_at = NULL, progress = 0, progress_group = 0, "
                      "stage = NULL WHERE id = ?", "i", run->id);
        ed_log(ED_LOG_INFO, "job_requeued", "job=%lld reason=shutdown "
               "seconds=%.1f", (long long)run->id, run->seconds);
        free_run(run);
    } else if (run->rc == EP_ECANCELED) {
        ed_store_exec(app->store, "UPDATE jobs SET state = 'cancelled', "
                      "finished_at = ?, error = 'cancelled by request' "
                      "WHERE id = ?", "ti", now, run->id);
        report_finished(app, run, "cancelled");
    } else if (run->rc != 0) {
        store_failure(app, run);
        report_finished(app, run, "failed");
    } else if (record_success(app, run, run->seconds) == 0) {
        report_finished(app, run, "succeeded");
    } else if (ed_store_busy(app->store) && !jobs->shutting_down) {
        /* Done but not stored: kept, and tried again from on_tick. */
        ed_log(ED_LOG_WARN, "job_store_retry", "job=%lld reason=%s "
               "retry_every_s=%d tries=%d", (long long)run->id,
               ed_log_quote(quoted, sizeof quoted,
                            ed_store_errmsg(app->store)), ED_JOBS_STORE_EVERY,
               ED_JOBS_STORE_TRIES);
        run->next = jobs->unsettled;
        jobs->unsettled = run;
    } else {
        fail_unstored(app, run);
    }
}

/* ---- dispatch --------------------------------------------------------- */

/* Fail a job that cannot start (its inputs vanished). */
/* A queued job whose inputs cannot be read fails: 0, or -1 when that
 * could not be written (it stays queued). */
static int fail_job(ed_app *app, int64_t id, const char *msg)
{
    char now[32];

    ed_store_now(now);
    if (ed_store_exec(app->store, "UPDATE jobs SET state = 'failed', "
                      "finished_at = ?, error = ? WHERE id = ? AND state = "
                      "'queued'", "tti", now, msg, id) < 0)
        return -1;
    ed_metrics_job("failed", 0);
    ed_log(ED_LOG_WARN, "job_failed", "job=%lld reason=\"inputs\"",
           (long long)id);
    return 0;
}

/* Start a queued job: 0 when it runs or failed for good, -1 when the
 * store could not be written (another process holds it, the disk is
 * full): the job stays queued, and kicking stops until the next tick, or
 * the same row would be taken again at once. */
static int start_job(ed_app *app, json_t *row)
{
    ed_jobs *jobs = app->jobs;
    job_run *run = calloc(1, sizeof *run);
    json_error_t jerr;
    json_t *params;
    char msg[300] = "out of memory", now[32];
    int rc;

    if (!run)
        return -1;
    pthread_mutex_init(&run->lock, NULL);
    run->app = app;
    run->id = json_integer_value(json_object_get(row, "id"));
    run->model_id = json_integer_value(json_object_get(row, "model_id"));
    snprintf(run->model_name, sizeof run->model_name, "%s",
             json_string_value(json_object_get(row, "model_name"))
             ? json_string_value(json_object_get(row, "model_name"))
             : "model");
    params = json_loads(json_string_value(json_object_get(row, "params")), 0,
                        &jerr);
    if (!params || !run->model_id ||
        load_inputs(app, run, params, msg, sizeof msg)) {
        json_decref(params);
        rc = fail_job(app, run->id, run->model_id ? msg : "the job's model "
                      "was deleted");
        free_run(run);
        return rc;
    }
    json_decref(params);

    /* Mark it running, then hand it to the pool; a job the store still
     * shows queued must not run (a cancel would find it queued, the next
     * kick would start it twice).  Limitation: a job interrupted by a
     * stop or a crash starts again from the beginning; pruning keeps no
     * intermediate state. */
    ed_store_now(now);
    if (ed_store_exec(app->store, "UPDATE jobs SET state = 'running', "
                      "started_at = ?, attempts = attempts + 1, progress = "
                      "0, stage = 'start' WHERE id = ? AND state = 'queued'",
                      "ti", now, run->id) != 1) {
        ed_log(ED_LOG_WARN, "job_start_deferred", "job=%lld reason=\"the "
               "store could not be written\"", (long long)run->id);
        free_run(run);
        return -1;
    }
    run->start_ns = ed_http_now_ns();
    run->work.data = run;
    run->next = jobs->running;
    jobs->running = run;
    jobs->n_running++;
    uv_queue_work(app->loop, &run->work, job_work, after_job);
    ed_log(ED_LOG_INFO, "job_started", "job=%lld model=%lld batches=%d "
           "holdout=%d method=%s keep=%g distill_steps=%d",
           (long long)run->id, (long long)run->model_id, run->n_calib,
           run->n_holdout, ep_prune_method_name(run->prune.method),
           run->prune.keep, run->prune.distill_steps);
    return 0;
}

void ed_jobs_kick(ed_app *app)
{
    ed_jobs *jobs = app->jobs;
    json_t *row;
    int found, rc;

    while (!jobs->shutting_down &&
           jobs->n_running < app->cfg.max_running_jobs) {
        row = ed_store_row(app->store, &found, "SELECT j.id, j.model_id, "
                           "j.params, m.name AS model_name FROM jobs j LEFT "
                           "JOIN models m ON m.id = j.model_id WHERE "
                           "j.state = 'queued' ORDER BY j.id LIMIT 1", NULL);
        if (!row || !found) {
            json_decref(row);
            return;
        }
        rc = start_job(app, row);
        json_decref(row);
        if (rc)
            return;
    }
}

/* Once a second: write the running jobs' progress, look for work. */
static void on_tick(uv_timer_t *t)
{
    ed_app *app = t->data;
    job_run *run;
    double fraction;
    int group, n_groups;
    char stage[32];

    for (run = app->jobs->running; run; run = run->next) {
        pthread_mutex_lock(&run->lock);
        fraction = run->fraction;
        group = run->group;
        n_groups = run->n_groups;
        memcpy(stage, run->stage, sizeof stage);
        pthread_mutex_unlock(&run->lock);
        if (!run->abandoned)
            ed_store_exec(app->store, "UPDATE jobs SET progress = ?, "
                          "progress_group = ?, progress_groups = ?, stage = ? "
                          "WHERE id = ? AND state = 'running'", "diiti",
                          fraction, (int64_t)group, (int64_t)n_groups,
                          stage[0] ? stage : NULL, run->id);
    }
    if (app->jobs->unsettled &&
        ++app->jobs->ticks % ED_JOBS_STORE_EVERY == 0)
        settle_results(app, 0);
    ed_store_tick(app->store);
    ed_jobs_kick(app);
}

int ed_jobs_create(ed_app *app)
{
    ed_jobs *jobs = calloc(1, sizeof *jobs);

    if (!jobs)
        return -1;
    app->jobs = jobs;
    uv_timer_init(app->loop, &jobs->timer);
    jobs->timer.data = app;
    uv_timer_start(&jobs->timer, on_tick, 1000, 1000);
    return 0;
}

static void free_jobs(uv_handle_t *h)
{
    free(h->data);
}

void ed_jobs_free(ed_app *app)
{
    ed_jobs *jobs = app->jobs;

    if (!jobs)
        return;
    jobs->timer.data = jobs;
    uv_close((uv_handle_t *)&jobs->timer, free_jobs);
    app->jobs = NULL;
}

int ed_jobs_recover(ed_app *app)
{
    char why[160];
    int failed = 0, requeued = 0;

    snprintf(why, sizeof why, "the daemon died or was stopped past its "
             "deadline while this job ran, %d times; it is not started "
             "again", ED_JOBS_MAX_INTERRUPTIONS);

    /* In order, in one transaction (a store another process holds locked
     * must not leave half of it done, a death uncounted, say): a job
     * whose cancel was asked for is not run again; one still marked
     * running died with the daemon (a clean stop queues it again); one
     * that keeps dying may be the cause (it ran out of memory, say) and
     * is not started again; the rest go back to the queue. */
    if (ed_store_begin(app->store))
        return -1;
    if (ed_store_exec(app->store, "UPDATE jobs SET state = 'cancelled', "
                      "error = 'cancelled by request', finished_at = "
                      "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE state IN "
                      "('running', 'queued') AND cancel_requested = 1",
                      NULL) < 0 ||
        ed_store_exec(app->store, "UPDATE jobs SET interrupted = "
                      "interrupted + 1 WHERE state = 'running'", NULL) < 0 ||
        (failed = ed_store_exec(
             app->store, "UPDATE jobs SET state = 'failed', error = ?, "
             "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE "
             "state IN ('running', 'queued') AND interrupted >= ?", "ti",
             why, (int64_t)ED_JOBS_MAX_INTERRUPTIONS)) < 0 ||
        (requeued = ed_store_exec(
             app->store, "UPDATE jobs SET state = 'queued', started_at = "
             "NULL, progress = 0, progress_group = 0, stage = NULL WHERE "
             "state = 'running'", NULL)) < 0 ||
        ed_store_commit(app->store)) {
        ed_store_rollback(app->store);
        return -1;
    }
    if (failed > 0)
        ed_log(ED_LOG_WARN, "jobs_failed", "count=%d reason=\"interrupted "
               "%d times\"", failed, ED_JOBS_MAX_INTERRUPTIONS);
    if (requeued > 0)
        ed_log(ED_LOG_INFO, "jobs_requeued", "count=%d", requeued);
    return 0;
}

int ed_jobs_cancel(ed_app *app, int64_t id)
{
    job_run *run;

    for (run = app->jobs->running; run; run = run->next) {
        if (run->id == id) {
            atomic_store(&run->stop, STOP_CANCEL);
            return 1;
        }
    }
    return 0;
}

int ed_jobs_running(ed_app *app)
{
    return app->jobs ? app->jobs->n_running : 0;
}

void ed_jobs_shutdown(ed_app *app)
{
    job_run *run;

    app->jobs->shutting_down = 1;
    uv_timer_stop(&app->jobs->timer);
    settle_results(app, 1);
    for (run = app->jobs->running; run; run = run->next) {
        int expected = STOP_NONE;
        atomic_compare_exchange_strong(&run->stop, &expected, STOP_SHUTDOWN);
        uv_cancel((uv_req_t *)&run->work);   /* only if not started */
    }
}

void ed_jobs_abandon(ed_app *app)
{
    job_run *run;

    /* A job that did not stop by the deadline counts as interrupted: one
     * stuck in work it cannot leave would otherwise run again at every
     * start.  One whose cancel was asked for is cancelled. */
    for (run = app->jobs->running; run; run = run->next) {
        int cancelled = atomic_load(&run->stop) == STOP_CANCEL;

        run->abandoned = 1;
        if (cancelled)
            ed_store_exec(app->store, "UPDATE jobs SET state = 'cancelled', "
                          "error = 'cancelled by request', finished_at = "
                          "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), "
                          "interrupted = interrupted + 1 WHERE id = ? AND "
                          "state = 'running'", "i", run->id);
        else
            ed_store_exec(app->store, "UPDATE jobs SET state = 'queued', "
                          "started_at = NULL, progress = 0, interrupted = "
                          "interrupted + 1 WHERE id = ? AND state = "
                          "'running'", "i", run->id);
        ed_log(ED_LOG_WARN, cancelled ? "job_cancelled" : "job_requeued",
               "job=%lld reason=\"stop timeout\"", (long long)run->id);
    }
}
