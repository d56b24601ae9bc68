package strict

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// wantStatus names the status an invalid case expects when it is not 400.
var wantStatus = map[string]int{
	"request_line_too_long_414": 414,
	"head_too_large_431":        431,
}

// wantResponses names how many responses a valid case expects when it is
// not 1.
var wantResponses = map[string]int{
	"pipelined_two": 2,
}

// startServer serves a catch-all handler on 127.0.0.1, through Listener when
// wrap is set. The handler reads the body and answers 200 with its length.
func startServer(t testing.TB, wrap bool) (addr string, calls *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	calls = new(atomic.Int64)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			if r.URL.Path == "/echo" {
				echo(w)
				return
			}
			if r.URL.Path == "/noread" {
				io.WriteString(w, "unread")
				return
			}
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, "bad body", http.StatusBadRequest)
				return
			}
			io.WriteString(w, strconv.Itoa(len(b)))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	serveOn := ln
	if wrap {
		serveOn = Listener(ln, DefaultLimits)
	}
	go srv.Serve(serveOn)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), calls
}

// echo hijacks the connection, switches protocols and echoes 8 bytes.
func echo(w http.ResponseWriter) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	var b [8]byte
	if _, err := io.ReadFull(brw, b[:]); err == nil {
		c.Write(b[:])
	}
}

func corpus(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.http"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in testdata/%s: %v", dir, err)
	}
	m := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m[strings.TrimSuffix(filepath.Base(f), ".http")] = b
	}
	return m
}

// replayRefused sends data, half-closes, and returns the status of the first
// response (0 when none) and whether the server closed the connection after
// it.
func replayRefused(t testing.TB, addr string, data []byte) (status int, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, true
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	return resp.StatusCode, errors.Is(err, io.EOF)
}

func TestInvalid(t *testing.T) {
	addr, calls := startServer(t, true)
	for name, data := range corpus(t, "invalid") {
		t.Run(name, func(t *testing.T) {
			before := calls.Load()
			want := wantStatus[name]
			if want == 0 {
				want = http.StatusBadRequest
			}
			status, closed := replayRefused(t, addr, data)
			if status != want {
				t.Errorf("%s: got status %d, want %d", name, status, want)
			}
			if !closed {
				t.Errorf("%s: connection left open after the refusal", name)
			}
			if n := calls.Load() - before; n != 0 {
				t.Errorf("%s: handler called %d times, want 0", name, n)
			}
		})
	}
}

func TestValid(t *testing.T) {
	addr, _ := startServer(t, true)
	for name, data := range corpus(t, "valid") {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			n := max(wantResponses[name], 1)
			for i := range n {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: response %d: %v", name, i+1, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s: response %d: got status %d (%q), want 200", name, i+1, resp.StatusCode, body)
				}
			}
		})
	}
}

// TestPipelinedRefusal checks that a refused request after a valid one gets
// its 400 after the first response, not inside it.
func TestPipelinedRefusal(t *testing.T) {
	addr, calls := startServer(t, true)
	for name, first := range map[string]string{
		"get":            "GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
		"post":           "POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"post_noread":    "POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"chunked_noread": "POST /noread HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			before := calls.Load()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, first+"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
			br := bufio.NewReader(c)
			for i, want := range []int{200, 400} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("response %d: got status %d, want %d", i+1, resp.StatusCode, want)
				}
			}
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("got %v after the refusal, want EOF", err)
			}
			if n := calls.Load() - before; n != 1 {
				t.Errorf("handler called %d times, want 1", n)
			}
		})
	}
}

// TestSequentialRefusal sends a refused request after the response to a
// valid one on the same connection, including after a handler that left the
// body unread.
func TestSequentialRefusal(t *testing.T) {
	addr, _ := startServer(t, true)
	for name, first := range map[string]string{
		"get":            "GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
		"post":           "POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"post_noread":    "POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"chunked_noread": "POST /noread HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			for i, step := range []struct {
				req  string
				want int
			}{
				{first, 200},
				{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400},
			} {
				if i > 0 {
					// Let the server go idle in its read of the next
					// request, past its background read.
					time.Sleep(20 * time.Millisecond)
				}
				io.WriteString(c, step.req)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != step.want {
					t.Errorf("response %d: got status %d, want %d", i+1, resp.StatusCode, step.want)
				}
			}
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("got %v after the refusal, want EOF", err)
			}
		})
	}
}

