/*
 * bench: times libprocspy on the current host, and (--exec) any command the
 * same way, so the baselines (ss, netstat, lsof) are measured alike.
 *
 *   bench [-n RUNS] [--only walk,conn,changes,text,paced] [--fd-block N] [--tick-ms MS] [-v]
 *       walk   procspy_walker_walk, every namespace, a caller buffer grown to fit
 *       conn   procspy_walker_connections, TCP+UDP, all states, default source
 *              (netlink sock_diag where permitted)
 *       changes  procspy_walker_changes with conn's arguments: after the
 *              warm-up (which reports everything), what changed since the
 *              call before (on a quiet fixture: next to nothing)
 *       changes-vs-conn  a conn walker and a changes walker, each warmed up,
 *              then a conn call and a changes call by turns, RUNS of each:
 *              the median CPU of each and their ratio, and the median of the
 *              ratios of each pair (the figures a loaded host moves least)
 *       text   the same with procspy_walker_set_source(PROCSPY_SOURCE_TEXT)
 *       paced  one connections call under set_rate_limit(fd-block, tick):
 *              CPU per second of wall time
 *       ns-cases  (with --pid PID) by turns, RUNS of each, one warm walker
 *              each: conn; conn with PROCSPY_QUERY_PROCESS_NAMESPACES_ONLY
 *              (procns: no search for namespaces without a process);
 *              procspy_walker_query for PID alone (onepid); a no-owners
 *              query over every namespace (noowners); netlink. Median CPU
 *              of each and the medians of the per-turn ratios onepid/conn,
 *              noowners/netlink and conn/procns
 *     Each of walk/conn/text: one walker, one warm-up call, then RUNS timed
 *     calls; per call wall (CLOCK_MONOTONIC) and CPU (getrusage RUSAGE_SELF,
 *     user+sys delta); the median of each is reported.
 *   bench --once walk|conn|changes|text|none   exactly one call (for strace -c, RSS);
 *       changes makes two, so the peak holds both snapshots, as every call after
 *       the first does
 *   bench --exec [-n RUNS] [--headers K] [--max-seconds S] -- CMD [ARG]...
 *       runs CMD RUNS times, stdout into a pipe whose lines are counted,
 *       wall around fork..wait4, CPU = the child's rusage from wait4 (it
 *       includes the descendants it reaped); records = lines - K per run.
 *       Stops early once S seconds have gone (runs= says how many ran).
 *
 * Output: one "row" line per measurement, key=value, for benches/bench.sh:
 *   row name=conn runs=10 wall_ms=.. cpu_ms=.. wall_min_ms=.. wall_max_ms=..
 *       records=.. tcp=.. owned=.. namespaces=.. processes=.. fds=.. sockets=..
 *       accounted=.. (namespaces listed from the owner scan, tables not read)
 * and "rss vmhwm_kib=.. vmrss_kib=.." at the end.
 *
 * Build: cc -std=c99 -O2 -D_GNU_SOURCE -Iinclude -o build/bench benches/bench.c \
 *          -Ltarget/release -lprocspy -Wl,-rpath,'$ORIGIN/../target/release'
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procspy.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double tv_ms(struct timeval tv) { return tv.tv_sec * 1e3 + tv.tv_usec / 1e3; }

static double self_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    if (n <= 0) return 0;
    double *c = malloc((size_t)n * sizeof *c);
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

static double vmin(const double *v, int n) { double m = n ? v[0] : 0; for (int i = 1; i < n; i++) if (v[i] < m) m = v[i]; return m; }
static double vmax(const double *v, int n) { double m = n ? v[0] : 0; for (int i = 1; i < n; i++) if (v[i] > m) m = v[i]; return m; }

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') { v = atol(line + kl + 1); break; }
    fclose(f);
    return v;
}

static void print_rss(const char *when)
{
    printf("rss when=%s vmhwm_kib=%ld vmrss_kib=%ld\n", when, status_kib("VmHWM"), status_kib("VmRSS"));
}

static _Noreturn void die_status(const char *what, procspy_status s)
{
    char msg[512];
    procspy_last_error(msg, sizeof msg);
    fprintf(stderr, "bench: %s: %s: %s\n", what, procspy_status_str(s), msg);
    exit(1);
}

/* ---- libprocspy measurements ------------------------------------------ */

struct counts { uint64_t records, tcp, owned, accounted; };

static int on_socket(void *u, const procspy_socket *s)
{
    struct counts *c = u;
    c->records++;
    c->owned += s->pid > 0;
    return 0;
}

