/*
 * What counter_server and counter_client share: the method names, the
 * wire format of the requests and replies, and a tiny gflags-style parser.
 *
 * Wire format (all integers little-endian):
 *   Counter.fetch_add  request: int64 delta [, uint64 client_id, uint64 seq]
 *                      reply:   int64 value before the add
 *   Counter.get        request: empty
 *                      reply:   int64 value
 *   Counter.status     request: empty (answered by any node, not linearizable)
 *                      reply:   JSON {"value":..,"applied_index":..,"duplicates":..,"node":{...}}
 *
 * client_id/seq make fetch_add exactly-once: the state machine remembers,
 * per client, the last seq it applied and its result, and answers a retry
 * of that seq with the remembered result instead of adding again (Raft
 * thesis §6.3). raft_client_call retries on another peer when a connection
 * breaks mid-call, so without this a leader crash could apply an add twice.
 * client_id 0 (or the short 8-byte request) means "no session".
 */
#ifndef COUNTER_COMMON_H
#define COUNTER_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flags.h"

#define METHOD_FETCH_ADD "Counter.fetch_add"
#define METHOD_GET "Counter.get"
#define METHOD_STATUS "Counter.status"

#define FETCH_ADD_SHORT_LEN 8
#define FETCH_ADD_LEN 24

static inline void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

static inline uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif /* COUNTER_COMMON_H */
