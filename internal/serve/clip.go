package serve

import (
	"unicode/utf8"

	"go.uber.org/zap"
)

// MaxLogValue caps, in bytes, each string a client chose that goes into a
// log line: a path, a method, a user agent, a username. A line is for
// finding a request, not for keeping what it sent; uncapped, one request
// could add kilobytes to the log (a 64 KiB User-Agent, an 8 KiB path), and
// a line longer than 4 KiB written to a pipe can interleave with another
// process's.
const MaxLogValue = 512

// Clipped is zap.String with value cut to MaxLogValue bytes, at a character
// boundary, and "…" appended when it was cut.
func Clipped(key, value string) zap.Field {
	if len(value) <= MaxLogValue {
		return zap.String(key, value)
	}
	cut := MaxLogValue
	for cut > 0 && !utf8.RuneStart(value[cut]) {
		cut--
	}
	return zap.String(key, value[:cut]+"…")
}
