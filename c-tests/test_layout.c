/*
 * The ABI's struct layouts and constants, as procspy.h declares them for x86_64
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

/* A field's offset, and the one this test holds the ABI to. */
struct field {
    const char *name;
    size_t off, want;
};
/* F(field, offset), within CHECK_LAYOUT, which names the struct. */
#define F(name, want) {#name, offsetof(layout_type_, name), want}

/* Checks a struct's size and its fields' offsets (all of them, in
 * declaration order); prints the LAYOUT line where asked. */
static void check_layout(const char *file, int line, const char *type, size_t size, size_t want_size,
                         const struct field *f, size_t n)
{
    char text[512];
    size_t i, len;
    h_check_eq(file, line, type, "its size", (long long)size, (long long)want_size);
    len = (size_t)snprintf(text, sizeof text, "LAYOUT %s %zu", type, size);
    for (i = 0; i < n; i++) {
        h_check_eq(file, line, f[i].name, "its offset", (long long)f[i].off, (long long)f[i].want);
        len += (size_t)snprintf(text + len, sizeof text - len, " %zu", f[i].off);
    }
    if (print_layout())
        fprintf(stderr, "%s\n", text);
}
#define CHECK_LAYOUT(type, size, ...) do { \
        typedef type layout_type_; \
        const struct field fields_[] = {__VA_ARGS__}; \
        check_layout(__FILE__, __LINE__, #type, sizeof(type), size, fields_, sizeof fields_ / sizeof fields_[0]); \
    } while (0)

void test_layout_socket(void)
{
    /* u64 inode, u64 netns, u64 start_time, i32 pid, i32 fd, ptr name, size_t name_len */
    CHECK_LAYOUT(procspy_socket, 48, F(inode, 0), F(netns, 8), F(start_time, 16), F(pid, 24), F(fd, 28),
                 F(name, 32), F(name_len, 40));
    CHECK_EQ(sizeof(((procspy_socket *)0)->pid), 4);
    CHECK_EQ(sizeof(((procspy_socket *)0)->name_len), 8);
}

void test_layout_connection(void)
{
    /* u64 inode 0, u64 netns 8, u8 protocol 16, u8 family 17, u8 state 18,
     * u8 local_addr[16] 19, u8 remote_addr[16] 35, u16 local_port 52 (51 -> 2-aligned),
     * u16 remote_port 54, u32 uid 56, ptr owner 64 (60 -> 8-aligned); size 72. */
    CHECK_LAYOUT(procspy_connection, 72, F(inode, 0), F(netns, 8), F(protocol, 16), F(family, 17),
                 F(state, 18), F(local_addr, 19), F(remote_addr, 35), F(local_port, 52), F(remote_port, 54),
                 F(uid, 56), F(owner, 64));
    CHECK_EQ(sizeof(((procspy_connection *)0)->local_addr), 16);
    CHECK_EQ(sizeof(((procspy_connection *)0)->local_port), 2);
}

void test_layout_walk_stats(void)
{
    /* nine u64, in the header's order: frozen for ABI 0 */
    CHECK_LAYOUT(procspy_walk_stats, 72, F(namespaces, 0), F(processes, 8), F(skipped, 16), F(fds, 24),
                 F(sockets, 32), F(bytes_written, 40), F(bytes_needed, 48), F(ticks, 56), F(elapsed_ns, 64));
}

void test_layout_change(void)
{
    /* enum kind 0 (an int), u8 old_state 4, ptr connection 8, ptr old_owner 16; size 24 */
    CHECK_LAYOUT(procspy_change, 24, F(kind, 0), F(old_state, 4), F(connection, 8), F(old_owner, 16));
    CHECK_EQ(sizeof(((procspy_change *)0)->kind), sizeof(int));
}

void test_layout_walk_stats_ext(void)
{
    /* u64s, appended to only */
    CHECK_LAYOUT(procspy_walk_stats_ext, 112, F(accounted, 0), F(dropped, 8), F(netns_mismatch, 16),
                 F(snapshot_bytes, 24), F(closed_lost, 32), F(netns_found, 40), F(netns_unreachable, 48),
                 F(netns_unreachable_fds, 56), F(closes_stalled, 64), F(files_truncated, 72),
                 F(tables_unreadable, 80), F(events, 88), F(events_lost, 96), F(events_dropped, 104));
    /* enum kind 0 (an int), u8 old_state 4, ptr connection 8, u64 time_ns 16, cookie 24, lost 32; size 40 */
    CHECK_LAYOUT(procspy_event, 40, F(kind, 0), F(old_state, 4), F(connection, 8), F(time_ns, 16), F(cookie, 24),
                 F(lost, 32));
    CHECK_EQ(PROCSPY_EVENT_CONNECT, 1);
    CHECK_EQ(PROCSPY_EVENT_LOST, 7);
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
