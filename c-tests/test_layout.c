/*
 * The ABI's struct layouts and constants, as API.md fixes them for x86_64
 * (LP64). With env PROCSPY_PRINT_LAYOUT=1 each struct is also printed on
 * stderr as `LAYOUT name size off1 off2 ...` (fields in declaration order)
 * for other clients to compare against.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int print_layout(void)
{
    const char *e = getenv("PROCSPY_PRINT_LAYOUT");
    return e && strcmp(e, "1") == 0;
}

void test_layout_socket(void)
{
    /* u64 inode, u64 netns, u64 start_time, i32 pid, i32 fd, ptr name, size_t name_len */
    CHECK_EQ(sizeof(procspy_socket), 48);
    CHECK_EQ(offsetof(procspy_socket, inode), 0);
    CHECK_EQ(offsetof(procspy_socket, netns), 8);
    CHECK_EQ(offsetof(procspy_socket, start_time), 16);
    CHECK_EQ(offsetof(procspy_socket, pid), 24);
    CHECK_EQ(offsetof(procspy_socket, fd), 28);
    CHECK_EQ(offsetof(procspy_socket, name), 32);
    CHECK_EQ(offsetof(procspy_socket, name_len), 40);
    CHECK_EQ(sizeof(((procspy_socket *)0)->pid), 4);
    CHECK_EQ(sizeof(((procspy_socket *)0)->name_len), 8);
    if (print_layout())
        fprintf(stderr, "LAYOUT procspy_socket %zu %zu %zu %zu %zu %zu %zu %zu\n",
                sizeof(procspy_socket), offsetof(procspy_socket, inode),
                offsetof(procspy_socket, netns), offsetof(procspy_socket, start_time),
                offsetof(procspy_socket, pid), offsetof(procspy_socket, fd),
                offsetof(procspy_socket, name), offsetof(procspy_socket, name_len));
}

void test_layout_connection(void)
{
    /* u64 inode 0, u64 netns 8, u8 protocol 16, u8 family 17, u8 state 18,
     * u8 local_addr[16] 19, u8 remote_addr[16] 35, u16 local_port 52 (51 -> 2-aligned),
     * u16 remote_port 54, u32 uid 56, ptr owner 64 (60 -> 8-aligned); size 72. */
    CHECK_EQ(sizeof(procspy_connection), 72);
    CHECK_EQ(offsetof(procspy_connection, inode), 0);
    CHECK_EQ(offsetof(procspy_connection, netns), 8);
    CHECK_EQ(offsetof(procspy_connection, protocol), 16);
    CHECK_EQ(offsetof(procspy_connection, family), 17);
    CHECK_EQ(offsetof(procspy_connection, state), 18);
    CHECK_EQ(offsetof(procspy_connection, local_addr), 19);
    CHECK_EQ(offsetof(procspy_connection, remote_addr), 35);
    CHECK_EQ(offsetof(procspy_connection, local_port), 52);
    CHECK_EQ(offsetof(procspy_connection, remote_port), 54);
    CHECK_EQ(offsetof(procspy_connection, uid), 56);
    CHECK_EQ(offsetof(procspy_connection, owner), 64);
    CHECK_EQ(sizeof(((procspy_connection *)0)->local_addr), 16);
    CHECK_EQ(sizeof(((procspy_connection *)0)->local_port), 2);
    if (print_layout())
        fprintf(stderr, "LAYOUT procspy_connection %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n",
                sizeof(procspy_connection), offsetof(procspy_connection, inode),
                offsetof(procspy_connection, netns), offsetof(procspy_connection, protocol),
                offsetof(procspy_connection, family), offsetof(procspy_connection, state),
                offsetof(procspy_connection, local_addr), offsetof(procspy_connection, remote_addr),
                offsetof(procspy_connection, local_port), offsetof(procspy_connection, remote_port),
                offsetof(procspy_connection, uid), offsetof(procspy_connection, owner));
}

void test_layout_walk_stats(void)
{
    /* nine u64, in API.md's order: frozen for ABI 0 */
    CHECK_EQ(sizeof(procspy_walk_stats), 72);
    CHECK_EQ(offsetof(procspy_walk_stats, namespaces), 0);
    CHECK_EQ(offsetof(procspy_walk_stats, processes), 8);
    CHECK_EQ(offsetof(procspy_walk_stats, skipped), 16);
    CHECK_EQ(offsetof(procspy_walk_stats, fds), 24);
    CHECK_EQ(offsetof(procspy_walk_stats, sockets), 32);
    CHECK_EQ(offsetof(procspy_walk_stats, bytes_written), 40);
    CHECK_EQ(offsetof(procspy_walk_stats, bytes_needed), 48);
    CHECK_EQ(offsetof(procspy_walk_stats, ticks), 56);
    CHECK_EQ(offsetof(procspy_walk_stats, elapsed_ns), 64);
    if (print_layout())
        fprintf(stderr, "LAYOUT procspy_walk_stats %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n",
                sizeof(procspy_walk_stats), offsetof(procspy_walk_stats, namespaces),
                offsetof(procspy_walk_stats, processes), offsetof(procspy_walk_stats, skipped),
                offsetof(procspy_walk_stats, fds), offsetof(procspy_walk_stats, sockets),
                offsetof(procspy_walk_stats, bytes_written), offsetof(procspy_walk_stats, bytes_needed),
                offsetof(procspy_walk_stats, ticks), offsetof(procspy_walk_stats, elapsed_ns));
}

