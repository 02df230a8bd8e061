/*
 * Fake proc trees: directories under a mkdtemp dir whose pid entries point
 * at the fixture's real namespaces and sockets (ns/net and fd/N symlinks
 * into /proc/CHILD/...), with stat and net/tcp files written here. Hostile
 * names, the net/dev fallback, missing tcp6, bad fd entries, vanished pids,
 * tables from the next pid, non-numeric entries; and connections' join
 * (owners, de-duplication, filters, buffer too small) over known tables.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* A table of n lines (LISTEN on 127.0.0.1 or ::1, ports from port0, inodes from inode0). */
static void make_table(struct h_str *s, int family, int n, uint16_t port0, uint64_t inode0)
{
    int i;
    h_str_addz(s, family == 6 ? H_HDR6 : H_HDR4);
    for (i = 0; i < n; i++)
        h_table_line(s, i, family, family == 6 ? H_ADDR_LO6 : H_ADDR_LO4, (uint16_t)(port0 + i),
                     H_ADDR_ZERO, 0, PROCSPY_STATE_LISTEN, 0, inode0 + (uint64_t)i);
}

static void write_table(const struct h_fake *f, int pid, const char *file, const struct h_str *s)
{
    char rel[64];
    snprintf(rel, sizeof rel, "%d/net/%s", pid, file);
    h_fake_write(f, rel, s->p, s->len);
}

static procspy_walker *fake_walker(const struct h_fake *f)
{
    procspy_walker *w = NULL;
    if (!CHECK_STATUS(procspy_walker_new(f->root, &w), PROCSPY_OK))
        return NULL;
    return w;
}

/* connections over the tables written here, not the kernel's (netlink) */
static procspy_walker *fake_text_walker(const struct h_fake *f)
{
    procspy_walker *w = fake_walker(f);
    if (w && !CHECK_STATUS(procspy_walker_set_source(w, PROCSPY_SOURCE_TEXT), PROCSPY_OK)) {
        procspy_walker_free(w);
        return NULL;
    }
    return w;
}

static procspy_status walk_fake(procspy_walker *w, struct h_recs *recs, uint8_t *buf, size_t cap,
                                procspy_walk_stats *st)
{
    h_recs_free(recs);
    return procspy_walker_walk(w, buf, cap, h_rec_cb, recs, st);
}

/* What a fake-tree walk test holds: the live fixture, the tree, its
 * tables, the walker and what its last walk gave. */
struct fake_walk {
    const struct h_fixture *fx;
    struct h_fake f;
    struct h_str tcp, tcp6;
    struct h_recs recs;
    procspy_walk_stats st;
    procspy_walker *w;
    uint8_t buf[4096];
};

/* 0 once the fixture is up and the tree made (fake_end frees it all). */
static int fake_begin(struct fake_walk *t)
{
    memset(t, 0, sizeof *t);
    t->fx = h_fixture();
    return CHECK(t->fx != NULL) && CHECK(h_fake_init(&t->f) == 0) ? 0 : -1;
}

static void fake_end(struct fake_walk *t)
{
    procspy_walker_free(t->w);
    h_recs_free(&t->recs);
    h_str_free(&t->tcp);
    h_str_free(&t->tcp6);
    h_fake_cleanup(&t->f);
}

/* Pid `pid` of t's tree, named `name`, in child c's namespace, holding c's
 * socket of `kind` as fd `fd`. */
static void fake_holder(const struct fake_walk *t, int pid, const char *name, uint64_t start_time,
                        const struct h_child *c, int fd, int kind)
{
    h_fake_pid(&t->f, pid, name, strlen(name), start_time, 1);
    h_fake_ns(&t->f, pid, c->pid);
    h_fake_fd_sock(&t->f, pid, fd, c->pid, h_child_sock(c, kind)->fd);
}

/* A walk of t's tree by t's walker, into t's records, buffer and stats. */
static procspy_status walk_tree(struct fake_walk *t)
{
    return walk_fake(t->w, &t->recs, t->buf, sizeof t->buf, &t->st);
}

/* t's walker made over its tree (else -1, a check failed), then its first
 * walk, checked: 0. */
static int first_walk(struct fake_walk *t)
{
    t->w = fake_walker(&t->f);
    if (!t->w)
        return -1;
    CHECK_STATUS(walk_tree(t), PROCSPY_OK);
    return 0;
}

/* What t's last walk counted: records delivered, pids examined, pids (and
 * fds) skipped. */
static void check_counts(const struct fake_walk *t, size_t records, uint64_t processes, uint64_t skipped)
{
    CHECK_EQ(t->recs.n, records);
    CHECK_EQ(t->st.processes, processes);
    CHECK_EQ(t->st.skipped, skipped);
}

struct name_case { const char *name; size_t len; };

