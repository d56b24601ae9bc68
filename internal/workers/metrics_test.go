package workers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/remuda/remuda/internal/proctest"
)

// samples are the lines of a /metrics scrape, by name with labels, as
// `remuda_requests_total{method="GET",code="200"}`.
type samples map[string]float64

// scrape fetches the master's /metrics and parses it.
func scrape(t *testing.T, metricsURL string) samples {
	t.Helper()
	status, body, err := proctest.Get(metricsURL+"/metrics", 5*time.Second)
	if err != nil || status != 200 {
		t.Fatalf("GET /metrics: %d %v", status, err)
	}
	// The reference parser, as a Prometheus server reads the page.
	parser := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := parser.TextToMetricFamilies(strings.NewReader(body)); err != nil {
		t.Fatalf("/metrics is not Prometheus's text format: %v\n%s", err, body)
	}
	s := samples{}
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		s[line[:i]] = v
	}
	return s
}

// sum adds up the samples of a metric.
func (s samples) sum(name string) float64 {
	var n float64
	for k, v := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			n += v
		}
	}
	return n
}

// count is how many series of a metric there are.
func (s samples) count(name string) int {
	n := 0
	for k := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			n++
		}
	}
	return n
}

// status is the part of /status the tests read.
type status struct {
	PID        int `json:"pid"`
	Generation int `json:"generation"`
	Workers    []struct {
		PID        int     `json:"pid"`
		Worker     int     `json:"worker"`
		Generation int     `json:"generation"`
		State      string  `json:"state"`
		Requests   uint64  `json:"requests"`
		RSSBytes   int64   `json:"rss_bytes"`
		AgeSeconds float64 `json:"age_seconds"`
	} `json:"workers"`
}

func getStatus(t *testing.T, metricsURL string) status {
	t.Helper()
	code, body, err := proctest.Get(metricsURL+"/status", 5*time.Second)
	if err != nil || code != 200 {
		t.Fatalf("GET /status: %d %v", code, err)
	}
	var st status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /status: %v in %s", err, body)
	}
	return st
}

// prodWithMetrics starts a prod master serving metrics; it returns the
// app's URL and the metrics server's.
func prodWithMetrics(t *testing.T, flags ...string) (p *proctest.Proc, url, metricsURL string) {
	t.Helper()
	maddr := proctest.FreeAddr(t)
	p, url = prod(t, nil, append(flags, "--metrics-bind", maddr)...)
	return p, url, "http://" + maddr
}

// TestMetricsOnUnixSocket checks that metrics_bind on a unix socket is
// bound as the app's sockets are: a socket file left by a master that
// died does not stop the next one, the socket's mode is 0660, and a stop
// removes it.
func TestMetricsOnUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.sock")
	staleSocket(t, path)
	p, _ := prod(t, nil, "--workers", "1", "--metrics-bind", "unix:"+path)
	checkSocketMode(t, path)
	resp, err := unixClient(path).Get("http://unix/metrics")
	if err != nil {
		t.Fatalf("GET /metrics over %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `remuda_workers{state="ready"} 1`) {
		t.Errorf("GET /metrics over %s: %d, want 200 with one ready worker:\n%s", path, resp.StatusCode, body)
	}
	p.Signal(t, syscall.SIGTERM)
	p.Wait(t, 10*time.Second)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("metrics socket file left after stop: %v", err)
	}
}

