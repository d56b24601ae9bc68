package workers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// The files a server writes, each with a symbolic link and another user's
// file planted at its name: neither is followed nor taken over.

// otherUID plays another user (nobody on Debian).
const otherUID = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user (CI runs as root)")
	}
}

// plantLink plants at path a symbolic link to a new file of the test's, and
// returns a check that the file is untouched.
func plantLink(t *testing.T, path string) (untouched func()) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if b, err := os.ReadFile(target); err != nil || string(b) != "precious\n" {
			t.Errorf("the target of the link planted at %s holds %q (%v), want it untouched", path, b, err)
		}
	}
}

// plantForeign plants at path a file of another user's, writable by every
// user, and returns a check that it is untouched and still at path.
func plantForeign(t *testing.T, path string, content string) (untouched func()) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	if err := os.Chown(path, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Lstat(path)
	return func() {
		t.Helper()
		now, err := os.Lstat(path)
		b, _ := os.ReadFile(path)
		if err != nil || !os.SameFile(before, now) || string(b) != content {
			t.Errorf("the file planted at %s was written, replaced or removed (%q, %v), want it untouched", path, b, err)
		}
	}
}

// owner returns a file's uid and permission bits, without following a link.
func owner(t *testing.T, path string) (uid int, mode os.FileMode, regular bool) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid), fi.Mode().Perm(), fi.Mode().IsRegular()
}

// TestPIDFileNotFollowedNorAdopted starts masters whose pidfile, and the
// temporary name older releases wrote it through, have a symbolic link or
// another user's file planted at them: the master writes a file of its own,
// mode 0644, with its PID, and touches neither the planted file nor the
// link's target; at its stop it removes its own pidfile, and not another
// user's file put in its place.
func TestPIDFileNotFollowedNorAdopted(t *testing.T) {
	needRoot(t)
	for _, tt := range []struct {
		name  string
		plant func(t *testing.T, pidfile string) (untouched func())
	}{
		{"link at the pidfile", func(t *testing.T, pidfile string) func() { return plantLink(t, pidfile) }},
		{"another user's file at the pidfile", func(t *testing.T, pidfile string) func() {
			plantForeign(t, pidfile, "1\n")
			return func() {} // replaced, as it must be: checked below
		}},
		{"link at pidfile.tmp", func(t *testing.T, pidfile string) func() { return plantLink(t, pidfile+".tmp") }},
		{"another user's file at pidfile.tmp", func(t *testing.T, pidfile string) func() {
			return plantForeign(t, pidfile+".tmp", "1\n")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			old := syscall.Umask(0o077) // the mode must not depend on it
			pidfile := filepath.Join(t.TempDir(), "server.pid")
			untouched := tt.plant(t, pidfile)
			p, _ := prod(t, nil, "--workers", "1", "--pidfile", pidfile)
			syscall.Umask(old)
			uid, mode, regular := owner(t, pidfile)
			b, _ := os.ReadFile(pidfile)
			if !regular || uid != os.Geteuid() || mode != 0o644 || strings.TrimSpace(string(b)) != strconv.Itoa(p.Pid()) {
				t.Errorf("pidfile: regular %v, uid %d, mode %v, holding %q; want the master's own file (uid %d), 0644, holding %d",
					regular, uid, mode, b, os.Geteuid(), p.Pid())
			}
			untouched()
			p.Signal(t, syscall.SIGTERM)
			if code := p.Wait(t, 10*time.Second); code != 0 {
				t.Errorf("master exit %d, want 0", code)
			}
			if _, err := os.Lstat(pidfile); !os.IsNotExist(err) {
				t.Errorf("pidfile after the stop: %v, want it removed", err)
			}
			untouched()
		})
	}

	t.Run("another user's file put in its place is not removed", func(t *testing.T) {
		pidfile := filepath.Join(t.TempDir(), "server.pid")
		p, _ := prod(t, nil, "--workers", "1", "--pidfile", pidfile)
		os.Remove(pidfile)
		untouched := plantForeign(t, pidfile, fmt.Sprintf("%d\n", p.Pid()))
		p.Signal(t, syscall.SIGTERM)
		p.Wait(t, 10*time.Second)
		untouched()
	})

	t.Run("a directory every user can write in is refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "run")
		os.Mkdir(dir, 0o700)
		os.Chmod(dir, 0o777)
		pidfile := filepath.Join(dir, "server.pid")
		p := start(t, nil, "run", "--prod", "--bind", proctest.FreeAddr(t), "--workers", "1", "--pidfile", pidfile)
		if code := p.Wait(t, 10*time.Second); code == 0 {
			t.Errorf("master exit 0, want a failure")
		}
		if got := p.Find(func(l proctest.Line) bool {
			return strings.Contains(l.Raw, dir) && strings.Contains(l.Raw, "another user can write in")
		}); len(got) == 0 {
			t.Errorf("no error naming %s", dir)
		}
		if _, err := os.Lstat(pidfile); !os.IsNotExist(err) {
			t.Errorf("pidfile written: %v", err)
		}
	})
}

