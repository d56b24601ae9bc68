package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/remuda/remuda/internal/proctest"
)

// h2loadBin is h2load's path; the test skips without it.
func h2loadBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("h2load")
	if err != nil {
		t.Skip("h2load is not installed (Debian package nghttp2-client; .ci/run installs it)")
	}
	return bin
}

// h2loadResult is h2load's summary of the streams (requests) it made.
type h2loadResult struct {
	total, started, done, succeeded, failed, errored, timeout int
}

func (r h2loadResult) add(o h2loadResult) h2loadResult {
	return h2loadResult{r.total + o.total, r.started + o.started, r.done + o.done, r.succeeded + o.succeeded, r.failed + o.failed, r.errored + o.errored, r.timeout + o.timeout}
}

func (r h2loadResult) String() string {
	return fmt.Sprintf("%d total, %d started, %d done, %d succeeded, %d failed, %d errored, %d timeout",
		r.total, r.started, r.done, r.succeeded, r.failed, r.errored, r.timeout)
}

var h2loadSummary = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)

// parseH2load reads the "requests:" line of h2load's output.
func parseH2load(out []byte) (h2loadResult, bool) {
	m := h2loadSummary.FindSubmatch(out)
	if m == nil {
		return h2loadResult{}, false
	}
	var n [7]int
	for i := range n {
		n[i], _ = strconv.Atoi(string(m[i+1]))
	}
	return h2loadResult{n[0], n[1], n[2], n[3], n[4], n[5], n[6]}, true
}

func TestParseH2load(t *testing.T) {
	out := []byte("finished in 8.00s, 2964.38 req/s, 110.05KB/s\nrequests: 23715 total, 23715 started, 23715 done, 23555 succeeded, 160 failed, 160 errored, 0 timeout\nstatus codes: 23555 2xx, 0 3xx, 0 4xx, 0 5xx\n")
	got, ok := parseH2load(out)
	want := h2loadResult{23715, 23715, 23715, 23555, 160, 160, 0}
	if !ok || got != want {
		t.Errorf("got %v (found: %v), want %v", got, ok, want)
	}
	if _, ok := parseH2load([]byte("no summary")); ok {
		t.Error("a summary found in output without one")
	}
}

