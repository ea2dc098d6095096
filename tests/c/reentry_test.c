/* Calls back into the library from inside every callback and done, and
 * checks that every such call returns promptly (success or a clear error,
 * never a hang); shuts nodes down twice from one thread and from several
 * and checks that join and free wait for the node to be down; checks the
 * method answer timeout and apply_batch. Exits 0 and prints
 * "reentry: N passed, 0 failed" when every check holds.
 *
 * API_TEST_MAX_CALL_MS bounds each call (default 1000); API_TEST_ELECTION_MS
 * sets the election timeout (default 300). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rraft.h"

#include "check.h"

static int max_call_ms = 1000;
static atomic_int timed_calls;
/* Runs `expr` and fails the check when it took longer than max_call_ms. */
#define TIMED(where, expr)                                                   \
    do {                                                                     \
        double t0_ = now_ms();                                               \
        expr;                                                                \
        double dt_ = now_ms() - t0_;                                         \
        atomic_fetch_add(&timed_calls, 1);                                   \
        if (dt_ > max_call_ms) {                                             \
            atomic_fetch_add(&failed, 1);                                    \
            fprintf(stderr, "%s: %s took %.0f ms\n", where, #expr, dt_);     \
        } else {                                                             \
            atomic_fetch_add(&passed, 1);                                    \
        }                                                                    \
    } while (0)

/* ---- where a call back into the library was made from ----------------- */
enum site {
    S_APPLY, S_LEADER_START, S_LEADER_STOP, S_START_FOLLOWING, S_STOP_FOLLOWING,
    S_CONF, S_SNAP_SAVE, S_SNAP_LOAD, S_ERROR, S_SHUTDOWN, S_DONE_OK, S_DONE_ERR,
    S_READ_DONE, S_SHUTDOWN_DONE, S_LOG, S_METHOD, N_SITES
};
static const char *site_names[N_SITES] = {
    "on_apply", "on_leader_start", "on_leader_stop", "on_start_following",
    "on_stop_following", "on_configuration_committed", "on_snapshot_save",
    "on_snapshot_load", "on_error", "on_shutdown", "a task's done (success)",
    "a task's done (error)", "a read_index done", "a shutdown done", "a log callback",
    "a method handler"};
static atomic_int covered[N_SITES];

enum kind { PROBED, DESTROYED, PLAIN };
typedef struct {
    raft_node_t *_Atomic self;
    enum kind kind;
    enum site destroy_at; /* DESTROYED: where the node shuts itself down */
    int free_in_callback;
    int fail_on_f;        /* on_apply refuses the entry "F" */
    atomic_int destroyed;
    atomic_int join_code; /* what join returned where it was destroyed */
    atomic_int shutdowns, errors, applied, max_batch, loads;
} nctx_t;

static atomic_int async_dones;
static void count_done(void *ctx, const raft_status_t *st) {
    (void)ctx;
    (void)st;
    atomic_fetch_add(&async_dones, 1);
}

/* Every non-destructive call on `n`; each must return within the bound. */
static void probe(raft_node_t *n, const char *where) {
    char *s = NULL;
    bool b;
    int rc;
    int64_t t;
    TIMED(where, s = raft_node_status_json(n));
    raft_string_free(s);
    TIMED(where, b = raft_node_is_leader(n));
    TIMED(where, t = raft_node_term(n));
    TIMED(where, s = raft_node_leader_id(n));
    raft_string_free(s);
    s = NULL;
    TIMED(where, rc = raft_node_list_peers(n, &s));
    if (rc == 0) raft_string_free(s);
    TIMED(where, b = raft_node_is_leader_lease_valid(n));
    raft_task_t task = {(const uint8_t *)"p", 1, count_done, NULL, -1};
    TIMED(where, rc = raft_node_apply(n, &task));
    TIMED(where, rc = raft_node_read_index(n, count_done, NULL));
    TIMED(where, rc = raft_node_snapshot(n, count_done, NULL));
    TIMED(where, rc = raft_node_add_peer(n, "127.0.0.1:1:9", count_done, NULL));
    TIMED(where, rc = raft_node_remove_peer(n, "127.0.0.1:1:8", count_done, NULL));
    TIMED(where, rc = raft_node_transfer_leadership_to(n, "127.0.0.1:1:7"));
    TIMED(where, rc = raft_node_reset_peers(n, "not a peer list"));
    TIMED(where, rc = raft_node_join(n)); /* refused: not shut down, or own thread */
    (void)b;
    (void)t;
    (void)rc;
}

/* Shuts the node down from where it is, twice, and tries to join (and free). */
static void destroy(nctx_t *c, const char *where, int expect_join) {
    raft_node_t *n = atomic_load(&c->self);
    int rc, j;
    TIMED(where, rc = raft_node_shutdown(n, count_done, NULL));
    CHECK(rc == 0);
    TIMED(where, rc = raft_node_shutdown(n, NULL, NULL));
    CHECK(rc == 0);
    TIMED(where, j = raft_node_join(n));
    atomic_store(&c->join_code, j);
    if (expect_join >= 0 && j != expect_join)
        fprintf(stderr, "%s: join returned %d (%s), expected %d\n", where, j, raft_last_error(),
                expect_join);
    CHECK(expect_join < 0 || j == expect_join);
    if (c->free_in_callback) TIMED(where, raft_node_free(n));
    atomic_store(&c->destroyed, 1);
}

static void at(nctx_t *c, enum site s) {
    if (c->kind == PROBED) {
        if (atomic_exchange(&covered[s], 1) == 0) probe(atomic_load(&c->self), site_names[s]);
    } else if (c->kind == DESTROYED && c->destroy_at == s && atomic_load(&c->destroyed) == 0) {
        destroy(c, site_names[s], s == S_METHOD ? 0 : EBUSY);
    }
}

/* ---- the state machine ---------------------------------------------- */
static void on_apply(void *ctx, raft_iterator_t *it) {
    nctx_t *c = ctx;
    int n = 0;
    for (; raft_iterator_valid(it); raft_iterator_next(it)) {
        size_t len = 0;
        const uint8_t *data = raft_iterator_data(it, &len);
        if (c->fail_on_f && len == 1 && data[0] == 'F') {
            raft_iterator_set_error_and_rollback(it, 0, 0, "refusing F");
            break;
        }
        n++;
        atomic_fetch_add(&c->applied, 1);
    }
    if (n > atomic_load(&c->max_batch)) atomic_store(&c->max_batch, n);
    at(c, S_APPLY);
}
static void on_shutdown(void *ctx) {
    nctx_t *c = ctx;
    atomic_fetch_add(&c->shutdowns, 1);
    at(c, S_SHUTDOWN);
}
static void on_snapshot_save(void *ctx, raft_snapshot_writer_t *w, raft_snapshot_done_t *done) {
    char path[4096];
    snprintf(path, sizeof path, "%s/v", raft_snapshot_writer_path(w));
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fputs("v\n", f);
        fclose(f);
    }
    int rc = raft_snapshot_writer_add_file(w, "v");
    CHECK(raft_snapshot_done_run(done, rc, NULL) == 0);
    at(ctx, S_SNAP_SAVE);
}
static int on_snapshot_load(void *ctx, const raft_snapshot_reader_t *r) {
    atomic_fetch_add(&((nctx_t *)ctx)->loads, 1);
    at(ctx, S_SNAP_LOAD);
    return raft_snapshot_reader_file_count(r) == 1 ? 0 : EINVAL;
}
static void on_leader_start(void *ctx, int64_t term) {
    (void)term;
    at(ctx, S_LEADER_START);
}
static void on_leader_stop(void *ctx, const raft_status_t *st) {
    (void)st;
    at(ctx, S_LEADER_STOP);
}
static void on_error(void *ctx, const raft_status_t *st) {
    CHECK(st->message != NULL && strncmp(st->message, "[", 1) == 0);
    atomic_fetch_add(&((nctx_t *)ctx)->errors, 1);
    at(ctx, S_ERROR);
}
static void on_conf(void *ctx, const char *v, const char *l, int64_t index) {
    (void)v; (void)l; (void)index;
    at(ctx, S_CONF);
}
static void on_start_following(void *ctx, const char *leader, int64_t term) {
    (void)leader; (void)term;
    at(ctx, S_START_FOLLOWING);
}
static void on_stop_following(void *ctx, const char *leader, int64_t term) {
    (void)leader; (void)term;
    at(ctx, S_STOP_FOLLOWING);
}

