package workers

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// What a worker writes to its stdout and stderr, other than its own log
// lines, is the app's: a handler's fmt.Println, a logger the app made
// itself (slog.New(slog.NewTextHandler(os.Stderr, nil)), log.New), a
// library's chatter, and the Go runtime's panic and stack dumps. The
// master reads both streams (Master.relay) and logs each line as one JSON
// line of its own, keeping what the line says of itself:
//
//   - A slog line, text (time=… level=INFO msg=… k=v) or JSON
//     ({"time":…,"level":"INFO","msg":…}), keeps its level (custom levels
//     fall in the band they are written from: INFO+2 is info, DEBUG-4
//     debug), its message, its time and its source (as "caller"); its
//     other attributes go under "attrs", so that none replaces a key of
//     ours. A request_id attribute that looks like one of ours (1–64
//     characters of [A-Za-z0-9._-]) becomes the line's request_id. Text
//     values stay strings (the format does not say whether 42 was a
//     number), JSON values keep their JSON type.
//   - A line of Go's log package with its default flags (2009/11/10
//     23:00:00 message; microseconds and file:line are understood too) is
//     info, as log.Printf is once slog's default is routed (log has no
//     levels); the rest of the line is the message. A message that begins
//     with a level in capitals (INFO, WARN+2: slog's default handler
//     writes so, for code that logs before server.Main) has that level.
//   - Any other line is "worker output", with the line as "output": info
//     on stdout, warn on stderr (stderr is where programs say what went
//     wrong, but a library's chatter there should not page anyone). Once
//     the Go runtime starts dying on stderr (a line beginning "panic: ",
//     "fatal error: ", "SIGABRT: abort" or another signal name), every
//     later plain line of that stream is error: the dump that follows, to
//     the process's end.
//
// Every such line is named "app" (the "logger" key) and carries the
// worker's number, pid (worker_pid; "pid" is the master's) and
// generation, and the stream it came from ("stream": stdout or stderr). A
// JSON line with the worker's own pid is the worker's own logger writing
// to stderr (before it had its log file, or under an older master): it
// passes as it is.

// Formats of an output line.
const (
	formatPlain    = ""
	formatSlogText = "slog_text"
	formatSlogJSON = "slog_json"
	formatLog      = "log"
)

// plainMessage is the message of a line that is not a log line.
const plainMessage = "worker output"

// outputLine is one line of a worker's output, as parseOutput read it.
type outputLine struct {
	format    string
	level     zapcore.Level
	time      time.Time // the line's own; zero if it had none
	msg       string    // the app's message; plainMessage for a plain line
	output    string    // a plain line: the line
	leveled   bool      // the line said its level
	caller    zapcore.EntryCaller
	requestID string
	attrs     []zap.Field // the app's other attributes, typed, in order
	pid       int64       // a JSON line's "pid", if an integer; else 0
}

// parseOutput reads one line (without its newline) of a worker's output;
// def is the level of a plain line. It never fails: what it cannot read
// as a log line is a plain line.
func parseOutput(line []byte, def zapcore.Level) outputLine {
	var l outputLine
	ok := false
	switch {
	case len(line) > 0 && line[0] == '{':
		l, ok = parseSlogJSON(line)
	case bytes.HasPrefix(line, []byte("time=")) || bytes.HasPrefix(line, []byte("level=")):
		l, ok = parseSlogText(line)
	case len(line) > 0 && line[0] >= '0' && line[0] <= '9':
		l, ok = parseStdLog(line)
	}
	if !ok {
		return outputLine{format: formatPlain, level: def, msg: plainMessage, output: string(line)}
	}
	if !l.leveled {
		l.level = def
	}
	return l
}

