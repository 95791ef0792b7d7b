/*
 * test_wfdb.c - the WFDB reader: headers, signals in formats 212/16/80,
 * MIT annotations.  Three kinds of evidence:
 *   - the real MIT-BIH Arrhythmia Database (all 48 records decode, checksums
 *     and first values agree with the headers, beat counts agree with the
 *     database's published tables);
 *   - small hand-made headers, signal files and annotation buffers, encoded
 *     in the test by naive encoders written from the format descriptions;
 *   - hostile inputs (truncated, lying lengths, bad checksums) that must
 *     give the right error code and a message naming where.
 * Also checks the 3-minute excerpt shipped in tests/data/mitdb-excerpt.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_wfdb.h"

static const char *const mitdb_records[48] = {
    "100", "101", "102", "103", "104", "105", "106", "107", "108", "109",
    "111", "112", "113", "114", "115", "116", "117", "118", "119", "121",
    "122", "123", "124", "200", "201", "202", "203", "205", "207", "208",
    "209", "210", "212", "213", "214", "215", "217", "219", "220", "221",
    "222", "223", "228", "230", "231", "232", "233", "234",
};

static const char *mitdb_dir(void)
{
    const char *d = getenv("MITDB");

    return d != NULL ? d : "../shared/data/mitdb";
}

static void record_path(char *out, size_t cap, const char *dir,
                        const char *rec)
{
    snprintf(out, cap, "%s/%s", dir, rec);
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t got;
    long n;

    REQUIRE(f != NULL);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    REQUIRE(buf != NULL);
    got = fread(buf, 1, (size_t)n, f);
    REQUIRE(got == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* ---- naive reference encoders and decoders ---------------------------- */

/* Format 212 written from its description: a stream of 12-bit values, two
 * per 3 bytes; an odd last value takes 2 bytes. */
static size_t enc212(const int *v, size_t n, unsigned char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i += 2) {
        unsigned a = (unsigned)v[i] & 0xfffu;
        unsigned b = i + 1 < n ? (unsigned)v[i + 1] & 0xfffu : 0;

        out[o++] = (unsigned char)(a % 256);
        out[o++] = (unsigned char)(a / 256 + (b / 256) * 16);
        if (i + 1 < n)
            out[o++] = (unsigned char)(b % 256);
    }
    return o;
}

static int ref_dec212(const unsigned char *d, size_t k)
{
    size_t base = (k / 2) * 3;
    int v;

    if (k % 2 == 0)
        v = d[base] + 256 * (d[base + 1] % 16);
    else
        v = d[base + 2] + 256 * (d[base + 1] / 16);
    return v > 2047 ? v - 4096 : v;
}

static size_t enc16(const int *v, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned u = (unsigned)v[i] & 0xffffu;

        out[2 * i] = (unsigned char)(u % 256);
        out[2 * i + 1] = (unsigned char)(u / 256);
    }
    return 2 * n;
}

static size_t enc80(const int *v, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(v[i] + 128);
    return n;
}

/* The WFDB checksum: the sum of the samples as a signed 16-bit number. */
static int ref_checksum(const int *v, size_t n, size_t stride)
{
    long long s = 0;

    for (size_t i = 0; i < n; i++)
        s += v[i * stride];
    s %= 65536;
    if (s < 0)
        s += 65536;
    return s >= 32768 ? (int)(s - 65536) : (int)s;
}

/* ---- the real database ------------------------------------------------- */

/* Every record: 2 signals, 360 Hz, 650000 samples, checks OK. */
static void test_all_records_decode(void)
{
    char path[512];
    clock_t t0 = clock();
    long long samples = 0;

    for (int r = 0; r < 48; r++) {
        ep_record *rec = NULL;
        ep_error err = {0};
        int rc;

        record_path(path, sizeof path, mitdb_dir(), mitdb_records[r]);
        rc = ep_wfdb_read_record(path, &rec, &err);
        CHECK_MSG(rc == 0, "%s: %s", path, err.msg);
        if (rc != 0)
            continue;
        CHECK_EQ_INT(rec->n_signals, 2);
        CHECK_EQ_INT(rec->n_samples, 650000);
        CHECK_NEAR(rec->sampling_rate, 360.0, 0);
        for (int s = 0; s < rec->n_signals; s++) {
            CHECK_EQ_INT(rec->signals[s].format, 212);
            CHECK_EQ_INT(rec->signals[s].checksum_ok, 1);
            CHECK_EQ_INT(rec->signals[s].initial_value_ok, 1);
            CHECK_NEAR(rec->signals[s].gain, 200.0, 0);
            CHECK_EQ_INT(rec->signals[s].baseline, 1024);
            CHECK(strcmp(rec->signals[s].units, "mV") == 0);
        }
        samples += rec->n_samples * rec->n_signals;
        ep_wfdb_free_record(rec);
    }
    printf("decoded 48 records, %lld samples, in %.2f s of CPU\n", samples,
           (double)(clock() - t0) / CLOCKS_PER_SEC);
}

/* Record 100 against a naive decoder, sample by sample, and its header. */
static void test_record_100_reference(void)
{
    char path[512];
    unsigned char *dat;
    size_t len;
    ep_record *rec = NULL;
    ep_error err = {0};
    size_t bad = 0;
    float mv[4];
    int rc;

    snprintf(path, sizeof path, "%s/100.dat", mitdb_dir());
    dat = read_file(path, &len);
    record_path(path, sizeof path, mitdb_dir(), "100");
    rc = ep_wfdb_read_record(path, &rec, &err);
    REQUIRE(rc == 0);
    CHECK_EQ_INT(len, 1950000);
    for (size_t t = 0; t < 650000; t++)
        for (int s = 0; s < 2; s++)
            bad += rec->samples[s][t] != ref_dec212(dat, 2 * t + (size_t)s);
    CHECK_EQ_INT(bad, 0);

    /* Header 100.hea: MLII and V5, initial values 995 and 1011. */
    CHECK(strcmp(rec->signals[0].name, "MLII") == 0);
    CHECK(strcmp(rec->signals[1].name, "V5") == 0);
    CHECK_EQ_INT(rec->signals[0].checksum, -22131);
    CHECK_EQ_INT(rec->signals[1].checksum, 20052);
    CHECK_EQ_INT(rec->samples[0][0], 995);
    CHECK_EQ_INT(rec->samples[1][0], 1011);
    CHECK_EQ_INT(rec->signals[0].adc_resolution, 11);
    CHECK_EQ_INT(rec->signals[0].adc_zero, 1024);
    CHECK_EQ_INT(ep_wfdb_find_signal(rec, "V5"), 1);
    CHECK_EQ_INT(ep_wfdb_find_signal(rec, "V1"), EP_ENOTFOUND);
    {
        char names[32];

        CHECK(strcmp(ep_wfdb_signal_names(rec, names, sizeof names),
                     "'MLII', 'V5'") == 0);
        CHECK(strcmp(ep_wfdb_signal_names(rec, names, 9), "'MLII', ") == 0);
        CHECK(strcmp(ep_wfdb_signal_names(rec, names, 1), "") == 0);
    }

    /* Physical units: (995 - 1024) / 200 mV. */
    {
        float *x = malloc(650000 * sizeof *x);

        REQUIRE(x != NULL);
        CHECK(ep_wfdb_signal_physical(rec, 0, x, &err) == 0);
        memcpy(mv, x, sizeof mv);
        CHECK_NEAR(mv[0], (995.0 - 1024.0) / 200.0, 1e-6);
        CHECK(ep_wfdb_signal_physical(rec, 2, x, &err) == EP_EINVAL);
        free(x);
    }
    ep_wfdb_free_record(rec);
    free(dat);
}

