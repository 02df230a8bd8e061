package procspy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests of Events run the tracer for real, as root. A kernel that
// refuses it (ErrUnsupported) skips them, saying why: the refusal is the
// kernel's to make. Which events come depends on the hooks it attached
// (Diagnose lists them): each test asserts what those hooks must give, and
// nothing of those it refused.

// tracerWalker is a Walker whose tracer has started, or skips the test
// where the kernel refuses it.
func tracerWalker(t *testing.T) *Walker {
	t.Helper()
	w := mustNew(t)
	if _, err := w.EventsFD(); errors.Is(err, ErrUnsupported) {
		t.Skipf("the kernel refuses the tracer: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	return w
}

// attachedHooks is the set of hooks Diagnose says attached ("fentry/security_sock_graft").
func attachedHooks(t *testing.T, w *Walker) map[string]bool {
	t.Helper()
	text, err := w.Diagnose()
	if err != nil {
		t.Fatal(err)
	}
	hooks := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if h := strings.TrimPrefix(line, "BPF tracer "); h != line && strings.HasSuffix(h, ": attached") {
			hooks[strings.TrimSuffix(h, ": attached")] = true
		}
	}
	return hooks
}

// The helper process of TestEventsNameTheProcessThatActed: with
// PROCSPY_EVENTS_CHILD set, it listens on loopback, connects to itself,
// accepts and closes, the client end first (so it goes through
// FIN_WAIT1), and prints its pid, start time (field 22 of
// /proc/self/stat), name and the two ports.
func TestMain(m *testing.M) {
	if os.Getenv("PROCSPY_EVENTS_CHILD") == "1" {
		os.Exit(eventsChild())
	}
	os.Exit(m.Run())
}

func eventsChild() int {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a, err := l.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	fmt.Println(os.Getpid(), fields[19], strings.TrimSpace(string(comm)), addrPort(l.Addr()).Port(), addrPort(c.LocalAddr()).Port())
	c.Close()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	l.Close()
	return 0
}

// collect gathers events until one satisfies until, or 10 s have passed.
func collect(t *testing.T, w *Walker, until func(Event) bool) []Event {
	t.Helper()
	var got []Event
	done := false
	for deadline := time.Now().Add(10 * time.Second); !done && time.Now().Before(deadline); {
		if _, err := w.Events(200*time.Millisecond, TCP|UDP, func(e Event) bool {
			got = append(got, e)
			done = done || until(e)
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func TestEventsNameTheProcessThatActed(t *testing.T) {
	w := tracerWalker(t)
	hooks := attachedHooks(t, w)
	if !hooks["tp_btf/inet_sock_set_state"] {
		t.Fatalf("the tracer started without its state hook: %v", hooks)
	}
	// On a shared host other traffic can make the kernel drop events (a
	// full ring, or the program skipped while it already ran on that CPU:
	// an EventLost): a scenario whose events did not all come is run
	// again, three times at most. A wrong event fails at once.
	for attempt := 1; attempt <= 3; attempt++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PROCSPY_EVENTS_CHILD=1")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("the child: %v", err)
		}
		var pid, port, cport int
		var start uint64
		var name string
		if _, err := fmt.Sscan(string(out), &pid, &start, &name, &port, &cport); err != nil {
			t.Fatalf("the child said %q: %v", out, err)
		}
		child := Socket{StartTime: start, Pid: pid, Fd: -1, Name: name}
		// The last of it: the listener's close, in the child.
		got := collect(t, w, func(e Event) bool {
			return e.Kind == EventState && e.OldState == Listen && e.Connection.Owner != nil && e.Connection.Owner.Pid == pid
		})
		var ours []Event
		for _, e := range got {
			if e.Kind != EventLost && (int(e.Connection.Local.Port()) == port || int(e.Connection.Remote.Port()) == port) {
				ours = append(ours, e)
			}
		}
		if checkEvents(t, ours, child, uint16(port), uint16(cport), hooks) {
			return
		}
		t.Logf("attempt %d: an event of the scenario did not come; again", attempt)
	}
	t.Fatal("three times, an event of the scenario did not come")
}

// checkEvents reports whether every event the scenario must give came,
// and fails the test on a wrong one.
func checkEvents(t *testing.T, ours []Event, child Socket, port, cport uint16, hooks map[string]bool) bool {
	t.Helper()
	for _, e := range ours {
		if e.Time <= 0 || e.Cookie == 0 || e.Lost != 0 || (e.Kind == EventState && e.OldState == 0) {
			t.Fatalf("time, cookie, lost or old state: %+v", e)
		}
		// The acting process, or the one learnt for the socket: the child,
		// never anyone the softirq interrupted.
		if e.Connection.Owner != nil {
			o := *e.Connection.Owner
			o.Inode, o.Netns = 0, 0
			if o != child {
				t.Fatalf("owner %+v, want %+v: %+v", o, child, e)
			}
		}
	}
	one := func(what string, pred func(Event) bool) *Event {
		var found []Event
		for _, e := range ours {
			if pred(e) {
				found = append(found, e)
			}
		}
		if len(found) > 1 {
			t.Fatalf("%s: %d events: %+v", what, len(found), found)
		}
		if len(found) == 0 {
			return nil
		}
		return &found[0]
	}
	listen := one("listen", func(e Event) bool { return e.Kind == EventListen && e.Connection.Local.Port() == port })
	connect := one("connect", func(e Event) bool { return e.Kind == EventConnect && e.Connection.Remote.Port() == port })
	finWait1 := one("FIN_WAIT1", func(e Event) bool {
		return e.Kind == EventState && e.Connection.Local.Port() == cport && e.Connection.State == FinWait1
	})
	if listen == nil || connect == nil || finWait1 == nil {
		return false
	}
	for _, c := range []struct {
		e     *Event
		state State
	}{{listen, Listen}, {connect, SynSent}, {finWait1, FinWait1}} {
		if c.e.Connection.State != c.state || c.e.Connection.Owner == nil || c.e.Connection.Protocol != TCP {
			t.Fatalf("%v: %+v", c.state, *c.e)
		}
	}
	if finWait1.OldState != Established || finWait1.Cookie != connect.Cookie || listen.Cookie == connect.Cookie ||
		listen.Time >= connect.Time || listen.Connection.Local.Addr().String() != "127.0.0.1" {
		t.Fatalf("listen %+v, connect %+v, FIN_WAIT1 %+v", *listen, *connect, *finWait1)
	}
	// The fentry/fexit hooks: their events where attached, none elsewhere.
	count := func(k EventKind) int {
		n := 0
		for _, e := range ours {
			if e.Kind == k {
				n++
			}
		}
		return n
	}
	want := map[EventKind]int{EventAccept: btoi(hooks["fentry/security_sock_graft"]), EventClose: 0}
	if hooks["fentry/tcp_close"] {
		want[EventClose] = 3 // the client end, the accepted one, the listener
	}
	complete := true
	for k, n := range want {
		if got := count(k); got > n {
			t.Fatalf("%d %v events, at most %d with hooks %v", got, k, n, hooks)
		} else if got < n {
			complete = false
		}
	}
	return complete
}

// fdReadable waits at most timeout for fd to be readable (select(2)).
func fdReadable(t *testing.T, fd int, timeout time.Duration) bool {
	t.Helper()
	var set syscall.FdSet
	set.Bits[fd/64] |= 1 << (uint(fd) % 64)
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	n, err := syscall.Select(fd+1, &set, nil, nil, &tv)
	if err != nil && !errors.Is(err, syscall.EINTR) {
		t.Fatal(err)
	}
	return n > 0
}

func TestEventsFDIsReadableWhenAnEventWaits(t *testing.T) {
	w := tracerWalker(t)
	fd, err := w.EventsFD()
	if err != nil || fd < 0 {
		t.Fatalf("EventsFD = %d, %v", fd, err)
	}
	if again, _ := w.EventsFD(); again != fd {
		t.Fatalf("EventsFD changed: %d, then %d", fd, again)
	}
	for attempt := 0; attempt < 3; attempt++ { // again where other traffic made the kernel drop it
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port, inode := addrPort(l.Addr()).Port(), inodeOf(t, fdOf(t, l.(*net.TCPListener)))
		var mine *Event
		for deadline := time.Now().Add(5 * time.Second); mine == nil && time.Now().Before(deadline); {
			if !fdReadable(t, fd, time.Second) {
				continue
			}
			if _, err := w.Events(0, TCP, func(e Event) bool {
				if e.Kind == EventListen && e.Connection.Local.Port() == port {
					mine = &e
				}
				return true
			}); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		if mine != nil {
			if o := mine.Connection.Owner; o == nil || o.Pid != os.Getpid() || o.Fd != -1 || mine.Connection.Inode != inode {
				t.Fatalf("listen of this process: %+v (owner %+v)", *mine, o)
			}
			return
		}
	}
	t.Fatal("three listeners, and no listen event")
}

func TestSetEventsRing(t *testing.T) {
	w := mustNew(t)
	for _, bad := range []int{-1, 0, 1000, 1 << 15, 1<<16 + 1, 1 << 31} {
		if err := w.SetEventsRing(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("SetEventsRing(%d) = %v", bad, err)
		}
	}
	if err := w.SetEventsRing(1 << 16); err != nil {
		t.Fatal(err)
	}
	if _, err := w.EventsFD(); errors.Is(err, ErrUnsupported) {
		t.Skipf("the kernel refuses the tracer: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	var perr *Error
	if err := w.SetEventsRing(1 << 20); !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &perr) ||
		!strings.Contains(perr.Message, "started") {
		t.Fatalf("SetEventsRing once the tracer runs = %v", err)
	}
	if _, err := w.Events(-time.Second, TCP, func(Event) bool { return true }); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Events(negative timeout) = %v", err)
	}
	if _, err := w.Events(0, 0, func(Event) bool { return true }); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Events(no protocol) = %v", err)
	}
}

func TestEventsStopEndsAWaitingCall(t *testing.T) {
	w := tracerWalker(t)
	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		for {
			// UDP: the host's TCP traffic, however much, then ends a call
			// without a record to copy; call again until stopped.
			if _, err := w.Events(30*time.Second, UDP, func(Event) bool { return true }); err != nil {
				done <- result{err, time.Now()}
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	stopAt := time.Now()
	w.Stop()
	select {
	case r := <-done:
		if !errors.Is(r.err, ErrStopped) || r.at.Sub(stopAt) > 500*time.Millisecond {
			t.Fatalf("Events = %v, %v after Stop", r.err, r.at.Sub(stopAt))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Events did not return within 5 s of Stop")
	}
}

// A callback blocked inside an Events call: a second call is busy, a walk
// runs beside it, and false ends the call with a nil error; then a panic
// in the callback comes back from Events with the walker left usable.
func TestEventsBusyWalkBesideEarlyEndAndPanic(t *testing.T) {
	w := tracerWalker(t)
	inside, release := make(chan struct{}), make(chan struct{})
	type result struct {
		stats Stats
		err   error
		seen  []Event
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for len(r.seen) == 0 && r.err == nil {
			r.stats, r.err = w.Events(time.Second, TCP|UDP, func(e Event) bool {
				r.seen = append(r.seen, e)
				close(inside)
				<-release
				return false // one is enough: the rest wait for the next call
			})
		}
		done <- r
	}()
	l, err := net.Listen("tcp4", "127.0.0.1:0") // an event, should the host have none
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	select {
	case <-inside:
	case <-time.After(10 * time.Second):
		t.Fatal("no event in 10 s")
	}
	_, busy := w.Events(0, TCP, func(Event) bool { return true })
	n := 0
	_, walked := w.Connections(TCP, StatesAll, func(Connection) bool { n++; return true })
	close(release)
	r := <-done
	if !errors.Is(busy, ErrBusy) || walked != nil || n == 0 {
		t.Fatalf("a second Events call: %v; a walk beside: %d lines, %v", busy, n, walked)
	}
	// Counted: an event delivered; an EventLost first is not one.
	if r.err != nil || len(r.seen) != 1 || r.stats.Events != uint64(btoi(r.seen[0].Kind != EventLost)) {
		t.Fatalf("ended early: %v, %d events, %+v", r.err, len(r.seen), r.stats)
	}

	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want boom", p)
			}
		}()
		for {
			// A listen of its own each time: an event, should the host have none.
			l2, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			w.Events(time.Second, TCP|UDP, func(Event) bool { l2.Close(); panic("boom") })
			l2.Close()
		}
	}()
	if _, err := w.Events(0, TCP|UDP, func(Event) bool { return true }); err != nil {
		t.Fatalf("Events after a panic in its callback: %v", err)
	}
}

// EventKind's names are the ones the procspy command prints.
func TestEventKindNames(t *testing.T) {
	want := "connect accept close send state listen lost"
	var got []string
	for k := EventConnect; k <= EventLost; k++ {
		got = append(got, k.String())
	}
	if strings.Join(got, " ") != want || EventKind(99).String() != "EventKind(99)" {
		t.Fatalf("%v", got)
	}
}
