// procspy.hpp: libprocspy for C++17, header-only, over the C API of
// procspy.h (installed with it; nothing of it is compiled into the library,
// so the C header stays the one binary interface).
//
//   procspy::Walker w;                                  // the host's /proc
//   w.connections(PROCSPY_PROTO_TCP, PROCSPY_STATES_LISTEN, [](const procspy_connection &c) {
//       if (c.owner) std::printf("%u: pid %d\n", c.local_port, c.owner->pid);
//       return true;                                    // false ends the walk
//   });
//   w.events(1000, PROCSPY_PROTO_TCP, [](const procspy_event &e) { ... });  // live, a second at most
//
// The walker lives in a unique_ptr with procspy_walker_free as its deleter;
// a failed call throws procspy::Error with its status and the library's
// message (procspy_last_error); callbacks are any callables, called through
// a trampoline, and an exception they throw ends the walk and is rethrown
// from the call, never unwinding through the library. Records are the C
// structs, lent for the duration of the callback.
//
//   g++ -std=c++17 prog.cpp $(pkg-config --cflags --libs procspy)

#ifndef PROCSPY_HPP
#define PROCSPY_HPP

#if __cplusplus < 201703L
#error "procspy.hpp needs C++17 (std::optional); from older C++, use procspy.h"
#endif

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "procspy.h"

namespace procspy {

class Error : public std::runtime_error {
public:
    Error(procspy_status status, const std::string &what)
        : std::runtime_error(what), status_(status) {}
    procspy_status status() const noexcept { return status_; }

private:
    procspy_status status_;
};

// Must run on the thread of the failing call (it does: callers throw at once).
inline std::string last_error() {
    std::vector<char> buf(procspy_last_error(nullptr, 0) + 1);
    size_t n = procspy_last_error(buf.data(), buf.size());
    return std::string(buf.data(), n < buf.size() ? n : buf.size() - 1);
}

inline void check(procspy_status s) {
    if (s != PROCSPY_OK)
        throw Error(s, last_error() + " (" + procspy_status_str(s) + ")");
}

// procspy_walker_stop_token: stops its walker's walks, and stays safe to
// use once that walker is gone (it then stops nothing); stop() is
// async-signal-safe. Freed with the object.
class StopToken {
public:
    void stop() const noexcept { procspy_stop_token_stop(t_.get()); }

private:
    friend class Walker;
    explicit StopToken(procspy_stop_token *t) noexcept : t_(t) {}
    struct Free {
        void operator()(procspy_stop_token *t) const noexcept { procspy_stop_token_free(t); }
    };
    std::unique_ptr<procspy_stop_token, Free> t_;
};

class Walker {
public:
    // An empty root means the host's /proc.
    explicit Walker(const std::string &proc_root = "") {
        procspy_walker *w = nullptr;
        check(procspy_walker_new(proc_root.empty() ? nullptr : proc_root.c_str(), &w));
        w_.reset(w);
    }

    // The handle, for the C functions this class does not wrap.
    procspy_walker *get() const noexcept { return w_.get(); }

    void set_rate_limit(uint64_t fd_block, uint64_t tick_ns) {
        check(procspy_walker_set_rate_limit(w_.get(), fd_block, tick_ns));
    }
    void set_source(uint32_t source) { check(procspy_walker_set_source(w_.get(), source)); }
    void set_owner_scan(uint32_t scan) { check(procspy_walker_set_owner_scan(w_.get(), scan)); }
    void stop() const noexcept { procspy_walker_stop(w_.get()); }
    StopToken stop_token() const {
        procspy_stop_token *t = nullptr;
        check(procspy_walker_stop_token(w_.get(), &t));
        return StopToken(t);
    }

    // The inode of pid's network namespace.
    uint64_t netns_of(int32_t pid) const {
        uint64_t out = 0;
        check(procspy_walker_netns_of(w_.get(), pid, &out));
        return out;
    }

    // The counters of the last call that ended which procspy_walk_stats
    // has no room for (procspy_walker_stats_ext).
    procspy_walk_stats_ext stats_ext() const {
        procspy_walk_stats_ext out{};
        check(procspy_walker_stats_ext(w_.get(), &out, sizeof out));
        return out;
    }

    // What the walker learnt of the running kernel, a line each; for people.
    std::string diagnose() const {
        size_t len = 0;
        procspy_status s = procspy_walker_diagnose(w_.get(), nullptr, 0, &len);
        if (s != PROCSPY_BUFFER_TOO_SMALL)
            check(s);
        std::vector<char> buf(len + 1);
        check(procspy_walker_diagnose(w_.get(), buf.data(), buf.size(), &len));
        return std::string(buf.data(), len);
    }

    // f(const procspy_socket &) -> bool (false ends the walk). An exception
    // thrown by f ends the walk and is rethrown here, never unwinding
    // through the library.
    template <class F> procspy_walk_stats walk(F &&f) {
        return call<procspy_socket>(f, true, [&](auto tramp, void *ud, procspy_walk_stats *st) {
            return procspy_walker_walk(w_.get(), nullptr, 0, tramp, ud, st);
        });
    }

