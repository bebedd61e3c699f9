package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/local"
)

// TestRunPassesSaveAndRestoreFlags: `tether run` hands --keep-ignored to its
// sync child (whatever the child's environment says) and --keep-setuid to
// its hydrate; a bad TETHER_KEEP_IGNORED stops it with a usage error naming
// the variable, before anything runs.
func TestRunPassesSaveAndRestoreFlags(t *testing.T) {
	var got *local.Config
	saved := runSession
	runSession = func(cfg local.Config) error { got = &cfg; return nil }
	t.Cleanup(func() { runSession = saved })
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	base := []string{"run", "--workspace", t.TempDir(), "--agent-cmd", "/bin/true", "--session", "s1"}

	for _, tc := range []struct {
		args       []string
		env        string
		wantIgnore string
		wantSetuid bool
	}{
		{nil, "", "67108864", false},
		{[]string{"--keep-ignored", "1M", "--keep-setuid"}, "", "1048576", true},
		{[]string{"--keep-ignored", "none"}, "", "0", false},
		{nil, "2K", "2048", false},
	} {
		got = nil
		t.Setenv(keepIgnoredEnv, tc.env)
		if code, _, errs := tether(t, append(base, tc.args...)...); code != 0 || got == nil {
			t.Fatalf("run %q (env %q): exit %d: %s", tc.args, tc.env, code, errs)
		}
		i := slices.Index(got.SyncArgs, "--keep-ignored")
		if i < 0 || i+1 >= len(got.SyncArgs) || got.SyncArgs[i+1] != tc.wantIgnore {
			t.Errorf("run %q (env %q): sync args %q, want --keep-ignored %s", tc.args, tc.env, got.SyncArgs, tc.wantIgnore)
		}
		if got.KeepSetuid != tc.wantSetuid {
			t.Errorf("run %q: KeepSetuid %v, want %v", tc.args, got.KeepSetuid, tc.wantSetuid)
		}
	}

	got = nil
	t.Setenv(keepIgnoredEnv, "lots")
	code, _, errs := tether(t, base...)
	if code != 2 || got != nil || !strings.Contains(errs, keepIgnoredEnv) {
		t.Errorf("run with %s=lots: exit %d, ran %v, stderr %q; want exit 2 naming the variable", keepIgnoredEnv, code, got != nil, errs)
	}
}
