/*
 * What the example servers (counter, kv, coffee) share around the rraft C
 * API: a node's store URIs under one directory, the options and flags
 * every server takes, the answers a leader-only method gives, proposing a
 * request's payload, snapshot files, the JSON status reply, starting a
 * server with its node and methods, and waiting for a stop signal.
 *
 * Header-only: every example is one translation unit.
 */
#ifndef EXAMPLES_SERVICE_H
#define EXAMPLES_SERVICE_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rraft.h"

#include "dirs.h"
#include "flags.h"

/* The rraft header does not export raft_log_level_t (an enum on the Rust
 * side): 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace. */
#define LOG_LEVEL_WARN 2
#define LOG_LEVEL_INFO 3

/* ---- a node's storage: log, meta and snapshots under one directory ---- */

typedef struct {
    char log[4200];
    char meta[4200];
    char snapshot[4200];
} store_uris_t;

static inline void store_uris_init(store_uris_t *u, const char *dir) {
    snprintf(u->log, sizeof u->log, "local://%s/log", dir);
    snprintf(u->meta, sizeof u->meta, "local://%s/raft_meta", dir);
    snprintf(u->snapshot, sizeof u->snapshot, "local://%s/snapshot", dir);
}

/* braft's defaults, then what every example chooses: its configuration,
 * its stores (`uris` must outlive raft_node_init) and election timeout. */
static inline void node_options_init(raft_node_options_t *opts, const char *initial_conf,
                                     const store_uris_t *uris, long long election_timeout_ms) {
    raft_node_options_init(opts);
    opts->initial_conf = initial_conf;
    opts->log_uri = uris->log;
    opts->raft_meta_uri = uris->meta;
    opts->snapshot_uri = uris->snapshot;
    opts->election_timeout_ms = (int32_t)election_timeout_ms;
}

/* ---- answers of leader-only methods ---- */

/* Not the leader: tell the caller who is (NULL when unknown). */
static inline void reply_redirect(raft_node_t *node, raft_request_t *req) {
    char *leader = raft_node_leader_id(node);
    raft_request_reply_error(req, EPERM, "not leader", leader);
    raft_string_free(leader);
}

/* The term this node leads in (as on_leader_start stored it in
 * `*leader_term`), or -1 after answering the request with a redirect. */
static inline int64_t leading_term_or_redirect(raft_node_t *node, const int64_t *leader_term,
                                               raft_request_t *req) {
    int64_t term = __atomic_load_n(leader_term, __ATOMIC_ACQUIRE);
    if (term < 0 || !raft_node_is_leader(node)) {
        reply_redirect(node, req);
        return -1;
    }
    return term;
}

/* Allocates a request's context (zeroed), or answers ENOMEM and returns NULL. */
static inline void *request_ctx_new(raft_request_t *req, size_t size) {
    void *ctx = calloc(1, size);
    if (!ctx) {
        raft_request_reply_error(req, ENOMEM, "out of memory", NULL);
    }
    return ctx;
}

/* Proposes the request's payload as the log entry. `expected_term`: if
 * leadership moved since on_leader_start, the node refuses (EPERM) rather
 * than apply under a term the caller did not see start. When the node
 * does not take the task, its done will not run: the request is answered
 * here and `done_ctx` freed. */
static inline void propose_request(raft_node_t *node, raft_request_t *req, const uint8_t *data, size_t len,
                                   int64_t expected_term, void (*done)(void *, const raft_status_t *),
                                   void *done_ctx) {
    raft_task_t task = {
        .data = data, .len = len, .done = done, .done_ctx = done_ctx, .expected_term = expected_term};
    int rc = raft_node_apply(node, &task);
    if (rc != 0) {
        raft_request_reply_error(req, rc, raft_last_error(), NULL);
        free(done_ctx);
    }
}

/* Releases an entry proposed with propose_request_owned (malloc'd). */
static inline void free_entry(void *ctx, uint8_t *data, uintptr_t len) {
    (void)ctx;
    (void)len;
    free(data);
}

/* As propose_request, for an entry the caller built with malloc: the node
 * takes the buffer without copying it and frees it once it no longer
 * needs it. If the node does not take the task, the buffer is freed here
 * too, so the caller never frees `data`. */
static inline void propose_request_owned(raft_node_t *node, raft_request_t *req, uint8_t *data, size_t len,
                                         int64_t expected_term, void (*done)(void *, const raft_status_t *),
                                         void *done_ctx) {
    raft_task_t task = {
        .data = data, .len = len, .done = done, .done_ctx = done_ctx, .expected_term = expected_term};
    int rc = raft_node_apply_owned(node, &task, free_entry, NULL);
    if (rc != 0) {
        raft_request_reply_error(req, rc, raft_last_error(), NULL);
        free(done_ctx);
        free(data);
    }
}

