package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tether-dev/tether/internal/store"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Snapshot limits the check to one snapshot; "" checks every snapshot.
	Snapshot string
	// Quick checks only that every referenced object exists, without reading it.
	Quick bool
	// Fetches is how many objects are read at once (default 8).
	Fetches int
}

// VerifyReport lists what Verify found. It is clean when Problems is empty.
type VerifyReport struct {
	Snapshots []string `json:"snapshots"`
	Objects   int      `json:"objects"`
	Bytes     int64    `json:"bytes"`
	Problems  []string `json:"problems,omitempty"`
	// Damaged lists the ids of the chunks found missing or corrupt, for
	// SaveOptions.Repair. (A damaged base object shows as a problem of the
	// manifests that use it: they cannot be read.)
	Damaged []string `json:"damaged,omitempty"`
}

// Verify checks snapshots: every manifest decodes and passes the checks restore
// makes (paths, sizes, and a sparse file's extents, which must hold exactly
// the bytes of its chunks: a file's content is its chunks, placed by its
// extents, so chunks that hash to their names make it whole), every repository's git state is one capture could have written (no
// config key outside the allow-list, which a restore would drop), and every chunk it references exists and (unless Quick) hashes to its
// name. It reads each chunk once however many snapshots share it, and reports
// every problem rather than stopping at the first.
func Verify(ctx context.Context, repo *Repo, opts VerifyOptions) (*VerifyReport, error) {
	if opts.Fetches <= 0 {
		opts.Fetches = 8
	}
	var ids []string
	if opts.Snapshot != "" {
		id, err := repo.Resolve(ctx, opts.Snapshot)
		if err != nil {
			return nil, err
		}
		ids = []string{id}
	} else {
		var err error
		if ids, err = repo.SnapshotIDs(ctx); err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("%s has no snapshots to verify", repo)
		}
	}
	rep := &VerifyReport{Snapshots: ids}
	users := map[string][]string{} // chunk -> snapshots using it
	lens := map[string]int64{}
	for _, id := range ids {
		m, err := repo.LoadManifest(ctx, id)
		if err != nil {
			rep.Problems = append(rep.Problems, err.Error())
			continue
		}
		if err := m.validate(); err != nil {
			rep.Problems = append(rep.Problems, err.Error())
		}
		rep.Problems = append(rep.Problems, gitStateProblems(m)...)
		m.eachChunk(func(c Ref) {
			if u := users[c.ID]; len(u) == 0 || u[len(u)-1] != id {
				users[c.ID] = append(u, id)
			}
			lens[c.ID] = c.Len
		})
	}
	chunks := make([]string, 0, len(users))
	for id := range users {
		chunks = append(chunks, id)
	}
	sort.Strings(chunks)
	rep.Objects = len(chunks)

	var mu sync.Mutex
	err := parallel(ctx, opts.Fetches, chunks, func(ctx context.Context, id string) error {
		var problem error
		if opts.Quick {
			if _, err := repo.st.Stat(ctx, repo.objectKey(id)); errors.Is(err, store.ErrNotFound) {
				problem = &MissingError{Key: repo.objectKey(id)}
			} else if err != nil {
				problem = err
			}
		} else {
			data, release, err := repo.fetchChunk(ctx, Ref{ID: id, Len: lens[id]}, "")
			if err != nil {
				problem = err
			} else {
				release()
				mu.Lock()
				rep.Bytes += int64(len(data))
				mu.Unlock()
			}
		}
		if problem == nil {
			return nil
		}
		var miss *MissingError
		var corrupt *CorruptError
		msg := problem.Error()
		switch {
		case errors.As(problem, &miss):
			msg = fmt.Sprintf("object %s is missing", miss.Key)
		case errors.As(problem, &corrupt):
			msg = fmt.Sprintf("object %s is corrupt: %s", corrupt.Key, corrupt.Reason)
		case ctx.Err() != nil:
			return ctx.Err()
		}
		mu.Lock()
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s (used by snapshot %s)", msg, strings.Join(users[id], ", ")))
		if miss != nil || corrupt != nil {
			rep.Damaged = append(rep.Damaged, id)
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(rep.Problems)
	sort.Strings(rep.Damaged)
	return rep, nil
}

// gitStateProblems lists what is wrong with the git states of m's
// repositories: a state restore refuses, and each config key outside the
// allow-list (capture never records one; a restore drops it, so a snapshot
// holding one was written by something else than tether).
func gitStateProblems(m *Manifest) []string {
	var problems []string
	for _, r := range m.Repos {
		if r.State == nil {
			continue // validate reported it
		}
		if err := r.State.Validate(); err != nil {
			problems = append(problems, fmt.Sprintf("snapshot %s: repository %s: restore refuses its git state: %v", m.ID, r.Path, err))
		}
		for _, k := range r.State.UnsafeConfig() {
			problems = append(problems, fmt.Sprintf("snapshot %s: repository %s: its git state holds config key %q, which tether never captures (it could name a program to run or hold a credential); restore drops it", m.ID, r.Path, k))
		}
	}
	return problems
}
