package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// nobody is the user an agent's workspace belongs to in TestFilesAsTheyWere:
// a save as root reads every file, so the unreadable one needs another user.
const nobody = 65534

// TestFilesAsTheyWere is issue 14's acceptance round trip, on every store
// backend: a workspace holding names that are not valid UTF-8 (two that
// collide once JSON turns their bad bytes into U+FFFD), newlines, tabs and
// backslashes in names, a 255-byte name, a path longer than PATH_MAX, a
// 2 GiB sparse file with 4 KiB of data, a hard-link pair, a setuid file, a
// FIFO, a socket and a file its user cannot read, saved by that user (an
// unprivileged child process: as root every file is readable). Everything
// that can be kept comes back byte for byte (names, content, modes, times,
// the link as one inode, the sparse file with about 4 KiB allocated, the
// setuid bit only when asked for); the rest is left out, each with its
// reason, in the save's report and in the manifest, and the save succeeds.
func TestFilesAsTheyWere(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes a 2 GiB sparse file once per backend")
	}
	// Outside the test's private temporary directory, which the
	// unprivileged save could not enter.
	base, err := os.MkdirTemp("", "tether-astheywere-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	must(t, os.Chmod(base, 0o755))
	ws := filepath.Join(base, "ws")
	must(t, os.Mkdir(ws, 0o755))
	if len(ws) > 90 {
		t.Skipf("%s is too long for a socket path", ws)
	}

	byteNameWorkspace(t, ws) // collisions after U+FFFD, \t \n \\, 255 bytes
	makeSparse(t, filepath.Join(ws, "disk.img"), 2<<30, map[int64][]byte{1 << 30: randBytes(newRand(9), 4096)})
	writeFile(t, filepath.Join(ws, "links/a"), []byte("one inode, two names\n"), 0o644)
	must(t, os.Link(filepath.Join(ws, "links/a"), filepath.Join(ws, "links/b")))
	writeFile(t, filepath.Join(ws, "bin/suid"), []byte("#!/bin/sh\nid\n"), 0o755)
	must(t, unix.Mkfifo(filepath.Join(ws, "fifo"), 0o644))
	l, err := net.Listen("unix", filepath.Join(ws, "sock"))
	must(t, err)
	t.Cleanup(func() { l.Close() })
	root := os.Getuid() == 0
	if root {
		// The workspace is the agent's; chown drops setuid, so it is set after.
		must(t, filepath.WalkDir(ws, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, nobody, nobody)
		}))
	}
	must(t, syscall.Chmod(filepath.Join(ws, "bin/suid"), 04755))
	// Root's own file, which the agent cannot read (when the test is not
	// root, a file of the test's user that nobody may read).
	secretMode := os.FileMode(0o600)
	if !root {
		secretMode = 0
	}
	writeFile(t, filepath.Join(ws, "secret.txt"), []byte("root only\n"), secretMode)
	// Last, as nothing above can walk it: a path longer than PATH_MAX.
	deep := longPath(t, ws)

	leftOut := map[string]string{
		"fifo":       "a named pipe (FIFO): a snapshot cannot hold it",
		"sock":       "a socket: a snapshot cannot hold it",
		deep:         "cannot be examined: lstat: file name too long",
		"secret.txt": "cannot be opened: open: permission denied",
	}
	skip := func(rel string) bool {
		_, out := leftOut[rel]
		return out || rel == "deep" // the deep tree is checked on its own
	}
	want := treeDigestExcept(t, ws, skip)
	for _, name := range []string{"notes\xff.txt", "notes\xfe.txt", "tab\tnew\nline\\back.txt", strings.Repeat("n", 254) + "\xff", "disk.img", "links/b", "bin/suid"} {
		if !strings.Contains(want, "F "+name+" ") {
			t.Fatalf("the workspace lacks %q: %s", name, want)
		}
	}
	exe := unprivilegedCopy(t, base)

	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		if strings.HasPrefix(url, "file://") {
			// The backend's directory is inside the test's private one.
			dir := filepath.Join(base, "store-"+path.Base(t.Name()))
			must(t, os.Mkdir(dir, 0o755))
			if root {
				must(t, os.Chown(dir, nobody, nobody))
			}
			url = storetest.FileURL(dir)
		}
		st, stdout := saveAsNobody(t, exe, base, url, ws)

		// Left out, with its reason, in what the save reported (its
		// --json shows paths as DisplayPath does)...
		got := map[string]string{}
		for _, f := range st.LeftOut {
			got[f.Path] = f.Reason
		}
		for rel, reason := range leftOut {
			if got[DisplayPath(rel)] != reason {
				t.Errorf("save: %s left out for %q, want %q", DisplayPath(rel), got[DisplayPath(rel)], reason)
			}
		}
		if len(st.LeftOut) != len(leftOut) || st.Skipped != 2 {
			t.Errorf("save left out %d entries (%d skipped), want %d (2 skipped: the FIFO and the socket): %s", len(st.LeftOut), st.Skipped, len(leftOut), stdout)
		}
		// The 2 GiB file costs its 4 KiB of data (and the rest the little they are).
		if st.BytesRead > 64<<10 || st.BytesUploaded > 256<<10 {
			t.Errorf("save read %d bytes and uploaded %d, want a few KiB of each", st.BytesRead, st.BytesUploaded)
		}
		// ... and in the manifest, byte for byte.
		repo := openSession(t, url, "crash")
		m, err := repo.LoadManifest(ctx, st.ID)
		must(t, err)
		if m.Summary.LeftOut != len(leftOut) || len(m.LeftOut) != len(leftOut) {
			t.Errorf("manifest: %d left out counted, %d listed, want %d", m.Summary.LeftOut, len(m.LeftOut), len(leftOut))
		}
		for _, n := range m.LeftOut {
			if leftOut[n.Path] != n.Reason {
				t.Errorf("manifest: %s left out for %q, want %q", QuotePath(n.Path), n.Reason, leftOut[n.Path])
			}
		}

		out := filepath.Join(t.TempDir(), "out")
		rs, err := Restore(ctx, repo, out, RestoreOptions{KeepSetuid: true})
		must(t, err)
		if rs.LeftOut != len(leftOut) || rs.SetuidDropped != 0 {
			t.Errorf("restore: %d left out, %d setuid dropped; want %d and 0", rs.LeftOut, rs.SetuidDropped, len(leftOut))
		}
		// Names, content, modes (setuid included), sizes and times.
		sameDigests(t, want, treeDigestExcept(t, out, skip))
		if a := allocatedOf(t, filepath.Join(out, "disk.img")); a > 64<<10 {
			t.Errorf("disk.img restored with %d bytes allocated, want about 4 KiB", a)
		}
		inoA, nlink := inoOf(t, filepath.Join(out, "links/a"))
		if inoB, _ := inoOf(t, filepath.Join(out, "links/b")); inoB != inoA || nlink != 2 {
			t.Errorf("links/b is inode %d, links/a inode %d with %d links: want one inode with 2", inoB, inoA, nlink)
		}
		for rel := range leftOut {
			if rel == deep {
				continue // too long to lstat: below
			}
			if _, err := os.Lstat(filepath.Join(out, rel)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s, left out, is in the restored tree (%v)", rel, err)
			}
		}
		// The deep tree is there as far as the OS allows a path, and no further.
		if names, err := readDirNames(filepath.Join(out, path.Dir(deep))); err != nil || len(names) != 0 {
			t.Errorf("the deep tree's last directory within PATH_MAX: %d entries (%v), want it restored, empty", len(names), err)
		}

		// Without --keep-setuid the bit is dropped, and said so.
		out2 := filepath.Join(t.TempDir(), "out")
		rs, err = Restore(ctx, repo, out2, RestoreOptions{})
		must(t, err)
		if mode := modeOf(t, filepath.Join(out2, "bin/suid")); mode != 0o755 || rs.SetuidDropped != 1 {
			t.Errorf("without KeepSetuid: bin/suid has mode %o, %d dropped; want 755 and 1", mode, rs.SetuidDropped)
		}
	})
}

