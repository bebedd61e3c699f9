package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tether-dev/tether/internal/store"
)

// SaveOptions configure a Saver.
type SaveOptions struct {
	// CacheDir keeps, between processes, the stat cache that lets a save skip
	// unchanged files without reading them. Empty: no persistent cache (the
	// Saver still remembers between its own saves).
	CacheDir string
	// Exclude reports whether a path (slash-separated, relative to the
	// workspace) is left out. Directories are asked about before their contents.
	Exclude func(rel string, isDir bool) bool
	// CaptureRepo, when set, is asked before each git repository of the workspace
	// is captured; false reuses the previous snapshot's capture of it (the
	// sync loop captures repositories only when they changed). Nil: always.
	CaptureRepo func(rel string) bool
	// RepoChanged, when set, reports that the caller knows the repository
	// at rel changed since its last capture (the sync loop saw file events
	// in it). Such a capture skips the fingerprint walk (see repoFingerprint):
	// it could not match, and the next capture of an unchanged repository
	// fingerprints again. Nil: every capture is fingerprinted.
	RepoChanged func(rel string) bool
	// SkipUnchanged makes Save write no snapshot when the workspace equals
	// the newest snapshot (the result then has Unchanged set and the newest
	// id). The sync loop's periodic rescans use it.
	SkipUnchanged bool
	// ConsistentCopy, when set, is called for every SQLite database found in
	// the workspace (a file with SQLite's header whose name ends in .db,
	// .sqlite, .sqlite3 or .db3, or that has a -wal or -journal file beside
	// it). It must write a transaction-consistent copy of the database to a
	// new file and return its path; the copy is saved under the database's
	// path and the -wal, -shm and -journal files beside it are left out, so a
	// restored database is whole even if a writer was mid-transaction. When
	// it fails, the files are saved as they are and the failure is counted
	// in SaveStats.Warnings.
	ConsistentCopy func(ctx context.Context, path string) (copyPath string, err error)
	// MaxBytes caps the bytes of regular files (outside repositories) in a
	// snapshot. Over it, the largest files are left out (never those under
	// .claude/ or .tether/) and listed in SaveStats.LeftOut. 0: no cap.
	MaxBytes int64
	// KeepIgnored is how many bytes of files that git ignores inside the
	// workspace's repositories (.env, local settings, build outputs: no
	// capture holds them) a snapshot keeps as ordinary files, smallest first;
	// the others are listed in SaveStats.LeftOut. Each path git lists (a
	// file, or a directory holding only ignored files) is kept or left out
	// whole. 0: none (DefaultKeepIgnored is what the commands use).
	KeepIgnored int64
	// Uploads is how many chunks are compressed and uploaded at once (default 4).
	Uploads int
	// Writer, when set, gives the writer epoch this Saver saves as (see
	// TakeEpoch). It is called at the first save, and again only until it
	// succeeds: a Saver never changes epoch, so once a newer epoch exists
	// every save returns a FencedError. It may return nil, nil only when
	// the session has no epoch at all (JoinNewest): that save is of epoch 0
	// and the next asks again. Nil: no fencing, manifests of epoch 0.
	Writer func(ctx context.Context) (*Writer, error)
	// Host is recorded in manifests (default: os.Hostname).
	Host string
	// Now is the clock (tests).
	Now func() time.Time
	// Log receives the warnings a person should see once: a damaged
	// snapshot the save could not build on, objects missing from the store
	// (default: slog.Default()). They are also in SaveStats.Warnings.
	Log *slog.Logger
	// Repair names objects (chunk ids) that a verify found missing or
	// corrupt: the files and repositories that use them are read again from
	// the workspace, and a stored copy that does not hold what its name says
	// is replaced (see `tether snapshot verify --repair`).
	Repair []string
}

// SaveStats reports what one save did.
type SaveStats struct {
	ID       string `json:"id"`
	Parent   string `json:"parent,omitempty"`
	Files    int    `json:"files"`
	Dirs     int    `json:"dirs"`
	Symlinks int    `json:"symlinks"`
	Skipped  int    `json:"skipped"` // sockets, devices and other entries a snapshot cannot hold
	Repos    int    `json:"repos"`   // git repositories in the snapshot
	// RepoPaths are their paths (submodules and nested repositories
	// included), wherever they are in the workspace.
	RepoPaths     []string `json:"repoPaths,omitempty"`
	ReposCaptured int      `json:"reposCaptured"` // of which a new bundle was stored
	// ReposUnchanged counts repositories whose fingerprint (see
	// repoFingerprint) was that of the previous capture: not captured again.
	ReposUnchanged  int   `json:"reposUnchanged,omitempty"`
	BytesScanned    int64 `json:"bytesScanned"`
	BytesRead       int64 `json:"bytesRead"`
	BytesUploaded   int64 `json:"bytesUploaded"`
	ObjectsUploaded int   `json:"objectsUploaded"`
	CacheHits       int   `json:"cacheHits"`
	DurationMs      int64 `json:"durationMs"`
	// Ignored counts the entries kept that git ignores in a repository
	// (see SaveOptions.KeepIgnored).
	Ignored int `json:"ignored,omitempty"`
	// SQLite counts the databases saved through ConsistentCopy.
	SQLite int `json:"sqlite,omitempty"`
	// Warnings are things a person should know about this save.
	Warnings []string `json:"warnings,omitempty"`
	// LeftOut lists what is not in the snapshot, each with its reason:
	// what could not be saved (unreadable, vanished between the walk and
	// the read, a path too long for the OS, a socket or other special
	// file), in walk order, then the files the size cap (MaxBytes) kept
	// out, largest first. A save that left something out still succeeded: the rest
	// is saved, and retrying would fail the same way.
	LeftOut      []LeftOutFile `json:"leftOut,omitempty"`
	LeftOutBytes int64         `json:"leftOutBytes,omitempty"` // of the files the size cap kept out
	// ReposAsFiles are the git repositories whose state could
	// not be captured, saved file by file (.git included), with git's reason.
	ReposAsFiles []LeftOutFile `json:"reposAsFiles,omitempty"`
	// Unchanged: nothing differed from the newest snapshot and, with
	// SkipUnchanged, no snapshot was written (ID is the newest one).
	Unchanged bool `json:"unchanged,omitempty"`
}

