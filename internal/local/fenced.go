package local

import (
	"fmt"
	"strings"

	"github.com/tether-dev/tether/internal/cliutil"
)

// syncFenced reports whether a sync child exited because a newer writer took
// the session over (a hydrate or a `tether run` elsewhere), and its one line
// saying who. Restarting it cannot help: it would be fenced again.
func syncFenced(c *child) (string, bool) {
	if c.state == nil {
		return "", false
	}
	_, _, code := describeExit(c.state)
	if code == nil || *code != cliutil.ExitFenced {
		return "", false
	}
	return strings.TrimPrefix(c.tail.LastLine(), "tether: "), true
}

// fencedError is what `tether run` ends with when its sync was fenced.
func fencedError(session, line string) error {
	return fmt.Errorf("SESSION TAKEN OVER: %s. Nothing here is saved any more: %s continues where the new writer runs; this workspace still holds everything it had", line, session)
}
