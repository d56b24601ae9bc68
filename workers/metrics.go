package workers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/metrics"
)

// Reasons a worker exits: the reason label of remuda_worker_exits_total.
const (
	exitCrash       = "crash"        // died while serving
	exitBootFailed  = "boot_failed"  // died, or timed out, while booting
	exitTimeout     = "timeout"      // a request ran past Config.Timeout; recycled
	exitSilent      = "silent"       // no heartbeat for Config.Timeout; SIGABRT
	exitMaxRequests = "max_requests" // served Config.MaxRequests; recycled
	exitMemory      = "memory"       // its RSS passed Config.MaxMemory; recycled
	exitReload      = "reload"       // its generation was replaced (HUP)
	exitAbandoned   = "abandoned"    // its new generation failed to boot
	exitScaleDown   = "scale_down"   // fewer workers wanted (TTOU)
	exitStop        = "stop"         // the master stopped (TERM, INT, QUIT, or after USR2)
)

var exitReasons = []string{exitCrash, exitBootFailed, exitTimeout, exitSilent, exitMaxRequests,
	exitMemory, exitReload, exitAbandoned, exitScaleDown, exitStop}

// recycleReason is the exit reason of a worker that asked to be recycled
// for reason (serve's "timeout" or "max_requests").
func recycleReason(reason string) string {
	if reason == exitTimeout || reason == exitMaxRequests {
		return reason
	}
	return exitCrash
}

// tally is what the master has added up since it started, owned by its
// loop. Every counter only grows.
type tally struct {
	requests    map[string]uint64 // by metrics.Delta's "METHOD CODE"
	duration    [len(metrics.DurationBuckets) + 1]uint64
	durationSum float64
	logins      map[string]uint64
	exits       map[string]uint64
	reloads     uint64
	upgrades    uint64
}

// add adds a worker's delta.
func (t *tally) add(d *metrics.Delta) {
	if t.requests == nil {
		t.requests, t.logins = map[string]uint64{}, map[string]uint64{}
	}
	for k, n := range d.Requests {
		t.requests[k] += n
	}
	if len(d.Duration) == len(t.duration) {
		for i, n := range d.Duration {
			t.duration[i] += n
		}
		t.durationSum += d.DurationSum
	}
	for k, n := range d.Logins {
		t.logins[k] += n
	}
}

func (t *tally) exit(reason string) {
	if t.exits == nil {
		t.exits = map[string]uint64{}
	}
	t.exits[reason]++
}

// query asks the master's loop for a rendering of its state: the loop
// owns that state, so the metrics server's handlers ask rather than read.
type query struct {
	render func(*Master) []byte
	reply  chan []byte
}

// serveMetrics serves /metrics and /status on ln until it is closed.
func (m *Master) serveMetrics(ln net.Listener) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.viewHandler("text/plain; version=0.0.4; charset=utf-8", (*Master).renderMetrics))
	mux.Handle("GET /status", m.viewHandler("application/json", (*Master).renderStatus))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(m.log.Named("metrics")),
	}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("metrics server", zap.Error(err))
		}
	}()
	return srv
}

// queryTimeout bounds how long a scrape waits for the master's loop.
const queryTimeout = 5 * time.Second

func (m *Master) viewHandler(contentType string, render func(*Master) []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := query{render: render, reply: make(chan []byte, 1)}
		timeout := time.NewTimer(queryTimeout)
		defer timeout.Stop()
		select {
		case m.queries <- q:
		case <-timeout.C:
			http.Error(w, "the master is busy", http.StatusServiceUnavailable)
			return
		}
		b := <-q.reply // the loop answers every query it takes
		w.Header().Set("Content-Type", contentType)
		w.Write(b)
	})
}

