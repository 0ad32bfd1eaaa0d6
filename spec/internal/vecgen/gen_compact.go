package vecgen

import (
	"bytes"
	"fmt"

	"github.com/cbfs/cbfs/format"
)

// compacted writes a compacted archive (archive spec 7.7) replacing
// reps, holding copies of members of the archives srcs, each re-sealed
// frame by frame (format.Writer.CopyMember).
func (g *gen) compacted(name string, seq uint64, reps []format.Replaced, srcs [][]byte, pick [][]uint32) []byte {
	opt := small
	opt.Sequence = seq
	opt.Replaces = reps
	opt.Compress = true
	opt.Rand = stream("id " + name)
	opt.Workers = 1
	var b bytes.Buffer
	w, err := format.NewWriter(&b, g.keyA, opt)
	if err != nil {
		panic(err)
	}
	for i, data := range srcs {
		a, es := openEntries(data, g.keyA)
		for _, n := range pick[i] {
			if _, err := w.CopyMember(a, es[n]); err != nil {
				panic(fmt.Sprintf("vecgen: %s: %v", name, err))
			}
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func idOf(data []byte) [16]byte {
	var id [16]byte
	copy(id[:], data[512+12+20:])
	return id
}

// compaction: a compacted archive and the member-order rules of spec
// 7.5 and 7.7 around it.
func (g *gen) compaction() {
	seq5 := small
	seq5.Sequence, seq5.Compress = 5, true
	packed := g.write("compact-src-packed", seq5, []mem{
		fileMem("a/one", text("one", 3000)), fileMem("a/two", []byte("superseded")),
		{&format.Meta{Type: format.TypeTombstone, Path: []byte("gone")}, nil},
		fileMem("a/two", []byte("second version"))})
	imported := g.importTar("compact-src-imported", seq5, ustarTar())
	reps := []format.Replaced{{ID: idOf(packed), Seq: 5}, {ID: idOf(imported), Seq: 5}}
	if bytes.Compare(reps[0].ID[:], reps[1].ID[:]) > 0 {
		reps[0], reps[1] = reps[1], reps[0]
	}
	// Members 0 (a/one), 2 (the tombstone) and 3 (a/two's last version)
	// of the packed one; the imported one's first two entries.
	data := g.compacted("valid-compacted", 5, reps, [][]byte{packed, imported}, [][]uint32{{0, 2, 3}, {0, 1}})
	g.ok("valid-compacted", "a compacted archive of sequence 5: its replaces record (two archives), three members of a packed archive and two imported entries, copied frame by frame; exported member by member", data, g.keyA, nil, nil)

	// The summary form of the records here is the record itself (no
	// xattrs, no tar header bytes), also where it does not decode.
	same := func(_ uint32, r []byte) []byte {
		if _, err := format.DecodeMeta(r); err != nil {
			return r
		}
		return summaryForm(r)
	}
	compLayout := func(name string) *layout {
		l, err := parse(g.compacted(name, 5, reps, [][]byte{packed}, [][]uint32{{0, 3}}), g.keyA)
		if err != nil {
			panic(err)
		}
		return l
	}
	// setMeta replaces member n's metadata record.
	setMeta := func(l *layout, n uint32, m *format.Meta) {
		i, _ := l.member(n)
		r := m.Encode(nil)
		l.Frames[i].Plain = padMeta(r, len(r))
		l.Frames[i].Flags &^= format.FlagLZ4
	}
	mutate := func(name, desc string, f func(l *layout)) {
		l := compLayout(name)
		f(l)
		l.setSummary(l.summaryPlain(same))
		g.bad(name, cMember, success, "", desc, l.build())
	}
	mutate("compacted-replaces-unsorted", "a compacted archive whose replaces record lists its two archives out of id order", func(l *layout) {
		setMeta(l, 0, &format.Meta{Type: format.TypeReplaces, Replaces: []format.Replaced{reps[1], reps[0]}})
	})
	mutate("compacted-replaces-path", "a replaces record with a path", func(l *layout) {
		setMeta(l, 0, &format.Meta{Type: format.TypeReplaces, Path: []byte("x"), Replaces: reps})
	})
	mutate("compacted-replaces-on-file", "a regular file (member 1) carrying a replaces list", func(l *layout) {
		m := reg("a/one", 3000)
		m.Replaces = reps
		setMeta(l, 1, m)
	})
	mutate("compacted-replaces-empty", "a replaces record listing no archive", func(l *layout) {
		setMeta(l, 0, &format.Meta{Type: format.TypeReplaces})
	})

	// Member order: a replaces record is member 0 or nowhere; a
	// compacted archive holds only the indexed types.
	seq := func(name, desc string, l *layout, f func(l *layout)) {
		f(l)
		l.setSummary(l.summaryPlain(same))
		g.bad(name, cMember, success, success, desc, l.build())
	}
	seq("seq-replaces-not-first", "a packed archive with a replaces record as its last member", g.base("seq-replaces-not-first", false), func(l *layout) {
		addMember(l, &format.Meta{Type: format.TypeReplaces, Replaces: reps})
	})
	seq("seq-compacted-trailer", "a compacted archive with a trailer member", compLayout("seq-compacted-trailer"), func(l *layout) {
		addMember(l, &format.Meta{Type: format.TypeTrailer})
	})
}
