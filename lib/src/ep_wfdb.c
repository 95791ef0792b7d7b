/*
 * ep_wfdb.c - WFDB record headers (.hea) and signal files in formats 212,
 * 16 and 80: parsing, decoding with checksum and first-value checks,
 * reading whole records from disk and conversion to physical units.
 * MIT-format annotation files are read by ep_annot.c.
 *
 * The header grammar followed here is the one of WFDB's header(5) page:
 *   record line:  NAME NSIG [FS[/COUNTERFREQ[(BASE)]] [NSAMP [TIME [DATE]]]]
 *   signal line:  FILE FORMAT[xSPF][:SKEW][+OFFSET]
 *                 [GAIN[(BASELINE)][/UNITS] [ADCRES [ADCZERO [INITVAL
 *                 [CHECKSUM [BLOCKSIZE [DESCRIPTION]]]]]]]
 * Lines starting with '#' are comments; blank lines are skipped.
 */
#include "ecgprune/ep_wfdb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ep_wfdb_internal.h"

/* WFDB's defaults for fields a header leaves out. */
#define WFDB_DEFAULT_GAIN 200.0
#define WFDB_DEFAULT_FS 250.0

/* Bounds beyond which a header field is taken as corrupt, not as data. */
#define MAX_LINE 1024
#define MAX_TOKEN 256
#define MIN_FS 1e-3
#define MAX_FS 1e6
/* A gain below MIN_GAIN turns every sample into an infinite value. */
#define MIN_GAIN 1e-6
#define MAX_GAIN 1e9
#define MAX_NSAMP ((int64_t)1 << 40)
#define MAX_OFFSET ((long)1 << 40)
#define MAX_BASELINE (1L << 30)
#define MAX_BLOCK_SIZE (1L << 30)

/* Largest file read into memory. */
#define MAX_HEADER_BYTES ((size_t)1 << 20)
#define MAX_SIGNAL_BYTES ((size_t)1 << 31)

/* One header line being taken apart into whitespace-separated fields. */
typedef struct hea_line {
    const char *what;       /* file name for messages */
    int line_no;            /* 1-based */
    const char *p, *end;    /* unread rest of the line */
    int field;              /* 1-based number of the last field read */
} hea_line;

/* ---- small parsing helpers ------------------------------------------- */

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Copy the next field into tok; 0 if the line has no more fields. */
static int next_field(hea_line *ln, char *tok, size_t cap, ep_error *err)
{
    size_t n = 0;

    while (ln->p < ln->end && is_blank(*ln->p))
        ln->p++;
    if (ln->p == ln->end)
        return 0;
    ln->field++;
    while (ln->p < ln->end && !is_blank(*ln->p)) {
        if (n + 1 >= cap)
            return ep_error_set(err, EP_EFORMAT,
                                "%s line %d: field %d is longer than %zu "
                                "characters", ln->what, ln->line_no,
                                ln->field, cap - 1);
        tok[n++] = *ln->p++;
    }
    tok[n] = '\0';
    return 1;
}

/* Whole-string integer in [lo, hi]; -1 if it is not one. */
static int parse_long(const char *s, long lo, long hi, long *out)
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

static int field_error(const hea_line *ln, const char *name,
                       const char *tok, const char *expected, ep_error *err)
{
    return ep_error_set(err, EP_EFORMAT,
                        "%s line %d: field %d (%s) is '%s', expected %s",
                        ln->what, ln->line_no, ln->field, name, tok,
                        expected);
}

/* Read one optional integer field: 1 if it was there, 0 if the line has
 * ended, or an error code. */
static int optional_long(hea_line *ln, const char *name, long lo, long hi,
                         long *out, ep_error *err)
{
    char tok[MAX_TOKEN];
    char expected[96];
    int rc = next_field(ln, tok, sizeof tok, err);

    if (rc <= 0)
        return rc;
    if (parse_long(tok, lo, hi, out) != 0) {
        snprintf(expected, sizeof expected, "an integer in [%ld, %ld]", lo,
                 hi);
        return field_error(ln, name, tok, expected, err);
    }
    return 1;
}

/* strtod also reads hexadecimal ("0x168"); a WFDB header writes
 * numbers in decimal, so [from, to) must hold no 'x'. */
static int plain_decimal(const char *from, const char *to)
{
    for (; from < to; from++)
        if (*from == 'x' || *from == 'X')
            return 0;
    return 1;
}

/* ---- record line -------------------------------------------------------- */

