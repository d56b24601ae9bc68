package auth_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/auth/internal/storetest"
)

// The tests of this file run package storetest's helpers on SQLite, and
// so are outside package auth (storetest imports it); export_test.go lends
// them package auth's internals.

func TestSQLiteStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) auth.Store { return auth.OpenTestSQLite(t) })
	storetest.RunFaults(t, func(t *testing.T) (auth.Store, storetest.Faults) {
		s := auth.OpenTestSQLite(t)
		return s, sqliteFaults{s}
	})
}

// sqliteFaults fails inserts with a trigger. SQLite's RAISE gives a
// constraint error, not one of a full disk: the tests of sqliteError's
// classes make those (TestSQLiteFaults).
type sqliteFaults struct{ s *auth.SQLite }

func (f sqliteFaults) FailRefreshInsert(t *testing.T, jti string) {
	t.Helper()
	_, err := auth.SQLiteDB(f.s).ExecContext(t.Context(), `CREATE TRIGGER injected_fault BEFORE INSERT ON refresh_tokens
		WHEN NEW.jti = '`+jti+`' BEGIN SELECT RAISE(ABORT, 'injected fault'); END`)
	if err != nil {
		t.Fatal(err)
	}
}

func (f sqliteFaults) Heal(t *testing.T) {
	t.Helper()
	if _, err := auth.SQLiteDB(f.s).ExecContext(t.Context(), `DROP TRIGGER injected_fault`); err != nil {
		t.Fatal(err)
	}
}

func TestSQLiteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	ctx := t.Context()
	s, err := auth.OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	u, err := s.CreateUser(ctx, "alice", "hash", true)
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	storetest.Add(t, s, "consumed", "fam")
	storetest.Add(t, s, "outstanding", "fam")
	storetest.Consume(t, s, "consumed", auth.ConsumeOK)
	storetest.Fail(t, s, "alice", "192.0.2.1", storetest.Now)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = auth.OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite again: %v", err)
	}
	defer s.Close()
	if got, err := s.UserByUsername(ctx, "alice"); err != nil || got.ID != u.ID {
		t.Errorf("UserByUsername(alice) after reopen: got %+v, %v; want id %s", got, err, u.ID)
	}
	storetest.State(t, s, "consumed", auth.ConsumeReused)
	storetest.State(t, s, "outstanding", auth.ConsumeOK)
	if n, _, err := s.LoginFailures(ctx, "alice", "192.0.2.1", storetest.Now); err != nil || n != 1 {
		t.Errorf("LoginFailures after reopen: got %d, %v; want 1", n, err)
	}
	if _, err := s.CreateUser(ctx, "alice", "hash", true); !errors.Is(err, auth.ErrUserExists) {
		t.Errorf("CreateUser(alice) after reopen: got error %v, want auth.ErrUserExists", err)
	}
}

// TestSQLiteRecords checks what the rows hold where the Store interface
// cannot tell.
func TestSQLiteRecords(t *testing.T) {
	s := auth.OpenTestSQLite(t)
	ctx := t.Context()
	column := func(query string, args ...any) (v *int64) {
		t.Helper()
		if err := auth.SQLiteDB(s).QueryRowContext(ctx, query, args...).Scan(&v); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return v
	}

	t.Run("blacklist keeps the first time", func(t *testing.T) {
		storetest.Add(t, s, "bl", "bl")
		for _, at := range []time.Time{storetest.Now, storetest.Now.Add(time.Hour)} {
			if err := s.Blacklist(ctx, "bl", at); err != nil {
				t.Fatalf("Blacklist: %v", err)
			}
		}
		if got := column(`SELECT blacklisted_at FROM refresh_tokens WHERE jti = 'bl'`); got == nil || *got != storetest.Now.Unix() {
			t.Errorf("blacklisted_at: got %v, want %d", got, storetest.Now.Unix())
		}
	})
	t.Run("consume records the time", func(t *testing.T) {
		storetest.Add(t, s, "c", "c")
		storetest.Consume(t, s, "c", auth.ConsumeOK)
		storetest.Consume(t, s, "c", auth.ConsumeReused) // a replay changes nothing
		if got := column(`SELECT consumed_at FROM refresh_tokens WHERE jti = 'c'`); got == nil || *got != storetest.Now.Unix() {
			t.Errorf("consumed_at: got %v, want %d", got, storetest.Now.Unix())
		}
	})
	t.Run("revoke family keeps the first time", func(t *testing.T) {
		for _, at := range []time.Time{storetest.Now, storetest.Now.Add(time.Hour)} {
			if err := s.RevokeFamily(ctx, "rf", at); err != nil {
				t.Fatalf("RevokeFamily: %v", err)
			}
		}
		if got := column(`SELECT revoked_at FROM revoked_families WHERE family = 'rf'`); got == nil || *got != storetest.Now.Unix() {
			t.Errorf("revoked_at: got %v, want %d", got, storetest.Now.Unix())
		}
	})
	t.Run("flush drops revoked families without tokens", func(t *testing.T) {
		storetest.Add(t, s, "keep", "kept-family")
		for _, fam := range []string{"kept-family", "empty-family"} {
			if err := s.RevokeFamily(ctx, fam, storetest.Now); err != nil {
				t.Fatalf("RevokeFamily(%s): %v", fam, err)
			}
		}
		if _, err := s.FlushExpired(ctx, storetest.Now); err != nil {
			t.Fatalf("FlushExpired: %v", err)
		}
		for fam, want := range map[string]int64{"kept-family": 1, "empty-family": 0, "rf": 0} {
			if got := column(`SELECT COUNT(*) FROM revoked_families WHERE family = ?`, fam); *got != want {
				t.Errorf("revoked_families rows for %s after flush: got %d, want %d", fam, *got, want)
			}
		}
	})
	t.Run("user id of a token must be decimal", func(t *testing.T) {
		for _, rt := range []auth.RefreshToken{
			{JTI: "x", Family: "x", UserID: "alice@example.com", ExpiresAt: storetest.Now},
			{JTI: "", Family: "x", UserID: "1", ExpiresAt: storetest.Now},
			{JTI: "x", Family: "", UserID: "1", ExpiresAt: storetest.Now},
		} {
			if err := s.AddRefresh(ctx, rt); err == nil {
				t.Errorf("AddRefresh(%+v): got no error", rt)
			}
		}
	})
}

