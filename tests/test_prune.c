/*
 * test_prune.c - the pruning driver on small networks and real ECG
 * (records 100 and 208 of the shipped MIT-BIH excerpt):
 *   keep = 1 reproduces the original network;
 *   without reconstruction the smaller network computes what the original
 *   computes with the dropped channels zeroed (reference built here by
 *   zeroing weights, biases and BN entries in the unpruned network), for
 *   every method, which also checks that a U-Net's encoder and decoder
 *   keep the same skip channels;
 *   an exactly redundant channel is reconstructed to zero error;
 *   the reported errors match errors measured directly;
 *   l1 keeps the largest norms computed here; seeds; progress and
 *   cancellation; hostile parameters;
 *   distillation: the divergences it reports equal ones computed here from
 *   the two networks' outputs, it lowers the divergence, repeats itself
 *   exactly, cancels, refuses bad arguments, and runs inside a prune.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ecgprune/ep_distill.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_plan.h"
#include "ecgprune/ep_prune.h"
#include "ecgprune/ep_rng.h"
#include "ecgprune/ep_score.h"
#include "ecgprune/ep_wfdb.h"

enum { WINDOW = 256, N_WIN = 24 };

static float windows[N_WIN * WINDOW];

/* Windows of real ECG in mV: record 208 (many V beats), then 100. */
static void load_windows(void)
{
    static const char *const names[] = {"208", "100"};
    const char *dir = getenv("EXCERPT");
    int r, w = 0;

    REQUIRE(dir != NULL);
    for (r = 0; r < 2; r++) {
        char path[512];
        ep_record *rec;
        ep_error err;
        float *mv;
        int64_t t;

        snprintf(path, sizeof path, "%s/%s", dir, names[r]);
        REQUIRE(ep_wfdb_read_record(path, &rec, &err) == EP_OK);
        mv = malloc((size_t)rec->n_samples * sizeof *mv);
        REQUIRE(mv != NULL);
        REQUIRE(ep_wfdb_signal_physical(rec, 0, mv, &err) == EP_OK);
        for (t = 0; w < (r + 1) * N_WIN / 2; t += 3 * WINDOW / 2, w++)
            memcpy(windows + (size_t)w * WINDOW, mv + t,
                   WINDOW * sizeof *mv);
        free(mv);
        ep_wfdb_free_record(rec);
    }
}

/* A small wavelet U-Net with non-trivial BN statistics. */
static ep_net *small_unet(int convs_per_level)
{
    ep_unet_config cfg;
    ep_net *net;
    ep_error err;
    ep_rng rng;
    int i, c;

    ep_unet_default_config(&cfg);
    cfg.depth = 3;
    cfg.widths[0] = 6;
    cfg.widths[1] = 8;
    cfg.widths[2] = 12;
    cfg.kernel = 5;
    cfg.convs_per_level = convs_per_level;
    cfg.meta.window = WINDOW;
    REQUIRE(ep_unet_build(&cfg, 42, &net, &err) == EP_OK);
    ep_rng_seed(&rng, 9);
    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];

        for (c = 0; l->op == EP_OP_BN && c < l->channels; c++) {
            l->gamma[c] = (float)(0.5 + ep_rng_uniform(&rng));
            l->beta[c] = (float)(0.1 * ep_rng_normal(&rng));
            l->mean[c] = (float)(0.1 * ep_rng_normal(&rng));
            l->var[c] = (float)(0.5 + ep_rng_uniform(&rng));
        }
        for (c = 0; l->op == EP_OP_CONV && c < l->channels; c++)
            l->bias[c] = (float)(0.05 * ep_rng_normal(&rng));
    }
    return net;
}

/* Network output on all windows (n_classes x WINDOW per window). */
static float *run_net(const ep_net *net)
{
    ep_plan *plan;
    ep_error err;
    int ch, len;
    const float *y;
    float *out;

    REQUIRE(ep_plan_create(net, N_WIN, WINDOW, EP_PLAN_INFER, &plan,
                           &err) == EP_OK);
    REQUIRE(ep_plan_run(plan, windows, &err) == EP_OK);
    y = ep_plan_output(plan, -1, &ch, &len);
    out = malloc((size_t)N_WIN * ch * len * sizeof *out);
    REQUIRE(out != NULL);
    memcpy(out, y, (size_t)N_WIN * ch * len * sizeof *out);
    ep_plan_free(plan);
    return out;
}

/* ||a - b|| / ||b|| over n values. */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0.0, s = 0.0;
    size_t i;

    for (i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / s);
}

static size_t output_floats(const ep_net *net)
{
    return (size_t)N_WIN * net->layers[net->output].channels * WINDOW;
}

static ep_prune_result *prune(const ep_net *net, ep_prune_method method,
                              double keep, int reconstruct, uint64_t seed)
{
    ep_prune_opts opts;
    ep_prune_result *res = NULL;
    ep_error err;
    int rc;

    ep_prune_default_opts(&opts);
    opts.method = method;
    opts.keep = keep;
    opts.reconstruct = reconstruct;
    opts.seed = seed;
    opts.batch_windows = 6;
    opts.prune_head_input = 1;      /* every group, as the spec has it */
    rc = ep_prune_run_windows(net, windows, N_WIN, &opts, NULL, NULL, &res,
                              &err);
    CHECK_MSG(rc == EP_OK, "%s", err.msg);
    REQUIRE(res != NULL);
    return res;
}

