package server

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/remuda/remuda/internal/safefile"
)

// TestLogFilesRefusePlanted plants a symbolic link and another user's file
// at each log path, for each way the server opens it: the master's first
// open and its USR1 reopen of the error log, a worker's reopen of it, and a
// worker's open and reopen of the access log. Each refuses with an error
// naming the path, and writes nothing through the link nor into the file.
func TestLogFilesRefusePlanted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user (CI runs as root)")
	}
	// Each opener returns the error of the open (or reopen) of path; a
	// reopen follows logrotate's move of the file the server had.
	openers := map[string]func(t *testing.T, path string, plant func()) error{
		"error log, master's open": func(t *testing.T, path string, plant func()) error {
			plant()
			_, _, err := newErrorLog(Config{Prod: true, LogLevel: "info", ErrorLog: path})
			return err
		},
		"error log, master's reopen": func(t *testing.T, path string, plant func()) error {
			_, out, err := newErrorLog(Config{Prod: true, LogLevel: "info", ErrorLog: path})
			if err != nil {
				t.Fatal(err)
			}
			os.Rename(path, path+".1")
			plant()
			return out.Reopen()
		},
		"error log, worker's reopen": func(t *testing.T, path string, plant func()) error {
			f, _, err := safefile.OpenAppend(path, 0o640) // the master's
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			_, reopen := workerOutput(Config{Prod: true, ErrorLog: path}, f)
			os.Rename(path, path+".1")
			plant()
			return reopen()
		},
		"access log, open": func(t *testing.T, path string, plant func()) error {
			plant()
			_, _, err := accessLogTo(Config{Prod: true, AccessLog: path}, nil)
			return err
		},
		"access log, reopen": func(t *testing.T, path string, plant func()) error {
			_, reopen, err := accessLogTo(Config{Prod: true, AccessLog: path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			os.Rename(path, path+".1")
			plant()
			return reopen()
		},
	}
	for name, open := range openers {
		for _, kind := range []string{"link", "another user's file"} {
			t.Run(name+", "+kind, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "server.log")
				target := filepath.Join(dir, "victim")
				const content = "precious\n"
				var want error
				plant := func() {
					if kind == "link" {
						os.WriteFile(target, []byte(content), 0o600)
						os.Symlink(target, path)
						want = safefile.ErrSymlink
						return
					}
					os.WriteFile(path, []byte(content), 0o666)
					os.Chmod(path, 0o666)
					os.Chown(path, 65534, 65534)
					target = path
					want = safefile.ErrOwner
				}
				err := open(t, path, plant)
				if !errors.Is(err, want) || !strings.Contains(err.Error(), path) {
					t.Errorf("got %v, want an error naming %s that wraps %q", err, path, want)
				}
				if b, _ := os.ReadFile(target); string(b) != content {
					t.Errorf("%s holds %q, want it untouched", target, b)
				}
				if fi, err := os.Lstat(path); err != nil || kind == "link" && fi.Mode()&os.ModeSymlink == 0 ||
					kind != "link" && fi.Sys().(*syscall.Stat_t).Uid != 65534 {
					t.Errorf("what was planted at %s was replaced (%v)", path, err)
				}
			})
		}
	}
}
