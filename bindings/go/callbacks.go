package procspy

/*
#include <stdint.h>
#include <procspy.h>
*/
import "C"

import "runtime/cgo"

// The exported functions the C trampolines (trampoline.c) call, on the
// binding's own goroutine. The records are copied (names with C.GoStringN)
// before Go code sees them, and handed to the caller's goroutine (see
// walkState): no code of the caller's runs above the library's frames.

// deliver hands the call of fn on a record to the caller's goroutine and
// waits for its answer; 1 ends the call.
func (st *walkState) deliver(f func() bool) C.int {
	st.toUser <- f
	if <-st.verdict {
		return 0
	}
	return 1
}

//export procspyGoOnSocket
func procspyGoOnSocket(handle C.uintptr_t, s *C.procspy_socket) C.int {
	st := cgo.Handle(handle).Value().(*walkState)
	sock := goSocket(s)
	return st.deliver(func() bool { return st.onSocket(sock) })
}

//export procspyGoOnConnection
func procspyGoOnConnection(handle C.uintptr_t, c *C.procspy_connection) C.int {
	st := cgo.Handle(handle).Value().(*walkState)
	conn := goConnection(c)
	return st.deliver(func() bool { return st.onConnection(conn) })
}

//export procspyGoOnChange
func procspyGoOnChange(handle C.uintptr_t, c *C.procspy_change) C.int {
	st := cgo.Handle(handle).Value().(*walkState)
	ch := goChange(c)
	return st.deliver(func() bool { return st.onChange(ch) })
}

//export procspyGoOnEvent
func procspyGoOnEvent(handle C.uintptr_t, e *C.procspy_event) C.int {
	st := cgo.Handle(handle).Value().(*walkState)
	ev := goEvent(e)
	return st.deliver(func() bool { return st.onEvent(ev) })
}
