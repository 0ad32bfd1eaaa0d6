package tree

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

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
func Extract(ctx context.Context, a *format.Archive, dest string, opt ExtractOptions) (ExtractStats, error) {
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
	items := make([]Item, len(entries))
	for i, e := range entries {
		items[i] = Item{Archive: a, Entry: e}
	}
	return ExtractItems(ctx, items, dest, opt)
}

// Item is a member to extract and the archive it is read from.
type Item struct {
	Archive *format.Archive
	Entry   format.Entry // the summary's record
	// LinkAs, set on a hard link, is the member (of the same archive) to
	// write under the link's name as a regular file instead of a link:
	// what a link becomes when its target is not the member it linked to.
	LinkAs *format.Entry
	// Where names the archive in messages about its damaged members.
	Where string
}

// ExtractItems is Extract of members that may come from several archives
// (the current tree of a file system, through its index), in the order
// given: a directory before what it holds, a hard link after its target.
// A hard link without LinkAs is made only to a member this run extracted;
// one whose target is left out is written from the member it points to
// in its own archive, found earlier among the items of that archive.
func ExtractItems(ctx context.Context, items []Item, dest string, opt ExtractOptions) (ExtractStats, error) {
	if !sysSupported {
		return ExtractStats{}, errUnsupported
	}
	if err := os.MkdirAll(dest, 0o777); err != nil {
		return ExtractStats{}, &DestError{Dest: dest, Err: err}
	}
	root, err := openRoot(dest)
	if err != nil {
		return ExtractStats{}, &DestError{Dest: dest, Err: err}
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	x := &extractor{items: items, opt: opt, names: newIDNames(),
		created: map[string]bool{}, dirMeta: map[string]*format.Meta{}, dirIDs: map[string]nodeID{},
		tmpPrefix: ".cbfs-" + hex.EncodeToString(rnd[:]) + "-",
		euid:      geteuid(), egid: getegid()}
	x.walk = &dirWalker{root: newDirRef(root), x: x}
	defer x.walk.root.release()
	defer x.walk.close()
	for _, it := range items {
		if it.Where != "" {
			if x.where == nil {
				x.where = map[*format.Archive]string{}
			}
			x.where[it.Archive] = it.Where
		}
	}
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
	x.ctx = ctx
	for i, it := range items {
		err := context.Cause(ctx)
		if err == nil {
			err = x.member(i, it.Entry)
		}
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
		x.report(Note, "", "%d extended %s outside the user namespace (%s) not restored: only root restores them", x.otherXattrs, map[bool]string{true: "attribute was", false: "attributes were"}[x.otherXattrs == 1], names)
	}
	return x.stats, nil
}

// DestError is a destination that cannot be made or opened: the
// destination's fault, not the archive's.
type DestError struct {
	Dest string
	Err  error
}

func (e *DestError) Error() string {
	err := e.Err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if pe.Path == e.Dest {
			err = pe.Err
		} else {
			err = fmt.Errorf("%s: %w", pe.Path, pe.Err)
		}
	}
	return fmt.Sprintf("destination %s: %v", e.Dest, err)
}

func (e *DestError) Unwrap() error { return e.Err }

type selector struct {
	arg, path string
	matched   bool
}

type extractor struct {
	strippedSlash bool            // the note about absolute names was given
	ctx           context.Context // cancelled: stop, and remove files not complete
	items         []Item
	where         map[*format.Archive]string // Item.Where of each archive
	opt           ExtractOptions
	names         *idNames
	walk          *dirWalker
	sel           []selector
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

// memberPath is where a member goes below the destination: as
// splitMember says, after leading '/' are removed from an absolute name,
// as GNU tar does (said once a run): the index and cat treat "/a" as "a",
// so extract writes the member they would serve.
func (x *extractor) memberPath(p []byte) ([]string, string) {
	if len(p) > 0 && p[0] == '/' {
		p = bytes.TrimLeft(p, "/")
		if !x.strippedSlash {
			x.strippedSlash = true
			x.report(Note, "", "removing leading '/' from member names")
		}
	}
	return splitMember(p)
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

func (x *extractor) member(i int, e format.Entry) error {
	sm := e.Meta
	switch sm.Type {
	case format.TypeTombstone, format.TypeTarGlobal, format.TypeTrailer, format.TypeReplaces:
		return nil // not files
	}
	comps, bad := x.memberPath(sm.Path)
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
		if m, err = x.items[i].Archive.Meta(e); err != nil {
			if format.IsDamage(err) {
				x.report(Damaged, name, "%s%v", x.in(x.items[i].Archive), err)
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
		return x.writeFile(x.items[i].Archive, parent, base, name, e, m, false, false, replace)
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
	if x.items[i].LinkAs != nil {
		return x.materialize(i, parent, base, name, target, replace)
	}
	x.wait(target)
	if !x.created[target] && len(x.sel) > 0 && !x.wouldSelect(target) {
		return x.materialize(i, parent, base, name, target, replace)
	}
	// The walk rejects a target reached through a symlink, whether or
	// not this run made it.
	tdir, ok := x.walk.openDetached(tcomps[:len(tcomps)-1], name, target)
	if !ok {
		return false, false, nil
	}
	defer closeFd(tdir)
	if !x.created[target] {
		if _, err := fstatAt(parent, base); err == nil {
			return false, true, nil // the link's own name is taken: said as such by the caller
		}
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
	a := x.items[i].Archive
	if la := x.items[i].LinkAs; la != nil {
		return x.writeFileOf(a, *la, parent, base, name, target, replace)
	}
	for j := i - 1; j >= 0; j-- {
		it := x.items[j]
		if it.Archive != a {
			continue
		}
		c, bad := splitMember(bytes.TrimLeft(it.Entry.Meta.Path, "/"))
		if bad != "" || strings.Join(c, "/") != target {
			continue
		}
		if it.Entry.Meta.Type != format.TypeRegular {
			break
		}
		return x.writeFileOf(a, it.Entry, parent, base, name, target, replace)
	}
	x.report(Failed, name, "hard link target %q is not a file earlier in the archive; not extracted", target)
	return false, false, nil
}

// in says which archive a damaged member is in, when the items come from
// several.
func (x *extractor) in(a *format.Archive) string {
	if w := x.where[a]; w != "" {
		return w + ": "
	}
	return ""
}

// writeFileOf writes the regular file member e of a under the name of the
// hard link being extracted.
func (x *extractor) writeFileOf(a *format.Archive, e format.Entry, parent int, base, name, target string, replace bool) (done, exists bool, err error) {
	tm, err := a.Meta(e)
	if err != nil {
		if format.IsDamage(err) {
			x.report(Damaged, name, "hard link target %q: %s%v", target, x.in(a), err)
			return false, false, nil
		}
		return false, false, err
	}
	return x.writeFile(a, parent, base, name, e, tm, true, true, replace)
}
