/*
 * The C harness of libprocspy: a tiny test framework (in the style of
 * regex-capi's ctest) and the helpers the test files share.
 *
 * Every CHECK reports file:line and marks the current test failed without
 * ending the run; REQUIRE does the same and returns from the test (for
 * checks that later code depends on). Tests are `void test_NAME(void)`,
 * listed once in main.c's table.
 *
 * Helpers:
 *   - a fixture of three child processes, each in a network namespace of
 *     its own, holding known TCP/UDP v4/v6 sockets (h_fixture());
 *   - fake proc trees under a mkdtemp directory (h_fake_*);
 *   - recorders that copy what the library's callbacks lend (h_recs, h_conns);
 *   - kernel-style socket table lines (h_table_line), /proc readers, clocks.
 */
#ifndef PROCSPY_HARNESS_H
#define PROCSPY_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "procspy.h"

/* ---- the framework ----------------------------------------------------- */

/* Failures of the current test so far; set to 0 by main before each test. */
extern int h_test_failures;
/* Non-zero when env PROCSPY_TEST_UNDER_VALGRIND=1: shrink loops, widen timeouts. */
extern int h_under_valgrind;

void h_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int h_check(const char *file, int line, const char *expr, int ok);
int h_check_eq(const char *file, int line, const char *a_expr, const char *b_expr,
               long long a, long long b);
int h_check_status(const char *file, int line, const char *expr, int got, int want);
int h_check_mem(const char *file, int line, const char *a_expr, const char *b_expr,
                const void *a, size_t a_len, const void *b, size_t b_len);

/* Each evaluates to 1 if the check passed, 0 if it failed. */
#define CHECK(cond) h_check(__FILE__, __LINE__, #cond, (cond) ? 1 : 0)
#define CHECK_EQ(a, b) h_check_eq(__FILE__, __LINE__, #a, #b, (long long)(a), (long long)(b))
#define CHECK_STATUS(call, want) h_check_status(__FILE__, __LINE__, #call, (int)(call), (int)(want))
#define CHECK_MEM(a, alen, b, blen) h_check_mem(__FILE__, __LINE__, #a, #b, (a), (alen), (b), (blen))
#define REQUIRE(cond) do { if (!CHECK(cond)) return; } while (0)
#define REQUIRE_EQ(a, b) do { if (!CHECK_EQ(a, b)) return; } while (0)
#define REQUIRE_STATUS(call, want) do { if (!CHECK_STATUS(call, want)) return; } while (0)

/* ---- small utilities --------------------------------------------------- */

uint64_t h_now_ns(void);                     /* CLOCK_MONOTONIC */
void h_sleep_ms(unsigned ms);
/* Reads a whole file (malloc'd, NUL-terminated beyond *len); NULL on error. */
char *h_read_file(const char *path, size_t *len);
/* Reads several files into one malloc'd buffer, concatenated; NULL on error. */
char *h_read_files(const char *const *paths, size_t n, size_t *len);
uint64_t h_stat_ino(const char *path);       /* 0 on error */
/* Field 22 of /proc/PID/stat, counted after the last ')'; 0 on error. */
uint64_t h_proc_start_time(pid_t pid);
uint64_t h_proc_netns(pid_t pid);            /* st_ino of /proc/PID/ns/net */
/* memmem over [hay, hay+hay_len). */
const void *h_memmem(const void *hay, size_t hay_len, const void *needle, size_t needle_len);
/* The string of an error message of this thread (static buffer). */
const char *h_last_error(void);
/* Whether this kernel should run the BPF owner scan, judged apart from the
 * library: its BTF names the task_file iterator and every helper it calls. */
int h_kernel_has_bpf_owner_scan(void);

/* ---- kernel-style socket table lines ----------------------------------- */

#define H_HDR4 "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
#define H_HDR6 "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

/* Appends one /proc/net/tcp-style line (family 4 or 6) to a malloc'd string. */
struct h_str { char *p; size_t len, cap; };
void h_str_add(struct h_str *s, const void *bytes, size_t len);
void h_str_addz(struct h_str *s, const char *z);
void h_str_free(struct h_str *s);
void h_table_line(struct h_str *s, int sl, int family,
                  const uint8_t local[16], uint16_t lport,
                  const uint8_t remote[16], uint16_t rport,
                  int state, uint32_t uid, uint64_t inode);
extern const uint8_t H_ADDR_ZERO[16];
extern const uint8_t H_ADDR_LO4[16];   /* 127.0.0.1 in the first 4 bytes */
extern const uint8_t H_ADDR_LO6[16];   /* ::1 */

/* ---- recorders --------------------------------------------------------- */

struct h_rec {                 /* a copy of one procspy_socket */
    uint64_t inode, netns, start_time;
    int32_t pid, fd;
    size_t name_len;
    char *name;                /* malloc'd copy of name_len + 1 bytes */
    int name_nul_ok;           /* name[name_len] == 0 and no NUL before it */
};

struct h_recs {
    struct h_rec *v;
    size_t n, cap;
    /* behaviour of h_rec_cb */
    size_t abort_at;           /* return 1 at this call (1-based); 0 = never */
    const procspy_walker *stop_at_walker; /* call procspy_walker_stop at stop_at */
    size_t stop_at;
};
int h_rec_cb(void *userdata, const procspy_socket *s);
/* Callbacks that count what they see into the int at userdata. */
int h_count_cb(void *userdata, const procspy_socket *s);
int h_count_conn_cb(void *userdata, const procspy_connection *c);
void h_recs_free(struct h_recs *r);
const struct h_rec *h_recs_find(const struct h_recs *r, int32_t pid, int32_t fd);
size_t h_recs_count_pid(const struct h_recs *r, int32_t pid);
/* 1 if the records of each netns are contiguous; else reports and 0. */
int h_check_contiguous_netns(const char *file, int line, const uint64_t *netns, size_t n, size_t stride);
/* CHECK_CONTIGUOUS(recs.v, recs.n, netns) or (conns.v, conns.n, c.netns) */
#define CHECK_CONTIGUOUS(arr, n, field) do { \
        if ((n) > 0) \
            (void)h_check_contiguous_netns(__FILE__, __LINE__, &(arr)[0].field, (n), sizeof (arr)[0]); \
    } while (0)

