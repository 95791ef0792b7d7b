/*
 * bench_pruning.c - the measurements behind docs/pruning-results.md.
 *
 * Prunes a trained model with every requested method, keep ratio, seed and
 * reconstruction setting, and measures each pruned model on the DS2 half of
 * the MIT-BIH database (de Chazal et al. 2004): parameters, MACs, inference
 * time relative to the unpruned model in the same run, AAMI EC57 scores
 * (macro-F1 and F1 of N, S, V, F), agreement of beat labels with the
 * unpruned model and the relative error of its class probabilities; then
 * where the labels differ: the share of the unpruned model's correct
 * labels kept, the share of changed labels that match the annotations,
 * and the agreement on the beats the unpruned model is sure of.
 *
 * Calibration settings:
 *   general   one pruned model per configuration, calibrated on a stretch
 *             of every DS1 record, tested on the whole of every DS2 record;
 *   literal   as general, with the classifier's input channels pruned too
 *             (prune_head_input, the spec's literal grouping);
 *   personal  one pruned model per configuration and DS2 record,
 *             calibrated on the record's first 5 minutes and tested on the
 *             rest; optionally also after fine-tuning both the pruned and
 *             the unpruned model on those 5 minutes.
 *
 * A third setting, speed, times the unpruned and l1-pruned models in
 * turns on one record for each keep ratio, for the speed-up column.
 *
 * With --distill STEPS the refitted models are then distilled towards the
 * unpruned one (ep_distill.h) and their lines say "distill" as refit.
 *
 * Output: one tab-separated line per measured model on stdout (header
 * first), progress on stderr.  bench/pruning_results.sh turns the lines
 * into the Markdown table.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_prune.h"
#include "ecgprune/ep_score.h"
#include "ecgprune/ep_train.h"
#include "ecgprune/ep_wfdb.h"

#define MAX_LIST 64

/* Beats the unpruned model labels with at least this confidence (its
 * class's share of the mean class probabilities over the beat) count as
 * sure; agreement is also given on those alone.  70 % of the unpruned
 * model's DS2 beats reach it. */
#define SURE_CONFIDENCE 0.9

/* de Chazal's inter-patient split (the paced records are in neither). */
static const char *const ds1_records[] = {
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119",
    "122", "124", "201", "203", "205", "207", "208", "209", "215", "220",
    "223", "230"
};
static const char *const ds2_records[] = {
    "100", "103", "105", "111", "113", "117", "121", "123", "200", "202",
    "210", "212", "213", "214", "219", "221", "222", "228", "231", "232",
    "233", "234"
};
#define N_DS1 ((int)(sizeof ds1_records / sizeof ds1_records[0]))
#define N_DS2 ((int)(sizeof ds2_records / sizeof ds2_records[0]))

typedef struct bench_args {
    const char *model, *mitdb, *setting;
    double keeps[MAX_LIST];
    int n_keeps;
    ep_prune_method methods[MAX_LIST];
    int n_methods;
    int recons[2], n_recons;
    uint64_t seeds[MAX_LIST];
    int n_seeds;
    const char *records[MAX_LIST];
    int n_records;
    int finetune, max_windows, refit_drifted, raw_norms, distill_steps;
    int mask_list, candidates;      /* 0: the library's defaults */
    double distill_lr, coreset_scale;
    double calib_from, calib_seconds, personal_seconds;
} bench_args;

/* One record in mV with its reference beats (absolute samples). */
typedef struct rec_data {
    char name[16];
    float *mv;
    int64_t n;
    double fs;
    ep_ref_beat *ref;
    size_t n_ref;
} rec_data;

/* What the unpruned model says on one test stretch. */
typedef struct base_out {
    ep_beat *beats;
    size_t n_beats;
    float *probs;
    int64_t n_probs;
} base_out;

/* Accumulated over the test stretches of one model. */
typedef struct metrics {
    ep_score_counts counts;
    int64_t agree, base_beats;
    int64_t base_right, base_right_kept;  /* unpruned label = reference */
    int64_t differ, differ_pruned_right;  /* pruned label != unpruned */
    int64_t sure, sure_kept;  /* unpruned confidence >= SURE_CONFIDENCE */
    double d2, s2;          /* class probabilities: sum (p - p0)^2, p0^2 */
    double infer_s;
} metrics;

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* err NULL: what says it all. */
static void die(const char *what, const ep_error *err)
{
    fprintf(stderr, "bench_pruning: %s%s%s\n", what, err != NULL ? ": " : "",
            err != NULL ? err->msg : "");
    exit(1);
}

