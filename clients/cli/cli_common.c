/*
 * cli_common.c - error reporting, JSON output, strict number parsing,
 * option checks, output path checks and list files for the ecgprune
 * subcommands.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ecgprune/ep_model.h"

int cli_fail(const char *cmd, const ep_error *err)
{
    const char *msg = err->msg[0] ? err->msg : ep_strerror(err->code);
    size_t len = strlen(cmd);

    /* The library names its module first ("prune: ..."); when that is the
     * command's own name, once is enough. */
    if (strncmp(msg, cmd, len) == 0 && strncmp(msg + len, ": ", 2) == 0)
        msg += len + 2;
    fprintf(stderr, "ecgprune %s: %s\n", cmd, msg);
    return 1;
}

int cli_load_model(const char *path, ep_net **out, ep_error *err)
{
    char hea[4096];
    int rc = ep_model_load(path, out, err);

    if (rc == EP_EIO && (size_t)snprintf(hea, sizeof hea, "%s.hea", path) <
        sizeof hea && access(hea, F_OK) == 0)
        return ep_error_set(err, rc, "%s is a record (%s exists), not a "
                            "model: the model comes first, then the record",
                            path, hea);
    return rc;
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
        return cli_usage_error(cmd, "bad %s '%s' (expected seconds, 0 or "
                               "more)", opt, argv[*i]);
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

/* Whether s starts as a number is written: a digit, or a sign or point
 * before one.  strtol and strtod also skip blanks and take '+', which
 * would let " 5" and "+5" pass where "5 " does not. */
static int starts_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '.')
        s++;
    return isdigit((unsigned char)*s);
}

int cli_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    if (!starts_number(s))
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_seed(const char *s, uint64_t *out)
{
    char *end;
    long long v;

    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;

    /* Decimal only: strtod also reads hexadecimal ("0x10"), which the
     * daemon's JSON refuses and nobody writes on purpose. */
    if (strpbrk(s, "xX") != NULL || !starts_number(s))
        return -1;
    errno = 0;
    v = strtod(s, &end);
    /* ERANGE on underflow still leaves a usable value (0 or subnormal),
     * which the range check judges as the API's JSON parser does. */
    if ((errno != 0 && errno != ERANGE) || end == s || *end != '\0' ||
        !isfinite(v) || v < lo || v > hi)
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

int cli_check_output(const char *cmd, const char *option, const char *path)
{
    ep_error err = {0};

    if (path[0] == '\0')
        return cli_usage_error(cmd, "%s needs a file name, got ''",
                               option);
    if (ep_model_check_output(path, &err) == EP_OK)
        return 0;
    fprintf(stderr, "ecgprune %s: %s %s\n", cmd, option, err.msg);
    return 1;
}

/* path with its directory resolved (symbolic links, "..", "//"), to
 * compare the names of files that do not exist yet; malloc'd, or NULL
 * when the directory cannot be resolved. */
static char *resolved_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    char *dir, *real = NULL, *out = NULL;

    if (slash == NULL)
        dir = strdup(".");
    else
        dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (dir != NULL)
        real = realpath(dir, NULL);
    if (real != NULL)
        out = malloc(strlen(real) + strlen(base) + 2);
    if (out != NULL)
        sprintf(out, "%s/%s", real, base);
    free(dir);
    free(real);
    return out;
}

/* Whether two output paths name one file.  A path that exists is known
 * by its inode (links and other spellings included); two that do not
 * yet exist by their resolved names. */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    int has_a = stat(a, &sa) == 0, has_b = stat(b, &sb) == 0;
    char *ra, *rb;
    int same;

    if (has_a && has_b)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (has_a || has_b)
        return 0;
    ra = resolved_name(a);
    rb = resolved_name(b);
    same = ra != NULL && rb != NULL ? strcmp(ra, rb) == 0
                                    : strcmp(a, b) == 0;
    free(ra);
    free(rb);
    return same;
}

int cli_check_distinct(const char *cmd, const char *option_a,
                       const char *path_a, const char *option_b,
                       const char *path_b)
{
    if (!same_file(path_a, path_b))
        return 0;
    return cli_usage_error(cmd, "%s '%s' and %s '%s' name the same file; "
                           "each needs its own", option_a, path_a,
                           option_b, path_b);
}

