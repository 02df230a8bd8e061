/*
 * procspy_walker_walk, netns_of and read_tcp on the real /proc, against
 * three child processes that each live in a network namespace of their own
 * (see h_fixture in harness.c) and hold known sockets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* Every socket fd of `pid` (child `c`'s sockets) delivered once with the right facts, nothing else. */
static void check_pid_records(const struct h_recs *r, const struct h_child *c, pid_t pid, uint64_t start_time)
{
    int i;
    CHECK_EQ(h_recs_count_pid(r, pid), c->nsock);
    for (i = 0; i < c->nsock; i++) {
        const struct h_sock *s = &c->socks[i];
        const struct h_rec *rec = h_recs_find(r, pid, s->fd);
        size_t j, n = 0;
        if (!rec) {
            h_fail(__FILE__, __LINE__, "no record for pid %d fd %d (kind %d)", (int)pid, s->fd, s->kind);
            continue;
        }
        for (j = 0; j < r->n; j++)
            n += r->v[j].pid == pid && r->v[j].fd == s->fd;
        CHECK_EQ(n, 1);
        CHECK_EQ(rec->inode, s->inode);
        CHECK_EQ(rec->netns, c->netns);
        CHECK_EQ(rec->start_time, start_time);
        CHECK_EQ(rec->name_len, c->name_len);
        CHECK_MEM(rec->name, rec->name_len, c->name, c->name_len);
        CHECK(rec->name_nul_ok);
    }
}

static const struct h_fixture *fixture_ok(void)
{
    const struct h_fixture *fx = h_fixture();
    int i, j;
    if (!fx)
        return NULL;
    for (i = 0; i < fx->nchild; i++) {
        if (!CHECK(fx->child[i].netns != 0) || !CHECK(fx->child[i].netns != fx->self_netns))
            return NULL;
        for (j = 0; j < i; j++)
            CHECK(fx->child[i].netns != fx->child[j].netns);
        CHECK(fx->child[i].start_time > 0);
    }
    return fx;
}

/* A whole walk of the host by a walker of its own (h_walk_all): its
 * records, its buffer and the buffer's length, its stats. */
struct whole_walk {
    procspy_walker *w;
    struct h_recs recs;
    uint8_t *buf;
    size_t len;
    procspy_walk_stats st;
};

static void whole_walk_free(struct whole_walk *t)
{
    free(t->buf);
    h_recs_free(&t->recs);
    procspy_walker_free(t->w);
}

/* The walk made: 0; else -1, a check failed, and nothing is left to free. */
static int whole_walk(struct whole_walk *t)
{
    memset(t, 0, sizeof *t);
    t->w = h_walker();
    if (!t->w)
        return -1;
    if (!CHECK_STATUS(h_walk_all(t->w, &t->recs, &t->buf, &t->len, &t->st), PROCSPY_OK)) {
        whole_walk_free(t);
        return -1;
    }
    return 0;
}

void test_ns_walk_sockets(void)
{
    const struct h_fixture *fx = fixture_ok();
    struct whole_walk t;
    size_t total = 0;
    int i;
    REQUIRE(fx != NULL && whole_walk(&t) == 0);
    for (i = 0; i < fx->nchild; i++) {
        const struct h_child *c = &fx->child[i];
        check_pid_records(&t.recs, c, c->pid, c->start_time);
        total += (size_t)c->nsock;
        if (c->grandchild > 0) {
            check_pid_records(&t.recs, c, c->grandchild, c->gc_start_time);
            total += (size_t)c->nsock;
        }
    }
    /* the hostile comm came back byte for byte */
    CHECK_EQ(fx->child[1].name_len, strlen(H_HOSTILE_NAME));
    {
        const struct h_rec *rec = h_recs_find(&t.recs, fx->child[1].pid, fx->child[1].socks[0].fd);
        if (CHECK(rec != NULL))
            CHECK_MEM(rec->name, rec->name_len, H_HOSTILE_NAME, strlen(H_HOSTILE_NAME));
    }
    CHECK_CONTIGUOUS(t.recs.v, t.recs.n, netns);
    CHECK_EQ(t.st.sockets, t.recs.n);
    CHECK(t.recs.n >= total);
    CHECK(t.st.namespaces >= 4);
    CHECK(t.st.processes >= 4);
    CHECK(t.st.fds >= t.st.sockets);
    CHECK_EQ(t.st.bytes_written, t.len);
    CHECK_EQ(t.st.bytes_needed, t.st.bytes_written);
    CHECK_EQ(t.st.ticks, t.st.namespaces); /* no fd blocks: one tick per namespace */
    CHECK(t.st.elapsed_ns > 0);
    whole_walk_free(&t);
}

