package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/remuda/remuda/auth"
)

// A finding is one item of the deploy checklist that `server check`
// prints, in the manner of Django's check --deploy: an ID to look up or
// silence by, whether it is an error (check then exits non-zero) or a
// warning, and a sentence that says what is wrong and how to fix it.
type finding struct {
	id  string
	err bool
	msg string
}

func (f finding) String() string {
	kind := "warning"
	if f.err {
		kind = "error"
	}
	return fmt.Sprintf("%s %s: %s", kind, f.id, f.msg)
}

// deployChecks runs the checklist on c; usesAuth says whether the app
// mounts the auth endpoints (and so needs a signing key).
func deployChecks(c Config, usesAuth bool) []finding {
	var fs []finding
	warn := func(id, format string, args ...any) {
		fs = append(fs, finding{id, false, fmt.Sprintf(format, args...)})
	}
	fail := func(id, format string, args ...any) { fs = append(fs, finding{id, true, fmt.Sprintf(format, args...)}) }

	for _, addr := range c.Bind {
		if isLoopback(addr) {
			continue
		}
		if c.Prod {
			warn("W001", "bind %s is reachable from other hosts: serve behind a reverse proxy such as nginx, which buffers slow clients and terminates TLS, and bind to 127.0.0.1 or a unix socket.", addr)
		} else {
			warn("W006", "bind %s is reachable from other hosts, but the development server shows stack traces in responses: use --prod to serve other hosts.", addr)
		}
	}
	if !c.Prod {
		if src := c.sources["workers"]; src != "" && src != "default" {
			warn("W007", "workers = %d (%s) has no effect without --prod: the development server is one process.", c.Workers, src)
		}
		return fs
	}

	if c.Workers == 1 {
		warn("W002", "workers = 1: a crashed worker fails requests until its replacement is up; run 2 or more.")
	}
	if cpus := runtime.NumCPU(); c.Workers > 4*cpus {
		warn("W008", "workers = %d is more than 4 per CPU (%d CPUs): Go serves many requests per worker; run about one per CPU.", c.Workers, cpus)
	}
	if c.KeepAlive <= 60*time.Second {
		warn("W003", "keep_alive = %s is not above nginx's upstream keepalive_timeout (60s by default): nginx may send a request on a connection the server is closing, and its client gets a 502; use %s.", formatDuration(c.KeepAlive), formatDuration(DefaultKeepAlive))
	}
	if c.GracefulTimeout < c.Timeout {
		warn("W004", "graceful_timeout = %s is shorter than timeout = %s: a reload or stop may kill requests still within their timeout.", formatDuration(c.GracefulTimeout), formatDuration(c.Timeout))
	}
	if c.MaxRequests > 0 && c.MaxRequestsJitter == 0 && c.Workers > 1 {
		warn("W005", "max_requests = %d without max_requests_jitter: workers started together are recycled together; set max_requests_jitter, such as %d.", c.MaxRequests, max(1, c.MaxRequests/20))
	}
	if c.MaxBodySize == 0 {
		warn("W009", "max_body_size = 0: request bodies are not limited; set it, such as %s.", tomlString(formatSize(DefaultMaxBodySize)))
	}
	if c.LogLevel == "debug" {
		warn("W010", "log_level = debug in prod: logs grow fast and may carry request details; use info.")
	}
	if strings.TrimSpace(c.ForwardedAllowIPs) == "*" {
		warn("W011", `forwarded_allow_ips = "*": every peer may set X-Forwarded-For and -Proto; list your proxies' addresses instead, unless only a proxy can reach the server.`)
	}
	if os.Geteuid() == 0 {
		warn("W012", "running as root: a compromised worker owns the host; run as an unprivileged user (systemd: DynamicUser=yes, see systemd/README.md).")
	}
	if path, ok := strings.CutPrefix(c.Database, "sqlite:"); ok && usesAuth {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
			fail("E003", "database %s has mode %v: other users can read password hashes and token records; chmod o-rwx %s.", path, fi.Mode().Perm(), path)
		}
	}
	if !usesAuth {
		return fs
	}
	if path, ok := strings.CutPrefix(c.Database, "sqlite:"); ok {
		if msg := sqliteDirProblem(c, path); msg != "" {
			fail("E004", "%s", msg)
		}
	} else {
		fs = append(fs, postgresChecks(c)...)
	}
	if id, msg := keyProblem(c); id != "" {
		fail(id, "%s", msg)
	}
	if strings.HasPrefix(c.JWTAlgorithm, "HS") && strings.HasPrefix(c.sources["secret_key"], "flag") {
		warn("W013", "secret_key comes from a flag: every user of the host sees it in ps; set SERVER_SECRET_KEY or put it in the config file.")
	}
	if !c.RotateRefreshTokens || !c.BlacklistAfterRotation {
		warn("W014", "rotate_refresh_tokens = %t, blacklist_after_rotation = %t: a stolen refresh token stays usable until it expires; turn both on.", c.RotateRefreshTokens, c.BlacklistAfterRotation)
	}
	if c.AccessTokenLifetime > 15*time.Minute {
		warn("W015", "access_token_lifetime = %s: an access token cannot be revoked before it expires; keep it short, such as 5m.", formatDuration(c.AccessTokenLifetime))
	}
	return fs
}

