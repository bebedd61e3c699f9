package local

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cgroupPoll is how often the OOM counter is read. Reading a cgroup file is
// a few microseconds; 20 ms keeps detection well under the time a runner
// takes to restart.
const cgroupPoll = 20 * time.Millisecond

// cgroupJail is a memory cgroup of its own for the runner. On v2 the kernel
// kills the whole group on OOM (memory.oom.group=1); on v1 it kills one
// process, and the jail kills the rest as soon as the oom_kill counter moves,
// so the runner, its CLI and their tools die together as in a container.
type cgroupJail struct {
	v2  bool
	dir string

	mu    sync.Mutex
	limit int64
	base  int64 // oom_kill count when the life began
	peak  int64
	latch oomLatch
}

func (c *cgroupJail) Mode() string {
	if c.v2 {
		return ModeCgroupV2
	}
	return ModeCgroupV1
}

func (c *cgroupJail) Describe() string {
	how := "memory.oom.group=1: the kernel kills the whole group"
	if !c.v2 {
		how = "the kernel kills one process, tether kills the rest of the group at once"
	}
	return fmt.Sprintf("memory limit %s enforced by the kernel: %s cgroup %s (%s)", FormatSize(c.Limit()), c.Mode(), c.dir, how)
}

func (c *cgroupJail) Limit() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limit
}

func (c *cgroupJail) write(file, value string) error {
	p := filepath.Join(c.dir, file)
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, err)
	}
	return nil
}

func (c *cgroupJail) SetLimit(bytes int64) error {
	v := strconv.FormatInt(bytes, 10)
	if c.v2 {
		if err := c.write("memory.max", v); err != nil {
			return err
		}
		// No swap for the group: a container's limit is on memory, and a
		// runner swapping to death is worse than one killed and resumed.
		if _, err := os.Stat(filepath.Join(c.dir, "memory.swap.max")); err == nil {
			if err := c.write("memory.swap.max", "0"); err != nil {
				return err
			}
		}
	} else {
		// memsw (memory+swap) must stay >= limit: lower the limit first
		// when shrinking, raise memsw first when growing; the first write
		// that fails tells which case this is.
		memsw := filepath.Join(c.dir, "memory.memsw.limit_in_bytes")
		_, err := os.Stat(memsw)
		hasSw := err == nil
		if err := c.write("memory.limit_in_bytes", v); err != nil {
			if !hasSw {
				return err
			}
			if err := c.write("memory.memsw.limit_in_bytes", v); err != nil {
				return err
			}
			if err := c.write("memory.limit_in_bytes", v); err != nil {
				return err
			}
		}
		if hasSw {
			if err := c.write("memory.memsw.limit_in_bytes", v); err != nil {
				return err
			}
		}
	}
	c.mu.Lock()
	c.limit = bytes
	c.mu.Unlock()
	return nil
}

// oomKills reads the kernel's count of OOM kills in the group.
func (c *cgroupJail) oomKills() (int64, error) {
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	return readKeyed(filepath.Join(c.dir, file), "oom_kill")
}

// readKeyed returns the value of "key N" in a cgroup flat-keyed file.
func readKeyed(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %q line (kernel too old to count OOM kills per cgroup?)", path, key)
}

func (c *cgroupJail) usage() int64 {
	file := "memory.usage_in_bytes"
	if c.v2 {
		file = "memory.current"
	}
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func (c *cgroupJail) Peak() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}

func (c *cgroupJail) notePeak() {
	file := "memory.max_usage_in_bytes"
	if c.v2 {
		file = "memory.peak"
	}
	var n int64
	if b, err := os.ReadFile(filepath.Join(c.dir, file)); err == nil {
		n, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	} else {
		n = c.usage()
	}
	c.mu.Lock()
	if n > c.peak {
		c.peak = n
	}
	c.mu.Unlock()
}

