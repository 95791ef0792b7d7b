/*
 * cmd_train.c - `ecgprune train`: build a wavelet U-Net and train it on the
 * MLII lead and beat annotations of WFDB records, with progress, seeds and
 * resumable checkpoints.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ecgprune/ep_infer.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_net.h"
#include "ecgprune/ep_train.h"

#define TRAIN_MAX_RECORDS 256

typedef struct train_args {
    char *names[TRAIN_MAX_RECORDS];
    int n_records;
    const char *data, *out;
    ep_unet_config cfg;
    ep_train_opts opts;
    int quiet;
} train_args;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ecgprune train (--records A,B,... | --list FILE) "
            "--out MODEL\n"
            "                      [--data DIR] [--epochs N] [--seed N] "
            "[--widths W,W,...]\n"
            "                      [--kernel K] [--rate HZ] [--window N] "
            "[--batch N]\n"
            "                      [--lr X] [--steps N] [--checkpoint FILE "
            "[--resume]]\n"
            "                      [--quiet]\n"
            "\n"
            "Trains a wavelet U-Net on the MLII lead of the records: windows "
            "with\nper-sample targets around each annotated beat (AAMI "
            "class), rare\nbeats (S, V, F) drawn more often, ECG "
            "augmentation, AdamW.  The same\nseed and data give the same "
            "weights.\n\n"
            "  --records LIST  comma-separated record names (in --data)\n"
            "  --list FILE     record names, one per line\n"
            "  --data DIR      directory of the records (default .)\n"
            "  --epochs N      passes (default 6)\n"
            "  --steps N       steps per epoch (default: one pass over the "
            "data)\n"
            "  --seed N        initialisation, sampling and augmentation "
            "seed (1)\n"
            "  --widths LIST   channels per level (default 16,32,64,128)\n"
            "  --kernel K      taps of the convolutions (default 9)\n"
            "  --rate HZ       the model's sampling rate (default 360)\n"
            "  --window N      samples per window (default 2048)\n"
            "  --batch N       windows per step (default 16)\n"
            "  --lr X          peak learning rate (default 0.003)\n"
            "  --checkpoint F  save model and optimiser state to F (and "
            "F.opt)\n"
            "                  every epoch and on Ctrl-C\n"
            "  --resume        continue from --checkpoint\n"
            "  --quiet         no progress output\n");
}

static int add_record(train_args *a, const char *name, size_t len)
{
    char path[4096];

    if (len == 0)
        return 0;
    if (a->n_records == TRAIN_MAX_RECORDS)
        return cli_usage_error("train", "more than %d records",
                               TRAIN_MAX_RECORDS);
    snprintf(path, sizeof path, "%s/%.*s", a->data, (int)len, name);
    a->names[a->n_records] = strdup(path);
    if (a->names[a->n_records] == NULL)
        return cli_usage_error("train", "out of memory");
    a->n_records++;
    return 0;
}

static int add_record_list(train_args *a, const char *list)
{
    const char *p = list;
    int rc = 0;

    while (rc == 0 && *p != '\0') {
        size_t len = strcspn(p, ",");

        rc = add_record(a, p, len);
        p += len + (p[len] == ',');
    }
    return rc;
}

/* cli_read_list's callback: one more record name. */
static int add_listed(void *ud, const char *name)
{
    return add_record(ud, name, strlen(name));
}

static int parse_widths(train_args *a, const char *s)
{
    const char *p = s;
    long w;
    int n = 0;

    while (*p != '\0') {
        char buf[32];
        size_t len = strcspn(p, ",");

        if (n == EP_UNET_MAX_DEPTH || len == 0 || len >= sizeof buf)
            return cli_usage_error("train", "bad --widths '%s' (expected "
                                   "2 to %d channel counts of 1 to 4096, "
                                   "e.g. 16,32,64,128)", s,
                                   EP_UNET_MAX_DEPTH);
        memcpy(buf, p, len);
        buf[len] = '\0';
        if (cli_parse_int(buf, 1, 4096, &w) != 0)
            return cli_usage_error("train", "bad --widths '%s' (expected "
                                   "2 to %d channel counts of 1 to 4096, "
                                   "e.g. 16,32,64,128)", s,
                                   EP_UNET_MAX_DEPTH);
        a->cfg.widths[n++] = (int)w;
        p += len + (p[len] == ',');
    }
    if (n < 2)
        return cli_usage_error("train", "--widths needs at least 2 levels");
    a->cfg.depth = n;
    return 0;
}

/* --kernel and --window, with the engine's ranges (ep_net, ep_unet). */
static int parse_shape(train_args *a, const char *opt, const char *v)
{
    long hi = strcmp(opt, "--kernel") == 0 ? EP_NET_MAX_KERNEL : 1L << 30;
    long lo = strcmp(opt, "--kernel") == 0 ? 1 : 2;
    long n;

    if (cli_parse_int(v, lo, hi, &n) != 0)
        return cli_usage_error("train", "bad %s '%s' (expected a whole "
                               "number from %ld to %ld)", opt, v, lo, hi);
    if (strcmp(opt, "--kernel") == 0)
        a->cfg.kernel = (int)n;
    else
        a->cfg.meta.window = (int)n;
    return 0;
}

