package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/fsutil"
	"github.com/tether-dev/tether/internal/gitstate"
)

// stagingName is the directory, inside the target, in which a restore builds
// the snapshot (in its "tree" subdirectory) before moving it into place. The
// file "complete" beside the tree says the build finished and was verified,
// so an interrupted move can be finished. Save never includes this name, so
// no entry of a snapshot can collide with any of it.
const (
	stagingName    = ".tether-restore"
	stagingTree    = "tree"
	completeMarker = "complete"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Snapshot is the id to restore; "" or "latest" means the newest.
	Snapshot string
	// Fetches is how many chunks are fetched at once, for files and for each
	// bundle of a git repository (default 8). Whatever the count, the chunks
	// held in memory stay within a budget of 64 MiB (fetchBudget).
	Fetches int
	// KeepSetuid restores the setuid and setgid bits of regular files as
	// the manifest holds them. Off, they are dropped: a restore often runs
	// as root, and a snapshot is whatever its store holds, so a setuid
	// file in it would hand its owner's privileges to whoever runs it.
	// The manifest keeps the bits either way; directories keep setgid
	// (group inheritance, no privilege).
	KeepSetuid bool
}

// RestoreStats reports what a restore did.
type RestoreStats struct {
	ID         string `json:"id"`
	Files      int    `json:"files"`
	Bytes      int64  `json:"bytes"`
	DurationMs int64  `json:"durationMs"`
	// Repos says how each git repository came back: from its git
	// state, or file by file (.git included) because the save could not
	// capture it as git state.
	Repos []RestoredRepo `json:"repos,omitempty"`
	// LeftOut counts the entries the save left out of this snapshot (see
	// SaveStats.LeftOut); LeftOutListed lists the first of them.
	LeftOut       int           `json:"leftOut,omitempty"`
	LeftOutListed []LeftOutFile `json:"leftOutListed,omitempty"`
	// SetuidDropped counts the files restored without the setuid or setgid
	// bits the snapshot gives them (see RestoreOptions.KeepSetuid).
	SetuidDropped int `json:"setuidDropped,omitempty"`
}

// How a repository came back (RestoredRepo.Mode).
const (
	RepoModeGit   = "git"   // rebuilt by git from the snapshot's bundles and state
	RepoModeFiles = "files" // written file by file, .git included
)

// RestoredRepo is one repository of a restore and how it came back.
type RestoredRepo struct {
	Path   string `json:"path"`
	Mode   string `json:"mode"`
	Reason string `json:"reason,omitempty"` // why the save could not capture it (mode files)
}

// MarshalJSON shows the path as DisplayPath does.
func (r RestoredRepo) MarshalJSON() ([]byte, error) {
	type plain RestoredRepo
	p := plain(r)
	p.Path = DisplayPath(r.Path)
	return json.Marshal(p)
}

// Restore writes a snapshot into target, which must be missing or empty (an
// interrupted restore's leftovers aside). Nothing appears in target until the
// whole snapshot has been fetched, every chunk checked against its hash and
// written to a staging directory inside target; then the entries are renamed
// into place. If that last step is interrupted, running Restore again finishes
// it. A manifest with paths that would escape target is refused before
// anything is written.
func Restore(ctx context.Context, repo *Repo, target string, opts RestoreOptions) (*RestoreStats, error) {
	start := time.Now()
	if opts.Fetches <= 0 {
		opts.Fetches = 8
	}
	id, err := repo.Resolve(ctx, opts.Snapshot)
	if err != nil {
		return nil, err
	}
	m, err := repo.LoadManifest(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		// A manifest that decodes but fails the checks is damage too (a
		// caller may fall back to an older snapshot), named as such.
		return nil, fmt.Errorf("restore %s: refusing a bad manifest: %w", repo, &CorruptError{Key: repo.manifestKey(id), Reason: err.Error()})
	}
	target, err = filepath.Abs(target)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return nil, fmt.Errorf("restore %s: create target: %w", repo, err)
	}
	staging := filepath.Join(target, stagingName)

	// A finished staging directory of the same snapshot: only the moves are left.
	if marker, err := os.ReadFile(filepath.Join(staging, completeMarker)); err == nil {
		if string(marker) != id {
			return nil, fmt.Errorf("restore %s: %s holds an interrupted restore of snapshot %s, not %s; finish it by restoring %s, or remove %s and the target's contents", repo, target, marker, id, marker, staging)
		}
		if err := moveIntoPlace(staging, target); err != nil {
			return nil, err
		}
		return statsOf(m, start, opts.KeepSetuid), nil
	}
	if err := os.RemoveAll(staging); err != nil {
		return nil, fmt.Errorf("restore %s: remove an unfinished staging directory: %w", repo, err)
	}
	names, err := readDirNames(target)
	if err != nil {
		return nil, err
	}
	if len(names) > 0 {
		return nil, fmt.Errorf("restore %s: target %s is not empty (it holds %q…): restore into an empty or missing directory", repo, target, names[0])
	}
	if err := os.Mkdir(staging, 0o700); err != nil {
		return nil, err
	}
	tree := filepath.Join(staging, stagingTree)
	if err := os.Mkdir(tree, 0o700); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(staging)
		}
	}()
	if err := build(ctx, repo, m, tree, opts); err != nil {
		return nil, fmt.Errorf("restore %s snapshot %s: %w", repo, id, err)
	}
	if err := syncFS(staging); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(staging, completeMarker), []byte(id), 0o600); err != nil {
		return nil, err
	}
	ok = true
	if err := moveIntoPlace(staging, target); err != nil {
		return nil, err
	}
	return statsOf(m, start, opts.KeepSetuid), nil
}

