package gitstate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxChain is the number of incremental bundles after which Capture
// starts a new chain with a full bundle when CaptureOptions.MaxChain is 0.
const DefaultMaxChain = 50

// CaptureOptions configures Capture.
type CaptureOptions struct {
	// ObjectDir is an absolute path to a private git object directory that
	// persists between captures of this repository; the caller owns its
	// location, Capture owns its content. New objects (blobs of untracked and
	// modified files, trees, snapshot commits) are written there, with the
	// repository's own object directory as an alternate, so the user's object
	// store is never written. Capture empties it whenever it starts a new
	// chain, which bounds its size. Losing it costs one full bundle, never
	// correctness. Captures sharing an ObjectDir must not run concurrently.
	ObjectDir string
	// ScratchDir is where the bundle file (and short-lived temp files) are
	// written. The caller removes the bundle when done with it.
	ScratchDir string
	// MaxChain is the number of incremental bundles after which the next
	// capture makes a full one (DefaultMaxChain when 0).
	MaxChain int
	// MaxObjectDirBytes bounds ObjectDir: when it holds more (versions of
	// large changed files pile up there until the chain ends), the next
	// capture starts a new chain, which empties it (DefaultMaxObjectDirBytes
	// when 0).
	MaxObjectDirBytes int64
	// ListIgnored makes Capture also list what git ignores in the working
	// tree (see Ignored) into Result.Ignored, with the repository it has
	// already opened: one git process instead of three.
	ListIgnored bool
}

// DefaultMaxObjectDirBytes is the default CaptureOptions.MaxObjectDirBytes.
const DefaultMaxObjectDirBytes = 1 << 30

// Result is the outcome of a capture.
type Result struct {
	// State describes the capture; the caller stores it next to the bundles.
	State State
	// Bundle is the path of the bundle file, "" when nothing changed since
	// prev (State is then equal to *prev and no bundle is needed).
	Bundle string
	// Full reports that Bundle has no prerequisite: the caller must start a
	// new chain with it and may forget the older bundles once it is stored.
	Full bool
	// Unborn are the repositories without a commit inside the working tree
	// (relative, slash-separated): git cannot record them as gitlinks, so
	// this capture leaves them out and the caller captures each as a
	// repository of its own.
	Unborn []string
	// Ignored, IgnoredTruncated and IgnoredErr are what Ignored returns,
	// when CaptureOptions.ListIgnored asked for it. A listing that fails
	// does not fail the capture.
	Ignored          []string
	IgnoredTruncated bool
	IgnoredErr       error
}

