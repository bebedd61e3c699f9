package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// putManifest stores a hand-made manifest as the next snapshot, with real
// chunks for its files' contents.
func putManifest(t *testing.T, repo *Repo, entries []Entry, contents map[string]string) string {
	t.Helper()
	ctx := context.Background()
	for i := range entries {
		if c, ok := contents[entries[i].Path]; ok {
			id := hashID([]byte(c))
			_, err := repo.writeChunk(ctx, id, []byte(c))
			must(t, err)
			entries[i].Chunks = []Ref{{ID: id, Len: int64(len(c))}}
			entries[i].Size = int64(len(c))
		}
	}
	ids, err := repo.SnapshotIDs(ctx)
	must(t, err)
	id := FormatID(uint64(len(ids) + 1))
	raw, err := marshalManifest(&Manifest{Version: 1, ID: id, Namespace: repo.Namespace, Session: repo.Session, Time: time.Now(), Entries: entries})
	must(t, err)
	must(t, repo.st.PutIfAbsent(ctx, repo.manifestKey(id), encode(raw)))
	return id
}

func TestRestoreRefusesEscapes(t *testing.T) {
	cases := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"dotdot", []Entry{{Path: "../x", Type: TypeFile, Mode: 0o644}}, "escapes the target"},
		{"dotdot-inside", []Entry{{Path: "a", Type: TypeDir, Mode: 0o755}, {Path: "a/../../x", Type: TypeFile, Mode: 0o644}}, "not clean"},
		{"absolute", []Entry{{Path: "/tmp/x", Type: TypeFile, Mode: 0o644}}, "absolute path"},
		{"symlink-parent", []Entry{{Path: "link", Type: TypeSymlink, Target: "OUTSIDE"}, {Path: "link/x", Type: TypeFile, Mode: 0o644}}, "is a symlink, not a directory"},
		{"missing-parent", []Entry{{Path: "nodir/x", Type: TypeFile, Mode: 0o644}}, "without) its parent"},
		{"duplicate", []Entry{{Path: "x", Type: TypeFile, Mode: 0o644}, {Path: "x", Type: TypeFile, Mode: 0o644}}, "appears twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := openRepo(t, "file://"+t.TempDir())
			root := t.TempDir()
			outside := filepath.Join(root, "outside")
			must(t, os.Mkdir(outside, 0o755))
			for i := range tc.entries {
				tc.entries[i].Target = strings.ReplaceAll(tc.entries[i].Target, "OUTSIDE", outside)
			}
			contents := map[string]string{}
			for _, e := range tc.entries {
				if e.Type == TypeFile {
					contents[e.Path] = "pwned\n"
				}
			}
			putManifest(t, repo, tc.entries, contents)
			target := filepath.Join(root, "target")
			_, err := Restore(context.Background(), repo, target, RestoreOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore of a manifest with %s: err = %v, want it to say %q", tc.name, err, tc.want)
			}
			if names, _ := os.ReadDir(outside); len(names) != 0 {
				t.Fatalf("restore wrote outside the target: %v", names)
			}
			if _, err := os.Stat(filepath.Join(root, "x")); !os.IsNotExist(err) {
				t.Fatal("restore wrote next to the target")
			}
			if names, _ := os.ReadDir(target); len(names) != 0 {
				t.Fatalf("refused restore left %v in the target", names)
			}
		})
	}
}

func TestCorruptChunkIsNamed(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo := openRepo(t, url)
		ws := t.TempDir()
		writeFile(t, filepath.Join(ws, "a.txt"), []byte("the original content of a\n"), 0o644)
		writeFile(t, filepath.Join(ws, "b.txt"), []byte("b stays fine\n"), 0o644)
		save(t, repo, ws, SaveOptions{})
		bad := repo.objectKey(hashID([]byte("the original content of a\n")))
		must(t, repo.st.Put(ctx, bad, encode([]byte("the tampered content of a\n"))))

		_, err := Restore(ctx, repo, filepath.Join(t.TempDir(), "out"), RestoreOptions{})
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Key != bad || !strings.Contains(err.Error(), bad) {
			t.Fatalf("restore with a corrupt chunk: %v, want an error naming %s", err, bad)
		}
		rep, err := Verify(ctx, repo, VerifyOptions{})
		must(t, err)
		if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], bad) || !strings.Contains(rep.Problems[0], FormatID(1)) {
			t.Fatalf("verify problems = %q, want one naming %s and snapshot 1", rep.Problems, bad)
		}

		// A missing chunk is named too, and verify --quick sees it.
		must(t, repo.st.Delete(ctx, bad))
		_, err = Restore(ctx, repo, filepath.Join(t.TempDir(), "out2"), RestoreOptions{})
		var me *MissingError
		if !errors.As(err, &me) || me.Key != bad {
			t.Fatalf("restore with a missing chunk: %v", err)
		}
		rep, err = Verify(ctx, repo, VerifyOptions{Quick: true})
		must(t, err)
		if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "missing") {
			t.Fatalf("quick verify problems = %q", rep.Problems)
		}
	})
}

func TestBadNames(t *testing.T) {
	for _, n := range []string{"", "UPPER", "has_underscore", "-lead", "trail-", "a/b", "..", strings.Repeat("x", 64)} {
		if _, err := OpenRepo(nil, n, "s"); err == nil {
			t.Errorf("namespace %q accepted", n)
		}
		if _, err := OpenRepo(nil, "default", n); err == nil {
			t.Errorf("session %q accepted", n)
		}
	}
	if _, err := OpenRepo(nil, "team-a", "s-01"); err != nil {
		t.Fatal(err)
	}
}

func TestInterruptedMoveIsFinished(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	makeWorkspace(t, ws)
	save(t, repo, ws, SaveOptions{})
	target := filepath.Join(t.TempDir(), "target")
	// Build the staging directory completely, then move only one entry, as a
	// crash during moveIntoPlace would leave it.
	staging := filepath.Join(target, stagingName)
	tree := filepath.Join(staging, stagingTree)
	must(t, os.MkdirAll(tree, 0o700))
	m, err := repo.LoadManifest(ctx, FormatID(1))
	must(t, err)
	must(t, build(ctx, repo, m, tree, RestoreOptions{Fetches: 4}))
	must(t, os.WriteFile(filepath.Join(staging, completeMarker), []byte(m.ID), 0o600))
	must(t, os.Rename(filepath.Join(tree, "artifacts"), filepath.Join(target, "artifacts")))

	_, err = Restore(ctx, repo, target, RestoreOptions{})
	must(t, err)
	assertSameTree(t, ws, target)
}

// TestReservedLookingNames: user files whose names look like restore's own
// scratch names are saved and restored like any other.
func TestReservedLookingNames(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	for _, n := range []string{".tether-restore-complete", ".tether-bundles", "complete", "tree", "scratch", ".tether-restore-x"} {
		writeFile(t, filepath.Join(ws, n), []byte("user file "+n), 0o644)
	}
	save(t, repo, ws, SaveOptions{})
	out := filepath.Join(t.TempDir(), "out")
	_, err := Restore(ctx, repo, out, RestoreOptions{})
	must(t, err)
	assertSameTree(t, ws, out)
}
