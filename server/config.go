package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"github.com/remuda/remuda/internal/proxyproto"
	"github.com/remuda/remuda/internal/serve"
	"github.com/remuda/remuda/internal/strict"
	"github.com/remuda/remuda/internal/workers"
	"github.com/remuda/remuda/module"
)

// Defaults and limits of the settings. A loaded Config holds a value for every
// setting: the mode default when no file, environment variable or flag gave one.
// MaxRequests and MaxRequestsJitter default to 0 (off) and PIDFile to "" (none)
// in both modes.
const (
	// DefaultBind is the address served in both modes when none is given:
	// loopback only, for a reverse proxy on the same host.
	DefaultBind = "127.0.0.1:8000"

	// DefaultDevWorkers is the worker count in dev, where it is ignored (dev
	// serves from one process). Prod defaults to runtime.NumCPU(), at most
	// MaxWorkers.
	DefaultDevWorkers = 1
	// MaxWorkers is the largest worker count accepted.
	MaxWorkers = 1024

	// DefaultTimeout is the default Config.Timeout in both modes.
	DefaultTimeout = 30 * time.Second
	// DefaultGracefulTimeout is the default Config.GracefulTimeout in both
	// modes: the process model's (workers).
	DefaultGracefulTimeout = workers.DefaultGracefulTimeout
	// DefaultBootTimeout is the default Config.BootTimeout in both modes:
	// the process model's.
	DefaultBootTimeout = workers.DefaultBootTimeout
	// DefaultKeepAlive is the default Config.KeepAlive in both modes, the
	// HTTP layer's: above nginx's upstream keepalive_timeout (60s), so that
	// a proxy never sends a request on a connection the server is closing.
	DefaultKeepAlive = serve.DefaultKeepAlive
	// MaxTimeout is the longest value accepted by every duration setting
	// whose own limit is not longer.
	MaxTimeout = 24 * time.Hour
	// MaxShutdownDelay is the longest shutdown_delay accepted: enough for
	// any load balancer's health checks to notice (Kubernetes' defaults
	// take 30 s), short enough that a stop never seems to hang.
	MaxShutdownDelay = 5 * time.Minute

	// DefaultDevAccessLog sends the access log to stderr in dev. Prod
	// defaults to "" (no access log).
	DefaultDevAccessLog = "-"
	// DefaultDevLogLevel is the log level in dev.
	DefaultDevLogLevel = "debug"
	// DefaultProdLogLevel is the log level in prod.
	DefaultProdLogLevel = "info"

	// DefaultErrorLog sends the server's own log to stderr in both modes.
	DefaultErrorLog = "-"
	// DefaultWorkerConnections is the default Config.WorkerConnections
	// (Gunicorn's worker_connections default), and MaxWorkerConnections
	// the largest accepted.
	DefaultWorkerConnections = workers.DefaultConnections
	MaxWorkerConnections     = 1 << 20

	// DefaultBacklog is the default Config.Backlog (Gunicorn's), and
	// MaxBacklog the largest accepted. The kernel caps the backlog at
	// net.core.somaxconn.
	DefaultBacklog = 2048
	MaxBacklog     = 65535
	// MaxLimitRequestFieldSize is the largest limit_request_field_size
	// accepted: a request head as a whole is capped at 64 KiB.
	MaxLimitRequestFieldSize = strict.DefaultMaxHeadBytes
	// MaxWorkerMemory is the largest Config.MaxWorkerMemory accepted: 1 TiB.
	MaxWorkerMemory = 1 << 40

	// DefaultForwardedAllowIPs trusts a proxy on the same host.
	DefaultForwardedAllowIPs = "127.0.0.1,::1"
	// DefaultProxyProtocol is off, and DefaultProxyAllowFrom lists a
	// proxy on the same host (Gunicorn's defaults).
	DefaultProxyProtocol  = "off"
	DefaultProxyAllowFrom = "127.0.0.1,::1"
	// HTTP2Off and HTTP2PriorKnowledge are the values of http2_cleartext
	// (Gunicorn's names; its "upgrade" and "both" are not offered).
	HTTP2Off            = "off"
	HTTP2PriorKnowledge = "prior-knowledge"
	// DefaultMaxBodySize is 10 MiB.
	DefaultMaxBodySize = 10 << 20
)

