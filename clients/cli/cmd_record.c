/*
 * cmd_record.c - `ecgprune record RECORD [--json] [--annotator EXT]`:
 * what WFDB's wfdbdesc and sumann tell about a record.  The signals (file,
 * format, gain, baseline, units, ADC fields, checksum check), the rate and
 * length, and, when RECORD.atr exists, the annotation counts per MIT
 * symbol and per AAMI class.  A failed checksum or first-value check is
 * reported in the output and makes the exit status 1.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_wfdb.h"

#define N_CODES 50

/* Annotation counts of one annotation file. */
typedef struct record_counts {
    long total, beats;
    long per_code[N_CODES];
    long per_class[EP_AAMI_COUNT];
} record_counts;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ecgprune record RECORD [--json] [--annotator EXT]\n"
            "\n"
            "Describe a WFDB record: RECORD is its path without extension,\n"
            "e.g. ../shared/data/mitdb/100.  Prints the signals, sampling\n"
            "rate and length, checks each signal's checksum, and counts the\n"
            "annotations of RECORD.EXT (default atr) per MIT symbol and per\n"
            "AAMI class when that file exists.\n"
            "\n"
            "  --json           one JSON object on stdout\n"
            "  --annotator EXT  annotation file extension (default atr)\n");
}

/* Length as WFDB prints times: [h:]mm:ss.mmm.  Durations whose count of
 * milliseconds would not fit a long (the header parser keeps them far
 * below that) are printed in seconds rather than cast out of range. */
static void format_duration(double seconds, char *out, size_t cap)
{
    long ms, h, m, s;

    if (!(seconds >= 0.0 && seconds < 1e15)) {
        snprintf(out, cap, "%g s", seconds);
        return;
    }
    ms = (long)(seconds * 1000.0 + 0.5);
    h = ms / 3600000;
    m = ms / 60000 % 60;
    s = ms / 1000 % 60;
    if (h > 0)
        snprintf(out, cap, "%ld:%02ld:%02ld.%03ld", h, m, s, ms % 1000);
    else
        snprintf(out, cap, "%ld:%02ld.%03ld", m, s, ms % 1000);
}

/* Read and count RECORD.EXT; *present is 0 when the file does not exist. */
static int count_annotations(const char *record, const char *ext,
                             int64_t n_samples, record_counts *c,
                             int *present, ep_error *err)
{
    char path[4096];
    ep_annotations *ann;
    int rc;

    memset(c, 0, sizeof *c);
    snprintf(path, sizeof path, "%s.%s", record, ext);
    *present = access(path, F_OK) == 0;
    if (!*present)
        return 0;
    rc = cli_read_annotations(record, ext, n_samples, &ann, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < ann->count; i++) {
        int code = ann->items[i].code;
        ep_aami cls = ep_aami_from_code(code);

        c->total++;
        c->per_code[code]++;
        c->beats += ep_wfdb_is_beat(code);
        if (cls != EP_AAMI_NONE)
            c->per_class[cls]++;
    }
    ep_wfdb_free_annotations(ann);
    return 0;
}

static int checks_failed(const ep_record *rec)
{
    for (int s = 0; s < rec->n_signals; s++)
        if (rec->signals[s].checksum_ok == 0 ||
            rec->signals[s].initial_value_ok == 0)
            return 1;
    return 0;
}

static const char *check_word(int ok)
{
    return ok > 0 ? "ok" : ok == 0 ? "MISMATCH" : "-";
}

static void print_table(const char *record, const char *ext,
                        const ep_record *rec, const record_counts *c,
                        int have_annotations)
{
    char dur[32];

    /* What wfdbdesc tells. */
    format_duration((double)rec->n_samples / rec->sampling_rate, dur,
                    sizeof dur);
    printf("Record %s: %d signal(s), %g Hz, %lld samples per signal "
           "(%s)\n\n", record, rec->n_signals, rec->sampling_rate,
           (long long)rec->n_samples, dur);
    printf("  # %-8s %-8s %6s %6s %8s %-5s %6s %7s %7s %8s %-8s %s\n",
           "name", "file", "format", "gain", "baseline", "units", "adcres",
           "adczero", "initial", "checksum", "sum", "first");
    for (int s = 0; s < rec->n_signals; s++) {
        const ep_signal_info *si = &rec->signals[s];

        printf("%3d %-8s %-8s %6d %6g %8d %-5s %6d %7d %7d %8d %-8s %s\n",
               s, si->name, si->file, si->format, si->gain, si->baseline,
               si->units, si->adc_resolution, si->adc_zero,
               si->initial_value, si->checksum, check_word(si->checksum_ok),
               check_word(si->initial_value_ok));
    }

    /* What sumann tells, and the AAMI classes. */
    if (!have_annotations) {
        printf("\nNo annotation file %s.%s.\n", record, ext);
        return;
    }
    printf("\nAnnotations (%s.%s): %ld, of which %ld beats\n\n", record, ext,
           c->total, c->beats);
    printf("  %-6s %7s  %-5s %s\n", "symbol", "count", "AAMI",
           "description");
    for (int code = 1; code < N_CODES; code++) {
        ep_aami cls = ep_aami_from_code(code);

        if (c->per_code[code] == 0)
            continue;
        printf("  %-6s %7ld  %-5s %s\n", ep_wfdb_code_symbol(code),
               c->per_code[code], cls == EP_AAMI_NONE ? "-" :
               ep_aami_name(cls), ep_wfdb_code_description(code));
    }
    printf("\nAAMI classes:");
    for (int k = 0; k < EP_AAMI_COUNT; k++)
        printf("  %s %ld", ep_aami_name((ep_aami)k), c->per_class[k]);
    printf("\n");
}

