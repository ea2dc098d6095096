/*
 * coffee: the five-branch coffee shop. Each branch (ming, hong, peng, long,
 * hu) is a Raft node with its own server on its own port, all hosted by
 * this one process; together they replicate one value (the "price of the
 * day", 0..99). ming bootstraps alone; the others join when booted.
 *
 * Commands (one per line, from a terminal or a pipe; EOF = quit):
 *   list      every started branch: address and state
 *   boot      start the next branch and add it to the cluster via the leader
 *   transfer  hand leadership to another voter
 *   set       write a random value 0..99 through the leader
 *   get       read the value (linearizable, via ReadIndex on the leader)
 *   down      remove the leader from the cluster and shut it down
 *   quit      shut everything down
 *
 * Every command waits until its effect has settled (or a timeout passed),
 * so a scripted run behaves the same every time.
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
#include <time.h>
#include <unistd.h>

#include "rraft.h"

#include "flags.h"
#include "service.h"

#define BRANCHES 5
#define GROUP "coffee"

static const char *const NAMES[BRANCHES] = {"ming", "hong", "peng", "long", "hu"};

typedef struct {
    const char *name;
    char addr[64]; /* ip:port */
    char peer[80]; /* ip:port:0 */
    raft_server_t *server;
    raft_node_t *node;
    bool started;
    bool down;
    pthread_mutex_t mu; /* guards value/has_value (FSM thread vs. prompt) */
    int64_t value;
    bool has_value;
    int64_t leading_term; /* set by on_leader_start; __atomic access */
} branch_t;

static branch_t g_branch[BRANCHES];
static int g_booted = 0; /* branches started so far */

static const char *g_ip = "127.0.0.1";
static long long g_base_port = 11000;
static const char *g_dir = "./nodes";
static long long g_election_timeout_ms = 1000;
static long long g_timeout_ms = 15000;
static long long g_log_level = 2; /* warn */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- waiting for a done callback, with a timeout ----
 * The waiter is shared by the prompt and the callback; whoever lets go
 * last frees it, so a callback that comes after the timeout is harmless. */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int refs;
    bool finished;
    int code;
    char message[256];
} waiter_t;

static waiter_t *waiter_new(void) {
    waiter_t *w = calloc(1, sizeof *w);
    if (!w) {
        perror("calloc");
        exit(1);
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->refs = 2;
    return w;
}

static void waiter_release(waiter_t *w) {
    pthread_mutex_lock(&w->mu);
    int left = --w->refs;
    pthread_mutex_unlock(&w->mu);
    if (left == 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mu);
        free(w);
    }
}

static void waiter_done(void *ctx, const raft_status_t *st) {
    waiter_t *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->finished = true;
    w->code = st->code;
    snprintf(w->message, sizeof w->message, "%s", st->message ? st->message : "");
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    waiter_release(w);
}

/* Waits for the callback; returns its code, or ETIMEDOUT. Consumes the
 * prompt's reference. `msg` receives the message (may be NULL). */
static int waiter_wait(waiter_t *w, char *msg, size_t msg_len) {
    uint64_t deadline = now_ms() + (uint64_t)g_timeout_ms;
    pthread_mutex_lock(&w->mu);
    while (!w->finished && now_ms() < deadline) {
        /* Wake up now and then to check the deadline (a monotonic clock;
         * the condition variable waits on the realtime one). */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 200 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cond, &w->mu, &until);
    }
    int code = w->finished ? w->code : ETIMEDOUT;
    if (msg) {
        snprintf(msg, msg_len, "%s", w->finished ? w->message : "timed out");
    }
    pthread_mutex_unlock(&w->mu);
    waiter_release(w);
    return code;
}

/* The call that was to run the waiter's done did not take it: both
 * references go. */
static void waiter_abandon(waiter_t *w) {
    waiter_release(w);
    waiter_release(w);
}

/* Finishes a call given `w` as its done's context; `rc` is what the call
 * returned. True once the done ran with success; otherwise prints
 * "error: <call>: ..." (the call did not take the done) or
 * "error: <what> failed: ..." (the done's outcome) and returns false. */
static bool call_succeeded(int rc, waiter_t *w, const char *call, const char *what) {
    if (rc != 0) {
        waiter_abandon(w);
        printf("error: %s: %s\n", call, raft_last_error());
        return false;
    }
    char msg[256];
    rc = waiter_wait(w, msg, sizeof msg);
    if (rc != 0) {
        printf("error: %s failed: %s (%s)\n", what, raft_strerror(rc), msg);
        return false;
    }
    return true;
}

