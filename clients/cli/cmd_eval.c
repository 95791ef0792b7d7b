/*
 * cmd_eval.c - `ecgprune eval MODEL RECORD... [--from S] [--to S] [--json]
 * [--per-record] [--list FILE] [--signal NAME]`: runs a model over records
 * and scores its beats against each record's reference annotations
 * (RECORD.atr) beat by beat, as ANSI/AAMI EC57 describes it (150 ms match
 * window).  Reports the gross confusion matrix and rates, the per-record
 * average rates, and with --per-record each record's own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_score.h"
#include "ecgprune/ep_wfdb.h"

#define EC57_WINDOW_S 0.15

typedef struct eval_args {
    const char *model, *signal, *list;
    cli_span span;
    int json, per_record;
    char **records;          /* names from the command line and --list,
                                each a copy owned here */
    size_t n_records, cap_records;
} eval_args;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ecgprune eval MODEL RECORD... [--from S] [--to S]\n"
            "                     [--json] [--per-record] [--list FILE]\n"
            "                     [--signal NAME]\n"
            "\n"
            "Score a model's beats against the reference annotations\n"
            "(RECORD.atr) of each record, beat by beat as ANSI/AAMI EC57\n"
            "describes it: 150 ms match window, classes N S V F Q.\n"
            "Prints the gross confusion matrix (rows reference, columns\n"
            "detected), detection and per-class sensitivity (Se), positive\n"
            "predictivity (+P) and F1, and the per-record averages.  EC57\n"
            "leaves the first 5 minutes out (--from 300).\n"
            "\n"
            "  --from S       score from S seconds (default 0)\n"
            "  --to S         score until S seconds (default: the end)\n"
            "  --json         one JSON object on stdout (rates as fractions)\n"
            "  --per-record   also report each record's scores\n"
            "  --list FILE    read record names from FILE, one per line\n"
            "                 ('#' starts a comment)\n"
            "  --signal NAME  signal to read (default MLII, else the "
            "first)\n");
}

static int add_record(eval_args *a, const char *name)
{
    char *copy;

    if (a->n_records == a->cap_records) {
        size_t cap = a->cap_records ? 2 * a->cap_records : 16;
        char **grown = realloc(a->records, cap * sizeof *grown);

        if (grown == NULL)
            return -1;
        a->records = grown;
        a->cap_records = cap;
    }
    copy = strdup(name);
    if (copy == NULL)
        return -1;
    a->records[a->n_records++] = copy;
    return 0;
}

/* cli_read_list's callback: one more record name. */
static int add_listed(void *ud, const char *name)
{
    if (add_record(ud, name) == 0)
        return 0;
    fprintf(stderr, "ecgprune eval: out of memory\n");
    return 2;
}

static void free_args(eval_args *a)
{
    for (size_t i = 0; i < a->n_records; i++)
        free(a->records[i]);
    free(a->records);
}

/* Options that take a value or set a flag: each at most once. */
static const char *const eval_options[] = {
    "--json", "--per-record", "--signal", "--list", "--from", "--to", NULL
};

/* 0 on success, else the exit status for a usage error. */
static int parse_args(int argc, char **argv, eval_args *a)
{
    int rc;

    memset(a, 0, sizeof *a);
    a->span.to_s = -1.0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int has_value = i + 1 < argc;

        if (strcmp(arg, "--json") == 0) {
            a->json = 1;
        } else if (strcmp(arg, "--per-record") == 0) {
            a->per_record = 1;
        } else if (strcmp(arg, "--signal") == 0 && has_value) {
            a->signal = argv[++i];
        } else if (strcmp(arg, "--list") == 0 && has_value) {
            a->list = argv[++i];
        } else if ((rc = cli_span_option("eval", argc, argv, &i,
                                          &a->span)) != 0) {
            if (rc != 1)
                return rc;
        } else if (arg[0] == '-') {
            return cli_usage_error("eval", "unknown option or missing "
                                   "value '%s'", arg);
        } else if (a->model == NULL) {
            a->model = arg;
        } else if (add_record(a, argv[i]) != 0) {
            return cli_usage_error("eval", "out of memory");
        }
    }
    if (a->list != NULL &&
        (rc = cli_read_list("eval", a->list, add_listed, a)) != 0)
        return rc;
    if (a->model == NULL || a->n_records == 0)
        return cli_usage_error("eval", "expected MODEL and at least one "
                               "RECORD");
    return cli_span_check("eval", &a->span);
}

