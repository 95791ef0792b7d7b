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

#include "ecgprune/ep_error.h"

typedef int (*cli_command_fn)(int argc, char **argv);

/* Print "ecgprune CMD: message" for err to stderr and return exit status 1. */
int cli_fail(const char *cmd, const ep_error *err);

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

int cmd_record(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_prune(int argc, char **argv);

#endif
