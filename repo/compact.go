package repo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/store"
)

// CompactOptions are the choices of one compaction (archive spec 7.7,
// index spec 2.8).
type CompactOptions struct {
	// Keys open the archives; the first seals the new ones.
	Keys []*crypt.Key
	// MinDead is the least dead share (0..1) of an archive to compact.
	MinDead float64
	// MaxSize caps a new archive's live bytes (0: the largest source's
	// size), except that a source is never split: one larger than it
	// gets an archive of its own.
	MaxSize int64
	// OutDir is where new archives go; "" for each group's first
	// source's directory.
	OutDir string
	// Remove deletes the replaced archives once the index is committed.
	Remove bool
	// DryRun picks and reports, and writes nothing.
	DryRun bool
}

// CompactSource is an archive compaction looked at.
type CompactSource struct {
	Archive     string `json:"archive"`
	Seq         uint64 `json:"seq"`
	Size        int64  `json:"size"`
	LiveMembers int    `json:"live_members"`
	LiveBytes   int64  `json:"live_bytes"`
	DeadBytes   int64  `json:"dead_bytes"`
	// Skipped says why an archive was left (or, for a retired archive,
	// kept).
	Skipped string `json:"skipped,omitempty"`
}

// CompactOutput is a new archive.
type CompactOutput struct {
	Archive  string   `json:"archive"`
	Seq      uint64   `json:"seq"`
	Members  int      `json:"members"`
	Size     int64    `json:"size"`
	Replaces []string `json:"replaces"`
	// Adopted is a compacted archive a killed run had written but not
	// added to the index: this run added it.
	Adopted bool `json:"adopted,omitempty"`
}

// CompactFailure is an archive that could not be read or compacted.
type CompactFailure struct {
	Archive string `json:"archive"`
	Error   string `json:"error"`
}

// CompactResult says what a compaction did (or, dry, would do).
type CompactResult struct {
	Picked  []CompactSource `json:"picked"`
	Skipped []CompactSource `json:"skipped"`
	Outputs []CompactOutput `json:"outputs"`
	// Retired are the archives given that the index leaves out: replaced
	// by a compacted archive, entirely dead. Removed are those this run
	// removed (--remove); Kept those it did not, and why.
	Retired []string        `json:"retired"`
	Removed []string        `json:"removed"`
	Kept    []CompactSource `json:"kept"`
	// RetiredBytes is the size of the archives retired by this run, less
	// that of the new archives: what removing them frees. RemovedBytes
	// is what this run freed by removing.
	RetiredBytes int64 `json:"reclaimable_bytes"`
	RemovedBytes int64 `json:"removed_bytes"`
	// Copied counts the member bytes copied.
	Copied int64            `json:"copied_bytes"`
	Failed []CompactFailure `json:"failed"`
	// Errs are the failures as errors, for the exit status.
	Errs []error `json:"-"`
}

func (r *CompactResult) fail(where string, err error) {
	r.Failed = append(r.Failed, CompactFailure{Archive: where, Error: err.Error()})
	r.Errs = append(r.Errs, err)
}

// compactHook lets tests stop a compaction at a named point (a kill).
var compactHook = func(point string) {}

type compactArchive struct {
	src  store.Source
	row  index.Archive
	size int64
	// live are the members the index serves, with their offsets.
	live map[uint32]int64
	// copy are the members to copy, in member order: the live ones, and
	// the file a live hard link points at when that is dead.
	copy    []uint32
	bytes   int64 // bytes of the members to copy
	dead    int64 // bytes of the members the index does not serve
	other   int64 // bytes of members that hold no path (not copied)
	blocked string
}

