package readmetest

import (
	"bufio"
	"fmt"
	"regexp"
	"strings"
)

// Block is one fenced code block of a Markdown file.
type Block struct {
	// Line is the 1-based line of the opening fence.
	Line int
	// Lang is the first word of the info string ("sh", "go"); empty for a
	// bare fence.
	Lang string
	// Text is the content, without the fence's own indentation.
	Text string
	// Marker is what the "<!-- readme-test: … -->" comment on the line
	// before the fence says, trimmed; empty without one.
	Marker string
}

// shellLangs are the info strings of the blocks that run.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true}

// IsShell reports whether the block is a shell block, one that runs.
func (b Block) IsShell() bool { return shellLangs[b.Lang] }

// Skip returns the reason a shell block is not run, or "" if it runs.
func (b Block) Skip() string {
	reason, ok := strings.CutPrefix(b.Marker, "skip")
	if !ok {
		return ""
	}
	return strings.TrimSpace(reason)
}

// RanBy returns the script that the block's marker says runs the block
// word for word (".ci/run"), or "".
func (b Block) RanBy() string {
	s, _ := strings.CutPrefix(b.Marker, "in ")
	if s == b.Marker {
		return ""
	}
	return strings.TrimSpace(s)
}

var (
	fenceRE  = regexp.MustCompile("^( *)(```+|~~~+)[ \t]*([^`\\s]*)")
	markerRE = regexp.MustCompile(`^\s*<!--\s*readme-test:(.*?)-->\s*$`)
)

// Parse returns the fenced blocks of a Markdown file. An unclosed fence,
// a console block, a marker that is neither "skip REASON" nor "in SCRIPT",
// and a marker before anything but a shell block are errors.
func Parse(name, text string) ([]Block, error) {
	var (
		blocks []Block
		cur    *Block
		indent int
		fence  string
		body   strings.Builder
		prev   string // the previous line, outside blocks
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if cur != nil {
			trimmed := strings.TrimLeft(line, " ")
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t") == "" {
				cur.Text = body.String()
				blocks = append(blocks, *cur)
				cur = nil
				prev = line
				continue
			}
			// Content lines lose at most the fence's own indentation.
			cut := 0
			for cut < indent && cut < len(line) && line[cut] == ' ' {
				cut++
			}
			body.WriteString(line[cut:])
			body.WriteByte('\n')
			continue
		}
		m := fenceRE.FindStringSubmatch(line)
		if m == nil {
			prev = line
			continue
		}
		cur = &Block{Line: n, Lang: strings.ToLower(m[3])}
		indent, fence = len(m[1]), m[2]
		body.Reset()
		if mm := markerRE.FindStringSubmatch(prev); mm != nil {
			cur.Marker = strings.TrimSpace(mm[1])
		}
		if cur.Lang == "console" {
			return nil, fmt.Errorf("%s:%d: a console block: write sh, with the output as # comments, so that the block can run", name, n)
		}
		if cur.Marker != "" {
			if !cur.IsShell() {
				return nil, fmt.Errorf("%s:%d: readme-test marker %q before a %q block, which never runs", name, n, cur.Marker, cur.Lang)
			}
			if cur.RanBy() == "" && cur.Skip() == "" {
				return nil, fmt.Errorf("%s:%d: readme-test marker %q: want \"skip REASON\" or \"in SCRIPT\"", name, n, cur.Marker)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: fence never closed", name, cur.Line)
	}
	return blocks, nil
}

// namedRE matches a variable given a default: ${NAME:-…} or ${NAME:=…}.
var namedRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*):[-=]`)

// Named returns, in order of first use, the variables the shell blocks
// that run give a default to: the ones a README lets its reader, and the
// runner, set.
func Named(blocks []Block) []string {
	var names []string
	seen := map[string]bool{}
	for _, b := range blocks {
		if !b.IsShell() || b.Marker != "" {
			continue
		}
		for _, m := range namedRE.FindAllStringSubmatch(b.Text, -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				names = append(names, m[1])
			}
		}
	}
	return names
}
