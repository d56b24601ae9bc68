package workers

import (
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// masterSignals are the signals the master acts on (README's table).
var masterSignals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP,
	syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR1, syscall.SIGUSR2,
}

// notifySignals starts catching the master's signals. It is called before
// anything is bound or started, so no signal finds a default action.
func notifySignals() chan os.Signal {
	c := make(chan os.Signal, 16)
	signal.Notify(c, masterSignals...)
	return c
}

func stopSignals(c chan os.Signal) { signal.Stop(c) }

// SignalName is sig's name as the README's signal tables, kill(1) and
// Gunicorn's docs write it, without "SIG": "TERM", "HUP", "TTIN". Every
// log line of the master and its workers names a signal so, in a field
// "signal", never in the C library's words (syscall.Signal's String says
// "stopped (tty input)" for TTIN). A signal without a name is its number.
func SignalName(sig os.Signal) string {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return sig.String()
	}
	if name := unix.SignalName(s); name != "" {
		return strings.TrimPrefix(name, "SIG")
	}
	return strconv.Itoa(int(s))
}

// signalField is the log field naming sig.
func signalField(sig os.Signal) zap.Field { return zap.String("signal", SignalName(sig)) }
