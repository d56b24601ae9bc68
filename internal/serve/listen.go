package serve

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
// file at that path (it is never deleted), and so is a unix path whose
// directory does not exist (the error says so, and how to create it).
// backlog, if positive, is the socket's listen queue (see SetBacklog);
// else it is Go's, net.core.somaxconn.
func Listen(addr string, backlog int) (net.Listener, error) {
	ln, err := listen(addr)
	if err != nil || backlog <= 0 {
		return ln, err
	}
	if err := SetBacklog(ln, backlog); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// listen is Listen with Go's backlog.
func listen(addr string) (net.Listener, error) {
	network, path := SplitAddr(addr)
	if network != "unix" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return ln, nil
	}
	if err := checkSocketDir(path); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
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

// SplitAddr splits a bind address, as Listen takes it, into the network
// and address net.Listen takes: "unix:/path" is ("unix", "/path"), any
// other ("tcp", addr).
func SplitAddr(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", path
	}
	return "tcp", addr
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

// checkSocketDir explains a unix socket path whose directory is missing,
// rather than leaving bind(2)'s bare "no such file or directory".
func checkSocketDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("directory %s does not exist: create it, owned by the user the server runs as "+
			"(under systemd, RuntimeDirectory=%s in the service creates /run/%s at each start): %w",
			dir, runtimeDirName(dir), runtimeDirName(dir), err)
	case err != nil:
		return fmt.Errorf("directory of the socket: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// runtimeDirName is what RuntimeDirectory= would take for dir: its path
// under /run, or a name of its own for a directory elsewhere.
func runtimeDirName(dir string) string {
	if rel, ok := strings.CutPrefix(dir, "/run/"); ok && rel != "" {
		return rel
	}
	return filepath.Base(dir)
}

// SetBacklog makes n the listen queue of ln's socket (a TCP or unix
// listener) by calling listen(2) on it again, which Linux allows on a
// listening socket. The kernel silently caps n at net.core.somaxconn (see
// Somaxconn); Go's own listen asks for somaxconn.
func SetBacklog(ln net.Listener, n int) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return fmt.Errorf("set backlog: %T has no socket", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("set backlog: %w", err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), n) }); err != nil {
		return fmt.Errorf("set backlog: %w", err)
	}
	if lerr != nil {
		return fmt.Errorf("set backlog: listen: %w", lerr)
	}
	return nil
}

// Somaxconn reads net.core.somaxconn, the kernel's cap on a listen queue.
func Somaxconn() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
