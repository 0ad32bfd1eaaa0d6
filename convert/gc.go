package convert

import (
	"fmt"
	"path/filepath"

	"github.com/cbfs/cbfs/format"
)

// ArchiveUsage is how much of an archive the master index still points
// at: what an operator needs to choose archives to compact.
type ArchiveUsage struct {
	Archive     string `json:"archive"`
	InIndex     bool   `json:"in_index"`
	Members     int    `json:"members"`
	LiveMembers int    `json:"live_members"`
	LiveBytes   int64  `json:"live_bytes"`
	DeadBytes   int64  `json:"dead_bytes"`
}

// indexPos finds an archive in the index's table by file name and id.
func indexPos(x *format.Index, name string, id [16]byte) (int, bool) {
	base := filepath.Base(name)
	for i, a := range x.Archives {
		if a.Name == base && a.ID == id {
			return i, true
		}
	}
	return 0, false
}

// isWinner reports whether member num of the index's archive pos is what
// the index holds for path.
func isWinner(x *format.Index, pos int, path []byte, num uint32) bool {
	path, err := format.CanonicalPath(path)
	if err != nil {
		return false
	}
	i, ok := x.Find(path)
	if !ok {
		return false
	}
	for _, e := range x.Entries(i) {
		if e.Archive == pos && e.Member == num {
			return true
		}
	}
	return false
}

// Usage counts an archive's live and dead members against an index. A
// member is live when the index holds it for its path: the current
// version of a file, or a deletion that still hides older versions. It is
// dead when a later member or archive superseded it, or a later tombstone
// deleted it. Members that hold no file system path (an imported tar's
// pax globals, other tar entries and trailer) count as live: export
// needs them. Bytes are the members' spans in the archive, record headers
// included; the header, summary and footer are counted in neither. An
// archive the index does not list (InIndex false) counts as all live.
func Usage(x *format.Index, name string, a *format.Archive, entries []format.Entry) ArchiveUsage {
	u := ArchiveUsage{Archive: name, Members: len(entries)}
	pos, in := indexPos(x, name, a.Header.ID)
	u.InIndex = in
	for _, e := range entries {
		span := a.Header.PhysSpan(e.Offset, e.Length)
		// An archive the index does not list (renamed, or written without
		// the index) may hold the only copy of a path: nothing in it is
		// known to be dead.
		// A member whose path has no canonical form is not in the index
		// either (spec cbfs-index-v1 2.7): it is live as far as gc knows.
		_, noPath := format.CanonicalPath(e.Meta.Path)
		live := !in || !format.IndexedType(e.Meta.Type) || noPath != nil || isWinner(x, pos, e.Meta.Path, e.Number)
		if live {
			u.LiveMembers++
			u.LiveBytes += span
		} else {
			u.DeadBytes += span
		}
	}
	return u
}

// IndexProblem is a live index entry that does not lead to an intact
// member of the archives checked.
type IndexProblem struct {
	Path    string `json:"path"`
	Archive string `json:"archive"`
	Member  uint32 `json:"member"`
	What    string `json:"what"`
}

// IntactMember is where a scan found an intact member.
type IntactMember struct {
	Offset, Span int64
}

// CheckIndex checks every live entry of an index against the intact
// members found in the given archives (keyed by file base name, then
// member number). An entry whose archive was not given, or whose member
// is missing, damaged or elsewhere, is a problem.
func CheckIndex(x *format.Index, intact map[string]map[uint32]IntactMember, ids map[string][16]byte) []IndexProblem {
	var out []IndexProblem
	for i := 0; i < x.Len(); i++ {
		if !x.Live(i) {
			continue
		}
		for _, e := range x.Entries(i) {
			if e.Type == format.TypeTombstone {
				continue
			}
			arch := x.Archives[e.Archive]
			p := IndexProblem{Path: string(x.Path(i)), Archive: arch.Name, Member: e.Member}
			members, given := intact[arch.Name]
			switch m, ok := members[e.Member]; {
			case !given:
				p.What = "points nowhere: its archive is not among those checked"
			case ids[arch.Name] != arch.ID:
				p.What = fmt.Sprintf("the archive of that name has id %x, the index says %x", ids[arch.Name], arch.ID)
			case !ok:
				p.What = "points at a member that is missing or damaged"
			case m.Offset != e.Offset || m.Span != e.Span:
				p.What = fmt.Sprintf("the member is at offset %d (%d bytes), the index says %d (%d bytes)", m.Offset, m.Span, e.Offset, e.Span)
			default:
				continue
			}
			out = append(out, p)
		}
	}
	return out
}