// Capture records the full working state of the git repository whose working
// tree root is repoDir: a snapshot commit of the working tree, a commit of
// the index, refs, HEAD, remotes, upstreams and any operation in progress.
// It writes a bundle holding every object a Restore needs on top of the
// bundles of prev's chain (or all of them when Full).
//
// Capture never writes to the user's repository: not its index (a copy is
// used), refs, HEAD, config or object store. (Git may update the modification
// time of an existing object file it finds while writing, and of the shared
// index file of a split index it reads: its way of keeping recently used
// files from being pruned. No content changes.)
//
// prev is the State of the last capture of this repository whose bundle the
// caller stored (or that needed none), or nil: passing a State whose bundle
// was lost breaks the chain. When
// its snapshot commit is no longer available (ObjectDir lost, repository
// rewritten and pruned) or the chain reached MaxChain, the bundle is full.
func Capture(ctx context.Context, repoDir string, prev *State, opts CaptureOptions) (*Result, error) {
	if opts.MaxChain <= 0 {
		opts.MaxChain = DefaultMaxChain
	}
	if opts.MaxObjectDirBytes <= 0 {
		opts.MaxObjectDirBytes = DefaultMaxObjectDirBytes
	}
	if !filepath.IsAbs(opts.ObjectDir) || opts.ScratchDir == "" {
		return nil, fmt.Errorf("capture of %s: ObjectDir must be an absolute path and ScratchDir set (got %q, %q)", repoDir, opts.ObjectDir, opts.ScratchDir)
	}
	r, err := openRepo(ctx, repoDir)
	if err != nil {
		return nil, err
	}
	c := &capturer{repo: r, prev: prev, opts: opts}
	res, err := c.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("capture of git repository %s: %w", r.top, err)
	}
	if opts.ListIgnored {
		res.Ignored, res.IgnoredTruncated, res.IgnoredErr = r.ignored(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return res, nil
}

// repo locates a repository's parts, all as absolute paths.
type repo struct {
	top       string // working tree root
	gitDir    string // per-worktree git dir (HEAD, index, operation state)
	commonDir string // shared git dir (refs, config, objects)
	objects   string // object directory
	format    string // object format
	// filtersOff switches off the filter drivers the repository defines.
	filtersOff [][2]string
	// localConfig is the repository's own config file, as
	// `git config --local -z --list` would print it ("key\nvalue" each).
	localConfig []string
}

func openRepo(ctx context.Context, dir string) (*repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if !IsRepo(abs) {
		if fi, err := os.Lstat(filepath.Join(abs, ".git")); err == nil && fi.IsDir() {
			return nil, fmt.Errorf("%s: its .git directory has no HEAD, so git does not recognise it as a repository", abs)
		}
		return nil, fmt.Errorf("%s is not the root of a git working tree (no .git there)", abs)
	}
	out, err := gitCmd{dir: abs}.run(ctx, nil, "rev-parse", "--path-format=absolute",
		"--show-toplevel", "--absolute-git-dir", "--git-common-dir", "--git-path", "objects", "--show-object-format")
	if err != nil {
		return nil, fmt.Errorf("open git repository %s: %w", abs, err)
	}
	f := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(f) != 5 {
		return nil, fmt.Errorf("open git repository %s: unexpected rev-parse output %q", abs, out)
	}
	r := &repo{top: f[0], gitDir: f[1], commonDir: f[2], objects: f[3], format: f[4]}
	// The repository's config, which the agent writes, may name a filter
	// driver that any command reading the working tree or the index would
	// run: every command in it runs with those drivers switched off.
	if r.filtersOff, r.localConfig, err = readConfig(ctx, gitCmd{dir: abs, env: []string{"GIT_DIR=" + r.gitDir}}, abs, r.commonDir); err != nil {
		return nil, fmt.Errorf("open git repository %s: %w", abs, err)
	}
	want, err1 := filepath.EvalSymlinks(abs)
	got, err2 := filepath.EvalSymlinks(r.top)
	if err1 != nil || err2 != nil || want != got {
		return nil, fmt.Errorf("%s is inside the git working tree %s, not its root; capture the root", abs, r.top)
	}
	r.top = abs
	return r, nil
}

// git runs commands against the user's repository, reading only.
func (r *repo) git() gitCmd {
	return gitCmd{dir: r.top, env: []string{"GIT_DIR=" + r.gitDir, "GIT_WORK_TREE=" + r.top}, config: r.filtersOff}
}

type capturer struct {
	repo *repo
	prev *State
	opts CaptureOptions
	tmp  string // private temp dir under ScratchDir
	// unborn are the embedded repositories without commits addAll left out.
	unborn []string
}

// objEnv makes git write new objects to ObjectDir and find the user's
// objects through an alternate, and use index as its index.
func (c *capturer) objEnv(index string) gitCmd {
	// Loose objects in ObjectDir are a short-lived cache (emptied with every
	// new chain) and the bundle compresses what it packs: storing them
	// uncompressed makes a capture of a large changed file several times
	// faster.
	g := c.repo.git().with(
		"GIT_OBJECT_DIRECTORY="+c.opts.ObjectDir,
		"GIT_ALTERNATE_OBJECT_DIRECTORIES="+quoteAlternate(c.repo.objects),
	).withConfig([2]string{"core.looseCompression", "0"})
	if index != "" {
		g = g.with("GIT_INDEX_FILE=" + index)
	}
	return g
}

// refsView is what HEAD and the refs were at one moment.
type refsView struct {
	head  Head
	refs  []Ref
	stash []StashEntry
}

func (c *capturer) run(ctx context.Context) (*Result, error) {
	if err := os.MkdirAll(c.opts.ScratchDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.opts.ObjectDir, 0o700); err != nil {
		return nil, err
	}
	removeStale(c.opts.ScratchDir)
	tmp, err := os.MkdirTemp(c.opts.ScratchDir, "gitstate-capture-")
	if err != nil {
		return nil, err
	}
	c.tmp = tmp
	defer os.RemoveAll(tmp)

	version, err := gitVersion(ctx)
	if err != nil {
		return nil, err
	}

	// Decide first whether this capture continues prev's chain: a new chain
	// starts from an empty ObjectDir, which is what keeps it bounded.
	full := c.prev == nil || c.prev.Version != StateVersion || c.prev.ObjectFormat != c.repo.format ||
		c.prev.ChainDepth+1 > c.opts.MaxChain || dirSize(c.opts.ObjectDir) > c.opts.MaxObjectDirBytes ||
		!c.hasCommit(ctx, c.prev.Snapshot)
	if full {
		if err := emptyDir(c.opts.ObjectDir); err != nil {
			return nil, fmt.Errorf("reset private object directory: %w", err)
		}
	}

	st := State{Version: StateVersion, GitVersion: version, ObjectFormat: c.repo.format}
	var view *refsView
	// A commit or checkout by the agent while we read would pair an index
	// with a HEAD it never had; read the refs before and after the trees and
	// retry when they moved. A state that still moved after a few tries is
	// consistent enough to restore (its objects all exist), so keep it.
	for attempt := 0; ; attempt++ {
		before, err := c.readRefs(ctx)
		if err != nil {
			return nil, err
		}
		if err := c.readTrees(ctx, &st); err != nil {
			return nil, err
		}
		after, err := c.readRefs(ctx)
		if err != nil {
			return nil, err
		}
		view = after
		if reflect.DeepEqual(before, after) || attempt == 2 {
			break
		}
	}
	st.Head, st.Refs, st.Stash = view.head, view.refs, view.stash
	if err := c.readMeta(ctx, &st); err != nil {
		return nil, err
	}

	if c.prev != nil && sameContent(c.prev, &st) {
		return &Result{State: *c.prev, Unborn: c.unborn}, nil
	}

	// Commits: the index, the unmerged entries, then the snapshot.
	g := c.objEnv("")
	var headParent []string
	if !st.Head.Unborn() {
		headParent = []string{"-p", st.Head.Commit}
	}
	st.Staged, err = commitTree(ctx, g, st.StagedTree, "tether: staged (index)", headParent...)
	if err != nil {
		return nil, err
	}
	parents := append(append([]string{}, headParent...), "-p", st.Staged)
	if st.Conflicts != "" {
		// readTrees left the tree id in Conflicts; replace it by a commit.
		if st.Conflicts, err = commitTree(ctx, g, st.Conflicts, "tether: unmerged index entries"); err != nil {
			return nil, err
		}
		parents = append(parents, "-p", st.Conflicts)
	}
	if !full {
		parents = append(parents, "-p", c.prev.Snapshot)
		st.ChainDepth = c.prev.ChainDepth + 1
	}
	st.Snapshot, err = commitTree(ctx, g, st.WorktreeTree, "tether: snapshot (working tree)", parents...)
	if err != nil {
		return nil, err
	}

	bundle, err := c.bundle(ctx, &st, full)
	if err != nil {
		return nil, err
	}
	return &Result{State: st, Bundle: bundle, Full: full, Unborn: c.unborn}, nil
}

// hasCommit reports whether the commit is in ObjectDir or the repository.
func (c *capturer) hasCommit(ctx context.Context, id string) bool {
	if id == "" {
		return false
	}
	_, err := c.objEnv("").run(ctx, nil, "cat-file", "-e", id+"^{commit}")
	return err == nil
}

// readRefs reads HEAD, every ref and the stash stack.
func (c *capturer) readRefs(ctx context.Context) (*refsView, error) {
	v := &refsView{}
	head, err := os.ReadFile(filepath.Join(c.repo.gitDir, "HEAD"))
	if err != nil {
		return nil, fmt.Errorf("read HEAD: %w", err)
	}
	hs := strings.TrimSpace(string(head))
	if strings.HasPrefix(hs, "ref:") {
		v.head.Branch = strings.TrimSpace(strings.TrimPrefix(hs, "ref:"))
	} else {
		v.head.Commit = hs
		v.head.Checkout = lastCheckout(filepath.Join(c.repo.gitDir, "logs", "HEAD"))
	}
	g := c.repo.git()
	out, err := g.run(ctx, nil, "for-each-ref", "--format=%(objectname)%09%(symref)%09%(refname)")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 || strings.HasPrefix(f[2], "refs/tether/") {
			continue
		}
		r := Ref{Name: f[2], Target: f[0]}
		if f[1] != "" {
			r = Ref{Name: f[2], Symref: f[1]}
		}
		v.refs = append(v.refs, r)
	}
	sort.Slice(v.refs, func(i, j int) bool { return v.refs[i].Name < v.refs[j].Name })
	// HEAD's commit comes from the same ref listing as the refs (a second
	// look could see a newer commit than the branch recorded). A branch that
	// is itself a symbolic ref is followed within the listing.
	if v.head.Branch != "" {
		name := v.head.Branch
		for hops := 0; hops < 5; hops++ {
			r, ok := findRef(v.refs, name)
			if !ok || r.Symref == "" {
				v.head.Commit = r.Target
				break
			}
			name = r.Symref
		}
	}
	for _, r := range v.refs {
		if r.Name != "refs/stash" {
			continue
		}
		out, err := g.run(ctx, nil, "log", "-g", "-z", "--format=%H%x00%gs", "refs/stash", "--")
		if err != nil {
			return nil, err
		}
		f := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
		for i := 0; i+1 < len(f); i += 2 {
			v.stash = append([]StashEntry{{Commit: f[i], Message: f[i+1]}}, v.stash...)
		}
	}
	return v, nil
}

