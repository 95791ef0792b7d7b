/*
 * make_test_model.c - writes a tiny randomly initialised wavelet U-Net
 * (2 levels, 4 and 8 channels, 512-sample windows at 360 Hz) to the path
 * given, its background logit's bias set to BG_BIAS, so that the CLI tests
 * can run `ecgprune infer` and `eval` before any trained model exists.
 * Its beats are arbitrary; the tests check the output's structure and its
 * consistency, not its accuracy.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ecgprune/ep_model.h"
#include "ecgprune/ep_net.h"

int main(int argc, char **argv)
{
    ep_unet_config cfg;
    ep_net *net;
    ep_error err = {0};

    if (argc != 3) {
        fprintf(stderr, "usage: make_test_model OUT.safetensors BG_BIAS\n");
        return 2;
    }
    ep_unet_default_config(&cfg);
    cfg.depth = 2;
    cfg.widths[0] = 4;
    cfg.widths[1] = 8;
    cfg.kernel = 5;
    cfg.convs_per_level = 1;
    cfg.wavelet = EP_WAVELET_HAAR;
    cfg.meta.window = 512;
    if (ep_unet_build(&cfg, 7, &net, &err) != 0) {
        fprintf(stderr, "make_test_model: %s\n", err.msg);
        return 1;
    }
    net->layers[net->output].bias[0] = (float)atof(argv[2]);
    if (ep_model_save(net, argv[1], &err) != 0) {
        fprintf(stderr, "make_test_model: %s\n", err.msg);
        ep_net_free(net);
        return 1;
    }
    ep_net_free(net);
    return 0;
}
