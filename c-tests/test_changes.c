/*
 * procspy_walker_changes: arguments, the first call against the fixture,
 * nothing the second time, a namespace that goes, a call aborted (the next
 * reports against the old snapshot), stopped (final), BUSY from a callback,
 * and a connection that opens and closes between two calls.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define BOTH (PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP)

/* A copy of one change: its kind, old state, connection and both owners. */
struct ch {
    int kind;
    uint8_t old_state;
    procspy_connection c;      /* c.owner is NULL: see has_owner */
    int has_owner, has_old_owner;
    procspy_socket owner, old_owner; /* name NULL: see the names */
    char name[32], old_name[32];
};

struct chs {
    struct ch *v;
    size_t n, cap;
    size_t abort_at;            /* return 1 at this change (1-based); 0 = never */
    const procspy_walker *stop_at_walker;
    procspy_walker *reenter;    /* call changes on it from the first callback */
    procspy_status inner;
};

static void copy_owner(const procspy_socket *from, procspy_socket *to, char *name, int *has)
{
    *has = from != NULL;
    if (!from)
        return;
    *to = *from;
    to->name = NULL;
    memcpy(name, from->name, from->name_len < 31 ? from->name_len : 31);
}

static int ch_cb(void *userdata, const procspy_change *c)
{
    struct chs *r = userdata;
    struct ch *e;
    int n = 0;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        if (!r->v)
            abort();
    }
    e = &r->v[r->n++];
    memset(e, 0, sizeof *e);
    e->kind = c->kind;
    e->old_state = c->old_state;
    e->c = *c->connection;
    e->c.owner = NULL;
    copy_owner(c->connection->owner, &e->owner, e->name, &e->has_owner);
    copy_owner(c->old_owner, &e->old_owner, e->old_name, &e->has_old_owner);
    if (r->reenter && r->n == 1)
        r->inner = procspy_walker_changes(r->reenter, NULL, 0, BOTH, PROCSPY_STATES_ALL, ch_cb, &n, NULL);
    if (r->stop_at_walker && r->n == 1)
        procspy_walker_stop(r->stop_at_walker);
    return r->abort_at && r->n == r->abort_at;
}

static void chs_reset(struct chs *r)
{
    free(r->v);
    memset(r, 0, sizeof *r);
}

static size_t in_netns(const struct chs *r, uint64_t netns)
{
    size_t i, n = 0;
    for (i = 0; i < r->n; i++)
        n += r->v[i].c.netns == netns;
    return n;
}

static const struct ch *find(const struct chs *r, uint64_t netns, uint64_t inode)
{
    size_t i;
    for (i = 0; i < r->n; i++)
        if (r->v[i].c.netns == netns && r->v[i].c.inode == inode)
            return &r->v[i];
    return NULL;
}

static procspy_status changes(procspy_walker *w, struct chs *r)
{
    return procspy_walker_changes(w, NULL, 0, BOTH, PROCSPY_STATES_ALL, ch_cb, r, NULL);
}

static int stats_all_zero(const procspy_walk_stats *s)
{
    static const procspy_walk_stats zero;
    return memcmp(s, &zero, sizeof zero) == 0;
}

void test_changes_args(void)
{
    procspy_walker *w = NULL;
    procspy_walk_stats st;
    struct chs r = {0};
    const uint32_t ALL = PROCSPY_STATES_ALL;
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_changes(NULL, NULL, 0, BOTH, ALL, ch_cb, &r, &st), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_changes: walker is NULL") != NULL);
    CHECK(stats_all_zero(&st));
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, BOTH, ALL, NULL, &r, &st), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), "on_change is NULL") != NULL);
    CHECK(stats_all_zero(&st));
    CHECK_STATUS(procspy_walker_changes(w, NULL, 16, BOTH, ALL, ch_cb, &r, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, 0, ALL, ch_cb, &r, &st), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, 4, ALL, ch_cb, &r, &st), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, BOTH, 0, ch_cb, &r, &st), PROCSPY_INVALID_ARGUMENT);
    CHECK(strstr(h_last_error(), "procspy_walker_changes") != NULL);
    /* NULL before INVALID */
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, 0, 0, NULL, &r, &st), PROCSPY_NULL_ARGUMENT);
    CHECK_EQ(r.n, 0);
    /* a bad call did not count as the first: this one still reports everything */
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, BOTH, ALL, ch_cb, &r, NULL), PROCSPY_OK);
    CHECK(r.n > 0);
    chs_reset(&r);
    /* on a stopped walker: arguments first, then STOPPED */
    procspy_walker_stop(w);
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, BOTH, 0, ch_cb, &r, &st), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, BOTH, ALL, ch_cb, &r, &st), PROCSPY_STOPPED);
    CHECK_EQ(r.n, 0);
    procspy_walker_free(w);
}

