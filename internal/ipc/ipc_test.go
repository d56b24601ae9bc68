package ipc_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/ipc"
	"github.com/remuda/remuda/internal/metrics"
)

// testTimeout bounds every read and write on a test connection, so that a
// broken Recv fails the test instead of hanging it.
const testTimeout = 10 * time.Second

// One line of each frame type, as the doc shows them.
const (
	configLine    = `{"type":"config","worker":7,"generation":2,"listeners":2,"config":{"db":{"dsn":"postgres://remuda:s3cret@db/remuda","pool":{"max":10,"idle":[1,2]}},"tls":[{"cert":"a.pem"},{"cert":"b.pem"}],"debug":false}}`
	readyLine     = `{"type":"ready"}`
	heartbeatLine = `{"type":"heartbeat","requests":1234,"active":3}`
	recycleLine   = `{"type":"recycle","reason":"timeout"}`
	failedLine    = `{"type":"failed","error":"open db: no such file"}`
)

var (
	configFrame = ipc.Frame{
		Type: ipc.TypeConfig, Worker: 7, Generation: 2, Listeners: 2,
		Config: json.RawMessage(`{"db":{"dsn":"postgres://remuda:s3cret@db/remuda","pool":{"max":10,"idle":[1,2]}},"tls":[{"cert":"a.pem"},{"cert":"b.pem"}],"debug":false}`),
	}
	readyFrame     = ipc.Frame{Type: ipc.TypeReady}
	heartbeatFrame = ipc.Frame{Type: ipc.TypeHeartbeat, Requests: 1234, Active: 3}
	// metricsLine is a heartbeat with the metrics member the doc shows.
	metricsLine  = `{"type":"heartbeat","requests":1234,"active":3,"metrics":{"requests":{"GET 200":41,"GET 404":7},"duration":[30,8,3,2,4,1,0,0,0,0,0,0],"duration_sum":0.734,"logins":{"success":1}}}`
	metricsFrame = ipc.Frame{Type: ipc.TypeHeartbeat, Requests: 1234, Active: 3, Metrics: &metrics.Delta{
		Requests:    map[string]uint64{"GET 200": 41, "GET 404": 7},
		Duration:    []uint64{30, 8, 3, 2, 4, 1, 0, 0, 0, 0, 0, 0},
		DurationSum: 0.734,
		Logins:      map[string]uint64{"success": 1},
	}}
	// runtimeLine is a heartbeat with the runtime member the doc shows.
	runtimeLine  = `{"type":"heartbeat","requests":1234,"active":3,"runtime":{"goroutines":12,"heap_bytes":2097152,"memory_bytes":9437184,"gc_cycles":31}}`
	runtimeFrame = ipc.Frame{Type: ipc.TypeHeartbeat, Requests: 1234, Active: 3, Runtime: &metrics.Runtime{
		Goroutines: 12, HeapBytes: 2097152, MemoryBytes: 9437184, GCCycles: 31,
	}}
	recycleFrame = ipc.Frame{Type: ipc.TypeRecycle, Reason: "timeout"}
	failedFrame  = ipc.Frame{Type: ipc.TypeFailed, Error: "open db: no such file"}
)

// everyFrame holds at least one frame of each type, with the members that
// are easiest to get wrong on the wire.
var everyFrame = []struct {
	name  string
	frame ipc.Frame
}{
	{"config", configFrame},
	{"config indented with newlines and html", ipc.Frame{
		Type: ipc.TypeConfig, Worker: 1, Generation: 1,
		Config: json.RawMessage("{\n  \"app\": {\n    \"banner\": \"<b>a & b</b>\",\n    \"limits\": [1, 2.5, null, true]\n  },\n  \"secret\": \"\\u2028line\\nbreak\"\n}\n"),
	}},
	{"config string", ipc.Frame{Type: ipc.TypeConfig, Worker: 1 << 40, Generation: 3, Config: json.RawMessage(`"plain"`)}},
	{"config with MaxListeners", ipc.Frame{Type: ipc.TypeConfig, Worker: 2, Generation: 5, Listeners: ipc.MaxListeners, Config: json.RawMessage(`{}`)}},
	{"config with log", ipc.Frame{Type: ipc.TypeConfig, Worker: 3, Generation: 1, Listeners: 2, Log: true, Config: json.RawMessage(`{}`)}},
	{"ready", readyFrame},
	{"ready accepting drain", ipc.Frame{Type: ipc.TypeReady, Accepts: []string{ipc.TypeDrain}}},
	{"heartbeat", heartbeatFrame},
	{"heartbeat idle", ipc.Frame{Type: ipc.TypeHeartbeat}},
	{"heartbeat with metrics", metricsFrame},
	{"heartbeat with runtime", runtimeFrame},
	{"heartbeat max requests", ipc.Frame{Type: ipc.TypeHeartbeat, Requests: 1<<64 - 1, Active: 1<<63 - 1}},
	{"recycle", recycleFrame},
	{"failed", failedFrame},
	{"failed multiline unicode", ipc.Frame{Type: ipc.TypeFailed, Error: "boot:\n\tpanic: \"héllo\" 世界\r\n"}},
	{"drain", ipc.Frame{Type: ipc.TypeDrain}},
}