/* A done that calls back in: ctx names the node and where it stands. */
typedef struct { nctx_t *c; enum site s; atomic_int ran; atomic_int code; } site_done_t;
static void site_done(void *ctx, const raft_status_t *st) {
    site_done_t *d = ctx;
    atomic_store(&d->code, st->code);
    if (st->code != 0) CHECK(st->message != NULL && st->message[0] == '[');
    at(d->c, d->s);
    atomic_store(&d->ran, 1);
}

/* ---- helpers -------------------------------------------------------- */
static char base_dir[256];
static raft_node_t *_Atomic log_target;
static atomic_int probe_init_log;
static int port, election_ms = 300;
static raft_server_t *server;

static raft_node_t *start_node(nctx_t *c, int idx, const char *group, const char *conf,
                               int apply_batch) {
    char id[64];
    test_stores_t stores;
    snprintf(id, sizeof id, "127.0.0.1:%d:%d", port, idx);
    raft_node_t *n = raft_node_new(server, group, id);
    CHECK(n != NULL);
    atomic_store(&c->self, n);
    if (atomic_load(&probe_init_log)) atomic_store(&log_target, n);
    raft_node_options_t o;
    raft_node_options_init(&o);
    use_test_stores(&o, &stores, base_dir, idx);
    o.election_timeout_ms = election_ms;
    o.initial_conf = conf;
    o.snapshot_interval_s = 0;
    if (apply_batch > 0) o.apply_batch = (uint32_t)apply_batch;
    raft_fsm_vtable_t v;
    memset(&v, 0, sizeof v);
    v.on_apply = on_apply;
    v.on_shutdown = on_shutdown;
    v.on_snapshot_save = on_snapshot_save;
    v.on_snapshot_load = on_snapshot_load;
    v.on_leader_start = on_leader_start;
    v.on_leader_stop = on_leader_stop;
    v.on_error = on_error;
    v.on_configuration_committed = on_conf;
    v.on_start_following = on_start_following;
    v.on_stop_following = on_stop_following;
    int rc;
    TIMED("raft_node_init", rc = raft_node_init(n, &o, &v, c));
    CHECK(rc == 0);
    return n;
}

