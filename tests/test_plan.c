/*
 * test_plan.c - forward execution against a naive recursive evaluator in
 * double precision written here (direct-sum convolution, BN formula,
 * periodic filter-bank DWT/IDWT), for INFER and KEEP plans and several
 * batch sizes; TRAIN plans' batch statistics against sums computed here.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_plan.h"
#include "ecgprune/ep_rng.h"

/* Naive evaluator: out[i] holds layer i's output for one batch item,
 * channels x (len / rate_div), computed on demand. */
typedef struct ref_eval {
    const ep_net *net;
    int len;
    const float *x;
    double **out;
} ref_eval;

static void ref_conv(const ep_layer *l, const double *x, int in_len,
                     double *y)
{
    int span = l->dilation * (l->kernel - 1) + 1, out_len, pad, o, c, k, t;

    /* Same padding: ceil(L / stride) outputs, odd zero on the right. */
    out_len = (in_len + l->stride - 1) / l->stride;
    pad = l->padding;
    if (pad == EP_PAD_SAME) {
        int total = (out_len - 1) * l->stride + span - in_len;

        pad = total > 0 ? total / 2 : 0;
    }
    for (o = 0; o < l->channels; o++)
        for (t = 0; t < out_len; t++) {
            double s = l->bias[o];

            for (c = 0; c < l->in_channels; c++)
                for (k = 0; k < l->kernel; k++) {
                    int i = t * l->stride + k * l->dilation - pad;

                    if (i >= 0 && i < in_len)
                        s += l->weight[(o * l->in_channels + c) * l->kernel +
                                       k] * x[c * in_len + i];
                }
            y[o * out_len + t] = s;
        }
}

/* a[n] = sum_k lo[k] x[(2n+k) mod N], d[n] with hi[k] = (-1)^k lo[T-1-k];
 * the inverse is the transpose. */
static void ref_wavelet(const ep_layer *l, const double *x, int in_len,
                        double *y)
{
    const double *lo;
    int taps, c, n, k, C, half, len;

    ep_wavelet_filter(l->wavelet, &lo, &taps);
    if (l->op == EP_OP_DWT) {
        C = l->in_channels;
        len = in_len;
        half = len / 2;
        for (c = 0; c < C; c++)
            for (n = 0; n < half; n++) {
                double a = 0, d = 0;

                for (k = 0; k < taps; k++) {
                    double v = x[c * len + (2 * n + k) % len];

                    a += lo[k] * v;
                    d += ((k & 1) ? -1 : 1) * lo[taps - 1 - k] * v;
                }
                y[c * half + n] = a;
                y[(C + c) * half + n] = d;
            }
        return;
    }
    C = l->channels;
    half = in_len;
    len = 2 * half;
    memset(y, 0, (size_t)C * len * sizeof *y);
    for (c = 0; c < C; c++)
        for (n = 0; n < half; n++)
            for (k = 0; k < taps; k++)
                y[c * len + (2 * n + k) % len] +=
                    lo[k] * x[c * half + n] +
                    ((k & 1) ? -1 : 1) * lo[taps - 1 - k] *
                        x[(C + c) * half + n];
}

static const double *ref_layer(ref_eval *r, int i)
{
    const ep_layer *l = &r->net->layers[i];
    int len = r->len / l->rate_div, c, t, j;
    const double *x = NULL;
    int in_len = 0;
    double *y;

    if (r->out[i] != NULL)
        return r->out[i];
    y = malloc((size_t)l->channels * len * sizeof *y);
    REQUIRE(y != NULL);
    if (l->n_inputs > 0) {
        x = ref_layer(r, l->inputs[0]);
        in_len = r->len / r->net->layers[l->inputs[0]].rate_div;
    }
    switch (l->op) {
    case EP_OP_INPUT:
        for (t = 0; t < l->channels * len; t++)
            y[t] = r->x[t];
        break;
    case EP_OP_CONV:
        ref_conv(l, x, in_len, y);
        break;
    case EP_OP_BN:
        for (c = 0; c < l->channels; c++)
            for (t = 0; t < len; t++)
                y[c * len + t] = l->gamma[c] * (x[c * len + t] - l->mean[c]) /
                                 sqrt((double)l->var[c] + l->eps) +
                                 l->beta[c];
        break;
    case EP_OP_RELU:
        for (t = 0; t < l->channels * len; t++)
            y[t] = x[t] > 0 ? x[t] : 0;
        break;
    case EP_OP_DWT:
    case EP_OP_IDWT:
        ref_wavelet(l, x, in_len, y);
        break;
    case EP_OP_CONCAT:
        for (c = 0, j = 0; j < l->n_inputs; j++) {
            const ep_layer *in = &r->net->layers[l->inputs[j]];
            const double *src = ref_layer(r, l->inputs[j]);

            memcpy(y + (size_t)c * len, src,
                   (size_t)in->channels * len * sizeof *y);
            c += in->channels;
        }
        break;
    }
    r->out[i] = y;
    return y;
}

