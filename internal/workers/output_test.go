package workers

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// attrsJSON is attrs as the JSON object the log would hold under "attrs".
func attrsJSON(t testing.TB, attrs []zap.Field) string {
	t.Helper()
	if len(attrs) == 0 {
		return ""
	}
	buf, err := zapcore.NewJSONEncoder(zapcore.EncoderConfig{}).EncodeEntry(zapcore.Entry{}, attrs)
	if err != nil {
		t.Fatalf("encode %v: %v", attrs, err)
	}
	return strings.TrimSpace(buf.String())
}

// TestParseOutput reads the lines an app may write to stdout or stderr.
func TestParseOutput(t *testing.T) {
	local := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006/01/02 15:04:05.000000", s, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name      string
		line      string
		format    string
		level     zapcore.Level
		msg       string
		time      time.Time
		caller    string // file:line
		requestID string
		attrs     string // as JSON
	}{
		{"slog text", `time=2026-12-03T12:41:08.123+01:00 level=INFO msg=hello user=ann n=42`,
			formatSlogText, zapcore.InfoLevel, "hello", utc("2026-12-03T12:41:08.123+01:00"), "", "", `{"user":"ann","n":"42"}`},
		{"slog text quoted", `time=2026-12-03T12:41:08.123Z level=WARN msg="a \"b\"\n" "odd key"="x y" empty=""`,
			formatSlogText, zapcore.WarnLevel, "a \"b\"\n", utc("2026-12-03T12:41:08.123Z"), "", "", `{"odd key":"x y","empty":""}`},
		{"slog text without time", `level=ERROR msg=boom err="disk full"`,
			formatSlogText, zapcore.ErrorLevel, "boom", time.Time{}, "", "", `{"err":"disk full"}`},
		{"slog custom level up", `level=INFO+2 msg=m`, formatSlogText, zapcore.InfoLevel, "m", time.Time{}, "", "", ""},
		{"slog custom level to warn", `level=INFO+4 msg=m`, formatSlogText, zapcore.WarnLevel, "m", time.Time{}, "", "", ""},
		{"slog error above", `level=ERROR+4 msg=m`, formatSlogText, zapcore.ErrorLevel, "m", time.Time{}, "", "", ""},
		{"slog debug below", `level=DEBUG-4 msg=m`, formatSlogText, zapcore.DebugLevel, "m", time.Time{}, "", "", ""},
		{"slog text source and request id", `level=INFO source=/app/main.go:12 msg=m request_id=abc-123`,
			formatSlogText, zapcore.InfoLevel, "m", time.Time{}, "/app/main.go:12", "abc-123", ""},
		{"slog text request id not ours", `level=INFO msg=m request_id="a b"`,
			formatSlogText, zapcore.InfoLevel, "m", time.Time{}, "", "", `{"request_id":"a b"}`},
		{"slog text keys of ours nested", `level=INFO msg=m pid=7 ts=now logger=x worker_pid=1 level=ERROR`,
			formatSlogText, zapcore.InfoLevel, "m", time.Time{}, "", "", `{"pid":"7","ts":"now","logger":"x","worker_pid":"1","level":"ERROR"}`},
		{"slog text bad time kept", `time=yesterday level=INFO msg=m`,
			formatSlogText, zapcore.InfoLevel, "m", time.Time{}, "", "", `{"time":"yesterday"}`},
		{"slog text group keys", `level=INFO msg=m req.method=GET req.path=/x`,
			formatSlogText, zapcore.InfoLevel, "m", time.Time{}, "", "", `{"req.method":"GET","req.path":"/x"}`},
		{"slog text without level", `time=2026-12-03T12:41:08.123Z msg=m`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"slog text without msg", `level=INFO k=v`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"slog text unknown level", `level=LOUD msg=m`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"slog text stray word", `level=INFO msg=m oops`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"slog text bad quote", `level=INFO msg="unterminated`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"slog text two spaces", `level=INFO  msg=m`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},

		{"slog json", `{"time":"2026-12-03T12:41:08.123456789Z","level":"WARN","msg":"m","n":1,"f":1.5,"ok":true,"nil":null,"obj":{"a":[1,2]},"s":"x"}`,
			formatSlogJSON, zapcore.WarnLevel, "m", utc("2026-12-03T12:41:08.123456789Z"), "", "", `{"n":1,"f":1.5,"ok":true,"nil":null,"obj":{"a":[1,2]},"s":"x"}`},
		{"slog json source", `{"level":"DEBUG","source":{"function":"main.f","file":"/a/b.go","line":3},"msg":"m"}`,
			formatSlogJSON, zapcore.DebugLevel, "m", time.Time{}, "/a/b.go:3", "", ""},
		{"slog json custom level", `{"level":"WARN+2","msg":"m"}`, formatSlogJSON, zapcore.WarnLevel, "m", time.Time{}, "", "", ""},
		{"json other logger levels", `{"level":"warning","msg":"m"}`, formatSlogJSON, zapcore.WarnLevel, "m", time.Time{}, "", "", ""},
		{"json fatal is error", `{"level":"fatal","msg":"m"}`, formatSlogJSON, zapcore.ErrorLevel, "m", time.Time{}, "", "", ""},
		{"json without level", `{"msg":"m"}`, formatSlogJSON, zapcore.WarnLevel, "m", time.Time{}, "", "", ""},
		{"json unknown level kept", `{"level":"LOUD","msg":"m"}`, formatSlogJSON, zapcore.WarnLevel, "m", time.Time{}, "", "", `{"level":"LOUD"}`},
		{"json keys of ours nested", `{"level":"INFO","msg":"m","pid":7,"ts":1,"msg2":"x","request_id":"r1"}`,
			formatSlogJSON, zapcore.InfoLevel, "m", time.Time{}, "", "r1", `{"pid":7,"ts":1,"msg2":"x"}`},
		{"json repeated key", `{"level":"INFO","msg":"m","a":1,"a":2,"msg":"n","level":"x"}`, formatSlogJSON, zapcore.InfoLevel, "m", time.Time{}, "", "", `{"a":1,"msg":"n","level":"x"}`},
		{"json msg not a string", `{"level":"INFO","msg":1}`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"json without msg", `{"level":"INFO","message":"m"}`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"json trailing", `{"msg":"m"} x`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"json two objects", `{"msg":"m"}{"msg":"n"}`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"json array", `[1]`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},

		{"log", `2009/11/10 23:00:00 hello world`, formatLog, zapcore.InfoLevel, "hello world", local("2009/11/10 23:00:00.000000"), "", "", ""},
		{"log microseconds", `2009/11/10 23:00:00.123456 hi`, formatLog, zapcore.InfoLevel, "hi", local("2009/11/10 23:00:00.123456"), "", "", ""},
		{"log shortfile", `2009/11/10 23:00:00 main.go:12: hi: there`, formatLog, zapcore.InfoLevel, "hi: there", local("2009/11/10 23:00:00.000000"), "main.go:12", "", ""},
		{"log message with colon", `2009/11/10 23:00:00 error: boom`, formatLog, zapcore.InfoLevel, "error: boom", local("2009/11/10 23:00:00.000000"), "", "", ""},
		{"log empty message", `2009/11/10 23:00:00`, formatLog, zapcore.InfoLevel, "", local("2009/11/10 23:00:00.000000"), "", "", ""},
		{"log from slog's default handler", `2009/11/10 23:00:00 WARN+2 slow k=v`, formatLog, zapcore.WarnLevel, "slow k=v", local("2009/11/10 23:00:00.000000"), "", "", ""},
		{"log from slog's default handler, debug", `2009/11/10 23:00:00 DEBUG x`, formatLog, zapcore.DebugLevel, "x", local("2009/11/10 23:00:00.000000"), "", "", ""},
		{"log lower-case level is a word", `2009/11/10 23:00:00 error x`, formatLog, zapcore.InfoLevel, "error x", local("2009/11/10 23:00:00.000000"), "", "", ""},
		{"log bad date", `2009/13/10 23:00:00 x`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"log glued", `2009/11/10 23:00:00x`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"log short micro", `2009/11/10 23:00:00.12 x`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},

		{"plain", `hello`, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
		{"empty", ``, formatPlain, zapcore.WarnLevel, plainMessage, time.Time{}, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := parseOutput([]byte(tt.line), zapcore.WarnLevel)
			if l.format != tt.format || l.level != tt.level || l.msg != tt.msg {
				t.Errorf("%q: got format %q level %v msg %q, want %q %v %q", tt.line, l.format, l.level, l.msg, tt.format, tt.level, tt.msg)
			}
			if !l.time.Equal(tt.time) {
				t.Errorf("%q: got time %v, want %v", tt.line, l.time, tt.time)
			}
			caller := ""
			if l.caller.Defined {
				caller = l.caller.FullPath()
			}
			if caller != tt.caller || l.requestID != tt.requestID {
				t.Errorf("%q: got caller %q request id %q, want %q %q", tt.line, caller, l.requestID, tt.caller, tt.requestID)
			}
			if got := attrsJSON(t, l.attrs); got != tt.attrs {
				t.Errorf("%q: got attrs %s, want %s", tt.line, got, tt.attrs)
			}
			if tt.format == formatPlain && l.output != tt.line {
				t.Errorf("%q: got output %q, want the line", tt.line, l.output)
			}
		})
	}
}

