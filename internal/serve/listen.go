package serve

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// UnixSocketMode is the mode of a unix socket the server creates:
// read-write for its owner and group, so that a reverse proxy whose user is
// in the server's group (nginx's www-data, say) can connect, and nobody else.
const UnixSocketMode = 0o660

// Listen binds addr: "host:port" (IPv4 or a bracketed IPv6 literal) or
// "unix:/path". A unix socket file left behind by a process that died is
// removed first; one that still answers is an error, as is any other kind of
// file at that path (it is never deleted).
func Listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return ln, nil
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	// The umask decides the mode the socket is born with; narrow it so the
	// socket is never, even briefly, open to others. Listen runs before any
	// worker or other goroutine creates files, so the process-wide change
	// cannot race.
	old := syscall.Umask(0o777 &^ UnixSocketMode)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// removeStaleSocket deletes the unix socket at path if nothing accepts on it.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: %w", path, syscall.EADDRINUSE)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probe existing socket: %w", err)
	}
	return os.Remove(path)
}
