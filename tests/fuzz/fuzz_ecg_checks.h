/*
 * fuzz_ecg_checks.h - what the ECG body targets (fuzz_ecg_json.c,
 * fuzz_ecg_wfdb.c) demand of the daemon's parsers: a refusal is a 4xx
 * status with a UTF-8 message (it becomes the detail of a JSON problem
 * document) and an empty ECG; an accepted ECG keeps every promise the
 * routes rely on, its lead and subject going into JSON answers too.  A
 * broken promise aborts, which libFuzzer reports.
 */
#ifndef FUZZ_ECG_CHECKS_H
#define FUZZ_ECG_CHECKS_H

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ed_ecg.h"

/* Small enough that inputs of a few kilobytes reach the 413 refusal. */
#define FUZZ_MAX_SAMPLES 1000

/* What ed_http_problem will do with the message. */
static void fuzz_check_message(const char *msg)
{
    json_t *s = json_string(msg);

    if (msg[0] == '\0' || s == NULL)
        abort();
    json_decref(s);
}

static void fuzz_check_refused(unsigned status, const char *msg,
                               const ed_ecg *ecg)
{
    if (status != 400 && status != 413 && status != 422)
        abort();
    fuzz_check_message(msg);
    if (ecg->mv != NULL || ecg->ann != NULL || ecg->n != 0 ||
        ecg->n_ann != 0)
        abort();
}

/* A string of 1..max bytes, NUL-terminated inside its field, that can
 * go into a JSON answer. */
static void fuzz_check_name(const char *s, size_t field, size_t max)
{
    size_t n = strnlen(s, field);
    json_t *j;

    if (n == 0 || n > max || n == field)
        abort();
    j = json_string(s);
    if (j == NULL)
        abort();
    json_decref(j);
}

static void fuzz_check_annotations(const ed_ecg *ecg, ed_ecg_kind kind)
{
    json_t *arr;
    char *text;
    size_t i;

    if (kind == ED_ECG_INFER && ecg->n_ann != 0)
        abort();
    if (ecg->n_ann > 0 && ecg->ann == NULL)
        abort();
    for (i = 0; i < ecg->n_ann; i++) {
        if (ecg->ann[i].sample < 0 || ecg->ann[i].sample >= ecg->n)
            abort();
        if (i > 0 && ecg->ann[i].sample < ecg->ann[i - 1].sample)
            abort();
    }
    /* As POST /v1/batches stores them. */
    arr = ed_ecg_annotations_json(ecg);
    if (json_array_size(arr) != ecg->n_ann)
        abort();
    text = json_dumps(arr, JSON_COMPACT);
    if (text == NULL)
        abort();
    free(text);
    json_decref(arr);
}

static void fuzz_check_accepted(const ed_ecg *ecg, ed_ecg_kind kind)
{
    int64_t i;

    if (!(ecg->fs >= ED_ECG_MIN_FS && ecg->fs <= ED_ECG_MAX_FS))
        abort();
    if (ecg->mv == NULL || (double)ecg->n < 2.0 * ecg->fs ||
        ecg->n > FUZZ_MAX_SAMPLES)
        abort();
    for (i = 0; i < ecg->n; i++)
        if (!isfinite(ecg->mv[i]) || fabsf(ecg->mv[i]) > ED_ECG_MAX_MV)
            abort();
    fuzz_check_name(ecg->lead, sizeof ecg->lead, sizeof ecg->lead - 1);
    if (kind == ED_ECG_BATCH)
        fuzz_check_name(ecg->subject, sizeof ecg->subject, ED_SUBJECT_MAX);
    else if (ecg->subject[0] != '\0')
        abort();
    fuzz_check_annotations(ecg, kind);
}

#endif
