package main

import (
	"github.com/cbfs/cbfs/convert"
	"github.com/spf13/cobra"
)

func init() {
	register(newExportCmd)
}

func newExportCmd() *cobra.Command {
	var keyPath, outPath string
	var force bool
	c := &cobra.Command{
		Use:   "export -k KEY [-o OUT] [ARCHIVE|-]",
		Short: "Convert a CBFS archive back into a plain tar",
		Long: `export writes the plain tar a CBFS archive holds. An archive made by
'cbfs import' gives back the imported tar byte for byte; members written by
'cbfs pack' get pax headers. Every byte of the archive is authenticated: any
change makes export fail and name the member, and with -o no file is left.`,
		Example: `  cbfs export -k fs1.key -o backup.tar backup.cbfs
  cbfs export -k fs1.key backup.cbfs | tar tvf -`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			key, err := loadKey(keyPath)
			if err != nil {
				return err
			}
			in, name, err := openInput(args)
			if err != nil {
				return inputErr(name, err)
			}
			defer in.Close()
			out, err := createOutput(outPath, force, true)
			if err != nil {
				return err
			}
			p := startProgress("export "+name, inputSize(in))
			err = convert.ExportTar(out, p.reader(in), key)
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
	return c
}
