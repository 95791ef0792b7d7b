/*
 * ed_ecg.c - checking ECG uploads (JSON or multipart WFDB) and turning
 * them into one lead in mV with optional annotations.
 */
#include "ed_ecg.h"

#include <ctype.h>
#include <math.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_wfdb.h"
#include "ed_utf8.h"

static unsigned refuse(unsigned status, char *msg, size_t size,
                       const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static unsigned refuse(unsigned status, char *msg, size_t size,
                       const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, size, fmt, ap);
    va_end(ap);
    /* The message becomes a problem document's "detail"; it quotes client
     * bytes (a lead or field name, a file name from a header) and the
     * buffer may cut a character in two. */
    if (size)
        ed_utf8_scrub(msg);
    return status;
}

void ed_ecg_free(ed_ecg *ecg)
{
    free(ecg->mv);
    free(ecg->ann);
    memset(ecg, 0, sizeof *ecg);
}

/* By sample, then code: annotations on one sample sort the same however
 * they were sent (so a retry of a batch is the same batch). */
static int cmp_annot(const void *a, const void *b)
{
    const ed_annot *x = a, *y = b;

    if (x->sample != y->sample)
        return (x->sample > y->sample) - (x->sample < y->sample);
    return (x->code > y->code) - (x->code < y->code);
}

/* Shortest JSON annotation: {"sample":0,"symbol":"N"}. */
#define ED_ECG_MIN_ANNOT_BYTES 25

/* Before jansson builds its tree, which costs 30 to 80 times the bytes of
 * small values ({} and 0 take 2 or 3 bytes each), a scan bounds what the
 * tree could hold: at most two arrays ("samples", "annotations"), no more
 * objects than annotations fit in the body, and no more values than
 * max_samples and the annotations' fields.  0, or a status with msg. */
static unsigned precheck(const unsigned char *body, size_t len,
                         int64_t max_samples, char *msg, size_t ms)
{
    size_t i, objects = 0, arrays = 0, commas = 0;
    int in_string = 0;

    for (i = 0; i < len; i++) {
        if (in_string) {
            if (body[i] == '\\')
                i++;
            else if (body[i] == '"')
                in_string = 0;
            continue;
        }
        in_string = body[i] == '"';
        objects += body[i] == '{';
        arrays += body[i] == '[';
        commas += body[i] == ',';
    }
    if (arrays > 2)
        return refuse(400, msg, ms, "%zu JSON arrays; expected at most 2 "
                      "(\"samples\" and \"annotations\")", arrays);
    if (objects > 1 + len / ED_ECG_MIN_ANNOT_BYTES)
        return refuse(400, msg, ms, "%zu JSON objects in %zu bytes; an "
                      "annotation takes at least %d", objects, len,
                      ED_ECG_MIN_ANNOT_BYTES);
    if ((double)commas > (double)max_samples + 2.0 * (double)objects + 16)
        return refuse(413, msg, ms, "about %zu values, more than the limit "
                      "of %lld samples (limits.max_samples) allows", commas,
                      (long long)max_samples);
    return 0;
}

json_t *ed_ecg_annotations_json(const ed_ecg *ecg)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; i < ecg->n_ann; i++)
        json_array_append_new(arr, json_pack(
            "{s:I, s:s}", "sample", (json_int_t)ecg->ann[i].sample,
            "symbol", ep_wfdb_code_symbol(ecg->ann[i].code)));
    return arr;
}

/* Pseudonyms and lead names: short, printable, no spaces for subjects, so
 * a full name ("Jane Doe") cannot pass as a subject id. */
static int valid_token(const char *s, size_t max, int allow_space)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > max)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.' ||
              (allow_space && c == ' ')))
            return 0;
    }
    return 1;
}

int ed_ecg_valid_subject(const char *s)
{
    return valid_token(s, ED_SUBJECT_MAX, 0);
}

/* Fields that would identify a person are refused by name. */
static int is_identity_field(const char *key)
{
    static const char *const banned[] = {
        "name", "patient", "patient_name", "first_name", "last_name",
        "given_name", "family_name", "surname", "full_name", "birth_date",
        "date_of_birth", "dob", "address", "phone", "email", NULL};
    int i;

    for (i = 0; banned[i]; i++)
        if (strcmp(key, banned[i]) == 0)
            return 1;
    return 0;
}

