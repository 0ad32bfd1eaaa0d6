// Package fuzz holds the native Go fuzz targets for every decoder of cbfs:
// the plain tar import path, the archive readers (streaming and random
// access), the archive header, footer, metadata record and summary, the
// key file, and the master index; and one encoder, format/lz4enc, whose
// blocks must decode with the decoder every reader uses. The targets live in _test.go files;
// `go test ./fuzz` runs their seed corpora (including every committed
// crasher under testdata/fuzz/<Target>/) and scripts/fuzz.sh fuzzes them.
package fuzz
