/*
 * test_score.c - the EC57 beat-by-beat scorer on small crafted cases whose
 * confusion matrices and rates are worked out by hand in the comments:
 * window edges, a detection between two references, empty lists, gross
 * versus per-record averages, and the annotation-to-reference mapping.
 */
#include <string.h>

#include "check.h"
#include "ecgprune/ep_score.h"

#define FS 360.0
#define EC57_WINDOW 0.15   /* 54 samples at 360 Hz */

static ep_ref_beat ref_beat(int64_t sample, ep_aami cls)
{
    ep_ref_beat r = {sample, cls};
    return r;
}

static ep_beat det_beat(int64_t sample, ep_aami cls)
{
    ep_beat d = {sample, (double)sample / FS, cls, 1.0f};
    return d;
}

static int64_t confusion_total(const ep_score_counts *c)
{
    int64_t t = 0;

    for (int r = 0; r < EP_AAMI_COUNT; r++)
        for (int k = 0; k < EP_AAMI_COUNT; k++)
            t += c->confusion[r][k];
    return t;
}

/*
 * reference  N@1000  V@2000  S@3000  N@4000  F@5000
 * detected   N@1010  N@2020  S@2990  V@4100  F@5054  N@6000
 * N@4000-V@4100 are 100 samples apart (> 54): N missed, V extra.  F@5054 is
 * exactly 54 samples (150 ms) from F@5000: matched.  N@6000: extra.
 */
static void test_mixed_record(void)
{
    ep_ref_beat ref[] = {
        ref_beat(1000, EP_AAMI_N), ref_beat(2000, EP_AAMI_V),
        ref_beat(3000, EP_AAMI_S), ref_beat(4000, EP_AAMI_N),
        ref_beat(5000, EP_AAMI_F)
    };
    ep_beat det[] = {
        det_beat(1010, EP_AAMI_N), det_beat(2020, EP_AAMI_N),
        det_beat(2990, EP_AAMI_S), det_beat(4100, EP_AAMI_V),
        det_beat(5054, EP_AAMI_F), det_beat(6000, EP_AAMI_N)
    };
    ep_score_counts c;
    ep_score_stats s;
    ep_error err = {0};

    REQUIRE(ep_score_record(ref, 5, det, 6, FS, EC57_WINDOW, &c, &err) == 0);
    CHECK_EQ_INT(c.confusion[EP_AAMI_N][EP_AAMI_N], 1);
    CHECK_EQ_INT(c.confusion[EP_AAMI_V][EP_AAMI_N], 1);
    CHECK_EQ_INT(c.confusion[EP_AAMI_S][EP_AAMI_S], 1);
    CHECK_EQ_INT(c.confusion[EP_AAMI_F][EP_AAMI_F], 1);
    CHECK_EQ_INT(confusion_total(&c), 4);
    CHECK_EQ_INT(c.missed[EP_AAMI_N], 1);
    CHECK_EQ_INT(c.missed[EP_AAMI_V] + c.missed[EP_AAMI_S], 0);
    CHECK_EQ_INT(c.extra, 2);
    CHECK_EQ_INT(c.extra_by_class[EP_AAMI_V], 1);
    CHECK_EQ_INT(c.extra_by_class[EP_AAMI_N], 1);

    /* Detection: 4 matched, 1 missed, 2 extra. */
    ep_score_stats_from(&c, &s);
    CHECK_EQ_INT(s.det_tp, 4);
    CHECK_EQ_INT(s.det_fn, 1);
    CHECK_EQ_INT(s.det_fp, 2);
    CHECK_NEAR(s.det_se, 0.8, 1e-12);
    CHECK_NEAR(s.det_ppv, 4.0 / 6.0, 1e-12);

    /* N: tp 1, fn 1 (missed), fp 2 (V called N, extra N). */
    CHECK_EQ_INT(s.cls[EP_AAMI_N].support, 2);
    CHECK_NEAR(s.cls[EP_AAMI_N].se, 0.5, 1e-12);
    CHECK_NEAR(s.cls[EP_AAMI_N].ppv, 1.0 / 3.0, 1e-12);
    CHECK_NEAR(s.cls[EP_AAMI_N].f1, 2.0 / 5.0, 1e-12);
    /* S and F perfect; V: tp 0, fn 1, fp 1; Q has no beats at all. */
    CHECK_NEAR(s.cls[EP_AAMI_S].f1, 1.0, 1e-12);
    CHECK_NEAR(s.cls[EP_AAMI_F].f1, 1.0, 1e-12);
    CHECK_EQ_INT(s.cls[EP_AAMI_V].fn, 1);
    CHECK_EQ_INT(s.cls[EP_AAMI_V].fp, 1);
    CHECK_NEAR(s.cls[EP_AAMI_V].se, 0.0, 1e-12);
    CHECK_EQ_INT(s.cls[EP_AAMI_Q].support, 0);
    CHECK_NEAR(s.cls[EP_AAMI_Q].se, 0.0, 1e-12);
    CHECK_NEAR(s.cls[EP_AAMI_Q].ppv, 0.0, 1e-12);
    /* macro F1 = (0.4 + 1 + 0 + 1) / 4 */
    CHECK_NEAR(s.macro_f1, 0.6, 1e-12);
}

