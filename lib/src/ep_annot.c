/*
 * ep_annot.c - MIT-format annotation files (.atr and friends) and the
 * table of MIT annotation codes: mnemonics and the beat (isqrs) predicate.
 *
 * An MIT annotation file is a sequence of 16-bit little-endian words.  The
 * top 6 bits of a word are a code, the low 10 bits its data.  Codes 1..49
 * are annotations whose data is the time since the previous annotation;
 * codes 59..63 are pseudo-annotations that modify the time (SKIP) or the
 * annotation just read (NUM, SUB, CHN, AUX).  A word of 0 ends the file.
 * The num and chan fields carry over from one annotation to the next, the
 * way the WFDB library keeps them; subtype and aux do not.
 */
#include "ecgprune/ep_wfdb.h"

#include <stdlib.h>
#include <string.h>

#include "ep_wfdb_internal.h"

#define CODE_MAX 49      /* WFDB's ACMAX */
#define CODE_SKIP 59
#define CODE_NUM 60
#define CODE_SUB 61
#define CODE_CHN 62
#define CODE_AUX 63

/* Largest annotation file read into memory.  Each 2-byte word can become
 * a 32-byte ep_annotation, so 64 MiB (32 million annotations, about a
 * year of beats) already costs 1 GiB of items; a 24-hour Holter file is
 * near 1 MiB. */
#define MAX_ANNOT_BYTES ((size_t)1 << 26)

/* Times beyond this are taken as corrupt SKIP intervals. */
#define MAX_TIME ((int64_t)1 << 53)

/* Mnemonics of WFDB's ecgcodes.h, codes 0..49; unassigned codes are
 * spelled "[n]" as WFDB's annstr() spells them. */
static const char *const code_symbols[CODE_MAX + 1] = {
    " ", "N", "L", "R", "a", "V", "F", "J", "A", "S",           /* 0-9 */
    "E", "j", "/", "Q", "~", "[15]", "|", "[17]", "s", "T",     /* 10-19 */
    "*", "D", "\"", "=", "p", "B", "^", "t", "+", "u",          /* 20-29 */
    "?", "!", "[", "]", "e", "n", "@", "x", "f", "(",           /* 30-39 */
    ")", "r", "[42]", "[43]", "[44]", "[45]", "[46]", "[47]",   /* 40-47 */
    "[48]", "[49]",                                             /* 48-49 */
};

/* What each code means, as the WFDB documentation describes it. */
static const char *const code_descriptions[CODE_MAX + 1] = {
    [1] = "Normal beat",
    [2] = "Left bundle branch block beat",
    [3] = "Right bundle branch block beat",
    [4] = "Aberrated atrial premature beat",
    [5] = "Premature ventricular contraction",
    [6] = "Fusion of ventricular and normal beat",
    [7] = "Nodal (junctional) premature beat",
    [8] = "Atrial premature beat",
    [9] = "Supraventricular premature or ectopic beat",
    [10] = "Ventricular escape beat",
    [11] = "Nodal (junctional) escape beat",
    [12] = "Paced beat",
    [13] = "Unclassifiable beat",
    [14] = "Change in signal quality",
    [16] = "Isolated QRS-like artifact",
    [18] = "ST segment change",
    [19] = "T-wave change",
    [20] = "Systole",
    [21] = "Diastole",
    [22] = "Comment annotation",
    [23] = "Measurement annotation",
    [24] = "P-wave peak",
    [25] = "Bundle branch block beat (unspecified)",
    [26] = "Non-conducted pacer spike",
    [27] = "T-wave peak",
    [28] = "Rhythm change",
    [29] = "U-wave peak",
    [30] = "Beat not classified during learning",
    [31] = "Ventricular flutter wave",
    [32] = "Start of ventricular flutter/fibrillation",
    [33] = "End of ventricular flutter/fibrillation",
    [34] = "Atrial escape beat",
    [35] = "Supraventricular escape beat",
    [36] = "Link to external data",
    [37] = "Non-conducted P-wave (blocked APC)",
    [38] = "Fusion of paced and normal beat",
    [39] = "Waveform onset",
    [40] = "Waveform end",
    [41] = "R-on-T premature ventricular contraction",
};

