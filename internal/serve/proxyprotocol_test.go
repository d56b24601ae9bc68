package serve

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/remuda/remuda/internal/proxyproto"
)

// remoteAddrHandler answers a request's RemoteAddr and X-Forwarded-For.
var remoteAddrHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, r.RemoteAddr+" "+r.Header.Get("X-Forwarded-For"))
})

// sendRaw connects from 127.0.0.1, sends sent, and returns everything the
// server sends back until it closes the connection.
func sendRaw(t *testing.T, addr, sent string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, sent); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("%q: read %q, then %v; want the server to close the connection", sent, got, err)
	}
	return string(got)
}

// TestProxyProtocol runs a hardened server with the PROXY protocol on: a
// listed peer's header gives every request on its connection the client's
// address, and the forwarded headers are judged by that address; a listed
// peer without a header, with a malformed one, and an unlisted peer with
// one get no response; an unlisted peer without one is served as before.
func TestProxyProtocol(t *testing.T) {
	const get = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n"
	const last = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	for _, tt := range []struct {
		name      string
		allowFrom string
		sent      string
		want      []string // in the answers, in order; none: closed without a response
		refusal   string
	}{
		{"v1, two requests", "127.0.0.1", "PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\n" + get + last,
			[]string{"203.0.113.7:56324 ", "203.0.113.7:56324 "}, ""},
		{"v2 from a trusted client keeps its X-Forwarded-For", "127.0.0.1", proxyHeaderV2("127.0.0.9", 4000) + get + last,
			[]string{"198.51.100.1:0 198.51.100.1", "127.0.0.9:4000 "}, ""},
		{"listed peer, no header", "127.0.0.1", get, nil, "no PROXY protocol header"},
		{"listed peer, malformed header", "127.0.0.1", "PROXY TCP4 203.0.113.7 127.0.0.1 056324 80\r\n" + get, nil, `port "056324"`},
		{"unlisted peer with a header", "10.0.0.1", "PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\n" + get, nil, "not listed"},
		{"unlisted peer, no header", "10.0.0.1", last, []string{"127.0.0.1:"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			allow, err := ParseProxies(tt.allowFrom)
			if err != nil {
				t.Fatal(err)
			}
			trusted, _ := ParseProxies("127.0.0.1,127.0.0.9")
			core, logs := observer.New(zap.InfoLevel)
			_, url := serveOn(t, remoteAddrHandler, Options{
				Logger: zap.New(core), Hardened: true, Proxies: trusted,
				ProxyProtocol: ProxyProtocol{Mode: proxyproto.Auto, AllowFrom: allow},
			})
			got := sendRaw(t, strings.TrimPrefix(url, "http://"), tt.sent)
			if tt.want == nil && got != "" {
				t.Errorf("got %q, want the connection closed without a response", got)
			}
			br := bufio.NewReader(strings.NewReader(got))
			for i, w := range tt.want {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("answer %d: %v; got %q, want answers %q", i, err, got, tt.want)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || !strings.HasPrefix(string(body), w) {
					t.Errorf("answer %d: %d %q, want 200 %q…", i, resp.StatusCode, body, w)
				}
			}
			refusals := logs.FilterMessage("proxy protocol refused").All()
			switch {
			case tt.refusal == "" && len(refusals) > 0:
				t.Errorf("logged %v, want no refusal", refusals[0].ContextMap())
			case tt.refusal != "" && (len(refusals) != 1 || !strings.Contains(refusals[0].ContextMap()["error"].(string), tt.refusal)):
				t.Errorf("refusals %v, want one whose error contains %q", logs.All(), tt.refusal)
			case tt.refusal != "" && !strings.HasPrefix(refusals[0].ContextMap()["addr"].(string), "127.0.0.1:"):
				t.Errorf("refusal logged addr %v, want the peer's", refusals[0].ContextMap()["addr"])
			}
		})
	}
}

// proxyHeaderV2 is a version 2 PROXY TCP4 header for client ip:port.
func proxyHeaderV2(ip string, port uint16) string {
	a := net.ParseIP(ip).To4()
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
	b = append(b, a...)
	b = append(b, 127, 0, 0, 1, byte(port>>8), byte(port), 0, 80)
	return string(b)
}

// TestProxyProtocolBeforeTLS: the header comes before the TLS handshake,
// and HTTPS requests see the client's address.
func TestProxyProtocolBeforeTLS(t *testing.T) {
	allow, _ := ParseProxies("127.0.0.1")
	cert := selfSigned(t)
	_, url := serveOn(t, remoteAddrHandler, Options{
		TLS:           &tls.Config{Certificates: []tls.Certificate{cert}},
		ProxyProtocol: ProxyProtocol{Mode: proxyproto.V1, AllowFrom: allow},
	})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "PROXY TCP6 2001:db8::7 ::1 40000 443\r\n")
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	io.WriteString(tc, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if got, want := strings.TrimSpace(string(body)), "[2001:db8::7]:40000"; got != want {
		t.Errorf("RemoteAddr over TLS %q, want %q", got, want)
	}
}

// TestProxyProtocolDrain: a connection whose header came and then nothing
// is an idle one to the drain, closed after the grace, not dropped; one
// that sent nothing at all too.
func TestProxyProtocolDrain(t *testing.T) {
	allow, _ := ParseProxies("127.0.0.1")
	core, logs := observer.New(zap.InfoLevel)
	s, url := serveOn(t, remoteAddrHandler, Options{
		Logger:        zap.New(core),
		ProxyProtocol: ProxyProtocol{Mode: proxyproto.Auto, AllowFrom: allow},
	})
	addr := strings.TrimPrefix(url, "http://")
	var conns []net.Conn
	for _, sent := range []string{"PROXY UNKNOWN\r\n", ""} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, sent)
		conns = append(conns, c)
	}
	time.Sleep(100 * time.Millisecond) // accepted, headers read
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v, want the quiet connections closed within the grace", err)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("connection %d: read %d, %v; want EOF", i, n, err)
		}
	}
	drained := logs.FilterMessage("drained").All()
	if len(drained) != 1 || drained[0].ContextMap()["dropped"] != int64(0) {
		t.Errorf("drained lines %v, want one with 0 dropped", drained)
	}
}

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestProxyProtocolUnixSocket: a peer on a unix socket (HAProxy on the
// same host) is listed unless AllowFrom is empty, as in Proxies.
func TestProxyProtocolUnixSocket(t *testing.T) {
	for _, tt := range []struct {
		allowFrom string
		want      string // the answer's body; "" for no answer
	}{
		{"127.0.0.1", "203.0.113.7:56324 "},
		{"", ""},
	} {
		t.Run("allow from "+tt.allowFrom, func(t *testing.T) {
			allow, _ := ParseProxies(tt.allowFrom)
			sock := t.TempDir() + "/s.sock"
			ln, err := Listen("unix:"+sock, 0)
			if err != nil {
				t.Fatal(err)
			}
			s := New(remoteAddrHandler, Options{Hardened: true, ProxyProtocol: ProxyProtocol{Mode: proxyproto.V1, AllowFrom: allow}})
			s.Serve([]net.Listener{ln})
			t.Cleanup(func() { s.Close() })
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			got, _ := io.ReadAll(c)
			body := ""
			if i := strings.Index(string(got), "\r\n\r\n"); i >= 0 {
				body = string(got[i+4:])
			}
			if body != tt.want {
				t.Errorf("got %q, want the body %q", got, tt.want)
			}
		})
	}
}
