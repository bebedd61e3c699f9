package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/tether-dev/tether/internal/fsutil"
)

// SessionIDsFile is the session-id store's path relative to the workspace.
const SessionIDsFile = ".tether/session-ids.json"

// SessionIDs is the durable map thread -> CLI session id, one JSON object in
// one file. Every change replaces the file atomically (temp file, fsync,
// rename, fsync of the directory), so a kill at any moment leaves the previous
// or the new map, never a torn file. Safe for concurrent use within a process;
// one process owns the file.
type SessionIDs struct {
	path string
	mu   sync.Mutex
	ids  map[string]string // nil until loaded
}

// OpenSessionIDs returns the store of the workspace directory.
func OpenSessionIDs(workspace string) *SessionIDs {
	return &SessionIDs{path: filepath.Join(workspace, SessionIDsFile)}
}

// Path is the file the store lives in.
func (s *SessionIDs) Path() string { return s.path }

// All returns a copy of the map. A missing file is an empty map; a file that
// is not a JSON object of strings is an error, never silently reset, since
// resume depends on it.
func (s *SessionIDs) All() (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(s.ids))
	for k, v := range s.ids {
		out[k] = v
	}
	return out, nil
}

// Get returns thread's session id, "" when none is known.
func (s *SessionIDs) Get(thread string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return "", err
	}
	return s.ids[thread], nil
}

// Set records id for thread and returns once it is durable. It reports
// whether the file changed: the CLI repeats its id at every turn and an
// unchanged id costs no write.
func (s *SessionIDs) Set(thread, id string) (changed bool, err error) {
	if thread == "" || id == "" {
		return false, fmt.Errorf("session-id store %s: empty thread %q or id %q", s.path, thread, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return false, err
	}
	if s.ids[thread] == id {
		return false, nil
	}
	next := make(map[string]string, len(s.ids)+1)
	for k, v := range s.ids {
		next[k] = v
	}
	next[thread] = id
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return false, fmt.Errorf("session-id store %s: %w", s.path, err)
	}
	if err := fsutil.WriteFileAtomic(s.path, append(data, '\n'), 0o644); err != nil {
		return false, fmt.Errorf("session-id store: %w", err)
	}
	s.ids = next
	return true, nil
}

func (s *SessionIDs) load() error {
	if s.ids != nil {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		s.ids = map[string]string{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("session-id store %s: %w", s.path, err)
	}
	var ids map[string]string
	if err := json.Unmarshal(data, &ids); err != nil || ids == nil {
		return fmt.Errorf("session-id store %s is not a JSON object of thread -> session id (%v); it is only ever replaced atomically, so it was edited or damaged: fix it or move it away to start fresh sessions", s.path, err)
	}
	s.ids = ids
	return nil
}
