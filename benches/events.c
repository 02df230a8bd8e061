/*
 * events: what the live-events tracer (procspy_walker_events) costs the host,
 * how late its events come, and whether it loses any, under a loopback TCP
 * storm (issue 22's benchmarks; benches/bench.sh --events prints the table).
 *
 * The storm: CLIENTS processes (default one per core) each connect to
 * 127.0.0.1 (round-robin over PORTS listeners), read their local port
 * (getsockname), close, and log CLOCK_BOOTTIME after close() returned with
 * the connection's ports; one server process accepts and closes. The
 * client's close enters FIN_WAIT1 (or LAST_ACK where the server closed
 * first), in the client, and that event names it (tests/events.rs); unless
 * another process held the socket's last reference (a pidfd_getfd copy, as
 * a libprocspy pid query takes), whose close then enters it and is named.
 *
 *   cost   ROUNDS x (tracer off, on, batch: SECONDS s each), the storm flat
 *          out throughout: connections per second in each window, the CPU
 *          time per connection of the storm's processes plus the reader, and
 *          the IRQ work interrupts per connection (/proc/interrupts IWI: the
 *          ring buffer wakes its reader with one). On = a walker whose first events call started the tracer, read by
 *          a thread in a procspy_walker_events loop (timeout 100 ms); batch =
 *          the same, the thread sleeping --batch-ms (2) before each call
 *          (timeout 0), so the ring is rarely empty when the kernel writes
 *          to it, and the kernel rarely wakes the reader; off = that walker
 *          freed. Each window starts 250 ms after the switch. Medians, their
 *          ratios and the medians of the per-round ratios; the on and batch
 *          windows also give the close events' latency under the storm.
 *   loss   the storm paused, a tracer started (the default 4 MiB ring), the
 *          storm paced at --loss-rate (20,000 conn/s, or as near as it gets)
 *          for SECONDS s, paused, the reader drained (no storm event for 300
 *          ms): events delivered and lost (PROCSPY_EVENT_LOST's count and
 *          stats_ext.events_lost, summed over calls), and each client close
 *          matched with its event: a close without one is lost too.
 *   light  the same at --light-rate (1,000 conn/s): the latency on a host
 *          with cores to spare.
 *
 * Latency of a client's close event: CLOCK_BOOTTIME in the callback minus
 * the event's time_ns (the kernel hook), and minus the time the client
 * logged after close() returned, matched by the connection's ports (see
 * match()); negative where the event was delivered before close() had
 * returned. Events named after another process count for loss, not for
 * latency.
 *
 * Another process's program on the same tracepoint makes the hook cost
 * more in every window: each window counts the bpf links of other
 * processes attached to inet_sock_set_state (fdinfo tp_name), and the rows
 * give the most seen.
 *
 * Usage: events [--seconds S] [--rounds N] [--clients C] [--ports P] [--batch-ms MS]
 *               [--loss-rate R] [--light-rate R] [--only cost,loss,light]
 * Output: "hook ..." (procspy_walker_diagnose's BPF tracer lines), "info
 * prog_tag=" (the tracer's program, as perf names it), "window ..." per
 * window (t0, t1: CLOCK_MONOTONIC, to align a profile), one "row name=...
 * key=value ..." per measurement, and "odd ..." for the first few client
 * closes whose event named another process or none, or (paced runs) that
 * had no event; where the tracer can't run, "skip: <why>" and exit status
 * 0. Needs root.
 *
 * Build: cc -std=gnu11 -O2 -pthread -Iinclude -o build/events benches/events.c \
 *          -Ltarget/release -lprocspy -Wl,-rpath,'$ORIGIN/../target/release'
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procspy.h"

#define MAX_CLIENTS 8
#define MAX_PORTS 64
#define LOG_MAX (1u << 21) /* closes logged, a ring: 32 MiB */

enum { RUN, PAUSE, EXIT };

/* A connection on loopback is told by its ports: local << 16 | remote. */
struct close_rec {
    _Atomic uint64_t seq; /* index + 1 once written */
    uint64_t ns;
    uint32_t ports;
};

struct counter {
    _Atomic uint64_t v;
    char pad[56];
};

/* Shared by the bench and its storm processes (MAP_SHARED). */
struct shared {
    _Atomic int state;
    _Atomic uint64_t rate; /* connections per second, all clients; 0 = flat out */
    _Atomic uint64_t epoch; /* bumped at each resume: the clients' pacing starts again */
    _Atomic int paused[MAX_CLIENTS];
    struct counter conns[MAX_CLIENTS];
    struct counter errors[MAX_CLIENTS];
    _Atomic int last_errno;
    int nports;
    uint16_t ports[MAX_PORTS];
    _Atomic int server_ready;
    _Atomic uint64_t log_n;
    struct close_rec log[LOG_MAX];
};

