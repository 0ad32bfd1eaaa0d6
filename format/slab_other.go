//go:build !linux

package format

// slab returns n bytes of new memory for long-lived buffers.
func slab(n int) []byte { return make([]byte, n) }
