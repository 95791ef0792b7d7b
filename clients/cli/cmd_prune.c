/*
 * cmd_prune.c - `ecgprune prune MODEL --calib RECORD[:FROM-TO] ...
 * --method M --keep K --out PRUNED [--masks MASKS.json]`: channel pruning
 * with least-squares reconstruction on calibration ECG (ep_prune.h).
 * Prints a per-group report (channels kept, consumer error before and
 * after the refit, time) and the model's size before and after; writes
 * the smaller model as an ordinary model file and the kept channels as
 * JSON.  Ctrl-C cancels between rounds.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_lsq.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_prune.h"
#include "ecgprune/ep_wfdb.h"

#define MAX_CALIB 256

static void usage(FILE *out)
{
    fprintf(out,
        "usage: ecgprune prune MODEL --calib RECORD[:FROM-TO] [...]\n"
        "         [--method M] [--keep K] --out PRUNED [--masks MASKS.json]\n"
        "         [--mask-list L] [--candidates G] [--coreset-scale S]\n"
        "         [--seed N] [--no-reconstruct] [--prune-head-input]\n"
        "         [--refit-drifted] [--raw-norms] [--lambda X]\n"
        "         [--distill STEPS] [--distill-lr X]\n"
        "         [--batch-windows B] [--max-windows W] [--signal NAME]\n"
        "         [--no-stratify] [--json]\n"
        "\n"
        "Prune the channels of MODEL on calibration ECG and refit the\n"
        "layers they fed by least squares; write the smaller model to\n"
        "PRUNED.  FROM-TO are seconds into the record (default: all);\n"
        "several stretches may follow one --calib or repeat it.\n"
        "\n"
        "  --method M         ising-kernel, ising-filter, l1, random,\n"
        "                     coreset or contrib (default ising-kernel)\n"
        "  --keep K           fraction of channels kept per group, (0, 1]\n"
        "                     (default 0.5)\n"
        "  --mask-list L      masks in the coreset list (default 32)\n"
        "  --candidates G     candidate masks per round (default 8)\n"
        "  --coreset-scale S  coreset size m = ceil(S * kept) (default 1.25)\n"
        "  --seed N           seed of every random choice (default 1)\n"
        "  --no-reconstruct   drop channels without refitting\n"
        "  --prune-head-input also prune the channels the classifier reads\n"
        "                     (kept whole by default)\n"
        "  --refit-drifted    also refit layers that lost no input once a\n"
        "                     group before them was pruned\n"
        "  --raw-norms        channel norms of the weights before batch-norm\n"
        "                     folding, as the spec writes them\n"
        "  --lambda X         ridge of the refit (default: 1e-5 trace/size)\n"
        "  --distill STEPS    then STEPS steps of distillation towards\n"
        "                     MODEL on the calibration windows (default 0:\n"
        "                     none; 200 take about 30 s at keep 0.5)\n"
        "  --distill-lr X     its peak learning rate, (0, 1] (default 5e-4)\n"
        "  --batch-windows B  calibration windows per batch (default 8)\n"
        "  --max-windows W    calibration windows used at most (default 64)\n"
        "  --signal NAME      signal to read (default MLII, else the first)\n"
        "  --no-stratify      ignore annotations when drawing windows\n"
        "  --masks FILE       write the kept channel indices as JSON\n"
        "  --json             print the report as one JSON object\n");
}

/* Set by SIGINT; the progress callback turns it into a cancellation. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct prune_args {
    const char *model, *out, *masks, *signal;
    const char *calib[MAX_CALIB];
    int n_calib, json, stratify;
    ep_prune_opts opts;
} prune_args;

/* Options with a value; returns 0, or the exit status of a usage error. */
static int parse_value(prune_args *a, const char *opt, const char *val)
{
    long v;

    if (strcmp(opt, "--calib") == 0) {
        if (a->n_calib == MAX_CALIB)
            return cli_usage_error("prune", "more than %d --calib",
                                   MAX_CALIB);
        a->calib[a->n_calib++] = val;
    } else if (strcmp(opt, "--method") == 0) {
        if (ep_prune_method_from_name(val, &a->opts.method) != EP_OK)
            return cli_usage_error("prune", "unknown method '%s'", val);
    } else if (strcmp(opt, "--keep") == 0) {
        if (cli_parse_double(val, 0.0, 1.0, &a->opts.keep) != 0 ||
            !(a->opts.keep > 0.0))
            return cli_usage_error("prune", "--keep %s: expected a fraction"
                                   " in (0, 1]", val);
    } else if (strcmp(opt, "--mask-list") == 0 ||
               strcmp(opt, "--candidates") == 0 ||
               strcmp(opt, "--batch-windows") == 0 ||
               strcmp(opt, "--max-windows") == 0) {
        if (cli_parse_int(val, 1, 1000000, &v) != 0)
            return cli_usage_error("prune", "%s %s: expected an integer "
                                   "from 1 to 1000000", opt, val);
        if (strcmp(opt, "--mask-list") == 0)
            a->opts.mask_list = (int)v;
        else if (strcmp(opt, "--candidates") == 0)
            a->opts.candidates = (int)v;
        else if (strcmp(opt, "--batch-windows") == 0)
            a->opts.batch_windows = (int)v;
        else
            a->opts.max_windows = (int)v;
    } else if (strcmp(opt, "--distill") == 0) {
        if (cli_parse_int(val, 0, 100000, &v) != 0)
            return cli_usage_error("prune", "--distill %s: expected 0..100000"
                                   " steps", val);
        a->opts.distill_steps = (int)v;
    } else if (strcmp(opt, "--distill-lr") == 0) {
        if (cli_parse_double(val, 0.0, 1.0, &a->opts.distill_lr) != 0 ||
            !(a->opts.distill_lr > 0.0))
            return cli_usage_error("prune", "--distill-lr %s: expected a "
                                   "rate in (0, 1]", val);
    } else if (strcmp(opt, "--coreset-scale") == 0) {
        if (cli_parse_double(val, 1.0, 1000.0, &a->opts.coreset_scale) != 0)
            return cli_usage_error("prune", "--coreset-scale %s: expected "
                                   "1..1000", val);
    } else if (strcmp(opt, "--seed") == 0) {
        if (cli_parse_seed(val, &a->opts.seed) != 0)
            return cli_usage_error("prune", "--seed %s: expected 0.."
                                   CLI_SEED_MAX, val);
    } else if (strcmp(opt, "--lambda") == 0) {
        if (cli_parse_double(val, 0.0, 1e12, &a->opts.lambda) != 0)
            return cli_usage_error("prune", "--lambda %s: expected a "
                                   "number from 0 to 1e12", val);
    } else if (strcmp(opt, "--out") == 0) {
        a->out = val;
    } else if (strcmp(opt, "--masks") == 0) {
        a->masks = val;
    } else if (strcmp(opt, "--signal") == 0) {
        a->signal = val;
    } else {
        return cli_usage_error("prune", "unknown option '%s'", opt);
    }
    return 0;
}

