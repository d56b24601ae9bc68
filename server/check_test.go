package server

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/auth/postgres"
	"github.com/remuda/remuda/internal/pgtest"
	"github.com/remuda/remuda/internal/proctest"
	"github.com/remuda/remuda/module"
)

const goodKey = "k9F2qLm7Xw4Rt8Vb1Nc6Hs3Jd5Pz0Ya2Ue7Io4"

func TestDeployChecks(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.db")
	os.WriteFile(open, nil, 0o644)
	closed := filepath.Join(dir, "closed.db")
	os.WriteFile(closed, nil, 0o600)
	base := []string{"--prod", "--workers", "2", "--database", "sqlite:" + closed}
	tests := []struct {
		id   string
		args []string
		env  map[string]string
		auth bool
		want string // part of the message
	}{
		{"W001", append(base, "--bind", "0.0.0.0:8000"), nil, false, "reverse proxy"},
		{"W002", []string{"--prod", "--workers", "1"}, nil, false, "workers = 1"},
		{"W003", append(base, "--keep-alive", "30s"), nil, false, "keepalive_timeout"},
		{"W004", append(base, "--graceful-timeout", "5s"), nil, false, "shorter than timeout"},
		{"W005", append(base, "--max-requests", "500"), nil, false, "max_requests_jitter"},
		{"W006", []string{"--bind", "0.0.0.0:8000"}, nil, false, "stack traces"},
		{"W007", []string{"--workers", "3"}, nil, false, "no effect without --prod"},
		{"W008", []string{"--prod", "--workers", "1000"}, nil, false, "per CPU"},
		{"W009", append(base, "--max-body-size", "0"), nil, false, "not limited"},
		{"W010", append(base, "--log-level", "debug"), nil, false, "log_level = debug"},
		{"W011", append(base, "--forwarded-allow-ips", "*"), nil, false, "every peer"},
		{"W013", append(base, "--secret-key", goodKey), nil, true, "ps"},
		{"W014", append(base, "--rotate-refresh-tokens=false"), map[string]string{"SERVER_SECRET_KEY": goodKey}, true, "stolen refresh token"},
		{"W015", append(base, "--access-token-lifetime", "1h"), map[string]string{"SERVER_SECRET_KEY": goodKey}, true, "cannot be revoked"},
		{"E001", base, nil, true, "SERVER_SECRET_KEY"},
		{"E002", base, map[string]string{"SERVER_SECRET_KEY": "abcd"}, true, "at least 32"},
		{"E003", []string{"--prod", "--workers", "2", "--database", "sqlite:" + open}, map[string]string{"SERVER_SECRET_KEY": goodKey}, true, "chmod o-rwx"},
		{"E004", []string{"--prod", "--workers", "2", "--database", "sqlite:" + filepath.Join(dir, "missing", "server.db")}, map[string]string{"SERVER_SECRET_KEY": goodKey}, true,
			"directory " + filepath.Join(dir, "missing") + " does not exist"},
		{"E004", []string{"--prod", "--workers", "2", "--database", "sqlite:" + filepath.Join(closed, "server.db")}, map[string]string{"SERVER_SECRET_KEY": goodKey}, true,
			closed + " is not a directory"},
		{"E005", append(base, "--jwt-algorithm", "RS256"), nil, true, "RS256 needs a private key file"},
		{"E005", append(base, "--jwt-algorithm", "ES256", "--jwt-private-key", filepath.Join(dir, "nokey.pem")), nil, true, "jwt_private_key from flag --jwt-private-key"},
	}
	if os.Geteuid() == 0 {
		tests = append(tests, struct {
			id   string
			args []string
			env  map[string]string
			auth bool
			want string
		}{"W012", base, nil, false, "running as root"})
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if tt.id == "W008" && runtime.NumCPU() > 250 {
				t.Skip("more than 250 CPUs")
			}
			c, err := loadConfig(tt.args, env(tt.env))
			if err != nil {
				t.Fatalf("loadConfig(%q): %v", tt.args, err)
			}
			var found *module.Finding
			for _, f := range checklist(c, tt.auth) {
				if f.ID == tt.id {
					found = &f
				}
			}
			switch {
			case found == nil:
				t.Errorf("%q: no %s", tt.args, tt.id)
			case !strings.Contains(found.Msg, tt.want):
				t.Errorf("%s: %q, want it to contain %q", tt.id, found.Msg, tt.want)
			case found.Err != strings.HasPrefix(tt.id, "E"):
				t.Errorf("%s: error %v, want %v", tt.id, found.Err, strings.HasPrefix(tt.id, "E"))
			}
		})
	}
}

