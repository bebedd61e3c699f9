package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/store"
)

// Locks keep Prune from deleting the objects of a snapshot being saved. A save
// holds a shared lock, a prune an exclusive one. Each writes its lock object
// first and then lists the others, so of two that start together at least one
// sees the other: a prune that sees a save gives up; a save that sees a prune
// waits for it. A lock is refreshed while held; one not refreshed for
// lockStale (its holder was killed) is ignored.
type lockKind string

const (
	lockShared    lockKind = "save"
	lockExclusive lockKind = "prune"
)

var (
	lockStale   = 10 * time.Minute
	lockRefresh = 2 * time.Minute
	// lockWait is how long a save waits for a running prune.
	lockWait = 5 * time.Minute
)

// ErrLocked is returned by Prune when a save is in progress.
var ErrLocked = errors.New("a save is in progress")

type lockInfo struct {
	Kind lockKind  `json:"kind"`
	Host string    `json:"host"`
	PID  int       `json:"pid"`
	Time time.Time `json:"time"`
}

func (r *Repo) lockPrefix() string { return r.base + "locks/" }

// lock takes a lock of the given kind and returns its release function.
func (r *Repo) lock(ctx context.Context, kind lockKind) (func(), error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	key := fmt.Sprintf("%s%s-%d-%s", r.lockPrefix(), kind, time.Now().UnixNano(), hex.EncodeToString(rnd[:]))
	host, _ := os.Hostname()
	body, _ := json.Marshal(lockInfo{Kind: kind, Host: host, PID: os.Getpid(), Time: time.Now().UTC()})

	deadline := time.Now().Add(lockWait)
	delay := 100 * time.Millisecond
	for {
		if err := r.st.Put(ctx, key, body); err != nil {
			return nil, fmt.Errorf("lock %s: %w", r, err)
		}
		conflict, err := r.conflictingLock(ctx, key, kind)
		if err != nil {
			_ = r.st.Delete(context.WithoutCancel(ctx), key)
			return nil, err
		}
		if conflict == "" {
			break
		}
		_ = r.st.Delete(context.WithoutCancel(ctx), key)
		if kind == lockExclusive {
			return nil, fmt.Errorf("prune %s: %w (%s); try again when it is done", r, ErrLocked, conflict)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("save %s: a prune holds the session (%s) for more than %s; if no prune runs, delete that lock object", r, conflict, lockWait)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		delay = min(2*delay, 5*time.Second)
	}

	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(lockRefresh)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = r.st.Put(context.WithoutCancel(ctx), key, body)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		_ = r.st.Delete(context.WithoutCancel(ctx), key)
	}, nil
}

// conflictingLock returns the key of a fresh lock that conflicts with ours, or "".
func (r *Repo) conflictingLock(ctx context.Context, own string, kind lockKind) (string, error) {
	var found string
	err := r.st.List(ctx, r.lockPrefix(), func(oi store.ObjectInfo) error {
		if oi.Key == own || found != "" {
			return nil
		}
		if !oi.ModTime.IsZero() && time.Since(oi.ModTime) > lockStale {
			return nil
		}
		name := strings.TrimPrefix(oi.Key, r.lockPrefix())
		if kind == lockExclusive || strings.HasPrefix(name, string(lockExclusive)+"-") {
			found = oi.Key
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("list locks of %s: %w", r, err)
	}
	return found, nil
}
