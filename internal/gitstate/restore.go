package gitstate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// BundleSource opens one bundle of a chain for reading. Restore reads each
// bundle once, from start to end, and closes it. A read error (a corrupt or
// missing piece of the bundle, say) fails the restore and is returned
// wrapped, so the caller can still match it with errors.As.
type BundleSource func(ctx context.Context) (io.ReadCloser, error)

// restoreConfig is the configuration of every git command of a restore, on
// top of gitConfigArgs. Nothing is fsynced (the caller syncs the result
// once, which costs one syncfs instead of an fsync per pack, ref and
// index), and the working tree is written by as many processes as there
// are cores.
var restoreConfig = [][2]string{
	{"core.fsync", "none"},
	{"checkout.workers", "0"},
}

// Restore recreates in repoDir the repository state st was captured from.
// bundles is the chain that produced st, oldest (full) first. repoDir must
// be missing or empty. It is RestoreFrom with bundle files.
func Restore(ctx context.Context, repoDir string, st *State, bundles []string) error {
	srcs := make([]BundleSource, len(bundles))
	for i, b := range bundles {
		srcs[i] = func(context.Context) (io.ReadCloser, error) { return os.Open(b) }
	}
	return RestoreFrom(ctx, repoDir, st, srcs)
}

// RestoreFrom recreates in repoDir the repository state st was captured
// from, reading the chain of bundles that produced it (oldest, full, first)
// from bundles, each streamed into git as it is read. repoDir must be
// missing or empty.
//
// The bundles' objects go into the new repository's own object store (the
// snapshot commits stay there, unreferenced, so a later incremental capture
// of the restored repository finds its previous snapshot), checked like
// `git fetch` checks a bundle: every object hashed by index-pack, the
// prerequisites of each bundle present, and everything reachable from the
// bundles' refs present. Then refs, upstream and remote config, HEAD
// (branch, detached or unborn), the working tree (the snapshot's tree), the
// index (the staged tree plus any unmerged entries) and the state files of
// an operation in progress are recreated. What cannot be recreated exactly
// is listed in st.Warnings.
//
// Nothing is fsynced: make the result durable (one syncfs of the file
// system) before relying on it. On error repoDir is left partly restored:
// restore into a staging directory and move it into place (nothing in the
// restored .git names its own path).
//
// st is not trusted (it comes from the store): RestoreFrom refuses a State
// that fails Validate, and drops config entries outside AllowedConfig,
// logging a warning that names the repository and the key.
func RestoreFrom(ctx context.Context, repoDir string, st *State, bundles []BundleSource) error {
	return RestoreWith(ctx, repoDir, st, bundles, RestoreOptions{})
}

// RestoreOptions configure RestoreWith.
type RestoreOptions struct {
	// Warn is told what the restore left out (config entries outside the
	// allow-list), one sentence each; nil logs them with slog.Default.
	Warn func(msg string)
}

// RestoreWith is RestoreFrom with options.
func RestoreWith(ctx context.Context, repoDir string, st *State, bundles []BundleSource, opts RestoreOptions) error {
	if opts.Warn == nil {
		opts.Warn = func(msg string) { slog.Default().Warn(msg) }
	}
	if err := restore(ctx, repoDir, st, bundles, opts); err != nil {
		return fmt.Errorf("restore of git repository into %s: %w", repoDir, err)
	}
	return nil
}

