//go:build linux

package tree

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cbfs/cbfs/format"
	"golang.org/x/sys/unix"
)

// TestExtractSwapRace runs extract as root into a directory where a racer
// swaps every node the moment it appears (seen through inotify) for a
// symlink or a hard link to a file outside the destination, or a
// directory for one owned by another user, as anyone who can write into
// DEST could. Extract must never change what the racer put there: the
// outside file's mode, owner, times, xattrs and content, and the racer's
// directories, stay as they were. An extract that set attributes by name
// after creating a node (chmod following a symlink, chown or utimes
// landing on a hard link) fails this within the first round.
func TestExtractSwapRace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the race is about what extract does with root's rights: run as root")
	}
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("root's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(victim, "user.victim", []byte("v"), 0); err != nil {
		t.Skipf("the test file system has no user xattrs: %v", err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	if err := os.Chtimes(victim, old, old); err != nil {
		t.Fatal(err)
	}
	victimDir := filepath.Join(outside, "dir")
	if err := os.Mkdir(victimDir, 0o700); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, victim)
	beforeDir := snapshot(t, victimDir)

	arch := craftArchive(t, raceMembers(600)...)
	var swaps, caught atomic.Int64
	var attackerDirs []string
	for round := range 4 {
		dest := filepath.Join(base, fmt.Sprintf("dest%d", round))
		if err := os.Mkdir(dest, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dest, 0o1777) // a shared directory, as /tmp is
		r := startRacer(t, dest, victim, victimDir)
		a, _ := openBytes(t, arch)
		opt := ExtractOptions{SameOwner: true, NumericOwner: true, Report: func(p Problem) {
			if strings.Contains(p.What, "replaced while being extracted") {
				caught.Add(1)
			}
		}}
		if _, err := Extract(context.Background(), a, dest, opt); err != nil {
			t.Fatal(err)
		}
		swaps.Add(r.stop())
		attackerDirs = append(attackerDirs, r.dirs...)
	}
	t.Logf("%d nodes swapped by the racer, %d swaps caught by extract", swaps.Load(), caught.Load())
	if swaps.Load() == 0 {
		t.Fatal("the racer swapped nothing: the test proves nothing")
	}
	if got := snapshot(t, victim); got != before {
		t.Errorf("the file outside DEST was changed through a swapped node:\nbefore %s\nafter  %s", before, got)
	}
	if got := snapshot(t, victimDir); got != beforeDir {
		t.Errorf("the directory outside DEST was changed:\nbefore %s\nafter  %s", beforeDir, got)
	}
	changed, example := 0, ""
	for _, d := range attackerDirs {
		var st unix.Stat_t
		if err := unix.Lstat(d, &st); err != nil {
			continue
		}
		if st.Uid != 65534 || st.Mode&0o7777 != 0o700 {
			changed++
			example = fmt.Sprintf("%s: uid %d, mode %o", d, st.Uid, st.Mode&0o7777)
		}
	}
	if changed > 0 {
		t.Errorf("%d of %d directories swapped in by the racer were changed by extract, e.g. %s", changed, len(attackerDirs), example)
	}
}

// raceMembers are n of each kind that sets attributes after creation,
// all directly in DEST (where the racer watches), with set-id modes, an
// owner to restore, old times and xattrs.
func raceMembers(n int) []crafted {
	var ms []crafted
	t := format.Time{Sec: 946684800, Nsec: 1, Set: true}
	for i := range n {
		common := func(typ format.Type, name string, mode uint32) format.Meta {
			return format.Meta{Type: typ, Path: []byte(name), Mode: mode, UID: 4242, GID: 4242, MTime: t, ATime: t}
		}
		fifo := common(format.TypeFifo, fmt.Sprintf("p%05d", i), 0o6777)
		dev := common(format.TypeChar, fmt.Sprintf("c%05d", i), 0o6666)
		dev.DevMajor, dev.DevMinor = 1, 3
		f := common(format.TypeRegular, fmt.Sprintf("f%05d", i), 0o6755)
		f.Size = 3
		f.Xattrs = []format.Xattr{{Name: "user.attacked", Value: []byte("yes")}}
		d := common(format.TypeDir, fmt.Sprintf("d%05d", i), 0o2777)
		d.Xattrs = []format.Xattr{{Name: "user.attacked", Value: []byte("yes")}}
		l := common(format.TypeSymlink, fmt.Sprintf("l%05d", i), 0o777)
		l.Link = []byte("somewhere")
		ms = append(ms, crafted{fifo, ""}, crafted{dev, ""}, crafted{f, "abc"}, crafted{d, ""}, crafted{l, ""})
	}
	return ms
}

