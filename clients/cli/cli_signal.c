/*
 * cli_signal.c - one ECG signal of a WFDB record in millivolts, cut to a
 * time span, as `ecgprune infer` and `ecgprune eval` read it.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_wfdb.h"

/* Largest plausible ECG amplitude (mV); the daemon refuses uploads past
 * it.  A record is only warned of here: an offline reader may hold
 * marked invalid samples (-32768 in format 16) that convert to more. */
#define CLI_MAX_MV 100.0

/* A warning on stderr when the signal reaches beyond CLI_MAX_MV, which
 * means a wrong gain far more often than a real ECG. */
static void warn_amplitude(const char *record, const cli_signal *sig)
{
    double peak = 0.0;
    int64_t i;

    for (i = 0; i < sig->n; i++)
        if (fabs(sig->mv[i]) > peak)
            peak = fabs(sig->mv[i]);
    if (peak > CLI_MAX_MV)
        fprintf(stderr, "ecgprune: warning: %s, signal %s, reaches %.4g mV "
                "(ECG is a few mV): is the gain in its header right?\n",
                record, sig->name, peak);
}

/* Shortest span worth labelling (seconds); the daemon refuses shorter
 * ECG.  Warned of only, like the amplitude: a short test record is still
 * read. */
#define CLI_MIN_SECONDS 2.0

static void warn_short(const char *record, const cli_signal *sig)
{
    if ((double)sig->n < CLI_MIN_SECONDS * sig->fs)
        fprintf(stderr, "ecgprune: warning: %s, signal %s: %lld samples "
                "(%.3g s) are less than %g s of ECG, too few to find "
                "beats in\n", record, sig->name, (long long)sig->n,
                (double)sig->n / sig->fs, CLI_MIN_SECONDS);
}

/* The signal asked for, else MLII, else the first one. */
static int pick_signal(const ep_record *rec, const char *record,
                       const char *name, ep_error *err)
{
    int s;

    if (name != NULL) {
        s = ep_wfdb_find_signal(rec, name);
        if (s < 0) {
            char have[256];

            return ep_error_set(err, EP_ENOTFOUND, "%s: no signal named "
                                "'%s'; the record has %s", record, name,
                                ep_wfdb_signal_names(rec, have,
                                                     sizeof have));
        }
        return s;
    }
    s = ep_wfdb_find_signal(rec, "MLII");
    return s >= 0 ? s : 0;
}

int cli_read_signal(const char *record, const char *name, double from_s,
                    double to_s, cli_signal *out, ep_error *err)
{
    ep_record *rec;
    float *all;
    int64_t first, last;
    int s, rc;

    memset(out, 0, sizeof *out);
    rc = ep_wfdb_read_record(record, &rec, err);
    if (rc != 0)
        return rc;
    if (rec->n_signals < 1 || rec->n_samples < 1) {
        ep_wfdb_free_record(rec);
        return ep_error_set(err, EP_EFORMAT, "%s: no samples", record);
    }
    s = pick_signal(rec, record, name, err);
    if (s < 0) {
        ep_wfdb_free_record(rec);
        return s;
    }

    /* The span in samples: [from, to), to < 0 meaning the end. */
    first = (int64_t)llround(from_s * rec->sampling_rate);
    /* A span past the end is refused, as the daemon refuses it: cut
     * silently, "5 minutes" of a 3-minute record would be 3. */
    if (to_s * rec->sampling_rate > (double)rec->n_samples + 0.5) {
        rc = ep_error_set(err, EP_EINVAL, "%s: span to %g s is past the end "
                          "of the record (%g s)", record, to_s,
                          (double)rec->n_samples / rec->sampling_rate);
        ep_wfdb_free_record(rec);
        return rc;
    }
    last = to_s < 0.0 ? rec->n_samples
                      : (int64_t)llround(to_s * rec->sampling_rate);
    if (last > rec->n_samples)
        last = rec->n_samples;  /* within half a sample of the end */
    if (first < 0 || first >= last) {
        char to_text[48] = "the end";

        if (to_s >= 0.0)
            snprintf(to_text, sizeof to_text, "%g s", to_s);
        rc = ep_error_set(err, EP_EINVAL,
                          "%s: span %g s to %s holds no sample; the record "
                          "lasts %g s at %g Hz", record, from_s, to_text,
                          (double)rec->n_samples / rec->sampling_rate,
                          rec->sampling_rate);
        ep_wfdb_free_record(rec);
        return rc;
    }

    /* Physical values of the whole signal, then the span. */
    all = malloc((size_t)rec->n_samples * sizeof *all);
    if (all == NULL) {
        ep_wfdb_free_record(rec);
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory", record);
    }
    rc = ep_wfdb_signal_mv(rec, s, all, err);
    if (rc == 0) {
        memmove(all, all + first, (size_t)(last - first) * sizeof *all);
        out->mv = all;
        out->n = last - first;
        out->offset = first;
        out->fs = rec->sampling_rate;
        out->record_samples = rec->n_samples;
        snprintf(out->name, sizeof out->name, "%s", rec->signals[s].name);
        warn_amplitude(record, out);
        warn_short(record, out);
    } else {
        free(all);
    }
    ep_wfdb_free_record(rec);
    return rc;
}

int cli_read_annotations(const char *record, const char *ext,
                         int64_t n_samples, ep_annotations **out,
                         ep_error *err)
{
    int rc = ep_wfdb_read_annotations(record, ext, out, err);

    if (rc == 0 && (rc = ep_wfdb_check_beats(*out, n_samples, err))) {
        ep_error_prefix(err, "%s.%s", record, ext);
        ep_wfdb_free_annotations(*out);
        *out = NULL;
    }
    return rc;
}

void cli_signal_free(cli_signal *sig)
{
    free(sig->mv);
    memset(sig, 0, sizeof *sig);
}

const char *cli_class_symbol(ep_aami cls)
{
    static const char *const symbols[EP_AAMI_COUNT] = {
        "N", "A", "V", "F", "Q"
    };

    return cls >= 0 && cls < EP_AAMI_COUNT ? symbols[cls] : "?";
}
