/*
 * ed_ecg.h - ECG as clients send it, checked and turned into one lead in
 * mV: JSON ({"sampling_rate", "samples", optional "gain"/"baseline" for
 * ADC units, "lead", "subject", "annotations"}) or a multipart upload of
 * WFDB files (parts "header", "signal", optional "annotations", and
 * optional form fields "subject", "lead", and "from" and "to", seconds
 * into the record that bound the span kept).
 *
 * Every refusal comes with an HTTP status (400 malformed, 415 wrong media
 * type, 422 well-formed but unacceptable) and a message naming the field
 * or file and position at fault.
 */
#ifndef ED_ECG_H
#define ED_ECG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ecgprune/ep_infer.h"
#include "ed_config.h"
#include "ed_http.h"

/* Lowest and highest sampling rates accepted (Hz): those inference takes,
 * so that a stored batch can always be used. */
#define ED_ECG_MIN_FS EP_INFER_RATE_MIN
#define ED_ECG_MAX_FS EP_INFER_RATE_MAX
/* Largest physical value accepted (mV); ECG is a few mV. */
#define ED_ECG_MAX_MV 100.0
#define ED_SUBJECT_MAX 64

typedef struct ed_annot {
    int64_t sample;
    int code;                       /* MIT annotation code */
} ed_annot;

typedef struct ed_ecg {
    float *mv;
    int64_t n;
    double fs;
    char lead[32];
    char subject[ED_SUBJECT_MAX + 1];
    ed_annot *ann;                  /* beat annotations, sorted */
    size_t n_ann;
} ed_ecg;

/* What kind of input a route takes: batches need a subject and may carry
 * annotations; inference takes neither. */
typedef enum ed_ecg_kind { ED_ECG_BATCH, ED_ECG_INFER } ed_ecg_kind;

/* Start on the request body (JSON or multipart WFDB, by Content-Type), on
 * the loop thread.  A multipart upload is split and decoded here, since
 * libmicrohttpd's post processor belongs to the loop (its binary samples
 * decode in milliseconds).  A JSON body, whose parse is the costly part,
 * is only recognised: *json_pending is set and the caller passes req->body
 * to ed_ecg_parse_json on a pool thread while the request is suspended.
 * Returns 0 or an HTTP status with msg filled. */
unsigned ed_ecg_parse_start(ed_request *req, const ed_config *cfg,
                            ed_ecg_kind kind, ed_ecg *out, int *json_pending,
                            char *msg, size_t msg_size);

/* The two bodies ed_ecg_parse_start tells apart, taken from memory so that
 * they can be checked (and fuzzed) without a connection.  max_samples is
 * limits.max_samples.  Both return 0 or an HTTP status with msg filled,
 * and leave out empty on a refusal. */

/* A JSON body: body_len bytes, no terminating NUL needed. */
unsigned ed_ecg_parse_json(const unsigned char *body, size_t body_len,
                           int64_t max_samples, ed_ecg_kind kind,
                           ed_ecg *out, char *msg, size_t msg_size);

/* One part of a multipart upload; len 0 (data may be NULL) when it did
 * not come.  data[len] must be a NUL: the subject and the lead are read
 * as strings. */
typedef struct ed_ecg_part {
    const unsigned char *data;
    size_t len;
} ed_ecg_part;

typedef struct ed_ecg_parts {
    ed_ecg_part header, signal, annotations, subject, lead;
    ed_ecg_part from, to;           /* optional span, seconds */
} ed_ecg_parts;

/* The parts of a multipart WFDB upload, once split and named: the record
 * in the header, the chosen lead from the signal file, the annotations;
 * a batch needs the subject, inference refuses annotations. */
unsigned ed_ecg_parse_wfdb(const ed_ecg_parts *parts, int64_t max_samples,
                           ed_ecg_kind kind, ed_ecg *out, char *msg,
                           size_t msg_size);

void ed_ecg_free(ed_ecg *ecg);

/* 1 when s is a pseudonym as batches take them: 1..ED_SUBJECT_MAX
 * letters, digits, '.', '-', '_' (no blank, so no "Jane Doe"). */
int ed_ecg_valid_subject(const char *s);

/* Annotations as stored: [{"sample": N, "symbol": "V"}, ...]. */
json_t *ed_ecg_annotations_json(const ed_ecg *ecg);

#endif
