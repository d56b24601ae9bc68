package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/remuda/remuda/internal/proctest"
)

func TestMain(m *testing.M) {
	code := Run(m)
	if left := proctest.Leftovers(); len(left) > 0 {
		os.Stderr.WriteString("processes outlived the tests\n")
		code = 1
	}
	os.Exit(code)
}

// query runs SELECT 1 on a new connection to url.
func query(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var n int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&n)
}

func TestStopRestart(t *testing.T) {
	start := time.Now()
	c := Start(t)
	t.Logf("initdb and start: %v", time.Since(start))
	url := c.NewDatabase(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := query(ctx, url); err != nil {
		t.Fatalf("query %s: %v", url, err)
	}
	c.Stop(t)
	if err := query(ctx, url); err == nil {
		t.Fatal("query after Stop: got no error")
	}
	start = time.Now()
	c.Restart(t)
	t.Logf("restart: %v", time.Since(start))
	if err := query(ctx, url); err != nil {
		t.Fatalf("query after Restart: %v", err)
	}
}

func TestShared(t *testing.T) {
	c := Shared(t)
	if Shared(t) != c {
		t.Fatal("Shared returned another cluster")
	}
	a, b := c.NewDatabase(t), c.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase twice: got %s both times", a)
	}
	for _, url := range []string{a, b} {
		if err := query(t.Context(), url); err != nil {
			t.Errorf("query %s: %v", url, err)
		}
	}
}
