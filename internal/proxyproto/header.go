// Package proxyproto reads the PROXY protocol header that a load balancer
// (HAProxy's send-proxy and send-proxy-v2, AWS NLB, stunnel's protocol =
// proxy) puts at the start of each connection it opens to a backend, to
// tell the backend who the client is: the proxy is the TCP peer, the
// header names the client's address and port.
//
// Both versions of HAProxy's specification (doc/proxy-protocol.txt) are
// read. Version 1 is one text line:
//
//	PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n
//
// (TCP6 with IPv6 addresses, or UNKNOWN followed by anything), at most 107
// bytes with its CRLF. Version 2 is binary: a 12-byte signature, a version
// and command byte (LOCAL or PROXY), an address family and transport
// byte, a 16-bit length, then the addresses and optional TLVs, which are
// skipped.
//
// Read never reads past the header: what follows it is the client's
// stream (HTTP, or a TLS handshake) and is left on the connection for the
// server. Conn reads the header of an accepted connection lazily, on the
// connection's own goroutine, so that a slow peer never holds up the
// accept loop.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Mode is which versions of the header a listed peer must send.
type Mode uint8

const (
	// Off reads no header: connections are served as they come.
	Off Mode = iota
	// V1 requires the text header.
	V1
	// V2 requires the binary header.
	V2
	// Auto takes either.
	Auto
)

// Modes are the names ParseMode takes, in Mode's order: Gunicorn's values
// of proxy_protocol.
var Modes = []string{"off", "v1", "v2", "auto"}

// ParseMode parses "off", "v1", "v2" or "auto".
func ParseMode(s string) (Mode, error) {
	for i, name := range Modes {
		if s == name {
			return Mode(i), nil
		}
	}
	return Off, fmt.Errorf("proxyproto: mode %q is not one of %s", s, strings.Join(Modes, ", "))
}

func (m Mode) String() string {
	if int(m) < len(Modes) {
		return Modes[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Header is what a PROXY protocol header says.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Source is the client's address and port. It is the zero AddrPort
	// when the header carries no client address to use, and the peer's
	// own address then stands: version 1's UNKNOWN, version 2's LOCAL
	// command (the proxy's own health checks), and version 2's UNSPEC,
	// UNIX and UDP address families. An IPv4-mapped IPv6 address
	// (::ffff:192.0.2.7, which a proxy on a dual-stack socket may send) is
	// given as the IPv4 address, as Go's net package gives a peer.
	Source netip.AddrPort
}

// source is a Header.Source.
func source(a netip.Addr, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(a.Unmap(), port)
}

// Limits of the format.
const (
	// MaxV1Len is the longest version 1 line, CRLF included (the
	// specification's limit).
	MaxV1Len = 107
	// MaxV2Len is the largest version 2 length field Read accepts: the
	// address block plus TLVs. The addresses take at most 216 bytes (UNIX);
	// the TLVs that HAProxy and cloud load balancers send (ALPN, authority,
	// unique id, SSL, VPC endpoint) fit many times over.
	MaxV2Len = 4096
	// minLen is the shortest header of either version, "PROXY UNKNOWN\r\n":
	// that many bytes can always be read without reading past one.
	minLen = 15
)

// Signatures: how each version starts.
var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// ErrNoHeader is Read's error when the connection starts with neither
// version's signature.
var ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")

// Read reads one header from r, of a version that m allows (V1, V2 or
// Auto), and not one byte past it: r is typically the connection itself,
// unbuffered. A stream that does not start with a header, or whose header
// is malformed, truncated, too long or of a version m does not allow, is
// an error; how much of it was consumed is then unspecified.
func Read(r io.Reader, m Mode) (Header, error) {
	var buf [MaxV1Len]byte
	if _, err := io.ReadFull(r, buf[:minLen]); err != nil {
		return Header{}, truncated(err)
	}
	switch {
	case bytes.HasPrefix(buf[:], sigV1):
		if m == V2 {
			return Header{}, errors.New("proxyproto: a version 1 header where version 2 is required")
		}
		return readV1(r, &buf)
	case bytes.HasPrefix(buf[:], sigV2):
		if m == V1 {
			return Header{}, errors.New("proxyproto: a version 2 header where version 1 is required")
		}
		return readV2(r, &buf)
	}
	return Header{}, ErrNoHeader
}

// truncated words a read error that came before a header's end.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("proxyproto: truncated header: the connection ended inside it")
	}
	return fmt.Errorf("proxyproto: reading the header: %w", err)
}

// HasSignature reports whether b, the first bytes a peer sent, start a
// PROXY protocol header: "PROXY " in full, or any prefix of version 2's
// signature, which begins with a CR that no HTTP request or TLS handshake
// begins with.
func HasSignature(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	return bytes.HasPrefix(b, sigV1) || bytes.HasPrefix(sigV2, b[:min(len(b), len(sigV2))])
}

