package serve

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/remuda/remuda/internal/strict"
)

// TestFrameScanner: frame boundaries are found however the bytes are
// split, and the drain's PING answer is told from other PINGs.
func TestFrameScanner(t *testing.T) {
	var stream bytes.Buffer
	fr := http2.NewFramer(&stream, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14})
	fr.WriteData(1, false, bytes.Repeat([]byte("x"), 1000))
	fr.WriteSettingsAck()
	fr.WritePing(true, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	fr.WritePing(false, drainPing)
	fr.WritePing(true, drainPing)
	wantEnds, wantAck := 6, 5 // the 6th frame is the drain's answer
	b := append([]byte(h2Preface), stream.Bytes()...)
	for _, size := range []int{1, 2, 7, 9, 10, 100, len(b)} {
		t.Run("chunks of "+strconv.Itoa(size), func(t *testing.T) {
			f := frameScanner{skip: len(h2Preface)}
			ends, ack := 0, -1
			for i := 0; i < len(b); i += size {
				p := b[i:min(i+size, len(b))]
				for k := 0; k < len(p); {
					m, ended := f.next(p[k:])
					if m == 0 {
						t.Fatalf("no progress at %d", i+k)
					}
					k += m
					if ended {
						if f.isDrainAck() {
							ack = ends
						}
						ends++
					}
				}
			}
			if ends != wantEnds || ack != wantAck || f.nhdr != 0 || f.left != 0 {
				t.Errorf("got %d frames, the answer at %d, state %+v; want %d frames, the answer at %d, between frames", ends, ack, f, wantEnds, wantAck)
			}
		})
	}
}

// h2client speaks HTTP/2 frame by frame, to see and time every frame.
type h2client struct {
	t       *testing.T
	c       net.Conn
	fr      *http2.Framer
	enc     *hpack.Encoder
	buf     bytes.Buffer
	goAways []*http2.GoAwayFrame // read, and not yet returned by goAway
}

// dialH2C opens an h2c connection with prior knowledge and exchanges
// SETTINGS.
func dialH2C(t *testing.T, url string) *h2client {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	h := &h2client{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.buf)
	io.WriteString(c, h2Preface)
	h.fr.WriteSettings()
	return h
}

// request sends a request's header on stream id: a GET of path, with
// more fields, and a body of n bytes if n > 0. It stops at a write error:
// the answer tells what happened.
func (h *h2client) request(id uint32, path string, n int, more ...string) {
	h.buf.Reset()
	method := "GET"
	if n > 0 {
		method = "POST"
	}
	for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if n > 0 {
		h.enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(n)})
	}
	for i := 0; i+1 < len(more); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: more[i], Value: more[i+1]})
	}
	block := h.buf.Bytes()
	const frag = 16 << 10
	first := block[:min(frag, len(block))]
	block = block[len(first):]
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: n == 0, EndHeaders: len(block) == 0}); err != nil {
		return
	}
	for len(block) > 0 {
		p := block[:min(frag, len(block))]
		block = block[len(p):]
		if err := h.fr.WriteContinuation(id, len(block) == 0, p); err != nil {
			return
		}
	}
	if n > 0 {
		h.fr.WriteData(id, true, bytes.Repeat([]byte("x"), n))
	}
}

// next reads frames until one that want accepts, acknowledging the
// server's SETTINGS on the way.
func (h *h2client) next(what string, want func(http2.Frame) bool) http2.Frame {
	h.t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("waiting for %s: %v", what, err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			h.fr.WriteSettingsAck()
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			// Kept: it may come while another frame is awaited.
			h.goAways = append(h.goAways, ga)
		}
		if want(f) {
			return f
		}
	}
}

// status reads frames until the answer on stream id, and returns its
// status code.
func (h *h2client) status(id uint32) int {
	h.t.Helper()
	code, refused := h.answer(id)
	if refused != nil {
		h.t.Fatalf("waiting for the answer on stream %d: GOAWAY %v", id, refused.ErrCode)
	}
	return code
}

