package main

import (
	"fmt"
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