static void test_keep_one(void)
{
    ep_net *net = small_unet(2);
    ep_prune_result *res = prune(net, EP_PRUNE_ISING_KERNEL, 1.0, 1, 1);
    float *a = run_net(net), *b = run_net(res->net);
    int g;

    CHECK(rel_diff(b, a, output_floats(net)) < 1e-5);
    for (g = 0; g < res->n_groups; g++)
        CHECK_EQ_INT(res->groups[g].channels_after,
                     res->groups[g].channels_before);
    /* 2 convs x 3 levels of encoder + 2 x 2 decoder + 2 up: 12 groups. */
    CHECK_EQ_INT(res->n_groups, 12);
    free(a);
    free(b);
    ep_prune_result_free(res);
    ep_net_free(net);
}

/* Zero the producer channels a group dropped, in the unpruned network:
 * conv filter and bias, and the following BN's beta and mean, so that the
 * channel is exactly zero wherever it goes. */
static void zero_dropped(ep_net *net, const ep_prune_group_report *rep)
{
    int p = ep_net_find(net, rep->producer), c, k, i;
    ep_layer *l;

    REQUIRE(p >= 0);
    l = &net->layers[p];
    for (c = 0; c < l->channels; c++) {
        int kept = 0;

        for (k = 0; k < rep->channels_after; k++)
            kept |= rep->kept[k] == c;
        if (kept)
            continue;
        memset(l->weight + (size_t)c * l->in_channels * l->kernel, 0,
               (size_t)l->in_channels * l->kernel * sizeof(float));
        l->bias[c] = 0.0f;
        for (i = p + 1; i < net->n_layers; i++)
            if (net->layers[i].op == EP_OP_BN &&
                net->layers[i].inputs[0] == p) {
                net->layers[i].beta[c] = 0.0f;
                net->layers[i].mean[c] = 0.0f;
            }
    }
}

/* Channels of a layer of the pruned network, by name. */
static int channels_of(const ep_net *net, const char *name)
{
    int i = ep_net_find(net, name);

    REQUIRE(i >= 0);
    return net->layers[i].channels;
}

static void check_skip_consistency(const ep_net *pruned)
{
    static const char *const enc_out[] = {"enc0.conv1", "enc1.conv1"};
    static const char *const next_in[] = {"enc1.conv0", "enc2.conv0"};
    static const char *const dec_in[] = {"dec0.conv0", "dec1.conv0"};
    static const char *const up[] = {"up0", "up1"};
    int l;

    for (l = 0; l < 2; l++) {
        int skip = channels_of(pruned, enc_out[l]);
        int upc = channels_of(pruned, up[l]);
        int i = ep_net_find(pruned, next_in[l]);
        int d = ep_net_find(pruned, dec_in[l]);

        CHECK_EQ_INT(pruned->layers[i].in_channels, 2 * skip);
        CHECK_EQ_INT(upc % 2, 0);
        CHECK_EQ_INT(pruned->layers[d].in_channels, upc / 2 + skip);
    }
}

static void test_no_reconstruct_equals_zeroed(void)
{
    ep_prune_method m;

    for (m = EP_PRUNE_ISING_KERNEL; m <= EP_PRUNE_CONTRIB; m++) {
        ep_net *net = small_unet(2), *zeroed;
        ep_prune_result *res = prune(net, m, 0.5, 0, 3);
        ep_error err;
        float *a, *b;
        int g;

        REQUIRE(ep_net_clone(net, &zeroed, &err) == EP_OK);
        for (g = 0; g < res->n_groups; g++) {
            const ep_prune_group_report *rep = &res->groups[g];
            int units = rep->channels_before;

            /* up convs feed an IDWT: channels are kept in pairs. */
            if (strncmp(rep->producer, "up", 2) == 0)
                units /= 2;
            CHECK_EQ_INT(rep->channels_after,
                         (rep->channels_before / units) *
                             (int)lround(0.5 * units));
            CHECK(rep->err_after == rep->err_before);
            zero_dropped(zeroed, rep);
        }
        a = run_net(zeroed);
        b = run_net(res->net);
        CHECK_MSG(rel_diff(b, a, output_floats(net)) < 1e-5, "method %s",
                  ep_prune_method_name(m));
        check_skip_consistency(res->net);
        CHECK(ep_net_parameters(res->net) < ep_net_parameters(net) / 2);
        CHECK(ep_net_macs_per_second(res->net) <
              0.5 * ep_net_macs_per_second(net));
        free(a);
        free(b);
        ep_net_free(zeroed);
        ep_prune_result_free(res);
        ep_net_free(net);
    }
}

/* Reconstruction: errors drop, and the head's reported error is the
 * error of the whole pruned network's output measured here. */
static void test_reconstruct(void)
{
    ep_net *net = small_unet(1);
    ep_prune_result *res = prune(net, EP_PRUNE_ISING_KERNEL, 0.5, 1, 4);
    float *a = run_net(net), *b = run_net(res->net);
    const ep_prune_group_report *last = &res->groups[res->n_groups - 1];
    int g;

    for (g = 0; g < res->n_groups; g++) {
        CHECK(res->groups[g].err_after <= res->groups[g].err_before + 1e-6);
        CHECK(res->groups[g].temperature > 0.0);
    }
    CHECK(strcmp(last->producer, "dec0.conv0") == 0);
    CHECK_NEAR(last->err_after, rel_diff(b, a, output_floats(net)), 1e-3);
    free(a);
    free(b);
    ep_prune_result_free(res);
    ep_net_free(net);
}

