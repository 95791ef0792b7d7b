/*
 * test_infer.c - whole-record inference: the resampler against exact sine
 * values, the high-pass on a drifting QRS-like train, stitched windows
 * against one whole-length run of a small net (softmax recomputed here in
 * double), beat picking on hand-worked probability tracks, and the errors
 * for bad input.
 */
#include <string.h>

#include "check.h"
#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_plan.h"

#define PI 3.14159265358979323846

/* Two sines (amplitudes 1 and 0.5) at time t. */
static double two_sines(double t, double f1, double f2)
{
    return sin(2.0 * PI * f1 * t) + 0.5 * sin(2.0 * PI * f2 * t + 0.3);
}

/* Resample fs_in -> fs_out and compare with the exact signal at each
 * output time, skipping `edge_s` seconds at both ends. */
static double resample_error(double fs_in, double fs_out, double f1,
                             double f2, double edge_s)
{
    int64_t n = (int64_t)(10.0 * fs_in), n_out, expect;
    float *x = malloc((size_t)n * sizeof *x), *y;
    double worst = 0.0;
    ep_error err = {0};

    REQUIRE(x != NULL);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)two_sines((double)i / fs_in, f1, f2);
    REQUIRE(ep_infer_resample(x, n, fs_in, fs_out, &y, &n_out, &err) == 0);
    expect = (int64_t)ceil((double)n * fs_out / fs_in - 1e-9);
    CHECK_EQ_INT(n_out, expect);
    for (int64_t m = 0; m < n_out; m++) {
        double t = (double)m / fs_out;

        if (t < edge_s || t > (double)n / fs_in - edge_s)
            continue;
        worst = fmax(worst, fabs(y[m] - two_sines(t, f1, f2)));
    }
    free(x);
    free(y);
    return worst;
}

static void test_resample(void)
{
    float x[5] = {1, 2, 3, 4, 5}, *y;
    int64_t n_out;
    ep_error err = {0};

    /* Up, down, through a polyphase table and without one. */
    CHECK_MSG(resample_error(250.0, 360.0, 5.0, 31.0, 0.2) < 1e-4,
              "250 -> 360");
    CHECK_MSG(resample_error(360.0, 250.0, 5.0, 40.0, 0.2) < 1e-4,
              "360 -> 250");
    CHECK_MSG(resample_error(1000.0, 360.0, 3.0, 60.0, 0.2) < 1e-4,
              "1000 -> 360");
    CHECK_MSG(resample_error(257.3, 360.0, 5.0, 31.0, 0.2) < 1e-4,
              "257.3 -> 360");
    CHECK_MSG(resample_error(128.0, 360.0, 2.0, 20.0, 0.3) < 1e-4,
              "128 -> 360");

    /* Equal rates copy exactly. */
    REQUIRE(ep_infer_resample(x, 5, 360.0, 360.0, &y, &n_out, &err) == 0);
    CHECK_EQ_INT(n_out, 5);
    CHECK(memcmp(x, y, sizeof x) == 0);
    free(y);
}

/* The aliasing check: a 250 Hz tone resampled 1000 -> 360 Hz keeps less
 * than 1% of its amplitude (it would alias to 110 Hz). */
static void test_resample_alias(void)
{
    int64_t n = 10000, n_out;
    float *x = malloc((size_t)n * sizeof *x), *y;
    double worst = 0.0;
    ep_error err = {0};

    REQUIRE(x != NULL);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)sin(2.0 * PI * 250.0 * (double)i / 1000.0);
    REQUIRE(ep_infer_resample(x, n, 1000.0, 360.0, &y, &n_out, &err) == 0);
    for (int64_t m = 100; m < n_out - 100; m++)
        worst = fmax(worst, fabs(y[m]));
    CHECK_MSG(worst < 0.01, "alias residue %g", worst);
    free(x);
    free(y);
}

/* Gaussian "QRS" of 10 ms standard deviation and 1.5 mV every 0.8 s. */
static double qrs_train(double t)
{
    double v = 0.0;

    for (int k = 1; k < 25; k++) {
        double d = t - 0.8 * k;
        v += 1.5 * exp(-0.5 * d * d / (0.01 * 0.01));
    }
    return v;
}

