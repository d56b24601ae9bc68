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
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/metrics"
)

// Counters are what a worker counts for its master to add up in /metrics
// (see the package doc, "Metrics and status"): each heartbeat carries what
// was counted since the previous one. RunWorker counts the worker's
// requests on them; the app counts its login attempts with Login. The
// zero value is ready to use, from any goroutine. A Counters must not be
// copied after first use.
type Counters struct {
	set metrics.Set
}

// Login counts one login attempt under outcome, the outcome label of
// remuda_logins_total: "success", "invalid" (unknown user, wrong
// password, inactive user), "throttled", "unavailable" (the store could
// not be reached) or "error"; any other counts as "other".
func (c *Counters) Login(outcome string) { c.set.Login(outcome) }

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

	bi := buildInfo()
	family("remuda_build_info", "gauge", "Always 1: the labels say what the binary was built from.")
	sample("remuda_build_info", 1, "app", bi.App, "version", bi.Version, "revision", bi.Revision, "goversion", bi.GoVersion)

	m.renderWorkerFigures(family, sample)
	renderProcess(family, sample)
	renderGo(family, sample)
	return b.Bytes()
}

// buildInfo is the binary's build, read once.
var buildInfo = sync.OnceValue(metrics.ReadBuild)

// renderWorkerFigures writes each live worker's process and Go runtime
// figures, labelled with its number: the process ones read from
// /proc/PID now, the runtime ones as of its last heartbeat. A worker that
// exits goes out of the page with its series; sum() over them is the
// whole server's.
func (m *Master) renderWorkerFigures(family func(name, typ, help string), sample func(name string, v float64, labels ...string)) {
	ws := slices.SortedFunc(maps.Values(m.workers), func(a, b *worker) int { return a.id - b.id })
	procs := make([]*metrics.Process, len(ws))
	for i, w := range ws {
		if p, err := metrics.ReadProcess(w.pid); err == nil {
			procs[i] = &p
		} // else it is exiting: its reaping follows
	}
	procFamily := func(name, typ, help string, v func(*metrics.Process) float64) {
		family(name, typ, help)
		for i, w := range ws {
			if procs[i] != nil {
				sample(name, v(procs[i]), "worker", strconv.Itoa(w.id))
			}
		}
	}
	procFamily("remuda_worker_cpu_seconds_total", "counter", "User and system CPU time of each worker process, in seconds, by worker number.",
		func(p *metrics.Process) float64 { return p.CPUSeconds })
	procFamily("remuda_worker_resident_memory_bytes", "gauge", "Resident memory of each worker process, in bytes.",
		func(p *metrics.Process) float64 { return float64(p.ResidentBytes) })
	procFamily("remuda_worker_open_fds", "gauge", "Open file descriptors of each worker process.",
		func(p *metrics.Process) float64 { return float64(p.OpenFDs) })
	procFamily("remuda_worker_threads", "gauge", "OS threads of each worker process.",
		func(p *metrics.Process) float64 { return float64(p.Threads) })
	procFamily("remuda_worker_start_time_seconds", "gauge", "When each worker process started, in Unix seconds.",
		func(p *metrics.Process) float64 { return p.StartTime })

	rtFamily := func(name, typ, help string, v func(*metrics.Runtime) uint64) {
		family(name, typ, help)
		for _, w := range ws {
			if w.runtime != nil {
				sample(name, float64(v(w.runtime)), "worker", strconv.Itoa(w.id))
			}
		}
	}
	rtFamily("remuda_worker_goroutines", "gauge", "Goroutines in each worker, as of its last heartbeat.",
		func(r *metrics.Runtime) uint64 { return r.Goroutines })
	rtFamily("remuda_worker_heap_bytes", "gauge", "Bytes of heap objects in each worker, live or not yet swept, as of its last heartbeat.",
		func(r *metrics.Runtime) uint64 { return r.HeapBytes })
	rtFamily("remuda_worker_go_memory_bytes", "gauge", "Bytes the Go runtime of each worker has mapped from the OS, as of its last heartbeat.",
		func(r *metrics.Runtime) uint64 { return r.MemoryBytes })
	rtFamily("remuda_worker_gc_cycles_total", "counter", "Garbage collections each worker has run, as of its last heartbeat.",
		func(r *metrics.Runtime) uint64 { return r.GCCycles })
}

