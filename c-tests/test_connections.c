/*
 * procspy_walker_connections on the real /proc against the namespace
 * fixture (every field of every connection of the children), filters, the
 * caller's buffer too small for one namespace, and the walker's own buffer.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* The sockets of a child that its namespace's tables list (not the dup, not the outer one). */
static int listed(const struct h_sock *s)
{
    return s->kind != H_DUP4 && s->kind != H_OUTER;
}

static int listed_count(const struct h_child *c, uint32_t protocols, uint32_t mask)
{
    int i, n = 0;
    for (i = 0; i < c->nsock; i++) {
        const struct h_sock *s = &c->socks[i];
        if (listed(s) && (protocols & s->protocol) && (mask & (1u << s->state)))
            n++;
    }
    return n;
}

static size_t count_netns(const struct h_conns *r, uint64_t netns)
{
    size_t i, n = 0;
    for (i = 0; i < r->n; i++)
        n += r->v[i].c.netns == netns;
    return n;
}

static pid_t owner_pid_of(const struct h_child *c)
{
    return c->grandchild > 0 && c->grandchild < c->pid ? c->grandchild : c->pid;
}

static void check_conn(const struct h_conns *r, const struct h_child *c, const struct h_sock *s, uint64_t netns)
{
    size_t n;
    const struct h_conn *rec = h_conns_find(r, netns, s->inode, &n);
    pid_t opid = owner_pid_of(c);
    if (!rec) {
        h_fail(__FILE__, __LINE__, "no connection for netns %llu inode %llu (child pid %d kind %d)",
               (unsigned long long)netns, (unsigned long long)s->inode, (int)c->pid, s->kind);
        return;
    }
    CHECK_EQ(n, 1);
    CHECK_EQ(rec->c.protocol, s->protocol);
    CHECK_EQ(rec->c.family, s->family);
    CHECK_EQ(rec->c.state, s->state);
    CHECK_MEM(rec->c.local_addr, 16, s->local, 16);
    CHECK_MEM(rec->c.remote_addr, 16, s->remote, 16);
    CHECK_EQ(rec->c.local_port, s->lport);
    CHECK_EQ(rec->c.remote_port, s->rport);
    CHECK_EQ(rec->c.uid, getuid());
    if (!CHECK(rec->has_owner))
        return;
    CHECK_EQ(rec->owner.pid, opid);
    CHECK_EQ(rec->owner.fd, h_child_lowest_fd(c, s->inode));
    CHECK_EQ(rec->owner.inode, s->inode);
    CHECK_EQ(rec->owner.netns, c->netns);
    CHECK_EQ(rec->owner.start_time, opid == c->pid ? c->start_time : c->gc_start_time);
    CHECK_EQ(rec->owner.name_len, c->name_len);
    CHECK_MEM(rec->owner_name, rec->owner.name_len, c->name, c->name_len);
    CHECK(rec->owner_nul_ok);
}

static int cmp_key(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    if (x[1] != y[1])
        return x[1] < y[1] ? -1 : 1;
    return 0;
}

/* Each (netns, inode) with an inode comes once. */
static void check_once(const struct h_conns *r)
{
    uint64_t *keys = malloc((r->n + 1) * 2 * sizeof *keys);
    size_t i, m = 0;
    for (i = 0; i < r->n; i++) {
        if (r->v[i].c.inode == 0)
            continue;
        keys[2 * m] = r->v[i].c.netns;
        keys[2 * m + 1] = r->v[i].c.inode;
        m++;
    }
    qsort(keys, m, 2 * sizeof *keys, cmp_key);
    for (i = 1; i < m; i++)
        if (keys[2 * i] == keys[2 * i - 2] && keys[2 * i + 1] == keys[2 * i - 1])
            h_fail(__FILE__, __LINE__, "netns %llu inode %llu delivered more than once",
                   (unsigned long long)keys[2 * i], (unsigned long long)keys[2 * i + 1]);
    free(keys);
}

