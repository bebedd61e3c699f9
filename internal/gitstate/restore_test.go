package gitstate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// failingBundle serves a bundle file but fails with errBroken once n bytes
// have been read, as a stream from a store does when a chunk turns out
// corrupt or missing halfway.
type failingBundle struct {
	r io.Reader
	n int
}

var errBroken = errors.New("chunk 7 is corrupt")

func (f *failingBundle) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errBroken
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func (f *failingBundle) Close() error { return nil }

func sources(t *testing.T, paths []string, broken int, after int) []BundleSource {
	srcs := make([]BundleSource, len(paths))
	for i, p := range paths {
		srcs[i] = func(context.Context) (io.ReadCloser, error) {
			f, err := os.Open(p)
			if err != nil || i != broken {
				return f, err
			}
			t.Cleanup(func() { f.Close() })
			return &failingBundle{r: f, n: after}, nil
		}
	}
	return srcs
}

// chain builds a repository with a full and an incremental bundle, the
// second of which has prerequisites (so it goes through index-pack --stdin).
func chain(t *testing.T) (repo string, e *env) {
	repo = newRepo(t)
	for i := 0; i < 20; i++ {
		write(t, repo, filepath.Join("d", strings.Repeat("f", i+1)), strings.Repeat("line\n", 200*(i+1)))
	}
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-q", "-m", "many files")
	e = newEnv(t)
	e.capture(repo)
	write(t, repo, "d/f", strings.Repeat("changed\n", 500))
	git(t, repo, "commit", "-q", "-am", "change")
	write(t, repo, "wip.txt", "uncommitted\n")
	res := e.capture(repo)
	if res.Full || len(e.bundles) != 2 {
		t.Fatalf("want a chain of a full and an incremental bundle, got %d bundles (full %v)", len(e.bundles), res.Full)
	}
	return repo, e
}

// TestRestoreFromStreams restores from streams (no bundle files), and the
// result is exact and leaves no temporary pack behind.
func TestRestoreFromStreams(t *testing.T) {
	repo, e := chain(t)
	dir := filepath.Join(t.TempDir(), "r")
	if err := RestoreFrom(context.Background(), dir, e.states[1], sources(t, e.bundles, -1, 0)); err != nil {
		t.Fatal(err)
	}
	compareRepos(t, repo, dir)
	packs, err := filepath.Glob(filepath.Join(dir, ".git", "objects", "pack", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range packs {
		if strings.HasPrefix(filepath.Base(p), "tmp") {
			t.Errorf("temporary file %s left in the pack directory", p)
		}
	}
	if out := git(t, dir, "fsck", "--no-dangling", "--no-progress"); strings.TrimSpace(out) != "" {
		t.Errorf("git fsck of the restored repository: %s", out)
	}
}

// TestRestoreFromReadError: a bundle stream that fails midway (a corrupt
// chunk in the store) fails the restore with that error, whether it breaks
// in the header, in a full bundle's pack or in an incremental one's.
func TestRestoreFromReadError(t *testing.T) {
	_, e := chain(t)
	for _, tc := range []struct {
		name          string
		broken, after int
	}{
		{"header of the full bundle", 0, 10},
		{"pack of the full bundle", 0, int(fileSize(e.bundles[0]) / 2)},
		{"pack of the incremental bundle", 1, int(fileSize(e.bundles[1]) - 30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := RestoreFrom(context.Background(), filepath.Join(t.TempDir(), "r"), e.states[1], sources(t, e.bundles, tc.broken, tc.after))
			if !errors.Is(err, errBroken) {
				t.Fatalf("restore with a stream failing after %d bytes: %v, want the stream's error", tc.after, err)
			}
		})
	}
}

// TestRestoreFromDamagedBundle: a bundle that reads fine but is not what it
// should be (not a bundle, a truncated or altered pack, another object
// format) fails the restore.
func TestRestoreFromDamagedBundle(t *testing.T) {
	_, e := chain(t)
	full, err := os.ReadFile(e.bundles[0])
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Clone(full)
	altered[len(altered)-100] ^= 0xff
	v3 := bytes.Replace(full, []byte("# v2 git bundle\n"), []byte("# v3 git bundle\n@object-format=sha256\n"), 1)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"not a bundle", []byte("PK\x03\x04 a zip file\n"), "not a git bundle"},
		{"empty", nil, "truncated bundle header"},
		{"truncated pack", full[:len(full)-40], "index-pack"},
		{"altered pack", altered, "index-pack"},
		{"other object format", v3, "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "b")
			gittest.Write(t, dir, "b", string(tc.data))
			err := Restore(context.Background(), filepath.Join(dir, "r"), e.states[0], []string{p})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore from a damaged bundle: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestRestoreWithReverseIndex: a git that writes reverse indexes (the
// default from git 2.41) gets the full pack's .rev renamed with it.
func TestRestoreWithReverseIndex(t *testing.T) {
	repo, e := chain(t)
	saved := restoreConfig
	t.Cleanup(func() { restoreConfig = saved })
	restoreConfig = append(append([][2]string{}, saved...), [2]string{"pack.writeReverseIndex", "true"})
	dir := filepath.Join(t.TempDir(), "r")
	if err := Restore(context.Background(), dir, e.states[1], e.bundles); err != nil {
		t.Fatal(err)
	}
	compareRepos(t, repo, dir)
	idx, _ := filepath.Glob(filepath.Join(dir, ".git", "objects", "pack", "pack-*.idx"))
	revs, _ := filepath.Glob(filepath.Join(dir, ".git", "objects", "pack", "pack-*.rev"))
	tmps, _ := filepath.Glob(filepath.Join(dir, ".git", "objects", "pack", "tmp*"))
	if len(idx) != 2 || len(revs) == 0 || len(tmps) != 0 {
		t.Fatalf("pack directory: indexes %q, reverse indexes %q, temporary files %q; want 2 indexes, a reverse index and no temporary file", idx, revs, tmps)
	}
	if out := git(t, dir, "fsck", "--no-dangling", "--no-progress"); strings.TrimSpace(out) != "" {
		t.Errorf("git fsck of the restored repository: %s", out)
	}
}
