/* What the C test programs share: the check counters and macros, sleeping,
 * and a node's store URIs under the program's data directory. Header-only:
 * each program is compiled as one file (tests/c_api.rs). */
#ifndef RRAFT_TEST_CHECK_H
#define RRAFT_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "rraft.h"

/* Counted from every thread that runs a check (callbacks included). */
static atomic_int passed, failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            atomic_fetch_add(&passed, 1);                                    \
        } else {                                                             \
            atomic_fetch_add(&failed, 1);                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n",    \
                    __FILE__, __LINE__, #cond, raft_last_error());           \
        }                                                                    \
    } while (0)

#define CHECK_CODE(expr, expected)                                           \
    do {                                                                     \
        int got_ = (expr);                                                   \
        if (got_ == (expected)) {                                            \
            atomic_fetch_add(&passed, 1);                                    \
        } else {                                                             \
            atomic_fetch_add(&failed, 1);                                    \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d\n",    \
                    __FILE__, __LINE__, #expr, got_, raft_strerror(got_),    \
                    (expected));                                             \
        }                                                                    \
    } while (0)

static inline void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* Node `idx`'s stores: log, meta and snapshots under `base_dir`/n<idx>. */
typedef struct {
    char log[512], meta[512], snapshot[512];
} test_stores_t;

/* Fills `s` and points the options' URIs at it (`s` must outlive init). */
static inline void use_test_stores(raft_node_options_t *o, test_stores_t *s, const char *base_dir, int idx) {
    snprintf(s->log, sizeof s->log, "local://%s/n%d/log", base_dir, idx);
    snprintf(s->meta, sizeof s->meta, "local://%s/n%d/meta", base_dir, idx);
    snprintf(s->snapshot, sizeof s->snapshot, "local://%s/n%d/snapshot", base_dir, idx);
    o->log_uri = s->log;
    o->raft_meta_uri = s->meta;
    o->snapshot_uri = s->snapshot;
}

#endif /* RRAFT_TEST_CHECK_H */
