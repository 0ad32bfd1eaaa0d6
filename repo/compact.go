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
	// Skipped says why an archive with enough dead space was left.
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

// CompactResult says what a compaction did (or, dry, would do).
type CompactResult struct {
	Picked  []CompactSource `json:"picked"`
	Skipped []CompactSource `json:"skipped"`
	Outputs []CompactOutput `json:"outputs"`
	// Retired are the archives of the directories given that the index
	// now leaves out: replaced by a compacted archive, entirely dead.
	// They may be removed; Removed are those this run removed.
	Retired []string `json:"retired"`
	Removed []string `json:"removed"`
	// Reclaimed is the picked archives' bytes less the new archives'.
	Reclaimed int64 `json:"reclaimed_bytes"`
	// Copied counts the live member bytes copied.
	Copied int64 `json:"copied_bytes"`
}

// compactHook lets tests stop a compaction at a named point (a kill).
var compactHook = func(point string) {}

// liveMember is one candidate of an archive the index serves.
type liveMember struct {
	member uint32
	off    int64
}

type compactArchive struct {
	src   store.Source
	row   index.Archive
	size  int64
	live  []liveMember
	bytes int64 // live spans
	// memberBytes are the bytes of all its members.
	memberBytes int64
	blocked     string
}

// Compact copies the members the index still serves out of archives
// that are mostly dead into new archives of the same sequence number,
// each of which records the archives it replaces, and adds them to the
// index, which then leaves the replaced archives out (index spec 2.8).
// u holds the index's lock from the first read to the last write. Every step
// leaves a state in which the index and a rebuild serve the same content:
// a new archive is complete before its name exists; it replaces only
// archives whose every served member it holds; the index is replaced
// atomically; the sources are removed only after that. A run killed
// anywhere is finished by running it again (a new archive found beside
// the sources but missing from the index is added first).
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
		if st, err := os.Stat(opt.OutDir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("output directory %s: not a directory", opt.OutDir)
		}
	}
	res := &CompactResult{Picked: []CompactSource{}, Skipped: []CompactSource{}, Outputs: []CompactOutput{}, Retired: []string{}, Removed: []string{}}

	// A killed run may have left complete new archives the index does
	// not list yet: add them first, as the run would have.
	if !opt.DryRun {
		adopted, err := adoptOrphans(ctx, u, srcs, opt)
		if err != nil {
			return nil, err
		}
		res.Outputs = append(res.Outputs, adopted...)
	}

	byName := map[string]*compactArchive{}
	for _, s := range srcs {
		if _, dup := byName[s.Name]; !dup {
			byName[s.Name] = &compactArchive{src: s}
		}
	}
	x := u.Index
	rows := make([]*compactArchive, len(x.Archives))
	for i, a := range x.Archives {
		if c, ok := byName[a.Name]; ok {
			c.row = a
			rows[i] = c
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
			c.live = append(c.live, liveMember{member: e.Member, off: e.Offset})
			c.bytes += e.Span
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("index %s: %w", u.Path, err)
	}
	var picked []*compactArchive
	for i, c := range rows {
		if c == nil {
			continue
		}
		// The dead share is gc's: of the members' bytes, those the index
		// no longer serves (header, summary and footer count in neither).
		obj, err := c.src.Open()
		if err != nil {
			return nil, locErr(c.src, err)
		}
		a, err := format.OpenArchive(obj, opt.Keys...)
		c.size = obj.Size()
		if err != nil {
			obj.Close()
			return nil, locErr(c.src, err)
		}
		if a.Header.ID != x.Archives[i].ID {
			obj.Close()
			res.Skipped = append(res.Skipped, CompactSource{Archive: c.src.Location(), Seq: x.Archives[i].Seq, Size: c.size,
				Skipped: fmt.Sprintf("its archive id is %x, the index has %x under that name", a.Header.ID, x.Archives[i].ID)})
			continue
		}
		var memberBytes int64
		if so := int64(a.Footer.SummaryOffset); so > 0 {
			memberBytes = a.Header.PhysSpan(0, so)
		}
		obj.Close()
		c.memberBytes = memberBytes
		if memberBytes == 0 {
			continue // no member: nothing to copy or to reclaim
		}
		dead := 1.0
		if memberBytes > 0 {
			dead = 1 - float64(c.bytes)/float64(memberBytes)
		}
		cs := CompactSource{Archive: c.src.Location(), Seq: x.Archives[i].Seq, Size: c.size, LiveMembers: len(c.live), LiveBytes: c.bytes}
		if dead < opt.MinDead {
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
				res.Reclaimed += c.size
				res.Copied += c.bytes
			}
			// An estimate: the live bytes, and the first source's bytes
			// that are not members (header, summary, footer).
			out.Size = g.liveBytes() + g.srcs[0].size - g.srcs[0].memberBytes
			res.Reclaimed -= out.Size
			res.Outputs = append(res.Outputs, out)
		}
		return res, nil
	}
	compactHook("picked")
	var written []string
	for _, g := range groups {
		out, path, err := writeCompacted(ctx, g, key, opt)
		if err != nil {
			return nil, err
		}
		// Checked as verify -k checks it before anything relies on it:
		// the sources are retired from the index update on.
		if vr, err := Verify(ctx, []store.Source{store.File(path)}, VerifyOptions{Keys: []*crypt.Key{key}, Jobs: 1}); err != nil || vr[0].Status != StatusOK {
			os.Remove(path)
			if err == nil {
				err = vr[0].Err
				if err == nil && len(vr[0].Problems) > 0 {
					err = vr[0].Problems[0]
				}
			}
			return nil, fmt.Errorf("%s: the new archive does not verify (%v): removed; the index and the sources are as they were", path, err)
		}
		compactHook("output-written")
		written = append(written, path)
		res.Outputs = append(res.Outputs, *out)
		for _, c := range g.srcs {
			res.Reclaimed += c.size
			res.Copied += c.bytes
		}
		res.Reclaimed -= out.Size
	}
	if len(written) > 0 {
		if _, err := u.AddArchiveFiles(written); err != nil {
			return nil, err
		}
	}
	compactHook("index-updated")
	return res, retire(u, srcs, opt, res)
}

