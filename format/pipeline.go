package format

import (
	"runtime"
	"sync"
)

// ordered runs jobs on a pool of workers and hands their results back in
// submission order. The number of jobs in flight is bounded, so memory is
// bounded by depth times the size of a job.
type ordered[J any] struct {
	work  chan *slot[J]
	queue chan *slot[J]
	wg    sync.WaitGroup
}

type slot[J any] struct {
	job  J
	done chan struct{}
}

func workers() int { return max(1, runtime.GOMAXPROCS(0)) }

func newOrdered[J any](run func(J), nworkers, depth int) *ordered[J] {
	o := &ordered[J]{work: make(chan *slot[J], depth), queue: make(chan *slot[J], depth)}
	for range nworkers {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			for s := range o.work {
				run(s.job)
				close(s.done)
			}
		}()
	}
	return o
}

// submit queues a job; it blocks while depth jobs are in flight.
func (o *ordered[J]) submit(j J) {
	s := &slot[J]{job: j, done: make(chan struct{})}
	o.queue <- s
	o.work <- s
}

// close says no more jobs come; next drains what is queued.
func (o *ordered[J]) close() {
	close(o.queue)
	close(o.work)
}

// next returns the oldest job once it is done, or false after close when
// all are returned.
func (o *ordered[J]) next() (J, bool) {
	s, ok := <-o.queue
	if !ok {
		var zero J
		return zero, false
	}
	<-s.done
	return s.job, true
}
