/*
 * kv_server: a replicated string key-value store over the rraft C API.
 *
 * One Raft node per process; five of these form the group that
 * tests/chaos.rs kills, pauses and partitions. Methods on the one port:
 *
 *   Kv.put     leader only: 'P' str key, str value          -> empty reply
 *   Kv.cas     leader only: 'C' str key, str expected, str new
 *                                     -> u8 1 if swapped, 0 if not
 *              (a missing key never matches)
 *   Kv.get     leader only: str key   -> u8 found, then the value bytes
 *              (any node with --stale_reads, a deliberate bug for tests)
 *   Kv.digest  any node:   empty      -> JSON {"applied_index":..,"keys":..,
 *                                        "digest":"<hex>","node":{status}}
 *
 * `str` is a u32 little-endian length followed by that many bytes. put and
 * cas go through the log: the request payload is the log entry itself.
 * get is linearizable through ReadIndex (`raft_node_read_index`): the
 * leader confirms it still leads and waits until its state machine has
 * applied the commit index it saw, then reads the map.
 *
 * Errors: EPERM + the leader's id ("not leader", or the entry can never be
 * applied) lets a client retry elsewhere; EBUSY (leadership transfer in
 * progress, nothing proposed) may be retried too; RAFT_ERAFTTIMEDOUT means
 * the outcome is unknown (the entry may or may not be applied).
 *
 * Threads: method handlers run on the library's IO threads and must not
 * block; state-machine callbacks run one at a time on the node's FSM
 * thread. The map is shared between the two, hence the mutex.
 *
 * Data (log, meta, snapshots) lives under --data_path (created with its
 * parents when missing), so a SIGKILLed server restarted with the same
 * flags recovers its state.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "rraft.h"

#include "dirs.h"
#include "flags.h"
#include "service.h"

#define METHOD_PUT "Kv.put"
#define METHOD_CAS "Kv.cas"
#define METHOD_GET "Kv.get"
#define METHOD_DIGEST "Kv.digest"

#define OP_PUT 'P'
#define OP_CAS 'C'

/* Keys and values are small in this example; anything larger is refused
 * before it reaches the log. */
#define MAX_STR_LEN (64u * 1024u)

/* ---- byte strings ---- */

typedef struct {
    const uint8_t *p;
    uint32_t len;
} bytes_t;

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Takes one `str` off the front of [*p, end); false if it does not fit. */
static bool take_str(const uint8_t **p, const uint8_t *end, bytes_t *out) {
    if (end - *p < 4) {
        return false;
    }
    uint32_t len = get_u32(*p);
    if (len > MAX_STR_LEN || (size_t)(end - *p - 4) < len) {
        return false;
    }
    out->p = *p + 4;
    out->len = len;
    *p += 4 + len;
    return true;
}

/* A parsed put or cas: `expected` is only set for cas. */
typedef struct {
    char op;
    bytes_t key, expected, value;
} command_t;

/* Parses a put/cas payload (request and log entry share the format). */
static bool parse_command(const uint8_t *data, size_t len, command_t *cmd) {
    if (len < 1) {
        return false;
    }
    const uint8_t *p = data + 1, *end = data + len;
    cmd->op = (char)data[0];
    if (cmd->op == OP_PUT) {
        return take_str(&p, end, &cmd->key) && take_str(&p, end, &cmd->value) && p == end;
    }
    if (cmd->op == OP_CAS) {
        return take_str(&p, end, &cmd->key) && take_str(&p, end, &cmd->expected) &&
               take_str(&p, end, &cmd->value) && p == end;
    }
    return false;
}

/* ---- the map: chained hash table of byte strings ---- */

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    uint32_t key_len, value_len;
    uint8_t *key, *value;
} entry_t;

typedef struct {
    entry_t **buckets;
    size_t cap; /* power of two, 0 when empty */
    size_t len;
} map_t;

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t hash_key(bytes_t key) {
    return fnv1a(0xcbf29ce484222325ULL, key.p, key.len);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        /* The state machine cannot skip an entry on one replica only:
         * dying is the only safe answer to running out of memory. */
        fprintf(stderr, "kv_server: out of memory\n");
        abort();
    }
    return p;
}

