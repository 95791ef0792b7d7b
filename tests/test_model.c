/*
 * test_model.c - model files: save/load round trips give identical bytes
 * and weights; damaged files (lying offsets, wrong dtype or shape,
 * truncation, bad JSON, NaN weights, missing tensors, bad architecture)
 * are rejected with a message naming the tensor or field.  Damaged files
 * are made here by editing the header with jansson and re-framing it.
 * Saving replaces only new names and regular files: a FIFO, a directory
 * or a dangling link is refused and left alone, a symbolic link stays a
 * link to the new model (in a scratch directory under /tmp).
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "ecgprune/ep_model.h"
#include "ecgprune/ep_rng.h"

static ep_net *test_net(void)
{
    ep_unet_config cfg;
    ep_net *net;
    ep_error err;
    ep_rng rng;
    int i, c;

    ep_unet_default_config(&cfg);
    cfg.depth = 3;
    cfg.widths[0] = 4;
    cfg.widths[1] = 6;
    cfg.widths[2] = 8;
    cfg.wavelet = EP_WAVELET_DB4;
    REQUIRE(ep_unet_build(&cfg, 3, &net, &err) == EP_OK);
    ep_rng_seed(&rng, 4);
    for (i = 0; i < net->n_layers; i++)
        for (c = 0; c < net->layers[i].channels; c++)
            if (net->layers[i].op == EP_OP_BN) {
                net->layers[i].mean[c] = (float)ep_rng_normal(&rng);
                net->layers[i].var[c] = (float)(1 + ep_rng_uniform(&rng));
            }
    return net;
}

static uint64_t header_len(const unsigned char *buf)
{
    uint64_t n = 0;
    int k;

    for (k = 7; k >= 0; k--)
        n = n << 8 | buf[k];
    return n;
}

/* A new file from a header object and the data section of buf. */
static unsigned char *reframe(json_t *header, const unsigned char *buf,
                              size_t len, size_t *out_len)
{
    uint64_t hlen = header_len(buf);
    size_t data_len = len - 8 - (size_t)hlen;
    char *text = json_dumps(header, JSON_COMPACT);
    size_t tlen = strlen(text);
    unsigned char *out = malloc(8 + tlen + data_len);
    int k;

    REQUIRE(out != NULL);
    for (k = 0; k < 8; k++)
        out[k] = (unsigned char)((uint64_t)tlen >> (8 * k));
    memcpy(out + 8, text, tlen);
    memcpy(out + 8 + tlen, buf + 8 + hlen, data_len);
    free(text);
    *out_len = 8 + tlen + data_len;
    return out;
}

static json_t *parse_header(const unsigned char *buf)
{
    json_t *h = json_loadb((const char *)buf + 8, (size_t)header_len(buf), 0,
                           NULL);

    REQUIRE(h != NULL);
    return h;
}

/* Load bytes that must fail; the message must contain `needle`. */
static void expect_fail(const unsigned char *buf, size_t len,
                        const char *needle, const char *what)
{
    ep_net *net = NULL;
    ep_error err = {0};
    int rc = ep_model_load_buffer(buf, len, &net, &err);

    CHECK_MSG(rc == EP_EFORMAT, "%s: rc %d", what, rc);
    CHECK(net == NULL);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'",
              what, err.msg, needle);
    ep_net_free(net);
}