/* input -> A (3 channels, K 5) -> B (2 channels, K 3, the output), with
 * A's third channel the sum of the first two: dropping it loses nothing a
 * refit cannot restore. */
static void test_exact_combination(void)
{
    ep_prune_opts opts;
    ep_prune_result *res;
    ep_net *net;
    ep_layer *a, *b;
    ep_error err;
    ep_rng rng;
    float *y0, *y1;
    int ia, ib, k, j;

    REQUIRE(ep_net_create(&net, &err) == EP_OK);
    net->meta.window = WINDOW;
    net->meta.sampling_rate = 360.0;
    REQUIRE(ep_net_add_input(net, 1, "input", &err) == 0);
    ia = ep_net_add_conv(net, 0, 3, 5, 1, 1, EP_PAD_SAME, "a", &err);
    ib = ep_net_add_conv(net, ia, 2, 3, 1, 1, EP_PAD_SAME, "b", &err);
    REQUIRE(ib > 0 && ep_net_set_output(net, ib, &err) == EP_OK);
    a = &net->layers[ia];
    b = &net->layers[ib];
    ep_rng_seed(&rng, 17);
    for (k = 0; k < 5; k++) {
        a->weight[k] = (float)ep_rng_normal(&rng);
        a->weight[5 + k] = (float)ep_rng_normal(&rng);
        a->weight[10 + k] = a->weight[k] + a->weight[5 + k];
    }
    a->bias[0] = 0.25f;
    a->bias[1] = -0.5f;
    a->bias[2] = a->bias[0] + a->bias[1];
    for (j = 0; j < 2 * 3 * 3; j++)
        b->weight[j] = (float)ep_rng_normal(&rng);
    for (j = 0; j < 2; j++)          /* small weights on channel 2: l1 */
        for (k = 0; k < 3; k++)      /* drops it */
            b->weight[(j * 3 + 2) * 3 + k] *= 0.01f;

    ep_prune_default_opts(&opts);
    opts.method = EP_PRUNE_L1;
    opts.keep = 2.0 / 3.0;
    opts.lambda = 0.0;
    opts.prune_head_input = 1;      /* a feeds the output layer b */
    REQUIRE(ep_prune_run_windows(net, windows, N_WIN, &opts, NULL, NULL,
                                 &res, &err) == EP_OK);
    CHECK_EQ_INT(res->groups[0].channels_after, 2);
    CHECK(res->groups[0].kept[0] == 0 && res->groups[0].kept[1] == 1);
    CHECK(res->groups[0].err_before > 1e-3);
    CHECK(res->groups[0].err_after < 1e-5);
    y0 = run_net(net);
    y1 = run_net(res->net);
    CHECK(rel_diff(y1, y0, output_floats(net)) < 1e-5);
    free(y0);
    free(y1);
    ep_prune_result_free(res);
    ep_net_free(net);
}

/* l1 on the first group: by default the consumer enc0.conv1 with its BN
 * folded, W'[j] = W[j] gamma_j / sqrt(var_j + eps), and n_i = sum_{j,k}
 * |W'[j,i,k]|; with raw_norms the same sum over W itself.  Returns the
 * bit set of the kept channels. */
static unsigned l1_kept(ep_net *net, int raw_norms)
{
    ep_prune_opts opts;
    ep_prune_result *res = NULL;
    ep_error err;
    int ic = ep_net_find(net, "enc0.conv1"), ib = ep_net_find(net, "enc0.bn1");
    const ep_layer *c = &net->layers[ic], *bn = &net->layers[ib];
    double norms[6] = {0};
    unsigned kept_set = 0;
    int i, j, k, rank, kept;

    ep_prune_default_opts(&opts);
    opts.method = EP_PRUNE_L1;
    opts.batch_windows = 6;
    opts.prune_head_input = 1;
    opts.raw_norms = raw_norms;
    REQUIRE(ep_prune_run_windows(net, windows, N_WIN, &opts, NULL, NULL,
                                 &res, &err) == EP_OK);
    REQUIRE(strcmp(res->groups[0].producer, "enc0.conv0") == 0);
    for (j = 0; j < c->channels; j++) {
        double s = raw_norms ? 1.0 : (double)bn->gamma[j] /
                                     sqrt((double)bn->var[j] + bn->eps);

        for (i = 0; i < 6; i++)
            for (k = 0; k < c->kernel; k++)
                norms[i] += fabs(c->weight[(j * 6 + i) * c->kernel + k] * s);
    }
    /* Every kept channel outranks every dropped one. */
    for (i = 0; i < 6; i++) {
        for (rank = 0, j = 0; j < 6; j++)
            rank += norms[j] > norms[i];
        for (kept = 0, k = 0; k < res->groups[0].channels_after; k++)
            kept |= res->groups[0].kept[k] == i;
        CHECK_EQ_INT(kept, rank < 3);
        kept_set |= (unsigned)kept << i;
    }
    ep_prune_result_free(res);
    return kept_set;
}

/* Both norms, on a network whose BN scales make them disagree: output 0
 * of enc0.conv1 has its weights 100 times larger and its BN scale 100
 * times smaller, which leaves the folded network (and its norms) as they
 * were while output 0's row dominates the raw norms. */