/* Zeroes each table line's timer field (tr:tm->when, the sixth), which a
 * TIME_WAIT line counts down between two reads of the same table. */
static void mask_timers(char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        int field = 0, in_word = 0;
        for (; i < len && text[i] != '\n'; i++) {
            int space = text[i] == ' ';
            if (!space && !in_word)
                field++;
            in_word = !space;
            if (field == 6 && !space && text[i] != ':')
                text[i] = '0';
        }
        i++;
    }
}

/* The buffer holds each namespace's tcp then tcp6 text, in the order of the
 * records, each line as the child's own read has it but for its timer. */
void test_ns_walk_buffer_tables(void)
{
    const struct h_fixture *fx = fixture_ok();
    struct whole_walk t;
    long pos[H_NCHILD], first[H_NCHILD];
    int i, j;
    REQUIRE(fx != NULL && whole_walk(&t) == 0);
    CHECK(t.len > 0);
    CHECK(t.len >= strlen(H_HDR4) - 1 && memcmp(t.buf, "  sl  local_address rem_address", 31) == 0);
    mask_timers((char *)t.buf, t.len);
    for (i = 0; i < fx->nchild; i++) {
        const struct h_child *c = &fx->child[i];
        size_t tlen, k;
        char *tables = h_child_tables(c, 1, 0, &tlen);
        const void *at;
        char port[16];
        pos[i] = first[i] = -1;
        if (!CHECK(tables != NULL))
            continue;
        mask_timers(tables, tlen);
        at = h_memmem(t.buf, t.len, tables, tlen);
        if (CHECK(at != NULL))
            pos[i] = (long)((const uint8_t *)at - t.buf);
        /* the listening ports, as the kernel spells them */
        snprintf(port, sizeof port, ":%04X ", (unsigned)(c->port_base + 1));
        CHECK(h_memmem(t.buf, t.len, port, strlen(port)) != NULL);
        snprintf(port, sizeof port, ":%04X ", (unsigned)(c->port_base + 2));
        CHECK(h_memmem(t.buf, t.len, port, strlen(port)) != NULL);
        for (k = 0; k < t.recs.n; k++)
            if (t.recs.v[k].netns == c->netns) {
                first[i] = (long)k;
                break;
            }
        CHECK(first[i] >= 0);
        free(tables);
    }
    for (i = 0; i < fx->nchild; i++)
        for (j = 0; j < fx->nchild; j++)
            if (i != j && pos[i] >= 0 && pos[j] >= 0 && first[i] >= 0 && first[j] >= 0)
                CHECK((pos[i] < pos[j]) == (first[i] < first[j]));
    whole_walk_free(&t);
}

void test_ns_netns_of(void)
{
    const struct h_fixture *fx = fixture_ok();
    procspy_walker *w = NULL;
    uint64_t ns = 0;
    int i;
    REQUIRE(fx != NULL);
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    for (i = 0; i < fx->nchild; i++) {
        ns = 0;
        CHECK_STATUS(procspy_walker_netns_of(w, fx->child[i].pid, &ns), PROCSPY_OK);
        CHECK_EQ(ns, fx->child[i].netns);
        if (fx->child[i].grandchild > 0) {
            ns = 0;
            CHECK_STATUS(procspy_walker_netns_of(w, fx->child[i].grandchild, &ns), PROCSPY_OK);
            CHECK_EQ(ns, fx->child[i].netns);
        }
    }
    ns = 0;
    CHECK_STATUS(procspy_walker_netns_of(w, getpid(), &ns), PROCSPY_OK);
    CHECK_EQ(ns, fx->self_netns);
    procspy_walker_free(w);
}

