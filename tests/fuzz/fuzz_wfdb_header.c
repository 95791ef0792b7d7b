/*
 * fuzz_wfdb_header.c - libFuzzer target: any bytes as a WFDB header.
 * Parsing must end in success or a clean error, never a crash, leak or
 * out-of-bounds read (the input is copied to an exact-size buffer so that
 * AddressSanitizer sees any read past its end).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_wfdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    ep_record *rec = NULL;
    ep_error err = {0};

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    if (ep_wfdb_parse_header(text, size, "fuzz.hea", &rec, &err) == 0) {
        /* A parsed header must be self-consistent. */
        if (rec->n_signals < 0 || rec->n_signals > EP_WFDB_MAX_SIGNALS ||
            (rec->n_signals > 0 && rec->signals == NULL))
            abort();
        ep_wfdb_free_record(rec);
    } else if (rec != NULL || err.msg[0] == '\0') {
        abort();
    }
    free(text);
    return 0;
}
