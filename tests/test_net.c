/*
 * test_net.c - network graphs: U-Net shapes and sizes against figures
 * computed here from the configuration, shape-inference errors, BN
 * folding preserving outputs, the channel map of producers, and channel
 * removal equal to zeroing those channels in the original network.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ecgprune/ep_net.h"
#include "ecgprune/ep_plan.h"
#include "ecgprune/ep_rng.h"

static ep_net *build_unet(int depth, const int *widths, int kernel,
                          int convs, uint64_t seed)
{
    ep_unet_config cfg;
    ep_net *net;
    ep_error err;
    int l;

    ep_unet_default_config(&cfg);
    cfg.depth = depth;
    for (l = 0; l < depth; l++)
        cfg.widths[l] = widths[l];
    cfg.kernel = kernel;
    cfg.convs_per_level = convs;
    REQUIRE(ep_unet_build(&cfg, seed, &net, &err) == EP_OK);
    return net;
}

/* Give every BN non-trivial statistics and affine terms and every conv a
 * bias, so that folding and pruning have something to get wrong. */
static void randomise_net(ep_net *net, uint64_t seed)
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

static void test_unet_shapes(void)
{
    ep_unet_config cfg;
    ep_net *net;
    ep_error err;
    int64_t params = 0;
    double macs = 0.0;
    int l, k, idx, in;

    ep_unet_default_config(&cfg);
    REQUIRE(ep_unet_build(&cfg, 1, &net, &err) == EP_OK);
    CHECK_EQ_INT(cfg.depth, 4);
    CHECK_EQ_INT(cfg.meta.window, 2048);
    CHECK_EQ_INT(ep_net_length_multiple(net), 8);
    CHECK_EQ_INT(net->layers[net->output].channels, 6);
    CHECK(strcmp(net->layers[net->output].name, "head") == 0);
    CHECK(strcmp(net->meta.classes[3], "V") == 0);

    /* Encoder: level l reads 1 channel (l = 0) or the DWT's 2*w[l-1]. */
    for (l = 0; l < 4; l++) {
        char name[64];
        int rate = 1 << l;

        in = l == 0 ? 1 : 2 * cfg.widths[l - 1];
        for (k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "enc%d.conv%d", l, k);
            idx = ep_net_find(net, name);
            REQUIRE(idx >= 0);
            CHECK_EQ_INT(net->layers[idx].in_channels, in);
            CHECK_EQ_INT(net->layers[idx].channels, cfg.widths[l]);
            CHECK_EQ_INT(net->layers[idx].rate_div, rate);
            params += (int64_t)cfg.widths[l] * in * 9 + cfg.widths[l] +
                      4 * cfg.widths[l];
            macs += (double)cfg.widths[l] * in * 9 * 360.0 / rate;
            in = cfg.widths[l];
        }
        if (l < 3) {
            snprintf(name, sizeof name, "dwt%d", l);
            idx = ep_net_find(net, name);
            REQUIRE(idx >= 0);
            CHECK_EQ_INT(net->layers[idx].channels, 2 * cfg.widths[l]);
            CHECK_EQ_INT(net->layers[idx].rate_div, 2 * rate);
        }
    }

    /* Decoder: up conv from the coarser level, IDWT, concat with skip. */
    for (l = 2; l >= 0; l--) {
        char name[64];
        int w = cfg.widths[l];

        snprintf(name, sizeof name, "up%d", l);
        idx = ep_net_find(net, name);
        REQUIRE(idx >= 0);
        CHECK_EQ_INT(net->layers[idx].channels, 2 * w);
        CHECK_EQ_INT(net->layers[idx].rate_div, 2 << l);
        params += (int64_t)2 * w * cfg.widths[l + 1] * 9 + 2 * w;
        macs += 2.0 * w * cfg.widths[l + 1] * 9 * 360.0 / (2 << l);
        snprintf(name, sizeof name, "cat%d", l);
        idx = ep_net_find(net, name);
        REQUIRE(idx >= 0);
        CHECK_EQ_INT(net->layers[idx].channels, 2 * w);
        CHECK_EQ_INT(net->layers[idx].rate_div, 1 << l);
        in = 2 * w;
        for (k = 0; k < 2; k++) {
            params += (int64_t)w * in * 9 + w + 4 * w;
            macs += (double)w * in * 9 * 360.0 / (1 << l);
            in = w;
        }
    }
    params += 16 * 6 + 6;
    macs += 16.0 * 6 * 360.0;
    CHECK_EQ_INT(ep_net_parameters(net), params);
    CHECK_NEAR(ep_net_macs_per_second(net), macs, 1e-12);
    ep_net_free(net);
}