// DefaultKeepIgnored is the KeepIgnored of tether's commands: room for
// every .env and local configuration file, not for a build tree.
const DefaultKeepIgnored = 64 << 20

// builtinExcludes are tether's own files at the workspace root, which tether
// writes and the agent does not: left out without a note. Saving them would
// snapshot the snapshotter. The writer file names the writer epoch of the
// workspace it is in: restored elsewhere, it would let a second workspace
// pass for the first.
var builtinExcludes = []string{".tether/cache", ".tether/writer.json"}

// reservedName says why tether cannot keep the entry at rel ("" when it can):
// names that restore or hydrate use for their own work, where an entry of
// the agent's would be refused or removed. Such an entry is left out at
// save, with this reason and a warning, rather than refused or lost at
// restore.
func reservedName(rel string) string {
	switch {
	case rel == stagingName:
		return "the name " + stagingName + " at the workspace root is reserved by tether (restore builds the snapshot in it): rename it to have it saved"
	case path.Dir(rel) == clonesDir && strings.HasSuffix(rel, cloneSuffix):
		return "names ending in " + cloneSuffix + " under " + clonesDir + "/ are reserved by tether (hydrate clones into them and removes them): rename it to have it saved"
	}
	return ""
}

// cloneSuffix is what hydrate appends to repos/<name> for the directory it
// clones a session's repository into (statesync), clonesDir where it does.
const (
	cloneSuffix = ".tether-clone"
	clonesDir   = "repos"
)

// Saver saves snapshots of one workspace into one session's Repo. It keeps the
// last snapshot it saved (or found) as the base of the next one, so a sync loop
// holding a Saver reads and uploads only what changed. A Saver is not safe for
// concurrent use; separate Savers of one session may run at once (the second
// manifest write fails cleanly, see ErrConcurrentSave).
type Saver struct {
	repo      *Repo
	workspace string
	opts      SaveOptions

	base *Manifest // newest snapshot this Saver knows, nil before the first
	// baseCached is the id of the base object whose JSON the stat cache's
	// base.json holds: the JSON is written there once, never kept in memory.
	baseCached string
	baseByPath map[string]*Entry
	stats      map[string]fileState // what is known of each file of base
	repoFP     map[string]string    // fingerprint of each repository when base's capture of it began
	// ignored holds what each repository of base ignores, as listIgnored
	// found it (workspace paths): a save that keeps a repository's capture
	// walks these again instead of asking git.
	ignored map[string]ignoredList
	cache   *statCache
	tmpGit  string // git object dirs when there is no CacheDir

	// checked: a listing confirmed, at checkedAt, which objects of base
	// exist (see checkBase); missing holds the chunks of base it did not
	// find, which no new snapshot may reference without uploading them.
	checked   bool
	checkedAt time.Time
	missing   map[string]bool
	// warnedDamaged is the snapshot whose damage was last logged: a save
	// that fails for another reason and is retried does not log it again.
	warnedDamaged string
	// warnedReserved holds the reserved names already warned about: a sync
	// saves every few seconds, and says so once.
	warnedReserved map[string]bool
	writer         *Writer // the epoch this Saver saves as (nil: none yet, or no fencing)
	fenced         error   // set once a newer epoch was seen: every later save fails with it
}

// ErrConcurrentSave is returned when another writer created the snapshot id
// this save was about to write: only one sync should run per session.
var ErrConcurrentSave = errors.New("another writer saved a snapshot of this session at the same time")