// Compact copies the members the index still serves out of archives
// that are mostly dead into new archives of the same sequence number,
// each of which records the archives it replaces, and adds them to the
// index, which then leaves the replaced archives out (index spec 2.8).
// u holds the index's lock from the first read to the last write. Every
// step leaves a state in which the index and a rebuild serve the same
// content: a new archive is complete before its name exists and is
// verified before the index takes it; it replaces only archives whose
// every served member it holds; the index is replaced atomically; a
// source is removed only after that, and only while an archive that
// replaces it is there and verifies. A run killed anywhere is finished by
// running it again: the new archives a killed run wrote (a journal beside
// the index names them) are added first. Archives that cannot be read or
// copied are named in the result and left; the error is for what stops
// the whole run.
func Compact(ctx context.Context, u *IndexUpdate, args []string, opt CompactOptions) (*CompactResult, error) {
	if len(opt.Keys) == 0 {
		return nil, errors.New("compact: no key")
	}
	key := opt.Keys[0]
	if u.remote != nil {
		return nil, fmt.Errorf("index %s: compaction updates a local index only", u.Path)
	}
	if u.Index == nil {
		return nil, &NoIndexError{Index: u.Path}
	}
	for _, a := range args {
		if store.IsURL(a) {
			return nil, fmt.Errorf("%s: compaction works on local archives only", a)
		}
	}
	srcs, _, err := ArchiveSourcesContext(ctx, args)
	if err != nil {
		return nil, err
	}
	if opt.OutDir != "" {
		if st, err := os.Stat(opt.OutDir); err != nil {
			return nil, fmt.Errorf("output directory: %w", err)
		} else if !st.IsDir() {
			return nil, fmt.Errorf("output directory %s: not a directory", opt.OutDir)
		}
	}
	res := &CompactResult{Picked: []CompactSource{}, Skipped: []CompactSource{}, Outputs: []CompactOutput{},
		Retired: []string{}, Removed: []string{}, Kept: []CompactSource{}, Failed: []CompactFailure{}}
	j := journal{path: JournalPath(u.Path)}

	// A killed run may have left complete new archives the index does
	// not list yet: add them first, as the run would have.
	adopted, err := adoptOrphans(ctx, u, srcs, j, opt)
	if err != nil {
		return res, err
	}
	res.Outputs = append(res.Outputs, adopted...)
	if !opt.DryRun {
		cleanTemps(srcs, opt)
	}

	x := u.Index
	byName := map[string][]store.Source{}
	for _, s := range srcs {
		byName[s.Name] = append(byName[s.Name], s)
	}
	inTable := map[string]bool{}
	rows := make([]*compactArchive, len(x.Archives))
	for i, a := range x.Archives {
		inTable[a.Name] = true
		if _, ok := byName[a.Name]; ok {
			rows[i] = &compactArchive{row: a, live: map[uint32]int64{}}
		}
	}
	// What is given and not in the table is named: retired ones are
	// dealt with at the end.
	retiredIDs := RetiredIDs(x.Archives)
	for _, s := range srcs {
		if inTable[s.Name] {
			continue
		}
		h, err := readHeader(s, opt.Keys)
		switch {
		case err != nil:
			res.fail(s.Location(), err)
		case !retiredIDs[h.ID]:
			res.Skipped = append(res.Skipped, CompactSource{Archive: s.Location(), Seq: h.Sequence,
				Skipped: "not in the index (written without --index, or renamed)"})
		}
	}
	// One pass over the records: what each archive given still serves.
	it := x.Records(nil)
	for it.Next() {
		rec := it.Record()
		for _, e := range rec.Entries {
			c := rows[e.Archive]
			if c == nil {
				continue
			}
			if len(rec.Entries) > 1 && c.blocked == "" {
				c.blocked = fmt.Sprintf("holds a conflicted path (%q): settle the conflict first", rec.Path)
			}
			c.live[e.Member] = e.Offset
		}
	}
	if err := it.Err(); err != nil {
		return res, fmt.Errorf("index %s: %w", u.Path, err)
	}
	var picked []*compactArchive
	for _, c := range rows {
		if c == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, context.Cause(ctx)
		}
		cs, ok := c.measure(byName[c.row.Name], opt.Keys, res)
		if !ok {
			continue
		}
		// Archives with nothing dead are never rewritten, whatever
		// --min-dead says.
		if c.dead == 0 || float64(c.dead) < opt.MinDead*float64(c.dead+c.bytes+c.other) {
			continue
		}
		if c.blocked != "" {
			cs.Skipped = c.blocked
			res.Skipped = append(res.Skipped, cs)
			continue
		}
		res.Picked = append(res.Picked, cs)
		picked = append(picked, c)
	}
	groups := planCompaction(picked, opt.MaxSize)
	if opt.DryRun {
		for _, g := range groups {
			out := CompactOutput{Seq: g.seq, Members: g.members()}
			for _, c := range g.srcs {
				out.Replaces = append(out.Replaces, c.src.Location())
				res.RetiredBytes += c.size
				res.Copied += c.bytes
			}
			// An estimate: the bytes copied, and the first source's bytes
			// that are not members (header, summary, footer).
			out.Size = g.liveBytes() + g.srcs[0].size - g.srcs[0].bytes - g.srcs[0].dead - g.srcs[0].other
			res.RetiredBytes -= out.Size
			res.Outputs = append(res.Outputs, out)
		}
		return res, retire(ctx, u, srcs, opt, res, nil)
	}
	compactHook("picked")
	var written []string
	for _, g := range groups {
		out, path, err := writeCompacted(ctx, g, key, j, opt)
		if err == nil {
			// Checked as verify -k checks it before anything relies on
			// it: the sources are retired from the index update on.
			err = verifyCompacted(ctx, path, key)
		}
		if err != nil {
			if ctx.Err() != nil {
				return res, context.Cause(ctx)
			}
			var names []string
			for _, c := range g.srcs {
				names = append(names, c.src.Location())
			}
			res.fail(strings.Join(names, ", "), err)
			continue
		}
		compactHook("output-written")
		written = append(written, path)
		res.Outputs = append(res.Outputs, *out)
		for _, c := range g.srcs {
			res.RetiredBytes += c.size
			res.Copied += c.bytes
		}
		res.RetiredBytes -= out.Size
	}
	if len(written) > 0 {
		if _, err := u.AddArchiveFiles(written); err != nil {
			return res, err
		}
	}
	compactHook("index-updated")
	j.remove()
	return res, retire(ctx, u, srcs, opt, res, written)
}

