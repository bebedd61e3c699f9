package gitstate

import (
	"regexp"
	"strings"
)

// StateVersion is the format version of State; Restore refuses newer ones.
const StateVersion = 1

// State describes one capture of a repository. It is JSON-serialisable with
// stable field names, holds no credentials, and together with the chain of
// bundles that produced it is everything Restore needs. Object ids are full
// hex ids in the repository's object format.
type State struct {
	Version      int    `json:"version"`
	GitVersion   string `json:"git_version"`   // `git version` of the capturing git
	ObjectFormat string `json:"object_format"` // "sha1" or "sha256"

	// Snapshot is the snapshot commit: its tree is the working tree (tracked
	// and untracked files, ignored ones excluded), its parents are HEAD (when
	// born), Staged, Conflicts (when set) and the previous snapshot (when the
	// bundle is incremental).
	Snapshot     string `json:"snapshot"`
	WorktreeTree string `json:"worktree_tree"`
	// Staged is a commit whose tree is the index (stage 0 entries).
	Staged     string `json:"staged"`
	StagedTree string `json:"staged_tree"`
	// Conflicts, when the index has unmerged entries, is a commit whose tree
	// holds each unmerged entry at "<stage>/<path>".
	Conflicts     string `json:"conflicts,omitempty"`
	ConflictsTree string `json:"conflicts_tree,omitempty"`
	// IntentToAdd are the paths `git add -N` put in the index (not part of
	// the staged tree).
	IntentToAdd []string `json:"intent_to_add,omitempty"`

	Head Head `json:"head"`
	// Refs are all refs of the repository (branches, tags, remote-tracking
	// branches, notes, stash, bisect refs...), sorted by name.
	Refs []Ref `json:"refs"`
	// Stash is the stash stack (the reflog of refs/stash), oldest first.
	Stash []StashEntry `json:"stash,omitempty"`
	// Reflogs are the reflogs of HEAD and the refs (refs/stash's is Stash),
	// bounded by MaxReflogEntries and MaxReflogBytes, messages without
	// credentials. States written before reflogs were kept have none and
	// restore as they did: one entry per ref.
	Reflogs []Reflog `json:"reflogs,omitempty"`
	// Config holds the repository-local config that a restore brings back
	// (remotes, upstreams, submodule URLs, identity, pull/push/merge/rebase
	// settings, aliases, line endings; never credential.*, http.* or url.*),
	// in file order, with credentials removed from every URL.
	Config []ConfigEntry `json:"config,omitempty"`
	// Info holds files of .git/info that change what git shows (exclude,
	// attributes, sparse-checkout), by name.
	Info map[string][]byte `json:"info,omitempty"`
	// Hooks are the active hooks of .git/hooks (not the samples), by name;
	// restored as executables.
	Hooks map[string][]byte `json:"hooks,omitempty"`
	// Shallow lists the shallow commits of a shallow clone.
	Shallow []string `json:"shallow,omitempty"`
	// Operation is the merge, rebase, cherry-pick, revert, am or bisect in
	// progress, if any.
	Operation *Operation `json:"operation,omitempty"`
	// Submodules are the gitlinks of the working tree (registered submodules
	// and embedded repositories). Their content is not in this State: capture
	// each as its own repository at Path (relative, slash-separated) and
	// restore it into that path after restoring this one.
	Submodules []Submodule `json:"submodules,omitempty"`

	// ChainDepth is 0 for a capture whose bundle is full and n for the n-th
	// incremental bundle after it.
	ChainDepth int `json:"chain_depth"`
	// Warnings are things this State cannot bring back exactly, for the caller
	// to show a person.
	Warnings []string `json:"warnings,omitempty"`
}

// Head is what HEAD points to.
type Head struct {
	// Branch is the full ref name HEAD points to ("refs/heads/main"), or ""
	// when HEAD is detached.
	Branch string `json:"branch,omitempty"`
	// Commit is the commit HEAD resolves to, "" when the branch is unborn.
	Commit string `json:"commit,omitempty"`
	// Checkout is, for a detached HEAD, the message of the last checkout in
	// HEAD's reflog ("checkout: moving from main to 1a2b3c"), from which
	// `git status` tells "HEAD detached at/from <what>".
	Checkout string `json:"checkout,omitempty"`
}

// Detached reports whether HEAD is detached.
func (h Head) Detached() bool { return h.Branch == "" }

// Unborn reports whether HEAD names a branch that has no commit yet.
func (h Head) Unborn() bool { return h.Commit == "" }

// Ref is one ref: a name and the object it points to, or, for a symbolic ref
// (refs/remotes/origin/HEAD), the ref it points to.
type Ref struct {
	Name   string `json:"name"`
	Target string `json:"target,omitempty"`
	Symref string `json:"symref,omitempty"`
}

// StashEntry is one entry of the stash stack.
type StashEntry struct {
	Commit  string `json:"commit"`
	Message string `json:"message"`
}

// ConfigEntry is one config variable.
type ConfigEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Operation is an operation in progress.
type Operation struct {
	// Kind is "merge", "rebase-merge", "rebase-apply", "cherry-pick",
	// "revert", "sequencer" or "bisect" (the first that applies).
	Kind string `json:"kind"`
	// Files are the state files of the operation, by path relative to the
	// per-worktree git directory ("MERGE_HEAD", "rebase-merge/onto").
	// Restore writes them back, which resumes the operation.
	Files map[string][]byte `json:"files"`
}

// Submodule is a gitlink in the working tree.
type Submodule struct {
	Path   string `json:"path"`
	Commit string `json:"commit"`
}

// SanitizeURL removes credentials from a remote URL: the user information of
// a URL with a scheme (https://user:token@host/x -> https://host/x; for ssh
// only the user name is kept, never a password) and the query string and
// fragment, where services put access tokens. Values that are not URLs with a
// scheme (scp-like "git@host:path", paths) are returned unchanged.
func SanitizeURL(s string) string {
	i := strings.Index(s, "://")
	if i <= 0 || strings.ContainsAny(s[:i], "/@:?# ") {
		return s
	}
	scheme := strings.ToLower(s[:i])
	rest := s[i+3:]
	// The authority ends at the first '/', '?' or '#'; the last '@' in it ends
	// the user information (a token may itself hold an '@' only escaped, but
	// be generous).
	end := strings.IndexAny(rest, "/?#")
	auth, tail := rest, ""
	if end >= 0 {
		auth, tail = rest[:end], rest[end:]
	}
	if at := strings.LastIndex(auth, "@"); at >= 0 {
		user, host := auth[:at], auth[at+1:]
		auth = host
		if scheme == "ssh" || scheme == "git+ssh" || scheme == "ssh+git" {
			if c := strings.Index(user, ":"); c >= 0 {
				user = user[:c]
			}
			if user != "" {
				auth = user + "@" + host
			}
		}
	}
	if q := strings.IndexAny(tail, "?#"); q >= 0 {
		tail = tail[:q]
	}
	return s[:i] + "://" + auth + tail
}

// credInText matches the user information of URLs inside free text (merge
// messages, rebase state files).
var credInText = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@`)

// sanitizeText removes URL credentials from free text.
func sanitizeText(b []byte) []byte {
	return credInText.ReplaceAll(b, []byte("$1"))
}