static void test_highpass(void)
{
    const double fs = 360.0;
    int64_t n = (int64_t)(20.0 * fs);
    float *drift = malloc((size_t)n * sizeof *drift);
    float *ecg = malloc((size_t)n * sizeof *ecg);
    double drift_mid = 0.0, drift_edge = 0.0;
    ep_error err = {0};

    REQUIRE(drift != NULL && ecg != NULL);
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / fs, d = 1.0 * sin(2.0 * PI * 0.1 * t) + 0.3;

        drift[i] = (float)d;
        ecg[i] = (float)(d + qrs_train(t));
    }
    REQUIRE(ep_infer_highpass(drift, n, fs, 0.5, &err) == 0);
    REQUIRE(ep_infer_highpass(ecg, n, fs, 0.5, &err) == 0);

    /* A 0.1 Hz drift through |H|^2 = r^4 / (1 + r^4), r = 0.1 / 0.5:
     * 0.0016 / 1.0016 of its amplitude in the middle (the bilinear
     * transform's warping is negligible this far below 180 Hz); the ends
     * are allowed more. */
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / fs;

        if (t > 5.0 && t < 15.0)
            drift_mid = fmax(drift_mid, fabs(drift[i]));
        else
            drift_edge = fmax(drift_edge, fabs(drift[i]));
    }
    CHECK_NEAR(drift_mid, 0.0016 / 1.0016, 0.0002);
    CHECK_MSG(drift_edge < 0.01, "drift left at the ends: %g", drift_edge);

    /* Each QRS keeps its height (peak over the lowest point within 0.3 s)
     * within 3% and its peak sample (zero phase). */
    for (int k = 2; k < 24; k++) {
        int64_t centre = (int64_t)llround(0.8 * k * fs), best = centre;
        double low = 1e9;

        for (int64_t i = centre - 108; i <= centre + 108; i++) {
            low = fmin(low, ecg[i]);
            if (ecg[i] > ecg[best])
                best = i;
        }
        CHECK_EQ_INT(best, centre);
        CHECK_NEAR(ecg[centre] - low, 1.5, 0.03);
    }
    free(drift);
    free(ecg);
}

/* A small net with a 5-tap receptive field: conv(4, k5) relu conv(3, k1),
 * weights from a fixed formula. */
static ep_net *small_net(void)
{
    static const char *const names[] = {"bg", "N", "V"};
    ep_net *net;
    ep_error err = {0};
    int in, c1, r, head;

    REQUIRE(ep_net_create(&net, &err) == 0);
    in = ep_net_add_input(net, 1, "input", &err);
    c1 = ep_net_add_conv(net, in, 4, 5, 1, 1, EP_PAD_SAME, "c1", &err);
    r = ep_net_add_relu(net, c1, "r1", &err);
    head = ep_net_add_conv(net, r, 3, 1, 1, 1, EP_PAD_SAME, "head", &err);
    REQUIRE(in >= 0 && c1 >= 0 && r >= 0 && head >= 0);
    REQUIRE(ep_net_set_output(net, head, &err) == 0);
    for (int i = 0; i < 4 * 5; i++)
        net->layers[c1].weight[i] = (float)sin(1.7 * i + 0.2);
    for (int i = 0; i < 4; i++)
        net->layers[c1].bias[i] = 0.1f * (float)i - 0.1f;
    for (int i = 0; i < 3 * 4; i++)
        net->layers[head].weight[i] = (float)cos(0.9 * i);
    for (int i = 0; i < 3; i++)
        net->layers[head].bias[i] = 0.2f * (float)i;
    net->meta.sampling_rate = 360.0;
    net->meta.window = 64;
    net->meta.n_classes = 3;
    for (int c = 0; c < 3; c++)
        strcpy(net->meta.classes[c], names[c]);
    net->meta.highpass_hz = 0.0;
    net->meta.input_scale = 1.0;
    return net;
}

