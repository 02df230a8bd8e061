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

// deliver hands the call of fn on rec, the copy of the record the library
// lends, to the caller's goroutine and waits for its answer; 1 ends the call.
func deliver(handle C.uintptr_t, rec any) C.int {
	st := cgo.Handle(handle).Value().(*walkState)
	st.toUser <- func() bool { return st.fn(rec) }
	if <-st.verdict {
		return 0
	}
	return 1
}

//export procspyGoOnSocket
func procspyGoOnSocket(handle C.uintptr_t, s *C.procspy_socket) C.int {
	return deliver(handle, goSocket(s))
}

//export procspyGoOnConnection
func procspyGoOnConnection(handle C.uintptr_t, c *C.procspy_connection) C.int {
	return deliver(handle, goConnection(c))
}

//export procspyGoOnChange
func procspyGoOnChange(handle C.uintptr_t, c *C.procspy_change) C.int {
	return deliver(handle, goChange(c))
}

//export procspyGoOnEvent
func procspyGoOnEvent(handle C.uintptr_t, e *C.procspy_event) C.int {
	return deliver(handle, goEvent(e))
}
