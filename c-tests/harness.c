/*
 * The harness's framework and shared helpers (see harness.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

int h_test_failures;
int h_under_valgrind;

/* ---- the framework ----------------------------------------------------- */

void h_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    h_test_failures++;
    printf("    %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

int h_check(const char *file, int line, const char *expr, int ok)
{
    if (!ok)
        h_fail(file, line, "CHECK(%s) failed", expr);
    return ok;
}

int h_check_eq(const char *file, int line, const char *a_expr, const char *b_expr,
               long long a, long long b)
{
    if (a == b)
        return 1;
    h_fail(file, line, "CHECK_EQ(%s, %s) failed: %lld (0x%llx) != %lld (0x%llx)",
           a_expr, b_expr, a, (unsigned long long)a, b, (unsigned long long)b);
    return 0;
}

int h_check_status(const char *file, int line, const char *expr, int got, int want)
{
    if (got == want)
        return 1;
    h_fail(file, line, "%s returned %d (%s), want %d (%s); last error: \"%s\"", expr, got,
           procspy_status_str((procspy_status)got), want,
           procspy_status_str((procspy_status)want), h_last_error());
    return 0;
}

static void print_escaped(const void *p, size_t len)
{
    const unsigned char *b = p;
    size_t i, shown = len < 160 ? len : 160;
    putchar('"');
    for (i = 0; i < shown; i++) {
        if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '"' && b[i] != '\\')
            putchar(b[i]);
        else
            printf("\\x%02x", b[i]);
    }
    putchar('"');
    if (shown < len)
        printf("...(%zu bytes)", len);
}

int h_check_mem(const char *file, int line, const char *a_expr, const char *b_expr,
                const void *a, size_t a_len, const void *b, size_t b_len)
{
    size_t i;
    if (a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0))
        return 1;
    for (i = 0; i < a_len && i < b_len; i++)
        if (((const unsigned char *)a)[i] != ((const unsigned char *)b)[i])
            break;
    h_fail(file, line, "CHECK_MEM(%s, %s) failed: lengths %zu vs %zu, first difference at %zu",
           a_expr, b_expr, a_len, b_len, i);
    printf("      got  ");
    print_escaped(a, a_len);
    printf("\n      want ");
    print_escaped(b, b_len);
    printf("\n");
    return 0;
}

/* ---- small utilities --------------------------------------------------- */

uint64_t h_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void h_sleep_ms(unsigned ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

char *h_read_file(const char *path, size_t *len)
{
    return h_read_files(&path, 1, len);
}

char *h_read_files(const char *const *paths, size_t n, size_t *len)
{
    size_t cap = 4096, used = 0, i;
    char *buf = malloc(cap + 1);
    if (!buf)
        return NULL;
    for (i = 0; i < n; i++) {
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            free(buf);
            return NULL;
        }
        for (;;) {
            ssize_t r;
            if (used == cap) {
                char *nb = realloc(buf, cap * 2 + 1);
                if (!nb) {
                    close(fd);
                    free(buf);
                    return NULL;
                }
                buf = nb;
                cap *= 2;
            }
            r = read(fd, buf + used, cap - used);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                close(fd);
                free(buf);
                return NULL;
            }
            if (r == 0)
                break;
            used += (size_t)r;
        }
        close(fd);
    }
    buf[used] = 0;
    *len = used;
    return buf;
}

uint64_t h_stat_ino(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    return (uint64_t)st.st_ino;
}

uint64_t h_proc_start_time(pid_t pid)
{
    char path[64], *text, *p, *tok;
    size_t len;
    int field = 2;
    uint64_t v = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    text = h_read_file(path, &len);
    if (!text)
        return 0;
    p = strrchr(text, ')');
    if (p) {
        char *save = NULL;
        for (tok = strtok_r(p + 1, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
            if (++field == 22) {
                v = strtoull(tok, NULL, 10);
                break;
            }
        }
    }
    free(text);
    return v;
}

uint64_t h_proc_netns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
    return h_stat_ino(path);
}

const void *h_memmem(const void *hay, size_t hay_len, const void *needle, size_t needle_len)
{
    if (!hay || !needle)
        return NULL;
    return memmem(hay, hay_len, needle, needle_len);
}

