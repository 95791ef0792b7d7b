/*
 * ep_infer.c - whole-record inference: resampling to the model's rate,
 * baseline removal and scaling (the model input that training and pruning
 * build too), overlapping windows run in batches through one inference
 * plan and stitched at their centres, and beats picked from the per-sample
 * class probabilities.  docs/inference.md describes the pipeline.
 */
#include "ecgprune/ep_infer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_plan.h"

/* Zero crossings of the sinc on each side of the resampling kernel. */
#define SINC_ZERO_CROSSINGS 16
/* Kernel cut-off as a fraction of the lower Nyquist frequency. */
#define SINC_CUTOFF 0.95
/* Largest polyphase table (phases x taps) built; beyond it, taps are
 * computed for every output sample. */
#define POLYPHASE_MAX_FLOATS (1 << 20)
#define PI 3.14159265358979323846
/* Memory an inference plan may take.  Limitation: a fixed bound, not the
 * machine's memory; the batch is shrunk to fit it before a model is
 * refused. */
#define INFER_MAX_BYTES (1024.0 * 1024.0 * 1024.0)

struct ep_inferer {
    const ep_net *net;
    ep_infer_opts opts;      /* overlap resolved */
    ep_plan *plan;
    int window, n_classes;
    float *input;            /* batch x window */
    float *scores;           /* n_classes x window, one window's softmax */
};

void ep_infer_default_opts(ep_infer_opts *opts)
{
    opts->overlap = -1;
    opts->refractory_s = 0.25;
    opts->threshold = 0.5f;
    opts->batch = 8;
}

/* Index into [0, n) mirrored at both ends without repeating the edge
 * sample (..., x2, x1, x0, x1, x2, ...), for any i. */
static int64_t reflect_index(int64_t i, int64_t n)
{
    int64_t period = 2 * (n - 1);

    if (n <= 1)
        return 0;
    i %= period;
    if (i < 0)
        i += period;
    return i < n ? i : period - i;
}

static int check_rate(double fs, const char *what, ep_error *err)
{
    if (!isfinite(fs) || fs < EP_INFER_RATE_MIN || fs > EP_INFER_RATE_MAX)
        return ep_error_set(err, EP_EINVAL,
                            "infer: %s sampling rate %g Hz, expected %g to "
                            "%g Hz", what, fs, EP_INFER_RATE_MIN,
                            EP_INFER_RATE_MAX);
    return EP_OK;
}

