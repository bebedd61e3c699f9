package snapshot

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// leftOutReason returns the reason a save gave for leaving rel out ("" when
// it did not).
func leftOutReason(st *SaveStats, rel string) string {
	for _, f := range st.LeftOut {
		if f.Path == rel {
			return f.Reason
		}
	}
	return ""
}

// TestUnreadableEntriesLeftOut: each thing a save cannot read is left out
// with its reason, in SaveStats and in the manifest, and everything else is
// saved: the save succeeds.
func TestUnreadableEntriesLeftOut(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "keep/a.txt"), []byte("a\n"), 0o644)
	writeFile(t, filepath.Join(ws, "vanishes.txt"), []byte("v"), 0o644)
	writeFile(t, filepath.Join(ws, "becomes-link.txt"), []byte("l"), 0o644)
	writeFile(t, filepath.Join(ws, "becomes-dir.txt"), []byte("d"), 0o644)
	writeFile(t, filepath.Join(ws, "z-after.txt"), []byte("z\n"), 0o644)
	must(t, unix.Mkfifo(filepath.Join(ws, "fifo"), 0o644))
	if len(ws) > 90 {
		t.Skipf("%s is too long for a socket path", ws)
	}
	l, err := net.Listen("unix", filepath.Join(ws, "sock"))
	must(t, err)
	defer l.Close()
	// A path longer than PATH_MAX, built with mkdirat below a directory fd.
	deep := longPath(t, ws)
	unreadable := ""
	if os.Getuid() != 0 {
		unreadable = "secret.txt"
		writeFile(t, filepath.Join(ws, unreadable), []byte("s"), 0o000)
	}
	// Between the walk and the read: one file vanishes, one becomes a
	// symlink (open with O_NOFOLLOW fails), one a directory (open succeeds,
	// read fails with EISDIR).
	testHookBeforeRead = func(p string) {
		switch filepath.Base(p) {
		case "vanishes.txt":
			must(t, os.Remove(p))
		case "becomes-link.txt":
			must(t, os.Remove(p))
			must(t, os.Symlink("keep/a.txt", p))
		case "becomes-dir.txt":
			must(t, os.Remove(p))
			must(t, os.Mkdir(p, 0o755))
		}
	}
	defer func() { testHookBeforeRead = nil }()
	st := save(t, repo, ws, SaveOptions{})
	testHookBeforeRead = nil

	want := map[string]string{
		"vanishes.txt":     reasonVanished,
		"becomes-link.txt": "cannot be opened: open: too many levels of symbolic links",
		"becomes-dir.txt":  "cannot be read: read: is a directory",
		"fifo":             "a named pipe (FIFO): a snapshot cannot hold it",
		"sock":             "a socket: a snapshot cannot hold it",
		deep:               "cannot be examined: lstat: file name too long",
	}
	if unreadable != "" {
		want[unreadable] = "cannot be opened: open: permission denied"
	}
	for rel, reason := range want {
		if got := leftOutReason(st, rel); got != reason {
			t.Errorf("%s: left out with reason %q, want %q", ShortPath(rel), got, reason)
		}
	}
	if len(st.LeftOut) != len(want) {
		t.Errorf("left out %d entries, want %d: %+v", len(st.LeftOut), len(want), st.LeftOut)
	}
	// The manifest records them too, and ls counts them.
	m, err := repo.LoadManifest(ctx, st.ID)
	must(t, err)
	if m.Summary.LeftOut != len(want) || len(m.LeftOut) != len(want) {
		t.Fatalf("manifest: summary counts %d left out, lists %d, want %d", m.Summary.LeftOut, len(m.LeftOut), len(want))
	}
	for _, n := range m.LeftOut {
		if want[n.Path] != n.Reason {
			t.Errorf("manifest: %s left out for %q, want %q", ShortPath(n.Path), n.Reason, want[n.Path])
		}
	}
	infos, err := List(ctx, repo)
	must(t, err)
	if infos[len(infos)-1].Summary.LeftOut != len(want) {
		t.Fatalf("List: %+v", infos[len(infos)-1].Summary)
	}
	// Everything else is in the snapshot.
	out := filepath.Join(t.TempDir(), "out")
	rs, err := Restore(ctx, repo, out, RestoreOptions{})
	must(t, err)
	for rel, content := range map[string]string{"keep/a.txt": "a\n", "z-after.txt": "z\n"} {
		if got, err := os.ReadFile(filepath.Join(out, rel)); err != nil || string(got) != content {
			t.Errorf("%s restored as %q, %v", rel, got, err)
		}
	}
	if rs.LeftOut != len(want) {
		t.Errorf("restore reports %d left out, want %d", rs.LeftOut, len(want))
	}
	// The deep tree's directories up to PATH_MAX are there; the entry past it is not.
	if _, err := os.Lstat(filepath.Join(out, "deep")); err != nil {
		t.Errorf("the deep tree's top is not restored: %v", err)
	}
}