/* Check the signal values: finite, plausible amplitude. */
/* Every value finite and within ED_ECG_MAX_MV; hint says what most
 * likely made one too large (a missing "gain", a header's wrong gain). */
static unsigned check_values(const ed_ecg *ecg, const char *what,
                             const char *hint, char *msg, size_t ms)
{
    int64_t i;

    for (i = 0; i < ecg->n; i++) {
        if (!isfinite(ecg->mv[i]))
            return refuse(422, msg, ms, "%s[%lld] is not a finite number",
                          what, (long long)i);
        if (fabsf(ecg->mv[i]) > ED_ECG_MAX_MV)
            return refuse(422, msg, ms, "%s[%lld] = %g mV is beyond +-%g mV "
                          "(%s?)", what, (long long)i, (double)ecg->mv[i],
                          ED_ECG_MAX_MV, hint);
    }
    return 0;
}

static unsigned check_rate(double fs, const char *what, char *msg,
                           size_t ms)
{
    if (!isfinite(fs) || fs < ED_ECG_MIN_FS || fs > ED_ECG_MAX_FS)
        return refuse(422, msg, ms, "%s = %g Hz is outside %g..%g Hz", what,
                      fs, ED_ECG_MIN_FS, ED_ECG_MAX_FS);
    return 0;
}

/* At least two seconds: shorter stretches hold too few beats to label. */
static unsigned check_length(int64_t n, double fs, int64_t max_samples,
                             const char *what, char *msg, size_t ms)
{
    if ((double)n < 2.0 * fs)
        return refuse(422, msg, ms, "%s holds %lld samples, less than two "
                      "seconds at %g Hz", what, (long long)n, fs);
    if (n > max_samples)
        return refuse(413, msg, ms, "%s holds %lld samples, more than the "
                      "limit of %lld (limits.max_samples)", what,
                      (long long)n, (long long)max_samples);
    return 0;
}

/* ---- JSON ------------------------------------------------------------- */

/* After sorting: two beats at one sample are one beat annotated twice
 * (a copy-paste or a merge gone wrong), which would be counted and scored
 * twice. */
static unsigned check_double_beats(const ed_ecg *ecg, char *msg, size_t ms)
{
    size_t i, last = 0;
    int seen = 0;

    /* The last beat so far, notes between two beats notwithstanding. */
    for (i = 0; i < ecg->n_ann; i++) {
        if (!ep_wfdb_is_beat(ecg->ann[i].code))
            continue;
        if (seen && ecg->ann[last].sample == ecg->ann[i].sample)
            return refuse(422, msg, ms, "annotations: two beats at sample "
                          "%lld (%s and %s); expected one beat per sample",
                          (long long)ecg->ann[i].sample,
                          ep_wfdb_code_symbol(ecg->ann[last].code),
                          ep_wfdb_code_symbol(ecg->ann[i].code));
        last = i;
        seen = 1;
    }
    return 0;
}

static unsigned json_annotations(json_t *arr, ed_ecg *ecg, char *msg,
                                 size_t ms)
{
    size_t i;
    json_t *a, *s, *sym;
    int code;

    if (!json_is_array(arr))
        return refuse(400, msg, ms, "\"annotations\": expected an array of "
                      "{\"sample\", \"symbol\"} objects");
    ecg->ann = calloc(json_array_size(arr) + 1, sizeof *ecg->ann);
    if (!ecg->ann)
        return refuse(500, msg, ms, "out of memory");
    json_array_foreach(arr, i, a) {
        s = json_object_get(a, "sample");
        sym = json_object_get(a, "symbol");
        if (!json_is_object(a) || json_object_size(a) != 2 ||
            !json_is_integer(s) || !json_is_string(sym))
            return refuse(400, msg, ms, "annotations[%zu]: expected "
                          "{\"sample\": integer, \"symbol\": string}", i);
        if (json_integer_value(s) < 0 || json_integer_value(s) >= ecg->n)
            return refuse(422, msg, ms, "annotations[%zu].sample = %lld is "
                          "outside the signal (0..%lld)", i,
                          (long long)json_integer_value(s),
                          (long long)ecg->n - 1);
        code = ep_wfdb_symbol_code(json_string_value(sym));
        if (code < 0)
            return refuse(422, msg, ms, "annotations[%zu].symbol \"%.16s\" is "
                          "not an MIT annotation symbol", i,
                          json_string_value(sym));
        ecg->ann[i].sample = json_integer_value(s);
        ecg->ann[i].code = code;
    }
    ecg->n_ann = json_array_size(arr);
    qsort(ecg->ann, ecg->n_ann, sizeof *ecg->ann, cmp_annot);
    return check_double_beats(ecg, msg, ms);
}