// transports are the real connections the channel runs over: net.Pipe
// (synchronous, unbuffered) and a unix stream socketpair, what the master
// really hands a worker at fd 3.
var transports = []struct {
	name string
	pair func(t *testing.T) (net.Conn, net.Conn)
}{
	{"net.Pipe", pipePair},
	{"socketpair", socketPair},
}

func pipePair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	for _, c := range []net.Conn{a, b} {
		t.Cleanup(func() { c.Close() })
		if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
			t.Fatalf("SetDeadline on net.Pipe: got %v, want nil", err)
		}
	}
	return a, b
}

func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("unix.Socketpair: got %v, want nil", err)
	}
	files := []*os.File{os.NewFile(uintptr(fds[0]), "master"), os.NewFile(uintptr(fds[1]), "worker")}
	var conns []net.Conn
	for _, f := range files {
		c, err := net.FileConn(f) // dups the fd
		f.Close()
		if err != nil {
			t.Fatalf("net.FileConn(%s): got %v, want nil", f.Name(), err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
			t.Fatalf("SetDeadline on %s: got %v, want nil", f.Name(), err)
		}
		conns = append(conns, c)
	}
	return conns[0], conns[1]
}

// normalize makes frames comparable with reflect.DeepEqual: json.Marshal
// compacts a RawMessage and escapes <, >, &, U+2028 and U+2029 in it, so
// Config is compared in that form.
func normalize(f ipc.Frame) ipc.Frame {
	if f.Config == nil {
		return f
	}
	var compact, escaped bytes.Buffer
	if err := json.Compact(&compact, f.Config); err != nil {
		return f // invalid JSON: leave it for the comparison to report
	}
	json.HTMLEscape(&escaped, compact.Bytes())
	f.Config = escaped.Bytes()
	return f
}

func normalizeAll(fs []ipc.Frame) []ipc.Frame {
	var out []ipc.Frame
	for _, f := range fs {
		out = append(out, normalize(f))
	}
	return out
}

// show prints a frame as its JSON, which is what a reader of a failure
// wants to see (%+v prints Config as a list of byte values).
func show(f ipc.Frame) string {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Sprintf("%+v", f)
	}
	return quoteShort(b)
}

