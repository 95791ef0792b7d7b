/*
 * test_train.c - training on real ECG: per-sample targets on hand-worked
 * cases, a short run on windows of MIT-BIH record 208 (shipped excerpt)
 * that must lower the loss, a checkpointed run interrupted and resumed
 * that must end bit-identical to an uninterrupted one, and fine-tuning
 * with a frozen encoder that must leave the encoder bit-identical.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_net.h"
#include "ecgprune/ep_score.h"
#include "ecgprune/ep_train.h"
#include "ecgprune/ep_wfdb.h"

/* Record 208 of the excerpt: MLII in mV and its reference beats. */
typedef struct record_data {
    float *mv;
    int64_t n;
    double fs;
    ep_ref_beat *beats;
    size_t n_beats;
} record_data;

static void read_record(const char *name, record_data *d)
{
    const char *dir = getenv("EXCERPT");
    char path[1024];
    ep_record *rec;
    ep_annotations *ann;
    ep_error err;
    int s;

    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/data/mitdb-excerpt",
             name);
    REQUIRE(ep_wfdb_read_record(path, &rec, &err) == EP_OK);
    s = ep_wfdb_find_signal(rec, "MLII");
    REQUIRE(s >= 0);
    d->n = rec->n_samples;
    d->fs = rec->sampling_rate;
    d->mv = malloc((size_t)d->n * sizeof *d->mv);
    REQUIRE(d->mv != NULL);
    REQUIRE(ep_wfdb_signal_physical(rec, s, d->mv, &err) == EP_OK);
    ep_wfdb_free_record(rec);
    REQUIRE(ep_wfdb_read_annotations(path, "atr", &ann, &err) == EP_OK);
    REQUIRE(ep_score_reference(ann, 0, &d->beats, &d->n_beats, &err) ==
            EP_OK);
    ep_wfdb_free_annotations(ann);
}

static ep_train_segment segment_of(const record_data *d)
{
    ep_train_segment s;

    s.mv = d->mv;
    s.n = d->n;
    s.fs = d->fs;
    s.beats = d->beats;
    s.n_beats = d->n_beats;
    return s;
}

/* A small U-Net at the records' rate with 512-sample windows. */
static ep_net *small_net(uint64_t seed)
{
    ep_unet_config cfg;
    ep_net *net;
    ep_error err;

    ep_unet_default_config(&cfg);
    cfg.depth = 3;
    cfg.widths[0] = 4;
    cfg.widths[1] = 8;
    cfg.widths[2] = 16;
    cfg.kernel = 5;
    cfg.meta.window = 512;
    REQUIRE(ep_unet_build(&cfg, seed, &net, &err) == EP_OK);
    return net;
}

/* Hand-worked targets: +-50 ms is +-18 samples at 360 Hz, +-9 at 180. */
static void test_targets(void)
{
    const ep_ref_beat beats[3] = {
        {100, EP_AAMI_N}, {300, EP_AAMI_V}, {395, EP_AAMI_S}
    };
    uint8_t t[400], half[200];
    int i;

    ep_dataset_targets(beats, 3, 360.0, 360.0, 400, t);
    for (i = 0; i < 400; i++) {
        int want = 0;

        if (i >= 82 && i <= 118)
            want = 1;
        else if (i >= 282 && i <= 318)
            want = 3;
        else if (i >= 377)
            want = 2;
        CHECK_MSG(t[i] == want, "sample %d: %d, expected %d", i, t[i], want);
    }
    ep_dataset_targets(beats, 1, 360.0, 180.0, 200, half);
    for (i = 0; i < 200; i++)
        CHECK_EQ_INT(half[i], i >= 41 && i <= 59 ? 1 : 0);
}

/* The same fixed batch of real windows, 40 steps: the loss must fall. */
static void test_loss_falls(const record_data *rec)
{
    ep_train_segment seg = segment_of(rec);
    ep_net *net = small_net(3);
    ep_dataset *ds;
    ep_trainer *tr;
    ep_error err;
    ep_rng rng;
    float x[8 * 512], weights[EP_MAX_CLASSES];
    uint8_t target[8 * 512];
    double first = 0.0, loss = 0.0;
    int64_t counts[EP_MAX_CLASSES];
    int step;

    REQUIRE(ep_dataset_create(net, &seg, 1, 512, &ds, &err) == EP_OK);
    ep_dataset_class_counts(ds, counts);
    CHECK(counts[1] > 0 && counts[3] > 0);     /* 208 has N and V beats */
    ep_dataset_class_weights(ds, weights);
    CHECK_NEAR(weights[0], 1.0, 0.0);
    CHECK(weights[3] >= 1.0f && weights[3] <= EP_TRAIN_MAX_CLASS_WEIGHT);
    ep_rng_seed(&rng, 5);
    ep_dataset_draw(ds, &rng, 8, 0.5, 0, x, target);
    REQUIRE(ep_trainer_create(net, 8, 512, 0, &tr, &err) == EP_OK);
    for (step = 0; step < 40; step++) {
        REQUIRE(ep_trainer_gradients(tr, x, target, weights, &loss, &err) ==
                EP_OK);
        if (step == 0)
            first = loss;
        ep_trainer_step(tr, 3e-3, 1e-4);
    }
    CHECK_MSG(loss < 0.6 * first, "loss %g after 40 steps, %g at first",
              loss, first);
    CHECK_EQ_INT(ep_trainer_steps(tr), 40);
    ep_trainer_free(tr);
    ep_dataset_free(ds);
    ep_net_free(net);
}