static void randomise_bn(ep_net *net, uint64_t seed)
{
    ep_rng rng;
    int i, c;

    ep_rng_seed(&rng, seed);
    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];

        for (c = 0; c < l->channels; c++) {
            if (l->op == EP_OP_BN) {
                l->gamma[c] = (float)(0.5 + ep_rng_uniform(&rng));
                l->beta[c] = (float)(0.3 * ep_rng_normal(&rng));
                l->mean[c] = (float)(0.3 * ep_rng_normal(&rng));
                l->var[c] = (float)(0.5 + 1.5 * ep_rng_uniform(&rng));
            } else if (l->op == EP_OP_CONV) {
                l->bias[c] = (float)(0.1 * ep_rng_normal(&rng));
            }
        }
    }
}

/* Compare every batch item's output (and, for KEEP, every layer) with the
 * naive evaluator. */
static void check_against_ref(const ep_net *net, int batch, int len,
                              int flags)
{
    int in_ch = net->layers[0].channels;
    ep_plan *plan;
    ep_error err;
    ep_rng rng;
    float *x = malloc((size_t)batch * in_ch * len * sizeof *x);
    double worst = 0.0;
    int n, i, t, first = flags == EP_PLAN_KEEP ? 0 : net->n_layers - 1;

    REQUIRE(x != NULL);
    ep_rng_seed(&rng, (uint64_t)(batch * 1000 + len));
    for (t = 0; t < batch * in_ch * len; t++)
        x[t] = (float)ep_rng_normal(&rng);
    REQUIRE(ep_plan_create(net, batch, len, flags, &plan, &err) == EP_OK);
    REQUIRE(ep_plan_run(plan, x, &err) == EP_OK);
    CHECK_EQ_INT(ep_plan_batch(plan), batch);
    CHECK_EQ_INT(ep_plan_length(plan), len);

    for (n = 0; n < batch; n++) {
        ref_eval r = {net, len, x + (size_t)n * in_ch * len, NULL};

        r.out = calloc((size_t)net->n_layers, sizeof *r.out);
        REQUIRE(r.out != NULL);
        for (i = first; i < net->n_layers; i++) {
            int layer = i == net->n_layers - 1 ? net->output : i;
            int ch, out_len;
            const float *y = ep_plan_output(plan, layer, &ch, &out_len);
            const double *ref = ref_layer(&r, layer);
            size_t size = (size_t)ch * out_len, k;

            CHECK_EQ_INT(out_len, len / net->layers[layer].rate_div);
            for (k = 0; k < size; k++) {
                double d = fabs(y[n * size + k] - ref[k]) /
                           (1.0 + fabs(ref[k]));

                if (d > worst)
                    worst = d;
            }
        }
        for (i = 0; i < net->n_layers; i++)
            free(r.out[i]);
        free(r.out);
    }
    CHECK_MSG(worst < 2e-4, "flags %d batch %d len %d: error %g", flags,
              batch, len, worst);
    ep_plan_free(plan);
    free(x);
}

