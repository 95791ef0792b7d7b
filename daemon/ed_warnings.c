/*
 * ed_warnings.c - the warnings of a finished pruning job (see
 * ed_warnings.h).  The thresholds are deliberately coarse: they flag a
 * result a person should look at, they do not grade it.
 */
#include "ed_warnings.h"

#include <stdio.h>
#include <string.h>

#include "ecgprune/ep_lsq.h"

/* A fall in detection sensitivity or macro-F1 larger than this, or in one
 * class's F1 larger than ED_WARN_CLASS_DROP (with enough support to
 * matter), is reported. */
#define ED_WARN_SCORE_DROP 0.02
#define ED_WARN_CLASS_DROP 0.10
#define ED_WARN_MIN_SUPPORT 5

static void add(json_t *warnings, const char *text)
{
    json_array_append_new(warnings, json_string(text));
}

void ed_warn_calibration(json_t *warnings,
                         const size_t counts[EP_AAMI_COUNT], int annotated)
{
    char text[320];

    if (ep_prune_calib_warning(counts, annotated, text, sizeof text))
        add(warnings, text);
}

void ed_warn_refits(json_t *warnings, const ep_prune_result *res)
{
    const ep_prune_group_report *worst = NULL;
    char text[320];
    int g, n = 0;

    for (g = 0; g < res->n_groups; g++) {
        const ep_prune_group_report *r = &res->groups[g];

        if (r->underdetermined <= 0)
            continue;
        n++;
        if (!worst || r->min_rows_per_unknown < worst->min_rows_per_unknown)
            worst = r;
    }
    if (n == 0)
        return;
    snprintf(text, sizeof text, "%d of %d channel groups were refitted from "
             "fewer than %d calibration rows per unknown (fewest: %.1f, "
             "group %s); their ridge was raised and they fit loosely, so "
             "give longer calibration batches", n, res->n_groups,
             EP_LSQ_MIN_ROWS_PER_UNKNOWN, worst->min_rows_per_unknown,
             worst->producer);
    add(warnings, text);
}

static double number(const json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

/* "name a -> b" for one score that fell, appended to out. */
static void append_drop(char *out, size_t size, const char *name, double a,
                        double b)
{
    size_t used = strlen(out);

    snprintf(out + used, size - used, "%s%s %.3f -> %.3f", used ? ", " : "",
             name, a, b);
}

/* Macro-F1 of scores over the classes with at least ED_WARN_MIN_SUPPORT
 * held-out beats (support is the reference's, the same before and
 * after): a class of two beats would otherwise swing it by a fifth on one
 * beat.  -1 when no class has that many. */
static double supported_macro_f1(const json_t *scores)
{
    const char *cls;
    json_t *c;
    double sum = 0.0;
    int n = 0;

    json_object_foreach(json_object_get(scores, "classes"), cls, c) {
        if (number(c, "support") < ED_WARN_MIN_SUPPORT)
            continue;
        sum += number(c, "f1");
        n++;
    }
    return n ? sum / n : -1.0;
}

/* The all-class macro-F1 of the scores can fall through classes of a few
 * held-out beats alone (two S beats: one missed moves its F1 from 0.4 to
 * 0), while every class with beats enough holds.  That is no reason to
 * distrust the model, but the headline figure looks like a regression,
 * so the classes behind it are named. */
static void warn_rare_classes(json_t *warnings, const json_t *before,
                              const json_t *after)
{
    const char *cls;
    json_t *b, *a;
    char rare[300] = "", text[480], name[40];

    if (number(before, "macro_f1") - number(after, "macro_f1") <=
        ED_WARN_SCORE_DROP)
        return;
    json_object_foreach(json_object_get(before, "classes"), cls, b) {
        a = json_object_get(json_object_get(after, "classes"), cls);
        if (number(b, "support") >= ED_WARN_MIN_SUPPORT ||
            number(b, "f1") <= number(a, "f1"))
            continue;
        snprintf(name, sizeof name, "%s (%.0f beat%s) F1", cls,
                 number(b, "support"), number(b, "support") == 1 ? "" : "s");
        append_drop(rare, sizeof rare, name, number(b, "f1"),
                    number(a, "f1"));
    }
    if (rare[0] == '\0')
        return;
    snprintf(text, sizeof text, "held-out macro-F1 fell %.3f -> %.3f only "
             "through classes with fewer than %d held-out beats: %s; too "
             "few to judge by, so hold out more ECG to score them",
             number(before, "macro_f1"), number(after, "macro_f1"),
             ED_WARN_MIN_SUPPORT, rare);
    add(warnings, text);
}

void ed_warn_holdout(json_t *warnings, const json_t *before,
                     const json_t *after, int n_holdout)
{
    double f1_before, f1_after;
    const char *cls;
    json_t *b, *a;
    char drops[400] = "", text[480], name[16];

    if (n_holdout == 0 || !before || !after) {
        add(warnings, "no held-out ECG was scored (see the job's "
            "\"holdout\" parameter), so the pruned model is unchecked");
        return;
    }
    if (number(before, "det_tp") + number(before, "det_fn") <= 0) {
        add(warnings, "the held-out ECG holds no annotated beats, so its "
            "scores (all 0) check nothing: hold out ECG with beats");
        return;
    }
    if (number(before, "det_se") - number(after, "det_se") >
        ED_WARN_SCORE_DROP)
        append_drop(drops, sizeof drops, "detection Se",
                    number(before, "det_se"), number(after, "det_se"));
    f1_before = supported_macro_f1(before);
    f1_after = supported_macro_f1(after);
    if (f1_before >= 0 && f1_before - f1_after > ED_WARN_SCORE_DROP) {
        char what[64];

        snprintf(what, sizeof what, "macro-F1 of the classes with %d or more "
                 "beats", ED_WARN_MIN_SUPPORT);
        append_drop(drops, sizeof drops, what, f1_before, f1_after);
    }
    json_object_foreach(json_object_get(before, "classes"), cls, b) {
        a = json_object_get(json_object_get(after, "classes"), cls);
        if (number(b, "support") < ED_WARN_MIN_SUPPORT ||
            number(b, "f1") - number(a, "f1") <= ED_WARN_CLASS_DROP)
            continue;
        snprintf(name, sizeof name, "%s F1", cls);
        append_drop(drops, sizeof drops, name, number(b, "f1"),
                    number(a, "f1"));
    }
    if (drops[0] == '\0') {
        warn_rare_classes(warnings, before, after);
        return;
    }
    snprintf(text, sizeof text, "held-out scores fell: %s", drops);
    add(warnings, text);
}
