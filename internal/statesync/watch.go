package statesync

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// change is one thing the watcher saw, by workspace-relative path.
type change struct {
	rel      string
	overflow bool // events were lost: rescan everything
}

// watcher watches a workspace recursively: fsnotify watches one directory at
// a time, so every directory is added, and new ones as they appear. Excluded
// directories and git object stores are not watched (the rescan covers
// anything missed).
type watcher struct {
	root    string
	w       *fsnotify.Watcher
	exclude *Matcher
	log     *slog.Logger
	out     chan change
	// limited is set when the kernel refused a watch (inotify limits); the
	// periodic rescan then carries those directories.
	limited bool
}

func newWatcher(root string, exclude *Matcher, log *slog.Logger) (*watcher, error) {
	fw, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return nil, err
	}
	w := &watcher{root: root, w: fw, exclude: exclude, log: log, out: make(chan change, 1024)}
	w.addTree(root)
	go w.loop()
	return w, nil
}

func (w *watcher) close() { w.w.Close() }

// skipDir reports whether a directory is not watched.
func (w *watcher) skipDir(rel string) bool {
	if rel == "." {
		return false
	}
	base := filepath.Base(rel)
	if strings.Contains("/"+rel+"/", "/.git/") {
		// Inside a .git directory only what changes the visible state matters:
		// the index and HEAD (in .git itself) and refs. Objects and logs
		// change with them, and there are many.
		switch base {
		case "objects", "logs", "hooks", "lfs", "modules":
			return true
		}
	}
	if rel == ".tether/cache" || rel == ".tether-restore" {
		return true
	}
	return w.exclude.Match(rel, true)
}

func (w *watcher) rel(p string) string {
	if p == w.root {
		return "."
	}
	return filepath.ToSlash(strings.TrimPrefix(p, w.root+string(filepath.Separator)))
}

func (w *watcher) addTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished or unreadable: the rescan will say so
		}
		if !d.IsDir() {
			return nil
		}
		if w.skipDir(w.rel(p)) {
			return filepath.SkipDir
		}
		if err := w.w.Add(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return filepath.SkipDir
			}
			if !w.limited {
				w.log.Warn("cannot watch directory; changes there are caught by the periodic rescan only (raise fs.inotify.max_user_watches)", "dir", p, "err", err)
				w.limited = true
			}
			return filepath.SkipDir
		}
		return nil
	})
}

func (w *watcher) loop() {
	defer close(w.out)
	for {
		select {
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					w.addTree(ev.Name)
				}
			}
			w.out <- change{rel: w.rel(ev.Name)}
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.out <- change{overflow: true}
				continue
			}
			w.log.Warn("file watcher error", "err", err)
		}
	}
}
