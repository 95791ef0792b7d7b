/*
 * ep_train.c - training a network: the whole-graph backward pass (the
 * layer list walked in reverse over the outputs a training plan kept),
 * AdamW with a warm-up + cosine learning-rate schedule, BN running
 * statistics, checkpoints that resume bit-identically, and the training
 * and fine-tuning loops.
 *
 * Determinism: every step draws its windows from a generator seeded with
 * (seed, step), so a run depends only on the seed, the data and the step
 * number, and a resumed run repeats exactly what an uninterrupted one
 * does (given the same BLAS threading).
 */
#include "ecgprune/ep_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ecgprune/ep_grad.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_ops.h"
#include "ecgprune/ep_plan.h"
#include "ep_net_priv.h"

#define TRAIN_STATE_MAGIC "EPTRAIN1"

/* One trainable tensor: a view into the net and into the flat gradient
 * and moment arrays. */
typedef struct train_param {
    float *value;
    size_t n, offset;    /* floats; position in pgrad, m and v */
    int decay;           /* conv weights take weight decay */
} train_param;

struct ep_trainer {
    ep_net *net;
    ep_plan *plan;
    int batch, length;
    int *frozen;         /* per layer */
    int *needs_grad;     /* per layer: its output gradient is wanted */
    float **grad;        /* per layer output gradient, or NULL */
    ep_conv_geom *geom;  /* per conv layer */
    size_t *param_at;    /* per layer: offset of its first tensor + 1 */
    train_param *params;
    int n_params;
    size_t n_floats;
    float *pgrad, *m, *v;
    float *work;
    int64_t step;
};

void ep_train_default_opts(ep_train_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->epochs = 6;
    opts->batch = 16;
    opts->lr = 3e-3;
    opts->weight_decay = 1e-4;
    opts->seed = 1;
    opts->augment = 1;
    opts->rare_fraction = 0.3;
    opts->warmup_fraction = 0.05;
}

void ep_finetune_default_opts(ep_train_opts *opts)
{
    ep_train_default_opts(opts);
    opts->epochs = 16;
    opts->batch = 8;
    opts->lr = 5e-4;
    opts->rare_fraction = 0.2;
    opts->warmup_fraction = 0.0;
}

double ep_train_peak_bytes(const ep_net *net, int batch)
{
    return 2.0 * batch * ep_net_window_bytes(net, net->meta.window, 0);
}

/* ---- trainer --------------------------------------------------------- */

void ep_trainer_free(ep_trainer *tr)
{
    int i;

    if (tr == NULL)
        return;
    for (i = 0; tr->grad != NULL && i < tr->net->n_layers; i++)
        free(tr->grad[i]);
    ep_plan_free(tr->plan);
    free(tr->grad);
    free(tr->frozen);
    free(tr->needs_grad);
    free(tr->geom);
    free(tr->param_at);
    free(tr->params);
    free(tr->pgrad);
    free(tr->m);
    free(tr->v);
    free(tr->work);
    free(tr);
}

/* Which layers are frozen, and whose output gradient the pass needs: a
 * layer's if it or anything before it on its inputs' paths trains. */
static int mark_layers(ep_trainer *tr, int freeze_encoder, ep_error *err)
{
    const ep_net *net = tr->net;
    int i, j, encoder_end = 0;

    if (freeze_encoder) {
        for (i = 0; i < net->n_layers; i++)
            if (net->layers[i].op == EP_OP_IDWT)
                break;
        if (i == net->n_layers)
            return ep_error_set(err, EP_EINVAL, "train: --freeze-encoder "
                                "needs a decoder (an IDWT layer)");
        encoder_end = net->layers[i].inputs[0];
    }
    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];
        int has_params = l->op == EP_OP_CONV || l->op == EP_OP_BN;

        tr->frozen[i] = i < encoder_end;
        tr->needs_grad[i] = has_params && !tr->frozen[i];
        for (j = 0; j < l->n_inputs; j++)
            if (tr->needs_grad[l->inputs[j]])
                tr->needs_grad[i] = 1;
    }
    return EP_OK;
}

/* Lay the trainable tensors out in one flat array each for gradients and
 * the two AdamW moments. */