static struct shared *sh;
static int nclients;
static pid_t client_pid[MAX_CLIENTS], server_pid;
static uint8_t listener_port[65536];
static uint64_t our_netns;

static uint64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
static uint64_t mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
static uint64_t boot_ns(void) { return clock_ns(CLOCK_BOOTTIME); }

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

static _Noreturn void die(const char *what)
{
    perror(what);
    exit(1);
}

static _Noreturn void die_status(const char *what, procspy_status s)
{
    char msg[512];
    procspy_last_error(msg, sizeof msg);
    fprintf(stderr, "events: %s: %s: %s\n", what, procspy_status_str(s), msg);
    exit(1);
}

static uint64_t conns_total(void)
{
    uint64_t n = 0;
    for (int i = 0; i < nclients; i++) n += atomic_load(&sh->conns[i].v);
    return n;
}

static uint64_t errors_total(void)
{
    uint64_t n = 0;
    for (int i = 0; i < nclients; i++) n += atomic_load(&sh->errors[i].v);
    return n;
}

/* ---- the storm ------------------------------------------------------------ */

static _Noreturn void server(void)
{
    prctl(PR_SET_NAME, "storm-server");
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < sh->nports; i++) {
        int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0 ||
            getsockname(l, (struct sockaddr *)&a, &al) < 0)
            die("server listener");
        sh->ports[i] = ntohs(a.sin_port);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0) die("epoll_ctl");
    }
    atomic_store(&sh->server_ready, 1);
    struct epoll_event evs[MAX_PORTS];
    while (atomic_load(&sh->state) != EXIT) {
        int n = epoll_wait(ep, evs, MAX_PORTS, 100);
        for (int i = 0; i < n; i++) {
            int c;
            while ((c = accept4(evs[i].data.fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) close(c);
        }
    }
    _exit(0);
}

static _Noreturn void client(int id)
{
    prctl(PR_SET_NAME, "storm-client");
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct sockaddr_in to[MAX_PORTS];
    for (int i = 0; i < sh->nports; i++)
        to[i] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(sh->ports[i]),
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint64_t epoch = UINT64_MAX, n = 0, t0 = 0, per_s = 0;
    unsigned k = (unsigned)id;
    for (;;) {
        int st = atomic_load(&sh->state);
        if (st == EXIT) _exit(0);
        if (st == PAUSE) {
            atomic_store(&sh->paused[id], 1);
            sleep_ms(1);
            continue;
        }
        uint64_t e = atomic_load(&sh->epoch);
        if (e != epoch) {
            epoch = e;
            n = 0;
            t0 = mono_ns();
            per_s = atomic_load(&sh->rate) / (uint64_t)nclients;
        }
        if (per_s) {
            /* Paced: connection n is due at t0 + n/per_s; a backlog of
             * more than 10 ms is dropped, not caught up in a burst. */
            uint64_t due = t0 + n * 1000000000u / per_s, now = mono_ns();
            if (now + 20000 < due) {
                struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            } else if (now > due + 10000000) {
                t0 = now;
                n = 0;
            }
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("client socket");
        struct sockaddr_in me;
        socklen_t ml = sizeof me;
        int dst = (int)(k++ % (unsigned)sh->nports);
        if (connect(fd, (struct sockaddr *)&to[dst], sizeof to[0]) < 0 ||
            getsockname(fd, (struct sockaddr *)&me, &ml) < 0) {
            atomic_store(&sh->last_errno, errno);
            atomic_fetch_add(&sh->errors[id].v, 1);
            close(fd);
            continue;
        }
        close(fd);
        uint64_t at = boot_ns();
        uint64_t i = atomic_fetch_add(&sh->log_n, 1);
        struct close_rec *r = &sh->log[i % LOG_MAX];
        r->ns = at;
        r->ports = (uint32_t)ntohs(me.sin_port) << 16 | sh->ports[dst];
        atomic_store_explicit(&r->seq, i + 1, memory_order_release);
        atomic_fetch_add(&sh->conns[id].v, 1);
        n++;
    }
}

/* Waits for a storm process's flag; one that died leaves it unset. */
static void wait_flag(_Atomic int *flag, const char *what)
{
    for (int ms = 0; !atomic_load(flag); ms++) {
        if (ms == 10000) { fprintf(stderr, "events: the storm's %s did not answer in 10 s\n", what); exit(1); }
        sleep_ms(1);
    }
}

static void storm_state(int st)
{
    /* Paused = each client seen at its pause point, after what it was doing. */
    if (st == PAUSE)
        for (int i = 0; i < nclients; i++) atomic_store(&sh->paused[i], 0);
    if (st == RUN) atomic_fetch_add(&sh->epoch, 1);
    atomic_store(&sh->state, st);
    if (st != PAUSE) return;
    for (int i = 0; i < nclients; i++) wait_flag(&sh->paused[i], "client");
}

static void storm_start(int nports)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) die("mmap");
    sh->nports = nports;
    atomic_store(&sh->state, PAUSE);
    fflush(stdout);
    if ((server_pid = fork()) < 0) die("fork");
    if (server_pid == 0) server();
    wait_flag(&sh->server_ready, "server");
    for (int i = 0; i < sh->nports; i++) listener_port[sh->ports[i]] = 1;
    for (int i = 0; i < nclients; i++) {
        if ((client_pid[i] = fork()) < 0) die("fork");
        if (client_pid[i] == 0) client(i);
    }
    storm_state(PAUSE);
}

