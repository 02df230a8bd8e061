/*
 * Trust (issue 12): fork, teardown and the counters of what was not
 * believed. A fork from a callback in the middle of a netlink dump (the
 * child gets BUSY, the parent every row); a stop in a child (the parent's
 * paced waits do not spin, the child's own stop works); a stop from a
 * signal handler while walkers are freed, through a stop token (no
 * use-after-free: this runs under ASan and valgrind too);
 * procspy_walker_stats_ext.
 *
 * What may hang or crash runs in a child of the harness (isolated()), so a
 * regression fails its test instead of the run.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <netinet/in.h>
#include <unistd.h>

#include "harness.h"

static uint64_t stop_bound_ns(void)
{
    return h_under_valgrind ? 50000000ull : 10000000ull;
}

/* Runs body(arg) in a child process; fails the test if it fails checks or
 * is still running after timeout_s (then it is killed). */
static void isolated(const char *what, void (*body)(void *), void *arg, unsigned timeout_s)
{
    pid_t pid;
    int status = 0;
    uint64_t deadline = h_now_ns() + (uint64_t)(h_under_valgrind ? timeout_s * 10 : timeout_s) * 1000000000ull;
    fflush(stdout);
    pid = fork();
    if (!CHECK(pid >= 0))
        return;
    if (pid == 0) {
        h_test_failures = 0;
        body(arg);
        fflush(stdout);
        _exit(h_test_failures ? 1 : 0);
    }
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (h_now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            h_fail(__FILE__, __LINE__, "%s: still running after %u s: hung", what, timeout_s);
            return;
        }
        h_sleep_ms(20);
    }
    if (!CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        printf("      (%s: status %#x)\n", what, status);
}

/* ---- a fork from a callback in the middle of a dump --------------------- */

/* A child in a network namespace of its own holding up to `want` bound UDP
 * sockets: enough that its dump takes many reads. */
struct crowd {
    pid_t pid;
    uint64_t netns;
    int n;
};

static int spawn_crowd(struct crowd *c, int want)
{
    int p[2];
    pid_t parent = getpid();
    if (pipe(p) != 0)
        return -1;
    fflush(stdout);
    c->pid = fork();
    if (c->pid < 0)
        return -1;
    if (c->pid == 0) {
        struct rlimit rl;
        int i, n = 0;
        close(p[0]);
        if (getppid() != parent || unshare(CLONE_NEWNET) != 0)
            _exit(1);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            rl.rlim_cur = rl.rlim_max < (rlim_t)want + 64 ? rl.rlim_max : (rlim_t)want + 64;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        for (i = 0; i < want; i++) {
            struct sockaddr_in a;
            int s = socket(AF_INET, SOCK_DGRAM, 0);
            memset(&a, 0, sizeof a);
            a.sin_family = AF_INET;
            if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0)
                break;
            n++;
        }
        if (write(p[1], &n, sizeof n) != sizeof n)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    if (read(p[0], &c->n, sizeof c->n) != sizeof c->n) {
        close(p[0]);
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        return -1;
    }
    close(p[0]);
    c->netns = h_proc_netns(c->pid);
    return 0;
}

struct forker {
    uint64_t netns;
    int fork_at;       /* fork at this record of the namespace */
    int seen;          /* its records delivered in this process */
    int in_child;
    pid_t child;
    int report[2];     /* the child writes its result here */
};

struct child_report {
    procspy_status status;
    int seen_after_fork;
    int says_forked;
};

static int fork_cb(void *ud, const procspy_connection *c)
{
    struct forker *f = ud;
    if (c->netns != f->netns)
        return 0;
    if (++f->seen == f->fork_at && !f->in_child && f->child == 0) {
        fflush(stdout);
        f->child = fork();
        if (f->child == 0) {
            f->in_child = 1;
            f->seen = 0;
        }
    }
    return 0;
}