/* The first call: every listed socket of every fixture child appears, as
 * connections lists it; the second: nothing of theirs. */
void test_changes_fixture(void)
{
    const struct h_fixture *fx = h_fixture();
    procspy_walker *w = NULL;
    struct chs r = {0};
    procspy_walk_stats st;
    int i, k;
    REQUIRE(fx != NULL);
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    REQUIRE_STATUS(procspy_walker_changes(w, NULL, 0, BOTH, PROCSPY_STATES_ALL, ch_cb, &r, &st), PROCSPY_OK);
    CHECK(st.namespaces >= (uint64_t)fx->nchild);
    CHECK(st.sockets > 0);
    for (i = 0; i < fx->nchild; i++) {
        const struct h_child *c = &fx->child[i];
        for (k = 0; k < c->nsock; k++) {
            const struct h_sock *s = &c->socks[k];
            const struct ch *e;
            if (s->kind == H_DUP4 || s->kind == H_OUTER)
                continue;
            e = find(&r, c->netns, s->inode);
            if (!CHECK(e != NULL))
                continue;
            CHECK_EQ(e->kind, PROCSPY_CHANGE_APPEARED);
            CHECK_EQ(e->old_state, 0);
            CHECK(!e->has_old_owner);
            CHECK_EQ(e->c.protocol, s->protocol);
            CHECK_EQ(e->c.state, s->state);
            CHECK_EQ(e->c.local_port, s->lport);
            CHECK_EQ(e->c.remote_port, s->rport);
            CHECK_MEM(e->c.local_addr, 16, s->local, 16);
            if (CHECK(e->has_owner)) {
                CHECK(e->owner.pid == c->pid || e->owner.pid == c->grandchild);
                CHECK_EQ(e->owner.inode, s->inode);
            }
        }
    }
    chs_reset(&r);
    REQUIRE_STATUS(changes(w, &r), PROCSPY_OK);
    for (i = 0; i < fx->nchild; i++)
        CHECK_EQ(in_netns(&r, fx->child[i].netns), 0);
    chs_reset(&r);
    procspy_walker_free(w);
}

/* A namespace with one listener goes; the first call that would report it
 * is aborted, so the next reports it against the same old snapshot. */
void test_changes_abort_keeps_snapshot(void)
{
    struct chs r = {0};
    pid_t victim;
    uint64_t netns;
    const struct ch *e;
    int i;
    procspy_walker *w = h_walker();
    REQUIRE(w != NULL);
    if (!CHECK(h_spawn_victim(&victim, &netns, 0) == 0)) {
        procspy_walker_free(w);
        return;
    }
    CHECK_STATUS(changes(w, &r), PROCSPY_OK);
    CHECK_EQ(in_netns(&r, netns), 1);
    chs_reset(&r);
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);

    /* twice: the second aborted call still reports against the first call's snapshot */
    for (i = 0; i < 2; i++) {
        r.abort_at = 1;
        CHECK_STATUS(changes(w, &r), PROCSPY_CALLBACK_ABORTED);
        CHECK(strstr(h_last_error(), "procspy_walker_changes: a callback returned non-zero") != NULL);
        CHECK_EQ(r.n, 1);
        chs_reset(&r);
    }

    CHECK_STATUS(changes(w, &r), PROCSPY_OK);
    REQUIRE_EQ(in_netns(&r, netns), 1);
    for (e = r.v; e->c.netns != netns; e++) {
    }
    CHECK_EQ(e->kind, PROCSPY_CHANGE_DISAPPEARED);
    CHECK_EQ(e->c.state, PROCSPY_STATE_LISTEN);
    CHECK_EQ(e->old_state, PROCSPY_STATE_LISTEN);
    /* as last seen: its owner, name and all, also as the old owner */
    if (CHECK(e->has_owner) && CHECK(e->has_old_owner)) {
        CHECK_EQ(e->owner.pid, victim);
        CHECK_EQ(e->old_owner.pid, victim);
        CHECK(strcmp(e->name, "psns-victim") == 0);
        CHECK(strcmp(e->old_name, "psns-victim") == 0);
    }
    chs_reset(&r);
    CHECK_STATUS(changes(w, &r), PROCSPY_OK);
    CHECK_EQ(in_netns(&r, netns), 0);
    chs_reset(&r);
    procspy_walker_free(w);
}

/* A stop from the callback ends the call (STOPPED, nothing more delivered)
 * and every later one; a changes call from a callback is BUSY. */
