// Package parallel runs independent pieces of work on a bounded number of
// goroutines: the one worker pool that verify, gc, index rebuild and merge
// share.
package parallel

import (
	"context"
	"sync"
)

// Do calls fn(ctx, i) for every i in [0, n), at most jobs at a time (at
// least one), and returns when all calls have returned. Once ctx is
// cancelled no further call starts, and Do returns the cause. fn reports
// its own results (each call writes its own slot of a slice, say); Do
// orders nothing.
func Do(ctx context.Context, n, jobs int, fn func(ctx context.Context, i int)) error {
	jobs = max(1, min(jobs, n))
	var wg sync.WaitGroup
	next := make(chan int)
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(ctx, i)
			}
		}()
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			err = context.Cause(ctx)
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		err = context.Cause(ctx)
	}
	return err
}