// readV1 reads the rest of a version 1 line, of which buf holds the first
// minLen bytes. The line ends at its CRLF, which must not be read past, so
// each read asks for no more than a valid line still needs at least: its
// CRLF and, for TCP4 and TCP6, one byte for each of its five spaces still
// to come. A header from HAProxy thus takes a few reads, not one per byte.
// (Only an invalid line, short of spaces, can be read past.)
func readV1(r io.Reader, buf *[MaxV1Len]byte) (Header, error) {
	n := minLen
	rest := string(buf[len(sigV1):n])
	proto := rest[:strings.IndexAny(rest+" ", " \r")]
	tcp := proto == "TCP4" || proto == "TCP6"
	if !tcp && proto != "UNKNOWN" {
		return Header{}, fmt.Errorf("proxyproto: version 1 protocol %q is not TCP4, TCP6 or UNKNOWN", proto)
	}
	for {
		switch i := bytes.IndexAny(buf[:n], "\r\n"); {
		case i < 0 || i == n-1 && buf[i] == '\r':
			// The line goes on.
		case buf[i] == '\r' && buf[i+1] == '\n':
			// A CRLF before the last two bytes read ends a line shorter
			// than minLen, which parseV1 refuses.
			return parseV1(string(buf[:i]))
		default:
			return Header{}, errors.New("proxyproto: version 1 line has a carriage return or line feed out of place")
		}
		if n == MaxV1Len {
			return Header{}, fmt.Errorf("proxyproto: version 1 line longer than %d bytes", MaxV1Len)
		}
		need := 1
		if buf[n-1] != '\r' {
			need = 2
			if tcp {
				need += max(0, 5-bytes.Count(buf[:n], []byte(" ")))
			}
		}
		m, err := io.ReadFull(r, buf[n:min(n+need, MaxV1Len)])
		n += m
		if err != nil {
			return Header{}, truncated(err)
		}
	}
}

// parseV1 parses a version 1 line without its CRLF.
func parseV1(line string) (Header, error) {
	f := strings.Split(line, " ")
	if f[1] == "UNKNOWN" {
		// The rest of the line, if any, is to be ignored.
		return Header{Version: 1}, nil
	}
	if len(f) != 6 {
		return Header{}, fmt.Errorf("proxyproto: version 1 line %q: want PROXY, the protocol, two addresses and two ports, separated by single spaces", line)
	}
	var addrs [2]netip.Addr
	for i, s := range f[2:4] {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || f[1] == "TCP4" != a.Is4() {
			return Header{}, fmt.Errorf("proxyproto: version 1 address %q is not an %s address", s, map[string]string{"TCP4": "IPv4", "TCP6": "IPv6"}[f[1]])
		}
		addrs[i] = a
	}
	var ports [2]uint16
	for i, s := range f[4:6] {
		p, ok := parsePort(s)
		if !ok {
			return Header{}, fmt.Errorf("proxyproto: version 1 port %q is not a number from 0 to 65535 without leading zeros", s)
		}
		ports[i] = p
	}
	return Header{Version: 1, Source: source(addrs[0], ports[0])}, nil
}

// parsePort parses a decimal port as version 1 writes it: digits only, no
// leading zero but in "0" itself.
func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 || s[0] == '0' && s != "0" {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return uint16(n), n <= 65535
}

// Version 2's commands and its valid address family and transport bytes.
const (
	cmdLocal = 0x0
	cmdProxy = 0x1

	famUnspec    = 0x00
	famTCP4      = 0x11
	famUDP4      = 0x12
	famTCP6      = 0x21
	famUDP6      = 0x22
	famUnixStrm  = 0x31
	famUnixDgram = 0x32
)

// readV2 reads the rest of a version 2 header, of which buf holds the
// first minLen bytes: one more byte completes its fixed 16, whose length
// field says how many follow.
func readV2(r io.Reader, buf *[MaxV1Len]byte) (Header, error) {
	if _, err := io.ReadFull(r, buf[minLen:16]); err != nil {
		return Header{}, truncated(err)
	}
	version, cmd := buf[12]>>4, buf[12]&0xf
	if version != 2 {
		return Header{}, fmt.Errorf("proxyproto: version %d in a version 2 header", version)
	}
	if cmd != cmdLocal && cmd != cmdProxy {
		return Header{}, fmt.Errorf("proxyproto: version 2 command %#x is neither LOCAL (0) nor PROXY (1)", cmd)
	}
	fam := buf[13]
	var addrLen int
	switch fam {
	case famUnspec:
	case famTCP4, famUDP4:
		addrLen = 12
	case famTCP6, famUDP6:
		addrLen = 36
	case famUnixStrm, famUnixDgram:
		addrLen = 216
	default:
		return Header{}, fmt.Errorf("proxyproto: version 2 address family and transport %#02x is not one the specification defines", fam)
	}
	length := int(binary.BigEndian.Uint16(buf[14:16]))
	if length > MaxV2Len {
		return Header{}, fmt.Errorf("proxyproto: version 2 length %d is over %d", length, MaxV2Len)
	}
	// A LOCAL header's addresses, if any, are ignored, so they are not
	// required either.
	if cmd == cmdProxy && length < addrLen {
		return Header{}, fmt.Errorf("proxyproto: version 2 length %d is shorter than its addresses (%d bytes)", length, addrLen)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, truncated(err)
	}
	// What follows the addresses are TLVs, skipped.
	h := Header{Version: 2}
	if cmd == cmdLocal {
		return h, nil
	}
	switch fam {
	case famTCP4:
		h.Source = source(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
	case famTCP6:
		h.Source = source(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
	}
	return h, nil
}