static void test_shape_errors(void)
{
    ep_net *net;
    ep_error err;
    int in, c, d, pair[2];

    REQUIRE(ep_net_create(&net, &err) == EP_OK);
    in = ep_net_add_input(net, 3, "x", &err);
    REQUIRE(in == 0);
    CHECK(ep_net_add_input(net, 1, "x", &err) == EP_EINVAL);
    CHECK(ep_net_add_conv(net, 7, 4, 3, 1, 1, EP_PAD_SAME, "c", &err) ==
          EP_EINVAL);
    CHECK(ep_net_add_conv(net, in, 0, 3, 1, 1, EP_PAD_SAME, "c", &err) ==
          EP_EINVAL);
    /* Valid padding would shorten the signal: rejected for a net. */
    CHECK(ep_net_add_conv(net, in, 4, 5, 1, 1, 0, "c", &err) == EP_EINVAL);
    c = ep_net_add_conv(net, in, 3, 5, 1, 1, 2, "c", &err);
    REQUIRE(c >= 0);
    CHECK(ep_net_add_idwt(net, c, EP_WAVELET_HAAR, "i", &err) == EP_EINVAL);
    d = ep_net_add_dwt(net, c, EP_WAVELET_DB4, "d", &err);
    REQUIRE(d >= 0);
    CHECK_EQ_INT(net->layers[d].channels, 6);
    CHECK_EQ_INT(net->layers[d].rate_div, 2);
    pair[0] = c;
    pair[1] = d;
    CHECK(ep_net_add_concat(net, pair, 2, "cat", &err) == EP_EINVAL);
    CHECK(ep_net_set_output(net, d, &err) == EP_EINVAL);
    CHECK(ep_net_add_conv(net, d, 5, 3, 2, 1, EP_PAD_SAME, "s", &err) >= 0);
    CHECK_EQ_INT(ep_net_length_multiple(net), 4);
    CHECK_EQ_INT(ep_net_find(net, "nothing"), EP_ENOTFOUND);
    ep_net_free(net);
}

/* KEEP-plan output of net for input x. */
static float *run_keep(const ep_net *net, int batch, int len, const float *x)
{
    ep_plan *plan;
    ep_error err;
    int ch, out_len;
    const float *y;
    float *copy;

    REQUIRE(ep_plan_create(net, batch, len, EP_PLAN_KEEP, &plan, &err) ==
            EP_OK);
    REQUIRE(ep_plan_run(plan, x, &err) == EP_OK);
    y = ep_plan_output(plan, -1, &ch, &out_len);
    copy = malloc((size_t)batch * ch * out_len * sizeof *copy);
    REQUIRE(copy != NULL);
    memcpy(copy, y, (size_t)batch * ch * out_len * sizeof *copy);
    ep_plan_free(plan);
    return copy;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    size_t i;

    for (i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > worst)
            worst = fabs((double)a[i] - b[i]);
    return worst;
}

static void test_fold_bn(void)
{
    static const int widths[] = {4, 6, 8};
    enum { B = 2, L = 64 };
    ep_net *net = build_unet(3, widths, 5, 2, 7), *folded;
    ep_error err;
    float x[B * L], *before, *after;
    ep_rng rng;
    int i;

    randomise_net(net, 8);
    ep_rng_seed(&rng, 9);
    for (i = 0; i < B * L; i++)
        x[i] = (float)ep_rng_normal(&rng);
    REQUIRE(ep_net_clone(net, &folded, &err) == EP_OK);
    REQUIRE(ep_net_fold_bn(folded, &err) == EP_OK);
    for (i = 0; i < folded->n_layers; i++)
        CHECK(folded->layers[i].op != EP_OP_BN);
    CHECK_EQ_INT(folded->n_layers, net->n_layers - 10);
    CHECK(strcmp(folded->layers[folded->output].name, "head") == 0);
    CHECK_EQ_INT(ep_net_parameters(folded),
                 ep_net_parameters(net) - 4 * (2 * (4 + 6 + 8) + 2 * (4 + 6)));
    before = run_keep(net, B, L, x);
    after = run_keep(folded, B, L, x);
    CHECK_MSG(max_abs_diff(before, after, (size_t)B * 6 * L) < 1e-4,
              "fold changed outputs by %g",
              max_abs_diff(before, after, (size_t)B * 6 * L));
    free(before);
    free(after);
    ep_net_free(folded);
    ep_net_free(net);
}

