/*
 * Live events through the C ABI: arguments checked before anything
 * starts, the fd a caller polls, a listen of this process's own named with
 * it, the ring's size settable only before the tracer starts, and a stop
 * that ends a waiting call. Where this kernel or these privileges refuse
 * the tracer, the live tests say so and check only the refusal's status.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static int count_cb(void *userdata, const procspy_event *e)
{
    (void)e;
    ++*(int *)userdata;
    return 0;
}

void test_events_args(void)
{
    procspy_walker *w = NULL;
    int n = 0, fd = 7;
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_events(NULL, 0, PROCSPY_PROTO_TCP, count_cb, &n, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_events(w, 0, PROCSPY_PROTO_TCP, NULL, &n, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_events(w, 0, 0, count_cb, &n, NULL), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_events(w, 0, 4, count_cb, &n, NULL), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_events_fd(w, NULL), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_events_fd(NULL, &fd), PROCSPY_NULL_ARGUMENT);
    CHECK_EQ(fd, -1);
    CHECK_STATUS(procspy_walker_set_events_ring(NULL, 1 << 16), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_set_events_ring(w, 3), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_set_events_ring(w, 4096), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_set_events_ring(w, (size_t)1 << 31), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_set_events_ring(w, 1 << 16), PROCSPY_OK);
    CHECK_EQ(n, 0);
    procspy_walker_free(w);
}

/* The first LISTEN event on `port` and its owner, copied. */
struct listen_seen {
    uint16_t port;
    int found;
    int32_t pid, fd;
    uint64_t start_time;
    char name[32];
};

static int listen_cb(void *userdata, const procspy_event *e)
{
    struct listen_seen *s = userdata;
    const procspy_connection *c = e->connection;
    if (e->kind == PROCSPY_EVENT_LISTEN && c->local_port == s->port && !s->found && c->owner) {
        s->found = 1;
        s->pid = c->owner->pid;
        s->fd = c->owner->fd;
        s->start_time = c->owner->start_time;
        snprintf(s->name, sizeof s->name, "%.*s", (int)c->owner->name_len, c->owner->name);
    }
    return 0;
}

/* 1 if the tracer runs here; 0, said once, if this kernel lacks what it
   needs or these privileges refuse it. A verifier's refusal fails: where
   the kernel has all the state hook's program asks for, it must load. */
static int tracer_runs(procspy_walker *w)
{
    int n = 0;
    procspy_status st = procspy_walker_events(w, 0, PROCSPY_PROTO_TCP, count_cb, &n, NULL);
    if (st == PROCSPY_UNSUPPORTED || st == PROCSPY_IO) {
        char why[512];
        procspy_last_error(why, sizeof why);
        CHECK(strstr(why, "verifier") == NULL);
        printf("    (the tracer does not run here: %s)\n", why);
        return 0;
    }
    CHECK_STATUS(st, PROCSPY_OK);
    return st == PROCSPY_OK;
}

void test_events_listen(void)
{
    procspy_walker *w = NULL;
    struct listen_seen seen = {0};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    procspy_walk_stats st;
    procspy_walk_stats_ext ext;
    uint64_t deadline;
    char comm[32] = "";
    size_t n;
    int fd = -1, l;
    struct pollfd p;
    char *c;

    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    if (!tracer_runs(w)) {
        procspy_walker_free(w);
        return;
    }
    CHECK_STATUS(procspy_walker_set_events_ring(w, 1 << 20), PROCSPY_INVALID_ARGUMENT);
    REQUIRE_STATUS(procspy_walker_events_fd(w, &fd), PROCSPY_OK);
    REQUIRE(fd >= 0);
    l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(l >= 0);
    REQUIRE(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0);
    REQUIRE(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    seen.port = ntohs(a.sin_port);
    /* The fd wakes a poll loop; what it says waits is delivered. */
    p.fd = fd;
    p.events = POLLIN;
    deadline = h_now_ns() + 5000000000ull;
    while (!seen.found && h_now_ns() < deadline) {
        CHECK(poll(&p, 1, 1000) >= 0);
        CHECK_STATUS(procspy_walker_events(w, 0, PROCSPY_PROTO_TCP, listen_cb, &seen, &st), PROCSPY_OK);
    }
    CHECK(seen.found);
    CHECK_EQ(seen.pid, getpid());
    CHECK_EQ(seen.fd, -1);
    CHECK_EQ(seen.start_time, h_proc_start_time(getpid()));
    c = h_read_file("/proc/self/comm", &n);
    if (c) {
        snprintf(comm, sizeof comm, "%.*s", (int)(n && c[n - 1] == '\n' ? n - 1 : n), c);
        free(c);
    }
    CHECK(strcmp(seen.name, comm) == 0);
    CHECK_STATUS(procspy_walker_stats_ext(w, &ext, sizeof ext), PROCSPY_OK);
    CHECK_EQ(ext.events_dropped, 0);
    close(l);
    procspy_walker_free(w);
}

struct stopper {
    procspy_walker *w;
    unsigned after_ms;
};

static void *stop_later(void *arg)
{
    struct stopper *s = arg;
    h_sleep_ms(s->after_ms);
    procspy_walker_stop(s->w);
    return NULL;
}

void test_events_stop(void)
{
    procspy_walker *w = NULL;
    struct stopper s;
    pthread_t t;
    procspy_status r;
    uint64_t t0;
    int n = 0;

    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    if (!tracer_runs(w)) {
        procspy_walker_free(w);
        return;
    }
    s.w = w;
    s.after_ms = 100;
    REQUIRE(pthread_create(&t, NULL, stop_later, &s) == 0);
    t0 = h_now_ns();
    /* UDP only: nothing a TCP-busy host does ends the wait early. */
    do
        r = procspy_walker_events(w, 30000, PROCSPY_PROTO_UDP, count_cb, &n, NULL);
    while (r == PROCSPY_OK && h_now_ns() - t0 < 10000000000ull);
    pthread_join(t, NULL);
    CHECK_STATUS(r, PROCSPY_STOPPED);
    CHECK(h_now_ns() - t0 < 5000000000ull);
    procspy_walker_free(w);
}
