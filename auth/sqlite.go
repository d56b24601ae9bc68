package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"modernc.org/sqlite" // registers the pure-Go "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// LoginFailureRetention is how long FlushExpired keeps failed-login
// records: those older than now - LoginFailureRetention go. A throttling
// window longer than this would be cut short by a flush.
const LoginFailureRetention = 24 * time.Hour

// sqliteBusyTimeout is how long (ms) a connection waits for another
// connection's, or another process's, write lock before SQLITE_BUSY.
const sqliteBusyTimeout = 10000

// sqliteMaxConns is the most connections a SQLite store opens. SQLite
// lets one connection write at a time; another that wants to write waits
// in SQLite's busy handler, which polls the lock with sleeps of up to 100
// ms. Without a cap, a burst of 48 logins opened 48 connections in one
// worker, and their writes, polling, took 2 s to get through (a third of
// the logins then waited past MaxPasswordWait); with 4, the calls beyond
// them queue in database/sql, which hands a connection on the moment it
// is free, and the burst is served in about 1 s. Reads do not wait for
// writes (WAL), and a worker (one P by default) does not run more than a
// few at once; each connection also keeps a page cache of its own (up to
// 2 MiB).
const sqliteMaxConns = 4

// sqliteSchema holds the schema migrations: sqliteSchema[i] takes a
// database from version i (PRAGMA user_version) to version i+1. Append a new
// step for a new version; never edit a released one.
var sqliteSchema = [][]string{
	// Version 1. Timestamps are integer Unix seconds (UTC). Only jtis and
	// password hashes are stored, never a raw token or a clear password.
	// refresh_tokens has no foreign key to users: a blacklist entry
	// survives the deletion of its user, as in simplejwt.
	{
		`CREATE TABLE users (
			id          INTEGER PRIMARY KEY AUTOINCREMENT,
			username    TEXT    NOT NULL UNIQUE,
			password    TEXT    NOT NULL,
			is_active   INTEGER NOT NULL,
			last_login  INTEGER,
			date_joined INTEGER NOT NULL
		)`,
		`CREATE TABLE refresh_tokens (
			jti            TEXT    PRIMARY KEY,
			family         TEXT    NOT NULL,
			user_id        INTEGER NOT NULL,
			created_at     INTEGER NOT NULL,
			expires_at     INTEGER NOT NULL,
			consumed_at    INTEGER,
			blacklisted_at INTEGER
		)`,
		`CREATE INDEX refresh_tokens_family ON refresh_tokens (family)`,
		`CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at)`,
		`CREATE TABLE revoked_families (
			family     TEXT    PRIMARY KEY,
			revoked_at INTEGER NOT NULL
		)`,
		`CREATE TABLE login_failures (
			username TEXT    NOT NULL,
			addr     TEXT    NOT NULL,
			at       INTEGER NOT NULL
		)`,
		`CREATE INDEX login_failures_username_addr_at ON login_failures (username, addr, at)`,
	},
	// Version 2: when a user's password last changed, so that tokens issued
	// before it stop working (simplejwt's CHECK_REVOKE_TOKEN, without a
	// password hash in every token).
	{
		`ALTER TABLE users ADD COLUMN password_changed_at INTEGER`,
	},
	// Version 3: login_failures rows get an id, so that a login attempt
	// can be counted before its password is checked (ReserveLogin) and
	// then forgotten by id: the attempts up to a successful one
	// (RecordLogin), or one that was never checked (ReleaseLogin). SQLite
	// cannot add a primary key to a table: the table is rebuilt, its rows
	// kept. AUTOINCREMENT, so that an id is never given twice.
	{
		`CREATE TABLE login_failures_v3 (
			id       INTEGER PRIMARY KEY AUTOINCREMENT,
			username TEXT    NOT NULL,
			addr     TEXT    NOT NULL,
			at       INTEGER NOT NULL
		)`,
		`INSERT INTO login_failures_v3 (username, addr, at) SELECT username, addr, at FROM login_failures ORDER BY at`,
		`DROP TABLE login_failures`,
		`ALTER TABLE login_failures_v3 RENAME TO login_failures`,
		`CREATE INDEX login_failures_username_addr_at ON login_failures (username, addr, at)`,
	},
}

