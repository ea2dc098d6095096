/*
 * counter_server: braft's example/counter in C on rraft.
 *
 * A replicated 64-bit counter. Three of these processes (run_server.sh)
 * form one Raft group; each process hosts one node and the counter's
 * methods on one port. The methods, messages, log entries and snapshot
 * are braft's counter's (counter_common.h), so braft's counter_client
 * calls this server and either server starts on the other's data
 * directory (data_path/log, data_path/raft_meta, data_path/snapshot):
 *
 *   CounterService.fetch_add  leader only: appends the re-serialized
 *                             FetchAddRequest to the log and answers, once
 *                             it is applied, success=true with the value
 *                             before the add.
 *   CounterService.get        leader only: success=true with the value, a
 *                             linearizable read (the leader lease when it
 *                             is valid, otherwise a ReadIndex round).
 *   CounterService.status     any node: its local value and status (for
 *                             tests and operators; not linearizable).
 *
 * A node that is not the leader answers success=false with `redirect` =
 * the leader's peer id (absent when none is known), as braft's counter
 * does; so does a leader whose add surely will not apply (it lost the
 * leadership first). An add whose outcome is unknown (the node shut down,
 * a snapshot covered it) is an RPC error instead: success=false promises
 * the add was not carried out, so a client may resend it.
 *
 * Threads: method handlers run on the library's IO threads and must not
 * block; every state-machine callback (on_apply, snapshots, leader
 * changes) runs on the node's single FSM thread, one at a time. The state
 * below is shared between the two, hence the mutex.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "rraft.h"

#include "counter_common.h"
#include "dirs.h"
#include "service.h"

/* ---- the state machine ---- */

typedef struct {
    raft_node_t *node;
    pthread_mutex_t mu; /* guards value, applied_index */
    int64_t value;
    int64_t applied_index;
    int64_t leader_term; /* -1 unless leading; __atomic access */
} counter_t;

/* The process's one counter (static: a fetch_add's done finds its node
 * here, its context is the request alone). */
static counter_t counter;

/* Entries of at most this many bytes are built on the stack and copied by
 * raft_node_apply (one allocation, in the library); a longer one is built
 * with malloc and handed over with raft_node_apply_owned. */
#define ENTRY_ON_STACK 256

static int64_t counter_value(counter_t *c) {
    pthread_mutex_lock(&c->mu);
    int64_t v = c->value;
    pthread_mutex_unlock(&c->mu);
    return v;
}

static void reply_response(raft_request_t *req, bool success, bool has_value, int64_t value, const char *redirect) {
    uint8_t buf[COUNTER_RESPONSE_MAX];
    size_t n = counter_response_encode(buf, success, has_value, value, redirect);
    raft_request_reply(req, buf, n);
}

/* braft's redirect: success=false and the leader's peer id in braft's
 * form "ip:port:idx:role" (role 0: rraft has no witnesses), when known. */
static void reply_not_leader(raft_node_t *node, raft_request_t *req) {
    char *leader = raft_node_leader_id(node);
    char peer[300] = "";
    if (leader && *leader) {
        int colons = 0;
        for (const char *p = leader; *p; p++) {
            colons += *p == ':';
        }
        /* "ip:port:idx" gains braft's role; a bracketed IPv6 address or a
         * peer id that names its role already stays as it is. */
        snprintf(peer, sizeof peer, colons == 2 && leader[0] != '[' ? "%s:0" : "%s", leader);
    }
    raft_string_free(leader);
    reply_response(req, false, false, 0, peer);
}

static void on_apply(void *ctx, raft_iterator_t *it) {
    counter_t *c = ctx;
    for (; raft_iterator_valid(it); raft_iterator_next(it)) {
        size_t len = 0;
        const uint8_t *data = raft_iterator_data(it, &len);
        fetch_add_request_t add_req;
        int64_t delta = 0;
        if (fetch_add_parse(data, len, &add_req)) {
            delta = add_req.value;
        } else {
            /* The handler only proposes well-formed adds; anything else
             * is skipped the same way on every replica. */
            fprintf(stderr, "counter: skipping malformed entry %" PRId64 " (%zu bytes)\n",
                    raft_iterator_index(it), len);
        }
        pthread_mutex_lock(&c->mu);
        int64_t before = c->value;
        c->value = (int64_t)((uint64_t)before + (uint64_t)delta); /* wraps like braft's atomic add */
        c->applied_index = raft_iterator_index(it);
        pthread_mutex_unlock(&c->mu);

        /* Our own proposal of this term: its done_ctx is the request,
         * answered here with the value before the add, as braft's counter
         * does in on_apply (the answer leaves when this batch of callbacks
         * ends). */
        raft_request_t *req = raft_iterator_done(it);
        if (req) {
            reply_response(req, true, true, before, NULL);
        }
    }
}