static json_t *signal_json(const ep_signal_info *si)
{
    return json_pack("{s:s, s:s, s:i, s:f, s:i, s:s, s:i, s:i, s:i, s:o, "
                     "s:i, s:o, s:o}",
                     "name", si->name, "file", si->file, "format",
                     si->format, "gain", si->gain, "baseline", si->baseline,
                     "units", si->units, "adc_resolution",
                     si->adc_resolution, "adc_zero", si->adc_zero,
                     "initial_value", si->initial_value,
                     "initial_value_ok",
                     si->initial_value_ok < 0 ? json_null()
                                              : json_boolean(
                                                    si->initial_value_ok),
                     "checksum", si->checksum, "checksum_ok",
                     si->checksum_ok < 0 ? json_null()
                                         : json_boolean(si->checksum_ok),
                     "computed_checksum",
                     json_integer(si->computed_checksum));
}

static json_t *counts_json(const record_counts *c, int beats_only)
{
    json_t *o = json_object();

    for (int code = 1; code < N_CODES; code++)
        if (c->per_code[code] > 0 && (!beats_only || ep_wfdb_is_beat(code)))
            json_object_set_new(o, ep_wfdb_code_symbol(code),
                                json_integer(c->per_code[code]));
    return o;
}

static json_t *record_json(const char *record, const char *ext,
                           const ep_record *rec, const record_counts *c,
                           int have_annotations)
{
    json_t *o = json_object(), *sigs = json_array(), *aami;

    json_object_set_new(o, "record", json_string(record));
    json_object_set_new(o, "sampling_rate", json_real(rec->sampling_rate));
    json_object_set_new(o, "length", json_integer(rec->n_samples));
    json_object_set_new(o, "duration_s",
                        json_real((double)rec->n_samples /
                                  rec->sampling_rate));
    for (int s = 0; s < rec->n_signals; s++)
        json_array_append_new(sigs, signal_json(&rec->signals[s]));
    json_object_set_new(o, "signals", sigs);
    json_object_set_new(o, "checks_ok", json_boolean(!checks_failed(rec)));
    if (!have_annotations) {
        json_object_set_new(o, "annotator", json_null());
        json_object_set_new(o, "annotation_counts", json_null());
        json_object_set_new(o, "beat_counts", json_null());
        json_object_set_new(o, "aami_counts", json_null());
        return o;
    }
    json_object_set_new(o, "annotator", json_string(ext));
    json_object_set_new(o, "annotations", json_integer(c->total));
    json_object_set_new(o, "beats", json_integer(c->beats));
    json_object_set_new(o, "annotation_counts", counts_json(c, 0));
    json_object_set_new(o, "beat_counts", counts_json(c, 1));
    aami = json_object();
    for (int k = 0; k < EP_AAMI_COUNT; k++)
        json_object_set_new(aami, ep_aami_name((ep_aami)k),
                            json_integer(c->per_class[k]));
    json_object_set_new(o, "aami_counts", aami);
    return o;
}

/* Options that take a value or set a flag: each at most once. */
static const char *const record_options[] = {"--json", "--annotator", NULL};

int cmd_record(int argc, char **argv)
{
    const char *record = NULL, *ext = "atr";
    ep_record *rec = NULL;
    ep_error err = {0};
    record_counts counts;
    int json = 0, have_annotations, rc;

    /* Arguments. */
    rc = cli_reject_repeats("record", argc, argv, record_options);
    if (rc != 0)
        return rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--annotator") == 0 && i + 1 < argc) {
            ext = argv[++i];
        } else if (argv[i][0] == '-') {
            return cli_usage_error("record", "unknown option '%s'", argv[i]);
        } else if (record == NULL) {
            record = argv[i];
        } else {
            return cli_usage_error("record", "one RECORD only, got '%s'",
                                   argv[i]);
        }
    }
    if (record == NULL)
        return cli_usage_error("record", "missing RECORD");

    /* Read everything; the checks are reported rather than fatal here. */
    rc = ep_wfdb_read_record_unverified(record, &rec, &err);
    if (rc != 0)
        return cli_fail("record", &err);
    rc = count_annotations(record, ext, rec->n_samples, &counts,
                           &have_annotations, &err);
    if (rc != 0) {
        ep_wfdb_free_record(rec);
        return cli_fail("record", &err);
    }

    /* Report, then fail if a signal did not match its header. */
    if (json)
        rc = cli_print_json(record_json(record, ext, rec, &counts,
                                        have_annotations));
    else
        print_table(record, ext, rec, &counts, have_annotations);
    if (checks_failed(rec)) {
        fprintf(stderr, "ecgprune record: %s: a signal's checksum or first "
                "value does not match the header\n", record);
        rc = 1;
    }
    ep_wfdb_free_record(rec);
    return rc;
}
