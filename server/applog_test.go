package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/remuda/remuda/internal/serve"
)

// jsonLogger is a prod-style logger at level into a buffer.
func jsonLogger(level zapcore.Level) (*zap.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	ec := zap.NewProductionEncoderConfig()
	core := zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(&buf), level)
	return zap.New(core, zap.Fields(zap.Int("pid", 7)), zap.AddCaller()), &buf
}

// lines decodes the JSON lines in buf, and empties it.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSlogHandler checks slog records written through zap: levels mapped
// and filtered by the zap level, attributes typed and under "attrs" (an
// app's "pid" or "level" replaces none of ours), groups nested, the
// caller the app's.
func TestSlogHandler(t *testing.T) {
	log, buf := jsonLogger(zapcore.InfoLevel)
	l := slog.New(newSlogHandler(log.Core()))
	l.Debug("dropped")
	l.Info("hello", "n", 42, "f", 1.5, "ok", true, "d", time.Second, "s", "x", "err", errors.New("boom"), "pid", "app's", "level", "app's")
	l.Log(context.Background(), slog.LevelInfo+2, "info+2")
	l.Log(context.Background(), slog.LevelWarn, "warn")
	l.Log(context.Background(), slog.LevelError+4, "error+4")
	l.With("a", 1).WithGroup("g").With("b", 2).WithGroup("empty").Info("grouped", slog.Group("h", "c", 3), slog.Group("", "inl", 4))
	l.WithGroup("unused").Info("no attrs")

	got := lines(t, buf)
	want := []struct {
		level, msg, attrs string
	}{
		{"info", "hello", `{"d":1,"err":"boom","f":1.5,"level":"app's","n":42,"ok":true,"pid":"app's","s":"x"}`},
		{"info", "info+2", ""},
		{"warn", "warn", ""},
		{"error", "error+4", ""},
		{"info", "grouped", `{"a":1,"g":{"b":2,"empty":{"h":{"c":3},"inl":4}}}`},
		{"info", "no attrs", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines %v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		attrs := ""
		if a, ok := g["attrs"]; ok {
			attrs = asJSON(a)
		}
		if g["level"] != w.level || g["msg"] != w.msg || attrs != w.attrs || g["pid"] != float64(7) || g["logger"] != "app" {
			t.Errorf("line %d: got %v, want level %s msg %q attrs %s pid 7 logger app", i, g, w.level, w.msg, w.attrs)
		}
		if c, _ := g["caller"].(string); !strings.HasPrefix(c, "server/applog_test.go:") {
			t.Errorf("line %d: got caller %q, want this file", i, c)
		}
	}
}

// TestAppLoggers serves a request through a real serve.Server: the
// request-scoped logger, slog's default (routeSlog) with the request's
// context, and the log package all reach the server's logger, the first
// two with the request id the response carries; under httptest, Logger
// is zap.L().
func TestAppLoggers(t *testing.T) {
	log, buf := jsonLogger(zapcore.InfoLevel)
	restore := routeSlog(log)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Logger(r).Info("scoped", zap.Int("n", 1))
		slog.InfoContext(r.Context(), "slog with context")
		slog.Debug("slog debug dropped")
		stdlog.Printf("log %d", 2)
	})
	srv := serve.New(h, serve.Options{Logger: log.With(zap.Int("worker", 3))})
	ln, err := serve.Listen("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve([]net.Listener{ln})
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	restore()
	id := resp.Header.Get(serve.RequestIDHeader)

	got := lines(t, buf)
	want := []struct {
		msg       string
		requestID any
		worker    any
	}{
		{"scoped", id, float64(3)},
		{"slog with context", id, float64(3)},
		{"log 2", nil, nil},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines %v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g["msg"] != w.msg || g["request_id"] != w.requestID || g["worker"] != w.worker || g["level"] != "info" || g["logger"] != "app" {
			t.Errorf("line %d: got %v, want msg %q request_id %v worker %v level info logger app", i, g, w.msg, w.requestID, w.worker)
		}
	}

	// Restored: the log package writes where it did before.
	var out bytes.Buffer
	defer stdlog.SetOutput(stdlog.Writer())
	stdlog.SetOutput(&out)
	stdlog.Print("after")
	if !strings.Contains(out.String(), "after") || buf.Len() != 0 {
		t.Errorf("after restore: log wrote %q and the zap logger %q, want the log package's own output", out.String(), buf.String())
	}

	r := httptest.NewRequest("GET", "/", nil)
	if l := Logger(r); l != zap.L() {
		t.Errorf("Logger under httptest = %p, want zap.L() %p", l, zap.L())
	}
}

// TestRouteSlogKeepsTheAppsDefault checks that an app that set its own
// slog default before Main keeps it.
func TestRouteSlogKeepsTheAppsDefault(t *testing.T) {
	prev := slog.Default()
	defer slog.SetDefault(prev)
	defer stdlog.SetOutput(stdlog.Writer())
	defer stdlog.SetFlags(stdlog.Flags())
	var out bytes.Buffer
	own := slog.New(slog.NewTextHandler(&out, nil))
	slog.SetDefault(own)
	log, buf := jsonLogger(zapcore.InfoLevel)
	restore := routeSlog(log)
	slog.Info("mine")
	restore()
	if slog.Default() != own || !strings.Contains(out.String(), "msg=mine") || buf.Len() != 0 {
		t.Errorf("the app's handler got %q and the server's logger %q, want the line in the app's alone", out.String(), buf.String())
	}
}