func statsOf(m *Manifest, start time.Time, keepSetuid bool) *RestoreStats {
	st := &RestoreStats{ID: m.ID, Files: m.Summary.Files, Bytes: m.Summary.Bytes, DurationMs: time.Since(start).Milliseconds(), LeftOut: m.Summary.LeftOut}
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Type == TypeFile && fileMode(e.Mode, keepSetuid) != e.Mode {
			st.SetuidDropped++
		}
	}
	for _, r := range m.Repos {
		st.Repos = append(st.Repos, RestoredRepo{Path: r.Path, Mode: RepoModeGit})
	}
	for _, r := range m.ReposAsFiles {
		st.Repos = append(st.Repos, RestoredRepo{Path: r.Path, Mode: RepoModeFiles, Reason: r.Reason})
	}
	sort.Slice(st.Repos, func(i, j int) bool { return st.Repos[i].Path < st.Repos[j].Path })
	for _, n := range m.LeftOut {
		st.LeftOutListed = append(st.LeftOutListed, LeftOutFile{Path: n.Path, Size: n.Size, Reason: n.Reason})
	}
	return st
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if n != stagingName {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// moveIntoPlace renames every top-level entry of the staged tree into
// target, then removes staging. Each step can be repeated after a crash.
func moveIntoPlace(staging, target string) error {
	tree := filepath.Join(staging, stagingTree)
	names, err := readDirNames(tree)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(tree, n), filepath.Join(target, n)); err != nil {
			return fmt.Errorf("restore: move %s into place: %w", n, err)
		}
	}
	if err := fsutil.SyncDir(target); err != nil {
		return err
	}
	return os.RemoveAll(staging)
}

