// Package e2e runs the tether binary end to end on one machine: `tether run`'s
// input checks and `tether demo` with the real Claude Code CLI and a real
// kernel OOM kill.
package e2e
