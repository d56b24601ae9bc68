package strict

import (
	"net/http"
	"strings"
)

// CheckFields applies to the header of a request that did not arrive as
// HTTP/1 text — an HTTP/2 request, whose fields were decoded from frames —
// the rules of this package that still mean something there: lim's count
// and size of fields (431), and no singleton field twice, Content-Length
// and Host included, nor X-Forwarded scheme fields that disagree (400).
// HTTP/2's framing makes the rest moot: no request line, no chunked
// encoding, no line folding. It returns the refusal's status and its
// one-line reason, or 0 and "" for a request that passes.
func CheckFields(h http.Header, lim Limits) (status int, reason string) {
	n := 0
	var secure, insecure bool
	for name, values := range h {
		n += len(values)
		for _, v := range values {
			// As an HTTP/1 field line: name, ": ", value, CRLF.
			if len(name)+len(v)+4 > lim.fieldSize() {
				return errFieldTooLarge.status, errFieldTooLarge.reason
			}
		}
		lower := strings.ToLower(name)
		i := singleton([]byte(lower))
		if len(values) > 1 && (i >= 0 || lower == "content-length" || lower == "host") {
			return http.StatusBadRequest, "duplicate " + name
		}
		if i >= 0 && singletons[i].secureIf != "" {
			if strings.EqualFold(values[0], singletons[i].secureIf) {
				secure = true
			} else {
				insecure = true
			}
		}
	}
	if n > lim.fields() {
		return errTooManyFields.status, errTooManyFields.reason
	}
	if secure && insecure {
		return http.StatusBadRequest, "conflicting X-Forwarded scheme fields"
	}
	return 0, ""
}