static int parse_record_line(hea_line *ln, ep_record *rec, ep_error *err)
{
    char tok[MAX_TOKEN];
    char *end;
    long nsig, nsamp;
    int rc;

    /* Name, refusing multi-segment records ("name/nseg"). */
    rc = next_field(ln, tok, sizeof tok, err);
    if (rc < 0)
        return rc;
    if (strchr(tok, '/') != NULL)
        return field_error(ln, "record name", tok,
                           "a single-segment record (multi-segment records "
                           "are not supported)", err);
    if (strlen(tok) >= sizeof rec->name)
        return field_error(ln, "record name", tok,
                           "a name shorter than 64 characters", err);
    strcpy(rec->name, tok);

    /* Number of signals. */
    rc = optional_long(ln, "number of signals", 0, EP_WFDB_MAX_SIGNALS,
                       &nsig, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return ep_error_set(err, EP_EFORMAT,
                            "%s line %d: record line has no number of "
                            "signals (field 2)", ln->what, ln->line_no);
    rec->n_signals = (int)nsig;

    /* Sampling frequency, ignoring a counter frequency after '/'. */
    rec->sampling_rate = WFDB_DEFAULT_FS;
    rc = next_field(ln, tok, sizeof tok, err);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        double fs;

        errno = 0;
        fs = strtod(tok, &end);
        if (errno != 0 || end == tok || !plain_decimal(tok, end) ||
            (*end != '\0' && *end != '/') ||
            !isfinite(fs) || fs < MIN_FS || fs > MAX_FS)
            return field_error(ln, "sampling frequency", tok,
                               "a number in [0.001, 1e6] Hz", err);
        rec->sampling_rate = fs;
    }

    /* Samples per signal; 0 or absent means "as many as the file has". */
    rc = optional_long(ln, "number of samples", 0, (long)MAX_NSAMP, &nsamp,
                       err);
    if (rc < 0)
        return rc;
    rec->n_samples = rc > 0 ? (int64_t)nsamp : 0;
    return 0;
}

/* ---- signal line -------------------------------------------------------- */

/* Value range of one sample in each format. */
static int format_range(int format, long *lo, long *hi, int *bits)
{
    switch (format) {
    case 212: *bits = 12; break;
    case 16: *bits = 16; break;
    case 80: *bits = 8; break;
    default: *bits = 0; break;
    }
    *lo = *bits > 0 ? -(1L << (*bits - 1)) : 0;
    *hi = *bits > 0 ? (1L << (*bits - 1)) - 1 : 0;
    return *bits > 0 ? 0 : -1;
}

/* "212", "16x1", "212:0+512": format, samples per frame, skew, offset. */
static int parse_format_field(hea_line *ln, const char *tok,
                              ep_signal_info *sig, ep_error *err)
{
    const char *p = tok;
    char *end;
    long v, lo, hi;
    int bits;

    errno = 0;
    v = strtol(p, &end, 10);
    if (end == p || errno != 0 || v > INT_MAX || v < 0 ||
        format_range((int)v, &lo, &hi, &bits) != 0)
        return field_error(ln, "storage format", tok,
                           "212, 16 or 80 (other formats are not supported)",
                           err);
    sig->format = (int)v;
    p = end;
    if (*p == 'x') {
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v != 1)
            return field_error(ln, "storage format", tok,
                               "one sample per frame (multi-frequency "
                               "records are not supported)", err);
        p = end;
    }
    if (*p == ':') {
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v != 0)
            return field_error(ln, "storage format", tok,
                               "skew 0 (skewed signals are not supported)",
                               err);
        p = end;
    }
    if (*p == '+') {
        errno = 0;
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || errno != 0 || v < 0 || v > MAX_OFFSET)
            return field_error(ln, "storage format", tok,
                               "a byte offset in [0, 2^40] after '+'", err);
        sig->byte_offset = v;
        p = end;
    }
    if (*p != '\0')
        return field_error(ln, "storage format", tok,
                           "FORMAT[xN][:SKEW][+OFFSET]", err);
    return 0;
}

/* "200", "200(1024)", "200/mV", "200(1024)/mV".  *has_baseline says
 * whether a baseline was given (else it defaults to ADC zero). */
