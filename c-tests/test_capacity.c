/*
 * procspy_walker_walk's buffer contract on a quiescent fake tree of two
 * namespaces (four table files): cap 0 counts only; exact fits; smaller
 * keeps a prefix of whole files (never a later small file after one that
 * did not fit) and still delivers every socket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

struct cap_tree {
    struct h_fake f;
    struct h_str file[4];   /* in walk order: first ns tcp, tcp6, second ns tcp, tcp6 */
    size_t total;
};

static int build_cap_tree(struct cap_tree *t)
{
    const struct h_fixture *fx = h_fixture();
    const struct h_child *first, *second;
    int i, pids[2] = {800, 801};
    const struct h_child *cs[2];
    if (!fx)
        return -1;
    memset(t, 0, sizeof *t);
    if (h_fake_init(&t->f) != 0)
        return -1;
    first = fx->child[0].netns < fx->child[1].netns ? &fx->child[0] : &fx->child[1];
    second = first == &fx->child[0] ? &fx->child[1] : &fx->child[0];
    cs[0] = first;
    cs[1] = second;
    /* first: 3 v4 lines, 2 v6 lines; second: 6 v4 lines (large), tcp6 header only (small) */
    h_str_addz(&t->file[0], H_HDR4);
    for (i = 0; i < 3; i++)
        h_table_line(&t->file[0], i, 4, H_ADDR_LO4, (uint16_t)(100 + i), H_ADDR_ZERO, 0, 10, 0, 10 + (uint64_t)i);
    h_str_addz(&t->file[1], H_HDR6);
    for (i = 0; i < 2; i++)
        h_table_line(&t->file[1], i, 6, H_ADDR_LO6, (uint16_t)(200 + i), H_ADDR_ZERO, 0, 10, 0, 20 + (uint64_t)i);
    h_str_addz(&t->file[2], H_HDR4);
    for (i = 0; i < 6; i++)
        h_table_line(&t->file[2], i, 4, H_ADDR_LO4, (uint16_t)(300 + i), H_ADDR_LO4, 80, 1, 0, 30 + (uint64_t)i);
    h_str_addz(&t->file[3], H_HDR6);
    for (i = 0; i < 2; i++) {
        char rel[64];
        h_fake_pid(&t->f, pids[i], "cap", 3, 1, 1);
        h_fake_ns(&t->f, pids[i], cs[i]->pid);
        h_fake_fd_sock(&t->f, pids[i], 3, cs[i]->pid, h_child_sock(cs[i], H_LISTEN4)->fd);
        h_fake_fd_sock(&t->f, pids[i], 4, cs[i]->pid, h_child_sock(cs[i], H_UDP6C)->fd);
        snprintf(rel, sizeof rel, "%d/net/tcp", pids[i]);
        h_fake_write(&t->f, rel, t->file[2 * i].p, t->file[2 * i].len);
        snprintf(rel, sizeof rel, "%d/net/tcp6", pids[i]);
        h_fake_write(&t->f, rel, t->file[2 * i + 1].p, t->file[2 * i + 1].len);
    }
    for (i = 0; i < 4; i++)
        t->total += t->file[i].len;
    return 0;
}

static void free_cap_tree(struct cap_tree *t)
{
    int i;
    for (i = 0; i < 4; i++)
        h_str_free(&t->file[i]);
    h_fake_cleanup(&t->f);
}