// SQLite is a Store in one SQLite database file, shared by the worker
// processes of one host. It is safe for concurrent use by goroutines and
// by processes that open the same file.
//
// Times are kept to the second (Unix seconds, UTC); a time passed in is
// truncated to its second.
//
// Every write is one statement (atomic on its own) or runs in a
// transaction that takes the write lock when it begins (BEGIN IMMEDIATE),
// so two processes never deadlock upgrading a read lock; a writer waits up
// to 10 s for another's lock.
//
// # Faults
//
// A write the database cannot take now fails with an error matching
// ErrUnavailable, and writes nothing: a disk full (SQLITE_FULL), an I/O
// error, a read-only file or database (SQLITE_READONLY, SQLITE_PERM), a
// file that cannot be opened, a lock held past the busy timeout
// (SQLITE_BUSY, SQLITE_LOCKED). A transaction that fails is rolled back.
//
// # The file under a running store
//
// The store keeps the device and inode of the file it opened. Before
// every call, and every SQLiteConfig.WatchInterval while open, it checks
// that its path still names that file. Once the file is removed, or
// replaced by another (a backup moved into place, a new empty database),
// every call fails with an error matching ErrUnavailable that names the
// path, and writes nothing: without the check, writes would go on into
// the removed file, where nothing else can read them, or into a file that
// is no longer the database. SQLiteConfig.OnFileChange hears of it at
// once. The store does not reopen its path by itself: a new process (a
// server's new workers after a HUP) opens what the path then names. If
// the same file comes back at the path (a hard link restored), the store
// serves again. Its -wal and -shm files are not watched.
type SQLite struct {
	db   *sql.DB
	path string // absolute
	file sqliteFile

	mu       sync.Mutex // held while lost changes and its hook runs
	lost     error      // non-nil while path does not name file
	onChange func(error)

	stop    chan struct{} // closed by Close: ends the watcher
	stopped sync.WaitGroup
	closing sync.Once
}

var _ Store = (*SQLite)(nil)

// SQLiteConfig configures OpenSQLiteConfig. Its zero value (with a Path)
// creates a missing database, as OpenSQLite does.
type SQLiteConfig struct {
	// Path is the database file.
	Path string
	// MustExist refuses a database that was never created: a missing
	// file, or one without Remuda's schema (an empty file), is an error
	// matching ErrNoDatabase, and nothing is created. A production server
	// opens its database so, so that a database removed under it is never
	// replaced by an empty one: the database is created once, by `server
	// migrate`, `createuser` or `importusers`. If false, a missing file is
	// created (mode 0600) and any database gets the schema.
	MustExist bool
	// WatchInterval is how often an open store checks, between calls,
	// that Path still names the file it opened (see SQLite). If zero,
	// DefaultSQLiteWatchInterval is used; negative turns the timer off
	// (each call still checks).
	WatchInterval time.Duration
	// OnFileChange, if non-nil, is called when the store finds its file
	// removed or replaced, with the error its calls now return (matching
	// ErrUnavailable and naming the path), and with nil if the file comes
	// back. It runs on the goroutine that found out: the watcher's, or a
	// caller's; calls are never concurrent.
	OnFileChange func(err error)
}

// DefaultSQLiteWatchInterval is SQLiteConfig.WatchInterval's default: a
// database file removed or replaced under an idle server is reported
// within a second.
const DefaultSQLiteWatchInterval = time.Second

// ErrNoDatabase is the error of OpenSQLiteConfig with MustExist for a
// database that was never created.
var ErrNoDatabase = errors.New("auth: no database")

// OpenSQLite opens the SQLite database at path, creating it (mode 0600) if
// it does not exist, and migrates its schema to the current version: it is
// OpenSQLiteConfig(SQLiteConfig{Path: path}).
//
// Every worker process of a server may open the same file at once: the
// database is put in WAL mode, a connection waits for locks rather than
// failing, and the migration runs in a BEGIN IMMEDIATE transaction that
// reads the schema version (PRAGMA user_version) first, so a process that
// finds the schema already migrated by another does nothing. A database
// whose schema is newer than this build knows is refused.
//
// Call Close when done.
func OpenSQLite(path string) (*SQLite, error) {
	return OpenSQLiteConfig(SQLiteConfig{Path: path})
}

