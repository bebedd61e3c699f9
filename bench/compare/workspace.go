package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// sizes of the reference workspace; scale shrinks all of them for quick
// development runs.
type sizes struct {
	Transcripts     int   // number of JSONL files
	TranscriptBytes int64 // total
	ArtifactBytes   int64 // total; 60 % binary in 5 files, the rest text
	RepoFiles       int   // source files at HEAD
	RepoFileBytes   int   // average size of a source file
	HistoryBinary   int64 // incompressible binary blobs committed over the history
	HistoryCommits  int
}

func referenceSizes(scale float64) sizes {
	s := func(n int64) int64 { return max(int64(float64(n)*scale), 64<<10) }
	return sizes{
		Transcripts:     20,
		TranscriptBytes: s(200 << 20),
		ArtifactBytes:   s(50 << 20),
		RepoFiles:       max(int(10000*scale), 200),
		RepoFileBytes:   4096,
		HistoryBinary:   s(250 << 20),
		HistoryCommits:  max(int(400*scale), 20),
	}
}

var words = strings.Fields(`the a of to and in is it for on that with as this be by are from at or an
func return if err nil := package import type struct interface string int64 byte slice map range
defer go chan select case default break continue var const true false len cap append make new
agent session transcript snapshot restore bundle commit branch index tree blob chunk manifest
store object bucket upload download retry timeout deadline context cancel signal kill resume
tool call result assistant user system message content text error warning info debug trace`)

// text appends about n bytes of word salad with line breaks every ~80 bytes:
// compresses like prose and source do (unlike random bytes).
func text(rng *rand.Rand, b []byte, n int) []byte {
	line := 0
	for end := len(b) + n; len(b) < end; {
		w := words[rng.Intn(len(words))]
		b = append(b, w...)
		line += len(w) + 1
		if line > 70+rng.Intn(20) {
			b = append(b, '\n')
			line = 0
		} else {
			b = append(b, ' ')
		}
	}
	return b
}

// jsonl appends transcript-like JSON lines of about n bytes.
func jsonl(rng *rand.Rand, b []byte, n int) []byte {
	for end := len(b) + n; len(b) < end; {
		role := "assistant"
		if rng.Intn(3) == 0 {
			role = "user"
		}
		b = fmt.Appendf(b, `{"type":%q,"uuid":"%016x%016x","timestamp":"2026-11-24T10:%02d:%02d.%03dZ","message":{"role":%q,"content":[{"type":"text","text":"`,
			role, rng.Uint64(), rng.Uint64(), rng.Intn(60), rng.Intn(60), rng.Intn(1000), role)
		for i, k := 0, 20+rng.Intn(300); i < k; i++ {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, words[rng.Intn(len(words))]...)
		}
		b = append(b, "\"}]}}\n"...)
	}
	return b
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

