package local

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/tether-dev/tether/internal/fsutil"
)

// StatusFile is where the supervisor records its state and every runner
// death, relative to the workspace.
const StatusFile = ".tether/supervisor.json"

// Supervisor states.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting" // a runner died; waiting out the backoff
	StateStopping   = "stopping"
	StateSuspended  = "suspended" // the runner is stopped until the session is resumed
	StateStopped    = "stopped"
	StateFailed     = "failed"
)

// Causes of a runner death.
const (
	CauseOOMKernel   = "oom-kernel"   // the kernel killed a process of the group for memory
	CauseOOMWatchdog = "oom-watchdog" // the RSS watchdog killed the group
	CauseSignal      = "signal"       // killed by a signal from outside
	CauseExit        = "exit"         // exited on its own with a status
)

// Status is the content of .tether/supervisor.json: observed facts.
type Status struct {
	Session    string       `json:"session"`
	Workspace  string       `json:"workspace"`
	Store      string       `json:"store"`
	PID        int          `json:"supervisor_pid"`
	State      string       `json:"state"`
	Error      string       `json:"error,omitempty"`
	StartedAt  time.Time    `json:"started_at"`
	Hydrate    string       `json:"hydrate,omitempty"`
	Memory     MemoryStatus `json:"memory"`
	Runner     ChildStatus  `json:"runner"`
	Sync       ChildStatus  `json:"sync"`
	Restarts   int          `json:"restarts"`
	MaxRestart int          `json:"max_restarts"`
	Deaths     []Death      `json:"deaths"`
	UpdatedAt  time.Time    `json:"updated_at"`
}

// MemoryStatus is how the runner's memory is limited.
type MemoryStatus struct {
	Mode   string  `json:"mode"` // cgroup-v2, cgroup-v1, watchdog
	Detail string  `json:"detail"`
	Limit  int64   `json:"limit_bytes"`
	Max    int64   `json:"max_bytes,omitempty"`
	Bump   float64 `json:"oom_bump,omitempty"`
}

// ChildStatus is one child process.
type ChildStatus struct {
	PID       int       `json:"pid,omitempty"`
	Life      int       `json:"life,omitempty"`
	StartedAt time.Time `json:"started_at,omitempty"`
	Log       string    `json:"log,omitempty"`
}

// Death is one runner death, classified.
type Death struct {
	// Supervisor is the pid of the `tether run` that saw it: deaths of
	// earlier runs on the workspace are kept as history.
	Supervisor int       `json:"supervisor_pid"`
	Life       int       `json:"life"`
	PID        int       `json:"pid"`
	StartedAt  time.Time `json:"started_at"`
	DiedAt     time.Time `json:"died_at"`
	UptimeMs   int64     `json:"uptime_ms"`
	Cause      string    `json:"cause"`
	Signal     string    `json:"signal,omitempty"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	// Detail is what was seen: the kernel counter, the watchdog's sum, the
	// last line the runner logged.
	Detail        string     `json:"detail"`
	MemoryLimit   int64      `json:"memory_limit_bytes"`
	MemoryPeak    int64      `json:"memory_peak_bytes,omitempty"`
	OOMDetectedAt *time.Time `json:"oom_detected_at,omitempty"`
	GroupKilledAt *time.Time `json:"group_killed_at,omitempty"`
	// SessionID is the CLI session id the runner had when it died.
	SessionID           string    `json:"session_id,omitempty"`
	TurnOpen            bool      `json:"turn_open"`
	SnapshotRequestedAt time.Time `json:"snapshot_requested_at"`
	// Restart: what the supervisor did about it.
	Restart         bool       `json:"restart"`
	GiveUp          string     `json:"give_up,omitempty"`
	BackoffMs       int64      `json:"backoff_ms,omitempty"`
	NextMemoryLimit int64      `json:"next_memory_limit_bytes,omitempty"`
	RestartedAt     *time.Time `json:"restarted_at,omitempty"`
	// RecoveredAt is when the next runner was ready (CLI up, resume
	// decided); RecoveryMs counts from DiedAt.
	RecoveredAt    *time.Time `json:"recovered_at,omitempty"`
	RecoveryMs     int64      `json:"recovery_ms,omitempty"`
	Resume         string     `json:"resume,omitempty"`
	SessionIDAfter string     `json:"session_id_after,omitempty"`
}

// ReadStatus reads a workspace's supervisor.json.
func ReadStatus(workspace string) (*Status, error) {
	b, err := os.ReadFile(filepath.Join(workspace, StatusFile))
	if err != nil {
		return nil, err
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func writeStatus(workspace string, s *Status) error {
	s.UpdatedAt = time.Now().UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(workspace, StatusFile), append(b, '\n'), 0o644)
}
