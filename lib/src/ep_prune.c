/*
 * ep_prune.c - the pruning driver.  It folds batch normalisation, finds
 * the groups (a producer convolution and the consumer convolutions its
 * channels reach), and for each group in layer order selects the producer
 * channels to keep (Ising coreset at unit-kernel or filter level, or a
 * baseline), removes the others and refits the consumers by least squares
 * against the original network's outputs.  Also the options, the result
 * and the masks JSON.
 *
 * Activations are captured by running plans on prefixes of the network
 * (the layers before the consumer), so a shallow group does not pay for
 * the whole decoder.  The original network's consumer outputs are run
 * once and kept for every calibration window.
 */
#include "ecgprune/ep_prune.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ecgprune/ep_distill.h"
#include "ecgprune/ep_ising.h"
#include "ecgprune/ep_lsq.h"
#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_plan.h"
#include "ep_net_priv.h"
#include "ep_prune_priv.h"

/* Windows run through a plan at once while capturing activations. */
#define CAPTURE_CHUNK 8

/* Distillation steps accepted at most (about a day of CPU). */
#define MAX_DISTILL_STEPS 100000

/* Share of the progress fraction the groups take when distillation
 * follows: its steps cost about four times the whole selection and refit
 * of the default model (measured on 5 minutes of ECG, 200 steps). */
#define GROUPS_SHARE_WITH_DISTILL 0.2

/* Largest coreset scale accepted; beyond it m = N for any network. */
#define MAX_CORESET_SCALE 1000.0

static const char *const method_names[] = {
    "ising-kernel", "ising-filter", "l1", "random", "coreset", "contrib"
};
#define N_METHODS ((int)(sizeof method_names / sizeof method_names[0]))

const char *ep_prune_method_name(ep_prune_method m)
{
    if ((int)m < 0 || (int)m >= N_METHODS)
        return "unknown";
    return method_names[m];
}

int ep_prune_method_from_name(const char *s, ep_prune_method *m)
{
    int i;

    for (i = 0; s != NULL && i < N_METHODS; i++)
        if (strcmp(s, method_names[i]) == 0) {
            *m = (ep_prune_method)i;
            return EP_OK;
        }
    return EP_EINVAL;
}

void ep_prune_default_opts(ep_prune_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->method = EP_PRUNE_ISING_KERNEL;
    opts->keep = 0.5;
    opts->mask_list = 32;
    opts->candidates = 8;
    opts->coreset_scale = 1.25;
    opts->seed = 1;
    opts->reconstruct = 1;
    opts->lambda = -1.0;
    opts->batch_windows = 8;
    opts->max_windows = 64;
}

int ep_prune_check_opts(const ep_prune_opts *o, ep_error *err)
{
    if ((int)o->method < 0 || (int)o->method >= N_METHODS)
        return ep_error_set(err, EP_EINVAL, "prune: unknown method %d",
                            (int)o->method);
    if (!(o->keep > 0.0 && o->keep <= 1.0))
        return ep_error_set(err, EP_EINVAL,
                            "prune: keep %g, expected a fraction in (0, 1]",
                            o->keep);
    if (o->mask_list < 1)
        return ep_error_set(err, EP_EINVAL,
                            "prune: mask list of %d masks, expected >= 1",
                            o->mask_list);
    if (o->candidates < 1)
        return ep_error_set(err, EP_EINVAL,
                            "prune: %d candidates per round, expected >= 1",
                            o->candidates);
    if (!(o->coreset_scale >= 1.0 && o->coreset_scale <= MAX_CORESET_SCALE))
        return ep_error_set(err, EP_EINVAL,
                            "prune: coreset scale %g, expected 1..%g",
                            o->coreset_scale, MAX_CORESET_SCALE);
    if (o->batch_windows < 1 || o->max_windows < 1)
        return ep_error_set(err, EP_EINVAL,
                            "prune: %d windows per batch and at most %d "
                            "windows, expected >= 1 each",
                            o->batch_windows, o->max_windows);
    if (!isfinite(o->lambda))
        return ep_error_set(err, EP_EINVAL,
                            "prune: lambda %g is not a number", o->lambda);
    if (o->distill_steps < 0 || o->distill_steps > MAX_DISTILL_STEPS)
        return ep_error_set(err, EP_EINVAL,
                            "prune: %d distillation steps, expected 0..%d",
                            o->distill_steps, MAX_DISTILL_STEPS);
    if (!(o->distill_lr >= 0.0 && o->distill_lr < 10.0))
        return ep_error_set(err, EP_EINVAL,
                            "prune: distillation learning rate %g, expected "
                            "0 (the default) or up to 10", o->distill_lr);
    return EP_OK;
}

/* ---- the job's state ---------------------------------------------------- */

typedef struct prune_ctx {
    const ep_prune_opts *opts;
    ep_net *orig;              /* BN folded, never pruned */
    ep_net *work;              /* pruned group by group */
    const float *windows;      /* n_win x in_ch x len */
    int n_win, len, in_ch;
    int batch, n_batches;      /* importance batches of `batch` windows */
    float **y_orig;            /* per layer: n_win x C x out_len, or NULL */
    double **bn_scale;         /* per layer of orig: the scale of the
                                  batch norm folded into it, or NULL */
    ep_rng *rng;
    ep_prune_progress_fn progress;
    void *ud;
    struct timespec t0;
    int group, n_groups;       /* 0-based group being processed */
    int drifted;               /* 1 once a group lost channels */
    double groups_share;       /* of the progress fraction */
    ep_error *err;
} prune_ctx;

/* One group while it is processed.  "Units" are producer channels, or
 * pairs of them that an IDWT ties together. */
typedef struct group_state {
    int producer;
    ep_consumer *cons;
    int n_cons;
    int n_ch;                  /* producer channels */
    int *unit_of_ch;           /* n_ch */
    int n_units;
    int **unit_of_in;          /* per consumer: input channel -> unit / -1 */
    int c_total;               /* consumers' output channels together */
    double *norms;             /* n_i of each unit */
    int n_keep, m;             /* N' and the coreset size */
    int *keep_units;           /* n_keep, increasing */
    double temperature;
} group_state;

static double elapsed(const prune_ctx *ctx)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - ctx->t0.tv_sec) +
           1e-9 * (double)(now.tv_nsec - ctx->t0.tv_nsec);
}

