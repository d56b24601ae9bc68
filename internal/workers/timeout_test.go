package workers_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// The request timeout cancels the request's context, so a handler doing
// work under r.Context() (a database query) stops, besides the 503 and the
// recycle.
func TestTimeoutCancelsRequestContext(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds; go test without -short runs it")
	}
	const timeout = 2 * time.Second
	p, url := prod(t, nil, "--workers", "1", "--timeout", "2s")
	sent := time.Now()
	status, _, err := proctest.Get(url+"/waitctx", 10*time.Second)
	if status != http.StatusServiceUnavailable {
		t.Errorf("GET /waitctx: %d %v, want 503", status, err)
	}
	p.WaitFor(t, timeout+time.Second-time.Since(sent), 1, "the handler seeing its context canceled", func(l proctest.Line) bool {
		out, _ := l.Fields["output"].(string)
		return strings.HasPrefix(out, "context canceled after")
	})
	t.Logf("the handler saw its context canceled %v after the request was sent (timeout %v)", time.Since(sent), timeout)
}

// A client that stalls sending a body is not a stuck worker: it gets 408,
// and the worker keeps serving; it is not replaced.
func TestStalledBodyGets408AndKeepsWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds; go test without -short runs it")
	}
	const timeout = 2 * time.Second
	p, url := prod(t, nil, "--workers", "1", "--timeout", "2s")
	worker := proctest.Children(p.Pid())
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := time.Now()
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 200\r\n\r\n0123456789a")
	c.SetReadDeadline(time.Now().Add(timeout + 3*time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("POST with 11 of 200 body bytes: %v, want an answer", err)
	}
	body, _ := io.ReadAll(resp.Body)
	answered := time.Since(sent)
	t.Logf("stalled body answered %d %q after %v", resp.StatusCode, body, answered)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("got %d close=%v, want 408 with Connection: close", resp.StatusCode, resp.Close)
	}
	if answered > timeout+time.Second {
		t.Errorf("answered after %v, want within the %v timeout + 1s", answered, timeout)
	}
	p.WaitFor(t, time.Second, 1, "the timeout logged as the client's", proctest.Msg("request timed out waiting for the client"))
	p.WaitFor(t, 2*time.Second, 1, "the handler's read failing", func(l proctest.Line) bool {
		out, _ := l.Fields["output"].(string)
		return strings.HasPrefix(out, "upload:")
	})

	// Two heartbeats later: the same worker, serving, never asked to go.
	time.Sleep(2 * time.Second)
	if now := proctest.Children(p.Pid()); !slices.Equal(now, worker) {
		t.Errorf("workers %v after a stalled body, want the same %v", now, worker)
	}
	if got := p.Find(proctest.Msg("worker asks to be recycled")); len(got) != 0 {
		t.Errorf("the worker asked to be recycled: %s", got[0].Raw)
	}
	if status, _, err := proctest.Get(url+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("after the stalled body: GET /healthz %d %v, want 200", status, err)
	}
	p.AssertJSONLogs(t)
}
