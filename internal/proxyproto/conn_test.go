package proxyproto

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// accepted returns the server side of a loopback TCP connection whose
// client sends sent and then keeps the connection open.
func accepted(t *testing.T, sent string) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if _, err := io.WriteString(client, sent); err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConn(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mode   Mode
		listed bool
		sent   string
		remote string // "" for the peer's own
		read   string // what the server reads; "" for io.EOF at once
		refuse string // in the refusal's error
	}{
		{"listed, v1", Auto, true, "PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\n" + after, "203.0.113.7:56324", after, ""},
		{"listed, v2", V2, true, string(v2(cmdProxy, famTCP6, addrs6("2001:db8::9", "::1", 61001, 80))) + after, "[2001:db8::9]:61001", after, ""},
		{"listed, v2 LOCAL", Auto, true, string(v2(cmdLocal, famUnspec)) + after, "", after, ""},
		{"listed, v1 UNKNOWN", Auto, true, "PROXY UNKNOWN\r\n" + after, "", after, ""},
		{"listed, no header", Auto, true, after, "", "", "no PROXY protocol header"},
		{"listed, malformed", Auto, true, "PROXY TCP4 203.0.113.7 127.0.0.1 99999 80\r\n" + after, "", "", `port "99999"`},
		{"listed, wrong version", V1, true, string(v2(cmdLocal, famUnspec)) + after, "", "", "version 1 is required"},
		{"listed, nothing sent", Auto, true, "", "", "", "i/o timeout"},
		{"unlisted, no header", Auto, false, after, "", after, ""},
		{"unlisted, v1", Auto, false, "PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\n" + after, "", "", "not listed"},
		{"unlisted, v2", Auto, false, string(v2(cmdProxy, famTCP4, addrs4("203.0.113.7", "127.0.0.1", 1, 80))) + after, "", "", "not listed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nc := accepted(t, tt.sent)
			var refused []error
			c := NewConn(nc, tt.mode, tt.listed, 200*time.Millisecond, func(err error) { refused = append(refused, err) })
			want := tt.remote
			if want == "" {
				want = nc.RemoteAddr().String()
			}
			if got := c.RemoteAddr().String(); got != want {
				t.Errorf("RemoteAddr() = %s, want %s", got, want)
			}
			buf := make([]byte, 4096)
			var got []byte
			for len(got) < len(tt.read) {
				n, err := c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					t.Fatalf("Read: %v after %q, want %q", err, got, tt.read)
				}
			}
			if string(got) != tt.read {
				t.Errorf("read %q, want %q", got, tt.read)
			}
			if tt.read == "" {
				if n, err := c.Read(buf); n != 0 || err != io.EOF {
					t.Errorf("Read of a refused connection: %d, %v; want 0, io.EOF", n, err)
				}
			}
			switch {
			case tt.refuse == "" && len(refused) > 0:
				t.Errorf("refused with %v, want served", refused)
			case tt.refuse != "" && (len(refused) != 1 || !strings.Contains(refused[0].Error(), tt.refuse)):
				t.Errorf("refusals %v, want one containing %q", refused, tt.refuse)
			}
		})
	}
}

// TestConnClearsItsDeadline: the header's deadline does not outlive it.
func TestConnClearsItsDeadline(t *testing.T) {
	nc := accepted(t, "PROXY UNKNOWN\r\n")
	c := NewConn(nc, Auto, true, 50*time.Millisecond, nil)
	c.RemoteAddr()
	time.Sleep(100 * time.Millisecond)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Read after the header returned %v, want it to wait for the client: the header's deadline must not outlive it", err)
	case <-time.After(100 * time.Millisecond):
		nc.Close()
	}
}