// Config is the effective configuration of one `server run` or `server check`:
// mode defaults, overlaid by the TOML file named by --config, then by SERVER_*
// environment variables, then by flags (flag > env > file > mode default).
// It holds the server's settings, in its fields, and those of the app's
// modules (module.Configurable), which it gives to the modules as JSON
// (module.Env.Settings).
//
// In prod the master sends it, JSON-encoded, to every worker over the control
// channel; a HUP loads it again from the same flags, environment and file.
//
// A Config from settingTable.load has every field set and valid. Its zero
// value is not a usable configuration, unlike those of the layers below
// (workers.Config, serve.Options), and cannot be made one: it is what the
// operator asked for, resolved, and a zero is a meaningful answer to
// several settings (forwarded_allow_ips = "" trusts no proxy,
// access_log = "" logs no request, max_body_size = 0 lifts the limit),
// so a zero cannot also stand for "the default".
type Config struct {
	// Prod selects the pre-forking production runner (--prod).
	Prod bool `json:"prod"`
	// File is the TOML file given by --config; empty when none.
	File string `json:"config"`
	// Bind lists the addresses to listen on: "host:port", "[::1]:port" or
	// "unix:/path". Never empty after loading. Default: DefaultBind.
	Bind []string `json:"bind"`
	// Config is the process model's part: Workers (prod only; 1 to
	// MaxWorkers, default runtime.NumCPU()), Timeout (DefaultTimeout),
	// GracefulTimeout (DefaultGracefulTimeout), ShutdownDelay (0: off; at
	// most MaxShutdownDelay), BootTimeout
	// (DefaultBootTimeout), KeepAlive (DefaultKeepAlive), MaxRequests and
	// MaxRequestsJitter (0: off), MaxMemory (max_worker_memory; 0: off),
	// Connections (worker_connections; DefaultWorkerConnections),
	// MaxBodySize (max_body_size; DefaultMaxBodySize) and the
	// request-head limits LimitRequestLine, LimitRequestFields and
	// LimitRequestFieldSize (Gunicorn's defaults, strict.DefaultRequestLine,
	// DefaultFields, DefaultFieldSize). Their meanings are workers.Config's;
	// the settings of the same names (see `server run -h`) set them.
	workers.Config
	// PIDFile, when set, receives the master's PID.
	PIDFile string `json:"pidfile"`
	// AccessLog is where the JSON access log goes: a path, "-" for
	// stderr, or empty for none. Default: DefaultDevAccessLog in dev, none
	// in prod.
	AccessLog string `json:"access_log"`
	// LogLevel is zap's level name: debug, info, warn or error.
	// Default: DefaultDevLogLevel or DefaultProdLogLevel.
	LogLevel string `json:"log_level"`
	// ErrorLog is where the server's own log goes: a path, or "-" for
	// stderr. In prod the master opens it and passes it to every worker,
	// which writes its own lines there (a line per write, none waiting on
	// the master); what a worker writes to stderr otherwise (a panic, a
	// stack dump) the master relays as JSON. USR1 reopens it, in the
	// master, then in the workers. Default: DefaultErrorLog.
	ErrorLog string `json:"error_log"`
	// MetricsBind is where the prod master serves Prometheus /metrics and a
	// JSON /status: "host:port" or "unix:/path". Empty: not served, the
	// default. Keep it off the public network: /status names every worker.
	MetricsBind string `json:"metrics_bind"`
	// Backlog is the listen queue of the sockets the prod master binds
	// (Gunicorn's backlog): connections the kernel has accepted that no
	// worker has taken yet. The kernel caps it at net.core.somaxconn.
	// Default: DefaultBacklog.
	Backlog int `json:"backlog"`

	// ForwardedAllowIPs lists the proxies (addresses, CIDR prefixes, or
	// "*") whose X-Forwarded-For/-Proto and X-Request-ID are believed.
	// Default: DefaultForwardedAllowIPs.
	ForwardedAllowIPs string `json:"forwarded_allow_ips"`
	// ProxyProtocol is Gunicorn's proxy_protocol: "off" (the default),
	// "v1", "v2" or "auto" (either), the PROXY protocol header versions
	// required from the peers in ProxyAllowFrom; see serve.ProxyProtocol.
	ProxyProtocol string `json:"proxy_protocol"`
	// ProxyAllowFrom lists the peers (addresses, CIDR prefixes, or "*")
	// whose PROXY protocol header is required and believed when
	// ProxyProtocol is on (Gunicorn's --proxy-allow-from). Default:
	// DefaultProxyAllowFrom.
	ProxyAllowFrom string `json:"proxy_allow_from"`
	// HTTP2Cleartext is Gunicorn's http2_cleartext: HTTP2Off (the
	// default), or HTTP2PriorKnowledge, which serves HTTP/2 without TLS
	// (h2c) on the connections that open with the HTTP/2 preface, from
	// the peers in ForwardedAllowIPs only; see
	// serve.Options.HTTP2Cleartext.
	HTTP2Cleartext string `json:"http2_cleartext"`
	// CertFile and KeyFile, both or neither, serve HTTPS (TLS 1.2 and up,
	// HTTP/2), for a server without a proxy in front.
	CertFile string `json:"certfile"`
	KeyFile  string `json:"keyfile"`
	// User and Group (names or numeric ids) are who the prod master and
	// its workers run as once the sockets are bound; the master must start
	// as root then. Group defaults to the user's primary group.
	User  string `json:"user"`
	Group string `json:"group"`

	// settings are those c was built with (settingTable.defaults): the
	// server's and its app's modules'.
	settings settingTable
	// modules holds the modules' settings, by name, each as a pointer to
	// its value, of its Default's type (*bool, *string, *time.Duration).
	modules map[string]any
	// sources maps each setting's TOML key (and "config") to where its
	// value came from: "default", "file", "env SERVER_X" or "flag --x".
	// Only settingTable.load sets it; it is not sent to workers.
	sources map[string]string
}

// Setting returns the value of the module setting named name ("database",
// of auth.Module) as its type (bool, string or time.Duration), and
// whether c holds one: the server's own settings are c's fields.
func (c Config) Setting(name string) (any, bool) {
	p, ok := c.modules[name]
	if !ok {
		return nil, false
	}
	return valueAt(p), true
}

// MarshalJSON encodes c as one JSON object keyed by the settings' names:
// the server's settings and the modules'.
func (c Config) MarshalJSON() ([]byte, error) {
	type fields Config // without these methods
	b, err := json.Marshal(fields(c))
	if err != nil || len(c.modules) == 0 {
		return b, err
	}
	var all map[string]any
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for name, v := range c.modules {
		all[name] = v
	}
	return json.Marshal(all)
}

// UnmarshalJSON decodes what MarshalJSON encodes into c, whose modules'
// settings must be there already, typed: decode into a Config from
// settingTable.defaults. A module setting c does not hold is ignored.
func (c *Config) UnmarshalJSON(b []byte) error {
	type fields Config // without these methods
	if err := json.Unmarshal(b, (*fields)(c)); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for name, v := range c.modules {
		if raw, ok := all[name]; ok {
			if err := json.Unmarshal(raw, v); err != nil {
				return fmt.Errorf("setting %s: %w", name, err)
			}
		}
	}
	return nil
}

