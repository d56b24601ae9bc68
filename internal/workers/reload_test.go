package workers_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// The master's memory budget, and what reloads may add to it in a test.
//
// An idle master must stay within 15 MiB (doc.go, "Metrics and status"). A
// real binary (cmd/server built with CGO_ENABLED=0, two workers) holds
// about 13 MiB once its first generation is ready: 13.1 MiB measured, and
// 14.2 after 100 HUPs. The test binary starts higher, about 17 MiB (its
// larger text, cgo's threads and allocator, the memory profiling that the
// testing package turns on), so 15 MiB cannot bound it; what reloads add
// is the same code in both, and the test bounds that by what the budget
// leaves a real binary.
const (
	masterBudget    = 15 << 20
	realMasterIdle  = 13 << 20
	maxReloadGrowth = masterBudget - realMasterIdle
)

// TestMasterMemoryFlatAcrossHUPs reloads a master of two workers 100 times
// and checks that its resident memory grows by no more than
// maxReloadGrowth.
func TestMasterMemoryFlatAcrossHUPs(t *testing.T) {
	skipIfShort(t)
	p, _ := prod(t, nil, "--workers", "2")
	// rss reads the master's VmRSS once the workers of older generations
	// have exited: HUPs come faster than workers drain (100 ms or more),
	// so several generations overlap, and the master holds what it needs
	// for each live worker.
	rss := func() int64 {
		t.Helper()
		if !proctest.WaitUntil(10*time.Second, func() bool { return len(proctest.Children(p.Pid())) == 2 }) {
			t.Fatalf("%d workers 10s after the last HUP, want 2", len(proctest.Children(p.Pid())))
		}
		time.Sleep(100 * time.Millisecond) // the master reaps the last one
		n, err := proctest.Memory(p.Pid(), "VmRSS")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const hups = 100
	start := time.Now()
	before := rss()
	var half int64
	for i := range hups {
		p.Signal(t, syscall.SIGHUP)
		p.WaitReady(t, i+2)
		if i+1 == hups/2 {
			half = rss()
		}
	}
	after := rss()
	t.Logf("master VmRSS: %.1f MiB before, %.1f after %d HUPs, %.1f after %d (%v)",
		proctest.MiB(before), proctest.MiB(half), hups/2, proctest.MiB(after), hups, time.Since(start).Round(time.Millisecond))
	if proctest.RaceEnabled() {
		// The race detector's shadow memory and allocator make RSS
		// figures meaningless.
		return
	}
	if grown := after - before; grown > maxReloadGrowth {
		t.Errorf("master VmRSS grew by %.1f MiB over %d HUPs, want at most %.1f (a real binary idles at %.0f of its %.0f MiB budget)",
			proctest.MiB(grown), hups, proctest.MiB(maxReloadGrowth), proctest.MiB(realMasterIdle), proctest.MiB(masterBudget))
	}
}

// TestHUPRetiresIdleWorkersAtOnce checks that the workers a HUP retires
// from an idle server exit as soon as they have drained, not at the
// graceful timeout's end (30 s here): a worker must never be left blocked
// in accept(2), which a spawn could cause by turning the shared listening
// socket blocking (see workerFile).
func TestHUPRetiresIdleWorkersAtOnce(t *testing.T) {
	p, _ := prod(t, nil, "--workers", "2")
	// The blocking socket came from a race between spawns: several HUPs
	// make it show.
	const hups = 10
	for i := range hups {
		p.Signal(t, syscall.SIGHUP)
		p.WaitReady(t, i+2)
	}
	retired := time.Now()
	if !proctest.WaitUntil(3*time.Second, func() bool { return len(proctest.Children(p.Pid())) == 2 }) {
		t.Errorf("%d workers 3s after %d HUPs of an idle server, want the 2 of the last generation", len(proctest.Children(p.Pid())), hups)
	}
	t.Logf("older generations gone %v after the last was ready", time.Since(retired).Round(time.Millisecond))
}

// TestHUPKeepsOldGenerationsGracefulTimeout checks that a worker retired
// by a HUP drains within its own generation's graceful timeout, not the
// new generation's: a HUP that shortens graceful_timeout must not kill
// the requests the old workers were promised time for.
func TestHUPKeepsOldGenerationsGracefulTimeout(t *testing.T) {
	skipIfShort(t)
	file := filepath.Join(t.TempDir(), "server.toml")
	os.WriteFile(file, []byte("workers = 1\ngraceful_timeout = \"20s\"\n"), 0o644)
	p, url := prod(t, nil, "--config", file)
	old := proctest.Children(p.Pid())
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		status, body, err := proctest.Get(url+"/sleep?d=3s", 10*time.Second)
		done <- result{status, body, err}
	}()
	time.Sleep(200 * time.Millisecond) // the request is in flight
	os.WriteFile(file, []byte("workers = 1\ngraceful_timeout = \"100ms\"\n"), 0o644)
	p.Signal(t, syscall.SIGHUP)
	p.WaitReady(t, 2)
	r := <-done
	if r.status != 200 || r.body != "slept" {
		t.Errorf("a 3s request in flight on generation 1 (graceful_timeout 20s) across a HUP to graceful_timeout 100ms: %d %q %v, want 200 \"slept\"",
			r.status, r.body, r.err)
	}
	exited := p.WaitFor(t, 5*time.Second, 1, "the old worker's exit", func(l proctest.Line) bool {
		return (l.Msg() == "worker exited" || l.Msg() == "worker killed") && l.Int("worker_pid") == old[0]
	})[0]
	if exited.Msg() != "worker exited" {
		t.Errorf("old worker %d: %s, want it to exit by itself once drained", old[0], exited.Raw)
	}
}
