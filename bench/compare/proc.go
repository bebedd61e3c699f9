package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

// usage is what one measured process (with every descendant it waited for)
// cost, from the kernel's rusage of the reaped child.
type usage struct {
	Wall   time.Duration
	CPU    time.Duration // user + system
	MaxRSS int64         // bytes, the largest resident set of any process in the tree
	Stdout []byte
	Stderr []byte
}

// run starts name with env added to the environment and waits for it,
// through measureChild (this binary re-executed): Linux counts the peak RSS
// of the process that execs into a child's ru_maxrss, so a child started
// straight from this harness would report at least the harness's own peak.
// The wrapper is small, and the rusage it reports for its child includes the
// children that child reaped (bash's rclone and git), so a script's cost is
// measured whole.
func run(ctx context.Context, env []string, name string, args ...string) (usage, error) {
	self, err := os.Executable()
	if err != nil {
		return usage{}, err
	}
	cmd := exec.CommandContext(ctx, self, append([]string{name}, args...)...)
	cmd.Env = append(append(cleanEnv(), env...), childEnv+"=measure")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	r, w, err := os.Pipe()
	if err != nil {
		return usage{}, err
	}
	cmd.ExtraFiles = []*os.File{w}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return usage{}, err
	}
	w.Close()
	report, _ := io.ReadAll(r)
	r.Close()
	err = cmd.Wait()
	u := usage{Wall: time.Since(t0), Stdout: out.Bytes(), Stderr: errb.Bytes()}
	var m measured
	if jerr := json.Unmarshal(report, &m); jerr == nil {
		u.Wall, u.CPU, u.MaxRSS = m.Wall, m.CPU, m.MaxRSS
	} else if err == nil {
		err = fmt.Errorf("no rusage report from the measuring wrapper: %v", jerr)
	}
	if err != nil {
		return u, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(errb.String(), 2000))
	}
	return u, nil
}

// measured is what measureChild reports on fd 3.
type measured struct {
	Wall, CPU time.Duration
	MaxRSS    int64
}

// measureChild runs os.Args[1:] with this process's stdio, reports its
// rusage as JSON on fd 3 and exits with its exit code.
func measureChild() int {
	report := os.NewFile(3, "report")
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, childEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the harness
	t0 := time.Now()
	err := cmd.Run()
	m := measured{Wall: time.Since(t0)}
	if cmd.ProcessState != nil {
		m.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.MaxRSS = ru.Maxrss * 1024 // kilobytes on Linux
		}
	}
	json.NewEncoder(report).Encode(m)
	report.Close()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "measure:", err)
		return 1
	}
	return 0
}

// cleanEnv is the environment without settings that would send the S3
// clients elsewhere or make them load a CA bundle they cannot use over plain
// HTTP to 127.0.0.1 (rclone refuses AWS_CA_BUNDLE with its own transport).
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "RCLONE_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func median[T int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := append([]T(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}