static ep_net *small_unet(ep_wavelet w, int depth, uint64_t seed)
{
    static const int widths[] = {5, 7, 6, 4};
    ep_unet_config cfg;
    ep_net *net;
    ep_error err;
    int l;

    ep_unet_default_config(&cfg);
    cfg.depth = depth;
    for (l = 0; l < depth; l++)
        cfg.widths[l] = widths[l];
    cfg.kernel = 5;
    cfg.wavelet = w;
    REQUIRE(ep_unet_build(&cfg, seed, &net, &err) == EP_OK);
    randomise_bn(net, seed + 1);
    return net;
}

static void test_unet_forward(void)
{
    static const int batches[] = {1, 3, 5};
    int w, b;

    for (w = 0; w < 3; w++) {
        ep_net *net = small_unet((ep_wavelet)w, w == 2 ? 4 : 3, 30 + w);

        for (b = 0; b < 3; b++) {
            check_against_ref(net, batches[b], 8 * (5 + b), EP_PLAN_INFER);
            check_against_ref(net, batches[b], 8 * (5 + b), EP_PLAN_KEEP);
        }
        ep_net_free(net);
    }
}

/* A hand-built graph with strides, dilation, explicit padding, a shared
 * producer and a 3-way concat exercises paths the U-Net does not. */
static void test_other_graph(void)
{
    ep_net *net;
    ep_error err;
    ep_rng rng;
    int in, a, b, c, d, e, cat[3], i;
    size_t j;

    REQUIRE(ep_net_create(&net, &err) == EP_OK);
    in = ep_net_add_input(net, 2, "in", &err);
    a = ep_net_add_conv(net, in, 4, 3, 2, 1, 1, "a", &err);
    b = ep_net_add_conv(net, in, 3, 5, 2, 3, EP_PAD_SAME, "b", &err);
    c = ep_net_add_relu(net, b, "c", &err);
    d = ep_net_add_bn(net, a, "d", &err);
    cat[0] = d;
    cat[1] = c;
    cat[2] = a;
    e = ep_net_add_concat(net, cat, 3, "cat", &err);
    e = ep_net_add_idwt(net, ep_net_add_dwt(net, e, EP_WAVELET_DB4, "dw",
                                            &err), EP_WAVELET_DB4, "iw",
                        &err);
    e = ep_net_add_conv(net, e, 4, 4, 1, 2, EP_PAD_SAME, "up", &err);
    e = ep_net_add_idwt(net, e, EP_WAVELET_HAAR, "iw2", &err);
    e = ep_net_add_conv(net, e, 3, 1, 1, 1, 0, "head", &err);
    REQUIRE(e >= 0);
    REQUIRE(ep_net_set_output(net, e, &err) == EP_OK);
    ep_rng_seed(&rng, 77);
    for (i = 0; i < net->n_layers; i++)
        if (net->layers[i].op == EP_OP_CONV)
            for (j = 0; j < (size_t)net->layers[i].channels *
                                net->layers[i].in_channels *
                                net->layers[i].kernel; j++)
                net->layers[i].weight[j] = (float)ep_rng_normal(&rng);
    randomise_bn(net, 78);
    CHECK_EQ_INT(ep_net_length_multiple(net), 4);
    check_against_ref(net, 3, 12, EP_PLAN_KEEP);
    check_against_ref(net, 2, 20, EP_PLAN_INFER);
    ep_net_free(net);
}

/* TRAIN: BN normalises with the batch's mean and biased variance over
 * batch x length, recorded per channel. */