// keyProblem says why c cannot sign tokens, where the key came from and
// what to do, with the checklist's ID (E001 no secret key in prod, E002 a
// weak one, E005 another key or token setting refused), or "" for a sound
// config. check reports it as a finding; run refuses to start with it.
// Dev makes a random key when there is none: no E001 there.
func keyProblem(c Config) (id, msg string) {
	hs := strings.HasPrefix(c.JWTAlgorithm, "HS")
	fix := "set SERVER_SECRET_KEY to a random key of at least 32 bytes (openssl rand -base64 48)"
	switch c.JWTAlgorithm { // auth.CheckSecretKey's minimums: the hash's size
	case "HS384":
		fix = "set SERVER_SECRET_KEY to a random key of at least 48 bytes (openssl rand -base64 48)"
	case "HS512":
		fix = "set SERVER_SECRET_KEY to a random key of at least 64 bytes (openssl rand -base64 64)"
	}
	if hs && c.SecretKey == "" && c.JWTPrivateKey == "" && c.JWTPublicKeys == "" {
		if !c.Prod {
			return "", ""
		}
		return "E001", fmt.Sprintf("secret_key is not set: the production server needs one to sign tokens (%s); %s.", c.JWTAlgorithm, fix)
	}
	_, err := auth.NewTokens(authConfig(c, zap.NewNop(), nil).Tokens)
	if err == nil {
		return "", ""
	}
	why := strings.TrimPrefix(err.Error(), "auth: ")
	if hs && c.SecretKey != "" && auth.CheckSecretKey(c.JWTAlgorithm, c.SecretKey) != nil {
		return "E002", fmt.Sprintf("secret_key%s is refused: %s; %s.", c.from("secret_key"), why, fix)
	}
	var from []string
	for _, key := range []string{"jwt_algorithm", "jwt_private_key", "jwt_public_keys", "access_token_lifetime", "refresh_token_lifetime"} {
		if src := c.sources[key]; src != "" && src != "default" {
			from = append(from, key+" from "+src)
		}
	}
	where := ""
	if len(from) > 0 {
		where = " (" + strings.Join(from, ", ") + ")"
	}
	fix = ""
	if !hs {
		fix = "; give the PEM key files with --jwt-private-key and --jwt-public-keys (SERVER_JWT_PRIVATE_KEY, SERVER_JWT_PUBLIC_KEYS), or sign with the secret key (HS256)"
	}
	return "E005", fmt.Sprintf("tokens cannot be signed or checked with these settings%s: %s%s.", where, why, fix)
}

// sqliteDirProblem says why the SQLite database at path cannot be created
// or opened for its directory, and what to do, or "". The prod master
// creates a missing database file as it starts, but not its directory.
func sqliteDirProblem(c Config, path string) string {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("database = %s%s: directory %s does not exist, and the server creates the database file, not its directory; create it, writable by the user the server runs as (mkdir -p %s; systemd: StateDirectory=, see systemd/README.md).",
			tomlString(c.Database), c.from("database"), dir, dir)
	case err != nil:
		return fmt.Sprintf("database = %s%s: directory %s: %v.", tomlString(c.Database), c.from("database"), dir, err)
	case !fi.IsDir():
		return fmt.Sprintf("database = %s%s: %s is not a directory.", tomlString(c.Database), c.from("database"), dir)
	}
	return ""
}

// envFindings turns unknownEnv's warnings into the checklist's W018.
func envFindings(warnings []string) []finding {
	var fs []finding
	for _, w := range warnings {
		fs = append(fs, finding{"W018", false, w})
	}
	return fs
}

// postgresChecks connects to the PostgreSQL database once and weighs this
// host's pools against what it allows: each worker keeps a pool of its
// own, so this host will open up to workers × pool connections on top of
// those other hosts hold. A host that is already running counts among the
// others; during a reload (HUP, USR2) two generations hold pools at once.
func postgresChecks(c Config) []finding {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	capacity, err := auth.CheckPostgres(ctx, c.Database)
	if err != nil {
		return []finding{{"W017", false, fmt.Sprintf("database cannot be checked: %v; workers fail to boot until it can be reached.", err)}}
	}
	need := c.Workers * capacity.Pool
	if need+capacity.InUse <= capacity.Limit {
		return nil
	}
	return []finding{{"W016", false, fmt.Sprintf("database allows %d connections and Remuda processes hold %d; workers = %d with pool_max_conns = %d adds up to %d more: lower pool_max_conns in the database URL or the workers, or raise PostgreSQL's max_connections (or put PgBouncer in front).",
		capacity.Limit, capacity.InUse, c.Workers, capacity.Pool, need)}}
}

// check prints the effective config, then the checklist with a W018 for
// each of env's warnings (unknownEnv); it exits non-zero when a finding is
// an error.
func check(inv *invocation, env []string) int {
	cfg, usesAuth, stdout, stderr := inv.cfg, inv.app.authPrefix != "", inv.stdout, inv.stderr
	if err := writeConfig(stdout, cfg); err != nil {
		inv.errorf("%v", err)
		return ExitError
	}
	code := ExitOK
	for _, f := range append(envFindings(env), deployChecks(cfg, usesAuth)...) {
		fmt.Fprintln(stderr, f)
		if f.err {
			code = ExitError
		}
	}
	return code
}
