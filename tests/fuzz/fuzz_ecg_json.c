/*
 * fuzz_ecg_json.c - libFuzzer target: any bytes as the JSON ECG body of
 * POST /v1/batches and of POST /v1/models/ID/infer (ed_ecg_parse_json,
 * both kinds for every input).  Parsing must end in an ECG that keeps the
 * promises of fuzz_ecg_checks.h or in a clean refusal, never a crash, a
 * leak or an out-of-bounds read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ed_ecg.h"
#include "fuzz_ecg_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_as(const unsigned char *body, size_t size,
                     ed_ecg_kind kind)
{
    ed_ecg ecg;
    char msg[700] = "";
    unsigned st;

    st = ed_ecg_parse_json(body, size, FUZZ_MAX_SAMPLES, kind, &ecg, msg,
                           sizeof msg);
    if (st != 0) {
        fuzz_check_refused(st, msg, &ecg);
        return;
    }
    fuzz_check_accepted(&ecg, kind);
    ed_ecg_free(&ecg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1);

    if (copy == NULL)
        return 0;
    /* An exact-size copy so that AddressSanitizer sees reads past it. */
    memcpy(copy, data, size);
    parse_as(copy, size, ED_ECG_BATCH);
    parse_as(copy, size, ED_ECG_INFER);
    free(copy);
    return 0;
}