static int layout_params(ep_trainer *tr, ep_error *err)
{
    ep_net *net = tr->net;
    int i;

    tr->params = calloc((size_t)2 * net->n_layers + 1, sizeof *tr->params);
    if (tr->params == NULL)
        return ep_error_set(err, EP_ENOMEM, "train: out of memory");
    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];
        train_param *p = &tr->params[tr->n_params];

        if (tr->frozen[i] || (l->op != EP_OP_CONV && l->op != EP_OP_BN))
            continue;
        tr->param_at[i] = (size_t)tr->n_params + 1;
        p[0].value = l->op == EP_OP_CONV ? l->weight : l->gamma;
        p[0].n = l->op == EP_OP_CONV ? ep_net_conv_weight_floats(l)
                                     : (size_t)l->channels;
        p[0].decay = l->op == EP_OP_CONV;
        p[1].value = l->op == EP_OP_CONV ? l->bias : l->beta;
        p[1].n = (size_t)l->channels;
        p[0].offset = tr->n_floats;
        p[1].offset = tr->n_floats + p[0].n;
        tr->n_floats += p[0].n + p[1].n;
        tr->n_params += 2;
    }
    tr->pgrad = calloc(tr->n_floats + 1, sizeof *tr->pgrad);
    tr->m = calloc(tr->n_floats + 1, sizeof *tr->m);
    tr->v = calloc(tr->n_floats + 1, sizeof *tr->v);
    if (tr->pgrad == NULL || tr->m == NULL || tr->v == NULL)
        return ep_error_set(err, EP_ENOMEM, "train: out of memory");
    return EP_OK;
}

/* Output gradient buffers, conv geometry and the shared work space. */
static int alloc_buffers(ep_trainer *tr, ep_error *err)
{
    const ep_net *net = tr->net;
    size_t work = 1;
    int i, rc, len;

    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];
        size_t floats;

        ep_plan_output(tr->plan, i, NULL, &len);
        floats = (size_t)l->channels * (size_t)len;
        if (floats > work)
            work = floats;
        if (tr->needs_grad[i]) {
            tr->grad[i] = malloc(floats * (size_t)tr->batch * sizeof(float));
            if (tr->grad[i] == NULL)
                return ep_error_set(err, EP_ENOMEM, "train: out of memory "
                                    "for gradients");
        }
        if (l->op != EP_OP_CONV)
            continue;
        rc = ep_conv_geom_init(&tr->geom[i], l->in_channels, l->channels,
                               l->kernel, l->stride, l->dilation, l->padding,
                               tr->length / net->layers[l->inputs[0]].rate_div,
                               err);
        if (rc != EP_OK)
            return rc;
        if (ep_grad_conv_work_floats(&tr->geom[i]) > work)
            work = ep_grad_conv_work_floats(&tr->geom[i]);
    }
    tr->work = malloc(work * sizeof *tr->work);
    if (tr->work == NULL)
        return ep_error_set(err, EP_ENOMEM, "train: out of memory");
    return EP_OK;
}

int ep_trainer_create(ep_net *net, int batch, int length,
                      int freeze_encoder, ep_trainer **out, ep_error *err)
{
    size_t n = (size_t)(net->n_layers > 0 ? net->n_layers : 1);
    ep_trainer *tr;
    int rc;

    *out = NULL;
    tr = calloc(1, sizeof *tr);
    if (tr == NULL)
        return ep_error_set(err, EP_ENOMEM, "train: out of memory");
    tr->net = net;
    tr->batch = batch;
    tr->length = length;
    tr->frozen = calloc(n, sizeof *tr->frozen);
    tr->needs_grad = calloc(n, sizeof *tr->needs_grad);
    tr->grad = calloc(n, sizeof *tr->grad);
    tr->geom = calloc(n, sizeof *tr->geom);
    tr->param_at = calloc(n, sizeof *tr->param_at);
    rc = tr->frozen && tr->needs_grad && tr->grad && tr->geom &&
                 tr->param_at
             ? EP_OK
             : ep_error_set(err, EP_ENOMEM, "train: out of memory");
    if (rc == EP_OK)
        rc = ep_plan_create(net, batch, length, EP_PLAN_TRAIN, &tr->plan,
                            err);
    if (rc == EP_OK)
        rc = mark_layers(tr, freeze_encoder, err);
    if (rc == EP_OK)
        rc = layout_params(tr, err);
    if (rc == EP_OK)
        rc = alloc_buffers(tr, err);
    if (rc != EP_OK) {
        ep_trainer_free(tr);
        return rc;
    }
    *out = tr;
    return EP_OK;
}