static void fork_from_callback_body(void *arg)
{
    const struct crowd *crowd = arg;
    procspy_walker *w = NULL;
    procspy_walk_stats st;
    struct forker f;
    struct child_report r;
    struct pollfd pfd;
    procspy_status s;
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_source(w, PROCSPY_SOURCE_NETLINK), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_set_owner_scan(w, PROCSPY_OWNERS_PROC), PROCSPY_OK);
    memset(&f, 0, sizeof f);
    f.netns = crowd->netns;
    f.fork_at = 50;
    REQUIRE(pipe(f.report) == 0);
    s = procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL, fork_cb, &f, &st);
    if (f.in_child) {
        /* The walk in progress is the parent's: the child is told so, at once. */
        r.status = s;
        r.seen_after_fork = f.seen;
        r.says_forked = strstr(h_last_error(), "forked") != NULL;
        if (write(f.report[1], &r, sizeof r) != sizeof r)
            _exit(2);
        _exit(0);
    }
    REQUIRE(f.child > 0);
    CHECK_STATUS(s, PROCSPY_OK);
    CHECK_EQ(f.seen, crowd->n); /* the parent lost nothing to its child */
    pfd.fd = f.report[0];
    pfd.events = POLLIN;
    if (CHECK(poll(&pfd, 1, h_under_valgrind ? 60000 : 10000) == 1) &&
        CHECK(read(f.report[0], &r, sizeof r) == sizeof r)) {
        CHECK_STATUS(r.status, PROCSPY_BUSY);
        CHECK(r.says_forked);
        /* at most what the read in hand held: it never read the shared socket again */
        CHECK(r.seen_after_fork < crowd->n - f.fork_at);
    } else {
        kill(f.child, SIGKILL);
    }
    waitpid(f.child, NULL, 0);
    close(f.report[0]);
    close(f.report[1]);
    procspy_walker_free(w);
}

void test_fork_from_callback(void)
{
    struct crowd crowd;
    REQUIRE(spawn_crowd(&crowd, 3000) == 0);
    CHECK(crowd.n >= 1000);
    isolated("fork from a callback", fork_from_callback_body, &crowd, 30);
    kill(crowd.pid, SIGKILL);
    waitpid(crowd.pid, NULL, 0);
}

/* ---- a stop in a child --------------------------------------------------- */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct paced {
    procspy_walker *w;
    procspy_status status;
    uint64_t end_ns;
};

static void *paced_walk(void *arg)
{
    struct paced *p = arg;
    int n = 0;
    p->status = procspy_walker_walk(p->w, NULL, 0, h_count_cb, &n, NULL);
    p->end_ns = h_now_ns();
    return NULL;
}

/* In the child: the inherited walker walks; then its own stop ends a paced
 * wait within the bound, and is final. Exit status 0 if all held. */
static int child_uses_inherited_walker(procspy_walker *w)
{
    struct paced p = {w, PROCSPY_OK, 0};
    pthread_t th;
    uint64_t t_stop;
    int n = 0;
    if (procspy_walker_walk(w, NULL, 0, h_count_cb, &n, NULL) != PROCSPY_OK || n == 0)
        return 1;
    if (procspy_walker_set_rate_limit(w, 0, 10000000000ull) != PROCSPY_OK || pthread_create(&th, NULL, paced_walk, &p))
        return 2;
    h_sleep_ms(h_under_valgrind ? 500 : 100);
    t_stop = h_now_ns();
    procspy_walker_stop(w);
    pthread_join(th, NULL);
    if (p.status != PROCSPY_STOPPED)
        return 3;
    if (p.end_ns - t_stop >= stop_bound_ns())
        return 4;
    return procspy_walker_walk(w, NULL, 0, h_count_cb, &n, NULL) == PROCSPY_STOPPED ? 0 : 5;
}

