/*
 * cmd_infer.c - `ecgprune infer MODEL RECORD [--json] [--signal NAME]
 * [--from S] [--to S]`: runs a model over one signal of a WFDB record and
 * lists the beats it finds with their AAMI class, plus a summary (counts
 * per class, mean heart rate, whether any S, V or F beat was seen).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_model.h"

typedef struct infer_args {
    const char *model, *record, *signal;
    cli_span span;
    int json;
} infer_args;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ecgprune infer MODEL RECORD [--json] [--signal NAME]\n"
            "                      [--from S] [--to S]\n"
            "\n"
            "Detect and classify the beats of one ECG signal of a WFDB\n"
            "record (RECORD is its path without extension).  Beat samples\n"
            "and times count from the start of the record.\n"
            "\n"
            "  --json         one JSON object on stdout\n"
            "  --signal NAME  signal to read (default MLII, else the "
            "first)\n"
            "  --from S       start at S seconds (default 0)\n"
            "  --to S         stop at S seconds (default: the end)\n");
}

/* Options that take a value or set a flag: each at most once. */
static const char *const infer_options[] = {
    "--json", "--signal", "--from", "--to", NULL
};

/* 0 on success, else the exit status for a usage error. */
static int parse_args(int argc, char **argv, infer_args *a)
{
    int rc;

    memset(a, 0, sizeof *a);
    a->span.to_s = -1.0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int has_value = i + 1 < argc;

        if (strcmp(arg, "--json") == 0) {
            a->json = 1;
        } else if (strcmp(arg, "--signal") == 0 && has_value) {
            a->signal = argv[++i];
        } else if ((rc = cli_span_option("infer", argc, argv, &i,
                                          &a->span)) != 0) {
            if (rc != 1)
                return rc;
        } else if (arg[0] == '-') {
            return cli_usage_error("infer", "unknown option or missing "
                                   "value '%s'", arg);
        } else if (a->model == NULL) {
            a->model = arg;
        } else if (a->record == NULL) {
            a->record = arg;
        } else {
            return cli_usage_error("infer", "one RECORD only, got '%s'",
                                   arg);
        }
    }
    if (a->model == NULL || a->record == NULL)
        return cli_usage_error("infer", "expected MODEL and RECORD");
    return cli_span_check("infer", &a->span);
}

/* What the summary reports. */
typedef struct beat_summary {
    long counts[EP_AAMI_COUNT];
    double heart_rate;           /* beats per minute, < 0 if unknown */
    int abnormal;                /* any S, V or F beat */
} beat_summary;

static void summarise(const ep_beat *beats, size_t n, beat_summary *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < n; i++)
        s->counts[beats[i].cls]++;
    s->heart_rate = -1.0;
    if (n >= 2 && beats[n - 1].time > beats[0].time)
        s->heart_rate = 60.0 * (double)(n - 1) /
                        (beats[n - 1].time - beats[0].time);
    s->abnormal = s->counts[EP_AAMI_S] + s->counts[EP_AAMI_V] +
                  s->counts[EP_AAMI_F] > 0;
}

