package procspy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fdOf is the descriptor of c itself (Control does not dup, unlike File).
func fdOf(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

func inodeOf(t *testing.T, fd int) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// ownSocketInodes is fd -> socket inode for every socket fd of this process.
func ownSocketInodes(t *testing.T) map[int]uint64 {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]uint64{}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
		if err != nil {
			t.Fatal(link)
		}
		out[fd] = ino
	}
	return out
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	panic("unexpected address type")
}

type sockets struct {
	l4, l6         *net.TCPListener // l6 nil without IPv6
	client, server *net.TCPConn
	udp            *net.UDPConn
}

func openSockets(t *testing.T) *sockets {
	t.Helper()
	s := &sockets{}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.l4 = l.(*net.TCPListener)
	t.Cleanup(func() { s.l4.Close() })
	if l, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		s.l6 = l.(*net.TCPListener)
		t.Cleanup(func() { s.l6.Close() })
	} else {
		t.Logf("no IPv6 loopback, [::1] checks skipped: %v", err)
	}
	c, err := net.Dial("tcp4", s.l4.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s.client = c.(*net.TCPConn)
	t.Cleanup(func() { s.client.Close() })
	sc, err := s.l4.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.server = sc.(*net.TCPConn)
	t.Cleanup(func() { s.server.Close() })
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s.udp = u
	t.Cleanup(func() { s.udp.Close() })
	return s
}

func mustNew(t *testing.T) *Walker {
	t.Helper()
	w, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func TestVersion(t *testing.T) {
	if v := Version(); !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("Version() = %q", v)
	}
}