// TestLogFilesNotFollowedNorAdopted plants a symbolic link or another
// user's file at the error log's and the access log's paths: the server
// refuses to start, naming the path, and writes nothing there.
func TestLogFilesNotFollowedNorAdopted(t *testing.T) {
	needRoot(t)
	for _, log := range []string{"--error-log", "--access-log"} {
		for _, kind := range []string{"link", "another user's file"} {
			t.Run(log+", "+kind, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "server.log")
				var untouched func()
				if kind == "link" {
					untouched = plantLink(t, path)
				} else {
					untouched = plantForeign(t, path, "planted\n")
				}
				p := start(t, nil, "run", "--prod", "--bind", proctest.FreeAddr(t), "--workers", "1", log, path)
				if code := p.Wait(t, 15*time.Second); code == 0 {
					t.Errorf("exit 0, want a failure")
				}
				want := "symbolic link"
				if kind != "link" {
					want = "owned by another user"
				}
				if got := p.Find(func(l proctest.Line) bool { return strings.Contains(l.Raw, path) && strings.Contains(l.Raw, want) }); len(got) == 0 {
					t.Errorf("no error naming %s and saying %q", path, want)
				}
				untouched()
			})
		}
	}
}

// TestReopenRefusesPlantedLogs rotates the logs as logrotate does and plants
// a symbolic link at the error log's path and another user's file at the
// access log's before USR1: the master and the workers refuse both, say so,
// and go on writing to the files they had.
func TestReopenRefusesPlantedLogs(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	errorLog, accessLog := filepath.Join(dir, "error.log"), filepath.Join(dir, "access.log")
	addr := proctest.FreeAddr(t)
	url := "http://" + addr
	p := start(t, nil, "run", "--prod", "--bind", addr, "--workers", "2", "--error-log", errorLog, "--access-log", accessLog)
	if !proctest.WaitUntil(15*time.Second, func() bool {
		b, _ := os.ReadFile(errorLog)
		return bytes.Contains(b, []byte(`"msg":"generation ready"`))
	}) {
		t.Fatalf("no \"generation ready\" in %s", errorLog)
	}
	proctest.Get(url+"/healthz", 2*time.Second)
	os.Rename(errorLog, errorLog+".1")
	os.Rename(accessLog, accessLog+".1")
	linkUntouched := plantLink(t, errorLog)
	fileUntouched := plantForeign(t, accessLog, "planted\n")
	p.Signal(t, syscall.SIGUSR1)
	// Every process says why, in the error log it still has.
	var refused []map[string]any
	proctest.WaitUntil(5*time.Second, func() bool {
		refused = refused[:0]
		b, _ := os.ReadFile(errorLog + ".1")
		for line := range bytes.Lines(b) {
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "reopen logs" {
				refused = append(refused, m)
			}
		}
		return len(refused) >= 3
	})
	if len(refused) != 3 {
		t.Errorf("%d \"reopen logs\" errors, want 3 (the master, 2 workers)", len(refused))
	}
	for _, m := range refused {
		e, _ := m["error"].(string)
		if !strings.Contains(e, errorLog+": is a symbolic link") {
			t.Errorf("reopen error %q does not refuse the link at %s", e, errorLog)
		}
		if m["pid"] != float64(p.Pid()) && !strings.Contains(e, accessLog+": is owned by another user") {
			t.Errorf("a worker's reopen error %q does not refuse the file at %s", e, accessLog)
		}
	}
	proctest.Get(url+"/healthz", 2*time.Second)
	p.Signal(t, syscall.SIGTERM)
	p.Wait(t, 10*time.Second)
	linkUntouched()
	fileUntouched()
	if n := requests(accessLog + ".1"); n != 2 {
		t.Errorf("%d access lines in the file the workers had, want 2: the one after USR1 too", n)
	}
}