struct h_conn {                /* a copy of one procspy_connection and its owner */
    procspy_connection c;      /* c.owner is rewritten to point at .owner or NULL */
    procspy_socket owner;
    char *owner_name;
    int has_owner;
    int owner_nul_ok;
};

struct h_conns {
    struct h_conn *v;
    size_t n, cap;
    size_t abort_at;
    const procspy_walker *stop_at_walker;
    size_t stop_at;
};
int h_conn_cb(void *userdata, const procspy_connection *c);
void h_conns_free(struct h_conns *r);
/* The record of (netns, inode), or NULL; counts duplicates into *dups. */
const struct h_conn *h_conns_find(const struct h_conns *r, uint64_t netns, uint64_t inode, size_t *count);
/* Two deliveries of one socket say the same of it and of its owner. */
void h_same_conn(const struct h_conn *a, const struct h_conn *b);
/* The first record with these ports in netns (0: any) and state (0: any), or NULL. */
const struct h_conn *h_conns_by_port(const struct h_conns *r, uint64_t netns, uint16_t lport, uint16_t rport,
                                     uint8_t state);

/* Walks (real or fake root) into a buffer grown until the tables fit. */
procspy_status h_walk_all(procspy_walker *w, struct h_recs *recs, uint8_t **buf,
                          size_t *len, procspy_walk_stats *stats);

/* ---- the namespace fixture --------------------------------------------- */

enum h_kind {
    H_LISTEN4, H_LISTEN6, H_CLIENT4, H_ACCEPT4, H_CLIENT6, H_ACCEPT6,
    H_UDP4, H_UDP4C, H_UDP6, H_UDP6C,
    H_DUP4,                    /* a dup of H_LISTEN4 at a high fd */
    H_OUTER,                   /* UDP v4 made before unshare: listed in the harness's namespace */
    H_EXTRA                    /* more UDP v4 sockets (child 2), to make its tables larger */
};

struct h_sock {
    int kind;
    int fd;
    uint64_t inode;
    uint8_t protocol, family, state;
    uint8_t local[16], remote[16];
    uint16_t lport, rport;
};

#define H_MAX_SOCKS 48
#define H_NCHILD 3

struct h_child {
    pid_t pid;
    pid_t grandchild;          /* child 0 only: a second process in its namespace */
    uint64_t netns;
    uint64_t start_time, gc_start_time;
    char name[16];             /* comm as set with PR_SET_NAME */
    size_t name_len;
    int nsock;
    struct h_sock socks[H_MAX_SOCKS];
    uint16_t port_base;
};

struct h_fixture {
    int nchild;
    struct h_child child[H_NCHILD];
    uint64_t self_netns;       /* the harness's own namespace */
};

/* Starts the children once (NULL and a failure if that fails). */
const struct h_fixture *h_fixture(void);
/* The fixture up, then a walker of the host's proc root (the caller frees
 * it); NULL, with a failed check, if either could not be had. */
procspy_walker *h_walker(void);
void h_fixture_teardown(void);
const struct h_sock *h_child_sock(const struct h_child *c, int kind);
/* The lowest-numbered fd of `c` that holds `inode`. */
int h_child_lowest_fd(const struct h_child *c, uint64_t inode);
/* tcp+tcp6 (and udp+udp6 if `udp`) of a child's namespace, read by us. */
char *h_child_tables(const struct h_child *c, int tcp, int udp, size_t *len);

#define H_HOSTILE_NAME "a) R 1 (x\n"   /* child 1's comm */

/* A throwaway child in a fresh network namespace, listening on 127.0.0.1:port,
 * until killed (the caller kills and reaps it). 0 on success. */
int h_spawn_victim(pid_t *pid, uint64_t *netns, uint16_t port);

/* ---- fake proc trees ---------------------------------------------------- */

struct h_fake { char root[256]; };
int h_fake_init(struct h_fake *f);                 /* mkdtemp; 0 on success */
void h_fake_cleanup(struct h_fake *f);             /* removes the whole tree */
/* Path of ROOT/rel into a static buffer (two alternating slots). */
const char *h_fake_path(const struct h_fake *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Creates ROOT/PID with a stat file (name of name_len bytes), and fd/. */
void h_fake_pid(const struct h_fake *f, int pid, const char *name, size_t name_len,
                uint64_t start_time, int with_fd_dir);
/* ROOT/PID/ns/net -> /proc/TARGET/ns/net */
void h_fake_ns(const struct h_fake *f, int pid, pid_t target);
/* ROOT/PID/fd/FD -> target (any string) */
void h_fake_fd_link(const struct h_fake *f, int pid, const char *fdname, const char *target);
/* ROOT/PID/fd/FD -> /proc/CHILD/fd/CHILDFD */
void h_fake_fd_sock(const struct h_fake *f, int pid, int fd, pid_t child, int child_fd);
/* Writes ROOT/rel (parent dirs made as needed). */
void h_fake_write(const struct h_fake *f, const char *rel, const void *data, size_t len);
void h_fake_mkdir(const struct h_fake *f, const char *rel);

#endif /* PROCSPY_HARNESS_H */
