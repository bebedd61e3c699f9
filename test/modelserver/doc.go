// Package modelserver is a scripted Anthropic Messages API server on 127.0.0.1
// that the real Claude Code CLI can talk to in tests: it streams text and
// tool_use blocks chosen by cues in the latest user message, and records every
// request so a test can assert on the history the CLI sent.
package modelserver
