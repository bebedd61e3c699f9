package store_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

func init() {
	children["putifabsent"] = childPutIfAbsent
	children["writer"] = childWriter
}

func child(t *testing.T, name string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "TETHER_STORE_CHILD="+name)...)
	cmd.Stderr = os.Stderr
	return cmd
}

const raceKeys = 40

// childPutIfAbsent announces it is ready, waits for the parent's go signal,
// then races the other children with PutIfAbsent on the same keys and
// prints "<key> won" or "<key> exists" per key.
func childPutIfAbsent() int {
	dir, id := os.Getenv("DIR"), os.Getenv("ID")
	s, err := store.Open(context.Background(), storetest.FileURL(filepath.Join(dir, "store")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(dir, "ready-"+id), nil, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for k := range raceKeys {
		key := fmt.Sprintf("race/%d", k)
		err := s.PutIfAbsent(context.Background(), key, []byte("child "+id))
		switch {
		case err == nil:
			fmt.Fprintln(out, key, "won")
		case errors.Is(err, store.ErrExists):
			fmt.Fprintln(out, key, "exists")
		default:
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// TestFilePutIfAbsentAcrossProcesses races several processes on the same
// keys of one file:// store: on every key exactly one may win, and the
// object must hold the winner's bytes. (An in-process mutex, as in gocloud's
// fileblob, would let several processes win.)
func TestFilePutIfAbsentAcrossProcesses(t *testing.T) {
	t.Parallel()
	const procs = 6
	dir := t.TempDir()
	var outs []*bytes.Buffer
	var cmds []*exec.Cmd
	for i := range procs {
		cmd := child(t, "putifabsent", "DIR="+dir, "ID="+strconv.Itoa(i))
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < procs; {
		if _, err := os.Stat(filepath.Join(dir, "ready-"+strconv.Itoa(i))); err == nil {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatal("children did not get ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
	}
	winners := map[string][]int{}
	for i, out := range outs {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != raceKeys {
			t.Fatalf("child %d printed %d lines, want %d", i, len(lines), raceKeys)
		}
		for _, l := range lines {
			if key, ok := strings.CutSuffix(l, " won"); ok {
				winners[key] = append(winners[key], i)
			}
		}
	}
	s := open(t, storetest.FileURL(filepath.Join(dir, "store")))
	distinct := map[int]bool{}
	for k := range raceKeys {
		key := fmt.Sprintf("race/%d", k)
		w := winners[key]
		if len(w) != 1 {
			t.Errorf("%s: winners %v, want exactly one", key, w)
			continue
		}
		distinct[w[0]] = true
		got, err := s.Get(context.Background(), key)
		if err != nil || string(got) != "child "+strconv.Itoa(w[0]) {
			t.Errorf("%s = %q, %v; want the winner's bytes (child %d)", key, got, err, w[0])
		}
	}
	t.Logf("%d keys, %d processes, %d different processes won at least one key", raceKeys, procs, len(distinct))
}

// makeObject returns an object that carries its own checksum: the hex
// SHA-256 of the body, a newline, the body.
func makeObject(r *rand.Rand) []byte {
	body := make([]byte, 1+r.IntN(2<<20))
	for i := range body {
		body[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(body)
	return append([]byte(hex.EncodeToString(sum[:])+"\n"), body...)
}

func checkObject(data []byte) error {
	head, body, ok := bytes.Cut(data, []byte("\n"))
	if !ok || len(head) != 64 {
		return fmt.Errorf("%d bytes without a checksum line", len(data))
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != string(head) {
		return fmt.Errorf("checksum mismatch: %d-byte body, torn or mixed write", len(body))
	}
	return nil
}

// childWriter writes checksummed objects until it is killed: Put over a
// small set of keys (replacing objects) and PutIfAbsent on new keys.
func childWriter() int {
	seed, _ := strconv.ParseUint(os.Getenv("SEED"), 10, 64)
	r := rand.New(rand.NewPCG(seed, 1))
	s, err := store.Open(context.Background(), os.Getenv("URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		var err error
		if i%2 == 0 {
			err = s.Put(ctx, fmt.Sprintf("replaced/%d", r.IntN(8)), makeObject(r))
		} else {
			err = s.PutIfAbsent(ctx, fmt.Sprintf("once/%d-%d", seed, i), makeObject(r))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i == 0 {
			fmt.Println("wrote one") // the parent starts its kill timer now
		}
	}
}

// TestFileCrashDuringWrites SIGKILLs a writing process at random moments and
// checks after each kill that every object the store shows is complete and
// no temp file is listed.
func TestFileCrashDuringWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u := storetest.FileURL(dir)
	r := rand.New(rand.NewPCG(42, 42))
	const rounds = 10
	tempsSeen := 0
	for round := range rounds {
		cmd := child(t, "writer", "URL="+u, "SEED="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the first write, so every round has something to check
		// however slowly the child starts on a loaded machine, then kill
		// at a random moment of the writes that follow.
		if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("round %d: writer did not report its first write: %v", round, err)
		}
		time.Sleep(time.Duration(r.IntN(400)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: writer ended on its own before the kill: %v", round, err)
		}

		s := open(t, u)
		n := 0
		err = s.List(context.Background(), "", func(oi store.ObjectInfo) error {
			n++
			if strings.Contains(oi.Key, ".tether-tmp-") {
				t.Errorf("round %d: temp file listed as %s", round, oi.Key)
			}
			data, err := s.Get(context.Background(), oi.Key)
			if err != nil {
				return err
			}
			if err := checkObject(data); err != nil {
				t.Errorf("round %d: object %s: %v", round, oi.Key, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("round %d: the writer stored nothing before the kill; the test checks nothing", round)
		}
		tempsSeen += countTemps(t, dir)
	}
	t.Logf("%d kills; temp files left on disk by killed writers (never listed): %d", rounds, tempsSeen)
}

func countTemps(t *testing.T, dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tether-tmp-") {
			n++
		}
		return nil
	})
	return n
}
