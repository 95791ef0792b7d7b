/*
 * ep_model.c - model files in the safetensors container: an 8-byte
 * little-endian header length, a JSON header (tensor table plus
 * "__metadata__" with the architecture), then the float32 tensors.
 *
 * Writing is deterministic: tensors are stored in the order of their names
 * (byte-wise), header keys are sorted and the header is padded with spaces
 * to a multiple of 8 bytes.  Reading trusts nothing: every length, offset,
 * dtype and shape is checked against the file size and the architecture
 * before a byte of tensor data is read.  Files are written beside their
 * target and renamed over it, and only a new name or an existing regular
 * file (also behind a symbolic link, which stays a link) is replaced.
 */
#include "ep_model_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EP_MODEL_FORMAT "ecgprune-1"
/* Headers and files beyond these sizes are rejected as implausible. */
#define EP_MODEL_MAX_HEADER (64u << 20)
#define EP_MODEL_MAX_FILE ((size_t)1 << 31)

/* One tensor of the network as the file names and lays it out. */
typedef struct model_tensor {
    char name[EP_NAME_MAX + 24];
    float *data;            /* the net's array */
    int rank;
    long long shape[3];
    size_t count;           /* floats */
    size_t begin, end;      /* byte offsets within the data section */
    int seen;
} model_tensor;

static void add_tensor(model_tensor *t, int *n, const ep_layer *l,
                       const char *suffix, float *data)
{
    model_tensor *x = &t[(*n)++];

    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s.%s", l->name, suffix);
    x->data = data;
    if (l->op == EP_OP_CONV && strcmp(suffix, "weight") == 0) {
        x->rank = 3;
        x->shape[0] = l->channels;
        x->shape[1] = l->in_channels;
        x->shape[2] = l->kernel;
    } else {
        x->rank = 1;
        x->shape[0] = l->channels;
    }
    x->count = (size_t)x->shape[0] * (x->rank == 3
                                          ? (size_t)(x->shape[1] * x->shape[2])
                                          : 1);
}

static int tensor_name_cmp(const void *a, const void *b)
{
    return strcmp(((const model_tensor *)a)->name,
                  ((const model_tensor *)b)->name);
}

