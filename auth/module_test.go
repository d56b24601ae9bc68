package auth

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/remuda/remuda/internal/serve"
)

// TestModuleLogCaps checks that the log lines of the module's hooks cut
// what a client chose (a username, a path, an address) to
// serve.MaxLogValue bytes: no request makes the log grow by more than that.
func TestModuleLogCaps(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := settings{}.config(zap.New(core), nil)
	huge := strings.Repeat("é", 1<<19) // 1 MiB of two-byte characters
	r := httptest.NewRequest("GET", "/hello/"+huge, nil)
	r.RemoteAddr = huge
	cfg.OnLogin(r, huge, LoginFailed)
	cfg.OnTokenReuse(r, huge, huge)
	cfg.OnError(r, errors.New("store down"))
	if n := logs.Len(); n != 3 {
		t.Fatalf("%d log lines, want 3", n)
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if f.Type != zapcore.StringType {
				continue
			}
			if max := serve.MaxLogValue + len("…"); len(f.String) > max || !utf8.ValidString(f.String) {
				t.Errorf("%q: field %s of %d bytes (valid UTF-8: %v), want at most %d", e.Message, f.Key, len(f.String), utf8.ValidString(f.String), max)
			}
		}
	}
	// Short values are kept whole.
	logs.TakeAll()
	r = httptest.NewRequest("POST", "/api/token/", nil)
	cfg.OnLogin(r, "alice", LoginFailed)
	if got := logs.All()[0].ContextMap()["username"]; got != "alice" {
		t.Errorf("username field = %v, want alice", got)
	}
}
