/*
 * test_grad.c - every backward kernel of ep_grad against central finite
 * differences of naive double-precision forward passes written here, and
 * the whole-graph backward of a small wavelet U-Net against finite
 * differences of its training-mode loss.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ecgprune/ep_grad.h"
#include "ecgprune/ep_net.h"
#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_rng.h"
#include "ecgprune/ep_train.h"

static void fill_normal(ep_rng *rng, float *x, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        x[i] = (float)ep_rng_normal(rng);
}

/* ---- convolution ------------------------------------------------------ */

/* sum(dy * conv(x, w, b)) by direct summation in double. */
static double conv_objective(const ep_conv_geom *g, const float *x,
                             const float *w, const float *b,
                             const float *dy)
{
    double total = 0.0;
    int o, c, k, t;

    for (o = 0; o < g->out_ch; o++)
        for (t = 0; t < g->out_len; t++) {
            double s = b[o];

            for (c = 0; c < g->in_ch; c++)
                for (k = 0; k < g->kernel; k++) {
                    int i = t * g->stride + k * g->dilation - g->pad_left;

                    if (i >= 0 && i < g->in_len)
                        s += (double)w[(o * g->in_ch + c) * g->kernel + k] *
                             x[c * g->in_len + i];
                }
            total += s * dy[o * g->out_len + t];
        }
    return total;
}

/* The objective is linear in each of x, w, b, so a central difference
 * with a step of 1 is exact up to rounding. */
static double central(float *v, double (*f)(void *), void *ctx)
{
    float keep = *v;
    double up, down;

    *v = keep + 1.0f;
    up = f(ctx);
    *v = keep - 1.0f;
    down = f(ctx);
    *v = keep;
    return (up - down) / 2.0;
}

typedef struct conv_case {
    ep_conv_geom g;
    float *x, *w, *b, *dy;
} conv_case;

static double conv_f(void *ctx)
{
    conv_case *c = ctx;

    return conv_objective(&c->g, c->x, c->w, c->b, c->dy);
}

static void check_conv(int in_ch, int out_ch, int kernel, int stride,
                       int dilation, int padding, int len)
{
    conv_case c;
    ep_error err;
    ep_rng rng;
    float *dw, *db, *dx, *work;
    size_t nw, i;

    REQUIRE(ep_conv_geom_init(&c.g, in_ch, out_ch, kernel, stride, dilation,
                              padding, len, &err) == EP_OK);
    nw = (size_t)out_ch * in_ch * kernel;
    ep_rng_seed(&rng, (uint64_t)(in_ch * 1000 + kernel * 10 + stride));
    c.x = malloc((size_t)in_ch * len * sizeof(float));
    c.w = malloc(nw * sizeof(float));
    c.b = malloc((size_t)out_ch * sizeof(float));
    c.dy = malloc((size_t)out_ch * c.g.out_len * sizeof(float));
    dw = calloc(nw, sizeof(float));
    db = calloc((size_t)out_ch, sizeof(float));
    dx = calloc((size_t)in_ch * len, sizeof(float));
    work = malloc(ep_grad_conv_work_floats(&c.g) * sizeof(float));
    REQUIRE(c.x && c.w && c.b && c.dy && dw && db && dx && work);
    fill_normal(&rng, c.x, (size_t)in_ch * len);
    fill_normal(&rng, c.w, nw);
    fill_normal(&rng, c.b, (size_t)out_ch);
    fill_normal(&rng, c.dy, (size_t)out_ch * c.g.out_len);

    /* dx accumulates: start it at 1 and expect 1 + gradient. */
    for (i = 0; i < (size_t)in_ch * len; i++)
        dx[i] = 1.0f;
    ep_grad_conv(&c.g, c.x, c.w, c.dy, dw, db, dx, work);
    for (i = 0; i < nw; i++)
        CHECK_NEAR(dw[i], central(&c.w[i], conv_f, &c), 1e-4);
    for (i = 0; i < (size_t)out_ch; i++)
        CHECK_NEAR(db[i], central(&c.b[i], conv_f, &c), 1e-4);
    for (i = 0; i < (size_t)in_ch * len; i++)
        CHECK_NEAR(dx[i] - 1.0f, central(&c.x[i], conv_f, &c), 1e-4);

    free(c.x);
    free(c.w);
    free(c.b);
    free(c.dy);
    free(dw);
    free(db);
    free(dx);
    free(work);
}

/* ---- batch normalisation ---------------------------------------------- */

typedef struct bn_case {
    int batch, channels, len;
    float *x, *gamma, *beta, *dy;
} bn_case;