// answer reads frames until the answer on stream id, and returns its
// status code, or the GOAWAY with an error that ended the connection
// first.
func (h *h2client) answer(id uint32) (int, *http2.GoAwayFrame) {
	h.t.Helper()
	f := h.next("the answer on stream "+strconv.Itoa(int(id)), func(f http2.Frame) bool {
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == id {
			h.t.Fatalf("stream %d reset: %v", id, rst.ErrCode)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok && ga.ErrCode != http2.ErrCodeNo {
			return true
		}
		mh, ok := f.(*http2.MetaHeadersFrame)
		return ok && mh.StreamID == id
	})
	if ga, ok := f.(*http2.GoAwayFrame); ok {
		return 0, ga
	}
	code, _ := strconv.Atoi(f.(*http2.MetaHeadersFrame).PseudoValue("status"))
	return code, nil
}

// goAway returns the next GOAWAY, reading frames until one comes if none
// was read yet.
func (h *h2client) goAway() *http2.GoAwayFrame {
	h.t.Helper()
	if len(h.goAways) == 0 {
		h.next("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	}
	ga := h.goAways[0]
	h.goAways = h.goAways[1:]
	return ga
}

// TestHTTP2DrainInTwoSteps: a draining server first sends GOAWAY naming
// the largest stream id and a PING; a stream the client opens before it
// answers the PING is served, and only then comes the GOAWAY that names
// it; the stream in flight since before the drain finishes too; then the
// connection closes and the drain returns.
func TestHTTP2DrainInTwoSteps(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	trusted, _ := ParseProxies("127.0.0.1")
	s, url := serveOn(t, h, Options{HTTP2Cleartext: true, Proxies: trusted, Hardened: true})
	c := dialH2C(t, url)
	c.request(1, "/slow", 0)
	time.Sleep(50 * time.Millisecond) // the handler runs
	drained := drainAsync(s, 10*time.Second)

	first := c.goAway()
	if first.LastStreamID != 1<<31-1 || first.ErrCode != http2.ErrCodeNo {
		t.Fatalf("first GOAWAY: last stream %d, %v; want %d, NO_ERROR", first.LastStreamID, first.ErrCode, uint32(1<<31-1))
	}
	ping := c.next("PING", func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() }).(*http2.PingFrame)
	// A request sent before the client saw the GOAWAY, as it were.
	c.request(3, "/late", 0)
	c.fr.WritePing(true, ping.Data)
	if got := c.status(3); got != 200 {
		t.Errorf("stream 3, sent before the PING's answer: %d, want 200", got)
	}
	second := c.goAway()
	if second.LastStreamID != 3 || second.ErrCode != http2.ErrCodeNo {
		t.Errorf("second GOAWAY: last stream %d, %v; want 3, NO_ERROR", second.LastStreamID, second.ErrCode)
	}
	close(release)
	if got := c.status(1); got != 200 {
		t.Errorf("stream 1, in flight at the drain: %d, want 200", got)
	}
	c.c.Close()
	if err := <-drained; err != nil {
		t.Errorf("drain: %v, want nil", err)
	}
}

// TestHTTP2OverTLSDrains: HTTP/2 negotiated with ALPN is served, and the
// drain ends the connection with a request in flight answered.
func TestHTTP2OverTLSDrains(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, r.Proto)
	})
	s, url := serveOn(t, h, Options{TLS: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}, Hardened: true})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	type answer struct {
		body string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := client.Get("https://" + strings.TrimPrefix(url, "http://") + "/")
		if err != nil {
			got <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{string(b), err}
	}()
	time.Sleep(200 * time.Millisecond) // the handler runs
	drained := drainAsync(s, 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	close(release)
	if a := <-got; a.err != nil || a.body != "HTTP/2.0" {
		t.Errorf("request in flight: %q, %v; want HTTP/2.0", a.body, a.err)
	}
	client.CloseIdleConnections()
	if err := <-drained; err != nil {
		t.Errorf("drain: %v, want nil", err)
	}
}

// TestH2COnlyFromTrustedPeers: with h2c on, a trusted peer's preface gets
// HTTP/2; from a peer not trusted, the same bytes get what they get with
// h2c off.
func TestH2COnlyFromTrustedPeers(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	trusted, _ := ParseProxies("127.0.0.1")
	other, _ := ParseProxies("10.0.0.1")
	_, on := serveOn(t, ok, Options{HTTP2Cleartext: true, Proxies: trusted, Hardened: true})
	c := dialH2C(t, on)
	c.request(1, "/", 0)
	if got := c.status(1); got != 200 {
		t.Errorf("h2c from a trusted peer: %d, want 200", got)
	}

	_, off := serveOn(t, ok, Options{Proxies: trusted, Hardened: true})
	_, untrusted := serveOn(t, ok, Options{HTTP2Cleartext: true, Proxies: other, Hardened: true})
	preface := h2Preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00" // and an empty SETTINGS
	want := sendRaw(t, strings.TrimPrefix(off, "http://"), preface)
	got := sendRaw(t, strings.TrimPrefix(untrusted, "http://"), preface)
	if got != want || !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Errorf("preface from an untrusted peer: %q; want what h2c off answers, %q (a 400)", got, want)
	}
	// An HTTP/1 request from a trusted peer, h2c on: served as ever.
	if got := sendRaw(t, strings.TrimPrefix(on, "http://"), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("HTTP/1 with h2c on: %q, want 200", got)
	}
}