static int parse_gain_field(hea_line *ln, const char *tok,
                            ep_signal_info *sig, int *has_baseline,
                            ep_error *err)
{
    const char *p = tok;
    char *end;
    double gain;

    errno = 0;
    gain = strtod(p, &end);
    if (end == p || errno != 0 || !plain_decimal(p, end) ||
        !isfinite(gain) || gain < 0.0 ||
        (gain > 0.0 && gain < MIN_GAIN) || gain > MAX_GAIN)
        return field_error(ln, "gain", tok,
                           "0 (the default) or a gain in [1e-6, 1e9]", err);
    sig->gain = gain == 0.0 ? WFDB_DEFAULT_GAIN : gain;
    p = end;
    if (*p == '(') {
        long base;

        errno = 0;
        base = strtol(p + 1, &end, 10);
        if (end == p + 1 || errno != 0 || *end != ')' ||
            base < -MAX_BASELINE || base > MAX_BASELINE)
            return field_error(ln, "gain", tok,
                               "GAIN(BASELINE) with an integer baseline "
                               "of magnitude at most 2^30", err);
        sig->baseline = (int)base;
        *has_baseline = 1;
        p = end + 1;
    }
    if (*p == '/') {
        size_t n = strlen(p + 1);

        if (n == 0 || n >= sizeof sig->units)
            return field_error(ln, "gain", tok,
                               "units of 1 to 15 characters after '/'", err);
        memcpy(sig->units, p + 1, n + 1);
        p += 1 + n;
    }
    if (*p != '\0')
        return field_error(ln, "gain", tok,
                           "GAIN[(BASELINE)][/UNITS]", err);
    return 0;
}

/* The signal file name: a plain name in the record's directory. */
static int parse_file_field(hea_line *ln, const char *tok,
                            ep_signal_info *sig, ep_error *err)
{
    if (strlen(tok) >= sizeof sig->file || strchr(tok, '/') != NULL ||
        strchr(tok, '\\') != NULL || strcmp(tok, "-") == 0 ||
        strcmp(tok, ".") == 0 || strcmp(tok, "..") == 0)
        return field_error(ln, "file name", tok,
                           "a plain file name of at most 63 characters in "
                           "the record's directory", err);
    strcpy(sig->file, tok);
    return 0;
}

/* The rest of the line, trimmed, is the description (when not empty). */
static void take_description(hea_line *ln, ep_signal_info *sig)
{
    const char *b = ln->p, *e = ln->end;
    size_t n;

    while (b < e && is_blank(*b))
        b++;
    while (e > b && is_blank(e[-1]))
        e--;
    /* Limitation: descriptions longer than 63 characters are cut. */
    n = (size_t)(e - b);
    if (n == 0)
        return;
    if (n >= sizeof sig->name)
        n = sizeof sig->name - 1;
    memcpy(sig->name, b, n);
    sig->name[n] = '\0';
}

/* ADC resolution, zero, initial value, checksum and block size. */
static int parse_adc_fields(hea_line *ln, ep_signal_info *sig,
                            int has_baseline, ep_error *err)
{
    long lo, hi, v;
    int bits, rc;

    format_range(sig->format, &lo, &hi, &bits);
    sig->adc_resolution = bits;
    rc = optional_long(ln, "ADC resolution", 0, bits, &v, err);
    if (rc <= 0)
        goto done;
    if (v != 0)
        sig->adc_resolution = (int)v;

    rc = optional_long(ln, "ADC zero", lo, hi, &v, err);
    if (rc <= 0)
        goto done;
    sig->adc_zero = (int)v;

    rc = optional_long(ln, "initial value", lo, hi, &v, err);
    if (rc <= 0)
        goto done;
    sig->initial_value = (int)v;
    sig->has_initial_value = 1;

    /* WFDB writes the checksum signed; accept its unsigned spelling too. */
    rc = optional_long(ln, "checksum", -32768, 65535, &v, err);
    if (rc <= 0)
        goto done;
    sig->checksum = (int)v;
    sig->has_checksum = 1;

    rc = optional_long(ln, "block size", 0, MAX_BLOCK_SIZE, &v, err);
    if (rc <= 0)
        goto done;
    sig->block_size = (int)v;
    take_description(ln, sig);
    rc = 0;

done:
    if (!has_baseline)
        sig->baseline = sig->adc_zero;
    if (!sig->has_initial_value)
        sig->initial_value = sig->adc_zero;
    return rc < 0 ? rc : 0;
}