// Prepare puts the child into the cgroup before it runs any code of its own:
// on v2 with clone3(CLONE_INTO_CGROUP); on v1, which has no such call, by
// starting this executable first, which joins the cgroup and then execs the
// real command (see joinCgroupAndExec).
func (c *cgroupJail) Prepare(cmd *exec.Cmd) (func(), error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if c.v2 {
		fd, err := syscall.Open(c.dir, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open cgroup %s: %w", c.dir, err)
		}
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
		return func() { syscall.Close(fd) }, nil
	}
	return wrapJoin(cmd, filepath.Join(c.dir, "cgroup.procs"))
}

func (c *cgroupJail) Begin(pid int) <-chan OOMEvent {
	base, _ := c.oomKills()
	c.mu.Lock()
	c.base, c.peak = base, 0
	c.mu.Unlock()
	if !c.v2 {
		c.write("memory.max_usage_in_bytes", "0") // reset the peak per life
	}
	ch := c.latch.begin()
	done := c.latch.done
	c.latch.wg.Add(1)
	go func() {
		defer c.latch.wg.Done()
		t := time.NewTicker(cgroupPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if ev := c.check(); ev != nil {
				c.latch.fire(*ev)
				return
			}
		}
	}()
	return ch
}

// check reads the OOM counter; when it moved, it kills the whole group and
// returns the event.
func (c *cgroupJail) check() *OOMEvent {
	n, err := c.oomKills()
	c.mu.Lock()
	base := c.base
	c.mu.Unlock()
	if err != nil || n <= base {
		return nil
	}
	at := time.Now()
	c.notePeak()
	c.killAll(5 * time.Second)
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	return &OOMEvent{By: c.Mode(), At: at, KilledAt: time.Now(), Limit: c.Limit(), Usage: c.Peak(),
		Detail: fmt.Sprintf("%s oom_kill %d -> %d", filepath.Join(c.dir, file), base, n)}
}

func (c *cgroupJail) End() (*OOMEvent, error) {
	ev := c.latch.stop()
	if ev == nil {
		// The runner may have died of the OOM (its CLI killed, it gave up)
		// before a poll saw the counter move.
		ev = c.check()
	}
	c.notePeak()
	return ev, c.killAll(5 * time.Second)
}