// NewSaver prepares saves of workspace (an existing directory) into repo.
func NewSaver(repo *Repo, workspace string, opts SaveOptions) (*Saver, error) {
	abs, err := filepath.Abs(workspace)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("workspace %s: %w", workspace, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("workspace %s is not a directory", workspace)
	}
	if opts.Uploads <= 0 {
		opts.Uploads = 4
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	s := &Saver{repo: repo, workspace: abs, opts: opts}
	if opts.CacheDir != "" {
		s.cache = newStatCache(opts.CacheDir, repo, abs)
	}
	return s, nil
}

// statKey is what must be unchanged for a file to be taken as unchanged
// without reading it.
type statKey struct {
	Size  int64  `json:"s"`
	MTime int64  `json:"m"`
	CTime int64  `json:"c"`
	Ino   uint64 `json:"i"`
	Dev   uint64 `json:"d"`
}

// fileState is what a Saver knows of a file of its base snapshot.
type fileState struct {
	// statKey is the file's stat when it was read, trusted: the file is not
	// read again while its stat is the same. It is zero, matching no file,
	// when the file changed too close to the save that read it (see
	// racyWindow) or while it was read.
	statKey
	// Sum is the xxHash64 of the content of the base's entry (0: unknown).
	// A file that grew is checked against it before only its new tail is
	// read, and a racy file before its chunks are kept: hashing 10 MiB with
	// it costs a twentieth of SHA-256. It guards against accidents, not
	// against an adversary, who could as well forge a stat: a file that
	// both changed its old content and kept its sum is a 2^-64 event.
	Sum uint64 `json:"x,omitempty"`
}

func statKeyOf(fi fs.FileInfo) statKey {
	k := statKey{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.CTime = st.Ctim.Nano()
		k.Ino = st.Ino
		k.Dev = uint64(st.Dev) //nolint:unconvert // Dev is not uint64 on every platform
	}
	return k
}

// racyWindow: a file whose mtime is this close to the start of a save may be
// written again within the same timestamp tick after we read it, so it is not
// trusted from the stat cache next time (git's "racy git" problem).
const racyWindow = 100 * time.Millisecond

// loadBase makes sure the Saver's base is the newest snapshot in the store.
// When another writer (or a restore elsewhere) moved the session on, the
// Saver starts from that snapshot and forgets its stat cache: it will read
// files once more, but uploads only what the store lacks.
func (s *Saver) loadBase(ctx context.Context, latest string) error {
	if latest == "" {
		s.base, s.baseByPath, s.stats, s.baseCached = nil, nil, nil, ""
		return nil
	}
	if s.base != nil && s.base.ID == latest {
		return nil
	}
	s.checked, s.missing = false, nil
	if s.cache != nil {
		if oi, err := s.repo.st.Stat(ctx, s.repo.manifestKey(latest)); err == nil {
			if m, c, ok := s.cache.load(latest, oi.Size); ok {
				s.setBase(m, c.stats)
				if m.Base != nil {
					s.baseCached = m.Base.ID
				}
				// Not the check of its objects (see checkBase): every process
				// lists them once, so a one-shot save notices a chunk the
				// store lost since the last one (TestLostChunkIsUploadedAgain).
				s.repoFP, s.ignored = c.repoFP, c.ignored
				return nil
			}
		}
	}
	m, err := s.repo.LoadManifest(ctx, latest)
	if err != nil {
		return err
	}
	s.setBase(m, nil)
	return nil
}

func (s *Saver) setBase(m *Manifest, stats map[string]fileState) {
	s.base, s.repoFP, s.ignored = m, nil, nil
	s.baseByPath = make(map[string]*Entry, len(m.Entries))
	for i := range m.Entries {
		s.baseByPath[m.Entries[i].Path] = &m.Entries[i]
	}
	if stats == nil {
		stats = map[string]fileState{}
	}
	s.stats = stats
}

// Save writes a new snapshot of the workspace and returns what it did.
func (s *Saver) Save(ctx context.Context) (*SaveStats, error) {
	start := s.opts.Now()
	epochs, err := s.checkFence(ctx)
	if err != nil {
		return nil, err
	}
	unlock, err := s.repo.lock(ctx, lockShared)
	if err != nil {
		return nil, err
	}
	defer unlock()

	ids, err := s.repo.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	var next uint64 = 1
	if len(ids) > 0 {
		_, n, _ := ParseID(ids[len(ids)-1])
		next = n + 1
	}
	// The parent is the newest snapshot that is not stale: a fenced
	// writer's late snapshot is never built upon.
	latest, err := s.repo.current(ctx, ids, epochs)
	if err != nil {
		return nil, fmt.Errorf("save %s: %w", s.repo, err)
	}

	w := &saveRun{s: s, ctx: ctx, start: start, known: map[string]bool{}, newStats: map[string]fileState{}, newRepoFP: map[string]string{}, kept: map[string]bool{}, newIgnored: map[string]ignoredList{}}
	parent := latest
	if err := s.loadBase(ctx, latest); err != nil {
		if !IsDamaged(err) {
			return nil, fmt.Errorf("save %s: load previous snapshot: %w", s.repo, err)
		}
		// A save never builds on what it cannot read: it starts over as a
		// first save does (every file read, every chunk the store lacks
		// uploaded) and leaves the damaged snapshot as it is.
		msg := fmt.Sprintf("snapshot %s cannot be read (%s): saving a full snapshot that does not depend on it; run `tether snapshot verify` to see what else is damaged", latest, DamageReason(err))
		if s.warnedDamaged != latest {
			s.opts.Log.Warn(msg, "session", s.repo.Namespace+"/"+s.repo.Session, "store", s.repo.st.String())
			s.warnedDamaged = latest
		}
		w.stats.Warnings = append(w.stats.Warnings, msg)
		s.base, s.baseByPath, s.stats, s.baseCached, s.repoFP = nil, nil, nil, "", nil
		parent = ""
	}
	if s.base != nil {
		if err := s.checkBase(ctx, w); err != nil {
			return nil, fmt.Errorf("save %s: check that the objects of snapshot %s exist: %w", s.repo, s.base.ID, err)
		}
		s.base.eachChunk(func(c Ref) {
			if !s.missing[c.ID] {
				w.known[c.ID] = true
			}
		})
	}
	w.stats.Parent = parent
	w.up = newUploader(ctx, s.repo, s.opts.Uploads)
	if len(s.opts.Repair) > 0 {
		w.up.recheck = map[string]bool{}
		for _, id := range s.opts.Repair {
			w.up.recheck[id] = true
		}
	}
	entries, werr := w.walk()
	uerr := w.up.wait()
	if werr == nil {
		werr = uerr
	}
	if werr != nil {
		return nil, fmt.Errorf("save %s from %s: %w", s.repo, s.workspace, werr)
	}

	m := &Manifest{
		Version:   FormatVersion,
		ID:        FormatID(next),
		Namespace: s.repo.Namespace,
		Session:   s.repo.Session,
		Time:      start.UTC(),
		Host:      s.opts.Host,
		Parent:    parent,
		Writer:    s.writerID(),
		Epoch:     s.epoch(),
		Entries:   entries,
		Repos:     w.repos,
	}
	m.Summary.Repos = len(w.repos)
	m.Summary.LeftOut, m.Summary.ReposAsFiles = len(w.stats.LeftOut), len(w.stats.ReposAsFiles)
	m.LeftOut, m.ReposAsFiles = notesOf(w.stats.LeftOut), notesOf(w.stats.ReposAsFiles)
	for _, e := range entries {
		switch e.Type {
		case TypeFile:
			m.Summary.Files++
			m.Summary.Bytes += e.Size
		case TypeDir:
			m.Summary.Dirs++
		case TypeSymlink:
			m.Summary.Symlinks++
		}
	}
	// A base whose base object is lost (from == nil) is not skipped: the
	// point of this save is then to write one that is whole.
	if s.base != nil && s.base.from != nil && sameContent(s.base, m) {
		// Skipping would leave the newest snapshot as it is: make sure its
		// base object is still there (one Stat), or write a whole one.
		ok, err := s.baseStillThere(ctx, w, s.base.from)
		if err != nil {
			return nil, fmt.Errorf("save %s: %w", s.repo, err)
		}
		if !ok {
			s.base.from = nil
		} else {
			w.baseChecked = true
		}
	}
	if s.base != nil && s.base.from != nil && sameContent(s.base, m) {
		w.stats.Unchanged = true
		if s.opts.SkipUnchanged {
			st := &w.stats
			st.ID = s.base.ID
			st.Files, st.Dirs, st.Symlinks = m.Summary.Files, m.Summary.Dirs, m.Summary.Symlinks
			st.BytesScanned = m.Summary.Bytes
			st.Repos, st.RepoPaths = len(m.Repos), repoPaths(m)
			st.BytesUploaded = w.up.bytes.Load()
			st.ObjectsUploaded = int(w.up.objects.Load())
			st.DurationMs = s.opts.Now().Sub(start).Milliseconds()
			// Keep the fresher stats: they may now trust files that were racy.
			s.stats, s.repoFP, s.ignored = w.newStats, w.newRepoFP, w.newIgnored
			return st, nil
		}
	}
	m.Summary.Uploaded = w.up.bytes.Load()
	raw, baseRaw, err := s.storedForm(ctx, m, w)
	if err != nil {
		return nil, fmt.Errorf("save %s: %w", s.repo, err)
	}
	// Every chunk durable before the manifest that makes them a snapshot.
	if err := store.Sync(ctx, s.repo.st); err != nil {
		return nil, fmt.Errorf("save %s: flush chunks: %w", s.repo, err)
	}
	obj := encode(raw)
	// The last moment to learn that a newer writer took over: after this
	// the snapshot exists (and, if it loses this race, is stale).
	if _, err := s.checkFence(ctx); err != nil {
		return nil, err
	}
	// The manifest is written last and only if absent: it is what makes the
	// snapshot exist, and nobody can overwrite it.
	if err := s.repo.st.PutIfAbsent(ctx, s.repo.manifestKey(m.ID), obj); err != nil {
		if errors.Is(err, store.ErrExists) {
			s.base = nil // the session moved on under us; reload next time
			return nil, fmt.Errorf("save %s: snapshot %s: %w; make sure only one `tether sync` runs for this session", s.repo, m.ID, ErrConcurrentSave)
		}
		return nil, fmt.Errorf("save %s: write manifest %s: %w", s.repo, m.ID, err)
	}
	s.repo.fence.putHead(&manifestHead{ID: m.ID, Writer: m.Writer, Epoch: m.Epoch})
	st := &w.stats
	st.ID = m.ID
	st.Files, st.Dirs, st.Symlinks = m.Summary.Files, m.Summary.Dirs, m.Summary.Symlinks
	st.BytesScanned = m.Summary.Bytes
	st.Repos, st.RepoPaths = len(m.Repos), repoPaths(m)
	st.BytesUploaded = w.up.bytes.Load() + int64(len(obj))
	st.ObjectsUploaded = int(w.up.objects.Load()) + 1
	st.DurationMs = s.opts.Now().Sub(start).Milliseconds()

	s.setBase(m, w.newStats)
	s.repoFP, s.ignored = w.newRepoFP, w.newIgnored
	// Every object m references was found by the listing or uploaded by
	// this save: as good as checked.
	s.missing = nil
	if !s.checked {
		s.checked, s.checkedAt = true, start
	}
	if s.cache != nil {
		// Best effort: a lost cache costs one re-read of the files, nothing else.
		if s.baseCached != m.Base.ID && baseRaw == nil {
			baseRaw, _ = marshalBase(m.from) // loaded from the store: the same JSON again
		}
		c := cached{stats: w.newStats, repoFP: w.newRepoFP, ignored: w.newIgnored}
		if err := s.cache.store(raw, baseRaw, m.ID, int64(len(obj)), c); err == nil {
			s.baseCached = m.Base.ID
		}
	}
	return st, nil
}

// storedForm returns the manifest as stored, a delta against the base of the
// previous save, and the JSON of a base object it wrote (nil when it wrote
// none). When there is no base yet, or
// the delta would exceed an eighth of the base (and 1 KiB), it stores a new
// base object first (counted in w's upload figures) and m becomes a delta
// against that. It leaves m resolved, with m.Base and m.from set.
func (s *Saver) storedForm(ctx context.Context, m *Manifest, w *saveRun) (raw, baseRaw []byte, err error) {
	var from *baseState
	if s.base != nil {
		from = s.base.from
	}
	if from != nil {
		raw, err = marshalManifest(m.delta(from))
		if err != nil {
			return nil, nil, err
		}
		small := len(raw) <= 1024 || int64(len(raw))*8 <= from.ref.Len
		if small {
			ok, err := s.baseStillThere(ctx, w, from)
			if err != nil {
				return nil, nil, err
			}
			small = ok
		}
		if small {
			m.Base, m.from = &Ref{ID: from.ref.ID, Len: from.ref.Len}, from
			return raw, nil, nil
		}
	}
	from = &baseState{Entries: m.Entries, Repos: m.Repos}
	if baseRaw, err = marshalBase(from); err != nil {
		return nil, nil, err
	}
	from.ref = Ref{ID: hashID(baseRaw), Len: int64(len(baseRaw))}
	n, err := s.repo.writeChunk(ctx, from.ref.ID, baseRaw)
	if err != nil {
		return nil, nil, fmt.Errorf("write base object: %w", err)
	}
	if n > 0 {
		w.up.bytes.Add(n)
		w.up.objects.Add(1)
		from.objSize = n
	}
	if raw, err = marshalManifest(m.delta(from)); err != nil {
		return nil, nil, err
	}
	m.Base, m.from = &Ref{ID: from.ref.ID, Len: from.ref.Len}, from
	return raw, baseRaw, nil
}

// saveRun is the state of one Save.
type saveRun struct {
	s     *Saver
	ctx   context.Context
	start time.Time
	known map[string]bool // chunks the store is known to have
	// baseChecked: this save already confirmed the base object exists.
	baseChecked bool
	newStats    map[string]fileState
	// newRepoFP holds the fingerprints of the repositories this save
	// captured (or found unchanged), for the next save.
	newRepoFP map[string]string
	// kept holds the repositories whose capture this save took from the
	// base, unchanged; newIgnored what each repository ignores (see
	// listIgnored), for the next save; units the ignored paths found.
	kept       map[string]bool
	newIgnored map[string]ignoredList
	units      []ignoredUnit
	found      []foundEntry
	stats      SaveStats
	up         *uploader
	split      *splitter
	buf        []byte
	repos      []RepoEntry
}

func (w *saveRun) excluded(rel string, isDir bool) bool {
	for _, x := range builtinExcludes {
		if rel == x {
			return true
		}
	}
	return w.s.opts.Exclude != nil && w.s.opts.Exclude(rel, isDir)
}

// foundEntry is one entry the walk found: what lstat said of it, at p.
type foundEntry struct {
	e  Entry
	p  string
	fi fs.FileInfo
}

// walk lists the workspace (stat only), applies the size cap, then reads
// the files that need reading.
func (w *saveRun) walk() ([]Entry, error) {
	if err := filepath.WalkDir(w.s.workspace, w.visit); err != nil {
		return nil, err
	}
	if err := w.keepIgnored(); err != nil {
		return nil, err
	}
	all := w.found
	var total int64
	var files []int
	for i, f := range all {
		if f.e.Type == TypeFile {
			total += f.fi.Size()
			files = append(files, i)
		}
	}
	leftOut := map[int]bool{}
	if max := w.s.opts.MaxBytes; max > 0 && total > max {
		// Leave out the largest files until the rest fits; never the agent's
		// own state (transcripts, session ids), which is what resume needs.
		sort.Slice(files, func(a, b int) bool { return all[files[a]].fi.Size() > all[files[b]].fi.Size() })
		for _, i := range files {
			if total <= max {
				break
			}
			if protected(all[i].e.Path) {
				continue
			}
			leftOut[i] = true
			total -= all[i].fi.Size()
			w.stats.LeftOut = append(w.stats.LeftOut, LeftOutFile{Path: all[i].e.Path, Size: all[i].fi.Size(), Reason: reasonSizeCap})
			w.stats.LeftOutBytes += all[i].fi.Size()
		}
	}

	// SQLite databases: a name that says so, or a journal beside it.
	byPath := make(map[string]bool, len(files))
	for _, i := range files {
		byPath[all[i].e.Path] = true
	}
	dbSiblings := map[string]bool{}
	entries := make([]Entry, 0, len(all))
	// linked: for each inode with more than one link, the index in entries
	// of the first of its paths that was saved; the later ones become hard
	// links to it, neither read nor uploaded again.
	linked := map[inode]int{}
	for i := range all {
		f := &all[i]
		if leftOut[i] || dbSiblings[f.e.Path] {
			continue
		}
		ino, multi := inodeOf(f.fi)
		multi = multi && f.e.Type == TypeFile
		if first, ok := linked[ino]; ok && multi {
			to := &entries[first]
			f.e.LinkTo, f.e.Size, f.e.Chunks, f.e.Mode, f.e.MTime = to.Path, to.Size, to.Chunks, to.Mode, to.MTime
			f.e.Sparse, f.e.Extents = to.Sparse, to.Extents
			entries = append(entries, f.e)
			continue
		}
		ok, err := w.entry(f.p, f.fi, &f.e, byPath, dbSiblings)
		if err != nil {
			return nil, err
		}
		if !ok {
			// Left out: the next path of its inode, if any, is the first.
			continue
		}
		if multi {
			linked[ino] = len(entries)
		}
		entries = append(entries, f.e)
	}
	return entries, nil
}

// visit is the walk's step: it turns what it finds into w.found, captures
// the git repositories, and leaves out, with a reason, what cannot be kept.
func (w *saveRun) visit(p string, d fs.DirEntry, err error) error {
	root := w.s.workspace
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if err != nil {
		if p == root {
			return err
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked: it is simply not in this snapshot
		}
		// A directory whose listing failed (it was entered, so it is
		// an entry already): what it holds is left out, the rest saved.
		w.leaveOut(filepath.ToSlash(p[len(root)+1:]), 0, "its contents could not be listed: "+errReason(err))
		return filepath.SkipDir
	}
	if p == root {
		return nil
	}
	rel := filepath.ToSlash(p[len(root)+1:])
	if w.excluded(rel, d.IsDir()) {
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}
	if reason := reservedName(rel); reason != "" {
		w.leaveOut(rel, 0, reason)
		w.s.warnReserved(rel, reason)
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}
	fi, err := d.Info()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		w.leaveOut(rel, 0, "cannot be examined: "+errReason(err))
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}
	e := Entry{Path: rel, Mode: unixMode(fi), MTime: fi.ModTime().UnixNano()}
	if d.IsDir() && isRepoRoot(rel, p) {
		if w.hasRepo(rel) {
			// Kept with the repository it is in (see keepCapture), and
			// found again in what that one ignores.
			return filepath.SkipDir
		}
		n := len(w.repos)
		captured, err := w.captureOrFallBack(rel)
		if err != nil {
			return err
		}
		if captured {
			if err := w.listIgnored(n); err != nil {
				return err
			}
			return filepath.SkipDir
		}
		// Saved file by file, .git included: it becomes a directory
		// entry and the walk goes on into it.
	}
	switch {
	case fi.Mode().IsDir():
		e.Type = TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			w.leaveOut(rel, 0, "symlink cannot be read: "+errReason(err))
			return nil
		}
		e.Type, e.Target, e.Mode = TypeSymlink, target, 0
	case fi.Mode().IsRegular():
		e.Type = TypeFile
	default:
		w.stats.Skipped++
		w.leaveOut(rel, 0, specialKind(fi.Mode())+": a snapshot cannot hold it")
		return nil
	}
	w.found = append(w.found, foundEntry{e, p, fi})
	return nil
}

