/*
 * check.h - the few assertion macros the unit tests share.  A failed check
 * prints where and why and marks the test failed; the test's main returns
 * check_exit() so that meson sees the result.
 */
#ifndef ECGPRUNE_TEST_CHECK_H
#define ECGPRUNE_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures;
static int check_count;

#define CHECK(cond) \
    do { \
        check_count++; \
        if (!(cond)) { \
            check_failures++; \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
                    __LINE__, #cond); \
        } \
    } while (0)

#define CHECK_MSG(cond, ...) \
    do { \
        check_count++; \
        if (!(cond)) { \
            check_failures++; \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, \
                    __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
        } \
    } while (0)

#define CHECK_EQ_INT(a, b) \
    do { \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
        CHECK_MSG(check_a_ == check_b_, "%lld != %lld", check_a_, check_b_); \
    } while (0)

/* |a - b| <= tol * max(1, |b|) */
#define CHECK_NEAR(a, b, tol) \
    do { \
        double check_a_ = (double)(a), check_b_ = (double)(b); \
        double check_s_ = fabs(check_b_) > 1.0 ? fabs(check_b_) : 1.0; \
        CHECK_MSG(fabs(check_a_ - check_b_) <= (tol) * check_s_, \
                  "%.9g vs %.9g (tol %g)", check_a_, check_b_, \
                  (double)(tol)); \
    } while (0)

/* Stop the test at once (e.g. a setup step failed). */
/* cond is evaluated once, so it may be a call with side effects. */
#define REQUIRE(cond) \
    do { \
        check_count++; \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: required check failed: %s\n", \
                    __FILE__, __LINE__, #cond); \
            exit(1); \
        } \
    } while (0)

static inline int check_exit(void)
{
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures == 0 && check_count > 0 ? 0 : 1;
}

#endif