func findRef(refs []Ref, name string) (Ref, bool) {
	for _, r := range refs {
		if r.Name == name {
			return r, true
		}
	}
	return Ref{}, false
}

// lastCheckout returns the message of the last checkout entry of a reflog,
// reading only its tail.
func lastCheckout(reflog string) string {
	f, err := os.Open(reflog)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	const tail = 64 << 10
	off := fi.Size() - tail
	if off < 0 {
		off = 0
	}
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if _, msg, ok := strings.Cut(lines[i], "\t"); ok && strings.HasPrefix(msg, "checkout: moving from ") {
			return sanitizeLine(msg)
		}
	}
	return ""
}

// sanitizeLine keeps a reflog message to one line without credentials.
func sanitizeLine(s string) string {
	return strings.ReplaceAll(string(sanitizeText([]byte(s))), "\n", " ")
}

// readTrees writes the staged tree, the unmerged entries and the working
// tree into ObjectDir and records their ids and the gitlinks in st.
func (c *capturer) readTrees(ctx context.Context, st *State) error {
	index := filepath.Join(c.tmp, "index")
	os.Remove(index)
	if err := copyIndex(filepath.Join(c.repo.gitDir, "index"), index); err != nil {
		return err
	}
	g := c.objEnv(index)
	var err error

	if st.IntentToAdd, err = intentToAdd(ctx, g, index); err != nil {
		return err
	}
	unmerged, err := g.run(ctx, nil, "ls-files", "-u", "-z")
	if err != nil {
		return err
	}
	st.Conflicts = ""
	if len(unmerged) == 0 {
		if st.StagedTree, err = g.line(ctx, "write-tree"); err != nil {
			return err
		}
	} else if err := c.splitUnmerged(ctx, index, st); err != nil {
		return err
	}

	st.Warnings = nil
	left, err := c.addAll(ctx, g)
	if err != nil {
		return err
	}
	// Each is the caller's to capture as a repository of its own (Result.Unborn).
	c.unborn = left
	if st.WorktreeTree, err = g.line(ctx, "write-tree"); err != nil {
		return err
	}

	// Gitlinks: submodules and embedded repositories, captured separately.
	out, err := g.run(ctx, nil, "ls-files", "-s", "-z")
	if err != nil {
		return err
	}
	st.Submodules = nil
	for _, e := range bytes.Split(out, []byte{0}) {
		if !bytes.HasPrefix(e, []byte("160000 ")) {
			continue
		}
		meta, path, ok := strings.Cut(string(e), "\t")
		f := strings.Fields(meta)
		if ok && len(f) == 3 {
			st.Submodules = append(st.Submodules, Submodule{Path: path, Commit: f[1]})
		}
	}
	return nil
}