static int on_conn(void *u, const procspy_connection *c)
{
    struct counts *k = u;
    k->records++;
    k->tcp += c->protocol == PROCSPY_PROTO_TCP;
    k->owned += c->owner != NULL;
    return 0;
}

static int on_change(void *u, const procspy_change *c)
{
    return on_conn(u, c->connection);
}

/* conn: the defaults (BPF owner scan; tables only for namespaces it can't
 * account for); netlink, text: BPF owners, every namespace's tables read
 * from there (as on a host where every namespace has a TIME_WAIT); procscan:
 * owners from PID/fd, netlink tables everywhere (as without CAP_BPF). */
enum what { W_WALK, W_CONN, W_CHANGES, W_NETLINK, W_PROCSCAN, W_TEXT, W_PACED, W_NONE,
            W_PROCNS, W_ONEPID, W_NOOWNERS };
static const char *what_name[] = {"walk", "conn", "changes", "netlink", "procscan", "text", "paced", "none",
                                  "procns", "onepid", "noowners"};

/* --pid: the process the onepid query asks for. */
static int32_t query_pid;

struct ctx {
    procspy_walker *w;
    uint8_t *buf;
    size_t cap;
};

/* One call; returns its wall and CPU ms, fills counts and stats. */
static void one_call(struct ctx *cx, enum what what, struct counts *c, procspy_walk_stats *st,
                     double *wall, double *cpu)
{
    for (;;) {
        memset(c, 0, sizeof *c);
        memset(st, 0, sizeof *st);
        double c0 = self_cpu_ms(), t0 = now_ms();
        procspy_status s;
        if (what == W_WALK)
            s = procspy_walker_walk(cx->w, cx->buf, cx->cap, on_socket, c, st);
        else if (what == W_CHANGES)
            s = procspy_walker_changes(cx->w, NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP,
                                       PROCSPY_STATES_ALL, on_change, c, st);
        else if (what == W_PROCNS || what == W_ONEPID || what == W_NOOWNERS)
            s = procspy_walker_query(cx->w, what == W_ONEPID ? &query_pid : NULL, what == W_ONEPID, NULL, 0,
                                     what == W_ONEPID ? PROCSPY_QUERY_PIDS
                                     : what == W_PROCNS ? PROCSPY_QUERY_PROCESS_NAMESPACES_ONLY
                                                        : PROCSPY_QUERY_NO_OWNERS,
                                     NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL, on_conn, c,
                                     st);
        else
            s = procspy_walker_connections(cx->w, NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP,
                                           PROCSPY_STATES_ALL, on_conn, c, st);
        double t1 = now_ms(), c1 = self_cpu_ms();
        if (s == PROCSPY_BUFFER_TOO_SMALL && what == W_WALK) {
            /* Grow to fit (with room for churn) and run again. */
            size_t want = (size_t)st->bytes_needed + (size_t)st->bytes_needed / 4 + 4096;
            uint8_t *nb = realloc(cx->buf, want);
            if (!nb) { fprintf(stderr, "bench: out of memory\n"); exit(1); }
            cx->buf = nb;
            cx->cap = want;
            continue;
        }
        if (s != PROCSPY_OK) die_status(what_name[what], s);
        *wall = t1 - t0;
        *cpu = c1 - c0;
        /* After the clock: namespaces listed without reading their tables. */
        procspy_walk_stats_ext ext;
        if (procspy_walker_stats_ext(cx->w, &ext, sizeof ext) == PROCSPY_OK) c->accounted = ext.accounted;
        return;
    }
}

static struct ctx new_ctx(enum what what)
{
    struct ctx cx = {0};
    procspy_status s = procspy_walker_new(NULL, &cx.w);
    if (s != PROCSPY_OK) die_status("procspy_walker_new", s);
    if (what == W_TEXT || what == W_NETLINK) {
        s = procspy_walker_set_source(cx.w, what == W_TEXT ? PROCSPY_SOURCE_TEXT : PROCSPY_SOURCE_NETLINK);
        if (s != PROCSPY_OK) die_status("procspy_walker_set_source", s);
    }
    if (what == W_PROCSCAN) {
        s = procspy_walker_set_owner_scan(cx.w, PROCSPY_OWNERS_PROC);
        if (s != PROCSPY_OK) die_status("procspy_walker_set_owner_scan", s);
    }
    if (what == W_WALK) {
        cx.cap = 64 * 1024;
        cx.buf = malloc(cx.cap);
    }
    return cx;
}

