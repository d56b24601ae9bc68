package workers

import (
	"os"
	"os/signal"
	"syscall"
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
