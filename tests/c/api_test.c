/* Exercises every function of include/rraft.h, including the error paths
 * (NULL, malformed ids and URIs, calls after shutdown, freed handles),
 * with a small replicated counter. Exits 0 and prints
 * "c api: N passed, 0 failed" when every check holds. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rraft.h"

#include "check.h"

/* ---- a replicated counter ------------------------------------------- */
typedef struct {
    atomic_llong value;
    atomic_int applied;
    atomic_int leader_starts;
    atomic_int shutdowns;
    atomic_int errors;
    atomic_int loads;
    atomic_int confs;
    atomic_int saw_done_ctx;
    long long fail_at; /* payload value that makes on_apply fail (0: never) */
    raft_node_t *self;   /* for callbacks that call back into the library */
    atomic_int reentrant_calls;
    atomic_int join_in_callback; /* what raft_node_join returned inside on_shutdown */
    atomic_int slow_apply_ms;
} counter_t;

typedef struct {
    atomic_int done;
    atomic_int code;
    long long seen; /* written in on_apply through raft_iterator_done */
} waiter_t;

static void on_done(void *ctx, const raft_status_t *st) {
    waiter_t *w = ctx;
    atomic_store(&w->code, st->code);
    atomic_store(&w->done, 1);
}

static int wait_done(waiter_t *w, int ms) {
    for (int i = 0; i < ms / 5 && !atomic_load(&w->done); i++) sleep_ms(5);
    return atomic_load(&w->done) ? atomic_load(&w->code) : -1;
}

static void on_apply(void *ctx, raft_iterator_t *it) {
    counter_t *c = ctx;
    for (; raft_iterator_valid(it); raft_iterator_next(it)) {
        size_t len = 0;
        const uint8_t *data = raft_iterator_data(it, &len);
        long long delta = 0;
        if (len == sizeof delta) memcpy(&delta, data, sizeof delta);
        if (c->fail_at != 0 && delta == c->fail_at) {
            raft_iterator_set_error_and_rollback(it, 0, 0, "refusing this entry");
            return;
        }
        waiter_t *w = raft_iterator_done(it);
        if (w != NULL) {
            w->seen = atomic_load(&c->value);
            atomic_fetch_add(&c->saw_done_ctx, 1);
        }
        atomic_fetch_add(&c->value, delta);
        atomic_fetch_add(&c->applied, 1);
        if (c->self != NULL) {
            (void)raft_node_is_leader(c->self); /* calling back in is allowed */
            atomic_fetch_add(&c->reentrant_calls, 1);
        }
        if (atomic_load(&c->slow_apply_ms) > 0) sleep_ms(atomic_load(&c->slow_apply_ms));
        (void)raft_iterator_index(it);
        (void)raft_iterator_term(it);
    }
}

static void on_shutdown(void *ctx) {
    counter_t *c = ctx;
    if (c->self != NULL) atomic_store(&c->join_in_callback, raft_node_join(c->self));
    atomic_fetch_add(&c->shutdowns, 1);
}
static void on_leader_start(void *ctx, int64_t term) {
    (void)term;
    atomic_fetch_add(&((counter_t *)ctx)->leader_starts, 1);
}
static void on_error(void *ctx, const raft_status_t *st) {
    (void)st;
    atomic_fetch_add(&((counter_t *)ctx)->errors, 1);
}
static void on_conf(void *ctx, const char *voters, const char *learners, int64_t index) {
    (void)voters; (void)learners; (void)index;
    atomic_fetch_add(&((counter_t *)ctx)->confs, 1);
}

static void on_snapshot_save(void *ctx, raft_snapshot_writer_t *w, raft_snapshot_done_t *done) {
    counter_t *c = ctx;
    char path[4096];
    CHECK(raft_snapshot_writer_add_file(w, "../escape") == EINVAL);
    CHECK_CODE(raft_snapshot_writer_add_file(w, "missing"), ENOENT);
    snprintf(path, sizeof path, "%s/value", raft_snapshot_writer_path(w));
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        (void)raft_snapshot_done_run(done, EIO, "cannot create the value file");
        return;
    }
    fprintf(f, "%lld\n", (long long)atomic_load(&c->value));
    fclose(f);
    int rc = raft_snapshot_writer_add_file(w, "value");
    CHECK_CODE(raft_snapshot_done_run(done, rc, rc == 0 ? NULL : "add_file failed"), 0);
    /* the done and its writer are spent: every further use is EINVAL */
    CHECK_CODE(raft_snapshot_done_run(done, 0, NULL), EINVAL);
    CHECK_CODE(raft_snapshot_done_run(done, EIO, "again"), EINVAL);
    CHECK(raft_snapshot_writer_path(w) == NULL);
    CHECK_CODE(raft_snapshot_writer_add_file(w, "value"), EINVAL);
    CHECK_CODE(raft_snapshot_done_run((raft_snapshot_done_t *)w, 0, NULL), EINVAL);
    CHECK_CODE(raft_snapshot_done_run(NULL, 0, NULL), EINVAL);
}