// entry fills in the content of e, found at p with fi: for a file, its
// chunks, read (or taken from the stat cache) and uploaded as needed, or
// those of a consistent copy when it is a SQLite database. It returns false
// when the entry is left out.
func (w *saveRun) entry(p string, fi fs.FileInfo, e *Entry, byPath, dbSiblings map[string]bool) (bool, error) {
	if e.Type != TypeFile {
		return true, nil
	}
	if w.s.opts.ConsistentCopy != nil && sqliteCandidate(e.Path, byPath) {
		ok, err := w.sqlite(p, e)
		if err != nil {
			return false, err
		}
		if ok {
			for _, suffix := range []string{"-wal", "-shm", "-journal"} {
				dbSiblings[e.Path+suffix] = true
			}
			return true, nil
		}
	}
	if err := w.ctx.Err(); err != nil {
		return false, err
	}
	return w.file(p, e.Path, fi, e)
}

// inode names a file of the workspace: hard links share one.
type inode struct{ dev, ino uint64 }

// inodeOf returns fi's inode and whether it has more than one link.
func inodeOf(fi fs.FileInfo) (inode, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return inode{}, false
	}
	return inode{uint64(st.Dev), st.Ino}, st.Nlink > 1 //nolint:unconvert // Dev is not uint64 on every platform
}