static void storm_end(void)
{
    atomic_store(&sh->state, EXIT);
    waitpid(server_pid, NULL, 0);
    for (int i = 0; i < nclients; i++) waitpid(client_pid[i], NULL, 0);
}

/* CPU time of the storm's processes, ms. */
static double storm_cpu_ms(void)
{
    double ms = 0;
    for (int i = 0; i <= nclients; i++) {
        clockid_t c;
        if (clock_getcpuclockid(i < nclients ? client_pid[i] : server_pid, &c)) die("clock_getcpuclockid");
        ms += clock_ns(c) / 1e6;
    }
    return ms;
}

static int is_client(int32_t pid)
{
    for (int i = 0; i < nclients; i++)
        if (client_pid[i] == pid) return 1;
    return 0;
}

/* ---- other tracers on the same hook ------------------------------------------ */

/* bpf links attached to inet_sock_set_state: of other processes, or (mine)
 * of this one, its program's tag into tag (17 bytes). */
static int tracer_links(int mine, char *tag)
{
    DIR *proc = opendir("/proc");
    if (!proc) return -1;
    int n = 0;
    pid_t self = getpid();
    struct dirent *p;
    while ((p = readdir(proc))) {
        pid_t pid = atoi(p->d_name);
        if (pid <= 0 || (pid == self) != mine) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd", pid);
        DIR *fds = opendir(path);
        if (!fds) continue;
        snprintf(path, sizeof path, "/proc/%d/fdinfo", pid);
        int infos = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *f;
        while (infos >= 0 && (f = readdir(fds))) {
            char target[64], info[1024];
            ssize_t l = readlinkat(dirfd(fds), f->d_name, target, sizeof target - 1);
            if (l <= 0) continue;
            target[l] = 0;
            if (strcmp(target, "anon_inode:bpf_link")) continue;
            int fd = openat(infos, f->d_name, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            ssize_t r = read(fd, info, sizeof info - 1);
            close(fd);
            if (r > 0) {
                info[r] = 0;
                char *t = strstr(info, "prog_tag:\t");
                if (!strstr(info, "tp_name:\tinet_sock_set_state\n")) continue;
                n++;
                if (tag && t) snprintf(tag, 17, "%.16s", t + 10);
            }
        }
        if (infos >= 0) close(infos);
        closedir(fds);
    }
    closedir(proc);
    return n;
}

static int foreign_tracers(void) { return tracer_links(0, NULL); }

/* ---- the reader ------------------------------------------------------------ */

struct sample {
    uint64_t ev_ns, cb_ns;
    uint32_t ports;
    int client; /* named a client: its latency counts */
};

struct reader {
    procspy_walker *w;
    unsigned batch_ms; /* 0: a blocking call (timeout 100 ms); else sleep, then a call with timeout 0 */
    pthread_t th;
    clockid_t cpu_clock;
    procspy_status end;
    _Atomic uint64_t last_event_mono;
    uint64_t calls, events, lost_events, lost_in_events, ext_events, ext_lost, ext_dropped;
    uint64_t client_closes, closes_unowned, closes_other_pid, connects;
    char odd[2048]; /* "odd close" lines, printed once the reader is stopped */
    size_t odd_len;
    struct sample *s;
    size_t n, cap;
};

static int on_event(void *u, const procspy_event *e)
{
    struct reader *r = u;
    uint64_t now = boot_ns();
    r->events++;
    if (e->kind == PROCSPY_EVENT_LOST) {
        r->lost_events++;
        r->lost_in_events += e->lost;
        return 0;
    }
    const procspy_connection *c = e->connection;
    /* The clients' half only: 127.0.0.1 to a listener, from a port that is none. */
    static const uint8_t lo[4] = {127, 0, 0, 1};
    if (c->netns != our_netns || c->family != 4 || memcmp(c->remote_addr, lo, 4) || !listener_port[c->remote_port] ||
        listener_port[c->local_port])
        return 0;
    atomic_store_explicit(&r->last_event_mono, mono_ns(), memory_order_relaxed);
    int32_t pid = c->owner ? c->owner->pid : 0;
    if (e->kind == PROCSPY_EVENT_CONNECT && is_client(pid)) r->connects++;
    if (c->state != PROCSPY_STATE_FIN_WAIT1 && c->state != PROCSPY_STATE_LAST_ACK) return 0;
    int client = c->owner && is_client(pid);
    if (!client) {
        /* Not the client (another process closed a copy last, as a
         * pidfd_getfd of the socket can make it): said, the first few. */
        int n = snprintf(r->odd + r->odd_len, sizeof r->odd - r->odd_len,
                         "odd close kind=%d state=%u old_state=%u pid=%d name=%s local=%u remote=%u cookie=%llu "
                         "time_ns=%llu\n",
                         e->kind, c->state, e->old_state, pid, c->owner ? c->owner->name : "-", c->local_port,
                         c->remote_port, (unsigned long long)e->cookie, (unsigned long long)e->time_ns);
        if (n > 0 && (size_t)n < sizeof r->odd - r->odd_len) r->odd_len += (size_t)n;
        else r->odd[r->odd_len] = 0;
        if (c->owner) r->closes_other_pid++;
        else r->closes_unowned++;
    }
    r->client_closes++;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 65536;
        r->s = realloc(r->s, r->cap * sizeof *r->s);
        if (!r->s) die("realloc");
    }
    r->s[r->n++] = (struct sample){e->time_ns, now, (uint32_t)c->local_port << 16 | c->remote_port, client};
    return 0;
}

