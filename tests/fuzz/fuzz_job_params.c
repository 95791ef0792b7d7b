/*
 * fuzz_job_params.c - libFuzzer target: any bytes as the body of POST
 * /v1/jobs (ed_api_jobs_params), checked against a store that holds one
 * model and four batches: annotated and long enough, too short, slow
 * (50 Hz, annotated) and too long once resampled.  A submission must end
 * in normalised parameters that keep the promises below, or in a clean
 * refusal (400, 404, 409, 413 or 422 with a message, 422 too for a job
 * whose estimated memory passes limits.max_job_bytes); never a crash, a
 * leak, or a write to the store.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ecgprune/ep_model.h"
#include "ecgprune/ep_net.h"
#include "ed_api.h"
#include "ed_config.h"
#include "ed_models.h"
#include "ed_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ed_app fuzz_app;
static char fuzz_dir[256];

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_job_params: %s: %s\n", what, detail);
    abort();
}

static void remove_store(void)
{
    static const char *const files[] = {"ecgpruned.sqlite3",
                                        "ecgpruned.sqlite3-wal",
                                        "ecgpruned.sqlite3-shm"};
    char path[320];
    size_t i;

    ed_store_close(fuzz_app.store);
    ed_models_free(fuzz_app.models);
    for (i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, files[i]);
        unlink(path);
    }
    rmdir(fuzz_dir);
}

/* One model (the default U-Net, untrained: 360 Hz, windows of 2048, so
 * that the memory check parses it) and the four batches, ids 1..4. */
static void open_store(void)
{
    const char *tmp = getenv("TMPDIR");
    static const unsigned char blob[4] = {0};
    unsigned char *model;
    size_t model_len;
    ep_unet_config ucfg;
    ep_net *net;
    ep_error e;
    char err[300];
    ed_store *s;

    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/fuzz-jobs.XXXXXX",
             tmp ? tmp : "/tmp");
    if (!mkdtemp(fuzz_dir) || ed_store_open(fuzz_dir, &s, err, sizeof err))
        fail("store", fuzz_dir);
    fuzz_app.store = s;
    ed_config_defaults(&fuzz_app.cfg);
    atexit(remove_store);
    ep_unet_default_config(&ucfg);
    if (ed_models_create(&fuzz_app.models) ||
        ep_unet_build(&ucfg, 1, &net, &e) ||
        ep_model_save_buffer(net, &model, &model_len, &e))
        fail("model", "cannot build the default U-Net");
    ep_net_free(net);
    if (ed_store_exec(s, "INSERT INTO models (name, sha256, size_bytes, "
                      "architecture, parameters, macs_per_second, "
                      "created_at, weights) VALUES ('m', 'x', 4, "
                      "'{\"sampling_rate\": 360, \"window\": 2048}', 1, 1, "
                      "'now', ?)", "b", (const void *)model, model_len) < 0 ||
        ed_store_exec(s, "INSERT INTO batches (subject, sampling_rate, lead, "
                      "n_samples, annotations, n_beats, created_at, samples) "
                      "VALUES ('a', 360, 'MLII', 36000, '[]', 40, 'now', ?), "
                      "('b', 360, 'MLII', 1080, NULL, 0, 'now', ?), "
                      "('c', 50, 'MLII', 15000, '[]', 300, 'now', ?), "
                      "('d', 50, 'MLII', 2000000, NULL, 0, 'now', ?)",
                      "bbbb", (const void *)blob, sizeof blob,
                      (const void *)blob, sizeof blob, (const void *)blob,
                      sizeof blob, (const void *)blob, sizeof blob) < 0)
        fail("store setup", ed_store_errmsg(s));
    free(model);
}

static int has_all(const json_t *obj, const char *const *keys)
{
    for (; *keys; keys++)
        if (!json_object_get(obj, *keys))
            return 0;
    return 1;
}

/* What an accepted submission promises the job runner. */
static void check_accepted(const json_t *p)
{
    static const char *const always[] = {
        "model_id", "batch_ids", "method", "keep", "mask_list", "candidates",
        "coreset_scale", "seed", "reconstruct", "prune_head_input",
        "refit_drifted", "raw_norms", "batch_windows", "max_windows",
        "distill_steps",
        "stratify", NULL};
    static const char *const finetune[] = {
        "epochs", "steps_per_epoch", "batch", "lr", "weight_decay", "seed",
        "freeze_encoder", "augment", NULL};
    const json_t *ids = json_object_get(p, "batch_ids"), *v;
    double keep = json_number_value(json_object_get(p, "keep"));
    size_t i;

    if (!json_is_object(p) || !has_all(p, always))
        fail("accepted", "a default is missing");
    if (json_integer_value(json_object_get(p, "model_id")) != 1)
        fail("accepted", "a model that does not exist");
    if (!(keep > 0.0 && keep <= 1.0))
        fail("accepted", "keep outside (0, 1]");
    if (!json_is_array(ids) || json_array_size(ids) == 0)
        fail("accepted", "no calibration batch");
    json_array_foreach(ids, i, v)
        if (json_integer_value(v) != 1 && json_integer_value(v) != 3)
            fail("accepted", "a batch missing, too short or too long");
    v = json_object_get(p, "finetune");
    if (v && (!json_is_object(v) || !has_all(v, finetune)))
        fail("accepted", "fine-tuning defaults missing");
    if (json_integer_value(json_object_get(p, "distill_steps")) > 0 &&
        !json_is_number(json_object_get(p, "distill_lr")))
        fail("accepted", "distillation without its rate");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy;
    json_t *params = NULL;
    char msg[600] = "";
    int64_t changes;
    unsigned st;

    if (!fuzz_app.store)
        open_store();
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    /* An exact-size copy so that AddressSanitizer sees reads past it. */
    memcpy(copy, data, size);
    changes = ed_store_int(fuzz_app.store, NULL, "SELECT total_changes()",
                           NULL);
    st = ed_api_jobs_params(&fuzz_app, copy, size, &params, msg, sizeof msg);
    if (st == 0)
        check_accepted(params);
    else if ((st != 400 && st != 404 && st != 409 && st != 413 &&
              st != 422) || msg[0] == '\0')
        fail("refused", msg);
    if (ed_store_int(fuzz_app.store, NULL, "SELECT total_changes()", NULL)
        != changes)
        fail("store", "a submission check wrote to the store");
    json_decref(params);
    free(copy);
    return 0;
}
