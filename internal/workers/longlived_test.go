package workers_test

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
	"github.com/remuda/remuda/internal/workers"
	"github.com/remuda/remuda/server"
)

// Long-lived connections through a HUP: WebSockets and Server-Sent Events
// streams that the app ends when its worker drains (server.Draining), and
// WebSockets of an app that takes no notice, which the drain cuts at the
// graceful timeout. The WebSocket protocol (RFC 6455) is written here by
// hand, as little of it as the test needs: unfragmented text and close
// frames.

// wsGUID is the key suffix of RFC 6455's opening handshake.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Frame opcodes.
const (
	wsText  = 0x1
	wsClose = 0x8
)

// wsGoingAway is the close code of a server going down (RFC 6455 7.4.1).
const wsGoingAway = 1001

// longLivedRoutes adds the test app's long-lived routes: /ws, /events.
func longLivedRoutes(app *server.App) {
	app.HandleFunc("GET /ws", wsEcho)
	app.HandleFunc("GET /events", events)
}

// wsEcho is a WebSocket echo server. It first sends its pid. When its
// worker drains it sends a close frame with status 1001, "going away",
// and closes the connection once the client answered with its own close
// frame; with ?ignore it takes no notice of the drain.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	ignore := r.URL.Query().Has("ignore")
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + wsAccept(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	var mu sync.Mutex
	closeSent := false
	send := func(op byte, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		if closeSent {
			return
		}
		closeSent = op == wsClose
		wsWrite(c, op, p, false)
	}
	send(wsText, []byte(strconv.Itoa(os.Getpid())))
	done := make(chan struct{})
	defer close(done)
	if !ignore {
		go func() {
			select {
			case <-server.Draining(r):
				send(wsClose, wsClosePayload(wsGoingAway))
			case <-done:
			}
		}()
	}
	for {
		op, p, err := wsRead(brw.Reader)
		if err != nil {
			return
		}
		switch op {
		case wsText:
			send(wsText, p)
		case wsClose:
			// The client's answer to ours, or its own close: answered,
			// unless ours went first. The server closes the TCP
			// connection first (RFC 6455 7.1.1).
			send(wsClose, p)
			return
		}
	}
}

// events is a Server-Sent Events stream: its first event is the worker's
// pid, its last "bye", sent when the worker drains.
func events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "data: %d\n\n", os.Getpid())
	http.NewResponseController(w).Flush()
	select {
	case <-server.Draining(r):
		fmt.Fprint(w, "event: bye\ndata: draining\n\n")
	case <-r.Context().Done():
	}
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func wsClosePayload(code uint16) []byte {
	return binary.BigEndian.AppendUint16(nil, code)
}

// wsWrite writes one unfragmented frame; a client masks its frames.
func wsWrite(w io.Writer, op byte, payload []byte, mask bool) error {
	if len(payload) > 125 {
		return errors.New("ws: payload over 125 bytes")
	}
	b := []byte{0x80 | op, byte(len(payload))}
	if !mask {
		b = append(b, payload...)
	} else {
		var key [4]byte
		rand.Read(key[:])
		b[1] |= 0x80
		b = append(b, key[:]...)
		for i, c := range payload {
			b = append(b, c^key[i%4])
		}
	}
	_, err := w.Write(b)
	return err
}

// wsRead reads one unfragmented frame of up to 125 bytes, unmasking it.
func wsRead(r *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 || h[1]&0x7f > 125 {
		return 0, nil, fmt.Errorf("ws: unsupported frame header % x", h)
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, h[1]&0x7f)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, payload, nil
}

// wsConn is the client side of a WebSocket to the test app.
type wsConn struct {
	c   net.Conn
	br  *bufio.Reader
	pid int // the worker's, its first message
}

// wsDial opens a WebSocket to addr's path, reads the worker's pid and
// checks one echo. It never retries.
func wsDial(addr, path string) (*wsConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	ws := &wsConn{c: c, br: bufio.NewReader(c)}
	if err := ws.open(addr, path); err != nil {
		c.Close()
		return nil, err
	}
	return ws, nil
}