/* The task's done (its context is the request): runs exactly once, after
 * on_apply answered the request, or with an error. EPERM (not leader, term
 * mismatch, overwritten) means the entry will never apply: braft's
 * redirect. Any other failure leaves the outcome unknown, which
 * success=false must not claim. */
static void add_done(void *ctx, const raft_status_t *st) {
    raft_request_t *req = ctx;
    if (st->code == 0) {
        return; /* on_apply answered */
    }
    if (st->code == EPERM) {
        reply_not_leader(counter.node, req);
    } else {
        reply_write_failed(counter.node, req, st);
    }
}

/* Proposes `entry` with the request as the done's context: copied when it
 * is on the stack, handed over (and freed by the node) when `owned`. A
 * task the node does not take is answered here. */
static void propose_add(counter_t *c, raft_request_t *req, uint8_t *entry, size_t len, bool owned, int64_t term) {
    raft_task_t task = {.data = entry, .len = len, .done = add_done, .done_ctx = req, .expected_term = term};
    int rc = owned ? raft_node_apply_owned(c->node, &task, free_entry, NULL) : raft_node_apply(c->node, &task);
    if (rc != 0) {
        raft_request_reply_error(req, rc, raft_last_error(), NULL);
        if (owned) {
            free(entry);
        }
    }
}

static void handle_fetch_add(void *ctx, raft_request_t *req) {
    counter_t *c = ctx;
    size_t len = 0;
    const uint8_t *data = raft_request_data(req, &len);
    fetch_add_request_t add_req;
    if (!fetch_add_parse(data, len, &add_req)) {
        raft_request_reply_error(req, EINVAL, "malformed FetchAddRequest (the int64 value = 1 is required)", NULL);
        return;
    }
    int64_t term = __atomic_load_n(&c->leader_term, __ATOMIC_ACQUIRE);
    if (term < 0) {
        reply_not_leader(c->node, req);
        return;
    }
    size_t max = fetch_add_serialized_max(len);
    if (max <= ENTRY_ON_STACK) {
        uint8_t entry[ENTRY_ON_STACK];
        propose_add(c, req, entry, fetch_add_serialize(data, len, &add_req, entry), false, term);
        return;
    }
    uint8_t *entry = malloc(max);
    if (!entry) {
        raft_request_reply_error(req, ENOMEM, "out of memory", NULL);
        return;
    }
    /* The node takes the entry's buffer without a copy and frees it. */
    propose_add(c, req, entry, fetch_add_serialize(data, len, &add_req, entry), true, term);
}

/* Lease-read completion: the context carries both the request and the counter. */
typedef struct {
    counter_t *counter;
    raft_request_t *req;
} read_ctx_t;

static void read_done(void *ctx, const raft_status_t *st) {
    read_ctx_t *r = ctx;
    if (st->code == 0) {
        reply_response(r->req, true, true, counter_value(r->counter), NULL); /* linearizable now */
    } else if (st->code == EPERM) {
        reply_not_leader(r->counter->node, r->req);
    } else {
        raft_request_reply_error(r->req, st->code, st->message, NULL);
    }
    free(r);
}

/* braft's get answers from a leader's memory (its leader term is set); this
 * one reads under the leader lease, which also covers a leader that was
 * deposed without knowing it yet. The request (GetRequest{}) has no field. */
static void handle_get(void *ctx, raft_request_t *req) {
    counter_t *c = ctx;
    if (__atomic_load_n(&c->leader_term, __ATOMIC_ACQUIRE) < 0 || !raft_node_is_leader(c->node)) {
        reply_not_leader(c->node, req);
        return;
    }
    read_ctx_t *r = request_ctx_new(req, sizeof *r);
    if (!r) {
        return;
    }
    r->counter = c;
    r->req = req;
    /* Under a valid leader lease the read point is the commit index, served
     * once applied, with no round trip; otherwise a ReadIndex. */
    int rc = raft_node_lease_read(c->node, read_done, r);
    if (rc != 0) {
        raft_request_reply_error(req, rc, raft_last_error(), NULL);
        free(r);
    }
}

