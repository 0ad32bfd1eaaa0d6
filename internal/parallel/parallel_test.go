package parallel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestDoRunsEachOnceWithinTheBound(t *testing.T) {
	var running, peak atomic.Int32
	seen := make([]atomic.Int32, 100)
	err := Do(context.Background(), len(seen), 4, func(_ context.Context, i int) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		seen[i].Add(1)
		running.Add(-1)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Fatalf("item %d ran %d times", i, seen[i].Load())
		}
	}
	if peak.Load() > 4 || peak.Load() < 2 {
		t.Errorf("peak concurrency %d, want 2..4", peak.Load())
	}
}

func TestDoStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stop")
	var ran atomic.Int32
	err := Do(ctx, 1000, 2, func(_ context.Context, i int) {
		if ran.Add(1) == 10 {
			cancel(stop)
		}
		time.Sleep(time.Millisecond)
	})
	if !errors.Is(err, stop) {
		t.Fatalf("err %v, want the cause", err)
	}
	if n := ran.Load(); n >= 1000 || n < 10 {
		t.Errorf("%d calls ran after the cancel at 10", n)
	}
}
