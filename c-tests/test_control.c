/*
 * Concurrency and control: BUSY (another thread, a re-entrant callback),
 * stop (another thread during a tick, from a callback, final), callbacks
 * that abort, STOPPED over CALLBACK_ABORTED, stats on every return, and the
 * rate limit's ticks and table re-reads.
 */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define TICK_LONG_NS 10000000000ull /* 10 s: a tick nobody waits out */

static uint64_t stop_bound_ns(void)
{
    return h_under_valgrind ? 50000000ull : 10000000ull;
}

static unsigned settle_ms(void)
{
    return h_under_valgrind ? 500 : 100;
}

/* What the background thread runs. */
enum bg_call { BG_WALK, BG_CONNECTIONS, BG_CHANGES };

static int count_change_cb(void *userdata, const procspy_change *c)
{
    (void)c;
    ++*(int *)userdata;
    return 0;
}

struct bg_walk {
    procspy_walker *w;
    enum bg_call call;
    int changes;
    procspy_status status;
    procspy_walk_stats stats;
    struct h_recs recs;
    struct h_conns conns;
    uint64_t end_ns;
    int done;
};

static void *bg_main(void *arg)
{
    struct bg_walk *b = arg;
    if (b->call == BG_CONNECTIONS)
        b->status = procspy_walker_connections(b->w, NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP,
                                               PROCSPY_STATES_ALL, h_conn_cb, &b->conns, &b->stats);
    else if (b->call == BG_CHANGES)
        b->status = procspy_walker_changes(b->w, NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP,
                                           PROCSPY_STATES_ALL, count_change_cb, &b->changes, &b->stats);
    else
        b->status = procspy_walker_walk(b->w, NULL, 0, h_rec_cb, &b->recs, &b->stats);
    b->end_ns = h_now_ns();
    __atomic_store_n(&b->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* The walking thread runs SCHED_FIFO where allowed (root, not under valgrind), so that
 * the stop latency measured is the library's, not the wait for a CPU on a loaded host. */
static int start_bg(pthread_t *th, struct bg_walk *b)
{
    pthread_attr_t attr;
    struct sched_param sp;
    int r;
    if (!h_under_valgrind && pthread_attr_init(&attr) == 0) {
        memset(&sp, 0, sizeof sp);
        sp.sched_priority = 1;
        if (pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED) == 0 &&
            pthread_attr_setschedpolicy(&attr, SCHED_FIFO) == 0 &&
            pthread_attr_setschedparam(&attr, &sp) == 0) {
            r = pthread_create(th, &attr, bg_main, b);
            pthread_attr_destroy(&attr);
            if (r == 0)
                return 0;
        } else {
            pthread_attr_destroy(&attr);
        }
    }
    return pthread_create(th, NULL, bg_main, b);
}

/* A walk (or connections) waits in its first tick; another thread finds BUSY, then stops it.
 * Returns how long the walk took to return after the stop call. */
static uint64_t busy_then_stop(enum bg_call call)
{
    procspy_walker *w = NULL;
    struct bg_walk b;
    pthread_t th;
    procspy_walk_stats st;
    uint64_t t_stop, ns = 0;
    int n = 0;
    size_t out = 0;
    uint8_t buf[64];
    if (!CHECK_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK))
        return UINT64_MAX;
    CHECK_STATUS(procspy_walker_set_rate_limit(w, 0, TICK_LONG_NS), PROCSPY_OK);
    memset(&b, 0, sizeof b);
    b.w = w;
    b.call = call;
    if (!CHECK(start_bg(&th, &b) == 0)) {
        procspy_walker_free(w);
        return UINT64_MAX;
    }
    h_sleep_ms(settle_ms());
    CHECK(!__atomic_load_n(&b.done, __ATOMIC_SEQ_CST));
    /* a second walk on the walker: BUSY, at once, with stats filled */
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st), PROCSPY_BUSY);
    CHECK(strstr(h_last_error(), "procspy_walker_walk") != NULL);
    CHECK_EQ(st.processes, 0);
    CHECK_EQ(st.sockets, 0);
    CHECK_EQ(st.bytes_written, 0);
    CHECK_STATUS(procspy_walker_walk(w, buf, sizeof buf, h_count_cb, &n, NULL), PROCSPY_BUSY);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, h_count_conn_cb, &n, &st),
                 PROCSPY_BUSY);
    CHECK(strstr(h_last_error(), "procspy_walker_connections") != NULL);
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, count_change_cb, &n, &st),
                 PROCSPY_BUSY);
    CHECK(strstr(h_last_error(), "procspy_walker_changes") != NULL);
    /* arguments are checked before BUSY */
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, 0, PROCSPY_STATES_ALL, h_count_conn_cb, &n, &st),
                 PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, NULL, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 4, h_count_cb, &n, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_EQ(n, 0);
    /* single-pid calls are fine during a walk */
    CHECK_STATUS(procspy_walker_netns_of(w, getpid(), &ns), PROCSPY_OK);
    CHECK_EQ(ns, h_stat_ino("/proc/self/ns/net"));
    CHECK_STATUS(procspy_walker_read_tcp(w, getpid(), NULL, 0, &out), PROCSPY_BUFFER_TOO_SMALL);
    CHECK(out > 0);
    CHECK(!__atomic_load_n(&b.done, __ATOMIC_SEQ_CST));
    /* stop: the waiting walk ends within the bound */
    t_stop = h_now_ns();
    procspy_walker_stop(w);
    pthread_join(th, NULL);
    CHECK_STATUS(b.status, PROCSPY_STOPPED);
    CHECK_EQ(b.stats.ticks, 1);        /* it was waiting for the first */
    CHECK(b.stats.processes > 0);      /* the pids were grouped before that tick */
    CHECK(b.stats.namespaces > 0);
    CHECK_EQ(b.stats.sockets, 0);
    CHECK(b.stats.elapsed_ns >= (uint64_t)settle_ms() * 500000u); /* it waited most of that */
    CHECK_EQ(b.recs.n + b.conns.n + (size_t)b.changes, 0);
    /* final: every later walk is STOPPED at once */
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st), PROCSPY_STOPPED);
    CHECK_EQ(st.processes, 0);
    CHECK(st.elapsed_ns < stop_bound_ns());
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, h_count_conn_cb, &n, &st),
                 PROCSPY_STOPPED);
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, count_change_cb, &n, &st),
                 PROCSPY_STOPPED);
    CHECK_EQ(n, 0);
    h_recs_free(&b.recs);
    h_conns_free(&b.conns);
    procspy_walker_free(w);
    return b.end_ns - t_stop;
}

