package gitstate

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/tether-dev/tether/internal/redact"
)

// A State comes back from the store, which whoever holds its credentials
// can write: restore takes nothing in it on trust. Validate refuses what git
// itself could never have produced (an object id that is an option, a ref
// name that injects a command into update-ref's input, a path outside the
// repository), and only config entries AllowedConfig accepts are written
// back, so nothing in a State can make a restore, or the git commands the
// agent runs afterwards, start a program: no filter, fsmonitor, hooksPath,
// sshCommand, include, external diff or textconv, merge driver or
// upload-pack. (Hooks and aliases are restored: they run only when the user
// commits or types the alias, as the workspace's own scripts do.)

// configSections are the config sections whose entries a restore brings
// back: remotes, upstreams, submodules, identity and the settings that
// change how git behaves for the user. Left out on purpose: credential.*,
// http.* (extra headers carry tokens), url.* (insteadOf keys carry
// credentials), filter.*, include.*, includeIf.*, gpg.*, and everything about
// the repository's layout, which init decides anew.
var configSections = map[string]bool{
	"remote": true, "branch": true, "submodule": true, "user": true, "pull": true, "push": true,
	"fetch": true, "merge": true, "rebase": true, "commit": true, "tag": true, "diff": true,
	"status": true, "log": true, "format": true, "alias": true, "rerere": true, "color": true,
}

// coreKeys are the core.* variables restored: line endings and display.
var coreKeys = map[string]bool{
	"autocrlf": true, "eol": true, "safecrlf": true, "whitespace": true, "quotepath": true, "abbrev": true,
}

// programKeys are variables of the allowed sections that name a program (or
// a file to read) git would run or read on its own; they are never kept.
// Keyed by section, then by variable; subsection is "" for variables without
// one and "*" for any subsection.
var programKeys = map[string]map[string]string{
	"diff":   {"external": "", "command": "*", "textconv": "*"},
	"merge":  {"driver": "*"},
	"remote": {"uploadpack": "*", "receivepack": "*", "vcs": "*"},
	"commit": {"template": ""},
}

