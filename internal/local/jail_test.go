package local

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startFamily starts the family role inside j and returns its command and
// the pids it reports.
func startFamily(t *testing.T, j Jail, env ...string) (*exec.Cmd, map[string]int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), "TETHER_TEST_ROLE=family"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	after, err := j.Prepare(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	after()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pids := map[string]int{}
	sc := bufio.NewScanner(out)
	want := 1
	for _, e := range env {
		if strings.HasPrefix(e, "TETHER_TEST_HOG_MB=") {
			want = 2
		}
	}
	for len(pids) < want && sc.Scan() {
		var name string
		var pid int
		if _, err := fmt.Sscanf(sc.Text(), "%s %d", &name, &pid); err == nil {
			pids[name] = pid
		}
	}
	if len(pids) < want {
		t.Fatalf("family reported %v", pids)
	}
	return cmd, pids
}

// A real kernel OOM kill: the hog, a grandchild in a process group of its
// own, passes the cgroup's limit; the kernel kills it, and the jail kills the
// rest of the group (the leader and the sleeper) as a container runtime
// would, and reports an OOM by the kernel.
func TestKernelOOMKillsWholeGroup(t *testing.T) {
	j := needCgroup(t, 96<<20)
	t.Log(j.Describe())
	stamp := filepath.Join(t.TempDir(), "stamp")
	cmd, pids := startFamily(t, j, "TETHER_TEST_HOG_MB=1024", "TETHER_TEST_HOG_STAMP="+stamp)
	start := time.Now()
	ch := j.Begin(cmd.Process.Pid)
	var ev OOMEvent
	select {
	case ev = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no OOM event within 30s")
	}
	err := cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("leader: want killed by SIGKILL, got %v", err)
	}
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) survived the group kill", name, pid)
		}
	}
	end, err := j.End()
	if err != nil {
		t.Fatal(err)
	}
	if end == nil || end.At != ev.At {
		t.Errorf("End returned %+v, want the delivered event %+v", end, ev)
	}
	if ev.By != ModeCgroupV1 && ev.By != ModeCgroupV2 {
		t.Errorf("OOM by %q, want the kernel (a cgroup mode)", ev.By)
	}
	if !strings.Contains(ev.Detail, "oom_kill") {
		t.Errorf("detail %q does not name the kernel counter", ev.Detail)
	}
	if ev.Limit != 96<<20 {
		t.Errorf("limit %d", ev.Limit)
	}
	b, _ := os.ReadFile(stamp)
	last, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	lat := ev.At.Sub(time.Unix(0, last))
	if last == 0 || lat < 0 || lat > time.Second {
		t.Errorf("detection %v after the hog's last allocation (stamp %q): want within a second", lat, b)
	}
	t.Logf("OOM seen %v after start and %v after the hog's last allocation (poll every %v); group dead %v later; detail: %s; peak %s",
		ev.At.Sub(start), lat.Round(time.Millisecond/10), cgroupPoll, ev.KilledAt.Sub(ev.At), ev.Detail, FormatSize(ev.Usage))
}

// A group that stays under the limit is not touched, and a raised limit
// applies to the cgroup at once.
func TestCgroupNoOOMAndSetLimit(t *testing.T) {
	j := needCgroup(t, 256<<20)
	cmd, pids := startFamily(t, j, "TETHER_TEST_HOG_MB=64")
	ch := j.Begin(cmd.Process.Pid)
	select {
	case ev := <-ch:
		t.Fatalf("unexpected OOM: %+v", ev)
	case <-time.After(1500 * time.Millisecond):
	}
	if err := j.SetLimit(384 << 20); err != nil {
		t.Fatal(err)
	}
	cg := j.(*cgroupJail)
	file := "memory.limit_in_bytes"
	if cg.v2 {
		file = "memory.max"
	}
	b, _ := os.ReadFile(filepath.Join(cg.dir, file))
	if strings.TrimSpace(string(b)) != fmt.Sprint(384<<20) {
		t.Errorf("%s = %q after SetLimit", file, b)
	}
	ev, err := j.End()
	if err != nil || ev != nil {
		t.Fatalf("End: %v %+v", err, ev)
	}
	cmd.Wait()
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) left running after End", name, pid)
		}
	}
	if p := j.Peak(); p < 64<<20 {
		t.Errorf("peak %d, want >= 64 MiB", p)
	}
	dir := cg.dir
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cgroup %s still exists after Close: %v", dir, err)
	}
}

// The watchdog, forced: the same family, no cgroup; the watchdog sees the
// session's RSS pass the limit and kills the whole session.
func TestWatchdogKillsWholeSession(t *testing.T) {
	j, _, err := NewJail(MemoryWatchdog, "test", 96<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.Mode() != ModeWatchdog || !strings.Contains(j.Describe(), "watchdog") {
		t.Fatalf("mode %s: %s", j.Mode(), j.Describe())
	}
	cmd, pids := startFamily(t, j, "TETHER_TEST_HOG_MB=1024")
	ch := j.Begin(cmd.Process.Pid)
	var ev OOMEvent
	select {
	case ev = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no watchdog event within 30s")
	}
	cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("leader not SIGKILLed: %v", cmd.ProcessState)
	}
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) survived", name, pid)
		}
	}
	if ev.By != ModeWatchdog || ev.Usage <= 96<<20 {
		t.Errorf("event %+v", ev)
	}
	t.Logf("watchdog: %s", ev.Detail)
}