static int parse_args(int argc, char **argv, prune_args *a)
{
    int i, rc;

    memset(a, 0, sizeof *a);
    a->stratify = 1;
    ep_prune_default_opts(&a->opts);
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];

        if (strcmp(arg, "--no-reconstruct") == 0) {
            a->opts.reconstruct = 0;
        } else if (strcmp(arg, "--prune-head-input") == 0) {
            a->opts.prune_head_input = 1;
        } else if (strcmp(arg, "--refit-drifted") == 0) {
            a->opts.refit_drifted = 1;
        } else if (strcmp(arg, "--raw-norms") == 0) {
            a->opts.raw_norms = 1;
        } else if (strcmp(arg, "--no-stratify") == 0) {
            a->stratify = 0;
        } else if (strcmp(arg, "--json") == 0) {
            a->json = 1;
        } else if (strncmp(arg, "--", 2) == 0) {
            if (i + 1 >= argc)
                return cli_usage_error("prune", "%s needs a value", arg);
            rc = parse_value(a, arg, argv[++i]);
            if (rc != 0)
                return rc;
        } else if (a->model == NULL) {
            a->model = arg;
        } else if (a->n_calib > 0) {
            /* "--calib R1 R2 ...": more calibration stretches. */
            rc = parse_value(a, "--calib", arg);
            if (rc != 0)
                return rc;
        } else {
            return cli_usage_error("prune", "unexpected argument '%s'", arg);
        }
    }
    if (a->model == NULL || a->out == NULL || a->n_calib == 0)
        return cli_usage_error("prune", "MODEL, --calib and --out are "
                               "required");
    if (a->opts.distill_lr > 0.0 && a->opts.distill_steps == 0)
        return cli_usage_error("prune", "--distill-lr without --distill "
                               "STEPS > 0: no distillation would run");
    return 0;
}

