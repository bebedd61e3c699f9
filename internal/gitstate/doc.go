// Package gitstate captures the full working state of a git repository
// (commits, refs, index, working tree with untracked and binary files,
// in-progress operations) as a chain of incremental bundles plus a small JSON
// State, without touching the user's repository, and restores it exactly.
//
// Neither side trusts what it reads. Every git command runs through Command:
// no inherited GIT_* variables, HOME an empty directory, no system or global
// config, and -c overrides that switch off hooks, fsmonitor, askpass,
// credential helpers, the ssh command, signing and global attributes; a
// capture also switches off, by name, every filter driver the repository's
// config defines. A State read back (from the store, which whoever holds its
// credentials can write) must pass State.Validate, and only the config
// entries AllowedConfig accepts (the same allow-list capture uses) are
// written back, so no restore, and no git command the agent runs afterwards,
// starts a program a State names; captured config values lose URL
// credentials and token-shaped strings (package redact).
package gitstate