void test_fake_hostile_names(void)
{
    struct fake_walk t;
    static char longname[201];
    struct name_case cases[] = {
        {"x\ny", 3}, {"a b  c", 6}, {"((()", 4}, {") R 1 2", 7}, {"evil) S 1 2 3 (", 15},
        {longname, 200}, {"\xff\xfe\x01\t", 4}, {"", 0}, {"(", 1}, {")", 1}, {"a) R 1 (x\n", 10},
        {"))) ) ) )", 9},
    };
    const int ncase = (int)(sizeof cases / sizeof cases[0]);
    uint8_t buf[8192];
    const struct h_child *c;
    const struct h_sock *l4;
    int i, round;
    REQUIRE(fake_begin(&t) == 0);
    c = &t.fx->child[0];
    l4 = h_child_sock(c, H_LISTEN4);
    memset(longname, 'n', 200);
    longname[100] = ')';
    for (i = 0; i < ncase; i++) {
        int pid = 100 + i;
        h_fake_pid(&t.f, pid, cases[i].name, cases[i].len, 1000 + (uint64_t)i, 1);
        h_fake_ns(&t.f, pid, c->pid);
        h_fake_fd_sock(&t.f, pid, 3 + i, c->pid, l4->fd);
    }
    make_table(&t.tcp, 4, 3, 5000, 42);
    make_table(&t.tcp6, 6, 2, 6000, 52);
    write_table(&t.f, 100, "tcp", &t.tcp);
    write_table(&t.f, 100, "tcp6", &t.tcp6);
    t.w = fake_walker(&t.f);
    for (round = 0; t.w && round < 2; round++) { /* a walker is reusable */
        CHECK_STATUS(walk_fake(t.w, &t.recs, buf, sizeof buf, &t.st), PROCSPY_OK);
        CHECK_EQ(t.recs.n, ncase);
        for (i = 0; i < ncase; i++) {
            const struct h_rec *r = h_recs_find(&t.recs, 100 + i, 3 + i);
            if (!CHECK(r != NULL))
                continue;
            CHECK_EQ(r->inode, l4->inode);
            CHECK_EQ(r->netns, c->netns);
            CHECK_EQ(r->start_time, 1000 + i);
            CHECK_EQ(r->name_len, cases[i].len);
            CHECK_MEM(r->name, r->name_len, cases[i].name, cases[i].len);
            CHECK(r->name_nul_ok);
        }
        CHECK_EQ(t.st.bytes_written, t.tcp.len + t.tcp6.len);
        CHECK_EQ(t.st.bytes_needed, t.tcp.len + t.tcp6.len);
        CHECK_MEM(buf, t.tcp.len, t.tcp.p, t.tcp.len);
        CHECK_MEM(buf + t.tcp.len, t.tcp6.len, t.tcp6.p, t.tcp6.len);
        CHECK_EQ(t.st.namespaces, 1);
        CHECK_EQ(t.st.processes, ncase);
        CHECK_EQ(t.st.skipped, 0);
        CHECK_EQ(t.st.fds, ncase);
        CHECK_EQ(t.st.sockets, ncase);
        CHECK_EQ(t.st.ticks, 1);
    }
    fake_end(&t);
}

/* Before Linux 3.8: no ns/, the namespace is the inode of net/dev; probed once per walker. */
void test_fake_net_dev_fallback(void)
{
    struct fake_walk t;
    uint64_t dev400, dev401, ns = 0;
    const struct h_child *c;
    const struct h_rec *r;
    REQUIRE(fake_begin(&t) == 0);
    c = &t.fx->child[1];
    h_fake_pid(&t.f, 400, "old-kernel", 10, 77, 1);
    h_fake_write(&t.f, "400/net/dev", "Inter-|   Receive\n", 18);
    make_table(&t.tcp, 4, 2, 7000, 900);
    write_table(&t.f, 400, "tcp", &t.tcp);
    h_fake_fd_sock(&t.f, 400, 5, c->pid, h_child_sock(c, H_UDP4)->fd);
    dev400 = h_stat_ino(h_fake_path(&t.f, "400/net/dev"));
    REQUIRE(dev400 != 0);
    REQUIRE(first_walk(&t) == 0);
    CHECK_EQ(t.recs.n, 1);
    r = h_recs_find(&t.recs, 400, 5);
    if (CHECK(r != NULL)) {
        CHECK_EQ(r->netns, dev400);
        CHECK_EQ(r->inode, h_child_sock(c, H_UDP4)->inode);
        CHECK_MEM(r->name, r->name_len, "old-kernel", 10);
    }
    CHECK_MEM(t.buf, (size_t)t.st.bytes_written, t.tcp.p, t.tcp.len); /* no tcp6 here: tcp only */
    CHECK_EQ(t.st.namespaces, 1);
    CHECK_EQ(t.st.skipped, 0);
    CHECK_STATUS(procspy_walker_netns_of(t.w, 400, &ns), PROCSPY_OK);
    CHECK_EQ(ns, dev400);

    /* A pid with both ns/net and net/dev: the walker probed net/dev, and keeps to it. */
    h_fake_pid(&t.f, 401, "both", 4, 78, 1);
    h_fake_ns(&t.f, 401, c->pid);
    h_fake_write(&t.f, "401/net/dev", "x\n", 2);
    h_fake_fd_sock(&t.f, 401, 6, c->pid, h_child_sock(c, H_UDP4)->fd);
    dev401 = h_stat_ino(h_fake_path(&t.f, "401/net/dev"));
    CHECK_STATUS(walk_tree(&t), PROCSPY_OK);
    r = h_recs_find(&t.recs, 401, 6);
    if (CHECK(r != NULL))
        CHECK_EQ(r->netns, dev401);
    CHECK_EQ(t.st.namespaces, 2);
    CHECK_STATUS(procspy_walker_netns_of(t.w, 401, &ns), PROCSPY_OK);
    CHECK_EQ(ns, dev401);
    procspy_walker_free(t.w);

    /* A fresh walker over a tree whose first pid has ns/net: a later pid with only net/dev is skipped. */
    h_fake_cleanup(&t.f);
    REQUIRE(h_fake_init(&t.f) == 0);
    fake_holder(&t, 410, "modern", 79, c, 3, H_UDP4);
    write_table(&t.f, 410, "tcp", &t.tcp);
    REQUIRE(first_walk(&t) == 0);
    r = h_recs_find(&t.recs, 410, 3);
    if (CHECK(r != NULL))
        CHECK_EQ(r->netns, c->netns);
    h_fake_pid(&t.f, 411, "no-ns", 5, 80, 1);
    h_fake_write(&t.f, "411/net/dev", "x\n", 2);
    write_table(&t.f, 411, "tcp", &t.tcp);
    h_fake_fd_sock(&t.f, 411, 3, c->pid, h_child_sock(c, H_UDP4)->fd);
    CHECK_STATUS(walk_tree(&t), PROCSPY_OK);
    CHECK_EQ(h_recs_count_pid(&t.recs, 411), 0);
    CHECK_EQ(h_recs_count_pid(&t.recs, 410), 1);
    CHECK_EQ(t.st.processes, 2);
    CHECK_EQ(t.st.skipped, 1);
    CHECK_EQ(t.st.namespaces, 1);
    CHECK_STATUS(procspy_walker_netns_of(t.w, 411, &ns), PROCSPY_IO);
    CHECK(strstr(h_last_error(), "411") != NULL);
    fake_end(&t);
}

