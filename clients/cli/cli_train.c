/*
 * cli_train.c - what `ecgprune train` and `ecgprune finetune` share:
 * labelled MLII segments of WFDB records, the progress display (one
 * updating line on a terminal, plain log lines otherwise) and the Ctrl-C
 * handling that stops a run after its current step with a checkpoint.
 */
#include "cli.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ecgprune/ep_score.h"
#include "ecgprune/ep_wfdb.h"

/* Set by SIGINT/SIGTERM; the progress callback turns it into a stop. */
static volatile sig_atomic_t cli_train_stop_flag;

static void on_stop_signal(int sig)
{
    (void)sig;
    cli_train_stop_flag = 1;
}

void cli_train_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_train_read(const char *record, const char *signal,
                   cli_train_data *out, ep_error *err)
{
    ep_annotations *ann = NULL;
    int rc;

    /* The beats all lie inside the signal (cli_read_annotations). */
    memset(out, 0, sizeof *out);
    rc = cli_read_signal(record, signal, 0.0, -1.0, &out->signal, err);
    if (rc == 0)
        rc = cli_read_annotations(record, "atr", out->signal.record_samples,
                                  &ann, err);
    if (rc == 0)
        rc = ep_score_reference(ann, 0, &out->beats, &out->n_beats, err);
    ep_wfdb_free_annotations(ann);
    if (rc != 0) {
        cli_signal_free(&out->signal);
        return rc;
    }
    out->seg.mv = out->signal.mv;
    out->seg.n = out->signal.n;
    out->seg.fs = out->signal.fs;
    out->seg.beats = out->beats;
    out->seg.n_beats = out->n_beats;
    return 0;
}

void cli_train_cut(cli_train_data *d, double seconds)
{
    int64_t n = (int64_t)llround(seconds * d->signal.fs);
    size_t k = 0, i;

    if (n >= d->signal.n)
        return;
    d->signal.n = n;
    for (i = 0; i < d->n_beats; i++)
        if (d->beats[i].sample < n)
            d->beats[k++] = d->beats[i];
    d->n_beats = k;
    d->seg.n = n;
    d->seg.n_beats = k;
}

void cli_train_data_free(cli_train_data *d)
{
    cli_signal_free(&d->signal);
    free(d->beats);
    memset(d, 0, sizeof *d);
}

static void format_duration(double s, char *buf, size_t size)
{
    long t = s > 0.0 && s < 1e8 ? (long)(s + 0.5) : 0;

    if (s >= 1e8)
        snprintf(buf, size, "over 3 years");
    else if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60,
                 t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

int cli_train_progress(const ep_train_progress *p, void *ud)
{
    cli_train_display *d = ud;
    struct timespec ts;
    double now;
    char eta[32];
    int last = p->step == p->steps;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (double)ts.tv_sec + ts.tv_nsec * 1e-9;

    /* A terminal redraws at most 4 times a second; a log gets a line
     * every `log_every_s` seconds and at the end of every epoch. */
    if (!d->quiet &&
        (d->tty ? now - d->last_shown >= 0.25 || last
                : now - d->last_shown >= d->log_every_s || last ||
                      p->step % (p->steps / p->epochs) == 0)) {
        d->last_shown = now;
        format_duration(p->eta_s, eta, sizeof eta);
        fprintf(stderr, "%sepoch %d/%d  step %lld/%lld  loss %.4f  "
                "%.1f windows/s  ETA %s%s", d->tty ? "\r\033[K" : "",
                p->epoch, p->epochs, (long long)p->step,
                (long long)p->steps, p->loss, p->rate_windows_s, eta,
                d->tty && !last ? "" : "\n");
        fflush(stderr);
    }
    if (cli_train_stop_flag) {
        if (d->tty && !d->quiet)
            fputc('\n', stderr);
        fprintf(stderr, "stopping after step %lld\n", (long long)p->step);
        return 1;
    }
    return 0;
}

int cli_train_option(const char *cmd, ep_train_opts *opts, const char *opt,
                     const char *value)
{
    static const struct {
        const char *name;
        long lo, hi;
    } ranges[] = {{"--epochs", 1, 100000}, {"--steps", 0, 1000000},
                  {"--batch", 1, 4096}};
    int *fields[] = {&opts->epochs, &opts->steps_per_epoch, &opts->batch};
    size_t i;
    long n;

    if (strcmp(opt, "--lr") == 0) {
        if (cli_parse_double(value, 1e-7, 10.0, &opts->lr) != 0 ||
            opts->lr >= 10.0)
            return cli_usage_error(cmd, "bad --lr '%s' (expected a number "
                                   "from 1e-7 to below 10)", value);
        return 0;
    }
    if (strcmp(opt, "--seed") == 0) {
        if (cli_parse_seed(value, &opts->seed) != 0)
            return cli_usage_error(cmd, "bad --seed '%s' (expected a whole "
                                   "number from 0 to " CLI_SEED_MAX ")",
                                   value);
        return 0;
    }
    for (i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        if (strcmp(opt, ranges[i].name) != 0)
            continue;
        if (cli_parse_int(value, ranges[i].lo, ranges[i].hi, &n) != 0)
            return cli_usage_error(cmd, "bad %s '%s' (expected a whole "
                                   "number from %ld to %ld)", opt, value,
                                   ranges[i].lo, ranges[i].hi);
        *fields[i] = (int)n;
        return 0;
    }
    return -1;
}
