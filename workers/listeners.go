package workers

import (
	"fmt"
	"net"
	"os"

	"github.com/remuda/remuda/internal/serve"
)

// listener is one bound address and the file a worker inherits it as.
type listener struct {
	addr string
	ln   net.Listener // kept open: closing a unix listener removes its socket file
	file *os.File     // a duplicate of ln's socket, passed to every worker
}

// bind listens on every address, in order. On error it closes what it had
// bound and names the address.
func bind(addrs []string) ([]listener, error) {
	var ls []listener
	for _, addr := range addrs {
		ln, err := serve.Listen(addr)
		if err == nil {
			var f *os.File
			f, err = ln.(interface{ File() (*os.File, error) }).File()
			if err != nil {
				ln.Close()
				err = fmt.Errorf("listen on %s: %w", addr, err)
			} else {
				ls = append(ls, listener{addr: addr, ln: ln, file: f})
				continue
			}
		}
		closeListeners(ls)
		return nil, err
	}
	return ls, nil
}

// closeListeners closes the master's copies. Workers keep serving on theirs
// until they drain; the socket closes with the last copy.
func closeListeners(ls []listener) {
	for _, l := range ls {
		l.file.Close()
		l.ln.Close()
	}
}
