/*
 * fuzz_wfdb_signals.c - libFuzzer target: a header and a signal file from
 * one input.  The input is split at its first NUL byte: the bytes before
 * are the header, the bytes after the contents of every signal file it
 * names.  Decoding must succeed, fail cleanly, or report a checksum
 * mismatch, and never read outside the buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_wfdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t hlen = nul ? (size_t)(nul - data) : size;
    size_t dlen = nul ? size - hlen - 1 : 0;
    unsigned char *dat = malloc(dlen ? dlen : 1);
    ep_record *rec = NULL;
    ep_error err = {0};

    if (dat == NULL)
        return 0;
    memcpy(dat, data + size - dlen, dlen);
    if (ep_wfdb_parse_header((const char *)data, hlen, "fuzz.hea", &rec,
                             &err) == 0) {
        for (int s = 0; s < rec->n_signals; s++) {
            int rc;

            if (s > 0 && strcmp(rec->signals[s].file,
                                rec->signals[s - 1].file) == 0)
                continue;
            rc = ep_wfdb_decode_signals(rec, rec->signals[s].file, dat, dlen,
                                        &err);
            if (rc != 0 && err.msg[0] == '\0')
                abort();
        }
        ep_wfdb_free_record(rec);
    }
    free(dat);
    return 0;
}
