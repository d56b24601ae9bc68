package workers

import (
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"
)

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
