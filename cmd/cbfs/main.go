// Command cbfs converts, lists and verifies CBFS archives. See README.md
// and spec/cbfs-archive-v1.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/keys"
	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/cbfs/cbfs/tarconv"
	"github.com/spf13/cobra"
)

// Exit statuses (README "Exit statuses").
const (
	exitOK       = 0
	exitFailure  = 1 // anything not below: I/O errors, a full disk
	exitUsage    = 2 // bad flags or arguments, no key given
	exitDamaged  = 3 // an archive is damaged or was changed
	exitWrongKey = 4 // the key is not the archive's key
	exitBadInput = 5 // input is not a tar or not a CBFS archive, or a newer format version
	// exitConflict: an index was written but holds conflicts: two archives
	// of one sequence number hold the same path (spec cbfs-index-v1.md).
	exitConflict = 6
)

// usageError marks errors in how cbfs was called.
type usageError struct{ error }

// commandUsageError is a usage error of one command: its hint shows how
// that command is called.
type commandUsageError struct {
	error
	use string
}

// exitError carries an explicit status and an optional hint line.
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, interrupted := cancelOnSignal()
	root := newRoot()
	root.SetOut(stdout)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// Outputs were aborted through the context as it was cancelled;
		// the command has a moment to stop cleanly. One blocked reading
		// its input does not, and is not waited for.
		select {
		case err = <-done:
		case <-time.After(interruptGrace):
		}
	}
	if s := interrupted(); s != nil {
		exitInterrupted(s)
	}
	if err == nil && stdout.err != nil {
		err = &exitError{code: exitFailure, err: fmt.Errorf("standard output: %w", stdout.err)}
	}
	if err == nil {
		os.Exit(exitOK)
	}
	code, hint := classify(err)
	fmt.Fprintf(os.Stderr, "cbfs: %s\n", oneLine(err.Error()))
	if hint != "" {
		fmt.Fprintf(os.Stderr, "hint: %s\n", hint)
	}
	os.Exit(code)
}

// interruptGrace is how long a command interrupted by a signal may take
// to return after its context is cancelled.
const interruptGrace = time.Second

// cancelOnSignal returns a context that SIGINT, SIGTERM and SIGHUP cancel,
// and a function that says which signal did, if one did. Every output
// being written is a pending object of the store, aborted when the
// context is cancelled: a command stopped half way leaves nothing, as one
// that fails does. Directories being extracted keep what was complete, as
// with tar.
func cancelOnSignal() (context.Context, func() os.Signal) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	var got atomic.Value
	go func() {
		s := <-ch
		got.Store(s)
		cancel(fmt.Errorf("interrupted (%v)", s))
	}()
	return ctx, func() os.Signal {
		s, _ := got.Load().(os.Signal)
		return s
	}
}

// exitInterrupted exits with the status a shell gives a process killed by
// the signal (128 + its number), saying what was removed.
func exitInterrupted(s os.Signal) {
	// The aborts the cancellation started run on goroutines of their own.
	store.WaitOutputs(time.Second)
	// Uploads to an object store are aborted by requests of their own,
	// which may still be under way.
	store.WaitAborts(time.Minute)
	msg := fmt.Sprintf("cbfs: interrupted (%v)", s)
	if n := store.Interrupted(); n > 0 {
		msg += fmt.Sprintf(": %s removed", plural(n, "unfinished output file", "unfinished output files"))
	}
	fmt.Fprintln(os.Stderr, msg)
	code := 128 + 2 // SIGINT; os.Interrupt has no number of its own
	if sig, ok := s.(syscall.Signal); ok {
		code = 128 + int(sig)
	}
	os.Exit(code)
}

func oneLine(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}

