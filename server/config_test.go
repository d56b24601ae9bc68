package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proxyproto"
	"github.com/remuda/remuda/internal/workers"
)

// env returns a getenv that reads from vars.
func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// writeFile writes content to a new file in a test directory and returns its path.
func writeFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testSettings are the settings of an app that registers auth.Module:
// the server's and the auth module's, as most apps have them.
var testSettings = authApp().settings()

// loadConfig loads a Config of testSettings.
func loadConfig(args []string, getenv func(string) string) (Config, error) {
	return testSettings.load(args, getenv)
}

// withoutSources returns c without its records of sources and settings,
// for comparison.
func withoutSources(c Config) Config {
	c.sources, c.settings = nil, nil
	return c
}

// timeouts is the process model's defaults for n workers, those that
// withAuthDefaults does not set.
func timeouts(n int) workers.Config {
	return workers.Config{Workers: n, Timeout: 30 * time.Second, GracefulTimeout: 30 * time.Second,
		BootTimeout: 30 * time.Second, KeepAlive: 75 * time.Second}
}

// withAuthDefaults sets the auth settings' defaults, and the logging and
// worker ones that are the same in both modes.
func withAuthDefaults(c Config) Config {
	c.modules = map[string]any{}
	for name, v := range map[string]any{
		"database": "sqlite:server.db", "secret_key": "",
		"access_token_lifetime": 5 * time.Minute, "refresh_token_lifetime": 24 * time.Hour,
		"rotate_refresh_tokens": true, "blacklist_after_rotation": true,
		"jwt_algorithm": "HS256", "jwt_private_key": "", "jwt_public_keys": "",
		"jwt_issuer": "", "jwt_audience": "", "jwt_leeway": time.Duration(0),
	} {
		c.modules[name] = newValue(v)
	}
	c.ForwardedAllowIPs, c.MaxBodySize = "127.0.0.1,::1", 10<<20
	c.ProxyProtocol, c.ProxyAllowFrom = "off", "127.0.0.1,::1"
	c.HTTP2Cleartext = "off"
	c.ErrorLog, c.Connections = "-", 1000
	c.Backlog = 2048
	c.LimitRequestLine, c.LimitRequestFields, c.LimitRequestFieldSize = 4094, 100, 8190
	return c
}

