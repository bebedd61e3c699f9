package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/gitstate"
)

// RepoEntry is one git repository of a snapshot: its state and the chain of
// bundles (oldest, full, first) that hold its objects.
type RepoEntry struct {
	Path string `json:"path,omitempty"`
	// PathB64 (stored form only) holds Path when it is not valid UTF-8.
	PathB64 string          `json:"pathB64,omitempty"`
	State   *gitstate.State `json:"state"`
	Bundles []Blob          `json:"bundles"`
	// FromBase (stored format-2 manifests only) is how many bundles of the
	// base's repository at the same path come before Bundles.
	FromBase int `json:"fromBase,omitempty"`
}

// Blob is a stored byte stream, such as a bundle file.
type Blob struct {
	Size   int64 `json:"size"`
	Chunks []Ref `json:"chunks"`
}

// eachChunk calls fn with every chunk a snapshot references.
func (m *Manifest) eachChunk(fn func(Ref)) {
	if m.Base != nil {
		fn(*m.Base)
	}
	for _, e := range m.Entries {
		for _, c := range e.Chunks {
			fn(c)
		}
	}
	for _, r := range m.Repos {
		for _, b := range r.Bundles {
			for _, c := range b.Chunks {
				fn(c)
			}
		}
	}
}

// isRepoRoot reports whether rel (a directory below the workspace root) is
// captured as a repository: a git working tree, wherever it is. Agents clone
// where the task says, not only under repos/; each repository found is
// captured as git state, incrementally, with its config's credentials
// stripped. (A repository nested in a captured one is its gitlink, captured
// with it; the workspace root itself is saved file by file.) A .git
// directory git no longer recognises (its HEAD lost) counts too: its
// capture fails, and it is saved file by file and reported as a repository
// saved so, not passed over as an ordinary directory.
func isRepoRoot(rel, abs string) bool {
	if rel == "" || rel == "." {
		return false
	}
	if gitstate.IsRepo(abs) {
		return true
	}
	fi, err := os.Lstat(filepath.Join(abs, ".git"))
	return err == nil && fi.IsDir()
}

// captureRepo captures the repository at rel (and, recursively, its
// submodules) and appends their entries to w.repos.
func (w *saveRun) captureRepo(rel string) error {
	abs := filepath.Join(w.s.workspace, filepath.FromSlash(rel))
	var prev *RepoEntry
	if w.s.base != nil && !w.s.repoMissing(rel) {
		for i := range w.s.base.Repos {
			if w.s.base.Repos[i].Path == rel {
				prev = &w.s.base.Repos[i]
			}
		}
	}
	if prev != nil && w.s.opts.CaptureRepo != nil && !w.s.opts.CaptureRepo(rel) {
		w.keepCapture(prev)
		return nil
	}
	// Taken before the capture: a change made while it runs makes the next
	// fingerprint differ, and the next save captures again. A repository
	// known to have changed gets none: no fingerprint is recorded for this
	// capture, so the next one fingerprints and captures.
	var fp, ignoreKey string
	var fpOK bool
	if w.s.opts.RepoChanged == nil || !w.s.opts.RepoChanged(rel) {
		var err error
		if fp, ignoreKey, fpOK, err = repoFingerprint(abs, w.start); err != nil {
			return gitError{fmt.Errorf("fingerprint of git repository %s: %w", QuotePath(rel), err)}
		}
	}
	if prev != nil && fpOK && w.s.repoFP[rel] == fp {
		w.stats.ReposUnchanged++
		w.keepCapture(prev)
		return nil
	}
	objDir, scratch, unlock, err := w.s.gitObjectDir(rel)
	if err != nil {
		return err
	}
	defer unlock()
	defer os.RemoveAll(scratch)
	var prevState *gitstate.State
	if prev != nil {
		prevState = prev.State
	}
	// What git ignores here is what it ignored at the last listing when
	// no directory, .gitignore or git file changed since (an edit of a
	// tracked file): the capture need not ask again.
	listed, reuse := w.s.ignored[rel]
	reuse = reuse && fpOK && listed.Key != "" && listed.Key == ignoreKey
	res, err := gitstate.Capture(w.ctx, abs, prevState, gitstate.CaptureOptions{ObjectDir: objDir, ScratchDir: scratch, ListIgnored: w.s.opts.KeepIgnored > 0 && !reuse})
	if err != nil {
		if w.ctx.Err() != nil {
			return w.ctx.Err()
		}
		return gitError{err}
	}
	switch {
	case w.s.opts.KeepIgnored <= 0:
	case reuse:
		w.newIgnored[rel] = listed
	case res.IgnoredErr == nil:
		// (A listing that failed is asked for again, and reported, by listIgnored.)
		l := ignoredUnits(rel, res.Ignored, res.IgnoredTruncated)
		if fpOK {
			l.Key = ignoreKey
		}
		w.newIgnored[rel] = l
	}
	st := res.State
	entry := RepoEntry{Path: rel, State: &st}
	switch {
	case res.Bundle == "" && prev != nil:
		entry.Bundles = prev.Bundles
	case res.Bundle == "":
		return gitError{fmt.Errorf("capture of %s produced no bundle and there is no earlier one", QuotePath(rel))}
	default:
		blob, err := w.storeFile(res.Bundle)
		if err != nil {
			return fmt.Errorf("store bundle of %s: %w", rel, err)
		}
		if !res.Full && prev != nil {
			entry.Bundles = append(append([]Blob(nil), prev.Bundles...), blob)
		} else {
			entry.Bundles = []Blob{blob}
		}
		w.stats.ReposCaptured++
	}
	w.repos = append(w.repos, entry)
	if fpOK {
		w.newRepoFP[rel] = fp
	}
	for _, sm := range st.Submodules {
		sub := path.Join(rel, sm.Path)
		if gitstate.IsRepo(filepath.Join(w.s.workspace, filepath.FromSlash(sub))) {
			if err := w.captureRepo(sub); err != nil {
				return err
			}
		}
	}
	// A repository without commits inside this one (a `git init` of the
	// agent's) is no gitlink: its capture is its own.
	for _, u := range res.Unborn {
		sub := path.Join(rel, u)
		if err := validPath(sub); err != nil || !gitstate.IsRepo(filepath.Join(w.s.workspace, filepath.FromSlash(sub))) {
			w.stats.Warnings = append(w.stats.Warnings, fmt.Sprintf("%s: git names %s as a repository without commits, which it is not: left out", QuotePath(rel), QuotePath(u)))
			continue
		}
		if err := w.captureRepo(sub); err != nil {
			return err
		}
	}
	return nil
}

