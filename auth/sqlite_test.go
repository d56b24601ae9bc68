package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/remuda/remuda/auth/internal/testkit"
	"github.com/remuda/remuda/internal/proctest"
)

// TestMain lets the test binary impersonate a worker process opening the
// SQLite store (sqliteChild), and fails the run if a process it started
// outlived the tests.
func TestMain(m *testing.M) {
	testkit.RunChild(envSQLiteChild, sqliteChild)
	code := m.Run()
	if left := proctest.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "processes outlived the tests: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// envSQLiteChild, set to a database path, makes the test binary a child of
// TestSQLiteProcesses.
const envSQLiteChild = "REMUDA_TEST_SQLITE_CHILD"

// sqliteChildJTI is the refresh token every child adds and consumes.
const sqliteChildJTI = "multi-process"

// sqliteChild is a child of TestSQLiteProcesses. It prints "ready", waits
// for its stdin to close (the parent closes every child's at once), opens
// the database at path, adds and consumes sqliteChildJTI once, and prints
// "result=<ConsumeResult> open=<duration>".
func sqliteChild(path string) error {
	fmt.Println("ready")
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		return fmt.Errorf("wait for start: %w", err)
	}
	start := time.Now()
	s, err := OpenSQLite(path)
	if err != nil {
		return err
	}
	defer s.Close()
	opened := time.Since(start)
	ctx := context.Background()
	rt := RefreshToken{JTI: sqliteChildJTI, Family: sqliteChildJTI, UserID: "1", ExpiresAt: time.Now().Add(time.Hour)}
	if err := s.AddRefresh(ctx, rt); err != nil {
		return err
	}
	res, got, err := s.ConsumeRefresh(ctx, sqliteChildJTI, time.Now())
	if err != nil {
		return err
	}
	if got.Family != sqliteChildJTI {
		return fmt.Errorf("consume: got family %q, want %q", got.Family, sqliteChildJTI)
	}
	fmt.Printf("result=%s open=%s\n", res, opened)
	return s.Close()
}

// openTestSQLite opens a new SQLite store in a temporary directory.
func openTestSQLite(t *testing.T) *SQLite {
	t.Helper()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "auth.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLiteFileMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer s.Close()
	// A write creates the -wal and -shm files, which take the database's
	// mode.
	if _, err := s.CreateUser(t.Context(), "alice", "hash", true); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	for _, name := range []string{"auth.db", "auth.db-wal", "auth.db-shm"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("stat %s: %v", name, err)
			continue
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: got mode %v, want -rw-------", name, got)
		}
	}
}

func TestSQLitePragmas(t *testing.T) {
	s := openTestSQLite(t)
	// Hold several connections of the pool at once, so the check covers
	// more than the one that migrated.
	ctx := t.Context()
	for i := range 3 {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		defer c.Close()
		tests := []struct {
			pragma, want string
		}{
			{"journal_mode", "wal"},
			{"busy_timeout", "10000"},
			{"foreign_keys", "1"},
			{"synchronous", "1"}, // NORMAL
			{"user_version", strconv.Itoa(len(sqliteSchema))},
		}
		for _, tt := range tests {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatalf("conn %d: PRAGMA %s: %v", i, tt.pragma, err)
			}
			if got != tt.want {
				t.Errorf("conn %d: PRAGMA %s = %s, want %s", i, tt.pragma, got, tt.want)
			}
		}
	}
}

// TestSQLiteOpenWaitsForWALSwitch holds the write lock of a new database,
// as a process racing to switch it to WAL does. The switch takes a read
// lock, then asks for the write lock; SQLite fails that upgrade with
// SQLITE_BUSY at once, without waiting (two readers waiting to write would
// wait for each other forever). OpenSQLite must retry until the lock is
// released.
func TestSQLiteOpenWaitsForWALSwitch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	ctx := t.Context()
	other, err := sql.Open("sqlite", path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master").Scan(&n); err != nil {
		t.Fatal(err)
	}
	const hold = 200 * time.Millisecond
	time.AfterFunc(hold, func() { tx.Rollback() })

	start := time.Now()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite while another connection holds the write lock: %v", err)
	}
	defer s.Close()
	if took := time.Since(start); took < hold {
		t.Errorf("OpenSQLite took %v, want at least the %v the other connection held its lock", took, hold)
	}
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode: got %q, %v; want wal", mode, err)
	}
}

func TestSQLiteNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if _, err := s.db.ExecContext(t.Context(), "PRAGMA user_version = 99"); err != nil {
		t.Fatalf("set user_version: %v", err)
	}
	s.Close()
	s, err = OpenSQLite(path)
	if err == nil {
		s.Close()
		t.Fatal("OpenSQLite of a version 99 database: got no error")
	}
	if !strings.Contains(err.Error(), "schema version 99") {
		t.Errorf("OpenSQLite of a version 99 database: got error %q, want it to name schema version 99", err)
	}
}

func TestSQLitePathNeedsEscaping(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir%20with?odd#chars")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "auth?.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite(%q): %v", path, err)
	}
	defer s.Close()
	if _, err := s.CreateUser(t.Context(), "alice", "hash", true); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := "auth?.db auth?.db-shm auth?.db-wal"; strings.Join(names, " ") != want {
		t.Errorf("files in %q: got %q, want %q", dir, names, want)
	}
}

// TestSQLiteProcesses starts 6 processes that open one new database at the
// same moment (racing to create the file, switch it to WAL and migrate
// it), then each add and consume the same refresh token once: exactly one
// may consume it.
func TestSQLiteProcesses(t *testing.T) {
	const n = 6
	path := filepath.Join(t.TempDir(), "auth.db")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	children := testkit.StartChildren(t, ctx, n, envSQLiteChild+"="+path)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("database exists before the children open it: %v", err)
	}

	start := time.Now()
	for _, c := range children {
		c.Stdin.Close()
	}
	results := map[string]int{}
	for i, c := range children {
		out, _ := io.ReadAll(c.Stdout)
		err := c.Cmd.Wait()
		if err != nil {
			t.Errorf("child %d: %v; stderr: %s", i, err, c.Stderr.String())
			continue
		}
		res, open, ok := strings.Cut(strings.TrimSpace(string(out)), " ")
		res, ok1 := strings.CutPrefix(res, "result=")
		open, ok2 := strings.CutPrefix(open, "open=")
		if !ok || !ok1 || !ok2 {
			t.Errorf("child %d: got output %q, want result=<result> open=<duration>", i, out)
			continue
		}
		t.Logf("child %d: %s in OpenSQLite, %s", i, open, res)
		results[res]++
	}
	t.Logf("%d processes opened, migrated, added and consumed in %s", n, time.Since(start))
	if results["ConsumeOK"] != 1 || results["ConsumeReused"] != n-1 {
		t.Errorf("results: got %v, want 1 ConsumeOK and %d ConsumeReused", results, n-1)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode: got %v, want -rw-------", fi.Mode().Perm())
	}
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer s.Close()
	if got, err := s.RefreshState(t.Context(), sqliteChildJTI); err != nil || got != ConsumeReused {
		t.Errorf("RefreshState(%q): got %s, %v; want ConsumeReused", sqliteChildJTI, got, err)
	}
	var version int
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil || version != len(sqliteSchema) {
		t.Errorf("user_version: got %d, %v; want %d", version, err, len(sqliteSchema))
	}
}

// sqliteOneConn makes every call of s use one connection, so that a
// connection setting a test makes (a PRAGMA) holds for all of them.
func sqliteOneConn(t *testing.T, s *SQLite, pragmas ...string) {
	t.Helper()
	s.db.SetMaxOpenConns(1)
	for _, p := range pragmas {
		if _, err := s.db.ExecContext(t.Context(), "PRAGMA "+p); err != nil {
			t.Fatalf("PRAGMA %s: %v", p, err)
		}
	}
}

// sqliteFill makes s's database full: no page may be added to it
// (max_page_count), and its pages are filled up, so that any write that
// needs room fails with SQLITE_FULL, as on a full disk.
func sqliteFill(t *testing.T, s *SQLite) {
	t.Helper()
	ctx := t.Context()
	var pages int
	if err := s.db.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	sqliteOneConn(t, s, "max_page_count = "+strconv.Itoa(pages+4))
	if _, err := s.db.ExecContext(ctx, "CREATE TABLE filler (x TEXT)"); err != nil {
		t.Fatal(err)
	}
	for size := 4096; size > 0; size /= 2 {
		for {
			_, err := s.db.ExecContext(ctx, "INSERT INTO filler VALUES (?)", strings.Repeat("x", size))
			if err == nil {
				continue
			}
			var e *sqlite.Error
			if !errors.As(err, &e) || e.Code()&0xff != sqlite3.SQLITE_FULL {
				t.Fatalf("filling the database: %v, want SQLITE_FULL", err)
			}
			break
		}
	}
}

