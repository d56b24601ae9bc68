package serve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// keepAlive is a client connection that sends requests by hand.
type keepAlive struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t *testing.T, url string) *keepAlive {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{t: t, c: c, br: bufio.NewReader(c)}
}

// get sends GET path and reads the answer.
func (k *keepAlive) get(path string) (*http.Response, string, error) {
	k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(k.c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// drainAsync starts a drain with a deadline and returns when it returns.
func drainAsync(s *Server, within time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		done <- s.Drain(ctx)
	}()
	return done
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

// A keep-alive connection idle when the drain starts may still send a
// request within IdleGrace: it is answered, with Connection: close, and the
// connection then ends with a FIN.
func TestDrainAnswersIdleConnectionWithinGrace(t *testing.T) {
	s, url := serveOn(t, okHandler, Options{})
	k := dialKeepAlive(t, url)
	if resp, _, err := k.get("/"); err != nil || resp.Close {
		t.Fatalf("before the drain: %v close=%v, want a keep-alive answer", err, resp != nil && resp.Close)
	}
	done := drainAsync(s, 10*time.Second)
	time.Sleep(IdleGrace / 2)
	resp, body, err := k.get("/")
	if err != nil {
		t.Fatalf("request sent %v into the drain on an idle connection: %v, want an answer", IdleGrace/2, err)
	}
	if resp.StatusCode != 200 || body != "ok" || !resp.Close {
		t.Errorf("got %d %q close=%v, want 200 \"ok\" with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if _, err := k.br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: read %v, want EOF (a FIN)", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return once its connections had ended")
	}
}

// A connection left idle past IdleGrace is closed with a FIN, not a reset,
// and the drain logs how its connections ended.
func TestDrainClosesIdleConnectionWithFIN(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	s, url := serveOn(t, okHandler, Options{Logger: zap.New(core)})
	idle := dialKeepAlive(t, url)
	if _, _, err := idle.get("/"); err != nil {
		t.Fatal(err)
	}
	busy := dialKeepAlive(t, url)
	if _, _, err := busy.get("/"); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	done := drainAsync(s, 10*time.Second)
	if resp, _, err := busy.get("/"); err != nil || !resp.Close {
		t.Fatalf("busy connection: %v, want an answer with Connection: close", err)
	}

	idle.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := idle.br.ReadByte()
	closedAfter := time.Since(started)
	if err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF (a FIN; ECONNRESET would be a reset)", err)
	}
	if closedAfter < IdleGrace {
		t.Errorf("idle connection closed %v into the drain, want after the %v grace", closedAfter, IdleGrace)
	}
	idle.c.Close()
	if err := <-done; err != nil {
		t.Errorf("Drain: %v", err)
	}
	lines := logs.FilterMessage("drained").All()
	if len(lines) != 1 {
		t.Fatalf("%d \"drained\" lines, want 1", len(lines))
	}
	got := lines[0].ContextMap()
	for k, want := range map[string]int64{"closed_after_response": 1, "closed_idle": 1, "closed_by_client": 0, "dropped": 0} {
		if got[k] != want {
			t.Errorf("drained line: %s = %v, want %d (%v)", k, got[k], want, got)
		}
	}
}

// A request whose head is arriving when the grace runs out is not cut: it
// is still arriving, and is answered.
func TestDrainWaitsForARequestArriving(t *testing.T) {
	s, url := serveOn(t, okHandler, Options{})
	k := dialKeepAlive(t, url)
	if _, _, err := k.get("/"); err != nil {
		t.Fatal(err)
	}
	done := drainAsync(s, 10*time.Second)
	time.Sleep(IdleGrace / 2)
	io.WriteString(k.c, "GET / HTTP/1.1\r\n")
	time.Sleep(IdleGrace)
	io.WriteString(k.c, "Host: x\r\n\r\n")
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatalf("request whose head spanned the grace: %v, want an answer", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("got %d close=%v, want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Drain: %v", err)
	}
}

// Past the drain's deadline what remains is dropped, and counted.
func TestDrainDropsAtDeadline(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	release := make(chan struct{})
	defer close(release)
	s, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }), Options{Logger: zap.New(core)})
	go http.Get(url)
	time.Sleep(100 * time.Millisecond)
	if err := <-drainAsync(s, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with a request stuck past the deadline: %v, want DeadlineExceeded", err)
	}
	lines := logs.FilterMessage("drained: connections dropped at the graceful timeout").All()
	if len(lines) != 1 || lines[0].ContextMap()["dropped"] != int64(1) {
		t.Errorf("drain lines %v, want one with dropped = 1", logs.All())
	}
}

