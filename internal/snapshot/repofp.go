package snapshot

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxFingerprintEntries bounds the walk of repoFingerprint: a working tree
// holding more (a vendored dependency tree git ignores, say) is captured
// every time instead, as it was before fingerprints.
const maxFingerprintEntries = 200_000

// repoFingerprint hashes what a capture of the git repository at abs reads,
// as lstat sees it: every path of the working tree (name, type, mode, size,
// mtime, ctime, inode), ignored files included, and every file of its git
// directories (HEAD, index, refs, logs, config, operation state, the modules
// of submodules) except object databases, whose content is reachable only
// through refs and index. Two equal fingerprints mean a new capture would
// find what the last one found, so the save keeps the last capture; git reads
// nothing else that changes what a capture holds, except the user's global
// git configuration (a global excludes file), which a fingerprint misses
// until the next change in the repository.
//
// ignoreKey hashes the part of the same walk that decides what git lists
// as ignored (see listIgnored): the path and type of every entry of the
// working tree (what is created, removed or renamed), every .gitignore, and
// the git directories (index, info/exclude, config) as fp does. An edit of
// other files changes fp, not ignoreKey: a capture after it reuses the
// last listing instead of asking git again.
//
// ok is false when the fingerprint cannot be trusted: an entry changed
// within racyWindow of since (it may change again within the same timestamp
// tick), or the walk found more than maxFingerprintEntries entries.
func repoFingerprint(abs string, since time.Time) (fp, ignoreKey string, ok bool, err error) {
	w := &fpWalk{h: sha256.New(), ih: sha256.New(), racy: since.Add(-racyWindow).UnixNano()}
	if err := w.dir(abs, "", false); err != nil {
		return "", "", false, err
	}
	gitDir, commonDir, err := gitDirs(abs)
	if err != nil {
		return "", "", false, err
	}
	if gitDir != filepath.Join(abs, ".git") { // a .git directory was walked with the tree
		w.write("\x00gitdir")
		if err := w.dir(gitDir, "", true); err != nil {
			return "", "", false, err
		}
	}
	if commonDir != gitDir {
		w.write("\x00commondir")
		if err := w.dir(commonDir, "", true); err != nil {
			return "", "", false, err
		}
	}
	if w.untrusted {
		return "", "", false, nil
	}
	return hex.EncodeToString(w.h.Sum(nil)), hex.EncodeToString(w.ih.Sum(nil)), true, nil
}

type fpWalk struct {
	h         hash.Hash
	ih        hash.Hash // ignoreKey's
	racy      int64
	n         int
	untrusted bool
	rec       []byte // one entry's record, reused
	st        unix.Stat_t
}

func (w *fpWalk) write(s string) { _, _ = w.h.Write([]byte(s)); _, _ = w.ih.Write([]byte(s)) }

// dir hashes the entries under dir (rel is its path in the hash). inGit says
// dir is inside a git directory, where object databases are left out.
func (w *fpWalk) dir(dir, rel string, inGit bool) error {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed while we walked: the next fingerprint differs
	}
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	sort.Strings(names)
	// fstatat relative to the open directory: no path walk per entry, which
	// halves the cost of a walk over a 10k-file tree.
	fd := int(f.Fd())
	for _, name := range names {
		if w.untrusted {
			return nil
		}
		if err := unix.Fstatat(fd, name, &w.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return &fs.PathError{Op: "lstat", Path: filepath.Join(dir, name), Err: err}
		}
		isDir := w.st.Mode&unix.S_IFMT == unix.S_IFDIR
		if inGit && isDir && (name == "objects" || name == "lfs") && fileExists(filepath.Join(dir, "HEAD")) {
			continue
		}
		if w.n++; w.n > maxFingerprintEntries {
			w.untrusted = true
			return nil
		}
		mtime, ctime := w.st.Mtim.Nano(), w.st.Ctim.Nano()
		if mtime >= w.racy || ctime >= w.racy {
			w.untrusted = true
			return nil
		}
		r := append(append(append(append(w.rec[:0], rel...), '/'), name...), 0)
		r = binary.LittleEndian.AppendUint64(r, uint64(w.st.Mode))
		r = binary.LittleEndian.AppendUint64(r, uint64(w.st.Size))
		r = binary.LittleEndian.AppendUint64(r, uint64(mtime))
		r = binary.LittleEndian.AppendUint64(r, uint64(ctime))
		r = binary.LittleEndian.AppendUint64(r, w.st.Ino)
		r = binary.LittleEndian.AppendUint64(r, uint64(w.st.Dev)) //nolint:unconvert // not uint64 everywhere
		_, _ = w.h.Write(r)
		if inGit || name == ".gitignore" {
			_, _ = w.ih.Write(r)
		} else {
			// The path and its type: what is created, removed or renamed.
			_, _ = w.ih.Write(r[:len(rel)+1+len(name)+1])
			_, _ = w.ih.Write([]byte{byte(w.st.Mode >> 12)})
		}
		w.rec = r
		if isDir {
			// A .git directory anywhere (the repository's own, an embedded
			// repository's) is a git directory: skip its object database.
			if err := w.dir(filepath.Join(dir, name), rel+"/"+name, inGit || name == ".git"); err != nil {
				return err
			}
		}
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// gitDirs finds the git directory of the working tree at abs (.git, or where
// a .git file points) and its common directory (where a linked worktree's
// commondir file points), without running git.
func gitDirs(abs string) (gitDir, commonDir string, err error) {
	gitDir = filepath.Join(abs, ".git")
	fi, err := os.Lstat(gitDir)
	if err != nil {
		return "", "", err
	}
	if !fi.IsDir() {
		f, err := os.Open(gitDir)
		if err != nil {
			return "", "", err
		}
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		target, found := strings.CutPrefix(strings.TrimSpace(line), "gitdir:")
		if !found {
			return "", "", errors.New(gitDir + " is a file without a gitdir: line")
		}
		target = strings.TrimSpace(target)
		if !filepath.IsAbs(target) {
			target = filepath.Join(abs, target)
		}
		gitDir = filepath.Clean(target)
	}
	commonDir = gitDir
	if b, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		c := strings.TrimSpace(string(b))
		if !filepath.IsAbs(c) {
			c = filepath.Join(gitDir, c)
		}
		commonDir = filepath.Clean(c)
	}
	return gitDir, commonDir, nil
}
