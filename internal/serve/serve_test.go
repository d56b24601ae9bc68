package serve

import (
	"bufio"
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/metrics"
)

func TestRequestID(t *testing.T) {
	tests := []struct {
		name, given string
		keep        bool
	}{
		{"nginx request id", "3f0c6ab4b6e54f1e8e5e3c1c2d9f6a10", true},
		{"uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", true},
		{"dots and underscores", "web_1.42", true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", 65), false},
		{"header injection", "abc\r\nSet-Cookie: x=1", false},
		{"space", "a b", false},
		{"quote", `a"b`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := requestID(tt.given)
			if tt.keep && got != tt.given {
				t.Errorf("requestID(%q) = %q, want it kept", tt.given, got)
			}
			if !tt.keep && (got == tt.given || len(got) != 16) {
				t.Errorf("requestID(%q) = %q, want a new 16-character id", tt.given, got)
			}
		})
	}
}

func FuzzRequestID(f *testing.F) {
	f.Add("3f0c6ab4b6e54f1e8e5e3c1c2d9f6a10")
	f.Add("abc\r\nx: y")
	f.Add("")
	f.Fuzz(func(t *testing.T, given string) {
		id := requestID(given)
		if id == "" || len(id) > 64 {
			t.Fatalf("requestID(%q) = %q: want 1 to 64 characters", given, id)
		}
		for _, c := range []byte(id) {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
			if !ok {
				t.Fatalf("requestID(%q) = %q: byte %q is not allowed in a header value we echo", given, id, c)
			}
		}
	})
}

// serveOn starts a Server for h on a loopback listener.
func serveOn(t *testing.T, h http.Handler, opts Options) (*Server, string) {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	s := New(h, opts)
	s.Serve([]net.Listener{ln})
	t.Cleanup(func() { s.Close() })
	return s, "http://" + ln.Addr().String()
}

func TestTimeoutBeforeResponse(t *testing.T) {
	recycled := make(chan string, 1)
	release := make(chan struct{})
	defer close(release)
	s, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Handler", "yes") // races the timeout unless guarded
		<-release
		if _, err := w.Write([]byte("late")); err != http.ErrHandlerTimeout {
			t.Errorf("write after the timeout: %v, want ErrHandlerTimeout", err)
		}
	}), Options{Timeout: 200 * time.Millisecond, OnRecycle: func(r string) { recycled <- r }})

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != timeoutBody || !resp.Close {
		t.Errorf("got %d %q close=%v, want 503 %q with Connection: close", resp.StatusCode, body, resp.Close, timeoutBody)
	}
	select {
	case r := <-recycled:
		if r != "timeout" {
			t.Errorf("OnRecycle got %q, want timeout", r)
		}
	case <-time.After(time.Second):
		t.Error("OnRecycle not called")
	}
	if s.Active() != 1 {
		t.Errorf("active %d, want 1 (the handler still runs)", s.Active())
	}
}

func TestTimeoutAfterResponseStarted(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	_, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		<-release
	}), Options{Timeout: 200 * time.Millisecond})
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "partial" || err == nil {
		t.Errorf("got %d %q err=%v, want 200 \"partial\" then a truncated body error", resp.StatusCode, body, err)
	}
}

func TestHijackedIsNeverTimedOut(t *testing.T) {
	_, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		time.Sleep(400 * time.Millisecond) // past the timeout
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		brw.Flush()
	}), Options{Timeout: 100 * time.Millisecond})
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("hijacked past the timeout: %d %q, want the handler's 200 \"ok\"", resp.StatusCode, body)
	}
}

func TestMaxRequests(t *testing.T) {
	var calls atomic.Int32
	_, url := serveOn(t, http.NotFoundHandler(), Options{MaxRequests: 3, OnRecycle: func(string) { calls.Add(1) }})
	for range 5 {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("OnRecycle called %d times over 5 requests with MaxRequests 3, want once", n)
	}
}

// A request that arrives on a connection accepted during the drain is
// answered, not dropped as http.Server.Shutdown would.
func TestDrainAnswersLateRequest(t *testing.T) {
	s, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), Options{})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // accepted, no request yet
	done := make(chan error, 1)
	go func() { done <- s.Drain(context.Background()) }()
	time.Sleep(acceptDrainWindow + 50*time.Millisecond)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request sent during the drain: %v, want an answer", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("got %d close=%v, want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Drain: %v", err)
	}
}