/* ---- calibration segments ----------------------------------------------- */

typedef struct calib_set {
    ep_calib_segment seg[MAX_CALIB];
    float *mv[MAX_CALIB];
    ep_ref_beat *beats[MAX_CALIB];
    int n;
} calib_set;

static void calib_set_free(calib_set *cs)
{
    int i;

    for (i = 0; i < cs->n; i++) {
        free(cs->mv[i]);
        free(cs->beats[i]);
    }
}

/* RECORD[:FROM-TO] -> record path and a sample range (to < 0: the end). */
static int parse_calib_spec(const char *spec, char *record, size_t cap,
                            double *from, double *to)
{
    const char *colon = strrchr(spec, ':');
    char range[64], *dash;

    *from = 0.0;
    *to = -1.0;
    if (colon == NULL || strchr(colon, '-') == NULL) {
        snprintf(record, cap, "%s", spec);
        return 0;
    }
    if ((size_t)(colon - spec) >= cap || strlen(colon + 1) >= sizeof range)
        return -1;
    memcpy(record, spec, (size_t)(colon - spec));
    record[colon - spec] = '\0';
    snprintf(range, sizeof range, "%s", colon + 1);
    dash = strchr(range, '-');
    *dash = '\0';
    if (cli_parse_double(range, 0.0, 1e9, from) != 0 ||
        cli_parse_double(dash + 1, 0.0, 1e9, to) != 0 || *to <= *from)
        return -1;
    return 0;
}

/* Reference beats of [first, last) relative to first, when RECORD.atr
 * exists. */
static int read_beats(const char *record, int64_t n_samples, int64_t first,
                      int64_t last, ep_ref_beat **out, size_t *n_out,
                      ep_error *err)
{
    char path[4200];
    ep_annotations *ann;
    size_t i;
    int rc;

    *out = NULL;
    *n_out = 0;
    snprintf(path, sizeof path, "%s.atr", record);
    if (access(path, F_OK) != 0)
        return 0;
    rc = cli_read_annotations(record, "atr", n_samples, &ann, err);
    if (rc != 0)
        return rc;
    *out = malloc((ann->count > 0 ? ann->count : 1) * sizeof **out);
    if (*out == NULL) {
        ep_wfdb_free_annotations(ann);
        return ep_error_set(err, EP_ENOMEM, "out of memory");
    }
    for (i = 0; i < ann->count; i++) {
        ep_aami cls = ep_aami_from_code(ann->items[i].code);
        int64_t s = ann->items[i].sample;

        if (cls == EP_AAMI_NONE || s < first || s >= last)
            continue;
        (*out)[*n_out].sample = s - first;
        (*out)[(*n_out)++].cls = cls;
    }
    ep_wfdb_free_annotations(ann);
    return 0;
}

/* Read one --calib segment into cs. */
static int load_segment(const prune_args *a, const char *spec,
                        calib_set *cs, ep_error *err)
{
    char record[4096];
    double from, to;
    cli_signal sig;
    int rc, k = cs->n;

    if (parse_calib_spec(spec, record, sizeof record, &from, &to) != 0)
        return ep_error_set(err, EP_EINVAL, "--calib %s: expected "
                            "RECORD[:FROM-TO] in seconds, 0 <= FROM < TO "
                            "<= 1e9", spec);
    rc = cli_read_signal(record, a->signal, from, to, &sig, err);
    if (rc != 0)
        return rc;
    cs->mv[k] = sig.mv;
    cs->seg[k].mv = sig.mv;
    cs->seg[k].n = sig.n;
    cs->seg[k].fs = sig.fs;
    cs->n++;
    if (a->stratify)
        rc = read_beats(record, sig.record_samples, sig.offset,
                        sig.offset + sig.n, &cs->beats[k],
                        &cs->seg[k].n_beats, err);
    cs->seg[k].beats = cs->beats[k];
    return rc;
}