// TestUpgradePassThrough checks that bytes after an upgrade request reach
// the hijacking handler unvalidated.
func TestUpgradePassThrough(t *testing.T) {
	addr, _ := startServer(t, true)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	raw := "\x00\n\r GET\x7f" // 8 bytes a validator would refuse
	io.WriteString(c, "GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"+raw)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got status %d, want 101", resp.StatusCode)
	}
	got := make([]byte, len(raw))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != raw {
		t.Errorf("got echo %q (%v), want %q", got, err, raw)
	}
}

// TestUpgradeDeclined checks that validation goes on when the response to an
// upgrade or CONNECT request does not switch protocols.
func TestUpgradeDeclined(t *testing.T) {
	addr, calls := startServer(t, true)
	smuggle := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	for name, first := range map[string]string{
		"upgrade":  "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"h2c_body": "POST / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhi",
	} {
		t.Run(name, func(t *testing.T) {
			before := calls.Load()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, first+smuggle)
			br := bufio.NewReader(c)
			for i, want := range []int{200, 400} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("response %d: got status %d, want %d", i+1, resp.StatusCode, want)
				}
			}
			if n := calls.Load() - before; n != 1 {
				t.Errorf("handler called %d times, want 1", n)
			}
		})
	}
}

// TestMidBodyViolation streams a chunked body whose second chunk-size line is
// malformed. The head is already with net/http, so the handler runs, its body
// read fails, and the connection is closed after its response.
func TestMidBodyViolation(t *testing.T) {
	addr, calls := startServer(t, true)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	time.Sleep(20 * time.Millisecond) // let net/http take the head
	io.WriteString(c, "-5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("got status %d from the handler, want 400", resp.StatusCode)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("got %v after the response, want EOF", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1 (no smuggled request)", n)
	}
}

// TestExpectContinue checks that a head is released without waiting for the
// body, so that net/http can answer 100 Continue.
func TestExpectContinue(t *testing.T) {
	addr, _ := startServer(t, true)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("got %q (%v), want a 100 Continue", line, err)
	}
	br.ReadString('\n') // the empty line ending the interim response
	io.WriteString(c, "body")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "4" {
		t.Errorf("got %d %q, want 200 \"4\"", resp.StatusCode, body)
	}
}

