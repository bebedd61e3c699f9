package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// openRepo opens a fresh session on the given store URL.
func openRepo(t testing.TB, url string) *Repo {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatalf("open store %s: %v", url, err)
	}
	t.Cleanup(func() { st.Close() })
	repo, err := OpenRepo(st, "default", "s1")
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// eachBackend runs fn once per store backend: file://, in-process gofakes3 and
// a real MinIO server.
func eachBackend(t *testing.T, fn func(t *testing.T, url string)) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.URL) })
	}
}

func writeFile(t testing.TB, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
}

// jsonl returns n bytes of transcript-like JSON lines.
func jsonl(rng *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"type":"assistant","seq":%d,"message":{"content":[{"type":"text","text":"step %d: %x"}]}}`+"\n", i, rng.Int63(), rng.Int63())
	}
	return b.Bytes()[:n]
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

// makeWorkspace builds the round-trip workspace of the acceptance criteria.
func makeWorkspace(t testing.TB, dir string) {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	writeFile(t, filepath.Join(dir, ".claude/projects/-workspace/6f1c.jsonl"), jsonl(rng, 20<<20), 0o600)
	writeFile(t, filepath.Join(dir, "artifacts/report.bin"), randBytes(rng, 3<<20+17), 0o644)
	writeFile(t, filepath.Join(dir, "artifacts/run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	writeFile(t, filepath.Join(dir, "artifacts/readonly.txt"), []byte("do not touch\n"), 0o444)
	writeFile(t, filepath.Join(dir, "a/b/c/d/deep.txt"), []byte("deep\n"), 0o640)
	writeFile(t, filepath.Join(dir, "file-uploads/Ünïcödé 文件 ☃.txt"), []byte("unicode name\n"), 0o644)
	writeFile(t, filepath.Join(dir, "empty-file"), nil, 0o644)
	if err := os.MkdirAll(filepath.Join(dir, "empty/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "private/secret"), []byte("s"), 0o600)
	if err := os.Chmod(filepath.Join(dir, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink("artifacts/report.bin", filepath.Join(dir, "link-rel")))
	must(t, os.Symlink("/etc/hostname", filepath.Join(dir, "link-abs")))
	must(t, os.Symlink("does-not-exist", filepath.Join(dir, "link-dangling")))
	backdate(t, dir)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// backdate sets every file's mtime an hour back, so the stat cache trusts it
// (a file modified within racyWindow of a save is read again next time).
func backdate(t testing.TB, dir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(p, old, old)
	}))
}

// treeDigest describes a tree: every entry's path, type, mode, size, mtime
// (files), link target and content hash. Two trees are equal when their
// digests are.
func treeDigest(t testing.TB, dir string) string {
	t.Helper()
	return treeDigestExcept(t, dir, nil)
}

// treeDigestExcept is treeDigest without the entries skip names (and, for
// a directory, what it holds).
func treeDigestExcept(t testing.TB, dir string, skip func(rel string) bool) string {
	t.Helper()
	var lines []string
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if skip != nil && skip(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		mode := fi.Sys().(*syscall.Stat_t).Mode & 07777
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			lines = append(lines, fmt.Sprintf("L %s -> %s", rel, target))
		case fi.IsDir():
			lines = append(lines, fmt.Sprintf("D %s %o", rel, mode))
		default:
			lines = append(lines, fmt.Sprintf("F %s %o %d %d %s", rel, mode, fi.Size(), fi.ModTime().UnixNano(), fileSum(t, p)[:16]))
		}
		return nil
	}))
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// fileSum is the SHA-256 of the content of the file at p, read as a
// stream: a 2 GiB sparse file is read (its holes as zeros) without being
// held in memory.
func fileSum(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.CopyBuffer(h, f, make([]byte, 1<<20))
	must(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func assertSameTree(t testing.TB, want, got string) {
	t.Helper()
	assertSameTreeExcept(t, want, got, nil)
}

// assertSameTreeExcept compares two trees but for the entries skip names.
func assertSameTreeExcept(t testing.TB, want, got string, skip func(rel string) bool) {
	t.Helper()
	sameDigests(t, treeDigestExcept(t, want, skip), treeDigestExcept(t, got, skip))
}

// sameDigests fails the test at the first line where two tree digests differ.
func sameDigests(t testing.TB, w, g string) {
	t.Helper()
	if w != g {
		wl, gl := strings.Split(w, "\n"), strings.Split(g, "\n")
		for i := 0; i < len(wl) || i < len(gl); i++ {
			var a, b string
			if i < len(wl) {
				a = wl[i]
			}
			if i < len(gl) {
				b = gl[i]
			}
			if a != b {
				t.Fatalf("trees differ at line %d:\n want %s\n  got %s", i, a, b)
			}
		}
	}
}

func save(t testing.TB, repo *Repo, ws string, opts SaveOptions) *SaveStats {
	t.Helper()
	s, err := NewSaver(repo, ws, opts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Save(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }

// restoreRefuses stores m as it is (no validation on the way) and checks
// that a restore of it fails saying want, with nothing written.
func restoreRefuses(t *testing.T, repo *Repo, m *Manifest, want string) {
	t.Helper()
	raw, err := marshalManifest(m)
	must(t, err)
	must(t, repo.st.PutIfAbsent(context.Background(), repo.manifestKey(m.ID), encode(raw)))
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Restore(context.Background(), repo, out, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("restore: %v, want it to say %q", err, want)
	}
	assertEmpty(t, out)
}
