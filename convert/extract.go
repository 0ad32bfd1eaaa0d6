package convert

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
)

// ExtractOptions configure Extract.
type ExtractOptions struct {
	// Paths selects what is extracted: the members whose path is one of
	// these or lies under one of them as a directory. Empty: everything.
	Paths []string
	// SameOwner restores owners (chown needs root). The owner and group
	// names are mapped to local ids where they exist, as tar does, unless
	// NumericOwner is set; otherwise the archived ids are used.
	SameOwner, NumericOwner bool
	// NoDevices skips character and block device members (each reported
	// as a note); NoSetID clears the set-user-id and set-group-id bits of
	// every file (a directory keeps set-group-id: it only passes its
	// group on).
	NoDevices, NoSetID bool
	// Overwrite replaces files that exist before extraction. Without it
	// an existing path is reported and left alone; an existing directory
	// is used as it is, its mode and times untouched.
	Overwrite bool
	// OnMember, when set, is called with the path of each member as
	// extract starts on it, in archive order: what tar -v lists.
	OnMember func(path string)
	// Report receives each problem as it is found; nil discards them
	// (ExtractStats still counts them).
	Report func(Problem)
	// Entries, when set, are the members to extract in place of those the
	// archive's summary lists: the entries format.Salvage found, or the
	// summary read already.
	Entries []format.Entry
}

// ExtractStats says what Extract did.
type ExtractStats struct {
	Members int   // members written to the destination
	Bytes   int64 // bytes of the regular files written (their sizes)
	// Each reported problem is counted by its kind.
	Failed, Rejected, Damaged int
}

// Extract writes the members of an archive under dest, which it creates
// if needed. It never writes outside dest: a member with an absolute path
// or a ".." component, whose path goes through a symlink, or a hard link
// whose target is outside dest or reached through a symlink is rejected.
// Every rejected, damaged or failed member is reported and counted, and
// the rest is still extracted. A file whose content fails authentication
// is removed (one that replaces an existing file is written under a
// temporary name and renamed over it only once complete), so a damaged
// member leaves no partial file. Regular files are written by a few
// workers while the walk goes on; modes and times of directories are set
// last, deepest first. The returned error is one that stops the whole
// run: the summary cannot be read, dest cannot be written.
//
// Members are read in archive order with many small reads: give
// format.OpenArchive a CachedSource.
func Extract(a *format.Archive, dest string, opt ExtractOptions) (ExtractStats, error) {
	if !sysSupported {
		return ExtractStats{}, errUnsupported
	}
	entries := opt.Entries
	if entries == nil {
		var err error
		if entries, err = a.Entries(); err != nil {
			return ExtractStats{}, err
		}
	}
	if err := os.MkdirAll(dest, 0o777); err != nil {
		return ExtractStats{}, err
	}
	root, err := openRoot(dest)
	if err != nil {
		return ExtractStats{}, err
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	x := &extractor{a: a, entries: entries, opt: opt, names: newIDNames(),
		created: map[string]bool{}, dirMeta: map[string]*format.Meta{}, dirIDs: map[string]nodeID{},
		tmpPrefix: ".cbfs-" + hex.EncodeToString(rnd[:]) + "-",
		euid:      geteuid(), egid: getegid()}
	x.walk = &dirWalker{root: newDirRef(root), x: x}
	defer x.walk.root.release()
	defer x.walk.close()
	x.startWorkers()
	defer x.stopWorkers()
	for _, p := range opt.Paths {
		// A selection is matched in its canonical form, as the index
		// keys paths ("/a" selects "a").
		sel := []byte(p)
		if c, err := index.CanonicalPath(sel); err == nil {
			sel = c
		}
		comps, bad := splitMember(sel)
		if bad != "" {
			x.report(Failed, p, "not a path that extract can select: %s", bad)
			continue
		}
		x.sel = append(x.sel, selector{arg: p, path: strings.Join(comps, "/")})
	}
	if len(opt.Paths) > 0 && len(x.sel) == 0 {
		return x.stats, nil
	}
	for i, e := range entries {
		err := x.member(i, e)
		if err == nil {
			err = x.fatalErr()
		}
		if err != nil {
			x.stopWorkers()
			return x.statsNow(), err
		}
	}
	// Files are complete before their directories' times are set.
	x.stopWorkers()
	if err := x.fatalErr(); err != nil {
		return x.statsNow(), err
	}
	if err := x.finishDirs(); err != nil {
		return x.stats, err
	}
	for _, s := range x.sel {
		if !s.matched {
			x.report(Failed, s.arg, "not found in the archive")
		}
	}
	if x.otherXattrs > 0 {
		names := strings.Join(x.otherNames, ", ")
		if len(x.otherNames) == 8 {
			names += ", ..."
		}
		x.report(Note, "", "%d extended attributes outside the user namespace (%s) were not restored: only root restores them", x.otherXattrs, names)
	}
	return x.stats, nil
}

type selector struct {
	arg, path string
	matched   bool
}

type extractor struct {
	a       *format.Archive
	entries []format.Entry
	opt     ExtractOptions
	names   *idNames
	walk    *dirWalker
	sel     []selector
	// created holds every path this run made, directories made on the way
	// included: a later member of the same path may replace it (the last
	// one wins), and only these can be hard-link targets.
	created map[string]bool
	dirMeta map[string]*format.Meta // directory metadata to set at the end
	// dirIDs holds the identity of each directory this run made (or, with
	// Overwrite, took over): its attributes are set at the end through a
	// descriptor only if the name still leads to that very directory.
	dirIDs     map[string]nodeID
	tmpPrefix  string
	tmpCount   int
	euid, egid int
	// Regular files are written by workers while the walk goes on; mu
	// guards what they share with it.
	jobs     chan *fileJob
	wg       sync.WaitGroup
	inflight map[string]*fileJob // by path; the walk's own
	stopped  bool

	mu          sync.Mutex
	otherXattrs int
	otherNames  []string // the first few names of those
	stats       ExtractStats
	fatal       error
}

func (x *extractor) report(kind ProblemKind, path, what string, args ...any) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch kind {
	case Failed:
		x.stats.Failed++
	case Rejected:
		x.stats.Rejected++
	case Damaged:
		x.stats.Damaged++
	}
	if x.opt.Report != nil {
		x.opt.Report(Problem{Kind: kind, Path: path, What: fmt.Sprintf(what, args...)})
	}
}