// OpenSQLiteConfig opens the SQLite database cfg.Path as OpenSQLite does,
// creating it only if cfg.MustExist is false. Only the open creates the
// file: the connections opened afterwards (the pool opens them as needed)
// never do, so a file removed under the store is not created again.
func OpenSQLiteConfig(cfg SQLiteConfig) (*SQLite, error) {
	path := cfg.Path
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("auth: sqlite: open %s: %w", path, err)
	}
	if cfg.MustExist {
		if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("auth: sqlite: open %s: %w: the file does not exist", path, ErrNoDatabase)
		}
	} else if err := createSQLiteFile(abs); err != nil {
		return nil, fmt.Errorf("auth: sqlite: create %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", sqliteDSN(abs))
	if err != nil {
		return nil, fmt.Errorf("auth: sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(sqliteMaxConns)
	s := &SQLite{db: db, path: abs, onChange: cfg.OnFileChange, stop: make(chan struct{})}
	ctx := context.Background()
	if err := s.connect(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("auth: sqlite: open %s: %w", path, sqliteError(err))
	}
	// The file the store serves from: the one just opened. (A file
	// swapped in between the open and this stat is not told apart.)
	if s.file, err = statSQLiteFile(abs); err != nil {
		db.Close()
		return nil, fmt.Errorf("auth: sqlite: open %s: %w", path, err)
	}
	if err := s.migrate(ctx, cfg.MustExist); err != nil {
		db.Close()
		return nil, fmt.Errorf("auth: sqlite: open %s: %w", path, sqliteError(err))
	}
	every := cfg.WatchInterval
	if every == 0 {
		every = DefaultSQLiteWatchInterval
	}
	if every > 0 {
		s.stopped.Add(1)
		go s.watch(every)
	}
	return s, nil
}

// createSQLiteFile creates an empty file at path, readable by its owner
// only, unless it exists. SQLite gives its -wal and -shm files the mode of
// the database file. The mode of an existing file is left as it is.
func createSQLiteFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil // ours already, or another process won the race
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// sqliteDSN is the driver's name for the database at the absolute path
// abs: a file: URI (so that a path holding '?' or '%' survives) with the
// connection settings as query parameters. mode=rw opens the file read
// and write and never creates it (createSQLiteFile does, when allowed).
// _txlock=immediate makes every transaction begin with BEGIN IMMEDIATE.
func sqliteDSN(abs string) string {
	q := "mode=rw" +
		"&_pragma=busy_timeout(" + strconv.Itoa(sqliteBusyTimeout) + ")" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_txlock=immediate"
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q}
	return u.String()
}

// connect opens the pool's first connection, which switches a new database
// to WAL, and checks that the database is in WAL mode.
//
// Processes that open a new database at once race to switch it: each
// holds a read lock when it asks for the write lock, and SQLite fails one
// of two such requests with SQLITE_BUSY at once rather than have them wait
// for each other. So connect retries on SQLITE_BUSY for up to the busy
// timeout. Once the file is in WAL mode, opening a connection takes no
// write lock.
func (s *SQLite) connect(ctx context.Context) error {
	deadline := time.Now().Add(sqliteBusyTimeout * time.Millisecond)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := s.db.PingContext(ctx)
		if err == nil {
			break
		}
		if !sqliteBusy(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
	}
	var mode string
	if err := s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, not wal (does the file system support WAL?)", mode)
	}
	return nil
}

// sqliteBusy tells whether err is SQLITE_BUSY or one of its extended
// codes.
func sqliteBusy(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY
}

// sqliteError marks err as ErrUnavailable when it says the database
// cannot be used or written now: locked by another connection past the
// busy timeout (SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PROTOCOL), full
// (SQLITE_FULL), read-only or denied (SQLITE_READONLY, SQLITE_PERM), or
// the file cannot be opened or read or written (SQLITE_CANTOPEN,
// SQLITE_IOERR). It returns other errors as they are: a constraint, a
// corrupt file or a bug is not cured by waiting.
func sqliteError(err error) error {
	var e *sqlite.Error
	if err == nil || errors.Is(err, ErrUnavailable) || !errors.As(err, &e) {
		return err
	}
	switch e.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PROTOCOL,
		sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// fail is the error of a call that failed with err: err as sqliteError
// marks it, unless the store's file turns out to be gone, which says more.
func (s *SQLite) fail(err error) error {
	if err == nil {
		return nil
	}
	if lost := s.checkFile(); lost != nil {
		return lost
	}
	return sqliteError(err)
}

// sqliteFile is a file's identity: its device and inode.
type sqliteFile struct{ dev, ino uint64 }

func statSQLiteFile(path string) (sqliteFile, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return sqliteFile{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return sqliteFile{}, fmt.Errorf("%s: no device and inode", path)
	}
	return sqliteFile{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// checkFile checks that the store's path still names the file it opened,
// and returns the error its calls get while it does not (nil while it
// does). It tells OnFileChange of a change.
func (s *SQLite) checkFile() error {
	f, err := statSQLiteFile(s.path)
	var lost error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		lost = fmt.Errorf("%w: database file %s was removed", ErrUnavailable, s.path)
	case err != nil:
		lost = fmt.Errorf("%w: database file %s: %w", ErrUnavailable, s.path, err)
	case f != s.file:
		lost = fmt.Errorf("%w: database file %s was replaced by another file", ErrUnavailable, s.path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if (s.lost == nil) != (lost == nil) && s.onChange != nil {
		s.onChange(lost)
	}
	s.lost = lost
	return lost
}

// watch checks the file every interval until Close.
func (s *SQLite) watch(every time.Duration) {
	defer s.stopped.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.checkFile()
		}
	}
}

// migrate brings the schema to len(sqliteSchema), in one transaction. With
// mustExist, a database at version 0 (never migrated) is refused.
func (s *SQLite) migrate(ctx context.Context, mustExist bool) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var version int
		if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version == 0 && mustExist {
			return fmt.Errorf("%w: the file has no schema (never migrated)", ErrNoDatabase)
		}
		if version > len(sqliteSchema) {
			return fmt.Errorf("migrate: schema version %d is newer than this build's %d", version, len(sqliteSchema))
		}
		for v := version; v < len(sqliteSchema); v++ {
			for _, stmt := range sqliteSchema[v] {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
				}
			}
		}
		if version < len(sqliteSchema) {
			// PRAGMA takes no bound parameters; the value is our constant.
			if _, err := tx.ExecContext(ctx, `PRAGMA user_version = `+strconv.Itoa(len(sqliteSchema))); err != nil {
				return fmt.Errorf("migrate: set schema version: %w", err)
			}
		}
		return nil
	})
}

