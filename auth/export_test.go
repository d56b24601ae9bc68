package auth

import "database/sql"

// What the external tests (package auth_test: sqlite_store_test.go, which
// runs package storetest, itself an importer of auth) need of package
// auth's internals and of its internal tests' helpers.
var (
	OpenTestSQLite = openTestSQLite
	SQLiteOneConn  = sqliteOneConn
	SQLiteFill     = sqliteFill
)

// SQLiteDB is s's database handle.
func SQLiteDB(s *SQLite) *sql.DB { return s.db }

// SQLitePath is the path of s's database file.
func SQLitePath(s *SQLite) string { return s.path }
