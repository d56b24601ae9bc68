// Package haproxytest runs a throwaway HAProxy for tests: the load
// balancer that speaks the PROXY protocol (send-proxy, send-proxy-v2) to
// the server behind it, started in the foreground with a configuration of
// the test's on free ports of 127.0.0.1.
package haproxytest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// Binary returns the path of haproxy, or skips t with what to install.
func Binary(t testing.TB) string { return proctest.Binary(t, "haproxy", "haproxy") }

// Start runs haproxy with conf (its global, defaults, frontend and backend
// sections), after checking it with haproxy -c, and waits until every one
// of addrs, the addresses its frontends bind, accepts a connection.
// haproxy writes its messages to its stderr (shown if the test fails) and
// is killed when the test ends.
func Start(t testing.TB, conf string, addrs ...string) {
	t.Helper()
	bin := Binary(t)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\nconfiguration:\n%s", err, out, conf)
	}
	proctest.Start(t, bin, nil, "-db", "-f", path)
	for _, addr := range addrs {
		if !proctest.WaitUntil(10*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		}) {
			t.Fatalf("haproxy did not listen on %s within 10 s", addr)
		}
	}
}