static void free_ctx(struct ctx *cx)
{
    procspy_walker_free(cx->w);
    free(cx->buf);
}

static void print_row(const char *name, int runs, double *wall, double *cpu, const struct counts *c,
                      const procspy_walk_stats *st)
{
    printf("row name=%s runs=%d wall_ms=%.3f cpu_ms=%.3f wall_min_ms=%.3f wall_max_ms=%.3f "
           "records=%llu tcp=%llu owned=%llu namespaces=%llu processes=%llu skipped=%llu "
           "fds=%llu sockets=%llu bytes_needed=%llu ticks=%llu accounted=%llu\n",
           name, runs, median(wall, runs), median(cpu, runs), vmin(wall, runs), vmax(wall, runs),
           (unsigned long long)c->records, (unsigned long long)c->tcp, (unsigned long long)c->owned,
           (unsigned long long)st->namespaces, (unsigned long long)st->processes,
           (unsigned long long)st->skipped, (unsigned long long)st->fds,
           (unsigned long long)st->sockets, (unsigned long long)st->bytes_needed,
           (unsigned long long)st->ticks, (unsigned long long)c->accounted);
    fflush(stdout);
}

static void measure(enum what what, int runs, int verbose)
{
    struct ctx cx = new_ctx(what);
    struct counts c;
    procspy_walk_stats st;
    double *wall = calloc((size_t)runs, sizeof *wall), *cpu = calloc((size_t)runs, sizeof *cpu);
    double w0, c0;
    one_call(&cx, what, &c, &st, &w0, &c0); /* warm-up: buffers, page cache, dentries */
    if (verbose)
        printf("run name=%s i=warmup wall_ms=%.3f cpu_ms=%.3f records=%llu\n", what_name[what], w0, c0,
               (unsigned long long)c.records);
    for (int i = 0; i < runs; i++) {
        one_call(&cx, what, &c, &st, &wall[i], &cpu[i]);
        if (verbose)
            printf("run name=%s i=%d wall_ms=%.3f cpu_ms=%.3f records=%llu\n", what_name[what], i,
                   wall[i], cpu[i], (unsigned long long)c.records);
    }
    print_row(what_name[what], runs, wall, cpu, &c, &st);
    free(wall);
    free(cpu);
    free_ctx(&cx);
}

static void measure_paced(uint64_t fd_block, uint64_t tick_ns)
{
    struct ctx cx = new_ctx(W_CONN);
    struct counts c;
    procspy_walk_stats st;
    double wall, cpu;
    one_call(&cx, W_CONN, &c, &st, &wall, &cpu); /* warm, unpaced */
    procspy_status s = procspy_walker_set_rate_limit(cx.w, fd_block, tick_ns);
    if (s != PROCSPY_OK) die_status("procspy_walker_set_rate_limit", s);
    one_call(&cx, W_CONN, &c, &st, &wall, &cpu);
    printf("row name=paced runs=1 wall_ms=%.3f cpu_ms=%.3f cpu_ms_per_wall_s=%.3f fd_block=%llu "
           "tick_ms=%.3f records=%llu ticks=%llu fds=%llu namespaces=%llu\n",
           wall, cpu, wall > 0 ? cpu / (wall / 1e3) : 0, (unsigned long long)fd_block, tick_ns / 1e6,
           (unsigned long long)c.records, (unsigned long long)st.ticks, (unsigned long long)st.fds,
           (unsigned long long)st.namespaces);
    free_ctx(&cx);
}

static void measure_changes_vs_conn(int runs)
{
    struct ctx cc = new_ctx(W_CONN), cx = new_ctx(W_CHANGES);
    struct counts c, k;
    procspy_walk_stats st;
    double *cw = calloc((size_t)runs, sizeof *cw), *ccpu = calloc((size_t)runs, sizeof *ccpu);
    double *xw = calloc((size_t)runs, sizeof *xw), *xcpu = calloc((size_t)runs, sizeof *xcpu);
    double *ratio = calloc((size_t)runs, sizeof *ratio);
    double w0, c0;
    one_call(&cc, W_CONN, &c, &st, &w0, &c0);
    one_call(&cx, W_CHANGES, &k, &st, &w0, &c0);
    for (int i = 0; i < runs; i++) {
        one_call(&cc, W_CONN, &c, &st, &cw[i], &ccpu[i]);
        one_call(&cx, W_CHANGES, &k, &st, &xw[i], &xcpu[i]);
        ratio[i] = ccpu[i] > 0 ? xcpu[i] / ccpu[i] : 0;
    }
    double mc = median(ccpu, runs), mx = median(xcpu, runs);
    printf("row name=changes-vs-conn runs=%d wall_ms=%.3f cpu_ms=%.3f conn_wall_ms=%.3f conn_cpu_ms=%.3f "
           "cpu_ratio=%.3f pair_cpu_ratio=%.3f records=%llu conn_records=%llu\n",
           runs, median(xw, runs), mx, median(cw, runs), mc, mc > 0 ? mx / mc : 0, median(ratio, runs),
           (unsigned long long)k.records, (unsigned long long)c.records);
    fflush(stdout);
    free(cw);
    free(ccpu);
    free(xw);
    free(xcpu);
    free(ratio);
    free_ctx(&cc);
    free_ctx(&cx);
}