func TestCheckProd(t *testing.T) {
	db := filepath.Join(t.TempDir(), "server.db")
	os.WriteFile(db, nil, 0o600)
	app := NewApp()
	app.Register(new(auth.Module))
	args := []string{"check", "--prod", "--workers", "2", "--database", "sqlite:" + db}

	t.Run("4-byte key", func(t *testing.T) {
		t.Setenv("SERVER_SECRET_KEY", "abcd")
		var stdout, stderr bytes.Buffer
		if code := run(app, "server", args, &stdout, &stderr); code == 0 {
			t.Errorf("check with a 4-byte key: exit 0, want non-zero\n%s", stderr.String())
		}
		if out := stderr.String(); !strings.Contains(out, "error E002") || !strings.Contains(out, "at least 32") || strings.Contains(out, "abcd") {
			t.Errorf("check with a 4-byte key says %q, want E002 saying what is wrong without the key", out)
		}
	})
	t.Run("database directory missing", func(t *testing.T) {
		t.Setenv("SERVER_SECRET_KEY", goodKey)
		missing := filepath.Join(t.TempDir(), "var", "lib", "server")
		var stdout, stderr bytes.Buffer
		code := run(app, "server", []string{"check", "--prod", "--workers", "2", "--database", "sqlite:" + filepath.Join(missing, "server.db")}, &stdout, &stderr)
		if code != ExitError || !strings.Contains(stderr.String(), "error E004") || !strings.Contains(stderr.String(), "mkdir -p "+missing) {
			t.Errorf("check with the database's directory missing: exit %d, stderr %q; want %d and E004 saying mkdir -p %s", code, stderr.String(), ExitError, missing)
		}
	})
	t.Run("sound config", func(t *testing.T) {
		t.Setenv("SERVER_SECRET_KEY", goodKey)
		var stdout, stderr bytes.Buffer
		if code := run(app, "server", args, &stdout, &stderr); code != 0 {
			t.Errorf("check of a sound config: exit %d\n%s", code, stderr.String())
		}
		if strings.Contains(stderr.String(), "error") {
			t.Errorf("check of a sound config reports errors: %s", stderr.String())
		}
		if strings.Contains(stdout.String(), goodKey) {
			t.Error("check printed the secret key")
		}
	})
}

// TestPostgresChecks runs check against a real PostgreSQL: W016 when this
// host's pools would pass max_connections, none when they fit, W017 when
// the database cannot be reached.
func TestPostgresChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	url := pgtest.Start(t).NewDatabase(t)
	secret := map[string]string{"SERVER_SECRET_KEY": goodKey}
	down := "postgres://postgres@" + proctest.FreeAddr(t) + "/x?sslmode=disable&connect_timeout=2"
	for _, tt := range []struct {
		name, url, workers string
		want, not          string
	}{
		{"pools fit", url, "4", "", "W016"},
		{"pools do not fit", url, "60", "W016", ""},
		{"pool from the URL", url + "&pool_max_conns=50", "4", "W016", ""},
		{"database down", down, "4", "W017", "W016"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig([]string{"--prod", "--workers", tt.workers, "--database", tt.url}, env(secret))
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]string{}
			for _, f := range checklist(c, true) {
				ids[f.ID] = f.Msg
			}
			if _, ok := ids[tt.want]; tt.want != "" && !ok {
				t.Errorf("workers %s, %s: no %s in %v", tt.workers, tt.name, tt.want, ids)
			}
			if msg, ok := ids[tt.not]; tt.not != "" && ok {
				t.Errorf("workers %s, %s: %s: %s", tt.workers, tt.name, tt.not, msg)
			}
			if tt.want != "" {
				t.Logf("%s: %s", tt.want, ids[tt.want])
			}
			if msg := ids[tt.want]; strings.Contains(msg, "postgres@") {
				t.Errorf("%s names the URL: %s", tt.want, msg)
			}
		})
	}
}

// checklist is what check lists for c (but the environment's W018s): the
// server's findings, and auth's when the app registers it.
func checklist(c Config, withAuth bool) []module.Finding {
	app := NewApp()
	if withAuth {
		app.Register(&auth.Module{Postgres: postgres.Driver{}})
	}
	return append(deployChecks(c), moduleFindings(app, c)...)
}
