/*
 * cmd_finetune.c - `ecgprune finetune MODEL RECORD --minutes M --out OUT`:
 * personalise a trained model on the first minutes of one record (the
 * patient-specific protocol of Kiranyaz et al. 2016), leaving the rest of
 * the record for testing with `ecgprune eval --from`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_net.h"
#include "ecgprune/ep_train.h"

typedef struct finetune_args {
    const char *model, *record, *out, *signal;
    double minutes;
    ep_train_opts opts;
    int quiet;
} finetune_args;

static void usage(FILE *out)
{
    ep_train_opts d;

    ep_finetune_default_opts(&d);
    fprintf(out,
            "usage: ecgprune finetune MODEL RECORD --out MODEL [--minutes M]"
            "\n                         [--epochs N] [--seed N] [--batch N] "
            "[--lr X]\n"
            "                         [--steps N] [--freeze-encoder] "
            "[--signal NAME]\n                         [--quiet]\n\n"
            "Fine-tunes MODEL on the first M minutes of one lead of RECORD "
            "(--signal)\nand its beat annotations; score it on the rest "
            "with\n"
            "'ecgprune eval OUT RECORD --from 60*M'.\n\n"
            "  --minutes M       minutes used for fine-tuning (default 5)\n"
            "  --signal NAME     the lead to train on (default MLII, else "
            "the first)\n"
            "  --epochs N        passes (default %d)\n"
            "  --steps N         steps per epoch (default: one pass)\n"
            "  --seed N          sampling and augmentation seed (default "
            "%llu)\n"
            "  --batch N         windows per step (default %d)\n"
            "  --lr X            peak learning rate (default %g)\n"
            "  --freeze-encoder  train only the decoder and head\n"
            "  --quiet           no progress output\n",
            d.epochs, (unsigned long long)d.seed, d.batch, d.lr);
}

static int parse_option(finetune_args *a, const char *opt, const char *v)
{
    int rc = cli_train_option("finetune", &a->opts, opt, v);

    if (rc >= 0)
        return rc;
    if (strcmp(opt, "--out") == 0) {
        a->out = v;
    } else if (strcmp(opt, "--signal") == 0) {
        a->signal = v;
    } else if (strcmp(opt, "--minutes") == 0) {
        if (cli_parse_double(v, 0.1, 1e6, &a->minutes) != 0)
            return cli_usage_error("finetune", "bad --minutes '%s' (expected "
                                   "minutes from 0.1 on)", v);
    } else {
        return cli_usage_error("finetune", "unknown option '%s'", opt);
    }
    return 0;
}

/* What the user may not expect: another lead than MLII, or a record too
 * short to leave minutes for scoring. */
static void warn_data(const finetune_args *a, const cli_train_data *d)
{
    double have_min = (double)d->signal.record_samples / d->signal.fs / 60.0;

    if (a->signal == NULL && strcmp(d->signal.name, "MLII") != 0)
        fprintf(stderr, "ecgprune finetune: %s has no MLII lead; "
                "fine-tuning on %s (--signal picks another)\n", a->record,
                d->signal.name);
    if (have_min <= a->minutes)
        fprintf(stderr, "ecgprune finetune: warning: %s holds %.1f "
                "minutes (%.0f s), not more than --minutes %g: all of it is "
                "used, so none is left to score the model on\n", a->record,
                have_min, 60.0 * have_min, a->minutes);
}

static int parse_args(int argc, char **argv, finetune_args *a)
{
    int i, rc = 0, n_pos = 0;

    memset(a, 0, sizeof *a);
    a->minutes = 5.0;
    ep_finetune_default_opts(&a->opts);
    for (i = 1; rc == 0 && i < argc; i++) {
        const char *arg = argv[i];

        if (strcmp(arg, "--freeze-encoder") == 0)
            a->opts.freeze_encoder = 1;
        else if (strcmp(arg, "--quiet") == 0)
            a->quiet = 1;
        else if (strncmp(arg, "--", 2) == 0 && i + 1 < argc)
            rc = parse_option(a, arg, argv[++i]);
        else if (strncmp(arg, "--", 2) == 0)
            rc = cli_usage_error("finetune", "option '%s' needs a value",
                                 arg);
        else if (n_pos++ == 0)
            a->model = arg;
        else if (n_pos == 2)
            a->record = arg;
        else
            rc = cli_usage_error("finetune", "unexpected '%s'", arg);
    }
    if (rc == 0 && (a->record == NULL || a->out == NULL))
        rc = cli_usage_error("finetune", "expected MODEL RECORD --out "
                             "MODEL");
    return rc;
}

static const char *const finetune_options[] = {
    "--out", "--minutes", "--epochs", "--steps", "--seed", "--batch", "--lr",
    "--signal", "--freeze-encoder", "--quiet", NULL
};

int cmd_finetune(int argc, char **argv)
{
    cli_train_display show = {0};
    cli_train_data data;
    finetune_args a;
    ep_net *net = NULL;
    ep_error err = {0};
    int i, rc;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if ((rc = cli_reject_repeats("finetune", argc, argv,
                                 finetune_options)) != 0 ||
        (rc = parse_args(argc, argv, &a)) != 0)
        return rc;
    /* Before the run, not after it; --out may name MODEL, which is read
     * whole before the new model is renamed over it. */
    if ((rc = cli_check_output("finetune", "--out", a.out)) != 0 ||
        (rc = cli_check_not_record("finetune", "--out", a.out,
                                   a.record)) != 0)
        return rc;
    cli_train_catch_signals();      /* a stop while loading: before step 1 */

    /* The model, the first minutes of the record, the run. */
    rc = cli_load_model(a.model, &net, &err);
    if (rc == 0)
        rc = cli_train_read(a.record, a.signal, &data, &err);
    if (rc == 0) {
        warn_data(&a, &data);
        cli_train_cut(&data, 60.0 * a.minutes);
        show.tty = isatty(STDERR_FILENO);
        show.log_every_s = 10.0;
        show.quiet = a.quiet;
        rc = ep_finetune_run(net, &data.seg, 1, &a.opts,
                             cli_train_progress, &show, &err);
        cli_train_data_free(&data);
    }
    if (rc == 0)
        rc = ep_model_save(net, a.out, &err);
    ep_net_free(net);
    if (rc != 0)
        return cli_fail("finetune", &err);
    if (!a.quiet)
        fprintf(stderr, "saved %s\n", a.out);
    return 0;
}