// measure reads the summary of the archive of c's row among cands (by
// id: another archive may have its name) and counts what is served,
// what must be copied and what is dead. It names what it cannot read.
func (c *compactArchive) measure(cands []store.Source, keys []*crypt.Key, res *CompactResult) (CompactSource, bool) {
	var a *format.Archive
	var entries []format.Entry
	for _, s := range cands {
		sa, es, closer, err := OpenSummary(s, keys...)
		if err != nil {
			res.fail(s.Location(), err)
			continue
		}
		closer.Close()
		if sa.Header.ID != c.row.ID {
			res.Skipped = append(res.Skipped, CompactSource{Archive: s.Location(), Seq: sa.Header.Sequence,
				Skipped: fmt.Sprintf("another archive (id %x) than the index's %s (id %x)", sa.Header.ID, c.row.Name, c.row.ID)})
			continue
		}
		c.src, a, entries = s, sa, es
		break
	}
	if a == nil {
		return CompactSource{}, false
	}
	c.size = sizeOf(c.src)
	copySet := map[uint32]bool{}
	for n := range c.live {
		copySet[n] = true
		if int(n) >= len(entries) {
			res.fail(c.src.Location(), fmt.Errorf("the index names member %d, the archive has %d", n, len(entries)))
			return CompactSource{}, false
		}
		e := entries[n]
		// A hard link exports as a link, or as the file it points at
		// in its own archive: that member goes along, live or not.
		if e.Meta.Type == format.TypeHardlink {
			if target, err := index.CanonicalPath(e.Meta.Link); err == nil {
				if t, ok := lastBefore(entries, target, n); ok {
					copySet[t.Number] = true
				}
			}
		}
	}
	cs := CompactSource{Archive: c.src.Location(), Seq: c.row.Seq, Size: c.size, LiveMembers: len(c.live)}
	var liveOther int64
	for _, e := range entries {
		span := a.Header.PhysSpan(e.Offset, e.Length)
		switch {
		case copySet[e.Number]:
			c.copy = append(c.copy, e.Number)
			c.bytes += span
			if _, ok := c.live[e.Number]; ok {
				cs.LiveBytes += span
			}
		case e.Meta.Type == format.TypeReplaces:
			// A compacted archive's own record: not dead data.
		case !index.Indexed(e.Meta.Type):
			// An imported tar's trailer and pax globals: no path of the
			// file system, so nothing the index serves, and not copied;
			// counted as gc counts them, live, so that the dead share
			// is gc's.
			cs.LiveBytes += span
			liveOther += span
		default:
			c.dead += span
		}
	}
	cs.DeadBytes = c.dead
	c.other = liveOther
	return cs, true
}