/* Infer one record and compare with its reference annotations. */
static int eval_record(ep_inferer *inf, const eval_args *a,
                       const char *record, ep_score_counts *counts,
                       ep_error *err)
{
    cli_signal sig;
    ep_annotations *ann = NULL;
    ep_ref_beat *ref = NULL;
    ep_beat *beats = NULL;
    size_t n_ref = 0, n_beats = 0;
    int rc;

    rc = cli_read_signal(record, a->signal, a->span.from_s, a->span.to_s,
                         &sig, err);
    if (rc != 0)
        return rc;

    /* Reference beats inside the span, detections shifted into the
     * record's sample numbering. */
    rc = cli_read_annotations(record, "atr", sig.record_samples, &ann, err);
    if (rc == 0)
        rc = ep_score_reference(ann, sig.offset, &ref, &n_ref, err);
    while (rc == 0 && n_ref > 0 &&
           ref[n_ref - 1].sample >= sig.offset + sig.n)
        n_ref--;
    if (rc == 0)
        rc = ep_infer_beats(inf, sig.mv, sig.n, sig.fs, &beats, &n_beats,
                            err);
    for (size_t i = 0; rc == 0 && i < n_beats; i++)
        beats[i].sample += sig.offset;
    if (rc == 0)
        rc = ep_score_record(ref, n_ref, beats, n_beats, sig.fs,
                             EC57_WINDOW_S, counts, err);
    if (rc != 0)
        ep_error_prefix(err, "%s", record);
    free(beats);
    free(ref);
    ep_wfdb_free_annotations(ann);
    cli_signal_free(&sig);
    return rc;
}

/* ---- output ---------------------------------------------------------- */

static json_t *stats_json(const ep_score_stats *s)
{
    json_t *o = json_object(), *classes = json_object();

    json_object_set_new(o, "detection", json_pack(
        "{s:f, s:f, s:I, s:I, s:I}", "se", s->det_se, "ppv", s->det_ppv,
        "tp", (json_int_t)s->det_tp, "fn", (json_int_t)s->det_fn, "fp",
        (json_int_t)s->det_fp));
    for (int k = 0; k < EP_AAMI_COUNT; k++)
        json_object_set_new(classes, ep_aami_name((ep_aami)k), json_pack(
            "{s:f, s:f, s:f, s:I}", "se", s->cls[k].se, "ppv",
            s->cls[k].ppv, "f1", s->cls[k].f1, "support",
            (json_int_t)s->cls[k].support));
    json_object_set_new(o, "classes", classes);
    json_object_set_new(o, "macro_f1", json_real(s->macro_f1));
    return o;
}

static json_t *confusion_json(const ep_score_counts *c)
{
    json_t *o = json_object(), *labels = json_array(), *rows = json_array();
    json_t *missed = json_array(), *extra = json_array();

    for (int r = 0; r < EP_AAMI_COUNT; r++) {
        json_t *row = json_array();

        json_array_append_new(labels, json_string(ep_aami_name((ep_aami)r)));
        for (int k = 0; k < EP_AAMI_COUNT; k++)
            json_array_append_new(row, json_integer(c->confusion[r][k]));
        json_array_append_new(rows, row);
        json_array_append_new(missed, json_integer(c->missed[r]));
        json_array_append_new(extra, json_integer(c->extra_by_class[r]));
    }
    json_object_set_new(o, "labels", labels);
    json_object_set_new(o, "matrix", rows);
    json_object_set_new(o, "missed", missed);
    json_object_set_new(o, "extra", extra);
    return o;
}

