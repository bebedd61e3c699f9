package runner

import (
	"encoding/json"
	"time"
)

// Runner states in the status file.
const (
	StateStarting = "starting" // CLI starting, resume not decided
	StateReady    = "ready"    // CLI up, resume decided: taking messages
	StateStopping = "stopping" // SIGTERM: no new messages, waiting for the CLI
	StateStopped  = "stopped"  // the CLI exited after a stop
	StateFailed   = "failed"   // the runner gave up; Error says why
)

// Resume outcomes.
const (
	ResumeNone    = "none"    // no session id was known: a fresh session
	ResumeResumed = "resumed" // the CLI continued the known conversation
	ResumeFailed  = "failed"  // it could not: a fresh session was seeded with a recap
)

// Status is what the runner writes to .tether/runner-status.json at every
// change of state, for the supervisor and for an operator: observed facts, not
// intentions.
type Status struct {
	Thread    string       `json:"thread"`
	State     string       `json:"state"`
	SessionID string       `json:"session_id,omitempty"`
	Resume    ResumeStatus `json:"resume"`
	Turns     int64        `json:"turns"`
	TurnOpen  bool         `json:"turn_open"`
	RunnerPID int          `json:"runner_pid"`
	CLIPID    int          `json:"cli_pid,omitempty"`
	CLI       string       `json:"cli_version,omitempty"`
	Error     string       `json:"error,omitempty"`
	UpdatedAt time.Time    `json:"updated_at"`
}

// ResumeStatus says how the runner's start went with the known session id.
type ResumeStatus struct {
	Outcome    string `json:"outcome"`
	PreviousID string `json:"previous_id,omitempty"`
	SessionID  string `json:"session_id,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Repaired is set when the transcript had a torn last line that was cut
	// (its bytes are in CutSavedTo).
	Repaired   bool   `json:"repaired,omitempty"`
	CutSavedTo string `json:"cut_saved_to,omitempty"`
	// Interrupted is the turn a crash cut short, 0 when none.
	Interrupted int64 `json:"interrupted_turn,omitempty"`
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
