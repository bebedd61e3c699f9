package local

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat is what the supervisor reads of /proc/<pid>/stat.
type procStat struct {
	pid, ppid, pgid, sid int
	state                byte
	rssPages             int64
	start                uint64 // clock ticks after boot: with pid, names a process across pid reuse
}

// readProcStat parses /proc/<pid>/stat. The command name is in parentheses
// and may itself contain spaces and parentheses: fields are counted after the
// last ')'.
func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0]=state f[1]=ppid f[2]=pgrp f[3]=session ... f[21]=rss (pages)
	if len(f) < 22 {
		return procStat{}, false
	}
	st := procStat{pid: pid, state: f[0][0]}
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgid, _ = strconv.Atoi(f[2])
	st.sid, _ = strconv.Atoi(f[3])
	st.rssPages, _ = strconv.ParseInt(f[21], 10, 64)
	st.start, _ = strconv.ParseUint(f[19], 10, 64)
	return st, true
}

// allPIDs lists the numeric entries of /proc.
func allPIDs() ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(names))
	for _, n := range names {
		if p, err := strconv.Atoi(n); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// sessionPIDs returns the live (non-zombie) processes of session sid.
func sessionPIDs(sid int) ([]int, error) {
	ps, err := sessionProcs(sid)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.pid)
	}
	return out, nil
}

func sessionProcs(sid int) ([]procStat, error) {
	pids, err := allPIDs()
	if err != nil {
		return nil, err
	}
	var out []procStat
	for _, p := range pids {
		st, ok := readProcStat(p)
		if ok && st.sid == sid && st.state != 'Z' && st.state != 'X' {
			out = append(out, st)
		}
	}
	return out, nil
}

// tree follows the processes of a group without a cgroup: the session of its
// leader, every descendant of a member (the agent CLI starts its tools with
// setsid, in sessions of their own), and every process once seen as a
// member, even after it was orphaned and adopted by init.
type tree struct {
	sid   int
	known map[int]uint64 // pid -> start time
}

func newTree(leader int) *tree { return &tree{sid: leader, known: map[int]uint64{}} }

// members returns the live members now, and remembers them.
func (t *tree) members() []procStat {
	pids, err := allPIDs()
	if err != nil {
		return nil
	}
	all := make(map[int]procStat, len(pids))
	children := map[int][]int{}
	for _, p := range pids {
		st, ok := readProcStat(p)
		if !ok || st.state == 'Z' || st.state == 'X' {
			continue
		}
		all[p] = st
		children[st.ppid] = append(children[st.ppid], p)
	}
	in := map[int]bool{}
	var queue []int
	for p, st := range all {
		if st.sid == t.sid || (t.known[p] != 0 && t.known[p] == st.start) {
			in[p] = true
			queue = append(queue, p)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !in[c] {
				in[c] = true
				queue = append(queue, c)
			}
		}
	}
	out := make([]procStat, 0, len(in))
	known := make(map[int]uint64, len(in))
	for p := range in {
		out = append(out, all[p])
		known[p] = all[p].start
	}
	t.known = known
	return out
}

// kill SIGKILLs the members until none is left or wait elapses.
func (t *tree) kill(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		ms := t.members()
		if len(ms) == 0 {
			return nil
		}
		for _, m := range ms {
			syscall.Kill(m.pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes of the runner's group survive SIGKILL", len(ms))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
