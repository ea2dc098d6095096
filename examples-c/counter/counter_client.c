/*
 * counter_client: drives the counter group, like braft's counter_client,
 * and doubles as a benchmark.
 *
 * --thread_num callers each loop: with probability --add_percentage call
 * CounterService.fetch_add(1) (with --payload_size bytes of payload, as
 * braft's patched client), otherwise CounterService.get, through one shared
 * raft_client_t that finds the leader. The messages are braft's counter's
 * (counter_common.h); an answer success=false (not the leader) makes the
 * caller ask the group for its leader (raft_client_refresh_leader), or wait
 * a moment when it named the node called, and resend, until the call's
 * --timeout_ms: such an answer promises the request was not carried out.
 * Two ways to run the callers:
 *
 *   default        a pthread per caller, blocking in raft_client_call (the
 *                  simplest usage);
 *   --use_async    no thread per caller: each caller keeps one
 *                  raft_client_call_async in flight, and its completion
 *                  callback (run on the library's IO thread) records the
 *                  outcome and starts the caller's next call. Any number of
 *                  callers costs no thread of the program's own; one
 *                  thread asks for the leader after a success=false.
 *
 * Every second it prints the qps and the average / p99 latency of that
 * second; at the end one machine-readable line over the measured window
 * (after --warmup_s):
 *
 *   summary: ops=N adds=N gets=N acked=N unknown=N errors=N threads=N seconds=S
 *            qps=X avg_us=X p50_us=X p99_us=X
 *
 * Before the timed run it waits (up to --wait_leader_s) for the group to
 * answer a CounterService.get, i.e. for a leader, printing one line while it
 * waits.
 *
 * An add whose call fails is "unknown": it may or may not have been applied
 * (the call timed out, or the leader died after the entry was replicated);
 * one still answered success=false at its deadline was not applied and
 * counts as an error only. --log_acks FILE records one line per
 * acknowledged or unknown add: "ack CALLER SEQ BEFORE" (BEFORE = the
 * counter before this add) or "unknown CALLER SEQ CODE". The counter then
 * must satisfy acked <= value <= acked + unknown.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rraft.h"

#include "counter_common.h"

/* ---- latency histogram: exact below 256 us, then 128 sub-buckets per
 * power of two (< 1% error) ---- */

#define HIST_LINEAR 256
#define HIST_BUCKETS (HIST_LINEAR + 56 * 128)

typedef struct {
    uint64_t count[HIST_BUCKETS];
    uint64_t n;
    uint64_t sum_us;
} hist_t;

static size_t hist_index(uint64_t us) {
    if (us < HIST_LINEAR) {
        return (size_t)us;
    }
    int msb = 63 - __builtin_clzll(us);
    int shift = msb - 7;
    uint64_t top = us >> shift; /* 128..255 */
    return HIST_LINEAR + (size_t)(shift - 1) * 128 + (size_t)(top - 128);
}

static uint64_t hist_value(size_t i) { /* upper edge of bucket i */
    if (i < HIST_LINEAR) {
        return i;
    }
    size_t k = i - HIST_LINEAR;
    int shift = (int)(k / 128) + 1;
    uint64_t top = 128 + k % 128;
    return ((top + 1) << shift) - 1;
}

static void hist_add(hist_t *h, uint64_t us) {
    h->count[hist_index(us)]++;
    h->n++;
    h->sum_us += us;
}

static uint64_t hist_quantile(const hist_t *h, double q) {
    if (h->n == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)(q * (double)h->n);
    if (want >= h->n) {
        want = h->n - 1;
    }
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen > want) {
            return hist_value(i);
        }
    }
    return hist_value(HIST_BUCKETS - 1);
}

/* ---- shared state ---- */

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct {
    pthread_mutex_t mu;
    hist_t second; /* the current reporting interval */
    hist_t total;
    uint64_t adds, gets, acked, unknown, errors, second_errors;
    uint64_t measure_from_us; /* calls ending before this (warm-up) stay out of `total` */
    FILE *acks;
} stats_t;

static stats_t g_stats = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct {
    raft_client_t *client;
    long long add_percentage;
    long long timeout_ms;
    uint64_t deadline_us; /* 0 = until SIGINT */
    unsigned seed;
} worker_args_t;

/* FetchAddRequest.payload of every add (--payload_size bytes of 'x'). */
static uint8_t *g_payload = NULL;
static size_t g_payload_len = 0;

