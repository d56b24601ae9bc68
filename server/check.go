package server

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/remuda/remuda/module"
)

// findingLine is how check prints a finding: "warning W001: …".
func findingLine(f module.Finding) string {
	kind := "warning"
	if f.Err {
		kind = "error"
	}
	return fmt.Sprintf("%s %s: %s", kind, f.ID, f.Msg)
}

// deployChecks runs the server's part of the checklist on c, in the
// manner of Django's check --deploy (each module adds its own: see
// module.Checker); the IDs say what is checked and where it is documented.
func deployChecks(c Config) []module.Finding {
	var fs []module.Finding
	warn := func(id, format string, args ...any) {
		fs = append(fs, module.Finding{ID: id, Msg: fmt.Sprintf(format, args...)})
	}

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
	return fs
}

// envFindings turns unknownEnv's warnings into the checklist's W018.
func envFindings(warnings []string) []module.Finding {
	var fs []module.Finding
	for _, w := range warnings {
		fs = append(fs, module.Finding{ID: "W018", Msg: w})
	}
	return fs
}

// check prints the effective config, then the checklist with a W018 for
// each of env's warnings (unknownEnv); it exits non-zero when a finding is
// an error.
func check(inv *invocation, env []string) int {
	cfg, stdout, stderr := inv.cfg, inv.stdout, inv.stderr
	if err := writeConfig(stdout, cfg); err != nil {
		inv.errorf("%v", err)
		return ExitError
	}
	code := ExitOK
	findings := append(envFindings(env), deployChecks(cfg)...)
	for _, f := range append(findings, moduleFindings(inv.app, cfg)...) {
		fmt.Fprintln(stderr, findingLine(f))
		if f.Err {
			code = ExitError
		}
	}
	return code
}