func sqliteCandidate(rel string, files map[string]bool) bool {
	switch path.Ext(rel) {
	case ".db", ".sqlite", ".sqlite3", ".db3":
		return true
	}
	return files[rel+"-wal"] || files[rel+"-journal"]
}

var sqliteHeader = []byte("SQLite format 3\x00")

// sqlite saves a consistent copy of the database at p under e. It returns
// false when p is not a SQLite database or the copy failed (then the caller
// saves the file as it is).
func (w *saveRun) sqlite(p string, e *Entry) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, nil
	}
	head := make([]byte, len(sqliteHeader))
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || !bytes.Equal(head, sqliteHeader) {
		return false, nil
	}
	cp, err := w.s.opts.ConsistentCopy(w.ctx, p)
	if err != nil {
		if w.ctx.Err() != nil {
			return false, w.ctx.Err()
		}
		w.stats.Warnings = append(w.stats.Warnings, fmt.Sprintf("SQLite database %s saved as it is (it may be mid-transaction): consistent copy failed: %v", e.Path, err))
		return false, nil
	}
	defer os.Remove(cp)
	b, err := w.storeFile(cp)
	if err != nil {
		return false, err
	}
	e.Size, e.Chunks = b.Size, b.Chunks
	w.stats.SQLite++
	return true, nil
}