// splitMember turns a member path into its components below the
// destination, or says why it may not be written: an absolute path, a
// ".." component, a NUL byte. Empty and "." components are dropped, so
// "./a//b/" is "a/b"; no components at all is the destination itself.
func splitMember(p []byte) ([]string, string) {
	if bytes.IndexByte(p, 0) >= 0 {
		return nil, "path holds a NUL byte"
	}
	if len(p) > 0 && p[0] == '/' {
		return nil, "absolute path: it would be written outside the destination"
	}
	var comps []string
	for _, c := range strings.Split(string(p), "/") {
		switch c {
		case "", ".":
		case "..":
			return nil, "path has a '..' component: it could be written outside the destination"
		default:
			comps = append(comps, c)
		}
	}
	return comps, ""
}

// selected says whether the user asked for path, marking what matched.
func (x *extractor) selected(path string) bool {
	if len(x.sel) == 0 {
		return true
	}
	ok := false
	for i := range x.sel {
		s := &x.sel[i]
		if s.path == "" || path == s.path || strings.HasPrefix(path, s.path+"/") {
			s.matched, ok = true, true
		}
	}
	return ok
}

// isDamage says whether err is the archive's fault (authentication or
// framing), as opposed to the destination's.
func isDamage(err error) bool {
	var fe *format.Error
	return errors.As(err, &fe)
}

