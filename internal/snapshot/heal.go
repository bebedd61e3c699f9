package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/store"
)

// IsDamaged reports whether err says that stored data is unusable (an
// object missing from the store, or one whose content does not match its
// name or does not decode) rather than that the store could not be reached
// or the local disk failed. Only damage is a reason to fall back to an older
// snapshot: anything else may be over in a minute, and falling back then
// would throw away newer work for nothing.
func IsDamaged(err error) bool {
	var corrupt *CorruptError
	var missing *MissingError
	return errors.As(err, &corrupt) || errors.As(err, &missing)
}

// DamageReason says in a few words what damage err reports: which object,
// and whether it is missing or corrupt. For other errors it is their text.
func DamageReason(err error) string {
	var corrupt *CorruptError
	var missing *MissingError
	switch {
	case errors.As(err, &missing):
		return "object " + missing.Key + " is missing"
	case errors.As(err, &corrupt):
		return "object " + corrupt.Key + " is corrupt: " + corrupt.Reason
	}
	return err.Error()
}

// InterruptedRestore returns the snapshot id of a restore into target that
// had built and verified its staging directory but was stopped before it
// moved everything into place ("" when there is none). Restoring that id
// again only finishes the moves.
func InterruptedRestore(target string) string {
	b, err := os.ReadFile(filepath.Join(target, stagingName, completeMarker))
	if err != nil {
		return ""
	}
	id, _, err := ParseID(string(b))
	if err != nil || id != string(b) {
		return ""
	}
	return id
}

// listPresent lists the session's objects once (a listing, no reads) and
// returns the stored size of every object of want that exists. Only the
// wanted ids are kept, so memory follows what the caller already holds, not
// the size of the store.
func (r *Repo) listPresent(ctx context.Context, want map[string]bool) (map[string]int64, error) {
	prefix := r.base + "objects/"
	present := make(map[string]int64, len(want))
	err := r.st.List(ctx, prefix, func(oi store.ObjectInfo) error {
		id := oi.Key[strings.LastIndexByte(oi.Key, '/')+1:]
		if want[id] && oi.Key == r.objectKey(id) {
			present[id] = oi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the objects of %s: %w", r, err)
	}
	return present, nil
}

// SnapshotInfo is one snapshot as `tether snapshot ls` shows it.
type SnapshotInfo struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time,omitempty"`
	Host    string    `json:"host,omitempty"`
	Parent  string    `json:"parent,omitempty"`
	Summary Summary   `json:"summary"`
	// Problem is why the snapshot cannot be restored, "" when nothing is
	// known to be wrong: its manifest (or its base object) cannot be read
	// ("unreadable: ..."), or an object it references is not in the store
	// ("incomplete: ..."). Corruption inside a chunk that is present is
	// found by Verify, which reads every chunk; List does not.
	Problem string `json:"problem,omitempty"`
	// Missing counts the objects the snapshot references that the store lacks.
	Missing int `json:"missing,omitempty"`
	// Epoch is the writer epoch that saved it (0: before fencing, or unreadable).
	Epoch uint64 `json:"epoch,omitempty"`
}

// List describes every snapshot of repo, oldest first, from its manifest
// and one listing of the session's objects. A snapshot it cannot read is
// listed with its Problem rather than failing the whole list; the error is
// only for a store that cannot list its snapshots or objects at all.
func List(ctx context.Context, repo *Repo) ([]SnapshotInfo, error) {
	ids, err := repo.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]SnapshotInfo, len(ids))
	refs := make([]map[string]bool, len(ids))
	want := map[string]bool{}
	for i, id := range ids {
		out[i].ID = id
		m, err := repo.LoadManifest(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			out[i].Problem = "unreadable: " + DamageReason(err)
			continue
		}
		out[i].Time, out[i].Host, out[i].Parent, out[i].Summary, out[i].Epoch = m.Time, m.Host, m.Parent, m.Summary, m.Epoch
		refs[i] = map[string]bool{}
		m.eachChunk(func(c Ref) {
			refs[i][c.ID] = true
			want[c.ID] = true
		})
	}
	if len(want) == 0 {
		return out, nil
	}
	present, err := repo.listPresent(ctx, want)
	if err != nil {
		return nil, err
	}
	for i := range out {
		var missing []string
		for id := range refs[i] {
			if _, ok := present[id]; !ok {
				missing = append(missing, repo.objectKey(id))
			}
		}
		if len(missing) == 0 {
			continue
		}
		sort.Strings(missing)
		out[i].Missing = len(missing)
		out[i].Problem = "incomplete: object " + missing[0] + " is missing"
		if len(missing) > 1 {
			out[i].Problem += fmt.Sprintf(" (and %d more)", len(missing)-1)
		}
	}
	return out, nil
}

// recheckEvery is how often a long-lived Saver confirms again, with a
// listing, that every object its base snapshot references is still in the
// store: a lifecycle rule or a person can remove objects under a running sync.
const recheckEvery = time.Hour