static void *read_loop(void *u)
{
    struct reader *r = u;
    for (;;) {
        procspy_walk_stats st;
        if (r->batch_ms) sleep_ms(r->batch_ms);
        procspy_status s = procspy_walker_events(r->w, r->batch_ms ? 0 : 100, PROCSPY_PROTO_TCP, on_event, r, &st);
        if (s != PROCSPY_OK) {
            r->end = s;
            return NULL;
        }
        procspy_walk_stats_ext x;
        s = procspy_walker_stats_ext(r->w, &x, sizeof x);
        if (s != PROCSPY_OK) die_status("procspy_walker_stats_ext", s);
        r->calls++;
        r->ext_events += x.events;
        r->ext_lost += x.events_lost;
        r->ext_dropped += x.events_dropped;
    }
}

static int hooks_printed;

/* A walker with its tracer started (the first events call, in this thread),
 * and a thread reading it; NULL (and why, once) where it can't run. */
static struct reader *tracer_on(unsigned batch_ms, char *why, size_t why_cap)
{
    struct reader *r = calloc(1, sizeof *r);
    r->batch_ms = batch_ms;
    procspy_status s = procspy_walker_new(NULL, &r->w);
    if (s != PROCSPY_OK) die_status("procspy_walker_new", s);
    procspy_walk_stats st;
    s = procspy_walker_events(r->w, 0, PROCSPY_PROTO_TCP, on_event, r, &st);
    if (s != PROCSPY_OK) {
        char msg[512];
        procspy_last_error(msg, sizeof msg);
        snprintf(why, why_cap, "%s: %s", procspy_status_str(s), msg);
        procspy_walker_free(r->w);
        free(r);
        return NULL;
    }
    if (!hooks_printed++) {
        char text[8192];
        size_t len;
        s = procspy_walker_diagnose(r->w, text, sizeof text, &len);
        if (s != PROCSPY_OK && s != PROCSPY_BUFFER_TOO_SMALL) die_status("procspy_walker_diagnose", s);
        char *save;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
            if (!strncmp(l, "BPF tracer", 10)) printf("hook %s\n", l);
        char tag[17] = "";
        tracer_links(1, tag); /* its program as perf names it: bpf_prog_TAG_... */
        printf("info prog_tag=%s\n", tag[0] ? tag : "-");
    }
    /* What the first call delivered is not the storm's: start afresh. */
    r->events = r->client_closes = r->closes_unowned = r->closes_other_pid = r->connects = 0;
    r->lost_events = r->lost_in_events = 0;
    r->n = r->odd_len = 0;
    r->odd[0] = 0;
    atomic_store(&r->last_event_mono, mono_ns());
    if (pthread_create(&r->th, NULL, read_loop, r)) die("pthread_create");
    pthread_getcpuclockid(r->th, &r->cpu_clock);
    return r;
}

static double reader_cpu_ms(struct reader *r) { return clock_ns(r->cpu_clock) / 1e6; }

