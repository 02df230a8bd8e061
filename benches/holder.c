/*
 * procspy-holder: the process side of the benchmark fixture (benches/fixture).
 *
 * One supervisor process forks every holder of the fixture. For each SPEC it
 * enters the network namespace (setns; "-" = stay in the namespace it was
 * started in), brings lo up, optionally widens ip_local_port_range there,
 * and forks PROCS children, which inherit that namespace. Each child holds,
 * on loopback only:
 *
 *   LISTENERS TCP listeners on 127.0.0.1 and as many on ::1 (default 1+1),
 *   PAIRS established TCP pairs, both ends in the child, v4 and v6 alternating,
 *   one bound and one connected UDP socket, each in v4 and in v6,
 *
 * so 2*LISTENERS + 2*PAIRS + 4 socket fds, then waits. The supervisor stays
 * as the children's parent and reaper (pid 1 here does not reap), ends them
 * all on SIGTERM/SIGINT or after --ttl seconds, and exits when they are gone.
 * Children die with it (PR_SET_PDEATHSIG).
 *
 * A SPEC with any of tw=, accq=, synrecv=, churn= also gets one node helper
 * (node_main): what a Kubernetes pod's namespace has that no process holds,
 * all on loopback:
 *
 *   tw=N       every period=S seconds (default 20), N connections to its own
 *              listeners (v4, v6 alternating), the client closing first:
 *              N TIME_WAIT sockets per period, each alive 60 s
 *   accq=N     N connections completed in the accept queue of a listener it
 *              never accepts on (client ends held, server ends held by none)
 *   synrecv=N  N connections to a TCP_DEFER_ACCEPT listener that send no
 *              data: the client is established, the server's request stays
 *              in SYN_RECV; renewed (new ones, then the old reset) each period
 *   churn=S    every S seconds, the connection it opened S seconds before is
 *              reset and a new one opened (client and server end held)
 *
 * Its first TIME_WAITs, queue and requests exist before it reports.
 *
 * Usage: procspy-holder [--ttl SECONDS] SPEC...
 *   SPEC = NSPATH,PROCS,PAIRS[,LISTENERS][,PORTLO-PORTHI][,KEY=N]...
 *          (NSPATH "-": current; KEY tw, period, accq, synrecv, churn)
 *        procspy-holder [--ttl SECONDS] --fds unix|null N
 *   one process (this one) holding N fds: N/2 connected unix socket pairs,
 *   or N opens of /dev/null; "R <pid> 0 <fds>" once they are open, then it
 *   waits for SIGTERM/SIGINT or the ttl (bench.sh's fd cases; the caller
 *   sets RLIMIT_NOFILE and the user it runs as)
 * Stdout (a pipe the caller reads to EOF; every writer closes it when done):
 *   "S <supervisor pid>" first, then one line per child:
 *   "R <pid> <spec index> <socket fds>" when its sockets are up, or
 *   "E <pid> <spec index> <what failed>" (it then exits); a node helper says
 *   "H <pid> <spec index> <socket fds>", or "E ..." with "node: " before what
 *   failed. A node helper's later failures go to stderr; it carries on.
 *
 * Build: cc -O2 -o build/procspy-holder benches/holder.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct spec {
    const char *nspath;
    int procs, pairs, listeners;
    int port_lo, port_hi;
    int tw, period, accq, synrecv, churn; /* the node helper's; none if all 0 */
};

static int has_node(const struct spec *sp)
{
    return sp->tw > 0 || sp->accq > 0 || sp->synrecv > 0 || sp->churn > 0;
}

static void out_line(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n >= (int)sizeof line) n = sizeof line - 1;
    /* One write: lines from many children never interleave (< PIPE_BUF). */
    ssize_t w = write(1, line, (size_t)n);
    (void)w;
}

static void close_stdout(void)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) { dup2(fd, 1); close(fd); }
}

