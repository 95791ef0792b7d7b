/*
 * bench_wfdb.c - how fast the WFDB reader decodes the MIT-BIH Arrhythmia
 * Database: all 48 records (header, format-212 signals with checksum
 * checks, .atr annotations), best of 5 passes, wall-clock time.
 *
 *   bench_wfdb [MITDB_DIR]     (default ../shared/data/mitdb)
 */
#include <stdio.h>
#include <time.h>

#include "ecgprune/ep_wfdb.h"

static const char *const records[48] = {
    "100", "101", "102", "103", "104", "105", "106", "107", "108", "109",
    "111", "112", "113", "114", "115", "116", "117", "118", "119", "121",
    "122", "123", "124", "200", "201", "202", "203", "205", "207", "208",
    "209", "210", "212", "213", "214", "215", "217", "219", "220", "221",
    "222", "223", "228", "230", "231", "232", "233", "234",
};

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One pass over the database; returns samples decoded or -1. */
static long long read_all(const char *dir)
{
    long long samples = 0;
    char path[1024];

    for (int i = 0; i < 48; i++) {
        ep_record *rec;
        ep_annotations *ann;
        ep_error err = {0};

        snprintf(path, sizeof path, "%s/%s", dir, records[i]);
        if (ep_wfdb_read_record(path, &rec, &err) != 0 ||
            ep_wfdb_read_annotations(path, "atr", &ann, &err) != 0) {
            fprintf(stderr, "bench_wfdb: %s\n", err.msg);
            return -1;
        }
        samples += rec->n_samples * rec->n_signals;
        ep_wfdb_free_record(rec);
        ep_wfdb_free_annotations(ann);
    }
    return samples;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "../shared/data/mitdb";
    double best = 1e30;
    long long samples = 0;

    for (int pass = 0; pass < 5; pass++) {
        double t0 = now(), dt;

        samples = read_all(dir);
        if (samples < 0)
            return 1;
        dt = now() - t0;
        if (dt < best)
            best = dt;
        fprintf(stderr, "pass %d/5: %.3f s\n", pass + 1, dt);
    }
    printf("48 records, %lld samples: %.3f s (best of 5), %.0f Msamples/s, "
           "%.0f ms per 30-min record\n", samples, best,
           (double)samples / best / 1e6, best / 48 * 1e3);
    return 0;
}