static void test_train_stats(void)
{
    enum { B = 3, L = 24 };
    ep_net *net = small_unet(EP_WAVELET_DB2, 3, 50);
    ep_plan *plan;
    ep_error err;
    ep_rng rng;
    float x[B * L];
    const float *mean, *inv_std, *pre, *post;
    int i, bn, c, n, t, ch, len;

    ep_rng_seed(&rng, 51);
    for (i = 0; i < B * L; i++)
        x[i] = (float)(2 * ep_rng_normal(&rng) + 0.5);
    REQUIRE(ep_plan_create(net, B, L, EP_PLAN_TRAIN, &plan, &err) == EP_OK);
    REQUIRE(ep_plan_run(plan, x, &err) == EP_OK);
    for (bn = 0; bn < net->n_layers; bn++) {
        const ep_layer *l = &net->layers[bn];

        if (l->op != EP_OP_BN)
            continue;
        REQUIRE(ep_plan_bn_stats(plan, bn, &mean, &inv_std, &err) == EP_OK);
        pre = ep_plan_output(plan, l->inputs[0], &ch, &len);
        post = ep_plan_output(plan, bn, NULL, NULL);
        for (c = 0; c < ch; c++) {
            double s = 0, sq = 0, m, v, out_s = 0, out_sq = 0, om, ov;

            for (n = 0; n < B; n++)
                for (t = 0; t < len; t++)
                    s += pre[(n * ch + c) * len + t];
            m = s / (B * len);
            for (n = 0; n < B; n++)
                for (t = 0; t < len; t++) {
                    double dv = pre[(n * ch + c) * len + t] - m;
                    double o = post[(n * ch + c) * len + t];

                    sq += dv * dv;
                    out_s += o;
                    out_sq += o * o;
                }
            v = sq / (B * len);
            CHECK_NEAR(mean[c], m, 1e-5);
            CHECK_NEAR(inv_std[c], 1.0 / sqrt(v + l->eps), 1e-4);

            /* The normalised output has mean beta and std ~ gamma. */
            om = out_s / (B * len);
            ov = out_sq / (B * len) - om * om;
            CHECK_NEAR(om, l->beta[c], 1e-4);
            CHECK_NEAR(sqrt(ov), l->gamma[c] * sqrt(v / (v + l->eps)),
                       1e-3);
        }
    }
    CHECK(ep_plan_bn_stats(plan, 0, &mean, &inv_std, &err) == EP_EINVAL);
    ep_plan_free(plan);
    ep_net_free(net);
}

static void test_flops_and_errors(void)
{
    ep_net *net = small_unet(EP_WAVELET_HAAR, 3, 60);
    ep_plan *plan;
    ep_error err;
    double flops = 0;
    int i;

    REQUIRE(ep_plan_create(net, 3, 40, EP_PLAN_INFER, &plan, &err) ==
            EP_OK);
    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];

        if (l->op == EP_OP_CONV)
            flops += 2.0 * 3 * l->channels * l->in_channels * l->kernel *
                     (40 / l->rate_div);
    }
    CHECK_NEAR(ep_plan_conv_flops(plan), flops, 1e-12);
    CHECK(ep_plan_bn_stats(plan, 2, NULL, NULL, &err) == EP_EINVAL);

    /* Refresh picks up changed weights: zero head -> output = head bias. */
    memset(net->layers[net->output].weight, 0,
           (size_t)net->layers[net->output].in_channels * 6 * sizeof(float));
    {
        float x[3 * 40] = {0};
        const float *y;
        int ch, len;

        REQUIRE(ep_plan_refresh(plan, &err) == EP_OK);
        REQUIRE(ep_plan_run(plan, x, &err) == EP_OK);
        y = ep_plan_output(plan, -1, &ch, &len);
        CHECK_EQ_INT(ch, 6);
        CHECK_NEAR(y[2 * 6 * 40 + 3 * 40 + 7], net->layers[net->output].bias[3],
                   1e-6);
    }
    ep_plan_free(plan);
    CHECK(ep_plan_create(net, 1, 42, EP_PLAN_INFER, &plan, &err) ==
          EP_EINVAL);
    CHECK(ep_plan_create(net, 0, 40, EP_PLAN_INFER, &plan, &err) ==
          EP_EINVAL);
    CHECK(ep_plan_create(net, 1, 40, 9, &plan, &err) == EP_EINVAL);
    ep_net_free(net);
}

/* Two plans of one network running in two threads at once must give what
 * each gives alone: plans share no mutable state. */
typedef struct thread_job {
    const ep_net *net;
    const float *x;
    float *y;
    int rc;
} thread_job;

enum { TB = 2, TL = 64, TRUNS = 20 };