static _Noreturn void child_fail(int idx, const char *what)
{
    out_line("E %d %d %s: %s\n", (int)getpid(), idx, what, strerror(errno));
    _exit(1);
}

/* A socket of `type` bound to 127.0.0.1:0 or [::1]:0, listening if it is a
 * stream; its address goes to *sa. */
static int bound_socket(int type, int v6, struct sockaddr_storage *sa, socklen_t *len)
{
    int s = socket(v6 ? AF_INET6 : AF_INET, type | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    int one = 1;
    if (v6) setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    memset(sa, 0, sizeof *sa);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)sa;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *a;
    }
    if (bind(s, (struct sockaddr *)sa, *len) < 0 || (type == SOCK_STREAM && listen(s, 4096) < 0) ||
        getsockname(s, (struct sockaddr *)sa, len) < 0) {
        int e = errno; close(s); errno = e;
        return -1;
    }
    return s;
}

static _Noreturn void child_main(int idx, const struct spec *sp)
{
    /* Die with the supervisor; a clean slate of signals. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) _exit(1);
    prctl(PR_SET_NAME, "procspy-holder");

    long need = 2L * sp->pairs + 2L * sp->listeners + 64;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need) {
        /* Raising the hard limit needs CAP_SYS_RESOURCE: try, else go to it. */
        struct rlimit want = rl;
        want.rlim_cur = (rlim_t)need;
        if (want.rlim_max < want.rlim_cur) want.rlim_max = want.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &want) < 0) {
            if (rl.rlim_max < (rlim_t)need) child_fail(idx, "setrlimit NOFILE (hard limit too low)");
            rl.rlim_cur = (rlim_t)need;
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0) child_fail(idx, "setrlimit NOFILE");
        }
    }

    int nl = sp->listeners;
    struct sockaddr_storage la[2 * 64];
    socklen_t ll[2 * 64];
    int lfd[2 * 64];
    for (int i = 0; i < 2 * nl; i++) {
        lfd[i] = bound_socket(SOCK_STREAM, i & 1, &la[i], &ll[i]);
        if (lfd[i] < 0) child_fail(idx, (i & 1) ? "listen [::1]" : "listen 127.0.0.1");
    }
    int fds = 2 * nl;
    for (int p = 0; p < sp->pairs; p++) {
        int v6 = p & 1;
        int li = 2 * ((p / 2) % nl) + v6;
        int c = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0) child_fail(idx, "socket tcp");
        if (connect(c, (struct sockaddr *)&la[li], ll[li]) < 0)
            child_fail(idx, v6 ? "connect [::1]" : "connect 127.0.0.1");
        int a = accept4(lfd[li], NULL, NULL, SOCK_CLOEXEC);
        if (a < 0) child_fail(idx, "accept");
        fds += 2;
    }
    for (int v6 = 0; v6 < 2; v6++) {
        struct sockaddr_storage sa;
        socklen_t len;
        if (bound_socket(SOCK_DGRAM, v6, &sa, &len) < 0) child_fail(idx, "udp bind");
        int u = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (u < 0 || connect(u, (struct sockaddr *)&sa, len) < 0)
            child_fail(idx, "udp connect");
        fds += 2;
    }
    out_line("R %d %d %d\n", (int)getpid(), idx, fds);
    close_stdout();
    for (;;) pause();
}

/* ---- the node helper ------------------------------------------------------ */

static const char *node_what; /* what failed, for node_fail */

static void node_warn(const char *what)
{
    fprintf(stderr, "procspy-fxnode %d: %s: %s\n", (int)getpid(), what, strerror(errno));
}

/* A blocking connection to la: its client fd, or -1 (node_what says why). */
static int dial(const struct sockaddr_storage *la, socklen_t ll)
{
    int c = socket(la->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0) { node_what = "socket tcp"; return -1; }
    if (connect(c, (const struct sockaddr *)la, ll) < 0) {
        int e = errno; close(c); errno = e;
        node_what = "connect";
        return -1;
    }
    return c;
}

