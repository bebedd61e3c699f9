// Package agent speaks to the Claude Code CLI: it parses the CLI's stream-json
// output lines, knows where the CLI keeps a session's transcript and repairs a
// transcript a crash left with a torn last line, and stores the CLI session id of
// each thread crash-safely.
package agent
