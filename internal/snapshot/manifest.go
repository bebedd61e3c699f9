package snapshot

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"
)

// FormatVersion is the manifest format this code writes. Readers refuse newer ones.
const FormatVersion = 1

// Entry types.
const (
	TypeDir     = "dir"
	TypeFile    = "file"
	TypeSymlink = "symlink"
)

// Manifest describes one snapshot: every entry of the workspace at one moment.
type Manifest struct {
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	Namespace string    `json:"namespace"`
	Session   string    `json:"session"`
	Time      time.Time `json:"time"`
	Host      string    `json:"host,omitempty"`
	// Parent is the snapshot this one was saved incrementally against ("" for a first save).
	Parent  string  `json:"parent,omitempty"`
	Entries []Entry `json:"entries"`
	// Repos are the git repositories under repos/ and their submodules,
	// captured by gitstate rather than file by file.
	Repos   []RepoEntry `json:"repos,omitempty"`
	Summary Summary     `json:"summary"`
}

// Summary is what `snapshot ls` shows of a snapshot.
type Summary struct {
	Files    int   `json:"files"`
	Dirs     int   `json:"dirs"`
	Symlinks int   `json:"symlinks"`
	Bytes    int64 `json:"bytes"`
	Repos    int   `json:"repos"`
}

// Entry is one file, directory or symlink, at a slash-separated path relative
// to the workspace root. Entries are sorted by path, parents before children.
type Entry struct {
	Path string `json:"path"`
	Type string `json:"type"`
	// Mode holds the Unix permission bits, setuid, setgid and sticky included (07777).
	Mode   uint32 `json:"mode"`
	MTime  int64  `json:"mtime,omitempty"` // Unix nanoseconds
	Size   int64  `json:"size,omitempty"`
	Chunks []Ref  `json:"chunks,omitempty"`
	Target string `json:"target,omitempty"` // symlink target, as stored in the link
}

// Ref names one chunk of a file and its plain length.
type Ref struct {
	ID  string `json:"id"`
	Len int64  `json:"len"`
}

func marshalManifest(m *Manifest) ([]byte, error) { return json.Marshal(m) }

func unmarshalManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	if m.Version > FormatVersion || m.Version < 1 {
		return nil, fmt.Errorf("manifest format version %d is not supported by this tether (supports 1..%d): upgrade tether", m.Version, FormatVersion)
	}
	return &m, nil
}

// validate checks everything restore relies on before a single byte is written:
// every path is clean, relative and inside the workspace, every parent is a
// directory of the snapshot (so nothing is ever written through a symlink), no
// path appears twice, and every file's chunks add up to its size.
func (m *Manifest) validate() error {
	kinds := make(map[string]string, len(m.Entries))
	for _, e := range m.Entries {
		if err := validPath(e.Path); err != nil {
			return fmt.Errorf("snapshot %s: entry %q: %w", m.ID, e.Path, err)
		}
		if _, dup := kinds[e.Path]; dup {
			return fmt.Errorf("snapshot %s: entry %q appears twice", m.ID, e.Path)
		}
		if dir := path.Dir(e.Path); dir != "." {
			switch kinds[dir] {
			case TypeDir:
			case "":
				return fmt.Errorf("snapshot %s: entry %q comes before (or without) its parent directory %q", m.ID, e.Path, dir)
			default:
				return fmt.Errorf("snapshot %s: entry %q would be written through %q, which is a %s, not a directory: refusing to restore outside the target", m.ID, e.Path, dir, kinds[dir])
			}
		}
		switch e.Type {
		case TypeDir:
		case TypeSymlink:
			if e.Target == "" || strings.ContainsRune(e.Target, 0) {
				return fmt.Errorf("snapshot %s: symlink %q has an invalid target", m.ID, e.Path)
			}
		case TypeFile:
			if err := validChunks(e.Chunks, e.Size); err != nil {
				return fmt.Errorf("snapshot %s: file %q %w", m.ID, e.Path, err)
			}
		default:
			return fmt.Errorf("snapshot %s: entry %q has unknown type %q", m.ID, e.Path, e.Type)
		}
		if e.Mode&^07777 != 0 {
			return fmt.Errorf("snapshot %s: entry %q has invalid mode %o", m.ID, e.Path, e.Mode)
		}
		kinds[e.Path] = e.Type
	}
	for _, r := range m.Repos {
		for i, b := range r.Bundles {
			if err := validChunks(b.Chunks, b.Size); err != nil {
				return fmt.Errorf("snapshot %s: bundle %d of repository %q %w", m.ID, i, r.Path, err)
			}
		}
	}
	return m.validateRepos(kinds)
}

func validChunks(chunks []Ref, size int64) error {
	var sum int64
	for _, c := range chunks {
		if len(c.ID) != 64 || strings.Trim(c.ID, "0123456789abcdef") != "" || c.Len <= 0 {
			return fmt.Errorf("references an invalid chunk %q", c.ID)
		}
		sum += c.Len
	}
	if sum != size {
		return fmt.Errorf("has size %d but its chunks hold %d bytes", size, sum)
	}
	return nil
}

func validPath(p string) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("empty path")
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("path contains a NUL byte")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("absolute path: refusing to restore outside the target")
	case path.Clean(p) != p:
		return fmt.Errorf("path is not clean")
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("path escapes the target with '..': refusing to restore outside the target")
		}
	}
	return nil
}
