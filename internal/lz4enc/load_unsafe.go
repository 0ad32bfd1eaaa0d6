//go:build amd64 || arm64 || 386 || riscv64 || loong64 || ppc64le || mipsle || mips64le || wasm

package lz4enc

import "unsafe"

// On little-endian machines with unaligned loads, words are read without
// bounds checks: every caller loads within src, which the tests check
// against a decoder and the fuzz target checks on arbitrary input.

func load32(b []byte, i int) uint32 {
	return *(*uint32)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i))
}

func load64(b []byte, i int) uint64 {
	return *(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i))
}

func store64(b []byte, i int, v uint64) {
	*(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i)) = v
}
