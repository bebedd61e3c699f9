package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileStore is the embedded default store: plain files at <root>/<prefix><key>,
// no sidecar metadata, so a person can look at a store with ls and copy it with
// cp. It is written by hand rather than through gocloud's fileblob because
// fileblob's if-not-exist check is a stat followed by a rename under an
// in-process mutex: two processes (sync and an inspect command, say) could both
// "win". Here every write goes to a temp file in the target's own directory
// (so the final rename never crosses devices), is fsynced, and is then made
// visible with rename (Put) or link (PutIfAbsent: link fails with EEXIST
// atomically in the kernel, across processes), followed by an fsync of the
// directory so the new name survives a power cut.
type fileStore struct {
	root    string // absolute, cleaned
	prefix  string // prepended to every key
	display string
	// staleTemp is the age after which List removes a temp file left by a
	// writer that died; live writers finish in far less.
	staleTemp time.Duration
}

func openFile(p *parsedURL) (*fileStore, error) {
	root := filepath.Clean(p.u.Path)
	s := &fileStore{root: root, prefix: p.prefix, display: p.display, staleTemp: time.Hour}
	fi, err := os.Stat(root)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("open store %s: %s is not a directory", s.display, root)
	case err == nil:
		return s, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open store %s: %w", s.display, err)
	}
	// The default directory is created with its parents: a fresh machine has
	// no ~/.local/share yet. Any other directory only gets its last component
	// created, so a typo in a configured path is an error, not a new empty
	// store that makes a restore look like there is nothing to restore.
	parent := filepath.Dir(root)
	if root == filepath.Clean(defaultDir()) {
		if err := os.MkdirAll(parent, 0o700); err != nil {
			return nil, fmt.Errorf("open store %s: create default store directory: %w", s.display, err)
		}
	} else if pfi, err := os.Stat(parent); err != nil || !pfi.IsDir() {
		return nil, fmt.Errorf("open store %s: directory %s does not exist and neither does its parent %s; create it or fix the URL", s.display, root, parent)
	}
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("open store %s: create store directory: %w", s.display, err)
	}
	if err := syncDir(parent); err != nil {
		return nil, fmt.Errorf("open store %s: %w", s.display, err)
	}
	return s, nil
}

func (s *fileStore) String() string { return s.display }
func (s *fileStore) Close() error   { return nil }

// path maps a key to its file. The full key (prefix included) is validated
// again because a prefix ending mid-segment joins with the key's first segment.
func (s *fileStore) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if err := ValidateKey(s.prefix + key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(s.prefix+key)), nil
}

func (s *fileStore) Put(ctx context.Context, key string, data []byte) error {
	return s.write(ctx, "put", key, data, false, true)
}

func (s *fileStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return s.write(ctx, "put-if-absent", key, data, true, true)
}

// PutIfAbsentUnsynced is PutIfAbsent without the fsyncs; see UnsyncedWriter.
func (s *fileStore) PutIfAbsentUnsynced(ctx context.Context, key string, data []byte) error {
	return s.write(ctx, "put-if-absent", key, data, true, false)
}

// Sync flushes the store's file system with one syncfs(2), which covers every
// file and directory written without an fsync of its own.
func (s *fileStore) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := os.Open(s.root)
	if err != nil {
		return fmt.Errorf("sync store %s: %w", s.display, err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync store %s: %w", s.display, err)
	}
	return nil
}

func (s *fileStore) write(ctx context.Context, op, key string, data []byte, noReplace, durable bool) (err error) {
	if err := ctx.Err(); err != nil {
		return opErr(op, key, s.display, err)
	}
	full, err := s.path(key)
	if err != nil {
		return opErr(op, key, s.display, err)
	}
	dir := filepath.Dir(full)
	if err := s.mkdirAll(dir, durable); err != nil {
		return opErr(op, key, s.display, err)
	}
	tmp, err := os.CreateTemp(dir, tempMarker+"*")
	if err != nil {
		return opErr(op, key, s.display, s.explain(key, err))
	}
	tmpName := tmp.Name()
	removeTmp := true
	defer func() {
		if removeTmp {
			_ = os.Remove(tmpName)
		}
	}()
	_, err = tmp.Write(data)
	if err == nil && durable {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return opErr(op, key, s.display, fmt.Errorf("write temp file: %w", err))
	}
	// Last chance to honour a cancellation: after this point the object is
	// visible, and a caller told "canceled" must be able to trust that
	// nothing was written.
	if err := ctx.Err(); err != nil {
		return opErr(op, key, s.display, err)
	}
	if noReplace {
		if err := os.Link(tmpName, full); err != nil {
			if errors.Is(err, fs.ErrExist) {
				if fi, serr := os.Lstat(full); serr == nil && fi.IsDir() {
					return opErr(op, key, s.display, s.dirConflict(key))
				}
				return existsErr(key, s.display)
			}
			return opErr(op, key, s.display, fmt.Errorf("link temp file into place (the file store needs a file system with hard links): %w", err))
		}
	} else {
		if err := os.Rename(tmpName, full); err != nil {
			if fi, serr := os.Lstat(full); serr == nil && fi.IsDir() {
				return opErr(op, key, s.display, s.dirConflict(key))
			}
			return opErr(op, key, s.display, fmt.Errorf("rename temp file into place: %w", err))
		}
		removeTmp = false
	}
	if !durable {
		return nil
	}
	if err := syncDir(dir); err != nil {
		return opErr(op, key, s.display, err)
	}
	return nil
}

