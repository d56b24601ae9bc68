package strict

import (
	"bytes"
	"math"
)

// Limits on what one connection buffers while a unit of the request stream
// is incomplete.
const (
	// DefaultMaxHeadBytes caps a request head (request line, fields, empty
	// line) and a trailer section, whatever the Limits. Beyond it a request
	// gets 431.
	DefaultMaxHeadBytes = 64 << 10
	// maxChunkLineBytes caps a chunk-size line with its extensions.
	maxChunkLineBytes = 4 << 10
)

// A violation is why a request is refused and with which status.
type violation struct {
	status int
	reason string
}

func bad(reason string) *violation { return &violation{status: 400, reason: reason} }

var (
	errURITooLong      = &violation{status: 414, reason: "request line too long"}
	errHeadTooLarge    = &violation{status: 431, reason: "request header fields too large"}
	errTrailerTooLong  = &violation{status: 431, reason: "trailer section too large"}
	errFieldTooLarge   = &violation{status: 431, reason: "request header field too large"}
	errTooManyFields   = &violation{status: 431, reason: "too many request header fields"}
	errTrailerTooLarge = &violation{status: 431, reason: "trailer field too large"}
	errTooManyTrailers = &violation{status: 431, reason: "too many trailer fields"}
)

// state is where the validator stands in the request stream.
type state uint8

const (
	stHead      state = iota // expecting a request head
	stBody                   // inside a Content-Length body; remain bytes left
	stChunkSize              // expecting a chunk-size line
	stChunkData              // inside chunk data; remain bytes left
	stChunkCRLF              // expecting the CRLF after chunk data
	stTrailer                // expecting the trailer section
	stSwitch                 // after an upgrade or CONNECT request, until its response says whether the protocol switches
	stPass                   // no longer validating: the protocol switched
)

// validator checks a stream of HTTP/1.1 requests one unit at a time. The zero
// value expects the first request head, with the zero Limits.
type validator struct {
	lim     Limits
	state   state
	remain  int64
	upgrade bool // the current request may switch protocols

	// switchHead is set by step when the head it consumed is that of an
	// upgrade or CONNECT request; connect tells which.
	switchHead bool
	connect    bool

	// Progress of the incomplete unit at the front of the input, so that a
	// unit arriving byte by byte is scanned once.
	scanned   int
	lineStart int
	lines     int
}

// step consumes one complete unit (a head, body bytes, a chunk-size line,
// chunk data, a CRLF, a trailer section) from the front of b. It returns the
// number of bytes consumed, zero when the unit is still incomplete, and end
// when those bytes complete a request. b must hold the same unconsumed bytes,
// possibly extended, across calls.
func (v *validator) step(b []byte) (n int, end bool, err *violation) {
	if len(b) == 0 {
		return 0, false, nil
	}
	switch v.state {
	case stPass:
		return len(b), false, nil
	case stSwitch:
		return 0, false, nil
	case stHead:
		n, err := v.blockEnd(b, true)
		if n == 0 || err != nil {
			return 0, false, err
		}
		h, err := checkHead(b[:n])
		if err != nil {
			return 0, false, err
		}
		v.upgrade = h.upgrade || h.connect
		v.switchHead, v.connect = v.upgrade, h.connect
		switch {
		case h.connect:
			// A CONNECT body would be tunnel data.
			return n, v.endRequest(), nil
		case h.chunked:
			v.state = stChunkSize
			return n, false, nil
		case h.length > 0:
			v.state, v.remain = stBody, h.length
			return n, false, nil
		}
		return n, v.endRequest(), nil
	case stBody, stChunkData:
		n := int64(len(b))
		if n > v.remain {
			n = v.remain
		}
		v.remain -= n
		if v.remain > 0 {
			return int(n), false, nil
		}
		if v.state == stChunkData {
			v.state = stChunkCRLF
			return int(n), false, nil
		}
		return int(n), v.endRequest(), nil
	case stChunkCRLF:
		if b[0] != '\r' || len(b) > 1 && b[1] != '\n' {
			return 0, false, bad("chunk data not followed by CRLF")
		}
		if len(b) < 2 {
			return 0, false, nil
		}
		v.state = stChunkSize
		return 2, false, nil
	case stChunkSize:
		n, err := v.lineEnd(b)
		if n == 0 || err != nil {
			return 0, false, err
		}
		size, err := parseChunkLine(b[:n-2])
		if err != nil {
			return 0, false, err
		}
		if size == 0 {
			v.state = stTrailer
		} else {
			v.state, v.remain = stChunkData, size
		}
		return n, false, nil
	case stTrailer:
		n, err := v.blockEnd(b, false)
		if n == 0 || err != nil {
			return 0, false, err
		}
		if err := checkTrailer(b[:n]); err != nil {
			return 0, false, err
		}
		return n, v.endRequest(), nil
	}
	panic("strict: unknown validator state")
}