static int check_signal(const float *x, int64_t n, ep_error *err)
{
    if (x == NULL || n < 1)
        return ep_error_set(err, EP_EINVAL,
                            "infer: empty signal (%lld samples)",
                            (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return ep_error_set(err, EP_EINVAL,
                                "infer: sample %lld is not a finite number",
                                (long long)i);
    return EP_OK;
}

/* ---- resampling ---------------------------------------------------- */

/* Geometry of the windowed-sinc kernel, in input samples. */
typedef struct sinc_kernel {
    double cutoff;       /* cycles per input sample */
    double half_width;   /* kernel support is (-half_width, half_width) */
    int lo, taps;        /* taps at offsets lo .. lo + taps - 1 from floor(t) */
} sinc_kernel;

static void sinc_kernel_init(sinc_kernel *k, double fs_in, double fs_out)
{
    double ratio = fs_out < fs_in ? fs_out / fs_in : 1.0;

    k->cutoff = 0.5 * SINC_CUTOFF * ratio;
    k->half_width = SINC_ZERO_CROSSINGS / (2.0 * k->cutoff);
    k->lo = -(int)floor(k->half_width);
    k->taps = 2 * (int)floor(k->half_width) + 2;
}

/* Weights of the input samples floor(t) + lo + j for an output at
 * fractional offset frac = t - floor(t): Blackman-windowed sinc, then
 * normalised to sum 1 so that a constant signal stays constant (to float
 * rounding). */
static void sinc_weights(const sinc_kernel *k, double frac, float *w)
{
    double sum = 0.0;

    for (int j = 0; j < k->taps; j++) {
        double d = (double)(k->lo + j) - frac, u = d / k->half_width;
        double arg = 2.0 * k->cutoff * d, s, win, v;

        w[j] = 0.0f;
        if (fabs(u) >= 1.0)
            continue;
        s = arg == 0.0 ? 1.0 : sin(PI * arg) / (PI * arg);
        win = 0.42 + 0.5 * cos(PI * u) + 0.08 * cos(2.0 * PI * u);
        v = 2.0 * k->cutoff * s * win;
        w[j] = (float)v;
        sum += v;
    }
    for (int j = 0; j < k->taps; j++)
        w[j] = (float)(w[j] / sum);
}

/* One output sample: weights applied at base + lo + j, mirrored at the
 * signal's ends. */
static float apply_weights(const float *x, int64_t n, int64_t base,
                           const sinc_kernel *k, const float *w)
{
    double acc = 0.0;
    int64_t first = base + k->lo;

    if (first >= 0 && first + k->taps <= n) {
        for (int j = 0; j < k->taps; j++)
            acc += (double)w[j] * x[first + j];
    } else {
        for (int j = 0; j < k->taps; j++)
            acc += (double)w[j] * x[reflect_index(first + j, n)];
    }
    return (float)acc;
}

/* Rates that are whole numbers resample through a table of p phases,
 * p / q being fs_out / fs_in in lowest terms; 0 when not applicable. */
static int64_t whole_rate(double fs)
{
    return fabs(fs - nearbyint(fs)) < 1e-9 ? (int64_t)nearbyint(fs) : 0;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b != 0) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int resample_polyphase(const float *x, int64_t n, int64_t p,
                              int64_t q, const sinc_kernel *k, float *y,
                              int64_t n_out, ep_error *err)
{
    float *table = malloc((size_t)p * (size_t)k->taps * sizeof *table);

    if (table == NULL)
        return ep_error_set(err, EP_ENOMEM, "infer: out of memory for a "
                            "%lld-phase resampling table", (long long)p);
    for (int64_t ph = 0; ph < p; ph++)
        sinc_weights(k, (double)ph / (double)p, table + ph * k->taps);
    for (int64_t m = 0; m < n_out; m++) {
        int64_t pos = m * q;

        y[m] = apply_weights(x, n, pos / p, k,
                             table + (pos % p) * k->taps);
    }
    free(table);
    return EP_OK;
}

static void resample_direct(const float *x, int64_t n, double fs_in,
                            double fs_out, const sinc_kernel *k, float *y,
                            int64_t n_out, float *w)
{
    for (int64_t m = 0; m < n_out; m++) {
        double t = (double)m * fs_in / fs_out, base = floor(t);

        sinc_weights(k, t - base, w);
        y[m] = apply_weights(x, n, (int64_t)base, k, w);
    }
}

int64_t ep_infer_resampled_count(int64_t n, double fs_in, double fs_out)
{
    /* The tolerance keeps an exact ratio (2048 at 360 Hz from 50 Hz and
     * back) from gaining a sample to rounding. */
    return fs_in == fs_out ? n
                           : (int64_t)ceil((double)n * fs_out / fs_in - 1e-9);
}

int ep_infer_resample(const float *x, int64_t n, double fs_in,
                      double fs_out, float **out, int64_t *n_out,
                      ep_error *err)
{
    int64_t in_whole = whole_rate(fs_in), out_whole = whole_rate(fs_out);
    int64_t count;
    sinc_kernel k;
    float *y, *w;
    int rc;

    *out = NULL;
    *n_out = 0;
    if ((rc = check_rate(fs_in, "input", err)) != EP_OK ||
        (rc = check_rate(fs_out, "output", err)) != EP_OK ||
        (rc = check_signal(x, n, err)) != EP_OK)
        return rc;

    /* Equal rates: a copy. */
    count = ep_infer_resampled_count(n, fs_in, fs_out);
    y = malloc((size_t)count * sizeof *y);
    if (y == NULL)
        return ep_error_set(err, EP_ENOMEM, "infer: out of memory for %lld "
                            "resampled samples", (long long)count);
    if (fs_in == fs_out) {
        memcpy(y, x, (size_t)n * sizeof *y);
        *out = y;
        *n_out = n;
        return EP_OK;
    }

    /* Whole rates with a small table go polyphase, others direct. */
    sinc_kernel_init(&k, fs_in, fs_out);
    if (in_whole > 0 && out_whole > 0) {
        int64_t g = gcd64(in_whole, out_whole);
        int64_t p = out_whole / g, q = in_whole / g;

        if (p * k.taps <= POLYPHASE_MAX_FLOATS) {
            rc = resample_polyphase(x, n, p, q, &k, y, count, err);
            if (rc != EP_OK) {
                free(y);
                return rc;
            }
            *out = y;
            *n_out = count;
            return EP_OK;
        }
    }
    w = malloc((size_t)k.taps * sizeof *w);
    if (w == NULL) {
        free(y);
        return ep_error_set(err, EP_ENOMEM, "infer: out of memory for %d "
                            "resampling taps", k.taps);
    }
    resample_direct(x, n, fs_in, fs_out, &k, y, count, w);
    free(w);
    *out = y;
    *n_out = count;
    return EP_OK;
}

/* ---- baseline removal ------------------------------------------------ */

typedef struct biquad {
    double b0, b1, b2, a1, a2;
} biquad;

/* Bilinear-transform 2nd-order Butterworth high-pass. */
static biquad butterworth_highpass(double fs, double cutoff_hz)
{
    double k = tan(PI * cutoff_hz / fs), norm;
    biquad f;

    norm = 1.0 / (1.0 + sqrt(2.0) * k + k * k);
    f.b0 = norm;
    f.b1 = -2.0 * norm;
    f.b2 = norm;
    f.a1 = 2.0 * (k * k - 1.0) * norm;
    f.a2 = (1.0 - sqrt(2.0) * k + k * k) * norm;
    return f;
}

/* Filter x in place (transposed direct form II), starting in the steady
 * state of a constant input equal to x[0]: a high-pass then starts at 0
 * instead of ringing from the signal's offset. */
static void biquad_run(const biquad *f, double *x, int64_t n, int step)
{
    int64_t i = step > 0 ? 0 : n - 1;
    double z2 = f->b2 * x[i], z1 = (f->b1 + f->b2) * x[i];

    for (int64_t c = 0; c < n; c++, i += step) {
        double in = x[i], y = f->b0 * in + z1;

        z1 = f->b1 * in - f->a1 * y + z2;
        z2 = f->b2 * in - f->a2 * y;
        x[i] = y;
    }
}

int ep_infer_highpass(float *x, int64_t n, double fs, double cutoff_hz,
                      ep_error *err)
{
    int64_t pad, len;
    biquad f;
    double *buf;
    int rc;

    if ((rc = check_rate(fs, "high-pass", err)) != EP_OK ||
        (rc = check_signal(x, n, err)) != EP_OK)
        return rc;
    if (!isfinite(cutoff_hz) || cutoff_hz <= 0.0 || cutoff_hz >= fs / 2.0)
        return ep_error_set(err, EP_EINVAL,
                            "infer: high-pass cut-off %g Hz, expected "
                            "between 0 and %g Hz", cutoff_hz, fs / 2.0);

    /* Odd (point-symmetric) extension by three periods of the cut-off
     * keeps the signal's slope across the ends, so the edge transient is
     * small.  Limitation: within about 1 / cutoff_hz seconds of either
     * end the baseline estimate relies on that extension and is less
     * exact than in the middle. */
    pad = (int64_t)ceil(3.0 * fs / cutoff_hz);
    if (pad > n - 1)
        pad = n - 1;
    len = n + 2 * pad;
    buf = malloc((size_t)len * sizeof *buf);
    if (buf == NULL)
        return ep_error_set(err, EP_ENOMEM, "infer: out of memory for a "
                            "%lld-sample high-pass", (long long)len);
    for (int64_t i = 0; i < n; i++)
        buf[pad + i] = x[i];
    for (int64_t i = 1; i <= pad; i++) {
        buf[pad - i] = 2.0 * x[0] - x[i];
        buf[pad + n - 1 + i] = 2.0 * x[n - 1] - x[n - 1 - i];
    }

    /* Forward then backward: zero phase, magnitude response squared. */
    f = butterworth_highpass(fs, cutoff_hz);
    biquad_run(&f, buf, len, 1);
    biquad_run(&f, buf, len, -1);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)buf[pad + i];
    free(buf);
    return EP_OK;
}

/* ---- model input ----------------------------------------------------- */

int ep_infer_prepare(const ep_net *net, const float *mv, int64_t n,
                     double fs, float **out, int64_t *n_out, ep_error *err)
{
    const ep_net_meta *meta = &net->meta;
    float *y;
    int64_t count;
    int rc;

    *out = NULL;
    *n_out = 0;
    if (!isfinite(meta->input_scale) || meta->input_scale == 0.0 ||
        !(meta->highpass_hz >= 0.0))
        return ep_error_set(err, EP_EINVAL,
                            "infer: model input_scale %g must be finite and "
                            "non-zero, highpass_hz %g >= 0",
                            meta->input_scale, meta->highpass_hz);
    rc = ep_infer_resample(mv, n, fs, meta->sampling_rate, &y, &count, err);
    if (rc != EP_OK)
        return rc;
    if (meta->highpass_hz > 0.0) {
        rc = ep_infer_highpass(y, count, meta->sampling_rate,
                               meta->highpass_hz, err);
        if (rc != EP_OK) {
            free(y);
            return rc;
        }
    }
    for (int64_t i = 0; i < count; i++)
        y[i] = (float)(y[i] * meta->input_scale);
    *out = y;
    *n_out = count;
    return EP_OK;
}

/* ---- windows and probabilities ---------------------------------------- */

/* 'bg' first, then AAMI classes, each once: beats are labelled with the
 * AAMI class of the highest mean probability, so another name would
 * never be reported and its beats would come out as N. */
static int check_classes(const ep_net_meta *meta, ep_error *err)
{
    int seen[EP_AAMI_COUNT] = {0};

    if (meta->n_classes < 2 || meta->n_classes > EP_MAX_CLASSES ||
        strcmp(meta->classes[0], "bg") != 0)
        return ep_error_set(err, EP_EINVAL,
                            "infer: model has %d classes, first '%s'; "
                            "expected 2..%d with 'bg' (background) first",
                            meta->n_classes,
                            meta->n_classes > 0 ? meta->classes[0] : "",
                            EP_MAX_CLASSES);
    for (int c = 1; c < meta->n_classes; c++) {
        ep_aami cls = ep_aami_from_name(meta->classes[c]);

        if (cls == EP_AAMI_NONE || seen[cls]++)
            return ep_error_set(err, EP_EINVAL, "infer: model class %d is "
                                "'%s'; expected after 'bg' the AAMI classes "
                                "N, S, V, F, Q, each at most once", c,
                                meta->classes[c]);
    }
    return EP_OK;
}

/* window <= 0: the overlap is not checked (beat picking ignores it). */
static int check_opts(const ep_infer_opts *o, int window, ep_error *err)
{
    if (o->batch < 1 || o->batch > 1024)
        return ep_error_set(err, EP_EINVAL, "infer: batch %d, expected "
                            "1..1024", o->batch);
    if (!(o->threshold > 0.0f && o->threshold <= 1.0f))
        return ep_error_set(err, EP_EINVAL, "infer: threshold %g, expected "
                            "in (0, 1]", (double)o->threshold);
    if (!(o->refractory_s >= 0.0 && o->refractory_s <= 10.0))
        return ep_error_set(err, EP_EINVAL, "infer: refractory period %g s, "
                            "expected 0..10 s", o->refractory_s);
    if (window > 0 && 2 * (int64_t)o->overlap >= window)
        return ep_error_set(err, EP_EINVAL, "infer: overlap %d leaves no "
                            "centre in a %d-sample window", o->overlap,
                            window);
    return EP_OK;
}

/* Shrink the batch so that the plan stays within INFER_MAX_BYTES; a
 * model whose single window exceeds it is refused. */
static int fit_batch(const ep_net *net, int window, int *batch,
                     ep_error *err)
{
    double per_window = ep_net_window_bytes(net, window, 1);

    if (per_window > INFER_MAX_BYTES)
        return ep_error_set(err, EP_ERANGE, "infer: one %d-sample window "
                            "of this model needs about %.0f MiB, more than "
                            "the %.0f MiB allowed", window,
                            per_window / (1 << 20),
                            INFER_MAX_BYTES / (1 << 20));
    if (*batch * per_window > INFER_MAX_BYTES)
        *batch = (int)(INFER_MAX_BYTES / per_window);
    return EP_OK;
}

int ep_inferer_create(const ep_net *net, const ep_infer_opts *opts,
                      ep_inferer **out, ep_error *err)
{
    const ep_layer *head;
    ep_inferer *inf;
    int rc, window = net->meta.window;

    *out = NULL;
    if ((rc = check_classes(&net->meta, err)) != EP_OK)
        return rc;
    if (net->output < 0 || net->output >= net->n_layers)
        return ep_error_set(err, EP_EINVAL, "infer: network has no output "
                            "layer");
    head = &net->layers[net->output];
    if (net->layers[0].op != EP_OP_INPUT || net->layers[0].channels != 1)
        return ep_error_set(err, EP_EINVAL, "infer: expected a 1-channel "
                            "input (one ECG lead), got layer '%s' with %d "
                            "channels", net->layers[0].name,
                            net->layers[0].channels);
    if (head->channels != net->meta.n_classes || head->rate_div != 1)
        return ep_error_set(err, EP_EINVAL, "infer: expected an output '%s' "
                            "of %d classes at full rate, got %d channels at "
                            "1/%d", head->name, net->meta.n_classes,
                            head->channels, head->rate_div);
    if (window <= 0 || window % ep_net_length_multiple(net) != 0)
        return ep_error_set(err, EP_EINVAL,
                            "infer: model window %d is not a positive "
                            "multiple of %d", window,
                            ep_net_length_multiple(net));

    /* Options, with the overlap's default resolved. */
    inf = calloc(1, sizeof *inf);
    if (inf == NULL)
        return ep_error_set(err, EP_ENOMEM, "infer: out of memory");
    if (opts != NULL)
        inf->opts = *opts;
    else
        ep_infer_default_opts(&inf->opts);
    if (inf->opts.overlap < 0)
        inf->opts.overlap = window / 8;
    if ((rc = check_opts(&inf->opts, window, err)) != EP_OK ||
        (rc = fit_batch(net, window, &inf->opts.batch, err)) != EP_OK) {
        free(inf);
        return rc;
    }

    /* The plan and its buffers. */
    inf->net = net;
    inf->window = window;
    inf->n_classes = net->meta.n_classes;
    rc = ep_plan_create(net, inf->opts.batch, window, EP_PLAN_INFER,
                        &inf->plan, err);
    if (rc != EP_OK) {
        free(inf);
        return rc;
    }
    inf->input = malloc((size_t)inf->opts.batch * window *
                        sizeof *inf->input);
    inf->scores = malloc((size_t)inf->n_classes * window *
                         sizeof *inf->scores);
    if (inf->input == NULL || inf->scores == NULL) {
        ep_inferer_free(inf);
        return ep_error_set(err, EP_ENOMEM, "infer: out of memory for "
                            "batch %d x window %d", inf->opts.batch, window);
    }
    *out = inf;
    return EP_OK;
}

void ep_inferer_free(ep_inferer *inf)
{
    if (inf == NULL)
        return;
    ep_plan_free(inf->plan);
    free(inf->input);
    free(inf->scores);
    free(inf);
}

/*
 * Windows start every stride = window - 2 overlap samples.  Window k keeps
 * its samples [overlap, window - overlap) (the first window from 0, the
 * last to the signal's end), so the kept parts tile the signal exactly.
 * Limitation: the last window reaches past the end into a mirror image of
 * the signal, so the last samples see reflected rather than real context;
 * the first samples see the network's zero padding.
 */
static int64_t window_count(int64_t n, int window, int stride)
{
    if (n <= window)
        return 1;
    return 1 + (n - window + stride - 1) / stride;
}

/* Softmax of the kept part of one window's scores, into probs.  Returns
 * the first sample whose probabilities are not finite, or -1: weights that
 * are finite can still overflow float on some input (a NaN or an infinity
 * in every later layer), and such scores would mean nothing. */
static int64_t stitch_window(ep_inferer *inf, const float *scores,
                             int64_t k, int64_t n_windows, int64_t n,
                             float *probs)
{
    int window = inf->window, overlap = inf->opts.overlap;
    int64_t start = k * (window - 2 * overlap);
    int64_t keep_lo = k == 0 ? 0 : overlap;
    int64_t keep_hi = k == n_windows - 1 ? n - start : window - overlap;
    int kept = (int)(keep_hi - keep_lo);

    /* Only the kept columns, packed: the dropped edges are never used. */
    for (int c = 0; c < inf->n_classes; c++)
        memcpy(inf->scores + (int64_t)c * kept,
               scores + (int64_t)c * window + keep_lo,
               (size_t)kept * sizeof *inf->scores);
    ep_softmax_channels(inf->n_classes, kept, inf->scores);
    for (int64_t i = 0; i < (int64_t)inf->n_classes * kept; i++)
        if (!isfinite(inf->scores[i]))
            return start + keep_lo + i % kept;
    for (int c = 0; c < inf->n_classes; c++)
        memcpy(probs + c * n + start + keep_lo,
               inf->scores + (int64_t)c * kept,
               (size_t)kept * sizeof *probs);
    return -1;
}

int ep_infer_probabilities(ep_inferer *inf, const float *x, int64_t n,
                           float *probs, ep_error *err)
{
    int window = inf->window, batch = inf->opts.batch;
    int stride = window - 2 * inf->opts.overlap, rc;
    int64_t n_windows;
    const float *scores;

    if ((rc = check_signal(x, n, err)) != EP_OK)
        return rc;
    n_windows = window_count(n, window, stride);
    for (int64_t first = 0; first < n_windows; first += batch) {
        int used = n_windows - first < batch ? (int)(n_windows - first)
                                             : batch;

        /* Fill the batch's first `used` windows; samples past the end are
         * mirrored.  Only those run: a short signal's last batch would
         * otherwise cost as much as a full one. */
        for (int b = 0; b < used; b++) {
            int64_t start = (first + b) * stride;
            float *dst = inf->input + (int64_t)b * window;

            for (int i = 0; i < window; i++)
                dst[i] = start + i < n ? x[start + i]
                                       : x[reflect_index(start + i, n)];
        }

        /* Run, then keep each window's centre. */
        rc = ep_plan_run_first(inf->plan, inf->input, used, err);
        if (rc != EP_OK)
            return rc;
        scores = ep_plan_output(inf->plan, -1, NULL, NULL);
        for (int b = 0; b < used; b++) {
            int64_t bad = stitch_window(inf, scores + (int64_t)b *
                                                 inf->n_classes * window,
                                        first + b, n_windows, n, probs);

            if (bad >= 0)
                return ep_error_set(err, EP_ERANGE, "infer: the network's "
                                    "output is not finite (NaN or "
                                    "infinity) at input sample %lld: its "
                                    "weights overflow float on this "
                                    "signal", (long long)bad);
        }
    }
    return EP_OK;
}

/* ---- beats ----------------------------------------------------------- */

/* A candidate beat and the peak that ranks it against its neighbours. */
typedef struct beat_candidate {
    ep_beat beat;
    float peak;
} beat_candidate;

/* Beat of region [lo, hi): centre position, class and confidence from the
 * mean probabilities of the AAMI classes over the region. */
static beat_candidate region_beat(const ep_net_meta *meta,
                                  const float *probs, int64_t n, int64_t lo,
                                  int64_t hi, float peak)
{
    double mean[EP_AAMI_COUNT] = {0}, total = 0.0;
    beat_candidate c;
    int best = EP_AAMI_N;

    for (int ch = 1; ch < meta->n_classes; ch++) {
        ep_aami cls = ep_aami_from_name(meta->classes[ch]);

        if (cls == EP_AAMI_NONE)
            continue;
        for (int64_t t = lo; t < hi; t++)
            mean[cls] += probs[ch * n + t];
    }
    for (int k = 0; k < EP_AAMI_COUNT; k++) {
        mean[k] /= (double)(hi - lo);
        total += mean[k];
        if (mean[k] > mean[best])
            best = k;
    }
    c.beat.sample = lo + (hi - 1 - lo) / 2;
    c.beat.time = (double)c.beat.sample / meta->sampling_rate;
    c.beat.cls = (ep_aami)best;
    c.beat.confidence = total > 0.0 ? (float)(mean[best] / total) : 0.0f;
    c.peak = peak;
    return c;
}

int ep_infer_pick_beats(const ep_net_meta *meta, const float *probs,
                        int64_t n, const ep_infer_opts *opts,
                        ep_beat **beats, size_t *n_beats, ep_error *err)
{
    beat_candidate *kept;
    size_t count = 0;
    double refractory;
    int64_t t = 0;
    int rc;

    *beats = NULL;
    *n_beats = 0;
    if ((rc = check_classes(meta, err)) != EP_OK)
        return rc;
    if (n < 0 || (n > 0 && probs == NULL) || !(meta->sampling_rate > 0.0))
        return ep_error_set(err, EP_EINVAL, "infer: %lld probabilities at "
                            "%g Hz", (long long)n, meta->sampling_rate);
    if ((rc = check_opts(opts, 0, err)) != EP_OK)
        return rc;
    refractory = opts->refractory_s * meta->sampling_rate;

    /* At most one beat per two samples; +1 keeps malloc(0) out. */
    kept = malloc((size_t)(n / 2 + 1) * sizeof *kept);
    if (kept == NULL)
        return ep_error_set(err, EP_ENOMEM, "infer: out of memory for "
                            "beats of %lld samples", (long long)n);
    while (t < n) {
        int64_t lo;
        float peak = 0.0f;
        beat_candidate c;

        /* The next region where the beat probability reaches threshold.
         * Written so that a NaN counts as background: t must advance. */
        if (!(1.0f - probs[t] >= opts->threshold)) {
            t++;
            continue;
        }
        for (lo = t; t < n && 1.0f - probs[t] >= opts->threshold; t++)
            if (1.0f - probs[t] > peak)
                peak = 1.0f - probs[t];
        c = region_beat(meta, probs, n, lo, t, peak);

        /* Within the refractory period of the last beat, the higher peak
         * stays (ties: the earlier).  Limitation: only the last kept beat
         * is compared, so in a run A, B, C where B loses to A and C is
         * far enough from A, C stays even if B peaked higher; and two
         * real beats closer than the period become one. */
        if (count > 0 &&
            (double)(c.beat.sample - kept[count - 1].beat.sample) <
                refractory) {
            if (c.peak > kept[count - 1].peak)
                kept[count - 1] = c;
            continue;
        }
        kept[count++] = c;
    }

    /* Hand back the beats alone. */
    *beats = malloc((count + 1) * sizeof **beats);
    if (*beats == NULL) {
        free(kept);
        return ep_error_set(err, EP_ENOMEM, "infer: out of memory for %zu "
                            "beats", count);
    }
    for (size_t i = 0; i < count; i++)
        (*beats)[i] = kept[i].beat;
    *n_beats = count;
    free(kept);
    return EP_OK;
}

int ep_infer_beats(ep_inferer *inf, const float *mv, int64_t n, double fs,
                   ep_beat **beats, size_t *n_beats, ep_error *err)
{
    const ep_net_meta *meta = &inf->net->meta;
    float *x = NULL, *probs = NULL;
    int64_t len;
    int rc;

    *beats = NULL;
    *n_beats = 0;

    /* Model input, then probabilities. */
    rc = ep_infer_prepare(inf->net, mv, n, fs, &x, &len, err);
    if (rc != EP_OK)
        return rc;
    probs = malloc((size_t)inf->n_classes * (size_t)len * sizeof *probs);
    if (probs == NULL) {
        free(x);
        return ep_error_set(err, EP_ENOMEM, "infer: out of memory for "
                            "%d x %lld probabilities", inf->n_classes,
                            (long long)len);
    }
    rc = ep_infer_probabilities(inf, x, len, probs, err);
    free(x);
    if (rc == EP_OK)
        rc = ep_infer_pick_beats(meta, probs, len, &inf->opts, beats,
                                 n_beats, err);
    free(probs);
    if (rc != EP_OK)
        return rc;

    /* Back to the input's sampling rate. */
    for (size_t i = 0; i < *n_beats; i++) {
        ep_beat *b = &(*beats)[i];
        int64_t s = llround((double)b->sample * fs / meta->sampling_rate);

        b->sample = s < 0 ? 0 : s >= n ? n - 1 : s;
        b->time = (double)b->sample / fs;
    }
    return EP_OK;
}
