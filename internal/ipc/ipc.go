package ipc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/remuda/remuda/internal/metrics"
)

const (
	// Version is the control-protocol version this build speaks.
	Version = "2"
	// EnvVersion names the environment variable that makes a process a
	// worker; its value is the master's protocol version.
	EnvVersion = "REMUDA_WORKER_PROTOCOL"
	// MaxFrameSize caps one frame, newline included.
	MaxFrameSize = 1 << 20
	// ExitProtocol is a worker's exit code when its protocol version
	// differs from its master's.
	ExitProtocol = 4
	// ControlFD is the worker's end of the control channel; listeners
	// follow it from ListenFD on, then the log file (see Frame.Log).
	ControlFD = 3
	ListenFD  = 4
	// MaxListeners caps the listeners a config frame may announce.
	MaxListeners = 64
)

// Frame types.
const (
	TypeConfig    = "config"
	TypeReady     = "ready"
	TypeHeartbeat = "heartbeat"
	TypeRecycle   = "recycle"
	TypeFailed    = "failed"
	TypeDrain     = "drain"
)

// Frame is one control message. Which members are set depends on Type.
type Frame struct {
	Type string `json:"type"`

	// config
	Worker     int             `json:"worker,omitempty"`
	Generation int             `json:"generation,omitempty"`
	Listeners  int             `json:"listeners,omitempty"` // at fds ListenFD…
	Log        bool            `json:"log,omitempty"`       // the master's log file, at fd LogFD(Listeners)
	Config     json.RawMessage `json:"config,omitempty"`

	// heartbeat
	Requests uint64           `json:"requests,omitempty"`
	Active   int64            `json:"active,omitempty"`
	Metrics  *metrics.Delta   `json:"metrics,omitempty"` // counted since the previous heartbeat
	Runtime  *metrics.Runtime `json:"runtime,omitempty"` // the worker's Go runtime, now

	// ready: the frame types this worker accepts from its master after
	// config (TypeDrain)
	Accepts []string `json:"accepts,omitempty"`

	// recycle
	Reason string `json:"reason,omitempty"`
	// failed
	Error string `json:"error,omitempty"`
}

// LogFD is the fd of the log file a config frame with Log announces: the
// one after the last listener.
func LogFD(listeners int) int { return ListenFD + listeners }

var (
	// ErrFrameTooLarge is returned for a line longer than MaxFrameSize.
	ErrFrameTooLarge = errors.New("ipc: frame too large")
)

// Decode parses one frame (without its newline) and checks that its type
// is known and its members fit that type.
func Decode(line []byte) (Frame, error) {
	if len(line) >= MaxFrameSize {
		return Frame{}, ErrFrameTooLarge
	}
	var f Frame
	if err := json.Unmarshal(line, &f); err != nil {
		return Frame{}, fmt.Errorf("ipc: decode frame: %w", err)
	}
	switch f.Type {
	case TypeConfig:
		if f.Worker <= 0 || f.Generation <= 0 || f.Listeners < 0 || f.Listeners > MaxListeners || len(f.Config) == 0 {
			return Frame{}, fmt.Errorf("ipc: config frame with worker %d, generation %d, listeners %d: want worker and generation > 0, listeners 0 to %d, and a config",
				f.Worker, f.Generation, f.Listeners, MaxListeners)
		}
	case TypeReady, TypeHeartbeat:
		if f.Active < 0 {
			return Frame{}, fmt.Errorf("ipc: heartbeat with active %d: want ≥ 0", f.Active)
		}
		if m := f.Metrics; m != nil {
			if err := m.Validate(); err != nil {
				return Frame{}, fmt.Errorf("ipc: %s frame: %w", f.Type, err)
			}
			// An empty map means none, as Send writes it.
			if len(m.Requests) == 0 {
				m.Requests = nil
			}
			if len(m.Logins) == 0 {
				m.Logins = nil
			}
		}
	case TypeRecycle, TypeFailed, TypeDrain:
	default:
		return Frame{}, fmt.Errorf("ipc: unknown frame type %q", f.Type)
	}
	return f, nil
}

// Conn is one end of a control channel. Send may be called from several
// goroutines; Recv from one at a time.
type Conn struct {
	rwc  io.ReadWriteCloser
	r    *bufio.Reader
	rerr error      // the first Recv error, returned from then on
	mu   sync.Mutex // serializes Send
}

// NewConn wraps one end of a control channel.
func NewConn(rwc io.ReadWriteCloser) *Conn {
	return &Conn{rwc: rwc, r: bufio.NewReader(rwc)}
}

// Send writes f as one frame.
func (c *Conn) Send(f Frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("ipc: encode %s frame: %w", f.Type, err)
	}
	if len(b) >= MaxFrameSize {
		return ErrFrameTooLarge
	}
	b = append(b, '\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err = c.rwc.Write(b)
	return err
}

// Recv reads the next frame. It returns io.EOF when the peer has closed
// the channel between frames, and io.ErrUnexpectedEOF inside one. An error
// is final: the stream can no longer be trusted to be at a frame boundary
// (the rest of an oversized line must not pass for a frame), so every later
// Recv returns it again, and the caller should close the channel.
func (c *Conn) Recv() (Frame, error) {
	if c.rerr != nil {
		return Frame{}, c.rerr
	}
	f, err := c.recv()
	if err != nil {
		c.rerr = err
	}
	return f, err
}

func (c *Conn) recv() (Frame, error) {
	var line []byte
	for {
		chunk, err := c.r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxFrameSize {
			return Frame{}, ErrFrameTooLarge
		}
		switch {
		case err == nil:
			return Decode(bytes.TrimSuffix(line, []byte{'\n'}))
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return Frame{}, io.ErrUnexpectedEOF
		default:
			return Frame{}, err
		}
	}
}

// Close closes the channel.
func (c *Conn) Close() error { return c.rwc.Close() }