/* ---- arguments ---------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
        "usage: bench_pruning --model M --mitdb DIR [--setting general|"
        "literal|personal|speed]\n"
        "  [--keeps 0.75,0.5,0.3] [--methods all|M1,M2] [--recon on,off]\n"
        "  [--seeds 1,2,3] [--records 100,103|ds2] [--finetune]\n"
        "  [--calib-from S] [--calib-seconds S] [--personal-seconds S]\n"
        "  [--max-windows N] [--refit-drifted] [--raw-norms]\n"
        "  [--distill STEPS]\n"
        "  [--distill-lr X] [--mask-list N] [--candidates N]\n"
        "  [--coreset-scale X]\n");
    exit(2);
}

/* Split a comma list in place. */
static int split(char *s, char **items, int cap)
{
    int n = 0;
    char *tok;

    for (tok = strtok(s, ","); tok != NULL && n < cap;
         tok = strtok(NULL, ","))
        items[n++] = tok;
    return n;
}

static void parse_list(bench_args *a, const char *opt, char *val)
{
    char *items[MAX_LIST];
    int n = split(val, items, MAX_LIST), i;

    for (i = 0; i < n; i++) {
        if (strcmp(opt, "--keeps") == 0) {
            a->keeps[a->n_keeps++] = atof(items[i]);
        } else if (strcmp(opt, "--seeds") == 0) {
            a->seeds[a->n_seeds++] = strtoull(items[i], NULL, 10);
        } else if (strcmp(opt, "--records") == 0) {
            a->records[a->n_records++] = items[i];
        } else if (strcmp(opt, "--recon") == 0) {
            a->recons[a->n_recons++] = strcmp(items[i], "on") == 0;
        } else if (strcmp(items[i], "all") == 0) {
            for (a->n_methods = 0; a->n_methods <= EP_PRUNE_CONTRIB;
                 a->n_methods++)
                a->methods[a->n_methods] = (ep_prune_method)a->n_methods;
        } else if (ep_prune_method_from_name(
                       items[i], &a->methods[a->n_methods++]) != EP_OK) {
            fprintf(stderr, "bench_pruning: unknown method %s\n", items[i]);
            exit(2);
        }
    }
}

