// Package sdnotify speaks the two small systemd protocols a Remuda master
// needs, without libsystemd: the readiness notifications of sd_notify(3)
// (READY=1, RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1, MAINPID= as
// datagrams to $NOTIFY_SOCKET), the watchdog period of sd_watchdog_enabled(3)
// ($WATCHDOG_USEC, $WATCHDOG_PID), and the socket activation of
// sd_listen_fds_with_names(3) ($LISTEN_PID, $LISTEN_FDS, $LISTEN_FDNAMES; see
// Listeners).
//
// Outside systemd every variable is unset and everything here does nothing.
package sdnotify

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends sd_notify(3) datagrams to NOTIFY_SOCKET. It is safe for
// concurrent use. A nil *Notifier is valid and sends nothing.
type Notifier struct {
	addr *net.UnixAddr // nil: no socket configured
}

// New returns a Notifier for the socket named by NOTIFY_SOCKET, as read by
// getenv (if nil, os.Getenv). If NOTIFY_SOCKET is unset or empty, the
// Notifier is disabled: Enabled reports false and Notify does nothing.
//
// NOTIFY_SOCKET must be an absolute path or an abstract socket name written
// "@name" (the '@' stands for the leading NUL byte; package net makes that
// substitution when it builds the address). Anything else, such as
// systemd's "vsock:" addresses, is an error; the Notifier returned with it
// is nil, which is still valid and does nothing.
//
// New does not unset NOTIFY_SOCKET: a master re-executed on USR2 needs it to
// send MAINPID= and READY=1 itself.
func New(getenv func(string) string) (*Notifier, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	v := getenv("NOTIFY_SOCKET")
	switch {
	case v == "":
		return &Notifier{}, nil
	case len(v) > 1 && (v[0] == '/' || v[0] == '@'):
		return &Notifier{addr: &net.UnixAddr{Name: v, Net: "unixgram"}}, nil
	default:
		return nil, fmt.Errorf("sdnotify: NOTIFY_SOCKET=%q: not an absolute path or @abstract name", v)
	}
}

// Enabled reports whether a socket is configured.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends state, newline-separated assignments such as
// "READY=1\nSTATUS=4 workers", as one unixgram datagram, and returns the
// error of the send. It returns nil without sending when the Notifier is
// disabled or nil.
func (n *Notifier) Notify(state string) error {
	if !n.Enabled() {
		return nil
	}
	// A socket per message, as sd_notify does: nothing to share between
	// goroutines, nothing to close, and a systemd that re-executed itself
	// since the last message is found at the same address.
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: send: %w", err)
	}
	sent, err := conn.Write([]byte(state))
	if err == nil && sent < len(state) {
		err = io.ErrShortWrite
	}
	err = errors.Join(err, conn.Close())
	if err != nil {
		return fmt.Errorf("sdnotify: send: %w", err)
	}
	return nil
}

// Reloading sends RELOADING=1 with MONOTONIC_USEC set to the current
// CLOCK_MONOTONIC time in microseconds, as Type=notify-reload requires
// (systemd 253 and later); older versions ignore MONOTONIC_USEC. Send
// READY=1 once the reload is over.
func (n *Notifier) Reloading() error {
	if !n.Enabled() {
		return nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sdnotify: read monotonic clock: %w", err)
	}
	return n.Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1e3, 10))
}

// WatchdogInterval returns how often to send WATCHDOG=1: half of
// WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, read by getenv (if nil,
// os.Getenv). It returns 0, the watchdog being off, when WATCHDOG_USEC is
// unset or WATCHDOG_PID names another process (systemd sets it to the main
// PID, so workers, which inherit it, see 0). A malformed or zero value
// returns 0 and an error naming the variable.
func WatchdogInterval(getenv func(string) string) (time.Duration, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	v := getenv("WATCHDOG_USEC")
	if v == "" {
		return 0, nil
	}
	usec, err := strconv.ParseUint(v, 10, 64)
	if err != nil || usec == 0 || usec > math.MaxInt64/uint64(time.Microsecond) {
		return 0, fmt.Errorf("sdnotify: WATCHDOG_USEC=%q: not a duration in microseconds", v)
	}
	if p := getenv("WATCHDOG_PID"); p != "" {
		pid, err := parsePID("WATCHDOG_PID", p)
		if err != nil {
			return 0, err
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	return time.Duration(usec) * time.Microsecond / 2, nil
}

// parsePID parses the value v of the variable name as a process ID.
func parsePID(name, v string) (int, error) {
	pid, err := strconv.Atoi(v)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("sdnotify: %s=%q: not a process ID", name, v)
	}
	return pid, nil
}
