package serve

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/proxyproto"
)

// Proxies are the peers whose X-Forwarded-For, X-Forwarded-Proto and
// X-Request-ID headers are believed (Gunicorn's forwarded_allow_ips). A
// nil Proxies believes nobody. A peer on a unix socket has no address to
// list: as in Gunicorn, it is believed unless Proxies is empty, since the
// socket's file mode already decides who may connect (nginx on the same
// host, in the socket's group).
type Proxies []netip.Prefix

// ParseProxies parses a comma-separated list of addresses and CIDR
// prefixes ("127.0.0.1,::1,10.0.0.0/8"); "*" trusts every peer, for a
// server that only a proxy can reach.
func ParseProxies(list string) (Proxies, error) {
	var ps Proxies
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			continue
		case item == "*":
			ps = append(ps, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			a, aerr := netip.ParseAddr(item)
			if aerr != nil {
				return nil, fmt.Errorf("%q is neither an IP address nor a CIDR prefix", item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}

// lists reports whether the peer at a, an accepted connection's remote
// address, is in ps; a peer on a unix socket is, unless ps is empty.
func (ps Proxies) lists(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return ps.trusts(a.AddrPort().Addr())
	case *net.UnixAddr:
		return len(ps) > 0
	}
	return false
}

func (ps Proxies) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Forwarded headers: believed from a trusted proxy, removed otherwise so
// that no handler can be fooled by a client that sets them.
const (
	headerForwardedFor   = "X-Forwarded-For"
	headerForwardedProto = "X-Forwarded-Proto"
)

// forwarded applies a trusted proxy's headers to r: RemoteAddr becomes the
// client's address, the rightmost X-Forwarded-For entry that is not itself
// a trusted proxy (entries to its left could be forged by the client). It
// reports whether the peer is trusted; from an untrusted peer, the
// forwarded headers are removed.
func (ps Proxies) forwarded(r *http.Request) bool {
	trusted := false
	if peer, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		trusted = ps.trusts(peer.Addr())
	} else {
		trusted = len(ps) > 0 && onUnixSocket(r)
	}
	if !trusted {
		if r.Header[headerForwardedFor] != nil || r.Header[headerForwardedProto] != nil {
			r.Header.Del(headerForwardedFor)
			r.Header.Del(headerForwardedProto)
		}
		return false
	}
	hops := r.Header.Values(headerForwardedFor)
	for i := len(hops) - 1; i >= 0; i-- {
		entries := strings.Split(hops[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(entries[j]))
			if err != nil {
				return true // garbage: keep the proxy's own address
			}
			if !ps.trusts(a) || i == 0 && j == 0 {
				r.RemoteAddr = net.JoinHostPort(a.Unmap().String(), "0")
				return true
			}
		}
	}
	return true
}

// onUnixSocket reports whether r came in on a unix socket.
func onUnixSocket(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return ok && a.Network() == "unix"
}

// ProxyProtocol is how a Server takes the PROXY protocol (Gunicorn's
// proxy_protocol and proxy_allow_ips): a load balancer that relays TCP
// (HAProxy in mode tcp or with send-proxy, AWS NLB) puts a header with
// the client's address at the start of each connection. The zero value
// is off: connections are served as they come.
//
// When on, a connection from a peer in AllowFrom must start with a header
// of a version Mode allows, read within ReadHeaderTimeout; the client's
// address it carries is then the connection's, and so every request's
// RemoteAddr: the access log's remote_addr (address and port), the login
// throttle's address, server.ClientAddr, and the address whose
// X-Forwarded-For is believed or not (Proxies). A header that carries no
// client address (a LOCAL health check, UNKNOWN, a unix socket's) leaves
// the peer's. A listed peer's connection without a header, with a
// malformed one, or with none in time is closed without a response. A
// peer not in AllowFrom is served as it comes, as when the protocol is
// off, unless it starts with a header: it may not claim another's
// address, and is closed in the same way. Each refusal is logged, as
// "proxy protocol refused" with the peer's address and why.
type ProxyProtocol struct {
	// Mode is which header versions are taken; proxyproto.Off, the zero
	// value, takes none.
	Mode proxyproto.Mode
	// AllowFrom are the peers whose header is required and believed, as
	// in Proxies (a peer on a unix socket is listed unless AllowFrom is
	// empty). If empty, nobody's: every peer is served as it comes, and
	// refused if it sends a header.
	AllowFrom Proxies
}

// wrap wraps an accepted connection, logging its refusal on log.
func (pp ProxyProtocol) wrap(nc net.Conn, log *zap.Logger) net.Conn {
	peer := nc.RemoteAddr()
	return proxyproto.NewConn(nc, pp.Mode, pp.AllowFrom.lists(peer), ReadHeaderTimeout, func(err error) {
		log.Warn("proxy protocol refused", zap.Stringer("addr", peer), zap.Error(err))
	})
}
