package convert

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

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
	stats PackStats
	err   error // sticky: the archive is unusable after it
}

// NewPacker writes the archive header to dst and returns a Packer. Call
// Close to finish the archive.
func NewPacker(dst io.Writer, key *crypt.Key, opt PackOptions) (*Packer, error) {
	for _, pat := range opt.Exclude {
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", pat, err)
		}
	}
	p := &Packer{opt: opt, links: map[fileID][]byte{}, skip: map[fileID]bool{}, names: newIDNames()}
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
// archive is returned.
func (p *Packer) AddTree(root string) error {
	if !sysSupported {
		return errUnsupported
	}
	name, err := TreeName(root)
	if err != nil {
		return err
	}
	return p.walk(root, name)
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

func (p *Packer) walk(osPath, member string) error {
	if member != "" && p.excluded(member) {
		return nil
	}
	st, err := lstatPath(osPath)
	if err != nil {
		p.report(Failed, osPath, "not packed: %v", unwrapPath(err))
		return nil
	}
	if member != "" {
		if err := p.addStat(osPath, member, st); err != nil {
			return err
		}
	}
	if !st.isDir || p.skip[fileID{st.dev, st.ino}] {
		return nil
	}
	names, err := readDirNames(osPath)
	if err != nil {
		p.report(Failed, osPath, "directory not read, its contents are not packed: %v", unwrapPath(err))
		return nil
	}
	for _, n := range names {
		child := n
		if member != "" {
			child = member + "/" + n
		}
		if err := p.walk(filepath.Join(osPath, n), child); err != nil {
			return err
		}
	}
	return nil
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

// AddFile packs one file from disk as member path member, without
// descending into it if it is a directory. A file that cannot be read is
// reported and left out; only a failure to write the archive is returned.
func (p *Packer) AddFile(name, member string) error {
	if p.err != nil {
		return p.err
	}
	if !sysSupported {
		return errUnsupported
	}
	st, err := lstatPath(name)
	if err != nil {
		p.report(Failed, name, "not packed: %v", unwrapPath(err))
		return nil
	}
	return p.addStat(name, member, st)
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// addStat packs one file whose lstat result is st.
func (p *Packer) addStat(osPath, member string, st statInfo) error {
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
		ok, err := p.addRegular(osPath, m, st)
		if err != nil || !ok {
			return err
		}
	case sIFDIR:
		m.Type = format.TypeDir
		x, err := userXattrs(nil, osPath)
		if err != nil {
			p.report(Failed, osPath, "extended attributes not read: %v", err)
		}
		m.Xattrs = x
		if err := p.Add(m, nil); err != nil {
			return err
		}
	case sIFLNK:
		link, err := readlink(osPath)
		if err != nil {
			p.report(Failed, osPath, "not packed: %v", unwrapPath(err))
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

// addRegular packs a regular file. It reports, and returns false for, a
// file it could not open; a file that changes while it is read is stored
// with exactly the size stat gave before reading (cut, or padded with
// zeros, as GNU tar does) and reported.
func (p *Packer) addRegular(osPath string, m *format.Meta, lst statInfo) (bool, error) {
	f, err := openForPack(osPath)
	if err != nil {
		p.report(Failed, osPath, "not packed: %v", unwrapPath(err))
		return false, nil
	}
	defer f.Close()
	st, err := fstatFd(int(f.Fd()))
	if err != nil {
		p.report(Failed, osPath, "not packed: %v", err)
		return false, nil
	}
	if st.dev != lst.dev || st.ino != lst.ino || st.fmt() != sIFREG {
		p.report(Failed, osPath, "replaced while being packed; not packed")
		return false, nil
	}
	// The open descriptor's stat is the "before" picture the file is
	// checked against once read.
	m.Mode, m.UID, m.GID = st.mode&0o7777, uint64(st.uid), uint64(st.gid)
	m.Uname, m.Gname = p.names.user(st.uid), p.names.group(st.gid)
	m.MTime, m.ATime, m.CTime = st.mtime, st.atime, st.ctime
	m.Type, m.Size = format.TypeRegular, st.size
	x, err := userXattrs(f, osPath)
	if err != nil {
		p.report(Failed, osPath, "extended attributes not read: %v", err)
	}
	m.Xattrs = x
	extents := []format.Extent{{Offset: 0, Length: st.size}}
	// Only a file with fewer blocks than its size can have holes; asking
	// the file system about every file would cost two calls each.
	if st.blocks*512 < st.size {
		if ext, ok := dataExtents(f, st.size); ok && !(len(ext) == 1 && ext[0] == extents[0]) {
			m.Sparse, extents = ext, ext
		}
	}
	if packReadHook != nil {
		packReadHook(osPath)
	}
	fr := &fileReader{f: f, ext: extents}
	if err := p.Add(m, fr); err != nil {
		return false, err
	}
	after, err := fstatFd(int(f.Fd()))
	switch {
	case fr.err != nil:
		p.report(Failed, osPath, "read error at byte %d (%v): the rest of the file is stored as %d zero bytes", fr.errAt, fr.err, fr.zeros)
	case fr.zeros > 0:
		p.report(Failed, osPath, "file shrank while being read: stored padded with %d zero bytes", fr.zeros)
	case err != nil:
		p.report(Failed, osPath, "cannot stat after reading: %v", err)
	case after.size != st.size:
		p.report(Failed, osPath, "file changed size while being read (%d bytes, now %d): stored as its first %d bytes", st.size, after.size, st.size)
	case after.mtime != st.mtime || after.ctime != st.ctime:
		p.report(Failed, osPath, "file changed while being read: the stored content may mix old and new bytes")
	}
	return true, nil
}

// packReadHook, set by tests, runs between the stat and the read of a
// file: where another process changing the file would make pack report it.
var packReadHook func(osPath string)

// fileReader reads the given extents of a file one after the other. If
// the file ends early or a read fails, it gives zeros for the rest, so
// that the member's length always matches its metadata; the caller
// reports that.
type fileReader struct {
	f     *os.File
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
		k, err = r.f.ReadAt(b, e.Offset+r.off)
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