// renderProcess writes the master's own process figures under the names
// of Prometheus's process collector.
func renderProcess(family func(name, typ, help string), sample func(name string, v float64, labels ...string)) {
	p, err := metrics.ReadProcess(os.Getpid())
	if err != nil {
		return // no /proc: the page goes without them
	}
	family("process_cpu_seconds_total", "counter", "CPU time the master has used, user and system, in seconds.")
	sample("process_cpu_seconds_total", p.CPUSeconds)
	family("process_open_fds", "gauge", "File descriptors the master has open.")
	sample("process_open_fds", float64(p.OpenFDs))
	family("process_max_fds", "gauge", "The master's limit on open file descriptors (its soft RLIMIT_NOFILE).")
	sample("process_max_fds", float64(p.MaxFDs))
	family("process_resident_memory_bytes", "gauge", "The master's resident memory, in bytes.")
	sample("process_resident_memory_bytes", float64(p.ResidentBytes))
	family("process_virtual_memory_bytes", "gauge", "The master's virtual memory, in bytes.")
	sample("process_virtual_memory_bytes", float64(p.VirtualBytes))
	family("process_start_time_seconds", "gauge", "When the master started, in Unix seconds.")
	sample("process_start_time_seconds", p.StartTime)
}

// renderGo writes the master's Go runtime figures under the names of
// Prometheus's Go collector. runtime.ReadMemStats stops the world for
// some microseconds: once per scrape, in the master, which serves no
// requests.
func renderGo(family func(name, typ, help string), sample func(name string, v float64, labels ...string)) {
	family("go_info", "gauge", "Always 1: the label is the Go release that built the binary.")
	sample("go_info", 1, "version", runtime.Version())
	family("go_goroutines", "gauge", "Goroutines in the master.")
	sample("go_goroutines", float64(runtime.NumGoroutine()))
	threads, _ := runtime.ThreadCreateProfile(nil)
	family("go_threads", "gauge", "OS threads the master's Go runtime has created.")
	sample("go_threads", float64(threads))

	gc := debug.GCStats{PauseQuantiles: make([]time.Duration, 5)}
	debug.ReadGCStats(&gc)
	family("go_gc_duration_seconds", "summary", "How long the master's garbage collections stopped the world, in seconds.")
	for i, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
		sample("go_gc_duration_seconds", gc.PauseQuantiles[i].Seconds(), "quantile", q)
	}
	sample("go_gc_duration_seconds_sum", gc.PauseTotal.Seconds())
	sample("go_gc_duration_seconds_count", float64(gc.NumGC))

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for _, f := range []struct {
		name, typ, help string
		v               float64
	}{
		{"go_memstats_alloc_bytes", "gauge", "Bytes of heap objects the master holds (runtime.MemStats.Alloc).", float64(ms.Alloc)},
		{"go_memstats_alloc_bytes_total", "counter", "Bytes the master has allocated on the heap since it started, freed or not.", float64(ms.TotalAlloc)},
		{"go_memstats_sys_bytes", "gauge", "Bytes the master's Go runtime has obtained from the OS.", float64(ms.Sys)},
		{"go_memstats_mallocs_total", "counter", "Heap objects the master has allocated since it started.", float64(ms.Mallocs)},
		{"go_memstats_frees_total", "counter", "Heap objects the master has freed since it started.", float64(ms.Frees)},
		{"go_memstats_heap_alloc_bytes", "gauge", "Bytes of heap objects the master holds (runtime.MemStats.HeapAlloc).", float64(ms.HeapAlloc)},
		{"go_memstats_heap_sys_bytes", "gauge", "Bytes of heap the master has obtained from the OS.", float64(ms.HeapSys)},
		{"go_memstats_heap_idle_bytes", "gauge", "Bytes of the master's heap in spans holding no object.", float64(ms.HeapIdle)},
		{"go_memstats_heap_inuse_bytes", "gauge", "Bytes of the master's heap in spans holding objects.", float64(ms.HeapInuse)},
		{"go_memstats_heap_released_bytes", "gauge", "Bytes of the master's heap returned to the OS.", float64(ms.HeapReleased)},
		{"go_memstats_heap_objects", "gauge", "Heap objects the master holds.", float64(ms.HeapObjects)},
		{"go_memstats_stack_inuse_bytes", "gauge", "Bytes of goroutine stacks in use in the master.", float64(ms.StackInuse)},
		{"go_memstats_stack_sys_bytes", "gauge", "Bytes the master has obtained from the OS for goroutine stacks.", float64(ms.StackSys)},
		{"go_memstats_gc_sys_bytes", "gauge", "Bytes of the master's garbage collector metadata.", float64(ms.GCSys)},
		{"go_memstats_next_gc_bytes", "gauge", "The heap size at which the master's next garbage collection starts, in bytes.", float64(ms.NextGC)},
		{"go_memstats_last_gc_time_seconds", "gauge", "When the master's last garbage collection ended, in Unix seconds.", float64(ms.LastGC) / 1e9},
	} {
		family(f.name, f.typ, f.help)
		sample(f.name, f.v)
	}
}

// escapeLabel escapes a label value for the text format.
func escapeLabel(v string) string { return labelEscaper.Replace(v) }

// labelEscaper is built once: a Replacer costs kilobytes to build, and a
// page has a hundred labels.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

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