static void check_records_sane(const struct h_conns *r, uint32_t protocols, uint32_t mask)
{
    size_t i;
    for (i = 0; i < r->n; i++) {
        const procspy_connection *c = &r->v[i].c;
        CHECK(c->protocol & protocols);
        CHECK(c->family == 4 || c->family == 6);
        CHECK(c->state < 32 && (mask & (1u << c->state)));
        CHECK(c->netns != 0);
        if (c->family == 4) {
            static const uint8_t zero[12];
            CHECK(memcmp(c->local_addr + 4, zero, 12) == 0);
            CHECK(memcmp(c->remote_addr + 4, zero, 12) == 0);
        }
        if (r->v[i].has_owner) {
            CHECK(r->v[i].owner_nul_ok);
            CHECK_EQ(r->v[i].owner.inode, c->inode);
            CHECK(c->inode != 0);
        }
    }
}

static const char *source_name(uint32_t source)
{
    return source == PROCSPY_SOURCE_TEXT ? "text" : source == PROCSPY_SOURCE_NETLINK ? "netlink" : "auto";
}

static procspy_walker *walker_with_source(uint32_t source)
{
    procspy_walker *w = NULL;
    if (!CHECK_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK))
        return NULL;
    if (!CHECK_STATUS(procspy_walker_set_source(w, source), PROCSPY_OK)) {
        procspy_walker_free(w);
        return NULL;
    }
    return w;
}

static void all_fields(uint32_t source)
{
    const struct h_fixture *fx = h_fixture();
    procspy_walker *w;
    struct h_conns conns = {0};
    procspy_walk_stats st;
    const uint32_t protos = PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP;
    int i, k, fds = 0, before = h_test_failures;
    if (!CHECK(fx != NULL) || !(w = walker_with_source(source)))
        return;
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, protos, PROCSPY_STATES_ALL, h_conn_cb, &conns, &st),
                 PROCSPY_OK);
    for (i = 0; i < fx->nchild; i++) {
        const struct h_child *c = &fx->child[i];
        for (k = 0; k < c->nsock; k++)
            if (listed(&c->socks[k]))
                check_conn(&conns, c, &c->socks[k], c->netns);
        /* nothing else in the child's namespace */
        CHECK_EQ(count_netns(&conns, c->netns), listed_count(c, protos, PROCSPY_STATES_ALL));
        fds += c->nsock * (c->grandchild > 0 ? 2 : 1);
    }
    check_once(&conns);
    check_records_sane(&conns, protos, PROCSPY_STATES_ALL);
    CHECK_CONTIGUOUS(conns.v, conns.n, c.netns);
    CHECK(st.namespaces >= 4);
    CHECK(st.processes >= 4);
    CHECK(st.sockets >= (uint64_t)fds);
    CHECK(st.fds >= st.sockets);
    if (source == PROCSPY_SOURCE_TEXT) {
        CHECK(st.bytes_needed > 0);
        CHECK_EQ(st.bytes_written, st.bytes_needed); /* the walker's own scratch */
    } else {
        /* netlink (we are root: every namespace) adds nothing to the bytes_* stats */
        CHECK_EQ(st.bytes_needed, 0);
        CHECK_EQ(st.bytes_written, 0);
    }
    CHECK(st.elapsed_ns > 0);
    if (h_test_failures != before)
        printf("      (source %s)\n", source_name(source));
    h_conns_free(&conns);
    procspy_walker_free(w);
}

void test_conn_all_fields(void)
{
    all_fields(PROCSPY_SOURCE_TEXT);
    all_fields(PROCSPY_SOURCE_NETLINK);
    all_fields(PROCSPY_SOURCE_AUTO);
}

/* In the children's namespaces, `b` lists each record of `a` once, the
 * same, and nothing else; returns how many of them have an owner. */