static void handle_status(void *ctx, raft_request_t *req) {
    counter_t *c = ctx;
    pthread_mutex_lock(&c->mu);
    int64_t value = c->value, applied = c->applied_index;
    pthread_mutex_unlock(&c->mu);
    char fields[96];
    snprintf(fields, sizeof fields, "\"value\":%" PRId64 ",\"applied_index\":%" PRId64, value, applied);
    reply_status_json(c->node, req, fields);
}

/* ---- snapshots: braft's file "data", a ProtoBufFile of Snapshot{value} ---- */

/* braft's ProtoBufFile: a 4-byte big-endian length, then the message. */
#define SNAPSHOT_FILE "data"

static void on_snapshot_save(void *ctx, raft_snapshot_writer_t *writer, raft_snapshot_done_t *done) {
    counter_t *c = ctx;
    uint8_t msg[1 + PB_VARINT_MAX];
    size_t len = snapshot_encode(msg, counter_value(c));
    uint8_t header[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    FILE *f = snapshot_file_create(writer, done, SNAPSHOT_FILE, "wb");
    if (!f) {
        return;
    }
    bool written = fwrite(header, 1, sizeof header, f) == sizeof header && fwrite(msg, 1, len, f) == len;
    snapshot_file_finish(writer, done, SNAPSHOT_FILE, f, written);
}

/* Reads Snapshot.value from the ProtoBufFile at `path`. */
static bool read_snapshot_value(const char *path, int64_t *value) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "counter: cannot open %s: %s\n", path, strerror(errno));
        return false;
    }
    uint8_t header[4], msg[64];
    bool ok = fread(header, 1, sizeof header, f) == sizeof header;
    size_t len = ok ? (size_t)header[0] << 24 | (size_t)header[1] << 16 | (size_t)header[2] << 8 | header[3] : 0;
    ok = ok && len <= sizeof msg && fread(msg, 1, len, f) == len;
    fclose(f);
    if (!ok || !snapshot_parse(msg, len, value)) {
        fprintf(stderr, "counter: %s is not a Snapshot message in a ProtoBufFile\n", path);
        return false;
    }
    return true;
}