// build writes every entry of m under dir: directories first, then files
// (fetched in parallel) and git repositories at the same time (a
// repository's directory holds no file entry; validate checks), then
// symlinks (last, so nothing is ever written through one), then directory
// modes and times, deepest first.
func build(ctx context.Context, repo *Repo, m *Manifest, dir string, opts RestoreOptions) error {
	fetches := opts.Fetches
	// Entries inside a repository (what git ignores there, see
	// SaveOptions.KeepIgnored) wait for it: git restores only into an
	// empty directory.
	repoSet := make(map[string]bool, len(m.Repos))
	for _, r := range m.Repos {
		repoSet[r.Path] = true
	}
	var files, links, later []*Entry
	for i := range m.Entries {
		e := &m.Entries[i]
		switch {
		case len(repoSet) > 0 && insideRepo(e.Path, repoSet):
			later = append(later, e)
		case e.Type == TypeDir:
			if err := os.Mkdir(filepath.Join(dir, filepath.FromSlash(e.Path)), 0o700); err != nil {
				return err
			}
		case e.Type == TypeFile && e.LinkTo != "":
			links = append(links, e)
		case e.Type == TypeFile:
			files = append(files, e)
		}
	}
	writeFile := func(ctx context.Context, e *Entry) error {
		return restoreFile(ctx, repo, m.ID, e, filepath.Join(dir, filepath.FromSlash(e.Path)), fileMode(e.Mode, opts.KeepSetuid))
	}
	// The first repository's full bundle is fetched before any file: git
	// can only start once it is in, and its first step, index-pack, keeps
	// one core busy while the files are restored on the others.
	fetched := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(fetched) }) }
	tasks := []func(context.Context) error{
		func(ctx context.Context) error {
			select {
			case <-fetched:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := parallel(ctx, fetches, files, writeFile); err != nil {
				return err
			}
			// Write the files out while git still works: the syncfs that
			// counts, before the completion marker, then has less to do.
			return syncFS(dir)
		},
		func(ctx context.Context) error {
			defer release()
			return restoreGitRepos(ctx, repo, m, dir, fetches, release)
		},
	}
	err := parallel(ctx, len(tasks), tasks, func(ctx context.Context, task func(context.Context) error) error { return task(ctx) })
	if err != nil {
		return err
	}
	if len(later) > 0 {
		var laterFiles []*Entry
		checked := map[string]bool{}
		for _, e := range later {
			if err := inRealDir(dir, e.Path, checked); err != nil {
				return fmt.Errorf("snapshot %s: %w", m.ID, err)
			}
			switch {
			case e.Type == TypeDir:
				// Made by git already when the repository has files there;
				// then it must be a directory, not what the checkout put
				// there instead (chmod and chtimes would follow a symlink).
				p := filepath.Join(dir, filepath.FromSlash(e.Path))
				if err := os.Mkdir(p, 0o700); errors.Is(err, fs.ErrExist) {
					fi, err := os.Lstat(p)
					if err != nil {
						return err
					}
					if !fi.IsDir() {
						return fmt.Errorf("snapshot %s: directory %s is where the repository's checkout made a %s: refusing to restore outside the target", m.ID, QuotePath(e.Path), kindName(fi.Mode()))
					}
				} else if err != nil {
					return err
				}
				checked[e.Path] = true
			case e.Type == TypeFile && e.LinkTo != "":
				links = append(links, e)
			case e.Type == TypeFile:
				laterFiles = append(laterFiles, e)
			}
		}
		if err := parallel(ctx, fetches, laterFiles, writeFile); err != nil {
			return err
		}
	}
	// Hard links once every file they name is written (validate: each
	// names an earlier file entry that is not a link).
	for _, e := range links {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		err := os.Link(filepath.Join(dir, filepath.FromSlash(e.LinkTo)), p)
		if errors.Is(err, unix.EMLINK) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
			// A file system without hard links (or out of them for
			// this inode) still gets the content: the entry has it.
			err = writeFile(ctx, e)
		}
		if err != nil {
			return fmt.Errorf("hard link %s to %s: %w", QuotePath(e.Path), QuotePath(e.LinkTo), err)
		}
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type == TypeSymlink {
			p := filepath.Join(dir, filepath.FromSlash(e.Path))
			if err := os.Symlink(e.Target, p); err != nil {
				return err
			}
			if e.MTime != 0 {
				ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
				_ = unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
			}
		}
	}
	for i := len(m.Entries) - 1; i >= 0; i-- {
		e := &m.Entries[i]
		if e.Type != TypeDir {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		if err := chmod(p, e.Mode); err != nil {
			return err
		}
		t := time.Unix(0, e.MTime)
		if err := os.Chtimes(p, t, t); err != nil {
			return err
		}
	}
	return nil
}

// inRealDir checks that every directory above rel (in the restore target
// dir) is a directory, not a symlink: what a repository's checkout made
// there is not trusted to lead where the snapshot's entries go. checked
// remembers the directories already seen.
func inRealDir(dir, rel string, checked map[string]bool) error {
	for d := path.Dir(rel); d != "." && !checked[d]; d = path.Dir(d) {
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(d)))
		if err != nil {
			return fmt.Errorf("entry %s: its directory %s is missing after the repositories were restored: %w", QuotePath(rel), QuotePath(d), err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("entry %s would be written through %s, which the repository's checkout made a %s, not a directory: refusing to restore outside the target", QuotePath(rel), QuotePath(d), kindName(fi.Mode()))
		}
		checked[d] = true
	}
	return nil
}

func kindName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	}
	return specialKind(m)
}

// restoreGitRepos lets gitstate rebuild each repository under dir, parents
// before their submodules, streaming every bundle of its chain straight
// from the store into git. It calls fetched once the first bundle (the
// full one, usually most of the chain) of the first repository has been
// read.
func restoreGitRepos(ctx context.Context, repo *Repo, m *Manifest, dir string, fetches int, fetched func()) error {
	repos := append([]RepoEntry(nil), m.Repos...)
	sort.Slice(repos, func(i, j int) bool { return repos[i].Path < repos[j].Path })
	for ri, r := range repos {
		srcs := make([]gitstate.BundleSource, len(r.Bundles))
		for i, b := range r.Bundles {
			srcs[i] = func(ctx context.Context) (io.ReadCloser, error) {
				br := newBlobReader(ctx, repo, m.ID, b, fetches)
				if ri == 0 && i == 0 {
					br.atEOF = fetched
				}
				return br, nil
			}
		}
		if err := gitstate.RestoreFrom(ctx, filepath.Join(dir, filepath.FromSlash(r.Path)), r.State, srcs); err != nil {
			return err
		}
	}
	return nil
}