// h2loadThroughReloads starts the handover app in prod with 2 workers and
// flags, loads scheme://addr/healthz with h2load and with runH2Load (each
// 16 connections × 10 concurrent streams, no retries) while two busy
// loops compete for the cores, and sends the master two HUPs and one
// USR2, each once the last handover is over. It returns h2load's summary
// (the sum of its three runs), runH2Load's counts, and what the server
// side saw.
func h2loadThroughReloads(t *testing.T, scheme string, flags ...string) (h2loadResult, *h2Counts, handovers) {
	t.Helper()
	h2load := h2loadBin(t)
	proctest.BusyLoops(t, 2)
	dir := t.TempDir()
	addr := proctest.FreeAddr(t)
	accessLog := filepath.Join(dir, "access.log")
	args := append([]string{"run", "--prod", "--workers", "2", "--bind", addr, "--database", "sqlite:" + filepath.Join(dir, "server.db"), "--access-log", accessLog, "--log-level", "debug"}, flags...)
	p := proctest.Start(t, os.Args[0], []string{envHandoverApp + "=1", "SERVER_SECRET_KEY=" + secret}, args...)
	p.WaitReady(t, 1)

	url := scheme + "://" + addr + "/healthz"
	dial := func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
	if scheme == "https" {
		dial = func() (net.Conn, error) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
			if err == nil && c.ConnectionState().NegotiatedProtocol != "h2" {
				c.Close()
				return nil, fmt.Errorf("ALPN chose %q, not h2", c.ConnectionState().NegotiatedProtocol)
			}
			return c, err
		}
	}
	goCtx, stopGo := context.WithCancel(context.Background())
	defer stopGo()
	goc := make(chan *h2Counts, 1)
	go func() { goc <- runH2Load(goCtx, dial, url, 16, 10) }()

	master := p.Pid()
	var line []proctest.Line
	drainedLines := func(n int, what string) {
		p.WaitFor(t, 30*time.Second, n, what, proctest.Msg("drained"))
	}
	hup := func(i int) func() {
		return func() {
			syscall.Kill(master, syscall.SIGHUP)
			p.WaitFor(t, 30*time.Second, i+1, fmt.Sprintf("generation ready after HUP %d", i), proctest.Msg("generation ready"))
			drainedLines(2*i, fmt.Sprintf(`the old workers "drained" after HUP %d`, i))
		}
	}
	usr2 := func() {
		syscall.Kill(master, syscall.SIGUSR2)
		line = p.WaitFor(t, 30*time.Second, 4, "the new master ready after USR2", proctest.Msg("generation ready"))
		if line[3].Int("pid") == master {
			t.Fatalf("USR2: the generation ready is the old master's %d", master)
		}
		if !proctest.WaitUntil(30*time.Second, func() bool { return !proctest.Alive(master) }) {
			t.Fatalf("USR2: old master %d still running", master)
		}
		drainedLines(6, `the old master's workers "drained" after USR2`)
	}
	// h2load does not open a new connection after a GOAWAY: its load ends
	// at the handover. So each handover gets an h2load of its own, started
	// a second before it, long enough for it on a busy machine under
	// -race; the test fails if the handover outlasts it.
	const seconds = 8
	var r h2loadResult
	var took time.Duration
	for i, handover := range []func(){hup(1), hup(2), usr2} {
		ctx, cancel := context.WithTimeout(context.Background(), (seconds+30)*time.Second)
		cmd := exec.CommandContext(ctx, h2load, "-c16", "-m10", "-t1", "-D", strconv.Itoa(seconds), url)
		outc := make(chan []byte, 1)
		go func() {
			out, _ := cmd.CombinedOutput()
			outc <- out
		}()
		time.Sleep(time.Second)
		start := time.Now()
		handover()
		took += time.Since(start)
		if time.Since(start) > (seconds-2)*time.Second {
			t.Errorf("handover %d took %v, too close to the end of its %ds load: lengthen it", i+1, time.Since(start), seconds)
		}
		out := <-outc
		cancel()
		one, ok := parseH2load(out)
		if !ok {
			t.Fatalf("no summary in h2load's output:\n%s", out)
		}
		r = r.add(one)
	}
	time.Sleep(500 * time.Millisecond)
	stopGo()
	counts := <-goc

	// The last master stops, and its workers write out the access log.
	last := line[3].Int("pid")
	syscall.Kill(last, syscall.SIGTERM)
	if !proctest.WaitUntil(30*time.Second, func() bool { return !proctest.Alive(last) }) {
		t.Fatalf("the last master %d still runs 30s after TERM", last)
	}
	log, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	var drains []string
	for _, l := range p.Find(proctest.Msg("drained")) {
		drains = append(drains, fmt.Sprintf("%.3fs", l.Fields["duration"]))
	}
	opened := 0
	for _, l := range p.Find(proctest.Msg("http2 connection closed")) {
		opened += l.Int("streams")
	}
	return r, counts, handovers{took, bytes.Count(log, []byte(`"path":"/healthz"`)), opened, drains}
}

// handovers is what the server side saw of h2loadThroughReloads.
type handovers struct {
	took   time.Duration // the three handovers, from the first HUP
	served int           // requests in the access log
	opened int           // streams the clients opened, as the workers read them
	drains []string      // each worker's drain, as long as it took
}

