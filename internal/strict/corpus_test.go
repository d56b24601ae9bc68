package strict_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/serve"
	"github.com/remuda/remuda/internal/strict"
)

// serveCatchAll serves a catch-all route the way a prod worker does
// (serve.Server, hardened: requests checked by internal/strict within lim)
// on 127.0.0.1. The route reads the whole body and answers 200, or 400 when
// the body cannot be read, as an app does: a body that strict could not
// refuse before the handler had the head (its chunked framing cut short by
// the end of the connection) is refused there.
func serveCatchAll(t testing.TB, lim strict.Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := serve.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "ok")
	}), serve.Options{Hardened: true, Limits: lim})
	srv.Serve([]net.Listener{ln})
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// exchange is what a client sees when it sends data on a new connection.
type exchange struct {
	statuses []int  // of the responses read, in order
	reason   string // the body of the last response
	closed   bool   // the server closed the connection after them
	atEOF    bool   // ... only once the client had half-closed its side
}

// send writes data on a new connection to addr and reads responses until
// the server closes the connection. When the server has neither answered
// with a 4xx nor closed within a second, the client half-closes, as the end
// of a file would, and reads on.
func send(t testing.TB, addr string, data []byte) exchange {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go c.Write(data) // a refusal may come before the whole of data is read
	var ex exchange
	br := bufio.NewReader(c)
	halfClose := time.AfterFunc(time.Second, func() { c.(*net.TCPConn).CloseWrite() })
	defer halfClose.Stop()
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			ex.closed = errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
				errors.Is(err, net.ErrClosed) || !(errors.As(err, &ne) && ne.Timeout())
			ex.atEOF = !halfClose.Stop()
			return ex
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ex.reason = strings.TrimSpace(string(body))
		ex.statuses = append(ex.statuses, resp.StatusCode)
		if resp.StatusCode >= 400 {
			// Nothing may follow a refusal but the end of the connection.
			_, err := br.ReadByte()
			ex.closed = errors.Is(err, io.EOF)
			ex.atEOF = !halfClose.Stop()
			return ex
		}
	}
}

// refused reports whether ex ends in a 4xx followed by the end of the
// connection.
func (ex exchange) refused() bool {
	n := len(ex.statuses)
	return n > 0 && ex.statuses[n-1] >= 400 && ex.statuses[n-1] < 500 && ex.closed
}

// accepted reports whether every response in ex is a 2xx, and there is one.
func (ex exchange) accepted() bool {
	return len(ex.statuses) > 0 && !slices.ContainsFunc(ex.statuses, func(s int) bool { return s < 200 || s > 299 })
}

// decodeHTTP decodes a request file written as Gunicorn's tests/requests
// files are: line breaks in the file are not part of the request; \r\n,
// \n, \t, \0 and \xHH escape the bytes they name.
func decodeHTTP(b []byte) ([]byte, error) {
	b = bytes.ReplaceAll(b, []byte("\n"), nil)
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			out = append(out, b[i])
			continue
		}
		if i+1 == len(b) {
			return nil, fmt.Errorf("backslash at the end")
		}
		i++
		switch b[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case 'x':
			if i+2 >= len(b) {
				return nil, fmt.Errorf("short \\x escape")
			}
			n, err := strconv.ParseUint(string(b[i+1:i+3]), 16, 8)
			if err != nil {
				return nil, fmt.Errorf("bad \\x escape: %w", err)
			}
			out = append(out, byte(n))
			i += 2
		default:
			return nil, fmt.Errorf("unknown escape \\%c", b[i])
		}
	}
	return out, nil
}

// TestGunicornCorpus replays Gunicorn's own request corpus
// (tests/requests/{invalid,valid} of benoitc/gunicorn) when
// GUNICORN_REQUESTS names that directory, each file with the limits its
// .py sets: every invalid request must be refused with a 4xx and the
// connection closed, every valid one answered 2xx. Cases whose .py sets a
// Gunicorn option Remuda does not have are listed apart. Our own
// equivalent, which always runs, is TestRequestCorpus.
func TestGunicornCorpus(t *testing.T) {
	dir := os.Getenv("GUNICORN_REQUESTS")
	if dir == "" {
		t.Skip("GUNICORN_REQUESTS does not name Gunicorn's tests/requests directory")
	}
	setRE := regexp.MustCompile(`cfg\.set\(\s*['"](\w+)['"]\s*,\s*([^)]*?)\s*\)`)
	for _, kind := range []string{"invalid", "valid"} {
		files, _ := filepath.Glob(filepath.Join(dir, kind, "*.http"))
		var pass, fail, unsupported []string
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".http")
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			data, err := decodeHTTP(raw)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			py, _ := os.ReadFile(strings.TrimSuffix(f, ".http") + ".py")
			var lim strict.Limits
			var others []string
			for _, m := range setRE.FindAllStringSubmatch(string(py), -1) {
				n, _ := strconv.Atoi(m[2])
				switch m[1] {
				case "limit_request_line":
					lim.RequestLine = n
				case "limit_request_fields":
					lim.Fields = n
				case "limit_request_field_size":
					lim.FieldSize = n
				default:
					others = append(others, m[1]+"="+m[2])
				}
			}
			full := strict.DefaultLimits
			if strings.Contains(string(py), "limit_request_line") {
				full.RequestLine = lim.RequestLine
			}
			if strings.Contains(string(py), "limit_request_fields") {
				full.Fields = lim.Fields
			}
			if strings.Contains(string(py), "limit_request_field_size") {
				full.FieldSize = lim.FieldSize
			}
			ex := send(t, serveCatchAll(t, full), data)
			ok := ex.refused()
			if kind == "valid" {
				ok = ex.accepted()
			}
			line := fmt.Sprintf("%s %v %q closed=%v at_eof=%v %v", name, ex.statuses, ex.reason, ex.closed, ex.atEOF, others)
			switch {
			case ok:
				pass = append(pass, line)
			case len(others) > 0:
				unsupported = append(unsupported, line)
			default:
				fail = append(fail, line)
			}
		}
		t.Logf("%s: %d of %d pass; %d fail; %d need an option Remuda does not have", kind, len(pass), len(files), len(fail), len(unsupported))
		for _, l := range fail {
			t.Errorf("%s FAIL %s", kind, l)
		}
		for _, l := range unsupported {
			t.Logf("%s UNSUPPORTED %s", kind, l)
		}
		if testing.Verbose() {
			for _, l := range pass {
				t.Logf("%s pass %s", kind, l)
			}
		}
	}
}