// TestSQLiteMustExist opens with MustExist a missing file, an empty file
// and a database: only the database opens, and nothing is created.
func TestSQLiteMustExist(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	if _, err := OpenSQLiteConfig(SQLiteConfig{Path: missing, MustExist: true}); !errors.Is(err, ErrNoDatabase) || !strings.Contains(err.Error(), missing) {
		t.Errorf("MustExist on a missing file: got %v, want ErrNoDatabase naming %s", err, missing)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("MustExist on a missing file created it: stat %v", err)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSQLiteConfig(SQLiteConfig{Path: empty, MustExist: true}); !errors.Is(err, ErrNoDatabase) {
		t.Errorf("MustExist on an empty file: got %v, want ErrNoDatabase", err)
	}
	db := filepath.Join(dir, "server.db")
	s, err := OpenSQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenSQLiteConfig(SQLiteConfig{Path: db, MustExist: true})
	if err != nil {
		t.Fatalf("MustExist on a database: %v", err)
	}
	s.Close()
}

// TestSQLiteFileRemoved removes the database file under an open store,
// then puts it back: the watcher reports both within its interval; while
// the file is gone every call fails with ErrUnavailable naming the path,
// and nothing creates a file at the path.
func TestSQLiteFileRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.db")
	changes := make(chan error, 10)
	s, err := OpenSQLiteConfig(SQLiteConfig{Path: path, WatchInterval: 20 * time.Millisecond, OnFileChange: func(err error) { changes <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.CreateUser(ctx, "alice", "hash", true); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dir, "kept.db")
	if err := os.Link(path, keep); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-changes:
		t.Logf("removal reported after %v: %v", time.Since(removed), err)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), path) {
			t.Errorf("OnFileChange: got %v, want ErrUnavailable naming %s", err, path)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("removal not reported within 2s")
	}
	for range 10 { // more than the pool's connections
		if _, err := s.UserByUsername(ctx, "alice"); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), path) {
			t.Fatalf("UserByUsername with the file removed: got %v, want ErrUnavailable naming %s", err, path)
		}
		if _, err := s.CreateUser(ctx, "bob", "hash", true); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("CreateUser with the file removed: got %v, want ErrUnavailable", err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file is at %s again: stat %v", path, err)
	}
	if err := os.Link(keep, path); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-changes:
		if err != nil {
			t.Errorf("OnFileChange with the file back: got %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the file's return not reported within 2s")
	}
	if _, err := s.UserByUsername(ctx, "alice"); err != nil {
		t.Errorf("UserByUsername with the file back: %v", err)
	}
	if _, err := s.UserByUsername(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob, created while the file was gone: got %v, want ErrNotFound", err)
	}
}

// TestSQLiteFileReplaced moves another database over the file of an open
// store: its calls fail with ErrUnavailable and write nothing to either.
func TestSQLiteFileReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.db")
	s, err := OpenSQLiteConfig(SQLiteConfig{Path: path, WatchInterval: -1}) // each call checks
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.CreateUser(ctx, "alice", "hash", true); err != nil {
		t.Fatal(err)
	}
	other, err := OpenSQLite(filepath.Join(dir, "restored.db"))
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	if err := os.Rename(filepath.Join(dir, "restored.db"), path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, "bob", "hash", true); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("CreateUser with the file replaced: got %v, want ErrUnavailable saying it was replaced", err)
	}
	// The file moved in, read apart from the -wal and -shm files of the
	// one it replaced, which the store still holds open.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	check := filepath.Join(t.TempDir(), "check.db")
	if err := os.WriteFile(check, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenSQLite(check)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, name := range []string{"alice", "bob"} {
		if _, err := s2.UserByUsername(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s in the database moved in: got %v, want ErrNotFound", name, err)
		}
	}
}