static int on_snapshot_load(void *ctx, const raft_snapshot_reader_t *r) {
    counter_t *c = ctx;
    char path[4096];
    if (raft_snapshot_reader_file_count(r) != 1) return EINVAL;
    if (strcmp(raft_snapshot_reader_file_name(r, 0), "value") != 0) return EINVAL;
    if (raft_snapshot_reader_file_name(r, 1) != NULL) return EINVAL;
    if (raft_snapshot_reader_index(r) <= 0 || raft_snapshot_reader_term(r) <= 0) return EINVAL;
    snprintf(path, sizeof path, "%s/value", raft_snapshot_reader_path(r));
    FILE *f = fopen(path, "r");
    long long v = 0;
    if (f == NULL || fscanf(f, "%lld", &v) != 1) {
        if (f) fclose(f);
        return EIO;
    }
    fclose(f);
    atomic_store(&c->value, v);
    atomic_fetch_add(&c->loads, 1);
    return 0;
}

static raft_fsm_vtable_t vtable(void) {
    raft_fsm_vtable_t v;
    memset(&v, 0, sizeof v);
    v.on_apply = on_apply;
    v.on_shutdown = on_shutdown;
    v.on_snapshot_save = on_snapshot_save;
    v.on_snapshot_load = on_snapshot_load;
    v.on_leader_start = on_leader_start;
    v.on_error = on_error;
    v.on_configuration_committed = on_conf;
    return v;
}

/* ---- helpers -------------------------------------------------------- */
static char base_dir[256];
static int port;

static void peer(char *out, size_t n, int idx) { snprintf(out, n, "127.0.0.1:%d:%d", port, idx); }

static int init_node(raft_node_t *node, int idx, const char *conf, counter_t *c, bool lease) {
    test_stores_t stores;
    raft_node_options_t o;
    raft_node_options_init(&o);
    use_test_stores(&o, &stores, base_dir, idx);
    /* valgrind runs everything far slower: the harness asks for longer terms */
    o.election_timeout_ms = getenv("API_TEST_ELECTION_MS") ? atoi(getenv("API_TEST_ELECTION_MS")) : 300;
    o.initial_conf = conf;
    o.snapshot_interval_s = 0;
    o.enable_leader_lease = lease;
    raft_fsm_vtable_t v = vtable();
    return raft_node_init(node, &o, &v, c);
}

static int leader_of(raft_node_t **nodes, int n) {
    for (int round = 0; round < 2000; round++) {
        int found = -1, count = 0;
        for (int i = 0; i < n; i++)
            if (nodes[i] != NULL && raft_node_is_leader(nodes[i])) { found = i; count++; }
        if (count == 1) return found;
        sleep_ms(5);
    }
    return -1;
}

static int apply_value(raft_node_t *node, long long delta, int64_t expected_term, waiter_t *w) {
    raft_task_t t = {(const uint8_t *)&delta, sizeof delta, on_done, w, expected_term};
    return raft_node_apply(node, &t);
}

/* ---- user methods and the client ------------------------------------ */
static atomic_int method_calls;
static void echo_method(void *ctx, raft_request_t *req) {
    (void)ctx;
    size_t len = 0;
    const uint8_t *data = raft_request_data(req, &len);
    CHECK(raft_request_group(req) != NULL);
    /* rraft's own protocol carries no log id and no attachments */
    size_t att_len = 7;
    raft_request_attachment(req, &att_len);
    CHECK(att_len == 0 && raft_request_log_id(req) == 0);
    CHECK(raft_request_set_reply_attachment(req, (const uint8_t *)"a", 1) == 0);
    atomic_fetch_add(&method_calls, 1);
    raft_request_reply(req, data, len);
    CHECK(raft_request_reply(req, data, len) == EINVAL); /* answered already */
}
/* answers the request's bytes, with "<log id>:<attachment>" attached */
static void attach_method(void *ctx, raft_request_t *req) {
    (void)ctx;
    size_t len = 0, att_len = 0;
    const uint8_t *data = raft_request_data(req, &len);
    const uint8_t *att = raft_request_attachment(req, &att_len);
    char out[64];
    int n = snprintf(out, sizeof out, "%lld:%.*s", (long long)raft_request_log_id(req), (int)att_len,
                     (const char *)att);
    CHECK(raft_request_set_reply_attachment(req, (const uint8_t *)out, (size_t)n) == 0);
    raft_request_reply(req, data, len);
}
static void fail_method(void *ctx, raft_request_t *req) {
    (void)ctx;
    raft_request_reply_error(req, EPERM, "always fails", NULL);
}

typedef struct { atomic_int done; atomic_int code; char reply[64]; } call_t;
static void on_call(void *ctx, const raft_status_t *st, const uint8_t *data, size_t len) {
    call_t *c = ctx;
    if (len < sizeof c->reply) { memcpy(c->reply, data, len); c->reply[len] = 0; }
    atomic_store(&c->code, st->code);
    atomic_store(&c->done, 1);
}

/* ---- concurrent appliers --------------------------------------------- */
typedef struct { raft_node_t *node; atomic_int ok; } applier_t;
/* raft_node_apply_owned: every byte buffer handed over comes back once */
static atomic_int owned_freed;
static void free_owned(void *ctx, uint8_t *data, size_t len) {
    CHECK(ctx == &owned_freed);
    CHECK(data != NULL && len == sizeof(long long));
    free(data);
    atomic_fetch_add(&owned_freed, 1);
}