func TestMetricsAddUpOverWorkers(t *testing.T) {
	p, url, murl := prodWithMetrics(t, "--workers", "3")
	const ok, missing = 60, 7
	for i := range ok {
		if code, _, err := proctest.Get(url+"/healthz", 2*time.Second); code != 200 {
			t.Fatalf("GET /healthz %d: %d %v", i, code, err)
		}
	}
	for range missing {
		if code, _, err := proctest.Get(url+"/missing", 2*time.Second); code != 404 {
			t.Fatalf("GET /missing: %d %v, want 404", code, err)
		}
	}
	// The deltas arrive with the heartbeats, once a second.
	var s samples
	settled := proctest.WaitUntil(10*time.Second, func() bool {
		s = scrape(t, murl)
		return s.sum("remuda_requests_total") == ok+missing
	})
	if !settled {
		t.Fatalf("remuda_requests_total sums to %v, want %d", s.sum("remuda_requests_total"), ok+missing)
	}
	for key, want := range map[string]float64{
		`remuda_requests_total{method="GET",code="200"}`:    ok,
		`remuda_requests_total{method="GET",code="404"}`:    missing,
		`remuda_request_duration_seconds_count`:             ok + missing,
		`remuda_request_duration_seconds_bucket{le="+Inf"}`: ok + missing,
		`remuda_workers{state="ready"}`:                     3,
		`remuda_workers{state="booting"}`:                   0,
		`remuda_requests_in_flight`:                         0,
	} {
		if s[key] != want {
			t.Errorf("%s = %v, want %v", key, s[key], want)
		}
	}
	if _, ok := s[`remuda_accept_queue_length{addr="`+strings.TrimPrefix(url, "http://")+`"}`]; !ok {
		t.Errorf("no accept-queue gauge for %s", url)
	}

	st := getStatus(t, murl)
	var pids []int
	var served uint64
	busy := 0
	for _, w := range st.Workers {
		pids = append(pids, w.PID)
		served += w.Requests
		if w.Requests > 0 {
			busy++
		}
		if w.State != "ready" || w.Generation != 1 || w.RSSBytes <= 0 {
			t.Errorf("/status worker %d: state %s, generation %d, rss %d; want ready, 1, > 0", w.PID, w.State, w.Generation, w.RSSBytes)
		}
	}
	slices.Sort(pids)
	children := proctest.Children(p.Pid())
	slices.Sort(children)
	if !slices.Equal(pids, children) || st.PID != p.Pid() || st.Generation != 1 {
		t.Errorf("/status: master %d generation %d, workers %v; want master %d generation 1, workers %v", st.PID, st.Generation, pids, p.Pid(), children)
	}
	if served != ok+missing {
		t.Errorf("/status workers served %d requests, want %d", served, ok+missing)
	}
	t.Logf("%d requests spread over %d of 3 workers", served, busy)
}

// A worker killed with SIGKILL takes nothing from the totals: the master
// adds deltas up, it never takes a worker's word for a total.
func TestMetricsSurviveKilledWorker(t *testing.T) {
	skipIfShort(t)
	p, url, murl := prodWithMetrics(t, "--workers", "3")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	proctest.StartLoad(ctx, url+"/healthz", 6).Stop(t)
	time.Sleep(1500 * time.Millisecond) // heartbeats carry the load's counts
	before := scrape(t, murl)

	victim := proctest.Children(p.Pid())[0]
	victimSeries := ""
	for _, w := range getStatus(t, murl).Workers {
		if w.PID == victim {
			victimSeries = fmt.Sprintf(`remuda_worker_resident_memory_bytes{worker="%d"}`, w.Worker)
		}
	}
	if _, ok := before[victimSeries]; !ok {
		t.Errorf("before the kill: no series %q for worker pid %d", victimSeries, victim)
	}
	syscall.Kill(victim, syscall.SIGKILL)
	p.WaitFor(t, 10*time.Second, 4, "a replacement ready", proctest.Msg("worker ready"))
	time.Sleep(1500 * time.Millisecond)
	after := scrape(t, murl)
	for key, v := range before {
		if strings.Contains(key, `{worker="`) {
			continue // a worker's own series leave with it
		}
		if (strings.Contains(key, "_total") || strings.Contains(key, "_bucket") || strings.HasSuffix(key, "_count") || strings.HasSuffix(key, "_sum")) && after[key] < v {
			t.Errorf("%s went down from %v to %v after a worker was killed", key, v, after[key])
		}
	}
	// Each live worker has its own series; the killed one's left with it.
	if _, ok := after[victimSeries]; ok {
		t.Errorf("after the kill: %s still on the page", victimSeries)
	}
	if got := after.count("remuda_worker_resident_memory_bytes"); got != 3 {
		t.Errorf("after the kill: %d remuda_worker_resident_memory_bytes series, want 3 (one per live worker)", got)
	}
	if got := after[`remuda_worker_exits_total{reason="crash"}`]; got != 1 {
		t.Errorf(`remuda_worker_exits_total{reason="crash"} = %v, want 1`, got)
	}
	t.Logf("requests before the kill %v, after %v", before.sum("remuda_requests_total"), after.sum("remuda_requests_total"))
}

