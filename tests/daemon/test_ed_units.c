/*
 * test_ed_units.c - unit tests of the daemon's self-contained modules:
 * listen-address parsing and the configuration file (ed_config), value
 * quoting in log lines (ed_log), schema migration (also of a store an
 * older daemon left) and statement helpers of the store (ed_store), the
 * warnings of a finished job (ed_warnings), UTF-8 repair (ed_utf8).  Expected values are worked
 * out by hand.
 */
#include <sqlite3.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "ed_config.h"
#include "ed_jobs.h"
#include "ed_log.h"
#include "ed_schema.h"
#include "ed_store.h"
#include "ed_utf8.h"
#include "ed_warnings.h"

static void test_listen(void)
{
    char addr[64] = "unchanged";
    int port = -1;

    CHECK_EQ_INT(ed_config_parse_listen("127.0.0.1:8080", addr, sizeof addr,
                                        &port), 0);
    CHECK(strcmp(addr, "127.0.0.1") == 0);
    CHECK_EQ_INT(port, 8080);
    CHECK_EQ_INT(ed_config_parse_listen("[::1]:0", addr, sizeof addr,
                                        &port), 0);
    CHECK(strcmp(addr, "::1") == 0);
    CHECK_EQ_INT(port, 0);

    /* A bare port keeps the address. */
    CHECK_EQ_INT(ed_config_parse_listen("9000", addr, sizeof addr, &port),
                 0);
    CHECK(strcmp(addr, "::1") == 0);
    CHECK_EQ_INT(port, 9000);

    /* Names, out-of-range ports, junk. */
    CHECK(ed_config_parse_listen("localhost:80", addr, sizeof addr,
                                 &port) < 0);
    CHECK(ed_config_parse_listen("127.0.0.1:65536", addr, sizeof addr,
                                 &port) < 0);
    CHECK(ed_config_parse_listen("127.0.0.1:", addr, sizeof addr, &port) <
          0);
    CHECK(ed_config_parse_listen("127.0.0.1:80x", addr, sizeof addr,
                                 &port) < 0);
    CHECK(ed_config_parse_listen("[::1:80", addr, sizeof addr, &port) < 0);
    CHECK(ed_config_parse_listen("256.0.0.1:80", addr, sizeof addr,
                                 &port) < 0);
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void test_config(const char *dir)
{
    char path[512], err[512];
    char *argv[8];
    ed_config cfg;

    /* No file, no options: loopback and ./ecgprune-data. */
    argv[0] = "ecgpruned";
    CHECK_EQ_INT(ed_config_from_args(&cfg, 1, argv, err, sizeof err), 0);
    CHECK(strcmp(cfg.listen_addr, "127.0.0.1") == 0);
    CHECK_EQ_INT(cfg.port, 8642);
    CHECK(strcmp(cfg.data_dir, "./ecgprune-data") == 0);

    /* File values, then options override them. */
    snprintf(path, sizeof path, "%s/c.json", dir);
    REQUIRE(write_text(path, "{\"listen\": \"[::1]:7000\", \"workers\": 4,"
                       " \"limits\": {\"max_running_jobs\": 9},"
                       " \"data_dir\": \"/srv/x\"}") == 0);
    argv[1] = "--config";
    argv[2] = path;
    argv[3] = "--workers";
    argv[4] = "3";
    CHECK_EQ_INT(ed_config_from_args(&cfg, 5, argv, err, sizeof err), 0);
    CHECK(strcmp(cfg.listen_addr, "::1") == 0);
    CHECK_EQ_INT(cfg.port, 7000);
    CHECK_EQ_INT(cfg.workers, 3);
    /* 9 running jobs on 3 workers leave none to inference: capped at 2. */
    CHECK_EQ_INT(cfg.max_running_jobs, 2);
    CHECK(strcmp(cfg.data_dir, "/srv/x") == 0);

    /* Errors name the key or option. */
    REQUIRE(write_text(path, "{\"workers\": 0}") == 0);
    CHECK(ed_config_from_args(&cfg, 3, argv, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "key \"workers\": expected an integer in 1..128") != NULL,
              "%s", err);
    REQUIRE(write_text(path, "{\"lisen\": \"x\"}") == 0);
    CHECK(ed_config_from_args(&cfg, 3, argv, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "unknown key \"lisen\" (known: listen, data_dir,")
              != NULL, "%s", err);
    REQUIRE(write_text(path, "{\"limits\": {\"max_sample\": 1}}") == 0);
    CHECK(ed_config_from_args(&cfg, 3, argv, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, ": limits: unknown key \"max_sample\" (known: "
                     "max_body_bytes, max_pending_bytes, max_samples,")
              != NULL && strncmp(err, path, strlen(path)) == 0, "%s", err);
    REQUIRE(write_text(path, "{\"listen\": \"localhost:80\"}") == 0);
    CHECK(ed_config_from_args(&cfg, 3, argv, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "expected ADDR:PORT with a numeric address")
              != NULL, "%s", err);
    REQUIRE(write_text(path, "{\"tls\": {\"cert\": \"a.pem\"}}") == 0);
    CHECK(ed_config_from_args(&cfg, 3, argv, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "cert and key must be given together") != NULL,
              "%s", err);
    argv[1] = "--bogus";
    argv[2] = "1";
    CHECK(ed_config_from_args(&cfg, 3, argv, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "unknown option --bogus") != NULL, "%s", err);
}

/* Advice: none on loopback with two workers; one worker; an outside
 * address without tokens, then with tokens but without TLS, then with
 * both. */
static void test_advice(void)
{
    char advice[4][ED_CONFIG_ADVICE_MAX];
    ed_config cfg;

    ed_config_defaults(&cfg);
    CHECK_EQ_INT(ed_config_advice(&cfg, advice, 4), 0);
    snprintf(cfg.listen_addr, sizeof cfg.listen_addr, "::1");
    CHECK_EQ_INT(ed_config_advice(&cfg, advice, 4), 0);
    cfg.workers = 1;
    CHECK_EQ_INT(ed_config_advice(&cfg, advice, 4), 1);
    CHECK(strncmp(advice[0], "workers 1: ", 11) == 0);
    snprintf(cfg.listen_addr, sizeof cfg.listen_addr, "10.0.0.5");
    CHECK_EQ_INT(ed_config_advice(&cfg, advice, 1), 1);
    CHECK_EQ_INT(ed_config_advice(&cfg, advice, 4), 2);
    CHECK(strstr(advice[1], "on 10.0.0.5 without tokens") != NULL);
    cfg.workers = 2;
    cfg.n_tokens = 1;
    CHECK_EQ_INT(ed_config_advice(&cfg, advice, 4), 1);
    CHECK(strstr(advice[0], "without tls") != NULL);
    snprintf(cfg.tls_cert, sizeof cfg.tls_cert, "cert.pem");
    CHECK_EQ_INT(ed_config_advice(&cfg, advice, 4), 0);

    /* Loopback however written (no advice); its neighbours are not. */
    {
        static const struct { const char *addr; int advice; } cases[] = {
            {"127.9.8.7", 0}, {"0:0:0:0:0:0:0:1", 0},
            {"::ffff:127.0.0.1", 0}, {"::ffff:10.0.0.1", 1},
            {"128.0.0.1", 1}, {"::2", 1}};
        size_t i;

        cfg.n_tokens = 0;
        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            snprintf(cfg.listen_addr, sizeof cfg.listen_addr, "%s",
                     cases[i].addr);
            CHECK_MSG(ed_config_advice(&cfg, advice, 4) == cases[i].advice,
                      "%s", cases[i].addr);
        }
    }
}