/* A flipped byte in a copy of 100.dat must fail the checksum. */
static void test_checksum_mismatch_detected(void)
{
    char path[512];
    unsigned char *hea, *dat;
    size_t hlen, dlen;
    ep_record *rec = NULL;
    ep_error err = {0};
    int rc;

    snprintf(path, sizeof path, "%s/100.hea", mitdb_dir());
    hea = read_file(path, &hlen);
    snprintf(path, sizeof path, "%s/100.dat", mitdb_dir());
    dat = read_file(path, &dlen);
    rc = ep_wfdb_parse_header((char *)hea, hlen, "100.hea", &rec, &err);
    REQUIRE(rc == 0);
    CHECK(ep_wfdb_decode_signals(rec, "100.dat", dat, dlen, &err) == 0);

    /* Byte 300000 is the first byte of a pair: the low 8 bits of MLII. */
    dat[300000] ^= 0x10;
    rc = ep_wfdb_decode_signals(rec, "100.dat", dat, dlen, &err);
    CHECK_EQ_INT(rc, EP_ECHECKSUM);
    CHECK_EQ_INT(rec->signals[0].checksum_ok, 0);
    CHECK_EQ_INT(rec->signals[1].checksum_ok, 1);
    CHECK_MSG(strstr(err.msg, "100.dat") && strstr(err.msg, "MLII") &&
              strstr(err.msg, "-22131"), "message: %s", err.msg);

    /* Byte 0 holds the first sample: the first-value check fails too. */
    dat[300000] ^= 0x10;
    dat[0] ^= 0x01;
    rc = ep_wfdb_decode_signals(rec, "100.dat", dat, dlen, &err);
    CHECK_EQ_INT(rc, EP_ECHECKSUM);
    CHECK_EQ_INT(rec->signals[0].initial_value_ok, 0);
    ep_wfdb_free_record(rec);
    free(hea);
    free(dat);
}

/*
 * Published beat counts of the MIT-BIH Arrhythmia Database.  Source: the
 * per-record tables of the "MIT-BIH Arrhythmia Database Directory"
 * (Moody and Mark; PhysioNet mitdb, records 100, 101, 109, 207, 208, 232,
 * 234) and its summary table of beats by type over all 48 records
 * (109,494 beats).
 */
struct published_count {
    const char *record;
    const char *symbol;
    int count;
};

static const struct published_count published_records[] = {
    {"100", "N", 2239}, {"100", "A", 33}, {"100", "V", 1},
    {"101", "N", 1860}, {"101", "A", 3}, {"101", "Q", 2},
    {"109", "L", 2492}, {"109", "V", 38}, {"109", "F", 2},
    {"207", "L", 1457}, {"207", "R", 86}, {"207", "A", 107},
    {"207", "V", 105}, {"207", "E", 105}, {"207", "!", 472},
    {"208", "N", 1586}, {"208", "V", 992}, {"208", "F", 373},
    {"208", "S", 2}, {"208", "Q", 2},
    {"232", "R", 397}, {"232", "A", 1382}, {"232", "j", 1},
    {"234", "N", 2700}, {"234", "J", 50}, {"234", "V", 3},
};

static const struct published_count published_totals[] = {
    {"all", "N", 75052}, {"all", "L", 8075}, {"all", "R", 7259},
    {"all", "V", 7130}, {"all", "/", 7028}, {"all", "A", 2546},
    {"all", "f", 982}, {"all", "F", 803}, {"all", "j", 229},
    {"all", "a", 150}, {"all", "E", 106}, {"all", "J", 83},
    {"all", "Q", 33}, {"all", "e", 16}, {"all", "S", 2},
};

static void test_published_beat_counts(void)
{
    long long total[50] = {0}, aami[EP_AAMI_COUNT] = {0};
    long long n_beats = 0, aami_total = 0, out_of_order = 0;
    char path[512];
    size_t np = sizeof published_records / sizeof published_records[0];

    for (int r = 0; r < 48; r++) {
        ep_annotations *ann = NULL;
        ep_error err = {0};
        int count[50] = {0};

        record_path(path, sizeof path, mitdb_dir(), mitdb_records[r]);
        if (ep_wfdb_read_annotations(path, "atr", &ann, &err) != 0) {
            CHECK_MSG(0, "%s.atr: %s", path, err.msg);
            continue;
        }
        for (size_t i = 0; i < ann->count; i++) {
            int c = ann->items[i].code;

            REQUIRE(c >= 1 && c <= 49);
            CHECK(ann->items[i].sample >= 0 &&
                  ann->items[i].sample < 650000);
            if (i > 0 && ann->items[i].sample < ann->items[i - 1].sample)
                out_of_order++;
            count[c]++;
            total[c]++;
            n_beats += ep_wfdb_is_beat(c);
            if (ep_aami_from_code(c) != EP_AAMI_NONE)
                aami[ep_aami_from_code(c)]++;
        }
        for (size_t k = 0; k < np; k++)
            if (strcmp(published_records[k].record, mitdb_records[r]) == 0)
                CHECK_MSG(count[ep_wfdb_symbol_code(
                              published_records[k].symbol)] ==
                              published_records[k].count,
                          "record %s, %s: %d, published %d",
                          mitdb_records[r], published_records[k].symbol,
                          count[ep_wfdb_symbol_code(
                              published_records[k].symbol)],
                          published_records[k].count);
        ep_wfdb_free_annotations(ann);
    }
    CHECK_EQ_INT(out_of_order, 0);

    /* Totals by type; their sum is the published 109,494 beats, which are
     * exactly the beats with an AAMI class. */
    for (size_t k = 0; k < 15; k++)
        CHECK_MSG(total[ep_wfdb_symbol_code(published_totals[k].symbol)] ==
                      published_totals[k].count, "%s: %lld, published %d",
                  published_totals[k].symbol,
                  total[ep_wfdb_symbol_code(published_totals[k].symbol)],
                  published_totals[k].count);
    for (int c = 0; c < EP_AAMI_COUNT; c++)
        aami_total += aami[c];
    CHECK_EQ_INT(aami_total, 109494);
    /* N + L + R + e + j, A + a + J + S, V + E, F, / + f + Q. */
    CHECK_EQ_INT(aami[EP_AAMI_N], 75052 + 8075 + 7259 + 16 + 229);
    CHECK_EQ_INT(aami[EP_AAMI_S], 2546 + 150 + 83 + 2);
    CHECK_EQ_INT(aami[EP_AAMI_V], 7130 + 106);
    CHECK_EQ_INT(aami[EP_AAMI_F], 803);
    CHECK_EQ_INT(aami[EP_AAMI_Q], 7028 + 982 + 33);
    /* WFDB's isqrs also counts the 472 flutter waves (!) of record 207. */
    CHECK_EQ_INT(n_beats, 109494 + 472);
}

