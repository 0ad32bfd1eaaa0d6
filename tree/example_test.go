package tree_test

import (
	"bytes"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/tarconv"
	"github.com/cbfs/cbfs/tree"
)

// A tiering agent writes an archive member by member: metadata it holds
// (path, owner, times, inode) and a reader for the content, with no tar
// in between. Here the archive goes to memory; an agent would stream it to
// object storage. Reading back uses the summary: one read at the end of
// the archive, then one per member.
func ExamplePacker() {
	key, err := crypt.KeyFromBytes(bytes.Repeat([]byte{0x42}, crypt.KeySize)) // from the key file in real use
	if err != nil {
		log.Fatal(err)
	}
	var archive bytes.Buffer
	p, err := tree.NewPacker(&archive, key, tree.PackOptions{
		WriterOptions: format.WriterOptions{Sequence: 7, Compress: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	mtime := format.TimeOf(time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC))
	report := "cold data, moved to object storage\n"
	members := []struct {
		meta    format.Meta
		content string
	}{
		{format.Meta{Type: format.TypeDir, Path: []byte("home/ann"), Mode: 0o750, UID: 1000, GID: 1000,
			Uname: "ann", Gname: "ann", MTime: mtime, Inode: 4096}, ""},
		{format.Meta{Type: format.TypeRegular, Path: []byte("home/ann/report.txt"), Mode: 0o640, UID: 1000, GID: 1000,
			Uname: "ann", Gname: "ann", MTime: mtime, Inode: 4097, Size: int64(len(report)),
			Xattrs: []format.Xattr{{Name: "user.tier", Value: []byte("cold")}}}, report},
		// A sparse file: 1 MiB apparent size, 5 bytes of data at 64 KiB.
		{format.Meta{Type: format.TypeRegular, Path: []byte("home/ann/disk.img"), Mode: 0o600, MTime: mtime,
			Inode: 4098, Size: 1 << 20, Sparse: []format.Extent{{Offset: 64 << 10, Length: 5}}}, "boot!"},
		// A file deleted since the last archive.
		{format.Meta{Type: format.TypeTombstone, Path: []byte("home/ann/old.txt")}, ""},
	}
	for _, m := range members {
		if err := p.Add(&m.meta, strings.NewReader(m.content)); err != nil {
			log.Fatal(err)
		}
	}
	stats, err := p.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %d members, %d content bytes\n", stats.Members, stats.Bytes)

	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(archive.Bytes()), int64(archive.Len())), key)
	if err != nil {
		log.Fatal(err)
	}
	entries, err := a.Entries()
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		m := e.Meta
		fmt.Printf("%-9s %-20s inode %d size %d mtime %s\n", m.Type, m.Path, m.Inode, m.Size, m.MTime.Go().UTC().Format(time.RFC3339Nano))
	}
	e, err := tarconv.Lookup(entries, []byte("home/ann/report.txt"))
	if err != nil {
		log.Fatal(err)
	}
	var got bytes.Buffer
	if err := tarconv.WriteContent(a, e, &got); err != nil {
		log.Fatal(err)
	}
	full, err := a.Meta(e) // with the xattrs the summary leaves out
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("report.txt: %q, %s=%s\n", got.String(), full.Xattrs[0].Name, full.Xattrs[0].Value)
	_, err = tarconv.Lookup(entries, []byte("home/ann/old.txt"))
	fmt.Println(err)
	// Output:
	// wrote 4 members, 40 content bytes
	// dir       home/ann             inode 4096 size 0 mtime 2024-05-01T12:00:00.123456789Z
	// file      home/ann/report.txt  inode 4097 size 35 mtime 2024-05-01T12:00:00.123456789Z
	// file      home/ann/disk.img    inode 4098 size 1048576 mtime 2024-05-01T12:00:00.123456789Z
	// tombstone home/ann/old.txt     inode 0 size 0 mtime 0001-01-01T00:00:00Z
	// report.txt: "cold data, moved to object storage\n", user.tier=cold
	// "home/ann/old.txt": deleted (tombstone at member 3)
}