// checkBase confirms, with one listing of the session's objects and no
// reads, that every object the base snapshot references exists. Chunks that
// are missing are remembered in s.missing: the files and repositories that
// reference them are read again from the workspace and their chunks
// uploaded, instead of being copied from the base. A missing or corrupt base
// object makes the save write a new one. It runs on the first save after a
// base was loaded, then every recheckEvery.
func (s *Saver) checkBase(ctx context.Context, w *saveRun) error {
	now := s.opts.Now()
	if s.checked && now.Sub(s.checkedAt) < recheckEvery {
		return nil
	}
	want := map[string]bool{}
	s.base.eachChunk(func(c Ref) { want[c.ID] = true })
	present, err := s.repo.listPresent(ctx, want)
	if err != nil {
		return err
	}
	missing := map[string]bool{}
	for id := range want {
		if _, ok := present[id]; !ok {
			missing[id] = true
		}
	}
	for _, id := range s.opts.Repair {
		if want[id] {
			missing[id] = true
		}
	}
	if b := s.base.Base; b != nil && s.base.from != nil {
		delete(missing, b.ID)
		size, ok := present[b.ID]
		if !ok {
			s.dropBaseObject(w, fmt.Sprintf("its base object %s is missing", s.repo.objectKey(b.ID)))
		} else if _, err := s.repo.readChunk(ctx, *b, s.base.ID); IsDamaged(err) {
			// One read per process (and per recheckEvery) of the one
			// object every new snapshot depends on: the stat cache's copy
			// says nothing of what the store holds, and bit rot keeps sizes.
			s.dropBaseObject(w, DamageReason(err))
		} else if err != nil {
			return err
		}
		if s.base.from != nil {
			s.base.from.objSize = size
		}
		w.baseChecked = true
	}
	s.missing = missing
	s.checked, s.checkedAt = true, now
	if len(missing) > 0 {
		var first string
		for id := range missing {
			if first == "" || id < first {
				first = id
			}
		}
		s.warn(w, fmt.Sprintf("snapshot %s references %d objects that are missing from the store or damaged (first: %s); the files and repositories that use them are read again from the workspace and uploaded", s.base.ID, len(missing), s.repo.objectKey(first)))
	}
	return nil
}

// dropBaseObject stops the next save from writing a delta against the
// base's base object: it writes a new base holding every entry. The entries
// of the base are still known (from this process or its stat cache), so
// unchanged files are not read again.
func (s *Saver) dropBaseObject(w *saveRun, why string) {
	s.warn(w, fmt.Sprintf("snapshot %s cannot be used as the base of the next one: %s; this save writes a new full base object", s.base.ID, why))
	s.base.from = nil
}

// baseStillThere is the cheap check, one Stat per save, that the base object
// a save is about to write a delta against still exists (and has the size
// it had): a delta against a lost base would make the new snapshot
// unrestorable while every save reports success.
func (s *Saver) baseStillThere(ctx context.Context, w *saveRun, from *baseState) (bool, error) {
	if w.baseChecked {
		return true, nil
	}
	key := s.repo.objectKey(from.ref.ID)
	oi, err := s.repo.st.Stat(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		s.warn(w, fmt.Sprintf("base object %s of snapshot %s is missing from the store; this save writes a new full base object", key, s.base.ID))
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check base object %s: %w", key, err)
	}
	if from.objSize != 0 && oi.Size != from.objSize {
		if _, err := s.repo.readChunk(ctx, from.ref, s.base.ID); IsDamaged(err) {
			s.warn(w, fmt.Sprintf("base object of snapshot %s is damaged (%s); this save writes a new full base object", s.base.ID, DamageReason(err)))
			return false, nil
		} else if err != nil {
			return false, err
		}
		from.objSize = oi.Size
	}
	return true, nil
}

// warn logs a problem once and records it in the save's warnings.
func (s *Saver) warn(w *saveRun, msg string) {
	s.opts.Log.Warn(msg, "session", s.repo.Namespace+"/"+s.repo.Session, "store", s.repo.st.String())
	w.stats.Warnings = append(w.stats.Warnings, msg)
}

// refsMissing reports whether any of chunks is known to be missing from the store.
func (s *Saver) refsMissing(chunks []Ref) bool {
	if len(s.missing) == 0 {
		return false
	}
	for _, c := range chunks {
		if s.missing[c.ID] {
			return true
		}
	}
	return false
}

// repoMissing reports whether the base's capture of the repository at rel,
// or of one of its submodules, references a chunk missing from the store:
// then it is captured afresh (a full bundle) instead of being kept.
func (s *Saver) repoMissing(rel string) bool {
	if len(s.missing) == 0 {
		return false
	}
	for _, r := range s.base.Repos {
		if r.Path == rel || strings.HasPrefix(r.Path, rel+"/") {
			for _, b := range r.Bundles {
				if s.refsMissing(b.Chunks) {
					return true
				}
			}
		}
	}
	return false
}

// rewriteChunk stores a chunk that a verify named damaged: the store's copy
// is replaced only when it does not hold what its name says (its name fixes
// its content, so nothing of value is overwritten).
func (r *Repo) rewriteChunk(ctx context.Context, id string, data []byte) (int64, error) {
	_, err := r.readChunk(ctx, Ref{ID: id, Len: int64(len(data))}, "")
	var missing *MissingError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &missing):
		return r.writeChunk(ctx, id, data)
	case !IsDamaged(err):
		return 0, err
	}
	obj := encode(data)
	if err := r.st.Put(ctx, r.objectKey(id), obj); err != nil {
		return 0, err
	}
	return int64(len(obj)), nil
}
