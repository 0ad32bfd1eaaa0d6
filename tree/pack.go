package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sync"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
)

// ProblemKind says how a problem found while packing or extracting
// weighs on the outcome.
type ProblemKind int

const (
	// Note: something left out by design (a socket, the archive being
	// written). It does not make the run fail.
	Note ProblemKind = iota
	// Failed: a file not packed, or packed while it changed; a member not
	// extracted for a local reason (the path exists, mknod refused).
	Failed
	// Rejected: a member extract refused to write because it would land
	// outside the destination.
	Rejected
	// Damaged: a member whose bytes failed authentication.
	Damaged
)

// Problem is one file or member that pack or extract could not handle
// fully. The run goes on; the caller decides the exit status.
type Problem struct {
	Kind ProblemKind
	Path string // the file (pack) or the member path (extract)
	What string
}

func (p Problem) Error() string { return fmt.Sprintf("%q: %s", p.Path, p.What) }

// PackOptions configure a Packer.
type PackOptions struct {
	format.WriterOptions
	// Exclude holds path.Match patterns. A file is left out, with all a
	// directory holds, when a pattern matches its member path (for
	// example "src/build") or its base name (for example "*.o"). As in
	// path.Match, '*' does not match '/'.
	Exclude []string
	// Skip lists files that are never packed, such as the archive being
	// written when it lies inside a packed tree.
	Skip []os.FileInfo
	// Report receives each problem as it is found; nil discards them
	// (PackStats still counts them).
	Report func(Problem)
}

// PackStats says what a Packer wrote.
type PackStats struct {
	Members int   // members written
	Bytes   int64 // content bytes stored (holes of sparse files not counted)
	// Failed counts files that were not packed, or were packed while they
	// changed: each was reported. A caller should treat the archive as
	// incomplete when it is not zero.
	Failed int
}

type fileID struct{ dev, ino uint64 }

// Packer writes a CBFS archive member by member: from metadata and a
// content reader (Add), from a file on disk (AddFile), or from a whole
// directory tree (AddTree). It is the API a tiering agent embeds; 'cbfs
// pack' is built on it. No tar is produced on the way: each member goes
// straight into the archive's sealed frames.
type Packer struct {
	w     *format.Writer
	opt   PackOptions
	links map[fileID][]byte // first member path of each multiply-linked inode
	skip  map[fileID]bool
	names *idNames
	ra    *readAhead
	stats PackStats
	err   error           // sticky: the archive is unusable after it
	ctx   context.Context // of the AddTree or AddFile call walking now
}

// NewPacker writes the archive header to dst and returns a Packer. Call
// Close to finish the archive.
func NewPacker(dst io.Writer, key *crypt.Key, opt PackOptions) (*Packer, error) {
	for _, pat := range opt.Exclude {
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", pat, err)
		}
	}
	p := &Packer{opt: opt, links: map[fileID][]byte{}, skip: map[fileID]bool{}, names: newIDNames(), ra: newReadAhead()}
	for _, fi := range opt.Skip {
		if dev, ino, ok := devOf(fi); ok {
			p.skip[fileID{dev, ino}] = true
		}
	}
	w, err := format.NewWriter(dst, key, opt.WriterOptions)
	if err != nil {
		return nil, err
	}
	p.w = w
	return p, nil
}

func (p *Packer) report(kind ProblemKind, name, what string, args ...any) {
	if kind == Failed {
		p.stats.Failed++
	}
	if p.opt.Report != nil {
		p.opt.Report(Problem{Kind: kind, Path: name, What: fmt.Sprintf(what, args...)})
	}
}