// repoPaths lists the paths of m's repositories.
func repoPaths(m *Manifest) []string {
	ps := make([]string, len(m.Repos))
	for i, r := range m.Repos {
		ps[i] = r.Path
	}
	return ps
}

// gitError is a failure of git to capture a repository (as opposed to the
// store's or the cache's): the repository is then saved file by file.
type gitError struct{ err error }

func (e gitError) Error() string { return e.err.Error() }
func (e gitError) Unwrap() error { return e.err }

// captureOrFallBack captures the repository at rel as git state, and
// reports false when git could not: then nothing of it (nor of its
// submodules) is in w.repos, it is listed in ReposAsFiles with git's reason,
// and the caller saves its files, .git included, like any other directory,
// so nothing of it is lost. The next save tries git again.
func (w *saveRun) captureOrFallBack(rel string) (bool, error) {
	nRepos, captured, unchanged := len(w.repos), w.stats.ReposCaptured, w.stats.ReposUnchanged
	err := w.captureRepo(rel)
	var ge gitError
	if !errors.As(err, &ge) {
		return err == nil, err
	}
	w.repos = w.repos[:nRepos]
	w.stats.ReposCaptured, w.stats.ReposUnchanged = captured, unchanged
	for p := range w.newRepoFP {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			delete(w.newRepoFP, p)
		}
	}
	for p := range w.newIgnored {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			delete(w.newIgnored, p)
		}
	}
	reason := shortReason(ge.err.Error())
	w.stats.ReposAsFiles = append(w.stats.ReposAsFiles, LeftOutFile{Path: rel, Reason: reason})
	msg := fmt.Sprintf("git repository %s cannot be captured as git state (%s): saved file by file, .git included", QuotePath(rel), reason)
	w.stats.Warnings = append(w.stats.Warnings, msg)
	return false, nil
}

// keepCapture keeps the base's capture of a repository and of its
// submodules, with their fingerprints.
func (w *saveRun) keepCapture(prev *RepoEntry) {
	w.repos = append(w.repos, *prev)
	w.kept[prev.Path] = true
	sub := prev.Path + "/"
	for _, r := range w.s.base.Repos {
		if strings.HasPrefix(r.Path, sub) {
			w.repos = append(w.repos, r)
			w.kept[r.Path] = true
		}
	}
	for p, fp := range w.s.repoFP {
		if p == prev.Path || strings.HasPrefix(p, sub) {
			w.newRepoFP[p] = fp
		}
	}
}