void test_changes_stop_and_busy(void)
{
    struct chs r = {0};
    procspy_walk_stats st;
    int n = 0;
    procspy_walker *w = h_walker();
    REQUIRE(w != NULL);
    r.reenter = w;
    CHECK_STATUS(changes(w, &r), PROCSPY_OK);
    CHECK_STATUS(r.inner, PROCSPY_BUSY);
    CHECK(r.n > 1);
    chs_reset(&r);
    procspy_walker_free(w);

    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    r.stop_at_walker = w;
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_changes(w, NULL, 0, BOTH, PROCSPY_STATES_ALL, ch_cb, &r, &st), PROCSPY_STOPPED);
    CHECK_EQ(r.n, 1);
    CHECK(st.sockets > 0);
    chs_reset(&r);
    CHECK_STATUS(changes(w, &r), PROCSPY_STOPPED);
    CHECK_EQ(r.n, 0);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, BOTH, PROCSPY_STATES_ALL, h_count_conn_cb, &n, NULL),
                 PROCSPY_STOPPED);
    procspy_walker_free(w);
}

/* A TCP pair on 127.0.0.1 through a listener, every end closed with a
 * reset (no TIME_WAIT); its listener's and client's ports. 0 on success. */
static int flash_pair(uint16_t *lport, uint16_t *cport)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    struct linger rst = {1, 0};
    int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s = -1, i, ok;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = l >= 0 && c >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 4) == 0 &&
         getsockname(l, (struct sockaddr *)&a, &len) == 0 && connect(c, (struct sockaddr *)&a, sizeof a) == 0 &&
         (s = accept(l, NULL, NULL)) >= 0;
    *lport = ntohs(a.sin_port);
    len = sizeof a;
    ok = ok && getsockname(c, (struct sockaddr *)&a, &len) == 0;
    *cport = ntohs(a.sin_port);
    h_sleep_ms(50);
    for (i = 0; i < 3; i++) {
        int fd = i == 0 ? c : i == 1 ? s : l;
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
            close(fd);
        }
    }
    return ok ? 0 : -1;
}

/* Whether the walker's BPF tracer attached `hook` ("fentry/security_sock_graft"). */
static int tracer_hook(procspy_walker *w, const char *hook)
{
    static char text[16384];
    char line[128];
    size_t len = 0;
    if (procspy_walker_diagnose(w, text, sizeof text, &len) != PROCSPY_OK)
        return 0;
    snprintf(line, sizeof line, "BPF tracer %s: attached\n", hook);
    return strstr(text, line) != NULL;
}

/* A connection that opens and closes between two calls is seen closed:
 * its three ends, each once, with no owner but where the tracer (started by
 * the first call where it runs) saw one act: this process's listen and
 * connect, and its accept where the accept hook runs; the call after has
 * none. */
void test_changes_seen_closed(void)
{
    procspy_walker *w = NULL;
    struct chs r = {0};
    uint64_t self = h_stat_ino("/proc/self/ns/net");
    uint16_t lport = 0, cport = 0;
    size_t i, at_l = 0, at_c = 0;
    int traced, accept, fd;
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    /* The tracer where it runs: a changes call would start it on a thread
       of its own, and it names only what it saw. */
    if (procspy_walker_events_fd(w, &fd) != PROCSPY_OK)
        fd = -1; /* no tracer here: no owners either */
    CHECK_STATUS(changes(w, &r), PROCSPY_OK);
    chs_reset(&r);
    REQUIRE(flash_pair(&lport, &cport) == 0);
    h_sleep_ms(100);
    CHECK_STATUS(changes(w, &r), PROCSPY_OK);
    traced = tracer_hook(w, "tp_btf/inet_sock_set_state");
    accept = tracer_hook(w, "fentry/security_sock_graft");
    for (i = 0; i < r.n; i++) {
        const struct ch *e = &r.v[i];
        int accepted = e->c.local_port == lport && e->c.remote_port != 0;
        if (e->c.netns != self || e->c.protocol != PROCSPY_PROTO_TCP)
            continue;
        if (e->c.local_port != lport && e->c.local_port != cport)
            continue;
        at_l += e->c.local_port == lport;
        at_c += e->c.local_port == cport;
        CHECK_EQ(e->kind, PROCSPY_CHANGE_SEEN_CLOSED);
        CHECK_EQ(e->c.state, PROCSPY_STATE_CLOSE);
        CHECK_EQ(e->c.inode, 0);
        CHECK_EQ(e->old_state, 0);
        CHECK(!e->has_old_owner);
        CHECK_EQ(e->has_owner, accepted ? traced && accept : traced);
        if (e->has_owner) {
            CHECK_EQ(e->owner.pid, getpid());
            CHECK_EQ(e->owner.fd, -1);
        }
    }
    CHECK_EQ(at_l, 2); /* the listener and the accepted end */
    CHECK_EQ(at_c, 1);
    chs_reset(&r);
    CHECK_STATUS(changes(w, &r), PROCSPY_OK);
    for (i = 0; i < r.n; i++)
        CHECK(r.v[i].c.netns != self || (r.v[i].c.local_port != lport && r.v[i].c.local_port != cport));
    chs_reset(&r);
    procspy_walker_free(w);
}
