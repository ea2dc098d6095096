/*
 * What counter_server and counter_client share: the method names, braft's
 * counter messages in protobuf encoding, and a clock.
 *
 * The methods and messages are those of braft's example/counter
 * (counter.proto, package "example"), so braft's counter_client can call
 * counter_server and the two servers read each other's logs and snapshots:
 *
 *   CounterService.fetch_add  FetchAddRequest{int64 value = 1; bytes payload = 2}
 *                             -> CounterResponse
 *   CounterService.get        GetRequest{} -> CounterResponse
 *   CounterResponse           {bool success = 1; int64 value = 2; string redirect = 3}
 *   Snapshot                  {int64 value = 1} (the snapshot's file "data")
 *
 * success=false means the request was not carried out here: `redirect`
 * names the leader's peer id ("ip:port:idx:role", braft's PeerId
 * to_string) or is absent when no leader is known. The log entry of an add
 * is the FetchAddRequest as the server re-serializes it (value, payload,
 * then any unknown fields), byte for byte what braft's server writes.
 *
 *   CounterService.status     rraft's own (not in braft): any node answers
 *                             JSON {"value":..,"applied_index":..,"node":{...}}
 *                             (not linearizable; for tests and operators)
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

#define METHOD_FETCH_ADD "CounterService.fetch_add"
#define METHOD_GET "CounterService.get"
#define METHOD_STATUS "CounterService.status"

static inline uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- protobuf wire encoding (the few pieces these messages need) ---- */

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_BYTES = 2, PB_FIXED32 = 5 };

/* The longest varint (an int64 below zero takes ten bytes). */
#define PB_VARINT_MAX 10

static inline size_t pb_put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Reads a varint at *p (before end), advancing *p. False when truncated or
 * longer than ten bytes. */
static inline bool pb_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t out = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        out |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = out;
            return true;
        }
    }
    return false;
}

/* One field of a message: its number, wire type, and where its value is
 * (for PB_VARINT the value itself). */
typedef struct {
    uint32_t number;
    int wire_type;
    uint64_t varint;
    const uint8_t *bytes; /* PB_BYTES: the value; otherwise NULL */
    size_t len;
    const uint8_t *start; /* the whole field, tag included */
    size_t whole_len;
} pb_field_t;

/* Reads the next field at *p (before end), advancing *p. False when the
 * message is malformed (groups, which these messages never hold, too). */
static inline bool pb_next_field(const uint8_t **p, const uint8_t *end, pb_field_t *f) {
    f->start = *p;
    uint64_t tag = 0;
    if (!pb_get_varint(p, end, &tag) || tag >> 3 == 0 || tag >> 3 > 0x1fffffff) {
        return false;
    }
    f->number = (uint32_t)(tag >> 3);
    f->wire_type = (int)(tag & 7);
    f->bytes = NULL;
    f->len = 0;
    f->varint = 0;
    switch (f->wire_type) {
    case PB_VARINT:
        if (!pb_get_varint(p, end, &f->varint)) {
            return false;
        }
        break;
    case PB_BYTES: {
        uint64_t len = 0;
        if (!pb_get_varint(p, end, &len) || len > (uint64_t)(end - *p)) {
            return false;
        }
        f->bytes = *p;
        f->len = (size_t)len;
        *p += len;
        break;
    }
    case PB_FIXED64:
    case PB_FIXED32: {
        size_t n = f->wire_type == PB_FIXED64 ? 8 : 4;
        if ((size_t)(end - *p) < n) {
            return false;
        }
        *p += n;
        break;
    }
    default:
        return false;
    }
    f->whole_len = (size_t)(*p - f->start);
    return true;
}

/* Calls `on_field(field, ctx)` for every field of a message, in order.
 * False when the message is malformed. */
static inline bool pb_parse(const uint8_t *data, size_t len, void (*on_field)(const pb_field_t *, void *),
                            void *ctx) {
    const uint8_t *p = data, *end = data + len;
    while (p < end) {
        pb_field_t f;
        if (!pb_next_field(&p, end, &f)) {
            return false;
        }
        on_field(&f, ctx);
    }
    return true;
}

/* ---- FetchAddRequest ---- */

typedef struct {
    bool has_value; /* required in braft's proto2 message */
    int64_t value;
    bool has_payload;
    const uint8_t *payload;
    size_t payload_len;
} fetch_add_request_t;

static inline void fetch_add_field(const pb_field_t *f, void *ctx) {
    fetch_add_request_t *req = ctx;
    if (f->number == 1 && f->wire_type == PB_VARINT) {
        req->has_value = true;
        req->value = (int64_t)f->varint;
    } else if (f->number == 2 && f->wire_type == PB_BYTES) {
        req->has_payload = true;
        req->payload = f->bytes;
        req->payload_len = f->len;
    }
}

/* Parses a FetchAddRequest (the last occurrence of a field wins, as in
 * protobuf). False when malformed or `value` is missing. */
static inline bool fetch_add_parse(const uint8_t *data, size_t len, fetch_add_request_t *req) {
    memset(req, 0, sizeof *req);
    return pb_parse(data, len, fetch_add_field, req) && req->has_value;
}

/* The longest encoding fetch_add_serialize can produce from `len` bytes of
 * request: each known field once, at most as long as where it came from. */