static int apply_owned_value(raft_node_t *node, long long delta, waiter_t *w) {
    long long *data = malloc(sizeof *data);
    *data = delta;
    raft_task_t t = {(const uint8_t *)data, sizeof *data, on_done, w, -1};
    int rc = raft_node_apply_owned(node, &t, free_owned, &owned_freed);
    if (rc != 0) free(data); /* not taken: still ours */
    return rc;
}

static void *apply_thread(void *arg) {
    applier_t *a = arg;
    waiter_t ws[50];
    memset(ws, 0, sizeof ws);
    for (int i = 0; i < 50; i++) apply_value(a->node, 1, -1, &ws[i]);
    for (int i = 0; i < 50; i++)
        if (wait_done(&ws[i], 10000) == 0) atomic_fetch_add(&a->ok, 1);
    return NULL;
}


/* ---- handles: typed ids that are never reused ------------------------ */
static void noop_done(void *ctx, const raft_status_t *st) { (void)ctx; (void)st; }
static void noop_call(void *ctx, const raft_status_t *st, const uint8_t *d, size_t n) {
    (void)ctx; (void)st; (void)d; (void)n;
}
static void noop_method(void *ctx, raft_request_t *req) { (void)ctx; raft_request_reply(req, NULL, 0); }
static int last_error_has(const char *word) { return strstr(raft_last_error(), word) != NULL; }

/* Every function taking a node refuses `n` with EINVAL (NULL/false/0 plus
 * an EINVAL text for the functions that return no code). */
static void expect_dead_node(raft_node_t *n) {
    raft_node_options_t o;
    raft_node_options_init(&o);
    raft_fsm_vtable_t v = vtable();
    raft_task_t t = {NULL, 0, noop_done, NULL, -1};
    char *out = NULL;
    CHECK_CODE(raft_node_init(n, &o, &v, NULL), EINVAL);
    CHECK_CODE(raft_node_apply(n, &t), EINVAL);
    CHECK_CODE(raft_node_shutdown(n, noop_done, NULL), EINVAL);
    CHECK_CODE(raft_node_join(n), EINVAL);
    CHECK(!raft_node_is_leader(n) && last_error_has("raft_node_t"));
    CHECK(raft_node_term(n) == 0 && last_error_has("raft_node_t"));
    CHECK(raft_node_leader_id(n) == NULL && last_error_has("raft_node_t"));
    CHECK_CODE(raft_node_list_peers(n, &out), EINVAL);
    CHECK_CODE(raft_node_add_peer(n, "127.0.0.1:1:0", noop_done, NULL), EINVAL);
    CHECK_CODE(raft_node_remove_peer(n, "127.0.0.1:1:0", noop_done, NULL), EINVAL);
    CHECK_CODE(raft_node_add_learner(n, "127.0.0.1:1:0", noop_done, NULL), EINVAL);
    CHECK_CODE(raft_node_change_peers(n, "127.0.0.1:1:0", noop_done, NULL), EINVAL);
    CHECK_CODE(raft_node_reset_peers(n, "127.0.0.1:1:0"), EINVAL);
    CHECK_CODE(raft_node_transfer_leadership_to(n, NULL), EINVAL);
    CHECK_CODE(raft_node_snapshot(n, noop_done, NULL), EINVAL);
    CHECK_CODE(raft_node_vote(n), EINVAL);
    CHECK_CODE(raft_node_read_index(n, noop_done, NULL), EINVAL);
    CHECK(!raft_node_is_leader_lease_valid(n) && last_error_has("raft_node_t"));
    CHECK(raft_node_status_json(n) == NULL && last_error_has("raft_node_t"));
    raft_node_free(n);
    CHECK(last_error_has("raft_node_t"));
}

static void expect_dead_server(raft_server_t *s) {
    CHECK(raft_server_port(s) == 0 && last_error_has("raft_server_t"));
    CHECK_CODE(raft_server_add_method(s, "x.y", noop_method, NULL), EINVAL);
    CHECK(raft_node_new(s, "g", "127.0.0.1:1:0") == NULL && last_error_has("raft_server_t"));
    CHECK_CODE(raft_server_stop(s), EINVAL);
    raft_server_free(s);
    CHECK(last_error_has("raft_server_t"));
}

static void expect_dead_client(raft_client_t *c) {
    raft_buffer_t b = {0};
    CHECK_CODE(raft_client_call(c, "x", NULL, 0, 100, &b), EINVAL);
    CHECK_CODE(raft_client_call_async(c, "x", NULL, 0, 100, noop_call, NULL), EINVAL);
    CHECK_CODE(raft_client_set_idempotent(c, true), EINVAL);
    CHECK_CODE(raft_client_set_protocol(c, RAFT_PROTOCOL_BAIDU_STD), EINVAL);
    CHECK(raft_client_leader(c) == NULL && last_error_has("raft_client_t"));
    CHECK_CODE(raft_client_refresh_leader(c, 100), EINVAL);
    raft_client_free(c);
    CHECK(last_error_has("raft_client_t"));
}

