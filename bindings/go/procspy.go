// Package procspy is the Go binding of libprocspy, which maps every socket
// on a Linux host to the process holding it, in every network namespace, by
// walking /proc.
//
// Building: cgo asks pkg-config for the library (#cgo pkg-config: procspy),
// so once libprocspy is installed (make install) nothing else is needed. An
// install pkg-config does not search by default, or one made into a
// DESTDIR, needs its directory in PKG_CONFIG_PATH, and the loader needs
// its library directory (ldconfig, or LD_LIBRARY_PATH) to run the program:
//
//	PKG_CONFIG_PATH=$DESTDIR/usr/local/lib/pkgconfig LD_LIBRARY_PATH=$DESTDIR/usr/local/lib go test
//
// Callbacks run synchronously on the calling goroutine, which stays on one
// OS thread for the whole call; records are copied before the callback
// sees them, so they may be kept.
package procspy

/*
#cgo pkg-config: procspy
#include <stdint.h>
#include <stdlib.h>
#include <procspy.h>

// What this binding is written against: ABI 0, version 0.1 or later (for
// procspy_walker_query, the stop token and procspy_walk_stats_ext).
#if !defined(PROCSPY_VERSION_MAJOR) || PROCSPY_VERSION_MAJOR != 0 || PROCSPY_VERSION_MINOR < 1
#error "the Go binding needs procspy.h of libprocspy 0.x, x >= 1"
#endif

enum procspy_status procspy_go_walk(procspy_walker *walker, uintptr_t handle,
                               procspy_walk_stats *stats);
enum procspy_status procspy_go_connections(procspy_walker *walker, uint32_t protocols,
                                      uint32_t state_mask, uintptr_t handle,
                                      procspy_walk_stats *stats);
enum procspy_status procspy_go_changes(procspy_walker *walker, uint32_t protocols,
                                  uint32_t state_mask, uintptr_t handle,
                                  procspy_walk_stats *stats);
enum procspy_status procspy_go_events(procspy_walker *walker, uint32_t timeout_ms, uint32_t protocols,
                                 uintptr_t handle, procspy_walk_stats *stats);
enum procspy_status procspy_go_query(procspy_walker *walker, const int32_t *pids, size_t n_pids,
                                const uint64_t *netns, size_t n_netns, uint32_t flags,
                                uint32_t protocols, uint32_t state_mask, uintptr_t handle,
                                procspy_walk_stats *stats);
*/
import "C"

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Version is the library's "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.procspy_version()) }

// Status is a procspy_status. Every Status is also an error, so the
// sentinels below work with errors.Is on the *Error a call returns.
type Status int

// The library's statuses (values fixed by the ABI).
const (
	StatusOK              Status = C.PROCSPY_OK
	StatusStopped         Status = C.PROCSPY_STOPPED
	StatusCallbackAborted Status = C.PROCSPY_CALLBACK_ABORTED
	StatusBufferTooSmall  Status = C.PROCSPY_BUFFER_TOO_SMALL
	StatusNullArgument    Status = C.PROCSPY_NULL_ARGUMENT
	StatusInvalidArgument Status = C.PROCSPY_INVALID_ARGUMENT
	StatusIO              Status = C.PROCSPY_IO
	StatusBusy            Status = C.PROCSPY_BUSY
	StatusPanic           Status = C.PROCSPY_PANIC
	StatusUnsupported     Status = C.PROCSPY_UNSUPPORTED
)

// Sentinels for errors.Is.
var (
	ErrStopped         error = StatusStopped
	ErrCallbackAborted error = StatusCallbackAborted
	ErrBufferTooSmall  error = StatusBufferTooSmall
	ErrNullArgument    error = StatusNullArgument
	ErrInvalidArgument error = StatusInvalidArgument
	ErrIO              error = StatusIO
	ErrBusy            error = StatusBusy
	ErrPanic           error = StatusPanic
	ErrUnsupported     error = StatusUnsupported
	// ErrClosed is returned by calls on a Walker after Close.
	ErrClosed = errors.New("procspy: walker is closed")
)

// String is procspy_status_str: "PROCSPY_BUSY: a walk on this walker is already running".
func (s Status) String() string {
	return C.GoString(C.procspy_status_str(C.procspy_status(s)))
}

func (s Status) Error() string { return "procspy: " + s.String() }