// requests counts the access lines of a log file.
func requests(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte(`"msg":"request"`))
}

// TestLogsWithUser runs the master as root with --user nobody, its logs in
// a directory of nobody's, as the shipped logrotate config has them: the
// error log the master creates as root is given to nobody, the access log
// the workers create is nobody's, and after logrotate moved both and made
// new ones of nobody's (its `create 0640 nobody nogroup`), USR1 reopens them
// in the master and the workers, which write there.
func TestLogsWithUser(t *testing.T) {
	needRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	// A copy of the test binary that nobody may execute.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir makes both 0700
	bin := filepath.Join(dir, "app")
	proctest.CopyBinary(t, bin)
	logs := filepath.Join(dir, "log")
	os.Mkdir(logs, 0o755)
	os.Chown(logs, uid, gid)
	errorLog, accessLog := filepath.Join(logs, "error.log"), filepath.Join(logs, "access.log")
	addr := proctest.FreeAddr(t)
	p := startBinary(t, bin, nil, "run", "--prod", "--bind", addr, "--workers", "2", "--user", "nobody",
		"--error-log", errorLog, "--access-log", accessLog)
	if !proctest.WaitUntil(15*time.Second, func() bool {
		b, _ := os.ReadFile(errorLog)
		return bytes.Contains(b, []byte(`"msg":"generation ready"`))
	}) {
		t.Fatalf("no \"generation ready\" in %s", errorLog)
	}
	proctest.Get("http://"+addr+"/healthz", 2*time.Second)
	for _, f := range []string{errorLog, accessLog} {
		if !proctest.WaitUntil(2*time.Second, func() bool { _, err := os.Stat(f); return err == nil }) {
			t.Fatalf("%s not created", f)
		}
		if got, _, _ := owner(t, f); got != uid {
			t.Errorf("%s owned by uid %d, want nobody's %d", f, got, uid)
		}
	}
	// logrotate: move, create, signal.
	for _, f := range []string{errorLog, accessLog} {
		os.Rename(f, f+".1")
		os.WriteFile(f, nil, 0o640)
		os.Chown(f, uid, gid)
	}
	p.Signal(t, syscall.SIGUSR1)
	if !proctest.WaitUntil(5*time.Second, func() bool {
		b, _ := os.ReadFile(errorLog)
		// The master reopens, then each of the 2 workers.
		return bytes.Count(b, []byte(`"msg":"logs reopened"`)) == 3
	}) {
		t.Errorf("no \"logs reopened\" of the master and its 2 workers in the new %s", errorLog)
	}
	for range 6 {
		proctest.Get("http://"+addr+"/healthz", 2*time.Second)
	}
	p.Signal(t, syscall.SIGTERM)
	p.Wait(t, 10*time.Second)
	for _, f := range []string{errorLog, errorLog + ".1"} {
		if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(`"msg":"reopen logs"`)) {
			t.Errorf("%s: a reopen failed: %s", f, b)
		}
	}
	if before, after := requests(accessLog+".1"), requests(accessLog); before != 1 || after != 6 {
		t.Errorf("access lines: %d in the rotated file, %d in the new one; want 1 and 6", before, after)
	}
}

// TestUnixSocketNotFollowedNorAdopted plants a symbolic link or another
// user's file at a unix socket's path: the master refuses to bind there,
// naming the path, and leaves what it found as it was.
func TestUnixSocketNotFollowedNorAdopted(t *testing.T) {
	needRoot(t)
	for _, kind := range []string{"link", "another user's file"} {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "server.sock")
			var untouched func()
			if kind == "link" {
				untouched = plantLink(t, path)
			} else {
				untouched = plantForeign(t, path, "planted\n")
			}
			p := start(t, nil, "run", "--prod", "--bind", "unix:"+path, "--workers", "1")
			if code := p.Wait(t, 10*time.Second); code == 0 {
				t.Errorf("exit 0, want a failure")
			}
			if got := p.Find(func(l proctest.Line) bool { return strings.Contains(l.Raw, path+" exists and is not a socket") }); len(got) == 0 {
				t.Errorf("no error naming %s", path)
			}
			untouched()
		})
	}
}