// The state names come from the library (procspy_state_name).
func TestStateNames(t *testing.T) {
	tcp := []string{"ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
		"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}
	for i, name := range tcp {
		s := State(i + 1)
		if got := StateName(TCP, s); got != name {
			t.Errorf("StateName(TCP, %d) = %q, want %q", s, got, name)
		}
		if got := s.String(); got != name {
			t.Errorf("State(%d).String() = %q, want %q", s, got, name)
		}
	}
	if Listen.String() != "LISTEN" || NewSynRecv.String() != "NEW_SYN_RECV" {
		t.Errorf("constants: %s %s", Listen, NewSynRecv)
	}
	for _, c := range []struct {
		p    Protocol
		s    State
		want string
	}{
		{UDP, Close, "UNCONN"}, {UDP, Established, "ESTAB"}, {UDP, Listen, "LISTEN"},
		{TCP, 0, "UNKNOWN"}, {TCP, 13, "UNKNOWN"}, {UDP, 255, "UNKNOWN"},
		{0, Listen, "UNKNOWN"}, {TCP | UDP, Listen, "UNKNOWN"}, {Protocol(1 << 8), Listen, "UNKNOWN"},
	} {
		if got := StateName(c.p, c.s); got != c.want {
			t.Errorf("StateName(%v, %d) = %q, want %q", c.p, c.s, got, c.want)
		}
	}
	if got := (Connection{Protocol: UDP, State: Established}).StateName(); got != "ESTAB" {
		t.Errorf("Connection.StateName() = %q", got)
	}
}

// Every Status the binding names is the library's: procspy_status_str
// begins with PROCSPY_<its name>.
func TestStatusNames(t *testing.T) {
	for s, name := range map[Status]string{
		StatusOK: "OK", StatusStopped: "STOPPED", StatusCallbackAborted: "CALLBACK_ABORTED",
		StatusBufferTooSmall: "BUFFER_TOO_SMALL", StatusNullArgument: "NULL_ARGUMENT",
		StatusInvalidArgument: "INVALID_ARGUMENT", StatusIO: "IO", StatusBusy: "BUSY",
		StatusPanic: "PANIC", StatusUnsupported: "UNSUPPORTED",
	} {
		if got := s.String(); !strings.HasPrefix(got, "PROCSPY_"+name+":") {
			t.Errorf("Status(%d).String() = %q, want PROCSPY_%s: ...", int(s), got, name)
		}
	}
	err := error(&Error{Status: StatusUnsupported, Message: "m"})
	if !errors.Is(err, ErrUnsupported) || errors.Is(err, ErrIO) {
		t.Errorf("errors.Is(%v, ErrUnsupported) = false", err)
	}
}

func TestDiagnoseTellsWhatAPassLearnt(t *testing.T) {
	w := mustNew(t)
	before, err := w.Diagnose()
	if err != nil || !strings.Contains(before, "namespace files (PID/ns/net): not probed yet\n") {
		t.Fatalf("%q, %v", before, err)
	}
	if err := w.SetOwnerScan(OwnersProc); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Connections(TCP|UDP, StatesAll, func(Connection) bool { return true }); err != nil {
		t.Fatal(err)
	}
	after, err := w.Diagnose()
	if err != nil || !strings.Contains(after, "namespace files (PID/ns/net): yes\n") ||
		!strings.Contains(after, "BPF owner scan (task_file iterator): not loaded yet\n") {
		t.Fatalf("%q, %v", after, err)
	}
}

func TestWalkFindsOwnSockets(t *testing.T) {
	s := openSockets(t)
	w := mustNew(t)
	pid := os.Getpid()
	netns, err := w.NetnsOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	before := ownSocketInodes(t)
	got := map[int]uint64{}
	var name string
	stats, err := w.Walk(func(so Socket) bool {
		if so.Pid == pid {
			got[so.Fd] = so.Inode
			name = so.Name
			if so.Netns != netns {
				t.Errorf("fd %d: netns %d, want %d", so.Fd, so.Netns, netns)
			}
			if so.StartTime == 0 {
				t.Errorf("fd %d: start time 0", so.Fd)
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	after := ownSocketInodes(t)
	// The set of this process's socket fds and inodes, exactly.
	if len(got) != len(before) || len(before) != len(after) {
		t.Errorf("walk found %v, /proc/self/fd has %v (before) %v (after)", got, before, after)
	}
	for fd, ino := range before {
		if got[fd] != ino {
			t.Errorf("fd %d: walk says inode %d, fstat says %d", fd, got[fd], ino)
		}
	}
	// And the ones this test opened, by fstat of their own descriptors.
	conns := []syscall.Conn{s.l4, s.client, s.server, s.udp}
	if s.l6 != nil {
		conns = append(conns, s.l6)
	}
	for _, c := range conns {
		fd := fdOf(t, c)
		if ino := inodeOf(t, fd); got[fd] != ino {
			t.Errorf("fd %d (inode %d) not found by the walk (got %v)", fd, ino, got)
		}
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	if name != strings.TrimSpace(string(comm)) {
		t.Errorf("name %q, /proc/self/comm %q", name, comm)
	}
	if stats.Sockets < uint64(len(got)) || stats.Processes == 0 || stats.Namespaces == 0 {
		t.Errorf("stats %+v", stats)
	}
	t.Logf("walk: %d of this process's socket fds among %d sockets, %d processes, %d namespaces, %v",
		len(got), stats.Sockets, stats.Processes, stats.Namespaces, stats.Elapsed)
}

func TestConnectionsFindsOwnSockets(t *testing.T) {
	s := openSockets(t)
	w := mustNew(t)
	pid := os.Getpid()
	type want struct {
		what          string
		fd            int
		proto         Protocol
		family        int
		state         State
		stateName     string
		local, remote netip.AddrPort
	}
	wants := []want{
		{"listener 127.0.0.1", fdOf(t, s.l4), TCP, 4, Listen, "LISTEN", addrPort(s.l4.Addr()), netip.AddrPortFrom(netip.IPv4Unspecified(), 0)},
		{"client", fdOf(t, s.client), TCP, 4, Established, "ESTABLISHED", addrPort(s.client.LocalAddr()), addrPort(s.client.RemoteAddr())},
		{"accepted", fdOf(t, s.server), TCP, 4, Established, "ESTABLISHED", addrPort(s.server.LocalAddr()), addrPort(s.server.RemoteAddr())},
		{"udp 127.0.0.1", fdOf(t, s.udp), UDP, 4, Close, "UNCONN", addrPort(s.udp.LocalAddr()), netip.AddrPortFrom(netip.IPv4Unspecified(), 0)},
	}
	if s.l6 != nil {
		wants = append(wants, want{"listener [::1]", fdOf(t, s.l6), TCP, 6, Listen, "LISTEN", addrPort(s.l6.Addr()), netip.AddrPortFrom(netip.IPv6Unspecified(), 0)})
	}
	byInode := map[uint64]Connection{}
	var all int
	stats, err := w.Connections(TCP|UDP, StatesAll, func(c Connection) bool {
		all++
		if c.Owner != nil && c.Owner.Pid == pid {
			byInode[c.Inode] = c
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, wt := range wants {
		ino := inodeOf(t, wt.fd)
		c, ok := byInode[ino]
		if !ok {
			t.Errorf("%s (fd %d, inode %d) not found", wt.what, wt.fd, ino)
			continue
		}
		if c.Protocol != wt.proto || c.Family != wt.family || c.State != wt.state ||
			c.Local != wt.local || c.Remote != wt.remote || c.Owner.Fd != wt.fd ||
			c.UID != uint32(os.Getuid()) || c.Netns == 0 || c.StateName() != wt.stateName {
			t.Errorf("%s: got %+v owner %+v, want %+v", wt.what, c, *c.Owner, wt)
		}
		t.Logf("%-16s %s %s %s -> %s pid %d fd %d (%s)", wt.what, c.Protocol, c.StateName(), c.Local, c.Remote, c.Owner.Pid, c.Owner.Fd, c.Owner.Name)
	}
	t.Logf("connections: %d lines, %+v", all, stats)

	// A state filter lets only its states through.
	n := 0
	if _, err := w.Connections(TCP, StatesListen, func(c Connection) bool {
		if c.State != Listen || c.Protocol != TCP {
			t.Errorf("LISTEN-only walk delivered %+v", c)
		}
		if c.Owner != nil && c.Owner.Pid == pid {
			n++
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want := 1 + btoi(s.l6 != nil); n != want {
		t.Errorf("LISTEN-only walk: %d of our listeners, want %d", n, want)
	}
}

// Every source and owner scan gives our sockets the same records.
func TestSourcesAndOwnerScansAgree(t *testing.T) {
	openSockets(t)
	pid := os.Getpid()
	ours := func(w *Walker) []Connection {
		var got []Connection
		if _, err := w.Connections(TCP|UDP, StatesAll, func(c Connection) bool {
			if c.Owner != nil && c.Owner.Pid == pid {
				o := *c.Owner
				c.Owner = &o
				got = append(got, c)
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		sort.Slice(got, func(i, j int) bool { return got[i].Inode < got[j].Inode })
		return got
	}
	want := ours(mustNew(t))
	if len(want) < 4 {
		t.Fatalf("only %d of our sockets", len(want))
	}
	// The BPF scan alone: the same records, or the kernel lacks it.
	bpf := mustNew(t)
	if err := bpf.SetOwnerScan(OwnersBPF); err != nil {
		t.Fatal(err)
	}
	if _, err := bpf.Connections(TCP|UDP, StatesAll, func(Connection) bool { return true }); errors.Is(err, ErrUnsupported) {
		t.Logf("no BPF owner scan on this kernel: %v", err)
	} else if err != nil {
		t.Fatal(err)
	} else if got := ours(bpf); len(got) != len(want) {
		t.Fatalf("BPF scan: %d records, want %d", len(got), len(want))
	}
	for _, src := range []Source{SourceText, SourceNetlink, SourceAuto} {
		for _, scan := range []OwnerScan{OwnersProc, OwnersAuto} {
			w := mustNew(t)
			if err := w.SetSource(src); err != nil {
				t.Fatal(err)
			}
			if err := w.SetOwnerScan(scan); err != nil {
				t.Fatal(err)
			}
			got := ours(w)
			if len(got) != len(want) {
				t.Fatalf("source %d scan %d: %d records, want %d", src, scan, len(got), len(want))
			}
			for i := range got {
				g, x := got[i], want[i]
				if g.Inode != x.Inode || g.State != x.State || g.Local != x.Local || g.Remote != x.Remote ||
					g.Owner.Fd != x.Owner.Fd || g.Owner.Name != x.Owner.Name {
					t.Errorf("source %d scan %d: %+v, want %+v", src, scan, g, x)
				}
			}
		}
	}
	w := mustNew(t)
	if err := w.SetSource(3); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SetSource(3) = %v", err)
	}
	if err := w.SetOwnerScan(3); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SetOwnerScan(3) = %v", err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestErrors(t *testing.T) {
	_, err := New("/nonexistent/procspy-go-test")
	var perr *Error
	if !errors.Is(err, ErrIO) || !errors.As(err, &perr) || perr.Status != StatusIO ||
		!strings.Contains(perr.Message, "/nonexistent/procspy-go-test") {
		t.Fatalf("New(bad root) = %v", err)
	}
	t.Logf("bad root: %v", err)

	w := mustNew(t)
	_, err = w.Connections(0, StatesAll, func(Connection) bool { return true })
	if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &perr) || perr.Message == "" {
		t.Fatalf("Connections(0 protocols) = %v", err)
	}
	_, err = w.Connections(TCP, 0, func(Connection) bool { return true })
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Connections(0 states) = %v", err)
	}
	if errors.Is(err, ErrBusy) {
		t.Fatal("INVALID_ARGUMENT is also BUSY?")
	}
	w.Close()
	w.Close() // twice is fine
	if _, err := w.Walk(func(Socket) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Walk after Close = %v", err)
	}
	w.Stop() // no-op after Close
}

func TestCallbackDeclines(t *testing.T) {
	openSockets(t)
	w := mustNew(t)
	n := 0
	if _, err := w.Walk(func(Socket) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("Walk declined after one: n=%d err=%v", n, err)
	}
	n = 0
	if _, err := w.Connections(TCP|UDP, StatesAll, func(Connection) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("Connections declined after one: n=%d err=%v", n, err)
	}
}

func TestCallbackPanicIsReraised(t *testing.T) {
	openSockets(t)
	w := mustNew(t)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want boom", r)
			}
		}()
		w.Connections(TCP, StatesAll, func(Connection) bool { panic("boom") })
		t.Fatal("no panic")
	}()
	// The walker is usable afterwards (not left busy).
	if _, err := w.Walk(func(Socket) bool { return true }); err != nil {
		t.Fatalf("Walk after a panic: %v", err)
	}
}

// A callback that ends its goroutine (runtime.Goexit, as t.FailNow does)
// ends the call as a panic would: the library returns first, nothing of
// the caller's runs above its frames, and the walker is not left busy.
func TestCallbackGoexitEndsTheCallCleanly(t *testing.T) {
	openSockets(t)
	w := mustNew(t)
	for _, call := range []struct {
		name string
		run  func()
	}{
		{"Walk", func() { w.Walk(func(Socket) bool { runtime.Goexit(); return true }) }},
		{"Connections", func() { w.Connections(TCP|UDP, StatesAll, func(Connection) bool { runtime.Goexit(); return true }) }},
		{"Changes", func() { w.Changes(TCP|UDP, StatesAll, func(Change) bool { runtime.Goexit(); return true }) }},
	} {
		returned := make(chan bool, 1)
		go func() {
			defer func() { returned <- false }()
			call.run()
			returned <- true
		}()
		if <-returned {
			t.Fatalf("%s returned after its callback's Goexit", call.name)
		}
		if _, err := w.Connections(TCP, StatesAll, func(Connection) bool { return true }); err != nil {
			t.Fatalf("Connections after a Goexit in %s: %v", call.name, err)
		}
	}
	// Changes kept nothing of the call its callback ended: all appear again.
	n := 0
	if _, err := w.Changes(TCP|UDP, StatesAll, func(c Change) bool { n++; return c.Kind == ChangeAppeared }); err != nil || n == 0 {
		t.Fatalf("Changes after a Goexit: %d changes, %v", n, err)
	}
}

func TestSecondConcurrentWalkIsBusy(t *testing.T) {
	openSockets(t)
	w := mustNew(t)
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		first := true
		_, err := w.Walk(func(Socket) bool {
			if first {
				first = false
				close(inside)
				<-release // the walk stays in progress until the main goroutine has tried
			}
			return true
		})
		done <- err
	}()
	<-inside
	_, err1 := w.Walk(func(Socket) bool { return true })
	_, err2 := w.Connections(TCP, StatesAll, func(Connection) bool { return true })
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("first walk: %v", err)
	}
	var perr *Error
	if !errors.Is(err1, ErrBusy) || !errors.Is(err2, ErrBusy) || !errors.As(err1, &perr) || perr.Message == "" {
		t.Fatalf("concurrent calls returned %v, %v; want ErrBusy", err1, err2)
	}
	t.Logf("concurrent walk: %v", err1)
}

func TestStopFromAnotherGoroutine(t *testing.T) {
	w := mustNew(t)
	// One tick before each namespace, 10 s apart: unstopped, this walk
	// would take at least 10 s.
	if err := w.SetRateLimit(1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	type result struct {
		stats Stats
		err   error
		at    time.Time
	}
	done := make(chan result, 1)
	go func() {
		st, err := w.Walk(func(Socket) bool { return true })
		done <- result{st, err, time.Now()}
	}()
	time.Sleep(500 * time.Millisecond)
	stopAt := time.Now()
	w.Stop()
	select {
	case r := <-done:
		lag := r.at.Sub(stopAt)
		if !errors.Is(r.err, ErrStopped) {
			t.Fatalf("Walk = %v, want ErrStopped", r.err)
		}
		if lag > 250*time.Millisecond {
			t.Errorf("Walk returned %v after Stop", lag)
		}
		// It was in progress (waiting for its first tick) when stopped.
		if r.stats.Elapsed < 100*time.Millisecond {
			t.Errorf("walk elapsed %v: it had not started before Stop", r.stats.Elapsed)
		}
		t.Logf("stopped walk returned %v after Stop (ran %v): %v", lag, r.stats.Elapsed, r.err)
	case <-time.After(5 * time.Second):
		t.Fatal("Walk did not return within 5 s of Stop")
	}
	// Final: every later walk is stopped at once.
	if _, err := w.Connections(TCP, StatesAll, func(Connection) bool { return true }); !errors.Is(err, ErrStopped) {
		t.Fatalf("walk after Stop = %v", err)
	}
}

func TestStopDuringCallbackFromAnotherGoroutine(t *testing.T) {
	openSockets(t)
	w := mustNew(t)
	var once sync.Once
	first := make(chan struct{})
	n := 0
	_, err := w.Walk(func(Socket) bool {
		n++
		once.Do(func() {
			go func() { w.Stop(); close(first) }()
			<-first
		})
		return true
	})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("Walk = %v after %d sockets, want ErrStopped", err, n)
	}
}

// slowWalk starts a Walk on w that, unstopped, takes at least 10 s (a
// tick 10 s apart, before each namespace and every fdBlock fds); its
// result comes on the channel.
func slowWalk(t *testing.T, w *Walker, fdBlock uint64) <-chan error {
	t.Helper()
	if err := w.SetRateLimit(fdBlock, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Walk(func(Socket) bool { return true })
		done <- err
	}()
	return done
}

func TestCloseDuringWalk(t *testing.T) {
	w, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	done := slowWalk(t, w, 0)
	time.Sleep(100 * time.Millisecond)
	w.Close() // stops the walk; frees the walker when it has returned
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopped) && !errors.Is(err, ErrClosed) {
			t.Fatalf("Walk = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the walk")
	}
}

// changesAt runs one Changes call and keeps the changes in this process's
// namespace whose local port is one of ports.
func changesAt(t *testing.T, w *Walker, ports ...uint16) []Change {
	t.Helper()
	netns, err := w.NetnsOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var out []Change
	_, err = w.Changes(TCP|UDP, StatesAll, func(c Change) bool {
		for _, p := range ports {
			if c.Connection.Netns == netns && c.Connection.Local.Port() == p {
				out = append(out, c)
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestChanges(t *testing.T) {
	w := mustNew(t)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port, fd := addrPort(l.Addr()).Port(), fdOf(t, l.(*net.TCPListener))
	got := changesAt(t, w, port)
	if len(got) != 1 || got[0].Kind != ChangeAppeared || got[0].OldOwner != nil || got[0].OldState != 0 {
		t.Fatalf("first call: %+v", got)
	}
	if o := got[0].Connection.Owner; o == nil || o.Pid != os.Getpid() || o.Fd != fd || got[0].Connection.State != Listen {
		t.Fatalf("first call: owner %+v of %+v", o, got[0].Connection)
	}
	if got := changesAt(t, w, port); len(got) != 0 {
		t.Fatalf("nothing changed, yet %+v", got)
	}

	// Ended early: ErrCallbackAborted, and the next call reports it again.
	l.Close()
	n := 0
	if _, err := w.Changes(TCP|UDP, StatesAll, func(Change) bool { n++; return false }); !errors.Is(err, ErrCallbackAborted) || n != 1 {
		t.Fatalf("declined Changes: n=%d err=%v", n, err)
	}
	got = changesAt(t, w, port)
	if len(got) != 1 || got[0].Kind != ChangeDisappeared || got[0].OldState != Listen {
		t.Fatalf("after close: %+v", got)
	}
	if o := got[0].OldOwner; o == nil || o.Pid != os.Getpid() || o.Fd != fd || got[0].Connection.Owner == nil {
		t.Fatalf("disappeared with its owner as last seen: %+v", got[0])
	}

	// Opened and closed between two calls, in this namespace: the listener
	// and the server end are seen closed; the client, which closed first,
	// lingers in TIME_WAIT, a line that appears.
	l2, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp4", l2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l2.Accept()
	if err != nil {
		t.Fatal(err)
	}
	lport, cport := addrPort(l2.Addr()).Port(), addrPort(c.LocalAddr()).Port()
	c.Close()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	l2.Close()
	time.Sleep(50 * time.Millisecond)
	kinds := map[uint16][]string{}
	for _, ch := range changesAt(t, w, lport, cport) {
		p := ch.Connection.Local.Port()
		kinds[p] = append(kinds[p], ch.Kind.String()+" "+ch.Connection.StateName())
		if ch.Kind == ChangeSeenClosed && (ch.Connection.Owner != nil || ch.OldOwner != nil || ch.Connection.Inode != 0) {
			t.Errorf("seen closed with more than the kernel tells: %+v", ch)
		}
	}
	sort.Strings(kinds[lport])
	if strings.Join(kinds[lport], ",") != "closed CLOSE,closed CLOSE" || strings.Join(kinds[cport], ",") != "appeared TIME_WAIT" {
		t.Fatalf("a connection between two calls: %v", kinds)
	}
}

func TestStopToken(t *testing.T) {
	w := mustNew(t)
	tok, err := w.StopToken()
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	done := slowWalk(t, w, 1)
	time.Sleep(300 * time.Millisecond)
	tok.Stop()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("Walk = %v, want ErrStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Walk did not return within 5 s of the token's Stop")
	}
	w.Close()
	tok.Stop() // its walker is gone: nothing, and no fault
	tok.Close()
	tok.Stop() // closed: nothing
	tok.Close()
}

func TestStatsExt(t *testing.T) {
	w := mustNew(t)
	// Changes keeps a snapshot for the next call, and says how big.
	st, err := w.Changes(TCP|UDP, StatesAll, func(Change) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if st.SnapshotBytes == 0 {
		t.Errorf("Changes kept a snapshot of 0 bytes: %+v", st)
	}
	// A namespace no process is in, held by an ip netns bind mount alone.
	if os.Geteuid() != 0 {
		t.Skip("needs root, for a namespace of its own")
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs ip, for a namespace of its own")
	}
	name := fmt.Sprintf("procspy-go-%d", os.Getpid())
	if out, err := exec.Command(ipCmd, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command(ipCmd, "netns", "del", name).Run()
	var fi syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+name, &fi); err != nil {
		t.Fatal(err)
	}
	st, err = w.Query(Query{Netns: []uint64{fi.Ino}}, TCP|UDP, StatesAll, func(Connection) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if st.NetnsFound < 1 || st.NetnsUnreachable != 0 {
		t.Errorf("a namespace of a bind mount alone: %+v", st)
	}
}