// Error is a failed call: its status and the library's message for it
// (procspy_last_error, taken on the OS thread that made the call).
type Error struct {
	Status  Status
	Message string // "procspy_walker_new: /nope: No such file or directory"
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Status.Error()
	}
	name := e.Status.String()
	if i := strings.IndexByte(name, ':'); i > 0 {
		name = name[:i]
	}
	return "procspy: " + e.Message + " (" + name + ")"
}

// Unwrap makes errors.Is(err, procspy.ErrBusy) and the like work.
func (e *Error) Unwrap() error { return e.Status }

// lastError must run on the OS thread of the failing call.
func lastError() string {
	n := C.procspy_last_error(nil, 0)
	if n == 0 {
		return ""
	}
	buf := make([]byte, int(n)+1)
	n = C.procspy_last_error((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if int(n) < len(buf) {
		buf = buf[:n]
	} else {
		buf = buf[:len(buf)-1]
	}
	return string(buf)
}

// Protocol selects socket tables for Connections; combine with |.
type Protocol uint32

// Protocols (each covers IPv4 and IPv6).
const (
	TCP Protocol = C.PROCSPY_PROTO_TCP
	UDP Protocol = C.PROCSPY_PROTO_UDP
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case TCP | UDP:
		return "tcp|udp"
	}
	return fmt.Sprintf("Protocol(%d)", uint32(p))
}

// State is a kernel socket state number (include/net/tcp_states.h).
type State uint8

// Kernel socket states. UDP: ESTABLISHED is a connected socket, Close an
// unconnected one.
const (
	Established State = C.PROCSPY_STATE_ESTABLISHED
	SynSent     State = C.PROCSPY_STATE_SYN_SENT
	SynRecv     State = C.PROCSPY_STATE_SYN_RECV
	FinWait1    State = C.PROCSPY_STATE_FIN_WAIT1
	FinWait2    State = C.PROCSPY_STATE_FIN_WAIT2
	TimeWait    State = C.PROCSPY_STATE_TIME_WAIT
	Close       State = C.PROCSPY_STATE_CLOSE
	CloseWait   State = C.PROCSPY_STATE_CLOSE_WAIT
	LastAck     State = C.PROCSPY_STATE_LAST_ACK
	Listen      State = C.PROCSPY_STATE_LISTEN
	Closing     State = C.PROCSPY_STATE_CLOSING
	NewSynRecv  State = C.PROCSPY_STATE_NEW_SYN_RECV
)

// StateName is the library's name of state s in a table of protocol p
// (procspy_state_name), as the procspy command prints it: TCP's kernel
// names ("ESTABLISHED", "LISTEN", ...); for UDP, "UNCONN" (Close,
// unconnected) and "ESTAB" (Established, connected); "UNKNOWN" for a state
// the kernel does not define, or a protocol other than TCP or UDP.
func StateName(p Protocol, s State) string {
	return C.GoString(C.procspy_state_name(C.uint32_t(p), C.uint32_t(s)))
}

// String is the kernel's name of the state ("LISTEN"), as StateName gives
// it for TCP; "UNKNOWN" for a number the kernel does not define.
func (s State) String() string { return StateName(TCP, s) }

// Mask is the StateMask holding only s.
func (s State) Mask() StateMask {
	if s >= 32 {
		return 0
	}
	return StateMask(1) << s
}

// StateMask selects states for Connections: bit 1<<state.
type StateMask uint32

// Common masks.
const (
	StatesAll       StateMask = C.PROCSPY_STATES_ALL
	StatesConnected StateMask = C.PROCSPY_STATES_CONNECTED // ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT
	StatesListen    StateMask = C.PROCSPY_STATES_LISTEN
)

// States builds a mask from states.
func States(states ...State) StateMask {
	var m StateMask
	for _, s := range states {
		m |= s.Mask()
	}
	return m
}

// Has reports whether s is in m.
func (m StateMask) Has(s State) bool { return m&s.Mask() != 0 }

// Socket is one socket file descriptor of one process (procspy_socket).
type Socket struct {
	Inode     uint64 // socket inode: the inode column of /proc/net/tcp etc.
	Netns     uint64 // inode of the process's network namespace
	StartTime uint64 // clock ticks after boot; (Pid, StartTime) names a process
	Pid       int
	Fd        int
	Name      string // comm; any bytes but NUL
}

// Connection is one line of a kernel socket table (procspy_connection).
type Connection struct {
	Inode    uint64 // 0 for sockets no longer owned (TIME_WAIT)
	Netns    uint64 // namespace whose table listed it
	Protocol Protocol
	Family   int // 4 or 6 (a v4-mapped address in tcp6 stays 6)
	State    State
	Local    netip.AddrPort // IPv4 as a 4-byte Addr, IPv6 (also v4-mapped) as 16
	Remote   netip.AddrPort
	UID      uint32
	Owner    *Socket // nil if no holder is visible
}

// StateName is the state's name as the procspy command prints it:
// StateName(c.Protocol, c.State), so "UNCONN" and "ESTAB" for UDP.
func (c Connection) StateName() string { return StateName(c.Protocol, c.State) }

// Stats is what a walk saw: procspy_walk_stats, then the counters of
// procspy_walk_stats_ext, which the frozen C struct has no room for.
type Stats struct {
	Namespaces   uint64
	Processes    uint64
	Skipped      uint64
	Fds          uint64
	Sockets      uint64
	BytesWritten uint64
	BytesNeeded  uint64
	Ticks        uint64
	Elapsed      time.Duration

	Accounted        uint64 // Connections: namespaces listed from the BPF owner scan alone
	Dropped          uint64 // netlink messages not believed and dropped
	NetnsMismatch    uint64 // pids skipped: their namespace was not the one grouped by
	SnapshotBytes    uint64 // Changes: the snapshot kept for the next call
	ClosedLost       uint64 // Changes: times destroy notifications were lost
	NetnsFound       uint64 // namespaces found that no process is in
	NetnsUnreachable uint64 // of those, the ones whose tables could not be read
	// NetnsUnreachableFds: of those, the ones not entered for want of an fd.
	NetnsUnreachableFds uint64
	ClosesStalled       uint64 // sockets not asked: copies' closes had not returned
	FilesTruncated      uint64 // files not read whole (a mountinfo past its bound)
	TablesUnreadable    uint64 // tables of a namespace that could not be read
	Events              uint64 // Events: events delivered
	EventsLost          uint64 // Events: events the kernel could not write (its ring full)
	EventsDropped       uint64 // Events: ring records that made no sense, dropped
}

func goStats(s *C.procspy_walk_stats, e *C.procspy_walk_stats_ext) Stats {
	return Stats{
		Namespaces:       uint64(s.namespaces),
		Processes:        uint64(s.processes),
		Skipped:          uint64(s.skipped),
		Fds:              uint64(s.fds),
		Sockets:          uint64(s.sockets),
		BytesWritten:     uint64(s.bytes_written),
		BytesNeeded:      uint64(s.bytes_needed),
		Ticks:            uint64(s.ticks),
		Elapsed:          time.Duration(s.elapsed_ns),
		Accounted:        uint64(e.accounted),
		Dropped:          uint64(e.dropped),
		NetnsMismatch:    uint64(e.netns_mismatch),
		SnapshotBytes:    uint64(e.snapshot_bytes),
		ClosedLost:       uint64(e.closed_lost),
		NetnsFound:       uint64(e.netns_found),
		NetnsUnreachable: uint64(e.netns_unreachable),

		NetnsUnreachableFds: uint64(e.netns_unreachable_fds),
		ClosesStalled:       uint64(e.closes_stalled),
		FilesTruncated:      uint64(e.files_truncated),
		TablesUnreadable:    uint64(e.tables_unreadable),
		Events:              uint64(e.events),
		EventsLost:          uint64(e.events_lost),
		EventsDropped:       uint64(e.events_dropped),
	}
}

func goSocket(s *C.procspy_socket) Socket {
	return Socket{
		Inode:     uint64(s.inode),
		Netns:     uint64(s.netns),
		StartTime: uint64(s.start_time),
		Pid:       int(s.pid),
		Fd:        int(s.fd),
		Name:      C.GoStringN(s.name, C.int(s.name_len)),
	}
}

func goAddr(family C.uint8_t, b *[16]C.uint8_t, port C.uint16_t) netip.AddrPort {
	var a [16]byte
	for i := range a {
		a[i] = byte(b[i])
	}
	if family == 4 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{a[0], a[1], a[2], a[3]}), uint16(port))
	}
	return netip.AddrPortFrom(netip.AddrFrom16(a), uint16(port))
}

