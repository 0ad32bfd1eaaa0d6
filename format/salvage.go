package format

import (
	"errors"
	"slices"

	"github.com/cbfs/cbfs/crypt"
)

// Salvage opens an archive whose footer or summary cannot be used (a copy
// cut short, say) for the members that are still intact. It scans the
// archive front to back as ScanArchive does and returns an Archive for reading
// those members (Meta and Content; it has no footer, so no Entries), their
// entries in archive order, and every problem the scan met. Each member
// returned was authenticated whole, its metadata and all of its content.
// What a salvage cannot tell is which members are missing: only the
// summary lists the members an archive holds.
//
// Of several keys it takes the one whose key check value the header
// carries.
func Salvage(src Source, keys ...*crypt.Key) (*Archive, []Entry, []*Error, error) {
	if !slices.ContainsFunc(keys, func(k *crypt.Key) bool { return k != nil }) {
		return nil, nil, nil, errors.New("salvage needs the key")
	}
	var entries []Entry
	rep, err := ScanArchive(src, ScanOptions{Keys: keys}, func(e Entry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	ak, err := rep.Header.pickKeys(keys)
	if err != nil {
		return nil, nil, nil, err
	}
	a := &Archive{src: src, Header: rep.Header, keys: ak}
	return a, entries, rep.Problems, nil
}