// endRequest moves to the next request and reports true.
func (v *validator) endRequest() bool {
	if v.upgrade {
		v.state = stSwitch
	} else {
		v.state = stHead
	}
	v.upgrade = false
	return true
}

func (v *validator) resetScan() { v.scanned, v.lineStart, v.lines = 0, 0, 0 }

// blockEnd finds the end of a field block at the front of b: a request head
// when head is set, else a trailer section. It returns the block's length
// including the final empty line, or 0 when incomplete. Every line must end
// with CRLF.
func (v *validator) blockEnd(b []byte, head bool) (int, *violation) {
	for i := v.scanned; i < len(b); i++ {
		switch b[i] {
		case '\n':
			return 0, bad("bare LF in header section")
		case '\r':
			if i+1 == len(b) {
				v.scanned = i
				return 0, v.blockLimits(i, head)
			}
			if b[i+1] != '\n' {
				return 0, bad("bare CR in header section")
			}
			if i == v.lineStart {
				if head && v.lines == 0 {
					return 0, bad("empty line before request line")
				}
				v.resetScan()
				if i+2 > DefaultMaxHeadBytes {
					return 0, v.tooLarge(head)
				}
				return i + 2, nil
			}
			if err := v.lineLimits(i, head); err != nil {
				return 0, err
			}
			if head && v.lines == 0 {
				// Refused at once, not when a head that may never
				// end is complete.
				if _, _, err := checkRequestLine(b[:i]); err != nil {
					return 0, err
				}
			}
			v.lines++
			i++
			v.lineStart = i + 1
		}
	}
	v.scanned = len(b)
	return 0, v.blockLimits(len(b), head)
}

// blockLimits checks an incomplete block whose first n bytes have been
// scanned: the line being received cannot end within the Limits any more,
// or the block is already too large.
func (v *validator) blockLimits(n int, head bool) *violation {
	if n > v.lineStart {
		if err := v.lineLimits(n, head); err != nil {
			return err
		}
	}
	if n > DefaultMaxHeadBytes {
		return v.tooLarge(head)
	}
	return nil
}

// lineLimits checks the line that starts at lineStart and has n-lineStart
// bytes so far, CRLF excluded, against the Limits: the request line's
// length, a field line's length and the number of field lines.
func (v *validator) lineLimits(n int, head bool) *violation {
	size, fields := n-v.lineStart, v.lines+1
	if head {
		if v.lines == 0 {
			if size > v.lim.requestLine() {
				return errURITooLong
			}
			return nil
		}
		fields--
	}
	switch {
	case size+2 > v.lim.fieldSize() && head:
		return errFieldTooLarge
	case size+2 > v.lim.fieldSize():
		return errTrailerTooLarge
	case fields > v.lim.fields() && head:
		return errTooManyFields
	case fields > v.lim.fields():
		return errTooManyTrailers
	}
	return nil
}

func (v *validator) tooLarge(head bool) *violation {
	if head {
		return errHeadTooLarge
	}
	return errTrailerTooLong
}

// lineEnd finds the CRLF ending a chunk-size line at the front of b and
// returns the line's length including it, or 0 when incomplete.
func (v *validator) lineEnd(b []byte) (int, *violation) {
	for i := v.scanned; i < len(b); i++ {
		switch b[i] {
		case '\n':
			return 0, bad("bare LF in chunk-size line")
		case '\r':
			if i+1 == len(b) {
				v.scanned = i
				return 0, nil
			}
			if b[i+1] != '\n' {
				return 0, bad("bare CR in chunk-size line")
			}
			v.resetScan()
			return i + 2, nil
		}
		if i >= maxChunkLineBytes {
			return 0, bad("chunk-size line too long")
		}
	}
	v.scanned = len(b)
	return 0, nil
}