var embeddedUnborn = regexp.MustCompile(`error: '([^']+)' does not have a commit checked out`)

// addAll stages the whole working tree into the temp index. An embedded
// repository without commits cannot be a gitlink; it is left out (its files
// are the embedded repository's own business) instead of failing.
func (c *capturer) addAll(ctx context.Context, g gitCmd) (left []string, err error) {
	args := []string{"add", "-A", "--", "."}
	vanished := 0
	for i := 0; i < 20; i++ {
		_, err := g.run(ctx, nil, args...)
		if err == nil {
			return left, nil
		}
		var ge *gitError
		if !errors.As(err, &ge) {
			return nil, err
		}
		m := embeddedUnborn.FindAllStringSubmatch(ge.stderr, -1)
		if len(m) == 0 {
			// A file the agent deleted between git's directory scan and its
			// read; a failed add leaves the temp index as it was, so try
			// again.
			if strings.Contains(ge.stderr, "unable to index file") && vanished < 3 {
				vanished++
				continue
			}
			return nil, err
		}
		for _, x := range m {
			p := strings.TrimSuffix(x[1], "/")
			left = append(left, p)
			args = append(args, ":(exclude,literal)"+p)
		}
	}
	return nil, fmt.Errorf("git add -A: too many embedded repositories without commits")
}

