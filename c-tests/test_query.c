/*
 * procspy_walker_query: its arguments (every bad one a clear status, never
 * "all"), one process's sockets against a full pass, one namespace's lines,
 * and the tables without owners, on the fixture's children (harness.c).
 */
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

#include "harness.h"

#define BOTH (PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP)

static procspy_status query(procspy_walker *w, const int32_t *pids, size_t n_pids, const uint64_t *netns,
                            size_t n_netns, uint32_t flags, struct h_conns *out, procspy_walk_stats *st)
{
    return procspy_walker_query(w, pids, n_pids, netns, n_netns, flags, NULL, 0, BOTH, PROCSPY_STATES_ALL,
                                h_conn_cb, out, st);
}

/* The call fails with `want`, names `words` in its message, delivers nothing. */
static void refused(procspy_walker *w, const int32_t *pids, size_t n_pids, const uint64_t *netns, size_t n_netns,
                    uint32_t flags, procspy_status want, const char *words)
{
    struct h_conns got = {0};
    if (!CHECK_STATUS(query(w, pids, n_pids, netns, n_netns, flags, &got, NULL), want))
        printf("      (flags 0x%x)\n", flags);
    if (!CHECK(strstr(h_last_error(), words) != NULL))
        printf("      message: %s (wanted %s)\n", h_last_error(), words);
    CHECK_EQ(got.n, 0);
    h_conns_free(&got);
}

void test_query_args(void)
{
    procspy_walker *w;
    int32_t me = (int32_t)getpid(), zero = 0, gone;
    uint64_t nobody = 1;
    struct h_conns got = {0};
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    REQUIRE(child > 0);
    waitpid(child, NULL, 0);
    gone = (int32_t)child;
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_query(NULL, NULL, 0, NULL, 0, 0, NULL, 0, BOTH, PROCSPY_STATES_ALL, h_conn_cb, &got,
                                      NULL),
                 PROCSPY_NULL_ARGUMENT);
    CHECK_STATUS(procspy_walker_query(w, NULL, 0, NULL, 0, 0, NULL, 0, BOTH, PROCSPY_STATES_ALL, NULL, NULL, NULL),
                 PROCSPY_NULL_ARGUMENT);
    refused(w, NULL, 1, NULL, 0, PROCSPY_QUERY_PIDS, PROCSPY_NULL_ARGUMENT, "pids");
    refused(w, NULL, 0, NULL, 1, PROCSPY_QUERY_NETNS, PROCSPY_NULL_ARGUMENT, "netns");
    /* NULL before invalid: an unknown flag too */
    refused(w, NULL, 1, NULL, 0, PROCSPY_QUERY_PIDS | 0x100, PROCSPY_NULL_ARGUMENT, "pids");
    refused(w, NULL, 0, NULL, 0, 0x100, PROCSPY_INVALID_ARGUMENT, "flags");
    refused(w, &me, 0, NULL, 0, PROCSPY_QUERY_PIDS, PROCSPY_INVALID_ARGUMENT, "empty");
    refused(w, NULL, 0, &nobody, 0, PROCSPY_QUERY_NETNS, PROCSPY_INVALID_ARGUMENT, "empty");
    refused(w, &me, 1, NULL, 0, 0, PROCSPY_INVALID_ARGUMENT, "without its flag");
    refused(w, NULL, 0, &nobody, 1, 0, PROCSPY_INVALID_ARGUMENT, "without its flag");
    refused(w, &zero, 1, NULL, 0, PROCSPY_QUERY_PIDS, PROCSPY_INVALID_ARGUMENT, "positive");
    refused(w, &gone, 1, NULL, 0, PROCSPY_QUERY_PIDS, PROCSPY_INVALID_ARGUMENT, "no such process");
    refused(w, NULL, 0, &nobody, 1, PROCSPY_QUERY_NETNS, PROCSPY_INVALID_ARGUMENT, "netns 1");
    refused(w, NULL, 0, NULL, 0, PROCSPY_QUERY_EVERY_LINE, PROCSPY_INVALID_ARGUMENT, "every_line");
    CHECK_STATUS(procspy_walker_query(w, NULL, 0, NULL, 0, 0, NULL, 0, 0, PROCSPY_STATES_ALL, h_conn_cb, &got, NULL),
                 PROCSPY_INVALID_ARGUMENT);
    CHECK_STATUS(procspy_walker_query(w, NULL, 0, NULL, 0, 0, NULL, 0, BOTH, 0, h_conn_cb, &got, NULL),
                 PROCSPY_INVALID_ARGUMENT);
    CHECK_EQ(got.n, 0);
    h_conns_free(&got);
    procspy_walker_free(w);
}

