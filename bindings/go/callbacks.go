package procspy

/*
#include <stdint.h>
#include <procspy.h>
*/
import "C"

import "runtime/cgo"

// The exported functions the C trampolines (trampoline.c) call. The
// records are copied (names with C.GoStringN) before Go code sees them;
// a panic is caught here, never unwinds through the library, and is
// re-raised by the Go caller once the library has returned.

func (st *walkState) deliver(f func() bool) (ret C.int) {
	defer func() {
		if r := recover(); r != nil {
			st.panicked, st.panicValue, ret = true, r, 1
		}
	}()
	if f() {
		return 0
	}
	st.declined = true
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