const float *ep_trainer_param_grad(const ep_trainer *tr, int layer,
                                   int which)
{
    if (layer < 0 || layer >= tr->net->n_layers || which < 0 || which > 1 ||
        tr->param_at[layer] == 0)
        return NULL;
    return tr->pgrad + tr->params[tr->param_at[layer] - 1 + which].offset;
}

int64_t ep_trainer_steps(const ep_trainer *tr)
{
    return tr->step;
}

/* ---- backward pass --------------------------------------------------- */

/* Parameter gradient arrays of layer i (NULL when frozen). */
static float *pgrad_of(ep_trainer *tr, int i, int which)
{
    return (float *)ep_trainer_param_grad(tr, i, which);
}

static void backward_conv(ep_trainer *tr, int i)
{
    const ep_layer *l = &tr->net->layers[i];
    const ep_conv_geom *g = &tr->geom[i];
    const float *x = ep_plan_output(tr->plan, l->inputs[0], NULL, NULL);
    float *dx = tr->needs_grad[l->inputs[0]] ? tr->grad[l->inputs[0]] : NULL;
    size_t in_stride = (size_t)g->in_ch * g->in_len;
    size_t out_stride = (size_t)g->out_ch * g->out_len;
    int n;

    for (n = 0; n < tr->batch; n++)
        ep_grad_conv(g, x + n * in_stride, l->weight,
                     tr->grad[i] + n * out_stride, pgrad_of(tr, i, 0),
                     pgrad_of(tr, i, 1), dx ? dx + n * in_stride : NULL,
                     tr->work);
}

static void backward_bn(ep_trainer *tr, int i)
{
    const ep_layer *l = &tr->net->layers[i];
    const float *x = ep_plan_output(tr->plan, l->inputs[0], NULL, NULL);
    const float *mean, *inv_std;
    float *dgamma = pgrad_of(tr, i, 0), *dbeta = pgrad_of(tr, i, 1);
    int len;

    ep_plan_output(tr->plan, i, NULL, &len);
    ep_plan_bn_stats(tr->plan, i, &mean, &inv_std, NULL);
    /* A frozen BN still passes the gradient on; its own parameter
     * gradients go to the work space and are dropped. */
    if (dgamma == NULL) {
        memset(tr->work, 0, 2 * (size_t)l->channels * sizeof *tr->work);
        dgamma = tr->work;
        dbeta = tr->work + l->channels;
    }
    ep_grad_bn(tr->batch, l->channels, len, x, mean, inv_std, l->gamma,
               tr->grad[i], dgamma, dbeta,
               tr->needs_grad[l->inputs[0]] ? tr->grad[l->inputs[0]] : NULL);
}

static void backward_wavelet(ep_trainer *tr, int i)
{
    const ep_layer *l = &tr->net->layers[i];
    int in_len, n;
    size_t stride;

    ep_plan_output(tr->plan, l->inputs[0], NULL, &in_len);
    stride = (size_t)l->in_channels * in_len;
    for (n = 0; n < tr->batch; n++) {
        const float *dy = tr->grad[i] + n * stride;
        float *dx = tr->grad[l->inputs[0]] + n * stride;

        if (l->op == EP_OP_DWT)
            ep_grad_dwt(l->wavelet, l->in_channels, in_len, dy, dx,
                        tr->work);
        else
            ep_grad_idwt(l->wavelet, l->channels, in_len, dy, dx, tr->work);
    }
}

static void backward_concat(ep_trainer *tr, int i)
{
    const ep_layer *l = &tr->net->layers[i];
    int len, n, j, first;

    ep_plan_output(tr->plan, i, NULL, &len);
    for (n = 0; n < tr->batch; n++) {
        const float *dy = tr->grad[i] + (size_t)n * l->channels * len;

        first = 0;
        for (j = 0; j < l->n_inputs; j++) {
            int src = l->inputs[j], ch = tr->net->layers[src].channels;

            if (tr->needs_grad[src])
                ep_grad_concat_part(first, ch, len, dy,
                                    tr->grad[src] + (size_t)n * ch * len);
            first += ch;
        }
    }
}

