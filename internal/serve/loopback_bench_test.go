package serve

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkLoopback is a whole request as a client sees it: a keep-alive
// GET over loopback to a prod-configured Server, with the client's cost
// included. Against BenchmarkServeHTTP it shows what share of a request
// the server's own work is.
func BenchmarkLoopback(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	proxies, _ := ParseProxies("127.0.0.1,::1")
	s := New(ok, Options{Timeout: 30 * time.Second, Proxies: proxies, Hardened: true})
	ln, err := Listen("127.0.0.1:0", 0)
	if err != nil {
		b.Fatal(err)
	}
	s.Serve([]net.Listener{ln})
	defer s.Close()
	url := "http://" + ln.Addr().String() + "/healthz"
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
