package gittest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Fingerprint describes repo so that any write to it shows: the hash (and
// time) of every file of its git dir, and the mode, size and time of every
// working tree file, by path relative to repo. A capture must leave it
// unchanged. Modification times of object files are left out: git may
// freshen an existing object it finds while writing.
func Fingerprint(t testing.TB, repo string) map[string]string {
	t.Helper()
	fp := map[string]string{}
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			v += " -> " + target
		case d.Type().IsRegular() && !strings.HasPrefix(filepath.ToSlash(rel), ".git/"):
			// Working tree files: any write changes size or time.
			v += fmt.Sprintf(" %d %s", fi.Size(), fi.ModTime())
		case d.Type().IsRegular() && strings.HasPrefix(filepath.ToSlash(rel), ".git/objects/") && !strings.Contains(rel, "info"):
			// Object and pack files are named by their content; a write
			// shows as a new name or a new size.
			v += fmt.Sprintf(" %d", fi.Size())
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + hex.EncodeToString(sum[:8])
			// Git freshens (touches) objects and a split index's shared
			// index file when it uses them; contents must not change.
			if !strings.Contains(filepath.ToSlash(rel), "objects/") && !strings.HasPrefix(filepath.Base(rel), "sharedindex.") {
				v += " " + fi.ModTime().String()
			}
		}
		fp[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// DiffFingerprints lists, one a line and sorted, what changed between two
// Fingerprints of a repository; "" when nothing did.
func DiffFingerprints(before, after map[string]string) string {
	var diffs []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: %q removed", k, v))
		} else if w != v {
			diffs = append(diffs, fmt.Sprintf("%s: %q -> %q", k, v, w))
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: new %q", k, v))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "\n")
}