/* No tcp6 anywhere: the tables are the tcp files only, and that is no error. */
void test_fake_missing_tcp6(void)
{
    struct fake_walk t;
    struct h_str t0 = {0}, t1 = {0};
    const struct h_str *first, *second;
    size_t out = 0;
    REQUIRE(fake_begin(&t) == 0);
    make_table(&t0, 4, 1, 8000, 1);
    make_table(&t1, 4, 4, 8100, 100);
    h_fake_pid(&t.f, 600, "v4only-a", 8, 1, 1);
    h_fake_ns(&t.f, 600, t.fx->child[0].pid);
    h_fake_fd_sock(&t.f, 600, 3, t.fx->child[0].pid, t.fx->child[0].socks[0].fd);
    write_table(&t.f, 600, "tcp", &t0);
    h_fake_pid(&t.f, 601, "v4only-b", 8, 1, 1);
    h_fake_ns(&t.f, 601, t.fx->child[1].pid);
    h_fake_fd_sock(&t.f, 601, 3, t.fx->child[1].pid, t.fx->child[1].socks[0].fd);
    write_table(&t.f, 601, "tcp", &t1);
    first = t.fx->child[0].netns < t.fx->child[1].netns ? &t0 : &t1;
    second = first == &t0 ? &t1 : &t0;
    REQUIRE(first_walk(&t) == 0);
    CHECK_EQ(t.recs.n, 2);
    CHECK_EQ(t.st.bytes_written, t0.len + t1.len);
    CHECK_EQ(t.st.bytes_needed, t0.len + t1.len);
    CHECK_MEM(t.buf, first->len, first->p, first->len);
    CHECK_MEM(t.buf + first->len, second->len, second->p, second->len);
    CHECK_EQ(t.st.namespaces, 2);
    CHECK_EQ(t.st.skipped, 0);
    /* read_tcp too: tcp only, OK */
    CHECK_STATUS(procspy_walker_read_tcp(t.w, 601, t.buf, sizeof t.buf, &out), PROCSPY_OK);
    CHECK_EQ(out, t1.len);
    CHECK_MEM(t.buf, out, t1.p, t1.len);
    h_str_free(&t0);
    h_str_free(&t1);
    fake_end(&t);
}

