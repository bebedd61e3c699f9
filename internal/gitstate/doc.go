// Package gitstate captures the full working state of a git repository
// (commits, refs, index, working tree with untracked and binary files,
// in-progress operations) as a chain of incremental bundles plus a small JSON
// State, without touching the user's repository, and restores it exactly.
package gitstate
