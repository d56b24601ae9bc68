package workers

import (
	"os/exec"
	"syscall"
	"testing"
)

func TestSignalName(t *testing.T) {
	for _, tt := range []struct {
		sig  syscall.Signal
		want string
	}{
		{syscall.SIGTERM, "TERM"},
		{syscall.SIGHUP, "HUP"},
		{syscall.SIGTTIN, "TTIN"},
		{syscall.SIGTTOU, "TTOU"},
		{syscall.SIGUSR2, "USR2"},
		{syscall.Signal(77), "77"},
	} {
		if got := SignalName(tt.sig); got != tt.want {
			t.Errorf("SignalName(%d) = %q, want %q", int(tt.sig), got, tt.want)
		}
	}
}

func TestExitStatus(t *testing.T) {
	for _, tt := range []struct {
		script, want string
	}{
		{"exit 3", "exit status 3"},
		{"kill -TERM $$", "signal TERM"},
	} {
		cmd := exec.Command("sh", "-c", tt.script)
		cmd.Run()
		if got := exitStatus(cmd.ProcessState); got != tt.want {
			t.Errorf("sh -c %q: exitStatus = %q, want %q", tt.script, got, tt.want)
		}
	}
}
