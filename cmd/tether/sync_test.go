package main

import (
	"strings"
	"testing"
)

func TestSyncBadConfiguration(t *testing.T) {
	ws := t.TempDir()
	store := "file://" + t.TempDir()
	for _, tc := range []struct {
		args []string
		env  [2]string
		code int
		want string
	}{
		{[]string{"--debounce", "0s"}, [2]string{}, exitUsage, "--debounce (env TETHER_SYNC_DEBOUNCE) must be a positive duration"},
		{[]string{"--rescan", "-5s"}, [2]string{}, exitUsage, "--rescan"},
		{[]string{"--repo-interval", "soon"}, [2]string{}, exitUsage, "repo-interval"},
		{nil, [2]string{"TETHER_SYNC_FINAL_BUDGET", "ten"}, exitUsage, "TETHER_SYNC_FINAL_BUDGET"},
		{[]string{"--workspace", "/nonexistent/ws"}, [2]string{}, exitUsage, "not a readable directory"},
		{[]string{"--store", "ftp://x/y"}, [2]string{}, exitError, "ftp"},
		{[]string{"--exclude", "../x"}, [2]string{}, exitUsage, "exclude pattern"},
	} {
		if tc.env[0] != "" {
			t.Setenv(tc.env[0], tc.env[1])
		}
		args := append([]string{"sync", "--session", "s1", "--store", store, "--workspace", ws}, tc.args...)
		code, _, errs := tether(t, args...)
		if code != tc.code || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%v %v: exit %d, %q; want exit %d and one line mentioning %q", tc.args, tc.env, code, errs, tc.code, tc.want)
		}
		if tc.env[0] != "" {
			t.Setenv(tc.env[0], "")
		}
	}
}

func TestHydrateCLI(t *testing.T) {
	store := "file://" + t.TempDir()
	ws := t.TempDir()
	code, out, errs := tether(t, "hydrate", "--session", "s1", "--store", store, "--workspace", ws, "--json")
	if code != 0 || !strings.Contains(out, `"outcome": "fresh"`) {
		t.Fatalf("hydrate: exit %d %q %q", code, out, errs)
	}
	if code, _, _ := tether(t, "hydrate", "--session", "s1", "--store", store, "--workspace", ws, "--repo", "#x"); code != exitUsage {
		t.Fatalf("hydrate with a bad --repo: exit %d", code)
	}
}