/* Softmax of one whole-length run of the net, in double. */
static double *whole_run(const ep_net *net, const float *x, int n)
{
    ep_plan *plan;
    const float *out;
    double *p = malloc((size_t)3 * n * sizeof *p);
    ep_error err = {0};

    REQUIRE(p != NULL);
    REQUIRE(ep_plan_create(net, 1, n, EP_PLAN_INFER, &plan, &err) == 0);
    REQUIRE(ep_plan_run(plan, x, &err) == 0);
    out = ep_plan_output(plan, -1, NULL, NULL);
    for (int t = 0; t < n; t++) {
        double m = fmax(out[t], fmax(out[n + t], out[2 * n + t])), s = 0.0;

        for (int c = 0; c < 3; c++)
            s += exp(out[c * n + t] - m);
        for (int c = 0; c < 3; c++)
            p[c * n + t] = exp(out[c * n + t] - m) / s;
    }
    ep_plan_free(plan);
    return p;
}

/* Windows of 64 with overlap 8 (stride 48): n = 304 ends the last window
 * exactly at the end, n = 300 mirrors 4 samples (the last 2 outputs see
 * them), n = 50 is one padded window. */
static void check_stitching(ep_net *net, int n, int exact_until)
{
    ep_infer_opts opts;
    ep_inferer *inf;
    float *x = malloc((size_t)n * sizeof *x);
    float *probs = malloc((size_t)3 * n * sizeof *probs);
    double *ref, worst = 0.0;
    ep_error err = {0};

    REQUIRE(x != NULL && probs != NULL);
    for (int i = 0; i < n; i++)
        x[i] = (float)(sin(0.05 * i) + 0.3 * cos(0.31 * i));
    ep_infer_default_opts(&opts);
    opts.overlap = 8;
    opts.batch = 4;
    REQUIRE(ep_inferer_create(net, &opts, &inf, &err) == 0);
    REQUIRE(ep_infer_probabilities(inf, x, n, probs, &err) == 0);
    ref = whole_run(net, x, n);
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < exact_until; t++)
            worst = fmax(worst, fabs(probs[c * n + t] - ref[c * n + t]));
    CHECK_MSG(worst < 1e-5, "n = %d: windowed vs whole %g", n, worst);
    ep_inferer_free(inf);
    free(ref);
    free(x);
    free(probs);
}

static void test_stitching(void)
{
    ep_net *net = small_net();

    check_stitching(net, 304, 304);
    check_stitching(net, 300, 298);
    check_stitching(net, 50, 48);
    ep_net_free(net);
}

/* A 100 Hz model with the six usual classes, for picking tests. */
static ep_net_meta pick_meta(void)
{
    static const char *const names[] = {"bg", "N", "S", "V", "F", "Q"};
    ep_net_meta m;

    memset(&m, 0, sizeof m);
    m.sampling_rate = 100.0;
    m.window = 64;
    m.n_classes = 6;
    for (int c = 0; c < 6; c++)
        strcpy(m.classes[c], names[c]);
    m.input_scale = 1.0;
    return m;
}

/* Set sample t of a 6 x n track: bg, then N S V F Q. */
static void put(float *p, int64_t n, int64_t t, float bg, float cn,
                float cs, float cv, float cf, float cq)
{
    float v[6] = {bg, cn, cs, cv, cf, cq};

    for (int c = 0; c < 6; c++)
        p[c * n + t] = v[c];
}

/*
 * Track of 200 samples at 100 Hz (refractory 0.25 s = 25 samples):
 *  20..24  bg 0.1 N 0.8 S 0.1          -> centre 22, N, conf 0.8/0.9
 *  40..43  bg 0.4 V 0.6                -> centre 41, 19 after 22 with a
 *                                         lower peak: dropped
 *  100..105 bg .3 .3 .3 .05 .3 .3, S .5 .5 .5 .45 .2 .2, V .2 .2 .2 .5 .5
 *          .5 -> centre 102, S (mean 2.35/6 against V 2.1/6), conf
 *          2.35 / 4.45
 *  140..142 bg 0.01 F 0.99             -> centre 141, F, conf 1
 *  160..161 bg 0.45 N 0.55             -> 19 after 141, lower: dropped
 *  190     bg 0.5 Q 0.5                -> at threshold: kept, Q, conf 1
 */
