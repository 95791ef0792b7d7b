/*
 * ecgprune.c - entry point of the `ecgprune` command-line tool: looks up the
 * subcommand and hands it the remaining arguments.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct cli_command {
    const char *name;
    cli_command_fn fn;
    const char *summary;
};

static const struct cli_command commands[] = {
    {"infer", cmd_infer, "detect and classify the beats of a record"},
    {"eval", cmd_eval, "score a model against records' annotations (EC57)"},
    {"finetune", cmd_finetune,
     "personalise a model on the first minutes of a record"},
    {"info", cmd_info, "describe a model file: size, cost, classes, layers"},
    {"prune", cmd_prune, "prune channels on calibration ECG and refit"},
    {"record", cmd_record, "describe a WFDB record and count its beats"},
    {"train", cmd_train, "train a wavelet U-Net on annotated records"},
    {NULL, NULL, NULL}
};

static void usage(FILE *out)
{
    const struct cli_command *c;

    fprintf(out, "usage: ecgprune COMMAND [ARGS]\n\ncommands:\n");
    for (c = commands; c->name != NULL; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "\n'ecgprune COMMAND --help' describes one command;"
            " 'ecgprune --version' prints the version.\n");
}

int main(int argc, char **argv)
{
    const struct cli_command *c;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("ecgprune %s\n", ECGPRUNE_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (c = commands; c->name != NULL; c++)
        if (strcmp(c->name, argv[1]) == 0)
            return c->fn(argc - 1, argv + 1);
    fprintf(stderr, "ecgprune: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