/* The network's tensors sorted by name (malloc'd array). */
static int list_tensors(const ep_net *net, model_tensor **out, int *n_out,
                        ep_error *err)
{
    model_tensor *t = malloc((size_t)(4 * net->n_layers + 1) * sizeof *t);
    int i, n = 0;

    if (t == NULL)
        return ep_error_set(err, EP_ENOMEM, "model: out of memory");
    for (i = 0; i < net->n_layers; i++) {
        const ep_layer *l = &net->layers[i];

        if (l->op == EP_OP_CONV) {
            add_tensor(t, &n, l, "weight", l->weight);
            add_tensor(t, &n, l, "bias", l->bias);
        } else if (l->op == EP_OP_BN) {
            add_tensor(t, &n, l, "weight", l->gamma);
            add_tensor(t, &n, l, "bias", l->beta);
            add_tensor(t, &n, l, "running_mean", l->mean);
            add_tensor(t, &n, l, "running_var", l->var);
        }
    }
    qsort(t, (size_t)n, sizeof *t, tensor_name_cmp);
    *out = t;
    *n_out = n;
    return EP_OK;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The header JSON text for tensors already given their offsets. */
static char *header_text(const ep_net *net, const model_tensor *t, int n)
{
    json_t *root = json_object(), *meta = json_object();
    json_t *arch = ep_model_arch_to_json(net);
    char *arch_text, *text;
    int i, d;

    arch_text = arch ? json_dumps(arch, JSON_COMPACT | JSON_PRESERVE_ORDER)
                     : NULL;
    json_decref(arch);
    if (root == NULL || meta == NULL || arch_text == NULL) {
        json_decref(root);
        json_decref(meta);
        free(arch_text);
        return NULL;
    }
    json_object_set_new(meta, "format", json_string(EP_MODEL_FORMAT));
    json_object_set_new(meta, "architecture", json_string(arch_text));
    free(arch_text);
    json_object_set_new(root, "__metadata__", meta);
    for (i = 0; i < n; i++) {
        json_t *obj = json_object(), *shape = json_array();

        for (d = 0; d < t[i].rank; d++)
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        json_object_set_new(obj, "dtype", json_string("F32"));
        json_object_set_new(obj, "shape", shape);
        json_object_set_new(obj, "data_offsets",
                            json_pack("[II]", (json_int_t)t[i].begin,
                                      (json_int_t)t[i].end));
        json_object_set_new(root, t[i].name, obj);
    }
    text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    return text;
}

int ep_model_save_buffer(const ep_net *net, unsigned char **buf,
                         size_t *len, ep_error *err)
{
    model_tensor *t;
    unsigned char *out, *p;
    size_t data_len = 0, hlen, padded, k;
    char *text;
    int i, n, rc;

    *buf = NULL;
    *len = 0;
    rc = list_tensors(net, &t, &n, err);
    if (rc != EP_OK)
        return rc;

    /* Loading refuses what is not finite, so saving does too: a training
     * run that diverged must not leave a file no command can open. */
    for (i = 0; i < n; i++)
        for (k = 0; k < t[i].count; k++)
            if (!isfinite(t[i].data[k])) {
                rc = ep_error_set(err, EP_ERANGE, "model: tensor '%s' "
                                  "element %zu is not finite (a training "
                                  "run that diverged?); nothing written",
                                  t[i].name, k);
                free(t);
                return rc;
            }

    /* Offsets of the tensors in the data section. */
    for (i = 0; i < n; i++) {
        t[i].begin = data_len;
        data_len += t[i].count * 4;
        t[i].end = data_len;
    }
    text = header_text(net, t, n);
    if (text == NULL) {
        free(t);
        return ep_error_set(err, EP_ENOMEM, "model: out of memory");
    }

    /* Pad the header with spaces so that the data starts 8-aligned. */
    hlen = strlen(text);
    padded = (hlen + 7) / 8 * 8;
    out = malloc(8 + padded + data_len);
    if (out == NULL) {
        free(text);
        free(t);
        return ep_error_set(err, EP_ENOMEM, "model: out of memory");
    }
    for (k = 0; k < 8; k++)
        out[k] = (unsigned char)((uint64_t)padded >> (8 * k));
    memcpy(out + 8, text, hlen);
    memset(out + 8 + hlen, ' ', padded - hlen);
    p = out + 8 + padded;
    for (i = 0; i < n; i++)
        for (k = 0; k < t[i].count; k++) {
            uint32_t bits;

            memcpy(&bits, &t[i].data[k], 4);
            put_le32(p, bits);
            p += 4;
        }
    free(text);
    free(t);
    *buf = out;
    *len = 8 + padded + data_len;
    return EP_OK;
}

/* Where one tensor's bytes lie, for the overlap and coverage check. */
typedef struct span {
    size_t begin, end;
    const char *name;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;

    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* data_offsets of a tensor entry: [begin, end] inside the data section. */
static int read_offsets(const json_t *obj, const char *name, size_t data_len,
                        size_t *begin, size_t *end, ep_error *err)
{
    const json_t *off = json_object_get(obj, "data_offsets");
    json_int_t b, e;

    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)))
        return ep_error_set(err, EP_EFORMAT, "tensor '%s': data_offsets "
                            "must be [begin, end] integers", name);
    b = json_integer_value(json_array_get(off, 0));
    e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b || (unsigned long long)e > data_len)
        return ep_error_set(err, EP_EFORMAT, "tensor '%s': data_offsets "
                            "[%lld, %lld] outside the %zu data bytes", name,
                            (long long)b, (long long)e, data_len);
    *begin = (size_t)b;
    *end = (size_t)e;
    return EP_OK;
}

static int check_dtype(const json_t *obj, const char *name,
                       const char *want, ep_error *err)
{
    const json_t *dtype = json_object_get(obj, "dtype");

    if (!json_is_string(dtype))
        return ep_error_set(err, EP_EFORMAT, "tensor '%s': missing dtype",
                            name);
    if (strcmp(json_string_value(dtype), want) != 0)
        return ep_error_set(err, EP_EFORMAT, "tensor '%s': dtype '%.16s', "
                            "expected %s", name, json_string_value(dtype),
                            want);
    return EP_OK;
}