func goConnection(c *C.procspy_connection) Connection {
	conn := Connection{
		Inode:    uint64(c.inode),
		Netns:    uint64(c.netns),
		Protocol: Protocol(c.protocol),
		Family:   int(c.family),
		State:    State(c.state),
		Local:    goAddr(c.family, &c.local_addr, c.local_port),
		Remote:   goAddr(c.family, &c.remote_addr, c.remote_port),
		UID:      uint32(c.uid),
	}
	if c.owner != nil {
		o := goSocket(c.owner)
		conn.Owner = &o
	}
	return conn
}

// Walker walks one proc root. It is safe for concurrent use: one walk at a
// time runs (a concurrent one fails with ErrBusy), and Stop and Close may
// be called from any goroutine.
type Walker struct {
	mu     sync.Mutex
	p      *C.procspy_walker
	active int // calls in flight; the walker is freed when Close finds or leaves it 0
	closed bool
}

// New creates a walker over procRoot ("" = the host's /proc).
func New(procRoot string) (*Walker, error) {
	var croot *C.char
	if procRoot != "" {
		if strings.IndexByte(procRoot, 0) >= 0 {
			return nil, &Error{Status: StatusInvalidArgument, Message: "procspy.New: proc root contains a NUL byte"}
		}
		croot = C.CString(procRoot)
		defer C.free(unsafe.Pointer(croot))
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var p *C.procspy_walker
	if st := C.procspy_walker_new(croot, &p); st != C.PROCSPY_OK {
		return nil, &Error{Status: Status(st), Message: lastError()}
	}
	w := &Walker{p: p}
	runtime.SetFinalizer(w, (*Walker).Close)
	return w, nil
}

func (w *Walker) enter() (*C.procspy_walker, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	w.active++
	return w.p, nil
}

func (w *Walker) exit() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.active--
	if w.closed && w.active == 0 && w.p != nil {
		C.procspy_walker_free(w.p)
		w.p = nil
	}
}

