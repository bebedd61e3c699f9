package statesync

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/tether-dev/tether/internal/snapshot"
)

// SkippedSnapshot is a snapshot newer than the one hydrate restored, and why
// it could not be restored.
type SkippedSnapshot struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// restoreNewest restores into workspace the newest of ids (oldest first)
// whose restore succeeds. A snapshot is skipped only when its restore fails
// because its data is damaged (snapshot.IsDamaged: a missing or corrupt
// object, a manifest that does not pass the checks); restore builds in a
// staging directory and removes it when it fails, so nothing of a skipped
// snapshot is left behind. Any other failure (the store unreachable, the
// workspace disk full, a cancel) ends the hydrate at once: falling back then
// would hand the agent older work when the newest may be fine a minute later.
// Every skip is printed to progress as it happens.
func restoreNewest(ctx context.Context, repo *snapshot.Repo, workspace string, ids []string, progress io.Writer) (*snapshot.RestoreStats, []SkippedSnapshot, error) {
	var skipped []SkippedSnapshot
	order := make([]string, 0, len(ids))
	// A restore that had verified a snapshot and was moving it into place
	// when it was stopped: only that one can go into this workspace now.
	// An earlier hydrate chose it, so every newer one had failed then.
	if done := snapshot.InterruptedRestore(workspace); done != "" {
		for i := len(ids) - 1; i >= 0 && ids[i] > done; i-- {
			skipped = append(skipped, SkippedSnapshot{ID: ids[i], Reason: "skipped by an earlier hydrate of this workspace that was interrupted before it recorded why; run `tether snapshot verify`"})
		}
		order = append(order, done)
	} else {
		for i := len(ids) - 1; i >= 0; i-- {
			order = append(order, ids[i])
		}
	}
	for _, id := range order {
		fmt.Fprintf(progress, "hydrate: restoring snapshot %s of %s into %s\n", id, repo, workspace)
		rs, err := snapshot.Restore(ctx, repo, workspace, snapshot.RestoreOptions{Snapshot: id})
		if err == nil {
			return rs, skipped, nil
		}
		if !snapshot.IsDamaged(err) || ctx.Err() != nil {
			return nil, skipped, fmt.Errorf("hydrate: the session has saved work but snapshot %s could not be restored, so the agent must not start empty%s: %w", id, skippedNote(skipped), err)
		}
		reason := snapshot.DamageReason(err)
		skipped = append(skipped, SkippedSnapshot{ID: id, Reason: reason})
		fmt.Fprintf(progress, "hydrate: WARNING: skipping snapshot %s, it cannot be restored: %s; trying the next older one\n", id, reason)
	}
	return nil, skipped, fmt.Errorf("hydrate %s: the session has saved work but none of its %d snapshots can be restored, so the agent must not start empty%s; run `tether snapshot verify` to see the damage", repo, len(ids), skippedNote(skipped))
}

func skippedNote(skipped []SkippedSnapshot) string {
	if len(skipped) == 0 {
		return ""
	}
	parts := make([]string, len(skipped))
	for i, s := range skipped {
		parts[i] = s.ID + " (" + s.Reason + ")"
	}
	return "; skipped: " + strings.Join(parts, ", ")
}