// storeFile chunks and uploads a whole file (no stat cache, no append logic).
func (w *saveRun) storeFile(p string) (Blob, error) {
	f, err := os.Open(p)
	if err != nil {
		return Blob{}, err
	}
	defer f.Close()
	var b Blob
	if w.split == nil {
		w.split = newSplitter()
	}
	err = w.split.split(f, func(data []byte) error {
		id := hashID(data)
		b.Chunks = append(b.Chunks, Ref{ID: id, Len: int64(len(data))})
		b.Size += int64(len(data))
		if w.known[id] {
			return nil
		}
		w.known[id] = true
		return w.up.put(id, data)
	})
	return b, err
}

// gitObjectDir returns the private git object directory gitstate keeps
// between captures of the repository at rel, locked against a concurrent
// capture by another process, and an empty scratch directory beside it for
// the capture's bundle. Without a cache dir both live for this Saver only,
// and every new Saver starts with full bundles. The scratch directory is
// emptied under the lock before it is handed out, so what a killed capture
// left there (up to a whole bundle of the repository) goes at the next
// capture of the repository instead of piling up in the temporary directory.
func (s *Saver) gitObjectDir(rel string) (objDir, scratch string, unlock func(), err error) {
	root := s.opts.CacheDir
	if root == "" {
		if s.tmpGit == "" {
			d, err := os.MkdirTemp("", "tether-git-")
			if err != nil {
				return "", "", nil, err
			}
			s.tmpGit = d
		}
		root = s.tmpGit
	}
	sum := sha256.Sum256([]byte(s.workspace + "\x00" + rel))
	dir := filepath.Join(root, "git", hex.EncodeToString(sum[:12]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", nil, err
	}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", "", nil, err
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		lf.Close()
		return "", "", nil, err
	}
	scratch = filepath.Join(dir, "scratch")
	if err := os.RemoveAll(scratch); err != nil {
		lf.Close()
		return "", "", nil, err
	}
	if err := os.Mkdir(scratch, 0o700); err != nil {
		lf.Close()
		return "", "", nil, err
	}
	return filepath.Join(dir, "objects"), scratch, func() { lf.Close() }, nil
}

// Close releases what the Saver holds (a temporary git object directory when
// it has no cache dir).
func (s *Saver) Close() error {
	if s.tmpGit != "" {
		return os.RemoveAll(s.tmpGit)
	}
	return nil
}

// validateRepos checks repository entries like file entries: clean relative
// paths, each in a directory of the snapshot (or at its root) or a submodule
// inside another repository of the snapshot, never twice, never where a file
// entry is, never written through a symlink.
func (m *Manifest) validateRepos(kinds map[string]string) error {
	seen := map[string]bool{}
	for _, r := range m.Repos {
		if err := validPath(r.Path); err != nil {
			return fmt.Errorf("snapshot %s: repository %s: %w", m.ID, QuotePath(r.Path), err)
		}
		if seen[r.Path] || kinds[r.Path] != "" {
			return fmt.Errorf("snapshot %s: repository %s appears twice", m.ID, QuotePath(r.Path))
		}
		if r.State == nil || len(r.Bundles) == 0 {
			return fmt.Errorf("snapshot %s: repository %s has no state or no bundles", m.ID, QuotePath(r.Path))
		}
		seen[r.Path] = true
	}
	for _, r := range m.Repos {
		parent := path.Dir(r.Path)
		ok := parent == "." || kinds[parent] == TypeDir
		for p := parent; !ok && p != "." && p != "/"; p = path.Dir(p) {
			ok = seen[p]
		}
		if !ok {
			return fmt.Errorf("snapshot %s: repository %s is neither in a directory of the snapshot nor inside another repository", m.ID, QuotePath(r.Path))
		}
		for p := parent; p != "."; p = path.Dir(p) {
			if kinds[p] != "" && kinds[p] != TypeDir {
				return fmt.Errorf("snapshot %s: repository %s would be written through %s, a %s: refusing to restore outside the target", m.ID, QuotePath(r.Path), QuotePath(p), kinds[p])
			}
		}
	}
	return nil
}