/* A node alone in its group (its configuration names only itself). */
static raft_node_t *start_single(nctx_t *c, int idx, const char *group, int apply_batch) {
    char conf[64];
    snprintf(conf, sizeof conf, "127.0.0.1:%d:%d", port, idx);
    return start_node(c, idx, group, conf, apply_batch);
}

static int wait_flag(atomic_int *flag, int ms) {
    for (int i = 0; i < ms / 5 && !atomic_load(flag); i++) sleep_ms(5);
    return atomic_load(flag);
}
static int wait_leader(raft_node_t *n) {
    for (int i = 0; i < 2000 && !raft_node_is_leader(n); i++) sleep_ms(5);
    return raft_node_is_leader(n);
}

/* A new context of `kind` and its node, alone in `group`, once it leads. */
static raft_node_t *start_single_leader(nctx_t **c, enum kind kind, int idx, const char *group,
                                        int apply_batch) {
    *c = calloc(1, sizeof **c);
    (*c)->kind = kind;
    raft_node_t *n = start_single(*c, idx, group, apply_batch);
    CHECK(wait_leader(n));
    return n;
}

/* ---- log callback: probes the node it is pointed at ------------------ */
static atomic_int log_probes;
static void log_cb(void *ctx, int32_t level, const char *target, const char *msg) {
    (void)ctx;
    if (getenv("API_TEST_LOG") != NULL) fprintf(stderr, "log %d %s: %s\n", level, target, msg);
    raft_node_t *n = atomic_load(&log_target);
    if (n == NULL || atomic_fetch_add(&log_probes, 1) >= 40) return;
    atomic_store(&covered[S_LOG], 1);
    probe(n, site_names[S_LOG]);
    /* raft_set_log_callback from inside the callback must not deadlock */
    int rc;
    TIMED("log callback", rc = raft_set_log_callback(log_cb, NULL, 3));
    CHECK(rc == 0);
}

