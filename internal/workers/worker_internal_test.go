package workers

import "testing"

// TestIdleMemory checks when an idle worker returns its free heap: once
// per idle spell, a heartbeat after its last request, never while a
// request runs.
func TestIdleMemory(t *testing.T) {
	frees := 0
	m := idleMemory{free: func() { frees++ }}
	for i, tt := range []struct {
		requests  uint64
		active    int64
		wantFrees int
	}{
		{0, 0, 1},  // idle from the start: once
		{0, 0, 1},  // still idle: not again
		{10, 0, 1}, // served since: busy
		{10, 1, 1}, // a request running: busy
		{10, 0, 2}, // a quiet beat: free
		{10, 0, 2}, // and not again
		{11, 0, 2}, // busy again
		{11, 0, 3}, // quiet again: free
	} {
		m.tick(tt.requests, tt.active)
		if frees != tt.wantFrees {
			t.Fatalf("tick %d (requests %d, active %d): %d frees, want %d", i, tt.requests, tt.active, frees, tt.wantFrees)
		}
	}
}