func (x *extractor) member(i int, e format.Entry) error {
	sm := e.Meta
	switch sm.Type {
	case format.TypeTombstone, format.TypeTarGlobal, format.TypeTrailer:
		return nil // not files
	}
	comps, bad := splitMember(sm.Path)
	if bad != "" {
		if len(x.sel) == 0 {
			x.report(Rejected, string(sm.Path), "%s; not extracted", bad)
		}
		return nil
	}
	name := strings.Join(comps, "/")
	if !x.selected(name) {
		return nil
	}
	if sm.Type == format.TypeTarOther {
		switch sm.Typeflag {
		case 'D':
			sm = dumpDir(sm)
		case 'V':
			return nil // a GNU volume label: a name for the archive, not a file
		case 'M':
			x.report(Failed, string(sm.Path), "a multi-volume continuation (tar type 'M'), the rest of a file begun in another volume; not extracted")
			return nil
		default:
			x.report(Failed, string(sm.Path), "tar entry of type %q: cbfs does not know how to extract it; not extracted", sm.Typeflag)
			return nil
		}
	}
	if len(comps) == 0 {
		// The destination itself ("./", "."): a directory member of it is
		// the directory extract writes into, and it is not replaced.
		// Anything else could only be written over it.
		if sm.Type != format.TypeDir {
			x.report(Failed, string(sm.Path), "a %s named as the destination directory itself; not extracted", sm.Type)
		}
		return nil
	}
	if x.opt.OnMember != nil {
		x.opt.OnMember(string(sm.Path))
	}
	// A member at the same path still being written finishes first: the
	// last one wins.
	x.wait(name)
	m := sm
	if sm.Type != format.TypeRegular {
		// A file's full record (xattrs, verbatim tar header) is read by
		// the worker that writes it.
		var err error
		if m, err = x.a.Meta(e); err != nil {
			if isDamage(err) {
				x.report(Damaged, name, "%v", err)
				return nil
			}
			return err
		}
		if m.Type == format.TypeTarOther && m.Typeflag == 'D' {
			m = dumpDir(m)
		}
	}
	return x.extract(i, e, m, comps, name)
}

// dumpDir turns a GNU incremental dump directory (tar type 'D': a
// directory whose data lists its entries for tar's incremental restore)
// into the directory it is, as GNU tar extracts it without --incremental.
func dumpDir(m *format.Meta) *format.Meta {
	d := *m
	d.Type, d.Typeflag, d.Size = format.TypeDir, 0, 0
	return &d
}

func (x *extractor) extract(i int, e format.Entry, m *format.Meta, comps []string, name string) error {
	parent, ok := x.walk.open(comps[:len(comps)-1], name)
	if !ok {
		return nil
	}
	base := comps[len(comps)-1]
	// Create first and look only when the name is taken: most names are
	// new, and a create with O_EXCL cannot be fooled by what appears
	// between a look and a create.
	done, exists, err := x.create(i, parent, base, name, e, m, false)
	if err != nil {
		return err
	}
	if exists {
		proceed, replace := x.clear(parent, base, name, m)
		if !proceed {
			return nil
		}
		if done, exists, err = x.create(i, parent, base, name, e, m, replace); err != nil {
			return err
		}
		if exists {
			x.report(Failed, name, "exists; not replaced: it appeared while being extracted")
			return nil
		}
	}
	if done {
		x.created[name] = true
		if m.Type != format.TypeRegular {
			x.counted(0)
		}
	}
	return nil
}

// clear decides what to do with a name that is taken: whether to go on,
// and whether a regular file is to be renamed over what is there. It
// removes what is in the way of other types, and reports what it keeps.
func (x *extractor) clear(parent int, base, name string, m *format.Meta) (proceed, replace bool) {
	cur, err := fstatAt(parent, base)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist), false
	}
	if m.Type == format.TypeDir && cur.isDir {
		// An existing directory is used as it is; only one this run made,
		// or --overwrite, gets the member's attributes.
		if x.created[name] || x.opt.Overwrite {
			x.adoptDir(parent, base, name, m, false)
		}
		return false, false
	}
	if !x.created[name] && !x.opt.Overwrite {
		x.report(Failed, name, "exists; not replaced (--overwrite replaces it)")
		return false, false
	}
	if cur.isDir {
		if err := unlinkAt(parent, base, true); err != nil {
			x.report(Failed, name, "a directory is in the way and cannot be removed: %v", err)
			return false, false
		}
		delete(x.dirMeta, name)
		delete(x.dirIDs, name)
		return true, false
	}
	if m.Type == format.TypeRegular {
		// Renamed over what is there once complete, so that a damaged
		// member leaves the old file in place.
		return true, true
	}
	if err := unlinkAt(parent, base, false); err != nil {
		x.report(Failed, name, "cannot remove the existing file: %v", err)
		return false, false
	}
	return true, false
}

