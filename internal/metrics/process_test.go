package metrics_test

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/metrics"
)

func TestReadProcess(t *testing.T) {
	before, err := metrics.ReadProcess(os.Getpid())
	if err != nil {
		t.Fatalf("ReadProcess(self): %v", err)
	}
	var files []*os.File
	for range 5 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	// Burn CPU until the reading moves (it counts hundredths of a second),
	// within a correctness deadline.
	var after metrics.Process
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
		}
		if after, err = metrics.ReadProcess(os.Getpid()); err != nil {
			t.Fatalf("ReadProcess(self): %v", err)
		}
		if after.CPUSeconds > before.CPUSeconds {
			break
		}
	}
	if got := after.OpenFDs - before.OpenFDs; got != 5 {
		t.Errorf("open fds after opening 5 files: got %d more, want 5 (%d then %d)", got, before.OpenFDs, after.OpenFDs)
	}
	if after.CPUSeconds <= before.CPUSeconds {
		t.Errorf("cpu seconds after up to 5 s of work: got %v then %v, want more", before.CPUSeconds, after.CPUSeconds)
	}
	// The test binary started before this test ran, and not long before.
	now := float64(time.Now().Unix())
	if after.StartTime > now+1 || after.StartTime < now-600 {
		t.Errorf("start time: got %v, want within 10 minutes before now (%v)", after.StartTime, now)
	}
	if after.ResidentBytes < 1<<20 || after.VirtualBytes < after.ResidentBytes {
		t.Errorf("memory: got resident %d, virtual %d; want resident ≥ 1 MiB and virtual ≥ resident", after.ResidentBytes, after.VirtualBytes)
	}
	if after.Threads < 1 {
		t.Errorf("threads: got %d, want ≥ 1", after.Threads)
	}
	if after.MaxFDs != -1 && after.MaxFDs < after.OpenFDs {
		t.Errorf("max fds: got %d, want -1 or ≥ %d open", after.MaxFDs, after.OpenFDs)
	}

	if _, err := metrics.ReadProcess(1 << 30); err == nil {
		t.Errorf("ReadProcess of a pid that does not exist: got nil error")
	}
}

func TestReadRuntime(t *testing.T) {
	before := metrics.ReadRuntime()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 100 {
		wg.Go(func() { <-stop })
	}
	runtime.GC()
	during := metrics.ReadRuntime()
	close(stop)
	wg.Wait()
	if during.Goroutines < before.Goroutines+100 {
		t.Errorf("goroutines with 100 more running: got %d, then %d; want 100 more", before.Goroutines, during.Goroutines)
	}
	if during.GCCycles <= before.GCCycles {
		t.Errorf("gc cycles after runtime.GC: got %d then %d, want more", before.GCCycles, during.GCCycles)
	}
	if during.HeapBytes == 0 || during.MemoryBytes < during.HeapBytes {
		t.Errorf("memory: got heap %d, total %d; want heap > 0 and total ≥ heap", during.HeapBytes, during.MemoryBytes)
	}
}

func TestReadBuild(t *testing.T) {
	b := metrics.ReadBuild()
	if !strings.HasPrefix(b.GoVersion, "go1.") {
		t.Errorf("GoVersion: got %q, want go1.…", b.GoVersion)
	}
	// A test binary is built from this module, without VCS stamping.
	if b.App != "github.com/remuda/remuda" {
		t.Errorf("App: got %q, want github.com/remuda/remuda", b.App)
	}
	if b.Version == "" || b.Revision == "" {
		t.Errorf("Version %q, Revision %q: want neither empty", b.Version, b.Revision)
	}
}

// BenchmarkReadRuntime is what each heartbeat adds to a worker's second.
func BenchmarkReadRuntime(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		metrics.ReadRuntime()
	}
}

// BenchmarkReadProcess is what each worker costs the master per scrape.
func BenchmarkReadProcess(b *testing.B) {
	b.ReportAllocs()
	pid := os.Getpid()
	for b.Loop() {
		if _, err := metrics.ReadProcess(pid); err != nil {
			b.Fatal(err)
		}
	}
}