static void expect_dead_request(raft_request_t *r) {
    size_t len = 7;
    CHECK(raft_request_data(r, &len) == NULL && last_error_has("raft_request_t"));
    CHECK(raft_request_group(r) == NULL && last_error_has("raft_request_t"));
    CHECK(raft_request_attachment(r, &len) == NULL && last_error_has("raft_request_t"));
    CHECK(raft_request_log_id(r) == 0 && last_error_has("raft_request_t"));
    CHECK_CODE(raft_request_set_reply_attachment(r, NULL, 0), EINVAL);
    CHECK_CODE(raft_request_reply(r, NULL, 0), EINVAL);
    CHECK_CODE(raft_request_reply_error(r, EPERM, "no", NULL), EINVAL);
}

/* Requests answered by the probe's method, kept to be passed again later. */
static raft_request_t *answered[64];
static atomic_int answered_count;
static void keep_method(void *ctx, raft_request_t *req) {
    (void)ctx;
    int i = atomic_fetch_add(&answered_count, 1);
    CHECK_CODE(raft_request_reply(req, (const uint8_t *)"k", 1), 0);
    if (i < 64) answered[i] = req;
    expect_dead_request(req);
}

/* Creates, frees and reuses handles of every type many times; every stale
 * handle and every handle passed as another type is refused with EINVAL,
 * and freeing a stale handle never touches the object created after it. */
static void handle_probe(void) {
    enum { ROUNDS = 24 };
    raft_server_t *servers[ROUNDS];
    raft_node_t *nodes[ROUNDS];
    raft_client_t *clients[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        servers[i] = raft_server_start("127.0.0.1:0");
        CHECK(servers[i] != NULL);
        char id[64];
        snprintf(id, sizeof id, "127.0.0.1:%d:0", raft_server_port(servers[i]));
        nodes[i] = raft_node_new(servers[i], "probe", id);
        CHECK(nodes[i] != NULL);
        clients[i] = raft_client_new("probe", id);
        CHECK(clients[i] != NULL);
        raft_client_free(clients[i]);
        raft_node_free(nodes[i]);
        raft_server_free(servers[i]);
    }
    raft_server_t *live = raft_server_start("127.0.0.1:0");
    CHECK(live != NULL);
    int live_port = raft_server_port(live);
    char id[64], conf[64];
    snprintf(id, sizeof id, "127.0.0.1:%d:0", live_port);
    snprintf(conf, sizeof conf, "%s", id);
    raft_node_t *live_node = raft_node_new(live, "probe", id);
    raft_client_t *live_client = raft_client_new("probe", conf);
    CHECK(live_node != NULL && live_client != NULL);
    for (int i = 0; i < ROUNDS; i++) {
        CHECK((void *)servers[i] != (void *)live && (void *)nodes[i] != (void *)live_node &&
              (void *)clients[i] != (void *)live_client);
        expect_dead_server(servers[i]);
        expect_dead_node(nodes[i]);
        expect_dead_client(clients[i]);
    }
    int local = 0; /* not a handle at all: a plain address */
    /* a handle of one type passed as another */
    expect_dead_node((raft_node_t *)live);
    expect_dead_node((raft_node_t *)live_client);
    expect_dead_server((raft_server_t *)live_node);
    expect_dead_client((raft_client_t *)live_node);
    expect_dead_request((raft_request_t *)live);
    expect_dead_request((raft_request_t *)&local);
    expect_dead_node((raft_node_t *)&local);
    expect_dead_server((raft_server_t *)&local);
    /* the live objects survived every stale free */
    CHECK(raft_server_port(live) == live_port);
    CHECK(raft_node_join(live_node) == EINVAL && last_error_has("before shutdown")); /* alive */
    raft_client_free(live_client);
    raft_node_free(live_node);
    raft_server_free(live);
    expect_dead_client(live_client);
    expect_dead_node(live_node);
    expect_dead_server(live);
}