static size_t same_children_records(const struct h_fixture *fx, const struct h_conns *a, const struct h_conns *b)
{
    size_t i, owned = 0;
    int k;
    for (k = 0; k < fx->nchild; k++) {
        uint64_t ns = fx->child[k].netns;
        CHECK_EQ(count_netns(a, ns), count_netns(b, ns));
        for (i = 0; i < a->n; i++) {
            const struct h_conn *x = &a->v[i], *y;
            size_t n;
            if (x->c.netns != ns)
                continue;
            y = h_conns_find(b, ns, x->c.inode, &n);
            if (!CHECK(y != NULL) || !CHECK_EQ(n, 1))
                continue;
            owned += x->has_owner != 0;
            h_same_conn(x, y);
        }
    }
    return owned;
}

/* Netlink and text give the same records for the children's namespaces. */
void test_conn_sources_agree(void)
{
    const struct h_fixture *fx = h_fixture();
    const uint32_t protos = PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP;
    struct h_conns text = {0}, nl = {0};
    procspy_walker *w;
    REQUIRE(fx != NULL);
    w = walker_with_source(PROCSPY_SOURCE_TEXT);
    REQUIRE(w != NULL);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, protos, PROCSPY_STATES_ALL, h_conn_cb, &text, NULL), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_source(w, PROCSPY_SOURCE_NETLINK), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, protos, PROCSPY_STATES_ALL, h_conn_cb, &nl, NULL), PROCSPY_OK);
    same_children_records(fx, &text, &nl);
    h_conns_free(&text);
    h_conns_free(&nl);
    procspy_walker_free(w);
}

/* A walker's uint32 setter: NULL is NULL_ARGUMENT (before a bad value),
 * values outside `good` are INVALID_ARGUMENT naming the call, each of
 * `good` is taken, also after a stop. */
static void setter_args(procspy_status (*set)(procspy_walker *, uint32_t), const char *name, const uint32_t *good,
                        size_t ngood)
{
    static const uint32_t bad[] = {3, 4, 7, 0x80000000u, 0xFFFFFFFFu};
    procspy_walker *w = NULL;
    size_t i;
    CHECK_STATUS(set(NULL, good[0]), PROCSPY_NULL_ARGUMENT);
    CHECK(strstr(h_last_error(), name) != NULL);
    CHECK_STATUS(set(NULL, bad[0]), PROCSPY_NULL_ARGUMENT);
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(set(w, bad[i]), PROCSPY_INVALID_ARGUMENT);
        CHECK(strstr(h_last_error(), name) != NULL);
    }
    for (i = 0; i < ngood; i++)
        CHECK_STATUS(set(w, good[i]), PROCSPY_OK);
    procspy_walker_stop(w);
    CHECK_STATUS(set(w, bad[0]), PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(set(w, good[ngood - 1]), PROCSPY_OK);
    procspy_walker_free(w);
}

void test_set_source_args(void)
{
    static const uint32_t good[] = {PROCSPY_SOURCE_AUTO, PROCSPY_SOURCE_TEXT, PROCSPY_SOURCE_NETLINK};
    setter_args(procspy_walker_set_source, "procspy_walker_set_source", good, 3);
}

/* The BPF owner scan (which also lists the children's namespaces, all of
 * whose sockets it holds, without reading their tables) and the PID/fd one
 * give the same records. */