// openSession opens session (of namespace "default") on the store at url.
func openSession(t *testing.T, url, session string) *Repo {
	t.Helper()
	st, err := store.Open(context.Background(), url)
	must(t, err)
	t.Cleanup(func() { st.Close() })
	repo, err := OpenRepo(st, "default", session)
	must(t, err)
	return repo
}

// unprivilegedCopy copies the test binary into dir, where the user nobody
// can run it (go test builds it in a directory only its user may enter).
func unprivilegedCopy(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	must(t, err)
	in, err := os.Open(self)
	must(t, err)
	defer in.Close()
	exe := filepath.Join(dir, "snapshot.test")
	out, err := os.OpenFile(exe, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
	return exe
}

// saveAsNobody saves ws into session "crash" of url in a child process
// (childSave), as the user nobody when the test runs as root, and returns
// the stats it printed (its --json, as it were) and the raw output.
func saveAsNobody(t *testing.T, exe, home, url, ws string) (*SaveStats, string) {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Dir = home
	cmd.Env = append(os.Environ(), childEnv+"=save", "CHILD_STORE="+url, "CHILD_WORKSPACE="+ws, "CHILD_CACHE=", "HOME="+home)
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("save as an unprivileged user: %v\n%s", err, tail(stderr.String(), 4000))
	}
	var st SaveStats
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil || st.ID == "" {
		t.Fatalf("save printed %q (%v), stderr %s", stdout.String(), err, tail(stderr.String(), 4000))
	}
	return &st, stdout.String()
}