/* fd entries that are not sockets, dangle, or are no fd numbers. */
void test_fake_bad_fd_entries(void)
{
    struct fake_walk t;
    const struct h_child *c;
    char sockpath[64];
    const struct h_rec *r;
    REQUIRE(fake_begin(&t) == 0);
    c = &t.fx->child[0];
    snprintf(sockpath, sizeof sockpath, "/proc/%d/fd/%d", (int)c->pid, h_child_sock(c, H_CLIENT6)->fd);
    make_table(&t.tcp, 4, 1, 9000, 5);
    h_fake_pid(&t.f, 700, "fdtest", 6, 9, 1);
    h_fake_ns(&t.f, 700, c->pid);
    write_table(&t.f, 700, "tcp", &t.tcp);
    h_fake_fd_link(&t.f, 700, "3", sockpath);                       /* a socket */
    h_fake_fd_link(&t.f, 700, "4", "/nonexistent/procspy-gone");    /* closed meanwhile */
    h_fake_write(&t.f, "700/fd/5", "not a link", 10);               /* a plain file, no symlink */
    h_fake_fd_link(&t.f, 700, "6", "/dev/null");                    /* a file, not a socket */
    h_fake_mkdir(&t.f, "700/fd/7");                                 /* a directory */
    h_fake_fd_link(&t.f, 700, "abc", sockpath);                     /* no fd number */
    h_fake_fd_link(&t.f, 700, "-1", sockpath);
    h_fake_fd_link(&t.f, 700, "9x", sockpath);
    REQUIRE(first_walk(&t) == 0);
    CHECK_EQ(t.recs.n, 1);
    r = h_recs_find(&t.recs, 700, 3);
    if (CHECK(r != NULL)) {
        CHECK_EQ(r->inode, h_child_sock(c, H_CLIENT6)->inode);
        CHECK_EQ(r->netns, c->netns);
    }
    CHECK_EQ(t.st.fds, 5);       /* 3, 4, 5, 6 and 7 were stat()ed; the others are no fds */
    CHECK_EQ(t.st.sockets, 1);
    /* procspy.h, procspy_walk_stats.skipped: fds that could not be stat()ed are counted there */
    check_counts(&t, 1, 1, 1);
    fake_end(&t);
}

/* Pids that vanished in the various ways a racing walk sees them. */
void test_fake_vanished_pids(void)
{
    struct fake_walk t;
    const struct h_child *c;
    int fd;
    REQUIRE(fake_begin(&t) == 0);
    c = &t.fx->child[2];
    fd = h_child_sock(c, H_LISTEN4)->fd;
    make_table(&t.tcp, 4, 2, 9100, 5);
    /* 200: fine */
    h_fake_pid(&t.f, 200, "alive", 5, 1, 1);
    h_fake_ns(&t.f, 200, c->pid);
    h_fake_fd_sock(&t.f, 200, 3, c->pid, fd);
    write_table(&t.f, 200, "tcp", &t.tcp);
    /* 201: no fd dir (gone between listing and the fd scan) */
    h_fake_pid(&t.f, 201, "nofd", 4, 1, 0);
    h_fake_ns(&t.f, 201, c->pid);
    /* 202: a socket, but no stat file */
    h_fake_mkdir(&t.f, "202");
    h_fake_ns(&t.f, 202, c->pid);
    h_fake_fd_sock(&t.f, 202, 3, c->pid, fd);
    /* 203: its ns link leads nowhere (the process is gone) */
    h_fake_pid(&t.f, 203, "nons", 4, 1, 1);
    h_fake_ns(&t.f, 203, 0x7fffffff);
    h_fake_fd_sock(&t.f, 203, 3, c->pid, fd);
    /* 204: an empty directory */
    h_fake_mkdir(&t.f, "204");
    /* 205: a stat that is no stat line, and a socket */
    h_fake_mkdir(&t.f, "205");
    h_fake_write(&t.f, "205/stat", "garbage", 7);
    h_fake_ns(&t.f, 205, c->pid);
    h_fake_fd_sock(&t.f, 205, 3, c->pid, fd);
    REQUIRE(first_walk(&t) == 0);
    check_counts(&t, 1, 6, 5);
    CHECK(h_recs_find(&t.recs, 200, 3) != NULL);
    CHECK_EQ(t.st.namespaces, 1);
    CHECK_MEM(t.buf, (size_t)t.st.bytes_written, t.tcp.p, t.tcp.len);
    /* remove 200's fd dir too: now nothing is delivered, still OK */
    REQUIRE(unlink(h_fake_path(&t.f, "200/fd/3")) == 0);
    REQUIRE(rmdir(h_fake_path(&t.f, "200/fd")) == 0);
    CHECK_STATUS(walk_tree(&t), PROCSPY_OK);
    CHECK_EQ(t.recs.n, 0);
    CHECK_EQ(t.st.skipped, 6);
    CHECK_EQ(t.st.sockets, 0);
    fake_end(&t);
}