    template <class F>
    procspy_walk_stats connections(uint32_t protocols, uint32_t states, F &&f) {
        return call<procspy_connection>(f, true, [&](auto tramp, void *ud, procspy_walk_stats *st) {
            return procspy_walker_connections(w_.get(), nullptr, 0, protocols, states, tramp, ud, st);
        });
    }

    // What a query restricts (procspy_walker_query): a set applies where
    // its optional holds one; an empty set is an Error, never "all".
    struct Query {
        std::optional<std::vector<int32_t>> pids;
        std::optional<std::vector<uint64_t>> netns;
        bool no_owners = false, every_line = false, process_namespaces_only = false;
    };

    // f(const procspy_connection &) -> bool, as for connections(), over
    // what q selects: a pid that names no process or a namespace no one
    // has throws Error (PROCSPY_INVALID_ARGUMENT) saying which.
    template <class F>
    procspy_walk_stats query(const Query &q, uint32_t protocols, uint32_t states, F &&f) {
        uint32_t flags = (q.pids ? PROCSPY_QUERY_PIDS : 0) | (q.netns ? PROCSPY_QUERY_NETNS : 0) |
                         (q.no_owners ? PROCSPY_QUERY_NO_OWNERS : 0) | (q.every_line ? PROCSPY_QUERY_EVERY_LINE : 0) |
                         (q.process_namespaces_only ? PROCSPY_QUERY_PROCESS_NAMESPACES_ONLY : 0);
        Call<F> call{f, nullptr, false};
        procspy_walk_stats stats{};
        finish(call, procspy_walker_query(w_.get(), q.pids ? q.pids->data() : nullptr, q.pids ? q.pids->size() : 0,
                                          q.netns ? q.netns->data() : nullptr, q.netns ? q.netns->size() : 0, flags,
                                          nullptr, 0, protocols, states,
                                          &Call<F>::template tramp<procspy_connection>, &call, &stats));
        return stats;
    }

    // f(const procspy_change &) -> bool: what changed since the last
    // changes call that succeeded. Unlike walk(), f returning false is no
    // success: the call keeps nothing and throws Error with
    // PROCSPY_CALLBACK_ABORTED, so the next one reports the same again.
    template <class F>
    procspy_walk_stats changes(uint32_t protocols, uint32_t states, F &&f) {
        return call<procspy_change>(f, false, [&](auto tramp, void *ud, procspy_walk_stats *st) {
            return procspy_walker_changes(w_.get(), nullptr, 0, protocols, states, tramp, ud, st);
        });
    }

    // f(const procspy_event &) -> bool: live events from the library's BPF
    // tracer (procspy_walker_events): what waits, or the first of what
    // comes within timeout_ms (0: no wait). The first call starts the
    // tracer; a kernel that refuses it throws Error with
    // PROCSPY_UNSUPPORTED, and diagnose() lists each hook. f returning
    // false ends the call early, no error: the rest wait for the next call.
    // stop() ends a waiting call (Error, PROCSPY_STOPPED).
    template <class F> procspy_walk_stats events(uint32_t timeout_ms, uint32_t protocols, F &&f) {
        return call<procspy_event>(f, true, [&](auto tramp, void *ud, procspy_walk_stats *st) {
            return procspy_walker_events(w_.get(), timeout_ms, protocols, tramp, ud, st);
        });
    }

    // Readable whenever an event waits, for the caller's own poll loop
    // (then events(0, ...)); starts the tracer. The walker's: never close it.
    int events_fd() const {
        int fd = -1;
        check(procspy_walker_events_fd(w_.get(), &fd));
        return fd;
    }

    // The tracer's ring in bytes (a power of two, 64 KiB to 1 GiB), before it starts.
    void set_events_ring(size_t bytes) { check(procspy_walker_set_events_ring(w_.get(), bytes)); }

private:
    struct Free {
        void operator()(procspy_walker *w) const noexcept { procspy_walker_free(w); }
    };
    std::unique_ptr<procspy_walker, Free> w_;

    template <class F> struct Call {
        F &f;
        std::exception_ptr error;
        bool declined;

        template <class Rec> static int tramp(void *userdata, const Rec *rec) {
            auto *self = static_cast<Call *>(userdata);
            try {
                if (self->f(*rec))
                    return 0;
                self->declined = true;
            } catch (...) {
                self->error = std::current_exception();
            }
            return 1;
        }
    };

    // Runs one call with f behind the trampoline for Rec, then finish().
    template <class Rec, class F, class Go> static procspy_walk_stats call(F &f, bool decline_is_ok, Go go) {
        Call<F> c{f, nullptr, false};
        procspy_walk_stats stats{};
        finish(c, go(&Call<F>::template tramp<Rec>, &c, &stats), decline_is_ok);
        return stats;
    }

    template <class C> static void finish(const C &call, procspy_status s, bool decline_is_ok = true) {
        if (s != PROCSPY_OK && !call.error) {
            std::string msg = last_error();  // before anything else can fail on this thread
            if (s == PROCSPY_CALLBACK_ABORTED && call.declined && decline_is_ok)
                return;
            throw Error(s, msg + " (" + procspy_status_str(s) + ")");
        }
        if (call.error)
            std::rethrow_exception(call.error);
    }
};

}  // namespace procspy

#endif