/* A proposal's done that failed: EPERM (not leader, term mismatch,
 * overwritten) means the entry will never be applied, so the client may
 * safely retry on the leader; anything else (shut down, covered by an
 * installed snapshot) leaves the outcome unknown, answered with a code
 * raft_client_t does not retry. */
static inline void reply_write_failed(raft_node_t *node, raft_request_t *req, const raft_status_t *st) {
    if (st->code == EPERM) {
        reply_redirect(node, req);
        return;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "outcome unknown: %s (%s)", raft_strerror(st->code), st->message);
    raft_request_reply_error(req, RAFT_ERAFTTIMEDOUT, msg, NULL);
}

/* A read's done that failed: EPERM redirects, anything else is passed on. */
static inline void reply_read_failed(raft_node_t *node, raft_request_t *req, const raft_status_t *st) {
    if (st->code == EPERM) {
        reply_redirect(node, req);
    } else {
        raft_request_reply_error(req, st->code, st->message, NULL);
    }
}

/* Answers `{<fields>,"node":<raft_node_status_json>}`; `fields` is the
 * caller's JSON members without braces. */
static inline void reply_status_json(raft_node_t *node, raft_request_t *req, const char *fields) {
    char *status = raft_node_status_json(node);
    size_t cap = strlen(fields) + 16 + (status ? strlen(status) : 4);
    char *out = malloc(cap);
    if (!out) {
        raft_string_free(status);
        raft_request_reply_error(req, ENOMEM, "out of memory", NULL);
        return;
    }
    int n = snprintf(out, cap, "{%s,\"node\":%s}", fields, status ? status : "null");
    raft_request_reply(req, (const uint8_t *)out, (size_t)n);
    free(out);
    raft_string_free(status);
}

/* ---- state-machine callbacks ---- */

/* on_leader_stop's common part: no longer leading (for
 * leading_term_or_redirect), and a log line. */
static inline void leader_stopped(int64_t *leader_term, const raft_status_t *st) {
    __atomic_store_n(leader_term, -1, __ATOMIC_RELEASE);
    printf("leader stop: %s\n", st->message);
    fflush(stdout);
}

/* An on_start_following that prints the new leader. */
static inline void print_start_following(void *ctx, const char *leader, int64_t term) {
    (void)ctx;
    printf("start following: leader=%s term=%" PRId64 "\n", leader, term);
    fflush(stdout);
}

/* ---- snapshots: one file per state machine ---- */

/* Opens `name` in the snapshot being written; on failure runs the done
 * with EIO and returns NULL. */
static inline FILE *snapshot_file_create(raft_snapshot_writer_t *writer, raft_snapshot_done_t *done,
                                         const char *name, const char *mode) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", raft_snapshot_writer_path(writer), name);
    FILE *f = fopen(path, mode);
    if (!f) {
        raft_snapshot_done_run(done, EIO, strerror(errno));
    }
    return f;
}

/* Makes the file durable, closes it, adds it to the snapshot and runs the
 * done with the outcome; `written` says whether every write succeeded. */
static inline void snapshot_file_finish(raft_snapshot_writer_t *writer, raft_snapshot_done_t *done,
                                        const char *name, FILE *f, bool written) {
    bool ok = written && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        raft_snapshot_done_run(done, EIO, "writing the snapshot failed");
        return;
    }
    int rc = raft_snapshot_writer_add_file(writer, name);
    raft_snapshot_done_run(done, rc, rc ? raft_last_error() : NULL);
}

/* The path of `name` in the snapshot being loaded. */
static inline void snapshot_file_path(const raft_snapshot_reader_t *reader, const char *name, char *path,
                                      size_t len) {
    snprintf(path, len, "%s/%s", raft_snapshot_reader_path(reader), name);
}

/* ---- process ---- */

/* ---- a server process: flags, start, wait for a stop signal, stop ---- */

/* The flags of every example server besides its own (see NODE_FLAGS). */
typedef struct {
    const char *conf;
    const char *data_path;
    const char *group;
    long long election_timeout_ms;
    long long snapshot_interval;
    long long catchup_margin;
    bool sync;
    bool verbose;
    store_uris_t uris; /* under data_path, by node_flags_options */
} node_flags_t;

/* The defaults the example servers share (braft's counter's): data in
 * ./data, a snapshot every 30 s keeping 1000 entries behind it, sync on. */
static inline node_flags_t node_flags_defaults(const char *conf, const char *group, long long election_timeout_ms) {
    node_flags_t nf = {
        .conf = conf,
        .data_path = "./data",
        .group = group,
        .election_timeout_ms = election_timeout_ms,
        .snapshot_interval = 30,
        .catchup_margin = 1000,
        .sync = true,
    };
    return nf;
}

