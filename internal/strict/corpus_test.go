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
// the server closes the connection or refuses a request. halfClose after
// it began writing, the client half-closes, as the end of a file would, and
// reads on; a negative halfClose never does.
func send(t testing.TB, addr string, data []byte, halfClose time.Duration) exchange {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	written := make(chan struct{})
	go func() {
		defer close(written)
		c.Write(data) // a refusal may come before the whole of data is read
	}()
	var ex exchange
	br := bufio.NewReader(c)
	if halfClose < 0 {
		halfClose = time.Hour
	}
	timer := time.AfterFunc(halfClose, func() {
		<-written
		c.(*net.TCPConn).CloseWrite()
	})
	defer timer.Stop()
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			ex.closed = errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
				errors.Is(err, net.ErrClosed) || !(errors.As(err, &ne) && ne.Timeout())
			ex.atEOF = !timer.Stop()
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
			ex.atEOF = !timer.Stop()
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
// \n, \t, \0 and \xHH escape the bytes they name. Ours add \{N*TEXT},
// TEXT (without '}') repeated N times.
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
		case '{':
			end := bytes.IndexByte(b[i:], '}')
			n, text, ok := bytes.Cut(b[i+1:i+max(end, 0)], []byte("*"))
			count, err := strconv.Atoi(string(n))
			if end < 0 || !ok || err != nil {
				return nil, fmt.Errorf("bad \\{N*TEXT} at byte %d", i)
			}
			out = append(out, bytes.Repeat(text, count)...)
			i += end
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
// connection closed; valid ones answered 2xx are counted, and those refused
// listed (the package documentation says which are refused on purpose, and
// why). Cases whose .py sets a Gunicorn option Remuda does not have are
// listed apart. Our own
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
			ex := send(t, serveCatchAll(t, full), data, time.Second)
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
			if kind == "invalid" {
				t.Errorf("%s FAIL %s", kind, l)
			} else {
				// The package documentation says which valid cases are
				// refused on purpose.
				t.Logf("%s refused %s", kind, l)
			}
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

// gunicornCases are the cases of Gunicorn's tests/requests corpus (at
// benoitc/gunicorn 65ac1a3): testdata/gunicorn holds one request of ours
// for each, named after it.
var gunicornCases = map[string][]string{
	"invalid": strings.Fields(`001 002 003 003b 003c 004 005 006 007 008 009 010 011 012 013 014 015 016
		017 018 019 020 021 022 023 024 040 041 042 chunked_01 chunked_02 chunked_03 chunked_04
		chunked_05 chunked_06 chunked_07 chunked_08 chunked_09 chunked_10 chunked_11 chunked_12
		chunked_13 chunked_14 invalid_field_value_01 limit_header_default_01 nonascii_01
		nonascii_02 nonascii_03 nonascii_04 obs_fold_01 pp_01 pp_02 pp_03 prefix_01 prefix_02
		prefix_03 prefix_04 prefix_05 prefix_06 rfc9110_field_value_ctl_bel_01
		rfc9110_field_value_ctl_del_01 rfc9110_trailer_forbidden_cl_01
		rfc9110_trailer_forbidden_host_01 rfc9110_trailer_forbidden_te_01
		rfc9112_chunked_missing_final_crlf_01 rfc9112_chunked_size_minus_sign_01
		rfc9112_chunked_size_plus_sign_01 rfc9112_smuggle_cl_list_form_01
		rfc9112_smuggle_cl_te_chunked_01 rfc9112_target_asterisk_non_options_01
		rfc9112_target_authority_non_connect_01 rfc9112_target_relative_01 version_01 version_02`),
	"valid": strings.Fields(`001 002 003 004 005 006 007 008 009 010 011 012 013 014 015 017 018 019
		020 021 022 023 024 025 025_line 026 027 028 029 030 031 031compat 031compat2 040
		040_compat 099 100 compat_obs_fold compat_obs_fold_huge padding_01 pp_01 pp_02 pp_03
		pp_04 pp_05 rfc9110_body_framing_get_cl_nonzero_01 rfc9110_body_framing_get_cl_zero_01
		rfc9110_body_framing_http10_cl_01 rfc9110_field_name_special_chars_01
		rfc9110_field_value_htab_trim_01 rfc9110_field_value_obs_text_01
		rfc9112_chunked_ext_quoted_01 rfc9112_chunked_size_leading_zeros_01
		rfc9112_chunked_size_uppercase_hex_01 rfc9112_smuggle_gzip_chunked_01
		rfc9112_smuggle_te_identity_chunked_01 rfc9112_target_absolute_01
		rfc9112_target_absolute_https_01 rfc9112_target_absolute_ipv6_01
		rfc9112_target_absolute_userinfo_01 rfc9112_target_asterisk_options_01
		rfc9112_target_authority_connect_01 rfc9112_target_authority_ipv6_01`),
}

// A corpusCase is one file of testdata/gunicorn: directive lines
// ("# key: value") then the request, encoded as decodeHTTP reads it.
type corpusCase struct {
	gunicorn  string // the case of Gunicorn's it stands for, as "invalid/006"
	status    int    // the status of the last response
	reason    string // text the last response's body holds, if any
	responses int    // how many responses, when the status is 2xx
	limits    strict.Limits
	eof       bool // the client half-closes once it has sent the request
	data      []byte
}

func readCase(t *testing.T, path string) corpusCase {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := corpusCase{limits: strict.DefaultLimits, responses: 1}
	for len(raw) > 0 && raw[0] == '#' {
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte("\n"))
		key, value, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(string(line), "#")), ":")
		value = strings.TrimSpace(value)
		switch key {
		case "gunicorn":
			c.gunicorn = value
		case "want":
			n, reason, _ := strings.Cut(value, " ")
			if c.status, err = strconv.Atoi(n); err != nil {
				t.Fatalf("%s: want: %v", path, err)
			}
			c.reason = reason
		case "responses":
			if c.responses, err = strconv.Atoi(value); err != nil {
				t.Fatalf("%s: responses: %v", path, err)
			}
		case "eof":
			c.eof = value == "yes"
		case "limits":
			for _, kv := range strings.Fields(value) {
				k, v, _ := strings.Cut(kv, "=")
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("%s: limits: %v", path, err)
				}
				switch k {
				case "line":
					c.limits.RequestLine = n
				case "fields":
					c.limits.Fields = n
				case "field_size":
					c.limits.FieldSize = n
				default:
					t.Fatalf("%s: unknown limit %q", path, k)
				}
			}
		case "note":
		default:
			t.Fatalf("%s: unknown directive %q", path, key)
		}
	}
	if c.gunicorn == "" || c.status == 0 {
		t.Fatalf("%s: want both the gunicorn and want directives", path)
	}
	if c.data, err = decodeHTTP(raw); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// TestRequestCorpus sends each request of testdata/gunicorn, our own
