package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/iox"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/statesync"
	"github.com/tether-dev/tether/internal/store"

	"github.com/tether-dev/tether/internal/cliutil"
)

// sessionFlags are the flags every command that addresses one session's
// snapshots shares.
type sessionFlags struct {
	store     string
	namespace string
	session   string
}

func (f *sessionFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.store, "store", envOr("TETHER_STORE", ""), "store URL: file:///abs/dir, s3://bucket?endpoint=...&use_path_style=true, gs:// (-tags tether_gcs), azblob:// (-tags tether_azblob) (env TETHER_STORE; default: the local directory "+store.DefaultURL()+")")
	c.Flags().StringVar(&f.namespace, "namespace", envOr("TETHER_NAMESPACE", "default"), "namespace of the session (env TETHER_NAMESPACE)")
	c.Flags().StringVar(&f.session, "session", envOr("TETHER_SESSION", ""), "session name, a DNS-1123 label (env TETHER_SESSION)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// open validates the names first (a usage error, exit 2), then opens the store.
func (f *sessionFlags) open(ctx context.Context) (*snapshot.Repo, func(), error) {
	if f.session == "" {
		return nil, nil, usagef("--session is required")
	}
	if err := snapshot.ValidateName("namespace", f.namespace); err != nil {
		return nil, nil, cliutil.Usage(err)
	}
	if err := snapshot.ValidateName("session", f.session); err != nil {
		return nil, nil, cliutil.Usage(err)
	}
	u := f.store
	if u == "" {
		u = store.DefaultURL()
	}
	st, err := store.Open(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	// A hung connection becomes a retry instead of a hang.
	st = store.WithRetry(st, store.RetryOptions{AttemptTimeout: 2 * time.Minute})
	repo, err := snapshot.OpenRepo(st, f.namespace, f.session)
	if err != nil {
		st.Close()
		return nil, nil, cliutil.Usage(err)
	}
	return repo, func() { st.Close() }, nil
}

// with validates the flags, opens the store and runs fn with the session's
// repo and a context that SIGINT or SIGTERM cancels.
func (f *sessionFlags) with(fn func(ctx context.Context, repo *snapshot.Repo) error) error {
	ctx, cancel := signalContext()
	defer cancel()
	repo, closeStore, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	return fn(ctx, repo)
}

// signalContext is cancelled on SIGINT or SIGTERM, so an interrupted command
// stops cleanly (a save never writes its manifest once cancelled).
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func defaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "tether")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "tether")
	}
	return ""
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newSnapshotCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, list, restore, verify and prune a session's workspace snapshots",
	}
	c.AddCommand(newSnapshotSaveCmd(), newSnapshotRestoreCmd(), newSnapshotLsCmd(), newSnapshotVerifyCmd(), newSnapshotPruneCmd())
	return c
}

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", c.CommandPath(), args)
	}
	return nil
}

func newSnapshotSaveCmd() *cobra.Command {
	var (
		sf          sessionFlags
		workspace   string
		cacheDir    string
		asJSON      bool
		keepIgnored int64
		envErr      error
	)
	c := &cobra.Command{
		Use:   "save",
		Short: "Save the workspace as a new snapshot",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if envErr != nil {
				return envErr
			}
			if workspace == "" {
				return usagef("--workspace is required")
			}
			return sf.with(func(ctx context.Context, repo *snapshot.Repo) error {
				// A one-off save joins the session's current writer epoch:
				// it must not take the session over from a running sync.
				join := func(ctx context.Context) (*snapshot.Writer, error) { return snapshot.JoinNewest(ctx, repo) }
				saver, err := snapshot.NewSaver(repo, workspace, snapshot.SaveOptions{CacheDir: cacheDir, ConsistentCopy: statesync.SQLiteCopier(""), Writer: join, KeepIgnored: keepIgnored})
				if err != nil {
					return err
				}
				defer saver.Close()
				st, err := saver.Save(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.OutOrStdout(), st)
				}
				fmt.Fprintf(c.OutOrStdout(), "snapshot %s saved: %d files, %s scanned, %s read, %s uploaded in %d objects, %d ms\n",
					st.ID, st.Files, human(st.BytesScanned), human(st.BytesRead), human(st.BytesUploaded), st.ObjectsUploaded, st.DurationMs)
				printLeftOut(c.OutOrStdout(), st.LeftOut, len(st.LeftOut))
				for _, r := range st.ReposAsFiles {
					fmt.Fprintf(c.OutOrStdout(), "repository %s saved file by file (.git included): git could not capture it: %s\n", snapshot.DisplayPath(r.Path), r.Reason)
				}
				return nil
			})
		},
	}
	sf.register(c)
	c.Flags().StringVar(&workspace, "workspace", "", "workspace directory to save (required)")
	c.Flags().StringVar(&cacheDir, "cache-dir", envOr("TETHER_CACHE_DIR", defaultCacheDir()), "where to keep the stat cache that lets a save skip unchanged files (env TETHER_CACHE_DIR; empty: none)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	keepIgnoredVar(c, &keepIgnored, &envErr)
	return c
}