static void test_l1_norms(void)
{
    ep_net *net = small_unet(2);
    int ic = ep_net_find(net, "enc0.conv1"), ib = ep_net_find(net, "enc0.bn1");
    ep_layer *c = &net->layers[ic], *bn = &net->layers[ib];
    unsigned folded = l1_kept(net, 0);
    int k;

    for (k = 0; k < 6 * c->kernel; k++)
        c->weight[k] *= 100.0f;
    bn->gamma[0] *= 0.01f;
    CHECK(l1_kept(net, 0) == folded);
    CHECK(l1_kept(net, 1) != folded);
    ep_net_free(net);
}

static void test_seeds(void)
{
    ep_net *net = small_unet(1);
    ep_prune_method methods[2] = {EP_PRUNE_ISING_KERNEL,
                                  EP_PRUNE_ISING_FILTER};
    int mi;

    for (mi = 0; mi < 2; mi++) {
        ep_prune_opts opts;
        ep_prune_result *r1 = prune(net, methods[mi], 0.3, 1, 5);
        ep_prune_result *r2 = prune(net, methods[mi], 0.3, 1, 5);
        unsigned char *b1, *b2;
        size_t n1, n2;
        char *j1, *j2, *j3;
        ep_error err;
        uint64_t seed;
        int differs = 0;

        ep_prune_default_opts(&opts);
        opts.method = methods[mi];
        opts.keep = 0.3;
        opts.seed = 5;
        REQUIRE(ep_prune_masks_json(r1, &opts, &j1, &err) == EP_OK);
        REQUIRE(ep_prune_masks_json(r2, &opts, &j2, &err) == EP_OK);
        CHECK(strcmp(j1, j2) == 0);
        CHECK(strstr(j1, "\"producer\": \"enc0.conv0\"") != NULL);
        REQUIRE(ep_model_save_buffer(r1->net, &b1, &n1, &err) == EP_OK);
        REQUIRE(ep_model_save_buffer(r2->net, &b2, &n2, &err) == EP_OK);
        CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
        for (seed = 6; seed < 10 && !differs; seed++) {
            ep_prune_result *r3 = prune(net, methods[mi], 0.3, 1, seed);

            REQUIRE(ep_prune_masks_json(r3, &opts, &j3, &err) == EP_OK);
            differs = strcmp(j1, j3) != 0;
            free(j3);
            ep_prune_result_free(r3);
        }
        CHECK(differs);
        free(b1);
        free(b2);
        free(j1);
        free(j2);
        ep_prune_result_free(r1);
        ep_prune_result_free(r2);
    }
    ep_net_free(net);
}

typedef struct progress_log {
    int calls, last_group, monotonic, cancel_at;
    double last_fraction;
} progress_log;

static int on_progress(const ep_prune_progress *p, void *ud)
{
    progress_log *log = ud;

    log->calls++;
    log->monotonic &= p->group >= log->last_group &&
                      p->fraction >= log->last_fraction - 1e-12 &&
                      p->fraction <= 1.0 && p->elapsed_s >= 0.0 &&
                      p->round >= 1 && p->round <= p->n_rounds &&
                      p->n_groups == 7;
    log->last_group = p->group;
    log->last_fraction = p->fraction;
    return log->cancel_at > 0 && log->calls >= log->cancel_at;
}

static void test_progress_and_cancel(void)
{
    ep_net *net = small_unet(1);
    ep_prune_opts opts;
    ep_prune_result *res = NULL;
    progress_log log = {0, 0, 1, 0, 0.0};
    ep_error err;

    ep_prune_default_opts(&opts);
    opts.mask_list = 4;
    REQUIRE(ep_prune_run_windows(net, windows, N_WIN, &opts, on_progress,
                                 &log, &res, &err) == EP_OK);
    CHECK(log.monotonic);
    CHECK_EQ_INT(log.last_group, res->n_groups);
    CHECK(log.calls > res->n_groups * 4);
    ep_prune_result_free(res);

    log = (progress_log){0, 0, 1, 20, 0.0};
    res = NULL;
    CHECK_EQ_INT(ep_prune_run_windows(net, windows, N_WIN, &opts,
                                      on_progress, &log, &res, &err),
                 EP_ECANCELED);
    CHECK(res == NULL);
    CHECK_EQ_INT(log.calls, 20);
    CHECK(strstr(err.msg, "cancelled") != NULL);
    ep_net_free(net);
}

/* Each bad option is refused with a message that names it. */
static void expect_refusal(const ep_net *net, const ep_prune_opts *opts,
                           const float *w, int n, const char *word)
{
    ep_prune_result *res = NULL;
    ep_error err;

    memset(&err, 0, sizeof err);
    CHECK_EQ_INT(ep_prune_run_windows(net, w, n, opts, NULL, NULL, &res,
                                      &err), EP_EINVAL);
    CHECK(res == NULL);
    CHECK_MSG(strstr(err.msg, word) != NULL, "'%s' lacks '%s'", err.msg,
              word);
}

