package local

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// joinEnv carries the cgroup.procs file a re-executed tether must join
// before it execs the real command. Cgroup v1 has no way to start a child
// inside a cgroup; writing the child's pid after Start would leave a window
// in which the child runs, and forks, outside the limit.
const joinEnv = "_TETHER_CGROUP_JOIN"

// joinArg0 marks argv[0] of such a re-execution, for ps.
const joinArg0 = "tether-cgroup-join"

func init() {
	// Runs in every binary that links this package (tether, and this
	// package's tests), before anything else of it: a process started by
	// wrapJoin joins the cgroup and becomes the real command.
	if procs := os.Getenv(joinEnv); procs != "" && len(os.Args) >= 3 && os.Args[0] == joinArg0 {
		joinCgroupAndExec(procs, os.Args[1], os.Args[2:])
	}
}

func joinCgroupAndExec(procs, path string, argv []string) {
	os.Unsetenv(joinEnv)
	if err := os.WriteFile(procs, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		fmt.Fprintf(os.Stderr, "tether: join memory cgroup %s: %v\n", procs, err)
		os.Exit(exitJoinFailed)
	}
	err := syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "tether: exec %s: %v\n", path, err)
	os.Exit(exitJoinFailed)
}

// exitJoinFailed is the exit code of a child that could not join its cgroup
// or exec its command: the supervisor does not retry it.
const exitJoinFailed = 126

// wrapJoin rewrites cmd so that it starts as this executable, which joins the
// cgroup whose cgroup.procs is procs and execs cmd's program.
func wrapJoin(cmd *exec.Cmd, procs string) (func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this executable to start the runner inside its cgroup: %w", err)
	}
	path := cmd.Path
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	args := cmd.Args
	if len(args) == 0 {
		args = []string{path}
	}
	cmd.Path = self
	cmd.Args = append([]string{joinArg0, path}, args...)
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(append([]string(nil), env...), joinEnv+"="+procs)
	return func() {}, nil
}
