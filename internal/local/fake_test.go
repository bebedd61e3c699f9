package local

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/cliutil"
	"github.com/tether-dev/tether/internal/fsutil"
	"github.com/tether-dev/tether/internal/runner"
	"github.com/tether-dev/tether/internal/statesync"
)

// The fake children: with TETHER_TEST_FAKE=1 the test binary plays
// `tether runner` and `tether sync` for supervisor tests that must not depend
// on the real CLI. The fake runner writes the real runner's files (status,
// event log via runner.OpenEventLog, initial-prompt marker); what each life
// does comes from TETHER_FAKE_PLAN, a comma-separated list:
//
//	hog    start a memory hog and a sleeper (the CLI and a tool) and wait
//	exitN  exit with status N after 100 ms
//	sleep  wait (for SIGTERM, or a kill from the test)
//	done   finish the open turn (a result record) and wait for SIGTERM
func fakeMain() {
	ws := ""
	for i, a := range os.Args {
		if a == "--workspace" && i+1 < len(os.Args) {
			ws = os.Args[i+1]
		}
	}
	if os.Getenv(statesync.EnvGitToken) != "" || os.Getenv(statesync.EnvGitTokenFile) != "" {
		// Tells TestSupervisorKeepsGitTokenFromChildren a child got it.
		_ = os.WriteFile(filepath.Join(ws, ".tether/fake-saw-git-token-"+os.Args[1]), nil, 0o644)
	}
	switch os.Args[1] {
	case "runner":
		fakeRunner(ws)
	case "sync":
		fakeSync(ws)
	}
	os.Exit(5)
}

func fakeRunner(ws string) {
	livesFile := filepath.Join(ws, ".tether/fake-lives")
	f, _ := os.OpenFile(livesFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	f.Close()
	b, _ := os.ReadFile(livesFile)
	life := strings.Count(string(b), "\n")
	plan := strings.Split(os.Getenv("TETHER_FAKE_PLAN"), ",")
	action := plan[len(plan)-1]
	if life <= len(plan) {
		action = plan[life-1]
	}
	fmt.Fprintf(os.Stderr, "fake runner life %d: %s\n", life, action)

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	log, recs, err := runner.OpenEventLog(filepath.Join(ws, runner.EventLogFile))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var lastInput, lastResult int64
	for _, r := range recs {
		if r.Kind == runner.KindInput {
			lastInput = r.Turn
		}
		if r.Kind == runner.KindCLI && r.Type == "result" {
			lastResult = r.Turn
		}
	}
	st := runner.Status{Thread: "main", State: runner.StateReady, SessionID: "fake-session", RunnerPID: os.Getpid(),
		Resume: runner.ResumeStatus{Outcome: runner.ResumeNone}, Turns: lastInput}
	if life > 1 {
		st.Resume = runner.ResumeStatus{Outcome: runner.ResumeResumed, PreviousID: "fake-session", SessionID: "fake-session"}
	}
	save := func() {
		st.UpdatedAt = time.Now().UTC()
		b, _ := json.Marshal(st)
		fsutil.WriteFileAtomic(filepath.Join(ws, runner.StatusFile), b, 0o644)
	}
	if lastInput == 0 {
		lastInput = 1
		log.Append(1, runner.KindInput, runner.SourceInitial, json.RawMessage(`{"text":"build it"}`), true)
		fsutil.WriteFileAtomic(filepath.Join(ws, runner.InitialPromptMarker), []byte("{}\n"), 0o644)
		log.Append(1, runner.KindCLI, "assistant", json.RawMessage(`{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"working on it"},{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"make"}}]}}`), false)
	}
	st.TurnOpen = lastResult < lastInput
	save()

	switch {
	case action == "hog":
		for _, role := range []string{"sleep", "hog"} {
			c := exec.Command(os.Args[0])
			c.Env = append(os.Environ(), "TETHER_TEST_ROLE="+role, "TETHER_TEST_HOG_MB=2048")
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if role == "hog" {
				// The CLI starts its tools detached, in sessions of their own.
				c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			}
			c.Stderr = os.Stderr
			c.Start()
			go c.Wait()
		}
	case strings.HasPrefix(action, "exit"):
		time.Sleep(100 * time.Millisecond)
		n, _ := strconv.Atoi(strings.TrimPrefix(action, "exit"))
		fmt.Fprintf(os.Stderr, "fake runner: failing with %d on purpose\n", n)
		os.Exit(n)
	case action == "stubborn":
		// Ignores SIGTERM: only a force stops it.
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Hour)
	case action == "done":
		time.Sleep(50 * time.Millisecond)
		if lastResult < lastInput {
			log.Append(lastInput, runner.KindCLI, "result", json.RawMessage(`{"type":"result","subtype":"success","is_error":false,"session_id":"fake-session","duration_ms":7}`), true)
		}
		st.TurnOpen = false
		save()
	}
	<-term
	st.State = runner.StateStopped
	save()
	log.Close()
	os.Exit(0)
}

func fakeSync(ws string) {
	logf := func(format string, args ...any) {
		f, _ := os.OpenFile(filepath.Join(ws, ".tether/fake-sync.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		fmt.Fprintf(f, format+"\n", args...)
		f.Close()
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	logf("start %d", os.Getpid())
	if d, err := time.ParseDuration(os.Getenv("TETHER_FAKE_SYNC_DIE")); err == nil && strings.Count(fakeSyncLogText(ws), "start ") == 1 {
		// The first sync crashes once, as a sync hitting a bug would.
		time.AfterFunc(d, func() { logf("crash"); os.Exit(7) })
	}
	if d, err := time.ParseDuration(os.Getenv("TETHER_FAKE_SYNC_FENCED")); err == nil {
		// A newer writer takes the session over: what `tether sync` prints and exits.
		time.AfterFunc(d, func() {
			logf("fenced")
			fmt.Fprintln(os.Stderr, "tether: session default/sup-test was taken over by writer epoch 2 (host elsewhere, hydrate, at 2026-12-03T08:00:00Z by its clock); this writer, epoch 1 (host here, hydrate), stopped saving and wrote nothing more: the session's work continues there")
			os.Exit(cliutil.ExitFenced)
		})
	}
	var last time.Time
	req := filepath.Join(ws, statesync.SnapshotRequestFile)
	for {
		select {
		case <-term:
			if os.Getenv("TETHER_FAKE_SYNC_SLOW_FINAL") != "" {
				time.Sleep(time.Hour)
			}
			time.Sleep(50 * time.Millisecond)
			logf("final")
			os.Exit(0)
		case <-time.After(10 * time.Millisecond):
		}
		if fi, err := os.Stat(req); err == nil && fi.ModTime() != last {
			last = fi.ModTime()
			b, _ := os.ReadFile(req)
			logf("request %s", strings.TrimSpace(string(b)))
		}
	}
}

func fakeSyncLogText(ws string) string {
	b, _ := os.ReadFile(filepath.Join(ws, ".tether/fake-sync.log"))
	return string(b)
}
