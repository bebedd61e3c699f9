package snapshot

import (
	"context"
	"fmt"
	"strings"

	"github.com/tether-dev/tether/internal/store"
)

// PruneStats reports what Prune removed.
type PruneStats struct {
	Kept             []string `json:"kept"`
	RemovedSnapshots []string `json:"removedSnapshots"`
	RemovedObjects   int      `json:"removedObjects"`
	RemovedBytes     int64    `json:"removedBytes"`
}

// Prune keeps the newest keep complete snapshots and deletes the older
// manifests, then every object no kept snapshot references. It takes the
// session's exclusive lock, so it never deletes the objects of a snapshot
// being saved: while a save runs, it returns ErrLocked and deletes nothing.
// Manifests go first: a crash midway leaves unreferenced objects (removed by
// the next prune), never a snapshot with missing objects.
func Prune(ctx context.Context, repo *Repo, keep int) (*PruneStats, error) {
	if keep < 1 {
		return nil, fmt.Errorf("prune %s: keep must be at least 1, got %d", repo, keep)
	}
	unlock, err := repo.lock(ctx, lockExclusive)
	if err != nil {
		return nil, err
	}
	defer unlock()

	ids, err := repo.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	ps := &PruneStats{}
	if len(ids) > keep {
		ps.RemovedSnapshots = ids[:len(ids)-keep]
		ids = ids[len(ids)-keep:]
	}
	ps.Kept = ids
	live := map[string]bool{}
	for _, id := range ids {
		m, err := repo.LoadManifest(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("prune %s: %w; nothing was deleted", repo, err)
		}
		m.eachChunk(func(c Ref) { live[c.ID] = true })
	}
	for _, id := range ps.RemovedSnapshots {
		if err := repo.st.Delete(ctx, repo.manifestKey(id)); err != nil {
			return nil, fmt.Errorf("prune %s: delete snapshot %s: %w", repo, id, err)
		}
	}
	prefix := repo.base + "objects/"
	var dead []store.ObjectInfo
	err = repo.st.List(ctx, prefix, func(oi store.ObjectInfo) error {
		name := oi.Key[strings.LastIndexByte(oi.Key, '/')+1:]
		if !live[name] {
			dead = append(dead, oi)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune %s: list objects: %w", repo, err)
	}
	for _, oi := range dead {
		if err := repo.st.Delete(ctx, oi.Key); err != nil {
			return nil, fmt.Errorf("prune %s: delete %s: %w", repo, oi.Key, err)
		}
		ps.RemovedObjects++
		ps.RemovedBytes += oi.Size
	}
	return ps, nil
}
