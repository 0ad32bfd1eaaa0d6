// Regular files: created in archive order by the walk, written by
// workers, sparse where the member is.

package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/frame"
	"github.com/cbfs/cbfs/tarconv"
)

func (x *extractor) tmpName() string {
	x.tmpCount++
	return fmt.Sprintf("%s%d", x.tmpPrefix, x.tmpCount)
}

// fileSink writes a member's bytes to the file, remembering a write error
// apart from errors of the archive.
type fileSink struct {
	ctx context.Context
	fd  int
	n   int64 // logical bytes received
	err error
}

func (s *fileSink) Write(p []byte) (int, error) {
	if err := context.Cause(s.ctx); err != nil {
		s.err = err
		return 0, err
	}
	n, err := writeFd(s.fd, p)
	s.n += int64(n)
	if err != nil {
		s.err = err
	}
	return n, err
}

// writeFile starts extracting a regular file: it creates the file here,
// so that a name already taken is found in order, and hands the rest to
// a worker (finishFile). A new file is created under its own name; one
// that replaces another gets a temporary name and is renamed over it once
// complete. Unless full is set, m is the summary's record and the worker
// reads the full one. link says the file stands for a hard link member,
// which its caller counts.
func (x *extractor) writeFile(a *format.Archive, parent int, base, name string, e format.Entry, m *format.Meta, full, link, replace bool) (done, exists bool, err error) {
	target := base
	if replace {
		target = x.tmpName()
	}
	fd, err := createAt(parent, target)
	if err != nil {
		if !replace && errors.Is(err, fs.ErrExist) {
			return false, true, nil
		}
		x.report(Failed, name, "cannot create the file: %v", err)
		return false, false, nil
	}
	ref := x.walk.refOf(parent)
	ref.acquire()
	j := &fileJob{a: a, e: e, name: name, parent: ref, base: base, target: target, replace: replace, fd: fd,
		count: !link, done: make(chan struct{})}
	if full {
		j.m = m
	}
	x.inflight[name] = j
	x.jobs <- j
	return true, false, nil
}

// fileJob is a regular file created and waiting for its content.
type fileJob struct {
	a       *format.Archive
	e       format.Entry
	m       *format.Meta // nil: read the member's full record
	name    string
	parent  *dirRef
	base    string
	target  string // base, or the temporary name when replacing
	replace bool
	fd      int
	count   bool // counted as a member once written
	done    chan struct{}
}

func (x *extractor) startWorkers() {
	n := max(2, runtime.GOMAXPROCS(0))
	x.jobs = make(chan *fileJob, 2*n)
	x.inflight = map[string]*fileJob{}
	for range n {
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			for j := range x.jobs {
				x.finishFile(j)
			}
		}()
	}
}

func (x *extractor) stopWorkers() {
	if !x.stopped {
		x.stopped = true
		close(x.jobs)
	}
	x.wg.Wait()
	clear(x.inflight)
}

// wait blocks until the file at path, if being written, is done.
func (x *extractor) wait(path string) {
	if j, ok := x.inflight[path]; ok {
		<-j.done
		delete(x.inflight, path)
	}
}

func (x *extractor) fatalErr() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.fatal
}

func (x *extractor) setFatal(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.fatal == nil {
		x.fatal = err
	}
}

func (x *extractor) counted(bytes int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.stats.Members++
	x.stats.Bytes += bytes
}

func (x *extractor) statsNow() ExtractStats {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.stats
}

