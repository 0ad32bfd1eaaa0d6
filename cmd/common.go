package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cbfs/cbfs/crypt"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// keyFlag adds -k/--key to a command.
func keyFlag(c *cobra.Command, p *string) {
	c.Flags().StringVarP(p, "key", "k", "", "key file (default $CBFS_KEY_FILE)")
}

// loadKey reads the key file named by -k or CBFS_KEY_FILE, printing any
// warning about it.
func loadKey(path string) (*crypt.Key, error) {
	if path == "" {
		path = os.Getenv("CBFS_KEY_FILE")
	}
	if path == "" {
		return nil, &exitError{code: exitUsage, err: errors.New("no key file: give -k FILE or set CBFS_KEY_FILE"),
			hint: "create one with 'cbfs keygen -o FILE'"}
	}
	k, warns, err := crypt.ReadKeyFile(path)
	if err != nil {
		return nil, err
	}
	for _, w := range warns {
		fmt.Fprintf(os.Stderr, "cbfs: warning: %s\n", w)
	}
	return k, nil
}

// openInput opens a file argument; "-" or no argument is standard input.
func openInput(args []string) (io.ReadCloser, string, error) {
	if len(args) == 0 || args[0] == "-" {
		return io.NopCloser(os.Stdin), "standard input", nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, args[0], err
	}
	return f, args[0], nil
}

// output is where a command writes a result: standard output, or a
// temporary file renamed into place by commit once complete. An existing
// file is never replaced unless force is set.
type output struct {
	io.Writer
	path string
	tmp  *os.File
}

// createOutput opens the output named by -o ("" or "-" is standard
// output). Binary output to a terminal is refused.
func createOutput(path string, force, binary bool) (*output, error) {
	if path == "" || path == "-" {
		if binary && term.IsTerminal(int(os.Stdout.Fd())) {
			return nil, &exitError{code: exitUsage, err: errors.New("refusing to write a binary archive to a terminal"),
				hint: "give -o FILE, or redirect standard output"}
		}
		return &output{Writer: os.Stdout}, nil
	}
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return nil, &exitError{code: exitFailure, err: fmt.Errorf("%s: output file exists", path), hint: "give --force to replace it"}
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &output{Writer: &writeback{f: tmp}, path: path, tmp: tmp}, nil
}

// commit renames the finished temporary file into place.
func (o *output) commit(force bool) error {
	if o.tmp == nil {
		return nil
	}
	if err := o.tmp.Sync(); err != nil {
		o.abort()
		return err
	}
	if err := o.tmp.Close(); err != nil {
		o.abort()
		return err
	}
	if !force {
		// link(2) refuses to replace a file created meanwhile.
		if err := os.Link(o.tmp.Name(), o.path); err != nil {
			os.Remove(o.tmp.Name())
			return fmt.Errorf("%s: %w", o.path, err)
		}
		if err := os.Remove(o.tmp.Name()); err != nil {
			return err
		}
	} else if err := os.Rename(o.tmp.Name(), o.path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(o.path))
}

// syncDir makes a rename or link in dir durable: without it, a crash can
// lose the new name although the file's data were synced.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%s: sync: %w", dir, err)
	}
	return nil
}

// abort removes the temporary file: a failed command leaves nothing.
func (o *output) abort() {
	if o.tmp != nil {
		o.tmp.Close()
		os.Remove(o.tmp.Name())
	}
}

// inputErr names the input file in an error.
func inputErr(name string, err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{err: fmt.Errorf("%s: %w", name, err)}
}

// archiveArgs expands the ARCHIVE|DIR arguments of commands that take
// many archives: a directory stands for the regular files directly in it
// whose names do not start with '.', in name order (not recursive, so that
// a directory of archives is read as the tiering agent writes it).
func archiveArgs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.Name()[0] == '.' || !e.Type().IsRegular() {
				continue
			}
			out = append(out, filepath.Join(a, e.Name()))
		}
	}
	return out, nil
}

// printJSON writes v as indented JSON: the --json output of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