static void test_hostile(void)
{
    ep_net *net = small_unet(1);
    ep_prune_opts opts, bad;
    ep_prune_method m;
    ep_calib_segment seg;
    ep_prune_result *res = NULL;
    ep_error err;

    ep_prune_default_opts(&opts);
    bad = opts;
    bad.keep = 0.0;
    expect_refusal(net, &bad, windows, N_WIN, "keep");
    bad.keep = 1.5;
    expect_refusal(net, &bad, windows, N_WIN, "keep");
    bad.keep = NAN;
    expect_refusal(net, &bad, windows, N_WIN, "keep");
    bad = opts;
    bad.mask_list = 0;
    expect_refusal(net, &bad, windows, N_WIN, "mask list");
    bad = opts;
    bad.candidates = 0;
    expect_refusal(net, &bad, windows, N_WIN, "candidates");
    bad = opts;
    bad.coreset_scale = 0.5;
    expect_refusal(net, &bad, windows, N_WIN, "coreset scale");
    bad = opts;
    bad.method = (ep_prune_method)42;
    expect_refusal(net, &bad, windows, N_WIN, "method");
    expect_refusal(net, &opts, windows, 0, "no calibration");
    expect_refusal(net, &opts, NULL, N_WIN, "no calibration");

    CHECK_EQ_INT(ep_prune_run(net, NULL, 0, &opts, NULL, NULL, &res, &err),
                 EP_EINVAL);
    for (m = EP_PRUNE_ISING_KERNEL; m <= EP_PRUNE_CONTRIB; m++) {
        ep_prune_method back = EP_PRUNE_CONTRIB - m;

        CHECK_EQ_INT(ep_prune_method_from_name(ep_prune_method_name(m),
                                               &back), EP_OK);
        CHECK_EQ_INT(back, m);
    }
    CHECK_EQ_INT(ep_prune_method_from_name("best", &m), EP_EINVAL);
    CHECK(strcmp(ep_prune_method_name(EP_PRUNE_ISING_FILTER),
                 "ising-filter") == 0);
    memset(&seg, 0, sizeof seg);
    seg.mv = windows;
    seg.fs = 360.0;
    CHECK_EQ_INT(ep_prune_run(net, &seg, 1, &opts, NULL, NULL, &res, &err),
                 EP_EINVAL);
    CHECK(strstr(err.msg, "empty") != NULL);
    ep_net_free(net);
}

/* A graph that is not a U-Net: a strided consumer, a dilated consumer
 * reading the concatenation of two groups (each group's importance then
 * sees only its own share), and an IDWT back to the input rate.  Without
 * reconstruction, the pruned network must still equal the original with
 * the dropped channels zeroed. */
static ep_net *branchy_net(void)
{
    ep_net *net;
    ep_error err;
    ep_rng rng;
    int in, p1, p2, p3, r1, r2, r3, cat, q, up, head, pair[2], i;
    size_t k;

    REQUIRE(ep_net_create(&net, &err) == EP_OK);
    net->meta.window = WINDOW;
    net->meta.sampling_rate = 360.0;
    in = ep_net_add_input(net, 1, "input", &err);
    p1 = ep_net_add_conv(net, in, 6, 3, 1, 1, EP_PAD_SAME, "p1", &err);
    r1 = ep_net_add_relu(net, p1, "r1", &err);
    p2 = ep_net_add_conv(net, r1, 4, 3, 2, 1, EP_PAD_SAME, "p2", &err);
    r2 = ep_net_add_relu(net, p2, "r2", &err);
    p3 = ep_net_add_conv(net, in, 5, 5, 2, 1, EP_PAD_SAME, "p3", &err);
    r3 = ep_net_add_relu(net, p3, "r3", &err);
    pair[0] = r2;
    pair[1] = r3;
    cat = ep_net_add_concat(net, pair, 2, "cat", &err);
    q = ep_net_add_conv(net, cat, 6, 3, 1, 2, EP_PAD_SAME, "q", &err);
    up = ep_net_add_idwt(net, q, EP_WAVELET_DB2, "up", &err);
    head = ep_net_add_conv(net, up, 2, 1, 1, 1, 0, "head", &err);
    REQUIRE(head > 0 && ep_net_set_output(net, head, &err) == EP_OK);
    ep_rng_seed(&rng, 23);
    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];

        for (k = 0; l->op == EP_OP_CONV &&
                    k < (size_t)l->channels * l->in_channels * l->kernel;
             k++)
            l->weight[k] = (float)(ep_rng_normal(&rng) /
                                   sqrt((double)l->in_channels * l->kernel));
        for (k = 0; l->op == EP_OP_CONV && k < (size_t)l->channels; k++)
            l->bias[k] = (float)(0.1 * ep_rng_normal(&rng));
    }
    return net;
}

static void test_general_graph(void)
{
    ep_net *net = branchy_net(), *zeroed;
    ep_prune_result *res = prune(net, EP_PRUNE_ISING_KERNEL, 0.5, 0, 2);
    ep_error err;
    float *a, *b;
    int g, q;

    /* Groups p1, p2, p3, q; the head is never one.  q feeds the IDWT, so
     * its 6 channels are 3 pairs, of which round(1.5) = 2 stay. */
    REQUIRE(res->n_groups == 4);
    CHECK(strcmp(res->groups[3].producer, "q") == 0);
    CHECK_EQ_INT(res->groups[3].channels_after, 4);
    CHECK(res->groups[3].kept[0] + 3 == res->groups[3].kept[2] &&
          res->groups[3].kept[1] + 3 == res->groups[3].kept[3]);
    CHECK_EQ_INT(res->net->layers[res->net->output].in_channels, 2);
    REQUIRE(ep_net_clone(net, &zeroed, &err) == EP_OK);
    for (g = 0; g < res->n_groups; g++)
        zero_dropped(zeroed, &res->groups[g]);
    a = run_net(zeroed);
    b = run_net(res->net);
    CHECK(rel_diff(b, a, output_floats(net)) < 1e-5);
    q = ep_net_find(res->net, "q");
    CHECK_EQ_INT(res->net->layers[q].in_channels, 2 + 3);
    free(a);
    free(b);
    ep_prune_result_free(res);

    /* With the refit, every group's error drops. */
    res = prune(net, EP_PRUNE_ISING_FILTER, 0.5, 1, 2);
    for (g = 0; g < res->n_groups; g++)
        CHECK(res->groups[g].err_after < res->groups[g].err_before);
    ep_prune_result_free(res);
    ep_net_free(zeroed);
    ep_net_free(net);
}