static int32_t on_snapshot_load(void *ctx, const raft_snapshot_reader_t *reader) {
    counter_t *c = ctx;
    /* Like braft's counter: the snapshot must list the file. */
    bool listed = false;
    for (size_t i = 0; i < raft_snapshot_reader_file_count(reader) && !listed; i++) {
        const char *name = raft_snapshot_reader_file_name(reader, i);
        listed = name && !strcmp(name, SNAPSHOT_FILE);
    }
    if (!listed) {
        fprintf(stderr, "counter: no file `%s' in the snapshot at %s\n", SNAPSHOT_FILE,
                raft_snapshot_reader_path(reader));
        return -1;
    }
    char path[4096];
    snapshot_file_path(reader, SNAPSHOT_FILE, path, sizeof path);
    int64_t value = 0;
    if (!read_snapshot_value(path, &value)) {
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    c->value = value;
    c->applied_index = raft_snapshot_reader_index(reader);
    pthread_mutex_unlock(&c->mu);
    printf("snapshot loaded: index=%" PRId64 " value=%" PRId64 "\n", raft_snapshot_reader_index(reader), value);
    fflush(stdout);
    return 0;
}

static void on_leader_start(void *ctx, int64_t term) {
    counter_t *c = ctx;
    __atomic_store_n(&c->leader_term, term, __ATOMIC_RELEASE);
    printf("leader start: term=%" PRId64 " value=%" PRId64 "\n", term, counter_value(c));
    fflush(stdout);
}

static void on_leader_stop(void *ctx, const raft_status_t *st) {
    counter_t *c = ctx;
    leader_stopped(&c->leader_term, st);
}

static void on_error(void *ctx, const raft_status_t *st) {
    (void)ctx;
    fprintf(stderr, "counter: node error %d: %s\n", st->code, st->message);
}

static void on_shutdown(void *ctx) {
    (void)ctx;
    printf("state machine shut down\n");
    fflush(stdout);
}

/* SIGUSR1: what stop.sh compares across the replicas before stopping them. */
static void print_applied(void *ctx) {
    counter_t *c = ctx;
    pthread_mutex_lock(&c->mu);
    printf("applied: value=%" PRId64 " applied_index=%" PRId64 "\n", c->value, c->applied_index);
    pthread_mutex_unlock(&c->mu);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *ip = "127.0.0.1";
    long long port = 8100;
    long long max_segment_size = 0;
    bool lease = true;
    bool braft_compat = false;
    bool log_prealloc = false;
    node_flags_t nf = node_flags_defaults("127.0.0.1:8100:0,127.0.0.1:8101:0,127.0.0.1:8102:0", "Counter", 5000);
    /* braft's counter_server flags (-port, -conf, -group, -data_path, -ip,
     * -election_timeout_ms, -snapshot_interval) are NODE_FLAGS and these;
     * -raft_sync and -raft_max_segment_size are braft's global flags. */
    flag_t flags[] = {
        {"ip", FLAG_STR, &ip, "address to listen on and to name this peer by"},
        {"port", FLAG_INT, &port, "listen port (one port for raft and the counter methods)"},
        {"enable_leader_lease", FLAG_BOOL, &lease, "serve get from the leader lease when valid"},
        {"raft_sync", FLAG_BOOL, &nf.sync, "braft's name of --sync"},
        {"braft_compat", FLAG_BOOL, &braft_compat,
         "share the group with braft replicas (rolling upgrade from braft)"},
        {"raft_max_segment_size", FLAG_INT, &max_segment_size,
         "roll log segments at this many bytes (0: the library's default)"},
        {"log_prealloc", FLAG_BOOL, &log_prealloc,
         "keep the open log segment ahead with zeros (local-prealloc://: an fdatasync then writes the data "
         "alone; braft opens such a log only after rraft has cut it)"},
        NODE_FLAGS(nf),
    };
    flags_parse(argc, argv, flags, sizeof flags / sizeof flags[0]);

    /* SIGINT and SIGTERM stop the server, SIGUSR1 prints
     * "applied: value=V applied_index=I". */
    sigset_t signals;
    block_stop_signals(&signals, SIGUSR1);

    raft_node_options_t opts;
    if (!node_flags_options("counter_server", &nf, &opts)) {
        return 1;
    }
    if (log_prealloc) {
        /* opts.log_uri points at this buffer. */
        snprintf(nf.uris.log, sizeof nf.uris.log, "local-prealloc://%s/log", nf.data_path);
    }
    opts.enable_leader_lease = lease;
    opts.braft_compat = braft_compat;
    if (max_segment_size > 0) {
        opts.max_segment_size = (uint64_t)max_segment_size;
    }

    char addr[256], peer[300];
    snprintf(addr, sizeof addr, "%s:%lld", ip, port);
    snprintf(peer, sizeof peer, "%s:0", addr);

    pthread_mutex_init(&counter.mu, NULL);
    counter.leader_term = -1;

    const method_t methods[] = {
        {METHOD_FETCH_ADD, handle_fetch_add},
        {METHOD_GET, handle_get},
        {METHOD_STATUS, handle_status},
    };
    raft_fsm_vtable_t fsm = {
        .on_apply = on_apply,
        .on_shutdown = on_shutdown,
        .on_snapshot_save = on_snapshot_save,
        .on_snapshot_load = on_snapshot_load,
        .on_leader_start = on_leader_start,
        .on_leader_stop = on_leader_stop,
        .on_error = on_error,
        .on_start_following = print_start_following,
    };
    raft_server_t *server;
    if (!start_service("counter_server", addr, nf.group, peer, methods, sizeof methods / sizeof methods[0], &opts,
                       &fsm, &counter, &server, &counter.node)) {
        return 1;
    }
    char *status = raft_node_status_json(counter.node);
    printf("counter_server started: peer=%s group=%s status=%s\n", peer, nf.group, status ? status : "null");
    raft_string_free(status);
    fflush(stdout);

    wait_stop_signal(&signals, print_applied, &counter);
    stop_and_free(counter.node, server);

    pthread_mutex_lock(&counter.mu);
    printf("final: value=%" PRId64 " applied_index=%" PRId64 "\n", counter.value, counter.applied_index);
    pthread_mutex_unlock(&counter.mu);
    fflush(stdout);
    return 0;
}
