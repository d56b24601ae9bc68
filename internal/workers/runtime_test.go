package workers_test

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// TestWorkerRuntimeDefaults checks the Go runtime settings a worker gets:
// its share of the CPUs and, with --max-worker-memory, a memory limit
// below it; and that the operator's own GOMAXPROCS wins.
func TestWorkerRuntimeDefaults(t *testing.T) {
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		t.Skipf("GOMAXPROCS=%s is set for the test itself", v)
	}
	cpus := runtime.GOMAXPROCS(0)
	for _, tt := range []struct {
		name  string
		env   []string
		flags []string
		want  string
	}{
		{"one worker per CPU", nil, []string{"--workers", fmt.Sprint(cpus)}, fmt.Sprintf("1 %d", int64(math.MaxInt64))},
		{"one worker", nil, []string{"--workers", "1"}, fmt.Sprintf("%d %d", cpus, int64(math.MaxInt64))},
		{"memory limit", nil, []string{"--workers", fmt.Sprint(cpus), "--max-worker-memory", "100M"}, fmt.Sprintf("1 %d", 100<<20/10*9)},
		{"operator's GOMAXPROCS", []string{"GOMAXPROCS=3"}, []string{"--workers", fmt.Sprint(cpus)}, fmt.Sprintf("3 %d", int64(math.MaxInt64))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, url := prod(t, tt.env, tt.flags...)
			status, body, err := proctest.Get(url+"/runtime", 2*time.Second)
			if err != nil || status != 200 || body != tt.want {
				t.Errorf("%v %v on %d CPUs: GOMAXPROCS and memory limit %q (%d, %v), want %q", tt.env, tt.flags, cpus, body, status, err, tt.want)
			}
		})
	}
}