// parseChunkLine checks chunk-size [ chunk-ext ] (without CRLF) and returns
// the size.
func parseChunkLine(line []byte) (int64, *violation) {
	var size uint64
	i := 0
	for ; i < len(line); i++ {
		d := unhex(line[i])
		if d < 0 {
			break
		}
		if i == 16 {
			return 0, bad("chunk size too long")
		}
		size = size<<4 | uint64(d)
	}
	if i == 0 {
		return 0, bad("invalid chunk size")
	}
	if size > math.MaxInt64 {
		return 0, bad("chunk size too large")
	}
	first := true
	for i < len(line) {
		// chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ), the
		// value a token or a quoted-string (RFC 9112 section 7.1.1): bad
		// whitespace is parsed and ignored, as RFC 9110 section 5.6.3
		// asks, but only around ';' and '=' ("0 " alone is refused).
		i += bwsLen(line[i:])
		if i == len(line) || line[i] != ';' {
			if first {
				return 0, bad("invalid chunk size")
			}
			return 0, bad("invalid chunk extension")
		}
		first = false
		i++
		i += bwsLen(line[i:])
		n := tokenLen(line[i:])
		if n == 0 {
			return 0, bad("invalid chunk extension")
		}
		i += n
		j := i + bwsLen(line[i:])
		if j == len(line) || line[j] != '=' {
			continue
		}
		i = j + 1
		i += bwsLen(line[i:])
		if i < len(line) && line[i] == '"' {
			n = quotedLen(line[i:])
		} else {
			n = tokenLen(line[i:])
		}
		if n == 0 {
			return 0, bad("invalid chunk extension")
		}
		i += n
	}
	return int64(size), nil
}

// bwsLen returns the length of the SP and HTAB at the front of b.
func bwsLen(b []byte) int {
	for i, c := range b {
		if c != ' ' && c != '\t' {
			return i
		}
	}
	return len(b)
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// tokenLen returns the length of the token at the front of b.
func tokenLen(b []byte) int {
	for i, c := range b {
		if !isTchar(c) {
			return i
		}
	}
	return len(b)
}

// quotedLen returns the length of the quoted-string at the front of b, or 0.
func quotedLen(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i == len(b) || !isQuotedPairChar(b[i]) {
				return 0
			}
		case c == '\t' || c == ' ' || c == 0x21 || 0x23 <= c && c <= 0x7e || c >= 0x80:
		default:
			return 0
		}
	}
	return 0
}

func isQuotedPairChar(c byte) bool { return c == '\t' || 0x20 <= c && c != 0x7f }

// tchar per RFC 9110 section 5.6.2.
var tchars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isTchar(c byte) bool { return tchars[c] }

// head is what the framing of a valid request head says.
type head struct {
	chunked bool
	length  int64
	upgrade bool
	connect bool
}

// checkHead validates a complete request head whose lines all end in CRLF.
func checkHead(b []byte) (head, *violation) {
	var h head
	eol := bytes.Index(b, crlf)
	connect, http10, err := checkRequestLine(b[:eol])
	if err != nil {
		return h, err
	}
	h.connect = connect

	var nLength, nEncoding, nHost int
	var seen uint32 // singletons met, by index
	var secure, insecure bool
	fields := b[eol+2 : len(b)-2]
	for len(fields) > 0 {
		var field []byte
		field, fields, _ = bytes.Cut(fields, crlf)
		name, value, err := splitField(field)
		if err != nil {
			return h, err
		}
		switch fieldKind(name) {
		case kindLength:
			nLength++
			if nLength > 1 {
				return h, bad("duplicate Content-Length")
			}
			n, ok := parseLength(value)
			if !ok {
				return h, bad("invalid Content-Length")
			}
			h.length = n
		case kindEncoding:
			nEncoding++
			if nEncoding > 1 {
				return h, bad("duplicate Transfer-Encoding")
			}
			if !bytes.EqualFold(value, []byte("chunked")) {
				return h, bad("unsupported Transfer-Encoding")
			}
			h.chunked = true
		case kindHost:
			nHost++
			if nHost > 1 {
				return h, bad("duplicate Host")
			}
			if !validHost(value) {
				return h, bad("invalid Host")
			}
		case kindUpgrade:
			h.upgrade = true
		case kindTwin:
			return h, bad("underscore in framing field name")
		case kindOther:
			i := singleton(name)
			if i < 0 {
				break
			}
			if seen&(1<<i) != 0 {
				return h, bad("duplicate " + singletons[i].canonical)
			}
			seen |= 1 << i
			if s := singletons[i].secureIf; s != "" {
				if asciiFold(value, s) {
					secure = true
				} else {
					insecure = true
				}
				if secure && insecure {
					return h, bad("conflicting X-Forwarded scheme fields")
				}
			}
		}
	}
	switch {
	case nEncoding > 0 && http10:
		return h, bad("Transfer-Encoding in HTTP/1.0 request")
	case nEncoding > 0 && nLength > 0:
		return h, bad("both Content-Length and Transfer-Encoding")
	case nHost == 0 && !http10:
		return h, bad("missing Host")
	}
	return h, nil
}