/* flag_t entries for a node_flags_t (in a flag_t array initializer). */
#define NODE_FLAGS(nf)                                                                                     \
    {"conf", FLAG_STR, &(nf).conf, "initial configuration of the group (used only on an empty data dir)"}, \
        {"data_path", FLAG_STR, &(nf).data_path, "directory of the log, meta and snapshots"},              \
        {"group", FLAG_STR, &(nf).group, "id of the Raft group"},                                          \
        {"election_timeout_ms", FLAG_INT, &(nf).election_timeout_ms, "election timeout (ms)"},             \
        {"snapshot_interval", FLAG_INT, &(nf).snapshot_interval, "seconds between snapshots (<= 0: never)"}, \
        {"catchup_margin", FLAG_INT, &(nf).catchup_margin, "log entries kept behind a snapshot"},          \
        {"sync", FLAG_BOOL, &(nf).sync, "fdatasync the log before acknowledging"},                         \
        {"verbose", FLAG_BOOL, &(nf).verbose, "library log at info level (default: warnings)"}

/* After flags_parse: sets the library's log level, creates the data
 * directory (with its parents) and fills `opts` from the flags. Returns
 * false, having said why, when the directory cannot be made. */
static inline bool node_flags_options(const char *prog, node_flags_t *nf, raft_node_options_t *opts) {
    raft_set_log_level(nf->verbose ? LOG_LEVEL_INFO : LOG_LEVEL_WARN);
    if (make_dirs(nf->data_path) != 0) {
        fprintf(stderr, "%s: cannot create %s: %s\n", prog, nf->data_path, strerror(errno));
        return false;
    }
    store_uris_init(&nf->uris, nf->data_path);
    node_options_init(opts, nf->conf, &nf->uris, nf->election_timeout_ms);
    opts->snapshot_interval_s = (int32_t)nf->snapshot_interval;
    opts->catchup_margin = nf->catchup_margin;
    opts->sync = nf->sync;
    return true;
}

/* One of a server's methods, served with the state machine as context. */
typedef struct {
    const char *name;
    raft_method_fn handler;
} method_t;

/* Starts a server on `listen_addr` serving `methods`, with one node
 * `peer` of `group` initialized with `opts` and `fsm` (context `ctx`).
 * `*node` is set as soon as the node exists, before any method can run:
 * pass the state machine's own node field. Prints why and frees what it
 * made when a step fails. */
static inline bool start_service(const char *prog, const char *listen_addr, const char *group, const char *peer,
                                 const method_t *methods, size_t n_methods, const raft_node_options_t *opts,
                                 const raft_fsm_vtable_t *fsm, void *ctx, raft_server_t **server,
                                 raft_node_t **node) {
    *server = raft_server_start(listen_addr);
    if (!*server) {
        fprintf(stderr, "%s: cannot listen on %s: %s\n", prog, listen_addr, raft_last_error());
        return false;
    }
    *node = raft_node_new(*server, group, peer);
    if (!*node) {
        fprintf(stderr, "%s: bad peer %s: %s\n", prog, peer, raft_last_error());
        raft_server_free(*server);
        return false;
    }
    const char *failed = NULL;
    for (size_t i = 0; i < n_methods && !failed; i++) {
        if (raft_server_add_method(*server, methods[i].name, methods[i].handler, ctx) != 0) {
            failed = "add_method";
        }
    }
    if (!failed && raft_node_init(*node, opts, fsm, ctx) != 0) {
        failed = "init failed";
    }
    if (failed) {
        fprintf(stderr, "%s: %s: %s\n", prog, failed, raft_last_error());
        raft_node_free(*node);
        raft_server_free(*server);
        return false;
    }
    return true;
}

/* Blocks SIGINT, SIGTERM and `extra` (0: none) in every thread (the
 * library's threads inherit this mask) so that wait_stop_signal takes
 * them; ignores SIGPIPE. Call before the library starts threads. */
static inline void block_stop_signals(sigset_t *signals, int extra) {
    sigemptyset(signals);
    sigaddset(signals, SIGINT);
    sigaddset(signals, SIGTERM);
    if (extra) {
        sigaddset(signals, extra);
    }
    pthread_sigmask(SIG_BLOCK, signals, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Waits for SIGINT or SIGTERM, running `on_extra(ctx)` for every other
 * signal of `signals` meanwhile, then says which signal came. */
static inline void wait_stop_signal(const sigset_t *signals, void (*on_extra)(void *), void *ctx) {
    int sig = 0;
    for (;;) {
        sigwait(signals, &sig);
        if (sig == SIGINT || sig == SIGTERM) {
            break;
        }
        if (on_extra) {
            on_extra(ctx);
        }
    }
    printf("got signal %d, shutting down\n", sig);
    fflush(stdout);
}

/* Node first (pending requests are answered by their done callbacks),
 * then the server. */
static inline void stop_and_free(raft_node_t *node, raft_server_t *server) {
    raft_node_shutdown(node, NULL, NULL);
    raft_node_join(node);
    raft_server_stop(server);
    raft_node_free(node);
    raft_server_free(server);
}

#endif /* EXAMPLES_SERVICE_H */
