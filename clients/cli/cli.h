/*
 * cli.h - what the subcommands of the `ecgprune` command-line tool share:
 * their entry points, option parsing helpers and output helpers.
 *
 * Each subcommand lives in its own cmd_NAME.c and has the signature
 * `int cmd_NAME(int argc, char **argv)`, returning the process exit status.
 * Errors go to stderr as "ecgprune NAME: message"; with --json the command
 * prints exactly one JSON object on stdout.
 */
#ifndef ECGPRUNE_CLI_H
#define ECGPRUNE_CLI_H

#include <jansson.h>
#include <stdint.h>

#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_error.h"
#include "ecgprune/ep_score.h"
#include "ecgprune/ep_train.h"

typedef int (*cli_command_fn)(int argc, char **argv);

/* Print "ecgprune CMD: message" for err to stderr and return exit status 1. */
int cli_fail(const char *cmd, const ep_error *err);

/* ep_model_load, with a hint when MODEL names a record instead (MODEL.hea
 * exists): the model and the record were given the wrong way round. */
int cli_load_model(const char *path, ep_net **out, ep_error *err);

/* Print a formatted usage or argument error and return exit status 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Dump a JSON object to stdout followed by a newline, then free it. */
int cli_print_json(json_t *obj);

/* Strict number parsing: the whole string must be a number in range. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *s, double lo, double hi, double *out);

/* A seed: a whole number from 0 to 2^63-1, the daemon's range, so a
 * job's seed can be rerun here. */
#define CLI_SEED_MAX "9223372036854775807 (2^63-1)"
int cli_parse_seed(const char *s, uint64_t *out);

/* A time span in seconds into a record, as --from S and --to S give it
 * (to_s < 0: the record's end). */
typedef struct cli_span {
    double from_s, to_s;
} cli_span;

/* If argv[*i] is --from or --to with a value, parse it into span and
 * advance *i: 1 when taken, 0 when argv[*i] is something else, 2 after a
 * usage error. */
int cli_span_option(const char *cmd, int argc, char **argv, int *i,
                    cli_span *span);

/* 2 after a usage error unless the span ends after it starts, else 0. */
int cli_span_check(const char *cmd, const cli_span *span);

/* 2 after a usage error if one of the NULL-terminated options appears
 * more than once in argv (a repeated option would silently override the
 * first), else 0. */
int cli_reject_repeats(const char *cmd, int argc, char **argv,
                       const char *const *options);

/* 0 if path can take an output file the command will write (given as
 * option, e.g. "--out"): a new name in a writable directory or an
 * existing regular file, possibly behind a symbolic link.  Otherwise
 * prints why and returns the exit status: 2 for an empty name, 1 for a
 * path the file system refuses (missing directory, a directory, FIFO or
 * device), as for a missing input file.  Called before any long work. */
int cli_check_output(const char *cmd, const char *option, const char *path);

/* 2 after a usage error if two output paths name the same file (the same
 * inode, or for new files the same resolved name), else 0.  Call after
 * cli_check_output for both. */
int cli_check_distinct(const char *cmd, const char *option_a,
                       const char *path_a, const char *option_b,
                       const char *path_b);

/* 2 after a usage error if the output path names a file of the WFDB
 * record being read (RECORD.hea, .dat or .atr), else 0. */
int cli_check_not_record(const char *cmd, const char *option,
                         const char *path, const char *record);

/* Called with each name of a list file; 0, or an exit status that stops
 * the reading. */
typedef int (*cli_list_fn)(void *ud, const char *name);

/* The names of a list file given on the command line (--list): one per
 * line, blanks, carriage returns, empty lines and '#' comments skipped.
 * What is not a regular file (a FIFO would block, /dev/zero never ends),
 * a line with a NUL or control byte or longer than a path, or a read
 * error stops with a message naming the line and the usage exit status 2;
 * otherwise add's first non-zero status, or 0. */
int cli_read_list(const char *cmd, const char *path, cli_list_fn add,
                  void *ud);

/* One signal of a WFDB record in mV over [from_s, to_s) seconds (to_s < 0:
 * to the end).  name NULL picks MLII when present, else the first signal.
 * offset is the index in the record of mv[0]. */
typedef struct cli_signal {
    float *mv;
    int64_t n, offset, record_samples;
    double fs;
    char name[64];
} cli_signal;

int cli_read_signal(const char *record, const char *name, double from_s,
                    double to_s, cli_signal *out, ep_error *err);
void cli_signal_free(cli_signal *sig);

/* The annotations RECORD.EXT of a record of n_samples samples; a beat
 * outside 0..n_samples-1 means the file is another record's (a longer
 * one's), refused with EP_EFORMAT rather than scored as missed beats. */
int cli_read_annotations(const char *record, const char *ext,
                         int64_t n_samples, ep_annotations **out,
                         ep_error *err);

/* The MIT symbol standing for an AAMI class: N, A (for S), V, F, Q. */
const char *cli_class_symbol(ep_aami cls);

/* Training data of one whole record (cli_train.c): the signal named
 * (NULL: MLII, else the first) and its beats. */
typedef struct cli_train_data {
    cli_signal signal;
    ep_ref_beat *beats;
    size_t n_beats;
    ep_train_segment seg;   /* views of the above */
} cli_train_data;

int cli_train_read(const char *record, const char *signal,
                   cli_train_data *out, ep_error *err);
/* Keep only the first `seconds` of d (nothing changes when it is
 * shorter). */
void cli_train_cut(cli_train_data *d, double seconds);
void cli_train_data_free(cli_train_data *d);

/* The options train and finetune share, which set ep_train_opts fields
 * (--epochs, --steps, --batch, --lr, --seed): parsed within the
 * library's ranges (ep_train) into opts.  0 when parsed, 2 after a usage
 * error for cmd, -1 when opt is another option. */
int cli_train_option(const char *cmd, ep_train_opts *opts, const char *opt,
                     const char *value);

/* Progress of training for ep_train_run; ud is a cli_train_display. */
typedef struct cli_train_display {
    int tty;
    int quiet;                  /* no lines, but Ctrl-C still stops */
    double last_shown, log_every_s;
} cli_train_display;
int cli_train_progress(const ep_train_progress *p, void *ud);

/* Ctrl-C and SIGTERM stop a run after its current step. */
void cli_train_catch_signals(void);

int cmd_record(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_prune(int argc, char **argv);

#endif
