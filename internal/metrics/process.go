package metrics

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
)

// Process is what Linux reports of one process in /proc: the figures of
// Prometheus's process_* metrics.
type Process struct {
	CPUSeconds    float64 // user and system time
	StartTime     float64 // Unix time in seconds, to the second (boot time is whole seconds)
	ResidentBytes int64
	VirtualBytes  int64
	Threads       int64
	OpenFDs       int64
	MaxFDs        int64 // the soft limit; -1 when unlimited
}

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, 100 on
// every Linux architecture whatever the kernel's own tick (and what
// Prometheus's procfs assumes too).
const userHZ = 100

// ReadProcess reads process pid's figures from /proc. The process may exit
// while it is read: the error then names the file that vanished.
func ReadProcess(pid int) (Process, error) {
	var p Process
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, err
	}
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return p, fmt.Errorf("%s/stat: no ')' in %q", dir, stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 of proc(5): state. Fields 14, 15 (utime, stime), 20
	// (num_threads), 22 (starttime), 23 (vsize) and 24 (rss) follow.
	if len(f) < 22 {
		return p, fmt.Errorf("%s/stat: %d fields after the command, want 22 or more", dir, len(f))
	}
	field := func(n int) int64 {
		v, e := strconv.ParseInt(f[n-3], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("%s/stat: field %d: %w", dir, n, e)
		}
		return v
	}
	p.CPUSeconds = float64(field(14)+field(15)) / userHZ
	p.Threads = field(20)
	start := field(22)
	p.VirtualBytes = field(23)
	p.ResidentBytes = field(24) * int64(os.Getpagesize())
	if err != nil {
		return p, err
	}
	boot, err := bootTimeOnce()
	if err != nil {
		return p, err
	}
	p.StartTime = float64(boot) + float64(start)/userHZ

	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return p, err
	}
	p.OpenFDs = int64(len(fds))
	p.MaxFDs, err = maxFDs(dir + "/limits")
	return p, err
}

// bootTimeOnce is bootTime, read once: a process's start time then stays
// the same from one scrape to the next even if the clock is stepped.
var bootTimeOnce = sync.OnceValues(bootTime)

// bootTime is when the machine booted, in Unix seconds: /proc/stat's btime.
func bootTime() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/stat: no btime")
}

// maxFDs reads the soft limit on open files from a /proc/PID/limits file:
// -1 for "unlimited".
func maxFDs(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(v)
			if len(f) > 0 && f[0] == "unlimited" {
				return -1, nil
			}
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no \"Max open files\"", path)
}

// Runtime is a worker's Go runtime as it travels to the master in a
// heartbeat frame's "runtime" member:
//
//	{"goroutines":12,"heap_bytes":2097152,"memory_bytes":9437184,"gc_cycles":31}
type Runtime struct {
	// Goroutines is how many goroutines exist (go_goroutines).
	Goroutines uint64 `json:"goroutines"`
	// HeapBytes is the memory held by heap objects, live or not yet swept
	// (go_memstats_heap_alloc_bytes).
	HeapBytes uint64 `json:"heap_bytes"`
	// MemoryBytes is all the memory the Go runtime has mapped
	// (go_memstats_sys_bytes).
	MemoryBytes uint64 `json:"memory_bytes"`
	// GCCycles counts the garbage collections since the process started.
	GCCycles uint64 `json:"gc_cycles"`
}

// runtimeSamples are the runtime/metrics names behind Runtime's fields,
// in their order.
var runtimeSamples = [...]string{
	"/sched/goroutines:goroutines",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/total:bytes",
	"/gc/cycles/total:gc-cycles",
}

// ReadRuntime reads this process's Runtime, without stopping the world
// (runtime/metrics, not runtime.ReadMemStats).
func ReadRuntime() *Runtime {
	var s [len(runtimeSamples)]rtmetrics.Sample
	for i, name := range runtimeSamples {
		s[i].Name = name
	}
	rtmetrics.Read(s[:])
	v := func(i int) uint64 {
		if s[i].Value.Kind() != rtmetrics.KindUint64 {
			return 0 // not in this Go release
		}
		return s[i].Value.Uint64()
	}
	return &Runtime{Goroutines: v(0), HeapBytes: v(1), MemoryBytes: v(2), GCCycles: v(3)}
}

// Build is what the binary says of its own build: the labels of
// remuda_build_info.
type Build struct {
	// App is the main module's path: the app's, or Remuda's for its own
	// binary.
	App string
	// Version is Remuda's module version as the app requires it (the main
	// module's version when the binary is Remuda's own): a tag, a
	// pseudo-version, or "(devel)".
	Version string
	// Revision is the VCS commit the binary was built from, with "-dirty"
	// when the work tree had changes; "unknown" when the build did not
	// record one (go build outside a repository, go test, -buildvcs=false).
	Revision string
	// GoVersion is the Go release that built the binary.
	GoVersion string
}

// ReadBuild reads the binary's Build from the build information Go
// embeds in it (runtime/debug.ReadBuildInfo).
func ReadBuild() Build {
	b := Build{App: "unknown", Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.App, b.Version = bi.Main.Path, bi.Main.Version
	for _, d := range bi.Deps {
		if d.Path == "github.com/remuda/remuda" {
			b.Version = d.Version
		}
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "unknown" {
		b.Revision += "-dirty"
	}
	if b.App == "" {
		b.App = "unknown"
	}
	if b.Version == "" {
		b.Version = "unknown"
	}
	return b
}
