package postgres

import (
	"context"
	"fmt"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/module"
)

// Driver is PostgreSQL for auth.Module: a binary that may serve from
// PostgreSQL sets it, as the server command does,
//
//	users := &auth.Module{Postgres: postgres.Driver{}}
//
// and links pgx; one that leaves auth.Module.Postgres nil does not. Its
// zero value is the driver.
type Driver struct{}

var _ auth.Driver = Driver{}

// Open opens the Store at url (see Open).
func (Driver) Open(ctx context.Context, url string) (auth.Store, error) {
	return Open(ctx, url)
}

// Check connects to the database at url once and weighs this host's pools
// against what it allows: each of the workers processes keeps a pool of
// its own, so this host will open up to workers × pool connections on top
// of those other hosts hold. A host that is already running counts among
// the others; during a reload (HUP, USR2) two generations hold pools at
// once. It finds W016 when they do not fit, W017 when the database cannot
// be reached.
func (Driver) Check(ctx context.Context, url string, workers int) []module.Finding {
	capacity, err := Check(ctx, url)
	if err != nil {
		return []module.Finding{{ID: "W017", Msg: fmt.Sprintf("database cannot be checked: %v; workers fail to boot until it can be reached.", err)}}
	}
	need := workers * capacity.Pool
	if need+capacity.InUse <= capacity.Limit {
		return nil
	}
	return []module.Finding{{ID: "W016", Msg: fmt.Sprintf("database allows %d connections and Remuda processes hold %d; workers = %d with pool_max_conns = %d adds up to %d more: lower pool_max_conns in the database URL or the workers, or raise PostgreSQL's max_connections (or put PgBouncer in front).",
		capacity.Limit, capacity.InUse, workers, capacity.Pool, need)}}
}
