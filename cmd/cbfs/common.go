package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// openInput opens a file argument; "-" or no argument is standard input.
func openInput(args []string) (io.ReadCloser, string, error) {
	if len(args) == 0 || args[0] == "-" {
		if err := refuseTerminalInput(); err != nil {
			return nil, "standard input", err
		}
		return io.NopCloser(os.Stdin), "standard input", nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, args[0], err
	}
	return f, args[0], nil
}

// output is where a command writes a result: standard output, or a
// file that appears under its name only once complete (store.AtomicFile).
// An existing file is never replaced unless force is set.
type output struct {
	io.Writer
	file    *store.AtomicFile
	pending store.Pending // an upload to an object store
}

// createOutput opens the output named by -o ("" or "-" is standard
// output). Binary output to a terminal is refused.
func createOutput(ctx context.Context, path string, force, binary bool) (*output, error) {
	if path == "" || path == "-" {
		if binary && term.IsTerminal(int(os.Stdout.Fd())) {
			return nil, &exitError{code: exitUsage, err: errors.New("refusing to write a binary archive to a terminal"),
				hint: "give -o FILE, or redirect standard output"}
		}
		return &output{Writer: stdout}, nil
	}
	if store.IsURL(path) {
		loc, err := store.ParseLocation(path)
		if err != nil {
			return nil, usageError{err}
		}
		st, key, err := store.Resolve(loc)
		if err != nil {
			return nil, &exitError{code: exitFailure, err: err}
		}
		p, err := st.Create(ctx, key, store.CreateOptions{Replace: force})
		if errors.Is(err, fs.ErrExist) {
			return nil, &exitError{code: exitFailure, err: fmt.Errorf("%s: output object exists", path), hint: "give --force to replace it"}
		}
		if err != nil {
			return nil, err
		}
		p.AbortOn(ctx)
		return &output{Writer: p, pending: p}, nil
	}
	if !force {
		// A character device or a pipe (/dev/null, a FIFO) is written,
		// not replaced: nothing in it is lost.
		st, err := os.Stat(path)
		direct := err == nil && st.Mode()&(fs.ModeCharDevice|fs.ModeNamedPipe) != 0
		if _, err := os.Lstat(path); err == nil && !direct {
			return nil, &exitError{code: exitFailure, err: fmt.Errorf("%s: output file exists", path), hint: "give --force to replace it"}
		}
	}
	f, err := store.CreateAtomic(path, force)
	if err != nil {
		return nil, err
	}
	f.AbortOn(ctx)
	return &output{Writer: f, file: f}, nil
}

// commit puts the finished output in place.
func (o *output) commit() error {
	if o.pending != nil {
		err := o.pending.Commit()
		if errors.Is(err, fs.ErrExist) {
			return &exitError{code: exitFailure, err: err, hint: "another writer created it meanwhile; give --force to replace it"}
		}
		return err
	}
	if o.file == nil {
		return nil
	}
	return o.file.Commit()
}

// abort removes the unfinished output: a failed command leaves nothing.
func (o *output) abort() {
	if o.pending != nil {
		o.pending.Abort()
	}
	if o.file != nil {
		o.file.Abort()
	}
}

// inputErr names the input file in an error.
func inputErr(name string, err error) error {
	var ee *exitError
	var oe *format.OutputError
	if errors.As(err, &ee) {
		return err
	}
	if errors.As(err, &oe) {
		return &exitError{err: err} // the output's fault, not the input's
	}
	if errors.Is(err, format.ErrNotCBFS) && isPlainTar(name) {
		return &exitError{err: fmt.Errorf("%s: %w: it is a plain tar", name, err),
			hint: fmt.Sprintf("list it with 'tar tvf %s', or make a CBFS archive of it with 'cbfs import -k KEY -o OUT %s'", name, name)}
	}
	if errors.Is(err, format.ErrNotCBFS) && isIndexFile(name) {
		return &exitError{err: fmt.Errorf("%s: %w: it is a master index", name, err),
			hint: fmt.Sprintf("list it with 'cbfs index ls -k KEY %s'", name)}
	}
	// "x: open x: no such file" says the name twice.
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.TrimSuffix(pe.Path, "/") == strings.TrimSuffix(name, "/") {
		err = pe.Err
	}
	// Nor does an error that names the object already.
	var obj *repo.ObjectError
	var nr *store.NotRegularError
	if errors.As(err, &obj) && obj.Where == name || errors.As(err, &nr) && nr.Path == name {
		return &exitError{err: err}
	}
	return &exitError{err: fmt.Errorf("%s: %w", name, err)}
}