/* The stop latency: the best of up to three tries, so a loaded machine's scheduling hiccup
 * does not fail it, while a stop that is slow every time does. */
static void stop_latency(enum bg_call call)
{
    uint64_t best = UINT64_MAX, l[3] = {0, 0, 0};
    int i, n = 0;
    for (i = 0; i < 3 && best >= stop_bound_ns() && h_test_failures == 0; i++) {
        l[n] = busy_then_stop(call);
        if (l[n] < best)
            best = l[n];
        n++;
    }
    if (!CHECK(best < stop_bound_ns()))
        printf("      (stopped after %.3f %.3f %.3f ms)\n", (double)l[0] / 1e6, (double)l[1] / 1e6,
               (double)l[2] / 1e6);
}

void test_busy_and_stop_walk(void)
{
    stop_latency(BG_WALK);
}

void test_busy_and_stop_connections(void)
{
    stop_latency(BG_CONNECTIONS);
}

void test_busy_and_stop_changes(void)
{
    stop_latency(BG_CHANGES);
}

struct reenter {
    procspy_walker *w;
    int calls;
    procspy_status inner_walk, inner_conn, inner_netns, inner_rate;
};

static int reenter_cb(void *ud, const procspy_socket *s)
{
    struct reenter *r = ud;
    int n = 0;
    uint64_t ns = 0;
    if (r->calls++ == 0) {
        r->inner_walk = procspy_walker_walk(r->w, NULL, 0, h_count_cb, &n, NULL);
        r->inner_conn = procspy_walker_connections(r->w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL,
                                                   h_count_conn_cb, &n, NULL);
        (void)s;
        r->inner_netns = procspy_walker_netns_of(r->w, getpid(), &ns);
        r->inner_rate = procspy_walker_set_rate_limit(r->w, 0, 0);
        if (n != 0 || ns != h_stat_ino("/proc/self/ns/net"))
            r->inner_netns = PROCSPY_PANIC;
    }
    return 0;
}

