package server

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// devHooksSource is an app whose every hook appends "<version> <pid>
// <hook>" to the file $HOOKS_FILE names.
func devHooksSource(version string) string {
	return fmt.Sprintf(`package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/remuda/remuda/server"
)

func note(hook string) {
	f, err := os.OpenFile(os.Getenv("HOOKS_FILE"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(f, "%%s %%d %%s\n", %q, os.Getpid(), hook)
	f.Close()
}

func main() {
	app := server.NewApp()
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, %q) })
	app.OnBoot = func(server.Config) error { note("boot"); return nil }
	app.OnReady = func(server.Config) error { note("ready"); return nil }
	app.OnReload = func(server.Config) error { note("reload"); return nil }
	app.OnShutdown = func(context.Context, server.Config) error { note("shutdown"); return nil }
	app.OnExit = func(server.Config) error { note("exit"); return nil }
	server.Main(app)
}
`, version, version)
}

// TestDevReloadHooks builds an app that registers every hook, runs it in
// dev, edits it once (a code reload) and stops it: one process runs v1's
// boot, ready and shutdown, then v2's boot, reload, shutdown and exit.
func TestDevReloadHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go code")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	mod, bin := buildDevApp(t, goCmd, "devhooks", devHooksSource("v1"))

	t.Chdir(mod)
	hooks := filepath.Join(t.TempDir(), "hooks")
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, bin, []string{"TMPDIR=" + t.TempDir(), "HOOKS_FILE=" + hooks}, "run", "--bind", addr, "--access-log", "")
	p.WaitFor(t, 10*time.Second, 1, "listening", func(l proctest.Line) bool { return strings.Contains(l.Raw, "listening") })
	writeDevApp(t, mod, devHooksSource("v2"))
	if !proctest.WaitUntil(60*time.Second, func() bool {
		_, body, _ := proctest.Get("http://"+addr+"/", time.Second)
		return body == "v2"
	}) {
		t.Fatal("v2 not served within 60s of the edit")
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("dev server exit code %d, want 0", code)
	}
	b, err := os.ReadFile(hooks)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(string(b)), "\n")
	var want []string
	for _, h := range []string{"v1 boot", "v1 ready", "v1 shutdown", "v2 boot", "v2 reload", "v2 shutdown", "v2 exit"} {
		version, hook, _ := strings.Cut(h, " ")
		want = append(want, fmt.Sprintf("%s %d %s", version, p.Pid(), hook))
	}
	if !slices.Equal(got, want) {
		t.Errorf("hooks through a code reload:\n got %q\nwant %q", got, want)
	}
}