void test_conn_owner_scans_agree(void)
{
    const struct h_fixture *fx = h_fixture();
    const uint32_t protos = PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP;
    struct h_conns by_proc = {0}, by_bpf = {0};
    procspy_walk_stats st_proc, st_bpf;
    procspy_walker *w = NULL;
    procspy_status st;
    REQUIRE(fx != NULL);
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_owner_scan(w, PROCSPY_OWNERS_PROC), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, protos, PROCSPY_STATES_ALL, h_conn_cb, &by_proc, &st_proc),
                 PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_owner_scan(w, PROCSPY_OWNERS_BPF), PROCSPY_OK);
    st = procspy_walker_connections(w, NULL, 0, protos, PROCSPY_STATES_ALL, h_conn_cb, &by_bpf, &st_bpf);
    if (!h_kernel_has_bpf_owner_scan()) {
        /* What the kernel lacks, said as such. */
        CHECK_STATUS(st, PROCSPY_UNSUPPORTED);
        CHECK(strstr(h_last_error(), "kernel") != NULL);
        goto out;
    }
    if (!CHECK_STATUS(st, PROCSPY_OK))
        printf("     this kernel should run the BPF owner scan: %s\n", h_last_error());
    CHECK(same_children_records(fx, &by_proc, &by_bpf) >= (size_t)fx->nchild * 8);
    CHECK(st_bpf.fds >= st_bpf.sockets && st_bpf.sockets >= (uint64_t)fx->nchild * 8);
    CHECK_EQ(st_bpf.ticks, 1); /* one pass, one tick */
    CHECK(st_proc.ticks >= (uint64_t)fx->nchild);
out:
    h_conns_free(&by_proc);
    h_conns_free(&by_bpf);
    procspy_walker_free(w);
}

void test_owner_scan_args(void)
{
    static const uint32_t good[] = {PROCSPY_OWNERS_AUTO, PROCSPY_OWNERS_BPF, PROCSPY_OWNERS_PROC};
    procspy_walker *w = NULL;
    struct h_fake f;
    int n = 0;
    setter_args(procspy_walker_set_owner_scan, "procspy_walker_set_owner_scan", good, 3);
    /* A fake root: the iterator's pids would not be its pids. */
    REQUIRE(h_fake_init(&f) == 0);
    h_fake_pid(&f, 1, "fake", 4, 100, 1);
    REQUIRE_STATUS(procspy_walker_new(f.root, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_owner_scan(w, PROCSPY_OWNERS_BPF), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, h_count_conn_cb,
                                            &n, NULL),
                 PROCSPY_INVALID_ARGUMENT);
    CHECK(strstr(h_last_error(), "host's own procfs") != NULL);
    procspy_walker_free(w);
    h_fake_cleanup(&f);
}

/* A socket listed in the harness's namespace, held only by child 2 in its own. */
static void owner_host_wide(uint32_t source)
{
    const struct h_fixture *fx = h_fixture();
    procspy_walker *w = NULL;
    struct h_conns conns = {0};
    const struct h_child *c;
    const struct h_sock *s;
    const struct h_conn *rec;
    size_t n;
    REQUIRE(fx != NULL);
    c = &fx->child[2];
    s = h_child_sock(c, H_OUTER);
    REQUIRE(s != NULL);
    w = walker_with_source(source);
    REQUIRE(w != NULL);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL, h_conn_cb,
                                            &conns, NULL), PROCSPY_OK);
    rec = h_conns_find(&conns, fx->self_netns, s->inode, &n);
    if (CHECK(rec != NULL)) {
        CHECK_EQ(n, 1);
        CHECK_EQ(rec->c.state, PROCSPY_STATE_CLOSE);
        CHECK_EQ(rec->c.family, 4);
        CHECK_EQ(rec->c.protocol, PROCSPY_PROTO_UDP);
        CHECK_EQ(rec->c.local_port, s->lport);
        CHECK_MEM(rec->c.local_addr, 16, H_ADDR_LO4, 16);
        if (CHECK(rec->has_owner)) {
            CHECK_EQ(rec->owner.pid, c->pid);
            CHECK_EQ(rec->owner.fd, s->fd);
            CHECK_EQ(rec->owner.netns, c->netns); /* the holder's namespace, not the table's */
            CHECK_MEM(rec->owner_name, rec->owner.name_len, c->name, c->name_len);
        }
    }
    /* and it is not listed in child 2's own namespace */
    CHECK(h_conns_find(&conns, c->netns, s->inode, NULL) == NULL);
    h_conns_free(&conns);
    procspy_walker_free(w);
}

void test_conn_owner_host_wide(void)
{
    owner_host_wide(PROCSPY_SOURCE_TEXT);
    owner_host_wide(PROCSPY_SOURCE_NETLINK);
}

