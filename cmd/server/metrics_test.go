package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// TestLoginMetrics checks that the master's /metrics counts logins by
// outcome, as the workers' auth hooks report them.
func TestLoginMetrics(t *testing.T) {
	metricsAddr := proctest.FreeAddr(t)
	s := startSite(t, t.TempDir(), "--metrics-bind", metricsAddr)
	addUser(t, s.store(t), "alice", "correct horse", true)
	for range 2 {
		postJSON(t, s.url+"/api/token/", jsonBody("username", "alice", "password", "wrong horse"))
	}
	login(t, s, "alice", "correct horse")

	want := []string{`remuda_logins_total{outcome="success"} 1`, `remuda_logins_total{outcome="invalid"} 2`, `remuda_logins_total{outcome="throttled"} 0`}
	var body string
	ok := proctest.WaitUntil(5*time.Second, func() bool {
		_, body, _ = proctest.Get("http://"+metricsAddr+"/metrics", time.Second)
		for _, w := range want {
			if !strings.Contains(body, w+"\n") {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("/metrics after 1 login and 2 failed ones: want lines %q within 5 s (heartbeats carry the counts); got\n%s", want, grep(body, "remuda_logins_total"))
	}
}

// TestMetricsPassPromtool checks a real master's /metrics with Prometheus's
// own linter, and that the page has the master's process and Go figures,
// each worker's, and the build-info gauge.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
	}
	metricsAddr := proctest.FreeAddr(t)
	s := startSite(t, t.TempDir(), "--metrics-bind", metricsAddr, "--workers", "2")
	addUser(t, s.store(t), "alice", "correct horse", true)
	login(t, s, "alice", "correct horse")
	do(t, "GET", s.url+"/nowhere", "", "")

	// Every worker's runtime figures come with its heartbeats: wait for both.
	var body string
	ok := proctest.WaitUntil(5*time.Second, func() bool {
		_, body, _ = proctest.Get("http://"+metricsAddr+"/metrics", time.Second)
		return strings.Count(body, "\nremuda_worker_goroutines{") == 2 && strings.Contains(body, `remuda_logins_total{outcome="success"} 1`)
	})
	if !ok {
		t.Fatalf("/metrics: want 2 remuda_worker_goroutines samples and 1 login within 5 s; got\n%s", body)
	}

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("promtool check metrics: %v, output:\n%s", err, out.String())
	}

	for _, re := range []string{
		`(?m)^process_resident_memory_bytes [1-9][0-9.e+]*$`,
		`(?m)^process_cpu_seconds_total [0-9.e+-]+$`,
		`(?m)^process_open_fds [1-9][0-9]*$`,
		`(?m)^process_max_fds [1-9][0-9]*$`,
		`(?m)^process_start_time_seconds 1[0-9.e+]+$`,
		`(?m)^go_goroutines [1-9][0-9]*$`,
		`(?m)^go_memstats_heap_alloc_bytes [1-9][0-9.e+]*$`,
		`(?m)^go_gc_duration_seconds_count [0-9]+$`,
		`(?m)^go_info\{version="go1\.[0-9.]+[^"]*"\} 1$`,
		`(?m)^remuda_build_info\{app="[^"]+",version="[^"]+",revision="[^"]+",goversion="go1\.[^"]+"\} 1$`,
		`(?m)^remuda_worker_resident_memory_bytes\{worker="[0-9]+"\} [1-9][0-9.e+]*$`,
		`(?m)^remuda_worker_cpu_seconds_total\{worker="[0-9]+"\} [0-9.e+-]+$`,
		`(?m)^remuda_worker_open_fds\{worker="[0-9]+"\} [1-9][0-9]*$`,
		`(?m)^remuda_worker_goroutines\{worker="[0-9]+"\} [1-9][0-9]*$`,
		`(?m)^remuda_worker_heap_bytes\{worker="[0-9]+"\} [1-9][0-9.e+]*$`,
		`(?m)^remuda_master_generation 1$`,
		`(?m)^remuda_logins_total\{outcome="other"\} 0$`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics has no line matching %s", re)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// grep returns the lines of text that contain s.
func grep(text, s string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		if strings.Contains(line, s) {
			fmt.Fprint(&b, line)
		}
	}
	return b.String()
}