/* ECG segments: 60 s of record 208 with its beats, and a segment shorter
 * than one window. */
static void test_segments(void)
{
    const char *dir = getenv("EXCERPT");
    ep_net *net = small_unet(1);
    ep_prune_opts opts;
    ep_prune_result *r1 = NULL, *r2 = NULL;
    ep_annotations *ann;
    ep_calib_segment seg;
    ep_ref_beat *beats;
    ep_record *rec;
    ep_error err;
    char path[512], *j1, *j2;
    float *mv;
    size_t nb;

    snprintf(path, sizeof path, "%s/208", dir);
    REQUIRE(ep_wfdb_read_record(path, &rec, &err) == EP_OK);
    mv = malloc((size_t)rec->n_samples * sizeof *mv);
    REQUIRE(mv != NULL);
    REQUIRE(ep_wfdb_signal_physical(rec, 0, mv, &err) == EP_OK);
    REQUIRE(ep_wfdb_read_annotations(path, "atr", &ann, &err) == EP_OK);
    REQUIRE(ep_score_reference(ann, 0, &beats, &nb, &err) == EP_OK);
    while (nb > 0 && beats[nb - 1].sample >= 60 * 360)
        nb--;
    seg.mv = mv;
    seg.n = 60 * 360;
    seg.fs = rec->sampling_rate;
    seg.beats = beats;
    seg.n_beats = nb;

    ep_prune_default_opts(&opts);
    opts.max_windows = 40;
    CHECK_EQ_INT(ep_prune_run(net, &seg, 1, &opts, NULL, NULL, &r1, &err),
                 EP_OK);
    CHECK_EQ_INT(ep_prune_run(net, &seg, 1, &opts, NULL, NULL, &r2, &err),
                 EP_OK);
    REQUIRE(r1 != NULL && r2 != NULL);
    REQUIRE(ep_prune_masks_json(r1, &opts, &j1, &err) == EP_OK);
    REQUIRE(ep_prune_masks_json(r2, &opts, &j2, &err) == EP_OK);
    CHECK(strcmp(j1, j2) == 0);
    CHECK(r1->groups[0].channels_after == 3);
    ep_prune_result_free(r2);

    /* 200 samples at 360 Hz against 256-sample windows. */
    seg.n = 200;
    CHECK_EQ_INT(ep_prune_run(net, &seg, 1, &opts, NULL, NULL, &r2, &err),
                 EP_EINVAL);
    CHECK(r2 == NULL);
    CHECK(strstr(err.msg, "shorter than one model window") != NULL);
    free(j1);
    free(j2);
    ep_prune_result_free(r1);
    free(beats);
    ep_wfdb_free_annotations(ann);
    ep_wfdb_free_record(rec);
    free(mv);
    ep_net_free(net);
}

/* net pruned with the default options, refit_drifted on or off. */
static ep_prune_result *prune_default(const ep_net *net, int refit_drifted)
{
    ep_prune_opts opts;
    ep_prune_result *res = NULL;
    ep_error err;

    ep_prune_default_opts(&opts);
    opts.batch_windows = 6;
    CHECK_EQ_INT(opts.prune_head_input, 0);
    CHECK_EQ_INT(opts.refit_drifted, 0);
    opts.refit_drifted = refit_drifted;
    REQUIRE(ep_prune_run_windows(net, windows, N_WIN, &opts, NULL, NULL,
                                 &res, &err) == EP_OK);
    return res;
}

/* Index of the one group that kept every channel, which must be the one
 * the classifier reads (dec0.conv1's output feeds the head). */
static int whole_group(const ep_prune_result *res)
{
    int g, whole = -1, n = 0;

    for (g = 0; g < res->n_groups; g++) {
        const ep_prune_group_report *rep = &res->groups[g];

        if (rep->channels_after < rep->channels_before)
            continue;
        n++;
        whole = g;
        CHECK_MSG(strcmp(rep->producer, "dec0.conv0") == 0, "%s kept whole",
                  rep->producer);
    }
    CHECK_EQ_INT(n, 1);
    REQUIRE(whole >= 0);
    return whole;
}

/* By default the group whose consumer is the classifier keeps every
 * channel; every other group is pruned as asked.  Its consumer's inputs
 * moved with the groups pruned before it, so it is refitted: the
 * reported error after the refit is the whole network's output error
 * measured here, and lower than without that refit, where the group is
 * left alone (errors 0, as the spec has it). */
static void test_head_input_kept(void)
{
    ep_net *net = small_unet(1);
    ep_prune_result *on = prune_default(net, 1);
    ep_prune_result *off = prune_default(net, 0);
    const ep_prune_group_report *r_on = &on->groups[whole_group(on)];
    const ep_prune_group_report *r_off = &off->groups[whole_group(off)];
    float *a = run_net(net), *b_on = run_net(on->net);
    float *b_off = run_net(off->net);
    double e_on = rel_diff(b_on, a, output_floats(net));
    double e_off = rel_diff(b_off, a, output_floats(net));

    CHECK(r_off->err_before == 0.0 && r_off->err_after == 0.0);
    CHECK(r_on->err_before > 0.0);
    CHECK(r_on->err_after < r_on->err_before);
    CHECK_NEAR(r_on->err_before, e_off, 1e-3);
    CHECK_NEAR(r_on->err_after, e_on, 1e-3);
    CHECK_MSG(e_on < e_off, "output error %g with the refit, %g without",
              e_on, e_off);
    CHECK(ep_net_macs_per_second(on->net) < ep_net_macs_per_second(net));
    CHECK_EQ_INT((int)ep_net_parameters(on->net),
                 (int)ep_net_parameters(off->net));
    free(a);
    free(b_on);
    free(b_off);
    ep_prune_result_free(on);
    ep_prune_result_free(off);
    ep_net_free(net);
}

