package local

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The cgroup v2 code path, on a directory that looks like a v2 cgroup: the
// limit goes to memory.max with swap off, an OOM is read from
// memory.events, and the kill goes through cgroup.kill. (This machine kind
// runs v1; the real kernel path is TestKernelOOMKillsWholeGroup.)
func TestCgroupV2PathOnFakeTree(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	for name, s := range map[string]string{"memory.max": "max\n", "memory.swap.max": "max\n", "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\noom_group_kill 0\n",
		"memory.current": "1000\n", "memory.peak": "5000\n", "cgroup.procs": "", "cgroup.kill": ""} {
		write(name, s)
	}
	c := &cgroupJail{v2: true, dir: dir}
	if err := c.SetLimit(256 << 20); err != nil {
		t.Fatal(err)
	}
	if read("memory.max") != "268435456" || read("memory.swap.max") != "0" {
		t.Errorf("memory.max %q, memory.swap.max %q", read("memory.max"), read("memory.swap.max"))
	}
	ch := c.Begin(12345)
	select {
	case ev := <-ch:
		t.Fatalf("OOM before any: %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
	write("memory.events", "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 1\n")
	var ev OOMEvent
	select {
	case ev = <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("no OOM event from memory.events")
	}
	if ev.By != ModeCgroupV2 || !strings.Contains(ev.Detail, "memory.events oom_kill 0 -> 1") || ev.Usage != 5000 {
		t.Errorf("event %+v", ev)
	}
	if read("cgroup.kill") != "1" {
		t.Errorf("cgroup.kill = %q, want 1", read("cgroup.kill"))
	}
	end, err := c.End()
	if err != nil || end == nil || end.At != ev.At {
		t.Errorf("End: %+v %v", end, err)
	}
}

func TestCgroupDiscoveryParsing(t *testing.T) {
	dir := t.TempDir()
	mi := filepath.Join(dir, "mountinfo")
	os.WriteFile(mi, []byte(`25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
36 25 0:31 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
37 25 0:32 / /sys/fs/cgroup/cpu\040x rw,relatime shared:13 - cgroup cgroup rw,cpu
`), 0o644)
	ms, err := cgroupMounts(mi)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || !ms[0].v2 || ms[0].point != "/sys/fs/cgroup/unified" || ms[1].v2 || !ms[1].memory || ms[1].point != "/sys/fs/cgroup/memory" {
		t.Errorf("mounts %+v", ms)
	}
	cg := filepath.Join(dir, "cgroup")
	os.WriteFile(cg, []byte("12:memory:/process_api/abc\n3:cpu,cpuacct:/x\n0::/user.slice/s.scope\n"), 0o644)
	own, err := ownCgroups(cg)
	if err != nil {
		t.Fatal(err)
	}
	if own["memory"] != "/process_api/abc" || own[""] != "/user.slice/s.scope" || own["cpuacct"] != "/x" {
		t.Errorf("own %v", own)
	}
}

// A cgroup left by a supervisor that was SIGKILLed (its pid is gone) is
// emptied and removed by the next one; a live supervisor's is left alone.
func TestReapStaleCgroups(t *testing.T) {
	needCgroup(t, 64<<20).Close()
	j, _, err := NewJail(MemoryCgroup, "stale", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	live := j.(*cgroupJail).dir
	defer j.Close()
	parent := filepath.Dir(live)
	// A dead pid: a child that exited.
	c := exec.Command("true")
	c.Run()
	dead := filepath.Join(parent, fmt.Sprintf("tether-old-%d", c.Process.Pid))
	if err := os.Mkdir(dead, 0o755); err != nil {
		t.Fatal(err)
	}
	// With a leftover process in it.
	sl := exec.Command(os.Args[0])
	sl.Env = append(os.Environ(), "TETHER_TEST_ROLE=sleep")
	if err := sl.Start(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dead, "cgroup.procs"), []byte(fmt.Sprint(sl.Process.Pid)), 0)
	waitErr := make(chan error, 1)
	go func() { waitErr <- sl.Wait() }()
	reapStale(parent)
	select {
	case <-waitErr:
	case <-time.After(5 * time.Second):
		t.Fatal("the leftover process was not killed")
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("stale cgroup %s still there: %v", dead, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live cgroup %s removed: %v", live, err)
	}
}
