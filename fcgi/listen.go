package fcgi

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// maxUnixPath is the longest socket path Linux accepts: sun_path is 108
// bytes including the terminating NUL.
const maxUnixPath = 107

// socketMode lets the web server's user (www-data) connect without sharing
// a group with Stardust's (systemd's DynamicUser has none to share): the
// socket is as open as a loopback TCP port. To narrow it, narrow the
// directory it is in (systemd's RuntimeDirectoryMode).
const socketMode = 0o666

// Listen opens the socket the web server connects to. addr is "host:port"
// (TCP; keep it on loopback, FastCGI has no authentication) or
// "unix:/path/to.sock". For a unix socket, Listen removes a stale socket
// file left by a crashed run (but refuses if a server still answers on it,
// or if the path is not a socket), makes it mode 0666, and the returned
// listener removes the file when closed. "unix:@name" is a Linux abstract
// socket (no file). Safe for concurrent use; the caller owns the listener.
func Listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("fcgi: listen: %w", err)
		}
		return l, nil
	}
	switch {
	case path == "":
		return nil, fmt.Errorf("fcgi: listen %q: empty socket path", addr)
	case len(path) > maxUnixPath:
		return nil, fmt.Errorf("fcgi: listen %q: socket path is %d bytes, the limit is %d",
			addr, len(path), maxUnixPath)
	case path[0] == '@':
		return listenUnix(path)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := listenUnix(path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, socketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("fcgi: listen %q: %w", addr, err)
	}
	return l, nil
}

// listenUnix listens on a unix socket. A *net.UnixListener made by
// net.Listen unlinks its socket file on Close.
func listenUnix(path string) (net.Listener, error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("fcgi: listen: %w", err)
	}
	return l, nil
}

// removeStale removes the socket file at path if no server answers on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fcgi: listen: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("fcgi: listen: %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("fcgi: listen: %s is in use by a running server", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("fcgi: listen: cannot tell whether %s is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("fcgi: listen: removing stale socket: %w", err)
	}
	return nil
}