func showAll(fs []ipc.Frame) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, show(f))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// quoteShort quotes b, eliding the middle of long inputs so that a failure
// on a 1 MiB frame stays readable.
func quoteShort(b []byte) string {
	const keep = 48
	if len(b) <= 2*keep {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q...%q (%d bytes)", b[:keep], b[len(b)-keep:], len(b))
}

func knownType(typ string) bool {
	switch typ {
	case ipc.TypeConfig, ipc.TypeReady, ipc.TypeHeartbeat, ipc.TypeRecycle, ipc.TypeFailed, ipc.TypeDrain:
		return true
	}
	return false
}

// failedOfSize returns a failed frame and its encoding, which is exactly n
// bytes long (newline not included).
func failedOfSize(n int) (ipc.Frame, string) {
	const prefix, suffix = `{"type":"failed","error":"`, `"}`
	msg := strings.Repeat("x", n-len(prefix)-len(suffix))
	return ipc.Frame{Type: ipc.TypeFailed, Error: msg}, prefix + msg + suffix
}

func TestSendRecvRoundTrip(t *testing.T) {
	for _, tr := range transports {
		for _, tc := range everyFrame {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				a, b := tr.pair(t)
				master, worker := ipc.NewConn(a), ipc.NewConn(b)

				// There and back again: master to worker, then the worker
				// echoes what it got, so both ends send and receive.
				sent := make(chan error, 1)
				go func() { sent <- master.Send(tc.frame) }()
				got, err := worker.Recv()
				if err != nil {
					t.Fatalf("Send(%s) then Recv: got error %v, want nil", show(tc.frame), err)
				}
				if err := <-sent; err != nil {
					t.Fatalf("Send(%s): got %v, want nil", show(tc.frame), err)
				}
				if !reflect.DeepEqual(normalize(got), normalize(tc.frame)) {
					t.Errorf("Send(%s) then Recv: got %s, want %s", show(tc.frame), show(got), show(tc.frame))
				}

				go func() { sent <- worker.Send(got) }()
				back, err := master.Recv()
				if err != nil {
					t.Fatalf("echo of %s: Recv got error %v, want nil", show(tc.frame), err)
				}
				if err := <-sent; err != nil {
					t.Fatalf("echo of %s: Send got %v, want nil", show(tc.frame), err)
				}
				if !reflect.DeepEqual(normalize(back), normalize(tc.frame)) {
					t.Errorf("echo of %s: got %s, want %s", show(tc.frame), show(back), show(tc.frame))
				}
			})
		}
	}
}