static int reenter_conn_cb(void *ud, const procspy_connection *c)
{
    struct reenter *r = ud;
    int n = 0;
    (void)c;
    if (r->calls++ == 0) {
        r->inner_walk = procspy_walker_walk(r->w, NULL, 0, h_count_cb, &n, NULL);
        r->inner_conn = procspy_walker_connections(r->w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL,
                                                   h_count_conn_cb, &n, NULL);
        r->inner_netns = PROCSPY_OK;
        r->inner_rate = procspy_walker_set_rate_limit(r->w, 0, 0);
        if (n != 0)
            r->inner_netns = PROCSPY_PANIC;
    }
    return 0;
}

void test_busy_reentrant_callback(void)
{
    struct reenter r;
    memset(&r, 0, sizeof r);
    r.w = h_walker();
    REQUIRE(r.w != NULL);
    CHECK_STATUS(procspy_walker_walk(r.w, NULL, 0, reenter_cb, &r, NULL), PROCSPY_OK);
    CHECK(r.calls > 1);
    CHECK_STATUS(r.inner_walk, PROCSPY_BUSY);
    CHECK_STATUS(r.inner_conn, PROCSPY_BUSY);
    CHECK_STATUS(r.inner_netns, PROCSPY_OK);
    CHECK_STATUS(r.inner_rate, PROCSPY_OK);
    memset(&r.calls, 0, sizeof r - offsetof(struct reenter, calls));
    CHECK_STATUS(procspy_walker_connections(r.w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, reenter_conn_cb, &r, NULL),
                 PROCSPY_OK);
    CHECK(r.calls > 1);
    CHECK_STATUS(r.inner_walk, PROCSPY_BUSY);
    CHECK_STATUS(r.inner_conn, PROCSPY_BUSY);
    CHECK_STATUS(r.inner_netns, PROCSPY_OK);
    /* and once it returned, the walker walks again */
    CHECK_STATUS(procspy_walker_walk(r.w, NULL, 0, h_count_cb, &r.calls, NULL), PROCSPY_OK);
    procspy_walker_free(r.w);
}

/* A walk of w whose recorder ends it at the first socket (recs' abort_at
 * or stop_at, set by the caller) returns `want`, with that one delivered and
 * the stats filled as far as it went (the first namespace's tables read into
 * buf, if there is one); recs is emptied after. */
static void check_walk_ends_at_first(procspy_walker *w, struct h_recs *recs, uint8_t *buf, size_t cap,
                                     procspy_status want)
{
    procspy_walk_stats st;
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_walk(w, buf, cap, h_rec_cb, recs, &st), want);
    CHECK(strstr(h_last_error(), "procspy_walker_walk") != NULL);
    CHECK_EQ(recs->n, 1);
    CHECK_EQ(st.sockets, 1);
    CHECK(st.processes > 0);
    CHECK(st.namespaces > 0);
    CHECK(st.elapsed_ns > 0);
    /* Within the buffer, none without one; none at all where the tables did
       not fit in it and were dumped (a host with many TIME_WAITs). */
    CHECK(cap > 0 ? st.bytes_written <= cap : st.bytes_written == 0);
    h_recs_free(recs);
}

/* The same of connections (TCP and UDP, every state), with conns. */
static void check_connections_end_at_first(procspy_walker *w, struct h_conns *conns, procspy_status want)
{
    procspy_walk_stats st;
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL,
                                            h_conn_cb, conns, &st), want);
    CHECK(strstr(h_last_error(), "procspy_walker_connections") != NULL);
    CHECK_EQ(conns->n, 1);
    CHECK(st.processes > 0);
    CHECK(st.sockets > 0);
    CHECK(st.elapsed_ns > 0);
    h_conns_free(conns);
}

