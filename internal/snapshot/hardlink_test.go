package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func inoOf(t *testing.T, p string) (ino, nlink uint64) {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Lstat(p, &st))
	return st.Ino, uint64(st.Nlink)
}

// TestHardLinksRoundTrip: a pair and a triple of hard links across
// directories come back as one inode each, with their content; a file
// linked from outside the workspace comes back as a plain file. The content
// of each inode is read once, and the manifest names the first path of
// each group on the later ones. On both backends, and again from a second
// save that found nothing changed.
func TestHardLinksRoundTrip(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo := openRepo(t, url)
		ws := t.TempDir()
		rng := newRand(14)
		groups := [][]string{{"a/pair1", "b/pair2"}, {"c/t1", "d/t2", "d/e/t\xff3"}}
		content := map[string][]byte{}
		var groupBytes int64
		for _, g := range groups {
			data := randBytes(rng, 300<<10)
			groupBytes += int64(len(data))
			writeFile(t, filepath.Join(ws, g[0]), data, 0o640)
			for _, p := range g[1:] {
				must(t, os.MkdirAll(filepath.Dir(filepath.Join(ws, p)), 0o755))
				must(t, os.Link(filepath.Join(ws, g[0]), filepath.Join(ws, p)))
			}
			for _, p := range g {
				content[p] = data
			}
		}
		outside := filepath.Join(t.TempDir(), "elsewhere")
		writeFile(t, filepath.Join(ws, "lone"), []byte("linked from outside\n"), 0o644)
		must(t, os.Link(filepath.Join(ws, "lone"), outside))
		content["lone"] = []byte("linked from outside\n")

		s, err := NewSaver(repo, ws, SaveOptions{CacheDir: t.TempDir()})
		must(t, err)
		defer s.Close()
		st, err := s.Save(ctx)
		must(t, err)
		if max := groupBytes + 1<<10; st.BytesRead > max {
			t.Errorf("save read %d bytes, want each inode once (at most %d)", st.BytesRead, max)
		}
		m, err := repo.LoadManifest(ctx, st.ID)
		must(t, err)
		links := map[string]string{}
		for _, e := range m.Entries {
			if e.LinkTo != "" {
				links[e.Path] = e.LinkTo
			}
		}
		want := map[string]string{"b/pair2": "a/pair1", "d/t2": "c/t1", "d/e/t\xff3": "c/t1"}
		if fmt.Sprint(links) != fmt.Sprint(want) {
			t.Fatalf("manifest links %q, want %q", links, want)
		}
		st2, err := s.Save(ctx)
		must(t, err)
		for _, id := range []string{st.ID, st2.ID} {
			out := filepath.Join(t.TempDir(), "out")
			_, err = Restore(ctx, repo, out, RestoreOptions{Snapshot: id})
			must(t, err)
			for p, data := range content {
				if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || !bytes.Equal(b, data) {
					t.Errorf("snapshot %s: %q restored with %d bytes (%v), want its %d", id, p, len(b), err, len(data))
				}
			}
			for _, g := range groups {
				ino0, _ := inoOf(t, filepath.Join(out, g[0]))
				for _, p := range g {
					ino, nlink := inoOf(t, filepath.Join(out, p))
					if ino != ino0 || nlink != uint64(len(g)) {
						t.Errorf("snapshot %s: %q is inode %d with %d links, want inode %d of %q with %d", id, p, ino, nlink, ino0, g[0], len(g))
					}
				}
			}
			if _, nlink := inoOf(t, filepath.Join(out, "lone")); nlink != 1 {
				t.Errorf("snapshot %s: lone has %d links, want 1", id, nlink)
			}
			if mode := modeOf(t, filepath.Join(out, "d/t2")); mode != 0o640 {
				t.Errorf("snapshot %s: d/t2 has mode %o, want 640", id, mode)
			}
		}
	})
}

