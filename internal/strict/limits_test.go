package strict

import (
	"fmt"
	"strings"
	"testing"
)

// validate runs a whole stream through a validator with lim and returns the
// violation, if any.
func validate(lim Limits, in string) *violation {
	v := validator{lim: lim}
	b := []byte(in)
	for len(b) > 0 {
		n, _, err := v.step(b)
		if err != nil {
			return err
		}
		if n == 0 {
			return bad("incomplete request")
		}
		b = b[n:]
	}
	return nil
}

// TestLimits checks each limit at its boundary, Gunicorn's meanings of 0 and
// of values past the maxima, and that trailer sections are bounded too.
func TestLimits(t *testing.T) {
	line := func(n int) string { // a request line of n bytes, CRLF excluded
		return "GET /" + strings.Repeat("a", n-len("GET / HTTP/1.1")) + " HTTP/1.1\r\nHost: h\r\n\r\n"
	}
	field := func(n int) string { // a field line of n bytes, CRLF included
		return "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("f", n-len("X: \r\n")) + "\r\n\r\n"
	}
	fields := func(n int) string { // n field lines, Host included
		var b strings.Builder
		b.WriteString("GET / HTTP/1.1\r\nHost: h\r\n")
		for i := 1; i < n; i++ {
			fmt.Fprintf(&b, "X-%d: v\r\n", i)
		}
		return b.String() + "\r\n"
	}
	trailer := func(n, size int) string { // n trailer fields of size bytes
		var b strings.Builder
		b.WriteString("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "T%03d: %s\r\n", i, strings.Repeat("t", size-len("T000: \r\n")))
		}
		return b.String() + "\r\n"
	}
	tests := []struct {
		name string
		lim  Limits
		in   string
		want *violation
	}{
		{"request line at the default", DefaultLimits, line(4094), nil},
		{"request line past the default", DefaultLimits, line(4095), errURITooLong},
		{"request line 0: up to the head cap", Limits{}, line(60 << 10), nil},
		{"request line 0: past the head cap", Limits{}, line(65 << 10), errURITooLong},
		{"request line 9000 is 8190", Limits{RequestLine: 9000}, line(8191), errURITooLong},
		{"field at the default", DefaultLimits, field(8190), nil},
		{"field past the default", DefaultLimits, field(8191), errFieldTooLarge},
		{"field size 0 is 8190", Limits{}, field(8191), errFieldTooLarge},
		{"field size raised", Limits{FieldSize: 8210}, field(8210), nil},
		{"fields at the default", DefaultLimits, fields(100), nil},
		{"fields past the default", DefaultLimits, fields(101), errTooManyFields},
		{"fields 0 is 32768: the head cap comes first", Limits{}, fields(8000), errHeadTooLarge},
		{"fields 2", Limits{Fields: 2}, fields(3), errTooManyFields},
		{"trailer fields within", Limits{Fields: 2}, trailer(2, 20), nil},
		{"trailer fields past", Limits{Fields: 2}, trailer(3, 20), errTooManyTrailers},
		{"trailer field too long", Limits{FieldSize: 30}, trailer(1, 31), errTrailerTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validate(tt.lim, tt.in); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLimitBeforeLineEnds checks that a line past its limit is refused
// before its end arrives.
func TestLimitBeforeLineEnds(t *testing.T) {
	v := validator{lim: DefaultLimits}
	in := "GET /" + strings.Repeat("a", 5000)
	if _, _, err := v.step([]byte(in)); err != errURITooLong {
		t.Errorf("request line of 5005 bytes so far: got %v, want %v", err, errURITooLong)
	}
	v = validator{lim: DefaultLimits}
	in = "GET / HTTP/1.1\r\nX: " + strings.Repeat("b", 9000)
	if _, _, err := v.step([]byte(in)); err != errFieldTooLarge {
		t.Errorf("field line of 9003 bytes so far: got %v, want %v", err, errFieldTooLarge)
	}
}

// TestSingletons checks that each singleton field is refused when repeated,
// in any case, and that list fields and informational ones may repeat.
func TestSingletons(t *testing.T) {
	for _, s := range singletons {
		in := "GET / HTTP/1.1\r\nHost: h\r\n" + s.canonical + ": a\r\n" + strings.ToUpper(s.lower) + ": a\r\n\r\n"
		if err := validate(DefaultLimits, in); err == nil || err.reason != "duplicate "+s.canonical {
			t.Errorf("%s twice: got %v, want duplicate %s", s.canonical, err, s.canonical)
		}
	}
	for _, name := range []string{"Accept", "Cookie", "User-Agent", "Referer", "If-None-Match", "Forwarded"} {
		in := "GET / HTTP/1.1\r\nHost: h\r\n" + name + ": a\r\n" + name + ": b\r\n\r\n"
		if err := validate(DefaultLimits, in); err != nil {
			t.Errorf("%s twice: got %v, want accepted", name, err)
		}
	}
	for in, want := range map[string]bool{
		"X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\n":         true,
		"X-Forwarded-Proto: http\r\nX-Forwarded-Protocol: plain\r\n":  true,
		"X-Forwarded-Proto: https\r\nX-Forwarded-Protocol: plain\r\n": false,
		"X-Forwarded-Ssl: off\r\nX-Forwarded-Protocol: ssl\r\n":       false,
	} {
		err := validate(DefaultLimits, "GET / HTTP/1.1\r\nHost: h\r\n"+in+"\r\n")
		if (err == nil) != want {
			t.Errorf("%q: got %v, want accepted %v", in, err, want)
		}
	}
}

func (v *violation) String() string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%d %s", v.status, v.reason)
}
