package workers_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
	"github.com/remuda/remuda/server"
)

// The test binary impersonates a Remuda app: started with envApp set it
// runs testApp, whose server.Main makes it a master (the test starts it
// with "run --prod") or, re-executed by that master, a worker.
const envApp = "REMUDA_TEST_APP"

// Knobs of the test app, read at boot in every worker.
const (
	envBootDelay  = "REMUDA_TEST_BOOT_DELAY"   // sleep this long in OnBoot
	envBootFailIf = "REMUDA_TEST_BOOT_FAIL_IF" // fail OnBoot while this file exists
)

// bootError is what the test app's OnBoot returns when told to fail.
const bootError = "connect to database: connection refused"

func TestMain(m *testing.M) {
	if os.Getenv(envApp) != "" {
		testApp()
		return
	}
	os.Exit(proctest.Run(m))
}

func testApp() {
	app := server.NewApp()
	app.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	app.HandleFunc("GET /pid", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, os.Getpid()) })
	// runtime tells the worker's GOMAXPROCS and memory limit.
	app.HandleFunc("GET /runtime", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%d %d", runtime.GOMAXPROCS(0), debug.SetMemoryLimit(-1))
	})
	app.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d)
		io.WriteString(w, "slept")
	})
	// leak allocates mb MiB, touches every page so that it counts in the
	// RSS, and keeps it for the life of the process.
	var leakMu sync.Mutex
	var leaked [][]byte
	app.HandleFunc("GET /leak", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		b := make([]byte, mb<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		leakMu.Lock()
		leaked = append(leaked, b)
		leakMu.Unlock()
		fmt.Fprintf(w, "leaked %d MiB", mb)
	})
	// waitctx waits for its request's context to end, and says when on
	// stderr (relayed by the master as "worker output").
	app.HandleFunc("GET /waitctx", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		<-r.Context().Done()
		fmt.Fprintf(os.Stderr, "context canceled after %s\n", time.Since(start))
	})
	// upload reads the whole body.
	app.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			fmt.Fprintf(os.Stderr, "upload: %v\n", err)
			return
		}
		fmt.Fprintf(w, "%d bytes", len(b))
	})
	// stuck never returns: the per-request timeout must answer for it.
	app.HandleFunc("GET /stuck", func(http.ResponseWriter, *http.Request) { select {} })
	// wedge spins without a function call; run with GOMAXPROCS=1 and
	// GODEBUG=asyncpreemptoff=1 it holds the only P forever, so the whole
	// worker, heartbeat included, falls silent: a hung process.
	app.HandleFunc("GET /wedge", func(http.ResponseWriter, *http.Request) { spin() })
	longLivedRoutes(app)
	app.OnBoot = func(server.Config) error {
		if d, err := time.ParseDuration(os.Getenv(envBootDelay)); err == nil {
			time.Sleep(d)
		}
		if f := os.Getenv(envBootFailIf); f != "" {
			if _, err := os.Stat(f); err == nil {
				return errors.New(bootError)
			}
		}
		return nil
	}
	server.Main(app)
}

//go:noinline
func spin() {
	for {
	}
}

// start runs the test app (this binary) with args; see proctest.Start.
func start(t *testing.T, env []string, args ...string) *proctest.Proc {
	t.Helper()
	return startBinary(t, os.Args[0], env, args...)
}

// startBinary runs a copy of the test app at bin.
func startBinary(t *testing.T, bin string, env []string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.Start(t, bin, append(env, envApp+"=1"), args...)
}

// skipIfShort skips a test that runs for seconds (load, timeouts) under
// go test -short; go test and CI run it.
func skipIfShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs for seconds; go test without -short runs it")
	}
}