int h_kernel_has_bpf_owner_scan(void)
{
    static const char *const names[] = {"bpf_iter_task_file", "BPF_FUNC_sock_from_file",
                                        "BPF_FUNC_probe_read_kernel", "BPF_FUNC_seq_write"};
    size_t len = 0, i;
    char *btf = h_read_file("/sys/kernel/btf/vmlinux", &len);
    int all = btf != NULL;
    for (i = 0; all && i < sizeof names / sizeof names[0]; i++) {
        char needle[64];
        size_t n = (size_t)snprintf(needle, sizeof needle, "%c%s", 0, names[i]) + 1; /* with both NULs */
        all = h_memmem(btf, len, needle, n) != NULL;
    }
    free(btf);
    return all;
}

const char *h_last_error(void)
{
    static char buf[1024];
    (void)procspy_last_error(buf, sizeof buf);
    return buf;
}

/* ---- strings and table lines ------------------------------------------ */

const uint8_t H_ADDR_ZERO[16] = {0};
const uint8_t H_ADDR_LO4[16] = {127, 0, 0, 1};
const uint8_t H_ADDR_LO6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

void h_str_add(struct h_str *s, const void *bytes, size_t len)
{
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        char *p;
        while (cap < s->len + len + 1)
            cap *= 2;
        p = realloc(s->p, cap);
        if (!p)
            abort();
        s->p = p;
        s->cap = cap;
    }
    if (len)
        memcpy(s->p + s->len, bytes, len);
    s->len += len;
    s->p[s->len] = 0;
}

void h_str_addz(struct h_str *s, const char *z)
{
    h_str_add(s, z, strlen(z));
}

void h_str_free(struct h_str *s)
{
    free(s->p);
    s->p = NULL;
    s->len = s->cap = 0;
}

static void addr_hex(char *out, const uint8_t *addr, int words)
{
    int i;
    for (i = 0; i < words; i++) {
        uint32_t w;
        memcpy(&w, addr + 4 * i, 4);
        sprintf(out + 8 * i, "%08X", w);
    }
}

void h_table_line(struct h_str *s, int sl, int family,
                  const uint8_t local[16], uint16_t lport,
                  const uint8_t remote[16], uint16_t rport,
                  int state, uint32_t uid, uint64_t inode)
{
    char l[40], r[40], line[300];
    int words = family == 6 ? 4 : 1;
    addr_hex(l, local, words);
    addr_hex(r, remote, words);
    snprintf(line, sizeof line,
             "%4d: %s:%04X %s:%04X %02X 00000000:00000000 00:00000000 00000000 %5u        0 %llu 1 0000000000000000 100 0 0 10 0\n",
             sl, l, lport, r, rport, state, uid, (unsigned long long)inode);
    h_str_addz(s, line);
}

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

int h_rec_cb(void *userdata, const procspy_socket *s)
{
    struct h_recs *r = userdata;
    struct h_rec *rec;
    r->v = h_grow(r->v, &r->cap, r->n, sizeof *r->v);
    rec = &r->v[r->n++];
    memset(rec, 0, sizeof *rec);
    rec->inode = s->inode;
    rec->netns = s->netns;
    rec->start_time = s->start_time;
    rec->pid = s->pid;
    rec->fd = s->fd;
    rec->name_len = s->name_len;
    rec->name = malloc(s->name_len + 1);
    if (!rec->name)
        abort();
    if (s->name) {
        memcpy(rec->name, s->name, s->name_len + 1);
        rec->name_nul_ok = s->name[s->name_len] == 0 && strlen(s->name) == s->name_len;
    } else {
        rec->name[0] = 0;
    }
    if (r->stop_at_walker && r->n == r->stop_at)
        procspy_walker_stop(r->stop_at_walker);
    if (r->abort_at && r->n == r->abort_at)
        return 1;
    return 0;
}

void h_recs_free(struct h_recs *r)
{
    size_t i;
    for (i = 0; i < r->n; i++)
        free(r->v[i].name);
    free(r->v);
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
    struct h_conn *rec;
    r->v = h_grow(r->v, &r->cap, r->n, sizeof *r->v);
    rec = &r->v[r->n++];
    memset(rec, 0, sizeof *rec);
    rec->c = *c;
    rec->c.owner = NULL;
    if (c->owner) {
        rec->has_owner = 1;
        rec->owner = *c->owner;
        rec->owner_name = malloc(c->owner->name_len + 1);
        if (!rec->owner_name)
            abort();
        if (c->owner->name) {
            memcpy(rec->owner_name, c->owner->name, c->owner->name_len + 1);
            rec->owner_nul_ok = c->owner->name[c->owner->name_len] == 0 &&
                                strlen(c->owner->name) == c->owner->name_len;
        } else {
            rec->owner_name[0] = 0;
        }
        rec->owner.name = NULL;
    }
    if (r->stop_at_walker && r->n == r->stop_at)
        procspy_walker_stop(r->stop_at_walker);
    if (r->abort_at && r->n == r->abort_at)
        return 1;
    return 0;
}

