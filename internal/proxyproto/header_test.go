package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
)

// after is what a client sends once the header is through: Read must leave
// every byte of it.
const after = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

// v2 builds a version 2 header: command, family byte, addresses and TLVs.
func v2(cmd, fam byte, body ...[]byte) []byte {
	b := append([]byte(nil), sigV2...)
	b = append(b, 0x20|cmd, fam, 0, 0)
	for _, part := range body {
		b = append(b, part...)
	}
	binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-16))
	return b
}

func addrs4(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sport), dport)
}

func addrs6(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sport), dport)
}

// tlv is one type-length-value entry.
func tlv(typ byte, value string) []byte {
	return append([]byte{typ, byte(len(value) >> 8), byte(len(value))}, value...)
}

func TestRead(t *testing.T) {
	longUnknown := "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	if len(longUnknown) != MaxV1Len {
		t.Fatalf("the longest v1 line is %d bytes, want %d", len(longUnknown), MaxV1Len)
	}
	for _, tt := range []struct {
		name   string
		mode   Mode
		header string
		want   Header
	}{
		{"v1 TCP4", Auto, "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n", Header{1, netip.MustParseAddrPort("203.0.113.7:56324")}},
		{"v1 TCP4 shortest", Auto, "PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n", Header{1, netip.MustParseAddrPort("1.2.3.4:0")}},
		{"v1 TCP4 longest", V1, "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", Header{1, netip.MustParseAddrPort("255.255.255.255:65535")}},
		{"v1 TCP6", V1, "PROXY TCP6 2001:db8::7 2001:db8::1 40000 8000\r\n", Header{1, netip.MustParseAddrPort("[2001:db8::7]:40000")}},
		{"v1 TCP6 longest", V1, "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
			Header{1, netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
		{"v1 TCP6 IPv4-mapped", Auto, "PROXY TCP6 ::ffff:192.0.2.7 ::ffff:192.0.2.1 4000 80\r\n", Header{1, netip.MustParseAddrPort("192.0.2.7:4000")}},
		{"v2 TCP6 IPv4-mapped", Auto, string(v2(cmdProxy, famTCP6, addrs6("::ffff:192.0.2.7", "::1", 4001, 80))), Header{2, netip.MustParseAddrPort("192.0.2.7:4001")}},
		{"v1 TCP6 loopback", Auto, "PROXY TCP6 ::1 ::1 1 2\r\n", Header{1, netip.MustParseAddrPort("[::1]:1")}},
		{"v1 UNKNOWN", Auto, "PROXY UNKNOWN\r\n", Header{Version: 1}},
		{"v1 UNKNOWN with addresses", V1, longUnknown, Header{Version: 1}},
		{"v2 PROXY TCP4", Auto, string(v2(cmdProxy, famTCP4, addrs4("198.51.100.9", "192.0.2.1", 61000, 443))), Header{2, netip.MustParseAddrPort("198.51.100.9:61000")}},
		{"v2 PROXY TCP6", V2, string(v2(cmdProxy, famTCP6, addrs6("2001:db8::9", "2001:db8::1", 61001, 443))), Header{2, netip.MustParseAddrPort("[2001:db8::9]:61001")}},
		{"v2 PROXY TCP4 with TLVs", V2, string(v2(cmdProxy, famTCP4, addrs4("198.51.100.9", "192.0.2.1", 1, 2),
			tlv(0x01, "h2"), tlv(0x02, "example.com"), tlv(0x05, strings.Repeat("u", 128)), tlv(0xEA, "vpce-0123456789abcdef0"))), Header{2, netip.MustParseAddrPort("198.51.100.9:1")}},
		{"v2 LOCAL", Auto, string(v2(cmdLocal, famUnspec)), Header{Version: 2}},
		{"v2 LOCAL with addresses", V2, string(v2(cmdLocal, famTCP4, addrs4("10.0.0.1", "10.0.0.2", 1, 2))), Header{Version: 2}},
		{"v2 PROXY UNSPEC", Auto, string(v2(cmdProxy, famUnspec)), Header{Version: 2}},
		{"v2 PROXY UNIX", Auto, string(v2(cmdProxy, famUnixStrm, make([]byte, 216))), Header{Version: 2}},
		{"v2 PROXY UDP4", Auto, string(v2(cmdProxy, famUDP4, addrs4("10.0.0.1", "10.0.0.2", 1, 2))), Header{Version: 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, and one byte per read: a header split anywhere.
			for _, split := range []bool{false, true} {
				var r io.Reader = strings.NewReader(tt.header + after)
				if split {
					r = iotest.OneByteReader(r)
				}
				got, err := Read(r, tt.mode)
				if err != nil {
					t.Fatalf("Read(%q), split %v: %v", tt.header, split, err)
				}
				if got != tt.want {
					t.Errorf("Read(%q), split %v: got %+v, want %+v", tt.header, split, got, tt.want)
				}
				rest, _ := io.ReadAll(r)
				if string(rest) != after {
					t.Errorf("Read(%q), split %v: left %q, want %q: it read past the header", tt.header, split, rest, after)
				}
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	good4 := addrs4("198.51.100.9", "192.0.2.1", 1, 2)
	over := v2(cmdProxy, famTCP4, good4)
	binary.BigEndian.PutUint16(over[14:16], MaxV2Len+1)
	badVersion := v2(cmdProxy, famTCP4, good4)
	badVersion[12] = 0x11
	for _, tt := range []struct {
		name   string
		mode   Mode
		header string
		want   string // in the error
	}{
		{"no header", Auto, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "no PROXY protocol header"},
		{"TLS handshake", Auto, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh", "no PROXY protocol header"},
		{"empty", Auto, "", "truncated"},
		{"v1 line feed only", Auto, "\n", "truncated"},
		{"v1 truncated", Auto, "PROXY TCP4 203.0.113.7 192.0.2.1 56", "truncated"},
		{"v1 LF without CR", Auto, "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\n", "out of place"},
		{"v1 CR without LF", Auto, "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r", "out of place"},
		{"v1 short line", Auto, "PROXY TCP4\r\n", "separated by single spaces"},
		{"v1 short UNKNOWN", Auto, "PROXY UNKNOW\r\n", `"UNKNOW" is not`},
		{"v1 over 107 bytes", Auto, "PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n", "longer than 107 bytes"},
		{"v1 TCP6 over 107 bytes", Auto, "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 0000065535 65535\r\n", "longer than 107 bytes"},
		{"v1 bad protocol", Auto, "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", `"UDP4" is not TCP4, TCP6 or UNKNOWN`},
		{"v1 lower case", Auto, "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "is not TCP4"},
		{"v1 missing port", Auto, "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "separated by single spaces"},
		{"v1 extra field", Auto, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "separated by single spaces"},
		{"v1 double space", Auto, "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "separated by single spaces"},
		{"v1 IPv6 in TCP4", Auto, "PROXY TCP4 ::1 ::1 1 2\r\n", `"::1" is not an IPv4 address`},
		{"v1 IPv4 in TCP6", Auto, "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", `"1.2.3.4" is not an IPv6 address`},
		{"v1 host name", Auto, "PROXY TCP4 example.com 5.6.7.8 1 2\r\n", `"example.com" is not an IPv4`},
		{"v1 zone", Auto, "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "is not an IPv6"},
		{"v1 octet leading zero", Auto, "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "is not an IPv4"},
		{"v1 port over 65535", Auto, "PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n", `port "65536"`},
		{"v1 port leading zero", Auto, "PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n", `port "080"`},
		{"v1 port sign", Auto, "PROXY TCP4 1.2.3.4 5.6.7.8 +80 80\r\n", `port "+80"`},
		{"v1 port not a number", Auto, "PROXY TCP4 1.2.3.4 5.6.7.8 80 http\r\n", `port "http"`},
		{"v1 port empty", Auto, "PROXY TCP4 1.2.3.4 5.6.7.8 80 \r\n", `port ""`},
		{"v1 where v2 is required", V2, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "version 1 header where version 2 is required"},
		{"v2 where v1 is required", V1, string(v2(cmdProxy, famTCP4, good4)), "version 2 header where version 1 is required"},
		{"v2 bad signature", Auto, "\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + string(good4), "no PROXY protocol header"},
		{"v2 truncated fixed part", Auto, string(v2(cmdProxy, famTCP4, good4)[:15]), "truncated"},
		{"v2 truncated addresses", Auto, string(v2(cmdProxy, famTCP4, good4)[:20]), "truncated"},
		{"v2 truncated TLV", Auto, string(v2(cmdProxy, famTCP4, good4, tlv(0x02, "example.com"))[:35]), "truncated"},
		{"v2 oversized", Auto, string(over), "length 4097 is over 4096"},
		{"v2 version 1 in the binary", Auto, string(badVersion), "version 1 in a version 2 header"},
		{"v2 command 2", Auto, string(v2(0x2, famTCP4, good4)), "command 0x2"},
		{"v2 family 4", Auto, string(v2(cmdProxy, 0x41, good4)), "0x41 is not one"},
		{"v2 transport 3", Auto, string(v2(cmdProxy, 0x13, good4)), "0x13 is not one"},
		{"v2 TCP4 family, UNSPEC transport", Auto, string(v2(cmdProxy, 0x10, good4)), "0x10 is not one"},
		{"v2 addresses short", Auto, string(v2(cmdProxy, famTCP4, good4[:11])), "shorter than its addresses (12 bytes)"},
		{"v2 TCP6 addresses short", Auto, string(v2(cmdProxy, famTCP6, good4)), "shorter than its addresses (36 bytes)"},
		{"v2 UNIX addresses short", Auto, string(v2(cmdProxy, famUnixStrm, make([]byte, 215))), "shorter than its addresses (216 bytes)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The client's bytes follow, unless the connection ended.
			in := tt.header + after
			if tt.want == "truncated" {
				in = tt.header
			}
			got, err := Read(strings.NewReader(in), tt.mode)
			if err == nil {
				t.Fatalf("Read(%q): got %+v, want an error containing %q", tt.header, got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "proxyproto: ") {
				t.Errorf("Read(%q): got error %q, want one starting proxyproto: and containing %q", tt.header, err, tt.want)
			}
		})
	}
}

// TestReadDeadline: a read error inside the header, such as a deadline's,
// is the error, named as a read of the header.
func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Read(io.MultiReader(strings.NewReader("PROXY TCP4 1.2.3.4"), iotest.ErrReader(boom)), Auto)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "reading the header") {
		t.Errorf("got %v, want an error reading the header wrapping %v", err, boom)
	}
}

// TestReadV1Reads: a v1 header as HAProxy sends it, in one segment, takes
// a handful of reads, not one per byte.
func TestReadV1Reads(t *testing.T) {
	for _, header := range []string{
		"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n",
		"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	} {
		r := &countingReader{r: strings.NewReader(header + after)}
		if _, err := Read(r, Auto); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d reads for %d bytes", r.reads, len(header))
		if r.reads > len(header)/4 {
			t.Errorf("%q: %d reads, want at most %d", header, r.reads, len(header)/4)
		}
	}
}

type countingReader struct {
	r     io.Reader
	reads int
	n     int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestHasSignature(t *testing.T) {
	for _, tt := range []struct {
		first string
		want  bool
	}{
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", true},
		{"PROXY ", true},
		{string(sigV2), true},
		{"\r\n\r\n", true},
		{"\r", true},
		{"GET / HTTP/1.1\r\n", false},
		{"POST /api/token/ HTTP/1.1\r\n", false},
		{"PROPFIND / HTTP/1.1\r\n", false},
		{"PRI * HTTP/2.0\r\n", false},
		{"\x16\x03\x01", false},
		{"P", false},
		{"", false},
	} {
		if got := HasSignature([]byte(tt.first)); got != tt.want {
			t.Errorf("HasSignature(%q) = %v, want %v", tt.first, got, tt.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	for i, name := range Modes {
		m, err := ParseMode(name)
		if err != nil || m != Mode(i) || m.String() != name {
			t.Errorf("ParseMode(%q) = %v, %v; want %s", name, m, err, name)
		}
	}
	for _, bad := range []string{"", "on", "true", "V1", "v3"} {
		if _, err := ParseMode(bad); err == nil || !strings.Contains(err.Error(), `"`+bad+`" is not one of off, v1, v2, auto`) {
			t.Errorf("ParseMode(%q): got %v, want an error naming it and the modes", bad, err)
		}
	}
}

// FuzzRead checks, for any input, that Read does not panic, and that what
// it accepts does not depend on what follows the header nor on how the
// reads are cut: the bytes it consumed, read one at a time and followed by
// other bytes, give the same header and are consumed exactly, so it never
// reads past a header.
func FuzzRead(f *testing.F) {
	for _, seed := range []string{
		"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n",
		"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8000\r\n",
		"PROXY UNKNOWN\r\n",
		string(v2(cmdProxy, famTCP4, addrs4("198.51.100.9", "192.0.2.1", 61000, 443), tlv(0x01, "h2"))),
		string(v2(cmdLocal, famUnspec)),
		"GET / HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	other := strings.Repeat("\x00\r\n", 40)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range []Mode{V1, V2, Auto} {
			r := &countingReader{r: bytes.NewReader(data)}
			h, err := Read(r, m)
			if err != nil {
				continue
			}
			if h.Version != 1 && h.Version != 2 || m == V1 && h.Version != 1 || m == V2 && h.Version != 2 {
				t.Fatalf("Read(%q, %v): version %d", data, m, h.Version)
			}
			if h.Source.IsValid() && (h.Source.Addr().Zone() != "" || h.Source.Addr().Is4In6()) {
				t.Fatalf("Read(%q, %v): source %v has a zone or is IPv4-mapped", data, m, h.Source)
			}
			header := data[:r.n]
			again := &countingReader{r: iotest.OneByteReader(io.MultiReader(bytes.NewReader(header), strings.NewReader(other)))}
			h2, err := Read(again, m)
			if err != nil || h2 != h || again.n != len(header) {
				t.Fatalf("Read(%q, %v) = %+v: the %d bytes it read, one at a time and followed by others: %+v, %v, %d bytes read",
					data, m, h, len(header), h2, err, again.n)
			}
		}
	})
}

// BenchmarkRead reads the header HAProxy sends at the start of each
// connection, from an unbuffered reader as a socket is.
func BenchmarkRead(b *testing.B) {
	for _, bb := range []struct {
		name, header string
	}{
		{"v1 TCP4", "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"},
		{"v1 TCP6", "PROXY TCP6 2001:db8:85a3::8a2e:370:7334 2001:db8::1 56324 443\r\n"},
		{"v2 TCP4", string(v2(cmdProxy, famTCP4, addrs4("203.0.113.7", "192.0.2.1", 56324, 443)))},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			r := strings.NewReader(bb.header)
			for b.Loop() {
				r.Reset(bb.header)
				if _, err := Read(r, Auto); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