static void test_quote(void)
{
    char buf[32];

    CHECK(strcmp(ed_log_quote(buf, sizeof buf, "a b"), "\"a b\"") == 0);
    CHECK(strcmp(ed_log_quote(buf, sizeof buf, "say \"x\"\n"),
                 "\"say \\\"x\\\" \"") == 0);
    /* Truncated to fit, still closed. */
    CHECK(strcmp(ed_log_quote(buf, 8, "abcdefghij"), "\"abcd\"") == 0);
    /* Bytes that are not UTF-8 become '?', DEL a blank; characters are
     * kept whole or left out at the end of the buffer. */
    CHECK(strcmp(ed_log_value(buf, sizeof buf, "a\xff" "b"), "\"a?b\"") == 0);
    CHECK(strcmp(ed_log_value(buf, sizeof buf, "x\x7fy"), "\"x y\"") == 0);
    CHECK(strcmp(ed_log_value(buf, sizeof buf, "caf\xc3\xa9"),
                 "caf\xc3\xa9") == 0);
    CHECK(strcmp(ed_log_quote(buf, 6, "\xc3\xa9\xc3\xa9\xc3\xa9"),
                 "\"\xc3\xa9\"") == 0);
    CHECK(strcmp(ed_log_quote(buf, 7, "\xc3\xa9\xc3\xa9\xc3\xa9"),
                 "\"\xc3\xa9\xc3\xa9\"") == 0);
}

