package workers_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
	"github.com/remuda/remuda/internal/workers"
)

// TestSoloHandover serves a Worker with no master on a real socket, then
// hands it over: the request in flight is finished, Shutdown then Close
// run in that order, the listener is closed, and Run reports the handover.
func TestSoloHandover(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	entered, release := make(chan struct{}), make(chan struct{})
	var order []string
	w := &workers.Worker{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				close(entered)
				<-release
			}
			io.WriteString(w, "ok")
		}),
		Shutdown: func(context.Context) error { order = append(order, "shutdown"); return nil },
		Close:    func() error { order = append(order, "close"); return nil },
	}
	handover := make(chan struct{})
	serving := make(chan struct{})
	solo := &workers.Solo{
		Config:    workers.Config{GracefulTimeout: 10 * time.Second},
		Listeners: []net.Listener{ln},
		OnServing: func() { close(serving) },
		Handover:  handover,
	}
	type result struct {
		handedOver bool
		err        error
	}
	done := make(chan result, 1)
	go func() {
		h, err := solo.Run(func() (*workers.Worker, error) { return w, nil })
		done <- result{h, err}
	}()
	<-serving
	if code, body, err := proctest.Get(url+"/", 5*time.Second); code != 200 || body != "ok" {
		t.Fatalf("GET /: %d %q %v, want 200 ok", code, body, err)
	}
	slow := make(chan string, 1)
	go func() {
		_, body, err := proctest.Get(url+"/slow", 10*time.Second)
		if err != nil {
			body = err.Error()
		}
		slow <- body
	}()
	<-entered
	close(handover)
	select {
	case r := <-done:
		t.Fatalf("Run returned %+v with a request in flight, want a drain", r)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if body := <-slow; body != "ok" {
		t.Errorf("the request in flight at the handover got %q, want ok", body)
	}
	r := <-done
	if !r.handedOver || r.err != nil {
		t.Errorf("Run: %v, %v; want true, nil", r.handedOver, r.err)
	}
	if len(order) != 2 || order[0] != "shutdown" || order[1] != "close" {
		t.Errorf("hooks ran %q, want shutdown then close", order)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("the listener still accepts after the handover")
	}
}

// TestSoloBootFailed: a failed boot is ErrBootFailed, and the listeners are
// the caller's.
func TestSoloBootFailed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	solo := &workers.Solo{Listeners: []net.Listener{ln}}
	boom := errors.New("connect to database: connection refused")
	handedOver, err := solo.Run(func() (*workers.Worker, error) { return nil, boom })
	if handedOver || !errors.Is(err, workers.ErrBootFailed) || !errors.Is(err, boom) {
		t.Errorf("Run: %v, %v; want false and ErrBootFailed wrapping %v", handedOver, err, boom)
	}
}