/* sum(dy * BN(x)) with batch statistics, in double. */
static double bn_f(void *ctx)
{
    const bn_case *b = ctx;
    double total = 0.0;
    int c, n, t;

    for (c = 0; c < b->channels; c++) {
        double sum = 0.0, sq = 0.0, mean, inv, count = b->batch * b->len;

        for (n = 0; n < b->batch; n++)
            for (t = 0; t < b->len; t++)
                sum += b->x[(n * b->channels + c) * b->len + t];
        mean = sum / count;
        for (n = 0; n < b->batch; n++)
            for (t = 0; t < b->len; t++) {
                double d = b->x[(n * b->channels + c) * b->len + t] - mean;

                sq += d * d;
            }
        inv = 1.0 / sqrt(sq / count + 1e-5);
        for (n = 0; n < b->batch; n++)
            for (t = 0; t < b->len; t++) {
                int at = (n * b->channels + c) * b->len + t;

                total += b->dy[at] * (b->gamma[c] * (b->x[at] - mean) * inv +
                                      b->beta[c]);
            }
    }
    return total;
}

/* A nonlinear objective: central difference with a small step. */
static double central_h(float *v, double h, double (*f)(void *), void *ctx)
{
    float keep = *v;
    double up, down, step;

    *v = (float)(keep + h);
    step = (double)*v - keep;
    up = f(ctx);
    *v = (float)(keep - step);
    down = f(ctx);
    *v = keep;
    return (up - down) / (2.0 * step);
}

static void test_bn(void)
{
    bn_case b = {3, 4, 10, NULL, NULL, NULL, NULL};
    size_t n = (size_t)b.batch * b.channels * b.len, i;
    float mean[4], inv_std[4], dgamma[4] = {0}, dbeta[4] = {0}, *dx;
    ep_rng rng;
    int c, k, t;

    ep_rng_seed(&rng, 7);
    b.x = malloc(n * sizeof(float));
    b.dy = malloc(n * sizeof(float));
    b.gamma = malloc(4 * sizeof(float));
    b.beta = malloc(4 * sizeof(float));
    dx = calloc(n, sizeof(float));
    REQUIRE(b.x && b.dy && b.gamma && b.beta && dx);
    fill_normal(&rng, b.x, n);
    fill_normal(&rng, b.dy, n);
    fill_normal(&rng, b.gamma, 4);
    fill_normal(&rng, b.beta, 4);
    for (i = 0; i < n; i++)
        b.x[i] = b.x[i] * 2.0f + 3.0f;

    /* The statistics the forward pass would have recorded. */
    for (c = 0; c < 4; c++) {
        double s = 0.0, q = 0.0;

        for (k = 0; k < b.batch; k++)
            for (t = 0; t < b.len; t++)
                s += b.x[(k * 4 + c) * b.len + t];
        s /= b.batch * b.len;
        for (k = 0; k < b.batch; k++)
            for (t = 0; t < b.len; t++)
                q += pow(b.x[(k * 4 + c) * b.len + t] - s, 2.0);
        mean[c] = (float)s;
        inv_std[c] = (float)(1.0 / sqrt(q / (b.batch * b.len) + 1e-5));
    }
    ep_grad_bn(b.batch, 4, b.len, b.x, mean, inv_std, b.gamma, b.dy,
               dgamma, dbeta, dx);
    for (c = 0; c < 4; c++) {
        CHECK_NEAR(dgamma[c], central_h(&b.gamma[c], 1e-2, bn_f, &b), 1e-3);
        CHECK_NEAR(dbeta[c], central_h(&b.beta[c], 1e-2, bn_f, &b), 1e-3);
    }
    for (i = 0; i < n; i++)
        CHECK_NEAR(dx[i], central_h(&b.x[i], 1e-2, bn_f, &b), 2e-3);
    free(b.x);
    free(b.dy);
    free(b.gamma);
    free(b.beta);
    free(dx);
}

/* ---- ReLU, concatenation ------------------------------------------------ */