// serverDefaults returns the mode defaults of the server's own settings.
func serverDefaults(prod bool) Config {
	c := Config{
		Prod: prod,
		Bind: []string{DefaultBind},
		Config: workers.Config{
			Workers:         DefaultDevWorkers,
			Timeout:         DefaultTimeout,
			GracefulTimeout: DefaultGracefulTimeout,
			BootTimeout:     DefaultBootTimeout,
			KeepAlive:       DefaultKeepAlive,
			Connections:     DefaultWorkerConnections,
			MaxBodySize:     DefaultMaxBodySize,

			LimitRequestLine:      strict.DefaultRequestLine,
			LimitRequestFields:    strict.DefaultFields,
			LimitRequestFieldSize: strict.DefaultFieldSize,
		},
		AccessLog: DefaultDevAccessLog,
		LogLevel:  DefaultDevLogLevel,
		ErrorLog:  DefaultErrorLog,
		Backlog:   DefaultBacklog,

		ForwardedAllowIPs: DefaultForwardedAllowIPs,
		ProxyProtocol:     DefaultProxyProtocol,
		ProxyAllowFrom:    DefaultProxyAllowFrom,
		HTTP2Cleartext:    HTTP2Off,
	}
	if prod {
		c.Workers = min(runtime.NumCPU(), MaxWorkers)
		c.AccessLog = ""
		c.LogLevel = DefaultProdLogLevel
	}
	return c
}

// A setting is one configurable field: its TOML key, flag (--key with '_'
// as '-') and environment variable (SERVER_KEY).
type setting struct {
	key      string
	arg      string // the flag's argument in usage; "" for a boolean flag
	help     string
	want     string // what is allowed, completing "want ..."
	min, max int    // whole-number settings
	enum     []string
	// Durations are above 0 and at most MaxTimeout unless zeroOK or maxDur
	// say otherwise.
	zeroOK bool
	maxDur time.Duration
	// size: a whole-number setting that is a number of bytes, given as
	// parseSize reads it ("10M", or a TOML integer). *int64 settings
	// always are.
	size   bool
	secret bool // never printed
	// credentials: a URL whose password (user:PASSWORD@, or libpq's
	// password= parameter) is never printed.
	credentials bool
	field       func(*Config) any // a pointer to the field
	// A module's setting: its Default and its Check (module.Setting).
	def        any
	checkValue func(v any) error
}

func (s setting) maxDuration() time.Duration {
	if s.maxDur == 0 {
		return MaxTimeout
	}
	return s.maxDur
}

var logLevels = []string{"debug", "info", "warn", "error"}

const (
	wantDuration = "a duration such as 30s or a whole number of seconds, above 0 and at most 24h"
	wantBind     = "host:port (port 0 to 65535), [IPv6]:port or unix:/absolute/path"
	wantSize     = "a size in bytes from 0 to 1T, with an optional K, M, G or T suffix (powers of 1024)"
)

// serverSettings are the server's own settings, in the order of usage and
// writeConfig.
var serverSettings = settingTable{
	{key: "prod", help: "pre-forking master and workers (dev: one process)",
		want: "true or false", field: func(c *Config) any { return &c.Prod }},
	{key: "bind", arg: "ADDR", help: "address to listen on, repeatable; SERVER_BIND is comma-separated",
		want: wantBind, field: func(c *Config) any { return &c.Bind }},
	{key: "workers", arg: "N", help: "worker processes (prod only)",
		want: fmt.Sprintf("a whole number from 1 to %d", MaxWorkers), min: 1, max: MaxWorkers,
		field: func(c *Config) any { return &c.Workers }},
	{key: "timeout", arg: "DUR", help: "a longer request gets 503 and recycles its worker; a worker silent this long is killed",
		want: wantDuration, field: func(c *Config) any { return &c.Timeout }},
	{key: "graceful_timeout", arg: "DUR", help: "time in-flight requests get to finish on TERM, HUP or recycle",
		want: wantDuration, field: func(c *Config) any { return &c.GracefulTimeout }},
	{key: "shutdown_delay", arg: "DUR", help: "on TERM, keep serving this long with /readyz answering 503 before the drain (0: off)",
		want: "a duration from 0 to 5m", zeroOK: true, maxDur: MaxShutdownDelay,
		field: func(c *Config) any { return &c.ShutdownDelay }},
	{key: "boot_timeout", arg: "DUR", help: "time a new worker has to report ready",
		want: wantDuration, field: func(c *Config) any { return &c.BootTimeout }},
	{key: "keep_alive", arg: "DUR", help: "idle keep-alive timeout; keep it above the proxy's (nginx: 60s)",
		want: wantDuration, field: func(c *Config) any { return &c.KeepAlive }},
	{key: "max_requests", arg: "N", help: "recycle a worker after N requests (0: never)",
		want: "a whole number, 0 or more", min: 0, max: math.MaxInt,
		field: func(c *Config) any { return &c.MaxRequests }},
	{key: "max_requests_jitter", arg: "N", help: "add a random 0..N to max_requests, per worker",
		want: "a whole number, 0 or more", min: 0, max: math.MaxInt,
		field: func(c *Config) any { return &c.MaxRequestsJitter }},
	{key: "pidfile", arg: "PATH", help: "file the master writes its PID to",
		want: "a file path", field: func(c *Config) any { return &c.PIDFile }},
	{key: "access_log", arg: "PATH", help: `JSON access log: a file, "-" for stderr, "" for none`,
		want: `a file path, "-" for stderr or "" for none`, field: func(c *Config) any { return &c.AccessLog }},
	{key: "log_level", arg: "LEVEL", help: "debug, info, warn or error",
		want: "one of " + strings.Join(logLevels, ", "), enum: logLevels,
		field: func(c *Config) any { return &c.LogLevel }},
	{key: "error_log", arg: "PATH", help: `the server's own log: a file, or "-" for stderr; USR1 reopens it`,
		want: `a file path or "-" for stderr`, field: func(c *Config) any { return &c.ErrorLog }},
	{key: "metrics_bind", arg: "ADDR", help: "serve Prometheus /metrics and JSON /status here, from the master (prod; \"\": off)",
		want: wantBind + `, or "" for off`, field: func(c *Config) any { return &c.MetricsBind }},
	{key: "max_worker_memory", arg: "SIZE", help: "recycle a worker whose RSS passes SIZE bytes (K, M, G suffixes; 0: never)",
		want:  wantSize + ", as 512M",
		field: func(c *Config) any { return &c.MaxMemory }},
	{key: "worker_connections", arg: "N", help: "connections one worker holds at once; more wait in the kernel's queue",
		want: fmt.Sprintf("a whole number from 1 to %d", MaxWorkerConnections), min: 1, max: MaxWorkerConnections,
		field: func(c *Config) any { return &c.Connections }},
	{key: "backlog", arg: "N", help: "listen queue of the sockets the server binds; the kernel caps it at net.core.somaxconn",
		want: fmt.Sprintf("a whole number from 1 to %d", MaxBacklog), min: 1, max: MaxBacklog,
		field: func(c *Config) any { return &c.Backlog }},
	{key: "forwarded_allow_ips", arg: "LIST", help: `proxies whose X-Forwarded-For/-Proto and X-Request-ID to believe ("*": all)`,
		want: `IP addresses or CIDR prefixes, comma-separated, or "*"`, field: func(c *Config) any { return &c.ForwardedAllowIPs }},
	{key: "proxy_protocol", arg: "MODE", help: "PROXY protocol header required from --proxy-allow-from peers: off, v1, v2 or auto (either)",
		want: "one of " + strings.Join(proxyproto.Modes, ", "), enum: proxyproto.Modes,
		field: func(c *Config) any { return &c.ProxyProtocol }},
	{key: "proxy_allow_from", arg: "LIST", help: `proxies whose PROXY protocol header to require and believe ("*": all)`,
		want: `IP addresses or CIDR prefixes, comma-separated, or "*"`, field: func(c *Config) any { return &c.ProxyAllowFrom }},
	{key: "http2_cleartext", arg: "MODE", help: "cleartext HTTP/2 (h2c) for --forwarded-allow-ips peers: off, or prior-knowledge (a connection that opens with the HTTP/2 preface)",
		want: "one of " + HTTP2Off + ", " + HTTP2PriorKnowledge, enum: []string{HTTP2Off, HTTP2PriorKnowledge},
		field: func(c *Config) any { return &c.HTTP2Cleartext }},
	{key: "max_body_size", arg: "SIZE", help: "larger request bodies get 413 (K, M, G suffixes; 0: no limit)",
		want:  wantSize + ", as 10M",
		field: func(c *Config) any { return &c.MaxBodySize }},
	{key: "limit_request_line", arg: "BYTES", help: "a longer request line gets 414 (0: up to the 64 KiB head cap)",
		want: fmt.Sprintf("a whole number from 0 to %d", strict.MaxRequestLine), min: 0, max: strict.MaxRequestLine,
		field: func(c *Config) any { return &c.LimitRequestLine }},
	{key: "limit_request_fields", arg: "N", help: fmt.Sprintf("more header fields get 431 (0: %d)", strict.MaxFields),
		want: fmt.Sprintf("a whole number from 0 to %d", strict.MaxFields), min: 0, max: strict.MaxFields,
		field: func(c *Config) any { return &c.LimitRequestFields }},
	{key: "limit_request_field_size", arg: "BYTES", help: fmt.Sprintf("a longer header field line gets 431 (0: %d)", strict.DefaultFieldSize),
		want: fmt.Sprintf("a whole number from 0 to %d", MaxLimitRequestFieldSize), min: 0, max: MaxLimitRequestFieldSize,
		field: func(c *Config) any { return &c.LimitRequestFieldSize }},
	{key: "certfile", arg: "PATH", help: "PEM certificate chain: serve HTTPS (with --keyfile)",
		want: "a file path", field: func(c *Config) any { return &c.CertFile }},
	{key: "keyfile", arg: "PATH", help: "PEM private key of --certfile",
		want: "a file path", field: func(c *Config) any { return &c.KeyFile }},
	{key: "user", arg: "USER", help: "run as this user once the sockets are bound (prod, started as root)",
		want: "a user name or id", field: func(c *Config) any { return &c.User }},
	{key: "group", arg: "GROUP", help: "run as this group (default: the user's)",
		want: "a group name or id", field: func(c *Config) any { return &c.Group }},
}