/* The link (producer p -> consumer input c) is listed for consumer k. */
static int has_link(const ep_consumer *k, int p, int c)
{
    int i;

    for (i = 0; i < k->n_links; i++)
        if (k->links[i].producer_ch == p && k->links[i].consumer_ch == c)
            return 1;
    return 0;
}

static void test_consumers(void)
{
    static const int widths[] = {4, 6, 8};
    ep_net *net = build_unet(3, widths, 3, 2, 1);
    ep_consumer *cons;
    ep_error err;
    int n, c, tie[8];
    int enc0 = ep_net_find(net, "enc0.conv1");
    int up0 = ep_net_find(net, "up0");

    /* enc0's last conv feeds dwt0 -> enc1.conv0 (c -> c and c + 4) and
     * cat0 = [idwt0 (4), skip (4)] -> dec0.conv0 (c -> 4 + c). */
    REQUIRE(ep_net_consumers(net, enc0, &cons, &n, &err) == EP_OK);
    REQUIRE(n == 2);
    CHECK_EQ_INT(cons[0].layer, ep_net_find(net, "enc1.conv0"));
    CHECK_EQ_INT(cons[1].layer, ep_net_find(net, "dec0.conv0"));
    CHECK_EQ_INT(cons[0].n_links, 8);
    CHECK_EQ_INT(cons[1].n_links, 4);
    for (c = 0; c < 4; c++) {
        CHECK(has_link(&cons[0], c, c));
        CHECK(has_link(&cons[0], c, c + 4));
        CHECK(has_link(&cons[1], c, 4 + c));
    }
    ep_net_consumers_free(cons, n);

    /* up0 (8 channels) -> idwt0: channels c and c + 4 both become idwt
     * channel c, which is dec0.conv0's input c. */
    REQUIRE(ep_net_consumers(net, up0, &cons, &n, &err) == EP_OK);
    REQUIRE(n == 1);
    CHECK_EQ_INT(cons[0].layer, ep_net_find(net, "dec0.conv0"));
    CHECK_EQ_INT(cons[0].n_links, 8);
    for (c = 0; c < 4; c++) {
        CHECK(has_link(&cons[0], c, c));
        CHECK(has_link(&cons[0], c + 4, c));
    }
    ep_net_consumers_free(cons, n);
    REQUIRE(ep_net_tied_channels(net, up0, tie, &err) == EP_OK);
    for (c = 0; c < 8; c++)
        CHECK_EQ_INT(tie[c], c % 4);
    REQUIRE(ep_net_tied_channels(net, enc0, tie, &err) == EP_OK);
    for (c = 0; c < 4; c++)
        CHECK_EQ_INT(tie[c], c);

    CHECK(ep_net_consumers(net, ep_net_find(net, "head"), &cons, &n, &err) ==
          EP_EINVAL);
    CHECK(ep_net_consumers(net, ep_net_find(net, "enc0.bn0"), &cons, &n,
                           &err) == EP_EINVAL);
    ep_net_free(net);
}

/*
 * Reference for removal: in a copy of the original, zero the dropped
 * producer channels' weights and bias and the following BN's shift terms
 * (beta and running mean), so that those channels are exactly zero after
 * BN and ReLU and contribute nothing downstream.
 */
static void zero_channels(ep_net *net, int layer, const int *keep,
                          int n_keep)
{
    ep_layer *p = &net->layers[layer];
    size_t row = (size_t)p->in_channels * p->kernel;
    int c, i, j, kept;

    for (c = 0; c < p->channels; c++) {
        for (kept = 0, j = 0; j < n_keep; j++)
            kept |= keep[j] == c;
        if (kept)
            continue;
        memset(p->weight + c * row, 0, row * sizeof(float));
        p->bias[c] = 0.0f;
        for (i = layer + 1; i < net->n_layers; i++)
            if (net->layers[i].op == EP_OP_BN &&
                net->layers[i].inputs[0] == layer) {
                net->layers[i].beta[c] = 0.0f;
                net->layers[i].mean[c] = 0.0f;
            }
    }
}