// TestSlowHead feeds a valid request and then an invalid one a byte at a
// time.
func TestSlowHead(t *testing.T) {
	addr, calls := startServer(t, true)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.(*net.TCPConn).SetNoDelay(true)
	req := "POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
	for i := range len(req) {
		c.Write([]byte{req[i]})
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "3" {
		t.Fatalf("got %d %q, want 200 \"3\"", resp.StatusCode, body)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}

// TestHeadline shows the case this package exists for: a request with both
// Content-Length and Transfer-Encoding. Measured behaviour of plain net/http
// (Go 1.26): it answers 200, framing the body as chunked and dropping
// Content-Length, while a proxy honouring Content-Length would see different
// request boundaries. Through Listener it gets 400 and the connection closes.
func TestHeadline(t *testing.T) {
	req := []byte("POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX")
	plain, plainCalls := startServer(t, false)
	status, _ := replayRefused(t, plain, req)
	t.Logf("plain net/http: status %d, handler calls %d", status, plainCalls.Load())
	if status != http.StatusOK {
		t.Errorf("plain net/http: got status %d, want 200 (documented behaviour changed?)", status)
	}
	strict, strictCalls := startServer(t, true)
	status, closed := replayRefused(t, strict, req)
	if status != http.StatusBadRequest || !closed || strictCalls.Load() != 0 {
		t.Errorf("Listener: got status %d, closed %v, handler calls %d; want 400, true, 0", status, closed, strictCalls.Load())
	}
}

// TestPlainAccepts counts the invalid cases plain net/http answers with a
// 2xx, i.e. passes to the handler.
func TestPlainAccepts(t *testing.T) {
	addr, _ := startServer(t, false)
	cases := corpus(t, "invalid")
	var accepted []string
	for name, data := range cases {
		if status, _ := replayRefused(t, addr, data); status >= 200 && status < 300 {
			accepted = append(accepted, name)
		}
	}
	slices.Sort(accepted)
	t.Logf("plain net/http accepts %d of %d: %s", len(accepted), len(cases), strings.Join(accepted, " "))
}

// fakeConn returns its input in chunks of the given sizes, then EOF.
type fakeConn struct {
	net.Conn
	in    []byte
	sizes []byte
	out   bytes.Buffer
}

func (f *fakeConn) Read(p []byte) (int, error) {
	if len(f.in) == 0 {
		return 0, io.EOF
	}
	n := len(f.in)
	if len(f.sizes) > 0 {
		n = min(n, int(f.sizes[0])+1)
		f.sizes = f.sizes[1:]
	}
	n = copy(p, f.in[:n])
	f.in = f.in[n:]
	return n, nil
}

func (f *fakeConn) Write(p []byte) (int, error)      { return f.out.Write(p) }
func (f *fakeConn) Close() error                     { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (f *fakeConn) CloseWrite() error                { return nil }

// drain reads everything the conn releases.
func drain(t testing.TB, c *conn) []byte {
	var out []byte
	p := make([]byte, 7)
	for range 1 << 20 {
		n, err := c.Read(p)
		out = append(out, p[:n]...)
		if err != nil {
			return out
		}
		if n == 0 {
			t.Fatal("Read returned 0, nil")
		}
	}
	t.Fatal("Read never returned an error")
	return nil
}

func FuzzStream(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		for _, data := range corpus(f, dir) {
			f.Add(data, []byte{3, 200, 0, 17}, uint16(0), uint16(0), uint16(0))
			f.Add(data, []byte{50}, uint16(DefaultRequestLine), uint16(DefaultFields), uint16(DefaultFieldSize))
			f.Add(data, []byte{1}, uint16(20), uint16(2), uint16(16))
		}
	}
	f.Fuzz(func(t *testing.T, in, sizes []byte, line, fields, fieldSize uint16) {
		lim := Limits{RequestLine: int(line), Fields: int(fields), FieldSize: int(fieldSize)}
		c := &conn{Conn: &fakeConn{in: in, sizes: sizes}, v: validator{lim: lim}}
		out := drain(t, c)
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("released %q, not a prefix of the input %q", out, in)
		}
		// What was released must validate on its own, whole: at worst it
		// ends inside a request.
		again := &conn{Conn: &fakeConn{in: out}, v: validator{lim: lim}}
		drain(t, again)
		if v := again.refused; v != nil && v.reason != "incomplete request" && !c.midBody {
			t.Fatalf("released %q, which the validator refuses: %s", out, v.reason)
		}
	})
}

func BenchmarkListener(b *testing.B) {
	for _, bc := range []struct {
		name string
		wrap bool
	}{{"plain", false}, {"strict", true}} {
		b.Run(bc.name, func(b *testing.B) {
			addr, _ := startServer(b, bc.wrap)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET /bench?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			br := bufio.NewReader(c)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkValidate is the validator's cost for one typical request head
// (a browser's GET behind a proxy), without any I/O.
func BenchmarkValidate(b *testing.B) {
	head := []byte("GET /api/items/?page=2 HTTP/1.1\r\n" +
		"Host: api.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0\r\n" +
		"Accept: application/json\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\n" +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl\r\n" +
		"X-Forwarded-For: 203.0.113.7\r\n" +
		"X-Forwarded-Proto: https\r\n" +
		"Connection: keep-alive\r\n\r\n")
	b.SetBytes(int64(len(head)))
	b.ReportAllocs()
	for b.Loop() {
		var v validator
		if n, end, err := v.step(head); n != len(head) || !end || err != nil {
			b.Fatalf("step: %d, %v, %v", n, end, err)
		}
	}
}