// verifyCompacted checks a new archive as verify -k does; one that fails is
// removed.
func verifyCompacted(ctx context.Context, path string, key *crypt.Key) error {
	vr, err := Verify(ctx, []store.Source{store.File(path)}, VerifyOptions{Keys: []*crypt.Key{key}, Jobs: 1})
	if err == nil && vr[0].Status == StatusOK {
		return nil
	}
	os.Remove(path)
	if err == nil {
		if err = vr[0].Err; err == nil && len(vr[0].Problems) > 0 {
			err = vr[0].Problems[0]
		}
	}
	return fmt.Errorf("%s: the new archive does not verify (%v): removed; its sources are left as they were", path, err)
}

// retire lists the archives given that the index now leaves out (by id:
// a name alone proves nothing), and removes them if asked: each only
// while an archive that replaces it is among those given (or just
// written) and verifies with the key.
func retire(ctx context.Context, u *IndexUpdate, srcs []store.Source, opt CompactOptions, res *CompactResult, written []string) error {
	replacers := map[[crypt.IDSize]byte][]index.Archive{}
	inTable := map[string]bool{}
	for _, a := range u.Index.Archives {
		inTable[a.Name] = true
		for _, r := range a.Replaces {
			replacers[r.ID] = append(replacers[r.ID], a)
		}
	}
	if len(replacers) == 0 {
		return nil
	}
	files := map[string][]store.Source{}
	for _, s := range srcs {
		files[s.Name] = append(files[s.Name], s)
	}
	fresh := map[string]bool{}
	for _, w := range written {
		files[filepath.Base(w)] = append(files[filepath.Base(w)], store.File(w))
		fresh[w] = true
	}
	verified := map[string]error{}
	// good says whether the archive of row r is there and verifies.
	good := func(r index.Archive) error {
		if err, done := verified[r.Name]; done {
			return err
		}
		err := fmt.Errorf("%s, which replaces it, is not among the archives given", r.Name)
		for _, s := range files[r.Name] {
			h, herr := readHeader(s, opt.Keys)
			if herr != nil || h.ID != r.ID {
				continue
			}
			if fresh[s.Where] {
				err = nil // verified as it was written
				break
			}
			vr, verr := Verify(ctx, []store.Source{s}, VerifyOptions{Keys: opt.Keys, Jobs: 1})
			if verr == nil && vr[0].Status == StatusOK {
				err = nil
				break
			}
			err = fmt.Errorf("%s, which replaces it, does not verify", s.Location())
		}
		verified[r.Name] = err
		return err
	}
	for _, s := range srcs {
		if inTable[s.Name] {
			continue
		}
		h, err := readHeader(s, opt.Keys)
		if err != nil || replacers[h.ID] == nil {
			continue
		}
		res.Retired = append(res.Retired, s.Location())
		if !opt.Remove {
			continue
		}
		var why error
		for _, r := range replacers[h.ID] {
			if why = good(r); why == nil {
				break
			}
		}
		if why != nil {
			res.Kept = append(res.Kept, CompactSource{Archive: s.Location(), Seq: h.Sequence, Skipped: "kept: " + why.Error()})
			continue
		}
		if opt.DryRun {
			continue
		}
		size := sizeOf(s)
		if err := os.Remove(s.Where); err != nil {
			res.fail(s.Location(), fmt.Errorf("removing it: %w", errors.Unwrap(err)))
			continue
		}
		if err := store.SyncDir(filepath.Dir(s.Where)); err != nil {
			return err
		}
		res.Removed = append(res.Removed, s.Location())
		res.RemovedBytes += size
		compactHook("removed")
	}
	return nil
}