static void test_round_trip(void)
{
    ep_net *net = test_net(), *back;
    unsigned char *a, *b, *c;
    size_t la, lb, lc;
    ep_error err;
    const char *path = "test_model_round_trip.safetensors";
    FILE *f;
    int i;

    REQUIRE(ep_model_save_buffer(net, &a, &la, &err) == EP_OK);
    CHECK(la % 4 == 0);
    CHECK(header_len(a) % 8 == 0);
    REQUIRE(ep_model_load_buffer(a, la, &back, &err) == EP_OK);
    CHECK_EQ_INT(back->n_layers, net->n_layers);
    CHECK_EQ_INT(back->output, net->output);
    CHECK_EQ_INT(ep_net_parameters(back), ep_net_parameters(net));
    CHECK_NEAR(back->meta.sampling_rate, 360.0, 0);
    CHECK_EQ_INT(back->meta.window, 2048);
    CHECK(strcmp(back->meta.classes[5], "Q") == 0);
    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *x = &net->layers[i], *y = &back->layers[i];

        CHECK(strcmp(x->name, y->name) == 0);
        CHECK(x->op == y->op && x->channels == y->channels);
        if (x->op == EP_OP_CONV)
            CHECK(memcmp(x->weight, y->weight,
                         (size_t)x->channels * x->in_channels * x->kernel *
                             sizeof(float)) == 0);
        if (x->op == EP_OP_BN)
            CHECK(memcmp(x->var, y->var, (size_t)x->channels * 4) == 0);
    }
    REQUIRE(ep_model_save_buffer(back, &b, &lb, &err) == EP_OK);
    CHECK(la == lb && memcmp(a, b, la) == 0);

    /* Through a file: same bytes, no temporary left behind. */
    REQUIRE(ep_model_save(back, path, &err) == EP_OK);
    f = fopen(path, "rb");
    REQUIRE(f != NULL);
    c = malloc(la + 1);
    lc = fread(c, 1, la + 1, f);
    fclose(f);
    CHECK(lc == la && memcmp(a, c, la) == 0);
    ep_net_free(back);
    REQUIRE(ep_model_load(path, &back, &err) == EP_OK);
    CHECK_EQ_INT(back->n_layers, net->n_layers);
    ep_net_free(back);
    unlink(path);
    CHECK(ep_model_load(path, &back, &err) == EP_EIO);
    CHECK(strstr(err.msg, path) != NULL);
    free(a);
    free(b);
    free(c);
    ep_net_free(net);
}

/* Set entry[field] of tensor `name` in a copy of the file. */
static unsigned char *edit_tensor(const unsigned char *buf, size_t len,
                                  const char *name, const char *field,
                                  json_t *value, size_t *out_len)
{
    json_t *h = parse_header(buf);
    unsigned char *out;

    REQUIRE(json_object_get(h, name) != NULL);
    json_object_set_new(json_object_get(h, name), field, value);
    out = reframe(h, buf, len, out_len);
    json_decref(h);
    return out;
}

static void test_tensor_errors(void)
{
    ep_net *net = test_net();
    unsigned char *buf, *bad;
    size_t len, bad_len, data_len;
    ep_error err;
    json_t *h, *off;
    long long b0, e0;

    REQUIRE(ep_model_save_buffer(net, &buf, &len, &err) == EP_OK);
    data_len = len - 8 - (size_t)header_len(buf);

    bad = edit_tensor(buf, len, "enc1.conv0.weight", "dtype",
                      json_string("F16"), &bad_len);
    expect_fail(bad, bad_len, "enc1.conv0.weight", "wrong dtype");
    free(bad);

    bad = edit_tensor(buf, len, "up0.weight", "shape",
                      json_pack("[iii]", 8, 6, 3), &bad_len);
    expect_fail(bad, bad_len, "up0.weight", "wrong shape");
    free(bad);

    /* Offsets beyond the data, and offsets moved onto another tensor. */
    bad = edit_tensor(buf, len, "head.bias", "data_offsets",
                      json_pack("[II]", (json_int_t)data_len - 8,
                                (json_int_t)data_len + 16), &bad_len);
    expect_fail(bad, bad_len, "head.bias", "offsets past the end");
    free(bad);
    h = parse_header(buf);
    off = json_object_get(json_object_get(h, "dec0.bn0.bias"),
                          "data_offsets");
    b0 = json_integer_value(json_array_get(off, 0));
    e0 = json_integer_value(json_array_get(off, 1));
    json_decref(h);
    bad = edit_tensor(buf, len, "dec0.bn0.weight", "data_offsets",
                      json_pack("[II]", (json_int_t)b0, (json_int_t)e0),
                      &bad_len);
    expect_fail(bad, bad_len, "dec0.bn0", "overlapping offsets");
    free(bad);
    bad = edit_tensor(buf, len, "enc0.bn0.running_var", "data_offsets",
                      json_pack("[II]", (json_int_t)b0,
                                (json_int_t)(e0 + 4)), &bad_len);
    expect_fail(bad, bad_len, "enc0.bn0.running_var", "size mismatch");
    free(bad);

    /* A tensor missing from the header. */
    h = parse_header(buf);
    json_object_del(h, "enc2.bn1.running_mean");
    bad = reframe(h, buf, len, &bad_len);
    json_decref(h);
    expect_fail(bad, bad_len, "enc2.bn1.running_mean", "missing tensor");
    free(bad);

    /* An extra unknown tensor. */
    h = parse_header(buf);
    json_object_set(h, "ghost.weight", json_object_get(h, "head.bias"));
    bad = reframe(h, buf, len, &bad_len);
    json_decref(h);
    expect_fail(bad, bad_len, "ghost.weight", "unknown tensor");
    free(bad);
    free(buf);
    ep_net_free(net);
}