// protected paths are never left out by the size cap.
func protected(rel string) bool {
	return strings.HasPrefix(rel, ".claude/") || strings.HasPrefix(rel, ".tether/")
}

func unixMode(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Mode & 07777
	}
	m := uint32(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		m |= 04000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		m |= 02000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		m |= 01000
	}
	return m
}

// file fills e.Size and e.Chunks for a regular file, reading only what it
// must. It returns false when the file vanished before it could be read.
func (w *saveRun) file(p, rel string, fi fs.FileInfo, e *Entry) (bool, error) {
	key := statKeyOf(fi)
	prev := w.s.baseByPath[rel]
	if prev != nil && (prev.Type != TypeFile || w.s.refsMissing(prev.Chunks)) {
		// Not a file before, or its chunks are not all in the store: read
		// it whole, so every chunk of the new entry is uploaded if absent.
		prev = nil
	}
	old := w.s.stats[rel] // zero when unknown
	if prev != nil && prev.Size == key.Size && old.statKey == key {
		e.Size, e.Chunks, e.Sparse, e.Extents = prev.Size, prev.Chunks, prev.Sparse, prev.Extents
		w.stats.CacheHits++
		w.remember(rel, old)
		return true, nil
	}
	if testHookBeforeRead != nil {
		testHookBeforeRead(p)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		w.leaveOut(rel, 0, reasonVanished)
		return false, nil
	}
	if err != nil {
		// Not readable (EACCES, ELOOP when it became a symlink,
		// ENAMETOOLONG, EIO): the rest of the workspace is still saved.
		w.leaveOut(rel, 0, "cannot be opened: "+errReason(err))
		return false, nil
	}
	defer f.Close()

	if holesLikely(fi) {
		if exts, ok := dataExtents(f, key.Size); ok {
			return w.sparseFile(f, rel, key, exts, e)
		}
	}
	if prev != nil && prev.Sparse {
		// Its chunks hold its data without the holes: no prefix of the
		// file to keep. Read it whole.
		prev = nil
	}
	var chunks []Ref
	var offset int64
	sum := xxhash.New() // of what e will hold, from its start
	if prev != nil && prev.Size > 0 && key.Size >= prev.Size {
		keep, at := appendRegion(prev.Chunks, prev.Size, key.Size)
		ok, err := w.verifyPrefix(f, prev, old.Sum, keep, sum)
		if err != nil {
			// Only reads of f fail here.
			w.leaveOut(rel, 0, "cannot be read: "+errReason(err))
			return false, nil
		}
		if ok && key.Size == prev.Size {
			// Same content, but its stat could not be trusted (it was racy
			// last time, or touched): keep its chunks as they are. Chunking
			// it afresh could cut an appended file differently and upload
			// its tail again for nothing.
			e.Size, e.Chunks = prev.Size, prev.Chunks
			w.rememberRead(f, rel, key, prev.Size, sum.Sum64())
			return true, nil
		}
		if ok {
			chunks, offset = append(chunks, prev.Chunks[:keep]...), at
		} else {
			sum.Reset()
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			w.leaveOut(rel, 0, "cannot be read: "+errReason(err))
			return false, nil
		}
	}
	chunks, n, err := w.chunkFrom(f, chunks, sum)
	if ok, err := w.readFailed(rel, err); !ok {
		return false, err
	}
	size := offset + n
	e.Size, e.Chunks = size, chunks
	w.rememberRead(f, rel, key, size, sum.Sum64())
	return true, nil
}