/* ---- the state machine: one value ---- */

static void put_i64(uint8_t *p, int64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)((uint64_t)v >> (8 * i));
    }
}

static int64_t get_i64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return (int64_t)v;
}

static void on_apply(void *ctx, raft_iterator_t *it) {
    branch_t *b = ctx;
    for (; raft_iterator_valid(it); raft_iterator_next(it)) {
        size_t len = 0;
        const uint8_t *data = raft_iterator_data(it, &len);
        if (len == 8) {
            pthread_mutex_lock(&b->mu);
            b->value = get_i64(data);
            b->has_value = true;
            pthread_mutex_unlock(&b->mu);
        }
    }
}

static void on_snapshot_save(void *ctx, raft_snapshot_writer_t *writer, raft_snapshot_done_t *done) {
    branch_t *b = ctx;
    FILE *f = snapshot_file_create(writer, done, "value", "w");
    if (!f) {
        return;
    }
    pthread_mutex_lock(&b->mu);
    bool written = fprintf(f, "%d %" PRId64 "\n", b->has_value ? 1 : 0, b->value) > 0;
    pthread_mutex_unlock(&b->mu);
    snapshot_file_finish(writer, done, "value", f, written);
}

static int32_t on_snapshot_load(void *ctx, const raft_snapshot_reader_t *reader) {
    branch_t *b = ctx;
    char path[4096];
    snapshot_file_path(reader, "value", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    int has = 0;
    int64_t v = 0;
    int ok = fscanf(f, "%d %" SCNd64, &has, &v) == 2;
    fclose(f);
    if (!ok) {
        return -1;
    }
    pthread_mutex_lock(&b->mu);
    b->has_value = has != 0;
    b->value = v;
    pthread_mutex_unlock(&b->mu);
    return 0;
}

static void on_leader_start(void *ctx, int64_t term) {
    branch_t *b = ctx;
    __atomic_store_n(&b->leading_term, term, __ATOMIC_RELEASE);
    printf("  [%s] became leader (term %" PRId64 ")\n", b->name, term);
    fflush(stdout);
}

static void on_error(void *ctx, const raft_status_t *st) {
    branch_t *b = ctx;
    printf("  [%s] node error: %s\n", b->name, st->message);
    fflush(stdout);
}

/* ---- branches ---- */

/* The node's state as "Leader"/"Follower"/... ("Shutdown" once down). */
static void branch_state(branch_t *b, char *out, size_t len) {
    if (b->down) {
        snprintf(out, len, "Shutdown");
        return;
    }
    char *json = raft_node_status_json(b->node);
    const char *at = json ? strstr(json, "\"state\":\"") : NULL;
    if (!at) {
        snprintf(out, len, "Unknown");
    } else {
        at += strlen("\"state\":\"");
        size_t n = strcspn(at, "\"");
        snprintf(out, len, "%.*s", (int)n, at);
    }
    raft_string_free(json);
}

static branch_t *find_leader(void) {
    for (int i = 0; i < g_booted; i++) {
        branch_t *b = &g_branch[i];
        if (b->started && !b->down && raft_node_is_leader(b->node)) {
            return b;
        }
    }
    return NULL;
}

/* Polls until `pred` holds or the timeout passes. */
static bool wait_until(bool (*pred)(void *), void *arg) {
    uint64_t deadline = now_ms() + (uint64_t)g_timeout_ms;
    while (!pred(arg)) {
        if (now_ms() >= deadline) {
            return false;
        }
        sleep_ms(20);
    }
    return true;
}

/* A leader other than `arg`, ready (on_leader_start ran) and known to
 * every live node. */
static bool other_leader_settled(void *arg) {
    branch_t *leader = find_leader();
    if (!leader || leader == arg ||
        __atomic_load_n(&leader->leading_term, __ATOMIC_ACQUIRE) != raft_node_term(leader->node)) {
        return false; /* none yet, the old one, or on_leader_start not run yet */
    }
    for (int i = 0; i < g_booted; i++) {
        branch_t *b = &g_branch[i];
        if (!b->started || b->down || b == leader) {
            continue;
        }
        char *l = raft_node_leader_id(b->node);
        bool same = l && !strcmp(l, leader->peer);
        raft_string_free(l);
        if (!same) {
            return false;
        }
    }
    return true;
}

/* b follows the current leader. */
static bool follows_leader(void *arg) {
    branch_t *b = arg;
    branch_t *leader = find_leader();
    char state[32];
    branch_state(b, state, sizeof state);
    char *l = raft_node_leader_id(b->node);
    bool ok = leader && l && !strcmp(l, leader->peer) && !strcmp(state, "Follower");
    raft_string_free(l);
    return ok;
}

/* ming leads and has applied the first entry of its term. */
static bool first_leader_ready(void *arg) {
    branch_t *b = arg;
    return raft_node_is_leader(b->node) && __atomic_load_n(&b->leading_term, __ATOMIC_ACQUIRE) > 0;
}

/* Starts branch i's server and node; `initial_conf` NULL = wait to be added. */
static int branch_start(int i, const char *initial_conf) {
    branch_t *b = &g_branch[i];
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, b->name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        printf("error: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    store_uris_t uris;
    store_uris_init(&uris, dir);

    b->server = raft_server_start(b->addr);
    if (!b->server) {
        printf("error: %s cannot listen on %s: %s\n", b->name, b->addr, raft_last_error());
        return -1;
    }
    b->node = raft_node_new(b->server, GROUP, b->peer);
    if (!b->node) {
        printf("error: %s: %s\n", b->name, raft_last_error());
        raft_server_free(b->server);
        return -1;
    }
    raft_node_options_t opts;
    node_options_init(&opts, initial_conf, &uris, g_election_timeout_ms);
    opts.snapshot_interval_s = 0; /* the demo's log stays tiny */
    opts.catchup_timeout_ms = 5000; /* a booted branch has 5 s to catch up */
    raft_fsm_vtable_t fsm = {
        .on_apply = on_apply,
        .on_snapshot_save = on_snapshot_save,
        .on_snapshot_load = on_snapshot_load,
        .on_leader_start = on_leader_start,
        .on_error = on_error,
    };
    if (raft_node_init(b->node, &opts, &fsm, b) != 0) {
        printf("error: %s init failed: %s\n", b->name, raft_last_error());
        raft_node_free(b->node);
        raft_server_free(b->server);
        return -1;
    }
    b->started = true;
    g_booted = i + 1;
    return 0;
}

/* Shuts branch b's node down (waiting for it) and stops its server. */
static void branch_stop(branch_t *b) {
    if (!b->started || b->down) {
        return;
    }
    raft_node_shutdown(b->node, NULL, NULL);
    raft_node_join(b->node);
    raft_server_stop(b->server);
    b->down = true;
}

/* ---- commands ---- */

static void cmd_list(void) {
    for (int i = 0; i < g_booted; i++) {
        branch_t *b = &g_branch[i];
        char state[32];
        branch_state(b, state, sizeof state);
        printf("  %-5s %-16s %s\n", b->name, b->addr, state);
    }
}

/* Every started branch's raft_node_status_json (for the curious). */
static void cmd_status(void) {
    for (int i = 0; i < g_booted; i++) {
        branch_t *b = &g_branch[i];
        char *json = b->down ? NULL : raft_node_status_json(b->node);
        printf("  %-5s %s\n", b->name, json ? json : "(shut down)");
        raft_string_free(json);
    }
}

static void cmd_boot(void) {
    if (g_booted >= BRANCHES) {
        printf("error: all %d branches are already booted\n", BRANCHES);
        return;
    }
    branch_t *leader = find_leader();
    if (!leader) {
        printf("error: no leader yet; cannot add a branch\n");
        return;
    }
    int i = g_booted;
    branch_t *b = &g_branch[i];
    if (branch_start(i, NULL) != 0) {
        return;
    }
    /* A new peer must catch up within catchup_timeout_ms (ECATCHUP) and
     * changes go one at a time (EBUSY): on a busy machine, try again. */
    uint64_t deadline = now_ms() + (uint64_t)g_timeout_ms;
    for (;;) {
        waiter_t *w = waiter_new();
        int rc = raft_node_add_peer(leader->node, b->peer, waiter_done, w);
        if (rc != 0) {
            waiter_release(w);
            waiter_release(w);
            printf("error: add_peer %s via %s: %s\n", b->peer, leader->name, raft_last_error());
            return;
        }
        char msg[256];
        rc = waiter_wait(w, msg, sizeof msg);
        if (rc == 0) {
            break;
        }
        if ((rc != RAFT_ECATCHUP && rc != EBUSY) || now_ms() >= deadline) {
            printf("error: adding %s failed: %s (%s)\n", b->name, raft_strerror(rc), msg);
            return;
        }
        sleep_ms(200);
        if (!(leader = find_leader())) {
            printf("error: the leader went away while adding %s\n", b->name);
            return;
        }
    }
    if (!wait_until(follows_leader, b)) {
        printf("warning: %s joined but does not follow the leader yet\n", b->name);
        return;
    }
    printf("booted %s at %s; it joined the cluster through %s\n", b->name, b->addr, leader->name);
}

/* The leader, or NULL after saying there is none yet. */
static branch_t *leader_or_complain(void) {
    branch_t *leader = find_leader();
    if (!leader) {
        printf("error: no leader yet\n");
    }
    return leader;
}

/* The leader and its voters (`*voters`, for raft_string_free), or NULL
 * after saying why not. */
static branch_t *leader_with_voters(char **voters) {
    branch_t *leader = leader_or_complain();
    if (leader && raft_node_list_peers(leader->node, voters) != 0) {
        printf("error: list_peers: %s\n", raft_last_error());
        return NULL;
    }
    return leader;
}

static void cmd_transfer(void) {
    char *voters = NULL;
    branch_t *leader = leader_with_voters(&voters);
    if (!leader) {
        return;
    }
    /* The next live voter after the leader, in branch order. */
    branch_t *target = NULL;
    int at = (int)(leader - g_branch);
    for (int k = 1; k < g_booted && !target; k++) {
        branch_t *b = &g_branch[(at + k) % g_booted];
        if (b->started && !b->down && strstr(voters, b->peer)) {
            target = b;
        }
    }
    raft_string_free(voters);
    if (!target) {
        printf("error: %s is the only voter; boot another branch first\n", leader->name);
        return;
    }
    /* A transfer that does not finish within an election timeout is
     * cancelled by the library (the target lagged, a message was lost):
     * ask again until the command's timeout. */
    uint64_t deadline = now_ms() + (uint64_t)g_timeout_ms;
    for (;;) {
        if (raft_node_is_leader(leader->node)) {
            int rc = raft_node_transfer_leadership_to(leader->node, target->peer);
            if (rc != 0 && rc != EBUSY) {
                printf("error: transfer to %s: %s\n", target->name, raft_last_error());
                return;
            }
        }
        uint64_t until = now_ms() + 3 * (uint64_t)g_election_timeout_ms;
        while (!other_leader_settled(leader) && now_ms() < until && now_ms() < deadline) {
            sleep_ms(20);
        }
        if (other_leader_settled(leader)) {
            break;
        }
        if (now_ms() >= deadline) {
            printf("error: leadership did not move from %s in time\n", leader->name);
            return;
        }
    }
    branch_t *now = find_leader();
    printf("leadership transferred: %s -> %s\n", leader->name, now ? now->name : "?");
}

static void cmd_set(void) {
    branch_t *leader = leader_or_complain();
    if (!leader) {
        return;
    }
    int64_t value = rand() % 100;
    uint8_t data[8];
    put_i64(data, value);
    waiter_t *w = waiter_new();
    raft_task_t task = {.data = data, .len = sizeof data, .done = waiter_done, .done_ctx = w, .expected_term = -1};
    if (!call_succeeded(raft_node_apply(leader->node, &task), w, "apply", "set")) {
        return;
    }
    printf("set value=%" PRId64 " through %s\n", value, leader->name);
}

static void cmd_get(void) {
    branch_t *leader = leader_or_complain();
    if (!leader) {
        return;
    }
    waiter_t *w = waiter_new();
    if (!call_succeeded(raft_node_read_index(leader->node, waiter_done, w), w, "read_index", "get")) {
        return;
    }
    pthread_mutex_lock(&leader->mu);
    bool has = leader->has_value;
    int64_t v = leader->value;
    pthread_mutex_unlock(&leader->mu);
    if (has) {
        printf("get value=%" PRId64 " from %s\n", v, leader->name);
    } else {
        printf("get: no value set yet (asked %s)\n", leader->name);
    }
}

static void cmd_down(void) {
    char *voters = NULL;
    branch_t *leader = leader_with_voters(&voters);
    if (!leader) {
        return;
    }
    bool alone = !strchr(voters, ','); /* "p1" vs "p1,p2,..." */
    raft_string_free(voters);
    if (alone) {
        printf("error: %s is the last voter; boot another branch first\n", leader->name);
        return;
    }
    waiter_t *w = waiter_new();
    char what[64];
    snprintf(what, sizeof what, "removing %s", leader->name);
    if (!call_succeeded(raft_node_remove_peer(leader->node, leader->peer, waiter_done, w), w, "remove_peer", what)) {
        return;
    }
    branch_stop(leader);
    if (!wait_until(other_leader_settled, leader)) {
        printf("error: %s is down but no new leader was elected in time\n", leader->name);
        return;
    }
    printf("%s left the cluster and shut down; new leader: %s\n", leader->name, find_leader()->name);
}

static void cmd_quit(void) {
    for (int i = 0; i < g_booted; i++) {
        branch_stop(&g_branch[i]);
    }
    for (int i = 0; i < g_booted; i++) {
        raft_node_free(g_branch[i].node);
        raft_server_free(g_branch[i].server);
    }
    printf("all branches shut down; bye\n");
}

static void remove_tree(const char *path) {
    /* The demo owns ./nodes: wipe it with rm -rf rather than a recursive
     * walk (nftw is not in C99/POSIX-2008 without XSI). */
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (strchr(path, '\'') || system(cmd) != 0) {
        fprintf(stderr, "coffee: cannot wipe %s\n", path);
        exit(1);
    }
}

typedef void (*command_fn)(void);

/* The shell's commands (quit, exit and help are handled in main). */
static const struct {
    const char *name;
    command_fn run;
} COMMANDS[] = {
    {"list", cmd_list}, {"status", cmd_status}, {"boot", cmd_boot}, {"transfer", cmd_transfer},
    {"set", cmd_set},   {"get", cmd_get},       {"down", cmd_down},
};

/* The command called `name`, or NULL. */
static command_fn command_named(const char *name) {
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        if (!strcmp(name, COMMANDS[i].name)) {
            return COMMANDS[i].run;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    flag_t flags[] = {
        {"ip", FLAG_STR, &g_ip, "address of every branch"},
        {"base_port", FLAG_INT, &g_base_port, "port of ming; the others follow"},
        {"dir", FLAG_STR, &g_dir, "data directory (wiped at start)"},
        {"election_timeout_ms", FLAG_INT, &g_election_timeout_ms, "election timeout (ms)"},
        {"timeout_ms", FLAG_INT, &g_timeout_ms, "how long a command waits to settle (ms)"},
        {"log_level", FLAG_INT, &g_log_level, "library log level: 0 off .. 2 warn .. 5 trace"},
    };
    flags_parse(argc, argv, flags, sizeof flags / sizeof flags[0]);
    signal(SIGPIPE, SIG_IGN);
    raft_set_log_level((int32_t)g_log_level);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());

    remove_tree(g_dir);
    if (mkdir(g_dir, 0755) != 0) {
        fprintf(stderr, "coffee: cannot create %s: %s\n", g_dir, strerror(errno));
        return 1;
    }
    for (int i = 0; i < BRANCHES; i++) {
        branch_t *b = &g_branch[i];
        b->name = NAMES[i];
        snprintf(b->addr, sizeof b->addr, "%s:%lld", g_ip, g_base_port + i);
        snprintf(b->peer, sizeof b->peer, "%s:%lld:0", g_ip, g_base_port + i);
        pthread_mutex_init(&b->mu, NULL);
    }

    /* ming bootstraps alone and leads. */
    if (branch_start(0, g_branch[0].peer) != 0) {
        return 1;
    }
    if (!wait_until(first_leader_ready, &g_branch[0])) {
        printf("error: ming did not become leader in time\n");
    } else {
        printf("ming is up at %s and leads the cluster\n", g_branch[0].addr);
    }

    bool tty = isatty(STDIN_FILENO);
    char line[256];
    for (;;) {
        printf("coffee> ");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) {
            printf("%s", tty ? "\n" : "quit (end of input)\n");
            break;
        }
        char *cmd = line + strspn(line, " \t");
        cmd[strcspn(cmd, " \t\r\n")] = '\0';
        if (!tty) {
            printf("%s\n", cmd); /* echo scripted input so the transcript reads well */
        }
        command_fn run = command_named(cmd);
        if (!*cmd) {
            continue;
        } else if (run) {
            run();
        } else if (!strcmp(cmd, "quit") || !strcmp(cmd, "exit")) {
            break;
        } else if (!strcmp(cmd, "help")) {
            printf("commands: list boot transfer set get down quit (and status)\n");
        } else {
            printf("error: unknown command '%s'; commands: list boot transfer set get down quit\n", cmd);
        }
        fflush(stdout);
    }
    cmd_quit();
    fflush(stdout);
    return 0;
}
