// Package demo is `tether demo`: a real Claude Code CLI, driven by a scripted
// model server, builds a small project in a git repository under `tether run`'s
// supervisor, then runs a command that blows the runner's memory limit in the
// middle of a turn; the kernel kills the runner, tether recovers and resumes
// the same session, and the demo checks that nothing was lost.
package demo
