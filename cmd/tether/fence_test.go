package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/cliutil"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/statesync"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// syncProc is a real `tether sync` process (this test binary as tether).
type syncProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
	code   int
}

func startSyncProc(t *testing.T, args ...string) *syncProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &syncProc{done: make(chan struct{})}
	p.cmd = exec.Command(self, append([]string{"sync", "--debounce", "20ms", "--max-delay", "100ms", "--keep", "0"}, args...)...)
	p.cmd.Env = append(os.Environ(), "TETHER_CMD_TEST_MAIN=1", "XDG_CACHE_HOME="+t.TempDir())
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestSyncFencedProcess: real `tether sync` processes, two workspaces, one
// session. The second workspace is hydrated while the first sync runs; the
// first sync then stops at its next save attempt, exits ExitFenced and says
// in its last line who took the session over; every newer snapshot is the
// second workspace's, and `snapshot ls` marks any late one of the first.
func TestSyncFencedProcess(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		if b.Name == "gofakes3" {
			continue // in-process: a child process cannot reach it
		}
		t.Run(b.Name, func(t *testing.T) {
			for rep := range 3 {
				t.Run(fmt.Sprint(rep), func(t *testing.T) { fencedProcess(t, b.URL, fmt.Sprintf("proc%d", rep)) })
			}
		})
	}
}

func fencedProcess(t *testing.T, url, session string) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 2))
	ctx := context.Background()
	common := []string{"--store", url, "--session", session}
	wsA, wsB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	writer := func(ws string) *snapshot.Writer {
		data, err := os.ReadFile(filepath.Join(ws, statesync.WriterFile))
		if err != nil {
			t.Fatal(err)
		}
		var w snapshot.Writer
		if err := json.Unmarshal(data, &w); err != nil {
			t.Fatal(err)
		}
		return &w
	}

	if code, _, errs := tether(t, append([]string{"hydrate", "--workspace", wsA}, common...)...); code != 0 {
		t.Fatalf("hydrate A: exit %d: %s", code, errs)
	}
	wA := writer(wsA)
	a := startSyncProc(t, append([]string{"--workspace", wsA}, common...)...)
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	repo, _ := snapshot.OpenRepo(st, "default", session)
	newest := func() *snapshot.Manifest {
		id, err := repo.Latest(ctx)
		if err != nil || id == "" {
			return nil
		}
		m, _ := repo.LoadManifest(ctx, id)
		return m
	}
	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s; A's stderr:\n%s", what, a.stderr.String())
			}
		}
	}
	edit := func(ws, name string) {
		if err := os.WriteFile(filepath.Join(ws, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit(wsA, "a0.txt")
	waitUntil("A's first snapshot", func() bool { m := newest(); return m != nil && m.Writer == wA.ID })

	// A keeps editing at random; B takes over at a random moment.
	stopEdits := make(chan struct{})
	edits := make(chan int)
	erng := rand.New(rand.NewPCG(rng.Uint64(), 2)) // the editor's own: a rand.Rand is not safe for concurrent use
	go func() {
		i := 1
		for {
			select {
			case <-stopEdits:
				edits <- i
				return
			case <-time.After(time.Duration(erng.Int64N(int64(40 * time.Millisecond)))):
				edit(wsA, fmt.Sprintf("a%d.txt", i))
				i++
			}
		}
	}()
	time.Sleep(time.Duration(rng.Int64N(int64(500 * time.Millisecond))))
	if code, _, errs := tether(t, append([]string{"hydrate", "--workspace", wsB}, common...)...); code != 0 {
		t.Fatalf("hydrate B: exit %d: %s", code, errs)
	}
	wB := writer(wsB)
	b := startSyncProc(t, append([]string{"--workspace", wsB}, common...)...)

	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("sync A still runs 15s after the takeover; stderr:\n%s", a.stderr.String())
	}
	close(stopEdits)
	nA := <-edits
	line := lastLine(a.stderr.String())
	if a.code != cliutil.ExitFenced {
		t.Fatalf("sync A exited %d, want %d (fenced); stderr:\n%s", a.code, cliutil.ExitFenced, a.stderr.String())
	}
	for _, want := range []string{"tether: session default/" + session + " was taken over by writer epoch 2", "hydrate", "stopped saving"} {
		if !strings.Contains(line, want) {
			t.Errorf("A's last line %q lacks %q", line, want)
		}
	}

	edit(wsB, "b-final.txt")
	waitUntil("B's snapshot of b-final.txt", func() bool {
		m := newest()
		if m == nil || m.Writer != wB.ID {
			return false
		}
		for _, e := range m.Entries {
			if e.Path == "b-final.txt" {
				return true
			}
		}
		return false
	})
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	<-b.done
	if b.code != 0 {
		t.Fatalf("sync B exited %d: %s", b.code, b.stderr.String())
	}

	// No snapshot of A after one of B, except stale ones, which ls marks.
	code, out, errs := tether(t, append([]string{"snapshot", "ls", "--json"}, common...)...)
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, errs)
	}
	var list []lsEntry
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	seenB, stale := false, 0
	for _, e := range list {
		if e.Stale != nil {
			stale++
			if e.Epoch != wA.Epoch || e.Stale.FencedBy != wB.Epoch || e.ID <= wB.Observed {
				t.Errorf("snapshot %s is marked %s, epoch %d (B observed %s)", e.ID, e.Stale, e.Epoch, wB.Observed)
			}
			continue
		}
		switch e.Epoch {
		case wB.Epoch:
			seenB = true
		case wA.Epoch:
			if seenB || e.ID > wB.Observed {
				t.Errorf("interleaving: A's snapshot %s after B took over (observed %s) and not stale", e.ID, wB.Observed)
			}
		}
	}
	if stale > 1 {
		t.Errorf("%d stale snapshots: A wrote more than the one in flight", stale)
	}
	if stale > 0 {
		_, text, _ := tether(t, append([]string{"snapshot", "ls"}, common...)...)
		if !strings.Contains(text, fmt.Sprintf("stale writer (epoch %d, fenced by epoch %d)", wA.Epoch, wB.Epoch)) {
			t.Errorf("ls does not mark the stale snapshot:\n%s", text)
		}
	}
	t.Logf("seed %d: A made %d edits; %d snapshots, %d stale; A's last line: %s", seed, nA, len(list), stale, line)
}