func TestRoundTripNestedConfig(t *testing.T) {
	// The config member is opaque to ipc; what the worker unmarshals must
	// be what the master marshalled, secrets and nesting included.
	type pool struct {
		Max  int   `json:"max"`
		Idle []int `json:"idle"`
	}
	type appConfig struct {
		DB struct {
			DSN  string `json:"dsn"`
			Pool pool   `json:"pool"`
		} `json:"db"`
		TLS []struct {
			Cert string `json:"cert"`
		} `json:"tls"`
		Debug bool `json:"debug"`
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			a, b := tr.pair(t)
			sent := make(chan error, 1)
			go func() { sent <- ipc.NewConn(a).Send(configFrame) }()
			got, err := ipc.NewConn(b).Recv()
			if err != nil {
				t.Fatalf("Recv of %s: got error %v, want nil", configLine, err)
			}
			if err := <-sent; err != nil {
				t.Fatalf("Send(%s): got %v, want nil", configLine, err)
			}
			var cfg appConfig
			if err := json.Unmarshal(got.Config, &cfg); err != nil {
				t.Fatalf("unmarshal received config %q: got %v, want nil", got.Config, err)
			}
			if cfg.DB.DSN != "postgres://remuda:s3cret@db/remuda" || cfg.DB.Pool.Max != 10 ||
				!reflect.DeepEqual(cfg.DB.Pool.Idle, []int{1, 2}) || len(cfg.TLS) != 2 || cfg.TLS[1].Cert != "b.pem" {
				t.Errorf("config received from %s: got %+v, want the nested values sent", configLine, cfg)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	_, largest := failedOfSize(ipc.MaxFrameSize - 1)
	largestFrame, _ := failedOfSize(ipc.MaxFrameSize - 1)
	tests := []struct {
		name string
		line string
		want ipc.Frame
	}{
		{"config", configLine, configFrame},
		{"ready", readyLine, readyFrame},
		{"heartbeat", heartbeatLine, heartbeatFrame},
		{"heartbeat with metrics", metricsLine, metricsFrame},
		{"heartbeat with runtime", runtimeLine, runtimeFrame},
		// A worker from before "runtime" sends none: the master shows no
		// runtime figures for it.
		{"heartbeat without runtime", heartbeatLine, heartbeatFrame},
		{"heartbeat with empty metrics", `{"type":"heartbeat","metrics":{"requests":{},"logins":{}}}`,
			ipc.Frame{Type: ipc.TypeHeartbeat, Metrics: &metrics.Delta{}}},
		{"heartbeat with unusual codes", `{"type":"heartbeat","metrics":{"requests":{"other other":2,"PATCH 599":1,"HEAD 100":3}}}`,
			ipc.Frame{Type: ipc.TypeHeartbeat, Metrics: &metrics.Delta{Requests: map[string]uint64{"other other": 2, "PATCH 599": 1, "HEAD 100": 3}}}},
		{"recycle", recycleLine, recycleFrame},
		{"failed", failedLine, failedFrame},
		{"unknown members ignored", `{"type":"ready","pid":42,"extra":{"a":[1]}}`, readyFrame},
		{"surrounding whitespace", " \t{\"type\" : \"ready\"}\r", readyFrame},
		{"config null", `{"type":"config","worker":1,"generation":1,"config":null}`,
			ipc.Frame{Type: ipc.TypeConfig, Worker: 1, Generation: 1, Config: json.RawMessage(`null`)}},
		{"config with MaxListeners", fmt.Sprintf(`{"type":"config","worker":1,"generation":1,"listeners":%d,"config":{}}`, ipc.MaxListeners),
			ipc.Frame{Type: ipc.TypeConfig, Worker: 1, Generation: 1, Listeners: ipc.MaxListeners, Config: json.RawMessage(`{}`)}},
		// A master of the same version without a log file to pass, or
		// one from before "log", sends none: the worker logs to stderr.
		{"config without log", `{"type":"config","worker":1,"generation":1,"listeners":1,"config":{}}`,
			ipc.Frame{Type: ipc.TypeConfig, Worker: 1, Generation: 1, Listeners: 1, Config: json.RawMessage(`{}`)}},
		{"config with log", `{"type":"config","worker":1,"generation":1,"listeners":1,"log":true,"config":{}}`,
			ipc.Frame{Type: ipc.TypeConfig, Worker: 1, Generation: 1, Listeners: 1, Log: true, Config: json.RawMessage(`{}`)}},
		{"MaxFrameSize-1 bytes", largest, largestFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ipc.Decode([]byte(tc.line))
			if err != nil {
				t.Fatalf("Decode(%s): got error %v, want nil", quoteShort([]byte(tc.line)), err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(tc.want)) {
				t.Errorf("Decode(%s): got %s, want %s", quoteShort([]byte(tc.line)), show(got), show(tc.want))
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	_, exactlyMax := failedOfSize(ipc.MaxFrameSize)
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	tests := []struct {
		name string
		line string
		// is, if set, must match the error with errors.Is; as, if set,
		// with errors.As.
		is error
		as any
	}{
		{name: "unknown type", line: `{"type":"reboot"}`},
		{name: "type differs in case", line: `{"type":"Ready"}`},
		{name: "missing type", line: `{"worker":7,"generation":2,"config":{}}`},
		{name: "empty type", line: `{"type":""}`},
		{name: "null type", line: `{"type":null}`},
		{name: "type not a string", line: `{"type":1}`, as: &typeErr},
		{name: "config without worker", line: `{"type":"config","generation":2,"config":{}}`},
		{name: "config without generation", line: `{"type":"config","worker":7,"config":{}}`},
		{name: "config without worker and generation", line: `{"type":"config","config":{"a":1}}`},
		{name: "config with worker 0", line: `{"type":"config","worker":0,"generation":2}`},
		{name: "config with negative worker", line: `{"type":"config","worker":-7,"generation":2}`},
		{name: "config with negative generation", line: `{"type":"config","worker":7,"generation":-2}`},
		{name: "config with negative listeners", line: `{"type":"config","worker":7,"generation":2,"listeners":-1}`},
		{name: "config with MaxListeners+1 listeners", line: fmt.Sprintf(`{"type":"config","worker":7,"generation":2,"listeners":%d,"config":{}}`, ipc.MaxListeners+1)},
		{name: "config without config", line: `{"type":"config","worker":7,"generation":2,"listeners":1}`},
		{name: "config with fractional worker", line: `{"type":"config","worker":7.5,"generation":2}`, as: &typeErr},
		{name: "heartbeat with negative active", line: `{"type":"heartbeat","requests":1,"active":-1}`},
		{name: "heartbeat with negative requests", line: `{"type":"heartbeat","requests":-1}`, as: &typeErr},
		{name: "heartbeat with requests past uint64", line: `{"type":"heartbeat","requests":18446744073709551616}`, as: &typeErr},
		{name: "metrics with an unknown method", line: `{"type":"heartbeat","metrics":{"requests":{"BREW 200":1}}}`},
		{name: "metrics with a code past 599", line: `{"type":"heartbeat","metrics":{"requests":{"GET 600":1}}}`},
		{name: "metrics without a code", line: `{"type":"heartbeat","metrics":{"requests":{"GET":1}}}`},
		{name: "metrics with too few buckets", line: `{"type":"heartbeat","metrics":{"duration":[1,2,3]}}`},
		{name: "metrics with no buckets", line: `{"type":"heartbeat","metrics":{"duration":[]}}`},
		{name: "metrics with a negative sum", line: `{"type":"heartbeat","metrics":{"duration_sum":-0.5}}`},
		{name: "metrics with an unknown login outcome", line: `{"type":"heartbeat","metrics":{"logins":{"maybe":1}}}`},
		{name: "metrics with a negative count", line: `{"type":"heartbeat","metrics":{"requests":{"GET 200":-1}}}`, as: &typeErr},
		{name: "metrics not an object", line: `{"type":"heartbeat","metrics":[1]}`, as: &typeErr},
		{name: "invalid JSON", line: `{"type":"ready"`},
		{name: "not JSON", line: `ready`, as: &syntaxErr},
		{name: "empty line", line: ``},
		{name: "two objects on one line", line: `{"type":"ready"}{"type":"ready"}`, as: &syntaxErr},
		{name: "array", line: `[{"type":"ready"}]`, as: &typeErr},
		{name: "MaxFrameSize bytes", line: exactlyMax, is: ipc.ErrFrameTooLarge},
		{name: "MaxFrameSize bytes of garbage", line: strings.Repeat("{", ipc.MaxFrameSize), is: ipc.ErrFrameTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := quoteShort([]byte(tc.line))
			got, err := ipc.Decode([]byte(tc.line))
			if err == nil {
				t.Fatalf("Decode(%s): got %s, nil error; want an error", in, show(got))
			}
			if !reflect.DeepEqual(got, ipc.Frame{}) {
				t.Errorf("Decode(%s): got frame %s with error %v, want the zero Frame", in, show(got), err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Decode(%s): got error %v, want errors.Is %v", in, err, tc.is)
			}
			if tc.is == nil && errors.Is(err, ipc.ErrFrameTooLarge) {
				t.Errorf("Decode(%s): got %v, want an error other than ErrFrameTooLarge", in, err)
			}
			if tc.as != nil && !errors.As(err, tc.as) {
				t.Errorf("Decode(%s): got error %v (%T), want errors.As %T", in, err, err, tc.as)
			}
			if !strings.HasPrefix(err.Error(), "ipc: ") {
				t.Errorf("Decode(%s): got error %q, want it prefixed with \"ipc: \"", in, err)
			}
		})
	}
}

// recvAll calls Recv until it fails and returns the frames and the error.
func recvAll(c *ipc.Conn) ([]ipc.Frame, error) {
	var frames []ipc.Frame
	for {
		f, err := c.Recv()
		if err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
}

// split cuts s into pieces of n bytes.
func split(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func TestRecv(t *testing.T) {
	all := readyLine + "\n" + heartbeatLine + "\n" + configLine + "\n" + recycleLine + "\n" + failedLine + "\n"
	allFrames := []ipc.Frame{readyFrame, heartbeatFrame, configFrame, recycleFrame, failedFrame}
	largestFrame, largest := failedOfSize(ipc.MaxFrameSize - 1)
	_, tooLarge := failedOfSize(ipc.MaxFrameSize)

	tests := []struct {
		name    string
		writes  []string // one Write each, then the peer closes
		want    []ipc.Frame
		wantErr error
	}{
		{"peer closes before any frame", nil, nil, io.EOF},
		{"peer closes between frames", []string{readyLine + "\n", heartbeatLine + "\n"}, []ipc.Frame{readyFrame, heartbeatFrame}, io.EOF},
		{"peer closes mid frame", []string{readyLine + "\n", `{"type":"heartbeat","requ`}, []ipc.Frame{readyFrame}, io.ErrUnexpectedEOF},
		{"peer closes before the newline", []string{readyLine}, nil, io.ErrUnexpectedEOF},
		{"peer closes after a lone space", []string{" "}, nil, io.ErrUnexpectedEOF},
		{"several frames in one write", []string{all}, allFrames, io.EOF},
		{"frame split over many small writes", split(configLine+"\n", 3), []ipc.Frame{configFrame}, io.EOF},
		{"frame split byte by byte", split(heartbeatLine+"\n", 1), []ipc.Frame{heartbeatFrame}, io.EOF},
		{"frames split across write boundaries", split(all, 7), allFrames, io.EOF},
		{"newline in its own write", []string{recycleLine, "\n", failedLine, "\n"}, []ipc.Frame{recycleFrame, failedFrame}, io.EOF},
		{"CRLF line ending", []string{readyLine + "\r\n"}, []ipc.Frame{readyFrame}, io.EOF},
		{"frame of MaxFrameSize bytes with its newline", []string{largest + "\n", readyLine + "\n"}, []ipc.Frame{largestFrame, readyFrame}, io.EOF},
		{"frame of MaxFrameSize bytes in small writes", split(largest+"\n", 1000), []ipc.Frame{largestFrame}, io.EOF},
		{"frame of MaxFrameSize+1 bytes with its newline", []string{readyLine + "\n", tooLarge + "\n"}, []ipc.Frame{readyFrame}, ipc.ErrFrameTooLarge},
		{"unterminated line of MaxFrameSize+1 bytes", []string{strings.Repeat("x", ipc.MaxFrameSize+1)}, nil, ipc.ErrFrameTooLarge},
	}
	for _, tr := range transports {
		for _, tc := range tests {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				a, b := tr.pair(t)
				wrote := make(chan error, 1)
				go func() {
					for _, w := range tc.writes {
						if _, err := io.WriteString(a, w); err != nil {
							wrote <- err
							return
						}
					}
					wrote <- a.Close()
				}()

				got, err := recvAll(ipc.NewConn(b))
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Recv of %d writes %s: got error %v, want %v", len(tc.writes), quoteShort([]byte(strings.Join(tc.writes, ""))), err, tc.wantErr)
				}
				if !reflect.DeepEqual(normalizeAll(got), normalizeAll(tc.want)) {
					t.Errorf("Recv of %d writes %s: got frames %s, want %s", len(tc.writes), quoteShort([]byte(strings.Join(tc.writes, ""))), showAll(got), showAll(tc.want))
				}
				// When Recv gives up early the writer may be blocked on
				// an unread net.Pipe: closing our end releases it.
				b.Close()
				werr := <-wrote
				if (tc.wantErr == io.EOF || tc.wantErr == io.ErrUnexpectedEOF) && werr != nil {
					t.Errorf("peer writing %q: got error %v, want nil", quoteShort([]byte(strings.Join(tc.writes, ""))), werr)
				}
			})
		}
	}
}

// countingConn counts the bytes Recv has read.
type countingConn struct {
	net.Conn
	n int
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += n
	return n, err
}

func TestRecvEndlessLine(t *testing.T) {
	// The peer writes an endless line and never a newline nor a close:
	// Recv must give up with ErrFrameTooLarge after about MaxFrameSize
	// bytes rather than buffer until memory or the peer runs out.
	const slack = 64 << 10 // generous allowance for Recv's read buffer
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			a, b := tr.pair(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				chunk := bytes.Repeat([]byte{'x'}, 32<<10)
				for {
					if _, err := a.Write(chunk); err != nil {
						return // we closed b, or the deadline passed
					}
				}
			}()
			t.Cleanup(func() { a.Close(); b.Close(); <-done })

			cb := &countingConn{Conn: b}
			got, err := ipc.NewConn(cb).Recv()
			if !errors.Is(err, ipc.ErrFrameTooLarge) {
				t.Fatalf("Recv of an endless line of 'x': got %s, %v; want ErrFrameTooLarge", show(got), err)
			}
			if cb.n > ipc.MaxFrameSize+slack {
				t.Errorf("Recv of an endless line of 'x': read %d bytes before ErrFrameTooLarge, want at most %d", cb.n, ipc.MaxFrameSize+slack)
			}
		})
	}
}

// recorder is a ReadWriteCloser that keeps what was written.
type recorder struct{ bytes.Buffer }

func (*recorder) Close() error { return nil }

func TestSend(t *testing.T) {
	largestFrame, largest := failedOfSize(ipc.MaxFrameSize - 1)
	tooLargeFrame, _ := failedOfSize(ipc.MaxFrameSize)
	tests := []struct {
		name    string
		frame   ipc.Frame
		want    string // bytes written
		wantErr error  // matched with errors.Is; errAny for any error
	}{
		{"ready", readyFrame, readyLine + "\n", nil},
		{"heartbeat", heartbeatFrame, heartbeatLine + "\n", nil},
		{"config compacted onto one line", everyFrame[1].frame,
			`{"type":"config","worker":1,"generation":1,"config":{"app":{"banner":"\u003cb\u003ea \u0026 b\u003c/b\u003e","limits":[1,2.5,null,true]},"secret":"\u2028line\nbreak"}}` + "\n", nil},
		{"frame of MaxFrameSize bytes with its newline", largestFrame, largest + "\n", nil},
		{"frame of MaxFrameSize+1 bytes with its newline", tooLargeFrame, "", ipc.ErrFrameTooLarge},
		{"config that is not JSON", ipc.Frame{Type: ipc.TypeConfig, Worker: 1, Generation: 1, Config: json.RawMessage(`{"a":`)}, "", errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w recorder
			err := ipc.NewConn(&w).Send(tc.frame)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("Send(%s): got error %v, want nil", show(tc.frame), err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Errorf("Send(%s): got error %v, want %v", show(tc.frame), err, tc.wantErr)
			}
			if got := w.String(); got != tc.want {
				t.Errorf("Send(%s): wrote %s, want %s", show(tc.frame), quoteShort([]byte(got)), quoteShort([]byte(tc.want)))
			}
		})
	}
}

var errAny = errors.New("any error")

// smallWrites passes each Write to the connection a few bytes at a time, so
// that two unserialized Sends would interleave on the wire.
type smallWrites struct {
	net.Conn
	n int
}

func (w smallWrites) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(w.n, len(p))
		n, err := w.Conn.Write(p[:k])
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

func TestSendConcurrent(t *testing.T) {
	const senders, perSender = 8, 40
	// frameFor is the i-th frame of sender g: heartbeats and failed frames
	// of different lengths, each identifiable.
	frameFor := func(g, i int) ipc.Frame {
		if i%2 == 0 {
			return ipc.Frame{Type: ipc.TypeHeartbeat, Requests: uint64(g*perSender + i + 1), Active: int64(g)}
		}
		return ipc.Frame{Type: ipc.TypeFailed, Error: fmt.Sprintf("sender %d frame %d %s", g, i, strings.Repeat("x", 100+g*97+i))}
	}
	key := func(f ipc.Frame) string { b, _ := json.Marshal(f); return string(b) }
	origin := map[string][2]int{}
	for g := range senders {
		for i := range perSender {
			origin[key(frameFor(g, i))] = [2]int{g, i}
		}
	}

	tests := []struct {
		name string
		pair func(t *testing.T) (io.ReadWriteCloser, net.Conn)
	}{
		{"net.Pipe in 16-byte writes", func(t *testing.T) (io.ReadWriteCloser, net.Conn) {
			a, b := pipePair(t)
			return smallWrites{a, 16}, b
		}},
		{"socketpair", func(t *testing.T) (io.ReadWriteCloser, net.Conn) { return socketPair(t) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tc.pair(t)
			conn := ipc.NewConn(a)
			errs := make(chan error, senders*perSender)
			var wg sync.WaitGroup
			for g := range senders {
				wg.Go(func() {
					for i := range perSender {
						if err := conn.Send(frameFor(g, i)); err != nil {
							errs <- fmt.Errorf("sender %d frame %d: %w", g, i, err)
							return
						}
					}
				})
			}

			r := ipc.NewConn(b)
			next := make([]int, senders) // next frame index expected from each sender
			for n := range senders * perSender {
				got, err := r.Recv()
				if err != nil {
					t.Fatalf("Recv of frame %d of %d from %d concurrent senders: got error %v, want nil", n+1, senders*perSender, senders, err)
				}
				o, ok := origin[key(got)]
				if !ok {
					t.Fatalf("Recv of frame %d: got %s, want a frame one of the senders sent", n+1, show(got))
				}
				if g, i := o[0], o[1]; i != next[g] {
					t.Errorf("Recv of frame %d: got frame %d of sender %d, want frame %d (a sender's frames arrive in order)", n+1, i, g, next[g])
				}
				next[o[0]] = o[1] + 1
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("concurrent Send: got %v, want nil", err)
			}
		})
	}
}

// rwc makes a Reader a ReadWriteCloser for NewConn.
type rwc struct{ io.Reader }

func (rwc) Write(p []byte) (int, error) { return len(p), nil }
func (rwc) Close() error                { return nil }

func FuzzDecode(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzDecode.
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := ipc.Decode(line)
		if err != nil {
			if !reflect.DeepEqual(got, ipc.Frame{}) {
				t.Errorf("Decode(%s): got frame %s with error %v, want the zero Frame", quoteShort(line), show(got), err)
			}
			return
		}
		if !knownType(got.Type) {
			t.Errorf("Decode(%s): got type %q, want one of the Type constants", quoteShort(line), got.Type)
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("Decode(%s) = %+v, which json.Marshal rejects: %v", quoteShort(line), got, err)
		}
		if len(again) >= ipc.MaxFrameSize {
			// Escaping can make the re-encoding longer than the input;
			// Send refuses such a frame too.
			if _, err := ipc.Decode(again); !errors.Is(err, ipc.ErrFrameTooLarge) {
				t.Errorf("Decode of the %d-byte re-encoding of %s: got %v, want ErrFrameTooLarge", len(again), quoteShort(line), err)
			}
			return
		}
		got2, err := ipc.Decode(again)
		if err != nil {
			t.Fatalf("Decode(%s) = %s, whose re-encoding fails to decode: %v", quoteShort(line), show(got), err)
		}
		if !reflect.DeepEqual(normalize(got2), normalize(got)) {
			t.Errorf("Decode(%s) = %s, re-encoded and decoded again: got %s, want the same frame", quoteShort(line), show(got), show(got2))
		}
	})
}

