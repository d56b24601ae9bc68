package metrics_test

import (
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/metrics"
)

func TestDelta(t *testing.T) {
	var s metrics.Set
	if d := s.Delta(); d != nil {
		t.Fatalf("Delta of a new Set: got %+v, want nil", d)
	}
	s.Record("GET", 200, 3*time.Millisecond)
	s.Record("GET", 200, 20*time.Millisecond)
	s.Record("BREW", 418, time.Second)
	s.Record("POST", 99, 11*time.Second)
	s.Record("PUT", 600, 0)
	s.Login("success")
	s.Login("invalid")
	s.Login("invalid")
	s.Login("surprise")
	got := s.Delta()
	want := &metrics.Delta{
		Requests:    map[string]uint64{"GET 200": 2, "other 418": 1, "POST other": 1, "PUT other": 1},
		Duration:    []uint64{2, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1},
		DurationSum: (3*time.Millisecond + 20*time.Millisecond + time.Second + 11*time.Second).Seconds(),
		Logins:      map[string]uint64{"success": 1, "invalid": 2, "other": 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Delta:\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate of a Set's own delta: %v", err)
	}
	if d := s.Delta(); d != nil {
		t.Errorf("second Delta with nothing new: got %+v, want nil", d)
	}
	s.Record("HEAD", 404, time.Millisecond)
	if d := s.Delta(); !reflect.DeepEqual(d.Requests, map[string]uint64{"HEAD 404": 1}) || d.Logins != nil {
		t.Errorf("third Delta: got %+v, want only HEAD 404: 1", d)
	}
}

// TestDeltaUnderConcurrentRecords checks that deltas taken while requests
// are recorded add up to every request, none lost or counted twice.
func TestDeltaUnderConcurrentRecords(t *testing.T) {
	const goroutines, each = 8, 5000
	var s metrics.Set
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for i := range each {
				s.Record("GET", 200+i%3, time.Duration(i)*time.Microsecond)
			}
		})
	}
	var requests, buckets uint64
	add := func(d *metrics.Delta) {
		if d == nil {
			return
		}
		for _, n := range d.Requests {
			requests += n
		}
		for _, n := range d.Duration {
			buckets += n
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		default:
			add(s.Delta())
		}
	}
	add(s.Delta())
	if requests != goroutines*each || buckets != goroutines*each {
		t.Errorf("deltas add up to %d requests and %d in buckets, want %d", requests, buckets, goroutines*each)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		ok   bool
	}{
		{"empty", `{}`, true},
		{"all", `{"requests":{"GET 200":1,"other other":2},"duration":[1,0,0,0,0,0,0,0,0,0,0,0],"duration_sum":0.5,"logins":{"throttled":1}}`, true},
		{"lowercase method", `{"requests":{"get 200":1}}`, false},
		{"unknown method", `{"requests":{"BREW 200":1}}`, false},
		{"no code", `{"requests":{"GET":1}}`, false},
		{"code too small", `{"requests":{"GET 99":1}}`, false},
		{"code too large", `{"requests":{"GET 600":1}}`, false},
		{"code with a zero", `{"requests":{"GET 0200":1}}`, false},
		{"few buckets", `{"duration":[1,2]}`, false},
		{"negative sum", `{"duration_sum":-1}`, false},
		{"unknown outcome", `{"logins":{"maybe":1}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d metrics.Delta
			if err := json.Unmarshal([]byte(tc.json), &d); err != nil {
				t.Fatal(err)
			}
			err := d.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate(%s) = %v, want ok %v", tc.json, err, tc.ok)
			}
		})
	}
}

// BenchmarkRecord is the cost a request pays for being counted: it must
// not allocate.
func BenchmarkRecord(b *testing.B) {
	var s metrics.Set
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Record("GET", 200, 1500*time.Microsecond)
		}
	})
	if testing.AllocsPerRun(100, func() { s.Record("POST", 201, time.Millisecond) }) != 0 {
		b.Error("Record allocates")
	}
}
