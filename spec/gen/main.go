// Command gen writes the test vectors of the CBFS formats into a
// directory (make vectors: go run ./spec/gen -o spec/vectors). Every byte
// comes from a fixed seed, so running it again gives identical files.
// Files in the directory that are not vectors (but README.md) are
// removed, so a renamed vector leaves nothing stale behind.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cbfs/cbfs/spec/internal/vecgen"
)

func main() {
	out := flag.String("o", "spec/vectors", "output directory")
	flag.Parse()
	n, err := vecgen.WriteDir(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	fmt.Printf("%d vectors in %s\n", n, *out)
}