// With MaxConns busy connections, a new one waits in the kernel's queue;
// it is taken when a slot frees, and a drain takes it over the cap.
func TestMaxConns(t *testing.T) {
	release, release2 := make(chan struct{}), make(chan struct{})
	s, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hold":
			<-release
		case "/hold2":
			<-release2
		}
		io.WriteString(w, "ok")
	}), Options{MaxConns: 2})
	addr := strings.TrimPrefix(url, "http://")
	send := func(path string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		return c
	}
	answered := func(c net.Conn, within time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(within))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	send("/hold")
	send("/hold")
	time.Sleep(100 * time.Millisecond)
	waiting := send("/")
	if answered(waiting, 300*time.Millisecond) {
		t.Fatal("a third connection was served while MaxConns 2 were busy")
	}
	close(release)
	if !answered(waiting, 2*time.Second) {
		t.Fatal("the waiting connection was not served once a slot freed")
	}

	// Busy again; a drain serves the queued connection anyway.
	busy := []net.Conn{send("/hold2"), send("/hold2")}
	time.Sleep(100 * time.Millisecond)
	queued := send("/")
	done := make(chan error, 1)
	go func() { done <- s.Drain(context.Background()) }()
	if !answered(queued, 2*time.Second) {
		t.Error("a connection queued when Drain started was not served")
	}
	close(release2)
	for i, c := range busy {
		if !answered(c, 2*time.Second) {
			t.Errorf("busy connection %d not answered", i)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Drain: %v", err)
	}
}

func TestMetricsCountsRequests(t *testing.T) {
	var m metrics.Set
	release := make(chan struct{})
	defer close(release)
	_, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stuck":
			<-release
		case "/missing":
			http.NotFound(w, r)
		}
	}), Options{Metrics: &m, Timeout: 300 * time.Millisecond})
	for _, path := range []string{"/", "/", "/missing", "/stuck"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// The 503 is counted just after it is written: add deltas up a while.
	got, want := map[string]uint64{}, map[string]uint64{"GET 200": 2, "GET 404": 1, "GET 503": 1}
	var n uint64
	var sum float64
	for deadline := time.Now().Add(2 * time.Second); !maps.Equal(got, want) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if d := m.Delta(); d != nil {
			for k, c := range d.Requests {
				got[k] += c
			}
			for _, c := range d.Duration {
				n += c
			}
			sum += d.DurationSum
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("counted requests %v, want %v", got, want)
	}
	if n != 4 || sum < 0.3 {
		t.Errorf("histogram holds %d requests summing %.3fs, want 4 summing at least the 0.3s timeout", n, sum)
	}
}

// TestMaxBodySize sends bodies to a Server whose limit is 10 bytes: one at
// the limit reaches the handler whole; one declared larger is answered 413
// before the handler runs; a chunked one larger than the limit fails the
// handler's read at the limit.
func TestMaxBodySize(t *testing.T) {
	var ran atomic.Int32
	_, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran.Add(1)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read "+strconv.Itoa(len(b))+" bytes: too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.Write(b)
	}), Options{MaxBodySize: 10})

	for _, tt := range []struct {
		name    string
		body    io.Reader
		length  int64 // -1: chunked
		status  int
		handled bool
		want    string // a part of the answer
	}{
		{"at the limit", strings.NewReader("0123456789"), 10, 200, true, "0123456789"},
		{"declared over the limit", strings.NewReader("0123456789A"), 11, 413, false, `{"detail":"Request body larger than 10 bytes."}`},
		{"chunked over the limit", io.MultiReader(strings.NewReader("0123456789A")), -1, 413, true, "read 10 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ran.Store(0)
			req, _ := http.NewRequest("POST", url, tt.body)
			req.ContentLength = tt.length
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.want) || (ran.Load() == 1) != tt.handled {
				t.Errorf("got %d %q, handler ran %d times; want %d with %q, handler ran: %t", resp.StatusCode, b, ran.Load(), tt.status, tt.want, tt.handled)
			}
		})
	}
}
