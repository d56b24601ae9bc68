package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/remuda/remuda/module"
)

// Commands are the module's commands: migrate, createuser,
// changepassword, importusers and flushexpiredtokens, each reading the
// database setting.
func (m *Module) Commands() []module.Command {
	userFlags := []module.Flag{
		{Name: "username", Arg: "NAME", Help: "the user's name (required)"},
		{Name: "password-stdin", Help: "read the password from standard input, one line"},
	}
	return []module.Command{
		{Name: "migrate", Synopsis: "[flags]", Reads: []string{"database"},
			Summary: "create the database if missing (SQLite), migrate its schema",
			About: `Creates the SQLite database if it does not exist and brings its schema to
this build's version (PostgreSQL: the database must exist). Idempotent; the
production master does the same as it starts.`,
			Run: m.migrate},
		{Name: "createuser", Synopsis: "--username NAME [--password-stdin] [flags]", Reads: []string{"database"},
			Summary: "add a user (without --password-stdin: a no-echo prompt)",
			About: `Adds a user with a password, read twice at a no-echo prompt on a terminal,
or once from standard input with --password-stdin.`,
			Flags: userFlags,
			Run:   m.createUser},
		{Name: "changepassword", Synopsis: "--username NAME [--password-stdin] [flags]", Reads: []string{"database"},
			Summary: "set a user's password; its tokens stop working",
			About: `Sets a user's password, read as createuser reads it. The tokens issued to
the user before stop working (401 password_changed), as with simplejwt's
CHECK_REVOKE_TOKEN.`,
			Flags: userFlags,
			Run:   m.changePassword},
		{Name: "importusers", Synopsis: "--from-django FILE [flags]", Reads: []string{"database", "jwt_leeway"},
			Summary: "users and simplejwt's token records from manage.py dumpdata",
			About: `Imports the users of a Django project, ids and password hashes kept, and
simplejwt's records of the refresh tokens it issued and blacklisted, from
the output of: python manage.py dumpdata auth.user token_blacklist.
Running it again updates; a token blacklisted stays refused.`,
			Flags: []module.Flag{{Name: "from-django", Arg: "FILE", Help: "the dumpdata output (JSON)"}},
			Run:   m.importUsers},
		{Name: "flushexpiredtokens", Synopsis: "[flags]", Reads: []string{"database"},
			Summary: "drop expired refresh tokens (cron it daily)",
			About: `Deletes the records of refresh tokens past their expiry, as simplejwt's
manage.py flushexpiredtokens does.`,
			Run: m.flushExpiredTokens},
	}
}

// openCommandStore opens the store of a command's invocation, or says why
// not.
func (m *Module) openCommandStore(inv module.Invocation) (Store, settings, bool) {
	s, err := settingsOf(inv.Env)
	if err == nil {
		var st Store
		if st, err = m.openStore(s, inv.Env); err == nil {
			return st, s, true
		}
	}
	inv.Errorf("%v", err)
	return nil, settings{}, false
}

// migrate is `server migrate [flags]`: it creates the database named by
// --database if it is an SQLite file that does not exist, and brings its
// schema to this build's version (PostgreSQL: the database must exist).
// It is idempotent. The prod master does the same as it starts (Start);
// systemd units may run it as ExecStartPre= too.
func (m *Module) migrate(inv module.Invocation) int {
	what := "the PostgreSQL database"
	if s, err := settingsOf(inv.Env); err == nil {
		if path, ok := strings.CutPrefix(s.Database, "sqlite:"); ok {
			what = path
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				what = path + " (created)"
			}
		}
	}
	st, _, ok := m.openCommandStore(inv)
	if !ok {
		return module.ExitError
	}
	if err := st.Close(); err != nil {
		inv.Errorf("%v", err)
		return module.ExitError
	}
	fmt.Fprintf(inv.Stdout, "migrated %s\n", what)
	return module.ExitOK
}

// createUser is `server createuser --username NAME [--password-stdin]`.
func (m *Module) createUser(inv module.Invocation) int {
	return m.userCommand(inv, func(st Store, username, password string) (string, error) {
		u, err := CreateUser(context.Background(), st, username, password)
		return fmt.Sprintf("created user %q with id %s", u.Username, u.ID), err
	})
}

// changePassword is `server changepassword --username NAME
// [--password-stdin]`: the user's tokens stop working.
func (m *Module) changePassword(inv module.Invocation) int {
	return m.userCommand(inv, func(st Store, username, password string) (string, error) {
		err := ChangePassword(context.Background(), st, username, password)
		return fmt.Sprintf("changed the password of %q; the tokens issued before are revoked", username), err
	})
}