/* ---- progress and report ------------------------------------------------ */

typedef struct progress_state {
    int tty, last_group;
} progress_state;

static int on_progress(const ep_prune_progress *p, void *ud)
{
    progress_state *ps = ud;

    if (ps->tty) {
        fprintf(stderr, "\rgroup %d/%d  %-11s round %d/%d  %5.1f s ",
                p->group, p->n_groups, p->stage, p->round, p->n_rounds,
                p->elapsed_s);
        fflush(stderr);
    } else if (strcmp(p->stage, "distill") == 0) {
        int every = p->n_rounds >= 4 ? p->n_rounds / 4 : 1;

        if (p->round == 1 || p->round % every == 0)
            fprintf(stderr, "distill step %d/%d (%.1f s)\n", p->round,
                    p->n_rounds, p->elapsed_s);
    } else if (p->group != ps->last_group) {
        fprintf(stderr, "group %d/%d (%.1f s)\n", p->group, p->n_groups,
                p->elapsed_s);
    }
    ps->last_group = p->group;
    return interrupted != 0;
}

static void print_distill(const ep_distill_report *d, const char *model)
{
    printf("distillation: divergence from %s on %s %.5f -> %.5f, ", model,
           d->held_out ? "held-out windows" : "the calibration windows",
           d->kl_before, d->kl_after);
    if (d->best_step > 0)
        printf("step %d kept (%.2f s)\n", d->best_step, d->seconds);
    else
        printf("no step beat the refit, which stays (%.2f s)\n",
               d->seconds);
}

static void print_report(const ep_net *before, const ep_prune_result *res,
                         const char *model)
{
    double m0 = ep_net_macs_per_second(before);
    double m1 = ep_net_macs_per_second(res->net);
    int g, whole = 0;

    printf("%-14s %9s %5s %10s %10s %8s\n", "group", "channels", "cons",
           "err before", "err after", "time s");
    for (g = 0; g < res->n_groups; g++) {
        const ep_prune_group_report *r = &res->groups[g];

        printf("%-14s %4d/%-4d %5d %10.4f %10.4f %8.2f\n", r->producer,
               r->channels_after, r->channels_before, r->n_consumers,
               r->err_before, r->err_after, r->seconds);
        whole += r->channels_after == r->channels_before;
    }
    if (whole > 0)
        printf("(n/n: kept whole, nothing to refit: the classifier's input "
               "channels unless\n --prune-head-input, or a group too small "
               "to lose a channel at this keep)\n");
    printf("parameters %lld -> %lld (%.3f)\n",
           (long long)ep_net_parameters(before),
           (long long)ep_net_parameters(res->net),
           (double)ep_net_parameters(res->net) / ep_net_parameters(before));
    printf("MACs per second %.4g -> %.4g (ratio %.3f)\n", m0, m1, m1 / m0);
    if (res->distill.seconds > 0.0)
        print_distill(&res->distill, model);
    printf("time %.2f s\n", res->seconds);
}

/* The warning for a group refitted with fewer than 10 rows per unknown,
 * or "" when it had enough. */
static const char *refit_warning(const ep_prune_group_report *r, char *buf,
                                 size_t size)
{
    if (r->underdetermined <= 0)
        return "";
    snprintf(buf, size, "group %s: only %.1f calibration rows per unknown "
             "(< %d); the ridge was scaled up; give more calibration ECG",
             r->producer, r->min_rows_per_unknown,
             EP_LSQ_MIN_ROWS_PER_UNKNOWN);
    return buf;
}

/* The warning about the calibration beats (ep_prune_calib_warning), or
 * "" when there is none or the beats were not read (--no-stratify). */