static void test_relu_concat(void)
{
    const float y[5] = {0.0f, 2.0f, 0.0f, 0.5f, 3.0f};
    const float dy[5] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
    float dx[5] = {10.0f, 10.0f, 10.0f, 10.0f, 10.0f};
    const float cat_dy[3 * 2] = {1, 2, 3, 4, 5, 6};
    float part[2 * 2] = {0};

    /* Passes where the output was positive, adds onto dx. */
    ep_grad_relu(5, y, dy, dx);
    CHECK_NEAR(dx[0], 10.0, 0.0);
    CHECK_NEAR(dx[1], 12.0, 0.0);
    CHECK_NEAR(dx[2], 10.0, 0.0);
    CHECK_NEAR(dx[3], 14.0, 0.0);
    CHECK_NEAR(dx[4], 15.0, 0.0);

    /* Channels 1..2 of a 3-channel, 2-sample gradient. */
    ep_grad_concat_part(1, 2, 2, cat_dy, part);
    CHECK_NEAR(part[0], 3.0, 0.0);
    CHECK_NEAR(part[1], 4.0, 0.0);
    CHECK_NEAR(part[2], 5.0, 0.0);
    CHECK_NEAR(part[3], 6.0, 0.0);
}

/* ---- wavelets ----------------------------------------------------------- */

typedef struct dwt_case {
    ep_wavelet w;
    int channels, len, inverse;
    float *x, *y, *dy;
} dwt_case;

/* sum(dy * T(x)) for the forward or inverse transform. */
static double dwt_f(void *ctx)
{
    dwt_case *d = ctx;
    double total = 0.0;
    int i;

    if (d->inverse)
        ep_dwt_inverse(d->w, d->channels, d->len / 2, d->x, d->y);
    else
        ep_dwt_forward(d->w, d->channels, d->len, d->x, d->y);
    for (i = 0; i < d->channels * d->len; i++)
        total += (double)d->dy[i] * d->y[i];
    return total;
}

static void check_wavelet(ep_wavelet w, int inverse)
{
    dwt_case d = {w, 3, 16, inverse, NULL, NULL, NULL};
    size_t n = 3 * 16, i;
    float dx[3 * 16], work[3 * 16];
    ep_rng rng;

    ep_rng_seed(&rng, 11 + (uint64_t)w);
    d.x = malloc(n * sizeof(float));
    d.y = malloc(n * sizeof(float));
    d.dy = malloc(n * sizeof(float));
    REQUIRE(d.x && d.y && d.dy);
    fill_normal(&rng, d.x, n);
    fill_normal(&rng, d.dy, n);
    memset(dx, 0, sizeof dx);
    if (inverse)
        ep_grad_idwt(w, 3, 8, d.dy, dx, work);
    else
        ep_grad_dwt(w, 3, 16, d.dy, dx, work);
    for (i = 0; i < n; i++)
        CHECK_NEAR(dx[i], central(&d.x[i], dwt_f, &d), 1e-4);
    free(d.x);
    free(d.y);
    free(d.dy);
}

/* ---- softmax cross-entropy ----------------------------------------------- */

typedef struct xent_case {
    float logits[4 * 6];
    uint8_t target[6];
    float weight[4];
} xent_case;

/* The weighted cross-entropy summed over time, in double. */
/* log sum_c exp(logits[c][t]) of 4 classes x 6 samples, directly. */
static double log_z4(const float *logits, int t)
{
    double z = 0.0;
    int c;

    for (c = 0; c < 4; c++)
        z += exp(logits[c * 6 + t]);
    return log(z);
}

static double xent_f(void *ctx)
{
    const xent_case *x = ctx;
    double total = 0.0;
    int t;

    for (t = 0; t < 6; t++)
        total += x->weight[x->target[t]] *
                 (log_z4(x->logits, t) - x->logits[x->target[t] * 6 + t]);
    return total;
}

static void test_xent(void)
{
    xent_case x = {{0}, {0, 1, 2, 3, 0, 2}, {1.0f, 2.0f, 0.5f, 3.0f}};
    float d[4 * 6];
    double loss, direct;
    ep_rng rng;
    int i;

    ep_rng_seed(&rng, 3);
    fill_normal(&rng, x.logits, 24);
    x.logits[5] = 40.0f;    /* a large logit must not overflow */
    loss = ep_grad_softmax_xent(4, 6, x.logits, x.target, x.weight, 0.5, d);
    direct = xent_f(&x);
    CHECK_NEAR(loss, direct, 1e-5);
    for (i = 0; i < 24; i++)
        CHECK_NEAR(d[i], 0.5 * central_h(&x.logits[i], 1e-2, xent_f, &x),
                   2e-3);

    /* Hand-worked: two equal logits, target 0, weight 1: loss log 2. */
    {
        const float l2[2] = {0.3f, 0.3f};
        const uint8_t t0[1] = {0};
        float d2[2];

        CHECK_NEAR(ep_grad_softmax_xent(2, 1, l2, t0, NULL, 1.0, d2),
                   log(2.0), 1e-6);
        CHECK_NEAR(d2[0], -0.5, 1e-6);
        CHECK_NEAR(d2[1], 0.5, 1e-6);
    }
}

