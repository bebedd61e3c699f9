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
	// Ignored holds what git ignores in each repository (see listIgnored),
	// valid while its fingerprint is: a one-shot save that keeps a
	// repository's capture starts no git process for it.
	Ignored map[string]ignoredList `json:"ignored,omitempty"`
}

// cached is what the stat cache holds about its snapshot besides the
// manifest: the Saver state a new process starts from.
type cached struct {
	stats   map[string]fileState
	repoFP  map[string]string
	ignored map[string]ignoredList
}

func newStatCache(root string, repo *Repo, workspace string) *statCache {
	sum := sha256.Sum256([]byte(repo.st.String() + "\x00" + repo.Namespace + "\x00" + repo.Session + "\x00" + workspace))
	return &statCache{dir: filepath.Join(root, "snapshot", hex.EncodeToString(sum[:12]))}
}

func (c *statCache) load(latest string, objectSize int64) (m *Manifest, st cached, ok bool) {
	data, err := os.ReadFile(filepath.Join(c.dir, "stats.json"))
	if err != nil {
		return nil, st, false
	}
	var f statCacheFile
	if json.Unmarshal(data, &f) != nil || f.Base != latest || f.ObjectSize != objectSize {
		return nil, st, false
	}
	st = cached{stats: fromKeys(f.Stats), repoFP: fromKeys(f.Repos), ignored: fromKeys(f.Ignored)}
	for repo, l := range st.ignored {
		l.Units = fromNames(l.Units)
		if !validIgnored(repo, l) {
			delete(st.ignored, repo) // listed again by git
			continue
		}
		st.ignored[repo] = l
	}
	raw, err := os.ReadFile(filepath.Join(c.dir, "manifest.json"))
	if err != nil {
		return nil, st, false
	}
	m, err = unmarshalManifest(raw)
	if err != nil || m.ID != latest {
		return nil, st, false
	}
	if m.Base != nil {
		// The base object as the store holds it, checked against its name.
		baseRaw, err := os.ReadFile(filepath.Join(c.dir, "base.json"))
		if err != nil || int64(len(baseRaw)) != m.Base.Len || hashID(baseRaw) != m.Base.ID {
			return nil, st, false
		}
		b, err := unmarshalBase(baseRaw, *m.Base)
		if err != nil || m.resolve(b) != nil {
			return nil, st, false
		}
	}
	return m, st, true
}

// store records a saved snapshot: its manifest as stored (a delta), the
// JSON of its base object (nil when base.json already holds it) and the stats.
func (c *statCache) store(manifest, baseRaw []byte, id string, objectSize int64, st cached) error {
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
	ignored := make(map[string]ignoredList, len(st.ignored))
	for repo, l := range st.ignored {
		ignored[repo] = ignoredList{Units: toNames(l.Units), Truncated: l.Truncated, Key: l.Key}
	}
	data, err := json.Marshal(statCacheFile{Base: id, ObjectSize: objectSize, Stats: toKeys(st.stats), Repos: toKeys(st.repoFP),
		Ignored: toKeys(ignored)})
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

// toNames and fromNames do for a list of paths what toKeys and fromKeys do
// for the keys of a map.
func toNames(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		if !utf8.ValidString(p) {
			p = "\x00" + b64.EncodeToString([]byte(p))
		}
		out[i] = p
	}
	return out
}

func fromNames(ps []string) []string {
	out := ps[:0]
	for _, p := range ps {
		if strings.HasPrefix(p, "\x00") {
			b, err := b64.DecodeString(p[1:])
			if err != nil {
				continue
			}
			p = string(b)
		}
		out = append(out, p)
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