// write runs f in a transaction begun with BEGIN IMMEDIATE (the DSN's
// _txlock), committing if f returns nil and rolling back otherwise.
func (s *SQLite) write(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// ready is checked before every call: the error matching ErrUnavailable
// that the call returns if the store's file is gone, or nil.
func (s *SQLite) ready() error { return s.checkFile() }

// Close stops the file watcher and closes the database. The SQLite may
// not be used afterwards.
func (s *SQLite) Close() error {
	var err error
	s.closing.Do(func() {
		close(s.stop)
		s.stopped.Wait()
		err = s.db.Close()
	})
	if err != nil {
		return fmt.Errorf("auth: sqlite: close: %w", err)
	}
	return nil
}

// sqliteUserID parses a User.ID: the decimal form of a positive integer,
// without sign or leading zeros. ok is false for anything else, which
// names no user.
func sqliteUserID(id string) (n int64, ok bool) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != id {
		return 0, false
	}
	return n, true
}

// sqliteTime is the time of a stored Unix-seconds column; the zero Time for
// NULL.
func sqliteTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.Unix(v.Int64, 0).UTC()
}

const sqliteUserColumns = `id, username, password, is_active, last_login, date_joined, password_changed_at`

func scanSQLiteUser(row *sql.Row) (User, error) {
	var (
		u          User
		id         int64
		lastLogin  sql.NullInt64
		dateJoined int64
		changed    sql.NullInt64
	)
	if err := row.Scan(&id, &u.Username, &u.PasswordHash, &u.Active, &lastLogin, &dateJoined, &changed); err != nil {
		return User{}, err
	}
	u.PasswordChangedAt = sqliteTime(changed)
	u.ID = strconv.FormatInt(id, 10)
	u.LastLogin = sqliteTime(lastLogin)
	u.DateJoined = time.Unix(dateJoined, 0).UTC()
	return u, nil
}

// CreateUser adds a user who joins now; ErrUserExists if the username is
// taken.
func (s *SQLite) CreateUser(ctx context.Context, username, passwordHash string, active bool) (User, error) {
	if err := s.ready(); err != nil {
		return User{}, fmt.Errorf("auth: sqlite: create user: %w", err)
	}
	row := s.db.QueryRowContext(ctx, `
		INSERT INTO users (username, password, is_active, date_joined)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (username) DO NOTHING
		RETURNING `+sqliteUserColumns,
		username, passwordHash, active, time.Now().Unix())
	u, err := scanSQLiteUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("auth: sqlite: create user: %w", ErrUserExists)
	}
	if err != nil {
		return User{}, fmt.Errorf("auth: sqlite: create user: %w", s.fail(err))
	}
	return u, nil
}

// UserByUsername returns the user named username; ErrNotFound if none.
func (s *SQLite) UserByUsername(ctx context.Context, username string) (User, error) {
	if err := s.ready(); err != nil {
		return User{}, fmt.Errorf("auth: sqlite: user by username: %w", err)
	}
	row := s.db.QueryRowContext(ctx, `SELECT `+sqliteUserColumns+` FROM users WHERE username = ?`, username)
	u, err := scanSQLiteUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("auth: sqlite: user by username: %w", ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("auth: sqlite: user by username: %w", s.fail(err))
	}
	return u, nil
}

// UserByID returns the user with id; ErrNotFound if none, or if id is not
// the decimal form of a user id.
func (s *SQLite) UserByID(ctx context.Context, id string) (User, error) {
	if err := s.ready(); err != nil {
		return User{}, fmt.Errorf("auth: sqlite: user by id: %w", err)
	}
	n, ok := sqliteUserID(id)
	if !ok {
		return User{}, fmt.Errorf("auth: sqlite: user by id: %w", ErrNotFound)
	}
	row := s.db.QueryRowContext(ctx, `SELECT `+sqliteUserColumns+` FROM users WHERE id = ?`, n)
	u, err := scanSQLiteUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("auth: sqlite: user by id: %w", ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("auth: sqlite: user by id: %w", s.fail(err))
	}
	return u, nil
}

