/*
 * ep_prune_calib.c - calibration windows for pruning from ECG segments:
 * each segment is brought to the model's input form (ep_infer_prepare),
 * cut into non-overlapping windows, and when reference beats are given
 * half of the windows are centred on non-N beats so that rare beats shape
 * the reconstruction.  The windows are drawn and shuffled with the job's
 * generator, then handed to the driver in ep_prune.c.
 */
#include "ecgprune/ep_prune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_rng.h"
#include "ep_prune_priv.h"

/* A window: segment and first sample, at the model's rate. */
typedef struct calib_window {
    int seg;
    int64_t start;
} calib_window;

typedef struct calib_data {
    float **x;                 /* per segment, model input */
    int64_t *n;
    int n_segs;
    calib_window *tiles, *centred;
    int64_t n_tiles, n_centred;
} calib_data;

static void calib_free(calib_data *cd)
{
    int s;

    for (s = 0; cd->x != NULL && s < cd->n_segs; s++)
        free(cd->x[s]);
    free(cd->x);
    free(cd->n);
    free(cd->tiles);
    free(cd->centred);
}

/* Prepare every segment and check that each holds a window. */
static int prepare_segments(const ep_net *net, const ep_calib_segment *segs,
                            calib_data *cd, ep_error *err)
{
    int s, rc, window = net->meta.window;

    cd->x = calloc((size_t)cd->n_segs, sizeof *cd->x);
    cd->n = calloc((size_t)cd->n_segs, sizeof *cd->n);
    if (cd->x == NULL || cd->n == NULL)
        return ep_error_set(err, EP_ENOMEM, "prune: out of memory");
    for (s = 0; s < cd->n_segs; s++) {
        if (segs[s].mv == NULL || segs[s].n <= 0 || !(segs[s].fs > 0.0))
            return ep_error_set(err, EP_EINVAL,
                                "prune: calibration segment %d is empty "
                                "(%lld samples at %g Hz)", s + 1,
                                (long long)segs[s].n, segs[s].fs);
        rc = ep_infer_prepare(net, segs[s].mv, segs[s].n, segs[s].fs,
                              &cd->x[s], &cd->n[s], err);
        if (rc != EP_OK) {
            ep_error_prefix(err, "prune: calibration segment %d", s + 1);
            return rc;
        }
        if (cd->n[s] < window)
            return ep_error_set(err, EP_EINVAL,
                                "prune: calibration segment %d lasts %.2f s,"
                                " shorter than one model window of %d "
                                "samples (%.2f s)", s + 1,
                                segs[s].n / segs[s].fs, window,
                                window / net->meta.sampling_rate);
    }
    return EP_OK;
}

static int is_rare_beat(ep_aami cls)
{
    return cls == EP_AAMI_S || cls == EP_AAMI_V || cls == EP_AAMI_F ||
           cls == EP_AAMI_Q;
}

/* All non-overlapping windows, and windows centred on non-N beats (kept
 * inside their segment). */
static int list_windows(const ep_net *net, const ep_calib_segment *segs,
                        calib_data *cd, int *any_beats, ep_error *err)
{
    int64_t window = net->meta.window, total_beats = 0, t;
    int s;
    size_t b;

    *any_beats = 0;
    for (s = 0; s < cd->n_segs; s++) {
        cd->n_tiles += cd->n[s] / window;
        total_beats += (int64_t)segs[s].n_beats;
        *any_beats |= segs[s].beats != NULL && segs[s].n_beats > 0;
    }
    cd->tiles = malloc((size_t)cd->n_tiles * sizeof *cd->tiles);
    cd->centred = malloc((size_t)(total_beats > 0 ? total_beats : 1) *
                         sizeof *cd->centred);
    if (cd->tiles == NULL || cd->centred == NULL)
        return ep_error_set(err, EP_ENOMEM, "prune: out of memory");
    cd->n_tiles = 0;
    for (s = 0; s < cd->n_segs; s++) {
        double ratio = net->meta.sampling_rate / segs[s].fs;

        for (t = 0; t + window <= cd->n[s]; t += window)
            cd->tiles[cd->n_tiles++] = (calib_window){s, t};
        for (b = 0; segs[s].beats != NULL && b < segs[s].n_beats; b++) {
            int64_t start;

            if (!is_rare_beat(segs[s].beats[b].cls))
                continue;
            start = llround((double)segs[s].beats[b].sample * ratio) -
                    window / 2;
            start = start < 0 ? 0 : start;
            start = start > cd->n[s] - window ? cd->n[s] - window : start;
            cd->centred[cd->n_centred++] = (calib_window){s, start};
        }
    }
    return EP_OK;
}

/* Move k entries drawn without replacement to the front (partial
 * Fisher-Yates). */
static void draw_front(ep_rng *rng, calib_window *v, int64_t n, int64_t k)
{
    int64_t i;

    for (i = 0; i < k && i < n; i++) {
        int64_t j = i + (int64_t)ep_rng_below(rng, (uint64_t)(n - i));
        calib_window tmp = v[i];

        v[i] = v[j];
        v[j] = tmp;
    }
}

