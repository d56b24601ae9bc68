package sdnotify

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// listenFDsStart is the first fd systemd passes (SD_LISTEN_FDS_START); the
// others follow it.
const listenFDsStart = 3

// MaxListenFDs is the largest LISTEN_FDS that Listeners accepts. Larger
// values are an error, and no fd is touched.
const MaxListenFDs = 1024

// Listener is one socket passed by systemd.
type Listener struct {
	// Name is the socket's FileDescriptorName= in its .socket unit (by
	// default the unit's name), or "unknown" when LISTEN_FDNAMES is unset.
	Name string
	// File is the socket; net.FileListener makes a net.Listener of it.
	File *os.File
}

// Listeners returns the sockets systemd passed by socket activation, in the
// order of LISTEN_FDNAMES: LISTEN_FDS of them from fd 3 on, when LISTEN_PID
// is this process's ID. It marks each fd close-on-exec, so that it goes to
// a child only when passed on purpose (cmd.ExtraFiles), and unsets
// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, always, so that children do
// not take the variables as theirs. Call it once, early: a second call
// finds the variables gone and returns nil, nil.
//
// It returns nil, nil when the process is not socket-activated: LISTEN_PID
// or LISTEN_FDS unset, or LISTEN_PID naming another process. A malformed
// value, a LISTEN_FDS outside 1 to MaxListenFDs, a LISTEN_FDNAMES whose
// count of names differs from LISTEN_FDS, or a passed fd that is not open
// returns an error naming the variable and its value, and no Listener.
func Listeners() ([]Listener, error) {
	return listeners(os.Getenv, func(k string) { os.Unsetenv(k) }, os.Getpid())
}

// listeners is Listeners with the environment and the process ID passed
// in, so that tests can fake them.
func listeners(getenv func(string) string, unsetenv func(string), pid int) ([]Listener, error) {
	defer func() {
		unsetenv("LISTEN_PID")
		unsetenv("LISTEN_FDS")
		unsetenv("LISTEN_FDNAMES")
	}()
	names, err := parseListenEnv(getenv, pid)
	if err != nil || names == nil {
		return nil, err
	}
	// Check every fd before adopting any, so that an error leaves none
	// owned by an *os.File (whose finalizer would close it).
	for i := range names {
		fd := listenFDsStart + i
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return nil, fmt.Errorf("sdnotify: LISTEN_FDS=%d: fd %d: %w", len(names), fd, err)
		}
	}
	ls := make([]Listener, len(names))
	for i, name := range names {
		ls[i] = Listener{Name: name, File: os.NewFile(uintptr(listenFDsStart+i), name)}
	}
	return ls, nil
}

// parseListenEnv reads the socket-activation variables for process pid and
// returns one name per passed fd (nil if none are for pid). It touches no
// fd.
func parseListenEnv(getenv func(string) string, pid int) ([]string, error) {
	v := getenv("LISTEN_PID")
	if v == "" {
		return nil, nil
	}
	listenPID, err := parsePID("LISTEN_PID", v)
	if err != nil {
		return nil, err
	}
	if listenPID != pid {
		return nil, nil
	}
	v = getenv("LISTEN_FDS")
	if v == "" {
		return nil, nil
	}
	// Zero is an error too, as in sd_listen_fds: systemd never sends it.
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxListenFDs {
		return nil, fmt.Errorf("sdnotify: LISTEN_FDS=%q: not a count from 1 to %d", v, MaxListenFDs)
	}
	// getenv cannot tell empty from unset: both get systemd's default
	// names (libsystemd would reject an empty LISTEN_FDNAMES).
	v = getenv("LISTEN_FDNAMES")
	if v == "" {
		names := make([]string, n)
		for i := range names {
			names[i] = "unknown"
		}
		return names, nil
	}
	if c := strings.Count(v, ":") + 1; c != n {
		return nil, fmt.Errorf("sdnotify: LISTEN_FDNAMES=%q: %d names for LISTEN_FDS=%d", v, c, n)
	}
	return strings.Split(v, ":"), nil
}
