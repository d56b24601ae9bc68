// Package strict refuses malformed and smuggling-prone HTTP/1.1 requests
// before net/http parses them.
//
// Go's net/http is lenient in places where a front proxy may read the same
// bytes differently (RFC 9112 section 11.2, request smuggling): it accepts a
// request carrying both Content-Length and Transfer-Encoding, a bare LF as a
// line ending, header names with underscores that a proxy maps to dashes, and
// more. Listener wraps a net.Listener so that every accepted connection's
// request stream goes through a validator first; prod mode serves on it.
//
// # Process model
//
// The wrapped net.Conn's Read parses the incoming byte stream as a sequence of
// HTTP/1.1 requests and hands net/http only bytes that have been validated:
//
//   - a request head (request line, header fields, empty line) is released
//     only once it is complete and valid;
//   - a Content-Length body is released as it arrives;
//   - a chunked body is released unit by unit (chunk-size line, chunk data,
//     CRLF, trailer section) as each unit is validated.
//
// Per-connection memory is bounded by DefaultMaxHeadBytes plus one read.
//
// # Limits
//
// Limits are Gunicorn's limit_request_line, limit_request_fields and
// limit_request_field_size, with Gunicorn's defaults (DefaultLimits: 4094,
// 100, 8190), ranges and meanings of 0 (see Limits), measured as Gunicorn
// measures them: the request line without its CRLF, a field line with it.
// They also bound each trailer section. A request line past its limit gets
// 414 URI Too Long (RFC 9112 section 3: a server that will not parse a
// target that long answers 414; Gunicorn answers 400); too many fields, a
// field line too long, or a head past DefaultMaxHeadBytes get 431 Request
// Header Fields Too Large (RFC 6585 section 5, as Gunicorn does). A line is
// refused as soon as it passes its limit, before it ends.
//
// # Refusal
//
// On a violation the connection stops releasing bytes. When net/http next
// asks for bytes of a new request, the conn writes
//
//	HTTP/1.1 400 Bad Request
//	Content-Type: text/plain; charset=utf-8
//	Connection: close
//	Content-Length: N
//
//	<reason>
//
// (414 and 431 for the Limits, above), closes the connection
// and returns io.EOF, so net/http never sees the refused request nor anything
// after it.
//
// Writing the refusal must not interleave with a response net/http is still
// writing for an earlier, valid request on the same connection. No response
// is pending when nothing has been released since a read from the network
// last timed out: net/http interrupts its background read (the one it runs
// while a handler works) with a past read deadline in finishRequest, after
// flushing the response. So a Read that meets the violation while bytes have
// been released since is that background read: the conn blocks in the
// underlying Read, discarding input, until the interruption, and returns the
// timeout as net/http expects. The next Read, net/http's wait for the next
// request, writes the refusal. After writing it the conn half-closes and
// drains input for up to 500ms before closing, as net/http does, so that the
// client's kernel does not discard the refusal on a reset.
//
// A violation found inside a body whose head was already released (possible
// only when the body spans several reads, e.g. a bad chunk-size line in a
// streamed upload) cannot be answered with a 400 without racing the handler.
// The body read then fails with an error, the handler sees it, and the
// connection is closed after the handler's response.
//
// # Protocol switches
//
// After a request with an Upgrade header, or a CONNECT request, the conn
// holds back what follows until the response to that request is written:
// Write watches its status line. On 101 (or 2xx to CONNECT) the conn stops
// validating and passes the rest of the connection (a WebSocket, a tunnel)
// through unchanged; on any other status it keeps validating, so an Upgrade
// header cannot be used to slip requests past it. A hijacking handler must
// therefore write its 101 before it reads from the connection, as WebSocket
// libraries do; more than DefaultMaxHeadBytes sent before the response is
// refused. Writes otherwise pass through; deadlines are those of the
// underlying conn.
//
// # Truncated requests
//
// A connection that ends inside a request head gets a 400. One that ends
// inside a body whose head net/http already has is left to net/http: the
// handler's body read fails with io.ErrUnexpectedEOF.
//
// # TLS
//
// The validator reads plaintext, so it must sit above TLS:
// Listener(tls.NewListener(ln, cfg)), never the other way round. net/http
// then sees this package's conn, not a *tls.Conn: Request.TLS is nil and
// HTTP/2 is not negotiated. Prod mode terminates TLS in front of Remuda.
//
// # Rules
//
// A request is refused when:
//
//   - the request line is not exactly method SP request-target SP
//     "HTTP/1.1" or "HTTP/1.0" CRLF, the method a token, the target visible
//     ASCII without a fragment (empty lines before the request line are
//     refused too); it is checked as soon as it ends;
//   - the method is not one Gunicorn accepts by default (without its
//     permit_unconventional_http_method): 3 to 20 characters, no lower-case
//     letter ("get" is not GET, and a proxy may not see it so);
//   - the request-target form does not fit the method: CONNECT needs
//     authority-form (host:port), "*" is for OPTIONS only, other methods need
//     origin-form ("/path") or absolute-form ("http://host/path", whose
//     authority must be [userinfo@]host[:port], the host a reg-name, IPv4
//     or bracketed IP literal);
//   - a line in the head ends with a bare LF, or a bare CR appears;
//   - a field line starts with SP or HTAB (obs-fold);
//   - a field name is empty or not a token, or is an "underscore twin" of
//     Content-Length, Transfer-Encoding or Host (e.g. Content_Length);
//   - a field value has a control character other than HTAB (NUL, DEL...);
//     obs-text (bytes >= 0x80) is allowed by RFC 9110 and accepted, except in
//     Content-Length, Transfer-Encoding and Host;
//   - Content-Length is not 1*DIGIT (sign, spaces inside, list such as
//     "5, 5") or appears twice;
//   - Transfer-Encoding is anything but exactly "chunked" (any case), appears
//     twice, or appears in an HTTP/1.0 request;
//   - Content-Length and Transfer-Encoding are both present;
//   - Host is missing in HTTP/1.1, appears twice, or holds characters that
//     cannot be in a host;
//   - a singleton field appears twice (RFC 9110 section 5.3: a field whose
//     value is not a list cannot be combined, so two of them leave the
//     request to be read differently by us and by a proxy or the app):
//     besides Host, Content-Length and Transfer-Encoding above, those a
//     server, proxy or app acts on: Proxy-Authorization, Content-Type,
//     Content-Location, Content-Range, Range, If-Range, If-Modified-Since,
//     If-Unmodified-Since, Max-Forwards, and the scheme fields of
//     Gunicorn's secure_scheme_headers (X-Forwarded-Proto,
//     X-Forwarded-Protocol, X-Forwarded-Ssl), which must moreover agree
//     (https, ssl, on) when several are given. Informational singletons
//     (User-Agent, Referer, From, Date) are let through: a repeat misleads
//     no decision, and refusing it would only break odd clients. Cookie is
//     let through too: an HTTP/2 front end may pass it on split.
//     Authorization is let through to the app, whose auth Required refuses
//     a repeat with simplejwt's own 401 (bad_authorization_header), the
//     answer a DRF client gets from simplejwt behind Gunicorn; an app that
//     reads Authorization itself must refuse more than one
//     (r.Header.Values);
//   - a chunk-size line is not 1*16HEXDIG followed by chunk extensions of the
//     form ;name or ;name=token or ;name="quoted", then CRLF (no sign, no
//     "0x", no whitespace);
//   - chunk data is not followed by CRLF, or the trailer section is not
//     ended by CRLF;
//   - the trailer section holds a field that must not be a trailer
//     (Content-Length, Transfer-Encoding, Host, Authorization, Content-Type,
//     Content-Encoding, Content-Range, Trailer, Cookie, Set-Cookie, TE,
//     Expect, Connection, Keep-Alive, Upgrade, Proxy-Authorization, Range,
//     Cache-Control, Max-Forwards) or a malformed one.
//
// # Gunicorn's request corpus
//
// Gunicorn's tests/requests/invalid cases are all refused (4xx, connection
// closed), each with its own limits; testdata/gunicorn holds our own
// request for each of its cases, invalid and valid (TestRequestCorpus), and
// TestGunicornCorpus replays Gunicorn's files themselves when
// GUNICORN_REQUESTS names their directory. One invalid case, a chunked body
// whose trailer section never ends, reaches the handler: its head and body
// were valid as they came, and the handler's body read fails with
// io.ErrUnexpectedEOF when the connection ends.
//
// Some of Gunicorn's valid cases are refused here, on purpose:
//
//   - HTTP/1.1 requests without Host (RFC 9112 section 3.2 requires a 400;
//     net/http refuses them too);
//   - Transfer-Encoding other than exactly chunked ("gzip, chunked",
//     "identity", two fields): net/http answers them 501, and a coding
//     list is where proxies disagree on framing;
//   - a fragment in the target, or bytes outside visible ASCII in it (RFC
//     9112 section 3.2; Gunicorn strips the fragment, net/http would route
//     it as part of the query or path);
//   - underscore twins of framing fields (Content_Length), which Gunicorn
//     drops by default: refused, since a proxy may map them to dashes;
//   - those that need a Gunicorn option Remuda does not have:
//     permit_obsolete_folding, strip_header_spaces,
//     permit_unconventional_http_method, header_map=dangerous and
//     proxy_protocol (PROXY protocol belongs to the load balancer in front).
package strict