// create makes the member's file at base in parent. exists says the name
// was taken (nothing was done); done false otherwise means the member was
// reported and not extracted. With replace, a regular file is renamed over
// what base holds.
func (x *extractor) create(i int, parent int, base, name string, e format.Entry, m *format.Meta, replace bool) (done, exists bool, err error) {
	taken := func(err error) bool { return errors.Is(err, fs.ErrExist) }
	switch m.Type {
	case format.TypeRegular:
		return x.writeFile(parent, base, name, e, m, false, false, replace)
	case format.TypeDir:
		if err := mkdirAt(parent, base, 0o700); err != nil {
			if taken(err) {
				return false, true, nil
			}
			x.report(Failed, name, "cannot create the directory: %v", err)
			return false, false, nil
		}
		x.created[name] = true
		x.adoptDir(parent, base, name, m, true)
	case format.TypeSymlink:
		if err := symlinkAt(m.Link, parent, base); err != nil {
			if taken(err) {
				return false, true, nil
			}
			x.report(Failed, name, "cannot create the symlink: %v", err)
			return false, false, nil
		}
		x.nodeAttrs(parent, base, name, m)
	case format.TypeHardlink:
		return x.hardlink(i, parent, base, name, m, replace)
	case format.TypeChar, format.TypeBlock, format.TypeFifo:
		if x.opt.NoDevices && m.Type != format.TypeFifo {
			x.report(Note, name, "%s skipped (--no-devices)", typeName(m.Type))
			return false, false, nil
		}
		if err := mknodAt(parent, base, m.Type, m.DevMajor, m.DevMinor); err != nil {
			if taken(err) {
				return false, true, nil
			}
			x.report(Failed, name, "cannot create the %s: %v", typeName(m.Type), err)
			return false, false, nil
		}
		x.nodeAttrs(parent, base, name, m)
	default:
		x.report(Failed, name, "a %s member is not a file; not extracted", m.Type)
		return false, false, nil
	}
	return true, false, nil
}

// owner returns the uid and gid to give a file, or false when owners are
// not restored.
func (x *extractor) owner(m *format.Meta) (uid, gid int, ok bool) {
	if !x.opt.SameOwner {
		return -1, -1, false
	}
	if m.UID > 1<<32-2 || m.GID > 1<<32-2 {
		return -1, -1, false
	}
	uid, gid = int(m.UID), int(m.GID)
	if !x.opt.NumericOwner {
		if id := x.names.uidOf(m.Uname); m.Uname != "" && id >= 0 {
			uid = int(id)
		}
		if id := x.names.gidOf(m.Gname); m.Gname != "" && id >= 0 {
			gid = int(id)
		}
	}
	return uid, gid, true
}

// mode is the mode to set. Set-id bits are kept only when the file ends
// up with the owner (or group) it was archived with: a setuid file owned
// by whoever runs extract instead would hand out their rights.
func (x *extractor) mode(m *format.Meta, owned bool) uint32 {
	mode := m.Mode & 0o7777
	if x.opt.NoSetID {
		mode &^= 0o4000
		if m.Type != format.TypeDir {
			mode &^= 0o2000
		}
	}
	if owned {
		return mode
	}
	if int64(x.euid) != int64(m.UID) {
		mode &^= 0o4000
	}
	if int64(x.egid) != int64(m.GID) && m.Type != format.TypeDir {
		mode &^= 0o2000
	}
	return mode
}