// finishFile writes a created file's content, then its xattrs, owner,
// mode and times, on a worker. A member whose bytes fail authentication
// is removed; a failure of the destination (a full disk) stops the run.
func (x *extractor) finishFile(j *fileJob) {
	defer close(j.done)
	defer j.parent.release()
	parent, fd := j.parent.fd, j.fd
	kept, closed := false, false
	defer func() {
		if !closed {
			closeFd(fd)
		}
		if !kept {
			unlinkAt(parent, j.target, false)
		}
	}()
	if x.fatalErr() != nil {
		return
	}
	name, e, m := j.name, j.e, j.m
	if m == nil {
		var err error
		if m, err = j.a.Meta(e); err != nil {
			if format.IsDamage(err) {
				x.report(Damaged, name, "%s%v; not extracted", x.in(j.a), err)
			} else {
				x.setFatal(err)
			}
			return
		}
	}
	var cerr, werr error
	var written int64
	switch {
	case m.TarHeader != nil:
		// An imported entry: its bytes come through Go's tar reader,
		// which expands every sparse format; zero blocks of a sparse
		// entry are skipped again to keep the holes.
		if importedSparse(m.TarHeader) {
			hw := &holeWriter{fd: fd}
			cerr = tarconv.WriteContent(j.a, e, hw)
			werr, written = hw.err, hw.pos
			if cerr == nil && werr == nil {
				werr = ftruncate(fd, hw.pos)
			}
		} else {
			sink := &fileSink{ctx: x.ctx, fd: fd}
			cerr = tarconv.WriteContent(j.a, e, sink)
			werr, written = sink.err, sink.n
		}
	case m.Sparse != nil:
		ew := &extentWriter{fd: fd, ext: m.Sparse}
		cerr = j.a.Content(e, ew)
		werr = ew.err
		if cerr == nil && werr == nil {
			if !ew.done() {
				cerr = &format.Error{Class: format.ClassMember, Offset: -1, Member: int64(e.Number), Path: name,
					What: "sparse content is shorter than its extents"}
			} else {
				werr = ftruncate(fd, m.Size)
			}
		}
		written = m.Size
		if ew.overflow {
			cerr = &format.Error{Class: format.ClassMember, Offset: -1, Member: int64(e.Number), Path: name,
				What: "sparse content is longer than its extents"}
		}
	default:
		sink := &fileSink{ctx: x.ctx, fd: fd}
		cerr = j.a.Content(e, sink)
		werr, written = sink.err, sink.n
	}
	if werr != nil {
		x.setFatal(fmt.Errorf("%s: writing: %w", name, werr))
		return
	}
	if cerr != nil {
		if format.IsDamage(cerr) {
			x.report(Damaged, name, "%s%v; not extracted", x.in(j.a), cerr)
		} else {
			x.report(Failed, name, "%v; not extracted", cerr)
		}
		return
	}
	if written != m.Size {
		x.report(Damaged, name, "content of %d bytes, its metadata says %d; not extracted", written, m.Size)
		return
	}
	x.setXattrs(fd, name, m, xattrsEarly)
	x.ownerAndMode(fd, name, m)
	x.setXattrs(fd, name, m, xattrsLate)
	// Through the descriptor of the file created with O_EXCL: by name,
	// the times could land on whatever replaced it since.
	if err := futimesNode(fd, m.ATime, m.MTime); err != nil {
		x.report(Failed, name, "times not restored: %v", err)
	}
	closed = true
	if err := closeErr(fd); err != nil {
		x.setFatal(fmt.Errorf("%s: writing: %w", name, err))
		return
	}
	if j.replace {
		if err := renameAt(parent, j.target, j.base, true); err != nil {
			x.setFatal(fmt.Errorf("%s: %w", name, err))
			return
		}
	}
	kept = true
	if j.count {
		x.counted(written)
	} else {
		x.mu.Lock()
		x.stats.Bytes += written
		x.mu.Unlock()
	}
}

// importedSparse says whether an imported entry's header bytes describe a
// sparse file: an old GNU 'S' header or GNU.sparse pax records.
func importedSparse(raw []byte) bool {
	if bytes.Contains(raw, []byte("GNU.sparse.")) {
		return true
	}
	for off := len(raw) % format.BlockSize; off+format.BlockSize <= len(raw); off += format.BlockSize {
		b := (*format.Block)(raw[off : off+format.BlockSize])
		if b.Typeflag() == 'S' && b.VerifyChecksum() == nil {
			return true
		}
	}
	return false
}

// holeBlock is the granularity at which holeWriter leaves zeros out.
const holeBlock = 4096

// holeWriter writes a file's bytes at their offsets, skipping whole
// aligned blocks of zeros so that they become holes.
type holeWriter struct {
	fd  int
	pos int64
	err error
}

func (h *holeWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), int(holeBlock-h.pos%holeBlock))
		chunk := p[:k]
		if !(k == holeBlock && frame.AllZero(chunk)) {
			if err := pwriteFd(h.fd, chunk, h.pos); err != nil {
				h.err = err
				return 0, err
			}
		}
		h.pos += int64(k)
		p = p[k:]
	}
	return n, nil
}

// extentWriter writes the concatenated data extents of a sparse member at
// their offsets; the holes are never written.
type extentWriter struct {
	fd       int
	ext      []format.Extent
	used     int64
	err      error
	overflow bool
}

func (s *extentWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		for len(s.ext) > 0 && s.used == s.ext[0].Length {
			s.ext, s.used = s.ext[1:], 0
		}
		if len(s.ext) == 0 {
			s.overflow = true
			return 0, errors.New("sparse content longer than its extents")
		}
		e := s.ext[0]
		k := min(int64(len(p)), e.Length-s.used)
		if err := pwriteFd(s.fd, p[:k], e.Offset+s.used); err != nil {
			s.err = err
			return 0, err
		}
		s.used += k
		p = p[k:]
	}
	return n, nil
}

func (s *extentWriter) done() bool {
	for len(s.ext) > 0 && s.used == s.ext[0].Length {
		s.ext, s.used = s.ext[1:], 0
	}
	return len(s.ext) == 0
}