static void measure_ns_cases(int runs)
{
    enum { N = 5 };
    static const enum what cases[N] = {W_CONN, W_PROCNS, W_ONEPID, W_NOOWNERS, W_NETLINK};
    struct ctx cx[N];
    struct counts c[N];
    procspy_walk_stats st[N];
    double *wall = calloc((size_t)(N * runs), sizeof *wall), *cpu = calloc((size_t)(N * runs), sizeof *cpu);
    double *r_pid = calloc((size_t)runs, sizeof *r_pid), *r_bare = calloc((size_t)runs, sizeof *r_bare);
    double *r_find = calloc((size_t)runs, sizeof *r_find);
    double w0, c0;
    if (query_pid <= 0) { fprintf(stderr, "bench: ns-cases needs --pid PID\n"); exit(2); }
    for (int k = 0; k < N; k++) {
        cx[k] = new_ctx(cases[k]);
        one_call(&cx[k], cases[k], &c[k], &st[k], &w0, &c0);
    }
    for (int i = 0; i < runs; i++) {
        for (int k = 0; k < N; k++)
            one_call(&cx[k], cases[k], &c[k], &st[k], &wall[k * runs + i], &cpu[k * runs + i]);
        r_pid[i] = cpu[2 * runs + i] / cpu[i];
        r_bare[i] = cpu[3 * runs + i] / cpu[4 * runs + i];
        r_find[i] = cpu[i] / cpu[runs + i];
    }
    for (int k = 0; k < N; k++)
        print_row(what_name[cases[k]], runs, wall + k * runs, cpu + k * runs, &c[k], &st[k]);
    printf("row name=ns-cases runs=%d onepid_vs_conn_cpu=%.4f noowners_vs_netlink_cpu=%.3f "
           "conn_vs_procns_cpu=%.3f onepid_records=%llu\n",
           runs, median(r_pid, runs), median(r_bare, runs), median(r_find, runs),
           (unsigned long long)c[2].records);
    fflush(stdout);
    for (int k = 0; k < N; k++)
        free_ctx(&cx[k]);
    free(wall);
    free(cpu);
    free(r_pid);
    free(r_bare);
    free(r_find);
}

static int once(enum what what)
{
    print_rss("start");
    if (what != W_NONE) {
        struct ctx cx = new_ctx(what);
        struct counts c;
        procspy_walk_stats st;
        double wall, cpu;
        if (what == W_WALK) {
            /* One call only: a buffer that surely fits (untouched pages cost
             * no RSS), so no sizing walk is counted. */
            free(cx.buf);
            cx.cap = 256u << 20;
            cx.buf = malloc(cx.cap);
        }
        one_call(&cx, what, &c, &st, &wall, &cpu);
        if (what == W_CHANGES)
            one_call(&cx, what, &c, &st, &wall, &cpu);
        double w1[1] = {wall}, c1[1] = {cpu};
        print_row(what_name[what], 1, w1, c1, &c, &st);
        free_ctx(&cx);
    }
    print_rss("end");
    return 0;
}

/* ---- commands, measured the same way ------------------------------------ */

