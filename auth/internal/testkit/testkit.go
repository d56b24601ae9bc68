// Package testkit holds the helpers the tests of package auth and of its
// stores share that do not depend on auth (package auth's own tests cannot
// import a package that imports auth): goroutine races, JSON requests,
// child processes.
package testkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Race runs f(0) … f(n-1) in goroutines released at once, and returns
// their errors.
func Race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// Reply is a response with its body read.
type Reply struct {
	*http.Response
	Body string
}

// Post posts fields as a JSON object to u.
func Post(t *testing.T, u string, fields map[string]string) Reply {
	t.Helper()
	b, _ := json.Marshal(fields)
	resp, err := http.Post(u, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return Reply{resp, string(body)}
}

// Get gets u with the bearer token access, and returns the status and
// the body.
func Get(t *testing.T, u, access string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// RunChild returns unless the test binary runs as a child process of a
// multi-process test, which sets env: then it runs child with the
// variable's value, and exits 0, or 1 with child's error on stderr. Call
// it first in TestMain.
func RunChild(env string, child func(string) error) {
	v, ok := os.LookupEnv(env)
	if !ok {
		return
	}
	os.Unsetenv(env)
	if err := child(v); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Child is a copy of the test binary that races others on one database:
// it opens its store(s), prints "ready", waits for its stdin to close (the
// start signal), then does its part and prints what it got.
type Child struct {
	Cmd    *exec.Cmd
	Stdin  io.WriteCloser
	Stdout *bufio.Reader
	Stderr bytes.Buffer
}

// StartChildren starts n children with env (NAME=VALUE, which selects what
// the child does: see RunChild) and waits until each is ready; they are
// killed when the test ends.
func StartChildren(t *testing.T, ctx context.Context, n int, env string) []*Child {
	t.Helper()
	children := make([]*Child, n)
	for i := range children {
		c := &Child{Cmd: exec.CommandContext(ctx, os.Args[0], "-test.run=^$")}
		c.Cmd.Env = append(os.Environ(), env,
			"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
		c.Cmd.Stderr = &c.Stderr
		var err error
		if c.Stdin, err = c.Cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		stdout, err := c.Cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		c.Stdout = bufio.NewReader(stdout)
		if err := c.Cmd.Start(); err != nil {
			t.Fatalf("start child %d: %v", i, err)
		}
		t.Cleanup(func() {
			c.Stdin.Close()
			c.Cmd.Process.Kill()
			c.Cmd.Wait()
		})
		children[i] = c
	}
	for i, c := range children {
		if line, err := c.Stdout.ReadString('\n'); line != "ready\n" {
			t.Fatalf("child %d: got %q, %v; want ready (stderr: %s)", i, line, err, c.Stderr.String())
		}
	}
	return children
}
