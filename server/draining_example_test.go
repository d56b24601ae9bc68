package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/remuda/remuda/server"
)

// A Server-Sent Events stream that ends with a last event when its
// process drains (a HUP's retirement, a TERM…): the browser's EventSource
// then reconnects, to a process that serves. Under net/http/httptest
// nothing drains (Draining is nil): here the stream ends when its client
// goes, as the canceled context says.
func ExampleDraining() {
	events := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: hello\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-server.Draining(r):
			fmt.Fprint(w, "event: bye\ndata: the server restarts\n\n")
		case <-r.Context().Done(): // the client went
		}
	}
	app := server.NewApp()
	app.HandleFunc("GET /events", events)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	app.Handler().ServeHTTP(w, httptest.NewRequestWithContext(ctx, "GET", "/events", nil))
	fmt.Printf("%q\n", w.Body.String())
	// Output: "data: hello\n\n"
}