static uint8_t *dup_bytes(bytes_t b) {
    uint8_t *p = xmalloc(b.len);
    memcpy(p, b.p, b.len);
    return p;
}

static entry_t *map_find(const map_t *m, bytes_t key) {
    if (m->cap == 0) {
        return NULL;
    }
    uint64_t h = hash_key(key);
    for (entry_t *e = m->buckets[h & (m->cap - 1)]; e; e = e->next) {
        if (e->hash == h && e->key_len == key.len && memcmp(e->key, key.p, key.len) == 0) {
            return e;
        }
    }
    return NULL;
}

static void map_grow(map_t *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    entry_t **buckets = calloc(cap, sizeof *buckets);
    if (!buckets) {
        fprintf(stderr, "kv_server: out of memory\n");
        abort();
    }
    for (size_t i = 0; i < m->cap; i++) {
        entry_t *e = m->buckets[i];
        while (e) {
            entry_t *next = e->next;
            e->next = buckets[e->hash & (cap - 1)];
            buckets[e->hash & (cap - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = buckets;
    m->cap = cap;
}

static void map_set(map_t *m, bytes_t key, bytes_t value) {
    entry_t *e = map_find(m, key);
    if (e) {
        free(e->value);
        e->value = dup_bytes(value);
        e->value_len = value.len;
        return;
    }
    if ((m->len + 1) * 4 > m->cap * 3) {
        map_grow(m);
    }
    e = xmalloc(sizeof *e);
    e->hash = hash_key(key);
    e->key = dup_bytes(key);
    e->key_len = key.len;
    e->value = dup_bytes(value);
    e->value_len = value.len;
    e->next = m->buckets[e->hash & (m->cap - 1)];
    m->buckets[e->hash & (m->cap - 1)] = e;
    m->len++;
}

static void map_clear(map_t *m) {
    for (size_t i = 0; i < m->cap; i++) {
        entry_t *e = m->buckets[i];
        while (e) {
            entry_t *next = e->next;
            free(e->key);
            free(e->value);
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof *m);
}

/* An order-independent digest of the whole map: the sum of one hash per
 * (key, value) pair, so replicas that hold the same pairs agree however
 * their tables are laid out. */
static uint64_t map_digest(const map_t *m) {
    uint64_t sum = 0;
    for (size_t i = 0; i < m->cap; i++) {
        for (const entry_t *e = m->buckets[i]; e; e = e->next) {
            uint8_t len[4];
            uint64_t h = 0xcbf29ce484222325ULL;
            put_u32(len, e->key_len);
            h = fnv1a(h, len, 4);
            h = fnv1a(h, e->key, e->key_len);
            put_u32(len, e->value_len);
            h = fnv1a(h, len, 4);
            h = fnv1a(h, e->value, e->value_len);
            sum += h;
        }
    }
    return sum;
}

/* ---- the state machine ---- */

typedef struct {
    raft_node_t *node;
    pthread_mutex_t mu; /* guards map and applied_index */
    map_t map;
    int64_t applied_index;
    int64_t leader_term; /* -1 unless leading; __atomic access */
    bool stale_reads;    /* --stale_reads: see handle_get */
} kv_t;

/* One put/cas in flight on this node (the task's done_ctx). */
typedef struct {
    kv_t *kv;
    raft_request_t *req;
    char op;
    bool swapped; /* cas result, set by on_apply */
} write_ctx_t;

static void on_apply(void *ctx, raft_iterator_t *it) {
    kv_t *kv = ctx;
    for (; raft_iterator_valid(it); raft_iterator_next(it)) {
        size_t len = 0;
        const uint8_t *data = raft_iterator_data(it, &len);
        command_t cmd;
        bool swapped = false;
        bool ok = parse_command(data, len, &cmd);
        pthread_mutex_lock(&kv->mu);
        if (!ok) {
            /* Handlers only propose well-formed commands; anything else is
             * skipped the same way on every replica. */
            fprintf(stderr, "kv_server: skipping malformed entry %" PRId64 " (%zu bytes)\n",
                    raft_iterator_index(it), len);
        } else if (cmd.op == OP_PUT) {
            map_set(&kv->map, cmd.key, cmd.value);
        } else {
            const entry_t *e = map_find(&kv->map, cmd.key);
            swapped = e && e->value_len == cmd.expected.len &&
                      memcmp(e->value, cmd.expected.p, cmd.expected.len) == 0;
            if (swapped) {
                map_set(&kv->map, cmd.key, cmd.value);
            }
        }
        kv->applied_index = raft_iterator_index(it);
        pthread_mutex_unlock(&kv->mu);

        /* Our own proposal of this term: leave the result for write_done,
         * which the library runs once on_apply has passed this entry. */
        write_ctx_t *w = raft_iterator_done(it);
        if (w) {
            w->swapped = swapped;
        }
    }
}

/* The task's done: runs exactly once, after on_apply or with an error. */
static void write_done(void *ctx, const raft_status_t *st) {
    write_ctx_t *w = ctx;
    if (st->code == 0) {
        if (w->op == OP_CAS) {
            uint8_t swapped = w->swapped ? 1 : 0;
            raft_request_reply(w->req, &swapped, 1);
        } else {
            raft_request_reply(w->req, NULL, 0);
        }
    } else if (st->code == EBUSY) {
        /* A leadership transfer in progress: nothing was proposed. */
        raft_request_reply_error(w->req, EBUSY, st->message, NULL);
    } else {
        reply_write_failed(w->kv->node, w->req, st);
    }
    free(w);
}

/* Kv.put and Kv.cas: validate, then propose the payload as the entry. */
static void handle_write(void *ctx, raft_request_t *req) {
    kv_t *kv = ctx;
    size_t len = 0;
    const uint8_t *data = raft_request_data(req, &len);
    command_t cmd;
    if (!parse_command(data, len, &cmd)) {
        raft_request_reply_error(req, EINVAL, "malformed put/cas request", NULL);
        return;
    }
    int64_t term = leading_term_or_redirect(kv->node, &kv->leader_term, req);
    if (term < 0) {
        return;
    }
    write_ctx_t *w = request_ctx_new(req, sizeof *w);
    if (!w) {
        return;
    }
    w->kv = kv;
    w->req = req;
    w->op = cmd.op;
    propose_request(kv->node, req, data, len, term, write_done, w);
}

/* A get waiting for its ReadIndex round; owns a copy of the key. */
typedef struct {
    kv_t *kv;
    raft_request_t *req;
    uint32_t key_len;
    uint8_t key[];
} read_ctx_t;

/* Replies to a get with the local map's value of `key`. */
static void reply_value(kv_t *kv, raft_request_t *req, bytes_t key) {
    pthread_mutex_lock(&kv->mu);
    const entry_t *e = map_find(&kv->map, key);
    size_t n = e ? 1 + (size_t)e->value_len : 1;
    uint8_t *out = xmalloc(n);
    out[0] = e ? 1 : 0;
    if (e) {
        memcpy(out + 1, e->value, e->value_len);
    }
    pthread_mutex_unlock(&kv->mu);
    raft_request_reply(req, out, n);
    free(out);
}

static void read_done(void *ctx, const raft_status_t *st) {
    read_ctx_t *r = ctx;
    if (st->code == 0) {
        /* The state machine has applied everything committed when the
         * read started: the map is linearizable now. */
        bytes_t key = {r->key, r->key_len};
        reply_value(r->kv, r->req, key);
    } else {
        reply_read_failed(r->kv->node, r->req, st);
    }
    free(r);
}

static void handle_get(void *ctx, raft_request_t *req) {
    kv_t *kv = ctx;
    size_t len = 0;
    const uint8_t *data = raft_request_data(req, &len);
    const uint8_t *p = data;
    bytes_t key;
    if (!take_str(&p, data + len, &key) || p != data + len) {
        raft_request_reply_error(req, EINVAL, "malformed get request", NULL);
        return;
    }
    if (kv->stale_reads) {
        /* Deliberately wrong: any node answers from its own map, which
         * may lag the leader or belong to a deposed one. */
        reply_value(kv, req, key);
        return;
    }
    if (!raft_node_is_leader(kv->node)) {
        reply_redirect(kv->node, req);
        return;
    }
    read_ctx_t *r = request_ctx_new(req, sizeof *r + key.len);
    if (!r) {
        return;
    }
    r->kv = kv;
    r->req = req;
    r->key_len = key.len;
    memcpy(r->key, key.p, key.len);
    int rc = raft_node_read_index(kv->node, read_done, r);
    if (rc != 0) { /* not taken: the done will not run */
        raft_request_reply_error(req, rc, raft_last_error(), NULL);
        free(r);
    }
}

/* Kv.digest: this replica's state, for convergence checks (not linearizable). */
static void handle_digest(void *ctx, raft_request_t *req) {
    kv_t *kv = ctx;
    pthread_mutex_lock(&kv->mu);
    int64_t applied = kv->applied_index;
    size_t keys = kv->map.len;
    uint64_t digest = map_digest(&kv->map);
    pthread_mutex_unlock(&kv->mu);
    char fields[160];
    snprintf(fields, sizeof fields, "\"applied_index\":%" PRId64 ",\"keys\":%zu,\"digest\":\"%016" PRIx64 "\"",
             applied, keys, digest);
    reply_status_json(kv->node, req, fields);
}

/* ---- snapshots: one binary file "kv" ----
 * "KVS1", u64 LE pair count, then per pair: str key, str value. */

#define SNAPSHOT_FILE "kv"
#define SNAPSHOT_MAGIC "KVS1"

static bool write_str(FILE *f, const uint8_t *p, uint32_t len) {
    uint8_t hdr[4];
    put_u32(hdr, len);
    return fwrite(hdr, 1, 4, f) == 4 && fwrite(p, 1, len, f) == len;
}

static void on_snapshot_save(void *ctx, raft_snapshot_writer_t *writer, raft_snapshot_done_t *done) {
    kv_t *kv = ctx;
    FILE *f = snapshot_file_create(writer, done, SNAPSHOT_FILE, "wb");
    if (!f) {
        return;
    }
    /* Callbacks run one at a time, so on_apply cannot change the map under
     * us; the lock only keeps the IO threads' readers consistent. */
    pthread_mutex_lock(&kv->mu);
    uint8_t count[8];
    for (int i = 0; i < 8; i++) {
        count[i] = (uint8_t)((uint64_t)kv->map.len >> (8 * i));
    }
    bool ok = fwrite(SNAPSHOT_MAGIC, 1, 4, f) == 4 && fwrite(count, 1, 8, f) == 8;
    for (size_t i = 0; ok && i < kv->map.cap; i++) {
        for (const entry_t *e = kv->map.buckets[i]; ok && e; e = e->next) {
            ok = write_str(f, e->key, e->key_len) && write_str(f, e->value, e->value_len);
        }
    }
    pthread_mutex_unlock(&kv->mu);
    snapshot_file_finish(writer, done, SNAPSHOT_FILE, f, ok);
}

/* Reads a whole file into memory; NULL on error. */
static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = xmalloc(cap);
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) {
            break;
        }
        cap *= 2;
        uint8_t *grown = realloc(buf, cap);
        if (!grown) {
            free(buf);
            fclose(f);
            return NULL;
        }
        buf = grown;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int32_t on_snapshot_load(void *ctx, const raft_snapshot_reader_t *reader) {
    kv_t *kv = ctx;
    char path[4096];
    snapshot_file_path(reader, SNAPSHOT_FILE, path, sizeof path);
    size_t len = 0;
    uint8_t *data = read_file(path, &len);
    if (!data) {
        fprintf(stderr, "kv_server: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    /* Build the new map aside; the old one stays if the file is bad. */
    map_t map = {0};
    const uint8_t *p = data + 12, *end = data + len;
    bool ok = len >= 12 && memcmp(data, SNAPSHOT_MAGIC, 4) == 0;
    uint64_t count = 0;
    for (int i = 0; ok && i < 8; i++) {
        count |= (uint64_t)data[4 + i] << (8 * i);
    }
    for (uint64_t i = 0; ok && i < count; i++) {
        bytes_t key, value;
        ok = take_str(&p, end, &key) && take_str(&p, end, &value);
        if (ok) {
            map_set(&map, key, value);
        }
    }
    ok = ok && p == end;
    free(data);
    if (!ok) {
        fprintf(stderr, "kv_server: malformed snapshot file %s\n", path);
        map_clear(&map);
        return -1;
    }
    pthread_mutex_lock(&kv->mu);
    map_clear(&kv->map);
    kv->map = map;
    kv->applied_index = raft_snapshot_reader_index(reader);
    pthread_mutex_unlock(&kv->mu);
    printf("snapshot loaded: index=%" PRId64 " keys=%zu\n", raft_snapshot_reader_index(reader), map.len);
    fflush(stdout);
    return 0;
}

static void on_leader_start(void *ctx, int64_t term) {
    kv_t *kv = ctx;
    __atomic_store_n(&kv->leader_term, term, __ATOMIC_RELEASE);
    printf("leader start: term=%" PRId64 "\n", term);
    fflush(stdout);
}

static void on_leader_stop(void *ctx, const raft_status_t *st) {
    kv_t *kv = ctx;
    leader_stopped(&kv->leader_term, st);
}

static void on_error(void *ctx, const raft_status_t *st) {
    (void)ctx;
    fprintf(stderr, "kv_server: node error %d: %s\n", st->code, st->message);
}

static void on_configuration_committed(void *ctx, const char *voters, const char *learners, int64_t index) {
    (void)ctx;
    printf("configuration committed: index=%" PRId64 " voters=%s learners=%s\n", index, voters, learners);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *ip = "127.0.0.1";
    const char *listen_ip = "";
    long long port = 8200;
    bool stale_reads = false;
    node_flags_t nf = node_flags_defaults("127.0.0.1:8200:0,127.0.0.1:8201:0,127.0.0.1:8202:0", "Kv", 1000);
    flag_t flags[] = {
        {"ip", FLAG_STR, &ip, "address in this node's peer id (what the others connect to)"},
        {"listen_ip", FLAG_STR, &listen_ip, "address to listen on if not --ip (behind a forwarding proxy)"},
        {"port", FLAG_INT, &port, "port of the peer id and of the listener (raft and the Kv methods)"},
        NODE_FLAGS(nf),
        {"stale_reads", FLAG_BOOL, &stale_reads,
         "UNSAFE: answer get from the local map on any node, without ReadIndex (not linearizable; "
         "shows that tests/chaos.rs catches stale reads)"},
    };
    flags_parse(argc, argv, flags, sizeof flags / sizeof flags[0]);

    sigset_t stop_signals;
    block_stop_signals(&stop_signals, 0);

    raft_node_options_t opts;
    if (!node_flags_options("kv_server", &nf, &opts)) {
        return 1;
    }

    /* The listener's port must be the peer id's (the library checks it);
     * its address may differ, e.g. when a proxy owns the advertised one. */
    char listen_addr[256], peer[300];
    snprintf(listen_addr, sizeof listen_addr, "%s:%lld", listen_ip[0] ? listen_ip : ip, port);
    snprintf(peer, sizeof peer, "%s:%lld:0", ip, port);

    static kv_t kv;
    pthread_mutex_init(&kv.mu, NULL);
    kv.leader_term = -1;
    kv.stale_reads = stale_reads;

    const method_t methods[] = {
        {METHOD_PUT, handle_write},
        {METHOD_CAS, handle_write},
        {METHOD_GET, handle_get},
        {METHOD_DIGEST, handle_digest},
    };
    raft_fsm_vtable_t fsm = {
        .on_apply = on_apply,
        .on_snapshot_save = on_snapshot_save,
        .on_snapshot_load = on_snapshot_load,
        .on_leader_start = on_leader_start,
        .on_leader_stop = on_leader_stop,
        .on_error = on_error,
        .on_configuration_committed = on_configuration_committed,
        .on_start_following = print_start_following,
    };
    raft_server_t *server;
    if (!start_service("kv_server", listen_addr, nf.group, peer, methods, sizeof methods / sizeof methods[0], &opts,
                       &fsm, &kv, &server, &kv.node)) {
        return 1;
    }
    printf("kv_server started: peer=%s listen=%s group=%s\n", peer, listen_addr, nf.group);
    fflush(stdout);

    wait_stop_signal(&stop_signals, NULL, NULL);
    stop_and_free(kv.node, server);

    pthread_mutex_lock(&kv.mu);
    printf("final: keys=%zu applied_index=%" PRId64 " digest=%016" PRIx64 "\n", kv.map.len, kv.applied_index,
           map_digest(&kv.map));
    map_clear(&kv.map);
    pthread_mutex_unlock(&kv.mu);
    fflush(stdout);
    return 0;
}