static int check_shape(const json_t *obj, const model_tensor *t,
                       ep_error *err)
{
    const json_t *shape = json_object_get(obj, "shape");
    int d, ok = json_is_array(shape) &&
                json_array_size(shape) == (size_t)t->rank;

    for (d = 0; ok && d < t->rank; d++)
        ok = json_is_integer(json_array_get(shape, (size_t)d)) &&
             json_integer_value(json_array_get(shape, (size_t)d)) ==
                 t->shape[d];
    if (ok)
        return EP_OK;
    if (t->rank == 3)
        return ep_error_set(err, EP_EFORMAT, "tensor '%s': shape does not "
                            "match the architecture, expected [%lld, %lld, "
                            "%lld]", t->name, t->shape[0], t->shape[1],
                            t->shape[2]);
    return ep_error_set(err, EP_EFORMAT, "tensor '%s': shape does not match "
                        "the architecture, expected [%lld]", t->name,
                        t->shape[0]);
}

/* PyTorch's BN counter: an int64 scalar, accepted and ignored. */
static int is_bn_counter(const ep_net *net, const char *name)
{
    const char *suffix = ".num_batches_tracked";
    size_t n = strlen(name), s = strlen(suffix);
    char layer[EP_NAME_MAX];
    int idx;

    if (n <= s || n - s >= EP_NAME_MAX || strcmp(name + n - s, suffix) != 0)
        return 0;
    memcpy(layer, name, n - s);
    layer[n - s] = '\0';
    idx = ep_net_find(net, layer);
    return idx >= 0 && net->layers[idx].op == EP_OP_BN;
}

/* Check one header entry and record its span; t is the matching tensor
 * or NULL for an ignored BN counter. */
static int check_entry(const char *key, const json_t *obj, model_tensor *t,
                       size_t data_len, span *sp, ep_error *err)
{
    size_t begin = 0, end = 0, want;
    int rc;

    if (!json_is_object(obj))
        return ep_error_set(err, EP_EFORMAT, "tensor '%s': entry is not an "
                            "object", key);
    rc = check_dtype(obj, key, t ? "F32" : "I64", err);
    if (rc == EP_OK && t != NULL)
        rc = check_shape(obj, t, err);
    if (rc == EP_OK)
        rc = read_offsets(obj, key, data_len, &begin, &end, err);
    if (rc != EP_OK)
        return rc;
    want = t ? t->count * 4 : 8;
    if (end - begin != want)
        return ep_error_set(err, EP_EFORMAT, "tensor '%s': data_offsets "
                            "span %zu bytes, its shape needs %zu", key,
                            end - begin, want);
    sp->begin = begin;
    sp->end = end;
    sp->name = key;
    if (t != NULL) {
        t->begin = begin;
        t->end = end;
        t->seen = 1;
    }
    return EP_OK;
}

/* Spans sorted by offset must tile the data section exactly. */
static int check_coverage(span *sp, int n, size_t data_len, ep_error *err)
{
    size_t at = 0;
    int i;

    qsort(sp, (size_t)n, sizeof *sp, span_cmp);
    for (i = 0; i < n; i++) {
        if (sp[i].begin < at)
            return ep_error_set(err, EP_EFORMAT, "tensor '%s' overlaps "
                                "tensor '%s' at data byte %zu", sp[i].name,
                                sp[i - 1].name, sp[i].begin);
        if (sp[i].begin > at)
            return ep_error_set(err, EP_EFORMAT, "data bytes %zu..%zu "
                                "before tensor '%s' belong to no tensor", at,
                                sp[i].begin, sp[i].name);
        at = sp[i].end;
    }
    if (at != data_len)
        return ep_error_set(err, EP_EFORMAT, "data bytes %zu..%zu belong to "
                            "no tensor", at, data_len);
    return EP_OK;
}

/* Copy the checked tensors in, rejecting non-finite weights and negative
 * running variances. */
