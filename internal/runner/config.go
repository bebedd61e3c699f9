package runner

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Sources of a user message sent to the CLI (the Type of a KindInput record).
const (
	SourceUser      = "user"      // sent by a client (Send, POST /agui)
	SourceInitial   = "initial"   // the session's initial prompt
	SourceNotice    = "notice"    // the interrupted-turn notice
	SourceRecap     = "recap"     // the recap seeding a fresh session after a failed resume
	SourceRedeliver = "redeliver" // a user message the CLI never took before a crash
)

// DefaultInterruptNotice is sent to the agent after a resume when its previous
// turn was cut short by a crash.
const DefaultInterruptNotice = "[tether] Your previous turn was interrupted: the runner restarted " +
	"(for example after running out of memory) while you were working, and tool calls that were " +
	"running may not have finished. Check the state of the workspace before you continue."

// DefaultAllowedTools are the tools the CLI may use without asking. Running as
// root the CLI refuses --dangerously-skip-permissions, so the runner allows a
// coding set explicitly.
var DefaultAllowedTools = []string{"Bash", "Edit", "Write", "Read", "Glob", "Grep", "NotebookEdit", "TodoWrite"}

// Config configures a Runner.
type Config struct {
	// Workspace is the session's directory: .claude (CLAUDE_CONFIG_DIR) and
	// .tether (runner state) live in it.
	Workspace string
	// Cwd is where the CLI runs (default Workspace). The CLI files
	// transcripts under a key of this path: it must not change across
	// restarts.
	Cwd string
	// Thread names the conversation in session-ids.json (default "main").
	Thread string

	// ClaudeBin is the CLI executable (default "claude" on PATH).
	ClaudeBin string
	// AllowedTools is passed as --allowedTools (default DefaultAllowedTools;
	// empty slice from the flag "none" means the flag is not passed).
	AllowedTools []string
	// PermissionMode is passed as --permission-mode when set.
	PermissionMode string
	// ExtraArgs are appended to the CLI's arguments.
	ExtraArgs []string
	// Env is added to the CLI's environment (on top of the runner's own).
	Env []string
	// Telemetry leaves the CLI's telemetry and error reporting on.
	Telemetry bool

	// InitialPrompt is sent once in the life of the session, across restarts.
	InitialPrompt string
	// InterruptNotice is sent after a resume when the previous turn was
	// interrupted (default DefaultInterruptNotice); NoInterruptNotice turns
	// it off.
	InterruptNotice   string
	NoInterruptNotice bool

	// StartTimeout bounds how long the CLI may take to answer the initialize
	// request (default 60s); TurnStartTimeout how long it may stay silent
	// after a message is written to it (default 120s); StopTimeout how long
	// it gets to exit after its stdin is closed (default 12s: the operator
	// budgets 15s for the runner's whole stop).
	StartTimeout     time.Duration
	TurnStartTimeout time.Duration
	StopTimeout      time.Duration

	// Logger receives the runner's log lines (default slog.Default()).
	Logger *slog.Logger `json:"-"`
	// CLIStderr receives the CLI's stderr (default os.Stderr).
	CLIStderr *os.File `json:"-"`
}

func (c *Config) setDefaults() error {
	if c.Workspace == "" {
		return fmt.Errorf("runner: no workspace directory given")
	}
	ws, err := filepath.Abs(c.Workspace)
	if err != nil {
		return fmt.Errorf("runner: workspace %s: %w", c.Workspace, err)
	}
	c.Workspace = ws
	if c.Cwd == "" {
		c.Cwd = ws
	}
	if c.Cwd, err = filepath.Abs(c.Cwd); err != nil {
		return fmt.Errorf("runner: cwd %s: %w", c.Cwd, err)
	}
	if c.Thread == "" {
		c.Thread = "main"
	}
	if c.ClaudeBin == "" {
		c.ClaudeBin = "claude"
	}
	if c.AllowedTools == nil {
		c.AllowedTools = DefaultAllowedTools
	}
	if c.InterruptNotice == "" {
		c.InterruptNotice = DefaultInterruptNotice
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.TurnStartTimeout <= 0 {
		c.TurnStartTimeout = 120 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 12 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.CLIStderr == nil {
		c.CLIStderr = os.Stderr
	}
	return nil
}

// Files of the runner's state, relative to the workspace.
const (
	StateDir            = ".tether"
	EventLogFile        = ".tether/events.jsonl"
	StatusFile          = ".tether/runner-status.json"
	InitialPromptMarker = ".tether/initial-prompt-delivered"
	// SnapshotRequestFile is rewritten (atomically: a new inode renamed
	// into place) each time the runner wants the sync side to take a
	// snapshot now, e.g. the moment a new CLI session id is on disk. Its
	// content is a JSON object {"reason", "session_id", "time"}; the sync
	// watches the file (inotify on .tether/, or polling its mtime) and
	// treats any change as "snapshot now".
	SnapshotRequestFile = ".tether/snapshot-request"
	ClaudeDir           = ".claude"
	// CacheDir holds data the runner can rebuild (the AG-UI frame file);
	// snapshots leave it out.
	CacheDir = ".tether/cache"
)