func (s *fileStore) dirConflict(key string) error {
	return permanent(fmt.Errorf("keys below %q exist, and the file store cannot hold an object at a key that is also a directory", key))
}

// explain turns the errors a key/sub-key clash produces into words.
func (s *fileStore) explain(key string, err error) error {
	if errors.Is(err, syscall.ENOTDIR) {
		return permanent(fmt.Errorf("a leading part of %q is an object, and the file store cannot hold keys below an object: %w", key, err))
	}
	return err
}

// mkdirAll creates dir and its missing parents below the store root, fsyncing
// each parent so a new directory's name is as durable as the object in it.
func (s *fileStore) mkdirAll(dir string, durable bool) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return s.explain(strings.TrimPrefix(filepath.ToSlash(dir), filepath.ToSlash(s.root)+"/"), syscall.ENOTDIR)
		}
		return nil
	}
	if dir == s.root || !strings.HasPrefix(dir, s.root) {
		return fmt.Errorf("store directory %s is missing: %w", s.root, err)
	}
	parent := filepath.Dir(dir)
	if err := s.mkdirAll(parent, durable); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return s.explain(strings.TrimPrefix(filepath.ToSlash(dir), filepath.ToSlash(s.root)+"/"), err)
	}
	if !durable {
		return nil
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// isMissing reports whether err means "no object at this path": the file is
// absent, a leading part is a file, or the path is a directory (never an object).
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR)
}

func (s *fileStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, opErr("get", key, s.display, err)
	}
	full, err := s.path(key)
	if err != nil {
		return nil, opErr("get", key, s.display, err)
	}
	data, err := os.ReadFile(full)
	if err != nil {
		if isMissing(err) {
			return nil, notFoundErr("get", key, s.display)
		}
		return nil, opErr("get", key, s.display, err)
	}
	return data, nil
}

func (s *fileStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, opErr("stat", key, s.display, err)
	}
	full, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, opErr("stat", key, s.display, err)
	}
	fi, err := os.Stat(full)
	if err != nil {
		if isMissing(err) {
			return ObjectInfo{}, notFoundErr("stat", key, s.display)
		}
		return ObjectInfo{}, opErr("stat", key, s.display, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, notFoundErr("stat", key, s.display)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (s *fileStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return opErr("delete", key, s.display, err)
	}
	full, err := s.path(key)
	if err != nil {
		return opErr("delete", key, s.display, err)
	}
	// unlink, not os.Remove: os.Remove would also rmdir an empty directory
	// that happens to sit where the key points.
	if err := syscall.Unlink(full); err != nil {
		if isMissing(err) || errors.Is(err, syscall.EPERM) && isDir(full) {
			return nil
		}
		return opErr("delete", key, s.display, err)
	}
	// Empty directories are left in place: removing them would race with a
	// concurrent Put that just created one, and they cost nothing.
	if err := syncDir(filepath.Dir(full)); err != nil {
		return opErr("delete", key, s.display, err)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

func (s *fileStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := validatePrefix(prefix); err != nil {
		return opErr("list", prefix, s.display, err)
	}
	base := s.prefix + prefix
	// Walk only the deepest directory the prefix names completely.
	start := s.root
	if i := strings.LastIndex(base, "/"); i >= 0 {
		start = filepath.Join(s.root, filepath.FromSlash(base[:i]))
	}
	now := time.Now()
	var fnErr error
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			// Gone since the directory was read (a concurrent Delete), or
			// the prefix names a directory that does not exist: nothing
			// to list there.
			if isMissing(err) {
				if d != nil && d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if p == start || p == s.root {
				return nil
			}
			relDir := rel + "/"
			if !strings.HasPrefix(relDir, base) && !strings.HasPrefix(base, relDir) {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), tempMarker) {
			s.removeIfStale(p, now)
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(rel, base) {
			return nil
		}
		key := rel[len(s.prefix):]
		if ValidateKey(key) != nil {
			return nil // a stranger's file Get could not fetch; not an object
		}
		info, err := d.Info()
		if err != nil {
			if isMissing(err) {
				return nil
			}
			return err
		}
		if err := fn(ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return opErr("list", prefix, s.display, err)
	}
	return nil
}

// removeIfStale deletes a temp file whose writer must have died: a crash
// between write and rename leaves one behind, and nothing else would ever
// clean it up.
func (s *fileStore) removeIfStale(p string, now time.Time) {
	fi, err := os.Lstat(p)
	if err == nil && now.Sub(fi.ModTime()) > s.staleTemp {
		_ = os.Remove(p)
	}
}
