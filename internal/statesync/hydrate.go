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
	"github.com/tether-dev/tether/internal/redact"
	"github.com/tether-dev/tether/internal/snapshot"
)

// HydrateFile records what hydrate did, for the runner and the operator.
const HydrateFile = ".tether/hydrate.json"

// Hydrate outcomes.
const (
	OutcomeRestored = "restored" // the newest snapshot was restored
	OutcomeFresh    = "fresh"    // the session has no snapshot: a new workspace
	OutcomeKept     = "kept"     // the workspace was already live here (a restart): left as is

	// OutcomeRestoredOlder: the newest snapshots were damaged or stale and skipped
	// (HydrateResult.Skipped says which and why); an older one was restored.
	OutcomeRestoredOlder = "restored-older"
)

// RepoSpec is a repository to clone into repos/<Name> when absent.
type RepoSpec struct {
	URL    string
	Branch string
	Name   string
}

// ParseRepoSpec parses URL[#branch]. A URL carrying a credential (user
// information, a token-shaped value, a secret-looking parameter) is refused
// with the supported route (GitCredentialsHint), and so is a transport
// that runs a program (ext::).
func ParseRepoSpec(s string) (RepoSpec, error) {
	u, branch, _ := strings.Cut(s, "#")
	if u == "" {
		return RepoSpec{}, fmt.Errorf("--repo %q has no URL; use URL[#branch]", redactRepo(s))
	}
	if err := checkRepoURL(u); err != nil {
		return RepoSpec{}, err
	}
	name := strings.TrimSuffix(path.Base(strings.TrimRight(strings.ReplaceAll(u, ":", "/"), "/")), ".git")
	if name == "" || name == "." || name == ".." || name == "/" {
		return RepoSpec{}, fmt.Errorf("--repo %q: cannot derive a directory name under repos/ from the URL", redactRepo(s))
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
	// Skipped lists, newest first, the snapshots newer than Snapshot that
	// were not restored: their data is damaged, or they are stale (saved by
	// a writer after a newer one took the session over).
	Skipped []SkippedSnapshot `json:"skipped,omitempty"`
	// Epoch is the writer epoch taken for this workspace (WriterFile).
	Epoch uint64 `json:"epoch,omitempty"`
	// Repos says how each repository under repos/ came back: from its git
	// state, or file by file because the save could not capture it.
	Repos []snapshot.RestoredRepo `json:"repos,omitempty"`
	// LeftOut counts what the restored snapshot's save left out.
	LeftOut int `json:"leftOut,omitempty"`
}

// Hydrate prepares a workspace before the agent starts. When the session has
// snapshots it restores the newest one that can be restored: a newer one
// whose data is damaged is skipped, loudly (a progress line, Skipped and
// OutcomeRestoredOlder), and any other failure fails the hydrate; it never
// starts empty when saved work exists. When the workspace already went
// through hydrate here (a container restart within the same pod, or `tether
// run` again on the same directory) it is left as it is: it is at least as
// new as the store. Then it clones the listed repositories that are absent.
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
	ids, staleSkips, err := withoutStale(ctx, repo, ids, res, progress)
	if err != nil {
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
		rs, skipped, err := restoreNewest(ctx, repo, workspace, ids, progress)
		if err != nil {
			return nil, err
		}
		skipped = withStaleSkips(skipped, staleSkips, rs.ID)
		res.Outcome, res.Snapshot, res.Files, res.Bytes, res.Skipped = OutcomeRestored, rs.ID, rs.Files, rs.Bytes, skipped
		fmt.Fprintf(progress, "hydrate: restored %d files (%d bytes) in %d ms\n", rs.Files, rs.Bytes, rs.DurationMs)
		res.Repos, res.LeftOut = rs.Repos, rs.LeftOut
		for _, r := range rs.Repos {
			fmt.Fprintf(progress, "hydrate: repository %s restored (%s)\n", snapshot.DisplayPath(r.Path), r.Mode)
			if r.Mode == snapshot.RepoModeFiles {
				res.Warnings = append(res.Warnings, fmt.Sprintf("repository %s came back file by file, .git included: the save could not capture it as git state (%s)", snapshot.DisplayPath(r.Path), r.Reason))
			}
		}
		if rs.LeftOut > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("snapshot %s lacks %d entries its save could not keep (see `tether snapshot restore` or the manifest for the list)", rs.ID, rs.LeftOut))
		}
		if len(skipped) > 0 {
			res.Outcome = OutcomeRestoredOlder
			res.Warnings = append(res.Warnings, fmt.Sprintf("restored snapshot %s, not the newest: %d newer snapshots are damaged or stale and were skipped%s", rs.ID, len(skipped), skippedNote(skipped)))
			fmt.Fprintf(progress, "hydrate: WARNING: restored snapshot %s, NOT the newest: skipped %d damaged or stale newer snapshots; work saved after %s is not in this workspace\n", rs.ID, len(skipped), rs.ID)
		}
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

// clone runs git clone with the credential from the environment, if any
// (gitCloneEnv), on no command line and in no file of the clone.
func clone(ctx context.Context, r RepoSpec, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	show := redactRepo(r.URL)
	env, sent, err := gitCloneEnv(r.URL)
	if err != nil {
		return fmt.Errorf("hydrate: clone %s: %w", show, err)
	}
	args := []string{"clone", "--quiet"}
	if r.Branch != "" {
		args = append(args, "--branch", r.Branch)
	}
	tmp := dir + ".tether-clone"
	os.RemoveAll(tmp)
	args = append(args, "--", r.URL, tmp)
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		// git's message may echo the URL or, traced, a header.
		msg := strings.TrimSpace(redact.String(string(out)))
		hint := ""
		if authFailed(msg) && !sent {
			hint = "; if the repository needs a credential: " + GitCredentialsHint + " (the token goes only to https://, or http:// on this machine)"
		}
		return fmt.Errorf("hydrate: clone %s: %v: %s%s", show, err, msg, hint)
	}
	// Never keep credentials in the clone's config, where a snapshot would see them.
	if clean := gitstate.SanitizeURL(r.URL); clean != r.URL {
		if out, err := exec.CommandContext(ctx, "git", "-C", tmp, "remote", "set-url", "origin", clean).CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("hydrate: clone %s: %v: %s", show, err, redact.String(string(out)))
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