// chunkFrom splits what r reads into chunks, appended to chunks, uploads
// those the store lacks and feeds sum. It returns the chunks and the bytes
// read; a failure to read r is a readError.
func (w *saveRun) chunkFrom(r io.Reader, chunks []Ref, sum *xxhash.Digest) ([]Ref, int64, error) {
	if w.split == nil {
		w.split = newSplitter()
	}
	var n int64
	err := w.split.split(countingReader{r, &w.stats.BytesRead}, func(data []byte) error {
		_, _ = sum.Write(data)
		id := hashID(data)
		chunks = append(chunks, Ref{ID: id, Len: int64(len(data))})
		n += int64(len(data))
		if w.known[id] {
			return nil
		}
		w.known[id] = true
		return w.up.put(id, data)
	})
	return chunks, n, err
}

// readFailed sorts out the error of chunkFrom reading the file at rel: nil
// (true), a failure to read the file, which is left out (false, nil), or
// the store's, which fails the save.
func (w *saveRun) readFailed(rel string, err error) (bool, error) {
	var rerr readError
	if errors.As(err, &rerr) {
		// The chunks already uploaded are orphans until a prune: harmless.
		w.leaveOut(rel, 0, "cannot be read: "+errReason(rerr.err))
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", QuotePath(rel), err)
	}
	return true, nil
}

// sparseFile fills e for a file with holes, exts its data (see
// dataExtents): only the data is read and chunked, and the entry records
// where it lies.
func (w *saveRun) sparseFile(f *os.File, rel string, key statKey, exts []Extent, e *Entry) (bool, error) {
	r := &extentReader{f: f, exts: exts}
	sum := xxhash.New()
	chunks, _, err := w.chunkFrom(r, nil, sum)
	if ok, err := w.readFailed(rel, err); !ok {
		return false, err
	}
	e.Size, e.Chunks, e.Sparse, e.Extents = key.Size, chunks, true, r.read()
	size := key.Size
	if r.short {
		size = -1 // it shrank while it was read: not trusted next time
	}
	w.rememberRead(f, rel, key, size, sum.Sum64())
	return true, nil
}

// rememberRead records a file just read into an entry of size bytes whose
// content hashes to sum. Its stat, key, taken before reading, is trusted
// next time only if it describes what was read and the file is not "racy"
// (see racyWindow).
func (w *saveRun) rememberRead(f *os.File, rel string, key statKey, size int64, sum uint64) {
	st := fileState{Sum: sum}
	if size == key.Size && time.Unix(0, key.MTime).Before(w.start.Add(-racyWindow)) {
		if after, err := f.Stat(); err == nil && statKeyOf(after) == key {
			st.statKey = key
		}
	}
	w.remember(rel, st)
}

func (w *saveRun) remember(rel string, st fileState) { w.newStats[rel] = st }

// sameContent reports whether two manifests hold the same workspace.
func sameContent(a, b *Manifest) bool {
	return reflect.DeepEqual(a.Entries, b.Entries) && reflect.DeepEqual(a.Repos, b.Repos)
}

