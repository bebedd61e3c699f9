package fsutil

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFileAtomic replaces path with data so that a crash at any moment leaves
// either the old content or the new one, never a mixture or an empty file:
// it writes a temp file in the same directory, fsyncs it, renames it over path
// and fsyncs the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, bytes.NewReader(data), perm)
}

// writeAtomic is WriteFileAtomic with the content streamed from r.
func writeAtomic(path string, r io.Reader, perm os.FileMode) error {
	if err := replaceFile(path, r, perm, true); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// ReplaceFile replaces path with data through a temp file and a rename, like
// WriteFileAtomic, without its two fsyncs: readers never see a partial file,
// but after a machine crash path may hold the old content, the new, or a
// truncated file. For caches that check what they read and can be rebuilt.
func ReplaceFile(path string, data []byte, perm os.FileMode) error {
	return replaceFile(path, bytes.NewReader(data), perm, false)
}

func replaceFile(path string, r io.Reader, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("write %s: fsync: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return nil
}

// SyncDir fsyncs a directory so that entries created, renamed or removed in it
// survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
