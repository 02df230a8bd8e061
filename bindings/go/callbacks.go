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

// deliver keeps the call of fn on a record for the caller's goroutine and
// hands a batch over when it is full (each record alone where an early end
// must reach the library before it commits); 1 ends the call.
func (st *walkState) deliver(f func() bool) C.int {
	st.batch = append(st.batch, f)
	if len(st.batch) < batchLen && !st.declineFails {
		return 0
	}
	st.toUser <- st.batch
	st.batch = nil
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
