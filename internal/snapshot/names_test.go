package snapshot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// byteNameWorkspace writes names that JSON text cannot hold: two that
// collide once their bad bytes become U+FFFD, a directory and a symlink
// (and its target) named so too, and other bytes a name may hold.
func byteNameWorkspace(t *testing.T, ws string) {
	writeFile(t, filepath.Join(ws, "notes\xff.txt"), []byte("ff\n"), 0o644)
	writeFile(t, filepath.Join(ws, "notes\xfe.txt"), []byte("fe\n"), 0o600)
	writeFile(t, filepath.Join(ws, "d\xc3(/inner\x80.bin"), []byte{0, 1, 2}, 0o644)
	writeFile(t, filepath.Join(ws, "tab\tnew\nline\\back.txt"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(ws, strings.Repeat("n", 254)+"\xff"), []byte("long"), 0o644)
	must(t, os.Symlink("notes\xff.txt", filepath.Join(ws, "link\xfd")))
}

// TestByteNamesRoundTrip: names that are not valid UTF-8 come back byte for
// byte, through a base object, a delta that changes one of them and one
// that removes one, on every store backend.
func TestByteNamesRoundTrip(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo := openRepo(t, url)
		ws := t.TempDir()
		byteNameWorkspace(t, ws)
		s, err := NewSaver(repo, ws, SaveOptions{CacheDir: t.TempDir()})
		must(t, err)
		defer s.Close()
		check := func(step string) {
			t.Helper()
			st, err := s.Save(ctx)
			if err != nil {
				t.Fatalf("%s: save: %v", step, err)
			}
			obj, err := repo.st.Get(ctx, repo.manifestKey(st.ID))
			must(t, err)
			raw, err := decodeManifest(obj)
			must(t, err)
			if bytes.Contains(raw, []byte(`\ufffd`)) {
				t.Fatalf("%s: the stored manifest holds U+FFFD: %s", step, raw)
			}
			out := filepath.Join(t.TempDir(), "out")
			if _, err := Restore(ctx, repo, out, RestoreOptions{Snapshot: st.ID}); err != nil {
				t.Fatalf("%s: restore %s: %v", step, st.ID, err)
			}
			assertSameTree(t, ws, out)
		}
		check("first save")
		writeFile(t, filepath.Join(ws, "notes\xfe.txt"), []byte("changed\n"), 0o600)
		check("a byte name changed")
		must(t, os.Remove(filepath.Join(ws, "notes\xff.txt")))
		check("a byte name removed")
	})
}

// TestByteNameAlone: one such name, alone, comes back under its own name
// (not under the U+FFFD one JSON would make of it).
func TestByteNameAlone(t *testing.T) {
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "caf\xe9.txt"), []byte("latin-1\n"), 0o644)
	save(t, repo, ws, SaveOptions{})
	out := filepath.Join(t.TempDir(), "out")
	_, err := Restore(context.Background(), repo, out, RestoreOptions{})
	must(t, err)
	got, err := os.ReadFile(filepath.Join(out, "caf\xe9.txt"))
	if err != nil || string(got) != "latin-1\n" {
		names, _ := readDirNames(out)
		t.Fatalf("caf\\xe9.txt: %q, %v; the target holds %q", got, err, names)
	}
}

// TestOldFormatManifestStillRestores: manifests as versions 1, 2 and 3 wrote
// them (text names only, no pathB64) still load and restore.
func TestOldFormatManifestStillRestores(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	hello := "hello\n"
	id := hashID([]byte(hello))
	_, err := repo.writeChunk(ctx, id, []byte(hello))
	must(t, err)
	for i, version := range []string{"1", "2", "3"} {
		sid := FormatID(uint64(i + 1))
		raw := `{"version":` + version + `,"id":"` + sid + `","namespace":"default","session":"s1","time":"2026-01-02T03:04:05Z",` +
			`"entries":[{"path":"dir","type":"dir","mode":493},{"path":"dir/caf\u00e9.txt","type":"file","mode":420,"mtime":1700000000000000000,"size":6,"chunks":[{"id":"` + id + `","len":6}]},` +
			`{"path":"ln","type":"symlink","mode":0,"target":"dir/caf\u00e9.txt"}],"summary":{"files":1,"dirs":1,"symlinks":1,"bytes":6}}`
		must(t, repo.st.PutIfAbsent(ctx, repo.manifestKey(sid), encode([]byte(raw))))
		out := filepath.Join(t.TempDir(), "out")
		if _, err := Restore(ctx, repo, out, RestoreOptions{Snapshot: sid}); err != nil {
			t.Fatalf("version %s: %v", version, err)
		}
		got, err := os.ReadFile(filepath.Join(out, "ln"))
		if err != nil || string(got) != hello {
			t.Fatalf("version %s: ln -> dir/café.txt reads %q, %v", version, got, err)
		}
	}
}

