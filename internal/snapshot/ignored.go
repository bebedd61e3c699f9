package snapshot

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tether-dev/tether/internal/gitstate"
	"github.com/tether-dev/tether/internal/iox"
)

// Files git ignores inside a repository (.env, local configuration, build
// outputs) are in no capture of it: git state holds tracked and untracked
// files only. With SaveOptions.KeepIgnored they are saved as ordinary
// entries of the snapshot, under the repository's path, smallest first
// within the budget; the rest are left out with their reason. Each path
// git lists (a file, or a directory holding only ignored entries) is kept
// or left out whole. At restore they are written once the repository is
// back (see build): git restores only into an empty directory.

// ignoredUnit is one path git lists as ignored, walked: its entries, in
// walk order, and the bytes of its files.
type ignoredUnit struct {
	rel   string // in the workspace, without a trailing slash
	repo  string // the repository that ignores it
	found []foundEntry
	bytes int64
}

// ignoredList is what git ignores in one repository: the workspace paths
// of the units listIgnored walks, and whether git listed more than tether
// reads.
type ignoredList struct {
	Units     []string `json:"units,omitempty"`
	Truncated bool     `json:"truncated,omitempty"`
	// Key is the repository's ignoreKey (see repoFingerprint) when git
	// listed it: a capture with the same key takes this listing.
	Key string `json:"key,omitempty"`
}

// listIgnored finds what the repositories w.repos[from:] (one just captured
// or kept, with its submodules) ignore and walks it into w.units. A
// repository captured by this save was listed by its capture (see
// captureRepo); one whose capture was kept, and whose listing this Saver or
// its stat cache has, is not asked again: its fingerprint, which covers
// ignored files and every .gitignore, did not change.
func (w *saveRun) listIgnored(from int) error {
	if w.s.opts.KeepIgnored <= 0 {
		return nil
	}
	for _, r := range w.repos[from:] {
		l, ok := w.newIgnored[r.Path]
		if !ok && w.kept[r.Path] {
			l, ok = w.s.ignored[r.Path]
		}
		if !ok {
			abs := filepath.Join(w.s.workspace, filepath.FromSlash(r.Path))
			paths, truncated, err := gitstate.Ignored(w.ctx, abs)
			if err != nil {
				if w.ctx.Err() != nil {
					return w.ctx.Err()
				}
				w.leaveOut(r.Path, 0, "the files git ignores in this repository could not be listed: "+shortReason(err.Error()))
				continue
			}
			l = ignoredUnits(r.Path, paths, truncated)
		}
		w.newIgnored[r.Path] = l
		if l.Truncated {
			w.leaveOut(r.Path, 0, fmt.Sprintf("git lists more ignored paths in this repository than tether reads (%d MiB of names): the rest are left out", gitstate.MaxIgnoredListing>>20))
		}
		for _, u := range l.Units {
			if err := w.walkUnit(r.Path, u); err != nil {
				return err
			}
		}
	}
	return nil
}

// ignoredUnits turns git's listing of what the repository at repo ignores
// (paths relative to it) into workspace paths.
func ignoredUnits(repo string, paths []string, truncated bool) ignoredList {
	l := ignoredList{Truncated: truncated, Units: make([]string, 0, len(paths))}
	for _, p := range paths {
		l.Units = append(l.Units, path.Join(repo, strings.TrimSuffix(p, "/")))
	}
	return l
}

// validIgnored reports whether a listing read back from the stat cache
// names only paths inside its repository: a damaged cache must not make a
// save walk (and store) what lies elsewhere.
func validIgnored(repo string, l ignoredList) bool {
	if validPath(repo) != nil {
		return false
	}
	for _, u := range l.Units {
		if validPath(u) != nil || !strings.HasPrefix(u, repo+"/") {
			return false
		}
	}
	return true
}

// walkUnit walks one ignored path into w.units.
func (w *saveRun) walkUnit(repo, rel string) error {
	saved := w.found
	w.found = nil
	defer func() { w.found = saved }()
	err := filepath.WalkDir(filepath.Join(w.s.workspace, filepath.FromSlash(rel)), w.visit)
	if err != nil {
		return err
	}
	u := ignoredUnit{rel: rel, repo: repo, found: w.found}
	for _, f := range w.found {
		if f.e.Type == TypeFile {
			u.bytes += f.fi.Size()
		}
	}
	if len(u.found) > 0 {
		w.units = append(w.units, u)
	}
	return nil
}

// keepIgnored adds to w.found the ignored paths that fit the budget,
// smallest first, each after the directories between its repository and
// it; the others are left out, each with its size and reason.
func (w *saveRun) keepIgnored() error {
	units := w.units
	sort.SliceStable(units, func(i, j int) bool { return units[i].bytes < units[j].bytes })
	budget := w.s.opts.KeepIgnored
	var keep []ignoredUnit
	for _, u := range units {
		if u.bytes > budget {
			w.stats.LeftOut = append(w.stats.LeftOut, LeftOutFile{Path: u.rel, Size: u.bytes,
				Reason: fmt.Sprintf("ignored by git in repository %s, and over what --keep-ignored (%s) leaves for ignored files", QuotePath(u.repo), iox.FormatSize(w.s.opts.KeepIgnored))})
			w.stats.LeftOutBytes += u.bytes
			continue
		}
		budget -= u.bytes
		keep = append(keep, u)
	}
	sort.SliceStable(keep, func(i, j int) bool { return keep[i].rel < keep[j].rel })
	dirs := map[string]bool{}
	for _, u := range keep {
		if !w.addBetween(u, dirs) {
			// Gone, or no longer a directory: the unit goes with it.
			w.leaveOut(u.rel, 0, "vanished between the walk and the read")
			continue
		}
		for _, f := range u.found {
			if f.e.Type == TypeDir {
				dirs[f.e.Path] = true
			}
		}
		w.found = append(w.found, u.found...)
		w.stats.Ignored += len(u.found)
	}
	return nil
}

// addBetween adds to w.found the directories between u's repository and u
// that are not in dirs yet (git makes them at restore only if it has files
// there). It reports false if one is no longer a directory.
func (w *saveRun) addBetween(u ignoredUnit, dirs map[string]bool) bool {
	var between []string
	for d := path.Dir(u.rel); d != u.repo && d != "." && !dirs[d]; d = path.Dir(d) {
		between = append(between, d)
	}
	for i := len(between) - 1; i >= 0; i-- {
		d := between[i]
		p := filepath.Join(w.s.workspace, filepath.FromSlash(d))
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() {
			return false
		}
		dirs[d] = true
		w.found = append(w.found, foundEntry{Entry{Path: d, Type: TypeDir, Mode: unixMode(fi), MTime: fi.ModTime().UnixNano()}, p, fi})
	}
	return true
}

// insideRepo reports whether rel lies inside one of the repositories in
// repos (a set of their paths).
func insideRepo(rel string, repos map[string]bool) bool {
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if repos[d] {
			return true
		}
	}
	return false
}

// hasRepo reports whether this save has the repository at rel already.
func (w *saveRun) hasRepo(rel string) bool {
	for _, r := range w.repos {
		if r.Path == rel {
			return true
		}
	}
	return false
}