// Add writes one member from its metadata and content. A regular file's
// content must hold exactly m.Size bytes, or for a sparse file (m.Sparse
// set) the data extents' bytes concatenated; other types take no content
// (nil). The metadata is written before the content is read, so a
// content of the wrong length is an error after which the archive is
// unusable: discard it.
func (p *Packer) Add(m *format.Meta, content io.Reader) error {
	if p.err != nil {
		return p.err
	}
	want := int64(0)
	if m.Type == format.TypeRegular {
		want = m.Size
		if m.Sparse != nil {
			want = 0
			for _, e := range m.Sparse {
				want += e.Length
			}
		}
	}
	var er *exactReader
	var r io.Reader
	if content != nil {
		er = &exactReader{r: content, left: want}
		r = er
	}
	n, err := p.w.Add(m, r)
	if err == nil && (n != want || (er != nil && er.extra)) {
		err = fmt.Errorf("member %q: content has a different length than its metadata states (%d bytes)", m.Path, want)
	}
	if err != nil {
		p.Abort(err)
		return err
	}
	p.stats.Members++
	p.stats.Bytes += n
	return nil
}

// exactReader reads at most left bytes and notes whether r held more.
type exactReader struct {
	r     io.Reader
	left  int64
	extra bool
}

func (e *exactReader) Read(b []byte) (int, error) {
	if e.left <= 0 {
		var one [1]byte
		if n, _ := io.ReadFull(e.r, one[:]); n > 0 {
			e.extra = true
		}
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), e.left)]
	n, err := e.r.Read(b)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// AddTree packs the tree at root: root itself, then what it holds, each
// directory's entries in byte order of their names and a directory before
// its contents, so that the same tree always gives the same member order.
// Member paths start with root's last element, as tar stores them
// relative to root's parent: AddTree("/home/u/src") stores "src",
// "src/main.go", ... Symlinks are stored, never followed. Files that
// cannot be read are reported and left out; only a failure to write the
// archive is returned, or the cause of ctx's cancellation, which stops
// the walk at the next file.
func (p *Packer) AddTree(ctx context.Context, root string) error {
	p.ctx = ctx
	defer func() { p.ctx = nil }()
	return p.addPath(root, "", true)
}

// AddFile packs one file from disk as member path member, without
// descending into it if it is a directory. A file that cannot be read is
// reported and left out; only a failure to write the archive is returned.
func (p *Packer) AddFile(ctx context.Context, name, member string) error {
	if member == "" {
		return errors.New("AddFile: empty member path")
	}
	p.ctx = ctx
	defer func() { p.ctx = nil }()
	return p.addPath(name, member, false)
}

// TreeName is the member path AddTree gives root: its last element, or ""
// for the file system root, whose entries are then stored as top-level
// members and which has no member of its own.
func TreeName(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	base := filepath.Base(abs)
	if base == string(filepath.Separator) {
		return "", nil
	}
	return base, nil
}

// addPath packs the file at name, found from its parent directory so
// that every later call works on descriptors, never re-resolving a path.
func (p *Packer) addPath(name, member string, tree bool) error {
	if !sysSupported {
		return errUnsupported
	}
	if p.err != nil {
		return p.err
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return err
	}
	if tree {
		if member, err = TreeName(name); err != nil {
			return err
		}
	}
	osPath := filepath.Clean(name)
	if member == "" {
		// The file system root: its entries are the top-level members.
		fd, err := openDirPath(abs)
		if err != nil {
			p.report(Failed, osPath, "not packed: %v", unwrapPath(err))
			return nil
		}
		defer closeFd(fd)
		return p.walkDir(fd, "/", "")
	}
	dirfd, err := openDirPath(filepath.Dir(abs))
	if err != nil {
		p.report(Failed, osPath, "not packed: %v", unwrapPath(err))
		return nil
	}
	defer closeFd(dirfd)
	return p.visit(dirfd, filepath.Base(abs), osPath, member, false, tree)
}

// visit packs the entry base of directory dirfd (osPath names it in
// reports) and, if it is a directory and recurse is set, what it holds.
// regular is readdir's word that it is a regular file: it is then opened
// straight away, and the open descriptor's stat is the one recorded.
func (p *Packer) visit(dirfd int, base, osPath, member string, regular, recurse bool) error {
	if member != "" && p.excluded(member) {
		return nil
	}
	fd := -1
	var st statInfo
	if regular {
		var err error
		fd, err = openFileAt(dirfd, base)
		if err == nil {
			if st, err = fstatFd(fd); err != nil || st.fmt() != sIFREG {
				// Replaced by another type since it was listed.
				closeFd(fd)
				fd = -1
			}
		} else if !errors.Is(err, errLoop) {
			p.report(Failed, osPath, "not packed: %v", err)
			return nil
		}
	}
	if fd < 0 {
		var err error
		if st, err = fstatAt(dirfd, base); err != nil {
			p.report(Failed, osPath, "not packed: %v", err)
			return nil
		}
	}
	return p.addEntry(dirfd, base, osPath, member, st, fd, recurse, nil)
}

