// Package runner drives one long-lived Claude Code CLI process for a thread of a
// session: it saves the CLI session id the moment it exists, resumes after a
// crash and says whether that worked, keeps a durable log of every event, and
// serves the conversation over HTTP (AG-UI).
package runner