// TestHostileByteNames: a manifest whose base64 names decode to something
// restore must never write is refused, naming the snapshot and the entry.
func TestHostileByteNames(t *testing.T) {
	enc := func(s string) string { return b64.EncodeToString([]byte(s)) }
	file := `"type":"file","mode":420`
	cases := []struct{ name, entries, want string }{
		{"dotdot", `{"pathB64":"` + enc("../x") + `",` + file + `}`, `"../x": path escapes the target`},
		{"absolute", `{"pathB64":"` + enc("/etc/x\xff") + `",` + file + `}`, `"/etc/x\xff": absolute path`},
		{"nul", `{"pathB64":"` + enc("a\x00b") + `",` + file + `}`, `path contains a NUL byte`},
		{"staging", `{"path":".tether-restore","type":"dir","mode":493},{"pathB64":"` + enc(".tether-restore/tree\xff") + `",` + file + `}`, `".tether-restore": path is inside .tether-restore`},
		{"dup-text-b64", `{"path":"a",` + file + `},{"pathB64":"` + enc("a") + `",` + file + `}`, `"a" appears twice`},
		{"dup-bytes", `{"pathB64":"` + enc("n\xff") + `",` + file + `},{"pathB64":"` + enc("n\xff") + `",` + file + `}`, `"n\xff" appears twice`},
		{"both", `{"path":"a","pathB64":"` + enc("b") + `",` + file + `}`, `given both as text "a" and as base64`},
		{"bad-b64", `{"pathB64":"!!!",` + file + `}`, `invalid base64`},
		{"long", `{"pathB64":"` + enc("../"+strings.Repeat("z", 4000)) + `",` + file + `}`, `bytes)…`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := `{"version":3,"id":"0000000007","entries":[` + tc.entries + `],"summary":{}}`
			m, err := unmarshalManifest([]byte(raw))
			if err == nil {
				err = m.validate()
			}
			if err == nil || !strings.Contains(err.Error(), "snapshot 0000000007") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming snapshot 0000000007 and %s", err, tc.want)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("error of %d bytes: %s", len(err.Error()), err)
			}
		})
	}
}

// TestShortPath: paths in messages are escaped and never kilobytes long.
func TestShortPath(t *testing.T) {
	long := strings.Repeat("é", 3000)
	for _, p := range []string{long, strings.Repeat("\xff", 5000), "a\nb"} {
		q := QuotePath(p)
		if len(q) > 4*maxShownPath || !strings.HasPrefix(q, `"`) {
			t.Fatalf("QuotePath of %d bytes gave %d bytes: %.80s", len(p), len(q), q)
		}
		if d := DisplayPath(p); len(d) > 4*maxShownPath {
			t.Fatalf("DisplayPath of %d bytes gave %d bytes", len(p), len(d))
		}
	}
	if got := DisplayPath("notes\xff.txt"); got != `"notes\xff.txt"` {
		t.Fatalf("DisplayPath(notes\\xff.txt) = %s", got)
	}
	if got := DisplayPath("src/main.go"); got != "src/main.go" {
		t.Fatalf("DisplayPath(src/main.go) = %s", got)
	}
}

// TestByteNamesStatCache: the stat cache, JSON too, finds byte names again:
// a new process skips them unread like any other unchanged file.
func TestByteNamesStatCache(t *testing.T) {
	repo := openRepo(t, "file://"+t.TempDir())
	ws, cache := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(ws, "notes\xff.txt"), []byte("ff\n"), 0o644)
	writeFile(t, filepath.Join(ws, "notes\xfe.txt"), []byte("fe\n"), 0o644)
	writeFile(t, filepath.Join(ws, "plain.txt"), []byte("p\n"), 0o644)
	backdate(t, ws)
	save(t, repo, ws, SaveOptions{CacheDir: cache})
	st := save(t, repo, ws, SaveOptions{CacheDir: cache, SkipUnchanged: true})
	if st.CacheHits != 3 || st.BytesRead != 0 {
		t.Fatalf("second process: %d cache hits, %d bytes read; want 3 and 0", st.CacheHits, st.BytesRead)
	}
}