/* 54 samples either side match, 55 do not; at 250 Hz the window is
 * floor(37.5) = 37 samples. */
static void test_window_edges(void)
{
    ep_ref_beat ref[] = {ref_beat(1000, EP_AAMI_N)};
    ep_beat before[] = {det_beat(946, EP_AAMI_N)};
    ep_beat after[] = {det_beat(1054, EP_AAMI_N)};
    ep_beat past[] = {det_beat(1055, EP_AAMI_N)};
    ep_beat past_before[] = {det_beat(945, EP_AAMI_N)};
    ep_beat at250_in[] = {det_beat(1037, EP_AAMI_N)};
    ep_beat at250_out[] = {det_beat(1038, EP_AAMI_N)};
    ep_score_counts c;
    ep_error err = {0};

    REQUIRE(ep_score_record(ref, 1, before, 1, FS, EC57_WINDOW, &c,
                            &err) == 0);
    CHECK_EQ_INT(c.confusion[0][0], 1);
    REQUIRE(ep_score_record(ref, 1, after, 1, FS, EC57_WINDOW, &c,
                            &err) == 0);
    CHECK_EQ_INT(c.confusion[0][0], 1);
    REQUIRE(ep_score_record(ref, 1, past, 1, FS, EC57_WINDOW, &c,
                            &err) == 0);
    CHECK_EQ_INT(c.confusion[0][0], 0);
    CHECK_EQ_INT(c.missed[0], 1);
    CHECK_EQ_INT(c.extra, 1);
    REQUIRE(ep_score_record(ref, 1, past_before, 1, FS, EC57_WINDOW, &c,
                            &err) == 0);
    CHECK_EQ_INT(c.missed[0], 1);
    REQUIRE(ep_score_record(ref, 1, at250_in, 1, 250.0, EC57_WINDOW, &c,
                            &err) == 0);
    CHECK_EQ_INT(c.confusion[0][0], 1);
    REQUIRE(ep_score_record(ref, 1, at250_out, 1, 250.0, EC57_WINDOW, &c,
                            &err) == 0);
    CHECK_EQ_INT(c.extra, 1);
}

/* Detections that could match two references, and the reverse. */
static void test_contested(void)
{
    /* V@1050 is 50 from N@1000 and 30 from V@1080: it goes to V@1080. */
    ep_ref_beat two_refs[] = {
        ref_beat(1000, EP_AAMI_N), ref_beat(1080, EP_AAMI_V)
    };
    ep_beat one_det[] = {det_beat(1050, EP_AAMI_V)};
    /* N@990 (10 away) and V@1005 (5 away) for one N: V wins, N is extra. */
    ep_ref_beat one_ref[] = {ref_beat(1000, EP_AAMI_N)};
    ep_beat two_dets[] = {
        det_beat(990, EP_AAMI_N), det_beat(1005, EP_AAMI_V)
    };
    /* A@1000, B@1050 against X@1030, Y@1080: B-X (20) pairs first, so A is
     * missed and Y extra, as bxb's "is the next reference closer" rule
     * decides too. */
    ep_ref_beat chain_ref[] = {
        ref_beat(1000, EP_AAMI_N), ref_beat(1050, EP_AAMI_S)
    };
    ep_beat chain_det[] = {
        det_beat(1030, EP_AAMI_S), det_beat(1080, EP_AAMI_N)
    };
    ep_score_counts c;
    ep_error err = {0};

    REQUIRE(ep_score_record(two_refs, 2, one_det, 1, FS, EC57_WINDOW, &c,
                            &err) == 0);
    CHECK_EQ_INT(c.confusion[EP_AAMI_V][EP_AAMI_V], 1);
    CHECK_EQ_INT(c.missed[EP_AAMI_N], 1);
    CHECK_EQ_INT(c.extra, 0);

    REQUIRE(ep_score_record(one_ref, 1, two_dets, 2, FS, EC57_WINDOW, &c,
                            &err) == 0);
    CHECK_EQ_INT(c.confusion[EP_AAMI_N][EP_AAMI_V], 1);
    CHECK_EQ_INT(c.extra_by_class[EP_AAMI_N], 1);
    CHECK_EQ_INT(confusion_total(&c), 1);

    REQUIRE(ep_score_record(chain_ref, 2, chain_det, 2, FS, EC57_WINDOW,
                            &c, &err) == 0);
    CHECK_EQ_INT(c.confusion[EP_AAMI_S][EP_AAMI_S], 1);
    CHECK_EQ_INT(c.missed[EP_AAMI_N], 1);
    CHECK_EQ_INT(c.extra_by_class[EP_AAMI_N], 1);
    CHECK_EQ_INT(confusion_total(&c), 1);
}

