/*
 * cli_common.c - error reporting, JSON output, strict number parsing and
 * option checks for the ecgprune subcommands.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *cmd, const ep_error *err)
{
    fprintf(stderr, "ecgprune %s: %s\n", cmd,
            err->msg[0] ? err->msg : ep_strerror(err->code));
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "ecgprune %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'ecgprune %s --help')\n", cmd);
    return 2;
}

int cli_span_option(const char *cmd, int argc, char **argv, int *i,
                    cli_span *span)
{
    const char *opt = argv[*i];
    double *dst;

    if (strcmp(opt, "--from") == 0)
        dst = &span->from_s;
    else if (strcmp(opt, "--to") == 0)
        dst = &span->to_s;
    else
        return 0;
    if (*i + 1 >= argc)
        return cli_usage_error(cmd, "%s needs a value in seconds", opt);
    ++*i;
    if (cli_parse_double(argv[*i], 0.0, 1e9, dst) != 0)
        return cli_usage_error(cmd, "bad %s '%s'", opt, argv[*i]);
    return 1;
}

int cli_span_check(const char *cmd, const cli_span *span)
{
    if (span->to_s >= 0.0 && span->to_s <= span->from_s)
        return cli_usage_error(cmd, "--to must be after --from");
    return 0;
}

int cli_print_json(json_t *obj)
{
    int rc = json_dumpf(obj, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10));

    json_decref(obj);
    if (rc != 0 || fputc('\n', stdout) == EOF)
        return 1;
    return 0;
}

int cli_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < lo ||
        v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_reject_repeats(const char *cmd, int argc, char **argv,
                       const char *const *options)
{
    for (const char *const *opt = options; *opt != NULL; opt++) {
        int count = 0;

        for (int i = 1; i < argc; i++)
            count += strcmp(argv[i], *opt) == 0;
        if (count > 1)
            return cli_usage_error(cmd, "option '%s' given %d times, "
                                   "expected at most once", *opt, count);
    }
    return 0;
}