// appLevel reads a level name as slog writes it (DEBUG, INFO, WARN, ERROR,
// with an offset: INFO+2), in any case, and the names other loggers use
// (warning, trace, fatal, panic, dpanic, critical); zap's levels above
// error become error.
func appLevel(s string) (zapcore.Level, bool) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err == nil {
		switch {
		case l < slog.LevelInfo:
			return zapcore.DebugLevel, true
		case l < slog.LevelWarn:
			return zapcore.InfoLevel, true
		case l < slog.LevelError:
			return zapcore.WarnLevel, true
		}
		return zapcore.ErrorLevel, true
	}
	switch strings.ToLower(s) {
	case "trace":
		return zapcore.DebugLevel, true
	case "warning":
		return zapcore.WarnLevel, true
	case "fatal", "panic", "dpanic", "critical", "crit", "alert", "emerg", "emergency":
		return zapcore.ErrorLevel, true
	}
	return 0, false
}

// requestIDOK reports whether id has the form of the request ids the
// server hands out and accepts from proxies.
func requestIDOK(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// fileLine reads "path/file.go:12" as a caller.
func fileLine(s string) (zapcore.EntryCaller, bool) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return zapcore.EntryCaller{}, false
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil || n < 0 {
		return zapcore.EntryCaller{}, false
	}
	return zapcore.EntryCaller{Defined: true, File: s[:i], Line: n}, true
}

// parseSlogJSON reads a JSON object with a string "msg": slog's
// JSONHandler, or another JSON logger's line.
func parseSlogJSON(line []byte) (outputLine, bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return outputLine{}, false
	}
	l := outputLine{format: formatSlogJSON}
	var msg *string
	seen := make(map[string]bool)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return outputLine{}, false
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return outputLine{}, false
		}
		var s string
		isString := raw[0] == '"' && json.Unmarshal(raw, &s) == nil
		// The first msg, level, time, request_id and source that read
		// as such are the line's; the rest are attributes.
		switch {
		case key == "msg" && isString && msg == nil:
			msg = &s
			continue
		case key == "level" && isString && !l.leveled:
			if lv, ok := appLevel(s); ok {
				l.level, l.leveled = lv, true
				continue
			}
		case key == "time" && isString && l.time.IsZero():
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				l.time = t
				continue
			}
		case key == "request_id" && isString && l.requestID == "" && requestIDOK(s):
			l.requestID = s
			continue
		case key == "source" && raw[0] == '{' && !l.caller.Defined:
			var src struct {
				Function string `json:"function"`
				File     string `json:"file"`
				Line     int    `json:"line"`
			}
			if json.Unmarshal(raw, &src) == nil && src.File != "" {
				l.caller = zapcore.EntryCaller{Defined: true, File: src.File, Line: src.Line, Function: src.Function}
				continue
			}
		case key == "pid" && !seen[key]:
			if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
				l.pid = n
			}
		}
		if seen[key] {
			continue // the first of a repeated attribute counts
		}
		seen[key] = true
		if isString {
			l.attrs = append(l.attrs, zap.String(key, s))
		} else {
			l.attrs = append(l.attrs, zap.Reflect(key, raw))
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return outputLine{}, false
	}
	if dec.More() {
		return outputLine{}, false // more after the object
	}
	if msg == nil {
		return outputLine{}, false
	}
	l.msg = *msg
	return l, true
}

// parseSlogText reads a line of slog's TextHandler: key=value pairs
// separated by spaces, values (and keys) Go-quoted when they need it, with
// a level and a msg.
func parseSlogText(line []byte) (outputLine, bool) {
	l := outputLine{format: formatSlogText}
	s := string(line)
	var haveLevel, haveMsg bool
	seen := make(map[string]bool)
	for len(s) > 0 {
		key, rest, ok := textToken(s, true)
		if !ok || len(rest) == 0 || rest[0] != '=' {
			return outputLine{}, false
		}
		value, rest, ok := textToken(rest[1:], false)
		if !ok {
			return outputLine{}, false
		}
		if len(rest) > 0 {
			if rest[0] != ' ' {
				return outputLine{}, false
			}
			rest = rest[1:]
		}
		s = rest
		// The first level, msg, time, source and request_id that read as
		// such are the line's; the rest are attributes.
		switch {
		case key == "level" && !haveLevel:
			lv, ok := appLevel(value)
			if !ok {
				return outputLine{}, false
			}
			l.level, l.leveled, haveLevel = lv, true, true
			continue
		case key == "msg" && !haveMsg:
			l.msg, haveMsg = value, true
			continue
		case key == "time" && l.time.IsZero():
			if t, err := time.Parse(time.RFC3339Nano, value); err == nil {
				l.time = t
				continue
			}
		case key == "source" && !l.caller.Defined:
			if c, ok := fileLine(value); ok {
				l.caller = c
				continue
			}
		case key == "request_id" && l.requestID == "":
			if requestIDOK(value) {
				l.requestID = value
				continue
			}
		}
		if seen[key] {
			continue // the first of a repeated attribute counts
		}
		seen[key] = true
		l.attrs = append(l.attrs, zap.String(key, value))
	}
	return l, haveLevel && haveMsg
}

