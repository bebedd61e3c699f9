package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/tether-dev/tether/internal/fsutil"
)

// statCache persists, per store, session and workspace, the newest manifest a
// Saver wrote and the stat of every file whose content it holds, so that the
// next process can skip unchanged files without reading them or fetching the
// manifest. Losing it costs a re-read, never correctness: it is used only when
// its snapshot is still the newest in the store.
type statCache struct {
	dir string
}

type statCacheFile struct {
	Base string `json:"base"`
	// ObjectSize is the size of the manifest object in the store: a store that
	// was wiped and refilled under the same ids does not match it.
	ObjectSize int64                `json:"objectSize"`
	Stats      map[string]fileState `json:"stats"`
	// Repos holds the fingerprint of each repository (see repoFingerprint).
	Repos map[string]string `json:"repos,omitempty"`
}

func newStatCache(root string, repo *Repo, workspace string) *statCache {
	sum := sha256.Sum256([]byte(repo.st.String() + "\x00" + repo.Namespace + "\x00" + repo.Session + "\x00" + workspace))
	return &statCache{dir: filepath.Join(root, "snapshot", hex.EncodeToString(sum[:12]))}
}

func (c *statCache) load(latest string, objectSize int64) (m *Manifest, stats map[string]fileState, repoFP map[string]string, ok bool) {
	data, err := os.ReadFile(filepath.Join(c.dir, "stats.json"))
	if err != nil {
		return nil, nil, nil, false
	}
	var f statCacheFile
	if json.Unmarshal(data, &f) != nil || f.Base != latest || f.ObjectSize != objectSize {
		return nil, nil, nil, false
	}
	f.Stats, f.Repos = fromKeys(f.Stats), fromKeys(f.Repos)
	raw, err := os.ReadFile(filepath.Join(c.dir, "manifest.json"))
	if err != nil {
		return nil, nil, nil, false
	}
	m, err = unmarshalManifest(raw)
	if err != nil || m.ID != latest {
		return nil, nil, nil, false
	}
	if m.Base != nil {
		// The base object as the store holds it, checked against its name.
		baseRaw, err := os.ReadFile(filepath.Join(c.dir, "base.json"))
		if err != nil || int64(len(baseRaw)) != m.Base.Len || hashID(baseRaw) != m.Base.ID {
			return nil, nil, nil, false
		}
		b, err := unmarshalBase(baseRaw, *m.Base)
		if err != nil || m.resolve(b) != nil {
			return nil, nil, nil, false
		}
	}
	return m, f.Stats, f.Repos, true
}

// store records a saved snapshot: its manifest as stored (a delta), the
// JSON of its base object (nil when base.json already holds it) and the stats.
func (c *statCache) store(manifest, baseRaw []byte, id string, objectSize int64, stats map[string]fileState, repoFP map[string]string) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	// The base and the manifest first: stats.json names the manifest, so a
	// crash between the writes leaves a stats file that does not match and
	// is ignored; the base is checked against the manifest's hash. No fsync:
	// a file a crash truncated fails those checks the same way, and a lost
	// cache costs one re-read.
	if baseRaw != nil {
		if err := fsutil.ReplaceFile(filepath.Join(c.dir, "base.json"), baseRaw, 0o600); err != nil {
			return err
		}
	}
	if err := fsutil.ReplaceFile(filepath.Join(c.dir, "manifest.json"), manifest, 0o600); err != nil {
		return err
	}
	data, err := json.Marshal(statCacheFile{Base: id, ObjectSize: objectSize, Stats: toKeys(stats), Repos: toKeys(repoFP)})
	if err != nil {
		return err
	}
	return fsutil.ReplaceFile(filepath.Join(c.dir, "stats.json"), data, 0o600)
}

// JSON object keys are text too (see bytenames.go): a path that is not
// valid UTF-8 is kept as NUL (which no path holds) and its base64, so that
// its stat is found again instead of being merged with another name's.
func toKeys[V any](m map[string]V) map[string]V {
	var out map[string]V
	for k, v := range m {
		if utf8.ValidString(k) {
			continue
		}
		if out == nil {
			out = make(map[string]V, len(m))
			for k2, v2 := range m {
				out[k2] = v2
			}
		}
		delete(out, k)
		out["\x00"+b64.EncodeToString([]byte(k))] = v
	}
	if out == nil {
		return m
	}
	return out
}

func fromKeys[V any](m map[string]V) map[string]V {
	var encoded []string
	for k := range m {
		if strings.HasPrefix(k, "\x00") {
			encoded = append(encoded, k)
		}
	}
	for _, k := range encoded {
		v := m[k]
		delete(m, k)
		if b, err := b64.DecodeString(k[1:]); err == nil {
			m[string(b)] = v
		}
	}
	return m
}