/* NaN in a named tensor's data, found through its offsets. */
static void test_nan_and_truncation(void)
{
    ep_net *net = test_net(), *back;
    unsigned char *buf;
    size_t len, cut, data_start;
    ep_error err;
    json_t *h;
    long long begin;
    const float nan_value = NAN;

    REQUIRE(ep_model_save_buffer(net, &buf, &len, &err) == EP_OK);
    data_start = 8 + (size_t)header_len(buf);
    h = parse_header(buf);
    begin = json_integer_value(json_array_get(
        json_object_get(json_object_get(h, "dec1.conv1.weight"),
                        "data_offsets"), 0));
    json_decref(h);
    memcpy(buf + data_start + begin + 12, &nan_value, 4);
    expect_fail(buf, len, "dec1.conv1.weight", "NaN weight");
    memset(buf + data_start + begin + 12, 0, 4);
    REQUIRE(ep_model_load_buffer(buf, len, &back, &err) == EP_OK);
    ep_net_free(back);

    /* Every truncation fails cleanly. */
    for (cut = 0; cut < len; cut += cut < 64 ? 1 : 97) {
        ep_net *out = NULL;
        ep_error e = {0};

        CHECK_MSG(ep_model_load_buffer(buf, cut, &out, &e) == EP_EFORMAT,
                  "truncated at %zu accepted", cut);
        CHECK(out == NULL && e.msg[0] != '\0');
    }
    /* One float short: the layers' parameters no longer fit the data
     * section, which the architecture check names before any tensor. */
    expect_fail(buf, len - 4, "the file's data section holds only",
                "last float cut");
    expect_fail(buf, 5, "truncated", "short file");
    expect_fail(buf, data_start - 1, "header length", "header cut");
    free(buf);

    /* Saving refuses what loading would: an infinity in a weight. */
    {
        unsigned char *again = NULL;
        size_t again_len = 7;
        int last = net->n_layers - 1;

        while (net->layers[last].op != EP_OP_CONV)
            last--;
        net->layers[last].weight[1] = INFINITY;
        CHECK_EQ_INT(ep_model_save_buffer(net, &again, &again_len, &err),
                     EP_ERANGE);
        CHECK_MSG(strstr(err.msg, ".weight' element 1 is not finite") !=
                  NULL, "%s", err.msg);
        CHECK(again == NULL && again_len == 0);
    }
    ep_net_free(net);
}

static void test_json_errors(void)
{
    ep_net *net = test_net();
    unsigned char *buf, *bad;
    size_t len, bad_len;
    ep_error err;
    json_t *h, *arch, *layers;
    char *text;

    REQUIRE(ep_model_save_buffer(net, &buf, &len, &err) == EP_OK);
    bad = malloc(len);
    memcpy(bad, buf, len);
    bad[8 + 15] = ',';   /* the colon after "__metadata__" */
    expect_fail(bad, len, "invalid JSON", "bad header JSON");
    free(bad);

    /* Architecture edits: unknown op, forward input, wrong channels,
     * format tag. */
    h = parse_header(buf);
    arch = json_loads(json_string_value(json_object_get(
                          json_object_get(h, "__metadata__"),
                          "architecture")), 0, NULL);
    REQUIRE(arch != NULL);
    layers = json_object_get(arch, "layers");
    json_object_set_new(json_array_get(layers, 3), "op",
                        json_string("pool"));
    text = json_dumps(arch, JSON_COMPACT);
    json_object_set_new(json_object_get(h, "__metadata__"), "architecture",
                        json_string(text));
    free(text);
    bad = reframe(h, buf, len, &bad_len);
    expect_fail(bad, bad_len, "unknown op 'pool'", "unknown op");
    free(bad);

    json_object_set_new(json_array_get(layers, 3), "op", json_string("relu"));
    json_object_set_new(json_array_get(layers, 3), "inputs",
                        json_pack("[i]", 7));
    text = json_dumps(arch, JSON_COMPACT);
    json_object_set_new(json_object_get(h, "__metadata__"), "architecture",
                        json_string(text));
    free(text);
    bad = reframe(h, buf, len, &bad_len);
    expect_fail(bad, bad_len, "earlier layer", "forward input");
    free(bad);

    json_object_set_new(json_array_get(layers, 3), "inputs",
                        json_pack("[i]", 2));
    json_object_set_new(json_array_get(layers, 1), "channels",
                        json_integer(100000));
    text = json_dumps(arch, JSON_COMPACT);
    json_object_set_new(json_object_get(h, "__metadata__"), "architecture",
                        json_string(text));
    free(text);
    bad = reframe(h, buf, len, &bad_len);
    expect_fail(bad, bad_len, "'channels'", "absurd channels");
    free(bad);

    json_object_set_new(json_object_get(h, "__metadata__"), "format",
                        json_string("other"));
    bad = reframe(h, buf, len, &bad_len);
    expect_fail(bad, bad_len, "format", "format tag");
    free(bad);
    json_decref(arch);
    json_decref(h);
    free(buf);
    ep_net_free(net);
}