static int log_lines;
static void log_cb(void *ctx, int32_t level, const char *target, const char *msg) {
    (void)ctx;
    log_lines++;
    if (getenv("API_TEST_LOG") != NULL) fprintf(stderr, "log %d %s: %s\n", level, target, msg);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]); return 2; }
    snprintf(base_dir, sizeof base_dir, "%s", argv[1]);

    /* library-wide functions */
    CHECK(strlen(raft_version()) > 0);
    CHECK(strcmp(raft_strerror(0), "OK") == 0);
    CHECK(strstr(raft_strerror(RAFT_ENODESHUTDOWN), "shut down") != NULL);
    CHECK(strcmp(raft_strerror(-12345), "Unknown error code") == 0);
    CHECK(raft_set_log_level(99) == EINVAL);
    CHECK(raft_set_log_callback(log_cb, NULL, 2) == 0);
    CHECK(raft_set_log_level(getenv("API_TEST_LOG") != NULL ? 3 : 1) == 0);
    int g = raft_global_init(2);
    CHECK(g == 0 || g == EEXIST);
    CHECK(raft_global_init(-1) == EINVAL);
    raft_string_free(NULL);
    raft_buffer_free(NULL);
    CHECK(raft_node_options_init(NULL) == EINVAL);
    handle_probe();

    /* server */
    CHECK(raft_server_start(NULL) == NULL && strlen(raft_last_error()) > 0);
    CHECK(raft_server_start("not an address") == NULL);
    raft_server_t *server = raft_server_start("127.0.0.1:0");
    CHECK(server != NULL);
    port = raft_server_port(server);
    CHECK(port > 0);
    CHECK(raft_server_port(NULL) == 0);
    CHECK(raft_server_add_method(server, "test.echo", echo_method, NULL) == 0);
    CHECK(raft_server_add_method(server, "test.fail", fail_method, NULL) == 0);
    CHECK(raft_server_add_method(server, "test.echo", echo_method, NULL) == EEXIST);
    CHECK(raft_server_add_method(server, "raft.mine", echo_method, NULL) == EINVAL);
    CHECK(raft_server_add_method(server, "x", NULL, NULL) == EINVAL);
    CHECK(raft_server_add_method(NULL, "x", echo_method, NULL) == EINVAL);

    /* malformed node ids */
    char ids[4][64], conf[256], wrong[64];
    for (int i = 0; i < 4; i++) peer(ids[i], sizeof ids[i], i);
    snprintf(conf, sizeof conf, "%s,%s,%s,", ids[0], ids[1], ids[2]);
    snprintf(wrong, sizeof wrong, "127.0.0.1:%d:0", port == 65535 ? 1 : port + 1);
    CHECK(raft_node_new(server, "g", NULL) == NULL);
    CHECK(raft_node_new(server, "g", "garbage") == NULL);
    CHECK(raft_node_new(server, "g", "127.0.0.1:0:0") == NULL);
    CHECK(raft_node_new(server, "g", wrong) == NULL && strstr(raft_last_error(), "port") != NULL);
    CHECK(raft_node_new(server, "", ids[0]) == NULL);
    CHECK(raft_node_new(NULL, "g", ids[0]) == NULL);

    /* bad options */
    counter_t counters[4];
    memset(counters, 0, sizeof counters);
    raft_node_t *nodes[4] = {0};
    raft_node_t *probe = raft_node_new(server, "g", ids[0]);
    CHECK(probe != NULL);
    raft_node_options_t zero;
    memset(&zero, 0, sizeof zero);
    raft_fsm_vtable_t v = vtable();
    CHECK(raft_node_init(probe, &zero, &v, NULL) == EINVAL);
    raft_node_options_t o;
    raft_node_options_init(&o);
    CHECK(o.election_timeout_ms == 1000 && o.snapshot_interval_s == 3600 && o.catchup_margin == 1000 && o.sync);
    CHECK(o.quiesce_after_ms == 0); /* groups never quiesce unless asked */
    CHECK(!o.braft_compat);         /* braft's RaftService only when asked */
    o.log_uri = "memory://";
    o.raft_meta_uri = "local:///tmp/x";
    o.quiesce_after_ms = -1;
    CHECK(raft_node_init(probe, &o, &v, NULL) == EINVAL);
    o.quiesce_after_ms = 0;
    o.log_uri = "ftp://nowhere";
    o.raft_meta_uri = "local:///tmp/x";
    CHECK(raft_node_init(probe, &o, &v, NULL) == EINVAL);
    o.log_uri = "memory://";
    o.initial_conf = "127.0.0.1:1:0,bogus";
    CHECK(raft_node_init(probe, &o, &v, NULL) == EINVAL);
    raft_fsm_vtable_t no_apply = v;
    no_apply.on_apply = NULL;
    o.initial_conf = NULL;
    CHECK(raft_node_init(probe, &o, &no_apply, NULL) == EINVAL);
    CHECK(raft_node_init(probe, NULL, &v, NULL) == EINVAL);
    CHECK(raft_node_join(probe) == EINVAL); /* join before shutdown */
    raft_node_free(probe);
    CHECK(raft_node_is_leader(probe) == false); /* freed handle: an error, not a crash */
    CHECK(raft_node_vote(probe) == EINVAL);

    /* three nodes */
    for (int i = 0; i < 3; i++) {
        nodes[i] = raft_node_new(server, "g", ids[i]);
        CHECK(nodes[i] != NULL);
        counters[i].self = nodes[i];
        CHECK(init_node(nodes[i], i, conf, &counters[i], i == 0) == 0);
    }
    CHECK(init_node(nodes[0], 0, conf, &counters[0], true) == EINVAL); /* twice */
    {
        /* a data directory in use by a running node is locked */
        char other_id[64];
        counter_t spare;
        memset(&spare, 0, sizeof spare);
        peer(other_id, sizeof other_id, 7);
        raft_node_t *intruder = raft_node_new(server, "other", other_id);
        CHECK(intruder != NULL);
        CHECK(init_node(intruder, 1, other_id, &spare, false) == EBUSY);
        CHECK(strstr(raft_last_error(), "in use by another node") != NULL);
        raft_node_free(intruder);
    }
    int l = leader_of(nodes, 3);
    CHECK(l >= 0);
    if (l < 0) goto out;
    int f = (l + 1) % 3;
    char *leader = raft_node_leader_id(nodes[f]);
    for (int i = 0; i < 50 && leader == NULL; i++) { sleep_ms(10); leader = raft_node_leader_id(nodes[f]); }
    CHECK(leader != NULL && strcmp(leader, ids[l]) == 0);
    raft_string_free(leader);
    CHECK(raft_node_term(nodes[l]) > 0);
    char *peers = NULL;
    CHECK(raft_node_list_peers(nodes[l], &peers) == 0 && peers != NULL && strstr(peers, ids[2]) != NULL);
    raft_string_free(peers);
    CHECK(raft_node_list_peers(nodes[f], &peers) == EPERM);
    CHECK(raft_node_list_peers(nodes[l], NULL) == EINVAL);

    /* apply: success, the iterator's done ctx, term mismatch, follower */
    waiter_t ws[200];
    memset(ws, 0, sizeof ws);
    for (int i = 0; i < 200; i++) CHECK(apply_value(nodes[l], 1, -1, &ws[i]) == 0);
    int ok = 0;
    for (int i = 0; i < 200; i++) ok += wait_done(&ws[i], 10000) == 0;
    CHECK(ok == 200);
    CHECK(atomic_load(&counters[l].saw_done_ctx) == 200);
    CHECK(atomic_load(&counters[l].reentrant_calls) >= 200);
    CHECK(ws[199].seen == 199);
    waiter_t bad = {0}, fol = {0};
    CHECK(apply_value(nodes[l], 1, raft_node_term(nodes[l]) + 7, &bad) == 0);
    CHECK_CODE(wait_done(&bad, 5000), EPERM);
    CHECK(apply_value(nodes[f], 1, -1, &fol) == 0);
    CHECK_CODE(wait_done(&fol, 5000), EPERM);
    CHECK(raft_node_apply(nodes[l], NULL) == EINVAL);
    CHECK(raft_node_apply(NULL, NULL) == EINVAL);
    raft_task_t nodata = {NULL, 8, NULL, NULL, -1};
    CHECK(raft_node_apply(nodes[l], &nodata) == EINVAL);

    /* several C threads at once */
    applier_t appliers[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        appliers[i].node = nodes[l];
        atomic_store(&appliers[i].ok, 0);
        pthread_create(&threads[i], NULL, apply_thread, &appliers[i]);
    }
    for (int i = 0; i < 4; i++) { pthread_join(threads[i], NULL); CHECK(atomic_load(&appliers[i].ok) == 50); }
    for (int i = 0; i < 400 && atomic_load(&counters[f].value) < 400; i++) sleep_ms(10);
    CHECK(atomic_load(&counters[f].value) == 400);

    /* apply without a copy: applied like a copy, the bytes freed once */
    waiter_t owned[10];
    memset(owned, 0, sizeof owned);
    for (int i = 0; i < 10; i++) CHECK(apply_owned_value(nodes[l], 1, &owned[i]) == 0);
    for (int i = 0; i < 10; i++) CHECK_CODE(wait_done(&owned[i], 10000), 0);
    for (int i = 0; i < 400 && atomic_load(&counters[f].value) < 410; i++) sleep_ms(10);
    CHECK(atomic_load(&counters[f].value) == 410);
    waiter_t refused = {0};
    CHECK(apply_owned_value(nodes[f], 1, &refused) == 0); /* taken, then refused */
    CHECK_CODE(wait_done(&refused, 5000), EPERM);
    CHECK(apply_owned_value(NULL, 1, &refused) == EINVAL);
    {
        long long v = 1;
        raft_task_t t = {(const uint8_t *)&v, sizeof v, NULL, NULL, -1};
        CHECK(raft_node_apply_owned(nodes[l], &t, NULL, NULL) == EINVAL);
        CHECK(raft_node_apply_owned(nodes[l], NULL, free_owned, &owned_freed) == EINVAL);
        raft_task_t nulldata = {NULL, 8, NULL, NULL, -1};
        CHECK(raft_node_apply_owned(nodes[l], &nulldata, free_owned, &owned_freed) == EINVAL);
    }

    /* reads */
    waiter_t r1 = {0}, r2 = {0};
    CHECK(raft_node_read_index(nodes[l], on_done, &r1) == 0);
    CHECK(raft_node_read_index(nodes[f], on_done, &r2) == 0);
    CHECK_CODE(wait_done(&r1, 5000), 0);
    CHECK_CODE(wait_done(&r2, 5000), 0);
    CHECK(raft_node_read_index(nodes[l], NULL, NULL) == EINVAL);
    if (l == 0) {
        bool lease = false;
        for (int i = 0; i < 100 && !lease; i++) { lease = raft_node_is_leader_lease_valid(nodes[l]); sleep_ms(10); }
        CHECK(lease);
    }
    CHECK(!raft_node_is_leader_lease_valid(nodes[f]));

    /* status and snapshot */
    char *json = raft_node_status_json(nodes[l]);
    CHECK(json != NULL && strstr(json, "\"state\":\"Leader\"") != NULL);
    raft_string_free(json);
    waiter_t snap = {0};
    CHECK(raft_node_snapshot(nodes[l], on_done, &snap) == 0);
    CHECK_CODE(wait_done(&snap, 5000), 0);

    /* the user's methods and the client */
    CHECK(raft_client_new("g", "") == NULL);
    CHECK(raft_client_new(NULL, conf) == NULL);
    raft_client_t *client = raft_client_new("g", conf);
    CHECK(client != NULL);
    raft_buffer_t buf = {0};
    CHECK(raft_client_call(client, "test.echo", (const uint8_t *)"hello", 5, 5000, &buf) == 0);
    CHECK(buf.len == 5 && memcmp(buf.data, "hello", 5) == 0);
    raft_buffer_free(&buf);
    CHECK(buf.data == NULL && buf.len == 0);
    CHECK(raft_client_call(client, "test.fail", NULL, 0, 2000, &buf) != 0);

    /* the same methods over brpc's baidu_std, with log id and attachments */
    CHECK(raft_server_add_method(server, "test.Attach.echo", attach_method, NULL) == 0);
    CHECK(raft_client_set_protocol(client, RAFT_PROTOCOL_BAIDU_STD) == 0);
    raft_call_extras_t extras = {42, (const uint8_t *)"att", 3, {0}};
    CHECK_CODE(raft_client_call_with_extras(client, "test.Attach.echo", (const uint8_t *)"hi", 2, 5000, &buf,
                                            &extras), 0);
    CHECK(buf.len == 2 && memcmp(buf.data, "hi", 2) == 0);
    CHECK(extras.reply_attachment.len == 6 && memcmp(extras.reply_attachment.data, "42:att", 6) == 0);
    raft_buffer_free(&buf);
    raft_buffer_free(&extras.reply_attachment);
    CHECK(raft_client_call(client, "test.Attach.nope", NULL, 0, 2000, &buf) == 1002); /* ENOMETHOD */
    CHECK(raft_client_call_with_extras(client, "test.Attach.echo", NULL, 0, 2000, &buf, NULL) == EINVAL);
    CHECK(raft_client_set_protocol(client, RAFT_PROTOCOL_RRAFT) == 0);
    /* rraft's own protocol carries no attachments */
    CHECK_CODE(raft_client_call_with_extras(client, "test.Attach.echo", (const uint8_t *)"hi", 2, 5000, &buf,
                                            &extras), 0);
    CHECK(extras.reply_attachment.len == 0 && extras.reply_attachment.data == NULL);
    raft_buffer_free(&buf);
    CHECK(raft_client_call(client, "no.such.method", NULL, 0, 2000, &buf) != 0);
    CHECK(raft_client_call(client, "test.echo", NULL, 0, 0, &buf) == EINVAL);
    CHECK(raft_client_call(client, "test.echo", NULL, 0, 1000, NULL) == EINVAL);
    call_t call = {0};
    CHECK(raft_client_call_async(client, "test.echo", (const uint8_t *)"abc", 3, 5000, on_call, &call) == 0);
    for (int i = 0; i < 1000 && !atomic_load(&call.done); i++) sleep_ms(5);
    CHECK(atomic_load(&call.code) == 0 && strcmp(call.reply, "abc") == 0);
    /* answered requests are spent handles, however many came after them */
    CHECK(raft_server_add_method(server, "test.keep", keep_method, NULL) == 0);
    for (int i = 0; i < 10; i++) {
        CHECK_CODE(raft_client_call(client, "test.keep", NULL, 0, 5000, &buf), 0);
        raft_buffer_free(&buf);
    }
    CHECK(atomic_load(&answered_count) == 10);
    for (int i = 0; i < atomic_load(&answered_count); i++) expect_dead_request(answered[i]);
    expect_dead_request((raft_request_t *)client);
    CHECK(raft_client_set_idempotent(client, true) == 0);
    CHECK(raft_client_set_idempotent(NULL, true) == EINVAL);
    CHECK(raft_client_set_protocol(client, 2) == EINVAL);
    CHECK(raft_client_set_protocol(client, RAFT_PROTOCOL_RRAFT) == 0);
    CHECK(raft_client_refresh_leader(client, 5000) == 0);
    char *cl = raft_client_leader(client);
    CHECK(cl != NULL);
    raft_string_free(cl);
    raft_client_free(client);
    CHECK(raft_client_leader(client) == NULL);
    CHECK(atomic_load(&method_calls) >= 2);

    /* membership: a learner, promoted, removed; then a fourth node is gone */
    nodes[3] = raft_node_new(server, "g", ids[3]);
    CHECK(init_node(nodes[3], 3, "", &counters[3], false) == 0);
    waiter_t m1 = {0}, m2 = {0}, m3 = {0}, m4 = {0};
    CHECK(raft_node_add_learner(nodes[l], ids[3], on_done, &m1) == 0);
    CHECK_CODE(wait_done(&m1, 10000), 0);
    if (!atomic_load(&m1.done)) {
        for (int i = 0; i < 4; i++) {
            char *js = raft_node_status_json(nodes[i]);
            fprintf(stderr, "status of node %d: %s\n", i, js ? js : raft_last_error());
            raft_string_free(js);
        }
    }
    CHECK(raft_node_add_peer(nodes[l], ids[3], on_done, &m2) == 0);
    CHECK_CODE(wait_done(&m2, 10000), 0);
    for (int i = 0; i < 500 && atomic_load(&counters[3].value) != atomic_load(&counters[l].value); i++) sleep_ms(10);
    CHECK(atomic_load(&counters[3].value) == atomic_load(&counters[l].value)); /* the new voter caught up */
    CHECK(raft_node_add_peer(nodes[l], "garbage", on_done, &m3) == 0);
    CHECK_CODE(wait_done(&m3, 5000), EINVAL);
    CHECK(raft_node_remove_peer(nodes[l], ids[3], on_done, &m4) == 0);
    CHECK_CODE(wait_done(&m4, 10000), 0);
    CHECK(raft_node_add_peer(nodes[l], NULL, on_done, &m4) == EINVAL);
    waiter_t m5 = {0};
    CHECK(raft_node_change_peers(nodes[l], conf, on_done, &m5) == 0);
    CHECK_CODE(wait_done(&m5, 10000), 0);
    CHECK(atomic_load(&counters[l].confs) >= 2);
    CHECK(raft_node_reset_peers(nodes[l], "nonsense") == EINVAL);

    /* leadership transfer and vote */
    CHECK(raft_node_transfer_leadership_to(nodes[l], "127.0.0.1:1:9") == EINVAL);
    CHECK(raft_node_transfer_leadership_to(nodes[f], NULL) == EPERM);
    CHECK(raft_node_transfer_leadership_to(nodes[l], ids[f]) == 0);
    int l2 = -1;
    for (int i = 0; i < 400; i++) { l2 = leader_of(nodes, 3); if (l2 == f) break; sleep_ms(10); }
    CHECK(l2 == f);
    CHECK(raft_node_vote(nodes[l]) == 0);
    CHECK(leader_of(nodes, 3) >= 0);

    /* a state machine error stops its node */
    counters[3].fail_at = 0; /* node 3 was removed; make node 2 fail instead */
    int victim = (leader_of(nodes, 3) + 1) % 3;
    counters[victim].fail_at = 424242;
    waiter_t e1 = {0};
    int cur = leader_of(nodes, 3);
    CHECK(apply_value(nodes[cur], 424242, -1, &e1) == 0);
    CHECK_CODE(wait_done(&e1, 10000), 0);
    for (int i = 0; i < 500 && atomic_load(&counters[victim].errors) == 0; i++) sleep_ms(10);
    CHECK(atomic_load(&counters[victim].errors) == 1);
    json = raft_node_status_json(nodes[victim]);
    CHECK(json != NULL && strstr(json, "\"state\":\"Error\"") != NULL);
    raft_string_free(json);

    /* free a node while its on_apply is slow and entries are queued */
    {
        int cur2 = leader_of(nodes, 3);
        int slow = (cur2 + 2) % 3 == victim ? (cur2 + 1) % 3 : (cur2 + 2) % 3;
        atomic_store(&counters[slow].slow_apply_ms, 20);
        waiter_t q[20];
        memset(q, 0, sizeof q);
        for (int i = 0; i < 20; i++) apply_value(nodes[cur2], 1, -1, &q[i]);
        sleep_ms(50);
        raft_node_free(nodes[slow]); /* waits: no callback may run after it */
        CHECK(atomic_load(&counters[slow].shutdowns) == 1);
        CHECK_CODE(atomic_load(&counters[slow].join_in_callback), EINVAL);
        nodes[slow] = NULL;
        for (int i = 0; i < 20; i++) wait_done(&q[i], 10000);
    }