void test_stop_from_callback(void)
{
    struct h_recs recs = {0};
    struct h_conns conns = {0};
    procspy_walk_stats st;
    size_t i;
    int n = 0;
    procspy_walker *w = h_walker();
    REQUIRE(w != NULL);
    /* fd blocks of 1: the stop takes effect before the next fd */
    CHECK_STATUS(procspy_walker_set_rate_limit(w, 1, 0), PROCSPY_OK);
    recs.stop_at_walker = w;
    recs.stop_at = 1;
    check_walk_ends_at_first(w, &recs, NULL, 0, PROCSPY_STOPPED);
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st), PROCSPY_STOPPED);
    CHECK_EQ(n, 0);
    CHECK_EQ(st.processes, 0);
    CHECK_EQ(st.sockets, 0);
    procspy_walker_free(w);

    /* no rate limit: "within one block of work": nothing from another process after the stop */
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    recs.stop_at_walker = w;
    recs.stop_at = 1;
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_rec_cb, &recs, &st), PROCSPY_STOPPED);
    CHECK(recs.n >= 1);
    for (i = 1; i < recs.n; i++)
        CHECK_EQ(recs.v[i].pid, recs.v[0].pid);
    h_recs_free(&recs);
    procspy_walker_free(w);

    /* connections: no record after the stop */
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    conns.stop_at_walker = w;
    conns.stop_at = 1;
    check_connections_end_at_first(w, &conns, PROCSPY_STOPPED);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, h_count_conn_cb, &n, &st),
                 PROCSPY_STOPPED);
    CHECK_EQ(n, 0);
    procspy_walker_free(w);
}

void test_callback_abort(void)
{
    struct h_recs recs = {0};
    struct h_conns conns = {0};
    procspy_walk_stats st;
    uint8_t *buf = malloc(1 << 20);
    procspy_walker *w = h_walker();
    REQUIRE(w != NULL);
    /* the first callback says stop: no second one */
    recs.abort_at = 1;
    check_walk_ends_at_first(w, &recs, buf, 1 << 20, PROCSPY_CALLBACK_ABORTED);
    /* the third */
    recs.abort_at = 3;
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_rec_cb, &recs, &st), PROCSPY_CALLBACK_ABORTED);
    CHECK_EQ(recs.n, 3);
    CHECK_EQ(st.sockets, 3);
    h_recs_free(&recs);
    /* the walker is still fine */
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_rec_cb, &recs, &st), PROCSPY_OK);
    CHECK(recs.n > 3);
    h_recs_free(&recs);
    /* connections */
    conns.abort_at = 1;
    check_connections_end_at_first(w, &conns, PROCSPY_CALLBACK_ABORTED);
    /* aborting beats a too-small buffer */
    recs.abort_at = 1;
    CHECK_STATUS(procspy_walker_walk(w, buf, 1, h_rec_cb, &recs, &st), PROCSPY_CALLBACK_ABORTED);
    h_recs_free(&recs);
    free(buf);
    procspy_walker_free(w);
}

/* A walk into buf by a new walker whose callback, at record n, both stops
 * the walker and says stop: STOPPED wins, after n records. */
static void check_stop_beats_abort_at(size_t n, uint8_t *buf, size_t cap)
{
    struct h_recs recs = {0};
    procspy_walk_stats st;
    procspy_walker *w = h_walker();
    REQUIRE(w != NULL);
    recs.stop_at_walker = w;
    recs.stop_at = recs.abort_at = n;
    CHECK_STATUS(procspy_walker_walk(w, buf, cap, h_rec_cb, &recs, &st), PROCSPY_STOPPED);
    CHECK_EQ(recs.n, n);
    CHECK(st.elapsed_ns > 0);
    h_recs_free(&recs);
    procspy_walker_free(w);
}

/* A callback that stops the walker and returns non-zero: STOPPED wins. */
void test_stopped_beats_aborted(void)
{
    uint8_t one[1];
    struct h_conns conns = {0};
    procspy_walk_stats st;
    procspy_walker *w;
    check_stop_beats_abort_at(1, NULL, 0);
    /* and over a too-small buffer */
    check_stop_beats_abort_at(2, one, sizeof one);
    w = h_walker();
    REQUIRE(w != NULL);
    conns.stop_at_walker = w;
    conns.stop_at = conns.abort_at = 1;
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL,
                                            h_conn_cb, &conns, &st), PROCSPY_STOPPED);
    CHECK_EQ(conns.n, 1);
    h_conns_free(&conns);
    procspy_walker_free(w);
}

/* ---- the rate limit on a fake tree ------------------------------------- */