static void *thread_run(void *arg)
{
    thread_job *job = arg;
    ep_plan *plan;
    ep_error err;
    int r, ch, len;

    job->rc = ep_plan_create(job->net, TB, TL, EP_PLAN_INFER, &plan, &err);
    for (r = 0; r < TRUNS && job->rc == EP_OK; r++)
        job->rc = ep_plan_run(plan, job->x, &err);
    if (job->rc == EP_OK) {
        const float *y = ep_plan_output(plan, -1, &ch, &len);

        memcpy(job->y, y, (size_t)TB * ch * len * sizeof(float));
    }
    ep_plan_free(plan);
    return NULL;
}

static void test_concurrent_plans(void)
{
    ep_net *net = small_unet(EP_WAVELET_DB2, 3, 70);
    float x[2][TB * TL], alone[2][TB * 6 * TL], together[2][TB * 6 * TL];
    thread_job jobs[2];
    pthread_t threads[2];
    ep_rng rng;
    int i, k;

    ep_rng_seed(&rng, 71);
    for (i = 0; i < 2; i++)
        for (k = 0; k < TB * TL; k++)
            x[i][k] = (float)ep_rng_normal(&rng);
    for (i = 0; i < 2; i++) {
        jobs[i] = (thread_job){net, x[i], alone[i], 0};
        thread_run(&jobs[i]);
        REQUIRE(jobs[i].rc == EP_OK);
    }
    for (i = 0; i < 2; i++) {
        jobs[i] = (thread_job){net, x[i], together[i], 0};
        REQUIRE(pthread_create(&threads[i], NULL, thread_run, &jobs[i]) ==
                0);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        CHECK(jobs[i].rc == EP_OK);
        CHECK(memcmp(alone[i], together[i], sizeof alone[i]) == 0);
    }
    ep_net_free(net);
}

/* Running the first n items of a batch gives those items exactly what the
 * whole batch gives them, reads only n items of input (an exact-size
 * buffer, which AddressSanitizer watches), and is refused for n outside
 * 1..batch and for a training plan short of its batch. */
static void test_run_first(void)
{
    enum { B = 5, N = 2, L = 48 };
    ep_net *net = small_unet(EP_WAVELET_DB2, 3, 60);
    ep_plan *plan, *train;
    ep_error err;
    ep_rng rng;
    float x[B * L], *part = malloc((size_t)N * L * sizeof *part), *whole;
    const float *y;
    int i, ch, len;
    size_t size;

    REQUIRE(part != NULL);
    ep_rng_seed(&rng, 61);
    for (i = 0; i < B * L; i++)
        x[i] = (float)ep_rng_normal(&rng);
    memcpy(part, x, (size_t)N * L * sizeof *part);
    REQUIRE(ep_plan_create(net, B, L, EP_PLAN_INFER, &plan, &err) == EP_OK);
    REQUIRE(ep_plan_run(plan, x, &err) == EP_OK);
    y = ep_plan_output(plan, -1, &ch, &len);
    size = (size_t)ch * len;
    whole = malloc(N * size * sizeof *whole);
    REQUIRE(whole != NULL);
    memcpy(whole, y, N * size * sizeof *whole);
    REQUIRE(ep_plan_run_first(plan, part, N, &err) == EP_OK);
    y = ep_plan_output(plan, -1, NULL, NULL);
    CHECK(memcmp(y, whole, N * size * sizeof *whole) == 0);

    CHECK_EQ_INT(ep_plan_run_first(plan, part, 0, &err), EP_EINVAL);
    CHECK(strstr(err.msg, "expected 1..5") != NULL);
    CHECK_EQ_INT(ep_plan_run_first(plan, x, B + 1, &err), EP_EINVAL);
    REQUIRE(ep_plan_create(net, B, L, EP_PLAN_TRAIN, &train, &err) == EP_OK);
    CHECK_EQ_INT(ep_plan_run_first(train, x, B - 1, &err), EP_EINVAL);
    CHECK(strstr(err.msg, "whole batch") != NULL);
    CHECK_EQ_INT(ep_plan_run_first(train, x, B, &err), EP_OK);
    ep_plan_free(train);
    ep_plan_free(plan);
    free(whole);
    free(part);
    ep_net_free(net);
}

int main(void)
{
    test_unet_forward();
    test_other_graph();
    test_train_stats();
    test_flops_and_errors();
    test_concurrent_plans();
    test_run_first();
    return check_exit();
}