/* The first annotations of 100.atr as rdann lists them: a rhythm label
 * "(N" at sample 18, then normal beats at 77, 370, 662. */
static void test_record_100_positions(void)
{
    char path[512];
    ep_annotations *ann = NULL;
    ep_error err = {0};
    int rc;

    record_path(path, sizeof path, mitdb_dir(), "100");
    rc = ep_wfdb_read_annotations(path, "atr", &ann, &err);
    REQUIRE(rc == 0);
    REQUIRE(ann->count > 4);
    CHECK_EQ_INT(ann->items[0].sample, 18);
    CHECK(strcmp(ep_wfdb_code_symbol(ann->items[0].code), "+") == 0);
    CHECK(ann->items[0].aux != NULL &&
          strcmp(ann->items[0].aux, "(N") == 0);
    CHECK_EQ_INT(ann->items[1].sample, 77);
    CHECK_EQ_INT(ann->items[2].sample, 370);
    CHECK_EQ_INT(ann->items[3].sample, 662);
    for (int i = 1; i < 4; i++)
        CHECK(strcmp(ep_wfdb_code_symbol(ann->items[i].code), "N") == 0);
    ep_wfdb_free_annotations(ann);
}

/* ---- hand-made headers and signals ------------------------------------- */

static ep_record *parse_ok(const char *text)
{
    ep_record *rec = NULL;
    ep_error err = {0};
    int rc = ep_wfdb_parse_header(text, strlen(text), "t.hea", &rec, &err);

    CHECK_MSG(rc == 0, "%s", err.msg);
    return rec;
}

static void parse_fails(const char *text, int code, const char *where)
{
    ep_record *rec = NULL;
    ep_error err = {0};
    int rc = ep_wfdb_parse_header(text, strlen(text), "t.hea", &rec, &err);

    CHECK_MSG(rc == code, "got %d (%s) for: %s", rc, err.msg, text);
    CHECK(rec == NULL);
    CHECK_MSG(strstr(err.msg, where) != NULL, "'%s' not in '%s'", where,
              err.msg);
}

static void test_header_fields(void)
{
    ep_record *lf, *crlf, *min;
    const char *lf_text =
        "# leading comment\n"
        "rec 3 500 1000 12:00:00 01/01/2000\n"
        "a.dat 16+4 100(-5)/uV 14 3 7 -1 0 lead I\n"
        "\n"
        "a.dat 16+4 0 0 0\n"
        "b.dat 80x1:0 250.5/mmHg\n"
        "# trailing comment\n";
    char crlf_text[512];
    size_t o = 0;

    /* The same header with CR-LF line endings parses the same. */
    for (const char *p = lf_text; *p; p++) {
        if (*p == '\n')
            crlf_text[o++] = '\r';
        crlf_text[o++] = *p;
    }
    crlf_text[o] = '\0';
    lf = parse_ok(lf_text);
    crlf = parse_ok(crlf_text);
    REQUIRE(lf != NULL && crlf != NULL);
    CHECK_EQ_INT(lf->n_signals, 3);
    CHECK_NEAR(lf->sampling_rate, 500.0, 0);
    CHECK_EQ_INT(lf->n_samples, 1000);
    CHECK(strcmp(lf->name, "rec") == 0);

    /* Signal 0: every field given. */
    CHECK(strcmp(lf->signals[0].file, "a.dat") == 0);
    CHECK_EQ_INT(lf->signals[0].format, 16);
    CHECK_EQ_INT(lf->signals[0].byte_offset, 4);
    CHECK_NEAR(lf->signals[0].gain, 100.0, 0);
    CHECK_EQ_INT(lf->signals[0].baseline, -5);
    CHECK(strcmp(lf->signals[0].units, "uV") == 0);
    CHECK_EQ_INT(lf->signals[0].adc_resolution, 14);
    CHECK_EQ_INT(lf->signals[0].adc_zero, 3);
    CHECK_EQ_INT(lf->signals[0].initial_value, 7);
    CHECK_EQ_INT(lf->signals[0].checksum, -1);
    CHECK_EQ_INT(lf->signals[0].has_checksum, 1);
    CHECK(strcmp(lf->signals[0].name, "lead I") == 0);

    /* Signal 1: gain 0 means WFDB's default 200, resolution 0 the format's
     * width; baseline defaults to ADC zero, no checksum, default name. */
    CHECK_NEAR(lf->signals[1].gain, 200.0, 0);
    CHECK_EQ_INT(lf->signals[1].adc_resolution, 16);
    CHECK_EQ_INT(lf->signals[1].baseline, 0);
    CHECK_EQ_INT(lf->signals[1].has_checksum, 0);
    CHECK_EQ_INT(lf->signals[1].has_initial_value, 0);
    CHECK(strcmp(lf->signals[1].name, "signal 1") == 0);

    /* Signal 2: format with frame and skew suffixes, fractional gain. */
    CHECK_EQ_INT(lf->signals[2].format, 80);
    CHECK_NEAR(lf->signals[2].gain, 250.5, 0);
    CHECK(strcmp(lf->signals[2].units, "mmHg") == 0);
    CHECK_EQ_INT(lf->signals[2].adc_resolution, 8);

    for (int s = 0; s < 3; s++)
        CHECK(memcmp(&lf->signals[s], &crlf->signals[s],
                     sizeof lf->signals[s]) == 0);

    /* Only name and signal count: 250 Hz, unknown length, gain 200, mV. */
    min = parse_ok("x 1\r\nx.dat 212\r\n");
    REQUIRE(min != NULL);
    CHECK_NEAR(min->sampling_rate, 250.0, 0);
    CHECK_EQ_INT(min->n_samples, 0);
    CHECK_NEAR(min->signals[0].gain, 200.0, 0);
    CHECK(strcmp(min->signals[0].units, "mV") == 0);
    CHECK_EQ_INT(min->signals[0].adc_resolution, 12);
    ep_wfdb_free_record(min);

    /* Every field up to block size, then only blanks: the default name. */
    min = parse_ok("x 1\nx.dat 16 200 16 0 0 0 0   \n");
    REQUIRE(min != NULL);
    CHECK(strcmp(min->signals[0].name, "signal 0") == 0);
    CHECK_EQ_INT(min->signals[0].checksum, 0);
    CHECK_EQ_INT(min->signals[0].has_checksum, 1);
    ep_wfdb_free_record(lf);
    ep_wfdb_free_record(crlf);
    ep_wfdb_free_record(min);
}

