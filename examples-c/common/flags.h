/*
 * A tiny gflags-style command-line parser shared by the C examples:
 * --name value, --name=value, a bare --name for a boolean and --noname for
 * false; as in gflags, one dash works like two (-name=value), so a braft
 * server's command line works unchanged.
 */
#ifndef EXAMPLES_FLAGS_H
#define EXAMPLES_FLAGS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- flags: --name value or --name=value (or one dash), like gflags ---- */

typedef enum { FLAG_STR, FLAG_INT, FLAG_BOOL } flag_kind_t;

typedef struct {
    const char *name;
    flag_kind_t kind;
    void *value; /* const char **, long long *, or bool * */
    const char *help;
} flag_t;

static inline void flags_usage(const char *prog, const flag_t *flags, size_t n) {
    fprintf(stderr, "usage: %s [flags]\n", prog);
    for (size_t i = 0; i < n; i++) {
        switch (flags[i].kind) {
        case FLAG_STR: {
            const char *v = *(const char **)flags[i].value;
            fprintf(stderr, "  --%-22s %s (default \"%s\")\n", flags[i].name, flags[i].help, v ? v : "");
            break;
        }
        case FLAG_INT:
            fprintf(stderr, "  --%-22s %s (default %lld)\n", flags[i].name, flags[i].help,
                    *(long long *)flags[i].value);
            break;
        case FLAG_BOOL:
            fprintf(stderr, "  --%-22s %s (default %s)\n", flags[i].name, flags[i].help,
                    *(bool *)flags[i].value ? "true" : "false");
            break;
        }
    }
}

static inline bool parse_bool(const char *s, bool *out) {
    if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes")) {
        *out = true;
        return true;
    }
    if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no")) {
        *out = false;
        return true;
    }
    return false;
}

/* Parses argv into flags; prints usage and exits on an error or --help. */
static inline void flags_parse(int argc, char **argv, const flag_t *flags, size_t n) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            flags_usage(argv[0], flags, n);
            exit(0);
        }
        if (arg[0] != '-' || arg[1] == '\0' || (arg[1] == '-' && arg[2] == '\0')) {
            fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], arg);
            flags_usage(argv[0], flags, n);
            exit(2);
        }
        arg += arg[1] == '-' ? 2 : 1;
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const flag_t *f = NULL;
        for (size_t k = 0; k < n; k++) {
            if (strlen(flags[k].name) == name_len && !strncmp(flags[k].name, arg, name_len)) {
                f = &flags[k];
                break;
            }
        }
        if (!f && !eq && name_len > 2 && !strncmp(arg, "no", 2)) {
            /* gflags' --nosync: a boolean set to false. */
            for (size_t k = 0; k < n; k++) {
                if (flags[k].kind == FLAG_BOOL && !strcmp(flags[k].name, arg + 2)) {
                    *(bool *)flags[k].value = false;
                    f = &flags[k];
                    break;
                }
            }
            if (f) {
                continue;
            }
        }
        if (!f) {
            fprintf(stderr, "%s: unknown flag '--%.*s'\n", argv[0], (int)name_len, arg);
            flags_usage(argv[0], flags, n);
            exit(2);
        }
        const char *value = NULL;
        if (eq) {
            value = eq + 1;
        } else if (f->kind == FLAG_BOOL &&
                   (i + 1 >= argc || argv[i + 1][0] == '-')) {
            value = "true"; /* bare --sync */
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "%s: flag --%s needs a value\n", argv[0], f->name);
            exit(2);
        }
        switch (f->kind) {
        case FLAG_STR:
            *(const char **)f->value = value;
            break;
        case FLAG_INT: {
            char *end = NULL;
            long long v = strtoll(value, &end, 10);
            if (!*value || *end) {
                fprintf(stderr, "%s: --%s wants an integer, got '%s'\n", argv[0], f->name, value);
                exit(2);
            }
            *(long long *)f->value = v;
            break;
        }
        case FLAG_BOOL:
            if (!parse_bool(value, (bool *)f->value)) {
                fprintf(stderr, "%s: --%s wants true/false, got '%s'\n", argv[0], f->name, value);
                exit(2);
            }
            break;
        }
    }
}

#endif /* EXAMPLES_FLAGS_H */
