package main

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/proctest"
	"github.com/remuda/remuda/server"
)

// envLogApp makes the test binary run logApp. It is read in init, before
// TestMain: server.Main then runs the app and exits.
const envLogApp = "REMUDA_TEST_LOG_APP"

func init() {
	if os.Getenv(envLogApp) != "" {
		logApp()
	}
}

// logApp is an app whose /log route logs in every way an app may, each
// line carrying the query's "m" as a marker, and answers its pid.
func logApp() {
	app := server.NewApp()
	app.HandleFunc("GET /log", func(w http.ResponseWriter, r *http.Request) {
		m := r.URL.Query().Get("m")
		slog.Info("slog info "+m, "k", "v", "pid", "the app's")
		slog.InfoContext(r.Context(), "slog info with context "+m)
		slog.WarnContext(r.Context(), "slog warn "+m, "n", 3)
		slog.Debug("slog debug " + m) // below --log-level info
		log.Printf("log printf %s", m)
		fmt.Println("stdout line " + m)
		fmt.Fprintln(os.Stderr, "stderr line "+m)
		server.Logger(r).Info("scoped logger "+m, zap.String("k", "v"))
		// An app's own slog handlers, on stderr and stdout: relayed.
		id := w.Header().Get("X-Request-ID")
		slog.New(slog.NewTextHandler(os.Stderr, nil)).Error("own text handler "+m, "request_id", id, "level", "not ours")
		slog.New(slog.NewJSONHandler(os.Stdout, nil)).Warn("own json handler "+m, "n", 4)
		fmt.Fprint(w, os.Getpid())
	})
	server.Main(app)
}

// TestAppOutputKeepsLevels runs logApp in prod with one worker: in the
// master's log, each way of logging keeps its level and carries the
// worker's pid, and the request id where it can be known (a request's
// context or the app's own attribute); log.Printf and plain prints have
// none.
func TestAppOutputKeepsLevels(t *testing.T) {
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, os.Args[0], []string{envLogApp + "=1"}, "run", "--prod", "--workers", "1", "--bind", addr)
	p.WaitReady(t, 1)
	const m = "m-7f3a"
	resp, err := http.Get("http://" + addr + "/log?m=" + m)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pid, _ := strconv.Atoi(string(body))
	id := resp.Header.Get("X-Request-ID")
	if pid == 0 || id == "" {
		t.Fatalf("answer %q, X-Request-ID %q: want the worker's pid and an id", body, id)
	}

	tests := []struct {
		msg       string
		level     string
		pidKey    string // the key holding the worker's pid: its own lines, or relayed ones
		requestID string
		more      map[string]any
	}{
		{"slog info " + m, "info", "pid", "", map[string]any{"attrs": map[string]any{"k": "v", "pid": "the app's"}}},
		{"slog info with context " + m, "info", "pid", id, nil},
		{"slog warn " + m, "warn", "pid", id, map[string]any{"attrs": map[string]any{"n": float64(3)}}},
		{"log printf " + m, "info", "pid", "", nil},
		{"scoped logger " + m, "info", "pid", id, map[string]any{"k": "v", "worker": float64(1)}},
		{"worker output", "info", "worker_pid", "", map[string]any{"output": "stdout line " + m, "stream": "stdout"}},
		{"worker output", "warn", "worker_pid", "", map[string]any{"output": "stderr line " + m, "stream": "stderr"}},
		{"own text handler " + m, "error", "worker_pid", id, map[string]any{"stream": "stderr", "attrs": map[string]any{"level": "not ours"}}},
		{"own json handler " + m, "warn", "worker_pid", "", map[string]any{"stream": "stdout", "attrs": map[string]any{"n": float64(4)}}},
	}
	for _, tt := range tests {
		match := func(l proctest.Line) bool {
			return l.Msg() == tt.msg && (tt.more["output"] == nil || l.Fields["output"] == tt.more["output"])
		}
		got := p.WaitFor(t, 5*time.Second, 1, tt.msg, match)
		if len(got) != 1 {
			t.Errorf("%q: %d lines, want 1", tt.msg, len(got))
			continue
		}
		f := got[0].Fields
		rid, _ := f["request_id"].(string)
		if f["level"] != tt.level || got[0].Int(tt.pidKey) != pid || rid != tt.requestID || f["logger"] != "app" {
			t.Errorf("%q: got %s, want level %s, %s %d, request_id %q, logger app", tt.msg, got[0].Raw, tt.level, tt.pidKey, pid, tt.requestID)
		}
		for k, v := range tt.more {
			if fmt.Sprint(f[k]) != fmt.Sprint(v) {
				t.Errorf("%q: got %s = %v, want %v", tt.msg, k, f[k], v)
			}
		}
	}
	if got := p.Find(func(l proctest.Line) bool { return strings.Contains(l.Raw, "slog debug") }); len(got) != 0 {
		t.Errorf("a debug line at --log-level info: %s", got[0].Raw)
	}
	p.AssertJSONLogs(t)
}

// TestRequestLoggerInDev checks that the request-scoped logger works in
// the dev server too, with the id the answer carries.
func TestRequestLoggerInDev(t *testing.T) {
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, os.Args[0], []string{envLogApp + "=1", "SERVER_RELOAD=0"}, "run", "--bind", addr)
	p.WaitFor(t, 10*time.Second, 1, "dev listening", func(l proctest.Line) bool { return strings.Contains(l.Raw, "listening") })
	resp, err := http.Get("http://" + addr + "/log?m=dev")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Request-ID")
	for _, msg := range []string{"scoped logger dev", "slog info with context dev"} {
		got := p.WaitFor(t, 5*time.Second, 1, msg, func(l proctest.Line) bool { return strings.Contains(l.Raw, msg) })
		if want := `"request_id": "` + id + `"`; id == "" || !strings.Contains(got[0].Raw, want) {
			t.Errorf("dev line %q, want %s", got[0].Raw, want)
		}
	}
}
