package crypt

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestKeyNeverPrinted checks that formatting a key shows its id only.
func TestKeyNeverPrinted(t *testing.T) {
	raw := bytes.Repeat([]byte{0x5a}, KeySize)
	k, _ := KeyFromBytes(raw)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, "5a5a") || strings.Contains(s, "90 90") || strings.Contains(s, "ZZZZ") {
			t.Fatalf("key material in %q", s)
		}
		if !strings.Contains(s, k.ID()) {
			t.Fatalf("%q does not name the key id", s)
		}
	}
}

func TestArchiveKeysSeparate(t *testing.T) {
	k1, _ := KeyFromBytes(bytes.Repeat([]byte{1}, KeySize))
	k2, _ := KeyFromBytes(bytes.Repeat([]byte{2}, KeySize))
	var id1, id2 [IDSize]byte
	id2[0] = 1
	a, b, c := DeriveArchiveKeys(k1, id1), DeriveArchiveKeys(k1, id2), DeriveArchiveKeys(k2, id1)
	if a.Check() == b.Check() || a.Check() == c.Check() {
		t.Fatal("key check values repeat across archives or keys")
	}
	n := Nonce('c', true, 7, 1<<40+5)
	sealed := a.Seal(nil, n, []byte("chunk"), []byte("ad"))
	if _, err := b.Open(nil, n, sealed, []byte("ad")); err == nil {
		t.Fatal("another archive's keys opened the frame")
	}
	if _, err := a.Open(nil, Nonce('c', false, 7, 1<<40+5), sealed, []byte("ad")); err == nil {
		t.Fatal("a frame opened with its final flag cleared")
	}
	if got, err := a.Open(nil, n, sealed, []byte("ad")); err != nil || string(got) != "chunk" {
		t.Fatalf("open: %q, %v", got, err)
	}
	if Nonce('c', false, 1, 2) == Nonce('c', false, 2, 1) || Nonce('m', true, 1, 0) == Nonce('c', true, 1, 0) {
		t.Fatal("distinct frames share a nonce")
	}
}