// equivalent of one case of Gunicorn's request corpus, over TCP to a
// catch-all route served as a prod worker serves it, with the case's
// limits. A case that wants a 4xx must get it, with its reason, and then
// the end of the connection, the server closing it; one that wants a 2xx
// must get it for each of its requests. The files of invalid/ are Gunicorn's
// invalid cases; those of valid/ its valid ones, a few of which are refused
// on purpose (the package documentation says which and why; their note
// does too).
func TestRequestCorpus(t *testing.T) {
	servers := map[strict.Limits]string{}
	for _, kind := range []string{"invalid", "valid"} {
		files, err := filepath.Glob(filepath.Join("testdata", "gunicorn", kind, "*.http"))
		if err != nil {
			t.Fatal(err)
		}
		covered := map[string]string{}
		for _, f := range files {
			c := readCase(t, f)
			name := strings.TrimSuffix(filepath.Base(f), ".http")
			if prev, ok := covered[c.gunicorn]; ok {
				t.Errorf("%s and %s both stand for %s", prev, name, c.gunicorn)
			}
			covered[c.gunicorn] = name
			if !slices.Contains(gunicornCases[kind], strings.TrimPrefix(c.gunicorn, kind+"/")) {
				t.Errorf("%s stands for %s, not a %s case of Gunicorn's", name, c.gunicorn, kind)
			}
			addr, ok := servers[c.limits]
			if !ok {
				addr = serveCatchAll(t, c.limits)
				servers[c.limits] = addr
			}
			t.Run(kind+"/"+name, func(t *testing.T) {
				t.Parallel()
				halfClose := time.Duration(-1)
				if c.eof || c.status < 300 {
					halfClose = 0
				}
				ex := send(t, addr, c.data, halfClose)
				n := len(ex.statuses)
				switch {
				case n == 0:
					t.Fatalf("got no response (closed %v), want %d", ex.closed, c.status)
				case ex.statuses[n-1] != c.status:
					t.Errorf("got statuses %v (%q), want the last %d", ex.statuses, ex.reason, c.status)
				case c.reason != "" && !strings.Contains(ex.reason, c.reason):
					t.Errorf("got reason %q, want %q", ex.reason, c.reason)
				}
				if c.status >= 400 && !ex.closed {
					t.Errorf("got the connection open after the %d, want it closed", c.status)
				}
				if c.status < 300 && n != c.responses {
					t.Errorf("got %d responses %v, want %d", n, ex.statuses, c.responses)
				}
			})
		}
		for _, g := range gunicornCases[kind] {
			if _, ok := covered[kind+"/"+g]; !ok {
				t.Errorf("no request stands for Gunicorn's %s/%s", kind, g)
			}
		}
	}
}