// checkH2Load logs both loads' figures and fails the test on any lost
// request: one the Go client sent and did not get a 200 for, or one the
// server logged and no client counted as answered.
//
// h2load's "errored" are no such loss. Its client library, nghttp2, may
// queue a request, then read the GOAWAY before it sends it: it never
// sends it (RFC 9113 §6.8 forbids new streams after a GOAWAY) and closes
// its stream REFUSED_STREAM, which h2load counts as errored. The workers
// show those requests never reached the server: they count the streams
// the clients opened (the HEADERS of a new stream read from the
// connection), which are as many as the requests in the access log, which
// are as many as the answers the clients counted.
func checkH2Load(t *testing.T, how string, r h2loadResult, counts *h2Counts, h handovers) {
	t.Helper()
	t.Logf("%s through two HUPs and one USR2 (%v; drains %v), 2 busy loops: h2load -c16 -m10: %v; Go client, 16×10: %v; %d streams opened, %d requests in the access log",
		how, h.took, h.drains, r, counts, h.opened, h.served)
	if r.failed != r.errored || r.timeout != 0 || r.succeeded == 0 {
		t.Errorf("h2load: %v; want every answer a success, 0 timeout", r)
	}
	if counts.failed != 0 || counts.ok == 0 {
		t.Errorf("Go client: %v; want 0 failed (%q)", counts, counts.errs)
	}
	if answered := r.succeeded + int(counts.ok); h.served != answered {
		t.Errorf("the server logged %d requests, the clients got %d answers: want as many", h.served, answered)
	}
	if h.opened != h.served {
		t.Errorf("the clients opened %d streams, the server logged %d requests: want as many", h.opened, h.served)
	}
}

// TestHTTP2OverTLSThroughReloads: HTTP/2 clients (negotiated with ALPN)
// lose no stream when their workers retire: a draining worker sends GOAWAY
// in two steps and finishes the streams in flight.
func TestHTTP2OverTLSThroughReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("h2load through two HUPs and one USR2")
	}
	certFile, keyFile, _ := proctest.SelfSigned(t)
	r, counts, h := h2loadThroughReloads(t, "https", "--certfile", certFile, "--keyfile", keyFile)
	checkH2Load(t, "over TLS", r, counts, h)
}

// TestH2CThroughReloads: the same over cleartext HTTP/2 with prior
// knowledge, from a trusted peer (127.0.0.1, the default
// forwarded_allow_ips).
func TestH2CThroughReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("h2load through two HUPs and one USR2")
	}
	r, counts, h := h2loadThroughReloads(t, "http", "--http2-cleartext", "prior-knowledge")
	checkH2Load(t, "over h2c", r, counts, h)
}

// curlBin is curl's path; the test skips without it.
func curlBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (Debian package curl; .ci/run installs it)")
	}
	return bin
}

