package ui

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"time"
)

// Suspender is a Backend that can suspend a session (its runner stopped,
// everything kept) and resume it.
type Suspender interface {
	Suspend(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
}

// Snapshot is one snapshot in a session's timeline.
type Snapshot struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Files and Bytes are what it holds; Uploaded what its save uploaded
	// (0: not recorded, snapshots of earlier versions).
	Files    int   `json:"files"`
	Bytes    int64 `json:"bytes"`
	Uploaded int64 `json:"uploaded,omitempty"`
	LeftOut  int   `json:"leftOut,omitempty"`
	// Problem says why it cannot be restored ("" when nothing is known to
	// be wrong).
	Problem string `json:"problem,omitempty"`
	// Command is the `tether snapshot restore` command line that restores
	// it (credentials come from the environment, never from here).
	Command string `json:"command,omitempty"`
}

// Restored is what a restore from the page did.
type Restored struct {
	ID         string `json:"id"`
	Dir        string `json:"dir"`
	Files      int    `json:"files"`
	Bytes      int64  `json:"bytes"`
	DurationMs int64  `json:"durationMs"`
}

// Snapshotter is a Backend that lists a session's snapshots and restores
// one into a directory (`tether snapshot restore` underneath). A Backend
// that cannot restore where the page's user is (the operator, whose
// filesystem is not theirs) returns ErrRestoreElsewhere, and the page shows
// the command to run instead.
type Snapshotter interface {
	Snapshots(ctx context.Context, name string) ([]Snapshot, error)
	Restore(ctx context.Context, name, id, dir string) (Restored, error)
}

// ErrRestoreElsewhere: run `tether snapshot restore` where the files are wanted.
var ErrRestoreElsewhere = errors.New("this page cannot restore here: run the command shown where you want the files")

// Conflict marks an error that the session's state explains (suspending a
// suspended session): the page gets 409 and the message.
type Conflict struct{ Err error }

func (c Conflict) Error() string { return c.Err.Error() }
func (c Conflict) Unwrap() error { return c.Err }

func (h *handler) control(do func(Suspender, context.Context, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sp, ok := h.b.(Suspender)
		if !ok {
			http.Error(w, "this page cannot suspend or resume sessions", http.StatusNotImplemented)
			return
		}
		// The body is not read, but it must be JSON (guard): no cross-site form.
		if err := do(sp, r.Context(), r.PathValue("name")); err != nil {
			h.fail(w, err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

func (h *handler) fail(w http.ResponseWriter, err error) {
	var c Conflict
	switch {
	case errors.Is(err, ErrNoSession):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.As(err, &c):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	}
}

func (h *handler) apiSnapshots(w http.ResponseWriter, r *http.Request) {
	sn, ok := h.b.(Snapshotter)
	if !ok {
		http.Error(w, "this page does not list snapshots", http.StatusNotImplemented)
		return
	}
	list, err := sn.Snapshots(r.Context(), r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	if list == nil {
		list = []Snapshot{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{"snapshots": list})
}

func (h *handler) restore(w http.ResponseWriter, r *http.Request) {
	sn, ok := h.b.(Snapshotter)
	if !ok {
		http.Error(w, "this page does not restore snapshots", http.StatusNotImplemented)
		return
	}
	var in struct {
		Dir string `json:"dir"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<10)).Decode(&in); err != nil || in.Dir == "" || len(in.Dir) > 4096 || !filepath.IsAbs(in.Dir) {
		http.Error(w, "send {\"dir\": \"/absolute/path\"}: a directory that is missing or empty", http.StatusBadRequest)
		return
	}
	res, err := sn.Restore(r.Context(), r.PathValue("name"), r.PathValue("id"), filepath.Clean(in.Dir))
	if errors.Is(err, ErrRestoreElsewhere) {
		http.Error(w, err.Error(), http.StatusNotImplemented)
		return
	}
	if err != nil {
		var c Conflict
		if errors.As(err, &c) || errors.Is(err, ErrNoSession) {
			h.fail(w, err)
			return
		}
		// The restore's own error names what went wrong (a non-empty
		// directory, a damaged snapshot): it is the user's to read.
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}
