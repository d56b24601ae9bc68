package workers

import (
	"strings"
	"testing"
)

// BenchmarkRenderMetrics is one scrape of a master without workers, as
// its loop renders it: the master's own process and Go figures included.
func BenchmarkRenderMetrics(b *testing.B) {
	b.ReportAllocs()
	m := &Master{}
	for b.Loop() {
		m.renderMetrics()
	}
}

func TestEscapeLabel(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:          `plain`,
		`a"b`:            `a\"b`,
		`back\slash`:     `back\\slash`,
		"two\nlines":     `two\nlines`,
		"all\\\"\n":      `all\\\"\n`,
		"[::1]:8000 ünï": "[::1]:8000 ünï",
	} {
		if got := escapeLabel(in); got != want {
			t.Errorf("escapeLabel(%q): got %q, want %q", in, got, want)
		}
	}
	if strings.Contains(escapeLabel("x\ny"), "\n") {
		t.Errorf("a newline survived escaping")
	}
}