// TestValidateRefusesBadLinks: a hard link must name an earlier file entry
// that is not itself a link, and agree with it; anything else is refused,
// naming the entry, before restore writes anything. A manifest without
// links (every earlier one) loads as before.
func TestValidateRefusesBadLinks(t *testing.T) {
	id := fmt.Sprintf("%064x", 3)
	file := func(p string) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: 0o644, MTime: 5, Size: 4, Chunks: []Ref{{ID: id, Len: 4}}}
	}
	link := func(p, to string) Entry { e := file(p); e.LinkTo = to; return e }
	dir := Entry{Path: "d", Type: TypeDir, Mode: 0o755}
	other := link("b", "a")
	other.Mode = 0o600
	cases := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"to-nothing", []Entry{file("a"), link("b", "zz")}, `file "b" is a hard link to "zz", which is not an earlier file entry`},
		{"to-later", []Entry{link("a", "b"), file("b")}, `file "a" is a hard link to "b", which is not an earlier`},
		{"to-dir", []Entry{dir, link("e", "d")}, `file "e" is a hard link to "d", which is not an earlier`},
		{"to-link", []Entry{file("a"), link("b", "a"), link("c", "b")}, `file "c" is a hard link to "b", which is not an earlier`},
		{"to-self", []Entry{link("a", "a")}, `file "a" is a hard link to "a"`},
		{"differs", []Entry{file("a"), other}, `file "b" is a hard link to "a", but its size, chunks, extents, mode or time differ`},
		{"dir-as-link", []Entry{file("a"), {Path: "d", Type: TypeDir, Mode: 0o755, LinkTo: "a"}}, `dir "d" is given as a hard link`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &Manifest{Version: FormatVersion, ID: FormatID(1), Entries: tc.entries}
			if err := m.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error saying %q", err, tc.want)
			}
			repo := openRepo(t, "file://"+t.TempDir())
			m.Namespace, m.Session = repo.Namespace, repo.Session
			restoreRefuses(t, repo, m, tc.want)
		})
	}
	good := &Manifest{ID: FormatID(1), Entries: []Entry{file("a"), link("b", "a"), link("c", "a")}}
	must(t, good.validate())
	// A link name that is not valid UTF-8 survives the stored form.
	bytesName := &Manifest{Version: FormatVersion, ID: FormatID(1), Entries: []Entry{file("a\xff"), link("b", "a\xff")}}
	raw, err := marshalManifest(bytesName)
	must(t, err)
	back, err := unmarshalManifest(raw)
	must(t, err)
	if back.Entries[1].LinkTo != "a\xff" || !strings.Contains(string(raw), `"linkToB64"`) {
		t.Fatalf("link to a byte name came back as %q from %s", back.Entries[1].LinkTo, raw)
	}
	must(t, back.validate())
}

// TestCopyBecomesHardLink: a copy replaced by a hard link to the file it
// copied (same content, mode and time: only the link differs) is a change
// the next save's delta manifest records, and the restore links it.
func TestCopyBecomesHardLink(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	for i := range 40 { // a base large enough that the next manifest is a delta
		writeFile(t, filepath.Join(ws, "notes", fmt.Sprintf("n%02d", i)), []byte{byte(i)}, 0o644)
	}
	a, b := filepath.Join(ws, "a"), filepath.Join(ws, "b")
	writeFile(t, a, []byte("same\n"), 0o644)
	writeFile(t, b, []byte("same\n"), 0o644)
	at := time.Unix(1700000000, 0)
	must(t, os.Chtimes(a, at, at))
	must(t, os.Chtimes(b, at, at))
	s, err := NewSaver(repo, ws, SaveOptions{})
	must(t, err)
	defer s.Close()
	_, err = s.Save(ctx)
	must(t, err)
	must(t, os.Remove(b))
	must(t, os.Link(a, b))
	st, err := s.Save(ctx)
	must(t, err)
	m, err := repo.LoadManifest(ctx, st.ID)
	must(t, err)
	if m.Base == nil {
		t.Fatal("second save wrote no delta manifest")
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err = Restore(ctx, repo, out, RestoreOptions{})
	must(t, err)
	inoA, _ := inoOf(t, filepath.Join(out, "a"))
	if inoB, nlink := inoOf(t, filepath.Join(out, "b")); inoB != inoA || nlink != 2 {
		t.Fatalf("b restored as inode %d with %d links, want a's inode %d with 2", inoB, nlink, inoA)
	}
}