/* A model file of an architecture and a data section of data_len zero
 * bytes. */
static unsigned char *file_of_arch(const char *arch, size_t data_len,
                                   size_t *out_len)
{
    json_t *h = json_pack("{s:{s:s,s:s}}", "__metadata__", "format",
                          "ecgprune-1", "architecture", arch);
    char *text = json_dumps(h, JSON_COMPACT);
    size_t tlen = strlen(text);
    unsigned char *out = calloc(1, 8 + tlen + data_len);
    int k;

    REQUIRE(out != NULL);
    for (k = 0; k < 8; k++)
        out[k] = (unsigned char)((uint64_t)tlen >> (8 * k));
    memcpy(out + 8, text, tlen);
    free(text);
    json_decref(h);
    *out_len = 8 + tlen + data_len;
    return out;
}

/* A few hundred bytes declaring a conv of 8192 x 8192 x 1024 weights must
 * be refused before its 256 GiB are allocated; the budget is the data
 * section, so a BN after a conv that uses it all is refused too. */
static void test_memory_bomb(void)
{
    const char *bomb =
        "{\"layers\":[{\"name\":\"input\",\"op\":\"input\","
        "\"channels\":8192},{\"name\":\"c\",\"op\":\"conv\","
        "\"inputs\":[0],\"channels\":8192,\"kernel\":1024,\"stride\":1,"
        "\"dilation\":1,\"padding\":\"same\"}],\"output\":1,"
        "\"sampling_rate\":360,\"window\":64,\"classes\":[\"a\"],"
        "\"highpass_hz\":0.5,\"input_scale\":1}";
    const char *conv_bn =
        "{\"layers\":[{\"name\":\"input\",\"op\":\"input\","
        "\"channels\":1},{\"name\":\"c\",\"op\":\"conv\","
        "\"inputs\":[0],\"channels\":2,\"kernel\":3,\"stride\":1,"
        "\"dilation\":1,\"padding\":\"same\"},{\"name\":\"b\","
        "\"op\":\"bn\",\"inputs\":[1],\"channels\":2,\"eps\":1e-5}],"
        "\"output\":2,\"sampling_rate\":360,\"window\":64,"
        "\"classes\":[\"a\",\"b\"],\"highpass_hz\":0.5,"
        "\"input_scale\":1}";
    unsigned char *buf;
    size_t len;

    /* 8192 * 8192 * 1024 weights + 8192 biases. */
    buf = file_of_arch(bomb, 0, &len);
    CHECK(len < 1024);
    expect_fail(buf, len, "layer 1 ('c'): needs 68719484928 parameters",
                "conv bomb");
    free(buf);

    /* The conv's 1*2*3 + 2 = 8 floats fit 32 bytes; the BN's 4*2 more do
     * not, and are refused by name before the tensor table is read. */
    buf = file_of_arch(conv_bn, 32, &len);
    expect_fail(buf, len, "layer 2 ('b'): needs 8 parameters, but the "
                "file's data section holds only 0 more", "bn budget");
    free(buf);
}

