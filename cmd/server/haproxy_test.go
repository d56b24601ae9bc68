package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/haproxytest"
	"github.com/remuda/remuda/internal/proctest"
)

// haproxyConf puts HAProxy in front of the server at upstream, as a layer
// 4 load balancer: v1 sends the PROXY protocol header version 1
// (send-proxy), v2 version 2 (send-proxy-v2), and unlisted version 1 from
// 127.0.0.3, an address the server does not list in --proxy-allow-from.
func haproxyConf(v1, v2, unlisted, upstream string) string {
	return fmt.Sprintf(`global
	log stderr format raw local0 info

defaults
	mode tcp
	log global
	timeout connect 5s
	timeout client 30s
	timeout server 30s

frontend v1
	bind %s
	default_backend v1

frontend v2
	bind %s
	default_backend v2

frontend unlisted
	bind %s
	default_backend unlisted

backend v1
	server remuda %[4]s send-proxy

backend v2
	server remuda %[4]s send-proxy-v2

backend unlisted
	server remuda %[4]s send-proxy source 127.0.0.3
`, v1, v2, unlisted, upstream)
}

// clientFrom is an HTTP client whose connections leave from ip, one fresh
// connection per request; it records the local port of the last one.
type clientFrom struct {
	http.Client
	port int
}

func newClientFrom(ip string) *clientFrom {
	c := &clientFrom{}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c.Client = http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err == nil {
				c.port = conn.LocalAddr().(*net.TCPAddr).Port
			}
			return conn, err
		},
	}}
	return c
}

func (c *clientFrom) post(t *testing.T, url, body string) reply {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// rawExchange connects to addr from ip, sends sent, and returns what comes
// back until the server closes the connection.
func rawExchange(t *testing.T, ip, addr, sent string) string {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, sent); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("from %s, %q: read %q, then %v; want the server to close the connection", ip, sent, got, err)
	}
	return string(got)
}

// TestHAProxyInFront runs real HAProxy in front of the server with the
// PROXY protocol on (--proxy-protocol auto, the default --proxy-allow-from
// 127.0.0.1,::1): through send-proxy and send-proxy-v2 the access log
// shows each client's own address and port, and the login throttle counts
// per client, not per proxy. A connection from a listed peer without a
// header, or with a malformed one, and one from an unlisted peer with a
// header (HAProxy itself, from 127.0.0.3) are closed without a response.
func TestHAProxyInFront(t *testing.T) {
	haproxytest.Binary(t)
	s := startSite(t, t.TempDir(), "--workers", "2", "--proxy-protocol", "auto")
	addUser(t, s.store(t), "alice", "correct horse", true)
	upstream := strings.TrimPrefix(s.url, "http://")
	v1, v2, unlisted := proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)
	haproxytest.Start(t, haproxyConf(v1, v2, unlisted, upstream), v1)

	// Every client is on its own loopback address, none of them
	// 127.0.0.1 (HAProxy's address, and a listed peer).
	for _, tt := range []struct{ name, via, ip string }{{"send-proxy", v1, "127.0.0.2"}, {"send-proxy-v2", v2, "127.0.0.4"}} {
		t.Run(tt.name, func(t *testing.T) {
			c := newClientFrom(tt.ip)
			r := c.post(t, "http://"+tt.via+"/api/token/", jsonBody("username", "alice", "password", "nope"))
			want(t, "failed login", r, 401, badLogin)
			id := r.header.Get("X-Request-ID")
			line := s.p.WaitFor(t, 5*time.Second, 1, "the access-log line of the login", func(l proctest.Line) bool {
				return l.Msg() == "request" && l.Fields["request_id"] == id
			})[0]
			if got, want := line.Fields["remote_addr"], fmt.Sprintf("%s:%d", tt.ip, c.port); got != want {
				t.Errorf("remote_addr %v, want the client's own address and port %s", got, want)
			}
		})
	}

	// The throttle counts per original client: five failures from
	// 127.0.0.2 (one above, four more) lock alice out there, and only
	// there.
	c2, c4, c5 := newClientFrom("127.0.0.2"), newClientFrom("127.0.0.4"), newClientFrom("127.0.0.5")
	for i := range 4 {
		want(t, fmt.Sprintf("failure %d from 127.0.0.2", i+2), c2.post(t, "http://"+v1+"/api/token/", jsonBody("username", "alice", "password", "nope")), 401, badLogin)
	}
	if r := c2.post(t, "http://"+v2+"/api/token/", jsonBody("username", "alice", "password", "correct horse")); r.status != 429 {
		t.Errorf("6th login from 127.0.0.2, through send-proxy-v2: %d %s, want 429", r.status, r.body)
	}
	for _, tt := range []struct {
		name string
		c    *clientFrom
		via  string
	}{{"127.0.0.4 (one failure)", c4, v2}, {"127.0.0.5 (none)", c5, v1}} {
		if r := tt.c.post(t, "http://"+tt.via+"/api/token/", jsonBody("username", "alice", "password", "correct horse")); r.status != 200 {
			t.Errorf("login from %s: %d %s, want 200: the throttle must count per client, not per proxy", tt.name, r.status, r.body)
		}
	}

	// Refusals: closed without a response, and logged.
	const get = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	for _, tt := range []struct {
		name, from, to, sent, reason string
	}{
		{"missing header, from a listed peer", "127.0.0.1", upstream, get, "no PROXY protocol header"},
		{"malformed header, from a listed peer", "127.0.0.1", upstream, "PROXY TCP4 198.51.100.7 127.0.0.1 70000 80\r\n" + get, `port \"70000\"`},
		{"header from an unlisted peer", "127.0.0.6", upstream, "PROXY TCP4 198.51.100.7 127.0.0.1 4000 80\r\n" + get, "not listed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := rawExchange(t, tt.from, tt.to, tt.sent); got != "" {
				t.Errorf("got %q, want the connection closed without a response", got)
			}
			s.p.WaitFor(t, 5*time.Second, 1, "the refusal's log line", func(l proctest.Line) bool {
				return l.Msg() == "proxy protocol refused" && strings.Contains(l.Raw, tt.reason) && strings.Contains(l.Raw, tt.from)
			})
		})
	}
	t.Run("header from an unlisted peer, HAProxy from 127.0.0.3", func(t *testing.T) {
		if got := rawExchange(t, "127.0.0.7", unlisted, get); got != "" {
			t.Errorf("got %q, want the connection closed without a response", got)
		}
		s.p.WaitFor(t, 5*time.Second, 1, "the refusal's log line", func(l proctest.Line) bool {
			return l.Msg() == "proxy protocol refused" && strings.Contains(l.Raw, "not listed") && strings.Contains(l.Raw, "127.0.0.3")
		})
	})
	// An unlisted peer without a header is served as without the protocol.
	if got := rawExchange(t, "127.0.0.8", upstream, get); !strings.HasPrefix(got, "HTTP/1.1 200 OK") {
		t.Errorf("unlisted peer without a header: got %q, want 200", got)
	}
	s.p.AssertJSONLogs(t)
}