// fileHead is the first n bytes of the regular file name (fewer for a
// shorter file; none when it cannot be read).
func fileHead(name string, n int) []byte {
	f, err := store.OpenRegular(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	b := make([]byte, n)
	k, _ := io.ReadFull(f, b)
	return b[:k]
}

// isPlainTar says whether the file name starts with a valid tar header.
func isPlainTar(name string) bool {
	var b format.Block
	return copy(b[:], fileHead(name, format.BlockSize)) == format.BlockSize && b.VerifyChecksum() == nil
}

// isIndexFile says whether the file name starts with the magic of a
// master index.
func isIndexFile(name string) bool { return index.HasMagic(fileHead(name, 8)) }

// archiveArgs expands the ARCHIVE|DIR arguments of commands that take
// several archives: a directory stands for the archives in it
// (repo.ListArchiveDir). Anything else, "-" and paths that do not
// exist included, is passed on for the command to open and report.
func archiveArgs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if a == "-" {
			if err := refuseTerminalInput(); err != nil {
				return nil, err
			}
		}
		if st, err := os.Stat(a); a == "-" || err != nil || !st.IsDir() {
			out = append(out, a)
			continue
		}
		files, indexes, err := repo.ListArchiveDir(a)
		noteIndexes(indexes)
		if err != nil {
			return nil, err
		}
		out = append(out, files...)
	}
	return out, nil
}

// noteIndexes says which master index files a directory of archives held:
// they are skipped, not read as archives.
func noteIndexes(indexes []string) {
	for _, p := range indexes {
		fmt.Fprintf(os.Stderr, "cbfs: note: %s is a master index, not an archive: skipped\n", p)
	}
}