static void tracer_off(struct reader *r)
{
    procspy_walker_stop(r->w);
    pthread_join(r->th, NULL);
    if (r->end != PROCSPY_STOPPED) die_status("procspy_walker_events", r->end);
    fputs(r->odd, stdout);
    procspy_walker_free(r->w);
    r->w = NULL;
}

static void reader_free(struct reader *r)
{
    free(r->s);
    free(r);
}

/* ---- figures ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of v[0..n), sorted in place. */
static double quantile(double *v, size_t n, double q)
{
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)(q * (double)n + 0.999999);
    return v[k ? k - 1 : 0];
}

static double median(double *v, size_t n)
{
    if (!n) return 0;
    double *c = malloc(n * sizeof *c);
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

struct lat {
    double *kernel, *close; /* ms */
    size_t n, n_close, cap, cap_close;
    uint64_t unmatched_events, closes_without_event, closes;
};

static void lat_push(double **v, size_t *n, size_t *cap, double x)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 65536;
        *v = realloc(*v, *cap * sizeof **v);
        if (!*v) die("realloc");
    }
    (*v)[(*n)++] = x;
}

static int cmp_sample(const void *a, const void *b)
{
    const struct sample *x = a, *y = b;
    if (x->ports != y->ports) return x->ports < y->ports ? -1 : 1;
    return x->ev_ns < y->ev_ns ? -1 : x->ev_ns > y->ev_ns;
}

struct closed {
    uint64_t ns;
    uint32_t ports;
};

static int cmp_closed(const void *a, const void *b)
{
    const struct closed *x = a, *y = b;
    if (x->ports != y->ports) return x->ports < y->ports ? -1 : 1;
    return x->ns < y->ns ? -1 : x->ns > y->ns;
}

/* A client close with no event: counted, the first few said. */
static void missed(struct lat *L, const struct closed *c, int say)
{
    if (L->closes_without_event++ < 10 && say)
        printf("odd missed local=%u remote=%u closed_ns=%llu\n", c->ports >> 16, c->ports & 0xffff,
               (unsigned long long)c->ns);
}

/* The clients' closes logged at [from, to) matched with the reader's
 * events, per pair of ports in time order. An event naming the client takes
 * the first close logged at or after it, within 1 s and before that pair's
 * next event; one naming another process (whose copy of the socket was the
 * last to close, after the client's close) takes the last close logged
 * before it, within 1 s. */
static void match(struct reader *r, uint64_t from, uint64_t to, struct lat *L, int say_missed)
{
    size_t nc = (size_t)(to - from);
    if (nc > LOG_MAX) { fprintf(stderr, "events: close log overrun\n"); exit(1); }
    struct closed *c = malloc((nc + 1) * sizeof *c);
    size_t k = 0;
    for (uint64_t i = from; i < to; i++) {
        struct close_rec *e = &sh->log[i % LOG_MAX];
        for (int tries = 0; atomic_load_explicit(&e->seq, memory_order_acquire) != i + 1; tries++) {
            if (tries > 1000) { fprintf(stderr, "events: close %llu never logged\n", (unsigned long long)i); exit(1); }
            sleep_ms(1);
        }
        c[k++] = (struct closed){e->ns, e->ports};
    }
    qsort(c, nc, sizeof *c, cmp_closed);
    qsort(r->s, r->n, sizeof *r->s, cmp_sample);
    size_t j = 0;
    L->closes += nc;
    for (size_t i = 0; i < r->n; i++) {
        struct sample *s = &r->s[i], *next = i + 1 < r->n && s[1].ports == s->ports ? &s[1] : NULL;
        if (s->client) lat_push(&L->kernel, &L->n, &L->cap, (double)(int64_t)(s->cb_ns - s->ev_ns) / 1e6);
        const struct closed *before = NULL; /* the pair's last close before the event, within 1 s */
        for (; j < nc && (c[j].ports < s->ports || (c[j].ports == s->ports && c[j].ns < s->ev_ns)); j++) {
            if (before) missed(L, before, say_missed);
            before = c[j].ports == s->ports && s->ev_ns - c[j].ns < 1000000000u ? &c[j] : NULL;
            if (!before) missed(L, &c[j], say_missed);
        }
        if (!s->client && before) continue;
        if (before) missed(L, before, say_missed);
        if (s->client && j < nc && c[j].ports == s->ports && c[j].ns - s->ev_ns < 1000000000u &&
            (!next || c[j].ns < next->ev_ns)) {
            lat_push(&L->close, &L->n_close, &L->cap_close, (double)(int64_t)(s->cb_ns - c[j].ns) / 1e6);
            j++;
        } else {
            L->unmatched_events++;
        }
    }
    for (; j < nc; j++) missed(L, &c[j], say_missed);
    free(c);
}

