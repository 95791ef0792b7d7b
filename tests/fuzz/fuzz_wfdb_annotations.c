/*
 * fuzz_wfdb_annotations.c - libFuzzer target: any bytes as an MIT-format
 * annotation file.  Every annotation that parses must have a code in
 * 1..49 and a non-negative time; errors must carry a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_wfdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ep_annotations *ann = NULL;
    ep_error err = {0};

    if (ep_wfdb_parse_annotations(data, size, "fuzz.atr", &ann, &err) != 0) {
        if (ann != NULL || err.msg[0] == '\0')
            abort();
        return 0;
    }
    for (size_t i = 0; i < ann->count; i++) {
        const ep_annotation *a = &ann->items[i];

        if (a->code < 1 || a->code > 49 || a->sample < 0)
            abort();
        if (a->aux != NULL && strlen(a->aux) > 255)
            abort();
        (void)ep_wfdb_code_symbol(a->code);
    }
    ep_wfdb_free_annotations(ann);
    return 0;
}