func TestMaxWorkerMemoryRecycles(t *testing.T) {
	skipIfShort(t)
	p, url, murl := prodWithMetrics(t, "--workers", "2", "--max-worker-memory", "96M", "--graceful-timeout", "5s")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	l := proctest.StartLoad(ctx, url+"/healthz", 8)
	time.Sleep(500 * time.Millisecond)
	if code, body, err := proctest.Get(url+"/leak?mb=160", 10*time.Second); code != 200 {
		t.Fatalf("GET /leak: %d %q %v", code, body, err)
	}
	over := p.WaitFor(t, 5*time.Second, 1, `"worker over memory limit, recycling it"`, proctest.Msg("worker over memory limit, recycling it"))[0]
	leaker := over.Int("worker_pid")
	t.Logf("worker %d recycled with rss %d", leaker, over.Int("rss"))
	if !proctest.WaitUntil(8*time.Second, func() bool {
		now := proctest.Children(p.Pid())
		return len(now) == 2 && !slices.Contains(now, leaker)
	}) {
		t.Fatalf("worker %d over the memory limit still there (children %v)", leaker, proctest.Children(p.Pid()))
	}
	ok, failed := l.Stop(t)
	if ok == 0 || failed != 0 {
		t.Errorf("recycling for memory under load: %d ok, %d failed; want 0 failed", ok, failed)
	}
	if !proctest.WaitUntil(5*time.Second, func() bool { return scrape(t, murl)[`remuda_worker_exits_total{reason="memory"}`] == 1 }) {
		t.Errorf(`remuda_worker_exits_total{reason="memory"} = %v, want 1`, scrape(t, murl)[`remuda_worker_exits_total{reason="memory"}`])
	}
	p.AssertJSONLogs(t)
}

// With every worker at --worker-connections, new connections wait in the
// kernel's accept queue, and the gauge shows them.
func TestAcceptQueueGauge(t *testing.T) {
	skipIfShort(t)
	_, url, murl := prodWithMetrics(t, "--workers", "2", "--worker-connections", "2")
	addr := strings.TrimPrefix(url, "http://")
	gauge := `remuda_accept_queue_length{addr="` + addr + `"}`
	send := func(path string) net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
		return c
	}
	var conns []net.Conn
	for range 4 { // 2 workers × 2 connections
		conns = append(conns, send("/sleep?d=3s"))
	}
	time.Sleep(500 * time.Millisecond)
	const waiting = 5
	for range waiting {
		conns = append(conns, send("/healthz"))
	}
	var peak float64
	proctest.WaitUntil(2*time.Second, func() bool {
		peak = max(peak, scrape(t, murl)[gauge])
		return peak == waiting
	})
	if peak == 0 {
		t.Fatalf("%s stayed 0 with every worker busy and %d connections waiting", gauge, waiting)
	}
	t.Logf("accept queue peaked at %v with %d waiting", peak, waiting)
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("connection %d: %s, want 200", i, resp.Status)
		}
	}
	var now float64
	if !proctest.WaitUntil(5*time.Second, func() bool { now = scrape(t, murl)[gauge]; return now == 0 }) {
		t.Errorf("%s = %v once the load stopped, want 0", gauge, now)
	}
	if scrape(t, murl)[`remuda_accept_queue_max{addr="`+addr+`"}`] <= 0 {
		t.Errorf("remuda_accept_queue_max not above 0")
	}
}

// logrotate moves the error log away and sends USR1: the master reopens
// it, and its own lines and the workers' relayed ones go to the new file.
func TestUSR1ReopensErrorLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "error.log")
	addr := proctest.FreeAddr(t)
	p := start(t, nil, "run", "--prod", "--bind", addr, "--workers", "1", "--error-log", logPath, "--access-log", "-")
	contains := func(path, s string) func() bool {
		return func() bool {
			b, _ := os.ReadFile(path)
			return strings.Contains(string(b), s)
		}
	}
	if !proctest.WaitUntil(15*time.Second, contains(logPath, `"msg":"generation ready"`)) {
		t.Fatalf("no generation ready in %s", logPath)
	}
	proctest.Get("http://"+addr+"/healthz", 2*time.Second)
	if !proctest.WaitUntil(2*time.Second, contains(logPath, `"path":"/healthz"`)) {
		t.Fatalf("the worker's access line was not relayed to %s", logPath)
	}
	os.Rename(logPath, logPath+".1")
	p.Signal(t, syscall.SIGUSR1)
	// The master's line, then the worker's: it reopens once the master
	// passed the signal on.
	if !proctest.WaitUntil(5*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), `"msg":"logs reopened"`) == 2
	}) {
		t.Fatalf("no \"logs reopened\" of the master and of the worker in a new %s", logPath)
	}
	proctest.Get("http://"+addr+"/pid", 2*time.Second)
	if !proctest.WaitUntil(2*time.Second, contains(logPath, `"path":"/pid"`)) {
		t.Errorf("a worker's line after USR1 did not reach the new %s", logPath)
	}
	if contains(logPath+".1", `"path":"/pid"`)() || contains(logPath+".1", `"logs reopened"`)() {
		t.Errorf("lines after USR1 went to the rotated file")
	}
	if lines := p.Lines(); len(lines) != 0 {
		t.Errorf("%d lines on stderr with --error-log, want none; first: %s", len(lines), lines[0].Raw)
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
}
