package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// A file whose old content changed must be read in full, never taken for an
// append or for the content it had, however the Saver checks the old part:
// against the content sum it remembers, one loaded from its stat cache, or,
// with a cache written by an older tether that kept no sums, chunk by chunk.
func TestChangedPrefixIsNeverKept(t *testing.T) {
	for _, how := range []string{"in memory", "from the cache", "cache without sums"} {
		for _, grow := range []bool{true, false} {
			name := how + "/same size"
			if grow {
				name = how + "/grown"
			}
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				repo := openRepo(t, "file://"+t.TempDir())
				ws, cacheDir := t.TempDir(), t.TempDir()
				p := filepath.Join(ws, "transcript.jsonl")
				data := jsonl(newRand(5), 3<<20)
				writeFile(t, p, data, 0o644)
				if grow {
					backdate(t, ws) // trusted from its stat: only its growth makes it read
				} // else racy: read again, checked against what it held
				s, err := NewSaver(repo, ws, SaveOptions{CacheDir: cacheDir})
				must(t, err)
				_, err = s.Save(ctx)
				must(t, err)

				// One byte of the old content changes, as a rewrite would.
				changed := append([]byte(nil), data...)
				changed[len(changed)/2] ^= 1
				if grow {
					changed = append(changed, jsonl(newRand(6), 1024)...)
				}
				writeFile(t, p, changed, 0o644)

				switch how {
				case "from the cache", "cache without sums":
					if how == "cache without sums" {
						stripSums(t, cacheDir)
					}
					s, err = NewSaver(repo, ws, SaveOptions{CacheDir: cacheDir})
					must(t, err)
				}
				st, err := s.Save(ctx)
				must(t, err)
				if st.Unchanged {
					t.Fatal("the changed file was saved as unchanged")
				}
				out := filepath.Join(t.TempDir(), "out")
				_, err = Restore(ctx, repo, out, RestoreOptions{})
				must(t, err)
				assertSameTree(t, ws, out)
			})
		}
	}
}

// stripSums rewrites the stat caches under dir as an older tether wrote
// them: stats without content sums.
func stripSums(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "snapshot", "*", "stats.json"))
	must(t, err)
	if len(files) == 0 {
		t.Fatal("no stat cache to strip")
	}
	sum := regexp.MustCompile(`,"x":[0-9]+`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		must(t, err)
		stripped := sum.ReplaceAll(b, nil)
		if len(stripped) == len(b) {
			t.Fatalf("%s holds no sums: %s", f, b)
		}
		must(t, os.WriteFile(f, stripped, 0o600))
	}
}
