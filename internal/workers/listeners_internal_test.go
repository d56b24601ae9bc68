package workers

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/remuda/remuda/internal/serve"
)

// TestCheckBacklogWarnsAboveSomaxconn checks that a backlog the kernel
// would cap is logged with both values, and one within it is not.
func TestCheckBacklogWarnsAboveSomaxconn(t *testing.T) {
	max, err := serve.Somaxconn()
	if err != nil {
		t.Skipf("cannot read net.core.somaxconn: %v", err)
	}
	for _, tc := range []struct {
		backlog int
		warns   bool
	}{{max + 1, true}, {max, false}, {0, false}} {
		core, logs := observer.New(zapcore.DebugLevel)
		checkBacklog(zap.New(core), tc.backlog)
		got := logs.FilterMessageSnippet("somaxconn").All()
		if (len(got) == 1) != tc.warns || len(got) > 1 {
			t.Errorf("backlog %d (somaxconn %d): got %d warnings, want warning %v", tc.backlog, max, len(got), tc.warns)
			continue
		}
		if tc.warns {
			f := got[0].ContextMap()
			if f["backlog"] != int64(tc.backlog) || f["somaxconn"] != int64(max) {
				t.Errorf("backlog %d: got fields %v, want backlog %d and somaxconn %d", tc.backlog, f, tc.backlog, max)
			}
		}
	}
}