// TestHTTP2Limits: an HTTP/2 request is refused as the same request over
// HTTP/1 is: too many fields, a field too large, a header too large, a
// duplicate singleton field, a body over MaxBodySize.
func TestHTTP2Limits(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	trusted, _ := ParseProxies("127.0.0.1")
	_, url := serveOn(t, ok, Options{HTTP2Cleartext: true, Proxies: trusted, Hardened: true, Limits: strict.DefaultLimits, MaxBodySize: 1000})
	many := []string{}
	for i := range 200 {
		many = append(many, "x-field-"+strconv.Itoa(i), "v")
	}
	for _, tc := range []struct {
		name string
		body int
		more []string
		huge bool // past what the HTTP/2 server reads
	}{
		{"plain", 0, nil, false},
		{"200 fields", 0, many, false},
		{"a 10 KiB field", 0, []string{"x-big", strings.Repeat("b", 10<<10)}, false},
		{"a 2 MiB field", 0, []string{"x-huge", strings.Repeat("h", 2<<20)}, true},
		{"two Content-Type", 0, []string{"content-type", "text/plain", "content-type", "text/html"}, false},
		{"body over the limit", 2000, nil, false},
		{"body within the limit", 500, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Over HTTP/1.
			var req strings.Builder
			method := "GET"
			if tc.body > 0 {
				method = "POST"
			}
			req.WriteString(method + " / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
			if tc.body > 0 {
				req.WriteString("Content-Length: " + strconv.Itoa(tc.body) + "\r\n")
			}
			for i := 0; i+1 < len(tc.more); i += 2 {
				req.WriteString(tc.more[i] + ": " + tc.more[i+1] + "\r\n")
			}
			req.WriteString("\r\n" + strings.Repeat("x", tc.body))
			h1 := statusOf(exchange(t, strings.TrimPrefix(url, "http://"), req.String()))

			c := dialH2C(t, url)
			// Sent while the answer is read, which may come before all
			// of it is sent: past the server's SETTINGS, which the reader
			// acknowledges, nothing else writes.
			c.next("SETTINGS", func(f http2.Frame) bool { _, ok := f.(*http2.SettingsFrame); return ok })
			go c.request(1, "/", tc.body, tc.more...)
			h2, refused := c.answer(1)
			switch {
			case refused != nil && tc.huge && h1 == http.StatusRequestHeaderFieldsTooLarge:
				// golang.org/x/net/http2 decodes no field longer than its
				// header list limit, nor reads more than twice that limit
				// (CVE-2023-45288): it ends the connection rather than
				// answer 431.
				if refused.ErrCode != http2.ErrCodeCompression && refused.ErrCode != http2.ErrCodeProtocol {
					t.Errorf("HTTP/2: GOAWAY %v, want COMPRESSION_ERROR or PROTOCOL_ERROR, or 431", refused.ErrCode)
				}
			case refused != nil:
				t.Errorf("HTTP/2: GOAWAY %v, HTTP/1 %d; want the same status", refused.ErrCode, h1)
			case h2 != h1 || h1 == 0:
				t.Errorf("HTTP/2 answered %d, HTTP/1 %d; want the same", h2, h1)
			}
		})
	}
}

// exchange connects, sends sent while it reads, and returns what the
// server answered before it closed the connection: a server that refuses
// a large request may close before it has all of it.
func exchange(t *testing.T, addr, sent string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, sent)
	got, _ := io.ReadAll(c)
	return string(got)
}

// statusOf is the status code of an HTTP/1 answer, 0 if there is none.
func statusOf(answer string) int {
	f := strings.SplitN(answer, " ", 3)
	if len(f) < 2 {
		return 0
	}
	code, _ := strconv.Atoi(f[1])
	return code
}