out:
    /* shutdown, calls after it, double shutdown, freed handles */
    for (int i = 0; i < 4; i++) {
        if (nodes[i] == NULL) continue;
        waiter_t s = {0};
        CHECK(raft_node_shutdown(nodes[i], on_done, &s) == 0);
        CHECK(raft_node_join(nodes[i]) == 0);
        CHECK_CODE(wait_done(&s, 5000), 0);
        CHECK(atomic_load(&counters[i].shutdowns) == 1);
        waiter_t after = {0};
        CHECK(apply_value(nodes[i], 1, -1, &after) == 0);
        CHECK_CODE(wait_done(&after, 1000), RAFT_ENODESHUTDOWN);
        CHECK(!raft_node_is_leader(nodes[i]));
        CHECK(raft_node_status_json(nodes[i]) == NULL);
        CHECK(raft_node_shutdown(nodes[i], NULL, NULL) == 0);
        raft_node_free(nodes[i]);
        raft_node_free(nodes[i]); /* double free of a handle is ignored */
        CHECK(raft_node_apply(nodes[i], NULL) == EINVAL);
    }
    /* every node is freed: the library holds none of the bytes it took */
    CHECK(atomic_load(&owned_freed) == 11);
    CHECK(raft_server_stop(server) == 0);
    raft_server_free(server);
    raft_server_free(server);
    CHECK(raft_server_stop(server) == EINVAL);
    CHECK(raft_set_log_callback(NULL, NULL, 2) == 0);
    printf("c api: %d passed, %d failed\n", atomic_load(&passed), atomic_load(&failed));
    return atomic_load(&failed) == 0 ? 0 : 1;
}
