package repo

import (
	"errors"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
)

// Opened is an archive opened for reading its members: through its
// summary, or, when salvaged, through a scan for the members still intact.
type Opened struct {
	Archive *format.Archive
	Entries []format.Entry
	// Salvaged says the summary or footer could not be used: Entries are
	// the members a scan found intact, and OpenErr says why; Problems are
	// the damage the scan found. Members lost with the damage cannot be
	// listed.
	Salvaged bool
	OpenErr  error
	Problems []*format.Error
}

// OpenOrSalvage opens an archive through its footer and summary. When
// those are damaged or missing (a copy cut short) and salvage is set, it
// scans the archive for the members that are still intact, each
// authenticated whole; otherwise the error is returned as it is.
func OpenOrSalvage(src format.Source, salvage bool, keys ...*crypt.Key) (*Opened, error) {
	a, err := format.OpenArchive(src, keys...)
	var entries []format.Entry
	if err == nil {
		if entries, err = a.Entries(); err == nil {
			return &Opened{Archive: a, Entries: entries}, nil
		}
	}
	var fe *format.Error
	if !salvage || !errors.As(err, &fe) {
		return nil, err
	}
	a, entries, problems, serr := format.Salvage(src, keys...)
	if serr != nil {
		return nil, serr
	}
	return &Opened{Archive: a, Entries: entries, Salvaged: true, OpenErr: err, Problems: problems}, nil
}