// Close stops any walk in progress and frees the walker (at once, or when
// the calls still running on it return). Later calls return ErrClosed.
func (w *Walker) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	runtime.SetFinalizer(w, nil)
	C.procspy_walker_stop(w.p)
	if w.active == 0 {
		C.procspy_walker_free(w.p)
		w.p = nil
	}
}

// Stop ends the walk in progress within one block of work (at once if it
// is waiting for a tick), and makes every later walk fail with ErrStopped.
// Final. Safe from any goroutine, also from a callback.
func (w *Walker) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		C.procspy_walker_stop(w.p)
	}
}

// StopToken stops the walks of the Walker it was made from, and stays safe
// to use after that Walker is closed (it then stops nothing):
// procspy_walker_stop_token.
type StopToken struct {
	mu sync.Mutex
	p  *C.procspy_stop_token
}

// StopToken makes a StopToken for w. Close it when done (a finalizer
// closes it otherwise).
func (w *Walker) StopToken() (*StopToken, error) {
	var p *C.procspy_stop_token
	if err := w.call(func(wp *C.procspy_walker) C.enum_procspy_status {
		return C.procspy_walker_stop_token(wp, &p)
	}); err != nil {
		return nil, err
	}
	t := &StopToken{p: p}
	runtime.SetFinalizer(t, (*StopToken).Close)
	return t, nil
}

// Stop is Stop of the token's Walker, or nothing once that Walker is
// closed or the token is. Safe from any goroutine.
func (t *StopToken) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p != nil {
		C.procspy_stop_token_stop(t.p)
	}
}

// Close frees the token; Stop does nothing after it.
func (t *StopToken) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p != nil {
		runtime.SetFinalizer(t, nil)
		C.procspy_stop_token_free(t.p)
		t.p = nil
	}
}

// call runs f with the walker on one locked OS thread, so that a failure's
// message is read from the thread that left it.
func (w *Walker) call(f func(*C.procspy_walker) C.enum_procspy_status) error {
	p, err := w.enter()
	if err != nil {
		return err
	}
	defer w.exit()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if st := f(p); st != C.PROCSPY_OK {
		return &Error{Status: Status(st), Message: lastError()}
	}
	return nil
}

// SetRateLimit paces walks: a tick before each namespace and after every
// fdBlock fd stats (0 = no per-fd limit), ticks tick apart (0 = never wait).
// May be called during a walk; takes effect at the next tick.
func (w *Walker) SetRateLimit(fdBlock uint64, tick time.Duration) error {
	if tick < 0 {
		return &Error{Status: StatusInvalidArgument, Message: "procspy.SetRateLimit: negative tick"}
	}
	return w.call(func(p *C.procspy_walker) C.enum_procspy_status {
		return C.procspy_walker_set_rate_limit(p, C.uint64_t(fdBlock), C.uint64_t(tick))
	})
}

