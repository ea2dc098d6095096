/*
 * counter_server: braft's example/counter in C on rraft.
 *
 * A replicated 64-bit counter. Three of these processes (run_server.sh)
 * form one Raft group; each process hosts one node and the counter's
 * methods on one port:
 *
 *   Counter.fetch_add  leader only: proposes the add through the log and
 *                      answers, once the entry is applied, with the value
 *                      before the add.
 *   Counter.get        leader only: a linearizable read (the leader lease
 *                      when it is valid, otherwise a ReadIndex round).
 *   Counter.status     any node: its local value and status (for tests and
 *                      operators; not linearizable).
 *
 * A follower answers the leader-only methods with EPERM and the leader's
 * id; raft_client_t (see counter_client.c) follows that hint.
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

/* ---- exactly-once sessions: client_id -> last seq and its result ---- */

typedef struct {
    uint64_t client_id; /* 0 = empty slot */
    uint64_t seq;
    int64_t result;
} session_t;

typedef struct {
    session_t *slots;
    size_t cap; /* power of two */
    size_t len;
} sessions_t;

static size_t slot_of(uint64_t id, size_t cap) {
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)id & (cap - 1);
}

static session_t *sessions_find(sessions_t *t, uint64_t id) {
    if (t->cap == 0) {
        return NULL;
    }
    for (size_t i = slot_of(id, t->cap);; i = (i + 1) & (t->cap - 1)) {
        if (t->slots[i].client_id == id) {
            return &t->slots[i];
        }
        if (t->slots[i].client_id == 0) {
            return NULL;
        }
    }
}

