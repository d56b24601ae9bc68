package workers

import (
	"os"
	"syscall"
)

// Reasons a worker exits: the reason label of remuda_worker_exits_total.
const (
	exitCrash       = "crash"        // died while serving
	exitBootFailed  = "boot_failed"  // died, or timed out, while booting
	exitTimeout     = "timeout"      // a request ran past Config.Timeout; recycled
	exitSilent      = "silent"       // no heartbeat for Config.Timeout; SIGABRT
	exitMaxRequests = "max_requests" // served Config.MaxRequests; recycled
	exitMemory      = "memory"       // its RSS passed Config.MaxMemory; recycled
	exitReload      = "reload"       // its generation was replaced (HUP)
	exitAbandoned   = "abandoned"    // its new generation failed to boot
	exitScaleDown   = "scale_down"   // fewer workers wanted (TTOU)
	exitStop        = "stop"         // the master stopped (TERM, INT, QUIT, or after USR2)
)

var exitReasons = []string{exitCrash, exitBootFailed, exitTimeout, exitSilent, exitMaxRequests,
	exitMemory, exitReload, exitAbandoned, exitScaleDown, exitStop}

// recycleReason is the exit reason of a worker that asked to be recycled
// for reason (serve's "timeout" or "max_requests").
func recycleReason(reason string) string {
	if reason == exitTimeout || reason == exitMaxRequests {
		return reason
	}
	return exitCrash
}

// exitStatus describes how a process ended, for the "status" field: "exit
// status 3" as os.ProcessState says it, or "signal KILL" (with " (core
// dumped)" when the kernel wrote one) in SignalName's words.
func exitStatus(st *os.ProcessState) string {
	ws, ok := st.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return st.String()
	}
	s := "signal " + SignalName(ws.Signal())
	if ws.CoreDump() {
		s += " (core dumped)"
	}
	return s
}