/* Every record of `a` is in `b`, field for field, owner included. */
static int same_records(const struct h_conns *a, const struct h_conns *b)
{
    size_t i, dups;
    if (!CHECK_EQ(a->n, b->n))
        return 0;
    for (i = 0; i < a->n; i++) {
        const struct h_conn *x = &a->v[i], *y = h_conns_find(b, x->c.netns, x->c.inode, &dups);
        if (x->c.inode == 0) /* a TIME_WAIT and the like: several may share inode 0 */
            continue;
        if (!CHECK(y != NULL) || !CHECK_EQ(dups, 1))
            return 0;
        h_same_conn(x, y);
    }
    return 1;
}

/* The records of `all` that `keep` says to. */
static void pick(const struct h_conns *all, struct h_conns *out, int (*keep)(const struct h_conn *, const void *),
                 const void *arg)
{
    size_t i;
    for (i = 0; i < all->n; i++) {
        procspy_connection c = all->v[i].c;
        procspy_socket o = all->v[i].owner;
        if (keep(&all->v[i], arg)) {
            /* The name the record lent is gone: lend the copy kept of it. */
            o.name = all->v[i].owner_name;
            o.name_len = o.name ? strlen(o.name) : 0;
            c.owner = all->v[i].has_owner ? &o : NULL;
            h_conn_cb(out, &c);
        }
    }
}

/* Whether this process may take another's fds (pidfd_getfd; valgrind
 * knows no such call): only then does a pid query ask each socket where it
 * lives, and find one made in a namespace its holder is not in. */
static int can_take_fds(void)
{
    long pidfd = syscall(SYS_pidfd_open, (long)getpid(), 0L), fd = -1;
    if (pidfd >= 0) {
        fd = syscall(SYS_pidfd_getfd, pidfd, 0L, 0L);
        close((int)pidfd);
    }
    if (fd >= 0)
        close((int)fd);
    return fd >= 0;
}

struct owner_in { pid_t pid; uint64_t netns; }; /* netns 0: any */

static int owned_by(const struct h_conn *c, const void *arg)
{
    const struct owner_in *o = arg;
    return c->has_owner && c->owner.pid == o->pid && (o->netns == 0 || c->c.netns == o->netns);
}

static int in_netns(const struct h_conn *c, const void *netns)
{
    return c->c.netns == *(const uint64_t *)netns;
}

void test_query_fixture(void)
{
    const struct h_fixture *fx = h_fixture();
    static const uint32_t sources[] = { PROCSPY_SOURCE_AUTO, PROCSPY_SOURCE_NETLINK, PROCSPY_SOURCE_TEXT };
    size_t s;
    int i;
    REQUIRE(fx != NULL);
    for (s = 0; s < sizeof sources / sizeof sources[0]; s++) {
        procspy_walker *w;
        struct h_conns all = {0};
        REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
        REQUIRE_STATUS(procspy_walker_set_source(w, sources[s]), PROCSPY_OK);
        REQUIRE_STATUS(procspy_walker_connections(w, NULL, 0, BOTH, PROCSPY_STATES_ALL, h_conn_cb, &all, NULL),
                       PROCSPY_OK);
        for (i = 0; i < fx->nchild; i++) {
            const struct h_child *c = &fx->child[i];
            int32_t pid = (int32_t)c->pid;
            struct h_conns got = {0}, want = {0}, ns = {0}, bare = {0};
            procspy_walk_stats st;
            size_t k;
            /* One pid: its sockets (the one it made before unshare too, in our
             * namespace, where its sockets can be asked), as a full pass has them. */
            struct owner_in mine = { c->pid, can_take_fds() ? 0 : c->netns };
            CHECK_STATUS(query(w, &pid, 1, NULL, 0, PROCSPY_QUERY_PIDS, &got, &st), PROCSPY_OK);
            pick(&all, &want, owned_by, &mine);
            if (!same_records(&got, &want))
                printf("      (source %u, child %d: pid query vs full pass)\n", sources[s], i);
            CHECK_EQ(st.processes, 1);
            CHECK_CONTIGUOUS(got.v, got.n, c.netns);
            /* One namespace: its lines as a full pass has them. */
            h_conns_free(&want);
            pick(&all, &want, in_netns, &c->netns);
            CHECK_STATUS(query(w, NULL, 0, &c->netns, 1, PROCSPY_QUERY_NETNS, &ns, NULL), PROCSPY_OK);
            if (!same_records(&ns, &want))
                printf("      (source %u, child %d: netns query vs full pass)\n", sources[s], i);
            /* Without owners: the same lines, none owned, no fd read. */
            CHECK_STATUS(query(w, NULL, 0, &c->netns, 1, PROCSPY_QUERY_NETNS | PROCSPY_QUERY_NO_OWNERS, &bare, &st),
                         PROCSPY_OK);
            CHECK_EQ(bare.n, want.n);
            CHECK_EQ(st.fds, 0);
            for (k = 0; k < bare.n; k++)
                CHECK(!bare.v[k].has_owner && h_conns_find(&want, bare.v[k].c.netns, bare.v[k].c.inode, NULL));
            h_conns_free(&got);
            h_conns_free(&want);
            h_conns_free(&ns);
            h_conns_free(&bare);
        }
        h_conns_free(&all);
        procspy_walker_free(w);
    }
}