static void test_pick_beats(void)
{
    const int64_t n = 200;
    ep_net_meta meta = pick_meta();
    ep_infer_opts opts;
    float *p = calloc((size_t)6 * n, sizeof *p);
    ep_beat *beats;
    size_t nb;
    ep_error err = {0};
    static const float bg_c[6] = {.3f, .3f, .3f, .05f, .3f, .3f};
    static const float s_c[6] = {.5f, .5f, .5f, .45f, .2f, .2f};
    static const float v_c[6] = {.2f, .2f, .2f, .5f, .5f, .5f};

    REQUIRE(p != NULL);
    for (int64_t t = 0; t < n; t++)
        put(p, n, t, 1.0f, 0, 0, 0, 0, 0);
    for (int64_t t = 20; t <= 24; t++)
        put(p, n, t, 0.1f, 0.8f, 0.1f, 0, 0, 0);
    for (int64_t t = 40; t <= 43; t++)
        put(p, n, t, 0.4f, 0, 0, 0.6f, 0, 0);
    for (int64_t t = 100; t <= 105; t++)
        put(p, n, t, bg_c[t - 100], 0, s_c[t - 100], v_c[t - 100], 0, 0);
    for (int64_t t = 140; t <= 142; t++)
        put(p, n, t, 0.01f, 0, 0, 0, 0.99f, 0);
    for (int64_t t = 160; t <= 161; t++)
        put(p, n, t, 0.45f, 0.55f, 0, 0, 0, 0);
    put(p, n, 190, 0.5f, 0, 0, 0, 0, 0.5f);

    ep_infer_default_opts(&opts);
    REQUIRE(ep_infer_pick_beats(&meta, p, n, &opts, &beats, &nb, &err) == 0);
    CHECK_EQ_INT(nb, 4);
    if (nb == 4) {
        CHECK(beats[0].sample == 22 && beats[0].cls == EP_AAMI_N);
        CHECK_NEAR(beats[0].confidence, 0.8 / 0.9, 1e-5);
        CHECK_NEAR(beats[0].time, 0.22, 1e-12);
        CHECK(beats[1].sample == 102 && beats[1].cls == EP_AAMI_S);
        CHECK_NEAR(beats[1].confidence, 2.35 / 4.45, 1e-5);
        CHECK(beats[2].sample == 141 && beats[2].cls == EP_AAMI_F);
        CHECK_NEAR(beats[2].confidence, 1.0, 1e-6);
        CHECK(beats[3].sample == 190 && beats[3].cls == EP_AAMI_Q);
    }
    free(beats);

    /* A later, higher peak within the refractory period replaces the
     * earlier beat: 10 (peak 0.6) then 20 (peak 0.9) -> one beat at 20. */
    for (int64_t t = 0; t < n; t++)
        put(p, n, t, 1.0f, 0, 0, 0, 0, 0);
    put(p, n, 10, 0.4f, 0.6f, 0, 0, 0, 0);
    put(p, n, 20, 0.1f, 0, 0, 0.9f, 0, 0);
    REQUIRE(ep_infer_pick_beats(&meta, p, n, &opts, &beats, &nb, &err) == 0);
    CHECK_EQ_INT(nb, 1);
    if (nb == 1)
        CHECK(beats[0].sample == 20 && beats[0].cls == EP_AAMI_V);
    free(beats);

    /* NaN probabilities (a network that overflowed) count as background
     * and the scan goes on past them: the beat at 20 alone, with the
     * default refractory period and with none. */
    for (int64_t t = 0; t < n; t++)
        put(p, n, t, 1.0f, 0, 0, 0, 0, 0);
    put(p, n, 20, 0.1f, 0.9f, 0, 0, 0, 0);
    for (int64_t t = 50; t < 56; t++)
        put(p, n, t, NAN, NAN, NAN, NAN, NAN, NAN);
    for (int pass = 0; pass < 2; pass++) {
        opts.refractory_s = pass == 0 ? opts.refractory_s : 0.0;
        REQUIRE(ep_infer_pick_beats(&meta, p, n, &opts, &beats, &nb, &err)
                == 0);
        CHECK_EQ_INT(nb, 1);
        if (nb == 1)
            CHECK(beats[0].sample == 20 && beats[0].cls == EP_AAMI_N);
        free(beats);
    }
    ep_infer_default_opts(&opts);

    /* Nothing above threshold: no beats. */
    for (int64_t t = 0; t < n; t++)
        put(p, n, t, 0.9f, 0.1f, 0, 0, 0, 0);
    REQUIRE(ep_infer_pick_beats(&meta, p, n, &opts, &beats, &nb, &err) == 0);
    CHECK_EQ_INT(nb, 0);
    free(beats);
    free(p);
}

