package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Progress flags, shared by every command (persistent on the root).
var progressOn, progressOff bool

func progressFlags(root *cobra.Command) {
	root.PersistentFlags().BoolVar(&progressOn, "progress", false, "show progress on standard error even when it is not a terminal")
	root.PersistentFlags().BoolVar(&progressOff, "no-progress", false, "never show progress")
}

// progressWanted: forced by a flag, else only when standard error is a
// terminal, so that logs and pipes stay clean.
func progressWanted() bool {
	switch {
	case progressOff:
		return false
	case progressOn:
		return true
	}
	return term.IsTerminal(int(os.Stderr.Fd()))
}

// progress reports bytes read (or written) of a known or unknown total,
// on one rewritten line of standard error, five times a second.
type progress struct {
	label string
	total int64  // 0 when unknown (a pipe, a tree being walked)
	unit  string // what the bytes are when there is no total: "MB", "MB written"
	n     atomic.Int64
	mu    sync.Mutex // one line at a time on standard error
	stop  chan struct{}
	done  chan struct{}
}

// startProgress returns nil (which does nothing) when progress is off.
func startProgress(label string, total int64) *progress {
	if !progressWanted() {
		return nil
	}
	p := &progress{label: label, total: total, unit: "MB", stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *progress) run() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-p.stop:
			p.print(start)
			fmt.Fprintln(os.Stderr)
			return
		case <-t.C:
			p.print(start)
		}
	}
}

func (p *progress) print(start time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.n.Load()
	rate := float64(n) / max(time.Since(start).Seconds(), 1e-3) / 1e6
	if p.total > 0 {
		fmt.Fprintf(os.Stderr, "\rcbfs: %s: %d of %d MB (%.0f%%), %.0f MB/s ", p.label, n>>20, p.total>>20, 100*float64(n)/float64(p.total), rate)
	} else {
		fmt.Fprintf(os.Stderr, "\rcbfs: %s: %d %s, %.0f MB/s ", p.label, n>>20, p.unit, rate)
	}
}

// reader counts what is read through r.
func (p *progress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return &countingReader{r: r, n: &p.n}
}

// writer counts what is written through w; the figures are then bytes
// written, not read.
func (p *progress) writer(w io.Writer) io.Writer {
	if p == nil {
		return w
	}
	p.mu.Lock()
	p.unit = "MB written"
	p.mu.Unlock()
	return &countingWriter{w: w, n: &p.n}
}

// readerAt counts what is read through r at any offset: for a command
// that seeks, how much of the input it has read.
func (p *progress) readerAt(r io.ReaderAt) io.ReaderAt {
	if p == nil {
		return r
	}
	return &countingReaderAt{r: r, n: &p.n}
}

// say prints a message line on standard error, clearing the progress
// line first so that the two do not run together.
func (p *progress) say(format string, args ...any) {
	if p == nil {
		fmt.Fprintf(os.Stderr, format, args...)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(os.Stderr, "\r\x1b[K")
	fmt.Fprintf(os.Stderr, format, args...)
}

// finish prints the last figures and ends the line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	k, err := c.r.Read(b)
	c.n.Add(int64(k))
	return k, err
}

// inputSize is the size of a regular input file, or 0.
func inputSize(r io.Reader) int64 {
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			return st.Size()
		}
	}
	return 0
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	k, err := c.w.Write(b)
	c.n.Add(int64(k))
	return k, err
}

type countingReaderAt struct {
	r io.ReaderAt
	n *atomic.Int64
}

func (c *countingReaderAt) ReadAt(b []byte, off int64) (int, error) {
	k, err := c.r.ReadAt(b, off)
	c.n.Add(int64(k))
	return k, err
}
