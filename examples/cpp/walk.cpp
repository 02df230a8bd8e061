// A C++17 client of libprocspy through procspy.hpp, the header-only
// wrapper installed with procspy.h. It checks something real: it opens its own
// loopback listeners and a connected pair, and exits non-zero unless the
// library finds each of them with this process's pid and the right fd, and
// unless changes calls report its listener and accepted end appearing once
// and a connection opened and closed between two of them as seen closed,
// and unless a query for its own pid delivers its sockets and nothing else,
// and, where the kernel runs the library's BPF tracer, unless live events
// name this process for its listen, connect and close.
//
//   g++ -std=c++17 -Wall -Wextra -Werror walk.cpp $(pkg-config --cflags --libs procspy)
//   g++ -std=c++17 -Wall -Wextra -Werror -I../../include walk.cpp
//       -L../../target/release -lprocspy -Wl,-rpath,$PWD/../../target/release   (one line)

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <procspy.hpp>


namespace {

// A socket this program holds: fd closed on destruction.
struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    Fd(Fd &&o) noexcept : fd(std::exchange(o.fd, -1)) {}
    Fd(const Fd &) = delete;
    ~Fd() {
        if (fd >= 0)
            close(fd);
    }
};

uint64_t inode_of(int fd) {
    struct stat st {};
    if (fstat(fd, &st) != 0)
        throw std::runtime_error("fstat failed");
    return st.st_ino;
}

uint16_t port_of(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) != 0)
        throw std::runtime_error("getsockname failed");
    return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in *>(&ss)->sin_port
                                         : reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
}

// Listens on 127.0.0.1 (family 4) or ::1 (family 6), any port; -1 if that family is unavailable.
int listen_loopback(int family) {
    int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc;
    if (family == 4) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
    } else {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_addr = in6addr_loopback;
        rc = bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
    }
    if (rc != 0 || listen(fd, 4) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int connect_v4(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0)
        throw std::runtime_error("connect to 127.0.0.1 failed");
    return fd;
}

std::string addr_str(const procspy_connection &c, bool local) {
    char buf[INET6_ADDRSTRLEN];
    const uint8_t *a = local ? c.local_addr : c.remote_addr;
    inet_ntop(c.family == 4 ? AF_INET : AF_INET6, a, buf, sizeof buf);
    std::string s = c.family == 4 ? buf : "[" + std::string(buf) + "]";
    return s + ":" + std::to_string(local ? c.local_port : c.remote_port);
}

struct Expect {
    const char *what;
    int fd;
    uint64_t inode;
    uint8_t state;
    const char *state_name;  // what procspy_state_name must call it
    uint16_t local_port;
    bool by_walk = false, by_connections = false;
};