/* Draw the job's windows, shuffle them and copy them out. */
static int build_windows(const ep_net *net, const ep_prune_opts *opts,
                         calib_data *cd, int any_beats, ep_rng *rng,
                         float **out, int *n_out, ep_error *err)
{
    int64_t window = net->meta.window, n_win, n_centred, i;
    calib_window *pick;

    n_win = cd->n_tiles < opts->max_windows ? cd->n_tiles
                                            : opts->max_windows;
    n_centred = any_beats ? n_win / 2 : 0;
    n_centred = n_centred < cd->n_centred ? n_centred : cd->n_centred;
    pick = malloc((size_t)n_win * sizeof *pick);
    *out = malloc((size_t)n_win * window * sizeof **out);
    if (pick == NULL || *out == NULL) {
        free(pick);
        return ep_error_set(err, EP_ENOMEM, "prune: out of memory for %lld"
                            " calibration windows", (long long)n_win);
    }
    draw_front(rng, cd->centred, cd->n_centred, n_centred);
    draw_front(rng, cd->tiles, cd->n_tiles, n_win - n_centred);
    memcpy(pick, cd->centred, (size_t)n_centred * sizeof *pick);
    memcpy(pick + n_centred, cd->tiles,
           (size_t)(n_win - n_centred) * sizeof *pick);

    /* Shuffle so that every importance batch mixes segments and beats. */
    draw_front(rng, pick, n_win, n_win);
    for (i = 0; i < n_win; i++)
        memcpy(*out + i * window, cd->x[pick[i].seg] + pick[i].start,
               (size_t)window * sizeof **out);
    free(pick);
    *n_out = (int)n_win;
    return EP_OK;
}

int ep_prune_run(const ep_net *net, const ep_calib_segment *segs, int n_segs,
                 const ep_prune_opts *opts, ep_prune_progress_fn progress,
                 void *ud, ep_prune_result **out, ep_error *err)
{
    calib_data cd;
    float *windows = NULL;
    int n_windows = 0, any_beats = 0, i, rc;
    ep_rng rng;

    *out = NULL;
    memset(&cd, 0, sizeof cd);
    rc = ep_prune_check_opts(opts, err);
    if (rc != EP_OK)
        return rc;
    if (segs == NULL || n_segs < 1)
        return ep_error_set(err, EP_EINVAL,
                            "prune: no calibration data given");
    for (i = 0; i < net->n_layers; i++)
        if (net->layers[i].op == EP_OP_INPUT && net->layers[i].channels != 1)
            return ep_error_set(err, EP_EINVAL,
                                "prune: calibration from ECG needs a "
                                "single-lead model, '%s' has %d channels",
                                net->layers[i].name,
                                net->layers[i].channels);
    if (net->meta.window <= 0 || !(net->meta.sampling_rate > 0.0))
        return ep_error_set(err, EP_EINVAL,
                            "prune: model declares window %d at %g Hz",
                            net->meta.window, net->meta.sampling_rate);

    ep_rng_seed(&rng, opts->seed);
    cd.n_segs = n_segs;
    rc = prepare_segments(net, segs, &cd, err);
    if (rc == EP_OK)
        rc = list_windows(net, segs, &cd, &any_beats, err);
    if (rc == EP_OK)
        rc = build_windows(net, opts, &cd, any_beats, &rng, &windows,
                           &n_windows, err);
    calib_free(&cd);
    if (rc == EP_OK)
        rc = ep_prune_run_rng(net, windows, n_windows, opts, &rng, progress,
                              ud, out, err);
    free(windows);
    return rc;
}

int ep_prune_calib_counts(const ep_calib_segment *segs, int n_segs,
                          size_t counts[EP_AAMI_COUNT])
{
    int i, annotated = 0;
    size_t k;

    for (i = 0; i < n_segs; i++) {
        for (k = 0; k < segs[i].n_beats; k++)
            if ((int)segs[i].beats[k].cls >= 0 &&
                (int)segs[i].beats[k].cls < EP_AAMI_COUNT)
                counts[segs[i].beats[k].cls]++;
        annotated |= segs[i].n_beats > 0;
    }
    return annotated;
}

int ep_prune_calib_warning(const size_t counts[EP_AAMI_COUNT], int annotated,
                           char *buf, size_t size)
{
    static const ep_aami rare[] = {EP_AAMI_S, EP_AAMI_V, EP_AAMI_F};
    char few[96] = "";
    size_t i, used = 0;

    if (size > 0)
        buf[0] = '\0';
    if (!annotated) {
        snprintf(buf, size, "the calibration ECG carries no beat "
                 "annotations, so its windows were not centred on rare "
                 "beats; check the pruned model on held-out ECG with S, V "
                 "and F beats before using it");
        return 1;
    }
    for (i = 0; i < sizeof rare / sizeof rare[0]; i++) {
        if (counts[rare[i]] >= EP_PRUNE_MIN_RARE_BEATS)
            continue;
        used += (size_t)snprintf(few + used, sizeof few - used, "%s%s (%zu)",
                                 used ? ", " : "", ep_aami_name(rare[i]),
                                 counts[rare[i]]);
    }
    if (used == 0)
        return 0;
    snprintf(buf, size, "the calibration ECG holds fewer than %d beats of "
             "%s; the pruned model may lose those classes, so use it only "
             "for the patient whose ECG this is and check it on held-out "
             "ECG", EP_PRUNE_MIN_RARE_BEATS, few);
    return 1;
}
