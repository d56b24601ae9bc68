package server

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/auth"
)

// TestImportUsersTokens imports a `dumpdata auth.user token_blacklist`
// file: the users, and simplejwt's tokens but those expired beyond the
// leeway; a token it had blacklisted is revoked in the store, an
// outstanding one usable. A users-only dump imports with a warning.
func TestImportUsersTokens(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "server.db")
	now := time.Now().UTC()
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	outstanding := func(pk int, jti string, expires time.Duration) string {
		return fmt.Sprintf(`{"model":"token_blacklist.outstandingtoken","pk":%d,"fields":{"user":1,"jti":%q,"token":"x","created_at":null,"expires_at":%q}}`,
			pk, jti, at(expires))
	}
	dump := `[
{"model":"auth.user","pk":1,"fields":{"password":"pbkdf2_sha256$1$s$h","username":"alice","is_active":true,"last_login":null,"date_joined":"2025-01-02T03:04:05Z"}},
` + outstanding(1, "live", time.Hour) + `,
` + outstanding(2, "logged-out", time.Hour) + `,
` + outstanding(3, "expired", -time.Hour) + `,
` + outstanding(4, "within-leeway", -10*time.Second) + `,
{"model":"token_blacklist.blacklistedtoken","pk":1,"fields":{"token":2,"blacklisted_at":"` + at(-time.Minute) + `"}},
{"model":"token_blacklist.blacklistedtoken","pk":2,"fields":{"token":4,"blacklisted_at":"` + at(-time.Minute) + `"}}
]`
	file := filepath.Join(dir, "dump.json")
	os.WriteFile(file, []byte(dump), 0o600)
	var stdout, stderr bytes.Buffer
	code := run(authApp(), "server", []string{"importusers", "--from-django", file, "--database", "sqlite:" + db, "--jwt-leeway", "30s"}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := "imported 3 refresh tokens from " + file + ": 3 added, 2 blacklisted; 1 expired and 0 of deleted users left out\n" +
		"imported 1 users from " + file + ": 1 created, 0 updated\n"
	if stdout.String() != want || stderr.Len() != 0 {
		t.Errorf("got stdout %q, stderr %q; want %q", stdout.String(), stderr.String(), want)
	}

	st, err := auth.OpenSQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for jti, want := range map[string]auth.ConsumeResult{
		"live":          auth.ConsumeOK,
		"logged-out":    auth.ConsumeRevoked,
		"within-leeway": auth.ConsumeRevoked,
		"expired":       auth.ConsumeUnknown,
	} {
		if got, err := st.RefreshState(t.Context(), jti); got != want || err != nil {
			t.Errorf("RefreshState(%s) = %v, %v; want %v", jti, got, err, want)
		}
	}

	// The users-only dump of before: imported, with a warning.
	users := filepath.Join(dir, "users.json")
	os.WriteFile(users, []byte(dump[:strings.Index(dump, "\n{\"model\":\"token_blacklist")-1]+"]"), 0o600)
	stdout.Reset()
	stderr.Reset()
	if code := run(authApp(), "server", []string{"importusers", "--from-django", users, "--database", "sqlite:" + db}, &stdout, &stderr); code != ExitOK {
		t.Fatalf("users only: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "imported 1 users") || !strings.Contains(stderr.String(), "dumpdata auth.user token_blacklist") {
		t.Errorf("users only: stdout %q, stderr %q; want the users imported and a warning naming the dumpdata command", stdout.String(), stderr.String())
	}
}