// nodeAttrs sets the owner, mode (unless a symlink) and times of a
// symlink, fifo or device node just created at base in parent. It acts
// through a descriptor of the node itself, checked to be the one created:
// whoever can write into the directory could have swapped the name for a
// symlink or a hard link to another file, and a change made by name would
// land on that file, with extract's privileges.
func (x *extractor) nodeAttrs(parent int, base, name string, m *format.Meta) {
	fd, err := openNodeAt(parent, base)
	if err != nil {
		x.report(Failed, name, "owner, mode and times not restored: cannot open the %s just created: %v", typeName(m.Type), err)
		return
	}
	defer closeFd(fd)
	st, err := fstatFd(fd)
	if err != nil {
		x.report(Failed, name, "owner, mode and times not restored: %v", err)
		return
	}
	if why := x.notCreated(st, m); why != "" {
		x.report(Failed, name, "replaced while being extracted (%s); its owner, mode and times were not set", why)
		return
	}
	owned := false
	if uid, gid, ok := x.owner(m); ok {
		if err := fchownNode(fd, uid, gid); err != nil {
			x.report(Failed, name, "owner not restored: %v", err)
		} else {
			owned = true
		}
	}
	if m.Type != format.TypeSymlink {
		if err := fchmodNode(fd, x.mode(m, owned)); err != nil {
			x.report(Failed, name, "mode not restored: %v", err)
		}
	}
	x.nodeXattrs(name, m)
	if err := futimesNode(fd, m.ATime, m.MTime); err != nil {
		x.report(Failed, name, "times not restored: %v", err)
	}
}

// notCreated says why the node st describes is not the one extract just
// made for m, or "" when it is: of m's type (and device number), owned by
// extract's effective user (no one else can create a node owned by it),
// and with no other name (a hard link to an existing file has two).
func (x *extractor) notCreated(st statInfo, m *format.Meta) string {
	want := map[format.Type]uint32{format.TypeSymlink: sIFLNK, format.TypeFifo: sIFIFO,
		format.TypeChar: sIFCHR, format.TypeBlock: sIFBLK, format.TypeDir: sIFDIR}[m.Type]
	switch {
	case st.fmt() != want:
		return "the name now holds another type of file"
	case int64(st.uid) != int64(x.euid):
		return fmt.Sprintf("the name now holds a file owned by uid %d", st.uid)
	case st.fmt() != sIFDIR && st.nlink != 1:
		return "the name now holds a file with other hard links"
	case (m.Type == format.TypeChar || m.Type == format.TypeBlock) && st.rdev != devNumber(m.DevMajor, m.DevMinor):
		return "the name now holds another device"
	}
	return ""
}

func (x *extractor) tmpName() string {
	x.tmpCount++
	return fmt.Sprintf("%s%d", x.tmpPrefix, x.tmpCount)
}

// fileSink writes a member's bytes to the file, remembering a write error
// apart from errors of the archive.
type fileSink struct {
	fd  int
	n   int64 // logical bytes received
	err error
}