/* ---- distillation ------------------------------------------------------- */

/* Mean per-sample KL divergence of student from teacher on windows
 * first, first + step, ... below n, from the raw network outputs, softmax
 * in double. */
static double naive_divergence(const ep_net *student, const ep_net *teacher,
                               int first, int step, int n)
{
    float *ys = run_net(student), *yt = run_net(teacher);
    int classes = teacher->layers[teacher->output].channels, w, c, t;
    int count = 0;
    double sum = 0.0;

    for (w = first; w < n; w += step, count++)
        for (t = 0; t < WINDOW; t++) {
            const float *s = ys + (size_t)w * classes * WINDOW + t;
            const float *q = yt + (size_t)w * classes * WINDOW + t;
            double zs = 0.0, zt = 0.0;

            for (c = 0; c < classes; c++) {
                zs += exp(s[c * WINDOW]);
                zt += exp(q[c * WINDOW]);
            }
            for (c = 0; c < classes; c++) {
                double pt = exp(q[c * WINDOW]) / zt;

                sum += pt * (log(pt) - (s[c * WINDOW] - log(zs)));
            }
        }
    free(ys);
    free(yt);
    return sum / ((double)count * WINDOW);
}

/* The held-out windows of a distillation on all N_WIN: every 4th. */
static double held_out_divergence(const ep_net *student,
                                  const ep_net *teacher)
{
    return naive_divergence(student, teacher, 3, 4, N_WIN);
}

static int cancel_at_third(const ep_distill_progress *p, void *ud)
{
    int *calls = ud;

    (*calls)++;
    return p->step == 3;
}

static void expect_distill_refusal(ep_net *student, const ep_net *teacher,
                                   int length, const ep_distill_opts *o,
                                   const char *word)
{
    ep_error err;

    memset(&err, 0, sizeof err);
    CHECK_EQ_INT(ep_distill_run(student, teacher, windows, N_WIN, length, o,
                                NULL, NULL, NULL, &err), EP_EINVAL);
    CHECK_MSG(strstr(err.msg, word) != NULL, "'%s' lacks '%s'", err.msg,
              word);
}

static void test_distill(void)
{
    ep_net *teacher = small_unet(2), *again, *other;
    ep_prune_result *res = prune(teacher, EP_PRUNE_ISING_KERNEL, 0.5, 1, 1);
    ep_distill_opts o;
    ep_distill_report rep;
    ep_unet_config cfg;
    float *y1, *y2;
    ep_error err;
    double kl0;
    int calls = 0;

    /* The reported divergences are the ones computed here on the held-out
     * windows (every 4th), and fall; the step kept is a checkpoint. */
    REQUIRE(ep_net_clone(res->net, &again, &err) == EP_OK);
    kl0 = held_out_divergence(again, teacher);
    ep_distill_default_opts(&o);
    o.steps = 40;
    o.batch = 4;
    o.lr = 3e-3;
    CHECK_EQ_INT(ep_distill_run(res->net, teacher, windows, N_WIN, WINDOW,
                                &o, NULL, NULL, NULL, &err), EP_OK);
    memset(&rep, 0, sizeof rep);
    CHECK_EQ_INT(ep_distill_run(again, teacher, windows, N_WIN, WINDOW, &o,
                                NULL, NULL, &rep, &err), EP_OK);
    CHECK_EQ_INT(rep.validation_windows, N_WIN / 4);
    CHECK_EQ_INT(rep.held_out, 1);
    CHECK_NEAR(rep.kl_before, kl0, 1e-4);
    CHECK(rep.kl_after < 0.8 * rep.kl_before);
    CHECK(rep.best_step > 0 && rep.best_step % 4 == 0);
    CHECK_NEAR(rep.kl_after, held_out_divergence(again, teacher), 1e-4);
    CHECK(rep.seconds > 0.0);

    /* Same inputs and seed: the same network. */
    y1 = run_net(res->net);
    y2 = run_net(again);
    CHECK(memcmp(y1, y2, output_floats(again) * sizeof *y1) == 0);
    free(y1);
    free(y2);
    ep_net_free(again);

    /* A rate that makes things worse: the student keeps its weights. */
    REQUIRE(ep_net_clone(res->net, &again, &err) == EP_OK);
    y1 = run_net(again);
    o.lr = 5.0;
    CHECK_EQ_INT(ep_distill_run(again, teacher, windows, N_WIN, WINDOW, &o,
                                NULL, NULL, &rep, &err), EP_OK);
    CHECK_EQ_INT(rep.best_step, 0);
    CHECK(rep.kl_after == rep.kl_before);
    y2 = run_net(again);
    CHECK(memcmp(y1, y2, output_floats(again) * sizeof *y1) == 0);
    free(y1);
    free(y2);
    o.lr = 3e-3;

    /* Fewer than 8 windows: all train and validate. */
    CHECK_EQ_INT(ep_distill_run(again, teacher, windows, 5, WINDOW, &o,
                                NULL, NULL, &rep, &err), EP_OK);
    CHECK_EQ_INT(rep.validation_windows, 5);
    CHECK_EQ_INT(rep.held_out, 0);
    CHECK_NEAR(rep.kl_after, naive_divergence(again, teacher, 0, 1, 5),
               1e-4);
    ep_net_free(again);

    /* Cancelled at step 3: EP_ECANCELED after three calls. */
    REQUIRE(ep_net_clone(res->net, &again, &err) == EP_OK);
    CHECK(held_out_divergence(again, teacher) > 0.0);
    CHECK_EQ_INT(ep_distill_run(again, teacher, windows, N_WIN, WINDOW, &o,
                                cancel_at_third, &calls, NULL, &err),
                 EP_ECANCELED);
    CHECK_EQ_INT(calls, 3);
    CHECK(strstr(err.msg, "cancelled") != NULL);

    /* Bad arguments, each named. */
    o.steps = 0;
    expect_distill_refusal(again, teacher, WINDOW, &o, "steps");
    o.steps = 2;
    o.lr = -1.0;
    expect_distill_refusal(again, teacher, WINDOW, &o, "learning rate");
    o.lr = 1e-3;
    expect_distill_refusal(again, teacher, WINDOW - 2, &o, "multiple");
    ep_unet_default_config(&cfg);
    cfg.depth = 3;
    cfg.widths[0] = cfg.widths[1] = cfg.widths[2] = 4;
    cfg.kernel = 3;
    cfg.meta.window = WINDOW;
    cfg.meta.n_classes = 3;
    REQUIRE(ep_unet_build(&cfg, 1, &other, &err) == EP_OK);
    expect_distill_refusal(again, other, WINDOW, &o, "output channels");
    ep_net_free(other);
    ep_net_free(again);
    ep_prune_result_free(res);
    ep_net_free(teacher);
}