/* ---- softmax against soft targets ----------------------------------------- */

typedef struct soft_case {
    float logits[4 * 6];
    float probs[4 * 6];
} soft_case;

/* sum_t sum_c q log(q / p), p = softmax(logits), in double. */
static double soft_f(void *ctx)
{
    const soft_case *x = ctx;
    double total = 0.0;
    int c, t;

    for (t = 0; t < 6; t++)
        for (c = 0; c < 4; c++) {
            double q = x->probs[c * 6 + t];

            if (q > 0.0)
                total += q * (log(q) - x->logits[c * 6 + t] +
                              log_z4(x->logits, t));
        }
    return total;
}

static void test_soft_xent(void)
{
    soft_case x;
    float d[4 * 6];
    ep_rng rng;
    int c, t, i;

    /* Targets: random distributions, one column with a zero. */
    ep_rng_seed(&rng, 5);
    fill_normal(&rng, x.logits, 24);
    for (t = 0; t < 6; t++) {
        double sum = 0.0;

        for (c = 0; c < 4; c++)
            sum += x.probs[c * 6 + t] = (float)ep_rng_uniform(&rng);
        for (c = 0; c < 4; c++)
            x.probs[c * 6 + t] = (float)(x.probs[c * 6 + t] / sum);
    }
    x.probs[0 * 6 + 2] += x.probs[1 * 6 + 2];
    x.probs[1 * 6 + 2] = 0.0f;
    CHECK_NEAR(ep_grad_softmax_soft_xent(4, 6, x.logits, x.probs, 0.25, d),
               soft_f(&x), 1e-5);
    for (i = 0; i < 24; i++)
        CHECK_NEAR(d[i], 0.25 * central_h(&x.logits[i], 1e-2, soft_f, &x),
                   2e-3);

    /* Hand-worked: targets equal to the softmax give 0 and no gradient;
     * two equal logits against (1, 0) give log 2 and (-0.5, 0.5). */
    {
        const float l2[2] = {0.3f, 0.3f}, half[2] = {0.5f, 0.5f};
        const float one[2] = {1.0f, 0.0f};
        float d2[2];

        CHECK_NEAR(ep_grad_softmax_soft_xent(2, 1, l2, half, 1.0, d2), 0.0,
                   1e-7);
        CHECK_NEAR(d2[0], 0.0, 1e-7);
        CHECK_NEAR(d2[1], 0.0, 1e-7);
        CHECK_NEAR(ep_grad_softmax_soft_xent(2, 1, l2, one, 1.0, d2),
                   log(2.0), 1e-6);
        CHECK_NEAR(d2[0], -0.5, 1e-6);
        CHECK_NEAR(d2[1], 0.5, 1e-6);
    }
}

/* ---- a whole U-Net --------------------------------------------------------- */

typedef struct unet_case {
    ep_trainer *tr;
    float *x;
    uint8_t *target;
    float weights[6];
    float *probs;    /* non-NULL: soft targets instead of target */
} unet_case;

static double unet_f(void *ctx)
{
    unet_case *u = ctx;
    double loss = 0.0;
    ep_error err;

    if (u->probs != NULL)
        REQUIRE(ep_trainer_gradients_soft(u->tr, u->x, u->probs, &loss,
                                          &err) == EP_OK);
    else
        REQUIRE(ep_trainer_gradients(u->tr, u->x, u->target, u->weights,
                                     &loss, &err) == EP_OK);
    return loss;
}

/* Gradient of one tensor of a layer against finite differences of the
 * loss at a few of its entries.  The ReLUs make the loss only piecewise
 * smooth, and a tiny net's BN statistics over few samples bend it
 * strongly, so the step is small (5e-4; at 1e-2 kinks and curvature
 * already move some differences by 20 %). */
static void check_tensor(unet_case *u, ep_net *net, int layer, int which)
{
    ep_layer *l = &net->layers[layer];
    float *value = which == 0 ? (l->op == EP_OP_CONV ? l->weight : l->gamma)
                              : (l->op == EP_OP_CONV ? l->bias : l->beta);
    size_t n = which == 0 && l->op == EP_OP_CONV
                   ? (size_t)l->channels * l->in_channels * l->kernel
                   : (size_t)l->channels;
    size_t i, step = n > 6 ? n / 6 : 1;

    for (i = 0; i < n; i += step) {
        double analytic, numeric;

        unet_f(u);
        analytic = ep_trainer_param_grad(u->tr, layer, which)[i];
        numeric = central_h(&value[i], 5e-4, unet_f, u);
        CHECK_MSG(fabs(analytic - numeric) <=
                      2e-3 + 0.03 * fabs(numeric),
                  "layer %s tensor %d entry %zu: %g vs %g", l->name, which,
                  i, analytic, numeric);
    }
}