func (ws *wsConn) open(addr, path string) error {
	ws.c.SetDeadline(time.Now().Add(5 * time.Second))
	defer ws.c.SetDeadline(time.Time{})
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	fmt.Fprintf(ws.c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, key)
	resp, err := http.ReadResponse(ws.br, nil)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		return fmt.Errorf("handshake: %s, Sec-WebSocket-Accept %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	op, p, err := wsRead(ws.br)
	if err != nil || op != wsText {
		return fmt.Errorf("first message: opcode %d %q %v, want the pid", op, p, err)
	}
	if ws.pid, err = strconv.Atoi(string(p)); err != nil {
		return fmt.Errorf("first message %q: %w", p, err)
	}
	if err := wsWrite(ws.c, wsText, []byte("ping"), true); err != nil {
		return err
	}
	if op, p, err := wsRead(ws.br); err != nil || op != wsText || string(p) != "ping" {
		return fmt.Errorf("echo: opcode %d %q %v, want \"ping\"", op, p, err)
	}
	return nil
}

// wsEnd is how a client's WebSocket ended.
type wsEnd struct {
	closeAt time.Time // the server's close frame arrived (zero: none)
	code    int       // its status
	endAt   time.Time // the TCP connection ended
	err     error     // what went wrong, if anything
}

// await waits up to timeout for the server to end the WebSocket. After a
// close frame it answers with its own, then expects the connection's end.
func (ws *wsConn) await(timeout time.Duration) (e wsEnd) {
	defer ws.c.Close()
	ws.c.SetDeadline(time.Now().Add(timeout))
	op, p, err := wsRead(ws.br)
	if err != nil {
		e.endAt = time.Now()
		if !errors.Is(err, io.EOF) {
			e.err = err
		}
		return e
	}
	e.closeAt = time.Now()
	if op != wsClose || len(p) < 2 {
		e.err = fmt.Errorf("got opcode %d %q, want a close frame", op, p)
		return e
	}
	e.code = int(binary.BigEndian.Uint16(p))
	if err := wsWrite(ws.c, wsClose, p[:2], true); err != nil {
		e.err = fmt.Errorf("answer the close frame: %w", err)
		return e
	}
	if _, err := ws.br.ReadByte(); !errors.Is(err, io.EOF) {
		e.err = fmt.Errorf("after the close handshake: read %v, want EOF", err)
	}
	e.endAt = time.Now()
	return e
}

// logTime is the time of a JSON log line.
func logTime(t *testing.T, l proctest.Line) time.Time {
	t.Helper()
	s, _ := l.Fields["ts"].(string)
	at, err := time.Parse("2006-01-02T15:04:05.000Z0700", s)
	if err != nil {
		t.Fatalf("line %s: ts: %v", l.Raw, err)
	}
	return at
}

// dialAll opens n WebSockets to path, all served by the worker want; it
// fails the test on any failure.
func dialAll(t *testing.T, addr, path string, n, want int) []*wsConn {
	t.Helper()
	var all []*wsConn
	for i := range n {
		ws, err := wsDial(addr, path)
		if err != nil {
			t.Fatalf("WebSocket %d of %d to %s: %v", i+1, n, path, err)
		}
		t.Cleanup(func() { ws.c.Close() })
		if ws.pid != want {
			t.Fatalf("WebSocket %d served by pid %d, want the only worker %d", i+1, ws.pid, want)
		}
		all = append(all, ws)
	}
	return all
}

// awaitAll waits for every WebSocket's end, concurrently.
func awaitAll(all []*wsConn, timeout time.Duration) []wsEnd {
	ends := make([]wsEnd, len(all))
	var wg sync.WaitGroup
	for i, ws := range all {
		wg.Go(func() { ends[i] = ws.await(timeout) })
	}
	wg.Wait()
	return ends
}

// workerLine waits for the line msg of the worker pid.
func workerLine(t *testing.T, p *proctest.Proc, pid int, msg string, timeout time.Duration) proctest.Line {
	t.Helper()
	return p.WaitFor(t, timeout, 1, fmt.Sprintf("%q of worker %d", msg, pid), func(l proctest.Line) bool {
		return strings.HasPrefix(l.Msg(), msg) && l.Int("pid") == pid
	})[0]
}

// workerExit waits for the master's line on the exit of worker pid.
func workerExit(t *testing.T, p *proctest.Proc, pid int, timeout time.Duration) proctest.Line {
	t.Helper()
	return p.WaitFor(t, timeout, 1, fmt.Sprintf("the exit of worker %d", pid), func(l proctest.Line) bool {
		return (l.Msg() == "worker exited" || l.Msg() == "worker killed") && l.Int("worker_pid") == pid
	})[0]
}

// TestHUPEndsWebSocketsGracefully: 50 WebSockets and 10 Server-Sent Events
// streams on the one worker, whose app ends them when it drains. On HUP
// each WebSocket gets a close frame with status 1001 within 1 s of the
// drain's start and each stream its last event; the old worker exits once
// they have ended, long before the graceful timeout, and its drained line
// counts the WebSockets as closed, none cut; a new WebSocket reaches the
// new generation.
func TestHUPEndsWebSocketsGracefully(t *testing.T) {
	skipIfShort(t)
	const graceful = 10 * time.Second
	p, url := prod(t, nil, "--workers", "1", "--graceful-timeout", graceful.String())
	addr := strings.TrimPrefix(url, "http://")
	old := proctest.Children(p.Pid())[0]
	const nws, nsse = 50, 10
	all := dialAll(t, addr, "/ws", nws, old)
	streams := make([]*bufio.Reader, nsse)
	for i := range streams {
		streams[i] = openStream(t, addr, old)
	}

	type sseEnd struct {
		byeAt time.Time
		err   error
	}
	sseEnds := make([]sseEnd, nsse)
	var wg sync.WaitGroup
	for i, br := range streams {
		wg.Go(func() {
			rest, err := io.ReadAll(br)
			sseEnds[i].byeAt = time.Now()
			if err != nil || string(rest) != "event: bye\ndata: draining\n\n" {
				sseEnds[i].err = fmt.Errorf("stream after its first event: %q %v, want the bye event, then its end", rest, err)
			}
		})
	}
	hupAt := time.Now()
	p.Signal(t, syscall.SIGHUP)
	ends := awaitAll(all, graceful+5*time.Second)
	wg.Wait()
	p.WaitReady(t, 2)

	drainAt := logTime(t, workerLine(t, p, old, "draining", 5*time.Second))
	failed, lastEnd, worstWS, worstSSE := 0, time.Time{}, time.Duration(0), time.Duration(0)
	for i, e := range ends {
		switch {
		case e.err != nil:
			t.Errorf("WebSocket %d: %v", i+1, e.err)
		case e.closeAt.IsZero():
			t.Errorf("WebSocket %d: ended after %v without a close frame", i+1, e.endAt.Sub(hupAt))
		case e.code != wsGoingAway:
			t.Errorf("WebSocket %d: close frame with status %d, want %d", i+1, e.code, wsGoingAway)
		default:
			worstWS = max(worstWS, e.closeAt.Sub(drainAt))
			if e.endAt.After(lastEnd) {
				lastEnd = e.endAt
			}
			continue
		}
		failed++
	}
	for i, e := range sseEnds {
		if e.err != nil {
			failed++
			t.Errorf("stream %d: %v", i+1, e.err)
		}
		worstSSE = max(worstSSE, e.byeAt.Sub(drainAt))
	}
	t.Logf("HUP with %d WebSockets and %d SSE streams: %d failed; the drain began %v after the HUP; the last close frame came %v after it, the last bye event %v",
		nws, nsse, failed, drainAt.Sub(hupAt).Round(time.Millisecond), worstWS.Round(time.Millisecond), worstSSE.Round(time.Millisecond))
	if worst := max(worstWS, worstSSE); worst > time.Second {
		t.Errorf("the last close frame or bye event came %v after the drain began, want within 1s", worst)
	}

	exit := workerExit(t, p, old, graceful+5*time.Second)
	exitAt := logTime(t, exit)
	t.Logf("old worker exited %v after the drain began, %v after the last WebSocket closed (graceful timeout %v)",
		exitAt.Sub(drainAt).Round(time.Millisecond), exitAt.Sub(lastEnd).Round(time.Millisecond), graceful)
	// Once its connections ended, not at its graceful timeout.
	if exit.Msg() != "worker exited" || exitAt.Sub(drainAt) >= graceful {
		t.Errorf("old worker: %s %v after the drain began, want it to exit by itself once its connections ended, before the %v graceful timeout", exit.Msg(), exitAt.Sub(drainAt), graceful)
	}
	drained := workerLine(t, p, old, "drained", time.Second)
	t.Logf("old worker: %s", drained.Raw)
	if drained.Int("hijacked_closed") != nws || drained.Int("hijacked_cut") != 0 || drained.Int("dropped") != 0 {
		t.Errorf("drained line %s, want hijacked_closed %d, hijacked_cut 0, dropped 0", drained.Raw, nws)
	}

	ws, err := wsDial(addr, "/ws")
	if err != nil {
		t.Fatalf("a WebSocket after the HUP: %v", err)
	}
	defer ws.c.Close()
	if now := proctest.Children(p.Pid()); ws.pid == old || !slices.Contains(now, ws.pid) {
		t.Errorf("a WebSocket after the HUP served by pid %d, want one of the new generation %v", ws.pid, now)
	}
}

// openStream opens a Server-Sent Events stream and reads its first event,
// which says which worker serves it.
func openStream(t *testing.T, addr string, want int) *bufio.Reader {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != fmt.Sprintf("data: %d\n", want) {
		t.Fatalf("stream's first event: %q %v, want the pid of the only worker %d", first, err, want)
	}
	if blank, err := br.ReadString('\n'); blank != "\n" {
		t.Fatalf("stream's first event ends with %q %v, want a blank line", blank, err)
	}
	return br
}

// TestHUPCutsIgnoredWebSocketsAtGracefulTimeout: 50 WebSockets of an app
// that takes no notice of the drain. The old worker exits by itself at the
// graceful timeout, not before, having closed them; its drained line says
// it cut all 50.
func TestHUPCutsIgnoredWebSocketsAtGracefulTimeout(t *testing.T) {
	skipIfShort(t)
	const graceful = 2 * time.Second
	p, url := prod(t, nil, "--workers", "1", "--graceful-timeout", graceful.String())
	addr := strings.TrimPrefix(url, "http://")
	old := proctest.Children(p.Pid())[0]
	const n = 50
	all := dialAll(t, addr, "/ws?ignore", n, old)
	p.Signal(t, syscall.SIGHUP)
	ends := awaitAll(all, graceful+5*time.Second)
	drainAt := logTime(t, workerLine(t, p, old, "draining", 5*time.Second))
	exit := workerExit(t, p, old, graceful+5*time.Second)
	exitAt := logTime(t, exit)

	first, last := time.Time{}, time.Time{}
	for i, e := range ends {
		switch {
		case e.err != nil:
			t.Errorf("WebSocket %d: %v, want an EOF at the graceful timeout", i+1, e.err)
		case !e.closeAt.IsZero():
			t.Errorf("WebSocket %d: a close frame from an app that ignores the drain", i+1)
		}
		if first.IsZero() || e.endAt.Before(first) {
			first = e.endAt
		}
		if e.endAt.After(last) {
			last = e.endAt
		}
	}
	t.Logf("HUP with %d WebSockets ignoring the drain, --graceful-timeout %v: cut %v to %v after the drain began; %q %v after it",
		n, graceful, first.Sub(drainAt).Round(time.Millisecond), last.Sub(drainAt).Round(time.Millisecond), exit.Msg(), exitAt.Sub(drainAt).Round(time.Millisecond))
	// The log's times have milliseconds: a little slack below.
	if first.Sub(drainAt) < graceful-10*time.Millisecond {
		t.Errorf("first WebSocket cut %v after the drain began, want at the %v graceful timeout", first.Sub(drainAt), graceful)
	}
	// By itself, not killed by the master; when, by its own clock: on a
	// busy machine its log lines and the clients' EOFs may come seconds
	// after the cut (CI saw 3 s).
	if exit.Msg() != "worker exited" || exit.Fields["status"] != "exit status 0" {
		t.Errorf("old worker: %s, want it to exit by itself (exit status 0)", exit.Raw)
	}
	drained := workerLine(t, p, old, "drained", time.Second)
	t.Logf("old worker: %s", drained.Raw)
	if drained.Int("hijacked_cut") != n || drained.Int("hijacked_closed") != 0 || drained.Fields["level"] != "warn" {
		t.Errorf("drained line %s, want a warning with hijacked_cut %d, hijacked_closed 0", drained.Raw, n)
	}
	if d, _ := drained.Fields["duration"].(float64); d < graceful.Seconds() || d > (graceful+time.Second).Seconds() {
		t.Errorf("drain took %.3fs by the worker's clock, want the %v graceful timeout", d, graceful)
	}
}

// serveSolo runs a Solo worker that serves wsEcho on 127.0.0.1 with
// graceful as its graceful timeout, and returns its address, its Handover
// channel and where Run's error comes.
func serveSolo(t *testing.T, graceful time.Duration) (addr string, handover chan struct{}, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handover, serving := make(chan struct{}), make(chan struct{})
	solo := &workers.Solo{
		Config:    workers.Config{GracefulTimeout: graceful},
		Listeners: []net.Listener{ln},
		OnServing: func() { close(serving) },
		Handover:  handover,
	}
	errc := make(chan error, 1)
	go func() {
		_, err := solo.Run(func() (*workers.Worker, error) { return &workers.Worker{Handler: http.HandlerFunc(wsEcho)}, nil })
		errc <- err
	}()
	<-serving
	return ln.Addr().String(), handover, errc
}

// TestSoloHandoverEndsWebSocket: the dev server's worker (Solo) tells the
// app of a handover (a code reload) as a prod worker does, and waits for
// its WebSocket's close handshake.
func TestSoloHandoverEndsWebSocket(t *testing.T) {
	addr, handover, done := serveSolo(t, 10*time.Second)
	ws, err := wsDial(addr, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	close(handover)
	e := ws.await(5 * time.Second)
	if e.err != nil || e.closeAt.IsZero() || e.code != wsGoingAway {
		t.Fatalf("WebSocket at the handover: %+v, want a close frame with status %d", e, wsGoingAway)
	}
	t.Logf("close frame %v after the handover", e.closeAt.Sub(at).Round(time.Millisecond))
	if d := e.closeAt.Sub(at); d > time.Second {
		t.Errorf("close frame %v after the handover, want within 1s", d)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still draining 5s after its only WebSocket closed")
	}
}

// TestSoloHandoverCutsIgnoredWebSocket: a WebSocket whose app ignores the
// drain holds the dev server's code reload back for SoloHijackedGrace, not
// for its graceful timeout: it is closed then, and Run returns.
func TestSoloHandoverCutsIgnoredWebSocket(t *testing.T) {
	addr, handover, done := serveSolo(t, 20*time.Second)
	ws, err := wsDial(addr, "/ws?ignore")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	close(handover)
	e := ws.await(10 * time.Second)
	if e.err != nil || !e.closeAt.IsZero() || e.endAt.IsZero() {
		t.Fatalf("ignored WebSocket at the handover: %+v, want its connection closed without a close frame", e)
	}
	cut := e.endAt.Sub(at)
	t.Logf("ignored WebSocket closed %v after the handover", cut.Round(time.Millisecond))
	if cut < workers.SoloHijackedGrace || cut > 5*time.Second {
		t.Errorf("ignored WebSocket closed %v after the handover, want after %v and long before the 20s graceful timeout", cut, workers.SoloHijackedGrace)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still draining 5s after its only WebSocket was closed")
	}
}

// TestShutdownDelayKeepsWebSocketsOpen: with --shutdown-delay, a TERM
// tells the app of the drain at the end of the delay, not at the signal:
// the WebSockets get their close frames once the drain begins, a delay
// after the TERM, and the master exits 0 once they have closed.
func TestShutdownDelayKeepsWebSocketsOpen(t *testing.T) {
	skipIfShort(t)
	const delay = time.Second
	p, url := prod(t, nil, "--workers", "1", "--shutdown-delay", delay.String(), "--graceful-timeout", "10s")
	addr := strings.TrimPrefix(url, "http://")
	old := proctest.Children(p.Pid())[0]
	const n = 10
	all := dialAll(t, addr, "/ws", n, old)
	termAt := time.Now()
	p.Signal(t, syscall.SIGTERM)
	ends := awaitAll(all, delay+10*time.Second)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	drainAt := logTime(t, workerLine(t, p, old, "draining", time.Second))
	first, last := time.Time{}, time.Time{}
	for i, e := range ends {
		if e.err != nil || e.closeAt.IsZero() || e.code != wsGoingAway {
			t.Errorf("WebSocket %d: %+v, want a close frame with status %d", i+1, e, wsGoingAway)
			continue
		}
		if first.IsZero() || e.closeAt.Before(first) {
			first = e.closeAt
		}
		if e.closeAt.After(last) {
			last = e.closeAt
		}
	}
	t.Logf("TERM with --shutdown-delay %v and %d WebSockets: the drain began %v after it; close frames %v to %v after the TERM",
		delay, n, drainAt.Sub(termAt).Round(time.Millisecond), first.Sub(termAt).Round(time.Millisecond), last.Sub(termAt).Round(time.Millisecond))
	if first.Sub(termAt) < delay {
		t.Errorf("first close frame %v after the TERM, want after the %v shutdown delay", first.Sub(termAt), delay)
	}
	if last.Sub(drainAt) > time.Second {
		t.Errorf("last close frame %v after the drain began, want within 1s", last.Sub(drainAt))
	}
}