static void test_store(const char *dir)
{
    char err[256], sub[512];
    ed_store *s = NULL;
    unsigned char *blob = NULL;
    size_t len = 0;
    int found = 0;
    json_t *rows;

    snprintf(sub, sizeof sub, "%s/data", dir);
    REQUIRE(ed_store_open(sub, &s, err, sizeof err) == 0);
    CHECK_EQ_INT(ed_store_schema_version(s), ed_schema_count);
    rows = ed_store_row(s, &found, "PRAGMA journal_mode", NULL);
    CHECK(rows && strcmp(json_string_value(json_object_get(
                             rows, "journal_mode")), "wal") == 0);
    json_decref(rows);
    CHECK_EQ_INT(ed_store_exec(s, "INSERT INTO batches (subject, "
                               "sampling_rate, lead, n_samples, created_at, "
                               "samples) VALUES (?, ?, ?, ?, ?, ?)", "tdtitb",
                               "p1", 360.0, "MLII", (int64_t)2, "now",
                               (const void *)"\1\2\3", (size_t)3), 1);
    rows = ed_store_rows(s, "SELECT id, subject, sampling_rate FROM batches",
                         NULL);
    REQUIRE(rows != NULL);
    CHECK_EQ_INT(json_array_size(rows), 1);
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(rows, 0),
                                                   "subject")), "p1") == 0);
    json_decref(rows);
    CHECK_EQ_INT(ed_store_blob(s, &blob, &len, "SELECT samples FROM batches "
                               "WHERE id = ?", "i", (int64_t)1), 1);
    CHECK_EQ_INT(len, 3);
    CHECK(blob && blob[0] == 1 && blob[2] == 3);
    free(blob);
    ed_store_close(s);

    /* Reopening applies nothing and keeps the row. */
    REQUIRE(ed_store_open(sub, &s, err, sizeof err) == 0);
    CHECK_EQ_INT(ed_store_schema_version(s), ed_schema_count);
    CHECK_EQ_INT(ed_store_int(s, &found, "SELECT count(*) FROM batches",
                              NULL), 1);
    CHECK_EQ_INT(ed_store_exec(s, "DELETE FROM batches", NULL), 1);
    /* AUTOINCREMENT: a new row does not reuse id 1. */
    CHECK_EQ_INT(ed_store_exec(s, "INSERT INTO batches (subject, "
                               "sampling_rate, lead, n_samples, created_at, "
                               "samples) VALUES ('p2', 360, 'x', 0, 'now', "
                               "x'00')", NULL), 1);
    CHECK_EQ_INT(ed_store_last_id(s), 2);

    /* While it is open, the directory is refused to a second opener
     * (flock locks each open of the lock file, even in one process), with
     * the holder's pid; once closed, it opens again. */
    {
        ed_store *second = NULL;
        char want[64];

        snprintf(want, sizeof want, "in use by another ecgpruned (pid %d)",
                 (int)getpid());
        CHECK_EQ_INT(ed_store_open(sub, &second, err, sizeof err), -1);
        CHECK_MSG(strstr(err, want) != NULL, "%s", err);
        ed_store_close(s);
        REQUIRE(ed_store_open(sub, &second, err, sizeof err) == 0);
        ed_store_close(second);
    }
}

/* A pruned model's name: the parent's, cut to leave room for the job's
 * suffix within 64 characters. */
static void test_result_name(void)
{
    char name[128], parent[65];

    ed_jobs_result_name(name, sizeof name, "default", 7);
    CHECK(strcmp(name, "default-job7") == 0);
    memset(parent, 'a', 64);
    parent[64] = '\0';
    ed_jobs_result_name(name, sizeof name, parent, 12345);
    CHECK_EQ_INT((int)strlen(name), 64);
    CHECK(strncmp(name, parent, 55) == 0 &&
          strcmp(name + 55, "-job12345") == 0);
}

/* A store left at schema version 1 by an older daemon, with one model,
 * is brought up to date on open: the model keeps its row and has no
 * subjects (it was never tied to one). */