static int stop_at_step;

static int stop_early(const ep_train_progress *p, void *ud)
{
    (void)ud;
    return p->step == stop_at_step;
}

static int same_weights(const ep_net *a, const ep_net *b)
{
    unsigned char *ba, *bb;
    size_t la, lb;
    ep_error err;
    int same;

    REQUIRE(ep_model_save_buffer(a, &ba, &la, &err) == EP_OK);
    REQUIRE(ep_model_save_buffer(b, &bb, &lb, &err) == EP_OK);
    same = la == lb && memcmp(ba, bb, la) == 0;
    free(ba);
    free(bb);
    return same;
}

/* Interrupted at step 3 of 8, resumed: the same bytes as a straight run. */
static void test_resume(const record_data *rec)
{
    ep_train_segment seg = segment_of(rec);
    ep_net *straight = small_net(4), *split = small_net(4);
    ep_train_opts o;
    ep_error err;
    char ckpt[64], opt[80];

    snprintf(ckpt, sizeof ckpt, "test_train_%ld.safetensors",
             (long)getpid());
    snprintf(opt, sizeof opt, "%s.opt", ckpt);
    ep_train_default_opts(&o);
    o.epochs = 2;
    o.steps_per_epoch = 4;
    o.batch = 4;
    o.seed = 77;
    REQUIRE(ep_train_run(straight, &seg, 1, &o, NULL, NULL, &err) == EP_OK);

    o.checkpoint = ckpt;
    stop_at_step = 3;
    CHECK_EQ_INT(ep_train_run(split, &seg, 1, &o, stop_early, NULL, &err),
                 EP_ECANCELED);
    CHECK(!same_weights(straight, split));
    ep_net_free(split);
    split = small_net(4);
    o.resume = 1;
    REQUIRE(ep_train_run(split, &seg, 1, &o, NULL, NULL, &err) == EP_OK);
    CHECK(same_weights(straight, split));

    /* A state written for another seed is refused. */
    o.seed = 78;
    CHECK_EQ_INT(ep_train_run(split, &seg, 1, &o, NULL, NULL, &err),
                 EP_EFORMAT);
    remove(ckpt);
    remove(opt);
    ep_net_free(straight);
    ep_net_free(split);
}

/* Fine-tuning with --freeze-encoder: the encoder (every layer before the
 * decoder's first conv) keeps its exact bytes, the head changes. */
static void test_freeze(const record_data *rec)
{
    ep_train_segment seg = segment_of(rec);
    ep_net *before = small_net(6), *after;
    ep_train_opts o;
    ep_error err;
    int i, decoder = -1, head;
    size_t k;

    REQUIRE(ep_net_clone(before, &after, &err) == EP_OK);
    ep_finetune_default_opts(&o);
    o.epochs = 1;
    o.steps_per_epoch = 3;
    o.batch = 4;
    o.freeze_encoder = 1;
    REQUIRE(ep_finetune_run(after, &seg, 1, &o, NULL, NULL, &err) == EP_OK);

    for (i = 0; i < after->n_layers && decoder < 0; i++)
        if (after->layers[i].op == EP_OP_IDWT)
            decoder = after->layers[i].inputs[0];
    REQUIRE(decoder > 0);
    for (i = 0; i < decoder; i++) {
        const ep_layer *a = &before->layers[i], *b = &after->layers[i];
        size_t ch = (size_t)a->channels * sizeof(float);

        if (a->op == EP_OP_CONV)
            CHECK(memcmp(a->weight, b->weight,
                         ch * a->in_channels * a->kernel) == 0 &&
                  memcmp(a->bias, b->bias, ch) == 0);
        if (a->op == EP_OP_BN)
            CHECK(memcmp(a->gamma, b->gamma, ch) == 0 &&
                  memcmp(a->beta, b->beta, ch) == 0 &&
                  memcmp(a->mean, b->mean, ch) == 0 &&
                  memcmp(a->var, b->var, ch) == 0);
    }
    head = ep_net_find(after, "head");
    REQUIRE(head >= 0);
    for (k = 0; k < (size_t)after->layers[head].channels *
                        after->layers[head].in_channels;
         k++)
        if (after->layers[head].weight[k] != before->layers[head].weight[k])
            break;
    CHECK(k < (size_t)after->layers[head].channels *
                  after->layers[head].in_channels);
    ep_net_free(before);
    ep_net_free(after);
}

int main(void)
{
    record_data rec;

    read_record("208", &rec);
    test_targets();
    test_loss_falls(&rec);
    test_resume(&rec);
    test_freeze(&rec);
    free(rec.mv);
    free(rec.beats);
    return check_exit();
}