// intentToAdd lists the entries of the index that `git add -N` made: the
// staged tree cannot hold them. They need an index of version 3 or more
// (extended flags), so version 2 indexes, the usual kind, cost nothing.
func intentToAdd(ctx context.Context, g gitCmd, index string) ([]string, error) {
	hdr := make([]byte, 8)
	f, err := os.Open(index)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	_, err = io.ReadFull(f, hdr)
	f.Close()
	if err != nil || string(hdr[:4]) != "DIRC" || binary.BigEndian.Uint32(hdr[4:]) < 3 {
		return nil, nil
	}
	out, err := g.run(ctx, nil, "ls-files", "-z", "--debug")
	if err != nil {
		return nil, err
	}
	// Each entry is "<path>\0" followed by five debug lines, the last
	// holding "flags: <hex>".
	parts := strings.Split(string(out), "\x00")
	var paths []string
	path := parts[0]
	for _, chunk := range parts[1:] {
		n, i := 0, 0
		for i < len(chunk) && n < 5 {
			if chunk[i] == '\n' {
				n++
			}
			i++
		}
		m := debugFlags.FindStringSubmatch(chunk[:i])
		if m != nil {
			if fl, err := strconv.ParseUint(m[1], 16, 32); err == nil && fl&ceIntentToAdd != 0 {
				paths = append(paths, path)
			}
		}
		path = chunk[i:]
	}
	return paths, nil
}

const ceIntentToAdd = 0x20000000

var debugFlags = regexp.MustCompile(`flags: ([0-9a-f]+)\n?$`)

// splitUnmerged writes the stage-0 entries of the index as the staged tree
// and the unmerged entries (stages 1-3) as a tree of "<stage>/<path>", since
// write-tree refuses an index with conflicts.
func (c *capturer) splitUnmerged(ctx context.Context, index string, st *State) error {
	g := c.objEnv(index)
	out, err := g.run(ctx, nil, "ls-files", "-s", "-z")
	if err != nil {
		return err
	}
	var stage0, conflicts bytes.Buffer
	for _, e := range bytes.Split(out, []byte{0}) {
		meta, path, ok := strings.Cut(string(e), "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 {
			continue
		}
		if f[2] == "0" {
			fmt.Fprintf(&stage0, "%s %s 0\t%s\x00", f[0], f[1], path)
		} else {
			fmt.Fprintf(&conflicts, "%s %s 0\t%s/%s\x00", f[0], f[1], f[2], path)
		}
	}
	mk := func(name string, entries []byte) (string, error) {
		gi := c.objEnv(filepath.Join(c.tmp, name))
		if _, err := gi.run(ctx, entries, "update-index", "-z", "--index-info"); err != nil {
			return "", err
		}
		return gi.line(ctx, "write-tree")
	}
	if st.StagedTree, err = mk("staged.index", stage0.Bytes()); err != nil {
		return err
	}
	if st.Conflicts, err = mk("conflicts.index", conflicts.Bytes()); err != nil {
		return err
	}
	st.ConflictsTree = st.Conflicts
	return nil
}

// opFiles are the per-worktree state files of operations in progress.
var opFiles = []string{
	"MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "AUTO_MERGE", "SQUASH_MSG",
	"CHERRY_PICK_HEAD", "REVERT_HEAD", "REBASE_HEAD", "ORIG_HEAD",
	"BISECT_START", "BISECT_LOG", "BISECT_TERMS", "BISECT_NAMES",
	"BISECT_ANCESTORS_OK", "BISECT_EXPECTED_REV", "BISECT_FIRST_PARENT", "BISECT_HEAD",
}

// opDirs are the per-worktree state directories of operations in progress.
var opDirs = []string{"rebase-merge", "rebase-apply", "sequencer"}

// maxOpBytes bounds the operation state kept in a State (rebase-apply can
// hold patches); beyond it the operation is reported, not recorded.
const maxOpBytes = 8 << 20

// maxHookBytes bounds one hook kept in a State.
const maxHookBytes = 1 << 20

// validHookName accepts plain file names only.
func validHookName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\\\x00")
}

// infoFiles are files of the common git dir's info/ that change what git shows.
var infoFiles = []string{"exclude", "attributes"}