struct rate_tree {
    struct h_fake f;
    struct h_str t[2];   /* tcp+tcp6 text of the first and the second namespace (walk order) */
    int k[2];            /* socket fds in each */
};

/* First namespace: pids 1000 (3 fds) and 1001 (2 fds), same tables; second: 1100 (3 fds). */
static int build_rate_tree(struct rate_tree *t)
{
    const struct h_fixture *fx = h_fixture();
    const struct h_child *cs[2];
    int i, j, n;
    if (!fx)
        return -1;
    memset(t, 0, sizeof *t);
    if (h_fake_init(&t->f) != 0)
        return -1;
    cs[0] = fx->child[0].netns < fx->child[1].netns ? &fx->child[0] : &fx->child[1];
    cs[1] = cs[0] == &fx->child[0] ? &fx->child[1] : &fx->child[0];
    for (i = 0; i < 2; i++) {
        struct h_str tcp = {0}, tcp6 = {0};
        static const int pids[2][2] = {{1000, 1001}, {1100, 0}};
        static const int nfds[2][2] = {{3, 2}, {3, 0}};
        h_str_addz(&tcp, H_HDR4);
        for (j = 0; j <= i; j++)
            h_table_line(&tcp, j, 4, H_ADDR_LO4, (uint16_t)(4000 + 10 * i + j), H_ADDR_ZERO, 0, 10, 0,
                         500 + (uint64_t)(10 * i + j));
        h_str_addz(&tcp6, H_HDR6);
        h_str_add(&t->t[i], tcp.p, tcp.len);
        h_str_add(&t->t[i], tcp6.p, tcp6.len);
        for (j = 0; j < 2 && pids[i][j]; j++) {
            char rel[64];
            int pid = pids[i][j];
            h_fake_pid(&t->f, pid, "paced", 5, 1, 1);
            h_fake_ns(&t->f, pid, cs[i]->pid);
            snprintf(rel, sizeof rel, "%d/net/tcp", pid);
            h_fake_write(&t->f, rel, tcp.p, tcp.len);
            snprintf(rel, sizeof rel, "%d/net/tcp6", pid);
            h_fake_write(&t->f, rel, tcp6.p, tcp6.len);
            for (n = 0; n < nfds[i][j]; n++)
                h_fake_fd_sock(&t->f, pid, 3 + n, cs[i]->pid, cs[i]->socks[n].fd);
            t->k[i] += nfds[i][j];
        }
        h_str_free(&tcp);
        h_str_free(&tcp6);
    }
    return 0;
}

/* Walks with fd_block_size `block`: `fdticks[i]` ticks inside namespace i, each followed by a re-read. */
static void paced_walk(const char *file, int line, const struct rate_tree *t, uint64_t block,
                       uint64_t tick_ns, const int fdticks[2])
{
    procspy_walker *w = NULL;
    struct h_recs recs = {0};
    procspy_walk_stats st;
    struct h_str want = {0};
    uint8_t *buf = malloc(1 << 16);
    int i, j, before = h_test_failures;
    for (i = 0; i < 2; i++)
        for (j = 0; j < 1 + fdticks[i]; j++)
            h_str_add(&want, t->t[i].p, t->t[i].len);
    if (CHECK_STATUS(procspy_walker_new(t->f.root, &w), PROCSPY_OK)) {
        CHECK_STATUS(procspy_walker_set_rate_limit(w, block, tick_ns), PROCSPY_OK);
        CHECK_STATUS(procspy_walker_walk(w, buf, 1 << 16, h_rec_cb, &recs, &st), PROCSPY_OK);
        CHECK_EQ(st.ticks, 2 + fdticks[0] + fdticks[1]);
        CHECK_EQ(st.bytes_needed, want.len);
        CHECK_EQ(st.bytes_written, want.len);
        CHECK_MEM(buf, (size_t)st.bytes_written, want.p, want.len);
        CHECK_EQ(recs.n, t->k[0] + t->k[1]);
        CHECK_EQ(st.fds, t->k[0] + t->k[1]);
        CHECK_EQ(st.namespaces, 2);
        /* the ticks lie on a tick_ns grid that starts at set_rate_limit */
        CHECK(st.elapsed_ns + tick_ns >= st.ticks * tick_ns);
        /* the same walk counted only: the same bytes_needed */
        h_recs_free(&recs);
        CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_rec_cb, &recs, &st), PROCSPY_OK);
        CHECK_EQ(st.bytes_needed, want.len);
        CHECK_EQ(st.ticks, 2 + fdticks[0] + fdticks[1]);
    }
    if (h_test_failures != before)
        printf("      (in paced_walk from %s:%d: block %llu, fds %d and %d)\n", file, line,
               (unsigned long long)block, t->k[0], t->k[1]);
    h_recs_free(&recs);
    h_str_free(&want);
    free(buf);
    procspy_walker_free(w);
}

