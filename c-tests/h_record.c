/*
 * Recorders: callbacks that keep or count what a walk delivers, and lookups over what they kept (see harness.h).
 */

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"

/* ---- recorders --------------------------------------------------------- */

/* `v` with room for one more element, `n` of `*cap` being used. */
static void *h_grow(void *v, size_t *cap, size_t n, size_t size)
{
    if (n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        v = realloc(v, c * size);
        if (!v)
            abort();
        *cap = c;
    }
    return v;
}

/* A new, zeroed last element of the vector r->v (of r->n, room for r->cap). */
#define H_PUSH(r) ((r)->v = h_grow((r)->v, &(r)->cap, (r)->n, sizeof *(r)->v), \
                   memset(&(r)->v[(r)->n], 0, sizeof *(r)->v), &(r)->v[(r)->n++])

/* A malloc'd copy of the name_len + 1 bytes at name ("" for none); *nul_ok
 * set where they end in their only NUL. */
static char *h_copy_name(const char *name, size_t name_len, int *nul_ok)
{
    char *copy = malloc(name_len + 1);
    if (!copy)
        abort();
    if (name) {
        memcpy(copy, name, name_len + 1);
        *nul_ok = name[name_len] == 0 && strlen(name) == name_len;
    } else {
        copy[0] = 0;
    }
    return copy;
}

/* What a recorder returns from its n-th call: it stops stop_at_walker at
 * call stop_at, and returns 1 (abort) at call abort_at. */
static int h_recorded(size_t n, const procspy_walker *stop_at_walker, size_t stop_at, size_t abort_at)
{
    if (stop_at_walker && n == stop_at)
        procspy_walker_stop(stop_at_walker);
    return abort_at && n == abort_at;
}

/* Frees the n records of `size` bytes at v, each with a malloc'd name at
 * offset name_at, and v. */
static void h_free_named(void *v, size_t n, size_t size, size_t name_at)
{
    size_t i;
    char *name;
    for (i = 0; i < n; i++) {
        memcpy(&name, (char *)v + i * size + name_at, sizeof name);
        free(name);
    }
    free(v);
}

int h_rec_cb(void *userdata, const procspy_socket *s)
{
    struct h_recs *r = userdata;
    struct h_rec *rec = H_PUSH(r);
    rec->inode = s->inode;
    rec->netns = s->netns;
    rec->start_time = s->start_time;
    rec->pid = s->pid;
    rec->fd = s->fd;
    rec->name_len = s->name_len;
    rec->name = h_copy_name(s->name, s->name_len, &rec->name_nul_ok);
    return h_recorded(r->n, r->stop_at_walker, r->stop_at, r->abort_at);
}

void h_recs_free(struct h_recs *r)
{
    h_free_named(r->v, r->n, sizeof *r->v, offsetof(struct h_rec, name));
    memset(r, 0, sizeof *r);
}

const struct h_rec *h_recs_find(const struct h_recs *r, int32_t pid, int32_t fd)
{
    size_t i;
    for (i = 0; i < r->n; i++)
        if (r->v[i].pid == pid && r->v[i].fd == fd)
            return &r->v[i];
    return NULL;
}

size_t h_recs_count_pid(const struct h_recs *r, int32_t pid)
{
    size_t i, n = 0;
    for (i = 0; i < r->n; i++)
        n += r->v[i].pid == pid;
    return n;
}

int h_check_contiguous_netns(const char *file, int line, const uint64_t *netns, size_t n, size_t stride)
{
    /* netns points at the first record's field; records are `stride` bytes apart. */
    size_t i, j;
    const char *base = (const char *)netns;
    for (i = 1; i < n; i++) {
        uint64_t prev, cur;
        memcpy(&prev, base + (i - 1) * stride, 8);
        memcpy(&cur, base + i * stride, 8);
        if (prev == cur)
            continue;
        /* A namespace that ended at i-1 must not come back later. */
        for (j = i; j < n; j++) {
            uint64_t later;
            memcpy(&later, base + j * stride, 8);
            if (later == prev) {
                h_fail(file, line, "records of netns %llu are not contiguous (at %zu and again at %zu)",
                       (unsigned long long)prev, i - 1, j);
                return 0;
            }
        }
    }
    return 1;
}

