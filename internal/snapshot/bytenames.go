package snapshot

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Names are bytes. A Linux file name is any byte string without '/' and NUL,
// and Go strings hold such bytes unchanged, but JSON text is UTF-8: encoding
// a name that is not valid UTF-8 replaces the bad bytes with U+FFFD, so two
// such names collapse into one and a single one comes back under another
// name. The stored forms (manifests, base objects) therefore carry a name
// that is not valid UTF-8 in a base64 field beside the plain one (pathB64,
// targetB64, removedB64), and keep every valid name readable as it is. In
// memory, Path and Target always hold the exact bytes: encodeNames and
// decodeNames translate at the JSON boundary only.

var b64 = base64.StdEncoding.Strict()

// wireName splits a name into its stored form: (name, "") when it is valid
// UTF-8, ("", base64) when not.
func wireName(s string) (plain, enc string) {
	if utf8.ValidString(s) {
		return s, ""
	}
	return "", b64.EncodeToString([]byte(s))
}

// fromWire is the inverse of wireName, for hostile input: at most one of the
// two forms may be set.
func fromWire(plain, enc, what string) (string, error) {
	if enc == "" {
		return plain, nil
	}
	if plain != "" {
		return "", fmt.Errorf("%s is given both as text %s and as base64", what, QuotePath(plain))
	}
	b, err := b64.DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("%s has invalid base64 %s: %v", what, QuotePath(enc), err)
	}
	return string(b), nil
}

// encodeEntries returns es with every name in its stored form. It copies
// only when some name needs base64, which is rare: the common save
// marshals es as it is.
func encodeEntries(es []Entry) []Entry {
	var out []Entry
	for i := range es {
		if utf8.ValidString(es[i].Path) && utf8.ValidString(es[i].Target) {
			continue
		}
		if out == nil {
			out = append([]Entry(nil), es...)
		}
		e := &out[i]
		e.Path, e.PathB64 = wireName(e.Path)
		e.Target, e.TargetB64 = wireName(e.Target)
	}
	if out == nil {
		return es
	}
	return out
}

func decodeEntries(es []Entry, what string) error {
	for i := range es {
		e := &es[i]
		if e.PathB64 == "" && e.TargetB64 == "" {
			continue
		}
		var err error
		if e.Path, err = fromWire(e.Path, e.PathB64, fmt.Sprintf("%s %d: path", what, i)); err != nil {
			return err
		}
		if e.Target, err = fromWire(e.Target, e.TargetB64, fmt.Sprintf("%s %s: symlink target", what, QuotePath(e.Path))); err != nil {
			return err
		}
		e.PathB64, e.TargetB64 = "", ""
	}
	return nil
}

func encodeRepos(rs []RepoEntry) []RepoEntry {
	var out []RepoEntry
	for i := range rs {
		if utf8.ValidString(rs[i].Path) {
			continue
		}
		if out == nil {
			out = append([]RepoEntry(nil), rs...)
		}
		out[i].Path, out[i].PathB64 = wireName(out[i].Path)
	}
	if out == nil {
		return rs
	}
	return out
}

func decodeRepos(rs []RepoEntry, what string) error {
	for i := range rs {
		r := &rs[i]
		if r.PathB64 == "" {
			continue
		}
		var err error
		if r.Path, err = fromWire(r.Path, r.PathB64, fmt.Sprintf("%s %d: path", what, i)); err != nil {
			return err
		}
		r.PathB64 = ""
	}
	return nil
}

func encodeNotes(ns []PathNote) []PathNote {
	var out []PathNote
	for i := range ns {
		if utf8.ValidString(ns[i].Path) {
			continue
		}
		if out == nil {
			out = append([]PathNote(nil), ns...)
		}
		out[i].Path, out[i].PathB64 = wireName(out[i].Path)
	}
	if out == nil {
		return ns
	}
	return out
}

func decodeNotes(ns []PathNote, what string) error {
	for i := range ns {
		n := &ns[i]
		if n.PathB64 == "" {
			continue
		}
		var err error
		if n.Path, err = fromWire(n.Path, n.PathB64, fmt.Sprintf("%s %d: path", what, i)); err != nil {
			return err
		}
		n.PathB64 = ""
	}
	return nil
}

