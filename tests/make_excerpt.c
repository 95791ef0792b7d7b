/*
 * make_excerpt.c - cut the first SECONDS of a WFDB record into a new,
 * valid WFDB record: a header with the new length and recomputed
 * checksums (the original's comment lines kept), one format-212 signal
 * file and an MIT-format .atr holding only the annotations in range.
 * It makes tests/data/mitdb-excerpt from the MIT-BIH database:
 *
 *   make_excerpt ../shared/data/mitdb/100 tests/data/mitdb-excerpt 180
 *
 * Each file is written to a temporary name and renamed into place.
 * Limitation: every signal must fit in 12 bits (format 212), as all
 * MIT-BIH signals do.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecgprune/ep_wfdb.h"

/* What the three writers need. */
typedef struct excerpt {
    const char *src, *name;
    const ep_record *rec;
    const ep_annotations *ann;
    int64_t n;
} excerpt;

typedef int (*writer_fn)(const excerpt *x, FILE *f);

/* Write DIR/NAME.EXT through DIR/NAME.EXT.tmp, renamed when complete. */
static int write_file(const excerpt *x, const char *dir, const char *ext,
                      writer_fn write)
{
    char path[1024], tmp[1040];
    FILE *f;
    int rc;

    snprintf(path, sizeof path, "%s/%s.%s", dir, x->name, ext);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "wb");
    if (f == NULL) {
        fprintf(stderr, "make_excerpt: cannot create %s: %s\n", tmp,
                strerror(errno));
        return -1;
    }
    rc = write(x, f);
    if (ferror(f))
        rc = -1;
    if (fclose(f) != 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc != 0) {
        fprintf(stderr, "make_excerpt: cannot write %s\n", path);
        remove(tmp);
    }
    return rc;
}

static void put16(FILE *f, unsigned w)
{
    fputc((int)(w & 0xff), f);
    fputc((int)((w >> 8) & 0xff), f);
}

/* Format 212: the interleaved stream, two 12-bit samples per 3 bytes. */
static int write_signals(const excerpt *x, FILE *f)
{
    const ep_record *rec = x->rec;
    int have_half = 0;
    unsigned half = 0;

    for (int64_t t = 0; t < x->n; t++)
        for (int s = 0; s < rec->n_signals; s++) {
            int32_t v = rec->samples[s][t];
            unsigned u = (unsigned)v & 0xfff;

            if (v < -2048 || v > 2047) {
                fprintf(stderr, "make_excerpt: signal %d sample %lld = %d "
                        "does not fit format 212\n", s, (long long)t,
                        (int)v);
                return -1;
            }
            if (!have_half) {
                half = u;
                have_half = 1;
                continue;
            }
            fputc((int)(half & 0xff), f);
            fputc((int)((half >> 8) | ((u >> 8) << 4)), f);
            fputc((int)(u & 0xff), f);
            have_half = 0;
        }
    if (have_half) {
        fputc((int)(half & 0xff), f);
        fputc((int)(half >> 8), f);
    }
    return 0;
}

static int checksum_of(const int32_t *x, int64_t n)
{
    uint32_t sum = 0;

    for (int64_t t = 0; t < n; t++)
        sum += (uint32_t)x[t];
    sum &= 0xffff;
    return sum >= 32768 ? (int)sum - 65536 : (int)sum;
}

/* Header with the new length and checksums, then the source's comments
 * and a note on where the excerpt came from. */
static int write_header(const excerpt *x, FILE *f)
{
    const ep_record *rec = x->rec;
    const char *name = x->name;
    int64_t n = x->n;
    char path[1024], line[1024];
    FILE *in;

    fprintf(f, "%s %d %.17g %lld\r\n", name, rec->n_signals,
            rec->sampling_rate, (long long)n);
    for (int s = 0; s < rec->n_signals; s++) {
        const ep_signal_info *si = &rec->signals[s];

        fprintf(f, "%s.dat 212 %.17g", name, si->gain);
        if (si->baseline != si->adc_zero)
            fprintf(f, "(%d)", si->baseline);
        if (strcmp(si->units, "mV") != 0)
            fprintf(f, "/%s", si->units);
        fprintf(f, " %d %d %d %d 0 %s\r\n", si->adc_resolution,
                si->adc_zero, (int)rec->samples[s][0],
                checksum_of(rec->samples[s], n), si->name);
    }

    snprintf(path, sizeof path, "%s.hea", x->src);
    in = fopen(path, "rb");
    if (in == NULL) {
        fprintf(stderr, "make_excerpt: cannot open %s\n", path);
        return -1;
    }
    while (fgets(line, sizeof line, in) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#')
            fprintf(f, "%s\r\n", line);
    }
    fclose(in);
    fprintf(f, "# Excerpt: samples 0 to %lld of MIT-BIH Arrhythmia "
            "Database record %s (ODC-By 1.0)\r\n", (long long)n - 1, name);
    return 0;
}