// userCommand runs a command that sets a user's password (--username,
// --password-stdin): it reads the password and calls do with the store.
func (m *Module) userCommand(inv module.Invocation, do func(st Store, username, password string) (string, error)) int {
	username := inv.Flags["username"]
	if username == "" {
		inv.Errorf("--username is required")
		fmt.Fprintf(inv.Stderr, "Run %q for usage.\n", inv.Help)
		return module.ExitUsage
	}
	fromStdin := false
	if v, ok := inv.Flags["password-stdin"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			inv.Errorf("--password-stdin=%s: want true or false", v)
			return module.ExitUsage
		}
		fromStdin = b
	}
	password, err := readPassword(inv.Stdin, fromStdin, inv.Stderr)
	if err != nil {
		inv.Errorf("%v", err)
		return module.ExitUsage
	}
	st, _, ok := m.openCommandStore(inv)
	if !ok {
		return module.ExitError
	}
	defer st.Close()
	done, err := do(st, username, password)
	if err != nil {
		inv.Errorf("%v", err)
		return module.ExitError
	}
	fmt.Fprintln(inv.Stdout, done)
	return module.ExitOK
}

// readPassword reads the new password: from stdin with --password-stdin
// (one line, only its line ending removed), else at a no-echo prompt on a
// terminal, twice.
func readPassword(stdin *os.File, fromStdin bool, prompt io.Writer) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
	}
	fd := int(stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("standard input is not a terminal: give the password with --password-stdin")
	}
	fmt.Fprint(prompt, "Password: ")
	first, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(prompt, "Password (again): ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if string(first) != string(again) {
		return "", errors.New("the passwords differ")
	}
	return string(first), nil
}

// flushExpiredTokens is `server flushexpiredtokens`.
func (m *Module) flushExpiredTokens(inv module.Invocation) int {
	st, _, ok := m.openCommandStore(inv)
	if !ok {
		return module.ExitError
	}
	defer st.Close()
	n, err := st.FlushExpired(context.Background(), time.Now())
	if err != nil {
		inv.Errorf("%v", err)
		return module.ExitError
	}
	fmt.Fprintf(inv.Stdout, "flushed %d expired tokens\n", n)
	return module.ExitOK
}

// refreshImporter is a store that can take the refresh tokens another
// deployment issued: simplejwt's outstanding and blacklisted tokens, so that
// a token simplejwt had blacklisted (rotated out, or logged out) stays
// refused after the switch. *SQLite and *postgres.Store are.
type refreshImporter interface {
	ImportRefreshTokens(ctx context.Context, tokens []ImportedToken) (added, blacklisted int, err error)
}

// importUsers is `server importusers --from-django FILE`: the users of a
// `manage.py dumpdata auth.user token_blacklist` file, with their ids and
// password hashes, and simplejwt's record of the refresh tokens it issued
// and blacklisted (the token_blacklist app's tables). The tokens go first,
// then the users, each all or none: an import that fails half-way leaves
// no user able to log in who was not before, and running it again
// completes it. Tokens already expired, beyond the leeway, are left out:
// they are refused anyway. A dump without token_blacklist records imports
// the users, with a warning.
func (m *Module) importUsers(inv module.Invocation) int {
	file := inv.Flags["from-django"]
	if file == "" {
		inv.Errorf("--from-django FILE is required (the output of manage.py dumpdata auth.user token_blacklist)")
		return module.ExitUsage
	}
	f, err := os.Open(file)
	if err != nil {
		inv.Errorf("%v", err)
		return module.ExitUsage
	}
	defer f.Close()
	dump, err := ParseDjangoDump(f)
	if err != nil {
		inv.Errorf("%s: %v", file, err)
		return module.ExitError
	}
	st, s, ok := m.openCommandStore(inv)
	if !ok {
		return module.ExitError
	}
	defer st.Close()
	ctx := context.Background()

	if len(dump.Tokens) == 0 && dump.Orphans == 0 {
		inv.Errorf("warning: %s holds no token_blacklist records: if the Django project "+
			"uses rest_framework_simplejwt.token_blacklist, the refresh tokens it blacklisted will be accepted here until "+
			"they expire; dump with `manage.py dumpdata auth.user token_blacklist`", file)
	} else {
		ti, ok := st.(refreshImporter)
		if !ok {
			inv.Errorf("%s: this store (%T) cannot import refresh tokens (nothing imported)", file, st)
			return module.ExitError
		}
		live := make([]ImportedToken, 0, len(dump.Tokens))
		cutoff := time.Now().Add(-s.JWTLeeway)
		for _, t := range dump.Tokens {
			if !t.ExpiresAt.Before(cutoff) {
				live = append(live, t)
			}
		}
		added, blacklisted, err := ti.ImportRefreshTokens(ctx, live)
		if err != nil {
			inv.Errorf("%s: %v (nothing imported)", file, err)
			return module.ExitError
		}
		fmt.Fprintf(inv.Stdout, "imported %d refresh tokens from %s: %d added, %d blacklisted; %d expired and %d of deleted users left out\n",
			len(live), file, added, blacklisted, len(dump.Tokens)-len(live), dump.Orphans)
	}

	created, updated, err := st.ImportUsers(ctx, dump.Users)
	if err != nil {
		inv.Errorf("%s: %v (no user imported)", file, err)
		return module.ExitError
	}
	fmt.Fprintf(inv.Stdout, "imported %d users from %s: %d created, %d updated\n", len(dump.Users), file, created, updated)
	return module.ExitOK
}
