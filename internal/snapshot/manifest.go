package snapshot

import (
	"encoding/json"
	"fmt"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// FormatVersion is the manifest format this code writes. Readers refuse newer ones.
//
// Version 1 manifests list every entry and repository. Version 2 manifests
// name a base object (a content-addressed object, stored and verified like a
// chunk, holding the entries and repositories of an earlier save) and list
// only what differs from it: the entries changed or added since, the paths
// removed since, and each repository with the bundles it adds to the base's
// chain. A save after a 1 KiB append then uploads the append and a manifest
// of about one entry, instead of re-listing every file of the workspace. A
// save writes a new base when its differences outgrow an eighth of the base.
//
// Version 3 keeps names byte-exact (see bytenames.go): a path or symlink
// target that is not valid UTF-8 is stored in base64 (pathB64, targetB64,
// removedB64) instead of as text, which JSON would have turned into U+FFFD.
// It also records what the save left out and why (leftOut), and the
// repositories it saved file by file because git could not capture them
// (reposAsFiles), and which files are hard links to an earlier one
// (linkTo, on an entry that also keeps the content, so a reader that knows
// nothing of it restores a copy). Versions 1 and 2 hold text names only and
// load as before.
//
// Version 4 keeps the holes of sparse files: a file entry marked sparse
// lists the extents of its data (extents, sorted, apart), and its chunks
// hold those bytes only, one extent after the other; the rest, up to its
// size, is holes. Such chunks do not add up to the file's size, so a
// reader that knew nothing of extents would restore the data at the
// wrong offsets: tethers that read up to version 3 refuse the whole
// manifest instead (see unmarshalManifest). Entries without holes are
// written as before.
//
// Version 4 also keeps the files git ignores inside a repository (see
// SaveOptions.KeepIgnored): entries whose path lies under a repository's
// path, restored after the repository's checkout. A reader up to version 3
// does not know to restore them after the checkout; like any reader, it
// refuses a manifest of a version above its own.
const FormatVersion = 4

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
	// Writer and Epoch name the writer epoch that saved the snapshot (see
	// writer.go). Manifests from before fencing have neither: epoch 0.
	Writer string `json:"writer,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`
	// Parent is the snapshot this one was saved incrementally against ("" for a first save).
	Parent string `json:"parent,omitempty"`
	// Base (format 2) is the object this manifest is a delta against; it
	// stays set once LoadManifest has resolved the delta.
	Base *Ref `json:"base,omitempty"`
	// Entries lists every entry. A stored format-2 manifest leaves it out and
	// has Changed and Removed instead; LoadManifest fills it in.
	Entries []Entry `json:"entries,omitempty"`
	// Changed and Removed (format 2, stored form only) are the entries that
	// differ from the base's and the base's paths that are gone.
	Changed []Entry  `json:"changed,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// RemovedB64 (stored form only) holds the removed paths that are not
	// valid UTF-8, in base64; decoding moves them into Removed.
	RemovedB64 []string `json:"removedB64,omitempty"`
	// Repos are the git repositories of the workspace (wherever they are) and their submodules,
	// captured by gitstate rather than file by file. In a stored format-2
	// manifest a repository's bundle chain may start with the first FromBase
	// bundles of the base's repository at the same path.
	Repos []RepoEntry `json:"repos,omitempty"`
	// LeftOut (format 3) lists what the save could not or would not put in
	// the snapshot (unreadable, vanished, too long a path, not a file, over
	// the size cap), at most maxNotes of them; Summary.LeftOut counts all.
	LeftOut []PathNote `json:"leftOut,omitempty"`
	// ReposAsFiles (format 3) are the repositories whose git
	// state could not be captured: their files, .git included, are entries
	// of the snapshot, and Reason says what git said.
	ReposAsFiles []PathNote `json:"reposAsFiles,omitempty"`
	Summary      Summary    `json:"summary"`

	// from is the decoded base, kept so that the next save can diff against it.
	from *baseState
}

// baseState is the content of a base object: a workspace's entries and
// repositories, in full.
type baseState struct {
	Entries []Entry     `json:"entries"`
	Repos   []RepoEntry `json:"repos,omitempty"`
	// ref names the object; its Len, the length of the JSON, decides when a
	// delta has grown too large and a new base is due.
	ref Ref
	// objSize is the size of the object as stored (0: unknown), which a
	// save's Stat of it must find again.
	objSize int64
}

// reposByPath indexes the base's repositories by path.
func (b *baseState) reposByPath() map[string]*RepoEntry {
	repos := make(map[string]*RepoEntry, len(b.Repos))
	for i := range b.Repos {
		repos[b.Repos[i].Path] = &b.Repos[i]
	}
	return repos
}

func marshalBase(b *baseState) ([]byte, error) {
	return json.Marshal(&baseState{Entries: encodeEntries(b.Entries), Repos: encodeRepos(b.Repos)})
}

func unmarshalBase(data []byte, ref Ref) (*baseState, error) {
	var b baseState
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("base object is not valid JSON: %w", err)
	}
	if err := decodeEntries(b.Entries, "base object "+ref.ID+": entry"); err != nil {
		return nil, err
	}
	if err := decodeRepos(b.Repos, "base object "+ref.ID+": repository"); err != nil {
		return nil, err
	}
	b.ref = ref
	return &b, nil
}

// resolve turns a stored format-2 manifest into the full form, using its
// decoded base. Entries come out sorted by path, as the saver wrote them.
func (m *Manifest) resolve(b *baseState) error {
	if m.Base == nil {
		return nil
	}
	if b.ref.ID != m.Base.ID {
		return fmt.Errorf("manifest names base object %s but was given %s", m.Base.ID, b.ref.ID)
	}
	removed := make(map[string]bool, len(m.Removed))
	for _, p := range m.Removed {
		removed[p] = true
	}
	changed := make(map[string]bool, len(m.Changed))
	for _, e := range m.Changed {
		changed[e.Path] = true
	}
	entries := make([]Entry, 0, len(b.Entries)+len(m.Changed))
	for _, e := range b.Entries {
		if !removed[e.Path] && !changed[e.Path] {
			entries = append(entries, e)
		}
	}
	entries = append(entries, m.Changed...)
	sort.SliceStable(entries, func(i, j int) bool { return entryLess(entries[i].Path, entries[j].Path) })
	baseRepos := b.reposByPath()
	repos := make([]RepoEntry, len(m.Repos))
	for i, r := range m.Repos {
		if r.FromBase > 0 {
			br := baseRepos[r.Path]
			if br == nil || len(br.Bundles) < r.FromBase {
				return fmt.Errorf("repository %q takes %d bundles from the base object, which has fewer", r.Path, r.FromBase)
			}
			r.Bundles = append(append([]Blob(nil), br.Bundles[:r.FromBase]...), r.Bundles...)
			r.FromBase = 0
		}
		repos[i] = r
	}
	m.Entries, m.Repos, m.Changed, m.Removed, m.from = entries, repos, nil, nil, b
	return nil
}

// delta returns the stored form of a full manifest m against base b.
func (m *Manifest) delta(b *baseState) *Manifest {
	d := *m
	d.Base = &Ref{ID: b.ref.ID, Len: b.ref.Len}
	d.Entries, d.from = nil, nil
	d.Changed, d.Removed = nil, nil
	old := make(map[string]*Entry, len(b.Entries))
	for i := range b.Entries {
		old[b.Entries[i].Path] = &b.Entries[i]
	}
	seen := make(map[string]bool, len(m.Entries))
	for i := range m.Entries {
		e := &m.Entries[i]
		seen[e.Path] = true
		if o := old[e.Path]; o == nil || !sameEntry(o, e) {
			d.Changed = append(d.Changed, *e)
		}
	}
	for _, e := range b.Entries {
		if !seen[e.Path] {
			d.Removed = append(d.Removed, e.Path)
		}
	}
	baseRepos := b.reposByPath()
	d.Repos = make([]RepoEntry, len(m.Repos))
	for i, r := range m.Repos {
		if br := baseRepos[r.Path]; br != nil && len(br.Bundles) > 0 && len(br.Bundles) <= len(r.Bundles) &&
			reflect.DeepEqual(br.Bundles, r.Bundles[:len(br.Bundles)]) {
			r.FromBase = len(br.Bundles)
			r.Bundles = r.Bundles[len(br.Bundles):]
		}
		d.Repos[i] = r
	}
	return &d
}

// entryLess is the order of a save's walk (directory by directory, names
// sorted): paths compared component by component, which is byte order with
// '/' below every other byte.
func entryLess(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return true
		}
		if cb == '/' {
			return false
		}
		return ca < cb
	}
	return len(a) < len(b)
}

func sameEntry(a, b *Entry) bool {
	if a.Path != b.Path || a.Type != b.Type || a.Mode != b.Mode || a.MTime != b.MTime || a.Size != b.Size || a.Target != b.Target || a.LinkTo != b.LinkTo || len(a.Chunks) != len(b.Chunks) || !sameExtents(a, b) {
		return false
	}
	for i := range a.Chunks {
		if a.Chunks[i] != b.Chunks[i] {
			return false
		}
	}
	return true
}

// sameExtents reports whether a and b have the same holes (none, for two
// files that are not sparse).
func sameExtents(a, b *Entry) bool {
	return a.Sparse == b.Sparse && slices.Equal(a.Extents, b.Extents)
}

// Summary is what `snapshot ls` shows of a snapshot.
type Summary struct {
	Files    int   `json:"files"`
	Dirs     int   `json:"dirs"`
	Symlinks int   `json:"symlinks"`
	Bytes    int64 `json:"bytes"`
	Repos    int   `json:"repos"`
	// LeftOut counts the entries the save left out (format 3).
	LeftOut int `json:"leftOut,omitempty"`
	// ReposAsFiles counts the repositories saved file by file (format 3).
	ReposAsFiles int `json:"reposAsFiles,omitempty"`
	// Uploaded is what the save uploaded for files and repositories, in
	// bytes (its manifest and base object aside; 0 in earlier versions'
	// snapshots). A figure for people: nothing reads it back as a size.
	Uploaded int64 `json:"uploaded,omitempty"`
}

// Entry is one file, directory or symlink, at a slash-separated path relative
// to the workspace root. Entries are sorted by path, parents before children.
type Entry struct {
	// Path and Target hold the exact bytes of the name. In the stored form
	// (format 3) one that is not valid UTF-8 is in PathB64 or TargetB64
	// instead, base64; they are empty in memory (see bytenames.go).
	Path      string `json:"path,omitempty"`
	PathB64   string `json:"pathB64,omitempty"`
	TargetB64 string `json:"targetB64,omitempty"`
	Type      string `json:"type"`
	// Mode holds the Unix permission bits, setuid, setgid and sticky included (07777).
	Mode   uint32 `json:"mode"`
	MTime  int64  `json:"mtime,omitempty"` // Unix nanoseconds
	Size   int64  `json:"size,omitempty"`
	Chunks []Ref  `json:"chunks,omitempty"`
	Target string `json:"target,omitempty"` // symlink target, as stored in the link
	// LinkTo, on a file, names the earlier file entry of the snapshot this
	// one is a hard link to (in the workspace both paths were one inode);
	// restore links it there instead of writing it. The entry keeps the
	// same size, chunks, mode and time as that file (validate checks), so a
	// reader that ignores the field restores a copy, never an empty file.
	// A name that is not valid UTF-8 is in LinkToB64 in the stored form.
	LinkTo    string `json:"linkTo,omitempty"`
	LinkToB64 string `json:"linkToB64,omitempty"`
	// Sparse (format 4), on a file, says it has holes: Extents lists where
	// its data is, sorted and apart, and Chunks hold those bytes only, the
	// extents one after the other. Everything else up to Size is a hole,
	// which restore leaves unwritten (it reads as zeros and takes no
	// space). A sparse file may have no extent at all (it is all hole).
	Sparse  bool     `json:"sparse,omitempty"`
	Extents []Extent `json:"extents,omitempty"`
}

// Extent is a range of a sparse file that holds data: Len bytes from Off.
type Extent struct {
	Off int64 `json:"off"`
	Len int64 `json:"len"`
}

// Ref names one chunk of a file and its plain length.
type Ref struct {
	ID  string `json:"id"`
	Len int64  `json:"len"`
}

func marshalManifest(m *Manifest) ([]byte, error) { return json.Marshal(encodeNames(m)) }

func unmarshalManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	if m.Version > FormatVersion || m.Version < 1 {
		return nil, fmt.Errorf("manifest format version %d is not supported by this tether (supports 1..%d): upgrade tether", m.Version, FormatVersion)
	}
	if err := m.decodeNames(); err != nil {
		return nil, err
	}
	return &m, nil
}

// validate checks everything restore relies on before a single byte is written:
// every path is clean, relative and inside the workspace, every parent is a
// directory of the snapshot (so nothing is ever written through a symlink), no
// path appears twice, every file's chunks add up to its size (a sparse
// file's: to the data of its extents, which lie sorted and apart within
// its size), and every reference to one chunk gives it the same length.
func (m *Manifest) validate() error {
	kinds := make(map[string]string, len(m.Entries))
	lens := chunkLens{}
	files := map[string]*Entry{} // the files that are not links, for LinkTo
	repos := make(map[string]bool, len(m.Repos))
	for _, r := range m.Repos {
		repos[r.Path] = true
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if err := validPath(e.Path); err != nil {
			return fmt.Errorf("snapshot %s: entry %s: %w", m.ID, QuotePath(e.Path), err)
		}
		// Compared as bytes: two names that differ only in bytes that are
		// not UTF-8 are two entries.
		if _, dup := kinds[e.Path]; dup {
			return fmt.Errorf("snapshot %s: entry %s appears twice", m.ID, QuotePath(e.Path))
		}
		if dir := path.Dir(e.Path); dir != "." {
			switch kinds[dir] {
			case TypeDir:
			case "":
				if repos[dir] {
					break // what git ignores there, restored after it
				}
				return fmt.Errorf("snapshot %s: entry %s comes before (or without) its parent directory %s", m.ID, QuotePath(e.Path), QuotePath(dir))
			default:
				return fmt.Errorf("snapshot %s: entry %s would be written through %s, which is a %s, not a directory: refusing to restore outside the target", m.ID, QuotePath(e.Path), QuotePath(dir), kinds[dir])
			}
		}
		if err := notInGitDir(e.Path, repos); err != nil {
			return fmt.Errorf("snapshot %s: entry %s: %w", m.ID, QuotePath(e.Path), err)
		}
		switch e.Type {
		case TypeDir:
		case TypeSymlink:
			if e.Target == "" || strings.ContainsRune(e.Target, 0) {
				return fmt.Errorf("snapshot %s: symlink %s has an invalid target", m.ID, QuotePath(e.Path))
			}
		case TypeFile:
			if err := validFile(e); err != nil {
				return fmt.Errorf("snapshot %s: file %s %w", m.ID, QuotePath(e.Path), err)
			}
			if err := lens.agree(e.Chunks); err != nil {
				return fmt.Errorf("snapshot %s: file %s %w", m.ID, QuotePath(e.Path), err)
			}
			if e.LinkTo == "" {
				files[e.Path] = e
			} else if err := validLink(e, files[e.LinkTo]); err != nil {
				return fmt.Errorf("snapshot %s: file %s is a hard link to %s, %w", m.ID, QuotePath(e.Path), QuotePath(e.LinkTo), err)
			}
		default:
			return fmt.Errorf("snapshot %s: entry %s has unknown type %s", m.ID, QuotePath(e.Path), QuotePath(e.Type))
		}
		if (e.Sparse || len(e.Extents) > 0) && e.Type != TypeFile {
			return fmt.Errorf("snapshot %s: %s %s is given extents: only files have them", m.ID, e.Type, QuotePath(e.Path))
		}
		if e.LinkTo != "" && e.Type != TypeFile {
			return fmt.Errorf("snapshot %s: %s %s is given as a hard link: only files are", m.ID, e.Type, QuotePath(e.Path))
		}
		if e.Mode&^07777 != 0 {
			return fmt.Errorf("snapshot %s: entry %s has invalid mode %o", m.ID, QuotePath(e.Path), e.Mode)
		}
		kinds[e.Path] = e.Type
	}
	for _, r := range m.Repos {
		for i, b := range r.Bundles {
			if err := validChunks(b.Chunks, b.Size); err != nil {
				return fmt.Errorf("snapshot %s: bundle %d of repository %s %w", m.ID, i, QuotePath(r.Path), err)
			}
			if err := lens.agree(b.Chunks); err != nil {
				return fmt.Errorf("snapshot %s: bundle %d of repository %s %w", m.ID, i, QuotePath(r.Path), err)
			}
		}
	}
	for _, n := range append(append([]PathNote(nil), m.LeftOut...), m.ReposAsFiles...) {
		// Only shown, never written; still no NUL, no 4 KiB of reason.
		if n.Path == "" || strings.ContainsRune(n.Path, 0) || len(n.Reason) > 4096 {
			return fmt.Errorf("snapshot %s: left-out note %s is invalid", m.ID, QuotePath(n.Path))
		}
	}
	return m.validateRepos(kinds)
}

// notInGitDir refuses an entry inside the git directory of one of the
// snapshot's repositories: a capture holds what git keeps there, and a file
// written into it (a hook, a config) would be git's to run.
func notInGitDir(rel string, repos map[string]bool) error {
	if len(repos) == 0 {
		return nil
	}
	for d, child := path.Dir(rel), rel; d != "."; d, child = path.Dir(d), d {
		if repos[d] && (child == d+"/.git") {
			return fmt.Errorf("it is inside the .git of repository %s, which only the repository's capture may write", QuotePath(d))
		}
	}
	return nil
}

// validChunks checks the lengths restore allocates and writes by: each
// chunk within the chunker's limit, and their sum (computed without
// overflow) the size.
func validChunks(chunks []Ref, size int64) error {
	if err := validSize(size); err != nil {
		return err
	}
	return chunksHold(chunks, size, fmt.Sprintf("size %d", size))
}

func validSize(size int64) error {
	if size < 0 {
		return fmt.Errorf("has a negative size %d", size)
	}
	if size > maxFileSize {
		return fmt.Errorf("has size %d, over the limit of %d bytes (maxFileSize)", size, int64(maxFileSize))
	}
	return nil
}

// validFile checks the size, extents and chunks of file e: its chunks hold
// its size, or, when it is sparse, the data of its extents.
func validFile(e *Entry) error {
	if !e.Sparse {
		if len(e.Extents) > 0 {
			return fmt.Errorf("lists extents but is not marked sparse")
		}
		return validChunks(e.Chunks, e.Size)
	}
	data, err := validExtents(e.Extents, e.Size)
	if err != nil {
		return err
	}
	return chunksHold(e.Chunks, data, fmt.Sprintf("%d bytes of data in its extents", data))
}

// validExtents checks the extents of a sparse file of the given size, the
// offsets restore writes at: each of positive length, after the one before
// it, and ending within the size (computed without overflow). It returns
// the bytes of data they hold.
func validExtents(exts []Extent, size int64) (int64, error) {
	if err := validSize(size); err != nil {
		return 0, err
	}
	var end, data int64 // end of the previous extent; 0 <= end <= size
	for i, x := range exts {
		switch {
		case x.Off < 0:
			return 0, fmt.Errorf("has extent %d at a negative offset %d", i, x.Off)
		case x.Len <= 0:
			return 0, fmt.Errorf("gives extent %d a length of %d bytes: an extent holds at least one byte", i, x.Len)
		case x.Off < end:
			return 0, fmt.Errorf("has extent %d at offset %d, before the end (%d) of the one before it: extents must be sorted and must not overlap", i, x.Off, end)
		case x.Off > size || x.Len > size-x.Off:
			return 0, fmt.Errorf("has extent %d of %d bytes at offset %d, which ends past its size %d", i, x.Len, x.Off, size)
		}
		end = x.Off + x.Len
		data += x.Len
	}
	return data, nil
}

// chunksHold checks that chunks, each a valid reference within the chunk
// size limit, add up to want bytes (what names them in messages).
func chunksHold(chunks []Ref, want int64, what string) error {
	size := want
	var sum int64
	for i, c := range chunks {
		if len(c.ID) != 64 || strings.Trim(c.ID, "0123456789abcdef") != "" {
			return fmt.Errorf("references an invalid chunk %q", c.ID)
		}
		if c.Len <= 0 || c.Len > maxChunk {
			return fmt.Errorf("gives chunk %s a length of %d bytes, outside 1..%d (the chunk size limit)", c.ID, c.Len, maxChunk)
		}
		if c.Len > size-sum {
			return fmt.Errorf("has %s but its first %d chunks already hold more", what, i+1)
		}
		sum += c.Len
	}
	if sum != size {
		return fmt.Errorf("has %s but its chunks hold %d bytes", what, sum)
	}
	return nil
}

// validLink checks a hard link e against the file it links to, to (nil
// when that is no earlier file entry of the manifest, or is a link itself):
// one inode has one content, mode and time.
func validLink(e, to *Entry) error {
	if to == nil {
		return fmt.Errorf("which is not an earlier file entry (that is not itself a link) of the snapshot")
	}
	if e.Size != to.Size || e.Mode != to.Mode || e.MTime != to.MTime || !reflect.DeepEqual(e.Chunks, to.Chunks) || !sameExtents(e, to) {
		return fmt.Errorf("but its size, chunks, extents, mode or time differ from that file's")
	}
	return nil
}

// maxFileSize bounds the size of a file or bundle a manifest may give:
// 16 TiB, the largest file ext4 holds. Without it, only the manifest's own
// length would bound what a restore sets out to write.
const maxFileSize = 1 << 44

// chunkLens is the length each chunk id was first given in a manifest. A
// chunk is its content: two references to one id with different lengths
// cannot both be right, and restore would only find out after writing
// part of the snapshot.
type chunkLens map[string]int64

func (l chunkLens) agree(chunks []Ref) error {
	for _, c := range chunks {
		if n, ok := l[c.ID]; ok && n != c.Len {
			return fmt.Errorf("gives chunk %s a length of %d bytes, another entry gives it %d", c.ID, c.Len, n)
		}
		l[c.ID] = c.Len
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
	case p == stagingName || strings.HasPrefix(p, stagingName+"/"):
		// Restore builds the snapshot in this directory of the target; no
		// save ever includes it (builtinExcludes).
		return fmt.Errorf("path is inside %s, which tether reserves for restores: refusing it", stagingName)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("path escapes the target with '..': refusing to restore outside the target")
		}
	}
	return nil
}