// checkRequestLine validates a request line (without CRLF) and tells
// whether it is a CONNECT and an HTTP/1.0 request.
func checkRequestLine(line []byte) (connect, http10 bool, err *violation) {
	method, rest, ok := bytes.Cut(line, sp)
	if !ok || len(method) == 0 || tokenLen(method) != len(method) {
		return false, false, bad("malformed request line")
	}
	if !conventionalMethod(method) {
		return false, false, bad("unconventional method")
	}
	target, version, ok := bytes.Cut(rest, sp)
	if !ok || len(target) == 0 {
		return false, false, bad("malformed request line")
	}
	http10 = string(version) == "HTTP/1.0"
	if !http10 && string(version) != "HTTP/1.1" {
		return false, false, bad("unsupported HTTP version")
	}
	for _, c := range target {
		// A fragment is never sent (RFC 9112 section 3.2).
		if c <= 0x20 || c >= 0x7f || c == '#' {
			return false, false, bad("invalid request target")
		}
	}
	if err := checkTarget(string(method), target); err != nil {
		return false, false, err
	}
	return string(method) == "CONNECT", http10, nil
}

var (
	crlf = []byte("\r\n")
	sp   = []byte(" ")
)

// checkTarget checks that the request-target's form fits the method
// (RFC 9112 section 3.2).
func checkTarget(method string, t []byte) *violation {
	if method == "CONNECT" {
		i := bytes.LastIndexByte(t, ':')
		if i <= 0 || i == len(t)-1 || !allDigits(t[i+1:]) || bytes.ContainsAny(t, "/?#@") {
			return bad("CONNECT needs authority-form target")
		}
		return nil
	}
	switch {
	case t[0] == '/':
		return nil
	case string(t) == "*":
		if method != "OPTIONS" {
			return bad("asterisk-form target for non-OPTIONS method")
		}
		return nil
	case isAbsolute(t):
		return nil
	}
	return bad("invalid request target form")
}

// conventionalMethod reports whether a method (a token) is one Gunicorn
// accepts without permit_unconventional_http_method: 3 to 20 characters,
// no lower-case letter. Every registered method is; "get" is not GET.
func conventionalMethod(m []byte) bool {
	if len(m) < 3 || len(m) > 20 {
		return false
	}
	for _, c := range m {
		if 'a' <= c && c <= 'z' {
			return false
		}
	}
	return true
}

// isAbsolute reports whether t is absolute-form: scheme "://" authority,
// then a path, query or nothing, the authority being [userinfo "@"] host
// [":" port] with a reg-name, IPv4 or bracketed IP-literal host.
func isAbsolute(t []byte) bool {
	i := bytes.Index(t, []byte("://"))
	if i <= 0 || !isAlpha(t[0]) {
		return false
	}
	for _, c := range t[1:i] {
		if !isAlpha(c) && !('0' <= c && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	auth := t[i+3:]
	if j := bytes.IndexAny(auth, "/?"); j >= 0 {
		auth = auth[:j]
	}
	if j := bytes.LastIndexByte(auth, '@'); j >= 0 {
		auth = auth[j+1:]
	}
	var host, port []byte
	if len(auth) > 0 && auth[0] == '[' { // IP-literal
		j := bytes.IndexByte(auth, ']')
		if j < 2 {
			return false
		}
		for _, c := range auth[1:j] {
			if unhex(c) < 0 && c != ':' && c != '.' {
				return false
			}
		}
		port = auth[j+1:]
	} else {
		host, port, _ = bytes.Cut(auth, []byte(":"))
		if len(host) == 0 || !validHost(host) || bytes.ContainsAny(host, "[]") {
			return false
		}
		return len(port) == 0 || allDigits(port) // port = *DIGIT
	}
	return len(port) == 0 || port[0] == ':' && (len(port) == 1 || allDigits(port[1:]))
}

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// parseLength parses Content-Length = 1*DIGIT.
func parseLength(b []byte) (int64, bool) {
	if !allDigits(b) || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validHost reports whether b can be a Host value: uri-host [ ":" port ],
// reg-name and IP-literal characters only.
func validHost(b []byte) bool {
	for _, c := range b {
		if !isAlpha(c) && !('0' <= c && c <= '9') && !bytes.ContainsRune([]byte("-._~!$&'()*+,;=%:[]"), rune(c)) {
			return false
		}
	}
	return true
}

// splitField splits a field line into name and value (without OWS) and
// checks both.
func splitField(line []byte) (name, value []byte, err *violation) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, bad("obsolete line folding")
	}
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return nil, nil, bad("field line without colon")
	}
	if len(name) == 0 {
		return nil, nil, bad("empty field name")
	}
	if tokenLen(name) != len(name) {
		return nil, nil, bad("invalid field name")
	}
	value = bytes.Trim(value, " \t")
	obsText := false
	for _, c := range value {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return nil, nil, bad("control character in field value")
		}
		if c >= 0x80 {
			obsText = true
		}
	}
	if obsText {
		switch fieldKind(name) {
		case kindLength, kindEncoding, kindHost:
			return nil, nil, bad("non-ASCII in framing field value")
		}
	}
	return name, value, nil
}