/* WFDB's isqrs: the codes that mark a QRS complex.  Besides the beat
 * labels this includes 30 (?, unclassified in learning) and 31 (!,
 * ventricular flutter wave). */
static const unsigned char code_is_beat[CODE_MAX + 1] = {
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1,      /* 0-9: N L R a V F J A S */
    1, 1, 1, 1, 0, 0, 0, 0, 0, 0,      /* 10-19: E j / Q */
    0, 0, 0, 0, 0, 1, 0, 0, 0, 0,      /* 20-29: B */
    1, 1, 0, 0, 1, 1, 0, 0, 1, 0,      /* 30-39: ? ! e n f */
    0, 1, 0, 0, 0, 0, 0, 0, 0, 0,      /* 40-49: r */
};

const char *ep_wfdb_code_symbol(int code)
{
    if (code < 0 || code > CODE_MAX)
        return "?";
    return code_symbols[code];
}

const char *ep_wfdb_code_description(int code)
{
    if (code < 0 || code > CODE_MAX || code_descriptions[code] == NULL)
        return "";
    return code_descriptions[code];
}

int ep_wfdb_symbol_code(const char *symbol)
{
    for (int code = 1; code <= CODE_MAX; code++)
        if (strcmp(symbol, code_symbols[code]) == 0)
            return code;
    return EP_ENOTFOUND;
}

int ep_wfdb_is_beat(int code)
{
    return code >= 0 && code <= CODE_MAX && code_is_beat[code];
}

int ep_wfdb_check_beats(const ep_annotations *ann, int64_t n_samples,
                        ep_error *err)
{
    const ep_annotation *last = NULL;
    size_t i;

    for (i = 0; i < ann->count; i++) {
        const ep_annotation *a = &ann->items[i];

        if (!ep_wfdb_is_beat(a->code))
            continue;
        if (a->sample < 0 || a->sample >= n_samples)
            return ep_error_set(err, EP_EFORMAT, "annotation %zu of %zu, a "
                                "beat at sample %lld, is outside the signal "
                                "(0..%lld): is it the annotation file of a "
                                "longer record?", i + 1, ann->count,
                                (long long)a->sample,
                                (long long)n_samples - 1);
        if (last && last->sample == a->sample)
            return ep_error_set(err, EP_EFORMAT, "annotation %zu of %zu: "
                                "two beats at sample %lld (%s and %s); "
                                "expected one beat per sample", i + 1,
                                ann->count, (long long)a->sample,
                                ep_wfdb_code_symbol(last->code),
                                ep_wfdb_code_symbol(a->code));
        last = a;
    }
    return EP_OK;
}

/* ---- parsing ------------------------------------------------------------ */

/* Parser state: where we are and what carries over between annotations. */
typedef struct annot_reader {
    const unsigned char *buf;
    size_t len, pos;
    const char *what;
    int64_t time;
    int num, chan;
    ep_annotations *ann;
    size_t cap;
} annot_reader;