static int copy_data(const unsigned char *data, model_tensor *t, int n,
                     ep_error *err)
{
    int i;
    size_t k;

    for (i = 0; i < n; i++) {
        int is_var = strstr(t[i].name, ".running_var") != NULL;

        for (k = 0; k < t[i].count; k++) {
            uint32_t bits = get_le32(data + t[i].begin + 4 * k);
            float v;

            memcpy(&v, &bits, 4);
            if (!isfinite(v))
                return ep_error_set(err, EP_EFORMAT, "tensor '%s': element "
                                    "%zu is not finite", t[i].name, k);
            if (is_var && v < 0.0f)
                return ep_error_set(err, EP_EFORMAT, "tensor '%s': element "
                                    "%zu is a negative variance", t[i].name,
                                    k);
            t[i].data[k] = v;
        }
    }
    return EP_OK;
}

/* The "__metadata__" entry: format tag and architecture, parsed into a
 * network with zeroed weights whose parameters fit data_len bytes. */
static int read_metadata(const json_t *root, size_t data_len, ep_net **net,
                         ep_error *err)
{
    const json_t *meta = json_object_get(root, "__metadata__");
    const json_t *format, *arch_text;
    json_t *arch;
    json_error_t jerr;
    int rc;

    if (!json_is_object(meta))
        return ep_error_set(err, EP_EFORMAT, "header: missing "
                            "'__metadata__' object");
    format = json_object_get(meta, "format");
    arch_text = json_object_get(meta, "architecture");
    if (!json_is_string(format) ||
        strcmp(json_string_value(format), EP_MODEL_FORMAT) != 0)
        return ep_error_set(err, EP_EFORMAT, "header: '__metadata__' field "
                            "'format' must be \"%s\"", EP_MODEL_FORMAT);
    if (!json_is_string(arch_text))
        return ep_error_set(err, EP_EFORMAT, "header: '__metadata__' field "
                            "'architecture' must be a JSON string");
    arch = json_loadb(json_string_value(arch_text),
                      json_string_length(arch_text), JSON_REJECT_DUPLICATES,
                      &jerr);
    if (arch == NULL)
        return ep_error_set(err, EP_EFORMAT, "architecture: invalid JSON at "
                            "character %d: %s", jerr.position, jerr.text);
    rc = ep_model_arch_from_json(arch, data_len / 4, net, err);
    json_decref(arch);
    return rc;
}

/* Match header entries to the network's tensors and check them all. */
static int read_tensor_table(const json_t *root, const ep_net *net,
                             model_tensor *t, int n, size_t data_len,
                             ep_error *err)
{
    const char *key;
    const json_t *value;
    span *sp = malloc((json_object_size(root) + 1) * sizeof *sp);
    int n_sp = 0, i, rc = EP_OK;

    if (sp == NULL)
        return ep_error_set(err, EP_ENOMEM, "model: out of memory");
    json_object_foreach((json_t *)root, key, value) {
        model_tensor probe, *hit;

        if (strcmp(key, "__metadata__") == 0)
            continue;
        if (strlen(key) >= sizeof probe.name) {
            hit = NULL;
        } else {
            strcpy(probe.name, key);
            hit = bsearch(&probe, t, (size_t)n, sizeof *t, tensor_name_cmp);
        }
        if (hit == NULL && !is_bn_counter(net, key)) {
            rc = ep_error_set(err, EP_EFORMAT, "tensor '%.64s' is not a "
                              "parameter of the architecture", key);
            break;
        }
        rc = check_entry(key, value, hit, data_len, &sp[n_sp++], err);
        if (rc != EP_OK)
            break;
    }
    for (i = 0; rc == EP_OK && i < n; i++)
        if (!t[i].seen)
            rc = ep_error_set(err, EP_EFORMAT, "tensor '%s' missing from "
                              "the header", t[i].name);
    if (rc == EP_OK)
        rc = check_coverage(sp, n_sp, data_len, err);
    free(sp);
    return rc;
}

