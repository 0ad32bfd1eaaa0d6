package format

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// ordered runs jobs on a pool of workers and hands their results back in
// submission order. The number of jobs in flight is bounded, so memory is
// bounded by depth times the size of a job. Its depth slots are reused
// from job to job: a job costs no allocation of the pipeline's own.
type ordered[J any] struct {
	work  chan *slot[J]
	queue chan *slot[J]
	free  chan *slot[J]
	wg    sync.WaitGroup
}

type slot[J any] struct {
	job  J
	done chan struct{} // a value for each job run in the slot
}

func workers() int { return max(1, runtime.GOMAXPROCS(0)) }

func newOrdered[J any](run func(J), nworkers, depth int) *ordered[J] {
	o := &ordered[J]{work: make(chan *slot[J], depth), queue: make(chan *slot[J], depth), free: make(chan *slot[J], depth)}
	for range depth {
		o.free <- &slot[J]{done: make(chan struct{}, 1)}
	}
	for range nworkers {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			for s := range o.work {
				run(s.job)
				s.done <- struct{}{}
			}
		}()
	}
	return o
}

// submit queues a job; it blocks while depth jobs are in flight.
func (o *ordered[J]) submit(j J) {
	s := <-o.free
	s.job = j
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
	var zero J
	s, ok := <-o.queue
	if !ok {
		return zero, false
	}
	<-s.done
	j := s.job
	s.job = zero
	o.free <- s
	return j, true
}

// freeList recycles equal-sized buffers, the last given back first (its
// pages are the likeliest to be in the cache still). Unlike sync.Pool it
// survives garbage collections, which matters here: the pipelines allocate
// little else, so chunk buffers would be dropped and cleared again every
// cycle. It holds at most n buffers; more are left to the collector.
type freeList struct {
	s    *stack[[]byte]
	size int
	slab bool         // newSlabList's
	made atomic.Int32 // buffers made, when slab (atomic: tests read it while the writer runs)
}

func newFreeList(size, n int) *freeList {
	return &freeList{s: newStack[[]byte](n), size: size}
}

// newSlabList is newFreeList whose buffers after the first are cut
// from one slab (see slab), made when a second is first asked for: a
// small job allocates one buffer, a large one's buffers cost few page
// faults. Its get is for one goroutine only.
func newSlabList(size, n int) *freeList {
	f := newFreeList(size, n)
	f.slab = true
	return f
}

// get returns a buffer of length size.
func (f *freeList) get() []byte {
	if b, ok := f.s.pop(); ok {
		return b[:f.size]
	}
	if !f.slab {
		return make([]byte, f.size)
	}
	if f.made.Add(1) == 2 && f.s.n > 1 {
		k := f.s.n - 1
		s := slab(k * f.size)
		for i := 1; i < k; i++ {
			f.s.push(s[i*f.size : (i+1)*f.size : (i+1)*f.size])
		}
		f.made.Add(int32(k - 1))
		return s[:f.size:f.size]
	}
	return make([]byte, f.size)
}

// put gives a buffer back; buffers of another capacity are dropped.
func (f *freeList) put(b []byte) {
	if cap(b) == f.size {
		f.s.push(b[:f.size])
	}
}

// stack holds up to n values for reuse, the last given back first.
type stack[T any] struct {
	mu   sync.Mutex
	vals []T
	n    int
}

func newStack[T any](n int) *stack[T] { return &stack[T]{n: n} }

func (s *stack[T]) pop() (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero T
	k := len(s.vals)
	if k == 0 {
		return zero, false
	}
	v := s.vals[k-1]
	s.vals[k-1] = zero
	s.vals = s.vals[:k-1]
	return v, true
}

// push keeps v unless n values are held already.
func (s *stack[T]) push(v T) {
	s.mu.Lock()
	if len(s.vals) < s.n {
		s.vals = append(s.vals, v)
	}
	s.mu.Unlock()
}
