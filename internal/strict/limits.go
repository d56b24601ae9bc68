package strict

// Limits bound the request head as Gunicorn's limit_request_line,
// limit_request_fields and limit_request_field_size settings do, with
// Gunicorn's ranges and meanings of 0. The zero value is Gunicorn's 0 in
// every field (not its defaults: those are DefaultLimits). Whatever the
// limits, a head as a whole is capped at DefaultMaxHeadBytes (431).
type Limits struct {
	// RequestLine caps the request line in bytes, its CRLF excluded
	// (Gunicorn's limit_request_line). A longer one gets 414. Zero means no
	// cap of its own (the head's DefaultMaxHeadBytes still holds); a value
	// above MaxRequestLine is MaxRequestLine.
	RequestLine int
	// Fields caps how many header fields a request head, or a trailer
	// section, holds (limit_request_fields). More get 431. Zero, or a value
	// above MaxFields, means MaxFields.
	Fields int
	// FieldSize caps one field line in bytes, its CRLF included
	// (limit_request_field_size). A longer one gets 431. Zero means
	// DefaultFieldSize: Gunicorn's documentation calls 0 unlimited, but its
	// parser, and its own test of 0, use 8190.
	FieldSize int
}

// Gunicorn's defaults and hard limits.
const (
	DefaultRequestLine = 4094
	MaxRequestLine     = 8190
	DefaultFields      = 100
	MaxFields          = 32768
	DefaultFieldSize   = 8190
)

// DefaultLimits are Gunicorn's defaults.
var DefaultLimits = Limits{RequestLine: DefaultRequestLine, Fields: DefaultFields, FieldSize: DefaultFieldSize}

// requestLine is the longest request line accepted, CRLF excluded.
func (l Limits) requestLine() int {
	switch {
	case l.RequestLine <= 0:
		return DefaultMaxHeadBytes
	case l.RequestLine > MaxRequestLine:
		return MaxRequestLine
	}
	return l.RequestLine
}

// fields is the most field lines accepted in a head or trailer section.
func (l Limits) fields() int {
	if l.Fields <= 0 || l.Fields > MaxFields {
		return MaxFields
	}
	return l.Fields
}

// fieldSize is the longest field line accepted, CRLF included.
func (l Limits) fieldSize() int {
	if l.FieldSize <= 0 {
		return DefaultFieldSize
	}
	return l.FieldSize
}
