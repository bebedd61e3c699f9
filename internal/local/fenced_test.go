package local

import (
	"strings"
	"testing"
)

// A sync that exits fenced (another writer took the session over) is not
// restarted: the runner is stopped, and `tether run` ends with one error
// saying who took the session over.
func TestSupervisorSyncFenced(t *testing.T) {
	cfg, out := fakeConfig(t, "sleep", 512<<20)
	cfg.MemoryMode = MemoryWatchdog
	cfg.ExitWhenIdle = false
	cfg.Env = append(cfg.Env, "TETHER_FAKE_SYNC_FENCED=300ms")
	st, err := runSupervisor(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "SESSION TAKEN OVER: session default/sup-test was taken over by writer epoch 2 (host elsewhere") {
		t.Fatalf("Run returned %v, want the takeover named", err)
	}
	if sl := fakeSyncLog(t, cfg.Workspace); strings.Count(sl, "start ") != 1 {
		t.Errorf("a fenced sync was restarted:\n%s", sl)
	}
	if len(st.Deaths) != 0 || st.Runner.Life != 1 || st.State != StateFailed {
		t.Errorf("status after the takeover: %+v", st)
	}
	if !strings.Contains(out.String(), "the session was taken over: session default/sup-test") || !strings.Contains(out.String(), "stopping the runner") {
		t.Errorf("the terminal does not say the session was taken over:\n%s", out.String())
	}
}
