//go:build windows

package server

import "syscall"

// setReceiveBuffer sets a socket's receive buffer (SO_RCVBUF), to make a
// client that does not read fill its window at once.
func setReceiveBuffer(fd uintptr, n int) {
	_ = syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}
