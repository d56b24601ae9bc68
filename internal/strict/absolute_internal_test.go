package strict

import "testing"

func TestIsAbsolute(t *testing.T) {
	for target, want := range map[string]bool{
		"http://example.com/a?b":         true,
		"http://example.com":             true,
		"https://example.com:8443/x":     true,
		"http://example.com:/x":          true,
		"http://[::1]:8080/x":            true,
		"http://user:pw@example.com:80/": true,
		"http://10.0.0.1?q":              true,
		"s://]bad/:":                     false,
		"http://[::1/x":                  false,
		"http://[]/x":                    false,
		"http:///x":                      false,
		"http://example.com:80a/":        false,
		"http://exa[mple.com/":           false,
		"http://[fe80::1%25eth0]/":       false,
		"1http://example.com/":           false,
		"http//example.com/":             false,
	} {
		if got := isAbsolute([]byte(target)); got != want {
			t.Errorf("isAbsolute(%q): got %v, want %v", target, got, want)
		}
	}
}

func TestConventionalMethod(t *testing.T) {
	for m, want := range map[string]bool{
		"GET": true, "PROPFIND": true, "-BLARGH": true, "BASELINE-CONTROL": true,
		"get": false, "-bl": false, "GE": false, "ABCDEFGHIJKLMNOPQRSTU": false, "Get": false,
	} {
		if got := conventionalMethod([]byte(m)); got != want {
			t.Errorf("conventionalMethod(%q): got %v, want %v", m, got, want)
		}
	}
}
