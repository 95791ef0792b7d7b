/*
 * ed_testtool.c - helpers for the daemon's integration tests:
 *   model OUT [SEED] [full|window=N|highpass=HZ|overflow]
 *                              an untrained U-Net model file: small, or
 *                              the default architecture with "full", or
 *                              small with that window or high-pass, or
 *                              small with finite weights that overflow
 *                              float on any ECG (NaN scores)
 *   ecg-json RECORD FROM N     N samples of a record's first signal from
 *                              FROM on, as an inference/batch JSON body
 *                              in mV
 *   score RESPONSE RECORD FROM N
 *                              match the beats of an inference answer to
 *                              the record's reference beats (150 ms,
 *                              nearest first) and print the counts as JSON
 * The scoring is a plain re-implementation, independent of ep_score.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_net.h"
#include "ecgprune/ep_wfdb.h"

static int fail(const char *what, const ep_error *err)
{
    fprintf(stderr, "ed_testtool %s: %s\n", what, err ? err->msg : "failed");
    return 1;
}

/* Every convolution's weights at 1e19: each layer multiplies what is
 * left of the input by at least that, so a few layers take any ECG past
 * float's range, and the wavelet transforms subtract infinities. */
static void overflow_weights(ep_net *net)
{
    int i;
    size_t k;

    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];

        if (l->op != EP_OP_CONV)
            continue;
        for (k = 0; k < (size_t)l->channels * l->in_channels * l->kernel; k++)
            l->weight[k] = 1e19f;
    }
}

static int cmd_model(int argc, char **argv)
{
    ep_unet_config cfg;
    ep_error err = {0};
    ep_net *net = NULL;
    unsigned long long seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    int rc;

    /* The default architecture, shrunk so tests run fast unless "full". */
    ep_unet_default_config(&cfg);
    if (argc < 5 || strcmp(argv[4], "full") != 0) {
        cfg.depth = 3;
        cfg.widths[0] = 8;
        cfg.widths[1] = 16;
        cfg.widths[2] = 32;
    }
    if (argc == 5 && strncmp(argv[4], "window=", 7) == 0)
        cfg.meta.window = atoi(argv[4] + 7);
    if (argc == 5 && strncmp(argv[4], "highpass=", 9) == 0)
        cfg.meta.highpass_hz = atof(argv[4] + 9);
    rc = ep_unet_build(&cfg, seed, &net, &err);
    if (!rc && argc == 5 && strcmp(argv[4], "overflow") == 0)
        overflow_weights(net);
    if (!rc)
        rc = ep_model_save(net, argv[2], &err);
    ep_net_free(net);
    return rc ? fail("model", &err) : 0;
}

static int cmd_ecg_json(char **argv)
{
    ep_record *rec = NULL;
    ep_error err = {0};
    long from = atol(argv[3]), n = atol(argv[4]), i;
    float *mv;

    if (ep_wfdb_read_record(argv[2], &rec, &err))
        return fail("ecg-json", &err);
    if (from < 0 || n <= 0 || from + n > rec->n_samples) {
        ep_wfdb_free_record(rec);
        fprintf(stderr, "ed_testtool ecg-json: range outside the record\n");
        return 1;
    }
    mv = malloc((size_t)rec->n_samples * sizeof *mv);
    if (!mv || ep_wfdb_signal_mv(rec, 0, mv, &err)) {
        free(mv);
        ep_wfdb_free_record(rec);
        return fail("ecg-json", &err);
    }
    printf("{\"sampling_rate\":%g,\"lead\":\"%s\",\"samples\":[",
           rec->sampling_rate, rec->signals[0].name);
    for (i = 0; i < n; i++)
        printf("%s%.4f", i ? "," : "", (double)mv[from + i]);
    printf("]}\n");
    free(mv);
    ep_wfdb_free_record(rec);
    return 0;
}

/* Reference beats of the record inside [from, from + n), re-indexed. */
static int ref_beats(const char *record, long from, long n, long **samples,
                     int **classes, size_t *count)
{
    ep_annotations *ann = NULL;
    ep_error err = {0};
    size_t i, k = 0;

    if (ep_wfdb_read_annotations(record, "atr", &ann, &err))
        return fail("score", &err);
    *samples = calloc(ann->count + 1, sizeof **samples);
    *classes = calloc(ann->count + 1, sizeof **classes);
    for (i = 0; i < ann->count; i++) {
        ep_aami c = ep_aami_from_code(ann->items[i].code);
        if (c == EP_AAMI_NONE || ann->items[i].sample < from ||
            ann->items[i].sample >= from + n)
            continue;
        (*samples)[k] = (long)(ann->items[i].sample - from);
        (*classes)[k] = (int)c;
        k++;
    }
    *count = k;
    ep_wfdb_free_annotations(ann);
    return 0;
}

static int cmd_score(char **argv)
{
    json_error_t jerr;
    json_t *resp = json_load_file(argv[2], 0, &jerr), *beats;
    long from = atol(argv[4]), n = atol(argv[5]), *ref = NULL, window;
    int *ref_cls = NULL, *used;
    size_t n_ref = 0, n_det, r, d;
    long tp = 0, agree = 0;
    double fs;

    if (!resp)
        return fail("score", NULL);
    beats = json_object_get(resp, "beats");
    fs = json_number_value(json_object_get(resp, "sampling_rate"));
    n_det = json_array_size(beats);
    if (ref_beats(argv[3], from, n, &ref, &ref_cls, &n_ref))
        return 1;
    window = lround(0.150 * fs);
    used = calloc(n_det + 1, sizeof *used);

    /* Each reference beat takes the nearest unused detection in reach. */
    for (r = 0; r < n_ref; r++) {
        long best = -1, best_dist = window + 1;
        for (d = 0; d < n_det; d++) {
            json_t *b = json_array_get(beats, d);
            long s = (long)json_integer_value(json_object_get(b, "sample"));
            long dist = labs(s - ref[r]);
            if (!used[d] && dist < best_dist) {
                best = (long)d;
                best_dist = dist;
            }
        }
        if (best < 0)
            continue;
        used[best] = 1;
        tp++;
        agree += strcmp(json_string_value(json_object_get(json_array_get(
                            beats, (size_t)best), "class")),
                        ep_aami_name((ep_aami)ref_cls[r])) == 0;
    }
    printf("{\"reference\":%zu,\"detected\":%zu,\"tp\":%ld,\"fn\":%ld,"
           "\"fp\":%ld,\"se\":%.4f,\"ppv\":%.4f,\"class_agreement\":%.4f}\n",
           n_ref, n_det, tp, (long)n_ref - tp, (long)n_det - tp,
           n_ref ? (double)tp / (double)n_ref : 0.0,
           n_det ? (double)tp / (double)n_det : 0.0,
           tp ? (double)agree / (double)tp : 0.0);
    free(used);
    free(ref);
    free(ref_cls);
    json_decref(resp);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && argc <= 5 && strcmp(argv[1], "model") == 0)
        return cmd_model(argc, argv);
    if (argc == 5 && strcmp(argv[1], "ecg-json") == 0)
        return cmd_ecg_json(argv);
    if (argc == 6 && strcmp(argv[1], "score") == 0)
        return cmd_score(argv);
    fprintf(stderr, "usage: ed_testtool model OUT [SEED] "
            "[full|window=N|highpass=HZ|overflow]\n"
            "       ed_testtool ecg-json RECORD FROM N\n"
            "       ed_testtool score RESPONSE RECORD FROM N\n");
    return 2;
}