int h_conn_cb(void *userdata, const procspy_connection *c)
{
    struct h_conns *r = userdata;
    struct h_conn *rec = H_PUSH(r);
    rec->c = *c;
    rec->c.owner = NULL;
    if (c->owner) {
        rec->has_owner = 1;
        rec->owner = *c->owner;
        rec->owner_name = h_copy_name(c->owner->name, c->owner->name_len, &rec->owner_nul_ok);
        rec->owner.name = NULL;
    }
    return h_recorded(r->n, r->stop_at_walker, r->stop_at, r->abort_at);
}

void h_conns_free(struct h_conns *r)
{
    h_free_named(r->v, r->n, sizeof *r->v, offsetof(struct h_conn, owner_name));
    memset(r, 0, sizeof *r);
}

const struct h_conn *h_conns_find(const struct h_conns *r, uint64_t netns, uint64_t inode, size_t *count)
{
    size_t i, n = 0;
    const struct h_conn *found = NULL;
    for (i = 0; i < r->n; i++) {
        if (r->v[i].c.netns == netns && r->v[i].c.inode == inode) {
            if (!found)
                found = &r->v[i];
            n++;
        }
    }
    if (count)
        *count = n;
    return found;
}

const struct h_conn *h_conns_by_port(const struct h_conns *r, uint64_t netns, uint16_t lport, uint16_t rport,
                                     uint8_t state)
{
    size_t i;
    for (i = 0; i < r->n; i++) {
        const procspy_connection *c = &r->v[i].c;
        if ((!netns || c->netns == netns) && c->local_port == lport && c->remote_port == rport &&
            (!state || c->state == state))
            return &r->v[i];
    }
    return NULL;
}

procspy_status h_walk_all(procspy_walker *w, struct h_recs *recs, uint8_t **buf,
                          size_t *len, procspy_walk_stats *stats)
{
    size_t cap = 256 * 1024;
    int attempt;
    procspy_status st = PROCSPY_PANIC;
    *buf = NULL;
    *len = 0;
    for (attempt = 0; attempt < 6; attempt++) {
        uint8_t *b = malloc(cap);
        if (!b)
            abort();
        h_recs_free(recs);
        st = procspy_walker_walk(w, b, cap, h_rec_cb, recs, stats);
        if (st == PROCSPY_BUFFER_TOO_SMALL && stats->bytes_needed > cap) {
            cap = (size_t)stats->bytes_needed + 64 * 1024;
            free(b);
            continue;
        }
        *buf = b;
        *len = (size_t)stats->bytes_written;
        break;
    }
    return st;
}


int h_count_cb(void *userdata, const procspy_socket *s)
{
    (void)s;
    ++*(int *)userdata;
    return 0;
}

int h_count_conn_cb(void *userdata, const procspy_connection *c)
{
    (void)c;
    ++*(int *)userdata;
    return 0;
}

/* Two deliveries of one socket say the same of it and of its owner. */
void h_same_conn(const struct h_conn *a, const struct h_conn *b)
{
    CHECK_EQ(a->c.protocol, b->c.protocol);
    CHECK_EQ(a->c.family, b->c.family);
    CHECK_EQ(a->c.state, b->c.state);
    CHECK_MEM(a->c.local_addr, 16, b->c.local_addr, 16);
    CHECK_MEM(a->c.remote_addr, 16, b->c.remote_addr, 16);
    CHECK_EQ(a->c.local_port, b->c.local_port);
    CHECK_EQ(a->c.remote_port, b->c.remote_port);
    CHECK_EQ(a->c.uid, b->c.uid);
    CHECK_EQ(a->has_owner, b->has_owner);
    if (!a->has_owner || !b->has_owner)
        return;
    CHECK_EQ(a->owner.pid, b->owner.pid);
    CHECK_EQ(a->owner.fd, b->owner.fd);
    CHECK_EQ(a->owner.inode, b->owner.inode);
    CHECK_EQ(a->owner.netns, b->owner.netns);
    CHECK_EQ(a->owner.start_time, b->owner.start_time);
    CHECK(a->owner_name && b->owner_name && strcmp(a->owner_name, b->owner_name) == 0);
}