/* The first pid of a namespace has no net/tcp: its tables come from the next pid. */
void test_fake_tables_from_next_pid(void)
{
    struct fake_walk t;
    const struct h_child *c;
    REQUIRE(fake_begin(&t) == 0);
    c = &t.fx->child[1];
    make_table(&t.tcp, 4, 2, 9200, 11);
    make_table(&t.tcp6, 6, 1, 9300, 21);
    fake_holder(&t, 500, "first", 1, c, 3, H_LISTEN6);   /* no net/ at all */
    h_fake_pid(&t.f, 501, "second", 6, 2, 1);  /* net/ without tcp */
    h_fake_ns(&t.f, 501, c->pid);
    h_fake_mkdir(&t.f, "501/net");
    h_fake_fd_sock(&t.f, 501, 3, c->pid, h_child_sock(c, H_LISTEN6)->fd);
    h_fake_pid(&t.f, 502, "third", 5, 3, 1);
    h_fake_ns(&t.f, 502, c->pid);
    write_table(&t.f, 502, "tcp", &t.tcp);
    write_table(&t.f, 502, "tcp6", &t.tcp6);
    h_fake_fd_sock(&t.f, 502, 4, c->pid, h_child_sock(c, H_ACCEPT6)->fd);
    REQUIRE(first_walk(&t) == 0);
    CHECK_EQ(t.recs.n, 3);
    CHECK(h_recs_find(&t.recs, 500, 3) != NULL);
    CHECK(h_recs_find(&t.recs, 501, 3) != NULL);
    CHECK(h_recs_find(&t.recs, 502, 4) != NULL);
    CHECK_EQ(t.st.bytes_written, t.tcp.len + t.tcp6.len);
    CHECK_MEM(t.buf, t.tcp.len, t.tcp.p, t.tcp.len);
    CHECK_MEM(t.buf + t.tcp.len, t.tcp6.len, t.tcp6.p, t.tcp6.len);
    CHECK_EQ(t.st.skipped, 0);
    fake_end(&t);
}

/* Only decimal pid entries are processes. */
void test_fake_non_numeric_entries(void)
{
    struct fake_walk t;
    static const char *const junk[] = {"abc", "12x", "x12", "-4", "+5", " 7", "1.5", ".hidden"};
    const struct h_child *c;
    size_t i;
    REQUIRE(fake_begin(&t) == 0);
    c = &t.fx->child[0];
    make_table(&t.tcp, 4, 1, 9400, 31);
    fake_holder(&t, 300, "real", 1, c, 3, H_UDP6);
    write_table(&t.f, 300, "tcp", &t.tcp);
    for (i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        /* each a complete process directory, except for its name */
        char rel[64];
        snprintf(rel, sizeof rel, "%s/ns", junk[i]);
        h_fake_mkdir(&t.f, rel);
        snprintf(rel, sizeof rel, "/proc/%d/ns/net", (int)c->pid);
        CHECK(symlink(rel, h_fake_path(&t.f, "%s/ns/net", junk[i])) == 0);
        snprintf(rel, sizeof rel, "%s/stat", junk[i]);
        {
            static const char junk_stat[] = "1 (junk) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n";
            h_fake_write(&t.f, rel, junk_stat, strlen(junk_stat));
        }
        snprintf(rel, sizeof rel, "%s/fd", junk[i]);
        h_fake_mkdir(&t.f, rel);
        snprintf(rel, sizeof rel, "/proc/%d/fd/%d", (int)c->pid, h_child_sock(c, H_UDP6)->fd);
        CHECK(symlink(rel, h_fake_path(&t.f, "%s/fd/3", junk[i])) == 0);
        snprintf(rel, sizeof rel, "%s/net/tcp", junk[i]);
        h_fake_write(&t.f, rel, "junk\n", 5);
    }
    CHECK(symlink("300", h_fake_path(&t.f, "self")) == 0);
    h_fake_write(&t.f, "uptime", "1.0 1.0\n", 8);
    REQUIRE(first_walk(&t) == 0);
    check_counts(&t, 1, 1, 0);
    CHECK(h_recs_find(&t.recs, 300, 3) != NULL);
    CHECK_EQ(t.st.fds, 1);
    CHECK_MEM(t.buf, (size_t)t.st.bytes_written, t.tcp.p, t.tcp.len);
    fake_end(&t);
}

/* ---- connections over known tables -------------------------------------- */

struct join_tree {
    struct h_fake f;
    uint64_t nsA, nsB;
    uint64_t I1, I2, I4, I5;
    size_t sizeA, sizeB;
};

static const uint8_t MAPPED[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};

