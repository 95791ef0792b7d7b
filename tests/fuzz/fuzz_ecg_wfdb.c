/*
 * fuzz_ecg_wfdb.c - libFuzzer target: the parts of a multipart WFDB
 * upload once libmicrohttpd has split them (ed_ecg_parse_wfdb), for
 * POST /v1/batches and POST /v1/models/ID/infer.  The multipart framing
 * itself is libmicrohttpd's and is not fuzzed here.
 *
 * The input is one byte whose lowest bit picks inference (1) or a batch
 * (0), then the header, subject, lead, from and to parts, each ended by a
 * NUL byte, then the signal part; bytes after the first "--annotations--" in it are
 * the annotations part.  Parts that an input ends before are empty, as
 * if they had not been sent.  Parsing must end in an ECG that keeps the
 * promises of fuzz_ecg_checks.h or in a clean refusal.
 */
#define _GNU_SOURCE     /* memmem, whose needle libFuzzer learns */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ed_ecg.h"
#include "fuzz_ecg_checks.h"

#define ANNOTATIONS_MARK "--annotations--"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An exact-size, NUL-terminated copy of len bytes, as the upload keeps
 * each part, so that AddressSanitizer sees reads past it. */
static int take(ed_ecg_part *part, const uint8_t *data, size_t len)
{
    unsigned char *copy = malloc(len + 1);

    if (copy == NULL)
        return -1;
    memcpy(copy, data, len);
    copy[len] = '\0';
    part->data = copy;
    part->len = len;
    return 0;
}

/* The part up to the next NUL, which is skipped. */
static int take_line(ed_ecg_part *part, const uint8_t **data, size_t *size)
{
    const uint8_t *nul = memchr(*data, 0, *size);
    size_t len = nul ? (size_t)(nul - *data) : *size;

    if (take(part, *data, len))
        return -1;
    *data += len + (nul != NULL);
    *size -= len + (nul != NULL);
    return 0;
}

static int split(const uint8_t *data, size_t size, ed_ecg_parts *parts)
{
    const uint8_t *mark;
    size_t mark_len = strlen(ANNOTATIONS_MARK), signal_len;

    if (take_line(&parts->header, &data, &size) ||
        take_line(&parts->subject, &data, &size) ||
        take_line(&parts->lead, &data, &size) ||
        take_line(&parts->from, &data, &size) ||
        take_line(&parts->to, &data, &size))
        return -1;
    mark = memmem(data, size, ANNOTATIONS_MARK, mark_len);
    signal_len = mark ? (size_t)(mark - data) : size;
    if (take(&parts->signal, data, signal_len))
        return -1;
    if (mark == NULL)
        return take(&parts->annotations, data, 0);
    return take(&parts->annotations, mark + mark_len,
                size - signal_len - mark_len);
}

static void parts_free(ed_ecg_parts *parts)
{
    free((void *)parts->header.data);
    free((void *)parts->signal.data);
    free((void *)parts->annotations.data);
    free((void *)parts->subject.data);
    free((void *)parts->lead.data);
    free((void *)parts->from.data);
    free((void *)parts->to.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ed_ecg_parts parts;
    ed_ecg_kind kind;
    ed_ecg ecg;
    char msg[700] = "";
    unsigned st;

    if (size < 1)
        return 0;
    kind = data[0] & 1 ? ED_ECG_INFER : ED_ECG_BATCH;
    memset(&parts, 0, sizeof parts);
    if (split(data + 1, size - 1, &parts) == 0) {
        st = ed_ecg_parse_wfdb(&parts, FUZZ_MAX_SAMPLES, kind, &ecg, msg,
                               sizeof msg);
        if (st != 0) {
            fuzz_check_refused(st, msg, &ecg);
        } else {
            fuzz_check_accepted(&ecg, kind);
            ed_ecg_free(&ecg);
        }
    }
    parts_free(&parts);
    return 0;
}
