package serve

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestRequestFrom checks that a handler finds its request's id and the
// server's logger in its context, and in a context derived from it, with
// and without a timeout and a body, and that a keep-alive connection's
// next request has an id of its own.
func TestRequestFrom(t *testing.T) {
	log := zap.NewExample()
	type seen struct{ id, derived string }
	got := make(chan seen, 1)
	for _, opts := range []Options{{Logger: log}, {Logger: log, Timeout: 10 * time.Second}} {
		_, url := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			id, l := RequestFrom(r.Context())
			if l != log {
				t.Errorf("logger %p, want the server's %p", l, log)
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Second)
			defer cancel()
			derived, _ := RequestFrom(ctx)
			got <- seen{id, derived}
		}), opts)
		c := &http.Client{}
		prev := ""
		for i, body := range []io.Reader{nil, strings.NewReader("a body")} {
			req, _ := http.NewRequest("POST", url, body)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			s := <-got
			want := resp.Header.Get(RequestIDHeader)
			if s.id != want || s.derived != want || want == "" {
				t.Errorf("timeout %v, request %d: got id %q, derived %q, want the X-Request-ID %q", opts.Timeout, i, s.id, s.derived, want)
			}
			if s.id == prev {
				t.Errorf("timeout %v, request %d: got the id %q of the request before", opts.Timeout, i, s.id)
			}
			prev = s.id
		}
	}
	if id, l := RequestFrom(context.Background()); id != "" || l != nil {
		t.Errorf("RequestFrom(Background) = %q, %v; want \"\", nil", id, l)
	}
}