func restore(ctx context.Context, repoDir string, st *State, bundles []BundleSource, opts RestoreOptions) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("refusing the state: %w", err)
	}
	if len(bundles) == 0 {
		return fmt.Errorf("no bundles given for snapshot %s", st.Snapshot)
	}
	config := make([]ConfigEntry, 0, len(st.Config))
	for _, c := range st.Config {
		key, _, _, _, ok := canonicalKey(c.Key)
		if !ok || !AllowedConfig(key, c.Value) {
			opts.Warn(fmt.Sprintf("git repository %s: config key %q dropped: the state holds it, but tether restores no such key (it could name a program or hold credentials)", repoDir, showKey(c.Key)))
			continue
		}
		config = append(config, ConfigEntry{Key: key, Value: CleanConfigValue(c.Value)})
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
	format := st.ObjectFormat
	if format == "" {
		format = "sha1"
	}
	if format != "sha1" {
		initArgs = append(initArgs, "--object-format="+format)
	}
	if _, err := (gitCmd{dir: top, config: restoreConfig}).run(ctx, nil, append(initArgs, top)...); err != nil {
		return err
	}
	gitDir := filepath.Join(top, ".git")
	g := gitCmd{dir: top, env: append([]string{"GIT_DIR=" + gitDir, "GIT_WORK_TREE=" + top}, identity...), config: restoreConfig}

	if len(st.Shallow) > 0 {
		if err := os.WriteFile(filepath.Join(gitDir, "shallow"), []byte(strings.Join(st.Shallow, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	// Each bundle's pack goes straight into index-pack as it is read, which
	// is what `git fetch` does with a bundle file; its refs are only needed
	// for the connectivity check below, so none are created.
	var tips []string
	for i, open := range bundles {
		t, err := unbundle(ctx, g, gitDir, format, open)
		if err != nil {
			return fmt.Errorf("bundle %d of %d: %w", i+1, len(bundles), err)
		}
		tips = append(tips, t...)
	}
	// As `git fetch` checks a bundle's refs: everything they reach is here.
	var in bytes.Buffer
	for _, t := range tips {
		in.WriteString(t + "\n")
	}
	if _, err := g.run(ctx, in.Bytes(), "rev-list", "--objects", "--stdin", "--quiet"); err != nil {
		return fmt.Errorf("the bundles do not hold every object their refs reach (pass the whole chain, oldest first): %w", err)
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
	writeReflogs(gitDir, st, opts.Warn)

	initKeys, err := configKeys(ctx, g)
	if err != nil {
		return err
	}
	for _, c := range config {
		if _, err := g.run(ctx, nil, "config", "--add", c.Key, c.Value); err != nil {
			return err
		}
	}
	// What git wrote is what is checked: before any command reads the
	// working tree, the config holds nothing outside the allow-list and
	// init's own keys (in particular no filter driver, which the attributes
	// of the snapshot's tree or info/attributes could name).
	if err := checkConfig(ctx, g, initKeys); err != nil {
		return err
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
	ok := validRefName
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

// configKeys returns the keys of the repository's local config.
func configKeys(ctx context.Context, g gitCmd) (map[string]bool, error) {
	out, err := g.run(ctx, nil, "config", "--local", "-z", "--name-only", "--list")
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for _, k := range strings.Split(string(out), "\x00") {
		if k != "" {
			keys[k] = true
		}
	}
	return keys, nil
}

// checkConfig refuses a repository whose local config holds a key outside
// the allow-list and those git init wrote (initKeys).
func checkConfig(ctx context.Context, g gitCmd, initKeys map[string]bool) error {
	out, err := g.run(ctx, nil, "config", "--local", "-z", "--list")
	if err != nil {
		return err
	}
	for _, kv := range strings.Split(string(out), "\x00") {
		k, v, _ := strings.Cut(kv, "\n")
		if k != "" && !initKeys[k] && !AllowedConfig(k, v) {
			return fmt.Errorf("the restored config holds %q, which restore never writes; refusing to check out", showKey(k))
		}
	}
	return nil
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
		if !validOpFile(rel) {
			return fmt.Errorf("operation %s names an unexpected state file %q", op.Kind, rel)
		}
		p := filepath.Join(gitDir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// maxBundleHeaderLine bounds one line of a bundle's header (a ref, or a
// prerequisite with its commit subject).
const maxBundleHeaderLine = 1 << 20

// unbundle reads one bundle from open: it parses the header, checks that the
// prerequisites are in the repository, and streams the pack into
// `git index-pack --fix-thin --stdin`, as `git fetch` does with a bundle
// file. It returns the object ids the bundle's refs name.
func unbundle(ctx context.Context, g gitCmd, gitDir, format string, open BundleSource) ([]string, error) {
	rc, err := open(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	src := &readErr{r: rc}
	br := bufio.NewReaderSize(src, 64<<10)
	hdr, err := readBundleHeader(br, format)
	if err == nil {
		if len(hdr.prereqs) == 0 {
			err = indexPackFile(ctx, g, gitDir, br)
		} else {
			err = indexPackThin(ctx, g, hdr.prereqs, br)
		}
	}
	// A failure to read the bundle is the cause of whatever git then said
	// about a truncated pack, and index-pack may have had the whole pack
	// before it came.
	if src.err != nil {
		return nil, src.err
	}
	if err != nil {
		return nil, err
	}
	return hdr.tips, nil
}

// indexPackThin checks that the prerequisites of a bundle are in the
// repository and streams its pack from r into `git index-pack --fix-thin
// --stdin`.
func indexPackThin(ctx context.Context, g gitCmd, prereqs []string, r io.Reader) error {
	var in bytes.Buffer
	for _, p := range prereqs {
		in.WriteString(p + "\n")
	}
	out, err := g.run(ctx, in.Bytes(), "cat-file", "--batch-check=%(objectname)")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if id, ok := strings.CutSuffix(line, " missing"); ok {
			return fmt.Errorf("it needs commit %s, which the bundles before it do not hold: pass the whole chain, oldest first", id)
		}
	}
	c := g.cmd(ctx, nil, "index-pack", "--fix-thin", "--stdin")
	c.Stdin = r
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &gitError{args: []string{"index-pack", "--fix-thin", "--stdin"}, stderr: stderr.String(), err: err}
	}
	return nil
}

// readErr remembers the first error of r other than io.EOF, so that a
// failure to read a bundle is reported as itself rather than as the
// truncated pack git then complains about.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

type bundleHeader struct {
	prereqs []string // object ids the bundle's pack may refer to without holding
	tips    []string // object ids its refs name
}

// readBundleHeader parses a v2 or v3 bundle header (see gitformat-bundle(5))
// up to the blank line before the pack, refusing a bundle of another object
// format or with capabilities restore cannot honor.
func readBundleHeader(br *bufio.Reader, format string) (*bundleHeader, error) {
	line := func() (string, error) {
		var b []byte
		for {
			frag, err := br.ReadSlice('\n')
			b = append(b, frag...)
			if err == nil {
				return strings.TrimSuffix(string(b), "\n"), nil
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return "", fmt.Errorf("truncated bundle header: %w", err)
			}
			if len(b) > maxBundleHeaderLine {
				return "", fmt.Errorf("not a git bundle: a header line is longer than %d bytes", maxBundleHeaderLine)
			}
		}
	}
	sig, err := line()
	if err != nil {
		return nil, err
	}
	bundleFormat := "sha1"
	switch sig {
	case "# v2 git bundle", "# v3 git bundle":
	default:
		return nil, fmt.Errorf("not a git bundle (it starts with %q)", truncate(sig, 40))
	}
	hashLen := 40
	h := &bundleHeader{}
	for {
		l, err := line()
		if err != nil {
			return nil, err
		}
		if l == "" {
			break
		}
		if capab, ok := strings.CutPrefix(l, "@"); ok && sig == "# v3 git bundle" {
			key, val, _ := strings.Cut(capab, "=")
			if key != "object-format" {
				return nil, fmt.Errorf("the bundle has capability %q, which restore does not support", truncate(capab, 80))
			}
			bundleFormat = val
			if val == "sha256" {
				hashLen = 64
			}
			continue
		}
		if bundleFormat != format {
			return nil, fmt.Errorf("the bundle holds %s objects, the state says %s", bundleFormat, format)
		}
		prereq := strings.HasPrefix(l, "-")
		l = strings.TrimPrefix(l, "-")
		if len(l) < hashLen || !isHex(l[:hashLen]) || (len(l) > hashLen && l[hashLen] != ' ') {
			return nil, fmt.Errorf("not a git bundle: unexpected header line %q", truncate(l, 80))
		}
		if prereq {
			h.prereqs = append(h.prereqs, l[:hashLen])
		} else {
			h.tips = append(h.tips, l[:hashLen])
		}
	}
	if len(h.tips) == 0 {
		return nil, fmt.Errorf("not a git bundle: its header names no refs")
	}
	return h, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// indexPackFile writes a self-contained pack (a bundle without
// prerequisites) from r into the repository's pack directory and has
// `git index-pack` check it and write its index in place. Unlike
// `index-pack --stdin`, which copies what it reads into a new pack file, this
// writes the pack once.
func indexPackFile(ctx context.Context, g gitCmd, gitDir string, r io.Reader) (err error) {
	packDir := filepath.Join(gitDir, "objects", "pack")
	f, err := os.CreateTemp(packDir, "tmp_tether_*.pack")
	if err != nil {
		return err
	}
	tmp := f.Name()
	tmpIdx := strings.TrimSuffix(tmp, ".pack") + ".idx"
	defer func() {
		if err != nil {
			os.Remove(tmp)
			os.Remove(tmpIdx)
		}
	}()
	buf := make([]byte, 1<<20)
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{r}, buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out, err := g.run(ctx, nil, "index-pack", tmp)
	if err != nil {
		return err
	}
	sum := strings.TrimSpace(string(out))
	if !isHex(sum) || (len(sum) != 40 && len(sum) != 64) {
		return fmt.Errorf("git index-pack printed %q, not a pack checksum", truncate(sum, 80))
	}
	// The pack and its reverse index (which newer gits write by default)
	// before its index: git finds packs by their index.
	final := filepath.Join(packDir, "pack-"+sum)
	if err := os.Rename(tmp, final+".pack"); err != nil {
		return err
	}
	tmpRev := strings.TrimSuffix(tmp, ".pack") + ".rev"
	if err := os.Rename(tmpRev, final+".rev"); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.Remove(tmpRev)
		os.Remove(final + ".pack")
		return err
	}
	if err := os.Rename(tmpIdx, final+".idx"); err != nil {
		os.Remove(final + ".rev")
		os.Remove(final + ".pack")
		return err
	}
	return nil
}