int ep_model_load_buffer(const unsigned char *buf, size_t len,
                         ep_net **out, ep_error *err)
{
    uint64_t hlen = 0;
    json_error_t jerr;
    json_t *root;
    ep_net *net = NULL;
    model_tensor *t = NULL;
    int k, n = 0, rc;

    /* The header length and the header itself. */
    *out = NULL;
    if (len < 8)
        return ep_error_set(err, EP_EFORMAT, "truncated: %zu bytes, the "
                            "header length alone takes 8", len);
    for (k = 7; k >= 0; k--)
        hlen = hlen << 8 | buf[k];
    if (hlen > len - 8 || hlen > EP_MODEL_MAX_HEADER)
        return ep_error_set(err, EP_EFORMAT, "not a safetensors file: its "
                            "first 8 bytes, the header length, read %llu, "
                            "more than the %zu bytes after them or the "
                            "limit of %u", (unsigned long long)hlen,
                            len - 8, EP_MODEL_MAX_HEADER);
    root = json_loadb((const char *)buf + 8, (size_t)hlen,
                      JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return ep_error_set(err, EP_EFORMAT, "header: invalid JSON at byte "
                            "%llu: %s", 8ULL + (unsigned long long)
                            (jerr.position > 0 ? jerr.position : 0),
                            jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ep_error_set(err, EP_EFORMAT, "header: not a JSON object");
    }

    /* Architecture, tensor table, then the data. */
    rc = read_metadata(root, len - 8 - (size_t)hlen, &net, err);
    if (rc == EP_OK)
        rc = list_tensors(net, &t, &n, err);
    if (rc == EP_OK)
        rc = read_tensor_table(root, net, t, n, len - 8 - (size_t)hlen, err);
    if (rc == EP_OK)
        rc = copy_data(buf + 8 + hlen, t, n, err);
    json_decref(root);
    free(t);
    if (rc != EP_OK) {
        ep_net_free(net);
        return rc;
    }
    *out = net;
    return EP_OK;
}

int ep_model_load(const char *path, ep_net **out, ep_error *err)
{
    unsigned char *buf;
    struct stat st;
    size_t got = 0;
    int fd, rc;

    *out = NULL;
    /* Non-blocking, so that a FIFO is refused below instead of waiting
     * for a writer. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return ep_error_set(err, EP_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;

        close(fd);
        return ep_error_set(err, EP_EIO, "%s: cannot stat: %s", path,
                            strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ep_error_set(err, EP_EIO, "%s: %s, expected a regular file",
                            path, S_ISDIR(st.st_mode)
                                ? "is a directory"
                                : "is not a regular file");
    }
    if ((uint64_t)st.st_size > EP_MODEL_MAX_FILE) {
        close(fd);
        return ep_error_set(err, EP_ERANGE, "%s: %lld bytes, more than the "
                            "%zu accepted", path, (long long)st.st_size,
                            EP_MODEL_MAX_FILE);
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory", path);
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != (size_t)st.st_size) {
        free(buf);
        return ep_error_set(err, EP_EIO, "%s: read %zu of %zu bytes", path,
                            got, (size_t)st.st_size);
    }
    rc = ep_model_load_buffer(buf, got, out, err);
    free(buf);
    if (rc != EP_OK)
        ep_error_prefix(err, "%s", path);
    return rc;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The directory part of path ("." for a bare name), malloc'd. */
static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;

    if (slash == NULL)
        return strdup(".");
    dir = strdup(path);
    if (dir != NULL)
        dir[slash == path ? 1 : slash - path] = '\0';
    return dir;
}

/* Make the rename itself durable by syncing the directory holding path. */
static void sync_parent_dir(const char *path)
{
    char *dir = parent_dir(path);
    int fd;

    if (dir == NULL)
        return;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* The temporary file and the rename need a directory that exists and
 * takes new entries; checked first, so the message says which. */
static int check_parent_dir(const char *path, const char *target,
                            ep_error *err)
{
    char *dir = parent_dir(target);
    struct stat st;
    int rc = EP_OK;

    if (dir == NULL)
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory", path);
    if (stat(dir, &st) != 0)
        rc = ep_error_set(err, EP_EIO, "%s: directory %s: %s", path, dir,
                          strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        rc = ep_error_set(err, EP_EINVAL, "%s: %s is not a directory",
                          path, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        rc = ep_error_set(err, EP_EIO, "%s: cannot create files in %s: %s",
                          path, dir, strerror(errno));
    free(dir);
    return rc;
}

/* An existing path: only a regular file, possibly behind symbolic links,
 * may be replaced.  Renaming over a FIFO or a device (/dev/null) would
 * put a regular file in its place.  *target is path, or for a link the
 * file it finally names, so that the rename keeps the link a link. */
static int existing_target(const char *path, const struct stat *lst,
                           char **target, ep_error *err)
{
    struct stat st = *lst;

    if (S_ISLNK(lst->st_mode) && stat(path, &st) != 0)
        return ep_error_set(err, EP_EINVAL, "%s: symbolic link to a file "
                            "that cannot be reached (%s); give a path for "
                            "a new file or an existing regular file", path,
                            strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ep_error_set(err, EP_EINVAL, "%s: %s; give a path for a new "
                            "file or an existing regular file", path,
                            S_ISDIR(st.st_mode) ? "is a directory"
                                                : "not a regular file");
    *target = S_ISLNK(lst->st_mode) ? realpath(path, NULL) : strdup(path);
    if (*target == NULL)
        return ep_error_set(err, EP_EIO, "%s: cannot resolve: %s", path,
                            strerror(errno));
    return EP_OK;
}

/* The file the bytes for path will replace or create (malloc'd). */
static int output_target(const char *path, char **target, ep_error *err)
{
    struct stat lst;
    int rc;

    *target = NULL;
    if (path[0] == '\0')
        return ep_error_set(err, EP_EINVAL, "empty output path; give a "
                            "file name");
    if (lstat(path, &lst) == 0) {
        rc = existing_target(path, &lst, target, err);
    } else if (errno == ENOENT || errno == ENOTDIR) {
        *target = strdup(path);
        rc = *target != NULL ? EP_OK
                             : ep_error_set(err, EP_ENOMEM, "%s: out of "
                                            "memory", path);
    } else {
        rc = ep_error_set(err, EP_EIO, "%s: cannot stat: %s", path,
                          strerror(errno));
    }
    if (rc == EP_OK)
        rc = check_parent_dir(path, *target, err);
    if (rc != EP_OK) {
        free(*target);
        *target = NULL;
    }
    return rc;
}

int ep_model_check_output(const char *path, ep_error *err)
{
    char *target;
    int rc = output_target(path, &target, err);

    free(target);
    return rc;
}

/* Write buf to a new temporary file named from the template tmp (which
 * mkstemp completes), synced to disk; the file is removed on failure.
 * path names the output in messages. */
static int write_temp(char *tmp, const unsigned char *buf, size_t len,
                      const char *path, ep_error *err)
{
    int fd = mkstemp(tmp), rc = EP_OK;

    if (fd < 0)
        return ep_error_set(err, EP_EIO, "%s: cannot create a temporary "
                            "file: %s", path, strerror(errno));
    if (fchmod(fd, 0644) != 0 || write_all(fd, buf, len) != 0 ||
        fsync(fd) != 0)
        rc = ep_error_set(err, EP_EIO, "%s: cannot write: %s", tmp,
                          strerror(errno));
    if (close(fd) != 0 && rc == EP_OK)
        rc = ep_error_set(err, EP_EIO, "%s: cannot close: %s", tmp,
                          strerror(errno));
    if (rc != EP_OK)
        unlink(tmp);
    return rc;
}

int ep_model_write_file(const char *path, const unsigned char *buf,
                        size_t len, ep_error *err)
{
    char *target, *tmp;
    int rc;

    rc = output_target(path, &target, err);
    if (rc != EP_OK)
        return rc;
    tmp = malloc(strlen(target) + 16);
    if (tmp == NULL) {
        free(target);
        return ep_error_set(err, EP_ENOMEM, "%s: out of memory", path);
    }

    /* Temporary file beside the target, synced, then renamed over it. */
    sprintf(tmp, "%s.tmp.XXXXXX", target);
    rc = write_temp(tmp, buf, len, path, err);
    if (rc == EP_OK && rename(tmp, target) != 0) {
        rc = ep_error_set(err, EP_EIO, "%s: cannot rename into place: %s",
                          path, strerror(errno));
        unlink(tmp);
    }
    if (rc == EP_OK)
        sync_parent_dir(target);
    free(tmp);
    free(target);
    return rc;
}

int ep_model_save(const ep_net *net, const char *path, ep_error *err)
{
    unsigned char *buf;
    size_t len;
    int rc;

    rc = ep_model_save_buffer(net, &buf, &len, err);
    if (rc != EP_OK)
        return rc;
    rc = ep_model_write_file(path, buf, len, err);
    free(buf);
    return rc;
}