/* The longest request: FetchAddRequest{value, payload}. */
static size_t request_max(void) { return 2 * (1 + PB_VARINT_MAX) + g_payload_len; }

static uint64_t random_u64(void) {
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) {
            v = 0;
        }
        close(fd);
    }
    if (v == 0) {
        v = now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&v;
    }
    return v ? v : 1;
}

/* A call still answered success=false at its deadline (the request was
 * not carried out); apart from the library's error codes, which are >= 0. */
#define NOT_APPLIED (-1)

/* Counts one finished call. `took` is its latency; `why` the error text.
 * An add that failed with NOT_APPLIED was not applied; any other failure
 * leaves its outcome unknown. */
/* `now` is when the call ended (read once by the caller: an async caller
 * uses the same reading to start its next call). */
static void record_call(bool add, int rc, uint64_t now, uint64_t start, uint64_t caller_id, uint64_t seq,
                        int64_t value, const char *why) {
    uint64_t took = now - start;
    pthread_mutex_lock(&g_stats.mu);
    if (add) {
        g_stats.adds++;
    } else {
        g_stats.gets++;
    }
    if (rc == 0) {
        hist_add(&g_stats.second, took);
        if (now >= g_stats.measure_from_us) {
            hist_add(&g_stats.total, took);
        }
        if (add) {
            g_stats.acked++;
            if (g_stats.acks) {
                fprintf(g_stats.acks, "ack %" PRIu64 " %" PRIu64 " %" PRId64 "\n", caller_id, seq, value);
            }
        }
    } else {
        g_stats.errors++;
        g_stats.second_errors++;
        if (add && rc != NOT_APPLIED) {
            g_stats.unknown++;
            if (g_stats.acks) {
                fprintf(g_stats.acks, "unknown %" PRIu64 " %" PRIu64 " %d\n", caller_id, seq, rc);
            }
        }
    }
    pthread_mutex_unlock(&g_stats.mu);
    if (rc != 0) {
        fprintf(stderr, "counter_client: %s failed: %s (%d): %s\n", add ? "fetch_add" : "get",
                rc == NOT_APPLIED ? "not applied" : raft_strerror(rc), rc, why);
    }
}

/* One caller's next request: FetchAddRequest{value: 1, payload} (counted
 * in `*seq`) or GetRequest{} (empty). Fills `req` (request_max() bytes)
 * and returns its length. */
static size_t next_request(worker_args_t *w, uint64_t *seq, bool *add, uint8_t *req) {
    *add = (long long)(rand_r(&w->seed) % 100) < w->add_percentage;
    if (!*add) {
        return 0;
    }
    ++*seq;
    return fetch_add_encode(req, 1, g_payload_len > 0, g_payload, g_payload_len);
}

/* What a completed call answered: 0 with the value on success=true,
 * NOT_APPLIED on success=false (with the redirect), EPROTO on a malformed
 * reply. */
static int read_response(const uint8_t *data, size_t len, int64_t *value, counter_response_t *resp) {
    if (!counter_response_parse(data, len, resp)) {
        return EPROTO;
    }
    if (!resp->success) {
        return NOT_APPLIED;
    }
    if (!resp->has_value) {
        return EPROTO;
    }
    *value = resp->value;
    return 0;
}

static int remaining_ms(uint64_t deadline_us) {
    uint64_t now = now_us();
    return now >= deadline_us ? 0 : (int)((deadline_us - now + 999) / 1000);
}

/* What a success=false named: no leader (an election is under way), the
 * node the client calls already (a new leader not serving yet: braft's
 * counter serves from on_leader_start on), or another node. */
typedef enum { REDIRECT_NOWHERE, REDIRECT_SAME, REDIRECT_ELSEWHERE } redirect_t;

static redirect_t classify_redirect(raft_client_t *client, const char *redirect) {
    if (!redirect[0]) {
        return REDIRECT_NOWHERE;
    }
    /* The client names peers "ip:port:idx", braft's redirect "ip:port:idx:role". */
    char *leader = raft_client_leader(client);
    size_t n = leader ? strlen(leader) : 0;
    bool same = leader && !strncmp(redirect, leader, n) && (redirect[n] == '\0' || redirect[n] == ':');
    raft_string_free(leader);
    return same ? REDIRECT_SAME : REDIRECT_ELSEWHERE;
}