/* A field error in a layer names the layer once, not twice. */
static void test_error_prefix_once(void)
{
    const char *arch =
        "{\"layers\":[{\"name\":\"input\",\"op\":\"input\","
        "\"channels\":1},{\"name\":\"c\",\"op\":\"conv\","
        "\"inputs\":[0],\"channels\":1099511627776,\"kernel\":3,"
        "\"stride\":1,\"dilation\":1,\"padding\":\"same\"}],"
        "\"output\":1,\"sampling_rate\":360,\"window\":64,"
        "\"classes\":[\"a\"],\"highpass_hz\":0.5,\"input_scale\":1}";
    unsigned char *buf;
    size_t len;
    ep_net *net = NULL;
    ep_error err = {0};
    const char *first;

    buf = file_of_arch(arch, 0, &len);
    CHECK_EQ_INT(ep_model_load_buffer(buf, len, &net, &err), EP_EFORMAT);
    first = strstr(err.msg, "layer 1 ('c')");
    CHECK_MSG(first != NULL && strstr(first + 1, "layer 1 ('c')") == NULL,
              "%s", err.msg);
    CHECK(strstr(err.msg, "field 'channels' = 1099511627776") != NULL);
    free(buf);
}

/* Names that reach tables must be printable, class names unique. */
static void test_names(void)
{
    const char *dup =
        "{\"layers\":[{\"name\":\"input\",\"op\":\"input\","
        "\"channels\":2}],\"output\":0,\"sampling_rate\":360,"
        "\"window\":64,\"classes\":[\"bg\",\"bg\"],\"highpass_hz\":0,"
        "\"input_scale\":1}";
    const char *escape_class =
        "{\"layers\":[{\"name\":\"input\",\"op\":\"input\","
        "\"channels\":2}],\"output\":0,\"sampling_rate\":360,"
        "\"window\":64,\"classes\":[\"bg\",\"\\u001b[2J\"],"
        "\"highpass_hz\":0,\"input_scale\":1}";
    const char *blank_layer =
        "{\"layers\":[{\"name\":\"in put\",\"op\":\"input\","
        "\"channels\":2}],\"output\":0,\"sampling_rate\":360,"
        "\"window\":64,\"classes\":[\"bg\",\"N\"],\"highpass_hz\":0,"
        "\"input_scale\":1}";
    unsigned char *buf;
    size_t len;
    ep_net *net = NULL;
    ep_error err = {0};

    buf = file_of_arch(dup, 0, &len);
    expect_fail(buf, len, "class 'bg' is listed twice (classes 0 and 1)",
                "duplicate class");
    free(buf);
    buf = file_of_arch(escape_class, 0, &len);
    expect_fail(buf, len, "class 1 must be a name of 1..7 printable",
                "escape in a class");
    free(buf);
    buf = file_of_arch(blank_layer, 0, &len);
    expect_fail(buf, len, "layer 0: 'name' must be printable ASCII",
                "blank in a layer name");
    free(buf);

    /* The same network with plain names loads. */
    buf = file_of_arch("{\"layers\":[{\"name\":\"input\",\"op\":"
                       "\"input\",\"channels\":2}],\"output\":0,"
                       "\"sampling_rate\":360,\"window\":64,\"classes\":"
                       "[\"bg\",\"N\"],\"highpass_hz\":0,"
                       "\"input_scale\":1}", 0, &len);
    CHECK_EQ_INT(ep_model_load_buffer(buf, len, &net, &err), EP_OK);
    CHECK(net != NULL && strcmp(net->meta.classes[1], "N") == 0);
    ep_net_free(net);
    free(buf);
}

