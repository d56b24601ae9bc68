package workers

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/cloudflare/tableflip"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/sdnotify"
	"github.com/remuda/remuda/internal/serve"
)

// envListeners tells a master started by USR2 which sockets it inherits:
// "network address" pairs, one per line, in order. The old master sets it
// just before the upgrade; the new one reads and unsets it.
const envListeners = "REMUDA_LISTENERS"

// listener is one listening socket of the master and the file every
// worker inherits it as.
type listener struct {
	network, addr string
	ln            net.Listener // the master's copy; closing it never removes a unix socket file
	file          *os.File     // a duplicate, passed to workers at fd 4 and up
}

// listen returns the master's listening sockets, registered with upg so
// that a USR2 upgrade passes them on. They come, in this order of
// preference, from the master this one replaces (every socket it had,
// whatever the binds say now), from systemd (LISTEN_FDS), or are bound
// here from addrs (unix sockets after stale-socket cleanup). Only sockets
// bound here get backlog as their listen queue (when above zero): those
// from systemd keep the socket unit's Backlog=, and inherited ones the
// queue their first master gave them; log gets a warning when the kernel
// caps backlog. On error it closes what it had and names the address.
func listen(upg *tableflip.Upgrader, addrs []string, backlog int, log *zap.Logger) ([]listener, error) {
	var ls []listener
	fail := func(err error) ([]listener, error) {
		closeListeners(ls)
		return nil, err
	}
	add := func(network, addr string, ln net.Listener) error {
		tl, ok := ln.(tableflip.Listener)
		if !ok {
			return fmt.Errorf("listener %s %s: %T cannot be passed on", network, addr, ln)
		}
		if err := upg.Fds.AddListener(network, addr, tl); err != nil {
			return fmt.Errorf("listener %s %s: %w", network, addr, err)
		}
		f, err := workerFile(ln)
		if err != nil {
			return fmt.Errorf("listener %s %s: %w", network, addr, err)
		}
		ls = append(ls, listener{network: network, addr: addr, ln: ln, file: f})
		return nil
	}

	if upg.HasParent() {
		keys := os.Getenv(envListeners)
		os.Unsetenv(envListeners)
		for key := range strings.Lines(keys) {
			network, addr, _ := strings.Cut(strings.TrimSpace(key), " ")
			ln, err := upg.Fds.Listener(network, addr)
			if err == nil && ln == nil {
				err = fmt.Errorf("listener %s %s: not passed on by the old master", network, addr)
			}
			if err == nil {
				err = add(network, addr, ln)
			}
			if err != nil {
				return fail(err)
			}
		}
		return ls, nil
	}

	activated, err := sdnotify.Listeners()
	if err != nil {
		return nil, err
	}
	for _, a := range activated {
		ln, err := net.FileListener(a.File)
		a.File.Close()
		if err != nil {
			return fail(fmt.Errorf("socket %q from systemd: %w", a.Name, err))
		}
		if err := add(ln.Addr().Network(), ln.Addr().String(), ln); err != nil {
			return fail(err)
		}
	}
	if len(activated) > 0 {
		return ls, nil
	}

	checkBacklog(log, backlog)
	for _, addr := range addrs {
		ln, err := serve.Listen(addr, backlog)
		if err != nil {
			return fail(err)
		}
		network, a := serve.SplitAddr(addr)
		if err := add(network, a, ln); err != nil {
			ln.Close()
			return fail(err)
		}
	}
	return ls, nil
}

// checkBacklog warns when the kernel caps backlog at net.core.somaxconn.
func checkBacklog(log *zap.Logger, backlog int) {
	if backlog <= 0 {
		return
	}
	max, err := serve.Somaxconn()
	if err == nil && backlog > max {
		log.Warn("backlog above net.core.somaxconn: the kernel caps it; raise the sysctl to get it",
			zap.Int("backlog", backlog), zap.Int("somaxconn", max))
	}
}

// workerFile duplicates ln's socket as the file workers inherit.
//
// Not with ln's File method: the os package marks the file it returns as
// a socket it made non-blocking, and its Fd method, which os/exec's Start
// calls on every ExtraFiles entry, then puts the socket back in blocking
// mode. That mode belongs to the socket, not to one descriptor: every
// worker holding it would find it blocking, and a worker calling accept
// before the next one started (and made it non-blocking again) would block
// a thread in accept(2) until a connection came, deaf to its drain's
// deadline: after a reload of an idle server the old workers hung until
// killed, graceful timeout plus a second later, and the master kept their
// records, buffers and goroutines all that time. A file made by os.NewFile
// from a duplicate is left as it is (tableflip passes its files the same
// way).
func workerFile(ln net.Listener) (*os.File, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no file to pass to workers", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var dup int
	var dupErr error
	if err := rc.Control(func(fd uintptr) { dup, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup: %w", dupErr)
	}
	return os.NewFile(uintptr(dup), "listener"), nil
}

// passOn records the listeners for the master an upgrade starts.
func passOn(ls []listener) {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "%s %s\n", l.network, l.addr)
	}
	os.Setenv(envListeners, b.String())
}

// names lists the listeners for a log line.
func names(ls []listener) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.network + ":" + l.addr
	}
	return out
}

// closeListeners closes the master's copies. Workers keep serving on
// theirs until they drain; a socket closes with its last copy.
func closeListeners(ls []listener) {
	for _, l := range ls {
		l.file.Close()
		l.ln.Close()
	}
}
