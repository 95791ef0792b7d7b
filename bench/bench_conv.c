/*
 * bench_conv.c - how close the convolutions come to the machine's sgemm
 * peak, on one thread.
 *
 *   bench_conv [BATCH] [SECONDS] [MODEL]
 *
 * 1. Peak: GFLOP/s of a large square sgemm (best of several runs).
 * 2. Per conv layer of the default U-Net (untrained, or MODEL, e.g. a
 *    pruned one): GFLOP/s of ep_conv_forward over
 *    BATCH windows of the default length (2048 samples), as an INFER plan
 *    runs it, and its share of the peak.
 * 3. The whole INFER plan: conv GFLOP/s counted over the full run time
 *    (all layers), the share of the run spent outside the convolutions,
 *    and seconds of ECG processed per CPU-second.
 * Each measurement repeats until SECONDS (default 0.5) have passed.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ecgprune/ep_model.h"
#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_plan.h"
#include "ecgprune/ep_rng.h"

static double cpu_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *random_floats(ep_rng *rng, size_t n)
{
    float *x = malloc(n * sizeof *x);
    size_t i;

    if (x == NULL) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    for (i = 0; i < n; i++)
        x[i] = (float)ep_rng_normal(rng);
    return x;
}

/* Best GFLOP/s of an n x n x n sgemm over repeated runs. */
static double sgemm_peak(ep_rng *rng, int n, double budget)
{
    float *a = random_floats(rng, (size_t)n * n);
    float *b = random_floats(rng, (size_t)n * n);
    float *c = random_floats(rng, (size_t)n * n);
    double best = 0.0, start = cpu_seconds();

    do {
        double t0 = cpu_seconds(), dt;

        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f,
                    a, n, b, n, 0.0f, c, n);
        dt = cpu_seconds() - t0;
        if (dt > 0 && 2.0 * n * n * n / dt / 1e9 > best)
            best = 2.0 * n * n * n / dt / 1e9;
    } while (cpu_seconds() - start < budget);
    free(a);
    free(b);
    free(c);
    return best;
}

/* GFLOP/s of one conv layer over a batch, the way a plan runs it. */
static double conv_layer_gflops(ep_rng *rng, const ep_layer *l, int in_len,
                                int batch, double budget)
{
    ep_conv_geom g;
    ep_error err;
    float *x, *y, *work;
    double flops, start, elapsed;
    long runs = 0;
    int n;

    if (ep_conv_geom_init(&g, l->in_channels, l->channels, l->kernel,
                          l->stride, l->dilation, l->padding, in_len,
                          &err) != EP_OK) {
        fprintf(stderr, "bench_conv: %s\n", err.msg);
        exit(1);
    }
    x = random_floats(rng, (size_t)batch * g.in_ch * g.in_len);
    y = random_floats(rng, (size_t)batch * g.out_ch * g.out_len);
    work = random_floats(rng, ep_conv_work_floats(&g) + 1);
    flops = 2.0 * batch * g.out_ch * g.in_ch * g.kernel * g.out_len;
    start = cpu_seconds();
    do {
        for (n = 0; n < batch; n++)
            ep_conv_forward(&g, x + (size_t)n * g.in_ch * g.in_len,
                            l->weight, l->bias,
                            y + (size_t)n * g.out_ch * g.out_len, work);
        runs++;
        elapsed = cpu_seconds() - start;
    } while (elapsed < budget);
    free(x);
    free(y);
    free(work);
    return flops * runs / elapsed / 1e9;
}

int main(int argc, char **argv)
{
    int batch = argc > 1 ? atoi(argv[1]) : 16;
    double budget = argc > 2 ? atof(argv[2]) : 0.5;
    ep_unet_config cfg;
    ep_net *net;
    ep_plan *plan;
    ep_error err;
    ep_rng rng;
    float *input;
    double peak, flops, start, elapsed, outside, conv_time = 0.0;
    long runs = 0;
    int i, len;

    if (batch < 1 || budget <= 0 || argc > 4) {
        fprintf(stderr, "usage: bench_conv [BATCH] [SECONDS] [MODEL]\n");
        return 2;
    }
    openblas_set_num_threads(1);
    ep_rng_seed(&rng, 1);
    ep_unet_default_config(&cfg);
    if ((argc > 3 ? ep_model_load(argv[3], &net, &err)
                  : ep_unet_build(&cfg, 1, &net, &err)) != EP_OK) {
        fprintf(stderr, "bench_conv: %s\n", err.msg);
        return 1;
    }
    len = net->meta.window;

    /* 1. The sgemm peak. */
    peak = sgemm_peak(&rng, 1024, 4 * budget);
    printf("sgemm 1024^3, 1 thread: %.1f GFLOP/s peak\n\n", peak);

    /* 2. Each conv layer of the default U-Net. */
    printf("%-12s %5s %5s %3s %6s %8s %6s\n", "layer", "in", "out", "k",
           "len", "GFLOP/s", "peak%");
    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];
        int in_len = len / net->layers[l->inputs[0]].rate_div;
        double g, layer_flops;

        if (l->op != EP_OP_CONV)
            continue;
        g = conv_layer_gflops(&rng, l, in_len, batch, budget / 4);
        layer_flops = 2.0 * batch * l->channels * l->in_channels *
                      l->kernel * (len / l->rate_div);
        conv_time += layer_flops / (g * 1e9);
        printf("%-12s %5d %5d %3d %6d %8.2f %5.1f%%\n", l->name,
               l->in_channels, l->channels, l->kernel, len / l->rate_div, g,
               100.0 * g / peak);
    }

    /* 3. The whole INFER plan. */
    if (ep_plan_create(net, batch, len, EP_PLAN_INFER, &plan, &err) !=
        EP_OK) {
        fprintf(stderr, "bench_conv: %s\n", err.msg);
        return 1;
    }
    input = random_floats(&rng, (size_t)batch * len);
    flops = ep_plan_conv_flops(plan);
    start = cpu_seconds();
    do {
        ep_plan_run(plan, input, &err);
        runs++;
        elapsed = cpu_seconds() - start;
    } while (elapsed < 4 * budget);
    printf("\nall convs, summed per layer: %.2f GFLOP/s (%.1f%% of peak)\n",
           flops / conv_time / 1e9, 100.0 * flops / conv_time / 1e9 / peak);
    /* The layers timed one by one can add up to a little more than the
     * plan that runs them all (warm caches): then nothing is outside. */
    outside = 1.0 - conv_time * runs / elapsed;
    printf("outside the convs: %.1f%% of the plan's run time\n",
           100.0 * (outside > 0.0 ? outside : 0.0));
    printf("INFER plan, batch %d x %d samples: %.2f ms per run, convs "
           "%.2f GFLOP/s over the whole run (%.1f%% of peak)\n", batch, len,
           1e3 * elapsed / runs, flops * runs / elapsed / 1e9,
           100.0 * flops * runs / elapsed / 1e9 / peak);
    printf("throughput: %.0f seconds of ECG per CPU-second (%.0f MMAC per "
           "second of ECG)\n",
           batch * (len / net->meta.sampling_rate) * runs / elapsed,
           ep_net_macs_per_second(net) / 1e6);
    free(input);
    ep_plan_free(plan);
    ep_net_free(net);
    return 0;
}
