package statesync

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// DefaultExcludes are left out of every snapshot unless --exclude is given
// (which replaces them): dependency and build caches an agent can recreate.
// Patterns are anchored at the workspace root; "**/" matches at any depth.
var DefaultExcludes = []string{"**/node_modules/", "**/.venv/", "**/__pycache__/", ".cache/", ".npm/"}

// Matcher holds gitignore-style patterns anchored at the workspace root:
// "a/b" matches that path only, "**/x" matches x at any depth, "*" and "?"
// never cross a slash, a trailing slash matches directories only, and a
// matched directory excludes everything below it.
type Matcher struct {
	pats []pattern
}

type pattern struct {
	glob    string
	dirOnly bool
}

// NewMatcher checks and compiles patterns; a bad one is an error naming it.
func NewMatcher(patterns []string) (*Matcher, error) {
	m := &Matcher{}
	for _, p := range patterns {
		raw := p
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("exclude pattern %q is empty", raw)
		}
		pt := pattern{}
		if strings.HasSuffix(p, "/") {
			pt.dirOnly = true
			p = strings.TrimRight(p, "/")
		}
		p = strings.TrimPrefix(p, "/")
		if p == "" || strings.Contains(p, "..") {
			return nil, fmt.Errorf("exclude pattern %q is not valid: use a path relative to the workspace such as build/ or **/node_modules/", raw)
		}
		if !doublestar.ValidatePattern(p) {
			return nil, fmt.Errorf("exclude pattern %q is not a valid glob", raw)
		}
		pt.glob = p
		m.pats = append(m.pats, pt)
	}
	return m, nil
}

// Match reports whether rel (slash-separated, relative to the workspace) is
// excluded. Directories are asked about before their contents, so a matched
// directory's contents are never asked about.
func (m *Matcher) Match(rel string, isDir bool) bool {
	if m == nil {
		return false
	}
	for _, p := range m.pats {
		if p.dirOnly && !isDir {
			continue
		}
		if ok, _ := doublestar.Match(p.glob, rel); ok {
			return true
		}
	}
	return false
}