// singletons are the fields, besides Host, Content-Length and
// Transfer-Encoding, that a request must not repeat (see the package
// documentation). For the X-Forwarded scheme fields, secureIf is the value
// that says https, as Gunicorn's secure_scheme_headers have it.
var singletons = []struct {
	lower, canonical, secureIf string
}{
	{"content-location", "Content-Location", ""},
	{"content-range", "Content-Range", ""},
	{"content-type", "Content-Type", ""},
	{"if-modified-since", "If-Modified-Since", ""},
	{"if-range", "If-Range", ""},
	{"if-unmodified-since", "If-Unmodified-Since", ""},
	{"max-forwards", "Max-Forwards", ""},
	{"proxy-authorization", "Proxy-Authorization", ""},
	{"range", "Range", ""},
	{"x-forwarded-proto", "X-Forwarded-Proto", "https"},
	{"x-forwarded-protocol", "X-Forwarded-Protocol", "ssl"},
	{"x-forwarded-ssl", "X-Forwarded-Ssl", "on"},
}

// singleton returns the index of name in singletons, or -1.
func singleton(name []byte) int {
	for i, s := range singletons {
		if len(name) == len(s.lower) && asciiFold(name, s.lower) {
			return i
		}
	}
	return -1
}

// asciiFold reports whether b equals the lower-case ASCII lower, ignoring
// case.
func asciiFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// kind sorts field names the validator cares about.
type kind uint8

const (
	kindOther kind = iota
	kindLength
	kindEncoding
	kindHost
	kindUpgrade
	kindTwin // a framing name spelled with '_' for '-'
)

func fieldKind(name []byte) kind {
	switch len(name) {
	case 4:
		if bytes.EqualFold(name, []byte("host")) {
			return kindHost
		}
	case 7:
		if bytes.EqualFold(name, []byte("upgrade")) {
			return kindUpgrade
		}
	case 14:
		if bytes.EqualFold(name, []byte("content-length")) {
			return kindLength
		}
		if dashFold(name, "content-length") {
			return kindTwin
		}
	case 17:
		if bytes.EqualFold(name, []byte("transfer-encoding")) {
			return kindEncoding
		}
		if dashFold(name, "transfer-encoding") {
			return kindTwin
		}
	}
	return kindOther
}

// dashFold reports whether name equals the lower-case want, ignoring case
// and reading '_' as '-'.
func dashFold(name []byte, want string) bool {
	for i, c := range name {
		if c == '_' {
			c = '-'
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// forbiddenTrailers are fields a sender must not put in a trailer section
// because they control framing, routing, authentication or the request as a
// whole (RFC 9110 section 6.5.1).
var forbiddenTrailers = []string{
	"authorization", "cache-control", "connection", "content-encoding",
	"content-length", "content-range", "content-type", "cookie", "expect",
	"host", "keep-alive", "max-forwards", "proxy-authorization", "range",
	"set-cookie", "te", "trailer", "transfer-encoding", "upgrade",
}

// checkTrailer validates a complete trailer section (ending in an empty line).
func checkTrailer(b []byte) *violation {
	fields := b[:len(b)-2]
	for len(fields) > 0 {
		var field []byte
		field, fields, _ = bytes.Cut(fields, crlf)
		name, _, err := splitField(field)
		if err != nil {
			return err
		}
		if fieldKind(name) == kindTwin {
			return bad("underscore in framing field name")
		}
		for _, f := range forbiddenTrailers {
			if bytes.EqualFold(name, []byte(f)) {
				return bad("forbidden field in trailer section")
			}
		}
	}
	return nil
}