/* Walk the layers in reverse; each adds its input gradients into its
 * inputs' buffers, so a layer read twice receives the sum. */
static void backward(ep_trainer *tr)
{
    const ep_net *net = tr->net;
    int i, len;

    for (i = net->n_layers - 1; i >= 0; i--) {
        const ep_layer *l = &net->layers[i];

        if (!tr->needs_grad[i])
            continue;
        switch (l->op) {
        case EP_OP_CONV: backward_conv(tr, i); break;
        case EP_OP_BN: backward_bn(tr, i); break;
        case EP_OP_RELU:
            if (tr->needs_grad[l->inputs[0]]) {
                ep_plan_output(tr->plan, i, NULL, &len);
                ep_grad_relu((size_t)tr->batch * l->channels * len,
                             ep_plan_output(tr->plan, i, NULL, NULL),
                             tr->grad[i], tr->grad[l->inputs[0]]);
            }
            break;
        case EP_OP_DWT:
        case EP_OP_IDWT:
            if (tr->needs_grad[l->inputs[0]])
                backward_wavelet(tr, i);
            break;
        case EP_OP_CONCAT: backward_concat(tr, i); break;
        case EP_OP_INPUT: break;
        }
    }
}

/* Forward pass on x, then clear every gradient but the output's, which
 * the loss overwrites. */
static int forward_and_clear(ep_trainer *tr, const float *x,
                             const float **logits, int *classes, int *len,
                             ep_error *err)
{
    const ep_net *net = tr->net;
    int i, rc;

    if (!tr->needs_grad[net->output])
        return ep_error_set(err, EP_EINVAL, "train: nothing to train");
    rc = ep_plan_run(tr->plan, x, err);
    if (rc != EP_OK)
        return rc;
    *logits = ep_plan_output(tr->plan, net->output, classes, len);
    memset(tr->pgrad, 0, tr->n_floats * sizeof *tr->pgrad);
    for (i = 0; i < net->n_layers; i++)
        if (tr->grad[i] != NULL && i != net->output) {
            int channels, length;

            ep_plan_output(tr->plan, i, &channels, &length);
            memset(tr->grad[i], 0, (size_t)tr->batch * channels * length *
                                       sizeof(float));
        }
    return EP_OK;
}

/* With the output's gradient in place: check the loss, run backward. */
static int finish_gradients(ep_trainer *tr, double mean_loss, double *loss,
                            ep_error *err)
{
    *loss = mean_loss;
    if (!isfinite(mean_loss))
        return ep_error_set(err, EP_ENUMERIC, "train: loss is %g",
                            mean_loss);
    backward(tr);
    return EP_OK;
}

int ep_trainer_gradients(ep_trainer *tr, const float *x,
                         const uint8_t *target, const float *class_weights,
                         double *loss, ep_error *err)
{
    float *dlogits = tr->grad[tr->net->output];
    int classes, len, n, rc;
    double total_w = 0.0, sum = 0.0;
    size_t k, per_item;
    const float *logits;

    rc = forward_and_clear(tr, x, &logits, &classes, &len, err);
    if (rc != EP_OK)
        return rc;
    per_item = (size_t)classes * len;
    for (k = 0; k < (size_t)tr->batch * len; k++) {
        if (target[k] >= classes)
            return ep_error_set(err, EP_EINVAL, "train: target %d at "
                                "sample %zu, the net has %d classes",
                                target[k], k, classes);
        total_w += class_weights ? class_weights[target[k]] : 1.0;
    }
    if (!(total_w > 0.0))
        return ep_error_set(err, EP_EINVAL, "train: the targets' class "
                            "weights sum to %g", total_w);

    for (n = 0; n < tr->batch; n++)
        sum += ep_grad_softmax_xent(classes, len, logits + n * per_item,
                                    target + (size_t)n * len, class_weights,
                                    1.0 / total_w, dlogits + n * per_item);
    return finish_gradients(tr, sum / total_w, loss, err);
}