func FuzzRecv(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzRecv.
	f.Fuzz(func(t *testing.T, stream []byte) {
		frames, err := recvFuzz(t, stream, bytes.NewReader(stream))
		// Recv must not depend on how the bytes arrive.
		oneFrames, oneErr := recvFuzz(t, stream, iotest.OneByteReader(bytes.NewReader(stream)))
		if !reflect.DeepEqual(oneFrames, frames) || oneErr.Error() != err.Error() {
			t.Errorf("Recv of %s one byte at a time: got %s, %v; want %s, %v as when read whole",
				quoteShort(stream), showAll(oneFrames), oneErr, showAll(frames), err)
		}
	})
}

// recvFuzz calls Recv on r until it fails, checking every frame it returns.
func recvFuzz(t *testing.T, stream []byte, r io.Reader) ([]ipc.Frame, error) {
	c := ipc.NewConn(rwc{r})
	var frames []ipc.Frame
	for {
		got, err := c.Recv()
		if err != nil {
			if !reflect.DeepEqual(got, ipc.Frame{}) {
				t.Errorf("Recv of %s: got frame %s with error %v, want the zero Frame", quoteShort(stream), show(got), err)
			}
			return frames, err
		}
		if !knownType(got.Type) {
			t.Errorf("Recv of %s: got frame %s of type %q, want one of the Type constants", quoteShort(stream), show(got), got.Type)
		}
		frames = append(frames, got)
		// Every frame consumes at least its newline.
		if len(frames) > len(stream) {
			t.Fatalf("Recv of %s (%d bytes): got %d frames, want at most one per byte", quoteShort(stream), len(stream), len(frames))
		}
	}
}

// An oversized line ends the stream for good: what follows it must not pass
// for a frame.
func TestRecvErrorIsFinal(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		defer b.Close()
		b.Write(bytes.Repeat([]byte("x"), ipc.MaxFrameSize+4096))
		b.Write([]byte(`{"type":"recycle","reason":"smuggled"}` + "\n"))
	}()
	c := ipc.NewConn(a)
	for i := range 2 {
		if f, err := c.Recv(); !errors.Is(err, ipc.ErrFrameTooLarge) {
			t.Fatalf("Recv %d after an oversized line: got %+v, %v; want ErrFrameTooLarge", i+1, f, err)
		}
	}
}

func TestLogFD(t *testing.T) {
	for _, tc := range []struct{ listeners, want int }{{0, 4}, {1, 5}, {ipc.MaxListeners, 68}} {
		if got := ipc.LogFD(tc.listeners); got != tc.want {
			t.Errorf("LogFD(%d): got %d, want %d (the fd after the last listener)", tc.listeners, got, tc.want)
		}
	}
}
