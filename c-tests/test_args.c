/*
 * Arguments and statuses: version, status names, last_error's snprintf
 * semantics, every NULL argument of every function, NULL before INVALID,
 * and the proc roots that are not readable directories.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* A last_error message holds the call, the path and the errno text. */
static void check_error_names(const char *file, int line, const char *call, const char *path, int err)
{
    const char *msg = h_last_error();
    if (strncmp(msg, call, strlen(call)) != 0 || !strstr(msg, path) || !strstr(msg, strerror(err)))
        h_fail(file, line, "last error \"%s\" should start with \"%s\" and name \"%s\" and \"%s\"",
               msg, call, path, strerror(err));
}

static int stats_all_zero(const procspy_walk_stats *s)
{
    static const procspy_walk_stats zero;
    return memcmp(s, &zero, sizeof zero) == 0;
}

void test_version(void)
{
    const char *v = procspy_version();
    unsigned a, b, c;
    int n = -1;
    REQUIRE(v != NULL);
    CHECK(sscanf(v, "%u.%u.%u%n", &a, &b, &c, &n) == 3);
    CHECK_EQ(n, (long long)strlen(v));
    CHECK(v[0] >= '0' && v[0] <= '9');
    CHECK(strspn(v, "0123456789.") == strlen(v));
    CHECK(procspy_version() == v); /* static */
    /* The header's version macros are the library's version. */
    CHECK_EQ(a, PROCSPY_VERSION_MAJOR);
    CHECK_EQ(b, PROCSPY_VERSION_MINOR);
    CHECK_EQ(c, PROCSPY_VERSION_PATCH);
}

void test_status_str_known(void)
{
    static const char *const names[] = {
        "PROCSPY_OK", "PROCSPY_STOPPED", "PROCSPY_CALLBACK_ABORTED", "PROCSPY_BUFFER_TOO_SMALL",
        "PROCSPY_NULL_ARGUMENT", "PROCSPY_INVALID_ARGUMENT", "PROCSPY_IO", "PROCSPY_BUSY",
        "PROCSPY_PANIC", "PROCSPY_UNSUPPORTED",
    };
    const char *s[10];
    int i, j;
    for (i = 0; i < 10; i++) {
        s[i] = procspy_status_str((procspy_status)i);
        if (!CHECK(s[i] != NULL))
            continue;
        CHECK(strlen(s[i]) > 0);
        /* "the name and meaning": the name, then more than the name */
        if (strncmp(s[i], names[i], strlen(names[i])) != 0 || s[i][strlen(names[i])] == '_')
            h_fail(__FILE__, __LINE__, "procspy_status_str(%d) = \"%s\" does not name %s", i, s[i], names[i]);
        CHECK(procspy_status_str((procspy_status)i) == s[i]);
    }
    for (i = 0; i < 10; i++)
        for (j = i + 1; j < 10; j++)
            if (s[i] && s[j])
                CHECK(strcmp(s[i], s[j]) != 0);
}

void test_status_str_unknown(void)
{
    static const int unknown[] = {-1, 10, 11, 1000, INT_MIN, INT_MAX, -8};
    size_t i;
    int k;
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = procspy_status_str((procspy_status)unknown[i]);
        if (!CHECK(s != NULL))
            continue;
        CHECK(strlen(s) > 0);
        for (k = 0; k <= 9; k++)
            CHECK(strcmp(s, procspy_status_str((procspy_status)k)) != 0);
    }
}