int run() {
    const pid_t pid = getpid();
    std::vector<Fd> fds;
    std::vector<Expect> want;

    fds.emplace_back(listen_loopback(4));
    if (fds.back().fd < 0)
        throw std::runtime_error("cannot listen on 127.0.0.1");
    const uint16_t port4 = port_of(fds.back().fd);
    want.push_back({"listener 127.0.0.1", fds.back().fd, inode_of(fds.back().fd), PROCSPY_STATE_LISTEN, "LISTEN", port4});
    int l6 = listen_loopback(6);
    if (l6 >= 0) {
        fds.emplace_back(l6);
        want.push_back({"listener [::1]", l6, inode_of(l6), PROCSPY_STATE_LISTEN, "LISTEN", port_of(l6)});
    } else {
        std::printf("note: no IPv6 loopback, [::1] not checked\n");
    }
    fds.emplace_back(connect_v4(port4));
    int client = fds.back().fd;
    want.push_back({"client", client, inode_of(client), PROCSPY_STATE_ESTABLISHED, "ESTABLISHED", port_of(client)});
    fds.emplace_back(accept4(want[0].fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (fds.back().fd < 0)
        throw std::runtime_error("accept failed");
    int server = fds.back().fd;
    want.push_back({"accepted", server, inode_of(server), PROCSPY_STATE_ESTABLISHED, "ESTABLISHED", port4});

    procspy::Walker w;
    std::printf("libprocspy %s, pid %d\n", procspy_version(), static_cast<int>(pid));

    // 1. Walk: every socket fd of every process; ours must be there with our pid.
    size_t ours = 0;
    procspy_walk_stats ws = w.walk([&](const procspy_socket &s) {
        if (s.pid != pid)
            return true;
        ++ours;
        for (auto &e : want)
            if (e.inode == s.inode && e.fd == s.fd)
                e.by_walk = true;
        return true;
    });
    std::printf("walk: %llu socket fds in %llu processes, %llu namespaces; %zu are ours\n",
                static_cast<unsigned long long>(ws.sockets), static_cast<unsigned long long>(ws.processes),
                static_cast<unsigned long long>(ws.namespaces), ours);

    // 2. Connections: every TCP line, with its owner.
    std::map<uint64_t, std::string> lines;
    procspy_walk_stats cs = w.connections(PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, [&](const procspy_connection &c) {
        if (!c.owner || c.owner->pid != pid)
            return true;
        for (auto &e : want) {
            if (e.inode == c.inode && c.owner->fd == e.fd && c.state == e.state && c.local_port == e.local_port &&
                std::string(procspy_state_name(c.protocol, c.state)) == e.state_name) {
                e.by_connections = true;
                lines[c.inode] = addr_str(c, true) + " -> " + addr_str(c, false) + " " +
                                 procspy_state_name(c.protocol, c.state) + ", pid " + std::to_string(c.owner->pid) + " fd " +
                                 std::to_string(c.owner->fd) + " (" +
                                 std::string(c.owner->name, c.owner->name_len) + ")";
            }
        }
        return true;
    });
    std::printf("connections: %llu namespaces, %llu sockets\n",
                static_cast<unsigned long long>(cs.namespaces), static_cast<unsigned long long>(cs.sockets));

    // 3. A lambda that throws: the walk ends and the exception comes back here.
    bool rethrown = false;
    try {
        w.walk([](const procspy_socket &) -> bool { throw std::logic_error("from the callback"); });
    } catch (const std::logic_error &e) {
        rethrown = std::string(e.what()) == "from the callback";
    }

    // 4. A bad proc root is an Error with the status and the library's message.
    bool bad_root = false;
    try {
        procspy::Walker bad("/nonexistent/procspy-cpp");
    } catch (const procspy::Error &e) {
        bad_root = e.status() == PROCSPY_IO && std::string(e.what()).find("/nonexistent/procspy-cpp") != std::string::npos;
        std::printf("bad root: %s\n", e.what());
    }

    // 5. Changes: the v4 listener and the accepted end (its port) appear
    //    once, with our pid; then a connection
    //    that opens and closes between two calls is seen closed (its
    //    listener and server end; the client lingers in TIME_WAIT).
    struct stat self_ns {};
    if (stat("/proc/self/ns/net", &self_ns) != 0)
        throw std::runtime_error("stat /proc/self/ns/net failed");
    auto ours_at = [&](uint16_t port, std::vector<procspy_change_kind> &kinds) {
        return [&kinds, port, pid, netns = uint64_t(self_ns.st_ino)](const procspy_change &ch) {
            const procspy_connection &c = *ch.connection;
            if (c.netns == netns && c.local_port == port &&
                (ch.kind == PROCSPY_CHANGE_SEEN_CLOSED || (c.owner && c.owner->pid == pid)))
                kinds.push_back(ch.kind);
            return true;
        };
    };
    std::vector<procspy_change_kind> first, second, declined, closed;
    w.changes(PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, ours_at(port4, first));
    w.changes(PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, ours_at(port4, second));
    bool changes_ok =
        first == std::vector<procspy_change_kind>{PROCSPY_CHANGE_APPEARED, PROCSPY_CHANGE_APPEARED} && second.empty();
    {
        Fd l(listen_loopback(4));
        Fd c(connect_v4(port_of(l.fd)));
        Fd a(accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC));
        const uint16_t port = port_of(l.fd);
        close(std::exchange(c.fd, -1));
        usleep(20000);
        close(std::exchange(a.fd, -1));
        close(std::exchange(l.fd, -1));
        usleep(50000);
        // Declined: an Error, and the next call reports the same.
        try {
            w.changes(PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, [](const procspy_change &) { return false; });
            changes_ok = false;
        } catch (const procspy::Error &e) {
            changes_ok = changes_ok && e.status() == PROCSPY_CALLBACK_ABORTED;
        }
        w.changes(PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL, ours_at(port, closed));
        changes_ok = changes_ok &&
                     closed == std::vector<procspy_change_kind>{PROCSPY_CHANGE_SEEN_CLOSED, PROCSPY_CHANGE_SEEN_CLOSED};
        std::printf("changes: %zu appeared at the listener's port, then %zu; seen closed %zu\n", first.size(),
                    second.size(), closed.size());
        // procspy_walk_stats_ext: the snapshot kept for the next call.
        const procspy_walk_stats_ext ext = w.stats_ext();
        changes_ok = changes_ok && ext.snapshot_bytes > 0;
        std::printf("changes: a snapshot of %llu bytes kept\n", static_cast<unsigned long long>(ext.snapshot_bytes));
    }

    // 8. A stop token stops its walker's walks (every later one, at once),
    //    and outlives the walker harmlessly.
    bool token_ok = false;
    {
        std::optional<procspy::StopToken> token;
        {
            procspy::Walker w2;
            token.emplace(w2.stop_token());
            token->stop();
            try {
                w2.walk([](const procspy_socket &) { return true; });
            } catch (const procspy::Error &e) {
                token_ok = e.status() == PROCSPY_STOPPED;
            }
        }
        token->stop();  // its walker is gone: nothing
    }

    // 7. A query for this pid: its sockets only, each with it as owner; a
    //    pid that is gone is an Error naming it, never every process.
    bool query_ok = true;
    size_t queried = 0;
    w.query({std::vector<int32_t>{int32_t(pid)}, std::nullopt}, PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP,
            PROCSPY_STATES_ALL, [&](const procspy_connection &c) {
                query_ok = query_ok && c.owner && c.owner->pid == pid;
                queried += c.local_port == port4 && c.state == PROCSPY_STATE_LISTEN;
                return true;
            });
    query_ok = query_ok && queried == 1;
    try {
        w.query({std::vector<int32_t>{}, std::nullopt}, PROCSPY_PROTO_TCP, PROCSPY_STATES_ALL,
                [](const procspy_connection &) { return true; });
        query_ok = false;
    } catch (const procspy::Error &e) {
        query_ok = query_ok && e.status() == PROCSPY_INVALID_ARGUMENT;
        std::printf("empty pid set: %s\n", e.what());
    }

    // 9. Live events, where the kernel runs the tracer: a listen, a connect
    //    and the client's close (ESTABLISHED -> FIN_WAIT1) of this process
    //    name it (fd -1: an event knows the process, not its descriptor); an
    //    exception from the lambda comes back from events(). Other traffic
    //    can make the kernel drop events: three tries.
    bool events_ok = true;
    try {
        w.events_fd();
        events_ok = w.diagnose().find("BPF tracer tp_btf/inet_sock_set_state: attached\n") != std::string::npos;
        bool complete = false;
        for (int attempt = 0; events_ok && !complete && attempt < 3; attempt++) {
            Fd l(listen_loopback(4));
            const uint16_t port = port_of(l.fd);
            const uint64_t inode = inode_of(l.fd);
            Fd c(connect_v4(port));
            Fd a(accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC));
            const uint16_t cport = port_of(c.fd);
            close(std::exchange(c.fd, -1));
            close(std::exchange(a.fd, -1));
            close(std::exchange(l.fd, -1));
            bool listened = false, connected = false, fin_wait1 = false, closed = false;
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            while (!closed && std::chrono::steady_clock::now() < deadline) {
                w.events(200, PROCSPY_PROTO_TCP, [&](const procspy_event &e) {
                    const procspy_connection &c = *e.connection;
                    const bool mine = c.owner && c.owner->pid == pid && c.owner->fd == -1;
                    if (e.kind == PROCSPY_EVENT_LISTEN && c.local_port == port)
                        listened = mine && c.inode == inode && c.state == PROCSPY_STATE_LISTEN;
                    if (e.kind == PROCSPY_EVENT_CONNECT && c.remote_port == port)
                        connected = mine && c.state == PROCSPY_STATE_SYN_SENT;
                    if (e.kind == PROCSPY_EVENT_STATE && c.local_port == cport && c.state == PROCSPY_STATE_FIN_WAIT1)
                        fin_wait1 = mine && e.old_state == PROCSPY_STATE_ESTABLISHED;
                    // The listener's close: the last of it (its local port is 0 by then).
                    closed = closed || (e.kind == PROCSPY_EVENT_STATE && e.old_state == PROCSPY_STATE_LISTEN &&
                                        c.state == PROCSPY_STATE_CLOSE && mine && c.inode == inode);
                    return true;
                });
            }
            complete = listened && connected && fin_wait1;
            std::printf("events: attempt %d: listen %s, connect %s, FIN_WAIT1 %s\n", attempt + 1,
                        listened ? "ours" : "missing", connected ? "ours" : "missing", fin_wait1 ? "ours" : "missing");
        }
        events_ok = events_ok && complete;
        bool rethrown = false;
        Fd l(listen_loopback(4));  // an event, should the host have none
        try {
            for (int i = 0; i < 50; i++)
                w.events(200, PROCSPY_PROTO_TCP, [](const procspy_event &) -> bool { throw std::logic_error("boom"); });
        } catch (const std::logic_error &) {
            rethrown = true;
        }
        events_ok = events_ok && rethrown;
    } catch (const procspy::Error &e) {
        if (e.status() != PROCSPY_UNSUPPORTED)
            throw;
        std::printf("note: the kernel refuses the tracer, events not checked: %s\n", e.what());
    }

    int failures = 0;
    auto expect = [&failures](bool ok, const char *otherwise) {
        if (!ok) {
            ++failures;
            std::printf("FAIL %s\n", otherwise);
        }
    };
    for (const auto &e : want) {
        bool ok = e.by_walk && e.by_connections;
        failures += !ok;
        std::printf("%s %-18s fd %d inode %llu: walk %s, connections %s%s\n", ok ? "ok  " : "FAIL", e.what, e.fd,
                    static_cast<unsigned long long>(e.inode), e.by_walk ? "found" : "MISSING",
                    e.by_connections ? "found: " : "MISSING", lines[e.inode].c_str());
    }
    expect(rethrown, "callback exception was not rethrown");
    // 6. UDP's state names are ss's, from the library.
    expect(std::string(procspy_state_name(PROCSPY_PROTO_UDP, PROCSPY_STATE_CLOSE)) == "UNCONN" &&
               std::string(procspy_state_name(PROCSPY_PROTO_UDP, PROCSPY_STATE_ESTABLISHED)) == "ESTAB",
           "UDP state names are not UNCONN and ESTAB");
    expect(bad_root, "bad proc root did not give PROCSPY_IO with its path");
    expect(changes_ok, "changes did not report the listener and accepted end once, and the closed connection");
    expect(token_ok, "a stopped token's walker did not return PROCSPY_STOPPED");
    expect(query_ok, "a query for this pid did not deliver its listener alone, or an empty set was not refused");
    expect(events_ok, "live events did not name this process for its listen, connect and close");
    std::printf("%s\n", failures ? "walk.cpp: FAILED" : "walk.cpp: all found");
    return failures ? 1 : 0;
}

}  // namespace

int main() {
    try {
        return run();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "walk.cpp: %s\n", e.what());
        return 1;
    }
}