func TestLoadConfigDefaults(t *testing.T) {
	cpus := min(runtime.NumCPU(), MaxWorkers)
	tests := []struct {
		name string
		args []string
		want Config
	}{
		{"dev", nil, Config{
			Bind: []string{"127.0.0.1:8000"}, Config: timeouts(1), AccessLog: "-", LogLevel: "debug",
		}},
		{"prod", []string{"--prod"}, Config{
			Prod: true, Bind: []string{"127.0.0.1:8000"}, Config: timeouts(cpus), AccessLog: "", LogLevel: "info",
		}},
		{"prod=false", []string{"--prod=false"}, Config{
			Bind: []string{"127.0.0.1:8000"}, Config: timeouts(1), AccessLog: "-", LogLevel: "debug",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadConfig(tt.args, env(nil))
			if err != nil {
				t.Fatalf("loadConfig(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(withoutSources(got), withAuthDefaults(tt.want)) {
				t.Errorf("loadConfig(%q):\ngot  %+v\nwant %+v", tt.args, got, tt.want)
			}
			for _, s := range testSettings[1:] {
				if src := got.sources[s.key]; src != "default" {
					t.Errorf("loadConfig(%q): source of %s: got %q, want %q", tt.args, s.key, src, "default")
				}
			}
		})
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	tests := []struct {
		name string
		file string // config file content; none when empty
		env  map[string]string
		args []string
		// want changes the mode defaults into the expected Config.
		prod    bool
		want    func(c *Config)
		sources map[string]string
	}{
		{
			name:    "file",
			file:    "workers = 3\n",
			want:    func(c *Config) { c.Workers = 3 },
			sources: map[string]string{"workers": "file", "timeout": "default"},
		},
		{
			name:    "env beats file",
			file:    "workers = 3\n",
			env:     map[string]string{"SERVER_WORKERS": "4"},
			want:    func(c *Config) { c.Workers = 4 },
			sources: map[string]string{"workers": "env SERVER_WORKERS"},
		},
		{
			name:    "flag beats env and file",
			file:    "workers = 3\n",
			env:     map[string]string{"SERVER_WORKERS": "4"},
			args:    []string{"--workers", "5"},
			want:    func(c *Config) { c.Workers = 5 },
			sources: map[string]string{"workers": "flag --workers"},
		},
		{
			name:    "file bind array",
			file:    `bind = ["127.0.0.1:1", "unix:/run/server.sock"]`,
			want:    func(c *Config) { c.Bind = []string{"127.0.0.1:1", "unix:/run/server.sock"} },
			sources: map[string]string{"bind": "file"},
		},
		{
			name:    "file bind string",
			file:    `bind = "[::1]:8080"`,
			want:    func(c *Config) { c.Bind = []string{"[::1]:8080"} },
			sources: map[string]string{"bind": "file"},
		},
		{
			name:    "env bind list replaces file",
			file:    `bind = ["127.0.0.1:1", "127.0.0.1:2"]`,
			env:     map[string]string{"SERVER_BIND": "127.0.0.1:3, [::1]:4"},
			want:    func(c *Config) { c.Bind = []string{"127.0.0.1:3", "[::1]:4"} },
			sources: map[string]string{"bind": "env SERVER_BIND"},
		},
		{
			name:    "bind flags replace env",
			env:     map[string]string{"SERVER_BIND": "127.0.0.1:3,127.0.0.1:4"},
			args:    []string{"--bind", "0.0.0.0:5", "--bind=unix:/tmp/s.sock"},
			want:    func(c *Config) { c.Bind = []string{"0.0.0.0:5", "unix:/tmp/s.sock"} },
			sources: map[string]string{"bind": "flag --bind"},
		},
		{
			name: "durations: file seconds, env duration, flag seconds",
			file: "timeout = 45\ngraceful_timeout = \"1m\"\nboot_timeout = 10\n",
			env:  map[string]string{"SERVER_GRACEFUL_TIMEOUT": "2m30s", "SERVER_KEEP_ALIVE": "90"},
			args: []string{"--boot-timeout", "15"},
			want: func(c *Config) {
				c.Timeout = 45 * time.Second
				c.GracefulTimeout = 150 * time.Second
				c.BootTimeout = 15 * time.Second
				c.KeepAlive = 90 * time.Second
			},
			sources: map[string]string{"timeout": "file", "graceful_timeout": "env SERVER_GRACEFUL_TIMEOUT",
				"boot_timeout": "flag --boot-timeout", "keep_alive": "env SERVER_KEEP_ALIVE"},
		},
		{
			name:    "prod from file picks prod defaults",
			file:    "prod = true\n",
			prod:    true,
			want:    func(c *Config) {},
			sources: map[string]string{"prod": "file", "log_level": "default", "access_log": "default"},
		},
		{
			name:    "env prod=false beats file",
			file:    "prod = true\n",
			env:     map[string]string{"SERVER_PROD": "0"},
			want:    func(c *Config) {},
			sources: map[string]string{"prod": "env SERVER_PROD"},
		},
		{
			name:    "flag --prod=false beats env",
			env:     map[string]string{"SERVER_PROD": "true"},
			args:    []string{"--prod=false"},
			want:    func(c *Config) {},
			sources: map[string]string{"prod": "flag --prod"},
		},
		{
			name: "prod from env, values from all three",
			file: "log_level = \"warn\"\naccess_log = \"/var/log/access.log\"\nmax_requests = 1000\n",
			env:  map[string]string{"SERVER_PROD": "1", "SERVER_ACCESS_LOG": "-", "SERVER_MAX_REQUESTS_JITTER": "50"},
			args: []string{"--log-level", "error", "--pidfile", "/run/server.pid"},
			prod: true,
			want: func(c *Config) {
				c.LogLevel = "error"
				c.AccessLog = "-"
				c.MaxRequests = 1000
				c.MaxRequestsJitter = 50
				c.PIDFile = "/run/server.pid"
			},
			sources: map[string]string{"prod": "env SERVER_PROD", "log_level": "flag --log-level", "access_log": "env SERVER_ACCESS_LOG",
				"max_requests": "file", "max_requests_jitter": "env SERVER_MAX_REQUESTS_JITTER", "pidfile": "flag --pidfile"},
		},
		{
			name:    "empty flag value turns the access log off",
			args:    []string{"--access-log="},
			want:    func(c *Config) { c.AccessLog = "" },
			sources: map[string]string{"access_log": "flag --access-log"},
		},
		{
			name:    "unknown SERVER_ variables are ignored",
			env:     map[string]string{"SERVER_WOKERS": "abc", "SERVER_NAME": "x"},
			want:    func(c *Config) {},
			sources: map[string]string{"workers": "default"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{}
			for k, v := range tt.env {
				vars[k] = v
			}
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
				vars["SERVER_CONFIG"] = path
			}
			got, err := loadConfig(tt.args, env(vars))
			if err != nil {
				t.Fatalf("loadConfig(%q) with file %q and env %v: %v", tt.args, tt.file, tt.env, err)
			}
			want := testSettings.defaults(tt.prod)
			want.File = path
			tt.want(&want)
			if !reflect.DeepEqual(withoutSources(got), withoutSources(want)) {
				t.Errorf("loadConfig(%q) with file %q and env %v:\ngot  %+v\nwant %+v", tt.args, tt.file, tt.env, got, want)
			}
			for key, src := range tt.sources {
				if got.sources[key] != src {
					t.Errorf("source of %s: got %q, want %q", key, got.sources[key], src)
				}
			}
		})
	}
}

func TestLoadConfigFileChoice(t *testing.T) {
	fromEnv := writeFile(t, "workers = 2\n")
	fromFlag := writeFile(t, "workers = 3\n")
	tests := []struct {
		name        string
		args        []string
		wantFile    string
		wantWorkers int
		wantSource  string
	}{
		{"SERVER_CONFIG", nil, fromEnv, 2, "env SERVER_CONFIG"},
		{"--config beats SERVER_CONFIG", []string{"--config", fromFlag}, fromFlag, 3, "flag --config"},
		{"--config= turns the file off", []string{"--config="}, "", 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(tt.args, env(map[string]string{"SERVER_CONFIG": fromEnv}))
			if err != nil {
				t.Fatalf("loadConfig(%q): %v", tt.args, err)
			}
			if c.File != tt.wantFile || c.Workers != tt.wantWorkers || c.sources["config"] != tt.wantSource {
				t.Errorf("loadConfig(%q): got file %q, workers %d, source %q; want %q, %d, %q",
					tt.args, c.File, c.Workers, c.sources["config"], tt.wantFile, tt.wantWorkers, tt.wantSource)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	const path = "$FILE" // replaced by the config file's path
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string   // the whole message, when set
		has  []string // parts of the message
	}{
		{name: "flag workers not a number", args: []string{"--workers", "abc"},
			want: `--workers "abc": want a whole number from 1 to 1024`},
		{name: "flag workers too many", args: []string{"--workers=1025"},
			want: `--workers "1025": want a whole number from 1 to 1024`},
		{name: "env timeout not a duration", env: map[string]string{"SERVER_TIMEOUT": "ten"},
			want: `SERVER_TIMEOUT "ten": want a duration such as 30s or a whole number of seconds, above 0 and at most 24h`},
		{name: "flag shutdown delay too long", args: []string{"--shutdown-delay", "5m1s"},
			want: `--shutdown-delay "5m1s": want a duration from 0 to 5m`},
		{name: "env shutdown delay negative", env: map[string]string{"SERVER_SHUTDOWN_DELAY": "-3s"},
			want: `SERVER_SHUTDOWN_DELAY "-3s": want a duration from 0 to 5m`},
		{name: "file shutdown delay not a duration", file: "shutdown_delay = \"soon\"\n",
			has: []string{`config file $FILE: shutdown_delay = "soon"`, "want a duration from 0 to 5m"}},
		{name: "file unknown key", file: "wokers = 2\n",
			want: `config file $FILE: unknown key "wokers" (did you mean workers?); known keys: prod, bind, workers, timeout, graceful_timeout, shutdown_delay, boot_timeout, keep_alive, max_requests, max_requests_jitter, pidfile, access_log, log_level, error_log, metrics_bind, max_worker_memory, worker_connections, backlog, forwarded_allow_ips, proxy_protocol, proxy_allow_from, http2_cleartext, max_body_size, limit_request_line, limit_request_fields, limit_request_field_size, certfile, keyfile, user, group, database, secret_key, access_token_lifetime, refresh_token_lifetime, rotate_refresh_tokens, blacklist_after_rotation, jwt_algorithm, jwt_private_key, jwt_public_keys, jwt_issuer, jwt_audience, jwt_leeway`},
		{name: "file unknown table", file: "[server]\nworkers = 2\n",
			has: []string{`config file $FILE: unknown key "server"`, "known keys: prod, bind"}},
		{name: "file config key", file: "config = \"/etc/other.toml\"\n",
			has: []string{`config file $FILE: unknown key "config"`, "--config or SERVER_CONFIG"}},
		{name: "file workers zero", file: "workers = 0\n",
			want: `config file $FILE: workers = 0: want a whole number from 1 to 1024`},
		{name: "file workers as string", file: "workers = \"2\"\n",
			want: `config file $FILE: workers = "2": want a whole number from 1 to 1024`},
		{name: "file workers as float", file: "workers = 2.5\n",
			want: `config file $FILE: workers = 2.5: want a whole number from 1 to 1024`},
		{name: "file timeout float", file: "timeout = 1.5\n",
			has: []string{"config file $FILE: timeout = 1.5: want a duration"}},
		{name: "file timeout zero", file: "timeout = 0\n",
			has: []string{"config file $FILE: timeout = 0: want a duration", "above 0 and at most 24h"}},
		{name: "file timeout over a day", file: "timeout = 86401\n",
			has: []string{"timeout = 86401: want a duration"}},
		{name: "file timeout huge", file: "timeout = 9223372036854775807\n",
			has: []string{"timeout = 9223372036854775807: want a duration"}},
		{name: "file prod as string", file: "prod = \"yes\"\n",
			want: `config file $FILE: prod = "yes": want true or false`},
		{name: "file pidfile number", file: "pidfile = 3\n",
			want: `config file $FILE: pidfile = 3: a string is needed; want a file path`},
		{name: "file bind empty", file: "bind = []\n",
			want: `config file $FILE: bind = []: no address given; want ` + wantBind},
		{name: "file bind number", file: "bind = [8000]\n",
			has: []string{`bind = [8000]: a string or an array of strings is needed`}},
		{name: "file bind duplicate", file: `bind = ["127.0.0.1:1", "127.0.0.1:1"]`,
			has: []string{`bind = ["127.0.0.1:1", "127.0.0.1:1"]: address "127.0.0.1:1" is listed twice`}},
		{name: "env prod", env: map[string]string{"SERVER_PROD": "yes"},
			want: `SERVER_PROD "yes": want true or false`},
		{name: "env workers zero", env: map[string]string{"SERVER_WORKERS": "0"},
			want: `SERVER_WORKERS "0": want a whole number from 1 to 1024`},
		{name: "env max requests negative", env: map[string]string{"SERVER_MAX_REQUESTS": "-1"},
			want: `SERVER_MAX_REQUESTS "-1": want a whole number, 0 or more`},
		{name: "env bind empty item", env: map[string]string{"SERVER_BIND": "127.0.0.1:1,,127.0.0.1:2"},
			has: []string{`SERVER_BIND "127.0.0.1:1,,127.0.0.1:2": address "": the address is empty`}},
		{name: "env log level", env: map[string]string{"SERVER_LOG_LEVEL": "verbose"},
			want: `SERVER_LOG_LEVEL "verbose": want one of debug, info, warn, error`},
		{name: "flag timeout negative", args: []string{"--timeout", "-5s"},
			has: []string{`--timeout "-5s": want a duration`}},
		{name: "flag timeout zero seconds", args: []string{"--graceful-timeout", "0"},
			has: []string{`--graceful-timeout "0": want a duration`}},
		{name: "flag boot timeout 25h", args: []string{"--boot-timeout", "25h"},
			has: []string{`--boot-timeout "25h": want a duration`, "at most 24h"}},
		{name: "flag keep alive zero", args: []string{"--keep-alive", "0s"},
			has: []string{`--keep-alive "0s": want a duration`}},
		{name: "flag max requests jitter", args: []string{"--max-requests-jitter", "x"},
			want: `--max-requests-jitter "x": want a whole number, 0 or more`},
		{name: "flag log level", args: []string{"--log-level", "INFO"},
			want: `--log-level "INFO": want one of debug, info, warn, error`},
		{name: "flag bind missing port", args: []string{"--bind", "localhost"},
			want: `--bind "localhost": missing port in address; want ` + wantBind},
		{name: "flag bind port too big", args: []string{"--bind", "127.0.0.1:70000"},
			has: []string{`--bind "127.0.0.1:70000": port "70000" is not a number from 0 to 65535`}},
		{name: "flag bind no host", args: []string{"--bind", ":8000"},
			has: []string{`--bind ":8000": the host is missing`}},
		{name: "flag bind bare IPv6", args: []string{"--bind", "::1:8000"},
			has: []string{`--bind "::1:8000": too many colons in address`}},
		{name: "flag bind bad IPv6", args: []string{"--bind", "[fe::zz]:8000"},
			has: []string{`--bind "[fe::zz]:8000": host "fe::zz" is not an IPv6 address`}},
		{name: "flag bind bad host", args: []string{"--bind", "exa mple:80"},
			has: []string{`--bind "exa mple:80": host "exa mple" is not an IP address or a host name`}},
		{name: "flag bind relative unix", args: []string{"--bind", "unix:server.sock"},
			has: []string{`--bind "unix:server.sock": the unix socket path is not absolute`}},
		{name: "flag bind comma list", args: []string{"--bind", "127.0.0.1:1,127.0.0.1:2"},
			has: []string{`--bind "127.0.0.1:1,127.0.0.1:2"`, "give each address separately"}},
		{name: "flag bind twice", args: []string{"--bind", "127.0.0.1:1", "--bind", "127.0.0.1:1"},
			has: []string{`--bind "127.0.0.1:1": given twice`}},
		{name: "jitter without max requests", args: []string{"--max-requests-jitter", "10"},
			want: `max_requests_jitter = 10 (flag --max-requests-jitter) needs max_requests above 0, but max_requests = 0 (default): set max_requests or drop the jitter`},
		{name: "jitter without max requests from file", file: "max_requests_jitter = 5\nmax_requests = 0\n",
			has: []string{"max_requests_jitter = 5 (file)", "max_requests = 0 (file)"}},
		{name: "unknown flag near", args: []string{"--wokers", "2"},
			want: `unknown flag --wokers (did you mean --workers?)`},
		{name: "unknown flag far", args: []string{"--frobnicate"},
			has: []string{"unknown flag --frobnicate; flags: --config, --prod, --bind, --workers"}},
		{name: "flag without value", args: []string{"--workers"},
			want: `flag --workers needs a value, as in --workers N`},
		{name: "positional argument", args: []string{"--workers", "2", "extra"},
			want: `unexpected argument "extra": only flags are allowed`},
		{name: "boolean flag with a separate value", args: []string{"--prod", "false"},
			has: []string{`unexpected argument "false"`, "--prod=false"}},
		{name: "several errors at once", file: "workers = 0\n", env: map[string]string{"SERVER_TIMEOUT": "x"}, args: []string{"--log-level", "loud"},
			has: []string{"workers = 0", `SERVER_TIMEOUT "x"`, `--log-level "loud"`}},
		{name: "errors in overridden values still count", file: "workers = 0\n", args: []string{"--workers", "2"},
			has: []string{"config file $FILE: workers = 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{}
			for k, v := range tt.env {
				vars[k] = v
			}
			file := ""
			if tt.file != "" {
				file = writeFile(t, tt.file)
				vars["SERVER_CONFIG"] = file
			}
			_, err := loadConfig(tt.args, env(vars))
			if err == nil {
				t.Fatalf("loadConfig(%q) with file %q and env %v: got no error, want one", tt.args, tt.file, tt.env)
			}
			got := err.Error()
			if tt.want != "" {
				if want := strings.ReplaceAll(tt.want, path, file); got != want {
					t.Errorf("loadConfig(%q) with file %q and env %v:\ngot error  %s\nwant error %s", tt.args, tt.file, tt.env, got, want)
				}
			}
			for _, part := range tt.has {
				if part = strings.ReplaceAll(part, path, file); !strings.Contains(got, part) {
					t.Errorf("loadConfig(%q) with file %q and env %v:\ngot error %s\nwant it to contain %s", tt.args, tt.file, tt.env, got, part)
				}
			}
		})
	}
}

// TestLoadConfigBadValues checks that a bad value of each setting, from each
// source, is refused with a message naming the source, the value and what
// is allowed.
func TestLoadConfigBadValues(t *testing.T) {
	bad := map[string]struct{ text, toml string }{
		"prod":                {"maybe", `"maybe"`},
		"bind":                {"nowhere", `"nowhere"`},
		"workers":             {"0", "2000"},
		"timeout":             {"soon", "-1"},
		"graceful_timeout":    {"-1s", `"1y"`},
		"boot_timeout":        {"48h", "true"},
		"keep_alive":          {"0", "0"},
		"max_requests":        {"-3", "-3"},
		"max_requests_jitter": {"1.5", "1.5"},
		"pidfile":             {"", "[1]"}, // any string is allowed, even from the environment
		"access_log":          {"", "false"},
		"log_level":           {"trace", `"trace"`},
		"error_log":           {"", `""`},
		"metrics_bind":        {"nowhere", `"localhost"`},
		"max_worker_memory":   {"12X", `"-1"`},
		"worker_connections":  {"0", "2000000"},
		"backlog":             {"0", "65536"},

		"database":                 {"mysql://db", `"sqlite:"`},
		"secret_key":               {"", "42"},
		"access_token_lifetime":    {"2h", `"0s"`},
		"refresh_token_lifetime":   {"2161h", "-5"},
		"rotate_refresh_tokens":    {"maybe", `"yes"`},
		"blacklist_after_rotation": {"2", "1"},
		"jwt_algorithm":            {"none", `"HS1"`},
		"jwt_private_key":          {"", "[1]"},
		"jwt_public_keys":          {"", "1"},
		"jwt_issuer":               {"", "true"},
		"jwt_audience":             {"", "3"},
		"jwt_leeway":               {"2m", `"-1s"`},
		"shutdown_delay":           {"6m", `"-1s"`},
		"forwarded_allow_ips":      {"localhost", `"10.0.0.0/33"`},
		"proxy_protocol":           {"true", "true"},
		"proxy_allow_from":         {"10.0.0.0/33", `"localhost"`},
		"http2_cleartext":          {"upgrade", "true"},
		"max_body_size":            {"-1", `"big"`},
		"limit_request_line":       {"8191", "-1"},
		"limit_request_fields":     {"32769", `"100"`},
		"limit_request_field_size": {"-1", "65537"},
		"certfile":                 {"", "[1]"},
		"keyfile":                  {"", "1"},
		"user":                     {"", "true"},
		"group":                    {"", "2"},
	}
	for _, s := range testSettings {
		b, ok := bad[s.key]
		if !ok {
			t.Errorf("no bad values for setting %s", s.key)
			continue
		}
		type source struct {
			name  string
			load  func(t *testing.T) error
			where string
		}
		sources := []source{{
			name: "file",
			load: func(t *testing.T) error {
				_, err := loadConfig([]string{"--config", writeFile(t, s.key+" = "+b.toml+"\n")}, env(nil))
				return err
			},
			where: "config file ",
		}}
		if b.text != "" {
			sources = append(sources,
				source{"env", func(*testing.T) error {
					_, err := loadConfig(nil, env(map[string]string{s.env(): b.text}))
					return err
				}, s.env() + " \"" + b.text + "\""},
				source{"flag", func(*testing.T) error {
					_, err := loadConfig([]string{s.flag() + "=" + b.text}, env(nil))
					return err
				}, s.flag() + " \"" + b.text + "\""},
			)
		}
		for _, src := range sources {
			t.Run(s.key+"/"+src.name, func(t *testing.T) {
				err := src.load(t)
				if err == nil {
					t.Fatalf("got no error, want one")
				}
				for _, part := range []string{src.where, "want " + s.want} {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("got error %q, want it to contain %q", err, part)
					}
				}
				if s.secret {
					if want := s.key + " = (hidden)"; src.name == "file" && !strings.Contains(err.Error(), want) {
						t.Errorf("got error %q, want it to hide the value as %q", err, want)
					}
					return
				}
				if src.name == "file" && !strings.Contains(err.Error(), s.key+" = "+b.toml) {
					t.Errorf("got error %q, want it to contain %q", err, s.key+" = "+b.toml)
				}
			})
		}
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "missing.toml")
		_, err := loadConfig(nil, env(map[string]string{"SERVER_CONFIG": path}))
		if err == nil {
			t.Fatalf("loadConfig with SERVER_CONFIG=%s: got no error, want one", path)
		}
		if want := "config file " + path + " (env SERVER_CONFIG): "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("got error %q, want it to start with %q", err, want)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got error %q, want it to wrap fs.ErrNotExist", err)
		}
	})
	t.Run("malformed file", func(t *testing.T) {
		path := writeFile(t, "workers = 2\ntimeout = \n")
		_, err := loadConfig([]string{"--config", path}, env(nil))
		if err == nil {
			t.Fatalf("loadConfig of a malformed file: got no error, want one")
		}
		for _, part := range []string{"config file " + path + " (flag --config): ", "line 2"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("got error %q, want it to contain %q", err, part)
			}
		}
	})
	t.Run("duplicate key", func(t *testing.T) {
		path := writeFile(t, "workers = 2\nworkers = 3\n")
		_, err := loadConfig([]string{"--config", path}, env(nil))
		if err == nil || !strings.Contains(err.Error(), "config file "+path) {
			t.Errorf("got error %v, want one naming the file %s", err, path)
		}
	})
}

func TestLoadConfigHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			_, err := loadConfig([]string{"--workers", "2", arg}, env(nil))
			if err != flag.ErrHelp {
				t.Errorf("loadConfig(%q): got error %v, want flag.ErrHelp", arg, err)
			}
		})
	}
}

func TestLoadConfigBindForms(t *testing.T) {
	for _, addr := range []string{
		"127.0.0.1:8000", "0.0.0.0:80", "localhost:0", "example.com:65535",
		"[::1]:8000", "[::]:8000", "[fe80::1%eth0]:8000", "unix:/run/server/server.sock",
	} {
		t.Run(addr, func(t *testing.T) {
			c, err := loadConfig([]string{"--bind", addr}, env(nil))
			if err != nil {
				t.Fatalf("loadConfig(--bind %q): %v", addr, err)
			}
			if len(c.Bind) != 1 || c.Bind[0] != addr {
				t.Errorf("loadConfig(--bind %q): got bind %q, want [%q]", addr, c.Bind, addr)
			}
		})
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	c, err := loadConfig([]string{"--prod", "--bind", "[::1]:8000", "--bind", "unix:/run/s.sock",
		"--workers", "3", "--timeout", "1m30s", "--max-requests", "100", "--max-requests-jitter", "7",
		"--pidfile", "/run/server.pid", "--access-log", "-", "--log-level", "warn"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got := testSettings.defaults(false)
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", data, err)
	}
	if !reflect.DeepEqual(withoutSources(got), withoutSources(c)) {
		t.Errorf("JSON round trip through %s:\ngot  %+v\nwant %+v", data, got, withoutSources(c))
	}
	if err := got.validate(); err != nil {
		t.Errorf("validate after the JSON round trip: %v", err)
	}
}

func TestWriteConfig(t *testing.T) {
	path := writeFile(t, "workers = 3\n")
	c, err := loadConfig([]string{"--timeout", "90", "--config", path},
		env(map[string]string{"SERVER_LOG_LEVEL": "warn"}))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := writeConfig(&b, c); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var keys []string
	for _, line := range lines {
		if !strings.HasPrefix(line, "#") {
			keys = append(keys, strings.Fields(line)[0])
		}
	}
	var want []string
	for _, s := range testSettings {
		if !s.secret {
			want = append(want, s.key)
		}
	}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("writeConfig keys: got %q, want %q", keys, want)
	}
	if !strings.Contains(out, "# secret_key = (not set)") {
		t.Errorf("writeConfig output:\n%s\nwant the secret key shown as not set", out)
	}
	for _, want := range []string{
		`# Read from config file "` + path + `" (flag --config).`,
		"prod = false ",
		`bind = ["127.0.0.1:8000"] `,
		"# default",
		`timeout = "1m30s" `,
		"# flag --timeout",
		"workers = 3 ",
		"# file",
		`log_level = "warn" `,
		"# env SERVER_LOG_LEVEL",
		`keep_alive = "1m15s" `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("writeConfig output:\n%s\nwant it to contain %q", out, want)
		}
	}
}

func TestWriteConfigRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"dev defaults", nil, nil},
		{"prod defaults", []string{"--prod"}, nil},
		{"everything set", []string{
			"--prod", "--bind", "0.0.0.0:80", "--bind", "[::1]:8000", "--bind", "unix:/run/a b/s.sock",
			"--workers", "7", "--timeout", "1h", "--graceful-timeout", "1500ms", "--boot-timeout", "2m",
			"--keep-alive", "61", "--max-requests", "1000", "--max-requests-jitter", "50",
			"--pidfile", `/run/"quoted"\back\slash/é.pid`, "--access-log", "/var/log/tab\there.log", "--log-level", "error",
		}, nil},
		{"dev from env", nil, map[string]string{"SERVER_BIND": "localhost:1,localhost:2", "SERVER_ACCESS_LOG": "/tmp/a\x7f\x01.log", "SERVER_TIMEOUT": "1h1m1.5s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := loadConfig(tt.args, env(tt.env))
			if err != nil {
				t.Fatalf("loadConfig(%q): %v", tt.args, err)
			}
			var b bytes.Buffer
			if err := writeConfig(&b, want); err != nil {
				t.Fatalf("writeConfig: %v", err)
			}
			path := writeFile(t, b.String())
			got, err := loadConfig([]string{"--config", path}, env(nil))
			if err != nil {
				t.Fatalf("loadConfig of writeConfig's output:\n%s\ngot error %v", b.String(), err)
			}
			want.File = path
			if !reflect.DeepEqual(withoutSources(got), withoutSources(want)) {
				t.Errorf("round trip through\n%s\ngot  %+v\nwant %+v", b.String(), got, want)
			}
			for _, s := range testSettings {
				if !s.secret && got.sources[s.key] != "file" {
					t.Errorf("after the round trip, source of %s: got %q, want %q", s.key, got.sources[s.key], "file")
				}
			}
		})
	}
}