static int parse_signal_line(hea_line *ln, int index, ep_signal_info *sig,
                             ep_error *err)
{
    char tok[MAX_TOKEN];
    int rc, has_baseline = 0;

    /* Defaults of every optional field (WFDB conventions). */
    sig->gain = WFDB_DEFAULT_GAIN;
    strcpy(sig->units, "mV");
    snprintf(sig->name, sizeof sig->name, "signal %d", index);
    sig->checksum_ok = -1;
    sig->initial_value_ok = -1;

    /* File name and format are required. */
    rc = next_field(ln, tok, sizeof tok, err);
    if (rc < 0)
        return rc;
    if ((rc = parse_file_field(ln, tok, sig, err)) != 0)
        return rc;
    rc = next_field(ln, tok, sizeof tok, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return ep_error_set(err, EP_EFORMAT,
                            "%s line %d: signal line has no storage format "
                            "(field 2)", ln->what, ln->line_no);
    if ((rc = parse_format_field(ln, tok, sig, err)) != 0)
        return rc;

    /* Everything after the format is optional. */
    rc = next_field(ln, tok, sizeof tok, err);
    if (rc < 0)
        return rc;
    if (rc > 0 &&
        (rc = parse_gain_field(ln, tok, sig, &has_baseline, err)) != 0)
        return rc;
    return parse_adc_fields(ln, sig, has_baseline, err);
}

/* ---- whole header ------------------------------------------------------ */

/* Signals of one file must be consecutive and share format and offset,
 * because their samples are interleaved frame by frame. */
static int check_file_groups(const ep_record *rec, const char *what,
                             ep_error *err)
{
    int i, j;

    for (i = 1; i < rec->n_signals; i++) {
        const ep_signal_info *s = &rec->signals[i];
        const ep_signal_info *prev = &rec->signals[i - 1];

        if (strcmp(s->file, prev->file) == 0) {
            if (s->format != prev->format ||
                s->byte_offset != prev->byte_offset)
                return ep_error_set(err, EP_EFORMAT,
                                    "%s: signals %d and %d share file '%s' "
                                    "but not format and byte offset", what,
                                    i - 1, i, s->file);
            continue;
        }
        for (j = 0; j < i - 1; j++)
            if (strcmp(s->file, rec->signals[j].file) == 0)
                return ep_error_set(err, EP_EFORMAT,
                                    "%s: signal %d uses file '%s' of signal "
                                    "%d, but signals of one file must be "
                                    "consecutive", what, i, s->file, j);
    }
    return 0;
}

/* Length of the UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0 if it is not one. */
static size_t utf8_length(const unsigned char *p, size_t avail)
{
    size_t n, i;
    unsigned lo = 0x80, hi = 0xbf;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    else
        return 0;

    /* The second byte's range excludes the overlong and out-of-range
     * forms of each lead byte. */
    if (p[0] == 0xe0)
        lo = 0xa0;
    else if (p[0] == 0xed)
        hi = 0x9f;
    else if (p[0] == 0xf0)
        lo = 0x90;
    else if (p[0] == 0xf4)
        hi = 0x8f;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* Find the line that starts at *pos; strip its LF or CR-LF.  Control
 * bytes other than tab are refused so that binary junk is named early,
 * and so is text that is not UTF-8: names and descriptions end up in
 * JSON, which cannot carry it. */
static int split_line(const char *text, size_t len, size_t *pos,
                      const char *what, int line_no, hea_line *ln,
                      ep_error *err)
{
    size_t b = *pos, e = b;

    while (e < len && text[e] != '\n')
        e++;
    *pos = e < len ? e + 1 : e;
    if (e > b && text[e - 1] == '\r')
        e--;
    for (size_t i = b; i < e;) {
        unsigned char c = (unsigned char)text[i];
        size_t n = utf8_length((const unsigned char *)text + i, e - i);

        if (c < 0x20 && c != '\t')
            return ep_error_set(err, EP_EFORMAT,
                                "%s line %d: unexpected control byte 0x%02x "
                                "at byte offset %zu", what, line_no, c, i);
        if (n == 0)
            return ep_error_set(err, EP_EFORMAT,
                                "%s line %d: byte 0x%02x at byte offset %zu "
                                "is not valid UTF-8", what, line_no, c, i);
        i += n;
    }
    ln->what = what;
    ln->line_no = line_no;
    ln->p = text + b;
    ln->end = text + e;
    ln->field = 0;
    while (ln->p < ln->end && is_blank(*ln->p))
        ln->p++;
    return 0;
}

static int parse_lines(const char *text, size_t len, const char *what,
                       ep_record *rec, ep_error *err)
{
    size_t pos = 0;
    int line_no = 0, have_record = 0, n_sig_lines = 0, rc;

    while (pos < len) {
        hea_line ln;

        /* Skip comments and blank lines anywhere. */
        line_no++;
        if ((rc = split_line(text, len, &pos, what, line_no, &ln, err)) != 0)
            return rc;
        if (ln.p == ln.end || *ln.p == '#')
            continue;
        if (ln.end - ln.p > MAX_LINE)
            return ep_error_set(err, EP_EFORMAT,
                                "%s line %d: longer than %d characters",
                                what, line_no, MAX_LINE);

        /* The first real line describes the record. */
        if (!have_record) {
            if ((rc = parse_record_line(&ln, rec, err)) != 0)
                return rc;
            have_record = 1;
            if (rec->n_signals > 0) {
                rec->signals = calloc((size_t)rec->n_signals,
                                      sizeof *rec->signals);
                if (rec->signals == NULL)
                    return ep_error_set(err, EP_ENOMEM,
                                        "%s: out of memory", what);
            }
            continue;
        }

        /* Then one line per signal, then only comments. */
        if (n_sig_lines == rec->n_signals)
            return ep_error_set(err, EP_EFORMAT,
                                "%s line %d: expected a comment ('#'): the "
                                "record declares %d signals, all already "
                                "read", what, line_no, rec->n_signals);
        rc = parse_signal_line(&ln, n_sig_lines,
                               &rec->signals[n_sig_lines], err);
        if (rc != 0)
            return rc;
        n_sig_lines++;
    }

    if (!have_record)
        return ep_error_set(err, EP_EFORMAT,
                            "%s: no record line (only comments or nothing)",
                            what);
    if (n_sig_lines < rec->n_signals)
        return ep_error_set(err, EP_EFORMAT,
                            "%s line %d: end of header after %d signal "
                            "lines, expected %d", what, line_no, n_sig_lines,
                            rec->n_signals);
    return check_file_groups(rec, what, err);
}

int ep_wfdb_parse_header(const char *text, size_t len, const char *what,
                         ep_record **out, ep_error *err)
{
    ep_record *rec;
    int rc;

    *out = NULL;
    if (text == NULL && len > 0)
        return ep_error_set(err, EP_EINVAL, "%s: no header text", what);
    rec = calloc(1, sizeof *rec);
    if (rec == NULL)
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory", what);
    rc = parse_lines(text, len, what, rec, err);
    if (rc != 0) {
        ep_wfdb_free_record(rec);
        return rc;
    }
    *out = rec;
    return 0;
}

/* ---- signal decoding ---------------------------------------------------- */

/* Bytes that `total` interleaved samples occupy in a format. */
static uint64_t bytes_for(int format, uint64_t total)
{
    switch (format) {
    case 212: return total / 2 * 3 + (total % 2) * 2;
    case 16: return total * 2;
    default: return total;
    }
}

/* Inverse of bytes_for; -1 if no sample count fills exactly len bytes. */
static int64_t samples_in(int format, uint64_t len)
{
    switch (format) {
    case 212:
        if (len % 3 == 1)
            return -1;
        return (int64_t)(len / 3 * 2 + (len % 3 == 2));
    case 16:
        return len % 2 ? -1 : (int64_t)(len / 2);
    default:
        return (int64_t)len;
    }
}

/* The k-th sample of the interleaved stream (k < the stream's length). */
static int32_t sample_at(int format, const unsigned char *d, uint64_t k)
{
    int32_t v;

    switch (format) {
    case 212: {
        /* Two 12-bit samples in 3 bytes: the low nibble of the middle byte
         * tops the first sample, its high nibble the second. */
        const unsigned char *b = d + k / 2 * 3;

        if (k % 2 == 0)
            v = b[0] | (b[1] & 0x0f) << 8;
        else
            v = b[2] | (b[1] & 0xf0) << 4;
        return v >= 2048 ? v - 4096 : v;
    }
    case 16:
        v = d[2 * k] | d[2 * k + 1] << 8;
        return v >= 32768 ? v - 65536 : v;
    default:
        return (int32_t)d[k] - 128;   /* offset binary */
    }
}

/* Number of samples per signal in a group's file, from the header or,
 * when it gives none, from the file's size. */
static int group_length(ep_record *rec, int g0, int nf, uint64_t dlen,
                        const char *what, ep_error *err)
{
    const ep_signal_info *s = &rec->signals[g0];
    int64_t total;

    if (rec->n_samples > 0) {
        uint64_t need = bytes_for(s->format,
                                  (uint64_t)rec->n_samples * (uint64_t)nf);

        if (dlen != need)
            return ep_error_set(err, EP_EFORMAT,
                                "%s: %llu bytes of samples after byte "
                                "offset %ld, but %lld samples of %d "
                                "signal(s) in format %d need %llu",
                                what, (unsigned long long)dlen,
                                s->byte_offset, (long long)rec->n_samples,
                                nf, s->format, (unsigned long long)need);
        return 0;
    }
    total = samples_in(s->format, dlen);
    if (dlen == 0)
        return ep_error_set(err, EP_EFORMAT,
                            "%s: no samples after byte offset %ld (records "
                            "of 0 samples are not supported)", what,
                            s->byte_offset);
    if (total <= 0 || total % nf != 0)
        return ep_error_set(err, EP_EFORMAT,
                            "%s: %llu bytes of samples after byte offset "
                            "%ld are not a whole number of frames of %d "
                            "signal(s) in format %d", what,
                            (unsigned long long)dlen, s->byte_offset, nf,
                            s->format);
    rec->n_samples = total / nf;
    return 0;
}

/* Compare each signal of the group with its header's checks. */
static int verify_group(ep_record *rec, int g0, int nf, const char *what,
                        ep_error *err)
{
    int rc = 0;

    for (int i = g0; i < g0 + nf; i++) {
        ep_signal_info *s = &rec->signals[i];
        const int32_t *x = rec->samples[i];
        uint32_t sum = 0;

        /* The WFDB checksum: the sum of all samples, kept to 16 bits. */
        for (int64_t t = 0; t < rec->n_samples; t++)
            sum += (uint32_t)x[t];
        sum &= 0xffff;
        s->computed_checksum = sum >= 32768 ? (int)sum - 65536 : (int)sum;
        if (s->has_checksum)
            s->checksum_ok = ((uint32_t)s->checksum & 0xffff) == sum;
        if (s->has_initial_value)
            s->initial_value_ok = x[0] == s->initial_value;

        if (rc == 0 && s->checksum_ok == 0)
            rc = ep_error_set(err, EP_ECHECKSUM,
                              "%s: signal %d (%s): checksum of the samples "
                              "is %d, the header says %d", what, i, s->name,
                              s->computed_checksum, s->checksum);
        if (rc == 0 && s->initial_value_ok == 0)
            rc = ep_error_set(err, EP_ECHECKSUM,
                              "%s: signal %d (%s): first sample is %d, the "
                              "header says %d", what, i, s->name, (int)x[0],
                              s->initial_value);
    }
    return rc;
}

static int decode_group(ep_record *rec, int g0, const unsigned char *buf,
                        size_t len, const char *what, ep_error *err)
{
    const ep_signal_info *s0 = &rec->signals[g0];
    const unsigned char *data;
    uint64_t k = 0;
    int nf = 1, rc;

    /* The group: the consecutive signals stored in this file. */
    while (g0 + nf < rec->n_signals &&
           strcmp(rec->signals[g0 + nf].file, s0->file) == 0)
        nf++;
    if ((uint64_t)len < (uint64_t)s0->byte_offset)
        return ep_error_set(err, EP_EFORMAT,
                            "%s: file has %zu bytes, fewer than its byte "
                            "offset %ld", what, len, s0->byte_offset);
    data = buf + s0->byte_offset;
    rc = group_length(rec, g0, nf, (uint64_t)len - (uint64_t)s0->byte_offset,
                      what, err);
    if (rc != 0)
        return rc;

    /* One array per signal; the file size bounds the allocation. */
    if (rec->samples == NULL) {
        rec->samples = calloc((size_t)rec->n_signals, sizeof *rec->samples);
        if (rec->samples == NULL)
            return ep_error_set(err, EP_ENOMEM, "%s: out of memory", what);
    }
    for (int i = g0; i < g0 + nf; i++) {
        free(rec->samples[i]);
        rec->samples[i] = malloc((size_t)rec->n_samples * sizeof(int32_t));
        if (rec->samples[i] == NULL)
            return ep_error_set(err, EP_ENOMEM,
                                "%s: out of memory for %lld samples", what,
                                (long long)rec->n_samples);
    }

    /* Frames hold one sample of each signal of the group in turn. */
    for (int64_t t = 0; t < rec->n_samples; t++)
        for (int i = g0; i < g0 + nf; i++)
            rec->samples[i][t] = sample_at(s0->format, data, k++);
    return verify_group(rec, g0, nf, what, err);
}

static int first_signal_of(const ep_record *rec, const char *file)
{
    for (int i = 0; i < rec->n_signals; i++)
        if (strcmp(rec->signals[i].file, file) == 0)
            return i;
    return -1;
}

int ep_wfdb_decode_signals(ep_record *rec, const char *file,
                           const unsigned char *buf, size_t len,
                           ep_error *err)
{
    int g0;

    if (rec == NULL || file == NULL || (buf == NULL && len > 0))
        return ep_error_set(err, EP_EINVAL,
                            "ep_wfdb_decode_signals: missing argument");
    g0 = first_signal_of(rec, file);
    if (g0 < 0)
        return ep_error_set(err, EP_ENOTFOUND,
                            "%s: no signal of record %s is stored there",
                            file, rec->name);
    return decode_group(rec, g0, buf, len, file, err);
}

/* ---- records on disk ---------------------------------------------------- */

/* Open path for reading and check that it is a regular file of at most
 * cap bytes: a directory, a device such as /dev/zero or a FIFO would
 * otherwise fail late, grow the buffer up to cap or block. */
static int open_regular(const char *path, size_t cap, int *fd_out,
                        size_t *size_out, ep_error *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0)
        return ep_error_set(err, EP_EIO, "cannot open %s: %s", path,
                            strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;

        close(fd);
        return ep_error_set(err, EP_EIO, "cannot stat %s: %s", path,
                            strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ep_error_set(err, EP_EIO, "%s is %s, expected a regular "
                            "file", path, S_ISDIR(st.st_mode)
                                ? "a directory"
                                : "a device, FIFO or socket");
    }
    if ((uint64_t)st.st_size > (uint64_t)cap) {
        close(fd);
        return ep_error_set(err, EP_ERANGE, "%s has %lld bytes, more than "
                            "the %zu accepted", path,
                            (long long)st.st_size, cap);
    }
    *fd_out = fd;
    *size_out = (size_t)st.st_size;
    return 0;
}

int ep_wfdb_read_file(const char *path, size_t cap, unsigned char **out,
                      size_t *len, ep_error *err)
{
    unsigned char *buf;
    size_t size = 0, n = 0;
    int fd = -1, rc;

    *out = NULL;
    if ((rc = open_regular(path, cap, &fd, &size, err)) != 0)
        return rc;

    /* One allocation of the size fstat gave, plus a terminating NUL; a
     * file that changes size while being read is reported, not chased. */
    buf = malloc(size + 1);
    if (buf == NULL) {
        close(fd);
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory for %zu "
                            "bytes", path, size);
    }
    while (n < size) {
        ssize_t got = read(fd, buf + n, size - n);

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    if (n != size) {
        free(buf);
        return ep_error_set(err, EP_EIO, "cannot read %s: got %zu of its "
                            "%zu bytes", path, n, size);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* "dir/100" + "100.dat" -> "dir/100.dat" (the record's directory). */
static char *sibling_path(const char *record, const char *file)
{
    const char *slash = strrchr(record, '/');
    size_t dir = slash ? (size_t)(slash - record) + 1 : 0;
    char *p = malloc(dir + strlen(file) + 1);

    if (p != NULL) {
        memcpy(p, record, dir);
        strcpy(p + dir, file);
    }
    return p;
}

static int read_signal_files(const char *record, ep_record *rec, int verify,
                             ep_error *err)
{
    int any_mismatch = 0;

    for (int g0 = 0; g0 < rec->n_signals; g0++) {
        unsigned char *buf;
        size_t len;
        char *path;
        int rc;

        if (g0 > 0 && strcmp(rec->signals[g0].file,
                             rec->signals[g0 - 1].file) == 0)
            continue;
        path = sibling_path(record, rec->signals[g0].file);
        if (path == NULL)
            return ep_error_set(err, EP_ENOMEM, "out of memory");
        rc = ep_wfdb_read_file(path, MAX_SIGNAL_BYTES, &buf, &len, err);
        if (rc == 0) {
            rc = decode_group(rec, g0, buf, len, path, err);
            free(buf);
        }
        free(path);

        /* Unverified reading keeps going past a failed check. */
        if (rc == EP_ECHECKSUM && !verify) {
            any_mismatch = 1;
            continue;
        }
        if (rc != 0)
            return rc;
    }
    if (any_mismatch)
        ep_error_clear(err);
    return 0;
}

/* 1 if name ends in an extension of a record's files, the usual slip of
 * naming "100.hea" where the record "100" is meant. */
static int has_wfdb_extension(const char *name)
{
    size_t n = strlen(name);

    return n > 4 && (strcmp(name + n - 4, ".hea") == 0 ||
                     strcmp(name + n - 4, ".dat") == 0 ||
                     strcmp(name + n - 4, ".atr") == 0);
}

static int read_record(const char *record, int verify, ep_record **out,
                       ep_error *err)
{
    unsigned char *text;
    size_t len;
    char *path;
    ep_record *rec;
    int rc;

    *out = NULL;
    if (record == NULL)
        return ep_error_set(err, EP_EINVAL, "no record name");
    path = malloc(strlen(record) + 5);
    if (path == NULL)
        return ep_error_set(err, EP_ENOMEM, "out of memory");
    strcpy(path, record);
    strcat(path, ".hea");
    rc = ep_wfdb_read_file(path, MAX_HEADER_BYTES, &text, &len, err);
    if (rc != 0 && err != NULL && has_wfdb_extension(record)) {
        char why[EP_ERROR_MSG_MAX];

        memcpy(why, err->msg, sizeof why);
        ep_error_set(err, rc, "%.400s (a record is named by its path "
                     "without the extension, as WFDB tools name it)", why);
    }
    if (rc == 0) {
        rc = ep_wfdb_parse_header((const char *)text, len, path, &rec, err);
        free(text);
    }
    free(path);
    if (rc != 0)
        return rc;

    rc = read_signal_files(record, rec, verify, err);
    if (rc != 0) {
        ep_wfdb_free_record(rec);
        return rc;
    }
    *out = rec;
    return 0;
}

int ep_wfdb_read_record(const char *record, ep_record **out, ep_error *err)
{
    return read_record(record, 1, out, err);
}

int ep_wfdb_read_record_unverified(const char *record, ep_record **out,
                                   ep_error *err)
{
    return read_record(record, 0, out, err);
}

void ep_wfdb_free_record(ep_record *rec)
{
    if (rec == NULL)
        return;
    if (rec->samples != NULL)
        for (int i = 0; i < rec->n_signals; i++)
            free(rec->samples[i]);
    free(rec->samples);
    free(rec->signals);
    free(rec);
}

int ep_wfdb_find_signal(const ep_record *rec, const char *name)
{
    for (int i = 0; i < rec->n_signals; i++)
        if (strcmp(rec->signals[i].name, name) == 0)
            return i;
    return EP_ENOTFOUND;
}

const char *ep_wfdb_signal_names(const ep_record *rec, char *buf,
                                 size_t size)
{
    size_t used = 0;
    int n;

    if (size == 0)
        return buf;
    buf[0] = '\0';
    for (int i = 0; i < rec->n_signals && used < size - 1; i++) {
        n = snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "",
                     rec->signals[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

/* Millivolts per unit of a voltage unit's name; 0 for anything else. */
static double millivolts_per_unit(const char *units)
{
    if (strcmp(units, "mV") == 0)
        return 1.0;
    if (strcmp(units, "uV") == 0 || strcmp(units, "\xc2\xb5V") == 0 ||
        strcmp(units, "\xce\xbcV") == 0)
        return 1e-3;
    if (strcmp(units, "V") == 0)
        return 1e3;
    return 0.0;
}

/* EP_OK when the signal exists and has been read. */
static int check_read_signal(const ep_record *rec, int signal, ep_error *err)
{
    if (signal < 0 || signal >= rec->n_signals)
        return ep_error_set(err, EP_EINVAL,
                            "record %s: signal %d does not exist (it has "
                            "%d)", rec->name, signal, rec->n_signals);
    if (rec->samples == NULL || rec->samples[signal] == NULL)
        return ep_error_set(err, EP_EINVAL,
                            "record %s: signal %d has not been read",
                            rec->name, signal);
    return EP_OK;
}

/* (adc - baseline) / gain * scale for every sample, in double. */
static void convert_signal(const ep_record *rec, int signal, double scale,
                           float *out)
{
    const ep_signal_info *s = &rec->signals[signal];

    for (int64_t t = 0; t < rec->n_samples; t++)
        out[t] = (float)((rec->samples[signal][t] - s->baseline) / s->gain *
                         scale);
}

int ep_wfdb_signal_mv(const ep_record *rec, int signal, float *out,
                      ep_error *err)
{
    double scale;
    int rc = check_read_signal(rec, signal, err);

    if (rc != EP_OK)
        return rc;
    scale = millivolts_per_unit(rec->signals[signal].units);
    if (scale == 0.0)
        return ep_error_set(err, EP_EINVAL, "record %s: signal %d ('%s') "
                            "is in '%s', not a voltage (mV, uV or V): not "
                            "an ECG lead", rec->name, signal,
                            rec->signals[signal].name,
                            rec->signals[signal].units);
    convert_signal(rec, signal, scale, out);
    return EP_OK;
}

int ep_wfdb_signal_physical(const ep_record *rec, int signal, float *out,
                            ep_error *err)
{
    int rc = check_read_signal(rec, signal, err);

    if (rc != EP_OK)
        return rc;
    convert_signal(rec, signal, 1.0, out);
    return EP_OK;
}
