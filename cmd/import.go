package main

import (
	"fmt"
	"os"

	"github.com/cbfs/cbfs/convert"
	"github.com/cbfs/cbfs/format"
	"github.com/spf13/cobra"
)

func init() {
	register(newImportCmd)
}

// writeOptions are the flags of every command that writes an archive.
type writeOptions struct {
	keyPath  string
	out      string
	force    bool
	compress string
	seq      uint64
}

func (o *writeOptions) flags(c *cobra.Command) {
	keyFlag(c, &o.keyPath)
	c.Flags().StringVarP(&o.out, "output", "o", "", "archive to write (default standard output)")
	c.Flags().BoolVar(&o.force, "force", false, "replace the output file if it exists")
	c.Flags().StringVar(&o.compress, "compress", "lz4", "chunk compression: lz4 or none")
	c.Flags().Uint64Var(&o.seq, "seq", 0, "sequence number of the archive among its file system's archives")
}

func (o *writeOptions) writer() (format.WriterOptions, error) {
	wo := format.WriterOptions{Sequence: o.seq}
	switch o.compress {
	case "lz4":
		wo.Compress = true
	case "none":
	default:
		return wo, usageError{fmt.Errorf("--compress %q: want lz4 or none", o.compress)}
	}
	return wo, nil
}

func newImportCmd() *cobra.Command {
	var o writeOptions
	c := &cobra.Command{
		Use:   "import -k KEY [-o OUT] [TAR|-]",
		Short: "Convert a plain tar into a CBFS archive, losslessly",
		Long: `import reads a plain tar (any format: gnu, oldgnu, pax, ustar, v7, star,
sparse, xattrs) and writes a CBFS archive. Every byte of the input is kept:
'cbfs export' gives the same tar back, byte for byte. It streams: it works in
a pipe and its memory does not grow with the input.`,
		Example: `  cbfs import -k fs1.key -o backup.cbfs backup.tar
  tar cf - dir | cbfs import -k fs1.key > dir.cbfs`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			wo, err := o.writer()
			if err != nil {
				return err
			}
			key, err := loadKey(o.keyPath)
			if err != nil {
				return err
			}
			in, name, err := openInput(args)
			if err != nil {
				return inputErr(name, err)
			}
			defer in.Close()
			out, err := createOutput(o.out, o.force, true)
			if err != nil {
				return err
			}
			st, err := convert.ImportTar(out, in, key, wo)
			if err != nil {
				out.abort()
				return inputErr(name, err)
			}
			if err := out.commit(o.force); err != nil {
				return err
			}
			if o.out != "" && o.out != "-" {
				fmt.Fprintf(os.Stderr, "cbfs: imported %d entries (%d bytes) from %s into %s\n", st.Entries, st.InputBytes, name, o.out)
			}
			return nil
		},
	}
	o.flags(c)
	return c
}