void test_layout_change(void)
{
    /* enum kind 0 (an int), u8 old_state 4, ptr connection 8, ptr old_owner 16; size 24 */
    CHECK_EQ(sizeof(procspy_change), 24);
    CHECK_EQ(offsetof(procspy_change, kind), 0);
    CHECK_EQ(offsetof(procspy_change, old_state), 4);
    CHECK_EQ(offsetof(procspy_change, connection), 8);
    CHECK_EQ(offsetof(procspy_change, old_owner), 16);
    CHECK_EQ(sizeof(((procspy_change *)0)->kind), sizeof(int));
    if (print_layout())
        fprintf(stderr, "LAYOUT procspy_change %zu %zu %zu %zu %zu\n", sizeof(procspy_change),
                offsetof(procspy_change, kind), offsetof(procspy_change, old_state),
                offsetof(procspy_change, connection), offsetof(procspy_change, old_owner));
}

void test_layout_walk_stats_ext(void)
{
    /* u64s, appended to only */
    CHECK_EQ(sizeof(procspy_walk_stats_ext), 56);
    CHECK_EQ(offsetof(procspy_walk_stats_ext, accounted), 0);
    CHECK_EQ(offsetof(procspy_walk_stats_ext, dropped), 8);
    CHECK_EQ(offsetof(procspy_walk_stats_ext, netns_mismatch), 16);
    CHECK_EQ(offsetof(procspy_walk_stats_ext, snapshot_bytes), 24);
    CHECK_EQ(offsetof(procspy_walk_stats_ext, closed_lost), 32);
    CHECK_EQ(offsetof(procspy_walk_stats_ext, netns_found), 40);
    CHECK_EQ(offsetof(procspy_walk_stats_ext, netns_unreachable), 48);
    if (print_layout())
        fprintf(stderr, "LAYOUT procspy_walk_stats_ext %zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(procspy_walk_stats_ext),
                offsetof(procspy_walk_stats_ext, accounted), offsetof(procspy_walk_stats_ext, dropped),
                offsetof(procspy_walk_stats_ext, netns_mismatch), offsetof(procspy_walk_stats_ext, snapshot_bytes),
                offsetof(procspy_walk_stats_ext, closed_lost), offsetof(procspy_walk_stats_ext, netns_found),
                offsetof(procspy_walk_stats_ext, netns_unreachable));
}

void test_constants(void)
{
    CHECK_EQ(PROCSPY_OK, 0);
    CHECK_EQ(PROCSPY_STOPPED, 1);
    CHECK_EQ(PROCSPY_CALLBACK_ABORTED, 2);
    CHECK_EQ(PROCSPY_BUFFER_TOO_SMALL, 3);
    CHECK_EQ(PROCSPY_NULL_ARGUMENT, 4);
    CHECK_EQ(PROCSPY_INVALID_ARGUMENT, 5);
    CHECK_EQ(PROCSPY_IO, 6);
    CHECK_EQ(PROCSPY_BUSY, 7);
    CHECK_EQ(PROCSPY_PANIC, 8);
    CHECK_EQ(PROCSPY_UNSUPPORTED, 9);
    CHECK_EQ(sizeof(procspy_status), sizeof(int));
    CHECK_EQ(PROCSPY_PROTO_TCP, 1);
    CHECK_EQ(PROCSPY_PROTO_UDP, 2);
    CHECK_EQ((uint32_t)PROCSPY_STATES_ALL, 0xFFFFFFFFu);
    CHECK_EQ((uint32_t)PROCSPY_STATES_CONNECTED, (1u << 1) | (1u << 4) | (1u << 5) | (1u << 8));
    CHECK_EQ((uint32_t)PROCSPY_STATES_LISTEN, 1u << 10);
    CHECK_EQ(PROCSPY_STATE_ESTABLISHED, 1);
    CHECK_EQ(PROCSPY_STATE_TIME_WAIT, 6);
    CHECK_EQ(PROCSPY_STATE_CLOSE, 7);
    CHECK_EQ(PROCSPY_STATE_CLOSE_WAIT, 8);
    CHECK_EQ(PROCSPY_STATE_LISTEN, 10);
    CHECK_EQ(PROCSPY_CHANGE_APPEARED, 1);
    CHECK_EQ(PROCSPY_CHANGE_DISAPPEARED, 2);
    CHECK_EQ(PROCSPY_CHANGE_STATE, 3);
    CHECK_EQ(PROCSPY_CHANGE_OWNER, 4);
    CHECK_EQ(PROCSPY_CHANGE_SEEN_CLOSED, 5);
}
