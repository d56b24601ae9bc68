package module_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules checks, with `go list -deps`, what each package links:
// modules plug into the server without either importing the other, the
// process model knows neither, internal packages import no public one, an
// app without auth links no database driver, and one with auth on SQLite
// links no PostgreSQL client.
func TestImportRules(t *testing.T) {
	const mod = "github.com/remuda/remuda"
	public := []string{mod + "/server", mod + "/auth", mod + "/module"}
	for _, tt := range []struct {
		pkg    string
		refuse []string // no package whose path starts with one of these
	}{
		{mod + "/auth", []string{mod + "/server", mod + "/internal/workers", "github.com/jackc/pgx"}},
		{mod + "/auth/postgres", []string{mod + "/server", mod + "/internal/workers"}},
		{mod + "/internal/workers", []string{mod + "/server", mod + "/auth"}},
		{mod + "/server", []string{mod + "/auth"}},
		{mod + "/module", []string{mod + "/server", mod + "/auth", mod + "/internal"}},
		{mod + "/internal/...", public},
		{mod + "/examples/hello", []string{"github.com/jackc/pgx", "modernc.org/sqlite", mod + "/auth"}},
		// An app that uses auth with SQLite only (it sets no
		// auth.Module.Postgres) links no PostgreSQL client.
		{mod + "/examples/jwtapi", []string{"github.com/jackc/pgx", mod + "/auth/postgres"}},
	} {
		t.Run(tt.pkg, func(t *testing.T) {
			// The deps of each package matched, apart from the package
			// itself: an internal package may sit under a refused prefix
			// (internal/…) and still import none of its siblings'.
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", tt.pkg).Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", tt.pkg, err)
			}
			self, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", tt.pkg).Output()
			if err != nil {
				t.Fatalf("go list %s: %v", tt.pkg, err)
			}
			own := map[string]bool{}
			for p := range strings.FieldsSeq(string(self)) {
				own[p] = true
			}
			for dep := range strings.FieldsSeq(string(out)) {
				for _, r := range tt.refuse {
					if !own[dep] && (dep == r || strings.HasPrefix(dep, r+"/")) {
						t.Errorf("%s links %s", tt.pkg, dep)
					}
				}
			}
		})
	}
}