int ep_trainer_gradients_soft(ep_trainer *tr, const float *x,
                              const float *probs, double *loss,
                              ep_error *err)
{
    float *dlogits = tr->grad[tr->net->output];
    int classes, len, n, rc;
    double sum = 0.0, scale;
    size_t per_item;
    const float *logits;

    rc = forward_and_clear(tr, x, &logits, &classes, &len, err);
    if (rc != EP_OK)
        return rc;
    per_item = (size_t)classes * len;
    scale = 1.0 / ((double)tr->batch * len);
    for (n = 0; n < tr->batch; n++)
        sum += ep_grad_softmax_soft_xent(classes, len, logits + n * per_item,
                                         probs + n * per_item, scale,
                                         dlogits + n * per_item);
    return finish_gradients(tr, sum * scale, loss, err);
}

/* ---- optimiser -------------------------------------------------------- */

/* Running statistics of the trainable BN layers, from the last batch. */
static void update_bn_stats(ep_trainer *tr)
{
    const ep_net *net = tr->net;
    int i, c, len;

    for (i = 0; i < net->n_layers; i++) {
        ep_layer *l = &net->layers[i];
        const float *mean, *inv_std;
        double count, var;

        if (l->op != EP_OP_BN || tr->frozen[i])
            continue;
        ep_plan_output(tr->plan, i, NULL, &len);
        ep_plan_bn_stats(tr->plan, i, &mean, &inv_std, NULL);
        count = (double)tr->batch * len;
        for (c = 0; c < l->channels; c++) {
            var = 1.0 / ((double)inv_std[c] * inv_std[c]) - l->eps;
            if (var < 0.0)
                var = 0.0;
            if (count > 1.0)
                var *= count / (count - 1.0);
            l->mean[c] = (float)((1.0 - EP_TRAIN_BN_MOMENTUM) * l->mean[c] +
                                 EP_TRAIN_BN_MOMENTUM * mean[c]);
            l->var[c] = (float)((1.0 - EP_TRAIN_BN_MOMENTUM) * l->var[c] +
                                EP_TRAIN_BN_MOMENTUM * var);
        }
    }
}

void ep_trainer_step(ep_trainer *tr, double lr, double weight_decay)
{
    double t = (double)(tr->step + 1);
    double c1 = 1.0 - pow(EP_TRAIN_ADAM_BETA1, t);
    double c2 = 1.0 - pow(EP_TRAIN_ADAM_BETA2, t);
    int p;
    size_t k;

    for (p = 0; p < tr->n_params; p++) {
        const train_param *tp = &tr->params[p];
        double decay = tp->decay ? lr * weight_decay : 0.0;

        for (k = 0; k < tp->n; k++) {
            size_t at = tp->offset + k;
            double g = tr->pgrad[at], m, v;

            m = EP_TRAIN_ADAM_BETA1 * tr->m[at] +
                (1.0 - EP_TRAIN_ADAM_BETA1) * g;
            v = EP_TRAIN_ADAM_BETA2 * tr->v[at] +
                (1.0 - EP_TRAIN_ADAM_BETA2) * g * g;
            tr->m[at] = (float)m;
            tr->v[at] = (float)v;
            tp->value[k] = (float)(tp->value[k] * (1.0 - decay) -
                                   lr * (m / c1) /
                                       (sqrt(v / c2) + EP_TRAIN_ADAM_EPS));
        }
    }
    update_bn_stats(tr);
    tr->step++;
}

/* ---- checkpoints ------------------------------------------------------ */

/* The optimiser state: magic, step, seed, float count, m, v (native
 * byte order; Limitation: a state file moves only between machines of
 * the same endianness), written by the model file's own rules: no special
 * file replaced, a temporary file renamed into place. */