/* PyTorch state dicts carry an int64 num_batches_tracked per BN. */
static void test_pytorch_counter(void)
{
    ep_net *net = test_net(), *back;
    unsigned char *buf, *ext;
    size_t len, data_len, k;
    ep_error err;
    json_t *h;
    char *text;
    size_t tlen;

    REQUIRE(ep_model_save_buffer(net, &buf, &len, &err) == EP_OK);
    data_len = len - 8 - (size_t)header_len(buf);
    h = parse_header(buf);
    json_object_set_new(h, "enc0.bn0.num_batches_tracked",
                        json_pack("{s:s,s:[],s:[II]}", "dtype", "I64",
                                  "shape", "data_offsets",
                                  (json_int_t)data_len,
                                  (json_int_t)data_len + 8));
    text = json_dumps(h, JSON_COMPACT);
    tlen = strlen(text);
    ext = calloc(1, 8 + tlen + data_len + 8);
    REQUIRE(ext != NULL);
    for (k = 0; k < 8; k++)
        ext[k] = (unsigned char)((uint64_t)tlen >> (8 * k));
    memcpy(ext + 8, text, tlen);
    memcpy(ext + 8 + tlen, buf + 8 + header_len(buf), data_len);
    CHECK(ep_model_load_buffer(ext, 8 + tlen + data_len + 8, &back, &err) ==
          EP_OK);
    ep_net_free(back);
    free(text);
    free(ext);
    json_decref(h);
    free(buf);
    ep_net_free(net);
}

/* dir/name into buf (the scratch paths of test_save_targets). */
static const char *scratch(char *buf, size_t cap, const char *dir,
                           const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* Whether path is (without following links) of the given file type. */
static int is_type(const char *path, mode_t type)
{
    struct stat st;

    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == type;
}

/* Targets a save must refuse, leaving them as they were. */
static void expect_refused(const ep_net *net, const char *path,
                           mode_t type, const char *needle)
{
    ep_error err = {0};

    CHECK_EQ_INT(ep_model_check_output(path, &err), EP_EINVAL);
    CHECK_EQ_INT(ep_model_save(net, path, &err), EP_EINVAL);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "%s: '%s' lacks '%s'", path,
              err.msg, needle);
    CHECK_MSG(type == 0 || is_type(path, type), "%s changed type", path);
}

static void test_save_targets(void)
{
    char dir[] = "/tmp/test_model.XXXXXX", a[256], b[256], c[256];
    ep_net *net = test_net(), *back = NULL;
    ep_error err = {0};
    const unsigned char text[] = "{}\n";

    REQUIRE(mkdtemp(dir) != NULL);
    REQUIRE(mkfifo(scratch(a, sizeof a, dir, "fifo"), 0644) == 0);
    expect_refused(net, a, S_IFIFO, "not a regular file");
    REQUIRE(mkdir(scratch(b, sizeof b, dir, "sub"), 0755) == 0);
    expect_refused(net, b, S_IFDIR, "is a directory");
    REQUIRE(symlink("absent", scratch(c, sizeof c, dir, "dangling")) == 0);
    expect_refused(net, c, S_IFLNK, "cannot be reached");
    expect_refused(net, "", 0, "empty output path");
    CHECK_EQ_INT(ep_model_save(net, scratch(c, sizeof c, dir,
                                            "none/m.safetensors"), &err),
                 EP_EIO);
    CHECK(strstr(err.msg, "none: No such file") != NULL);
    CHECK_EQ_INT(ep_model_write_file(a, text, 3, &err), EP_EINVAL);
    CHECK(is_type(a, S_IFIFO));
    unlink(a);
    unlink(scratch(c, sizeof c, dir, "dangling"));

    /* Through a link: the target gets the model, the link stays. */
    scratch(a, sizeof a, dir, "sub/target.safetensors");
    REQUIRE(ep_model_write_file(a, text, 3, &err) == EP_OK);
    REQUIRE(symlink("sub/target.safetensors",
                    scratch(c, sizeof c, dir, "link")) == 0);
    CHECK_EQ_INT(ep_model_check_output(c, &err), EP_OK);
    CHECK_EQ_INT(ep_model_save(net, c, &err), EP_OK);
    CHECK(is_type(c, S_IFLNK) && is_type(a, S_IFREG));
    CHECK_EQ_INT(ep_model_load(a, &back, &err), EP_OK);
    CHECK(back != NULL && back->n_layers == net->n_layers);
    ep_net_free(back);
    unlink(c);
    unlink(a);
    rmdir(b);
    CHECK_MSG(rmdir(dir) == 0, "%s: temporary file left behind", dir);
    ep_net_free(net);
}

int main(void)
{
    test_round_trip();
    test_tensor_errors();
    test_nan_and_truncation();
    test_json_errors();
    test_pytorch_counter();
    test_memory_bomb();
    test_error_prefix_once();
    test_names();
    test_save_targets();
    return check_exit();
}
