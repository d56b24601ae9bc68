package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWorkerOutput checks where a worker's log lines go: the file its
// master passed, one line per write, and after USR1 the file at the error
// log's path; stderr when the master passed none.
func TestWorkerOutput(t *testing.T) {
	t.Run("no file from the master", func(t *testing.T) {
		out, reopen := workerOutput(Config{ErrorLog: "error.log"}, nil)
		if out == nil || reopen != nil {
			t.Errorf("got output %v and reopen %v, want stderr and no reopen", out, reopen != nil)
		}
	})
	t.Run("stderr", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "master-stderr")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out, reopen := workerOutput(Config{ErrorLog: "-"}, f)
		if reopen != nil {
			t.Error(`error log "-": a reopen, want none (the master's stderr is not reopened)`)
		}
		out.Write([]byte("{\"msg\":\"a\"}\n"))
		if b, _ := os.ReadFile(path); string(b) != "{\"msg\":\"a\"}\n" {
			t.Errorf("the master's stderr holds %q, want the worker's line", b)
		}
	})
	t.Run("file reopened at its path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "error.log")
		// What the master passes: its own open file.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Prod: true, LogLevel: "info", ErrorLog: path, AccessLog: "-"}
		out, reopen := workerOutput(cfg, f)
		if reopen == nil {
			t.Fatal("error log at a path: no reopen, want one")
		}
		log, err := buildLogger(cfg, out)
		if err != nil {
			t.Fatal(err)
		}
		access, reopenAccess, err := accessLogTo(cfg, out)
		if err != nil || reopenAccess != nil {
			t.Fatalf(`access log "-": reopen %v, error %v; want none`, reopenAccess != nil, err)
		}
		log.Info("before")
		access.Info("request")
		os.Rename(path, path+".1") // logrotate
		if err := reopen(); err != nil {
			t.Fatal(err)
		}
		log.Info("after")
		access.Info("request after")

		msgs := func(path string) []string {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for line := range bytes.Lines(b) {
				var m map[string]any
				if err := json.Unmarshal(line, &m); err != nil {
					t.Errorf("%s: not one JSON object: %q", path, line)
				}
				got = append(got, m["msg"].(string))
			}
			return got
		}
		if got := strings.Join(msgs(path+".1"), ","); got != "before,request" {
			t.Errorf("rotated file holds %s, want before,request", got)
		}
		if got := strings.Join(msgs(path), ","); got != "after,request after" {
			t.Errorf("reopened file holds %s, want after,request after", got)
		}
	})
}

// TestErrorLogFile checks that the master's error log names the file it
// writes to, the new one after a reopen: workers started later inherit it.
func TestErrorLogFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	log, out, err := newErrorLog(Config{Prod: true, LogLevel: "info", ErrorLog: path})
	if err != nil {
		t.Fatal(err)
	}
	first := out.File()
	log.Info("one")
	os.Rename(path, path+".1")
	if err := out.Reopen(); err != nil {
		t.Fatal(err)
	}
	if out.File() == first {
		t.Fatal("File after Reopen: the old file, want the new one")
	}
	st, err := out.File().Stat()
	if err != nil {
		t.Fatal(err)
	}
	if onDisk, err := os.Stat(path); err != nil || !os.SameFile(st, onDisk) {
		t.Errorf("File after Reopen is not the file at %s (%v)", path, err)
	}

	_, out, err = newErrorLog(Config{Prod: true, LogLevel: "info", ErrorLog: "-"})
	if err != nil {
		t.Fatal(err)
	}
	if out.File() != os.Stderr || out.Reopen != nil {
		t.Errorf(`error log "-": file %v, reopen %v; want stderr, none`, out.File().Name(), out.Reopen != nil)
	}
}

func TestReopenAll(t *testing.T) {
	if reopenAll(nil, nil) != nil {
		t.Error("reopenAll of nils: a func, want nil")
	}
	var calls []string
	errA := errors.New("a failed")
	reopen := reopenAll(
		func() error { calls = append(calls, "a"); return errA },
		nil,
		func() error { calls = append(calls, "b"); return nil },
	)
	if err := reopen(); !errors.Is(err, errA) {
		t.Errorf("error %v, want one wrapping %v", err, errA)
	}
	if got := strings.Join(calls, ","); got != "a,b" {
		t.Errorf("calls %s, want a,b: every reopen, even after one failed", got)
	}
}