func (s setting) flag() string { return "--" + strings.ReplaceAll(s.key, "_", "-") }
func (s setting) env() string  { return "SERVER_" + strings.ToUpper(s.key) }

// A settingTable is the settings of an app: the server's (serverSettings),
// then each of its modules' (module.Configurable), in the order the app
// registered them.
type settingTable []setting

// withModule returns t with the settings of m, or an error if one of
// them is not a setting the server can hold.
func (t settingTable) withModule(m module.Module) (settingTable, error) {
	c, ok := m.(module.Configurable)
	if !ok {
		return t, nil
	}
	for _, d := range c.Settings() {
		switch {
		case d.Name == "" || d.Name != strings.ToLower(d.Name) || strings.ContainsAny(d.Name, "- ="):
			return nil, fmt.Errorf("module %s: setting %q: want a name in lower case with underscores", m.Name(), d.Name)
		case d.Name == "config":
			return nil, fmt.Errorf("module %s: setting %q: the name is the server's (--config)", m.Name(), d.Name)
		case newValue(d.Default) == nil:
			return nil, fmt.Errorf("module %s: setting %s: Default %#v: want a bool, a string or a time.Duration", m.Name(), d.Name, d.Default)
		}
		if _, ok := t.lookup(d.Name); ok {
			return nil, fmt.Errorf("module %s: setting %s: another setting has that name", m.Name(), d.Name)
		}
		t = append(t[:len(t):len(t)], setting{
			key: d.Name, arg: d.Arg, help: d.Help, want: d.Want, enum: d.Enum,
			zeroOK: d.ZeroOK, maxDur: d.MaxDuration, secret: d.Secret, credentials: d.Credentials,
			def: d.Default, checkValue: d.Check,
			field: func(c *Config) any { return c.modules[d.Name] },
		})
	}
	return t, nil
}

// newValue returns a pointer to a copy of v, a module setting's value, or
// nil for a type a module setting cannot have.
func newValue(v any) any {
	switch v := v.(type) {
	case bool:
		return &v
	case string:
		return &v
	case time.Duration:
		return &v
	}
	return nil
}

// valueAt returns the value p points to, a module setting's (see newValue).
func valueAt(p any) any {
	switch p := p.(type) {
	case *bool:
		return *p
	case *string:
		return *p
	case *time.Duration:
		return *p
	}
	panic(fmt.Sprintf("server: a module setting of type %T", p))
}