/* Walks with `cap`; checks status, bytes, that the buffer is the first `files` files, all 4 sockets. */
static void walk_cap(const char *file, int line, procspy_walker *w, const struct cap_tree *t,
                     size_t cap, procspy_status want, int files)
{
    struct h_recs recs = {0};
    procspy_walk_stats st;
    uint8_t *buf = malloc(cap + 1);
    size_t want_len = 0, off = 0;
    int i, fails = h_test_failures;
    memset(buf, 0x5A, cap + 1);
    memset(&st, 0xAB, sizeof st);
    CHECK_STATUS(procspy_walker_walk(w, buf, cap, h_rec_cb, &recs, &st), want);
    for (i = 0; i < files; i++)
        want_len += t->file[i].len;
    CHECK_EQ(st.bytes_written, want_len);
    CHECK_EQ(st.bytes_needed, t->total);
    for (i = 0; i < files; i++) {
        CHECK_MEM(buf + off, t->file[i].len, t->file[i].p, t->file[i].len);
        off += t->file[i].len;
    }
    CHECK_EQ(buf[cap], 0x5A); /* nothing past cap */
    CHECK_EQ(recs.n, 4);      /* every socket, fitting or not */
    CHECK_EQ(st.sockets, 4);
    CHECK_EQ(st.namespaces, 2);
    CHECK_EQ(st.processes, 2);
    if (h_test_failures != fails)
        printf("      (in walk_cap from %s:%d, cap %zu, file sizes %zu %zu %zu %zu)\n", file, line, cap,
               t->file[0].len, t->file[1].len, t->file[2].len, t->file[3].len);
    h_recs_free(&recs);
    free(buf);
}

#define WALK_CAP(w, t, cap, want, files) walk_cap(__FILE__, __LINE__, w, t, cap, want, files)

void test_walk_capacities(void)
{
    struct cap_tree t;
    procspy_walker *w = NULL;
    struct h_recs recs = {0};
    procspy_walk_stats st;
    uint8_t sentinel[8];
    size_t n, f0, f1, f2, f3;
    REQUIRE(build_cap_tree(&t) == 0);
    f0 = t.file[0].len;
    f1 = t.file[1].len;
    f2 = t.file[2].len;
    f3 = t.file[3].len;
    REQUIRE(f3 < f2);
    w = NULL;
    REQUIRE_STATUS(procspy_walker_new(t.f.root, &w), PROCSPY_OK);
    /* cap 0: count only, whatever buf is */
    memset(sentinel, 0x5A, sizeof sentinel);
    CHECK_STATUS(procspy_walker_walk(w, sentinel, 0, h_rec_cb, &recs, &st), PROCSPY_OK);
    CHECK_EQ(st.bytes_written, 0);
    CHECK_EQ(st.bytes_needed, t.total);
    CHECK_EQ(sentinel[0], 0x5A);
    CHECK_EQ(recs.n, 4);
    h_recs_free(&recs);
    n = (size_t)st.bytes_needed;
    CHECK_STATUS(procspy_walker_walk(w, NULL, 0, h_rec_cb, &recs, &st), PROCSPY_OK);
    CHECK_EQ(st.bytes_needed, n);
    h_recs_free(&recs);

    WALK_CAP(w, &t, n, PROCSPY_OK, 4);                            /* exact */
    WALK_CAP(w, &t, n + 1, PROCSPY_OK, 4);                        /* exact + 1 */
    WALK_CAP(w, &t, n - 1, PROCSPY_BUFFER_TOO_SMALL, 3);          /* the last file no longer fits */
    WALK_CAP(w, &t, 1, PROCSPY_BUFFER_TOO_SMALL, 0);
    WALK_CAP(w, &t, f0 - 1, PROCSPY_BUFFER_TOO_SMALL, 0);
    WALK_CAP(w, &t, f0, PROCSPY_BUFFER_TOO_SMALL, 1);
    WALK_CAP(w, &t, f0 + f1, PROCSPY_BUFFER_TOO_SMALL, 2);
    /* room for the small fourth file but not the large third: it does not follow */
    WALK_CAP(w, &t, f0 + f1 + f3, PROCSPY_BUFFER_TOO_SMALL, 2);
    WALK_CAP(w, &t, f0 + f1 + f2, PROCSPY_BUFFER_TOO_SMALL, 3);
    WALK_CAP(w, &t, 1 << 20, PROCSPY_OK, 4);
    /* a successful call leaves the last failure's message: the last TOO_SMALL's */
    CHECK(strncmp(h_last_error(), "procspy_walker_walk", 19) == 0);
    procspy_walker_free(w);
    free_cap_tree(&t);
}
