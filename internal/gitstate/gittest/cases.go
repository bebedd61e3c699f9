package gittest

import (
	"testing"
)

// A Case is a repository state that must survive capture and restore exactly.
type Case struct {
	// Name is short and safe as a directory name.
	Name string
	// Steps build the repository at dir; the first creates it (dir need not
	// exist). A caller captures after every step, as a sync loop would, so a
	// case of several steps exercises incremental captures.
	Steps []func(t testing.TB, dir string)
	// Nested lists repositories inside this one (submodules), relative to
	// it; each is compared with its restored copy too.
	Nested []string
	// Compare are the options to compare the restored copy with.
	Compare []Option
	// Check, when set, makes further assertions about the restored copy.
	Check func(t testing.TB, orig, restored string)
	// Then, when set, is done to both the original and the restored copy
	// after they compared equal; they must compare equal again (a restored
	// merge concludes like the original).
	Then func(t testing.TB, dir string)
	// Heavy marks cases that write tens of megabytes or thousands of files.
	Heavy bool
}

// Cases returns every edge case of a repository's working state.
func Cases() []Case {
	noop := func(testing.TB, string) {}
	return []Case{
		{Name: "ordinary", Steps: steps(Ordinary)},
		{Name: "empty", Steps: steps(func(t testing.TB, dir string) { Init(t, dir) })},
		{Name: "unborn", Steps: steps(Unborn, UnbornCommit)},
		{Name: "only-untracked", Steps: steps(OnlyUntracked)},
		{Name: "detached-head", Steps: steps(DetachedHead)},
		{Name: "deleted-but-staged-modified", Steps: steps(DeletedButStagedModified),
			Check: func(t testing.TB, _, restored string) {
				if got := Git(t, restored, "status", "--porcelain=v1"); got != "MD f\n" {
					t.Errorf("restored status %q, want %q", got, "MD f\n")
				}
			}},
		{Name: "merge-conflict", Steps: steps(MergeConflict), Then: ConcludeMerge},
		{Name: "rebase-merge", Steps: steps(func(t testing.TB, dir string) { RebaseConflict(t, dir, "--merge") }), Then: ContinueRebase},
		{Name: "rebase-apply", Steps: steps(func(t testing.TB, dir string) { RebaseConflict(t, dir, "--apply") }), Then: ContinueRebase},
		{Name: "cherry-pick-conflict", Steps: steps(CherryPickConflict), Then: ContinueCherryPick},
		{Name: "bisect", Steps: steps(Bisect), Then: BisectStep},
		{Name: "submodule", Steps: steps(Submodule), Nested: []string{SubmodulePath}},
		{Name: "nested-submodules", Steps: steps(NestedSubmodules), Nested: []string{SubmodulePath, NestedSubmodulePath}},
		{Name: "embedded-repo", Steps: steps(EmbeddedRepo), Nested: []string{EmbeddedRepoPath}},
		{Name: "credentials", Steps: steps(Credentials), Compare: []Option{IgnoreRemoteURLs()},
			Check: func(t testing.TB, _, restored string) { CheckCredentialsRestored(t, restored) }},
		{Name: "local-config", Steps: steps(LocalConfig)},
		{Name: "shallow-clone", Steps: steps(ShallowClone, ShallowCommit)},
		{Name: "intent-to-add", Steps: steps(IntentToAdd)},
		{Name: "split-index", Steps: steps(SplitIndex)},
		{Name: "sha256", Steps: steps(SHA256, func(t testing.TB, repo string) { Write(t, repo, "b.txt", "again\n") })},
		{Name: "linked-worktree", Steps: steps(LinkedWorktree)},
		{Name: "chain-of-four", Steps: append(steps(Ordinary), ChainSteps...)},
		{Name: "nothing-changed", Steps: steps(Ordinary, noop, func(t testing.TB, repo string) { Git(t, repo, "tag", "v2") })},
		{Name: "gc-and-rebase", Steps: steps(ThreeCommits, RewriteAndPrune, GCAfterEdit)},
		{Name: "10k-files", Steps: steps(TenKFiles, OneLineEdit, noop), Heavy: true},
		{Name: "50mib-binary", Steps: steps(BigBinary, FlipByte), Heavy: true},
	}
}

func steps(fs ...func(t testing.TB, dir string)) []func(t testing.TB, dir string) { return fs }
