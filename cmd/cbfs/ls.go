package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/spf13/cobra"
)

func init() {
	register(newLsCmd)
}

// openArchive opens an archive (a file or an object) for random access.
func openArchive(ctx context.Context, path string, keys []*crypt.Key) (*format.Archive, io.Closer, error) {
	f, err := openArchiveObject(ctx, path)
	if err != nil {
		return nil, nil, inputErr(displayName(path), err)
	}
	a, err := format.OpenArchive(f, keys...)
	if err != nil {
		f.Close()
		return nil, nil, inputErr(displayName(path), err)
	}
	noteKey(path, a.Header, keys)
	return a, f, nil
}

// openSummary opens an archive file and reads its summary.
func openSummary(ctx context.Context, path string, keys []*crypt.Key) (*format.Archive, []format.Entry, io.Closer, error) {
	a, f, err := openArchive(ctx, path, keys)
	if err != nil {
		return nil, nil, nil, err
	}
	entries, err := a.Entries()
	if err != nil {
		f.Close()
		return nil, nil, nil, inputErr(path, err)
	}
	return a, entries, f, nil
}

func newLsCmd() *cobra.Command {
	var keyPath []string
	var asJSON bool
	c := &cobra.Command{
		Use:   "ls -k KEY [--json] ARCHIVE [PATH...]",
		Short: "List an archive's members as tar tv would",
		Long: `ls reads the archive's summary (one read at the end of the file) and prints
one line per member, as 'tar tvf' does for a plain tar. Tombstones (recorded
deletions) are listed with type 'D'. --json prints one JSON array.

With PATH arguments only those members are listed, and what lies under them
as directories; paths match as extract writes them ("a", "./a" and "a/" are
one path). A PATH that matches nothing is named on standard error and the
exit status is 1.`,
		Example: `  cbfs ls -k fs1.key backup.cbfs
  cbfs ls -k fs1.key --json backup.cbfs | jq '.[].path'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) (err error) {
			keys, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			a, f, err := openArchive(c.Context(), args[0], keys)
			if err != nil {
				return err
			}
			defer f.Close()
			var sel []lsSelector
			for _, p := range args[1:] {
				sel = append(sel, lsSelector{arg: p, path: memberKey([]byte(p))})
			}
			defer func() {
				if err == nil {
					err = unmatched(args[0], sel)
				}
			}()
			w := bufio.NewWriter(stdout)
			defer w.Flush()
			// Listed as the summary is walked, never held whole: a late
			// error (a damaged last summary frame) comes after the
			// members before it were listed, as with tar tv.
			n := 0
			err = a.WalkEntries(func(e format.Entry) error {
				if len(sel) > 0 && !selectEntry(e, sel) {
					return nil
				}
				if asJSON {
					// The bytes printJSON writes for the whole array.
					b, err := json.MarshalIndent(toJSON(a, e), "  ", "  ")
					if err != nil {
						return err
					}
					w.WriteString(map[bool]string{true: "[\n  ", false: ",\n  "}[n == 0])
					w.Write(b)
					n++
					return nil
				}
				if e.Meta.Type == format.TypeTrailer || e.Meta.Type == format.TypeTarGlobal || e.Meta.Type == format.TypeReplaces {
					return nil // not files: tar tv does not list them either
				}
				m := e.Meta
				if m.Type == format.TypeTarOther {
					m = withTarSize(a, e)
				}
				fmt.Fprintln(w, lsLine(m))
				return nil
			})
			if err != nil {
				return inputErr(args[0], err)
			}
			if asJSON {
				w.WriteString(map[bool]string{true: "[]\n", false: "\n]\n"}[n == 0])
			}
			return nil
		},
	}
	keyFlag(c, &keyPath)
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return c
}

type lsJSON struct {
	Number     uint32 `json:"member"`
	Path       string `json:"path"`
	PathBase64 string `json:"path_base64,omitempty"`
	Type       string `json:"type"`
	Mode       string `json:"mode"`
	UID        uint64 `json:"uid"`
	GID        uint64 `json:"gid"`
	Uname      string `json:"uname,omitempty"`
	Gname      string `json:"gname,omitempty"`
	Size       int64  `json:"size"`
	MTime      string `json:"mtime,omitempty"`
	Link       string `json:"link,omitempty"`
	Inode      uint64 `json:"inode,omitempty"`
	Offset     int64  `json:"offset"`
	Length     int64  `json:"length"`
}

func toJSON(a *format.Archive, e format.Entry) lsJSON {
	m := e.Meta
	j := lsJSON{Number: e.Number, Path: string(m.Path), Type: m.Type.String(), Mode: fmt.Sprintf("%04o", m.Mode),
		UID: m.UID, GID: m.GID, Uname: m.Uname, Gname: m.Gname, Size: m.Size, Link: string(m.Link), Inode: m.Inode,
		Offset: a.PhysOffset(e.Offset), Length: e.Length}
	if !utf8.Valid(m.Path) {
		j.PathBase64 = base64.StdEncoding.EncodeToString(m.Path)
	}
	if m.MTime.Set {
		j.MTime = m.MTime.Go().UTC().Format(time.RFC3339Nano)
	}
	return j
}

// lsLine formats a member as GNU tar's verbose listing does.
func lsLine(m *format.Meta) string {
	typ := map[format.Type]byte{format.TypeRegular: '-', format.TypeDir: 'd', format.TypeSymlink: 'l',
		format.TypeHardlink: 'h', format.TypeChar: 'c', format.TypeBlock: 'b', format.TypeFifo: 'p',
		format.TypeTombstone: 'D', format.TypeTarOther: '?'}[m.Type]
	if m.Type == format.TypeTarOther {
		// GNU tar's letters for its own types: an incremental dump
		// directory, a volume label, a multi-volume continuation.
		switch m.Typeflag {
		case 'D':
			typ = 'd'
		case 'V', 'M':
			typ = m.Typeflag
		}
	}
	mode := fs.FileMode(m.Mode & 0o777)
	if m.Mode&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m.Mode&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	perm := []byte(mode.String())
	perm = perm[len(perm)-9:]
	// fs.FileMode prints set-id bits as a prefix letter; tar prints them
	// in the execute position.
	if m.Mode&0o4000 != 0 {
		perm[2] = map[bool]byte{true: 's', false: 'S'}[m.Mode&0o100 != 0]
	}
	if m.Mode&0o2000 != 0 {
		perm[5] = map[bool]byte{true: 's', false: 'S'}[m.Mode&0o010 != 0]
	}
	if m.Mode&0o1000 != 0 {
		perm[8] = map[bool]byte{true: 't', false: 'T'}[m.Mode&0o001 != 0]
	}
	owner := m.Uname
	if owner == "" {
		owner = strconv.FormatUint(m.UID, 10)
	}
	group := m.Gname
	if group == "" {
		group = strconv.FormatUint(m.GID, 10)
	}
	size := strconv.FormatInt(m.Size, 10)
	if m.Type == format.TypeChar || m.Type == format.TypeBlock {
		size = fmt.Sprintf("%d,%d", m.DevMajor, m.DevMinor)
	}
	t := m.MTime.Go().UTC().Format("2006-01-02 15:04")
	if !m.MTime.Set {
		t = "-               " // a tombstone has no time: it is not a file
	}
	line := fmt.Sprintf("%c%s %s/%s %*s %s %s", typ, perm, owner, group, max(0, 19-len(owner)-len(group)), size, t, quote(m.Path))
	switch m.Type {
	case format.TypeSymlink:
		line += " -> " + quote(m.Link)
	case format.TypeHardlink:
		line += " link to " + quote(m.Link)
	}
	return line
}

// cEscapes are the control characters GNU tar's "escape" style writes as
// C escapes; other control bytes are written in octal.
var cEscapes = [0x20]byte{'\a': 'a', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't', '\v': 'v'}

// quote escapes bytes that are not printable, as GNU tar's default
// "escape" quoting style does.
func quote(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == '\\':
			sb.WriteString(`\\`)
		case r < 0x20 && cEscapes[r] != 0:
			sb.WriteByte('\\')
			sb.WriteByte(cEscapes[r])
		case r == utf8.RuneError && n == 1, r < 0x20, r == 0x7f:
			fmt.Fprintf(&sb, `\%03o`, b[0])
		default:
			sb.Write(b[:n])
		}
		b = b[n:]
	}
	return sb.String()
}

// lsSelector is a PATH argument of ls and whether it matched.
type lsSelector struct {
	arg, path string
	matched   bool
}

// memberKey is the path a member is extracted to, relative to DEST, as
// extract derives it: "./a//b/" is "a/b"; "" is DEST itself.
func memberKey(p []byte) string {
	var comps []string
	for _, c := range strings.Split(string(p), "/") {
		if c != "" && c != "." {
			comps = append(comps, c)
		}
	}
	return strings.Join(comps, "/")
}

// selectEntry reports whether the entry's path is one of sel's or lies
// under one of them, marking which selectors matched.
func selectEntry(e format.Entry, sel []lsSelector) bool {
	k := memberKey(e.Meta.Path)
	hit := false
	for i := range sel {
		s := &sel[i]
		if s.path == "" || k == s.path || strings.HasPrefix(k, s.path+"/") {
			s.matched, hit = true, true
		}
	}
	return hit
}

// unmatched names on standard error each PATH that matched nothing, and
// returns the error that makes the exit status 1.
func unmatched(archive string, sel []lsSelector) error {
	n := 0
	for _, s := range sel {
		if !s.matched {
			fmt.Fprintf(os.Stderr, "cbfs: %s: %s: not found in the archive\n", archive, quote([]byte(s.arg)))
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return &exitError{code: exitFailure, err: fmt.Errorf("%s: %d of %s not found (named above)", archive, n, plural(len(sel), "path", "paths"))}
}

// withTarSize returns a tar entry of another type (a multi-volume piece,
// a GNU dump directory) with the size its tar header gives, which tar tv
// shows: the summary's record has no size for it. It reads the member's
// full record; on any error the summary's record is shown as it is.
func withTarSize(a *format.Archive, e format.Entry) *format.Meta {
	full, err := a.Meta(e)
	if err != nil || len(full.TarHeader) < format.BlockSize {
		return e.Meta
	}
	raw := full.TarHeader
	b := (*format.Block)(raw[len(raw)-format.BlockSize:])
	n, err := format.ParseNumeric(b.Size())
	if err != nil || n < 0 {
		return e.Meta
	}
	m := *e.Meta
	m.Size = n
	return &m
}