static void parse_args(int argc, char **argv, bench_args *a)
{
    static char defaults[4][64] = {"0.75,0.5,0.3", "all", "on,off", "1"};
    int i;

    memset(a, 0, sizeof *a);
    a->setting = "general";
    a->calib_from = 300.0;
    a->calib_seconds = 30.0;
    a->personal_seconds = 300.0;
    for (i = 1; i < argc; i++) {
        const char *opt = argv[i];

        if (strcmp(opt, "--finetune") == 0) {
            a->finetune = 1;
            continue;
        }
        if (strcmp(opt, "--refit-drifted") == 0) {
            a->refit_drifted = 1;
            continue;
        }
        if (strcmp(opt, "--raw-norms") == 0) {
            a->raw_norms = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        if (strcmp(opt, "--model") == 0)
            a->model = argv[++i];
        else if (strcmp(opt, "--mitdb") == 0)
            a->mitdb = argv[++i];
        else if (strcmp(opt, "--setting") == 0)
            a->setting = argv[++i];
        else if (strcmp(opt, "--calib-from") == 0)
            a->calib_from = atof(argv[++i]);
        else if (strcmp(opt, "--calib-seconds") == 0)
            a->calib_seconds = atof(argv[++i]);
        else if (strcmp(opt, "--personal-seconds") == 0)
            a->personal_seconds = atof(argv[++i]);
        else if (strcmp(opt, "--max-windows") == 0)
            a->max_windows = atoi(argv[++i]);
        else if (strcmp(opt, "--distill") == 0)
            a->distill_steps = atoi(argv[++i]);
        else if (strcmp(opt, "--distill-lr") == 0)
            a->distill_lr = atof(argv[++i]);
        else if (strcmp(opt, "--mask-list") == 0)
            a->mask_list = atoi(argv[++i]);
        else if (strcmp(opt, "--candidates") == 0)
            a->candidates = atoi(argv[++i]);
        else if (strcmp(opt, "--coreset-scale") == 0)
            a->coreset_scale = atof(argv[++i]);
        else if (strcmp(opt, "--keeps") == 0 || strcmp(opt, "--seeds") == 0 ||
                 strcmp(opt, "--records") == 0 ||
                 strcmp(opt, "--recon") == 0 || strcmp(opt, "--methods") == 0)
            parse_list(a, opt, argv[++i]);
        else
            usage();
    }
    if (a->model == NULL || a->mitdb == NULL ||
        (strcmp(a->setting, "general") != 0 &&
         strcmp(a->setting, "literal") != 0 &&
         strcmp(a->setting, "personal") != 0 &&
         strcmp(a->setting, "speed") != 0))
        usage();
    if (a->n_keeps == 0)
        parse_list(a, "--keeps", defaults[0]);
    if (a->n_methods == 0)
        parse_list(a, "--methods", defaults[1]);
    if (a->n_recons == 0)
        parse_list(a, "--recon", defaults[2]);
    if (a->n_seeds == 0)
        parse_list(a, "--seeds", defaults[3]);
    if (a->n_records == 0 ||
        (a->n_records == 1 && strcmp(a->records[0], "ds2") == 0))
        for (a->n_records = 0; a->n_records < N_DS2; a->n_records++)
            a->records[a->n_records] = ds2_records[a->n_records];
}

/* ---- data --------------------------------------------------------------- */

static void load_record(const char *dir, const char *name, rec_data *r)
{
    char path[1024];
    ep_annotations *ann;
    ep_record *rec;
    ep_error err;
    int sig;

    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (ep_wfdb_read_record(path, &rec, &err) != EP_OK)
        die(path, &err);
    sig = ep_wfdb_find_signal(rec, "MLII");
    sig = sig < 0 ? 0 : sig;
    r->n = rec->n_samples;
    r->fs = rec->sampling_rate;
    r->mv = malloc((size_t)r->n * sizeof *r->mv);
    if (r->mv == NULL || ep_wfdb_signal_mv(rec, sig, r->mv, &err))
        die(path, &err);
    ep_wfdb_free_record(rec);
    if (ep_wfdb_read_annotations(path, "atr", &ann, &err) != EP_OK ||
        ep_score_reference(ann, 0, &r->ref, &r->n_ref, &err) != EP_OK)
        die(path, &err);
    ep_wfdb_free_annotations(ann);
}

static void free_record(rec_data *r)
{
    free(r->mv);
    free(r->ref);
}

/* A calibration or training stretch [from, to) with its beats relative to
 * `from`; beats points into `store` (caller frees). */
static ep_calib_segment stretch(const rec_data *r, int64_t from, int64_t to,
                                ep_ref_beat **store)
{
    ep_calib_segment s;
    size_t i, n = 0;

    *store = malloc((r->n_ref + 1) * sizeof **store);
    for (i = 0; *store != NULL && i < r->n_ref; i++)
        if (r->ref[i].sample >= from && r->ref[i].sample < to) {
            (*store)[n] = r->ref[i];
            (*store)[n++].sample -= from;
        }
    s.mv = r->mv + from;
    s.n = to - from;
    s.fs = r->fs;
    s.beats = *store;
    s.n_beats = n;
    return s;
}

/* ---- evaluation --------------------------------------------------------- */

/* Beats of a model as a reference list. */
static ep_ref_beat *as_reference(const ep_beat *beats, size_t n)
{
    ep_ref_beat *ref = malloc((n + 1) * sizeof *ref);
    size_t i;

    for (i = 0; ref != NULL && i < n; i++) {
        ref[i].sample = beats[i].sample;
        ref[i].cls = beats[i].cls;
    }
    return ref;
}

/* Class of the beat of list (sorted by sample) nearest to `sample` within
 * tol samples, or EP_AAMI_COUNT when there is none. */
static ep_aami nearest_class(const ep_ref_beat *list, size_t n,
                             int64_t sample, int64_t tol)
{
    size_t lo = 0, hi = n;
    int64_t best = tol + 1;
    ep_aami cls = EP_AAMI_COUNT;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (list[mid].sample < sample)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (hi = lo > 0 ? lo - 1 : 0; hi < n && hi <= lo; hi++) {
        int64_t d = llabs(list[hi].sample - sample);

        if (d < best) {
            best = d;
            cls = list[hi].cls;
        }
    }
    return cls;
}

/* Where the labels differ, who is right: for each beat of the unpruned
 * model, the nearest annotation and the nearest pruned beat within the
 * 150 ms window.  Nearest-neighbour pairing, not the one-to-one matching
 * of the scorer, so the counts can differ from the agreement column by a
 * few beats in a thousand. */
static void count_who_is_right(const ep_ref_beat *base, size_t n_base,
                               const ep_ref_beat *pruned, size_t n_pruned,
                               const ep_ref_beat *ref, size_t n_ref,
                               int64_t tol, metrics *m)
{
    size_t i;

    for (i = 0; i < n_base; i++) {
        ep_aami truth = nearest_class(ref, n_ref, base[i].sample, tol);
        ep_aami now = nearest_class(pruned, n_pruned, base[i].sample, tol);

        if (base[i].cls == truth) {
            m->base_right++;
            m->base_right_kept += now == truth;
        }
        if (now != base[i].cls) {
            m->differ++;
            m->differ_pruned_right += now == truth;
        }
    }
}

/* Agreement on the beats the unpruned model is sure of, with the same
 * nearest-neighbour pairing as count_who_is_right. */
static void count_sure(const ep_beat *base, const ep_ref_beat *base_ref,
                       size_t n_base, const ep_ref_beat *pruned,
                       size_t n_pruned, int64_t tol, metrics *m)
{
    size_t i;

    for (i = 0; i < n_base; i++) {
        if (base[i].confidence < SURE_CONFIDENCE)
            continue;
        m->sure++;
        m->sure_kept += nearest_class(pruned, n_pruned, base_ref[i].sample,
                                      tol) == base_ref[i].cls;
    }
}

/* Compare with the unpruned model: label agreement, who is right where
 * they differ, and probabilities. */
static void compare_base(const base_out *base, const ep_beat *beats,
                         size_t nb, const float *probs, int64_t n_probs,
                         const ep_ref_beat *truth, size_t n_truth,
                         double fs, metrics *m)
{
    ep_ref_beat *ref = as_reference(base->beats, base->n_beats);
    ep_ref_beat *now = as_reference(beats, nb);
    ep_score_counts c;
    ep_error err;
    int64_t q;
    int k;

    if (ref == NULL || now == NULL)
        die("agreement: out of memory", NULL);
    memset(&c, 0, sizeof c);
    if (ep_score_record(ref, base->n_beats, beats, nb, fs, 0.15, &c, &err))
        die("agreement", &err);
    for (k = 0; k < EP_AAMI_COUNT; k++)
        m->agree += c.confusion[k][k];
    m->base_beats += (int64_t)base->n_beats;
    count_who_is_right(ref, base->n_beats, now, nb, truth, n_truth,
                       (int64_t)llround(0.15 * fs), m);
    count_sure(base->beats, ref, base->n_beats, now, nb,
               (int64_t)llround(0.15 * fs), m);
    for (q = 0; q < n_probs && q < base->n_probs; q++) {
        double d = (double)probs[q] - base->probs[q];

        m->d2 += d * d;
        m->s2 += (double)base->probs[q] * base->probs[q];
    }
    free(now);
    free(ref);
}

/* Run net on r[from, to): beats scored against the annotations, class
 * probabilities kept for the comparison.  With base, compare to it; with
 * keep, store this model's output there.  Only the network's part
 * (ep_infer_probabilities) is timed: resampling and filtering are the
 * same for every model. */
static void eval_stretch(const ep_net *net, const rec_data *r, int64_t from,
                         int64_t to, const base_out *base, base_out *keep,
                         metrics *m)
{
    ep_infer_opts io;
    ep_inferer *inf;
    ep_beat *beats;
    ep_score_counts c;
    ep_error err;
    size_t nb, i, lo = 0, hi;
    int64_t nx;
    float *x, *probs;
    double t0, ratio = r->fs / net->meta.sampling_rate;

    ep_infer_default_opts(&io);
    if (ep_inferer_create(net, &io, &inf, &err) != EP_OK ||
        ep_infer_prepare(net, r->mv + from, to - from, r->fs, &x, &nx,
                         &err) != EP_OK)
        die(r->name, &err);
    probs = malloc((size_t)nx * net->meta.n_classes * sizeof *probs);
    if (probs == NULL)
        die(r->name, &err);
    t0 = now_s();
    if (ep_infer_probabilities(inf, x, nx, probs, &err) != EP_OK)
        die(r->name, &err);
    m->infer_s += now_s() - t0;
    free(x);
    if (ep_infer_pick_beats(&net->meta, probs, nx, &io, &beats, &nb,
                            &err) != EP_OK)
        die(r->name, &err);
    for (i = 0; i < nb; i++)
        beats[i].sample = from + llround((double)beats[i].sample * ratio);

    /* Reference beats inside the stretch. */
    while (lo < r->n_ref && r->ref[lo].sample < from)
        lo++;
    for (hi = lo; hi < r->n_ref && r->ref[hi].sample < to; hi++)
        continue;
    memset(&c, 0, sizeof c);
    if (ep_score_record(r->ref + lo, hi - lo, beats, nb, r->fs, 0.15, &c,
                        &err) != EP_OK)
        die(r->name, &err);
    ep_score_add(&m->counts, &c);

    if (base != NULL)
        compare_base(base, beats, nb, probs, nx * net->meta.n_classes,
                     r->ref + lo, hi - lo, r->fs, m);
    if (keep != NULL) {
        keep->beats = beats;
        keep->n_beats = nb;
        keep->probs = probs;
        keep->n_probs = nx * net->meta.n_classes;
    } else {
        free(beats);
        free(probs);
    }
    ep_inferer_free(inf);
}

/* The "recon" value of a refit followed by distillation (--distill). */
#define RECON_DISTILL 2

/* ---- output ------------------------------------------------------------- */

static void print_header(void)
{
    printf("setting\tstage\tkeep\tmethod\trecon\tseed\tparams\tmacs\t"
           "infer_s\tbase_infer_s\tmacro_f1\tf1_N\tf1_S\tf1_V\tf1_F\t"
           "agreement\tscore_err\tprune_s\tright_kept\tdiffer_fixed\t"
           "sure_share\tsure_agreement\n");
}

static void print_line(const char *setting, const char *stage, double keep,
                       const char *method, int recon, uint64_t seed,
                       const ep_net *net, const metrics *m,
                       const metrics *base, double prune_s)
{
    ep_score_stats s;

    ep_score_stats_from(&m->counts, &s);
    printf("%s\t%s\t%.2f\t%s\t%s\t%llu\t%lld\t%.6g\t%.3f\t%.3f\t%.4f\t%.4f"
           "\t%.4f\t%.4f\t%.4f\t%.5f\t%.5f\t%.2f\t%.5f\t%.5f\t%.5f\t%.5f\n",
           setting,
           stage, keep,
           method, recon == RECON_DISTILL ? "distill" : recon ? "on" : "off",
           (unsigned long long)seed,
           (long long)ep_net_parameters(net), ep_net_macs_per_second(net),
           m->infer_s, base->infer_s, s.macro_f1, s.cls[EP_AAMI_N].f1,
           s.cls[EP_AAMI_S].f1, s.cls[EP_AAMI_V].f1, s.cls[EP_AAMI_F].f1,
           m->base_beats > 0 ? (double)m->agree / m->base_beats : 1.0,
           m->s2 > 0.0 ? sqrt(m->d2 / m->s2) : 0.0, prune_s,
           m->base_right > 0 ? (double)m->base_right_kept / m->base_right
                             : 1.0,
           m->differ > 0 ? (double)m->differ_pruned_right / m->differ : 0.0,
           m->base_beats > 0 ? (double)m->sure / m->base_beats : 0.0,
           m->sure > 0 ? (double)m->sure_kept / m->sure : 1.0);
    fflush(stdout);
}

/* Frees what eval_stretch stored of the unpruned model. */
static void free_base(base_out *b)
{
    free(b->beats);
    free(b->probs);
}

/* ---- the two settings --------------------------------------------------- */

/* The configurations: deterministic methods run with the first seed
 * only, since every seed gives the same model. */
typedef struct config {
    double keep;
    ep_prune_method method;
    int recon;              /* 0 off, 1 on, RECON_DISTILL */
    uint64_t seed;
} config;

static int list_configs(const bench_args *a, config *out, int cap)
{
    int k, m, r, s, n = 0;

    for (k = 0; k < a->n_keeps; k++)
        for (m = 0; m < a->n_methods; m++)
            for (r = 0; r < a->n_recons; r++)
                for (s = 0; s < a->n_seeds && n < cap; s++) {
                    if (s > 0 && (a->methods[m] == EP_PRUNE_L1 ||
                                  a->methods[m] == EP_PRUNE_CONTRIB))
                        continue;
                    out[n++] = (config){a->keeps[k], a->methods[m],
                                        a->recons[r] && a->distill_steps > 0
                                            ? RECON_DISTILL
                                            : a->recons[r],
                                        a->seeds[s]};
                }
    return n;
}

static ep_net *prune_with(const bench_args *a, const ep_net *net,
                          const config *c, const ep_calib_segment *segs,
                          int n_segs, double *seconds)
{
    ep_prune_opts o;
    ep_prune_result *res;
    ep_error err;
    ep_net *out;

    ep_prune_default_opts(&o);
    o.method = c->method;
    o.keep = c->keep;
    o.reconstruct = c->recon != 0;
    o.seed = c->seed;
    o.prune_head_input = strcmp(a->setting, "literal") == 0;
    if (a->max_windows > 0)
        o.max_windows = a->max_windows;
    if (a->mask_list > 0)
        o.mask_list = a->mask_list;
    if (a->candidates > 0)
        o.candidates = a->candidates;
    if (a->coreset_scale > 0)
        o.coreset_scale = a->coreset_scale;
    o.refit_drifted = a->refit_drifted;
    o.raw_norms = a->raw_norms;
    o.distill_steps = c->recon == RECON_DISTILL ? a->distill_steps : 0;
    o.distill_lr = a->distill_lr;
    if (ep_prune_run(net, segs, n_segs, &o, NULL, NULL, &res, &err))
        die("prune", &err);
    *seconds = res->seconds;
    if (o.distill_steps > 0)
        fprintf(stderr, "distill: divergence %.5f -> %.5f (step %d of %d, "
                "%d held out) in %.1f s\n", res->distill.kl_before,
                res->distill.kl_after, res->distill.best_step,
                o.distill_steps, res->distill.validation_windows,
                res->distill.seconds);
    out = res->net;
    res->net = NULL;
    ep_prune_result_free(res);
    return out;
}

static void run_general(const bench_args *a, const ep_net *net,
                        rec_data *test, int n_test)
{
    static config cfg[4096];
    ep_calib_segment segs[N_DS1];
    ep_ref_beat *store[N_DS1];
    base_out base[MAX_LIST];
    rec_data calib[N_DS1];
    metrics mb;
    int i, c, n_cfg = list_configs(a, cfg, 4096);

    /* The unpruned model, kept as the reference of every comparison. */
    memset(&mb, 0, sizeof mb);
    for (i = 0; i < n_test; i++)
        eval_stretch(net, &test[i], 0, test[i].n, NULL,
                     &base[i], &mb);
    print_line(a->setting, "pruned", 1.0, "none", 0, 0, net, &mb, &mb, 0.0);

    for (i = 0; i < N_DS1; i++) {
        int64_t from, to;

        load_record(a->mitdb, ds1_records[i], &calib[i]);
        from = (int64_t)(a->calib_from * calib[i].fs);
        to = from + (int64_t)(a->calib_seconds * calib[i].fs);
        to = to < calib[i].n ? to : calib[i].n;
        segs[i] = stretch(&calib[i], from, to, &store[i]);
    }
    for (c = 0; c < n_cfg; c++) {
        metrics m;
        double ps;
        ep_net *pruned = prune_with(a, net, &cfg[c], segs, N_DS1, &ps);

        fprintf(stderr, "%s %d/%d: %s keep %.2f recon %d seed %llu\n",
                a->setting, c + 1, n_cfg, ep_prune_method_name(cfg[c].method),
                cfg[c].keep, cfg[c].recon, (unsigned long long)cfg[c].seed);
        memset(&m, 0, sizeof m);
        for (i = 0; i < n_test; i++)
            eval_stretch(pruned, &test[i], 0, test[i].n,
                         &base[i], NULL, &m);
        print_line(a->setting, "pruned", cfg[c].keep,
                   ep_prune_method_name(cfg[c].method), cfg[c].recon,
                   cfg[c].seed, pruned, &m, &mb, ps);
        ep_net_free(pruned);
    }
    for (i = 0; i < N_DS1; i++) {
        free(store[i]);
        free_record(&calib[i]);
    }
    for (i = 0; i < n_test; i++)
        free_base(&base[i]);
}

/* Fine-tune a copy of net on one record's calibration stretch. */
static ep_net *finetuned(const ep_net *net, const ep_calib_segment *s,
                         uint64_t seed)
{
    ep_train_segment t;
    ep_train_opts o;
    ep_error err;
    ep_net *copy;

    if (ep_net_clone(net, &copy, &err) != EP_OK)
        die("clone", &err);
    ep_finetune_default_opts(&o);
    o.seed = seed;
    t.mv = s->mv;
    t.n = s->n;
    t.fs = s->fs;
    t.beats = s->beats;
    t.n_beats = s->n_beats;
    if (ep_finetune_run(copy, &t, 1, &o, NULL, NULL, &err) != EP_OK)
        die("finetune", &err);
    return copy;
}

/* Index of seed in the --seeds list; fine-tuning a deterministic
 * method's model uses the first. */
static int seed_index(const bench_args *a, uint64_t seed)
{
    int s;

    for (s = 0; s < a->n_seeds; s++)
        if (a->seeds[s] == seed)
            return s;
    return 0;
}

/* What one test record's unpruned model says, as is and fine-tuned once
 * per seed (with --finetune), accumulated into mb and mb_ft. */
static void personal_bases(const bench_args *a, const ep_net *net,
                           const rec_data *rec, int64_t split,
                           const ep_calib_segment *seg, base_out *base,
                           base_out *base_ft, metrics *mb, metrics *mb_ft)
{
    int s;

    eval_stretch(net, rec, split, rec->n, NULL, base, mb);
    for (s = 0; a->finetune && s < a->n_seeds; s++) {
        ep_net *tuned = finetuned(net, seg, a->seeds[s]);

        eval_stretch(tuned, rec, split, rec->n, NULL, &base_ft[s],
                     &mb_ft[s]);
        ep_net_free(tuned);
    }
}

/* Personal calibration: per record, prune on the first minutes and test
 * on the rest; the stages "pruned" and (with --finetune) "finetuned",
 * the unpruned model fine-tuned with every seed of the list. */
static void run_personal(const bench_args *a, const ep_net *net,
                         rec_data *test, int n_test)
{
    static config cfg[4096];
    static metrics m[4096][2];
    metrics mb, mb_ft[MAX_LIST];
    int i, c, s, n_cfg = list_configs(a, cfg, 4096);

    memset(m, 0, sizeof m);
    memset(&mb, 0, sizeof mb);
    memset(mb_ft, 0, sizeof mb_ft);
    for (i = 0; i < n_test; i++) {
        int64_t split = (int64_t)(a->personal_seconds * test[i].fs);
        int last = i == n_test - 1;
        ep_ref_beat *store;
        ep_calib_segment seg = stretch(&test[i], 0, split, &store);
        base_out base, base_ft[MAX_LIST];

        fprintf(stderr, "personal: record %s (%d/%d)\n", test[i].name,
                i + 1, n_test);
        personal_bases(a, net, &test[i], split, &seg, &base, base_ft, &mb,
                       mb_ft);

        /* Each configuration: prune, test, fine-tune, test again. */
        for (c = 0; c < n_cfg; c++) {
            const char *name = ep_prune_method_name(cfg[c].method);
            int si = seed_index(a, cfg[c].seed);
            double ps;
            ep_net *pruned = prune_with(a, net, &cfg[c], &seg, 1, &ps);

            eval_stretch(pruned, &test[i], split, test[i].n, &base, NULL,
                         &m[c][0]);
            if (a->finetune) {
                ep_net *pt = finetuned(pruned, &seg, cfg[c].seed);

                eval_stretch(pt, &test[i], split, test[i].n, &base_ft[si],
                             NULL, &m[c][1]);
                ep_net_free(pt);
            }
            if (last) {
                print_line("personal", "pruned", cfg[c].keep, name,
                           cfg[c].recon, cfg[c].seed, pruned, &m[c][0], &mb,
                           ps);
                if (a->finetune)
                    print_line("personal", "finetuned", cfg[c].keep, name,
                               cfg[c].recon, cfg[c].seed, pruned, &m[c][1],
                               &mb_ft[si], ps);
            }
            ep_net_free(pruned);
        }

        /* The unpruned model's own lines, one per fine-tuning seed. */
        if (last)
            print_line("personal", "pruned", 1.0, "none", 0, 0, net, &mb,
                       &mb, 0.0);
        for (s = 0; last && a->finetune && s < a->n_seeds; s++)
            print_line("personal", "finetuned", 1.0, "none", 0, a->seeds[s],
                       net, &mb_ft[s], &mb_ft[s], 0.0);
        free(store);
        free_base(&base);
        for (s = 0; a->finetune && s < a->n_seeds; s++)
            free_base(&base_ft[s]);
    }
}

/* Network time of models a and b on x, the fastest of `reps` runs each,
 * a and b alternating run by run so that load from other processes falls
 * on both alike. */
static void fastest_pair(const ep_net *a, const ep_net *b, const float *x,
                         int64_t n, float *probs, int reps, double *best_a,
                         double *best_b)
{
    const ep_net *nets[2] = {a, b};
    double best[2] = {INFINITY, INFINITY};
    ep_inferer *inf[2];
    ep_infer_opts io;
    ep_error err;
    int i, r;

    ep_infer_default_opts(&io);
    for (i = 0; i < 2; i++)
        if (ep_inferer_create(nets[i], &io, &inf[i], &err) != EP_OK)
            die("inferer", &err);
    for (r = 0; r < reps; r++)
        for (i = 0; i < 2; i++) {
            double t0 = now_s();

            if (ep_infer_probabilities(inf[i], x, n, probs, &err) != EP_OK)
                die("speed", &err);
            t0 = now_s() - t0;
            best[i] = t0 < best[i] ? t0 : best[i];
        }
    for (i = 0; i < 2; i++)
        ep_inferer_free(inf[i]);
    *best_a = best[0];
    *best_b = best[1];
}

/* Speed only: for each keep, the unpruned and an l1-pruned model take
 * turns on the first test record, the fastest of five runs each. */
static void run_speed(const bench_args *a, const ep_net *net,
                      const rec_data *r)
{
    ep_calib_segment seg;
    ep_ref_beat *store;
    ep_error err;
    metrics m, mb;
    float *x, *probs;
    int64_t nx;
    int k;

    if (ep_infer_prepare(net, r->mv, r->n, r->fs, &x, &nx, &err) != EP_OK)
        die(r->name, &err);
    probs = malloc((size_t)nx * net->meta.n_classes * sizeof *probs);
    if (probs == NULL)
        die("speed", &err);
    seg = stretch(r, 0, r->n < 300 * r->fs ? r->n : (int64_t)(300 * r->fs),
                  &store);
    memset(&mb, 0, sizeof mb);
    fastest_pair(net, net, x, nx, probs, 2, &mb.infer_s, &m.infer_s);
    print_line("speed", "pruned", 1.0, "none", 0, 0, net, &mb, &mb, 0.0);
    for (k = 0; k < a->n_keeps; k++) {
        config c = {a->keeps[k], EP_PRUNE_L1, 0, 1};
        double ps;
        ep_net *pruned = prune_with(a, net, &c, &seg, 1, &ps);

        memset(&m, 0, sizeof m);
        memset(&mb, 0, sizeof mb);
        fastest_pair(net, pruned, x, nx, probs, 5, &mb.infer_s, &m.infer_s);
        print_line("speed", "pruned", c.keep, "l1", 0, 1, pruned, &m, &mb,
                   ps);
        ep_net_free(pruned);
    }
    free(store);
    free(probs);
    free(x);
}

int main(int argc, char **argv)
{
    bench_args a;
    rec_data test[MAX_LIST];
    ep_net *net;
    ep_error err;
    int i;

    parse_args(argc, argv, &a);
    if (ep_model_load(a.model, &net, &err) != EP_OK)
        die(a.model, &err);
    for (i = 0; i < a.n_records; i++)
        load_record(a.mitdb, a.records[i], &test[i]);
    print_header();
    if (strcmp(a.setting, "general") == 0 ||
        strcmp(a.setting, "literal") == 0)
        run_general(&a, net, test, a.n_records);
    else if (strcmp(a.setting, "speed") == 0)
        run_speed(&a, net, &test[0]);
    else
        run_personal(&a, net, test, a.n_records);
    for (i = 0; i < a.n_records; i++)
        free_record(&test[i]);
    ep_net_free(net);
    return 0;
}
