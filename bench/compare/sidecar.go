package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/store/storetest"
)

// sidecar is a `tether sync` running on the benchmark's workspace, as it runs
// next to the agent: it notices each case's change by itself (fsnotify) and
// snapshots it. Its per-change CPU is what a user pays per change, next to
// the one-shot `tether snapshot save` process the issue compares with.
type sidecar struct {
	cmd     *exec.Cmd
	metrics string
	log     *os.File
}

func (e *env) startSidecar(ctx context.Context) (*sidecar, error) {
	port, err := storetest.FreePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(e.scratch, "sidecar.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.tether, "sync",
		"--store", e.minio.tetherURL("tether"), "--namespace", "bench", "--session", "compare-sync",
		"--workspace", e.ws, "--cache-dir", filepath.Join(e.scratch, "sync-cache"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Env = append(cleanEnv(), e.minio.tetherEnv()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &sidecar{cmd: cmd, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port), log: logf}
	// The first snapshot uploads the whole workspace.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if n, _ := s.metric("tether_sync_snapshots_total"); n >= 1 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("tether sync wrote no first snapshot in 10 minutes; see %s", logf.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return s, nil
}

func (s *sidecar) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.log.Close()
}

// quiet waits until nothing has been pending for d.
func (s *sidecar) quiet(d time.Duration) error {
	deadline := time.Now().Add(2 * time.Minute)
	var since time.Time
	for time.Now().Before(deadline) {
		age, err := s.metric("tether_sync_oldest_unsaved_change_age_seconds")
		if err != nil {
			return err
		}
		switch {
		case age != 0:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= d:
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("tether sync did not go quiet within 2 minutes")
}

// metric reads one unlabelled counter or gauge from /metrics.
func (s *sidecar) metric(name string) (float64, error) {
	resp, err := http.Get(s.metrics)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s not in %s", name, s.metrics)
}

// cpu is the CPU time the sync process and the children it waited for
// (git) have used: every thread's run time from schedstat (nanoseconds),
// plus cutime and cstime (clock ticks) from stat.
func (s *sidecar) cpu() (time.Duration, error) {
	pid := s.cmd.Process.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses: cutime and
	// cstime are fields 16 and 17 of stat.
	rest := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(rest) < 15 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	cu, _ := strconv.ParseInt(rest[13], 10, 64)
	cs, _ := strconv.ParseInt(rest[14], 10, 64)
	return time.Duration(ns) + time.Duration(cu+cs)*10*time.Millisecond, nil
}

// saves returns the "snapshot saved" lines the sidecar has logged so far,
// as the bytes each uploaded. Reading its log, unlike scraping /metrics,
// costs the sidecar nothing while its CPU is being measured.
func (s *sidecar) saves() ([]int64, error) {
	b, err := os.ReadFile(s.log.Name())
	if err != nil {
		return nil, err
	}
	var up []int64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `msg="snapshot saved"`) {
			continue
		}
		var n int64
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "bytesUploaded="); ok {
				n, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		up = append(up, n)
	}
	return up, nil
}

// measure applies change and waits until the sidecar has saved it and gone
// quiet (no new snapshot for a second), and returns the CPU it spent and the
// bytes it uploaded meanwhile. With no change (want == false) it measures a
// 2 s window in which no snapshot is expected.
func (s *sidecar) measure(change func() error, want bool) (sample, error) {
	// Saves caused by the previous measurements (git commands of the
	// baseline touch the repository) finish before this one starts.
	if err := s.quiet(time.Second); err != nil {
		return sample{}, err
	}
	before, err := s.saves()
	if err != nil {
		return sample{}, err
	}
	cpu0, err := s.cpu()
	if err != nil {
		return sample{}, err
	}
	t0 := time.Now()
	if err := change(); err != nil {
		return sample{}, err
	}
	deadline := t0.Add(60 * time.Second)
	seen, last := len(before), t0
	for {
		time.Sleep(50 * time.Millisecond)
		now, err := s.saves()
		if err != nil {
			return sample{}, err
		}
		if len(now) > seen {
			seen, last = len(now), time.Now()
		}
		switch {
		case !want && time.Since(t0) >= 2*time.Second:
		case want && seen > len(before) && time.Since(last) >= time.Second:
		case time.Now().After(deadline):
			if want {
				return sample{}, fmt.Errorf("tether sync saved no snapshot within 60 s of the change; see %s", s.log.Name())
			}
		default:
			continue
		}
		break
	}
	cpu1, err := s.cpu()
	if err != nil {
		return sample{}, err
	}
	after, err := s.saves()
	if err != nil {
		return sample{}, err
	}
	var up int64
	for _, n := range after[len(before):] {
		up += n
	}
	// Wall: from the change to the last snapshot it caused.
	return sample{usage: usage{Wall: last.Sub(t0), CPU: cpu1 - cpu0}, Uploaded: up}, nil
}