func TestWriteConfigInvalidUTF8(t *testing.T) {
	c, err := loadConfig([]string{"--pidfile", "/run/\xff.pid"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = writeConfig(&b, c)
	if err == nil || !strings.Contains(err.Error(), "pidfile") {
		t.Errorf("writeConfig with a pidfile that is not UTF-8: got error %v, want one naming pidfile", err)
	}
	if b.Len() != 0 {
		t.Errorf("writeConfig wrote %q along with its error, want nothing", b.String())
	}
}

func TestConfigWarnings(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // one part of each expected warning, in order
	}{
		{"dev defaults", nil, nil},
		{"prod good", []string{"--prod", "--workers", "4", "--bind", "unix:/run/s.sock", "--bind", "[::1]:80"}, nil},
		{"prod public address", []string{"--prod", "--workers", "4", "--bind", "0.0.0.0:8000"},
			[]string{"bind 0.0.0.0:8000 is reachable from other hosts: serve behind a reverse proxy such as nginx"}},
		{"prod host name", []string{"--prod", "--workers", "4", "--bind", "example.com:80", "--bind", "localhost:80"},
			[]string{"bind example.com:80"}},
		{"prod one worker", []string{"--prod", "--workers", "1"}, []string{"workers = 1"}},
		{"prod short keep-alive", []string{"--prod", "--workers", "2", "--keep-alive", "60s"},
			[]string{"keep_alive = 1m is not above nginx's upstream keepalive_timeout"}},
		{"prod graceful shorter than timeout", []string{"--prod", "--workers", "2", "--graceful-timeout", "10s"},
			[]string{"graceful_timeout = 10s is shorter than timeout = 30s"}},
		{"prod graceful longer than timeout", []string{"--prod", "--workers", "2", "--graceful-timeout", "60s"}, nil},
		{"prod max requests without jitter", []string{"--prod", "--workers", "2", "--max-requests", "1000"},
			[]string{"max_requests = 1000 without max_requests_jitter: workers started together are recycled together; set max_requests_jitter, such as 50."}},
		{"prod max requests with jitter", []string{"--prod", "--workers", "2", "--max-requests", "1000", "--max-requests-jitter", "50"}, nil},
		{"dev public address", []string{"--bind", "0.0.0.0:8000"}, []string{"development server shows stack traces"}},
		{"dev workers", []string{"--workers", "4"}, []string{"workers = 4 (flag --workers) has no effect without --prod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(tt.args, env(nil))
			if err != nil {
				t.Fatalf("loadConfig(%q): %v", tt.args, err)
			}
			var got []string
			for _, f := range deployChecks(c) {
				if f.ID != "W012" { // running as root: true of this test, not of the config
					got = append(got, f.Msg)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("warnings for %q: got %d %q, want %d", tt.args, len(got), got, len(tt.want))
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("warnings for %q: got %q, want it to contain %q", tt.args, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestConfigUsage(t *testing.T) {
	var b bytes.Buffer
	testSettings.usage(&b)
	out := b.String()
	for _, want := range append(testSettings.flagNames(),
		"127.0.0.1:8000", "(NumCPU)", "1m15s", "debug", "info", "SERVER_<NAME>") {
		if !strings.Contains(out, want) {
			t.Errorf("usage:\n%s\nwant it to contain %q", out, want)
		}
	}
}

// FuzzLoadConfigFile loads arbitrary bytes as the config file: loadConfig
// must not panic, and a Config it returns must be valid and survive
// writeConfig and loading again.
func FuzzLoadConfigFile(f *testing.F) {
	f.Add([]byte("workers = 2\ntimeout = 30\n"))
	f.Add([]byte("prod = true\nbind = [\"[::1]:80\", \"unix:/s\"]\nkeep_alive = \"1m15s\"\n"))
	f.Add([]byte("max_body_size = \"10M\"\nmax_worker_memory = 536870912\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "server.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig([]string{"--config", path}, env(nil))
		if err != nil {
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("loadConfig of %q gave an invalid config: %v", data, err)
		}
		var b bytes.Buffer
		if err := writeConfig(&b, c); err != nil {
			t.Fatalf("writeConfig of the config from %q: %v", data, err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := loadConfig([]string{"--config", path}, env(nil))
		if err != nil {
			t.Fatalf("loading writeConfig's output\n%s\nfrom %q: %v", b.String(), data, err)
		}
		if !reflect.DeepEqual(withoutSources(again), withoutSources(c)) {
			t.Fatalf("round trip of %q through\n%s\ngot  %+v\nwant %+v", data, b.String(), again, c)
		}
	})
}

func TestWriteConfigHidesSecretKey(t *testing.T) {
	const key = "do-not-print-me-0123456789abcdefghijkl"
	c, err := loadConfig(nil, env(map[string]string{"SERVER_SECRET_KEY": key}))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := writeConfig(&b, c); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), key) {
		t.Errorf("writeConfig printed the secret key:\n%s", b.String())
	}
	if want := fmt.Sprintf("# secret_key = (set, %d bytes)", len(key)); !strings.Contains(b.String(), want) {
		t.Errorf("writeConfig output:\n%s\nwant %q", b.String(), want)
	}
}

// TestDatabasePasswordHidden checks that a database URL's password, in
// either of libpq's places, is printed neither by writeConfig (`server
// check`) nor in the error about a setting that holds it.
func TestDatabasePasswordHidden(t *testing.T) {
	const pw = "s3cr3t-pw"
	for _, tt := range []struct{ url, want string }{
		{"postgres://remuda:" + pw + "@db.example/remuda", `database = "postgres://remuda:(hidden)@db.example/remuda"`},
		{"postgresql://db.example/remuda?user=remuda&password=" + pw + "&sslmode=require", `database = "postgresql://db.example/remuda?user=remuda&password=(hidden)&sslmode=require"`},
	} {
		c, err := loadConfig([]string{"--database", tt.url}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := writeConfig(&b, c); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(b.String(), pw) || !strings.Contains(b.String(), tt.want) {
			t.Errorf("writeConfig of %s:\n%s\nwant %s, and not the password", tt.url, b.String(), tt.want)
		}
		_, err = loadConfig([]string{"--database", strings.Replace(tt.url, "postgres", "mysql", 1)}, env(nil))
		if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "(hidden)") {
			t.Errorf("a refused database URL: error %v, want one that hides the password", err)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"512K", 512 << 10, true},
		{"512M", 512 << 20, true},
		{"2g", 2 << 30, true},
		{"2GiB", 2 << 30, true},
		{"1T", 1 << 40, true},
		{"100B", 100, true},
		{"", 0, false},
		{"M", 0, false},
		{"12X", 0, false},
		{"-1", 0, false},
		{"1.5G", 0, false},
		{"1KM", 0, false},
		{"9223372036854775807K", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseSize(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseSize(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
	c, err := loadConfig([]string{"--max-worker-memory", "256M"}, env(nil))
	if err != nil || c.MaxMemory != 256<<20 {
		t.Errorf("--max-worker-memory 256M: got %d, %v; want %d", c.MaxMemory, err, 256<<20)
	}
}

// TestSizeSettings loads every byte-size setting from each source in each
// form: the size syntax of max_worker_memory ("512M") holds for all of
// them, and a TOML integer still works.
func TestSizeSettings(t *testing.T) {
	forms := []struct {
		text, toml string
		want       int64
	}{
		{"10M", `"10M"`, 10 << 20},
		{"2GiB", `"2GiB"`, 2 << 30},
		{"4096", "4096", 4096},
		{"512k", `"512k"`, 512 << 10},
		{"0", "0", 0},
	}
	var sizes int
	for _, s := range testSettings {
		if _, isInt64 := s.field(&Config{}).(*int64); !s.size && !isInt64 {
			continue
		}
		sizes++
		value := func(c Config) int64 {
			switch p := s.field(&c).(type) {
			case *int:
				return int64(*p)
			case *int64:
				return *p
			}
			panic(s.key)
		}
		for _, f := range forms {
			for _, src := range []struct {
				name string
				load func() (Config, error)
			}{
				{"flag " + s.flag() + " " + f.text, func() (Config, error) { return loadConfig([]string{s.flag(), f.text}, env(nil)) }},
				{"env " + s.env() + "=" + f.text, func() (Config, error) {
					return loadConfig(nil, env(map[string]string{s.env(): f.text}))
				}},
				{"file " + s.key + " = " + f.toml, func() (Config, error) {
					return loadConfig([]string{"--config", writeFile(t, s.key+" = "+f.toml+"\n")}, env(nil))
				}},
			} {
				c, err := src.load()
				if err != nil {
					t.Errorf("%s: %v", src.name, err)
					continue
				}
				if got := value(c); got != f.want {
					t.Errorf("%s: got %d, want %d", src.name, got, f.want)
				}
			}
		}
		if _, err := loadConfig([]string{s.flag(), "10X"}, env(nil)); err == nil || !strings.Contains(err.Error(), "K, M, G or T suffix") {
			t.Errorf("%s 10X: got error %v, want one saying the suffixes", s.flag(), err)
		}
	}
	if sizes < 2 {
		t.Errorf("%d size settings, want max_body_size and max_worker_memory at least", sizes)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 10 << 20: "10M", 1536 << 10: "1536K", 1000: "1000", 1 << 40: "1T"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
		if back, ok := parseSize(formatSize(n)); !ok || back != n {
			t.Errorf("parseSize(formatSize(%d)) = %d, %v; want %d", n, back, ok, n)
		}
	}
}

func TestUnknownEnv(t *testing.T) {
	got := testSettings.unknownEnv([]string{
		"SERVER_WOKERS=3", "SERVER_WORKERS=2", "SERVER_CONFIG=/etc/server.toml", "SERVER_RELOAD=0",
		"SERVER_NAME=example.com", "SERVER_SECRET_KY=x", "SERVER_FROBNICATE=1", "HOME=/root", "server_workers=2",
	})
	want := []struct{ name, near string }{
		{"SERVER_FROBNICATE", ""},
		{"SERVER_SECRET_KY", "SERVER_SECRET_KEY"},
		{"SERVER_WOKERS", "SERVER_WORKERS"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d warnings %q, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w.name+" is not a setting") {
			t.Errorf("warning %d: got %q, want it to name %s", i, got[i], w.name)
		}
		if w.near != "" && !strings.Contains(got[i], "did you mean "+w.near+"?") {
			t.Errorf("warning %d: got %q, want it to suggest %s", i, got[i], w.near)
		}
		if w.near == "" && strings.Contains(got[i], "did you mean") {
			t.Errorf("warning %d: got %q, want no suggestion", i, got[i])
		}
		if strings.Contains(got[i], "=") {
			t.Errorf("warning %d: got %q, want the name without the value (it may be a secret)", i, got[i])
		}
	}
}

// TestRequestLimitSettings checks that Gunicorn's request limits and backlog
// are read from each source with Gunicorn's names, reach the workers'
// Config, and that Gunicorn's spelling --limit-request-field_size is
// answered with ours.
func TestRequestLimitSettings(t *testing.T) {
	file := writeFile(t, "backlog = 37\nlimit_request_fields = 2\n")
	c, err := loadConfig([]string{"--config", file, "--limit-request-line", "0"},
		env(map[string]string{"SERVER_LIMIT_REQUEST_FIELD_SIZE": "98"}))
	if err != nil {
		t.Fatal(err)
	}
	got := [4]int{c.Backlog, c.LimitRequestLine, c.LimitRequestFields, c.LimitRequestFieldSize}
	if want := [4]int{37, 0, 2, 98}; got != want {
		t.Errorf("got backlog and limits %v, want %v", got, want)
	}
	wc := workersConfig(c)
	if got := [3]int{wc.LimitRequestLine, wc.LimitRequestFields, wc.LimitRequestFieldSize}; got != [3]int{0, 2, 98} {
		t.Errorf("got workers.Config limits %v, want [0 2 98]", got)
	}

	_, err = loadConfig([]string{"--limit-request-field_size", "100"}, env(nil))
	if err == nil || !strings.Contains(err.Error(), "did you mean --limit-request-field-size?") {
		t.Errorf("got %v for Gunicorn's --limit-request-field_size, want an error naming --limit-request-field-size", err)
	}
}

func TestProxyProtocolSettings(t *testing.T) {
	file := writeFile(t, "proxy_protocol = \"v2\"\n")
	c, err := loadConfig([]string{"--config", file, "--proxy-allow-from", "10.0.0.0/8, 192.0.2.7"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	pp, err := proxyProtocolOf(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(pp.Mode, pp.AllowFrom); got != "v2 [10.0.0.0/8 192.0.2.7/32]" {
		t.Errorf("got %s, want v2 [10.0.0.0/8 192.0.2.7/32]", got)
	}
	c, err = loadConfig(nil, env(map[string]string{"SERVER_PROXY_PROTOCOL": "auto"}))
	if err != nil {
		t.Fatal(err)
	}
	if pp, err := proxyProtocolOf(c); err != nil || pp.Mode != proxyproto.Auto || fmt.Sprint(pp.AllowFrom) != "[127.0.0.1/32 ::1/128]" {
		t.Errorf("SERVER_PROXY_PROTOCOL=auto: got %v %v, %v; want auto from 127.0.0.1 and ::1", pp.Mode, pp.AllowFrom, err)
	}

	checkRefusals(t, []loadRefusal{
		{"bare flag, as Gunicorn's", []string{"--proxy-protocol"}, "", "flag --proxy-protocol needs a value, as in --proxy-protocol MODE"},
		{"on", []string{"--proxy-protocol", "on"}, "", `--proxy-protocol "on": want one of off, v1, v2, auto`},
		{"boolean in the file", nil, "proxy_protocol = true\n", `proxy_protocol = true: a string is needed; want one of off, v1, v2, auto`},
		{"Gunicorn's file key", nil, "proxy_allow_ips = \"10.0.0.5\"\n", `unknown key "proxy_allow_ips"; known keys: `},
	})
}

// loadRefusal is a command line, with a config file if file is not
// empty, that loadConfig refuses with an error containing want.
type loadRefusal struct {
	name string
	args []string
	file string
	want string
}

func checkRefusals(t *testing.T, tests []loadRefusal) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append(args, "--config", writeFile(t, tt.file))
			}
			_, err := loadConfig(args, env(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("loadConfig(%q): got %v, want an error containing %q", args, err, tt.want)
			}
		})
	}
}

// TestHTTP2CleartextSetting: http2_cleartext is off by default, takes
// prior-knowledge from every source, which turns h2c on in the worker,
// and refuses Gunicorn's other values, naming those allowed.
func TestHTTP2CleartextSetting(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		file string
		want string
	}{
		{name: "default", want: HTTP2Off},
		{name: "flag", args: []string{"--http2-cleartext", "prior-knowledge"}, want: HTTP2PriorKnowledge},
		{name: "env", env: map[string]string{"SERVER_HTTP2_CLEARTEXT": "prior-knowledge"}, want: HTTP2PriorKnowledge},
		{name: "file", file: "http2_cleartext = \"prior-knowledge\"\n", want: HTTP2PriorKnowledge},
		{name: "flag over file", args: []string{"--http2-cleartext", "off"}, file: "http2_cleartext = \"prior-knowledge\"\n", want: HTTP2Off},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append(args, "--config", writeFile(t, tt.file))
			}
			c, err := loadConfig(args, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.HTTP2Cleartext != tt.want {
				t.Errorf("got %q, want %q", c.HTTP2Cleartext, tt.want)
			}
		})
	}
	checkRefusals(t, []loadRefusal{
		{"Gunicorn's upgrade", []string{"--http2-cleartext", "upgrade"}, "", `--http2-cleartext "upgrade": want one of off, prior-knowledge`},
		{"Gunicorn's both", []string{"--http2-cleartext", "both"}, "", `--http2-cleartext "both": want one of off, prior-knowledge`},
		{"boolean in the file", nil, "http2_cleartext = true\n", `http2_cleartext = true: a string is needed; want one of off, prior-knowledge`},
	})
}

// TestShutdownDelaySetting: shutdown_delay is 0 (off) by default, takes 0
// and its maximum from every source, and reaches the workers' Config.
func TestShutdownDelaySetting(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want time.Duration
	}{
		{name: "default", want: 0},
		{name: "flag", args: []string{"--shutdown-delay", "3s"}, want: 3 * time.Second},
		{name: "flag zero", args: []string{"--shutdown-delay=0"}, want: 0},
		{name: "env maximum", env: map[string]string{"SERVER_SHUTDOWN_DELAY": "5m"}, want: MaxShutdownDelay},
		{name: "file whole seconds", file: "shutdown_delay = 20\n", want: 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			c, err := loadConfig(append([]string{"--prod"}, args...), env(tt.env))
			if err != nil {
				t.Fatalf("loadConfig(%q, %v): %v", args, tt.env, err)
			}
			if got := workersConfig(c).ShutdownDelay; got != tt.want {
				t.Errorf("loadConfig(%q, %v): got shutdown delay %v, want %v", args, tt.env, got, tt.want)
			}
		})
	}
}
