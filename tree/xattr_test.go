package tree

// Issue 19, item 1: every xattr pack can read (POSIX ACLs, capabilities,
// SELinux labels, trusted.*) comes back through extract and through
// export and GNU tar, as getfattr, getfacl and getcap see it.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/tarconv"
)

// run runs a tool in dir and returns its standard output; any failure or
// output on standard error fails the test.
func run(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// sbinTool is pkTool that also looks in /usr/sbin and /sbin, where
// setcap and getcap live and a PATH may not reach.
func sbinTool(t *testing.T, name string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin"} {
			if p := filepath.Join(d, name); fileExists(p) {
				return p
			}
		}
	}
	return testutil.Tool(t, name)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// privTree is a tree holding each kind of privileged xattr, and what
// getfattr, getfacl and getcap say of it.
type privTree struct {
	parent, root string
}

// buildPrivTree makes the tree, with each attribute set by the system's
// own tools: an access and a default ACL on a directory, an access ACL,
// a SELinux label, a trusted.* and a user.* xattr on a file, and a file
// capability on a file owned by another user (extract's chown would clear
// a capability set before it).
func buildPrivTree(t *testing.T, tools map[string]string) *privTree {
	t.Helper()
	parent := t.TempDir()
	tr := &privTree{parent: parent, root: filepath.Join(parent, "src")}
	p := func(rel string) string { return filepath.Join(tr.root, rel) }
	if err := os.MkdirAll(p("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"f", "d/inner", "ping"} {
		if err := os.WriteFile(p(f), []byte(f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(p("ping"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	run(t, tr.root, tools["setfacl"], "-m", "u:1234:rw,g:5678:r", "f")
	run(t, tr.root, tools["setfacl"], "-m", "u:1234:rx", "d")
	run(t, tr.root, tools["setfacl"], "-d", "-m", "u:1234:rwx,g:5678:rx", "d")
	run(t, tr.root, tools["setfattr"], "-n", "security.selinux", "-v", "system_u:object_r:bin_t:s0", "f")
	run(t, tr.root, tools["setfattr"], "-n", "trusted.note", "-v", "for root", "f")
	run(t, tr.root, tools["setfattr"], "-n", "user.note", "-v", "anyone", "f")
	run(t, tr.root, tools["setcap"], "cap_net_raw+ep", "ping")
	return tr
}

// privView is the tree as getfattr, getfacl and getcap list it, relative
// to its root.
func privView(t *testing.T, tools map[string]string, root string) string {
	t.Helper()
	return run(t, root, tools["getfattr"], "-R", "-d", "-m", "-", "-h", ".") +
		run(t, root, tools["getfacl"], "-R", "-n", "-p", ".") +
		run(t, root, tools["getcap"], "-r", ".")
}

// TestPrivilegedXattrs: capability, ACLs (access and default), a
// SELinux-style label and a trusted xattr go through pack -> extract and
// through pack -> export -> GNU tar --xattrs --xattrs-include='*' --acls
// and come back as they were. /tmp here is ext4, which keeps them all
// (tmpfs keeps them too, with CONFIG_TMPFS_POSIX_ACL and CONFIG_TMPFS_XATTR).
func TestPrivilegedXattrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: setting capabilities, trusted.* and other owners")
	}
	tools := map[string]string{}
	for _, n := range []string{"setfacl", "getfacl", "setfattr", "getfattr", "setcap", "getcap", "tar"} {
		tools[n] = sbinTool(t, n)
	}
	tr := buildPrivTree(t, tools)
	want := privView(t, tools, tr.root)
	for _, must := range []string{"security.selinux=\"system_u:object_r:bin_t:s0\"", "trusted.note=\"for root\"",
		"user.note=\"anyone\"", "system.posix_acl_access=", "system.posix_acl_default=",
		"user:1234:rw-", "group:5678:r--", "default:user:1234:rwx", "default:group:5678:r-x", "./ping cap_net_raw=ep"} {
		if !strings.Contains(want, must) {
			t.Fatalf("test setup: the source tree lacks %q (the file system may not keep it):\n%s", must, want)
		}
	}
	arch, _, problems := packBytes(t, PackOptions{WriterOptions: format.WriterOptions{Compress: true}}, tr.root)
	if len(problems) != 0 {
		t.Fatalf("pack reported %v", problems)
	}

	t.Run("extract", func(t *testing.T) {
		dest := t.TempDir()
		st, problems := extractBytes(t, arch, dest, ExtractOptions{SameOwner: true})
		if len(problems) != 0 {
			t.Fatalf("extract reported %v (stats %+v)", problems, st)
		}
		if got := privView(t, tools, filepath.Join(dest, "src")); got != want {
			t.Fatalf("extracted tree:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("no-setid", func(t *testing.T) {
		// Capabilities are rights, as set-id bits are: --no-setid drops
		// them, with a note; everything else is restored.
		dest := t.TempDir()
		_, problems := extractBytes(t, arch, dest, ExtractOptions{SameOwner: true, NoSetID: true})
		if len(problems) != 1 || problems[0].Kind != Note || problems[0].Path != "src/ping" || !strings.Contains(problems[0].What, "security.capability") {
			t.Fatalf("problems %v, want one note naming src/ping's security.capability", problems)
		}
		got := privView(t, tools, filepath.Join(dest, "src"))
		if strings.Contains(got, "cap_net_raw") || !strings.Contains(got, "default:user:1234:rwx") {
			t.Fatalf("extracted tree:\n%s", got)
		}
	})

	t.Run("export-gnu-tar", func(t *testing.T) {
		var tarBuf bytes.Buffer
		if err := tarconv.ExportTar(context.Background(), &tarBuf, bytes.NewReader(arch), testutil.Key(t, 3), tarconv.ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		// GNU tar --acls restores ACLs from its text records only.
		for _, rec := range []string{" SCHILY.acl.access=user::rw-\nuser:1234:rw-\ngroup::r--\ngroup:5678:r--\nmask::rw-\nother::r--\n",
			" SCHILY.acl.default=user::rwx\nuser:1234:rwx\ngroup::r-x\ngroup:5678:r-x\nmask::rwx\nother::r-x\n",
			" SCHILY.xattr.security.capability=", " SCHILY.xattr.trusted.note=for root\n"} {
			if !bytes.Contains(tarBuf.Bytes(), []byte(rec)) {
				t.Fatalf("the exported tar has no record %q", rec)
			}
		}
		dir := t.TempDir()
		tarPath := filepath.Join(dir, "x.tar")
		if err := os.WriteFile(tarPath, tarBuf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		run(t, out, tools["tar"], "--xattrs", "--xattrs-include=*", "--acls", "-xpf", tarPath)
		if got := privView(t, tools, filepath.Join(out, "src")); got != want {
			t.Fatalf("GNU tar extracted:\n%s\nwant:\n%s", got, want)
		}
	})
}

// TestXattrsNotRoot: a user other than root gets the user.* xattrs back;
// the others are not attempted, and one note counts and names them.
func TestXattrsNotRoot(t *testing.T) {
	var notes []Problem
	x := &extractor{euid: 1000, opt: ExtractOptions{Report: func(p Problem) { notes = append(notes, p) }}}
	for _, n := range []string{"system.posix_acl_access", "security.capability", "security.selinux", "trusted.a", "trusted.a"} {
		if x.mayRestore("f", n) {
			t.Errorf("%s would be restored by uid 1000", n)
		}
	}
	if !x.mayRestore("f", "user.a") {
		t.Error("user.a would not be restored")
	}
	if x.otherXattrs != 5 || strings.Join(x.otherNames, ",") != "system.posix_acl_access,security.capability,security.selinux,trusted.a" {
		t.Errorf("counted %d, named %q", x.otherXattrs, x.otherNames)
	}
	if len(notes) != 0 {
		t.Errorf("reported %v before the end", notes)
	}
}