// longPath makes, under ws, nested directories whose path passes PATH_MAX,
// with a file at the bottom, and returns the workspace-relative path of the
// first directory whose path is too long for the OS.
func longPath(t *testing.T, ws string) string {
	t.Helper()
	name := strings.Repeat("p", 250)
	must(t, os.Mkdir(filepath.Join(ws, "deep"), 0o755))
	fd, err := unix.Open(filepath.Join(ws, "deep"), unix.O_DIRECTORY|unix.O_RDONLY, 0)
	must(t, err)
	rel, first := "deep", ""
	for i := 0; i < 20; i++ {
		must(t, unix.Mkdirat(fd, name, 0o755))
		next, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		must(t, err)
		unix.Close(fd)
		fd = next
		rel += "/" + name
		if first == "" && len(ws)+1+len(rel) >= unix.PathMax {
			first = rel
		}
	}
	f, err := unix.Openat(fd, "bottom.txt", unix.O_CREAT|unix.O_WRONLY, 0o644)
	must(t, err)
	unix.Close(f)
	unix.Close(fd)
	return first
}

// TestBrokenRepoSavedAsFiles: a repository under repos/ that git cannot
// capture (a corrupt loose object; a .git file naming a missing gitdir) is
// saved file by file, .git included, beside a healthy one captured as git
// state and the workspace's other files; restore says how each came back.
func TestBrokenRepoSavedAsFiles(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	gittest.Ordinary(t, filepath.Join(ws, "repos", "good"))
	gittest.Ordinary(t, filepath.Join(ws, "repos", "corrupt"))
	corruptLooseObject(t, filepath.Join(ws, "repos", "corrupt"))
	writeFile(t, filepath.Join(ws, "repos", "dangling", ".git"), []byte("gitdir: /nonexistent/tether-test/.git\n"), 0o644)
	writeFile(t, filepath.Join(ws, "repos", "dangling", "work.txt"), []byte("uncommitted work\n"), 0o644)
	writeFile(t, filepath.Join(ws, "notes.txt"), []byte("n\n"), 0o644)
	backdate(t, ws)
	st := save(t, repo, ws, SaveOptions{})
	asFiles := map[string]string{}
	for _, r := range st.ReposAsFiles {
		asFiles[r.Path] = r.Reason
	}
	if len(asFiles) != 2 || asFiles["repos/corrupt"] == "" || asFiles["repos/dangling"] == "" {
		t.Fatalf("repositories saved as files: %+v, want repos/corrupt and repos/dangling", st.ReposAsFiles)
	}
	if st.Repos != 1 {
		t.Fatalf("%d repositories captured as git state, want 1 (repos/good)", st.Repos)
	}
	out := filepath.Join(t.TempDir(), "out")
	rs, err := Restore(ctx, repo, out, RestoreOptions{})
	must(t, err)
	modes := map[string]string{}
	for _, r := range rs.Repos {
		modes[r.Path] = r.Mode
		if r.Mode == RepoModeFiles && r.Reason == "" {
			t.Errorf("%s: restored as files with no reason", r.Path)
		}
	}
	if modes["repos/good"] != RepoModeGit || modes["repos/corrupt"] != RepoModeFiles || modes["repos/dangling"] != RepoModeFiles || len(modes) != 3 {
		t.Fatalf("restore modes %v", modes)
	}
	// Byte for byte, .git included.
	assertSameTree(t, filepath.Join(ws, "repos", "corrupt"), filepath.Join(out, "repos", "corrupt"))
	assertSameTree(t, filepath.Join(ws, "repos", "dangling"), filepath.Join(out, "repos", "dangling"))
	if got, err := os.ReadFile(filepath.Join(out, "notes.txt")); err != nil || string(got) != "n\n" {
		t.Fatalf("notes.txt: %q, %v", got, err)
	}
	head := exec.Command("git", "-C", filepath.Join(out, "repos", "good"), "rev-parse", "HEAD")
	if b, err := head.CombinedOutput(); err != nil {
		t.Fatalf("repos/good after restore: git rev-parse HEAD: %v: %s", err, b)
	}
	m, err := repo.LoadManifest(ctx, st.ID)
	must(t, err)
	if m.Summary.ReposAsFiles != 2 || len(m.ReposAsFiles) != 2 {
		t.Fatalf("manifest: %+v, %+v", m.Summary, m.ReposAsFiles)
	}
}

// corruptLooseObject overwrites the loose object of HEAD's tree with bytes
// that do not inflate, as a disk error or a killed writer leaves one.
func corruptLooseObject(t *testing.T, dir string) {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD^{tree}").Output()
	must(t, err)
	id := strings.TrimSpace(string(out))
	p := filepath.Join(dir, ".git", "objects", id[:2], id[2:])
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("HEAD's tree is not a loose object: %v", err)
	}
	must(t, os.Chmod(p, 0o644))
	must(t, os.WriteFile(p, []byte("not zlib at all"), 0o444))
}