static void test_header_rejects(void)
{
    parse_fails("", EP_EFORMAT, "no record line");
    parse_fails("# only a comment\n", EP_EFORMAT, "no record line");
    parse_fails("r 2 360 10\nr.dat 212\n", EP_EFORMAT,
                "end of header after 1 signal lines, expected 2");
    parse_fails("r 1 360 10\nr.dat 311\n", EP_EFORMAT,
                "t.hea line 2: field 2 (storage format) is '311'");
    parse_fails("r 1 360 10\nr.dat 8\n", EP_EFORMAT, "storage format");
    parse_fails("r 1 360 10\nr.dat 212x2\n", EP_EFORMAT, "per frame");
    parse_fails("r 1 360 10\nr.dat 212:3\n", EP_EFORMAT, "skew");
    parse_fails("r 1 360 10\nr.dat\n", EP_EFORMAT, "no storage format");
    parse_fails("r 100000 360\n", EP_EFORMAT, "number of signals");
    parse_fails("r -1 360\n", EP_EFORMAT, "number of signals");
    parse_fails("r 1 0\nr.dat 16\n", EP_EFORMAT, "sampling frequency");
    parse_fails("r 1 nan\nr.dat 16\n", EP_EFORMAT, "sampling frequency");
    /* Hexadecimal, which strtod would read as 360 and 200. */
    parse_fails("r 1 0x168\nr.dat 16\n", EP_EFORMAT,
                "field 3 (sampling frequency) is '0x168'");
    parse_fails("r 1 360\nr.dat 16 0xC8\n", EP_EFORMAT, "gain");
    /* Rates that made durations overflow a long and gains that made every
     * physical value infinite. */
    parse_fails("r 1 1e-300\nr.dat 16\n", EP_EFORMAT,
                "field 3 (sampling frequency) is '1e-300'");
    parse_fails("r 1 0.0009\nr.dat 16\n", EP_EFORMAT, "[0.001, 1e6] Hz");
    parse_fails("r 1\nr.dat 16 1e-300\n", EP_EFORMAT, "gain in [1e-6");
    {
        ep_record *edge = parse_ok("r 1 0.001\nr.dat 16 1e-6\n");

        REQUIRE(edge != NULL);
        CHECK_NEAR(edge->sampling_rate, 0.001, 1e-15);
        CHECK_NEAR(edge->signals[0].gain, 1e-6, 1e-18);
        ep_wfdb_free_record(edge);
    }
    parse_fails("r 1 360 -5\nr.dat 16\n", EP_EFORMAT, "number of samples");
    parse_fails("r 1 360 99999999999999999\nr.dat 16\n", EP_EFORMAT,
                "number of samples");
    parse_fails("r/2 1 360\nr.dat 16\n", EP_EFORMAT, "multi-segment");
    parse_fails("r 1\n../etc/passwd 16\n", EP_EFORMAT, "file name");
    parse_fails("r 1\nr.dat 16 -3\n", EP_EFORMAT, "gain");
    parse_fails("r 1\nr.dat 16 1e300\n", EP_EFORMAT, "gain");
    parse_fails("r 1\nr.dat 16 200(12\n", EP_EFORMAT, "gain");
    parse_fails("r 1\nr.dat 16 200/\n", EP_EFORMAT, "units");
    parse_fails("r 1\nr.dat 16 200 17\n", EP_EFORMAT, "ADC resolution");
    parse_fails("r 1\nr.dat 80 200 8 200\n", EP_EFORMAT, "ADC zero");
    parse_fails("r 1\nr.dat 212 200 12 0 4000\n", EP_EFORMAT,
                "initial value");
    parse_fails("r 1\nr.dat 16 200 16 0 0 70000\n", EP_EFORMAT,
                "checksum");
    parse_fails("r 1\nr.dat 16 200 16 0 0 0 x\n", EP_EFORMAT,
                "block size");
    parse_fails("r 1\nr.dat 16\nextra 16\n", EP_EFORMAT,
                "t.hea line 3: expected a comment");
    parse_fails("r 1\nr.dat\x01 16\n", EP_EFORMAT,
                "control byte 0x01 at byte offset 9");
    /* Text JSON cannot carry: a lone 0xff, an overlong '/', a surrogate,
     * a sequence cut by the end of the line; valid UTF-8 is kept. */
    parse_fails("r 1\nr.dat 16 200 16 0 0 0 0 bad\xff\n", EP_EFORMAT,
                "t.hea line 2: byte 0xff at byte offset 31 is not valid");
    parse_fails("r 1\nr.dat 16 200 16 0 0 0 0 \xc0\xaf\n", EP_EFORMAT,
                "byte 0xc0 at byte offset 28");
    parse_fails("r 1\nr.dat 16 200 16 0 0 0 0 \xed\xa0\x80\n", EP_EFORMAT,
                "byte 0xed at byte offset 28");
    parse_fails("r\xe2\x82\n", EP_EFORMAT, "byte 0xe2 at byte offset 1");
    {
        ep_record *utf8 = parse_ok("r 1\nr.dat 16 200 16 0 0 0 0 "
                                   "\xce\xbc-lead \xf0\x9f\x92\x93\n");

        REQUIRE(utf8 != NULL);
        CHECK(strcmp(utf8->signals[0].name,
                     "\xce\xbc-lead \xf0\x9f\x92\x93") == 0);
        ep_wfdb_free_record(utf8);
    }
    parse_fails("r 3\na.dat 16\nb.dat 16\na.dat 16\n", EP_EFORMAT,
                "consecutive");
    parse_fails("r 2\na.dat 16\na.dat 80\n", EP_EFORMAT, "share file");
}