/* ---- methods -------------------------------------------------------- */
static raft_node_t *_Atomic method_target;
static void probe_method(void *ctx, raft_request_t *req) {
    (void)ctx;
    atomic_store(&covered[S_METHOD], 1);
    probe(atomic_load(&method_target), site_names[S_METHOD]);
    CHECK(raft_request_reply(req, (const uint8_t *)"ok", 2) == 0);
}
static void kill_method(void *ctx, raft_request_t *req) {
    nctx_t *c = ctx;
    destroy(c, site_names[S_METHOD], 0);
    CHECK(raft_request_reply(req, NULL, 0) == 0);
}
static raft_request_t *_Atomic unanswered;
static void silent_method(void *ctx, raft_request_t *req) {
    (void)ctx;
    atomic_store(&unanswered, req);
}

/* ---- several threads shutting one node down at once ---------------- */
typedef struct { raft_node_t *n; atomic_int done; } shut_arg_t;
static void shut_done(void *ctx, const raft_status_t *st) {
    (void)st;
    atomic_store(&((shut_arg_t *)ctx)->done, 1);
}
static void *shut_thread(void *arg) {
    shut_arg_t *a = arg;
    CHECK(raft_node_shutdown(a->n, shut_done, a) == 0);
    return NULL;
}

/* Shutdown called twice (by `threads` threads at once, or twice by this
 * one when threads == 0), then join or free: when it returns every done and
 * on_shutdown ran, and the user context may be freed (valgrind reports any
 * callback after that). */
static void double_shutdown(int idx, int threads, int use_join) {
    nctx_t *c;
    raft_node_t *n = start_single_leader(&c, PLAIN, idx, "twice", 0);
    raft_task_t t = {(const uint8_t *)"x", 1, count_done, NULL, -1};
    for (int i = 0; i < 20; i++) raft_node_apply(n, &t);
    shut_arg_t args[4];
    pthread_t th[4];
    int count = threads == 0 ? 2 : threads;
    for (int i = 0; i < count; i++) {
        args[i].n = n;
        atomic_store(&args[i].done, 0);
    }
    if (threads == 0) {
        CHECK(raft_node_shutdown(n, shut_done, &args[0]) == 0);
        CHECK(raft_node_shutdown(n, shut_done, &args[1]) == 0);
    } else {
        for (int i = 0; i < count; i++) pthread_create(&th[i], NULL, shut_thread, &args[i]);
        for (int i = 0; i < count; i++) pthread_join(th[i], NULL);
    }
    if (use_join) {
        CHECK(raft_node_join(n) == 0);
        CHECK(raft_node_join(n) == 0);
    }
    raft_node_free(n);
    for (int i = 0; i < count; i++) CHECK(atomic_load(&args[i].done) == 1);
    CHECK(atomic_load(&c->shutdowns) == 1);
    free(c);
}

