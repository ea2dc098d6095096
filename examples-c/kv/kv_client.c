/*
 * kv_client: one put, get or cas against the kv group, from the command
 * line, through raft_client_t (which finds the leader and follows its
 * redirects, retrying until --timeout_ms).
 *
 *   kv_client [flags] put KEY VALUE        prints "ok"
 *   kv_client [flags] get KEY              prints the value, or "(not found)"
 *   kv_client [flags] cas KEY EXPECTED NEW prints "swapped" or "not swapped"
 *
 * Flags (before or after the command): --conf (default the three peers on
 * 127.0.0.1:8200-8202), --group Kv, --timeout_ms 5000.
 *
 * Exit codes: 0 done (put stored, key found, value swapped), 1 key not found
 * or not swapped, 2 bad arguments, 3 the call failed (the message says why;
 * a timed-out put or cas may or may not have been applied).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rraft.h"

#include "flags.h"

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Appends a `str` (u32 little-endian length, then the bytes) at *p. */
static uint8_t *put_str(uint8_t *p, const char *s) {
    uint32_t n = (uint32_t)strlen(s);
    put_u32(p, n);
    memcpy(p + 4, s, n);
    return p + 4 + n;
}

static void usage(void) {
    fprintf(stderr, "usage: kv_client [--conf PEERS] [--group Kv] [--timeout_ms MS] put KEY VALUE\n"
                    "       kv_client [flags] get KEY\n"
                    "       kv_client [flags] cas KEY EXPECTED NEW\n");
}

int main(int argc, char **argv) {
    const char *conf = "127.0.0.1:8200:0,127.0.0.1:8201:0,127.0.0.1:8202:0";
    const char *group = "Kv";
    long long timeout_ms = 5000;
    flag_t flags[] = {
        {"conf", FLAG_STR, &conf, "peers of the group"},
        {"group", FLAG_STR, &group, "id of the Raft group"},
        {"timeout_ms", FLAG_INT, &timeout_ms, "give up after this long (outcome unknown for put/cas)"},
    };

    /* Split the command words from the flags (each flag takes a value:
     * --name value or --name=value), then parse the flags. */
    char **flag_argv = calloc((size_t)argc + 1, sizeof *flag_argv);
    const char *words[4];
    int nflags = 0, nwords = 0;
    if (!flag_argv) {
        perror("calloc");
        return 3;
    }
    flag_argv[nflags++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            flags_usage(argv[0], flags, sizeof flags / sizeof flags[0]);
            return 0;
        }
        if (!strncmp(argv[i], "--", 2)) {
            flag_argv[nflags++] = argv[i];
            if (!strchr(argv[i], '=') && i + 1 < argc) {
                flag_argv[nflags++] = argv[++i];
            }
        } else if (nwords < 4) {
            words[nwords++] = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    flags_parse(nflags, flag_argv, flags, sizeof flags / sizeof flags[0]);
    free(flag_argv);

    const char *method;
    char op = 0;
    if (nwords == 3 && !strcmp(words[0], "put")) {
        method = "Kv.put";
        op = 'P';
    } else if (nwords == 2 && !strcmp(words[0], "get")) {
        method = "Kv.get";
    } else if (nwords == 4 && !strcmp(words[0], "cas")) {
        method = "Kv.cas";
        op = 'C';
    } else {
        usage();
        return 2;
    }
    if (timeout_ms < 1 || timeout_ms > INT32_MAX) {
        fprintf(stderr, "kv_client: bad --timeout_ms\n");
        return 2;
    }

    /* The request: [op byte] then the words after the command as strs. */
    size_t len = op ? 1 : 0;
    for (int i = 1; i < nwords; i++) {
        len += 4 + strlen(words[i]);
    }
    uint8_t *req = malloc(len ? len : 1);
    if (!req) {
        perror("malloc");
        return 3;
    }
    uint8_t *p = req;
    if (op) {
        *p++ = (uint8_t)op;
    }
    for (int i = 1; i < nwords; i++) {
        p = put_str(p, words[i]);
    }

    raft_client_t *client = raft_client_new(group, conf);
    if (!client) {
        fprintf(stderr, "kv_client: %s\n", raft_last_error());
        free(req);
        return 2;
    }
    raft_buffer_t reply = {0};
    int rc = raft_client_call(client, method, req, len, (int32_t)timeout_ms, &reply);
    free(req);
    int exit_code = 0;
    if (rc != 0) {
        fprintf(stderr, "kv_client: %s failed: %s (%d): %s\n", words[0], raft_strerror(rc), rc, raft_last_error());
        exit_code = 3;
    } else if (op == 'P') {
        printf("ok\n");
    } else if (op == 'C') {
        bool swapped = reply.len == 1 && reply.data[0] == 1;
        printf("%s\n", swapped ? "swapped" : "not swapped");
        exit_code = swapped ? 0 : 1;
    } else if (reply.len >= 1 && reply.data[0] == 1) {
        fwrite(reply.data + 1, 1, reply.len - 1, stdout);
        printf("\n");
    } else {
        printf("(not found)\n");
        exit_code = 1;
    }
    raft_buffer_free(&reply);
    raft_client_free(client);
    return exit_code;
}