static json_t *eval_json(const eval_args *a, const ep_score_counts *per,
                         const ep_score_counts *gross)
{
    json_t *o, *names = json_array(), *avg;
    ep_score_stats s, mean;

    ep_score_stats_from(gross, &s);
    ep_score_average(per, a->n_records, &mean);
    for (size_t r = 0; r < a->n_records; r++)
        json_array_append_new(names, json_string(a->records[r]));
    o = stats_json(&s);
    json_object_set_new(o, "records", names);
    json_object_set_new(o, "from", json_real(a->span.from_s));
    json_object_set_new(o, "to", a->span.to_s < 0.0
                                     ? json_null()
                                     : json_real(a->span.to_s));
    json_object_set_new(o, "window_s", json_real(EC57_WINDOW_S));
    json_object_set_new(o, "confusion", confusion_json(gross));
    avg = stats_json(&mean);
    json_object_del(json_object_get(avg, "detection"), "tp");
    json_object_del(json_object_get(avg, "detection"), "fn");
    json_object_del(json_object_get(avg, "detection"), "fp");
    json_object_set_new(o, "average", avg);
    if (a->per_record) {
        json_t *list = json_array();

        for (size_t r = 0; r < a->n_records; r++) {
            json_t *one;

            ep_score_stats_from(&per[r], &s);
            one = stats_json(&s);
            json_object_set_new(one, "record",
                                json_string(a->records[r]));
            json_object_set_new(one, "confusion", confusion_json(&per[r]));
            json_array_append_new(list, one);
        }
        json_object_set_new(o, "per_record", list);
    }
    return o;
}

static void print_confusion(const ep_score_counts *c)
{
    printf("%-10s %8s %8s %8s %8s %8s %8s\n", "reference", "N", "S", "V",
           "F", "Q", "missed");
    for (int r = 0; r < EP_AAMI_COUNT; r++) {
        printf("%-10s", ep_aami_name((ep_aami)r));
        for (int k = 0; k < EP_AAMI_COUNT; k++)
            printf(" %8lld", (long long)c->confusion[r][k]);
        printf(" %8lld\n", (long long)c->missed[r]);
    }
    printf("%-10s", "extra");
    for (int k = 0; k < EP_AAMI_COUNT; k++)
        printf(" %8lld", (long long)c->extra_by_class[k]);
    printf("\n");
}

/* A percentage in 8 columns, or "-" when its denominator is 0 (there is
 * nothing to measure, which 0.00% would hide). */
static void print_percent(double v, int64_t denominator)
{
    if (denominator > 0)
        printf(" %7.2f%%", 100.0 * v);
    else
        printf(" %8s", "-");
}

/* An F1 in `width` columns, or "-" when the class occurs nowhere. */
static void print_f1(const ep_class_stats *cs, int width)
{
    if (cs->tp + cs->fn + cs->fp > 0)
        printf(" %*.4f", width, cs->f1);
    else
        printf(" %*s", width, "-");
}

/* Rates in percent, as EC57 tables give them. */
static void print_rates(const char *title, const ep_score_stats *s,
                        int with_counts)
{
    printf("%s\n", title);
    printf("  beats  Se");
    print_percent(s->det_se, s->det_tp + s->det_fn);
    printf("  +P");
    print_percent(s->det_ppv, s->det_tp + s->det_fp);
    if (with_counts)
        printf("  (TP %lld, FN %lld, FP %lld)", (long long)s->det_tp,
               (long long)s->det_fn, (long long)s->det_fp);
    printf("\n  %-5s %8s %8s %8s", "class", "Se", "+P", "F1");
    if (with_counts)
        printf(" %9s", "support");
    printf("\n");
    for (int k = 0; k < EP_AAMI_COUNT; k++) {
        const ep_class_stats *cs = &s->cls[k];

        printf("  %-5s", ep_aami_name((ep_aami)k));
        print_percent(cs->se, cs->tp + cs->fn);
        print_percent(cs->ppv, cs->tp + cs->fp);
        print_f1(cs, 8);
        if (with_counts)
            printf(" %9lld", (long long)cs->support);
        printf("\n");
    }
    printf("  macro F1 (of N, S, V, F in the reference or the detections): "
           "%.4f\n", s->macro_f1);
}

