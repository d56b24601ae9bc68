package workers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/loadgen"
	"github.com/remuda/remuda/internal/proctest"
)

// TestStoppedMasterDoesNotStallWorkers stops the master (SIGSTOP) for 10 s
// under load with the access log on the master's stderr: workers write
// their lines there themselves, so they serve at the same rate while the
// master is stopped, and once it resumes it does not take the workers'
// silence during its own stop for a hang (--timeout 2s: 3 s of silence
// would get a worker SIGABRT).
func TestStoppedMasterDoesNotStallWorkers(t *testing.T) {
	skipIfShort(t)
	const before, stopped, after = 2 * time.Second, 10 * time.Second, 2 * time.Second
	p, url := prod(t, nil, "--workers", "2", "--access-log", "-", "--timeout", "2s")
	master := p.Pid()
	first := slices.Sorted(slices.Values(proctest.Children(master)))

	// The clients of proctest.StartLoad, used directly for the time of
	// each answer: requests per second before, during and after the stop.
	// Each request waits 20 ms in the handler, so that the rate is set by
	// that wait rather than by the CPUs, which other tests share (go test
	// runs packages in parallel): 16 connections make some 700 access
	// lines a second, which would fill a pipe the master no longer read
	// within half a second.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := strings.TrimPrefix(url, "http://")
	l := loadgen.Start(ctx, 16, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }, loadgen.Get(url+"/sleep?d=20ms"))
	time.Sleep(before)

	stopAt := time.Since(l.Start)
	if err := syscall.Kill(master, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(master, syscall.SIGCONT) })
	time.Sleep(stopped)
	// Access lines that reached the log while the master was stopped.
	logged := len(p.Find(proctest.Msg("request")))
	contAt := time.Since(l.Start)
	syscall.Kill(master, syscall.SIGCONT)
	time.Sleep(after)
	cancel()
	r := l.Wait()
	t.Logf("load: %v", r)

	count := func(from, to time.Duration) int {
		n := 0
		for _, s := range r.Samples {
			if s.End >= from && s.End < to {
				n++
			}
		}
		return n
	}
	var perSecond []int
	for s := time.Duration(0); s < r.Elapsed; s += time.Second {
		perSecond = append(perSecond, count(s, s+time.Second))
	}
	t.Logf("requests per second: %v", perSecond)
	const warmup = 500 * time.Millisecond
	rateBefore := float64(count(warmup, stopAt)) / (stopAt - warmup).Seconds()
	rateStopped := float64(count(stopAt, contAt)) / (contAt - stopAt).Seconds()
	rateAfter := float64(count(contAt+warmup, r.Elapsed)) / (r.Elapsed - contAt - warmup).Seconds()
	servedBeforeCont := count(0, contAt)
	t.Logf("requests/s: %.0f before the stop, %.0f during it, %.0f after; %d access lines logged of %d requests served by the end of the stop",
		rateBefore, rateStopped, rateAfter, logged, servedBeforeCont)
	// Against the rate around the stop, before and after: what else the
	// machine runs changes over 14 s.
	if around := (rateBefore + rateAfter) / 2; rateStopped < 0.8*around {
		t.Errorf("master stopped: %.0f requests/s, want at least 80%% of the %.0f around the stop", rateStopped, around)
	}
	if r.Failed != 0 {
		t.Errorf("%d failed requests, want 0", r.Failed)
	}
	// Lines written during the stop are in the log during the stop: they
	// did not wait for the master. (The last ones may still be on their
	// way through the test's own pipe reader.)
	if logged < servedBeforeCont*95/100 {
		t.Errorf("%d access lines logged by the end of the stop, want about the %d requests served by then", logged, servedBeforeCont)
	}
	ok := int(r.OK())
	if !proctest.WaitUntil(2*time.Second, func() bool { return len(p.Find(proctest.Msg("request"))) >= ok }) {
		t.Errorf("%d access lines for %d requests, want one each", len(p.Find(proctest.Msg("request"))), ok)
	}

	p.WaitFor(t, 2*time.Second, 1, "the master noticing its stop", proctest.Msg("master was not running, worker deadlines moved"))
	if got := slices.Sorted(slices.Values(proctest.Children(master))); !slices.Equal(got, first) {
		t.Errorf("workers %v after the resume, want the same %v", got, first)
	}
	for _, msg := range []string{"worker silent, aborting it", "worker died", "worker killed"} {
		if got := p.Find(proctest.Msg(msg)); len(got) > 0 {
			t.Errorf("after the resume: %s", got[0].Raw)
		}
	}
	if n := len(p.Find(proctest.Msg("worker started"))); n != 2 {
		t.Errorf("%d workers started, want the first 2 only", n)
	}
	p.AssertJSONLogs(t)
}

// TestUSR1WorkersWriteNewErrorLog rotates the error log: after USR1 the
// workers, which write to it themselves, write into the new file.
func TestUSR1WorkersWriteNewErrorLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "error.log")
	addr := proctest.FreeAddr(t)
	url := "http://" + addr
	p := start(t, nil, "run", "--prod", "--bind", addr, "--workers", "2", "--error-log", logPath, "--access-log", "-")
	// Its log is the file, not stderr.
	if !proctest.WaitUntil(15*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return bytes.Contains(b, []byte(`"msg":"generation ready"`))
	}) {
		t.Fatalf("no \"generation ready\" in %s within 15s", logPath)
	}
	// get sends a request on a new connection, named by its request id.
	get := func(id string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url+"/healthz", nil)
		req.Header.Set("X-Request-ID", id)
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %s: %v", id, err)
		}
		resp.Body.Close()
	}
	// The access lines in a file, by request id, and every line one JSON
	// object.
	access := func(path string) map[string]int {
		t.Helper()
		b, _ := os.ReadFile(path)
		ids := map[string]int{}
		for line := range bytes.Lines(b) {
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Errorf("%s: a line that is not one JSON object: %q", path, line)
				continue
			}
			if m["msg"] == "request" {
				id, _ := m["request_id"].(string)
				ids[id] = int(m["pid"].(float64))
			}
		}
		return ids
	}

	get("before")
	proctest.WaitUntil(2*time.Second, func() bool { return access(logPath)["before"] != 0 })
	// logrotate: move the file away, then signal.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGUSR1)
	// The master reopens, then each of the 2 workers.
	if !proctest.WaitUntil(5*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return bytes.Count(b, []byte(`"msg":"logs reopened"`)) == 3
	}) {
		t.Fatalf("no \"logs reopened\" of the master and its 2 workers in the new %s", logPath)
	}
	// Several connections, so that both workers answer some, most likely.
	const n = 6
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("after-%d", i))
		get(want[i])
	}
	var fresh map[string]int
	proctest.WaitUntil(2*time.Second, func() bool {
		fresh = access(logPath)
		return len(fresh) >= n
	})
	old := access(logPath + ".1")
	if _, ok := old["before"]; !ok || len(old) != 1 {
		t.Errorf("rotated file: access lines %v, want the one before USR1", old)
	}
	pids := map[int]bool{}
	for _, id := range want {
		pid, ok := fresh[id]
		if !ok {
			t.Errorf("reopened file: no access line for %s (it has %v)", id, fresh)
		}
		if pid == p.Pid() {
			t.Errorf("access line for %s from the master's pid %d, want a worker's", id, pid)
		}
		pids[pid] = true
	}
	t.Logf("access lines in the reopened file from workers %v", slices.Collect(maps.Keys(pids)))
	p.AssertJSONLogs(t)
}