static const char *calib_warning(const prune_args *a, const calib_set *cs,
                                 char *buf, size_t size)
{
    size_t counts[EP_AAMI_COUNT] = {0};

    buf[0] = '\0';
    if (a->stratify)
        ep_prune_calib_warning(counts,
                               ep_prune_calib_counts(cs->seg, cs->n, counts),
                               buf, size);
    return buf;
}

static void print_warnings(const prune_args *a, const calib_set *cs,
                           const ep_prune_result *res)
{
    char buf[320];
    int g;

    if (*calib_warning(a, cs, buf, sizeof buf))
        fprintf(stderr, "ecgprune prune: warning: %s\n", buf);
    for (g = 0; g < res->n_groups; g++)
        if (*refit_warning(&res->groups[g], buf, sizeof buf))
            fprintf(stderr, "ecgprune prune: warning: %s\n", buf);
}

static json_t *report_json(const ep_net *before, const ep_prune_result *res,
                           const prune_args *a, const calib_set *cs)
{
    json_t *warnings = json_array();
    char buf[320], seed[24];
    json_t *obj = json_object(), *groups = json_array();
    int g;

    if (*calib_warning(a, cs, buf, sizeof buf))
        json_array_append_new(warnings, json_string(buf));

    for (g = 0; g < res->n_groups; g++) {
        const ep_prune_group_report *r = &res->groups[g];
        json_t *o = json_object();

        json_object_set_new(o, "producer", json_string(r->producer));
        json_object_set_new(o, "channels_before",
                            json_integer(r->channels_before));
        json_object_set_new(o, "channels_after",
                            json_integer(r->channels_after));
        json_object_set_new(o, "consumers", json_integer(r->n_consumers));
        json_object_set_new(o, "err_before", json_real(r->err_before));
        json_object_set_new(o, "err_after", json_real(r->err_after));
        json_object_set_new(o, "underdetermined",
                            json_integer(r->underdetermined));
        json_object_set_new(o, "min_rows_per_unknown",
                            json_real(r->min_rows_per_unknown));
        if (*refit_warning(r, buf, sizeof buf))
            json_array_append_new(warnings, json_string(buf));
        json_object_set_new(o, "seconds", json_real(r->seconds));
        json_array_append_new(groups, o);
    }
    json_object_set_new(obj, "method",
                        json_string(ep_prune_method_name(a->opts.method)));
    json_object_set_new(obj, "keep", json_real(a->opts.keep));
    /* As text, as in the masks: a seed past 2^53 survives every JSON
     * reader then. */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->opts.seed);
    json_object_set_new(obj, "seed", json_string(seed));
    json_object_set_new(obj, "parameters_before",
                        json_integer(ep_net_parameters(before)));
    json_object_set_new(obj, "parameters_after",
                        json_integer(ep_net_parameters(res->net)));
    json_object_set_new(obj, "macs_per_second_before",
                        json_real(ep_net_macs_per_second(before)));
    json_object_set_new(obj, "macs_per_second_after",
                        json_real(ep_net_macs_per_second(res->net)));
    json_object_set_new(obj, "seconds", json_real(res->seconds));
    if (a->opts.distill_steps > 0) {
        json_t *d = json_object();

        json_object_set_new(d, "steps", json_integer(a->opts.distill_steps));
        json_object_set_new(d, "kl_before",
                            json_real(res->distill.kl_before));
        json_object_set_new(d, "kl_after", json_real(res->distill.kl_after));
        json_object_set_new(d, "best_step",
                            json_integer(res->distill.best_step));
        json_object_set_new(d, "validation_windows",
                            json_integer(res->distill.validation_windows));
        json_object_set_new(d, "held_out",
                            json_boolean(res->distill.held_out));
        json_object_set_new(d, "seconds", json_real(res->distill.seconds));
        json_object_set_new(obj, "distill", d);
    }
    json_object_set_new(obj, "groups", groups);
    json_object_set_new(obj, "warnings", warnings);
    return obj;
}


/* The masks JSON and a final newline, written as models are (temporary
 * file and rename; FIFOs and devices refused, symbolic links kept). */
static int write_masks(const char *path, const char *text, ep_error *err)
{
    size_t len = strlen(text);
    unsigned char *buf = malloc(len + 1);
    int rc;

    if (buf == NULL)
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory", path);
    memcpy(buf, text, len);
    buf[len] = '\n';
    rc = ep_model_write_file(path, buf, len + 1, err);
    free(buf);
    return rc;
}

