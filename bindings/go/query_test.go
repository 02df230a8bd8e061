package procspy

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func ownNetns(t *testing.T) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestQueryOnePid(t *testing.T) {
	s := openSockets(t)
	w := mustNew(t)
	me := int32(os.Getpid())
	want := map[uint64]bool{}
	for _, fd := range []int{fdOf(t, s.l4), fdOf(t, s.client), fdOf(t, s.server), fdOf(t, s.udp)} {
		want[inodeOf(t, fd)] = true
	}
	got := map[uint64]bool{}
	st, err := w.Query(Query{Pids: []int32{me}}, TCP|UDP, StatesAll, func(c Connection) bool {
		if c.Owner == nil || c.Owner.Pid != int(me) {
			t.Errorf("a line not of this process: %+v", c)
		}
		got[c.Inode] = true
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for ino := range want {
		if !got[ino] {
			t.Errorf("socket %d missing from the pid query (%+v)", ino, st)
		}
	}
	if st.Processes != 1 {
		t.Errorf("examined %d processes, not 1", st.Processes)
	}
}

func TestQueryNoOwnersOneNamespace(t *testing.T) {
	s := openSockets(t)
	w := mustNew(t)
	ns := ownNetns(t)
	want := inodeOf(t, fdOf(t, s.l4))
	found := false
	_, err := w.Query(Query{Netns: []uint64{ns}, NoOwners: true}, TCP|UDP, StatesAll, func(c Connection) bool {
		if c.Owner != nil || c.Netns != ns {
			t.Errorf("no-owners query of netns %d delivered %+v", ns, c)
		}
		found = found || c.Inode == want
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("listener %d missing", want)
	}
}

func TestQueryBadInput(t *testing.T) {
	w := mustNew(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := int32(cmd.Process.Pid)
	for _, c := range []struct {
		q    Query
		says string
	}{
		{Query{Pids: []int32{}}, "empty"},
		{Query{Netns: []uint64{}}, "empty"},
		{Query{Pids: []int32{gone}}, "no such process"},
		{Query{Netns: []uint64{1}}, "netns 1"},
		{Query{EveryLine: true}, "every_line"},
	} {
		n := 0
		_, err := w.Query(c.q, TCP|UDP, StatesAll, func(Connection) bool { n++; return true })
		var e *Error
		if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &e) || !strings.Contains(e.Message, c.says) {
			t.Errorf("%+v: %v, wanted ErrInvalidArgument saying %q", c.q, err, c.says)
		}
		if n != 0 {
			t.Errorf("%+v: %d lines delivered before failing", c.q, n)
		}
	}
}