void test_state_names(void)
{
    static const char *const tcp[] = {
        "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
        "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
    };
    static const uint32_t unknown_states[] = {0, 13, 255, 256, 256 + PROCSPY_STATE_LISTEN, UINT32_MAX};
    static const uint32_t unknown_protocols[] = {0, 3, 4, 256 + PROCSPY_PROTO_TCP, UINT32_MAX};
    uint32_t s;
    size_t i, j;
    for (s = 1; s <= 12; s++) {
        const char *n = procspy_state_name(PROCSPY_PROTO_TCP, s);
        if (!CHECK(n != NULL))
            continue;
        if (strcmp(n, tcp[s - 1]) != 0)
            h_fail(__FILE__, __LINE__, "procspy_state_name(TCP, %u) = \"%s\", want \"%s\"", s, n, tcp[s - 1]);
        CHECK(procspy_state_name(PROCSPY_PROTO_TCP, s) == n); /* static */
    }
    /* The constants name the numbers the names are for. */
    CHECK(strcmp(procspy_state_name(PROCSPY_PROTO_TCP, PROCSPY_STATE_LISTEN), "LISTEN") == 0);
    CHECK(strcmp(procspy_state_name(PROCSPY_PROTO_TCP, PROCSPY_STATE_TIME_WAIT), "TIME_WAIT") == 0);
    CHECK(strcmp(procspy_state_name(PROCSPY_PROTO_TCP, PROCSPY_STATE_NEW_SYN_RECV), "NEW_SYN_RECV") == 0);
    /* UDP: ss's names for its two states, the kernel's for any other number. */
    CHECK(strcmp(procspy_state_name(PROCSPY_PROTO_UDP, PROCSPY_STATE_CLOSE), "UNCONN") == 0);
    CHECK(strcmp(procspy_state_name(PROCSPY_PROTO_UDP, PROCSPY_STATE_ESTABLISHED), "ESTAB") == 0);
    CHECK(strcmp(procspy_state_name(PROCSPY_PROTO_UDP, PROCSPY_STATE_LISTEN), "LISTEN") == 0);
    /* Unknown states, of either protocol, and unknown protocols. */
    for (i = 0; i < sizeof unknown_states / sizeof unknown_states[0]; i++) {
        CHECK(strcmp(procspy_state_name(PROCSPY_PROTO_TCP, unknown_states[i]), "UNKNOWN") == 0);
        CHECK(strcmp(procspy_state_name(PROCSPY_PROTO_UDP, unknown_states[i]), "UNKNOWN") == 0);
    }
    for (i = 0; i < sizeof unknown_protocols / sizeof unknown_protocols[0]; i++)
        for (j = 0; j <= 13; j++)
            CHECK(strcmp(procspy_state_name(unknown_protocols[i], (uint32_t)j), "UNKNOWN") == 0);
}

void test_last_error_snprintf(void)
{
    const char *path = "/nonexistent/procspy-harness-root";
    char want[512], buf[512];
    procspy_walker *w = (procspy_walker *)(uintptr_t)1;
    size_t len;
    CHECK_STATUS(procspy_walker_new(path, &w), PROCSPY_IO);
    CHECK(w == NULL);
    check_error_names(__FILE__, __LINE__, "procspy_walker_new", path, ENOENT);
    snprintf(want, sizeof want, "%s", h_last_error());
    len = strlen(want);
    REQUIRE(len > 10);
    /* cap 0 with NULL: the full length */
    CHECK_EQ(procspy_last_error(NULL, 0), len);
    /* cap 0 with a buffer: nothing written */
    memset(buf, 'Z', sizeof buf);
    CHECK_EQ(procspy_last_error(buf, 0), len);
    CHECK_EQ(buf[0], 'Z');
    /* cap 1: only the NUL */
    memset(buf, 'Z', sizeof buf);
    CHECK_EQ(procspy_last_error(buf, 1), len);
    CHECK_EQ(buf[0], 0);
    CHECK_EQ(buf[1], 'Z');
    /* cap len: len-1 bytes and a NUL */
    memset(buf, 'Z', sizeof buf);
    CHECK_EQ(procspy_last_error(buf, len), len);
    CHECK_MEM(buf, strlen(buf), want, len - 1);
    CHECK_EQ(buf[len - 1], 0);
    CHECK_EQ(buf[len], 'Z');
    /* cap len+1: all of it */
    memset(buf, 'Z', sizeof buf);
    CHECK_EQ(procspy_last_error(buf, len + 1), len);
    CHECK_MEM(buf, strlen(buf), want, len);
    CHECK_EQ(buf[len + 1], 'Z');
    /* a much bigger cap: the same */
    memset(buf, 'Z', sizeof buf);
    CHECK_EQ(procspy_last_error(buf, sizeof buf), len);
    CHECK_MEM(buf, strlen(buf), want, len);
    /* a successful call leaves the message as it was */
    CHECK(procspy_version() != NULL);
    CHECK_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK(w != NULL);
    procspy_walker_free(w);
    CHECK_EQ(procspy_last_error(buf, sizeof buf), len);
    CHECK_MEM(buf, strlen(buf), want, len);
    /* a new failure replaces it */
    CHECK_STATUS(procspy_walker_new("/", NULL), PROCSPY_NULL_ARGUMENT);
    CHECK(strncmp(h_last_error(), "procspy_walker_new", 18) == 0);
    CHECK(strcmp(h_last_error(), want) != 0);
}