static void print_lat(const char *name, struct lat *L, const char *extra)
{
    size_t n = L->n, m = L->n_close;
    double k50 = quantile(L->kernel, n, 0.5), k99 = quantile(L->kernel, n, 0.99), kmax = n ? L->kernel[n - 1] : 0;
    double c50 = quantile(L->close, m, 0.5), c99 = quantile(L->close, m, 0.99), cmax = m ? L->close[m - 1] : 0;
    double cmin = m ? L->close[0] : 0;
    printf("row name=%s events=%zu kernel_median_ms=%.3f kernel_p99_ms=%.3f kernel_max_ms=%.3f "
           "matched=%zu close_median_ms=%.3f close_p99_ms=%.3f close_max_ms=%.3f close_min_ms=%.3f "
           "unmatched_events=%llu%s\n",
           name, n, k50, k99, kmax, m, c50, c99, cmax, cmin, (unsigned long long)L->unmatched_events, extra);
}

/* ---- the measurements ---------------------------------------------------------- */

/* IRQ work interrupts so far, all CPUs (/proc/interrupts IWI): how the
 * ring buffer wakes its reader. */
static uint64_t irq_work_interrupts(void)
{
    FILE *f = fopen("/proc/interrupts", "r");
    char line[4096];
    uint64_t n = 0;
    while (f && fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " ");
        if (strncmp(p, "IWI:", 4)) continue;
        for (p += 4;;) {
            char *end;
            unsigned long long v = strtoull(p, &end, 10);
            if (end == p) break;
            n += v;
            p = end;
        }
    }
    if (f) fclose(f);
    return n;
}

struct window {
    double seconds, rate, storm_cpu_ms, reader_cpu_ms, t0, t1; /* t: CLOCK_MONOTONIC s, to align a profile */
    uint64_t conns, irq_work;
    int foreign;
};

/* Connections per second over `seconds`, from now; the CPU time of the
 * storm's processes and of the reader thread (r, where one runs). */
static struct window measure(double seconds, struct reader *r)
{
    int f0 = foreign_tracers();
    double s0 = storm_cpu_ms(), r0 = r ? reader_cpu_ms(r) : 0;
    uint64_t c0 = conns_total(), i0 = irq_work_interrupts(), t0 = mono_ns();
    sleep_ms((unsigned)(seconds * 1000));
    uint64_t c1 = conns_total(), i1 = irq_work_interrupts(), t1 = mono_ns();
    double s1 = storm_cpu_ms(), r1 = r ? reader_cpu_ms(r) : 0;
    int f1 = foreign_tracers();
    struct window w = {(double)(t1 - t0) / 1e9, 0, s1 - s0, r1 - r0, t0 / 1e9, t1 / 1e9, c1 - c0, i1 - i0,
                       f0 > f1 ? f0 : f1};
    w.rate = (double)w.conns / w.seconds;
    return w;
}

/* CPU µs per connection: the storm's processes and the reader. */
static double us_per_conn(const struct window *w)
{
    return w->conns ? (w->storm_cpu_ms + w->reader_cpu_ms) * 1e3 / (double)w->conns : 0;
}

static int skip(const char *why)
{
    printf("skip: %s\n", why);
    return 0;
}

/* Windows of one kind in the cost run: the tracer off, on with a blocking
 * reader, on with a reader that sleeps batch_ms between calls. */
enum { OFF, ON, BATCH, KINDS };
static const char *kind_name[KINDS] = {"off", "on", "batch"};