// curlStatus runs curl with args and returns its "%{http_version}
// %{http_code}", and its exit code.
func curlStatus(t *testing.T, args ...string) (string, int) {
	t.Helper()
	args = append([]string{"-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--max-time", "10"}, args...)
	out, err := exec.Command(curlBin(t), args...).Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// startH2CSite starts the handover app in prod with one worker and flags.
func startH2CSite(t *testing.T, flags ...string) (addr string) {
	t.Helper()
	addr = proctest.FreeAddr(t)
	args := append([]string{"run", "--prod", "--workers", "1", "--bind", addr, "--database", "sqlite:" + filepath.Join(t.TempDir(), "server.db")}, flags...)
	p := proctest.Start(t, os.Args[0], []string{envHandoverApp + "=1", "SERVER_SECRET_KEY=" + secret}, args...)
	p.WaitReady(t, 1)
	return addr
}

// TestH2CPriorKnowledge: with --http2-cleartext prior-knowledge, curl
// --http2-prior-knowledge from 127.0.0.1 gets HTTP/2 200; with 127.0.0.1
// not in --forwarded-allow-ips, the preface gets the very bytes it gets
// with h2c off.
func TestH2CPriorKnowledge(t *testing.T) {
	on := startH2CSite(t, "--http2-cleartext", "prior-knowledge")
	if got, code := curlStatus(t, "--http2-prior-knowledge", "http://"+on+"/healthz"); got != "2 200" {
		t.Errorf("curl --http2-prior-knowledge: %q (exit %d), want HTTP/2 200", got, code)
	}
	if got, code := curlStatus(t, "--http1.1", "http://"+on+"/healthz"); got != "1.1 200" {
		t.Errorf("curl --http1.1 with h2c on: %q (exit %d), want HTTP/1.1 200", got, code)
	}

	off := startH2CSite(t)
	untrusted := startH2CSite(t, "--http2-cleartext", "prior-knowledge", "--forwarded-allow-ips", "10.0.0.1")
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	want, got := rawExchange(t, "127.0.0.1", off, preface), rawExchange(t, "127.0.0.1", untrusted, preface)
	if got != want || !bytes.HasPrefix([]byte(got), []byte("HTTP/1.1 400 ")) {
		t.Errorf("preface from a peer not trusted: %q; want what h2c off answers, %q (a 400)", got, want)
	}
}

// TestH2CLimits: an HTTP/2 request with 200 header fields, a 2 MiB header
// field or a body over --max-body-size is refused as it is over HTTP/1.
// curl cannot send a 2 MiB field (its requests are capped at 1 MiB): that
// one is sent by hand, and over HTTP/2 it ends the connection rather than
// get a 431 (golang.org/x/net/http2 does not decode that far).
func TestH2CLimits(t *testing.T) {
	addr := startH2CSite(t, "--http2-cleartext", "prior-knowledge", "--max-body-size", "1K")
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var many strings.Builder
	for i := range 200 {
		fmt.Fprintf(&many, "X-Field-%d: v\n", i)
	}
	fields := write("fields", many.String())
	body := write("body", strings.Repeat("b", 2<<10))
	url := "http://" + addr + "/healthz"
	for _, tc := range []struct {
		name string
		args []string
		want string // the HTTP/1 status
	}{
		{"200 header fields", []string{"-H", "@" + fields}, "431"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h1, _ := curlStatus(t, append([]string{"--http1.1", url}, tc.args...)...)
			h2, code := curlStatus(t, append([]string{"--http2-prior-knowledge", url}, tc.args...)...)
			t.Logf("HTTP/1.1: %q; HTTP/2: %q (curl exit %d)", h1, h2, code)
			if h1 != "1.1 "+tc.want {
				t.Fatalf("HTTP/1.1: %q, want %s", h1, tc.want)
			}
			if h2 != "2 "+tc.want {
				t.Errorf("HTTP/2: %q (curl exit %d), want 2 %s as over HTTP/1.1", h2, code, tc.want)
			}
		})
	}

	// Frame by frame over HTTP/2: the server answers 413 before it has
	// read the body, then resets the stream, which curl may read first
	// and report as an error (exit 92) without the answer it had.
	t.Run("a body over --max-body-size", func(t *testing.T) {
		h1, _ := curlStatus(t, "--http1.1", url, "--data-binary", "@"+body)
		if h1 != "1.1 413" {
			t.Fatalf("HTTP/1.1: %q, want 413", h1)
		}
		status, goAway := h2cRequest(t, addr, nil, []byte(strings.Repeat("b", 2<<10)))
		if status != 413 {
			t.Errorf("HTTP/2: status %d, GOAWAY %v; want 413 as over HTTP/1.1", status, goAway)
		}
	})

	t.Run("a 2 MiB header field", func(t *testing.T) {
		huge := strings.Repeat("h", 2<<20)
		h1 := rawExchange(t, "127.0.0.1", addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: "+huge+"\r\n\r\n")
		if !strings.HasPrefix(h1, "HTTP/1.1 431 ") {
			t.Errorf("HTTP/1.1: %.40q, want 431", h1)
		}
		status, goAway := h2cRequest(t, addr, [][2]string{{"x-huge", huge}}, nil)
		t.Logf("HTTP/1.1: %.12q; HTTP/2: status %d, GOAWAY %v", h1, status, goAway)
		if status != 431 && goAway != http2.ErrCodeCompression && goAway != http2.ErrCodeProtocol {
			t.Errorf("HTTP/2: status %d, GOAWAY %v; want 431, or the connection ended with COMPRESSION_ERROR or PROTOCOL_ERROR", status, goAway)
		}
	})
}

// h2cRequest sends a request for /healthz with more fields over h2c with
// prior knowledge, frame by frame: a GET, or a POST of body if it is not
// nil. It returns the answer's status, or the error code of the GOAWAY
// that ended the connection first.
func h2cRequest(t *testing.T, addr string, more [][2]string, body []byte) (int, http2.ErrCode) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields := [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", addr}, {":path", "/healthz"}}
	if body != nil {
		fields[0][1] = "POST"
		fields = append(fields, [2]string{"content-length", strconv.Itoa(len(body))})
	}
	for _, f := range append(fields, more...) {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	go func() {
		// Sent while the answer is read: the server may answer, or end
		// the connection, before it has read all of it.
		io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		fr.WriteSettings()
		b := block.Bytes()
		const frag = 16 << 10
		first := b[:min(frag, len(b))]
		b = b[len(first):]
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: body == nil, EndHeaders: len(b) == 0}) != nil {
			return
		}
		for len(b) > 0 {
			p := b[:min(frag, len(b))]
			b = b[len(p):]
			if fr.WriteContinuation(1, len(b) == 0, p) != nil {
				return
			}
		}
		if body != nil {
			fr.WriteData(1, true, body)
		}
	}()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("h2c request: %v before an answer or a GOAWAY", err)
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo {
				return 0, f.ErrCode
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				code, _ := strconv.Atoi(f.PseudoValue("status"))
				return code, http2.ErrCodeNo
			}
		}
	}
}

