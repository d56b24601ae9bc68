package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// other is the uid that plays another user: nobody on Debian.
const other = 65534

// needRoot skips a test that gives files to another user.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user (CI runs as root)")
	}
}

// victim is a file a planted symbolic link points to, with its content.
func victim(t *testing.T, dir string) (path string, check func()) {
	t.Helper()
	path = filepath.Join(dir, "victim")
	const content = "precious\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, func() {
		t.Helper()
		if b, err := os.ReadFile(path); err != nil || string(b) != content {
			t.Errorf("the symbolic link's target %s holds %q (%v), want it untouched", path, b, err)
		}
	}
}

// foreign plants a file of another user's at path, writable by everyone.
func foreign(t *testing.T, path string) (check func()) {
	t.Helper()
	const content = "planted\n"
	if err := os.WriteFile(path, []byte(content), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666) // whatever the umask
	if err := os.Chown(path, other, other); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Lstat(path)
	return func() {
		t.Helper()
		now, err := os.Lstat(path)
		b, _ := os.ReadFile(path)
		if err != nil || !os.SameFile(fi, now) || string(b) != content {
			t.Errorf("the planted file %s was written or replaced (%q, %v), want it untouched", path, b, err)
		}
	}
}

func uid(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

func TestOpenAppendRefuses(t *testing.T) {
	needRoot(t)
	for _, tt := range []struct {
		name  string
		plant func(t *testing.T, dir, path string) (check func())
		want  error
	}{
		{"symbolic link to a file", func(t *testing.T, dir, path string) func() {
			target, check := victim(t, dir)
			os.Symlink(target, path)
			return check
		}, ErrSymlink},
		{"dangling symbolic link", func(t *testing.T, dir, path string) func() {
			target := filepath.Join(dir, "would-be-created")
			os.Symlink(target, path)
			return func() {
				if _, err := os.Lstat(target); err == nil {
					t.Errorf("%s was created through the symbolic link", target)
				}
			}
		}, ErrSymlink},
		{"another user's file", func(t *testing.T, dir, path string) func() {
			check := foreign(t, path)
			os.Chmod(path, 0o644)
			return check
		}, ErrOwner},
		{"another user's file writable by everyone", func(t *testing.T, dir, path string) func() {
			return foreign(t, path)
		}, ErrOwner},
		{"our file writable by everyone", func(t *testing.T, dir, path string) func() {
			os.WriteFile(path, nil, 0o600)
			os.Chmod(path, 0o666)
			return func() {}
		}, ErrWritableByOthers},
		{"hard link to our file", func(t *testing.T, dir, path string) func() {
			target, check := victim(t, dir)
			if err := os.Link(target, path); err != nil {
				t.Fatal(err)
			}
			return check
		}, ErrHardLinked},
		{"named pipe", func(t *testing.T, dir, path string) func() {
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			return func() {}
		}, unix.ENXIO}, // no reader: refused by the non-blocking open itself
		{"directory", func(t *testing.T, dir, path string) func() {
			os.Mkdir(path, 0o700)
			return func() {}
		}, unix.EISDIR},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "access.log")
			check := tt.plant(t, dir, path)
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				var f *os.File
				f, _, err = OpenAppend(path, 0o640)
				if f != nil {
					f.Close()
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("OpenAppend blocked")
			}
			var pe *os.PathError
			if !errors.Is(err, tt.want) || !errors.As(err, &pe) || pe.Path != path {
				t.Errorf("got %v, want an error naming %s and wrapping %q", err, path, tt.want)
			}
			check()
		})
	}
}

func TestOpenAppendTakes(t *testing.T) {
	needRoot(t)
	t.Run("new file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "error.log")
		f, created, err := OpenAppend(path, 0o640)
		if err != nil || !created {
			t.Fatalf("got created %v, %v; want a new file", created, err)
		}
		f.WriteString("a\n")
		f.Close()
		fi, _ := os.Stat(path)
		if fi.Mode().Perm()&^0o640 != 0 || uid(t, path) != os.Geteuid() {
			t.Errorf("new file mode %v uid %d, want at most 0640, ours", fi.Mode(), uid(t, path))
		}
		f, created, err = OpenAppend(path, 0o640)
		if err != nil || created {
			t.Fatalf("reopen: created %v, %v; want the same file", created, err)
		}
		f.WriteString("b\n")
		f.Close()
		if b, _ := os.ReadFile(path); string(b) != "a\nb\n" {
			t.Errorf("file holds %q, want the lines appended", b)
		}
	})
	t.Run("the given owner's file (logrotate's create)", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "error.log")
		os.WriteFile(path, nil, 0o640)
		os.Chown(path, other, other)
		if _, _, err := OpenAppend(path, 0o640); !errors.Is(err, ErrOwner) {
			t.Errorf("without owners: %v, want ErrOwner", err)
		}
		f, _, err := OpenAppend(path, 0o640, other)
		if err != nil {
			t.Fatalf("with owner %d: %v", other, err)
		}
		f.Close()
	})
	t.Run("root's file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "error.log")
		os.WriteFile(path, nil, 0o640)
		f, _, err := OpenAppend(path, 0o640, other)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	})
	t.Run("/dev/null", func(t *testing.T) {
		f, created, err := OpenAppend("/dev/null", 0o640)
		if err != nil || created {
			t.Fatalf("got created %v, %v", created, err)
		}
		if _, err := f.WriteString("x\n"); err != nil {
			t.Error(err)
		}
		f.Close()
	})
}

