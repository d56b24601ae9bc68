package workers

import (
	"os"
	"syscall"

	"go.uber.org/zap"
)

// upgrade starts a new master from the binary on disk (USR2), through
// tableflip: it inherits every listening socket, boots its workers, and
// reports ready; this master then drains its own workers and exits. Only
// one upgrade runs at a time.
func (m *Master) upgrade() {
	if m.upgrading {
		m.log.Warn("upgrade refused: another one is in progress")
		return
	}
	m.upgrading = true
	m.tally.upgrades++
	m.log.Info("upgrading: starting a new master", zap.String("executable", m.path))
	passOn(m.listeners)
	// WATCHDOG_PID names this master; left set, it would keep the new one,
	// which becomes the main process, from ever pinging the watchdog.
	os.Unsetenv("WATCHDOG_PID")
	go func() { m.upgrades <- m.upg.Upgrade() }()
}

// upgraded handles the end of an upgrade.
func (m *Master) upgraded(err error) {
	m.upgrading = false
	if err != nil {
		m.log.Error("upgrade failed, this master keeps serving", zap.Error(err))
		return
	}
	m.log.Info("upgraded: the new master serves, draining this one")
	// The service is the new master's now: this one tells systemd nothing
	// more (no STOPPING=1, no STATUS=), and leaves the sockets in place.
	m.notify = nil
	m.stopping = true
	m.stopAll(syscall.SIGTERM)
}
