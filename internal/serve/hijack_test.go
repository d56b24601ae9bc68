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

// hijackUntilDrain hijacks the connection, says "hi", and, unless ignore,
// says "bye" and closes it once the server drains; ignoring the drain, it
// holds the connection until its client closes it.
func hijackUntilDrain(ignore bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		draining := Draining(r.Context())
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nhi\n")
		brw.Flush()
		if ignore {
			io.Copy(io.Discard, c)
			return
		}
		<-draining
		io.WriteString(c, "bye\n")
	}
}

// dialHijacked opens a connection to url that hijackUntilDrain takes, and
// returns it once the handler said "hi".
func dialHijacked(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v, want 101", resp, err)
	}
	if line, err := br.ReadString('\n'); line != "hi\n" {
		t.Fatalf("after the upgrade: read %q %v, want \"hi\"", line, err)
	}
	return c, br
}

// drainedLine is the drain's last log line.
func drainedLine(t *testing.T, logs *observer.ObservedLogs) map[string]any {
	t.Helper()
	for _, e := range logs.All() {
		if strings.HasPrefix(e.Message, "drained") {
			return e.ContextMap()
		}
	}
	t.Fatalf("no drained line in %v", logs.All())
	return nil
}

// A drain tells the handler of a hijacked connection that it drains, and
// waits for the connection to end; the drained line counts it.
func TestDrainWaitsForHijacked(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	s, url := serveOn(t, hijackUntilDrain(false), Options{Logger: zap.New(core)})
	const n = 3
	var brs []*bufio.Reader
	for range n {
		_, br := dialHijacked(t, url)
		brs = append(brs, br)
	}
	start := time.Now()
	done := drainAsync(s, 10*time.Second)
	for i, br := range brs {
		if line, err := br.ReadString('\n'); line != "bye\n" {
			t.Errorf("connection %d after the drain started: read %q %v, want \"bye\"", i, line, err)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("connection %d after bye: %v, want EOF", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Drain: %v, want nil once the hijacked connections had ended", err)
	}
	t.Logf("drain with %d hijacked connections that end at its notice: %v", n, time.Since(start))
	line := drainedLine(t, logs)
	if line["hijacked_closed"] != int64(n) || line["hijacked_cut"] != int64(0) || line["closed_after_response"] != int64(0) {
		t.Errorf("drained line %v, want hijacked_closed %d, hijacked_cut 0, closed_after_response 0", line, n)
	}
}

// A hijacked connection whose handler ignores the drain holds it until
// its deadline, where it is closed and counted as cut.
func TestDrainCutsHijackedAtDeadline(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	s, url := serveOn(t, hijackUntilDrain(true), Options{Logger: zap.New(core)})
	_, br := dialHijacked(t, url)
	const within = 500 * time.Millisecond
	start := time.Now()
	done := drainAsync(s, within)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection ignoring the drain: read %v, want EOF at the deadline", err)
	}
	err := <-done
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain: %v, want the deadline's error", err)
	}
	if took < within {
		t.Errorf("Drain returned after %v, before its %v deadline", took, within)
	}
	line := drainedLine(t, logs)
	if line["hijacked_cut"] != int64(1) || line["hijacked_closed"] != int64(0) || line["dropped"] != int64(0) {
		t.Errorf("drained line %v, want hijacked_cut 1, hijacked_closed 0, dropped 0", line)
	}
	if w := logs.FilterMessage("drained: connections dropped at the graceful timeout").Len(); w != 1 {
		t.Errorf("%d warnings that connections were dropped, want 1", w)
	}
}

// A streaming response (Server-Sent Events) ends with a last event when
// the server drains; the drain waits for it.
func TestDrainEndsStream(t *testing.T) {
	s, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		io.WriteString(w, "data: hello\n\n")
		rc.Flush()
		<-Draining(r.Context())
		io.WriteString(w, "event: bye\ndata: draining\n\n")
	}), Options{})
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "data: hello\n" {
		t.Fatalf("first event: %q %v", line, err)
	}
	done := drainAsync(s, 10*time.Second)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\nevent: bye\ndata: draining\n\n" {
		t.Errorf("after the drain started: %q %v, want the last event, then the end", rest, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Drain: %v", err)
	}
}

// An upgrade answered during the drain keeps its Connection: Upgrade,
// where every other answer gets Connection: close.
func TestUpgradeDuringDrain(t *testing.T) {
	s, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "test")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	}), Options{})
	k := dialKeepAlive(t, url)
	done := drainAsync(s, 10*time.Second)
	<-s.drainStarted
	resp, _, err := k.get("/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Connection") != "Upgrade" {
		t.Errorf("upgrade during the drain: %d Connection: %q, want 101 with Connection: Upgrade", resp.StatusCode, resp.Header.Get("Connection"))
	}
	<-done
}

func TestDrainingOutsideAServer(t *testing.T) {
	if ch := Draining(context.Background()); ch != nil {
		t.Errorf("Draining of a context from no Server: %v, want nil", ch)
	}
}

// With Options.HijackedGrace, a hijacked connection whose handler ignores
// the drain is closed after the grace, long before the drain's deadline,
// and a request in flight still gets its answer.
func TestHijackedGrace(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/ws", hijackUntilDrain(true))
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	})
	const grace = 300 * time.Millisecond
	s, url := serveOn(t, mux, Options{Logger: zap.New(core), HijackedGrace: grace})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v, want 101", resp, err)
	}
	br.ReadString('\n') // "hi"
	slow := make(chan error, 1)
	go func() {
		resp, err := http.Get(url + "/slow")
		if err == nil {
			resp.Body.Close()
		}
		slow <- err
	}()
	for s.Active() == 0 {
		time.Sleep(time.Millisecond)
	}

	start := time.Now()
	done := drainAsync(s, 10*time.Second)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection ignoring the drain: read %v, want EOF after the grace", err)
	}
	cutAfter := time.Since(start)
	close(release)
	if err := <-slow; err != nil {
		t.Errorf("request in flight: %v, want its answer", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Drain: %v, want nil: its deadline is far", err)
	}
	if cutAfter < grace || cutAfter > 5*time.Second {
		t.Errorf("hijacked connection closed %v into the drain, want after the %v grace and long before the 10s deadline", cutAfter, grace)
	}
	line := drainedLine(t, logs)
	if line["hijacked_cut"] != int64(1) || line["dropped"] != int64(0) {
		t.Errorf("drained line %v, want hijacked_cut 1 and dropped 0", line)
	}
	if w := logs.FilterMessage("drained: hijacked connections closed after the hijacked grace").Len(); w != 1 {
		t.Errorf("%d warnings that hijacked connections were closed after the grace, want 1", w)
	}
}