static int build_join_tree(struct join_tree *t, int extra_b)
{
    const struct h_fixture *fx = h_fixture();
    const struct h_child *c0, *c1;
    struct h_str a = {0}, a6 = {0}, au = {0}, au6 = {0}, b = {0}, b6 = {0}, bu = {0}, bu6 = {0};
    int i;
    if (!fx)
        return -1;
    c0 = &fx->child[0];
    c1 = &fx->child[1];
    memset(t, 0, sizeof *t);
    if (h_fake_init(&t->f) != 0)
        return -1;
    t->nsA = c0->netns;
    t->nsB = c1->netns;
    t->I1 = h_child_sock(c0, H_LISTEN4)->inode;
    t->I2 = h_child_sock(c0, H_CLIENT4)->inode;
    t->I4 = h_child_sock(c0, H_LISTEN6)->inode;
    t->I5 = h_child_sock(c0, H_UDP4)->inode;
    /* holders: 900 and 901 in A, 950 in B */
    h_fake_pid(&t->f, 900, "holder-a", 8, 5000, 1);
    h_fake_ns(&t->f, 900, c0->pid);
    h_fake_fd_sock(&t->f, 900, 9, c0->pid, h_child_sock(c0, H_LISTEN4)->fd);
    h_fake_fd_sock(&t->f, 900, 4, c0->pid, h_child_sock(c0, H_LISTEN4)->fd);
    h_fake_fd_sock(&t->f, 900, 5, c0->pid, h_child_sock(c0, H_LISTEN6)->fd);
    h_fake_pid(&t->f, 901, "holder b", 8, 5001, 1);
    h_fake_ns(&t->f, 901, c0->pid);
    h_fake_fd_sock(&t->f, 901, 7, c0->pid, h_child_sock(c0, H_LISTEN4)->fd);
    h_fake_fd_sock(&t->f, 901, 3, c0->pid, h_child_sock(c0, H_UDP4)->fd);
    h_fake_pid(&t->f, 950, "holder-(c)", 10, 5002, 1);
    h_fake_ns(&t->f, 950, c1->pid);
    h_fake_fd_sock(&t->f, 950, 6, c0->pid, h_child_sock(c0, H_CLIENT4)->fd);

    /* A: tcp */
    h_str_addz(&a, H_HDR4);
    h_table_line(&a, 0, 4, H_ADDR_LO4, 1000, H_ADDR_ZERO, 0, 10, 1234, t->I1);
    h_table_line(&a, 1, 4, H_ADDR_LO4, 1001, H_ADDR_LO4, 1000, 1, 0, t->I2);
    h_table_line(&a, 2, 4, H_ADDR_LO4, 1002, H_ADDR_ZERO, 0, 10, 0, 12345);
    h_table_line(&a, 3, 4, H_ADDR_LO4, 1010, H_ADDR_LO4, 1011, 1, 0, t->I1);   /* I1 again: first wins */
    h_str_addz(&a, H_HDR4);                                                      /* a header mid-way */
    h_table_line(&a, 4, 4, H_ADDR_LO4, 1003, H_ADDR_LO4, 2000, 6, 0, 0);
    h_table_line(&a, 5, 4, H_ADDR_LO4, 1003, H_ADDR_LO4, 2000, 6, 0, 0);        /* the same tuple */
    h_table_line(&a, 6, 4, H_ADDR_LO4, 1003, H_ADDR_LO4, 2001, 6, 0, 0);
    /* A: tcp6 */
    h_str_addz(&a6, H_HDR6);
    h_table_line(&a6, 0, 6, H_ADDR_LO6, 1004, H_ADDR_ZERO, 0, 10, 0, t->I4);
    h_table_line(&a6, 1, 6, MAPPED, 1005, MAPPED, 1006, 1, 0, 777777);
    /* A: udp, udp6 */
    h_str_addz(&au, H_HDR4);
    h_table_line(&au, 0, 4, H_ADDR_LO4, 1007, H_ADDR_ZERO, 0, 7, 0, t->I5);
    h_str_addz(&au6, H_HDR6);
    /* B: I2 again, and `extra_b` TIME_WAIT lines */
    h_str_addz(&b, H_HDR4);
    h_table_line(&b, 0, 4, H_ADDR_LO4, 1001, H_ADDR_LO4, 1000, 1, 0, t->I2);
    for (i = 0; i < extra_b; i++)
        h_table_line(&b, 1 + i, 4, H_ADDR_LO4, (uint16_t)(3000 + i), H_ADDR_LO4, 80, 6, 0, 0);
    h_str_addz(&b6, H_HDR6);
    h_str_addz(&bu, H_HDR4);
    h_str_addz(&bu6, H_HDR6);
    write_table(&t->f, 900, "tcp", &a);
    write_table(&t->f, 900, "tcp6", &a6);
    write_table(&t->f, 900, "udp", &au);
    write_table(&t->f, 900, "udp6", &au6);
    write_table(&t->f, 950, "tcp", &b);
    write_table(&t->f, 950, "tcp6", &b6);
    write_table(&t->f, 950, "udp", &bu);
    write_table(&t->f, 950, "udp6", &bu6);
    t->sizeA = a.len + a6.len + au.len + au6.len;
    t->sizeB = b.len + b6.len + bu.len + bu6.len;
    h_str_free(&a);
    h_str_free(&a6);
    h_str_free(&au);
    h_str_free(&au6);
    h_str_free(&b);
    h_str_free(&b6);
    h_str_free(&bu);
    h_str_free(&bu6);
    return 0;
}

/* connections of w with these filters, checked OK, into r (emptied first). */
static void connections_into(procspy_walker *w, uint32_t protocols, uint32_t state_mask, struct h_conns *r)
{
    h_conns_free(r);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, protocols, state_mask, h_conn_cb, r, NULL), PROCSPY_OK);
}

static void check_owner(const struct h_conn *c, int32_t pid, int32_t fd, uint64_t netns,
                        const char *name, uint64_t start)
{
    if (!CHECK(c != NULL) || !CHECK(c->has_owner))
        return;
    CHECK_EQ(c->owner.pid, pid);
    CHECK_EQ(c->owner.fd, fd);
    CHECK_EQ(c->owner.netns, netns);
    CHECK_EQ(c->owner.start_time, start);
    CHECK_MEM(c->owner_name, c->owner.name_len, name, strlen(name));
    CHECK(c->owner_nul_ok);
}

