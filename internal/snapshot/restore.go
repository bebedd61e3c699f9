package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/fsutil"
)

// stagingName is the directory, inside the target, in which a restore builds
// the snapshot (in its "tree" subdirectory) before moving it into place. The
// file "complete" beside the tree says the build finished and was verified,
// so an interrupted move can be finished. Save never includes this name, so
// no entry of a snapshot can collide with any of it.
const (
	stagingName    = ".tether-restore"
	stagingTree    = "tree"
	stagingScratch = "scratch"
	completeMarker = "complete"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Snapshot is the id to restore; "" or "latest" means the newest.
	Snapshot string
	// Fetches is how many chunks are fetched at once (default 8).
	Fetches int
}

// RestoreStats reports what a restore did.
type RestoreStats struct {
	ID         string `json:"id"`
	Files      int    `json:"files"`
	Bytes      int64  `json:"bytes"`
	DurationMs int64  `json:"durationMs"`
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
		return nil, fmt.Errorf("restore %s: refusing a bad manifest: %w", repo, err)
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
		return statsOf(m, start), nil
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
	if err := build(ctx, repo, m, tree, filepath.Join(staging, stagingScratch), opts.Fetches); err != nil {
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
	return statsOf(m, start), nil
}

func statsOf(m *Manifest, start time.Time) *RestoreStats {
	return &RestoreStats{ID: m.ID, Files: m.Summary.Files, Bytes: m.Summary.Bytes, DurationMs: time.Since(start).Milliseconds()}
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
// (fetched in parallel), then symlinks (last, so nothing is ever written
// through one), then directory modes and times, deepest first.
func build(ctx context.Context, repo *Repo, m *Manifest, dir, scratch string, fetches int) error {
	var files []*Entry
	for i := range m.Entries {
		e := &m.Entries[i]
		switch e.Type {
		case TypeDir:
			if err := os.Mkdir(filepath.Join(dir, filepath.FromSlash(e.Path)), 0o700); err != nil {
				return err
			}
		case TypeFile:
			files = append(files, e)
		}
	}
	err := parallel(ctx, fetches, files, func(ctx context.Context, e *Entry) error {
		return restoreFile(ctx, repo, m.ID, e, filepath.Join(dir, filepath.FromSlash(e.Path)))
	})
	if err != nil {
		return err
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
	if err := restoreRepos(ctx, repo, m, dir, scratch); err != nil {
		return err
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

func chmod(p string, mode uint32) error {
	if err := syscall.Chmod(p, mode); err != nil {
		return &fs.PathError{Op: "chmod", Path: p, Err: err}
	}
	return nil
}

func restoreFile(ctx context.Context, repo *Repo, snapshotID string, e *Entry, p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, c := range e.Chunks {
		data, err := repo.readChunk(ctx, c.ID, snapshotID)
		if err != nil {
			return fmt.Errorf("file %s: %w", e.Path, err)
		}
		if int64(len(data)) != c.Len {
			return fmt.Errorf("file %s: chunk %s holds %d bytes, the manifest says %d", e.Path, c.ID, len(data), c.Len)
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
	}
	if err := f.Chmod(fs.FileMode(e.Mode & 0o777)); err != nil {
		return err
	}
	if e.Mode&^0o777 != 0 {
		if err := chmod(p, e.Mode); err != nil {
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