void test_ns_read_tcp(void)
{
    const struct h_fixture *fx = fixture_ok();
    procspy_walker *w = NULL;
    int i;
    REQUIRE(fx != NULL);
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    for (i = 0; i < fx->nchild; i++) {
        const struct h_child *c = &fx->child[i];
        char path[64];
        size_t len, tcp_len, out;
        char *want = h_child_tables(c, 1, 0, &len);
        char *tcp;
        uint8_t *buf;
        snprintf(path, sizeof path, "/proc/%d/net/tcp", (int)c->pid);
        tcp = h_read_file(path, &tcp_len);
        if (!CHECK(want != NULL && tcp != NULL && tcp_len < len)) {
            free(want);
            free(tcp);
            continue;
        }
        buf = malloc(len + 1);
        /* exact */
        out = 0;
        memset(buf, 0x5A, len + 1);
        CHECK_STATUS(procspy_walker_read_tcp(w, c->pid, buf, len, &out), PROCSPY_OK);
        CHECK_EQ(out, len);
        CHECK_MEM(buf, len, want, len);
        /* exact + 1 */
        out = 0;
        CHECK_STATUS(procspy_walker_read_tcp(w, c->pid, buf, len + 1, &out), PROCSPY_OK);
        CHECK_EQ(out, len);
        CHECK_MEM(buf, len, want, len);
        /* room for tcp but not tcp6: the whole tcp file */
        out = 0;
        memset(buf, 0x5A, len + 1);
        CHECK_STATUS(procspy_walker_read_tcp(w, c->pid, buf, len - 1, &out), PROCSPY_BUFFER_TOO_SMALL);
        CHECK_EQ(out, len);
        CHECK_MEM(buf, tcp_len, tcp, tcp_len);
        /* 1 byte: nothing fits */
        out = 0;
        CHECK_STATUS(procspy_walker_read_tcp(w, c->pid, buf, 1, &out), PROCSPY_BUFFER_TOO_SMALL);
        CHECK_EQ(out, len);
        /* cap 0: the length only */
        out = 0;
        memset(buf, 0x5A, len + 1);
        CHECK_STATUS(procspy_walker_read_tcp(w, c->pid, buf, 0, &out), PROCSPY_BUFFER_TOO_SMALL);
        CHECK_EQ(out, len);
        CHECK_EQ(buf[0], 0x5A);
        out = 0;
        CHECK_STATUS(procspy_walker_read_tcp(w, c->pid, NULL, 0, &out), PROCSPY_BUFFER_TOO_SMALL);
        CHECK_EQ(out, len);
        free(buf);
        free(want);
        free(tcp);
    }
    procspy_walker_free(w);
}

/* The walk's buffer parses into the children's listeners. */
void test_ns_parse_walk_buffer(void)
{
    const struct h_fixture *fx = fixture_ok();
    struct whole_walk t;
    struct h_conns conns = {0};
    uint64_t bad = 99;
    int i;
    REQUIRE(fx != NULL && whole_walk(&t) == 0);
    CHECK_STATUS(procspy_parse_tcp(t.buf, t.len, PROCSPY_STATES_LISTEN, h_conn_cb, &conns, &bad), PROCSPY_OK);
    CHECK_EQ(bad, 0);
    for (i = 0; i < fx->nchild; i++) {
        int k;
        for (k = H_LISTEN4; k <= H_LISTEN6; k++) {
            const struct h_sock *s = h_child_sock(&fx->child[i], k);
            size_t n;
            const struct h_conn *c = h_conns_find(&conns, 0, s->inode, &n);
            if (!CHECK(c != NULL))
                continue;
            CHECK_EQ(n, 1);
            CHECK_EQ(c->c.state, PROCSPY_STATE_LISTEN);
            CHECK_EQ(c->c.family, s->family);
            CHECK_EQ(c->c.local_port, s->lport);
            CHECK_MEM(c->c.local_addr, 16, s->local, 16);
            CHECK_EQ(c->c.protocol, PROCSPY_PROTO_TCP);
            CHECK(!c->has_owner);
        }
    }
    for (i = 0; i < (int)conns.n; i++)
        CHECK_EQ(conns.v[i].c.state, PROCSPY_STATE_LISTEN);
    h_conns_free(&conns);
    whole_walk_free(&t);
}