// compactGroup is the sources of one new archive: one sequence number,
// whole sources only.
type compactGroup struct {
	seq  uint64
	srcs []*compactArchive
}

func (g *compactGroup) members() int {
	n := 0
	for _, c := range g.srcs {
		n += len(c.copy)
	}
	return n
}

func (g *compactGroup) liveBytes() int64 {
	var n int64
	for _, c := range g.srcs {
		n += c.bytes
	}
	return n
}

// planCompaction cuts the picked archives into new archives: by sequence
// number (a copy keeps its sequence number, so compaction takes none and
// no later archive can lose to a copy), whole sources in name order up to
// maxSize live bytes. An archive with nothing live joins a new archive of
// the same or a higher sequence number (it only needs to be listed), or
// else one of its own.
func planCompaction(picked []*compactArchive, maxSize int64) []*compactGroup {
	if maxSize <= 0 {
		for _, c := range picked {
			maxSize = max(maxSize, c.size)
		}
	}
	bySeq := map[uint64][]*compactArchive{}
	var empty []*compactArchive
	for _, c := range picked {
		if len(c.copy) == 0 {
			empty = append(empty, c)
			continue
		}
		bySeq[c.row.Seq] = append(bySeq[c.row.Seq], c)
	}
	seqs := make([]uint64, 0, len(bySeq))
	for s := range bySeq {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	var groups []*compactGroup
	for _, s := range seqs {
		var g *compactGroup
		for _, c := range bySeq[s] {
			if g == nil || g.liveBytes()+c.bytes > maxSize {
				g = &compactGroup{seq: s}
				groups = append(groups, g)
			}
			g.srcs = append(g.srcs, c)
		}
	}
	var alone *compactGroup
	for _, c := range empty {
		i, _ := slices.BinarySearchFunc(groups, c.row.Seq, func(g *compactGroup, s uint64) int { return cmp.Compare(g.seq, s) })
		if i < len(groups) {
			groups[i].srcs = append(groups[i].srcs, c)
			continue
		}
		if alone == nil {
			alone = &compactGroup{}
		}
		alone.seq = max(alone.seq, c.row.Seq)
		alone.srcs = append(alone.srcs, c)
	}
	if alone != nil {
		groups = append(groups, alone)
	}
	return groups
}

// compactName is a new archive's file name: its first source's, less a
// compaction suffix it already had, then ".c" and the first 8 hex digits
// of the new archive id.
func compactName(src string, id [crypt.IDSize]byte) string {
	base := filepath.Base(src)
	ext := ""
	if e := filepath.Ext(base); e == ".cbfs" {
		ext, base = e, strings.TrimSuffix(base, e)
	}
	if i := strings.LastIndex(base, ".c"); i >= 0 && len(base)-i == 10 {
		if _, err := hex.DecodeString(base[i+2:]); err == nil {
			base = base[:i]
		}
	}
	return base + ".c" + hex.EncodeToString(id[:4]) + ext
}

// writeCompacted writes one new archive: its replaces record, then every
// served member of its sources, source by source in member order, each
// re-sealed frame by frame. The file appears complete or not at all.
func writeCompacted(ctx context.Context, g *compactGroup, key *crypt.Key, j journal, opt CompactOptions) (*CompactOutput, string, error) {
	var id [crypt.IDSize]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, "", err
	}
	var reps []format.Replaced
	for _, c := range g.srcs {
		reps = append(reps, format.Replaced{ID: c.row.ID, Seq: c.row.Seq})
		// A compacted source's own list goes on: were it removed, the
		// archives it replaced must stay left out.
		reps = append(reps, c.row.Replaces...)
	}
	slices.SortFunc(reps, func(a, b format.Replaced) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	reps = slices.CompactFunc(reps, func(a, b format.Replaced) bool { return a.ID == b.ID })

	// The chunk and record sizes are the first source's with members;
	// the sources are read one at a time.
	var first *format.Archive
	for _, c := range g.srcs {
		if len(c.copy) == 0 {
			continue
		}
		a, closer, err := openHeader(c.src, opt.Keys)
		if err != nil {
			return nil, "", err
		}
		first = a
		closer.Close()
		break
	}
	dir := opt.OutDir
	if dir == "" {
		dir = filepath.Dir(g.srcs[0].src.Where)
	}
	name := compactName(g.srcs[0].src.Name, id)
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return nil, "", err
	}
	// Named in the journal before it can exist: a run killed after its
	// rename and before the index update is finished by the next one,
	// wherever -o pointed.
	if err := j.add(path); err != nil {
		return nil, "", err
	}
	f, err := store.CreateAtomic(path, false)
	if err != nil {
		return nil, "", err
	}
	f.AbortOn(ctx)
	wopt := format.WriterOptions{Sequence: g.seq, Compress: true, Rand: bytes.NewReader(id[:]), Replaces: reps}
	if first != nil {
		wopt.ChunkSize, wopt.RecordSize = int(first.Header.ChunkSize), int(first.Header.RecordSize)
	}
	w, err := format.NewWriter(f, key, wopt)
	if err != nil {
		f.Abort()
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	fail := func(err error) (*CompactOutput, string, error) {
		w.Abort(err)
		f.Abort()
		return nil, "", err
	}
	members := 0
	for _, c := range g.srcs {
		if len(c.copy) == 0 {
			continue
		}
		n, err := copyLive(w, c, opt.Keys)
		members += n
		if err != nil {
			return fail(err)
		}
		if err := ctx.Err(); err != nil {
			return fail(context.Cause(ctx))
		}
	}
	if err := w.Close(); err != nil {
		f.Abort()
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	if err := f.Commit(); err != nil {
		return nil, "", err
	}
	out := &CompactOutput{Archive: path, Seq: g.seq, Members: members, Size: size}
	for _, c := range g.srcs {
		out.Replaces = append(out.Replaces, c.src.Location())
	}
	return out, path, nil
}

// copyLive copies into w the members of c to copy, in member order:
// reads run forward through the archive.
func copyLive(w *format.Writer, c *compactArchive, keys []*crypt.Key) (int, error) {
	// Through a block cache: a member is read as several small reads
	// (frame headers, payloads), which large blocks serve.
	a, entries, closer, err := openSummaryVia(c.src, format.NewBlockCache(4), keys...)
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if a.Header.ID != c.row.ID {
		return 0, fmt.Errorf("%s: another archive (id %x) than the one measured", c.src.Location(), a.Header.ID)
	}
	for k, n := range c.copy {
		if int(n) >= len(entries) {
			return k, fmt.Errorf("%s: the index names member %d, the archive has %d", c.src.Location(), n, len(entries))
		}
		e := entries[n]
		if off, ok := c.live[n]; ok && a.PhysOffset(e.Offset) != off {
			return k, fmt.Errorf("%s: member %d is at offset %d, the index says %d: the index does not describe this archive", c.src.Location(), n, a.PhysOffset(e.Offset), off)
		}
		if _, err := w.CopyMember(a, e); err != nil {
			return k, fmt.Errorf("%s: %w", c.src.Location(), err)
		}
	}
	return len(c.copy), nil
}

// openHeader opens an archive (header and footer).
func openHeader(s store.Source, keys []*crypt.Key) (*format.Archive, io.Closer, error) {
	obj, err := s.Open()
	if err != nil {
		return nil, nil, locErr(s, err)
	}
	a, err := format.OpenArchive(obj, keys...)
	if err != nil {
		obj.Close()
		return nil, nil, locErr(s, err)
	}
	return a, obj, nil
}

// readHeader reads an archive's authenticated header.
func readHeader(s store.Source, keys []*crypt.Key) (*format.Header, error) {
	a, closer, err := openHeader(s, keys)
	if err != nil {
		return nil, err
	}
	closer.Close()
	return a.Header, nil
}

func sizeOf(s store.Source) int64 {
	obj, err := s.Open()
	if err != nil {
		return 0
	}
	defer obj.Close()
	return obj.Size()
}

// JournalPath is the compaction journal of the index at path: the new
// archives a compaction is writing, named before each exists.
func JournalPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".compacting")
}