/* Closes with a reset: no TIME_WAIT, a pending request dropped. */
static void rst_close(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* One connection to listener l, the client closing first: the client end
 * waits out TIME_WAIT once the server, having read the FIN, closes too. */
static int time_wait_one(int l, const struct sockaddr_storage *la, socklen_t ll)
{
    int c = dial(la, ll);
    if (c < 0) return -1;
    int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (a < 0) { node_what = "accept"; rst_close(c); return -1; }
    close(c);
    char b;
    struct pollfd p = {a, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1 || read(a, &b, 1) != 0) { node_what = "no FIN"; rst_close(a); return -1; }
    close(a);
    return 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static _Noreturn void node_fail(int idx)
{
    out_line("E %d %d node: %s: %s\n", (int)getpid(), idx, node_what, strerror(errno));
    _exit(1);
}

static _Noreturn void node_main(int idx, const struct spec *sp)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) _exit(1);
    prctl(PR_SET_NAME, "procspy-fxnode");
    srand((unsigned)getpid());

    /* Its own listeners, v4 and v6: the TIME_WAIT and churn connections. */
    struct sockaddr_storage la[2], qa, da;
    socklen_t ll[2], ql, dl;
    int lfd[2], fds = 0;
    for (int v6 = 0; v6 < 2; v6++) {
        lfd[v6] = bound_socket(SOCK_STREAM, v6, &la[v6], &ll[v6]);
        if (lfd[v6] < 0) child_fail(idx, "node: listen");
        fds++;
    }
    if (sp->accq > 0) {
        if (bound_socket(SOCK_STREAM, 0, &qa, &ql) < 0) child_fail(idx, "node: listen (accept queue)");
        fds++;
        for (int i = 0; i < sp->accq; i++, fds++)
            if (dial(&qa, ql) < 0) node_fail(idx);
    }
    int *syn = calloc((size_t)sp->synrecv + 1, sizeof *syn), dfd = -1;
    if (sp->synrecv > 0) {
        dfd = bound_socket(SOCK_STREAM, 0, &da, &dl);
        int defer = 600; /* s: the request outlives its renewal */
        if (dfd < 0 || setsockopt(dfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer) < 0)
            child_fail(idx, "node: listen (deferred)");
        fds++;
        for (int i = 0; i < sp->synrecv; i++, fds++)
            if ((syn[i] = dial(&da, dl)) < 0) node_fail(idx);
    }
    int churn[2] = {-1, -1};
    for (int i = 0; i < sp->tw; i++)
        if (time_wait_one(lfd[i & 1], &la[i & 1], ll[i & 1]) < 0) node_fail(idx);
    if (sp->churn > 0) {
        if ((churn[0] = dial(&la[0], ll[0])) < 0) node_fail(idx);
        if ((churn[1] = accept4(lfd[0], NULL, NULL, SOCK_CLOEXEC)) < 0) child_fail(idx, "node: accept");
        fds += 2;
    }
    out_line("H %d %d %d\n", (int)getpid(), idx, fds);
    close_stdout();

    /* Rounds at a random phase, so a host's helpers do not act together. */
    double now = mono_s();
    double t_round = now + sp->period * (rand() / (RAND_MAX + 1.0));
    double t_churn = sp->churn > 0 ? now + sp->churn * (rand() / (RAND_MAX + 1.0)) : 1e300;
    for (;;) {
        double next = t_round < t_churn ? t_round : t_churn;
        now = mono_s();
        if (next > now) {
            struct timespec d = {(time_t)(next - now), (long)((next - now - (time_t)(next - now)) * 1e9)};
            while (nanosleep(&d, &d) < 0 && errno == EINTR) {}
            now = mono_s();
        }
        if (now >= t_round) {
            for (int i = 0; i < sp->tw; i++)
                if (time_wait_one(lfd[i & 1], &la[i & 1], ll[i & 1]) < 0) node_warn(node_what);
            for (int i = 0; i < sp->synrecv; i++) {
                int c = dial(&da, dl);
                if (c < 0) { node_warn(node_what); continue; }
                rst_close(syn[i]);
                syn[i] = c;
            }
            t_round += sp->period;
        }
        if (now >= t_churn) {
            rst_close(churn[0]);
            rst_close(churn[1]);
            churn[0] = dial(&la[0], ll[0]);
            churn[1] = churn[0] < 0 ? -1 : accept4(lfd[0], NULL, NULL, SOCK_CLOEXEC);
            if (churn[1] < 0) node_warn(churn[0] < 0 ? node_what : "accept");
            t_churn += sp->churn;
        }
    }
}