/* Three signals interleaved in one format-212 file, an odd number of
 * samples in all, next to a format-16 and a format-80 file. */
static void test_decode_formats(void)
{
    enum { N = 7 };
    int v212[3 * N], v16[N], v80[N];
    unsigned char f212[64], f16[64], f80[64];
    size_t n212, n16, n80;
    char header[1024];
    ep_record *rec;
    ep_error err = {0};
    int s;

    for (int t = 0; t < N; t++) {
        v212[3 * t] = -2048 + 517 * t;
        v212[3 * t + 1] = 2047 - 301 * t;
        v212[3 * t + 2] = (t % 2 ? -1 : 1) * 37 * t;
        v16[t] = t % 2 ? -32768 + 1000 * t : 32767 - 999 * t;
        v80[t] = -128 + 40 * t;
    }
    n212 = enc212(v212, 3 * N, f212);
    n16 = enc16(v16, N, f16 + 3) + 3;    /* behind a 3-byte prelude */
    n80 = enc80(v80, N, f80);
    CHECK_EQ_INT(n212, 3 * N / 2 * 3 + 2);

    snprintf(header, sizeof header,
             "mix 5 1000 %d\n"
             "m.dat 212 200 12 0 %d %d 0 A\n"
             "m.dat 212 200 12 0 %d %d 0 B\n"
             "m.dat 212 200 12 0 %d %d 0 C\n"
             "w.dat 16+3 1000 16 0 %d %d 0 W\n"
             "b.dat 80 10 8 0 %d %d 0 Z\n",
             N, v212[0], ref_checksum(v212, N, 3), v212[1],
             ref_checksum(v212 + 1, N, 3), v212[2],
             ref_checksum(v212 + 2, N, 3), v16[0], ref_checksum(v16, N, 1),
             v80[0], ref_checksum(v80, N, 1));
    rec = parse_ok(header);
    REQUIRE(rec != NULL);
    CHECK(ep_wfdb_decode_signals(rec, "m.dat", f212, n212, &err) == 0);
    CHECK(ep_wfdb_decode_signals(rec, "w.dat", f16, n16, &err) == 0);
    CHECK(ep_wfdb_decode_signals(rec, "b.dat", f80, n80, &err) == 0);
    CHECK_MSG(err.code == 0, "%s", err.msg);
    for (int t = 0; t < N; t++) {
        for (s = 0; s < 3; s++)
            CHECK_EQ_INT(rec->samples[s][t], v212[3 * t + s]);
        CHECK_EQ_INT(rec->samples[3][t], v16[t]);
        CHECK_EQ_INT(rec->samples[4][t], v80[t]);
    }
    for (s = 0; s < 5; s++) {
        CHECK_EQ_INT(rec->signals[s].checksum_ok, 1);
        CHECK_EQ_INT(rec->signals[s].initial_value_ok, 1);
    }
    CHECK_EQ_INT(ep_wfdb_decode_signals(rec, "nope.dat", f80, n80, &err),
                 EP_ENOTFOUND);

    /* Lying lengths: one byte short, one byte long. */
    CHECK_EQ_INT(ep_wfdb_decode_signals(rec, "m.dat", f212, n212 - 1, &err),
                 EP_EFORMAT);
    CHECK_MSG(strstr(err.msg, "m.dat") && strstr(err.msg, "need 32"),
              "%s", err.msg);
    CHECK_EQ_INT(ep_wfdb_decode_signals(rec, "b.dat", f80, n80 + 1, &err),
                 EP_EFORMAT);
    CHECK_EQ_INT(ep_wfdb_decode_signals(rec, "w.dat", f16, 2, &err),
                 EP_EFORMAT);
    CHECK_MSG(strstr(err.msg, "byte offset 3"), "%s", err.msg);
    ep_wfdb_free_record(rec);
}

/* Millivolts from any voltage unit: 100 ADC units at 2000/V are 0.05 V,
 * 50 mV; at 2/uV 50 uV, 0.05 mV; a temperature is refused. */
static void test_units_to_mv(void)
{
    enum { N = 3 };
    int v[N] = {100, -50, 0};
    unsigned char f[16];
    size_t n = enc16(v, N, f);
    char header[512];
    float mv[N];
    ep_record *rec;
    ep_error err = {0};
    int sig;

    snprintf(header, sizeof header,
             "u 3 360 %d\n"
             "x.dat 16 2000/V 16 0 %d %d 0 A\n"
             "y.dat 16 2/uV 16 0 %d %d 0 B\n"
             "z.dat 16 200/degC 16 0 %d %d 0 T\n", N, v[0],
             ref_checksum(v, N, 1), v[0], ref_checksum(v, N, 1), v[0],
             ref_checksum(v, N, 1));
    rec = parse_ok(header);
    REQUIRE(rec != NULL);
    REQUIRE(ep_wfdb_decode_signals(rec, "x.dat", f, n, &err) == 0);
    REQUIRE(ep_wfdb_decode_signals(rec, "y.dat", f, n, &err) == 0);
    REQUIRE(ep_wfdb_decode_signals(rec, "z.dat", f, n, &err) == 0);
    for (sig = 0; sig < 2; sig++) {
        double per_adc = sig == 0 ? 1000.0 / 2000.0 : 1e-3 / 2.0;

        REQUIRE(ep_wfdb_signal_mv(rec, sig, mv, &err) == 0);
        for (int t = 0; t < N; t++)
            CHECK_NEAR(mv[t], v[t] * per_adc, 1e-6);
    }
    CHECK_EQ_INT(ep_wfdb_signal_mv(rec, 2, mv, &err), EP_EINVAL);
    CHECK_MSG(strstr(err.msg, "signal 2 ('T') is in 'degC', not a voltage")
              != NULL, "%s", err.msg);
    ep_wfdb_free_record(rec);
}

/* No length in the header: it comes from the file; a file that is no
 * whole number of frames is refused. */