func newSnapshotRestoreCmd() *cobra.Command {
	var (
		sf        sessionFlags
		workspace string
		id        string
		asJSON    bool
		keepSUID  bool
	)
	c := &cobra.Command{
		Use:   "restore",
		Short: "Restore a snapshot into an empty or missing directory",
		Long: `Restore fetches a snapshot (the newest unless --snapshot is given), checks every
chunk against its hash, builds it in a staging directory inside the target and
only then moves it into place. The target must be missing or empty.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if workspace == "" {
				return usagef("--workspace is required")
			}
			return sf.with(func(ctx context.Context, repo *snapshot.Repo) error {
				st, err := snapshot.Restore(ctx, repo, workspace, snapshot.RestoreOptions{Snapshot: id, KeepSetuid: keepSUID})
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.OutOrStdout(), st)
				}
				fmt.Fprintf(c.OutOrStdout(), "snapshot %s restored into %s: %d files, %s, %d ms\n", st.ID, workspace, st.Files, human(st.Bytes), st.DurationMs)
				for _, r := range st.Repos {
					if r.Mode == snapshot.RepoModeFiles {
						fmt.Fprintf(c.OutOrStdout(), "repository %s: restored file by file, .git included (the save could not capture it as git state: %s)\n", snapshot.DisplayPath(r.Path), r.Reason)
					} else {
						fmt.Fprintf(c.OutOrStdout(), "repository %s: restored from its git state\n", snapshot.DisplayPath(r.Path))
					}
				}
				printLeftOut(c.OutOrStdout(), st.LeftOutListed, st.LeftOut)
				if st.SetuidDropped > 0 {
					fmt.Fprintf(c.OutOrStdout(), "%d files restored without their setuid or setgid bits (--keep-setuid keeps them)\n", st.SetuidDropped)
				}
				return nil
			})
		},
	}
	sf.register(c)
	c.Flags().StringVar(&workspace, "workspace", "", "directory to restore into; must be missing or empty (required)")
	c.Flags().StringVar(&id, "snapshot", "", "snapshot id to restore (default: the newest)")
	c.Flags().BoolVar(&keepSUID, "keep-setuid", false, keepSetuidUsage)
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	return c
}

// keepSetuidUsage is the help of --keep-setuid (restore and hydrate).
const keepSetuidUsage = "restore the setuid and setgid bits of files as saved; by default they are dropped, since a restore often runs as root and the snapshot is whatever its store holds (the snapshot keeps the bits either way)"

// lsEntry is one line of `snapshot ls --json`.
type lsEntry struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Host     string    `json:"host,omitempty"`
	Parent   string    `json:"parent,omitempty"`
	Files    int       `json:"files"`
	Dirs     int       `json:"dirs"`
	Symlinks int       `json:"symlinks"`
	Bytes    int64     `json:"bytes"`
	// LeftOut counts what the save left out (unreadable, vanished, special
	// files, over the size cap); ReposAsFiles the repositories it saved file
	// by file. See `snapshot save --json` for the list.
	LeftOut      int `json:"leftOut,omitempty"`
	ReposAsFiles int `json:"reposAsFiles,omitempty"`
	// Problem is set for a snapshot that cannot be restored (see
	// snapshot.SnapshotInfo.Problem); the other fields are then zero when
	// its manifest could not be read.
	Problem string `json:"problem,omitempty"`
	Epoch   uint64 `json:"epoch,omitempty"`
	// Stale: saved by a writer after a newer one took the session over;
	// never restored by default.
	Stale *snapshot.Staleness `json:"stale,omitempty"`
}

func newSnapshotLsCmd() *cobra.Command {
	var (
		sf     sessionFlags
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "ls",
		Short: "List a session's complete snapshots, oldest first",
		Long: `Ls lists every snapshot of the session, oldest first: its id, time, files,
size, host and STATUS. STATUS is "ok", or says why the snapshot cannot be
restored:

  unreadable: object K is corrupt: ...   its manifest or base object K does not decode
  unreadable: object K is missing        its base object K is not in the store
  incomplete: object K is missing (and N more)
                                         a chunk it references is not in the store
  stale writer (epoch e, fenced by epoch E)
                                         saved by a writer after a newer one took
                                         the session over; never restored by default

Ls reads every manifest and lists the session's objects once; it does not read
chunks (corruption inside a chunk is found by ` + "`tether snapshot verify`" + `). With
--json it prints an array of {id, time, host, parent, files, dirs, symlinks,
bytes, leftOut, reposAsFiles, problem, epoch, stale}, problem only for a damaged snapshot, stale only
for a stale writer's. A damaged snapshot does
not fail the command: it exits 0 whenever the store could be listed.
` + "`tether hydrate`" + ` restores the newest snapshot that is not damaged.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return sf.with(func(ctx context.Context, repo *snapshot.Repo) error {
				infos, err := snapshot.List(ctx, repo)
				if err != nil {
					return err
				}
				ids := make([]string, 0, len(infos))
				for _, m := range infos {
					ids = append(ids, m.ID)
				}
				stale, err := repo.Stale(ctx, ids)
				if err != nil {
					return err
				}
				list := make([]lsEntry, 0, len(infos))
				damaged := 0
				for _, m := range infos {
					list = append(list, lsEntry{ID: m.ID, Time: m.Time, Host: m.Host, Parent: m.Parent,
						Files: m.Summary.Files, Dirs: m.Summary.Dirs, Symlinks: m.Summary.Symlinks, Bytes: m.Summary.Bytes, Problem: m.Problem,
						LeftOut: m.Summary.LeftOut, ReposAsFiles: m.Summary.ReposAsFiles,
						Epoch: m.Epoch, Stale: stale[m.ID]})
					if m.Problem != "" {
						damaged++
					}
				}
				if asJSON {
					return printJSON(c.OutOrStdout(), list)
				}
				if len(list) == 0 {
					fmt.Fprintf(c.OutOrStdout(), "%s has no snapshots\n", repo)
					return nil
				}
				tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tTIME\tFILES\tSIZE\tLEFT OUT\tHOST\tSTATUS")
				for _, e := range list {
					status, when := "ok", "-"
					switch {
					case e.Problem != "":
						status = e.Problem
					case e.Stale != nil:
						status = e.Stale.String()
					}
					if !e.Time.IsZero() {
						when = e.Time.Local().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", e.ID, when, e.Files, human(e.Bytes), e.LeftOut, e.Host, status)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if damaged > 0 {
					fmt.Fprintf(c.ErrOrStderr(), "%d of %d snapshots cannot be restored; run `tether snapshot verify` for the details and `tether snapshot verify --repair --workspace DIR` to save a whole snapshot again\n", damaged, len(list))
				}
				return nil
			})
		},
	}
	sf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the list as a JSON array")
	return c
}