// readMeta records config, info files, shallow commits and any operation in
// progress. Config is what AllowedConfig accepts, without credentials; two
// keys outside it are read only to warn: core.sparsecheckout and
// extensions.partialclone.
func (c *capturer) readMeta(ctx context.Context, st *State) error {
	for _, kv := range c.repo.localConfig {
		k, v, _ := strings.Cut(kv, "\n")
		switch {
		case k == "core.sparsecheckout" && v == "true":
			st.Warnings = append(st.Warnings, "sparse checkout is on: files outside the sparse-checkout patterns are captured from the index and restored into the working tree, and the sparse-checkout patterns are not restored")
		case k == "extensions.partialclone":
			st.Warnings = append(st.Warnings, "partial clone: objects the clone never fetched cannot be bundled; a capture needs them and may fail or fetch them from the promisor remote")
		case AllowedConfig(k, v):
			st.Config = append(st.Config, ConfigEntry{Key: k, Value: CleanConfigValue(v)})
		}
	}

	for _, name := range infoFiles {
		b, err := os.ReadFile(filepath.Join(c.repo.commonDir, "info", name))
		if err == nil {
			if st.Info == nil {
				st.Info = map[string][]byte{}
			}
			st.Info[name] = b
		}
	}
	if ents, err := os.ReadDir(filepath.Join(c.repo.commonDir, "hooks")); err == nil {
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".sample") || !validHookName(e.Name()) {
				continue
			}
			p := filepath.Join(c.repo.commonDir, "hooks", e.Name())
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxHookBytes {
				continue
			}
			if b, err := os.ReadFile(p); err == nil {
				if st.Hooks == nil {
					st.Hooks = map[string][]byte{}
				}
				st.Hooks[e.Name()] = b
			}
		}
	}
	c.readReflogs(st)
	if b, err := os.ReadFile(filepath.Join(c.repo.commonDir, "shallow")); err == nil {
		st.Shallow = strings.Fields(string(b))
	}

	op, err := readOperation(c.repo.gitDir)
	if err != nil {
		return err
	}
	if op != nil && op.Files == nil {
		st.Warnings = append(st.Warnings, fmt.Sprintf("a %s is in progress and its state is larger than %d bytes: it is not recorded; the restored repository shows the working tree and index, not the %s", op.Kind, maxOpBytes, op.Kind))
		op = nil
	}
	st.Operation = op
	return nil
}

// readOperation reads the state of the operation in progress, nil if none.
func readOperation(gitDir string) (*Operation, error) {
	exists := func(p string) bool { _, err := os.Lstat(filepath.Join(gitDir, p)); return err == nil }
	kind := ""
	switch {
	case exists("rebase-merge"):
		kind = "rebase-merge"
	case exists("rebase-apply"):
		kind = "rebase-apply"
	case exists("MERGE_HEAD"):
		kind = "merge"
	case exists("CHERRY_PICK_HEAD"):
		kind = "cherry-pick"
	case exists("REVERT_HEAD"):
		kind = "revert"
	case exists("sequencer"):
		kind = "sequencer"
	case exists("BISECT_LOG"):
		kind = "bisect"
	default:
		return nil, nil
	}
	op := &Operation{Kind: kind, Files: map[string][]byte{}}
	total := 0
	add := func(rel string) error {
		b, err := os.ReadFile(filepath.Join(gitDir, filepath.FromSlash(rel)))
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		total += len(b)
		op.Files[rel] = sanitizeText(b)
		return nil
	}
	for _, f := range opFiles {
		if err := add(f); err != nil {
			return nil, err
		}
	}
	for _, d := range opDirs {
		root := filepath.Join(gitDir, d)
		err := filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if !de.Type().IsRegular() {
				return nil
			}
			rel, _ := filepath.Rel(gitDir, p)
			return add(filepath.ToSlash(rel))
		})
		if err != nil {
			return nil, fmt.Errorf("read %s state: %w", kind, err)
		}
	}
	if total > maxOpBytes {
		op.Files = nil
	}
	return op, nil
}

// sameContent reports whether b records the same repository state as a.
func sameContent(a, b *State) bool {
	return a.Version == b.Version && a.ObjectFormat == b.ObjectFormat &&
		a.WorktreeTree == b.WorktreeTree && a.StagedTree == b.StagedTree &&
		a.ConflictsTree == b.ConflictsTree && a.Head == b.Head &&
		reflect.DeepEqual(a.IntentToAdd, b.IntentToAdd) &&
		reflect.DeepEqual(a.Refs, b.Refs) && reflect.DeepEqual(a.Stash, b.Stash) &&
		reflect.DeepEqual(a.Reflogs, b.Reflogs) &&
		reflect.DeepEqual(a.Config, b.Config) && reflect.DeepEqual(a.Info, b.Info) &&
		reflect.DeepEqual(a.Hooks, b.Hooks) &&
		reflect.DeepEqual(a.Shallow, b.Shallow) && reflect.DeepEqual(a.Operation, b.Operation) &&
		reflect.DeepEqual(a.Submodules, b.Submodules) && reflect.DeepEqual(a.Warnings, b.Warnings)
}

func commitTree(ctx context.Context, g gitCmd, tree, msg string, parents ...string) (string, error) {
	args := append([]string{"commit-tree", tree, "-m", msg}, parents...)
	return g.with(identity...).line(ctx, args...)
}