static void check_keep(const char *producer, const int *keep, int n_keep,
                       int expect_channels)
{
    static const int widths[] = {4, 6, 8};
    enum { B = 3, L = 32 };
    ep_net *net = build_unet(3, widths, 3, 2, 21), *pruned, *zeroed;
    ep_error err;
    float x[B * L], *ref, *got;
    ep_rng rng;
    int i, layer;
    double diff;

    randomise_net(net, 22);
    layer = ep_net_find(net, producer);
    REQUIRE(layer >= 0);
    REQUIRE(ep_net_clone(net, &pruned, &err) == EP_OK);
    REQUIRE(ep_net_clone(net, &zeroed, &err) == EP_OK);
    REQUIRE(ep_net_keep_channels(pruned, layer, keep, n_keep, &err) ==
            EP_OK);
    zero_channels(zeroed, layer, keep, n_keep);
    CHECK_EQ_INT(pruned->layers[layer].channels, expect_channels);
    CHECK(ep_net_parameters(pruned) < ep_net_parameters(net));

    ep_rng_seed(&rng, 23);
    for (i = 0; i < B * L; i++)
        x[i] = (float)ep_rng_normal(&rng);
    ref = run_keep(zeroed, B, L, x);
    got = run_keep(pruned, B, L, x);
    diff = max_abs_diff(ref, got, (size_t)B * 6 * L);
    CHECK_MSG(diff < 1e-4, "%s: pruned vs zeroed differ by %g", producer,
              diff);
    free(ref);
    free(got);
    ep_net_free(pruned);
    ep_net_free(zeroed);
    ep_net_free(net);
}

static void test_keep_channels(void)
{
    static const int widths[] = {4, 6, 8};
    static const int keep_enc0[] = {0, 2, 3};
    static const int keep_enc1[] = {1, 4};
    static const int keep_up0[] = {1, 2, 5, 6};
    static const int keep_up1[] = {0, 6};
    static const int bad_up0[] = {1, 2, 5};
    static const int unsorted[] = {2, 1};
    ep_net *net;
    ep_error err;
    int enc0, dwt0, enc1, cat0, dec0;

    /* The skip producer: both consumers lose the same channel. */
    check_keep("enc0.conv1", keep_enc0, 3, 3);
    check_keep("enc1.conv1", keep_enc1, 2, 2);
    check_keep("enc0.conv0", keep_enc0, 3, 3);
    check_keep("up0", keep_up0, 4, 4);
    check_keep("up1", keep_up1, 2, 2);

    net = build_unet(3, widths, 3, 2, 4);
    enc0 = ep_net_find(net, "enc0.conv1");
    REQUIRE(ep_net_keep_channels(net, enc0, keep_enc0, 3, &err) == EP_OK);
    dwt0 = ep_net_find(net, "dwt0");
    enc1 = ep_net_find(net, "enc1.conv0");
    cat0 = ep_net_find(net, "cat0");
    dec0 = ep_net_find(net, "dec0.conv0");
    CHECK_EQ_INT(net->layers[ep_net_find(net, "enc0.bn1")].channels, 3);
    CHECK_EQ_INT(net->layers[dwt0].channels, 6);
    CHECK_EQ_INT(net->layers[enc1].in_channels, 6);
    CHECK_EQ_INT(net->layers[cat0].channels, 7);
    CHECK_EQ_INT(net->layers[dec0].in_channels, 7);
    CHECK(ep_net_keep_channels(net, ep_net_find(net, "up0"), bad_up0, 3,
                               &err) == EP_EINVAL);
    CHECK(strstr(err.msg, "idwt0") != NULL);
    CHECK(ep_net_keep_channels(net, enc0, unsorted, 2, &err) == EP_EINVAL);
    CHECK(ep_net_keep_channels(net, ep_net_find(net, "head"), keep_enc0, 3,
                               &err) == EP_EINVAL);
    CHECK_EQ_INT(net->layers[ep_net_find(net, "up0")].channels, 8);
    ep_net_free(net);
}

static void test_names(void)
{
    ep_op op;
    ep_wavelet w;

    CHECK(ep_op_from_name("idwt", &op) == EP_OK && op == EP_OP_IDWT);
    CHECK(strcmp(ep_op_name(EP_OP_CONCAT), "concat") == 0);
    CHECK(ep_op_from_name("pool", &op) == EP_ENOTFOUND);
    CHECK(ep_wavelet_from_name("db4", &w) == EP_OK && w == EP_WAVELET_DB4);
    CHECK(strcmp(ep_wavelet_name(EP_WAVELET_HAAR), "haar") == 0);
}

int main(void)
{
    test_unet_shapes();
    test_shape_errors();
    test_fold_bn();
    test_consumers();
    test_keep_channels();
    test_names();
    return check_exit();
}