func newSnapshotVerifyCmd() *cobra.Command {
	var (
		sf          sessionFlags
		id          string
		quick       bool
		asJSON      bool
		repair      bool
		workspace   string
		cacheDir    string
		keepIgnored int64
		envErr      error
	)
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check that snapshots are complete and every chunk matches its hash",
		Long: `Verify reads every chunk referenced by the session's snapshots (or by one,
with --snapshot) and checks it against its SHA-256. It reports every missing or
corrupt object and which snapshots use it, and exits 1 if there is any.

With --repair --workspace DIR, after finding damage it saves a new snapshot of
DIR (the session's live workspace) that does not depend on any damaged object:
every file and repository that used one is read again and its chunks uploaded,
a stored chunk that does not hold what its name says is replaced, and a damaged
manifest or base object is not built upon. Then it verifies again and reports
what it repaired and what stays damaged (objects only older snapshots use and
the workspace no longer holds; damaged manifests, which are never rewritten).
It exits 0 when the new snapshot verifies. Without --workspace it says what is
damaged and how to repair it, and exits 1.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if envErr != nil {
				return envErr
			}
			if workspace != "" && !repair {
				return usagef("--workspace is only used with --repair")
			}
			return sf.with(func(ctx context.Context, repo *snapshot.Repo) error {
				rep, err := snapshot.Verify(ctx, repo, snapshot.VerifyOptions{Snapshot: id, Quick: quick})
				if err != nil {
					return err
				}
				if repair && len(rep.Problems) > 0 {
					return repairSnapshots(ctx, c, repo, rep, workspace, snapshot.SaveOptions{CacheDir: cacheDir, KeepIgnored: keepIgnored}, quick, asJSON)
				}
				if asJSON {
					if err := printJSON(c.OutOrStdout(), rep); err != nil {
						return err
					}
				} else {
					for _, p := range rep.Problems {
						fmt.Fprintln(c.OutOrStdout(), "problem:", p)
					}
				}
				if len(rep.Problems) > 0 {
					return fmt.Errorf("verify %s: %d problems in %d snapshots; `tether snapshot verify --repair --workspace DIR` saves a whole snapshot again from the live workspace", repo, len(rep.Problems), len(rep.Snapshots))
				}
				if !asJSON {
					what := "read and hashed"
					if quick {
						what = "found"
					}
					fmt.Fprintf(c.OutOrStdout(), "%d snapshots ok: %d objects %s (%s)\n", len(rep.Snapshots), rep.Objects, what, human(rep.Bytes))
					if repair {
						fmt.Fprintln(c.OutOrStdout(), "nothing to repair")
					}
				}
				return nil
			})
		},
	}
	sf.register(c)
	c.Flags().StringVar(&id, "snapshot", "", "verify only this snapshot id (default: all)")
	c.Flags().BoolVar(&quick, "quick", false, "only check that objects exist, without reading them")
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.Flags().BoolVar(&repair, "repair", false, "after finding damage, save a new snapshot from --workspace that re-uploads what is missing or corrupt")
	c.Flags().StringVar(&workspace, "workspace", "", "with --repair: the session's live workspace to save from")
	keepIgnoredVar(c, &keepIgnored, &envErr)
	c.Flags().StringVar(&cacheDir, "cache-dir", envOr("TETHER_CACHE_DIR", defaultCacheDir()), "with --repair: the stat cache of saves (env TETHER_CACHE_DIR; empty: none)")
	return c
}

// repairReport is what `snapshot verify --repair --json` prints.
type repairReport struct {
	Before   *snapshot.VerifyReport `json:"before"`
	Saved    *snapshot.SaveStats    `json:"saved,omitempty"`
	After    *snapshot.VerifyReport `json:"after,omitempty"`
	Repaired []string               `json:"repaired,omitempty"`
	// NewSnapshotOK: the snapshot the repair saved verifies.
	NewSnapshotOK bool `json:"newSnapshotOk"`
}

// repairSnapshots saves a snapshot of workspace that does not depend on any
// object rep found damaged, verifies again and reports the difference.
func repairSnapshots(ctx context.Context, c *cobra.Command, repo *snapshot.Repo, rep *snapshot.VerifyReport, workspace string, opts snapshot.SaveOptions, quick, asJSON bool) error {
	out := c.OutOrStdout()
	if !asJSON {
		for _, p := range rep.Problems {
			fmt.Fprintln(out, "problem:", p)
		}
	}
	if workspace == "" {
		if asJSON {
			if err := printJSON(out, repairReport{Before: rep}); err != nil {
				return err
			}
		}
		return fmt.Errorf("verify %s: %d problems in %d snapshots, not repaired: no --workspace. A snapshot that uses a damaged object cannot be restored as it is; "+
			"`tether hydrate` restores the newest one that can. To repair, run `tether snapshot verify --repair --workspace DIR` where DIR is the session's live workspace "+
			"(the one `tether sync` saves, or one restored with `tether snapshot restore`): it saves a new snapshot that uploads again every damaged object DIR still holds",
			repo, len(rep.Problems), len(rep.Snapshots))
	}
	opts.ConsistentCopy = statesync.SQLiteCopier("")
	opts.Repair = rep.Damaged
	// Its warnings are printed below, as notes of the report.
	opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	saver, err := snapshot.NewSaver(repo, workspace, opts)
	if err != nil {
		return err
	}
	defer saver.Close()
	st, err := saver.Save(ctx)
	if err != nil {
		return fmt.Errorf("repair %s: %w", repo, err)
	}
	after, err := snapshot.Verify(ctx, repo, snapshot.VerifyOptions{Quick: quick})
	if err != nil {
		return fmt.Errorf("repair %s: verify after saving snapshot %s: %w", repo, st.ID, err)
	}
	still := map[string]bool{}
	for _, id := range after.Damaged {
		still[id] = true
	}
	r := repairReport{Before: rep, Saved: st, After: after, NewSnapshotOK: true}
	for _, id := range rep.Damaged {
		if !still[id] {
			r.Repaired = append(r.Repaired, id)
		}
	}
	// Problems name the snapshots they touch by id; an id inside an object
	// key (hex) has no word boundary around it.
	mentions := regexp.MustCompile(`\b` + st.ID + `\b`)
	for _, p := range after.Problems {
		if mentions.MatchString(p) {
			r.NewSnapshotOK = false
		}
	}
	if asJSON {
		if err := printJSON(out, r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "saved snapshot %s from %s: %d files, %s uploaded in %d objects\n", st.ID, workspace, st.Files, human(st.BytesUploaded), st.ObjectsUploaded)
		for _, w := range st.Warnings {
			fmt.Fprintln(out, "note:", w)
		}
		for _, id := range r.Repaired {
			fmt.Fprintf(out, "repaired: object %s is whole again\n", id)
		}
		for _, p := range after.Problems {
			fmt.Fprintln(out, "still damaged:", p)
		}
	}
	if !r.NewSnapshotOK {
		return fmt.Errorf("repair %s: the new snapshot %s does not verify either (see above): the store may be failing; check it and run `tether snapshot verify` again", repo, st.ID)
	}
	if !asJSON {
		fmt.Fprintf(out, "snapshot %s verifies: it is what `tether hydrate` restores next", st.ID)
		if len(after.Problems) > 0 {
			fmt.Fprintf(out, "; %d problems remain in older snapshots that this workspace cannot fix (a damaged manifest is never rewritten, and content the workspace no longer holds cannot be uploaded again); they age out with retention", len(after.Problems))
		}
		fmt.Fprintln(out)
	}
	return nil
}

func newSnapshotPruneCmd() *cobra.Command {
	var (
		sf     sessionFlags
		keep   int
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "prune",
		Short: "Keep the newest N snapshots and delete the rest and every object only they used",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if keep < 1 {
				return usagef("--keep must be at least 1, got %d", keep)
			}
			return sf.with(func(ctx context.Context, repo *snapshot.Repo) error {
				ps, err := snapshot.Prune(ctx, repo, keep)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.OutOrStdout(), ps)
				}
				fmt.Fprintf(c.OutOrStdout(), "kept %d snapshots, removed %d snapshots and %d objects (%s)\n", len(ps.Kept), len(ps.RemovedSnapshots), ps.RemovedObjects, human(ps.RemovedBytes))
				return nil
			})
		},
	}
	sf.register(c)
	c.Flags().IntVar(&keep, "keep", 0, "how many of the newest snapshots to keep (required, at least 1)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}

// printLeftOut lists, shortened, what a save left out of a snapshot.
func printLeftOut(w io.Writer, list []snapshot.LeftOutFile, total int) {
	if total == 0 {
		return
	}
	fmt.Fprintf(w, "%d entries left out of the snapshot (the rest is saved):\n", total)
	for i, f := range list {
		if i == 10 {
			fmt.Fprintf(w, "  and %d more (see --json)\n", total-10)
			return
		}
		fmt.Fprintf(w, "  %s: %s\n", snapshot.DisplayPath(f.Path), f.Reason)
	}
	if total > len(list) {
		fmt.Fprintf(w, "  and %d more\n", total-len(list))
	}
}

func human(n int64) string { return iox.FormatSize(n) }
