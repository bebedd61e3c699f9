package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// fidelity says how far a restored workspace is from the original: files
// compared byte for byte (outside .git directories; ignored files are out of
// every backup's scope), and each repository's git status, HEAD and index.
type fidelity struct {
	Files            int
	Missing, Differs []string
	RepoMismatch     []string
}

func (f fidelity) exact() bool {
	return len(f.Missing)+len(f.Differs)+len(f.RepoMismatch) == 0
}

func (f fidelity) String() string {
	if f.exact() {
		return "exact"
	}
	var parts []string
	if n := len(f.Missing); n > 0 {
		parts = append(parts, plural(n, "file")+" missing ("+examples(f.Missing)+")")
	}
	if n := len(f.Differs); n > 0 {
		parts = append(parts, plural(n, "file")+" differ ("+examples(f.Differs)+")")
	}
	if len(f.RepoMismatch) > 0 {
		parts = append(parts, strings.Join(f.RepoMismatch, ", "))
	}
	return strings.Join(parts, "; ")
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return strconv.Itoa(n) + " " + s + "s"
}

func examples(xs []string) string {
	if len(xs) > 3 {
		return strings.Join(xs[:3], ", ") + ", ..."
	}
	return strings.Join(xs, ", ")
}

func compareWorkspaces(orig, restored string) (fidelity, error) {
	var f fidelity
	err := filepath.WalkDir(orig, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(orig, p)
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() || strings.HasSuffix(rel, ".tmp") {
			return nil
		}
		f.Files++
		a, err := fileHash(p)
		if err != nil {
			return err
		}
		b, err := fileHash(filepath.Join(restored, rel))
		switch {
		case err != nil:
			f.Missing = append(f.Missing, rel)
		case !bytes.Equal(a, b):
			f.Differs = append(f.Differs, rel)
		}
		return nil
	})
	if err != nil {
		return f, err
	}
	repos, _ := os.ReadDir(filepath.Join(orig, "repos"))
	for _, r := range repos {
		o, n := filepath.Join(orig, "repos", r.Name()), filepath.Join(restored, "repos", r.Name())
		for _, q := range []struct {
			what string
			args []string
		}{
			{"HEAD", []string{"rev-parse", "HEAD"}},
			{"branch", []string{"symbolic-ref", "-q", "HEAD"}},
			{"index", []string{"ls-files", "-s"}},
			{"status", []string{"status", "--porcelain", "--untracked-files=all"}},
		} {
			if gitOut(o, q.args...) != gitOut(n, q.args...) {
				f.RepoMismatch = append(f.RepoMismatch, r.Name()+": "+q.what+" differs")
			}
		}
	}
	return f, nil
}

func gitOut(dir string, args ...string) string {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = gitEnv()
	out, err := cmd.Output()
	if err != nil {
		return "error: " + err.Error()
	}
	return string(out)
}

func fileHash(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