static int exec_mode(int runs, int headers, double max_s, char **argv)
{
    double *wall = calloc((size_t)runs, sizeof *wall), *cpu = calloc((size_t)runs, sizeof *cpu);
    long long records = -1;
    int done = 0;
    double start = now_ms();
    long maxrss = 0;
    for (int i = 0; i < runs; i++) {
        int p[2];
        if (pipe(p) < 0) { perror("pipe"); return 1; }
        double t0 = now_ms();
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) {
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
            int dn = open("/dev/null", O_WRONLY);
            if (dn >= 0) dup2(dn, 2);
            execvp(argv[0], argv);
            _exit(127);
        }
        close(p[1]);
        char buf[65536];
        long long lines = 0;
        ssize_t n;
        while ((n = read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
            for (ssize_t k = 0; k < n; k++) lines += buf[k] == '\n';
        close(p[0]);
        int wst;
        struct rusage ru;
        while (wait4(pid, &wst, 0, &ru) < 0 && errno == EINTR) {}
        double t1 = now_ms();
        if (!WIFEXITED(wst) || WEXITSTATUS(wst) == 127) {
            fprintf(stderr, "bench --exec: %s failed (status %d)\n", argv[0], wst);
            return 1;
        }
        wall[i] = t1 - t0;
        cpu[i] = tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime);
        if (ru.ru_maxrss > maxrss) maxrss = ru.ru_maxrss;
        records = lines - headers;
        done = i + 1;
        if (max_s > 0 && now_ms() - start > max_s * 1e3) break;
    }
    printf("row name=exec runs=%d wall_ms=%.3f cpu_ms=%.3f wall_min_ms=%.3f wall_max_ms=%.3f "
           "records=%lld maxrss_kib=%ld\n",
           done, median(wall, done), median(cpu, done), vmin(wall, done), vmax(wall, done), records,
           maxrss);
    return 0;
}

static void usage(void)
{
    fputs("usage: bench [-n RUNS] [--only walk,conn,changes,changes-vs-conn,netlink,procscan,text,paced,ns-cases]\n"
          "             [--fd-block N] [--tick-ms MS] [--pid PID] [-v]\n"
          "       bench --once walk|conn|changes|netlink|procscan|text|none\n"
          "       bench --exec [-n RUNS] [--headers K] [--max-seconds S] -- CMD [ARG]...\n",
          stderr);
}

int main(int argc, char **argv)
{
    int runs = 10, verbose = 0, exec = 0, headers = 0;
    double max_s = 0, tick_ms = 10;
    uint64_t fd_block = 1000;
    const char *only = "walk,conn,changes,netlink,procscan,text,paced", *once_what = NULL;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-n") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(a, "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(a, "--once") && i + 1 < argc) once_what = argv[++i];
        else if (!strcmp(a, "--fd-block") && i + 1 < argc) fd_block = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--tick-ms") && i + 1 < argc) tick_ms = atof(argv[++i]);
        else if (!strcmp(a, "--exec")) exec = 1;
        else if (!strcmp(a, "--headers") && i + 1 < argc) headers = atoi(argv[++i]);
        else if (!strcmp(a, "--max-seconds") && i + 1 < argc) max_s = atof(argv[++i]);
        else if (!strcmp(a, "--pid") && i + 1 < argc) query_pid = atoi(argv[++i]);
        else if (!strcmp(a, "-v")) verbose = 1;
        else if (!strcmp(a, "--")) { i++; break; }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else { usage(); return 2; }
    }
    if (runs < 1) runs = 1;
    if (exec) {
        if (i >= argc) { usage(); return 2; }
        return exec_mode(runs, headers, max_s, argv + i);
    }
    if (once_what) {
        for (int k = 0; k <= W_NONE; k++)
            if (!strcmp(once_what, what_name[k]) && k != W_PACED) return once((enum what)k);
        usage();
        return 2;
    }
    printf("info procspy_version=%s runs=%d\n", procspy_version(), runs);
    char *list = strdup(only);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "walk")) measure(W_WALK, runs, verbose);
        else if (!strcmp(tok, "conn")) measure(W_CONN, runs, verbose);
        else if (!strcmp(tok, "changes")) measure(W_CHANGES, runs, verbose);
        else if (!strcmp(tok, "changes-vs-conn")) measure_changes_vs_conn(runs);
        else if (!strcmp(tok, "netlink")) measure(W_NETLINK, runs, verbose);
        else if (!strcmp(tok, "procscan")) measure(W_PROCSCAN, runs, verbose);
        else if (!strcmp(tok, "text")) measure(W_TEXT, runs, verbose);
        else if (!strcmp(tok, "paced")) measure_paced(fd_block, (uint64_t)(tick_ms * 1e6));
        else if (!strcmp(tok, "ns-cases")) measure_ns_cases(runs);
        else { fprintf(stderr, "bench: unknown measurement '%s'\n", tok); return 2; }
    }
    free(list);
    print_rss("end");
    return 0;
}