struct thread_err { size_t len_before, len_after; char msg[256]; char other[256]; };

static void *other_thread(void *arg)
{
    struct thread_err *t = arg;
    procspy_walker *w = NULL;
    t->len_before = procspy_last_error(t->msg, sizeof t->msg);
    if (procspy_walker_new("/nonexistent/other-thread", &w) == PROCSPY_IO)
        t->len_after = procspy_last_error(t->other, sizeof t->other);
    procspy_walker_free(w);
    return NULL;
}

void test_last_error_per_thread(void)
{
    struct thread_err t;
    pthread_t th;
    char mine[256];
    size_t len;
    procspy_walker *w = NULL;
    CHECK_STATUS(procspy_walker_new("/nonexistent/main-thread", &w), PROCSPY_IO);
    len = procspy_last_error(mine, sizeof mine);
    memset(&t, 0, sizeof t);
    memset(t.msg, 'Z', sizeof t.msg);
    REQUIRE(pthread_create(&th, NULL, other_thread, &t) == 0);
    pthread_join(th, NULL);
    /* "" before any failure on that thread */
    CHECK_EQ(t.len_before, 0);
    CHECK_EQ(t.msg[0], 0);
    CHECK(strstr(t.other, "/nonexistent/other-thread") != NULL);
    CHECK_EQ(t.len_after, strlen(t.other));
    /* this thread's message is untouched by the other's */
    CHECK_EQ(procspy_last_error(NULL, 0), len);
    CHECK(strstr(h_last_error(), "/nonexistent/main-thread") != NULL);
}

void test_walker_new_args(void)
{
    procspy_walker *w = (procspy_walker *)(uintptr_t)1;
    struct h_fake f;
    char odd[400];
    CHECK_STATUS(procspy_walker_new(NULL, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_new") != NULL);
    CHECK_STATUS(procspy_walker_new("/proc", NULL), PROCSPY_NULL_ARGUMENT);
    /* NULL before IO */
    CHECK_STATUS(procspy_walker_new("/nonexistent", NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK(w != NULL && w != (procspy_walker *)(uintptr_t)1);
    procspy_walker_free(w);
    w = (procspy_walker *)(uintptr_t)1;
    CHECK_STATUS(procspy_walker_new("/proc", &w), PROCSPY_OK);
    CHECK(w != NULL);
    procspy_walker_free(w);
    /* any bytes but NUL in the path */
    REQUIRE(h_fake_init(&f) == 0);
    snprintf(odd, sizeof odd, "%s/ a\n\t\xff\xfe)(", f.root);
    REQUIRE(mkdir(odd, 0755) == 0);
    w = NULL;
    CHECK_STATUS(procspy_walker_new(odd, &w), PROCSPY_OK);
    if (w) {
        int n = 0;
        procspy_walk_stats st;
        CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st), PROCSPY_OK);
        CHECK_EQ(st.processes, 0);
        CHECK_EQ(n, 0);
    }
    procspy_walker_free(w);
    h_fake_cleanup(&f);
}

void test_walker_new_io(void)
{
    struct h_fake f;
    char file[300], fifo[300], missing[300];
    procspy_walker *w;
    REQUIRE(h_fake_init(&f) == 0);
    snprintf(file, sizeof file, "%s/regular-file", f.root);
    snprintf(fifo, sizeof fifo, "%s/a-fifo", f.root);
    snprintf(missing, sizeof missing, "%s/missing", f.root);
    h_fake_write(&f, "regular-file", "x", 1);
    REQUIRE(mkfifo(fifo, 0644) == 0);

    w = (procspy_walker *)(uintptr_t)1;
    CHECK_STATUS(procspy_walker_new(missing, &w), PROCSPY_IO);
    CHECK(w == NULL);
    check_error_names(__FILE__, __LINE__, "procspy_walker_new", missing, ENOENT);

    w = (procspy_walker *)(uintptr_t)1;
    CHECK_STATUS(procspy_walker_new(file, &w), PROCSPY_IO);
    CHECK(w == NULL);
    check_error_names(__FILE__, __LINE__, "procspy_walker_new", file, ENOTDIR);

    /* a FIFO: must fail at once (no blocking open) */
    w = (procspy_walker *)(uintptr_t)1;
    CHECK_STATUS(procspy_walker_new(fifo, &w), PROCSPY_IO);
    CHECK(w == NULL);
    check_error_names(__FILE__, __LINE__, "procspy_walker_new", fifo, ENOTDIR);

    /* an empty path names nothing */
    w = (procspy_walker *)(uintptr_t)1;
    CHECK_STATUS(procspy_walker_new("", &w), PROCSPY_IO);
    CHECK(w == NULL);
    h_fake_cleanup(&f);
}

/* The proc root is removed after new: a walk (and connections) is PROCSPY_IO. */
void test_root_removed_is_io(void)
{
    struct h_fake f;
    procspy_walker *w = NULL;
    procspy_walk_stats st;
    int n = 0;
    char root[256];
    REQUIRE(h_fake_init(&f) == 0);
    snprintf(root, sizeof root, "%s", f.root);
    REQUIRE_STATUS(procspy_walker_new(root, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st), PROCSPY_OK);
    REQUIRE(rmdir(root) == 0);
    f.root[0] = 0;
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st), PROCSPY_IO);
    check_error_names(__FILE__, __LINE__, "procspy_walker_walk", root, ENOENT);
    CHECK_EQ(st.processes, 0);
    CHECK_EQ(st.sockets, 0);
    CHECK(st.elapsed_ns > 0 && st.elapsed_ns < 60000000000ull);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL,
                                            h_count_conn_cb, &n, &st), PROCSPY_IO);
    check_error_names(__FILE__, __LINE__, "procspy_walker_connections", root, ENOENT);
    CHECK_EQ(n, 0);
    procspy_walker_free(w);
}