static int parse_spec(char *s, struct spec *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->listeners = 1;
    sp->period = 20;
    int n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ","), n++) {
        char *eq = strchr(tok, '=');
        if (n == 0) sp->nspath = tok;
        else if (n == 1) sp->procs = atoi(tok);
        else if (n == 2) sp->pairs = atoi(tok);
        else if (eq) {
            *eq = 0;
            int v = atoi(eq + 1);
            if (!strcmp(tok, "tw")) sp->tw = v;
            else if (!strcmp(tok, "period")) sp->period = v;
            else if (!strcmp(tok, "accq")) sp->accq = v;
            else if (!strcmp(tok, "synrecv")) sp->synrecv = v;
            else if (!strcmp(tok, "churn")) sp->churn = v;
            else return -1;
            if (v < 0) return -1;
        } else if (strchr(tok, '-')) {
            if (sscanf(tok, "%d-%d", &sp->port_lo, &sp->port_hi) != 2) return -1;
        } else sp->listeners = atoi(tok);
    }
    if (n < 3) return -1;
    if (sp->procs < 0 || sp->pairs < 0 || sp->listeners < 1 || sp->listeners > 64) return -1;
    if (sp->period < 1 || sp->accq > 1000 || sp->synrecv > 1000 || sp->tw > 1000) return -1;
    return 0;
}

static int enter_ns(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = setns(fd, CLONE_NEWNET);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static int lo_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int e = errno;
    close(s);
    errno = e;
    return r;
}

