//go:build !linux

package store

import "os"

// flusher does nothing where sync_file_range(2) is missing: the sync
// before the rename writes the whole file.
type flusher struct{}

func newFlusher(*os.File) *flusher { return &flusher{} }
func (*flusher) wrote(int)         {}
func (*flusher) stop() error       { return nil }
func (*flusher) cancel()           {}
