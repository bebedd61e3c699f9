// Command syncidle measures what `tether sync` costs while nothing happens:
// CPU and memory of the real process over an idle period on a workspace of
// many files, and whether it uploads anything; then how long its final
// snapshot takes after SIGTERM with one small change pending.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("tether", "bin/tether", "the tether binary")
	files := flag.Int("files", 20000, "files in the workspace")
	idle := flag.Duration("idle", 60*time.Second, "idle period to measure")
	flag.Parse()
	if err := run(*bin, *files, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "syncidle:", err)
		os.Exit(1)
	}
}

func run(bin string, files int, idle time.Duration) error {
	dir, err := os.MkdirTemp("", "syncidle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ws := filepath.Join(dir, "ws")
	for i := 0; i < files; i++ {
		p := filepath.Join(ws, fmt.Sprintf("d%03d/f%05d.txt", i/100, i))
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
			return err
		}
	}
	// Old mtimes: the stat cache trusts files not modified just before a save.
	old := time.Now().Add(-time.Hour)
	filepath.Walk(ws, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })

	storeDir := filepath.Join(dir, "store")
	os.MkdirAll(storeDir, 0o755)
	cmd := exec.Command(bin, "sync", "--store", "file://"+storeDir, "--session", "idle", "--workspace", ws, "--cache-dir", filepath.Join(dir, "cache"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	snaps := filepath.Join(storeDir, "default", "idle", "snapshots")
	start := time.Now()
	for count(snaps) == 0 {
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("no first snapshot after 5 minutes:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	first := time.Since(start)
	time.Sleep(2 * time.Second) // let the first save's aftermath settle
	objs := count(filepath.Join(storeDir, "default", "idle", "objects"))
	n0, cpu0 := count(snaps), cpuTime(cmd.Process.Pid)
	t0 := time.Now()
	time.Sleep(idle)
	cpu1, wall := cpuTime(cmd.Process.Pid), time.Since(t0)
	n1 := count(snaps)
	mem := memory(cmd.Process.Pid)

	p := filepath.Join(ws, "d000", "f00000.txt")
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(bytes.Repeat([]byte("x"), 1024))
	f.Close()
	t1 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	werr := cmd.Wait()
	final := time.Since(t1)

	fmt.Printf("tether sync on %d files (%d objects stored), idle for %s\n", files, objs, idle)
	fmt.Printf("  first snapshot after start:      %s\n", first.Round(time.Millisecond))
	fmt.Printf("  CPU while idle:                  %.2f%% of one core (%s in %s)\n", 100*(cpu1-cpu0).Seconds()/wall.Seconds(), (cpu1 - cpu0).Round(time.Millisecond), wall.Round(time.Second))
	fmt.Printf("  snapshots written while idle:    %d\n", n1-n0)
	fmt.Printf("  RSS now / peak:                  %d MiB / %d MiB (now: %d MiB private, %d MiB pages of the binary and other files)\n",
		mem["VmRSS:"]>>20, mem["VmHWM:"]>>20, mem["RssAnon:"]>>20, mem["RssFile:"]>>20)
	fmt.Printf("  SIGTERM with 1 KiB pending:      exit %v after %s (final snapshot included)\n", werr, final.Round(time.Millisecond))
	return nil
}

func count(dir string) int {
	n := 0
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// memory returns the Vm* and Rss* lines of /proc/<pid>/status, in bytes.
func memory(pid int) map[string]int64 {
	m := map[string]int64{}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			m[f[0]] = v << 10
		}
	}
	return m
}