/* Distillation inside a prune: reported, in the masks, and refused out of
 * range. */
static void test_prune_distill(void)
{
    ep_net *net = small_unet(1);
    ep_prune_opts opts;
    ep_prune_result *res = NULL;
    ep_error err;
    char *json = NULL;

    ep_prune_default_opts(&opts);
    opts.mask_list = 4;
    opts.keep = 0.5;
    opts.distill_steps = 30;
    REQUIRE(ep_prune_run_windows(net, windows, N_WIN, &opts, NULL, NULL,
                                 &res, &err) == EP_OK);
    CHECK(res->distill.best_step > 0);
    CHECK(res->distill.kl_after < res->distill.kl_before);
    CHECK_NEAR(res->distill.kl_after, held_out_divergence(res->net, net),
               1e-4);
    REQUIRE(ep_prune_masks_json(res, &opts, &json, &err) == EP_OK);
    CHECK(strstr(json, "\"distill_steps\": 30") != NULL);
    free(json);
    ep_prune_result_free(res);
    opts.distill_steps = -1;
    expect_refusal(net, &opts, windows, N_WIN, "distillation");
    ep_net_free(net);
}

/* Beat counts over segments, by hand: 2 N, 1 S, 3 V and no F in two
 * segments (a third without beats); none at all says "not annotated". */
static void test_calib_counts(void)
{
    ep_ref_beat a[3] = {{10, EP_AAMI_N}, {20, EP_AAMI_V}, {30, EP_AAMI_S}};
    ep_ref_beat b[3] = {{5, EP_AAMI_V}, {9, EP_AAMI_N}, {12, EP_AAMI_V}};
    ep_calib_segment segs[3] = {{.beats = a, .n_beats = 3},
                                {.beats = NULL, .n_beats = 0},
                                {.beats = b, .n_beats = 3}};
    size_t counts[EP_AAMI_COUNT] = {0};
    char buf[320];

    CHECK_EQ_INT(ep_prune_calib_counts(segs, 3, counts), 1);
    CHECK(counts[EP_AAMI_N] == 2 && counts[EP_AAMI_S] == 1 &&
          counts[EP_AAMI_V] == 3 && counts[EP_AAMI_F] == 0 &&
          counts[EP_AAMI_Q] == 0);
    CHECK_EQ_INT(ep_prune_calib_warning(counts, 1, buf, sizeof buf), 1);
    CHECK_MSG(strstr(buf, "fewer than 5 beats of S (1), V (3), F (0);"),
              "%s", buf);
    counts[EP_AAMI_S] = counts[EP_AAMI_V] = counts[EP_AAMI_F] = 5;
    CHECK_EQ_INT(ep_prune_calib_warning(counts, 1, buf, sizeof buf), 0);
    CHECK(buf[0] == '\0');
    memset(counts, 0, sizeof counts);
    CHECK_EQ_INT(ep_prune_calib_counts(segs + 1, 1, counts), 0);
    CHECK_EQ_INT(ep_prune_calib_warning(counts, 0, buf, sizeof buf), 1);
    CHECK(strstr(buf, "no beat annotations") != NULL);
}

int main(void)
{
    load_windows();
    test_calib_counts();
    test_keep_one();
    test_no_reconstruct_equals_zeroed();
    test_reconstruct();
    test_exact_combination();
    test_l1_norms();
    test_seeds();
    test_progress_and_cancel();
    test_hostile();
    test_general_graph();
    test_segments();
    test_head_input_kept();
    test_distill();
    test_prune_distill();
    return check_exit();
}