// h2Counts is what runH2Load counted.
type h2Counts struct {
	ok, failed, unsent, conns int64
	errs                      []string // the first few failures
}

func (c *h2Counts) String() string {
	return fmt.Sprintf("%d ok, %d failed, %d unsent (refused by the client itself after a GOAWAY, then sent on a new connection), on %d connections", c.ok, c.failed, c.unsent, c.conns)
}

// runH2Load is HTTP/2 load that never retries a request it sent, until
// ctx is done: conns connections, streams requests in flight on each,
// each a GET of url answered 200 or counted as failed. A connection told
// GOAWAY takes no new request: once its requests are over, a new
// connection replaces it. A request the client refuses itself for a
// GOAWAY that came between reserving a stream and sending it ("client
// conn not usable") was never sent: it counts as unsent, and goes on the
// next connection, as a correct client does; any other error is a failed
// request.
func runH2Load(ctx context.Context, dial func() (net.Conn, error), url string, conns, streams int) *h2Counts {
	var mu sync.Mutex
	n := &h2Counts{}
	count := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			n.ok++
		case err.Error() == "http2: client conn not usable":
			n.unsent++
		default:
			n.failed++
			if len(n.errs) < 5 {
				n.errs = append(n.errs, err.Error())
			}
		}
	}
	tr := &http2.Transport{}
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				nc, err := dial()
				if err != nil {
					count(err)
					continue
				}
				cc, err := tr.NewClientConn(nc)
				if err != nil {
					nc.Close()
					count(err)
					continue
				}
				mu.Lock()
				n.conns++
				mu.Unlock()
				var streaming sync.WaitGroup
				for range streams {
					streaming.Go(func() {
						for ctx.Err() == nil && cc.ReserveNewRequest() {
							req, _ := http.NewRequest("GET", url, nil)
							resp, err := cc.RoundTrip(req)
							if err == nil {
								_, err = io.Copy(io.Discard, resp.Body)
								resp.Body.Close()
								if err == nil && resp.StatusCode != 200 {
									err = fmt.Errorf("status %d", resp.StatusCode)
								}
							}
							count(err)
						}
					})
				}
				streaming.Wait()
				cc.Close()
			}
		})
	}
	wg.Wait()
	return n
}