// lookup returns the setting with the TOML key key.
func (t settingTable) lookup(key string) (setting, bool) {
	for _, s := range t {
		if s.key == key {
			return s, true
		}
	}
	return setting{}, false
}

// defaults returns the mode defaults of t's settings, before any file,
// env or flag.
func (t settingTable) defaults(prod bool) Config {
	c := serverDefaults(prod)
	c.settings = t
	for _, s := range t {
		if s.def != nil {
			if c.modules == nil {
				c.modules = map[string]any{}
			}
			c.modules[s.key] = newValue(s.def)
		}
	}
	return c
}

// refusal is why a value was refused and what is allowed instead.
type refusal struct{ reason, want string }

func (r *refusal) Error() string {
	if r.reason == "" {
		return "want " + r.want
	}
	return r.reason + "; want " + r.want
}

func (s setting) refuse(format string, args ...any) error {
	r := &refusal{want: s.want}
	if format != "" {
		r.reason = fmt.Sprintf(format, args...)
	}
	return r
}

// parseText sets s in c from a flag or environment value. A list setting
// takes a comma-separated list.
func (s setting) parseText(c *Config, v string) error {
	switch p := s.field(c).(type) {
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return s.refuse("")
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(v)
		if s.size {
			n64, ok := parseSize(v)
			if !ok || n64 > math.MaxInt {
				return s.refuse("")
			}
			n, err = int(n64), nil
		}
		if err != nil {
			return s.refuse("")
		}
		*p = n
	case *time.Duration:
		d, ok := parseDuration(v)
		if !ok {
			return s.refuse("")
		}
		*p = d
	case *int64:
		n, ok := parseSize(v)
		if !ok {
			return s.refuse("")
		}
		*p = n
	case *string:
		*p = v
	case *[]string:
		var list []string
		for item := range strings.SplitSeq(v, ",") {
			list = append(list, strings.TrimSpace(item))
		}
		*p = list
	}
	return s.check(c)
}

// parseTOML sets s in c from a value decoded from the config file.
func (s setting) parseTOML(c *Config, v any) error {
	switch p := s.field(c).(type) {
	case *bool:
		b, ok := v.(bool)
		if !ok {
			return s.refuse("")
		}
		*p = b
	case *int:
		n, ok := v.(int64)
		if str, isString := v.(string); isString && s.size {
			n, ok = parseSize(str)
		}
		if !ok || n < int64(s.min) || n > int64(s.max) {
			return s.refuse("")
		}
		*p = int(n)
	case *time.Duration:
		var d time.Duration
		ok := false
		switch v := v.(type) {
		case int64:
			d, ok = seconds(v)
		case string:
			d, ok = parseDuration(v)
		}
		if !ok {
			return s.refuse("")
		}
		*p = d
	case *int64:
		var n int64
		ok := false
		switch v := v.(type) {
		case int64:
			n, ok = v, true
		case string:
			n, ok = parseSize(v)
		}
		if !ok {
			return s.refuse("")
		}
		*p = n
	case *string:
		str, ok := v.(string)
		if !ok {
			return s.refuse("a string is needed")
		}
		*p = str
	case *[]string:
		switch v := v.(type) {
		case string:
			*p = []string{v}
		case []any:
			list := make([]string, 0, len(v))
			for _, item := range v {
				str, ok := item.(string)
				if !ok {
					return s.refuse("a string or an array of strings is needed")
				}
				list = append(list, str)
			}
			*p = list
		default:
			return s.refuse("a string or an array of strings is needed")
		}
	}
	return s.check(c)
}

// check reports whether the current value of s in c is allowed.
func (s setting) check(c *Config) error {
	switch p := s.field(c).(type) {
	case *int:
		if *p < s.min || *p > s.max {
			return s.refuse("")
		}
	case *time.Duration:
		if *p < 0 || *p == 0 && !s.zeroOK || *p > s.maxDuration() {
			return s.refuse("")
		}
	case *int64:
		if *p < 0 || *p > MaxWorkerMemory {
			return s.refuse("")
		}
	case *string:
		if s.key == "forwarded_allow_ips" || s.key == "proxy_allow_from" {
			if _, err := serve.ParseProxies(*p); err != nil {
				return s.refuse("%v", err)
			}
		}
		if s.key == "error_log" && *p == "" {
			return s.refuse("the path is empty")
		}
		if s.key == "metrics_bind" && *p != "" {
			if err := checkAddr(*p); err != nil {
				return s.refuse("%v", err)
			}
		}
		if s.enum != nil && !slices.Contains(s.enum, *p) {
			return s.refuse("")
		}
		if strings.ContainsRune(*p, 0) {
			return s.refuse("it contains a NUL byte")
		}
	case *[]string:
		if len(*p) == 0 {
			return s.refuse("no address given")
		}
		for i, addr := range *p {
			if err := checkAddr(addr); err != nil {
				if len(*p) == 1 {
					return s.refuse("%v", err)
				}
				return s.refuse("address %q: %v", addr, err)
			}
			if slices.Contains((*p)[:i], addr) {
				return s.refuse("address %q is listed twice", addr)
			}
		}
	}
	if s.checkValue != nil {
		if err := s.checkValue(valueAt(s.field(c))); err != nil {
			return s.refuse("%v", err)
		}
	}
	return nil
}

// parseDuration parses a Go duration ("30s", "1m30s") or a whole number of
// seconds ("30"); ok is false for anything else. The range is left to check.
func parseDuration(s string) (d time.Duration, ok bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return seconds(n)
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// parseSize parses a number of bytes with an optional K, M, G or T suffix
// (either case, powers of 1024, "B" or "iB" after it allowed): "512M",
// "2GiB", "1048576". ok is false for anything else or on overflow; the
// range is left to check.
func parseSize(s string) (n int64, ok bool) {
	num := strings.TrimRight(s, "KMGTkmgtiBb")
	unit := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s[len(num):], "B"), "i"))
	shift := 0
	switch unit {
	case "":
		if s != num && s[len(num):] != "B" {
			return 0, false
		}
	case "K":
		shift = 10
	case "M":
		shift = 20
	case "G":
		shift = 30
	case "T":
		shift = 40
	default:
		return 0, false
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64>>shift {
		return 0, false
	}
	return v << shift, true
}