// walkDir packs what the open directory fd holds. Small regular files
// are read ahead on other goroutines (see readAhead), a few entries in
// front of the one being added, so that their system calls overlap with
// each other and with sealing; members are still added in order.
func (p *Packer) walkDir(fd int, osPath, member string) (err error) {
	ents, err := readDirFd(fd)
	if err != nil {
		p.report(Failed, osPath, "directory not read, its contents are not packed: %v", err)
		return nil
	}
	childOf := func(name string) string {
		if member == "" {
			return name
		}
		return member + "/" + name
	}
	ahead := make([]*fetched, len(ents))
	next := 0
	// Every read started here uses fd: all must be over before the caller
	// closes it, even when an error ends the walk early.
	defer func() {
		for _, f := range ahead {
			if f != nil {
				<-f.done
				p.ra.discard(f)
			}
		}
	}()
	for i, e := range ents {
		if p.ctx != nil {
			if err := context.Cause(p.ctx); err != nil {
				return err
			}
		}
		for ; next < len(ents) && next <= i+readAheadFiles; next++ {
			if n := ents[next]; n.regular && !p.excluded(childOf(n.name)) {
				ahead[next] = p.ra.start(fd, n.name, filepath.Join(osPath, n.name))
			}
		}
		child, childPath := childOf(e.name), filepath.Join(osPath, e.name)
		if f := ahead[i]; f != nil {
			<-f.done
			err = p.addFetched(fd, e.name, childPath, child, f)
			p.ra.discard(f)
			ahead[i] = nil
		} else {
			err = p.visit(fd, e.name, childPath, child, e.regular, true)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// addFetched adds a regular file that was opened, and if small read, on
// another goroutine.
func (p *Packer) addFetched(dirfd int, base, osPath, member string, f *fetched) error {
	switch {
	case errors.Is(f.openErr, errLoop), f.openErr == nil && f.rf == nil:
		// No longer a regular file: look again.
		return p.visit(dirfd, base, osPath, member, false, true)
	case f.openErr != nil:
		p.report(Failed, osPath, "not packed: %v", f.openErr)
		return nil
	}
	err := p.addEntry(dirfd, base, osPath, member, f.rf.st, f.rf.fd, false, f.rf)
	f.rf.fd = -1 // addEntry closed it
	return err
}

func (p *Packer) excluded(member string) bool {
	base := path.Base(member)
	for _, pat := range p.opt.Exclude {
		if ok, _ := path.Match(pat, member); ok {
			return true
		}
		if ok, _ := path.Match(pat, base); ok {
			return true
		}
	}
	return false
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// addEntry packs one file whose stat is st; fd is the file already open
// for reading, or -1, and pre what was read ahead of a regular file, or
// nil. It closes fd.
func (p *Packer) addEntry(dirfd int, base, osPath, member string, st statInfo, fd int, recurse bool, pre *regularFile) error {
	if fd >= 0 {
		defer closeFd(fd)
	}
	id := fileID{st.dev, st.ino}
	if p.skip[id] {
		p.report(Note, osPath, "is the archive being written; not packed")
		return nil
	}
	m := &format.Meta{
		Path: []byte(member), Mode: st.mode & 0o7777,
		UID: uint64(st.uid), GID: uint64(st.gid),
		Uname: p.names.user(st.uid), Gname: p.names.group(st.gid),
		MTime: st.mtime, ATime: st.atime, CTime: st.ctime, Inode: st.ino,
	}
	linked := !st.isDir && st.nlink > 1
	if linked {
		if first, ok := p.links[id]; ok {
			m.Type, m.Link = format.TypeHardlink, first
			return p.Add(m, nil)
		}
	}
	switch st.fmt() {
	case sIFREG:
		if pre == nil && fd < 0 {
			var err error
			if fd, err = openFileAt(dirfd, base); err != nil {
				p.report(Failed, osPath, "not packed: %v", err)
				return nil
			}
			defer closeFd(fd)
			now, err := fstatFd(fd)
			if err != nil || now.dev != st.dev || now.ino != st.ino || now.fmt() != sIFREG {
				p.report(Failed, osPath, "replaced while being packed; not packed")
				return nil
			}
			st = now
		}
		rf := pre
		if rf == nil {
			rf = prepareRegular(fd, st)
		}
		if err := p.addRegular(rf, osPath, m); err != nil {
			return err
		}
	case sIFDIR:
		m.Type = format.TypeDir
		dfd, err := openDirAt(dirfd, base)
		if err != nil {
			// The directory itself is still stored, as tar does.
			p.report(Failed, osPath, "directory not read, its contents are not packed: %v", err)
		} else if now, err := fstatFd(dfd); err != nil || now.dev != st.dev || now.ino != st.ino {
			// Swapped since it was looked at: its metadata and its contents
			// would come from two different directories.
			closeFd(dfd)
			dfd = -1
			p.report(Failed, osPath, "directory replaced while being packed; its contents are not packed")
		} else {
			defer closeFd(dfd)
			if m.Xattrs, err = readXattrs(dfd, ""); err != nil {
				p.report(Failed, osPath, "extended attributes not read: %v", err)
			}
		}
		if member != "" {
			if err := p.Add(m, nil); err != nil {
				return err
			}
		}
		if dfd >= 0 && recurse {
			return p.walkDir(dfd, osPath, member)
		}
		return nil
	case sIFLNK:
		link, err := readlinkAt(dirfd, base)
		if err != nil {
			p.report(Failed, osPath, "not packed: %v", err)
			return nil
		}
		m.Type, m.Link = format.TypeSymlink, link
		if err := p.Add(m, nil); err != nil {
			return err
		}
	case sIFCHR, sIFBLK:
		m.Type = format.TypeChar
		if st.fmt() == sIFBLK {
			m.Type = format.TypeBlock
		}
		m.DevMajor, m.DevMinor = devMajor(st.rdev), devMinor(st.rdev)
		if err := p.Add(m, nil); err != nil {
			return err
		}
	case sIFIFO:
		m.Type = format.TypeFifo
		if err := p.Add(m, nil); err != nil {
			return err
		}
	case sIFSOCK:
		p.report(Note, osPath, "socket ignored")
		return nil
	default:
		p.report(Failed, osPath, "not packed: unknown file type %#o", st.fmt())
		return nil
	}
	if linked {
		p.links[id] = m.Path
	}
	return nil
}

// regularFile is a regular file opened for packing: its stat before
// reading, xattrs, data extents, and, when read ahead, its content and
// its stat after reading.
type regularFile struct {
	fd     int
	st     statInfo
	x      []format.Xattr
	xErr   error
	ext    []format.Extent // what to read: the whole file, or its data extents
	sparse bool
	// Set once the content was read.
	read     bool
	data     []byte // the content, when read ahead
	fr       *fileReader
	after    statInfo
	afterErr error
}

func prepareRegular(fd int, st statInfo) *regularFile {
	rf := &regularFile{fd: fd, st: st, ext: []format.Extent{{Offset: 0, Length: st.size}}}
	rf.x, rf.xErr = readXattrs(fd, "")
	// Only a file with fewer blocks than its size can have holes; asking
	// the file system about every file would cost two calls each.
	if st.blocks*512 < st.size {
		if ext, ok := dataExtents(fd, st.size); ok && !(len(ext) == 1 && ext[0] == rf.ext[0]) {
			rf.ext, rf.sparse = ext, true
		}
	}
	return rf
}

// contentLen is the number of bytes the member's content holds.
func (rf *regularFile) contentLen() int64 {
	n := int64(0)
	for _, e := range rf.ext {
		n += e.Length
	}
	return n
}

// readAll reads the content into memory and stats the file again.
func (rf *regularFile) readAll(osPath string) {
	if packReadHook != nil {
		packReadHook(osPath)
	}
	rf.fr = &fileReader{fd: rf.fd, ext: rf.ext}
	rf.data = getBuf(int(rf.contentLen()))
	io.ReadFull(rf.fr, rf.data) // fileReader gives zeros for what it cannot read
	rf.after, rf.afterErr = fstatFd(rf.fd)
	rf.read = true
}

// addRegular packs a regular file. A file that changes while it is read
// is stored with exactly the size stat gave before reading (cut, or padded
// with zeros, as GNU tar does) and reported.
func (p *Packer) addRegular(rf *regularFile, osPath string, m *format.Meta) error {
	m.Type, m.Size = format.TypeRegular, rf.st.size
	if rf.xErr != nil {
		p.report(Failed, osPath, "extended attributes not read: %v", rf.xErr)
	}
	m.Xattrs = rf.x
	if rf.sparse {
		m.Sparse = rf.ext
	}
	var content io.Reader
	if rf.read {
		content = bytes.NewReader(rf.data)
	} else {
		if packReadHook != nil {
			packReadHook(osPath)
		}
		rf.fr = &fileReader{fd: rf.fd, ext: rf.ext}
		content = rf.fr
	}
	if err := p.Add(m, content); err != nil {
		return err
	}
	if !rf.read {
		rf.after, rf.afterErr = fstatFd(rf.fd)
	}
	fr, st, after := rf.fr, rf.st, rf.after
	switch {
	case fr.err != nil:
		p.report(Failed, osPath, "read error at byte %d (%v): the rest of the file is stored as %d zero bytes", fr.errAt, fr.err, fr.zeros)
	case fr.zeros > 0:
		p.report(Failed, osPath, "file shrank while being read: stored padded with %d zero bytes", fr.zeros)
	case rf.afterErr != nil:
		p.report(Failed, osPath, "cannot stat after reading: %v", rf.afterErr)
	case after.size != st.size:
		p.report(Failed, osPath, "file changed size while being read (%d bytes, now %d): stored as its first %d bytes", st.size, after.size, st.size)
	case after.mtime != st.mtime || after.ctime != st.ctime:
		p.report(Failed, osPath, "file changed while being read: the stored content may mix old and new bytes")
	}
	return nil
}

// Read-ahead limits: how many entries of a directory ahead of the one
// being added are opened, how large a file is read ahead whole, how many
// bytes may wait in memory, and how many reads run at once.
const (
	readAheadFiles   = 16
	readAheadMaxFile = 128 << 10
	readAheadBudget  = 8 << 20
	readAheadWorkers = 4
)

// readAhead opens regular files, and reads small ones, on other
// goroutines. Memory is bounded by a byte budget that is taken only when
// free: when it is not, the file is read by the walk itself, so a walk
// deep in a tree can never wait on reads held further up.
type readAhead struct {
	slots  chan struct{}
	mu     sync.Mutex
	budget int64
}

func newReadAhead() *readAhead {
	return &readAhead{slots: make(chan struct{}, readAheadWorkers), budget: readAheadBudget}
}

// Read-ahead buffers are reused by power-of-two size, from 4 KiB to
// readAheadMaxFile: allocating and zeroing one per file made the garbage
// collector a large part of packing many small files. They are kept
// across garbage collections (a sync.Pool's are dropped at each, and new
// buffers cost first touches of their pages again), the last given back
// first, up to readAheadBudget bytes.
var bufFree struct {
	mu      sync.Mutex
	classes [6][][]byte // 4 KiB to readAheadMaxFile
	bytes   int64
}

func bufClass(n int) int {
	c := 0
	for size := 4 << 10; size < n; size <<= 1 {
		c++
	}
	return c
}

func getBuf(n int) []byte {
	c := bufClass(n)
	bufFree.mu.Lock()
	if k := len(bufFree.classes[c]); k > 0 {
		b := bufFree.classes[c][k-1]
		bufFree.classes[c][k-1] = nil
		bufFree.classes[c] = bufFree.classes[c][:k-1]
		bufFree.bytes -= int64(cap(b))
		bufFree.mu.Unlock()
		return b[:n]
	}
	bufFree.mu.Unlock()
	return make([]byte, n, 4<<10<<c)
}

func putBuf(b []byte) {
	if b == nil {
		return
	}
	c := bufClass(cap(b))
	if cap(b) != 4<<10<<c {
		return
	}
	bufFree.mu.Lock()
	if bufFree.bytes+int64(cap(b)) <= readAheadBudget {
		bufFree.classes[c] = append(bufFree.classes[c], b[:0])
		bufFree.bytes += int64(cap(b))
	}
	bufFree.mu.Unlock()
}

// fetched is one file opened ahead.
type fetched struct {
	done    chan struct{}
	openErr error
	rf      *regularFile // nil if it is no longer a regular file
	cost    int64        // budget held for rf.data
}

func (ra *readAhead) start(dirfd int, name, osPath string) *fetched {
	f := &fetched{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		ra.slots <- struct{}{}
		defer func() { <-ra.slots }()
		fd, err := openFileAt(dirfd, name)
		if err != nil {
			f.openErr = err
			return
		}
		st, err := fstatFd(fd)
		if err != nil || st.fmt() != sIFREG {
			closeFd(fd)
			return
		}
		rf := prepareRegular(fd, st)
		f.rf = rf
		n := rf.contentLen()
		if n > readAheadMaxFile {
			return
		}
		ra.mu.Lock()
		ok := ra.budget >= n
		if ok {
			ra.budget -= n
		}
		ra.mu.Unlock()
		if !ok {
			return
		}
		f.cost = n
		rf.readAll(osPath)
		closeFd(fd)
		rf.fd = -1
	}()
	return f
}

// discard returns a fetched file's budget and closes what is still open.
func (ra *readAhead) discard(f *fetched) {
	if f.rf != nil {
		if f.rf.fd >= 0 {
			closeFd(f.rf.fd)
			f.rf.fd = -1
		}
		putBuf(f.rf.data)
		f.rf.data = nil
	}
	if f.cost > 0 {
		ra.mu.Lock()
		ra.budget += f.cost
		ra.mu.Unlock()
		f.cost = 0
	}
}

// packReadHook, set by tests, runs between the stat and the read of a
// file: where another process changing the file would make pack report it.
var packReadHook func(osPath string)

// fileReader reads the given extents of a file one after the other. If
// the file ends early or a read fails, it gives zeros for the rest, so
// that the member's length always matches its metadata; the caller
// reports that.
type fileReader struct {
	fd    int
	ext   []format.Extent
	off   int64 // read so far in ext[0]
	zeros int64 // bytes given as zeros
	err   error // first read error
	errAt int64
}

func (r *fileReader) Read(b []byte) (int, error) {
	for len(r.ext) > 0 && r.off == r.ext[0].Length {
		r.ext, r.off = r.ext[1:], 0
	}
	if len(r.ext) == 0 {
		return 0, io.EOF
	}
	e := r.ext[0]
	b = b[:min(int64(len(b)), e.Length-r.off)]
	k := 0
	if r.zeros == 0 && r.err == nil {
		var err error
		k, err = preadFull(r.fd, b, e.Offset+r.off)
		if err != nil && err != io.EOF {
			r.err, r.errAt = err, e.Offset+r.off+int64(k)
		}
	}
	clear(b[k:])
	r.zeros += int64(len(b) - k)
	r.off += int64(len(b))
	return len(b), nil
}

// Abort stops the archive after a failure elsewhere: it is left without
// its summary and footer, so that no reader takes it for complete, and
// every later call returns err.
func (p *Packer) Abort(err error) {
	if p.err == nil {
		p.err = err
	}
	p.w.Abort(p.err)
}

// Close writes the summary and footer. The archive is complete only when
// it returns nil.
func (p *Packer) Close() (PackStats, error) {
	if p.err != nil {
		return p.stats, p.err
	}
	if err := p.w.Close(); err != nil {
		p.err = err
		return p.stats, err
	}
	return p.stats, nil
}