// TestCrashStart tells the first line of the Go runtime's dying words
// from lines that only look like them.
func TestCrashStart(t *testing.T) {
	for line, want := range map[string]bool{
		"panic: boom":                            true,
		"panic: boom [recovered]":                true,
		"fatal error: all goroutines are asleep": true,
		"SIGABRT: abort":                         true,
		"SIGSEGV: segmentation violation":        true,
		"unexpected fault address 0x0":           true,
		"panicked: no":                           false,
		"SIG: x":                                 false,
		"SIGabc: x":                              false,
		"goroutine 1 [running]:":                 false,
		"":                                       false,
	} {
		if got := crashStart([]byte(line)); got != want {
			t.Errorf("crashStart(%q) = %v, want %v", line, got, want)
		}
	}
}

// ourKeys are the keys a relayed line may have at its top level.
var ourKeys = []string{"level", "ts", "logger", "caller", "msg", "pid", "worker", "worker_pid", "generation", "stream", "request_id", "output", "attrs"}

// FuzzParseOutput feeds the parser what a worker may print: whatever it
// makes of a line, the master's log line is one valid JSON object whose
// top-level keys are ours alone, with a level of ours, and a line it does
// not understand is kept whole.
func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{
		`time=2026-12-03T12:41:08.123+01:00 level=INFO msg=hello user=ann`,
		`{"time":"2026-12-03T12:41:08Z","level":"INFO+2","msg":"m","pid":1,"obj":{"a":[1]}}`,
		`2009/11/10 23:00:00.123456 main.go:1: hi`,
		"panic: boom",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.IndexByte(line, '\n') >= 0 {
			return // the relay splits lines first
		}
		l := parseOutput(line, zapcore.WarnLevel)
		switch l.level {
		case zapcore.DebugLevel, zapcore.InfoLevel, zapcore.WarnLevel, zapcore.ErrorLevel:
		default:
			t.Fatalf("%q: level %v", line, l.level)
		}
		if l.format == formatPlain && l.output != string(line) {
			t.Fatalf("%q: plain output %q", line, l.output)
		}
		if l.requestID != "" && !requestIDOK(l.requestID) {
			t.Fatalf("%q: request id %q", line, l.requestID)
		}
		var buf bytes.Buffer
		ec := zap.NewProductionEncoderConfig()
		core := zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(&buf), zapcore.DebugLevel).
			With([]zap.Field{zap.Int("pid", 1)})
		fields := []zap.Field{zap.Int("worker", 1), zap.Int("worker_pid", 2), zap.Int("generation", 1), zap.String("stream", "stderr")}
		writeOutput(core, l, fields)
		out := buf.Bytes()
		if bytes.Count(out, []byte{'\n'}) != 1 || !json.Valid(out) {
			t.Fatalf("%q: logged %q, want one JSON line", line, out)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.Token() // {
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			key := k.(string)
			if !slices.Contains(ourKeys, key) || seen[key] {
				t.Fatalf("%q: logged %s: key %q not ours or repeated", line, out, key)
			}
			seen[key] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
		}
	})
}