static session_t *sessions_insert(sessions_t *t, uint64_t id) {
    if ((t->len + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        session_t *slots = calloc(cap, sizeof *slots);
        if (!slots) {
            perror("calloc");
            abort();
        }
        for (size_t k = 0; k < t->cap; k++) {
            if (t->slots[k].client_id) {
                size_t i = slot_of(t->slots[k].client_id, cap);
                while (slots[i].client_id) {
                    i = (i + 1) & (cap - 1);
                }
                slots[i] = t->slots[k];
            }
        }
        free(t->slots);
        t->slots = slots;
        t->cap = cap;
    }
    size_t i = slot_of(id, t->cap);
    while (t->slots[i].client_id) {
        i = (i + 1) & (t->cap - 1);
    }
    t->slots[i].client_id = id;
    t->len++;
    return &t->slots[i];
}

static void sessions_clear(sessions_t *t) {
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ---- the state machine ---- */

typedef struct {
    raft_node_t *node;
    pthread_mutex_t mu; /* guards value, applied_index, sessions */
    int64_t value;
    int64_t applied_index;
    sessions_t sessions;
    int64_t duplicates; /* retried adds answered from the session table */
    int64_t leader_term; /* -1 unless leading; __atomic access */
} counter_t;

/* One fetch_add in flight on this node (the task's done_ctx). */
typedef enum { ADD_APPLIED, ADD_DUPLICATE, ADD_STALE } add_outcome_t;

typedef struct {
    counter_t *counter;
    raft_request_t *req;
    add_outcome_t outcome; /* set by on_apply */
    int64_t before;        /* set by on_apply */
} add_ctx_t;

static int64_t counter_value(counter_t *c) {
    pthread_mutex_lock(&c->mu);
    int64_t v = c->value;
    pthread_mutex_unlock(&c->mu);
    return v;
}

static void reply_i64(raft_request_t *req, int64_t v) {
    uint8_t buf[8];
    put_u64(buf, (uint64_t)v);
    raft_request_reply(req, buf, sizeof buf);
}

static void on_apply(void *ctx, raft_iterator_t *it) {
    counter_t *c = ctx;
    for (; raft_iterator_valid(it); raft_iterator_next(it)) {
        size_t len = 0;
        const uint8_t *data = raft_iterator_data(it, &len);
        int64_t delta = 0;
        uint64_t client_id = 0, seq = 0;
        if (len == FETCH_ADD_LEN || len == FETCH_ADD_SHORT_LEN) {
            delta = (int64_t)get_u64(data);
            if (len == FETCH_ADD_LEN) {
                client_id = get_u64(data + 8);
                seq = get_u64(data + 16);
            }
        } else {
            /* The handler only proposes well-formed adds; anything else
             * is skipped the same way on every replica. */
            fprintf(stderr, "counter: skipping malformed entry %" PRId64 " (%zu bytes)\n",
                    raft_iterator_index(it), len);
        }

        add_outcome_t outcome = ADD_APPLIED;
        pthread_mutex_lock(&c->mu);
        int64_t before = c->value;
        session_t *s = client_id ? sessions_find(&c->sessions, client_id) : NULL;
        if (s && seq == s->seq) {
            outcome = ADD_DUPLICATE; /* a retry: same answer, no second add */
            before = s->result;
            c->duplicates++;
        } else if (s && seq < s->seq) {
            outcome = ADD_STALE; /* the client moved on long ago */
        } else {
            c->value += delta;
            if (client_id) {
                if (!s) {
                    s = sessions_insert(&c->sessions, client_id);
                }
                s->seq = seq;
                s->result = before;
            }
        }
        c->applied_index = raft_iterator_index(it);
        pthread_mutex_unlock(&c->mu);

        /* Our own proposal of this term: leave the result for add_done,
         * which the library runs once on_apply has passed this entry. */
        add_ctx_t *add = raft_iterator_done(it);
        if (add) {
            add->outcome = outcome;
            add->before = before;
        }
    }
}

/* The task's done: runs exactly once, after on_apply or with an error. */
static void add_done(void *ctx, const raft_status_t *st) {
    add_ctx_t *add = ctx;
    if (st->code == 0) {
        if (add->outcome == ADD_STALE) {
            raft_request_reply_error(add->req, EALREADY, "stale request (seq older than the session's)", NULL);
        } else {
            reply_i64(add->req, add->before);
        }
    } else {
        reply_write_failed(add->counter->node, add->req, st);
    }
    free(add);
}

static void handle_fetch_add(void *ctx, raft_request_t *req) {
    counter_t *c = ctx;
    size_t len = 0;
    const uint8_t *data = raft_request_data(req, &len);
    if (len != FETCH_ADD_LEN && len != FETCH_ADD_SHORT_LEN) {
        raft_request_reply_error(req, EINVAL, "fetch_add wants 8 or 24 bytes", NULL);
        return;
    }
    int64_t term = leading_term_or_redirect(c->node, &c->leader_term, req);
    if (term < 0) {
        return;
    }
    add_ctx_t *add = request_ctx_new(req, sizeof *add);
    if (!add) {
        return;
    }
    add->counter = c;
    add->req = req;
    propose_request(c->node, req, data, len, term, add_done, add);
}

/* ReadIndex completion: the context carries both the request and the counter. */
typedef struct {
    counter_t *counter;
    raft_request_t *req;
} read_ctx_t;

static void read_done(void *ctx, const raft_status_t *st) {
    read_ctx_t *r = ctx;
    if (st->code == 0) {
        reply_i64(r->req, counter_value(r->counter)); /* linearizable now */
    } else {
        reply_read_failed(r->counter->node, r->req, st);
    }
    free(r);
}

static void handle_get(void *ctx, raft_request_t *req) {
    counter_t *c = ctx;
    if (!raft_node_is_leader(c->node)) {
        reply_redirect(c->node, req);
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
    int64_t value = c->value, applied = c->applied_index, dups = c->duplicates;
    pthread_mutex_unlock(&c->mu);
    char fields[128];
    snprintf(fields, sizeof fields,
             "\"value\":%" PRId64 ",\"applied_index\":%" PRId64 ",\"duplicates\":%" PRId64, value, applied,
             dups);
    reply_status_json(c->node, req, fields);
}

/* ---- snapshots: one text file "counter" ---- */

#define SNAPSHOT_FILE "counter"

static void on_snapshot_save(void *ctx, raft_snapshot_writer_t *writer, raft_snapshot_done_t *done) {
    counter_t *c = ctx;
    FILE *f = snapshot_file_create(writer, done, SNAPSHOT_FILE, "w");
    if (!f) {
        return;
    }
    /* Callbacks run one at a time, so on_apply cannot change the state
     * under us; the lock only keeps the IO threads' readers consistent. */
    pthread_mutex_lock(&c->mu);
    fprintf(f, "value %" PRId64 "\nsessions %zu\n", c->value, c->sessions.len);
    for (size_t i = 0; i < c->sessions.cap; i++) {
        const session_t *s = &c->sessions.slots[i];
        if (s->client_id) {
            fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRId64 "\n", s->client_id, s->seq, s->result);
        }
    }
    pthread_mutex_unlock(&c->mu);
    snapshot_file_finish(writer, done, SNAPSHOT_FILE, f, !ferror(f));
}

static int32_t on_snapshot_load(void *ctx, const raft_snapshot_reader_t *reader) {
    counter_t *c = ctx;
    char path[4096];
    snapshot_file_path(reader, SNAPSHOT_FILE, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "counter: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    int64_t value = 0;
    size_t n = 0;
    sessions_t sessions = {0};
    int ok = fscanf(f, "value %" SCNd64 " sessions %zu", &value, &n) == 2;
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t id, seq;
        int64_t result;
        ok = fscanf(f, "%" SCNu64 " %" SCNu64 " %" SCNd64, &id, &seq, &result) == 3 && id != 0;
        if (ok) {
            session_t *s = sessions_insert(&sessions, id);
            s->seq = seq;
            s->result = result;
        }
    }
    fclose(f);
    if (!ok) {
        fprintf(stderr, "counter: malformed snapshot file %s\n", path);
        sessions_clear(&sessions);
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    c->value = value;
    c->applied_index = raft_snapshot_reader_index(reader);
    sessions_clear(&c->sessions);
    c->sessions = sessions;
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
    bool lease = true;
    node_flags_t nf = node_flags_defaults("127.0.0.1:8100:0,127.0.0.1:8101:0,127.0.0.1:8102:0", "Counter", 5000);
    flag_t flags[] = {
        {"ip", FLAG_STR, &ip, "address to listen on and to name this peer by"},
        {"port", FLAG_INT, &port, "listen port (one port for raft and the counter methods)"},
        {"enable_leader_lease", FLAG_BOOL, &lease, "serve get from the leader lease when valid"},
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
    opts.enable_leader_lease = lease;

    char addr[256], peer[300];
    snprintf(addr, sizeof addr, "%s:%lld", ip, port);
    snprintf(peer, sizeof peer, "%s:0", addr);

    static counter_t counter;
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
    printf("final: value=%" PRId64 " applied_index=%" PRId64 " duplicates_since_start=%" PRId64 "\n", counter.value,
           counter.applied_index, counter.duplicates);
    pthread_mutex_unlock(&counter.mu);
    sessions_clear(&counter.sessions);
    fflush(stdout);
    return 0;
}