// blobReader reads a stored blob (a bundle) in order while fetching up to n
// of its chunks ahead, in parallel, within the repository's fetch budget.
// No byte of a chunk is returned before the whole chunk has been checked
// against its hash and its length.
type blobReader struct {
	ctx     context.Context
	cancel  context.CancelFunc
	slots   []chan chunkResult // chunk i's result, sent once
	ahead   chan struct{}      // one token per chunk fetched but not yet read
	next    int                // the chunk Read takes next
	cur     []byte             // what Read has not returned of chunk next-1
	release func()             // gives chunk next-1's bytes back to the budget
	err     error
	atEOF   func()        // called once all of the blob has been read
	fetches chan struct{} // closed once no fetch is under way or to come
}

type chunkResult struct {
	data    []byte
	release func()
	err     error
}

func newBlobReader(ctx context.Context, repo *Repo, snapshotID string, b Blob, n int) *blobReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &blobReader{ctx: ctx, cancel: cancel, slots: make([]chan chunkResult, len(b.Chunks)), ahead: make(chan struct{}, n), release: func() {}, fetches: make(chan struct{})}
	for i := range r.slots {
		r.slots[i] = make(chan chunkResult, 1)
	}
	go func() {
		var wg sync.WaitGroup
		defer func() { wg.Wait(); close(r.fetches) }()
		for i, c := range b.Chunks {
			select {
			case r.ahead <- struct{}{}:
			case <-ctx.Done():
				return
			}
			// Reserved here, in chunk order: the chunk the reader waits
			// for never waits for the budget behind chunks that come
			// after it.
			release, err := repo.reserve(ctx, c.Len)
			if err != nil {
				return // canceled: Read and Close see it
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				data, err := repo.readChunk(ctx, c, snapshotID)
				if err != nil {
					release()
					release = nil
				}
				r.slots[i] <- chunkResult{data, release, err}
			}()
		}
	}()
	return r
}

func (r *blobReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		r.release()
		r.release = func() {}
		if r.err != nil {
			return 0, r.err
		}
		if r.next == len(r.slots) {
			if r.atEOF != nil {
				r.atEOF()
				r.atEOF = nil
			}
			return 0, io.EOF
		}
		select {
		case res := <-r.slots[r.next]:
			<-r.ahead
			r.next++
			r.cur, r.err = res.data, res.err
			if res.release != nil {
				r.release = res.release
			}
		case <-r.ctx.Done():
			r.err = r.ctx.Err()
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the fetches still under way and gives back to the budget the
// bytes of every chunk fetched and not read.
func (r *blobReader) Close() error {
	r.cancel()
	<-r.fetches
	r.release()
	r.cur = nil
	for _, slot := range r.slots[r.next:] {
		select {
		case res := <-slot:
			if res.release != nil {
				res.release()
			}
		default: // never fetched
		}
	}
	return nil
}

func chmod(p string, mode uint32) error {
	if err := syscall.Chmod(p, mode); err != nil {
		return &fs.PathError{Op: "chmod", Path: p, Err: err}
	}
	return nil
}

// fileMode is the mode a regular file is restored with: setuid and setgid
// only when asked for (RestoreOptions.KeepSetuid).
func fileMode(mode uint32, keepSetuid bool) uint32 {
	if keepSetuid {
		return mode
	}
	return mode &^ (syscall.S_ISUID | syscall.S_ISGID)
}

// restoreFile writes e at p with the given mode bits. A sparse file is given
// its size first and its data at the offsets of its extents: its holes stay
// holes.
func restoreFile(ctx context.Context, repo *Repo, snapshotID string, e *Entry, p string, mode uint32) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	write := func(data []byte) error { _, err := f.Write(data); return err }
	if e.Sparse {
		if err := f.Truncate(e.Size); err != nil {
			return err
		}
		write = (&extentWriter{f: f, exts: e.Extents}).Write
	}
	for _, c := range e.Chunks {
		data, release, err := repo.fetchChunk(ctx, c, snapshotID)
		if err != nil {
			return fmt.Errorf("file %s: %w", QuotePath(e.Path), err)
		}
		err = write(data)
		release()
		if err != nil {
			return fmt.Errorf("file %s: %w", QuotePath(e.Path), err)
		}
	}
	if err := f.Chmod(fs.FileMode(mode & 0o777)); err != nil {
		return err
	}
	if mode&^0o777 != 0 {
		if err := chmod(p, mode); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	t := time.Unix(0, e.MTime)
	return os.Chtimes(p, t, t)
}

// syncFS makes everything written under dir durable with one syncfs(2).
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
