package server_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goBlock is a ```go fenced block of a README.
var goBlock = regexp.MustCompile("(?ms)^```go\n(.*?)^```")

// TestReadmeGoBlocksCompile checks that every Go block of the READMEs is a
// whole program that go vet passes, against this module's packages: the
// code a newcomer pastes compiles.
func TestReadmeGoBlocksCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet; go test without -short runs it")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	readmes, _ := filepath.Glob(filepath.Join(root, "*", "README.md"))
	readmes = append(readmes, filepath.Join(root, "README.md"))
	more, _ := filepath.Glob(filepath.Join(root, "examples", "*", "README.md"))
	readmes = append(readmes, more...)

	// The programs go in the module, so that they import its packages as
	// they are; a directory starting with "_" is left out of ./... .
	dir, err := os.MkdirTemp(root, "_readme_test_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var pkgs []string
	where := map[string]string{}
	for _, readme := range readmes {
		b, err := os.ReadFile(readme)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range goBlock.FindAllSubmatchIndex(b, -1) {
			code := string(b[m[2]:m[3]])
			line := strings.Count(string(b[:m[2]]), "\n") + 1
			name, _ := filepath.Rel(root, readme)
			at := fmt.Sprintf("%s:%d", name, line)
			if !strings.HasPrefix(code, "package ") {
				t.Errorf("%s: a Go block that is not a whole file (it starts %q): make it a program that compiles", at, strings.SplitN(code, "\n", 2)[0])
				continue
			}
			pkg := filepath.Join(dir, fmt.Sprintf("b%d_%d", len(pkgs), i))
			if err := os.Mkdir(pkg, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(code), 0o644); err != nil {
				t.Fatal(err)
			}
			pkgs = append(pkgs, "./"+filepath.Base(pkg))
			where["./"+filepath.Base(pkg)] = at
		}
	}
	if len(pkgs) == 0 {
		t.Fatal("no Go block in the READMEs: the pattern no longer matches them")
	}
	cmd := exec.Command(goCmd, append([]string{"vet"}, pkgs...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("go vet of the READMEs' Go blocks %v: %v\n%s", where, err, out)
	}
	t.Logf("%d Go blocks checked: %v", len(pkgs), where)
}
