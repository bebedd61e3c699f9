package statesync

import (
	"fmt"
	"time"

	"github.com/tether-dev/tether/internal/snapshot"
)

// Config is everything the sync loop needs. Validate before use.
type Config struct {
	Workspace string
	// Debounce is how long the workspace must be quiet after a change before
	// a snapshot starts; MaxDelay bounds how long a stream of changes can
	// hold it back.
	Debounce time.Duration
	MaxDelay time.Duration
	// Rescan is the period of the full scan that catches what events missed.
	Rescan time.Duration
	// RepoInterval is the longest a repository goes without a capture, even
	// when no event was seen for it.
	RepoInterval time.Duration
	// FinalBudget bounds the final snapshot after SIGTERM.
	FinalBudget time.Duration
	// Keep is how many snapshots retention keeps (0: no retention).
	Keep int
	// CacheDir holds the stat cache and git object dirs.
	CacheDir string
	// Excludes are gitignore-style patterns anchored at the workspace root.
	Excludes []string
	// MaxBytes caps the bytes of files outside repositories per snapshot;
	// over it the largest files are left out and reported (0: no cap).
	MaxBytes int64
	// KeepIgnored is how many bytes of files git ignores inside the
	// workspace's repositories each snapshot keeps (see
	// snapshot.SaveOptions.KeepIgnored; 0: none).
	KeepIgnored int64
}

// Defaults: a snapshot follows a change within about a second; the rescan
// and the repository interval are the safety net under the events.
func Defaults() Config {
	return Config{
		Debounce:     300 * time.Millisecond,
		MaxDelay:     1500 * time.Millisecond,
		Rescan:       30 * time.Second,
		RepoInterval: 60 * time.Second,
		FinalBudget:  20 * time.Second,
		Keep:         50,
		Excludes:     DefaultExcludes,
		KeepIgnored:  snapshot.DefaultKeepIgnored,
	}
}

// durationFlag names a duration setting as the user wrote it.
type durationFlag struct {
	flag, env string
	value     time.Duration
}

// Validate reports the first bad setting, naming its flag and environment
// variable, so a bad configuration fails at start, not hours later.
func (c *Config) Validate() error {
	for _, d := range []durationFlag{
		{"--debounce", "TETHER_SYNC_DEBOUNCE", c.Debounce},
		{"--max-delay", "TETHER_SYNC_MAX_DELAY", c.MaxDelay},
		{"--rescan", "TETHER_SYNC_RESCAN", c.Rescan},
		{"--repo-interval", "TETHER_SYNC_REPO_INTERVAL", c.RepoInterval},
		{"--final-budget", "TETHER_SYNC_FINAL_BUDGET", c.FinalBudget},
	} {
		if d.value <= 0 {
			return fmt.Errorf("%s (env %s) must be a positive duration such as 500ms or 30s, got %s", d.flag, d.env, d.value)
		}
	}
	if c.MaxDelay < c.Debounce {
		return fmt.Errorf("--max-delay (%s) must not be shorter than --debounce (%s)", c.MaxDelay, c.Debounce)
	}
	if c.KeepIgnored < 0 {
		return fmt.Errorf("--keep-ignored must be 0 or more, got %d bytes", c.KeepIgnored)
	}
	if c.MaxBytes < 0 {
		return fmt.Errorf("--max-size must be positive, got %d bytes", c.MaxBytes)
	}
	if c.Keep < 0 {
		return fmt.Errorf("--keep (env TETHER_SYNC_KEEP) must be 0 (keep everything) or more, got %d", c.Keep)
	}
	if c.Workspace == "" {
		return fmt.Errorf("--workspace is required")
	}
	if _, err := NewMatcher(c.Excludes); err != nil {
		return err
	}
	return nil
}