// updateUser runs an UPDATE of one user (its last parameter is the id);
// ErrNotFound if no user has that id.
func (s *SQLite) updateUser(ctx context.Context, what, query, id string, args ...any) error {
	if err := s.ready(); err != nil {
		return fmt.Errorf("auth: sqlite: %s: %w", what, err)
	}
	n, ok := sqliteUserID(id)
	if !ok {
		return fmt.Errorf("auth: sqlite: %s: %w", what, ErrNotFound)
	}
	res, err := s.db.ExecContext(ctx, query, append(args, n)...)
	if err != nil {
		return fmt.Errorf("auth: sqlite: %s: %w", what, s.fail(err))
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("auth: sqlite: %s: %w", what, s.fail(err))
	}
	if rows == 0 {
		return fmt.Errorf("auth: sqlite: %s: %w", what, ErrNotFound)
	}
	return nil
}

// SetPassword replaces a user's password hash; ErrNotFound if no such
// user.
func (s *SQLite) SetPassword(ctx context.Context, id, passwordHash string) error {
	return s.updateUser(ctx, "set password", `UPDATE users SET password = ? WHERE id = ?`, id, passwordHash)
}

// ChangePassword replaces a user's password hash, records the change at
// at, and blacklists every refresh token of the user, in one transaction;
// ErrNotFound if no such user.
func (s *SQLite) ChangePassword(ctx context.Context, id, passwordHash string, at time.Time) error {
	if err := s.ready(); err != nil {
		return fmt.Errorf("auth: sqlite: change password: %w", err)
	}
	n, ok := sqliteUserID(id)
	if !ok {
		return fmt.Errorf("auth: sqlite: change password: %w", ErrNotFound)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password = ?, password_changed_at = ? WHERE id = ?`, passwordHash, at.Unix(), n)
		if err != nil {
			return err
		}
		if rows, err := res.RowsAffected(); err != nil || rows == 0 {
			return ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `UPDATE refresh_tokens SET blacklisted_at = ? WHERE user_id = ? AND blacklisted_at IS NULL`, at.Unix(), n)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("auth: sqlite: change password: %w", ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("auth: sqlite: change password: %w", s.fail(err))
	}
	return nil
}

// ImportUsers writes users with their ids in one transaction; see Store.
func (s *SQLite) ImportUsers(ctx context.Context, users []User) (created, updated int, err error) {
	if err := s.ready(); err != nil {
		return 0, 0, fmt.Errorf("auth: sqlite: import users: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("auth: sqlite: import users: %w", s.fail(err))
	}
	defer tx.Rollback()
	for _, u := range users {
		id, ok := sqliteUserID(u.ID)
		if !ok {
			return 0, 0, fmt.Errorf("auth: sqlite: import user %q: id %q is not a decimal id", u.Username, u.ID)
		}
		var exists, taken bool
		err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?), EXISTS (SELECT 1 FROM users WHERE username = ? AND id != ?)`,
			id, u.Username, id).Scan(&exists, &taken)
		if err != nil {
			return 0, 0, fmt.Errorf("auth: sqlite: import user %q: %w", u.Username, s.fail(err))
		}
		if taken {
			return 0, 0, fmt.Errorf("auth: sqlite: import user %q (id %s): %w", u.Username, u.ID, ErrUserExists)
		}
		var lastLogin *int64
		if !u.LastLogin.IsZero() {
			t := u.LastLogin.Unix()
			lastLogin = &t
		}
		joined := u.DateJoined
		if joined.IsZero() {
			joined = time.Now()
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO users (id, username, password, is_active, last_login, date_joined)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET username = excluded.username, password = excluded.password,
				is_active = excluded.is_active, last_login = excluded.last_login, date_joined = excluded.date_joined`,
			id, u.Username, u.PasswordHash, u.Active, lastLogin, joined.Unix())
		if err != nil {
			return 0, 0, fmt.Errorf("auth: sqlite: import user %q: %w", u.Username, s.fail(err))
		}
		if exists {
			updated++
		} else {
			created++
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("auth: sqlite: import users: %w", s.fail(err))
	}
	return created, updated, nil
}

// SetActive activates or deactivates a user; ErrNotFound if no such user.
func (s *SQLite) SetActive(ctx context.Context, id string, active bool) error {
	return s.updateUser(ctx, "set active", `UPDATE users SET is_active = ? WHERE id = ?`, id, active)
}

// RecordLogin records a successful login in one transaction; see Store
// and Login. ErrNotFound if no such user.
func (s *SQLite) RecordLogin(ctx context.Context, l Login) error {
	if err := s.ready(); err != nil {
		return fmt.Errorf("auth: sqlite: record login: %w", err)
	}
	n, ok := sqliteUserID(l.UserID)
	if !ok {
		return fmt.Errorf("auth: sqlite: record login: %w", ErrNotFound)
	}
	if l.Refresh.JTI != "" {
		if err := sqliteCheckRefresh(l.Refresh); err != nil {
			return fmt.Errorf("auth: sqlite: record login: %w", err)
		}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE users SET last_login = ?, password = CASE WHEN ? = '' THEN password ELSE ? END
			WHERE id = ?`,
			l.At.Unix(), l.PasswordHash, l.PasswordHash, n)
		if err != nil {
			return err
		}
		if rows, err := res.RowsAffected(); err != nil || rows == 0 {
			return ErrNotFound
		}
		if l.Attempt > 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM login_failures WHERE username = ? AND addr = ? AND id <= ?`,
				l.Username, l.Addr, l.Attempt); err != nil {
				return err
			}
		}
		if l.Refresh.JTI != "" {
			return sqliteAddRefresh(ctx, tx, l.Refresh)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("auth: sqlite: record login: %w", ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("auth: sqlite: record login: %w", s.fail(err))
	}
	return nil
}

// sqliteCheckRefresh checks a token record before it is written: a jti, a
// family, and a decimal user id.
func sqliteCheckRefresh(t RefreshToken) error {
	if t.JTI == "" || t.Family == "" {
		return errors.New("empty jti or family")
	}
	if _, ok := sqliteUserID(t.UserID); !ok {
		return fmt.Errorf("user id %q is not a decimal id", t.UserID)
	}
	return nil
}

// sqliteAddRefresh inserts the checked record t, created now, unless its
// jti is recorded already.
func sqliteAddRefresh(ctx context.Context, q interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, t RefreshToken) error {
	uid, _ := sqliteUserID(t.UserID)
	_, err := q.ExecContext(ctx, `
		INSERT INTO refresh_tokens (jti, family, user_id, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (jti) DO NOTHING`,
		t.JTI, t.Family, uid, time.Now().Unix(), t.ExpiresAt.Unix())
	return err
}

// AddRefresh records a refresh token as outstanding, created now. It is
// idempotent: a jti recorded before is left as it is, whatever its state,
// since a token adopted from another deployment (same signing key) may be
// added by two requests at once. t.UserID must be a user id (decimal).
func (s *SQLite) AddRefresh(ctx context.Context, t RefreshToken) error {
	if err := sqliteCheckRefresh(t); err != nil {
		return fmt.Errorf("auth: sqlite: add refresh token: %w", err)
	}
	if err := s.ready(); err != nil {
		return fmt.Errorf("auth: sqlite: add refresh token: %w", err)
	}
	if err := sqliteAddRefresh(ctx, s.db, t); err != nil {
		return fmt.Errorf("auth: sqlite: add refresh token: %w", s.fail(err))
	}
	return nil
}

// sqliteRefreshStateQuery reads a token's record and what state it is in.
const sqliteRefreshStateQuery = `
	SELECT family, user_id, expires_at,
		consumed_at IS NOT NULL,
		blacklisted_at IS NOT NULL
			OR EXISTS (SELECT 1 FROM revoked_families r WHERE r.family = t.family)
	FROM refresh_tokens t WHERE jti = ?`

// sqliteRefreshState classifies the token jti: ConsumeUnknown (and a zero
// record) if absent, else ConsumeRevoked if it is blacklisted or its
// family revoked, else ConsumeReused if consumed, else ConsumeOK.
func sqliteRefreshState(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, jti string) (ConsumeResult, RefreshToken, error) {
	var (
		t                 = RefreshToken{JTI: jti}
		uid, exp          int64
		consumed, revoked bool
	)
	err := q.QueryRowContext(ctx, sqliteRefreshStateQuery, jti).Scan(&t.Family, &uid, &exp, &consumed, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return ConsumeUnknown, RefreshToken{}, nil
	}
	if err != nil {
		return ConsumeUnknown, RefreshToken{}, err
	}
	t.UserID = strconv.FormatInt(uid, 10)
	t.ExpiresAt = time.Unix(exp, 0).UTC()
	switch {
	case revoked:
		return ConsumeRevoked, t, nil
	case consumed:
		return ConsumeReused, t, nil
	default:
		return ConsumeOK, t, nil
	}
}

// sqliteConsume consumes the token jti at now in tx, or says why it
// cannot: see ConsumeRefresh.
func sqliteConsume(ctx context.Context, tx *sql.Tx, jti string, now time.Time) (ConsumeResult, RefreshToken, error) {
	t := RefreshToken{JTI: jti}
	var uid, exp int64
	err := tx.QueryRowContext(ctx, `
		UPDATE refresh_tokens SET consumed_at = ?
		WHERE jti = ? AND consumed_at IS NULL AND blacklisted_at IS NULL
			AND family NOT IN (SELECT family FROM revoked_families)
		RETURNING family, user_id, expires_at`,
		now.Unix(), jti).Scan(&t.Family, &uid, &exp)
	if err == nil {
		t.UserID = strconv.FormatInt(uid, 10)
		t.ExpiresAt = time.Unix(exp, 0).UTC()
		return ConsumeOK, t, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return ConsumeUnknown, RefreshToken{}, err
	}
	// Not consumable: say why, in the same transaction.
	return sqliteRefreshState(ctx, tx, jti)
}

// ConsumeRefresh marks the outstanding refresh token jti consumed at now,
// once: of concurrent calls, from any number of processes, exactly one gets
// ConsumeOK. A consumed token is in effect blacklisted too: it can never be
// consumed again, and presenting it again gets ConsumeReused (a replay: the
// caller should revoke the family). ConsumeRevoked is for a blacklisted
// token or one of a revoked family (revocation wins over reuse);
// ConsumeUnknown for a jti never recorded, or flushed. The record is
// returned for every result but ConsumeUnknown.
//
// Expiry is not checked here: the token's exp claim is.
func (s *SQLite) ConsumeRefresh(ctx context.Context, jti string, now time.Time) (ConsumeResult, RefreshToken, error) {
	if err := s.ready(); err != nil {
		return ConsumeUnknown, RefreshToken{}, fmt.Errorf("auth: sqlite: consume refresh token: %w", err)
	}
	var (
		res ConsumeResult
		t   RefreshToken
	)
	err := s.write(ctx, func(tx *sql.Tx) (err error) {
		res, t, err = sqliteConsume(ctx, tx, jti, now)
		return err
	})
	if err != nil {
		return ConsumeUnknown, RefreshToken{}, fmt.Errorf("auth: sqlite: consume refresh token: %w", s.fail(err))
	}
	return res, t, nil
}

// errNoRotation rolls back a rotation whose token was not consumable.
var errNoRotation = errors.New("auth: no rotation")

// RotateRefresh adopts presented if it is unknown, consumes it and records
// next in its family, in one BEGIN IMMEDIATE transaction; see Store. Of
// concurrent rotations of one token, from any number of processes,
// exactly one gets ConsumeOK.
func (s *SQLite) RotateRefresh(ctx context.Context, presented, next RefreshToken, now time.Time) (ConsumeResult, RefreshToken, error) {
	if err := sqliteCheckRefresh(presented); err != nil {
		return ConsumeUnknown, RefreshToken{}, fmt.Errorf("auth: sqlite: rotate refresh token: presented: %w", err)
	}
	next.Family = presented.Family // any: checked for emptiness only
	if err := sqliteCheckRefresh(next); err != nil {
		return ConsumeUnknown, RefreshToken{}, fmt.Errorf("auth: sqlite: rotate refresh token: next: %w", err)
	}
	if err := s.ready(); err != nil {
		return ConsumeUnknown, RefreshToken{}, fmt.Errorf("auth: sqlite: rotate refresh token: %w", err)
	}
	var (
		res ConsumeResult
		t   RefreshToken
	)
	err := s.write(ctx, func(tx *sql.Tx) (err error) {
		if err := sqliteAddRefresh(ctx, tx, presented); err != nil {
			return err
		}
		if res, t, err = sqliteConsume(ctx, tx, presented.JTI, now); err != nil {
			return err
		}
		if res != ConsumeOK {
			return errNoRotation
		}
		next.Family = t.Family
		return sqliteAddRefresh(ctx, tx, next)
	})
	if errors.Is(err, errNoRotation) {
		return res, t, nil
	}
	if err != nil {
		return ConsumeUnknown, RefreshToken{}, fmt.Errorf("auth: sqlite: rotate refresh token: %w", s.fail(err))
	}
	return res, t, nil
}

// RefreshState tells the state of the refresh token jti, as
// ConsumeRefresh would, changing nothing: ConsumeOK for an outstanding
// token not consumed yet.
func (s *SQLite) RefreshState(ctx context.Context, jti string) (ConsumeResult, error) {
	if err := s.ready(); err != nil {
		return ConsumeUnknown, fmt.Errorf("auth: sqlite: refresh token state: %w", err)
	}
	res, _, err := sqliteRefreshState(ctx, s.db, jti)
	if err != nil {
		return ConsumeUnknown, fmt.Errorf("auth: sqlite: refresh token state: %w", s.fail(err))
	}
	return res, nil
}

// Blacklist revokes the refresh token jti as of now (a token blacklisted
// before keeps its first time); ErrNotFound if the jti was never recorded.
func (s *SQLite) Blacklist(ctx context.Context, jti string, now time.Time) error {
	if err := s.ready(); err != nil {
		return fmt.Errorf("auth: sqlite: blacklist refresh token: %w", err)
	}
	res, err := s.db.ExecContext(ctx, `
		UPDATE refresh_tokens SET blacklisted_at = COALESCE(blacklisted_at, ?)
		WHERE jti = ?`,
		now.Unix(), jti)
	if err != nil {
		return fmt.Errorf("auth: sqlite: blacklist refresh token: %w", s.fail(err))
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("auth: sqlite: blacklist refresh token: %w", s.fail(err))
	}
	if rows == 0 {
		return fmt.Errorf("auth: sqlite: blacklist refresh token: %w", ErrNotFound)
	}
	return nil
}

// RevokeFamily revokes every token of family, as of now; revoking a family
// again changes nothing. The revocation lasts while the store holds a token
// of the family: FlushExpired drops it with the family's last token.
func (s *SQLite) RevokeFamily(ctx context.Context, family string, now time.Time) error {
	if err := s.ready(); err != nil {
		return fmt.Errorf("auth: sqlite: revoke token family: %w", err)
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO revoked_families (family, revoked_at) VALUES (?, ?)
		ON CONFLICT (family) DO NOTHING`,
		family, now.Unix())
	if err != nil {
		return fmt.Errorf("auth: sqlite: revoke token family: %w", s.fail(err))
	}
	return nil
}