// openArchiveFile opens an archive for a command that seeks through it:
// a regular file, or standard input ("-") when that is one.
func openArchiveFile(path string) (*os.File, int64, error) {
	f := os.Stdin
	var err error
	if path != "-" {
		f, err = store.OpenRegular(path) // looks first: a FIFO would block the open
	} else if err := refuseTerminalInput(); err != nil {
		return nil, 0, err
	}
	var st os.FileInfo
	if err == nil {
		if st, err = f.Stat(); err == nil && !st.Mode().IsRegular() {
			err = store.ErrNotRegular
		}
	}
	if errors.Is(err, store.ErrNotRegular) {
		err = &exitError{code: exitUsage, err: fmt.Errorf("%s: not a regular file: the archive is read by seeking through it", displayName(path)),
			hint: "for a pipe use 'cbfs export -k KEY - | tar tvf -' (or 'tar xf -'), or save it to a file first"}
	}
	if err != nil {
		if f != nil && path != "-" {
			f.Close()
		}
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// refuseTerminalInput refuses to read an archive or a tar from standard
// input when it is a terminal, as GNU tar does: nobody types one, and the
// command would wait forever.
func refuseTerminalInput() error {
	if term.IsTerminal(int(os.Stdin.Fd())) {
		return &exitError{code: exitUsage, err: errors.New("standard input: refusing to read archive contents from a terminal"),
			hint: "give a file name, or redirect standard input from a file or a pipe"}
	}
	return nil
}

// displayName is how messages name an archive argument.
func displayName(path string) string {
	if path == "-" {
		return "standard input"
	}
	return path
}

// printJSON writes v as indented JSON: the --json output of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isDamage reports whether err is damage to an archive (exit status 3).
func isDamage(err error) bool {
	code, _ := classify(err)
	return code == exitDamaged
}

// damageHint adds, to an error that is damage to an archive, a hint at
// --salvage for a command that has it.
func damageHint(err error, command string) error {
	if !isDamage(err) {
		return err
	}
	return &exitError{err: err, hint: "'cbfs " + command + " --salvage' reads the members that are still intact"}
}

// verboseFlag adds -v/--verbose, which lists members as they are
// processed, as tar -v does.
func verboseFlag(c *cobra.Command, p *bool) {
	c.Flags().BoolVarP(p, "verbose", "v", false, "list members as they are processed, as tar -v does")
}

// memberLister prints one member path a line, as tar -v does: on
// standard output, or on standard error when the command's own output
// (an archive or a tar) goes to standard output. Lines on standard error
// go through the progress printer so that the two do not run together.
func memberLister(toStdout bool, p *progress) func(path []byte) {
	if toStdout {
		return func(path []byte) { fmt.Fprintln(stdout, quote(path)) }
	}
	return func(path []byte) { p.say("%s\n", quote(path)) }
}

// isStdout says whether an -o value means standard output.
func isStdout(out string) bool { return out == "" || out == "-" }

// stdout is standard output for every command: it remembers the first
// write error, so that output lost to a full disk or a closed file is an
// error (status 1) even where a buffered writer's final flush is not
// checked by the code that made it.
var stdout = &checkedWriter{w: os.Stdout}

type checkedWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// archiveSources expands the ARCHIVE|DIR arguments of verify and gc into
// sources: local ones as archiveArgs does, s3:// URLs as
// repo.URLSources does. remote says whether any is in an object store.
func archiveSources(ctx context.Context, args []string) (srcs []store.Source, remote bool, err error) {
	for _, a := range args {
		if store.IsURL(a) {
			us, err := repo.URLSources(ctx, a)
			var empty *repo.EmptyPrefixError
			if errors.As(err, &empty) {
				err = errors.New("no objects under this prefix")
			}
			if err != nil {
				// Reported as a file that cannot be opened is: one
				// unreadable entry, the other arguments still read.
				us = []store.Source{{Name: a, Where: a, Open: func() (store.Object, error) { return nil, err }}}
			}
			srcs, remote = append(srcs, us...), true
			continue
		}
		files, err := archiveArgs([]string{a})
		if err != nil {
			return nil, false, err
		}
		for _, f := range files {
			s := archiveSource(f)
			if st, err := os.Stat(f); err == nil && f != "-" {
				s.Size = st.Size()
			}
			srcs = append(srcs, s)
		}
	}
	return srcs, remote, nil
}

// anyURL says whether an argument is in an object store.
func anyURL(args ...string) bool {
	for _, a := range args {
		if store.IsURL(a) {
			return true
		}
	}
	return false
}

// jobsFlag adds -j/--jobs: objects read at once; 0 means the default,
// 16 for an object store (each read waits on the network), the number of
// cores otherwise.
func jobsFlag(c *cobra.Command, p *int) {
	c.Flags().IntVarP(p, "jobs", "j", 0, "archives read at once (default: 16 from an object store, else the number of cores)")
}

func jobsFor(jobs int, remote bool) int {
	switch {
	case jobs > 0:
		return jobs
	case remote:
		return 16
	}
	return runtime.GOMAXPROCS(0)
}

// isIndexObject says whether an error is an object under a prefix that is
// a master index: skipped with a note, as in a DIR.
func isIndexObject(err error) bool {
	var ie *repo.IndexObjectError
	return errors.As(err, &ie)
}

// indexObjectNote is the note that skips such an object (its URL once).
func indexObjectNote(err error) string {
	var ie *repo.IndexObjectError
	if errors.As(err, &ie) {
		return "cbfs: note: " + ie.Error()
	}
	return "cbfs: note: " + err.Error()
}

// openArchiveObject opens an archive argument for reading at offsets: a
// regular file, standard input ("-") when that is one, or an object in
// an object store.
func openArchiveObject(ctx context.Context, path string) (store.Object, error) {
	if store.IsURL(path) {
		return store.OpenURL(ctx, path)
	}
	f, size, err := openArchiveFile(path)
	if err != nil {
		return nil, err
	}
	if path == "-" {
		return stdinObject{f, size}, nil
	}
	return fileObject{f, size}, nil
}

type fileObject struct {
	*os.File
	size int64
}

func (f fileObject) Size() int64 { return f.size }

// archiveSource is an archive argument as the store's source: a file, or
// standard input ("-") when that is a file (read by seeking through it).
func archiveSource(path string) store.Source {
	if path != "-" {
		return store.File(path)
	}
	return store.Source{Name: "-", Where: "standard input", Open: func() (store.Object, error) {
		if err := refuseTerminalInput(); err != nil {
			return nil, err
		}
		st, err := os.Stdin.Stat()
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, &store.NotRegularError{Path: "standard input"}
		}
		return stdinObject{os.Stdin, st.Size()}, nil
	}}
}

// stdinObject is standard input read at offsets; closing it leaves
// standard input open.
type stdinObject struct {
	f    *os.File
	size int64
}

func (s stdinObject) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }
func (s stdinObject) Size() int64                             { return s.size }
func (s stdinObject) Close() error                            { return nil }
