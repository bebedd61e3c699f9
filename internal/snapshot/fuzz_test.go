package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// manifestSeeds saves a small workspace (files, a symlink, a git repository
// with a merge in progress) twice and returns the stored manifests, decoded,
// their resolved format-1 form and the base object: real snapshots.
func manifestSeeds(f *testing.F) (manifests [][]byte, base *baseState) {
	f.Helper()
	ctx := context.Background()
	repo := openRepo(f, "file://"+f.TempDir())
	ws := f.TempDir()
	writeFile(f, filepath.Join(ws, "a.txt"), []byte("a\n"), 0o644)
	writeFile(f, filepath.Join(ws, "dir/b.bin"), []byte{0, 1, 2}, 0o600)
	// Names that are not valid UTF-8 (pathB64, targetB64; removedB64 once
	// the second save removes one).
	writeFile(f, filepath.Join(ws, "dir/n\xff.txt"), []byte("ff"), 0o644)
	writeFile(f, filepath.Join(ws, "gone\xfe"), []byte("fe"), 0o644)
	must(f, os.Symlink("dir/n\xff.txt", filepath.Join(ws, "ln\xfd")))
	gittest.MergeConflict(f, filepath.Join(ws, "repos", "app"))
	s, err := NewSaver(repo, ws, SaveOptions{CacheDir: f.TempDir()})
	must(f, err)
	defer s.Close()
	for i := 0; i < 2; i++ {
		if i == 1 {
			must(f, os.Remove(filepath.Join(ws, "gone\xfe")))
		}
		writeFile(f, filepath.Join(ws, "a.txt"), []byte{'a', byte('0' + i), '\n'}, 0o644)
		_, err := s.Save(ctx)
		must(f, err)
	}
	ids, err := repo.SnapshotIDs(ctx)
	must(f, err)
	for _, id := range ids {
		obj, err := repo.st.Get(ctx, repo.manifestKey(id))
		must(f, err)
		raw, err := decodeManifest(obj)
		must(f, err)
		manifests = append(manifests, raw)
		m, err := repo.LoadManifest(ctx, id)
		must(f, err)
		if m.from != nil {
			base = m.from
		}
		m.Version, m.Base, m.from = 1, nil, nil
		full, err := marshalManifest(m)
		must(f, err)
		manifests = append(manifests, full)
	}
	if base == nil {
		f.Fatal("the saves wrote no base object")
	}
	return manifests, base
}

// FuzzUnmarshalManifest decodes stored manifests and runs what restore and
// verify run on them before writing a byte: decoding, resolving a delta
// against a base, validation and the git states' checks. None may panic, and
// a manifest that decodes re-encodes to one that decodes the same.
func FuzzUnmarshalManifest(f *testing.F) {
	seeds, base := manifestSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte(`{"version":2,"id":"x","base":{"id":"00","len":1},"repos":[{"path":"repos/a","fromBase":99,"state":{"version":1}}]}`))
	// Format 3's byte names and notes, well and badly formed.
	f.Add([]byte(`{"version":3,"id":"x","entries":[{"pathB64":"bv8=","type":"dir","mode":493},{"pathB64":"bv8vYQ==","type":"symlink","targetB64":"/w=="}],"summary":{}}`))
	f.Add([]byte(`{"version":3,"id":"x","entries":[{"path":"a","pathB64":"YQ==","type":"file","mode":420}],"summary":{}}`))
	f.Add([]byte(`{"version":3,"id":"x","entries":[{"pathB64":"Li4veA==","type":"file","mode":420},{"pathB64":"!","type":"file"}],"summary":{}}`))
	f.Add([]byte(`{"version":3,"id":"x","base":{"id":"00","len":1},"removed":["a"],"removedB64":["/w==","*"],"changed":[{"pathB64":"AA==","type":"file"}],"summary":{}}`))
	f.Add([]byte(`{"version":3,"id":"x","leftOut":[{"pathB64":"/w==","reason":"cannot be opened: open: permission denied"},{"path":"","reason":""}],"reposAsFiles":[{"path":"repos/a","reason":"git"}],"repos":[{"pathB64":"cmVwb3Mv/w==","state":{"version":1},"bundles":[]}],"summary":{"leftOut":2}}`))
	// Sizes that disagree with their chunks, or one chunk given two lengths.
	f.Add([]byte(`{"version":1,"id":"x","entries":[{"path":"a","type":"file","mode":420,"size":9223372036854775807,"chunks":[{"id":"0000000000000000000000000000000000000000000000000000000000000001","len":9223372036854775807}]},{"path":"b","type":"file","mode":420,"size":3,"chunks":[{"id":"0000000000000000000000000000000000000000000000000000000000000001","len":3}]}],"summary":{}}`))
	// Hard links: good, to a later entry, to a link, and by byte name.
	f.Add([]byte(`{"version":3,"id":"x","entries":[{"path":"a","type":"file","mode":420,"size":3,"chunks":[{"id":"0000000000000000000000000000000000000000000000000000000000000001","len":3}]},{"path":"b","type":"file","mode":420,"size":3,"chunks":[{"id":"0000000000000000000000000000000000000000000000000000000000000001","len":3}],"linkTo":"a"},{"path":"c","type":"file","mode":420,"size":3,"chunks":[{"id":"0000000000000000000000000000000000000000000000000000000000000001","len":3}],"linkTo":"b"},{"path":"d","type":"file","mode":420,"linkToB64":"/w==","linkTo":"e"}],"summary":{}}`))
	// Format 4's sparse files: good, overlapping, past the size, extents
	// holding more than the chunks, and extents on a file not marked sparse.
	f.Add([]byte(`{"version":4,"id":"x","entries":[{"path":"a","type":"file","mode":420,"size":1073741824,"chunks":[{"id":"0000000000000000000000000000000000000000000000000000000000000001","len":3}],"sparse":true,"extents":[{"off":1048576,"len":3}]},{"path":"b","type":"file","mode":420,"size":1073741824,"chunks":[{"id":"0000000000000000000000000000000000000000000000000000000000000001","len":3}],"linkTo":"a","sparse":true,"extents":[{"off":1048576,"len":3}]}],"summary":{}}`))
	f.Add([]byte(`{"version":4,"id":"x","entries":[{"path":"a","type":"file","mode":420,"size":100,"chunks":[{"id":"0000000000000000000000000000000000000000000000000000000000000001","len":20}],"sparse":true,"extents":[{"off":0,"len":10},{"off":5,"len":10}]},{"path":"b","type":"file","mode":420,"size":100,"sparse":true,"extents":[{"off":9223372036854775800,"len":100}]},{"path":"c","type":"file","mode":420,"size":10,"extents":[{"off":0,"len":10}]}],"summary":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := unmarshalManifest(data)
		if err != nil {
			return
		}
		again, err := marshalManifest(m)
		if err != nil {
			t.Fatalf("a decoded manifest does not encode: %v", err)
		}
		m2, err := unmarshalManifest(again)
		if err != nil {
			t.Fatalf("a re-encoded manifest does not decode: %v", err)
		}
		// Compared in the stored form: it keeps the names' bytes, which
		// plain JSON would turn into U+FFFD.
		if a, b := string(again), string(must2(t)(marshalManifest(m2))); a != b {
			t.Fatalf("decode(encode(m)) differs from m:\n%s\n%s", a, b)
		}
		if m.Base != nil {
			b := *base
			b.ref = *m.Base
			if err := m.resolve(&b); err != nil {
				return
			}
		}
		if err := m.validate(); err != nil {
			return
		}
		gitStateProblems(m)
	})
}

func must2(t *testing.T) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}