void test_fake_conn_join(void)
{
    struct join_tree t;
    struct h_conns r = {0};
    procspy_walk_stats st;
    procspy_walker *w;
    const struct h_conn *c;
    size_t n, i, inA = 0, inB = 0;
    const uint32_t both = PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP;
    REQUIRE(build_join_tree(&t, 0) == 0);
    w = fake_text_walker(&t.f);
    REQUIRE(w != NULL);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, both, PROCSPY_STATES_ALL, h_conn_cb, &r, &st), PROCSPY_OK);
    for (i = 0; i < r.n; i++) {
        inA += r.v[i].c.netns == t.nsA;
        inB += r.v[i].c.netns == t.nsB;
    }
    CHECK_EQ(inA, 8);
    CHECK_EQ(inB, 1);
    CHECK_EQ(r.n, 9);
    CHECK_CONTIGUOUS(r.v, r.n, c.netns);
    /* I1: LISTEN (the first reading), held by 900 (fds 4, 9) and 901 (fd 7): 900's fd 4 */
    c = h_conns_find(&r, t.nsA, t.I1, &n);
    CHECK_EQ(n, 1);
    if (CHECK(c != NULL)) {
        CHECK_EQ(c->c.state, PROCSPY_STATE_LISTEN);
        CHECK_EQ(c->c.local_port, 1000);
        CHECK_EQ(c->c.uid, 1234);
        CHECK_EQ(c->c.family, 4);
        CHECK_EQ(c->c.protocol, PROCSPY_PROTO_TCP);
        CHECK_MEM(c->c.local_addr, 16, H_ADDR_LO4, 16);
        CHECK_MEM(c->c.remote_addr, 16, H_ADDR_ZERO, 16);
        check_owner(c, 900, 4, t.nsA, "holder-a", 5000);
    }
    /* I2 in A's table, held only by 950 in B: owner 950 with netns B */
    c = h_conns_find(&r, t.nsA, t.I2, &n);
    CHECK_EQ(n, 1);
    if (CHECK(c != NULL)) {
        CHECK_EQ(c->c.state, PROCSPY_STATE_ESTABLISHED);
        CHECK_EQ(c->c.remote_port, 1000);
        CHECK_MEM(c->c.remote_addr, 16, H_ADDR_LO4, 16);
        check_owner(c, 950, 6, t.nsB, "holder-(c)", 5002);
    }
    /* and in B's own table */
    c = h_conns_find(&r, t.nsB, t.I2, &n);
    CHECK_EQ(n, 1);
    check_owner(c, 950, 6, t.nsB, "holder-(c)", 5002);
    /* nobody holds 12345 */
    c = h_conns_find(&r, t.nsA, 12345, &n);
    CHECK_EQ(n, 1);
    if (CHECK(c != NULL))
        CHECK(!c->has_owner);
    /* TIME_WAIT, inode 0: two distinct tuples, the repeated one once */
    h_conns_find(&r, t.nsA, 0, &n);
    CHECK_EQ(n, 2);
    c = h_conns_by_port(&r, t.nsA, 1003, 2000, 0);
    if (CHECK(c != NULL)) {
        CHECK_EQ(c->c.state, PROCSPY_STATE_TIME_WAIT);
        CHECK(!c->has_owner);
    }
    CHECK(h_conns_by_port(&r, t.nsA, 1003, 2001, 0) != NULL);
    /* v6 listener, owner 900 fd 5 */
    c = h_conns_find(&r, t.nsA, t.I4, &n);
    CHECK_EQ(n, 1);
    if (CHECK(c != NULL)) {
        CHECK_EQ(c->c.family, 6);
        CHECK_MEM(c->c.local_addr, 16, H_ADDR_LO6, 16);
        CHECK_EQ(c->c.local_port, 1004);
        check_owner(c, 900, 5, t.nsA, "holder-a", 5000);
    }
    /* v4-mapped in tcp6 stays family 6 */
    c = h_conns_find(&r, t.nsA, 777777, &n);
    CHECK_EQ(n, 1);
    if (CHECK(c != NULL)) {
        CHECK_EQ(c->c.family, 6);
        CHECK_MEM(c->c.local_addr, 16, MAPPED, 16);
        CHECK_MEM(c->c.remote_addr, 16, MAPPED, 16);
        CHECK_EQ(c->c.remote_port, 1006);
        CHECK(!c->has_owner);
    }
    /* UDP */
    c = h_conns_find(&r, t.nsA, t.I5, &n);
    CHECK_EQ(n, 1);
    if (CHECK(c != NULL)) {
        CHECK_EQ(c->c.protocol, PROCSPY_PROTO_UDP);
        CHECK_EQ(c->c.state, PROCSPY_STATE_CLOSE);
        check_owner(c, 901, 3, t.nsA, "holder b", 5001);
    }
    CHECK_EQ(st.namespaces, 2);
    CHECK_EQ(st.processes, 3);
    CHECK_EQ(st.sockets, 6);
    CHECK_EQ(st.fds, 6);
    CHECK_EQ(st.bytes_needed, t.sizeA > t.sizeB ? t.sizeA : t.sizeB);
    CHECK_EQ(st.bytes_written, st.bytes_needed);
    h_conns_free(&r);

    /* filters over the same tables */
    connections_into(w, both, PROCSPY_STATES_CONNECTED, &r);
    /* I1's second line is ESTABLISHED but its first reading (LISTEN) decides: not delivered */
    CHECK(h_conns_find(&r, t.nsA, t.I1, NULL) == NULL);
    CHECK(h_conns_find(&r, t.nsA, t.I2, NULL) != NULL);
    CHECK(h_conns_find(&r, t.nsA, 777777, NULL) != NULL);
    CHECK(h_conns_find(&r, t.nsB, t.I2, NULL) != NULL);
    CHECK_EQ(r.n, 3);
    connections_into(w, both, PROCSPY_STATES_LISTEN, &r);
    CHECK_EQ(r.n, 3);
    for (i = 0; i < r.n; i++)
        CHECK_EQ(r.v[i].c.state, PROCSPY_STATE_LISTEN);
    connections_into(w, both, 1u << PROCSPY_STATE_TIME_WAIT, &r);
    CHECK_EQ(r.n, 2);
    connections_into(w, PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL, &r);
    CHECK_EQ(r.n, 1);
    if (r.n == 1)
        CHECK_EQ(r.v[0].c.inode, t.I5);
    connections_into(w, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, &r);
    CHECK_EQ(r.n, 8);
    for (i = 0; i < r.n; i++)
        CHECK_EQ(r.v[i].c.protocol, PROCSPY_PROTO_TCP);
    h_conns_free(&r);
    procspy_walker_free(w);
    h_fake_cleanup(&t.f);
}

