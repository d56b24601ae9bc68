package serve

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
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