/* Tell the caller where the job is: `done` of the stage's n_rounds steps
 * are finished and the next begins.  A non-zero answer cancels the job.
 * The selection takes the first half of a group's share of the fraction,
 * the refits the second. */
static int report_progress(prune_ctx *ctx, const char *stage, int done,
                           int n_rounds)
{
    ep_prune_progress p;
    double within = n_rounds > 0 ? 0.5 * done / n_rounds : 0.0;

    if (strcmp(stage, "reconstruct") == 0)
        within += 0.5;

    if (ctx->progress == NULL)
        return EP_OK;
    p.group = ctx->group + 1;
    p.n_groups = ctx->n_groups;
    p.round = done + 1;
    p.n_rounds = n_rounds;
    p.fraction = ctx->n_groups > 0 ? ctx->groups_share *
                                         (ctx->group + within) /
                                         ctx->n_groups
                                   : 0.0;
    p.elapsed_s = elapsed(ctx);
    p.stage = stage;
    if (ctx->progress(&p, ctx->ud) != 0)
        return ep_error_set(ctx->err, EP_ECANCELED,
                            "prune: cancelled at group %d of %d (%s)",
                            p.group, p.n_groups, stage);
    return EP_OK;
}

/* ---- groups ------------------------------------------------------------- */

/* 1 when conv `layer`'s channels reach the network output through
 * channel-wise layers only (the classifier head is never pruned). */
static int feeds_output(const ep_net *net, int layer, ep_error *err)
{
    unsigned char *reach = calloc((size_t)net->n_layers, 1);
    int i, k, hit;

    if (reach == NULL)
        return ep_error_set(err, EP_ENOMEM, "prune: out of memory");
    reach[layer] = 1;
    for (i = layer + 1; i < net->n_layers; i++)
        for (k = 0; k < net->layers[i].n_inputs; k++)
            if (net->layers[i].op != EP_OP_CONV &&
                reach[net->layers[i].inputs[k]])
                reach[i] = 1;
    hit = reach[net->output];
    free(reach);
    return hit;
}

/* Producers in layer order, and which layers are consumers. */
static int find_groups(const ep_net *net, int **producers, int *n_prod,
                       unsigned char *is_consumer, ep_error *err)
{
    ep_consumer *cons;
    int i, k, nc, rc;

    *n_prod = 0;
    *producers = malloc((size_t)net->n_layers * sizeof **producers);
    if (*producers == NULL)
        return ep_error_set(err, EP_ENOMEM, "prune: out of memory");
    for (i = 0; i < net->n_layers; i++) {
        if (net->layers[i].op != EP_OP_CONV || i == net->output)
            continue;
        rc = feeds_output(net, i, err);
        if (rc < 0)
            return rc;
        if (rc == 1)
            continue;
        rc = ep_net_consumers(net, i, &cons, &nc, err);
        if (rc != EP_OK)
            return rc;
        for (k = 0; k < nc; k++)
            is_consumer[cons[k].layer] = 1;
        if (nc > 0)
            (*producers)[(*n_prod)++] = i;
        ep_net_consumers_free(cons, nc);
    }
    return EP_OK;
}

static void group_free(group_state *gs)
{
    int k;

    for (k = 0; gs->unit_of_in != NULL && k < gs->n_cons; k++)
        free(gs->unit_of_in[k]);
    free(gs->unit_of_in);
    ep_net_consumers_free(gs->cons, gs->n_cons);
    free(gs->unit_of_ch);
    free(gs->norms);
    free(gs->keep_units);
    memset(gs, 0, sizeof *gs);
}

/* Units from the IDWT ties: unit indices follow the smallest channel. */
static int group_units(prune_ctx *ctx, group_state *gs)
{
    int *tie = malloc((size_t)gs->n_ch * sizeof *tie);
    int c, rc;

    gs->unit_of_ch = malloc((size_t)gs->n_ch * sizeof *gs->unit_of_ch);
    if (tie == NULL || gs->unit_of_ch == NULL) {
        free(tie);
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    }
    rc = ep_net_tied_channels(ctx->work, gs->producer, tie, ctx->err);
    for (c = 0; rc == EP_OK && c < gs->n_ch; c++)
        gs->unit_of_ch[c] = tie[c] == c ? gs->n_units++
                                        : gs->unit_of_ch[tie[c]];
    free(tie);
    return rc;
}

/* Which unit each consumer input derives from, and the units' L1 norms
 * n_i over every consumer weight reading them: of the folded weights by
 * default, of the weights before folding with raw_norms (each output's row
 * divided by its batch norm's scale; a row whose scale is 0 reads
 * nothing and adds nothing). */
static int group_maps(prune_ctx *ctx, group_state *gs)
{
    int k, q, n, j, t;

    gs->unit_of_in = calloc((size_t)gs->n_cons, sizeof *gs->unit_of_in);
    gs->norms = calloc((size_t)gs->n_units, sizeof *gs->norms);
    if (gs->unit_of_in == NULL || gs->norms == NULL)
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    for (k = 0; k < gs->n_cons; k++) {
        const ep_layer *l = &ctx->work->layers[gs->cons[k].layer];
        int *map = malloc((size_t)l->in_channels * sizeof *map);

        if (map == NULL)
            return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
        gs->unit_of_in[k] = map;
        for (n = 0; n < l->in_channels; n++)
            map[n] = -1;
        for (q = 0; q < gs->cons[k].n_links; q++)
            map[gs->cons[k].links[q].consumer_ch] =
                gs->unit_of_ch[gs->cons[k].links[q].producer_ch];
        gs->c_total += l->channels;
        /* Groups go in layer order and a consumer comes after its
         * producer, so its own output channels are still whole here and
         * bn_scale's rows still match them. */
        for (j = 0; j < l->channels; j++) {
            const double *s = ctx->opts->raw_norms
                              ? ctx->bn_scale[gs->cons[k].layer] : NULL;
            double f = s == NULL ? 1.0 : s[j] != 0.0 ? 1.0 / fabs(s[j]) : 0.0;

            for (n = 0; n < l->in_channels; n++) {
                const float *w = l->weight +
                                 ((size_t)j * l->in_channels + n) * l->kernel;

                if (map[n] < 0)
                    continue;
                for (t = 0; t < l->kernel; t++)
                    gs->norms[map[n]] += f * fabs((double)w[t]);
            }
        }
    }
    return EP_OK;
}

