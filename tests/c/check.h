/* Tiny assertion helpers for the C tests: each failed check prints where and why and the test
 * exits non-zero at the end; a summary line "NAME: N passed, N failed" closes the run. */
#ifndef ALOOP_TEST_CHECK_H
#define ALOOP_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            check_passed++;                                                          \
        } else {                                                                     \
            check_failed++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/* Checks that an aloop_* call returned `want`, printing the names of both codes if not. */
#define CHECK_RC(call, want)                                                                   \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ == (want)) {                                                                   \
            check_passed++;                                                                    \
        } else {                                                                               \
            check_failed++;                                                                    \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d (%s)\n", __FILE__, __LINE__, \
                    #call, rc_, aloop_err_name(rc_), (int)(want), aloop_err_name(want));      \
        }                                                                                      \
    } while (0)

static int check_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed == 0 ? 0 : 1;
}

static const int all_backends[] = {1 /* ALOOP_BACKEND_URING */, 2 /* ALOOP_BACKEND_EPOLL */};

#endif