void test_free_and_stop_null(void)
{
    procspy_walker *w;
    int n = 0;
    procspy_walker_free(NULL);
    procspy_walker_stop(NULL);
    /* nothing changed: a fresh walker still walks (and finds the fixture's sockets) */
    w = h_walker();
    REQUIRE(w != NULL);
    {
        procspy_walk_stats st;
        CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st), PROCSPY_OK);
        if (!CHECK(n > 0))
            printf("      (stats: namespaces %llu processes %llu skipped %llu fds %llu sockets %llu)\n",
                   (unsigned long long)st.namespaces, (unsigned long long)st.processes,
                   (unsigned long long)st.skipped, (unsigned long long)st.fds, (unsigned long long)st.sockets);
    }
    procspy_walker_free(w);
}

void test_set_rate_limit_args(void)
{
    procspy_walker *w = NULL;
    CHECK_STATUS(procspy_walker_set_rate_limit(NULL, 0, 0), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_set_rate_limit") != NULL);
    CHECK_STATUS(procspy_walker_set_rate_limit(NULL, 5, 1000), PROCSPY_NULL_ARGUMENT);
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_rate_limit(w, 0, 0), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_rate_limit(w, UINT64_MAX, 0), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_rate_limit(w, 1, 1), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_rate_limit(w, 0, 0), PROCSPY_OK);
    procspy_walker_free(w);
}