var hexID = regexp.MustCompile(`\b[0-9a-f]{40}(?:[0-9a-f]{24})?\b`)

// bundle writes the bundle of this capture: every ref of the repository,
// the snapshot, the stash stack and the objects named by the operation in
// progress, minus what prev's chain already holds when incremental. It uses a
// throwaway git dir whose refs name those objects (a bundle needs refs) and
// whose objects are ObjectDir plus the user's objects as an alternate.
func (c *capturer) bundle(ctx context.Context, st *State, full bool) (string, error) {
	gd := filepath.Join(c.tmp, "bundle.git")
	for _, d := range []string{"refs", "objects"} {
		if err := os.MkdirAll(filepath.Join(gd, d), 0o700); err != nil {
			return "", err
		}
	}
	cfg := "[core]\n\trepositoryformatversion = 0\n\tbare = true\n"
	if c.repo.format != "sha1" {
		cfg = "[core]\n\trepositoryformatversion = 1\n\tbare = true\n[extensions]\n\tobjectformat = " + c.repo.format + "\n"
	}
	files := map[string]string{"HEAD": "ref: refs/tether/snapshot\n", "config": cfg}
	if len(st.Shallow) > 0 {
		files["shallow"] = strings.Join(st.Shallow, "\n") + "\n"
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(gd, name), []byte(content), 0o600); err != nil {
			return "", err
		}
	}

	g := gitCmd{dir: gd, env: []string{
		"GIT_DIR=" + gd,
		"GIT_OBJECT_DIRECTORY=" + c.opts.ObjectDir,
		"GIT_ALTERNATE_OBJECT_DIRECTORIES=" + quoteAlternate(c.repo.objects),
	}}

	refs := map[string]string{"refs/tether/snapshot": st.Snapshot}
	for _, r := range st.Refs {
		if r.Target != "" {
			refs[r.Name] = r.Target
		}
	}
	// Commits reachable only from a reflog (a reset's, an amend's) are
	// kept too; an entry whose commit git already pruned names nothing. An
	// incremental bundle keeps only the commits of entries written since
	// prev: the chain holds those prev's reflogs named (its bundles kept
	// them), and naming up to thousands of them again, as refs here and as
	// exclusions below, made every capture of a busy repository walk them
	// all (0.2 s of git per capture with 1000 reflog entries).
	keep := reflogIDs(st)
	if !full {
		keep = without(keep, reflogIDs(c.prev))
	}
	for _, s := range st.Stash {
		keep = append(keep, s.Commit)
	}
	if st.Operation != nil {
		for _, b := range st.Operation.Files {
			keep = append(keep, hexID.FindAllString(string(b), -1)...)
		}
	}
	// Everything reachable from the previous snapshot and the previous
	// refs is in the chain already: an incremental bundle excludes it. Only
	// what still exists here can be kept or excluded (an entry whose commit
	// git pruned, a ref the user since deleted and pruned, cannot be
	// walked); one cat-file asks for both lists. (prev's reflog-only
	// commits are in the chain too, but are not excluded: what is new is
	// rarely built on them, and then costs a few objects stored twice,
	// where excluding them all costs a walk of each.)
	var neg []string
	if !full {
		neg = append(neg, c.prev.Snapshot)
		for _, r := range c.prev.Refs {
			if r.Target != "" {
				neg = append(neg, r.Target)
			}
		}
		for _, s := range c.prev.Stash {
			neg = append(neg, s.Commit)
		}
	}
	found, err := existing(ctx, g, append(append([]string{}, keep...), neg...))
	if err != nil {
		return "", err
	}
	keep, neg = present(keep, found), present(neg, found)
	for i, id := range keep {
		refs[fmt.Sprintf("refs/tether/keep/%d", i)] = id
	}
	var packed strings.Builder
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&packed, "%s %s\n", refs[n], n)
	}
	if err := os.WriteFile(filepath.Join(gd, "packed-refs"), []byte(packed.String()), 0o600); err != nil {
		return "", err
	}

	args := []string{"bundle", "create", "--quiet"}
	tmpBundle := filepath.Join(c.tmp, "out.bundle")
	args = append(args, tmpBundle, "--all")
	for _, id := range neg {
		args = append(args, "^"+id)
	}
	if _, err := g.run(ctx, nil, args...); err != nil {
		return "", err
	}
	final := filepath.Join(c.opts.ScratchDir, st.Snapshot+".bundle")
	if err := os.Rename(tmpBundle, final); err != nil {
		return "", err
	}
	return final, nil
}