static int cost(int rounds, double seconds, unsigned batch_ms)
{
    size_t n = (size_t)rounds;
    int kinds = batch_ms ? KINDS : BATCH;
    double *rate[KINDS], *cpu[KINDS], *iwi[KINDS], *cores[KINDS], reader_pct[KINDS] = {0}, ev_s[KINDS] = {0};
    int foreign[KINDS] = {0};
    struct lat L[KINDS] = {{0}};
    uint64_t unowned = 0, other = 0, lost = 0, dropped = 0;
    char why[640];
    for (int k = 0; k < KINDS; k++) {
        rate[k] = calloc(n, sizeof *rate[k]);
        cpu[k] = calloc(n, sizeof *cpu[k]);
        iwi[k] = calloc(n, sizeof *iwi[k]);
        cores[k] = calloc(n, sizeof *cores[k]);
    }
    storm_state(RUN);
    sleep_ms(1000); /* the storm at its pace */
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < kinds; k++) {
            /* Every close whose event the reader may deliver is logged at
             * [from, to): from before the attach, to after the detach. */
            struct reader *r = NULL;
            uint64_t from = atomic_load(&sh->log_n), e0 = 0;
            if (k != OFF && !(r = tracer_on(k == BATCH ? batch_ms : 0, why, sizeof why))) return skip(why);
            sleep_ms(250);
            if (r) e0 = r->events;
            struct window w = measure(seconds, r);
            rate[k][i] = w.rate;
            cpu[k][i] = us_per_conn(&w);
            iwi[k][i] = w.conns ? (double)w.irq_work / (double)w.conns : 0;
            cores[k][i] = (w.storm_cpu_ms + w.reader_cpu_ms) / 1e3 / w.seconds;
            foreign[k] = w.foreign > foreign[k] ? w.foreign : foreign[k];
            uint64_t ev = r ? r->events - e0 : 0;
            if (r) tracer_off(r); /* before the window's line: it prints the reader's odd lines */
            printf("window phase=%s round=%zu seconds=%.3f rate=%.0f cpu_us_per_conn=%.2f cores=%.3f "
                   "irq_work_per_conn=%.3f foreign_tracers=%d t0=%.3f t1=%.3f",
                   kind_name[k], i, w.seconds, w.rate, cpu[k][i], cores[k][i], iwi[k][i], w.foreign, w.t0, w.t1);
            if (r) {
                uint64_t to = atomic_load(&sh->log_n);
                reader_pct[k] += w.reader_cpu_ms / (w.seconds * 10) / rounds;
                ev_s[k] += (double)ev / w.seconds / rounds;
                printf(" events_per_s=%.0f reader_cpu_pct=%.1f lost=%llu", (double)ev / w.seconds,
                       w.reader_cpu_ms / (w.seconds * 10), (unsigned long long)r->ext_lost);
                match(r, from, to, &L[k], 0);
                unowned += r->closes_unowned;
                other += r->closes_other_pid;
                lost += r->ext_lost;
                dropped += r->ext_dropped;
                reader_free(r);
            }
            printf("\n");
            fflush(stdout);
        }
    }
    storm_state(PAUSE);
    double moff = median(rate[OFF], n), coff = median(cpu[OFF], n);
    printf("row name=events-cost rounds=%d seconds=%g clients=%d ports=%d batch_ms=%u off_rate=%.0f off_cpu_us=%.2f "
           "off_cores=%.3f off_irq_work_per_conn=%.3f foreign_tracers_off=%d connect_errors=%llu lost=%llu "
           "dropped=%llu closes_unowned=%llu closes_other_pid=%llu",
           rounds, seconds, nclients, sh->nports, batch_ms, moff, coff, median(cores[OFF], n), median(iwi[OFF], n),
           foreign[OFF],
           (unsigned long long)errors_total(), (unsigned long long)lost, (unsigned long long)dropped,
           (unsigned long long)unowned, (unsigned long long)other);
    for (int k = ON; k < kinds; k++) {
        double *pair = calloc(n, sizeof *pair), *cpu_pair = calloc(n, sizeof *cpu_pair);
        for (size_t i = 0; i < n; i++) {
            pair[i] = rate[OFF][i] > 0 ? rate[k][i] / rate[OFF][i] : 0;
            cpu_pair[i] = cpu[OFF][i] > 0 ? cpu[k][i] / cpu[OFF][i] : 0;
        }
        double m = median(rate[k], n), c = median(cpu[k], n);
        const char *p = kind_name[k];
        printf(" %s_rate=%.0f %s_ratio=%.4f %s_pair_ratio=%.4f %s_fewer_pct=%.2f %s_cpu_us=%.2f %s_cpu_ratio=%.4f "
               "%s_cpu_pair_ratio=%.4f %s_cores=%.3f %s_irq_work_per_conn=%.3f %s_events_per_s=%.0f "
               "%s_reader_cpu_pct=%.1f foreign_tracers_%s=%d",
               p, m, p, moff > 0 ? m / moff : 0, p, median(pair, n), p, moff > 0 ? (1 - m / moff) * 100 : 0, p, c,
               p, coff > 0 ? c / coff : 0, p, median(cpu_pair, n), p, median(cores[k], n), p, median(iwi[k], n), p,
               ev_s[k], p, reader_pct[k], p, foreign[k]);
        free(pair);
        free(cpu_pair);
    }
    printf("\n");
    print_lat("events-latency-storm", &L[ON], "");
    if (batch_ms) print_lat("events-latency-batch", &L[BATCH], "");
    fflush(stdout);
    for (int k = 0; k < KINDS; k++) {
        free(rate[k]);
        free(cpu[k]);
        free(iwi[k]);
        free(cores[k]);
        free(L[k].kernel);
        free(L[k].close);
    }
    return 1;
}