// generateWorkspace writes the reference workspace into ws:
//
//	.claude/projects/-workspace/*.jsonl  transcripts
//	.tether/session-ids.json
//	artifacts/                           binary and text files
//	repos/app                            a git repository with a long history
//	                                     and work in progress of every kind
func generateWorkspace(ctx context.Context, ws string, sz sizes) error {
	rng := rand.New(rand.NewSource(1))
	tdir := filepath.Join(ws, ".claude/projects/-workspace")
	for _, d := range []string{tdir, filepath.Join(ws, ".tether"), filepath.Join(ws, "artifacts/bin"), filepath.Join(ws, "artifacts/text"), filepath.Join(ws, "file-uploads"), filepath.Join(ws, "repos")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	per := int(sz.TranscriptBytes / int64(sz.Transcripts))
	for i := 0; i < sz.Transcripts; i++ {
		if err := os.WriteFile(filepath.Join(tdir, fmt.Sprintf("session-%02d.jsonl", i)), jsonl(rng, make([]byte, 0, per+4096), per), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(ws, ".tether/session-ids.json"), []byte(`{"main":"6f1d2c3b-0000-4000-8000-000000000001"}`), 0o600); err != nil {
		return err
	}
	bin := sz.ArtifactBytes * 6 / 10
	for i := 0; i < 5; i++ {
		if err := os.WriteFile(filepath.Join(ws, fmt.Sprintf("artifacts/bin/build-%d.tar.zst", i)), randomBytes(rng, int(bin/5)), 0o644); err != nil {
			return err
		}
	}
	txt := (sz.ArtifactBytes - bin) / 100
	for i := 0; i < 100; i++ {
		if err := os.WriteFile(filepath.Join(ws, fmt.Sprintf("artifacts/text/report-%03d.log", i)), text(rng, nil, int(txt)), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(ws, "file-uploads/spec.md"), text(rng, nil, 20<<10), 0o644); err != nil {
		return err
	}
	return generateRepo(ctx, filepath.Join(ws, "repos/app"), sz, rng)
}

func srcPath(i int) string { return fmt.Sprintf("pkg%03d/file%03d.go", i/100, i%100) }

func git(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = gitEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s in %s: %v: %s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}

func gitEnv() []string {
	return append(cleanEnv(), "GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.com", "GIT_COMMITTER_NAME=bench",
		"GIT_COMMITTER_EMAIL=bench@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
}

// generateRepo writes the history with one `git fast-import` stream (seconds,
// where thousands of `git commit` calls would take many minutes): a first
// commit with every source file, then commits that rewrite some source files
// and replace one of ten binary assets each time, so the packed history is
// large while the checkout stays ~RepoFiles files.
func generateRepo(ctx context.Context, dir string, sz sizes, rng *rand.Rand) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := git(ctx, dir, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "fast-import", "--quiet")
	cmd.Env = gitEnv()
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return err
	}
	w := bufio.NewWriterSize(in, 1<<20)
	when := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	commit := func(n int, msg string, files func()) {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter bench <bench@example.com> %d +0000\ndata %d\n%s\n", when+int64(n)*3600, len(msg), msg)
		files()
		w.WriteString("\n")
	}
	inline := func(path string, data []byte) {
		fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n", path, len(data))
		w.Write(data)
		w.WriteString("\n")
	}
	commit(0, "initial import", func() {
		buf := make([]byte, 0, 2*sz.RepoFileBytes)
		for i := 0; i < sz.RepoFiles; i++ {
			buf = fmt.Appendf(buf[:0], "package pkg%03d\n\n", i/100)
			inline(srcPath(i), text(rng, buf, sz.RepoFileBytes/2+rng.Intn(sz.RepoFileBytes)))
		}
		inline("README.md", []byte("# app\n"))
		inline(".gitignore", []byte("*.tmp\nbuild/\n"))
	})
	asset := int(sz.HistoryBinary / int64(sz.HistoryCommits))
	for c := 1; c <= sz.HistoryCommits; c++ {
		commit(c, fmt.Sprintf("change %d", c), func() {
			for k := 0; k < 20; k++ {
				i := rng.Intn(sz.RepoFiles)
				buf := fmt.Appendf(nil, "package pkg%03d\n\n", i/100)
				inline(srcPath(i), text(rng, buf, sz.RepoFileBytes/2+rng.Intn(sz.RepoFileBytes)))
			}
			inline(fmt.Sprintf("assets/blob-%02d.bin", c%10), randomBytes(rng, asset))
		})
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("git fast-import: %v: %s", err, errb.String())
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %v: %s", err, errb.String())
	}
	if err := git(ctx, dir, "checkout", "-q", "-f", "main"); err != nil {
		return err
	}
	return workInProgress(ctx, dir, sz, rng)
}

// workInProgress leaves the repository the way an agent does mid-task: a
// staged edit and a staged new file, unstaged edits, a deletion, a modified
// binary, untracked text and binary files, and an ignored file.
func workInProgress(ctx context.Context, dir string, sz sizes, rng *rand.Rand) error {
	appendTo := func(rel, s string) error {
		f, err := os.OpenFile(filepath.Join(dir, rel), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.WriteString(f, s)
		return err
	}
	if err := appendTo(srcPath(0), "\n// staged edit\nfunc Staged() {}\n"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "pkg000/new_staged.go"), []byte("package pkg000\n\nfunc New() {}\n"), 0o644); err != nil {
		return err
	}
	if err := git(ctx, dir, "add", srcPath(0), "pkg000/new_staged.go"); err != nil {
		return err
	}
	if err := appendTo(srcPath(0), "// and an unstaged edit on top\n"); err != nil {
		return err
	}
	if err := appendTo(srcPath(1), "\nfunc Unstaged() {}\n"); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, srcPath(2))); err != nil {
		return err
	}
	blob := filepath.Join(dir, "assets/blob-00.bin")
	b, err := os.ReadFile(blob)
	if err != nil {
		return err
	}
	copy(b, randomBytes(rng, min(len(b), 4096)))
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "notes"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "notes/plan.md"), text(rng, nil, 8<<10), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "notes/diagram.png"), randomBytes(rng, 256<<10), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "scratch.tmp"), []byte("ignored\n"), 0o644)
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) (files int, bytes int64) {
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files++
			bytes += fi.Size()
		}
		return nil
	})
	return
}
