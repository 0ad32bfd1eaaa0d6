//go:build !(amd64 || arm64 || 386 || riscv64 || loong64 || ppc64le || mipsle || mips64le || wasm)

package lz4enc

import "encoding/binary"

func load32(b []byte, i int) uint32 { return binary.LittleEndian.Uint32(b[i:]) }

func load64(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }

func store64(b []byte, i int, v uint64) { binary.LittleEndian.PutUint64(b[i:], v) }
