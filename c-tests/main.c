/*
 * The C harness's test table and main(): one line per test, then exactly
 * `N passed, N failed`; exit status 1 if any failed.
 *
 *   build/harness-so [SUBSTRING...] [-SUBSTRING...]
 *       runs the tests whose names contain any SUBSTRING (all if none is given),
 *       except those whose names contain a -SUBSTRING
 *
 * Env: PROCSPY_TEST_UNDER_VALGRIND=1 shrinks loops and widens time bounds;
 * PROCSPY_PRINT_LAYOUT=1 prints `LAYOUT ...` lines on stderr (test_layout.c).
 * Needs root (the fixture makes network namespaces).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define TESTS(X)                                                               \
    X(layout_socket) X(layout_connection) X(layout_walk_stats) X(layout_change) \
    X(layout_walk_stats_ext) X(constants)                                      \
    X(version) X(status_str_known) X(status_str_unknown) X(state_names)        \
    X(last_error_snprintf) X(last_error_per_thread)                            \
    X(walker_new_args) X(walker_new_io) X(root_removed_is_io)                  \
    X(free_and_stop_null) X(set_rate_limit_args) X(walk_args)                  \
    X(connections_args) X(netns_of_args) X(read_tcp_args) X(parse_args)        \
    X(diagnose_args)                                                           \
    X(ns_walk_sockets) X(ns_walk_buffer_tables) X(ns_netns_of) X(ns_read_tcp)  \
    X(ns_parse_walk_buffer)                                                    \
    X(set_source_args) X(owner_scan_args) X(conn_all_fields)                   \
    X(conn_sources_agree) X(conn_owner_scans_agree) X(conn_owner_host_wide)    \
    X(conn_state_mask)                                                         \
    X(conn_protocol_filter) X(conn_buffer_too_small) X(conn_own_buffer)        \
    X(conn_namespace_vanishes)                                                 \
    X(changes_args) X(changes_fixture) X(changes_abort_keeps_snapshot)         \
    X(changes_stop_and_busy) X(changes_seen_closed)                            \
    X(fake_hostile_names) X(fake_net_dev_fallback) X(fake_missing_tcp6)        \
    X(fake_bad_fd_entries) X(fake_vanished_pids) X(fake_tables_from_next_pid)  \
    X(fake_non_numeric_entries) X(fake_conn_join) X(fake_conn_buffer_too_small) \
    X(walk_capacities)                                                         \
    X(parse_real_lines) X(parse_state_mask) X(parse_malformed_counted)         \
    X(parse_abort) X(parse_headers_anywhere) X(parse_every_prefix)             \
    X(parse_garbage)                                                           \
    X(busy_and_stop_walk) X(busy_and_stop_connections) X(busy_and_stop_changes) \
    X(busy_reentrant_callback) X(stop_from_callback) X(callback_abort)         \
    X(stopped_beats_aborted) X(rate_limit_ticks) X(walker_reuse) X(soak)       \
    X(fork_from_callback) X(fork_then_stop_in_child)                           \
    X(stop_token_outlives_walker) X(stop_token_during_free)          \
    X(stats_ext) X(query_args) X(query_fixture)                               \
    X(events_args) X(events_listen) X(events_stop)

#define DECLARE(name) void test_##name(void);
TESTS(DECLARE)
#undef DECLARE

struct test { const char *name; void (*fn)(void); };

#define ENTRY(name) {#name, test_##name},
static const struct test tests[] = {TESTS(ENTRY)};
#undef ENTRY

static const char *volatile current_test = "(none)";

static int selected(const char *name, int argc, char **argv)
{
    int i, includes = 0, included = 0;
    for (i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            if (argv[i][1] && strstr(name, argv[i] + 1))
                return 0;
        } else {
            includes++;
            included |= strstr(name, argv[i]) != NULL;
        }
    }
    return !includes || included;
}

static void on_alarm(int sig)
{
    const char *a = "\nTIMEOUT in test ", *n = current_test;
    (void)sig;
    if (write(2, a, strlen(a)) < 0 || write(2, n, strlen(n)) < 0 || write(2, "\n", 1) < 0) {
    }
    _exit(3);
}

int main(int argc, char **argv)
{
    const char *vg = getenv("PROCSPY_TEST_UNDER_VALGRIND");
    size_t i;
    int passed = 0, failed = 0;
    struct sigaction sa;
    uint64_t t_all = h_now_ns();

    h_under_valgrind = vg && strcmp(vg, "1") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    printf("libprocspy %s, C harness%s\n", procspy_version(), h_under_valgrind ? " (under valgrind)" : "");
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        uint64_t t0;
        if (!selected(tests[i].name, argc, argv))
            continue;
        current_test = tests[i].name;
        h_test_failures = 0;
        alarm(h_under_valgrind ? 600 : 60);
        t0 = h_now_ns();
        tests[i].fn();
        alarm(0);
        if (h_test_failures == 0) {
            passed++;
            printf("ok   %-28s %8.1f ms\n", tests[i].name, (double)(h_now_ns() - t0) / 1e6);
        } else {
            failed++;
            printf("FAIL %-28s %8.1f ms (%d failed checks)\n", tests[i].name, (double)(h_now_ns() - t0) / 1e6,
                   h_test_failures);
        }
    }
    h_fixture_teardown();
    fprintf(stderr, "harness: %.2f s\n", (double)(h_now_ns() - t_all) / 1e9);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
