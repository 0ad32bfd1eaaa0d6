package main

import (
	"fmt"
	"io"
	"os"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/store"
	"github.com/cbfs/cbfs/tarconv"
	"github.com/spf13/cobra"
)

func init() {
	register(newExportCmd)
}

func newExportCmd() *cobra.Command {
	var keyPath []string
	var outPath string
	var force, verbose bool
	var to treeOptions
	c := &cobra.Command{
		Use:   "export -k KEY [-o OUT] [ARCHIVE|-] | export -k KEY --index INDEX [-o OUT] ARCHIVES [PATH...]",
		Short: "Convert a CBFS archive back into a plain tar",
		Long: `export writes the plain tar a CBFS archive holds. An archive made by
'cbfs import' gives back the imported tar byte for byte; members written by
'cbfs pack' get pax headers. Every byte of the archive is authenticated: any
change makes export fail and name the member, and with -o no file is left.

When ARCHIVE is a file (standard input included, when it is one), its end
is checked before the first byte is written: the footer, the summary and
the layout they describe. A copy cut short or appended to is refused before
'cbfs export ... | tar x' has extracted anything. From a pipe the archive is
streamed, and such damage is found when its end is reached (status 3, after
the output so far was written).

` + treeUse,
		Example: `  cbfs export -k fs1.key -o backup.tar backup.cbfs
  cbfs export -k fs1.key backup.cbfs | tar tvf -
  cbfs export -k fs1.key --index fs1.index -o current.tar archives/
  cbfs export -k fs1.key --index fs1.index archives/ srv/data | tar tvf -`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if to.index == "" && len(args) > 1 {
				return commandUsageError{fmt.Errorf("export: takes at most 1 argument without --index, got %d", len(args)), c.UseLine()}
			}
			keys, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			if to.index != "" {
				return runExportTree(c, &to, keys, outPath, force, verbose, args)
			}
			var in io.ReadCloser
			var name string
			var size int64
			if len(args) == 1 && store.IsURL(args[0]) {
				// An object: its end is checked (one GET), then it is
				// read in one streaming GET.
				name = args[0]
				obj, err := store.OpenURL(c.Context(), name)
				if err != nil {
					return inputErr(name, err)
				}
				defer obj.Close()
				if err := checkObjectEnd(obj, name, keys); err != nil {
					return inputErr(name, err)
				}
				in, size = store.Stream(obj, 0), obj.Size()
			} else {
				in, name, err = openInput(args)
				if err != nil {
					return inputErr(name, err)
				}
				f, _ := in.(*os.File)
				if f == nil && name == "standard input" {
					f = os.Stdin
				}
				if err := checkEndFirst(f, name, keys); err != nil {
					in.Close()
					return inputErr(name, err)
				}
				size = inputSize(in)
			}
			defer in.Close()
			out, err := createOutput(c.Context(), outPath, force, true)
			if err != nil {
				return err
			}
			p := startProgress("export "+name, size)
			opt := tarconv.ExportOptions{Keys: keys[1:]}
			if verbose {
				list := memberLister(!isStdout(outPath), p)
				opt.OnMember = func(m *format.Meta) { list(m.Path) }
			}
			err = tarconv.ExportTar(c.Context(), out, p.reader(in), keys[0], opt)
			p.finish()
			if err != nil {
				out.abort()
				return inputErr(name, err)
			}
			return out.commit()
		},
	}
	keyFlag(c, &keyPath)
	c.Flags().StringVarP(&outPath, "output", "o", "", "tar file to write (default standard output)")
	c.Flags().BoolVar(&force, "force", false, "replace the output file if it exists")
	verboseFlag(c, &verbose)
	to.flags(c)
	return c
}

// checkEndFirst opens the archive's footer and summary when f is a
// regular file (read at offsets: the stream position does not move):
// damage at the end is found before any output, at the cost of two small
// reads.
func checkEndFirst(f *os.File, name string, keys []*crypt.Key) error {
	if f == nil {
		return nil
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil
	}
	return checkObjectEnd(format.NewSource(io.NewSectionReader(f, pos, st.Size()-pos), st.Size()-pos), name, keys)
}

// checkObjectEnd opens an archive's footer and summary, and checks the
// summary's entries without keeping them.
func checkObjectEnd(src format.Source, name string, keys []*crypt.Key) error {
	a, err := format.OpenArchive(src, keys...)
	if err == nil {
		noteKey(name, a.Header, keys)
		err = a.WalkEntries(func(format.Entry) error { return nil })
	}
	return err
}