// TestSQLiteFaults makes the database refuse writes as a full disk, a
// read-only database and a lock held past the busy timeout do: every
// write then fails with ErrUnavailable, and nothing is written.
func TestSQLiteFaults(t *testing.T) {
	tests := []struct {
		name   string
		inject func(t *testing.T, s *auth.SQLite) (heal func())
	}{
		{"full (SQLITE_FULL)", func(t *testing.T, s *auth.SQLite) func() { auth.SQLiteFill(t, s); return func() {} }},
		{"read-only (SQLITE_READONLY)", func(t *testing.T, s *auth.SQLite) func() {
			auth.SQLiteOneConn(t, s, "query_only = 1")
			return func() {}
		}},
		{"locked past the busy timeout (SQLITE_BUSY)", func(t *testing.T, s *auth.SQLite) func() {
			auth.SQLiteOneConn(t, s, "busy_timeout = 50")
			other, err := sql.Open("sqlite", auth.SQLitePath(s)+"?_txlock=immediate")
			if err != nil {
				t.Fatal(err)
			}
			tx, err := other.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return func() { tx.Rollback(); other.Close() }
		}},
	}
	big := func(c string) string { return strings.Repeat(c, 8000) } // more than a page: needs room
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := auth.OpenTestSQLite(t)
			ctx := t.Context()
			u, err := s.CreateUser(ctx, "alice", "hash", true)
			if err != nil {
				t.Fatal(err)
			}
			storetest.Add(t, s, "presented", "fam")
			heal := tt.inject(t, s)

			writes := []struct {
				name string
				call func() error
			}{
				{"CreateUser", func() error { _, err := s.CreateUser(ctx, big("b"), "hash", true); return err }},
				{"ReserveLogin", func() error {
					_, _, err := s.ReserveLogin(ctx, big("a"), "192.0.2.1", storetest.Now, storetest.Now.Add(-time.Hour), 5)
					return err
				}},
				{"RecordLogin", func() error {
					return s.RecordLogin(ctx, auth.Login{UserID: u.ID, At: storetest.Now, PasswordHash: big("h"),
						Refresh: auth.RefreshToken{JTI: big("j"), Family: "f", UserID: u.ID, ExpiresAt: storetest.Now}})
				}},
				{"RotateRefresh", func() error {
					_, _, err := s.RotateRefresh(ctx, auth.RefreshToken{JTI: "presented", Family: "presented", UserID: "1", ExpiresAt: storetest.Now},
						auth.RefreshToken{JTI: big("n"), UserID: "1", ExpiresAt: storetest.Now}, storetest.Now)
					return err
				}},
				{"AddRefresh", func() error {
					return s.AddRefresh(ctx, auth.RefreshToken{JTI: big("r"), Family: "f", UserID: "1", ExpiresAt: storetest.Now})
				}},
			}
			for _, w := range writes {
				err := w.call()
				if !errors.Is(err, auth.ErrUnavailable) {
					t.Errorf("%s: got error %v, want auth.ErrUnavailable", w.name, err)
				}
			}
			t.Logf("e.g. %v", writes[0].call())
			// Nothing was written.
			heal()
			auth.SQLiteDB(s).Close()
			s2, err := auth.OpenSQLite(auth.SQLitePath(s))
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if got, err := s2.UserByID(ctx, u.ID); err != nil || got.PasswordHash != "hash" || !got.LastLogin.IsZero() {
				t.Errorf("alice after the failed writes: %+v, %v; want as created", got, err)
			}
			if _, err := s2.UserByUsername(ctx, big("b")); !errors.Is(err, auth.ErrNotFound) {
				t.Errorf("the user of the failed CreateUser: got %v, want auth.ErrNotFound", err)
			}
			if n, _, err := s2.LoginFailures(ctx, big("a"), "192.0.2.1", time.Time{}); err != nil || n != 0 {
				t.Errorf("attempts after a failed ReserveLogin: %d, %v; want 0", n, err)
			}
			storetest.State(t, s2, "presented", auth.ConsumeOK)
			for _, jti := range []string{big("j"), big("n"), big("r")} {
				storetest.State(t, s2, jti, auth.ConsumeUnknown)
			}
		})
	}
}

func TestSQLiteImportRefreshTokens(t *testing.T) {
	storetest.ImportRefreshTokens(t, func(t *testing.T) storetest.Importer { return auth.OpenTestSQLite(t) })
}

// TestSQLiteRefreshAfterFailedWrite makes the database read-only during a
// refresh (storetest.RefreshAfterFailedWrite). (The store tests make the
// new token's insert fail too: storetest.RunFaults.)
func TestSQLiteRefreshAfterFailedWrite(t *testing.T) {
	s := auth.OpenTestSQLite(t)
	storetest.RefreshAfterFailedWrite(t, s,
		func(string) { auth.SQLiteOneConn(t, s, "query_only = 1") },
		func() { auth.SQLiteOneConn(t, s, "query_only = 0") })
}