// classify maps an error to its exit status and hint.
func classify(err error) (int, string) {
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.code != 0 {
			return ee.code, ee.hint
		}
		code, hint := classify(ee.err)
		if ee.hint != "" {
			hint = ee.hint
		}
		return code, hint
	}
	var cue commandUsageError
	if errors.As(err, &cue) {
		return exitUsage, "usage: " + cue.use
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage, "see 'cbfs help' for usage"
	}
	var ve *format.VersionError
	var te *tarconv.TarError
	var ke *keys.SizeError
	var fe *format.Error
	var ie *index.Error
	var aie *repo.ArchiveIDError
	var nre *repo.NotRekeyedError
	var de *tarconv.DecompressError
	switch {
	case errors.Is(err, format.ErrWrongKey):
		return exitWrongKey, "check -k/--key or CBFS_KEY_FILE: 'cbfs key id -k FILE' shows which key a file holds"
	case errors.As(err, &ve), errors.As(err, new(*index.VersionError)):
		return exitBadInput, ""
	case errors.Is(err, format.ErrNotCBFS), errors.Is(err, tarconv.ErrNotTar), errors.As(err, &te), errors.As(err, &de),
		errors.Is(err, index.ErrNotIndex):
		return exitBadInput, ""
	case errors.As(err, &ke):
		return exitUsage, ""
	case errors.As(err, new(*store.ConfigError)):
		return exitUsage, "see README.md, \"Archives in an object store\", for the settings"
	case errors.Is(err, store.ErrNotObject):
		return exitUsage, "an output in an object store is an object: s3://BUCKET/PREFIX/NAME"
	case errors.As(err, &fe), errors.As(err, &ie), errors.As(err, &aie), errors.As(err, &nre):
		return exitDamaged, ""
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrExist):
		return exitFailure, ""
	}
	return exitFailure, ""
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "cbfs",
		Short: "Convert, list and verify CBFS encrypted-name tar archives",
		Long: `cbfs converts CBFS archives to and from plain tar, packs directory trees,
lists and reads members, and verifies archives with or without the key.

A CBFS archive is a plain POSIX tar whose members are opaque: paths, metadata
and content are sealed with the file system's key (a file of exactly 32 raw
bytes). The format is specified in spec/cbfs-archive-v1.md.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       "-", // the template below says it all
	}
	root.SetVersionTemplate(versionText())
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{flagErr(err)} })
	for _, c := range commands {
		root.AddCommand(c())
	}
	progressFlags(root)
	root.PersistentFlags().StringVar(&store.EndpointFlag, "endpoint", "", "S3-compatible endpoint URL for s3:// locations (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)")
	root.InitDefaultCompletionCmd() // made now, so that usageArgs sees it
	root.SetHelpCommand(helpCommand())
	usageArgs(root)
	return root
}

// helpCommand is cobra's help command, but a topic it does not know is a
// usage error (cobra prints the root's help and exits 0).
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usageError{fmt.Errorf("unknown help topic %q: see 'cbfs help'", strings.Join(args, " "))}
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	}
}

// usageArgs makes argument-count errors usage errors (exit status 2), as
// flag errors are.
func usageArgs(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return commandUsageError{fmt.Errorf("%s: %w", strings.TrimPrefix(cmd.CommandPath(), "cbfs "), argCountErr(err)), cmd.UseLine()}
			}
			return nil
		}
	}
	if c.HasSubCommands() && !c.Runnable() {
		// A group of commands: its help, or a usage error for a command
		// it does not have (cobra would print the help and exit 0).
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return cmd.Help()
		}
	}
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{flagErr(err)} })
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

// argCounts are cobra's messages about how many arguments a command
// takes, reworded. The regular expressions here are compiled on first
// use, not at start-up: every command, error or not, would pay for them.
var argCounts = sync.OnceValue(func() []argCount {
	return []argCount{
		{regexp.MustCompile(`^accepts (\d+) arg\(s\), received (\d+)$`), "takes exactly %s, got %s"},
		{regexp.MustCompile(`^requires at least (\d+) arg\(s\), only received (\d+)$`), "needs at least %s, got %s"},
		{regexp.MustCompile(`^accepts at most (\d+) arg\(s\), received (\d+)$`), "takes at most %s, got %s"},
	}
})

type argCount struct {
	re   *regexp.Regexp
	with string
}

func argCountErr(err error) error {
	for _, a := range argCounts() {
		if m := a.re.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return fmt.Errorf(a.with, plural(n, "argument", "arguments"), m[2])
		}
	}
	return err
}

// strconvErr is how pflag passes on a number it could not parse:
// `strconv.ParseUint: parsing "x": invalid syntax`.
var strconvErr = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`strconv\.Parse\w+: parsing "(?:[^"\\]|\\.)*": `)
})

// durationErr is how pflag passes on a duration it could not parse.
var durationErr = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`time: [^"]*"(?:[^"\\]|\\.)*"$`) })

// flagErr rewords a flag error so that it speaks of the flag, not of the
// Go function that parsed it.
func flagErr(err error) error {
	msg := err.Error()
	if !strconvErr().MatchString(msg) && !durationErr().MatchString(msg) {
		return err
	}
	msg = strconvErr().ReplaceAllString(msg, "")
	msg = durationErr().ReplaceAllString(msg, "not a duration (such as 90s, 5m or 1h30m)")
	msg = strings.NewReplacer("invalid syntax", "not a whole number", "value out of range", "out of range").Replace(msg)
	return errors.New(msg)
}

// commands holds every subcommand's constructor. Each command's file adds
// its own in an init function, so that adding a command touches one file.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }
