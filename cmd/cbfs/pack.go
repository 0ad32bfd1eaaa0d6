package main

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/tree"
	"github.com/spf13/cobra"
)

func init() {
	register(newPackCmd)
}

func newPackCmd() *cobra.Command {
	var o writeOptions
	var excludes []string
	var verbose bool
	c := &cobra.Command{
		Use:   "pack -k KEY [-o OUT] [--exclude PATTERN]... DIR...",
		Short: "Pack directory trees into a CBFS archive",
		Long: `pack walks each DIR and writes one CBFS archive, with no tar in between.
Members are named relative to DIR's parent, as tar names them: 'cbfs pack
/home/u/src' stores src, src/main.go, ... Each directory's entries are stored
in byte order of their names, a directory before its contents, so the same
tree always gives the same member order.

Kept: regular files, directories, symlinks (never followed), hard links (as
links to the first path of the same inode), character and block devices and
fifos; mode bits with setuid, setgid and sticky; uid and gid with their
names; nanosecond mtime, atime and ctime; every extended attribute of files
and directories it can read (user.*, POSIX ACLs, capabilities, SELinux labels,
trusted.* as root); inode numbers; sparse files as their data extents (holes found with SEEK_DATA and
SEEK_HOLE are not stored). Sockets are skipped with a note.

--exclude PATTERN (repeatable) leaves out every file, and everything a
directory holds, whose member path or base name matches PATTERN as Go's
path.Match does ('*' does not cross '/'): --exclude '*.o' --exclude src/tmp.

A file that cannot be read, or that changes while it is read, is named on
standard error; the archive is still completed (a changed file is stored
with the size it had when reading began, cut or padded with zeros, as GNU
tar does) and pack exits with status 1.`,
		Example: `  cbfs pack -k fs1.key -o src.cbfs src
  cbfs pack -k fs1.key --exclude '*.o' --exclude .git -o proj.cbfs proj docs`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			wo, err := o.writer()
			defer o.unlock()
			if err != nil {
				return err
			}
			for _, pat := range excludes {
				if _, err := path.Match(pat, ""); err != nil {
					return usageError{fmt.Errorf("--exclude %q: %v", pat, err)}
				}
			}
			key, err := loadKey(o.keyPath)
			if err != nil {
				return err
			}
			// Check the roots before creating anything: two roots with the
			// same name would give members of the same paths.
			seen := map[string]string{}
			for _, dir := range args {
				if _, err := os.Lstat(dir); err != nil {
					return inputErr(dir, err)
				}
				name, err := tree.TreeName(dir)
				if err != nil {
					return &exitError{code: exitFailure, err: fmt.Errorf("%s: %w", dir, err)}
				}
				if prev, ok := seen[name]; ok {
					return usageError{fmt.Errorf("%s and %s would both be stored as %q", prev, dir, name)}
				}
				seen[name] = dir
			}
			out, err := createOutput(c.Context(), o.out, o.force, true)
			if err != nil {
				return err
			}
			pr := startProgress("pack "+strings.Join(args, " "), 0)
			if verbose {
				list := memberLister(!isStdout(o.out), pr)
				wo.OnAdd = func(m *format.Meta) {
					if listed(m.Type) {
						list(m.Path)
					}
				}
			}
			opt := tree.PackOptions{WriterOptions: wo, Exclude: excludes, Report: func(p tree.Problem) {
				pr.say("cbfs: %s: %s\n", quote([]byte(p.Path)), p.What)
			}}
			// Never pack the archive being written into itself.
			dst := os.Stdout
			if out.file != nil {
				dst = out.file.File
			}
			if out.pending != nil {
				dst = nil // an object store: not in the tree
			}
			if fi, err := dst.Stat(); dst != nil && err == nil && fi.Mode().IsRegular() {
				opt.Skip = append(opt.Skip, fi)
			}
			p, err := tree.NewPacker(pr.writer(out), key, opt)
			if err != nil {
				pr.finish()
				out.abort()
				return err
			}
			for _, dir := range args {
				if err := p.AddTree(c.Context(), dir); err != nil {
					pr.finish()
					out.abort()
					return inputErr(dir, err)
				}
			}
			st, err := p.Close()
			pr.finish()
			if err != nil {
				out.abort()
				return err
			}
			if err := out.commit(); err != nil {
				return err
			}
			if o.out != "" && o.out != "-" {
				fmt.Fprintf(os.Stderr, "cbfs: packed %s (%d bytes of content) into %s\n", plural(st.Members, "member", "members"), st.Bytes, o.out)
			}
			if err := o.updateIndex(key); err != nil {
				return err
			}
			if st.Failed > 0 {
				return &exitError{code: exitFailure,
					err: errors.New(plural(st.Failed, "file was", "files were") + " not packed or changed while being read (named above); the archive was written without them or with them as read")}
			}
			return nil
		},
	}
	o.flags(c)
	verboseFlag(c, &verbose)
	c.Flags().StringArrayVar(&excludes, "exclude", nil, "leave out files whose member path or base name matches this path.Match pattern (repeatable)")
	return c
}

// plural formats a count with the singular or plural of what follows.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
