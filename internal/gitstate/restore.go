package gitstate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Restore recreates in repoDir the repository state st was captured from.
// bundles is the chain that produced st, oldest (full) first. repoDir must
// be missing or empty.
//
// The bundles are fetched into the new repository's own object store (the
// snapshot commits stay there, unreferenced, so a later incremental capture
// of the restored repository finds its previous snapshot). Then refs,
// upstream and remote config, HEAD (branch, detached or unborn), the working
// tree (the snapshot's tree), the index (the staged tree plus any unmerged
// entries) and the state files of an operation in progress are recreated.
// What cannot be recreated exactly is listed in st.Warnings. On error
// repoDir is left partly restored: restore into a staging directory and move
// it into place (nothing in the restored .git names its own path).
func Restore(ctx context.Context, repoDir string, st *State, bundles []string) error {
	if err := restore(ctx, repoDir, st, bundles); err != nil {
		return fmt.Errorf("restore of git repository into %s: %w", repoDir, err)
	}
	return nil
}

func restore(ctx context.Context, repoDir string, st *State, bundles []string) error {
	if st == nil || st.Version != StateVersion {
		return fmt.Errorf("state has format version %d, this tether reads %d: use a matching tether", versionOf(st), StateVersion)
	}
	if len(bundles) == 0 {
		return fmt.Errorf("no bundles given for snapshot %s", st.Snapshot)
	}
	if err := validateRefs(st); err != nil {
		return err
	}
	top, err := filepath.Abs(repoDir)
	if err != nil {
		return err
	}
	if ents, err := os.ReadDir(top); err == nil && len(ents) > 0 {
		return fmt.Errorf("directory is not empty; restore only into a missing or empty directory")
	} else if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.MkdirAll(top, 0o755); err != nil {
		return err
	}
	initArgs := []string{"init", "-q"}
	if st.ObjectFormat != "" && st.ObjectFormat != "sha1" {
		initArgs = append(initArgs, "--object-format="+st.ObjectFormat)
	}
	if _, err := (gitCmd{dir: top}).run(ctx, nil, append(initArgs, top)...); err != nil {
		return err
	}
	gitDir := filepath.Join(top, ".git")
	g := gitCmd{dir: top, env: append([]string{"GIT_DIR=" + gitDir, "GIT_WORK_TREE=" + top}, identity...)}

	if len(st.Shallow) > 0 {
		if err := os.WriteFile(filepath.Join(gitDir, "shallow"), []byte(strings.Join(st.Shallow, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	// Fetch (rather than unbundle) for its connectivity check; each bundle's
	// refs go to a private namespace so the next bundle's prerequisites are
	// reachable, and the namespace is dropped at the end.
	for i, b := range bundles {
		abs, err := filepath.Abs(b)
		if err != nil {
			return err
		}
		_, err = g.run(ctx, nil, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
			abs, fmt.Sprintf("+refs/*:refs/tether/restore/%d/*", i))
		if err != nil {
			return fmt.Errorf("bundle %d of %d (%s): %w", i+1, len(bundles), b, err)
		}
	}
	out, err := g.run(ctx, nil, "for-each-ref", "--format=delete %(refname)", "refs/tether/")
	if err != nil {
		return err
	}
	if _, err := g.run(ctx, out, "update-ref", "--stdin"); err != nil {
		return err
	}
	if _, err := g.run(ctx, nil, "cat-file", "-e", st.Snapshot+"^{commit}"); err != nil {
		return fmt.Errorf("the bundles do not contain snapshot %s: pass the whole chain, oldest first", st.Snapshot)
	}

	// Refs, then HEAD.
	var upd bytes.Buffer
	var symrefs []Ref
	for _, r := range st.Refs {
		switch {
		case r.Symref != "":
			symrefs = append(symrefs, r)
		case r.Name == "refs/stash" && len(st.Stash) > 0:
			// recreated below with its reflog
		default:
			fmt.Fprintf(&upd, "create %s %s\n", r.Name, r.Target)
		}
	}
	if upd.Len() > 0 {
		if _, err := g.run(ctx, upd.Bytes(), "update-ref", "--stdin"); err != nil {
			return err
		}
	}
	for _, r := range symrefs {
		if _, err := g.run(ctx, nil, "symbolic-ref", r.Name, r.Symref); err != nil {
			return err
		}
	}
	for _, s := range st.Stash {
		if _, err := g.run(ctx, nil, "update-ref", "--create-reflog", "-m", s.Message, "refs/stash", s.Commit); err != nil {
			return err
		}
	}
	if st.Head.Detached() {
		msg := st.Head.Checkout
		if msg == "" {
			msg = "tether: restore"
		}
		_, err = g.run(ctx, nil, "update-ref", "--no-deref", "-m", sanitizeLine(msg), "HEAD", st.Head.Commit)
	} else {
		_, err = g.run(ctx, nil, "symbolic-ref", "HEAD", st.Head.Branch)
	}
	if err != nil {
		return err
	}

	for _, c := range st.Config {
		if _, err := g.run(ctx, nil, "config", "--add", c.Key, c.Value); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(st.Info))
	for n := range st.Info {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !validInfoName(n) {
			return fmt.Errorf("state names an unexpected info file %q", n)
		}
		if err := os.WriteFile(filepath.Join(gitDir, "info", n), st.Info[n], 0o644); err != nil {
			return err
		}
	}

	for name, b := range st.Hooks {
		if !validHookName(name) {
			return fmt.Errorf("state names an unexpected hook %q", name)
		}
		if err := os.WriteFile(filepath.Join(gitDir, "hooks", name), b, 0o755); err != nil {
			return err
		}
	}

	// Working tree := snapshot tree; index := staged tree. The two-tree
	// read-tree keeps the stat data of entries equal in both trees, so git
	// only re-reads files that differ between index and working tree.
	if _, err := g.run(ctx, nil, "read-tree", "--reset", "-u", st.WorktreeTree); err != nil {
		return err
	}
	if st.StagedTree != st.WorktreeTree {
		if _, err := g.run(ctx, nil, "read-tree", "-m", st.WorktreeTree, st.StagedTree); err != nil {
			return err
		}
	}
	if st.Conflicts != "" {
		if err := restoreConflicts(ctx, g, st); err != nil {
			return err
		}
	}
	if len(st.IntentToAdd) > 0 {
		// add -N needs the file; an intent-to-add entry whose file was
		// deleted too cannot be recreated (and shows as nothing at all).
		var paths bytes.Buffer
		for _, p := range st.IntentToAdd {
			if _, err := os.Lstat(filepath.Join(top, filepath.FromSlash(p))); err == nil {
				paths.WriteString(p + "\x00")
			}
		}
		if paths.Len() > 0 {
			lit := g.with("GIT_LITERAL_PATHSPECS=1")
			if _, err := lit.run(ctx, paths.Bytes(), "add", "-N", "--pathspec-from-file=-", "--pathspec-file-nul"); err != nil {
				return err
			}
		}
	}
	if st.Operation != nil {
		if err := writeOperation(gitDir, st.Operation); err != nil {
			return err
		}
	}
	// Exit status 1 only says some files differ from the index, as they may.
	if _, err := g.run(ctx, nil, "update-index", "-q", "--refresh"); err != nil && exitCode(err) != 1 {
		return err
	}
	return nil
}

// validateRefs refuses ref names that could not have come from git (they go
// into update-ref's line-oriented input).
func validateRefs(st *State) error {
	ok := func(name string) bool {
		return strings.HasPrefix(name, "refs/") && !strings.ContainsAny(name, " \t\n\r\x00~^:?*[\\") && !strings.Contains(name, "..")
	}
	for _, r := range st.Refs {
		if !ok(r.Name) || (r.Symref != "" && !ok(r.Symref)) {
			return fmt.Errorf("state holds an invalid ref %q", r.Name)
		}
	}
	if !st.Head.Detached() && !ok(st.Head.Branch) {
		return fmt.Errorf("state holds an invalid HEAD branch %q", st.Head.Branch)
	}
	return nil
}

func versionOf(st *State) int {
	if st == nil {
		return 0
	}
	return st.Version
}

func validInfoName(n string) bool {
	for _, x := range infoFiles {
		if n == x {
			return true
		}
	}
	return false
}

// restoreConflicts puts the unmerged entries back into the index at their
// stages, replacing the stage-0 entry of each such path.
func restoreConflicts(ctx context.Context, g gitCmd, st *State) error {
	out, err := g.run(ctx, nil, "ls-tree", "-r", "-z", st.Conflicts+"^{tree}")
	if err != nil {
		return err
	}
	zero := strings.Repeat("0", len(st.Snapshot))
	var removes, adds bytes.Buffer
	seen := map[string]bool{}
	for _, e := range strings.Split(string(out), "\x00") {
		meta, p, ok := strings.Cut(e, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 {
			continue
		}
		stage, rel, ok := strings.Cut(p, "/")
		if !ok || (stage != "1" && stage != "2" && stage != "3") {
			return fmt.Errorf("conflicts commit %s has an unexpected entry %q", st.Conflicts, p)
		}
		if !seen[rel] {
			seen[rel] = true
			fmt.Fprintf(&removes, "0 %s\t%s\x00", zero, rel)
		}
		fmt.Fprintf(&adds, "%s %s %s\t%s\x00", f[0], f[2], stage, rel)
	}
	_, err = g.run(ctx, append(removes.Bytes(), adds.Bytes()...), "update-index", "-z", "--index-info")
	return err
}

// writeOperation writes an operation's state files back into the git dir,
// refusing paths outside the known state files and directories.
func writeOperation(gitDir string, op *Operation) error {
	for rel, b := range op.Files {
		clean := path.Clean(rel)
		ok := clean == rel && !strings.HasPrefix(clean, "../") && !path.IsAbs(clean)
		if ok {
			ok = false
			for _, f := range opFiles {
				ok = ok || clean == f
			}
			for _, d := range opDirs {
				ok = ok || strings.HasPrefix(clean, d+"/")
			}
		}
		if !ok {
			return fmt.Errorf("operation %s names an unexpected state file %q", op.Kind, rel)
		}
		p := filepath.Join(gitDir, filepath.FromSlash(clean))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