void test_fork_then_stop_in_child(void)
{
    const struct h_fixture *fx = h_fixture();
    struct h_fake f;
    procspy_walker *w = NULL;
    procspy_walk_stats st;
    procspy_status s;
    uint64_t cpu0, t0, cpu, wall;
    int status = 0, n = 0, i;
    pid_t child;
    REQUIRE(fx != NULL);
    REQUIRE(h_fake_init(&f) == 0);
    /* two namespaces: two ticks */
    for (i = 0; i < 2; i++) {
        h_fake_pid(&f, 100 + i, "paced", 5, 1, 1);
        h_fake_ns(&f, 100 + i, fx->child[i].pid);
        h_fake_fd_sock(&f, 100 + i, 3, fx->child[i].pid, fx->child[i].socks[0].fd);
    }
    if (!CHECK_STATUS(procspy_walker_new(f.root, &w), PROCSPY_OK)) {
        h_fake_cleanup(&f);
        return;
    }
    fflush(stdout);
    child = fork();
    if (child == 0)
        _exit(child_uses_inherited_walker(w));
    if (CHECK(child > 0)) {
        waitpid(child, &status, 0);
        if (!CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            printf("      (child: status %#x)\n", status);
    }
    /* The parent was not stopped, and its paced waits sleep. */
    CHECK_STATUS(procspy_walker_set_rate_limit(w, 0, h_under_valgrind ? 400000000ull : 200000000ull), PROCSPY_OK);
    cpu0 = thread_cpu_ns();
    t0 = h_now_ns();
    s = procspy_walker_walk(w, NULL, 0, h_count_cb, &n, &st);
    cpu = thread_cpu_ns() - cpu0;
    wall = h_now_ns() - t0;
    CHECK_STATUS(s, PROCSPY_OK);
    CHECK_EQ(st.ticks, 2);
    CHECK_EQ(n, 2);
    if (!CHECK(cpu * 4 < wall))
        printf("      (a paced walk of %.0f ms used %.0f ms of CPU)\n", (double)wall / 1e6, (double)cpu / 1e6);
    procspy_walker_free(w);
    h_fake_cleanup(&f);
}

/* ---- stop tokens ------------------------------------------------------------ */

void test_stop_token_outlives_walker(void)
{
    procspy_walker *w = NULL;
    procspy_stop_token *t = NULL, *t2 = NULL;
    struct paced p;
    pthread_t th;
    uint64_t t_stop;
    CHECK_STATUS(procspy_walker_stop_token(NULL, &t), PROCSPY_NULL_ARGUMENT);
    CHECK(t == NULL);
    REQUIRE_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_stop_token(w, NULL), PROCSPY_NULL_ARGUMENT);
    REQUIRE_STATUS(procspy_walker_stop_token(w, &t), PROCSPY_OK);
    REQUIRE_STATUS(procspy_walker_stop_token(w, &t2), PROCSPY_OK);
    procspy_stop_token_stop(NULL);
    procspy_stop_token_free(NULL);
    /* A token stops a waiting walk as procspy_walker_stop does. */
    CHECK_STATUS(procspy_walker_set_rate_limit(w, 0, 10000000000ull), PROCSPY_OK);
    p.w = w;
    REQUIRE(pthread_create(&th, NULL, paced_walk, &p) == 0);
    h_sleep_ms(h_under_valgrind ? 500 : 100);
    t_stop = h_now_ns();
    procspy_stop_token_stop(t);
    pthread_join(th, NULL);
    CHECK_STATUS(p.status, PROCSPY_STOPPED);
    CHECK(p.end_ns - t_stop < stop_bound_ns() * 5); /* the harness thread is not SCHED_FIFO */
    /* After the walker is freed its tokens stay valid and stop nothing. */
    procspy_walker_free(w);
    procspy_stop_token_stop(t);
    procspy_stop_token_stop(t2);
    procspy_stop_token_free(t);
    procspy_stop_token_stop(t2);
    procspy_stop_token_free(t2);
}

#define TOKEN_ROUNDS 200

static procspy_stop_token *g_token;
static unsigned long g_handled;

static void stop_by_token(int sig)
{
    (void)sig;
    procspy_stop_token_stop(__atomic_load_n(&g_token, __ATOMIC_SEQ_CST));
    __atomic_add_fetch(&g_handled, 1, __ATOMIC_RELAXED);
}

struct signaller {
    pthread_t target;
    int done;
};

static void *signal_storm(void *arg)
{
    struct signaller *s = arg;
    while (!__atomic_load_n(&s->done, __ATOMIC_SEQ_CST)) {
        pthread_kill(s->target, SIGUSR1);
        sched_yield();
    }
    return NULL;
}

/* The shutdown race a handler and free had: the handler stops through a
 * token while walkers are made, walked and freed under it, on this thread
 * and the next. ASan and valgrind see any use of freed memory. */
