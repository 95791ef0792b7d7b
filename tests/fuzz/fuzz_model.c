/*
 * fuzz_model.c - libFuzzer target: any bytes as a model file.  Loading
 * must end in a network or a clean error, never a crash, leak or
 * out-of-bounds read; a network that loads must save again and load back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1);
    unsigned char *saved = NULL;
    size_t saved_len = 0;
    ep_net *net = NULL, *again = NULL;
    ep_error err = {0};

    if (copy == NULL)
        return 0;

    /* An exact-size copy so that AddressSanitizer sees reads past it. */
    memcpy(copy, data, size);
    if (ep_model_load_buffer(copy, size, &net, &err) != 0) {
        if (net != NULL || err.msg[0] == '\0')
            abort();
        free(copy);
        return 0;
    }
    if (ep_model_save_buffer(net, &saved, &saved_len, &err) != 0 ||
        ep_model_load_buffer(saved, saved_len, &again, &err) != 0)
        abort();
    free(saved);
    ep_net_free(again);
    ep_net_free(net);
    free(copy);
    return 0;
}
