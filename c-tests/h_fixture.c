/*
 * The live fixture: child processes holding real loopback sockets in network namespaces of their own (see harness.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sched.h>
#include "harness.h"

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

/* One end of socket fd, as getsockname (peer 0) or getpeername (peer 1)
 * gives it: its address (4 or 16 bytes) into addr, its port into *port;
 * that call's result. */
static int sock_end(int fd, int peer, uint8_t *addr, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t alen = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&ss, &alen) != 0)
        return -1;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        memcpy(addr, &a->sin_addr, 4);
        *port = ntohs(a->sin_port);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        memcpy(addr, &a->sin6_addr, 16);
        *port = ntohs(a->sin6_port);
    }
    return 0;
}

static int add_sock(struct h_child *c, int kind, int fd)
{
    struct stat st;
    struct h_sock *s;
    int type = 0, domain = 0, acc = 0;
    socklen_t sl = sizeof type;
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
    (void)sock_end(fd, 0, s->local, &s->lport);
    if (sock_end(fd, 1, s->remote, &s->rport) == 0) {
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

procspy_walker *h_walker(void)
{
    procspy_walker *w = NULL;
    if (!CHECK(h_fixture() != NULL) || !CHECK_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK))
        return NULL;
    return w;
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
    static const char *const files[4] = {"tcp", "tcp6", "udp", "udp6"};
    char p[4][64];
    const char *paths[4];
    size_t i, n = 0;
    for (i = tcp ? 0 : 2; i < (udp ? 4u : 2u); i++) {
        snprintf(p[n], sizeof p[n], "/proc/%d/net/%s", (int)c->pid, files[i]);
        paths[n] = p[n];
        n++;
    }
    return h_read_files(paths, n, len);
}