/* Every output path, before minutes of pruning: each must be usable, and
 * no output may replace MODEL or the other output.  (finetune may write
 * over its MODEL; a pruned model over the original would lose what
 * re-pruning and every comparison need.) */
static int check_outputs(const prune_args *a)
{
    int i, rc = cli_check_output("prune", "--out", a->out);

    if (rc == 0)
        rc = cli_check_distinct("prune", "MODEL", a->model, "--out", a->out);
    if (rc == 0 && a->masks != NULL)
        rc = cli_check_output("prune", "--masks", a->masks);
    if (rc == 0 && a->masks != NULL)
        rc = cli_check_distinct("prune", "--out", a->out, "--masks",
                                a->masks);
    if (rc == 0 && a->masks != NULL)
        rc = cli_check_distinct("prune", "MODEL", a->model, "--masks",
                                a->masks);
    for (i = 0; rc == 0 && i < a->n_calib; i++) {
        char record[4096];
        double from, to;

        if (parse_calib_spec(a->calib[i], record, sizeof record, &from,
                             &to) != 0)
            continue;   /* refused with its message when read */
        rc = cli_check_not_record("prune", "--out", a->out, record);
        if (rc == 0 && a->masks != NULL)
            rc = cli_check_not_record("prune", "--masks", a->masks, record);
    }
    return rc;
}

/* ---- the command -------------------------------------------------------- */

/* Load, prune, report and write; returns the exit status. */
static int run(const prune_args *a, calib_set *cs, ep_error *err)
{
    progress_state ps = {isatty(fileno(stderr)), 0};
    ep_prune_result *res = NULL;
    ep_net *net = NULL;
    char *masks = NULL;
    int i, rc;

    rc = cli_load_model(a->model, &net, err);
    for (i = 0; rc == 0 && i < a->n_calib; i++)
        rc = load_segment(a, a->calib[i], cs, err);
    if (rc == 0) {
        signal(SIGINT, on_sigint);
        rc = ep_prune_run(net, cs->seg, cs->n, &a->opts, on_progress, &ps,
                          &res, err);
        signal(SIGINT, SIG_DFL);
        if (ps.tty)
            fputc('\n', stderr);
    }
    if (rc == 0)
        rc = ep_model_save(res->net, a->out, err);
    if (rc == 0 && a->masks != NULL)
        rc = ep_prune_masks_json(res, &a->opts, &masks, err);
    if (rc == 0 && a->masks != NULL)
        rc = write_masks(a->masks, masks, err);
    if (rc == 0) {
        print_warnings(a, cs, res);
        if (a->json)
            cli_print_json(report_json(net, res, a, cs));
        else
            print_report(net, res, a->model);
    }
    free(masks);
    ep_prune_result_free(res);
    ep_net_free(net);
    return rc;
}

/* Options that may come once (--calib may come many times). */
static const char *const prune_options[] = {
    "--method", "--keep", "--mask-list", "--candidates", "--coreset-scale",
    "--seed", "--no-reconstruct", "--prune-head-input", "--refit-drifted",
    "--raw-norms", "--lambda", "--distill", "--distill-lr",
    "--batch-windows", "--max-windows", "--signal", "--no-stratify",
    "--json", "--out", "--masks", NULL
};

int cmd_prune(int argc, char **argv)
{
    prune_args a;
    calib_set cs;
    ep_error err;
    int i, rc;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    rc = cli_reject_repeats("prune", argc, argv, prune_options);
    if (rc == 0)
        rc = parse_args(argc, argv, &a);
    if (rc == 0)
        rc = check_outputs(&a);
    if (rc != 0)
        return rc;
    memset(&cs, 0, sizeof cs);
    ep_error_clear(&err);
    rc = run(&a, &cs, &err);
    calib_set_free(&cs);
    if (rc == EP_ECANCELED) {
        fprintf(stderr, "ecgprune prune: cancelled\n");
        return 130;
    }
    return rc != 0 ? cli_fail("prune", &err) : 0;
}