static void test_migration(const char *dir)
{
    char err[256], sub[512], path[600], *sql;
    const ed_schema_file *first = &ed_schema_files[0];
    ed_store *s = NULL;
    sqlite3 *db = NULL;
    json_t *row;
    size_t n = 1, i;
    int found = 0;

    REQUIRE(ed_schema_count >= 2);
    snprintf(sub, sizeof sub, "%s/old", dir);
    snprintf(path, sizeof path, "%s/ecgpruned.sqlite3", sub);
    REQUIRE(mkdir(sub, 0700) == 0);
    for (i = 0; first->lines[i]; i++)
        n += strlen(first->lines[i]);
    sql = calloc(n, 1);
    REQUIRE(sql != NULL);
    for (i = 0; first->lines[i]; i++)
        strcat(sql, first->lines[i]);
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "PRAGMA user_version = 1; INSERT INTO models "
                         "(name, sha256, size_bytes, architecture, "
                         "parameters, macs_per_second, created_at, weights) "
                         "VALUES ('old', 'x', 1, '{}', 1, 1, 'now', x'00')",
                         NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    free(sql);

    REQUIRE(ed_store_open(sub, &s, err, sizeof err) == 0);
    CHECK_EQ_INT(ed_store_schema_version(s), ed_schema_count);
    row = ed_store_row(s, &found, "SELECT name, subjects FROM models", NULL);
    CHECK(found && row != NULL);
    CHECK(strcmp(json_string_value(json_object_get(row, "name")), "old") ==
          0);
    CHECK(json_is_null(json_object_get(row, "subjects")));
    json_decref(row);
    ed_store_close(s);
}

/* Character lengths from the UTF-8 table (RFC 3629), and the repairs. */
static void test_utf8(void)
{
    char scrub[] = "a\xff" "b\xc3", cut[] = "ab\xc3\xa9\xe2\x82";
    char whole[] = "p\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";

    CHECK_EQ_INT((int)ed_utf8_length((const unsigned char *)"a"), 1);
    CHECK_EQ_INT((int)ed_utf8_length((const unsigned char *)"\xc3\xa9"), 2);
    CHECK_EQ_INT((int)ed_utf8_length((const unsigned char *)"\xe2\x82\xac"),
                 3);
    CHECK_EQ_INT((int)ed_utf8_length(
                     (const unsigned char *)"\xf0\x9f\x98\x80"), 4);
    /* Overlong forms, a surrogate, past U+10FFFF, a lone continuation
     * byte, a sequence cut by the end of the string. */
    CHECK_EQ_INT((int)ed_utf8_length((const unsigned char *)"\xc0\x80"), 0);
    CHECK_EQ_INT((int)ed_utf8_length((const unsigned char *)"\xe0\x80\x80"),
                 0);
    CHECK_EQ_INT((int)ed_utf8_length((const unsigned char *)"\xed\xa0\x80"),
                 0);
    CHECK_EQ_INT((int)ed_utf8_length(
                     (const unsigned char *)"\xf4\x90\x80\x80"), 0);
    CHECK_EQ_INT((int)ed_utf8_length((const unsigned char *)"\x80"), 0);
    CHECK_EQ_INT((int)ed_utf8_length((const unsigned char *)"\xe2\x82"), 0);

    ed_utf8_scrub(scrub);
    CHECK(strcmp(scrub, "a?b?") == 0);
    ed_utf8_cut(cut);
    CHECK(strcmp(cut, "ab\xc3\xa9") == 0);
    ed_utf8_scrub(whole);
    CHECK(strcmp(whole, "p\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80") == 0);
}

/* The single warning text in w, or "" when there is none. */
static const char *only_warning(json_t *w)
{
    return json_array_size(w) == 1 ? json_string_value(json_array_get(w, 0))
                                   : "";
}

/* Held-out scores of record 208's last 25 minutes: full detection, N
 * (1500 beats), S (2) and V (900) with the F1 given. */
static json_t *scores_nsv(double macro_f1, double f1_n, double f1_s,
                          double f1_v)
{
    return json_pack("{s:f, s:f, s:i, s:i, s:{s:{s:f, s:i}, s:{s:f, s:i}, "
                     "s:{s:f, s:i}}}", "det_se", 1.0, "macro_f1", macro_f1,
                     "det_tp", 100, "det_fn", 0, "classes", "N", "f1", f1_n,
                     "support", 1500, "S", "f1", f1_s, "support", 2, "V",
                     "f1", f1_v, "support", 900);
}

