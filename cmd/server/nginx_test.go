package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/nginxtest"
	"github.com/remuda/remuda/internal/proctest"
)

// The shipped nginx configuration, examples/nginx/remuda.conf, runs here
// with real nginx in front of the real binary.

const (
	exampleUpstream = "    server unix:/run/server.sock max_fails=1 fail_timeout=10s;\n"
	exampleListen   = "    listen 80;\n    listen [::]:80;\n"
)

// nginxSite is the example configuration with its upstream servers
// replaced by upstreams (nginx "server" addresses: unix:/path or
// host:port) and its listen address by listen.
func nginxSite(t *testing.T, listen string, upstreams ...string) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/nginx/remuda.conf")
	if err != nil {
		t.Fatal(err)
	}
	site := string(b)
	if !strings.Contains(site, exampleUpstream) || !strings.Contains(site, exampleListen) {
		t.Fatalf("examples/nginx/remuda.conf no longer has the lines this test replaces:\n%q\n%q", exampleUpstream, exampleListen)
	}
	var servers strings.Builder
	for _, u := range upstreams {
		servers.WriteString("    server " + u + " max_fails=1 fail_timeout=10s;\n")
	}
	site = strings.Replace(site, exampleUpstream, servers.String(), 1)
	return strings.Replace(site, exampleListen, "    listen "+listen+";\n", 1)
}

// TestNginxInFront runs the example configuration in front of the server
// over a unix socket and over TCP: requests are answered, the client's
// address reaches the server's access log (a forged X-Forwarded-For entry
// does not), nginx's request id is the server's, and a body over the
// limit is refused by nginx.
func TestNginxInFront(t *testing.T) {
	nginxtest.Binary(t)
	for _, tt := range []struct {
		name     string
		upstream func(dir string) (bind, server string)
	}{
		{"unix socket", func(dir string) (string, string) {
			sock := filepath.Join(dir, "remuda.sock")
			return "unix:" + sock, "unix:" + sock
		}},
		{"tcp", func(string) (string, string) {
			addr := proctest.FreeAddr(t)
			return addr, addr
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bind, upstream := tt.upstream(dir)
			database := "sqlite:" + filepath.Join(dir, "server.db")
			migrateDatabase(t, database)
			p := proctest.Start(t, os.Args[0], []string{envMain + "=1", "SERVER_SECRET_KEY=" + secret},
				"run", "--prod", "--workers", "2", "--bind", bind, "--database", database, "--access-log", "-")
			p.WaitReady(t, 1)
			listen := nginxtest.Addr(t)
			n := nginxtest.Start(t, listen, nginxSite(t, listen, upstream))

			for i := range 20 {
				if r := do(t, "GET", n.URL+"/healthz", "", ""); r.status != 200 || r.body != "ok" {
					t.Fatalf("request %d through nginx: %d %q, want 200 \"ok\"", i, r.status, r.body)
				}
			}

			// From 127.0.0.5, since the server trusts 127.0.0.1, nginx's
			// address: a client there would count as a proxy.
			r := getFrom(t, "127.0.0.5", n.URL+"/healthz?forged", "X-Forwarded-For", "198.51.100.66")
			id := r.Header.Get("X-Request-ID")
			if len(id) != 32 {
				t.Fatalf("X-Request-ID %q: want nginx's $request_id (32 hex digits) echoed by the server", id)
			}
			line := p.WaitFor(t, 5e9, 1, "the access-log line of the forged request", func(l proctest.Line) bool {
				return l.Msg() == "request" && l.Fields["request_id"] == id
			})[0]
			if got := line.Fields["remote_addr"]; got != "127.0.0.5:0" {
				t.Errorf("remote_addr %v, want the client's address as nginx saw it, 127.0.0.5:0 (not the forged 198.51.100.66, not nginx's)", got)
			}

			big := strings.Repeat("x", 11<<20)
			if r := do(t, "POST", n.URL+"/api/token/", "application/json", big); r.status != 413 {
				t.Errorf("11 MiB body through nginx: %d, want 413", r.status)
			}
		})
	}
}

// getFrom sends a GET from the local address ip, with header pairs.
func getFrom(t *testing.T, ip, url string, header ...string) *http.Response {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, ip, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s from %s: %d, want 200", url, ip, resp.StatusCode)
	}
	return resp
}