static int save_state(const ep_trainer *tr, const char *path, uint64_t seed,
                      ep_error *err)
{
    size_t moments = tr->n_floats * sizeof *tr->m;
    size_t len = 8 + 3 * sizeof(uint64_t) + 2 * moments;
    uint64_t head[3];
    char final[4096];
    unsigned char *buf;
    int rc;

    if (snprintf(final, sizeof final, "%s.opt", path) >= (int)sizeof final)
        return ep_error_set(err, EP_EINVAL, "checkpoint: path too long");
    buf = malloc(len);
    if (buf == NULL)
        return ep_error_set(err, EP_ENOMEM, "checkpoint: out of memory");
    head[0] = (uint64_t)tr->step;
    head[1] = seed;
    head[2] = tr->n_floats;
    memcpy(buf, TRAIN_STATE_MAGIC, 8);
    memcpy(buf + 8, head, sizeof head);
    memcpy(buf + 8 + sizeof head, tr->m, moments);
    memcpy(buf + 8 + sizeof head + moments, tr->v, moments);
    rc = ep_model_write_file(final, buf, len, err);
    free(buf);
    return rc;
}

/* Limitation: the model and the state are renamed into place one after
 * the other; a crash between the two leaves a model one checkpoint newer
 * than its optimiser state. */
int ep_trainer_save(const ep_trainer *tr, const char *path, uint64_t seed,
                    ep_error *err)
{
    int rc = ep_model_save(tr->net, path, err);

    if (rc != EP_OK)
        return rc;
    return save_state(tr, path, seed, err);
}

/* Copy the weights of `from` into `to`, which must have the same layers. */
static int copy_weights(ep_net *to, const ep_net *from, const char *path,
                        ep_error *err)
{
    int i;

    if (to->n_layers != from->n_layers)
        return ep_error_set(err, EP_EFORMAT, "checkpoint '%s': %d layers, "
                            "the net has %d", path, from->n_layers,
                            to->n_layers);
    for (i = 0; i < to->n_layers; i++) {
        ep_layer *a = &to->layers[i];
        const ep_layer *b = &from->layers[i];
        size_t ch = (size_t)a->channels * sizeof(float);

        if (a->op != b->op || a->channels != b->channels ||
            a->in_channels != b->in_channels || a->kernel != b->kernel)
            return ep_error_set(err, EP_EFORMAT, "checkpoint '%s': layer "
                                "'%s' differs from the net's '%s'", path,
                                b->name, a->name);
        if (a->op == EP_OP_CONV) {
            memcpy(a->weight, b->weight,
                   ep_net_conv_weight_floats(a) * sizeof(float));
            memcpy(a->bias, b->bias, ch);
        } else if (a->op == EP_OP_BN) {
            memcpy(a->gamma, b->gamma, ch);
            memcpy(a->beta, b->beta, ch);
            memcpy(a->mean, b->mean, ch);
            memcpy(a->var, b->var, ch);
        }
    }
    return EP_OK;
}

static int load_state(ep_trainer *tr, const char *path, uint64_t seed,
                      ep_error *err)
{
    char name[4096], magic[8];
    uint64_t head[3];
    FILE *f;
    int ok;

    if (snprintf(name, sizeof name, "%s.opt", path) >= (int)sizeof name)
        return ep_error_set(err, EP_EINVAL, "checkpoint: path too long");
    f = fopen(name, "rb");
    if (f == NULL)
        return ep_error_set(err, EP_EIO, "checkpoint: cannot read '%s'",
                            name);
    ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, TRAIN_STATE_MAGIC, 8) == 0
         && fread(head, sizeof head, 1, f) == 1;
    if (!ok || head[1] != seed || head[2] != tr->n_floats) {
        fclose(f);
        return ep_error_set(err, EP_EFORMAT, "checkpoint '%s': expected an "
                            "optimiser state of %zu floats for seed %llu",
                            name, tr->n_floats, (unsigned long long)seed);
    }
    ok = fread(tr->m, sizeof *tr->m, tr->n_floats, f) == tr->n_floats &&
         fread(tr->v, sizeof *tr->v, tr->n_floats, f) == tr->n_floats &&
         fgetc(f) == EOF;
    fclose(f);
    if (!ok)
        return ep_error_set(err, EP_EFORMAT, "checkpoint '%s': truncated or "
                            "overlong moments", name);
    tr->step = (int64_t)head[0];
    return EP_OK;
}

int ep_trainer_load(ep_trainer *tr, const char *path, uint64_t seed,
                    ep_error *err)
{
    ep_net *saved;
    int rc = ep_model_load(path, &saved, err);

    if (rc != EP_OK)
        return rc;
    rc = copy_weights(tr->net, saved, path, err);
    ep_net_free(saved);
    if (rc == EP_OK)
        rc = load_state(tr, path, seed, err);
    if (rc == EP_OK)
        rc = ep_plan_refresh(tr->plan, err);
    return rc;
}

