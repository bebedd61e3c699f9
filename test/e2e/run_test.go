package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/local"
	"github.com/tether-dev/tether/internal/runner"
	"github.com/tether-dev/tether/test/claudecli"
	"github.com/tether-dev/tether/test/modelserver"
)

// `tether run --prompt` without a terminal runs the prompt to completion and
// exits after the final snapshot; running it again continues the same
// conversation: the same prompt is not sent twice, a new one is the next
// message, and the CLI session is resumed, not replaced.
func TestRunPromptThenContinue(t *testing.T) {
	needCommand(t, "run")
	claude := claudecli.Bin(t)
	srv := modelserver.Start(t.Logf,
		modelserver.Step{Cue: "[e2e-first]", Reply: []modelserver.Block{modelserver.Text("first answer")}},
		modelserver.Step{Cue: "[e2e-second]", Reply: []modelserver.Block{modelserver.Text("second answer")}},
	)
	defer srv.Close()
	tmp := t.TempDir()
	ws := filepath.Join(tmp, "ws")
	env := []string{"ANTHROPIC_BASE_URL=" + srv.URL(), "ANTHROPIC_API_KEY=test", "XDG_CACHE_HOME=" + filepath.Join(tmp, "cache")}
	run := func(prompt string) result {
		r := tether(t, env, "run", "--workspace", ws, "--store", "file://"+filepath.Join(tmp, "store"), "--session", "e2e-run",
			"--agent-cmd", claude, "--memory-limit", "2G", "--prompt", prompt)
		t.Logf("tether run --prompt %q: exit %d\n%s%s", prompt, r.code, r.stdout, r.stderr)
		if r.code != 0 {
			t.Fatalf("exit %d", r.code)
		}
		return r
	}
	r := run("say hi [e2e-first]")
	if !strings.Contains(r.stdout, "first answer") || !strings.Contains(r.stdout, "final snapshot done") {
		t.Errorf("first run output lacks the answer or the final snapshot")
	}
	st1 := runnerStatus(t, ws)
	sup, err := local.ReadStatus(ws)
	if err != nil || sup.State != local.StateStopped || len(sup.Deaths) != 0 || sup.Hydrate != "fresh" {
		t.Errorf("supervisor.json after the first run: %+v %v", sup, err)
	}
	ls := tether(t, env, "snapshot", "ls", "--store", "file://"+filepath.Join(tmp, "store"), "--session", "e2e-run")
	if ls.code != 0 || !strings.Contains(ls.stdout, "0000") {
		t.Errorf("snapshot ls: %d %s %s", ls.code, ls.stdout, ls.stderr)
	}

	r = run("say hi [e2e-first]")
	if !strings.Contains(r.stdout, "already had this prompt") {
		t.Errorf("the same prompt again was not recognized")
	}
	r = run("and now [e2e-second]")
	if !strings.Contains(r.stdout, "second answer") {
		t.Errorf("the follow-up prompt was not answered")
	}
	st3 := runnerStatus(t, ws)
	if st3.SessionID != st1.SessionID || st3.Resume.Outcome != runner.ResumeResumed {
		t.Errorf("session %s -> %s (resume %s): want the same session, resumed", st1.SessionID, st3.SessionID, st3.Resume.Outcome)
	}
	counts := map[string]int{}
	b, _ := os.ReadFile(filepath.Join(ws, runner.EventLogFile))
	for _, line := range strings.Split(string(b), "\n") {
		var rec runner.Record
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Kind == runner.KindInput {
			counts[rec.Type]++
		}
	}
	if counts[runner.SourceInitial] != 1 || counts[runner.SourceUser] != 1 {
		t.Errorf("inputs %v: want the initial prompt once and the follow-up once", counts)
	}
}

func runnerStatus(t *testing.T, ws string) runner.Status {
	t.Helper()
	var s runner.Status
	b, err := os.ReadFile(filepath.Join(ws, runner.StatusFile))
	if err != nil || json.Unmarshal(b, &s) != nil {
		t.Fatalf("runner status: %v", err)
	}
	return s
}