// renderMetrics writes the metrics in Prometheus's text format (0.0.4).
func (m *Master) renderMetrics() []byte {
	var b bytes.Buffer
	t := &m.tally
	family := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	sample := func(name string, v float64, labels ...string) {
		b.WriteString(name)
		for i := 0; i < len(labels); i += 2 {
			sep := ","
			if i == 0 {
				sep = "{"
			}
			fmt.Fprintf(&b, `%s%s="%s"`, sep, labels[i], escapeLabel(labels[i+1]))
		}
		if len(labels) > 0 {
			b.WriteByte('}')
		}
		b.WriteByte(' ')
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		b.WriteByte('\n')
	}

	family("remuda_requests_total", "counter", "Requests served by the workers, by method (unknown ones as \"other\") and status code.")
	for _, k := range slices.Sorted(maps.Keys(t.requests)) {
		method, code, _ := metrics.SplitRequestKey(k)
		sample("remuda_requests_total", float64(t.requests[k]), "method", method, "code", code)
	}
	family("remuda_request_duration_seconds", "histogram", "How long requests took, from the first byte read to the handler's return.")
	var cum uint64
	for i, n := range t.duration {
		cum += n
		le := "+Inf"
		if i < len(metrics.DurationBuckets) {
			le = strconv.FormatFloat(metrics.DurationBuckets[i], 'g', -1, 64)
		}
		sample("remuda_request_duration_seconds_bucket", float64(cum), "le", le)
	}
	sample("remuda_request_duration_seconds_sum", t.durationSum)
	sample("remuda_request_duration_seconds_count", float64(cum))

	var inFlight int64
	states := map[workerState]int{}
	for _, w := range m.workers {
		inFlight += w.active
		states[w.state]++
	}
	family("remuda_requests_in_flight", "gauge", "Requests being served, as of each worker's last heartbeat.")
	sample("remuda_requests_in_flight", float64(inFlight))
	family("remuda_workers", "gauge", "Worker processes, by state.")
	for _, st := range []workerState{booting, ready, draining} {
		sample("remuda_workers", float64(states[st]), "state", st.String())
	}
	family("remuda_worker_exits_total", "counter", "Worker processes that exited, by reason.")
	for _, r := range exitReasons {
		sample("remuda_worker_exits_total", float64(t.exits[r]), "reason", r)
	}
	family("remuda_reloads_total", "counter", "New generations of workers started by HUP.")
	sample("remuda_reloads_total", float64(t.reloads))
	family("remuda_upgrades_total", "counter", "Upgrades of the master started by USR2.")
	sample("remuda_upgrades_total", float64(t.upgrades))
	family("remuda_logins_total", "counter", "Login attempts, by outcome.")
	for _, o := range metrics.LoginOutcomes {
		sample("remuda_logins_total", float64(t.logins[o]), "outcome", o)
	}
	family("remuda_accept_queue_length", "gauge", "Connections the kernel has accepted on a TCP listening socket that no worker has taken yet.")
	queues := m.acceptQueues()
	for _, q := range queues {
		sample("remuda_accept_queue_length", float64(q.length), "addr", q.addr)
	}
	family("remuda_accept_queue_max", "gauge", "The accept queue's capacity (the listen backlog); past it the kernel drops new connections.")
	for _, q := range queues {
		sample("remuda_accept_queue_max", float64(q.max), "addr", q.addr)
	}
	family("remuda_master_generation", "gauge", "The newest generation of workers (1, then one more per HUP).")
	sample("remuda_master_generation", float64(m.gen))
	return b.Bytes()
}

// escapeLabel escapes a label value for the text format.
func escapeLabel(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

// acceptQueue is the state of one listening socket's accept queue.
type acceptQueue struct {
	addr        string
	length, max uint32
}

// acceptQueues reads the accept queue of each TCP listener with
// getsockopt(TCP_INFO): on a listening socket Linux reports the queue's
// length in tcpi_unacked and its capacity in tcpi_sacked. Unix sockets
// have no such option and are left out.
func (m *Master) acceptQueues() []acceptQueue {
	var out []acceptQueue
	for _, l := range m.listeners {
		sc, ok := l.ln.(syscall.Conn)
		if l.network != "tcp" || !ok {
			continue
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			continue
		}
		var info *unix.TCPInfo
		rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO) })
		if err != nil {
			m.log.Warn("read accept queue", zap.String("addr", l.addr), zap.Error(err))
			continue
		}
		out = append(out, acceptQueue{addr: l.addr, length: info.Unacked, max: info.Sacked})
	}
	return out
}

// workerStatus is one worker in /status.
type workerStatus struct {
	PID        int     `json:"pid"`
	Worker     int     `json:"worker"`
	Generation int     `json:"generation"`
	State      string  `json:"state"`
	AgeSeconds float64 `json:"age_seconds"`
	// Requests and InFlight are as of the last heartbeat.
	Requests      uint64     `json:"requests"`
	InFlight      int64      `json:"in_flight"`
	RSSBytes      int64      `json:"rss_bytes"`
	LastHeartbeat *time.Time `json:"last_heartbeat"` // null before the first
}

// renderStatus writes /status: the master and each of its workers.
func (m *Master) renderStatus() []byte {
	now := time.Now()
	st := struct {
		PID               int            `json:"pid"`
		Generation        int            `json:"generation"`
		ServingGeneration int            `json:"serving_generation"`
		Started           time.Time      `json:"started"`
		Workers           []workerStatus `json:"workers"`
	}{PID: os.Getpid(), Generation: m.gen, ServingGeneration: m.servingGen, Started: m.started, Workers: []workerStatus{}}
	for _, w := range m.workers {
		ws := workerStatus{
			PID: w.pid, Worker: w.id, Generation: w.gen, State: w.state.String(),
			AgeSeconds: now.Sub(w.started).Seconds(), Requests: w.requests, InFlight: w.active, RSSBytes: w.rss,
		}
		if !w.lastBeat.IsZero() {
			ws.LastHeartbeat = &w.lastBeat
		}
		st.Workers = append(st.Workers, ws)
	}
	slices.SortFunc(st.Workers, func(a, b workerStatus) int { return a.Worker - b.Worker })
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		panic(err) // plain data: it always encodes
	}
	return append(b, '\n')
}

func (s workerState) String() string {
	switch s {
	case booting:
		return "booting"
	case ready:
		return "ready"
	}
	return "draining"
}

// readRSS returns the resident set size of process pid, in bytes, from
// /proc/PID/statm (its second field, in pages).
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/statm: %q", pid, b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/statm: %w", pid, err)
	}
	return pages * int64(os.Getpagesize()), nil
}