// Source says where Connections reads the kernel's socket tables.
type Source uint32

// Sources: SourceAuto (the default) lists a namespace the BPF owner scan
// accounts for without its tables, then uses netlink, then text.
const (
	SourceAuto    Source = C.PROCSPY_SOURCE_AUTO
	SourceText    Source = C.PROCSPY_SOURCE_TEXT
	SourceNetlink Source = C.PROCSPY_SOURCE_NETLINK
)

// SetSource chooses where Connections reads the tables; next call on.
func (w *Walker) SetSource(s Source) error {
	return w.call(func(p *C.procspy_walker) C.enum_procspy_status {
		return C.procspy_walker_set_source(p, C.uint32_t(s))
	})
}

// OwnerScan says how Connections finds each socket's owner.
type OwnerScan uint32

// Owner scans: OwnersAuto (the default) uses the kernel's BPF task_file
// iterator where it loads (CAP_BPF, CAP_PERFMON), PID/fd elsewhere.
const (
	OwnersAuto OwnerScan = C.PROCSPY_OWNERS_AUTO
	OwnersProc OwnerScan = C.PROCSPY_OWNERS_PROC
	OwnersBPF  OwnerScan = C.PROCSPY_OWNERS_BPF
)

// SetOwnerScan chooses how Connections finds owners; next call on.
func (w *Walker) SetOwnerScan(s OwnerScan) error {
	return w.call(func(p *C.procspy_walker) C.enum_procspy_status {
		return C.procspy_walker_set_owner_scan(p, C.uint32_t(s))
	})
}

// NetnsOf is the inode of pid's network namespace.
func (w *Walker) NetnsOf(pid int) (uint64, error) {
	var out C.uint64_t
	if pid <= 0 || pid > 1<<31-1 {
		return 0, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("procspy.NetnsOf: pid %d out of range", pid)}
	}
	err := w.call(func(p *C.procspy_walker) C.enum_procspy_status {
		return C.procspy_walker_netns_of(p, C.int32_t(pid), &out)
	})
	return uint64(out), err
}

// Diagnose tells what the walker has learnt of the running kernel, a line
// each ("what: answer"): its probes and the BPF owner scan
// (procspy_walker_diagnose). For people: the wording may change.
func (w *Walker) Diagnose() (string, error) {
	var size C.size_t
	for {
		buf := make([]byte, int(size)+1)
		err := w.call(func(p *C.procspy_walker) C.enum_procspy_status {
			return C.procspy_walker_diagnose(p, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &size)
		})
		if err == nil {
			return string(buf[:size]), nil
		}
		if !errors.Is(err, ErrBufferTooSmall) {
			return "", err
		}
	}
}

// ChangeKind is what happened to a connection between two Changes calls
// (procspy_change_kind).
type ChangeKind int

// Change kinds (values fixed by the ABI).
const (
	ChangeAppeared    ChangeKind = C.PROCSPY_CHANGE_APPEARED    // listed now, not by the previous call
	ChangeDisappeared ChangeKind = C.PROCSPY_CHANGE_DISAPPEARED // listed by the previous call, not now
	ChangeState       ChangeKind = C.PROCSPY_CHANGE_STATE       // listed by both, in another state
	ChangeOwner       ChangeKind = C.PROCSPY_CHANGE_OWNER       // listed by both, with another owner
	ChangeSeenClosed  ChangeKind = C.PROCSPY_CHANGE_SEEN_CLOSED // opened and closed between the calls
)