static void run_filter1(uint32_t source, uint32_t protos, uint32_t mask)
{
    const struct h_fixture *fx = h_fixture();
    procspy_walker *w;
    struct h_conns conns = {0};
    int i, k;
    if (!fx || !(w = walker_with_source(source)))
        return;
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, protos, mask, h_conn_cb, &conns, NULL), PROCSPY_OK);
    check_records_sane(&conns, protos, mask);
    check_once(&conns);
    CHECK_CONTIGUOUS(conns.v, conns.n, c.netns);
    for (i = 0; i < fx->nchild; i++) {
        const struct h_child *c = &fx->child[i];
        int want = listed_count(c, protos, mask);
        if (!CHECK_EQ(count_netns(&conns, c->netns), want))
            printf("      (source %s protocols %u mask 0x%x child %d)\n", source_name(source), protos, mask, i);
        for (k = 0; k < c->nsock; k++) {
            const struct h_sock *s = &c->socks[k];
            if (listed(s) && (protos & s->protocol) && (mask & (1u << s->state)))
                check_conn(&conns, c, s, c->netns);
        }
    }
    h_conns_free(&conns);
    procspy_walker_free(w);
}

static void run_filter(uint32_t protos, uint32_t mask)
{
    run_filter1(PROCSPY_SOURCE_TEXT, protos, mask);
    run_filter1(PROCSPY_SOURCE_NETLINK, protos, mask);
}

void test_conn_state_mask(void)
{
    const struct h_fixture *fx = h_fixture();
    const uint32_t both = PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP;
    REQUIRE(fx != NULL);
    /* sanity of the expectations: 2 listeners, 4+2 connected, 2 (+24) unconnected UDP */
    CHECK_EQ(listed_count(&fx->child[0], both, PROCSPY_STATES_LISTEN), 2);
    CHECK_EQ(listed_count(&fx->child[0], both, PROCSPY_STATES_CONNECTED), 6);
    CHECK_EQ(listed_count(&fx->child[2], both, 1u << PROCSPY_STATE_CLOSE), 26);
    run_filter(both, PROCSPY_STATES_LISTEN);
    run_filter(both, PROCSPY_STATES_CONNECTED);
    run_filter1(PROCSPY_SOURCE_NETLINK, both, 1u << PROCSPY_STATE_CLOSE);
    run_filter1(PROCSPY_SOURCE_TEXT, both, (1u << PROCSPY_STATE_TIME_WAIT) | (1u << 31)); /* nothing of ours */
}

void test_conn_protocol_filter(void)
{
    const struct h_fixture *fx = h_fixture();
    REQUIRE(fx != NULL);
    CHECK_EQ(listed_count(&fx->child[1], PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL), 6);
    CHECK_EQ(listed_count(&fx->child[1], PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL), 4);
    run_filter(PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL);
    run_filter(PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL);
    run_filter1(PROCSPY_SOURCE_AUTO, PROCSPY_PROTO_UDP, PROCSPY_STATES_LISTEN); /* nothing of ours */
}