// encodeNames returns the stored form of m (a shallow copy when any name
// needs base64; m itself is not changed).
func encodeNames(m *Manifest) *Manifest {
	d := *m
	d.Entries = encodeEntries(m.Entries)
	d.Changed = encodeEntries(m.Changed)
	d.Repos = encodeRepos(m.Repos)
	d.LeftOut = encodeNotes(m.LeftOut)
	d.ReposAsFiles = encodeNotes(m.ReposAsFiles)
	d.Removed, d.RemovedB64 = nil, nil
	for _, p := range m.Removed {
		if plain, enc := wireName(p); enc != "" {
			d.RemovedB64 = append(d.RemovedB64, enc)
		} else {
			d.Removed = append(d.Removed, plain)
		}
	}
	return &d
}

// decodeNames turns the stored names of m into their bytes.
func (m *Manifest) decodeNames() error {
	where := "snapshot " + m.ID
	if err := decodeEntries(m.Entries, where+": entry"); err != nil {
		return err
	}
	if err := decodeEntries(m.Changed, where+": changed entry"); err != nil {
		return err
	}
	if err := decodeRepos(m.Repos, where+": repository"); err != nil {
		return err
	}
	if err := decodeNotes(m.LeftOut, where+": left-out entry"); err != nil {
		return err
	}
	if err := decodeNotes(m.ReposAsFiles, where+": repository saved as files"); err != nil {
		return err
	}
	for i, enc := range m.RemovedB64 {
		p, err := fromWire("", enc, fmt.Sprintf("%s: removed path %d", where, i))
		if err != nil {
			return err
		}
		m.Removed = append(m.Removed, p)
	}
	m.RemovedB64 = nil
	return nil
}

// maxShownPath is how much of a path an error or a log line shows: a path
// can be 4 KiB, and a message that quotes it whole buries what it says.
const maxShownPath = 160

// ShortPath cuts a long path to its start and its end around "…", on rune
// boundaries when the path is valid UTF-8. Short paths are returned as they are.
func ShortPath(p string) string {
	if len(p) <= maxShownPath {
		return p
	}
	head, tail := maxShownPath/2, maxShownPath/2-10
	h, t := p[:head], p[len(p)-tail:]
	if utf8.ValidString(p) {
		for len(h) > 0 && !utf8.ValidString(h) {
			h = h[:len(h)-1]
		}
		for len(t) > 0 && !utf8.ValidString(t) {
			t = t[1:]
		}
	}
	return h + "…(" + strconv.Itoa(len(p)) + " bytes)…" + t
}

// QuotePath is a path as errors quote it: shortened, in Go quotes, with
// bytes that are not valid UTF-8 and control characters escaped (\xff, \n).
func QuotePath(p string) string { return strconv.Quote(ShortPath(p)) }

// DisplayPath is a path as listings and logs show it: as it is when it is
// printable UTF-8, quoted (see QuotePath) when not; shortened either way.
func DisplayPath(p string) string {
	if utf8.ValidString(p) {
		printable := true
		for _, r := range p {
			if !unicode.IsPrint(r) {
				printable = false
				break
			}
		}
		if printable {
			return ShortPath(p)
		}
	}
	return QuotePath(p)
}

// PathNote is a path of the workspace and why a save treated it specially:
// left out of the snapshot, or a repository saved file by file.
type PathNote struct {
	Path    string `json:"path,omitempty"`
	PathB64 string `json:"pathB64,omitempty"`
	Reason  string `json:"reason"`
	Size    int64  `json:"size,omitempty"`
}

// LeftOutFile is an entry of the workspace a save did not put in its
// snapshot, and why. Its JSON (`snapshot save --json`) shows the path as
// DisplayPath does, with the exact bytes in pathB64 when they are not
// valid UTF-8.
type LeftOutFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size,omitempty"`
	Reason string `json:"reason"`
}

// MarshalJSON shows the path readably (escaped, shortened) and exactly.
func (f LeftOutFile) MarshalJSON() ([]byte, error) {
	type out struct {
		Path    string `json:"path"`
		PathB64 string `json:"pathB64,omitempty"`
		Size    int64  `json:"size,omitempty"`
		Reason  string `json:"reason"`
	}
	o := out{Path: DisplayPath(f.Path), Size: f.Size, Reason: f.Reason}
	if !utf8.ValidString(f.Path) {
		o.PathB64 = b64.EncodeToString([]byte(f.Path))
	}
	return json.Marshal(o)
}