/* 1 if one of the group's consumers is the output layer or feeds it
 * without passing another convolution, 0 if not, < 0 on error. */
static int feeds_head(prune_ctx *ctx, const group_state *gs)
{
    int k, rc;

    for (k = 0; k < gs->n_cons; k++) {
        if (gs->cons[k].layer == ctx->work->output)
            return 1;
        rc = feeds_output(ctx->work, gs->cons[k].layer, ctx->err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int group_init(prune_ctx *ctx, int producer, group_state *gs)
{
    double target;
    int rc;

    memset(gs, 0, sizeof *gs);
    gs->producer = producer;
    gs->n_ch = ctx->work->layers[producer].channels;
    rc = ep_net_consumers(ctx->work, producer, &gs->cons, &gs->n_cons,
                          ctx->err);
    if (rc != EP_OK)
        return rc;
    rc = group_units(ctx, gs);
    if (rc == EP_OK)
        rc = group_maps(ctx, gs);
    if (rc != EP_OK)
        return rc;

    /* N' = max(1, round(keep N)); m = min(N, ceil(scale N')), with a
     * margin so that 1.1 * 10 does not round up to 12.  The group feeding
     * the classifier keeps everything unless asked: its channels are the
     * features every class is read from, and halving them cost the default
     * model its S class for 0.5 % of its multiply-adds. */
    rc = feeds_head(ctx, gs);
    if (rc < 0)
        return rc;
    gs->n_keep = rc == 1 && !ctx->opts->prune_head_input
                     ? gs->n_units
                     : (int)lround(ctx->opts->keep * gs->n_units);
    gs->n_keep = gs->n_keep < 1 ? 1 : gs->n_keep;
    gs->n_keep = gs->n_keep > gs->n_units ? gs->n_units : gs->n_keep;
    target = ceil(ctx->opts->coreset_scale * gs->n_keep - 1e-9);
    gs->m = target > gs->n_units ? gs->n_units : (int)target;
    gs->keep_units = malloc((size_t)gs->n_keep * sizeof *gs->keep_units);
    if (gs->keep_units == NULL)
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    return EP_OK;
}

/* ---- capturing activations ---------------------------------------------- */

/* Called for every window with the plan that just ran it (`item` is its
 * place in the plan's batch). */
typedef int (*window_visit)(void *ud, int window, const ep_plan *plan,
                            int item, ep_error *err);

/* A copy of the first n_layers layers of net, the last one its output.
 * Layers are in topological order, so the prefix is a valid network. */
static int net_prefix(const ep_net *net, int n_layers, ep_net **out,
                      ep_error *err)
{
    ep_net *copy;
    int i, rc;

    rc = ep_net_clone(net, &copy, err);
    if (rc != EP_OK)
        return rc;
    for (i = n_layers; i < copy->n_layers; i++)
        ep_net_layer_free_weights(&copy->layers[i]);
    copy->n_layers = n_layers;
    copy->output = n_layers - 1;
    *out = copy;
    return EP_OK;
}

/* Run layers [0, n_layers) of net on windows [w0, w0 + n) and visit each. */
static int for_each_window(prune_ctx *ctx, const ep_net *net, int n_layers,
                           int w0, int n, window_visit visit, void *ud)
{
    size_t win_floats = (size_t)ctx->in_ch * ctx->len;
    int chunk = n < CAPTURE_CHUNK ? n : CAPTURE_CHUNK;
    ep_net *prefix = NULL;
    ep_plan *plan = NULL;
    float *input = NULL;
    int c0, item, rc;

    rc = net_prefix(net, n_layers, &prefix, ctx->err);
    if (rc == EP_OK)
        rc = ep_plan_create(prefix, chunk, ctx->len, EP_PLAN_KEEP, &plan,
                            ctx->err);
    if (rc == EP_OK) {
        input = calloc((size_t)chunk * win_floats, sizeof *input);
        if (input == NULL)
            rc = ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    }

    /* A short last chunk runs with zeros in the unused places. */
    for (c0 = w0; rc == EP_OK && c0 < w0 + n; c0 += chunk) {
        int nb = w0 + n - c0 < chunk ? w0 + n - c0 : chunk;

        memcpy(input, ctx->windows + (size_t)c0 * win_floats,
               (size_t)nb * win_floats * sizeof *input);
        memset(input + (size_t)nb * win_floats, 0,
               (size_t)(chunk - nb) * win_floats * sizeof *input);
        rc = ep_plan_run(plan, input, ctx->err);
        for (item = 0; rc == EP_OK && item < nb; item++)
            rc = visit(ud, c0 + item, plan, item, ctx->err);
    }
    free(input);
    ep_plan_free(plan);
    ep_net_free(prefix);
    return rc;
}

/* Pointer to batch item `item` of a layer's output in a plan. */
static const float *plan_item(const ep_plan *plan, int layer, int item,
                              size_t *floats)
{
    int ch, len;
    const float *base = ep_plan_output(plan, layer, &ch, &len);

    *floats = (size_t)ch * len;
    return base + (size_t)item * *floats;
}

typedef struct orig_visit {
    prune_ctx *ctx;
    const unsigned char *is_consumer;
} orig_visit;

static int visit_orig(void *ud, int window, const ep_plan *plan, int item,
                      ep_error *err)
{
    orig_visit *v = ud;
    size_t floats;
    int i;

    (void)err;
    for (i = 0; i < v->ctx->orig->n_layers; i++) {
        const float *y;

        if (!v->is_consumer[i])
            continue;
        y = plan_item(plan, i, item, &floats);
        memcpy(v->ctx->y_orig[i] + (size_t)window * floats, y,
               floats * sizeof *y);
    }
    return EP_OK;
}

/* Keep the original network's output of every consumer on every window.
 * Limitation: all in memory at once, about 2 MB per window for the
 * default model (128 MB at the default 64 windows). */
static int cache_original(prune_ctx *ctx, const unsigned char *is_consumer)
{
    orig_visit v;
    int i, last = -1;

    for (i = 0; i < ctx->orig->n_layers; i++) {
        const ep_layer *l = &ctx->orig->layers[i];

        if (!is_consumer[i])
            continue;
        ctx->y_orig[i] = malloc((size_t)ctx->n_win * l->channels *
                                (ctx->len / l->rate_div) * sizeof(float));
        if (ctx->y_orig[i] == NULL)
            return ep_error_set(ctx->err, EP_ENOMEM,
                                "prune: out of memory for the outputs of "
                                "'%s' on %d windows", l->name, ctx->n_win);
        last = i;
    }
    if (last < 0)
        return EP_OK;
    v.ctx = ctx;
    v.is_consumer = is_consumer;
    return for_each_window(ctx, ctx->orig, last + 1, 0, ctx->n_win,
                           visit_orig, &v);
}

/* The geometry of conv `layer` of net on this job's window length. */
static int conv_geom(const prune_ctx *ctx, const ep_net *net, int layer,
                     ep_conv_geom *g)
{
    const ep_layer *l = &net->layers[layer];

    return ep_conv_geom_init(g, l->in_channels, l->channels, l->kernel,
                             l->stride, l->dilation, l->padding,
                             ctx->len / net->layers[l->inputs[0]].rate_div,
                             ctx->err);
}

/* ---- importance --------------------------------------------------------- */

typedef struct batch_visit {
    const ep_net *net;
    const group_state *gs;
    float **x;                 /* per consumer: batch x in_ch x in_len */
    int w0;
} batch_visit;

static int visit_batch(void *ud, int window, const ep_plan *plan, int item,
                       ep_error *err)
{
    batch_visit *v = ud;
    size_t floats;
    int k;

    (void)err;
    for (k = 0; k < v->gs->n_cons; k++) {
        int in = v->net->layers[v->gs->cons[k].layer].inputs[0];
        const float *x = plan_item(plan, in, item, &floats);

        memcpy(v->x[k] + (size_t)(window - v->w0) * floats, x,
               floats * sizeof *x);
    }
    return EP_OK;
}

/* R (n_units x c_total) of the group on importance batch b. */
static int group_importance(prune_ctx *ctx, const group_state *gs, int b,
                            double *r)
{
    batch_visit v;
    int k, col0 = 0, last = 0, rc = EP_OK;

    v.net = ctx->work;
    v.gs = gs;
    v.w0 = b * ctx->batch;
    v.x = calloc((size_t)gs->n_cons, sizeof *v.x);
    if (v.x == NULL)
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    for (k = 0; k < gs->n_cons && rc == EP_OK; k++) {
        const ep_layer *l = &ctx->work->layers[gs->cons[k].layer];
        size_t floats = (size_t)l->in_channels *
                        (ctx->len / ctx->work->layers[l->inputs[0]].rate_div);

        v.x[k] = malloc((size_t)ctx->batch * floats * sizeof(float));
        if (v.x[k] == NULL)
            rc = ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
        last = gs->cons[k].layer > last ? gs->cons[k].layer : last;
    }
    if (rc == EP_OK)
        rc = for_each_window(ctx, ctx->work, last, v.w0, ctx->batch,
                             visit_batch, &v);

    /* Each consumer fills its own block of columns. */
    for (k = 0; k < gs->n_cons && rc == EP_OK; k++) {
        int layer = gs->cons[k].layer;
        ep_conv_geom g;

        rc = conv_geom(ctx, ctx->work, layer, &g);
        if (rc != EP_OK)
            break;
        rc = ep_ising_importance(&g, ctx->work->layers[layer].weight,
                                 v.x[k], ctx->batch, gs->unit_of_in[k],
                                 gs->n_units, r + col0, gs->c_total,
                                 ctx->err);
        col0 += g.out_ch;
    }
    for (k = 0; k < gs->n_cons; k++)
        free(v.x[k]);
    free(v.x);
    return rc;
}

/* ---- channel selection -------------------------------------------------- */

/* Unit-kernel level: R, Ebar, p and A from the first batch, L rounds. */
static int select_ising_kernel(prune_ctx *ctx, group_state *gs,
                               unsigned char *masks, double *p)
{
    int n = gs->n_units, l, rc;
    double *r = malloc((size_t)n * gs->c_total * sizeof *r);
    double *ebar = malloc((size_t)n * sizeof *ebar);
    double *a = malloc((size_t)n * n * sizeof *a);
    double h;

    rc = r && ebar && a ? EP_OK
                        : ep_error_set(ctx->err, EP_ENOMEM,
                                       "prune: out of memory");
    if (rc == EP_OK)
        rc = group_importance(ctx, gs, 0, r);
    if (rc == EP_OK) {
        ep_ising_mean_output_energy(r, n, gs->c_total,
                                    (double)gs->n_keep / n, ebar);
        gs->temperature = ep_ising_calibrate_temperature(
            ebar, gs->norms, n, gs->n_keep, 0.5 * (gs->m + n), p);
        rc = ep_ising_coupling(r, n, gs->c_total, a, &h, ctx->err);
    }
    for (l = 0; rc == EP_OK && l < ctx->opts->mask_list; l++) {
        rc = report_progress(ctx, "sampling", l, ctx->opts->mask_list);
        if (rc == EP_OK)
            rc = ep_ising_round(ctx->rng, p, a, h, n, gs->m,
                                ctx->opts->candidates, masks + (size_t)l * n,
                                NULL, ctx->err);
    }
    free(r);
    free(ebar);
    free(a);
    return rc;
}

/* Filter level: p from the thresholded norms; round l recomputes R, A
 * and h on batch l (cycling), each batch's coupling computed once. */
static int select_ising_filter(prune_ctx *ctx, group_state *gs,
                               unsigned char *masks, double *p)
{
    int n = gs->n_units, l, b, rc = EP_OK;
    int n_cached = ctx->n_batches < ctx->opts->mask_list
                       ? ctx->n_batches : ctx->opts->mask_list;
    double **a = calloc((size_t)n_cached, sizeof *a);
    double *h = calloc((size_t)n_cached, sizeof *h);
    double *r = malloc((size_t)n * gs->c_total * sizeof *r);

    if (a == NULL || h == NULL || r == NULL)
        rc = ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    ep_ising_probabilities(NULL, gs->norms, n, gs->n_keep, 1.0, p);
    for (l = 0; rc == EP_OK && l < ctx->opts->mask_list; l++) {
        rc = report_progress(ctx, "sampling", l, ctx->opts->mask_list);
        b = l % n_cached;
        if (rc == EP_OK && a[b] == NULL) {
            a[b] = malloc((size_t)n * n * sizeof **a);
            rc = a[b] != NULL ? group_importance(ctx, gs, b, r)
                              : ep_error_set(ctx->err, EP_ENOMEM,
                                             "prune: out of memory");
            if (rc == EP_OK)
                rc = ep_ising_coupling(r, n, gs->c_total, a[b], &h[b],
                                       ctx->err);
        }
        if (rc == EP_OK)
            rc = ep_ising_round(ctx->rng, p, a[b], h[b], n, gs->m,
                                ctx->opts->candidates, masks + (size_t)l * n,
                                NULL, ctx->err);
    }
    for (b = 0; a != NULL && b < n_cached; b++)
        free(a[b]);
    free(a);
    free(h);
    free(r);
    return rc;
}

/* The two Ising levels: a mask list, then fusion. */
static int select_ising(prune_ctx *ctx, group_state *gs)
{
    int n = gs->n_units, rc;
    unsigned char *masks = malloc((size_t)ctx->opts->mask_list * n);
    double *p = malloc((size_t)n * sizeof *p);

    if (masks == NULL || p == NULL) {
        free(masks);
        free(p);
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    }
    if (ctx->opts->method == EP_PRUNE_ISING_KERNEL)
        rc = select_ising_kernel(ctx, gs, masks, p);
    else
        rc = select_ising_filter(ctx, gs, masks, p);
    if (rc == EP_OK)
        rc = ep_ising_fuse(masks, ctx->opts->mask_list, n, gs->n_keep, p,
                           gs->norms, gs->keep_units, ctx->err);
    free(masks);
    free(p);
    return rc;
}

/* Indices of the set entries of a mask, increasing. */
static void mask_indices(const unsigned char *mask, int n, int *out)
{
    int i, k = 0;

    for (i = 0; i < n; i++)
        if (mask[i])
            out[k++] = i;
}

/* random: N' uniformly; coreset: one draw of N' with p_i ~ n_i. */
static int select_sampled(prune_ctx *ctx, group_state *gs)
{
    int n = gs->n_units, i, rc;
    double *p = malloc((size_t)n * sizeof *p), total = 0.0;
    unsigned char *mask = malloc((size_t)n);

    if (p == NULL || mask == NULL) {
        free(p);
        free(mask);
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    }
    for (i = 0; i < n; i++)
        total += gs->norms[i];
    for (i = 0; i < n; i++)
        p[i] = ctx->opts->method == EP_PRUNE_CORESET && total > 0.0
                   ? gs->norms[i] / total : 1.0 / n;
    rc = ep_ising_sample(ctx->rng, p, n, gs->n_keep, mask, ctx->err);
    if (rc == EP_OK)
        mask_indices(mask, n, gs->keep_units);
    free(p);
    free(mask);
    return rc;
}

/* contrib: the N' units of largest |sum_j r_ij| on the first batch. */
static int select_contrib(prune_ctx *ctx, group_state *gs)
{
    int n = gs->n_units, i, j, rc;
    double *r = malloc((size_t)n * gs->c_total * sizeof *r);
    double *g = malloc((size_t)n * sizeof *g);

    rc = r && g ? group_importance(ctx, gs, 0, r)
                : ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    for (i = 0; rc == EP_OK && i < n; i++) {
        double s = 0.0;

        for (j = 0; j < gs->c_total; j++)
            s += r[(size_t)i * gs->c_total + j];
        g[i] = fabs(s);
    }
    if (rc == EP_OK)
        rc = ep_ising_top_k(g, n, gs->n_keep, gs->keep_units, ctx->err);
    free(r);
    free(g);
    return rc;
}

static int select_units(prune_ctx *ctx, group_state *gs)
{
    switch (ctx->opts->method) {
    case EP_PRUNE_ISING_KERNEL:
    case EP_PRUNE_ISING_FILTER:
        return select_ising(ctx, gs);
    case EP_PRUNE_L1:
        return ep_ising_top_k(gs->norms, gs->n_units, gs->n_keep,
                              gs->keep_units, ctx->err);
    case EP_PRUNE_RANDOM:
    case EP_PRUNE_CORESET:
        return select_sampled(ctx, gs);
    case EP_PRUNE_CONTRIB:
        return select_contrib(ctx, gs);
    }
    return ep_error_set(ctx->err, EP_EINVAL, "prune: unknown method");
}

/* ---- removal and reconstruction ----------------------------------------- */

/* Drop the unkept units' channels from the working network. */
static int apply_keep(prune_ctx *ctx, const group_state *gs,
                      ep_prune_group_report *rep)
{
    unsigned char *kept_unit = calloc((size_t)gs->n_units, 1);
    int c, k, n = 0;

    rep->kept = malloc((size_t)gs->n_ch * sizeof *rep->kept);
    if (kept_unit == NULL || rep->kept == NULL) {
        free(kept_unit);
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    }
    for (k = 0; k < gs->n_keep; k++)
        kept_unit[gs->keep_units[k]] = 1;
    for (c = 0; c < gs->n_ch; c++)
        if (kept_unit[gs->unit_of_ch[c]])
            rep->kept[n++] = c;
    free(kept_unit);
    rep->channels_after = n;
    if (n == gs->n_ch)
        return EP_OK;
    return ep_net_keep_channels(ctx->work, gs->producer, rep->kept, n,
                                ctx->err);
}

typedef struct fit_visit {
    prune_ctx *ctx;
    int layer;
    ep_conv_geom g;
    float *col;            /* im2col of one window, or the conv's work */
    float *y;              /* reconstruct off: the pruned output */
    ep_lsq *q;             /* reconstruct on */
    double res, total;     /* reconstruct off: squared errors */
} fit_visit;

/* Reconstruct on: add the window's rows to the normal equations. */
static int visit_fit(void *ud, int window, const ep_plan *plan, int item,
                     ep_error *err)
{
    fit_visit *v = ud;
    const ep_layer *l = &v->ctx->work->layers[v->layer];
    size_t floats, out = (size_t)v->g.out_ch * v->g.out_len;
    const float *x = plan_item(plan, l->inputs[0], item, &floats);

    ep_conv_im2col(&v->g, x, v->col);
    return ep_lsq_add(v->q, v->col, v->g.out_len,
                      v->ctx->y_orig[v->layer] + (size_t)window * out,
                      v->g.out_len, v->g.out_len, err);
}

/* Reconstruct off: compare the pruned layer's output with the original. */
static int visit_error(void *ud, int window, const ep_plan *plan, int item,
                       ep_error *err)
{
    fit_visit *v = ud;
    const ep_layer *l = &v->ctx->work->layers[v->layer];
    size_t floats, out = (size_t)v->g.out_ch * v->g.out_len, q;
    const float *x = plan_item(plan, l->inputs[0], item, &floats);
    const float *y0 = v->ctx->y_orig[v->layer] + (size_t)window * out;

    (void)err;
    ep_conv_forward(&v->g, x, l->weight, l->bias, v->y, v->col);
    for (q = 0; q < out; q++) {
        double d = (double)v->y[q] - y0[q];

        v->res += d * d;
        v->total += (double)y0[q] * y0[q];
    }
    return EP_OK;
}

/* Solve for the consumer's new weights and store them as floats.
 * Limitation: the fit matches the layer's outputs on average over the
 * calibration rows, so weak features that few rows carry (the timing cues
 * that tell S beats from N beats) are the first to go; with the
 * classifier's input pruned too, the default model loses its S class at
 * keep 0.5 this way. */
static int refit_weights(prune_ctx *ctx, fit_visit *v, ep_lsq_fit *fit)
{
    ep_layer *l = &ctx->work->layers[v->layer];
    size_t nw = ep_net_conv_weight_floats(l), q;
    double *w = malloc(nw * sizeof *w);
    double *b = malloc((size_t)l->channels * sizeof *b);
    int rc;

    if (w == NULL || b == NULL) {
        free(w);
        free(b);
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    }
    rc = ep_lsq_solve(v->q, ctx->opts->lambda, w, b, fit, ctx->err);
    if (rc == EP_OK) {
        for (q = 0; q < nw; q++)
            l->weight[q] = (float)w[q];
        for (q = 0; q < (size_t)l->channels; q++)
            l->bias[q] = (float)b[q];
    } else {
        ep_error_prefix(ctx->err, "refit of '%s'", l->name);
    }
    free(w);
    free(b);
    return rc;
}

/* Relative error of consumer `layer` before and after its refit (the
 * same without reconstruction). */
static int refit_consumer(prune_ctx *ctx, int layer, double *before,
                          double *after, ep_prune_group_report *rep)
{
    const ep_layer *l = &ctx->work->layers[layer];
    ep_lsq_fit fit;
    fit_visit v;
    int rc;

    memset(&v, 0, sizeof v);
    v.ctx = ctx;
    v.layer = layer;
    rc = conv_geom(ctx, ctx->work, layer, &v.g);
    if (rc != EP_OK)
        return rc;
    v.col = malloc(ep_conv_work_floats(&v.g) * sizeof *v.col);
    v.y = malloc((size_t)v.g.out_ch * v.g.out_len * sizeof *v.y);
    if (v.col == NULL || v.y == NULL)
        rc = ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");

    if (rc == EP_OK && !ctx->opts->reconstruct) {
        rc = for_each_window(ctx, ctx->work, layer, 0, ctx->n_win,
                             visit_error, &v);
        *before = *after = v.total > 0.0 ? sqrt(v.res / v.total)
                                         : sqrt(v.res);
    } else if (rc == EP_OK) {
        rc = ep_lsq_create(l->in_channels * l->kernel, l->channels, &v.q,
                           ctx->err);
        if (rc == EP_OK)
            rc = for_each_window(ctx, ctx->work, layer, 0, ctx->n_win,
                                 visit_fit, &v);
        if (rc == EP_OK)
            rc = ep_lsq_relative_error(v.q, l->weight, l->bias, before,
                                       ctx->err);
        if (rc == EP_OK)
            rc = refit_weights(ctx, &v, &fit);
        if (rc == EP_OK)
            rc = ep_lsq_relative_error(v.q, l->weight, l->bias, after,
                                       ctx->err);
        if (rc == EP_OK) {
            rep->underdetermined += fit.underdetermined;
            if (rep->min_rows_per_unknown == 0.0 ||
                fit.rows_per_unknown < rep->min_rows_per_unknown)
                rep->min_rows_per_unknown = fit.rows_per_unknown;
        }
        ep_lsq_free(v.q);
    }
    free(v.col);
    free(v.y);
    return rc;
}

/* ---- one group ---------------------------------------------------------- */

static int prune_group(prune_ctx *ctx, int producer,
                       ep_prune_group_report *rep)
{
    double t_start = elapsed(ctx), before, after;
    group_state gs;
    int k, refit, rc;

    memset(rep, 0, sizeof *rep);
    snprintf(rep->producer, sizeof rep->producer, "%s",
             ctx->work->layers[producer].name);
    rc = group_init(ctx, producer, &gs);
    rep->channels_before = gs.n_ch;
    rep->n_consumers = gs.n_cons;

    /* Choose and drop; a group that keeps everything is left alone. */
    if (rc == EP_OK)
        rc = report_progress(ctx, "select", 0, 1);
    if (rc == EP_OK && gs.n_keep == gs.n_units)
        for (k = 0; k < gs.n_keep; k++)
            gs.keep_units[k] = k;
    else if (rc == EP_OK)
        rc = select_units(ctx, &gs);
    rep->temperature = gs.temperature;
    if (rc == EP_OK)
        rc = apply_keep(ctx, &gs, rep);

    /* Refit the consumers in forward order, each on inputs captured
     * after the previous refit.  With refit_drifted a group that kept
     * every channel still has its consumers refitted once an earlier group
     * was pruned, since their inputs moved with the layers upstream.  The
     * spec leaves them alone, and so does the default: on the default
     * model the refit of its head moved label agreement by -0.05 to +0.4
     * points and lowered the score error by 1-4 % (docs/pruning-results.md,
     * Observations), too little to depart for. */
    if (rc == EP_OK && rep->channels_after < gs.n_ch)
        ctx->drifted = 1;
    refit = rep->channels_after < gs.n_ch ||
            (ctx->drifted && ctx->opts->refit_drifted);
    for (k = 0; rc == EP_OK && refit && k < gs.n_cons; k++) {
        rc = report_progress(ctx, "reconstruct", k, gs.n_cons);
        if (rc == EP_OK)
            rc = refit_consumer(ctx, gs.cons[k].layer, &before, &after,
                                rep);
        if (rc == EP_OK) {
            rep->err_before = before > rep->err_before ? before
                                                       : rep->err_before;
            rep->err_after = after > rep->err_after ? after
                                                    : rep->err_after;
        }
    }
    group_free(&gs);
    rep->seconds = elapsed(ctx) - t_start;
    return rc;
}

/* ---- the job ------------------------------------------------------------ */

static int check_windows(const ep_net *net, const float *windows,
                         int n_windows, int *in_ch, ep_error *err)
{
    int i, multiple;

    if (windows == NULL || n_windows < 1)
        return ep_error_set(err, EP_EINVAL,
                            "prune: no calibration windows");
    if (net->output < 0 || net->output >= net->n_layers)
        return ep_error_set(err, EP_EINVAL, "prune: network has no output");
    multiple = ep_net_length_multiple(net);
    if (net->meta.window <= 0 || net->meta.window % multiple != 0)
        return ep_error_set(err, EP_EINVAL,
                            "prune: model window %d must be a positive "
                            "multiple of %d", net->meta.window, multiple);
    for (i = 0; i < net->n_layers; i++)
        if (net->layers[i].op == EP_OP_INPUT) {
            *in_ch = net->layers[i].channels;
            return EP_OK;
        }
    return ep_error_set(err, EP_EINVAL, "prune: network has no input");
}

static void ctx_free(prune_ctx *ctx)
{
    int i;

    for (i = 0; ctx->y_orig != NULL && i < ctx->orig->n_layers; i++)
        free(ctx->y_orig[i]);
    free(ctx->y_orig);
    for (i = 0; ctx->bn_scale != NULL && i < ctx->orig->n_layers; i++)
        free(ctx->bn_scale[i]);
    free(ctx->bn_scale);
    ep_net_free(ctx->orig);
    ep_net_free(ctx->work);
}

/* For each convolution of the folded ctx->orig, the scales gamma /
 * sqrt(var + eps) of the batch norm of `net` folded into it: a batch norm
 * reading it that the folded network no longer has. */
static int keep_bn_scales(prune_ctx *ctx, const ep_net *net)
{
    int c, b, j;

    ctx->bn_scale = calloc((size_t)ctx->orig->n_layers,
                           sizeof *ctx->bn_scale);
    if (ctx->bn_scale == NULL)
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    for (c = 0; c < ctx->orig->n_layers; c++) {
        int u = ep_net_find(net, ctx->orig->layers[c].name);

        for (b = u + 1; u >= 0 && b < net->n_layers; b++) {
            const ep_layer *bn = &net->layers[b];

            if (bn->op != EP_OP_BN || bn->inputs[0] != u ||
                ep_net_find(ctx->orig, bn->name) >= 0)
                continue;
            ctx->bn_scale[c] = malloc((size_t)bn->channels *
                                      sizeof *ctx->bn_scale[c]);
            if (ctx->bn_scale[c] == NULL)
                return ep_error_set(ctx->err, EP_ENOMEM,
                                    "prune: out of memory");
            for (j = 0; j < bn->channels; j++)
                ctx->bn_scale[c][j] = bn->gamma[j] /
                                      sqrt((double)bn->var[j] + bn->eps);
            break;
        }
    }
    return EP_OK;
}

/* Fold, clone, find the groups, keep the original outputs. */
static int ctx_init(prune_ctx *ctx, const ep_net *net, int **producers,
                    int *n_prod)
{
    unsigned char *is_consumer;
    int rc;

    rc = ep_net_clone(net, &ctx->orig, ctx->err);
    if (rc == EP_OK)
        rc = ep_net_fold_bn(ctx->orig, ctx->err);
    if (rc == EP_OK && ctx->opts->raw_norms)
        rc = keep_bn_scales(ctx, net);
    if (rc == EP_OK)
        rc = ep_net_clone(ctx->orig, &ctx->work, ctx->err);
    if (rc != EP_OK)
        return rc;
    is_consumer = calloc((size_t)ctx->orig->n_layers, 1);
    ctx->y_orig = calloc((size_t)ctx->orig->n_layers, sizeof *ctx->y_orig);
    if (is_consumer == NULL || ctx->y_orig == NULL) {
        free(is_consumer);
        return ep_error_set(ctx->err, EP_ENOMEM, "prune: out of memory");
    }
    rc = find_groups(ctx->orig, producers, n_prod, is_consumer, ctx->err);
    ctx->n_groups = *n_prod;
    if (rc == EP_OK)
        rc = report_progress(ctx, "calibrate", 0, 1);
    if (rc == EP_OK)
        rc = cache_original(ctx, is_consumer);
    free(is_consumer);
    return rc;
}

/* Progress of the distillation steps, passed on as the stage "distill"
 * with the step just done (1-based) as the round. */
static int distill_progress(const ep_distill_progress *d, void *ud)
{
    prune_ctx *ctx = ud;
    ep_prune_progress p;

    if (ctx->progress == NULL)
        return 0;
    p.group = ctx->n_groups;
    p.n_groups = ctx->n_groups;
    p.round = d->step;
    p.n_rounds = d->steps;
    p.fraction = ctx->groups_share +
                 (1.0 - ctx->groups_share) * d->step / d->steps;
    p.elapsed_s = elapsed(ctx);
    p.stage = "distill";
    return ctx->progress(&p, ctx->ud);
}

/* Distil the pruned network towards the original on the calibration
 * windows, with the job's seed. */
static int distill(prune_ctx *ctx, ep_prune_result *res)
{
    ep_distill_opts o;
    int rc;

    ep_distill_default_opts(&o);
    o.steps = ctx->opts->distill_steps;
    o.seed = ctx->opts->seed;
    if (ctx->opts->distill_lr > 0.0)
        o.lr = ctx->opts->distill_lr;
    rc = ep_distill_run(ctx->work, ctx->orig, ctx->windows, ctx->n_win,
                        ctx->len, &o, distill_progress, ctx, &res->distill,
                        ctx->err);
    if (rc == EP_ECANCELED)
        return ep_error_set(ctx->err, EP_ECANCELED,
                            "prune: cancelled while distilling");
    return rc;
}

int ep_prune_run_rng(const ep_net *net, const float *windows, int n_windows,
                     const ep_prune_opts *opts, ep_rng *rng,
                     ep_prune_progress_fn progress, void *ud,
                     ep_prune_result **out, ep_error *err)
{
    prune_ctx ctx;
    ep_prune_result *res;
    int *producers = NULL, n_prod = 0, g, rc;

    *out = NULL;
    memset(&ctx, 0, sizeof ctx);
    rc = ep_prune_check_opts(opts, err);
    if (rc == EP_OK)
        rc = check_windows(net, windows, n_windows, &ctx.in_ch, err);
    if (rc != EP_OK)
        return rc;
    ctx.opts = opts;
    ctx.windows = windows;
    ctx.n_win = n_windows;
    ctx.len = net->meta.window;
    ctx.batch = opts->batch_windows < n_windows ? opts->batch_windows
                                                : n_windows;
    ctx.n_batches = n_windows / ctx.batch;
    ctx.rng = rng;
    ctx.progress = progress;
    ctx.ud = ud;
    ctx.err = err;
    ctx.groups_share = opts->distill_steps > 0 ? GROUPS_SHARE_WITH_DISTILL
                                               : 1.0;
    clock_gettime(CLOCK_MONOTONIC, &ctx.t0);

    res = calloc(1, sizeof *res);
    rc = res != NULL ? ctx_init(&ctx, net, &producers, &n_prod)
                     : ep_error_set(err, EP_ENOMEM, "prune: out of memory");
    if (rc == EP_OK) {
        res->groups = calloc((size_t)(n_prod > 0 ? n_prod : 1),
                             sizeof *res->groups);
        if (res->groups == NULL)
            rc = ep_error_set(err, EP_ENOMEM, "prune: out of memory");
    }
    for (g = 0; rc == EP_OK && g < n_prod; g++) {
        ctx.group = g;
        res->n_groups = g + 1;
        rc = prune_group(&ctx, producers[g], &res->groups[g]);
    }
    free(producers);
    if (rc == EP_OK && opts->distill_steps > 0)
        rc = distill(&ctx, res);
    if (rc != EP_OK) {
        ep_prune_result_free(res);
        ctx_free(&ctx);
        return rc;
    }
    res->net = ctx.work;
    ctx.work = NULL;
    res->seconds = elapsed(&ctx);
    ctx_free(&ctx);
    *out = res;
    return EP_OK;
}

int ep_prune_run_windows(const ep_net *net, const float *windows,
                         int n_windows, const ep_prune_opts *opts,
                         ep_prune_progress_fn progress, void *ud,
                         ep_prune_result **out, ep_error *err)
{
    ep_rng rng;

    ep_rng_seed(&rng, opts->seed);
    return ep_prune_run_rng(net, windows, n_windows, opts, &rng, progress,
                            ud, out, err);
}

double ep_prune_peak_bytes(const ep_net *net, const ep_prune_opts *opts,
                           int64_t n_windows)
{
    ep_distill_opts d;
    double targets = 0.0, bytes;
    int i, window = net->meta.window;

    for (i = 0; i < net->n_layers; i++)
        if (net->layers[i].op == EP_OP_CONV)
            targets += (double)net->layers[i].channels * window /
                       net->layers[i].rate_div * sizeof(float);
    bytes = (double)n_windows * targets +
            (double)opts->batch_windows * ep_net_window_bytes(net, window, 0);
    ep_distill_default_opts(&d);
    if (opts->distill_steps > 0)
        bytes += ep_train_peak_bytes(net, d.batch);
    return bytes;
}

void ep_prune_result_free(ep_prune_result *res)
{
    int g;

    if (res == NULL)
        return;
    for (g = 0; res->groups != NULL && g < res->n_groups; g++)
        free(res->groups[g].kept);
    free(res->groups);
    ep_net_free(res->net);
    free(res);
}

/* ---- masks JSON --------------------------------------------------------- */

static json_t *group_json(const ep_prune_group_report *rep)
{
    json_t *g = json_object(), *kept = json_array();
    int k;

    if (g == NULL || kept == NULL) {
        json_decref(g);
        json_decref(kept);
        return NULL;
    }
    for (k = 0; k < rep->channels_after; k++)
        json_array_append_new(kept, json_integer(rep->kept[k]));
    json_object_set_new(g, "producer", json_string(rep->producer));
    json_object_set_new(g, "channels_before",
                        json_integer(rep->channels_before));
    json_object_set_new(g, "channels_after",
                        json_integer(rep->channels_after));
    json_object_set_new(g, "kept", kept);
    return g;
}

int ep_prune_masks_json(const ep_prune_result *res,
                        const ep_prune_opts *opts, char **json,
                        ep_error *err)
{
    json_t *root = json_object(), *groups = json_array(), *g;
    int i, failed = root == NULL || groups == NULL;
    char seed[24];

    /* The seed as text: JSON numbers lose 64-bit integers in many
     * readers. */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)opts->seed);
    for (i = 0; !failed && i < res->n_groups; i++) {
        g = group_json(&res->groups[i]);
        failed = g == NULL || json_array_append_new(groups, g) != 0;
    }
    if (!failed) {
        json_object_set_new(root, "method",
                            json_string(ep_prune_method_name(opts->method)));
        json_object_set_new(root, "keep", json_real(opts->keep));
        json_object_set_new(root, "seed", json_string(seed));
        json_object_set_new(root, "reconstruct",
                            json_boolean(opts->reconstruct));
        json_object_set_new(root, "prune_head_input",
                            json_boolean(opts->prune_head_input));
        json_object_set_new(root, "refit_drifted",
                            json_boolean(opts->refit_drifted));
        json_object_set_new(root, "raw_norms",
                            json_boolean(opts->raw_norms));
        json_object_set_new(root, "distill_steps",
                            json_integer(opts->distill_steps));
        json_object_set_new(root, "groups", groups);
        groups = NULL;
        *json = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
        failed = *json == NULL;
    }
    json_decref(groups);
    json_decref(root);
    if (failed)
        return ep_error_set(err, EP_ENOMEM, "prune: out of memory for the "
                            "masks JSON");
    return EP_OK;
}