static void test_length_from_file(void)
{
    int v[6] = {1, 2, 3, 4, 5, 6};
    unsigned char f[16];
    size_t n = enc212(v, 6, f);
    ep_record *rec = parse_ok("r 2 100\nr.dat 212\nr.dat 212\n");
    ep_error err = {0};

    REQUIRE(rec != NULL);
    CHECK(ep_wfdb_decode_signals(rec, "r.dat", f, n, &err) == 0);
    CHECK_EQ_INT(rec->n_samples, 3);
    CHECK_EQ_INT(rec->samples[1][2], 6);
    CHECK_EQ_INT(rec->signals[0].checksum_ok, -1);
    ep_wfdb_free_record(rec);

    rec = parse_ok("r 2 100\nr.dat 212\nr.dat 212\n");
    REQUIRE(rec != NULL);
    CHECK_EQ_INT(ep_wfdb_decode_signals(rec, "r.dat", f, n - 1, &err),
                 EP_EFORMAT);
    CHECK_EQ_INT(ep_wfdb_decode_signals(rec, "r.dat", f, 4, &err),
                 EP_EFORMAT);
    CHECK_EQ_INT(ep_wfdb_decode_signals(rec, "r.dat", f, 0, &err),
                 EP_EFORMAT);
    CHECK_MSG(strstr(err.msg, "r.dat: no samples after byte offset 0") !=
              NULL, "%s", err.msg);
    ep_wfdb_free_record(rec);
}

static void test_read_errors(void)
{
    ep_record *rec = NULL;
    ep_annotations *ann = NULL;
    ep_error err = {0};

    CHECK_EQ_INT(ep_wfdb_read_record("no/such/record", &rec, &err),
                 EP_EIO);
    CHECK(strstr(err.msg, "no/such/record.hea") != NULL);
    CHECK_EQ_INT(ep_wfdb_read_annotations("no/such/record", "atr", &ann,
                                          &err), EP_EIO);
    CHECK(rec == NULL && ann == NULL);
}