static json_t *infer_json(const infer_args *a, const cli_signal *sig,
                          const ep_beat *beats, size_t n,
                          const beat_summary *s)
{
    json_t *o = json_object(), *list = json_array(), *counts, *summary;

    json_object_set_new(o, "record", json_string(a->record));
    json_object_set_new(o, "signal", json_string(sig->name));
    json_object_set_new(o, "sampling_rate", json_real(sig->fs));
    json_object_set_new(o, "from", json_real((double)sig->offset / sig->fs));
    json_object_set_new(o, "to", json_real((double)(sig->offset + sig->n) /
                                           sig->fs));
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_pack(
            "{s:I, s:f, s:s, s:f, s:s}", "sample",
            (json_int_t)beats[i].sample, "time", beats[i].time, "class",
            ep_aami_name(beats[i].cls), "confidence",
            (double)beats[i].confidence, "symbol",
            cli_class_symbol(beats[i].cls)));
    json_object_set_new(o, "beats", list);

    counts = json_object();
    for (int k = 0; k < EP_AAMI_COUNT; k++)
        json_object_set_new(counts, ep_aami_name((ep_aami)k),
                            json_integer(s->counts[k]));
    summary = json_object();
    json_object_set_new(summary, "beats", json_integer((json_int_t)n));
    /* The daemon's names for the same two figures, so that one script
     * reads both outputs. */
    json_object_set_new(summary, "n_beats", json_integer((json_int_t)n));
    json_object_set_new(summary, "duration_s",
                        json_real((double)sig->n / sig->fs));
    json_object_set_new(summary, "counts", counts);
    json_object_set_new(summary, "heart_rate", s->heart_rate < 0.0
                        ? json_null() : json_real(s->heart_rate));
    json_object_set_new(summary, "abnormal", json_boolean(s->abnormal));
    json_object_set_new(o, "summary", summary);
    return o;
}

static void print_table(const infer_args *a, const cli_signal *sig,
                        const ep_beat *beats, size_t n,
                        const beat_summary *s)
{
    printf("Record %s, signal %s at %g Hz, %.3f s to %.3f s: %zu beats\n\n",
           a->record, sig->name, sig->fs, (double)sig->offset / sig->fs,
           (double)(sig->offset + sig->n) / sig->fs, n);
    printf("%12s %10s  %-5s %-6s %s\n", "time (s)", "sample", "class",
           "symbol", "confidence");
    for (size_t i = 0; i < n; i++)
        printf("%12.3f %10lld  %-5s %-6s %.3f\n", beats[i].time,
               (long long)beats[i].sample, ep_aami_name(beats[i].cls),
               cli_class_symbol(beats[i].cls), (double)beats[i].confidence);
    printf("\nCounts:");
    for (int k = 0; k < EP_AAMI_COUNT; k++)
        printf("  %s %ld", ep_aami_name((ep_aami)k), s->counts[k]);
    if (s->heart_rate >= 0.0)
        printf("\nMean heart rate: %.1f beats/min", s->heart_rate);
    printf("\nAbnormal (any S, V or F beat): %s\n",
           s->abnormal ? "yes" : "no");
}

int cmd_infer(int argc, char **argv)
{
    infer_args a;
    ep_net *net = NULL;
    ep_inferer *inf = NULL;
    cli_signal sig;
    ep_beat *beats = NULL;
    size_t n_beats = 0;
    beat_summary summary;
    ep_error err = {0};
    int rc;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if ((rc = cli_reject_repeats("infer", argc, argv, infer_options)) != 0 ||
        (rc = parse_args(argc, argv, &a)) != 0)
        return rc;

    /* Model and signal. */
    if (cli_load_model(a.model, &net, &err) != 0)
        return cli_fail("infer", &err);
    if (cli_read_signal(a.record, a.signal, a.span.from_s, a.span.to_s, &sig,
                        &err) != 0) {
        ep_net_free(net);
        return cli_fail("infer", &err);
    }

    /* Beats, shifted to count from the record's start. */
    rc = ep_inferer_create(net, NULL, &inf, &err);
    if (rc == 0)
        rc = ep_infer_beats(inf, sig.mv, sig.n, sig.fs, &beats, &n_beats,
                            &err);
    ep_inferer_free(inf);
    if (rc != 0) {
        cli_signal_free(&sig);
        ep_net_free(net);
        return cli_fail("infer", &err);
    }
    for (size_t i = 0; i < n_beats; i++) {
        beats[i].sample += sig.offset;
        beats[i].time = (double)beats[i].sample / sig.fs;
    }

    /* Report. */
    summarise(beats, n_beats, &summary);
    if (a.json)
        rc = cli_print_json(infer_json(&a, &sig, beats, n_beats, &summary));
    else
        print_table(&a, &sig, beats, n_beats, &summary);
    free(beats);
    cli_signal_free(&sig);
    ep_net_free(net);
    return rc;
}
