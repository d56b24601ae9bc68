package readmetest

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	md := strings.Join([]string{
		"# Title",         // 1
		"",                // 2
		"```sh",           // 3
		"echo one",        // 4
		"```",             // 5
		"",                // 6
		"1. a list item:", // 7
		"",                // 8
		"   ```bash",      // 9
		"   echo two",     // 10
		"     indented",   // 11
		"   ```",          // 12
		"",                // 13
		"<!-- readme-test: skip needs systemd as PID 1 -->", // 14
		"```sh",                            // 15
		"systemctl start x",                // 16
		"```",                              // 17
		"```",                              // 18
		"$ server run --bogus",             // 19
		"```",                              // 20
		"````go",                           // 21
		"```sh",                            // 22
		"````",                             // 23
		"<!-- readme-test: in .ci/run -->", // 24
		"~~~shell",                         // 25
		"go test ./...",                    // 26
		"~~~",                              // 27
	}, "\n") + "\n"
	blocks, err := Parse("x.md", md)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		line        int
		lang, text  string
		shell       bool
		skip, ranBy string
	}
	want := []row{
		{3, "sh", "echo one\n", true, "", ""},
		{9, "bash", "echo two\n  indented\n", true, "", ""},
		{15, "sh", "systemctl start x\n", true, "needs systemd as PID 1", ""},
		{18, "", "$ server run --bogus\n", false, "", ""},
		{21, "go", "```sh\n", false, "", ""},
		{25, "shell", "go test ./...\n", true, "", ".ci/run"},
	}
	var got []row
	for _, b := range blocks {
		got = append(got, row{b.Line, b.Lang, b.Text, b.IsShell(), b.Skip(), b.RanBy()})
	}
	if !slices.Equal(got, want) {
		t.Errorf("Parse:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct{ name, md, want string }{
		{"console", "```console\n$ ls\n```\n", "console block"},
		{"unclosed", "text\n```sh\necho\n", "x.md:2: fence never closed"},
		{"skip without reason", "<!-- readme-test: skip -->\n```sh\necho\n```\n", "want \"skip REASON\""},
		{"unknown marker", "<!-- readme-test: maybe -->\n```sh\necho\n```\n", "want \"skip REASON\""},
		{"marker on a go block", "<!-- readme-test: skip no -->\n```go\nx\n```\n", "never runs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.md", tt.md)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q): got error %v, want one containing %q", tt.md, err, tt.want)
			}
		})
	}
}

func TestNamed(t *testing.T) {
	blocks := []Block{
		{Lang: "sh", Text: "PORT=${PORT:-8000} SOCKET=${SOCKET:-/run/server.sock}\ncurl :$PORT\n"},
		{Lang: "sh", Text: ": \"${DESTDIR:=}\"; echo ${PORT:-1} ${HOME}\n"},
		{Lang: "sh", Marker: "skip x", Text: "${SKIPPED:-1}\n"},
		{Lang: "toml", Text: "${TOML:-1}\n"},
	}
	if got, want := Named(blocks), []string{"PORT", "SOCKET", "DESTDIR"}; !slices.Equal(got, want) {
		t.Errorf("Named: got %q, want %q", got, want)
	}
}

// TestScriptFailsAsAReaderWould runs small READMEs through the runner's
// bash: what a reader would see fail must fail the run, and what a reader's
// terminal carries from one block to the next must carry over.
func TestScriptFailsAsAReaderWould(t *testing.T) {
	tests := []struct {
		name   string
		blocks []string
		fails  bool
		output string // in the output, if not empty
	}{
		{"a failing command", []string{"echo before", "false\necho after"}, true, "before"},
		{"an unset variable", []string{"echo \"$README_TEST_UNSET\""}, true, "unbound variable"},
		{"a failing pipe", []string{"false | cat"}, true, ""},
		{"an HTTP error with --fail-with-body", []string{"curl -sS --fail-with-body http://127.0.0.1:1/"}, true, ""},
		{"state carries over", []string{"x=kept; mkdir sub; cd sub", "echo \"$x in ${PWD##*/}\""}, false, "kept in sub"},
		{"kill %1 stops the job", []string{"sleep 100 &\nkill %1; wait", "sleep 100 &\nkill %1; wait"}, false, ""},
		{"a job left running is killed", []string{"sleep 100 &"}, false, "still running at the end: killed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var blocks []Block
			for i, text := range tt.blocks {
				blocks = append(blocks, Block{Line: i + 1, Lang: "sh", Text: text + "\n"})
			}
			start := time.Now()
			out, err := execute(t, t.TempDir(), os.Environ(), script("x.md", blocks, 100*time.Millisecond), 20*time.Second)
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %s: a job was waited for", took)
			}
			if got := err != nil; got != tt.fails {
				t.Errorf("got error %v, want failure %v; output:\n%s", err, tt.fails, out)
			}
			if !strings.Contains(out, tt.output) {
				t.Errorf("output %q: want %q in it", out, tt.output)
			}
		})
	}
}