/*
 * The whole pipeline across rates: a 1x1 net whose background logit is
 * 5 - 10 x (beat wherever the input exceeds 0.5, class N), fed 50 ms
 * pulses of 1 mV at 180 Hz centred on samples 90, 300 and 510.  The
 * model runs at 360 Hz; the beats come back at 180 Hz on the centres.
 */
static void test_pipeline_rates(void)
{
    static const char *const names[] = {"bg", "N", "V"};
    static const int64_t centres[] = {90, 300, 510};
    ep_net *net;
    ep_inferer *inf;
    float x[720] = {0};
    ep_beat *beats;
    size_t nb;
    ep_error err = {0};
    int in, head;

    REQUIRE(ep_net_create(&net, &err) == 0);
    in = ep_net_add_input(net, 1, "input", &err);
    head = ep_net_add_conv(net, in, 3, 1, 1, 1, EP_PAD_SAME, "head", &err);
    REQUIRE(in >= 0 && head >= 0);
    REQUIRE(ep_net_set_output(net, head, &err) == 0);
    net->layers[head].weight[0] = -10.0f;
    net->layers[head].bias[0] = 5.0f;
    net->layers[head].weight[1] = 1.0f;
    net->meta.sampling_rate = 360.0;
    net->meta.window = 64;
    net->meta.n_classes = 3;
    for (int c = 0; c < 3; c++)
        strcpy(net->meta.classes[c], names[c]);
    net->meta.input_scale = 1.0;

    for (int b = 0; b < 3; b++)
        for (int64_t i = centres[b] - 4; i <= centres[b] + 4; i++)
            x[i] = 1.0f;
    REQUIRE(ep_inferer_create(net, NULL, &inf, &err) == 0);
    REQUIRE(ep_infer_beats(inf, x, 720, 180.0, &beats, &nb, &err) == 0);
    CHECK_EQ_INT(nb, 3);
    for (size_t b = 0; b < nb && b < 3; b++) {
        CHECK_MSG(llabs(beats[b].sample - centres[b]) <= 1,
                  "beat %zu at %lld, expected %lld", b,
                  (long long)beats[b].sample, (long long)centres[b]);
        CHECK(beats[b].cls == EP_AAMI_N);
        CHECK_NEAR(beats[b].time, (double)beats[b].sample / 180.0, 1e-12);
    }
    free(beats);
    ep_inferer_free(inf);
    ep_net_free(net);
}

