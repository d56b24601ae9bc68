package workers

import (
	"encoding/json"
	"time"
)

// HeartbeatInterval is how often a worker reports to its master.
const HeartbeatInterval = time.Second

// Config is what a generation of workers runs with. A HUP replaces it
// whole: the master starts a new generation with the new Config and
// retires the old one once the new is ready. Its zero value runs one
// worker with the defaults below.
//
// Its JSON keys are the server's setting names (graceful_timeout,
// worker_connections…): server.Config embeds it, so that each of these
// settings is declared once and a server.Config encodes as one flat object.
type Config struct {
	// Workers is how many worker processes to run. If zero, one.
	Workers int `json:"workers"`
	// Timeout bounds one request: past it the client gets 503 and the
	// worker is recycled. A worker silent for Timeout (but never less than
	// three heartbeats) gets SIGABRT, which makes the Go runtime dump every
	// goroutine's stack into the log, then SIGKILL. If zero, requests are
	// not bounded and silence is limited to three heartbeats.
	Timeout time.Duration `json:"timeout"`
	// GracefulTimeout is how long a draining worker may finish its requests
	// before it is killed. If zero, DefaultGracefulTimeout.
	GracefulTimeout time.Duration `json:"graceful_timeout"`
	// ShutdownDelay is how long a stop by TERM first keeps serving: each
	// worker answers its readiness endpoint (ReadinessPath) 503 from the
	// TERM on, serves every other request as before and goes on accepting
	// new connections, so that load balancers that probe readiness take it
	// out of rotation before it stops accepting; then it drains, and
	// GracefulTimeout counts from there. A fast stop (INT, QUIT), a
	// retirement (HUP, TTOU, a recycle) and a worker whose master is gone
	// skip it. If zero, a TERM drains at once.
	ShutdownDelay time.Duration `json:"shutdown_delay"`
	// BootTimeout is how long a new worker has to report ready; kept apart
	// from Timeout so that a slow boot is never mistaken for a hang. If
	// zero, DefaultBootTimeout.
	BootTimeout time.Duration `json:"boot_timeout"`
	// KeepAlive is the idle timeout of keep-alive connections. If zero,
	// the HTTP layer's default (75 s: above nginx's upstream
	// keepalive_timeout of 60 s, so a proxy never reuses a connection the
	// worker is closing).
	KeepAlive time.Duration `json:"keep_alive"`
	// MaxRequests recycles a worker after MaxRequests plus a random
	// 0..MaxRequestsJitter requests, so workers do not all restart at once.
	// If zero, workers are never recycled for their request count.
	MaxRequests       int `json:"max_requests"`
	MaxRequestsJitter int `json:"max_requests_jitter"`
	// MaxMemory recycles a worker whose resident set (RSS, read from
	// /proc at each heartbeat) is above MaxMemory bytes: a replacement is
	// started, and the worker drains once it is ready. A leak then costs a
	// restart, not the host. If zero, memory is not watched.
	MaxMemory int64 `json:"max_worker_memory"`
	// Connections caps the connections one worker holds open at once, idle
	// keep-alive ones included (Gunicorn's worker_connections). Past it the
	// worker stops accepting and new connections wait in the kernel's
	// accept queue for a less busy worker, which makes the accept queue a
	// measure of saturation (remuda_accept_queue_length). If zero,
	// DefaultConnections.
	Connections int `json:"worker_connections"`
	// MaxBodySize caps request bodies, in bytes: larger ones get 413 (see
	// serve.Options.MaxBodySize). If zero, bodies are not capped.
	MaxBodySize int64 `json:"max_body_size"`
	// LimitRequestLine, LimitRequestFields and LimitRequestFieldSize bound
	// each request head as Gunicorn's settings of those names do, where
	// requests are checked (plain HTTP; see Worker): a request line
	// longer than LimitRequestLine bytes gets 414, more than
	// LimitRequestFields header fields or a field line longer than
	// LimitRequestFieldSize bytes get 431. Zero has Gunicorn's meaning of
	// 0: no request-line cap below the 64 KiB head cap, 32768 fields, 8190
	// bytes a field line. Gunicorn's defaults are 4094, 100 and 8190.
	LimitRequestLine      int `json:"limit_request_line"`
	LimitRequestFields    int `json:"limit_request_fields"`
	LimitRequestFieldSize int `json:"limit_request_field_size"`
	// App is handed to every worker as it is; its meaning belongs to the
	// Boot function (the server package puts its whole config here).
	App json.RawMessage `json:"app,omitempty"`
}

// Defaults for Config's zero values.
const (
	DefaultGracefulTimeout = 30 * time.Second
	DefaultBootTimeout     = 30 * time.Second
	DefaultConnections     = 1000
)

func (c Config) workers() int { return max(c.Workers, 1) }

func (c Config) connections() int {
	if c.Connections <= 0 {
		return DefaultConnections
	}
	return c.Connections
}

func (c Config) gracefulTimeout() time.Duration {
	if c.GracefulTimeout == 0 {
		return DefaultGracefulTimeout
	}
	return c.GracefulTimeout
}

func (c Config) bootTimeout() time.Duration {
	if c.BootTimeout == 0 {
		return DefaultBootTimeout
	}
	return c.BootTimeout
}

// silenceLimit is how long a ready worker may go without a frame.
func (c Config) silenceLimit() time.Duration {
	return max(c.Timeout, 3*HeartbeatInterval)
}