static void test_empty(void)
{
    ep_ref_beat ref[] = {
        ref_beat(100, EP_AAMI_N), ref_beat(500, EP_AAMI_Q)
    };
    ep_beat det[] = {det_beat(100, EP_AAMI_N), det_beat(900, EP_AAMI_S)};
    ep_score_counts c;
    ep_score_stats s;
    ep_error err = {0};

    REQUIRE(ep_score_record(NULL, 0, NULL, 0, FS, EC57_WINDOW, &c,
                            &err) == 0);
    ep_score_stats_from(&c, &s);
    CHECK_EQ_INT(confusion_total(&c) + c.extra, 0);
    CHECK(s.det_se == 0.0 && s.det_ppv == 0.0 && s.macro_f1 == 0.0);

    REQUIRE(ep_score_record(ref, 2, NULL, 0, FS, EC57_WINDOW, &c,
                            &err) == 0);
    ep_score_stats_from(&c, &s);
    CHECK_EQ_INT(c.missed[EP_AAMI_N] + c.missed[EP_AAMI_Q], 2);
    CHECK_EQ_INT(s.det_fn, 2);
    CHECK(s.det_se == 0.0 && s.det_ppv == 0.0);

    REQUIRE(ep_score_record(NULL, 0, det, 2, FS, EC57_WINDOW, &c,
                            &err) == 0);
    ep_score_stats_from(&c, &s);
    CHECK_EQ_INT(c.extra, 2);
    CHECK_EQ_INT(s.cls[EP_AAMI_S].fp, 1);
    CHECK(s.det_ppv == 0.0);
}

/*
 * Record A: 10 N, 9 detected.  Record B: 1 N, its only detection 200
 * samples off.  Record C: nothing.  Gross: Se 9/11, +P 9/10.  Average
 * over records where defined: Se (0.9 + 0) / 2, +P (1 + 0) / 2; C counts
 * in neither.
 */
static void test_gross_and_average(void)
{
    ep_ref_beat ref_a[10], ref_b[] = {ref_beat(1000, EP_AAMI_N)};
    ep_beat det_a[9], det_b[] = {det_beat(1200, EP_AAMI_N)};
    ep_score_counts rec[3], gross;
    ep_score_stats g, avg;
    ep_error err = {0};

    for (int i = 0; i < 10; i++)
        ref_a[i] = ref_beat(1000 + 300 * i, EP_AAMI_N);
    for (int i = 0; i < 9; i++)
        det_a[i] = det_beat(1003 + 300 * i, EP_AAMI_N);
    REQUIRE(ep_score_record(ref_a, 10, det_a, 9, FS, EC57_WINDOW, &rec[0],
                            &err) == 0);
    REQUIRE(ep_score_record(ref_b, 1, det_b, 1, FS, EC57_WINDOW, &rec[1],
                            &err) == 0);
    REQUIRE(ep_score_record(NULL, 0, NULL, 0, FS, EC57_WINDOW, &rec[2],
                            &err) == 0);

    memset(&gross, 0, sizeof gross);
    for (int r = 0; r < 3; r++)
        ep_score_add(&gross, &rec[r]);
    ep_score_stats_from(&gross, &g);
    CHECK_EQ_INT(g.det_tp, 9);
    CHECK_NEAR(g.det_se, 9.0 / 11.0, 1e-12);
    CHECK_NEAR(g.det_ppv, 9.0 / 10.0, 1e-12);
    CHECK_NEAR(g.cls[EP_AAMI_N].f1, 18.0 / 21.0, 1e-12);

    ep_score_average(rec, 3, &avg);
    CHECK_EQ_INT(avg.det_tp, 9);
    CHECK_EQ_INT(avg.det_fp, 1);
    CHECK_NEAR(avg.det_se, 0.45, 1e-12);
    CHECK_NEAR(avg.det_ppv, 0.5, 1e-12);
    /* F1 of N: A 18/19, B 0. */
    CHECK_NEAR(avg.cls[EP_AAMI_N].f1, 9.0 / 19.0, 1e-12);
    CHECK_NEAR(avg.cls[EP_AAMI_S].se, 0.0, 1e-12);
    /* Only N occurs, so macro F1 is N's F1, gross and average alike. */
    CHECK_NEAR(g.macro_f1, 18.0 / 21.0, 1e-12);
    CHECK_NEAR(avg.macro_f1, 9.0 / 19.0, 1e-12);

    ep_score_average(NULL, 0, &avg);
    CHECK(avg.det_se == 0.0 && avg.det_tp == 0);
}

