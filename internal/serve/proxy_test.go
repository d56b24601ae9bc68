package serve

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestParseProxies(t *testing.T) {
	for _, tt := range []struct {
		list    string
		trusted []string
		not     []string
		bad     bool
	}{
		{list: "127.0.0.1,::1", trusted: []string{"127.0.0.1", "::1", "::ffff:127.0.0.1"}, not: []string{"127.0.0.2", "10.0.0.1"}},
		{list: "10.0.0.0/8, 192.168.1.5", trusted: []string{"10.1.2.3", "192.168.1.5"}, not: []string{"11.0.0.1", "192.168.1.6"}},
		{list: "*", trusted: []string{"8.8.8.8", "2001:db8::1"}},
		{list: "", not: []string{"127.0.0.1"}},
		{list: "localhost", bad: true},
		{list: "10.0.0.0/33", bad: true},
	} {
		t.Run(tt.list, func(t *testing.T) {
			ps, err := ParseProxies(tt.list)
			if (err != nil) != tt.bad {
				t.Fatalf("ParseProxies(%q): error %v, want error %v", tt.list, err, tt.bad)
			}
			for _, a := range tt.trusted {
				r := httptest.NewRequest("GET", "/", nil)
				r.RemoteAddr = net.JoinHostPort(a, "1234")
				if !ps.forwarded(r) {
					t.Errorf("%q does not trust %s", tt.list, a)
				}
			}
			for _, a := range tt.not {
				r := httptest.NewRequest("GET", "/", nil)
				r.RemoteAddr = net.JoinHostPort(a, "1234")
				if ps.forwarded(r) {
					t.Errorf("%q trusts %s", tt.list, a)
				}
			}
		})
	}
}

func TestForwarded(t *testing.T) {
	ps, _ := ParseProxies("127.0.0.1,10.0.0.0/8")
	for _, tt := range []struct {
		name, peer, xff, proto string
		remote, keepProto      string
	}{
		{"trusted proxy", "127.0.0.1:5000", "203.0.113.7", "https", "203.0.113.7:0", "https"},
		{"chain of trusted proxies", "127.0.0.1:5000", "203.0.113.7, 10.0.0.2", "https", "203.0.113.7:0", "https"},
		{"client forges the left entry", "127.0.0.1:5000", "1.2.3.4, 203.0.113.7", "", "203.0.113.7:0", ""},
		{"untrusted peer", "198.51.100.9:4000", "203.0.113.7", "https", "198.51.100.9:4000", ""},
		{"garbage", "127.0.0.1:5000", "not-an-ip", "", "127.0.0.1:5000", ""},
		{"only proxies", "127.0.0.1:5000", "10.0.0.3", "", "10.0.0.3:0", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.peer
			r.Header.Set("X-Forwarded-For", tt.xff)
			if tt.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			ps.forwarded(r)
			if r.RemoteAddr != tt.remote || r.Header.Get("X-Forwarded-Proto") != tt.keepProto {
				t.Errorf("peer %s, X-Forwarded-For %q: RemoteAddr %s, proto %q; want %s, %q",
					tt.peer, tt.xff, r.RemoteAddr, r.Header.Get("X-Forwarded-Proto"), tt.remote, tt.keepProto)
			}
		})
	}
}

// TestForwardedUnixSocket checks that a peer on a unix socket (nginx on the
// same host) is believed unless nobody is, as Gunicorn does.
func TestForwardedUnixSocket(t *testing.T) {
	sock := &net.UnixAddr{Name: "/run/remuda/remuda.sock", Net: "unix"}
	for _, tt := range []struct {
		list, remote string
	}{
		{"127.0.0.1", "203.0.113.7:0"},
		{"", "@"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, sock))
		r.RemoteAddr = "@"
		r.Header.Set("X-Forwarded-For", "203.0.113.7")
		ps, _ := ParseProxies(tt.list)
		ps.forwarded(r)
		if r.RemoteAddr != tt.remote {
			t.Errorf("forwarded_allow_ips %q, unix peer: RemoteAddr %s, want %s", tt.list, r.RemoteAddr, tt.remote)
		}
	}
}