/* MIT format as WFDB's putann writes it: a SKIP before a time step that
 * does not fit 10 bits, then SUB, CHN, NUM and AUX when they change. */
static int write_annotations(const excerpt *x, FILE *f)
{
    const ep_annotations *ann = x->ann;
    int64_t prev = 0;
    int num = 0, chan = 0;

    for (size_t i = 0; i < ann->count; i++) {
        const ep_annotation *a = &ann->items[i];
        int64_t delta = a->sample - prev;

        if (a->sample >= x->n)
            continue;
        if (delta < 0 || delta > 1023) {
            uint32_t u = (uint32_t)delta;

            put16(f, 59u << 10);
            put16(f, u >> 16);
            put16(f, u & 0xffff);
            delta = 0;
        }
        put16(f, (unsigned)a->code << 10 | (unsigned)delta);
        prev = a->sample;
        if (a->subtype != 0)
            put16(f, 61u << 10 | ((unsigned)a->subtype & 0x3ff));
        if (a->chan != chan)
            put16(f, 62u << 10 | ((unsigned)a->chan & 0x3ff));
        if (a->num != num)
            put16(f, 60u << 10 | ((unsigned)a->num & 0x3ff));
        chan = a->chan;
        num = a->num;
        if (a->aux != NULL) {
            /* The byte count includes the NUL, as in the MIT-BIH files. */
            size_t len = strlen(a->aux) + 1;

            put16(f, 63u << 10 | (unsigned)len);
            fwrite(a->aux, 1, len, f);
            if (len % 2)
                fputc(0, f);
        }
    }
    put16(f, 0);
    return 0;
}

int main(int argc, char **argv)
{
    ep_record *rec = NULL;
    ep_annotations *ann = NULL;
    ep_error err = {0};
    excerpt x;
    double seconds;
    int rc = 0;

    if (argc != 4 || (seconds = strtod(argv[3], NULL)) <= 0) {
        fprintf(stderr, "usage: make_excerpt SRC_RECORD OUT_DIR SECONDS\n");
        return 2;
    }
    x.src = argv[1];
    x.name = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];

    /* Read the whole source record and its reference annotations. */
    if (ep_wfdb_read_record(argv[1], &rec, &err) != 0 ||
        ep_wfdb_read_annotations(argv[1], "atr", &ann, &err) != 0) {
        fprintf(stderr, "make_excerpt: %s\n", err.msg);
        ep_wfdb_free_record(rec);
        return 1;
    }
    x.rec = rec;
    x.ann = ann;
    x.n = (int64_t)(seconds * rec->sampling_rate + 0.5);
    if (x.n > rec->n_samples || rec->n_signals == 0) {
        fprintf(stderr, "make_excerpt: %s has %lld samples of %d signals, "
                "fewer than %lld\n", argv[1], (long long)rec->n_samples,
                rec->n_signals, (long long)x.n);
        rc = 1;
    }

    /* The signals first, so that no header points at a missing file. */
    if (rc == 0)
        rc = write_file(&x, argv[2], "dat", write_signals) != 0 ||
             write_file(&x, argv[2], "hea", write_header) != 0 ||
             write_file(&x, argv[2], "atr", write_annotations) != 0;
    if (rc == 0)
        printf("%s: %lld samples of %d signals written to %s\n", x.name,
               (long long)x.n, rec->n_signals, argv[2]);
    ep_wfdb_free_annotations(ann);
    ep_wfdb_free_record(rec);
    return rc;
}
