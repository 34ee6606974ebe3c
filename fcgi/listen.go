package fcgi

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
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

// Listen opens the socket the web server (or, in HTTP mode, the browser)
// connects to; its errors say "listen", not FastCGI, as both modes use it. addr is "host:port"
// (TCP; keep it on loopback, FastCGI has no authentication) or
// "unix:/path/to.sock". For a unix socket, Listen removes a stale socket
// file left by a crashed run (but refuses if a server still answers on it,
// or if the path is not a socket), makes it mode 0666, and the returned
// listener removes the file when closed. "unix:@name" is a Linux abstract
// socket (no file). Safe for concurrent use; the caller owns the listener.
func Listen(addr string) (net.Listener, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr) // its error names the address
	}
	if path[0] == '@' {
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
		return nil, fmt.Errorf("listen %q: %w", addr, err)
	}
	return l, nil
}

// CheckAddr reports what Listen would refuse in addr before trying it, so
// that stardust --check finds it: a TCP address without host:port or with a
// port outside 0-65535 (a service name is looked up), an empty or too long
// socket path. Whether the address can be had is only known by listening.
func CheckAddr(addr string) error {
	path, ok := strings.CutPrefix(addr, "unix:")
	if ok {
		switch {
		case path == "":
			return fmt.Errorf("listen %q: empty socket path (want unix:/path/to.sock)", addr)
		case len(path) > maxUnixPath:
			return fmt.Errorf("listen %q: socket path is %d bytes, the limit is %d", addr, len(path), maxUnixPath)
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen %q: want host:port or unix:/path", addr)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 0 || n > 65535 {
			return fmt.Errorf("listen %q: port %d is outside 0-65535", addr, n)
		}
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("listen %q: port %q is neither a number nor a known service", addr, port)
	}
	return nil
}

// listenUnix listens on a unix socket. A *net.UnixListener made by
// net.Listen unlinks its socket file on Close.
func listenUnix(path string) (net.Listener, error) {
	return net.Listen("unix", path) // its error names the path

}

// removeStale removes the socket file at path if no server answers on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen: %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("listen: %s is in use by a running server", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("listen: cannot tell whether %s is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("listen: removing stale socket: %w", err)
	}
	return nil
}