static unsigned json_samples(json_t *arr, double gain, double baseline,
                             int64_t max_samples, ed_ecg *ecg, char *msg,
                             size_t ms)
{
    size_t i;
    json_t *v;
    unsigned st;

    if (!json_is_array(arr))
        return refuse(400, msg, ms, "\"samples\": expected an array of "
                      "numbers");
    st = check_length((int64_t)json_array_size(arr), ecg->fs, max_samples,
                      "\"samples\"", msg, ms);
    if (st)
        return st;
    ecg->mv = malloc(json_array_size(arr) * sizeof *ecg->mv);
    if (!ecg->mv)
        return refuse(500, msg, ms, "out of memory");
    json_array_foreach(arr, i, v) {
        if (!json_is_number(v))
            return refuse(400, msg, ms, "samples[%zu]: expected a number, "
                          "got %s", i, json_is_string(v) ? "a string"
                          : json_is_null(v) ? "null" : "a non-number");
        ecg->mv[i] = (float)((json_number_value(v) - baseline) / gain);
    }
    ecg->n = (int64_t)json_array_size(arr);
    return check_values(ecg, "samples", "ADC units sent without \"gain\"",
                        msg, ms);
}

static unsigned number_field(json_t *root, const char *key, int required,
                             double *out, char *msg, size_t ms)
{
    json_t *v = json_object_get(root, key);

    if (!v) {
        if (required)
            return refuse(422, msg, ms, "\"%s\" is required", key);
        return 0;
    }
    if (!json_is_number(v))
        return refuse(400, msg, ms, "\"%s\": expected a number", key);
    *out = json_number_value(v);
    if (!isfinite(*out))
        return refuse(422, msg, ms, "\"%s\" is not finite", key);
    return 0;
}

/* The answer to a field that would identify a person, in JSON or in a
 * multipart part alike. */
static unsigned refuse_identity(const char *key, char *msg, size_t ms)
{
    return refuse(422, msg, ms, "field \"%s\" is refused: batches carry a "
                  "pseudonymous \"subject\" id only, never a person's "
                  "identity", key);
}

/* Known fields only; identity fields refused by name.  The message is
 * written before root, which owns the keys, goes. */
static unsigned json_check_fields(json_t *root, ed_ecg_kind kind, char *msg,
                                  size_t ms)
{
    const char *key;
    json_t *v;

    json_object_foreach(root, key, v) {
        int known = !strcmp(key, "sampling_rate") || !strcmp(key, "samples")
                    || !strcmp(key, "gain") || !strcmp(key, "baseline") ||
                    !strcmp(key, "lead");
        if (kind == ED_ECG_BATCH)
            known |= !strcmp(key, "subject") || !strcmp(key, "annotations");
        if (is_identity_field(key))
            return refuse_identity(key, msg, ms);
        if (!known)
            return refuse(400, msg, ms, "unknown field \"%s\"", key);
    }
    return 0;
}

/* The scalars: rate, units (gain and baseline) and lead name. */
static unsigned json_scalars(json_t *root, ed_ecg *ecg, double *gain,
                             double *baseline, char *msg, size_t ms)
{
    json_t *v;
    unsigned st;

    st = number_field(root, "sampling_rate", 1, &ecg->fs, msg, ms);
    if (!st)
        st = check_rate(ecg->fs, "\"sampling_rate\"", msg, ms);
    if (!st)
        st = number_field(root, "gain", 0, gain, msg, ms);
    /* WFDB gains of real ECG are 1 to a few thousand ADC units per mV;
     * beyond 1e6 every sample would round to 0 mV. */
    if (!st && (*gain <= 0.0 || *gain > 1e6))
        st = refuse(422, msg, ms, "\"gain\" = %g: expected ADC units per mV "
                    "in (0, 1e6]", *gain);
    if (!st)
        st = number_field(root, "baseline", 0, baseline, msg, ms);
    if (!st && json_object_get(root, "baseline") &&
        !json_object_get(root, "gain"))
        st = refuse(422, msg, ms, "\"baseline\" given without \"gain\": "
                    "ADC units need both");
    v = json_object_get(root, "lead");
    if (!st && v && (!json_is_string(v) ||
                     !valid_token(json_string_value(v), 31, 1)))
        st = refuse(400, msg, ms, "\"lead\": expected a name of 1..31 "
                    "letters, digits, spaces, '.', '-', '_'");
    snprintf(ecg->lead, sizeof ecg->lead, "%s",
             v && json_is_string(v) ? json_string_value(v) : "unspecified");
    return st;
}