static void sleep_ms(long ms) {
    struct timespec ts = {0, ms * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* After success=false: resend to the same node a moment later, or ask the
 * group for its leader (raft_client_t takes its leader from the group, not
 * from an answer's body), after a pause while no leader is known. */
static void find_leader(raft_client_t *client, redirect_t redirect, uint64_t deadline_us) {
    if (redirect == REDIRECT_SAME) {
        sleep_ms(1);
        return;
    }
    if (redirect == REDIRECT_NOWHERE) {
        sleep_ms(5);
    }
    int ms = remaining_ms(deadline_us);
    if (ms > 0) {
        raft_client_refresh_leader(client, ms < 1000 ? ms : 1000);
    }
}

static bool keep_going(const worker_args_t *w, uint64_t now) {
    return !g_stop && (w->deadline_us == 0 || now < w->deadline_us);
}

static void *worker(void *arg) {
    worker_args_t *w = arg;
    uint64_t caller_id = random_u64(); /* names this caller in --log_acks */
    uint64_t seq = 0;
    uint8_t *req = malloc(request_max());
    if (!req) {
        perror("malloc");
        return NULL;
    }
    while (keep_going(w, now_us())) {
        bool add;
        size_t req_len = next_request(w, &seq, &add, req);
        uint64_t start = now_us(), deadline = start + (uint64_t)w->timeout_ms * 1000u;
        int rc;
        int64_t value = 0;
        char why[512] = "";
        for (;;) {
            raft_buffer_t reply = {0};
            counter_response_t resp;
            rc = raft_client_call(w->client, add ? METHOD_FETCH_ADD : METHOD_GET, req, req_len,
                                  remaining_ms(deadline) > 0 ? remaining_ms(deadline) : 1, &reply);
            if (rc != 0) {
                snprintf(why, sizeof why, "%s", raft_last_error());
                raft_buffer_free(&reply);
                break;
            }
            rc = read_response(reply.data, reply.len, &value, &resp);
            raft_buffer_free(&reply);
            if (rc != NOT_APPLIED) {
                if (rc == EPROTO) {
                    snprintf(why, sizeof why, "malformed CounterResponse");
                }
                break;
            }
            snprintf(why, sizeof why, "not the leader until the deadline (redirect \"%s\")", resp.redirect);
            if (now_us() >= deadline) {
                break;
            }
            find_leader(w->client, classify_redirect(w->client, resp.redirect), deadline);
        }
        record_call(add, rc, now_us(), start, caller_id, seq, value, why);
    }
    free(req);
    return NULL;
}

/* ---- --use_async: callers driven by completion callbacks ---- */

typedef struct async_caller {
    worker_args_t args;
    uint64_t caller_id; /* names this caller in --log_acks */
    uint64_t seq;
    bool add;
    uint8_t *req; /* the call's request (request_max() bytes), resent after a redirect */
    size_t req_len;
    uint64_t start_us, deadline_us;
    redirect_t redirect;         /* what the last success=false named */
    struct async_caller *next;   /* in the redirect queue */
} async_caller_t;

/* Callers still running; main waits for 0 before freeing them. */
static pthread_mutex_t g_async_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_async_cv = PTHREAD_COND_INITIALIZER;
static long long g_async_live = 0;

/* Callers answered success=false, waiting for the redirect thread to find
 * the leader (blocking) and resend their call; guarded by g_async_mu,
 * signalled on g_redirect_cv. */
static pthread_cond_t g_redirect_cv = PTHREAD_COND_INITIALIZER;
static async_caller_t *g_redirects = NULL;
static bool g_redirect_stop = false;

static void async_retire(void) {
    pthread_mutex_lock(&g_async_mu);
    if (--g_async_live == 0) {
        pthread_cond_signal(&g_async_cv);
    }
    pthread_mutex_unlock(&g_async_mu);
}

static void async_done(void *ctx, const raft_status_t *status, const uint8_t *data, size_t len);

/* Sends the caller's current request (again). A call that cannot start
 * (EINVAL: a freed client) counts as an error and retires the caller
 * rather than spinning. */
static void async_send(async_caller_t *c) {
    int ms = remaining_ms(c->deadline_us);
    int rc = raft_client_call_async(c->args.client, c->add ? METHOD_FETCH_ADD : METHOD_GET, c->req, c->req_len,
                                    ms > 0 ? ms : 1, async_done, c);
    if (rc != 0) {
        record_call(c->add, rc, now_us(), c->start_us, c->caller_id, c->seq, 0, raft_last_error());
        async_retire();
    }
}

/* Starts the caller's next call at `now`, or retires it when the run is
 * over. */
static void async_issue(async_caller_t *c, uint64_t now) {
    if (!keep_going(&c->args, now)) {
        async_retire();
        return;
    }
    c->req_len = next_request(&c->args, &c->seq, &c->add, c->req);
    c->start_us = now;
    c->deadline_us = c->start_us + (uint64_t)c->args.timeout_ms * 1000u;
    async_send(c);
}

/* Runs on an IO thread once per call: count it and start the next one, or
 * after success=false hand the call to the redirect thread. */
static void async_done(void *ctx, const raft_status_t *status, const uint8_t *data, size_t len) {
    async_caller_t *c = ctx;
    int rc = status->code;
    int64_t value = 0;
    const char *why = rc ? status->message : "";
    uint64_t now = now_us();
    if (rc == 0) {
        counter_response_t resp;
        rc = read_response(data, len, &value, &resp);
        if (rc == NOT_APPLIED && now < c->deadline_us) {
            c->redirect = classify_redirect(c->args.client, resp.redirect);
            pthread_mutex_lock(&g_async_mu);
            c->next = g_redirects;
            g_redirects = c;
            pthread_cond_signal(&g_redirect_cv);
            pthread_mutex_unlock(&g_async_mu);
            return;
        }
        why = rc == NOT_APPLIED ? "not the leader until the deadline" : rc ? "malformed CounterResponse" : "";
    }
    record_call(c->add, rc, now, c->start_us, c->caller_id, c->seq, value, why);
    async_issue(c, now);
}

/* The redirect thread: finds the leader once for every caller queued
 * meanwhile, then resends their calls. */
static void *redirect_thread(void *arg) {
    raft_client_t *client = arg;
    pthread_mutex_lock(&g_async_mu);
    for (;;) {
        while (!g_redirects && !g_redirect_stop) {
            pthread_cond_wait(&g_redirect_cv, &g_async_mu);
        }
        if (!g_redirects) {
            break;
        }
        async_caller_t *queued = g_redirects;
        g_redirects = NULL;
        pthread_mutex_unlock(&g_async_mu);
        /* One pause or leader lookup for all: the strongest need wins. */
        redirect_t redirect = REDIRECT_SAME;
        uint64_t deadline = 0;
        for (async_caller_t *c = queued; c; c = c->next) {
            if (c->redirect != REDIRECT_SAME) {
                redirect = redirect == REDIRECT_NOWHERE ? REDIRECT_NOWHERE : c->redirect;
            }
            deadline = c->deadline_us > deadline ? c->deadline_us : deadline;
        }
        find_leader(client, redirect, deadline);
        while (queued) {
            async_caller_t *c = queued;
            queued = c->next;
            async_send(c);
        }
        pthread_mutex_lock(&g_async_mu);
    }
    pthread_mutex_unlock(&g_async_mu);
    return NULL;
}

static double secs_since(uint64_t start) { return (double)(now_us() - start) / 1e6; }

/* Waits until a CounterService.get succeeds (the group has a leader that
 * committed an entry of its term) or `wait_s` passed. Returns 0 or the
 * last error. */
static int wait_for_leader(raft_client_t *client, const char *group, long long wait_s, char *why, size_t why_len) {
    uint64_t start = now_us(), deadline = start + (uint64_t)wait_s * 1000000u;
    bool announced = false;
    int rc = 0;
    for (;;) {
        uint8_t empty[1] = {0};
        raft_buffer_t reply = {0};
        rc = raft_client_call(client, METHOD_GET, empty, 0, 1000, &reply);
        counter_response_t resp = {0};
        int64_t value = 0;
        if (rc != 0) {
            snprintf(why, why_len, "%s (%d): %s", raft_strerror(rc), rc, raft_last_error());
        } else if ((rc = read_response(reply.data, reply.len, &value, &resp)) != 0) {
            snprintf(why, why_len, "%s",
                     rc == NOT_APPLIED ? "answered success=false (not the leader)" : "malformed reply");
        }
        raft_buffer_free(&reply);
        if (rc == NOT_APPLIED) {
            find_leader(client, classify_redirect(client, resp.redirect), deadline);
        }
        if (rc == 0 || g_stop || now_us() >= deadline) {
            break;
        }
        if (!announced) {
            printf("waiting for a leader of group %s (the first election takes one to two election "
                   "timeouts)...\n",
                   group);
            fflush(stdout);
            announced = true;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rc == 0) {
        char *leader = raft_client_leader(client);
        printf("leader %s (found after %.1f s)\n", leader ? leader : "-", secs_since(start));
        raft_string_free(leader);
        fflush(stdout);
    }
    return rc;
}

int main(int argc, char **argv) {
    const char *conf = "127.0.0.1:8100:0,127.0.0.1:8101:0,127.0.0.1:8102:0";
    const char *group = "Counter";
    const char *log_acks = "";
    long long thread_num = 1;
    long long add_percentage = 100;
    long long duration_s = 0;
    long long timeout_ms = 5000;
    long long wait_leader_s = 60;
    long long warmup_s = 0;
    long long payload_size = 0;
    bool use_async = false;
    long long io_workers = 0;
    flag_t flags[] = {
        {"conf", FLAG_STR, &conf, "peers of the group"},
        {"group", FLAG_STR, &group, "id of the Raft group"},
        {"thread_num", FLAG_INT, &thread_num, "concurrent callers"},
        {"add_percentage", FLAG_INT, &add_percentage, "percentage of fetch_add (the rest are get)"},
        {"duration_s", FLAG_INT, &duration_s, "run this long (0: until SIGINT)"},
        {"timeout_ms", FLAG_INT, &timeout_ms, "give up a call (outcome unknown) after this long"},
        {"log_acks", FLAG_STR, &log_acks, "file recording every acknowledged / unknown add"},
        {"wait_leader_s", FLAG_INT, &wait_leader_s, "wait this long for a leader before the timed run"},
        {"warmup_s", FLAG_INT, &warmup_s, "leave the first seconds of the run out of the summary"},
        {"payload_size", FLAG_INT, &payload_size,
         "bytes of FetchAddRequest.payload in every add (replicated and fsynced with it; 0: none)"},
        {"use_async", FLAG_BOOL, &use_async,
         "drive the callers with raft_client_call_async and completion callbacks instead of a thread each"},
        {"io_workers", FLAG_INT, &io_workers, "the library's IO threads (raft_global_init; 0: its default)"},
    };
    flags_parse(argc, argv, flags, sizeof flags / sizeof flags[0]);
    if (thread_num < 1 || thread_num > (use_async ? 1000000 : 10000) || add_percentage < 0 || add_percentage > 100 ||
        timeout_ms < 1 || wait_leader_s < 0 || warmup_s < 0 || (duration_s > 0 && warmup_s >= duration_s) ||
        payload_size < 0 || payload_size > 64 * 1024 * 1024 || io_workers < 0 || io_workers > 1024) {
        fprintf(stderr, "counter_client: bad --thread_num, --add_percentage, --timeout_ms, --wait_leader_s, "
                        "--warmup_s, --payload_size or --io_workers\n");
        return 2;
    }
    if (raft_global_init((int32_t)io_workers) != 0) {
        fprintf(stderr, "counter_client: raft_global_init: %s\n", raft_last_error());
        return 1;
    }
    if (payload_size > 0) {
        g_payload_len = (size_t)payload_size;
        g_payload = malloc(g_payload_len);
        if (!g_payload) {
            perror("malloc");
            return 1;
        }
        memset(g_payload, 'x', g_payload_len);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (*log_acks) {
        g_stats.acks = fopen(log_acks, "w");
        if (!g_stats.acks) {
            fprintf(stderr, "counter_client: cannot write %s: %s\n", log_acks, strerror(errno));
            return 1;
        }
    }
    raft_client_t *client = raft_client_new(group, conf);
    if (!client) {
        fprintf(stderr, "counter_client: %s\n", raft_last_error());
        return 1;
    }

    char why[512] = "";
    if (wait_for_leader(client, group, wait_leader_s, why, sizeof why) != 0) {
        if (g_stop) {
            raft_client_free(client);
            return 1;
        }
        fprintf(stderr, "counter_client: no leader of group %s after %lld s: %s\n", group, wait_leader_s, why);
        raft_client_free(client);
        return 1;
    }

    uint64_t start = now_us();
    g_stats.measure_from_us = start + (uint64_t)warmup_s * 1000000u;
    uint64_t deadline_us = duration_s > 0 ? start + (uint64_t)duration_s * 1000000u : 0;
    unsigned base_seed = (unsigned)random_u64();
    worker_args_t *args = NULL;
    pthread_t *threads = NULL;
    async_caller_t *callers = NULL;
    pthread_t redirects;
    long long started = 0;
    if (use_async) {
        callers = calloc((size_t)thread_num, sizeof *callers);
        if (!callers || pthread_create(&redirects, NULL, redirect_thread, client) != 0) {
            perror("starting the callers");
            return 1;
        }
        g_async_live = thread_num;
        for (long long i = 0; i < thread_num; i++) {
            callers[i].args =
                (worker_args_t){client, add_percentage, timeout_ms, deadline_us, base_seed + (unsigned)i};
            callers[i].caller_id = random_u64();
            callers[i].req = malloc(request_max());
            if (!callers[i].req) {
                perror("malloc");
                return 1;
            }
        }
        for (long long i = 0; i < thread_num; i++) {
            async_issue(&callers[i], now_us());
        }
    } else {
        args = calloc((size_t)thread_num, sizeof *args);
        threads = calloc((size_t)thread_num, sizeof *threads);
        if (!args || !threads) {
            perror("calloc");
            return 1;
        }
        for (long long i = 0; i < thread_num; i++) {
            args[i] = (worker_args_t){client, add_percentage, timeout_ms, deadline_us, base_seed + (unsigned)i};
            if (pthread_create(&threads[i], NULL, worker, &args[i]) != 0) {
                fprintf(stderr, "counter_client: cannot start thread %lld\n", i);
                g_stop = 1;
                break;
            }
            started++;
        }
    }

    /* Report once a second until the duration is over or SIGINT. */
    uint64_t last = start;
    while (!g_stop && (duration_s <= 0 || now_us() < start + (uint64_t)duration_s * 1000000u)) {
        uint64_t next = last + 1000000u, now = now_us();
        if (duration_s > 0 && next > start + (uint64_t)duration_s * 1000000u) {
            next = start + (uint64_t)duration_s * 1000000u;
        }
        if (next > now) {
            uint64_t wait = next - now;
            struct timespec ts = {(time_t)(wait / 1000000u), (long)(wait % 1000000u) * 1000};
            nanosleep(&ts, NULL); /* EINTR on SIGINT is fine */
        }
        now = now_us();
        pthread_mutex_lock(&g_stats.mu);
        double secs = (double)(now - last) / 1e6;
        uint64_t n = g_stats.second.n, errs = g_stats.second_errors;
        double avg = n ? (double)g_stats.second.sum_us / (double)n : 0;
        uint64_t p99 = hist_quantile(&g_stats.second, 0.99);
        memset(&g_stats.second, 0, sizeof g_stats.second);
        g_stats.second_errors = 0;
        pthread_mutex_unlock(&g_stats.mu);
        char *leader = raft_client_leader(client);
        printf("qps=%.0f avg_us=%.0f p99_us=%" PRIu64 " errors=%" PRIu64 " leader=%s\n", secs > 0 ? n / secs : 0, avg,
               p99, errs, leader ? leader : "-");
        fflush(stdout);
        raft_string_free(leader);
        last = now;
    }
    g_stop = 1;
    for (long long i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    if (use_async) {
        /* Every call's callback runs exactly once (a timeout at the latest). */
        pthread_mutex_lock(&g_async_mu);
        while (g_async_live > 0) {
            pthread_cond_wait(&g_async_cv, &g_async_mu);
        }
        g_redirect_stop = true;
        pthread_cond_signal(&g_redirect_cv);
        pthread_mutex_unlock(&g_async_mu);
        pthread_join(redirects, NULL);
    }
    uint64_t end = now_us();
    double secs = end > g_stats.measure_from_us ? (double)(end - g_stats.measure_from_us) / 1e6 : 0;

    const hist_t *t = &g_stats.total;
    printf("summary: ops=%" PRIu64 " adds=%" PRIu64 " gets=%" PRIu64 " acked=%" PRIu64 " unknown=%" PRIu64
           " errors=%" PRIu64 " threads=%lld seconds=%.1f qps=%.0f avg_us=%.0f p50_us=%" PRIu64 " p99_us=%" PRIu64
           "\n",
           t->n, g_stats.adds, g_stats.gets, g_stats.acked, g_stats.unknown, g_stats.errors, thread_num, secs,
           secs > 0 ? (double)t->n / secs : 0, t->n ? (double)t->sum_us / (double)t->n : 0,
           hist_quantile(t, 0.50), hist_quantile(t, 0.99));
    fflush(stdout);
    int rc = 0;
    if (g_stats.acks && fclose(g_stats.acks) != 0) {
        fprintf(stderr, "counter_client: writing %s failed\n", log_acks);
        rc = 1;
    }
    raft_client_free(client);
    free(args);
    free(threads);
    for (long long i = 0; callers && i < thread_num; i++) {
        free(callers[i].req);
    }
    free(callers);
    free(g_payload);
    return rc;
}