// A closing connection with unread input half-closes and drains it first:
// the client reads its whole answer rather than a reset.
func TestCloseWithUnreadInputSendsNoReset(t *testing.T) {
	_, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond) // the client sends more meanwhile
		w.Header().Set("Connection", "close")
		io.WriteString(w, strings.Repeat("x", 100<<10))
	}), Options{})
	k := dialKeepAlive(t, url)
	io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(30 * time.Millisecond)
	// A pipelined request, still unread in the server's socket when it
	// closes the connection after the first answer.
	io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(300 * time.Millisecond) // the answer waits unread, as on a slow client
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != 100<<10 {
		t.Errorf("answer body: %d bytes, %v; want %d bytes whole (a reset would truncate it)", n, err, 100<<10)
	}
	if _, err := k.br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v, want EOF", err)
	}
}

// The request timeout cancels the request's context: a handler doing
// database work with r.Context() stops.
func TestTimeoutCancelsContext(t *testing.T) {
	const timeout = 200 * time.Millisecond
	canceled := make(chan time.Duration, 1)
	_, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		select {
		case <-r.Context().Done():
			canceled <- time.Since(start)
		case <-time.After(10 * time.Second):
		}
	}), Options{Timeout: timeout})
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("got %d, want 503", resp.StatusCode)
	}
	select {
	case d := <-canceled:
		t.Logf("context canceled %v into the request (timeout %v)", d, timeout)
		if d < timeout {
			t.Errorf("context canceled after %v, before the %v timeout", d, timeout)
		}
	case <-time.After(timeout + time.Second):
		t.Fatalf("context not canceled within the timeout + 1s")
	}
}

// A client that stalls while sending the body gets 408, the handler's read
// fails so that it returns, and the process is not recycled: the handler
// was not stuck.
func TestStalledBodyIs408WithoutRecycle(t *testing.T) {
	recycled := make(chan string, 2)
	returned := make(chan error, 1)
	s, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		returned <- err
	}), Options{Timeout: 300 * time.Millisecond, OnRecycle: func(r string) { recycled <- r }})
	k := dialKeepAlive(t, url)
	io.WriteString(k.c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n0123456789a")
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatalf("stalled body: %v, want an answer", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close || string(body) != clientTimeoutBody {
		t.Errorf("got %d %q close=%v, want 408 %q with Connection: close", resp.StatusCode, body, resp.Close, clientTimeoutBody)
	}
	assertSpared(t, s, returned, recycled, "a stalled body")
}

// assertSpared checks what follows a timeout blamed on the client: the
// handler returns, its I/O failed, and the process is not recycled, past a
// second timeout too.
func assertSpared(t *testing.T, s *Server, returned <-chan error, recycled <-chan string, what string) {
	t.Helper()
	select {
	case err := <-returned:
		if err == nil {
			t.Errorf("%s: the handler's I/O succeeded, want an error", what)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("%s: the handler did not return after its I/O was cut", what)
	}
	time.Sleep(400 * time.Millisecond)
	select {
	case r := <-recycled:
		t.Errorf("%s: recycled (%s), want the process kept", what, r)
	default:
	}
	if a := s.Active(); a != 0 {
		t.Errorf("%s: %d requests active, want 0", what, a)
	}
}

// A client that does not read the answer is not a stuck handler either.
func TestUnreadAnswerIsNotRecycled(t *testing.T) {
	recycled := make(chan string, 2)
	returned := make(chan error, 1)
	s, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		var err error
		for i := 0; i < 1000 && err == nil; i++ { // 64 MiB: far past every buffer
			_, err = w.Write(chunk)
		}
		returned <- err
	}), Options{Timeout: 300 * time.Millisecond, OnRecycle: func(r string) { recycled <- r }})
	k := dialKeepAlive(t, url)
	// A small receive buffer, never read.
	k.c.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	assertSpared(t, s, returned, recycled, "a client that does not read")
}

// A handler that ignores the failed read and hangs is stuck after all: one
// more timeout later, the process is recycled.
func TestHandlerHangingAfterClientCutOffIsRecycled(t *testing.T) {
	recycled := make(chan string, 2)
	release := make(chan struct{})
	defer close(release)
	_, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		<-release
	}), Options{Timeout: 200 * time.Millisecond, OnRecycle: func(r string) { recycled <- r }})
	k := dialKeepAlive(t, url)
	io.WriteString(k.c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\nabc")
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: %v %v, want 408", resp, err)
	}
	select {
	case r := <-recycled:
		if r != "timeout" {
			t.Errorf("recycled for %q, want timeout", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a handler hanging after its client was cut off was not recycled")
	}
}

// A handler that answers without reading a declared body is answered at
// once: the body wrapper the timeout needs must not hide net/http's own
// body from it (net/http would then try to read the body before answering).
func TestAnswerWithoutReadingBody(t *testing.T) {
	_, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}), Options{Timeout: 10 * time.Second})
	k := dialKeepAlive(t, url)
	io.WriteString(k.c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20971520\r\n\r\n")
	k.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %v %v, want the handler's 413 at once", resp, err)
	}
}