/* The subject of a batch: a pseudonym, required. */
static unsigned json_subject(json_t *root, ed_ecg *ecg, char *msg,
                             size_t ms)
{
    json_t *v = json_object_get(root, "subject");

    if (!v)
        return refuse(422, msg, ms, "\"subject\" (a pseudonymous id) is "
                      "required");
    if (!json_is_string(v) || !ed_ecg_valid_subject(json_string_value(v)))
        return refuse(422, msg, ms, "\"subject\": expected a pseudonym of "
                      "1..%d letters, digits, '.', '-', '_' (no spaces, no "
                      "names)", ED_SUBJECT_MAX);
    strcpy(ecg->subject, json_string_value(v));
    return 0;
}

static unsigned parse_json(const unsigned char *body, size_t body_len,
                           int64_t max_samples, ed_ecg_kind kind, ed_ecg *ecg,
                           char *msg, size_t ms)
{
    json_error_t jerr;
    json_t *root, *v;
    double gain = 1.0, baseline = 0.0;
    unsigned st;

    /* On a pool thread when a route calls it (ed_ecg_parse_start): a body
     * of millions of numbers takes jansson about a second. */
    if ((st = precheck(body, body_len, max_samples, msg, ms)))
        return st;
    root = json_loadb((const char *)body, body_len, JSON_REJECT_DUPLICATES,
                      &jerr);
    if (!root)
        return refuse(400, msg, ms, "malformed JSON at line %d column %d "
                      "(byte %d): %s", jerr.line, jerr.column,
                      jerr.position, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return refuse(400, msg, ms, "expected a JSON object");
    }

    /* Fields, then scalars: the samples need the rate and the units. */
    st = json_check_fields(root, kind, msg, ms);
    if (!st)
        st = json_scalars(root, ecg, &gain, &baseline, msg, ms);
    if (!st && kind == ED_ECG_BATCH)
        st = json_subject(root, ecg, msg, ms);

    /* The signal, then annotations that index into it. */
    if (!st && !json_object_get(root, "samples"))
        st = refuse(422, msg, ms, "\"samples\" is required");
    if (!st)
        st = json_samples(json_object_get(root, "samples"), gain, baseline,
                          max_samples, ecg, msg, ms);
    v = json_object_get(root, "annotations");
    if (!st && v)
        st = json_annotations(v, ecg, msg, ms);
    json_decref(root);
    return st;
}

unsigned ed_ecg_parse_json(const unsigned char *body, size_t body_len,
                           int64_t max_samples, ed_ecg_kind kind,
                           ed_ecg *out, char *msg, size_t ms)
{
    unsigned st;

    memset(out, 0, sizeof *out);
    st = parse_json(body, body_len, max_samples, kind, out, msg, ms);
    if (st)
        ed_ecg_free(out);
    return st;
}

/* ---- multipart WFDB --------------------------------------------------- */

typedef struct part {
    unsigned char *data;
    size_t len, cap;
    int seen;                   /* a part of this name came */
} part;

typedef struct wfdb_parts {
    part header, signal, annotations, subject, lead, from, to;
    char unknown[64], twice[64];
    int failed, nameless;
} wfdb_parts;

static int part_append(part *p, const char *data, size_t n)
{
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        unsigned char *nd;
        while (cap < p->len + n + 1)
            cap *= 2;
        nd = realloc(p->data, cap);
        if (!nd)
            return -1;
        p->data = nd;
        p->cap = cap;
    }
    memcpy(p->data + p->len, data, n);
    p->len += n;
    p->data[p->len] = '\0';
    return 0;
}

