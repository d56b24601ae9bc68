package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRefusedLoginGrowth sends logins with a megabyte username or
// password to the binary in prod and measures what each costs the SQLite
// database (its file and WAL) and the log (error and access log, both on
// stderr here): at most 4 KiB per request. The fields are refused (400)
// before any store write, hash or log line of the auth module; the access
// log line remains, a few hundred bytes.
func TestRefusedLoginGrowth(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds; go test without -short runs it")
	}
	const (
		perRequest = 4 << 10
		requests   = 10
	)
	s := startSite(t, t.TempDir())
	storeSize := func() int64 {
		var n int64
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(s.db + suffix); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	logSize := func() int64 {
		var n int64
		for _, l := range s.p.Lines() {
			n += int64(len(l.Raw)) + 1
		}
		return n
	}
	// A first refused login, so that what is measured below is the
	// steady state, not the first request's (a worker's first lines).
	postJSON(t, s.url+"/api/token/", jsonBody("username", "warm-up", "password", "x"))
	time.Sleep(200 * time.Millisecond)

	mib := strings.Repeat("a", 1<<20)
	tests := []struct {
		name, body, want string
	}{
		{"1 MiB username", jsonBody("username", mib, "password", "x"),
			`{"username":["Ensure this field has no more than 150 characters."]}`},
		{"1 MiB password", jsonBody("username", "alice", "password", mib),
			`{"password":["Ensure this field has no more than 1024 bytes."]}`},
		{"512 KiB of both", jsonBody("username", mib[:512<<10], "password", mib[:512<<10]),
			`{"password":["Ensure this field has no more than 1024 bytes."],"username":["Ensure this field has no more than 150 characters."]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store0, log0 := storeSize(), logSize()
			for range requests {
				r := postJSON(t, s.url+"/api/token/", tt.body)
				if got := normalize(r.body); r.status != 400 || got != tt.want {
					t.Fatalf("got %d %s, want 400 %s", r.status, got, tt.want)
				}
			}
			// Let the access-log lines of the last requests arrive.
			time.Sleep(300 * time.Millisecond)
			store1, log1 := storeSize(), logSize()
			t.Logf("%d requests: the database grew %d bytes, the log %d", requests, store1-store0, log1-log0)
			if grew := (store1 - store0 + log1 - log0) / requests; grew > perRequest {
				t.Errorf("database and log grew %d bytes per refused request, want at most %d", grew, perRequest)
			}
		})
	}
}

// TestRefusedLoginNoStoreWrite checks, through the store, that a refused
// megabyte username left no trace: no login attempt is counted for it.
func TestRefusedLoginNoStoreWrite(t *testing.T) {
	dir := t.TempDir()
	s := startSite(t, dir)
	name := strings.Repeat("m", 1<<20)
	if r := postJSON(t, s.url+"/api/token/", jsonBody("username", name, "password", "x")); r.status != 400 {
		t.Fatalf("login with a 1 MiB username: %d %s, want 400", r.status, r.body)
	}
	if fi, err := os.Stat(filepath.Join(dir, "server.db-wal")); err == nil && fi.Size() > 1<<20 {
		t.Errorf("the WAL holds %d bytes after a refused 1 MiB username", fi.Size())
	}
	n, _, err := s.store(t).LoginFailures(t.Context(), name, "127.0.0.1", time.Now().Add(-time.Hour))
	if err != nil || n != 0 {
		t.Errorf("login attempts counted for the refused username: %d, %v; want 0", n, err)
	}
}