/*
 * Macro F1 counts only the classes that occur.  reference N@1000 N@2000
 * V@3000, detected at the same samples with the same labels: N and V have
 * F1 1, S and F occur on neither side, macro F1 1 (not 2/4).  An extra
 * detection called F at 5000 makes F occur (FP 1, F1 0): macro F1
 * (1 + 1 + 0) / 3.
 */
/* The record of the comment above, scored with its first n_det
 * detections. */
static void score_first(size_t n_det, ep_score_counts *c, ep_score_stats *s)
{
    static const ep_ref_beat ref[] = {
        {1000, EP_AAMI_N}, {2000, EP_AAMI_N}, {3000, EP_AAMI_V}
    };
    static const ep_beat det[] = {
        {1000, 1000 / FS, EP_AAMI_N, 1.0f}, {2000, 2000 / FS, EP_AAMI_N, 1.0f},
        {3000, 3000 / FS, EP_AAMI_V, 1.0f}, {5000, 5000 / FS, EP_AAMI_F, 1.0f}
    };
    ep_error err = {0};

    REQUIRE(ep_score_record(ref, 3, det, n_det, FS, EC57_WINDOW, c,
                            &err) == 0);
    ep_score_stats_from(c, s);
}

static void test_macro_f1_absent_classes(void)
{
    ep_score_counts c;
    ep_score_stats s;

    score_first(3, &c, &s);
    CHECK_NEAR(s.macro_f1, 1.0, 1e-12);
    score_first(4, &c, &s);
    CHECK_EQ_INT(s.cls[EP_AAMI_F].fp, 1);
    CHECK_NEAR(s.macro_f1, 2.0 / 3.0, 1e-12);
    ep_score_average(&c, 1, &s);
    CHECK_NEAR(s.macro_f1, 2.0 / 3.0, 1e-12);
}

static void test_bad_input(void)
{
    ep_ref_beat unsorted[] = {
        ref_beat(500, EP_AAMI_N), ref_beat(100, EP_AAMI_N)
    };
    ep_beat bad_class[] = {det_beat(100, EP_AAMI_NONE)};
    ep_score_counts c;
    ep_error err = {0};

    CHECK_EQ_INT(ep_score_record(unsorted, 2, NULL, 0, FS, EC57_WINDOW, &c,
                                 &err), EP_EINVAL);
    CHECK(strstr(err.msg, "sorted") != NULL);
    CHECK_EQ_INT(ep_score_record(NULL, 0, bad_class, 1, FS, EC57_WINDOW,
                                 &c, &err), EP_EINVAL);
    CHECK_EQ_INT(ep_score_record(NULL, 0, NULL, 0, 0.0, EC57_WINDOW, &c,
                                 &err), EP_EINVAL);
    CHECK_EQ_INT(ep_score_record(NULL, 0, NULL, 0, FS, -1.0, &c, &err),
                 EP_EINVAL);
}

/* MIT codes: 6 F, 1 N, 28 rhythm change (not a beat), 5 V, 8 A (S),
 * 13 Q; from = 60 drops the F at 50. */
static void test_reference(void)
{
    ep_annotation items[] = {
        {50, 6, 0, 0, 0, NULL}, {100, 1, 0, 0, 0, NULL},
        {150, 28, 0, 0, 0, NULL}, {200, 5, 0, 0, 0, NULL},
        {300, 8, 0, 0, 0, NULL}, {400, 13, 0, 0, 0, NULL}
    };
    ep_annotations ann = {items, 6};
    ep_annotation backwards_items[] = {
        {100, 1, 0, 0, 0, NULL}, {50, 1, 0, 0, 0, NULL}
    };
    ep_annotations backwards = {backwards_items, 2};
    ep_ref_beat *ref;
    size_t n;
    ep_error err = {0};

    REQUIRE(ep_score_reference(&ann, 60, &ref, &n, &err) == 0);
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK(ref[0].sample == 100 && ref[0].cls == EP_AAMI_N);
        CHECK(ref[1].sample == 200 && ref[1].cls == EP_AAMI_V);
        CHECK(ref[2].sample == 300 && ref[2].cls == EP_AAMI_S);
        CHECK(ref[3].sample == 400 && ref[3].cls == EP_AAMI_Q);
    }
    free(ref);
    CHECK_EQ_INT(ep_score_reference(&backwards, 0, &ref, &n, &err),
                 EP_EFORMAT);
    CHECK(ref == NULL && n == 0);
}

int main(void)
{
    test_mixed_record();
    test_window_edges();
    test_contested();
    test_empty();
    test_gross_and_average();
    test_macro_f1_absent_classes();
    test_bad_input();
    test_reference();
    return check_exit();
}