int cli_check_not_record(const char *cmd, const char *option,
                         const char *path, const char *record)
{
    static const char *const ext[] = {".hea", ".dat", ".atr"};
    char name[4096];
    size_t i;

    for (i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        if ((size_t)snprintf(name, sizeof name, "%s%s", record, ext[i]) >=
            sizeof name || !same_file(path, name))
            continue;
        return cli_usage_error(cmd, "%s '%s' is %s, a file of the record "
                               "being read", option, path, name);
    }
    return 0;
}

/* A list file being read, with the line number kept for messages. */
typedef struct list_file {
    FILE *f;
    long line_no;
} list_file;

/* Open path as a list; refuses what is not a regular file.  0, or after
 * printing why, 2. */
static int list_open(const char *cmd, const char *path, list_file *list)
{
    struct stat st;
    int fd;

    /* Non-blocking, so that a FIFO is refused below instead of waiting
     * for a writer. */
    list->f = NULL;
    list->line_no = 0;
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "ecgprune %s: cannot open list '%s': %s\n", cmd,
                path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 2;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "ecgprune %s: list '%s' %s; expected a file of "
                "names, one per line\n", cmd, path,
                S_ISDIR(st.st_mode) ? "is a directory"
                                    : "is not a regular file");
        close(fd);
        return 2;
    }
    list->f = fdopen(fd, "r");
    if (list->f == NULL) {
        fprintf(stderr, "ecgprune %s: cannot read list '%s': %s\n", cmd,
                path, strerror(errno));
        close(fd);
        return 2;
    }
    return 0;
}

/* The next line into buf (cap bytes) without its newline: 1 for a line,
 * 0 at the end, or after printing the line number and why, 2 for a line
 * holding a NUL byte or longer than cap - 1 bytes, or a read error. */
static int list_next(const char *cmd, const char *path, list_file *list,
                     char *buf, size_t cap)
{
    size_t n = 0;
    int c;

    /* Byte by byte, so that a NUL is seen (it would cut the name short
     * unseen) and memory stays bounded. */
    while ((c = getc(list->f)) != EOF && c != '\n' && c != '\0' &&
           n + 1 < cap)
        buf[n++] = (char)c;
    if (ferror(list->f)) {
        fprintf(stderr, "ecgprune %s: cannot read list '%s': %s\n", cmd,
                path, strerror(errno));
        return 2;
    }
    if (c == EOF && n == 0)
        return 0;
    list->line_no++;
    if (c == '\0') {
        fprintf(stderr, "ecgprune %s: list '%s' line %ld: NUL byte in a "
                "name; expected one name per line\n", cmd, path,
                list->line_no);
        return 2;
    }
    if (c != EOF && c != '\n') {
        fprintf(stderr, "ecgprune %s: list '%s' line %ld: longer than %zu "
                "characters\n", cmd, path, list->line_no, cap - 1);
        return 2;
    }
    buf[n] = '\0';
    return 1;
}

/* One line of a list file, trimmed of blanks, carriage return and '#'
 * comment; -1 if it holds a control byte (a binary file, not a list). */
static int trim_list_line(char *line, char **name)
{
    char *start = line, *end, *hash = strchr(line, '#');

    if (hash != NULL)
        *hash = '\0';
    while (*start == ' ' || *start == '\t')
        start++;
    end = start + strlen(start);
    while (end > start && (end[-1] == '\r' || end[-1] == ' ' ||
                           end[-1] == '\t'))
        *--end = '\0';
    for (const char *c = start; c < end; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t')
            return -1;
    *name = start;
    return 0;
}

int cli_read_list(const char *cmd, const char *path, cli_list_fn add,
                  void *ud)
{
    list_file list;
    char line[4096], *name;
    int status = list_open(cmd, path, &list), got, names = 0;

    while (status == 0 &&
           (got = list_next(cmd, path, &list, line, sizeof line)) != 0) {
        if (got != 1) {
            status = got;
        } else if (trim_list_line(line, &name) != 0) {
            fprintf(stderr, "ecgprune %s: list '%s' line %ld: control "
                    "byte in a record name; expected one name per line\n",
                    cmd, path, list.line_no);
            status = 2;
        } else if (*name != '\0') {
            status = add(ud, name);
            names++;
        }
    }
    if (list.f != NULL)
        fclose(list.f);
    if (status == 0 && names == 0 && list.line_no == 0)
        status = cli_usage_error(cmd, "list '%s' is empty; expected one "
                                 "record name per line", path);
    else if (status == 0 && names == 0)
        status = cli_usage_error(cmd, "list '%s' names no record in its %ld "
                                 "lines (comments or blank); expected one "
                                 "record name per line", path, list.line_no);
    return status;
}