/* A caller buffer too small for child 2's namespace but big enough for 0 and 1. */
void test_conn_buffer_too_small(void)
{
    const struct h_fixture *fx = h_fixture();
    const uint32_t both = PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP;
    procspy_walker *w = NULL;
    struct h_conns conns = {0};
    procspy_walk_stats st;
    size_t size[H_NCHILD], cap;
    uint8_t *buf;
    int i, attempt;
    procspy_status r;
    REQUIRE(fx != NULL);
    for (i = 0; i < H_NCHILD; i++) {
        char *t = h_child_tables(&fx->child[i], 1, 1, &size[i]);
        REQUIRE(t != NULL);
        free(t);
    }
    REQUIRE(size[2] > size[0]);
    cap = size[0] > size[1] ? size[0] : size[1];
    REQUIRE(size[2] > cap);
    w = walker_with_source(PROCSPY_SOURCE_TEXT);
    REQUIRE(w != NULL);
    buf = malloc(cap);
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_connections(w, buf, cap, both, PROCSPY_STATES_ALL, h_conn_cb, &conns, &st),
                 PROCSPY_BUFFER_TOO_SMALL);
    CHECK(strstr(h_last_error(), "procspy_walker_connections") != NULL);
    /* 0 and 1 delivered whole, 2 skipped whole */
    for (i = 0; i < 2; i++)
        CHECK_EQ(count_netns(&conns, fx->child[i].netns), listed_count(&fx->child[i], both, PROCSPY_STATES_ALL));
    CHECK_EQ(count_netns(&conns, fx->child[2].netns), 0);
    CHECK(st.bytes_needed >= size[2]);
    CHECK(st.bytes_written <= cap);
    CHECK(st.bytes_written >= size[0]);
    CHECK(st.processes >= 4);
    CHECK_CONTIGUOUS(conns.v, conns.n, c.netns);
    free(buf);
    /* bytes_needed is enough (the host's own namespace may grow meanwhile: retry then) */
    for (attempt = 0; attempt < 4; attempt++) {
        cap = (size_t)st.bytes_needed;
        buf = malloc(cap);
        h_conns_free(&conns);
        r = procspy_walker_connections(w, buf, cap, both, PROCSPY_STATES_ALL, h_conn_cb, &conns, &st);
        free(buf);
        if (!(r == PROCSPY_BUFFER_TOO_SMALL && st.bytes_needed > cap))
            break;
    }
    CHECK_STATUS(r, PROCSPY_OK);
    for (i = 0; i < H_NCHILD; i++)
        CHECK_EQ(count_netns(&conns, fx->child[i].netns), listed_count(&fx->child[i], both, PROCSPY_STATES_ALL));
    CHECK(st.bytes_written <= cap);
    CHECK_EQ(st.bytes_written, st.bytes_needed); /* the largest namespace filled it */
    h_conns_free(&conns);
    procspy_walker_free(w);

    /* netlink uses no table buffer: a 1-byte one is never too small */
    w = walker_with_source(PROCSPY_SOURCE_NETLINK);
    REQUIRE(w != NULL);
    buf = malloc(1);
    CHECK_STATUS(procspy_walker_connections(w, buf, 1, both, PROCSPY_STATES_ALL, h_conn_cb, &conns, &st), PROCSPY_OK);
    for (i = 0; i < H_NCHILD; i++)
        CHECK_EQ(count_netns(&conns, fx->child[i].netns), listed_count(&fx->child[i], both, PROCSPY_STATES_ALL));
    CHECK_EQ(st.bytes_needed, 0);
    CHECK_EQ(st.bytes_written, 0);
    free(buf);
    h_conns_free(&conns);
    procspy_walker_free(w);
}

/* cap 0 means the walker's own scratch, whatever buf is: buf is not touched. */
static void own_buffer(uint32_t source)
{
    const struct h_fixture *fx = h_fixture();
    const uint32_t both = PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP;
    procspy_walker *w = NULL;
    struct h_conns conns = {0};
    procspy_walk_stats st;
    uint8_t buf[256];
    size_t i;
    int k;
    REQUIRE(fx != NULL);
    w = walker_with_source(source);
    REQUIRE(w != NULL);
    memset(buf, 0x5A, sizeof buf);
    CHECK_STATUS(procspy_walker_connections(w, buf, 0, both, PROCSPY_STATES_ALL, h_conn_cb, &conns, &st),
                 PROCSPY_OK);
    for (i = 0; i < sizeof buf; i++)
        if (buf[i] != 0x5A) {
            h_fail(__FILE__, __LINE__, "byte %zu of a cap-0 buffer was written", i);
            break;
        }
    for (k = 0; k < H_NCHILD; k++)
        CHECK_EQ(count_netns(&conns, fx->child[k].netns), listed_count(&fx->child[k], both, PROCSPY_STATES_ALL));
    CHECK_EQ(st.bytes_written, st.bytes_needed);
    /* the same walker again, warm: the same answer */
    {
        size_t n1 = conns.n;
        h_conns_free(&conns);
        CHECK_STATUS(procspy_walker_connections(w, NULL, 0, both, PROCSPY_STATES_ALL, h_conn_cb, &conns, &st),
                     PROCSPY_OK);
        for (k = 0; k < H_NCHILD; k++)
            CHECK_EQ(count_netns(&conns, fx->child[k].netns),
                     listed_count(&fx->child[k], both, PROCSPY_STATES_ALL));
        CHECK(conns.n > 0 && n1 > 0);
    }
    h_conns_free(&conns);
    procspy_walker_free(w);
}