void test_walk_args(void)
{
    procspy_walk_stats st;
    uint8_t buf[64];
    int n = 0;
    procspy_walker *w = h_walker();
    REQUIRE(w != NULL);

    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_walk(NULL, buf, sizeof buf, h_count_cb, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_walk") != NULL);
    CHECK(stats_all_zero(&st)); /* stats filled on every return */
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_walk(w, buf, sizeof buf, NULL, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK(stats_all_zero(&st));
    CHECK_STATUS(procspy_walker_walk(w, NULL, 1, h_count_cb, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_walk(w, NULL, SIZE_MAX, h_count_cb, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_walk(NULL, NULL, 0, NULL, NULL, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_EQ(n, 0);
    /* NULL with cap 0 is count only; stats may be NULL */
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, NULL), PROCSPY_OK);
    CHECK(n > 0);
    n = 0;
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st), PROCSPY_OK);
    CHECK_EQ(st.bytes_written, 0);
    CHECK(st.bytes_needed > 0);
    CHECK(st.processes > 0);
    CHECK_EQ(st.sockets, n);

    /* the same bad calls fail the same way on a stopped walker */
    procspy_walker_stop(w);
    CHECK_STATUS(procspy_walker_walk(w, buf, sizeof buf, NULL, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 8, h_count_cb, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st), PROCSPY_STOPPED);
    procspy_walker_free(w);
}

void test_connections_args(void)
{
    procspy_walk_stats st;
    uint8_t buf[64];
    int n = 0;
    static const uint32_t bad_protocols[] = {0, 4, 3 | 4, 8, 0x80000000u, 0xFFFFFFFFu};
    size_t i;
    const uint32_t ALL = PROCSPY_STATES_ALL, TCP = PROCSPY_PROTO_TCP;
    procspy_walker *w = h_walker();
    REQUIRE(w != NULL);

    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_connections(NULL, NULL, 0, TCP, ALL, h_count_conn_cb, &n, &st),
                 PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_connections") != NULL);
    CHECK(stats_all_zero(&st));
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, TCP, ALL, NULL, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 16, TCP, ALL, h_count_conn_cb, &n, &st),
                 PROCSPY_NULL_ARGUMENT);
    for (i = 0; i < sizeof bad_protocols / sizeof bad_protocols[0]; i++) {
        memset(&st, 0xAB, sizeof st);
        CHECK_STATUS(procspy_walker_connections(w, NULL, 0, bad_protocols[i], ALL, h_count_conn_cb, &n, &st),
                     PROCSPY_INVALID_ARGUMENT);
        CHECK(stats_all_zero(&st));
    }
    CHECK(strstr(h_last_error(), "procspy_walker_connections") != NULL);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, TCP, 0, h_count_conn_cb, &n, &st),
                 PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_connections(w, buf, sizeof buf, TCP, 0, h_count_conn_cb, &n, &st),
                 PROCSPY_INVALID_ARGUMENT);
    /* NULL before INVALID */
    CHECK_STATUS(procspy_walker_connections(NULL, NULL, 0, 0, 0, h_count_conn_cb, &n, &st),
                 PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, 0, 0, NULL, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 5, 0, 0, h_count_conn_cb, &n, &st),
                 PROCSPY_NULL_ARGUMENT);
    CHECK_EQ(n, 0);
    /* valid: NULL buf with cap 0 is the walker's own; stats may be NULL */
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, TCP | PROCSPY_PROTO_UDP, ALL, h_count_conn_cb, &n, NULL),
                 PROCSPY_OK);
    CHECK(n > 0);
    /* on a stopped walker: argument errors first, then STOPPED */
    procspy_walker_stop(w);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, 0, ALL, h_count_conn_cb, &n, &st),
                 PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, TCP, 0, h_count_conn_cb, &n, &st),
                 PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, 0, 0, NULL, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, TCP, ALL, h_count_conn_cb, &n, &st), PROCSPY_STOPPED);
    procspy_walker_free(w);
}