void test_stop_token_during_free(void)
{
    static procspy_stop_token *tokens[TOKEN_ROUNDS];
    struct sigaction sa, old;
    struct signaller sig;
    pthread_t th;
    int i, rounds = h_under_valgrind ? 20 : TOKEN_ROUNDS;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stop_by_token;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &sa, &old) == 0);
    g_handled = 0;
    sig.target = pthread_self();
    sig.done = 0;
    REQUIRE(pthread_create(&th, NULL, signal_storm, &sig) == 0);
    for (i = 0; i < rounds; i++) {
        procspy_walker *w = NULL;
        int n = 0;
        tokens[i] = NULL;
        if (!CHECK_STATUS(procspy_walker_new(NULL, &w), PROCSPY_OK) ||
            !CHECK_STATUS(procspy_walker_stop_token(w, &tokens[i]), PROCSPY_OK)) {
            procspy_walker_free(w);
            break;
        }
        __atomic_store_n(&g_token, tokens[i], __ATOMIC_SEQ_CST);
        if (i % 20 == 0) { /* stopped at once, or by the handler meanwhile */
            procspy_status s = procspy_walker_walk(w, NULL, 0, h_count_cb, &n, NULL);
            CHECK(s == PROCSPY_OK || s == PROCSPY_STOPPED);
        }
        procspy_walker_free(w);
    }
    __atomic_store_n(&sig.done, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    sigaction(SIGUSR1, &old, NULL);
    __atomic_store_n(&g_token, NULL, __ATOMIC_SEQ_CST);
    CHECK(__atomic_load_n(&g_handled, __ATOMIC_RELAXED) > 0);
    for (i = 0; i < rounds; i++)
        procspy_stop_token_free(tokens[i]);
}

/* ---- procspy_walker_stats_ext ------------------------------------------------ */

void test_stats_ext(void)
{
    const struct h_fixture *fx = h_fixture();
    procspy_walk_stats_ext ext, part;
    procspy_walk_stats st;
    procspy_walker *w = NULL;
    struct h_fake f;
    unsigned char raw[sizeof ext];
    size_t i;
    int n = 0;
    REQUIRE(fx != NULL);
    CHECK_STATUS(procspy_walker_stats_ext(NULL, &ext, sizeof ext), PROCSPY_NULL_ARGUMENT);
    REQUIRE(h_fake_init(&f) == 0);
    /* one pid in a fixture namespace, one whose ns/net is a plain file:
     * it looks like a namespace until it is opened and is not nsfs */
    h_fake_pid(&f, 100, "real", 4, 1, 1);
    h_fake_ns(&f, 100, fx->child[0].pid);
    h_fake_pid(&f, 200, "plain", 5, 1, 1);
    h_fake_write(&f, "200/ns/net", "x", 1);
    if (!CHECK_STATUS(procspy_walker_new(f.root, &w), PROCSPY_OK)) {
        h_fake_cleanup(&f);
        return;
    }
    CHECK_STATUS(procspy_walker_stats_ext(w, NULL, sizeof ext), PROCSPY_NULL_ARGUMENT);
    memset(&ext, 0xAB, sizeof ext);
    CHECK_STATUS(procspy_walker_stats_ext(w, &ext, sizeof ext), PROCSPY_OK);
    CHECK_EQ(ext.accounted + ext.dropped + ext.netns_mismatch, 0); /* before any walk */
    CHECK_STATUS(procspy_walker_set_source(w, PROCSPY_SOURCE_NETLINK), PROCSPY_OK);
    CHECK_STATUS(procspy_walker_connections(w, NULL, 0, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP, PROCSPY_STATES_ALL,
                                            h_count_conn_cb, &n, &st),
                 PROCSPY_OK);
    CHECK(n > 0);
    CHECK_STATUS(procspy_walker_stats_ext(w, &ext, sizeof ext), PROCSPY_OK);
    CHECK_EQ(ext.netns_mismatch, 1);
    CHECK_EQ(ext.dropped, 0);
    CHECK_EQ(st.skipped, 1);
    /* size: only that many bytes are written (a shorter struct of an older build) */
    memset(&part, 0xAB, sizeof part);
    CHECK_STATUS(procspy_walker_stats_ext(w, &part, 0), PROCSPY_OK);
    memcpy(raw, &part, sizeof raw);
    for (i = 0; i < sizeof raw; i++)
        CHECK_EQ(raw[i], 0xAB);
    CHECK_STATUS(procspy_walker_stats_ext(w, &part, 16), PROCSPY_OK);
    memcpy(raw, &part, sizeof raw);
    CHECK(memcmp(raw, &ext, 16) == 0);
    for (i = 16; i < sizeof raw; i++)
        CHECK_EQ(raw[i], 0xAB);
    procspy_walker_free(w);
    h_fake_cleanup(&f);
}