/* Write text to dir/name. */
static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    REQUIRE(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* Files that are not regular files are refused by what they are, before
 * any reading: a directory used to give a bare "cannot read", /dev/zero
 * made the reader grow its buffer to 2 GiB, a FIFO blocked. */
static void test_read_not_regular(void)
{
    char dir[] = "/tmp/test_wfdb.XXXXXX", path[512], rec_path[512];
    ep_record *rec = NULL;
    ep_annotations *ann = NULL;
    ep_error err = {0};

    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(rec_path, sizeof rec_path, "%s/r", dir);

    /* Signal file a directory, then /dev/zero. */
    write_text(dir, "r.hea", "r 1 360\nd.dat 16\n");
    snprintf(path, sizeof path, "%s/d.dat", dir);
    REQUIRE(mkdir(path, 0700) == 0);
    CHECK_EQ_INT(ep_wfdb_read_record(rec_path, &rec, &err), EP_EIO);
    CHECK_MSG(strstr(err.msg, "d.dat is a directory") != NULL, "%s",
              err.msg);
    rmdir(path);
    REQUIRE(symlink("/dev/zero", path) == 0);
    CHECK_EQ_INT(ep_wfdb_read_record(rec_path, &rec, &err), EP_EIO);
    CHECK_MSG(strstr(err.msg, "not a regular file") == NULL &&
              strstr(err.msg, "device, FIFO or socket") != NULL, "%s",
              err.msg);
    unlink(path);

    /* Header a FIFO (no writer: must not block); annotations a symlink
     * loop. */
    snprintf(path, sizeof path, "%s/f.hea", dir);
    REQUIRE(mkfifo(path, 0600) == 0);
    snprintf(rec_path, sizeof rec_path, "%s/f", dir);
    CHECK_EQ_INT(ep_wfdb_read_record(rec_path, &rec, &err), EP_EIO);
    CHECK(strstr(err.msg, "f.hea is a device, FIFO or socket") != NULL);
    unlink(path);
    snprintf(path, sizeof path, "%s/r.atr", dir);
    REQUIRE(symlink(path, path) == 0);
    snprintf(rec_path, sizeof rec_path, "%s/r", dir);
    CHECK_EQ_INT(ep_wfdb_read_annotations(rec_path, "atr", &ann, &err),
                 EP_EIO);
    CHECK(strstr(err.msg, "cannot open") != NULL);
    unlink(path);

    /* An annotation file over 64 MiB (sparse here) is refused by its size
     * before a byte is read: its items would take 16 times as much. */
    snprintf(path, sizeof path, "%s/r.big", dir);
    {
        FILE *f = fopen(path, "wb");

        REQUIRE(f != NULL);
        REQUIRE(ftruncate(fileno(f), ((off_t)1 << 26) + 2) == 0);
        fclose(f);
    }
    CHECK_EQ_INT(ep_wfdb_read_annotations(rec_path, "big", &ann, &err),
                 EP_ERANGE);
    CHECK_MSG(strstr(err.msg, "r.big has 67108866 bytes, more than the "
                     "67108864 accepted") != NULL, "%s", err.msg);
    unlink(path);

    /* An annotator that is a path, not an extension. */
    CHECK_EQ_INT(ep_wfdb_read_annotations(rec_path, "../r.atr", &ann, &err),
                 EP_EINVAL);
    CHECK(strstr(err.msg, "without '/'") != NULL);
    CHECK_EQ_INT(ep_wfdb_read_annotations(rec_path, "", &ann, &err),
                 EP_EINVAL);
    CHECK(rec == NULL && ann == NULL);

    snprintf(path, sizeof path, "%s/r.hea", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- hand-made annotation files ---------------------------------------- */

typedef struct abuf {
    unsigned char b[16384];
    size_t n;
} abuf;

static void put_word(abuf *a, unsigned code, unsigned data)
{
    unsigned w = code * 1024 + data;

    a->b[a->n++] = (unsigned char)(w % 256);
    a->b[a->n++] = (unsigned char)(w / 256);
}

static void put_skip(abuf *a, long long interval)
{
    unsigned long long u = (unsigned long long)interval & 0xffffffffULL;

    /* The high 16-bit half first, each half little-endian. */
    put_word(a, 59, 0);
    a->b[a->n++] = (unsigned char)((u >> 16) & 0xff);
    a->b[a->n++] = (unsigned char)((u >> 24) & 0xff);
    a->b[a->n++] = (unsigned char)(u & 0xff);
    a->b[a->n++] = (unsigned char)((u >> 8) & 0xff);
}

static void put_aux(abuf *a, const char *text, size_t n)
{
    put_word(a, 63, (unsigned)n);
    memcpy(a->b + a->n, text, n);
    a->n += n;
    if (n % 2)
        a->b[a->n++] = 0;
}

static void test_annotation_codes(void)
{
    abuf a = {{0}, 0};
    ep_annotations *ann = NULL;
    ep_error err = {0};
    int rc;

    put_word(&a, 1, 100);             /* N at 100 */
    put_word(&a, 62, 1);              /* CHN 1 */
    put_word(&a, 60, 5);              /* NUM 5 */
    put_word(&a, 5, 23);              /* V at 123, inherits chan 1 num 5 */
    put_word(&a, 61, 1023);           /* SUB -1 (low byte 0xff) */
    put_skip(&a, 100000);             /* long gap */
    put_word(&a, 28, 0);              /* + at 100123 */
    put_aux(&a, "(AFIB", 5);          /* odd length, one pad byte */
    put_word(&a, 60, 0x3fe);          /* NUM -2 */
    put_word(&a, 14, 1023);           /* ~ at 101146 */
    put_word(&a, 62, 0);              /* CHN 0 */
    put_skip(&a, -101146);            /* back to time 0 */
    put_word(&a, 22, 0);              /* " at 0 */
    put_aux(&a, "ab", 2);
    put_word(&a, 0, 0);
    a.b[a.n++] = 0x55;                /* junk after the end is ignored */

    /* The file's order, with the last one (at 0, after the negative
     * SKIP) moved to the front: items come in time order. */
    rc = ep_wfdb_parse_annotations(a.b, a.n, "t.atr", &ann, &err);
    REQUIRE(rc == 0);
    REQUIRE(ann->count == 5);
    CHECK_EQ_INT(ann->items[0].sample, 0);
    CHECK(ann->items[0].aux && strcmp(ann->items[0].aux, "ab") == 0);
    CHECK_EQ_INT(ann->items[1].sample, 100);
    CHECK_EQ_INT(ann->items[1].code, 1);
    CHECK_EQ_INT(ann->items[1].chan, 1);
    CHECK_EQ_INT(ann->items[1].num, 5);
    CHECK_EQ_INT(ann->items[2].sample, 123);
    CHECK_EQ_INT(ann->items[2].code, 5);
    CHECK_EQ_INT(ann->items[2].chan, 1);
    CHECK_EQ_INT(ann->items[2].num, 5);
    CHECK_EQ_INT(ann->items[2].subtype, -1);
    CHECK_EQ_INT(ann->items[3].sample, 100123);
    CHECK_EQ_INT(ann->items[3].subtype, 0);
    CHECK(ann->items[3].aux && strcmp(ann->items[3].aux, "(AFIB") == 0);
    CHECK_EQ_INT(ann->items[3].num, -2);
    CHECK_EQ_INT(ann->items[4].sample, 101146);
    CHECK_EQ_INT(ann->items[4].num, -2);
    CHECK_EQ_INT(ann->items[4].chan, 0);
    CHECK(ann->items[4].aux == NULL);
    ep_wfdb_free_annotations(ann);
}

/* A file of 1,500 annotations in runs, with negative SKIPs back into
 * earlier runs and many at one sample; each tagged by its NUM (file
 * position mod 100) and code.  The parse must equal the file's list
 * sorted by a naive stable insertion sort. */
static void test_annotation_sorting(void)
{
    enum { N = 1500 };
    static abuf a;
    static ep_annotation want[N];
    ep_annotations *ann = NULL;
    ep_error err = {0};
    unsigned long long lcg = 12345;
    long long time = 0;
    size_t i, j;
    int rc;

    a.n = 0;
    for (i = 0; i < N; i++) {
        unsigned step, code;

        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        step = (unsigned)(lcg >> 33) % 4 == 0 ? 0 : (unsigned)(lcg >> 40) % 50;
        code = 1 + (unsigned)(lcg >> 20) % 13;
        if (i % 97 == 96 && time > 500) {   /* back into an earlier run */
            long long back = 1 + (long long)((lcg >> 24) % 500);
            put_skip(&a, -back - (long long)step);
            time -= back + (long long)step;
        }
        put_word(&a, code, step);
        time += step;
        put_word(&a, 60, (unsigned)(i % 100));
        want[i].sample = time;
        want[i].code = (int)code;
        want[i].num = (int)(i % 100);
    }
    put_word(&a, 0, 0);
    REQUIRE(a.n < sizeof a.b);

    /* Naive stable insertion sort of the expected list. */
    for (i = 1; i < N; i++) {
        ep_annotation x = want[i];

        for (j = i; j > 0 && want[j - 1].sample > x.sample; j--)
            want[j] = want[j - 1];
        want[j] = x;
    }
    rc = ep_wfdb_parse_annotations(a.b, a.n, "sort.atr", &ann, &err);
    REQUIRE(rc == 0);
    REQUIRE(ann->count == N);
    for (i = 0; i < N; i++)
        if (ann->items[i].sample != want[i].sample ||
            ann->items[i].code != want[i].code ||
            ann->items[i].num != want[i].num)
            break;
    CHECK_EQ_INT(i, N);
    ep_wfdb_free_annotations(ann);
}

static void annot_fails(const abuf *a, const char *where)
{
    ep_annotations *ann = NULL;
    ep_error err = {0};
    int rc = ep_wfdb_parse_annotations(a->b, a->n, "t.atr", &ann, &err);

    CHECK_EQ_INT(rc, EP_EFORMAT);
    CHECK(ann == NULL);
    CHECK_MSG(strstr(err.msg, where) != NULL, "'%s' not in '%s'", where,
              err.msg);
}

static void test_annotation_rejects(void)
{
    abuf a = {{0}, 0};

    /* Empty, odd length, no end word. */
    a.n = 0;
    annot_fails(&a, "t.atr: truncated at byte offset 0");
    a.n = 0;
    put_word(&a, 1, 5);
    a.n++;
    annot_fails(&a, "truncated at byte offset 2");
    a.n = 0;
    put_word(&a, 1, 5);
    annot_fails(&a, "end word");

    /* SKIP and AUX cut short. */
    a.n = 0;
    put_skip(&a, 5);
    a.n -= 1;
    annot_fails(&a, "interval of a SKIP");
    a.n = 0;
    put_word(&a, 1, 5);
    put_aux(&a, "abcde", 5);
    a.n -= 2;
    annot_fails(&a, "AUX");

    /* Modifiers before any annotation, undefined codes, negative time. */
    a.n = 0;
    put_word(&a, 60, 1);
    put_word(&a, 0, 0);
    annot_fails(&a, "NUM at byte offset 0 comes before any annotation");
    a.n = 0;
    put_word(&a, 50, 1);
    put_word(&a, 0, 0);
    annot_fails(&a, "code 50 is not defined");
    a.n = 0;
    put_word(&a, 0, 7);
    put_word(&a, 0, 0);
    annot_fails(&a, "code 0");
    a.n = 0;
    put_word(&a, 1, 5);
    put_skip(&a, -6);
    put_word(&a, 0, 0);
    annot_fails(&a, "SKIP at byte offset 2");
}

static void test_code_table(void)
{
    const char *beats = "NLRaVFJASEj/Q?!Bfenr";
    int n_beat = 0;

    /* Every code round-trips through its mnemonic. */
    for (int c = 1; c <= 49; c++)
        CHECK_EQ_INT(ep_wfdb_symbol_code(ep_wfdb_code_symbol(c)), c);
    CHECK(strcmp(ep_wfdb_code_symbol(28), "+") == 0);
    CHECK(strcmp(ep_wfdb_code_symbol(34), "e") == 0);
    CHECK(strcmp(ep_wfdb_code_symbol(38), "f") == 0);
    CHECK(strcmp(ep_wfdb_code_symbol(22), "\"") == 0);
    CHECK(strcmp(ep_wfdb_code_symbol(42), "[42]") == 0);
    CHECK(strcmp(ep_wfdb_code_symbol(64), "?") == 0);
    CHECK_EQ_INT(ep_wfdb_symbol_code("Z"), EP_ENOTFOUND);

    /* WFDB's isqrs codes, by mnemonic (ecgmap.h). */
    for (const char *p = beats; *p; p++) {
        char sym[2] = {*p, 0};

        CHECK_MSG(ep_wfdb_is_beat(ep_wfdb_symbol_code(sym)), "%s", sym);
    }
    for (int c = 0; c <= 63; c++)
        n_beat += ep_wfdb_is_beat(c);
    CHECK_EQ_INT(n_beat, (int)strlen(beats));
}

/* ---- the shipped excerpt ------------------------------------------------ */

static void check_excerpt(const char *name)
{
    const char *dir = getenv("EXCERPT");
    char full_path[512], cut_path[512];
    ep_record *full = NULL, *cut = NULL;
    ep_annotations *fa = NULL, *ca = NULL;
    ep_error err = {0};
    size_t k = 0, bad = 0;
    int rc;

    REQUIRE(dir != NULL);
    record_path(full_path, sizeof full_path, mitdb_dir(), name);
    record_path(cut_path, sizeof cut_path, dir, name);
    rc = ep_wfdb_read_record(full_path, &full, &err);
    REQUIRE(rc == 0);
    rc = ep_wfdb_read_record(cut_path, &cut, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    REQUIRE(cut != NULL);
    CHECK_EQ_INT(cut->n_samples, 3 * 60 * 360);
    for (int s = 0; s < 2; s++) {
        CHECK_EQ_INT(cut->signals[s].checksum_ok, 1);
        CHECK(strcmp(cut->signals[s].name, full->signals[s].name) == 0);
        for (int64_t t = 0; t < cut->n_samples; t++)
            bad += cut->samples[s][t] != full->samples[s][t];
    }
    CHECK_EQ_INT(bad, 0);

    /* The excerpt's annotations are the full record's below 64800. */
    rc = ep_wfdb_read_annotations(full_path, "atr", &fa, &err);
    REQUIRE(rc == 0);
    rc = ep_wfdb_read_annotations(cut_path, "atr", &ca, &err);
    REQUIRE(rc == 0);
    for (size_t i = 0; i < fa->count; i++) {
        const ep_annotation *x = &fa->items[i];

        if (x->sample >= cut->n_samples)
            continue;
        if (k >= ca->count) {
            k++;
            continue;
        }
        bad += x->sample != ca->items[k].sample ||
               x->code != ca->items[k].code ||
               x->subtype != ca->items[k].subtype ||
               x->num != ca->items[k].num || x->chan != ca->items[k].chan ||
               (x->aux == NULL) != (ca->items[k].aux == NULL) ||
               (x->aux && strcmp(x->aux, ca->items[k].aux) != 0);
        k++;
    }
    CHECK_EQ_INT(k, ca->count);
    CHECK_EQ_INT(bad, 0);
    ep_wfdb_free_annotations(fa);
    ep_wfdb_free_annotations(ca);
    ep_wfdb_free_record(full);
    ep_wfdb_free_record(cut);
}

/* Beats must lie inside the signal, notes need not: N (1) at 5 and a
 * rhythm change (+, 28) at 12 in signals of 12 and of 5 samples. */
static void test_beats_within(void)
{
    ep_annotation items[2] = {{.sample = 5, .code = 1},
                              {.sample = 12, .code = 28}};
    ep_annotations ann = {items, 2};
    ep_error err;

    CHECK_EQ_INT(ep_wfdb_check_beats(&ann, 12, &err), EP_OK);
    CHECK_EQ_INT(ep_wfdb_check_beats(&ann, 5, &err), EP_EFORMAT);
    CHECK(strstr(err.msg, "annotation 1 of 2, a beat at sample 5, is "
                 "outside the signal (0..4)") != NULL);
}

/* One beat per sample: N (1) and V (5) both at 7 are refused, even with
 * a note (+, 28) at 7 between them; a note beside a beat is not. */
static void test_beats_twice(void)
{
    ep_annotation items[4] = {{.sample = 3, .code = 1},
                              {.sample = 7, .code = 1},
                              {.sample = 7, .code = 28},
                              {.sample = 7, .code = 5}};
    ep_annotations ann = {items, 3};
    ep_error err;

    CHECK_EQ_INT(ep_wfdb_check_beats(&ann, 12, &err), EP_OK);
    ann.count = 4;
    CHECK_EQ_INT(ep_wfdb_check_beats(&ann, 12, &err), EP_EFORMAT);
    CHECK_MSG(strstr(err.msg, "annotation 4 of 4: two beats at sample 7 "
                     "(N and V)") != NULL, "%s", err.msg);
}

int main(void)
{
    test_beats_within();
    test_beats_twice();
    test_header_fields();
    test_header_rejects();
    test_decode_formats();
    test_units_to_mv();
    test_length_from_file();
    test_read_errors();
    test_read_not_regular();
    test_annotation_codes();
    test_annotation_sorting();
    test_annotation_rejects();
    test_code_table();
    test_all_records_decode();
    test_record_100_reference();
    test_checksum_mismatch_detected();
    test_published_beat_counts();
    test_record_100_positions();
    check_excerpt("100");
    check_excerpt("208");
    return check_exit();
}
