package agent

import (
	"bufio"
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
)

func TestSessionIDs(t *testing.T) {
	ws := t.TempDir()
	s := OpenSessionIDs(ws)
	if id, err := s.Get("main"); err != nil || id != "" {
		t.Fatalf("empty store: %q %v", id, err)
	}
	if ch, err := s.Set("main", "id-1"); err != nil || !ch {
		t.Fatalf("Set: %v %v", ch, err)
	}
	if ch, err := s.Set("main", "id-1"); err != nil || ch {
		t.Errorf("repeated Set must not write: %v %v", ch, err)
	}
	if _, err := s.Set("other", "id-2"); err != nil {
		t.Fatal(err)
	}
	// A fresh store reads what the first one wrote.
	all, err := OpenSessionIDs(ws).All()
	if err != nil || len(all) != 2 || all["main"] != "id-1" || all["other"] != "id-2" {
		t.Errorf("reopened: %v %v", all, err)
	}
	ents, _ := os.ReadDir(filepath.Join(ws, ".tether"))
	if len(ents) != 1 {
		t.Errorf(".tether holds %d entries, want only session-ids.json (no temp files)", len(ents))
	}
	if _, err := s.Set("", "x"); err == nil {
		t.Error("empty thread accepted")
	}
}

func TestSessionIDsDamagedFile(t *testing.T) {
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, ".tether"), 0o755)
	writeFile(t, filepath.Join(ws, SessionIDsFile), `{"main":"id-`)
	_, err := OpenSessionIDs(ws).Get("main")
	if err == nil || !strings.Contains(err.Error(), "session-ids.json") {
		t.Errorf("damaged store: err = %v, want an error naming the file", err)
	}
	if _, err := OpenSessionIDs(ws).Set("main", "x"); err == nil {
		t.Error("Set over a damaged store must not silently reset it")
	}
}

// TestSessionIDsSurviveKill SIGKILLs a process that keeps rewriting the store,
// at random moments after its first write, and checks the file is always a
// complete JSON map. (The writer says when it has written once: a fixed
// delay from its start let a loaded machine's slow process start decide
// whether any kill landed mid-work.)
func TestSessionIDsSurviveKill(t *testing.T) {
	if os.Getenv("TETHER_SESSIONIDS_WRITER") != "" {
		return
	}
	ws := t.TempDir()
	for i := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSessionIDsWriter$")
		cmd.Env = append(os.Environ(), "TETHER_SESSIONIDS_WRITER="+ws)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started := make(chan error, 1)
		go func() {
			line, err := bufio.NewReader(out).ReadString('\n')
			if err == nil && line != "wrote\n" {
				err = fmt.Errorf("writer said %q", line)
			}
			started <- err
		}()
		select {
		case err := <-started:
			if err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("kill %d: the writer did not report its first write: %v", i, err)
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("kill %d: the writer wrote nothing in a minute", i)
		}
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		data, err := os.ReadFile(filepath.Join(ws, SessionIDsFile))
		var m map[string]string
		if err != nil || json.Unmarshal(data, &m) != nil || m["main"] == "" {
			t.Fatalf("kill %d: store torn: %q (%v)", i, data, err)
		}
	}
}

// TestSessionIDsWriter is the child of TestSessionIDsSurviveKill: it prints
// "wrote" after its first write, then rewrites the store until killed.
func TestSessionIDsWriter(t *testing.T) {
	ws := os.Getenv("TETHER_SESSIONIDS_WRITER")
	if ws == "" {
		t.Skip("helper process of TestSessionIDsSurviveKill")
	}
	s := OpenSessionIDs(ws)
	for i := 0; ; i++ {
		if _, err := s.Set("main", fmt.Sprintf("id-%d-%s", i, strings.Repeat("x", i%500))); err != nil {
			panic(err)
		}
		if i == 0 {
			fmt.Println("wrote")
		}
	}
}

func BenchmarkSessionIDsSet(b *testing.B) {
	s := OpenSessionIDs(b.TempDir())
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Set("main", fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
}