static void test_unet(void)
{
    ep_unet_config cfg;
    ep_net *net;
    unet_case u;
    ep_error err;
    ep_rng rng;
    int i, checked = 0, batch = 2, len = 64;

    ep_unet_default_config(&cfg);
    cfg.depth = 3;
    cfg.widths[0] = 3;
    cfg.widths[1] = 4;
    cfg.widths[2] = 5;
    cfg.kernel = 3;
    cfg.meta.window = len;
    REQUIRE(ep_unet_build(&cfg, 5, &net, &err) == EP_OK);

    /* Non-trivial BN parameters so that their gradients show. */
    ep_rng_seed(&rng, 9);
    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];
        int c;

        for (c = 0; l->op == EP_OP_BN && c < l->channels; c++) {
            l->gamma[c] = (float)(1.0 + 0.3 * ep_rng_normal(&rng));
            l->beta[c] = (float)(0.2 * ep_rng_normal(&rng));
        }
        for (c = 0; l->op == EP_OP_CONV && c < l->channels; c++)
            l->bias[c] = (float)(0.1 * ep_rng_normal(&rng));
    }
    REQUIRE(ep_trainer_create(net, batch, len, 0, &u.tr, &err) == EP_OK);
    u.probs = NULL;
    u.x = malloc((size_t)batch * len * sizeof(float));
    u.target = malloc((size_t)batch * len);
    REQUIRE(u.x && u.target);
    fill_normal(&rng, u.x, (size_t)batch * len);
    for (i = 0; i < batch * len; i++)
        u.target[i] = (uint8_t)ep_rng_below(&rng, 6);
    for (i = 0; i < 6; i++)
        u.weights[i] = 1.0f + (float)i * 0.5f;

    /* Every conv and BN of the net, weights and biases. */
    for (i = 0; i < net->n_layers; i++)
        if (net->layers[i].op == EP_OP_CONV ||
            net->layers[i].op == EP_OP_BN) {
            check_tensor(&u, net, i, 0);
            check_tensor(&u, net, i, 1);
            checked++;
        }
    CHECK(checked >= 12);

    /* Against soft targets (one-hot columns smoothed towards uniform). */
    u.probs = malloc((size_t)batch * 6 * len * sizeof(float));
    REQUIRE(u.probs);
    for (i = 0; i < batch * 6 * len; i++) {
        int item = i / (6 * len), c = i / len % 6, t = i % len;

        u.probs[i] = c == u.target[item * len + t] ? 0.75f : 0.05f;
    }
    check_tensor(&u, net, ep_net_find(net, "enc0.conv0"), 0);
    check_tensor(&u, net, ep_net_find(net, "head"), 1);
    free(u.probs);
    u.probs = NULL;
    ep_trainer_free(u.tr);

    /* With the encoder frozen its layers get no gradient, the head does. */
    REQUIRE(ep_trainer_create(net, batch, len, 1, &u.tr, &err) == EP_OK);
    CHECK(ep_trainer_param_grad(u.tr, ep_net_find(net, "enc0.conv0"), 0) ==
          NULL);
    CHECK(ep_trainer_param_grad(u.tr, ep_net_find(net, "head"), 0) != NULL);
    CHECK(ep_trainer_param_grad(u.tr, ep_net_find(net, "up0"), 0) != NULL);
    check_tensor(&u, net, ep_net_find(net, "dec0.conv0"), 0);
    ep_trainer_free(u.tr);
    free(u.x);
    free(u.target);
    ep_net_free(net);
}

int main(void)
{
    check_conv(3, 4, 5, 1, 1, EP_PAD_SAME, 12);
    check_conv(2, 3, 3, 2, 1, EP_PAD_SAME, 11);
    check_conv(2, 2, 3, 1, 2, 1, 9);
    check_conv(4, 6, 1, 1, 1, 0, 7);
    test_bn();
    test_relu_concat();
    check_wavelet(EP_WAVELET_HAAR, 0);
    check_wavelet(EP_WAVELET_DB2, 0);
    check_wavelet(EP_WAVELET_DB4, 0);
    check_wavelet(EP_WAVELET_HAAR, 1);
    check_wavelet(EP_WAVELET_DB2, 1);
    check_wavelet(EP_WAVELET_DB4, 1);
    test_xent();
    test_soft_xent();
    test_unet();
    return check_exit();
}