void test_conn_own_buffer(void)
{
    own_buffer(PROCSPY_SOURCE_TEXT);
    own_buffer(PROCSPY_SOURCE_NETLINK);
}

/* ---- a namespace whose every process vanishes during the call ------------ */

struct vanish {
    pid_t pid[2];
    uint64_t ns[2];
    int killed[2];
    size_t after[2];    /* records of a victim's namespace after it was killed */
    int started;
};

static void vanish_see(struct vanish *v, uint64_t netns)
{
    int i;
    if (!v->started) {
        /* the first record: kill every victim but the one it belongs to; those come later */
        v->started = 1;
        for (i = 0; i < 2; i++) {
            if (v->ns[i] == netns)
                continue;
            kill(v->pid[i], SIGKILL);
            waitpid(v->pid[i], NULL, 0);
            v->killed[i] = 1;
        }
    }
    for (i = 0; i < 2; i++)
        if (v->killed[i] && netns == v->ns[i])
            v->after[i]++;
}

static int vanish_conn_cb(void *ud, const procspy_connection *c)
{
    vanish_see(ud, c->netns);
    return 0;
}

static int vanish_sock_cb(void *ud, const procspy_socket *s)
{
    vanish_see(ud, s->netns);
    return 0;
}

/* source: a PROCSPY_SOURCE_*, or -1 for a walk */
static void vanish_once(int source)
{
    struct vanish v;
    procspy_walker *w = NULL;
    procspy_walk_stats st;
    procspy_status r;
    int i, killed = 0, before = h_test_failures;
    memset(&v, 0, sizeof v);
    for (i = 0; i < 2; i++)
        if (!CHECK(h_spawn_victim(&v.pid[i], &v.ns[i], 5555) == 0))
            goto out;
    if (!CHECK_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK))
        goto out;
    if (source >= 0) {
        CHECK_STATUS(procspy_walker_set_source(w, (uint32_t)source), PROCSPY_OK);
        r = procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL,
                                       vanish_conn_cb, &v, &st);
    } else {
        r = procspy_walker_walk(w, NULL, 0, vanish_sock_cb, &v, &st);
    }
    /* docs/pass.md: processes that exit mid-walk are skipped, never an error */
    CHECK_STATUS(r, PROCSPY_OK);
    for (i = 0; i < 2; i++) {
        if (v.killed[i]) {
            killed++;
            CHECK_EQ(v.after[i], 0); /* its sockets closed before its turn */
        }
    }
    CHECK(killed >= 1);
out:
    if (h_test_failures != before)
        printf("      (%s)\n", source < 0 ? "walk" : source_name((uint32_t)source));
    for (i = 0; i < 2; i++) {
        if (v.pid[i] > 0 && !v.killed[i]) {
            kill(v.pid[i], SIGKILL);
            waitpid(v.pid[i], NULL, 0);
        }
    }
    procspy_walker_free(w);
}

void test_conn_namespace_vanishes(void)
{
    REQUIRE(h_fixture() != NULL); /* some namespace with records comes first */
    vanish_once(-1);
    vanish_once(PROCSPY_SOURCE_TEXT);
    vanish_once(PROCSPY_SOURCE_AUTO);
    vanish_once(PROCSPY_SOURCE_NETLINK);
}