static void print_per_record(const eval_args *a, const ep_score_counts *per)
{
    int width = 6;

    for (size_t r = 0; r < a->n_records; r++)
        if ((int)strlen(a->records[r]) > width)
            width = (int)strlen(a->records[r]);
    printf("\n%-*s %7s %7s %8s %8s %7s %7s %7s %7s\n", width, "record",
           "ref", "det", "Se", "+P", "F1 N", "F1 S", "F1 V", "F1 F");
    for (size_t r = 0; r < a->n_records; r++) {
        ep_score_stats s;

        ep_score_stats_from(&per[r], &s);
        printf("%-*s %7lld %7lld", width, a->records[r],
               (long long)(s.det_tp + s.det_fn),
               (long long)(s.det_tp + s.det_fp));
        print_percent(s.det_se, s.det_tp + s.det_fn);
        print_percent(s.det_ppv, s.det_tp + s.det_fp);
        print_f1(&s.cls[EP_AAMI_N], 7);
        print_f1(&s.cls[EP_AAMI_S], 7);
        print_f1(&s.cls[EP_AAMI_V], 7);
        print_f1(&s.cls[EP_AAMI_F], 7);
        printf("\n");
    }
}

static void print_table(const eval_args *a, const ep_score_counts *per,
                        const ep_score_counts *gross)
{
    ep_score_stats s, mean;

    ep_score_stats_from(gross, &s);
    ep_score_average(per, a->n_records, &mean);
    printf("Beat-by-beat comparison (ANSI/AAMI EC57, %g ms window), "
           "%zu record(s), from %g s", 1000.0 * EC57_WINDOW_S,
           a->n_records, a->span.from_s);
    if (a->span.to_s >= 0.0)
        printf(" to %g s", a->span.to_s);
    printf("\n\nGross confusion matrix (rows reference, columns "
           "detected)\n");
    print_confusion(gross);
    printf("\n");
    print_rates("Gross rates", &s, 1);
    printf("\n");
    print_rates("Average rates over records", &mean, 0);
    if (a->per_record)
        print_per_record(a, per);
}

/* ---- command --------------------------------------------------------- */

static void show_progress(size_t done, size_t total, const char *record,
                          const ep_score_counts *c, int tty)
{
    ep_score_stats s;

    ep_score_stats_from(c, &s);
    fprintf(stderr, "%s[%zu/%zu] %s: %lld beats, Se %.2f%%, +P %.2f%%%s",
            tty ? "\r\033[K" : "", done, total, record,
            (long long)(s.det_tp + s.det_fn), 100.0 * s.det_se,
            100.0 * s.det_ppv, tty && done < total ? "" : "\n");
    fflush(stderr);
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    ep_net *net = NULL;
    ep_inferer *inf = NULL;
    ep_score_counts *per = NULL, gross;
    ep_error err = {0};
    int rc, tty = isatty(STDERR_FILENO);

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if ((rc = cli_reject_repeats("eval", argc, argv, eval_options)) != 0)
        return rc;
    if ((rc = parse_args(argc, argv, &a)) != 0) {
        free_args(&a);
        return rc;
    }

    /* One inferer for every record. */
    if (cli_load_model(a.model, &net, &err) != 0 ||
        ep_inferer_create(net, NULL, &inf, &err) != 0) {
        ep_net_free(net);
        free_args(&a);
        return cli_fail("eval", &err);
    }
    per = calloc(a.n_records, sizeof *per);
    memset(&gross, 0, sizeof gross);
    rc = per == NULL ? ep_error_set(&err, EP_ENOMEM, "out of memory") : 0;

    /* Score record by record. */
    for (size_t r = 0; rc == 0 && r < a.n_records; r++) {
        rc = eval_record(inf, &a, a.records[r], &per[r], &err);
        if (rc == 0) {
            ep_score_add(&gross, &per[r]);
            if (a.n_records > 1)
                show_progress(r + 1, a.n_records, a.records[r], &per[r],
                              tty);
        }
    }

    /* Report. */
    if (rc != 0)
        rc = cli_fail("eval", &err);
    else if (a.json)
        rc = cli_print_json(eval_json(&a, per, &gross));
    else
        print_table(&a, per, &gross);
    free(per);
    ep_inferer_free(inf);
    ep_net_free(net);
    free_args(&a);
    return rc;
}