// retire lists the archives given that the index now leaves out (by id:
// a name alone proves nothing), and removes them if asked.
func retire(u *IndexUpdate, srcs []store.Source, opt CompactOptions, res *CompactResult) error {
	retired := map[[crypt.IDSize]byte]bool{}
	if u.Index != nil {
		for _, a := range u.Index.Archives {
			for _, r := range a.Replaces {
				retired[r.ID] = true
			}
		}
	}
	if len(retired) == 0 {
		return nil
	}
	inTable := map[string]bool{}
	for _, a := range u.Index.Archives {
		inTable[a.Name] = true
	}
	for _, s := range srcs {
		if inTable[s.Name] {
			continue
		}
		h, err := readHeader(s, opt.Keys)
		if err != nil || !retired[h.ID] {
			continue
		}
		res.Retired = append(res.Retired, s.Location())
		if !opt.Remove {
			continue
		}
		if err := os.Remove(s.Where); err != nil {
			return fmt.Errorf("removing %s: %w", s.Location(), err)
		}
		if err := store.SyncDir(filepath.Dir(s.Where)); err != nil {
			return err
		}
		res.Removed = append(res.Removed, s.Location())
		compactHook("removed")
	}
	return nil
}

// copyLive copies into w the members of c the index serves, in member
// order: reads run forward through the archive.
func copyLive(w *format.Writer, c *compactArchive, keys []*crypt.Key) (int, error) {
	a, entries, closer, err := OpenSummary(c.src, keys...)
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	slices.SortFunc(c.live, func(a, b liveMember) int { return cmp.Compare(a.member, b.member) })
	for k, lm := range c.live {
		if int(lm.member) >= len(entries) {
			return k, fmt.Errorf("%s: the index names member %d, the archive has %d", c.src.Location(), lm.member, len(entries))
		}
		e := entries[lm.member]
		if a.PhysOffset(e.Offset) != lm.off {
			return k, fmt.Errorf("%s: member %d is at offset %d, the index says %d: the index does not describe this archive", c.src.Location(), lm.member, a.PhysOffset(e.Offset), lm.off)
		}
		if _, err := w.CopyMember(a, e); err != nil {
			return k, fmt.Errorf("%s: %w", c.src.Location(), err)
		}
	}
	return len(c.live), nil
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

// adoptOrphans adds to the index the compacted archives among srcs (and
// in OutDir) that it does not list but whose replaced archives it lists:
// what a run killed before its index update leaves.
func adoptOrphans(ctx context.Context, u *IndexUpdate, srcs []store.Source, opt CompactOptions) ([]CompactOutput, error) {
	if u.Index == nil {
		return nil, nil
	}
	known := map[string]bool{}
	ids := map[[crypt.IDSize]byte]bool{}
	for _, a := range u.Index.Archives {
		known[a.Name] = true
		ids[a.ID] = true
	}
	// New archives go to OutDir, or beside their first source: look in
	// both, also when the sources were named one by one.
	cands := slices.Clone(srcs)
	dirs := map[string]bool{}
	if opt.OutDir != "" {
		dirs[opt.OutDir] = true
	}
	for _, s := range srcs {
		dirs[filepath.Dir(s.Where)] = true
	}
	for d := range dirs {
		files, _, err := ListArchiveDir(d)
		if err != nil {
			continue
		}
		for _, f := range files {
			cands = append(cands, store.File(f))
		}
	}
	var adopt []string
	var outs []CompactOutput
	seen := map[string]bool{}
	for _, s := range cands {
		if known[s.Name] || seen[s.Name] {
			continue
		}
		seen[s.Name] = true
		a, entries, closer, err := OpenSummary(s, opt.Keys...)
		if err != nil {
			continue // not ours to judge here: verify and gc report it
		}
		closer.Close()
		if len(entries) == 0 || entries[0].Meta.Type != format.TypeReplaces {
			continue
		}
		mine := false
		var names []string
		for _, r := range entries[0].Meta.Replaces {
			if ids[r.ID] {
				mine = true
			}
			names = append(names, hex.EncodeToString(r.ID[:]))
		}
		if !mine {
			continue
		}
		adopt = append(adopt, s.Where)
		outs = append(outs, CompactOutput{Archive: s.Location(), Seq: a.Header.Sequence, Members: len(entries) - 1, Size: sizeOf(s), Replaces: names, Adopted: true})
	}
	if len(adopt) == 0 {
		return nil, nil
	}
	if _, err := u.AddArchiveFiles(adopt); err != nil {
		return nil, err
	}
	return outs, nil
}

func sizeOf(s store.Source) int64 {
	obj, err := s.Open()
	if err != nil {
		return 0
	}
	defer obj.Close()
	return obj.Size()
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
		n += len(c.live)
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
		if len(c.live) == 0 {
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
func writeCompacted(ctx context.Context, g *compactGroup, key *crypt.Key, opt CompactOptions) (*CompactOutput, string, error) {
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
		if len(c.live) == 0 {
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
	path := filepath.Join(dir, name)
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
		if len(c.live) == 0 {
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