void test_rate_limit_ticks(void)
{
    struct rate_tree t;
    const uint64_t tick = 2000000; /* 2 ms */
    REQUIRE(build_rate_tree(&t) == 0);
    REQUIRE(t.k[0] == 5 && t.k[1] == 3);
    {
        /* no per-fd limit: one tick per namespace, the tables once each */
        static const int none[2] = {0, 0};
        paced_walk(__FILE__, __LINE__, &t, 0, tick, none);
    }
    {
        /* blocks of 2 fds: 5 fds -> 2 ticks inside, 3 fds -> 1 */
        static const int two[2] = {2, 1};
        paced_walk(__FILE__, __LINE__, &t, 2, tick, two);
    }
    {
        /* blocks of 1: a tick between fds (none after a namespace's last fd) */
        static const int one[2] = {4, 2};
        paced_walk(__FILE__, __LINE__, &t, 1, tick, one);
    }
    {
        /* blocks of 3: 5 fds -> 1; the count starts again in the second namespace: 3 fds -> 0 */
        static const int three[2] = {1, 0};
        paced_walk(__FILE__, __LINE__, &t, 3, tick, three);
    }
    {
        /* tick 0 never waits, but ticks still count */
        static const int one[2] = {4, 2};
        paced_walk(__FILE__, __LINE__, &t, 1, 0, one);
    }
    h_str_free(&t.t[0]);
    h_str_free(&t.t[1]);
    h_fake_cleanup(&t.f);
}

/* A walker is reusable: the same answer walk after walk. */
void test_walker_reuse(void)
{
    procspy_walker *w = NULL;
    struct h_recs a = {0}, b = {0};
    procspy_walk_stats sa, sb;
    const struct h_fixture *fx = h_fixture();
    int i, rounds = h_under_valgrind ? 2 : 3;
    size_t k;
    REQUIRE(fx != NULL);
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_rec_cb, &a, &sa), PROCSPY_OK);
    for (i = 0; i < rounds; i++) {
        h_recs_free(&b);
        CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_rec_cb, &b, &sb), PROCSPY_OK);
        /* the children's records are stable */
        for (k = 0; k < (size_t)fx->nchild; k++)
            CHECK_EQ(h_recs_count_pid(&b, fx->child[k].pid), h_recs_count_pid(&a, fx->child[k].pid));
        if (h_test_failures)
            break;
    }
    h_recs_free(&a);
    h_recs_free(&b);
    procspy_walker_free(w);
}

static int open_fd_count(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Walk after walk, and walker after walker: nothing leaks (valgrind and
 * LeakSanitizer check the heap at exit; fds are counted here).
 * PROCSPY_TEST_SOAK sets the walks (make stress: 100 under valgrind). */
void test_soak(void)
{
    const char *env = getenv("PROCSPY_TEST_SOAK");
    int i, walks = env ? atoi(env) : (h_under_valgrind ? 10 : 50);
    int fds_before = open_fd_count();
    procspy_walker *w = NULL;
    int n = 0;
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    for (i = 0; i < walks && !h_test_failures; i++) {
        procspy_walker *other = NULL;
        CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_count_cb, &n, NULL), PROCSPY_OK);
        CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP,
                                                PROCSPY_STATES_ALL, h_count_conn_cb, &n, NULL), PROCSPY_OK);
        CHECK_STATUS(procspy_walker_new(NULL, &other), PROCSPY_OK);
        procspy_walker_free(other);
    }
    procspy_walker_free(w);
    CHECK(n > 0);
    CHECK_EQ(open_fd_count(), fds_before);
}