/* ---- the training loop ------------------------------------------------ */

/* Linear warm-up to the peak, then a cosine down to 1 % of it. */
static double schedule(const ep_train_opts *o, int64_t step, int64_t total)
{
    int64_t warm = (int64_t)ceil(o->warmup_fraction * (double)total);
    double progress;

    if (step < warm)
        return o->lr * (double)(step + 1) / (double)warm;
    progress = total > warm ? (double)(step - warm) / (double)(total - warm)
                            : 1.0;
    return o->lr * (0.01 + 0.99 * 0.5 * (1.0 + cos(M_PI * progress)));
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int check_opts(const ep_train_opts *o, int window, ep_error *err)
{
    if (o->epochs < 1 || o->epochs > 100000)
        return ep_error_set(err, EP_EINVAL, "train: epochs %d: expected "
                            "1..100000", o->epochs);
    if (o->batch < 1 || o->batch > 4096)
        return ep_error_set(err, EP_EINVAL, "train: batch %d: expected "
                            "1..4096", o->batch);
    if (o->steps_per_epoch < 0)
        return ep_error_set(err, EP_EINVAL, "train: steps per epoch %d: "
                            "expected 0 (one pass) or more",
                            o->steps_per_epoch);
    if (!(o->lr > 0.0 && o->lr < 10.0))
        return ep_error_set(err, EP_EINVAL, "train: learning rate %g: "
                            "expected more than 0 and less than 10", o->lr);
    if (!(o->weight_decay >= 0.0))
        return ep_error_set(err, EP_EINVAL, "train: weight decay %g: "
                            "expected 0 or more", o->weight_decay);
    if (!(o->rare_fraction >= 0.0 && o->rare_fraction <= 1.0))
        return ep_error_set(err, EP_EINVAL, "train: rare fraction %g: "
                            "expected 0..1", o->rare_fraction);
    if (!(o->warmup_fraction >= 0.0 && o->warmup_fraction < 1.0))
        return ep_error_set(err, EP_EINVAL, "train: warm-up fraction %g: "
                            "expected at least 0 and less than 1",
                            o->warmup_fraction);
    if (window <= 0 || o->checkpoint_every < 0 ||
        (o->resume && o->checkpoint == NULL))
        return ep_error_set(err, EP_EINVAL, "train: window %d, checkpoint "
                            "every %d; resuming needs a checkpoint path",
                            window, o->checkpoint_every);
    return EP_OK;
}

/* State of one run that the loop's steps share. */
typedef struct train_run {
    const ep_train_opts *o;
    ep_trainer *tr;
    ep_dataset *ds;
    float weights[EP_MAX_CLASSES];
    float *x;
    uint8_t *target;
    int window;
    int64_t steps_per_epoch, total;
} train_run;

/* One step: draw, forward, backward, update. */
static int run_step(train_run *r, double *loss, ep_error *err)
{
    int64_t step = ep_trainer_steps(r->tr);
    ep_rng rng;
    int rc;

    ep_rng_seed(&rng, r->o->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)step);
    ep_dataset_draw(r->ds, &rng, r->o->batch, r->o->rare_fraction,
                    r->o->augment, r->x, r->target);
    rc = ep_trainer_gradients(r->tr, r->x, r->target, r->weights, loss,
                              err);
    if (rc != EP_OK)
        return rc;
    ep_trainer_step(r->tr, schedule(r->o, step, r->total),
                    r->o->weight_decay);
    return EP_OK;
}