var (
	configSection = regexp.MustCompile(`^[A-Za-z0-9-]+$`)
	configVar     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*$`)
)

// canonicalKey returns key in the form git prints it (section and variable
// lower case, subsection as is), or false when it is not a valid key.
func canonicalKey(key string) (canon, section, sub, name string, ok bool) {
	first, last := strings.Index(key, "."), strings.LastIndex(key, ".")
	if first <= 0 || last == len(key)-1 || strings.ContainsAny(key, "\n\x00") {
		return "", "", "", "", false
	}
	section, name = strings.ToLower(key[:first]), strings.ToLower(key[last+1:])
	if first != last {
		sub = key[first+1 : last]
	}
	if !configSection.MatchString(section) || !configVar.MatchString(name) {
		return "", "", "", "", false
	}
	canon = section + "." + name
	if first != last {
		canon = section + "." + sub + "." + name
	}
	return canon, section, sub, name, true
}

// AllowedConfig reports whether the repository-local config entry key=value
// is one that Capture records and Restore writes back. It is the one
// allow-list both use: an entry outside it is never captured, and is dropped
// (with a warning) when a State from elsewhere holds it.
func AllowedConfig(key, value string) bool {
	_, section, sub, name, ok := canonicalKey(key)
	if !ok || strings.ContainsRune(value, 0) {
		return false
	}
	if section == "core" {
		return sub == "" && coreKeys[name]
	}
	if !configSections[section] {
		return false
	}
	if want, ok := programKeys[section][name]; ok && (want == "*") == (sub != "") {
		return false
	}
	// A submodule's update mode "!command" runs the command on
	// `git submodule update`.
	if section == "submodule" && name == "update" && strings.HasPrefix(strings.TrimSpace(value), "!") {
		return false
	}
	return true
}

// CleanConfigValue removes credentials from a config value: the user
// information, query and fragment of a URL (SanitizeURL), then every URL
// credential and token-shaped string in free text (aliases, descriptions).
func CleanConfigValue(v string) string {
	return redact.String(SanitizeURL(v))
}

// maxKeyInMessage bounds a key named in a warning or problem: it comes from
// the store.
const maxKeyInMessage = 200

// showKey is a config key as it may appear in a message: redacted (a
// subsection can hold a URL with credentials) and bounded.
func showKey(k string) string {
	return truncate(redact.String(strings.ToValidUTF8(k, "?")), maxKeyInMessage)
}

// UnsafeConfig returns the config keys of st that AllowedConfig refuses,
// redacted for showing: a restore drops them, and a State that holds any was
// not written by Capture.
func (st *State) UnsafeConfig() []string {
	var keys []string
	for _, c := range st.Config {
		if !AllowedConfig(c.Key, c.Value) {
			keys = append(keys, showKey(c.Key))
		}
	}
	return keys
}

// Validate checks everything a restore passes to git or writes into the
// repository's git directory: object ids are full hex ids of the State's
// object format (never options or revision expressions), ref names and
// paths are ones git could have written, and the info files, hooks and
// operation files named are among those Capture records. It does not judge
// config entries: see UnsafeConfig.
func (st *State) Validate() error {
	if st == nil {
		return fmt.Errorf("no state")
	}
	if st.Version != StateVersion {
		return fmt.Errorf("state has format version %d, this tether reads %d: use a matching tether", st.Version, StateVersion)
	}
	hexLen := 40
	switch st.ObjectFormat {
	case "", "sha1":
	case "sha256":
		hexLen = 64
	default:
		return fmt.Errorf("state has object format %q; git knows sha1 and sha256", truncate(st.ObjectFormat, 40))
	}
	id := func(what, v string, optional bool) error {
		if v == "" && optional {
			return nil
		}
		if len(v) != hexLen || !isHex(v) {
			return fmt.Errorf("state holds %s %q, which is not a full %d-digit object id", what, truncate(v, 80), hexLen)
		}
		return nil
	}
	for _, c := range []struct {
		what     string
		v        string
		optional bool
	}{
		{"the snapshot commit", st.Snapshot, false},
		{"the working tree", st.WorktreeTree, false},
		{"the staged commit", st.Staged, true},
		{"the staged tree", st.StagedTree, false},
		{"the conflicts commit", st.Conflicts, true},
		{"the conflicts tree", st.ConflictsTree, true},
		{"HEAD's commit", st.Head.Commit, !st.Head.Detached()},
	} {
		if err := id(c.what, c.v, c.optional); err != nil {
			return err
		}
	}
	if err := validateRefs(st); err != nil {
		return err
	}
	for _, r := range st.Refs {
		if err := id("the target of ref "+r.Name, r.Target, r.Symref != ""); err != nil {
			return err
		}
		if r.Symref != "" && r.Target != "" {
			return fmt.Errorf("state holds ref %q with both a target and a symref", r.Name)
		}
	}
	for _, s := range st.Stash {
		if err := id("a stash entry", s.Commit, false); err != nil {
			return err
		}
		if strings.ContainsRune(s.Message, 0) {
			return fmt.Errorf("state holds a stash message with a NUL byte")
		}
	}
	if err := validateReflogs(st, hexLen); err != nil {
		return err
	}
	for _, s := range st.Shallow {
		if err := id("a shallow commit", s, false); err != nil {
			return err
		}
	}
	for _, s := range st.Submodules {
		if err := id("the commit of submodule "+truncate(s.Path, 80), s.Commit, false); err != nil {
			return err
		}
	}
	for _, p := range st.IntentToAdd {
		if !validRelPath(p) {
			return fmt.Errorf("state holds an intent-to-add path %q outside the repository", truncate(p, 200))
		}
	}
	for n := range st.Info {
		if !validInfoName(n) {
			return fmt.Errorf("state names an unexpected info file %q", truncate(n, 80))
		}
	}
	for n := range st.Hooks {
		if !validHookName(n) {
			return fmt.Errorf("state names an unexpected hook %q", truncate(n, 80))
		}
	}
	if st.Operation != nil {
		for rel := range st.Operation.Files {
			if !validOpFile(rel) {
				return fmt.Errorf("operation %s names an unexpected state file %q", truncate(st.Operation.Kind, 40), truncate(rel, 200))
			}
		}
	}
	return nil
}

// validRelPath accepts a clean, relative, slash-separated path inside the
// repository and outside its .git.
func validRelPath(p string) bool {
	return p != "" && path.Clean(p) == p && !path.IsAbs(p) && p != ".." && !strings.HasPrefix(p, "../") &&
		p != ".git" && !strings.HasPrefix(p, ".git/") && !strings.ContainsRune(p, 0)
}

// validOpFile accepts the state files of operations Capture records.
func validOpFile(rel string) bool {
	clean := path.Clean(rel)
	if clean != rel || strings.HasPrefix(clean, "../") || path.IsAbs(clean) {
		return false
	}
	for _, f := range opFiles {
		if clean == f {
			return true
		}
	}
	for _, d := range opDirs {
		if strings.HasPrefix(clean, d+"/") {
			return true
		}
	}
	return false
}