static int has_ext(const char *name, const char *ext)
{
    size_t n = name ? strlen(name) : 0, e = strlen(ext);

    return n > e && strcmp(name + n - e, ext) == 0;
}

/* The field names of the parts, in the order of part_at. */
#define N_PARTS 7
static const char *const part_names[N_PARTS] = {
    "header", "signal", "annotations", "subject", "lead", "from", "to"};

static part *part_at(wfdb_parts *w, int i)
{
    part *parts[N_PARTS] = {&w->header, &w->signal, &w->annotations,
                            &w->subject, &w->lead, &w->from, &w->to};

    return parts[i];
}

/* The part a field name stands for, or NULL. */
static part *part_by_name(wfdb_parts *w, const char *key)
{
    int i;

    for (i = 0; key && i < N_PARTS; i++)
        if (!strcmp(key, part_names[i]))
            return part_at(w, i);
    return NULL;
}

/* The field name of a part (part_names). */
static const char *part_name(wfdb_parts *w, const part *p)
{
    int i;

    for (i = 0; i < N_PARTS; i++)
        if (part_at(w, i) == p)
            return part_names[i];
    return "?";
}

/* The part a file's extension stands for, or NULL. */
static part *part_by_ext(wfdb_parts *w, const char *filename)
{
    if (has_ext(filename, ".hea"))
        return &w->header;
    if (has_ext(filename, ".dat"))
        return &w->signal;
    if (has_ext(filename, ".atr"))
        return &w->annotations;
    return NULL;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *filename,
                               const char *ctype, const char *encoding,
                               const char *data, uint64_t off, size_t size)
{
    wfdb_parts *w = cls;
    int named = key != NULL && key[0] != '\0';
    part *p;

    (void)kind;
    (void)ctype;
    (void)encoding;

    /* A part is known by its field name, else by its file's extension
     * (libmicrohttpd passes a NULL key for a part without a name). */
    p = named ? part_by_name(w, key) : NULL;
    if (!p)
        p = part_by_ext(w, filename);
    if (!p) {
        if (named)
            snprintf(w->unknown, sizeof w->unknown, "%s", key);
        else
            w->nameless = 1;
        return MHD_YES;
    }
    if (off == 0) {
        if (p->seen) {
            snprintf(w->twice, sizeof w->twice, "%s", part_name(w, p));
            return MHD_YES;
        }
        p->seen = 1;
    }
    if (size && part_append(p, data, size)) {
        w->failed = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

static void parts_free(wfdb_parts *w)
{
    int i;

    for (i = 0; i < N_PARTS; i++)
        free(part_at(w, i)->data);
}

/* The annotations of a record of n_record samples, of which ecg holds
 * the span from sample `first`: kept inside the span, counted from it. */
static unsigned wfdb_annotations(const ed_ecg_part *p, int64_t first,
                                 int64_t n_record, ed_ecg *ecg, char *msg,
                                 size_t ms)
{
    ep_annotations *ann = NULL;
    ep_error e = {0};
    size_t i, k = 0;

    if (ep_wfdb_parse_annotations(p->data, p->len, "annotations", &ann, &e))
        return refuse(422, msg, ms, "%s", e.msg);
    if (ep_wfdb_check_beats(ann, n_record, &e)) {
        ep_wfdb_free_annotations(ann);
        return refuse(422, msg, ms, "annotations: %s", e.msg);
    }
    ecg->ann = calloc(ann->count + 1, sizeof *ecg->ann);
    if (!ecg->ann) {
        ep_wfdb_free_annotations(ann);
        return refuse(500, msg, ms, "out of memory");
    }
    for (i = 0; i < ann->count; i++) {
        const ep_annotation *a = &ann->items[i];

        /* Outside the span: dropped (outside the record, only notes). */
        if (a->sample < first || a->sample - first >= ecg->n)
            continue;
        ecg->ann[k].sample = a->sample - first;
        ecg->ann[k].code = a->code;
        k++;
    }
    ecg->n_ann = k;
    ep_wfdb_free_annotations(ann);
    return 0;       /* in time order, one beat a sample (ep_wfdb_check_beats) */
}

/* A time in seconds from a form field: digits, optionally a point and
 * more digits (no sign, exponent, hexadecimal or blank, which strtod
 * would take). */
static unsigned span_seconds(const ed_ecg_part *p, const char *name,
                             double *out, char *msg, size_t ms)
{
    const char *text = (const char *)p->data;
    size_t i = 0, digits = 0;

    while (i < p->len && isdigit((unsigned char)text[i]))
        i++, digits++;
    if (i < p->len && text[i] == '.')
        for (i++; i < p->len && isdigit((unsigned char)text[i]); i++)
            digits++;
    if (digits == 0 || i != p->len || digits > 15)
        return refuse(422, msg, ms, "\"%s\" = \"%.32s\": expected seconds "
                      "into the record, a decimal number such as 300 or "
                      "12.5", name, text);
    *out = strtod(text, NULL);
    return 0;
}

/* With the form fields "from" and "to" (seconds, each optional), cut ecg
 * to that span; *first is the span's first sample in the record. */
static unsigned wfdb_span(const ed_ecg_parts *w, ed_ecg *ecg,
                          int64_t *first, char *msg, size_t ms)
{
    double from = 0.0, to = (double)ecg->n / ecg->fs;
    int64_t s0, s1;
    unsigned st = 0;

    *first = 0;
    if (w->from.len)
        st = span_seconds(&w->from, "from", &from, msg, ms);
    if (!st && w->to.len)
        st = span_seconds(&w->to, "to", &to, msg, ms);
    if (st || (!w->from.len && !w->to.len))
        return st;
    /* Compared in seconds first, so that a huge value is refused before
     * it is turned into a sample index. */
    if (from >= (double)ecg->n / ecg->fs)
        return refuse(422, msg, ms, "\"from\" = %g s is past the end of "
                      "the record (%.3f s)", from, (double)ecg->n / ecg->fs);
    if (to > (double)ecg->n / ecg->fs + 0.5 / ecg->fs)
        return refuse(422, msg, ms, "\"to\" = %g s is past the end of the "
                      "record (%.3f s)", to, (double)ecg->n / ecg->fs);
    s0 = from < to ? (int64_t)llround(from * ecg->fs) : ecg->n;
    s1 = w->to.len ? (int64_t)llround(to * ecg->fs) : ecg->n;
    if (s1 > ecg->n)
        s1 = ecg->n;        /* "to" within half a sample of the end */
    if (s0 >= s1)
        return refuse(422, msg, ms, "\"from\" = %g s: expected a time "
                      "before \"to\" (%g s, the end when not given)", from,
                      to);
    memmove(ecg->mv, ecg->mv + s0, (size_t)(s1 - s0) * sizeof *ecg->mv);
    ecg->n = s1 - s0;
    *first = s0;
    return 0;
}

/* Header, then the chosen lead's signal file, then physical values. */
static unsigned wfdb_record(const ed_ecg_parts *w, int64_t max_samples,
                            ed_ecg *ecg, char *msg, size_t ms)
{
    ep_record *rec = NULL;
    ep_error e = {0};
    int sig = 0, rc;
    unsigned st;

    if (ep_wfdb_parse_header((const char *)w->header.data, w->header.len,
                             "header", &rec, &e))
        return refuse(422, msg, ms, "%s", e.msg);
    if (rec->n_signals < 1) {
        st = refuse(422, msg, ms, "header: the record line declares no "
                    "signals; expected at least one signal line");
        goto out;
    }
    /* The lead asked for; else MLII, the lead detectors are trained on
     * (as the CLI does); else the first signal. */
    if (!w->lead.len) {
        sig = ep_wfdb_find_signal(rec, "MLII");
        if (sig < 0)
            sig = 0;
    } else {
        sig = ep_wfdb_find_signal(rec, (const char *)w->lead.data);
        if (sig < 0) {
            char have[200];

            st = refuse(422, msg, ms, "lead \"%.32s\" is not a signal of "
                        "the header, which has %s",
                        (const char *)w->lead.data,
                        ep_wfdb_signal_names(rec, have, sizeof have));
            goto out;
        }
    }
    ecg->fs = rec->sampling_rate;
    st = check_rate(ecg->fs, "header sampling frequency", msg, ms);
    if (!st && rec->n_samples > max_samples)
        st = refuse(413, msg, ms, "header declares %lld samples, more than "
                    "the limit of %lld (limits.max_samples)",
                    (long long)rec->n_samples, (long long)max_samples);
    if (st)
        goto out;

    rc = ep_wfdb_decode_signals(rec, rec->signals[sig].file, w->signal.data,
                                w->signal.len, &e);
    if (rc) {
        st = refuse(422, msg, ms, "signal (%s): %s", rec->signals[sig].file,
                    e.msg);
        goto out;
    }
    st = check_length(rec->n_samples, ecg->fs, max_samples, "signal", msg,
                      ms);
    if (st)
        goto out;
    ecg->n = rec->n_samples;
    ecg->mv = malloc((size_t)ecg->n * sizeof *ecg->mv);
    if (!ecg->mv) {
        st = refuse(500, msg, ms, "out of memory");
        goto out;
    }
    if (ep_wfdb_signal_mv(rec, sig, ecg->mv, &e)) {
        st = refuse(422, msg, ms, "signal: %s", e.msg);
        goto out;
    }
    snprintf(ecg->lead, sizeof ecg->lead, "%.31s",
             rec->signals[sig].name[0] ? rec->signals[sig].name
                                       : "unspecified");
    /* The lead goes into JSON answers, which take UTF-8 only. */
    ed_utf8_cut(ecg->lead);
    st = check_values(ecg, "signal", "a wrong gain in the header", msg, ms);
out:
    ep_wfdb_free_record(rec);
    return st;
}

/* The parts a route needs, then the record and its annotations. */
/* The text fields must not hide a NUL byte: read as strings, "p-3<NUL>Jane
 * Doe" would be stored as "p-3" with the rest silently dropped. */
static unsigned text_fields(const ed_ecg_parts *w, char *msg, size_t ms)
{
    const ed_ecg_part *parts[] = {&w->subject, &w->lead, &w->from, &w->to};
    static const char *const names[] = {"subject", "lead", "from", "to"};
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (parts[i]->len &&
            strlen((const char *)parts[i]->data) != parts[i]->len)
            return refuse(422, msg, ms, "multipart field \"%s\": a NUL "
                          "byte at %zu of %zu; expected text", names[i],
                          strlen((const char *)parts[i]->data),
                          parts[i]->len);
    return 0;
}

static unsigned wfdb_ecg(const ed_ecg_parts *w, int64_t max_samples,
                         ed_ecg_kind kind, ed_ecg *ecg, char *msg, size_t ms)
{
    int64_t n_record, first = 0;
    unsigned st = text_fields(w, msg, ms);

    if (!st && (!w->header.len || !w->signal.len))
        st = refuse(422, msg, ms, "multipart upload needs a \"header\" "
                    "(.hea) and a \"signal\" (.dat) part");
    if (!st && kind == ED_ECG_BATCH) {
        if (!w->subject.len ||
            !ed_ecg_valid_subject((const char *)w->subject.data))
            st = refuse(422, msg, ms, "\"subject\": a pseudonym of 1..%d "
                        "letters, digits, '.', '-', '_' is required",
                        ED_SUBJECT_MAX);
        else
            strcpy(ecg->subject, (const char *)w->subject.data);
    }
    if (!st && kind == ED_ECG_INFER && w->annotations.len)
        st = refuse(400, msg, ms, "inference takes no annotations part");

    if (!st)
        st = wfdb_record(w, max_samples, ecg, msg, ms);
    n_record = ecg->n;
    if (!st)
        st = wfdb_span(w, ecg, &first, msg, ms);
    if (!st && (w->from.len || w->to.len))
        st = check_length(ecg->n, ecg->fs, max_samples, "the span "
                          "\"from\"..\"to\"", msg, ms);
    if (!st && w->annotations.len)
        st = wfdb_annotations(&w->annotations, first, n_record, ecg, msg,
                              ms);
    return st;
}

unsigned ed_ecg_parse_wfdb(const ed_ecg_parts *parts, int64_t max_samples,
                           ed_ecg_kind kind, ed_ecg *out, char *msg,
                           size_t ms)
{
    unsigned st;

    memset(out, 0, sizeof *out);
    st = wfdb_ecg(parts, max_samples, kind, out, msg, ms);
    if (st)
        ed_ecg_free(out);
    return st;
}

static unsigned empty_part(wfdb_parts *w, char *msg, size_t ms)
{
    int i;

    for (i = 0; i < N_PARTS; i++)
        if (part_at(w, i)->seen && part_at(w, i)->len == 0)
            return refuse(422, msg, ms, "multipart field \"%s\" is empty; "
                          "leave it out or fill it", part_names[i]);
    return 0;
}

/* Split the body into its parts and check which parts came. */
static unsigned collect_parts(ed_request *req, ed_ecg_kind kind,
                              wfdb_parts *w, char *msg, size_t ms)
{
    struct MHD_PostProcessor *pp;
    unsigned st = 0;

    pp = MHD_create_post_processor(req->conn, 65536, on_part, w);
    if (!pp)
        return refuse(400, msg, ms, "multipart body without a boundary in "
                      "Content-Type");
    if (MHD_post_process(pp, (const char *)req->body, req->body_len) !=
        MHD_YES || w->failed)
        st = refuse(400, msg, ms, "malformed multipart body");
    if (MHD_destroy_post_processor(pp) != MHD_YES && !st)
        st = refuse(400, msg, ms, "truncated multipart body");

    /* Which parts came. */
    if (!st && w->nameless)
        st = refuse(400, msg, ms, "a multipart part has no field name "
                    "(expected Content-Disposition: form-data; name=...)");
    if (!st && w->unknown[0] && is_identity_field(w->unknown))
        st = refuse_identity(w->unknown, msg, ms);
    if (!st && w->unknown[0])
        st = refuse(400, msg, ms, "unknown multipart field \"%s\" (expected "
                    "header, signal%s)", w->unknown,
                    kind == ED_ECG_BATCH
                        ? ", annotations, subject, lead, from, to"
                        : ", lead, from, to");
    /* Inference names its subject in the query (?subject=), where it is
     * checked; a part would be silently ignored. */
    if (!st && kind == ED_ECG_INFER && w->subject.len)
        st = refuse(400, msg, ms, "multipart field \"subject\": an "
                    "inference names its subject in the query "
                    "(?subject=...), where the model's subjects are "
                    "checked");
    if (!st && w->twice[0])
        st = refuse(400, msg, ms, "multipart field \"%s\" is given twice "
                    "(by name, or by a file's extension: .hea header, .dat "
                    "signal, .atr annotations)", w->twice);
    /* A part sent empty would read as absent (a "from" as the record's
     * start, an "annotations" file as none): refused instead. */
    if (!st)
        st = empty_part(w, msg, ms);
    return st;
}

static ed_ecg_part part_view(const part *p)
{
    ed_ecg_part v = {p->data, p->len};

    return v;
}

static unsigned parse_wfdb(ed_request *req, int64_t max_samples,
                           ed_ecg_kind kind, ed_ecg *ecg, char *msg,
                           size_t ms)
{
    wfdb_parts w;
    ed_ecg_parts parts;
    unsigned st;

    memset(&w, 0, sizeof w);
    st = collect_parts(req, kind, &w, msg, ms);
    if (!st) {
        parts.header = part_view(&w.header);
        parts.signal = part_view(&w.signal);
        parts.annotations = part_view(&w.annotations);
        parts.subject = part_view(&w.subject);
        parts.lead = part_view(&w.lead);
        parts.from = part_view(&w.from);
        parts.to = part_view(&w.to);
        st = ed_ecg_parse_wfdb(&parts, max_samples, kind, ecg, msg, ms);
    }
    parts_free(&w);
    return st;
}

unsigned ed_ecg_parse_start(ed_request *req, const ed_config *cfg,
                            ed_ecg_kind kind, ed_ecg *out, int *json_pending,
                            char *msg, size_t ms)
{
    const char *ct = ed_http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);

    memset(out, 0, sizeof *out);
    *json_pending = 0;
    if (req->body_len == 0)
        return refuse(400, msg, ms, "empty body: expected JSON or a "
                      "multipart WFDB upload");
    if (ct && ed_http_media_is(ct, "multipart/form-data"))
        return parse_wfdb(req, cfg->max_samples, kind, out, msg, ms);
    if (!ct || ed_http_is_json(ct)) {
        *json_pending = 1;
        return 0;
    }
    return refuse(415, msg, ms, "Content-Type \"%s\": expected "
                  "application/json or multipart/form-data", ct);
}
