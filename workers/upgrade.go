package workers

import (
	"fmt"
	"os"
	"strings"
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

// ready is the first generation becoming ready: the service is up. A
// master started by an upgrade now writes the pidfile, tells the old
// master (which then drains and exits), and tells systemd it is the main
// process.
func (m *Master) ready() {
	if m.upg.HasParent() && m.PIDFile != "" {
		if err := writePIDFile(m.PIDFile); err != nil {
			m.log.Error("pidfile", zap.Error(err))
		}
	}
	if err := m.upg.Ready(); err != nil {
		m.log.Error("tell the old master", zap.Error(err))
	}
	state := "READY=1"
	if m.upg.HasParent() {
		state = fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid())
	}
	if err := m.notify.Notify(state); err != nil {
		m.log.Warn("sd_notify", zap.Error(err))
	}
}

// reloaded ends a HUP for systemd, whether the new generation took over or
// was abandoned.
func (m *Master) reloaded() {
	if m.reloading {
		m.reloading = false
		m.notify.Notify("READY=1")
	}
}

// sendStatus tells systemd how many workers serve, when that changes,
// from the first ready generation on.
func (m *Master) sendStatus() {
	if !m.notify.Enabled() || m.servingGen == 0 {
		return
	}
	n := 0
	for _, w := range m.workers {
		if w.state == ready {
			n++
		}
	}
	status := fmt.Sprintf("%d workers ready, generation %d", n, m.servingGen)
	if status != m.status {
		m.status = status
		m.notify.Notify("STATUS=" + status)
	}
}

// workerEnv is the master's environment without systemd's notify
// variables: only the master speaks for the service.
func workerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", envListeners:
			continue
		}
		env = append(env, kv)
	}
	return env
}
