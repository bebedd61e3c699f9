package statesync

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/fsutil"
	"github.com/tether-dev/tether/internal/gitstate"
	"github.com/tether-dev/tether/internal/snapshot"
)

// HydrateFile records what hydrate did, for the runner and the operator.
const HydrateFile = ".tether/hydrate.json"

// Hydrate outcomes.
const (
	OutcomeRestored = "restored" // the newest snapshot was restored
	OutcomeFresh    = "fresh"    // the session has no snapshot: a new workspace
	OutcomeKept     = "kept"     // the workspace was already live here (a restart): left as is
)

// RepoSpec is a repository to clone into repos/<Name> when absent.
type RepoSpec struct {
	URL    string
	Branch string
	Name   string
}

// ParseRepoSpec parses URL[#branch].
func ParseRepoSpec(s string) (RepoSpec, error) {
	u, branch, _ := strings.Cut(s, "#")
	if u == "" {
		return RepoSpec{}, fmt.Errorf("--repo %q has no URL; use URL[#branch]", s)
	}
	name := strings.TrimSuffix(path.Base(strings.TrimRight(strings.ReplaceAll(u, ":", "/"), "/")), ".git")
	if name == "" || name == "." || name == ".." || name == "/" {
		return RepoSpec{}, fmt.Errorf("--repo %q: cannot derive a directory name under repos/ from the URL", s)
	}
	return RepoSpec{URL: u, Branch: branch, Name: name}, nil
}

// HydrateResult is what hydrate did; it is also written to HydrateFile.
type HydrateResult struct {
	Outcome    string    `json:"outcome"`
	Snapshot   string    `json:"snapshot,omitempty"`
	Time       time.Time `json:"time"`
	DurationMs int64     `json:"durationMs"`
	Files      int       `json:"files,omitempty"`
	Bytes      int64     `json:"bytes,omitempty"`
	Cloned     []string  `json:"cloned,omitempty"`
	Warnings   []string  `json:"warnings,omitempty"`
	// Epoch is the writer epoch taken for this workspace (WriterFile).
	Epoch uint64 `json:"epoch,omitempty"`
}

// Hydrate prepares a workspace before the agent starts. When the session has
// snapshots it restores the newest one, and fails (never starts empty) when
// that restore fails. When the workspace already went through hydrate here
// (a container restart within the same pod, or `tether run` again on the same
// directory) it is left as it is: it is at least as new as the store. Then
// it clones the listed repositories that are absent.
func Hydrate(ctx context.Context, repo *snapshot.Repo, workspace string, repos []RepoSpec, progress io.Writer) (*HydrateResult, error) {
	start := time.Now()
	if progress == nil {
		progress = io.Discard
	}
	res := &HydrateResult{Time: start.UTC()}
	if err := os.MkdirAll(workspace, 0o755); err != nil {
		return nil, fmt.Errorf("hydrate: workspace %s: %w", workspace, err)
	}
	// The writer epoch first, then the listing (fence.go).
	writer, err := takeWriter(ctx, repo)
	if err != nil {
		return nil, err
	}
	res.Epoch = writer.Epoch
	ids, err := repo.SnapshotIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("hydrate %s: cannot list snapshots, so cannot tell whether saved work exists: %w", repo, err)
	}
	if ids, err = withoutStale(ctx, repo, ids, res, progress); err != nil {
		return nil, fmt.Errorf("hydrate %s: %w", repo, err)
	}
	live, err := isLive(workspace)
	if err != nil {
		return nil, err
	}
	switch {
	case live:
		res.Outcome = OutcomeKept
		fmt.Fprintf(progress, "hydrate: %s was already hydrated here; keeping it as it is (%d snapshots in the store)\n", workspace, len(ids))
	case len(ids) == 0:
		res.Outcome = OutcomeFresh
		fmt.Fprintf(progress, "hydrate: %s has no snapshots; starting a fresh workspace\n", repo)
	default:
		empty, err := isEmpty(workspace)
		if err != nil {
			return nil, err
		}
		if !empty {
			return nil, fmt.Errorf("hydrate %s: workspace %s is not empty but was not hydrated here, and the session has %d snapshots: refusing to mix them; use an empty directory (or restore with `tether snapshot restore` elsewhere)", repo, workspace, len(ids))
		}
		latest := ids[len(ids)-1]
		fmt.Fprintf(progress, "hydrate: restoring snapshot %s of %s into %s\n", latest, repo, workspace)
		rs, err := snapshot.Restore(ctx, repo, workspace, snapshot.RestoreOptions{Snapshot: latest})
		if err != nil {
			return nil, fmt.Errorf("hydrate: the session has saved work but it could not be restored, so the agent must not start empty: %w", err)
		}
		res.Outcome, res.Snapshot, res.Files, res.Bytes = OutcomeRestored, rs.ID, rs.Files, rs.Bytes
		fmt.Fprintf(progress, "hydrate: restored %d files (%d bytes) in %d ms\n", rs.Files, rs.Bytes, rs.DurationMs)
	}
	for _, r := range repos {
		dir := filepath.Join(workspace, "repos", r.Name)
		if _, err := os.Lstat(dir); err == nil {
			if !gitstate.IsRepo(dir) {
				res.Warnings = append(res.Warnings, fmt.Sprintf("repos/%s exists but is not a git repository; not cloning %s", r.Name, gitstate.SanitizeURL(r.URL)))
			}
			continue
		}
		fmt.Fprintf(progress, "hydrate: cloning %s into repos/%s\n", gitstate.SanitizeURL(r.URL), r.Name)
		if err := clone(ctx, r, dir); err != nil {
			return nil, err
		}
		res.Cloned = append(res.Cloned, "repos/"+r.Name)
	}
	res.DurationMs = time.Since(start).Milliseconds()
	data, _ := json.MarshalIndent(res, "", "  ")
	if err := os.MkdirAll(filepath.Join(workspace, ".tether"), 0o755); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(workspace, HydrateFile), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := writeWriterFile(workspace, writer); err != nil {
		return nil, err
	}
	return res, nil
}

func clone(ctx context.Context, r RepoSpec, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	args := []string{"clone", "--quiet"}
	if r.Branch != "" {
		args = append(args, "--branch", r.Branch)
	}
	tmp := dir + ".tether-clone"
	os.RemoveAll(tmp)
	args = append(args, "--", r.URL, tmp)
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		// git's message may echo the URL; print the sanitized one only.
		msg := strings.ReplaceAll(string(out), r.URL, gitstate.SanitizeURL(r.URL))
		return fmt.Errorf("hydrate: clone %s: %v: %s", gitstate.SanitizeURL(r.URL), err, strings.TrimSpace(msg))
	}
	// Never keep credentials in the clone's config, where a snapshot would see them.
	if clean := gitstate.SanitizeURL(r.URL); clean != r.URL {
		if out, err := exec.CommandContext(ctx, "git", "-C", tmp, "remote", "set-url", "origin", clean).CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("hydrate: clone %s: %v: %s", clean, err, out)
		}
	}
	return os.Rename(tmp, dir)
}

// isLive: the workspace went through hydrate before and still has content.
func isLive(ws string) (bool, error) {
	_, err := os.Stat(filepath.Join(ws, HydrateFile))
	if os.IsNotExist(err) {
		return false, nil
	}
	return err == nil, err
}

func isEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if n != ".tether-restore" {
			return false, nil
		}
	}
	return true, nil
}