// verifyPrefix reads prev.Size bytes of f from its start and checks that they
// are the content of prev: against prevSum, the xxHash64 of it, when known,
// else chunk by chunk against prev's chunk ids. sum is fed the first keep
// chunks only, the part of prev the caller keeps. It leaves the offset
// anywhere.
func (w *saveRun) verifyPrefix(f *os.File, prev *Entry, prevSum uint64, keep int, sum *xxhash.Digest) (bool, error) {
	// Read through a small buffer: holding a whole chunk (up to maxChunk)
	// cost a fresh multi-megabyte buffer, zeroed and faulted in, per save.
	if w.buf == nil {
		w.buf = make([]byte, 256<<10)
	}
	// The kept chunks are hashed once, into sum; the whole of prev, for the
	// check against prevSum, continues from a copy of sum past them.
	whole := sum
	var h hash.Hash // the chunk-by-chunk check, when there is no prevSum
	if prevSum == 0 {
		h = sha256.New()
	}
	var id [sha256.Size]byte
	for i, c := range prev.Chunks {
		if i == keep {
			if prevSum == 0 {
				whole = nil
			} else {
				rest := *sum
				whole = &rest
			}
		}
		if h != nil {
			h.Reset()
		}
		for left := c.Len; left > 0; {
			b := w.buf[:min(int64(len(w.buf)), left)]
			n, err := io.ReadFull(f, b)
			w.stats.BytesRead += int64(n)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return false, nil // the file is shorter now
			}
			if err != nil {
				return false, err
			}
			left -= int64(n)
			if whole != nil {
				_, _ = whole.Write(b)
			}
			if h != nil {
				h.Write(b)
			}
		}
		if h != nil && hex.EncodeToString(h.Sum(id[:0])) != c.ID {
			return false, nil
		}
	}
	return prevSum == 0 || whole.Sum64() == prevSum, nil
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}

// readError is a failure to read the workspace's file, as opposed to the
// store's: the file is left out, the save goes on.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// uploader compresses and writes chunks with bounded concurrency. The first
// error cancels the rest and is returned by put or wait.
type uploader struct {
	ctx     context.Context
	cancel  context.CancelFunc
	repo    *Repo
	sem     chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	bytes   atomic.Int64
	objects atomic.Int64
	// recheck: chunks a verify named damaged, whose stored copy is read and
	// replaced if wrong instead of being trusted for existing.
	recheck map[string]bool
}

func newUploader(ctx context.Context, repo *Repo, n int) *uploader {
	ctx, cancel := context.WithCancel(ctx)
	return &uploader{ctx: ctx, cancel: cancel, repo: repo, sem: make(chan struct{}, n)}
}

func (u *uploader) put(id string, data []byte) error {
	select {
	case u.sem <- struct{}{}:
	case <-u.ctx.Done():
		return u.failure()
	}
	buf := append([]byte(nil), data...) // data belongs to the chunker
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer func() { <-u.sem }()
		write := u.repo.writeChunk
		if u.recheck[id] {
			write = u.repo.rewriteChunk
		}
		n, err := write(u.ctx, id, buf)
		if err != nil {
			u.mu.Lock()
			if u.err == nil {
				u.err = fmt.Errorf("upload chunk %s: %w", u.repo.objectKey(id), err)
				u.cancel()
			}
			u.mu.Unlock()
			return
		}
		if n > 0 {
			u.bytes.Add(n)
			u.objects.Add(1)
		}
	}()
	return nil
}

func (u *uploader) failure() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err != nil {
		return u.err
	}
	return u.ctx.Err()
}

func (u *uploader) wait() error {
	u.wg.Wait()
	defer u.cancel()
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// Reasons an entry is left out, as SaveStats and manifests give them.
const (
	reasonSizeCap  = "over the size cap (--max-size): the largest files are left out first"
	reasonVanished = "removed between the walk and the read"
)

// maxNotes bounds the left-out entries a manifest lists (Summary counts
// them all): a workspace with a million sockets must not make every
// manifest megabytes long.
const maxNotes = 1000

// testHookBeforeRead, when set (tests only), is called with a file's path
// just before a save opens it: the moment a file can vanish or change kind
// after the walk saw it.
var testHookBeforeRead func(p string)

// warnReserved logs, once per Saver, that the entry at rel has a name tether
// reserves and is not saved.
func (s *Saver) warnReserved(rel, reason string) {
	if s.warnedReserved[rel] {
		return
	}
	if s.warnedReserved == nil {
		s.warnedReserved = map[string]bool{}
	}
	s.warnedReserved[rel] = true
	s.opts.Log.Warn("not saving an entry whose name tether reserves", "path", DisplayPath(rel), "reason", reason, "session", s.repo.Namespace+"/"+s.repo.Session)
}

// leaveOut records an entry that is not in the snapshot, and why.
func (w *saveRun) leaveOut(rel string, size int64, reason string) {
	w.stats.LeftOut = append(w.stats.LeftOut, LeftOutFile{Path: rel, Size: size, Reason: reason})
}

// errReason is what went wrong, without the path (the note has it already,
// and a path can be 4 KiB).
func errReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Op + ": " + le.Err.Error()
	}
	return shortReason(err.Error())
}

// shortReason bounds a reason (git's stderr can be long).
func shortReason(s string) string {
	const max = 300
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}

func specialKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "a special file (" + m.Type().String() + ")"
	}
}

func notesOf(fs []LeftOutFile) []PathNote {
	if len(fs) == 0 {
		return nil
	}
	out := make([]PathNote, 0, min(len(fs), maxNotes))
	for _, f := range fs[:min(len(fs), maxNotes)] {
		out = append(out, PathNote{Path: f.Path, Size: f.Size, Reason: f.Reason})
	}
	return out
}