// without returns the ids of ids that are not in drop.
func without(ids, drop []string) []string {
	d := make(map[string]bool, len(drop))
	for _, id := range drop {
		d[id] = true
	}
	out := ids[:0:0]
	for _, id := range ids {
		if !d[id] {
			out = append(out, id)
		}
	}
	return out
}

// present returns, in order and once each, the objects that ids name, as
// existing found them (found maps each asked id to its object).
func present(ids []string, found map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if o, ok := found[id]; ok && !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out
}

// existing asks git which of ids name an existing object: it maps each
// that does to the object's full id.
func existing(ctx context.Context, g gitCmd, ids []string) (map[string]string, error) {
	seen := map[string]bool{}
	var asked []string
	var in bytes.Buffer
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			asked = append(asked, id)
			in.WriteString(id + "\n")
		}
	}
	if len(asked) == 0 {
		return nil, nil
	}
	out, err := g.run(ctx, in.Bytes(), "cat-file", "--batch-check=%(objectname)")
	if err != nil {
		return nil, err
	}
	// One line per line asked: the object's id, or "<asked> missing" (or
	// "ambiguous").
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(asked) {
		return nil, fmt.Errorf("git cat-file --batch-check: %d answers to %d objects", len(lines), len(asked))
	}
	res := map[string]string{}
	for i, line := range lines {
		if line != "" && !strings.Contains(line, " ") {
			res[asked[i]] = line
		}
	}
	return res, nil
}

// copyIndex copies the user's index, keeping its modification time: git
// compares file times against the index's own time to spot files changed in
// the same second the index was written ("racy git"); a fresher copy would
// hide those changes. A missing index (no commits, nothing staged) stays
// missing.
func copyIndex(src, dst string) error {
	in, err := os.Open(src)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy index: %w", err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}

// quoteAlternate makes a path safe in GIT_ALTERNATE_OBJECT_DIRECTORIES,
// which is colon-separated: git reads an entry that starts with a double
// quote as a C-quoted string.
func quoteAlternate(p string) string {
	if !strings.ContainsAny(p, ":\"\\") {
		return p
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(p) + `"`
}

// removeStale removes temp dirs that killed captures left in scratch. Only
// old ones: a concurrent capture of another repository may share scratch.
func removeStale(scratch string) {
	old, _ := filepath.Glob(filepath.Join(scratch, "gitstate-capture-*"))
	for _, d := range old {
		if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(d)
		}
	}
}

// dirSize returns the bytes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// emptyDir removes everything inside dir.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// readConfig reads the repository's config, with its includes, in one git
// process: the overrides that switch off every filter driver it defines
// (an empty clean, smudge and process command is no command, and a filter
// that is not required may be missing; command-line config wins over the
// repository's), and the entries of its own config file (commonDir/config,
// what `git config --local -z --list` prints) for State.Config. dir is where
// g runs, for the relative paths git prints as origins.
func readConfig(ctx context.Context, g gitCmd, dir, commonDir string) (filtersOff [][2]string, local []string, err error) {
	out, err := g.run(ctx, nil, "config", "-z", "--includes", "--show-origin", "--list")
	if err != nil {
		return nil, nil, err
	}
	localFile, lerr := os.Stat(filepath.Join(commonDir, "config"))
	isLocal := map[string]bool{} // origin -> it is the local config file
	local = []string{}
	drivers := map[string]bool{}
	// Each entry is "<origin>\0<key>\n<value>\0", or "<origin>\0<key>\0"
	// for a key without a value.
	f := strings.Split(string(out), "\x00")
	for i := 0; i+1 < len(f); i += 2 {
		origin, kv := f[i], f[i+1]
		if path, ok := strings.CutPrefix(origin, "file:"); ok && lerr == nil {
			l, known := isLocal[origin]
			if !known {
				if !filepath.IsAbs(path) {
					path = filepath.Join(dir, path)
				}
				fi, err := os.Stat(path)
				l = err == nil && os.SameFile(fi, localFile)
				isLocal[origin] = l
			}
			if l {
				local = append(local, kv)
			}
		}
		k, _, _ := strings.Cut(kv, "\n")
		if !strings.HasPrefix(strings.ToLower(k), "filter.") {
			continue
		}
		first, last := strings.Index(k, "."), strings.LastIndex(k, ".")
		if first < 0 || last <= first {
			continue
		}
		drv := k[first+1 : last]
		if drivers[drv] {
			continue
		}
		drivers[drv] = true
		for _, v := range []string{"clean", "smudge", "process"} {
			filtersOff = append(filtersOff, [2]string{"filter." + drv + "." + v, ""})
		}
		filtersOff = append(filtersOff, [2]string{"filter." + drv + ".required", "false"})
	}
	return filtersOff, local, nil
}