// FlushExpired deletes, in one transaction, the refresh tokens that
// expired before now (whatever their state: an expired token is refused
// by its exp claim anyway), the revoked families left without a token, and
// the login attempts older than now - LoginFailureRetention. It returns
// how many tokens went.
func (s *SQLite) FlushExpired(ctx context.Context, now time.Time) (int, error) {
	if err := s.ready(); err != nil {
		return 0, fmt.Errorf("auth: sqlite: flush expired: %w", err)
	}
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE expires_at < ?`, now.Unix())
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			DELETE FROM revoked_families
			WHERE family NOT IN (SELECT family FROM refresh_tokens)`); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM login_failures WHERE at < ?`,
			now.Add(-LoginFailureRetention).Unix())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("auth: sqlite: flush expired: %w", s.fail(err))
	}
	return int(n), nil
}

// ReserveLogin counts a login attempt unless limit are counted since
// since, in one BEGIN IMMEDIATE transaction (which serializes it with
// every other writer, in any process); see Store. Times are to the
// second.
func (s *SQLite) ReserveLogin(ctx context.Context, username, addr string, now, since time.Time, limit int) (int64, time.Time, error) {
	if err := s.ready(); err != nil {
		return 0, time.Time{}, fmt.Errorf("auth: sqlite: reserve login: %w", err)
	}
	var (
		id     int64
		oldest time.Time
	)
	err := s.write(ctx, func(tx *sql.Tx) error {
		var (
			n   int
			min sql.NullInt64
		)
		if err := tx.QueryRowContext(ctx, `
			SELECT COUNT(*), MIN(at) FROM login_failures
			WHERE username = ? AND addr = ? AND at >= ?`,
			username, addr, since.Unix()).Scan(&n, &min); err != nil {
			return err
		}
		if n >= limit {
			oldest = sqliteTime(min)
			return nil
		}
		return tx.QueryRowContext(ctx, `INSERT INTO login_failures (username, addr, at) VALUES (?, ?, ?) RETURNING id`,
			username, addr, now.Unix()).Scan(&id)
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("auth: sqlite: reserve login: %w", s.fail(err))
	}
	return id, oldest, nil
}

// ReleaseLogin forgets the attempt with id attempt; see Store.
func (s *SQLite) ReleaseLogin(ctx context.Context, attempt int64) error {
	if err := s.ready(); err != nil {
		return fmt.Errorf("auth: sqlite: release login: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM login_failures WHERE id = ?`, attempt); err != nil {
		return fmt.Errorf("auth: sqlite: release login: %w", s.fail(err))
	}
	return nil
}

// LoginFailures counts the login attempts for username from addr at or
// after since (to the second), and returns the oldest of them (the zero
// Time if none).
func (s *SQLite) LoginFailures(ctx context.Context, username, addr string, since time.Time) (int, time.Time, error) {
	if err := s.ready(); err != nil {
		return 0, time.Time{}, fmt.Errorf("auth: sqlite: count login failures: %w", err)
	}
	var (
		n      int
		oldest sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `
		SELECT COUNT(*), MIN(at) FROM login_failures
		WHERE username = ? AND addr = ? AND at >= ?`,
		username, addr, since.Unix()).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("auth: sqlite: count login failures: %w", s.fail(err))
	}
	return n, sqliteTime(oldest), nil
}
