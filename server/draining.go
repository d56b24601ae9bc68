package server

import (
	"net/http"

	"github.com/remuda/remuda/internal/serve"
)

// Draining returns a channel that is closed when the process serving r
// starts to drain: a prod worker retired by a HUP, a TTOU, a recycle
// (--timeout, --max-requests, --max-worker-memory) or a USR2's hand-over, or
// stopped by TERM; the dev server at a stop or a code reload. A handler
// that holds a connection open (a WebSocket, a Server-Sent Events stream,
// a long poll) selects on it to end that connection its own way: a
// WebSocket close frame with status 1001 ("going away"), after which the
// client reconnects to a process that serves; a final event. See the
// package doc's "Long-lived connections" for both.
//
// The drain waits for those connections, as for any request in flight,
// and the process exits once they have all ended, or at --graceful-timeout
// from the start of the drain, whichever comes first; there it closes the
// ones still open, and its "drained" log line counts them: hijacked_cut
// (WebSockets the app had not closed) and dropped (requests in flight,
// streams included). The dev server waits at most a second for the
// WebSockets, so that a browser tab the app does not end cannot hold a
// code reload back. With --shutdown-delay, a TERM closes the channel at
// the end of the delay, when the drain starts, not at the signal: during
// the delay the process serves as usual, and so do its long-lived
// connections.
//
// A handler that starts during the drain finds the channel closed already.
// Outside a Remuda server, as under net/http/httptest, it returns nil: a
// channel that is never closed, so a select on it waits for its other
// cases.
func Draining(r *http.Request) <-chan struct{} {
	return serve.Draining(r.Context())
}