void h_conns_free(struct h_conns *r)
{
    size_t i;
    for (i = 0; i < r->n; i++)
        free(r->v[i].owner_name);
    free(r->v);
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

/* ---- the namespace fixture --------------------------------------------- */

struct h_report {
    int ok;
    char err[200];
    struct h_child c;
};

static struct h_fixture fixture;
static int fixture_state;          /* 0 not tried, 1 up, -1 failed */
static int fixture_ctl_w = -1;

static void child_fail(struct h_report *rep, int rep_w, const char *what)
{
    rep->ok = 0;
    snprintf(rep->err, sizeof rep->err, "child: %s: %s", what, strerror(errno));
    if (write(rep_w, rep, sizeof *rep) < 0) {
    }
    _exit(1);
}

static int add_sock(struct h_child *c, int kind, int fd)
{
    struct stat st;
    struct h_sock *s;
    int type = 0, domain = 0, acc = 0;
    socklen_t sl = sizeof type;
    struct sockaddr_storage ss;
    socklen_t alen;
    if (c->nsock >= H_MAX_SOCKS)
        return -1;
    if (fstat(fd, &st) != 0)
        return -1;
    s = &c->socks[c->nsock++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->fd = fd;
    s->inode = (uint64_t)st.st_ino;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl);
    sl = sizeof domain;
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &sl);
    sl = sizeof acc;
    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl);
    s->protocol = type == SOCK_STREAM ? PROCSPY_PROTO_TCP : PROCSPY_PROTO_UDP;
    s->family = domain == AF_INET6 ? 6 : 4;
    alen = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &alen) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            memcpy(s->local, &a->sin_addr, 4);
            s->lport = ntohs(a->sin_port);
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            memcpy(s->local, &a->sin6_addr, 16);
            s->lport = ntohs(a->sin6_port);
        }
    }
    alen = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &alen) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            memcpy(s->remote, &a->sin_addr, 4);
            s->rport = ntohs(a->sin_port);
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            memcpy(s->remote, &a->sin6_addr, 16);
            s->rport = ntohs(a->sin6_port);
        }
        s->state = PROCSPY_STATE_ESTABLISHED;
    } else {
        s->state = acc ? PROCSPY_STATE_LISTEN : PROCSPY_STATE_CLOSE;
    }
    return 0;
}

static void addr_of(struct sockaddr_storage *ss, socklen_t *len, int v6, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = htons(port);
        *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(port);
        *len = sizeof *a;
    }
}

