package local

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// procStat is what the supervisor reads of /proc/<pid>/stat.
type procStat struct {
	pid, ppid, pgid, sid int
	state                byte
	rssPages             int64
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