void test_netns_of_args(void)
{
    procspy_walker *w = NULL;
    uint64_t out = 12345;
    static const int32_t bad[] = {0, -1, -1000, INT32_MIN};
    size_t i;
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_netns_of(NULL, 1, &out), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_netns_of") != NULL);
    CHECK_STATUS(procspy_walker_netns_of(w, 1, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_netns_of(NULL, 0, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_netns_of(NULL, -1, &out), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_netns_of(w, 0, NULL), PROCSPY_NULL_ARGUMENT);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_STATUS(procspy_walker_netns_of(w, bad[i], &out), PROCSPY_INVALID_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_netns_of") != NULL);
    CHECK_STATUS(procspy_walker_netns_of(w, getpid(), &out), PROCSPY_OK);
    CHECK_EQ(out, h_stat_ino("/proc/self/ns/net"));
    /* a pid that does not exist: IO naming the path */
    CHECK_STATUS(procspy_walker_netns_of(w, INT32_MAX, &out), PROCSPY_IO);
    CHECK(strstr(h_last_error(), "2147483647") != NULL);
    CHECK(strstr(h_last_error(), strerror(ENOENT)) != NULL);
    procspy_walker_free(w);
}

void test_read_tcp_args(void)
{
    procspy_walker *w = NULL;
    uint8_t buf[64];
    size_t out = 777;
    static const int32_t bad[] = {0, -1, INT32_MIN};
    size_t i;
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_read_tcp(NULL, 1, buf, sizeof buf, &out), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_read_tcp") != NULL);
    CHECK_STATUS(procspy_walker_read_tcp(w, 1, buf, sizeof buf, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_read_tcp(w, 1, NULL, 10, &out), PROCSPY_NULL_ARGUMENT);
    /* NULL before INVALID */
    CHECK_STATUS(procspy_walker_read_tcp(NULL, 0, buf, sizeof buf, &out), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_read_tcp(w, -1, buf, sizeof buf, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_read_tcp(w, 0, NULL, 10, &out), PROCSPY_NULL_ARGUMENT);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_STATUS(procspy_walker_read_tcp(w, bad[i], buf, sizeof buf, &out), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_read_tcp(w, INT32_MAX, buf, sizeof buf, &out), PROCSPY_IO);
    CHECK(strstr(h_last_error(), "2147483647") != NULL);
    procspy_walker_free(w);
}

void test_diagnose_args(void)
{
    procspy_walker *w = NULL;
    char small[8], big[4096];
    size_t len = 777, full;
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_diagnose(NULL, big, sizeof big, &len), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_diagnose") != NULL);
    CHECK_STATUS(procspy_walker_diagnose(w, big, sizeof big, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_diagnose(w, NULL, 10, &len), PROCSPY_NULL_ARGUMENT);
    /* cap 0 asks for the length, like snprintf. */
    CHECK_STATUS(procspy_walker_diagnose(w, NULL, 0, &len), PROCSPY_BUFFER_TOO_SMALL);
    full = len;
    CHECK(full > 0);
    CHECK_STATUS(procspy_walker_diagnose(w, small, sizeof small, &len), PROCSPY_BUFFER_TOO_SMALL);
    CHECK(len == full && strlen(small) == sizeof small - 1);
    CHECK_STATUS(procspy_walker_diagnose(w, big, sizeof big, &len), PROCSPY_OK);
    CHECK(len == full && strlen(big) == full && strncmp(big, small, sizeof small - 1) == 0);
    /* Before any call, nothing has been probed. */
    CHECK(strstr(big, "namespace files (PID/ns/net): not probed yet\n") != NULL);
    CHECK(strstr(big, "BPF owner scan (task_file iterator): not loaded yet\n") != NULL);
    procspy_walker_free(w);
}

void test_parse_args(void)
{
    const char *line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 640 1 0000000000000000 100 0 0 10 0\n";
    uint64_t bad = 99;
    int n = 0;
    CHECK_STATUS(procspy_parse_tcp(NULL, 5, PROCSPY_STATES_ALL, h_count_conn_cb, &n, &bad), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_parse_tcp") != NULL);
    CHECK_STATUS(procspy_parse_tcp((const uint8_t *)line, strlen(line), PROCSPY_STATES_ALL, NULL, &n, &bad),
                 PROCSPY_NULL_ARGUMENT);
    /* NULL before INVALID */
    CHECK_STATUS(procspy_parse_tcp(NULL, 5, 0, h_count_conn_cb, &n, &bad), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_parse_tcp((const uint8_t *)line, strlen(line), 0, NULL, &n, &bad), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_parse_tcp((const uint8_t *)line, strlen(line), 0, h_count_conn_cb, &n, &bad),
                 PROCSPY_INVALID_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_parse_tcp") != NULL);
    CHECK_EQ(n, 0);
    /* NULL with len 0 is empty input */
    bad = 99;
    CHECK_STATUS(procspy_parse_tcp(NULL, 0, PROCSPY_STATES_ALL, h_count_conn_cb, &n, &bad), PROCSPY_OK);
    CHECK_EQ(bad, 0);
    CHECK_EQ(n, 0);
    /* malformed_lines may be NULL */
    CHECK_STATUS(procspy_parse_tcp((const uint8_t *)line, strlen(line), PROCSPY_STATES_ALL, h_count_conn_cb, &n, NULL),
                 PROCSPY_OK);
    CHECK_EQ(n, 1);
}