static int set_port_range(int lo, int hi)
{
    /* /proc/sys/net shows the namespace of the opener: the one just entered. */
    int fd = open("/proc/sys/net/ipv4/ip_local_port_range", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char b[64];
    int n = snprintf(b, sizeof b, "%d %d\n", lo, hi);
    ssize_t w = write(fd, b, (size_t)n);
    int e = errno;
    close(fd);
    errno = e;
    return w == n ? 0 : -1;
}

static pid_t *kids;
static size_t nkids, live;

static void reap(void)
{
    pid_t p;
    while ((p = waitpid(-1, NULL, WNOHANG)) > 0) {
        for (size_t i = 0; i < nkids; i++)
            if (kids[i] == p) { kids[i] = 0; live--; break; }
    }
}

static void kill_all(int sig)
{
    for (size_t i = 0; i < nkids; i++)
        if (kids[i] > 0) kill(kids[i], sig);
}

/* --fds: hold n fds of one kind until a stop or the ttl. */
static int hold_fds(const char *kind, long n, long ttl)
{
    int unix_ = strcmp(kind, "unix") == 0;
    if (!unix_ && strcmp(kind, "null") != 0) {
        fprintf(stderr, "procspy-holder: --fds takes unix or null, not '%s'\n", kind);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    prctl(PR_SET_NAME, unix_ ? "procspy-fxunix" : "procspy-fxnull");
    for (long i = 0; i < n; i += unix_ ? 2 : 1) {
        int sv[2];
        int r = unix_ ? socketpair(AF_UNIX, SOCK_STREAM, 0, sv) : (sv[0] = open("/dev/null", O_RDONLY));
        if (r < 0) {
            out_line("E %d 0 %s after %ld fds: %s\n", (int)getpid(), kind, i, strerror(errno));
            return 1;
        }
    }
    out_line("R %d 0 %ld\n", (int)getpid(), n);
    close_stdout();
    alarm((unsigned)(ttl > 0 ? ttl : 1));
    sigwaitinfo(&set, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    long ttl = 7200;
    int a = 1;
    if (a + 1 < argc && strcmp(argv[a], "--ttl") == 0) { ttl = atol(argv[a + 1]); a += 2; }
    if (a + 2 < argc && strcmp(argv[a], "--fds") == 0) return hold_fds(argv[a + 1], atol(argv[a + 2]), ttl);
    int nspec = argc - a;
    if (nspec < 1) {
        fprintf(stderr, "usage: procspy-holder [--ttl S] NSPATH,PROCS,PAIRS[,LISTENERS][,LO-HI][,KEY=N]...\n");
        return 2;
    }
    struct spec *specs = calloc((size_t)nspec, sizeof *specs);
    size_t total = 0;
    for (int i = 0; i < nspec; i++) {
        if (parse_spec(argv[a + i], &specs[i]) < 0) {
            fprintf(stderr, "procspy-holder: bad spec '%s'\n", argv[a + i]);
            return 2;
        }
        total += (size_t)specs[i].procs + (size_t)has_node(&specs[i]);
    }
    kids = calloc(total ? total : 1, sizeof *kids);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    prctl(PR_SET_NAME, "procspy-fxsup");

    int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) { perror("procspy-holder: /proc/self/ns/net"); return 1; }
    out_line("S %d\n", (int)getpid());

    for (int i = 0; i < nspec; i++) {
        const struct spec *sp = &specs[i];
        int in_ns = strcmp(sp->nspath, "-") != 0;
        if (in_ns && enter_ns(sp->nspath) < 0) {
            out_line("E 0 %d setns %s: %s\n", i, sp->nspath, strerror(errno));
            continue;
        }
        if (in_ns && lo_up() < 0)
            out_line("E 0 %d lo up: %s\n", i, strerror(errno));
        if (sp->port_lo > 0 && set_port_range(sp->port_lo, sp->port_hi) < 0)
            out_line("E 0 %d ip_local_port_range: %s\n", i, strerror(errno));
        for (int p = 0; p < sp->procs; p++) {
            pid_t pid = fork();
            if (pid < 0) { out_line("E 0 %d fork: %s\n", i, strerror(errno)); break; }
            if (pid == 0) {
                sigprocmask(SIG_UNBLOCK, &set, NULL);
                close(home);
                child_main(i, sp);
            }
            kids[nkids++] = pid;
            live++;
        }
        if (has_node(sp)) {
            pid_t pid = fork();
            if (pid < 0) out_line("E 0 %d fork: %s\n", i, strerror(errno));
            else if (pid == 0) {
                sigprocmask(SIG_UNBLOCK, &set, NULL);
                close(home);
                node_main(i, sp);
            } else {
                kids[nkids++] = pid;
                live++;
            }
        }
        if (in_ns && setns(home, CLONE_NEWNET) < 0) {
            out_line("E 0 %d setns back: %s\n", i, strerror(errno));
            break;
        }
    }
    close_stdout();
    alarm((unsigned)(ttl > 0 ? ttl : 1));

    /* Reap until every child is gone; on a stop or at the ttl, end them. */
    int stopping = 0;
    while (live > 0) {
        struct timespec to = {1, 0};
        int sig = sigtimedwait(&set, NULL, stopping ? &to : NULL);
        if (sig == SIGCHLD || sig < 0) reap();
        if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGALRM) {
            if (!stopping) kill_all(SIGTERM);
            else kill_all(SIGKILL);
            stopping = 1;
        } else if (sig < 0 && stopping) {
            kill_all(SIGKILL);
        }
        reap();
    }
    return 0;
}
