package statesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/tether-dev/tether/internal/fsutil"
	"github.com/tether-dev/tether/internal/snapshot"
)

// WriterFile holds the writer epoch hydrate took for this workspace (see
// snapshot.TakeEpoch); the sync saves as that epoch. It is never part of a
// snapshot.
const WriterFile = ".tether/writer.json"

// maxWriterFile bounds what is read of WriterFile: anything in the workspace
// may have been written by the agent.
const maxWriterFile = 64 << 10

// takeWriter takes the session's next writer epoch for a hydrate. It must
// come before the listing of what to restore (see snapshot.TakeEpoch).
func takeWriter(ctx context.Context, repo *snapshot.Repo) (*snapshot.Writer, error) {
	w, err := snapshot.TakeEpoch(ctx, repo, "hydrate")
	if err != nil {
		return nil, fmt.Errorf("hydrate %s: cannot make this workspace the session's writer: %w", repo, err)
	}
	return w, nil
}

func writeWriterFile(workspace string, w *snapshot.Writer) error {
	data, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(workspace, ".tether"), 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(workspace, WriterFile), append(data, '\n'), 0o644)
}

func readWriterFile(workspace string) (*snapshot.Writer, error) {
	f, err := os.Open(filepath.Join(workspace, WriterFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxWriterFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxWriterFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", WriterFile, maxWriterFile)
	}
	var w snapshot.Writer
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%s is not a writer record: %v", WriterFile, err)
	}
	return &w, nil
}

// writerSource gives the Saver of a sync its writer epoch: the one hydrate
// recorded in the workspace when the store confirms it, else a new one taken
// now (a standalone sync). It runs until it succeeds, once per process: a
// sync never takes a later epoch, so a slow sync cannot fence itself.
func writerSource(repo *snapshot.Repo, workspace string, log *slog.Logger) func(context.Context) (*snapshot.Writer, error) {
	return func(ctx context.Context) (*snapshot.Writer, error) {
		w, err := readWriterFile(workspace)
		if err == nil {
			err = repo.CheckWriter(ctx, w)
			if err == nil {
				log.Info("saving as the writer hydrate made this workspace", "epoch", w.Epoch, "writer", w.ID)
				return w, nil
			}
			if !errors.Is(err, snapshot.ErrNotThisWriter) {
				return nil, err // the store could not say: try again at the next save
			}
		}
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("ignoring the workspace's writer file; taking a new writer epoch", "file", WriterFile, "err", err)
		}
		w, err = snapshot.TakeEpoch(ctx, repo, "sync")
		if err != nil {
			return nil, err
		}
		log.Info("took the session's next writer epoch", "epoch", w.Epoch, "writer", w.ID)
		return w, nil
	}
}

// fenced returns the FencedError in err, if any: the sync must stop saving.
func fenced(err error) error {
	var fe *snapshot.FencedError
	if errors.As(err, &fe) {
		return fe
	}
	return nil
}

// withoutStale drops the stale snapshots (see snapshot.Repo.Stale) from ids,
// saying so in progress and res. When every snapshot is stale it keeps the
// newest, loudly: stale work beats an empty workspace.
//
// It also returns the stale snapshots, newest first, as skips: those newer
// than the one hydrate ends up restoring belong in HydrateResult.Skipped,
// since their work is not in the workspace either.
func withoutStale(ctx context.Context, repo *snapshot.Repo, ids []string, res *HydrateResult, progress io.Writer) ([]string, []SkippedSnapshot, error) {
	stale, err := repo.Stale(ctx, ids)
	if err != nil || len(stale) == 0 {
		return ids, nil, err
	}
	var skips []SkippedSnapshot
	for i := len(ids) - 1; i >= 0; i-- {
		if st := stale[ids[i]]; st != nil {
			skips = append(skips, SkippedSnapshot{ID: ids[i], Reason: st.String()})
		}
	}
	kept := make([]string, 0, len(ids))
	for _, id := range ids {
		if st := stale[id]; st != nil {
			msg := fmt.Sprintf("not restoring snapshot %s: %s; it was saved after a newer writer took the session over (`tether snapshot restore --snapshot %s` restores it elsewhere)", id, st, id)
			fmt.Fprintf(progress, "hydrate: %s\n", msg)
			res.Warnings = append(res.Warnings, msg)
			continue
		}
		kept = append(kept, id)
	}
	if len(kept) == 0 {
		newest := ids[len(ids)-1]
		msg := fmt.Sprintf("every snapshot is stale; restoring the newest, %s, rather than starting empty", newest)
		fmt.Fprintf(progress, "hydrate: WARNING: %s\n", msg)
		res.Warnings = append(res.Warnings, msg)
		kept = []string{newest}
	}
	return kept, skips, nil
}

// withStaleSkips merges into skipped (newest first) the stale snapshots
// newer than restored.
func withStaleSkips(skipped, stale []SkippedSnapshot, restored string) []SkippedSnapshot {
	var out []SkippedSnapshot
	for _, s := range stale {
		if s.ID > restored {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return skipped
	}
	out = append(out, skipped...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out
}

// Writer returns the writer epoch the sync saves as (nil before its first save).
func (s *Syncer) Writer() *snapshot.Writer { return s.saver.Writer() }