/* The storm paced at `rate` for `seconds` under a fresh tracer, drained. */
static int paced(const char *name, uint64_t rate, double seconds)
{
    char why[640];
    struct reader *r = tracer_on(0, why, sizeof why);
    if (!r) return skip(why);
    atomic_store(&sh->rate, rate);
    uint64_t from = atomic_load(&sh->log_n), e0 = errors_total();
    double cpu0 = reader_cpu_ms(r);
    storm_state(RUN);
    struct window w = measure(seconds, r);
    storm_state(PAUSE);
    uint64_t to = atomic_load(&sh->log_n);
    /* Drained: no event of the storm's for 300 ms (at most 10 s). */
    uint64_t t_end = mono_ns();
    while (mono_ns() - atomic_load(&r->last_event_mono) < 300000000u && mono_ns() - t_end < 10000000000u)
        sleep_ms(20);
    double cpu = reader_cpu_ms(r) - cpu0;
    tracer_off(r);
    atomic_store(&sh->rate, 0);
    struct lat L = {0};
    match(r, from, to, &L, 1);
    printf("row name=%s target_rate=%llu rate=%.0f seconds=%.3f connections=%llu connect_errors=%llu "
           "events=%llu lost_events=%llu lost_in_events=%llu ext_events=%llu ext_lost=%llu ext_dropped=%llu "
           "client_closes=%llu closes_without_event=%llu closes_unowned=%llu closes_other_pid=%llu "
           "connects=%llu reader_cpu_ms=%.0f foreign_tracers=%d\n",
           name, (unsigned long long)rate, w.rate, w.seconds, (unsigned long long)(to - from),
           (unsigned long long)(errors_total() - e0), (unsigned long long)r->events,
           (unsigned long long)r->lost_events, (unsigned long long)r->lost_in_events,
           (unsigned long long)r->ext_events, (unsigned long long)r->ext_lost, (unsigned long long)r->ext_dropped,
           (unsigned long long)r->client_closes, (unsigned long long)L.closes_without_event,
           (unsigned long long)r->closes_unowned, (unsigned long long)r->closes_other_pid,
           (unsigned long long)r->connects, cpu, w.foreign);
    char lname[64];
    snprintf(lname, sizeof lname, "%s-latency", name);
    print_lat(lname, &L, "");
    fflush(stdout);
    reader_free(r);
    free(L.kernel);
    free(L.close);
    return 1;
}

static void usage(void)
{
    fputs("usage: events [--seconds S] [--rounds N] [--clients C] [--ports P] [--batch-ms MS]\n"
          "              [--loss-rate R] [--light-rate R] [--only cost,loss,light]\n",
          stderr);
}

int main(int argc, char **argv)
{
    double seconds = 5;
    int rounds = 5, nports = 8;
    uint64_t loss_rate = 20000, light_rate = 1000;
    unsigned batch_ms = 2;
    const char *only = "cost,loss,light";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(a, "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--clients") && i + 1 < argc) nclients = atoi(argv[++i]);
        else if (!strcmp(a, "--ports") && i + 1 < argc) nports = atoi(argv[++i]);
        else if (!strcmp(a, "--loss-rate") && i + 1 < argc) loss_rate = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--light-rate") && i + 1 < argc) light_rate = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--batch-ms") && i + 1 < argc) batch_ms = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else { usage(); return 2; }
    }
    if (!nclients) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nclients = cpus < 1 ? 1 : cpus > MAX_CLIENTS ? MAX_CLIENTS : (int)cpus;
    }
    if (seconds <= 0 || rounds < 1 || nclients < 1 || nclients > MAX_CLIENTS || nports < 1 || nports > MAX_PORTS) {
        usage();
        return 2;
    }
    struct stat ns;
    if (stat("/proc/self/ns/net", &ns) < 0) die("/proc/self/ns/net");
    our_netns = ns.st_ino;
    printf("info procspy_version=%s seconds=%.1f rounds=%d clients=%d ports=%d foreign_tracers=%d\n",
           procspy_version(), seconds, rounds, nclients, nports, foreign_tracers());

    /* Where the tracer can't run, say why and measure nothing. */
    char why[640];
    struct reader *probe = tracer_on(0, why, sizeof why);
    if (!probe) return skip(why);
    tracer_off(probe);
    reader_free(probe);

    storm_start(nports);
    int ok = 1;
    char *list = strdup(only), *save;
    for (char *tok = strtok_r(list, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "cost")) ok = cost(rounds, seconds, batch_ms);
        else if (!strcmp(tok, "loss")) ok = paced("events-loss", loss_rate, seconds);
        else if (!strcmp(tok, "light")) ok = paced("events-light", light_rate, seconds);
        else { fprintf(stderr, "events: unknown measurement '%s'\n", tok); storm_end(); return 2; }
    }
    free(list);
    int e = atomic_load(&sh->last_errno);
    if (errors_total()) printf("info connect_errors=%llu last_errno=%s\n", (unsigned long long)errors_total(),
                               strerror(e));
    storm_end();
    return 0;
}