/* A socket bound to the loopback address of its family (retrying while ::1 comes up). */
static int bound_socket(int v6, int type, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1, tries, fd = socket(v6 ? AF_INET6 : AF_INET, type, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (v6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    addr_of(&ss, &len, v6, port);
    for (tries = 0; tries < 200; tries++) {
        if (bind(fd, (struct sockaddr *)&ss, len) == 0)
            return fd;
        if (errno != EADDRNOTAVAIL)
            break;
        usleep(10000);
    }
    close(fd);
    return -1;
}

static int connect_to(int fd, int v6, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    addr_of(&ss, &len, v6, port);
    return connect(fd, (struct sockaddr *)&ss, len);
}

static void wait_for_eof(int fd)
{
    char b;
    for (;;) {
        ssize_t r = read(fd, &b, 1);
        if (r == 0 || (r < 0 && errno != EINTR))
            return;
    }
}

static void child_run(int idx, int ctl_r, int rep_w, pid_t parent)
{
    struct h_report rep;
    struct h_child *c = &rep.c;
    struct ifreq ifr;
    int s, l4, l6, fd, i;
    pid_t gc = 0;
    memset(&rep, 0, sizeof rep);
    c->port_base = (uint16_t)(41000 + 100 * idx);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    if (idx == 2) {
        /* Made in the harness's namespace, then carried across unshare. */
        fd = bound_socket(0, SOCK_DGRAM, 0);
        if (fd < 0 || add_sock(c, H_OUTER, fd) != 0)
            child_fail(&rep, rep_w, "outer socket");
    }
    if (unshare(CLONE_NEWNET) != 0)
        child_fail(&rep, rep_w, "unshare(CLONE_NEWNET)");
    s = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
        child_fail(&rep, rep_w, "SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
        child_fail(&rep, rep_w, "SIOCSIFFLAGS lo");
    close(s);
    if (idx == 1)
        snprintf(c->name, sizeof c->name, "%s", H_HOSTILE_NAME);
    else
        snprintf(c->name, sizeof c->name, "psns-child-%c", (char)('0' + idx));
    c->name_len = strlen(c->name);
    if (prctl(PR_SET_NAME, c->name) != 0)
        child_fail(&rep, rep_w, "PR_SET_NAME");

    l4 = bound_socket(0, SOCK_STREAM, (uint16_t)(c->port_base + 1));
    if (l4 < 0 || listen(l4, 16) != 0 || add_sock(c, H_LISTEN4, l4) != 0)
        child_fail(&rep, rep_w, "listen v4");
    l6 = bound_socket(1, SOCK_STREAM, (uint16_t)(c->port_base + 2));
    if (l6 < 0 || listen(l6, 16) != 0 || add_sock(c, H_LISTEN6, l6) != 0)
        child_fail(&rep, rep_w, "listen v6");
    for (i = 0; i < 2; i++) {
        int v6 = i == 1, cl, ac;
        cl = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
        if (cl < 0 || connect_to(cl, v6, (uint16_t)(c->port_base + 1 + i)) != 0)
            child_fail(&rep, rep_w, "connect");
        ac = accept(v6 ? l6 : l4, NULL, NULL);
        if (ac < 0)
            child_fail(&rep, rep_w, "accept");
        if (add_sock(c, v6 ? H_CLIENT6 : H_CLIENT4, cl) != 0 ||
            add_sock(c, v6 ? H_ACCEPT6 : H_ACCEPT4, ac) != 0)
            child_fail(&rep, rep_w, "fstat");
    }
    for (i = 0; i < 2; i++) {
        int v6 = i == 1;
        uint16_t p = (uint16_t)(c->port_base + 3 + 2 * i);
        int u = bound_socket(v6, SOCK_DGRAM, p);
        int uc = bound_socket(v6, SOCK_DGRAM, (uint16_t)(p + 1));
        if (u < 0 || uc < 0 || connect_to(uc, v6, p) != 0)
            child_fail(&rep, rep_w, "udp");
        if (add_sock(c, v6 ? H_UDP6 : H_UDP4, u) != 0 || add_sock(c, v6 ? H_UDP6C : H_UDP4C, uc) != 0)
            child_fail(&rep, rep_w, "fstat");
    }
    if (idx == 0) {
        fd = fcntl(l4, F_DUPFD, 100);
        if (fd < 0 || add_sock(c, H_DUP4, fd) != 0)
            child_fail(&rep, rep_w, "dup");
    }
    if (idx == 2) {
        for (i = 0; i < 24; i++) {
            fd = bound_socket(0, SOCK_DGRAM, 0);
            if (fd < 0 || add_sock(c, H_EXTRA, fd) != 0)
                child_fail(&rep, rep_w, "extra udp");
        }
    }
    if (idx == 0) {
        pid_t me = getpid();
        gc = fork();
        if (gc < 0)
            child_fail(&rep, rep_w, "fork grandchild");
        if (gc == 0) {
            close(rep_w);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != me)
                _exit(1);
            wait_for_eof(ctl_r);
            _exit(0);
        }
        c->grandchild = gc;
    }
    rep.ok = 1;
    {
        const char *p = (const char *)&rep;
        size_t left = sizeof rep;
        while (left) {
            ssize_t w = write(rep_w, p, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                _exit(1);
            p += w;
            left -= (size_t)w;
        }
    }
    close(rep_w);
    wait_for_eof(ctl_r);
    if (gc > 0)
        waitpid(gc, NULL, 0);
    _exit(0);
}

const struct h_fixture *h_fixture(void)
{
    int ctl[2], i;
    if (fixture_state == 1)
        return &fixture;
    if (fixture_state == -1) {
        h_fail(__FILE__, __LINE__, "the namespace fixture could not be set up (see above)");
        return NULL;
    }
    fixture_state = -1;
    memset(&fixture, 0, sizeof fixture);
    fixture.self_netns = h_stat_ino("/proc/self/ns/net");
    if (pipe(ctl) != 0) {
        h_fail(__FILE__, __LINE__, "pipe: %s", strerror(errno));
        return NULL;
    }
    fixture_ctl_w = ctl[1];
    fflush(stdout);
    fflush(stderr);
    for (i = 0; i < H_NCHILD; i++) {
        struct h_report rep;
        int rep_p[2];
        size_t got = 0;
        pid_t pid, parent = getpid();
        if (pipe(rep_p) != 0) {
            h_fail(__FILE__, __LINE__, "pipe: %s", strerror(errno));
            return NULL;
        }
        pid = fork();
        if (pid < 0) {
            h_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
            return NULL;
        }
        if (pid == 0) {
            close(ctl[1]);
            close(rep_p[0]);
            child_run(i, ctl[0], rep_p[1], parent);
        }
        close(rep_p[1]);
        memset(&rep, 0, sizeof rep);
        while (got < sizeof rep) {
            ssize_t r = read(rep_p[0], (char *)&rep + got, sizeof rep - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        close(rep_p[0]);
        fixture.child[i] = rep.c;
        fixture.child[i].pid = pid;
        fixture.nchild = i + 1;
        if (got != sizeof rep || !rep.ok) {
            h_fail(__FILE__, __LINE__, "namespace child %d failed: %s", i,
                   got == sizeof rep ? rep.err : "no report");
            return NULL;
        }
        fixture.child[i].netns = h_proc_netns(pid);
        fixture.child[i].start_time = h_proc_start_time(pid);
        if (rep.c.grandchild > 0)
            fixture.child[i].gc_start_time = h_proc_start_time(rep.c.grandchild);
    }
    close(ctl[0]);
    fixture_state = 1;
    return &fixture;
}

void h_fixture_teardown(void)
{
    int i;
    if (fixture_ctl_w >= 0)
        close(fixture_ctl_w);
    fixture_ctl_w = -1;
    for (i = 0; i < fixture.nchild; i++) {
        if (fixture.child[i].pid > 0) {
            int status;
            uint64_t t0 = h_now_ns();
            /* They leave at EOF; give them (and valgrind) time, then kill. */
            while (waitpid(fixture.child[i].pid, &status, WNOHANG) == 0) {
                if (h_now_ns() - t0 > 30000000000ull) {
                    kill(fixture.child[i].pid, SIGKILL);
                    waitpid(fixture.child[i].pid, &status, 0);
                    break;
                }
                h_sleep_ms(5);
            }
            fixture.child[i].pid = 0;
        }
    }
    fixture_state = 0;
}

int h_spawn_victim(pid_t *pid, uint64_t *netns, uint16_t port)
{
    int p[2];
    char b = 0;
    pid_t parent = getpid(), child;
    if (pipe(p) != 0)
        return -1;
    fflush(stdout);
    child = fork();
    if (child < 0)
        return -1;
    if (child == 0) {
        struct ifreq ifr;
        int s, l;
        close(p[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || unshare(CLONE_NEWNET) != 0)
            _exit(1);
        s = socket(AF_INET, SOCK_DGRAM, 0);
        memset(&ifr, 0, sizeof ifr);
        strcpy(ifr.ifr_name, "lo");
        if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
            _exit(1);
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
            _exit(1);
        close(s);
        prctl(PR_SET_NAME, "psns-victim");
        l = bound_socket(0, SOCK_STREAM, port);
        if (l < 0 || listen(l, 4) != 0)
            _exit(1);
        if (write(p[1], "r", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    if (read(p[0], &b, 1) != 1 || b != 'r') {
        close(p[0]);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return -1;
    }
    close(p[0]);
    *pid = child;
    *netns = h_proc_netns(child);
    return 0;
}

const struct h_sock *h_child_sock(const struct h_child *c, int kind)
{
    int i;
    for (i = 0; i < c->nsock; i++)
        if (c->socks[i].kind == kind)
            return &c->socks[i];
    return NULL;
}

int h_child_lowest_fd(const struct h_child *c, uint64_t inode)
{
    int i, lowest = -1;
    for (i = 0; i < c->nsock; i++)
        if (c->socks[i].inode == inode && (lowest < 0 || c->socks[i].fd < lowest))
            lowest = c->socks[i].fd;
    return lowest;
}

char *h_child_tables(const struct h_child *c, int tcp, int udp, size_t *len)
{
    char p[4][64];
    const char *paths[4];
    size_t n = 0;
    if (tcp) {
        snprintf(p[n], sizeof p[n], "/proc/%d/net/tcp", (int)c->pid);
        paths[n] = p[n];
        n++;
        snprintf(p[n], sizeof p[n], "/proc/%d/net/tcp6", (int)c->pid);
        paths[n] = p[n];
        n++;
    }
    if (udp) {
        snprintf(p[n], sizeof p[n], "/proc/%d/net/udp", (int)c->pid);
        paths[n] = p[n];
        n++;
        snprintf(p[n], sizeof p[n], "/proc/%d/net/udp6", (int)c->pid);
        paths[n] = p[n];
        n++;
    }
    return h_read_files(paths, n, len);
}

/* ---- fake proc trees ---------------------------------------------------- */

int h_fake_init(struct h_fake *f)
{
    snprintf(f->root, sizeof f->root, "/tmp/procspy-fake-XXXXXX");
    if (!mkdtemp(f->root)) {
        h_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
        f->root[0] = 0;
        return -1;
    }
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void h_fake_cleanup(struct h_fake *f)
{
    if (f->root[0])
        nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    f->root[0] = 0;
}

const char *h_fake_path(const struct h_fake *f, const char *fmt, ...)
{
    static char slots[2][512];
    static int next;
    char *out = slots[next];
    va_list ap;
    int n;
    next ^= 1;
    n = snprintf(out, sizeof slots[0], "%s/", f->root);
    va_start(ap, fmt);
    vsnprintf(out + n, sizeof slots[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return out;
}

static void mkdirs_for(const char *path, int include_last)
{
    char tmp[512];
    char *p;
    snprintf(tmp, sizeof tmp, "%s", path);
    for (p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    if (include_last)
        mkdir(tmp, 0755);
}

void h_fake_mkdir(const struct h_fake *f, const char *rel)
{
    mkdirs_for(h_fake_path(f, "%s", rel), 1);
}

void h_fake_write(const struct h_fake *f, const char *rel, const void *data, size_t len)
{
    const char *path = h_fake_path(f, "%s", rel);
    int fd;
    mkdirs_for(path, 0);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        h_fail(__FILE__, __LINE__, "open %s: %s", path, strerror(errno));
        return;
    }
    if (len && write(fd, data, len) != (ssize_t)len)
        h_fail(__FILE__, __LINE__, "write %s: %s", path, strerror(errno));
    close(fd);
}

void h_fake_pid(const struct h_fake *f, int pid, const char *name, size_t name_len,
                uint64_t start_time, int with_fd_dir)
{
    struct h_str s = {0};
    char head[32], tail[256];
    char rel[64];
    snprintf(head, sizeof head, "%d (", pid);
    snprintf(tail, sizeof tail,
             ") S 1 %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %llu 1000 10 "
             "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
             pid, pid, (unsigned long long)start_time);
    h_str_addz(&s, head);
    h_str_add(&s, name, name_len);
    h_str_addz(&s, tail);
    snprintf(rel, sizeof rel, "%d/stat", pid);
    h_fake_write(f, rel, s.p, s.len);
    h_str_free(&s);
    if (with_fd_dir) {
        snprintf(rel, sizeof rel, "%d/fd", pid);
        h_fake_mkdir(f, rel);
    }
}

void h_fake_ns(const struct h_fake *f, int pid, pid_t target)
{
    char rel[64], to[64];
    snprintf(rel, sizeof rel, "%d/ns", pid);
    h_fake_mkdir(f, rel);
    snprintf(to, sizeof to, "/proc/%d/ns/net", (int)target);
    if (symlink(to, h_fake_path(f, "%d/ns/net", pid)) != 0)
        h_fail(__FILE__, __LINE__, "symlink: %s", strerror(errno));
}

void h_fake_fd_link(const struct h_fake *f, int pid, const char *fdname, const char *target)
{
    char rel[64];
    snprintf(rel, sizeof rel, "%d/fd", pid);
    h_fake_mkdir(f, rel);
    if (symlink(target, h_fake_path(f, "%d/fd/%s", pid, fdname)) != 0)
        h_fail(__FILE__, __LINE__, "symlink: %s", strerror(errno));
}

void h_fake_fd_sock(const struct h_fake *f, int pid, int fd, pid_t child, int child_fd)
{
    char name[16], to[64];
    snprintf(name, sizeof name, "%d", fd);
    snprintf(to, sizeof to, "/proc/%d/fd/%d", (int)child, child_fd);
    h_fake_fd_link(f, pid, name, to);
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