static void test_warnings(void)
{
    size_t counts[EP_AAMI_COUNT] = {0};
    json_t *w = json_array(), *before, *after;

    /* Calibration: no annotations; enough rare beats; too few S and F. */
    ed_warn_calibration(w, counts, 0);
    CHECK(strstr(only_warning(w), "no beat annotations") != NULL);
    json_array_clear(w);
    counts[EP_AAMI_N] = 300;
    counts[EP_AAMI_S] = 5;
    counts[EP_AAMI_V] = 40;
    counts[EP_AAMI_F] = 5;
    ed_warn_calibration(w, counts, 1);
    CHECK_EQ_INT((int)json_array_size(w), 0);
    counts[EP_AAMI_S] = 4;
    counts[EP_AAMI_F] = 0;
    ed_warn_calibration(w, counts, 1);
    CHECK_MSG(strstr(only_warning(w), "fewer than 5 beats of S (4), F (0);")
              != NULL, "%s", only_warning(w));
    json_array_clear(w);

    /* Refits: two of three groups short of rows, the fewer named. */
    {
        ep_prune_group_report g[3] = {{.producer = "enc0.conv1"},
                                      {.producer = "enc3.conv2"},
                                      {.producer = "dec1.conv1"}};
        ep_prune_result res = {.n_groups = 3, .groups = g};

        ed_warn_refits(w, &res);
        CHECK_EQ_INT((int)json_array_size(w), 0);
        g[1].underdetermined = 2;
        g[1].min_rows_per_unknown = 0.4;
        g[2].underdetermined = 1;
        g[2].min_rows_per_unknown = 3.5;
        ed_warn_refits(w, &res);
        CHECK_MSG(strstr(only_warning(w), "2 of 3 channel groups were "
                         "refitted from fewer than 10 calibration rows per "
                         "unknown (fewest: 0.4, group enc3.conv2)") != NULL,
                  "%s", only_warning(w));
        json_array_clear(w);
    }

    /* Held out: nothing; a 0.03 fall of detection Se and V F1 1 -> 0.85
     * (support 10) are reported, and so the macro-F1 of the classes with
     * 5 beats or more (V alone), but F1 of F with support 4 is not. */
    ed_warn_holdout(w, NULL, NULL, 0);
    CHECK(strstr(only_warning(w), "unchecked") != NULL);
    json_array_clear(w);
    before = json_pack("{s:f, s:f, s:i, s:i, s:{s:{s:f, s:i}, "
                       "s:{s:f, s:i}}}", "det_se", 1.0, "macro_f1", 0.70,
                       "det_tp", 100, "det_fn", 0, "classes", "V", "f1",
                       1.0, "support", 10, "F", "f1", 1.0, "support", 4);
    after = json_pack("{s:f, s:f, s:i, s:i, s:{s:{s:f, s:i}, "
                      "s:{s:f, s:i}}}", "det_se", 0.97, "macro_f1", 0.69,
                      "det_tp", 97, "det_fn", 3, "classes", "V", "f1",
                      0.85, "support", 10, "F", "f1", 0.0, "support", 4);
    ed_warn_holdout(w, before, after, 1);
    CHECK_MSG(strcmp(only_warning(w), "held-out scores fell: detection Se "
                     "1.000 -> 0.970, macro-F1 of the classes with 5 or "
                     "more beats 1.000 -> 0.850, V F1 1.000 -> 0.850") == 0,
              "%s", only_warning(w));
    json_array_clear(w);
    json_decref(before);
    json_decref(after);

    /* Record 208's held-out 25 minutes after fine-tuning: S, with two
     * beats, goes from 0.40 to 0 and takes the all-class macro-F1 down by
     * a tenth; N and V barely move.  No fall is warned of, but the rare
     * class behind the headline figure is named. */
    before = scores_nsv(0.833, 0.987, 0.40, 0.993);
    after = scores_nsv(0.729, 0.986, 0.0, 0.988);
    ed_warn_holdout(w, before, after, 1);
    CHECK_MSG(strcmp(only_warning(w), "held-out macro-F1 fell 0.833 -> "
                     "0.729 only through classes with fewer than 5 held-out "
                     "beats: S (2 beats) F1 0.400 -> 0.000; too few to "
                     "judge by, so hold out more ECG to score them") == 0,
              "%s", only_warning(w));
    json_array_clear(w);
    ed_warn_holdout(w, before, before, 1);
    CHECK_EQ_INT((int)json_array_size(w), 0);
    json_decref(before);
    json_decref(after);

    /* Held out, but without a single annotated beat: all scores are 0 and
     * say nothing, which the warning must tell. */
    before = json_pack("{s:f, s:f, s:i, s:i}", "det_se", 0.0, "macro_f1",
                       0.0, "det_tp", 0, "det_fn", 0);
    ed_warn_holdout(w, before, before, 1);
    CHECK(strstr(only_warning(w), "no annotated beats") != NULL);
    json_array_clear(w);
    json_decref(before);
    json_decref(w);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[400], cmd[600];

    snprintf(dir, sizeof dir, "%s/test_ed_units.XXXXXX", tmp ? tmp : "/tmp");
    REQUIRE(mkdtemp(dir) != NULL);
    ed_log_open(NULL, ED_LOG_ERROR);
    test_listen();
    test_config(dir);
    test_advice();
    test_quote();
    test_store(dir);
    test_result_name();
    test_migration(dir);
    test_warnings();
    test_utf8();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_ed_units: could not remove %s\n", dir);
    return check_exit();
}