func TestWriteReplace(t *testing.T) {
	needRoot(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "server.pid")

	// Plants at the old fixed temporary name, at path itself, and at the
	// first two random names WriteReplace will try.
	target, untouched := victim(t, dir)
	os.Symlink(target, path)
	os.Symlink(target, path+".tmp")
	names := []string{filepath.Join(dir, ".server.pid.one.tmp"), filepath.Join(dir, ".server.pid.two.tmp"), filepath.Join(dir, ".server.pid.three.tmp")}
	os.Symlink(target, names[0])
	plantedTwo := foreign(t, names[1])
	defer func(f func(string) string) { tempName = f }(tempName)
	var tried []string
	tempName = func(prefix string) string {
		if prefix != filepath.Join(dir, ".server.pid.") {
			t.Errorf("temporary prefix %q, want one in the pidfile's directory", prefix)
		}
		n := names[len(tried)]
		tried = append(tried, n)
		return n
	}

	if err := WriteReplace(path, []byte("42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	untouched()
	plantedTwo()
	if len(tried) != 3 {
		t.Errorf("tried %v, want the third name after two taken ones", tried)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 || uid(t, path) != os.Geteuid() {
		t.Fatalf("%s: %v %v uid %d, want a regular file of ours, mode 0644 (umask 077)", path, fi.Mode(), err, uid(t, path))
	}
	if b, _ := os.ReadFile(path); string(b) != "42\n" {
		t.Errorf("%s holds %q", path, b)
	}
	if _, err := os.Lstat(names[2]); err == nil {
		t.Errorf("temporary %s left behind", names[2])
	}
	if fi, err := os.Lstat(path + ".tmp"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s.tmp: %v, want the planted link left as it was", path, err)
	}

	// Another user's file at path is replaced too, by a file of ours.
	tempName = func(prefix string) string { return prefix + "x.tmp" }
	os.Remove(path)
	foreign(t, path)
	before, _ := os.Lstat(path)
	if err := WriteReplace(path, []byte("43\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Lstat(path)
	if os.SameFile(before, after) || uid(t, path) != os.Geteuid() || after.Mode().Perm() != 0o644 {
		t.Errorf("over another user's file: same file %v, uid %d, mode %v; want a new file of ours, 0644",
			os.SameFile(before, after), uid(t, path), after.Mode())
	}
}

func TestWriteReplaceRefusesDirectory(t *testing.T) {
	needRoot(t)
	for _, tt := range []struct {
		name  string
		mode  os.FileMode
		owner int
		ok    bool
	}{
		{"ours", 0o755, 0, true},
		{"sticky, writable by everyone (/tmp)", 0o777 | os.ModeSticky, 0, true},
		{"writable by everyone", 0o777, 0, false},
		{"another user's", 0o755, other, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			os.Mkdir(dir, 0o700)
			os.Chmod(dir, tt.mode)
			os.Chown(dir, tt.owner, tt.owner)
			path := filepath.Join(dir, "server.pid")
			err := WriteReplace(path, []byte("1\n"), 0o644)
			if tt.ok && err != nil || !tt.ok && !errors.Is(err, ErrUnsafeDir) {
				t.Errorf("got %v, want ok %v (ErrUnsafeDir otherwise)", err, tt.ok)
			}
			if _, serr := os.Lstat(path); tt.ok != (serr == nil) {
				t.Errorf("file written: %v, want %v", serr == nil, tt.ok)
			}
		})
	}
}

func TestRemoveOwn(t *testing.T) {
	needRoot(t)
	data := []byte("42\n")
	for _, tt := range []struct {
		name    string
		plant   func(t *testing.T, dir, path string) (check func())
		removed bool
	}{
		{"ours", func(t *testing.T, dir, path string) func() {
			os.WriteFile(path, data, 0o644)
			return func() {}
		}, true},
		{"ours, another pid", func(t *testing.T, dir, path string) func() {
			os.WriteFile(path, []byte("43\n"), 0o644)
			return func() {}
		}, false},
		{"another user's with our pid", func(t *testing.T, dir, path string) func() {
			os.WriteFile(path, data, 0o644)
			os.Chown(path, other, other)
			return func() {}
		}, false},
		{"a symbolic link to a file with our pid", func(t *testing.T, dir, path string) func() {
			target := filepath.Join(dir, "target")
			os.WriteFile(target, data, 0o644)
			os.Symlink(target, path)
			return func() {
				if _, err := os.Stat(target); err != nil {
					t.Errorf("target removed: %v", err)
				}
			}
		}, false},
		{"none", func(t *testing.T, dir, path string) func() { return func() {} }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "server.pid")
			check := tt.plant(t, dir, path)
			removed, err := RemoveOwn(path, data)
			if removed != tt.removed || err != nil {
				t.Errorf("got removed %v, %v; want %v", removed, err, tt.removed)
			}
			_, serr := os.Lstat(path)
			if exists := serr == nil; exists == tt.removed && tt.name != "none" {
				t.Errorf("file still there: %v, want %v", exists, !tt.removed)
			}
			check()
		})
	}
}