static int train_loop(train_run *r, ep_train_progress_fn progress, void *ud,
                      ep_error *err)
{
    const ep_train_opts *o = r->o;
    int64_t first = ep_trainer_steps(r->tr), step;
    int64_t every = o->checkpoint_every > 0 ? o->checkpoint_every
                                            : r->steps_per_epoch;
    double start = now_s(), epoch_loss = 0.0, loss;
    int rc = EP_OK, epoch_steps = 0;

    for (step = first; step < r->total; step++) {
        ep_train_progress p;
        double spent;

        rc = run_step(r, &loss, err);
        if (rc != EP_OK)
            return rc;
        if (step % r->steps_per_epoch == 0)
            epoch_loss = 0.0, epoch_steps = 0;
        epoch_loss += loss;
        epoch_steps++;

        /* Report: mean loss of the epoch so far, speed of this session. */
        spent = now_s() - start;
        p.epoch = (int)(step / r->steps_per_epoch) + 1;
        p.epochs = o->epochs;
        p.step = step + 1;
        p.steps = r->total;
        p.loss = epoch_loss / epoch_steps;
        p.rate_windows_s = spent > 0.0 ? (double)(step + 1 - first) *
                                             o->batch / spent
                                       : 0.0;
        p.eta_s = (double)(r->total - step - 1) * spent /
                  (double)(step + 1 - first);
        p.fraction = (double)(step + 1) / (double)r->total;
        if (progress != NULL && progress(&p, ud) != 0) {
            if (o->checkpoint != NULL)
                rc = ep_trainer_save(r->tr, o->checkpoint, o->seed, err);
            return rc != EP_OK ? rc
                               : ep_error_set(err, EP_ECANCELED,
                                              "train: cancelled at step "
                                              "%lld", (long long)step + 1);
        }
        if (o->checkpoint != NULL &&
            ((step + 1) % every == 0 || step + 1 == r->total)) {
            rc = ep_trainer_save(r->tr, o->checkpoint, o->seed, err);
            if (rc != EP_OK)
                return rc;
        }
    }
    return EP_OK;
}

static int train(ep_net *net, const ep_train_segment *segs, int n_segs,
                 const ep_train_opts *o, ep_train_progress_fn progress,
                 void *ud, ep_error *err)
{
    train_run r;
    int rc;

    memset(&r, 0, sizeof r);
    r.o = o;
    r.window = o->window > 0 ? o->window : net->meta.window;
    rc = check_opts(o, r.window, err);
    if (rc != EP_OK)
        return rc;

    /* Data, trainer, buffers; then resume if asked. */
    rc = ep_dataset_create(net, segs, n_segs, r.window, &r.ds, err);
    if (rc == EP_OK)
        rc = ep_trainer_create(net, o->batch, r.window, o->freeze_encoder,
                               &r.tr, err);
    if (rc == EP_OK) {
        r.x = malloc((size_t)o->batch * r.window * sizeof *r.x);
        r.target = malloc((size_t)o->batch * r.window);
        if (r.x == NULL || r.target == NULL)
            rc = ep_error_set(err, EP_ENOMEM, "train: out of memory");
    }
    if (rc == EP_OK) {
        int64_t windows = ep_dataset_windows(r.ds);

        ep_dataset_class_weights(r.ds, r.weights);
        r.steps_per_epoch = o->steps_per_epoch > 0 ? o->steps_per_epoch
                                                   : windows / o->batch;
        if (r.steps_per_epoch < 1)
            r.steps_per_epoch = 1;
        r.total = r.steps_per_epoch * o->epochs;
        if (o->resume)
            rc = ep_trainer_load(r.tr, o->checkpoint, o->seed, err);
    }
    if (rc == EP_OK)
        rc = train_loop(&r, progress, ud, err);
    free(r.x);
    free(r.target);
    ep_trainer_free(r.tr);
    ep_dataset_free(r.ds);
    return rc;
}

int ep_train_run(ep_net *net, const ep_train_segment *segs, int n_segs,
                 const ep_train_opts *opts, ep_train_progress_fn progress,
                 void *ud, ep_error *err)
{
    ep_train_opts o;

    if (opts == NULL) {
        ep_train_default_opts(&o);
        opts = &o;
    }
    return train(net, segs, n_segs, opts, progress, ud, err);
}

int ep_finetune_run(ep_net *net, const ep_train_segment *segs, int n_segs,
                    const ep_train_opts *opts, ep_train_progress_fn progress,
                    void *ud, ep_error *err)
{
    ep_train_opts o;

    if (opts == NULL) {
        ep_finetune_default_opts(&o);
        opts = &o;
    }
    return train(net, segs, n_segs, opts, progress, ud, err);
}