type journal struct{ path string }

// add appends p and syncs.
func (j journal) add(p string) error {
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("compaction journal: %w", err)
	}
	_, err = f.WriteString(p + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("compaction journal %s: %w", j.path, err)
	}
	return nil
}

func (j journal) paths() []string {
	b, err := os.ReadFile(j.path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func (j journal) remove() { os.Remove(j.path) }

// adoptOrphans adds to the index the compacted archives a killed run
// wrote and did not add: those its journal names, and any found among
// the sources and in OutDir, when the archives they replace are in the
// index. Dry, it only says what it would add.
func adoptOrphans(ctx context.Context, u *IndexUpdate, srcs []store.Source, j journal, opt CompactOptions) ([]CompactOutput, error) {
	known := map[string]bool{}
	ids := map[[crypt.IDSize]byte]bool{}
	for _, a := range u.Index.Archives {
		known[a.Name] = true
		ids[a.ID] = true
	}
	cands := slices.Clone(srcs)
	for _, p := range j.paths() {
		cands = append(cands, store.File(p))
	}
	if opt.OutDir != "" {
		if files, _, err := ListArchiveDir(opt.OutDir); err == nil {
			for _, f := range files {
				cands = append(cands, store.File(f))
			}
		}
	}
	var adopt []string
	var outs []CompactOutput
	seen := map[string]bool{}
	for _, s := range cands {
		if known[s.Name] || seen[s.Name] {
			continue
		}
		if _, err := os.Stat(s.Where); err != nil {
			continue
		}
		seen[s.Name] = true
		a, entries, closer, err := OpenSummary(s, opt.Keys...)
		if err != nil {
			continue // named, if it was given, where the sources are
		}
		closer.Close()
		if len(entries) == 0 || entries[0].Meta.Type != format.TypeReplaces {
			continue
		}
		mine := false
		var names []string
		for _, r := range entries[0].Meta.Replaces {
			name := fmt.Sprintf("id %x", r.ID)
			for _, row := range u.Index.Archives {
				if row.ID == r.ID {
					mine, name = true, row.Name
				}
			}
			names = append(names, name)
		}
		if !mine {
			continue
		}
		// Complete as the killed run left it, but checked all the same.
		if err := verifyCompacted(ctx, s.Where, opt.Keys[0]); err != nil {
			return nil, err
		}
		adopt = append(adopt, s.Where)
		outs = append(outs, CompactOutput{Archive: s.Location(), Seq: a.Header.Sequence, Members: len(entries) - 1, Size: sizeOf(s), Replaces: names, Adopted: true})
	}
	if len(adopt) == 0 || opt.DryRun {
		return outs, nil
	}
	if _, err := u.AddArchiveFiles(adopt); err != nil {
		return nil, err
	}
	j.remove()
	return outs, nil
}

// cleanTemps removes the temporary files of new archives that a killed
// compaction left (".NAME.cHHHHHHHH.cbfs.tmp-N"): the lock is held, so no
// compaction is writing them.
func cleanTemps(srcs []store.Source, opt CompactOptions) {
	dirs := map[string]bool{}
	if opt.OutDir != "" {
		dirs[opt.OutDir] = true
	}
	for _, s := range srcs {
		dirs[filepath.Dir(s.Where)] = true
	}
	for d := range dirs {
		ms, _ := filepath.Glob(filepath.Join(d, ".*.c[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]*.tmp-*"))
		for _, m := range ms {
			os.Remove(m)
		}
	}
}