// snapshot is what extract must not change about a file: content, mode,
// owner, times and xattrs.
func snapshot(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	var content []byte
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		// O_NOATIME: reading must not change the times compared.
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOATIME|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		content = make([]byte, 256)
		n, _ := unix.Read(fd, content)
		content = content[:max(n, 0)]
		unix.Close(fd)
	}
	names, _ := growRead(func(b []byte) (int, error) { return unix.Llistxattr(path, b) })
	var xs []string
	for _, n := range bytes.Split(bytes.TrimRight(names, "\x00"), []byte{0}) {
		if len(n) == 0 {
			continue
		}
		v, _ := growRead(func(b []byte) (int, error) { return unix.Lgetxattr(path, string(n), b) })
		xs = append(xs, string(n)+"="+string(v))
	}
	return fmt.Sprintf("mode %o uid %d gid %d mtime %d.%09d atime %d.%09d xattrs %q content %q",
		st.Mode, st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec, st.Atim.Sec, st.Atim.Nsec, xs, content)
}

// racer watches a directory with inotify and swaps each new entry: a
// file for a symlink to the victim or a hard link to it (in turn), a
// directory for a symlink to the victim directory or for a directory of
// another user (uid 65534, mode 0700).
type racer struct {
	fd    int
	done  chan struct{}
	wg    sync.WaitGroup
	swaps int64
	dirs  []string
	// staged are directories of uid 65534 waiting to be swapped in.
	staged  []string
	nextDir int
}

func startRacer(t *testing.T, dir, victim, victimDir string) *racer {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Skipf("no inotify: %v", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE); err != nil {
		unix.Close(fd)
		t.Skipf("no inotify: %v", err)
	}
	r := &racer{fd: fd, done: make(chan struct{})}
	stage := dir + ".staged"
	if err := os.Mkdir(stage, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		p := filepath.Join(stage, fmt.Sprint(i))
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		r.staged = append(r.staged, p)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 64<<10)
		n := 0
		seen := map[string]bool{} // its own creations raise events too
		for {
			k, err := unix.Read(fd, buf)
			if err == unix.EAGAIN {
				select {
				case <-r.done:
					return
				default:
				}
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				unix.Poll(pfd, 20)
				continue
			}
			if err != nil || k <= 0 {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= k; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				off += unix.SizeofInotifyEvent + int(ev.Len)
				name := string(bytes.TrimRight(nameBytes, "\x00"))
				if seen[name] {
					continue
				}
				seen[name] = true
				p := filepath.Join(dir, name)
				n++
				if ev.Mask&unix.IN_ISDIR != 0 {
					if unix.Rmdir(p) != nil {
						continue
					}
					if n%2 == 0 {
						if unix.Symlink(victimDir, p) == nil {
							r.swaps++
						}
					} else if r.nextDir < len(r.staged) && unix.Rename(r.staged[r.nextDir], p) == nil {
						// Made beforehand and renamed in: an attacker's
						// directory is theirs from the start.
						r.nextDir++
						r.dirs = append(r.dirs, p)
						r.swaps++
					}
					continue
				}
				if unix.Unlink(p) != nil {
					continue
				}
				if n%2 == 0 {
					if unix.Symlink(victim, p) == nil {
						r.swaps++
					}
				} else if unix.Link(victim, p) == nil {
					r.swaps++
				}
			}
		}
	}()
	return r
}

// stop ends the racer and returns how many nodes it swapped.
func (r *racer) stop() int64 {
	close(r.done)
	r.wg.Wait()
	unix.Close(r.fd)
	return r.swaps
}