// formatSize writes n as parseSize reads it, in the largest unit that
// divides it: "10M", "1536K", "0".
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// seconds converts n seconds to a duration; ok is false when n is below 0
// or the duration would overflow. The setting's own range is left to
// check.
func seconds(n int64) (time.Duration, bool) {
	if n < 0 || n > math.MaxInt64/int64(time.Second) {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// checkAddr reports why addr is not a bind address, or nil.
func checkAddr(addr string) error {
	if addr == "" {
		return errors.New("the address is empty")
	}
	if network, path := serve.SplitAddr(addr); network == "unix" {
		switch {
		case !strings.HasPrefix(path, "/"):
			return errors.New("the unix socket path is not absolute")
		case strings.ContainsRune(path, 0):
			return errors.New("the unix socket path contains a NUL byte")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			if strings.Contains(addr, ",") {
				return fmt.Errorf("%s (give each address separately)", ae.Err)
			}
			return errors.New(ae.Err)
		}
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	switch {
	case host == "":
		return errors.New("the host is missing (0.0.0.0 or [::] listens on every interface)")
	case strings.Contains(host, ":"):
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return fmt.Errorf("host %q is not an IPv6 address", host)
		}
	case !isHostName(host):
		return fmt.Errorf("host %q is not an IP address or a host name", host)
	}
	return nil
}

// isHostName reports whether h is made of DNS name characters (letters,
// digits, '-', '_' and '.'); an IPv4 address passes too.
func isHostName(h string) bool {
	for _, r := range h {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return h != ""
}

// flagValues are the raw values of the flags given, by setting key.
type flagValues struct {
	text  map[string]string   // the last value of each flag given
	lists map[string][]string // every value of a repeatable flag
	own   map[string]string   // a command's own flags, by name ("true": a boolean given)
}

// parseFlags records the raw values of the flags in args: those of every
// setting of settings (none if nil) and --config; and own, a command's
// own flags. Values are checked later, in precedence order. It returns
// flag.ErrHelp itself for -h or --help, and an error naming the closest
// known flag for an unknown one.
func parseFlags(args []string, settings settingTable, own []ownFlag) (flagValues, error) {
	fv := flagValues{text: map[string]string{}, lists: map[string][]string{}, own: map[string]string{}}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var names []string
	if settings != nil {
		names = settings.flagNames()
		fs.Func("config", "TOML config file", func(v string) error {
			fv.text["config"] = v
			return nil
		})
		typed := settings.defaults(false)
		for _, s := range settings {
			name := strings.TrimPrefix(s.flag(), "--")
			switch s.field(&typed).(type) {
			case *bool:
				fs.BoolFunc(name, s.help, func(v string) error {
					fv.text[s.key] = v
					return nil
				})
			case *[]string:
				fs.Func(name, s.help, func(v string) error {
					fv.lists[s.key] = append(fv.lists[s.key], v)
					return nil
				})
			default:
				fs.Func(name, s.help, func(v string) error {
					fv.text[s.key] = v
					return nil
				})
			}
		}
	}
	for _, f := range own {
		names = append(names, "--"+f.name)
		set := func(v string) error {
			fv.own[f.name] = v
			return nil
		}
		if f.arg == "" {
			fs.BoolFunc(f.name, f.help, set)
		} else {
			fs.Func(f.name, f.help, set)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return fv, err
		}
		return fv, flagError(err, settings, names, own)
	}
	if fs.NArg() > 0 {
		arg := fs.Arg(0)
		if len(names) == 0 {
			return fv, fmt.Errorf("unexpected argument %q: this command takes none", arg)
		}
		if _, err := strconv.ParseBool(arg); err == nil {
			return fv, fmt.Errorf("unexpected argument %q: only flags are allowed (a boolean flag takes its value after =, as in --prod=%s)", arg, arg)
		}
		return fv, fmt.Errorf("unexpected argument %q: only flags are allowed", arg)
	}
	return fv, nil
}

// flagNames lists every setting's flag and --config, with their dashes.
func (t settingTable) flagNames() []string {
	names := []string{"--config"}
	for _, s := range t {
		names = append(names, s.flag())
	}
	return names
}

// flagError rewords the flag package's errors in our terms; names are the
// flags the command knows, of its settings and own, its own ones.
func flagError(err error, settings settingTable, names []string, own []ownFlag) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		name = "--" + strings.TrimLeft(name, "-")
		switch near := nearest(name, names); {
		case near != "":
			return fmt.Errorf("unknown flag %s (did you mean %s?)", name, near)
		case len(names) == 0:
			return fmt.Errorf("unknown flag %s: this command takes no flags", name)
		}
		return fmt.Errorf("unknown flag %s; flags: %s", name, strings.Join(names, ", "))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		name = strings.TrimLeft(name, "-")
		arg := "VALUE"
		if s, ok := settings.lookup(strings.ReplaceAll(name, "-", "_")); ok {
			arg = s.arg
		}
		for _, f := range own {
			if f.name == name {
				arg = f.arg
			}
		}
		return fmt.Errorf("flag --%s needs a value, as in --%s %s", name, name, arg)
	}
	return err
}

// knownEnv are SERVER_* variables that are not settings but are known:
// SERVER_CONFIG, SERVER_RELOAD (the dev server's rebuilds), and the CGI
// meta-variables of RFC 3875 §4.1, which another program on the host may
// set.
var knownEnv = []string{"SERVER_CONFIG", envReload, "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE"}

// unknownEnv returns a warning for each SERVER_* variable of environ
// ("KEY=value" entries) that names no setting, with the closest one when
// one is near: a misspelled variable would otherwise be ignored in
// silence, where a misspelled file key is refused. They are warnings, not
// errors: other programs may use the prefix.
func (t settingTable) unknownEnv(environ []string) []string {
	var known []string
	for _, s := range t {
		known = append(known, s.env())
	}
	var warnings []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "SERVER_") || slices.Contains(known, name) || slices.Contains(knownEnv, name) {
			continue
		}
		if near := nearest(name, append(known, "SERVER_CONFIG")); near != "" {
			warnings = append(warnings, fmt.Sprintf("environment variable %s is not a setting and is ignored; did you mean %s?", name, near))
		} else {
			warnings = append(warnings, fmt.Sprintf("environment variable %s is not a setting and is ignored (the settings are in --help)", name))
		}
	}
	sort.Strings(warnings)
	return warnings
}