func (c *cgroupJail) procs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// killAll kills every process in the cgroup and waits until it is empty.
func (c *cgroupJail) killAll(wait time.Duration) error {
	if c.v2 {
		c.write("cgroup.kill", "1") // 5.14+; the loop below covers older kernels
	}
	deadline := time.Now().Add(wait)
	for {
		pids, err := c.procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v survive SIGKILL", c.dir, pids)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *cgroupJail) Close() error {
	c.latch.stop()
	err := c.killAll(5 * time.Second)
	// rmdir fails with EBUSY while the kernel is still tearing down the
	// killed processes' memory: retry briefly.
	for i := 0; i < 100; i++ {
		rerr := syscall.Rmdir(c.dir)
		if rerr == nil || errors.Is(rerr, syscall.ENOENT) {
			return err
		}
		if i == 99 {
			return errors.Join(err, fmt.Errorf("remove cgroup %s: %w", c.dir, rerr))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// newCgroupJail makes a memory cgroup for the runner: v2 when the unified
// hierarchy has the memory controller, else v1. It tries under the
// supervisor's own cgroup first (nesting keeps any outer limit in force),
// then at the hierarchy's root. reasons lists why each place failed.
func newCgroupJail(name string, limit int64) (*cgroupJail, []string) {
	var reasons []string
	mounts, err := cgroupMounts("/proc/self/mountinfo")
	if err != nil {
		return nil, []string{err.Error()}
	}
	own, _ := ownCgroups("/proc/self/cgroup")
	leaf := fmt.Sprintf("tether-%s-%d", name, os.Getpid())
	try := func(v2 bool, mnt cgMount, rel string) *cgroupJail {
		var parents []string
		if p, ok := own[rel]; ok {
			if r, err := filepath.Rel(mnt.root, p); err == nil && !strings.HasPrefix(r, "..") {
				parents = append(parents, filepath.Join(mnt.point, r))
			}
		}
		if len(parents) == 0 || parents[0] != mnt.point {
			parents = append(parents, mnt.point)
		}
		for _, parent := range parents {
			reapStale(parent)
			c, err := makeCgroup(v2, parent, leaf, limit)
			if err == nil {
				return c
			}
			reasons = append(reasons, err.Error())
		}
		return nil
	}
	for _, m := range mounts {
		if m.v2 {
			if !hasController(filepath.Join(m.point, "cgroup.controllers"), "memory") {
				reasons = append(reasons, fmt.Sprintf("cgroup v2 at %s has no memory controller", m.point))
				continue
			}
			if c := try(true, m, ""); c != nil {
				return c, nil
			}
		}
	}
	for _, m := range mounts {
		if !m.v2 && m.memory {
			if c := try(false, m, "memory"); c != nil {
				return c, nil
			}
		}
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "no memory cgroup hierarchy is mounted")
	}
	return nil, reasons
}

// makeCgroup creates parent/leaf and sets the limit, removing it again on
// any failure.
func makeCgroup(v2 bool, parent, leaf string, limit int64) (*cgroupJail, error) {
	dir := filepath.Join(parent, leaf)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	c := &cgroupJail{v2: v2, dir: dir}
	fail := func(err error) (*cgroupJail, error) {
		syscall.Rmdir(dir)
		return nil, err
	}
	if v2 {
		if _, err := os.Stat(filepath.Join(dir, "memory.max")); err != nil {
			// The parent does not hand the memory controller down; ask it.
			// This fails when the parent has processes of its own (the
			// "no internal processes" rule): then try elsewhere.
			if werr := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0); werr != nil {
				return fail(fmt.Errorf("cgroup %s: memory controller not enabled and cannot enable it: %w", parent, werr))
			}
			if _, err := os.Stat(filepath.Join(dir, "memory.max")); err != nil {
				return fail(fmt.Errorf("cgroup %s: no memory.max after enabling the memory controller", dir))
			}
		}
		if err := c.write("memory.oom.group", "1"); err != nil {
			return fail(err)
		}
	}
	if err := c.SetLimit(limit); err != nil {
		return fail(err)
	}
	if _, err := c.oomKills(); err != nil {
		return fail(err)
	}
	return c, nil
}

type cgMount struct {
	point, root string
	v2, memory  bool
}

// cgroupMounts lists the cgroup v2 mounts and the v1 memory mounts.
func cgroupMounts(mountinfo string) ([]cgMount, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cgMount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root point opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 {
			continue
		}
		m := cgMount{root: unescapeMount(a[3]), point: unescapeMount(a[4])}
		switch b[0] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			for _, o := range strings.Split(b[2], ",") {
				if o == "memory" {
					m.memory = true
				}
			}
			if !m.memory {
				continue
			}
		default:
			continue
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// ownCgroups maps "" (v2) and each v1 controller to this process's cgroup path.
func ownCgroups(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			out[ctl] = parts[2]
		}
	}
	return out, nil
}

func hasController(path, ctl string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if f == ctl {
			return true
		}
	}
	return false
}

// reapStale removes the cgroups of supervisors that died without cleaning
// up (SIGKILL, power loss of the process): their leftover processes (tools
// the agent started) are killed and the directories removed. A cgroup is
// stale when the pid in its name is no longer a running process.
func reapStale(parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, "tether-*"))
	for _, dir := range dirs {
		i := strings.LastIndexByte(dir, '-')
		pid, err := strconv.Atoi(dir[i+1:])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_, v2err := os.Stat(filepath.Join(dir, "memory.max"))
		c := &cgroupJail{v2: v2err == nil, dir: dir}
		c.killAll(2 * time.Second)
		syscall.Rmdir(dir)
	}
}