/* Options that take a number. */
static int parse_number(train_args *a, const char *opt, const char *v)
{
    int rc;

    if (strcmp(opt, "--rate") == 0) {
        if (cli_parse_double(v, EP_INFER_RATE_MIN, EP_INFER_RATE_MAX,
                             &a->cfg.meta.sampling_rate) != 0)
            return cli_usage_error("train", "bad --rate '%s' (expected %g "
                                   "to %g Hz)", v, EP_INFER_RATE_MIN,
                                   EP_INFER_RATE_MAX);
        return 0;
    }
    rc = cli_train_option("train", &a->opts, opt, v);
    if (rc >= 0)
        return rc;
    if (strcmp(opt, "--kernel") == 0 || strcmp(opt, "--window") == 0)
        return parse_shape(a, opt, v);
    return cli_usage_error("train", "unknown option '%s'", opt);
}

static int parse_args(int argc, char **argv, train_args *a)
{
    const char *records = NULL, *list = NULL;
    int i, rc = 0;

    memset(a, 0, sizeof *a);
    a->data = ".";
    ep_unet_default_config(&a->cfg);
    ep_train_default_opts(&a->opts);
    for (i = 1; rc == 0 && i < argc; i++) {
        const char *arg = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(arg, "--resume") == 0) {
            a->opts.resume = 1;
            continue;
        }
        if (strcmp(arg, "--quiet") == 0) {
            a->quiet = 1;
            continue;
        }
        if (v == NULL || strncmp(arg, "--", 2) != 0)
            return cli_usage_error("train", "unexpected '%s' (options take "
                                   "a value)", arg);
        i++;
        if (strcmp(arg, "--records") == 0)
            records = v;
        else if (strcmp(arg, "--list") == 0)
            list = v;
        else if (strcmp(arg, "--data") == 0)
            a->data = v;
        else if (strcmp(arg, "--out") == 0)
            a->out = v;
        else if (strcmp(arg, "--checkpoint") == 0)
            a->opts.checkpoint = v;
        else if (strcmp(arg, "--widths") == 0)
            rc = parse_widths(a, v);
        else
            rc = parse_number(a, arg, v);
    }
    if (rc == 0 && records != NULL)
        rc = add_record_list(a, records);
    if (rc == 0 && list != NULL)
        rc = cli_read_list("train", list, add_listed, a);
    if (rc == 0 && (a->n_records == 0 || a->out == NULL))
        rc = cli_usage_error("train", "expected --records or --list, and "
                             "--out");
    if (rc == 0 && a->opts.resume && a->opts.checkpoint == NULL)
        rc = cli_usage_error("train", "--resume needs --checkpoint");
    return rc;
}

/* Every file the run writes, before any record is read: --out, and with
 * --checkpoint the model F and its optimiser state F.opt, which --out
 * must not name (the two would overwrite each other).  --out may name
 * F itself: both then hold the final model. */
static int check_outputs(const train_args *a)
{
    const char *ck = a->opts.checkpoint;
    char *state;
    int rc = cli_check_output("train", "--out", a->out);

    if (rc != 0 || ck == NULL)
        return rc;
    state = malloc(strlen(ck) + sizeof ".opt");
    if (state == NULL)
        return cli_usage_error("train", "out of memory");
    sprintf(state, "%s.opt", ck);
    rc = cli_check_output("train", "--checkpoint", ck);
    if (rc == 0)
        rc = cli_check_output("train", "--checkpoint", state);
    if (rc == 0)
        rc = cli_check_distinct("train", "--out", a->out,
                                "--checkpoint state", state);
    free(state);
    return rc;
}

static void free_args(train_args *a)
{
    int i;

    for (i = 0; i < a->n_records; i++)
        free(a->names[i]);
}

int cmd_train(int argc, char **argv)
{
    cli_train_data data[TRAIN_MAX_RECORDS];
    ep_train_segment segs[TRAIN_MAX_RECORDS];
    cli_train_display show = {0};
    train_args a;
    ep_net *net = NULL;
    ep_error err = {0};
    int i, n = 0, rc;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if ((rc = parse_args(argc, argv, &a)) != 0 ||
        (rc = check_outputs(&a)) != 0) {
        free_args(&a);
        return rc;
    }

    /* Records, then the untrained net, then the run.  Ctrl-C while the
     * records load stops the run before its first step. */
    cli_train_catch_signals();
    rc = 0;
    for (i = 0; rc == 0 && i < a.n_records; i++) {
        rc = cli_train_read(a.names[i], NULL, &data[n], &err);
        if (rc == 0) {
            segs[n] = data[n].seg;
            n++;
        }
    }
    if (rc == 0)
        rc = ep_unet_build(&a.cfg, a.opts.seed, &net, &err);
    if (rc == 0) {
        show.tty = isatty(STDERR_FILENO);
        show.log_every_s = 30.0;
        show.quiet = a.quiet;
        if (!a.quiet)
            fprintf(stderr, "training on %d records: %lld parameters, "
                    "%.1f MMAC per second of ECG\n", n,
                    (long long)ep_net_parameters(net),
                    ep_net_macs_per_second(net) / 1e6);
        rc = ep_train_run(net, segs, n, &a.opts,
                          cli_train_progress, &show, &err);
    }
    if (rc == 0)
        rc = ep_model_save(net, a.out, &err);
    for (i = 0; i < n; i++)
        cli_train_data_free(&data[i]);
    ep_net_free(net);
    free_args(&a);
    if (rc != 0)
        return cli_fail("train", &err);
    if (!a.quiet)
        fprintf(stderr, "saved %s\n", a.out);
    return 0;
}