func (s *fileSink) Write(p []byte) (int, error) {
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
func (x *extractor) writeFile(parent int, base, name string, e format.Entry, m *format.Meta, full, link, replace bool) (done, exists bool, err error) {
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
	j := &fileJob{e: e, name: name, parent: ref, base: base, target: target, replace: replace, fd: fd,
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
		if m, err = x.a.Meta(e); err != nil {
			if isDamage(err) {
				x.report(Damaged, name, "%v; not extracted", err)
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
			cerr = WriteContent(x.a, e, hw)
			werr, written = hw.err, hw.pos
			if cerr == nil && werr == nil {
				werr = ftruncate(fd, hw.pos)
			}
		} else {
			sink := &fileSink{fd: fd}
			cerr = WriteContent(x.a, e, sink)
			werr, written = sink.err, sink.n
		}
	case m.Sparse != nil:
		ew := &extentWriter{fd: fd, ext: m.Sparse}
		cerr = x.a.Content(e, ew)
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
		sink := &fileSink{fd: fd}
		cerr = x.a.Content(e, sink)
		werr, written = sink.err, sink.n
	}
	if werr != nil {
		x.setFatal(fmt.Errorf("%s: writing: %w", name, werr))
		return
	}
	if cerr != nil {
		if isDamage(cerr) {
			x.report(Damaged, name, "%v; not extracted", cerr)
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

// xattrPhase says when an attribute is set: most before the owner and
// mode, security.capability after chown (which clears it), POSIX ACLs
// after chmod (an access ACL holds the group and other bits a chmod would
// rewrite; a directory's default ACL waits until its contents are
// written, so that they do not inherit it).
type xattrPhase bool

const (
	xattrsEarly xattrPhase = false
	xattrsLate  xattrPhase = true
)

func lateXattr(name string) bool {
	return name == "security.capability" || name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

// setXattrs restores a file's extended attributes of one phase through
// fd, the descriptor of the very file extract created. user.* ones are
// restored always; the others (POSIX ACLs, capabilities, SELinux labels,
// trusted.*) only as root, and otherwise counted and named in the
// closing note: they could grant rights, and only root may set most.
// With NoSetID, capabilities are not restored either (a note), as
// set-id bits are not.
func (x *extractor) setXattrs(fd int, name string, m *format.Meta, phase xattrPhase) {
	for _, xa := range m.Xattrs {
		if lateXattr(xa.Name) != bool(phase) {
			continue
		}
		if !x.mayRestore(name, xa.Name) {
			continue
		}
		if err := fsetxattr(fd, xa.Name, xa.Value); err != nil {
			x.report(Failed, name, "extended attribute %q not restored: %v", xa.Name, err)
		}
	}
}

// mayRestore says whether extract restores the attribute named xname of
// member name, counting or reporting it when not.
func (x *extractor) mayRestore(name, xname string) bool {
	if strings.HasPrefix(xname, "user.") {
		return true
	}
	if x.euid != 0 {
		x.mu.Lock()
		x.otherXattrs++
		if len(x.otherNames) < 8 && !slices.Contains(x.otherNames, xname) {
			x.otherNames = append(x.otherNames, xname)
		}
		x.mu.Unlock()
		return false
	}
	if x.opt.NoSetID && xname == "security.capability" {
		x.report(Note, name, "file capabilities (security.capability) not restored (--no-setid)")
		return false
	}
	return true
}

// nodeXattrs reports the extended attributes of a symlink, fifo or
// device node, which extract cannot restore: it holds such a node only
// through an O_PATH descriptor, which fsetxattr and setxattrat refuse
// (EBADF), and it makes no call by name.
func (x *extractor) nodeXattrs(name string, m *format.Meta) {
	for _, xa := range m.Xattrs {
		if x.mayRestore(name, xa.Name) {
			x.report(Failed, name, "extended attribute %q not restored: a %s's attributes cannot be set through a descriptor of it, and extract makes no call by name", xa.Name, m.Type)
		}
	}
}

// adoptDir records the directory at base as this member's, to get its
// owner, mode and times at the end, and restores its xattrs now. fresh
// says this run just made it: it must then be owned by extract's user
// (no one else can make such a directory), else it was swapped. An
// existing directory keeps the identity it had when first seen.
func (x *extractor) adoptDir(parent int, base, name string, m *format.Meta, fresh bool) {
	fd, err := openDirAt(parent, base)
	if err != nil {
		x.report(Failed, name, "directory attributes not restored: %v", err)
		return
	}
	defer closeFd(fd)
	st, err := fstatFd(fd)
	if err != nil {
		x.report(Failed, name, "directory attributes not restored: %v", err)
		return
	}
	id := nodeID{st.dev, st.ino}
	if fresh {
		if why := x.notCreated(st, m); why != "" {
			x.report(Failed, name, "replaced while being extracted (%s); its attributes were not set", why)
			return
		}
		x.dirIDs[name] = id
	} else if old, ok := x.dirIDs[name]; !ok {
		x.dirIDs[name] = id // an existing directory taken over (--overwrite)
	} else if old != id {
		x.report(Failed, name, "replaced while being extracted; its attributes were not set")
		return
	}
	x.setXattrs(fd, name, m, xattrsEarly)
	x.dirMeta[name] = m
}

// hardlink links name to its target, which must have been extracted by
// this run. When the user selected paths that leave the target out, the
// target's content is extracted under the link's name instead.
func (x *extractor) hardlink(i int, parent int, base, name string, m *format.Meta, replace bool) (done, exists bool, err error) {
	tcomps, bad := splitMember(m.Link)
	if bad == "" && len(tcomps) == 0 {
		bad = "it is the destination directory"
	}
	if bad != "" {
		x.report(Rejected, name, "hard link target %q: %s; not extracted", m.Link, bad)
		return false, false, nil
	}
	target := strings.Join(tcomps, "/")
	x.wait(target)
	if !x.created[target] && len(x.sel) > 0 && !x.wouldSelect(target) {
		return x.materialize(i, parent, base, name, target, replace)
	}
	// The walk rejects a target reached through a symlink, whether or
	// not this run made it.
	tdir, ok := x.walk.openDetached(tcomps[:len(tcomps)-1], name)
	if !ok {
		return false, false, nil
	}
	defer closeFd(tdir)
	if !x.created[target] {
		x.report(Failed, name, "hard link target %q was not extracted; link not made", target)
		return false, false, nil
	}
	if err := linkAt(tdir, tcomps[len(tcomps)-1], parent, base); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, true, nil
		}
		x.report(Failed, name, "cannot link to %q: %v", target, err)
		return false, false, nil
	}
	return true, false, nil
}

func (x *extractor) wouldSelect(path string) bool {
	for _, s := range x.sel {
		if s.path == "" || path == s.path || strings.HasPrefix(path, s.path+"/") {
			return true
		}
	}
	return false
}

// materialize extracts the regular file a hard link points to under the
// link's own name.
func (x *extractor) materialize(i int, parent int, base, name, target string, replace bool) (done, exists bool, err error) {
	for j := i - 1; j >= 0; j-- {
		c, bad := splitMember(x.entries[j].Meta.Path)
		if bad != "" || strings.Join(c, "/") != target {
			continue
		}
		if x.entries[j].Meta.Type != format.TypeRegular {
			break
		}
		tm, err := x.a.Meta(x.entries[j])
		if err != nil {
			if isDamage(err) {
				x.report(Damaged, name, "hard link target %q: %v", target, err)
				return false, false, nil
			}
			return false, false, err
		}
		return x.writeFile(parent, base, name, x.entries[j], tm, true, true, replace)
	}
	x.report(Failed, name, "hard link target %q is not a file earlier in the archive; not extracted", target)
	return false, false, nil
}

// finishDirs sets the owner, mode and times of directories, deepest
// first, once nothing more is written into them.
func (x *extractor) finishDirs() error {
	names := make([]string, 0, len(x.dirMeta))
	for n := range x.dirMeta {
		names = append(names, n)
	}
	depth := func(s string) int { return strings.Count(s, "/") }
	slices.SortFunc(names, func(a, b string) int {
		if d := depth(b) - depth(a); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, name := range names {
		m := x.dirMeta[name]
		comps := strings.Split(name, "/")
		parent, ok := x.walk.open(comps[:len(comps)-1], name)
		if !ok {
			continue
		}
		base := comps[len(comps)-1]
		fd, err := openDirAt(parent, base)
		if err != nil {
			x.report(Failed, name, "directory attributes not restored: %v", err)
			continue
		}
		if st, err := fstatFd(fd); err != nil || (nodeID{st.dev, st.ino}) != x.dirIDs[name] {
			x.report(Failed, name, "replaced while being extracted; its owner, mode and times were not set")
			closeFd(fd)
			continue
		}
		x.ownerAndMode(fd, name, m)
		x.setXattrs(fd, name, m, xattrsLate)
		if err := futimesNode(fd, m.ATime, m.MTime); err != nil {
			x.report(Failed, name, "times not restored: %v", err)
		}
		closeFd(fd)
	}
	return nil
}

// dirWalker opens the directories a member's path goes through, one
// component at a time from the destination, never following a symlink.
// It keeps the last chain open: members come in tree order, so most share
// their parent with the one before.
type dirWalker struct {
	root  *dirRef
	x     *extractor
	names []string
	refs  []*dirRef
}

// dirRef is an open directory shared by the walk and the workers writing
// files in it; the last to let go closes it.
type dirRef struct {
	fd   int
	refs atomic.Int32
}

func newDirRef(fd int) *dirRef {
	d := &dirRef{fd: fd}
	d.refs.Store(1)
	return d
}

func (d *dirRef) acquire() { d.refs.Add(1) }

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 {
		closeFd(d.fd)
	}
}

func (w *dirWalker) close() {
	for _, r := range w.refs {
		r.release()
	}
	w.names, w.refs = nil, nil
}

// open returns the directory comps, creating missing ones, or reports why
// member cannot go there and returns false. The descriptor stays valid
// until the next call.
func (w *dirWalker) open(comps []string, member string) (int, bool) {
	k := 0
	for k < len(w.names) && k < len(comps) && w.names[k] == comps[k] {
		k++
	}
	for _, r := range w.refs[k:] {
		r.release()
	}
	w.names, w.refs = w.names[:k], w.refs[:k]
	for _, c := range comps[k:] {
		fd, ok := w.step(w.cur(), comps[:len(w.refs)+1], member, true)
		if !ok {
			return -1, false
		}
		w.names = append(w.names, c)
		w.refs = append(w.refs, newDirRef(fd))
	}
	return w.cur(), true
}

// refOf returns the shared reference of the descriptor open returned
// last: the top of the chain, or the destination.
func (w *dirWalker) refOf(fd int) *dirRef {
	if n := len(w.refs); n > 0 && w.refs[n-1].fd == fd {
		return w.refs[n-1]
	}
	return w.root
}

func (w *dirWalker) cur() int {
	if len(w.refs) == 0 {
		return w.root.fd
	}
	return w.refs[len(w.refs)-1].fd
}

// openDetached opens the directory comps without creating anything and
// without disturbing the cached chain; the caller closes it.
func (w *dirWalker) openDetached(comps []string, member string) (int, bool) {
	fd := w.root.fd
	for i := range comps {
		next, ok := w.step(fd, comps[:i+1], member, false)
		if fd != w.root.fd {
			closeFd(fd)
		}
		if !ok {
			return -1, false
		}
		fd = next
	}
	if fd == w.root.fd {
		fd, err := openDirAt(w.root.fd, ".")
		if err != nil {
			w.x.report(Failed, member, "cannot open the destination: %v", err)
			return -1, false
		}
		return fd, true
	}
	return fd, true
}

// step opens the last of comps inside dir.
func (w *dirWalker) step(dir int, comps []string, member string, create bool) (int, bool) {
	c := comps[len(comps)-1]
	path := strings.Join(comps, "/")
	fd, err := openDirAt(dir, c)
	if errors.Is(err, fs.ErrNotExist) && create {
		made := false
		if err = mkdirAt(dir, c, 0o777); err == nil || errors.Is(err, fs.ErrExist) {
			made = err == nil
			w.x.created[path] = true
			fd, err = openDirAt(dir, c)
		}
		if err == nil && made {
			// Recorded so that a directory member of this path later gets
			// its attributes only on this very directory.
			st, serr := fstatFd(fd)
			if serr == nil && int64(st.uid) != int64(w.x.euid) {
				serr = fmt.Errorf("replaced while being extracted by a directory owned by uid %d", st.uid)
			}
			if serr != nil {
				closeFd(fd)
				w.x.report(Failed, member, "%q: %v; not extracted", path, serr)
				return -1, false
			}
			w.x.dirIDs[path] = nodeID{st.dev, st.ino}
		}
	}
	if err == nil {
		return fd, true
	}
	st, serr := fstatAt(dir, c)
	switch {
	case serr == nil && st.isLink:
		w.x.report(Rejected, member, "its path goes through the symlink %q; not extracted", path)
	case serr == nil && !st.isDir:
		w.x.report(Failed, member, "%q is not a directory; not extracted", path)
	default:
		w.x.report(Failed, member, "cannot open the directory %q: %v; not extracted", path, err)
	}
	return -1, false
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
		if !(k == holeBlock && allZeros(chunk)) {
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

func allZeros(b []byte) bool {
	for len(b) >= len(zeros) {
		if !bytes.Equal(b[:len(zeros)], zeros[:]) {
			return false
		}
		b = b[len(zeros):]
	}
	return bytes.Equal(b, zeros[:len(b)])
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

// ownerAndMode restores an open file's or directory's owner (when the run
// may) and then its mode: after chown, which clears set-id bits.
func (x *extractor) ownerAndMode(fd int, name string, m *format.Meta) {
	owned := false
	if uid, gid, ok := x.owner(m); ok {
		if err := fchown(fd, uid, gid); err != nil {
			x.report(Failed, name, "owner not restored: %v", err)
		} else {
			owned = true
		}
	}
	if err := fchmod(fd, x.mode(m, owned)); err != nil {
		x.report(Failed, name, "mode not restored: %v", err)
	}
}

// typeName names a member type in a sentence.
func typeName(t format.Type) string {
	switch t {
	case format.TypeChar:
		return "character device"
	case format.TypeBlock:
		return "block device"
	}
	return t.String()
}