/* Threads of this process whose name is `name` (/proc/self/task/N/comm). */
static int threads_named(const char *name) {
    DIR *dir = opendir("/proc/self/task");
    CHECK(dir != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[32] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* the thread ended meanwhile */
        if (fgets(comm, sizeof comm, f)) {
            comm[strcspn(comm, "\n")] = 0;
            n += strcmp(comm, name) == 0;
        }
        fclose(f);
    }
    closedir(dir);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]); return 2; }
    snprintf(base_dir, sizeof base_dir, "%s", argv[1]);
    if (getenv("API_TEST_MAX_CALL_MS")) max_call_ms = atoi(getenv("API_TEST_MAX_CALL_MS"));
    if (getenv("API_TEST_ELECTION_MS")) election_ms = atoi(getenv("API_TEST_ELECTION_MS"));
    CHECK(raft_set_log_callback(log_cb, NULL, 3) == 0);
    /* The default runtime has one IO worker (tokio names its workers and
     * its blocking threads alike; no blocking work has started yet), and
     * every rule below holds on that one worker. */
    CHECK(raft_global_init(0) == 0);
    int io_threads = 0;
    for (int i = 0; i < 200 && io_threads == 0; i++) { /* a new thread names itself */
        io_threads = threads_named("rraft-io");
        if (io_threads == 0) nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    }
    CHECK(io_threads == 1);
    CHECK(raft_global_init(0) == EEXIST);
    server = raft_server_start("127.0.0.1:0");
    CHECK(server != NULL);
    port = raft_server_port(server);

    /* a probed group of three; the log callback probes a node while its
     * init logs, and while its driver logs */
    nctx_t cl[3];
    memset(cl, 0, sizeof cl);
    raft_node_t *nodes[3];
    char conf[256];
    snprintf(conf, sizeof conf, "127.0.0.1:%d:0,127.0.0.1:%d:1,127.0.0.1:%d:2", port, port, port);
    for (int i = 0; i < 3; i++) {
        cl[i].kind = PROBED;
        atomic_store(&log_probes, 0);
        atomic_store(&probe_init_log, 1); /* probe it from the log lines of its init */
        nodes[i] = start_node(&cl[i], i, "r", conf, 0);
        atomic_store(&probe_init_log, 0);
    }
    int l = -1;
    for (int round = 0; round < 2000 && l < 0; round++) {
        for (int i = 0; i < 3; i++) if (raft_node_is_leader(nodes[i])) l = i;
        if (l < 0) sleep_ms(5);
    }
    CHECK(l >= 0);
    if (l < 0) return 1;
    int f = (l + 1) % 3;
    atomic_store(&log_target, NULL);

    /* dones: success, error, read */
    site_done_t ok = {&cl[l], S_DONE_OK, 0, 0}, err = {&cl[f], S_DONE_ERR, 0, 0},
                rd = {&cl[l], S_READ_DONE, 0, 0};
    raft_task_t t1 = {(const uint8_t *)"a", 1, site_done, &ok, -1};
    raft_task_t t2 = {(const uint8_t *)"b", 1, site_done, &err, -1};
    CHECK(raft_node_apply(nodes[l], &t1) == 0);
    CHECK(raft_node_apply(nodes[f], &t2) == 0);
    CHECK(raft_node_read_index(nodes[l], site_done, &rd) == 0);
    CHECK(wait_flag(&ok.ran, 10000) && wait_flag(&err.ran, 10000) && wait_flag(&rd.ran, 10000));
    CHECK(atomic_load(&ok.code) == 0 && atomic_load(&err.code) == EPERM);
    site_done_t sn = {&cl[l], S_SNAP_SAVE, 0, 0};
    CHECK(raft_node_snapshot(nodes[l], site_done, &sn) == 0);
    CHECK(wait_flag(&sn.ran, 10000));

    /* a user method calling back in */
    atomic_store(&method_target, nodes[l]);
    CHECK(raft_server_add_method(server, "r.probe", probe_method, NULL) == 0);
    CHECK(raft_server_add_method_with_timeout(server, "r.silent", silent_method, NULL, 300) == 0);
    CHECK(raft_server_add_method_with_timeout(server, "r.x", silent_method, NULL, 0) == EINVAL);
    CHECK(RAFT_METHOD_TIMEOUT_MS_DEFAULT == 30000);
    raft_client_t *client = raft_client_new("r", conf);
    CHECK(client != NULL);
    raft_buffer_t buf = {0};
    CHECK(raft_client_call(client, "r.probe", NULL, 0, 10000, &buf) == 0);
    raft_buffer_free(&buf);

    /* a request nobody answers is answered by the library after its timeout */
    double t0 = now_ms();
    int rc = raft_client_call(client, "r.silent", NULL, 0, 10000, &buf);
    double waited = now_ms() - t0;
    CHECK(rc == ETIMEDOUT && strstr(raft_last_error(), "did not answer") != NULL);
    CHECK(waited < 300 + 2000);
    raft_request_t *late = atomic_load(&unanswered);
    CHECK(late != NULL && raft_request_reply(late, NULL, 0) == EINVAL);
    /* its connection serves the next call */
    CHECK(raft_client_call(client, "r.probe", NULL, 0, 10000, &buf) == 0);
    raft_buffer_free(&buf);

    /* leadership moves: leader stop, stop/start following */
    /* (a probe's add_peer may still be catching up: the transfer waits) */
    rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) {
        rc = raft_node_transfer_leadership_to(nodes[l], NULL);
        if (rc != 0) sleep_ms(50);
    }
    CHECK(rc == 0);
    for (int i = 0; i < 2000 && !(atomic_load(&covered[S_LEADER_STOP]) &&
                                  atomic_load(&covered[S_STOP_FOLLOWING])); i++)
        sleep_ms(5);

    /* one node, two lives: a snapshot loaded at start, then an error */
    {
        nctx_t *solo;
        raft_node_t *s = start_single_leader(&solo, PROBED, 40, "solo", 0);
        site_done_t a = {solo, S_DONE_OK, 0, 0};
        raft_task_t ta = {(const uint8_t *)"a", 1, site_done, &a, -1};
        CHECK(raft_node_apply(s, &ta) == 0 && wait_flag(&a.ran, 10000));
        site_done_t ss = {solo, S_SNAP_SAVE, 0, 0};
        CHECK(raft_node_snapshot(s, site_done, &ss) == 0 && wait_flag(&ss.ran, 10000));
        raft_node_free(s);
        memset(solo, 0, sizeof *solo);
        solo->kind = PROBED;
        solo->fail_on_f = 1;
        s = start_single(solo, 40, "solo", 0);
        CHECK(atomic_load(&solo->loads) == 1 || wait_flag(&solo->loads, 5000));
        CHECK(wait_leader(s));
        raft_task_t tf = {(const uint8_t *)"F", 1, count_done, NULL, -1};
        CHECK(raft_node_apply(s, &tf) == 0);
        CHECK(wait_flag(&solo->errors, 10000));
        site_done_t sd = {solo, S_SHUTDOWN_DONE, 0, 0};
        CHECK(raft_node_shutdown(s, site_done, &sd) == 0);
        CHECK(raft_node_join(s) == 0);
        CHECK(atomic_load(&sd.ran) == 1); /* ran before join returned */
        raft_node_free(s);
        free(solo);
    }

    /* nodes that shut themselves down from a callback, a done or a method */
    {
        enum site at_sites[] = {S_APPLY, S_LEADER_START, S_DONE_OK, S_READ_DONE,
                                S_SHUTDOWN_DONE, S_SHUTDOWN, S_METHOD};
        int n_sites = (int)(sizeof at_sites / sizeof at_sites[0]);
        static nctx_t dc[16];
        for (int k = 0; k < n_sites; k++) {
            nctx_t *c = &dc[k];
            memset(c, 0, sizeof *c);
            c->kind = DESTROYED;
            c->destroy_at = at_sites[k];
            c->free_in_callback = at_sites[k] == S_SHUTDOWN || at_sites[k] == S_METHOD;
            int idx = 50 + k;
            char group[32];
            snprintf(group, sizeof group, "d%d", k);
            if (at_sites[k] != S_LEADER_START) c->destroy_at = N_SITES; /* not yet */
            raft_node_t *n = start_single(c, idx, group, 0);
            for (int i = 0; i < 2000 && !raft_node_is_leader(n) && !atomic_load(&c->destroyed); i++)
                sleep_ms(5);
            CHECK(raft_node_is_leader(n) || atomic_load(&c->destroyed));
            c->destroy_at = at_sites[k];
            site_done_t d = {c, at_sites[k], 0, 0};
            raft_task_t td = {(const uint8_t *)"d", 1, site_done, &d, -1};
            char method[32];
            switch (at_sites[k]) {
            case S_APPLY:
            case S_DONE_OK:
                CHECK(raft_node_apply(n, &td) == 0);
                break;
            case S_READ_DONE:
                CHECK(raft_node_read_index(n, site_done, &d) == 0);
                break;
            case S_SHUTDOWN_DONE:
            case S_SHUTDOWN:
                CHECK(raft_node_shutdown(n, site_done, &d) == 0);
                break;
            case S_METHOD:
                snprintf(method, sizeof method, "r.kill%d", k);
                CHECK(raft_server_add_method(server, method, kill_method, c) == 0);
                CHECK(raft_client_call(client, method, NULL, 0, 10000, &buf) == 0);
                raft_buffer_free(&buf);
                break;
            default:
                break;
            }
            CHECK(wait_flag(&c->destroyed, 10000));
            if (c->free_in_callback) {
                /* the handle is gone; its shutdown finishes on its own */
                if (at_sites[k] == S_SHUTDOWN) CHECK(wait_flag(&d.ran, 10000));
                else CHECK(atomic_load(&c->join_code) == 0 && atomic_load(&c->shutdowns) == 1);
                continue;
            }
            CHECK(atomic_load(&c->join_code) == EBUSY);
            TIMED("join after a self shutdown", rc = raft_node_join(n));
            CHECK(rc == 0);
            CHECK(atomic_load(&c->shutdowns) == 1);
            raft_node_free(n);
        }
    }

    /* two shutdowns from one thread, from several; then join or free */
    double_shutdown(60, 0, 1);
    double_shutdown(61, 0, 0);
    double_shutdown(62, 4, 1);
    double_shutdown(63, 4, 0);

    /* on_apply never sees more than apply_batch entries */
    {
        nctx_t *b;
        raft_node_t *n = start_single_leader(&b, PLAIN, 70, "batch", 3);
        raft_task_t tb = {(const uint8_t *)"b", 1, count_done, NULL, -1};
        for (int i = 0; i < 200; i++) CHECK(raft_node_apply(n, &tb) == 0);
        for (int i = 0; i < 2000 && atomic_load(&b->applied) < 200; i++) sleep_ms(5);
        CHECK(atomic_load(&b->applied) == 200);
        CHECK(atomic_load(&b->max_batch) >= 1 && atomic_load(&b->max_batch) <= 3);
        raft_node_free(n);
        free(b);
    }

    /* the rest of the probed group: calls from on_shutdown and a shutdown done */
    site_done_t sdn[3];
    for (int i = 0; i < 3; i++) {
        sdn[i].c = &cl[i];
        sdn[i].s = S_SHUTDOWN_DONE;
        atomic_store(&sdn[i].ran, 0);
        CHECK(raft_node_shutdown(nodes[i], site_done, &sdn[i]) == 0);
    }
    for (int i = 0; i < 3; i++) {
        CHECK(raft_node_join(nodes[i]) == 0);
        CHECK(atomic_load(&sdn[i].ran) == 1);
        raft_node_free(nodes[i]);
    }
    raft_client_free(client);
    raft_server_free(server);
    CHECK(raft_set_log_callback(NULL, NULL, 2) == 0);
    for (int s = 0; s < N_SITES; s++) {
        if (!atomic_load(&covered[s])) fprintf(stderr, "never called back from %s\n", site_names[s]);
        CHECK(atomic_load(&covered[s]));
    }
    printf("reentry: %d passed, %d failed (%d timed calls)\n", atomic_load(&passed),
           atomic_load(&failed), atomic_load(&timed_calls));
    return atomic_load(&failed) == 0 ? 0 : 1;
}
