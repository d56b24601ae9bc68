package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// printMachine prints what the figures depend on: the CPU, the cores, Go,
// the kernel, the load average before the run, the load generators, and
// the commit built.
func (b *bench) printMachine(w io.Writer) {
	fmt.Fprintf(w, "cpu:     %s, %d cores\n", cpuModel(), runtime.NumCPU())
	fmt.Fprintf(w, "go:      %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "kernel:  %s\n", firstLine("/proc/sys/kernel/osrelease"))
	fmt.Fprintf(w, "loadavg: %s (before the run)\n", firstLine("/proc/loadavg"))
	fmt.Fprintf(w, "load:    %s, %d keep-alive connections\n", b.loadDesc, conns)
	fmt.Fprintf(w, "reloads: %s, %d keep-alive connections, no retries\n", b.reloadDesc(), conns)
	fmt.Fprintf(w, "tree:    %s\n", b.revision())
}

// revision names the commit the servers were built from, and says if the
// working tree had changes.
func (b *bench) revision() string {
	out, err := exec.Command("git", "-C", b.root, "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	return strings.TrimSpace(string(out))
}

// describeLoad names the load generator in use.
func (b *bench) describeLoad() string {
	switch {
	case b.wrkBin == "" && b.opts.load == "go":
		return "Go generator (-load go)"
	case b.wrkBin == "":
		return "Go generator (wrk not found)"
	}
	out, _ := exec.Command(b.wrkBin, "-v").CombinedOutput() // exits 1 after printing its version
	version, _, _ := strings.Cut(string(out), "\n")
	version, _, _ = strings.Cut(version, " Copyright")
	return fmt.Sprintf("%s (%s -t1 --timeout 10s --latency)", strings.TrimSpace(version), b.wrkBin)
}

// reloadDesc names the clients of the reload rows.
func (b *bench) reloadDesc() string {
	if b.reloadWrk == "" {
		return "loadgen clients (Go); wrk rows skipped (wrk not on PATH)"
	}
	return "loadgen clients (Go), then wrk"
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// firstLine is a file's first line, trimmed, or "unknown".
func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}