// String is the kind as the procspy command prints it: "appeared",
// "disappeared", "state", "owner", "closed".
func (k ChangeKind) String() string {
	switch k {
	case ChangeAppeared:
		return "appeared"
	case ChangeDisappeared:
		return "disappeared"
	case ChangeState:
		return "state"
	case ChangeOwner:
		return "owner"
	case ChangeSeenClosed:
		return "closed"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one change (procspy_change), copied.
type Change struct {
	Kind ChangeKind
	// Connection is the connection now; for ChangeDisappeared as the
	// previous call saw it; for ChangeSeenClosed as the kernel's destroy
	// notification told it (inode 0, no owner).
	Connection Connection
	OldState   State   // at the previous call; 0 for ChangeAppeared and ChangeSeenClosed
	OldOwner   *Socket // at the previous call; nil for those, or where it had none
}

func goChange(c *C.procspy_change) Change {
	ch := Change{Kind: ChangeKind(c.kind), Connection: goConnection(c.connection), OldState: State(c.old_state)}
	if c.old_owner != nil {
		o := goSocket(c.old_owner)
		ch.OldOwner = &o
	}
	return ch
}

// walkState travels to the callbacks through a cgo.Handle. The library
// calls them on a goroutine of the binding's own; each record is handed to
// the caller's goroutine, where fn runs while the library waits for its
// answer, so fn sees the call in progress (a Stop or a second call from fn
// acts on it) and runs with no C frame beneath it: a panic or a
// runtime.Goexit there (a test's t.FailNow) never unwinds through the
// library. The call is ended as if fn had returned false, waited for, and
// the panic or Goexit goes on in the caller once the library has returned.
// A handover costs some microseconds a record.
type walkState struct {
	// The caller's fn, through onEach: it takes the records of its call
	// (Socket, Connection, Change or Event).
	fn func(record any) bool
	// An early end is a failure: Changes keeps nothing of such a call.
	declineFails bool
	// The call of fn on the record the library waits on, and fn's answer.
	toUser  chan func() bool
	verdict chan bool
}

// onEach is fn as a walkState holds it, taking the records of its call.
func onEach[R any](fn func(R) bool) func(any) bool {
	return func(record any) bool { return fn(record.(R)) }
}

func (w *Walker) run(st *walkState, f func(*C.procspy_walker, C.uintptr_t, *C.procspy_walk_stats) C.enum_procspy_status) (Stats, error) {
	h := cgo.NewHandle(st)
	defer h.Delete()
	st.toUser, st.verdict = make(chan func() bool), make(chan bool)
	var cstats C.procspy_walk_stats
	var ext C.procspy_walk_stats_ext
	result := make(chan error, 1)
	go func() {
		result <- w.call(func(p *C.procspy_walker) C.enum_procspy_status {
			status := f(p, C.uintptr_t(h), &cstats)
			// A BUSY call ran no walk: the counters would be another call's.
			// With a live walker and out, stats_ext cannot fail.
			if status != C.PROCSPY_BUSY {
				_ = C.procspy_walker_stats_ext(p, &ext, C.sizeof_procspy_walk_stats_ext)
			}
			return status
		})
	}()
	declined, err := st.serve(result)
	if declined && !st.declineFails && errors.Is(err, ErrCallbackAborted) {
		err = nil // the caller asked to stop: not a failure
	}
	return goStats(&cstats, &ext), err
}

// serve runs fn on each record the library's goroutine hands over until
// the call has returned; whether fn declined. If fn panics or exits its
// goroutine, the call is ended and waited for first.
func (st *walkState) serve(result chan error) (declined bool, err error) {
	awaited, ended := false, false // awaited: the library waits for a verdict
	defer func() {
		if ended {
			return
		}
		if awaited {
			st.verdict <- false
		}
		<-result // the library has returned: the panic or Goexit goes on
	}()
	for !ended {
		select {
		case f := <-st.toUser:
			awaited = true
			ok := f()
			declined = declined || !ok
			awaited = false
			st.verdict <- ok
		case err = <-result:
			ended = true
		}
	}
	return declined, err
}

// Walk calls fn once per socket fd of every process, namespace by
// namespace, synchronously. fn returns false to end the walk early (Walk
// then returns a nil error). A panic in fn aborts the walk and is re-raised
// by Walk. fn may call Stop, but not Close.
func (w *Walker) Walk(fn func(Socket) bool) (Stats, error) {
	return w.run(&walkState{fn: onEach(fn)},
		func(p *C.procspy_walker, h C.uintptr_t, s *C.procspy_walk_stats) C.enum_procspy_status {
			return C.procspy_go_walk(p, h, s)
		})
}

// Connections calls fn once per line of the chosen tables (protocols: TCP,
// UDP or both) whose state is in states, in every namespace, with the
// process holding it. Early end and panics as for Walk.
func (w *Walker) Connections(protocols Protocol, states StateMask, fn func(Connection) bool) (Stats, error) {
	return w.run(&walkState{fn: onEach(fn)},
		func(p *C.procspy_walker, h C.uintptr_t, s *C.procspy_walk_stats) C.enum_procspy_status {
			return C.procspy_go_connections(p, C.uint32_t(protocols), C.uint32_t(states), h, s)
		})
}

// Query restricts a Connections pass. A set is used where it is non-nil; an
// empty non-nil set is an error (ErrInvalidArgument), never "all".
type Query struct {
	// Pids: only the sockets these processes hold, with owners among them.
	// Only their fds are read, and only their namespaces (their threads',
	// their sockets') are listed.
	Pids []int32
	// Netns: only the lines of these namespaces (inodes); only their
	// tables are read. Each must exist, else ErrInvalidArgument.
	Netns []uint64
	// NoOwners: the tables alone; no process's fds are read, every Owner is nil.
	NoOwners bool
	// EveryLine (with Pids): every line of their namespaces.
	EveryLine bool
	// ProcessNamespacesOnly: only namespaces some process is in (no thread,
	// mount or fd is examined).
	ProcessNamespacesOnly bool
}

// Query is Connections restricted by q (procspy_walker_query): a pid that
// names no process, a namespace no one has, or an empty set fails with
// ErrInvalidArgument and a message that names it.
func (w *Walker) Query(q Query, protocols Protocol, states StateMask, fn func(Connection) bool) (Stats, error) {
	var flags C.uint32_t
	var pids *C.int32_t
	var netns *C.uint64_t
	if q.Pids != nil {
		flags |= C.PROCSPY_QUERY_PIDS
		if len(q.Pids) > 0 {
			pids = (*C.int32_t)(unsafe.Pointer(&q.Pids[0]))
		}
	}
	if q.Netns != nil {
		flags |= C.PROCSPY_QUERY_NETNS
		if len(q.Netns) > 0 {
			netns = (*C.uint64_t)(unsafe.Pointer(&q.Netns[0]))
		}
	}
	for _, f := range []struct {
		on   bool
		flag C.uint32_t
	}{{q.NoOwners, C.PROCSPY_QUERY_NO_OWNERS}, {q.EveryLine, C.PROCSPY_QUERY_EVERY_LINE},
		{q.ProcessNamespacesOnly, C.PROCSPY_QUERY_PROCESS_NAMESPACES_ONLY}} {
		if f.on {
			flags |= f.flag
		}
	}
	// The sets hold no Go pointer, and C keeps none past the call.
	return w.run(&walkState{fn: onEach(fn)},
		func(p *C.procspy_walker, h C.uintptr_t, s *C.procspy_walk_stats) C.enum_procspy_status {
			return C.procspy_go_query(p, pids, C.size_t(len(q.Pids)), netns, C.size_t(len(q.Netns)), flags,
				C.uint32_t(protocols), C.uint32_t(states), h, s)
		})
}

// Changes calls fn once per change since the previous Changes call on this
// walker that returned a nil error (at the first, every connection as
// ChangeAppeared): connections of the chosen tables (protocols, states as
// for Connections) that appeared, disappeared, changed state or changed
// owner (both: two changes, the state first), then those the kernel says
// opened and closed between the calls (ChangeSeenClosed, whatever states).
// The whole pass runs before fn is first called. A call that fails keeps
// nothing, so the next reports against the same previous snapshot; that
// includes fn returning false, which ends the call with ErrCallbackAborted
// (not nil, unlike Walk). A panic in fn aborts the call and is re-raised.
func (w *Walker) Changes(protocols Protocol, states StateMask, fn func(Change) bool) (Stats, error) {
	return w.run(&walkState{fn: onEach(fn), declineFails: true},
		func(p *C.procspy_walker, h C.uintptr_t, s *C.procspy_walk_stats) C.enum_procspy_status {
			return C.procspy_go_changes(p, C.uint32_t(protocols), C.uint32_t(states), h, s)
		})
}

// EventKind is what a live event tells (procspy_event_kind).
type EventKind int

// Event kinds (values fixed by the ABI).
const (
	EventConnect EventKind = C.PROCSPY_EVENT_CONNECT // TCP: CLOSE -> SYN_SENT, in the connecting process (local port 0); UDP: a connect
	EventAccept  EventKind = C.PROCSPY_EVENT_ACCEPT  // a TCP connection accepted, in the accepting process
	EventClose   EventKind = C.PROCSPY_EVENT_CLOSE   // the process closed the socket (its last fd)
	EventSend    EventKind = C.PROCSPY_EVENT_SEND    // a UDP socket's first send
	EventState   EventKind = C.PROCSPY_EVENT_STATE   // any other TCP state change: OldState -> Connection.State
	EventListen  EventKind = C.PROCSPY_EVENT_LISTEN  // TCP: CLOSE -> LISTEN, in the listening process
	EventLost    EventKind = C.PROCSPY_EVENT_LOST    // Lost events were lost before this one (the ring was full)
)

// String is the kind as the procspy command prints it: "connect",
// "accept", "close", "send", "state", "listen", "lost".
func (k EventKind) String() string {
	switch k {
	case EventConnect:
		return "connect"
	case EventAccept:
		return "accept"
	case EventClose:
		return "close"
	case EventSend:
		return "send"
	case EventState:
		return "state"
	case EventListen:
		return "listen"
	case EventLost:
		return "lost"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one live event (procspy_event), copied.
type Event struct {
	Kind EventKind
	// Connection is the socket as the kernel held it then (Inode 0 where
	// it had no file), its Owner the process that acted where the hook runs
	// in it, else the one seen acting on that socket before, else nil; the
	// Owner's Fd is -1. EventLost: all zeros.
	Connection Connection
	OldState   State         // EventState: the state it left
	Time       time.Duration // when, since boot (CLOCK_BOOTTIME)
	Cookie     uint64        // the kernel's socket cookie: one socket's events share it
	Lost       uint64        // EventLost: how many were lost
}

func goEvent(e *C.procspy_event) Event {
	return Event{
		Kind:       EventKind(e.kind),
		Connection: goConnection(e.connection),
		OldState:   State(e.old_state),
		Time:       time.Duration(e.time_ns),
		Cookie:     uint64(e.cookie),
		Lost:       uint64(e.lost),
	}
}

// Events calls fn once per live event (procspy_walker_events): each
// connect, accept, listen, close, TCP state change and first UDP send on
// the host, in every namespace, with the process that did it, from the
// library's BPF tracer. What waits, or the first of what comes within
// timeout (0: no wait), a ring's worth at most: call it in a loop, or wait
// on EventsFD in your own. The first call starts the tracer (root, or
// CAP_BPF and CAP_PERFMON), attached until Close; a kernel that refuses it
// gives ErrUnsupported saying what, and Diagnose lists each hook. An
// EventLost comes first where the kernel lost events since the last call.
// protocols filters what is delivered. Stop ends a waiting call
// (ErrStopped). It runs beside a walk on the same Walker; a second Events
// call at once gets ErrBusy. fn returning false ends the call early (a nil
// error; the rest wait for the next call); panics as for Walk.
func (w *Walker) Events(timeout time.Duration, protocols Protocol, fn func(Event) bool) (Stats, error) {
	ms := timeout.Milliseconds()
	if ms < 0 || ms > 1<<32-1 {
		return Stats{}, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("procspy.Events: timeout %v out of range", timeout)}
	}
	return w.run(&walkState{fn: onEach(fn)},
		func(p *C.procspy_walker, h C.uintptr_t, s *C.procspy_walk_stats) C.enum_procspy_status {
			return C.procspy_go_events(p, C.uint32_t(ms), C.uint32_t(protocols), h, s)
		})
}

// EventsFD is a file descriptor that is readable whenever an event waits,
// for the caller's own poll or epoll loop (then Events with timeout 0); it
// starts the tracer as Events does, failing as it does. It stays the
// Walker's: never close it; it is valid until Close.
func (w *Walker) EventsFD() (int, error) {
	var fd C.int
	err := w.call(func(p *C.procspy_walker) C.enum_procspy_status {
		return C.procspy_walker_events_fd(p, &fd)
	})
	if err != nil {
		return -1, err
	}
	return int(fd), nil
}

// SetEventsRing sets the tracer's ring buffer in bytes: a power of two
// from 64 KiB to 1 GiB (default 4 MiB). Only before the tracer starts
// (the first Events or EventsFD); after, ErrInvalidArgument.
func (w *Walker) SetEventsRing(bytes int) error {
	if bytes < 0 {
		return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("procspy.SetEventsRing: %d bytes", bytes)}
	}
	return w.call(func(p *C.procspy_walker) C.enum_procspy_status {
		return C.procspy_walker_set_events_ring(p, C.size_t(bytes))
	})
}