// nearest returns the candidate closest to s, for a "did you mean" hint:
// within an edit distance of 1 for short names, 2 from 6 letters; else "".
func nearest(s string, candidates []string) string {
	letters := len(strings.TrimLeft(s, "-"))
	best, bestDist := "", min(2, max(1, letters/3))+1
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// fileEntry is one top-level key of the config file, in file order.
type fileEntry struct {
	key   string
	value any
}

// readConfigFile decodes the TOML file at path into its top-level entries.
func readConfigFile(path string) ([]fileEntry, error) {
	var m map[string]any
	md, err := toml.DecodeFile(path, &m)
	if err != nil {
		return nil, err
	}
	var entries []fileEntry
	seen := map[string]bool{}
	add := func(key string) {
		if !seen[key] {
			seen[key] = true
			entries = append(entries, fileEntry{key, m[key]})
		}
	}
	for _, k := range md.Keys() {
		add(k[0])
	}
	rest := make([]string, 0, len(m))
	for k := range m {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	for _, k := range rest {
		add(k)
	}
	return entries, nil
}

// load builds the effective Config from the arguments after the subcommand
// (e.g. ["--prod","--workers","2"]) and the environment (getenv, normally os.Getenv).
// Precedence: flag > env (SERVER_<NAME>) > TOML file (--config / SERVER_CONFIG) > mode default.
//
// The mode (prod) is decided first, from the same sources, since it picks
// the defaults. An empty environment variable counts as unset; unknown
// SERVER_* variables are ignored here, as other tools may set some (Main
// warns of them: unknownEnv). Repeated
// --bind flags replace the addresses from lower sources. For -h or --help,
// load returns flag.ErrHelp itself; the caller prints usage.
//
// Every error names where the value came from, the value and what is
// allowed; all bad values are reported at once (joined by newlines).
func (t settingTable) load(args []string, getenv func(string) string) (Config, error) {
	flags, err := parseFlags(args, t, nil)
	if err != nil {
		return Config{}, err
	}
	return t.configFrom(flags, getenv)
}

// configFrom is load once the flags are parsed.
func (t settingTable) configFrom(flags flagValues, getenv func(string) string) (Config, error) {
	var err error
	sources := map[string]string{}
	path, pathSource := getenv("SERVER_CONFIG"), "env SERVER_CONFIG"
	if v, ok := flags.text["config"]; ok {
		path, pathSource = v, "flag --config"
	}
	var file []fileEntry
	if path != "" {
		sources["config"] = pathSource
		if file, err = readConfigFile(path); err != nil {
			return Config{}, fmt.Errorf("config file %s (%s): %w", path, pathSource, err)
		}
	}

	var errs []error
	fileValues := map[string]any{}
	for _, e := range file {
		if _, ok := t.lookup(e.key); ok {
			fileValues[e.key] = e.value
			continue
		}
		switch {
		case e.key == "config":
			errs = append(errs, fmt.Errorf("config file %s: unknown key %q: give the config file with --config or SERVER_CONFIG", path, e.key))
		default:
			hint := ""
			if near := nearest(e.key, t.keys()); near != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", near)
			}
			errs = append(errs, fmt.Errorf("config file %s: unknown key %q%s; known keys: %s", path, e.key, hint, strings.Join(t.keys(), ", ")))
		}
	}

	// apply overlays s in c with the file, the environment and the flags,
	// in that order, so that the last one given wins.
	apply := func(c *Config, s setting) {
		if v, ok := fileValues[s.key]; ok {
			if err := s.parseTOML(c, v); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s = %s: %w", path, s.key, s.hide(tomlValue(v)), err))
			} else {
				sources[s.key] = "file"
			}
		}
		if v := getenv(s.env()); v != "" {
			if err := s.parseText(c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", s.env(), s.hide(strconv.Quote(v)), err))
			} else {
				sources[s.key] = "env " + s.env()
			}
		}
		if v, ok := flags.text[s.key]; ok {
			if err := s.parseText(c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", s.flag(), s.hide(strconv.Quote(v)), err))
			} else {
				sources[s.key] = "flag " + s.flag()
			}
		}
		if vs := flags.lists[s.key]; len(vs) > 0 {
			ok := true
			for i, v := range vs {
				if err := checkAddr(v); err != nil {
					errs = append(errs, fmt.Errorf("%s %q: %w", s.flag(), v, &refusal{err.Error(), s.want}))
					ok = false
				} else if slices.Contains(vs[:i], v) {
					errs = append(errs, fmt.Errorf("%s %q: %w", s.flag(), v, &refusal{"given twice", s.want}))
					ok = false
				}
			}
			if ok {
				*s.field(c).(*[]string) = slices.Clone(vs)
				sources[s.key] = "flag " + s.flag()
			}
		}
	}

	for _, s := range t {
		sources[s.key] = "default"
	}
	// The mode comes first: it picks the defaults the rest overlays.
	var mode Config
	prod, _ := t.lookup("prod")
	apply(&mode, prod)
	c := t.defaults(mode.Prod)
	c.File = path
	for _, s := range t {
		if s.key != "prod" {
			apply(&c, s)
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	c.sources = sources
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// keys lists the TOML keys.
func (t settingTable) keys() []string {
	keys := make([]string, len(t))
	for i, s := range t {
		keys[i] = s.key
	}
	return keys
}

// validate reports every invalid field of c, naming its key, value and source.
func (c Config) validate() error {
	var errs []error
	for _, s := range c.settings {
		if err := s.check(&c); err != nil {
			errs = append(errs, fmt.Errorf("%s = %s%s: %w", s.key, s.shown(c), c.from(s.key), err))
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, fmt.Errorf("certfile = %s%s and keyfile = %s%s: give both or neither",
			tomlString(c.CertFile), c.from("certfile"), tomlString(c.KeyFile), c.from("keyfile")))
	}
	if c.Group != "" && c.User == "" {
		errs = append(errs, fmt.Errorf("group = %s%s needs user", tomlString(c.Group), c.from("group")))
	}
	if c.MaxRequestsJitter > 0 && c.MaxRequests == 0 {
		errs = append(errs, fmt.Errorf("max_requests_jitter = %d%s needs max_requests above 0, but max_requests = 0%s: set max_requests or drop the jitter",
			c.MaxRequestsJitter, c.from("max_requests_jitter"), c.from("max_requests")))
	}
	return errors.Join(errs...)
}

// from returns " (source)" for key, or "" when the source is unknown.
func (c Config) from(key string) string {
	if src := c.sources[key]; src != "" {
		return " (" + src + ")"
	}
	return ""
}

// hide replaces a secret setting's value in a message.
func (s setting) hide(v string) string {
	switch {
	case s.secret:
		return "(hidden)"
	case s.credentials:
		v = urlPassword.ReplaceAllString(v, "${1}(hidden)@")
		return passwordParam.ReplaceAllString(v, "${1}(hidden)")
	}
	return v
}

// urlPassword and passwordParam find the password of a database URL, as
// user:PASSWORD@ and as libpq's password=PASSWORD parameter.
var (
	urlPassword   = regexp.MustCompile(`(://[^/@:"]*:)[^/@"]*@`)
	passwordParam = regexp.MustCompile(`([?&]password=)[^&"]*`)
)

// shown is the value of s in c for a message.
func (s setting) shown(c Config) string { return s.hide(s.value(c)) }

// value returns the value of s in c as a TOML value.
func (s setting) value(c Config) string {
	switch p := s.field(&c).(type) {
	case *bool:
		return strconv.FormatBool(*p)
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *time.Duration:
		return tomlString(formatDuration(*p))
	case *string:
		return tomlString(*p)
	case *[]string:
		quoted := make([]string, len(*p))
		for i, v := range *p {
			quoted[i] = tomlString(v)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	panic("server: setting " + s.key + " has an unknown type")
}

// formatDuration is d.String() without the zero minutes and seconds:
// "1m", "1h", "1h30m", "1m15s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// tomlString quotes s as a TOML basic string. Invalid UTF-8 comes out as
// U+FFFD; writeConfig refuses such strings before.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// tomlValue renders a decoded TOML value for an error message.
func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return tomlString(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case []any:
		items := make([]string, len(v))
		for i, item := range v {
			items[i] = tomlValue(item)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case map[string]any, []map[string]any:
		return "(a table)"
	}
	return fmt.Sprint(v)
}

// writeConfig prints the effective config as TOML that could be pasted into a --config file,
// one `key = value` line per setting in a fixed order, each followed by a comment naming where
// the value came from (default, file, env SERVER_X, flag --x).
//
// It returns an error, and writes nothing, when a string is not valid UTF-8
// (TOML cannot hold it), and otherwise the writer's error.
func writeConfig(w io.Writer, c Config) error {
	for _, s := range c.settings {
		var strs []string
		switch p := s.field(&c).(type) {
		case *string:
			strs = []string{*p}
		case *[]string:
			strs = *p
		}
		for _, str := range strs {
			if !utf8.ValidString(str) {
				return fmt.Errorf("%s %q is not valid UTF-8, which a TOML file cannot hold", s.key, str)
			}
		}
	}
	var b bytes.Buffer
	b.WriteString("# Effective configuration. Load it with --config FILE.\n")
	if c.File != "" {
		fmt.Fprintf(&b, "# Read from config file %s%s.\n", tomlString(c.File), c.from("config"))
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, s := range c.settings {
		if s.secret {
			// Never printed: say only whether it is set.
			state := "not set"
			if v := *s.field(&c).(*string); v != "" {
				state = fmt.Sprintf("set, %d bytes", len(v))
			}
			fmt.Fprintf(tw, "# %s = (%s)", s.key, state)
		} else {
			fmt.Fprintf(tw, "%s = %s", s.key, s.shown(c))
		}
		if src := c.sources[s.key]; src != "" {
			fmt.Fprintf(tw, "\t# %s", src)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

// usage prints the flags of t with their defaults in both modes.
func (t settingTable) usage(w io.Writer) {
	fmt.Fprint(w, `Flags. Each is also an environment variable SERVER_<NAME> (--keep-alive: SERVER_KEEP_ALIVE)
and a key in the TOML file given by --config (keep_alive); a flag beats the environment,
which beats the file, which beats the mode default. Durations are Go durations (1m30s)
or whole seconds (90); sizes are bytes with an optional K, M, G or T suffix (10M).

`)
	dev, prod := t.defaults(false), t.defaults(true)
	show := func(s setting, c Config) string {
		switch v := s.field(&c).(type) {
		case *string:
			if *v == "" {
				return "none"
			}
			return *v
		case *[]string:
			return strings.Join(*v, ",")
		case *time.Duration:
			return formatDuration(*v)
		case *int:
			if s.size {
				return formatSize(int64(*v))
			}
		case *int64:
			return formatSize(*v)
		}
		return s.value(c)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FLAG\tDEV\tPROD\tMEANING")
	fmt.Fprintln(tw, "  --config PATH\tnone\tnone\tTOML file of the settings below (SERVER_CONFIG; not a file key)")
	for _, s := range t {
		name := s.flag()
		if s.arg != "" {
			name += " " + s.arg
		}
		devDefault, prodDefault := show(s, dev), show(s, prod)
		switch s.key {
		case "prod":
			devDefault, prodDefault = "", "--prod"
		case "workers":
			prodDefault = fmt.Sprintf("%d (NumCPU)", prod.Workers)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", name, devDefault, prodDefault, s.help)
	}
	tw.Flush()
}

// isLoopback reports whether addr is a unix socket or a loopback address;
// a host name other than localhost is not known to be one.
func isLoopback(addr string) bool {
	if network, _ := serve.SplitAddr(addr); network == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