static inline size_t fetch_add_serialized_max(size_t len) { return len + 1 + PB_VARINT_MAX; }

/* Serializes `value` and `payload` (if `has_payload`) as protobuf does:
 * known fields in field-number order. Returns the length written to `out`
 * (room for 1 + PB_VARINT_MAX + 1 + PB_VARINT_MAX + payload_len bytes). */
static inline size_t fetch_add_encode(uint8_t *out, int64_t value, bool has_payload, const uint8_t *payload,
                                      size_t payload_len) {
    size_t n = 0;
    out[n++] = (1 << 3) | PB_VARINT;
    n += pb_put_varint(out + n, (uint64_t)value);
    if (has_payload) {
        out[n++] = (2 << 3) | PB_BYTES;
        n += pb_put_varint(out + n, payload_len);
        if (payload_len) {
            memcpy(out + n, payload, payload_len);
        }
        n += payload_len;
    }
    return n;
}

/* Re-serializes a request that fetch_add_parse accepted, as braft's
 * server does before it appends it to the log (C++ protobuf: known fields
 * in number order, then the unknown fields as they came). `out` has room
 * for fetch_add_serialized_max(len) bytes. Returns the length. */
static inline size_t fetch_add_serialize(const uint8_t *data, size_t len, const fetch_add_request_t *req,
                                         uint8_t *out) {
    size_t n = fetch_add_encode(out, req->value, req->has_payload, req->payload, req->payload_len);
    const uint8_t *p = data, *end = data + len;
    pb_field_t f;
    while (p < end && pb_next_field(&p, end, &f)) {
        bool known = (f.number == 1 && f.wire_type == PB_VARINT) || (f.number == 2 && f.wire_type == PB_BYTES);
        if (!known) {
            memcpy(out + n, f.start, f.whole_len);
            n += f.whole_len;
        }
    }
    return n;
}

/* ---- CounterResponse ---- */

typedef struct {
    bool has_success; /* required in braft's proto2 message */
    bool success;
    bool has_value;
    int64_t value;
    char redirect[256]; /* "" when absent */
} counter_response_t;

/* The longest CounterResponse counter_response_encode writes. */
#define COUNTER_RESPONSE_MAX (2 + 1 + PB_VARINT_MAX + 2 + 255)

/* Encodes a response; `redirect` NULL or "" leaves the field out (braft
 * sets it only when a leader is known). Returns the length. */
static inline size_t counter_response_encode(uint8_t *out, bool success, bool has_value, int64_t value,
                                             const char *redirect) {
    size_t n = 0;
    out[n++] = (1 << 3) | PB_VARINT;
    out[n++] = success ? 1 : 0;
    if (has_value) {
        out[n++] = (2 << 3) | PB_VARINT;
        n += pb_put_varint(out + n, (uint64_t)value);
    }
    size_t rlen = redirect ? strlen(redirect) : 0;
    if (rlen > 255) {
        rlen = 0; /* no peer id is this long */
    }
    if (rlen) {
        out[n++] = (3 << 3) | PB_BYTES;
        n += pb_put_varint(out + n, rlen);
        memcpy(out + n, redirect, rlen);
        n += rlen;
    }
    return n;
}

static inline void counter_response_field(const pb_field_t *f, void *ctx) {
    counter_response_t *r = ctx;
    if (f->number == 1 && f->wire_type == PB_VARINT) {
        r->has_success = true;
        r->success = f->varint != 0;
    } else if (f->number == 2 && f->wire_type == PB_VARINT) {
        r->has_value = true;
        r->value = (int64_t)f->varint;
    } else if (f->number == 3 && f->wire_type == PB_BYTES) {
        size_t n = f->len < sizeof r->redirect - 1 ? f->len : sizeof r->redirect - 1;
        memcpy(r->redirect, f->bytes, n);
        r->redirect[n] = '\0';
    }
}

/* Decodes a response. False when malformed or `success` is missing. */
static inline bool counter_response_parse(const uint8_t *data, size_t len, counter_response_t *r) {
    memset(r, 0, sizeof *r);
    return pb_parse(data, len, counter_response_field, r) && r->has_success;
}

/* ---- Snapshot ---- */

typedef struct {
    bool has_value; /* required in braft's proto2 message */
    int64_t value;
} snapshot_message_t;

static inline void snapshot_field(const pb_field_t *f, void *ctx) {
    snapshot_message_t *m = ctx;
    if (f->number == 1 && f->wire_type == PB_VARINT) {
        m->has_value = true;
        m->value = (int64_t)f->varint;
    }
}

/* Decodes a Snapshot. False when malformed or `value` is missing. */
static inline bool snapshot_parse(const uint8_t *data, size_t len, int64_t *value) {
    snapshot_message_t m = {0};
    if (!pb_parse(data, len, snapshot_field, &m) || !m.has_value) {
        return false;
    }
    *value = m.value;
    return true;
}

/* Encodes Snapshot{value} into `out` (1 + PB_VARINT_MAX bytes); returns
 * the length. */
static inline size_t snapshot_encode(uint8_t *out, int64_t value) {
    out[0] = (1 << 3) | PB_VARINT;
    return 1 + pb_put_varint(out + 1, (uint64_t)value);
}

#endif /* COUNTER_COMMON_H */