// textToken reads a key (up to '=') or a value (up to ' ') of slog's text
// format at the start of s, unquoting it if it is quoted, and returns the
// rest of s.
func textToken(s string, key bool) (tok, rest string, ok bool) {
	if len(s) > 0 && s[0] == '"' {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", "", false
		}
		tok, err = strconv.Unquote(q)
		return tok, s[len(q):], err == nil
	}
	end := ' '
	if key {
		end = '='
	}
	i := strings.IndexRune(s, end)
	if i < 0 {
		i = len(s)
	}
	tok, rest = s[:i], s[i:]
	if key && (tok == "" || strings.ContainsAny(tok, " \"")) {
		return "", "", false
	}
	if !key && strings.ContainsRune(tok, '"') {
		return "", "", false // slog would have quoted it
	}
	return tok, rest, true
}

// parseStdLog reads a line of Go's log package with its date and time
// (2009/11/10 23:00:00, or 23:00:00.123456), and a file:line if it has
// one, in the local time zone, as the package writes by default.
func parseStdLog(line []byte) (outputLine, bool) {
	const layout = "2006/01/02 15:04:05"
	s := string(line)
	if len(s) < len(layout) {
		return outputLine{}, false
	}
	n := len(layout)
	if len(s) > n && s[n] == '.' {
		n += 7 // .000000: log.Lmicroseconds
		if len(s) < n {
			return outputLine{}, false
		}
	}
	// Parsing takes the fraction after the seconds too.
	t, err := time.ParseInLocation(layout, s[:n], time.Local)
	if err != nil || len(s) > n && s[n] != ' ' {
		return outputLine{}, false
	}
	l := outputLine{format: formatLog, level: zapcore.InfoLevel, leveled: true, time: t}
	msg := strings.TrimPrefix(s[n:], " ")
	// log.Lshortfile or Llongfile: "file.go:12: message".
	if i := strings.Index(msg, ": "); i > 0 && !strings.ContainsRune(msg[:i], ' ') {
		if c, ok := fileLine(msg[:i]); ok && strings.HasSuffix(c.File, ".go") {
			l.caller, msg = c, msg[i+2:]
		}
	}
	// slog's default handler, before slog.SetDefault (code that logs
	// before server.Main): "INFO message k=v", the level upper-case.
	if i := strings.IndexByte(msg, ' '); i > 0 && msg[:i] == strings.ToUpper(msg[:i]) {
		var lv slog.Level
		if lv.UnmarshalText([]byte(msg[:i])) == nil {
			l.level, _ = appLevel(msg[:i])
			msg = msg[i+1:]
		}
	}
	l.msg = msg
	return l, true
}

// crashStart reports whether a line of stderr begins the Go runtime's
// output as the process dies: an unrecovered panic, a fatal error, or a
// signal's dump (SIGABRT: abort, SIGSEGV: segmentation violation).
func crashStart(line []byte) bool {
	for _, p := range []string{"panic: ", "fatal error: ", "fatal: ", "unexpected fault address "} {
		if bytes.HasPrefix(line, []byte(p)) {
			return true
		}
	}
	if !bytes.HasPrefix(line, []byte("SIG")) {
		return false
	}
	i := bytes.IndexByte(line, ':')
	if i <= len("SIG") {
		return false
	}
	for _, c := range line[len("SIG"):i] {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