static void test_errors(void)
{
    ep_net *net = small_net();
    ep_inferer *inf;
    ep_infer_opts opts;
    float x[100], *y;
    int64_t n_out;
    ep_beat *beats;
    size_t nb;
    ep_error err = {0};

    for (int i = 0; i < 100; i++)
        x[i] = 0.01f * (float)i;

    /* Rates out of range, a NaN, an empty signal. */
    CHECK_EQ_INT(ep_infer_prepare(net, x, 100, 20.0, &y, &n_out, &err),
                 EP_EINVAL);
    CHECK(strstr(err.msg, "20") != NULL);
    CHECK_EQ_INT(ep_infer_prepare(net, x, 100, 20000.0, &y, &n_out, &err),
                 EP_EINVAL);
    x[7] = NAN;
    CHECK_EQ_INT(ep_infer_prepare(net, x, 100, 360.0, &y, &n_out, &err),
                 EP_EINVAL);
    CHECK_MSG(strstr(err.msg, "sample 7 ") != NULL, "%s", err.msg);
    x[7] = 0.07f;
    CHECK_EQ_INT(ep_infer_prepare(net, x, 0, 360.0, &y, &n_out, &err),
                 EP_EINVAL);
    CHECK_EQ_INT(ep_infer_highpass(x, 100, 360.0, 200.0, &err), EP_EINVAL);

    /* Scaling alone at the model's rate. */
    net->meta.input_scale = 2.0;
    REQUIRE(ep_infer_prepare(net, x, 100, 360.0, &y, &n_out, &err) == 0);
    CHECK_EQ_INT(n_out, 100);
    CHECK(y[50] == 2.0f * x[50]);
    free(y);

    /* Overlap leaving no centre; a model without "bg" first. */
    ep_infer_default_opts(&opts);
    opts.overlap = 32;
    CHECK_EQ_INT(ep_inferer_create(net, &opts, &inf, &err), EP_EINVAL);
    strcpy(net->meta.classes[0], "N");
    CHECK_EQ_INT(ep_inferer_create(net, NULL, &inf, &err), EP_EINVAL);
    CHECK(strstr(err.msg, "bg") != NULL);
    strcpy(net->meta.classes[0], "bg");

    /* After 'bg', AAMI classes only, each once. */
    strcpy(net->meta.classes[2], "foo");
    CHECK_EQ_INT(ep_inferer_create(net, NULL, &inf, &err), EP_EINVAL);
    CHECK_MSG(strstr(err.msg, "class 2 is 'foo'") != NULL, "%s", err.msg);
    strcpy(net->meta.classes[2], "N");
    CHECK_EQ_INT(ep_inferer_create(net, NULL, &inf, &err), EP_EINVAL);
    CHECK_MSG(strstr(err.msg, "class 2 is 'N'") != NULL, "%s", err.msg);
    strcpy(net->meta.classes[2], "V");

    /* Two input channels: the message names the input, not the head. */
    net->layers[0].channels = 2;
    CHECK_EQ_INT(ep_inferer_create(net, NULL, &inf, &err), EP_EINVAL);
    CHECK_MSG(strstr(err.msg, "1-channel input (one ECG lead), got layer "
                     "'input' with 2 channels") != NULL, "%s", err.msg);
    net->layers[0].channels = 1;

    /* A window whose plan alone would take gigabytes (the model file
     * bounds the weights, not the window): per sample the input's 1
     * channel, c1's 4 outputs and 1 x 5 unfolded inputs, r1's 4, the
     * head's 3 outputs and 4 x 1 unfolded inputs, 21 floats, so 2^26
     * samples take 21 * 4 * 64 MiB = 5376 MiB. */
    net->meta.window = 1 << 26;
    CHECK_EQ_INT(ep_inferer_create(net, NULL, &inf, &err), EP_ERANGE);
    CHECK_MSG(strstr(err.msg, "about 5376 MiB") != NULL, "%s", err.msg);
    net->meta.window = 64;

    /* The whole pipeline on a NaN reports it too. */
    REQUIRE(ep_inferer_create(net, NULL, &inf, &err) == 0);
    x[3] = INFINITY;
    CHECK_EQ_INT(ep_infer_beats(inf, x, 100, 360.0, &beats, &nb, &err),
                 EP_EINVAL);
    CHECK(beats == NULL && nb == 0);
    ep_inferer_free(inf);

    /* Finite weights that overflow float: from x = 0.1 on, c1 gives at
     * least 1e18 per channel and the head sums 4 products of 1e19 with
     * those, past 3.4e38 from about x = 0.5 on: every class score is
     * infinite there and the softmax NaN.  Refused, with the sample. */
    x[3] = 0.03f;
    for (int i = 0; i < 4 * 5; i++)
        net->layers[1].weight[i] = 1e19f;
    for (int i = 0; i < 3 * 4; i++)
        net->layers[3].weight[i] = 1e19f;
    REQUIRE(ep_inferer_create(net, NULL, &inf, &err) == 0);
    CHECK_EQ_INT(ep_infer_beats(inf, x, 100, 360.0, &beats, &nb, &err),
                 EP_ERANGE);
    CHECK_MSG(strstr(err.msg, "not finite") != NULL, "%s", err.msg);
    CHECK(beats == NULL && nb == 0);
    ep_inferer_free(inf);
    ep_net_free(net);
}

int main(void)
{
    test_resample();
    test_resample_alias();
    test_highpass();
    test_stitching();
    test_pick_beats();
    test_pipeline_rates();
    test_errors();
    return check_exit();
}