static unsigned le16(const unsigned char *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* The low 8 bits of a field as a signed byte, as WFDB stores num and
 * subtyp (signed char). */
static int signed_byte(unsigned v)
{
    v &= 0xff;
    return v >= 128 ? (int)v - 256 : (int)v;
}

static int append(annot_reader *r, int code, ep_error *err)
{
    ep_annotations *a = r->ann;
    ep_annotation *item;

    if (a->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        ep_annotation *items = realloc(a->items, cap * sizeof *items);

        if (items == NULL)
            return ep_error_set(err, EP_ENOMEM, "%s: out of memory",
                                r->what);
        a->items = items;
        r->cap = cap;
    }
    item = &a->items[a->count++];
    item->sample = r->time;
    item->code = code;
    item->subtype = 0;
    item->chan = r->chan;
    item->num = r->num;
    item->aux = NULL;
    return 0;
}

static int truncated(const annot_reader *r, const char *expected,
                     ep_error *err)
{
    return ep_error_set(err, EP_EFORMAT,
                        "%s: truncated at byte offset %zu (file has %zu "
                        "bytes): expected %s", r->what, r->pos, r->len,
                        expected);
}

/* SKIP: a signed 32-bit interval, high 16-bit word first (PDP-11 order). */
static int read_skip(annot_reader *r, ep_error *err)
{
    uint32_t u;
    int64_t interval;

    if (r->len - r->pos < 6)
        return truncated(r, "the 4-byte interval of a SKIP", err);
    u = (uint32_t)le16(r->buf + r->pos + 2) << 16 |
        (uint32_t)le16(r->buf + r->pos + 4);
    interval = u >= 0x80000000u ? (int64_t)u - ((int64_t)1 << 32)
                                : (int64_t)u;
    r->time += interval;
    if (r->time < 0 || r->time > MAX_TIME)
        return ep_error_set(err, EP_EFORMAT,
                            "%s: SKIP at byte offset %zu moves the time to "
                            "%lld, expected a time in [0, 2^53]", r->what,
                            r->pos, (long long)r->time);
    r->pos += 6;
    return 0;
}

/* AUX: a byte count (low 8 bits of the data) and the bytes, padded to an
 * even length.  The text is kept up to its first NUL. */
static int read_aux(annot_reader *r, ep_annotation *item, unsigned data,
                    ep_error *err)
{
    size_t n = data & 0xff, padded = (n + 1) & ~(size_t)1;
    const unsigned char *text = r->buf + r->pos + 2;
    char *aux;

    if (r->len - r->pos - 2 < padded)
        return truncated(r, "the bytes of an AUX string", err);
    aux = malloc(n + 1);
    if (aux == NULL)
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory", r->what);
    memcpy(aux, text, n);
    aux[n] = '\0';
    free(item->aux);
    item->aux = aux;
    r->pos += 2 + padded;
    return 0;
}

/* NUM, SUB, CHN and AUX change the annotation read just before them. */
static int read_modifier(annot_reader *r, int code, unsigned data,
                         ep_error *err)
{
    static const char *const names[] = {"NUM", "SUB", "CHN", "AUX"};
    ep_annotation *item;

    if (r->ann->count == 0)
        return ep_error_set(err, EP_EFORMAT,
                            "%s: %s at byte offset %zu comes before any "
                            "annotation, expected an annotation word first",
                            r->what, names[code - CODE_NUM], r->pos);
    item = &r->ann->items[r->ann->count - 1];
    switch (code) {
    case CODE_NUM:
        r->num = item->num = signed_byte(data);
        break;
    case CODE_SUB:
        item->subtype = signed_byte(data);
        break;
    case CODE_CHN:
        r->chan = item->chan = (int)(data & 0xff);
        break;
    default:
        return read_aux(r, item, data, err);
    }
    r->pos += 2;
    return 0;
}

static int read_words(annot_reader *r, ep_error *err)
{
    for (;;) {
        unsigned word, code, data;
        int rc;

        if (r->len - r->pos < 2)
            return truncated(r, "an annotation word or the end word 0",
                             err);
        word = le16(r->buf + r->pos);
        code = word >> 10;
        data = word & 0x3ff;

        /* Limitation: bytes after the end word are ignored, as WFDB does. */
        if (word == 0)
            return 0;
        if (code >= 1 && code <= CODE_MAX) {
            r->time += data;
            if ((rc = append(r, (int)code, err)) != 0)
                return rc;
            r->pos += 2;
        } else if (code == CODE_SKIP) {
            if ((rc = read_skip(r, err)) != 0)
                return rc;
        } else if (code >= CODE_NUM) {
            if ((rc = read_modifier(r, (int)code, data, err)) != 0)
                return rc;
        } else {
            return ep_error_set(err, EP_EFORMAT,
                                "%s: byte offset %zu: code %u is not "
                                "defined, expected 1..49 or 59..63",
                                r->what, r->pos, code);
        }
    }
}

/* Whether the annotations are in time order, as WFDB writes them (only a
 * negative SKIP can break it). */
static int in_time_order(const ep_annotations *a)
{
    size_t i;

    for (i = 1; i < a->count; i++)
        if (a->items[i].sample < a->items[i - 1].sample)
            return 0;
    return 1;
}

/* Stable bottom-up merge sort by sample: annotations at one sample keep
 * the file's order.  Merge sort rather than qsort, which is not stable. */
static int sort_by_time(ep_annotations *a, const char *what, ep_error *err)
{
    ep_annotation *src = a->items, *dst, *t;
    size_t n = a->count, width, lo, i, j, k, mid, hi;

    dst = malloc(n * sizeof *dst);
    if (dst == NULL)
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory", what);
    for (width = 1; width < n; width *= 2) {
        for (lo = 0; lo < n; lo += 2 * width) {
            mid = lo + width < n ? lo + width : n;
            hi = lo + 2 * width < n ? lo + 2 * width : n;
            for (i = lo, j = mid, k = lo; k < hi; k++)
                dst[k] = j >= hi || (i < mid && src[i].sample <=
                                                src[j].sample)
                         ? src[i++] : src[j++];
        }
        t = src;
        src = dst;
        dst = t;
    }
    a->items = src;
    free(dst);
    return 0;
}

int ep_wfdb_parse_annotations(const unsigned char *buf, size_t len,
                              const char *what, ep_annotations **out,
                              ep_error *err)
{
    annot_reader r;
    int rc;

    *out = NULL;
    if (buf == NULL && len > 0)
        return ep_error_set(err, EP_EINVAL, "%s: no annotation bytes",
                            what);
    memset(&r, 0, sizeof r);
    r.buf = buf;
    r.len = len;
    r.what = what;
    r.ann = calloc(1, sizeof *r.ann);
    if (r.ann == NULL)
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory", what);
    rc = read_words(&r, err);
    if (rc == 0 && !in_time_order(r.ann))
        rc = sort_by_time(r.ann, what, err);
    if (rc != 0) {
        ep_wfdb_free_annotations(r.ann);
        return rc;
    }
    *out = r.ann;
    return 0;
}

/* ---- files -------------------------------------------------------------- */

int ep_wfdb_read_annotations(const char *record, const char *ext,
                             ep_annotations **out, ep_error *err)
{
    unsigned char *buf;
    size_t len;
    char *path;
    int rc;

    *out = NULL;
    if (ext[0] == '\0' || strchr(ext, '/') != NULL)
        return ep_error_set(err, EP_EINVAL, "annotator '%.64s': expected a "
                            "file extension such as atr, without '/'", ext);
    path = malloc(strlen(record) + strlen(ext) + 2);
    if (path == NULL)
        return ep_error_set(err, EP_ENOMEM, "out of memory");
    strcpy(path, record);
    strcat(path, ".");
    strcat(path, ext);
    rc = ep_wfdb_read_file(path, MAX_ANNOT_BYTES, &buf, &len, err);
    if (rc == 0) {
        rc = ep_wfdb_parse_annotations(buf, len, path, out, err);
        free(buf);
    }
    free(path);
    return rc;
}

void ep_wfdb_free_annotations(ep_annotations *ann)
{
    if (ann == NULL)
        return;
    for (size_t i = 0; i < ann->count; i++)
        free(ann->items[i].aux);
    free(ann->items);
    free(ann);
}