/* A caller buffer that fits A's tables but not B's: B skipped whole, A delivered. */
void test_fake_conn_buffer_too_small(void)
{
    struct join_tree t;
    struct h_conns r = {0};
    procspy_walk_stats st;
    procspy_walker *w;
    uint8_t *buf;
    size_t i, inA, inB;
    const uint32_t both = PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP;
    REQUIRE(build_join_tree(&t, 20) == 0);
    REQUIRE(t.sizeB > t.sizeA);
    w = fake_text_walker(&t.f);
    REQUIRE(w != NULL);
    buf = malloc(t.sizeB + 1);
    {
        size_t caps[5];
        int k;
        caps[0] = t.sizeA;          /* A fits exactly, B not */
        caps[1] = t.sizeB - 1;      /* A fits, B not */
        caps[2] = t.sizeA - 1;      /* nothing fits */
        caps[3] = t.sizeB;          /* everything fits exactly */
        caps[4] = t.sizeB + 1;
        for (k = 0; k < 5; k++) {
            procspy_status want = caps[k] >= t.sizeB ? PROCSPY_OK : PROCSPY_BUFFER_TOO_SMALL;
            h_conns_free(&r);
            memset(&st, 0xAB, sizeof st);
            if (!CHECK_STATUS(procspy_walker_connections(w, buf, caps[k], both, PROCSPY_STATES_ALL, h_conn_cb, &r, &st),
                              want))
                printf("      (cap %zu, A %zu, B %zu)\n", caps[k], t.sizeA, t.sizeB);
            inA = inB = 0;
            for (i = 0; i < r.n; i++) {
                inA += r.v[i].c.netns == t.nsA;
                inB += r.v[i].c.netns == t.nsB;
            }
            CHECK_EQ(inA, caps[k] >= t.sizeA ? 8 : 0);
            CHECK_EQ(inB, caps[k] >= t.sizeB ? 21 : 0);
            CHECK_EQ(st.bytes_needed, t.sizeB);
            CHECK_EQ(st.bytes_written, caps[k] >= t.sizeB ? t.sizeB : caps[k] >= t.sizeA ? t.sizeA : 0);
            CHECK_EQ(st.namespaces, 2);
            CHECK_EQ(st.sockets, 6);
            if (want == PROCSPY_BUFFER_TOO_SMALL)
                CHECK(strstr(h_last_error(), "procspy_walker_connections") != NULL);
        }
    }
    /* cap 1 with A and B: nothing, TOO_SMALL */
    h_conns_free(&r);
    CHECK_STATUS(procspy_walker_connections(w, buf, 1, both, PROCSPY_STATES_ALL, h_conn_cb, &r, &st),
                 PROCSPY_BUFFER_TOO_SMALL);
    CHECK_EQ(r.n, 0);
    /* the walker's own buffer: all of it */
    h_conns_free(&r);
    CHECK_STATUS(procspy_walker_connections(w, buf, 0, both, PROCSPY_STATES_ALL, h_conn_cb, &r, &st), PROCSPY_OK);
    CHECK_EQ(r.n, 29);
    CHECK_EQ(st.bytes_written, t.sizeB);
    CHECK_EQ(st.bytes_needed, t.sizeB);
    free(buf);
    h_conns_free(&r);
    procspy_walker_free(w);
    h_fake_cleanup(&t.f);
}
