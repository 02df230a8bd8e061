// The C side of the Go binding: the callbacks libprocspy calls, which
// forward to the exported Go functions, and the wrappers Go calls, which
// turn the runtime/cgo.Handle (an integer, never a Go pointer) into the
// library's void *userdata.
#include <stdint.h>

#include "procspy.h"
#include "_cgo_export.h"

static int socket_tramp(void *userdata, const procspy_socket *socket) {
    return procspyGoOnSocket((uintptr_t)userdata, (procspy_socket *)socket);
}

static int connection_tramp(void *userdata, const procspy_connection *connection) {
    return procspyGoOnConnection((uintptr_t)userdata, (procspy_connection *)connection);
}

static int event_tramp(void *userdata, const procspy_event *event) {
    return procspyGoOnEvent((uintptr_t)userdata, (procspy_event *)event);
}

static int change_tramp(void *userdata, const procspy_change *change) {
    return procspyGoOnChange((uintptr_t)userdata, (procspy_change *)change);
}

enum procspy_status procspy_go_walk(procspy_walker *walker, uintptr_t handle,
                               procspy_walk_stats *stats) {
    return procspy_walker_walk(walker, NULL, 0, socket_tramp, (void *)handle, stats);
}

enum procspy_status procspy_go_connections(procspy_walker *walker, uint32_t protocols,
                                      uint32_t state_mask, uintptr_t handle,
                                      procspy_walk_stats *stats) {
    return procspy_walker_connections(walker, NULL, 0, protocols, state_mask,
                                      connection_tramp, (void *)handle, stats);
}

enum procspy_status procspy_go_query(procspy_walker *walker, const int32_t *pids, size_t n_pids,
                                const uint64_t *netns, size_t n_netns, uint32_t flags,
                                uint32_t protocols, uint32_t state_mask, uintptr_t handle,
                                procspy_walk_stats *stats) {
    return procspy_walker_query(walker, pids, n_pids, netns, n_netns, flags, NULL, 0, protocols,
                                state_mask, connection_tramp, (void *)handle, stats);
}

enum procspy_status procspy_go_changes(procspy_walker *walker, uint32_t protocols,
                                  uint32_t state_mask, uintptr_t handle,
                                  procspy_walk_stats *stats) {
    return procspy_walker_changes(walker, NULL, 0, protocols, state_mask,
                                  change_tramp, (void *)handle, stats);
}

enum procspy_status procspy_go_events(procspy_walker *walker, uint32_t timeout_ms, uint32_t protocols,
                                 uintptr_t handle, procspy_walk_stats *stats) {
    return procspy_walker_events(walker, timeout_ms, protocols, event_tramp, (void *)handle, stats);
}
